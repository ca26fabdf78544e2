/* Error kinds the core reports to its caller; the binding maps each kind to
 * one Python exception type. */
#ifndef RL_ERROR_H
#define RL_ERROR_H

#include <stdarg.h>
#include <stdio.h>

enum rl_errkind {
    RL_OK = 0,
    RL_EVALUE,   /* bad argument: ValueError */
    RL_ECONN,    /* cannot reach the server: ConnectionError */
    RL_EAUTH,    /* wrong password / unknown user: AuthenticationError */
    RL_EREDIS,   /* an error reply that retrying will not fix: RedisError */
    RL_ESTATE,   /* call not valid in this state: RedleaseError */
    RL_ENOMEM,   /* MemoryError */
    RL_ESYS,     /* OS resource failure (thread, eventfd): OSError */
    RL_EPERM,    /* NOPERM, an ACL denial: PermissionError (a RedisError) */
    RL_ETLS      /* TLS handshake refused (certificate, host name, protocol): TLSError (a ConnectionError) */
};

typedef struct rl_error {
    int kind;
    char msg[640];
} rl_error;

static inline int rl_seterr(rl_error *e, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline int rl_seterr(rl_error *e, int kind, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        e->kind = kind;
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Replace a malloc'd message (kept as it was if memory runs out). */
#include <stdlib.h>
#include <string.h>
static inline void rl_set_text(char **slot, const char *msg)
{
    char *copy = strdup(msg);
    if (copy) {
        free(*slot);
        *slot = copy;
    }
}

#endif
