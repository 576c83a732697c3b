/* commit_fail.c -- group commit's promise, checked on a step's own server
 * code: a row whose commit fails is announced to nobody, even when the
 * commit that fails is the early one inside a turn.
 *
 * The server commits a loop turn's rows together (commit_turn()), before
 * it writes anything; send_line() commits early only when it must write a
 * full output out to make room. Here that early commit meets a full disk:
 * the process's file size limit (RLIMIT_FSIZE, what `ulimit -f` sets) is
 * lowered to the -wal file's size just before the turn. Three clients, in
 * fd order: a sender S, a listener L that never reads (its output is full
 * when the turn starts), and a listener R that reads everything. The
 * broadcast reaches S, then L: the early commit fails, and the clients
 * with output waiting (S, L) are dropped. R had nothing waiting, so it
 * was not; the broadcast then queues the lost row for R too, and only the
 * end of the turn, which drops the unsent output again, keeps it from R.
 *
 * Like replay_bound.c, the server's source is included whole, its main()
 * renamed, and its turns are driven as main() drives them. Built once per
 * step (commit_fail1 .. commit_fail4, -DSTEP=N); run by test_robust.c.
 * Exit status 0 when nothing named the lost row, with a line that says
 * what happened; 1 with the reason otherwise. */
#include "step_server.h" /* the step's server.c, main() renamed */

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define TEXT 3000 /* bytes a message: L's output fills in about 90 */

static char dir[] = "/tmp/commit-fail-XXXXXX";
static char got_r[1 << 20]; /* everything R read */
static size_t got_r_len;

static void die(const char *what) {
    fprintf(stderr, "commit_fail (step %d): %s\n", STEP, what);
    exit(2);
}

/* The server's end registered as a client; the peer's end returned. */
static int connect_client(int sndbuf) {
    int sv[2];
    char err[NET_ERR_LEN];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1 || net_set_nonblock(sv[0], err) == -1 ||
        net_set_nonblock(sv[1], err) == -1) {
        die("socketpair");
    }
    if (sndbuf > 0) {
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    }
    if (client_new(sv[0]) == NULL || write(sv[1], "HELLO 0\n", 8) != 8) {
        die("cannot set up a client");
    }
    return sv[1];
}

/* One turn of the loop, as main() runs it after select() said that every
 * client may be readable; then R reads what it got. */
static void turn(int r_peer) {
    fd_set rd;
    FD_ZERO(&rd);
    for (struct client *c = clients_next(NULL); c != NULL; c = clients_next(c)) {
        FD_SET(c->fd, &rd);
    }
    clients_read(&rd, handle_line);
    commit_turn();
    server.commit_failed = 0;
    clients_flush(replay_more);
    clients_run_timers(replay_more);
    clients_free_dead();
    ssize_t n;
    while ((n = read(r_peer, got_r + got_r_len, sizeof got_r - 1 - got_r_len)) > 0) {
        got_r_len += (size_t)n;
    }
    got_r[got_r_len] = '\0';
}

static void send_msg(int s_peer, int n) {
    static char line[TEXT + 64];
    int k = STEP == 4   ? snprintf(line, 64, "MSG %d off-%d ", n, n)
            : STEP == 3 ? snprintf(line, 64, "MSG %d ", n)
                        : snprintf(line, 64, "MSG ");
    k += snprintf(line + k, sizeof line - (size_t)k, "m%d ", n);
    memset(line + k, 'x', TEXT);
    line[k + TEXT] = '\n';
    if (write(s_peer, line, (size_t)k + TEXT + 1) != k + TEXT + 1) {
        die("write to the sender's socket");
    }
}

/* From here on, no file of this process may grow: the next commit's WAL
 * frames do not fit, and it fails as on a full disk (SQLITE_FULL). */
static void disk_full_now(void) {
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "%s/chat.db-wal", dir);
    struct rlimit lim;
    if (stat(path, &st) == -1 || getrlimit(RLIMIT_FSIZE, &lim) == -1) {
        die("stat the -wal file");
    }
    lim.rlim_cur = (rlim_t)st.st_size;
    if (setrlimit(RLIMIT_FSIZE, &lim) == -1) {
        die("setrlimit");
    }
}

/* The length of message n's CHAT line, its newline included. */
static size_t chat_len(int n) {
    return (size_t)snprintf(NULL, 0, "CHAT %d m%d ", n, n) + TEXT + 1;
}

static int64_t rows_stored(void) {
    return store_last_id(server.store); /* AUTOINCREMENT's counter: rolled back with the rows */
}

int main(void) {
    char path[64], err[256], lost[32];
    ignore_sigpipe();
    signal(SIGXFSZ, SIG_IGN); /* past the limit, write() fails with EFBIG instead */
    log_to(open("/dev/null", O_WRONLY)); /* the server's log */
    if (mkdtemp(dir) == NULL) {
        die("mkdtemp");
    }
    snprintf(path, sizeof path, "%s/chat.db", dir);
    server.store = store_open(path, err, sizeof err);
    if (server.store == NULL) {
        die(err);
    }
    server.opt.ping_interval = server.opt.ping_timeout = MAX_OPTION_MS;
    clients_init(server.opt.ping_interval, server.opt.ping_timeout, commit_turn); /* as start_up() does */
    store_group(server.store);
    server.listen.n = 0;
    server.spare_fd = server.stop_fd = -1;
    int s_peer = connect_client(0), l_peer = connect_client(4096), r_peer = connect_client(0);
    struct client *l = clients_next(clients_next(NULL));
    int l_fd = l->fd;
    turn(r_peer); /* the HELLOs */

    /* Fill L's output, a message a turn, until the next CHAT cannot fit. */
    int n = 0;
    while (buf_pending(&l->out) + chat_len(n + 1) <= MAX_OUTPUT) {
        send_msg(s_peer, ++n);
        turn(r_peer);
        if (client_at(l_fd) != l || rows_stored() != n) {
            die("L was cut off, or a message was not stored, before the disk filled");
        }
    }
    disk_full_now();
    send_msg(s_peer, ++n);
    turn(r_peer);
    turn(r_peer); /* R's close, if it was dropped */

    snprintf(lost, sizeof lost, " m%d ", n);
    int stored = rows_stored() == n - 1, told_r = strstr(got_r, lost) != NULL;
    int r_dropped = clients_count() == 0;
    printf("step %d: %d messages, the last one's early commit failed; stored %lld; R %s it, %s\n", STEP, n,
           (long long)rows_stored(), told_r ? "was told of" : "was not told of",
           r_dropped ? "every client dropped" : "a client still connected");
    (void)l_peer;
    store_close(server.store);
    remove_store(dir);
    return stored && !told_r && r_dropped ? 0 : 1;
}
