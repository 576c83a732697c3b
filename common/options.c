/* options.c -- a program's command line. See options.h. */
#include "options.h"

#include "util.h"

#include <string.h>

static const struct option_spec *options_find(const char *name, const struct option_spec *table, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(name, table[i].name) == 0) {
            return &table[i];
        }
    }
    return NULL;
}

/* One option's value into its place; -1 if it is not a valid one. */
static int options_set(const struct option_spec *o, const char *val) {
    if (val == NULL) {
        return -1;
    }
    if (o->kind == OPTION_STRING) {
        *(const char **)o->to = val;
        return 0;
    }
    if (o->kind == OPTION_LONG_OR_INF && strcmp(val, "inf") == 0) {
        *(long *)o->to = -1;
        return 0;
    }
    return parse_long_arg(val, o->min, o->max, (long *)o->to);
}

int options_parse(int argc, char **argv, const struct option_spec *table, size_t n) {
    int i = 1;
    while (i < argc) {
        const struct option_spec *o = options_find(argv[i++], table, n);
        if (o == NULL) {
            return -1;
        }
        if (o->kind == OPTION_FLAG) {
            *(int *)o->to = 1;
        } else if (options_set(o, i < argc ? argv[i++] : NULL) == -1) {
            return -1;
        }
    }
    return 0;
}
