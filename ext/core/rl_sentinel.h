/* rl_sentinel.h - the Sentinel topology of one endpoint (rl_sentinel.c).
 *
 * Between the endpoint and its connections: keeps a command and a
 * subscriber connection to every sentinel of a redis+sentinel:// URL (the
 * sentinel profile: AUTH with sentinel_username/sentinel_password, no
 * SELECT, no SCRIPT LOAD), asks `SENTINEL get-master-addr-by-name <service>`
 * one sentinel after the other until one answers (a sentinel that is down,
 * errs or does not know the service is skipped), listens for
 * `+switch-master` on every reachable sentinel, and tells its owner the
 * master's address through an rl_topo_cbs table.  It asks again after every
 * reconnect to a sentinel, when the owner says the master it was given is
 * not one (rl_topo_ask), and with backoff while no sentinel can name it. */
#ifndef RL_SENTINEL_H
#define RL_SENTINEL_H

#include "rl_types.h"

typedef struct rl_topo rl_topo;

typedef struct rl_topo_cbs {
    /* The sentinels name the master host:port (borrowed strings); called
     * when it is first known and whenever it changes, not for repeats. */
    void (*master)(void *owner, const char *host, int port, const char *why);
    /* No sentinel could name the master this round (retried with backoff).
     * fatal_kind != 0 when every sentinel refused us (RL_EAUTH, RL_ETLS). */
    void (*error)(void *owner, const char *msg, int fatal_kind);
    int (*wanted)(void *owner);           /* keep the sentinel connections up */
    void (*changed)(void *owner);         /* the state rl_topo_describe shows changed */
} rl_topo_cbs;

/* NULL when out of memory.  url (a RL_URL_SENTINEL one), tls_ctx and the
 * strings in them are borrowed and must outlive the topology. */
rl_topo *rl_topo_new(rl_engine *eng, const rl_url *url, struct rl_tls_ctx *tls_ctx,
                     int64_t connect_timeout_us, int64_t command_timeout_us,
                     const rl_topo_cbs *cbs, void *owner);
void rl_topo_start(rl_topo *t);           /* connect to the sentinels (again) */
/* Ask the sentinels again.  distrust: the last answer named a server that
 * is not the master: start with the next sentinel. */
void rl_topo_ask(rl_topo *t, int distrust);
void rl_topo_free(rl_topo *t);
/* "host:port" of the master, or NULL while none is known. */
const char *rl_topo_master(const rl_topo *t, int *port);
/* One line per sentinel, "host:port state[ last error]", '\n' between. */
int rl_topo_describe(const rl_topo *t, char *buf, size_t n);

/* Its connections, for the engine's poll set: i in [0, rl_topo_nconns). */
size_t rl_topo_nconns(const rl_topo *t);
rl_conn *rl_topo_conn(rl_topo *t, size_t i);

#endif
