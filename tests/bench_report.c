/* tests/bench_report.c -- "make bench": the tables, the notes under a
 * row, the bound and the targets. */
#include "bench.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

/* 1234567 -> "1,234,567" */
const char *thousands(long long v, char *out, size_t n) {
    char raw[32];
    int len = snprintf(raw, sizeof raw, "%lld", v < 0 ? -v : v), j = 0;
    if (v < 0 && j < (int)n - 1) {
        out[j++] = '-';
    }
    for (int i = 0; i < len && j < (int)n - 1; i++) {
        if (i > 0 && (len - i) % 3 == 0 && j < (int)n - 2) {
            out[j++] = ',';
        }
        out[j++] = raw[i];
    }
    out[j] = '\0';
    return out;
}

/* Microseconds as milliseconds with 3 significant-ish digits. */
static const char *ms_text(long long us, char *out, size_t n) {
    double ms = (double)us / 1000.0;
    if (us < 0) {
        snprintf(out, n, "-");
    } else if (ms >= 100) {
        snprintf(out, n, "%.0f", ms);
    } else if (ms >= 10) {
        snprintf(out, n, "%.1f", ms);
    } else if (ms >= 1) {
        snprintf(out, n, "%.2f", ms);
    } else {
        snprintf(out, n, "%.3f", ms);
    }
    return out;
}

static const char *mb_text(long kb, char *out, size_t n) {
    if (kb < 0) {
        snprintf(out, n, "?");
    } else {
        snprintf(out, n, "%.1f MB", (double)kb / 1024.0);
    }
    return out;
}

static const char *guarantee(int step) {
    static const char *const names[] = {"", "at most once", "buffered", "at least once", "exactly once"};
    return names[step];
}

/* Other work on the machine skews every figure: say so (Linux only). */
void print_load(const char *when) {
    FILE *f = fopen("/proc/loadavg", "r");
    double load;
    if (f != NULL) {
        if (fscanf(f, "%lf", &load) == 1 && load >= 1.0) {
            printf("note: load average %.2f %s: other processes share the CPUs.\n", load, when);
        }
        fclose(f);
    }
}

void print_header(void) {
    struct utsname u;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (uname(&u) == -1) {
        snprintf(u.sysname, sizeof u.sysname, "?");
        snprintf(u.machine, sizeof u.machine, "?");
    }
    printf("The price of each guarantee: %s\n", opt.cmdline);
    printf("%ld CPUs, %s %s, SQLite %s; every run: a fresh db, K senders, one receiver.\n", cpus, u.sysname,
           u.machine, sqlite3_libversion());
    print_load("before the run");
    printf("\n");
    printf("%-44s%-7s%-34s%s\n", "", "server", "latency (ms), raw senders", "peak RSS (MB)");
    printf("%-4s %-13s %7s %7s %8s %6s %8s %6s %10s %6s %6s %6s\n", "step", "guarantee", "senders", "rows",
           "msg/s", "us/row", "ack p50", "p99", "arrive p50", "p99", "server", "client");
}

static const char *mb_col(long kb, char *out, size_t n) {
    if (kb <= 0) {
        snprintf(out, n, "?");
    } else {
        snprintf(out, n, "%.1f", (double)kb / 1024.0);
    }
    return out;
}

/* "! note", wrapped at 96 columns under the given indent. */
static void print_note(const char *note, const char *indent) {
    const char *p = note;
    size_t col;
    if (*note == '\0') {
        return;
    }
    col = (size_t)printf("%s!", indent);
    for (;;) {
        while (*p == ' ') {
            p++;
        }
        size_t len = strcspn(p, " ");
        if (len == 0) {
            break;
        }
        if (col + 1 + len > 96 && col > strlen(indent) + 1) {
            printf("\n%s ", indent);
            col = strlen(indent) + 1;
        }
        col += (size_t)printf(" %.*s", (int)len, p);
        p += len;
    }
    printf("\n");
}

void print_row(const struct result *r) {
    char rows[32], rate[32], cpu[16], a50[16], a99[16], r50[16], r99[16], skb[16], ckb[16];
    if (r->rows > 0 && r->server_cpu_us > 0) {
        snprintf(cpu, sizeof cpu, "%.0f", (double)r->server_cpu_us / (double)r->rows);
    } else {
        snprintf(cpu, sizeof cpu, "?");
    }
    printf("%-4d %-13s %7d %7s %8s %6s %8s %6s %10s %6s %6s %6s\n", r->step, guarantee(r->step), r->k,
           thousands(r->rows, rows, sizeof rows), thousands((long long)(r->rate + 0.5), rate, sizeof rate),
           cpu, ms_text(r->ack50, a50, sizeof a50), ms_text(r->ack99, a99, sizeof a99),
           ms_text(r->arr50, r50, sizeof r50), ms_text(r->arr99, r99, sizeof r99),
           mb_col(r->server_kb, skb, sizeof skb), mb_col(r->client_kb, ckb, sizeof ckb));
    print_note(r->problem, "     ");
    fflush(stdout);
}

void print_legend(const char *journal, int journal_same) {
    char a[32], b[32];
    printf("\nrows, msg/s: %s lines typed into K real clients (N/K each); msg/s = rows stored / time from\n",
           thousands(opt.messages, a, sizeof a));
    printf("the first line typed to the receiver holding every row. us/row: server CPU time per row.\n");
    printf("ack, arrive: %s lines from K raw senders keeping the step's discipline (steps 1-2 pipeline,\n",
           thousands(opt.lat_messages, a, sizeof a));
    printf("up to %s lines each; steps 3-4 one in flight): typed -> its ACK, typed -> its CHAT at the\n",
           thousands(opt.window, b, sizeof b));
    printf("receiver. Peak RSS: the server and the largest sender client of the throughput run.\n");
    printf("SQLite: journal_mode=%s (read back from every db file%s); synchronous=NORMAL (set by\n"
           "common/store.c on each connection; not stored in the file, so it cannot be read back).\n",
           journal, journal_same ? "" : "; NOT THE SAME in every file");
}

static const struct result *find_result(const struct result *res, int n, int step, int k) {
    for (int i = 0; i < n; i++) {
        if (res[i].step == step && res[i].k == k) {
            return &res[i];
        }
    }
    return NULL;
}

/* A rate is messages over time: its bound takes the mean round trip, not
 * the median. On a virtual machine the round trips fall in two heaps (two
 * processes that share a CPU pass the turn in a few microseconds; on two
 * CPUs each turn waits for an interrupt, tens of them), and a median
 * picks one heap, so it moved the bound fivefold from run to run. */
static double rate_of(double round_trip_us, double insert_us) {
    return 1e6 / (round_trip_us + insert_us);
}

static double bound_rate(const struct bound *b, int step) {
    return rate_of(b->mean, b->insert[step]);
}

void print_bound(const struct bound *b, const struct result *res, int n) {
    char x[32], y[32], z[32];
    printf("\nThe bound for one sender with one message in flight (steps 3-4): a round trip + an insert.\n");
    printf("  loopback round trip: mean %.0f us (p10 %lld, median %lld, p90 %lld); %d x %s blocking\n",
           b->mean, b->p10, b->p50, b->p90, RTT_TRIALS, thousands(RTT_ROUNDS, x, sizeof x));
    printf("  ping-pongs, each between two fresh processes. insert: %.1f us (steps 1-3), %.1f us (step\n",
           b->insert[3], b->insert[4]);
    printf("  4, UNIQUE offset), mean of %s, each its own transaction, with the server's table and\n"
           "  pragmas. A rate is a mean, so the bound takes the mean round trip.\n",
           thousands(BOUND_ROUNDS, x, sizeof x));
    for (int step = 3; step <= 4; step++) {
        const struct result *r = find_result(res, n, step, 1);
        double bound = bound_rate(b, step);
        printf("  step %d: bound %s msg/s (%s with the median round trip, %s with its p90)\n", step,
               thousands((long long)(bound + 0.5), x, sizeof x),
               thousands((long long)(rate_of((double)b->p50, b->insert[step]) + 0.5), y, sizeof y),
               thousands((long long)(rate_of((double)b->p90, b->insert[step]) + 0.5), z, sizeof z));
        if (r != NULL) {
            printf("          1 sender: %s msg/s real client (%.0f%%), %s raw (%.0f%%); server CPU %.0f "
                   "us/row\n",
                   thousands((long long)(r->rate + 0.5), y, sizeof y), 100 * r->rate / bound,
                   thousands((long long)(r->lat_rate + 0.5), z, sizeof z), 100 * r->lat_rate / bound,
                   r->rows > 0 ? (double)r->server_cpu_us / (double)r->rows : 0.0);
        }
    }
    printf("  many senders: an insert in a transaction of its own would cap them at %s msg/s (step 4);\n"
           "  the server commits the rows of a loop turn together, so they can go past it.\n",
           thousands((long long)(1e6 / b->insert[4] + 0.5), x, sizeof x));
}

void print_idle(const struct result *idle, const struct result *res, int n) {
    char a[32], b[32], c[32];
    printf("\nServer memory with %s idle connections (step 4; each said HELLO and reads everything)\n",
           thousands(opt.idle, a, sizeof a));
    printf("while %d real client%s chat%s %s rows (%s msg/s): server peak RSS %s.\n", IDLE_SENDERS,
           IDLE_SENDERS == 1 ? "" : "s", IDLE_SENDERS == 1 ? "s" : "", thousands(idle->rows, a, sizeof a),
           thousands((long long)(idle->rate + 0.5), b, sizeof b), mb_text(idle->server_kb, c, sizeof c));
    const struct result *base = find_result(res, n, 4, IDLE_SENDERS);
    if (base != NULL && base->server_kb > 0 && idle->server_kb > 0) {
        printf("Without them (the step 4 row with %d sender%s): %s; about %.1f KB per idle connection.\n",
               IDLE_SENDERS, IDLE_SENDERS == 1 ? "" : "s", mb_text(base->server_kb, a, sizeof a),
               (double)(idle->server_kb - base->server_kb) / (double)opt.idle);
    }
    print_note(idle->problem, "  ");
}

void print_stdin(const struct stdin_result *small, const struct stdin_result *big, long stop) {
    char a[32], b[32];
    printf("\nClient memory: one step 4 client whose stdin is a file, stopped (SIGTERM) once %s rows\n"
           "are stored: it holds at most its send buffer, so the size of its stdin must not matter.\n",
           thousands(stop, a, sizeof a));
    const struct stdin_result *both[] = {small, big};
    for (int i = 0; i < 2; i++) {
        printf("  stdin %9s lines: peak RSS %s\n", thousands(both[i]->lines, a, sizeof a),
               mb_text(both[i]->rss_kb, b, sizeof b));
        print_note(both[i]->problem, "    ");
    }
}

static void target_idle(const struct result *idle) {
    char a[32], b[32], label[80];
    snprintf(label, sizeof label,
             "server with %s idle connections, < 10 MB:", thousands(opt.idle, a, sizeof a));
    printf("  %-52s %s: %s\n", label, mb_text(idle->server_kb, b, sizeof b),
           idle->server_kb > 0 && idle->server_kb < 10 * 1024 && idle->rows == idle->total ? "met"
                                                                                           : "NOT MET");
}

static void target_stdin(const struct stdin_result *small, const struct stdin_result *big) {
    char a[32], b[32], c[32], label[80];
    int flat = !big->problem[0] && !small->problem[0] && big->rss_kb > 0 && small->rss_kb > 0 &&
               big->rss_kb <= small->rss_kb + small->rss_kb / 10 + 256;
    snprintf(label, sizeof label,
             "client memory flat with %s lines on stdin:", thousands(big->lines, a, sizeof a));
    printf("  %-52s %s vs %s: %s\n", label, mb_text(big->rss_kb, b, sizeof b),
           mb_text(small->rss_kb, c, sizeof c), flat ? "met" : "NOT MET");
}

static void target_bound(const struct result *res, int n, const struct bound *bnd) {
    char d[32], label[80];
    for (int step = 3; step <= 4; step++) {
        const struct result *r = find_result(res, n, step, 1);
        if (r != NULL) {
            snprintf(label, sizeof label, "step %d, 1 sender, against its bound of %s msg/s:", step,
                     thousands((long long)(bound_rate(bnd, step) + 0.5), d, sizeof d));
            printf("  %-52s %.0f%% (real client), %.0f%% (raw)\n", label,
                   100 * r->rate / bound_rate(bnd, step), 100 * r->lat_rate / bound_rate(bnd, step));
        }
    }
}

/* What the task set, each with its figure: read, not enforced. */
void print_targets(const struct result *res, int n, const struct result *idle,
                   const struct stdin_result *small, const struct stdin_result *big,
                   const struct bound *bnd) {
    char a[32];
    const struct result *t4 = find_result(res, n, 4, 10);
    if (t4 != NULL || opt.idle > 0 || opt.stdin_lines > 0 ||
        (opt.bound && find_result(res, n, 3, 1) != NULL) ||
        (opt.bound && find_result(res, n, 4, 1) != NULL)) {
        printf("\nTargets (read, not enforced):\n");
    }
    if (t4 != NULL) {
        printf("  %-52s %s msg/s: %s\n", "step 4, 10 senders, synchronous=NORMAL, > 20,000 msg/s:",
               thousands((long long)(t4->rate + 0.5), a, sizeof a),
               t4->rate > 20000 && t4->rows == t4->total ? "met" : "NOT MET");
    }
    if (opt.idle > 0) {
        target_idle(idle);
    }
    if (opt.stdin_lines > 0) {
        target_stdin(small, big);
    }
    if (opt.bound) {
        target_bound(res, n, bnd);
    }
}
