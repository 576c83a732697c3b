/* test_delivery.c -- each step's delivery guarantee, and its weakness,
 * shown with real processes on loopback, real SQLite files and real
 * faults: the fault proxy (tests/proxy), SIGKILL of the server and a
 * restart on the same port and database, SIGSTOP, and a locked database.
 *
 * Every wait is on a condition with a deadline. The only fixed-length
 * pauses are faults that last "a while" (a database kept locked 300 or
 * 500 ms); they never serve as synchronisation.
 *
 * Texts are "<tag>-<nnn>": unique in a test, and in the order typed when
 * compared as strings, so SQL can count rows per text and spot a sender's
 * messages stored out of order. */
#include "suites.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>

#define WAIT_MS 8000 /* for things that normally take milliseconds */

/* ---------------------------------------------------------------------
 * Waiting with a message that says what was awaited
 * ------------------------------------------------------------------- */

#define AWAIT(cond, ms, ...)                                                                                 \
    do {                                                                                                     \
        long long aw_end_ = now_ms() + (ms);                                                                 \
        while (!(cond)) {                                                                                    \
            long long aw_left_ = aw_end_ - now_ms();                                                         \
            if (aw_left_ <= 0) {                                                                             \
                test_fail(__FILE__, __LINE__, __VA_ARGS__);                                                  \
                test_fail(__FILE__, __LINE__, "  (condition %s, %lld ms)", #cond, (long long)(ms));          \
                test_abort();                                                                                \
            }                                                                                                \
            pump(aw_left_ < 20 ? (int)aw_left_ : 20);                                                        \
        }                                                                                                    \
    } while (0)

/* A fault that lasts a while: keep pumping output for ms. Not a way to
 * wait for something to happen. */
static void hold_fault(int ms) {
    long long end = now_ms() + ms;
    while (now_ms() < end) {
        pump((int)(end - now_ms()));
    }
}

/* ---------------------------------------------------------------------
 * The database
 * ------------------------------------------------------------------- */

static char db_file[4096];

static const char *db(void) {
    if (db_file[0] == '\0') {
        snprintf(db_file, sizeof db_file, "%s", tmppath("chat.db"));
    }
    return db_file;
}

static long long q(const char *fmt, ...) HARNESS_PRINTF(1, 2);
static long long q(const char *fmt, ...) {
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return db_scalar(db(), sql);
}

static long long rows_of(const char *text) {
    return q("SELECT COUNT(*) FROM messages WHERE content='%s'", text);
}

static long long rows_total(void) {
    return q("SELECT COUNT(*) FROM messages");
}

/* distinct texts "<tag>-*" stored */
static long long distinct_of(const char *tag) {
    return q("SELECT COUNT(DISTINCT content) FROM messages WHERE content GLOB '%s-*'", tag);
}

static long long rows_of_tag(const char *tag) {
    return q("SELECT COUNT(*) FROM messages WHERE content GLOB '%s-*'", tag);
}

/* pairs of "<tag>-*" rows where the later id holds an earlier-typed text:
 * 0 means stored in the order typed (a duplicate right after its original
 * is not an inversion) */
static long long inversions_of(const char *tag) {
    return q("SELECT COUNT(*) FROM messages a, messages b WHERE a.content GLOB '%s-*'"
             " AND b.content GLOB '%s-*' AND a.id < b.id AND a.content > b.content",
             tag, tag);
}

static const char *text(const char *tag, int i) {
    static char buf[8][64];
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, sizeof buf[0], "%s-%03d", tag, i);
    return b;
}

static void wait_distinct(const char *tag, long long n, int ms) {
    AWAIT(distinct_of(tag) >= n, ms, "%lld distinct '%s-*' texts stored (have %lld)", n, tag,
          distinct_of(tag));
}

static void wait_stored(const char *t) {
    AWAIT(rows_of(t) >= 1, WAIT_MS, "'%s' stored", t);
}

/* c types tag-<i>, and it is stored. */
static void say_stored(struct proc *c, const char *tag, int i) {
    proc_write(c, "%s\n", text(tag, i));
    wait_stored(text(tag, i));
}

/* Stored once each, and in the order typed: texts tag-first..tag-last */
static void check_once_in_order(const char *tag, int first, int last) {
    for (int i = first; i <= last; i++) {
        long long n = rows_of(text(tag, i));
        if (n != 1) {
            test_fail(__FILE__, __LINE__, "'%s' stored %lld times, expected once", text(tag, i), n);
        }
    }
    CHECK_EQ_INT(rows_of_tag(tag), last - first + 1);
    CHECK_EQ_INT(inversions_of(tag), 0);
}

/* ---------------------------------------------------------------------
 * The programs
 * ------------------------------------------------------------------- */

static const char *const SRV_ARGS[] = {"--ping-interval", "300", "--ping-timeout", "300", NULL};
static const char *const CLI12_ARGS[] = {"--timeout", "1000", NULL};
static const char *const CLI34_ARGS[] = {"--timeout", "1000", "--ack-timeout", "400", "--retries", "5", NULL};
static const char *const CLI34V_ARGS[] = {"--timeout", "1000", "--ack-timeout", "400",
                                          "--retries", "5",    "--verbose",     NULL};

static struct proc *start_server(int step) {
    return server_start(step, db(), SRV_ARGS);
}

/* SIGKILL the server, start the same step on the same port and db */
static struct proc *restart_server(int step, struct proc *old, int port) {
    char p[16];
    proc_kill(old);
    snprintf(p, sizeof p, "%d", port);
    const char *extra[] = {"--ping-interval", "300", "--ping-timeout", "300", "--port", p, NULL};
    struct proc *s = server_start(step, db(), extra);
    REQUIRE(proc_port(s) == port);
    return s;
}

static struct proc *start_client(int step, int port) {
    return client_start(step, port, step >= 3 ? CLI34_ARGS : CLI12_ARGS);
}

static void wait_err(struct proc *p, const char *needle, int n) {
    AWAIT(proc_err_count(p, needle) >= n, WAIT_MS, "%s: stderr to show '%s' %d time(s) (has %d)", p->name,
          needle, n, proc_err_count(p, needle));
}

static void wait_connected(struct proc *c, int n) {
    wait_err(c, "connected as", n);
}

/* After a fault that lost tag-002: c connects again, tag-003 is stored,
 * and tag-002 never is; with tag-001, two rows in all. */
static void check_second_lost(struct proc *c, const char *tag) {
    wait_connected(c, 2);
    say_stored(c, tag, 3);
    CHECK_EQ_INT(rows_of(text(tag, 2)), 0);
    CHECK_EQ_INT(rows_total(), 2);
}

/* types "<tag>-<from>" .. "<tag>-<to>", one write */
static void type_range(struct proc *c, const char *tag, int from, int to) {
    char buf[8192];
    size_t len = 0;
    for (int i = from; i <= to; i++) {
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s\n", text(tag, i));
        REQUIRE(len < sizeof buf);
    }
    proc_write(c, "%s", buf);
}

/* a line of p's stderr that contains both a and b */
static int err_line_with(struct proc *p, const char *a, const char *b) {
    const char *s = p->err;
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        char line[8192];
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line - 1 ? n : sizeof line - 1), s);
        if (strstr(line, a) && strstr(line, b)) {
            return 1;
        }
        s += n + (nl ? 1 : 0);
    }
    return 0;
}

static long err_pos(struct proc *p, const char *needle) {
    const char *s = strstr(p->err, needle);
    return s ? (long)(s - p->err) : -1;
}

/* SIGSTOP, and wait until the kernel reports it stopped */
static void stop_proc(struct proc *p) {
    long long end = now_ms() + WAIT_MS;
    proc_signal(p, SIGSTOP);
    for (;;) {
        int st;
        pid_t r = waitpid(p->pid, &st, WUNTRACED | WNOHANG);
        if (r == p->pid && WIFSTOPPED(st)) {
            return;
        }
        if (r == p->pid) {
            p->exited = 1;
            p->status = st;
            test_fail(__FILE__, __LINE__, "%s ended instead of stopping", p->name);
            test_abort();
        }
        if (now_ms() > end) {
            test_fail(__FILE__, __LINE__, "%s did not stop", p->name);
            test_abort();
        }
        pump(5);
    }
}

/* ---------------------------------------------------------------------
 * The fault proxy
 * ------------------------------------------------------------------- */

struct proxy {
    struct proc *p;
    int port; /* where clients connect */
    int ctl; /* the control connection */
};

static int control_port(struct proc *p) {
    const char *s = strstr(p->err, "control on ");
    const char *colon, *nl;
    if (s == NULL || (nl = strchr(s, '\n')) == NULL) {
        return 0;
    }
    colon = strchr(s, ':');
    if (colon == NULL || colon > nl) {
        return 0;
    }
    return atoi(colon + 1);
}

static struct proxy proxy_start(int server_port) {
    struct proxy px;
    char sp[16];
    snprintf(sp, sizeof sp, "%d", server_port);
    const char *argv[] = {bin_path("tests/proxy"), "--server-port", sp, NULL};
    px.p = proc_start("proxy", argv);
    AWAIT(proc_port(px.p) > 0 && control_port(px.p) > 0, 5000, "the proxy's listening line");
    px.port = proc_port(px.p);
    px.ctl = tcp_connect(control_port(px.p));
    return px;
}

static void proxy_cmd(struct proxy *px, const char *fmt, ...) HARNESS_PRINTF(2, 3);
static void proxy_cmd(struct proxy *px, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    line[n] = '\n';
    tcp_send(px->ctl, line, (size_t)n + 1);
    if (!tcp_wait_line(px->ctl, "OK", 3000)) {
        line[n] = '\0';
        test_fail(__FILE__, __LINE__, "proxy command '%s' not OK; control log:\n%s", line, tcp_log(px->ctl));
        test_abort();
    }
}

/* one field of "status": conns, msgs, held, fired, down */
static long long proxy_stat(struct proxy *px, const char *key) {
    char k[32];
    proxy_cmd(px, "status");
    snprintf(k, sizeof k, " %s=", key);
    const char *log = tcp_log(px->ctl), *last = strstr(log, "OK conns="), *s;
    while (last && (s = strstr(last + 1, "OK conns=")) != NULL) {
        last = s;
    }
    s = last ? strstr(last, k) : NULL;
    REQUIRE(s != NULL);
    return atoll(s + strlen(k));
}

/* ---------------------------------------------------------------------
 * A receiver's stdout against the table
 * ------------------------------------------------------------------- */

/* Its stdout must be exactly "<id> <text>\n" for every row, in id order. */
static void check_receiver_is_table(struct proc *r) {
    size_t n = r->out_len;
    char *sql = malloc(2 * n + 256);
    REQUIRE(sql != NULL);
    size_t len = (size_t)sprintf(sql, "SELECT (SELECT group_concat(l, char(10)) || char(10) FROM"
                                      " (SELECT id || ' ' || content AS l FROM messages ORDER BY id)) = '");
    for (size_t i = 0; i < n; i++) {
        if (r->out[i] == '\'') {
            sql[len++] = '\'';
        }
        sql[len++] = r->out[i];
    }
    strcpy(sql + len, "'");
    long long same = db_scalar(db(), sql);
    free(sql);
    if (same == 1) {
        return;
    }
    /* say where it differs */
    test_fail(__FILE__, __LINE__, "%s's stdout (%d lines) differs from the table (%lld rows, id order)",
              r->name, proc_out_lines(r), rows_total());
    const char *s = r->out;
    for (int i = 0; *s; i++) {
        long long id = atoll(s), want = q("SELECT id FROM messages ORDER BY id LIMIT 1 OFFSET %d", i);
        const char *sp = strchr(s, ' '), *nl = strchr(s, '\n');
        char t[256] = "";
        if (sp && nl && sp < nl) {
            snprintf(t, sizeof t, "%.*s", (int)(nl - sp - 1), sp + 1);
        }
        if (id != want || q("SELECT COUNT(*) FROM messages WHERE id=%lld AND content='%s'", id, t) != 1) {
            test_fail(__FILE__, __LINE__, "first difference at line %d: '%lld %s', row there has id %lld",
                      i + 1, id, t, want);
            return;
        }
        s = nl ? nl + 1 : s + strlen(s);
    }
}

struct fault_env {
    struct proc *srv, *c;
    struct proxy px;
    int port;
};

static struct fault_env fault_env(int step, const char *const cargs[]) {
    struct fault_env e;
    e.srv = start_server(step);
    e.port = proc_port(e.srv);
    e.px = proxy_start(e.port);
    e.c = client_start(step, e.px.port, cargs);
    wait_connected(e.c, 1);
    return e;
}

/* The proxy refuses every connection until "up", and c has noticed. */
static void link_down(struct fault_env *e) {
    proxy_cmd(&e->px, "down");
    wait_err(e->c, "disconnected", 1);
}

/* ---------------------------------------------------------------------
 * Step 1: at most once
 * ------------------------------------------------------------------- */

static void s1_typed_while_down_dropped(void) {
    struct proc *srv = start_server(1);
    int port = proc_port(srv);
    struct proc *c = start_client(1, port);
    wait_connected(c, 1);
    say_stored(c, "a", 1);

    proc_kill(srv);
    wait_err(c, "disconnected", 1);
    proc_write(c, "a-002\n");
    wait_err(c, "dropped: a-002", 1);

    restart_server(1, srv, port);
    check_second_lost(c, "a");
}

static void s1_rows_survive_restart(void) {
    struct proc *srv = start_server(1);
    int port = proc_port(srv);
    struct proc *c = start_client(1, port);
    wait_connected(c, 1);
    type_range(c, "b", 1, 3);
    wait_distinct("b", 3, WAIT_MS);

    restart_server(1, srv, port);
    /* a new client (offset 0) gets the history from the restarted server */
    struct proc *r = start_client(1, port);
    AWAIT(proc_out_lines(r) >= 3, WAIT_MS, "3 rows replayed by the restarted server");
    CHECK(strcmp(r->out, "1 b-001\n2 b-002\n3 b-003\n") == 0);
    check_once_in_order("b", 1, 3);
}

static void s1_receiver_catches_up(void) {
    struct proc *srv = start_server(1);
    int port = proc_port(srv);
    struct proxy px = proxy_start(port);
    struct proc *s = start_client(1, port);
    struct proc *r = start_client(1, px.port);
    wait_connected(s, 1);
    wait_connected(r, 1);
    proc_write(s, "c-001\n");
    AWAIT(proc_out_count(r, " c-001\n") == 1, WAIT_MS, "the receiver to print c-001");

    proxy_cmd(&px, "down");
    wait_err(r, "disconnected", 1);
    type_range(s, "c", 2, 4);
    wait_distinct("c", 4, WAIT_MS);
    CHECK_EQ_INT(proc_out_lines(r), 1);

    proxy_cmd(&px, "up");
    wait_connected(r, 2);
    AWAIT(proc_out_lines(r) >= 4, WAIT_MS, "the receiver to catch up on c-002..c-004");
    check_receiver_is_table(r);
    (void)srv;
}

/* ---------------------------------------------------------------------
 * Step 2: buffered while disconnected; still at most once
 * ------------------------------------------------------------------- */

static void s2_network_down_nothing_lost(void) {
    struct fault_env e = fault_env(2, CLI12_ARGS);
    struct proc *c = e.c;
    link_down(&e);
    type_range(c, "d", 1, 3);
    hold_fault(300); /* down while the client reads them */
    CHECK_EQ_INT(rows_total(), 0);
    proxy_cmd(&e.px, "up");
    wait_distinct("d", 3, WAIT_MS);
    check_once_in_order("d", 1, 3);
}

static void s2_cut_line_lost(void) {
    struct proc *srv = start_server(2);
    struct proxy px = proxy_start(proc_port(srv));
    struct proc *c = start_client(2, px.port);
    wait_connected(c, 1);
    say_stored(c, "e", 1);

    proxy_cmd(&px, "cut-before 1");
    proc_write(c, "e-002\n");
    wait_err(c, "disconnected", 1);
    CHECK_EQ_INT(proxy_stat(&px, "fired"), 1);
    check_second_lost(c, "e"); /* e-002 would have gone out before e-003: it is gone for good */
}

static void s2_unread_lines_lost_on_server_kill(void) {
    struct proc *srv = start_server(2);
    int port = proc_port(srv);
    struct proxy px = proxy_start(port);
    struct proc *c = start_client(2, px.port);
    wait_connected(c, 1);
    say_stored(c, "f", 1);

    stop_proc(srv);
    type_range(c, "f", 2, 4);
    /* the proxy has passed all three lines on to the server's socket */
    AWAIT(proxy_stat(&px, "msgs") >= 4, WAIT_MS, "the proxy to forward f-002..f-004");
    restart_server(2, srv, port);
    wait_connected(c, 2);
    say_stored(c, "f", 5);
    for (int i = 2; i <= 4; i++) {
        CHECK_EQ_INT(rows_of(text("f", i)), 0);
    }
    CHECK_EQ_INT(rows_total(), 2);
}

static void s2_locked_db_loses(void) {
    struct proc *srv = start_server(2);
    struct proc *c = start_client(2, proc_port(srv));
    wait_connected(c, 1);

    void *lock = db_lock(db());
    proc_write(c, "g-001\n");
    wait_err(srv, "insert failed", 1);
    db_unlock(lock);
    say_stored(c, "g", 2);
    CHECK_EQ_INT(rows_of("g-001"), 0);
    CHECK_EQ_INT(rows_total(), 1);
}

static void s2_eof_while_disconnected_flushes(void) {
    struct fault_env e = fault_env(2, CLI12_ARGS);
    struct proc *c = e.c;
    link_down(&e);
    type_range(c, "h", 1, 3);
    proc_close_stdin(c);
    /* a while after EOF (several reconnection rounds): waiting, not gone */
    CHECK_EQ_INT(proc_wait_exit(c, 600), -1);

    proxy_cmd(&e.px, "up");
    CHECK_EQ_INT(proc_wait_exit(c, WAIT_MS), 0);
    check_once_in_order("h", 1, 3);
}

/* ---------------------------------------------------------------------
 * Step 3: acks and retries, at least once
 * ------------------------------------------------------------------- */

static void no_give_up(struct proc *c) {
    CHECK_EQ_INT(proc_err_count(c, "gave up"), 0);
}

static void s3_down(void) {
    struct fault_env e = fault_env(3, CLI34_ARGS);
    type_range(e.c, "i", 1, 2);
    wait_distinct("i", 2, WAIT_MS);
    link_down(&e);
    type_range(e.c, "i", 3, 5);
    hold_fault(300); /* down while the client reads them */
    proxy_cmd(&e.px, "up");
    wait_distinct("i", 5, WAIT_MS);
    /* and down while messages are in flight */
    type_range(e.c, "i", 6, 10);
    proxy_cmd(&e.px, "down 200");
    wait_distinct("i", 10, WAIT_MS);
    CHECK_EQ_INT(inversions_of("i"), 0);
    no_give_up(e.c);
}

/* One one-shot fault (cut-before, cut-after), then tag-001..tag-<n>
 * typed; waits until all are stored, and the fault fired once. */
static struct fault_env one_shot(int step, const char *fault, const char *tag, int n) {
    struct fault_env e = fault_env(step, CLI34_ARGS);
    proxy_cmd(&e.px, "%s", fault);
    type_range(e.c, tag, 1, n);
    wait_distinct(tag, n, WAIT_MS);
    CHECK_EQ_INT(proxy_stat(&e.px, "fired"), 1);
    return e;
}

static void s3_cut_before(void) {
    struct fault_env e = one_shot(3, "cut-before 3", "j", 5);
    CHECK_EQ_INT(inversions_of("j"), 0);
    no_give_up(e.c);
}

static void s3_cut_after_one_duplicate(void) {
    /* one in flight at a time: k-004 stored means k-002's retry was acked */
    struct fault_env e = one_shot(3, "cut-after 2", "k", 4);
    CHECK_EQ_INT(rows_of("k-001"), 1);
    CHECK_EQ_INT(rows_of("k-002"), 2);
    CHECK_EQ_INT(rows_of("k-003"), 1);
    CHECK_EQ_INT(rows_of("k-004"), 1);
    CHECK_EQ_INT(rows_total(), 5);
    CHECK_EQ_INT(inversions_of("k"), 0);
    no_give_up(e.c);
}

/* tag-001..tag-004 typed; the server is SIGKILLed once tag-002 is stored
 * and its ack held by the proxy, then restarted: the client sends
 * tag-002 again. Waits until all four are stored. */
static struct fault_env kill_after_store(int step, const char *tag) {
    char second[16];
    struct fault_env e = fault_env(step, CLI34_ARGS);
    proxy_cmd(&e.px, "hold-after 2");
    type_range(e.c, tag, 1, 4);
    snprintf(second, sizeof second, "%s-002", tag);
    wait_stored(second);
    e.srv = restart_server(step, e.srv, e.port);
    wait_distinct(tag, 4, WAIT_MS);
    return e;
}

static void s3_kill_after_store(void) {
    struct fault_env e = kill_after_store(3, "l");
    CHECK_EQ_INT(rows_of("l-002"), 2); /* at least once: stored, unacked, stored again */
    CHECK_EQ_INT(inversions_of("l"), 0);
    no_give_up(e.c);
}

/* tag-001..tag-<n> typed while the database is locked for 500 ms from
 * the first MSG on; waits until all are stored. */
static struct fault_env db_locked(int step, const char *tag, int n) {
    struct fault_env e = fault_env(step, CLI34_ARGS);
    void *lock = db_lock(db());
    type_range(e.c, tag, 1, n);
    AWAIT(proxy_stat(&e.px, "msgs") >= 1, WAIT_MS, "a MSG line to reach the locked server");
    hold_fault(500);
    db_unlock(lock);
    wait_distinct(tag, n, WAIT_MS);
    return e;
}

static void s3_db_locked(void) {
    struct fault_env e = db_locked(3, "m", 3);
    check_once_in_order("m", 1, 3);
    no_give_up(e.c);
}

static void s3_blackhole(void) {
    struct fault_env e = fault_env(3, CLI34_ARGS);
    say_stored(e.c, "n", 1);
    proxy_cmd(&e.px, "blackhole");
    type_range(e.c, "n", 2, 3);
    wait_err(e.c, "disconnected", 1);
    proxy_cmd(&e.px, "clear");
    wait_distinct("n", 3, WAIT_MS);
    CHECK_EQ_INT(inversions_of("n"), 0);
    no_give_up(e.c);
}

/* The server is stopped while o-001 is in flight: its first attempt
 * (ack id 1) times out and a second one (ack id 2) is sent; then the
 * server resumes and acks both. ACK 1 must not count for attempt 2, so
 * o-002 is sent only after ACK 2. Slow heartbeat: the pause must not be
 * taken for a dead server. */
static void s3_stale_ack_ignored(void) {
    const char *const sargs[] = {"--ping-interval", "1000", "--ping-timeout", "1000", NULL};
    struct proc *srv = server_start(3, db(), sargs);
    struct proc *c = client_start(3, proc_port(srv), CLI34V_ARGS);
    wait_connected(c, 1);
    stop_proc(srv);
    type_range(c, "o", 1, 2);
    wait_err(c, "will send again: o-001", 1);
    proc_signal(srv, SIGCONT);
    wait_stored("o-002");
    wait_err(c, "< ACK 3\n", 1);
    long ack1 = err_pos(c, "< ACK 1\n"), ack2 = err_pos(c, "< ACK 2\n"), msg3 = err_pos(c, "> MSG 3 o-002");
    CHECK(err_pos(c, "> MSG 2 o-001") >= 0);
    CHECK(ack1 >= 0 && ack2 > ack1);
    CHECK(msg3 > ack2); /* o-002 left only after the ack of the current attempt */
    CHECK_EQ_INT(rows_of("o-001"), 2);
    CHECK_EQ_INT(rows_of("o-002"), 1);
    CHECK_EQ_INT(proc_err_count(c, "> MSG "), 3);
    no_give_up(c);
}

static void s3_give_up_is_loud(void) {
    const char *const cargs[] = {"--timeout", "1000", "--ack-timeout", "200", "--retries", "1", NULL};
    struct proc *srv = start_server(3);
    struct proc *c = client_start(3, proc_port(srv), cargs);
    wait_connected(c, 1);
    void *lock = db_lock(db());
    proc_write(c, "p-001\n");
    AWAIT(err_line_with(c, "gave up", "p-001"), WAIT_MS, "a 'gave up' line naming p-001");
    db_unlock(lock);
    proc_close_stdin(c);
    CHECK_EQ_INT(proc_wait_exit(c, WAIT_MS), 1);
    CHECK_EQ_INT(rows_of("p-001"), 0);
}

/* Counted on the wire (the proxy counts MSG lines), not in the client's
 * log: r-001 goes out once and is given up, r-002 is the next line sent. */
static void s3_retries_zero_one_attempt(void) {
    const char *const cargs[] = {"--timeout", "1000", "--ack-timeout", "300", "--retries", "0", NULL};
    struct fault_env e = fault_env(3, cargs);
    void *lock = db_lock(db());
    proc_write(e.c, "r-001\n");
    AWAIT(err_line_with(e.c, "gave up", "r-001"), WAIT_MS, "a 'gave up' line naming r-001");
    db_unlock(lock);
    say_stored(e.c, "r", 2);
    CHECK_EQ_INT(proxy_stat(&e.px, "msgs"), 2);
    CHECK_EQ_INT(rows_of("r-001"), 0);
}

static void s3_order_kept_across_give_up(void) {
    const char *const cargs[] = {"--timeout", "1000", "--ack-timeout", "300", "--retries", "2", NULL};
    struct proc *srv = start_server(3);
    struct proc *c = client_start(3, proc_port(srv), cargs);
    wait_connected(c, 1);
    void *lock = db_lock(db());
    type_range(c, "t", 1, 2);
    AWAIT(err_line_with(c, "gave up", "t-001"), WAIT_MS, "a 'gave up' line naming t-001");
    db_unlock(lock);
    proc_write(c, "t-003\n");
    wait_distinct("t", 2, WAIT_MS);
    CHECK_EQ_INT(rows_of("t-001"), 0);
    CHECK_EQ_INT(rows_of("t-002"), 1);
    CHECK_EQ_INT(rows_of("t-003"), 1);
    CHECK_EQ_INT(inversions_of("t"), 0);
    CHECK(!err_line_with(c, "gave up", "t-002"));
    proc_close_stdin(c);
    CHECK_EQ_INT(proc_wait_exit(c, WAIT_MS), 1);
}

/* ---------------------------------------------------------------------
 * Step 4: client offsets, exactly once
 * ------------------------------------------------------------------- */

static void s4_cut_after_one_row(void) {
    struct fault_env e = one_shot(4, "cut-after 2", "y", 4);
    check_once_in_order("y", 1, 4);
    proc_close_stdin(e.c);
    CHECK_EQ_INT(proc_wait_exit(e.c, WAIT_MS), 0);
}

static void s4_kill_after_insert_one_row(void) {
    struct fault_env e = kill_after_store(4, "z");
    check_once_in_order("z", 1, 4);
    no_give_up(e.c);
}

static void s4_db_locked_once(void) {
    struct fault_env e = db_locked(4, "u", 4);
    check_once_in_order("u", 1, 4);
    no_give_up(e.c);
}

/* rows whose client_offset is "<16 lowercase hex>-<decimal>" */
static long long offsets_well_formed(void) {
    return q("SELECT COUNT(*) FROM messages WHERE length(client_offset) > 17"
             " AND substr(client_offset, 17, 1) = '-'"
             " AND substr(client_offset, 1, 16) NOT GLOB '*[^0-9a-f]*'"
             " AND substr(client_offset, 18) NOT GLOB '*[^0-9]*'");
}

/* distinct client ids (the offsets' first half) among "<tag>-*" rows */
static long long client_ids_of(const char *tag) {
    return q("SELECT COUNT(DISTINCT substr(client_offset, 1, 16)) FROM messages WHERE content GLOB '%s-*'",
             tag);
}

static void s4_offsets_format_unique(void) {
    struct proc *srv = start_server(4);
    struct proxy px = proxy_start(proc_port(srv));
    struct proc *c1 = start_client(4, px.port), *c2 = start_client(4, px.port);
    wait_connected(c1, 1);
    wait_connected(c2, 1);
    proxy_cmd(&px, "cut-after 3"); /* one retry among them */
    type_range(c1, "va", 1, 5);
    type_range(c2, "vb", 1, 5);
    wait_distinct("va", 5, WAIT_MS);
    wait_distinct("vb", 5, WAIT_MS);
    CHECK_EQ_INT(rows_total(), 10);
    CHECK_EQ_INT(offsets_well_formed(), 10);
    CHECK_EQ_INT(q("SELECT COUNT(DISTINCT client_offset) FROM messages"), 10);
    /* one client id per client, two in all */
    CHECK_EQ_INT(client_ids_of("va"), 1);
    CHECK_EQ_INT(client_ids_of("vb"), 1);
    CHECK_EQ_INT(q("SELECT COUNT(DISTINCT substr(client_offset, 1, 16)) FROM messages"), 2);
    /* a client's counter grows in the order typed */
    CHECK_EQ_INT(q("SELECT COUNT(*) FROM messages a, messages b"
                   " WHERE substr(a.client_offset, 1, 16) = substr(b.client_offset, 1, 16)"
                   " AND a.content < b.content"
                   " AND CAST(substr(a.client_offset, 18) AS INTEGER)"
                   " >= CAST(substr(b.client_offset, 18) AS INTEGER)"),
                 0);
}

static void s4_offline_clients_never_collide(void) {
    struct proc *srv = start_server(4);
    int port = proc_port(srv);
    proc_kill(srv);
    struct proc *c1 = start_client(4, port), *c2 = start_client(4, port);
    type_range(c1, "wa", 1, 10);
    type_range(c2, "wb", 1, 10);
    hold_fault(300); /* down while both read them */
    CHECK_EQ_INT(proc_err_count(c1, "connected as"), 0);
    restart_server(4, srv, port);
    wait_distinct("wa", 10, WAIT_MS);
    wait_distinct("wb", 10, WAIT_MS);
    check_once_in_order("wa", 1, 10);
    check_once_in_order("wb", 1, 10);
    CHECK_EQ_INT(q("SELECT COUNT(DISTINCT client_offset) FROM messages"), 20);
    no_give_up(c1);
    no_give_up(c2);
}

static void s4_receiver_exactly_once(void) {
    struct proc *srv = start_server(4);
    int port = proc_port(srv);
    struct proxy px = proxy_start(port);
    struct proc *s = start_client(4, port);
    struct proc *r = client_start(4, px.port, CLI12_ARGS);
    wait_connected(s, 1);
    wait_connected(r, 1);

    type_range(s, "x", 1, 10);
    AWAIT(proc_out_lines(r) >= 10, WAIT_MS, "the receiver to print x-001..x-010 live");
    proxy_cmd(&px, "down");
    wait_err(r, "disconnected", 1);
    type_range(s, "x", 11, 30); /* missed by the receiver */
    wait_distinct("x", 30, WAIT_MS);
    type_range(s, "x", 31, 50);
    proxy_cmd(&px, "up"); /* it comes back while rows keep coming */
    wait_connected(r, 2);
    type_range(s, "x", 51, 70);
    restart_server(4, srv, port); /* both lose the server mid-traffic */
    wait_connected(r, 3);
    type_range(s, "x", 71, 80);
    wait_distinct("x", 80, WAIT_MS);
    check_once_in_order("x", 1, 80);

    AWAIT(proc_out_lines(r) >= 80, WAIT_MS, "the receiver to print 80 rows (has %d)", proc_out_lines(r));
    check_receiver_is_table(r);
}

/* The soak: 3 senders through one proxy, 1 receiver straight to the
 * server, 10 batches of 15 messages per sender, one fault per batch, in
 * an order and with parameters drawn from srand(42); every kind comes
 * twice. Cuts are armed on a random MSG line of the batch; "down 200"
 * strikes after a random few rows of the batch are stored; the db is
 * locked 300 ms from the start of the batch; hold-after catches one
 * sender's first line, and the server is SIGKILLed (and restarted) once
 * that row is stored. Each batch ends when all of its texts are stored. */
enum { F_CUT_BEFORE, F_CUT_AFTER, F_DOWN, F_KILL, F_LOCK, F_KINDS };
#define SOAK_SENDERS 3
#define SOAK_BATCHES 10
#define SOAK_BATCH 15

static void s4_soak(void) {
    static const char *const tags[SOAK_SENDERS] = {"sa", "sb", "sc"};
    struct proc *srv = start_server(4);
    int port = proc_port(srv);
    struct proxy px = proxy_start(port);
    struct proc *snd[SOAK_SENDERS];
    int typed[SOAK_SENDERS] = {0};
    int order[SOAK_BATCHES];
    for (int i = 0; i < SOAK_SENDERS; i++) {
        snd[i] = start_client(4, px.port);
    }
    struct proc *r = client_start(4, port, CLI12_ARGS);
    for (int i = 0; i < SOAK_SENDERS; i++) {
        wait_connected(snd[i], 1);
    }
    wait_connected(r, 1);

    srand(42);
    for (int b = 0; b < SOAK_BATCHES; b++) {
        order[b] = b % F_KINDS;
    }
    for (int b = SOAK_BATCHES - 1; b > 0; b--) {
        int j = rand() % (b + 1), t = order[b];
        order[b] = order[j];
        order[j] = t;
    }
    long long fired = 0;
    for (int b = 0; b < SOAK_BATCHES; b++) {
        void *lock = NULL;
        int failed_inserts = proc_err_count(srv, "insert failed");
        long long locked_at = 0;
        int from[SOAK_SENDERS], to[SOAK_SENDERS];
        for (int i = 0; i < SOAK_SENDERS; i++) {
            from[i] = typed[i] + 1;
            to[i] = typed[i] + SOAK_BATCH;
        }
        switch (order[b]) {
        case F_CUT_BEFORE:
            proxy_cmd(&px, "cut-before %d", 1 + rand() % 40);
            break;
        case F_CUT_AFTER:
            proxy_cmd(&px, "cut-after %d", 1 + rand() % 40);
            break;
        case F_DOWN:
            break; /* below, in the middle of the batch */
        case F_LOCK:
            lock = db_lock(db());
            locked_at = now_ms();
            break;
        case F_KILL: {
            /* the next MSG line (one sender's first of the batch) reaches
             * the server, then its connection freezes: SIGKILL the server
             * once the row is stored, before the ack gets out */
            int k = rand() % SOAK_SENDERS;
            proxy_cmd(&px, "hold-after 1");
            proc_write(snd[k], "%s\n", text(tags[k], from[k]));
            wait_stored(text(tags[k], from[k]));
            srv = restart_server(4, srv, port);
            from[k]++;
            break;
        }
        }
        long long before = rows_total();
        for (int i = 0; i < SOAK_SENDERS; i++) {
            type_range(snd[i], tags[i], from[i], to[i]);
            typed[i] = to[i];
        }
        if (order[b] == F_DOWN) {
            /* strike while messages are in flight: after the first few */
            long long after = before + 1 + rand() % 10;
            AWAIT(rows_total() >= after, WAIT_MS, "%lld rows stored before the fault", after);
            proxy_cmd(&px, "down 200");
        }
        if (lock) {
            /* the lock must be felt: on a loaded machine the first MSG may
             * reach the server only after 300 ms, so wait for the failed
             * insert, then hold what is left of the 300 ms */
            AWAIT(proc_err_count(srv, "insert failed") > failed_inserts, WAIT_MS,
                  "an insert to fail on the locked db");
            hold_fault((int)(locked_at + 300 - now_ms()));
            db_unlock(lock);
        }
        for (int i = 0; i < SOAK_SENDERS; i++) {
            wait_distinct(tags[i], typed[i], 10000);
        }
        /* every cut and hold fired (a batch has 45 MSG lines or more) */
        fired += order[b] == F_CUT_BEFORE || order[b] == F_CUT_AFTER || order[b] == F_KILL;
        CHECK_EQ_INT(proxy_stat(&px, "fired"), fired);
        proxy_cmd(&px, "clear");
    }

    for (int i = 0; i < SOAK_SENDERS; i++) {
        proc_close_stdin(snd[i]);
    }
    for (int i = 0; i < SOAK_SENDERS; i++) {
        CHECK_EQ_INT(proc_wait_exit(snd[i], WAIT_MS), 0); /* nothing given up */
        check_once_in_order(tags[i], 1, typed[i]);
    }
    long long total = rows_total();
    CHECK_EQ_INT(total, typed[0] + typed[1] + typed[2]);
    CHECK_EQ_INT(q("SELECT COUNT(DISTINCT content) FROM messages"), total);
    AWAIT(proc_out_lines(r) >= total, WAIT_MS, "the receiver to print %lld rows (has %d)", total,
          proc_out_lines(r));
    check_receiver_is_table(r);
}

const struct test delivery_tests[] = {
    {"step4: soak: 3 senders, random faults (seed 42): none lost or duplicated, order kept, receiver = table",
     s4_soak},
    {"step1: a message typed while the server is down is dropped, not stored", s1_typed_while_down_dropped},
    {"step1: stored rows survive a server restart", s1_rows_survive_restart},
    {"step1: a receiving client catches up on what it missed", s1_receiver_catches_up},
    {"step2: lines typed while the network is down are all stored once, in order",
     s2_network_down_nothing_lost},
    {"step2: a line cut on the wire (cut-before) is lost", s2_cut_line_lost},
    {"step2: lines unread by a server SIGKILLed while stopped are lost", s2_unread_lines_lost_on_server_kill},
    {"step2: a locked database loses the message", s2_locked_db_loses},
    {"step2: stdin EOF while disconnected: waits, reconnects, sends the buffer, exits 0",
     s2_eof_while_disconnected_flushes},
    {"step3: network down: nothing lost, stored in the order typed", s3_down},
    {"step3: cut-before: nothing lost, stored in the order typed", s3_cut_before},
    {"step3: a lost ack (cut-after) gives exactly one duplicate row, nothing lost, in order",
     s3_cut_after_one_duplicate},
    {"step3: server SIGKILLed after storing, before acking: nothing lost, in order", s3_kill_after_store},
    {"step3: db locked for a while: nothing lost, stored in the order typed", s3_db_locked},
    {"step3: blackhole until the heartbeat notices: nothing lost, in order", s3_blackhole},
    {"step3: an ack for an earlier attempt is ignored", s3_stale_ack_ignored},
    {"step3: giving up is loud: 'gave up' names the message, exit status 1", s3_give_up_is_loud},
    {"step3: --retries 0 means one attempt", s3_retries_zero_one_attempt},
    {"step3: the queue keeps order across a give-up: the next message is still sent",
     s3_order_kept_across_give_up},
    {"step4: a lost ack (cut-after) gives exactly one row", s4_cut_after_one_row},
    {"step4: server SIGKILLed after the insert, before the ack, gives exactly one row",
     s4_kill_after_insert_one_row},
    {"step4: a db locked for a while stores every message once", s4_db_locked_once},
    {"step4: client_offset holds unique '<16 hex>-<n>' values", s4_offsets_format_unique},
    {"step4: two clients typing while the server is down never collide", s4_offline_clients_never_collide},
    {"step4: a receiver cut off during traffic prints every stored row once, in id order",
     s4_receiver_exactly_once},
};
const int delivery_count = (int)(sizeof delivery_tests / sizeof delivery_tests[0]);
