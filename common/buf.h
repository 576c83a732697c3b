/* buf.h -- a bounded output buffer for a non-blocking socket.
 *
 * We never write() straight to a socket from the middle of the program:
 * the kernel may take only part of the bytes, or none. Everything goes
 * into a buf first, and the select() loop flushes it when the socket is
 * writable. The bound is the point: a peer that stops reading fills its
 * own buffer, and the owner of the buf decides what happens then. */
#ifndef CHAT_BUF_H
#define CHAT_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t start; /* bytes before start are already written */
    size_t len; /* bytes in data, written or not */
    size_t cap;
    size_t max; /* pending bytes never exceed this */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_clear(struct buf *b);

/* Bytes not yet written. */
size_t buf_pending(const struct buf *b);

/* Append len bytes. 0 on success; -1 (and nothing appended) if the
 * pending bytes would pass b->max or memory ran out. */
int buf_append(struct buf *b, const void *data, size_t len);

/* Append one protocol line: printf-style, a "\n" is added. -1 when the
 * buffer is full, -2 when the line would be longer than MAX_LINE; either
 * way nothing is appended. */
int buf_printf_line(struct buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The same, with a va_list, for callers that are printf-style too. */
int buf_vprintf_line(struct buf *b, const char *fmt, va_list ap);

/* Write as much as the socket takes now. 0 when all is well (even if some
 * bytes are still pending), -1 when the connection failed (errno says
 * why). EINTR is retried; EAGAIN just means "not now". */
int buf_flush(struct buf *b, int fd);

#endif
