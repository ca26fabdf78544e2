/* Engine services: what every layer of the core may use, below all of
 * them -- randomness, the fd table (fork safety), waking the engine thread
 * and API threads, the list of active leases.  They touch only rl_engine
 * fields (rl_types.h) and call nothing above. */
#include "rl_services.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "rl_clock.h"

uint64_t rl_engine_rand(rl_engine *e)
{
    uint64_t x = e->rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    e->rng = x;
    return x;
}

int64_t rl_engine_jitter(rl_engine *e, int64_t d)
{
    if (d <= 4)
        return d;
    return d + (int64_t)(rl_engine_rand(e) % (uint64_t)(d / 4));
}

/* Adds fd to v, growing it as needed: -1 when out of memory.  The caller
 * holds the lock that guards v. */
int rl_fdvec_add(rl_fdvec *v, int fd)
{
    if (v->n == v->cap) {
        size_t ncap = v->cap ? 2 * v->cap : 16;
        int *nv = realloc(v->v, ncap * sizeof *nv);
        if (!nv)
            return -1;
        v->v = nv;
        v->cap = ncap;
    }
    v->v[v->n++] = fd;
    return 0;
}

/* Removes fd from v (the caller holds the lock). */
void rl_fdvec_remove(rl_fdvec *v, int fd)
{
    for (size_t i = 0; i < v->n; i++) {
        if (v->v[i] == fd) {
            v->v[i] = v->v[--v->n];
            return;
        }
    }
}

int rl_engine_track_fd(rl_engine *e, int fd)
{
    pthread_mutex_lock(&e->mu);
    int rc = rl_fdvec_add(&e->fds, fd);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void rl_engine_forget_fd(rl_engine *e, int fd)
{
    pthread_mutex_lock(&e->mu);
    rl_fdvec_remove(&e->fds, fd);
    pthread_mutex_unlock(&e->mu);
}

void rl_engine_wake(rl_engine *e)
{
    uint64_t one = 1;
    if (e->wake_fd >= 0) {
        ssize_t n = write(e->wake_fd, &one, sizeof one);
        (void)n; /* EAGAIN: the counter is already non-zero, the engine wakes anyway */
    }
}

void rl_engine_notify(rl_engine *e)
{
    static const uint64_t one = 1;
    pthread_cond_broadcast(&e->cv);
    for (size_t i = 0; i < e->wakers.n; i++) {
        if (write(e->wakers.v[i], &one, sizeof one) < 0) {
            /* full: the loop has a wake-up pending already */
        }
    }
}

/* Condition variables cannot wait on CLOCK_BOOTTIME, and CLOCK_MONOTONIC
 * does not count a suspend: a long wait could wake that much late.  So
 * each wait is at most a short slice; every caller loops on its own
 * deadline (rl_now_us, CLOCK_BOOTTIME). */
#define RL_CV_SLICE_US 50000

void rl_engine_timedwait(rl_engine *e, int64_t max_us)
{
    struct timespec ts;
    if (max_us <= 0)
        return;
    if (max_us > RL_CV_SLICE_US)
        max_us = RL_CV_SLICE_US;
    rl_cond_deadline(&ts, max_us);
    pthread_cond_timedwait(&e->cv, &e->mu, &ts);
}

void rl_engine_activate(rl_engine *e, rl_lease *l)
{
    if (l->act_prev || e->active == l)
        return;
    atomic_fetch_add(&l->refs, 1);     /* the engine's reference while active */
    l->act_prev = NULL;
    l->act_next = e->active;
    if (e->active)
        e->active->act_prev = l;
    e->active = l;
    e->nactive++;
    atomic_fetch_add(&e->st_leases, 1);
}

void rl_engine_deactivate(rl_engine *e, rl_lease *l)
{
    if (!l->act_prev && e->active != l)
        return;
    if (l->act_prev)
        l->act_prev->act_next = l->act_next;
    else
        e->active = l->act_next;
    if (l->act_next)
        l->act_next->act_prev = l->act_prev;
    l->act_next = l->act_prev = NULL;
    e->nactive--;
    atomic_fetch_sub(&e->st_leases, 1);
    l->ops->decref(l);
}

