/* buf.c -- a bounded output buffer for a non-blocking socket. See buf.h. */
#include "buf.h"

#include "limits.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void buf_init(struct buf *b, size_t max) {
    memset(b, 0, sizeof *b);
    b->max = max;
}

void buf_free(struct buf *b) {
    free(b->data);
    buf_init(b, b->max);
}

void buf_clear(struct buf *b) {
    b->start = b->len = 0;
}

size_t buf_pending(const struct buf *b) {
    return b->len - b->start;
}

/* Make room for len more bytes: first by dropping what is already
 * written, then by growing (doubling, so appends stay cheap). */
static int buf_reserve(struct buf *b, size_t len) {
    if (b->start > 0) {
        memmove(b->data, b->data + b->start, b->len - b->start);
        b->len -= b->start;
        b->start = 0;
    }
    if (b->len + len <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + len) {
        cap *= 2;
    }
    char *data = realloc(b->data, cap);
    if (data == NULL) {
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *data, size_t len) {
    if (buf_pending(b) + len > b->max || buf_reserve(b, len) == -1) {
        return -1;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int buf_printf_line(struct buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf_line(b, fmt, ap);
    va_end(ap);
    return rc;
}

int buf_vprintf_line(struct buf *b, const char *fmt, va_list ap) {
    char line[MAX_LINE + 1];
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    /* Truncating a protocol line would corrupt it: refuse instead. */
    if (n < 0 || (size_t)n >= MAX_LINE) {
        return -2;
    }
    line[n++] = '\n';
    return buf_append(b, line, (size_t)n);
}

int buf_flush(struct buf *b, int fd) {
    while (buf_pending(b) > 0) {
        ssize_t n = write(fd, b->data + b->start, buf_pending(b));
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1) {
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        b->start += (size_t)n;
    }
    b->start = b->len = 0;
    if (b->cap > BUF_KEEP) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
    return 0;
}
