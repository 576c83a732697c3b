/* util.c -- small helpers. See util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int parse_int64(const char *s, int64_t *out) {
    int64_t v = 0;
    if (*s == '\0' || strlen(s) > 19) {
        return -1;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return -1;
        }
        int digit = *s - '0';
        if (v > (INT64_MAX - digit) / 10) {
            return -1;
        }
        v = v * 10 + digit;
    }
    *out = v;
    return 0;
}

int parse_long_arg(const char *s, long min, long max, long *out) {
    int64_t v;
    if (s == NULL || parse_int64(s, &v) == -1 || v < min || v > max) {
        return -1;
    }
    *out = (long)v;
    return 0;
}

char *next_word(char **rest) {
    char *word = *rest;
    if (word == NULL) {
        return NULL;
    }
    char *space = strchr(word, ' ');
    if (space != NULL) {
        *space++ = '\0';
    }
    *rest = space;
    return word;
}

int random_bytes(void *buf, size_t n) {
    /* Opened once and kept: a server out of file descriptors must still
     * be able to name a new client. */
    static int fd = -1;
    size_t got = 0;
    if (fd == -1) {
        fd = open("/dev/urandom", O_RDONLY);
    }
    while (fd != -1 && got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0 && !(r == -1 && errno == EINTR)) {
            break;
        }
        got += r > 0 ? (size_t)r : 0;
    }
    return got == n ? 0 : -1;
}

int random_id20(char out[21]) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[15];
    if (random_bytes(raw, sizeof raw) == -1) {
        return -1;
    }
    /* Every 3 bytes become 4 characters of 6 bits each. */
    for (int i = 0; i < 5; i++) {
        unsigned long v =
            (unsigned long)raw[3 * i] << 16 | (unsigned long)raw[3 * i + 1] << 8 | raw[3 * i + 2];
        for (int j = 0; j < 4; j++) {
            out[4 * i + j] = b64[(v >> (18 - 6 * j)) & 63];
        }
    }
    out[20] = '\0';
    return 0;
}

int random_hex(char *out, size_t n) {
    unsigned char raw[64];
    if (n > sizeof raw || random_bytes(raw, n) == -1) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    }
    return 0;
}

char *str_vprintf(const char *fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *copy = n < 0 ? NULL : malloc((size_t)n + 1);
    if (copy != NULL) {
        vsnprintf(copy, (size_t)n + 1, fmt, again);
    }
    va_end(again);
    return copy;
}

struct timeval timeval_until(long long at) {
    long long ms = at - now_ms();
    if (ms < 0) {
        ms = 0;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* Length of the valid UTF-8 sequence at s, with its code point in *out,
 * or 0. The C1 controls U+0080..U+009F are refused too: some terminals
 * obey them like escape sequences. */
static int utf8_printable_len(const unsigned char *s, uint32_t *out) {
    int len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : 2;
    uint32_t cp = s[0] & (0x3F >> (len - 1));
    if (s[0] < 0xC2 || s[0] > 0xF4) {
        return 0;
    }
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3F);
    }
    int overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp <= 0x9F) {
        return 0;
    }
    *out = cp;
    return len;
}

/* Code points that are valid and harmless to a terminal, yet make a line
 * read differently from what is stored ("Trojan Source", CVE-2021-42574):
 * a message could show "ok" and hold "ko", or hide a word. */
static int is_bidi_or_invisible(uint32_t cp) {
    /* Embeddings and overrides (LRE, RLE, PDF, LRO, RLO): RLO prints the
     * rest of the line backwards. */
    int embedding_or_override = cp >= 0x202A && cp <= 0x202E;
    /* Isolates (LRI, RLI, FSI, PDI): the same, for a span of the line. */
    int isolate = cp >= 0x2066 && cp <= 0x2069;
    /* Marks (LRM, RLM, ALM): invisible, yet they move neutral characters
     * such as spaces and punctuation to the other side of a word. */
    int mark = cp == 0x200E || cp == 0x200F || cp == 0x061C;
    /* Zero width space, non-joiner, joiner, word joiner, and U+FEFF (the
     * byte order mark): they show as nothing, so two texts that look the
     * same can differ, and a word can hide inside another. */
    int zero_width = (cp >= 0x200B && cp <= 0x200D) || cp == 0x2060 || cp == 0xFEFF;
    /* Line and paragraph separators: some terminals and editors start a
     * new line there, so one message could pass for two. */
    int separator = cp == 0x2028 || cp == 0x2029;
    return embedding_or_override || isolate || mark || zero_width || separator;
}

void show_text(FILE *f, const char *text) {
    const unsigned char *s = (const unsigned char *)text;
    while (*s != '\0') {
        uint32_t cp = *s;
        int n = *s >= 0x80 ? utf8_printable_len(s, &cp) : (*s >= 0x20 && *s != 0x7F && *s != '\\');
        if (n > 0 && is_bidi_or_invisible(cp)) {
            /* Shown by name, so the reader sees that it is there. */
            fprintf(f, "\\u{%04lX}", (unsigned long)cp);
            s += n;
        } else if (n > 0) {
            fwrite(s, 1, (size_t)n, f);
            s += n;
        } else if (*s == '\\') {
            fputs("\\\\", f);
            s++;
        } else {
            fprintf(f, "\\x%02X", *s++);
        }
    }
}

void stdio_ensure_open(void) {
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
            /* open() takes the lowest free descriptor, which is fd: the
             * ones below it are open by now. */
            if (open("/dev/null", O_RDWR) == -1) {
                _exit(127);
            }
        }
    }
}

void ignore_sigpipe(void) {
    signal(SIGPIPE, SIG_IGN);
}
