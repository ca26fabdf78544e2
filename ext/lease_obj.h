/* The LeaseBase object, shared by lease_type.c (the type) and
 * lease_lock.c (the Lock methods). */
#ifndef RL_LEASE_OBJ_H
#define RL_LEASE_OBJ_H

#include "binding.h"

typedef struct {
    PyObject_HEAD
    rl_lease *lease;
    PyObject *key;        /* the key as given (str or bytes) */
    PyObject *node_id;    /* str */
    PyObject *weakrefs;
} LeaseObject;

rl_modstate *rl_lease_state_of(PyObject *self);
int rl_lease_ready(LeaseObject *self);            /* -1 with an exception if not initialised */
int rl_timeout_arg(PyObject *o, double *out);     /* None/inf: -1; else >= 0 */

PyObject *Lease_lock_acquire(LeaseObject *self, PyObject *arg);
PyObject *Lease_lock_release(LeaseObject *self, PyObject *arg);
PyObject *Lease_lock_begin(LeaseObject *self, PyObject *arg);
PyObject *rl_lease_get_rel_answer(LeaseObject *self, void *c);

#endif
