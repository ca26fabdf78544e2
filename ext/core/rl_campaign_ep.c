/* The lease state machine's side of its endpoint: what the endpoint tells
 * a lease through the rl_ep_lease_cbs table handed down at attach
 * (connection up/down, release and acquire notices, subscription
 * confirmed, the server no longer the master). */
#include <stdio.h>
#include <string.h>

#include "rl_campaign.h"
#include "rl_campaign_int.h"
#include "rl_clock.h"
#include "rl_error.h"

/* ---- endpoint events ---- */

void rl_campaign_conn_ready(rl_lease *l)
{
    rl_query_send_pending(l);
    if (l->mode != RL_MODE_WATCH)
        rl_evict_check(l);
    if ((l->phase == RL_L_CAMPAIGN || l->phase == RL_L_LEADING) && !l->busy) {
        if (l->phase == RL_L_CAMPAIGN && l->mode == RL_MODE_LOCK && l->lock_done)
            return;
        int64_t now = rl_now_us();
        rl_act_at(l, now > l->resign_until ? now : l->resign_until);
    }
}

void rl_campaign_conn_down(rl_lease *l, const char *why, int fatal_kind)
{
    if (l->phase == RL_L_STOPPING || (l->phase == RL_L_IDLE && !l->q_wanted))
        return;
    rl_pub_error(l, fatal_kind, why);
    if (l->phase == RL_L_CAMPAIGN && l->try_once && !l->busy)
        rl_lock_attempt_over(l, fatal_kind ? fatal_kind : RL_ECONN, why);
    rl_query_conn_down(l, why, fatal_kind);    /* last: may drop the last reference */
}

void rl_campaign_on_message(rl_lease *l, const char *p, size_t len)
{
    const char *id = p + 1;
    size_t idlen = len - 1;
    int mine = idlen == l->termlen && memcmp(id, l->term, idlen) == 0;   /* this object's term */
    if (l->mode == RL_MODE_WATCH) {
        rl_watch_message(l, p, len);
        return;
    }
    if (p[0] == 'R') {
        if (l->phase != RL_L_CAMPAIGN || mine)
            return;          /* our own release (an unconfirmed grant, a resign) */
        rl_pub_leader(l, NULL, 0);
        if (l->mode == RL_MODE_LOCK && l->lock_done)
            return;
        if (l->busy) {
            l->rel_seen = 1;
            return;
        }
        int64_t now = rl_now_us();
        if (now >= l->resign_until)
            rl_act_at(l, now);
    } else if (p[0] == 'A') {
        /* A leader learns of a loss from its next renew: this notice may be
         * older than our own term (two sockets, no common order). */
        if (mine || l->phase == RL_L_LEADING)
            return;
        rl_pub_leader(l, id, idlen);
    }
}

/* The endpoint's server is no longer the master: a leader steps down now. */
void rl_campaign_demoted(rl_lease *l, const char *why)
{
    if (l->phase != RL_L_LEADING)
        return;
    char reason[600];
    snprintf(reason, sizeof reason, "stepped down: %s", why);
    rl_step_down(l, reason, 0);
    rl_after_loss(l, rl_now_us());
}

void rl_campaign_on_listening(rl_lease *l)
{
    if (l->mode == RL_MODE_WATCH && l->phase == RL_L_CAMPAIGN) {
        /* Changes before the subscription were missed: look again. */
        l->watch_notices++;
        if (!l->busy)
            rl_act_at(l, rl_now_us());
        return;
    }
    if (l->phase != RL_L_CAMPAIGN || l->busy)
        return;
    if (l->mode == RL_MODE_LOCK && l->lock_done)
        return;
    int64_t now = rl_now_us();
    rl_act_at(l, now > l->resign_until ? now : l->resign_until);
}

const rl_ep_lease_cbs rl_campaign_ep_cbs = {
    rl_campaign_conn_ready, rl_campaign_conn_down, rl_campaign_on_message,
    rl_campaign_on_listening, rl_campaign_demoted,
};
