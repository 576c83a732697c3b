/* net.h -- TCP sockets for a select() loop: listen, accept, connect.
 *
 * Every helper reports failure in the caller's err buffer, naming the
 * system call that failed, and never exits: only main() decides to die. */
#ifndef CHAT_NET_H
#define CHAT_NET_H

#include <stddef.h>

#define NET_ERR_LEN 256

/* Make fd non-blocking. 0 on success, -1 on error. */
int net_set_nonblock(int fd, char *err);

/* A non-blocking listening socket on host:port (port 0: any free port),
 * with SO_REUSEADDR so that a restarted server binds at once.
 * Returns the fd, or -1. */
int net_listen(const char *host, int port, char *err);

/* The port a socket is bound to (useful after listening on port 0). */
int net_local_port(int fd);

/* Accept one connection, retrying EINTR: non-blocking, with TCP_NODELAY
 * (see net.c). Returns the new fd, -1 with errno EAGAIN when there is
 * none waiting, -1 with another errno on a real error (EMFILE: out of
 * descriptors). */
int net_accept(int listen_fd);

/* Start a non-blocking connect to host:port (TCP_NODELAY). Returns the fd,
 * or -1.
 * *done is 1 when the connection completed at once, 0 when it is in
 * progress: wait for writability, then call net_connect_result(). */
int net_connect_start(const char *host, int port, int *done, char *err);

/* After a connecting socket turned writable: 0 if connected, -1 (err set)
 * if the connection failed. */
int net_connect_result(int fd, char *err);

#endif
