/* test_basics.c -- one server and its clients: chatting, catching up,
 * bad input, heartbeats, limits and the command line.
 *
 * Every test runs against real programs on loopback and a real SQLite
 * file, and waits on conditions with deadlines. Most tests run for each
 * step 1..4 (the table at the end has one wrapper per step); a few that
 * are heavy, or whose behaviour is the same code in every step, run for
 * the steps named in their title.
 *
 * A bad-input test seeds two rows, sends its bad input, checks what the
 * offender got back, and then always asks the same question: does the
 * server still serve a normal client, and are the stored rows intact? */
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
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 5000 /* deadline of an ordinary wait */

/* Server timers for the tests where the heartbeat matters. */
static const char *const FAST_PING[] = {"--ping-interval", "200", "--ping-timeout", "200", NULL};

/* Ack ids and step-4 client offsets of raw peers: unique within a test,
 * and all of the same width, so that "ACK 100001" never matches a prefix
 * of another ack. */
static long next_n = 100000;

/* ---------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------- */

/* A MSG line (newline included) in the grammar of that step; malloc'd.
 * n is the ack id (step 3+) and names the client offset (step 4). */
static char *msg_line(int step, long n, const char *text) {
    size_t cap = strlen(text) + 80;
    char *s = xmalloc(cap);
    if (step <= 2) {
        snprintf(s, cap, "MSG %s\n", text);
    } else if (step == 3) {
        snprintf(s, cap, "MSG %ld %s\n", n, text);
    } else {
        snprintf(s, cap, "MSG %ld raw-%ld %s\n", n, n, text);
    }
    return s;
}

/* A raw peer that said HELLO <offset> and got its WELCOME. */
static int hello(int port, long long offset) {
    char line[64];
    int fd = tcp_connect(port);
    snprintf(line, sizeof line, "HELLO %lld\n", offset);
    tcp_send_str(fd, line);
    REQUIRE(tcp_wait_line(fd, "WELCOME ", WAIT_MS));
    return fd;
}

/* Send one chat message from a greeted raw peer and wait until the server
 * has handled it: its ACK (steps 3-4, sent after the commit), or its own
 * broadcast (steps 1-2). text must be unique in the test. */
static void raw_say(int step, int fd, const char *text) {
    long n = ++next_n;
    char *line = msg_line(step, n, text), ack[32];
    tcp_send_str(fd, line);
    free(line);
    if (step >= 3) {
        snprintf(ack, sizeof ack, "ACK %ld", n);
        REQUIRE(tcp_wait_line(fd, ack, WAIT_MS));
    } else {
        REQUIRE(tcp_wait_line(fd, text, WAIT_MS));
    }
}

/* ---------------------------------------------------------------------
 * The database, read directly
 * ------------------------------------------------------------------- */

static sqlite3 *db_open_ro(const char *db) {
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        test_fail(__FILE__, __LINE__, "cannot open %s: %s", db, h ? sqlite3_errmsg(h) : "?");
        sqlite3_close(h);
        test_abort();
    }
    sqlite3_busy_timeout(h, 2000);
    return h;
}

static long long max_id(const char *db) {
    return db_scalar(db, "SELECT IFNULL(MAX(id), 0) FROM messages");
}

/* Every row with id <= upto, one "id|offset|content" line each; malloc'd. */
static char *db_dump(const char *db, long long upto) {
    sqlite3 *h = db_open_ro(db);
    sqlite3_stmt *st = NULL;
    sqlite3_str *out = sqlite3_str_new(h);
    REQUIRE(sqlite3_prepare_v2(h,
                               "SELECT id, quote(client_offset), content FROM messages"
                               " WHERE id <= ? ORDER BY id",
                               -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_int64(st, 1, upto);
    while (sqlite3_step(st) == SQLITE_ROW) {
        sqlite3_str_appendf(out, "%lld|%s|%s\n", (long long)sqlite3_column_int64(st, 0),
                            (const char *)sqlite3_column_text(st, 1),
                            (const char *)sqlite3_column_text(st, 2));
    }
    sqlite3_finalize(st);
    char *s = sqlite3_str_finish(out);
    char *copy = xmalloc(s ? strlen(s) + 1 : 1);
    strcpy(copy, s ? s : "");
    sqlite3_free(s);
    sqlite3_close(h);
    return copy;
}

/* What follows the first line (the WELCOME) of a raw peer's log. */
static const char *after_welcome(int fd) {
    const char *log = tcp_log(fd), *nl = strchr(log, '\n');
    CHECK(strncmp(log, "WELCOME ", 8) == 0);
    return nl ? nl + 1 : "";
}

/* Row i of a long history: "row <i> rrr...", 250 bytes. */
static void row_250(long i, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "row %ld ", i);
    memset(buf + k, 'r', 250 - (size_t)k);
    buf[250] = '\0';
}

/* ---------------------------------------------------------------------
 * Seeding, and "still serves a normal client, rows intact"
 * ------------------------------------------------------------------- */

struct snapshot {
    long long max_id;
    char *rows;
};

static struct snapshot snapshot(const char *db) {
    struct snapshot s;
    s.max_id = max_id(db);
    s.rows = db_dump(db, s.max_id);
    return s;
}

/* Two rows stored through a raw peer, which then leaves cleanly (half-close,
 * and the server closes too); returns the rows as they are now. */
static struct snapshot seed(int step, int port, const char *db) {
    int fd = hello(port, 0);
    raw_say(step, fd, "seed one");
    raw_say(step, fd, "seed two\twith a tab");
    shutdown(fd, SHUT_WR);
    REQUIRE(tcp_wait_closed(fd, WAIT_MS));
    tcp_close(fd);
    struct snapshot s = snapshot(db);
    REQUIRE(s.max_id >= 2);
    return s;
}

/* The server still serves a normal client: a fresh client catches up on
 * every row, sends a message, the message is stored and comes back to it.
 * The rows of the snapshot are unchanged; with nothing_new, no row was
 * added before this check either. */
static void check_still_serves(int step, int port, const char *db, const struct snapshot *before,
                               int nothing_new) {
    char text[64], where[96], line[80];
    if (nothing_new) {
        CHECK_EQ_INT(max_id(db), before->max_id);
    }
    long long rows = db_count(db, "1");
    struct proc *c = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(c) >= 1, WAIT_MS);
    WAIT_UNTIL(proc_out_lines(c) >= rows, WAIT_MS);
    snprintf(text, sizeof text, "still served %ld", ++next_n);
    proc_write(c, "%s\n", text);
    snprintf(where, sizeof where, "content = '%s'", text);
    WAIT_UNTIL(db_count(db, where) == 1, WAIT_MS);
    long long id = db_scalar(db, "SELECT MAX(id) FROM messages");
    snprintf(line, sizeof line, "%lld %s\n", id, text);
    WAIT_UNTIL(proc_out_count(c, line) == 1, WAIT_MS);
    CHECK_EQ_INT(proc_out_lines(c), rows + 1);
    char *now = db_dump(db, before->max_id);
    if (strcmp(now, before->rows) != 0) {
        test_fail(__FILE__, __LINE__, "stored rows changed:\nbefore:\n%safter:\n%s", before->rows, now);
    }
    free(now);
    proc_kill(c);
}

/* ---------------------------------------------------------------------
 * Chat, catch-up, replay
 * ------------------------------------------------------------------- */

static void chat_basics(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct proc *a = client_start(step, port, NULL), *b = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(a) == 1 && proc_connected(b) == 1, WAIT_MS);
    proc_write(a, "hello from a\n");
    WAIT_UNTIL(proc_out_lines(a) == 1 && proc_out_lines(b) == 1, WAIT_MS);
    proc_write(b, "hi from b, with spaces  and a tab\there\n");
    WAIT_UNTIL(proc_out_lines(a) == 2 && proc_out_lines(b) == 2, WAIT_MS);
    /* the longest message a client may send */
    char *big = xmalloc(MAX_TEXT + 1);
    memset(big, 'm', MAX_TEXT);
    big[MAX_TEXT] = '\0';
    proc_write(a, "%s\n", big);
    WAIT_UNTIL(proc_out_lines(a) == 3 && proc_out_lines(b) == 3, WAIT_MS);
    size_t n = strlen(big) + 128;
    char *expect = xmalloc(n);
    snprintf(expect, n, "1 hello from a\n2 hi from b, with spaces  and a tab\\x09here\n3 %s\n", big);
    CHECK(strcmp(a->out, expect) == 0);
    CHECK(strcmp(b->out, expect) == 0);
    CHECK_EQ_INT(db_count(db, "1"), 3);
    CHECK_EQ_INT(db_count(db, "id = 1 AND content = 'hello from a'"), 1);
    CHECK_EQ_INT(
        db_count(db, "id = 2 AND content = 'hi from b, with spaces  and a tab' || char(9) || 'here'"), 1);
    char where[96];
    snprintf(where, sizeof where, "id = 3 AND length(content) = %d AND content NOT GLOB '*[^m]*'", MAX_TEXT);
    CHECK_EQ_INT(db_count(db, where), 1);
    if (step < 4) {
        CHECK_EQ_INT(db_count(db, "client_offset IS NULL"), 3);
    } else {
        CHECK_EQ_INT(db_count(db, "client_offset IS NOT NULL AND client_offset <> ''"), 3);
        CHECK_EQ_INT(db_scalar(db, "SELECT COUNT(DISTINCT client_offset) FROM messages"), 3);
    }
    free(big);
    free(expect);
}

/* The client leaves (stdin EOF); rows are stored meanwhile; a new client
 * prints every stored row once, in id order, before the live ones. */
static void catchup_client_restart(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    int port = proc_port(s);
    struct proc *a = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(a) == 1, WAIT_MS);
    int raw = hello(port, 0);
    raw_say(step, raw, "before 1");
    WAIT_UNTIL(proc_out_lines(a) == 1, WAIT_MS);
    proc_close_stdin(a);
    CHECK_EQ_INT(proc_wait_exit(a, WAIT_MS), 0);
    raw_say(step, raw, "away 2");
    raw_say(step, raw, "away 3");
    struct proc *a2 = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(a2) == 1 && proc_out_lines(a2) == 3, WAIT_MS);
    raw_say(step, raw, "live 4");
    WAIT_UNTIL(proc_out_lines(a2) == 4, WAIT_MS);
    CHECK(strcmp(a->out, "1 before 1\n") == 0);
    CHECK(strcmp(a2->out, "1 before 1\n2 away 2\n3 away 3\n4 live 4\n") == 0);
}

/* The server stops; another server on the same db (another port) stores
 * rows; the first port comes back; the client, which kept trying,
 * resumes from its offset: the missed rows once, in order, then live. */
static void catchup_server_restart(int step) {
    const char *db = tmppath("chat.db");
    struct proc *s1 = server_start(step, db, NULL);
    int port = proc_port(s1);
    struct proc *a = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(a) == 1, WAIT_MS);
    int raw = hello(port, 0);
    raw_say(step, raw, "m1");
    WAIT_UNTIL(proc_out_lines(a) == 1, WAIT_MS);
    proc_signal(s1, SIGTERM);
    CHECK_EQ_INT(proc_wait_exit(s1, WAIT_MS), 0);
    WAIT_UNTIL(proc_err_count(a, "disconnected") >= 1, WAIT_MS);

    struct proc *s2 = server_start(step, db, NULL);
    int raw2 = hello(proc_port(s2), 0);
    raw_say(step, raw2, "m2");
    raw_say(step, raw2, "m3");
    proc_signal(s2, SIGTERM);
    CHECK_EQ_INT(proc_wait_exit(s2, WAIT_MS), 0);
    CHECK_EQ_INT(proc_out_lines(a), 1);

    server_restart(step, db, port);
    WAIT_UNTIL(proc_connected(a) == 2 && proc_out_lines(a) == 3, WAIT_MS);
    int raw3 = hello(port, 3);
    raw_say(step, raw3, "m4");
    WAIT_UNTIL(proc_out_lines(a) == 4, WAIT_MS);
    CHECK(strcmp(a->out, "1 m1\n2 m2\n3 m3\n4 m4\n") == 0);
}

/* HELLO <offset>: exactly the rows above it, in order, then live ones. */
/* Each wait is a REQUIRE: once one row is missing the rest are too, and
 * a server that answers otherwise (graded) should fail in one deadline. */
static void hello_offset(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    int p1 = hello(port, 0);
    raw_say(step, p1, "row 1");
    raw_say(step, p1, "row 2");
    raw_say(step, p1, "row 3");
    raw_say(step, p1, "row 4");
    raw_say(step, p1, "row 5");
    REQUIRE(max_id(db) == 5);
    int p2 = hello(port, 2);
    REQUIRE(tcp_wait_line(p2, "CHAT 5 row 5", WAIT_MS));
    int p3 = hello(port, 5);
    int p4 = hello(port, 0);
    REQUIRE(tcp_wait_line(p4, "CHAT 5 row 5", WAIT_MS));
    raw_say(step, p1, "row 6");
    REQUIRE(tcp_wait_line(p2, "CHAT 6 row 6", WAIT_MS));
    REQUIRE(tcp_wait_line(p3, "CHAT 6 row 6", WAIT_MS));
    REQUIRE(tcp_wait_line(p4, "CHAT 6 row 6", WAIT_MS));
    CHECK(strcmp(after_welcome(p2), "CHAT 3 row 3\nCHAT 4 row 4\nCHAT 5 row 5\nCHAT 6 row 6\n") == 0);
    CHECK(strcmp(after_welcome(p3), "CHAT 6 row 6\n") == 0);
    db_check_lines("HELLO 0", after_welcome(p4), db, 0, 6, 1);
}

/* 20000 rows, far more than MAX_OUTPUT: a peer that says HELLO 0 and
 * reads slowly gets them all, streamed (never "output buffer full"), and
 * the server serves others meanwhile. */
static void replay_streams(int step) {
    const char *db = tmppath("chat.db");
    db_make(db, 20000, step == 4, row_250);
    struct proc *s = server_start(step, db, NULL);
    int port = proc_port(s);
    int p1 = tcp_connect(port);
    tcp_send_str(p1, "HELLO 0\n");
    REQUIRE(tcp_wait_line(p1, "WELCOME ", WAIT_MS)); /* reads one chunk, then nothing for a while */
    int p2 = hello(port, 20000);
    raw_say(step, p2, "live during replay");
    static const char live[] = "CHAT 20001 live during replay\n"; /* then ACK (step 4) */
    CHECK(strncmp(after_welcome(p2), live, sizeof live - 1) == 0);
    CHECK_EQ_INT(proc_err_count(s, "output buffer full"), 0);
    CHECK(tcp_wait_line(p1, "CHAT 20001 ", 20000));
    db_check_lines("HELLO 0 after 20000 rows", after_welcome(p1), db, 0, 20001, 1);
    CHECK_EQ_INT(proc_err_count(s, "output buffer full"), 0);
    CHECK_EQ_INT(proc_err_count(s, "disconnected"), 0);
}

/* ---------------------------------------------------------------------
 * Bad input
 * ------------------------------------------------------------------- */

static void overlong_no_newline(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct snapshot snap = seed(step, port, db);
    int fd = hello(port, 0);
    size_t n = 3 * MAX_LINE;
    char *big = over_long(n, "MSG ");
    tcp_send(fd, big, n);
    CHECK(tcp_wait_line(fd, "ERR line too long", WAIT_MS));
    CHECK(tcp_wait_closed(fd, WAIT_MS));
    free(big);
    check_still_serves(step, port, db, &snap, 1);
}

static void overlong_newline_later(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct snapshot snap = seed(step, port, db);
    int fd = hello(port, 0);
    /* MAX_LINE + 1 bytes with the newline: one too many */
    size_t n = MAX_LINE + 1;
    char *big = over_long(n, "MSG "), *after = msg_line(step, ++next_n, "after the long line");
    big[n - 1] = '\n';
    tcp_send(fd, big, n);
    tcp_send_str(fd, after);
    CHECK(tcp_wait_line(fd, "ERR line too long", WAIT_MS));
    CHECK(tcp_wait_closed(fd, WAIT_MS));
    CHECK_EQ_INT(db_count(db, "content LIKE '%after the long line%'"), 0);
    free(big);
    free(after);
    check_still_serves(step, port, db, &snap, 1);
}

/* The longest legal line (MAX_LINE bytes with its newline) carrying a
 * chat text as long as the line allows. Its CHAT line ("CHAT <id> <text>")
 * is longer than the MSG line whenever the id has more digits than the
 * MSG line's ack id and offset: here ids have 7 digits (a chat with a
 * million messages). Such a text can never be delivered, so the server
 * must refuse it (it is also longer than MAX_TEXT), and go on serving. */
static void line_at_limit(int step) {
    const char *db = tmppath("chat.db");
    db_make(db, 0, 0, NULL);
    db_exec(db, "INSERT INTO messages VALUES (1000000, NULL, 'the millionth')");
    struct proc *s = server_start(step, db, NULL);
    int port = proc_port(s);
    struct snapshot snap = seed(step, port, db);
    int fd = hello(port, 0);
    const char *head = step <= 2 ? "MSG " : step == 3 ? "MSG 1 " : "MSG 1 a ";
    size_t hl = strlen(head), tl = MAX_LINE - hl - 1;
    char *line = xmalloc(MAX_LINE + 1);
    memcpy(line, head, hl);
    memset(line + hl, 'x', tl);
    line[MAX_LINE - 1] = '\n';
    line[MAX_LINE] = '\0';
    REQUIRE(tl > MAX_TEXT);
    tcp_send_str(fd, line);
    CHECK(tcp_wait_line(fd, step <= 2 ? "ERR message too long" : "REJECT 1 message too long", WAIT_MS));
    char where[64];
    snprintf(where, sizeof where, "length(content) > %d", MAX_TEXT);
    CHECK_EQ_INT(db_count(db, where), 0);
    free(line);
    check_still_serves(step, port, db, &snap, 0);
}

static void nul_byte(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct snapshot snap = seed(step, port, db);
    int fd = hello(port, 0);
    char *line = msg_line(step, ++next_n, "nul?byte");
    size_t len = strlen(line);
    *strchr(line, '?') = '\0';
    tcp_send(fd, line, len);
    CHECK(tcp_wait_line(fd, "ERR ", WAIT_MS));
    CHECK(tcp_wait_closed(fd, WAIT_MS));
    CHECK_EQ_INT(db_count(db, "content LIKE 'nul%'"), 0);
    free(line);
    check_still_serves(step, port, db, &snap, 1);
}

static void partial_then_close(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct snapshot snap = seed(step, port, db);
    int fd = hello(port, 0);
    char *line = msg_line(step, ++next_n, "partial line");
    tcp_send(fd, line, strlen(line) - 1); /* no newline */
    shutdown(fd, SHUT_WR);
    CHECK(tcp_wait_closed(fd, WAIT_MS)); /* the server saw the end and closed */
    CHECK_EQ_INT(db_count(db, "content LIKE '%partial%'"), 0);
    free(line);
    check_still_serves(step, port, db, &snap, 1);
}

static void unknown_verb(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct snapshot snap = seed(step, port, db);
    int fd = tcp_connect(port);
    tcp_send_str(fd, "NOPE 1 2 3\n");
    CHECK(tcp_wait_line(fd, "ERR unknown verb", WAIT_MS));
    tcp_send_str(fd, "hello 0\n"); /* verbs are case-sensitive */
    CHECK(tcp_wait_line(fd, "ERR unknown verb", WAIT_MS));
    tcp_send_str(fd, "HELLO 0\n");
    CHECK(tcp_wait_line(fd, "WELCOME ", WAIT_MS));
    tcp_send_str(fd, "CHAT 1 not from a client\n");
    CHECK(tcp_wait_line(fd, "ERR unknown verb", WAIT_MS));
    CHECK_EQ_INT(max_id(db), snap.max_id);
    raw_say(step, fd, "still open after unknown verbs");
    CHECK_EQ_INT(db_count(db, "content = 'still open after unknown verbs'"), 1);
    tcp_close(fd);
    struct snapshot now = snapshot(db);
    check_still_serves(step, port, db, &now, 1);
}

static void chat_before_hello(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct snapshot snap = seed(step, port, db);
    int fd = tcp_connect(port);
    char *line = msg_line(step, ++next_n, "too early");
    tcp_send_str(fd, line);
    CHECK(tcp_wait_line(fd, "ERR", WAIT_MS));
    tcp_send_str(fd, "HELLO 0\n");
    CHECK(tcp_wait_line(fd, "WELCOME ", WAIT_MS));
    CHECK_EQ_INT(db_count(db, "content LIKE '%too early%'"), 0);
    free(line);
    tcp_close(fd);
    check_still_serves(step, port, db, &snap, 1);
}

static void bad_offsets(int step) {
    static const char *const bad[] = {
        "HELLO -1\n",
        "HELLO abc\n",
        "HELLO 99999999999999999999\n",
        "HELLO \n",
        "HELLO 1 2\n",
        "HELLO\n",
        "HELLO 9223372036854775808\n",
        "HELLO +5\n",
        "HELLO 0x10\n",
        "HELLO 1.5\n",
        "HELLO  1\n",
    };
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct snapshot snap = seed(step, port, db);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = tcp_connect(port);
        tcp_send_str(fd, bad[i]);
        if (!tcp_wait_line(fd, "ERR", WAIT_MS)) {
            test_fail(__FILE__, __LINE__, "no ERR for %.*s", (int)strlen(bad[i]) - 1, bad[i]);
        }
        CHECK(strstr(tcp_log(fd), "WELCOME") == NULL);
        tcp_send_str(fd, "HELLO 0\n"); /* the connection stays open */
        if (!tcp_wait_line(fd, "WELCOME ", WAIT_MS)) {
            test_fail(__FILE__, __LINE__, "no WELCOME after %.*s", (int)strlen(bad[i]) - 1, bad[i]);
        }
        tcp_close(fd);
    }
    /* the largest offset is past every id the database has issued: it
     * comes from another database, and the replay starts from the start */
    int fd = hello(port, 9223372036854775807LL);
    CHECK(tcp_wait_line(fd, "CHAT 1 ", WAIT_MS));
    tcp_close(fd);
    check_still_serves(step, port, db, &snap, 1);
}

/* A peer that connects and says nothing is pinged, then dropped when the
 * PONG is overdue; a normal client is served all the while. */
static void silent_peer(int step) {
    struct proc *s = server_start(step, NULL, FAST_PING);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct snapshot snap = seed(step, port, db);
    struct proc *c = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(c) == 1 && proc_out_lines(c) == 2, WAIT_MS);
    long long t0 = now_ms();
    int fd = tcp_connect(port);
    CHECK(tcp_wait_line(fd, "PING", 2000));
    proc_write(c, "while someone is silent\n");
    WAIT_UNTIL(proc_out_count(c, "3 while someone is silent\n") == 1, WAIT_MS);
    CHECK(tcp_wait_closed(fd, 3000));
    long long elapsed = now_ms() - t0;
    CHECK(elapsed >= 380 && elapsed <= 2500);
    CHECK(strcmp(tcp_log(fd), "PING\n") == 0);
    CHECK_EQ_INT(proc_err_count(c, "disconnected"), 0);
    CHECK_EQ_INT(db_count(db, "content = 'while someone is silent'"), 1);
    struct snapshot now = snapshot(db);
    CHECK(strncmp(now.rows, snap.rows, strlen(snap.rows)) == 0);
    check_still_serves(step, port, db, &now, 1);
}

/* A peer that says HELLO 0 and never reads while others chat: the server
 * drops it once MAX_OUTPUT is queued for it; the others get everything;
 * a fresh HELLO 0 catches up on every row (nothing lost). */
static void slow_reader(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct proc *recv = client_start(step, port, NULL), *send = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(recv) == 1 && proc_connected(send) == 1, WAIT_MS);
    int slow = hello(port, 0);
    struct line_counter rc = {0, 0}, sc = {0, 0};
    long sent = chat_until_cut(s, send, recv, &sc, &rc, "slow", 0);
    WAIT_UNTIL(proc_count_lines(recv, &rc) >= sent && proc_count_lines(send, &sc) >= sent, 10000);
    WAIT_UNTIL(db_count(db, "1") >= sent, WAIT_MS);
    CHECK_EQ_INT(db_count(db, "1"), sent);
    CHECK_EQ_INT(max_id(db), sent);
    db_check_lines("receiver's stdout", recv->out, db, 0, sent, 0);
    db_check_lines("sender's stdout", send->out, db, 0, sent, 0);
    CHECK_EQ_INT(proc_err_count(s, "output buffer full"), 1);
    CHECK_EQ_INT(proc_err_count(recv, "disconnected"), 0);
    CHECK_EQ_INT(proc_err_count(send, "disconnected"), 0);
    CHECK(tcp_wait_closed(slow, 10000)); /* it was cut off */
    int fresh = hello(port, 0);
    char needle[32];
    snprintf(needle, sizeof needle, "CHAT %ld ", sent);
    CHECK(tcp_wait_line(fresh, needle, 10000));
    db_check_lines("a fresh HELLO 0", after_welcome(fresh), db, 0, sent, 1);
    fprintf(stderr, "note: slow peer dropped after %ld messages of %d bytes\n", sent, CUT_TEXT_LEN);
}

/* The server freezes (SIGSTOP) without closing: the client notices by
 * heartbeat, keeps trying, and is back once the server runs again. */
static void server_frozen(int step) {
    struct proc *s = server_start(step, NULL, FAST_PING);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    const char *cx[] = {"--timeout", "300", NULL};
    struct proc *c = client_start(step, port, cx);
    WAIT_UNTIL(proc_connected(c) == 1, WAIT_MS);
    proc_write(c, "before the freeze\n");
    WAIT_UNTIL(proc_out_lines(c) == 1, WAIT_MS);
    proc_signal(s, SIGSTOP);
    long long t0 = now_ms();
    WAIT_UNTIL(proc_err_count(c, "disconnected") >= 1, 3000);
    CHECK(now_ms() - t0 <= 1500);
    CHECK_EQ_INT(proc_err_count(c, "disconnected (ping timeout)"), 1);
    /* it keeps trying: a second attempt (the handshake gets no WELCOME) */
    WAIT_UNTIL(proc_err_count(c, "reconnecting in") >= 2, 3000);
    CHECK_EQ_INT(proc_connected(c), 1);
    proc_signal(s, SIGCONT);
    WAIT_UNTIL(proc_connected(c) == 2, WAIT_MS);
    proc_write(c, "after the thaw\n");
    WAIT_UNTIL(db_count(db, "content = 'after the thaw'") == 1, WAIT_MS);
    WAIT_UNTIL(proc_out_count(c, "2 after the thaw\n") == 1, WAIT_MS);
    CHECK(strcmp(c->out, "1 before the freeze\n2 after the thaw\n") == 0);
}

/* MAX_CLIENTS connections are served; one more gets "ERR server full"
 * and is closed; once some leave, a normal client gets in. */
static void server_full(void) {
    struct rlimit rl;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 1100) {
        fprintf(stderr, "SKIP: RLIMIT_NOFILE hard limit %ld < 1100: cannot open %d connections\n",
                (long)rl.rlim_max, MAX_CLIENTS + 1);
        CHECK(rl.rlim_max < 1100);
        return;
    }
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 4096 : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        rl.rlim_cur = 4096;
        REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    struct proc *s = server_start(1, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct snapshot snap = seed(1, port, db);
    static int fds[MAX_CLIENTS];
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < MAX_CLIENTS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fds[i] >= 0);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof sa) != 0) {
            test_fail(__FILE__, __LINE__, "connection %d: %s", i + 1, strerror(errno));
            test_abort();
        }
    }
    /* the seed's connection, then every one of ours */
    WAIT_UNTIL(proc_err_count(s, " connected\n") == 1 + MAX_CLIENTS, 10000);
    CHECK_EQ_INT(proc_err_count(s, "refused"), 0);
    int extra = tcp_connect(port);
    CHECK(tcp_wait_line(extra, "ERR server full", WAIT_MS));
    CHECK(tcp_wait_closed(extra, WAIT_MS));
    CHECK_EQ_INT(proc_err_count(s, "refused a connection: too many clients"), 1);
    tcp_close(extra);
    for (int i = 0; i < 10; i++) {
        close(fds[i]);
        fds[i] = -1;
    }
    check_still_serves(1, port, db, &snap, 1);
    for (int i = 10; i < MAX_CLIENTS; i++) {
        close(fds[i]);
    }
}

/* ---------------------------------------------------------------------
 * The client
 * ------------------------------------------------------------------- */

/* Control bytes reach the terminal escaped, never raw; the db keeps the
 * text as sent. */
static void display_escapes(int step) {
    static const char text[] = "esc\x1b[2J"
                               "bell\x07"
                               "del\x7f"
                               "tab\t"
                               "ctl\x01"
                               "back\\slash caf\xc3\xa9 csi\xc2\x9b"
                               "end";
    static const char shown[] = "1 esc\\x1B[2Jbell\\x07del\\x7Ftab\\x09ctl\\x01back\\\\slash caf\xc3\xa9"
                                " csi\\xC2\\x9Bend\n";
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    int port = proc_port(s);
    struct proc *c = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(c) == 1, WAIT_MS);
    int fd = hello(port, 0);
    raw_say(step, fd, text);
    WAIT_UNTIL(proc_out_lines(c) == 1, WAIT_MS);
    if (strcmp(c->out, shown) != 0) {
        test_fail(__FILE__, __LINE__, "printed \"%s\", expected \"%s\"", c->out, shown);
    }
    for (size_t i = 0; i < c->out_len; i++) {
        unsigned char ch = (unsigned char)c->out[i];
        if ((ch < 0x20 && ch != '\n') || ch == 0x7f) {
            test_fail(__FILE__, __LINE__, "raw control byte 0x%02X printed at %zu", ch, i);
        }
    }
    CHECK_EQ_INT(db_count(db, "instr(content, char(27)) > 0 AND instr(content, char(7)) > 0"
                              " AND instr(content, char(155)) > 0"),
                 1);
}

/* stdin with several lines, then EOF: all sent, all stored, exit 0. */
static void client_eof(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db");
    struct proc *c = client_start(step, proc_port(s), NULL);
    if (step == 1) {
        WAIT_UNTIL(proc_connected(c) == 1, WAIT_MS); /* step 1 drops what is typed before */
    }
    proc_write(c, "eof one\neof two\n\neof three\r\neof four\neof five");
    proc_close_stdin(c);
    CHECK_EQ_INT(proc_wait_exit(c, WAIT_MS), 0);
    char *rows = db_dump(db, 100);
    const char *expect = step < 4 ? "1|NULL|eof one\n2|NULL|eof two\n3|NULL|eof three\n4|NULL|eof four\n"
                                    "5|NULL|eof five\n"
                                  : NULL;
    if (expect != NULL) {
        CHECK(strcmp(rows, expect) == 0);
    } else {
        CHECK_EQ_INT(db_count(db, "1"), 5);
        CHECK_EQ_INT(db_count(db, "id = 1 AND content = 'eof one'"), 1);
        CHECK_EQ_INT(db_count(db, "id = 3 AND content = 'eof three'"), 1);
        CHECK_EQ_INT(db_count(db, "id = 5 AND content = 'eof five'"), 1);
    }
    CHECK(strcmp(c->out, "1 eof one\n2 eof two\n3 eof three\n4 eof four\n5 eof five\n") == 0);
    free(rows);
}

/* A stdin far larger than the send buffer (1000 messages): the client
 * must hold the rest back, not overflow its queue. The lines come from a
 * file, as with "client < file", so the client reads as fast as it can. */
static void client_big_stdin(int step) {
    enum { LINES = 20000 };
    struct proc *s = server_start(step, NULL, NULL);
    const char *db = tmppath("chat.db"), *input = tmppath("input.txt");
    FILE *f = fopen(input, "w");
    REQUIRE(f != NULL);
    for (int i = 1; i <= LINES; i++) {
        fprintf(f, "big-%05d\n", i);
    }
    REQUIRE(fclose(f) == 0);
    char port[16];
    snprintf(port, sizeof port, "%d", proc_port(s));
    const char *argv[] = {
        "/bin/sh", "-c", "exec \"$0\" --port \"$1\" < \"$2\"", step_bin(step, "client"), port, input, NULL};
    struct proc *c = proc_start("big-stdin", argv);
    /* 20000 round trips: 4 s idle, over 23 s with the sanitizers on a
     * loaded machine; bounded by the test's limit, not by a guess */
    CHECK_EQ_INT(proc_wait_exit(c, test_ms_left()), 0);
    CHECK_EQ_INT(db_count(db, "1"), LINES);
    CHECK_EQ_INT(db_scalar(db, "SELECT COUNT(DISTINCT content) FROM messages"), LINES);
    /* In the order typed: the text of row i is big-<i>. */
    CHECK_EQ_INT(db_count(db, "content != printf('big-%05d', id)"), 0);
    CHECK_EQ_INT(proc_err_count(c, "not sent"), 0);
}

/* Non-blocking: appends what is there; 1 once buf holds a newline,
 * 2 at EOF. */
static int fake_read(int fd, char *buf, size_t cap) {
    size_t len = strlen(buf);
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n > 0) {
        buf[len + (size_t)n] = '\0';
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        return 2;
    }
    return strchr(buf, '\n') != NULL;
}

/* A server that welcomes the client and then says nothing: the client
 * drops it after ping-interval + ping-timeout, and reconnects. */
static void client_heartbeat(int step) {
    int port, lfd = tcp_listen(&port);
    struct proc *c = client_start(step, port, NULL);
    int fd = tcp_accept(lfd, WAIT_MS);
    char buf[256] = "";
    WAIT_UNTIL(fake_read(fd, buf, sizeof buf) != 0, WAIT_MS);
    CHECK(strcmp(buf, "HELLO 0\n") == 0);
    static const char welcome[] = "WELCOME fakefakefakefakefake 200 200 0\n";
    REQUIRE(write(fd, welcome, sizeof welcome - 1) == (ssize_t)(sizeof welcome - 1));
    long long t0 = now_ms();
    WAIT_UNTIL(proc_connected(c) == 1, WAIT_MS);
    WAIT_UNTIL(proc_err_count(c, "disconnected") == 1, 3000);
    long long elapsed = now_ms() - t0;
    if (elapsed < 390 || elapsed > 1500) {
        test_fail(__FILE__, __LINE__, "disconnected after %lld ms, expected 400..1500", elapsed);
    }
    CHECK_EQ_INT(proc_err_count(c, "disconnected (ping timeout)"), 1);
    CHECK(proc_err_count(c, "connected as fakefakefakefakefake") == 1);
    WAIT_UNTIL(proc_err_count(c, "reconnecting in") >= 1, WAIT_MS);
    buf[0] = '\0';
    WAIT_UNTIL(fake_read(fd, buf, sizeof buf) == 2, WAIT_MS); /* it closed the old connection */
    int fd2 = tcp_accept(lfd, WAIT_MS);
    buf[0] = '\0';
    WAIT_UNTIL(fake_read(fd2, buf, sizeof buf) != 0, WAIT_MS);
    CHECK(strcmp(buf, "HELLO 0\n") == 0);
    close(fd);
    close(fd2);
    close(lfd);
}

/* ---------------------------------------------------------------------
 * The server's identity and command line
 * ------------------------------------------------------------------- */

static int valid_id(const char *id, size_t n) {
    if (n != 20) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '_' || ch == '-';
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

static void socket_ids(int step) {
    const char *px[] = {"--ping-interval", "1234", "--ping-timeout", "4321", NULL};
    struct proc *s = server_start(step, NULL, px);
    int port = proc_port(s);
    int a = hello(port, 0), b = hello(port, 0);
    char ida[64] = "", idb[64] = "", rest[64];
    CHECK(sscanf(tcp_log(a), "WELCOME %63s %63[^\n]", ida, rest) == 2 && strcmp(rest, "1234 4321 0") == 0);
    CHECK(sscanf(tcp_log(b), "WELCOME %63s %63[^\n]", idb, rest) == 2 && strcmp(rest, "1234 4321 0") == 0);
    if (!valid_id(ida, strlen(ida)) || !valid_id(idb, strlen(idb))) {
        test_fail(__FILE__, __LINE__, "ids \"%s\" and \"%s\": expected 20 chars of [A-Za-z0-9_-]", ida, idb);
    }
    CHECK(strcmp(ida, idb) != 0);
    CHECK_EQ_INT(proc_err_count(s, ida), 1); /* "server: <id> connected" */
    CHECK_EQ_INT(proc_err_count(s, idb), 1);
    tcp_send_str(a, "HELLO 0\n"); /* once is enough */
    CHECK(tcp_wait_line(a, "ERR HELLO already received", WAIT_MS));
}

/* Port taken, database that cannot be opened: exit 1, with a reason. */
static void cli_errors(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", proc_port(s));
    const char *taken[] = {step_bin(step, "server"), "--port", port_s, "--db", tmppath("other.db"), NULL};
    struct proc *p = proc_start("server-port-taken", taken);
    CHECK_EQ_INT(proc_wait_exit(p, WAIT_MS), 1);
    CHECK_EQ_INT(proc_err_count(p, "cannot listen"), 1);
    CHECK_EQ_INT(proc_port(p), 0);
    const char *nodb[] = {step_bin(step, "server"),       "--port", "0", "--db",
                          tmppath("no/such/dir/chat.db"), NULL};
    struct proc *q = proc_start("server-bad-db", nodb);
    CHECK_EQ_INT(proc_wait_exit(q, WAIT_MS), 1);
    CHECK_EQ_INT(proc_err_count(q, "cannot open the database"), 1);
    CHECK_EQ_INT(proc_port(q), 0);
    int fd = hello(proc_port(s), 0); /* the first server is unharmed */
    tcp_close(fd);
}

/* --port 0 picks a free port (two servers, two ports); SIGTERM and
 * SIGINT end a server with status 0. */
static void cli_port0_signals(int step) {
    struct proc *s1 = server_start(step, tmppath("a.db"), NULL);
    struct proc *s2 = server_start(step, tmppath("b.db"), NULL);
    int p1 = proc_port(s1), p2 = proc_port(s2);
    CHECK(p1 > 0 && p2 > 0 && p1 != p2);
    CHECK_EQ_INT(proc_err_count(s1, "listening on 127.0.0.1:"), 1);
    int a = hello(p1, 0), b = hello(p2, 0);
    raw_say(step, a, "before sigterm");
    proc_signal(s1, SIGTERM);
    CHECK_EQ_INT(proc_wait_exit(s1, WAIT_MS), 0);
    CHECK(tcp_wait_closed(a, WAIT_MS));
    proc_signal(s2, SIGINT);
    CHECK_EQ_INT(proc_wait_exit(s2, WAIT_MS), 0);
    CHECK(tcp_wait_closed(b, WAIT_MS));
    CHECK_EQ_INT(db_count(tmppath("a.db"), "content = 'before sigterm'"), 1);
}

/* ---------------------------------------------------------------------
 * The table: one wrapper per step
 * ------------------------------------------------------------------- */

FOR_ALL(chat_basics)
FOR_ALL(catchup_client_restart)
FOR_ALL(catchup_server_restart)
FOR_ALL(hello_offset)
FOR_1_4(replay_streams)
FOR_ALL(overlong_no_newline)
FOR_ALL(overlong_newline_later)
FOR_ALL(line_at_limit)
FOR_ALL(nul_byte)
FOR_ALL(partial_then_close)
FOR_ALL(unknown_verb)
FOR_ALL(chat_before_hello)
FOR_ALL(bad_offsets)
FOR_ALL(silent_peer)
FOR_1_4(slow_reader)
FOR_ALL(server_frozen)
FOR_ALL(display_escapes)
FOR_ALL(client_eof)
FOR_STEP(client_big_stdin, 2)
FOR_STEP(client_big_stdin, 3)
FOR_STEP(client_big_stdin, 4)
FOR_ALL(client_heartbeat)
FOR_ALL(socket_ids)
FOR_ALL(cli_errors)
FOR_ALL(cli_port0_signals)

#define T(n, what, fn)                                                                                       \
    { "step" #n " " what, fn##_##n }

const struct test basics_tests[] = {
    /* slow ones first, so that they overlap with the quick ones */
    T_1_4("server: a peer that never reads is dropped, nobody loses anything", slow_reader),
    {"step1 server: one connection more than MAX_CLIENTS gets ERR server full", server_full},
    T_1_4("server: replay of 20000 rows streams, in order, ids contiguous", replay_streams),
    T_ALL("client: a line typed in one client appears on both, stored", chat_basics),
    T_ALL("client: a restarted client prints stored rows once, in order, before live ones",
          catchup_client_restart),
    T_ALL("client: after a server restart the client gets the missed rows once, in order",
          catchup_server_restart),
    T_ALL("server: HELLO <offset> replays exactly the rows above it, in order", hello_offset),
    T_ALL("server: over-long line without newline gets ERR and is closed", overlong_no_newline),
    T_ALL("server: over-long line with a newline later gets ERR and is closed", overlong_newline_later),
    T_ALL("server: a text too long for a CHAT line is refused, others still served", line_at_limit),
    T_ALL("server: a line with a NUL byte gets ERR and is closed", nul_byte),
    T_ALL("server: bytes without newline then close store nothing", partial_then_close),
    T_ALL("server: unknown verb gets ERR, the connection stays open", unknown_verb),
    T_ALL("server: a chat line before HELLO gets ERR, nothing stored", chat_before_hello),
    T_ALL("server: malformed HELLO offsets get ERR each time", bad_offsets),
    T_ALL("server: a silent peer is pinged, then dropped; others are served", silent_peer),
    T_ALL("client: a frozen server is noticed by heartbeat, and rejoined", server_frozen),
    T_ALL("client: control bytes are printed escaped, never raw", display_escapes),
    T_ALL("client: stdin lines then EOF: all sent and stored, exit 0", client_eof),
    T(2, "client: a 20,000-line stdin is sent whole, in order (the send buffer holds back)",
      client_big_stdin),
    T(3, "client: a 20,000-line stdin is sent whole, in order (the queue holds back)", client_big_stdin),
    T(4, "client: a 20,000-line stdin is sent whole, in order (the queue holds back)", client_big_stdin),
    T_ALL("client: a silent server is dropped after ping interval + timeout", client_heartbeat),
    T_ALL("server: two connections get different 20-char socket ids", socket_ids),
    T_ALL("server CLI: port taken or db unusable: exit 1 with a reason", cli_errors),
    T_ALL("server CLI: --port 0 picks a free port, SIGTERM/SIGINT exit 0", cli_port0_signals),
};
const int basics_count = sizeof basics_tests / sizeof basics_tests[0];
