#include "rl_campaign.h"
#include "rl_campaign_int.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rl_clock.h"
#include "rl_conn.h"
#include "rl_endpoint.h"
#include "rl_engine.h"
#include "rl_error.h"
#include "rl_scripts.h"

#define RL_BACKOFF_MIN_US 20000
#define RL_WAIT_CONN_US 1000000     /* re-check when the connection is down */

static void act_fire(rl_timer *t, int64_t now);
static void dl_fire(rl_timer *t, int64_t now);
static void ensure_planned(rl_lease *l, int64_t now);

void rl_campaign_init(rl_lease *l)
{
    rl_timer_init(&l->act_timer, act_fire);
    rl_timer_init(&l->dl_timer, dl_fire);
}

void rl_act_at(rl_lease *l, int64_t when)
{
    rl_heap_set(&rl_lease_eng(l)->timers, &l->act_timer, when);
}


/* Renewals are planned on a grid (a tenth of the interval, at most 10 ms,
 * rounded down: a little early is harmless) so that the renewals of many
 * leases fall into the same loop turn and go out as one pipelined write. */
static int64_t renew_time(const rl_lease *l)
{
    int64_t when = l->t_send + l->renew_us;
    int64_t grid = rl_min64(l->renew_us / 10, 10000);
    return grid > 1 ? when - when % grid : when;
}

int64_t rl_backoff(rl_lease *l, int64_t cap)
{
    int64_t d = RL_BACKOFF_MIN_US;
    for (unsigned i = 1; i < l->err_streak && d < cap; i++)
        d *= 2;
    return rl_engine_jitter(rl_lease_eng(l), rl_min64(d, cap));
}

/* ---- leadership transitions ---- */

void rl_step_down(rl_lease *l, const char *reason, int voluntary)
{
    rl_engine *eng = rl_lease_eng(l);
    l->phase = RL_L_CAMPAIGN;
    l->lead_deadline = 0;
    rl_pub_deadline(l, atomic_load(&l->token), 0);
    rl_heap_cancel(&eng->timers, &l->dl_timer);
    pthread_mutex_lock(&eng->mu);
    if (!voluntary)
        l->st_losses++;
    if (l->mode == RL_MODE_LOCK)
        l->lock_done = 1;
    rl_engine_notify(eng);
    pthread_mutex_unlock(&eng->mu);
    rl_pub_emit(l, RL_EV_REVOKED, atomic_load(&l->token), reason, strlen(reason));
    rl_pub_leader(l, NULL, 0);   /* not this node any more; the next reply says who */
}

/* After losing the lease: a node campaigns again, a lock waits for its
 * owner to release it (the lease is gone, nothing more to do). */
void rl_after_loss(rl_lease *l, int64_t when)
{
    if (l->mode == RL_MODE_LOCK)
        rl_heap_cancel(&rl_lease_eng(l)->timers, &l->act_timer);
    else
        rl_act_at(l, when);
}

static void acq_reply(redisReply *reply, void *priv);
static void renew_reply(redisReply *reply, void *priv);
static void rel_reply(redisReply *reply, void *priv);

static void send_release(rl_lease *l)
{
    l->held = 0;
    l->term_used = 1;          /* never acquire again under a released term */
    if (l->ep && rl_endpoint_ready(l->ep) && rl_send_script(l, RL_SCRIPT_RELEASE, rel_reply, 0) == 0)
        rl_pub_releases(l, 1);
}

static void on_acquired(rl_lease *l, int64_t token, int64_t now)
{
    rl_engine *eng = rl_lease_eng(l);
    l->held = 1;
    rl_pub_clear_error(l);
    if (l->phase != RL_L_CAMPAIGN)
        return;                          /* stopping: the release follows */
    int64_t dl = l->t_send + l->ttl_us - l->drift_us;
    if (dl <= now + 1000) {
        /* The reply came too late to lead on it.  The key is ours, so the
         * next acquire takes it again as a new term. */
        rl_act_at(l, now);
        return;
    }
    l->phase = RL_L_LEADING;
    l->term_used = 1;          /* after this term, the next acquire is a new one */
    l->lead_deadline = dl;
    rl_pub_deadline(l, token, dl);
    pthread_mutex_lock(&eng->mu);
    l->st_acquired++;
    rl_engine_notify(eng);
    pthread_mutex_unlock(&eng->mu);
    rl_pub_emit(l, RL_EV_ELECTED, token, NULL, 0);
    rl_pub_leader(l, l->node_id, l->idlen);
    rl_heap_set(&eng->timers, &l->dl_timer, dl);
    if (l->auto_renew)
        rl_act_at(l, renew_time(l));
    else
        rl_heap_cancel(&eng->timers, &l->act_timer);
}

/* A lock's single attempt (acquire(blocking=False)) is over without it. */
void rl_lock_attempt_over(rl_lease *l, int errkind, const char *msg)
{
    rl_engine *eng = rl_lease_eng(l);
    rl_heap_cancel(&eng->timers, &l->act_timer);
    pthread_mutex_lock(&eng->mu);
    l->lock_done = 1;
    if (errkind) {
        l->fatal_kind = errkind;
        rl_set_text(&l->fatal_msg, msg);
    }
    rl_engine_notify(eng);
    pthread_mutex_unlock(&eng->mu);
}

/* min_replicas > 0: WAIT did not confirm the write on enough replicas
 * (l->sync_msg says what it saw).  Counts it and says so in buf. */
static void unsynced_msg(rl_lease *l, const char *what, char *buf, size_t n)
{
    rl_engine *eng = rl_lease_eng(l);
    pthread_mutex_lock(&eng->mu);
    l->st_unsynced++;
    pthread_mutex_unlock(&eng->mu);
    snprintf(buf, n, "%s at %s not counted: %s", what, l->ep ? l->ep->display : "the server", l->sync_msg);
}

/* An unconfirmed grant is no grant: release that exact term and retry
 * like a contended acquire. */
static void on_unsynced(rl_lease *l, int64_t now)
{
    char msg[500];
    l->held = 1;                       /* Redis holds our term */
    unsynced_msg(l, "acquire", msg, sizeof msg);
    rl_pub_error(l, 0, msg);
    if (l->phase != RL_L_CAMPAIGN)
        return;                        /* stopping: the release follows */
    send_release(l);                   /* term-exact; the next acquire draws a new term */
    if (l->try_once) {
        rl_lock_attempt_over(l, 0, NULL);
        return;
    }
    l->err_streak++;
    rl_act_at(l, now + rl_engine_jitter(rl_lease_eng(l), l->retry_us));
}

static void on_busy(rl_lease *l, const char *holder, size_t hlen, long long pttl, int64_t now)
{
    rl_pub_clear_error(l);
    rl_pub_leader(l, holder, hlen);
    if (l->phase != RL_L_CAMPAIGN)
        return;
    if (l->try_once) {
        rl_lock_attempt_over(l, 0, NULL);
        return;
    }
    rl_endpoint_listen(l);
    int64_t d;
    if (l->rel_seen || pttl == -2)
        d = 0;
    else if (pttl >= 0)
        d = rl_min64(rl_pttl_us(pttl) + 1000, l->retry_us);      /* just after it expires */
    else
        d = l->retry_us;                                        /* key without expiry */
    int64_t spread = rl_min64(d / 10, 5000);
    if (spread > 0)
        d += (int64_t)(rl_engine_rand(rl_lease_eng(l)) % (uint64_t)spread);
    rl_act_at(l, now + d);
}

/* The database refused grants for wait_ms more: its marker is younger
 * than a ttl (it is new, or lost its data).  Come back when it is old enough. */
static void on_refused(rl_lease *l, long long wait_ms, int64_t now)
{
    if (wait_ms < 0)
        wait_ms = 0;
    if (wait_ms > l->ttl_us / 1000 + 1000)
        wait_ms = l->ttl_us / 1000 + 1000;   /* saturate what the server says */
    rl_pub_error(l, 0, "no grants yet: this database's " RL_MARKER_KEY " is younger than one ttl "
                 "(the database is new, or was flushed or restarted without its data, so an "
                 "earlier holder may still believe it leads); retrying when it is a ttl old");
    if (l->phase != RL_L_CAMPAIGN)
        return;
    if (l->try_once) {
        rl_lock_attempt_over(l, 0, NULL);
        return;
    }
    int64_t d = (int64_t)wait_ms * 1000 + 1000;
    d += (int64_t)(rl_engine_rand(rl_lease_eng(l)) % 5000);
    rl_act_at(l, now + d);
}

static void attempt_failed(rl_lease *l, int kind, const char *msg, int64_t now)
{
    l->err_streak++;
    rl_pub_error(l, kind, msg);
    if (l->phase != RL_L_CAMPAIGN)
        return;
    if (l->try_once) {
        rl_lock_attempt_over(l, kind ? kind : RL_ECONN, msg);
        return;
    }
    int64_t d = rl_backoff(l, l->retry_us);
    if (kind && d < l->retry_us)
        d = l->retry_us;
    rl_act_at(l, now + d);
}

static void renewed(rl_lease *l, int64_t now)
{
    rl_engine *eng = rl_lease_eng(l);
    int64_t dl = l->t_send + l->ttl_us - l->drift_us;
    rl_pub_clear_error(l);
    if (dl > l->lead_deadline) {
        l->lead_deadline = dl;
        rl_pub_deadline(l, atomic_load(&l->token), dl);
        rl_heap_set(&eng->timers, &l->dl_timer, dl);
    }
    pthread_mutex_lock(&eng->mu);
    l->st_renewals++;
    l->st_last_rtt_us = now - l->t_send;
    l->st_rtt[l->st_rtt_n++ % RL_RTT_RING] =
        l->st_last_rtt_us > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)l->st_last_rtt_us;
    pthread_mutex_unlock(&eng->mu);
    rl_act_at(l, renew_time(l));
}

static void renew_failed(rl_lease *l, const char *msg, int64_t now)
{
    rl_engine *eng = rl_lease_eng(l);
    l->err_streak++;
    pthread_mutex_lock(&eng->mu);
    l->st_renew_fail++;
    pthread_mutex_unlock(&eng->mu);
    rl_pub_error(l, 0, msg);
    rl_act_at(l, now + rl_backoff(l, l->renew_us));
}

static void lost(rl_lease *l, const char *holder, size_t hlen, int64_t now)
{
    char reason[256];
    l->held = 0;
    if (holder)
        snprintf(reason, sizeof reason, "lost: the key is now held by %.*s",
                 (int)(hlen > 120 ? 120 : hlen), holder);
    else
        snprintf(reason, sizeof reason, "lost: the key expired or was deleted");
    rl_step_down(l, reason, 0);
    rl_pub_leader(l, holder, hlen);
    rl_after_loss(l, holder ? now + l->retry_us : now);
}

/* READONLY: the server became a replica (a Sentinel failover).  Tell the
 * endpoint after this reply is handled: every leader steps down at once. */
static void check_readonly(rl_lease *l, const redisReply *reply, const char *what)
{
    char why[400];
    if (!reply || reply->type != REDIS_REPLY_ERROR || reply->len < 8 || memcmp(reply->str, "READONLY", 8) != 0 ||
        !l->ep)
        return;
    snprintf(why, sizeof why, "%s at %s: READONLY (the server is a replica now); asking the sentinels again",
             what, l->ep->display);
    rl_endpoint_not_master(l->ep, why);
}

static void acq_reply(redisReply *reply, void *priv)
{
    rl_lease *l = priv;
    int64_t now = rl_now_us();
    char msg[800];
    if (rl_reply_resent(l, reply, RL_SCRIPT_ACQUIRE, acq_reply, 1)) {
        l->t_send = now;
        return;
    }
    l->busy = RL_REQ_NONE;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        rl_reply_error_at(msg, sizeof msg, l, "acquire failed", reply);
        attempt_failed(l, reply ? rl_reply_errkind(reply->str, reply->len) : 0, msg, now);
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
               reply->element[0]->type == REDIS_REPLY_INTEGER) {
        redisReply *e1 = reply->element[1];
        if (reply->element[0]->integer == 1 && e1->type == REDIS_REPLY_STRING && l->sync_short) {
            on_unsynced(l, now);
        } else if (reply->element[0]->integer == 1 && e1->type == REDIS_REPLY_STRING) {
            on_acquired(l, strtoll(e1->str, NULL, 10), now);
        } else if (reply->element[0]->integer == 2 && e1->type == REDIS_REPLY_STRING) {
            on_refused(l, strtoll(e1->str, NULL, 10), now);
        } else {
            long long pttl = -1;
            if (reply->elements >= 3 && reply->element[2]->type == REDIS_REPLY_INTEGER)
                pttl = reply->element[2]->integer;
            if (e1->type == REDIS_REPLY_STRING)
                on_busy(l, e1->str, e1->len, pttl, now);
            else
                on_busy(l, NULL, 0, -2, now);
        }
    } else {
        attempt_failed(l, RL_EREDIS, "acquire failed: unexpected reply from the server", now);
    }
    l->rel_seen = 0;
    check_readonly(l, reply, "acquire");
    ensure_planned(l, now);
    rl_maybe_finish_stop(l);
}

static void renew_reply(redisReply *reply, void *priv)
{
    rl_lease *l = priv;
    int64_t now = rl_now_us();
    char msg[800];
    if (rl_reply_resent(l, reply, RL_SCRIPT_RENEW, renew_reply, l->phase == RL_L_LEADING)) {
        l->t_send = now;
        return;
    }
    l->busy = RL_REQ_NONE;
    if (l->phase != RL_L_LEADING) {
        /* We stepped down meanwhile; the answer no longer matters. */
    } else if (!reply || reply->type == REDIS_REPLY_ERROR) {
        rl_reply_error_at(msg, sizeof msg, l, "renew failed", reply);
        renew_failed(l, msg, now);
    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1 && l->sync_short) {
        unsynced_msg(l, "renew", msg, sizeof msg);
        renew_failed(l, msg, now);             /* the deadline stays where it was */
    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        renewed(l, now);
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
               reply->element[1]->type == REDIS_REPLY_STRING) {
        lost(l, reply->element[1]->str, reply->element[1]->len, now);
    } else {
        lost(l, NULL, 0, now);
    }
    check_readonly(l, reply, "renew");
    ensure_planned(l, now);
    rl_maybe_finish_stop(l);
}

static void rel_reply(redisReply *reply, void *priv)
{
    rl_lease *l = priv;
    char msg[800];
    if (rl_reply_resent(l, reply, RL_SCRIPT_RELEASE, rel_reply, 1))
        return;
    rl_engine *eng = rl_lease_eng(l);
    /* {1, receivers}: deleted (an older server cache may still answer 1). */
    long long receivers = -1;
    int deleted = 0;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        deleted = 1;
    } else if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
               reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer == 1) {
        deleted = 1;
        if (reply->element[1]->type == REDIS_REPLY_INTEGER)
            receivers = reply->element[1]->integer;
    }
    pthread_mutex_lock(&eng->mu);      /* before the stop is published as over */
    l->rel_answer = !reply || reply->type == REDIS_REPLY_ERROR ? 3 : deleted ? 1 : 2;
    pthread_mutex_unlock(&eng->mu);
    rl_pub_releases(l, -1);
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        rl_reply_error_at(msg, sizeof msg, l, "release failed (the key will expire by itself)", reply);
        rl_pub_error(l, 0, msg);
    } else if (deleted && l->phase != RL_L_LEADING) {
        rl_pub_leader(l, NULL, 0);
    }
    if (deleted && l->mode != RL_MODE_LOCK && l->phase == RL_L_CAMPAIGN && l->resign_until > 0 &&
        !rl_endpoint_others_listening(l, receivers)) {
        /* A resign that nobody was waiting for: no peer to give
         * retry_interval to, so campaign again at once. */
        int64_t now = rl_now_us();
        l->resign_until = 0;
        if (!l->busy)
            rl_act_at(l, now);
    }
    rl_maybe_finish_stop(l);
}

/* ---- timers ---- */

static void act_fire(rl_timer *t, int64_t now)
{
    rl_lease *l = (rl_lease *)((char *)t - offsetof(rl_lease, act_timer));
    if (l->busy || !l->ep)
        return;           /* the reply reschedules */
    if (l->phase == RL_L_CAMPAIGN) {
        if (now < l->resign_until) {
            rl_act_at(l, l->resign_until);
            return;
        }
        if (!rl_endpoint_ready(l->ep)) {
            /* A lock whose connection is down after a failed attempt (in
             * reconnect backoff) hears of it now, not at the next attempt. */
            if (l->mode == RL_MODE_LOCK && l->ep->cmd.state == RL_C_DOWN && l->ep->cmd.failures) {
                char msg[400];
                snprintf(msg, sizeof msg, "cannot connect to %s: the last attempt failed%s%s",
                         l->ep->display, l->last_error ? ": " : "", l->last_error ? l->last_error : "");
                if (l->try_once) {
                    rl_lock_attempt_over(l, RL_ECONN, l->last_error ? l->last_error : msg);
                    return;
                }
                if (!l->last_error)
                    rl_pub_error(l, 0, msg);
            }
            rl_act_at(l, now + RL_WAIT_CONN_US);   /* conn_ready kicks us sooner */
            return;
        }
        if (l->term_used) {
            /* A new term: a value no earlier command of ours carries.  The
             * old one, if Redis still holds it, is a foreign holder now. */
            rl_term_set_suffix(l->term + l->idlen + 1, rl_engine_rand(rl_lease_eng(l)));
            l->term_used = 0;
            l->held = 0;
        }
        if (rl_send_script(l, RL_SCRIPT_ACQUIRE, acq_reply, 0) < 0) {
            l->err_streak++;
            rl_act_at(l, now + rl_backoff(l, l->retry_us));
            return;
        }
        l->busy = RL_REQ_ACQ;
        l->t_send = now;
        l->rel_seen = 0;
    } else if (l->phase == RL_L_LEADING) {
        if (!rl_endpoint_ready(l->ep) || rl_send_script(l, RL_SCRIPT_RENEW, renew_reply, 0) < 0) {
            l->err_streak++;
            rl_act_at(l, now + rl_backoff(l, l->renew_us));
            return;
        }
        l->busy = RL_REQ_RENEW;
        l->t_send = now;
    }
}

static void dl_fire(rl_timer *t, int64_t now)
{
    rl_lease *l = (rl_lease *)((char *)t - offsetof(rl_lease, dl_timer));
    char reason[256];
    if (l->phase != RL_L_LEADING)
        return;
    snprintf(reason, sizeof reason, "expired: could not renew within the lease (ttl %.3f s)",
             (double)l->ttl_us / 1e6);
    if (l->busy == RL_REQ_RENEW) {
        char msg[256];
        snprintf(msg, sizeof msg, "lease expired locally: no reply to the renew sent %.3f s ago",
                 (double)(now - l->t_send) / 1e6);
        rl_pub_error(l, 0, msg);
    } else if (!l->last_error && l->auto_renew) {   /* only the engine writes it */
        rl_pub_error(l, 0, "lease expired locally: the renewal could not be sent (no connection)");
    }
    rl_step_down(l, reason, 0);
    rl_after_loss(l, now);
}

/* ---- commands ---- */

void rl_campaign_start(rl_engine *eng, rl_lease *l)
{
    if (l->phase == RL_L_STOPPING) {
        l->want_restart = 1;
        return;
    }
    if (l->phase != RL_L_IDLE)
        return;
    l->q_temp = 0;     /* a status query's endpoint now serves the campaign */
    if (!l->ep) {
        rl_endpoint *ep = rl_endpoint_get(eng, l);
        if (!ep || rl_endpoint_attach(ep, l, l->ep_table) < 0) {
            rl_pub_error(l, RL_ENOMEM, "out of memory while starting");
            rl_engine_deactivate(eng, l);
            return;
        }
    }
    l->phase = RL_L_CAMPAIGN;
    l->want_stop = 0;
    l->resign_until = 0;
    l->err_streak = 0;
    l->watch_started = 0;
    pthread_mutex_lock(&eng->mu);
    l->pub_phase = RL_P_RUNNING;
    l->lock_done = 0;
    l->fatal_kind = 0;
    rl_engine_notify(eng);
    pthread_mutex_unlock(&eng->mu);
    if (l->mode == RL_MODE_WATCH)
        rl_endpoint_listen(l);
    if (l->ep->cmd.state == RL_C_DOWN && l->ep->fatal_kind)
        rl_pub_error(l, l->ep->fatal_kind, l->ep->fatal_msg);
    rl_act_at(l, rl_now_us());
}

static void finish_stop(rl_lease *l)
{
    rl_engine *eng = rl_lease_eng(l);
    rl_heap_cancel(&eng->timers, &l->act_timer);
    rl_heap_cancel(&eng->timers, &l->dl_timer);
    l->phase = RL_L_IDLE;
    l->want_stop = 0;
    l->resign_until = 0;
    rl_pub_stops_done(l);
    if (l->want_restart) {
        l->want_restart = 0;
        rl_campaign_start(eng, l);
        return;
    }
    rl_endpoint_detach(l);
    rl_pub_phase(l, RL_P_STOPPED);
    rl_engine_deactivate(eng, l);     /* may drop the last reference */
}

/* After a reply: a lease that still campaigns must have its next attempt
 * planned (a reply that arrived after a step-down plans nothing itself). */
static void ensure_planned(rl_lease *l, int64_t now)
{
    if (l->phase != RL_L_CAMPAIGN || l->busy || rl_timer_pending(&l->act_timer))
        return;
    if (l->mode == RL_MODE_LOCK && l->lock_done)
        return;
    rl_act_at(l, now > l->resign_until ? now : l->resign_until);
}

void rl_maybe_finish_stop(rl_lease *l)
{
    if (l->phase != RL_L_STOPPING || l->busy)
        return;
    if (l->held)
        send_release(l);
    if (l->rel_pending || l->q_inflight)
        return;
    finish_stop(l);
}

void rl_campaign_stop(rl_lease *l)
{
    rl_engine *eng = rl_lease_eng(l);
    if (l->phase == RL_L_IDLE || l->phase == RL_L_STOPPING) {
        l->want_restart = 0;
        if (l->phase == RL_L_IDLE)
            rl_pub_stops_done(l);      /* nothing to stop; a stopping one publishes at its end */
        return;
    }
    l->want_stop = 1;
    if (l->phase == RL_L_LEADING)
        rl_step_down(l, "stopped", 1);
    l->phase = RL_L_STOPPING;
    rl_heap_cancel(&eng->timers, &l->act_timer);
    rl_heap_cancel(&eng->timers, &l->dl_timer);
    rl_pub_phase(l, RL_P_STOPPING);
    rl_maybe_finish_stop(l);
}

void rl_campaign_resign(rl_lease *l)
{
    if (l->phase == RL_L_LEADING) {
        int64_t now = rl_now_us();
        rl_step_down(l, "resigned", 1);
        l->resign_until = now + l->retry_us;
        send_release(l);
        rl_after_loss(l, l->resign_until);
    }
    if (!l->rel_pending)
        rl_pub_releases(l, 0);     /* nothing in flight: this resign is over */
}
