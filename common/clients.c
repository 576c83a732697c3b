/* clients.c -- the server's connected clients. See clients.h. */
#include "clients.h"

#include "limits.h"
#include "log.h"
#include "net.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One server, one table: a module variable, like the server's own. */
static struct {
    struct client *by_fd[FD_SETSIZE]; /* indexed by fd */
    int n;
    int maxfd; /* the highest fd in by_fd[]: loops stop there */
    long ping_interval, ping_timeout; /* ms, from the command line */
    clients_barrier_fn *before_write; /* the server's commit (clients.h) */
    fd_set asked; /* the clients read this turn: clients_flush() serves them first */
} table;

void clients_init(long ping_interval, long ping_timeout, clients_barrier_fn *before_write) {
    table.ping_interval = ping_interval;
    table.ping_timeout = ping_timeout;
    table.before_write = before_write;
}

struct client *client_at(int fd) {
    return fd >= 0 && fd < FD_SETSIZE ? table.by_fd[fd] : NULL;
}

struct client *clients_next(const struct client *after) {
    for (int fd = after == NULL ? 0 : after->fd + 1; fd <= table.maxfd; fd++) {
        if (table.by_fd[fd] != NULL) {
            return table.by_fd[fd];
        }
    }
    return NULL;
}

int clients_count(void) {
    return table.n;
}

/* ---------------------------------------------------------------------
 * Creating, closing, sending
 * ------------------------------------------------------------------- */

struct client *client_new(int fd) {
    struct client *c = calloc(1, sizeof *c);
    if (c == NULL || random_id20(c->id) == -1) {
        free(c);
        return NULL;
    }
    c->fd = fd;
    line_init(&c->in);
    buf_init(&c->out, MAX_OUTPUT);
    conn_heartbeat_reset(&c->beat, now_ms(), table.ping_interval);
    table.by_fd[fd] = c;
    table.n++;
    if (fd > table.maxfd) {
        table.maxfd = fd;
    }
    log_conn("server: %s connected", c->id);
    return c;
}

void client_free(struct client *c) {
    table.by_fd[c->fd] = NULL;
    table.n--;
    while (table.maxfd > 0 && table.by_fd[table.maxfd] == NULL) {
        table.maxfd--;
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

/* Write a full output out now, inside the turn: first the barrier, so
 * that the rows it announces are committed. 0 if it could be written. */
static int make_room(struct client *c) {
    if (table.before_write != NULL && table.before_write() == -1) {
        return -1; /* the commit failed: c is dropped, its output unsent */
    }
    return c->state == CLIENT_DEAD ? -1 : buf_flush(&c->out, c->fd);
}

/* When a client's output is full, we first try to write some of it out
 * (a burst may have filled it, not a dead reader); if that does not make
 * room, the client has stopped reading: we cut it off instead of
 * buffering without limit. It loses nothing, because it asks for the
 * missed rows when it reconnects. */
void send_line(struct client *c, const char *fmt, ...) {
    va_list ap, again;
    if (c->state == CLIENT_DEAD) {
        return;
    }
    va_start(ap, fmt);
    va_copy(again, ap);
    int rc = buf_vprintf_line(&c->out, fmt, ap);
    if (rc == -1 && make_room(c) == 0) {
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

void send_error(struct client *c, const char *reason) {
    send_line(c, "ERR %s", reason);
}

void client_pong(struct client *c) {
    conn_heartbeat_reset(&c->beat, now_ms(), table.ping_interval);
}

/* ---------------------------------------------------------------------
 * Accepting and refusing
 * ------------------------------------------------------------------- */

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
void clients_accept(int listen_fd, int *spare_fd) {
    int fd;
    while ((fd = conn_accept(listen_fd, spare_fd, "ERR server full\n")) != -1) {
        /* FD_SET() on an fd >= FD_SETSIZE would write past the fd_set. */
        if (fd >= FD_SETSIZE || table.n >= MAX_CLIENTS) {
            refuse(fd, "too many clients");
        } else if (client_new(fd) == NULL) {
            log_conn("server: refused a connection: cannot set up a client");
            net_refuse(fd, "ERR server full\n");
        }
    }
}

/* ---------------------------------------------------------------------
 * Socket events
 * ------------------------------------------------------------------- */

/* Every client for reading; for writing only while output is left after
 * clients_flush(), whose write was short: the socket was full. A socket
 * is almost always writable: watching it idle would wake the loop for
 * nothing. */
int clients_watch(fd_set *rd, fd_set *wr, int maxfd) {
    for (struct client *c = clients_next(NULL); c != NULL; c = clients_next(c)) {
        /* After the peer's end of file its socket stays readable for ever:
         * watching it would wake us in a loop while its output drains. */
        if (!c->linger.peer_eof) {
            FD_SET(c->fd, rd);
        }
        if (buf_pending(&c->out) > 0) {
            FD_SET(c->fd, wr);
        }
        maxfd = c->fd > maxfd ? c->fd : maxfd;
    }
    return maxfd;
}

/* Hand every complete line to on_line(); framing errors close. */
static void client_lines(struct client *c, client_line_fn *on_line) {
    char *line;
    enum line_result r;
    while (client_open(c) && (r = line_next(&c->in, &line)) != LINE_NEED_MORE) {
        if (r == LINE_READY) {
            on_line(c, line);
        } else {
            send_error(c, r == LINE_TOO_LONG ? "line too long" : "NUL byte in line");
            client_close_soon(c, r == LINE_TOO_LONG ? "line too long" : "NUL byte");
        }
    }
}

static void client_read(struct client *c, client_line_fn *on_line) {
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
        client_lines(c, on_line);
    }
}

void clients_read(const fd_set *rd, client_line_fn *on_line) {
    table.asked = *rd;
    for (struct client *c = clients_next(NULL); c != NULL; c = clients_next(c)) {
        if (FD_ISSET(c->fd, rd) && c->state != CLIENT_DEAD) {
            client_read(c, on_line);
        }
    }
}

static void client_flush(struct client *c, client_fn *more) {
    if (c->state == CLIENT_DEAD || buf_pending(&c->out) == 0) {
        return;
    }
    if (buf_flush(&c->out, c->fd) == -1) {
        client_drop(c, strerror(errno));
    } else {
        more(c);
    }
}

/* Before select(), write out what this turn queued, as Redis does in
 * beforeSleep(): the broadcast and the reply to a request leave in the
 * turn that read it, not a turn later when select() has said "writable"
 * (one system call per message fewer). Only a socket whose write was
 * short is then watched for writability (clients_watch()). The clients
 * that sent something this turn are written first: a sender waits for
 * its ACK, a listener only reads. */
void clients_flush(client_fn *more) {
    for (struct client *c = clients_next(NULL); c != NULL; c = clients_next(c)) {
        if (FD_ISSET(c->fd, &table.asked)) {
            client_flush(c, more);
        }
    }
    for (struct client *c = clients_next(NULL); c != NULL; c = clients_next(c)) {
        client_flush(c, more);
    }
    FD_ZERO(&table.asked);
}

/* ---------------------------------------------------------------------
 * Timers: heartbeat, closing, replay retries
 * ------------------------------------------------------------------- */

static void heartbeat(struct client *c, long long now) {
    enum conn_beat beat = conn_heartbeat_due(&c->beat, now, table.ping_timeout);
    if (beat == BEAT_TIMEOUT) {
        client_drop(c, "ping timeout");
    } else if (beat == BEAT_PING) {
        send_line(c, "PING");
    }
}

/* A replaying client with nothing queued is waiting for a page that
 * failed (the database was locked): it is retried by the timer. */
static int replay_stalled(const struct client *c) {
    return c->state == CLIENT_REPLAYING && buf_pending(&c->out) == 0;
}

void clients_run_timers(client_fn *retry) {
    long long now = now_ms();
    for (struct client *c = clients_next(NULL); c != NULL; c = clients_next(c)) {
        if (c->state == CLIENT_DEAD) {
            continue;
        }
        if (c->state != CLIENT_CLOSING) {
            heartbeat(c, now);
        } else if (conn_linger_over(&c->linger, c->fd, buf_pending(&c->out), now)) {
            c->state = CLIENT_DEAD; /* flushed, half-closed, and the peer closed or had long enough */
        }
        if (replay_stalled(c)) {
            retry(c);
        }
    }
}

static long long min_deadline(long long a, long long b) {
    return (a == 0 || (b != 0 && b < a)) ? b : a;
}

struct timeval clients_next_timeout(void) {
    long long next = 0, now = now_ms();
    for (struct client *c = clients_next(NULL); c != NULL; c = clients_next(c)) {
        next =
            min_deadline(next, c->state == CLIENT_CLOSING ? c->linger.until : conn_heartbeat_next(&c->beat));
        if (replay_stalled(c)) {
            next = min_deadline(next, now + REPLAY_RETRY_MS);
        }
    }
    return timeval_until(next == 0 ? now + 1000 : next); /* no timer: wake within a second anyway */
}

/* ---------------------------------------------------------------------
 * Closing them all
 * ------------------------------------------------------------------- */

void clients_drop_unsent(const char *why) {
    for (struct client *c = clients_next(NULL); c != NULL; c = clients_next(c)) {
        if (buf_pending(&c->out) > 0) {
            client_drop(c, why);
        }
    }
}

void clients_close_all(const char *why) {
    for (struct client *c = clients_next(NULL); c != NULL; c = clients_next(c)) {
        client_close_soon(c, why);
    }
}

/* Freeing while walking the table: the next client is found before the
 * current one is freed. */
void clients_free_dead(void) {
    struct client *c = clients_next(NULL);
    while (c != NULL) {
        struct client *next = clients_next(c);
        if (c->state == CLIENT_DEAD) {
            client_free(c);
        }
        c = next;
    }
}

void clients_free_all(void) {
    struct client *c;
    while ((c = clients_next(NULL)) != NULL) {
        client_free(c);
    }
}
