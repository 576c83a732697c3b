/* typed.h -- what the user types on a client's stdin, cut into messages.
 *
 * A client takes a typed line only while it has room for one more
 * message; the lines read but not taken wait here, and the client does
 * not read stdin while any waits (typed_wants_input()): the user's input
 * is held back instead of dropped. An empty line is skipped; a line that
 * cannot be a message (longer than MAX_TEXT, or with a NUL byte) comes
 * back refused, with the reason, for the client to say so. */
#ifndef CHAT_TYPED_H
#define CHAT_TYPED_H

#include "line.h"

struct typed {
    struct line_reader lines;
    int eof; /* stdin has ended */
};

enum typed_result {
    TYPED_NONE, /* no complete line: read more, or stdin has ended */
    TYPED_LINE, /* *line is a message to send */
    TYPED_REFUSED, /* a line that is no message: *why says why */
};

void typed_init(struct typed *t);

/* One read() of fd. At its end (or on an error other than EAGAIN), an
 * unterminated last line counts as a line, and the input has ended. */
void typed_fill(struct typed *t, int fd);

/* The next typed line, without its newline, valid until typed_fill(). */
enum typed_result typed_next(struct typed *t, char **line, const char **why);

/* Take lines while has_room() says there is room for one more message:
 * each goes to message(), or to refused() with the reason. The others
 * wait, and stdin is not read while any waits (typed_wants_input()). */
void typed_take(struct typed *t, int (*has_room)(void), void (*message)(const char *text),
                void (*refused)(const char *why));

/* 1 while stdin should be read: it has not ended, and no line waits. */
int typed_wants_input(const struct typed *t);

/* 1 once stdin has ended and every line of it has been taken. */
int typed_done(const struct typed *t);

#endif
