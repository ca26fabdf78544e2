/* Non-blocking client sockets (see rl_sock.h). */
#include "rl_sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void tcp_options(int fd)
{
    /* Best effort: a socket without them still works. */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#ifdef TCP_KEEPIDLE
    int idle = 15, intvl = 5, cnt = 3;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
#endif
}

int rl_sock_connect(int family, int socktype, int protocol, const struct sockaddr *sa,
                    socklen_t salen, int *fd, char *err, size_t errlen)
{
    *fd = socket(family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (*fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (family == AF_INET || family == AF_INET6)
        tcp_options(*fd);
    int rc;
    do
        rc = connect(*fd, sa, salen);
    while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return 1;
    if (errno == EINPROGRESS || errno == EAGAIN)
        return 0;
    snprintf(err, errlen, "%s", strerror(errno));
    close(*fd);
    *fd = -1;
    return -1;
}

int rl_sock_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}
