/* Test harness for the chat steps: spawn real programs, wait on conditions
 * with deadlines, inspect SQLite files, run each test in its own process.
 * C11 + POSIX.1-2008 only. */
#ifndef HARNESS_H
#define HARNESS_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h" /* now_ms(): the tests use the product's monotonic clock */

#if defined(__GNUC__) || defined(__clang__)
#define HARNESS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define HARNESS_PRINTF(f, a)
#endif

/* ---- spawned programs ---- */

/* one spawned program, its stdin writable, its stdout and stderr captured in full */
struct proc {
    char name[32];
    pid_t pid;
    int in_fd; /* write end of the child's stdin, -1 once closed */
    int out_fd, err_fd; /* read ends (non-blocking), -1 at EOF */
    char *out;
    size_t out_len; /* everything read from stdout so far, NUL-terminated */
    char *err;
    size_t err_len; /* same for stderr */
    int exited, status; /* filled by reaping (waitpid WNOHANG during pumping) */
};

/* argv[0] is the path (no PATH search); NULL-terminated.  Exec failure ends
 * the test as failed.  The proc is killed and freed when the test ends. */
struct proc *proc_start(const char *name, const char *const argv[]);
void proc_write(struct proc *p, const char *fmt, ...) HARNESS_PRINTF(2, 3);
void proc_close_stdin(struct proc *p);
void proc_signal(struct proc *p, int sig);
/* pumps while waiting; exit code (0..255), 128+sig if killed, -1 on timeout */
int proc_wait_exit(struct proc *p, int timeout_ms);
void proc_kill(struct proc *p); /* SIGKILL + reap, idempotent */
int proc_out_count(struct proc *p, const char *needle);
int proc_err_count(struct proc *p, const char *needle);
int proc_out_lines(struct proc *p); /* complete lines in stdout */

/* select() on every live proc's stdout/stderr for at most max_ms, append what
 * arrives, reap exited children; returns early when data arrived */
void pump(int max_ms);

/* ---- failures ---- */

void test_fail(const char *file, int line, const char *fmt, ...) HARNESS_PRINTF(3, 4);
/* Ends the current test at once (longjmp back to the runner's child), so it
 * also works from helper functions and from functions returning a value. */
_Noreturn void test_abort(void);
int test_failures(void); /* failures recorded so far */
/* Milliseconds left before the test's own limit (TEST_TIMEOUT), at least 1.
 * The deadline of a wait on a job whose duration is the machine's (a
 * million rows, an external tool over the whole tree): a fixed deadline
 * shorter than the limit fails on a loaded machine or a sanitizer build
 * although nothing is wrong, and the limit still ends a real hang. */
int test_ms_left(void);
/* malloc(), or the test ends as failed */
void *xmalloc(size_t n);
/* n bytes (no NUL): head, then 'L' up to the end; malloc'd. An over-long
 * line when n passes MAX_LINE. */
char *over_long(size_t n, const char *head);

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond))                                                                                         \
            test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                               \
    } while (0)
#define REQUIRE(cond)                                                                                        \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                                             \
            test_abort();                                                                                    \
        }                                                                                                    \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                                   \
    do {                                                                                                     \
        long long ceq_a_ = (long long)(a), ceq_b_ = (long long)(b);                                          \
        if (ceq_a_ != ceq_b_)                                                                                \
            test_fail(__FILE__, __LINE__, "CHECK_EQ_INT(%s, %s): %lld != %lld", #a, #b, ceq_a_, ceq_b_);     \
    } while (0)
/* Re-evaluates cond whenever output arrives and at least every 20 ms (so
 * conditions on files or databases are polled too). */
#define WAIT_UNTIL(cond, ms)                                                                                 \
    do {                                                                                                     \
        long long wu_end_ = now_ms() + (ms);                                                                 \
        while (!(cond)) {                                                                                    \
            long long wu_left_ = wu_end_ - now_ms();                                                         \
            if (wu_left_ <= 0) {                                                                             \
                test_fail(__FILE__, __LINE__, "WAIT_UNTIL(%s) timed out after %lld ms", #cond,               \
                          (long long)(ms));                                                                  \
                test_abort();                                                                                \
            }                                                                                                \
            pump(wu_left_ < 20 ? (int)wu_left_ : 20);                                                        \
        }                                                                                                    \
    } while (0)

/* ---- temporary files ---- */

/* fresh private directory for the current test, removed after a passing
 * test, kept (path printed) after a failing one */
const char *tmpdir(void);
const char *tmppath(const char *name); /* tmpdir()/name; 8 rotating static buffers */

/* ---- the chat programs ---- */

/* stepN/server --port P --db <db> extra...: P is a random port below the
 * systems' ephemeral ranges (see harness.c), or the --port given in extra
 * (a restart on the same port). Waits up to 5 s for the "listening on
 * HOST:PORT" line, retrying while the port is in use.  db NULL means
 * tmppath("chat.db"). */
struct proc *server_start(int step, const char *db, const char *const extra[]);
/* server_start() on the same port as before: a restart */
struct proc *server_restart(int step, const char *db, int port);
int proc_port(struct proc *p); /* from a complete "listening on H:P" stderr line, 0 if none yet */
/* stepN/client --port <port> --reconnection-delay 50 --reconnection-delay-max 200 extra... */
struct proc *client_start(int step, int port, const char *const extra[]);
/* <root>/rel, root = $CHAT_ROOT, else the parent of the directory holding
 * the test binary (<root>/tests/<binary>); 8 rotating static buffers.
 * With $CHAT_STEP_DIR set, "step<n>/server" and "step<n>/client" are
 * $CHAT_STEP_DIR/server and $CHAT_STEP_DIR/client instead, for every n or,
 * with $CHAT_STEP=<n>, for that step only: how make grade runs the tests
 * and the lab against a student's own step. */
const char *bin_path(const char *rel);
const char *step_bin(int step, const char *prog); /* bin_path("step<step>/<prog>") */
/* stepN/server --port 0 --db <db> (NULL: tmppath("chat.db")), started
 * by /bin/sh -c script: the script sets the scene (ulimit, trap, a
 * redirection) and ends in exec "$0" "$@". Returns at once. */
struct proc *server_start_sh(int step, const char *script, const char *db);
/* Lines with "connected as" on a client's stderr: its connections so far. */
int proc_connected(struct proc *c);

/* Complete lines in a growing stdout, counted from where the last call
 * stopped: megabytes of output are not rescanned at every wait. */
struct line_counter {
    size_t pos;
    long lines;
};
long proc_count_lines(struct proc *p, struct line_counter *lc);

/* Drive the server s to cut a reader off: type messages of CUT_TEXT_LEN
 * bytes ("<tag> <n> xxx...") into the client send, at most 16 ahead of
 * what send and recv have printed (counted with sc and rc), until s logs
 * "output buffer full". sent: messages sent before; returns the total.
 * The test ends as failed if the cut has not come after 6000 messages or
 * 25 s. */
#define CUT_TEXT_LEN 3000
long chat_until_cut(struct proc *s, struct proc *send, struct proc *recv, struct line_counter *sc,
                    struct line_counter *rc, const char *tag, long sent);

/* ---- raw TCP peer ---- */

int tcp_connect(int port); /* blocking connect to 127.0.0.1:port; failure ends the test */
/* Take a connected socket from elsewhere (say, accept() on a fake server)
 * into the tcp_* functions; it is closed at test end like the others. */
void tcp_adopt(int fd);
/* A fake server: a listening socket on 127.0.0.1, any free port (in *port).
 * tcp_accept() waits for a connection on it (pumping meanwhile); failure or
 * the deadline ends the test. The accepted fd is plain: tcp_adopt() it to
 * use the tcp_* functions on it. */
int tcp_listen(int *port);
int tcp_accept(int listen_fd, int timeout_ms);
/* sends all of buf; a peer that already closed (EPIPE/ECONNRESET) is not a
 * failure, bad-input tests expect it */
void tcp_send(int fd, const void *buf, size_t len);
void tcp_send_str(int fd, const char *s); /* tcp_send() of a string */
/* All of buf to any fd (a fake server's accepted socket, a pipe), not
 * only a tcp_* one; a failed write ends the test. */
void fd_send(int fd, const void *buf, size_t len);
void fd_send_str(int fd, const char *s);
/* A raw peer on 127.0.0.1:port that said "HELLO <offset>" and got its
 * WELCOME (within timeout_ms; else the test ends) */
int tcp_hello(int port, long long offset, int timeout_ms);
/* Waits for a complete line containing needle.  Lines up to and including the
 * match are consumed (expect-style), so the next call looks further on.
 * 1 if found, 0 on timeout or EOF. */
int tcp_wait_line(int fd, const char *needle, int timeout_ms);
int tcp_wait_closed(int fd, int timeout_ms); /* 1 if EOF or reset within the deadline */
const char *tcp_log(int fd); /* everything received on fd so far, NUL-terminated */
void tcp_close(int fd); /* close and forget; done for all fds at test end */

/* ---- SQLite checks (read-only connection per call, busy_timeout 2000) ---- */

/* SELECT COUNT(*) FROM messages WHERE <sql_where>; -1 on error (printed, not a failure) */
long long db_count(const char *db, const char *sql_where);
long long db_scalar(const char *db, const char *sql); /* first column of first row; -1 on error */
/* Checks that buf holds exactly one line per stored row first < id <= last,
 * in id order, ids contiguous: "CHAT <id> <text>" as the server sends it
 * (wire), or "<id> <text>" as a client prints it (texts here are plain).
 * Reports the first difference as a failure. */
void db_check_lines(const char *what, const char *buf, const char *db, long long first, long long last,
                    int wire);
/* BEGIN EXCLUSIVE in a separate connection of this process; failure ends the test */
void *db_lock(const char *db);
void db_unlock(void *lock);

/* ---- test databases (failure ends the test) ---- */

/* The text of row i (from 1) of a test database, into buf. */
typedef void (*db_text_fn)(long i, char *buf, size_t cap);
/* A database as the server makes it: created by store_open() (common/
 * store.h, so the schema is the product's), then rows 1..n added in one
 * transaction, their texts from text_of. With offsets, row i has the
 * client offset "pre-<i>", as step 4 stores rows; else none (NULL). */
void db_make(const char *db, long n, int offsets, db_text_fn text_of);
/* Run SQL (any number of statements) on db, read-write. */
void db_exec(const char *db, const char *sql);

/* ---- runner ---- */

/* For programs that are not test suites (the lab): find the project root
 * from argv[0] and set the per-run time limit, as run_tests() does. */
void harness_init(const char *argv0, int limit_seconds);

struct test {
    const char *name;
    void (*fn)(void);
};
/* argv: names (a test runs if its name contains one; none: all), or
 * --list (print the names), or --help (usage, with the env vars).
 * env: TEST_TIMEOUT (seconds, default 90, as make test sets it), TEST_JOBS (default 4),
 * TEST_SUMMARY_FILE (append "<P> <F>\n"), TEST_KEEP=0 (remove a failed
 * test's directory too; kept by default), CHAT_STEP_DIR and CHAT_STEP
 * (see bin_path).  Returns the exit status. */
int run_tests(int argc, char **argv, const struct test *tests, int n);

/* For testing the harness itself: runs fn in a forked child as a test of its
 * own (own procs, own tmpdir, own abort point).  Its messages go to out
 * (truncated to outsz).  Returns 0 if it passed, 1 if it failed, -1 if it
 * crashed. */
int subtest(void (*fn)(void), char *out, size_t outsz);

#endif
