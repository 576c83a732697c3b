/* replay_bound.c -- the replay's promise in limits.h, checked on a step's
 * own server code: a reader far behind, on a slow link, never has more
 * than REPLAY_FILL bytes and one row queued for it, however long the rows
 * are, so it is never cut off while it catches up.
 *
 * Over loopback the kernel's socket buffers are megabytes, and a flush
 * always takes a whole page: the overflow (a page of 64 long rows added
 * while most of REPLAY_FILL was still pending) needs a link that takes a
 * little at a time. Here it is one: the server's end of a socketpair with
 * a small send buffer, and a peer that reads 1500 bytes per loop turn.
 * Like fuzz_server.c, the server's source is included whole, its main()
 * renamed, so that its handlers can be driven turn by turn, through
 * common/clients.c as main() drives them.
 *
 * Built once per step (replay_bound1 .. replay_bound4, -DSTEP=N); run by
 * test_robust.c. Exit status 0 when every row arrived and the bound held;
 * the largest queue seen is printed either way. */
#include "step_server.h" /* the step's server.c, main() renamed */

#define ROWS 300 /* of MAX_TEXT bytes: 1.2 MB behind */
#define READ_PER_TURN 1500

static void die(const char *what) {
    fprintf(stderr, "replay_bound (step %d): %s\n", STEP, what);
    exit(2);
}

/* A database of ROWS rows of MAX_TEXT bytes, made by the store itself. */
static struct store *make_store(char *dir) {
    char path[64], err[256], *text = malloc(MAX_TEXT + 1);
    int64_t id;
    if (text == NULL || mkdtemp(dir) == NULL) {
        die("cannot make the database's folder");
    }
    snprintf(path, sizeof path, "%s/chat.db", dir);
    struct store *s = store_open(path, err, sizeof err);
    if (s == NULL) {
        die(err);
    }
    memset(text, 'r', MAX_TEXT);
    text[MAX_TEXT] = '\0';
    for (int i = 0; i < ROWS; i++) {
        if (store_insert(s, NULL, text, &id) != SQLITE_OK) {
            die(store_errmsg(s));
        }
    }
    free(text);
    return s;
}

int main(void) {
    char dir[] = "/tmp/replay-bound-XXXXXX", chunk[READ_PER_TURN], err[NET_ERR_LEN];
    int sv[2], small = 4096;
    ignore_sigpipe();
    log_to(open("/dev/null", O_WRONLY)); /* the server's log */
    server.store = make_store(dir);
    server.opt.ping_interval = server.opt.ping_timeout = MAX_OPTION_MS;
    clients_init(server.opt.ping_interval, server.opt.ping_timeout, commit_turn); /* as start_up() does */
    store_group(server.store);
    server.listen.n = 0;
    server.spare_fd = server.stop_fd = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1 || net_set_nonblock(sv[0], err) == -1 ||
        net_set_nonblock(sv[1], err) == -1) {
        die("socketpair");
    }
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    struct client *c = client_new(sv[0]);
    if (c == NULL || write(sv[1], "HELLO 0\n", 8) != 8) {
        die("cannot set up the client");
    }
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(sv[0], &rd);
    clients_read(&rd, handle_line); /* the HELLO: WELCOME and the first page */
    commit_turn();
    size_t worst = 0;
    long lines = 0;
    for (long turn = 0; turn < 100L * ROWS * (MAX_TEXT / READ_PER_TURN + 1) && lines < ROWS + 1; turn++) {
        if (client_at(sv[0]) == NULL || c->state == CLIENT_DEAD) {
            break; /* cut off */
        }
        worst = buf_pending(&c->out) > worst ? buf_pending(&c->out) : worst;
        ssize_t n = read(sv[1], chunk, sizeof chunk);
        for (ssize_t k = 0; k < n; k++) {
            lines += chunk[k] == '\n';
        }
        clients_flush(replay_more); /* as if select() said writable every turn: stricter */
        clients_run_timers(replay_more);
    }
    printf("step %d: %ld of %d lines, at most %zu bytes queued (bound %d)\n", STEP, lines, ROWS + 1, worst,
           REPLAY_FILL + MAX_LINE);
    int ok = lines == ROWS + 1 && worst <= REPLAY_FILL + MAX_LINE;
    store_close(server.store);
    remove_store(dir);
    return ok ? 0 : 1;
}
