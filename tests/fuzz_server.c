/* fuzz_server.c -- libFuzzer target: one connection's bytes, as the server
 * of a step handles them.
 *
 * Build and run: make fuzz (tests/check.mk) builds it once per step with
 * -DFUZZ_STEP=N. Reproduce one input: tests/fuzz_server4 FILE; add
 * FUZZ_SERVER_LOG=1 to see the server's own log on stderr.
 *
 * The server's source is included whole, its main() renamed, so that its
 * static functions are reachable: client_new() (common/clients.c)
 * registers one end of a socketpair as a connection, the input is written
 * into the other end in chunks, and each turn of the loop calls what
 * main() calls after select(), with the step's handlers:
 * clients_read(handle_line), commit_turn(), clients_flush(replay_more),
 * clients_run_timers(replay_more), clients_free_dead(). What the server
 * sends back is read after every
 * turn and checked. The database is a ":memory:" one with SEED_ROWS rows
 * (more than a replay page); common/store.c is included too, for its
 * handle, so that the rows an input added are deleted before the next
 * one: inputs do not depend on each other.
 *
 * The input is the byte stream, as a client would send it; its hash picks
 * the chunking (1 to 5000 bytes) and whether the peer half-closes at the
 * end. Beyond ASan and UBSan, every input is checked for:
 *   - every line from the server is shorter than MAX_LINE, has a known
 *     verb, WELCOME comes at most once, CHAT, ACK and REJECT only after it;
 *   - the CHAT ids are contiguous and increasing: every row once, in order;
 *   - no output is queued once the server has half-closed;
 *   - after the peer half-closes, the server closes (within a bound);
 *   - nothing is left behind: no client, no fd, no memory (LeakSanitizer). */
#include <stdint.h>
#include <stdio.h>

#ifndef FUZZ_STEP
#define FUZZ_STEP 4
#endif

/* The server writes its log to stderr: here it goes to fuzz_log. */
static FILE *fuzz_log;

static FILE *real_stderr(void) {
    return stderr;
}

#undef stderr
#define stderr fuzz_log
#define main server_main
#include "../common/store.c" /* NOLINT(bugprone-suspicious-include): for struct store */
#if FUZZ_STEP == 1
#include "../step1/server.c" /* NOLINT(bugprone-suspicious-include) */
#elif FUZZ_STEP == 2
#include "../step2/server.c" /* NOLINT(bugprone-suspicious-include) */
#elif FUZZ_STEP == 3
#include "../step3/server.c" /* NOLINT(bugprone-suspicious-include) */
#else
#include "../step4/server.c" /* NOLINT(bugprone-suspicious-include) */
#endif
#undef main
#undef stderr

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEED_ROWS 70 /* REPLAY_PAGE + 6: a replay takes two pages */
#define STR_(x) #x
#define STR(x) STR_(x)
_Static_assert(SEED_ROWS > REPLAY_PAGE && REPLAY_PAGE * 300 > REPLAY_FILL, "a replay must take two pages");
#define MAX_CHUNK 5000
#define TURNS_AFTER_INPUT 1000 /* to flush and close, once the input is written */

/* What the peer received: lines, checked one by one. */
struct peer_view {
    char line[MAX_LINE + 1];
    size_t len; /* bytes of the line being received */
    int welcomed;
    int64_t last_chat; /* 0: none yet */
    int eof;
};

static void fail(const char *what, const char *line) {
    fprintf(real_stderr(), "fuzz_server (step %d): %s%s%s\n", FUZZ_STEP, what, line ? ": " : "",
            line ? line : "");
    abort();
}

static void check_line(struct peer_view *v, char *line) {
    char *arg = strchr(line, ' ');
    if (arg != NULL) {
        *arg++ = '\0';
    }
    if (strcmp(line, "WELCOME") == 0) {
        if (v->welcomed) {
            fail("a second WELCOME", arg);
        }
        v->welcomed = 1;
    } else if (strcmp(line, "CHAT") == 0) {
        int64_t id;
        char *text = arg ? strchr(arg, ' ') : NULL;
        if (!v->welcomed || text == NULL) {
            fail("CHAT before WELCOME, or without text", arg);
        }
        *text = '\0';
        if (parse_int64(arg, &id) == -1 || (v->last_chat != 0 && id != v->last_chat + 1)) {
            fail("CHAT ids not contiguous and increasing", arg);
        }
        v->last_chat = id;
    } else if (strcmp(line, "ACK") == 0 || strcmp(line, "REJECT") == 0) {
        if (FUZZ_STEP < 3 || !v->welcomed) {
            fail("an ACK or REJECT before WELCOME or in a step without acks", arg);
        }
    } else if (strcmp(line, "PING") != 0 && strcmp(line, "ERR") != 0) {
        fail("an unknown line from the server", line);
    }
}

static void receive(struct peer_view *v, const char *data, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (v->len == MAX_LINE) {
            fail("a line of MAX_LINE bytes or more from the server", NULL);
        }
        if (data[i] != '\n') {
            v->line[v->len++] = data[i];
            continue;
        }
        v->line[v->len] = '\0';
        if (strlen(v->line) != v->len) {
            fail("a NUL byte in a line from the server", NULL);
        }
        check_line(v, v->line);
        v->len = 0;
    }
}

/* Read what the server sent. 1 if anything came. */
static int drain_peer(int peer, struct peer_view *v) {
    char buf[16384];
    int got = 0;
    while (!v->eof) {
        ssize_t n = read(peer, buf, sizeof buf);
        if (n > 0) {
            receive(v, buf, (size_t)n);
            got = 1;
        } else if (n == -1 && errno == EINTR) {
            continue;
        } else if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            v->eof = 1; /* end of file, or a reset */
        }
    }
    return got;
}

/* One turn of main()'s loop, for the one connection on fd. */
static void loop_turn(int fd) {
    fd_set rd, wr;
    struct timeval tv = {0, 0};
    struct client *c = client_at(fd);
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    FD_SET(fd, &rd);
    if (buf_pending(&c->out) > 0) {
        FD_SET(fd, &wr);
    }
    if (select(fd + 1, &rd, &wr, NULL, &tv) == -1) {
        FD_ZERO(&rd);
        FD_ZERO(&wr);
    }
    clients_read(&rd, handle_line);
    commit_turn();
    server.commit_failed = 0;
    clients_flush(replay_more);
    clients_run_timers(replay_more);
    if (client_at(fd) != NULL && c->state != CLIENT_DEAD && c->linger.shut && buf_pending(&c->out) > 0) {
        fail("output queued after the server half-closed", NULL);
    }
    clients_free_dead();
}

/* The seed rows only, and the next id SEED_ROWS + 1, as before any input. */
static void reset_store(void) {
    static const char sql[] = "DELETE FROM messages WHERE id > " STR(
        SEED_ROWS) ";"
                   " UPDATE sqlite_sequence SET seq = " STR(SEED_ROWS) " WHERE name = 'messages'";
    if (sqlite3_exec(server.store->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        fail("cannot reset the database", store_errmsg(server.store));
    }
}

/* The database's folder, removed when the fuzzer exits. */
static char db_dir[] = "/tmp/fuzz-server-XXXXXX";

static void remove_db_dir(void) {
    static const char *const files[] = {"chat.db", "chat.db-wal", "chat.db-shm"};
    char path[sizeof db_dir + 16];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", db_dir, files[i]);
        unlink(path);
    }
    rmdir(db_dir);
}

static void open_store(void) {
    char err[256], text[640];
    int64_t id = 0;
    /* A file in a private folder: the server refuses a database whose
     * journal is not WAL, and ":memory:" has none. */
    char path[sizeof db_dir + 16];
    if (mkdtemp(db_dir) == NULL) {
        fail("mkdtemp", db_dir);
    }
    atexit(remove_db_dir);
    snprintf(path, sizeof path, "%s/chat.db", db_dir);
    server.store = store_open(path, err, sizeof err);
    if (server.store == NULL) {
        fail("store_open", err);
    }
    /* 300 to 600 bytes a row: a page is more than REPLAY_FILL, so a replay
     * pauses until the peer reads, and spans several turns. */
    for (int i = 1; i <= SEED_ROWS; i++) {
        int k = snprintf(text, sizeof text, "seed %d ", i);
        memset(text + k, 'a' + i % 26, (size_t)(300 + i * 37 % 300));
        text[k + 300 + i * 37 % 300] = '\0';
        if (store_insert(server.store, NULL, text, &id) != SQLITE_OK || id != i) {
            fail("store_insert", store_errmsg(server.store));
        }
    }
}

static uint32_t hash(const uint8_t *data, size_t size) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++) {
        h = (h ^ data[i]) * 16777619u;
    }
    return h;
}

static size_t next_chunk(uint32_t *state) {
    static const size_t max[] = {1, 7, 100, 1000, MAX_CHUNK};
    *state = *state * 1103515245u + 12345u;
    uint32_t v = *state >> 8;
    return 1 + (v / 5) % max[v % 5];
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *log = getenv("FUZZ_SERVER_LOG");
    fuzz_log = log != NULL && *log == '1' ? real_stderr() : fopen("/dev/null", "w");
    if (fuzz_log == NULL) {
        fail("cannot open /dev/null", NULL);
    }
    log_to(fileno(fuzz_log)); /* common/log.c: the server's log */
    ignore_sigpipe();
    server.listen.n = 0;
    server.spare_fd = -1;
    server.stop_fd = -1;
    /* A PING as soon as the last PONG is 1 ms old, and never a timeout:
     * the heartbeat runs, and an input decides what happens. */
    server.opt.ping_interval = 1;
    server.opt.ping_timeout = MAX_OPTION_MS;
    clients_init(server.opt.ping_interval, server.opt.ping_timeout, commit_turn); /* as start_up() does */
    open_store();
    store_group(server.store); /* the seed rows are in: from here on, as start_up() does */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct peer_view v;
    int sv[2];
    char err[NET_ERR_LEN];
    uint32_t state = hash(data, size);
    int half_close = (state & 3) != 0; /* mostly: the peer says it is done */

    reset_store();
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || net_set_nonblock(sv[0], err) != 0 ||
        net_set_nonblock(sv[1], err) != 0 || sv[0] >= FD_SETSIZE) {
        fail("socketpair", strerror(errno));
    }
    int fd = sv[0], peer = sv[1];
    if (client_new(fd) == NULL) {
        fail("client_new", NULL);
    }
    memset(&v, 0, sizeof v);
    size_t pos = 0, extra = 0;
    int half_closed = 0, idle = 0;
    while (client_at(fd) != NULL && extra < TURNS_AFTER_INPUT) {
        if (pos < size) {
            size_t k = next_chunk(&state);
            ssize_t w = write(peer, data + pos, k < size - pos ? k : size - pos);
            if (w > 0) {
                pos += (size_t)w;
            } else if (w == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                pos = size; /* the server closed: nothing more goes in */
            }
        } else {
            extra++;
            if (half_close && !half_closed) {
                shutdown(peer, SHUT_WR);
                half_closed = 1;
            }
        }
        loop_turn(fd);
        int got = drain_peer(peer, &v);
        /* Without a half-close the connection may stay open for ever: stop
         * once all is written and the server has gone quiet. */
        struct client *c = client_at(fd);
        if (pos == size && !half_close && !got && (c == NULL || buf_pending(&c->out) == 0)) {
            if (++idle == 3) {
                break;
            }
        } else {
            idle = 0;
        }
    }
    if (half_closed && client_at(fd) != NULL) {
        fail("the server did not close after the peer half-closed", NULL);
    }
    if (client_at(fd) != NULL) {
        client_free(client_at(fd));
    }
    drain_peer(peer, &v);
    close(peer);
    if (clients_count() != 0) {
        fail("a client is left behind", NULL);
    }
    return 0;
}
