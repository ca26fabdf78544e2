/* The Lock methods of LeaseBase: acquire (bounded single attempts,
 * ConnectionError when the server stays out of reach), release (the release
 * script's answer) and the fork check. */
#include "lease_obj.h"

#include <string.h>

#include "core/rl_clock.h"
#include "core/rl_types.h"

/* A lock created before os.fork() is the parent's: say so, never wait on it. */
static int check_fresh(LeaseObject *self, rl_modstate *st)
{
    if (!rl_lease_stale(self->lease))
        return 0;
    PyErr_SetString(st->RedleaseError, "this object was created before os.fork() and belongs to "
                    "the parent process; create a new one in the child");
    return -1;
}

/* A lock's lease that ended (expired, lost, a single attempt over) still
 * runs in the engine: stop it before a new acquire, so that START begins a
 * fresh campaign.  Bounded by the engine (a release reply or the command
 * timeout). */
static void lock_reset(LeaseObject *self)
{
    int phase = rl_lease_phase(self->lease);
    if (phase != RL_P_RUNNING && phase != RL_P_STOPPING)
        return;
    rl_error err = {0};
    rl_lease_stop_quiet(self->lease);
    Py_BEGIN_ALLOW_THREADS
    rl_lease_wait(self->lease, RL_WAIT_STOPPED, 30000000, &err);
    Py_END_ALLOW_THREADS
}

/* The latest error is about reaching the server (not a Redis answer). */
static int conn_error(const char *msg)
{
    static const char *const prefixes[] = {"cannot connect", "cannot resolve host", "connection lost",
                                           "connection closed", "no reply from"};
    for (size_t i = 0; msg && i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(msg, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

typedef struct {
    rl_lease *l;
    int64_t t0, conn_to_us;
    int unreachable;           /* set when the wait gives up on the server */
    char msg[400];
} lock_wait_arg;

/* A blocking acquire without a timeout raises ConnectionError once the
 * server has been out of reach for connect_timeout (README, Errors). */
static int lock_wait_slice(void *arg, int64_t max_us, rl_error *err)
{
    lock_wait_arg *a = arg;
    int rc = rl_lease_wait(a->l, RL_WAIT_LOCK, max_us, err);
    if (rc != 0 || rl_now_us() - a->t0 < a->conn_to_us)
        return rc;
    rl_lease_info info;
    rl_lease_get_info(a->l, &info, 0);
    if (conn_error(info.last_error) && !rl_lease_is_leader(a->l)) {
        a->unreachable = 1;
        snprintf(a->msg, sizeof a->msg, "%s", info.last_error);
    }
    rl_lease_info_clear(&info);
    return a->unreachable ? 2 : 0;
}

/* _lock_acquire(timeout): take the lock's key.  timeout None: wait for as
 * long as it takes (ConnectionError when the server stays out of reach for
 * connect_timeout); 0: one attempt, bounded by connect_timeout +
 * command_timeout.  On failure (or an exception) the campaign is stopped
 * before returning, so a late success is released. */
PyObject *Lease_lock_acquire(LeaseObject *self, PyObject *arg)
{
    double timeout;
    if (rl_timeout_arg(arg, &timeout) < 0 || rl_lease_ready(self) < 0)
        return NULL;
    rl_modstate *st = rl_lease_state_of((PyObject *)self);
    if (!st)
        return NULL;
    int once = timeout == 0.0;
    rl_error err = {0};
    if (check_fresh(self, st) < 0)
        return NULL;
    lock_reset(self);
    if (rl_lease_start_lock(self->lease, once, 1, &err) < 0)
        return rl_raise(st, &err);
    int rc;
    lock_wait_arg a = {.l = self->lease, .t0 = rl_now_us(), .conn_to_us = INT64_MAX};
    if (once) {
        double bound = (double)(self->lease->conn_to_us + self->lease->cmd_to_us) / 1e6 + 0.05;
        rc = rl_wait(st, self->lease, RL_WAIT_LOCK, bound);
        if (rc == 0) {
            a.unreachable = 1;
            char secs[64];
            snprintf(secs, sizeof secs, "%.3f", bound);
            snprintf(a.msg, sizeof a.msg, "no answer from Redis within %s s (connect_timeout + "
                     "command_timeout)", secs);
        }
    } else {
        if (timeout < 0)
            a.conn_to_us = self->lease->conn_to_us;
        rc = rl_wait_slices(st, lock_wait_slice, &a, timeout);
    }
    if (rc == 1)
        Py_RETURN_TRUE;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    rl_lease_stop_quiet(self->lease);
    Py_BEGIN_ALLOW_THREADS
    /* Bounded by the engine: a release reply or the command timeout. */
    rl_lease_wait(self->lease, RL_WAIT_STOPPED, 30000000, &err);
    Py_END_ALLOW_THREADS
    PyErr_Restore(type, value, tb);
    if (rc < 0)
        return NULL;
    if (a.unreachable) {
        PyErr_SetString(st->ConnectionError, a.msg);
        return NULL;
    }
    Py_RETURN_FALSE;
}

/* _lock_release(blocking) -> the release script's answer: 1 Redis held our term and
 * deleted it, 2 Redis no longer held it, 3 no answer, 0 no release was sent
 * (the lease had ended before).  Stops the lease and waits until the engine
 * is done with it. */
PyObject *Lease_lock_release(LeaseObject *self, PyObject *arg)
{
    int blocking = PyObject_IsTrue(arg);
    if (blocking < 0 || rl_lease_ready(self) < 0)
        return NULL;
    rl_modstate *st = rl_lease_state_of((PyObject *)self);
    if (!st)
        return NULL;
    if (check_fresh(self, st) < 0)
        return NULL;
    rl_engine *e = atomic_load(&self->lease->eng);
    if (!e)
        return PyLong_FromLong(0);
    pthread_mutex_lock(&e->mu);
    self->lease->rel_answer = 0;
    pthread_mutex_unlock(&e->mu);
    if (!blocking) {       /* asyncio: the caller polls WAIT_STOPPED, then _rel_answer */
        rl_lease_stop(self->lease);
        Py_RETURN_NONE;
    }
    rl_lease_stop_quiet(self->lease);
    if (rl_wait(st, self->lease, RL_WAIT_STOPPED, -1) < 0)
        return NULL;
    pthread_mutex_lock(&e->mu);
    int answer = self->lease->rel_answer;
    pthread_mutex_unlock(&e->mu);
    return PyLong_FromLong(answer);
}

PyObject *Lease_lock_begin(LeaseObject *self, PyObject *arg)
{
    int once = PyObject_IsTrue(arg);
    if (once < 0 || rl_lease_ready(self) < 0)
        return NULL;
    rl_error err = {0};
    if (rl_lease_start_lock(self->lease, once, 0, &err) < 0)
        return rl_raise(rl_lease_state_of((PyObject *)self), &err);
    Py_RETURN_NONE;
}

PyObject *rl_lease_get_rel_answer(LeaseObject *self, void *c)
{
    (void)c;
    if (rl_lease_ready(self) < 0)
        return NULL;
    rl_engine *e = atomic_load(&self->lease->eng);
    int answer = 0;
    if (e) {
        pthread_mutex_lock(&e->mu);
        answer = self->lease->rel_answer;
        pthread_mutex_unlock(&e->mu);
    }
    return PyLong_FromLong(answer);
}
