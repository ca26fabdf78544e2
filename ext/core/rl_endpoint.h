/* An endpoint is one Redis server as this process sees it: a command
 * connection and a subscriber connection shared by every lease on that
 * server, plus the table of release channels those leases listen on. */
#ifndef RL_ENDPOINT_H
#define RL_ENDPOINT_H

#include "rl_types.h"

rl_endpoint *rl_endpoint_get(rl_engine *eng, const rl_lease *l); /* find or create */
int rl_endpoint_attach(rl_endpoint *ep, rl_lease *l);            /* -1 on OOM */
void rl_endpoint_detach(rl_lease *l);
/* The lease must wait for the key: make sure release notices reach it.
 * Subscriptions start lazily, so an uncontended lease costs no pub/sub. */
void rl_endpoint_listen(rl_lease *l);
void rl_endpoint_free(rl_endpoint *ep);
/* After a release that reached `receivers` subscribers (-1: unknown): may
 * anyone but l wait for the key?  (This endpoint's own subscription counts
 * once among the receivers; other leases of this process on the key wait
 * through it.) */
int rl_endpoint_others_listening(const rl_lease *l, long long receivers);

static inline int rl_endpoint_ready(const rl_endpoint *ep) { return ep->cmd.state == RL_C_READY; }

#endif
