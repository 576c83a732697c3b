/* client.c -- the chat client.
 *
 * Reads lines from stdin and sends each one as a chat message; prints
 * every message the server broadcasts as "<id> <text>". When the
 * connection drops it reconnects, again and again, with Socket.IO's
 * backoff, and tells the server the last id it saw, so it catches up on
 * everything it missed while away.
 *
 * One process, one thread, one select() loop over stdin, the socket and
 * the timers. The connection's plumbing, the same in every step, is
 * common/link.c (as Socket.IO keeps it in its Manager): this file keeps
 * what the client does with messages.
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
 *
 * New in step 3: the server acks a message once it is stored, and a
 * message leaves the queue only when its ack arrives. One message is in
 * flight at a time, so the order typed is the order stored. No ack within
 * --ack-timeout, or the connection dropped: the attempt failed, and the
 * message is sent again, up to --retries more times (Socket.IO's
 * ackTimeout and retries). A message that runs out of retries is given up,
 * loudly: stderr names it, and the exit status is 1. The guarantee is "at
 * least once", and in step 3 its weakness is the duplicate: if the message
 * was stored but its ack was lost, the retry stores it again.
 *
 * New in step 4: each message carries a client offset, "<client-id>-<n>",
 * fixed when the line is typed, so every retry of it carries the same one.
 * The server stores it in a UNIQUE column: a retry of a message that is
 * already stored is acked and not stored again. The client id is 8 random
 * bytes drawn from the operating system at start-up, so offsets are
 * unique across clients even while they are offline (unlike the Socket.IO
 * tutorial's, built from socket.id, which is unset while disconnected).
 * The guarantee is "exactly once" for every message that is acked within
 * its retries; a message given up is still said so, loudly.
 */
#include "limits.h"
#include "link.h"
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
#include <unistd.h>

/* Socket.IO's tutorial values: wait 10 s for an ack, then retry up to 3
 * times (4 attempts in all). */
#define ACK_TIMEOUT_MS 10000
#define RETRIES 3

static struct {
    struct link link; /* the connection: its state, socket and timers */
    long ack_timeout, retries; /* options; retries -1: for ever */
    int64_t server_offset; /* the highest message id seen */
    /* the user */
    struct typed typed; /* from stdin */
    char *queue[SEND_BUFFER_MAX]; /* typed, not yet acked: a ring */
    int queue_head, queue_len;
    int in_flight; /* the queue's head was sent, no ack yet */
    int tries; /* attempts at the head so far */
    long long ack_id; /* the current attempt's; new every attempt */
    long long ack_deadline; /* when the current attempt has failed */
    int given_up; /* messages that ran out of retries */
    char client_id[17]; /* random, hex: the first half of every offset */
    long long counter; /* the second half: messages typed so far */
    int stop_fd; /* readable once Ctrl-C, SIGTERM or SIGHUP came (stop.h) */
    int quitting; /* every typed line is taken: finishing */
    int done;
} client;

/* ---------------------------------------------------------------------
 * The send buffer: messages typed but not yet handed to the socket
 * ------------------------------------------------------------------- */

/* Keep one message, printf-style: it is formatted once, straight into
 * memory of its own size, and stays there until it leaves the queue.
 * -1 when out of memory. */
static int queue_push(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *copy = str_vprintf(fmt, ap);
    va_end(ap);
    if (copy != NULL) {
        client.queue[(client.queue_head + client.queue_len++) % SEND_BUFFER_MAX] = copy;
    }
    return copy != NULL ? 0 : -1;
}

static void queue_pop(void) {
    client.tries = 0;
    free(client.queue[client.queue_head]);
    client.queue_head = (client.queue_head + 1) % SEND_BUFFER_MAX;
    client.queue_len--;
}

/* Send the oldest message, unless one is already waiting for its ack.
 * Each attempt has a new ack id, so a late ack for an earlier attempt
 * cannot be taken for this one. The ack timer starts now, when the
 * message is sent: never while it only waits in the queue. */
static void send_buffered(void) {
    if (client.link.state != LINK_CONNECTED || client.queue_len == 0 || client.in_flight) {
        return;
    }
    client.in_flight = 1;
    client.tries++;
    client.ack_id++;
    client.ack_deadline = now_ms() + client.ack_timeout;
    link_send_line(&client.link, "MSG %lld %s", client.ack_id, client.queue[client.queue_head]);
}

/* The attempt in flight failed: no ack in time, or the connection
 * dropped. Send it again, unless it has used all its retries: then give
 * it up, and say so. */
static void attempt_failed(const char *why) {
    client.in_flight = 0;
    if (client.retries >= 0 && client.tries > client.retries) {
        say("gave up after %d attempts (%s): %s", client.tries, why, client.queue[client.queue_head]);
        client.given_up++;
        queue_pop();
    } else {
        say("no ack (%s), will send again: %s", why, client.queue[client.queue_head]);
    }
    send_buffered();
}

/* ACK <ack-id>: the message is stored. Only the current attempt's ack
 * counts; an earlier attempt's (it came too late) is ignored. */
static void on_ack(const char *arg) {
    int64_t id;
    if (parse_int64(arg, &id) == 0 && client.in_flight && id == client.ack_id) {
        client.in_flight = 0;
        queue_pop();
        send_buffered();
    }
}

/* REJECT <ack-id> <reason>: the server will never store that message (it
 * is empty, say, or too long for it). Retrying cannot help: give it up
 * now, loudly, and go on with the next one. */
static void on_reject(char *arg) {
    int64_t id;
    char *reason = arg, *ack_word = next_word(&reason);
    if (parse_int64(ack_word, &id) == 0 && client.in_flight && id == client.ack_id) {
        say_shown("the server rejected a message: ", reason != NULL ? reason : "");
        say("gave up (rejected): %s", client.queue[client.queue_head]);
        client.in_flight = 0;
        client.given_up++;
        queue_pop();
        send_buffered();
    }
}

/* ---------------------------------------------------------------------
 * What the link tells us
 * ------------------------------------------------------------------- */

/* TCP is up: say HELLO with the last id we saw, and wait for WELCOME. */
static void handle_connected(void) {
    link_send_line(&client.link, "HELLO %lld", (long long)client.server_offset);
}

/* Whatever we had queued for the socket is gone with it (the link has
 * cleared it), but no message is lost: it stays in the queue until its
 * ack. A message in flight counts as a failed attempt (as in Socket.IO
 * since 4.7.5), and goes out again as soon as we are welcomed back. */
static void handle_disconnected(void) {
    if (client.in_flight) {
        attempt_failed("disconnected");
    }
    if (client.quitting && client.queue_len == 0) {
        client.done = 1;
    } else {
        link_reconnect_later(&client.link);
    }
}

/* ---------------------------------------------------------------------
 * What the user types
 * ------------------------------------------------------------------- */

/* Not connected: keep the message until we are. Connected: it goes out
 * behind anything still buffered, so the order typed is the order sent.
 * The client offset is chosen here, once: the queue holds
 * "<client-offset> <text>", and every attempt sends exactly that. */
static void send_message(const char *text) {
    if (client.link.state != LINK_CONNECTED) {
        say("not connected, message buffered: %s", text);
    }
    if (queue_push("%s-%lld %s", client.client_id, client.counter++, text) == -1) {
        say("out of memory, message dropped: %s", text);
        return;
    }
    send_buffered();
}

/* A line that cannot be a message (too long, a NUL byte): say so, and
 * count it as given up. */
static void refuse_line(const char *why) {
    say("%s, not sent", why);
    client.given_up++;
}

/* End of input: leave once every message is acked or given up. */
static void handle_stdin_eof(void) {
    client.quitting = 1;
    if (client.link.state != LINK_CONNECTED && client.queue_len == 0) {
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
    typed_take(&client.typed, has_room, send_message, refuse_line);
    if (typed_done(&client.typed) && !client.quitting) {
        handle_stdin_eof();
    }
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
 * numbers are checked: a hostile server must not overflow our deadlines
 * (the link checks its two). */
static void on_welcome(char *arg) {
    char *id = next_word(&arg), *interval = next_word(&arg), *timeout = next_word(&arg);
    int64_t last_id;
    if (arg == NULL || parse_int64(arg, &last_id) == -1 ||
        link_welcomed(&client.link, interval, timeout) == -1) {
        link_disconnect(&client.link, "bad WELCOME");
        return;
    }
    say_shown("connected as ", id);
    check_history(last_id);
    send_buffered();
}

/* CHAT <id> <text>: show it, unless we have seen that id already. */
static void on_chat(char *arg) {
    int64_t id;
    char *text = arg, *id_word = next_word(&text);
    if (text == NULL || parse_int64(id_word, &id) == -1 || id <= client.server_offset) {
        return;
    }
    client.server_offset = id;
    printf("%lld ", (long long)id);
    show_text(stdout, text);
    putchar('\n'); /* main() flushes stdout before it sleeps */
}

/* PING: answer PONG. After our half-close a PONG cannot go out: the
 * write fails (EPIPE), and closing on that resets the connection, which
 * destroys the last lines the server has not read yet. */
static void on_ping(void) {
    if (!client.link.shut) {
        link_send_line(&client.link, "PONG");
    }
}

/* ERR <reason>: the server is about to close, and says why. */
static void on_err(const char *arg) {
    say_shown("server says: ", arg);
}

/* Split "VERB rest" and dispatch, as the server does. */
static void handle_line(char *line) {
    char *arg = line, *verb = next_word(&arg);
    arg = arg != NULL ? arg : verb + strlen(verb); /* no argument: "" */
    if (strcmp(verb, "WELCOME") == 0) {
        on_welcome(arg);
    } else if (strcmp(verb, "CHAT") == 0) {
        on_chat(arg);
    } else if (strcmp(verb, "ACK") == 0) {
        on_ack(arg);
    } else if (strcmp(verb, "REJECT") == 0) {
        on_reject(arg);
    } else if (strcmp(verb, "PING") == 0) {
        on_ping();
    } else if (strcmp(verb, "ERR") == 0) {
        on_err(arg);
    }
}

/* ---------------------------------------------------------------------
 * Timers and the loop
 * ------------------------------------------------------------------- */

static void run_timers(void) {
    if (client.done) {
        return; /* leaving: an old reconnect timer must not connect again */
    }
    link_run_timers(&client.link);
    if (client.in_flight && now_ms() >= client.ack_deadline) {
        attempt_failed("ack timeout");
    }
}

/* Once stdin has ended, half-close when the output is flushed: the
 * server then sends what it still has and closes. */
static void finish_if_done(void) {
    if (client.quitting && client.queue_len == 0) {
        link_finish(&client.link);
    }
}

static struct timeval next_timeout(void) {
    long long next = link_next_deadline(&client.link);
    if (client.in_flight && client.ack_deadline < next) {
        next = client.ack_deadline;
    }
    return timeval_until(next);
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
    return link_watch(&client.link, rd, wr, maxfd);
}

/* Ctrl-C, SIGTERM or SIGHUP: leave now. Every message not yet acked is given
 * up, loudly: it may or may not be stored, and we will never know. */
static void stop_now(void) {
    say("stopped");
    while (client.queue_len > 0) {
        say("stopped, gave up: %s", client.queue[client.queue_head]);
        client.given_up++;
        queue_pop();
    }
    client.done = 1;
}

/* The link's options (link.h): where the server is, how to reconnect,
 * --verbose. And this step's own: how long to wait for an ack, and how
 * often to try again. */
static void parse_options(int argc, char **argv) {
    const struct option_spec options[] = {
        {"--ack-timeout", OPTION_LONG, &client.ack_timeout, 1, MAX_OPTION_MS},
        {"--retries", OPTION_LONG_OR_INF, &client.retries, 0, 1000000},
    };
    client.ack_timeout = ACK_TIMEOUT_MS;
    client.retries = RETRIES;
    if (link_parse_options(&client.link, argc, argv, options, sizeof options / sizeof options[0]) == -1) {
        fprintf(stderr, LINK_USAGE " [--ack-timeout MS] [--retries N|inf] [--verbose]\n");
        exit(1);
    }
}

/* How the link reaches us: callbacks, called the moment something
 * happens. Return codes would have to climb back up through every call
 * that can lose the connection (a send, a read, a timer) to the loop. */
static const struct link_events link_events = {
    .connected = handle_connected,
    .line = handle_line,
    .flushed = send_buffered,
    .disconnected = handle_disconnected,
};

int main(int argc, char **argv) {
    stdio_ensure_open(); /* before any open(): see util.h */
    parse_options(argc, argv);
    ignore_sigpipe();
    client.stop_fd = stop_pipe_open();
    if (client.stop_fd == -1) {
        perror("client: cannot set up the signal pipe");
        return 1;
    }
    /* 8 random bytes from the operating system: two clients share an id
     * with a chance of about 1 in 2^64 per pair, never in practice. */
    if (random_hex(client.client_id, 8) == -1) {
        fprintf(stderr, "client: cannot read /dev/urandom\n");
        return 1;
    }
    typed_init(&client.typed);
    link_start(&client.link, &link_events);
    while (!client.done) {
        fd_set rd, wr;
        int fd = client.link.fd, maxfd = watch(&rd, &wr);
        struct timeval tv = next_timeout();
        fflush(stdout); /* the lines shown this turn, at once: a pipe sees each before we sleep */
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
            typed_fill(&client.typed, STDIN_FILENO);
            take_typed_lines();
        }
        link_handle(&client.link, fd, &rd, &wr);
        run_timers();
        take_typed_lines(); /* room may have come: a flush, an ack */
        finish_if_done();
    }
    if (client.given_up > 0) {
        say("%d message(s) given up", client.given_up);
    }
    return client.given_up > 0 ? 1 : 0;
}
