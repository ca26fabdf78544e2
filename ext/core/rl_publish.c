/* What the engine publishes for API threads: the lease deadline and token
 * (atomics), leader, errors and phase (under eng->mu), and events. */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rl_campaign_int.h"
#include "rl_clock.h"
#include "rl_conn.h"
#include "rl_endpoint.h"
#include "rl_engine.h"
#include "rl_error.h"
#include "rl_scripts.h"

/* ---- publishing (what API threads read) ---- */

void rl_pub_deadline(rl_lease *l, int64_t token, int64_t deadline)
{
    atomic_fetch_add(&l->seq, 1);
    atomic_store(&l->token, token);
    atomic_store(&l->deadline, deadline);
    atomic_fetch_add(&l->seq, 1);
}

/* A lock's owner has no callbacks: it hears only of what goes wrong (a lost
 * lease, errors), which keeps the Python dispatcher asleep on the
 * acquire/release hot path.  Nodes and watches hear everything. */
static int wanted(const rl_lease *l, int kind, const char *text)
{
    if (l->mode != RL_MODE_LOCK)
        return 1;
    if (kind == RL_EV_ERROR || kind == RL_EV_RECOVERED)
        return 1;
    return kind == RL_EV_REVOKED && text && strncmp(text, "stopped", 7) != 0;
}

void rl_pub_emit(rl_lease *l, int kind, int64_t token, const char *text, size_t len)
{
    if (wanted(l, kind, text))
        rl_engine_emit(rl_lease_eng(l), l, kind, token, text, len);
}

void rl_pub_leader(rl_lease *l, const char *id, size_t len)
{
    rl_pub_leader_cause(l, id, len, 0, 0);
}

void rl_pub_leader_cause(rl_lease *l, const char *id, size_t len, int cause, int force)
{
    rl_engine *eng = rl_lease_eng(l);
    int changed;
    int self = id == l->node_id;        /* on_acquired: this object itself */
    if (id)
        len = rl_term_idlen(id, len);   /* the leader is the node_id part of the term */
    pthread_mutex_lock(&eng->mu);
    l->leader_self = self;
    if (!id)
        changed = l->leader != NULL;
    else
        changed = !l->leader || l->leaderlen != len || memcmp(l->leader, id, len) != 0;
    if (changed) {
        char *copy = NULL;
        if (id && (copy = malloc(len + 1))) {
            memcpy(copy, id, len);
            copy[len] = 0;
        }
        free(l->leader);
        l->leader = copy;
        l->leaderlen = copy ? len : 0;
    }
    pthread_mutex_unlock(&eng->mu);
    if (changed || force)
        rl_pub_emit(l, RL_EV_LEADER, cause, id, id ? len : 0);
}

void rl_pub_error(rl_lease *l, int fatal_kind, const char *msg)
{
    rl_engine *eng = rl_lease_eng(l);
    int changed;
    pthread_mutex_lock(&eng->mu);
    changed = !l->last_error || strcmp(l->last_error, msg) != 0;
    if (changed) {
        free(l->last_error);
        l->last_error = strdup(msg);
    }
    if (fatal_kind) {
        l->fatal_kind = fatal_kind;
        rl_set_text(&l->fatal_msg, msg);
        rl_engine_notify(eng);
    }
    pthread_mutex_unlock(&eng->mu);
    if (changed)
        rl_pub_emit(l, RL_EV_ERROR, fatal_kind, msg, strlen(msg));
}

void rl_pub_clear_error(rl_lease *l)
{
    rl_engine *eng = rl_lease_eng(l);
    int had;
    l->err_streak = 0;
    pthread_mutex_lock(&eng->mu);
    had = l->last_error != NULL;
    free(l->last_error);
    l->last_error = NULL;
    l->fatal_kind = 0;
    pthread_mutex_unlock(&eng->mu);
    if (had)
        rl_pub_emit(l, RL_EV_RECOVERED, 0, NULL, 0);
}

void rl_pub_phase(rl_lease *l, int phase)
{
    rl_engine *eng = rl_lease_eng(l);
    pthread_mutex_lock(&eng->mu);
    l->pub_phase = phase;
    rl_engine_notify(eng);
    pthread_mutex_unlock(&eng->mu);
}

void rl_pub_stops_done(rl_lease *l)
{
    rl_engine *eng = rl_lease_eng(l);
    pthread_mutex_lock(&eng->mu);
    l->stops_done = l->stops_taken;
    rl_engine_notify(eng);
    pthread_mutex_unlock(&eng->mu);
}

void rl_pub_releases(rl_lease *l, int delta)
{
    rl_engine *eng = rl_lease_eng(l);
    l->rel_pending += delta;
    pthread_mutex_lock(&eng->mu);
    l->pub_releasing = l->rel_pending;
    if (!l->rel_pending) {
        l->resigns_done = l->resigns_taken;   /* every resign taken is over */
        rl_engine_notify(eng);
    }
    pthread_mutex_unlock(&eng->mu);
}

