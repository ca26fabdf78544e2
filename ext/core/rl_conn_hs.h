/* rl_conn_hs.h - the Redis handshake of a connection (rl_conn_hs.c):
 * [AUTH], CLIENT SETNAME (an error reply to it is ignored), [SELECT],
 * [SCRIPT LOAD x N], queued on a connection whose stream is up. */
#ifndef RL_CONN_HS_H
#define RL_CONN_HS_H

#include "rl_types.h"

/* Queues the commands; sets c->hs_pending to their number.  Each reply
 * lowers it; an error reply that matters sets it to -1 with c->hs_kind
 * and c->hs_msg.  -1 when out of memory. */
int rl_hs_start(rl_conn *c);

#endif
