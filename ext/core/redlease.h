/* redlease core: the interface the CPython binding (or a C test) uses.
 * Pure C: no Python here.  Thread-safe unless noted. */
#ifndef REDLEASE_H
#define REDLEASE_H

#include <stddef.h>
#include <stdint.h>

#include "rl_error.h"

typedef struct rl_lease rl_lease;

typedef struct rl_lease_opts {
    const char *url;      size_t url_len;
    const char *key;      size_t keylen;
    const char *node_id;  size_t idlen;     /* NULL: "<host>:<pid>:<16 hex>" */
    double ttl;                             /* seconds */
    double renew_interval;                  /* <= 0: ttl/3 */
    double retry_interval;                  /* <= 0: ttl/3 */
    double connect_timeout, command_timeout;
    int mode;                               /* RL_MODE_NODE or RL_MODE_LOCK */
    int auto_renew;
    int min_replicas;                       /* 0..RL_MAX_MIN_REPLICAS: WAIT after acquire/renew */
} rl_lease_opts;

#define RL_MAX_MIN_REPLICAS 100

#define RL_MAX_KEY_BYTES 65536
#define RL_MAX_ID_BYTES 1024

/* May block on DNS: call without holding locks that others need. */
rl_lease *rl_lease_new(const rl_lease_opts *o, rl_error *err);
void rl_lease_incref(rl_lease *l);
void rl_lease_decref(rl_lease *l);

int rl_lease_start(rl_lease *l, rl_error *err);   /* asynchronous */
/* Lock mode: campaign until acquired, or (once) make a single attempt.
 * quiet: the caller waits right after (rl_lease_wait drives the engine). */
int rl_lease_start_lock(rl_lease *l, int once, int quiet, rl_error *err);
int rl_lease_stop(rl_lease *l);                   /* asynchronous, idempotent */
int rl_lease_stop_quiet(rl_lease *l);             /* same, for a caller that waits next */
int rl_lease_resign(rl_lease *l);                 /* asynchronous; wait RL_WAIT_RELEASED */

enum { RL_WAIT_LEADER = 1, RL_WAIT_STOPPED, RL_WAIT_LOCK, RL_WAIT_RELEASED };
/* Waits at most max_us: 1 done, 0 not yet, -1 error in *err (a permanent
 * failure of the latest attempt).  RL_WAIT_LOCK also returns 2 when a
 * single attempt ended without the lock. */
int rl_lease_wait(rl_lease *l, int what, int64_t max_us, rl_error *err);

/* Status of the key in Redis, read by the engine with one round trip.
 * rl_lease_query_post returns a ticket for rl_lease_query_wait, which
 * returns 1 with *out filled, 0 if not yet, -1 on error. */
typedef struct rl_query {
    char *holder; size_t holderlen;   /* malloc'd, NULL if the key is free */
    long long pttl;                   /* ms; -2 missing, -1 no expiry */
    long long token;                  /* last token issued, -1 if none */
} rl_query;
int rl_lease_query_post(rl_lease *l, uint64_t *ticket, rl_error *err);
int rl_lease_query_wait(rl_lease *l, uint64_t ticket, int64_t max_us, rl_query *out, rl_error *err);

/* Lock-free reads. */
int rl_lease_is_leader(const rl_lease *l);
int rl_lease_token(const rl_lease *l, int64_t *token);     /* 1 while leading */
double rl_lease_remaining(const rl_lease *l);              /* seconds, 0.0 if not leading */
int rl_lease_stale(const rl_lease *l);                     /* created before a fork */
uint64_t rl_lease_id(const rl_lease *l);
const char *rl_lease_key(const rl_lease *l, size_t *len);
const char *rl_lease_node_id(const rl_lease *l, size_t *len);
double rl_lease_ttl(const rl_lease *l);
double rl_lease_renew_interval(const rl_lease *l);
double rl_lease_retry_interval(const rl_lease *l);
/* Effective timeouts in seconds: the URL's socket_connect_timeout / socket_timeout, else the options'. */
double rl_lease_connect_timeout(const rl_lease *l);
double rl_lease_command_timeout(const rl_lease *l);
int rl_lease_min_replicas(const rl_lease *l);
double rl_lease_wait_timeout(const rl_lease *l);          /* WAIT's timeout, seconds (0.0: no WAIT) */
int rl_lease_url_safe(const rl_lease *l, char *buf, size_t n);

typedef struct rl_lease_info {
    int phase;                 /* RL_P_* */
    char *leader; size_t leaderlen;   /* malloc'd or NULL */
    char *last_error;          /* malloc'd or NULL */
    uint64_t acquired, renewals, renew_failures, losses;
    uint64_t unconfirmed;      /* acquires/renews that WAIT did not confirm (min_replicas) */
    int64_t last_rtt_us, rtt_p50_us, rtt_p99_us;   /* renew round trips */
} rl_lease_info;
/* with_rtt: also the renew round-trip percentiles (a sort; for stats). */
void rl_lease_get_info(rl_lease *l, rl_lease_info *out, int with_rtt);
int rl_lease_phase(rl_lease *l);                           /* RL_P_* */
void rl_lease_info_clear(rl_lease_info *info);

typedef struct rl_engine_info {
    int running;
    uint64_t commands, reconnects, connections, open_connections, leases, endpoints, dropped_events;
} rl_engine_info;
void rl_engine_get_info(rl_engine_info *out);

const char *rl_hiredis_version_string(void);
void rl_hiredis_version(int *major, int *minor, int *patch);
int rl_has_tls(void);
size_t rl_lease_struct_size(void);     /* bytes of one lease's state (without its strings) */

/* asyncio: an fd (eventfd or pipe) that gets 8 bytes whenever a lease's
 * published state changes, so an event loop can re-check its waiters. */
int rl_waker_add(int fd, rl_error *err);
void rl_waker_remove(int fd);

#endif
