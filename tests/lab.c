/* lab.c -- the delivery lab (make demo): which faults lose or duplicate
 * messages, at each step, measured.
 *
 *   tests/lab [--seed N] [--scenario KEY]... [--step N]... [--jobs N] [--raw]
 *
 * Every scenario of scenarios.c runs against every step: real servers,
 * real clients, the fault proxy, SIGKILL, a locked SQLite file. Each run
 * is its own process (a harness subtest with a private directory and
 * ports), several at a time. The table counts, per cell, the typed
 * messages that are in no row (lost) and the extra rows (dup); under a
 * scenario's cells, only when there is news, the messages the sender
 * gave up (and of those, the ones stored anyway) and a broken order, and
 * for some scenarios the most messages the sender had in flight.
 *
 * --raw prints, instead of the table, one line per run and nothing else
 * on stdout, for programs (a grader) to read. Fields may be added at the
 * end of a line, never changed:
 *   <key> <step> typed=N lost=N dup=N gaveup=N recovered=N order=0|1
 *       receiver=0|1 status=N inflight=N
 *   <key> <step> error <why, on one line> */
#include "harness.h"
#include "scenarios.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_RUNS 64

/* Under the table. Our "lost" is wider than Jepsen's (a queue checker's)
 * "lost", and the difference is the lesson of steps 1-3. */
#define LEGEND                                                                                               \
    "lost: typed, never stored: Jepsen's \"lost\" (acked, never read; never expected here: a row is\n"       \
    "  committed before its ack) plus the losses never acked (steps 1-2 ack nothing).\n"                     \
    "dup: extra rows. gave up: lines the sender gave up on (exit status 1); stored anyway: of those,\n"      \
    "  the ones in a row (Jepsen's \"recovered\"): the sender believes lost what others read.\n"             \
    "in flight: MSGs sent on one connection, not yet acked. \"!\": the receiver's output differed.\n"

#define DEFAULT_SEED 42
#define DEFAULT_JOBS 4

struct run {
    int scenario, step;
    pid_t pid;
    char result[512]; /* a file: the outcome, or why the run broke */
    struct outcome out;
    int ok; /* the run completed */
    char error[200];
};

static struct {
    unsigned seed;
    int jobs, color, raw;
    int want_scenario[16], want_step[16], any_scenario, any_step;
    struct run runs[MAX_RUNS];
    int nruns;
    char dir[256];
} lab;

/* The run a worker process performs; set before its subtest forks. */
static struct run *current;

static void run_cell(void) {
    struct outcome out;
    lab_run(lab_steps[current->step].step, current->scenario, lab.seed, &out);
    FILE *f = fopen(current->result, "w");
    if (f != NULL) {
        fprintf(f, "%d %d %d %d %d %d %d %d %d %d\n", out.typed, out.lost, out.dup, out.rows, out.receiver_ok,
                out.sender_status, out.gave_up, out.recovered, out.order_kept, out.inflight);
        fclose(f);
    }
}

/* A worker: run the cell as a subtest, keep the messages of a broken run. */
static void worker(struct run *r) {
    char messages[4096];
    current = r;
    int rc = subtest(run_cell, messages, sizeof messages);
    if (rc != 0) {
        FILE *f = fopen(r->result, "w");
        if (f != NULL) {
            fprintf(f, "error %s\n", messages);
            fclose(f);
        }
    }
    _exit(0);
}

static void read_result(struct run *r) {
    FILE *f = fopen(r->result, "r");
    struct outcome *o = &r->out;
    r->ok = f != NULL && fscanf(f, "%d %d %d %d %d %d %d %d %d %d", &o->typed, &o->lost, &o->dup, &o->rows,
                                &o->receiver_ok, &o->sender_status, &o->gave_up, &o->recovered,
                                &o->order_kept, &o->inflight) == 10;
    if (!r->ok) {
        snprintf(r->error, sizeof r->error, "%s", "the run broke (run it alone to see why)");
        if (f != NULL && fseek(f, 0, SEEK_SET) == 0 && fgets(r->error, sizeof r->error, f) != NULL) {
            r->error[strcspn(r->error, "\n")] = '\0';
        }
        /* The worker wrote "error <why>": keep the why. */
        if (strncmp(r->error, "error ", 6) == 0) {
            memmove(r->error, r->error + 6, strlen(r->error + 6) + 1);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
}

static void progress(int done) {
    if (lab.raw) {
        return;
    }
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\rlab: %d of %d runs done", done, lab.nruns);
    } else if (done == lab.nruns) {
        fprintf(stderr, "lab: %d runs done\n", done);
    }
}

/* Run everything, at most lab.jobs at a time. */
static void run_all(void) {
    int next = 0, running = 0, done = 0;
    progress(0);
    while (done < lab.nruns) {
        while (running < lab.jobs && next < lab.nruns) {
            struct run *r = &lab.runs[next++];
            fflush(NULL);
            r->pid = fork();
            if (r->pid == 0) {
                worker(r);
            }
            running += r->pid > 0;
        }
        int status;
        pid_t pid = wait(&status);
        if (pid == -1 && errno == EINTR) {
            continue;
        }
        for (int i = 0; i < lab.nruns && pid > 0; i++) {
            if (lab.runs[i].pid == pid) {
                read_result(&lab.runs[i]);
                running--;
                progress(++done);
            }
        }
        if (pid == -1) {
            break;
        }
    }
    if (isatty(STDERR_FILENO) && !lab.raw) {
        fputc('\n', stderr);
    }
}

/* ---------------------------------------------------------------------
 * --raw: one line per run, for programs
 * ------------------------------------------------------------------- */

/* An error message on one line: no newline or other control byte. */
static void one_line(char *s) {
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < ' ') {
            *s = ' ';
        }
    }
}

static int print_raw(void) {
    int rc = 0;
    for (int i = 0; i < lab.nruns; i++) {
        struct run *r = &lab.runs[i];
        const struct outcome *o = &r->out;
        printf("%s %d ", lab_scenarios[r->scenario].key, lab_steps[r->step].step);
        if (!r->ok) {
            one_line(r->error);
            printf("error %s\n", r->error);
            rc = 1;
            continue;
        }
        printf("typed=%d lost=%d dup=%d gaveup=%d recovered=%d order=%d receiver=%d status=%d inflight=%d\n",
               o->typed, o->lost, o->dup, o->gave_up, o->recovered, o->order_kept, o->receiver_ok,
               o->sender_status, o->inflight);
    }
    return rc;
}

/* ---------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------- */

static const char *paint(int lost, int dup) {
    if (!lab.color) {
        return "";
    }
    return lost ? "\033[31m" : dup ? "\033[33m" : "\033[32m";
}

static struct run *find_run(int scenario, int step) {
    for (int i = 0; i < lab.nruns; i++) {
        if (lab.runs[i].scenario == scenario && lab.runs[i].step == step) {
            return &lab.runs[i];
        }
    }
    return NULL;
}

/* The last wanted column: no padding after it. */
static int last_step(void) {
    int last = 0;
    for (int s = 0; s < lab_nsteps; s++) {
        last = lab.want_step[s] ? s : last;
    }
    return last;
}

static int width(int s) {
    return s == last_step() ? 0 : 16;
}

static void print_cell(const struct run *r) {
    char cell[32];
    if (!r->ok) {
        snprintf(cell, sizeof cell, "error");
    } else {
        snprintf(cell, sizeof cell, "lost %d, dup %d%s", r->out.lost, r->out.dup,
                 r->out.receiver_ok ? "" : " !");
    }
    printf("  %s%-*s%s", paint(!r->ok || r->out.lost, r->out.dup), width(r->step), cell,
           lab.color ? "\033[0m" : "");
}

static void print_header(void) {
    printf("%-38s", "");
    for (int s = 0; s < lab_nsteps; s++) {
        if (lab.want_step[s]) {
            printf("  step %-*d", width(s) ? width(s) - 5 : 0, lab_steps[s].step);
        }
    }
    printf("\n%-38s", "");
    for (int s = 0; s < lab_nsteps; s++) {
        if (lab.want_step[s]) {
            printf("  %-*s", width(s), lab_steps[s].guarantee);
        }
    }
    printf("\n");
}

static int receiver_ok(const struct outcome *o) {
    return o->receiver_ok;
}

static int order_kept(const struct outcome *o) {
    return o->order_kept;
}

/* A last row: in how many runs of each step a property held. */
static void print_summary_row(const char *label, int (*holds)(const struct outcome *)) {
    printf("%-38s", label);
    for (int s = 0; s < lab_nsteps; s++) {
        int good = 0, all = 0;
        for (int i = 0; i < lab.nruns; i++) {
            if (lab.runs[i].step == s) {
                all++;
                good += lab.runs[i].ok && holds(&lab.runs[i].out);
            }
        }
        if (lab.want_step[s]) {
            printf("  %d of %-*d", good, width(s) ? width(s) - 5 : 0, all);
        }
    }
    printf("\n");
}

/* ---------------------------------------------------------------------
 * Lines under a scenario's row, shown only when they have news: what the
 * sender gave up, a broken order, and for some scenarios the most
 * messages in flight.
 * ------------------------------------------------------------------- */

static void gave_up_cell(const struct outcome *o, char *cell, size_t n) {
    if (o->recovered > 0) {
        snprintf(cell, n, "%d, %d stored", o->gave_up, o->recovered);
    } else {
        snprintf(cell, n, "%d", o->gave_up);
    }
}

static void order_cell(const struct outcome *o, char *cell, size_t n) {
    snprintf(cell, n, "%s", o->order_kept ? "yes" : "NO");
}

static void inflight_cell(const struct outcome *o, char *cell, size_t n) {
    snprintf(cell, n, "%d", o->inflight);
}

static int gave_up_news(const struct outcome *o) {
    return o->gave_up > 0;
}

static int order_news(const struct outcome *o) {
    return !o->order_kept;
}

static void print_subrow(int sc, const char *label, void (*format)(const struct outcome *, char *, size_t),
                         int (*news)(const struct outcome *)) {
    int any = news == NULL;
    for (int s = 0; s < lab_nsteps && !any; s++) {
        const struct run *r = lab.want_step[s] ? find_run(sc, s) : NULL;
        any = r != NULL && r->ok && news(&r->out);
    }
    if (!any) {
        return;
    }
    printf("  %-36s", label);
    for (int s = 0; s < lab_nsteps; s++) {
        const struct run *r = lab.want_step[s] ? find_run(sc, s) : NULL;
        char cell[32] = "-";
        if (r != NULL && r->ok) {
            format(&r->out, cell, sizeof cell);
        }
        if (r != NULL) {
            printf("  %-*s", width(s), cell);
        }
    }
    printf("\n");
}

static void print_errors(void) {
    for (int i = 0; i < lab.nruns; i++) {
        const struct run *r = &lab.runs[i];
        if (!r->ok) {
            printf("error in \"%s\", step %d: %s\n", lab_scenarios[r->scenario].title,
                   lab_steps[r->step].step, r->error);
        }
    }
}

static int print_table(void) {
    printf("The delivery lab: numbered messages typed into a sender; a receiver reads;\n"
           "both go through the fault proxy. Seed %u.\n\n",
           lab.seed);
    print_header();
    for (int sc = 0; sc < lab_nscenarios; sc++) {
        if (!lab.want_scenario[sc]) {
            continue;
        }
        printf("%-38s", lab_scenarios[sc].title);
        for (int s = 0; s < lab_nsteps; s++) {
            if (lab.want_step[s]) {
                print_cell(find_run(sc, s));
            }
        }
        printf("\n");
        print_subrow(sc, "gave up (of them, stored anyway)", gave_up_cell, gave_up_news);
        print_subrow(sc, "stored in the order typed", order_cell, order_news);
        if (lab_scenarios[sc].flags & SHOW_INFLIGHT) {
            print_subrow(sc, "most messages in flight", inflight_cell, NULL);
        }
        printf("    %s\n", lab_scenarios[sc].why);
    }
    print_summary_row("stored in the order typed", order_kept);
    print_summary_row("receiver saw every row once, in order", receiver_ok);
    printf("\n%s", LEGEND);
    print_errors();
    for (int i = 0; i < lab.nruns; i++) {
        if (!lab.runs[i].ok) {
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------- */

static void usage(void) {
    fprintf(
        stderr,
        "usage: lab [--seed N] [--scenario KEY]... [--step N]... [--jobs N] [--raw] [--no-acks]\nscenarios:");
    for (int i = 0; i < lab_nscenarios; i++) {
        fprintf(stderr, " %s", lab_scenarios[i].key);
    }
    fprintf(stderr, "\n");
    exit(2);
}

/* --scenario KEY or --step N: add one row or one column to the table. */
static void pick(const char *opt, const char *val) {
    int found = 0;
    if (strcmp(opt, "--scenario") == 0) {
        lab.any_scenario = 1;
        for (int i = 0; i < lab_nscenarios; i++) {
            if (strcmp(val, lab_scenarios[i].key) == 0) {
                lab.want_scenario[i] = found = 1;
            }
        }
    } else if (strcmp(opt, "--step") == 0) {
        lab.any_step = 1;
        for (int s = 0; s < lab_nsteps; s++) {
            if (atoi(val) == lab_steps[s].step) {
                lab.want_step[s] = found = 1;
            }
        }
    }
    if (!found) {
        usage();
    }
}

static void parse_options(int argc, char **argv) {
    lab.seed = DEFAULT_SEED;
    lab.jobs = DEFAULT_JOBS;
    for (int i = 1; i < argc; i += 2) {
        if (strcmp(argv[i], "--raw") == 0) {
            lab.raw = 1;
            i--; /* a flag: no value to skip */
        } else if (strcmp(argv[i], "--no-acks") == 0) {
            lab_no_acks = 1;
            i--;
        } else if (i + 1 == argc) {
            usage();
        } else if (strcmp(argv[i], "--seed") == 0) {
            lab.seed = (unsigned)strtoul(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--jobs") == 0) {
            lab.jobs = atoi(argv[i + 1]) > 0 ? atoi(argv[i + 1]) : 1;
        } else {
            pick(argv[i], argv[i + 1]);
        }
    }
    /* Nothing picked: everything. */
    for (int i = 0; i < lab_nscenarios; i++) {
        lab.want_scenario[i] |= !lab.any_scenario;
    }
    for (int s = 0; s < lab_nsteps; s++) {
        lab.want_step[s] |= !lab.any_step;
    }
}

/* One run per wanted (scenario, step), with a result file in a private
 * directory. Steps whose programs are not built are left out. */
static void plan_runs(void) {
    snprintf(lab.dir, sizeof lab.dir, "%s/chatlab.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(lab.dir) == NULL) {
        perror("lab: mkdtemp");
        exit(1);
    }
    for (int s = 0; s < lab_nsteps; s++) {
        char rel[32];
        snprintf(rel, sizeof rel, "step%d/server", lab_steps[s].step);
        lab.want_step[s] &= access(bin_path(rel), X_OK) == 0;
        for (int sc = 0; sc < lab_nscenarios && lab.want_step[s]; sc++) {
            struct run *r = &lab.runs[lab.nruns++];
            if (!lab.want_scenario[sc]) {
                lab.nruns--;
                continue;
            }
            r->scenario = sc;
            r->step = s;
            snprintf(r->result, sizeof r->result, "%s/run%d", lab.dir, lab.nruns);
        }
    }
}

static void remove_results(void) {
    for (int i = 0; i < lab.nruns; i++) {
        unlink(lab.runs[i].result);
    }
    rmdir(lab.dir);
}

int main(int argc, char **argv) {
    harness_init(argv[0], 60);
    parse_options(argc, argv);
    plan_runs();
    lab.color = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
    if (!lab.raw) {
        fprintf(stderr, "lab: %d runs, %d at a time (seed %u)\n", lab.nruns, lab.jobs, lab.seed);
    }
    run_all();
    int rc = lab.raw ? print_raw() : print_table();
    remove_results();
    return rc;
}
