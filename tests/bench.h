/* tests/bench.h -- what the parts of "make bench" share (see bench.c for
 * the method):
 *   bench.c         main, the options, the bench's own process: its
 *                   temporary directory, its children, dying cleanly
 *   bench_prog.c    programs under a reaper that reports peak memory, and
 *                   the server of a run
 *   bench_load.c    the runs: raw protocol peers (common/line.h, buf.h,
 *                   net.h), real clients typed into, the bound
 *   bench_report.c  the tables and the targets */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <sys/types.h>

#define MAX_SENDERS 1000
#define MAX_KIDS 8192
#define PATH_LEN 4096
#define STALL_MS 10000 /* no new row for this long: the run is over, whatever it got */
#define FEED_CAP 16384 /* bytes typed into one client's stdin per write */
#define BOUND_ROUNDS 20000 /* inserts */
#define RTT_TRIALS 20 /* fresh pairs of processes */
#define RTT_ROUNDS 1000 /* round trips each */
#define IDLE_SENDERS 1
#define MAX_IDLE 1000

#if defined(__GNUC__) || defined(__clang__)
#define BENCH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BENCH_PRINTF(f, a)
#endif

struct bench_opt {
    long messages, lat_messages, window, idle, idle_messages, stdin_lines, stdin_stop;
    int senders[16], nsenders;
    int steps[4], nsteps;
    int bound;
    const char *cmdline;
};
extern struct bench_opt opt;
extern char self_path[PATH_LEN + 32]; /* this binary, to start reapers */

/* ---- bench.c: the bench's own process ---- */

long long now_us(void); /* CLOCK_MONOTONIC, microseconds */
_Noreturn void die(const char *fmt, ...) BENCH_PRINTF(1, 2); /* kills every child, removes tmp_dir */
void check_interrupted(void); /* die() if Ctrl-C or SIGTERM came */
void *xcalloc(size_t n, size_t size); /* calloc(), or die() */
const char *tmp_path(const char *fmt, ...) BENCH_PRINTF(1, 2); /* in the private directory; 4 buffers */
void sleep_ms(int ms);
void remember_kid(pid_t pid); /* killed on any exit, until forgotten */
void forget_kid(pid_t pid);

/* ---- bench_prog.c: programs under a reaper ---- */

struct prog {
    pid_t reaper, pid;
    int res_fd; /* the reaper's report: "<pid>\n" then "<status> <maxrss-kb>\n" */
    char res[128];
    size_t res_len;
    int finished, status;
    long rss_kb;
    long long cpu_us; /* user + system time */
};

int reaper_main(char **argv);
void prog_start(struct prog *p, const char *const argv[], int in, int out, int err);
int prog_poll(struct prog *p, int timeout_ms); /* 1 once it finished */
int prog_wait(struct prog *p, int timeout_ms); /* 0 when it finished in time */
void prog_stop(struct prog *p, int sig, int timeout_ms);
const char *status_text(int st, char *out, size_t n);
int open_file(const char *path, int flags); /* close-on-exec; die() on failure */
int file_count(const char *path, const char *needle); /* lines that contain needle */
void fd_flags(int fd, int nonblock);
void write_all(int fd, const char *s, size_t n);

struct server {
    struct prog prog;
    int port;
    char db[PATH_LEN + 64], err[PATH_LEN + 64];
};

void bench_server_start(struct server *s, int step, const char *name);
long bench_server_stop(struct server *s, char *problem, size_t n); /* SIGTERM; peak RSS in kB */
void db_info(const char *path, char *mode, size_t n, long *rows);

/* ---- bench_load.c: the runs ---- */

struct result {
    int step, k;
    long total, rows;
    double rate, lat_rate;
    long long ack50, ack99, arr50, arr99;
    long server_kb, client_kb;
    char journal[32];
    char problem[400];
    long long server_cpu_us;
};

struct stdin_result {
    long lines, stop_at, received, anomalies, rss_kb;
    int status;
    char problem[160];
};

struct bound {
    long long p10, p50, p90; /* round trip, us */
    double mean; /* round trip, us: the bound's, as a rate is a mean */
    double insert[5]; /* by step */
};

void throughput_run(int step, int k, long total, long nidle, struct result *res);
void latency_run(int step, int k, long total, struct result *res);
void stdin_run(long lines, long stop_at, struct stdin_result *out);
void measure_bound(struct bound *b);

/* ---- bench_report.c: the tables ---- */

const char *thousands(long long v, char *out, size_t n); /* 1234567 -> "1,234,567" */
void print_load(const char *when);
void print_header(void);
void print_row(const struct result *r);
void print_legend(const char *journal, int journal_same);
void print_idle(const struct result *idle, const struct result *res, int n);
void print_stdin(const struct stdin_result *small, const struct stdin_result *big, long stop);
void print_bound(const struct bound *b, const struct result *res, int n);
void print_targets(const struct result *res, int n, const struct result *idle,
                   const struct stdin_result *small, const struct stdin_result *big, const struct bound *bnd);

#endif
