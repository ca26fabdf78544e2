/* Shared by the CPython binding's files: module state and helpers.  The
 * binding only parses arguments, converts values, releases the GIL and
 * raises exceptions; the work is in core/. */
#ifndef RL_BINDING_H
#define RL_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "core/redlease.h"

#if PY_VERSION_HEX < 0x030A0000   /* 3.9 */
static inline PyObject *rl_compat_newref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#define Py_NewRef rl_compat_newref
static inline int PyModule_AddObjectRef(PyObject *m, const char *name, PyObject *v)
{
    Py_INCREF(v);
    if (PyModule_AddObject(m, name, v) < 0) {
        Py_DECREF(v);
        return -1;
    }
    return 0;
}
#endif

typedef struct {
    PyTypeObject *LeaseBase_type;
    PyObject *RedleaseError;
    PyObject *LeadershipLost;
    PyObject *ConnectionError;
    PyObject *AuthenticationError;
    PyObject *RedisError;
    PyObject *PermissionError;
    PyObject *TLSError;
    PyObject *LockNotOwnedError;
} rl_modstate;

extern PyModuleDef rl_module_def;

rl_modstate *rl_state_from_type(PyTypeObject *tp);
/* Raises the Python exception for a core error; returns NULL / -1. */
PyObject *rl_raise(rl_modstate *st, const rl_error *err);

/* Waits (GIL released, in slices that let Ctrl-C through) until the lease
 * reaches `what`.  timeout < 0: no limit.  1 done, 0 timed out, -1 raised,
 * 2 (RL_WAIT_LOCK) a single attempt ended without the lock. */
int rl_wait(rl_modstate *st, rl_lease *l, int what, double timeout);

/* The loop behind rl_wait: calls fn(arg, max_us, err) with the GIL released
 * in slices of at most 50 ms, checking for signals between them, until it
 * returns non-zero or timeout (< 0: none) passes.  Same results as rl_wait. */
typedef int (*rl_slice_fn)(void *arg, int64_t max_us, rl_error *err);
int rl_wait_slices(rl_modstate *st, rl_slice_fn fn, void *arg, double timeout);
/* Seconds (< 0: no limit) to microseconds, saturating at INT64_MAX (no limit). */
int64_t rl_seconds_to_us(double seconds);

int rl_lease_type_init(PyObject *module, rl_modstate *st);

#endif
