/* log.c -- a log on stderr that never blocks. See log.h. */
#include "log.h"

#include "buf.h"
#include "limits.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

static struct buf waiting; /* the lines stderr has not taken yet */
static int waiting_ready; /* buf_init() is done on the first line */
static unsigned long dropped; /* lines lost since the count was last logged */
static int log_fd = STDERR_FILENO;

static struct buf *log_buf(void) {
    if (!waiting_ready) {
        buf_init(&waiting, LOG_MAX);
        waiting_ready = 1;
    }
    return &waiting;
}

/* Write what stderr takes now. It is a blocking descriptor, so we make it
 * non-blocking for the length of this write only, never for good: the
 * flag belongs to the open file description, not to our descriptor, and
 * the shell and every program it starts on this terminal share that one
 * description (often as their stdin too). Left set, their reads and
 * writes would fail with EAGAIN ("Resource temporarily unavailable"),
 * which most programs take for an error, even after we exit. POSIX has no
 * way to make a single write() non-blocking, so this is the best we can
 * do: only a program that uses the terminal during this one write could
 * still see EAGAIN. */
static void write_out(void) {
    if (buf_pending(&waiting) == 0) {
        return;
    }
    int flags = fcntl(log_fd, F_GETFL);
    int was_blocking = flags != -1 && !(flags & O_NONBLOCK);
    if (flags == -1 || (was_blocking && fcntl(log_fd, F_SETFL, flags | O_NONBLOCK) == -1)) {
        buf_free(&waiting); /* stderr is closed: there is nowhere to log */
        return;
    }
    int rc = buf_flush(&waiting, log_fd);
    if (was_blocking) {
        fcntl(log_fd, F_SETFL, flags);
    }
    if (rc == -1) {
        /* EPIPE (the reader is gone), EIO...: nothing can be reported,
         * since the log is where we would report it. */
        buf_free(&waiting);
    }
}

/* Say how many lines were dropped, before the next line that is kept: the
 * reader then sees where lines are missing. 0 when said (or nothing to
 * say), -1 when even that does not fit. */
static int log_dropped_count(struct buf *b) {
    if (dropped == 0) {
        return 0;
    }
    if (buf_printf_line(b, "server: %lu log lines dropped (stderr was not read)", dropped) != 0) {
        return -1;
    }
    dropped = 0;
    return 0;
}

/* One line; one longer than MAX_LINE is replaced by a note saying so. */
static int append_line(struct buf *b, const char *fmt, va_list ap) {
    int rc = buf_vprintf_line(b, fmt, ap);
    if (rc == -2) {
        rc = buf_printf_line(b, "server: a log line longer than %d bytes was left out", MAX_LINE);
    }
    return rc;
}

/* Keep the line if fewer than limit bytes wait, else count it as dropped;
 * then write at once what stderr takes, so that a healthy terminal shows
 * each line as it happens. A line that waits for the count of the dropped
 * ones to fit is dropped too: lines never come out of order. */
static void log_append(size_t limit, const char *fmt, va_list ap) {
    struct buf *b = log_buf();
    write_out(); /* stderr may have taken some since the last line */
    if (buf_pending(b) >= limit || log_dropped_count(b) == -1 || append_line(b, fmt, ap) != 0) {
        dropped++;
        return;
    }
    write_out();
}

void log_line(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_append(LOG_MAX, fmt, ap);
    va_end(ap);
}

void log_conn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_append(LOG_MAX / 2, fmt, ap);
    va_end(ap);
}

int log_pending(void) {
    return waiting_ready && buf_pending(&waiting) > 0;
}

void log_flush(void) {
    if (!waiting_ready) {
        return;
    }
    write_out();
    if (dropped > 0 && log_dropped_count(&waiting) == 0) {
        write_out();
    }
}

void log_to(int fd) {
    log_fd = fd;
}
