/* store.c -- the chat history in SQLite. See store.h for the choices. */
#include "store.h"

#include "limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct store {
    sqlite3 *db;
    sqlite3_stmt *insert; /* prepared once: no SQL is parsed per message */
    sqlite3_stmt *replay;
    sqlite3_stmt *last_id;
    sqlite3_stmt *begin, *commit, *rollback; /* group commit (store_group()) */
    int grouping; /* store_group() was called: inserts wait for store_commit() */
    int rows; /* inserted in the open group transaction */
    int lost; /* why that transaction rolled back on its own: its rows are gone */
    int commit_rc; /* the last store_commit()'s error, for store_errmsg() */
};

static const char *SCHEMA = "CREATE TABLE IF NOT EXISTS messages ("
                            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                            " client_offset TEXT UNIQUE,"
                            " content TEXT)";

/* SQLite's words for the last error, and ours where theirs mislead. */
static void explain_error(struct store *s, char *err, size_t errlen) {
    const char *hint = "";
    switch (sqlite3_extended_errcode(s->db)) {
    case SQLITE_CANTOPEN:
        /* errno would mislead too: after EACCES SQLite tries to open the
         * file read-only, and that fails with ENOENT */
        hint = " (does its folder exist, and may the server write in it?)";
        break;
    case SQLITE_READONLY_DIRECTORY:
        hint = " (its folder is read-only: SQLite cannot create the -wal file beside it)";
        break;
    case SQLITE_READONLY:
        /* we get here after refuse_read_only(): the file itself is writable */
        hint = " (can the server write its -wal and -shm files? they may be another user's)";
        break;
    default:
        break;
    }
    snprintf(err, errlen, "%s%s", sqlite3_errmsg(s->db), hint);
}

/* SQLite quietly opens a file it may not write read-only; the server
 * would say "listening" and then fail every insert. */
static int refuse_read_only(struct store *s, char *err, size_t errlen) {
    if (sqlite3_db_readonly(s->db, "main") == 1) {
        snprintf(err, errlen, "the file is read-only (the server writes every message into it)");
        return -1;
    }
    return 0;
}

/* A commit appends every page it changed to the WAL, whole. A chat row is
 * a few dozen bytes, yet each commit changes a page of the table, one of
 * sqlite_sequence (AUTOINCREMENT) and, in step 4, a page of the UNIQUE
 * index for each sender whose message it holds: their offsets are spread
 * across the index. SQLite's default page is 4 KB; at 1 KB a commit
 * writes a quarter of the bytes, and its checkpoints fsync a quarter
 * (TUTORIAL, "The price of each guarantee"). It applies to a new file
 * only, before WAL is on: an existing database keeps its page size. */
static int use_small_pages(struct store *s, char *err, size_t errlen) {
    if (sqlite3_exec(s->db, "PRAGMA page_size=1024", NULL, NULL, NULL) != SQLITE_OK) {
        explain_error(s, err, errlen);
        return -1;
    }
    return 0;
}

/* This pragma does not fail when WAL is impossible: its one row names the
 * mode now in force ("memory" for ":memory:", "delete" for a temporary
 * database ""), so we read that row. */
static int use_wal(struct store *s, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    int ok = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        explain_error(s, err, errlen); /* a read-only folder ends up here */
    } else {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        if (mode != NULL && strcmp(mode, "wal") == 0) {
            ok = 0;
        } else {
            snprintf(err, errlen, "journal mode is %s, not WAL: the server needs a database file on disk",
                     mode ? mode : "unknown");
        }
    }
    sqlite3_finalize(st);
    return ok;
}

/* The proof that we can write: one insert, rolled back, so nothing is left
 * behind. The two checks above miss -wal and -shm files the server may
 * not write (say, left by a server once run with sudo, then killed), and
 * BEGIN IMMEDIATE alone succeeds even on a read-only file; the insert
 * fails in every such case. In WAL mode the row never reaches the disk:
 * a full disk still shows only at the first message. When the insert
 * fails, the transaction stays open until store_close() ends it. */
static const char *WRITE_TEST = "BEGIN IMMEDIATE;"
                                " INSERT INTO messages (content) VALUES ('start-up write test');"
                                " ROLLBACK";

static int prepare(struct store *s, const char *sql, sqlite3_stmt **st) {
    return sqlite3_prepare_v2(s->db, sql, -1, st, NULL) == SQLITE_OK ? 0 : -1;
}

static int prepare_statements(struct store *s) {
    if (prepare(s, "INSERT INTO messages (client_offset, content) VALUES (?, ?)", &s->insert) == -1 ||
        prepare(s, "SELECT id, content FROM messages WHERE id > ? ORDER BY id LIMIT ?", &s->replay) == -1 ||
        prepare(s, "SELECT seq FROM sqlite_sequence WHERE name = 'messages'", &s->last_id) == -1 ||
        prepare(s, "BEGIN IMMEDIATE", &s->begin) == -1 || prepare(s, "COMMIT", &s->commit) == -1 ||
        prepare(s, "ROLLBACK", &s->rollback) == -1) {
        return -1;
    }
    return 0;
}

static int setup(struct store *s, char *err, size_t errlen) {
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_OPEN_BUSY_MS);
    /* Refuse now what would make every insert fail once we serve. Small
     * pages go in before WAL: a new file takes its page size only then. */
    if (refuse_read_only(s, err, errlen) == -1 || use_small_pages(s, err, errlen) == -1 ||
        use_wal(s, err, errlen) == -1) {
        return -1;
    }
    /* The schema also creates sqlite_sequence, which last_id reads. */
    if (sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, WRITE_TEST, NULL, NULL, NULL) != SQLITE_OK || prepare_statements(s) == -1) {
        explain_error(s, err, errlen);
        return -1;
    }
    /* From here on the event loop runs: never wait for a lock. */
    sqlite3_busy_timeout(s->db, 0);
    return 0;
}

static int open_db(struct store *s, const char *path, char *err, size_t errlen) {
    if (sqlite3_open(path, &s->db) != SQLITE_OK) {
        if (s->db == NULL) {
            snprintf(err, errlen, "out of memory");
        } else {
            explain_error(s, err, errlen);
        }
        return -1;
    }
    return setup(s, err, errlen);
}

struct store *store_open(const char *path, char *err, size_t errlen) {
    char why[200];
    struct store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (open_db(s, path, why, sizeof why) == -1) {
        snprintf(err, errlen, "%s: %s", path, why);
        store_close(s);
        return NULL;
    }
    return s;
}

void store_close(struct store *s) {
    if (s == NULL) {
        return;
    }
    sqlite3_finalize(s->insert);
    sqlite3_finalize(s->replay);
    sqlite3_finalize(s->last_id);
    sqlite3_finalize(s->begin);
    sqlite3_finalize(s->commit);
    sqlite3_finalize(s->rollback);
    sqlite3_close(s->db);
    free(s);
}

/* One prepared statement without rows: SQLITE_OK or its error. */
static int run(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

void store_group(struct store *s) {
    s->grouping = 1;
}

/* In a group, the first insert opens the transaction. After an error that
 * rolled it back on its own (a full disk, say), no insert is taken until
 * the commit: a new transaction would hand out the lost rows' ids again. */
static int group_join(struct store *s) {
    if (s->lost != SQLITE_OK) {
        return s->lost;
    }
    if (!s->grouping || !sqlite3_get_autocommit(s->db)) {
        return SQLITE_OK; /* a transaction of its own, or the open one */
    }
    s->rows = 0;
    return run(s->begin);
}

int store_commit(struct store *s) {
    int rc = s->lost;
    if (!sqlite3_get_autocommit(s->db)) {
        rc = run(s->commit);
        /* A failed COMMIT (a full disk) may have rolled back on its own;
         * if not, we do. */
        if (rc != SQLITE_OK && !sqlite3_get_autocommit(s->db)) {
            run(s->rollback);
        }
    }
    if (rc != SQLITE_OK && s->rows == 0) {
        rc = SQLITE_OK; /* nothing was inserted: nothing is lost */
    }
    s->rows = 0;
    s->lost = SQLITE_OK;
    s->commit_rc = rc;
    return rc;
}

int store_insert(struct store *s, const char *client_offset, const char *text, int64_t *id) {
    sqlite3_stmt *st = s->insert;
    s->commit_rc = SQLITE_OK;
    int rc = group_join(s);
    if (rc != SQLITE_OK) {
        return rc;
    }
    if (client_offset != NULL) {
        sqlite3_bind_text(st, 1, client_offset, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(st, 1);
    }
    sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    /* One statement outside a transaction is its own transaction: when
     * step() returns SQLITE_DONE the row is committed. In a group, it is
     * committed by store_commit(). */
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        /* A UNIQUE conflict undoes its statement only; a few errors
         * (SQLITE_FULL, SQLITE_IOERR, ...) undo the whole transaction. */
        if (s->grouping && s->rows > 0 && sqlite3_get_autocommit(s->db)) {
            s->lost = rc;
        }
        return rc;
    }
    if (s->grouping) {
        s->rows++;
    }
    *id = sqlite3_last_insert_rowid(s->db);
    return SQLITE_OK;
}

const char *store_errmsg(struct store *s) {
    /* after a failed commit, the ROLLBACK's "not an error" would mislead */
    return s->commit_rc != SQLITE_OK ? sqlite3_errstr(s->commit_rc) : sqlite3_errmsg(s->db);
}

int store_replay(struct store *s, int64_t after, int limit, store_row_fn fn, void *ctx) {
    sqlite3_stmt *st = s->replay;
    int rows = 0, rc;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int(st, 2, limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 1);
        rows++;
        if (fn(ctx, sqlite3_column_int64(st, 0), text ? text : "") != 0) {
            break;
        }
    }
    sqlite3_reset(st);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? rows : -1;
}

int64_t store_last_id(struct store *s) {
    sqlite3_stmt *st = s->last_id;
    int64_t last = -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        last = sqlite3_column_int64(st, 0);
    } else if (rc == SQLITE_DONE) {
        last = 0; /* no row yet: the first id will be 1 */
    }
    /* reset at once: a statement left open would hold a read transaction,
     * and WAL could never checkpoint past it */
    sqlite3_reset(st);
    return last;
}
