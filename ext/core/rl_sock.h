/* rl_sock.h - non-blocking client sockets (rl_sock.c): open one for an
 * address and start connecting; the caller polls for POLLOUT and asks
 * rl_sock_result.  Sockets are SOCK_NONBLOCK | SOCK_CLOEXEC; TCP ones get
 * TCP_NODELAY and keepalive. */
#ifndef RL_SOCK_H
#define RL_SOCK_H

#include <stddef.h>
#include <sys/socket.h>

/* 1: connected, *fd set.  0: in progress, *fd set (poll POLLOUT).
 * -1: failed, *fd = -1, err says why (strerror). */
int rl_sock_connect(int family, int socktype, int protocol, const struct sockaddr *sa,
                    socklen_t salen, int *fd, char *err, size_t errlen);
/* After POLLOUT on a connecting socket: 0 connected, else an errno. */
int rl_sock_result(int fd);

#endif
