/* tests/bench.c -- "make bench": the price of each guarantee, measured.
 *
 *   tests/bench [--messages N] [--latency-messages N] [--senders 1,10,100] [--steps 1,2,3,4]
 *               [--window N] [--idle N] [--stdin-lines N] [--stdin-stop N] [--no-bound]
 *
 * Per (step, K senders), two runs, each with a fresh server and database.
 *
 * 1. Throughput and memory, with real programs: one stepN/server, K real
 * stepN/client processes, and a receiver (a raw protocol connection in the
 * bench: HELLO 0, then it reads every CHAT line). The bench types into
 * each client's stdin through a pipe, N/K lines each (--messages N, the
 * total; default 20,000), and starts typing only once every client has
 * said "connected as" (step 1 drops lines typed before). A sender may have
 * at most --window lines (500) typed and not yet at the receiver; it is
 * topped up, in one write, whenever half of that has arrived. 500 is far
 * more than a client needs never to wait for the bench (steps 1-2 pipeline,
 * steps 3-4 keep one message in flight), and stays below the clients'
 * 1000-line send buffer. msg/s = rows stored (counted in the db file
 * afterwards) / the time from the first line typed to the receiver holding
 * every row. us/row = the server's CPU time (user + system, whole life)
 * per row stored: with msg/s it says whether the server was busy or
 * waiting. A receiver that falls MAX_OUTPUT behind is cut off by the
 * server like any client; it reconnects at once with the last id it saw
 * (the row says so).
 *
 * Peak memory: each program runs under a reaper, the bench binary itself
 * started afresh as "bench --reaper ..." (a fork of the bench would do on
 * macOS, but on Linux a process's ru_maxrss includes what it held before
 * exec(), and a client would be charged with the bench's arrays). The
 * reaper forks and execs the program, waits for it, and reports
 * getrusage(RUSAGE_CHILDREN): ru_maxrss (kilobytes on Linux, bytes on
 * macOS) and the CPU time. The server is stopped with SIGTERM and must exit
 * 0; clients end at the end of their stdin. "client" is the largest peak of
 * the K senders.
 *
 * 2. Latency, with raw senders: --latency-messages lines (default N/4)
 * from K raw protocol connections in the bench that keep the step's
 * discipline: steps 1-2 pipeline (window as above), steps 3-4 send one
 * message, wait for its ACK and send the next at once, with a new ack id
 * per attempt, and in step 4 a client offset shaped like the real
 * client's. A line is "typed" when the bench hands it to the socket, and
 * carries that time (CLOCK_MONOTONIC, us) in its text. ack = typed -> its
 * ACK; arrive = typed -> its CHAT at the receiver; both taken when the bench
 * reads the socket, so they include the bench's turn around its poll()
 * loop (microseconds; tens of them with 100 senders). In steps 1-2 a line
 * waits behind those typed before it: that latency is mostly the window
 * divided by the rate. Real clients are not used here: the only way to see
 * their acks is --verbose, whose wire view on stderr would be measured too.
 *
 * Extras. Server memory: step 4 with --idle connections (1000) that said
 * HELLO and read everything, while one real client chats (MAX_CLIENTS is
 * 1008). Client memory: one step 4 client whose stdin is a file of
 * --stdin-lines lines (1,000,000), and one with a tenth of that, each
 * stopped with SIGTERM once --stdin-stop rows (20,000) are stored: the
 * client reads stdin only while its send buffer has room, so the two must
 * match. The bound for one sender in steps 3-4 (one message in flight): a
 * loopback round trip (the mean of blocking ping-pongs between two fresh
 * processes: a rate is a mean, and on a virtual machine the median picks
 * one of two heaps, same CPU or not) plus one insert (in this process, with the server's table, pragmas and
 * prepared statement), against what one sender reaches.
 *
 * SQLite settings: journal_mode is read back from each db file after its
 * run. synchronous is a per-connection setting that is not stored in the
 * file, so it cannot be read back: the line says what common/store.c sets.
 *
 * Everything lives in a private temporary directory; every process the
 * bench started is killed and the directory removed on any exit, including
 * failures and Ctrl-C (and a reaper kills its program if the bench dies).
 * Nothing is checked against a time limit: the targets at the end are
 * printed with their numbers, for a reader to judge. */
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE /* mkdtemp() with _POSIX_C_SOURCE on macOS */
#endif
#include "bench.h"

#include "harness.h" /* harness_init(), bin_path(): the project root, as the tests find it */
#include "util.h" /* ignore_sigpipe(), parse_long_arg() */

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct bench_opt opt;
char self_path[PATH_LEN + 32];
static char tmp_dir[PATH_LEN];

/* ---------------------------------------------------------------------
 * The bench's own process: its children, and cleaning up on every way out
 * ------------------------------------------------------------------- */

static pid_t kids[MAX_KIDS]; /* every pid started: reapers and programs */
static int nkids;
static volatile sig_atomic_t interrupted;

long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void kill_kids(void) {
    for (int i = 0; i < nkids; i++) {
        if (kids[i] > 0) {
            kill(kids[i], SIGKILL);
        }
    }
}

static void remove_tmp_dir(void) {
    if (tmp_dir[0] == '\0') {
        return;
    }
    DIR *d = opendir(tmp_dir);
    if (d != NULL) {
        struct dirent *e;
        char path[2 * PATH_LEN];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    rmdir(tmp_dir);
    tmp_dir[0] = '\0';
}

static void cleanup(void) {
    kill_kids();
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
    }
    remove_tmp_dir();
}

static void on_fatal_signal(int sig) {
    kill_kids(); /* async-signal-safe; the loops see the flag and exit */
    interrupted = sig;
}

_Noreturn void die(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fputs("bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1); /* atexit: cleanup() */
}

void check_interrupted(void) {
    if (interrupted) {
        die("interrupted by signal %d", (int)interrupted);
    }
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        die("out of memory");
    }
    return p;
}

const char *tmp_path(const char *fmt, ...) {
    static char bufs[4][PATH_LEN + 64];
    static int next;
    char name[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    char *b = bufs[next++ % 4];
    snprintf(b, PATH_LEN + 64, "%s/%s", tmp_dir, name);
    return b;
}

void sleep_ms(int ms) {
    poll(NULL, 0, ms);
}

void forget_kid(pid_t pid) {
    for (int i = 0; i < nkids; i++) {
        if (kids[i] == pid) {
            kids[i] = 0;
        }
    }
}

void remember_kid(pid_t pid) {
    for (int i = 0; i < nkids; i++) {
        if (kids[i] == 0) {
            kids[i] = pid;
            return;
        }
    }
    if (nkids == MAX_KIDS) {
        kill(pid, SIGKILL);
        die("too many processes");
    }
    kids[nkids++] = pid;
}

/* ---------------------------------------------------------------------
 * Options, and the report
 * ------------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr,
            "usage: bench [--messages N] [--latency-messages N] [--senders 1,10,100] [--steps 1,2,3,4]\n"
            "             [--window N] [--idle N] [--stdin-lines N] [--stdin-stop N] [--no-bound]\n"
            "  --messages N          rows per throughput run, split among the senders (20000)\n"
            "  --latency-messages N  rows per latency run (a quarter of --messages)\n"
            "  --window N            lines a sender may have typed and not yet arrived (500)\n"
            "  --idle N              idle connections for the server memory row, 0: none (1000)\n"
            "  --stdin-lines N       lines in the big stdin of the client memory row, 0: none (1000000);\n"
            "                        compared with a tenth of that\n"
            "  --stdin-stop N        stop those clients once N rows are stored (20000)\n"
            "  --no-bound            skip measuring a round trip and an insert\n");
    exit(2);
}

static int parse_list(const char *s, int *out, int max, int lo, int hi) {
    int n = 0;
    while (*s != '\0') {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > hi || n == max || (*end != ',' && *end != '\0')) {
            return -1;
        }
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

static long parse_count(const char *s, long lo) {
    long v = 0;
    if (s == NULL || parse_long_arg(s, lo, INT32_MAX, &v) == -1) {
        usage();
    }
    return v;
}

/* The command line as typed, for the header: "tests/bench" and the
 * options (cut at 1 kB). */
static const char *command_line(int argc, char **argv) {
    static char cmd[1024];
    size_t len = (size_t)snprintf(cmd, sizeof cmd, "tests/bench");
    for (int i = 1; i < argc && argv[i] != NULL && len < sizeof cmd; i++) {
        len += (size_t)snprintf(cmd + len, sizeof cmd - len, " %s", argv[i]);
    }
    return cmd;
}

static void parse_options(int argc, char **argv) {
    opt.messages = 20000;
    opt.lat_messages = -1;
    opt.window = 500;
    opt.idle = 1000;
    opt.idle_messages = 1000;
    opt.stdin_lines = 1000000;
    opt.stdin_stop = 20000;
    opt.bound = 1;
    opt.nsenders = parse_list("1,10,100", opt.senders, 16, 1, MAX_SENDERS);
    opt.nsteps = parse_list("1,2,3,4", opt.steps, 4, 1, 4);
    for (int i = 1; i < argc && argv[i] != NULL; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--no-bound") == 0) {
            opt.bound = 0;
            continue;
        }
        i++;
        if (strcmp(o, "--messages") == 0) {
            opt.messages = parse_count(v, 1);
        } else if (strcmp(o, "--latency-messages") == 0) {
            opt.lat_messages = parse_count(v, 1);
        } else if (strcmp(o, "--window") == 0) {
            opt.window = parse_count(v, 1);
        } else if (strcmp(o, "--idle") == 0) {
            opt.idle = parse_count(v, 0);
            if (opt.idle > MAX_IDLE) {
                fprintf(stderr, "bench: --idle %ld: at most %d (the server takes 1008 clients)\n", opt.idle,
                        MAX_IDLE);
                exit(2);
            }
        } else if (strcmp(o, "--stdin-lines") == 0) {
            opt.stdin_lines = parse_count(v, 0);
        } else if (strcmp(o, "--stdin-stop") == 0) {
            opt.stdin_stop = parse_count(v, 1);
        } else if (strcmp(o, "--senders") == 0) {
            opt.nsenders = v ? parse_list(v, opt.senders, 16, 1, MAX_SENDERS) : -1;
        } else if (strcmp(o, "--steps") == 0) {
            opt.nsteps = v ? parse_list(v, opt.steps, 4, 1, 4) : -1;
        } else {
            usage();
        }
        if (opt.nsenders <= 0 || opt.nsteps <= 0) {
            usage();
        }
    }
    if (opt.lat_messages < 0) {
        opt.lat_messages = opt.messages / 4 > 0 ? opt.messages / 4 : 1;
    }
    opt.cmdline = command_line(argc, argv);
}

/* The project root as the tests find it (harness_init(): $CHAT_ROOT, else
 * the parent of the directory that holds this binary), and this binary,
 * to start reapers. */
static void find_root(const char *argv0) {
    harness_init(argv0, 0);
    if (strchr(argv0, '/') != NULL) {
        snprintf(self_path, sizeof self_path, "%s", argv0);
    } else {
        snprintf(self_path, sizeof self_path, "%s", bin_path("tests/bench"));
    }
    for (int step = 1; step <= 4; step++) {
        if (access(step_bin(step, "server"), X_OK) != 0 || access(step_bin(step, "client"), X_OK) != 0) {
            die("%s and step%d/client not found under %s: run make first (or set CHAT_ROOT)",
                step_bin(step, "server"), step, bin_path("."));
        }
    }
}

static void setup(void) {
    const char *base = getenv("TMPDIR");
    struct rlimit rl;
    snprintf(tmp_dir, sizeof tmp_dir, "%s/chat-bench-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(tmp_dir) == NULL) {
        tmp_dir[0] = '\0';
        die("mkdtemp: %s", strerror(errno));
    }
    atexit(cleanup);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    ignore_sigpipe();
    /* 1000 idle connections, plus the clients' pipes and reapers */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 4096 ? 4096 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Every (step, K senders) cell: a throughput run and a latency run, one
 * row each as it is done. The journal mode read back from every db file
 * goes into the legend. */
static struct result *run_grid(int ncells) {
    struct result *res = xcalloc((size_t)ncells, sizeof *res);
    char journal[32] = "";
    int journal_same = 1;
    for (int i = 0; i < opt.nsteps; i++) {
        for (int j = 0; j < opt.nsenders; j++) {
            struct result *r = &res[i * opt.nsenders + j];
            throughput_run(opt.steps[i], opt.senders[j], opt.messages, 0, r);
            latency_run(opt.steps[i], opt.senders[j], opt.lat_messages, r);
            print_row(r);
            if (journal[0] == '\0') {
                snprintf(journal, sizeof journal, "%s", r->journal);
            }
            journal_same &= strcmp(journal, r->journal) == 0;
        }
    }
    print_legend(journal, journal_same);
    return res;
}

int main(int argc, char **argv) {
    long long start = now_us();
    if (argc >= 4 && strcmp(argv[1], "--reaper") == 0) {
        return reaper_main(argv + 2);
    }
    parse_options(argc, argv);
    find_root(argv[0]);
    setup();
    print_header();
    int ncells = opt.nsteps * opt.nsenders;
    struct result *res = run_grid(ncells), idle = {0};
    if (opt.idle > 0) {
        throughput_run(4, IDLE_SENDERS, opt.idle_messages, opt.idle, &idle);
        print_idle(&idle, res, ncells);
    }
    struct stdin_result big = {0}, small = {0};
    if (opt.stdin_lines > 0) {
        long tenth = opt.stdin_lines / 10 > 0 ? opt.stdin_lines / 10 : 1;
        long stop = opt.stdin_stop < tenth ? opt.stdin_stop : tenth;
        stdin_run(tenth, stop, &small);
        stdin_run(opt.stdin_lines, stop, &big);
        print_stdin(&small, &big, stop);
    }
    struct bound bnd = {0};
    if (opt.bound) {
        measure_bound(&bnd);
        print_bound(&bnd, res, ncells);
    }
    print_targets(res, ncells, &idle, &small, &big, &bnd);
    printf("\nbench: %.0f s\n", (double)(now_us() - start) / 1e6);
    print_load("at the end");
    free(res);
    return 0;
}
