/* The plain (unencrypted) byte stream: read/write on the socket itself. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rl_stream.h"

static int plain_handshake(rl_stream *s, short *want, int *permanent, char *err, size_t errlen)
{
    (void)s; (void)err; (void)errlen;
    *want = 0;
    *permanent = 0;
    return 1;
}

static long plain_read(rl_stream *s, char *buf, size_t n, short *want, char *err, size_t errlen)
{
    *want = 0;
    for (;;) {
        ssize_t r = recv(s->fd, buf, n, 0);
        if (r >= 0)
            return (long)r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *want = POLLIN;
            return -1;
        }
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
}

static long plain_write(rl_stream *s, const char *buf, size_t n, short *want, char *err, size_t errlen)
{
    *want = 0;
    for (;;) {
        /* MSG_NOSIGNAL: a peer that went away is an error here, not SIGPIPE. */
        ssize_t r = send(s->fd, buf, n, MSG_NOSIGNAL);
        if (r >= 0)
            return (long)r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *want = POLLOUT;
            return -1;
        }
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
}

static int plain_pending(const rl_stream *s)
{
    (void)s;
    return 0;
}

static void plain_free(rl_stream *s)
{
    free(s);
}

static const rl_stream_ops plain_ops = {
    plain_handshake, plain_read, plain_write, plain_pending, plain_free,
};

rl_stream *rl_stream_plain(int fd)
{
    rl_stream *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    s->ops = &plain_ops;
    s->fd = fd;
    return s;
}
