/* Waiting for a lease's state (leader, stopped, released, a lock attempt,
 * a status query) on behalf of an API thread. */
#include <stdlib.h>
#include <string.h>

#include "redlease.h"
#include "rl_api_int.h"
#include "rl_clock.h"
#include "rl_engine.h"
#include "rl_types.h"

/* What a wait waits for. */
typedef struct wait_ctx {
    rl_lease *l;
    rl_engine *e;
    int what;                  /* RL_WAIT_* or WAIT_QUERY */
    uint64_t ticket;           /* WAIT_QUERY: the query's number */
    rl_query *out;             /* WAIT_QUERY: filled when done */
} wait_ctx;

#define WAIT_QUERY (-1)

/* e->mu held.  0 not yet, 1 done, 2 a lock's single attempt ended without
 * it, -1 error in *err.  fill: copy a query's result out (only once). */
static int wait_cond(wait_ctx *c, rl_error *err, int fill)
{
    rl_lease *l = c->l;
    rl_engine *e = c->e;
    switch (c->what) {
    case WAIT_QUERY:
        if (l->q_seq < c->ticket)
            return e->quit ? rl_seterr(err, RL_ESTATE, "the redlease engine has shut down") : 0;
        if (l->q_errkind)
            return rl_seterr(err, l->q_errkind, "%s", l->q_err ? l->q_err : "status query failed");
        if (fill) {
            c->out->pttl = l->q_pttl;
            c->out->token = l->q_token;
            if (l->q_holder && (c->out->holder = malloc(l->q_holderlen + 1))) {
                memcpy(c->out->holder, l->q_holder, l->q_holderlen + 1);
                c->out->holderlen = l->q_holderlen;
            }
        }
        return 1;
    case RL_WAIT_STOPPED:
        /* Every stop posted so far is over (a later start() may have
         * restarted the lease: the stop still happened). */
        return l->stops_done >= l->stops_posted || e->quit;
    case RL_WAIT_RELEASED:
        /* Every resign posted so far is over and its release answered (a
         * re-election after it does not make the waiter wait on). */
        return l->resigns_done >= l->resigns_posted || e->quit;
    default:
        if (rl_lease_is_leader(l))
            return 1;
        if (l->fatal_kind && l->pub_phase == RL_P_RUNNING)
            return rl_seterr(err, l->fatal_kind, "%s", l->fatal_msg ? l->fatal_msg : "failed");
        if (e->quit)
            return rl_seterr(err, RL_ESTATE, "the redlease engine has shut down");
        if (c->what == RL_WAIT_LOCK && l->lock_done)
            return 2;
        return 0;
    }
}

static int drive_done(void *arg)
{
    wait_ctx *c = arg;
    rl_error scratch;
    pthread_mutex_lock(&c->e->mu);
    int rc = wait_cond(c, &scratch, 0);
    pthread_mutex_unlock(&c->e->mu);
    return rc != 0;
}

/* Waits at most max_us for c's condition.  While it waits, the calling
 * thread runs the engine loop itself if nobody else is (see rl_loop.c);
 * otherwise it sleeps on the engine's condition variable. */
static int wait_for(wait_ctx *c, int64_t max_us, rl_error *err)
{
    rl_engine *e = c->e;
    int64_t until = rl_now_us() + max_us;
    if (max_us > 0 && !rl_engine_drive(e, drive_done, c, until))
        rl_engine_wake(e);   /* a quiet post must still be seen */
    int rc;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        rc = wait_cond(c, err, 1);
        if (rc != 0)
            break;
        int64_t left = until - rl_now_us();
        if (left <= 0)
            break;
        rl_engine_timedwait(e, left);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* Waiting for leadership is like threading.Event.wait: a lease that is not
 * started (yet) is simply not leading, and the wait goes on until it leads,
 * the time is up, or the latest attempt failed in a way retrying won't fix. */
int rl_lease_wait(rl_lease *l, int what, int64_t max_us, rl_error *err)
{
    if (rl_api_check_fresh(l, err) < 0)
        return -1;
    if (!atomic_load(&l->eng) && (what == RL_WAIT_STOPPED || what == RL_WAIT_RELEASED))
        return 1;
    rl_engine *e = rl_api_engine_for(l, err);
    if (!e)
        return -1;
    wait_ctx c = {.l = l, .e = e, .what = what};
    return wait_for(&c, max_us, err);
}

int rl_lease_query_wait(rl_lease *l, uint64_t ticket, int64_t max_us, rl_query *out, rl_error *err)
{
    rl_engine *e = atomic_load(&l->eng);
    memset(out, 0, sizeof *out);
    if (!e)
        return rl_seterr(err, RL_ESTATE, "no query was posted");
    wait_ctx c = {.l = l, .e = e, .what = WAIT_QUERY, .ticket = ticket, .out = out};
    return wait_for(&c, max_us, err);
}

