/* limits.h -- every bound of the chat, in one place.
 *
 * Each limit says what happens when it is hit. Nothing here grows without
 * bound: a slow or hostile peer runs into one of these and pays for it
 * alone, never the other clients. */
#ifndef CHAT_LIMITS_H
#define CHAT_LIMITS_H

#include <sys/select.h> /* FD_SETSIZE */

/* One protocol line, newline included. A longer line from a peer is a
 * framing error: the server answers "ERR line too long" and closes. */
#define MAX_LINE 4096

/* One chat message. Leaves room on a line for the verb, ids and offsets.
 * The server answers a longer one with "ERR message too long" (stored, it
 * would not fit on a CHAT line); the client refuses a longer typed line
 * before sending it, and says so on stderr. */
#define MAX_TEXT (MAX_LINE - 96)

/* Connected clients. select() cannot watch an fd >= FD_SETSIZE at all,
 * and the server needs a few fds of its own (stdio, listener, SQLite's
 * database, WAL and shm files, the spare fd for EMFILE). One more client
 * gets "ERR server full" and is closed. */
#define MAX_CLIENTS (FD_SETSIZE - 16)

/* Bytes queued for one client that is not reading. Past this the client is
 * disconnected; nothing is lost, it catches up from the database when it
 * reconnects (the replay). */
#define MAX_OUTPUT (256 * 1024)

/* Messages a client holds that the server has not taken yet: typed while
 * disconnected (step 2), or sent and not yet acked (steps 3 and 4). When
 * the queue is full the client stops reading stdin until there is room:
 * backpressure, never a drop. */
#define SEND_BUFFER_MAX 1000

/* Replay of history: read at most this many rows per query, and only
 * while the client's output holds less than REPLAY_FILL bytes; a page
 * stops early as soon as REPLAY_FILL bytes wait. A client a million rows
 * behind therefore costs the server REPLAY_FILL + one row, not the whole
 * history, however long the rows are. */
#define REPLAY_PAGE 64
#define REPLAY_FILL (16 * 1024)

/* After an error line the server stops reading requests, flushes the
 * error, half-closes, and waits this long for the peer to close before
 * closing itself (closing with unread input sends a reset, which can
 * destroy the error line before the peer reads it). */
#define CLOSE_LINGER_MS 1000

/* The server side's other bounds. */

/* Connections the kernel holds for the server before accept() takes them
 * (listen()'s backlog). A connection past it waits or is refused by the
 * kernel, and the client retries with backoff. */
#define LISTEN_BACKLOG 511

/* While a replay cannot read the database (it is locked), the server
 * tries again this often; live messages wait for that client meanwhile. */
#define REPLAY_RETRY_MS 100

/* At start-up only, store_open() waits this long for another process's
 * lock on the database; then the server says why and exits. In the loop
 * nothing waits: a locked database fails at once. */
#define STORE_OPEN_BUSY_MS 2000

/* An idle output buffer that grew past this is given back to the
 * allocator once it is empty, so a thousand quiet clients cost little. */
#define BUF_KEEP (16 * 1024)

/* The largest value of an option in milliseconds (an hour), and of the
 * heartbeat times a client takes from WELCOME: a bad value is refused at
 * once, and now_ms() plus a few of them cannot overflow a deadline. */
#define MAX_OPTION_MS 3600000

/* The arithmetic of the limits, checked by the compiler. */
/* The longest line we send: "MSG <ack-id> <client-offset> <text>\n", an
 * ack id of up to 19 digits, an offset of 16 hex, "-" and 19 digits. */
_Static_assert(4 + 19 + 1 + 36 + 1 + MAX_TEXT + 1 <= MAX_LINE, "a MSG line of MAX_TEXT must fit in MAX_LINE");
_Static_assert(5 + 19 + 1 + MAX_TEXT + 1 <= MAX_LINE, "a CHAT line of MAX_TEXT must fit in MAX_LINE");
/* A replay queues at most REPLAY_FILL bytes and one row; with room for a
 * few short lines besides (PING, ACK), it must never reach MAX_OUTPUT, or
 * a reader on a slow link would be cut off while it catches up. */
_Static_assert(REPLAY_FILL + 2 * MAX_LINE <= MAX_OUTPUT, "a replay must fit in MAX_OUTPUT");
_Static_assert(MAX_CLIENTS > 0 && MAX_CLIENTS < FD_SETSIZE, "select() must see every client");

#endif
