/* The engine loop: run commands and due timers, flush writes, poll the
 * sockets.  Normally the engine thread runs it.  A thread that is blocked in
 * a wait anyway (GIL released) may run turns itself while the engine thread
 * sleeps in ppoll: its reply then wakes it straight from the socket, with no
 * hand-off between threads -- the difference between one and three wake-ups
 * per request on a fast network. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "rl_clock.h"
#include "rl_services.h"
#include "rl_conn.h"
#include "rl_endpoint.h"
#include "rl_engine.h"

#define RL_DRAIN_MAX_US 3000000
#define RL_MAX_POLL_US 1000000

static void run_timers(rl_engine *e, int64_t now)
{
    rl_timer *t;
    while ((t = rl_heap_peek(&e->timers)) && t->when <= now) {
        rl_heap_cancel(&e->timers, t);
        t->fn(t, now);
    }
}

/* Commands queued by a turn go out at once instead of after another poll. */
static void flush_writes(rl_engine *e)
{
    for (rl_endpoint *ep = e->endpoints; ep; ep = ep->next)
        for (size_t i = 0, n = rl_endpoint_nconns(ep); i < n; i++)
            rl_conn_flush(rl_endpoint_conn(ep, i));
}

/* Runs the commands API threads posted, in queue order. */
void rl_engine_run_commands(rl_engine *e)
{
    pthread_mutex_lock(&e->mu);
    rl_cmd *c = e->cmd_head;
    e->cmd_head = e->cmd_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    while (c) {
        rl_cmd *next = c->next;
        rl_lease *l = c->lease;
        switch (c->op) {
        case RL_CMD_START:
            if (!e->draining) {
                rl_engine_activate(e, l);
                l->ops->start(e, l);
            }
            break;
        case RL_CMD_STOP:
            l->stops_taken++;
            l->ops->stop(l);
            break;
        case RL_CMD_RESIGN:
            l->resigns_taken++;
            l->ops->resign(l);
            break;
        case RL_CMD_QUERY:
            if (!e->draining) {
                rl_engine_activate(e, l);
                l->ops->query(e, l);
            }
            break;
        case RL_CMD_SHUTDOWN:
            e->draining = 1;
            for (rl_lease *a = e->active, *an; a; a = an) {
                an = a->act_next;
                a->ops->stop(a);
            }
            break;
        }
        if (l)
            l->ops->decref(l);
        free(c);
        c = next;
    }
}


static void turn_work(rl_engine *e)
{
    rl_engine_run_commands(e);
    run_timers(e, rl_now_us());
    flush_writes(e);
}

/* ---- timers that count a freeze ----
 * ppoll's timeout is relative and on CLOCK_MONOTONIC: a process stopped
 * (SIGSTOP) or suspended in the middle resumes the wait with the time it
 * had left, so a lease deadline that passed meanwhile would be acted on
 * that much late.  A timerfd on the engine's clock armed at the absolute
 * time of the next timer is in every poll set, and fires at once then. */

void rl_loop_init(rl_engine *e)
{
    int *fds[2] = {&e->tfd_eng, &e->tfd_drv};
    for (int i = 0; i < 2; i++) {
        *fds[i] = timerfd_create(RL_CLOCK, TFD_NONBLOCK | TFD_CLOEXEC);
        /* On failure (-1) poll ignores the entry: relative timeouts only. */
        if (*fds[i] >= 0)
            rl_engine_track_fd(e, *fds[i]);    /* closed in a fork child */
    }
}

void rl_loop_close(rl_engine *e)
{
    int *fds[2] = {&e->tfd_eng, &e->tfd_drv};
    for (int i = 0; i < 2; i++) {
        if (*fds[i] >= 0) {
            rl_engine_forget_fd(e, *fds[i]);
            close(*fds[i]);
            *fds[i] = -1;
        }
    }
}

/* Arms tfd to fire at `when` (RL_CLOCK, µs); a time already past fires at once. */
static void arm_timer(int tfd, int64_t when)
{
    if (tfd < 0)
        return;
    if (when < 1)
        when = 1;    /* all zero would disarm it */
    struct itimerspec its = {.it_value = {(time_t)(when / 1000000), (long)(when % 1000000) * 1000}};
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
        /* cannot happen with a valid fd and time; the relative timeout still holds */
    }
}

/* The poll set starts with these two entries, then the sockets. */
#define POLL_WAKE 0
#define POLL_TIMER 1
#define POLL_FIXED 2

/* Builds the poll set: the wake-up eventfd, the timerfd tfd (-1: none, an
 * entry poll ignores), then every socket hiredis wants polled.  Returns
 * its size (0 on OOM). */
static size_t build_poll(rl_engine *e, int tfd, struct pollfd **pfd, rl_conn ***pconn, size_t *cap)
{
    size_t nconns = 0;
    for (rl_endpoint *ep = e->endpoints; ep; ep = ep->next)
        nconns += rl_endpoint_nconns(ep);
    if (nconns + POLL_FIXED > *cap) {
        size_t ncap = nconns + 16;
        struct pollfd *np = realloc(*pfd, ncap * sizeof *np);
        if (np)
            *pfd = np;
        rl_conn **nc = realloc(*pconn, ncap * sizeof *nc);
        if (nc)
            *pconn = nc;
        if (!np || !nc)
            return 0;
        *cap = ncap;
    }
    size_t n = 0;
    (*pfd)[n].fd = e->wake_fd;
    (*pfd)[n].events = POLLIN;
    (*pconn)[n++] = NULL;
    (*pfd)[n].fd = tfd;
    (*pfd)[n].events = POLLIN;
    (*pfd)[n].revents = 0;
    (*pconn)[n++] = NULL;
    for (rl_endpoint *ep = e->endpoints; ep; ep = ep->next) {
        for (size_t i = 0, k = rl_endpoint_nconns(ep); i < k; i++) {
            rl_conn *c = rl_endpoint_conn(ep, i);
            if (c->fd >= 0 && c->events) {
                (*pfd)[n].fd = c->fd;
                (*pfd)[n].events = c->events;
                (*pconn)[n++] = c;
            }
        }
    }
    return n;
}

/* What the sockets of a poll set are (the fixed entries do not count). */
static uint64_t poll_sig(const struct pollfd *pfd, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = POLL_FIXED; i < n; i++) {
        h = (h ^ (uint64_t)(unsigned)pfd[i].fd) * 1099511628211ULL;
        h = (h ^ (uint64_t)(unsigned short)pfd[i].events) * 1099511628211ULL;
    }
    return h;
}

/* Empties the wake-up eventfd and the timerfd if poll saw them ready. */
static void clear_fixed(struct pollfd *pfd)
{
    for (int i = POLL_WAKE; i <= POLL_TIMER; i++) {
        if (pfd[i].fd >= 0 && pfd[i].revents) {
            uint64_t v;
            ssize_t r = read(pfd[i].fd, &v, sizeof v);
            (void)r;   /* EAGAIN: already empty */
        }
    }
}

static void handle_ready(struct pollfd *pfd, rl_conn **pconn, size_t n)
{
    clear_fixed(pfd);
    for (size_t i = POLL_FIXED; i < n; i++) {
        /* An earlier handler may have closed this connection, or a new
         * socket may have taken its place: check it is still the same. */
        if (pfd[i].revents && pconn[i]->fd == pfd[i].fd)
            rl_conn_handle(pconn[i], pfd[i].revents);
    }
}

static int64_t next_wait(rl_engine *e, int64_t now, int64_t cap)
{
    int64_t wait_us = cap;
    rl_timer *t = rl_heap_peek(&e->timers);
    if (t)
        wait_us = t->when > now ? t->when - now : 0;
    return wait_us < cap ? wait_us : cap;
}

static int do_poll(struct pollfd *pfd, size_t n, int64_t wait_us)
{
    struct timespec ts = {(time_t)(wait_us / 1000000), (long)(wait_us % 1000000) * 1000};
    return ppoll(pfd, n, &ts, NULL);
}

/* While API threads are driving (a burst of acquire/release calls), the
 * engine thread stays out of their way: it neither polls the sockets they
 * poll nor queues on run_mu, so it is not woken once per request.  It keeps
 * an eye on the wake-up fd (commands from other threads) and comes back
 * within RL_PARK_US of the last drive, so timers are at most that late. */
#define RL_PARK_US 5000

static void park(rl_engine *e)
{
    for (;;) {
        int64_t since = rl_now_us() - atomic_load(&e->drive_end_us);
        if (!atomic_load(&e->driving) && since >= RL_PARK_US)
            return;
        struct pollfd w = {.fd = e->wake_fd, .events = POLLIN};
        if (do_poll(&w, 1, RL_PARK_US) > 0)
            return;      /* a command: take the loop back */
    }
}

void *rl_engine_main(void *arg)
{
    rl_engine *e = arg;
    struct pollfd *pfd = NULL;
    rl_conn **pconn = NULL;
    size_t cap = 0;
    int64_t drain_until = 0;

    pthread_mutex_lock(&e->run_mu);
    for (;;) {
        turn_work(e);
        int64_t now = rl_now_us();
        if (e->draining) {
            if (!drain_until)
                drain_until = now + RL_DRAIN_MAX_US;
            if (e->nactive == 0 || now >= drain_until)
                break;
        }
        size_t n = build_poll(e, e->tfd_eng, &pfd, &pconn, &cap);
        int64_t wait_us = next_wait(e, now, RL_MAX_POLL_US);
        if (e->draining && drain_until - now < wait_us)
            wait_us = drain_until > now ? drain_until - now : 0;
        arm_timer(e->tfd_eng, now + wait_us);
        unsigned turns = e->turns;
        e->eng_polling = 1;
        e->eng_poll_until = rl_now_us() + wait_us;
        e->eng_poll_sig = poll_sig(pfd, n);
        pthread_mutex_unlock(&e->run_mu);
        int rc = n ? do_poll(pfd, n, wait_us) : (usleep(1000), 0);
        park(e);
        pthread_mutex_lock(&e->run_mu);
        e->eng_polling = 0;
        if (rc <= 0)
            continue;
        if (turns != e->turns) {
            /* Someone else ran the loop meanwhile: these results may name
             * sockets that are gone.  Poll afresh (level-triggered). */
            clear_fixed(pfd);
            continue;
        }
        handle_ready(pfd, pconn, n);
    }

    /* Drained (or out of time): close every endpoint. */
    while (e->endpoints) {
        rl_endpoint *ep = e->endpoints;
        /* Leases still attached keep their memory; they just lose the endpoint. */
        for (rl_lease *l = ep->leases; l; l = l->ep_next)
            l->ep = NULL;
        ep->leases = NULL;
        rl_endpoint_free(ep);
    }
    free(pfd);
    free(pconn);
    pthread_mutex_lock(&e->mu);
    e->quit = 1;
    rl_engine_notify(e);
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_unlock(&e->run_mu);
    return NULL;
}

/* The engine thread holds run_mu only for short turns: worth a short wait.
 * Another waiting thread may hold it for a whole wait slice: not worth it. */
static int take_run_mu(rl_engine *e)
{
    if (pthread_mutex_trylock(&e->run_mu) == 0)
        return 1;
    if (atomic_load(&e->driving))
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return pthread_mutex_timedlock(&e->run_mu, &ts) == 0;
}

/* After a turn run by another thread: wake the engine thread only if what
 * it sleeps on is out of date -- a new socket or interest, or a timer due
 * before its poll times out.  run_mu held. */
static int engine_needs_wake(rl_engine *e)
{
    if (e->draining)
        return 1;
    if (!e->eng_polling)
        return 0;      /* it is between polls and will look afresh */
    size_t n = build_poll(e, -1, &e->drv_pfd, &e->drv_conn, &e->drv_cap);
    rl_timer *t = rl_heap_peek(&e->timers);
    return !n || poll_sig(e->drv_pfd, n) != e->eng_poll_sig || (t && t->when < e->eng_poll_until);
}

void rl_engine_kick(rl_engine *e)
{
    if (pthread_mutex_trylock(&e->run_mu) != 0) {
        rl_engine_wake(e);   /* whoever runs the loop sees the command */
        return;
    }
    int wake = 1;
    if (!e->draining && !e->quit) {
        atomic_store(&e->driving, 1);
        turn_work(e);
        e->turns++;
        wake = engine_needs_wake(e);
        atomic_store(&e->driving, 0);
    }
    pthread_mutex_unlock(&e->run_mu);
    if (wake)
        rl_engine_wake(e);
}

int rl_engine_drive(rl_engine *e, int (*done)(void *arg), void *arg, int64_t until)
{
    if (!take_run_mu(e))
        return 0;
    if (e->draining || e->quit) {
        pthread_mutex_unlock(&e->run_mu);
        return 0;
    }
    atomic_store(&e->driving, 1);
    for (;;) {
        turn_work(e);
        if (e->draining || done(arg))
            break;
        int64_t now = rl_now_us();
        if (now >= until)
            break;
        size_t n = build_poll(e, e->tfd_drv, &e->drv_pfd, &e->drv_conn, &e->drv_cap);
        if (!n)
            break;
        int64_t wait_us = next_wait(e, now, until - now);
        arm_timer(e->tfd_drv, now + wait_us);
        int rc = do_poll(e->drv_pfd, n, wait_us);
        if (rc < 0 && errno == EINTR)
            break;           /* let the caller look at its signals */
        if (rc > 0)
            handle_ready(e->drv_pfd, e->drv_conn, n);
    }
    e->turns++;
    int wake = engine_needs_wake(e);
    atomic_store(&e->drive_end_us, rl_now_us());
    atomic_store(&e->driving, 0);
    pthread_mutex_unlock(&e->run_mu);
    if (wake)
        rl_engine_wake(e);
    return 1;
}
