/* link.c -- a client's line connection to the server, reconnecting (link.h). */
#include "link.h"
#include "backoff.h"
#include "limits.h"
#include "say.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Socket.IO's defaults: reconnectionDelay, reconnectionDelayMax,
 * randomizationFactor, and timeout (for the connection handshake). */
#define RECONNECTION_DELAY_MS 1000
#define RECONNECTION_DELAY_MAX_MS 5000
#define RANDOMIZATION_FACTOR 0.5
#define CONNECT_TIMEOUT_MS 20000

/* The options of link_parse_options()'s own table, before a step's. */
#define OWN_OPTIONS 6

int link_parse_options(struct link *l, int argc, char **argv, const struct option_spec *more, size_t n) {
    int verbose = 0;
    struct option_spec table[OWN_OPTIONS + LINK_MORE_OPTIONS] = {
        {"--host", OPTION_STRING, &l->host, 0, 0},
        {"--port", OPTION_LONG, &l->port, 1, 65535},
        {"--reconnection-delay", OPTION_LONG, &l->delay, 1, MAX_OPTION_MS},
        {"--reconnection-delay-max", OPTION_LONG, &l->delay_max, 1, MAX_OPTION_MS},
        {"--timeout", OPTION_LONG, &l->timeout, 1, MAX_OPTION_MS},
        {"--verbose", OPTION_FLAG, &verbose, 0, 0},
    };
    if (n > LINK_MORE_OPTIONS) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        table[OWN_OPTIONS + i] = more[i];
    }
    l->host = "127.0.0.1";
    l->port = 3000;
    l->delay = RECONNECTION_DELAY_MS;
    l->delay_max = RECONNECTION_DELAY_MAX_MS;
    l->timeout = CONNECT_TIMEOUT_MS;
    if (options_parse(argc, argv, table, OWN_OPTIONS + n) == -1) {
        return -1;
    }
    say_setup(verbose);
    return 0;
}

/* Queue one line for the server and write what the socket takes now, so
 * a message leaves in this loop turn; select() watches for writability
 * only while output is left. A failed write leaves its bytes pending as
 * well: link_handle() meets the error on the next turn, once it has read
 * whether the server closed. As in the server, a full output is first
 * written out to make room; if the server has stopped reading us, we drop
 * the connection. A line over MAX_LINE bytes is refused, loudly: cut
 * short, it would be another message. */
void link_send_line(struct link *l, const char *fmt, ...) {
    va_list ap, again;
    size_t before = buf_pending(&l->out);
    va_start(ap, fmt);
    va_copy(again, ap);
    int rc = buf_vprintf_line(&l->out, fmt, ap);
    if (rc == -1 && buf_flush(&l->out, l->fd) == 0) {
        before = buf_pending(&l->out);
        rc = buf_vprintf_line(&l->out, fmt, again);
    }
    va_end(again);
    va_end(ap);
    if (rc == -2) {
        say("a line over %d bytes, not sent", MAX_LINE);
    } else if (rc == -1) {
        link_disconnect(l, "output buffer full");
    } else {
        say_trace(">", l->out.data + l->out.start + before, buf_pending(&l->out) - before - 1);
        (void)buf_flush(&l->out, l->fd);
    }
}

int link_has_room(const struct link *l) {
    return buf_pending(&l->out) + MAX_LINE <= MAX_OUTPUT;
}

/* ---------------------------------------------------------------------
 * Connecting, reconnecting, disconnecting
 * ------------------------------------------------------------------- */

void link_reconnect_later(struct link *l) {
    long ms = backoff_delay(l->attempts++, l->delay, l->delay_max, RANDOMIZATION_FACTOR);
    l->reconnect_at = now_ms() + ms;
    l->state = LINK_DISCONNECTED;
    say("reconnecting in %ld ms", ms);
}

/* Whatever we had queued for the socket, and whatever the kernel had not
 * yet delivered, is gone with it. What that means for the messages is the
 * client's to say: it hears of it last, when all is cleared. */
void link_disconnect(struct link *l, const char *why) {
    say("disconnected (%s)", why);
    close(l->fd);
    l->fd = -1;
    net_dial_end(&l->dialer);
    buf_clear(&l->out);
    line_init(&l->in);
    l->shut = 0;
    l->state = LINK_DISCONNECTED;
    l->on->disconnected();
}

int link_welcomed(struct link *l, const char *ping_interval, const char *ping_timeout) {
    long interval, timeout;
    if (ping_interval == NULL || ping_timeout == NULL ||
        parse_long_arg(ping_interval, 1, MAX_OPTION_MS, &interval) == -1 ||
        parse_long_arg(ping_timeout, 1, MAX_OPTION_MS, &timeout) == -1) {
        return -1;
    }
    l->ping_interval = interval;
    l->ping_timeout = timeout;
    l->state = LINK_CONNECTED;
    l->attempts = 0;
    return 0;
}

/* TCP is up: the client says HELLO, and waits for WELCOME. */
static void tcp_connected(struct link *l) {
    net_dial_end(&l->dialer);
    l->state = LINK_HANDSHAKING;
    l->on->connected();
}

static void connect_to_server(struct link *l) {
    char err[NET_ERR_LEN];
    int done;
    l->fd = net_dial(&l->dialer, l->host, (int)l->port, &done, err);
    if (l->fd == -1) {
        say("cannot connect: %s", err);
        link_reconnect_later(l);
        return;
    }
    l->state = LINK_CONNECTING;
    l->deadline = now_ms() + l->timeout;
    if (done) {
        tcp_connected(l);
    }
}

/* That address refused us, or did not answer in time. A name may have
 * several (::1 and 127.0.0.1, say): try the next one before we wait and
 * reconnect. */
static void try_next_address(struct link *l, const char *why) {
    char err[NET_ERR_LEN];
    int done, fd = net_dial_next(&l->dialer, &done, err);
    if (fd == -1) {
        link_disconnect(l, why);
        return;
    }
    close(l->fd);
    l->fd = fd;
    l->deadline = now_ms() + l->timeout;
    if (done) {
        tcp_connected(l);
    }
}

void link_start(struct link *l, const struct link_events *on) {
    l->on = on;
    srand((unsigned)(getpid() ^ now_ms())); /* the backoff's jitter */
    buf_init(&l->out, MAX_OUTPUT);
    line_init(&l->in);
    connect_to_server(l);
}

/* The client is finishing: once the output is flushed, half-close. A
 * plain close() here could reset the connection and destroy our last
 * lines on their way. */
void link_finish(struct link *l) {
    if (l->state == LINK_CONNECTED && !l->shut && buf_pending(&l->out) == 0) {
        shutdown(l->fd, SHUT_WR);
        l->shut = 1;
    }
}

/* ---------------------------------------------------------------------
 * The loop's part
 * ------------------------------------------------------------------- */

static void handle_readable(struct link *l) {
    char *line;
    enum line_result r;
    ssize_t n = line_fill(&l->in, l->fd);
    if (n == 0 || (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        link_disconnect(l, n == 0 ? "server closed the connection" : strerror(errno));
        return;
    }
    while (l->fd != -1 && (r = line_next(&l->in, &line)) != LINE_NEED_MORE) {
        if (r == LINE_TOO_LONG) {
            link_disconnect(l, "line too long from the server");
        } else if (r == LINE_READY) {
            say_trace("<", line, strlen(line));
            l->on->line(line);
        }
    }
    /* Anything from the server proves it is alive: push the deadline
     * back. A server that goes silent for longer than a ping interval
     * and its timeout is dead, even if TCP never said so. */
    if (l->state == LINK_CONNECTED) {
        l->deadline = now_ms() + l->ping_interval + l->ping_timeout;
    }
}

static void handle_writable(struct link *l) {
    char err[NET_ERR_LEN];
    if (l->state == LINK_CONNECTING) {
        if (net_connect_result(l->fd, err) == -1) {
            try_next_address(l, err);
        } else {
            tcp_connected(l);
        }
        return;
    }
    if (buf_flush(&l->out, l->fd) == -1) {
        link_disconnect(l, strerror(errno));
    } else if (l->on->flushed != NULL) {
        l->on->flushed();
    }
}

void link_handle(struct link *l, int fd, const fd_set *rd, const fd_set *wr) {
    if (fd != -1 && fd == l->fd && FD_ISSET(fd, rd)) {
        handle_readable(l);
    }
    if (fd != -1 && fd == l->fd && FD_ISSET(fd, wr)) {
        handle_writable(l);
    }
}

int link_watch(const struct link *l, fd_set *rd, fd_set *wr, int maxfd) {
    if (l->fd != -1) {
        FD_SET(l->fd, rd);
        if (l->state == LINK_CONNECTING || buf_pending(&l->out) > 0) {
            FD_SET(l->fd, wr);
        }
        maxfd = l->fd > maxfd ? l->fd : maxfd;
    }
    return maxfd;
}

void link_run_timers(struct link *l) {
    long long now = now_ms();
    if (l->state == LINK_DISCONNECTED && now >= l->reconnect_at) {
        connect_to_server(l);
    } else if (l->state == LINK_CONNECTING && now >= l->deadline) {
        try_next_address(l, "connect timeout");
    } else if (l->state != LINK_DISCONNECTED && now >= l->deadline) {
        link_disconnect(l, l->state == LINK_CONNECTED ? "ping timeout" : "connect timeout");
    }
}

long long link_next_deadline(const struct link *l) {
    return l->state == LINK_DISCONNECTED ? l->reconnect_at : l->deadline;
}
