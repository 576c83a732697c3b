/* step1/server.c -- the chat server. Step 1: fire and forget.
 *
 * Every client sends chat lines; the server stores each one in SQLite and
 * broadcasts it, with its id, to every connected client (the sender too).
 * A client that connects says which id it saw last (its server offset),
 * and the server first replays every stored row above that id, then lets
 * live messages through: nobody misses a stored message, nobody sees one
 * twice.
 *
 * The delivery guarantee is "at most once": the server never tells the
 * client whether a message was stored. A message the server never reads
 * (the connection died on the way) or cannot store (the database is
 * locked) is gone, and the client never finds out.
 *
 * One process, one thread, one select() loop. Nothing in the loop waits:
 * sockets are non-blocking, output goes through a bounded buffer per
 * client, timers run through the select() timeout, and SQLite fails at
 * once instead of waiting for a lock. The protocol is in TUTORIAL.md. */
#include "buf.h"
#include "limits.h"
#include "line.h"
#include "net.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

/* Socket.IO's heartbeat defaults: a PING every 25 s, a PONG due within
 * 20 s. A peer that does not answer is gone, even if TCP did not say so. */
#define PING_INTERVAL_MS 25000
#define PING_TIMEOUT_MS 20000

/* While a replay could not read the database, try again this often. */
#define REPLAY_RETRY_MS 100

struct client {
    int fd;
    char id[21]; /* random, like Socket.IO's socket.id */
    struct line_reader in; /* bytes received, cut into lines */
    struct buf out; /* bytes to send, at most MAX_OUTPUT */
    int greeted; /* HELLO received, WELCOME sent */
    int replaying; /* rows above `seen` are still only in the db */
    int64_t seen; /* highest message id queued for this client */
    long long ping_at; /* when to send the next PING */
    long long pong_by; /* when the PONG is due; 0 if no PING is out */
    long long close_by; /* 0, or: closing, and the peer has until then */
    int peer_eof; /* the peer will send nothing more */
    int shut; /* we half-closed our side */
    int dead; /* to be freed at the end of this loop turn */
};

static struct {
    const char *host;
    int port;
    const char *db_path;
    long ping_interval, ping_timeout;
    int listen_fd;
    int spare_fd; /* given up when out of fds, to refuse politely */
    struct store *store;
    struct client *clients[FD_SETSIZE]; /* indexed by fd */
    int nclients;
    int maxfd; /* the highest fd in clients[]: loops stop there */
    volatile sig_atomic_t stop;
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
    c->ping_at = now_ms() + server.ping_interval;
    server.clients[fd] = c;
    server.nclients++;
    if (fd > server.maxfd) {
        server.maxfd = fd;
    }
    fprintf(stderr, "server: %s connected\n", c->id);
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

/* Drop a client now. It is freed at the end of the loop turn, so that a
 * caller further up the stack never holds a freed pointer. */
static void client_drop(struct client *c, const char *why) {
    if (!c->dead) {
        fprintf(stderr, "server: %s disconnected: %s\n", c->id, why);
        c->dead = 1;
        buf_clear(&c->out);
    }
}

/* Close gracefully: stop taking requests, flush what is queued (an error
 * line, say), half-close, and give the peer a moment to close first. */
static void client_close_soon(struct client *c, const char *why) {
    if (!c->close_by) {
        fprintf(stderr, "server: %s closing: %s\n", c->id, why);
        c->close_by = now_ms() + CLOSE_LINGER_MS;
    }
}

/* Queue one line for a client. When its output is full, we first try to
 * write some of it out (a burst may have filled it, not a dead reader);
 * if that does not make room, the client has stopped reading: we cut it
 * off instead of buffering without limit. It loses nothing, because it
 * asks for the missed rows when it reconnects. */
static void send_line(struct client *c, const char *fmt, ...) {
    va_list ap, again;
    if (c->dead) {
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
        fprintf(stderr, "server: a line for %s is over %d bytes, not sent\n", c->id, MAX_LINE);
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

static int replay_row(void *ctx, int64_t id, const char *text) {
    send_chat(ctx, id, text);
    return 0;
}

/* Send the next rows above c->seen, a page at a time, while the client's
 * output is nearly empty. Called again each time its socket drains, so a
 * client far behind streams the history through a small buffer. */
static void replay_more(struct client *c) {
    while (c->replaying && !c->dead && buf_pending(&c->out) < REPLAY_FILL) {
        int rows = store_replay(server.store, c->seen, REPLAY_PAGE, replay_row, c);
        if (rows == -1) {
            fprintf(stderr, "server: replay for %s failed: %s\n", c->id, store_errmsg(server.store));
            return; /* retried by the timer */
        }
        if (rows < REPLAY_PAGE) {
            c->replaying = 0; /* caught up: live messages may flow now */
        }
    }
}

/* Send a new message to everyone. A client still replaying is skipped:
 * the row is in the database, and its replay will reach it in order. */
static void broadcast(int64_t id, const char *text) {
    for (int fd = 0; fd <= server.maxfd; fd++) {
        struct client *c = server.clients[fd];
        if (c != NULL && c->greeted && !c->replaying && !c->close_by) {
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
    if (c->greeted) {
        send_error(c, "HELLO already received");
        return;
    }
    if (parse_int64(arg, &offset) == -1) {
        send_error(c, "bad offset: expected HELLO <number>");
        return;
    }
    send_line(c, "WELCOME %s %ld %ld", c->id, server.ping_interval, server.ping_timeout);
    c->greeted = 1;
    c->seen = offset;
    c->replaying = 1;
    replay_more(c);
}

/* MSG <text>: store it, then broadcast it. Nobody is told whether it was
 * stored: if the insert fails, the message is simply lost. */
static void on_msg(struct client *c, const char *text) {
    int64_t id;
    if (!c->greeted) {
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
        fprintf(stderr, "server: insert failed: %s (message lost)\n", store_errmsg(server.store));
        return;
    }
    broadcast(id, text);
}

static void on_pong(struct client *c) {
    c->pong_by = 0;
    c->ping_at = now_ms() + server.ping_interval;
}

/* Split "VERB rest" and dispatch. An empty line is ignored. */
static void handle_line(struct client *c, char *line) {
    char *arg = strchr(line, ' ');
    if (arg != NULL) {
        *arg++ = '\0';
    } else {
        arg = line + strlen(line);
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
    while (!c->dead && !c->close_by && (r = line_next(&c->in, &line)) != LINE_NEED_MORE) {
        if (r == LINE_READY) {
            handle_line(c, line);
        } else {
            send_error(c, r == LINE_TOO_LONG ? "line too long" : "NUL byte in line");
            client_close_soon(c, r == LINE_TOO_LONG ? "line too long" : "NUL byte");
        }
    }
}

static void handle_readable(struct client *c) {
    if (c->close_by) {
        line_init(&c->in); /* closing: input is read and thrown away */
    }
    ssize_t n = line_fill(&c->in, c->fd);
    if (n == 0) {
        /* The peer half-closed. A partial last line is not a message. */
        c->peer_eof = 1;
        client_close_soon(c, "end of input");
    } else if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
        client_drop(c, strerror(errno));
    } else if (!c->close_by) {
        handle_lines(c);
    }
}

static void handle_writable(struct client *c) {
    if (buf_flush(&c->out, c->fd) == -1) {
        client_drop(c, strerror(errno));
    } else if (!c->close_by) {
        replay_more(c);
    }
}

/* Write a short error on a connection we will not serve, and close it. */
static void refuse(int fd, const char *why) {
    static const char msg[] = "ERR server full\n";
    fprintf(stderr, "server: refused a connection: %s\n", why);
    ssize_t n = write(fd, msg, sizeof msg - 1);
    (void)n; /* best effort: the socket is new, so its buffer is empty */
    close(fd);
}

/* Out of fds, accept() fails with EMFILE and the connection stays in the
 * queue: select() reports it again and again, a busy loop. So we keep one
 * spare fd, and give it up to accept and refuse that connection. Returns
 * -1 when there was none: EMFILE comes even with an empty queue. */
static int refuse_without_fds(void) {
    close(server.spare_fd);
    int fd = net_accept(server.listen_fd);
    if (fd != -1) {
        refuse(fd, "out of file descriptors");
    }
    server.spare_fd = open("/dev/null", O_RDONLY);
    return fd;
}

static void accept_clients(void) {
    for (;;) {
        int fd = net_accept(server.listen_fd);
        if (fd == -1 && (errno == EMFILE || errno == ENFILE)) {
            if (refuse_without_fds() == -1) {
                return;
            }
            continue;
        }
        if (fd == -1) {
            return; /* EAGAIN: no more waiting; anything else: try later */
        }
        /* FD_SET() on an fd >= FD_SETSIZE would write past the fd_set. */
        if (fd >= FD_SETSIZE || server.nclients >= MAX_CLIENTS) {
            refuse(fd, "too many clients");
        } else if (client_new(fd) == NULL) {
            refuse(fd, "cannot set up a client");
        }
    }
}

/* ---------------------------------------------------------------------
 * Timers: heartbeat, closing, replay retries
 * ------------------------------------------------------------------- */

static void heartbeat(struct client *c, long long now) {
    if (c->pong_by && now >= c->pong_by) {
        client_drop(c, "ping timeout");
    } else if (!c->pong_by && now >= c->ping_at) {
        send_line(c, "PING");
        c->pong_by = now + server.ping_timeout;
    }
}

/* A closing client: half-close once its output is flushed, and free it
 * when the peer has closed too, or when it had long enough. */
static void finish_closing(struct client *c, long long now) {
    if (buf_pending(&c->out) == 0 && !c->shut) {
        shutdown(c->fd, SHUT_WR);
        c->shut = 1;
    }
    if ((c->shut && c->peer_eof) || now >= c->close_by) {
        c->dead = 1;
    }
}

static void run_timers(void) {
    long long now = now_ms();
    for (int fd = 0; fd <= server.maxfd; fd++) {
        struct client *c = server.clients[fd];
        if (c == NULL || c->dead) {
            continue;
        }
        if (c->close_by) {
            finish_closing(c, now);
        } else {
            heartbeat(c, now);
        }
        if (c->replaying && !c->close_by && buf_pending(&c->out) == 0) {
            replay_more(c);
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
        next = min_deadline(next, c->close_by ? c->close_by : (c->pong_by ? c->pong_by : c->ping_at));
        if (c->replaying && !c->close_by && buf_pending(&c->out) == 0) {
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

/* Watch every socket for reading; for writing only while it has output
 * queued (a socket is almost always writable: watching it idle would
 * wake the loop for nothing). */
static int watch_sockets(fd_set *rd, fd_set *wr) {
    int maxfd = server.listen_fd;
    FD_ZERO(rd);
    FD_ZERO(wr);
    FD_SET(server.listen_fd, rd);
    for (int fd = 0; fd <= server.maxfd; fd++) {
        struct client *c = server.clients[fd];
        if (c == NULL) {
            continue;
        }
        /* After the peer's end of file its socket stays readable for ever:
         * watching it would wake us in a loop while its output drains. */
        if (!c->peer_eof) {
            FD_SET(fd, rd);
        }
        if (buf_pending(&c->out) > 0) {
            FD_SET(fd, wr);
        }
        maxfd = fd;
    }
    return maxfd;
}

static void serve_clients(fd_set *rd, fd_set *wr) {
    for (int fd = 0; fd <= server.maxfd; fd++) {
        struct client *c = server.clients[fd];
        if (c != NULL && FD_ISSET(fd, rd) && !c->dead) {
            handle_readable(c);
        }
        if (c != NULL && FD_ISSET(fd, wr) && !c->dead) {
            handle_writable(c);
        }
    }
}

static void free_dead_clients(void) {
    for (int fd = 0; fd <= server.maxfd; fd++) {
        if (server.clients[fd] != NULL && server.clients[fd]->dead) {
            client_free(server.clients[fd]);
        }
    }
}

static void on_signal(int sig) {
    (void)sig;
    server.stop = 1;
}

static void usage(void) {
    fprintf(stderr, "usage: server [--host ADDR] [--port N] [--db FILE]"
                    " [--ping-interval MS] [--ping-timeout MS]\n");
    exit(1);
}

static void parse_options(int argc, char **argv) {
    long port = 3000;
    server.host = "127.0.0.1";
    server.db_path = "chat.db";
    server.ping_interval = PING_INTERVAL_MS;
    server.ping_timeout = PING_TIMEOUT_MS;
    /* Every option takes a value: --name value. */
    for (int i = 1; i < argc; i += 2) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = val != NULL;
        if (strcmp(opt, "--host") == 0 && ok) {
            server.host = val;
        } else if (strcmp(opt, "--port") == 0) {
            ok = parse_long_arg(val, 0, 65535, &port) == 0;
        } else if (strcmp(opt, "--db") == 0 && ok) {
            server.db_path = val;
        } else if (strcmp(opt, "--ping-interval") == 0) {
            ok = parse_long_arg(val, 1, 3600000, &server.ping_interval) == 0;
        } else if (strcmp(opt, "--ping-timeout") == 0) {
            ok = parse_long_arg(val, 1, 3600000, &server.ping_timeout) == 0;
        } else {
            ok = 0;
        }
        if (!ok) {
            usage();
        }
    }
    server.port = (int)port;
}

/* Start-up may fail and exit; after it, nothing in the loop exits. */
static void start_up(void) {
    char err[NET_ERR_LEN];
    ignore_sigpipe();
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    server.store = store_open(server.db_path, err, sizeof err);
    if (server.store == NULL) {
        fprintf(stderr, "server: cannot open the database %s\n", err);
        exit(1);
    }
    server.listen_fd = net_listen(server.host, server.port, err);
    if (server.listen_fd == -1) {
        fprintf(stderr, "server: cannot listen on %s:%d: %s\n", server.host, server.port, err);
        exit(1);
    }
    server.spare_fd = open("/dev/null", O_RDONLY);
    if (server.spare_fd == -1) {
        perror("server: open /dev/null");
        exit(1);
    }
    fprintf(stderr, "server: listening on %s:%d, db %s\n", server.host, net_local_port(server.listen_fd),
            server.db_path);
}

int main(int argc, char **argv) {
    parse_options(argc, argv);
    start_up();
    while (!server.stop) {
        fd_set rd, wr;
        int maxfd = watch_sockets(&rd, &wr);
        struct timeval tv = next_timeout();
        if (select(maxfd + 1, &rd, &wr, NULL, &tv) == -1) {
            if (errno == EINTR) {
                continue; /* a signal: check server.stop */
            }
            perror("server: select");
            return 1;
        }
        if (FD_ISSET(server.listen_fd, &rd)) {
            accept_clients();
        }
        serve_clients(&rd, &wr);
        run_timers();
        free_dead_clients();
    }
    for (int fd = 0; fd <= server.maxfd; fd++) {
        if (server.clients[fd] != NULL) {
            client_free(server.clients[fd]);
        }
    }
    store_close(server.store);
    fprintf(stderr, "server: stopped\n");
    return 0;
}
