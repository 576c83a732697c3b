/* say.h -- what a client tells its user on stderr.
 *
 * Status lines start with "client: ", so they never mix with the chat on
 * stdout. Text that came from the server is untrusted: it goes through
 * show_text() (util.h), so it cannot drive the terminal. */
#ifndef CHAT_SAY_H
#define CHAT_SAY_H

#include <stddef.h>

/* A status line: printf-style, "client: " before it, a newline after. */
void say(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* A status line that ends in untrusted text: "client: <what><text>". */
void say_shown(const char *what, const char *text);

/* With --verbose, each protocol line as it goes out (dir ">") or comes
 * in ("<"): the wire view. The line is len bytes, without its newline. */
void say_trace(const char *dir, const char *line, size_t len);

/* Once, before anything is written to stderr: turn say_trace() on or
 * off, and make stderr line-buffered. Unbuffered, as C starts it, every
 * piece of a line (and every character show_text() writes) is a write of
 * its own; line-buffered, a status line leaves in one write, whole. */
void say_setup(int verbose);

/* Only turn say_trace() on or off (off at start). Kept for a step folder
 * copied before say_setup() existed. */
void say_set_verbose(int on);

#endif
