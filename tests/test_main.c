/* test_main.c -- one test binary for the whole suite: every test file
 * exports its table, and the runner runs them all, several at a time. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>

#include "suites.h"

static void add(struct test *all, int *n, const struct test *t, int count) {
    for (int i = 0; i < count; i++) {
        all[(*n)++] = t[i];
    }
}

int main(int argc, char **argv) {
    static struct test all[MAX_TESTS];
    int n = 0;
    add(all, &n, basics_tests, basics_count);
    add(all, &n, delivery_tests, delivery_count);
    add(all, &n, lab_tests, lab_count);
    add(all, &n, docs_tests, docs_count);
    add(all, &n, limits_tests, limits_count);
    add(all, &n, proxy_tests, proxy_count);
    add(all, &n, common_tests, common_count);
    add(all, &n, startup_tests, startup_count);
    add(all, &n, robust_tests, robust_count);
    return run_tests(argc, argv, all, n);
}
