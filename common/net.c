/* net.c -- TCP sockets for a select() loop. See net.h. */
#include "net.h"

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

/* Bind and listen on one address; -1 with err set on failure. */
static int listen_on(const struct addrinfo *ai, char *err) {
    int yes = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd == -1) {
        snprintf(err, NET_ERR_LEN, "socket: %s", strerror(errno));
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes) == -1 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 || listen(fd, 511) == -1) {
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

int net_listen(const char *host, int port, char *err) {
    struct addrinfo *res;
    if (resolve(host, port, 1, &res, err) == -1) {
        return -1;
    }
    /* The first address that works wins: a chat server needs one. */
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL && fd == -1; ai = ai->ai_next) {
        fd = listen_on(ai, err);
    }
    freeaddrinfo(res);
    return fd;
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

int net_connect_start(const char *host, int port, int *done, char *err) {
    struct addrinfo *res;
    if (resolve(host, port, 0, &res, err) == -1) {
        return -1;
    }
    /* We try only the first address: trying each in turn would need a
     * state machine of its own, and the default host is numeric anyway. */
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd == -1 || net_set_nonblock(fd, err) == -1) {
        if (fd == -1) {
            snprintf(err, NET_ERR_LEN, "socket: %s", strerror(errno));
        } else {
            close(fd);
        }
        freeaddrinfo(res);
        return -1;
    }
    set_nodelay(fd);
    int rc = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    *done = (rc == 0);
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
