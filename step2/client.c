/* client.c -- the chat client.
 *
 * Reads lines from stdin and sends each one as a chat message; prints
 * every message the server broadcasts as "<id> <text>". When the
 * connection drops it reconnects, again and again, with Socket.IO's
 * backoff, and tells the server the last id it saw, so it catches up on
 * everything it missed while away.
 *
 * One process, one thread, one select() loop over stdin, the socket and
 * the timers (reconnect, connect timeout, heartbeat).
 *
 * The course builds this file in four steps, step1/ to step4/. Each
 * paragraph below says what one step did; the last is this folder's.
 *
 * Step 1, fire and forget: the guarantee is "at most once". A line typed
 * while the client is not connected is dropped (stderr says so), and a
 * line that was handed to a connection that then died is gone: the
 * client never hears back about a message, so it cannot know.
 *
 * New in step 2: a line typed while the client is not connected is kept
 * in a send buffer (Socket.IO's sendBuffer) and sent, in order, as soon as
 * the server has welcomed us again. The guarantee is still "at most
 * once": in step 2, a line that was handed to a connection that then died
 * is gone, and so is one the server could not store (it crashed, or the
 * database was locked).
 */
#include "backoff.h"
#include "buf.h"
#include "limits.h"
#include "line.h"
#include "net.h"
#include "options.h"
#include "say.h"
#include "stop.h"
#include "typed.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

/* Socket.IO's defaults: reconnectionDelay, reconnectionDelayMax,
 * randomizationFactor, and timeout (for the connection handshake). */
#define RECONNECTION_DELAY_MS 1000
#define RECONNECTION_DELAY_MAX_MS 5000
#define RANDOMIZATION_FACTOR 0.5
#define CONNECT_TIMEOUT_MS 20000

enum state {
    DISCONNECTED, /* waiting to reconnect */
    CONNECTING, /* TCP connect in progress */
    HANDSHAKING, /* HELLO sent, waiting for WELCOME */
    CONNECTED, /* WELCOME received: messages may be sent */
};

static struct {
    /* options */
    const char *host;
    int port;
    long delay, delay_max, timeout;
    /* the connection */
    enum state state;
    struct net_dialer dialer; /* the addresses of --host, tried in turn */
    int fd;
    struct line_reader in; /* from the server */
    struct buf out; /* to the server */
    long long deadline; /* hear from the server by then, or drop it */
    long long reconnect_at; /* when DISCONNECTED */
    int attempts; /* reconnections since the last success */
    long ping_interval, ping_timeout; /* the server's, from WELCOME */
    int64_t server_offset; /* the highest message id seen */
    int shut; /* we half-closed: the server will close */
    /* the user */
    struct typed typed; /* from stdin */
    char *queue[SEND_BUFFER_MAX]; /* typed, not yet sent: a ring */
    int queue_head, queue_len;
    int stop_fd; /* readable once Ctrl-C, SIGTERM or SIGHUP came (stop.h) */
    int quitting; /* every typed line is taken: finishing */
    int done;
} client;

static void disconnect(const char *why);

/* Queue one line for the server and write what the socket takes now, so
 * a message leaves in this loop turn; select() watches for writability
 * only while output is left. A failed write leaves its bytes pending as
 * well: handle_writable() meets the error on the next turn, once
 * handle_readable() has seen whether the server closed. As in the
 * server, a full output is first written out to make room; if the server
 * has stopped reading us, we drop the connection. A line over MAX_LINE
 * bytes is refused, loudly: cut short, it would be another message. */
static void send_line(const char *fmt, ...) {
    va_list ap, again;
    size_t before = buf_pending(&client.out);
    va_start(ap, fmt);
    va_copy(again, ap);
    int rc = buf_vprintf_line(&client.out, fmt, ap);
    if (rc == -1 && buf_flush(&client.out, client.fd) == 0) {
        before = buf_pending(&client.out);
        rc = buf_vprintf_line(&client.out, fmt, again);
    }
    va_end(again);
    va_end(ap);
    if (rc == -2) {
        say("a line over %d bytes, not sent", MAX_LINE);
    } else if (rc == -1) {
        disconnect("output buffer full");
    } else {
        say_trace(">", client.out.data + client.out.start + before, buf_pending(&client.out) - before - 1);
        (void)buf_flush(&client.out, client.fd);
    }
}

/* ---------------------------------------------------------------------
 * The send buffer: messages typed but not yet handed to the socket
 * ------------------------------------------------------------------- */

/* Keep one message, printf-style: it is formatted once, straight into
 * memory of its own size, and stays there until it leaves the queue.
 * -1 when out of memory. */
static int queue_push(const char *fmt, ...) {
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *copy = n < 0 ? NULL : malloc((size_t)n + 1);
    if (copy != NULL) {
        vsnprintf(copy, (size_t)n + 1, fmt, again);
        client.queue[(client.queue_head + client.queue_len++) % SEND_BUFFER_MAX] = copy;
    }
    va_end(again);
    va_end(ap);
    return copy != NULL ? 0 : -1;
}

static void queue_pop(void) {
    free(client.queue[client.queue_head]);
    client.queue_head = (client.queue_head + 1) % SEND_BUFFER_MAX;
    client.queue_len--;
}

/* Hand buffered messages to the socket, oldest first, while the output
 * has room. Called when we are welcomed and whenever the socket drains. */
static void send_buffered(void) {
    while (client.state == CONNECTED && client.queue_len > 0 &&
           buf_pending(&client.out) + MAX_LINE <= MAX_OUTPUT) {
        send_line("MSG %s", client.queue[client.queue_head]);
        queue_pop();
    }
}

/* ---------------------------------------------------------------------
 * Connecting, reconnecting, disconnecting
 * ------------------------------------------------------------------- */

static void schedule_reconnect(void) {
    long ms = backoff_delay(client.attempts++, client.delay, client.delay_max, RANDOMIZATION_FACTOR);
    client.reconnect_at = now_ms() + ms;
    client.state = DISCONNECTED;
    say("reconnecting in %ld ms", ms);
}

/* Step 2's weakness: whatever we had queued for the socket, and whatever
 * the kernel had not yet delivered, is gone with it. We do not know which
 * messages reached the server, so we cannot resend. */
static void disconnect(const char *why) {
    say("disconnected (%s)", why);
    close(client.fd);
    client.fd = -1;
    net_dial_end(&client.dialer);
    buf_clear(&client.out);
    line_init(&client.in);
    client.shut = 0;
    client.state = DISCONNECTED;
    if (client.quitting && client.queue_len == 0) {
        client.done = 1;
    } else {
        schedule_reconnect();
    }
}

/* TCP is up: say HELLO with the last id we saw, and wait for WELCOME. */
static void handle_connected(void) {
    net_dial_end(&client.dialer);
    client.state = HANDSHAKING;
    send_line("HELLO %lld", (long long)client.server_offset);
}

static void connect_to_server(void) {
    char err[NET_ERR_LEN];
    int done;
    client.fd = net_dial(&client.dialer, client.host, client.port, &done, err);
    if (client.fd == -1) {
        say("cannot connect: %s", err);
        schedule_reconnect();
        return;
    }
    client.state = CONNECTING;
    client.deadline = now_ms() + client.timeout;
    if (done) {
        handle_connected();
    }
}

/* That address refused us, or did not answer in time. A name may have
 * several (::1 and 127.0.0.1, say): try the next one before we wait and
 * reconnect. */
static void try_next_address(const char *why) {
    char err[NET_ERR_LEN];
    int done, fd = net_dial_next(&client.dialer, &done, err);
    if (fd == -1) {
        disconnect(why);
        return;
    }
    close(client.fd);
    client.fd = fd;
    client.deadline = now_ms() + client.timeout;
    if (done) {
        handle_connected();
    }
}

/* ---------------------------------------------------------------------
 * What the user types
 * ------------------------------------------------------------------- */

/* Not connected: keep the message until we are. Connected: it goes out
 * behind anything still buffered, so the order typed is the order sent. */
static void send_message(const char *text) {
    if (client.state != CONNECTED) {
        say("not connected, message buffered: %s", text);
    }
    if (queue_push("%s", text) == -1) {
        say("out of memory, message dropped: %s", text);
        return;
    }
    send_buffered();
}

/* A line that cannot be a message (too long, a NUL byte): say so. */
static void refuse_line(const char *why) {
    say("%s, not sent", why);
}

/* End of input: finish what the connection and the buffer hold, then
 * leave. Buffered messages wait for a connection, however long it takes. */
static void handle_stdin_eof(void) {
    client.quitting = 1;
    if (client.state != CONNECTED && client.queue_len == 0) {
        client.done = 1;
    }
}

/* Is there room to take one more typed line? It goes to the queue. */
static int has_room(void) {
    return client.queue_len < SEND_BUFFER_MAX;
}

/* Take typed lines while there is room for them. The others wait in
 * client.typed, and stdin is not read while any waits (watch()): the
 * user's input is held back instead of dropped. */
static void take_typed_lines(void) {
    char *line;
    const char *why;
    enum typed_result r;
    while (has_room() && (r = typed_next(&client.typed, &line, &why)) != TYPED_NONE) {
        if (r == TYPED_LINE) {
            send_message(line);
        } else {
            refuse_line(why);
        }
    }
    if (typed_done(&client.typed) && !client.quitting) {
        handle_stdin_eof();
    }
}

static void handle_stdin(void) {
    typed_fill(&client.typed, STDIN_FILENO);
    take_typed_lines();
}

/* ---------------------------------------------------------------------
 * What the server sends
 * ------------------------------------------------------------------- */

/* Our offset is past the last id the server ever issued: its database
 * is not the one our offset comes from (chat.db was deleted and the
 * server restarted, say). The server replays its rows from the start, so
 * we forget our offset and take them all. */
static void check_history(int64_t last_id) {
    if (client.server_offset > last_id) {
        say("the server's last id is %lld, below ours (%lld): a new database, catching up from the start",
            (long long)last_id, (long long)client.server_offset);
        client.server_offset = 0;
    }
}

/* WELCOME <socket-id> <ping-interval> <ping-timeout> <last-id>. The
 * numbers are checked: a hostile server must not overflow our deadlines. */
static void on_welcome(char *arg) {
    int64_t last_id;
    char *interval = strchr(arg, ' ');
    char *timeout = interval ? strchr(interval + 1, ' ') : NULL;
    char *last = timeout ? strchr(timeout + 1, ' ') : NULL;
    if (last == NULL) {
        disconnect("bad WELCOME");
        return;
    }
    *interval++ = '\0';
    *timeout++ = '\0';
    *last++ = '\0';
    if (parse_long_arg(interval, 1, MAX_OPTION_MS, &client.ping_interval) == -1 ||
        parse_long_arg(timeout, 1, MAX_OPTION_MS, &client.ping_timeout) == -1 ||
        parse_int64(last, &last_id) == -1) {
        disconnect("bad WELCOME");
        return;
    }
    client.state = CONNECTED;
    client.attempts = 0;
    say_shown("connected as ", arg);
    check_history(last_id);
    send_buffered();
}

/* CHAT <id> <text>: show it, unless we have seen that id already. */
static void on_chat(char *arg) {
    int64_t id;
    char *text = strchr(arg, ' ');
    if (text == NULL) {
        return;
    }
    *text++ = '\0';
    if (parse_int64(arg, &id) == -1 || id <= client.server_offset) {
        return;
    }
    client.server_offset = id;
    printf("%lld ", (long long)id);
    show_text(stdout, text);
    putchar('\n');
    fflush(stdout); /* a pipe must see each line at once, too */
}

/* PING: answer PONG. After our half-close a PONG cannot go out: the
 * write fails (EPIPE), and closing on that resets the connection, which
 * destroys the last lines the server has not read yet. */
static void on_ping(void) {
    if (!client.shut) {
        send_line("PONG");
    }
}

/* ERR <reason>: the server is about to close, and says why. */
static void on_err(const char *arg) {
    say_shown("server says: ", arg);
}

/* Split "VERB rest" and dispatch, as the server does. */
static void handle_line(char *line) {
    char *arg = strchr(line, ' ');
    if (arg != NULL) {
        *arg++ = '\0';
    } else {
        arg = line + strlen(line);
    }
    if (strcmp(line, "WELCOME") == 0) {
        on_welcome(arg);
    } else if (strcmp(line, "CHAT") == 0) {
        on_chat(arg);
    } else if (strcmp(line, "PING") == 0) {
        on_ping();
    } else if (strcmp(line, "ERR") == 0) {
        on_err(arg);
    }
}

static void handle_readable(void) {
    char *line;
    enum line_result r;
    ssize_t n = line_fill(&client.in, client.fd);
    if (n == 0 || (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        disconnect(n == 0 ? "server closed the connection" : strerror(errno));
        return;
    }
    while (client.fd != -1 && (r = line_next(&client.in, &line)) != LINE_NEED_MORE) {
        if (r == LINE_TOO_LONG) {
            disconnect("line too long from the server");
        } else if (r == LINE_READY) {
            say_trace("<", line, strlen(line));
            handle_line(line);
        }
    }
    /* Anything from the server proves it is alive: push the deadline
     * back. A server that goes silent for longer than a ping interval
     * and its timeout is dead, even if TCP never said so. */
    if (client.state == CONNECTED) {
        client.deadline = now_ms() + client.ping_interval + client.ping_timeout;
    }
}

static void handle_writable(void) {
    char err[NET_ERR_LEN];
    if (client.state == CONNECTING) {
        if (net_connect_result(client.fd, err) == -1) {
            try_next_address(err);
        } else {
            handle_connected();
        }
        return;
    }
    if (buf_flush(&client.out, client.fd) == -1) {
        disconnect(strerror(errno));
    } else {
        send_buffered();
    }
}

/* ---------------------------------------------------------------------
 * Timers and the loop
 * ------------------------------------------------------------------- */

static void run_timers(void) {
    long long now = now_ms();
    if (client.done) {
        return; /* leaving: an old reconnect timer must not connect again */
    }
    if (client.state == DISCONNECTED && now >= client.reconnect_at) {
        connect_to_server();
    } else if (client.state == CONNECTING && now >= client.deadline) {
        try_next_address("connect timeout");
    } else if (client.state != DISCONNECTED && now >= client.deadline) {
        disconnect(client.state == CONNECTED ? "ping timeout" : "connect timeout");
    }
}

/* Once stdin has ended and the output is flushed, half-close: the server
 * then sends what it still has and closes. A plain close() here could
 * reset the connection and destroy our last lines on their way. */
static void finish_if_done(void) {
    if (client.quitting && client.state == CONNECTED && !client.shut && client.queue_len == 0 &&
        buf_pending(&client.out) == 0) {
        shutdown(client.fd, SHUT_WR);
        client.shut = 1;
    }
}

static struct timeval next_timeout(void) {
    long long next = client.state == DISCONNECTED ? client.reconnect_at : client.deadline;
    long long ms = next - now_ms();
    if (ms < 0) {
        ms = 0;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* Read stdin only while no typed line waits for room. */
static int watch(fd_set *rd, fd_set *wr) {
    int maxfd = client.stop_fd;
    FD_ZERO(rd);
    FD_ZERO(wr);
    FD_SET(client.stop_fd, rd);
    if (typed_wants_input(&client.typed)) {
        FD_SET(STDIN_FILENO, rd);
    }
    if (client.fd != -1) {
        FD_SET(client.fd, rd);
        if (client.state == CONNECTING || buf_pending(&client.out) > 0) {
            FD_SET(client.fd, wr);
        }
        maxfd = client.fd > maxfd ? client.fd : maxfd;
    }
    return maxfd;
}

/* Ctrl-C, SIGTERM or SIGHUP: leave now. What the buffer still holds is lost
 * with us: say so, message by message. */
static void stop_now(void) {
    say("stopped");
    while (client.queue_len > 0) {
        say("stopped, message not sent: %s", client.queue[client.queue_head]);
        queue_pop();
    }
    client.done = 1;
}

static void usage(void) {
    fprintf(stderr, "usage: client [--host ADDR] [--port N] [--reconnection-delay MS]"
                    " [--reconnection-delay-max MS] [--timeout MS] [--verbose]\n");
    exit(1);
}

static void parse_options(int argc, char **argv) {
    long port = 3000;
    int verbose = 0;
    const struct option_spec options[] = {
        {"--host", OPTION_STRING, &client.host, 0, 0},
        {"--port", OPTION_LONG, &port, 1, 65535},
        {"--reconnection-delay", OPTION_LONG, &client.delay, 1, MAX_OPTION_MS},
        {"--reconnection-delay-max", OPTION_LONG, &client.delay_max, 1, MAX_OPTION_MS},
        {"--timeout", OPTION_LONG, &client.timeout, 1, MAX_OPTION_MS},
        {"--verbose", OPTION_FLAG, &verbose, 0, 0},
    };
    client.host = "127.0.0.1";
    client.delay = RECONNECTION_DELAY_MS;
    client.delay_max = RECONNECTION_DELAY_MAX_MS;
    client.timeout = CONNECT_TIMEOUT_MS;
    if (options_parse(argc, argv, options, sizeof options / sizeof options[0]) == -1) {
        usage();
    }
    client.port = (int)port;
    say_set_verbose(verbose);
}

int main(int argc, char **argv) {
    stdio_ensure_open(); /* before any open(): see util.h */
    parse_options(argc, argv);
    ignore_sigpipe();
    client.stop_fd = stop_pipe_open();
    if (client.stop_fd == -1) {
        perror("client: cannot set up the signal pipe");
        return 1;
    }
    srand((unsigned)(getpid() ^ now_ms()));
    buf_init(&client.out, MAX_OUTPUT);
    typed_init(&client.typed);
    line_init(&client.in);
    connect_to_server();
    while (!client.done) {
        fd_set rd, wr;
        int fd = client.fd, maxfd = watch(&rd, &wr);
        struct timeval tv = next_timeout();
        if (select(maxfd + 1, &rd, &wr, NULL, &tv) == -1) {
            if (errno == EINTR) {
                continue;
            }
            perror("client: select");
            return 1;
        }
        if (FD_ISSET(client.stop_fd, &rd)) {
            stop_now();
            break;
        }
        if (FD_ISSET(STDIN_FILENO, &rd)) {
            handle_stdin();
        }
        if (fd != -1 && fd == client.fd && FD_ISSET(fd, &rd)) {
            handle_readable();
        }
        if (fd != -1 && fd == client.fd && FD_ISSET(fd, &wr)) {
            handle_writable();
        }
        run_timers();
        take_typed_lines(); /* room may have come: a flush, an ack */
        finish_if_done();
    }
    return 0;
}
