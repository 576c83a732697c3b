/* link.h -- a client's line connection to the server, reconnecting: the
 * same in every step and part of no step's lesson.
 *
 * Socket.IO draws the same line. Its Manager dials, times the connect
 * out, reconnects with backoff and watches the heartbeat; the tutorial's
 * code only sends events, keeps what it could not send, and waits for
 * acks. So here: a link dials the addresses of --host in turn, gives each
 * connect --timeout, reconnects with Socket.IO's backoff (backoff.h),
 * drops a server that stays silent past its ping interval and timeout,
 * writes lines through a bounded output, and half-closes when the client
 * finishes. What the client sends, when, and what becomes of a message
 * when the connection drops stays in each step's client.c: that is the
 * lesson. */
#ifndef CHAT_LINK_H
#define CHAT_LINK_H

#include "buf.h"
#include "line.h"
#include "net.h"
#include "options.h"

#include <stddef.h>
#include <sys/select.h>

enum link_state {
    LINK_DISCONNECTED, /* waiting to reconnect */
    LINK_CONNECTING, /* TCP connect in progress */
    LINK_HANDSHAKING, /* HELLO sent, waiting for WELCOME */
    LINK_CONNECTED, /* WELCOME received: messages may be sent */
};

/* What the link tells its client, at the moment it happens: a send that
 * finds the server gone disconnects there and then, deep in the client's
 * own call, and the client must hear of it before that call returns. */
struct link_events {
    void (*connected)(void); /* TCP is up (HANDSHAKING): say HELLO */
    void (*line)(char *line); /* a line from the server, no newline */
    void (*flushed)(void); /* the socket took output: room again? (or NULL) */
    /* The connection is gone (DISCONNECTED), and the output with it:
     * call link_reconnect_later(), or do not if the client is finishing. */
    void (*disconnected)(void);
};

struct link {
    /* options */
    const char *host;
    long port;
    long delay, delay_max, timeout;
    /* the connection */
    const struct link_events *on;
    enum link_state state;
    struct net_dialer dialer; /* the addresses of --host, tried in turn */
    int fd;
    struct line_reader in; /* from the server */
    struct buf out; /* to the server */
    long long deadline; /* hear from the server by then, or drop it */
    long long reconnect_at; /* when DISCONNECTED */
    int attempts; /* reconnections since the last success */
    long ping_interval, ping_timeout; /* the server's, from WELCOME */
    int shut; /* we half-closed: the server will close */
};

/* The options every client takes; usage lines start with LINK_USAGE. */
#define LINK_USAGE                                                                                           \
    "usage: client [--host ADDR] [--port N] [--reconnection-delay MS] [--reconnection-delay-max MS]"         \
    " [--timeout MS]"

/* Up to this many options of a step's own come on top (link_parse_options). */
#define LINK_MORE_OPTIONS 4

/* Parse the command line: the link's options (defaults first, Socket.IO's),
 * --verbose (say_setup()), and the n options of the step's own table
 * more. 0 on success, -1 on any error: the caller prints its usage. */
int link_parse_options(struct link *l, int argc, char **argv, const struct option_spec *more, size_t n);

/* Start: the buffers, the backoff's random seed, and the first connect. */
void link_start(struct link *l, const struct link_events *on);

/* Queue one line for the server (printf-style, the "\n" is added) and
 * write what the socket takes now. A line over MAX_LINE is refused, out
 * loud; a full output the server does not drain disconnects. */
void link_send_line(struct link *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* 1 if the output has room for one more line of MAX_LINE bytes. */
int link_has_room(const struct link *l);

/* The server welcomed us with its heartbeat, the two numbers of WELCOME:
 * CONNECTED, and the backoff starts over. They are checked first (a
 * hostile server must not overflow our deadlines): -1, and nothing
 * changed, if either is not a number of ms in [1, MAX_OPTION_MS]. */
int link_welcomed(struct link *l, const char *ping_interval, const char *ping_timeout);

/* Drop the connection, saying why, and tell the client (disconnected). */
void link_disconnect(struct link *l, const char *why);

/* Reconnect after the backoff's next delay, saying when. */
void link_reconnect_later(struct link *l);

/* Once the client has nothing more to send and the output is written
 * out, half-close: the server then sends what it still has and closes. */
void link_finish(struct link *l);

/* The link's part of the select() call: add its socket to rd and wr as
 * it needs, and return the larger of maxfd and that socket. */
int link_watch(const struct link *l, fd_set *rd, fd_set *wr, int maxfd);

/* After select(): read and write the socket if it is ready. fd is the
 * socket the sets were made for (l->fd before select()): if the link has
 * dropped it since, in this turn, its bits are stale and are ignored. */
void link_handle(struct link *l, int fd, const fd_set *rd, const fd_set *wr);

/* The link's timers: reconnect, connect timeout, the server's silence. */
void link_run_timers(struct link *l);

/* When the link's next timer is due (for select()'s timeout). */
long long link_next_deadline(const struct link *l);

#endif
