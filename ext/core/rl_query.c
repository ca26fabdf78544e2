/* Reading a key's status without campaigning: the status query behind
 * lock.locked() and key_status(), and watch mode (redlease watch). */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include <stddef.h>

#include "rl_campaign_int.h"
#include "rl_clock.h"
#include "rl_conn.h"
#include "rl_endpoint.h"
#include "rl_engine.h"
#include "rl_error.h"
#include "rl_map.h"
#include "rl_scripts.h"

#define RL_WATCH_GRACE_US 20000

/* ---- watch mode: follow the holder without campaigning ---- */

static void watch_reply(redisReply *reply, void *priv)
{
    rl_lease *l = priv;
    int64_t now = rl_now_us();
    char msg[400];
    if (rl_reply_resent(l, reply, RL_SCRIPT_STATUS, watch_reply, 1))
        return;
    l->busy = RL_REQ_NONE;
    if (l->phase != RL_L_CAMPAIGN) {
        rl_maybe_finish_stop(l);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) {
        rl_reply_error_msg(msg, sizeof msg, "status query failed", reply && reply->type == REDIS_REPLY_ERROR ? reply : NULL);
        l->err_streak++;
        rl_pub_error(l, 0, msg);
        rl_act_at(l, now + rl_backoff(l, l->retry_us));
        return;
    }
    rl_pub_clear_error(l);
    if (l->watch_notices != l->watch_notices_sent) {
        /* A notice came on the other connection while this query was out:
         * the reply may be older than it.  Ask again. */
        rl_act_at(l, now);
        return;
    }
    redisReply *h = reply->element[0], *p = reply->element[1];
    const char *holder = h->type == REDIS_REPLY_STRING ? h->str : NULL;
    size_t hlen = holder ? h->len : 0;
    long long pttl = p->type == REDIS_REPLY_INTEGER ? p->integer : -2;
    if (!l->watch_started) {
        l->watch_started = 1;
        rl_pub_leader_cause(l, holder, hlen, RL_WATCH_INITIAL, 1);
    } else if (holder) {
        rl_pub_leader_cause(l, holder, hlen, RL_WATCH_ELECTED, 0);
    } else if (l->leader && !l->watch_gone) {
        /* Gone, and no release notice yet: it may still be on its way on
         * the other connection.  Look again in a moment before saying. */
        l->watch_gone = 1;
        rl_act_at(l, now + RL_WATCH_GRACE_US);
        return;
    } else {
        /* Gone with no release notice: expired, unless it vanished well
         * before its expiry (deleted by someone). */
        int early = l->watch_expiry && now + 2000 < l->watch_expiry;
        rl_pub_leader_cause(l, NULL, 0, early ? RL_WATCH_RELEASED : RL_WATCH_EXPIRED, 0);
    }
    l->watch_gone = 0;
    l->watch_expiry = holder && pttl >= 0 ? now + rl_pttl_us(pttl) : 0;
    int64_t d = l->retry_us;
    if (holder && pttl >= 0 && rl_pttl_us(pttl) + 1000 < d)
        d = rl_pttl_us(pttl) + 1000;       /* look again right after it expires */
    rl_act_at(l, now + d);
}

int rl_watch_send(rl_lease *l)
{
    l->watch_notices_sent = l->watch_notices;
    return rl_send_script(l, RL_SCRIPT_STATUS, watch_reply, 0);
}

void rl_watch_message(rl_lease *l, const char *p, size_t len)
{
    if (l->phase != RL_L_CAMPAIGN)
        return;
    l->watch_notices++;
    if (p[0] == 'R')
        rl_pub_leader_cause(l, NULL, 0, RL_WATCH_RELEASED, 0);
    else if (p[0] == 'A')
        rl_pub_leader_cause(l, p + 1, len - 1, RL_WATCH_ELECTED, 0);
    if (!l->busy)
        rl_act_at(l, rl_now_us());     /* fetch the new PTTL */
}

/* ---- status query (lock.locked(), CLI status) ---- */

void rl_query_publish(rl_lease *l, int errkind, const char *err, const redisReply *r)
{
    rl_engine *eng = rl_lease_eng(l);
    pthread_mutex_lock(&eng->mu);
    free(l->q_holder);
    l->q_holder = NULL;
    l->q_holderlen = 0;
    l->q_pttl = -2;
    l->q_token = -1;
    l->q_errkind = errkind;
    rl_set_text(&l->q_err, err ? err : "");
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 3) {
        redisReply *h = r->element[0], *p = r->element[1], *t = r->element[2];
        size_t hl = h->type == REDIS_REPLY_STRING ? rl_term_idlen(h->str, h->len) : 0;
        if (h->type == REDIS_REPLY_STRING && (l->q_holder = malloc(hl + 1))) {
            memcpy(l->q_holder, h->str, hl);   /* the node_id part of the term */
            l->q_holder[hl] = 0;
            l->q_holderlen = hl;
        }
        if (p->type == REDIS_REPLY_INTEGER)
            l->q_pttl = p->integer;
        if (t->type == REDIS_REPLY_STRING)
            l->q_token = strtoll(t->str, NULL, 10);
    }
    l->q_seq++;
    rl_engine_notify(eng);
    pthread_mutex_unlock(&eng->mu);
}

static void sub_forget(void *v, void *arg)
{
    rl_keyent *k = v;
    (void)arg;
    k->sub = RL_SUB_NONE;
    k->resub = 0;
}

/* A query is over (answered or failed) and nobody wants another: a lease
 * attached only for it lets go of its endpoint.  If that leaves the endpoint
 * unused after a connection failure, its connections are closed and do not
 * reconnect: nothing waits on a server that cannot be reached (the next
 * lease to attach connects again).  An endpoint that answered keeps its
 * connections for the next query until the idle sweep.  1 if l was
 * deactivated: it may be gone. */
static int query_over(rl_lease *l, int conn_failed)
{
    if (l->q_wanted || l->q_inflight || !l->q_temp || l->phase != RL_L_IDLE)
        return 0;
    rl_engine *eng = rl_lease_eng(l);
    rl_endpoint *ep = l->ep;
    l->q_temp = 0;
    rl_endpoint_detach(l);
    if (ep && ep->nleases == 0) {
        if (conn_failed) {
            if (ep->cmd.pending == 0)    /* no reply owed to anyone */
                rl_conn_close(&ep->cmd);
            rl_conn_close(&ep->sub);
            rl_map_each(&ep->keys, sub_forget, NULL);
        } else {
            if (ep->cmd.state == RL_C_DOWN)
                rl_heap_cancel(&eng->timers, &ep->cmd.timer);
            if (ep->sub.state == RL_C_DOWN)
                rl_heap_cancel(&eng->timers, &ep->sub.timer);
        }
    }
    rl_engine_deactivate(eng, l);   /* may drop the last reference */
    return 1;
}

static void query_reply(redisReply *reply, void *priv)
{
    rl_lease *l = priv;
    char msg[400];
    if (rl_reply_resent(l, reply, RL_SCRIPT_STATUS, query_reply, 1))
        return;
    l->q_inflight = 0;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        rl_reply_error_msg(msg, sizeof msg, "status query failed", reply);
        rl_query_publish(l, reply ? rl_reply_errkind(reply->str, reply->len) : RL_ECONN, msg, NULL);
    } else {
        rl_query_publish(l, 0, NULL, reply);
    }
    if (l->q_wanted)
        rl_query_send_pending(l);
    else if (query_over(l, !reply))
        return;
    rl_maybe_finish_stop(l);
}

/* The command connection went down or could not come up: a query waiting
 * to be sent fails now, instead of waiting through reconnects.  May drop
 * the last reference to l (call it last). */
void rl_query_conn_down(rl_lease *l, const char *why, int fatal_kind)
{
    if (!l->q_wanted || l->q_inflight)
        return;
    l->q_wanted = 0;
    rl_query_publish(l, fatal_kind ? fatal_kind : RL_ECONN, why, NULL);
    query_over(l, 1);
}

void rl_query_send_pending(rl_lease *l)
{
    if (!l->q_wanted || l->q_inflight || !l->ep || !rl_endpoint_ready(l->ep))
        return;
    if (rl_send_script(l, RL_SCRIPT_STATUS, query_reply, 0) == 0) {
        l->q_wanted = 0;
        l->q_inflight = 1;
    }
}

void rl_campaign_query(rl_engine *eng, rl_lease *l)
{
    if (!l->ep) {
        rl_endpoint *ep = rl_endpoint_get(eng, l);
        if (!ep || rl_endpoint_attach(ep, l, l->ep_table) < 0) {
            rl_query_publish(l, RL_ENOMEM, "out of memory", NULL);
            rl_engine_deactivate(eng, l);
            return;
        }
        l->q_temp = 1;
    }
    l->q_wanted = 1;
    rl_query_send_pending(l);
    if (!l->q_inflight && l->ep->cmd.state == RL_C_DOWN && l->ep->fatal_kind)
        rl_query_conn_down(l, l->ep->fatal_msg, l->ep->fatal_kind);
}

/* A watch's action timer (set by rl_watch_init in place of the campaign's):
 * ask for the holder, or look again once the connection is back. */
#define RL_WATCH_WAIT_CONN_US 1000000   /* re-check when the connection is down */

static void watch_fire(rl_timer *t, int64_t now)
{
    rl_lease *l = (rl_lease *)((char *)t - offsetof(rl_lease, act_timer));
    if (l->busy || !l->ep || l->phase != RL_L_CAMPAIGN)
        return;           /* the reply reschedules */
    if (!rl_endpoint_ready(l->ep) || rl_watch_send(l) < 0) {
        rl_act_at(l, now + RL_WATCH_WAIT_CONN_US);
        return;
    }
    l->busy = RL_REQ_WATCH;
}

void rl_watch_init(rl_lease *l)
{
    rl_timer_init(&l->act_timer, watch_fire);
}
