/* conn.c -- a server's connection plumbing. See conn.h. */
#include "conn.h"

#include "limits.h"
#include "log.h"
#include "net.h"
#include "options.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

int conn_parse_options(struct conn_options *o, int argc, char **argv) {
    long port = 3000;
    const struct option_spec table[] = {
        {"--host", OPTION_STRING, &o->host, 0, 0},
        {"--port", OPTION_LONG, &port, 0, 65535},
        {"--db", OPTION_STRING, &o->db_path, 0, 0},
        {"--ping-interval", OPTION_LONG, &o->ping_interval, 1, MAX_OPTION_MS},
        {"--ping-timeout", OPTION_LONG, &o->ping_timeout, 1, MAX_OPTION_MS},
    };
    o->host = "127.0.0.1";
    o->db_path = "chat.db";
    o->ping_interval = PING_INTERVAL_MS;
    o->ping_timeout = PING_TIMEOUT_MS;
    if (options_parse(argc, argv, table, sizeof table / sizeof table[0]) == -1) {
        return -1;
    }
    o->port = (int)port;
    return 0;
}

/* Out of fds: give up the spare to take one connection and refuse it.
 * -1 when there was none: EMFILE comes even with an empty queue. */
static int refuse_without_fds(int listen_fd, int *spare_fd, const char *refusal) {
    close(*spare_fd);
    int fd = net_accept(listen_fd);
    if (fd != -1) {
        log_conn("server: refused a connection: out of file descriptors");
        net_refuse(fd, refusal);
    }
    *spare_fd = open("/dev/null", O_RDONLY);
    return fd;
}

int conn_accept(int listen_fd, int *spare_fd, const char *refusal) {
    for (;;) {
        int fd = net_accept(listen_fd);
        if (fd != -1 || (errno != EMFILE && errno != ENFILE)) {
            return fd;
        }
        if (refuse_without_fds(listen_fd, spare_fd, refusal) == -1) {
            return -1;
        }
    }
}

void conn_heartbeat_reset(struct conn_heartbeat *h, long long now, long interval) {
    h->pong_by = 0;
    h->ping_at = now + interval;
}

enum conn_beat conn_heartbeat_due(struct conn_heartbeat *h, long long now, long timeout) {
    if (h->pong_by && now >= h->pong_by) {
        return BEAT_TIMEOUT;
    }
    if (!h->pong_by && now >= h->ping_at) {
        h->pong_by = now + timeout;
        return BEAT_PING;
    }
    return BEAT_NONE;
}

long long conn_heartbeat_next(const struct conn_heartbeat *h) {
    return h->pong_by ? h->pong_by : h->ping_at;
}

void conn_linger_start(struct conn_linger *l, long long now) {
    l->until = now + CLOSE_LINGER_MS;
}

int conn_linger_over(struct conn_linger *l, int fd, size_t pending, long long now) {
    if (pending == 0 && !l->shut) {
        shutdown(fd, SHUT_WR);
        l->shut = 1;
    }
    return (l->shut && l->peer_eof) || now >= l->until;
}
