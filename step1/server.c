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
 * The connections' plumbing, the same in every step (the client table,
 * output buffers, accepting, heartbeat, closing), is in common/clients.c:
 * this file keeps the chat, and the loop that drives both.
 *
 * The course builds this file in four steps, step1/ to step4/. Each
 * paragraph below says what one step did; the last is this folder's.
 *
 * Step 1, fire and forget: the server never tells the client whether a
 * message was stored. A message the server never reads (the connection
 * died on the way) or cannot store (the database is locked) is gone, and
 * the client never finds out. The guarantee is "at most once".
 */
#include "buf.h"
#include "clients.h"
#include "conn.h"
#include "limits.h"
#include "log.h"
#include "net.h"
#include "stop.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

static struct {
    struct conn_options opt; /* the command line (conn.h) */
    struct net_listener listen; /* a socket per address of --host */
    int spare_fd; /* given up when out of fds, to refuse politely */
    int stop_fd; /* readable once Ctrl-C, SIGTERM or SIGHUP came (stop.h) */
    int stopping; /* closing every client, then exit */
    struct store *store; /* the clients are in common/clients.c */
    int commit_failed; /* in this loop turn: see commit_turn() */
} server;

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
    for (struct client *c = clients_next(NULL); c != NULL; c = clients_next(c)) {
        if (c->state == CLIENT_LIVE) {
            send_chat(c, id, text);
        }
    }
}

/* Group commit: the rows this turn stored are committed together, in one
 * transaction, before any line that announces them (a CHAT, an ACK)
 * leaves. main() calls this before it flushes, and common/clients.c
 * before it writes a full output out early. If the commit fails, none of
 * those rows is stored: every client with output waiting is dropped, its
 * output unsent, and again at the end of the turn (what was queued after
 * an early failure may still name them). It comes back and replays what
 * is really stored. */
static int commit_turn(void) {
    if (store_commit(server.store) != SQLITE_OK) {
        log_line("server: commit failed: %s (this turn's rows are not stored)", store_errmsg(server.store));
        server.commit_failed = 1;
    }
    if (server.commit_failed) {
        clients_drop_unsent("commit failed");
        return -1;
    }
    return 0;
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

/* MSG <text>: store it, then broadcast it. Nobody is told whether it was
 * stored: if the insert fails, the message is simply lost. */
static void on_msg(struct client *c, const char *text) {
    int64_t id;
    if (c->state == CLIENT_NEW) {
        send_error(c, "send HELLO first");
        return;
    }
    if (*text == '\0') {
        send_error(c, "empty message");
        return;
    }
    /* Stored, a longer text could not fit on a CHAT line to anyone. */
    if (strlen(text) > MAX_TEXT) {
        send_error(c, "message too long");
        return;
    }
    int rc = store_insert(server.store, NULL, text, &id);
    if (rc != SQLITE_OK) {
        log_line("server: insert failed: %s (message lost)", store_errmsg(server.store));
        return;
    }
    broadcast(id, text);
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
        client_pong(c); /* the heartbeat (common/clients.c) */
    } else if (*line != '\0') {
        send_error(c, "unknown verb");
    }
}

/* ---------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------- */

/* Watch every socket for reading; for writing, the log while it waits,
 * and a client while its output waits (clients_watch()). */
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
    return clients_watch(rd, wr, maxfd);
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
    clients_close_all("server stopping");
}

/* Start-up may fail and exit; after it, nothing in the loop exits. */
static void start_up(void) {
    char err[NET_ERR_LEN];
    ignore_sigpipe();
    clients_init(server.opt.ping_interval, server.opt.ping_timeout, commit_turn);
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
    store_group(server.store); /* one commit per loop turn: commit_turn() */
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
    while (!server.stopping || clients_count() > 0) {
        fd_set rd, wr;
        int maxfd = watch_sockets(&rd, &wr);
        struct timeval tv = clients_next_timeout();
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
                clients_accept(server.listen.fds[i], &server.spare_fd);
            }
        }
        /* common/clients.c calls back into this file where the chat goes
         * on: each line read goes to handle_line(), and once a client's
         * output is written, or its failed page has waited long enough,
         * replay_more() queues its next page. The commit comes before the
         * flush, the flush before the timers: a closing client is
         * flushed, so it half-closes now. */
        clients_read(&rd, handle_line);
        commit_turn();
        server.commit_failed = 0; /* the next turn starts afresh */
        clients_flush(replay_more);
        clients_run_timers(replay_more);
        clients_free_dead();
    }
    clients_free_all();
    store_close(server.store);
    log_line("server: stopped");
    log_flush(); /* once: a stderr that is not read must not hold us up */
    return 0;
}
