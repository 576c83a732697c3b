/* test_docs.c -- the documents cannot drift from the code.
 *
 * README.md and TUTORIAL.md show diffs between the steps and the lab's
 * figures; those blocks are generated (make diffs) and must match what the
 * code produces now. Every shell block marked "sh run" must succeed. And
 * the whole tree follows the one .clang-format, so that formatting never
 * shows up in a step diff. */
#include "harness.h"
#include "suites.h"

static void run_docs_tool(const char *mode) {
    const char *argv[] = {bin_path("tests/docs"), "--root", bin_path("."), mode, "README.md",
                          "TUTORIAL.md",          NULL};
    struct proc *p = proc_start("docs", argv);
    /* it runs the lab and make: as long as the machine makes it, within the test's limit */
    CHECK_EQ_INT(proc_wait_exit(p, test_ms_left()), 0);
}

static void generated_blocks_match(void) {
    run_docs_tool("--check");
}

static void runnable_commands_succeed(void) {
    run_docs_tool("--run");
}

static void tree_is_formatted(void) {
    const char *argv[] = {"/bin/sh", "-c",
                          "command -v clang-format >/dev/null && make -s -C \"$0\" format-check",
                          bin_path("."), NULL};
    struct proc *p = proc_start("format-check", argv);
    /* one clang-format per file: 5 s on an idle machine, over 25 s on a loaded one */
    CHECK_EQ_INT(proc_wait_exit(p, test_ms_left()), 0);
}

const struct test docs_tests[] = {
    {"docs: the diffs and figures in README.md and TUTORIAL.md match the code (make diffs)",
     generated_blocks_match},
    {"docs: every command marked runnable in README.md and TUTORIAL.md succeeds", runnable_commands_succeed},
    {"docs: the whole tree follows .clang-format (make format-check)", tree_is_formatted},
};
const int docs_count = sizeof docs_tests / sizeof docs_tests[0];
