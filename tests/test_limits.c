/* test_limits.c -- proof under stress: the limits of common/limits.h hold
 * when they are hit for real.
 *
 * Out of file descriptors, a client frozen with SIGSTOP while others chat,
 * a client a million messages behind, a storm of harmless signals: each
 * test runs real programs on loopback and a real SQLite file, waits on
 * conditions with deadlines, and then checks that nobody lost anything and
 * that the server still serves.
 *
 * Under the sanitizers (make check sets CHAT_SANITIZED=1) memory figures
 * mean nothing: the memory bound is then reported, not asserted. */
/* macOS hides SIGWINCH and SIGURG when _POSIX_C_SOURCE is defined, unless
 * _DARWIN_C_SOURCE is too */
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE
#endif
#include "harness.h"
#include "limits.h"
#include "suites.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define WAIT_MS 5000 /* deadline of an ordinary wait */

/* ---------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------- */

static int sanitized(void) {
    const char *s = getenv("CHAT_SANITIZED");
    return s != NULL && *s != '\0' && strcmp(s, "0") != 0;
}

static long long tv_ms(struct timeval tv) {
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* CPU time (user + system) of the children reaped so far, in ms. */
static long long children_cpu_ms(void) {
    struct rusage ru;
    REQUIRE(getrusage(RUSAGE_CHILDREN, &ru) == 0);
    return tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime);
}

/* Peak resident memory of a live process in kB, from Linux's
 * /proc/PID/status (VmHWM); -1 where there is no such file. */
static long peak_rss_kb(pid_t pid) {
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
        }
    }
    fclose(f);
    return kb;
}

/* Reads from a socket of the fake server until what it got contains
 * needle; 1 if it did within ms. */
static int fd_wait_for(int fd, const char *needle, int ms) {
    char got[4096];
    size_t len = 0;
    long long end = now_ms() + ms;
    got[0] = '\0';
    while (strstr(got, needle) == NULL) {
        fd_set rd;
        struct timeval tv = {0, 20000};
        FD_ZERO(&rd);
        FD_SET(fd, &rd);
        if (select(fd + 1, &rd, NULL, NULL, &tv) > 0) {
            ssize_t n = read(fd, got + len, sizeof got - 1 - len);
            if (n <= 0) {
                return 0;
            }
            len += (size_t)n;
            got[len] = '\0';
        }
        pump(0);
        if (now_ms() > end || len == sizeof got - 1) {
            return 0;
        }
    }
    return 1;
}

/* ---------------------------------------------------------------------
 * Out of file descriptors
 * ------------------------------------------------------------------- */

#define NOFILE 48 /* the server's RLIMIT_NOFILE in this test */
#define STR_(x) #x
#define STR(x) STR_(x)

/* The server runs with ulimit -n 48, far below MAX_CLIENTS: it runs out of
 * descriptors long before MAX_CLIENTS is reached. Every connection past
 * that is refused with "ERR server full" and closed at once, and the
 * server does not spin on a connection it cannot accept: it uses little
 * CPU over its whole life, which includes a second at the limit with
 * refused connections arriving. Once some connections close, a normal
 * client is served again. */
static void out_of_fds(int step) {
    static const char script[] = "ulimit -n " STR(NOFILE) " || exit 97; exec \"$0\" \"$@\"";
    const char *db = tmppath("chat.db");
    struct proc *s = server_start_sh(step, script, db);
    WAIT_UNTIL(proc_port(s) > 0 || s->exited, WAIT_MS);
    REQUIRE(!s->exited);
    int port = proc_port(s);
    long long t0 = now_ms();

    /* Connect and say HELLO until one is refused: "ERR server full", or,
     * since the server closes a refused connection at once and our HELLO
     * is unread there, possibly a reset that beat the error line. */
    static int fds[NOFILE];
    int n = 0, refused = -1;
    while (refused == -1) {
        int fd = tcp_connect(port);
        tcp_send_str(fd, "HELLO 0\n");
        if (tcp_wait_line(fd, " ", WAIT_MS) && strncmp(tcp_log(fd), "WELCOME ", 8) == 0) {
            REQUIRE(n < NOFILE);
            fds[n++] = fd;
        } else {
            refused = fd;
        }
    }
    CHECK(strcmp(tcp_log(refused), "ERR server full\n") == 0); /* never a reset that beat it */
    CHECK(tcp_wait_closed(refused, WAIT_MS));
    tcp_close(refused);
    CHECK(n >= NOFILE - 16); /* stdio, listener, SQLite's files, the spare */

    /* A second at the limit, while refused connections keep coming; these
     * send nothing, so they read the whole error line. */
    long long w0 = now_ms();
    for (int k = 0; k < 5; k++) {
        int fd = tcp_connect(port);
        CHECK(tcp_wait_line(fd, "ERR server full", WAIT_MS));
        CHECK(tcp_wait_closed(fd, WAIT_MS));
        tcp_close(fd);
    }
    while (now_ms() - w0 < 1000) {
        pump(50); /* a measuring window: the server should sleep through it */
    }
    /* Refused by the spare-fd path ("out of file descriptors"), or because
     * the last fd was accepted and the new client could not get one for
     * its random id (logged as "out of memory"): either way, politely. */
    CHECK(proc_err_count(s, "refused a connection") >= 6);

    /* Service resumes once connections close. */
    for (int k = 0; k < 5; k++) {
        tcp_close(fds[--n]);
    }
    struct proc *c = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(c) == 1, WAIT_MS);
    proc_write(c, "served again\n");
    WAIT_UNTIL(proc_out_count(c, " served again\n") == 1, WAIT_MS);
    CHECK_EQ_INT(db_count(db, "content = 'served again'"), 1);
    CHECK(tcp_wait_line(fds[0], " served again", WAIT_MS)); /* an old connection was served all along */

    /* The server's CPU time: reap the client first, so that only the
     * server's time is added between the two readings. */
    proc_kill(c);
    long long cpu0 = children_cpu_ms(), life = now_ms() - t0;
    proc_signal(s, SIGTERM);
    CHECK_EQ_INT(proc_wait_exit(s, WAIT_MS), 0);
    long long cpu = children_cpu_ms() - cpu0;
    fprintf(stderr, "note: %d connections served under ulimit -n %d; server CPU %lld ms in %lld ms\n", n + 5,
            NOFILE, cpu, life);
    /* A busy loop through the one-second window alone would take ~1000 ms. */
    CHECK(cpu < 500);
}

/* ---------------------------------------------------------------------
 * A client frozen with SIGSTOP
 * ------------------------------------------------------------------- */

/* A real client is stopped (SIGSTOP) while two others chat with large
 * messages: the server cuts it off once MAX_OUTPUT is queued for it, the
 * others get every message meanwhile. After SIGCONT the stopped client
 * reads what the kernel still held, sees the connection closed,
 * reconnects, and catches up: every row once, in order. */
static void stopped_client(int step) {
    enum { AFTER = 5 };
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct proc *frozen = client_start(step, port, NULL), *recv = client_start(step, port, NULL),
                *send = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(frozen) == 1 && proc_connected(recv) == 1 && proc_connected(send) == 1,
               WAIT_MS);
    proc_write(send, "before the stop\n");
    WAIT_UNTIL(proc_out_lines(frozen) == 1 && proc_out_lines(recv) == 1 && proc_out_lines(send) == 1,
               WAIT_MS);
    proc_signal(frozen, SIGSTOP);

    struct line_counter rc = {0, 0}, sc = {0, 0};
    long sent = chat_until_cut(s, send, recv, &sc, &rc, "big", 1);
    /* A few more while it is cut off: these are only in the database. */
    for (int k = 1; k <= AFTER; k++) {
        proc_write(send, "after the cut %d\n", k);
        sent++;
    }
    WAIT_UNTIL(proc_count_lines(recv, &rc) == sent && proc_count_lines(send, &sc) == sent, 10000);
    CHECK_EQ_INT(proc_err_count(recv, "disconnected"), 0);
    CHECK_EQ_INT(proc_err_count(send, "disconnected"), 0);
    CHECK(!frozen->exited);

    proc_signal(frozen, SIGCONT);
    WAIT_UNTIL(proc_connected(frozen) == 2, 10000);
    struct line_counter fc = {0, 0};
    WAIT_UNTIL(proc_count_lines(frozen, &fc) >= sent, 10000);
    WAIT_UNTIL(db_count(db, "1") == sent, WAIT_MS);
    db_check_lines("the stopped client after SIGCONT", frozen->out, db, 0, sent, 0);
    db_check_lines("the receiver", recv->out, db, 0, sent, 0);
    db_check_lines("the sender", send->out, db, 0, sent, 0);
    CHECK_EQ_INT(proc_err_count(s, "output buffer full"), 1);
    CHECK_EQ_INT(proc_err_count(frozen, "disconnected"), 1);
    fprintf(stderr, "note: stopped client cut off after %ld messages of %d bytes\n", sent - AFTER,
            CUT_TEXT_LEN);
}

/* ---------------------------------------------------------------------
 * A client a million messages behind
 * ------------------------------------------------------------------- */

#define MILLION 1000000L

static void million_text(long i, char *buf, size_t cap) {
    snprintf(buf, cap, "m%ld", i);
}

/* The replay streams a page at a time through a small buffer: a client
 * that says HELLO 0 to a server with a million rows prints them all, once,
 * in order, and the server's memory stays bounded meanwhile. */
static void million_behind(void) {
    const char *db = tmppath("chat.db");
    long long t0 = now_ms();
    db_make(db, MILLION, 0, million_text);
    long long t1 = now_ms();
    struct proc *s = server_start(4, db, NULL);
    int port = proc_port(s);
    struct proc *c = client_start(4, port, NULL);
    struct line_counter lc = {0, 0};
    /* How long a million rows take is the machine's (6 s idle, 30 s with
     * the sanitizers on a loaded machine): what fails is a replay that
     * stops, no new line for STALL_MS; the test's limit bounds the rest. */
    enum { STALL_MS = 10000 };
    long seen = -1;
    long long stall_end = 0;
    while (proc_count_lines(c, &lc) < MILLION) {
        if (lc.lines != seen) {
            seen = lc.lines;
            stall_end = now_ms() + STALL_MS;
        } else if (now_ms() > stall_end || c->exited) {
            test_fail(__FILE__, __LINE__,
                      "the replay stopped after %ld of %ld rows (nothing new for %d ms%s)", seen, MILLION,
                      STALL_MS, c->exited ? ", the client exited" : "");
            test_abort();
        }
        pump(20);
    }
    long long t2 = now_ms();
    long rss = peak_rss_kb(s->pid);

    /* Every line, cheaply: "<i> m<i>" for i = 1..MILLION, nothing else. */
    const char *p = c->out, *end = c->out + c->out_len;
    char expect[48];
    for (long i = 1; i <= MILLION; i++) {
        int k = snprintf(expect, sizeof expect, "%ld m%ld\n", i, i);
        if (end - p < k || memcmp(p, expect, (size_t)k) != 0) {
            test_fail(__FILE__, __LINE__, "line %ld: expected \"%ld m%ld\", got \"%.40s\"", i, i, i, p);
            test_abort();
        }
        p += k;
    }
    CHECK(p == end);
    CHECK_EQ_INT(proc_err_count(s, "disconnected"), 0);

    fprintf(stderr,
            "note: %ld rows inserted in %lld ms, replayed and printed in %lld ms; server peak RSS %ld kB\n",
            MILLION, t1 - t0, t2 - t1, rss);
    if (rss < 0) {
        fprintf(stderr, "note: no /proc/PID/status here: the memory bound is not checked\n");
    } else if (sanitized()) {
        fprintf(stderr, "note: sanitizer build: the memory bound (20 MB) is not checked\n");
    } else {
        CHECK(rss < 20 * 1024);
    }
}

/* ---------------------------------------------------------------------
 * Signals during select()
 * ------------------------------------------------------------------- */

/* Signals whose default action is to ignore them (or to continue a
 * running process) arrive at the server and at a client, many times,
 * while two clients chat: select() may be interrupted, nothing else
 * happens. Every message arrives once, in order, and nobody exits. */
static void signal_storm(int step) {
    static const int sigs[] = {SIGWINCH, SIGCONT, SIGCHLD, SIGURG};
    enum { ROUNDS = 200, EVERY = 10 };
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct proc *a = client_start(step, port, NULL), *b = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(a) == 1 && proc_connected(b) == 1, WAIT_MS);
    long said = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
            proc_signal(s, sigs[k]);
            proc_signal(a, sigs[k]);
        }
        if (round % EVERY == 0) {
            said++;
            proc_write(said % 2 ? a : b, "under signals %ld\n", said);
        }
        pump(2);
    }
    WAIT_UNTIL(proc_out_lines(a) == said && proc_out_lines(b) == said, WAIT_MS);
    WAIT_UNTIL(db_count(db, "1") == said, WAIT_MS);
    db_check_lines("client a", a->out, db, 0, said, 0);
    db_check_lines("client b", b->out, db, 0, said, 0);
    CHECK(!s->exited && !a->exited && !b->exited);
    CHECK_EQ_INT(proc_err_count(a, "disconnected"), 0);
    CHECK_EQ_INT(proc_err_count(b, "disconnected"), 0);
    /* and the signals that do mean something still work */
    proc_signal(s, SIGTERM);
    CHECK_EQ_INT(proc_wait_exit(s, WAIT_MS), 0);
}

/* ---------------------------------------------------------------------
 * Closing after bad input, under load
 * ------------------------------------------------------------------- */

/* After "ERR line too long" the server stops taking requests but keeps
 * reading (and dropping) what the peer sends, until the peer closes or
 * CLOSE_LINGER_MS pass (TUTORIAL.md, "The protocol"): closing with unread
 * input would reset the connection. So the peer's writes right after the
 * error must still succeed, and its close must be answered by a close. */
static void overlong_linger(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    int port = proc_port(s);
    int fd = tcp_connect(port);
    size_t n = 2 * MAX_LINE;
    char *big = over_long(n, "HELLO 0\nMSG ");
    tcp_send(fd, big, n);
    REQUIRE(tcp_wait_line(fd, "ERR line too long", WAIT_MS));
    for (int k = 0; k < 3; k++) {
        if (write(fd, big, 1000) != 1000) {
            test_fail(__FILE__, __LINE__, "write %d after the ERR: %s: the server closed without lingering",
                      k + 1, strerror(errno));
            break;
        }
        pump(50);
    }
    shutdown(fd, SHUT_WR);
    CHECK(tcp_wait_closed(fd, 3000));
    free(big);
}

static void row_400(long i, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "row %ld ", i);
    memset(buf + k, 'r', 400 - (size_t)k);
    buf[400] = '\0';
}

/* A peer that says HELLO 0 to a long history and then sends a line with a
 * NUL byte: the replay stops with the error, the server half-closes once
 * the error is out, and writes nothing after that (a write after the
 * half-close fails with EPIPE, and the peer would be dropped instead of
 * being given CLOSE_LINGER_MS to close). */
static void replay_cut_by_error(int step) {
    const char *db = tmppath("chat.db");
    db_make(db, 200, 0, row_400); /* 80 kB: several REPLAY_FILLs */
    struct proc *s = server_start(step, db, NULL);
    int port = proc_port(s);
    int fd = tcp_connect(port);
    static const char bad[] = "HELLO 0\nMSG a\0b\n";
    tcp_send(fd, bad, sizeof bad - 1);
    CHECK(tcp_wait_line(fd, "ERR NUL byte in line", WAIT_MS));
    CHECK(tcp_wait_closed(fd, 3000)); /* the half-close */
    /* A write after the half-close would come at once, on the next turn of
     * the server's loop: watch its log for a moment. */
    long long end = now_ms() + 300;
    while (now_ms() < end && proc_err_count(s, "disconnected") == 0) {
        pump(20);
    }
    const char *log = tcp_log(fd), *err = strstr(log, "ERR NUL byte in line\n");
    CHECK(err != NULL && err[sizeof "ERR NUL byte in line\n" - 1] == '\0');
    CHECK_EQ_INT(proc_err_count(s, "Broken pipe"), 0);
    CHECK_EQ_INT(proc_err_count(s, "disconnected"), 0);
}

/* ---------------------------------------------------------------------
 * A hostile server
 * ------------------------------------------------------------------- */

/* The heartbeat values in WELCOME come from the network: a client must
 * not compute "now + interval + timeout" with any number it is sent (a
 * signed overflow is undefined behaviour). Out of range, the WELCOME is
 * bad; the client drops that connection, and a good server is rejoined. */
static void welcome_out_of_range(int step) {
    static const char *const bad[] = {
        "WELCOME abcdefghijklmnopqrst 9223372036854775807 9223372036854775807 1\nCHAT 1 first\n",
        "WELCOME abcdefghijklmnopqrst -5 -5 0\n",
    };
    int port, lfd = tcp_listen(&port), fd = -1;
    struct proc *c = client_start(step, port, NULL);
    for (int i = 0; i < 2; i++) {
        fd = tcp_accept(lfd, WAIT_MS);
        REQUIRE(fd_wait_for(fd, i == 0 ? "HELLO 0\n" : "HELLO ", WAIT_MS));
        fd_send_str(fd, bad[i]);
        WAIT_UNTIL(proc_err_count(c, "disconnected") == i + 1, WAIT_MS);
        CHECK_EQ_INT(proc_err_count(c, "disconnected (bad WELCOME)"), i + 1);
        close(fd);
    }
    fd = tcp_accept(lfd, WAIT_MS);
    REQUIRE(fd_wait_for(fd, "HELLO ", WAIT_MS));
    fd_send_str(fd, "WELCOME abcdefghijklmnopqrst 25000 20000 2\nCHAT 2 second\n");
    WAIT_UNTIL(proc_out_count(c, "2 second\n") == 1, WAIT_MS);
    CHECK(!c->exited);
    close(fd);
    close(lfd);
}

/* ---------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------- */

FOR_1_4(out_of_fds)
FOR_1_4(stopped_client)
FOR_1_4(signal_storm)
FOR_1_4(overlong_linger)
FOR_STEP(replay_cut_by_error, 4)
FOR_1_4(welcome_out_of_range)

const struct test limits_tests[] = {
    /* slow ones first, so that they overlap with the quick ones */
    {"limits: step4 a client 1,000,000 messages behind gets every row once, in order; server memory bounded",
     million_behind},
    {"limits: step1 out of fds: ERR server full, no busy loop, served again after closes", out_of_fds_1},
    {"limits: step4 out of fds: ERR server full, no busy loop, served again after closes", out_of_fds_4},
    {"limits: step1 a SIGSTOPped client is cut off at MAX_OUTPUT, others served, it catches up after SIGCONT",
     stopped_client_1},
    {"limits: step4 a SIGSTOPped client is cut off at MAX_OUTPUT, others served, it catches up after SIGCONT",
     stopped_client_4},
    {"limits: step1 SIGWINCH/SIGCONT/SIGCHLD/SIGURG storm during select(): all delivered, nobody exits",
     signal_storm_1},
    {"limits: step4 SIGWINCH/SIGCONT/SIGCHLD/SIGURG storm during select(): all delivered, nobody exits",
     signal_storm_4},
    {"limits: step1 after ERR line too long the server drains and lingers, no reset", overlong_linger_1},
    {"limits: step4 after ERR line too long the server drains and lingers, no reset", overlong_linger_4},
    {"limits: step4 a replay cut by ERR NUL byte writes nothing after the half-close", replay_cut_by_error_4},
    {"limits: step1 client: WELCOME heartbeat values out of range are refused, no overflow",
     welcome_out_of_range_1},
    {"limits: step4 client: WELCOME heartbeat values out of range are refused, no overflow",
     welcome_out_of_range_4},
};
const int limits_count = sizeof limits_tests / sizeof limits_tests[0];
