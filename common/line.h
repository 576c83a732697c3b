/* line.h -- cutting a byte stream into protocol lines.
 *
 * TCP delivers bytes, not messages: one read() may return half a line, or
 * three lines and a half. The reader keeps the leftover bytes until the
 * rest arrives. Its buffer is MAX_LINE bytes and never grows, so a peer
 * that sends an endless line costs us MAX_LINE bytes and an error. */
#ifndef CHAT_LINE_H
#define CHAT_LINE_H

#include "limits.h"

#include <sys/types.h>

struct line_reader {
    char data[MAX_LINE];
    size_t start; /* first byte not yet returned as a line */
    size_t len; /* bytes in data */
    int skipping; /* dropping the rest of an over-long line */
};

enum line_result {
    LINE_READY, /* *line points to a complete line */
    LINE_NEED_MORE, /* no complete line yet: read more */
    LINE_TOO_LONG, /* MAX_LINE bytes and still no newline */
    LINE_HAS_NUL, /* a complete line with a NUL byte in it (dropped) */
};

void line_init(struct line_reader *r);

/* One read() into the free space. Returns what read() returned: bytes
 * read, 0 at end of file, -1 with errno (EAGAIN: nothing now). */
ssize_t line_fill(struct line_reader *r, int fd);

/* The next complete line, without its "\n" and any carriage returns
 * before it ("\r\n", "\r\r\n"), NUL-terminated in place. It stays valid until the next line_fill(). */
enum line_result line_next(struct line_reader *r, char **line);

/* 1 if line_next() has something to return without reading more: a
 * complete line, or a full buffer (too long). */
int line_ready(const struct line_reader *r);

/* After LINE_TOO_LONG: drop what is buffered and the rest of that line,
 * up to its newline, and go on with the next one. */
void line_skip(struct line_reader *r);

/* At end of file: turn an unterminated last line into a complete one. */
void line_finish(struct line_reader *r);

#endif
