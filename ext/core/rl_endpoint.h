/* An endpoint is one Redis server as this process sees it: a command
 * connection and a subscriber connection shared by every lease on that
 * server, plus the table of release channels those leases listen on. */
#ifndef RL_ENDPOINT_H
#define RL_ENDPOINT_H

#include "rl_types.h"

rl_endpoint *rl_endpoint_get(rl_engine *eng, const rl_lease *l); /* find or create */
/* cbs: how the endpoint tells the lease what happens (the lease layer's table). */
int rl_endpoint_attach(rl_endpoint *ep, rl_lease *l, const rl_ep_lease_cbs *cbs);   /* -1 on OOM */
void rl_endpoint_detach(rl_lease *l);
/* The lease must wait for the key: make sure release notices reach it.
 * Subscriptions start lazily, so an uncontended lease costs no pub/sub. */
void rl_endpoint_listen(rl_lease *l);
void rl_endpoint_free(rl_endpoint *ep);
/* A script got READONLY (Sentinel): the server is not the master any more.
 * Every leader steps down, the connections drop, the sentinels are asked
 * again.  Nothing for other URLs. */
void rl_endpoint_not_master(rl_endpoint *ep, const char *why);
/* After a release that reached `receivers` subscribers (-1: unknown): may
 * anyone but l wait for the key?  (This endpoint's own subscription counts
 * once among the receivers; other leases of this process on the key wait
 * through it.) */
int rl_endpoint_others_listening(const rl_lease *l, long long receivers);

/* Every connection of the endpoint (command, subscriber, the sentinels'),
 * for the engine's poll set: i in [0, rl_endpoint_nconns). */
size_t rl_endpoint_nconns(const rl_endpoint *ep);
rl_conn *rl_endpoint_conn(rl_endpoint *ep, size_t i);

static inline int rl_endpoint_ready(const rl_endpoint *ep) { return ep->cmd.state == RL_C_READY; }

#endif
