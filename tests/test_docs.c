/* test_docs.c -- the documents cannot drift from the code.
 *
 * README.md, TUTORIAL.md and tests/README.md show diffs between the steps and the lab's
 * figures; those blocks are generated (make diffs) and must match what the
 * code produces now; so must the excerpts of the code (an excerpt that no
 * longer matches its source, or names a function that is gone, fails the
 * check). Every shell block marked "sh run" must succeed. And
 * the whole tree follows the one .clang-format, so that formatting never
 * shows up in a step diff. */
#include "harness.h"
#include "suites.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void run_docs_tool(const char *mode) {
    const char *argv[] = {bin_path("tests/docs"), "--root",          bin_path("."), mode, "README.md",
                          "TUTORIAL.md",          "tests/README.md", NULL};
    struct proc *p = proc_start("docs", argv);
    /* it runs the lab and make: as long as the machine makes it, within the test's limit */
    CHECK_EQ_INT(proc_wait_exit(p, test_ms_left()), 0);
}

static void generated_blocks_match(void) {
    run_docs_tool("--check");
}

/* tests/docs [MODE] on one document (MODE NULL: regenerate); returns the
 * process, exited, for its status and its stderr. */
static struct proc *docs_on(const char *mode, const char *doc) {
    const char *argv[] = {bin_path("tests/docs"), "--root", bin_path("."), mode, doc, NULL};
    if (mode == NULL) {
        argv[3] = doc;
        argv[4] = NULL;
    }
    struct proc *p = proc_start("docs", argv);
    REQUIRE(proc_wait_exit(p, test_ms_left()) != -1);
    return p;
}

static void write_doc(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs(text, f);
    fclose(f);
}

static char *read_doc(const char *path) {
    static char text[4096];
    FILE *f = fopen(path, "r");
    REQUIRE(f != NULL);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* An absolute path in the test's directory: docs runs in --root. */
static const char *test_file(const char *name) {
    static char paths[2][4096];
    static int next;
    char cwd[2048] = "";
    const char *tmp = tmppath(name);
    if (tmp[0] != '/') {
        REQUIRE(getcwd(cwd, sizeof cwd) != NULL);
        strcat(cwd, "/");
    }
    next = (next + 1) % 2;
    snprintf(paths[next], sizeof paths[next], "%s%s", cwd, tmp);
    return paths[next];
}

/* An excerpt is generated from the source, and the check fails as soon as
 * the source changes under it, or the definition it names is gone. */
static void excerpts_follow_the_source(void) {
    const char *src = test_file("code.c"), *doc = test_file("doc.md");
    char marker[4200];
    write_doc(src,
              "/* Why: it says so. */\nstatic int answer(void) {\n    return 42;\n}\n\nint main(void) {\n"
              "    return answer();\n}\n");
    snprintf(marker, sizeof marker, "<!-- excerpt: %s answer -->\n<!-- end -->\n", src);
    write_doc(doc, marker);
    CHECK_EQ_INT(proc_wait_exit(docs_on(NULL, doc), 1), 0);
    CHECK(strstr(read_doc(doc),
                 "-->\n```c\n/* Why: it says so. */\nstatic int answer(void) {\n    return 42;\n}\n"
                 "```\n<!-- end -->\n") != NULL);
    CHECK_EQ_INT(proc_wait_exit(docs_on("--check", doc), 1), 0);

    /* the source changed, the document did not */
    write_doc(src, "/* Why: it says so. */\nstatic int answer(void) {\n    return 43;\n}\n");
    struct proc *p = docs_on("--check", doc);
    CHECK_EQ_INT(proc_wait_exit(p, 1), 1);
    CHECK(proc_err_count(p, "answer --> is out of date") == 1);

    /* the function is gone (renamed, say) */
    snprintf(marker, sizeof marker, "<!-- excerpt: %s no_such_function -->\n```c\n```\n<!-- end -->\n", src);
    write_doc(doc, marker);
    p = docs_on("--check", doc);
    CHECK_EQ_INT(proc_wait_exit(p, 1), 1);
    CHECK(proc_err_count(p, "has no definition of \"no_such_function\"") == 1);
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
    {"docs: the diffs, excerpts and figures in README.md, TUTORIAL.md and tests/README.md match the code "
     "(make diffs)",
     generated_blocks_match},
    {"docs: an excerpt that no longer matches its source, or names a missing function, fails the check",
     excerpts_follow_the_source},
    {"docs: every command marked runnable in README.md, TUTORIAL.md and tests/README.md succeeds",
     runnable_commands_succeed},
    {"docs: the whole tree follows .clang-format (make format-check)", tree_is_formatted},
};
const int docs_count = sizeof docs_tests / sizeof docs_tests[0];
