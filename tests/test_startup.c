/* test_startup.c -- what a server and a client need before their loop
 * runs: open stdio, a database they can write.
 *
 * A database the server cannot write must stop it at start-up with a
 * clear reason (exit 1), not let it say "listening" and then fail every
 * insert. Root ignores file permissions, so when the tests run as root
 * (here and in CI) those servers run as user nobody through setpriv, and
 * their files are given to nobody; as an ordinary user (a student's
 * machine) they run as that user. The first test is the control: the
 * same set-up with a writable database does start.
 *
 * A program started with stdin or stderr closed must not let the first
 * file it opens take their place: the tests start real programs through
 * /bin/sh with `<&-` and `2>&-`.
 *
 * Every wait has a deadline; nothing sleeps. */
#include "harness.h"
#include "store.h"
#include "suites.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 5000 /* deadline of an ordinary wait */
#define NOBODY 65534 /* uid and gid of nobody, the user root runs servers as */
#define SETPRIV "/usr/bin/setpriv"

/* ---------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------- */

/* A system call that must work for the test to mean anything. */
static void must(int ok, const char *call, const char *path) {
    if (!ok) {
        test_fail(__FILE__, __LINE__, "%s(%s): %s", call, path, strerror(errno));
        test_abort();
    }
}

/* The first column of each row of sql, one line each, in buf; a failing
 * query leaves "error: <SQLite's message>" there instead. */
static void db_text(const char *db, const char *sql, char *buf, size_t cap) {
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    size_t len = 0;
    int rc = sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(h, 2000);
        rc = sqlite3_prepare_v2(h, sql, -1, &st, NULL);
    }
    buf[0] = '\0';
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        len += (size_t)snprintf(buf + len, cap - len, "%s\n", text ? text : "NULL");
        REQUIRE(len < cap);
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE) {
        snprintf(buf, cap, "error: %s", h ? sqlite3_errmsg(h) : "out of memory");
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
}

static struct store *open_store(const char *db) {
    char err[256];
    struct store *s = store_open(db, err, sizeof err);
    if (s == NULL) {
        test_fail(__FILE__, __LINE__, "store_open: %s", err);
        test_abort();
    }
    return s;
}

/* A database as the server makes it, holding two rows. */
static void make_db(const char *db) {
    int64_t id;
    struct store *s = open_store(db);
    REQUIRE(store_insert(s, NULL, "first", &id) == SQLITE_OK);
    REQUIRE(store_insert(s, NULL, "second", &id) == SQLITE_OK);
    store_close(s);
}

/* The texts stored in db, in id order, are exactly expected (one line
 * each), and the file passes SQLite's integrity check. */
static void check_rows(const char *db, const char *expected) {
    char rows[256], integrity[256];
    db_text(db, "PRAGMA integrity_check", integrity, sizeof integrity);
    if (strcmp(integrity, "ok\n") != 0) {
        test_fail(__FILE__, __LINE__, "integrity_check of %s: %s", db, integrity);
    }
    db_text(db, "SELECT content FROM messages ORDER BY id", rows, sizeof rows);
    if (strcmp(rows, expected) != 0) {
        test_fail(__FILE__, __LINE__, "rows of %s: expected \"%s\", got \"%s\"", db, expected, rows);
    }
}

/* ---------------------------------------------------------------------
 * The user the server runs as: nobody when we are root, else ourselves
 * ------------------------------------------------------------------- */

static int as_root(void) {
    return geteuid() == 0;
}

/* Could nobody walk through this directory (or run this program)? */
static int nobody_may_search(const struct stat *st) {
    if (st->st_uid == NOBODY) {
        return (st->st_mode & S_IXUSR) != 0;
    }
    if (st->st_gid == NOBODY) {
        return (st->st_mode & S_IXGRP) != 0;
    }
    return (st->st_mode & S_IXOTH) != 0;
}

/* As root, every directory from / down to path must let nobody through
 * (a tree cloned under /root would not); says which one does not. */
static void require_nobody_reaches(const char *path) {
    char full[4096], cwd[2048];
    if (path[0] == '/') {
        snprintf(full, sizeof full, "%s", path);
    } else {
        must(getcwd(cwd, sizeof cwd) != NULL, "getcwd", path);
        snprintf(full, sizeof full, "%s/%s", cwd, path);
    }
    for (char *end = full + 1;; end++) {
        if (*end != '/' && *end != '\0') {
            continue;
        }
        char was = *end;
        struct stat st;
        *end = '\0';
        must(stat(full, &st) == 0, "stat", full);
        if (!nobody_may_search(&st)) {
            test_fail(__FILE__, __LINE__,
                      "running as root, these tests run the server as nobody (uid %d), who cannot reach %s "
                      "(mode %03o): run them as an ordinary user, or from a tree and a TMPDIR that others "
                      "may enter",
                      NOBODY, full, (unsigned)(st.st_mode & 0777));
            test_abort();
        }
        *end = was;
        if (was == '\0') {
            return;
        }
    }
}

/* Makes path the server user's, with this mode (as root: nobody's). */
static void give(const char *path, mode_t mode) {
    if (as_root()) {
        must(chown(path, NOBODY, NOBODY) == 0, "chown", path);
    }
    must(chmod(path, mode) == 0, "chmod", path);
}

/* As root, the server runs from a copy in the test's directory: the tree
 * may sit where nobody cannot enter (a clone under /root, or a private
 * mktemp folder as make check-asan and CI use), and the server's path is
 * not what these tests are about. */
static const char *server_copy(int step) {
    const char *copy = tmppath("server");
    char chunk[65536];
    ssize_t n;
    int in = open(step_bin(step, "server"), O_RDONLY), out = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    must(in >= 0 && out >= 0, "open", copy);
    while ((n = read(in, chunk, sizeof chunk)) > 0) {
        must(write(out, chunk, (size_t)n) == n, "write", copy);
    }
    must(n == 0 && close(out) == 0, "copy to", copy);
    close(in);
    give(copy, 0755);
    return copy;
}

/* The test's directory, the server user's and writable by it. As root,
 * checks that nobody can reach it, and that we have setpriv. */
static void prepare_server_user(void) {
    give(tmpdir(), 0755);
    if (!as_root()) {
        return;
    }
    if (access(SETPRIV, X_OK) != 0) {
        test_fail(__FILE__, __LINE__,
                  "running as root, these tests need %s (util-linux) to run the server as nobody: "
                  "install it, or run the tests as an ordinary user",
                  SETPRIV);
        test_abort();
    }
    require_nobody_reaches(tmpdir());
}

/* stepN/server --port 0 --db <db>, as the server user. */
static struct proc *start_server_as_user(int step, const char *db) {
    const char *argv[16];
    int n = 0;
    if (as_root()) {
        argv[n++] = SETPRIV;
        argv[n++] = "--reuid=65534";
        argv[n++] = "--regid=65534";
        argv[n++] = "--clear-groups";
    }
    argv[n++] = as_root() ? server_copy(step) : step_bin(step, "server");
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--db";
    argv[n++] = db;
    argv[n] = NULL;
    return proc_start("server", argv);
}

/* The server gave up at start-up, with why in its stderr, and without
 * ever listening. */
static void check_refused(struct proc *s, const char *why) {
    CHECK_EQ_INT(proc_wait_exit(s, WAIT_MS), 1);
    CHECK_EQ_INT(proc_err_count(s, "cannot open the database"), 1);
    if (proc_err_count(s, why) != 1) {
        test_fail(__FILE__, __LINE__, "the server's stderr does not say \"%s\"", why);
    }
    CHECK_EQ_INT(proc_port(s), 0);
}

/* ---------------------------------------------------------------------
 * A database the server cannot write
 * ------------------------------------------------------------------- */

/* The control for the refusals below: the same user, directory and
 * command start a server on a writable database. Its start-up write test
 * (an insert rolled back) leaves no row and no used id behind. */
static void writable_db_accepted(int step) {
    const char *db = tmppath("chat.db");
    prepare_server_user();
    struct proc *s = start_server_as_user(step, db);
    WAIT_UNTIL(proc_port(s) > 0 || s->exited, WAIT_MS);
    REQUIRE(proc_port(s) > 0);
    CHECK_EQ_INT(db_count(db, "1"), 0);
    CHECK_EQ_INT(db_scalar(db, "SELECT COUNT(*) FROM sqlite_sequence"), 0);
}

/* chmod 0444 after two rows: SQLite would open it read-only without a
 * word; the server must refuse it, and leave the rows as they were. */
static void read_only_file_refused(int step) {
    const char *db = tmppath("chat.db");
    prepare_server_user();
    make_db(db);
    give(db, 0444);
    struct proc *s = start_server_as_user(step, db);
    check_refused(s, "is read-only");
    check_rows(db, "first\nsecond\n");
}

/* A folder the server may not write, with no database in it: SQLite
 * cannot create the file. */
static void read_only_folder_refused(int step) {
    const char *dir = tmppath("ro"), *db = tmppath("ro/chat.db");
    struct stat st;
    prepare_server_user();
    must(mkdir(dir, 0755) == 0, "mkdir", dir);
    give(dir, 0555);
    struct proc *s = start_server_as_user(step, db);
    check_refused(s, "may the server write in it?");
    CHECK(stat(db, &st) != 0 && errno == ENOENT);
    must(chmod(dir, 0755) == 0, "chmod", dir); /* so that it can be removed */
}

/* A writable database in a folder the server may not write: the file
 * opens read-write, but its -wal file cannot be created beside it. */
static void read_only_folder_with_db_refused(int step) {
    const char *dir = tmppath("ro"), *db = tmppath("ro/chat.db");
    prepare_server_user();
    must(mkdir(dir, 0755) == 0, "mkdir", dir);
    give(dir, 0755);
    make_db(db);
    give(db, 0644);
    give(dir, 0555);
    struct proc *s = start_server_as_user(step, db);
    check_refused(s, "folder is read-only");
    /* first: reading a WAL database needs its -shm file, which we may not
     * create in a read-only folder either (unless we are root) */
    must(chmod(dir, 0755) == 0, "chmod", dir);
    check_rows(db, "first\nsecond\n");
}

/* -wal and -shm files the server may not write (say, left behind by a
 * server once run as another user and killed), while the database file,
 * its folder and the journal mode are fine: only a real write tells. */
static void read_only_wal_refused(int step) {
    const char *db = tmppath("chat.db"), *wal = tmppath("chat.db-wal"), *shm = tmppath("chat.db-shm");
    sqlite3 *h = NULL;
    int persist = 1;
    prepare_server_user();
    make_db(db);
    /* a connection that keeps its -wal and -shm files when it closes */
    REQUIRE(sqlite3_open(db, &h) == SQLITE_OK);
    REQUIRE(sqlite3_file_control(h, "main", SQLITE_FCNTL_PERSIST_WAL, &persist) == SQLITE_OK);
    REQUIRE(sqlite3_exec(h, "SELECT COUNT(*) FROM messages", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(h);
    give(db, 0644);
    give(wal, 0444);
    give(shm, 0444);
    struct proc *s = start_server_as_user(step, db);
    check_refused(s, "-wal and -shm");
    check_rows(db, "first\nsecond\n");
}

/* ":memory:" cannot use WAL: SQLite's pragma answers "memory" instead of
 * failing, and the server says so. */
static void memory_db_refused(int step) {
    const char *argv[] = {step_bin(step, "server"), "--port", "0", "--db", ":memory:", NULL};
    struct proc *s = proc_start("server", argv);
    check_refused(s, "journal mode is memory, not WAL");
}

/* ---------------------------------------------------------------------
 * store_last_id(), called directly (the tests link common/)
 * ------------------------------------------------------------------- */

static void delete_row(const char *db, int64_t id) {
    sqlite3 *h = NULL;
    char sql[64];
    snprintf(sql, sizeof sql, "DELETE FROM messages WHERE id = %lld", (long long)id);
    REQUIRE(sqlite3_open(db, &h) == SQLITE_OK);
    REQUIRE(sqlite3_exec(h, sql, NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_changes(h) == 1);
    sqlite3_close(h);
}

/* 1 if another connection can checkpoint the whole WAL: nobody holds an
 * old snapshot open (store_last_id() must not, between its calls). */
static int wal_checkpoints_fully(const char *db) {
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int busy = -1;
    REQUIRE(sqlite3_open(db, &h) == SQLITE_OK);
    REQUIRE(sqlite3_prepare_v2(h, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, NULL) == SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) {
        busy = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return busy == 0;
}

static void last_id_highest_ever(void) {
    const char *db = tmppath("chat.db");
    int64_t id = 0;
    struct store *s = open_store(db);
    CHECK_EQ_INT(store_last_id(s), 0); /* and the write test used no id */
    for (int i = 1; i <= 3; i++) {
        REQUIRE(store_insert(s, NULL, "a row", &id) == SQLITE_OK);
        CHECK_EQ_INT(id, i);
    }
    CHECK_EQ_INT(store_last_id(s), 3);
    CHECK(wal_checkpoints_fully(db));
    delete_row(db, 3); /* from another connection, as an admin would */
    CHECK_EQ_INT(db_scalar(db, "SELECT MAX(id) FROM messages"), 2);
    CHECK_EQ_INT(store_last_id(s), 3); /* MAX(id) went down, this did not */
    REQUIRE(store_insert(s, NULL, "after the delete", &id) == SQLITE_OK);
    CHECK_EQ_INT(id, 4);
    CHECK_EQ_INT(store_last_id(s), 4);
    store_close(s);
    s = open_store(db); /* it is in the file, not in the connection */
    CHECK_EQ_INT(store_last_id(s), 4);
    store_close(s);
}

/* ---------------------------------------------------------------------
 * Programs started with stdio closed
 * ------------------------------------------------------------------- */

/* stdin closed: at end of file at once, so the client has nothing to send
 * and exits 0 within the deadline. Without the fix, the first file the
 * client opens becomes its stdin: its socket (steps 1-3, which then read
 * their own traffic as typed lines and never end) or /dev/urandom (step
 * 4, which sends random bytes as messages). */
static void client_stdin_closed(int step) {
    const char *db = tmppath("chat.db");
    char port[16];
    struct proc *s = server_start(step, db, NULL);
    snprintf(port, sizeof port, "%d", proc_port(s));
    const char *argv[] = {"/bin/sh",
                          "-c",
                          "exec \"$0\" \"$@\" <&-",
                          step_bin(step, "client"),
                          "--port",
                          port,
                          "--reconnection-delay",
                          "50",
                          "--reconnection-delay-max",
                          "200",
                          NULL};
    struct proc *c = proc_start("client", argv);
    CHECK_EQ_INT(proc_wait_exit(c, WAIT_MS), 0); /* -1: still running at the deadline */
    CHECK_EQ_INT(db_count(db, "1"), 0);
}

static unsigned random_number(void) {
    static unsigned seed;
    if (seed == 0) {
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)now_ms();
    }
    seed = seed * 1103515245u + 12345u;
    return seed >> 8;
}

/* A connected socket to 127.0.0.1:port, or -1 (nobody listens yet). */
static int try_connect(int port) {
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    tcp_adopt(fd);
    return fd;
}

/* 1 once a HELLO on port is answered by WELCOME <id> <welcome...>, 0 if s
 * exits first, or another server answers, or the deadline passes. */
static int welcomed_by(struct proc *s, int port, const char *welcome, long long end) {
    while (!s->exited && now_ms() < end) {
        int fd = try_connect(port);
        if (fd < 0) {
            pump(20); /* not listening yet */
            continue;
        }
        tcp_send(fd, "HELLO 0\n", 8);
        int ok = tcp_wait_line(fd, "WELCOME ", (int)(end - now_ms())) && strstr(tcp_log(fd), welcome) != NULL;
        tcp_close(fd);
        return ok;
    }
    return 0;
}

/* stepN/server with stdin and stderr closed, listening on *port. Without
 * stderr there is no "listening on" line to read the port from, so we
 * pick one as server_start() does, and knock: only our server answers
 * with our unusual ping settings, not another test's server that took the
 * port first (ours then exits, and we try another port). */
static struct proc *server_stdio_closed(int step, const char *db, int *port) {
    enum { TRIES = 3 }; /* a port taken by chance, three times in a row: never */
    long long end = now_ms() + WAIT_MS;
    char port_s[16], ping[16], welcome[40];
    int status = -1;
    snprintf(ping, sizeof ping, "%u", 600000 + random_number() % 100000);
    snprintf(welcome, sizeof welcome, " %s %s", ping, ping);
    for (int i = 0; i < TRIES && now_ms() < end; i++) {
        *port = 20000 + (int)(random_number() % 10000);
        snprintf(port_s, sizeof port_s, "%d", *port);
        const char *argv[] = {"/bin/sh",
                              "-c",
                              "exec \"$0\" \"$@\" <&- 2>&-",
                              step_bin(step, "server"),
                              "--port",
                              port_s,
                              "--db",
                              db,
                              "--ping-interval",
                              ping,
                              "--ping-timeout",
                              ping,
                              NULL};
        struct proc *s = proc_start("server", argv);
        if (welcomed_by(s, *port, welcome, end)) {
            return s;
        }
        status = proc_wait_exit(s, 0); /* -1: still running */
        proc_kill(s);
    }
    char last[40] = "was still running";
    if (status != -1) {
        snprintf(last, sizeof last, "exited with status %d", status);
    }
    test_fail(__FILE__, __LINE__,
              "a server with stdin and stderr closed never answered a HELLO (%d tries, deadline %d ms): "
              "the last one %s",
              TRIES, WAIT_MS, last);
    test_abort();
}

/* stdin and stderr closed: the server must still serve, and its log must
 * not end up in the database. Without the fix, the first files it opens
 * take fds 0 and 2, and the log goes wherever fd 2 now leads: into its
 * own signal pipe (these servers read their first log line as a stop
 * request, and exit 0 at once), or into a socket or a file. SQLite never
 * lets a database take fds 0-2 (it puts /dev/null there first), but the
 * checks below do not count on that. */
static void server_stdio_closed_serves(int step) {
    const char *db = tmppath("chat.db");
    int port;
    struct proc *s = server_stdio_closed(step, db, &port);
    struct proc *c = client_start(step, port, NULL);
    WAIT_UNTIL(proc_err_count(c, "connected as") >= 1, WAIT_MS);
    proc_write(c, "first\nsecond\n");
    WAIT_UNTIL(db_count(db, "1") == 2 || s->exited, WAIT_MS);
    proc_close_stdin(c);
    CHECK_EQ_INT(proc_wait_exit(c, WAIT_MS), 0);
    proc_signal(s, SIGTERM);
    CHECK_EQ_INT(proc_wait_exit(s, WAIT_MS), 0);
    check_rows(db, "first\nsecond\n");
}

/* ---------------------------------------------------------------------
 * The table: one wrapper per step
 * ------------------------------------------------------------------- */

FOR_1_4(writable_db_accepted)
FOR_1_4(read_only_file_refused)
FOR_1_4(read_only_folder_refused)
FOR_1_4(read_only_folder_with_db_refused)
FOR_1_4(read_only_wal_refused)
FOR_1_4(memory_db_refused)
FOR_ALL(client_stdin_closed)
FOR_ALL(server_stdio_closed_serves)

#define T(n, what, fn)                                                                                       \
    { "startup: step" #n " " what, fn##_##n }

const struct test startup_tests[] = {
    T_1_4("starts on a writable database; its write test leaves no row and no id", writable_db_accepted),
    T_1_4("refuses a read-only database file, its rows intact", read_only_file_refused),
    T_1_4("refuses a read-only folder holding no database", read_only_folder_refused),
    T_1_4("refuses a read-only folder holding a database, its rows intact", read_only_folder_with_db_refused),
    T_1_4("refuses -wal and -shm files it may not write, its rows intact", read_only_wal_refused),
    T_1_4("refuses --db :memory:, naming the journal mode", memory_db_refused),
    {"startup: store_last_id is the highest id ever issued, even after the newest row is deleted",
     last_id_highest_ever},
    T_ALL("client with stdin closed exits 0 at once and sends nothing", client_stdin_closed),
    T_ALL("server with stdin and stderr closed serves; its database stays intact",
          server_stdio_closed_serves),
};
const int startup_count = (int)(sizeof startup_tests / sizeof startup_tests[0]);
