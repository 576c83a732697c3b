/* test_grade.c -- make grade: the reference steps pass, and near misses
 * fail, each naming the scenario that shows why.
 *
 * Each test runs tests/grade whole, as a student would: it builds the
 * folder, runs two lab columns and the graded tests, two at a time each.
 * A near miss is made in the test's own folder: a Makefile that links
 * the reference server and wraps the reference client. */
#include "suites.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ROOT_MAX 4096 /* a path in the test's folder or the tree */

static int grade_status; /* the last grade's exit status */

/* tests/grade step dir, run to the end */
static struct proc *grade(const char *step, const char *dir) {
    const char *argv[] = {bin_path("tests/grade"), step, dir, NULL};
    setenv("TEST_KEEP", "0", 1); /* the near misses' failed tests leave no folders behind */
    struct proc *p = proc_start("grade", argv);
    grade_status = proc_wait_exit(p, test_ms_left());
    REQUIRE(grade_status >= 0);
    return p;
}

/* The verdict: the last line of its stdout. */
static const char *verdict(struct proc *p) {
    const char *last = p->out;
    for (const char *s = p->out; *s; s++)
        if (s[0] == '\n' && s[1] != '\0')
            last = s + 1;
    return last;
}

static void check_verdict(struct proc *p, int status, const char *needle) {
    CHECK_EQ_INT(grade_status, status);
    if (strstr(verdict(p), needle) == NULL)
        test_fail(__FILE__, __LINE__, "the verdict has no '%s':\n%s", needle, p->out);
}

/* A folder of the test's own, tmppath(name), and its Makefile opened for
 * writing; root is the repository's top (the folder holding step3/). */
static FILE *new_folder(const char *name, char root[ROOT_MAX]) {
    char makefile[ROOT_MAX];
    snprintf(root, ROOT_MAX, "%s", bin_path("step3"));
    root[strlen(root) - strlen("/step3")] = '\0';
    REQUIRE(mkdir(tmppath(name), 0755) == 0);
    snprintf(makefile, sizeof makefile, "%s/Makefile", tmppath(name));
    FILE *f = fopen(makefile, "w");
    REQUIRE(f != NULL);
    return f;
}

/* A folder whose make links step3/server and writes a client script
 * that runs step3/client with extra arguments after the grader's. */
static const char *near_miss(const char *client_args) {
    char root[ROOT_MAX];
    FILE *f = new_folder("nearmiss", root);
    fprintf(f,
            "all:\n"
            "\tln -sf %s/step3/server server\n"
            "\tprintf '#!/bin/sh\\nexec %s/step3/client \"$$@\" %s\\n' > client\n"
            "\tchmod +x client\n",
            root, root, client_args);
    fclose(f);
    return tmppath("nearmiss");
}

/* step3's sources with every status line worded otherwise, built with
 * step3's Makefile: what a student's own step 3 prints. The link's lines
 * ("reconnecting in", "disconnected") live in common/link.c, which a
 * student's step links as it is, so only the steps' own are reworded. */
static const char *reworded_step3(void) {
    char root[ROOT_MAX];
    FILE *f = new_folder("reworded", root);
    fprintf(f,
            "WORDS = -e 's/will send again/trying once more/' -e 's/message buffered/queued offline/'"
            " -e 's/no ack (/no answer (/' -e 's/ping timeout/heartbeat lost/'"
            " -e 's/insert failed/could not store/'\n"
            "all:\n"
            "\tsed $(WORDS) %s/step3/client.c > client.c\n"
            "\tsed $(WORDS) %s/step3/server.c > server.c\n"
            "\t$(MAKE) -f %s/step3/Makefile ROOT=%s server client\n",
            root, root, root, root);
    fclose(f);
    return tmppath("reworded");
}

static void reference_step3_passes(void) {
    check_verdict(grade("3", bin_path("step3")), 0, "grade: PASS step 3");
}

/* the graded tests read the wire and the database, not our wording */
static void reworded_step3_passes(void) {
    check_verdict(grade("3", reworded_step3()), 0, "grade: PASS step 3");
}

static void reference_step4_passes(void) {
    check_verdict(grade("4", bin_path("step4")), 0, "grade: PASS step 4");
}

/* --retries 0: a message cut on the wire is given up, so lost */
static void no_retries_fails(void) {
    struct proc *p = grade("3", near_miss("--retries 0"));
    check_verdict(p, 1, "first: cut: lost 1 (step 3 must lose nothing)");
    CHECK(strstr(p->out, "FAIL step3: cut-before: nothing lost") != NULL);
}

/* the step 2 client refuses step 3's ack flags: the lab runs it without
 * them, and the verdict names the scenario that loses a message */
static void step2_as_step3_fails(void) {
    struct proc *p = grade("3", bin_path("step2"));
    check_verdict(p, 1, "first: cut: lost 1 (step 3 must lose nothing)");
    CHECK(strstr(p->out, "your client refuses --ack-timeout and --retries") != NULL);
}

/* step 3 offered as step 4: a lost ack stores the message twice */
static void step3_as_step4_fails(void) {
    check_verdict(grade("4", bin_path("step3")), 1, "first: ack: dup 1 (step 4 must duplicate nothing)");
}

/* the reference step 4 has one message in flight */
static void window_fails_step4(void) {
    struct proc *p = grade("window", bin_path("step4"));
    check_verdict(p, 1, "first: window: inflight 1 (window must have 2 or more messages in flight)");
}

/* the reference step 4 keeps its queue in memory: the sender's restart loses it */
static void durable_fails_step4(void) {
    struct proc *p = grade("durable", bin_path("step4"));
    check_verdict(p, 1, "first: sender: ");
    CHECK(strstr(p->out, "(durable goes past step 4: the reference step 4 fails the sender scenario") !=
          NULL);
}

const struct test grade_tests[] = {
    /* the near miss first: the slowest (its tests wait out their deadlines) */
    {"grade: step 3 with --retries 0 fails step 3, naming the cut scenario and a test", no_retries_fails},
    {"grade: the reference step 3 passes step 3", reference_step3_passes},
    {"grade: the reference step 4 passes step 4", reference_step4_passes},
    {"grade: step 3 with its status lines worded otherwise passes step 3", reworded_step3_passes},
    {"grade: step 2 offered as step 3 fails, naming the cut scenario (its client takes no ack flags)",
     step2_as_step3_fails},
    {"grade: step 3 offered as step 4 fails, naming the ack-lost scenario", step3_as_step4_fails},
    {"grade: window fails the reference step 4, naming its one message in flight", window_fails_step4},
    {"grade: durable fails the reference step 4, naming the sender scenario", durable_fails_step4},
};
const int grade_count = (int)(sizeof grade_tests / sizeof grade_tests[0]);
