/* test_robust.c -- what a classroom does to it: CRLF files, a replaced database, an unread log, a stop, a full server. */
#include "harness.h"
#include "suites.h"

const struct test robust_tests[] = {
    {NULL, NULL},
};
const int robust_count = 0;
