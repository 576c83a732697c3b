/* fuzz_line.c -- libFuzzer target for the line reader (common/line.c).
 *
 * Build and run: make fuzz (tests/check.mk). Reproduce one input:
 * tests/fuzz_line FILE.
 *
 * An input is three control bytes and a byte stream:
 *   byte 0     bit 0: after LINE_TOO_LONG call line_skip() and go on, as the
 *                     client does with stdin; clear: stop at the first
 *                     framing error, as the server does (it closes);
 *              bit 1: at the end of the stream call line_finish(), as the
 *                     client does at the end of stdin
 *   bytes 1-2  the seed of the chunking: the stream goes through a pipe in
 *              writes of 1 to 5000 bytes, and the reader reads what is there
 *   the rest   the stream
 *
 * The reader must give the same answers whatever the chunking. A model,
 * written from line.h's contract, says what they are; every answer is
 * compared with it:
 *   - a line has no '\n' and no NUL, is shorter than MAX_LINE, lies inside
 *     the reader's buffer, and is the stream's bytes up to the next newline
 *     (the '\r's just before it dropped);
 *   - LINE_HAS_NUL exactly for a line with a NUL byte;
 *   - LINE_TOO_LONG exactly when MAX_LINE bytes came without a newline;
 *   - the bytes add up: after the last read the reader holds exactly the
 *     unterminated last line (none while skipping). */
#include "line.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_CHUNK 5000 /* below a pipe's capacity: a write never blocks */

enum kind { EV_LINE, EV_NUL, EV_TOO_LONG };

struct event {
    enum kind kind;
    size_t off, len; /* EV_LINE: the line is s[off, off + len) */
};

struct model {
    struct event *ev;
    size_t n, next; /* events, and the next one to compare */
    size_t tail; /* bytes of the unterminated last line, 0 while skipping */
    int skipping; /* the stream ended inside a skipped over-long line */
};

static void fail(const char *what, size_t at) {
    fprintf(stderr, "fuzz_line: %s (event %zu)\n", what, at);
    abort();
}

/* One complete line s[off, off + len), newline excluded. */
static void model_line(struct model *m, const uint8_t *s, size_t off, size_t len) {
    struct event e = {EV_LINE, off, len};
    if (memchr(s + off, '\0', len) != NULL) {
        e.kind = EV_NUL;
    } else {
        while (e.len > 0 && s[off + e.len - 1] == '\r') {
            e.len--;
        }
    }
    m->ev[m->n++] = e;
}

/* What the reader must return for the stream s[0, n). */
static void model_run(struct model *m, const uint8_t *s, size_t n, int skip, int finish) {
    size_t pos = 0;
    m->n = m->next = m->tail = 0;
    m->skipping = 0;
    while (pos < n) {
        const uint8_t *nl = memchr(s + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - s) : n; /* the line is s[pos, end) */
        if (end - pos >= MAX_LINE) {
            m->ev[m->n++] = (struct event){EV_TOO_LONG, pos, 0};
            if (!skip) {
                return;
            }
            if (nl == NULL) {
                m->skipping = 1;
                return;
            }
            pos = end + 1;
        } else if (nl != NULL) {
            model_line(m, s, pos, end - pos);
            if (!skip && m->ev[m->n - 1].kind == EV_NUL) {
                return;
            }
            pos = end + 1;
        } else {
            m->tail = n - pos;
            if (finish) {
                model_line(m, s, pos, n - pos);
            }
            return;
        }
    }
}

/* The reader's answers, compared with the model's, until NEED_MORE or a
 * framing error in server mode (then 1: stop reading). */
static int drain(struct line_reader *r, struct model *m, const uint8_t *s, int skip) {
    char *line;
    enum line_result res;
    while ((res = line_next(r, &line)) != LINE_NEED_MORE) {
        if (m->next == m->n) {
            fail("the reader returned more than the model", m->next);
        }
        const struct event *e = &m->ev[m->next++];
        if (res == LINE_READY) {
            size_t len = strlen(line);
            if (e->kind != EV_LINE) {
                fail("a line where the model has an error", m->next - 1);
            }
            if (line < r->data || line + len >= r->data + sizeof r->data) {
                fail("the line is not inside the reader's buffer", m->next - 1);
            }
            if (len >= MAX_LINE || memchr(line, '\n', len) != NULL) {
                fail("a line too long, or with a newline", m->next - 1);
            }
            if (len != e->len || memcmp(line, s + e->off, len) != 0) {
                fail("a line differs from the stream", m->next - 1);
            }
        } else if (res == LINE_HAS_NUL) {
            if (e->kind != EV_NUL) {
                fail("LINE_HAS_NUL where the model has none", m->next - 1);
            }
            if (!skip) {
                return 1;
            }
        } else {
            if (e->kind != EV_TOO_LONG) {
                fail("LINE_TOO_LONG where the model has none", m->next - 1);
            }
            if (!skip) {
                return 1;
            }
            line_skip(r);
        }
    }
    return 0;
}

/* Read everything the pipe holds now. 1 when the reader must stop. */
static int read_all(struct line_reader *r, int fd, struct model *m, const uint8_t *s, int skip) {
    for (;;) {
        if (r->len - r->start >= sizeof r->data) {
            fail("line_fill() called on a full buffer", m->next);
        }
        ssize_t n = line_fill(r, fd);
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        if (n <= 0) {
            fail("line_fill() failed or saw an end of file in the middle", m->next);
        }
        if (drain(r, m, s, skip)) {
            return 1;
        }
    }
}

/* A small deterministic generator for the chunk sizes. */
static size_t next_chunk(uint32_t *state) {
    static const size_t max[] = {1, 7, 100, 1000, MAX_CHUNK};
    *state = *state * 1103515245u + 12345u;
    uint32_t v = *state >> 8;
    return 1 + (v / 5) % max[v % 5];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct line_reader r;
    static struct model m;
    static size_t cap;
    int fds[2];
    if (size < 3) {
        return 0;
    }
    int skip = data[0] & 1, finish = (data[0] >> 1) & 1;
    uint32_t state = (uint32_t)data[1] << 8 | data[2];
    const uint8_t *s = data + 3;
    size_t n = size - 3;
    if (cap < n + 2) {
        free(m.ev);
        cap = n + 2;
        m.ev = malloc(cap * sizeof *m.ev);
        if (m.ev == NULL) {
            abort();
        }
    }
    model_run(&m, s, n, skip, finish);
    if (pipe(fds) != 0 || fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) {
        abort();
    }
    line_init(&r);
    int stop = 0;
    for (size_t pos = 0; pos < n && !stop;) {
        size_t k = next_chunk(&state);
        k = k < n - pos ? k : n - pos;
        ssize_t w = write(fds[1], s + pos, k);
        if (w <= 0) {
            abort();
        }
        pos += (size_t)w;
        stop = read_all(&r, fds[0], &m, s, skip);
    }
    close(fds[1]);
    if (!stop) {
        /* The end of the stream, as the client meets it on stdin: one more
         * read (0: end of file), then line_finish(). */
        if (line_fill(&r, fds[0]) != 0) {
            fail("no end of file after the last byte", m.next);
        }
        if (r.len - r.start != m.tail) {
            fail("the bytes do not add up: the reader holds more or less than the last line", m.next);
        }
        if (r.skipping != m.skipping) {
            fail("skipping differs from the model at the end", m.next);
        }
        if (finish) {
            line_finish(&r);
        }
        drain(&r, &m, s, skip);
    }
    close(fds[0]);
    if (m.next != m.n) {
        fail("the reader returned fewer answers than the model", m.next);
    }
    return 0;
}
