/* test_robust.c -- what a classroom does to it: CRLF files, a message the
 * server rejects, a replaced database, an unread log, a stop, a full
 * server, a client that exits, text that reads differently than stored.
 *
 * Each test is the habit of a student (or of a script they wrote), run
 * against the real programs, and asserts what the user must see: nothing
 * lost or duplicated, nothing stuck, and the reason said out loud. */
#include "harness.h"
#include "limits.h"
#include "suites.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_MS 8000 /* for what normally takes milliseconds */

/* A row of 1000 bytes. */
static void row_1000(long i, char *buf, size_t cap) {
    (void)i;
    (void)cap;
    memset(buf, 'r', 1000);
    buf[1000] = '\0';
}

/* A raw peer whose receive buffer is small: the server's output to it
 * backs up after a few kilobytes, as over a slow link. */
static int small_window_connect(int port) {
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), size = 4096;
    REQUIRE(fd >= 0);
    REQUIRE(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) == 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    tcp_adopt(fd);
    return fd;
}

/* ---------------------------------------------------------------------
 * A CRLF file, and a message the server rejects for good
 * ------------------------------------------------------------------- */

/* A file saved on Windows, once through a second CRLF conversion: its
 * empty lines are "\r\n" or "\r\r\n", its other lines end in "\r\r\n".
 * Every step sends the three texts as typed, without a CR, and steps 3-4
 * do not stall on an empty message that the server could never store. */
static void crlf_file(int step) {
    const char *db = tmppath("chat.db");
    struct proc *s = server_start(step, db, NULL);
    const char *args[] = {"--ack-timeout", "300", "--retries", "inf", NULL};
    struct proc *c = client_start(step, proc_port(s), step >= 3 ? args : NULL);
    WAIT_UNTIL(proc_connected(c) == 1, WAIT_MS);
    proc_write(c, "one\r\n\r\n\r\r\ntwo\r\r\n\r\nthree\r\n");
    proc_close_stdin(c);
    CHECK_EQ_INT(proc_wait_exit(c, WAIT_MS), 0);
    CHECK_EQ_INT(db_count(db, "1"), 3);
    CHECK_EQ_INT(db_count(db, "content IN ('one', 'two', 'three')"), 3);
    CHECK_EQ_INT(db_count(db, "instr(content, char(13)) > 0"), 0);
    CHECK_EQ_INT(proc_err_count(c, "will send again"), 0);
}
FOR_ALL(crlf_file)

/* A fake server on lfd takes the client c's connection, answers its
 * HELLO 0 with a WELCOME, and waits until c says it is connected. */
static int fake_welcome(int lfd, struct proc *c) {
    int fd = tcp_accept(lfd, WAIT_MS);
    tcp_adopt(fd);
    REQUIRE(tcp_wait_line(fd, "HELLO 0", WAIT_MS));
    tcp_send_str(fd, "WELCOME abcdefghijklmnopqrst 25000 20000 0\n");
    WAIT_UNTIL(proc_connected(c) == 1, WAIT_MS);
    return fd;
}

/* The server rejects a message for good (REJECT <ack-id> <reason>): a
 * server with a smaller limit than ours, say. The client gives that one
 * message up at once, loudly, and sends the next: no retry, no stall. */
static void rejected_message(int step) {
    int port, lfd = tcp_listen(&port);
    const char *args[] = {"--ack-timeout", "5000", "--retries", "inf", NULL};
    struct proc *c = client_start(step, port, args);
    int fd = fake_welcome(lfd, c);
    proc_write(c, "too big for you\nsmall\n");
    REQUIRE(tcp_wait_line(fd, "MSG 1 ", WAIT_MS));
    tcp_send_str(fd, "REJECT 1 message too long\n");
    /* The next message comes at once, long before the ack timeout. */
    long long t0 = now_ms();
    REQUIRE(tcp_wait_line(fd, "MSG 2 ", WAIT_MS));
    CHECK(now_ms() - t0 < 2500);
    CHECK(strstr(tcp_log(fd), "small") != NULL);
    tcp_send_str(fd, "ACK 2\n");
    proc_close_stdin(c);
    REQUIRE(tcp_wait_closed(fd, WAIT_MS)); /* it half-closed: nothing left to send */
    tcp_close(fd);
    CHECK_EQ_INT(proc_wait_exit(c, WAIT_MS), 1); /* a message was given up */
    CHECK_EQ_INT(proc_err_count(c, "rejected a message: message too long"), 1);
    CHECK_EQ_INT(proc_err_count(c, "gave up (rejected): "), 1);
    CHECK_EQ_INT(proc_err_count(c, "too big for you"), 1); /* given up once, never resent */
    CHECK_EQ_INT(proc_err_count(c, "will send again"), 0);
    CHECK_EQ_INT(proc_err_count(c, "1 message(s) given up"), 1);
    close(lfd);
}
FOR_3_4(rejected_message)

/* ---------------------------------------------------------------------
 * The database is replaced under connected clients
 * ------------------------------------------------------------------- */

/* A student deletes chat.db and restarts the server. A client that saw
 * ids up to 3 in the old database reconnects: the new server's last id
 * is below its offset, so it says so on stderr and catches up from the
 * start, instead of ignoring every message until the ids pass 3. */
static void replaced_database(int step) {
    const char *db = tmppath("chat.db");
    struct proc *s = server_start(step, db, NULL);
    int port = proc_port(s);
    struct proc *c = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(c) == 1, WAIT_MS);
    proc_write(c, "old one\nold two\nold three\n");
    WAIT_UNTIL(proc_out_count(c, "3 old three\n") == 1, WAIT_MS);

    proc_kill(s);
    WAIT_UNTIL(proc_err_count(c, "disconnected") >= 1, WAIT_MS);
    unlink(db);
    unlink(tmppath("chat.db-wal"));
    unlink(tmppath("chat.db-shm"));
    s = server_restart(step, db, port);
    struct proc *other = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(other) == 1, WAIT_MS);
    proc_write(other, "new one\n");
    WAIT_UNTIL(proc_out_count(other, "1 new one\n") == 1, WAIT_MS);

    WAIT_UNTIL(proc_out_count(c, "1 new one\n") == 1, WAIT_MS);
    CHECK_EQ_INT(proc_err_count(c, "a new database, catching up from the start"), 1);
    proc_write(c, "after\n");
    WAIT_UNTIL(proc_out_count(other, "2 after\n") == 1, WAIT_MS);
    WAIT_UNTIL(proc_out_count(c, "2 after\n") == 1, WAIT_MS);
    CHECK_EQ_INT(proc_err_count(s, ": replaying from the start"), 1);
}
FOR_ALL(replaced_database)

/* ---------------------------------------------------------------------
 * A server whose stderr nobody reads
 * ------------------------------------------------------------------- */

/* Connect without blocking, wait up to ms for the connection, close it.
 * 1 if it was established. */
static int connect_and_close(int port, int ms) {
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok = 0;
    REQUIRE(fd >= 0);
    REQUIRE(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        ok = 1;
    } else if (errno == EINPROGRESS) {
        fd_set wr;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        int soerr = 1;
        socklen_t len = sizeof soerr;
        FD_ZERO(&wr);
        FD_SET(fd, &wr);
        ok = select(fd + 1, NULL, &wr, NULL, &tv) == 1 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0;
    }
    close(fd);
    return ok;
}

/* Read what the fifo holds now (non-blocking) into buf, appending. */
static void read_fifo(int fd, char *buf, size_t cap, size_t *len) {
    ssize_t n;
    while (*len + 1 < cap && (n = read(fd, buf + *len, cap - 1 - *len)) > 0) {
        *len += (size_t)n;
    }
    buf[*len] = '\0';
}

/* `server 2>&1 | less` and a student who never scrolls: the server's
 * stderr is a pipe that nobody reads. A storm of connections, each
 * logging a line or two, fills that pipe many times over; the server must
 * go on serving (before, each log line blocked the whole loop), and once
 * the pipe is read again the log says how many lines it had to drop. */
static void unread_log(int step) {
    static const char script[] = "exec \"$0\" \"$@\" 2>\"$CHAT_LOG_FIFO\"";
    char *log = malloc(1 << 20);
    size_t len = 0;
    const char *fifo = tmppath("log.fifo"), *db = tmppath("chat.db");
    REQUIRE(log != NULL);
    REQUIRE(mkfifo(fifo, 0600) == 0);
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK); /* a reader that never reads */
    REQUIRE(rfd >= 0);
    REQUIRE(setenv("CHAT_LOG_FIFO", fifo, 1) == 0);
    struct proc *s = server_start_sh(step, script, db);
    int port = 0;
    /* Read the fifo only for the "listening on" line; from then on the
     * server's stderr is full and stays full. */
    long long end = now_ms() + WAIT_MS;
    while (port == 0 && now_ms() < end && !s->exited) {
        read_fifo(rfd, log, 1 << 20, &len);
        const char *at = strstr(log, "listening on ");
        const char *colon = at ? strchr(at + 13, ':') : NULL;
        if (colon != NULL && strchr(colon, '\n') != NULL) {
            port = atoi(colon + 1);
        }
        pump(10);
    }
    REQUIRE(port > 0);
    for (int i = 0; i < 3000; i++) {
        if (!connect_and_close(port, 2000)) {
            test_fail(__FILE__, __LINE__, "connection %d not accepted within 2 s: the server is stuck", i);
            test_abort();
        }
    }
    struct proc *c = client_start(step, port, NULL);
    WAIT_UNTIL(proc_connected(c) == 1, WAIT_MS);
    proc_write(c, "still serving\n");
    WAIT_UNTIL(proc_out_count(c, " still serving\n") == 1, WAIT_MS);
    CHECK_EQ_INT(db_count(db, "content = 'still serving'"), 1);

    /* Someone reads the pipe again: the log catches up and owns up. */
    len = 0;
    WAIT_UNTIL((read_fifo(rfd, log, 1 << 20, &len), strstr(log, "log lines dropped") != NULL), WAIT_MS);
    close(rfd);
    free(log);
}
FOR_ALL(unread_log)

/* ---------------------------------------------------------------------
 * Stopping the server with SIGTERM or Ctrl-C
 * ------------------------------------------------------------------- */

/* Acks that wait in the server's output when it is told to stop are sent
 * before it exits (before, they were lost, and step 3's clients stored
 * those messages a second time). The peer asks for 16 MB of history and
 * reads nothing, through a small window: the server's socket buffer fills
 * within milliseconds, and every ack queued after that waits in the
 * server. The messages go out over 2 s, so most of them come after. */
static void stop_sends_queued_acks(int step) {
    const char *db = tmppath("chat.db");
    enum { ROWS = 16000, MSGS = 100 }; /* 16 MB: more than any socket buffer here */
    db_make(db, ROWS, 0, row_1000);
    struct proc *s = server_start(step, db, NULL);
    int fd = small_window_connect(proc_port(s));
    tcp_send_str(fd, "HELLO 0\n");
    char line[128];
    for (int i = 1; i <= MSGS; i++) {
        if (step == 3) {
            snprintf(line, sizeof line, "MSG %d queued %d\n", i, i);
        } else {
            snprintf(line, sizeof line, "MSG %d off-%d queued %d\n", i, i, i);
        }
        tcp_send_str(fd, line);
        pump(20); /* pacing, not a wait for anything */
    }
    WAIT_UNTIL(db_count(db, "content LIKE 'queued %'") == MSGS, WAIT_MS);
    proc_signal(s, SIGTERM);
    snprintf(line, sizeof line, "ACK %d", MSGS);
    CHECK(tcp_wait_line(fd, line, 2 * WAIT_MS));
    int acks = 0;
    for (const char *p = tcp_log(fd); (p = strstr(p, "\nACK ")) != NULL; p++) {
        acks++;
    }
    CHECK_EQ_INT(acks, MSGS); /* one for every stored row */
    CHECK(tcp_wait_closed(fd, WAIT_MS));
    CHECK_EQ_INT(proc_wait_exit(s, WAIT_MS), 0);
    CHECK_EQ_INT(proc_err_count(s, "server: stopped"), 1);
}
FOR_3_4(stop_sends_queued_acks)

/* Ctrl-C on a client with messages not yet acked: it says which ones it
 * gives up, and its exit status says so too (before, it died silently). */
static void client_stop_says_what_is_lost(int step) {
    int port, lfd = tcp_listen(&port);
    struct proc *c = client_start(step, port, NULL);
    int fd = fake_welcome(lfd, c);
    proc_write(c, "first\nsecond\n");
    REQUIRE(tcp_wait_line(fd, "first", WAIT_MS)); /* in flight, never acked */
    proc_signal(c, SIGINT);
    CHECK_EQ_INT(proc_wait_exit(c, WAIT_MS), step >= 3 ? 1 : 0);
    CHECK_EQ_INT(proc_err_count(c, "client: stopped\n"), 1);
    if (step >= 3) {
        CHECK_EQ_INT(proc_err_count(c, "stopped, gave up: "), 2);
        CHECK_EQ_INT(proc_err_count(c, "2 message(s) given up"), 1);
    }
    tcp_close(fd);
    close(lfd);
}
FOR_3_4(client_stop_says_what_is_lost)

/* An idle server stops at once on SIGTERM and on SIGINT: the signal wakes
 * select() through the stop pipe, whenever it comes. Twenty tries, with a
 * client connected, so that the loop has timers of its own. */
static void stop_is_prompt(int step) {
    for (int i = 0; i < 20; i++) {
        struct proc *s = server_start(step, NULL, NULL);
        int fd = tcp_hello(proc_port(s), 0, WAIT_MS);
        long long t0 = now_ms();
        proc_signal(s, i % 3 == 0 ? SIGTERM : i % 3 == 1 ? SIGINT : SIGHUP);
        CHECK(tcp_wait_closed(fd, WAIT_MS));
        tcp_close(fd); /* as a client does: then the server need not linger */
        CHECK_EQ_INT(proc_wait_exit(s, WAIT_MS), 0);
        long long ms = now_ms() - t0;
        if (ms > 900) {
            test_fail(__FILE__, __LINE__, "try %d: the server took %lld ms to stop", i, ms);
        }
        unlink(tmppath("chat.db"));
    }
}
FOR_ALL(stop_is_prompt)

/* `nohup server &`: SIGHUP is ignored before the server starts, so that it
 * outlives its terminal; the server keeps it so (it stops on SIGHUP only
 * when SIGHUP would otherwise have killed it). */
static void nohup_is_kept(int step) {
    static const char script[] = "trap '' HUP; exec \"$0\" \"$@\"";
    struct proc *s = server_start_sh(step, script, NULL);
    WAIT_UNTIL(proc_port(s) > 0, WAIT_MS);
    proc_signal(s, SIGHUP);
    int fd = tcp_hello(proc_port(s), 0, WAIT_MS); /* still serving */
    tcp_close(fd);
    CHECK(!s->exited);
    CHECK_EQ_INT(proc_err_count(s, "stopping"), 0);
    proc_signal(s, SIGTERM);
    CHECK_EQ_INT(proc_wait_exit(s, WAIT_MS), 0);
}
FOR_STEP(nohup_is_kept, 1)
FOR_STEP(nohup_is_kept, 4)

/* ---------------------------------------------------------------------
 * A reader on a slow link catches up on long rows
 * ------------------------------------------------------------------- */

/* A page of long rows must not overflow a slow reader's output: at most
 * REPLAY_FILL bytes and one row wait for it (before, a page of 64 rows of
 * 4 KB on top of REPLAY_FILL pending bytes passed MAX_OUTPUT, and the
 * reader was cut off again and again while it caught up). Loopback's
 * megabyte socket buffers never take a page only in part, so the step's
 * own server code runs in tests/replay_bound.c, on a slow socketpair. */
/* Run tests/<name><step>, a program on the step's own server code
 * (step_server.h): it must exit 0 and print `want` once. */
static void run_step_program(const char *name, int step, const char *want) {
    char rel[32];
    snprintf(rel, sizeof rel, "tests/%s%d", name, step);
    const char *argv[] = {bin_path(rel), NULL};
    struct proc *p = proc_start(name, argv);
    CHECK_EQ_INT(proc_wait_exit(p, 3 * WAIT_MS), 0);
    CHECK_EQ_INT(proc_out_count(p, want), 1);
}

static void slow_reader_long_rows(int step) {
    run_step_program("replay_bound", step, " of 301 lines");
}
FOR_ALL(slow_reader_long_rows)

/* ---------------------------------------------------------------------
 * A full server says why, and every client prints it
 * ------------------------------------------------------------------- */

/* The server runs out of descriptors after a few clients: every further
 * connection gets "ERR server full". A real client, refused again and
 * again as it reconnects, prints the server's reason every time, never
 * "Connection reset by peer" (the reset that a close with its HELLO
 * unread used to send). */
static void full_server_says_why(int step) {
    static const char script[] = "ulimit -n 20 || exit 97; exec \"$0\" \"$@\"";
    struct proc *s = server_start_sh(step, script, NULL);
    WAIT_UNTIL(proc_port(s) > 0 || s->exited, WAIT_MS);
    REQUIRE(!s->exited);
    int port = proc_port(s);
    for (int n = 0; n < 20; n++) {
        int fd = tcp_connect(port);
        tcp_send_str(fd, "HELLO 0\n");
        REQUIRE(tcp_wait_line(fd, " ", WAIT_MS));
        if (strncmp(tcp_log(fd), "ERR server full", 15) == 0) {
            tcp_close(fd);
            break;
        }
    }
    struct proc *c = client_start(step, port, NULL);
    proc_write(c, "hello?\n");
    WAIT_UNTIL(proc_err_count(c, "server says: server full") >= 10, 3 * WAIT_MS);
    CHECK_EQ_INT(proc_err_count(c, "reset"), 0);
    CHECK_EQ_INT(proc_err_count(c, "connected as"), 0);
}
FOR_ALL(full_server_says_why)

/* ---------------------------------------------------------------------
 * A client that is done connects no more
 * ------------------------------------------------------------------- */

/* `echo hi | client`: one line, then the end of input. The client sends
 * it, leaves, and connects exactly once (before, steps 3-4 opened one
 * more connection on their way out: a reconnect timer from before the
 * last disconnect fired). A raw peer connects after it has exited: the
 * server accepts in order, so by the time the peer is welcomed, every
 * connection the client made has been accepted and logged. */
static void done_client_connects_once(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    int port = proc_port(s);
    for (int i = 0; i < 5; i++) {
        struct proc *c = client_start(step, port, NULL);
        proc_write(c, "just one line\n");
        proc_close_stdin(c);
        CHECK_EQ_INT(proc_wait_exit(c, WAIT_MS), 0);
        int fd = tcp_hello(port, 0, WAIT_MS);
        WAIT_UNTIL(proc_err_count(s, " connected") == 2 * (i + 1), WAIT_MS);
        tcp_close(fd);
    }
    pump(100); /* a late extra connection would be logged by now: none */
    CHECK_EQ_INT(proc_err_count(s, " connected"), 10);
}
FOR_ALL(done_client_connects_once)

/* `client < file` against a server that lags behind (here: stopped for
 * 2 s). The client sends everything, half-closes, and waits for the
 * server to finish. A PING that comes then must not be answered: the PONG
 * fails on the half-closed socket (EPIPE), and the client's close on that
 * reset the connection, which destroyed every line the server had not
 * read yet (before: about 1600 of 5000 stored). Steps 3-4 half-close only
 * once every message is acked, so this is a steps 1-2 test. */
static void lagging_server_gets_every_line(int step) {
    enum { LINES = 5000 };
    const char *db = tmppath("chat.db");
    const char *fast_ping[] = {"--ping-interval", "500", "--ping-timeout", "5000", NULL};
    struct proc *s = server_start(step, db, fast_ping);
    struct proc *c = client_start(step, proc_port(s), NULL);
    WAIT_UNTIL(proc_connected(c) == 1, WAIT_MS);
    proc_signal(s, SIGSTOP); /* the server lags: the client sends it all and half-closes */
    for (int i = 1; i <= LINES; i++) {
        proc_write(c, "line %d\n", i);
    }
    proc_close_stdin(c);
    pump(2000); /* the fault's length, not a wait for anything */
    proc_signal(s, SIGCONT);
    CHECK_EQ_INT(proc_wait_exit(c, 3 * WAIT_MS), 0);
    WAIT_UNTIL(db_count(db, "1") == LINES || proc_err_count(s, "disconnected") > 0, WAIT_MS);
    CHECK_EQ_INT(db_count(db, "1"), LINES);
    CHECK_EQ_INT(proc_err_count(c, "Broken pipe"), 0);
}
FOR_STEP(lagging_server_gets_every_line, 1)
FOR_STEP(lagging_server_gets_every_line, 2)

/* ---------------------------------------------------------------------
 * A full disk at the commit
 * ------------------------------------------------------------------- */

/* The server commits once per loop turn (group commit), so a row exists
 * only once that commit succeeds, and nothing that announces it (its ACK,
 * its CHAT) may leave before. Here the disk fills at a commit: the shell's
 * `ulimit -f` keeps the -wal file from growing past about 80 KB, and 2 KB
 * messages reach that in a few commits. The commit fails, the turn's rows
 * roll back, and the clients they were announced to are dropped with
 * their output unsent. Every ACK the sender got names a stored row, and
 * every CHAT the listener got is a stored row with that text. */
static void full_disk_at_commit(int step) {
    static const char script[] = "ulimit -f 160; trap '' XFSZ; exec \"$0\" \"$@\"";
    enum { TEXT = 2000, TRIES = 400 };
    const char *db = tmppath("chat.db");
    char *line = xmalloc(TEXT + 64), want[32];
    struct proc *s = server_start_sh(step, script, db);
    WAIT_UNTIL(proc_port(s) > 0 || s->exited, WAIT_MS);
    REQUIRE(proc_port(s) > 0);
    int listener = tcp_hello(proc_port(s), 0, WAIT_MS), sender = tcp_hello(proc_port(s), 0, WAIT_MS);
    int n = 0;
    while (++n <= TRIES && proc_err_count(s, "commit failed") == 0) {
        int k = step == 4   ? snprintf(line, 64, "MSG %d off-%d ", n, n)
                : step == 3 ? snprintf(line, 64, "MSG %d ", n)
                            : snprintf(line, 64, "MSG ");
        snprintf(line + k, TEXT + 64 - (size_t)k, "%d %0*d\n", n, TEXT, 0);
        tcp_send_str(sender, line);
        /* its CHAT at the listener; or the commit failed, and the
         * listener was cut off */
        snprintf(want, sizeof want, " %d 0000", n);
        if (!tcp_wait_line(listener, want, WAIT_MS)) {
            break;
        }
    }
    WAIT_UNTIL(proc_err_count(s, "commit failed") > 0, WAIT_MS);
    CHECK(tcp_wait_closed(listener, WAIT_MS) && tcp_wait_closed(sender, WAIT_MS));
    long long stored = db_count(db, "1");
    CHECK_EQ_INT(stored, n - 1); /* each row before n was announced; n's turn rolled back */
    /* What each connection got, against the database. */
    for (const char *at = tcp_log(listener); (at = strstr(at, "CHAT ")) != NULL; at++) {
        long long id = atoll(at + 5);
        CHECK(id >= 1 && id <= stored);
    }
    if (step >= 3) {
        for (const char *at = tcp_log(sender); (at = strstr(at, "ACK ")) != NULL; at++) {
            char where[64];
            snprintf(where, sizeof where, "content LIKE '%d %%'", atoi(at + 4));
            CHECK_EQ_INT(db_count(db, where), 1);
        }
    }
    free(line);
}
FOR_ALL(full_disk_at_commit)

/* The same promise when the commit that fails is the early one inside a
 * turn (send_line() writing a full output out): the step's own server
 * code runs in tests/commit_fail.c, where a listener's output can be
 * filled to the byte and the disk filled at that moment. */
static void early_commit_fails(int step) {
    run_step_program("commit_fail", step, "R was not told of it, every client dropped");
}
FOR_ALL(early_commit_fails)

/* ---------------------------------------------------------------------
 * Text that reads differently than it is stored
 * ------------------------------------------------------------------- */

/* "Trojan Source": a right-to-left override, an isolate and a zero-width
 * space in a message are shown escaped by every client, so that what a
 * reader sees is what is stored. */
static void bidi_is_shown_escaped(int step) {
    struct proc *s = server_start(step, NULL, NULL);
    struct proc *c = client_start(step, proc_port(s), NULL);
    WAIT_UNTIL(proc_connected(c) == 1, WAIT_MS);
    proc_write(c, "pay \xE2\x80\xAE"
                  "001$\xE2\x81\xA6 to\xE2\x80\x8B"
                  "bob\n");
    WAIT_UNTIL(proc_out_count(c, "1 pay ") == 1, WAIT_MS);
    CHECK_EQ_INT(proc_out_count(c, "1 pay \\u{202E}001$\\u{2066} to\\u{200B}bob\n"), 1);
    CHECK(strstr(c->out, "\xE2\x80\xAE") == NULL);
}
FOR_ALL(bidi_is_shown_escaped)

/* ---------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------- */

#define T(n, what, fn)                                                                                       \
    { "robust step " #n ": " what, fn##_##n }

const struct test robust_tests[] = {
    T_ALL("a CRLF file with doubled CRs and empty lines is sent as typed", crlf_file),
    T_3_4("a message the server rejects is given up at once; the next one goes on", rejected_message),
    T_ALL("a client notices a replaced database and catches up from the start", replaced_database),
    T_ALL("a server whose stderr nobody reads serves through a connection storm", unread_log),
    T_3_4("SIGTERM sends the acks already queued before the server exits", stop_sends_queued_acks),
    T_3_4("Ctrl-C on a client names every message it gives up", client_stop_says_what_is_lost),
    T_ALL("SIGTERM, SIGINT and SIGHUP stop an idle server at once", stop_is_prompt),
    T(1, "under nohup a SIGHUP does not stop the server", nohup_is_kept),
    T(4, "under nohup a SIGHUP does not stop the server", nohup_is_kept),
    T_ALL("a reader on a slow link catches up on long rows without being cut off", slow_reader_long_rows),
    T_ALL("a full server's reason reaches a real client, never a reset", full_server_says_why),
    T_ALL("a client that sends one line and exits connects once", done_client_connects_once),
    T(1, "a client that half-closed does not answer a PING: a lagging server gets every line",
      lagging_server_gets_every_line),
    T(2, "a client that half-closed does not answer a PING: a lagging server gets every line",
      lagging_server_gets_every_line),
    T_ALL("bidirectional overrides and zero-width characters are shown escaped", bidi_is_shown_escaped),
    T_ALL("a commit that fails on a full disk announces none of its rows", full_disk_at_commit),
    T_ALL("an early commit that fails inside a turn announces none of its rows", early_commit_fails),
};
const int robust_count = sizeof robust_tests / sizeof robust_tests[0];
