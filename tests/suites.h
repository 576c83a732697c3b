/* suites.h -- the test tables, one per test file. */
#ifndef SUITES_H
#define SUITES_H

#include "harness.h"

#define MAX_TESTS 512

/* One wrapper per step, so that each step is a test of its own:
 * FOR_ALL(fn) defines fn_1 .. fn_4, each calling fn(n). */
#define FOR_STEP(fn, n)                                                                                      \
    static void fn##_##n(void) {                                                                             \
        fn(n);                                                                                               \
    }
#define FOR_ALL(fn) FOR_STEP(fn, 1) FOR_STEP(fn, 2) FOR_STEP(fn, 3) FOR_STEP(fn, 4)
#define FOR_1_4(fn) FOR_STEP(fn, 1) FOR_STEP(fn, 4)
#define FOR_3_4(fn) FOR_STEP(fn, 3) FOR_STEP(fn, 4)

/* The table rows of those wrappers. Each file defines T(n, what, fn), one
 * step's row with the file's own name pattern, before its table. */
#define T_ALL(what, fn) T(1, what, fn), T(2, what, fn), T(3, what, fn), T(4, what, fn)
#define T_1_4(what, fn) T(1, what, fn), T(4, what, fn)
#define T_3_4(what, fn) T(3, what, fn), T(4, what, fn)

extern const struct test basics_tests[]; /* test_basics.c: one server and its clients, bad input */
extern const int basics_count;
extern const struct test delivery_tests[]; /* test_delivery.c: each step's guarantee and weakness */
extern const int delivery_count;
extern const struct test lab_tests[]; /* test_lab.c: the lab's table, cell by cell */
extern const int lab_count;
extern const struct test docs_tests[]; /* test_docs.c: the documents match the code */
extern const int docs_count;
extern const struct test limits_tests[]; /* test_limits.c: the limits hold under stress */
extern const int limits_count;
extern const struct test proxy_tests[]; /* test_proxy.c: the fault proxy, one fault at a time */
extern const int proxy_count;

extern const struct test common_tests[]; /* test_common.c: common/ on its own (display, addresses, log) */
extern const int common_count;
extern const struct test startup_tests[]; /* test_startup.c: what a server and client need before they run */
extern const int startup_count;
extern const struct test robust_tests[]; /* test_robust.c: what a classroom does to it */
extern const int robust_count;
extern const struct test grade_tests[]; /* test_grade.c: make grade passes the reference, fails near misses */
extern const int grade_count;

#endif
