/* The lease state machine, run by the engine thread: campaign (acquire,
 * retry at the holder's expiry or on its release notice), lead (renew before
 * the local deadline, step down at it without I/O), resign, stop. */
#ifndef RL_CAMPAIGN_H
#define RL_CAMPAIGN_H

#include "rl_types.h"

void rl_campaign_init(rl_lease *l);                 /* timers; any thread, before start */
/* rl_query.c: a watch-mode lease's action timer asks for the holder (after rl_campaign_init). */
void rl_watch_init(rl_lease *l);
void rl_campaign_start(rl_engine *eng, rl_lease *l);
void rl_campaign_stop(rl_lease *l);
void rl_campaign_resign(rl_lease *l);
void rl_campaign_query(rl_engine *eng, rl_lease *l);  /* holder, PTTL, last token */
void rl_synced_forget(rl_lease *l);   /* rl_synced.c: frees a reply kept for WAIT (teardown) */

/* From the endpoint, through this table (handed down at attach). */
extern const rl_ep_lease_cbs rl_campaign_ep_cbs;
void rl_campaign_conn_ready(rl_lease *l);
void rl_campaign_conn_down(rl_lease *l, const char *why, int fatal_kind);
void rl_campaign_on_message(rl_lease *l, const char *payload, size_t len);
void rl_campaign_on_listening(rl_lease *l);   /* subscription confirmed */
void rl_campaign_demoted(rl_lease *l, const char *why);   /* not the master: step down now */

#endif
