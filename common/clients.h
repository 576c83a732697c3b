/* clients.h -- the server's connected clients: the table of them, their
 * bounded output, accepting and refusing, the heartbeat and the closing
 * linger. The same in every step, and no step's lesson: what a step
 * teaches (HELLO, MSG, the broadcast, the replay) stays in its server.c,
 * which calls these from its select() loop.
 *
 * Where this plumbing must hand control back to the step (a line came in,
 * a client's output drained), the step passes its own function in the
 * call: clients.c is a library under four different servers, so it
 * cannot name their functions, and an argument at the call site shows the
 * reader of main() exactly where the step's code runs. */
#ifndef CHAT_CLIENTS_H
#define CHAT_CLIENTS_H

#include "buf.h"
#include "conn.h"
#include "line.h"

#include <stdint.h>
#include <sys/select.h>

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

/* The step's handlers that the plumbing calls back (see the top). */
typedef void client_line_fn(struct client *c, char *line);
typedef void client_fn(struct client *c);

/* Called before output leaves early, inside the turn (send_line() writes
 * a full output out to make room): the server commits the rows this turn
 * stored (group commit), so no line announces a row that is not stored.
 * It returns -1 when that commit failed, having dropped the clients. */
typedef int clients_barrier_fn(void);

/* The heartbeat's times (ms, from the command line) and the barrier;
 * once, at start-up. */
void clients_init(long ping_interval, long ping_timeout, clients_barrier_fn *before_write);

/* The client on fd, or NULL. */
struct client *client_at(int fd);

/* Every client in fd order: clients_next(NULL) is the first, NULL ends. */
struct client *clients_next(const struct client *after);

int clients_count(void);

/* Register a connected socket as a new client (CLIENT_NEW); NULL when out
 * of memory or randomness. It sends nothing: the client speaks first. */
struct client *client_new(int fd);

/* Close and forget it at once (the loop calls clients_free_dead()). */
void client_free(struct client *c);

/* Queue one line (printf-style, the newline added). A client whose output
 * stays full is dropped (MAX_OUTPUT); a line over MAX_LINE is logged and
 * not sent. Nothing is written here unless the output is full: the loop
 * flushes it (clients_flush()). */
void send_line(struct client *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void send_error(struct client *c, const char *reason);

/* A PONG: the next PING is due a full interval from now. */
void client_pong(struct client *c);

/* Take every connection waiting on listen_fd; refuse those past
 * MAX_CLIENTS or FD_SETSIZE with "ERR server full". */
void clients_accept(int listen_fd, int *spare_fd);

/* Put every client's socket in rd, and in wr while it has output left;
 * the highest of those fds and maxfd. */
int clients_watch(fd_set *rd, fd_set *wr, int maxfd);

/* How long select() may sleep: until the nearest timer of any client. */
struct timeval clients_next_timeout(void);

/* Read every client that is readable in rd, and hand each complete line
 * to on_line; a framing error closes the client. */
void clients_read(const fd_set *rd, client_line_fn *on_line);

/* Write out what is queued for every client; after each write, more(c)
 * may queue the next part of a long answer (a replay). */
void clients_flush(client_fn *more);

/* The heartbeat and the closing linger; and retry(c) every
 * REPLAY_RETRY_MS for a client that is replaying with nothing queued
 * (its last page failed). */
void clients_run_timers(client_fn *retry);

/* Drop every client whose output is not all written: a commit failed,
 * and that output may announce rows that were never stored. */
void clients_drop_unsent(const char *why);

/* Close every client as after an error (on stopping). */
void clients_close_all(const char *why);

/* Free the clients dropped this turn; or all of them, at exit. */
void clients_free_dead(void);
void clients_free_all(void);

#endif
