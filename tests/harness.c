/* Test harness implementation.  See harness.h for the contract.
 *
 * Process layout: run_tests (the runner) forks one child per test; the child
 * makes itself a process-group leader, runs the test function and spawns the
 * programs under test, which inherit its group.  When the test ends the child
 * kills what it spawned; the runner then kills the whole group anyway, so
 * nothing survives a crashed or hung test. */
/* macOS hides POSIX.1-2008 functions such as mkdtemp() when
 * _POSIX_C_SOURCE is defined, unless _DARWIN_C_SOURCE is too */
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE
#endif
#include "harness.h"

#include "limits.h"
#include "store.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 64
#define TAIL_LINES 20
#define PATH_BUF 4096
#define KILL_GRACE_MS 2000 /* runner's hard kill comes this long after the soft deadline */

/* ---- per-test state (lives in the test's child process) ---- */

static const char *cur_test = "(no test)";
static int n_failures;
static jmp_buf abort_point;
static int abort_armed; /* abort_point is valid */
static long long test_deadline; /* soft per-test limit checked by pump; 0 = none */
static struct proc *procs[MAX_PROCS];
static int n_procs;
static char *test_dir; /* tmpdir(), created lazily */
static int n_servers, n_clients; /* for naming server1, client1, ... */

/* ---- runner configuration (inherited by the children) ---- */

static long long limit_ms = 30000; /* per-test time limit */
static char root_dir[2 * PATH_BUF + 2] = ".";

/* ---- small utilities ---- */

/* rotating static buffers so that several results can be alive at once
 * (e.g. several tmppath() calls in one argv array) */
/* A random number for port picking: each test process draws its own. */
static unsigned random_u32(void) {
    static unsigned seed;
    if (seed == 0)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)now_ms();
    seed = seed * 1103515245u + 12345u;
    return seed >> 8;
}

static char *rot_buf(void) {
    static char bufs[8][3 * PATH_BUF];
    static int next;
    next = (next + 1) % 8;
    return bufs[next];
}

static void set_cloexec(int fd) {
    fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
}

static void set_nonblock(int fd) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* buffers are allocated with a power-of-two capacity derived from their
 * length, so no capacity field is needed */
static size_t cap_for(size_t n) {
    size_t c = 256;
    while (c < n)
        c *= 2;
    return c;
}

static void text_append(char **buf, size_t *len, const char *data, size_t n) {
    if (!*buf || cap_for(*len + 1) < *len + n + 1) {
        char *nb = realloc(*buf, cap_for(*len + n + 1));
        if (!nb) {
            perror("harness: realloc");
            abort();
        }
        *buf = nb;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Reads what is available on a non-blocking fd.  Returns 0 at EOF or on a
 * hard error (the caller closes the fd), 1 if the fd stays open. */
static int read_available(int fd, char **buf, size_t *len) {
    char chunk[65536];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r > 0) {
            text_append(buf, len, chunk, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        return 0;
    }
}

/* memmem is not POSIX; output may contain NUL bytes, so strstr won't do */
static const char *find_mem(const char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    if (k == 0 || k > n)
        return NULL;
    for (size_t i = 0; i + k <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

static int count_mem(const char *hay, size_t n, const char *needle) {
    int count = 0;
    const char *p;
    size_t k = strlen(needle);
    while ((p = find_mem(hay, n, needle)) != NULL) {
        count++;
        n -= (size_t)(p - hay) + k;
        hay = p + k;
    }
    return count;
}

static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

static void close_fd(int *fd) {
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- failures ---- */

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    n_failures++;
    fprintf(stderr, "%s:%d: FAILED in %s: ", file, line, cur_test);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int test_failures(void) {
    return n_failures;
}

int test_ms_left(void) {
    long long left = test_deadline ? test_deadline - now_ms() : limit_ms;
    return left < 1 ? 1 : left > 0x7fffffff ? 0x7fffffff : (int)left;
}

static void finish_test(void);

_Noreturn void test_abort(void) {
    if (abort_armed)
        longjmp(abort_point, 1);
    /* used outside a test: still leave nothing running behind */
    finish_test();
    fflush(NULL);
    _exit(1);
}

/* a harness call that could not do its job: the test cannot go on */
#define FATAL(...)                                                                                           \
    do {                                                                                                     \
        test_fail(__FILE__, __LINE__, __VA_ARGS__);                                                          \
        test_abort();                                                                                        \
    } while (0)

void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p)
        FATAL("out of memory (%zu bytes)", n);
    return p;
}

char *over_long(size_t n, const char *head) {
    char *big = xmalloc(n);
    memset(big, 'L', n);
    memcpy(big, head, strlen(head));
    return big;
}

/* ---- spawned programs ---- */

static void make_pipe(int fds[2]) {
    if (pipe(fds) != 0)
        FATAL("pipe: %s", strerror(errno));
    /* nothing we create may leak into the programs under test: an inherited
     * copy of a socket or pipe would keep it open after we close ours */
    set_cloexec(fds[0]);
    set_cloexec(fds[1]);
}

static void drain(struct proc *p) {
    if (p->out_fd >= 0 && !read_available(p->out_fd, &p->out, &p->out_len))
        close_fd(&p->out_fd);
    if (p->err_fd >= 0 && !read_available(p->err_fd, &p->err, &p->err_len))
        close_fd(&p->err_fd);
}

/* Once a child is reaped, everything it wrote is in the pipes: drain them so
 * that "exited" implies "output complete". */
static void reap(struct proc *p) {
    int st;
    if (p->exited)
        return;
    if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
        p->exited = 1;
        p->status = st;
        drain(p);
    }
}

static _Noreturn void exec_child(const char *const argv[], int in[2], int out[2], int err[2], int status_w) {
    sigset_t none;
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    /* Ignored signals survive exec: the test process ignores SIGPIPE, and
     * whoever ran the suite may ignore the stop signals (nohup, a CI
     * runner, a shell's background job ignores SIGINT). A program under
     * test starts as it would from a terminal; a test that wants a signal
     * ignored says so itself (trap '' HUP). */
    signal(SIGPIPE, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGQUIT, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], (char *const *)argv);
    int e = errno;
    write_all(status_w, (const char *)&e, sizeof e);
    _exit(127);
}

/* The status pipe is close-on-exec: EOF means exec succeeded, an errno
 * value means it failed. */
static int exec_error(int status_r) {
    int e = 0;
    ssize_t r;
    do
        r = read(status_r, &e, sizeof e);
    while (r < 0 && errno == EINTR);
    return r == (ssize_t)sizeof e ? e : 0;
}

static struct proc *proc_new(const char *name) {
    struct proc *p = calloc(1, sizeof *p);
    if (!p)
        FATAL("out of memory");
    snprintf(p->name, sizeof p->name, "%s", name);
    p->out = malloc(cap_for(1));
    p->err = malloc(cap_for(1));
    if (!p->out || !p->err)
        FATAL("out of memory");
    p->out[0] = p->err[0] = '\0';
    return p;
}

struct proc *proc_start(const char *name, const char *const argv[]) {
    int in[2], out[2], err[2], st[2];
    if (n_procs == MAX_PROCS)
        FATAL("proc_start(%s): more than %d procs in one test", name, MAX_PROCS);
    struct proc *p = proc_new(name);
    make_pipe(in);
    make_pipe(out);
    make_pipe(err);
    make_pipe(st);
    fflush(NULL); /* or buffered output would be written twice */
    p->pid = fork();
    if (p->pid < 0)
        FATAL("fork: %s", strerror(errno));
    if (p->pid == 0)
        exec_child(argv, in, out, err, st[1]);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    close(st[1]);
    p->in_fd = in[1];
    p->out_fd = out[0];
    p->err_fd = err[0];
    set_nonblock(p->out_fd);
    set_nonblock(p->err_fd);
    procs[n_procs++] = p; /* registered first, so a failure below still cleans up */
    int e = exec_error(st[0]);
    close(st[0]);
    if (e)
        FATAL("proc_start(%s): exec %s: %s", name, argv[0], strerror(e));
    return p;
}

void proc_write(struct proc *p, const char *fmt, ...) {
    va_list ap;
    char small[1024], *text = small;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        FATAL("proc_write(%s): bad format", p->name);
    if ((size_t)n >= sizeof small) {
        text = malloc((size_t)n + 1);
        if (!text)
            FATAL("out of memory");
        va_start(ap, fmt);
        vsnprintf(text, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (p->in_fd < 0)
        test_fail(__FILE__, __LINE__, "proc_write(%s): stdin already closed", p->name);
    else if (write_all(p->in_fd, text, (size_t)n) != 0)
        test_fail(__FILE__, __LINE__, "proc_write(%s): %s", p->name, strerror(errno));
    if (text != small)
        free(text);
}

void proc_close_stdin(struct proc *p) {
    close_fd(&p->in_fd);
}

void proc_signal(struct proc *p, int sig) {
    reap(p);
    if (!p->exited)
        kill(p->pid, sig);
}

static int exit_code(int status) {
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int proc_wait_exit(struct proc *p, int timeout_ms) {
    long long end = now_ms() + timeout_ms;
    for (;;) {
        reap(p);
        if (p->exited)
            return exit_code(p->status);
        long long left = end - now_ms();
        if (left <= 0)
            return -1;
        pump(left < 20 ? (int)left : 20);
    }
}

void proc_kill(struct proc *p) {
    if (!p->exited) {
        int st;
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
            ;
        p->exited = 1;
        p->status = st;
    }
    drain(p);
    close_fd(&p->in_fd);
    close_fd(&p->out_fd);
    close_fd(&p->err_fd);
}

int proc_out_count(struct proc *p, const char *needle) {
    return count_mem(p->out, p->out_len, needle);
}

int proc_err_count(struct proc *p, const char *needle) {
    return count_mem(p->err, p->err_len, needle);
}

int proc_out_lines(struct proc *p) {
    return count_mem(p->out, p->out_len, "\n");
}

/* ---- pumping ---- */

static void add_fd(int fd, fd_set *set, int *maxfd) {
    if (fd < 0)
        return;
    FD_SET(fd, set);
    if (fd > *maxfd)
        *maxfd = fd;
}

static void check_test_deadline(void) {
    if (test_deadline && now_ms() > test_deadline) {
        test_deadline = 0;
        test_fail(__FILE__, __LINE__, "TIMEOUT: test exceeded its limit of %lld ms", limit_ms);
        test_abort();
    }
}

/* Waits up to max_ms for output of any proc, or for extra_fd (-1: none) to
 * become readable.  Returns 1 if extra_fd is readable. */
static int pump_fds(int max_ms, int extra_fd) {
    fd_set set;
    int maxfd = -1;
    FD_ZERO(&set);
    for (int i = 0; i < n_procs; i++) {
        add_fd(procs[i]->out_fd, &set, &maxfd);
        add_fd(procs[i]->err_fd, &set, &maxfd);
    }
    add_fd(extra_fd, &set, &maxfd);
    /* with no fds to watch, only exits can happen: poll for them */
    if (maxfd < 0 && max_ms > 10)
        max_ms = 10;
    struct timeval tv = {max_ms / 1000, (max_ms % 1000) * 1000};
    int r = select(maxfd + 1, &set, NULL, NULL, &tv);
    if (r < 0)
        FD_ZERO(&set); /* EINTR: just report nothing */
    for (int i = 0; i < n_procs; i++) {
        struct proc *p = procs[i];
        if (p->out_fd >= 0 && FD_ISSET(p->out_fd, &set) && !read_available(p->out_fd, &p->out, &p->out_len))
            close_fd(&p->out_fd);
        if (p->err_fd >= 0 && FD_ISSET(p->err_fd, &set) && !read_available(p->err_fd, &p->err, &p->err_len))
            close_fd(&p->err_fd);
        reap(p);
    }
    check_test_deadline();
    return extra_fd >= 0 && FD_ISSET(extra_fd, &set);
}

void pump(int max_ms) {
    pump_fds(max_ms < 0 ? 0 : max_ms, -1);
}

/* ---- temporary files ---- */

static void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char child[PATH_BUF];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        closedir(d);
    }
    rmdir(path);
}

const char *tmpdir(void) {
    if (test_dir)
        return test_dir;
    const char *base = getenv("TMPDIR");
    char tmpl[PATH_BUF], name[40];
    if (!base || !*base)
        base = "/tmp";
    /* the test name in the directory name helps when a failed one is kept */
    snprintf(name, sizeof name, "%s", cur_test);
    for (char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
    snprintf(tmpl, sizeof tmpl, "%s/chat-%s-XXXXXX", base, name);
    if (!mkdtemp(tmpl))
        FATAL("mkdtemp(%s): %s", tmpl, strerror(errno));
    test_dir = strdup(tmpl);
    if (!test_dir)
        FATAL("out of memory");
    return test_dir;
}

const char *tmppath(const char *name) {
    const char *dir = tmpdir();
    char *buf = rot_buf();
    snprintf(buf, 3 * PATH_BUF, "%s/%s", dir, name);
    return buf;
}

/* ---- the chat programs ---- */

/* CHAT_STEP_DIR=<dir> (with CHAT_STEP=<n>, only for step n): "step<n>/server"
 * and "step<n>/client" are <dir>/server and <dir>/client, so that the same
 * tests and the lab run a student's copy of a step (make grade). */
static int step_dir_path(const char *rel, char *buf) {
    const char *dir = getenv("CHAT_STEP_DIR"), *only = getenv("CHAT_STEP");
    int step, end = 0;
    if (!dir || !*dir || sscanf(rel, "step%d/%n", &step, &end) != 1 || end == 0)
        return 0;
    if (strcmp(rel + end, "server") != 0 && strcmp(rel + end, "client") != 0)
        return 0;
    if (only && *only && atoi(only) != step)
        return 0;
    snprintf(buf, 3 * PATH_BUF, "%s/%s", dir, rel + end);
    return 1;
}

const char *bin_path(const char *rel) {
    const char *root = getenv("CHAT_ROOT");
    char *buf = rot_buf();
    if (step_dir_path(rel, buf))
        return buf;
    if (!root || !*root)
        root = root_dir;
    snprintf(buf, 3 * PATH_BUF, "%s/%s", strcmp(root, "/") == 0 ? "" : root, rel);
    return buf;
}

/* <root>/tests/<binary>: the root is the parent of the binary's directory,
 * made absolute with getcwd() so that it does not depend on where a test
 * chdir()s to.  A binary living elsewhere (e.g. built into /tmp) falls back
 * to the current directory, which is where make runs from. */
static void set_root(const char *argv0) {
    char cwd[PATH_BUF], *dir = root_dir;
    const char *slash = strrchr(argv0, '/');
    int dir_len = slash ? (int)(slash - argv0) : 1;
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, ".");
    if (!slash)
        argv0 = ".";
    if (argv0[0] == '/')
        snprintf(dir, sizeof root_dir, "%.*s", dir_len, argv0);
    else
        snprintf(dir, sizeof root_dir, "%s/%.*s", strcmp(cwd, "/") ? cwd : "", dir_len, argv0);
    /* "a/tests/." and "a/tests/" name a/tests too */
    size_t n = strlen(dir);
    while (n > 1 && (dir[n - 1] == '/' || (dir[n - 1] == '.' && dir[n - 2] == '/')))
        dir[--n] = '\0';
    char *last = strrchr(dir, '/');
    if (last && strcmp(last + 1, "tests") == 0)
        *(last == dir ? last + 1 : last) = '\0';
    else
        snprintf(root_dir, sizeof root_dir, "%s", cwd);
}

int proc_port(struct proc *p) {
    static const char key[] = "listening on ";
    const char *s = find_mem(p->err, p->err_len, key);
    if (!s)
        return 0;
    s += sizeof key - 1;
    const char *eol = memchr(s, '\n', p->err_len - (size_t)(s - p->err));
    if (!eol)
        return 0; /* a partial line could hold a partial port number */
    /* the port follows the last ':' of the address (IPv6 has several) */
    const char *end = s;
    while (end < eol && *end != ',' && *end != ' ')
        end++;
    const char *colon = NULL;
    for (const char *c = s; c < end; c++)
        if (*c == ':')
            colon = c;
    if (!colon)
        return 0;
    long port = 0;
    for (const char *c = colon + 1; c < end && *c >= '0' && *c <= '9'; c++)
        port = port * 10 + (*c - '0');
    return port > 0 && port < 65536 ? (int)port : 0;
}

/* argv = fixed..., extra..., NULL */
static struct proc *start_with_extra(const char *name, const char *const fixed[], int n_fixed,
                                     const char *const extra[]) {
    const char *argv[64];
    int n = 0;
    for (int i = 0; i < n_fixed; i++)
        argv[n++] = fixed[i];
    for (int i = 0; extra && extra[i]; i++) {
        if (n == 63)
            FATAL("%s: too many arguments", name);
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    return proc_start(name, argv);
}

/* --port in extra, or 0 */
static int fixed_port(const char *const extra[]) {
    for (int i = 0; extra && extra[i] && extra[i + 1]; i++)
        if (strcmp(extra[i], "--port") == 0)
            return atoi(extra[i + 1]);
    return 0;
}

/* Ports claimed by this test process, for as long as the test runs:
 * one file per port in $TMPDIR/chat-test-ports, holding the owner's pid.
 * Without them, a test that kills its server and restarts it on the same
 * port could find another test's server there (both picked it at random,
 * one while the other's was down), and its client would talk to the wrong
 * server. A claim whose owner is gone (a test killed at its time limit)
 * is taken over. Tests of two suites run in parallel claim in the same
 * folder, so they never share a port either. */
#define MAX_CLAIMS 64
static int claimed[MAX_CLAIMS], n_claimed;

static void claim_path(int port, char *path, size_t n) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(path, n, "%s/chat-test-ports", base);
    mkdir(path, 0777); /* EEXIST is fine; a failure shows at open() */
    chmod(path, 01777); /* shared by every user's tests, like /tmp */
    size_t len = strlen(path);
    snprintf(path + len, n - len, "/%d", port);
}

/* 1 if the port is now ours (or was already), 0 if a live test has it. */
static int claim_port(int port) {
    char path[PATH_BUF + 32], pid[32];
    for (int i = 0; i < n_claimed; i++)
        if (claimed[i] == port)
            return 1;
    if (n_claimed == MAX_CLAIMS)
        FATAL("more than %d server ports in one test", MAX_CLAIMS);
    claim_path(port, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0 && errno == EEXIST) {
        FILE *f = fopen(path, "r");
        long owner = 0;
        if (f) {
            if (fscanf(f, "%ld", &owner) != 1)
                owner = 0;
            fclose(f);
        }
        if (owner > 0 && (kill((pid_t)owner, 0) == 0 || errno == EPERM))
            return 0; /* a live test's */
        unlink(path); /* its owner is gone */
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    }
    if (fd < 0)
        return 0; /* another test took it just now, or no folder: pick again */
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    write_all(fd, pid, (size_t)n);
    close(fd);
    claimed[n_claimed++] = port;
    return 1;
}

static void release_ports(void) {
    char path[PATH_BUF + 32];
    for (int i = 0; i < n_claimed; i++) {
        claim_path(claimed[i], path, sizeof path);
        unlink(path);
    }
    n_claimed = 0;
}

/* Servers listen on a port below every system's ephemeral range (Linux
 * 32768-60999, macOS 49152-65535). With --port 0 the port would come from
 * that range, and once a test kills the server, an outgoing connection
 * may be given the same number as its source port (even connect to
 * itself, while the proxy retries the dead server): the restart could not
 * bind. A port taken by another test is retried with another number; a
 * fixed port (a restart) is retried as it is, within the deadline. */
const char *step_bin(int step, const char *prog) {
    char rel[64];
    snprintf(rel, sizeof rel, "step%d/%s", step, prog);
    return bin_path(rel);
}

struct proc *server_start(int step, const char *db, const char *const extra[]) {
    char name[32], port[16];
    int fixed = fixed_port(extra);
    snprintf(name, sizeof name, "server%d", ++n_servers);
    if (!db)
        db = tmppath("chat.db");
    const char *args[] = {step_bin(step, "server"), "--port", port, "--db", db};
    long long end = now_ms() + 5000;
    for (;;) {
        int pick = fixed ? fixed : 20000 + (int)(random_u32() % 10000);
        if (!fixed && !claim_port(pick))
            continue; /* a live test's port */
        snprintf(port, sizeof port, "%d", pick);
        struct proc *p = start_with_extra(name, args, 5, extra);
        while (proc_port(p) == 0 && !p->exited && now_ms() < end)
            pump(20);
        if (proc_port(p) != 0)
            return p;
        if (!p->exited)
            FATAL("%s: no \"listening on\" line within 5000 ms", name);
        if (strstr(p->err, "in use") == NULL || now_ms() >= end)
            FATAL("%s exited (status %d) before listening", name, exit_code(p->status));
        pump(50);
    }
}

struct proc *client_start(int step, int port, const char *const extra[]) {
    char name[32], port_s[16];
    snprintf(name, sizeof name, "client%d", ++n_clients);
    snprintf(port_s, sizeof port_s, "%d", port);
    const char *fixed[] = {step_bin(step, "client"),   "--port", port_s, "--reconnection-delay", "50",
                           "--reconnection-delay-max", "200"};
    return start_with_extra(name, fixed, 7, extra);
}

struct proc *server_restart(int step, const char *db, int port) {
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    const char *same_port[] = {"--port", port_s, NULL};
    struct proc *s = server_start(step, db, same_port);
    if (proc_port(s) != port)
        FATAL("server_restart: listening on %d, not %d", proc_port(s), port);
    return s;
}

struct proc *server_start_sh(int step, const char *script, const char *db) {
    const char *argv[] = {"/bin/sh", "-c", script, step_bin(step, "server"),
                          "--port",  "0",  "--db", db ? db : tmppath("chat.db"),
                          NULL};
    return proc_start("server", argv);
}

int proc_connected(struct proc *c) {
    return proc_err_count(c, "connected as");
}

long proc_count_lines(struct proc *p, struct line_counter *lc) {
    const char *nl;
    while (lc->pos < p->out_len && (nl = memchr(p->out + lc->pos, '\n', p->out_len - lc->pos)) != NULL) {
        lc->lines++;
        lc->pos = (size_t)(nl - p->out) + 1;
    }
    return lc->lines;
}

long chat_until_cut(struct proc *s, struct proc *send, struct proc *recv, struct line_counter *sc,
                    struct line_counter *rc, const char *tag, long sent) {
    enum { TEXT_LEN = CUT_TEXT_LEN, WINDOW = 16, MAX_MSGS = 6000 };
    char text[TEXT_LEN + 1];
    long long end = now_ms() + 25000;
    while (proc_err_count(s, "output buffer full") == 0) {
        if (sent >= MAX_MSGS || now_ms() > end)
            FATAL("no \"output buffer full\" after %ld messages of %d bytes", sent, TEXT_LEN);
        long r = proc_count_lines(recv, rc), w = proc_count_lines(send, sc);
        if (sent - (r < w ? r : w) < WINDOW) {
            int k = snprintf(text, sizeof text, "%s %06ld ", tag, sent + 1);
            memset(text + k, 'x', (size_t)(TEXT_LEN - k));
            text[TEXT_LEN] = '\0';
            proc_write(send, "%s\n", text);
            sent++;
        } else {
            pump(20);
        }
    }
    return sent;
}

/* ---- raw TCP peer ---- */

/* received bytes per fd; pos = start of the not yet consumed lines */
struct tcp_state {
    int used, eof;
    char *buf;
    size_t len, pos;
};
static struct tcp_state tcp_tab[FD_SETSIZE];

static struct tcp_state *tcp_get(int fd) {
    if (fd < 0 || fd >= FD_SETSIZE || !tcp_tab[fd].used)
        FATAL("fd %d is not a tcp_connect() socket", fd);
    return &tcp_tab[fd];
}

int tcp_connect(int port) {
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        FATAL("socket: %s", strerror(errno));
    if (fd >= FD_SETSIZE)
        FATAL("socket fd %d too large for select", fd);
    set_cloexec(fd);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        FATAL("tcp_connect(%d): %s", port, strerror(e));
    }
    tcp_adopt(fd);
    return fd;
}

int tcp_listen(int *port) {
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || fd >= FD_SETSIZE)
        FATAL("tcp_listen: socket: %s", fd < 0 ? strerror(errno) : "fd too large");
    set_cloexec(fd);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        FATAL("tcp_listen: %s", strerror(errno));
    *port = ntohs(sa.sin_port);
    return fd;
}

int tcp_accept(int listen_fd, int timeout_ms) {
    long long end = now_ms() + timeout_ms;
    for (;;) {
        fd_set rd;
        struct timeval tv = {0, 20000};
        FD_ZERO(&rd);
        FD_SET(listen_fd, &rd);
        if (select(listen_fd + 1, &rd, NULL, NULL, &tv) > 0) {
            int fd = accept(listen_fd, NULL, NULL);
            if (fd < 0 || fd >= FD_SETSIZE)
                FATAL("tcp_accept: %s", fd < 0 ? strerror(errno) : "fd too large");
            set_cloexec(fd);
            return fd;
        }
        if (now_ms() > end)
            FATAL("tcp_accept: no connection within %d ms", timeout_ms);
        pump(0);
    }
}

void tcp_adopt(int fd) {
    if (fd < 0 || fd >= FD_SETSIZE)
        FATAL("tcp_adopt: fd %d out of range", fd);
    set_cloexec(fd);
    struct tcp_state *t = &tcp_tab[fd];
    memset(t, 0, sizeof *t);
    t->used = 1;
    text_append(&t->buf, &t->len, "", 0);
}

void tcp_send(int fd, const void *buf, size_t len) {
    tcp_get(fd);
    if (write_all(fd, buf, len) != 0 && errno != EPIPE && errno != ECONNRESET)
        test_fail(__FILE__, __LINE__, "tcp_send(%d): %s", fd, strerror(errno));
}

void fd_send(int fd, const void *buf, size_t len) {
    if (write_all(fd, buf, len) != 0)
        FATAL("write to fd %d: %s", fd, strerror(errno));
}

void fd_send_str(int fd, const char *s) {
    fd_send(fd, s, strlen(s));
}

void tcp_send_str(int fd, const char *s) {
    tcp_send(fd, s, strlen(s));
}

int tcp_hello(int port, long long offset, int timeout_ms) {
    char line[64];
    int fd = tcp_connect(port);
    snprintf(line, sizeof line, "HELLO %lld\n", offset);
    tcp_send_str(fd, line);
    if (!tcp_wait_line(fd, "WELCOME ", timeout_ms))
        FATAL("tcp_hello(%d): no WELCOME within %d ms", port, timeout_ms);
    return fd;
}

/* one read after select said readable; EOF and reset both end the stream */
static void tcp_fill(int fd, struct tcp_state *t) {
    char chunk[65536];
    ssize_t r;
    do
        r = read(fd, chunk, sizeof chunk);
    while (r < 0 && errno == EINTR);
    if (r > 0)
        text_append(&t->buf, &t->len, chunk, (size_t)r);
    else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
        t->eof = 1;
}

/* consumes complete lines; 1 when one contains needle */
static int tcp_consume_until(struct tcp_state *t, const char *needle) {
    char *nl;
    while ((nl = memchr(t->buf + t->pos, '\n', t->len - t->pos)) != NULL) {
        const char *line = t->buf + t->pos;
        size_t n = (size_t)(nl - line);
        t->pos += n + 1;
        if (find_mem(line, n, needle))
            return 1;
    }
    return 0;
}

int tcp_wait_line(int fd, const char *needle, int timeout_ms) {
    struct tcp_state *t = tcp_get(fd);
    long long end = now_ms() + timeout_ms;
    for (;;) {
        if (tcp_consume_until(t, needle))
            return 1;
        long long left = end - now_ms();
        if (t->eof || left <= 0)
            return 0;
        if (pump_fds((int)left, fd))
            tcp_fill(fd, t);
    }
}

int tcp_wait_closed(int fd, int timeout_ms) {
    struct tcp_state *t = tcp_get(fd);
    long long end = now_ms() + timeout_ms;
    while (!t->eof) {
        long long left = end - now_ms();
        if (left <= 0)
            return 0;
        if (pump_fds((int)left, fd))
            tcp_fill(fd, t);
    }
    return 1;
}

const char *tcp_log(int fd) {
    return tcp_get(fd)->buf;
}

void tcp_close(int fd) {
    struct tcp_state *t = tcp_get(fd);
    free(t->buf);
    memset(t, 0, sizeof *t);
    close(fd);
}

/* ---- SQLite ---- */

static sqlite3 *db_open(const char *db, int flags) {
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(db, &h, flags, NULL) != SQLITE_OK) {
        fprintf(stderr, "note: cannot open %s: %s\n", db, h ? sqlite3_errmsg(h) : "?");
        sqlite3_close(h);
        return NULL;
    }
    sqlite3_busy_timeout(h, 2000);
    return h;
}

long long db_scalar(const char *db, const char *sql) {
    sqlite3 *h = db_open(db, SQLITE_OPEN_READONLY);
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (!h)
        return -1;
    int rc = sqlite3_prepare_v2(h, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "note: db %s: \"%s\": %s\n", db, sql, sqlite3_errmsg(h));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

long long db_count(const char *db, const char *sql_where) {
    char *sql = sqlite3_mprintf("SELECT COUNT(*) FROM messages WHERE %s", sql_where);
    if (!sql)
        FATAL("out of memory");
    long long v = db_scalar(db, sql);
    sqlite3_free(sql);
    return v;
}

void db_check_lines(const char *what, const char *buf, const char *db, long long first, long long last,
                    int wire) {
    sqlite3 *h = db_open(db, SQLITE_OPEN_READONLY);
    if (!h)
        FATAL("%s: cannot open %s", what, db);
    sqlite3_stmt *st = NULL;
    size_t len = strlen(buf), pos = 0;
    long long expect_id = first + 1;
    char head[48];
    REQUIRE(sqlite3_prepare_v2(h, "SELECT id, content FROM messages WHERE id > ? AND id <= ? ORDER BY id", -1,
                               &st, NULL) == SQLITE_OK);
    sqlite3_bind_int64(st, 1, first);
    sqlite3_bind_int64(st, 2, last);
    int ok = 1;
    while (ok && sqlite3_step(st) == SQLITE_ROW) {
        long long id = sqlite3_column_int64(st, 0);
        const char *text = (const char *)sqlite3_column_text(st, 1);
        size_t hl = (size_t)snprintf(head, sizeof head, "%s%lld ", wire ? "CHAT " : "", id),
               tl = strlen(text);
        if (id != expect_id) {
            test_fail(__FILE__, __LINE__, "%s: ids not contiguous in the db: %lld after %lld", what, id,
                      expect_id - 1);
            ok = 0;
        } else if (pos + hl + tl + 1 > len || memcmp(buf + pos, head, hl) != 0 ||
                   memcmp(buf + pos + hl, text, tl) != 0 || memcmp(buf + pos + hl + tl, "\n", 1) != 0) {
            test_fail(__FILE__, __LINE__, "%s: line for row %lld missing or wrong at byte %zu: \"%.60s\"",
                      what, id, pos, buf + pos);
            ok = 0;
        }
        pos += hl + tl + 1;
        expect_id++;
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    if (ok && expect_id != last + 1) {
        test_fail(__FILE__, __LINE__, "%s: rows up to %lld expected, the db has them up to %lld", what, last,
                  expect_id - 1);
    } else if (ok && pos != len) {
        test_fail(__FILE__, __LINE__, "%s: unexpected bytes after the last row: \"%.60s\"", what, buf + pos);
    }
}

void *db_lock(const char *db) {
    sqlite3 *h = db_open(db, SQLITE_OPEN_READWRITE);
    if (!h)
        FATAL("db_lock(%s): cannot open", db);
    if (sqlite3_exec(h, "BEGIN EXCLUSIVE", NULL, NULL, NULL) != SQLITE_OK) {
        test_fail(__FILE__, __LINE__, "db_lock(%s): %s", db, sqlite3_errmsg(h));
        sqlite3_close(h);
        test_abort();
    }
    return h;
}

void db_unlock(void *lock) {
    if (!lock)
        return;
    sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(lock);
}

void db_exec(const char *db, const char *sql) {
    sqlite3 *h = db_open(db, SQLITE_OPEN_READWRITE);
    if (!h)
        FATAL("db_exec(%s): cannot open", db);
    if (sqlite3_exec(h, sql, NULL, NULL, NULL) != SQLITE_OK) {
        test_fail(__FILE__, __LINE__, "db_exec(%s): \"%.60s\": %s", db, sql, sqlite3_errmsg(h));
        sqlite3_close(h);
        test_abort();
    }
    sqlite3_close(h);
}

/* The rows go in through a second connection, in one transaction:
 * store_insert() commits each row alone, and a million commits would
 * take minutes. */
static void db_fill(sqlite3 *h, long n, int offsets, db_text_fn text_of) {
    sqlite3_stmt *st = NULL;
    char text[MAX_LINE + 1], offset[32];
    if (sqlite3_exec(h, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, "INSERT INTO messages (client_offset, content) VALUES (?, ?)", -1, &st, NULL) !=
            SQLITE_OK)
        FATAL("db_make: %s", sqlite3_errmsg(h));
    for (long i = 1; i <= n; i++) {
        text_of(i, text, sizeof text);
        snprintf(offset, sizeof offset, "pre-%ld", i);
        if (offsets)
            sqlite3_bind_text(st, 1, offset, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 1);
        sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            FATAL("db_make: row %ld: %s", i, sqlite3_errmsg(h));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        FATAL("db_make: COMMIT: %s", sqlite3_errmsg(h));
}

void db_make(const char *db, long n, int offsets, db_text_fn text_of) {
    char err[256];
    struct store *s = store_open(db, err, sizeof err);
    if (!s)
        FATAL("store_open(%s): %s", db, err);
    store_close(s);
    if (n == 0)
        return;
    sqlite3 *h = db_open(db, SQLITE_OPEN_READWRITE);
    if (!h)
        FATAL("db_make(%s): cannot open", db);
    db_fill(h, n, offsets, text_of);
    sqlite3_close(h);
}

/* ---- end of a test (in its child) ---- */

static void print_tail(const char *what, const char *buf, size_t len) {
    size_t start = len;
    int lines = 0;
    if (len == 0)
        return;
    if (buf[len - 1] == '\n')
        start--; /* the final newline does not start a line */
    while (start > 0 && lines < TAIL_LINES) {
        if (buf[start - 1] == '\n' && ++lines == TAIL_LINES)
            break;
        start--;
    }
    fprintf(stderr, "  %s%s:\n", what, start > 0 ? " (last lines)" : "");
    const char *s = buf + start, *end = buf + len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *e = nl ? nl : end;
        fprintf(stderr, "    | %.*s\n", (int)(e - s), s);
        s = nl ? nl + 1 : end;
    }
}

static void describe_proc(struct proc *p, int was_running) {
    fprintf(stderr, "--- %s (pid %ld, %s", p->name, (long)p->pid,
            was_running ? "still running, killed" : "exited");
    if (!was_running)
        fprintf(stderr, " with %d", exit_code(p->status));
    fprintf(stderr, ")\n");
    print_tail("stdout", p->out, p->out_len);
    print_tail("stderr", p->err, p->err_len);
}

/* kills everything the test spawned (even when it failed), shows the procs'
 * output if it failed, removes or keeps the temporary directory */
static void finish_test(void) {
    for (int i = 0; i < n_procs; i++) {
        struct proc *p = procs[i];
        reap(p);
        int was_running = !p->exited;
        proc_kill(p);
        if (n_failures)
            describe_proc(p, was_running);
        free(p->out);
        free(p->err);
        free(p);
    }
    n_procs = 0;
    release_ports(); /* after the kills: nothing of ours listens there now */
    for (int fd = 0; fd < FD_SETSIZE; fd++)
        if (tcp_tab[fd].used)
            tcp_close(fd);
    /* TEST_KEEP=0: a failure expected by the caller (a near miss graded
     * inside the suite) leaves nothing behind */
    const char *keep = getenv("TEST_KEEP");
    if (test_dir && n_failures && !(keep && strcmp(keep, "0") == 0))
        fprintf(stderr, "kept temp dir: %s\n", test_dir);
    else if (test_dir)
        remove_tree(test_dir);
    free(test_dir);
    test_dir = NULL;
}

/* A test's child is forked from a process that may have a test of its own
 * (a subtest's parent, or a runner nested in a test).  Our copies of that
 * test's procs, sockets and tmpdir are released without killing or removing
 * anything; closing our copies of the fds matters: a stray copy of a proc's
 * stdin or of a socket would keep it open after the owner closes it. */
static void forget_parent_state(void) {
    n_claimed = 0; /* the parent's ports stay the parent's */
    for (int i = 0; i < n_procs; i++) {
        close_fd(&procs[i]->in_fd);
        close_fd(&procs[i]->out_fd);
        close_fd(&procs[i]->err_fd);
        free(procs[i]->out);
        free(procs[i]->err);
        free(procs[i]);
    }
    n_procs = 0;
    for (int fd = 0; fd < FD_SETSIZE; fd++)
        if (tcp_tab[fd].used) {
            free(tcp_tab[fd].buf);
            close(fd);
        }
    memset(tcp_tab, 0, sizeof tcp_tab);
    free(test_dir);
    test_dir = NULL;
    n_servers = n_clients = 0;
}

/* Backstop for a hung test whose runner is gone (killed, or a nested runner
 * in the selftest): take the whole process group down, procs included. */
static void self_destruct(int sig) {
    (void)sig;
    kill(0, SIGKILL);
}

/* body of a test's child process */
static _Noreturn void child_run(const char *name, void (*fn)(void)) {
    signal(SIGPIPE, SIG_IGN); /* a dead peer must give EPIPE, not kill the test */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    forget_parent_state();
    cur_test = name;
    n_failures = 0;
    test_deadline = now_ms() + limit_ms;
    signal(SIGALRM, self_destruct);
    alarm((unsigned)((limit_ms + KILL_GRACE_MS) / 1000 + 1));
    if (setjmp(abort_point) == 0) {
        abort_armed = 1;
        fn();
    }
    abort_armed = 0;
    test_deadline = 0;
    finish_test();
    fflush(NULL);
    _exit(n_failures ? 1 : 0);
}

int subtest(void (*fn)(void), char *out, size_t outsz) {
    int fds[2], st;
    size_t len = 0;
    make_pipe(fds);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        FATAL("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        child_run("subtest", fn);
    }
    close(fds[1]);
    for (;;) {
        ssize_t r = read(fds[0], out + len, outsz - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == outsz - 1) { /* full: keep reading so the child never blocks */
            char sink[4096];
            while (read(fds[0], sink, sizeof sink) > 0)
                ;
            break;
        }
    }
    out[len] = '\0';
    close(fds[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? (WEXITSTATUS(st) != 0) : -1;
}

/* ---- runner ---- */

struct slot {
    const struct test *t;
    pid_t pid; /* 0 = free */
    int fd; /* child's stdout+stderr */
    char *buf;
    size_t len;
    long long start;
    int killed; /* hit the hard limit */
};

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig) {
    (void)sig;
    interrupted = 1;
}

static long long env_num(const char *name, double dflt, double scale) {
    const char *s = getenv(name);
    char *end;
    double v = s ? strtod(s, &end) : 0;
    if (!s || end == s || v <= 0)
        v = dflt;
    return (long long)(v * scale);
}

static void slot_start(struct slot *s, const struct test *t) {
    int fds[2];
    if (pipe(fds) != 0) {
        perror("harness: pipe");
        exit(2);
    }
    set_cloexec(fds[0]);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("harness: fork");
        exit(2);
    }
    if (pid == 0) {
        /* own group, so that the runner can kill everything the test spawned */
        setpgid(0, 0);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[1]);
        if (devnull > 2)
            close(devnull);
        setvbuf(stdout, NULL, _IONBF, 0);
        child_run(t->name, t->fn);
    }
    setpgid(pid, pid); /* also here: whichever runs first wins the race */
    close(fds[1]);
    set_nonblock(fds[0]);
    s->t = t;
    s->pid = pid;
    s->fd = fds[0];
    s->buf = NULL;
    s->len = 0;
    text_append(&s->buf, &s->len, "", 0);
    s->start = now_ms();
    s->killed = 0;
}

static void print_indented(const char *buf) {
    while (*buf) {
        const char *nl = strchr(buf, '\n');
        int n = nl ? (int)(nl - buf) : (int)strlen(buf);
        printf("    %.*s\n", n, buf);
        buf += n + (nl ? 1 : 0);
    }
}

/* returns 1 if the test passed */
static int slot_report(struct slot *s, int status) {
    long long ms = now_ms() - s->start;
    int passed = !s->killed && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    printf("%s %s (%lld ms)\n", passed ? "PASS" : "FAIL", s->t->name, ms);
    if (!passed) {
        print_indented(s->buf);
        if (s->killed)
            printf("    TIMEOUT: killed after %lld ms (limit %lld ms)\n", ms, limit_ms);
        else if (WIFSIGNALED(status))
            printf("    CRASHED: signal %d\n", WTERMSIG(status));
    }
    fflush(stdout);
    return passed;
}

/* Polls a running slot.  Returns -1 while running, else 1/0 = passed/failed. */
static int slot_poll(struct slot *s, const fd_set *readable) {
    int st;
    if (s->fd >= 0 && FD_ISSET(s->fd, readable) && !read_available(s->fd, &s->buf, &s->len))
        close_fd(&s->fd);
    if (!s->killed && now_ms() > s->start + limit_ms + KILL_GRACE_MS) {
        kill(-s->pid, SIGKILL);
        s->killed = 1;
    }
    if (waitpid(s->pid, &st, WNOHANG) != s->pid)
        return -1;
    /* whatever the test left behind (e.g. a grandchild of a program under
     * test) dies with the group; then the rest of the output is in the pipe */
    kill(-s->pid, SIGKILL);
    if (s->fd >= 0)
        read_available(s->fd, &s->buf, &s->len);
    close_fd(&s->fd);
    int passed = slot_report(s, st);
    free(s->buf);
    s->pid = 0;
    return passed;
}

static void wait_slots(struct slot *slots, int jobs, fd_set *readable) {
    int maxfd = -1;
    FD_ZERO(readable);
    for (int i = 0; i < jobs; i++)
        if (slots[i].pid)
            add_fd(slots[i].fd, readable, &maxfd);
    /* child exits are polled, so the timeout stays short */
    struct timeval tv = {0, 20000};
    if (select(maxfd + 1, readable, NULL, NULL, &tv) < 0)
        FD_ZERO(readable);
}

/* index of the first test from i on that the command line selects (n: none);
 * with arguments, only tests whose name contains one of them */
static int next_match(const struct test *tests, int n, int i, int argc, char **argv) {
    for (; i < n; i++) {
        if (argc <= 1)
            return i;
        for (int a = 1; a < argc; a++)
            if (strstr(tests[i].name, argv[a]))
                return i;
    }
    return n;
}

static void kill_all(struct slot *slots, int jobs) {
    for (int i = 0; i < jobs; i++)
        if (slots[i].pid) {
            kill(-slots[i].pid, SIGKILL);
            while (waitpid(slots[i].pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
}

void harness_init(const char *argv0, int limit_seconds) {
    set_root(argv0);
    limit_ms = (long long)limit_seconds * 1000;
}

static void usage(const char *argv0) {
    printf("usage: %s [NAME...]      run the tests whose name contains one of the NAMEs (all without)\n"
           "       %s --list         list the test names, one a line\n"
           "       %s --graded STEP  run the tests make grade runs for STEP (1-4, durable, window)\n"
           "environment:\n"
           "  TEST_TIMEOUT=S    a test's time limit in seconds (default 90, as in make test)\n"
           "  TEST_JOBS=N       tests run at a time (default 4)\n"
           "  CHAT_STEP_DIR=D   run D/server and D/client instead of stepN/server and stepN/client\n"
           "  CHAT_STEP=N       with CHAT_STEP_DIR: only for step N (default: every step)\n",
           argv0, argv0, argv0);
}

/* --help and --list: 1 if handled (the runner then exits 0) */
static int run_options(int argc, char **argv, const struct test *tests, int n) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(argv[0]);
        return 1;
    }
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < n; i++)
            printf("%s\n", tests[i].name);
        return 1;
    }
    return 0;
}

int run_tests(int argc, char **argv, const struct test *tests, int n) {
    struct sigaction sa;
    if (run_options(argc, argv, tests, n))
        return 0;
    int jobs = (int)env_num("TEST_JOBS", 4, 1);
    int next = next_match(tests, n, 0, argc, argv);
    int running = 0, passed = 0, failed = 0;

    set_root(argv[0]);
    limit_ms = env_num("TEST_TIMEOUT", 90, 1000);
    struct slot *slots = calloc((size_t)jobs, sizeof *slots);
    if (!slots)
        return 2;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt; /* no SA_RESTART: select must wake up */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    while (!interrupted) {
        for (int i = 0; i < jobs && next < n; i++)
            if (!slots[i].pid) {
                slot_start(&slots[i], &tests[next]);
                running++;
                next = next_match(tests, n, next + 1, argc, argv);
            }
        if (running == 0)
            break;
        fd_set readable;
        wait_slots(slots, jobs, &readable);
        for (int i = 0; i < jobs; i++) {
            int r = slots[i].pid ? slot_poll(&slots[i], &readable) : -1;
            if (r >= 0) {
                running--;
                passed += r;
                failed += !r;
            }
        }
    }
    if (interrupted) {
        kill_all(slots, jobs);
        printf("interrupted\n");
        failed += running;
    }
    free(slots);
    printf("%d passed, %d failed\n", passed, failed);
    fflush(stdout);
    const char *summary = getenv("TEST_SUMMARY_FILE");
    FILE *f = summary && *summary ? fopen(summary, "a") : NULL;
    if (f) {
        fprintf(f, "%d %d\n", passed, failed);
        fclose(f);
    }
    return failed ? 1 : 0;
}
