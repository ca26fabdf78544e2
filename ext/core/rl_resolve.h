/* rl_resolve.h - host name resolution off the engine thread.
 *
 * getaddrinfo blocks (files, DNS, NSS modules) and has no timeout, so each
 * lookup runs on a short-lived detached thread of its own.  The request is
 * shared by its owner (a connection) and that thread and freed by whichever
 * lets go last: an owner that gives up (connect timeout, endpoint freed)
 * cancels and moves on at once, the thread frees the request when its
 * lookup ends.  The owner polls rl_resolve_fd() for POLLIN, which becomes
 * readable when the result is there.  In a fork child the thread does not
 * exist; the request stays allocated there (the child's engine is stale
 * anyway) and its fd is closed with the engine's other fds. */
#ifndef RL_RESOLVE_H
#define RL_RESOLVE_H

#include <netdb.h>
#include <stddef.h>

typedef struct rl_resolve rl_resolve;

/* Starts resolving host (TCP port port, any address family).  NULL on
 * failure (err says why: no memory, no thread, no eventfd). */
rl_resolve *rl_resolve_start(const char *host, int port, char *err, size_t errlen);
/* An fd that polls readable once the lookup is over. */
int rl_resolve_fd(const rl_resolve *r);
/* 1 when over: then *res is the address list (the caller owns it and frees
 * it with freeaddrinfo) or NULL with *gai the getaddrinfo error.  0 while
 * it is still running. */
int rl_resolve_take(rl_resolve *r, struct addrinfo **res, int *gai);
/* The owner lets go (done or not).  Never blocks. */
void rl_resolve_release(rl_resolve *r);

/* Resolves a numeric address (IPv4/IPv6 literal) at once, without a
 * thread: 0 and *res, or an EAI_* code (EAI_NONAME: not a literal). */
int rl_resolve_numeric(const char *host, int port, struct addrinfo **res);

#endif
