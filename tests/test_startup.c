/* test_startup.c -- what a server and a client need before their loop runs: open stdio, a database they can write. */
#include "harness.h"
#include "suites.h"

const struct test startup_tests[] = {
    {NULL, NULL},
};
const int startup_count = 0;
