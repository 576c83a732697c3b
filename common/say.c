/* say.c -- what a client tells its user on stderr. See say.h. */
#include "say.h"

#include "limits.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int verbose;

void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void say_shown(const char *what, const char *text) {
    fprintf(stderr, "client: %s", what);
    show_text(stderr, text);
    fputc('\n', stderr);
}

void say_trace(const char *dir, const char *line, size_t len) {
    char copy[MAX_LINE + 1];
    if (!verbose) {
        return;
    }
    /* An outgoing line sits in the output buffer, not NUL-terminated:
     * the copy is made only for this view, never on the way out. */
    len = len < MAX_LINE ? len : MAX_LINE;
    memcpy(copy, line, len);
    copy[len] = '\0';
    fprintf(stderr, "%s ", dir);
    show_text(stderr, copy);
    fputc('\n', stderr);
}

void say_setup(int on) {
    setvbuf(stderr, NULL, _IOLBF, BUFSIZ);
    say_set_verbose(on);
}

void say_set_verbose(int on) {
    verbose = on;
}
