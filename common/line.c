/* line.c -- cutting a byte stream into protocol lines. See line.h. */
#include "line.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

void line_init(struct line_reader *r) {
    r->start = r->len = 0;
    r->skipping = 0;
}

ssize_t line_fill(struct line_reader *r, int fd) {
    /* Slide the unfinished line to the front to make room. */
    if (r->start > 0) {
        memmove(r->data, r->data + r->start, r->len - r->start);
        r->len -= r->start;
        r->start = 0;
    }
    for (;;) {
        ssize_t n = read(fd, r->data + r->len, sizeof r->data - r->len);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n > 0) {
            r->len += (size_t)n;
        }
        return n;
    }
}

/* While skipping, drop bytes up to and including the next newline.
 * Returns 1 while still skipping. */
static int skip_rest(struct line_reader *r) {
    char *nl = memchr(r->data + r->start, '\n', r->len - r->start);
    if (nl == NULL) {
        r->start = r->len = 0;
        return 1;
    }
    r->start = (size_t)(nl - r->data) + 1;
    r->skipping = 0;
    return 0;
}

enum line_result line_next(struct line_reader *r, char **line) {
    if (r->skipping && skip_rest(r)) {
        return LINE_NEED_MORE;
    }
    char *begin = r->data + r->start;
    size_t avail = r->len - r->start;
    char *nl = memchr(begin, '\n', avail);
    if (nl == NULL) {
        return avail >= sizeof r->data ? LINE_TOO_LONG : LINE_NEED_MORE;
    }
    size_t n = (size_t)(nl - begin);
    r->start += n + 1;
    if (memchr(begin, '\0', n) != NULL) {
        return LINE_HAS_NUL;
    }
    /* "\r\n" ends a line as "\n" does, and so does "\r\r\n" (a CRLF
     * file that went through one more CRLF conversion): a carriage return
     * at the end of a line is never part of it, on the wire or typed. */
    while (n > 0 && begin[n - 1] == '\r') {
        n--;
    }
    begin[n] = '\0';
    *line = begin;
    return LINE_READY;
}

int line_ready(const struct line_reader *r) {
    size_t avail = r->len - r->start;
    return memchr(r->data + r->start, '\n', avail) != NULL || avail >= sizeof r->data;
}

void line_skip(struct line_reader *r) {
    r->start = r->len = 0;
    r->skipping = 1;
}

void line_finish(struct line_reader *r) {
    size_t avail = r->len - r->start;
    if (avail == 0 || r->skipping) {
        return;
    }
    if (r->len == sizeof r->data) {
        /* Full: the last byte gives way to the newline. */
        r->len--;
    }
    r->data[r->len++] = '\n';
}
