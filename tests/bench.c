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
 * their acks is --verbose, which writes stderr a character at a time.
 *
 * Extras. Server memory: step 4 with --idle connections (1000) that said
 * HELLO and read everything, while one real client chats (MAX_CLIENTS is
 * 1008). Client memory: one step 4 client whose stdin is a file of
 * --stdin-lines lines (1,000,000), and one with a tenth of that, each
 * stopped with SIGTERM once --stdin-stop rows (20,000) are stored: the
 * client reads stdin only while its send buffer has room, so the two must
 * match. The bound for one sender in steps 3-4 (one message in flight): a
 * loopback round trip (blocking ping-pongs between two fresh processes)
 * plus one insert (in this process, with the server's table, pragmas and
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
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SENDERS 1000
#define MAX_KIDS 8192
#define PATH_LEN 4096
#define IN_CAP 65536 /* read buffer of one raw connection */
#define STALL_MS 10000 /* no new row for this long: the run is over, whatever it got */
#define FEED_CAP 16384 /* bytes typed into one client's stdin per write */
#define BOUND_ROUNDS 20000 /* inserts */
#define RTT_TRIALS 20 /* fresh pairs of processes */
#define RTT_ROUNDS 1000 /* round trips each */
/* The idle row: MAX_CLIENTS is 1008, so 1000 idle + the receiver + this. */
#define IDLE_SENDERS 1
#define MAX_IDLE 1000

static struct {
    long messages, lat_messages, window, idle, idle_messages, stdin_lines, stdin_stop;
    int senders[16], nsenders;
    int steps[4], nsteps;
    int bound;
    const char *cmdline;
} opt;

static char root[PATH_LEN];
static char self_path[PATH_LEN + 32]; /* this binary, to start reapers */
static char tmp_dir[PATH_LEN];

/* ---------------------------------------------------------------------
 * Small helpers, and cleaning up on every way out
 * ------------------------------------------------------------------- */

static pid_t kids[MAX_KIDS]; /* every pid started: reapers and programs */
static int nkids;
static volatile sig_atomic_t interrupted;

static long long now_us(void) {
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

static _Noreturn void die(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fputs("bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1); /* atexit: cleanup() */
}

static void check_interrupted(void) {
    if (interrupted) {
        die("interrupted by signal %d", (int)interrupted);
    }
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        die("out of memory");
    }
    return p;
}

static void fd_flags(int fd, int nonblock) {
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (nonblock) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
}

static const char *tmp_path(const char *fmt, ...) {
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

static void sleep_ms(int ms) {
    poll(NULL, 0, ms);
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n-1]; -1 when there is none. */
static long long percentile(const long long *v, long n, double p) {
    if (n <= 0) {
        return -1;
    }
    long k = (long)(p * (double)n + 0.999999);
    k = k < 1 ? 1 : (k > n ? n : k);
    return v[k - 1];
}

/* 1234567 -> "1,234,567" */
static const char *thousands(long long v, char *out, size_t n) {
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

/* ---------------------------------------------------------------------
 * Programs, each under a reaper that reports its peak memory
 * ------------------------------------------------------------------- */

struct prog {
    pid_t reaper, pid;
    int res_fd; /* the reaper's report: "<pid>\n" then "<status> <maxrss-kb>\n" */
    char res[128];
    size_t res_len;
    int finished, status;
    long rss_kb;
    long long cpu_us; /* user + system time */
};

static void forget_kid(pid_t pid) {
    for (int i = 0; i < nkids; i++) {
        if (kids[i] == pid) {
            kids[i] = 0;
        }
    }
}

static void remember_kid(pid_t pid) {
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

static void on_sigchld(int sig) {
    (void)sig; /* only here to interrupt pselect() */
}

static void write_all(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w == -1 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

/* The reaper is the bench binary itself, started afresh as
 * "bench --reaper FD PROGRAM ARGS...": a fresh process, so that the
 * program's peak RSS is its own. (On Linux a process's ru_maxrss also
 * counts the memory it had before exec(): forked straight from the bench,
 * a client would be charged with the bench's arrays.) It forks and execs
 * the program, waits, and writes "<pid>\n" then "<status> <maxrss-kb>
 * <cpu-us>\n" to FD. If the bench dies, it kills the program and leaves. */
static int reaper_main(char **argv) {
    pid_t bench = getppid();
    int res = atoi(argv[0]);
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGCHLD, SIG_DFL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        close(res);
        execv(argv[1], argv + 1);
        _exit(127);
    }
    char line[64];
    int n = snprintf(line, sizeof line, "%ld\n", (long)pid);
    write_all(res, line, (size_t)n);
    if (pid == -1) {
        return 1;
    }
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r == -1 && errno != EINTR)) {
            break;
        }
        if (getppid() != bench) { /* the bench died: take the program along */
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return 1;
        }
        struct timespec ts = {1, 0};
        pselect(0, NULL, NULL, NULL, &ts, &old); /* SIGCHLD wakes it at once */
    }
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
#if defined(__APPLE__)
    long kb = (long)(ru.ru_maxrss / 1024); /* bytes on macOS */
#else
    long kb = (long)ru.ru_maxrss; /* kilobytes on Linux and the BSDs */
#endif
    long long cpu = (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
                    ru.ru_stime.tv_usec;
    n = snprintf(line, sizeof line, "%d %ld %lld\n", st, kb, cpu);
    write_all(res, line, (size_t)n);
    return 0;
}

/* In the fork that becomes the reaper: the program's stdio in place,
 * every other descriptor of the bench closed (another client's stdin
 * pipe kept open here would never see its end), default signals. */
static _Noreturn void exec_reaper(const char *const argv[], int in, int out, int err, int res) {
    const char *args[64];
    char res_s[16];
    int n = 0;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (dup2(in, 0) == -1 || dup2(out, 1) == -1 || dup2(err, 2) == -1) {
        _exit(126);
    }
    struct rlimit rl;
    long maxfd =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (long)rl.rlim_cur : 65536;
    for (long fd = 3; fd < (maxfd < 65536 ? maxfd : 65536); fd++) {
        if (fd != res) {
            close((int)fd);
        }
    }
    snprintf(res_s, sizeof res_s, "%d", res);
    args[n++] = self_path;
    args[n++] = "--reaper";
    args[n++] = res_s;
    for (int i = 0; argv[i] != NULL && n < 63; i++) {
        args[n++] = argv[i];
    }
    args[n] = NULL;
    execv(self_path, (char *const *)args);
    _exit(127);
}

/* Read what the reaper has reported so far (waiting at most timeout_ms
 * for something new); returns 1 once the program has finished. */
static int prog_poll(struct prog *p, int timeout_ms) {
    struct pollfd pfd = {p->res_fd, POLLIN, 0};
    if (p->finished || poll(&pfd, 1, timeout_ms) <= 0) {
        return p->finished;
    }
    ssize_t n = read(p->res_fd, p->res + p->res_len, sizeof p->res - 1 - p->res_len);
    if (n == -1 && errno == EINTR) {
        return 0;
    }
    if (n > 0) {
        p->res_len += (size_t)n;
        p->res[p->res_len] = '\0';
    }
    char *nl = strchr(p->res, '\n');
    if (p->pid == 0 && nl != NULL && atol(p->res) > 0) {
        p->pid = (pid_t)atol(p->res);
        remember_kid(p->pid);
    }
    if (nl != NULL && strchr(nl + 1, '\n') != NULL) {
        sscanf(nl + 1, "%d %ld %lld", &p->status, &p->rss_kb, &p->cpu_us);
        p->finished = 1;
    } else if (n <= 0) { /* the reaper is gone without a report */
        p->status = -1;
        p->rss_kb = -1;
        p->finished = 1;
    }
    if (p->finished) {
        close(p->res_fd);
        waitpid(p->reaper, NULL, 0);
        forget_kid(p->reaper);
        forget_kid(p->pid);
    }
    return p->finished;
}

static void prog_start(struct prog *p, const char *const argv[], int in, int out, int err) {
    int res[2];
    memset(p, 0, sizeof *p);
    if (pipe(res) == -1) {
        die("pipe: %s", strerror(errno));
    }
    fflush(stdout);
    fflush(stderr);
    pid_t r = fork();
    if (r == -1) {
        die("fork: %s", strerror(errno));
    }
    if (r == 0) {
        close(res[0]);
        exec_reaper(argv, in, out, err, res[1]);
    }
    close(res[1]);
    remember_kid(r);
    p->reaper = r;
    p->res_fd = res[0];
    fd_flags(p->res_fd, 0);
    for (long long end = now_us() + 5000000; p->pid == 0 && !p->finished && now_us() < end;) {
        prog_poll(p, 100);
    }
    if (p->pid <= 0) {
        die("cannot start %s", argv[0]);
    }
}

/* Wait for the program's end; 0 when it finished in time. */
static int prog_wait(struct prog *p, int timeout_ms) {
    long long end = now_us() + (long long)timeout_ms * 1000;
    while (!p->finished && now_us() < end) {
        prog_poll(p, 100);
        check_interrupted();
    }
    return p->finished ? 0 : -1;
}

static void prog_stop(struct prog *p, int sig, int timeout_ms) {
    if (!p->finished) {
        kill(p->pid, sig);
        if (prog_wait(p, timeout_ms) == -1) {
            kill(p->pid, SIGKILL);
            prog_wait(p, 5000);
        }
    }
}

static const char *status_text(int st, char *out, size_t n) {
    if (st == -1) {
        snprintf(out, n, "lost");
    } else if (WIFEXITED(st)) {
        snprintf(out, n, "exit %d", WEXITSTATUS(st));
    } else if (WIFSIGNALED(st)) {
        snprintf(out, n, "killed by signal %d", WTERMSIG(st));
    } else {
        snprintf(out, n, "status %d", st);
    }
    return out;
}

static int open_file(const char *path, int flags) {
    int fd = open(path, flags | O_CREAT, 0600);
    if (fd == -1) {
        die("%s: %s", path, strerror(errno));
    }
    fd_flags(fd, 0);
    return fd;
}

/* Count the lines of a (small) file that contain needle. */
static int file_count(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    char line[8192];
    int n = 0;
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

static const char *bin(int step, const char *name) {
    static char bufs[2][PATH_LEN + 32];
    static int next;
    char *b = bufs[next++ % 2];
    snprintf(b, PATH_LEN + 32, "%s/step%d/%s", root, step, name);
    return b;
}

struct server {
    struct prog prog;
    int port;
    char db[PATH_LEN + 64], err[PATH_LEN + 64];
};

static void server_start(struct server *s, int step, const char *name) {
    snprintf(s->db, sizeof s->db, "%s", tmp_path("%s.db", name));
    snprintf(s->err, sizeof s->err, "%s", tmp_path("%s.err", name));
    const char *argv[] = {bin(step, "server"), "--port", "0", "--db", s->db, NULL};
    int in = open_file("/dev/null", O_RDONLY), out = open_file("/dev/null", O_WRONLY);
    int err = open_file(s->err, O_WRONLY | O_TRUNC);
    prog_start(&s->prog, argv, in, out, err);
    close(in);
    close(out);
    close(err);
    s->port = 0;
    for (int i = 0; i < 500 && s->port == 0; i++) {
        FILE *f = fopen(s->err, "r");
        char line[512];
        while (f != NULL && fgets(line, sizeof line, f) != NULL) {
            char *at = strstr(line, "listening on ");
            char *colon = at ? strchr(at, ':') : NULL;
            if (colon != NULL) {
                s->port = atoi(colon + 1);
            }
        }
        if (f != NULL) {
            fclose(f);
        }
        if (s->port == 0) {
            if (prog_poll(&s->prog, 0) || s->prog.finished) {
                break;
            }
            sleep_ms(10);
        }
    }
    if (s->port == 0) {
        die("step%d/server did not start (see its stderr: %s)", step, s->err);
    }
}

/* SIGTERM, and the server must exit 0. Returns its peak RSS in kB. */
static long server_stop(struct server *s, char *problem, size_t n) {
    char st[64];
    prog_stop(&s->prog, SIGTERM, 10000);
    if (s->prog.status != 0 && problem[0] == '\0') {
        snprintf(problem, n, "server: %s after SIGTERM", status_text(s->prog.status, st, sizeof st));
    }
    return s->prog.rss_kb;
}

/* journal_mode as stored in the file, and the number of rows. */
static void db_info(const char *path, char *mode, size_t n, long *rows) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(mode, n, "?");
    *rows = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 2000);
        if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            snprintf(mode, n, "%s", (const char *)sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
        st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM messages", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            *rows = (long)sqlite3_column_int64(st, 0);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

/* ---------------------------------------------------------------------
 * Raw protocol connections: the receiver, raw senders, idle clients
 * ------------------------------------------------------------------- */

enum role { RECEIVER, SENDER, IDLE };

struct conn {
    int fd;
    enum role role;
    int index; /* sender number */
    char *in;
    size_t in_len;
    char *out;
    size_t out_off, out_len, out_cap;
    int welcomed, eof, errors;
    /* raw sender */
    long sent; /* lines typed */
    long long ack_id, sent_at; /* steps 3-4: the message in flight */
    int in_flight;
    unsigned offset_id; /* step 4: first half of the client offset */
};

static int tcp_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd == -1) {
        die("socket: %s", strerror(errno));
    }
    while (connect(fd, (struct sockaddr *)&a, sizeof a) == -1) {
        if (errno != EINTR) {
            die("connect to port %d: %s", port, strerror(errno));
        }
    }
    fd_flags(fd, 1);
    return fd;
}

static struct conn *conn_new(int port, enum role role, int index) {
    struct conn *c = xcalloc(1, sizeof *c);
    c->fd = tcp_connect(port);
    c->role = role;
    c->index = index;
    c->in = xcalloc(1, IN_CAP + 1);
    return c;
}

static void conn_free(struct conn *c) {
    if (c != NULL) {
        close(c->fd);
        free(c->in);
        free(c->out);
        free(c);
    }
}

static int conn_flush(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        if (n <= 0) {
            c->eof = 1;
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* Queue one line and try to send it at once. */
static void conn_send(struct conn *c, const char *fmt, ...) {
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof line - 1) {
        die("line too long");
    }
    line[n++] = '\n';
    if (c->out_len + (size_t)n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + (size_t)n) {
            cap *= 2;
        }
        char *p = realloc(c->out, cap);
        if (p == NULL) {
            die("out of memory");
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, line, (size_t)n);
    c->out_len += (size_t)n;
    conn_flush(c);
}

/* ---------------------------------------------------------------------
 * One run: its state, and what the receiver and the raw senders see
 * ------------------------------------------------------------------- */

struct run {
    int step, k;
    long per, total; /* lines per sender, in all */
    long window;
    long *typed, *arrived, *next_n, *written_off; /* per sender */
    long received, anomalies;
    long long first_typed, last_arrival, last_progress;
    long long *arr_lat, *ack_lat;
    long narr, nack;
    int receiver_lost, receiver_drops, port;
    long long last_id; /* the receiver's server offset, for reconnecting */
    struct conn *receiver;
    struct conn **raw; /* latency run: the senders */
};

static void run_init(struct run *r, int step, int k, long total) {
    memset(r, 0, sizeof *r);
    r->step = step;
    r->k = k;
    r->per = total / k > 0 ? total / k : 1;
    r->total = r->per * k;
    r->window = opt.window;
    r->typed = xcalloc((size_t)k, sizeof(long));
    r->arrived = xcalloc((size_t)k, sizeof(long));
    r->next_n = xcalloc((size_t)k, sizeof(long));
    r->written_off = xcalloc((size_t)k, sizeof(long));
    r->arr_lat = xcalloc((size_t)r->total, sizeof(long long));
    r->ack_lat = xcalloc((size_t)r->total, sizeof(long long));
}

/* A sender may type more once at most half its window is still on the
 * way; it then types up to the full window (typing in batches keeps the
 * clients from waking up for every single line). */
static int may_type(const struct run *r, int s) {
    return r->typed[s] < r->per && r->typed[s] - r->arrived[s] - r->written_off[s] <= r->window / 2;
}

static int window_open(const struct run *r, int s) {
    return r->typed[s] < r->per && r->typed[s] - r->arrived[s] - r->written_off[s] < r->window;
}

/* Nothing arrived for a second: what is still on the way is taken as lost
 * (steps 1-2 may lose lines), so that the senders' windows open again. */
static void write_off_lost(struct run *r) {
    for (int s = 0; s < r->k; s++) {
        r->written_off[s] = r->typed[s] - r->arrived[s];
    }
}

static void run_free(struct run *r) {
    free(r->typed);
    free(r->arrived);
    free(r->next_n);
    free(r->written_off);
    free(r->arr_lat);
    free(r->ack_lat);
    conn_free(r->receiver);
    if (r->raw != NULL) {
        for (int i = 0; i < r->k; i++) {
            conn_free(r->raw[i]);
        }
        free(r->raw);
    }
}

/* The text of line n of sender s, typed at t: the receiver reads all three
 * back. About the length of a short chat message. */
static int format_text(char *out, size_t size, int s, long n, long long t) {
    return snprintf(out, size, "s%d n%ld t%lld the quick brown fox", s, n, t);
}

/* CHAT <id> s<sender> n<number> t<typed-us> ... */
static void on_chat(struct run *r, const char *arg, long long now) {
    const char *p = strchr(arg, ' ');
    char *end;
    long long id = strtoll(arg, NULL, 10);
    if (id > r->last_id) {
        r->last_id = id;
    }
    if (p == NULL || p[1] != 's') {
        r->anomalies++;
        return;
    }
    long s = strtol(p + 2, &end, 10);
    if (*end != ' ' || end[1] != 'n' || s < 0 || s >= r->k) {
        r->anomalies++;
        return;
    }
    long n = strtol(end + 2, &end, 10);
    long long t = (*end == ' ' && end[1] == 't') ? strtoll(end + 2, NULL, 10) : 0;
    if (n != r->next_n[s]) {
        r->anomalies++; /* lost, duplicated or out of order */
    }
    if (n >= r->next_n[s]) {
        r->next_n[s] = n + 1;
    }
    r->arrived[s]++;
    r->received++;
    r->last_arrival = r->last_progress = now;
    if (t > 0 && r->narr < r->total) {
        r->arr_lat[r->narr++] = now - t;
    }
}

static void send_next(struct run *r, struct conn *c, long long now);

static void on_line(struct run *r, struct conn *c, char *line, long long now) {
    if (strncmp(line, "CHAT ", 5) == 0) {
        if (r != NULL && c->role == RECEIVER) {
            on_chat(r, line + 5, now);
        }
    } else if (strncmp(line, "ACK ", 4) == 0) {
        long long id = strtoll(line + 4, NULL, 10);
        if (r != NULL && c->role == SENDER && c->in_flight && id == c->ack_id) {
            c->in_flight = 0;
            if (r->nack < r->total) {
                r->ack_lat[r->nack++] = now - c->sent_at;
                r->last_progress = now;
            }
            send_next(r, c, now);
        }
    } else if (strncmp(line, "WELCOME ", 8) == 0) {
        c->welcomed = 1;
    } else if (strcmp(line, "PING") == 0) {
        conn_send(c, "PONG");
    } else if (strncmp(line, "ERR ", 4) == 0) {
        static int said;
        c->errors++;
        if (said++ == 0) { /* the first one only: 1000 connections may hear it */
            fprintf(stderr, "bench: the server said \"%s\" to a raw connection\n", line);
        }
    }
}

/* Read once, timestamp, and hand every complete line to on_line(). */
static ssize_t conn_read(struct run *r, struct conn *c) {
    ssize_t n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
    long long now = now_us();
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return 0;
    }
    if (n <= 0) {
        c->eof = 1;
        if (c->role == RECEIVER && r != NULL) {
            r->receiver_lost = 1;
        }
        return -1;
    }
    c->in_len += (size_t)n;
    char *start = c->in, *end = c->in + c->in_len, *nl;
    while ((nl = memchr(start, '\n', (size_t)(end - start))) != NULL) {
        *nl = '\0';
        if (r != NULL || c->role != RECEIVER) {
            on_line(r, c, start, now);
        }
        start = nl + 1;
    }
    c->in_len = (size_t)(end - start);
    memmove(c->in, start, c->in_len);
    if (c->in_len == IN_CAP) {
        c->in_len = 0; /* a line longer than the buffer: not ours */
    }
    return n;
}

/* Connect and wait for WELCOME; NULL if none came. */
static struct conn *hello_try(struct run *r, int port, enum role role, int index) {
    struct conn *c = conn_new(port, role, index);
    conn_send(c, "HELLO %lld", role == RECEIVER && r != NULL ? r->last_id : 0);
    long long end = now_us() + 10000000;
    while (!c->welcomed && !c->eof && now_us() < end) {
        struct pollfd pfd = {c->fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) > 0) {
            conn_read(r, c);
        }
        check_interrupted();
    }
    if (!c->welcomed) {
        conn_free(c);
        return NULL;
    }
    return c;
}

static struct conn *hello(struct run *r, int port, enum role role, int index) {
    struct conn *c = hello_try(r, port, role, index);
    if (c == NULL) {
        die("no WELCOME from the server on port %d", port);
    }
    return c;
}

/* Read what the receiver has, until the socket is empty. A receiver that
 * fell behind by MAX_OUTPUT is cut off by the server, like any client:
 * it comes back at once with the last id it saw, and the replay brings
 * it the rest. */
static void receive(struct run *r) {
    for (int i = 0; i < 16 && conn_read(r, r->receiver) > 0; i++) {
    }
    if (r->receiver_lost && r->receiver_drops < 100) {
        struct conn *c = hello_try(r, r->port, RECEIVER, -1);
        r->receiver_drops = c == NULL ? 100 : r->receiver_drops + 1; /* 100: given up */
        if (c != NULL) {
            conn_free(r->receiver);
            r->receiver = c;
            r->receiver_lost = 0;
        }
    }
}

/* ---------------------------------------------------------------------
 * The throughput run: real clients typed into through pipes
 * ------------------------------------------------------------------- */

struct feeder {
    struct prog prog;
    int fd; /* our end of its stdin; -1 once closed */
    char buf[FEED_CAP];
    size_t off, len;
    char err[PATH_LEN + 64];
};

/* Type the next lines, within the window, into one client's stdin. */
static void feed(struct run *r, struct feeder *f, int s) {
    if (f->off == f->len && may_type(r, s)) {
        f->off = f->len = 0;
        long long now = now_us();
        while (window_open(r, s) && f->len + 256 < FEED_CAP) {
            f->len += (size_t)format_text(f->buf + f->len, FEED_CAP - f->len, s, r->typed[s]++, now);
            f->buf[f->len++] = '\n';
            if (r->first_typed == 0) {
                r->first_typed = now;
            }
        }
    }
    if (f->off < f->len) {
        ssize_t n = write(f->fd, f->buf + f->off, f->len - f->off);
        if (n > 0) {
            f->off += (size_t)n;
        } else if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            close(f->fd); /* the client is gone */
            f->fd = -1;
            return;
        }
    }
    if (f->off == f->len && r->typed[s] == r->per) {
        close(f->fd); /* end of input: the client finishes and leaves */
        f->fd = -1;
    }
}

/* Start a real client whose stdin is a pipe from us; its stdout (every
 * message, as the user would see it) goes to /dev/null. */
static void feeder_start(struct feeder *f, int step, int port, int index) {
    int p[2];
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(f->err, sizeof f->err, "%s", tmp_path("client%d.err", index));
    if (pipe(p) == -1) {
        die("pipe: %s", strerror(errno));
    }
    fd_flags(p[1], 1);
    fd_flags(p[0], 0);
    int out = open_file("/dev/null", O_WRONLY), err = open_file(f->err, O_WRONLY | O_TRUNC);
    const char *argv[] = {bin(step, "client"), "--port", port_s, NULL};
    prog_start(&f->prog, argv, p[0], out, err);
    close(p[0]);
    close(out);
    close(err);
    f->fd = p[1];
    f->off = f->len = 0;
}

/* Every client must be welcomed before the first line: step 1 drops what
 * is typed before. */
static int wait_connected(struct feeder *f, int k) {
    long long end = now_us() + 20000000;
    for (int i = 0; i < k; i++) {
        while (file_count(f[i].err, "connected as") == 0) {
            if (now_us() > end || prog_poll(&f[i].prog, 0)) {
                return i;
            }
            check_interrupted();
            sleep_ms(5);
        }
    }
    return -1;
}

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

/* Add to the row's notes: what went wrong, or what the step did. */
static void note(struct result *res, const char *fmt, ...) {
    size_t len = strlen(res->problem);
    va_list ap;
    if (len > 0 && len + 3 < sizeof res->problem) {
        strcat(res->problem, "; ");
        len += 2;
    }
    va_start(ap, fmt);
    vsnprintf(res->problem + len, sizeof res->problem - len, fmt, ap);
    va_end(ap);
}

/* poll() the receiver, idle connections and the feeders until every row
 * has arrived (or nothing arrives for STALL_MS). */
static void pump_run(struct run *r, struct feeder *f, struct conn **idle, long nidle) {
    size_t cap = (size_t)(1 + r->k + nidle);
    struct pollfd *pfd = xcalloc(cap, sizeof *pfd);
    int *who = xcalloc(cap, sizeof(int)); /* -1 receiver, 0..k-1 feeders, k.. idle */
    r->last_progress = now_us();
    for (int s = 0; s < r->k; s++) {
        feed(r, &f[s], s);
    }
    long long checked = 0;
    int senders_left = r->k;
    while (r->received < r->total && !r->receiver_lost && now_us() - r->last_progress < STALL_MS * 1000LL) {
        int n = 0;
        if (now_us() - checked > 100000) { /* every sender gone, nothing for a second: over */
            checked = now_us();
            senders_left = 0;
            for (int s = 0; s < r->k; s++) {
                senders_left += !prog_poll(&f[s].prog, 0);
            }
        }
        if (senders_left == 0 && now_us() - r->last_progress > 1000000) {
            break;
        }
        if (now_us() - r->last_progress > 1000000) {
            write_off_lost(r);
        }
        pfd[n] = (struct pollfd){r->receiver->fd, POLLIN, 0};
        who[n++] = -1;
        for (int s = 0; s < r->k; s++) {
            if (f[s].fd != -1 && (f[s].off < f[s].len || may_type(r, s) || r->typed[s] == r->per)) {
                pfd[n] = (struct pollfd){f[s].fd, POLLOUT, 0};
                who[n++] = s;
            }
        }
        for (long i = 0; i < nidle; i++) {
            if (!idle[i]->eof) {
                pfd[n] = (struct pollfd){idle[i]->fd, POLLIN, 0};
                who[n++] = r->k + (int)i;
            }
        }
        if (poll(pfd, (nfds_t)n, 100) == -1 && errno != EINTR) {
            die("poll: %s", strerror(errno));
        }
        check_interrupted();
        for (int i = 0; i < n; i++) {
            if (pfd[i].revents == 0) {
                continue;
            }
            if (who[i] == -1) {
                receive(r);
            } else if (who[i] < r->k) {
                feed(r, &f[who[i]], who[i]);
            } else {
                conn_read(NULL, idle[who[i] - r->k]);
            }
        }
    }
    free(pfd);
    free(who);
}

/* Close the stdins, let the clients finish, stop the server, read the db. */
static void finish_run(struct run *r, struct feeder *f, struct server *srv, struct result *res) {
    char st[64];
    for (int s = 0; s < r->k; s++) {
        if (f[s].fd != -1) {
            close(f[s].fd);
            f[s].fd = -1;
        }
    }
    res->client_kb = 0;
    int reconnects = 0, failed = 0, first_failed = -1;
    for (int s = 0; s < r->k; s++) {
        if (prog_wait(&f[s].prog, 20000) == -1) {
            prog_stop(&f[s].prog, SIGKILL, 5000);
        }
        if (f[s].prog.status != 0 && failed++ == 0) {
            first_failed = s;
        }
        if (f[s].prog.rss_kb > res->client_kb) {
            res->client_kb = f[s].prog.rss_kb;
        }
        reconnects += file_count(f[s].err, "reconnecting in");
    }
    if (failed > 0) {
        note(res, "%d client(s) failed, the first: %s", failed,
             status_text(f[first_failed].prog.status, st, sizeof st));
    }
    if (reconnects > 0) {
        note(res, "clients reconnected %d time(s)", reconnects);
    }
    char problem[160] = "";
    res->server_kb = server_stop(srv, problem, sizeof problem);
    res->server_cpu_us = srv->prog.cpu_us;
    if (problem[0] != '\0') {
        note(res, "%s", problem);
    }
    int cut = file_count(srv->err, "output buffer full");
    if (cut > 0) {
        note(res, "the server cut off %d slow reader(s): output buffer full", cut);
    }
    if (file_count(srv->err, "failed") > 0) {
        note(res, "the server logged failed inserts");
    }
    db_info(srv->db, res->journal, sizeof res->journal, &res->rows);
}

static void throughput_run(int step, int k, long total, long nidle, struct result *res) {
    struct run r;
    struct server srv = {0};
    char name[32];
    snprintf(name, sizeof name, "step%d-%d%s", step, k, nidle ? "-idle" : "");
    run_init(&r, step, k, total);
    res->step = step;
    res->k = k;
    res->total = r.total;
    server_start(&srv, step, name);
    r.port = srv.port;
    r.receiver = hello(&r, srv.port, RECEIVER, -1);
    struct conn **idle = xcalloc((size_t)nidle, sizeof(struct conn *));
    for (long i = 0; i < nidle; i++) {
        idle[i] = conn_new(srv.port, IDLE, (int)i);
        conn_send(idle[i], "HELLO 0");
    }
    long welcomed = 0;
    for (long long end = now_us() + 30000000; welcomed < nidle && now_us() < end;) {
        welcomed = 0;
        for (long i = 0; i < nidle; i++) {
            conn_read(NULL, idle[i]);
            welcomed += idle[i]->welcomed;
        }
        receive(&r); /* PINGs are answered */
        check_interrupted();
        sleep_ms(welcomed < nidle ? 5 : 0);
    }
    if (welcomed < nidle) {
        note(res, "only %ld of %ld idle connections welcomed", welcomed, nidle);
    }
    struct feeder *f = xcalloc((size_t)k, sizeof *f);
    for (int s = 0; s < k; s++) {
        feeder_start(&f[s], step, srv.port, s);
    }
    int late = wait_connected(f, k);
    if (late >= 0) {
        note(res, "client %d was not connected after 20 s: not measured", late);
    } else {
        pump_run(&r, f, idle, nidle);
    }
    double secs = (double)(r.last_arrival - r.first_typed) / 1e6;
    finish_run(&r, f, &srv, res);
    if (res->rows >= 0 && res->rows < r.total) {
        note(res, "%ld typed lines never stored", r.total - res->rows);
    }
    if (r.received < res->rows) {
        note(res, "the receiver got %ld of %ld rows", r.received, res->rows);
    } else if (r.anomalies > 0 && res->rows >= r.total) {
        note(res, "%ld rows duplicated or out of order", r.anomalies);
    }
    if (r.receiver_drops > 0) {
        note(res, "the receiver was cut off %d time(s) and came back", r.receiver_drops);
    }
    res->rate = secs > 0 ? (double)res->rows / secs : 0;
    for (long i = 0; i < nidle; i++) {
        conn_free(idle[i]);
    }
    free(idle);
    free(f);
    run_free(&r);
}

/* ---------------------------------------------------------------------
 * The latency run: raw senders that follow the step's discipline
 * ------------------------------------------------------------------- */

/* Steps 1-2: type (queue) every line the window allows. Steps 3-4: one
 * message in flight, a new ack id for each attempt. */
static void send_next(struct run *r, struct conn *c, long long now) {
    char text[256];
    int s = c->index;
    if (r->step <= 2) {
        if (!may_type(r, s)) {
            return;
        }
        while (window_open(r, s) && c->out_len < 65536) {
            format_text(text, sizeof text, s, r->typed[s]++, now_us());
            conn_send(c, "MSG %s", text);
        }
        return;
    }
    if (c->in_flight || r->typed[s] >= r->per) {
        return;
    }
    long n = r->typed[s]++;
    c->in_flight = 1;
    c->ack_id++;
    c->sent_at = now > 0 ? now : now_us();
    format_text(text, sizeof text, s, n, c->sent_at);
    if (r->step == 3) {
        conn_send(c, "MSG %lld %s", c->ack_id, text);
    } else { /* the real client's offset: 16 hex digits, "-", a counter */
        conn_send(c, "MSG %lld %08x%08x-%ld %s", c->ack_id, c->offset_id, (unsigned)s, n, text);
    }
}

static void latency_run(int step, int k, long total, struct result *res) {
    struct run r;
    struct server srv = {0};
    char name[32], problem[160] = "";
    snprintf(name, sizeof name, "lat%d-%d", step, k);
    run_init(&r, step, k, total);
    server_start(&srv, step, name);
    r.port = srv.port;
    r.receiver = hello(&r, srv.port, RECEIVER, -1);
    r.raw = xcalloc((size_t)k, sizeof(struct conn *));
    for (int s = 0; s < k; s++) {
        r.raw[s] = hello(&r, srv.port, SENDER, s);
        r.raw[s]->offset_id = (unsigned)getpid() ^ ((unsigned)now_us() << 8);
    }
    struct pollfd *pfd = xcalloc((size_t)k + 1, sizeof *pfd);
    r.first_typed = r.last_progress = now_us();
    for (int s = 0; s < k; s++) {
        send_next(&r, r.raw[s], 0);
    }
    while ((r.received < r.total || (step >= 3 && r.nack < r.total)) && !r.receiver_lost &&
           now_us() - r.last_progress < STALL_MS * 1000LL) {
        if (now_us() - r.last_progress > 1000000) {
            write_off_lost(&r);
        }
        pfd[0] = (struct pollfd){r.receiver->fd, POLLIN, 0};
        for (int s = 0; s < k; s++) {
            struct conn *c = r.raw[s];
            pfd[s + 1] = (struct pollfd){c->fd, (short)(POLLIN | (c->out_off < c->out_len ? POLLOUT : 0)), 0};
        }
        if (poll(pfd, (nfds_t)k + 1, 100) == -1 && errno != EINTR) {
            die("poll: %s", strerror(errno));
        }
        check_interrupted();
        if (pfd[0].revents) {
            receive(&r);
        }
        for (int s = 0; s < k; s++) {
            struct conn *c = r.raw[s];
            if (pfd[s + 1].revents & POLLIN) {
                conn_read(&r, c);
            }
            if (c->eof) {
                continue;
            }
            if (pfd[s + 1].revents & POLLOUT) {
                conn_flush(c);
            }
            if (step <= 2) {
                send_next(&r, c, 0); /* the window moved when rows arrived */
            }
        }
    }
    double secs = (double)(r.last_arrival - r.first_typed) / 1e6;
    res->lat_rate = secs > 0 ? (double)r.received / secs : 0;
    qsort(r.arr_lat, (size_t)r.narr, sizeof(long long), cmp_ll);
    qsort(r.ack_lat, (size_t)r.nack, sizeof(long long), cmp_ll);
    res->arr50 = percentile(r.arr_lat, r.narr, 0.50);
    res->arr99 = percentile(r.arr_lat, r.narr, 0.99);
    res->ack50 = step >= 3 ? percentile(r.ack_lat, r.nack, 0.50) : -1;
    res->ack99 = step >= 3 ? percentile(r.ack_lat, r.nack, 0.99) : -1;
    if (r.received < r.total) {
        note(res, "latency run: the receiver got %ld of %ld rows", r.received, r.total);
    } else if (r.anomalies > 0) {
        note(res, "latency run: %ld rows lost, duplicated or out of order", r.anomalies);
    }
    if (r.receiver_drops > 0) {
        note(res, "latency run: the server cut the receiver off %d time(s)", r.receiver_drops);
    }
    free(pfd);
    run_free(&r);
    server_stop(&srv, problem, sizeof problem);
    if (problem[0] != '\0') {
        note(res, "latency run: %s", problem);
    }
}

/* ---------------------------------------------------------------------
 * A client with a big stdin
 * ------------------------------------------------------------------- */

struct stdin_result {
    long lines, stop_at, received, anomalies, rss_kb;
    int status;
    char problem[160];
};

/* One step 4 client reads a file of `lines` lines; once stop_at rows are
 * stored it gets SIGTERM (0: it runs to the end of the file). */
static void stdin_run(long lines, long stop_at, struct stdin_result *out) {
    struct run r;
    struct server srv = {0};
    struct prog p;
    char port_s[16], path[PATH_LEN + 64];
    memset(out, 0, sizeof *out);
    out->lines = lines;
    out->stop_at = stop_at;
    snprintf(path, sizeof path, "%s", tmp_path("stdin-%ld.txt", lines));
    FILE *file = fopen(path, "w");
    if (file == NULL) {
        die("%s: %s", path, strerror(errno));
    }
    for (long n = 0; n < lines; n++) {
        fprintf(file, "s0 n%ld t0 the quick brown fox\n", n);
    }
    if (fclose(file) != 0) {
        die("%s: %s", path, strerror(errno));
    }
    run_init(&r, 4, 1, stop_at ? stop_at : lines);
    char name[32];
    snprintf(name, sizeof name, "stdin-%ld", lines);
    server_start(&srv, 4, name);
    r.port = srv.port;
    r.receiver = hello(&r, srv.port, RECEIVER, -1);
    snprintf(port_s, sizeof port_s, "%d", srv.port);
    int in = open_file(path, O_RDONLY), dn = open_file("/dev/null", O_WRONLY);
    int err = open_file(tmp_path("stdin-client.err"), O_WRONLY | O_TRUNC);
    const char *argv[] = {bin(4, "client"), "--port", port_s, NULL};
    prog_start(&p, argv, in, dn, err);
    close(in);
    close(dn);
    close(err);
    long long left_at = 0; /* the client ended before its rows arrived */
    r.last_progress = now_us();
    while (r.received < r.total && !r.receiver_lost && now_us() - r.last_progress < 3000000LL &&
           (left_at == 0 || now_us() - left_at < 1000000LL)) {
        struct pollfd pfd = {r.receiver->fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) > 0) {
            receive(&r);
        }
        check_interrupted();
        if (left_at == 0 && prog_poll(&p, 0)) {
            left_at = now_us();
        }
    }
    out->received = r.received;
    out->anomalies = r.anomalies;
    if (stop_at > 0) {
        prog_stop(&p, SIGTERM, 5000);
    } else if (prog_wait(&p, 10000) == -1) {
        prog_stop(&p, SIGKILL, 5000);
    }
    out->status = p.status;
    out->rss_kb = p.rss_kb;
    char problem[160] = "";
    server_stop(&srv, problem, sizeof problem);
    char st[64];
    /* Stopped by our SIGTERM: the client names what it gives up and exits
     * 1 (or, an older one, dies of the signal). */
    int killed_by_us = stop_at > 0 && ((WIFSIGNALED(p.status) && WTERMSIG(p.status) == SIGTERM) ||
                                       (WIFEXITED(p.status) && WEXITSTATUS(p.status) <= 1));
    if (out->received < r.total || out->anomalies > 0) {
        snprintf(out->problem, sizeof out->problem,
                 "FAILED: lines lost or garbled: %ld of the first %ld rows out of sequence; client %s",
                 out->anomalies, out->received,
                 killed_by_us ? "stopped" : status_text(p.status, st, sizeof st));
    } else if (!killed_by_us && p.status != 0) {
        snprintf(out->problem, sizeof out->problem, "client %s", status_text(p.status, st, sizeof st));
    } else if (problem[0] != '\0') {
        snprintf(out->problem, sizeof out->problem, "%s", problem);
    }
    run_free(&r);
    unlink(path);
}

/* ---------------------------------------------------------------------
 * The bound: one loopback round trip, one insert
 * ------------------------------------------------------------------- */

static int read_line_blocking(int fd, char *buf, size_t cap) {
    size_t len = 0;
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n <= 0) {
            if (n == -1 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        len += (size_t)n;
        if (buf[len - 1] == '\n') {
            return 0;
        }
    }
    return -1;
}

/* n blocking ping-pongs of a chat-sized line over TCP loopback between two
 * new processes, as a client and the server do it: microseconds each. */
static void rtt_trial(long long *v, int n) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd == -1 || bind(lfd, (struct sockaddr *)&a, sizeof a) == -1 || listen(lfd, 1) == -1 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) == -1) {
        die("loopback listen: %s", strerror(errno));
    }
    fd_flags(lfd, 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == -1) {
        die("fork: %s", strerror(errno));
    }
    if (pid == 0) { /* the echo side */
        char buf[512];
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        int fd = accept(lfd, NULL, NULL);
        while (fd != -1 && read_line_blocking(fd, buf, sizeof buf) == 0) {
            write_all(fd, "ACK 1\n", 6);
        }
        _exit(0);
    }
    remember_kid(pid);
    close(lfd);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd == -1 || connect(fd, (struct sockaddr *)&a, sizeof a) == -1) {
        die("loopback connect: %s", strerror(errno));
    }
    char line[128], buf[512];
    int len = snprintf(line, sizeof line, "MSG 1 0123456789abcdef-1 s0 n0 t0 the quick brown fox\n");
    for (int i = -100; i < n; i++) {
        long long t = now_us();
        write_all(fd, line, (size_t)len);
        if (read_line_blocking(fd, buf, sizeof buf) == -1) {
            die("loopback ping-pong failed");
        }
        if (i >= 0) {
            v[i] = now_us() - t;
        }
    }
    close(fd);
    waitpid(pid, NULL, 0);
    forget_kid(pid);
}

/* Mean microseconds of one insert, each its own transaction, in a table
 * and with pragmas like common/store.c's. with_offset: step 4's UNIQUE
 * client offset is filled in too. */
static double measure_insert(int with_offset) {
    sqlite3 *db;
    sqlite3_stmt *st;
    const char *path = tmp_path("insert-%d.db", with_offset);
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db,
                     "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                     " client_offset TEXT UNIQUE, content TEXT)",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO messages (client_offset, content) VALUES (?, ?)", -1, &st,
                           NULL) != SQLITE_OK) {
        die("sqlite: %s", sqlite3_errmsg(db));
    }
    long long t0 = 0;
    char offset[64], text[128];
    for (int i = -1000; i < BOUND_ROUNDS; i++) {
        if (i == 0) {
            t0 = now_us();
        }
        snprintf(offset, sizeof offset, "0123456789abcdef-%d", i + 1000);
        format_text(text, sizeof text, 0, i, 0);
        if (with_offset) {
            sqlite3_bind_text(st, 1, offset, -1, SQLITE_STATIC);
        } else {
            sqlite3_bind_null(st, 1);
        }
        sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) {
            die("insert: %s", sqlite3_errmsg(db));
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    double us = (double)(now_us() - t0) / BOUND_ROUNDS;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return us;
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
    char *end;
    long v = s ? strtol(s, &end, 10) : -1;
    if (s == NULL || end == s || *end != '\0' || v < lo) {
        usage();
    }
    return v;
}

static void parse_options(int argc, char **argv) {
    static char cmd[1024];
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
    snprintf(cmd, sizeof cmd, "tests/bench");
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strlen(cmd) + strlen(o) + (v ? strlen(v) : 0) + 3 < sizeof cmd) {
            strcat(cmd, " ");
            strcat(cmd, o);
        }
        if (strcmp(o, "--no-bound") == 0) {
            opt.bound = 0;
            continue;
        }
        if (v != NULL && strlen(cmd) + strlen(v) + 2 < sizeof cmd) {
            strcat(cmd, " ");
            strcat(cmd, v);
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
    opt.cmdline = cmd;
}

/* The project root: $CHAT_ROOT, else the parent of the directory that
 * holds this binary (<root>/tests/bench). */
static void find_root(const char *argv0) {
    const char *env = getenv("CHAT_ROOT");
    if (env != NULL && *env != '\0') {
        snprintf(root, sizeof root, "%s", env);
    } else {
        const char *slash = strrchr(argv0, '/');
        if (slash == NULL) {
            snprintf(root, sizeof root, "..");
        } else {
            snprintf(root, sizeof root, "%.*s/..", (int)(slash - argv0), argv0);
        }
    }
    if (strchr(argv0, '/') != NULL) {
        snprintf(self_path, sizeof self_path, "%s", argv0);
    } else {
        snprintf(self_path, sizeof self_path, "%s/tests/bench", root);
    }
    for (int step = 1; step <= 4; step++) {
        if (access(bin(step, "server"), X_OK) != 0 || access(bin(step, "client"), X_OK) != 0) {
            die("%s and step%d/client not found under %s: run make first (or set CHAT_ROOT)",
                bin(step, "server"), step, root);
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
    signal(SIGPIPE, SIG_IGN);
    /* 1000 idle connections, plus the clients' pipes and reapers */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 4096 ? 4096 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static const char *guarantee(int step) {
    static const char *const names[] = {"", "at most once", "buffered", "at least once", "exactly once"};
    return names[step];
}

/* Other work on the machine skews every figure: say so (Linux only). */
static void print_load(const char *when) {
    FILE *f = fopen("/proc/loadavg", "r");
    double load;
    if (f != NULL) {
        if (fscanf(f, "%lf", &load) == 1 && load >= 1.0) {
            printf("note: load average %.2f %s: other processes share the CPUs.\n", load, when);
        }
        fclose(f);
    }
}

static void print_header(void) {
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

static void print_row(const struct result *r) {
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

static void print_legend(const char *journal, int journal_same) {
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

struct bound {
    long long p10, p50, p90; /* round trip, us */
    double insert[5]; /* by step */
};

static void measure_bound(struct bound *b) {
    long long *v = xcalloc(RTT_TRIALS * RTT_ROUNDS, sizeof(long long));
    for (int t = 0; t < RTT_TRIALS; t++) {
        rtt_trial(v + t * RTT_ROUNDS, RTT_ROUNDS);
        check_interrupted();
    }
    qsort(v, RTT_TRIALS * RTT_ROUNDS, sizeof(long long), cmp_ll);
    b->p10 = percentile(v, RTT_TRIALS * RTT_ROUNDS, 0.10);
    b->p50 = percentile(v, RTT_TRIALS * RTT_ROUNDS, 0.50);
    b->p90 = percentile(v, RTT_TRIALS * RTT_ROUNDS, 0.90);
    free(v);
    b->insert[1] = b->insert[2] = b->insert[3] = measure_insert(0);
    b->insert[4] = measure_insert(1);
}

static double bound_rate(const struct bound *b, int step) {
    return 1e6 / ((double)b->p50 + b->insert[step]);
}

static void print_bound(const struct bound *b, const struct result *res, int n) {
    char x[32], y[32], z[32];
    printf("\nThe bound for one sender with one message in flight (steps 3-4): a round trip + an insert.\n");
    printf("  loopback round trip: median %lld us (p10 %lld, p90 %lld); %d x %s blocking ping-pongs,\n",
           b->p50, b->p10, b->p90, RTT_TRIALS, thousands(RTT_ROUNDS, x, sizeof x));
    printf("  each between two fresh processes. insert: %.1f us (steps 1-3), %.1f us (step 4, UNIQUE\n",
           b->insert[3], b->insert[4]);
    printf("  offset), mean of %s, each its own transaction, with the server's table and pragmas.\n",
           thousands(BOUND_ROUNDS, x, sizeof x));
    for (int step = 3; step <= 4; step++) {
        const struct result *r = find_result(res, n, step, 1);
        double bound = bound_rate(b, step);
        printf("  step %d: bound %s msg/s (%s with the round trip at its p90)\n", step,
               thousands((long long)(bound + 0.5), x, sizeof x),
               thousands((long long)(1e6 / ((double)b->p90 + b->insert[step]) + 0.5), y, sizeof y));
        if (r != NULL) {
            printf("          1 sender: %s msg/s real client (%.0f%%), %s raw (%.0f%%); server CPU %.0f "
                   "us/row\n",
                   thousands((long long)(r->rate + 0.5), y, sizeof y), 100 * r->rate / bound,
                   thousands((long long)(r->lat_rate + 0.5), z, sizeof z), 100 * r->lat_rate / bound,
                   r->rows > 0 ? (double)r->server_cpu_us / (double)r->rows : 0.0);
        }
    }
    printf("  many senders share one server that inserts a row at a time: at most %s msg/s (step 4).\n",
           thousands((long long)(1e6 / b->insert[4] + 0.5), x, sizeof x));
}

int main(int argc, char **argv) {
    char a[32], b[32], c[32], d[32];
    long long start = now_us();
    if (argc >= 4 && strcmp(argv[1], "--reaper") == 0) {
        return reaper_main(argv + 2);
    }
    parse_options(argc, argv);
    find_root(argv[0]);
    setup();
    print_header();
    int ncells = opt.nsteps * opt.nsenders;
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

    struct result idle;
    memset(&idle, 0, sizeof idle);
    if (opt.idle > 0) {
        throughput_run(4, IDLE_SENDERS, opt.idle_messages, opt.idle, &idle);
        printf("\nServer memory with %s idle connections (step 4; each said HELLO and reads everything)\n",
               thousands(opt.idle, a, sizeof a));
        printf("while %d real client%s chat%s %s rows (%s msg/s): server peak RSS %s.\n", IDLE_SENDERS,
               IDLE_SENDERS == 1 ? "" : "s", IDLE_SENDERS == 1 ? "s" : "", thousands(idle.rows, a, sizeof a),
               thousands((long long)(idle.rate + 0.5), b, sizeof b), mb_text(idle.server_kb, c, sizeof c));
        const struct result *base = find_result(res, ncells, 4, IDLE_SENDERS);
        if (base != NULL && base->server_kb > 0 && idle.server_kb > 0) {
            printf("Without them (the step 4 row with %d sender%s): %s; about %.1f KB per idle connection.\n",
                   IDLE_SENDERS, IDLE_SENDERS == 1 ? "" : "s", mb_text(base->server_kb, a, sizeof a),
                   (double)(idle.server_kb - base->server_kb) / (double)opt.idle);
        }
        print_note(idle.problem, "  ");
    }

    struct stdin_result big, small;
    memset(&big, 0, sizeof big);
    memset(&small, 0, sizeof small);
    if (opt.stdin_lines > 0) {
        long tenth = opt.stdin_lines / 10 > 0 ? opt.stdin_lines / 10 : 1;
        long stop = opt.stdin_stop < tenth ? opt.stdin_stop : tenth;
        stdin_run(tenth, stop, &small);
        stdin_run(opt.stdin_lines, stop, &big);
        printf("\nClient memory: one step 4 client whose stdin is a file, stopped (SIGTERM) once %s rows\n"
               "are stored: it holds at most its send buffer, so the size of its stdin must not matter.\n",
               thousands(stop, a, sizeof a));
        const struct stdin_result *both[] = {&small, &big};
        for (int i = 0; i < 2; i++) {
            printf("  stdin %9s lines: peak RSS %s\n", thousands(both[i]->lines, a, sizeof a),
                   mb_text(both[i]->rss_kb, b, sizeof b));
            print_note(both[i]->problem, "    ");
        }
    }

    struct bound bnd;
    memset(&bnd, 0, sizeof bnd);
    if (opt.bound) {
        measure_bound(&bnd);
        print_bound(&bnd, res, ncells);
    }

    const struct result *t4 = find_result(res, ncells, 4, 10);
    if (t4 != NULL || opt.idle > 0 || opt.stdin_lines > 0 ||
        (opt.bound && find_result(res, ncells, 3, 1) != NULL) ||
        (opt.bound && find_result(res, ncells, 4, 1) != NULL)) {
        printf("\nTargets (read, not enforced):\n");
    }
    if (t4 != NULL) {
        printf("  %-52s %s msg/s: %s\n", "step 4, 10 senders, synchronous=NORMAL, > 20,000 msg/s:",
               thousands((long long)(t4->rate + 0.5), a, sizeof a),
               t4->rate > 20000 && t4->rows == t4->total ? "met" : "NOT MET");
    }
    if (opt.idle > 0) {
        char label[80];
        snprintf(label, sizeof label,
                 "server with %s idle connections, < 10 MB:", thousands(opt.idle, a, sizeof a));
        printf("  %-52s %s: %s\n", label, mb_text(idle.server_kb, b, sizeof b),
               idle.server_kb > 0 && idle.server_kb < 10 * 1024 && idle.rows == idle.total ? "met"
                                                                                           : "NOT MET");
    }
    if (opt.stdin_lines > 0) {
        int flat = !big.problem[0] && !small.problem[0] && big.rss_kb > 0 && small.rss_kb > 0 &&
                   big.rss_kb <= small.rss_kb + small.rss_kb / 10 + 256;
        char label[80];
        snprintf(label, sizeof label,
                 "client memory flat with %s lines on stdin:", thousands(big.lines, a, sizeof a));
        printf("  %-52s %s vs %s: %s\n", label, mb_text(big.rss_kb, b, sizeof b),
               mb_text(small.rss_kb, c, sizeof c), flat ? "met" : "NOT MET");
    }
    if (opt.bound) {
        for (int step = 3; step <= 4; step++) {
            const struct result *r = find_result(res, ncells, step, 1);
            if (r != NULL) {
                char label[80];
                snprintf(label, sizeof label, "step %d, 1 sender, against its bound of %s msg/s:", step,
                         thousands((long long)(bound_rate(&bnd, step) + 0.5), d, sizeof d));
                printf("  %-52s %.0f%% (real client), %.0f%% (raw)\n", label,
                       100 * r->rate / bound_rate(&bnd, step), 100 * r->lat_rate / bound_rate(&bnd, step));
            }
        }
    }
    printf("\nbench: %.0f s\n", (double)(now_us() - start) / 1e6);
    print_load("at the end");
    free(res);
    return 0;
}
