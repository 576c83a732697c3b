/* log.h -- a server's log on stderr that never blocks its loop.
 *
 * A plain fprintf(stderr) blocks when nobody reads stderr: a pipe into a
 * pager that waits (`server 2>&1 | less`), a terminal stopped with Ctrl-S,
 * a full pipe. Every line then holds up the select() loop, and any client
 * could freeze the server by connecting and disconnecting, since each of
 * those is logged. So log lines wait here, and go to stderr as fast as it
 * takes them, never faster: the loop never waits for the terminal.
 *
 * At most LOG_MAX bytes wait; past that a line is dropped and counted, and
 * the count is logged before the next line that is kept (or by
 * log_flush() once there is room): "server: N log lines dropped (stderr
 * was not read)". The program must ignore SIGPIPE (ignore_sigpipe()), or a
 * stderr pipe whose reader is gone would kill it. */
#ifndef CHAT_LOG_H
#define CHAT_LOG_H

#define LOG_MAX (64 * 1024)

/* An event that matters: printf-style, a newline is added. Kept while
 * fewer than LOG_MAX bytes wait. */
void log_line(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* A per-connection event (connected, disconnected): dropped (and counted)
 * once half of LOG_MAX is taken, so that a storm of connections cannot
 * crowd out the lines that matter. */
void log_conn(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* 1 while bytes wait: the loop then watches stderr for writability. */
int log_pending(void);

/* Write what stderr takes now, without blocking. */
void log_flush(void);

/* Log to fd instead of stderr (the fuzzer sends the log to /dev/null). */
void log_to(int fd);

#endif
