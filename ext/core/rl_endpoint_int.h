/* Shared by rl_endpoint.c (connections, subscriptions, leases) and
 * rl_endpoint_topo.c (the Sentinel topology's callbacks, step-downs). */
#ifndef RL_ENDPOINT_INT_H
#define RL_ENDPOINT_INT_H

#include "rl_sentinel.h"
#include "rl_types.h"

extern const rl_topo_cbs rl_ep_topo_cbs;
/* The connections' display: the master's address and the URL. */
void rl_ep_set_mdisplay(rl_endpoint *ep);
/* Every leader on the endpoint steps down now (through its lease table). */
void rl_ep_demote_all(rl_endpoint *ep, const char *why);

#endif
