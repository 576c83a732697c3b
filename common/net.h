/* net.h -- TCP sockets for a select() loop: listen, accept, connect.
 *
 * Every helper reports failure in the caller's err buffer, naming the
 * system call that failed, and never exits: only main() decides to die. */
#ifndef CHAT_NET_H
#define CHAT_NET_H

#include <netdb.h> /* struct addrinfo */
#include <stddef.h>

#define NET_ERR_LEN 256

/* Make fd non-blocking. 0 on success, -1 on error. */
int net_set_nonblock(int fd, char *err);

/* Every listening socket of a server: one per address of its host name.
 * "localhost" may be ::1 and 127.0.0.1; a server that listened on the
 * first only could not be reached by a client that tries the other. */
#define NET_MAX_LISTEN 4
struct net_listener {
    int fds[NET_MAX_LISTEN];
    int n;
};

/* Listen on every address host resolves to (up to NET_MAX_LISTEN), all on
 * the same port; with port 0, the port the first one got. Each socket is
 * non-blocking, with SO_REUSEADDR; an IPv6 one takes IPv6 only
 * (IPV6_V6ONLY), as the IPv4 addresses have sockets of their own.
 * 0 on success; -1 (err set, nothing left open) only if no address works:
 * an address that fails while another works is skipped. */
int net_listen_all(struct net_listener *l, const char *host, int port, char *err);

/* The same for an address list the caller resolved (what net_listen_all
 * uses; tests call it with a list of their own). Each address is bound to
 * port, whatever port the list holds. */
int net_listen_addrs(struct net_listener *l, const struct addrinfo *list, int port, char *err);

/* Close every socket of l; safe to call twice. */
void net_listener_close(struct net_listener *l);

/* The port a socket is bound to (useful after listening on port 0). */
int net_local_port(int fd);

/* Accept one connection, retrying EINTR: non-blocking, with TCP_NODELAY
 * (see net.c). Returns the new fd, -1 with errno EAGAIN when there is
 * none waiting, -1 with another errno on a real error (EMFILE: out of
 * descriptors). */
int net_accept(int listen_fd);

/* Refuse a new connection that we cannot keep even for a moment (out of
 * descriptors, say): write the line, half-close, read what the peer has
 * sent so far, and close. Closing with unread input would send a reset,
 * which can destroy the line before the peer reads it; a peer that sends
 * after this may still meet one. Where there is room, close as after any
 * error instead: half-close and wait for the peer (CLOSE_LINGER_MS). */
void net_refuse(int fd, const char *line);

/* After a connecting socket turned writable: 0 if connected, -1 (err set)
 * if the connection failed. */
int net_connect_result(int fd, char *err);

/* Connecting to every address of a name in turn, without blocking: a
 * name may have several (::1 and 127.0.0.1), and the server may listen
 * on only one of them. */
struct net_dialer {
    struct addrinfo *list; /* from getaddrinfo(), freed by net_dial_end() */
    struct addrinfo *next; /* the next address to try */
};

/* Resolve host:port and start a non-blocking connect to its first
 * address; one whose socket() or connect() fails at once is skipped for
 * the next (d need not be initialised; a list it held is not freed).
 * Returns the fd (non-blocking, TCP_NODELAY) with *done = 1 if connected
 * at once, 0 if in progress: wait for writability, then call
 * net_connect_result(). -1 with err set if no address could even be tried
 * (the list is then freed already). */
int net_dial(struct net_dialer *d, const char *host, int port, int *done, char *err);

/* The attempt on the last fd failed (the caller closed it): start one on
 * the next address, as net_dial() does. -1 (err set) when no address is
 * left; the list stays until net_dial_end(). */
int net_dial_next(struct net_dialer *d, int *done, char *err);

/* Free the list, once connected or given up; safe to call twice. */
void net_dial_end(struct net_dialer *d);

#endif
