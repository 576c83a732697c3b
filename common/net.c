/* net.c -- TCP sockets for a select() loop. See net.h. */
#include "net.h"

#include "limits.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* We write whole protocol lines and want each to leave at once. Nagle's
 * algorithm would hold a small line back until the previous one is
 * acknowledged, and with the peer's delayed ACK that costs up to 40 ms:
 * an ack line that waits 40 ms caps a client at 25 messages a second. */
static void set_nodelay(int fd) {
    int yes = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
}

int net_set_nonblock(int fd, char *err) {
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        snprintf(err, NET_ERR_LEN, "fcntl(O_NONBLOCK): %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* getaddrinfo() for a numeric or named host; the caller frees *res. */
static int resolve(const char *host, int port, int passive, struct addrinfo **res, char *err) {
    struct addrinfo hints;
    char portstr[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, res);
    if (rc != 0) {
        snprintf(err, NET_ERR_LEN, "getaddrinfo(%s): %s", host, gai_strerror(rc));
        return -1;
    }
    return 0;
}

/* Bind and listen on one address; -1 with err set on failure. SO_REUSEADDR
 * lets a restarted server bind at once. An IPv6 socket takes IPv6
 * connections only (IPV6_V6ONLY): by default Linux lets [::] take IPv4
 * ones too, and then the 0.0.0.0 socket of the same name and port would
 * fail with "address in use". */
static int listen_on(const struct addrinfo *ai, char *err) {
    int yes = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd == -1) {
        snprintf(err, NET_ERR_LEN, "socket: %s", strerror(errno));
        return -1;
    }
    if (ai->ai_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &yes, sizeof yes) == -1) {
        snprintf(err, NET_ERR_LEN, "setsockopt(IPV6_V6ONLY): %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes) == -1 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 || listen(fd, LISTEN_BACKLOG) == -1) {
        snprintf(err, NET_ERR_LEN, "bind/listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (net_set_nonblock(fd, err) == -1) {
        close(fd);
        return -1;
    }
    return fd;
}

/* listen_on() for ai, but on port: every socket of a listener must have
 * the same port, whatever port the list holds. */
static int listen_on_port(const struct addrinfo *ai, int port, char *err) {
    struct sockaddr_storage ss;
    struct addrinfo one = *ai;
    if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof ss) {
        snprintf(err, NET_ERR_LEN, "bind/listen: not an IPv4 or IPv6 address");
        return -1;
    }
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    if (ai->ai_family == AF_INET6) {
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((unsigned short)port);
    } else {
        ((struct sockaddr_in *)&ss)->sin_port = htons((unsigned short)port);
    }
    one.ai_addr = (struct sockaddr *)&ss;
    one.ai_next = NULL;
    return listen_on(&one, err);
}

int net_listen_addrs(struct net_listener *l, const struct addrinfo *list, int port, char *err) {
    l->n = 0;
    snprintf(err, NET_ERR_LEN, "no address to listen on");
    for (const struct addrinfo *ai = list; ai != NULL && l->n < NET_MAX_LISTEN; ai = ai->ai_next) {
        /* An address that fails is skipped: the others may work. */
        int fd = listen_on_port(ai, port, err);
        if (fd == -1) {
            continue;
        }
        if (l->n == 0 && port == 0) {
            port = net_local_port(fd); /* the others take the port the first got */
        }
        l->fds[l->n++] = fd;
    }
    return l->n > 0 ? 0 : -1;
}

int net_listen_all(struct net_listener *l, const char *host, int port, char *err) {
    struct addrinfo *res;
    l->n = 0;
    if (resolve(host, port, 1, &res, err) == -1) {
        return -1;
    }
    int rc = net_listen_addrs(l, res, port, err);
    freeaddrinfo(res);
    return rc;
}

void net_listener_close(struct net_listener *l) {
    for (int i = 0; i < l->n; i++) {
        close(l->fds[i]);
    }
    l->n = 0;
}

int net_local_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1) {
        return -1;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int net_accept(int listen_fd) {
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd != -1 || errno != EINTR) {
            if (fd != -1) {
                char err[NET_ERR_LEN];
                if (net_set_nonblock(fd, err) == -1) {
                    close(fd);
                    return -1;
                }
                set_nodelay(fd);
            }
            return fd;
        }
    }
}

void net_refuse(int fd, const char *line) {
    char sink[4096];
    ssize_t n = write(fd, line, strlen(line)); /* the socket is new: its buffer is empty */
    (void)n;
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 16 && read(fd, sink, sizeof sink) > 0; i++) {
        /* a HELLO, most likely, and nothing more: a bounded drain */
    }
    close(fd);
}

/* Start a non-blocking connect to one address: the fd, or -1 (err set)
 * if socket() or connect() failed at once. */
static int connect_start_on(const struct addrinfo *ai, int *done, char *err) {
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd == -1) {
        snprintf(err, NET_ERR_LEN, "socket: %s", strerror(errno));
        return -1;
    }
    if (net_set_nonblock(fd, err) == -1) {
        close(fd);
        return -1;
    }
    set_nodelay(fd);
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    *done = (rc == 0);
    /* EINTR: the connect goes on in the background, as with EINPROGRESS. */
    if (rc == -1 && errno != EINPROGRESS && errno != EINTR) {
        snprintf(err, NET_ERR_LEN, "connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int net_connect_result(int fd, char *err) {
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1) {
        soerr = errno;
    }
    if (soerr != 0) {
        snprintf(err, NET_ERR_LEN, "connect: %s", strerror(soerr));
        return -1;
    }
    return 0;
}

int net_dial(struct net_dialer *d, const char *host, int port, int *done, char *err) {
    d->list = d->next = NULL;
    if (resolve(host, port, 0, &d->list, err) == -1) {
        d->list = NULL; /* getaddrinfo() leaves it undefined on failure */
        return -1;
    }
    d->next = d->list;
    int fd = net_dial_next(d, done, err);
    if (fd == -1) {
        net_dial_end(d);
    }
    return fd;
}

int net_dial_next(struct net_dialer *d, int *done, char *err) {
    if (d->next == NULL) {
        snprintf(err, NET_ERR_LEN, "connect: no other address to try");
        return -1;
    }
    /* An address that fails at once (say, IPv6 on a machine without it)
     * is skipped: the next one may work. */
    while (d->next != NULL) {
        const struct addrinfo *ai = d->next;
        d->next = ai->ai_next;
        int fd = connect_start_on(ai, done, err);
        if (fd != -1) {
            return fd;
        }
    }
    return -1; /* err says why the last one failed */
}

void net_dial_end(struct net_dialer *d) {
    if (d->list != NULL) {
        freeaddrinfo(d->list);
    }
    d->list = d->next = NULL;
}
