/* tests/bench_prog.c -- "make bench": programs, each under a reaper that
 * reports its peak memory and CPU time, and the server of a run. */
#include "bench.h"

#include "harness.h" /* step_bin() */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void fd_flags(int fd, int nonblock) {
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (nonblock) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
}

/* ---------------------------------------------------------------------
 * Programs, each under a reaper that reports its peak memory
 * ------------------------------------------------------------------- */

static void on_sigchld(int sig) {
    (void)sig; /* only here to interrupt pselect() */
}

void write_all(int fd, const char *s, size_t n) {
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
int reaper_main(char **argv) {
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
int prog_poll(struct prog *p, int timeout_ms) {
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

void prog_start(struct prog *p, const char *const argv[], int in, int out, int err) {
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
int prog_wait(struct prog *p, int timeout_ms) {
    long long end = now_us() + (long long)timeout_ms * 1000;
    while (!p->finished && now_us() < end) {
        prog_poll(p, 100);
        check_interrupted();
    }
    return p->finished ? 0 : -1;
}

void prog_stop(struct prog *p, int sig, int timeout_ms) {
    if (!p->finished) {
        kill(p->pid, sig);
        if (prog_wait(p, timeout_ms) == -1) {
            kill(p->pid, SIGKILL);
            prog_wait(p, 5000);
        }
    }
}

const char *status_text(int st, char *out, size_t n) {
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

int open_file(const char *path, int flags) {
    int fd = open(path, flags | O_CREAT, 0600);
    if (fd == -1) {
        die("%s: %s", path, strerror(errno));
    }
    fd_flags(fd, 0);
    return fd;
}

/* Count the lines of a (small) file that contain needle. */
int file_count(const char *path, const char *needle) {
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

void bench_server_start(struct server *s, int step, const char *name) {
    snprintf(s->db, sizeof s->db, "%s", tmp_path("%s.db", name));
    snprintf(s->err, sizeof s->err, "%s", tmp_path("%s.err", name));
    const char *argv[] = {step_bin(step, "server"), "--port", "0", "--db", s->db, NULL};
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
long bench_server_stop(struct server *s, char *problem, size_t n) {
    char st[64];
    prog_stop(&s->prog, SIGTERM, 10000);
    if (s->prog.status != 0 && problem[0] == '\0') {
        snprintf(problem, n, "server: %s after SIGTERM", status_text(s->prog.status, st, sizeof st));
    }
    return s->prog.rss_kb;
}

/* journal_mode as stored in the file, and the number of rows. */
void db_info(const char *path, char *mode, size_t n, long *rows) {
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
