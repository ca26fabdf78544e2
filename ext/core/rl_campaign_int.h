/* Shared by the engine-side lease files: rl_campaign.c (the state machine),
 * rl_publish.c (what API threads see) and rl_query.c (status, watch).
 * Engine thread (run_mu holder) only. */
#ifndef RL_CAMPAIGN_INT_H
#define RL_CAMPAIGN_INT_H

#include <hiredis/hiredis.h>

#include "rl_types.h"

static inline rl_engine *rl_lease_eng(const rl_lease *l) { return atomic_load(&((rl_lease *)l)->eng); }
static inline int64_t rl_min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* A key's PTTL (ms, >= 0) in microseconds, saturating at ~31,700 years: a
 * foreign key may carry a PTTL near 2^63 ms, whose microseconds (and their
 * sum with now) would overflow int64. */
#define RL_PTTL_FAR_MS 1000000000000000LL
static inline int64_t rl_pttl_us(long long pttl_ms)
{
    return (int64_t)(pttl_ms < RL_PTTL_FAR_MS ? pttl_ms : RL_PTTL_FAR_MS) * 1000;
}

/* rl_campaign.c */
void rl_act_at(rl_lease *l, int64_t when);
int64_t rl_backoff(rl_lease *l, int64_t cap);
void rl_maybe_finish_stop(rl_lease *l);
void rl_step_down(rl_lease *l, const char *reason, int voluntary);
void rl_after_loss(rl_lease *l, int64_t when);     /* a node campaigns again at when */
void rl_lock_attempt_over(rl_lease *l, int errkind, const char *msg);

/* rl_request.c */
int rl_send_script(rl_lease *l, int script, rl_reply_fn *cb, int eval);
void rl_reply_error_msg(char *buf, size_t n, const char *what, const redisReply *r);
/* The same, naming the server; for NOPERM, what the ACL user needs. */
void rl_reply_error_at(char *buf, size_t n, rl_lease *l, const char *what, const redisReply *r);
int rl_reply_resent(rl_lease *l, const redisReply *reply, int script, rl_reply_fn *cb, int retry_ok);

/* rl_synced.c: min_replicas > 0; sends the script, then WAIT, and hands
 * the script's reply to cb once WAIT answered (l->sync_short: unconfirmed,
 * l->sync_msg says why).  -1 if the connection cannot take the script. */
int rl_synced_send(rl_lease *l, rl_reply_fn *cb, int n, const char **argv, const size_t *lens);

/* rl_evict.c: once per endpoint, warn if its maxmemory-policy can evict lease keys */
void rl_evict_check(rl_lease *l);

/* rl_publish.c */
void rl_pub_deadline(rl_lease *l, int64_t token, int64_t deadline);
void rl_pub_emit(rl_lease *l, int kind, int64_t token, const char *text, size_t len);
void rl_pub_leader(rl_lease *l, const char *id, size_t len);
void rl_pub_leader_cause(rl_lease *l, const char *id, size_t len, int cause, int force);
void rl_pub_error(rl_lease *l, int fatal_kind, const char *msg);
void rl_pub_clear_error(rl_lease *l);
void rl_pub_phase(rl_lease *l, int phase);
void rl_pub_releases(rl_lease *l, int delta);   /* 0 left: resigns taken are done */
void rl_pub_stops_done(rl_lease *l);            /* the stops taken so far are over */

/* rl_query.c */
int rl_watch_send(rl_lease *l);
void rl_watch_message(rl_lease *l, const char *p, size_t len);
void rl_query_publish(rl_lease *l, int errkind, const char *err, const redisReply *r);
void rl_query_send_pending(rl_lease *l);
void rl_query_conn_down(rl_lease *l, const char *why, int fatal_kind);

#endif
