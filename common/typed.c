/* typed.c -- what the user types, cut into messages. See typed.h. */
#include "typed.h"

#include "limits.h"

#include <errno.h>
#include <string.h>

void typed_init(struct typed *t) {
    line_init(&t->lines);
    t->eof = 0;
}

void typed_fill(struct typed *t, int fd) {
    ssize_t n = line_fill(&t->lines, fd);
    if (n == -1 && errno == EAGAIN) {
        return;
    }
    if (n <= 0) {
        line_finish(&t->lines); /* a last line without newline counts */
        t->eof = 1;
    }
}

enum typed_result typed_next(struct typed *t, char **line, const char **why) {
    while (line_ready(&t->lines)) {
        enum line_result r = line_next(&t->lines, line);
        if (r == LINE_READY && **line == '\0') {
            continue;
        }
        if (r == LINE_READY && strlen(*line) > MAX_TEXT) {
            *why = "line too long";
            return TYPED_REFUSED;
        }
        if (r == LINE_READY) {
            return TYPED_LINE;
        }
        if (r == LINE_TOO_LONG) {
            line_skip(&t->lines);
            *why = "line too long";
            return TYPED_REFUSED;
        }
        if (r == LINE_HAS_NUL) {
            *why = "line with a NUL byte";
            return TYPED_REFUSED;
        }
    }
    return TYPED_NONE;
}

void typed_take(struct typed *t, int (*has_room)(void), void (*message)(const char *text),
                void (*refused)(const char *why)) {
    char *line;
    const char *why;
    enum typed_result r;
    while (has_room() && (r = typed_next(t, &line, &why)) != TYPED_NONE) {
        if (r == TYPED_LINE) {
            message(line);
        } else {
            refused(why);
        }
    }
}

int typed_wants_input(const struct typed *t) {
    return !t->eof && !line_ready(&t->lines);
}

int typed_done(const struct typed *t) {
    return t->eof && !line_ready(&t->lines);
}
