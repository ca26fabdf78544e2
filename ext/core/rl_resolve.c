/* Host name resolution on a thread per lookup (see rl_resolve.h). */
#include "rl_resolve.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

struct rl_resolve {
    atomic_int refs;          /* owner + thread */
    atomic_int done;          /* the thread stored the result */
    int fd;                   /* eventfd, written once when done */
    char port[8];
    struct addrinfo *res;     /* written by the thread before done */
    int gai;
    char host[];
};

static void unref(rl_resolve *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    if (r->res)
        freeaddrinfo(r->res);
    close(r->fd);
    free(r);
}

static void hints_for(struct addrinfo *h, int flags)
{
    memset(h, 0, sizeof *h);
    h->ai_family = AF_UNSPEC;
    h->ai_socktype = SOCK_STREAM;
    h->ai_protocol = IPPROTO_TCP;
    h->ai_flags = flags | AI_NUMERICSERV;
}

static void *resolve_main(void *arg)
{
    rl_resolve *r = arg;
    struct addrinfo hints, *res = NULL;
    hints_for(&hints, AI_ADDRCONFIG);
    int rc = getaddrinfo(r->host, r->port, &hints, &res);
    if (rc == EAI_NONAME || rc == EAI_ADDRFAMILY) {
        /* AI_ADDRCONFIG hides loopback-only families (a namespace with only
         * lo up): look once more without it. */
        hints_for(&hints, 0);
        int rc2 = getaddrinfo(r->host, r->port, &hints, &res);
        if (rc2 == 0)
            rc = 0;
    }
    r->gai = rc;
    r->res = rc == 0 ? res : NULL;
    atomic_store(&r->done, 1);
    uint64_t one = 1;
    ssize_t n = write(r->fd, &one, sizeof one);
    (void)n;          /* cannot fail: written once, from zero */
    unref(r);
    return NULL;
}

rl_resolve *rl_resolve_start(const char *host, int port, char *err, size_t errlen)
{
    size_t hl = strlen(host);
    rl_resolve *r = calloc(1, sizeof *r + hl + 1);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(r->host, host, hl + 1);
    snprintf(r->port, sizeof r->port, "%d", port);
    r->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->fd < 0) {
        snprintf(err, errlen, "cannot create an eventfd for the resolver: %s", strerror(errno));
        free(r);
        return NULL;
    }
    atomic_init(&r->refs, 2);
    atomic_init(&r->done, 0);
    pthread_attr_t attr;
    pthread_t t;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* Signals belong to the Python main thread. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        rc = pthread_create(&t, &attr, resolve_main, r);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot start a resolver thread: %s", strerror(rc));
        close(r->fd);
        free(r);
        return NULL;
    }
    return r;
}

int rl_resolve_fd(const rl_resolve *r)
{
    return r->fd;
}

int rl_resolve_take(rl_resolve *r, struct addrinfo **res, int *gai)
{
    if (!atomic_load(&r->done))
        return 0;
    *res = r->res;
    *gai = r->gai;
    r->res = NULL;
    return 1;
}

void rl_resolve_release(rl_resolve *r)
{
    if (r)
        unref(r);
}

int rl_resolve_numeric(const char *host, int port, struct addrinfo **res)
{
    char p[8];
    struct addrinfo hints;
    snprintf(p, sizeof p, "%d", port);
    hints_for(&hints, AI_NUMERICHOST);
    *res = NULL;
    return getaddrinfo(host, p, &hints, res);
}
