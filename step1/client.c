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
 */
#include "limits.h"
#include "link.h"
#include "options.h"
#include "say.h"
#include "stop.h"
#include "typed.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

static struct {
    struct link link; /* the connection: its state, socket and timers */
    int64_t server_offset; /* the highest message id seen */
    /* the user */
    struct typed typed; /* from stdin */
    int stop_fd; /* readable once Ctrl-C, SIGTERM or SIGHUP came (stop.h) */
    int quitting; /* every typed line is taken: finishing */
    int done;
} client;

/* ---------------------------------------------------------------------
 * What the link tells us
 * ------------------------------------------------------------------- */

/* TCP is up: say HELLO with the last id we saw, and wait for WELCOME. */
static void handle_connected(void) {
    link_send_line(&client.link, "HELLO %lld", (long long)client.server_offset);
}

/* Step 1's weakness, part two: whatever we had queued for the socket,
 * and whatever the kernel had not yet delivered, is gone with it (the
 * link has cleared it). We do not know which messages reached the
 * server, so we cannot resend. */
static void handle_disconnected(void) {
    if (client.quitting) {
        client.done = 1;
    } else {
        link_reconnect_later(&client.link);
    }
}

/* ---------------------------------------------------------------------
 * What the user types
 * ------------------------------------------------------------------- */

/* Step 1's weakness, part one: not connected means the message is lost.
 * We say so, but we do not keep it. */
static void send_message(const char *text) {
    if (client.link.state != LINK_CONNECTED) {
        say("not connected, message dropped: %s", text);
        return;
    }
    link_send_line(&client.link, "MSG %s", text);
}

/* A line that cannot be a message (too long, a NUL byte): say so. */
static void refuse_line(const char *why) {
    say("%s, not sent", why);
}

/* End of input: finish what the connection holds, then leave. */
static void handle_stdin_eof(void) {
    client.quitting = 1;
    if (client.link.state != LINK_CONNECTED) {
        client.done = 1;
    }
}

/* Is there room to take one more typed line? It goes to the output. */
static int has_room(void) {
    return link_has_room(&client.link);
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
}

/* Once stdin has ended, half-close when the output is flushed: the
 * server then sends what it still has and closes. */
static void finish_if_done(void) {
    if (client.quitting) {
        link_finish(&client.link);
    }
}

static struct timeval next_timeout(void) {
    long long next = link_next_deadline(&client.link);
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

/* Ctrl-C, SIGTERM or SIGHUP: leave now. Step 1 keeps no message, so there is
 * nothing to hand over or to report. */
static void stop_now(void) {
    say("stopped");
    client.done = 1;
}

/* The link's options (link.h): where the server is, how to reconnect,
 * --verbose. This step has none of its own. */
static void parse_options(int argc, char **argv) {
    if (link_parse_options(&client.link, argc, argv, NULL, 0) == -1) {
        fprintf(stderr, LINK_USAGE " [--verbose]\n");
        exit(1);
    }
}

/* How the link reaches us: callbacks, called the moment something
 * happens. Return codes would have to climb back up through every call
 * that can lose the connection (a send, a read, a timer) to the loop. */
static const struct link_events link_events = {
    .connected = handle_connected,
    .line = handle_line,
    .flushed = NULL,
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
    return 0;
}
