/* proxy.c -- a fault-injecting TCP proxy for the line-protocol chat.
 *
 * Why it exists: the delivery lab must break the network at *exact* points
 * of the protocol ("lose the 3rd MSG", "lose the ACK of the 2nd MSG", "the
 * link hangs after the 1st MSG"). A real network fails at random; this
 * proxy fails on command, so every scenario is reproducible.
 *
 *     clients --> [proxy :listen-port] --> server :server-port
 *                       ^
 *                       | commands: stdin, or TCP :control-port
 *
 * Usage:
 *   tests/proxy --server-port N [--server-host 127.0.0.1] [--listen-port N]
 *               [--control-port N] [--fault "CMD"]...
 * Port 0 (the default for listen and control) lets the OS choose. When
 * ready, the proxy prints one line on stderr that tells the ports:
 *   proxy: listening on 127.0.0.1:L, control on 127.0.0.1:C, forwarding to H:S
 * --fault runs a command at start-up, as if it had been typed.
 *
 * Commands: one per line, on stdin (reply on stdout) or on any TCP
 * connection to the control port (reply there), e.g.
 *   printf 'cut-after 2\n' | nc 127.0.0.1 C
 * Every command gets exactly one line back: "OK ..." or "ERR <reason>".
 *   down [MS]     close every proxied connection; refuse new ones (accept,
 *                 then close) until "up", or for MS milliseconds.
 *   up            end "down".
 *   cut-before N  the Nth "MSG " line from now is dropped and its client is
 *                 disconnected; the server gets the earlier lines, then EOF.
 *   cut-after N   the Nth "MSG " line from now reaches the server, then the
 *                 client is disconnected: the server's reply (ACK) is lost.
 *   hold-after N  the Nth "MSG " line reaches the server, then that
 *                 connection freezes both ways (bytes are read and kept).
 *   blackhole     every connection silently eats all bytes, never closes.
 *   delay MS      every line, both ways, is forwarded MS ms after arrival.
 *   delay-replies MS  every line from the server is forwarded MS ms after
 *                 arrival (added to "delay"); client lines go at once.
 *   clear         remove every fault (armed or active) and end "down".
 *   status        "OK conns=.. msgs=.. held=.. fired=.. down=0|1
 *                 inflight=.. inflight-max=..": inflight is the most
 *                 messages in flight on any open connection (MSG lines
 *                 forwarded to the server, no ACK or REJECT forwarded
 *                 back for their ack id yet; a MSG whose text is already
 *                 in flight is a resend, not one more); inflight-max is
 *                 the most since the proxy started; refused counts the
 *                 clients turned away (accepted, closed) since then.
 * N counts "MSG " lines sent by clients, on all connections together,
 * starting when the command is given.
 *
 * Design: one thread, one select() loop, non-blocking sockets, every buffer
 * bounded. Each loop turn (1) waits, (2) reads, connects and accepts,
 * (3) "services": frames lines, applies faults, writes, closes. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "limits.h" /* MAX_LINE */
#include "util.h" /* now_ms(): CLOCK_MONOTONIC, so a clock change cannot fire or stall our timers */

/* ---- limits: every bound of the proxy, in one place --------------------- */

/* Each limit's comment stands above it: after the value it would not fit
 * on the line, and clang-format would break the #define across lines. */

/* Longest protocol line, '\n' included: the product's; a longer one passes raw, uncounted. */
#define PROTO_LINE_MAX MAX_LINE
/* Most bytes in any one connection buffer; when full we stop reading that side. */
#define BUF_CAP (1024 * 1024)
#define READ_CHUNK 16384 /* bytes per read() */
#define MAX_CONNS 64 /* proxied connections; more are refused */
#define MAX_CTLS 8 /* control connections; more are refused */
#define CTL_LINE_MAX 512 /* longest command line */
/* Unread replies before we drop a control connection. */
#define CTL_OUT_CAP 65536
#define MAX_STARTUP_FAULTS 32 /* --fault options */
#define CONNECT_TIMEOUT_MS 5000 /* give up on a server connect() */
/* After one side closed: the most time to flush and wait for the other side. */
#define LINGER_MS 2000
#define MAX_MS 86400000LL /* longest accepted delay / down time */
#define MAX_N 1000000000LL /* largest accepted N */
/* Unanswered MSGs tracked per connection; past it, inflight stays at this number. */
#define MAX_PENDING 256

/* ---- data --------------------------------------------------------------- */

/* A growable byte queue: appended at the end, consumed from the front.
 * Not common/buf.h's bounded socket buffer: faults read and rewrite these
 * bytes in place before anything is written. Callers check the room before
 * appending, so len never passes the bound they care about (BUF_CAP,
 * CTL_OUT_CAP...). */
struct bytes {
    char *data;
    size_t len;
    size_t cap;
};

enum side { CLIENT = 0, SERVER = 1 };
static const char *const side_name[2] = {"client", "server"};

/* One direction of a connection: bytes read from fd[i], written to
 * fd[1 - i]. Bytes move in -> (dq) -> out; faults act between in and dq. */
struct dir {
    struct bytes in; /* read, not yet framed (or held by hold-after) */
    struct bytes dq; /* delayed chunks: [struct chunk_hdr][bytes]... */
    struct bytes out; /* ready to be written */
    bool skipping; /* inside an overlong line: pass raw up to its '\n' */
    bool eof; /* the source will send nothing more */
    bool shut; /* EOF was passed on: shutdown(SHUT_WR) on the dest */
};

/* Header of a delayed chunk, copied with memcpy (no alignment games). */
struct chunk_hdr {
    int64_t due; /* CLOCK_MONOTONIC ms when it may be forwarded */
    size_t len;
    bool whole; /* a complete line (it may be a MSG or an ACK) */
};

/* A MSG forwarded to the server and not answered yet: its ack id (-1 if
 * it has none, steps 1-2) and a hash of the rest of the line. */
struct pending {
    long long ack;
    uint64_t hash;
};

struct conn {
    long long id; /* for the log only */
    int fd[2]; /* indexed by enum side; -1 once closed */
    bool connecting; /* non-blocking connect() to the server pending */
    bool held; /* hold-after fired: nothing is framed any more */
    int64_t connect_by; /* give up connecting at this time */
    int64_t close_by; /* 0, or hard close at this time (lingering) */
    const char *end; /* set: free this connection at end of turn */
    struct pending pending[MAX_PENDING]; /* the MSGs in flight */
    int inflight; /* how many of pending[] are used */
    struct dir dir[2]; /* dir[i] carries the bytes read from fd[i] */
};

/* A command source: stdin or one control connection. */
struct chan {
    int fd;
    bool is_stdin; /* replies go to stdout instead of back on fd */
    bool closing; /* peer gone: send what is left of the replies, close */
    bool skipping; /* dropping the rest of an overlong command */
    struct bytes in;
    struct bytes out;
};

/* One-shot faults. They fire on one MSG line, then disarm themselves. */
enum shot_kind { CUT_BEFORE, CUT_AFTER, HOLD_AFTER, SHOT_KINDS };
#define NO_SHOT SHOT_KINDS
static const char *const shot_name[SHOT_KINDS] = {"cut-before", "cut-after", "hold-after"};

struct shot {
    bool armed;
    long long target; /* fires when g.msgs reaches this value */
};

static struct {
    const char *server_host;
    int server_port, listen_port, control_port;
    struct addrinfo *server_ai; /* resolved once at start-up */
    int listen_fd, control_fd;
    int wake_fd[2]; /* self-pipe: the signal handler writes */
    bool stdin_open;
    struct chan stdin_chan;
    struct conn *conns[MAX_CONNS];
    struct chan *ctls[MAX_CTLS];
    struct shot shots[SHOT_KINDS];
    bool down, blackhole;
    int64_t down_until; /* 0: down until "up" */
    int64_t delay_ms; /* "delay": both ways */
    int64_t reply_delay_ms; /* "delay-replies": server to client only */
    long long msgs, fired, next_id;
    int inflight_max; /* the most MSGs any connection had unanswered */
    long long refused; /* clients accepted and closed at once (down, full) */
} g;

static volatile sig_atomic_t g_stop;
static int g_wake_wr = -1;

/* ---- small helpers ------------------------------------------------------ */

static void vlog(const char *fmt, va_list ap) {
    char line[512];

    /* One fprintf per line, so lines from other processes sharing the
     * terminal do not get mixed into ours. */
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "proxy: %s\n", line);
}

static void logmsg(const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

static _Noreturn void die(const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
    exit(2);
}

static bool would_block(void) {
    return errno == EAGAIN || errno == EWOULDBLOCK;
}

static ssize_t read_retry(int fd, void *p, size_t n) {
    ssize_t r;

    do {
        r = read(fd, p, n);
    } while (r < 0 && errno == EINTR);
    return r;
}

static ssize_t write_retry(int fd, const void *p, size_t n) {
    ssize_t r;

    do {
        r = write(fd, p, n);
    } while (r < 0 && errno == EINTR);
    return r;
}

static int set_nonblock(int fd) {
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0) {
        return -1;
    }
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* select() cannot watch a descriptor >= FD_SETSIZE (FD_SET would write
 * out of bounds), so such a descriptor is closed at once. */
static bool fd_fits(int fd) {
    if (fd < FD_SETSIZE) {
        return true;
    }
    logmsg("fd %d >= FD_SETSIZE (%d): refused", fd, FD_SETSIZE);
    close(fd);
    return false;
}

static void bytes_append(struct bytes *b, const void *p, size_t n) {
    if (n == 0) {
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *data;

        while (cap < b->len + n) {
            cap *= 2;
        }
        data = realloc(b->data, cap);
        if (data == NULL) {
            die("out of memory");
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void bytes_consume(struct bytes *b, size_t n) {
    if (n == 0) {
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

static void bytes_free(struct bytes *b) {
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

static long long count_lines(const struct bytes *b) {
    long long n = 0;

    for (size_t i = 0; i < b->len; i++) {
        n += b->data[i] == '\n';
    }
    return n;
}

/* ---- closing ------------------------------------------------------------ */

static void dir_free(struct dir *d) {
    bytes_free(&d->in);
    bytes_free(&d->dq);
    bytes_free(&d->out);
    d->skipping = false;
}

static void conn_free(int slot, const char *why) {
    struct conn *c = g.conns[slot];

    for (int i = 0; i < 2; i++) {
        if (c->fd[i] >= 0) {
            close(c->fd[i]);
        }
        dir_free(&c->dir[i]);
    }
    logmsg("conn #%lld: closed (%s)", c->id, why);
    free(c);
    g.conns[slot] = NULL;
}

static int close_all_conns(const char *why) {
    int closed = 0;

    for (int s = 0; s < MAX_CONNS; s++) {
        if (g.conns[s] != NULL) {
            conn_free(s, why);
            closed++;
        }
    }
    return closed;
}

/* After one side is gone, the rest of the connection may linger a little
 * (flush, wait for the other side to close), but never forever. */
static void start_close_timer(struct conn *c, int64_t now) {
    if (c->close_by == 0) {
        c->close_by = now + LINGER_MS + g.delay_ms + g.reply_delay_ms;
    }
}

/* Side i sent EOF: stop reading it. What it sent is still forwarded, and
 * the EOF is passed on (dir_maybe_shut) once that is done. */
static void side_eof(struct conn *c, int i, int64_t now) {
    c->dir[i].eof = true;
    if (c->held) {
        bytes_free(&c->dir[i].in); /* held bytes die with the connection */
    }
    start_close_timer(c, now);
    logmsg("conn #%lld: %s closed its side%s", c->id, side_name[i],
           g.blackhole ? " (blackhole: not passed on)" : "");
}

/* Side i is gone for good (error, or a cut): close it now and drop what
 * was waiting to be sent to it. What it sent is still forwarded. */
static void side_lost(struct conn *c, int i, const char *why, int64_t now) {
    close(c->fd[i]);
    c->fd[i] = -1;
    c->dir[i].eof = true;
    if (c->held) {
        bytes_free(&c->dir[i].in);
    }
    dir_free(&c->dir[1 - i]);
    start_close_timer(c, now);
    logmsg("conn #%lld: %s side closed (%s)", c->id, side_name[i], why);
}

/* ---- faults: counting MSG lines ----------------------------------------- */

/* Called for every whole client line. Counts "MSG " lines and returns the
 * one-shot fault that fires on this line, or NO_SHOT. */
static int count_line(const struct conn *c, const char *line, size_t len) {
    int fired = NO_SHOT;

    if (len < 4 || memcmp(line, "MSG ", 4) != 0) {
        return NO_SHOT;
    }
    g.msgs++;
    for (int k = 0; k < SHOT_KINDS; k++) {
        if (!g.shots[k].armed || g.shots[k].target != g.msgs) {
            continue;
        }
        /* Several faults on the same line: the first in enum order wins
         * (a cut beats a hold); the others are disarmed, not kept. */
        g.shots[k].armed = false;
        if (fired == NO_SHOT) {
            fired = k;
        } else {
            logmsg("%s superseded by %s", shot_name[k], shot_name[fired]);
        }
    }
    if (fired != NO_SHOT) {
        g.fired++;
        logmsg("conn #%lld: fault fired: %s on MSG line #%lld", c->id, shot_name[fired], g.msgs);
    }
    return fired;
}

static void apply_shot(struct conn *c, int kind, int64_t now) {
    if (kind == HOLD_AFTER) {
        c->held = true;
        return;
    }
    /* A cut: the client vanishes at once, with anything it sent after the
     * line. The server still gets what was passed on, then a clean EOF, so
     * it never reads half a line. */
    bytes_free(&c->dir[CLIENT].in);
    c->dir[CLIENT].skipping = false;
    side_lost(c, CLIENT, shot_name[kind], now);
}

/* ---- in flight: MSGs forwarded, not yet answered ------------------------ */

static bool starts_with(const char *line, size_t len, const char *verb) {
    size_t n = strlen(verb);

    return len >= n && memcmp(line, verb, n) == 0;
}

/* The decimal at line[*pos] (an ack id), moving *pos past it and one
 * space; -1 (and *pos unmoved) if there is none. */
static long long ack_id(const char *line, size_t len, size_t *pos) {
    size_t end = *pos;
    long long id = 0;

    while (end < len && end - *pos < 18 && line[end] >= '0' && line[end] <= '9') {
        id = id * 10 + (line[end++] - '0');
    }
    if (end == *pos || (end < len && line[end] != ' ' && line[end] != '\n' && line[end] != '\r')) {
        return -1;
    }
    *pos = end + (end < len && line[end] == ' ');
    return id;
}

/* FNV-1a: the rest of a MSG line, without its line end. */
static uint64_t text_hash(const char *p, size_t len) {
    uint64_t h = 14695981039346656037u;

    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r')) {
        len--;
    }
    for (size_t k = 0; k < len; k++) {
        h = (h ^ (unsigned char)p[k]) * 1099511628211u;
    }
    return h;
}

/* A MSG opens one more message in flight, unless the same text is in
 * flight already: then it is a resend (steps 3-4 send a message again,
 * with a new ack id, when its ack is late), still one message. */
static void msg_sent(struct conn *c, const char *line, size_t len) {
    size_t pos = 4;
    long long ack = ack_id(line, len, &pos);
    uint64_t hash = text_hash(line + pos, len - pos);

    for (int k = 0; k < c->inflight; k++) {
        if (c->pending[k].hash == hash) {
            c->pending[k].ack = ack;
            return;
        }
    }
    if (c->inflight < MAX_PENDING) {
        c->pending[c->inflight++] = (struct pending){ack, hash};
    }
}

/* An ACK or REJECT closes the message in flight with that ack id; one
 * for an attempt since resent closes nothing. */
static void msg_answered(struct conn *c, const char *line, size_t len, size_t verb_len) {
    size_t pos = verb_len;
    long long ack = ack_id(line, len, &pos);

    for (int k = 0; ack >= 0 && k < c->inflight; k++) {
        if (c->pending[k].ack == ack) {
            c->pending[k] = c->pending[--c->inflight];
            return;
        }
    }
}

/* A whole line is on its way to side 1 - i. Counted when it is forwarded,
 * after any delay: a delayed ACK is still in flight, as the client sees
 * it. */
static void track_inflight(struct conn *c, int i, const char *line, size_t len) {
    if (i == CLIENT && starts_with(line, len, "MSG ")) {
        msg_sent(c, line, len);
    } else if (i == SERVER && starts_with(line, len, "ACK ")) {
        msg_answered(c, line, len, 4);
    } else if (i == SERVER && starts_with(line, len, "REJECT ")) {
        msg_answered(c, line, len, 7);
    }
    if (c->inflight > g.inflight_max) {
        g.inflight_max = c->inflight;
    }
}

/* ---- moving bytes: in -> dq -> out -------------------------------------- */

/* Lines keep their order: once something is delayed, everything behind it
 * queues too, even after the delay was switched off. */
static int64_t delay_of(int i) {
    return g.delay_ms + (i == SERVER ? g.reply_delay_ms : 0);
}

static bool line_mode(const struct dir *d, int i) {
    return delay_of(i) > 0 || d->dq.len > 0;
}

static bool has_room(const struct dir *d) {
    size_t need = sizeof(struct chunk_hdr) + PROTO_LINE_MAX;

    return d->out.len + need <= BUF_CAP && d->dq.len + need <= BUF_CAP;
}

static void enqueue(struct conn *c, int i, const char *p, size_t len, bool whole, int64_t now) {
    struct dir *d = &c->dir[i];
    struct chunk_hdr h;

    if (!line_mode(d, i)) {
        if (whole) {
            track_inflight(c, i, p, len);
        }
        bytes_append(&d->out, p, len);
        return;
    }
    memset(&h, 0, sizeof h);
    h.due = now + delay_of(i);
    h.len = len;
    h.whole = whole;
    bytes_append(&d->dq, &h, sizeof h);
    bytes_append(&d->dq, p, len);
}

/* Length of the next chunk to pass on from d->in at pos, 0 to wait for
 * more bytes. *whole says it is a complete line (it may be a MSG). */
static size_t next_chunk(struct conn *c, int i, size_t pos, bool *whole) {
    struct dir *d = &c->dir[i];
    size_t avail = d->in.len - pos;
    size_t max = avail < PROTO_LINE_MAX ? avail : PROTO_LINE_MAX;
    const char *p = d->in.data + pos;
    const char *nl = memchr(p, '\n', max);

    *whole = false;
    if (nl != NULL) {
        *whole = !d->skipping;
        d->skipping = false;
        return (size_t)(nl - p) + 1;
    }
    /* Server lines are framed too: an ACK split over two reads still
     * counts (track_inflight). */
    if (d->skipping || d->eof) {
        return max;
    }
    if (avail < PROTO_LINE_MAX) {
        return 0; /* the rest of the line has not arrived yet */
    }
    d->skipping = true;
    logmsg("conn #%lld: overlong %s line passed on raw, not counted", c->id, side_name[i]);
    return max;
}

/* Pass on whole lines one at a time, so that a fault acts on exactly one
 * line, after every line before it went through. Returns the fault that
 * fired (the caller applies it), or NO_SHOT. */
static int frame_lines(struct conn *c, int i, int64_t now) {
    struct dir *d = &c->dir[i];
    int fired = NO_SHOT;
    size_t pos = 0;

    while (pos < d->in.len && fired == NO_SHOT && has_room(d)) {
        bool whole;
        size_t len = next_chunk(c, i, pos, &whole);
        const char *line = d->in.data + pos;

        if (len == 0) {
            break;
        }
        if (whole && i == CLIENT) {
            fired = count_line(c, line, len);
        }
        if (fired != CUT_BEFORE) {
            enqueue(c, i, line, len, whole, now);
        }
        pos += len;
    }
    bytes_consume(&d->in, pos);
    return fired;
}

/* Move delayed chunks whose time has come to the output buffer. */
static void release_due(struct conn *c, int i, int64_t now) {
    struct dir *d = &c->dir[i];
    size_t pos = 0;
    struct chunk_hdr h;

    while (pos < d->dq.len) {
        memcpy(&h, d->dq.data + pos, sizeof h);
        if (h.due > now || h.len > BUF_CAP - d->out.len) {
            break;
        }
        if (h.whole) {
            track_inflight(c, i, d->dq.data + pos + sizeof h, h.len);
        }
        bytes_append(&d->out, d->dq.data + pos + sizeof h, h.len);
        pos += sizeof h + h.len;
    }
    bytes_consume(&d->dq, pos);
}

/* Bytes read from side i are thrown away under blackhole, or when there
 * is nobody left to give them to. */
static bool discarding(const struct conn *c, int i) {
    return g.blackhole || c->fd[1 - i] < 0;
}

static void dir_pump(struct conn *c, int i, int64_t now) {
    struct dir *d = &c->dir[i];

    if (discarding(c, i)) {
        dir_free(d);
        return;
    }
    if (!c->held) {
        int fired = frame_lines(c, i, now);

        if (fired != NO_SHOT) {
            apply_shot(c, fired, now);
        }
    }
    release_due(c, i, now);
}

static bool drained(const struct dir *d) {
    return d->in.len == 0 && d->dq.len == 0 && d->out.len == 0;
}

/* ---- socket I/O of a proxied connection --------------------------------- */

static void dir_flush(struct conn *c, int i, int64_t now) {
    struct dir *d = &c->dir[i];
    int fd = c->fd[1 - i];
    ssize_t n;

    if (fd < 0 || d->out.len == 0 || (i == CLIENT && c->connecting)) {
        return;
    }
    n = write_retry(fd, d->out.data, d->out.len);
    if (n > 0) {
        bytes_consume(&d->out, (size_t)n); /* a partial write keeps the rest */
    } else if (n < 0 && !would_block()) {
        side_lost(c, 1 - i, strerror(errno), now);
    }
}

/* Pass an EOF on (half-close) once everything before it was written, so
 * the peer reads every byte and then a clean end, never a reset. */
static void dir_maybe_shut(struct conn *c, int i) {
    struct dir *d = &c->dir[i];
    int fd = c->fd[1 - i];

    if (!d->eof || d->shut || g.blackhole || !drained(d)) {
        return;
    }
    if (i == CLIENT && c->connecting) {
        return;
    }
    d->shut = true;
    if (fd >= 0) {
        shutdown(fd, SHUT_WR);
    }
}

static void side_read(struct conn *c, int i, int64_t now) {
    struct dir *d = &c->dir[i];
    char tmp[READ_CHUNK];
    bool discard = discarding(c, i);
    size_t want = discard ? sizeof tmp : BUF_CAP - d->in.len;
    ssize_t n;

    if (want == 0) {
        return; /* full: wait until the buffer drains */
    }
    n = read_retry(c->fd[i], tmp, want < sizeof tmp ? want : sizeof tmp);
    if (n > 0) {
        if (!discard) {
            bytes_append(&d->in, tmp, (size_t)n);
        }
    } else if (n == 0) {
        side_eof(c, i, now);
    } else if (!would_block()) {
        side_lost(c, i, strerror(errno), now);
    }
}

/* The server socket became writable: the connect() finished, one way or
 * the other; SO_ERROR tells which. */
static void finish_connect(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(c->fd[SERVER], SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
        err = errno;
    }
    if (err != 0) {
        logmsg("conn #%lld: server connect failed: %s", c->id, strerror(err));
        c->end = "server unreachable";
        return;
    }
    c->connecting = false;
    logmsg("conn #%lld: connected to the server", c->id);
}

static void conn_io(struct conn *c, fd_set *r, fd_set *w, int64_t now) {
    if (c->connecting && c->fd[SERVER] >= 0 && FD_ISSET(c->fd[SERVER], w)) {
        finish_connect(c);
    }
    for (int i = 0; i < 2 && c->end == NULL; i++) {
        if (c->fd[i] >= 0 && FD_ISSET(c->fd[i], r)) {
            side_read(c, i, now);
        }
    }
}

/* Why this connection is over, or NULL while it is not. */
static const char *conn_end_reason(const struct conn *c, int64_t now) {
    const struct dir *d = c->dir;

    if (c->end != NULL) {
        return c->end;
    }
    if (c->connecting && now >= c->connect_by) {
        return "server connect timed out";
    }
    /* Under blackhole a half-open connection is the point: no timeout. */
    if (c->close_by != 0 && now >= c->close_by && !g.blackhole) {
        return "close timed out";
    }
    if (d[0].eof && d[1].eof && (g.blackhole || (d[0].shut && d[1].shut))) {
        return "both sides closed";
    }
    return NULL;
}

static void conn_service(int slot, int64_t now) {
    struct conn *c = g.conns[slot];
    const char *why;

    for (int i = 0; i < 2; i++) {
        dir_pump(c, i, now);
    }
    for (int i = 0; i < 2; i++) {
        dir_flush(c, i, now);
    }
    for (int i = 0; i < 2; i++) {
        dir_maybe_shut(c, i);
    }
    why = conn_end_reason(c, now);
    if (why != NULL) {
        conn_free(slot, why);
    }
}

/* ---- new connections ---------------------------------------------------- */

static int accept_fd(int lfd) {
    int fd;

    do {
        fd = accept(lfd, NULL, NULL);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (!would_block() && errno != ECONNABORTED) {
            logmsg("accept: %s", strerror(errno));
        }
        return -1;
    }
    if (!fd_fits(fd)) {
        return -1;
    }
    if (set_nonblock(fd) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Start a non-blocking connect() to the server for a new client. */
static void start_connect(struct conn *c, int64_t now) {
    const struct addrinfo *ai = g.server_ai;
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    int r;

    c->connecting = true;
    c->connect_by = now + CONNECT_TIMEOUT_MS;
    if (fd < 0 || !fd_fits(fd) || set_nonblock(fd) < 0) {
        c->end = "no socket for the server";
        return;
    }
    c->fd[SERVER] = fd;
    r = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (r == 0) {
        c->connecting = false; /* loopback may connect at once */
        return;
    }
    /* EINTR: POSIX says the connect goes on in the background. */
    if (errno != EINPROGRESS && errno != EINTR) {
        logmsg("conn #%lld: server connect failed: %s", c->id, strerror(errno));
        c->end = "server unreachable";
    }
}

static int free_conn_slot(void) {
    for (int s = 0; s < MAX_CONNS; s++) {
        if (g.conns[s] == NULL) {
            return s;
        }
    }
    return -1;
}

static void accept_client(int64_t now) {
    int fd = accept_fd(g.listen_fd);
    int slot = free_conn_slot();
    struct conn *c;

    if (fd < 0) {
        return;
    }
    if (g.down || slot < 0) {
        logmsg("client refused (%s)", g.down ? "network down" : "too many");
        g.refused++;
        close(fd);
        return;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        die("out of memory");
    }
    c->id = ++g.next_id;
    c->fd[CLIENT] = fd;
    c->fd[SERVER] = -1;
    g.conns[slot] = c;
    logmsg("conn #%lld: client connected", c->id);
    start_connect(c, now);
}

/* ---- commands ----------------------------------------------------------- */

typedef void (*cmd_fn)(int kind, bool has_arg, long long arg, int64_t now, char *reply, size_t n);

enum arg_rule { ARG_NONE, ARG_OPTIONAL, ARG_REQUIRED };

struct command {
    const char *name;
    enum arg_rule arg;
    long long min, max;
    const char *usage;
    cmd_fn fn;
    int kind; /* for the one-shot faults: which one */
};

static void cmd_down(int kind, bool has, long long ms, int64_t now, char *reply, size_t n) {
    int closed = close_all_conns("network down");

    (void)kind;
    g.down = true;
    g.down_until = has && ms > 0 ? now + ms : 0;
    if (g.down_until != 0) {
        snprintf(reply, n, "OK down: %d connection(s) closed, up in %lld ms", closed, ms);
    } else {
        snprintf(reply, n, "OK down: %d connection(s) closed, until up", closed);
    }
}

static void cmd_up(int kind, bool has, long long arg, int64_t now, char *reply, size_t n) {
    (void)kind, (void)has, (void)arg, (void)now;
    snprintf(reply, n, "OK up%s", g.down ? "" : " (was not down)");
    g.down = false;
    g.down_until = 0;
}

static void cmd_arm(int kind, bool has, long long count, int64_t now, char *reply, size_t n) {
    (void)has, (void)now;
    g.shots[kind].armed = true;
    g.shots[kind].target = g.msgs + count;
    snprintf(reply, n, "OK %s armed: MSG line %lld from now (#%lld overall)", shot_name[kind], count,
             g.shots[kind].target);
}

static void cmd_blackhole(int kind, bool has, long long arg, int64_t now, char *reply, size_t n) {
    (void)kind, (void)has, (void)arg, (void)now;
    g.blackhole = true;
    /* Nothing gets through any more, not even what was queued. */
    for (int s = 0; s < MAX_CONNS; s++) {
        if (g.conns[s] != NULL) {
            dir_free(&g.conns[s]->dir[CLIENT]);
            dir_free(&g.conns[s]->dir[SERVER]);
        }
    }
    snprintf(reply, n, "OK blackhole: all bytes dropped, nothing closed");
}

static void cmd_delay(int kind, bool has, long long ms, int64_t now, char *reply, size_t n) {
    (void)kind, (void)has, (void)now;
    g.delay_ms = ms;
    snprintf(reply, n, "OK delay %lld ms on every line, both ways", ms);
}

static void cmd_delay_replies(int kind, bool has, long long ms, int64_t now, char *reply, size_t n) {
    (void)kind, (void)has, (void)now;
    g.reply_delay_ms = ms;
    snprintf(reply, n, "OK delay %lld ms on every line from the server (acks come back late)", ms);
}

static void cmd_clear(int kind, bool has, long long arg, int64_t now, char *reply, size_t n) {
    (void)kind, (void)has, (void)arg, (void)now;
    memset(g.shots, 0, sizeof g.shots);
    g.blackhole = false;
    g.delay_ms = 0;
    g.reply_delay_ms = 0;
    g.down = false;
    g.down_until = 0;
    /* Held connections resume: their kept bytes are forwarded now. */
    for (int s = 0; s < MAX_CONNS; s++) {
        if (g.conns[s] != NULL) {
            g.conns[s]->held = false;
        }
    }
    snprintf(reply, n, "OK cleared: no fault armed or active");
}

static void cmd_status(int kind, bool has, long long arg, int64_t now, char *reply, size_t n) {
    int conns = 0;
    long long held = 0;
    int inflight = 0;

    (void)kind, (void)has, (void)arg, (void)now;
    for (int s = 0; s < MAX_CONNS; s++) {
        const struct conn *c = g.conns[s];

        if (c == NULL) {
            continue;
        }
        conns += c->fd[CLIENT] >= 0 && !c->dir[CLIENT].eof;
        inflight = c->inflight > inflight ? c->inflight : inflight;
        if (c->held) {
            held += count_lines(&c->dir[0].in) + count_lines(&c->dir[1].in);
        }
    }
    snprintf(reply, n,
             "OK conns=%d msgs=%lld held=%lld fired=%lld down=%d inflight=%d inflight-max=%d refused=%lld",
             conns, g.msgs, held, g.fired, g.down ? 1 : 0, inflight, g.inflight_max, g.refused);
}

static const struct command commands[] = {
    {"down", ARG_OPTIONAL, 0, MAX_MS, "down [MS]", cmd_down, 0},
    {"up", ARG_NONE, 0, 0, "up", cmd_up, 0},
    {"cut-before", ARG_REQUIRED, 1, MAX_N, "cut-before N (N >= 1)", cmd_arm, CUT_BEFORE},
    {"cut-after", ARG_REQUIRED, 1, MAX_N, "cut-after N (N >= 1)", cmd_arm, CUT_AFTER},
    {"hold-after", ARG_REQUIRED, 1, MAX_N, "hold-after N (N >= 1)", cmd_arm, HOLD_AFTER},
    {"blackhole", ARG_NONE, 0, 0, "blackhole", cmd_blackhole, 0},
    {"delay", ARG_REQUIRED, 0, MAX_MS, "delay MS", cmd_delay, 0},
    {"delay-replies", ARG_REQUIRED, 0, MAX_MS, "delay-replies MS", cmd_delay_replies, 0},
    {"clear", ARG_NONE, 0, 0, "clear", cmd_clear, 0},
    {"status", ARG_NONE, 0, 0, "status", cmd_status, 0},
};

/* Decimal digits only (no sign, no spaces), within [min, max]. */
static bool parse_number(const char *s, long long min, long long max, long long *out) {
    size_t len = strlen(s);

    if (len == 0 || len > 12 || strspn(s, "0123456789") != len) {
        return false;
    }
    *out = strtoll(s, NULL, 10);
    return *out >= min && *out <= max;
}

static bool arg_ok(const struct command *cmd, const char *arg, const char *extra, long long *value) {
    *value = 0;
    if (extra != NULL) {
        return false;
    }
    if (arg == NULL) {
        return cmd->arg != ARG_REQUIRED;
    }
    return cmd->arg != ARG_NONE && parse_number(arg, cmd->min, cmd->max, value);
}

/* Run one command line (not blank); the reply goes into reply[n]. */
static void run_command(const char *line, int64_t now, char *reply, size_t n) {
    char copy[CTL_LINE_MAX + 1];
    char *save = NULL;
    const char *name, *arg, *extra;
    long long value;

    snprintf(copy, sizeof copy, "%s", line);
    name = strtok_r(copy, " \t", &save);
    arg = strtok_r(NULL, " \t", &save);
    extra = strtok_r(NULL, " \t", &save);
    if (name == NULL) {
        snprintf(reply, n, "ERR empty command");
        return;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const struct command *cmd = &commands[i];

        if (strcmp(name, cmd->name) != 0) {
            continue;
        }
        if (!arg_ok(cmd, arg, extra, &value)) {
            snprintf(reply, n, "ERR usage: %s", cmd->usage);
            return;
        }
        cmd->fn(cmd->kind, arg != NULL, value, now, reply, n);
        return;
    }
    snprintf(reply, n,
             "ERR unknown command (try: down [MS], up, "
             "cut-before N, cut-after N, hold-after N, blackhole, delay MS, "
             "delay-replies MS, clear, status)");
}

/* ---- command channels: stdin and control connections -------------------- */

static void chan_reply(struct chan *ch, const char *text) {
    size_t len = strlen(text);

    if (ch->is_stdin) {
        printf("%s\n", text);
        fflush(stdout);
        return;
    }
    if (ch->out.len + len + 1 > CTL_OUT_CAP) {
        /* It sends commands but never reads the replies: drop it. */
        logmsg("control connection does not read its replies: closed");
        bytes_free(&ch->out);
        ch->closing = true;
        return;
    }
    bytes_append(&ch->out, text, len);
    bytes_append(&ch->out, "\n", 1);
}

static void chan_line(struct chan *ch, char *line, int64_t now) {
    char reply[256];
    size_t len = strlen(line);

    if (ch->skipping) {
        ch->skipping = false; /* the tail of an overlong command */
        return;
    }
    if (len > 0 && line[len - 1] == '\r') {
        line[len - 1] = '\0';
    }
    if (strspn(line, " \t") == strlen(line)) {
        return; /* a blank line is no command: no reply */
    }
    run_command(line, now, reply, sizeof reply);
    chan_reply(ch, reply);
}

/* Run every complete command line in ch->in. */
static void chan_run(struct chan *ch, int64_t now) {
    size_t pos = 0;
    char *nl;

    while (pos < ch->in.len && (nl = memchr(ch->in.data + pos, '\n', ch->in.len - pos)) != NULL) {
        *nl = '\0';
        chan_line(ch, ch->in.data + pos, now);
        pos = (size_t)(nl - ch->in.data) + 1;
    }
    bytes_consume(&ch->in, pos);
    if (ch->in.len >= CTL_LINE_MAX) {
        if (!ch->skipping) {
            chan_reply(ch, "ERR command too long");
        }
        bytes_free(&ch->in);
        ch->skipping = true;
    }
}

static void chan_read(struct chan *ch, int64_t now) {
    char tmp[CTL_LINE_MAX];
    ssize_t n = read_retry(ch->fd, tmp, CTL_LINE_MAX - ch->in.len);

    if (n < 0 && would_block()) {
        return;
    }
    if (n > 0) {
        bytes_append(&ch->in, tmp, (size_t)n);
        chan_run(ch, now);
        return;
    }
    /* EOF (or error): a last command without '\n' still counts. */
    if (ch->in.len > 0) {
        bytes_append(&ch->in, "\n", 1);
        chan_run(ch, now);
    }
    ch->closing = true;
}

static void chan_flush(struct chan *ch) {
    ssize_t n;

    if (ch->out.len == 0) {
        return;
    }
    n = write_retry(ch->fd, ch->out.data, ch->out.len);
    if (n > 0) {
        bytes_consume(&ch->out, (size_t)n);
    } else if (n < 0 && !would_block()) {
        bytes_free(&ch->out);
        ch->closing = true;
    }
}

static void chan_free(int slot) {
    struct chan *ch = g.ctls[slot];

    close(ch->fd);
    bytes_free(&ch->in);
    bytes_free(&ch->out);
    free(ch);
    g.ctls[slot] = NULL;
}

static void accept_control(void) {
    int fd = accept_fd(g.control_fd);
    struct chan *ch;

    if (fd < 0) {
        return;
    }
    for (int s = 0; s < MAX_CTLS; s++) {
        if (g.ctls[s] != NULL) {
            continue;
        }
        ch = calloc(1, sizeof *ch);
        if (ch == NULL) {
            die("out of memory");
        }
        ch->fd = fd;
        g.ctls[s] = ch;
        return;
    }
    logmsg("control connection refused (too many)");
    close(fd);
}

/* ---- the select() loop -------------------------------------------------- */

static void watch(fd_set *set, int fd, int *maxfd) {
    FD_SET(fd, set);
    if (fd > *maxfd) {
        *maxfd = fd;
    }
}

static bool wants_read(const struct conn *c, int i) {
    if (c->fd[i] < 0 || c->dir[i].eof || (i == SERVER && c->connecting)) {
        return false;
    }
    /* A full buffer means: stop reading, let TCP push back on the peer. */
    return discarding(c, i) || c->dir[i].in.len < BUF_CAP;
}

static bool wants_write(const struct conn *c, int i) {
    if (c->fd[i] < 0) {
        return false;
    }
    if (i == SERVER && c->connecting) {
        return true; /* writable = the connect() finished */
    }
    return c->dir[1 - i].out.len > 0;
}

static int fill_sets(fd_set *r, fd_set *w) {
    int maxfd = -1;

    FD_ZERO(r);
    FD_ZERO(w);
    watch(r, g.wake_fd[0], &maxfd);
    watch(r, g.listen_fd, &maxfd);
    watch(r, g.control_fd, &maxfd);
    if (g.stdin_open) {
        watch(r, STDIN_FILENO, &maxfd);
    }
    for (int s = 0; s < MAX_CTLS; s++) {
        if (g.ctls[s] != NULL && !g.ctls[s]->closing) {
            watch(r, g.ctls[s]->fd, &maxfd);
        }
        if (g.ctls[s] != NULL && g.ctls[s]->out.len > 0) {
            watch(w, g.ctls[s]->fd, &maxfd);
        }
    }
    for (int s = 0; s < MAX_CONNS; s++) {
        for (int i = 0; g.conns[s] != NULL && i < 2; i++) {
            if (wants_read(g.conns[s], i)) {
                watch(r, g.conns[s]->fd[i], &maxfd);
            }
            if (wants_write(g.conns[s], i)) {
                watch(w, g.conns[s]->fd[i], &maxfd);
            }
        }
    }
    return maxfd;
}

static void earliest(int64_t *t, int64_t when) {
    if (when < *t) {
        *t = when;
    }
}

/* The next moment a timer needs us, as a select() wait in ms; -1: none. */
static int64_t next_wait(int64_t now) {
    int64_t t = INT64_MAX;
    struct chunk_hdr h;

    if (g.down && g.down_until != 0) {
        earliest(&t, g.down_until);
    }
    for (int s = 0; s < MAX_CONNS; s++) {
        const struct conn *c = g.conns[s];

        if (c == NULL) {
            continue;
        }
        if (c->connecting) {
            earliest(&t, c->connect_by);
        }
        if (c->close_by != 0 && !g.blackhole) {
            earliest(&t, c->close_by);
        }
        for (int i = 0; i < 2; i++) {
            /* A head chunk that would not fit waits for a write instead. */
            if (c->dir[i].dq.len == 0) {
                continue;
            }
            memcpy(&h, c->dir[i].dq.data, sizeof h);
            if (h.len <= BUF_CAP - c->dir[i].out.len) {
                earliest(&t, h.due);
            }
        }
    }
    return t == INT64_MAX ? -1 : (t > now ? t - now : 0);
}

static void drain_wake_pipe(void) {
    char tmp[64];

    while (read_retry(g.wake_fd[0], tmp, sizeof tmp) > 0) {
        continue;
    }
}

/* Reads, connects and accepts. Accepts come after the connections: a new
 * socket may reuse the number of one closed above, and must not be taken
 * for "ready" by this turn's (stale) fd sets. */
static void handle_events(fd_set *r, fd_set *w, int64_t now) {
    if (FD_ISSET(g.wake_fd[0], r)) {
        drain_wake_pipe();
    }
    for (int s = 0; s < MAX_CONNS; s++) {
        if (g.conns[s] != NULL) {
            conn_io(g.conns[s], r, w, now);
        }
    }
    if (FD_ISSET(g.listen_fd, r)) {
        accept_client(now);
    }
    if (g.stdin_open && FD_ISSET(STDIN_FILENO, r)) {
        chan_read(&g.stdin_chan, now);
    }
    for (int s = 0; s < MAX_CTLS; s++) {
        if (g.ctls[s] != NULL && !g.ctls[s]->closing && FD_ISSET(g.ctls[s]->fd, r)) {
            chan_read(g.ctls[s], now);
        }
    }
    if (FD_ISSET(g.control_fd, r)) {
        accept_control();
    }
}

/* Timers, framing, faults, writes and closes: run every turn, after the
 * commands, so a command takes effect at once. */
static void service_all(int64_t now) {
    if (g.down && g.down_until != 0 && now >= g.down_until) {
        g.down = false;
        g.down_until = 0;
        logmsg("up again (down timer expired)");
    }
    for (int s = 0; s < MAX_CONNS; s++) {
        if (g.conns[s] != NULL) {
            conn_service(s, now);
        }
    }
    for (int s = 0; s < MAX_CTLS; s++) {
        if (g.ctls[s] == NULL) {
            continue;
        }
        chan_flush(g.ctls[s]);
        if (g.ctls[s]->closing && g.ctls[s]->out.len == 0) {
            chan_free(s);
        }
    }
    if (g.stdin_open && g.stdin_chan.closing) {
        g.stdin_open = false; /* stdin EOF: only the control port is left */
        bytes_free(&g.stdin_chan.in);
    }
}

static void loop_once(void) {
    fd_set r, w;
    int maxfd = fill_sets(&r, &w);
    int64_t wait = next_wait(now_ms());
    struct timeval tv, *tvp = NULL;
    int n;

    if (wait >= 0) {
        tv.tv_sec = (time_t)(wait / 1000);
        tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
        tvp = &tv;
    }
    n = select(maxfd + 1, &r, &w, NULL, tvp);
    if (n < 0 && errno != EINTR) {
        die("select: %s", strerror(errno));
    }
    /* After EINTR the sets are undefined: only run the timers. */
    if (n > 0) {
        handle_events(&r, &w, now_ms());
    }
    service_all(now_ms());
}

/* ---- start-up and shut-down --------------------------------------------- */

static void on_signal(int sig) {
    int saved = errno;
    ssize_t r;

    (void)sig;
    g_stop = 1;
    /* Wake select() even if the signal came just before it was called. */
    r = write(g_wake_wr, "x", 1);
    (void)r;
    errno = saved;
}

static void setup_signals(void) {
    struct sigaction sa;

    if (pipe(g.wake_fd) < 0 || set_nonblock(g.wake_fd[0]) < 0 || set_nonblock(g.wake_fd[1]) < 0) {
        die("pipe: %s", strerror(errno));
    }
    g_wake_wr = g.wake_fd[1];
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    /* A write to a closed socket must return EPIPE, not kill us. */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Listen on 127.0.0.1:port (0: the OS chooses); *bound gets the port. */
static int listen_on(int port, int *bound) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || !fd_fits(fd)) {
        die("socket: %s", strerror(errno));
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, LISTEN_BACKLOG) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0 || set_nonblock(fd) < 0) {
        die("cannot listen on 127.0.0.1:%d: %s", port, strerror(errno));
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

static void resolve_server(void) {
    struct addrinfo hints;
    char port[16];
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof port, "%d", g.server_port);
    /* Once, here: getaddrinfo() may block, the loop must not. */
    rc = getaddrinfo(g.server_host, port, &hints, &g.server_ai);
    if (rc != 0) {
        die("cannot resolve %s: %s", g.server_host, gai_strerror(rc));
    }
}

static void usage(const char *why) {
    fprintf(stderr,
            "proxy: %s\nusage: proxy --server-port N "
            "[--server-host H] [--listen-port N] [--control-port N] "
            "[--fault CMD]...\n",
            why);
    exit(2);
}

static int parse_port(const char *s, long long min) {
    long long v;

    if (!parse_number(s, min, 65535, &v)) {
        usage("bad port number");
    }
    return (int)v;
}

static int parse_args(int argc, char **argv, const char **faults) {
    int nfaults = 0;

    g.server_host = "127.0.0.1";
    for (int i = 1; i < argc; i += 2) {
        const char *opt = argv[i], *val = argv[i + 1];

        if (val == NULL) {
            usage(strcmp(opt, "--help") == 0 ? "help" : "missing value");
        } else if (strcmp(opt, "--server-port") == 0) {
            g.server_port = parse_port(val, 1);
        } else if (strcmp(opt, "--server-host") == 0) {
            g.server_host = val;
        } else if (strcmp(opt, "--listen-port") == 0) {
            g.listen_port = parse_port(val, 0);
        } else if (strcmp(opt, "--control-port") == 0) {
            g.control_port = parse_port(val, 0);
        } else if (strcmp(opt, "--fault") == 0 && nfaults < MAX_STARTUP_FAULTS) {
            faults[nfaults++] = val;
        } else {
            usage("unknown option (or too many --fault)");
        }
    }
    if (g.server_port == 0) {
        usage("--server-port is required");
    }
    return nfaults;
}

/* --fault commands: run as if typed; a bad one is a start-up error. */
static void apply_startup_faults(const char **faults, int n) {
    char reply[256];

    for (int i = 0; i < n; i++) {
        if (strspn(faults[i], " \t") == strlen(faults[i])) {
            die("--fault: empty command");
        }
        run_command(faults[i], now_ms(), reply, sizeof reply);
        if (strncmp(reply, "ERR", 3) == 0) {
            die("--fault '%s': %s", faults[i], reply);
        }
        logmsg("--fault '%s': %s", faults[i], reply);
    }
}

static void cleanup(void) {
    close_all_conns("proxy stopping");
    for (int s = 0; s < MAX_CTLS; s++) {
        if (g.ctls[s] != NULL) {
            chan_free(s);
        }
    }
    bytes_free(&g.stdin_chan.in);
    freeaddrinfo(g.server_ai);
    close(g.listen_fd);
    close(g.control_fd);
    close(g.wake_fd[0]);
    close(g.wake_fd[1]);
}

int main(int argc, char **argv) {
    const char *faults[MAX_STARTUP_FAULTS];
    int nfaults = parse_args(argc, argv, faults);
    int lport, cport;

    setup_signals();
    resolve_server();
    g.listen_fd = listen_on(g.listen_port, &lport);
    g.control_fd = listen_on(g.control_port, &cport);
    /* stdin stays blocking (it may be the user's terminal, shared with the
     * shell); we read it only when select() says it is readable. */
    g.stdin_chan.fd = STDIN_FILENO;
    g.stdin_chan.is_stdin = true;
    g.stdin_open = true;
    apply_startup_faults(faults, nfaults);
    logmsg("listening on 127.0.0.1:%d, control on 127.0.0.1:%d, "
           "forwarding to %s:%d",
           lport, cport, g.server_host, g.server_port);
    while (!g_stop) {
        loop_once();
    }
    logmsg("stopping");
    cleanup();
    return 0;
}
