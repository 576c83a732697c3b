/* tests/bench_load.c -- "make bench": the runs. Raw protocol peers (the
 * receiver, raw senders, idle connections) frame their input with
 * common/line.h, queue their output in a bounded common/buf.h and connect
 * with common/net.h, as the real client does; real clients are typed into
 * through pipes; the bound is one loopback round trip plus one insert
 * through common/store.h. */
#include "bench.h"

#include "buf.h"
#include "harness.h" /* step_bin() */
#include "line.h"
#include "net.h"
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n-1]; -1 when there is none. */
static long long percentile(const long long *v, long n, double p) {
    if (n <= 0) {
        return -1;
    }
    long k = (long)(p * (double)n + 0.999999);
    k = k < 1 ? 1 : (k > n ? n : k);
    return v[k - 1];
}

/* ---------------------------------------------------------------------
 * Raw protocol connections: the receiver, raw senders, idle clients
 * ------------------------------------------------------------------- */

/* A raw sender in steps 1-2 types ahead while fewer than TYPE_AHEAD bytes
 * wait for the socket; its buffer holds twice that, so a PONG always fits. */
#define TYPE_AHEAD 65536
#define CONN_OUT_MAX (2 * TYPE_AHEAD)

enum role { RECEIVER, SENDER, IDLE };

struct conn {
    int fd;
    enum role role;
    int index; /* sender number */
    struct line_reader in; /* MAX_LINE: a CHAT line here is far shorter */
    struct buf out; /* at most CONN_OUT_MAX bytes pending */
    int welcomed, eof, errors;
    /* raw sender */
    long sent; /* lines typed */
    long long ack_id, sent_at; /* steps 3-4: the message in flight */
    int in_flight;
    unsigned offset_id; /* step 4: first half of the client offset */
};

/* Connect to the server on 127.0.0.1 with common/net.h, as the client
 * does (non-blocking, TCP_NODELAY), and wait for the connection: the
 * bench's peers are set up before the clock starts. */
static int bench_connect(int port) {
    struct net_dialer d;
    char err[NET_ERR_LEN] = "";
    int done = 0, fd = net_dial(&d, "127.0.0.1", port, &done, err);
    if (fd != -1 && !done) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        int n;
        while ((n = poll(&pfd, 1, 30000)) == -1 && errno == EINTR) {
        }
        if (n == 0) {
            snprintf(err, sizeof err, "no connection after 30 s");
        }
        if (n <= 0 || net_connect_result(fd, err) == -1) {
            close(fd);
            fd = -1;
        }
    }
    net_dial_end(&d);
    if (fd == -1) {
        die("connect to port %d: %s", port, err);
    }
    fd_flags(fd, 0); /* close-on-exec: no reaper inherits it */
    return fd;
}

static struct conn *conn_new(int port, enum role role, int index) {
    struct conn *c = xcalloc(1, sizeof *c);
    c->fd = bench_connect(port);
    c->role = role;
    c->index = index;
    line_init(&c->in);
    buf_init(&c->out, CONN_OUT_MAX);
    return c;
}

static void conn_free(struct conn *c) {
    if (c != NULL) {
        close(c->fd);
        buf_free(&c->out);
        free(c);
    }
}

static void conn_flush(struct conn *c) {
    if (buf_flush(&c->out, c->fd) == -1) {
        c->eof = 1;
    }
}

/* Queue one line and try to send it at once. */
static void conn_send(struct conn *c, const char *fmt, ...) BENCH_PRINTF(2, 3);
static void conn_send(struct conn *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf_line(&c->out, fmt, ap);
    va_end(ap);
    if (rc != 0) {
        die(rc == -2 ? "line too long" : "a raw connection's output backed up past %d bytes", CONN_OUT_MAX);
    }
    conn_flush(c);
}

/* ---------------------------------------------------------------------
 * One run: its state, and what the receiver and the raw senders see
 * ------------------------------------------------------------------- */

struct run {
    int step, k;
    long per, total; /* lines per sender, in all */
    long window;
    long *typed, *arrived, *next_n, *written_off; /* per sender */
    long received, anomalies;
    long long first_typed, last_arrival, last_progress;
    long long *arr_lat, *ack_lat;
    long narr, nack;
    int receiver_lost, receiver_drops, port;
    long long last_id; /* the receiver's server offset, for reconnecting */
    struct conn *receiver;
    struct conn **raw; /* latency run: the senders */
};

static void run_init(struct run *r, int step, int k, long total) {
    memset(r, 0, sizeof *r);
    r->step = step;
    r->k = k;
    r->per = total / k > 0 ? total / k : 1;
    r->total = r->per * k;
    r->window = opt.window;
    r->typed = xcalloc((size_t)k, sizeof(long));
    r->arrived = xcalloc((size_t)k, sizeof(long));
    r->next_n = xcalloc((size_t)k, sizeof(long));
    r->written_off = xcalloc((size_t)k, sizeof(long));
    r->arr_lat = xcalloc((size_t)r->total, sizeof(long long));
    r->ack_lat = xcalloc((size_t)r->total, sizeof(long long));
}

/* A sender may type more once at most half its window is still on the
 * way; it then types up to the full window (typing in batches keeps the
 * clients from waking up for every single line). */
static int may_type(const struct run *r, int s) {
    return r->typed[s] < r->per && r->typed[s] - r->arrived[s] - r->written_off[s] <= r->window / 2;
}

static int window_open(const struct run *r, int s) {
    return r->typed[s] < r->per && r->typed[s] - r->arrived[s] - r->written_off[s] < r->window;
}

/* Nothing arrived for a second: what is still on the way is taken as lost
 * (steps 1-2 may lose lines), so that the senders' windows open again. */
static void write_off_lost(struct run *r) {
    for (int s = 0; s < r->k; s++) {
        r->written_off[s] = r->typed[s] - r->arrived[s];
    }
}

static void run_free(struct run *r) {
    free(r->typed);
    free(r->arrived);
    free(r->next_n);
    free(r->written_off);
    free(r->arr_lat);
    free(r->ack_lat);
    conn_free(r->receiver);
    if (r->raw != NULL) {
        for (int i = 0; i < r->k; i++) {
            conn_free(r->raw[i]);
        }
        free(r->raw);
    }
}

/* The text of line n of sender s, typed at t: the receiver reads all three
 * back. About the length of a short chat message. */
static int format_text(char *out, size_t size, int s, long n, long long t) {
    return snprintf(out, size, "s%d n%ld t%lld the quick brown fox", s, n, t);
}

/* CHAT <id> s<sender> n<number> t<typed-us> ... */
static void on_chat(struct run *r, const char *arg, long long now) {
    const char *p = strchr(arg, ' ');
    char *end;
    long long id = strtoll(arg, NULL, 10);
    if (id > r->last_id) {
        r->last_id = id;
    }
    if (p == NULL || p[1] != 's') {
        r->anomalies++;
        return;
    }
    long s = strtol(p + 2, &end, 10);
    if (*end != ' ' || end[1] != 'n' || s < 0 || s >= r->k) {
        r->anomalies++;
        return;
    }
    long n = strtol(end + 2, &end, 10);
    long long t = (*end == ' ' && end[1] == 't') ? strtoll(end + 2, NULL, 10) : 0;
    if (n != r->next_n[s]) {
        r->anomalies++; /* lost, duplicated or out of order */
    }
    if (n >= r->next_n[s]) {
        r->next_n[s] = n + 1;
    }
    r->arrived[s]++;
    r->received++;
    r->last_arrival = r->last_progress = now;
    if (t > 0 && r->narr < r->total) {
        r->arr_lat[r->narr++] = now - t;
    }
}

static void send_next(struct run *r, struct conn *c, long long now);

static void on_line(struct run *r, struct conn *c, char *line, long long now) {
    if (strncmp(line, "CHAT ", 5) == 0) {
        if (r != NULL && c->role == RECEIVER) {
            on_chat(r, line + 5, now);
        }
    } else if (strncmp(line, "ACK ", 4) == 0) {
        long long id = strtoll(line + 4, NULL, 10);
        if (r != NULL && c->role == SENDER && c->in_flight && id == c->ack_id) {
            c->in_flight = 0;
            if (r->nack < r->total) {
                r->ack_lat[r->nack++] = now - c->sent_at;
                r->last_progress = now;
            }
            send_next(r, c, now);
        }
    } else if (strncmp(line, "WELCOME ", 8) == 0) {
        c->welcomed = 1;
    } else if (strcmp(line, "PING") == 0) {
        conn_send(c, "PONG");
    } else if (strncmp(line, "ERR ", 4) == 0) {
        static int said;
        c->errors++;
        if (said++ == 0) { /* the first one only: 1000 connections may hear it */
            fprintf(stderr, "bench: the server said \"%s\" to a raw connection\n", line);
        }
    }
}

/* Read once, timestamp, and hand every complete line to on_line(). */
static ssize_t conn_read(struct run *r, struct conn *c) {
    ssize_t n = line_fill(&c->in, c->fd);
    long long now = now_us();
    char *line;
    enum line_result lr;
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return 0;
    }
    if (n <= 0) {
        c->eof = 1;
        if (c->role == RECEIVER && r != NULL) {
            r->receiver_lost = 1;
        }
        return -1;
    }
    while ((lr = line_next(&c->in, &line)) != LINE_NEED_MORE) {
        if (lr == LINE_TOO_LONG) {
            line_skip(&c->in); /* not ours */
        } else if (lr == LINE_READY && (r != NULL || c->role != RECEIVER)) {
            on_line(r, c, line, now);
        }
    }
    return n;
}

/* Connect and wait for WELCOME; NULL if none came. */
static struct conn *hello_try(struct run *r, int port, enum role role, int index) {
    struct conn *c = conn_new(port, role, index);
    conn_send(c, "HELLO %lld", role == RECEIVER && r != NULL ? r->last_id : 0);
    long long end = now_us() + 10000000;
    while (!c->welcomed && !c->eof && now_us() < end) {
        struct pollfd pfd = {c->fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) > 0) {
            conn_read(r, c);
        }
        check_interrupted();
    }
    if (!c->welcomed) {
        conn_free(c);
        return NULL;
    }
    return c;
}

static struct conn *hello(struct run *r, int port, enum role role, int index) {
    struct conn *c = hello_try(r, port, role, index);
    if (c == NULL) {
        die("no WELCOME from the server on port %d", port);
    }
    return c;
}

/* Read what the receiver has, until the socket is empty. A receiver that
 * fell behind by MAX_OUTPUT is cut off by the server, like any client:
 * it comes back at once with the last id it saw, and the replay brings
 * it the rest. */
static void receive(struct run *r) {
    for (int i = 0; i < 256 && conn_read(r, r->receiver) > 0; i++) { /* MAX_LINE bytes a read */
    }
    if (r->receiver_lost && r->receiver_drops < 100) {
        struct conn *c = hello_try(r, r->port, RECEIVER, -1);
        r->receiver_drops = c == NULL ? 100 : r->receiver_drops + 1; /* 100: given up */
        if (c != NULL) {
            conn_free(r->receiver);
            r->receiver = c;
            r->receiver_lost = 0;
        }
    }
}

/* ---------------------------------------------------------------------
 * The throughput run: real clients typed into through pipes
 * ------------------------------------------------------------------- */

struct feeder {
    struct prog prog;
    int fd; /* our end of its stdin; -1 once closed */
    char buf[FEED_CAP];
    size_t off, len;
    char err[PATH_LEN + 64];
};

/* Type the next lines, within the window, into one client's stdin. */
static void feed(struct run *r, struct feeder *f, int s) {
    if (f->off == f->len && may_type(r, s)) {
        f->off = f->len = 0;
        long long now = now_us();
        while (window_open(r, s) && f->len + 256 < FEED_CAP) {
            f->len += (size_t)format_text(f->buf + f->len, FEED_CAP - f->len, s, r->typed[s]++, now);
            f->buf[f->len++] = '\n';
            if (r->first_typed == 0) {
                r->first_typed = now;
            }
        }
    }
    if (f->off < f->len) {
        ssize_t n = write(f->fd, f->buf + f->off, f->len - f->off);
        if (n > 0) {
            f->off += (size_t)n;
        } else if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            close(f->fd); /* the client is gone */
            f->fd = -1;
            return;
        }
    }
    if (f->off == f->len && r->typed[s] == r->per) {
        close(f->fd); /* end of input: the client finishes and leaves */
        f->fd = -1;
    }
}

/* Start a real client whose stdin is a pipe from us; its stdout (every
 * message, as the user would see it) goes to /dev/null. */
static void feeder_start(struct feeder *f, int step, int port, int index) {
    int p[2];
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(f->err, sizeof f->err, "%s", tmp_path("client%d.err", index));
    if (pipe(p) == -1) {
        die("pipe: %s", strerror(errno));
    }
    fd_flags(p[1], 1);
    fd_flags(p[0], 0);
    int out = open_file("/dev/null", O_WRONLY), err = open_file(f->err, O_WRONLY | O_TRUNC);
    const char *argv[] = {step_bin(step, "client"), "--port", port_s, NULL};
    prog_start(&f->prog, argv, p[0], out, err);
    close(p[0]);
    close(out);
    close(err);
    f->fd = p[1];
    f->off = f->len = 0;
}

/* Every client must be welcomed before the first line: step 1 drops what
 * is typed before. */
static int wait_connected(struct feeder *f, int k) {
    long long end = now_us() + 20000000;
    for (int i = 0; i < k; i++) {
        while (file_count(f[i].err, "connected as") == 0) {
            if (now_us() > end || prog_poll(&f[i].prog, 0)) {
                return i;
            }
            check_interrupted();
            sleep_ms(5);
        }
    }
    return -1;
}

/* Add to the row's notes: what went wrong, or what the step did. */
static void note(struct result *res, const char *fmt, ...) {
    size_t len = strlen(res->problem);
    va_list ap;
    if (len > 0 && len + 3 < sizeof res->problem) {
        strcat(res->problem, "; ");
        len += 2;
    }
    va_start(ap, fmt);
    vsnprintf(res->problem + len, sizeof res->problem - len, fmt, ap);
    va_end(ap);
}

/* poll() the receiver, idle connections and the feeders until every row
 * has arrived (or nothing arrives for STALL_MS). */
static void pump_run(struct run *r, struct feeder *f, struct conn **idle, long nidle) {
    size_t cap = (size_t)(1 + r->k + nidle);
    struct pollfd *pfd = xcalloc(cap, sizeof *pfd);
    int *who = xcalloc(cap, sizeof(int)); /* -1 receiver, 0..k-1 feeders, k.. idle */
    r->last_progress = now_us();
    for (int s = 0; s < r->k; s++) {
        feed(r, &f[s], s);
    }
    long long checked = 0;
    int senders_left = r->k;
    while (r->received < r->total && !r->receiver_lost && now_us() - r->last_progress < STALL_MS * 1000LL) {
        int n = 0;
        if (now_us() - checked > 100000) { /* every sender gone, nothing for a second: over */
            checked = now_us();
            senders_left = 0;
            for (int s = 0; s < r->k; s++) {
                senders_left += !prog_poll(&f[s].prog, 0);
            }
        }
        if (senders_left == 0 && now_us() - r->last_progress > 1000000) {
            break;
        }
        if (now_us() - r->last_progress > 1000000) {
            write_off_lost(r);
        }
        pfd[n] = (struct pollfd){r->receiver->fd, POLLIN, 0};
        who[n++] = -1;
        for (int s = 0; s < r->k; s++) {
            if (f[s].fd != -1 && (f[s].off < f[s].len || may_type(r, s) || r->typed[s] == r->per)) {
                pfd[n] = (struct pollfd){f[s].fd, POLLOUT, 0};
                who[n++] = s;
            }
        }
        for (long i = 0; i < nidle; i++) {
            if (!idle[i]->eof) {
                pfd[n] = (struct pollfd){idle[i]->fd, POLLIN, 0};
                who[n++] = r->k + (int)i;
            }
        }
        if (poll(pfd, (nfds_t)n, 100) == -1 && errno != EINTR) {
            die("poll: %s", strerror(errno));
        }
        check_interrupted();
        for (int i = 0; i < n; i++) {
            if (pfd[i].revents == 0) {
                continue;
            }
            if (who[i] == -1) {
                receive(r);
            } else if (who[i] < r->k) {
                feed(r, &f[who[i]], who[i]);
            } else {
                conn_read(NULL, idle[who[i] - r->k]);
            }
        }
    }
    free(pfd);
    free(who);
}

/* Close the stdins, let the clients finish, stop the server, read the db. */
static void finish_run(struct run *r, struct feeder *f, struct server *srv, struct result *res) {
    char st[64];
    for (int s = 0; s < r->k; s++) {
        if (f[s].fd != -1) {
            close(f[s].fd);
            f[s].fd = -1;
        }
    }
    res->client_kb = 0;
    int reconnects = 0, failed = 0, first_failed = -1;
    for (int s = 0; s < r->k; s++) {
        if (prog_wait(&f[s].prog, 20000) == -1) {
            prog_stop(&f[s].prog, SIGKILL, 5000);
        }
        if (f[s].prog.status != 0 && failed++ == 0) {
            first_failed = s;
        }
        if (f[s].prog.rss_kb > res->client_kb) {
            res->client_kb = f[s].prog.rss_kb;
        }
        reconnects += file_count(f[s].err, "reconnecting in");
    }
    if (failed > 0) {
        note(res, "%d client(s) failed, the first: %s", failed,
             status_text(f[first_failed].prog.status, st, sizeof st));
    }
    if (reconnects > 0) {
        note(res, "clients reconnected %d time(s)", reconnects);
    }
    char problem[160] = "";
    res->server_kb = bench_server_stop(srv, problem, sizeof problem);
    res->server_cpu_us = srv->prog.cpu_us;
    if (problem[0] != '\0') {
        note(res, "%s", problem);
    }
    int cut = file_count(srv->err, "output buffer full");
    if (cut > 0) {
        note(res, "the server cut off %d slow reader(s): output buffer full", cut);
    }
    if (file_count(srv->err, "failed") > 0) {
        note(res, "the server logged failed inserts");
    }
    db_info(srv->db, res->journal, sizeof res->journal, &res->rows);
}

void throughput_run(int step, int k, long total, long nidle, struct result *res) {
    struct run r;
    struct server srv = {0};
    char name[32];
    snprintf(name, sizeof name, "step%d-%d%s", step, k, nidle ? "-idle" : "");
    run_init(&r, step, k, total);
    res->step = step;
    res->k = k;
    res->total = r.total;
    bench_server_start(&srv, step, name);
    r.port = srv.port;
    r.receiver = hello(&r, srv.port, RECEIVER, -1);
    struct conn **idle = xcalloc((size_t)nidle, sizeof(struct conn *));
    for (long i = 0; i < nidle; i++) {
        idle[i] = conn_new(srv.port, IDLE, (int)i);
        conn_send(idle[i], "HELLO 0");
    }
    long welcomed = 0;
    for (long long end = now_us() + 30000000; welcomed < nidle && now_us() < end;) {
        welcomed = 0;
        for (long i = 0; i < nidle; i++) {
            conn_read(NULL, idle[i]);
            welcomed += idle[i]->welcomed;
        }
        receive(&r); /* PINGs are answered */
        check_interrupted();
        sleep_ms(welcomed < nidle ? 5 : 0);
    }
    if (welcomed < nidle) {
        note(res, "only %ld of %ld idle connections welcomed", welcomed, nidle);
    }
    struct feeder *f = xcalloc((size_t)k, sizeof *f);
    for (int s = 0; s < k; s++) {
        feeder_start(&f[s], step, srv.port, s);
    }
    int late = wait_connected(f, k);
    if (late >= 0) {
        note(res, "client %d was not connected after 20 s: not measured", late);
    } else {
        pump_run(&r, f, idle, nidle);
    }
    double secs = (double)(r.last_arrival - r.first_typed) / 1e6;
    finish_run(&r, f, &srv, res);
    if (res->rows >= 0 && res->rows < r.total) {
        note(res, "%ld typed lines never stored", r.total - res->rows);
    }
    if (r.received < res->rows) {
        note(res, "the receiver got %ld of %ld rows", r.received, res->rows);
    } else if (r.anomalies > 0 && res->rows >= r.total) {
        note(res, "%ld rows duplicated or out of order", r.anomalies);
    }
    if (r.receiver_drops > 0) {
        note(res, "the receiver was cut off %d time(s) and came back", r.receiver_drops);
    }
    res->rate = secs > 0 ? (double)res->rows / secs : 0;
    for (long i = 0; i < nidle; i++) {
        conn_free(idle[i]);
    }
    free(idle);
    free(f);
    run_free(&r);
}

/* ---------------------------------------------------------------------
 * The latency run: raw senders that follow the step's discipline
 * ------------------------------------------------------------------- */

/* Steps 1-2: type (queue) every line the window allows. Steps 3-4: one
 * message in flight, a new ack id for each attempt. */
static void send_next(struct run *r, struct conn *c, long long now) {
    char text[256];
    int s = c->index;
    if (r->step <= 2) {
        if (!may_type(r, s)) {
            return;
        }
        while (window_open(r, s) && buf_pending(&c->out) < TYPE_AHEAD) {
            format_text(text, sizeof text, s, r->typed[s]++, now_us());
            conn_send(c, "MSG %s", text);
        }
        return;
    }
    if (c->in_flight || r->typed[s] >= r->per) {
        return;
    }
    long n = r->typed[s]++;
    c->in_flight = 1;
    c->ack_id++;
    c->sent_at = now > 0 ? now : now_us();
    format_text(text, sizeof text, s, n, c->sent_at);
    if (r->step == 3) {
        conn_send(c, "MSG %lld %s", c->ack_id, text);
    } else { /* the real client's offset: 16 hex digits, "-", a counter */
        conn_send(c, "MSG %lld %08x%08x-%ld %s", c->ack_id, c->offset_id, (unsigned)s, n, text);
    }
}

void latency_run(int step, int k, long total, struct result *res) {
    struct run r;
    struct server srv = {0};
    char name[32], problem[160] = "";
    snprintf(name, sizeof name, "lat%d-%d", step, k);
    run_init(&r, step, k, total);
    bench_server_start(&srv, step, name);
    r.port = srv.port;
    r.receiver = hello(&r, srv.port, RECEIVER, -1);
    r.raw = xcalloc((size_t)k, sizeof(struct conn *));
    for (int s = 0; s < k; s++) {
        r.raw[s] = hello(&r, srv.port, SENDER, s);
        r.raw[s]->offset_id = (unsigned)getpid() ^ ((unsigned)now_us() << 8);
    }
    struct pollfd *pfd = xcalloc((size_t)k + 1, sizeof *pfd);
    r.first_typed = r.last_progress = now_us();
    for (int s = 0; s < k; s++) {
        send_next(&r, r.raw[s], 0);
    }
    while ((r.received < r.total || (step >= 3 && r.nack < r.total)) && !r.receiver_lost &&
           now_us() - r.last_progress < STALL_MS * 1000LL) {
        if (now_us() - r.last_progress > 1000000) {
            write_off_lost(&r);
        }
        pfd[0] = (struct pollfd){r.receiver->fd, POLLIN, 0};
        for (int s = 0; s < k; s++) {
            struct conn *c = r.raw[s];
            pfd[s + 1] =
                (struct pollfd){c->fd, (short)(POLLIN | (buf_pending(&c->out) > 0 ? POLLOUT : 0)), 0};
        }
        if (poll(pfd, (nfds_t)k + 1, 100) == -1 && errno != EINTR) {
            die("poll: %s", strerror(errno));
        }
        check_interrupted();
        if (pfd[0].revents) {
            receive(&r);
        }
        for (int s = 0; s < k; s++) {
            struct conn *c = r.raw[s];
            if (pfd[s + 1].revents & POLLIN) {
                conn_read(&r, c);
            }
            if (c->eof) {
                continue;
            }
            if (pfd[s + 1].revents & POLLOUT) {
                conn_flush(c);
            }
            if (step <= 2) {
                send_next(&r, c, 0); /* the window moved when rows arrived */
            }
        }
    }
    double secs = (double)(r.last_arrival - r.first_typed) / 1e6;
    res->lat_rate = secs > 0 ? (double)r.received / secs : 0;
    qsort(r.arr_lat, (size_t)r.narr, sizeof(long long), cmp_ll);
    qsort(r.ack_lat, (size_t)r.nack, sizeof(long long), cmp_ll);
    res->arr50 = percentile(r.arr_lat, r.narr, 0.50);
    res->arr99 = percentile(r.arr_lat, r.narr, 0.99);
    res->ack50 = step >= 3 ? percentile(r.ack_lat, r.nack, 0.50) : -1;
    res->ack99 = step >= 3 ? percentile(r.ack_lat, r.nack, 0.99) : -1;
    if (r.received < r.total) {
        note(res, "latency run: the receiver got %ld of %ld rows", r.received, r.total);
    } else if (r.anomalies > 0) {
        note(res, "latency run: %ld rows lost, duplicated or out of order", r.anomalies);
    }
    if (r.receiver_drops > 0) {
        note(res, "latency run: the server cut the receiver off %d time(s)", r.receiver_drops);
    }
    free(pfd);
    run_free(&r);
    bench_server_stop(&srv, problem, sizeof problem);
    if (problem[0] != '\0') {
        note(res, "latency run: %s", problem);
    }
}

/* ---------------------------------------------------------------------
 * A client with a big stdin
 * ------------------------------------------------------------------- */

/* One step 4 client reads a file of `lines` lines; once stop_at rows are
 * stored it gets SIGTERM (0: it runs to the end of the file). */
void stdin_run(long lines, long stop_at, struct stdin_result *out) {
    struct run r;
    struct server srv = {0};
    struct prog p;
    char port_s[16], path[PATH_LEN + 64];
    memset(out, 0, sizeof *out);
    out->lines = lines;
    out->stop_at = stop_at;
    snprintf(path, sizeof path, "%s", tmp_path("stdin-%ld.txt", lines));
    FILE *file = fopen(path, "w");
    if (file == NULL) {
        die("%s: %s", path, strerror(errno));
    }
    for (long n = 0; n < lines; n++) {
        fprintf(file, "s0 n%ld t0 the quick brown fox\n", n);
    }
    if (fclose(file) != 0) {
        die("%s: %s", path, strerror(errno));
    }
    run_init(&r, 4, 1, stop_at ? stop_at : lines);
    char name[32];
    snprintf(name, sizeof name, "stdin-%ld", lines);
    bench_server_start(&srv, 4, name);
    r.port = srv.port;
    r.receiver = hello(&r, srv.port, RECEIVER, -1);
    snprintf(port_s, sizeof port_s, "%d", srv.port);
    int in = open_file(path, O_RDONLY), dn = open_file("/dev/null", O_WRONLY);
    int err = open_file(tmp_path("stdin-client.err"), O_WRONLY | O_TRUNC);
    const char *argv[] = {step_bin(4, "client"), "--port", port_s, NULL};
    prog_start(&p, argv, in, dn, err);
    close(in);
    close(dn);
    close(err);
    long long left_at = 0; /* the client ended before its rows arrived */
    r.last_progress = now_us();
    while (r.received < r.total && !r.receiver_lost && now_us() - r.last_progress < 3000000LL &&
           (left_at == 0 || now_us() - left_at < 1000000LL)) {
        struct pollfd pfd = {r.receiver->fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) > 0) {
            receive(&r);
        }
        check_interrupted();
        if (left_at == 0 && prog_poll(&p, 0)) {
            left_at = now_us();
        }
    }
    out->received = r.received;
    out->anomalies = r.anomalies;
    if (stop_at > 0) {
        prog_stop(&p, SIGTERM, 5000);
    } else if (prog_wait(&p, 10000) == -1) {
        prog_stop(&p, SIGKILL, 5000);
    }
    out->status = p.status;
    out->rss_kb = p.rss_kb;
    char problem[160] = "";
    bench_server_stop(&srv, problem, sizeof problem);
    char st[64];
    /* Stopped by our SIGTERM: the client names what it gives up and exits
     * 1 (or, an older one, dies of the signal). */
    int killed_by_us = stop_at > 0 && ((WIFSIGNALED(p.status) && WTERMSIG(p.status) == SIGTERM) ||
                                       (WIFEXITED(p.status) && WEXITSTATUS(p.status) <= 1));
    if (out->received < r.total || out->anomalies > 0) {
        snprintf(out->problem, sizeof out->problem,
                 "FAILED: lines lost or garbled: %ld of the first %ld rows out of sequence; client %s",
                 out->anomalies, out->received,
                 killed_by_us ? "stopped" : status_text(p.status, st, sizeof st));
    } else if (!killed_by_us && p.status != 0) {
        snprintf(out->problem, sizeof out->problem, "client %s", status_text(p.status, st, sizeof st));
    } else if (problem[0] != '\0') {
        snprintf(out->problem, sizeof out->problem, "%s", problem);
    }
    run_free(&r);
    unlink(path);
}

/* ---------------------------------------------------------------------
 * The bound: one loopback round trip, one insert
 * ------------------------------------------------------------------- */

static int read_line_blocking(int fd, char *buf, size_t cap) {
    size_t len = 0;
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n <= 0) {
            if (n == -1 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        len += (size_t)n;
        if (buf[len - 1] == '\n') {
            return 0;
        }
    }
    return -1;
}

/* n blocking ping-pongs of a chat-sized line over TCP loopback between two
 * new processes, as a client and the server do it: microseconds each. */
static void rtt_trial(long long *v, int n) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd == -1 || bind(lfd, (struct sockaddr *)&a, sizeof a) == -1 || listen(lfd, 1) == -1 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) == -1) {
        die("loopback listen: %s", strerror(errno));
    }
    fd_flags(lfd, 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == -1) {
        die("fork: %s", strerror(errno));
    }
    if (pid == 0) { /* the echo side */
        char buf[512];
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        int fd = accept(lfd, NULL, NULL);
        while (fd != -1 && read_line_blocking(fd, buf, sizeof buf) == 0) {
            write_all(fd, "ACK 1\n", 6);
        }
        _exit(0);
    }
    remember_kid(pid);
    close(lfd);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd == -1 || connect(fd, (struct sockaddr *)&a, sizeof a) == -1) {
        die("loopback connect: %s", strerror(errno));
    }
    char line[128], buf[512];
    int len = snprintf(line, sizeof line, "MSG 1 0123456789abcdef-1 s0 n0 t0 the quick brown fox\n");
    for (int i = -100; i < n; i++) {
        long long t = now_us();
        write_all(fd, line, (size_t)len);
        if (read_line_blocking(fd, buf, sizeof buf) == -1) {
            die("loopback ping-pong failed");
        }
        if (i >= 0) {
            v[i] = now_us() - t;
        }
    }
    close(fd);
    waitpid(pid, NULL, 0);
    forget_kid(pid);
}

/* Mean microseconds of one insert, each its own transaction, through
 * common/store.h: the server's table, pragmas and prepared statement.
 * with_offset: step 4's UNIQUE client offset is filled in too. */
static double measure_insert(int with_offset) {
    char err[256], offset[64], text[128];
    struct store *st = store_open(tmp_path("insert-%d.db", with_offset), err, sizeof err);
    long long t0 = 0;
    int64_t id;
    if (st == NULL) {
        die("store_open: %s", err);
    }
    for (int i = -1000; i < BOUND_ROUNDS; i++) {
        if (i == 0) {
            t0 = now_us();
        }
        snprintf(offset, sizeof offset, "0123456789abcdef-%d", i + 1000);
        format_text(text, sizeof text, 0, i, 0);
        if (store_insert(st, with_offset ? offset : NULL, text, &id) != SQLITE_OK) {
            die("insert: %s", store_errmsg(st));
        }
    }
    double us = (double)(now_us() - t0) / BOUND_ROUNDS;
    store_close(st);
    return us;
}

void measure_bound(struct bound *b) {
    long long *v = xcalloc(RTT_TRIALS * RTT_ROUNDS, sizeof(long long));
    for (int t = 0; t < RTT_TRIALS; t++) {
        rtt_trial(v + t * RTT_ROUNDS, RTT_ROUNDS);
        check_interrupted();
    }
    long long sum = 0;
    for (int i = 0; i < RTT_TRIALS * RTT_ROUNDS; i++) {
        sum += v[i];
    }
    b->mean = (double)sum / (RTT_TRIALS * RTT_ROUNDS);
    qsort(v, RTT_TRIALS * RTT_ROUNDS, sizeof(long long), cmp_ll);
    b->p10 = percentile(v, RTT_TRIALS * RTT_ROUNDS, 0.10);
    b->p50 = percentile(v, RTT_TRIALS * RTT_ROUNDS, 0.50);
    b->p90 = percentile(v, RTT_TRIALS * RTT_ROUNDS, 0.90);
    free(v);
    b->insert[1] = b->insert[2] = b->insert[3] = measure_insert(0);
    b->insert[4] = measure_insert(1);
}
