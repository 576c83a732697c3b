/* Tests of the harness itself, using /bin/sh, /bin/cat and friends.
 * Behaviour that must fail (timeouts, exec errors, the runner's FAIL lines)
 * runs inside subtest(), so that this suite itself stays green. */
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE /* see harness.c */
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *self_argv0;
static char out[65536]; /* a subtest's output */

static struct proc *sh(const char *name, const char *script) {
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    return proc_start(name, argv);
}

/* the value printed by a subtest as KEY=value\n, in a static buffer */
static const char *field(const char *key) {
    static char val[4096];
    char pat[64];
    snprintf(pat, sizeof pat, "%s=", key);
    const char *s = strstr(out, pat);
    if (!s)
        return "";
    s += strlen(pat);
    size_t n = strcspn(s, "\n");
    snprintf(val, sizeof val, "%.*s", (int)n, s);
    return val;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* a failed subtest keeps its tmpdir for debugging; ours are expected */
static void remove_kept(void) {
    const char *s = strstr(out, "kept temp dir: ");
    char dir[4096];
    if (!s)
        return;
    s += strlen("kept temp dir: ");
    snprintf(dir, sizeof dir, "%.*s", (int)strcspn(s, "\n"), s);
    const char *rm[] = {"/bin/rm", "-rf", dir, NULL};
    CHECK_EQ_INT(proc_wait_exit(proc_start("rm", rm), 5000), 0);
}

/* Dead: gone, or a zombie nobody reaped yet (an orphan waits for init,
 * which may be slow, or not reap at all in a container). */
static int dead(pid_t pid) {
    char spid[32];
    long long end = now_ms() + 2000;
    if (pid <= 0)
        return 0;
    while (now_ms() < end) {
        if (kill(pid, 0) == -1 && errno == ESRCH)
            return 1;
        pump(20);
    }
    snprintf(spid, sizeof spid, "%ld", (long)pid);
    const char *argv[] = {"/bin/ps", "-o", "stat=", "-p", spid, NULL};
    struct proc *ps = proc_start("ps", argv);
    proc_wait_exit(ps, 5000);
    return ps->out[0] == 'Z';
}

/* ---- processes ---- */

static void test_cat_echoes(void) {
    const char *argv[] = {"/bin/cat", NULL};
    struct proc *p = proc_start("cat", argv);
    proc_write(p, "hello\n");
    proc_write(p, "%s %d\n", "world", 42);
    WAIT_UNTIL(proc_out_lines(p) == 2, 2000);
    CHECK(strcmp(p->out, "hello\nworld 42\n") == 0);
    CHECK_EQ_INT(proc_out_count(p, "hello"), 1);
    CHECK_EQ_INT(p->err_len, 0);
}

static void test_close_stdin_gives_eof(void) {
    const char *argv[] = {"/bin/cat", NULL};
    struct proc *p = proc_start("cat", argv);
    proc_write(p, "last\n");
    proc_close_stdin(p);
    CHECK_EQ_INT(p->in_fd, -1);
    CHECK_EQ_INT(proc_wait_exit(p, 2000), 0);
    /* exit implies the output is complete */
    CHECK(strcmp(p->out, "last\n") == 0);
}

static void test_exit_codes(void) {
    CHECK_EQ_INT(proc_wait_exit(sh("exit7", "exit 7"), 2000), 7);
    CHECK_EQ_INT(proc_wait_exit(sh("term", "kill -TERM $$"), 2000), 128 + SIGTERM);

    struct proc *p = sh("sleeper", "exec sleep 30");
    long long t0 = now_ms();
    CHECK_EQ_INT(proc_wait_exit(p, 150), -1);
    long long waited = now_ms() - t0;
    CHECK(waited >= 150 && waited < 2000);
    proc_signal(p, SIGKILL);
    CHECK_EQ_INT(proc_wait_exit(p, 2000), 128 + SIGKILL);
    proc_kill(p); /* idempotent */
    proc_kill(p);
    CHECK_EQ_INT(p->out_fd, -1);
}

static void test_stderr_and_binary_output(void) {
    struct proc *p = sh("mixed", "echo oops >&2; printf 'a\\000b\\000a\\n'; echo oops >&2");
    CHECK_EQ_INT(proc_wait_exit(p, 2000), 0);
    CHECK_EQ_INT(proc_err_count(p, "oops"), 2);
    CHECK_EQ_INT(proc_out_count(p, "a"), 2); /* counted past the NUL bytes */
    CHECK_EQ_INT(p->out_len, 6);
    CHECK_EQ_INT(proc_out_lines(p), 1);
}

static void exec_missing(void) {
    const char *argv[] = {"/nonexistent/prog", NULL};
    proc_start("missing", argv);
    puts("after proc_start");
}

static void test_exec_failure_fails_test(void) {
    CHECK_EQ_INT(subtest(exec_missing, out, sizeof out), 1);
    CHECK(strstr(out, "exec /nonexistent/prog: No such file") != NULL);
    CHECK(strstr(out, "after proc_start") == NULL);
}

/* ---- failures ---- */

static void wait_forever(void) {
    WAIT_UNTIL(1 + 1 == 3, 150);
    puts("after WAIT_UNTIL");
}

static void test_wait_until_times_out(void) {
    long long t0 = now_ms();
    CHECK_EQ_INT(subtest(wait_forever, out, sizeof out), 1);
    long long took = now_ms() - t0;
    CHECK(took >= 150 && took < 5000);
    CHECK(strstr(out, "FAILED in subtest: WAIT_UNTIL(1 + 1 == 3) timed out after 150 ms") != NULL);
    CHECK(strstr(out, "after WAIT_UNTIL") == NULL);
}

static void checks_then_require(void) {
    CHECK(1 == 2);
    CHECK_EQ_INT(3, 2 + 2);
    CHECK(1 == 1);
    printf("failures so far=%d\n", test_failures());
    REQUIRE(0 > 1);
    puts("after REQUIRE");
}

static void passes(void) {
    CHECK(1);
    REQUIRE(1);
    WAIT_UNTIL(1, 10);
}

static void test_check_continues_require_stops(void) {
    CHECK_EQ_INT(subtest(checks_then_require, out, sizeof out), 1);
    CHECK(strstr(out, "selftest.c:") != NULL);
    CHECK(strstr(out, "CHECK(1 == 2)") != NULL);
    CHECK(strstr(out, "CHECK_EQ_INT(3, 2 + 2): 3 != 4") != NULL);
    CHECK(strstr(out, "failures so far=2") != NULL);
    CHECK(strstr(out, "REQUIRE(0 > 1)") != NULL);
    CHECK(strstr(out, "after REQUIRE") == NULL);
    CHECK_EQ_INT(subtest(passes, out, sizeof out), 0);
    CHECK(strstr(out, "FAILED") == NULL);
}

/* ---- cleanup at test end ---- */

static void spawn_and_pass(void) {
    struct proc *p = sh("sleeper", "exec sleep 30");
    printf("PID=%ld\n", (long)p->pid);
}

static void spawn_and_fail(void) {
    struct proc *p = sh("talker", "echo line1; echo line2; echo warn >&2; exec sleep 30");
    struct proc *q = sh("quitter", "echo bye; exit 3");
    printf("PID=%ld\n", (long)p->pid);
    WAIT_UNTIL(proc_out_lines(p) == 2 && p->err_len > 0, 2000);
    proc_wait_exit(q, 2000);
    REQUIRE(0);
}

static void test_procs_killed_at_test_end(void) {
    CHECK_EQ_INT(subtest(spawn_and_pass, out, sizeof out), 0);
    pid_t pid = (pid_t)atol(field("PID"));
    CHECK(dead(pid));

    CHECK_EQ_INT(subtest(spawn_and_fail, out, sizeof out), 1);
    pid = (pid_t)atol(field("PID"));
    CHECK(dead(pid));
    /* a failing test shows what its procs said */
    CHECK(strstr(out, "--- talker (pid") != NULL);
    CHECK(strstr(out, "still running, killed") != NULL);
    CHECK(strstr(out, "| line2") != NULL);
    CHECK(strstr(out, "| warn") != NULL);
    CHECK(strstr(out, "--- quitter (pid") != NULL);
    CHECK(strstr(out, "exited with 3") != NULL);
}

static void make_tree(void) {
    const char *d = tmpdir();
    CHECK(d == tmpdir()); /* one directory per test */
    printf("DIR=%s\n", d);
    CHECK(mkdir(tmppath("sub"), 0700) == 0);
    FILE *f = fopen(tmppath("sub/file"), "w");
    REQUIRE(f != NULL);
    fputs("x", f);
    fclose(f);
    /* several tmppath results stay valid at once */
    const char *a = tmppath("a"), *b = tmppath("b"), *c = tmppath("c");
    CHECK(strstr(a, "/a") && strstr(b, "/b") && strstr(c, "/c"));
}

static void make_tree_and_fail(void) {
    make_tree();
    CHECK(0);
}

static void test_tmpdir_unique_and_removed(void) {
    char dir[4096];
    CHECK_EQ_INT(subtest(make_tree, out, sizeof out), 0);
    snprintf(dir, sizeof dir, "%s", field("DIR"));
    CHECK(dir[0] == '/');
    CHECK(!exists(dir));
    CHECK(strcmp(dir, tmpdir()) != 0);

    CHECK_EQ_INT(subtest(make_tree_and_fail, out, sizeof out), 1);
    CHECK(strcmp(field("DIR"), dir) != 0);
    snprintf(dir, sizeof dir, "%s", field("DIR"));
    CHECK(exists(dir)); /* kept for debugging */
    char kept[4200];
    snprintf(kept, sizeof kept, "kept temp dir: %s", dir);
    CHECK(strstr(out, kept) != NULL);
    remove_kept();
    CHECK(!exists(dir));
}

/* ---- programs under test (faked with shell scripts) ---- */

static void write_script(const char *rel, const char *body) {
    FILE *f = fopen(tmppath(rel), "w");
    REQUIRE(f != NULL);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    REQUIRE(chmod(tmppath(rel), 0755) == 0);
}

static void fake_root(void) {
    mkdir(tmppath("step1"), 0700);
    mkdir(tmppath("step2"), 0700);
    write_script("step1/server", "echo \"args: $*\"\n"
                                 "echo \"server: listening on 127.0.0.1:5678, db $4\" >&2\nexec sleep 30");
    write_script("step1/client", "echo \"args: $*\"\nexec cat");
    write_script("step2/server", "echo 'cannot bind' >&2; exit 1");
    REQUIRE(setenv("CHAT_ROOT", tmpdir(), 1) == 0); /* only this test's process */
}

static void start_broken_server(void) {
    fake_root();
    server_start(2, NULL, NULL);
}

static void test_server_and_client_start(void) {
    char want[8300];
    fake_root();
    const char *extra[] = {"--ping-interval", "100", NULL};
    struct proc *s = server_start(1, NULL, extra);
    CHECK_EQ_INT(proc_port(s), 5678);
    WAIT_UNTIL(proc_out_lines(s) == 1, 2000);
    /* a port below the ephemeral ranges: 20000..29999 */
    int port = atoi(s->out + strlen("args: --port "));
    CHECK(strncmp(s->out, "args: --port ", 13) == 0 && port >= 20000 && port < 30000);
    snprintf(want, sizeof want, " --db %s --ping-interval 100\n", tmppath("chat.db"));
    CHECK(strstr(s->out, want) != NULL);
    CHECK(strcmp(s->name, "server1") == 0);

    struct proc *c = client_start(1, proc_port(s), NULL);
    WAIT_UNTIL(proc_out_lines(c) == 1, 2000);
    CHECK(strcmp(c->out, "args: --port 5678 --reconnection-delay 50 "
                         "--reconnection-delay-max 200\n") == 0);
    proc_write(c, "hi\n");
    WAIT_UNTIL(proc_out_count(c, "hi\n") == 1, 2000);

    CHECK_EQ_INT(subtest(start_broken_server, out, sizeof out), 1);
    CHECK(strstr(out, "server1 exited (status 1) before listening") != NULL);
    CHECK(strstr(out, "| cannot bind") != NULL);
    remove_kept();
}

static void test_bin_path(void) {
    unsetenv("CHAT_ROOT");
    const char *p = bin_path("step1/server");
    printf("bin_path=%s\n", p);
    CHECK(p[0] == '/');
    CHECK(strlen(p) > 13 && strcmp(p + strlen(p) - 13, "/step1/server") == 0);
    CHECK(strstr(p, "/tests/step1") == NULL);
    setenv("CHAT_ROOT", "/some/root", 1);
    CHECK(strcmp(bin_path("step2/client"), "/some/root/step2/client") == 0);
}

static void test_proc_port_parsing(void) {
    /* a partial line must not give a partial port */
    struct proc *p = sh("slow", "printf 'server: listening on 127.0.0.1:4' >&2; sleep 0.3;"
                                "printf '321, db x.db\\n' >&2; exec sleep 30");
    WAIT_UNTIL(p->err_len > 0, 2000);
    CHECK_EQ_INT(proc_port(p), 0);
    WAIT_UNTIL(proc_port(p) != 0, 2000);
    CHECK_EQ_INT(proc_port(p), 4321);

    struct proc *q = sh("v6", "echo 'server: listening on ::1:5555, db x.db' >&2");
    WAIT_UNTIL(q->exited, 2000);
    CHECK_EQ_INT(proc_port(q), 5555);
}

/* ---- TCP ---- */

/* a listening socket on a port the OS picks */
static int listen_any(int *port) {
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    REQUIRE(listen(fd, 4) == 0);
    REQUIRE(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void put(int fd, const char *s) {
    CHECK(write(fd, s, strlen(s)) == (ssize_t)strlen(s));
}

static void test_tcp_peer(void) {
    int port;
    int lfd = listen_any(&port);
    int fd = tcp_connect(port);
    int srv = accept(lfd, NULL, NULL);
    REQUIRE(srv >= 0);

    put(srv, "WELCOME abc 1 2\nCHAT 1 hi\nparti");
    CHECK_EQ_INT(tcp_wait_line(fd, "CHAT 1", 2000), 1);
    CHECK_EQ_INT(tcp_wait_line(fd, "parti", 200), 0); /* line not complete yet */
    put(srv, "al\r\n");
    CHECK_EQ_INT(tcp_wait_line(fd, "partial", 2000), 1);
    CHECK_EQ_INT(tcp_wait_line(fd, "WELCOME", 100), 0); /* already consumed */
    CHECK(strcmp(tcp_log(fd), "WELCOME abc 1 2\nCHAT 1 hi\npartial\r\n") == 0);

    char buf[64] = {0};
    tcp_send(fd, "HELLO 0\n", 8);
    CHECK_EQ_INT(read(srv, buf, sizeof buf - 1), 8);
    CHECK(strcmp(buf, "HELLO 0\n") == 0);

    CHECK_EQ_INT(tcp_wait_closed(fd, 100), 0);
    put(srv, "ERR bye\n");
    close(srv);
    CHECK_EQ_INT(tcp_wait_closed(fd, 2000), 1);
    CHECK_EQ_INT(tcp_wait_line(fd, "ERR bye", 100), 1); /* data before EOF is kept */
    long long t0 = now_ms();
    CHECK_EQ_INT(tcp_wait_line(fd, "nothing", 2000), 0);
    CHECK(now_ms() - t0 < 500); /* EOF ends the wait */

    /* sending to a closed peer is not a failure in itself */
    tcp_send(fd, "MSG a\n", 6);
    nanosleep(&(struct timespec){0, 50000000}, NULL);
    tcp_send(fd, "MSG b\n", 6);
    CHECK_EQ_INT(test_failures(), 0);
    tcp_close(fd);
    close(lfd);
}

static int refused_port;

static void connect_refused(void) {
    tcp_connect(refused_port);
    puts("after tcp_connect");
}

static void test_tcp_connect_refused_fails(void) {
    int lfd = listen_any(&refused_port);
    close(lfd); /* nobody listens there now */
    CHECK_EQ_INT(subtest(connect_refused, out, sizeof out), 1);
    CHECK(strstr(out, "tcp_connect(") != NULL);
    CHECK(strstr(out, "after tcp_connect") == NULL);
}

/* ---- SQLite ---- */

static void sql(const char *db, const char *stmt) {
    sqlite3 *h;
    REQUIRE(sqlite3_open(db, &h) == SQLITE_OK);
    int rc = sqlite3_exec(h, stmt, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        printf("sql: %s\n", sqlite3_errmsg(h));
    sqlite3_close(h);
    REQUIRE(rc == SQLITE_OK);
}

static int try_insert(const char *db) {
    sqlite3 *h;
    REQUIRE(sqlite3_open(db, &h) == SQLITE_OK);
    sqlite3_busy_timeout(h, 100);
    int rc = sqlite3_exec(h, "INSERT INTO messages(text) VALUES ('x')", NULL, NULL, NULL);
    sqlite3_close(h);
    return rc;
}

static void check_lock(const char *db, const char *mode) {
    char setup[256];
    snprintf(setup, sizeof setup,
             "PRAGMA journal_mode=%s;"
             "CREATE TABLE messages(id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
             "INSERT INTO messages(text) VALUES ('first');",
             mode);
    sql(db, setup);
    CHECK_EQ_INT(db_count(db, "1"), 1);
    CHECK_EQ_INT(db_count(db, "text = 'first'"), 1);

    void *lock = db_lock(db);
    CHECK_EQ_INT(try_insert(db), SQLITE_BUSY);
    if (strcmp(mode, "wal") == 0)
        CHECK_EQ_INT(db_count(db, "1"), 1); /* WAL readers are not blocked */
    db_unlock(lock);

    CHECK_EQ_INT(try_insert(db), SQLITE_OK);
    CHECK_EQ_INT(db_count(db, "1"), 2);
    CHECK_EQ_INT(db_scalar(db, "SELECT MAX(id) FROM messages"), 2);
}

static void test_db_lock_and_queries(void) {
    check_lock(tmppath("delete.db"), "delete");
    check_lock(tmppath("wal.db"), "wal");
    CHECK_EQ_INT(db_count(tmppath("missing.db"), "1"), -1);
    CHECK_EQ_INT(db_scalar(tmppath("wal.db"), "SELECT nonsense FROM nowhere"), -1);
}

/* ---- the runner ---- */

static void inner_pass(void) {
    CHECK(1);
}
static void inner_fail(void) {
    CHECK_EQ_INT(1, 2);
}
static void inner_crash(void) {
    abort();
}

static void inner_soft_timeout(void) {
    sh("sleeper", "exec sleep 30");
    for (;;)
        pump(100);
}

/* hangs without pumping: only the runner's hard kill can end it; the
 * process-group kill must take its sleeper along */
static void inner_hard_hang(void) {
    struct proc *p = sh("sleeper", "exec sleep 30");
    printf("HANGPID=%ld\n", (long)p->pid);
    for (;;)
        sleep(1);
}

static const struct test inner_tests[] = {
    {"inner_pass", inner_pass},           {"inner_fail", inner_fail},
    {"inner_crash", inner_crash},         {"inner_soft_timeout", inner_soft_timeout},
    {"inner_hard_hang", inner_hard_hang},
};

static void run_inner(void) {
    char *all[] = {self_argv0, NULL};
    char *some[] = {self_argv0, "pass", "crash", NULL};
    setenv("TEST_TIMEOUT", "0.5", 1);
    setenv("TEST_JOBS", "3", 1);
    setenv("TEST_SUMMARY_FILE", tmppath("summary"), 1);
    printf("RC1=%d\n", run_tests(1, all, inner_tests, 5));
    printf("RC2=%d\n", run_tests(3, some, inner_tests, 5));
    FILE *f = fopen(tmppath("summary"), "r");
    REQUIRE(f != NULL);
    int p1, f1, p2, f2;
    REQUIRE(fscanf(f, "%d %d %d %d", &p1, &f1, &p2, &f2) == 4);
    fclose(f);
    printf("SUMMARY=%d %d %d %d\n", p1, f1, p2, f2);
}

static void test_runner(void) {
    long long t0 = now_ms();
    CHECK_EQ_INT(subtest(run_inner, out, sizeof out), 0);
    CHECK(now_ms() - t0 < 10000);
    CHECK(strcmp(field("RC1"), "1") == 0);
    CHECK(strcmp(field("RC2"), "1") == 0);
    CHECK(strcmp(field("SUMMARY"), "1 4 1 1") == 0);
    CHECK(strstr(out, "PASS inner_pass (") != NULL);
    CHECK(strstr(out, "FAIL inner_fail (") != NULL);
    const char *msg = strstr(out, "FAILED in inner_fail");
    while (msg && msg > out && msg[-1] != '\n')
        msg--;
    CHECK(msg && strncmp(msg, "    ", 4) == 0); /* messages indented */
    CHECK(strstr(out, "CHECK_EQ_INT(1, 2): 1 != 2") != NULL);
    CHECK(strstr(out, "CRASHED: signal 6") != NULL);
    CHECK(strstr(out, "TIMEOUT: test exceeded its limit of 500 ms") != NULL);
    CHECK(strstr(out, "TIMEOUT: killed after") != NULL);
    CHECK(strstr(out, "\n1 passed, 4 failed\n") != NULL);
    CHECK(strstr(out, "\n1 passed, 1 failed\n") != NULL);
    pid_t pid = (pid_t)atol(field("HANGPID"));
    CHECK(dead(pid));
    if (test_failures())
        printf("inner output:\n%s\n", out);
}

int main(int argc, char **argv) {
    static const struct test tests[] = {
        {"cat_echoes", test_cat_echoes},
        {"close_stdin_gives_eof", test_close_stdin_gives_eof},
        {"exit_codes", test_exit_codes},
        {"stderr_and_binary_output", test_stderr_and_binary_output},
        {"exec_failure_fails_test", test_exec_failure_fails_test},
        {"wait_until_times_out", test_wait_until_times_out},
        {"check_continues_require_stops", test_check_continues_require_stops},
        {"procs_killed_at_test_end", test_procs_killed_at_test_end},
        {"tmpdir_unique_and_removed", test_tmpdir_unique_and_removed},
        {"server_and_client_start", test_server_and_client_start},
        {"bin_path", test_bin_path},
        {"proc_port_parsing", test_proc_port_parsing},
        {"tcp_peer", test_tcp_peer},
        {"tcp_connect_refused_fails", test_tcp_connect_refused_fails},
        {"db_lock_and_queries", test_db_lock_and_queries},
        {"runner", test_runner},
    };
    self_argv0 = argv[0];
    return run_tests(argc, argv, tests, (int)(sizeof tests / sizeof tests[0]));
}
