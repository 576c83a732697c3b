/* test_common.c -- common/ on its own: showing untrusted text, every address of a name, a log that never blocks. */
#include "harness.h"
#include "suites.h"

const struct test common_tests[] = {
    {NULL, NULL},
};
const int common_count = 0;
