/* grade.c -- make grade STEP=N DIR=path: a student's own step, graded by
 * the lab and the suite.
 *
 *   tests/grade STEP DIR     STEP: 1, 2, 3, 4, durable or window
 *
 * Builds DIR (make -C DIR), then runs three jobs at once: the lab's
 * column of the step against DIR/server and DIR/client, the same column
 * against the reference step, and the step's graded tests (chattests
 * --graded) against DIR. Both labs are pointed with CHAT_STEP_DIR (see
 * harness.h). The verdict is the last line; the exit status is 0 only
 * when the step's guarantee holds in every scenario and every test
 * passes. durable and window are graded as step 4 plus one scenario of
 * their own, which the reference step 4 fails: they go past it. */
#include "harness.h"
#include "scenarios.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_KEYS 16
#define MAX_ARGS 64
#define PATH_BUF 4096

/* One graded target: the lab column it runs, what it must keep. */
struct target {
    const char *name; /* as typed: STEP=... */
    int step; /* the lab's column and the suite's step */
    const char *guarantee; /* for the output */
    int no_dup, no_loss_down, no_loss, order;
    const char *extra; /* a scenario only this target runs, or NULL */
};

static const struct target targets[] = {
    {"1", 1, "nothing duplicated", 1, 0, 0, 0, NULL},
    {"2", 2, "nothing duplicated, nothing typed offline lost", 1, 1, 0, 0, NULL},
    {"3", 3, "nothing lost, typed order kept", 0, 1, 1, 1, NULL},
    {"4", 4, "nothing lost, nothing duplicated, order kept", 1, 1, 1, 1, NULL},
    {"durable", 4, "step 4's, and a sender killed and restarted loses nothing", 1, 1, 1, 1, "sender"},
    {"window", 4, "step 4's, and several messages in flight (inflight >= 2), order kept", 1, 1, 1, 1,
     "window"},
};
/* scenarios that belong to one target past step 4, run for it alone */
static const char *const extras[] = {"sender", "window"};

/* One cell of `lab --raw`: "<key> <step> typed=.. lost=.. ..." or "<key> <step> error <msg>" */
struct cell {
    int found, broke;
    int typed, lost, dup, gaveup, recovered, order, receiver, status, inflight;
    char error[256];
};

static struct {
    const struct target *t;
    char dir[PATH_BUF];
    const char *keys[MAX_KEYS];
    int nkeys;
    int no_acks; /* the client takes no ack flags: run the lab without them */
    char tmp[256];
} g;

static int field(const char *line, const char *name) {
    char key[32];
    snprintf(key, sizeof key, " %s=", name);
    const char *s = strstr(line, key);
    return s ? atoi(s + strlen(key)) : -1;
}

/* The cell of scenario key in a raw output file. */
static struct cell read_cell(const char *file, const char *key) {
    struct cell c;
    char line[1024], k[64];
    int step = 0, at = 0;
    memset(&c, 0, sizeof c);
    FILE *f = fopen(file, "r");
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (sscanf(line, "%63s %d %n", k, &step, &at) != 2 || strcmp(k, key) != 0 || step != g.t->step)
            continue;
        c.found = 1;
        c.broke = strncmp(line + at, "error", 5) == 0;
        snprintf(c.error, sizeof c.error, "%s", c.broke ? line + at + (line[at + 5] ? 6 : 5) : "");
        c.typed = field(line, "typed"), c.lost = field(line, "lost"), c.dup = field(line, "dup");
        c.gaveup = field(line, "gaveup"), c.recovered = field(line, "recovered");
        c.order = field(line, "order"), c.receiver = field(line, "receiver");
        c.status = field(line, "status"), c.inflight = field(line, "inflight");
    }
    if (f)
        fclose(f);
    return c;
}

/* Does this tree's lab have the scenario? (An extra comes with the lab
 * that measures it; until then it is reported missing, not run.) */
static int known(const char *key) {
    for (int i = 0; i < lab_nscenarios; i++)
        if (strcmp(lab_scenarios[i].key, key) == 0)
            return 1;
    return 0;
}

/* Why the cell breaks the target's guarantee ("" if it does not). */
static void judge(const char *key, const struct cell *c, char *why, size_t n) {
    const struct target *t = g.t;
    char must[32]; /* who must: "step 3", or "durable" */
    snprintf(must, sizeof must, t->extra ? "%s" : "step %s", t->name);
    why[0] = '\0';
    if (!known(key))
        snprintf(why, n, "%s: the lab has no such scenario (this tree's lab does not measure it yet)", key);
    else if (!c->found)
        snprintf(why, n, "%s: no result (the lab stopped: see above)", key);
    else if (c->broke)
        snprintf(why, n, "%s: the run broke: %s", key, c->error);
    else if (t->no_dup && c->dup != 0)
        snprintf(why, n, "%s: dup %d (%s must duplicate nothing)", key, c->dup, must);
    else if ((t->no_loss || (t->no_loss_down && strcmp(key, "down") == 0)) && c->lost != 0)
        snprintf(why, n, "%s: lost %d (%s must lose nothing%s)", key, c->lost, must,
                 t->no_loss ? "" : " typed while offline");
    else if (t->order && c->order != 1)
        snprintf(why, n, "%s: order 0 (%s must keep the typed order)", key, must);
    else if (strcmp(key, "window") == 0 && c->inflight < 2)
        snprintf(why, n, "%s: inflight %d (window must have 2 or more messages in flight)", key, c->inflight);
}

static void show_cell(const struct cell *c, char *out, size_t n) {
    if (!c->found)
        snprintf(out, n, "(no result)");
    else if (c->broke)
        snprintf(out, n, "the run broke");
    else
        snprintf(out, n, "lost %d dup %d order %s inflight %d", c->lost, c->dup, c->order == 1 ? "ok" : "BAD",
                 c->inflight);
}

/* ---- running the jobs ---- */

static _Noreturn void run(const char *const argv[], const char *file, int student);

/* fork + exec argv with stdout and stderr into file; env: CHAT_STEP_DIR
 * and CHAT_STEP set to the student's folder, or unset (the reference). */
static pid_t spawn(const char *const argv[], const char *file, int student) {
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    run(argv, file, student);
}

/* In a child: exec argv with stdout and stderr into file (see spawn). */
static _Noreturn void run(const char *const argv[], const char *file, int student) {
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
        _exit(127);
    char step[8];
    snprintf(step, sizeof step, "%d", g.t->step);
    if (student) {
        setenv("CHAT_STEP_DIR", g.dir, 1);
        setenv("CHAT_STEP", step, 1);
    } else {
        unsetenv("CHAT_STEP_DIR");
        unsetenv("CHAT_STEP");
    }
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

/* exit status, 128+signal if killed, 127 if it never ran (fork failed) */
static int wait_status(pid_t pid) {
    int st;
    pid_t r = -1;
    while (pid > 0 && (r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
        ;
    if (pid <= 0 || r != pid)
        return 127;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void print_file(const char *file, const char *indent) {
    char line[1024];
    FILE *f = fopen(file, "r");
    while (f && fgets(line, sizeof line, f))
        printf("%s%s", indent, line);
    if (f)
        fclose(f);
}

static int build(void) {
    char log[300], *argv[] = {"make", "-C", g.dir, NULL};
    snprintf(log, sizeof log, "%s/build", g.tmp);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execvp(argv[0], argv);
        _exit(127);
    }
    int rc = pid < 0 ? 1 : wait_status(pid);
    if (rc != 0) {
        printf("build: make -C %s failed:\n", g.dir);
        print_file(log, "    ");
    }
    unlink(log);
    return rc == 0;
}

/* The lab's scenarios for the target: every one, but the extras of other
 * targets (so a lab without the extra still reports the missing key). */
static void pick_keys(void) {
    for (int i = 0; i < lab_nscenarios && g.nkeys < MAX_KEYS - 1; i++) {
        int skip = 0;
        for (size_t e = 0; e < sizeof extras / sizeof extras[0]; e++)
            skip |= strcmp(lab_scenarios[i].key, extras[e]) == 0;
        if (!skip)
            g.keys[g.nkeys++] = lab_scenarios[i].key;
    }
    if (g.t->extra)
        g.keys[g.nkeys++] = g.t->extra;
}

static pid_t start_lab(const char *file, int student) {
    const char *argv[MAX_ARGS];
    char step[8];
    int n = 0;
    snprintf(step, sizeof step, "%d", g.t->step);
    argv[n++] = bin_path("tests/lab");
    argv[n++] = "--raw";
    argv[n++] = "--step";
    argv[n++] = step;
    argv[n++] = "--jobs";
    argv[n++] = "2";
    if (student && g.no_acks)
        argv[n++] = "--no-acks";
    for (int i = 0; i < g.nkeys; i++) {
        if (known(g.keys[i])) {
            argv[n++] = "--scenario";
            argv[n++] = g.keys[i];
        }
    }
    argv[n] = NULL;
    return spawn(argv, file, student);
}

/* ---- the report ---- */

/* The lab's table, yours beside the reference; returns the failures. */
static int report_lab(const char *yours, const char *ref, char *first, size_t n) {
    int bad = 0;
    char a[128], b[128], why[300];
    printf("%-8s %-40s %s\n", "scenario", "yours", "reference");
    for (int i = 0; i < g.nkeys; i++) {
        struct cell y = read_cell(yours, g.keys[i]), r = read_cell(ref, g.keys[i]);
        show_cell(&y, a, sizeof a);
        show_cell(&r, b, sizeof b);
        printf("%-8s %-40s %s\n", g.keys[i], a, b);
        judge(g.keys[i], &y, why, sizeof why);
        if (why[0]) {
            printf("    FAIL %s\n", why);
            if (bad++ == 0)
                snprintf(first, n, "%s", why);
        }
    }
    if (g.t->extra)
        printf("(%s goes past step 4: the reference step 4 fails the %s scenario by design)\n", g.t->name,
               g.t->extra);
    return bad;
}

/* The suite's FAIL lines, the messages under them, and its summary;
 * returns the failures. */
static int report_tests(const char *file, int rc, char *first, size_t n) {
    char line[1024];
    int failed = 0, in_fail = 0, hidden = 0, summary = 0, p, q;
    FILE *f = fopen(file, "r");
    while (f && fgets(line, sizeof line, f)) {
        int is_fail = strncmp(line, "FAIL ", 5) == 0;
        if (is_fail && failed++ == 0)
            snprintf(first, n, "test failed: %.*s", (int)strcspn(line + 5, "\n"), line + 5);
        if (in_fail && line[0] != ' ' && hidden > 0)
            printf("    ... %d lines more (the programs' output): CHAT_STEP_DIR=%s CHAT_STEP=%d "
                   "tests/chattests 'NAME'\n",
                   hidden, g.dir, g.t->step);
        in_fail = is_fail || (in_fail && line[0] == ' ');
        /* the test's own messages; the programs' output from "    --- " on is hidden */
        hidden = is_fail ? 0 : hidden + (in_fail && (hidden > 0 || strncmp(line, "    --- ", 8) == 0));
        if (sscanf(line, "%d passed, %d failed", &p, &q) == 2) {
            summary = 1;
            printf("tests: %s", line);
        } else if (in_fail && hidden == 0) {
            printf("%s", line);
        }
    }
    if (f)
        fclose(f);
    if (!summary) {
        printf("tests: the suite ended without a summary (status %d):\n", rc);
        print_file(file, "    ");
        snprintf(first, n, "the suite broke (status %d)", rc);
        return failed + 1;
    }
    return failed + (rc != 0 && failed == 0);
}

/* The first line of a file, newline cut. */
static void first_line(const char *file, char *out, size_t n) {
    FILE *f = fopen(file, "r");
    out[0] = '\0';
    if (f && fgets(out, (int)n, f))
        out[strcspn(out, "\n")] = '\0';
    if (f)
        fclose(f);
}

/* Does the client run with the step's flags (the contract)? It gets a
 * port nobody serves: it must keep trying, not stop at once. 1 if it
 * runs; 0 if it stopped, with the first line it printed in why. */
static int client_runs_with(int ack_flags, char *why, size_t n) {
    char client[PATH_BUF + 16], err[300];
    const char *argv[] = {client, "--port",
                          "1",    "--timeout",
                          "1000", "--reconnection-delay",
                          "50",   "--reconnection-delay-max",
                          "200",  "--ack-timeout",
                          "400",  "--retries",
                          "5",    NULL};
    int fds[2];
    snprintf(client, sizeof client, "%s/client", g.dir);
    snprintf(err, sizeof err, "%s/flags", g.tmp);
    if (!ack_flags)
        argv[9] = NULL;
    if (pipe(fds) != 0)
        return 1; /* not the student's fault: let the lab judge */
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return 1;
    }
    if (pid == 0) {
        dup2(fds[0], 0); /* stdin open, nothing typed */
        close(fds[1]);
        run(argv, err, 0);
    }
    close(fds[0]);
    long long end = now_ms() + 1000; /* a loaded machine may take a while to exec */
    int st = 0, done = 0;
    while (!done && now_ms() < end) {
        done = waitpid(pid, &st, WNOHANG) == pid;
        if (!done)
            nanosleep(&(struct timespec){0, 20 * 1000000}, NULL);
    }
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    close(fds[1]);
    first_line(err, why, n);
    unlink(err);
    return !done || (WIFEXITED(st) && WEXITSTATUS(st) == 0) ? 1 : 0;
}

/* A client that refuses the step's flags stops here, within a second,
 * instead of breaking every run of the lab after its deadlines. One
 * that takes all but the ack flags is a step without acks (a step 2
 * offered as step 3): the lab runs it as such, so that the verdict
 * names the scenario that shows what is missing. */
static int flags_accepted(void) {
    char why[200], plain_why[200];
    int acks = g.t->step >= 3;
    if (client_runs_with(acks, why, sizeof why))
        return 1;
    if (acks && client_runs_with(0, plain_why, sizeof plain_why)) {
        printf("grade: your client refuses --ack-timeout and --retries (it said: %s)\n"
               "grade: the lab runs it as a client without acks; the graded tests are not run (they all "
               "pass those flags)\n",
               why);
        g.no_acks = 1;
        return 1;
    }
    printf("grade: FAIL step %s: the client stopped at once with step %d's flags (%s): %s\n", g.t->name,
           g.t->step,
           acks ? "--timeout, --reconnection-delay(-max), --ack-timeout, --retries"
                : "--timeout, --reconnection-delay, --reconnection-delay-max",
           why);
    return 0;
}

static int executable(const char *name) {
    char path[PATH_BUF + 16];
    snprintf(path, sizeof path, "%s/%s", g.dir, name);
    if (access(path, X_OK) == 0)
        return 1;
    printf("grade: FAIL step %s: make -C %s built no %s\n", g.t->name, g.dir, name);
    return 0;
}

static void remove_tmp(const char *const names[], int n) {
    char path[300];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", g.tmp, names[i]);
        unlink(path);
    }
    rmdir(g.tmp);
}

/* The three jobs at once (each runs its own runs two at a time), then
 * the report and the verdict. */
static int grade(void) {
    static const char *const files[] = {"yours", "reference", "tests"};
    char out[3][300], lab_why[300] = "", test_why[300] = "";
    for (int i = 0; i < 3; i++)
        snprintf(out[i], sizeof out[i], "%s/%s", g.tmp, files[i]);
    if (!executable("server") || !executable("client") || !flags_accepted()) {
        rmdir(g.tmp);
        return 1;
    }
    pick_keys();
    const char *targv[] = {bin_path("tests/chattests"), "--graded", g.t->name, NULL};
    setenv("TEST_JOBS", "2", 0);
    unsetenv("TEST_SUMMARY_FILE"); /* graded inside make test: not the suite's own count */
    pid_t yours = start_lab(out[0], 1), ref = start_lab(out[1], 0);
    pid_t tests = g.no_acks ? 0 : spawn(targv, out[2], 1);
    int lab_rc = wait_status(yours);
    wait_status(ref);
    int tests_rc = g.no_acks ? 0 : wait_status(tests);
    if (lab_rc != 0 && lab_rc != 1) {
        printf("the lab (status %d) said:\n", lab_rc);
        print_file(out[0], "    ");
    }
    int lab_bad = report_lab(out[0], out[1], lab_why, sizeof lab_why);
    int tests_bad = 1;
    if (g.no_acks) {
        printf("tests: not run: the client refuses step %d's flags\n", g.t->step);
        snprintf(test_why, sizeof test_why, "the client refuses step %d's flags", g.t->step);
    } else {
        tests_bad = report_tests(out[2], tests_rc, test_why, sizeof test_why);
    }
    remove_tmp(files, 3);
    if (lab_bad == 0 && tests_bad == 0) {
        printf("grade: PASS step %s: %s, in all %d scenarios; every graded test passed\n", g.t->name,
               g.t->guarantee, g.nkeys);
        return 0;
    }
    char tests_said[64];
    if (g.no_acks)
        snprintf(tests_said, sizeof tests_said, "tests not run");
    else
        snprintf(tests_said, sizeof tests_said, "%d test(s) failed", tests_bad);
    printf("grade: FAIL step %s: %d scenario(s) failed, %s; first: %s\n", g.t->name, lab_bad, tests_said,
           lab_bad ? lab_why : test_why);
    return 1;
}

static const struct target *find_target(const char *name) {
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        if (strcmp(targets[i].name, name) == 0)
            return &targets[i];
    return NULL;
}

/* g.dir = dir made absolute: the tests and the lab run from elsewhere */
static int absolute(const char *dir) {
    char cwd[PATH_BUF];
    if (access(dir, X_OK) != 0 || (dir[0] != '/' && getcwd(cwd, sizeof cwd) == NULL))
        return 0;
    int n = dir[0] == '/' ? snprintf(g.dir, sizeof g.dir, "%s", dir)
                          : snprintf(g.dir, sizeof g.dir, "%s/%s", cwd, dir);
    return n > 0 && (size_t)n < sizeof g.dir;
}

static void usage(void) {
    fprintf(stderr, "usage: tests/grade STEP DIR   (make grade STEP=N DIR=path)\n"
                    "  STEP: 1, 2, 3, 4, durable or window; DIR: a folder whose Makefile builds server and "
                    "client\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc != 3 || argv[2][0] == '\0' || (g.t = find_target(argv[1])) == NULL)
        usage();
    if (!absolute(argv[2])) {
        printf("grade: FAIL step %s: no folder %s\n", argv[1], argv[2]);
        return 1;
    }
    harness_init(argv[0], 60);
    snprintf(g.tmp, sizeof g.tmp, "%s/chatgrade.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(g.tmp) == NULL) {
        perror("grade: mkdtemp");
        return 1;
    }
    printf("grade: %s as step %s (%s)\n", argv[2], g.t->name, g.t->guarantee);
    fflush(stdout);
    if (!build()) {
        printf("grade: FAIL step %s: make -C %s failed\n", g.t->name, g.dir);
        rmdir(g.tmp);
        return 1;
    }
    return grade();
}
