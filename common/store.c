/* store.c -- the chat history in SQLite. See store.h for the choices. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>

struct store {
    sqlite3 *db;
    sqlite3_stmt *insert; /* prepared once: no SQL is parsed per message */
    sqlite3_stmt *replay;
};

/* At start-up only, we may wait a little for another process's lock. */
#define STORE_OPEN_BUSY_MS 2000

static const char *SCHEMA = "CREATE TABLE IF NOT EXISTS messages ("
                            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                            " client_offset TEXT UNIQUE,"
                            " content TEXT)";

static int setup(struct store *s) {
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_OPEN_BUSY_MS);
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) {
        return -1;
    }
    if (sqlite3_prepare_v2(s->db, "INSERT INTO messages (client_offset, content) VALUES (?, ?)", -1,
                           &s->insert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "SELECT id, content FROM messages WHERE id > ? ORDER BY id LIMIT ?", -1,
                           &s->replay, NULL) != SQLITE_OK) {
        return -1;
    }
    /* From here on the event loop runs: never wait for a lock. */
    sqlite3_busy_timeout(s->db, 0);
    return 0;
}

struct store *store_open(const char *path, char *err, size_t errlen) {
    struct store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc = sqlite3_open(path, &s->db);
    if (rc != SQLITE_OK || setup(s) == -1) {
        snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
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
    sqlite3_close(s->db);
    free(s);
}

int store_insert(struct store *s, const char *client_offset, const char *text, int64_t *id) {
    sqlite3_stmt *st = s->insert;
    if (client_offset != NULL) {
        sqlite3_bind_text(st, 1, client_offset, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(st, 1);
    }
    sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    /* One statement outside a transaction is its own transaction: when
     * step() returns SQLITE_DONE the row is committed. */
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        return rc;
    }
    *id = sqlite3_last_insert_rowid(s->db);
    return SQLITE_OK;
}

const char *store_errmsg(struct store *s) {
    return sqlite3_errmsg(s->db);
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
