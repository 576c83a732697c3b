/* memcheck.c -- every step's server and client under valgrind memcheck,
 * through a real session.
 *
 *   make check-valgrind              (tests/check.mk)
 *   VALGRIND=/usr/bin/valgrind tests/memcheck [NAME...]
 *
 * Each program runs under
 *   valgrind --error-exitcode=99 --leak-check=full
 *            --errors-for-leak-kinds=definite,indirect
 * so that an invalid read or write, a use of uninitialised memory, or a
 * definite or indirect leak at exit makes its exit status 99. Memory that
 * is still reachable at exit (a global buffer) is not a leak. Valgrind's
 * report goes to <tmpdir>/<name>.vg, and is shown when a test fails.
 *
 * Per step, two sessions:
 *   - a server, two clients (one under valgrind, with --verbose), and raw
 *     peers: chat, replay, every kind of bad input (unknown verb, MSG
 *     before HELLO, bad offsets, malformed MSG, a text too long, an
 *     over-long line, a NUL byte, a peer that resets), over-long and NUL
 *     lines typed into the client, SIGTERM to the server, a new server on
 *     the same port, the client reconnects and catches up, stdin EOF;
 *   - a client against a hostile fake server: PING and CHAT before
 *     WELCOME, a bad WELCOME, duplicate and malformed CHAT lines, stray
 *     ACKs, errors, unknown verbs, an over-long line; then stdin EOF. */
#include "harness.h"
#include "limits.h"
#include "suites.h" /* FOR_ALL, T_ALL */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define VG_MS 20000 /* valgrind makes everything slower: a wait's deadline */
#define VG_EXIT 99 /* the exit status for errors and leaks */

/* ---------------------------------------------------------------------
 * Programs under valgrind
 * ------------------------------------------------------------------- */

static const char *valgrind_path(void) {
    const char *v = getenv("VALGRIND");
    return v != NULL && *v != '\0' ? v : "/usr/bin/valgrind";
}

static struct proc *vg_start(const char *name, const char *rel, const char *const args[]) {
    char log[4200];
    const char *argv[32];
    int n = 0;
    snprintf(log, sizeof log, "--log-file=%s.vg", tmppath(name));
    argv[n++] = valgrind_path();
    argv[n++] = "-q";
    argv[n++] = "--error-exitcode=99";
    argv[n++] = "--leak-check=full";
    argv[n++] = "--errors-for-leak-kinds=definite,indirect";
    argv[n++] = "--show-leak-kinds=definite,indirect";
    argv[n++] = log;
    argv[n++] = bin_path(rel);
    for (int i = 0; args[i] != NULL; i++) {
        REQUIRE(n < 31);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    return proc_start(name, argv);
}

static struct proc *vg_server(int step, const char *db, const char *port) {
    char rel[32];
    snprintf(rel, sizeof rel, "step%d/server", step);
    const char *args[] = {"--port",         port,   "--db", db, "--ping-interval", "300",
                          "--ping-timeout", "5000", NULL};
    struct proc *s = vg_start(port[0] == '0' ? "server1" : "server2", rel, args);
    WAIT_UNTIL(proc_port(s) > 0 || s->exited, VG_MS);
    REQUIRE(!s->exited);
    return s;
}

static struct proc *vg_client(int step, int port, const char *name) {
    char rel[32], port_s[16];
    snprintf(rel, sizeof rel, "step%d/client", step);
    snprintf(port_s, sizeof port_s, "%d", port);
    const char *args[] = {
        "--port", port_s, "--reconnection-delay", "50", "--reconnection-delay-max", "200", "--verbose", NULL};
    return vg_start(name, rel, args);
}

/* Waits for the exit and checks its status; valgrind's report is shown
 * when the status is not the expected one. */
static void check_exit(struct proc *p, int expect) {
    char path[4200], text[8192];
    int code = proc_wait_exit(p, VG_MS);
    if (code == expect) {
        return;
    }
    snprintf(path, sizeof path, "%s.vg", tmppath(p->name));
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[n] = '\0';
    if (f != NULL) {
        fclose(f);
    }
    test_fail(__FILE__, __LINE__, "%s exited with %d, not %d%s; valgrind's report (%s):\n%s", p->name, code,
              expect, code == VG_EXIT ? " (valgrind found errors or leaks)" : "", path, text);
}

/* ---------------------------------------------------------------------
 * Raw peers
 * ------------------------------------------------------------------- */

static void expect_line(int fd, const char *send, const char *needle) {
    tcp_send_str(fd, send);
    if (!tcp_wait_line(fd, needle, VG_MS)) {
        test_fail(__FILE__, __LINE__, "sent \"%.40s\": no line with \"%s\"", send, needle);
    }
}

/* A MSG line in the grammar of the step, newline included. */
static const char *msg(int step, const char *text) {
    static char line[256];
    static long n = 100;
    n++;
    if (step <= 2) {
        snprintf(line, sizeof line, "MSG %s\n", text);
    } else if (step == 3) {
        snprintf(line, sizeof line, "MSG %ld %s\n", n, text);
    } else {
        snprintf(line, sizeof line, "MSG %ld raw-%ld %s\n", n, n, text);
    }
    return line;
}

/* Every kind of bad input, from raw peers, and a replay. */
static void bad_peers(int step, int port) {
    int fd = tcp_connect(port);
    expect_line(fd, "NOPE 1 2\n", "ERR unknown verb");
    expect_line(fd, msg(step, "too early"), "ERR send HELLO first");
    expect_line(fd, "HELLO x\n", "ERR bad offset");
    expect_line(fd, "HELLO 0\n", "hello from a"); /* WELCOME, then the replay */
    expect_line(fd, "HELLO 0\n", "ERR HELLO already received");
    expect_line(fd, "MSG\n", "ERR ");
    expect_line(fd, step <= 2 ? "MSG \n" : "MSG 1\n", "ERR ");
    expect_line(fd, "PONG\n\r\n\n", "PING"); /* an empty line is ignored; the heartbeat goes on */
    expect_line(fd, "PONG\n", "PING");
    size_t n = MAX_TEXT + 20;
    char *big = malloc(2 * MAX_LINE);
    REQUIRE(big != NULL);
    memset(big, 't', 2 * MAX_LINE);
    memcpy(big,
           step <= 2   ? "MSG "
           : step == 3 ? "MSG 7 "
                       : "MSG 7 too-long ",
           step <= 2   ? 4
           : step == 3 ? 6
                       : 15);
    big[n] = '\n';
    tcp_send(fd, big, n + 1);
    CHECK(tcp_wait_line(fd, step <= 2 ? "ERR message too long" : "REJECT 7 message too long", VG_MS));
    expect_line(fd, msg(step, "from a raw peer"), "from a raw peer");
    tcp_send(fd, big, 2 * MAX_LINE); /* no newline: over-long */
    CHECK(tcp_wait_line(fd, "ERR line too long", VG_MS));
    CHECK(tcp_wait_closed(fd, VG_MS));
    tcp_close(fd);
    free(big);

    static const char nul[] = "HELLO 0\nMSG a\0b\n";
    fd = tcp_connect(port);
    tcp_send(fd, nul, sizeof nul - 1);
    CHECK(tcp_wait_line(fd, "ERR NUL byte in line", VG_MS));
    CHECK(tcp_wait_closed(fd, VG_MS));
    tcp_close(fd);

    fd = tcp_connect(port); /* a partial line, then gone */
    tcp_send_str(fd, "HELLO 0\nMSG 1 partial");
    tcp_close(fd);
}

/* ---------------------------------------------------------------------
 * The sessions
 * ------------------------------------------------------------------- */

static void session(int step) {
    const char *db = tmppath("chat.db");
    char port_s[16];
    struct proc *s1 = vg_server(step, db, "0");
    int port = proc_port(s1);
    snprintf(port_s, sizeof port_s, "%d", port);
    struct proc *a = vg_client(step, port, "client-a");
    struct proc *b = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(a) == 1 && proc_connected(b) == 1, VG_MS);

    proc_write(a, "hello from a\n");
    WAIT_UNTIL(proc_out_lines(a) == 1 && proc_out_lines(b) == 1, VG_MS);
    proc_write(b, "from b: esc \x1b[1m, e acute \xc3\xa9, bad \xff\n");
    WAIT_UNTIL(proc_out_lines(a) == 2 && proc_out_lines(b) == 2, VG_MS);
    /* lines the client refuses: too long for a message, too long for a
     * line, a NUL byte */
    proc_write(a, "%0*d\n", MAX_TEXT + 10, 0);
    proc_write(a, "%0*d\n", 2 * MAX_LINE, 0);
    CHECK(write(a->in_fd, "nul\0byte\n", 9) == 9);
    WAIT_UNTIL(proc_err_count(a, "not sent") == 3, VG_MS);

    bad_peers(step, port);
    WAIT_UNTIL(proc_out_lines(a) == 3 && proc_out_lines(b) == 3, VG_MS);

    proc_signal(s1, SIGTERM);
    check_exit(s1, 0);
    WAIT_UNTIL(proc_err_count(a, "disconnected") >= 1 && proc_err_count(b, "disconnected") >= 1, VG_MS);
    proc_write(a, "typed while down\n"); /* steps 2-4 keep it for later */
    struct proc *s2 = vg_server(step, db, port_s);
    WAIT_UNTIL(proc_connected(a) == 2 && proc_connected(b) == 2, VG_MS);
    if (step >= 2) {
        WAIT_UNTIL(proc_out_count(b, " typed while down\n") == 1, VG_MS);
    }
    proc_write(b, "after the restart\n");
    WAIT_UNTIL(proc_out_count(a, " after the restart\n") == 1, VG_MS);

    proc_close_stdin(b);
    CHECK_EQ_INT(proc_wait_exit(b, VG_MS), 0);
    proc_close_stdin(a);
    check_exit(a, step >= 3 ? 1 : 0); /* steps 3-4 count the refused lines as given up */
    proc_signal(s2, SIGTERM);
    check_exit(s2, 0);
}

/* Waits until fd is readable (or, for a listening socket, has a
 * connection); failing that within ms, the test fails. */
static void wait_readable(int fd, int ms, const char *what) {
    long long end = now_ms() + ms;
    for (;;) {
        fd_set rd;
        struct timeval tv = {0, 20000};
        FD_ZERO(&rd);
        FD_SET(fd, &rd);
        if (select(fd + 1, &rd, NULL, NULL, &tv) > 0) {
            return;
        }
        pump(0);
        if (now_ms() > end) {
            test_fail(__FILE__, __LINE__, "%s: nothing within %d ms", what, ms);
            test_abort();
        }
    }
}

/* Reads until what came contains needle (1), or the peer closed (0). */
static int fake_wait_for(int fd, const char *needle) {
    char got[8192];
    size_t len = 0;
    got[0] = '\0';
    while (strstr(got, needle) == NULL && len < sizeof got - 1) {
        wait_readable(fd, VG_MS, needle);
        ssize_t n = read(fd, got + len, sizeof got - 1 - len);
        if (n <= 0) {
            return 0;
        }
        len += (size_t)n;
        got[len] = '\0';
    }
    return strstr(got, needle) != NULL;
}

/* Reads and drops until the peer closes; 1 if it did. */
static int fake_wait_eof(int fd) {
    char sink[4096];
    for (;;) {
        wait_readable(fd, VG_MS, "end of file");
        ssize_t n = read(fd, sink, sizeof sink);
        if (n <= 0) {
            return n == 0;
        }
    }
}

static void hostile_server(int step) {
    int port, lfd = tcp_listen(&port);
    struct proc *c = vg_client(step, port, "client");

    int fd = tcp_accept(lfd, VG_MS);
    REQUIRE(fake_wait_for(fd, "HELLO 0\n"));
    fd_send_str(fd, "PING\nCHAT 1 before welcome\nACK 1\nWELCOME\n");
    WAIT_UNTIL(proc_err_count(c, "disconnected (bad WELCOME)") == 1, VG_MS);
    close(fd);

    fd = tcp_accept(lfd, VG_MS);
    REQUIRE(fake_wait_for(fd, "HELLO "));
    fd_send_str(fd, "WELCOME abcdefghijklmnopqrst 300 5000 3\n"
                    "CHAT 1 one\nCHAT 1 one again\nCHAT x bad id\nCHAT 2\nCHAT\n"
                    "CHAT 3 esc \x1b[2J bad \xff\xfe\n"
                    "ACK 12\nACK zz\nACK\nERR some reason\nUNKNOWN verb\n\r\n\nPING\n");
    WAIT_UNTIL(proc_out_count(c, "3 esc ") == 1, VG_MS);
    CHECK(fake_wait_for(fd, "PONG"));
    proc_write(c, "typed line\n");
    CHECK(fake_wait_for(fd, "typed line"));
    fd_send_str(fd, "ACK 1\n"); /* steps 3-4: the first attempt's ack id */
    char *big = malloc(2 * MAX_LINE);
    REQUIRE(big != NULL);
    memset(big, 'x', 2 * MAX_LINE);
    fd_send(fd, big, 2 * MAX_LINE);
    free(big);
    WAIT_UNTIL(proc_err_count(c, "line too long from the server") == 1, VG_MS);
    close(fd);

    fd = tcp_accept(lfd, VG_MS);
    REQUIRE(fake_wait_for(fd, "HELLO 3\n"));
    fd_send_str(fd, "WELCOME abcdefghijklmnopqrst 300 5000 4\nCHAT 4 four\n");
    WAIT_UNTIL(proc_out_count(c, "4 four\n") == 1, VG_MS);
    proc_close_stdin(c);
    CHECK(fake_wait_eof(fd)); /* the client half-closes */
    close(fd);
    check_exit(c, 0);
    close(lfd);
}

/* ---------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------- */

FOR_ALL(session)
FOR_ALL(hostile_server)

#define T(n, what, fn)                                                                                       \
    { "memcheck: step" #n " " what, fn##_##n }

static const struct test tests[] = {
    T_ALL("server and client: chat, replay, bad input, restart, SIGTERM, stdin EOF", session),
    T_ALL("client against a hostile server: bad WELCOME, bad CHAT, over-long line", hostile_server),
};

int main(int argc, char **argv) {
    return run_tests(argc, argv, tests, (int)(sizeof tests / sizeof tests[0]));
}
