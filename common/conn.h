/* conn.h -- a server's connection plumbing, the same in every step and
 * part of no step's lesson: accepting when out of descriptors, the
 * heartbeat's deadlines, and the linger before closing after an error. */
#ifndef CHAT_CONN_H
#define CHAT_CONN_H

#include <stddef.h>

/* The server's command line, the same in every step. The heartbeat's
 * defaults are Socket.IO's: a PING every 25 s, its PONG due within 20 s. */
#define PING_INTERVAL_MS 25000
#define PING_TIMEOUT_MS 20000
#define CONN_USAGE                                                                                           \
    "usage: server [--host ADDR] [--port N] [--db FILE] [--ping-interval MS] [--ping-timeout MS]\n"

struct conn_options {
    const char *host; /* --host, 127.0.0.1 */
    int port; /* --port, 3000 (0: any free port) */
    const char *db_path; /* --db, chat.db */
    long ping_interval, ping_timeout; /* --ping-interval, --ping-timeout (ms) */
};

/* Fill o from argv, defaults first. Every option takes a value: --name
 * value. -1 on an unknown option or a bad value (the caller prints
 * CONN_USAGE and exits: start-up may die, this helper does not). */
int conn_parse_options(struct conn_options *o, int argc, char **argv);

/* Accept one connection, as net_accept() does, but never busy-loop when
 * out of descriptors. Then accept() fails with EMFILE and the connection
 * stays in the queue, so select() reports it again and again. So the
 * server keeps one spare fd (*spare_fd, open on /dev/null), gives it up
 * to accept that connection, refuses it at once with net_refuse(fd,
 * refusal) (no fd is left to spare for a linger), and opens the spare
 * again. Returns the new fd, or -1 when there is nothing more to accept
 * now (errno EAGAIN: none waiting; anything else: try on the next turn). */
int conn_accept(int listen_fd, int *spare_fd, const char *refusal);

/* A heartbeat (Socket.IO's): a PING every interval, its PONG due within
 * the timeout. A peer that does not answer is gone, even if TCP did not
 * say so. */
struct conn_heartbeat {
    long long ping_at; /* when to send the next PING */
    long long pong_by; /* when the PONG is due; 0 if no PING is out */
};

enum conn_beat {
    BEAT_NONE, /* nothing due yet */
    BEAT_PING, /* send a PING now: its PONG is due by now + timeout */
    BEAT_TIMEOUT /* the PONG did not come in time: the peer is gone */
};

/* On connect, and on each PONG: the next PING is due interval from now. */
void conn_heartbeat_reset(struct conn_heartbeat *h, long long now, long interval);

/* What is due at `now`. */
enum conn_beat conn_heartbeat_due(struct conn_heartbeat *h, long long now, long timeout);

/* When the heartbeat next needs the loop (for select()'s timeout). */
long long conn_heartbeat_next(const struct conn_heartbeat *h);

/* The close after an error (CLOSE_LINGER_MS in limits.h): stop taking
 * requests, flush what is queued, half-close, and let the peer close
 * first, for at most CLOSE_LINGER_MS. */
struct conn_linger {
    long long until; /* the peer has until then to close */
    int peer_eof; /* the peer will send nothing more (also outside a linger) */
    int shut; /* we half-closed our side */
};

void conn_linger_start(struct conn_linger *l, long long now);

/* Half-close fd once no output is pending; 1 when the connection may be
 * closed now (the peer closed too, or its time is up), else 0. */
int conn_linger_over(struct conn_linger *l, int fd, size_t pending, long long now);

#endif
