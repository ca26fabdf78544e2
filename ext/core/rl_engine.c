#include "rl_engine.h"
#include "rl_services.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "rl_clock.h"
#include "rl_conn.h"
#include "rl_endpoint.h"

#define RL_DRAIN_MAX_US 3000000

/* The process's engine.  These are the only globals: the engine itself,
 * guarded by g_mu, and the fork generation that marks stale leases. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_engine *g_engine;
static atomic_uint g_fork_gen;
static int g_atfork_installed;

unsigned rl_fork_generation(void) { return atomic_load(&g_fork_gen); }

rl_engine *rl_engine_current(void)
{
    pthread_mutex_lock(&g_mu);
    rl_engine *e = g_engine;
    pthread_mutex_unlock(&g_mu);
    return e;
}

/* ---- fork: the child has no engine thread; its copies go stale ---- */

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_mu);
    if (g_engine) {
        pthread_mutex_lock(&g_engine->run_mu);
        pthread_mutex_lock(&g_engine->mu);
        pthread_mutex_lock(&g_engine->ev_mu);
    }
}

static void atfork_parent(void)
{
    if (g_engine) {
        pthread_mutex_unlock(&g_engine->ev_mu);
        pthread_mutex_unlock(&g_engine->mu);
        pthread_mutex_unlock(&g_engine->run_mu);
    }
    pthread_mutex_unlock(&g_mu);
}

static void atfork_child(void)
{
    rl_engine *e = g_engine;
    if (e) {
        /* Close the parent's sockets in this process only; the engine's
         * memory is left as it is (its thread is gone), so stale leases
         * still point at valid memory. */
        for (size_t i = 0; i < e->fds.n; i++)
            close(e->fds.v[i]);
        e->fds.n = 0;
        e->wakers.n = 0;
        close(e->wake_fd);
        e->wake_fd = -1;
        e->tfd_eng = e->tfd_drv = -1;   /* closed with e->fds (mu is held here) */
        e->shutdown = 1;
        pthread_mutex_unlock(&e->ev_mu);
        pthread_mutex_unlock(&e->mu);
        pthread_mutex_unlock(&e->run_mu);
        g_engine = NULL;
    }
    atomic_fetch_add(&g_fork_gen, 1);
    pthread_mutex_unlock(&g_mu);
}

int rl_engine_add_waker(int fd, rl_error *err)
{
    rl_engine *e = rl_engine_get(err);
    if (!e)
        return -1;
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    if (rl_fdvec_add(&e->wakers, fd) < 0)
        rc = rl_seterr(err, RL_ENOMEM, "out of memory while registering an event loop");
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void rl_engine_remove_waker(int fd)
{
    rl_engine *e = rl_engine_current();
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    rl_fdvec_remove(&e->wakers, fd);
    pthread_mutex_unlock(&e->mu);
}

/* ---- commands ---- */

static int post(rl_engine *e, int op, rl_lease *l, rl_error *err, int wake_engine);

int rl_engine_post(rl_engine *e, int op, rl_lease *l, rl_error *err)
{
    return post(e, op, l, err, 1);
}

int rl_engine_post_quiet(rl_engine *e, int op, rl_lease *l, rl_error *err)
{
    return post(e, op, l, err, 0);
}

static int post(rl_engine *e, int op, rl_lease *l, rl_error *err, int wake_engine)
{
    rl_cmd *c = malloc(sizeof *c);
    if (!c)
        return rl_seterr(err, RL_ENOMEM, "out of memory");
    c->next = NULL;
    c->op = op;
    c->lease = l;
    if (l)
        atomic_fetch_add(&l->refs, 1);
    pthread_mutex_lock(&e->mu);
    if (e->quit || (e->shutdown && op == RL_CMD_START)) {
        pthread_mutex_unlock(&e->mu);
        if (l)
            atomic_fetch_sub(&l->refs, 1);   /* never the last: the caller holds one */
        free(c);
        return rl_seterr(err, RL_ESTATE, "the redlease engine has shut down (interpreter exit or fork)");
    }
    if (op == RL_CMD_STOP)
        l->stops_posted++;
    else if (op == RL_CMD_RESIGN)
        l->resigns_posted++;
    if (e->cmd_tail)
        e->cmd_tail->next = c;
    else
        e->cmd_head = c;
    e->cmd_tail = c;
    pthread_mutex_unlock(&e->mu);
    if (wake_engine)
        rl_engine_kick(e);
    return 0;
}

/* ---- creation and shutdown ---- */

static rl_engine *engine_new(rl_error *err)
{
    rl_engine *e = calloc(1, sizeof *e);
    if (!e) {
        rl_seterr(err, RL_ENOMEM, "out of memory");
        return NULL;
    }
    e->tfd_eng = e->tfd_drv = -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->ev_mu, NULL);
    pthread_mutex_init(&e->run_mu, NULL);
    pthread_cond_init(&e->cv, &ca);
    pthread_cond_init(&e->ev_cv, &ca);
    pthread_condattr_destroy(&ca);
    e->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->wake_fd < 0) {
        rl_seterr(err, RL_ESYS, "cannot create eventfd: %s", strerror(errno));
        goto fail;
    }
    rl_loop_init(e);
    if (getrandom(&e->rng, sizeof e->rng, 0) != (ssize_t)sizeof e->rng || !e->rng)
        e->rng = (uint64_t)rl_now_us() | 1;
    /* Signals go to the Python main thread, never to the engine. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&e->thread, NULL, rl_engine_main, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        rl_seterr(err, RL_ESYS, "cannot start the redlease engine thread: %s", strerror(rc));
        goto fail;
    }
    e->thread_started = 1;
    return e;
fail:
    if (e->wake_fd >= 0)
        close(e->wake_fd);
    rl_loop_close(e);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->ev_mu);
    pthread_mutex_destroy(&e->run_mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->ev_cv);
    free(e);
    return NULL;
}

rl_engine *rl_engine_get(rl_error *err)
{
    pthread_mutex_lock(&g_mu);
    if (!g_atfork_installed) {
        if (pthread_atfork(atfork_prepare, atfork_parent, atfork_child) == 0)
            g_atfork_installed = 1;
    }
    if (!g_engine)
        g_engine = engine_new(err);
    rl_engine *e = g_engine;
    pthread_mutex_unlock(&g_mu);
    return e;
}

int rl_engine_shutdown(int64_t timeout_us)
{
    rl_engine *e = rl_engine_current();
    if (!e || !e->thread_started)
        return 0;
    pthread_mutex_lock(&e->mu);
    int already = e->shutdown;
    e->shutdown = 1;
    pthread_mutex_unlock(&e->mu);
    if (!already && rl_engine_post(e, RL_CMD_SHUTDOWN, NULL, NULL) < 0)
        return -1;
    int64_t until = rl_now_us() + timeout_us;
    pthread_mutex_lock(&e->mu);
    while (!e->quit) {
        int64_t left = until - rl_now_us();
        if (left <= 0)
            break;
        rl_engine_timedwait(e, left);
    }
    int done = e->quit;
    pthread_mutex_unlock(&e->mu);
    if (done && e->thread_started) {
        pthread_join(e->thread, NULL);
        e->thread_started = 0;
    }
    return done ? 0 : -1;
}

void rl_engine_destroy(void)
{
    pthread_mutex_lock(&g_mu);
    rl_engine *e = g_engine;
    if (!e || e->thread_started) {
        pthread_mutex_unlock(&g_mu);
        return;
    }
    g_engine = NULL;
    pthread_mutex_unlock(&g_mu);
    rl_cmd *c = e->cmd_head;
    while (c) {
        rl_cmd *n = c->next;
        free(c);
        c = n;
    }
    rl_events_clear(e);
    rl_heap_free(&e->timers);
    free(e->drv_pfd);
    free(e->drv_conn);
    rl_loop_close(e);          /* forgets its timer fds: before the fd table goes */
    free(e->fds.v);
    free(e->wakers.v);
    close(e->wake_fd);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->ev_mu);
    pthread_mutex_destroy(&e->run_mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->ev_cv);
    free(e);
}
