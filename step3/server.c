/* server.c -- the chat server.
 *
 * Every client sends chat lines; the server stores each one in SQLite and
 * broadcasts it, with its id, to every connected client (the sender too).
 * A client that connects says which id it saw last (its server offset),
 * and the server first replays every stored row above that id, then lets
 * live messages through: nobody misses a stored message, nobody sees one
 * twice.
 *
 * One process, one thread, one select() loop. Nothing in the loop waits:
 * sockets are non-blocking, output goes through a bounded buffer per
 * client, timers run through the select() timeout, and SQLite fails at
 * once instead of waiting for a lock. The protocol is in TUTORIAL.md.
 *
 * The course builds this file in four steps, step1/ to step4/. Each
 * paragraph below says what one step did; the last is this folder's.
 *
 * Step 1, fire and forget: the server never tells the client whether a
 * message was stored. A message the server never reads (the connection
 * died on the way) or cannot store (the database is locked) is gone, and
 * the client never finds out. The guarantee is "at most once".
 *
 * New in step 2: nothing in the server; only the client changed.
 *
 * New in step 3: each message carries an ack id, and the server answers
 * "ACK <ack-id>" once the row is committed, never before. A message it
 * cannot store gets no ack, so the client times out and sends it again:
 * "at least once". In step 3, if the ack is lost on the way back, the
 * retry is stored a second time: a duplicate.
 */
#include "buf.h"
#include "conn.h"
#include "limits.h"
#include "line.h"
#include "log.h"
#include "net.h"
#include "stop.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

/* A client's life, in this order. */
enum client_state {
    CLIENT_NEW, /* connected; no HELLO yet */
    CLIENT_REPLAYING, /* WELCOME sent; rows above `seen` are still only in the db */
    CLIENT_LIVE, /* caught up: live messages reach it */
    CLIENT_CLOSING, /* after an error: flushing, then closing (conn.h) */
    CLIENT_DEAD /* to be freed at the end of this loop turn */
};

struct client {
    int fd;
    char id[21]; /* random, like Socket.IO's socket.id */
    enum client_state state;
    struct line_reader in; /* bytes received, cut into lines */
    struct buf out; /* bytes to send, at most MAX_OUTPUT */
    int64_t seen; /* highest message id queued for this client */
    struct conn_heartbeat beat; /* PING and PONG deadlines */
    struct conn_linger linger; /* end of input; the close after an error */
};

static struct {
    struct conn_options opt; /* the command line (conn.h) */
    struct net_listener listen; /* a socket per address of --host */
    int spare_fd; /* given up when out of fds, to refuse politely */
    int stop_fd; /* readable once Ctrl-C, SIGTERM or SIGHUP came (stop.h) */
    int stopping; /* closing every client, then exit */
    struct store *store;
    struct client *clients[FD_SETSIZE]; /* indexed by fd */
    int nclients;
    int maxfd; /* the highest fd in clients[]: loops stop there */
} server;

/* ---------------------------------------------------------------------
 * Clients: creating, closing, sending
 * ------------------------------------------------------------------- */

static struct client *client_new(int fd) {
    struct client *c = calloc(1, sizeof *c);
    if (c == NULL || random_id20(c->id) == -1) {
        free(c);
        return NULL;
    }
    c->fd = fd;
    line_init(&c->in);
    buf_init(&c->out, MAX_OUTPUT);
    conn_heartbeat_reset(&c->beat, now_ms(), server.opt.ping_interval);
    server.clients[fd] = c;
    server.nclients++;
    if (fd > server.maxfd) {
        server.maxfd = fd;
    }
    log_conn("server: %s connected", c->id);
    return c;
}

static void client_free(struct client *c) {
    server.clients[c->fd] = NULL;
    server.nclients--;
    while (server.maxfd > 0 && server.clients[server.maxfd] == NULL) {
        server.maxfd--;
    }
    close(c->fd);
    buf_free(&c->out);
    free(c);
}

/* Still taking requests: neither closing nor dropped. */
static int client_open(const struct client *c) {
    return c->state != CLIENT_CLOSING && c->state != CLIENT_DEAD;
}

/* Drop a client now. It is freed at the end of the loop turn, so that a
 * caller further up the stack never holds a freed pointer. */
static void client_drop(struct client *c, const char *why) {
    if (c->state != CLIENT_DEAD) {
        log_conn("server: %s disconnected: %s", c->id, why);
        c->state = CLIENT_DEAD;
        buf_clear(&c->out);
    }
}

/* Close gracefully: stop taking requests, flush what is queued (an error
 * line, say), half-close, and give the peer a moment to close first. */
static void client_close_soon(struct client *c, const char *why) {
    if (client_open(c)) {
        log_conn("server: %s closing: %s", c->id, why);
        c->state = CLIENT_CLOSING;
        conn_linger_start(&c->linger, now_ms());
    }
}

/* Queue one line for a client. When its output is full, we first try to
 * write some of it out (a burst may have filled it, not a dead reader);
 * if that does not make room, the client has stopped reading: we cut it
 * off instead of buffering without limit. It loses nothing, because it
 * asks for the missed rows when it reconnects. */
static void send_line(struct client *c, const char *fmt, ...) {
    va_list ap, again;
    if (c->state == CLIENT_DEAD) {
        return;
    }
    va_start(ap, fmt);
    va_copy(again, ap);
    int rc = buf_vprintf_line(&c->out, fmt, ap);
    if (rc == -1 && buf_flush(&c->out, c->fd) == 0) {
        rc = buf_vprintf_line(&c->out, fmt, again);
    }
    va_end(again);
    va_end(ap);
    if (rc == -2) {
        /* Only a row stored by other means can be this long. */
        log_line("server: a line for %s is over %d bytes, not sent", c->id, MAX_LINE);
    } else if (rc == -1) {
        client_drop(c, "output buffer full");
    }
}

static void send_error(struct client *c, const char *reason) {
    send_line(c, "ERR %s", reason);
}

/* ---------------------------------------------------------------------
 * Messages: replay from the database, then live broadcast
 * ------------------------------------------------------------------- */

static void send_chat(struct client *c, int64_t id, const char *text) {
    send_line(c, "CHAT %lld %s", (long long)id, text);
    c->seen = id;
}

/* One replayed row; the page stops early once REPLAY_FILL bytes wait,
 * so a page of long rows cannot overflow the output (limits.h). */
static int replay_row(void *ctx, int64_t id, const char *text) {
    struct client *c = ctx;
    send_chat(c, id, text);
    return buf_pending(&c->out) >= REPLAY_FILL;
}

/* Send the next rows above c->seen, a page at a time, while the client's
 * output is nearly empty. Called again each time its socket drains, so a
 * client far behind streams the history through a small buffer. */
static void replay_more(struct client *c) {
    while (c->state == CLIENT_REPLAYING && buf_pending(&c->out) < REPLAY_FILL) {
        int rows = store_replay(server.store, c->seen, REPLAY_PAGE, replay_row, c);
        if (rows == -1) {
            log_line("server: replay for %s failed: %s", c->id, store_errmsg(server.store));
            return; /* retried by the timer */
        }
        if (rows < REPLAY_PAGE && buf_pending(&c->out) < REPLAY_FILL) {
            c->state = CLIENT_LIVE; /* caught up: live messages may flow now */
        }
    }
}

/* Send a new message to everyone. A client still replaying is skipped:
 * the row is in the database, and its replay will reach it in order. */
static void broadcast(int64_t id, const char *text) {
    for (int fd = 0; fd <= server.maxfd; fd++) {
        struct client *c = server.clients[fd];
        if (c != NULL && c->state == CLIENT_LIVE) {
            send_chat(c, id, text);
        }
    }
}

/* ---------------------------------------------------------------------
 * The protocol: one handler per verb
 * ------------------------------------------------------------------- */

/* HELLO <server-offset>: the last message id this client has seen. */
static void on_hello(struct client *c, const char *arg) {
    int64_t offset;
    if (c->state != CLIENT_NEW) {
        send_error(c, "HELLO already received");
        return;
    }
    if (parse_int64(arg, &offset) == -1) {
        send_error(c, "bad offset: expected HELLO <number>");
        return;
    }
    /* An offset above every id this database ever issued comes from
     * another database (chat.db was deleted, say): that client has seen
     * none of our rows. WELCOME says our last id, so it knows too. */
    int64_t last = store_last_id(server.store);
    if (last >= 0 && offset > last) {
        log_line("server: %s is at id %lld, past our last id %lld: replaying from the start", c->id,
                 (long long)offset, (long long)last);
        offset = 0;
    }
    send_line(c, "WELCOME %s %ld %ld %lld", c->id, server.opt.ping_interval, server.opt.ping_timeout,
              (long long)(last >= 0 ? last : offset));
    c->seen = offset;
    c->state = CLIENT_REPLAYING;
    replay_more(c);
}

/* The argument of MSG, "<ack-id> <text>": NULL, or what is wrong. */
static const char *parse_msg(char *arg, int64_t *ack, char **text) {
    char *ack_word = next_word(&arg);
    if (arg == NULL) {
        return "expected MSG <ack-id> <text>";
    }
    if (parse_int64(ack_word, ack) == -1) {
        return "bad ack id";
    }
    *text = arg;
    return NULL;
}

/* MSG <ack-id> <text>: store it, broadcast it, and only then ack it. If
 * the insert fails there is no ack: the client will retry. */
static void on_msg(struct client *c, char *arg) {
    int64_t id, ack;
    char *text;
    const char *bad;
    if (c->state == CLIENT_NEW) {
        send_error(c, "send HELLO first");
        return;
    }
    if ((bad = parse_msg(arg, &ack, &text)) != NULL) {
        send_error(c, bad);
        return;
    }
    /* A text that can never be stored is rejected for good, by its ack
     * id: a retry would fail the same way, so the client gives it up. */
    if (*text == '\0') {
        send_line(c, "REJECT %lld empty message", (long long)ack);
        return;
    }
    /* Stored, a longer text could not fit on a CHAT line to anyone. */
    if (strlen(text) > MAX_TEXT) {
        send_line(c, "REJECT %lld message too long", (long long)ack);
        return;
    }
    int rc = store_insert(server.store, NULL, text, &id);
    if (rc != SQLITE_OK) {
        log_line("server: insert failed: %s (no ack: the client will retry)", store_errmsg(server.store));
        return;
    }
    broadcast(id, text);
    send_line(c, "ACK %lld", (long long)ack);
}

static void on_pong(struct client *c) {
    conn_heartbeat_reset(&c->beat, now_ms(), server.opt.ping_interval);
}

/* Split "VERB rest" and dispatch. An empty line is ignored. */
static void handle_line(struct client *c, char *line) {
    char *arg = line;
    next_word(&arg);
    if (arg == NULL) {
        arg = line + strlen(line); /* the verb alone: an empty argument */
    }
    if (strcmp(line, "HELLO") == 0) {
        on_hello(c, arg);
    } else if (strcmp(line, "MSG") == 0) {
        on_msg(c, arg);
    } else if (strcmp(line, "PONG") == 0) {
        on_pong(c);
    } else if (*line != '\0') {
        send_error(c, "unknown verb");
    }
}

/* ---------------------------------------------------------------------
 * Socket events
 * ------------------------------------------------------------------- */

/* Hand every complete line to handle_line(); framing errors close. */
static void handle_lines(struct client *c) {
    char *line;
    enum line_result r;
    while (client_open(c) && (r = line_next(&c->in, &line)) != LINE_NEED_MORE) {
        if (r == LINE_READY) {
            handle_line(c, line);
        } else {
            send_error(c, r == LINE_TOO_LONG ? "line too long" : "NUL byte in line");
            client_close_soon(c, r == LINE_TOO_LONG ? "line too long" : "NUL byte");
        }
    }
}

static void handle_readable(struct client *c) {
    if (c->state == CLIENT_CLOSING) {
        line_init(&c->in); /* closing: input is read and thrown away */
    }
    ssize_t n = line_fill(&c->in, c->fd);
    if (n == 0) {
        /* The peer half-closed. A partial last line is not a message. */
        c->linger.peer_eof = 1;
        client_close_soon(c, "end of input");
    } else if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
        client_drop(c, strerror(errno));
    } else if (client_open(c)) {
        handle_lines(c);
    }
}

/* Write what is queued; once it is all out, a replay may go on. */
static void handle_writable(struct client *c) {
    if (buf_flush(&c->out, c->fd) == -1) {
        client_drop(c, strerror(errno));
    } else {
        replay_more(c);
    }
}

/* A connection we will not serve gets "ERR server full" and is closed
 * like any other after an error (client_close_soon): closing at once,
 * with its HELLO unread, would send a reset that can destroy the error
 * line before the peer reads it. With no room even to do that (past
 * FD_SETSIZE, or out of memory), net_refuse() does what it can at once. */
static void refuse(int fd, const char *why) {
    struct client *c = fd < FD_SETSIZE ? client_new(fd) : NULL;
    log_conn("server: refused a connection: %s", why);
    if (c == NULL) {
        net_refuse(fd, "ERR server full\n");
        return;
    }
    send_error(c, "server full");
    client_close_soon(c, why);
}

/* Out of fds, conn_accept() refuses a connection with its spare fd. */
static void accept_clients(int listen_fd) {
    int fd;
    while ((fd = conn_accept(listen_fd, &server.spare_fd, "ERR server full\n")) != -1) {
        /* FD_SET() on an fd >= FD_SETSIZE would write past the fd_set. */
        if (fd >= FD_SETSIZE || server.nclients >= MAX_CLIENTS) {
            refuse(fd, "too many clients");
        } else if (client_new(fd) == NULL) {
            log_conn("server: refused a connection: cannot set up a client");
            net_refuse(fd, "ERR server full\n");
        }
    }
}

/* ---------------------------------------------------------------------
 * Timers: heartbeat, closing, replay retries
 * ------------------------------------------------------------------- */

static void heartbeat(struct client *c, long long now) {
    enum conn_beat beat = conn_heartbeat_due(&c->beat, now, server.opt.ping_timeout);
    if (beat == BEAT_TIMEOUT) {
        client_drop(c, "ping timeout");
    } else if (beat == BEAT_PING) {
        send_line(c, "PING");
    }
}

static void run_timers(void) {
    long long now = now_ms();
    for (int fd = 0; fd <= server.maxfd; fd++) {
        struct client *c = server.clients[fd];
        if (c == NULL || c->state == CLIENT_DEAD) {
            continue;
        }
        if (c->state != CLIENT_CLOSING) {
            heartbeat(c, now);
        } else if (conn_linger_over(&c->linger, c->fd, buf_pending(&c->out), now)) {
            c->state = CLIENT_DEAD; /* flushed, half-closed, and the peer closed or had long enough */
        }
        if (c->state == CLIENT_REPLAYING && buf_pending(&c->out) == 0) {
            replay_more(c); /* a retry after a failed page */
        }
    }
}

static long long min_deadline(long long a, long long b) {
    return (a == 0 || (b != 0 && b < a)) ? b : a;
}

/* How long select() may sleep: until the nearest timer of any client. */
static struct timeval next_timeout(void) {
    long long next = 0, now = now_ms();
    for (int fd = 0; fd <= server.maxfd; fd++) {
        struct client *c = server.clients[fd];
        if (c == NULL) {
            continue;
        }
        next =
            min_deadline(next, c->state == CLIENT_CLOSING ? c->linger.until : conn_heartbeat_next(&c->beat));
        if (c->state == CLIENT_REPLAYING && buf_pending(&c->out) == 0) {
            next = min_deadline(next, now + REPLAY_RETRY_MS);
        }
    }
    long long ms = next == 0 ? 1000 : (next > now ? next - now : 0);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* ---------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------- */

/* Watch every socket for reading; for writing only while output is left
 * after flush_clients(), whose write was short: the socket was full. A
 * socket is almost always writable: watching it idle would wake the loop
 * for nothing. */
static int watch_sockets(fd_set *rd, fd_set *wr) {
    int maxfd = server.stop_fd;
    FD_ZERO(rd);
    FD_ZERO(wr);
    if (!server.stopping) {
        FD_SET(server.stop_fd, rd); /* once stopping, it stays readable */
    }
    for (int i = 0; i < server.listen.n; i++) {
        FD_SET(server.listen.fds[i], rd);
        maxfd = server.listen.fds[i] > maxfd ? server.listen.fds[i] : maxfd;
    }
    /* The log waits in memory while stderr is not read (log.h). */
    if (log_pending()) {
        FD_SET(STDERR_FILENO, wr);
    }
    for (int fd = 0; fd <= server.maxfd; fd++) {
        struct client *c = server.clients[fd];
        if (c == NULL) {
            continue;
        }
        /* After the peer's end of file its socket stays readable for ever:
         * watching it would wake us in a loop while its output drains. */
        if (!c->linger.peer_eof) {
            FD_SET(fd, rd);
        }
        if (buf_pending(&c->out) > 0) {
            FD_SET(fd, wr);
        }
        maxfd = fd > maxfd ? fd : maxfd;
    }
    return maxfd;
}

static void serve_clients(fd_set *rd) {
    for (int fd = 0; fd <= server.maxfd; fd++) {
        struct client *c = server.clients[fd];
        if (c != NULL && FD_ISSET(fd, rd) && c->state != CLIENT_DEAD) {
            handle_readable(c);
        }
    }
}

/* Before select(), write out what this turn queued, as Redis does in
 * beforeSleep(): the broadcast and the reply to a request leave in the
 * turn that read it, not a turn later when select() has said "writable"
 * (one system call per message fewer). Only a socket whose write was
 * short is then watched for writability (watch_sockets()). */
static void flush_clients(void) {
    for (int fd = 0; fd <= server.maxfd; fd++) {
        struct client *c = server.clients[fd];
        if (c != NULL && c->state != CLIENT_DEAD && buf_pending(&c->out) > 0) {
            handle_writable(c);
        }
    }
}

static void free_dead_clients(void) {
    for (int fd = 0; fd <= server.maxfd; fd++) {
        if (server.clients[fd] != NULL && server.clients[fd]->state == CLIENT_DEAD) {
            client_free(server.clients[fd]);
        }
    }
}

/* Ctrl-C, SIGTERM or SIGHUP: stop taking connections and requests, but first
 * give what is queued (acks for rows already stored, above all) up to
 * CLOSE_LINGER_MS to reach the clients: every client is closed as after
 * an error. Exiting at once would lose those acks, and the clients would
 * send the stored messages again. */
static void stop_serving(void) {
    log_line("server: stopping: sending what is queued, then closing");
    server.stopping = 1;
    net_listener_close(&server.listen);
    for (int fd = 0; fd <= server.maxfd; fd++) {
        if (server.clients[fd] != NULL) {
            client_close_soon(server.clients[fd], "server stopping");
        }
    }
}

/* Start-up may fail and exit; after it, nothing in the loop exits. */
static void start_up(void) {
    char err[NET_ERR_LEN];
    ignore_sigpipe();
    server.stop_fd = stop_pipe_open();
    if (server.stop_fd == -1) {
        perror("server: cannot set up the signal pipe");
        exit(1);
    }
    server.store = store_open(server.opt.db_path, err, sizeof err);
    if (server.store == NULL) {
        fprintf(stderr, "server: cannot open the database %s\n", err);
        exit(1);
    }
    if (net_listen_all(&server.listen, server.opt.host, server.opt.port, err) == -1) {
        fprintf(stderr, "server: cannot listen on %s:%d: %s\n", server.opt.host, server.opt.port, err);
        exit(1);
    }
    server.spare_fd = open("/dev/null", O_RDONLY);
    if (server.spare_fd == -1) {
        perror("server: open /dev/null");
        exit(1);
    }
    fprintf(stderr, "server: listening on %s:%d, db %s\n", server.opt.host,
            net_local_port(server.listen.fds[0]), server.opt.db_path);
}

int main(int argc, char **argv) {
    stdio_ensure_open(); /* before any open(): see util.h */
    if (conn_parse_options(&server.opt, argc, argv) == -1) {
        fputs(CONN_USAGE, stderr);
        return 1;
    }
    start_up();
    while (!server.stopping || server.nclients > 0) {
        fd_set rd, wr;
        int maxfd = watch_sockets(&rd, &wr);
        struct timeval tv = next_timeout();
        if (select(maxfd + 1, &rd, &wr, NULL, &tv) == -1) {
            if (errno == EINTR) {
                continue; /* a signal: the stop pipe says which */
            }
            perror("server: select");
            return 1;
        }
        if (FD_ISSET(STDERR_FILENO, &wr)) {
            log_flush();
        }
        if (FD_ISSET(server.stop_fd, &rd) && !server.stopping) {
            stop_serving();
        }
        for (int i = 0; i < server.listen.n; i++) {
            if (FD_ISSET(server.listen.fds[i], &rd)) {
                accept_clients(server.listen.fds[i]);
            }
        }
        serve_clients(&rd);
        flush_clients(); /* before the timers: a closing client is flushed, so it half-closes now */
        run_timers();
        free_dead_clients();
    }
    for (int fd = 0; fd <= server.maxfd; fd++) {
        if (server.clients[fd] != NULL) {
            client_free(server.clients[fd]);
        }
    }
    store_close(server.store);
    log_line("server: stopped");
    log_flush(); /* once: a stderr that is not read must not hold us up */
    return 0;
}
