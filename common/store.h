/* store.h -- the chat history in SQLite.
 *
 * One table, the Socket.IO tutorial's, the same in every step:
 *   messages(id INTEGER PRIMARY KEY AUTOINCREMENT,
 *            client_offset TEXT UNIQUE, content TEXT)
 * AUTOINCREMENT means an id is never reused, even after the newest row is
 * deleted, so "every row with id > my offset" is always the right catch-up.
 *
 * Durability: WAL journal with synchronous=NORMAL. A committed row survives
 * the server being killed (SIGKILL, a crash); after a power loss or an OS
 * crash the last few commits may roll back (the file stays consistent).
 * synchronous=FULL would survive power loss too, at one fsync per message.
 * A new database gets 1 KB pages, not SQLite's 4 KB: a commit writes each
 * page it changed whole, and a chat commit changes a few rows' worth of
 * several pages (store.c, use_small_pages()).
 *
 * Locks: the event loop must never wait. After start-up the busy timeout is
 * 0, so an insert into a database locked by another process fails at once
 * with SQLITE_BUSY, and the server decides what that means. At start-up,
 * store_open() waits up to 2 s for the lock its write test needs. */
#ifndef CHAT_STORE_H
#define CHAT_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* Open (and create) the database. NULL on failure, with a reason in err.
 * It fails, rather than leaving every insert to fail later, when the server
 * could not write there: a read-only file, a read-only folder, -wal or -shm
 * files it may not write (another user's), or a database that cannot use
 * WAL, such as ":memory:". */
struct store *store_open(const char *path, char *err, size_t errlen);
void store_close(struct store *s);

/* Insert one message; client_offset may be NULL (steps 1 to 3).
 * Returns SQLITE_OK and the new row's id in *id, or SQLite's extended
 * error code: SQLITE_BUSY when another process holds the lock,
 * SQLITE_CONSTRAINT_UNIQUE when client_offset is already stored, ... */
int store_insert(struct store *s, const char *client_offset, const char *text, int64_t *id);

/* Group commit, for the server's loop (TUTORIAL, "The price of each
 * guarantee"). Without store_group(), each insert is its own transaction,
 * committed when it returns. After it, the first insert opens a
 * transaction (BEGIN IMMEDIATE: on a lock it fails at once, SQLITE_BUSY),
 * later ones join it, and store_commit() commits them all with one
 * commit: SQLITE_OK, or an error when the transaction rolled back and
 * none of its rows is stored. Until then, nothing that announces such a
 * row may leave the server. */
void store_group(struct store *s);
int store_commit(struct store *s);

/* What went wrong with the last call, in SQLite's words. */
const char *store_errmsg(struct store *s);

/* Call fn for the rows with id > after, in id order, at most limit rows.
 * Returns the number of rows, or -1 on error. fn returns 0 to go on. */
typedef int (*store_row_fn)(void *ctx, int64_t id, const char *text);
int store_replay(struct store *s, int64_t after, int limit, store_row_fn fn, void *ctx);

/* The highest id this database has ever issued: 0 before the first row,
 * -1 on error. It is AUTOINCREMENT's counter (sqlite_sequence), not
 * MAX(id): deleting the newest row does not lower it. A client whose last
 * seen id is above it must have seen another database's rows (chat.db was
 * replaced); one that saw the deleted row is not mistaken for such a client. */
int64_t store_last_id(struct store *s);

#endif
