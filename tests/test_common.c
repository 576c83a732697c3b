/* test_common.c -- common/ on its own: showing untrusted text, every
 * address of a name, a log that never blocks.
 *
 * These call common's functions directly (chattests links libcommon.a).
 * What must run with its own stdio (stdio_ensure_open(), the log on
 * stderr) runs in a forked child that reports through its exit status or
 * its stderr; the parent waits for it with a deadline and kills it if the
 * deadline passes. */
#include "harness.h"
#include "log.h"
#include "net.h"
#include "store.h"
#include "suites.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 5000 /* for what normally takes milliseconds */

/* ---------------------------------------------------------------------
 * Child processes and descriptors
 * ------------------------------------------------------------------- */

/* 1 when fd turns readable (or writable) within ms, 0 if the time ran
 * out. No harness call: the log tests' children use it too. */
static int fd_wait(int fd, int for_write, int ms) {
    long long end = now_ms() + ms;
    for (;;) {
        long long left = end - now_ms();
        fd_set set;
        struct timeval tv = {0, 0};
        if (left <= 0) {
            return 0;
        }
        tv.tv_sec = (time_t)(left / 1000);
        tv.tv_usec = (suseconds_t)(left % 1000 * 1000);
        FD_ZERO(&set);
        FD_SET(fd, &set);
        int n = select(fd + 1, for_write ? NULL : &set, for_write ? &set : NULL, NULL, &tv);
        if (n > 0) {
            return 1;
        }
        if (n == -1 && errno != EINTR) {
            return 0;
        }
    }
}

/* The exit status of child pid (128 + signal if killed), or -1 if it has
 * not exited within ms: it is then killed. */
static int wait_child(pid_t pid, int ms) {
    long long end = now_ms() + ms;
    int st;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (now_ms() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        pump(10); /* the harness's way to wait a little: a select() */
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static pid_t fork_child(void) {
    fflush(NULL); /* or what stdio holds would be written twice */
    pid_t pid = fork();
    REQUIRE(pid != -1);
    return pid;
}

/* ---------------------------------------------------------------------
 * stdio_ensure_open()
 * ------------------------------------------------------------------- */

static int is_dev_null(int fd) {
    struct stat null_st, st;
    return stat("/dev/null", &null_st) == 0 && fstat(fd, &st) == 0 && st.st_rdev == null_st.st_rdev &&
           st.st_ino == null_st.st_ino;
}

#define FD_BIT(fd) (1u << (fd))

/* The child: close the fds in mask (FD_BIT(n): fd n), call
 * stdio_ensure_open(), then open a file. 0 if all is as it should be,
 * else a number that says what was wrong. */
static int stdio_child(unsigned mask, const char *file) {
    struct stat out_before, out_after;
    if (fstat(1, &out_before) == -1) {
        return 2;
    }
    for (int fd = 0; fd <= 2; fd++) {
        if (mask & FD_BIT(fd)) {
            close(fd);
        }
    }
    stdio_ensure_open();
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 3) {
        return 3; /* the file took the place of stdin, stdout or stderr */
    }
    for (int i = 0; i <= 2; i++) {
        int closed = (mask & FD_BIT(i)) != 0;
        if (closed && (!is_dev_null(i) || (fcntl(i, F_GETFL) & O_ACCMODE) != O_RDWR)) {
            return 4 + i; /* not /dev/null opened for reading and writing */
        }
    }
    if (!(mask & FD_BIT(1)) && (fstat(1, &out_after) == -1 || out_after.st_ino != out_before.st_ino)) {
        return 7; /* an fd that was open was replaced */
    }
    return 0;
}

static int run_stdio_child(unsigned mask) {
    const char *file = tmppath("opened-after"); /* made here: the child must not create the directory */
    pid_t pid = fork_child();
    if (pid == 0) {
        _exit(stdio_child(mask, file));
    }
    return wait_child(pid, WAIT_MS);
}

static void stdio_closed_fds_get_dev_null(void) {
    CHECK_EQ_INT(run_stdio_child(FD_BIT(0) | FD_BIT(2)), 0); /* stdin and stderr closed */
    CHECK_EQ_INT(run_stdio_child(FD_BIT(0) | FD_BIT(1) | FD_BIT(2)), 0); /* all three */
    CHECK_EQ_INT(run_stdio_child(0), 0); /* none: nothing changes */
}

/* ---------------------------------------------------------------------
 * show_text()
 * ------------------------------------------------------------------- */

/* What show_text() writes for text (a static buffer). */
static const char *shown(const char *text) {
    static char out[256];
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    REQUIRE(f != NULL);
    show_text(f, text);
    REQUIRE(fclose(f) == 0);
    snprintf(out, sizeof out, "%s", mem);
    free(mem);
    return out;
}

/* cp (U+0080 or above) in UTF-8, NUL-terminated, into out[5]. */
static void utf8_encode(uint32_t cp, char out[5]) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        o[2] = 0;
    } else if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        o[3] = 0;
    } else {
        o[0] = (unsigned char)(0xF0 | cp >> 18);
        o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[3] = (unsigned char)(0x80 | (cp & 0x3F));
        o[4] = 0;
    }
}

/* s with every byte outside printable ASCII as <HH>, into out: a failure
 * message must not hold the very characters under test. */
static const char *bytes_of(const char *s, char *out, size_t cap) {
    size_t len = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && len + 5 < cap; p++) {
        if (*p >= 0x20 && *p < 0x7F) {
            out[len++] = (char)*p;
        } else {
            len += (size_t)snprintf(out + len, cap - len, "<%02X>", *p);
        }
    }
    out[len] = '\0';
    return out;
}

static void check_shown(const char *text, const char *want) {
    const char *got = shown(text);
    if (strcmp(got, want) != 0) {
        char t[128], g[128], w[128];
        test_fail(__FILE__, __LINE__, "show_text(\"%s\") wrote \"%s\", not \"%s\"",
                  bytes_of(text, t, sizeof t), bytes_of(got, g, sizeof g), bytes_of(want, w, sizeof w));
    }
}

static void show_text_escapes_bidi_and_invisible(void) {
    static const uint32_t hidden[] = {
        0x202A, 0x202B, 0x202C, 0x202D, 0x202E, /* embeddings and overrides */
        0x2066, 0x2067, 0x2068, 0x2069, /* isolates */
        0x200E, 0x200F, 0x061C, /* marks */
        0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, /* zero width */
        0x2028, 0x2029, /* line and paragraph separators */
    };
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++) {
        char cp[5], text[32], want[32];
        utf8_encode(hidden[i], cp);
        snprintf(text, sizeof text, "pay %s42", cp);
        snprintf(want, sizeof want, "pay \\u{%04X}42", (unsigned)hidden[i]);
        check_shown(text, want);
    }
    /* Several in a row, and at both ends of the text. */
    check_shown("\xE2\x80\xAE"
                "abc\xE2\x81\xA6\xE2\x80\x8B",
                "\\u{202E}abc\\u{2066}\\u{200B}");
}

static void show_text_passes_ordinary_utf8(void) {
    check_shown("caf\xC3\xA9", "caf\xC3\xA9"); /* é */
    check_shown("\xE4\xB8\xAD\xE6\x96\x87", "\xE4\xB8\xAD\xE6\x96\x87"); /* 中文 */
    check_shown("hi \xF0\x9F\x98\x80!", "hi \xF0\x9F\x98\x80!"); /* 😀 */
    check_shown("plain ASCII, 100% ~{}", "plain ASCII, 100% ~{}");
    /* The neighbours of the escaped ranges (and U+00A0, the first after
     * the C1 controls) are ordinary characters. */
    static const uint32_t visible[] = {0x00A0, 0x061B, 0x061D, 0x200A, 0x2010,
                                       0x2027, 0x202F, 0x2065, 0xFEFE};
    for (size_t i = 0; i < sizeof visible / sizeof visible[0]; i++) {
        char cp[5];
        utf8_encode(visible[i], cp);
        check_shown(cp, cp);
    }
}

static void show_text_still_escapes_bytes(void) {
    check_shown("\x1B[31mred", "\\x1B[31mred"); /* an escape sequence */
    check_shown("tab\there\r", "tab\\x09here\\x0D");
    check_shown("del\x7F", "del\\x7F");
    check_shown("a\\b", "a\\\\b"); /* a backslash, so that \x.. in a text cannot pass for ours */
    check_shown("\xC2\x9B"
                "31m",
                "\\xC2\\x9B31m"); /* C1 CSI, valid UTF-8 but obeyed by terminals */
    check_shown("\xFF", "\\xFF"); /* never valid in UTF-8 */
    check_shown("\xC0\xAF", "\\xC0\\xAF"); /* overlong "/" */
    check_shown("\xED\xA0\x80", "\\xED\\xA0\\x80"); /* a UTF-16 surrogate */
    check_shown("cut \xE2\x80", "cut \\xE2\\x80"); /* a sequence cut short by the end */
    check_shown("\xE2\x80"
                "A",
                "\\xE2\\x80A");
}

/* ---------------------------------------------------------------------
 * Addresses: lists built by hand
 *
 * This machine's /etc/hosts may have no name with two addresses, so the
 * loops over a list are tested with lists of our own: two results of
 * numeric getaddrinfo() calls, chained through ai_next. freeaddrinfo() of
 * such a chain is not safe: POSIX lets a C library allocate one call's
 * results as one block (musl does), and it would then free our second
 * node as part of the first's block. So list_free() unchains them and
 * frees each one by itself, and the dialer's list is never given to
 * net_dial_end().
 * ------------------------------------------------------------------- */

/* One numeric address ip:port, as getaddrinfo() gives it. */
static struct addrinfo *numeric_addr(const char *ip, int port) {
    struct addrinfo hints, *res = NULL;
    char portstr[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%d", port);
    REQUIRE(getaddrinfo(ip, portstr, &hints, &res) == 0);
    REQUIRE(res->ai_next == NULL);
    return res;
}

static struct addrinfo *two_addrs(const char *ip1, int port1, const char *ip2, int port2) {
    struct addrinfo *first = numeric_addr(ip1, port1);
    first->ai_next = numeric_addr(ip2, port2);
    return first;
}

static void list_free(struct addrinfo *list) {
    while (list != NULL) {
        struct addrinfo *next = list->ai_next;
        list->ai_next = NULL;
        freeaddrinfo(list);
        list = next;
    }
}

/* ::1 is configured here. If it is not (no IPv6 on lo), the tests use a
 * second IPv4 port instead, so that they still test the loops. */
static int have_ipv6_loopback(void) {
    struct sockaddr_in6 sa;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = in6addr_loopback;
    int ok = fd != -1 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    int e = errno;
    if (fd != -1) {
        close(fd);
    }
    if (!ok && e != EADDRNOTAVAIL && e != EAFNOSUPPORT) {
        test_fail(__FILE__, __LINE__, "socket/bind on ::1: %s", strerror(e));
    }
    return ok;
}

/* A port on 127.0.0.1 where a connect is refused: bound, never listening,
 * so no other program can take it while the test runs. */
static int refusing_port(void) {
    struct addrinfo *ai = numeric_addr("127.0.0.1", 0);
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    REQUIRE(fd != -1);
    REQUIRE(bind(fd, ai->ai_addr, ai->ai_addrlen) == 0);
    freeaddrinfo(ai);
    tcp_adopt(fd); /* closed when the test ends */
    return net_local_port(fd);
}

/* A blocking connect to ip:port: the fd, or -1. */
static int blocking_connect(const char *ip, int port) {
    struct addrinfo *ai = numeric_addr(ip, port);
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd != -1 && connect(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int socket_family(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 ? ss.ss_family : -1;
}

/* Accept one connection on a listening fd and close it; the test ends
 * (failed) if none comes. */
static void accept_one(int listen_fd) {
    close(tcp_accept(listen_fd, WAIT_MS));
}

/* ---------------------------------------------------------------------
 * net_listen_addrs(), net_listen_all()
 * ------------------------------------------------------------------- */

static void listen_addrs_on_both_families(void) {
    char err[NET_ERR_LEN];
    struct net_listener l;
    int v6 = have_ipv6_loopback();
    struct addrinfo *list = two_addrs("127.0.0.1", 0, "::1", 0);
    REQUIRE(net_listen_addrs(&l, list, 0, err) == 0);
    list_free(list);
    int port = net_local_port(l.fds[0]);
    REQUIRE(port > 0);
    CHECK_EQ_INT(socket_family(l.fds[0]), AF_INET);
    if (!v6) {
        CHECK_EQ_INT(l.n, 1); /* ::1 could not be bound: skipped */
    } else {
        int v6only = 0;
        socklen_t len = sizeof v6only;
        REQUIRE(l.n == 2);
        CHECK_EQ_INT(net_local_port(l.fds[1]), port);
        CHECK_EQ_INT(socket_family(l.fds[1]), AF_INET6);
        CHECK(getsockopt(l.fds[1], IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) == 0 && v6only == 1);
        int fd6 = blocking_connect("::1", port);
        CHECK(fd6 != -1);
        accept_one(l.fds[1]);
        close(fd6);
    }
    int fd4 = blocking_connect("127.0.0.1", port);
    CHECK(fd4 != -1);
    accept_one(l.fds[0]);
    close(fd4);
    net_listener_close(&l);
    CHECK_EQ_INT(l.n, 0);
    net_listener_close(&l); /* twice is harmless */
}

/* 192.0.2.1 (TEST-NET-1, RFC 5737) is no address of this machine: bind()
 * fails with EADDRNOTAVAIL. */
static void listen_addrs_skips_what_fails(void) {
    char err[NET_ERR_LEN];
    struct net_listener l;
    struct addrinfo *list = two_addrs("192.0.2.1", 0, "127.0.0.1", 0);
    REQUIRE(net_listen_addrs(&l, list, 0, err) == 0);
    CHECK_EQ_INT(l.n, 1);
    CHECK_EQ_INT(socket_family(l.fds[0]), AF_INET);
    int fd = blocking_connect("127.0.0.1", net_local_port(l.fds[0]));
    CHECK(fd != -1);
    accept_one(l.fds[0]);
    close(fd);
    /* The same list again, on the port l has taken: nothing works. */
    struct net_listener again;
    err[0] = '\0';
    CHECK_EQ_INT(net_listen_addrs(&again, list, net_local_port(l.fds[0]), err), -1);
    CHECK_EQ_INT(again.n, 0);
    CHECK(strstr(err, "bind/listen: ") != NULL);
    list_free(list);
    net_listener_close(&l);
}

/* The case that started it: a server on --host localhost must be reachable
 * at 127.0.0.1 (the client's default), whatever localhost resolves to
 * first, and a client given the name must reach it too. */
static void listen_all_on_localhost(void) {
    char err[NET_ERR_LEN];
    struct net_listener l;
    struct net_dialer d;
    int done;
    REQUIRE(net_listen_all(&l, "localhost", 0, err) == 0);
    int port = net_local_port(l.fds[0]);
    for (int i = 1; i < l.n; i++) {
        CHECK_EQ_INT(net_local_port(l.fds[i]), port);
    }
    int fd = blocking_connect("127.0.0.1", port);
    CHECK(fd != -1);
    close(fd);
    fd = net_dial(&d, "localhost", port, &done, err);
    REQUIRE(fd != -1);
    CHECK(done || (fd_wait(fd, 1, WAIT_MS) && net_connect_result(fd, err) == 0));
    close(fd);
    net_dial_end(&d);
    CHECK(d.list == NULL && d.next == NULL);
    net_dial_end(&d); /* twice is harmless */
    net_listener_close(&l);
}

/* ---------------------------------------------------------------------
 * The dialer
 * ------------------------------------------------------------------- */

/* Drive a dialer the way a client's loop does: wait for each attempt in
 * progress to end (with a deadline), and go on to the next address when
 * one fails. The connected fd, or -1 (err set) when every address failed. */
static int dial_in_turn(struct net_dialer *d, char *err) {
    int done = 0;
    int fd = net_dial_next(d, &done, err);
    while (fd != -1) {
        if (!done) {
            REQUIRE(fd_wait(fd, 1, WAIT_MS)); /* a connect on loopback never hangs */
        }
        if (done || net_connect_result(fd, err) == 0) {
            return fd;
        }
        close(fd);
        fd = net_dial_next(d, &done, err);
    }
    return -1;
}

/* A dialer whose list is [A, 127.0.0.1:P], where only 127.0.0.1:P listens;
 * A is ::1:P, or a refusing IPv4 port where there is no ::1. */
static void dialer_goes_on_to_the_next_address(void) {
    char err[NET_ERR_LEN];
    struct net_listener l;
    struct addrinfo *local = numeric_addr("127.0.0.1", 0);
    REQUIRE(net_listen_addrs(&l, local, 0, err) == 0);
    freeaddrinfo(local);
    int port = net_local_port(l.fds[0]);
    int v6 = have_ipv6_loopback();
    struct addrinfo *list =
        two_addrs(v6 ? "::1" : "127.0.0.1", v6 ? port : refusing_port(), "127.0.0.1", port);
    struct net_dialer d = {list, list};
    int fd = dial_in_turn(&d, err);
    if (fd == -1) {
        test_fail(__FILE__, __LINE__, "no address connected: %s", err);
        test_abort();
    }
    CHECK(d.next == NULL); /* the second address is the one that connected */
    CHECK_EQ_INT(socket_family(fd), AF_INET);
    accept_one(l.fds[0]);
    close(fd);
    list_free(list);
    net_listener_close(&l);
}

/* An address whose socket() fails at once is skipped inside one
 * net_dial_next() call. (Here a refused connect on loopback is always
 * reported later, through net_connect_result(), so the test above does
 * not see this path: we make socket() itself fail, with a protocol that
 * does not go with SOCK_STREAM.) */
static void dialer_skips_what_fails_at_once(void) {
    char err[NET_ERR_LEN];
    struct net_listener l;
    int done;
    struct addrinfo *local = numeric_addr("127.0.0.1", 0);
    REQUIRE(net_listen_addrs(&l, local, 0, err) == 0);
    freeaddrinfo(local);
    int port = net_local_port(l.fds[0]);
    struct addrinfo *list = two_addrs("127.0.0.1", port, "127.0.0.1", port);
    list->ai_protocol = IPPROTO_UDP; /* socket() fails: EPROTONOSUPPORT */
    struct net_dialer d = {list, list};
    int fd = net_dial_next(&d, &done, err);
    REQUIRE(fd != -1);
    CHECK(d.next == NULL); /* the first was skipped, the second tried */
    CHECK(done || (fd_wait(fd, 1, WAIT_MS) && net_connect_result(fd, err) == 0));
    accept_one(l.fds[0]);
    close(fd);
    list_free(list);
    net_listener_close(&l);
}

static void dialer_with_no_address_left_fails(void) {
    char err[NET_ERR_LEN];
    int v6 = have_ipv6_loopback();
    int port1 = refusing_port(), port2 = refusing_port();
    struct addrinfo *list = two_addrs("127.0.0.1", port1, v6 ? "::1" : "127.0.0.1", v6 ? port1 : port2);
    struct net_dialer d = {list, list};
    int done;
    err[0] = '\0';
    CHECK_EQ_INT(dial_in_turn(&d, err), -1);
    CHECK(strstr(err, "connect: ") != NULL); /* why the last one failed */
    CHECK(d.next == NULL);
    CHECK_EQ_INT(net_dial_next(&d, &done, err), -1); /* and again: still nothing */
    CHECK(strstr(err, "no other address") != NULL);
    list_free(list);
}

/* net_dial() itself, on a numeric host that refuses: the attempt fails at
 * once (-1, the list freed) or later (net_connect_result()). */
static void dial_a_refusing_host(void) {
    char err[NET_ERR_LEN];
    struct net_dialer d;
    int done = 0;
    int fd = net_dial(&d, "127.0.0.1", refusing_port(), &done, err);
    if (fd == -1) {
        CHECK(d.list == NULL);
    } else {
        CHECK(!done);
        CHECK(fd_wait(fd, 1, WAIT_MS));
        CHECK_EQ_INT(net_connect_result(fd, err), -1);
        close(fd);
        CHECK_EQ_INT(net_dial_next(&d, &done, err), -1);
        net_dial_end(&d);
    }
    CHECK(strstr(err, "connect") != NULL);
}

/* ---------------------------------------------------------------------
 * The log
 *
 * The child's stderr is a pipe the parent does not read until the child
 * says (a byte on "ready") that it has logged what the test needs. The
 * parent then drains the pipe, lets the child go on (a byte on "go"), and
 * reads to the end while the child flushes what waits and exits.
 * ------------------------------------------------------------------- */

#define FLOOD_LINES 100000
#define FLOOD_MS 5000 /* a blocking write would hang for ever */
/* 60 bytes with the newline */
#define FILLER "server: filler line %06d, padded to about sixty bytes...."
#define DROPPED " log lines dropped (stderr was not read)"

struct log_child {
    pid_t pid;
    int err_r; /* the child's stderr */
    int ready_r; /* the child wrote a byte: the parent may read */
    int go_w; /* the parent writes a byte: the child may go on */
};

/* In the child: write everything that waits, waiting for stderr to take
 * it. 0, or 9 if it did not within the deadline. */
static int flush_all(void) {
    long long end = now_ms() + WAIT_MS;
    log_flush();
    while (log_pending()) {
        if (now_ms() > end) {
            return 9;
        }
        fd_wait(2, 1, 100);
        log_flush();
    }
    return 0;
}

/* In the child: tell the parent to read, wait until it said go, log
 * "end", and write everything out. */
static int handshake_and_finish(int ready_w, int go_r) {
    char byte = 'r';
    if (write(ready_w, &byte, 1) != 1 || read(go_r, &byte, 1) != 1) {
        return 8;
    }
    log_line("server: end");
    return flush_all();
}

static void log_child_start(struct log_child *c, int (*body)(void)) {
    int err[2], ready[2], go[2];
    REQUIRE(pipe(err) == 0 && pipe(ready) == 0 && pipe(go) == 0);
    c->pid = fork_child();
    if (c->pid == 0) {
        dup2(err[1], 2);
        close(err[0]);
        close(err[1]);
        close(ready[0]);
        close(go[1]);
        int rc = body();
        _exit(rc != 0 ? rc : handshake_and_finish(ready[1], go[0]));
    }
    close(err[1]);
    close(ready[1]);
    close(go[0]);
    c->err_r = err[0];
    c->ready_r = ready[0];
    c->go_w = go[1];
    REQUIRE(fcntl(c->err_r, F_SETFL, O_NONBLOCK) == 0);
}

/* Append what fd has now to *out (of *len bytes, at most cap). 0 at end
 * of file, 1 otherwise. */
static int read_now(int fd, char *out, size_t *len, size_t cap) {
    for (;;) {
        REQUIRE(*len < cap);
        ssize_t n = read(fd, out + *len, cap - *len);
        if (n > 0) {
            *len += (size_t)n;
        } else if (n == 0) {
            return 0;
        } else {
            REQUIRE(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
            return 1;
        }
    }
}

/* The whole story of a child: wait until it is ready (within ready_ms),
 * drain its stderr (*before bytes), let it go, read to the end. Returns
 * its exit status. */
static int log_child_run(struct log_child *c, int ready_ms, char *out, size_t cap, size_t *len,
                         size_t *before) {
    char byte = 'g';
    *len = 0;
    if (!fd_wait(c->ready_r, 0, ready_ms)) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        test_fail(__FILE__, __LINE__, "the child was not done logging within %d ms: a write blocked",
                  ready_ms);
        test_abort();
    }
    read_now(c->err_r, out, len, cap);
    *before = *len;
    ssize_t w = write(c->go_w, &byte, 1); /* if the child is gone, its status says why */
    (void)w;
    while (read_now(c->err_r, out, len, cap)) {
        REQUIRE(fd_wait(c->err_r, 0, WAIT_MS));
    }
    out[*len] = '\0';
    close(c->err_r);
    close(c->ready_r);
    close(c->go_w);
    return wait_child(c->pid, WAIT_MS);
}

/* Start a child running body, run it through (log_child_run()), check
 * that it exited 0, and return what it wrote (up to 4 MB, malloc'd). */
static char *log_child_output(int (*body)(void), int ready_ms, size_t *len, size_t *before) {
    struct log_child c;
    size_t cap = 4 * 1024 * 1024;
    char *out = xmalloc(cap + 1);
    log_child_start(&c, body);
    CHECK_EQ_INT(log_child_run(&c, ready_ms, out, cap, len, before), 0);
    return out;
}

/* "server: N log lines dropped (stderr was not read)": N, else 0. */
static unsigned long dropped_count(const char *line) {
    char *end;
    if (strncmp(line, "server: ", 8) != 0 || line[8] < '1' || line[8] > '9') {
        return 0;
    }
    unsigned long n = strtoul(line + 8, &end, 10);
    return strcmp(end, DROPPED) == 0 ? n : 0;
}

/* The filler line number i. */
static int is_filler(const char *line, int i) {
    char want[80];
    snprintf(want, sizeof want, FILLER, i);
    return strcmp(line, want) == 0;
}

static int flood_body(void) {
    for (int i = 0; i < FLOOD_LINES; i++) {
        log_line(FILLER, i);
    }
    if (!log_pending()) {
        return 2; /* nobody reads, so some must wait */
    }
    if (fcntl(2, F_GETFL) & O_NONBLOCK) {
        return 3; /* the terminal's flag must be left as it was */
    }
    return 0;
}

static void log_flood_never_blocks(void) {
    size_t len, before;
    char *out = log_child_output(flood_body, FLOOD_MS, &len, &before);
    /* What waited in the child: at most LOG_MAX, and the two lines after. */
    CHECK(before > 0);
    CHECK(len - before <= LOG_MAX + 128);
    REQUIRE(len > 0 && out[len - 1] == '\n');
    /* Complete lines only, in order, each line either kept whole or
     * counted as dropped: kept + dropped is every line. */
    int next = 0, kept = 0, bad = 0, ends = 0;
    unsigned long dropped = 0;
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        unsigned long n = dropped_count(line);
        if (n > 0) {
            dropped += n;
            next += (int)n;
        } else if (strcmp(line, "server: end") == 0) {
            ends++;
        } else if (is_filler(line, next) && ends == 0) {
            next++;
            kept++;
        } else if (bad++ == 0) {
            test_fail(__FILE__, __LINE__, "line %d: \"%.80s\"", next, line);
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(ends, 1);
    CHECK(kept > 0 && dropped > 0);
    CHECK_EQ_INT((unsigned long)kept + dropped, FLOOD_LINES);
    free(out);
}

static int conn_body(void) {
    int i = 0;
    log_conn("server: early connection"); /* nothing waits: kept */
    /* Fill the pipe: lines go straight into it until it is full. */
    while (!log_pending()) {
        if (i == FLOOD_LINES) {
            return 2;
        }
        log_line(FILLER, i++);
    }
    /* Then more than half of LOG_MAX waits, but not all of it. */
    for (int j = 0; j < LOG_MAX / 2 / 60 + 10; j++) {
        log_line(FILLER, i++);
    }
    for (int j = 0; j < 10; j++) {
        log_conn("server: connection %d", j);
    }
    log_line("server: this one matters");
    return 0;
}

static void log_conn_gives_way(void) {
    size_t len, before;
    char *out = log_child_output(conn_body, WAIT_MS, &len, &before);
    CHECK(strstr(out, "server: early connection\n") == out);
    CHECK(strstr(out, "server: connection ") == NULL);
    CHECK(strstr(out, "\nserver: 10" DROPPED "\nserver: this one matters\nserver: end\n") != NULL);
    /* Every log_line() line is there, in order. */
    int next = 0, lines = 0;
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        next += is_filler(line, next);
        lines++;
    }
    CHECK(next > LOG_MAX / 2 / 60);
    CHECK_EQ_INT(lines, next + 4);
    free(out);
}

/* A stderr that is gone: its reader closed (EPIPE; the test ignores
 * SIGPIPE, as the servers do), or not open at all. */
static int broken_stderr_child(void) {
    int p[2];
    ignore_sigpipe();
    if (pipe(p) == -1 || dup2(p[1], 2) == -1) {
        return 2;
    }
    close(p[0]);
    close(p[1]);
    for (int i = 0; i < 3; i++) {
        log_line("server: nobody reads this %d", i);
        log_conn("server: nor this %d", i);
    }
    log_flush();
    if (log_pending()) {
        return 3; /* what cannot be written is discarded */
    }
    close(2);
    log_line("server: stderr is closed");
    log_flush();
    return log_pending() ? 4 : 0;
}

static void log_to_a_broken_stderr(void) {
    pid_t pid = fork_child();
    if (pid == 0) {
        _exit(broken_stderr_child());
    }
    CHECK_EQ_INT(wait_child(pid, WAIT_MS), 0);
}

/* Group commit (store.h): rows inserted after store_group() are seen by
 * another connection only once store_commit() returns; a UNIQUE conflict
 * in the group undoes only its own row; on a database another process
 * has locked, an insert fails at once and the commit loses nothing. */
static void store_group_commits_at_once(void) {
    char err[256];
    int64_t id;
    const char *db = tmppath("group.db");
    struct store *s = store_open(db, err, sizeof err);
    REQUIRE(s != NULL);
    store_group(s);
    CHECK_EQ_INT(store_insert(s, "a", "first", &id), SQLITE_OK);
    CHECK_EQ_INT(store_insert(s, "a", "first again", &id), SQLITE_CONSTRAINT_UNIQUE);
    CHECK_EQ_INT(store_insert(s, "b", "second", &id), SQLITE_OK);
    CHECK_EQ_INT(db_count(db, "1"), 0); /* not committed: nobody else sees them */
    CHECK_EQ_INT(store_commit(s), SQLITE_OK);
    CHECK_EQ_INT(db_count(db, "1"), 2);
    CHECK_EQ_INT(db_count(db, "client_offset = 'b' AND id = 2"), 1);

    void *lock = db_lock(db);
    long long t0 = now_ms();
    CHECK_EQ_INT(store_insert(s, "c", "while locked", &id), SQLITE_BUSY);
    CHECK(now_ms() - t0 < 1000); /* at once: the loop never waits */
    CHECK_EQ_INT(store_commit(s), SQLITE_OK); /* nothing was inserted, nothing lost */
    db_unlock(lock);
    CHECK_EQ_INT(store_insert(s, "c", "after the lock", &id), SQLITE_OK);
    CHECK_EQ_INT(store_commit(s), SQLITE_OK);
    CHECK_EQ_INT(db_count(db, "content = 'after the lock' AND id = 3"), 1);
    store_close(s);
}

/* Small pages (store.c, use_small_pages()): a new database gets 1 KB
 * pages. A file made before, with SQLite's 4 KB, keeps them (SQLite
 * cannot change them in WAL mode), and the server uses it as before. */
static void store_pages_small_when_new(void) {
    char err[256];
    int64_t id;
    const char *fresh = tmppath("fresh.db"), *old = tmppath("old.db");
    struct store *s = store_open(fresh, err, sizeof err);
    REQUIRE(s != NULL);
    CHECK_EQ_INT(store_insert(s, NULL, "one", &id), SQLITE_OK);
    store_close(s);
    CHECK_EQ_INT(db_scalar(fresh, "PRAGMA page_size"), 1024);

    sqlite3 *h = NULL;
    REQUIRE(sqlite3_open(old, &h) == SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(h, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; CREATE TABLE earlier (x)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(h);
    s = store_open(old, err, sizeof err);
    REQUIRE(s != NULL);
    CHECK_EQ_INT(store_insert(s, "o-1", "first", &id), SQLITE_OK);
    CHECK_EQ_INT(store_insert(s, "o-2", "second", &id), SQLITE_OK);
    CHECK_EQ_INT(id, 2);
    store_close(s);
    CHECK_EQ_INT(db_scalar(old, "PRAGMA page_size"), 4096);
    CHECK_EQ_INT(db_count(old, "content IN ('first', 'second')"), 2);
}

const struct test common_tests[] = {
    {"common: stdio_ensure_open puts /dev/null (read-write) on closed fds 0 and 2, or all three, so the next "
     "file opened gets fd 3 or more; open fds are left alone",
     stdio_closed_fds_get_dev_null},
    {"common: show_text writes each bidi control, zero-width character and line separator as \\u{XXXX}",
     show_text_escapes_bidi_and_invisible},
    {"common: show_text passes ordinary UTF-8 (e acute, CJK, an emoji) and the escaped ranges' neighbours "
     "unchanged",
     show_text_passes_ordinary_utf8},
    {"common: show_text still writes control bytes, C1 controls and invalid UTF-8 as \\xHH, a backslash "
     "as \\\\",
     show_text_still_escapes_bytes},
    {"common: net_listen_addrs on [127.0.0.1, ::1] listens on both, one port, and each accepts",
     listen_addrs_on_both_families},
    {"common: net_listen_addrs skips an address it cannot bind, and fails only when none works",
     listen_addrs_skips_what_fails},
    {"common: net_listen_all on localhost is reachable at 127.0.0.1 and by net_dial(localhost)",
     listen_all_on_localhost},
    {"common: a dialer whose first address refuses connects to the second",
     dialer_goes_on_to_the_next_address},
    {"common: a dialer skips an address whose socket() fails at once, within one net_dial_next",
     dialer_skips_what_fails_at_once},
    {"common: a dialer whose addresses all refuse ends with -1 and says why",
     dialer_with_no_address_left_fails},
    {"common: net_dial to a port that refuses fails, at once or through net_connect_result",
     dial_a_refusing_host},
    {"common: 100000 log lines to a stderr nobody reads return within 5 s, as whole lines, the dropped "
     "ones counted",
     log_flood_never_blocks},
    {"common: once half of LOG_MAX waits, log_conn lines are dropped and log_line lines still kept",
     log_conn_gives_way},
    {"common: a log whose stderr is a broken pipe or closed is discarded silently", log_to_a_broken_stderr},
    {"common: store_group() rows are committed together by store_commit(); on a lock an insert fails at once",
     store_group_commits_at_once},
    {"common: store_open makes a new database with 1 KB pages, and uses one made with 4 KB pages as it is",
     store_pages_small_when_new},
};
const int common_count = sizeof common_tests / sizeof common_tests[0];
