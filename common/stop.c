/* stop.c -- the self-pipe trick for SIGINT and SIGTERM. See stop.h. */
#include "stop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int stop_pipe[2] = {-1, -1};

static void on_stop_signal(int sig) {
    int saved = errno; /* the interrupted code may be about to read errno */
    char byte = (char)sig;
    /* The write end is non-blocking: a storm of signals that fills the
     * pipe loses bytes, never blocks; one byte is enough to wake us. */
    ssize_t n = write(stop_pipe[1], &byte, 1);
    (void)n;
    errno = saved;
}

static int set_nonblock_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        return -1;
    }
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* SIGHUP: the terminal went away (a student closed the window). That is
 * a stop like the others, unless the program was started to outlive its
 * terminal: nohup sets SIGHUP to "ignore", and we keep that. */
static int watch_hangup(const struct sigaction *sa) {
    struct sigaction old;
    if (sigaction(SIGHUP, NULL, &old) == -1) {
        return -1;
    }
    return old.sa_handler == SIG_IGN ? 0 : sigaction(SIGHUP, sa, NULL);
}

int stop_pipe_open(void) {
    struct sigaction sa;
    if (pipe(stop_pipe) == -1 || set_nonblock_cloexec(stop_pipe[0]) == -1 ||
        set_nonblock_cloexec(stop_pipe[1]) == -1) {
        return -1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) == -1 || sigaction(SIGTERM, &sa, NULL) == -1 ||
        watch_hangup(&sa) == -1) {
        return -1;
    }
    return stop_pipe[0];
}
