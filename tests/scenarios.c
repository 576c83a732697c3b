/* scenarios.c -- the delivery lab's fault scenarios. See scenarios.h.
 *
 * The contract. A student's own step is run by this lab and graded on it,
 * so the lab relies on this, and on nothing else the programs print:
 *   server: --port P --db FILE --ping-interval MS --ping-timeout MS, and a
 *     stderr line containing "listening on HOST:PORT";
 *   client: --port --timeout --reconnection-delay --reconnection-delay-max,
 *     and in steps 3-4 --ack-timeout --retries; on stdout each row as
 *     "<id> <text>"; on stderr "connected as" when welcomed, "disconnected"
 *     when a connection is lost, and a line containing "gave up" and
 *     ending in ": <text>" for each message given up; exit status 1 iff a
 *     message was given up;
 *   the wire protocol of TUTORIAL.md's "The protocol", which the proxy
 *     reads (MSG, ACK, REJECT lines), and the messages table of the db.
 * A client may keep files in its working directory: each client runs in
 * a directory of its own, the same one again after a restart.
 *
 * Every scenario is one "phase": a fault injected at an exact point of the
 * protocol while the sender types. Around it, two messages are typed
 * before (the normal case) and one after (back to normal). The mixed
 * scenario runs every single-fault phase but two (sender, window: their
 * claims differ from the others'), in an order shuffled from a seed.
 *
 * Timers are short so that a run takes about a second: heartbeat 300 ms +
 * 300 ms, reconnection 50..200 ms, connect timeout 1 s, and for the steps
 * with acks an ack timeout of 400 ms and 5 retries (2.4 s of budget, more
 * than any fault here lasts).
 *
 * Synchronisation is always on a condition (a contract line above, a row
 * in the database, the proxy's counters) with a deadline. The only fixed
 * waits are fault durations: how long the database stays locked.
 *
 * Each client has a proxy of its own (both get every fault command), so
 * that a proxy's counters tell one client's connections from the other's:
 * how often the sender was refused, how many MSGs it had in flight. */
#include "scenarios.h"

#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_MS 8000 /* deadline of any single wait in a run */
#define LOCK_HOLD_MS 500 /* how long the database stays locked */
#define ACK_DELAY_MS 150 /* "window": how late acks come back (ack timeout 400) */

enum who { SENDER, RECEIVER };
static const char *const who_name[] = {"sender", "receiver"};

struct lab {
    int step, acks;
    char db[512]; /* a copy: tmppath() rotates its buffers */
    struct proc *server, *receiver;
    struct proc *sender, *killed; /* killed: the sender before a restart */
    struct proc *proxy[2]; /* indexed by enum who */
    int server_port, control_fd[2], proxy_port[2];
    int typed; /* messages m1..m<typed> typed so far */
};

int lab_no_acks;

const struct lab_step lab_steps[] = {
    {1, "at most once", 0},
    {2, "buffered", 0},
    {3, "at least once", 1},
    {4, "exactly once", 1},
};
const int lab_nsteps = sizeof lab_steps / sizeof lab_steps[0];

/* ---------------------------------------------------------------------
 * Starting the pieces
 * ------------------------------------------------------------------- */

static const char *const SERVER_ARGS[] = {"--ping-interval", "300", "--ping-timeout", "300", NULL};

static struct proc *start_server(struct lab *l, int port) {
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    const char *args[] = {"--ping-interval", "300", "--ping-timeout", "300", "--port", portstr, NULL};
    return server_start(l->step, l->db, port ? args : SERVER_ARGS);
}

/* The control port from "proxy: listening on ..., control on H:P, ..." */
static int control_port(struct proc *p) {
    const char *s = strstr(p->err, "control on ");
    const char *colon = s ? strchr(s, ':') : NULL;
    return colon ? atoi(colon + 1) : 0;
}

static void start_proxy(struct lab *l, enum who w) {
    char port[16];
    snprintf(port, sizeof port, "%d", l->server_port);
    const char *argv[] = {bin_path("tests/proxy"), "--server-port", port, NULL};
    struct proc *p = proc_start(w == SENDER ? "proxy-sender" : "proxy-receiver", argv);
    WAIT_UNTIL(proc_port(p) > 0 && control_port(p) > 0, WAIT_MS);
    l->proxy[w] = p;
    l->proxy_port[w] = proc_port(p);
    l->control_fd[w] = tcp_connect(control_port(p));
}

/* Each client runs in a directory of its own, the same one after a
 * restart, as two users' clients would: one that keeps its queue or its
 * id in a file there finds it again, and never finds the other's. */
static struct proc *start_client(struct lab *l, enum who w) {
    const char *plain[] = {"--timeout", "1000", NULL};
    const char *acks[] = {"--timeout", "1000", "--ack-timeout", "400", "--retries", "5", NULL};
    const char *dir = tmppath(who_name[w]);
    char here[1024];
    REQUIRE(getcwd(here, sizeof here) != NULL);
    REQUIRE(mkdir(dir, 0700) == 0 || errno == EEXIST);
    REQUIRE(chdir(dir) == 0);
    struct proc *p = client_start(l->step, l->proxy_port[w], l->acks ? acks : plain);
    REQUIRE(chdir(here) == 0);
    return p;
}

static int connections(struct proc *client) {
    return proc_err_count(client, "connected as");
}

static void lab_start(struct lab *l, int step) {
    memset(l, 0, sizeof *l);
    l->step = step;
    for (int i = 0; i < lab_nsteps; i++) {
        l->acks |= lab_steps[i].step == step && lab_steps[i].acks && !lab_no_acks;
    }
    snprintf(l->db, sizeof l->db, "%s", tmppath("chat.db"));
    l->server = start_server(l, 0);
    l->server_port = proc_port(l->server);
    start_proxy(l, SENDER);
    start_proxy(l, RECEIVER);
    l->receiver = start_client(l, RECEIVER);
    l->sender = start_client(l, SENDER);
    WAIT_UNTIL(connections(l->receiver) > 0 && connections(l->sender) > 0, WAIT_MS);
}

/* ---------------------------------------------------------------------
 * Actions
 * ------------------------------------------------------------------- */

/* Type the next n numbered messages into the sender, in one write, as a
 * user pasting lines would. */
static void type_messages(struct lab *l, int n) {
    char batch[256] = "";
    for (int i = 0; i < n; i++) {
        size_t len = strlen(batch);
        snprintf(batch + len, sizeof batch - len, "m%d\n", ++l->typed);
    }
    proc_write(l->sender, "%s", batch);
}

static void command_to(struct lab *l, enum who w, const char *cmd) {
    tcp_send(l->control_fd[w], cmd, strlen(cmd));
    tcp_send(l->control_fd[w], "\n", 1);
    REQUIRE(tcp_wait_line(l->control_fd[w], "OK", WAIT_MS));
}

/* A fault hits both clients' connections, as one network would. */
static void proxy_command(struct lab *l, const char *cmd) {
    command_to(l, SENDER, cmd);
    command_to(l, RECEIVER, cmd);
}

/* A counter from the sender's proxy's status: "held=" (lines frozen by
 * hold-after, both ways), "refused=", "inflight-max=", ... */
static long long sender_wire(struct lab *l, const char *key) {
    command_to(l, SENDER, "status");
    const char *s = tcp_log(l->control_fd[SENDER]), *last = NULL;
    while ((s = strstr(s, key)) != NULL) {
        last = s++;
    }
    return last ? atoll(last + strlen(key)) : 0;
}

/* A fault's duration is a fixed time, not a synchronisation: pump the
 * programs' output meanwhile. */
static void hold_for(int ms) {
    long long end = now_ms() + ms;
    while (now_ms() < end) {
        pump((int)(end - now_ms()));
    }
}

/* Did the sender say it gave message m<i> up? A stderr line that holds
 * "gave up" and ends with ": m3" (our step 4 says ": <offset> m3"). */
static int said_given_up(const struct proc *p, int i) {
    char tail[32];
    int n = snprintf(tail, sizeof tail, " m%d\n", i);
    for (const char *s = p->err; (s = strstr(s, "gave up")) != NULL; s++) {
        const char *eol = strchr(s, '\n');
        if (eol != NULL && eol - s >= n && strncmp(eol + 1 - n, tail, (size_t)n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ...the sender, or the one it replaced (scenario "sender"). */
static int given_up(struct lab *l, int i) {
    return said_given_up(l->sender, i) || (l->killed != NULL && said_given_up(l->killed, i));
}

/* Before a fault, let the sender finish what it has: steps with acks keep
 * every message until it is stored or given up; and every client prints
 * each stored row, the sender too. The server writes a message's
 * broadcast and its ack together, so once the sender has printed every
 * row, it has read every ack: a fault now cannot catch an ack in flight. */
static void wait_settled(struct lab *l) {
    char where[64];
    for (int i = 1; l->acks && i <= l->typed; i++) {
        snprintf(where, sizeof where, "content = 'm%d'", i);
        WAIT_UNTIL(db_count(l->db, where) > 0 || given_up(l, i), WAIT_MS);
    }
    WAIT_UNTIL(proc_out_lines(l->sender) >= db_count(l->db, "1"), WAIT_MS);
}

/* ---------------------------------------------------------------------
 * The faults, one phase each
 * ------------------------------------------------------------------- */

/* The network goes down, and the sender knows it. */
static void network_down(struct lab *l) {
    int drops = proc_err_count(l->sender, "disconnected");
    proxy_command(l, "down");
    WAIT_UNTIL(proc_err_count(l->sender, "disconnected") > drops, WAIT_MS);
}

/* Type n lines while the network is down, and wait until the sender has
 * surely read them: its proxy refused it twice more, counting from after
 * they were typed. The client saw the first of those two connections
 * closed after the lines were on its stdin, in a select() that reported
 * stdin readable too, and started the second one later: by then it had
 * read them (if it reads stdin while disconnected at all). */
static void type_while_down(struct lab *l, int n) {
    type_messages(l, n);
    long long refused = sender_wire(l, "refused=");
    WAIT_UNTIL(sender_wire(l, "refused=") >= refused + 2, WAIT_MS);
}

/* The network goes down; three lines are typed; it comes back. */
static void phase_down(struct lab *l) {
    int before = connections(l->sender);
    network_down(l);
    type_while_down(l, 3);
    proxy_command(l, "up");
    WAIT_UNTIL(connections(l->sender) > before, WAIT_MS);
}

/* Two lines typed; the connection dies while the second is on the wire:
 * the server never sees it. */
static void phase_cut(struct lab *l) {
    int before = connections(l->sender);
    proxy_command(l, "cut-before 2");
    type_messages(l, 2);
    WAIT_UNTIL(connections(l->sender) > before, WAIT_MS);
}

/* Two lines typed; the second reaches the server and is stored, then the
 * connection dies before anything comes back: its ack is lost. */
static void phase_ack_lost(struct lab *l) {
    int before = connections(l->sender);
    proxy_command(l, "cut-after 2");
    type_messages(l, 2);
    WAIT_UNTIL(connections(l->sender) > before, WAIT_MS);
}

/* Three lines typed; the second reaches the server, which stores it and
 * replies; then the connection freezes, and the server is killed (SIGKILL)
 * and restarted before the reply or the third line gets through. */
static void phase_server_killed(struct lab *l) {
    int before = connections(l->sender);
    long long rows = db_count(l->db, "1");
    proxy_command(l, "hold-after 2");
    type_messages(l, 3);
    /* The first two lines are stored, and two lines are frozen in the
     * proxy: the server's reply to the second (its broadcast, plus its ack
     * in steps with acks), or, in steps without acks, the reply and the
     * third line, which the client wrote straight after the second. */
    WAIT_UNTIL(db_count(l->db, "1") >= rows + 2 && sender_wire(l, "held=") >= 2, WAIT_MS);
    proc_kill(l->server);
    l->server = start_server(l, l->server_port);
    WAIT_UNTIL(connections(l->sender) > before, WAIT_MS);
}

/* Another process locks the database; three lines are typed; the lock is
 * released half a second after the first of them reached the server
 * (whose inserts never wait for a lock: the first fails at once). */
static void phase_db_locked(struct lab *l) {
    long long msgs = sender_wire(l, "msgs=");
    void *lock = db_lock(l->db);
    type_messages(l, 3);
    WAIT_UNTIL(sender_wire(l, "msgs=") > msgs, WAIT_MS);
    hold_for(LOCK_HOLD_MS);
    db_unlock(lock);
}

/* The network silently stops delivering (a half-open connection): two
 * lines typed vanish, until the heartbeat notices and the network is
 * back. */
static void phase_stall(struct lab *l) {
    int before = connections(l->sender), drops = proc_err_count(l->sender, "disconnected");
    proxy_command(l, "blackhole");
    type_messages(l, 2);
    WAIT_UNTIL(proc_err_count(l->sender, "disconnected") > drops, WAIT_MS);
    proxy_command(l, "clear");
    WAIT_UNTIL(connections(l->sender) > before, WAIT_MS);
}

/* The sender has two lines not yet acked (typed while the network is
 * down), is killed (SIGKILL), and started again in the same directory
 * with the same options; the network comes back and one more line is
 * typed into the new process. */
static void phase_sender_killed(struct lab *l) {
    network_down(l);
    type_while_down(l, 2);
    proc_kill(l->sender);
    l->killed = l->sender;
    l->sender = start_client(l, SENDER);
    proxy_command(l, "up");
    WAIT_UNTIL(connections(l->sender) > 0, WAIT_MS);
    type_messages(l, 1);
}

/* Acks come back late: three lines typed at once, while every line from
 * the server takes ACK_DELAY_MS longer. A client that waits for each ack
 * has one message in flight; one with a window, up to three. */
static void phase_window(struct lab *l) {
    char cmd[32];
    snprintf(cmd, sizeof cmd, "delay-replies %d", ACK_DELAY_MS);
    proxy_command(l, cmd);
    type_messages(l, 3);
    wait_settled(l);
    proxy_command(l, "clear");
}

const struct scenario lab_scenarios[] = {
    {"down", "network down while typing",
     "step 1 drops the lines typed while disconnected; step 2 keeps them until it reconnects.", phase_down,
     0},
    {"cut", "connection cut, message on the wire",
     "the line dies with the connection; steps 1-2 never learn it; step 3 resends it (no ack).", phase_cut,
     0},
    {"ack", "ack lost",
     "the server stored it; step 3 never saw the ack and stores it again; step 4's UNIQUE offset stops that.",
     phase_ack_lost, 0},
    {"kill", "server killed and restarted",
     "a line waiting in the dead connection is gone (steps 1-2); a stored but unacked one comes back twice "
     "(step 3).",
     phase_server_killed, 0},
    {"lock", "database locked",
     "the inserts fail; steps 1-2 lose those lines; steps 3-4 get no ack and retry until the lock is gone.",
     phase_db_locked, 0},
    {"stall", "network stalls (half-open)",
     "lines vanish into a silent connection until the heartbeat drops it; only acks bring them back.",
     phase_stall, 0},
    {"sender", "sender killed and restarted",
     "what the sender had not sent or got acked dies with it, at every step: its queue is in memory only.",
     phase_sender_killed, NOT_MIXED},
    {"window", "acks slow to come back",
     "no fault, only late acks: steps 3-4 wait for each ack, one message in flight; a window would send on.",
     phase_window, NOT_MIXED | SHOW_INFLIGHT},
    {"mixed", "all faults, shuffled", "every fault above but the last two, in an order drawn from the seed.",
     NULL, 0},
};
const int lab_nscenarios = sizeof lab_scenarios / sizeof lab_scenarios[0];

/* ---------------------------------------------------------------------
 * A run, and its count
 * ------------------------------------------------------------------- */

/* Every phase, in an order drawn from the seed (Fisher-Yates, with a
 * small LCG of our own so the order is the same on every libc). */
static void phase_mixed(struct lab *l, unsigned seed) {
    int order[16], n = 0;
    for (int i = 0; i < lab_nscenarios; i++) {
        if (lab_scenarios[i].phase != NULL && !(lab_scenarios[i].flags & NOT_MIXED)) {
            order[n++] = i;
        }
    }
    for (int i = n - 1; i > 0; i--) {
        seed = seed * 1103515245u + 12345u;
        int j = (int)((seed >> 16) % (unsigned)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < n; i++) {
        lab_scenarios[order[i]].phase(l);
        wait_settled(l);
    }
}

/* The rows, in id order, as the receiver should have printed them. */
static char *expected_output(const char *db) {
    sqlite3 *h;
    sqlite3_stmt *st;
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    REQUIRE(out != NULL && sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_busy_timeout(h, 2000);
    REQUIRE(sqlite3_prepare_v2(h, "SELECT id, content FROM messages ORDER BY id", -1, &st, NULL) ==
            SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW && len + 64 < cap) {
        len += (size_t)snprintf(out + len, cap - len, "%lld %s\n", (long long)sqlite3_column_int64(st, 0),
                                (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return out;
}

/* Per typed message: lost, duplicated, given up, recovered; and whether
 * the first rows of the stored ones rise with the typed order. */
static void count_messages(struct lab *l, struct outcome *out) {
    char where[64], sql[128];
    long long last_id = 0;
    out->order_kept = 1;
    for (int i = 1; i <= l->typed; i++) {
        snprintf(where, sizeof where, "content = 'm%d'", i);
        long long n = db_count(l->db, where);
        snprintf(sql, sizeof sql, "SELECT COALESCE(MIN(id), 0) FROM messages WHERE %s", where);
        long long first = db_scalar(l->db, sql);
        out->lost += n == 0;
        out->dup += n > 1 ? (int)n - 1 : 0;
        out->gave_up += given_up(l, i);
        out->recovered += given_up(l, i) && n > 0;
        if (n > 0) {
            out->order_kept &= first > last_id;
            last_id = first;
        }
    }
}

static void lab_finish(struct lab *l, struct outcome *out) {
    proc_close_stdin(l->sender);
    out->sender_status = proc_wait_exit(l->sender, 15000);
    REQUIRE(out->sender_status >= 0);
    out->typed = l->typed;
    count_messages(l, out);
    out->inflight = (int)sender_wire(l, "inflight-max=");
    out->rows = (int)db_count(l->db, "1");
    /* The receiver has until the deadline to print every row. */
    long long end = now_ms() + 5000;
    while (proc_out_lines(l->receiver) < out->rows && now_ms() < end) {
        pump(50);
    }
    char *expected = expected_output(l->db);
    out->receiver_ok = strcmp(expected, l->receiver->out) == 0;
    free(expected);
}

void lab_run(int step, int index, unsigned seed, struct outcome *out) {
    struct lab l;
    memset(out, 0, sizeof *out);
    lab_start(&l, step);
    type_messages(&l, 2);
    WAIT_UNTIL(proc_out_lines(l.receiver) >= 2, WAIT_MS);
    wait_settled(&l);
    if (lab_scenarios[index].phase != NULL) {
        lab_scenarios[index].phase(&l);
    } else {
        phase_mixed(&l, seed);
    }
    type_messages(&l, 1);
    lab_finish(&l, out);
}
