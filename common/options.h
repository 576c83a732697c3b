/* options.h -- a program's command line (the clients', and the servers'
 * through conn_parse_options()): a table of flags, parsed in one call.
 *
 * Every option but a flag takes a value, as the next argument ("--port
 * 3000"). A name not in the table, a missing value, or a number out of
 * its range is an error: the caller prints its usage and exits. */
#ifndef CHAT_OPTIONS_H
#define CHAT_OPTIONS_H

#include <stddef.h>

enum option_kind {
    OPTION_FLAG, /* no value: sets the int at `to` to 1 */
    OPTION_STRING, /* the value itself, at the const char * at `to` */
    OPTION_LONG, /* a decimal number in [min, max], at the long at `to` */
    OPTION_LONG_OR_INF, /* the same, or the word "inf", stored as -1 */
};

struct option_spec {
    const char *name; /* "--port" */
    enum option_kind kind;
    void *to; /* where the value goes */
    long min, max; /* for the numbers */
};

/* Parse argv[1..argc-1] against the n options of table. Values not given
 * keep what the caller set before. 0 on success, -1 on any error. */
int options_parse(int argc, char **argv, const struct option_spec *table, size_t n);

#endif
