/* Type redlease._redlease.LeaseBase: one lease kept by the engine.  The
 * Python classes DistributionNode (and Lock) subclass it and add callbacks
 * and context managers; everything here is argument parsing, conversion,
 * GIL handling and exceptions. */
#include "binding.h"

#include <math.h>

#include <structmember.h>

#include "core/rl_types.h"

#include "lease_obj.h"

rl_modstate *rl_lease_state_of(PyObject *self)
{
    return rl_state_from_type(Py_TYPE(self));
}

int rl_lease_ready(LeaseObject *self)
{
    if (self->lease)
        return 0;
    rl_modstate *st = rl_lease_state_of((PyObject *)self);
    if (st)
        PyErr_SetString(st->RedleaseError, "object is not initialised (was __init__ called?)");
    return -1;
}

/* A number of seconds: int or float, not bool or str. */
static int seconds_arg(PyObject *o, const char *name, double *out, int allow_none)
{
    if (o == Py_None && allow_none) {
        *out = 0.0;
        return 0;
    }
    if (PyBool_Check(o) || !(PyFloat_Check(o) || PyLong_Check(o))) {
        PyErr_Format(PyExc_TypeError, "%s must be a number of seconds (int or float), not %.100s",
                     name, Py_TYPE(o)->tp_name);
        return -1;
    }
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    if (allow_none && !(v > 0)) {
        /* 0 or negative would otherwise mean "default" to the core. */
        PyErr_Format(PyExc_ValueError, "%s must be > 0, got %R", name, o);
        return -1;
    }
    *out = v;
    return 0;
}

int rl_timeout_arg(PyObject *o, double *out)
{
    if (o == NULL || o == Py_None) {
        *out = -1.0;
        return 0;
    }
    if (PyBool_Check(o) || !(PyFloat_Check(o) || PyLong_Check(o))) {
        PyErr_Format(PyExc_TypeError, "timeout must be None or a number of seconds, not %.100s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(v) || v < 0) {
        PyErr_Format(PyExc_ValueError, "timeout must be None or >= 0, got %R", o);
        return -1;
    }
    *out = isinf(v) ? -1.0 : v;
    return 0;
}

/* min_replicas: an int from 0 to RL_MAX_MIN_REPLICAS. */
static int min_replicas_arg(PyObject *o, int *out)
{
    if (PyBool_Check(o) || !PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "min_replicas must be an int (how many replicas must acknowledge "
                     "each acquire and renew; 0 for none), not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v < 0 || v > RL_MAX_MIN_REPLICAS) {
        PyErr_Format(PyExc_ValueError, "min_replicas must be from 0 to %d (how many replicas must "
                     "acknowledge each acquire and renew; 0 for none), got %R", RL_MAX_MIN_REPLICAS, o);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int Lease_init(LeaseObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"url", "key", "node_id", "ttl", "renew_interval", "retry_interval",
                             "connect_timeout", "command_timeout", "_mode", "_auto_renew",
                             "min_replicas", NULL};
    PyObject *url, *key, *node_id = Py_None, *ttl_o = NULL, *renew_o = Py_None, *retry_o = Py_None;
    PyObject *cto_o = NULL, *cmd_o = NULL, *minrep_o = NULL;
    int mode = RL_MODE_NODE, auto_renew = 1;
    rl_modstate *st = rl_lease_state_of((PyObject *)self);
    if (!st)
        return -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$OOOOOOipO:LeaseBase", kwlist, &url, &key,
                                     &node_id, &ttl_o, &renew_o, &retry_o, &cto_o, &cmd_o,
                                     &mode, &auto_renew, &minrep_o))
        return -1;
    if (self->lease) {
        PyErr_SetString(st->RedleaseError, "__init__ called twice on the same object");
        return -1;
    }
    rl_lease_opts o = {.ttl = 10.0, .connect_timeout = 1.0, .command_timeout = 1.0,
                       .mode = mode, .auto_renew = auto_renew};
    if (!PyUnicode_Check(url)) {
        PyErr_Format(PyExc_TypeError, "url must be a str, not %.100s", Py_TYPE(url)->tp_name);
        return -1;
    }
    Py_ssize_t n;
    o.url = PyUnicode_AsUTF8AndSize(url, &n);
    if (!o.url)
        return -1;
    o.url_len = (size_t)n;

    /* keybytes: what goes to Redis; stored: what .key returns (str, or bytes). */
    PyObject *keybytes, *stored;
    if (PyUnicode_Check(key)) {
        keybytes = PyUnicode_AsEncodedString(key, "utf-8", "strict");
        stored = key;
    } else if (PyBytes_Check(key)) {
        keybytes = Py_NewRef(key);
        stored = key;
    } else if (PyByteArray_Check(key) || PyMemoryView_Check(key)) {
        keybytes = PyBytes_FromObject(key);
        stored = keybytes;
    } else {
        PyErr_Format(PyExc_TypeError, "key must be str or bytes, not %.100s", Py_TYPE(key)->tp_name);
        return -1;
    }
    if (!keybytes)
        return -1;
    o.key = PyBytes_AS_STRING(keybytes);
    o.keylen = (size_t)PyBytes_GET_SIZE(keybytes);

    PyObject *id_str = NULL;
    if (node_id != Py_None) {
        if (!PyUnicode_Check(node_id)) {
            PyErr_Format(PyExc_TypeError, "node_id must be a str, not %.100s", Py_TYPE(node_id)->tp_name);
            goto fail;
        }
        o.node_id = PyUnicode_AsUTF8AndSize(node_id, &n);
        if (!o.node_id)
            goto fail;
        o.idlen = (size_t)n;
    }
    if ((ttl_o && seconds_arg(ttl_o, "ttl", &o.ttl, 0) < 0) ||
        seconds_arg(renew_o, "renew_interval", &o.renew_interval, 1) < 0 ||
        seconds_arg(retry_o, "retry_interval", &o.retry_interval, 1) < 0 ||
        (cto_o && seconds_arg(cto_o, "connect_timeout", &o.connect_timeout, 0) < 0) ||
        (cmd_o && seconds_arg(cmd_o, "command_timeout", &o.command_timeout, 0) < 0) ||
        (minrep_o && min_replicas_arg(minrep_o, &o.min_replicas) < 0))
        goto fail;

    rl_error err = {0};
    rl_lease *l;
    Py_BEGIN_ALLOW_THREADS   /* name resolution may block */
    l = rl_lease_new(&o, &err);
    Py_END_ALLOW_THREADS
    if (!l) {
        rl_raise(st, &err);
        goto fail;
    }
    size_t idlen;
    const char *id = rl_lease_node_id(l, &idlen);
    id_str = PyUnicode_DecodeUTF8(id, (Py_ssize_t)idlen, "surrogateescape");
    if (!id_str) {
        rl_lease_decref(l);
        goto fail;
    }
    self->lease = l;
    Py_XSETREF(self->key, Py_NewRef(stored));
    Py_XSETREF(self->node_id, id_str);
    Py_DECREF(keybytes);
    return 0;
fail:
    Py_DECREF(keybytes);
    return -1;
}

static int Lease_traverse(LeaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->key);
    Py_VISIT(self->node_id);
    return 0;
}

static int Lease_clear(LeaseObject *self)
{
    Py_CLEAR(self->key);
    Py_CLEAR(self->node_id);
    return 0;
}

static void Lease_dealloc(LeaseObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (self->lease) {
        /* A started lease that is collected stops itself (and releases). */
        rl_lease_stop(self->lease);
        rl_lease_decref(self->lease);
        self->lease = NULL;
    }
    Lease_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---- methods ---- */

static PyObject *Lease_start(LeaseObject *self, PyObject *unused)
{
    (void)unused;
    if (rl_lease_ready(self) < 0)
        return NULL;
    rl_error err = {0};
    if (rl_lease_start(self->lease, &err) < 0)
        return rl_raise(rl_lease_state_of((PyObject *)self), &err);
    Py_RETURN_NONE;
}

static PyObject *Lease_stop(LeaseObject *self, PyObject *unused)
{
    (void)unused;
    if (rl_lease_ready(self) < 0)
        return NULL;
    rl_modstate *st = rl_lease_state_of((PyObject *)self);
    if (!st)
        return NULL;
    rl_lease_stop_quiet(self->lease);
    if (rl_wait(st, self->lease, RL_WAIT_STOPPED, -1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Lease_resign(LeaseObject *self, PyObject *unused)
{
    (void)unused;
    if (rl_lease_ready(self) < 0)
        return NULL;
    if (!rl_lease_is_leader(self->lease))
        Py_RETURN_NONE;
    rl_modstate *st = rl_lease_state_of((PyObject *)self);
    if (!st)
        return NULL;
    rl_lease_resign(self->lease);
    if (rl_wait(st, self->lease, RL_WAIT_RELEASED, -1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Lease_wait(LeaseObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *t = Py_None;
    double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:wait_for_leadership", kwlist, &t) ||
        rl_timeout_arg(t, &timeout) < 0 || rl_lease_ready(self) < 0)
        return NULL;
    rl_modstate *st = rl_lease_state_of((PyObject *)self);
    if (!st)
        return NULL;
    int rc = rl_wait(st, self->lease, RL_WAIT_LEADER, timeout);
    if (rc < 0)
        return NULL;
    return PyBool_FromLong(rc);
}

/* ---- asyncio support: never block, the event loop waits on a waker fd ---- */

/* _poll(what) -> 0 not yet, 1 done, 2 lock attempt over; raises on error */
static PyObject *Lease_poll(LeaseObject *self, PyObject *arg)
{
    int what = (int)PyLong_AsLong(arg);
    if (what == -1 && PyErr_Occurred())
        return NULL;
    if (rl_lease_ready(self) < 0)
        return NULL;
    rl_error err = {0};
    int rc = rl_lease_wait(self->lease, what, 0, &err);
    if (rc < 0)
        return rl_raise(rl_lease_state_of((PyObject *)self), &err);
    return PyLong_FromLong(rc);
}

static PyObject *Lease_stop_nowait(LeaseObject *self, PyObject *unused)
{
    (void)unused;
    if (rl_lease_ready(self) < 0)
        return NULL;
    rl_lease_stop(self->lease);
    Py_RETURN_NONE;
}

static PyObject *Lease_resign_nowait(LeaseObject *self, PyObject *unused)
{
    (void)unused;
    if (rl_lease_ready(self) < 0)
        return NULL;
    if (rl_lease_is_leader(self->lease))
        rl_lease_resign(self->lease);
    Py_RETURN_NONE;
}

typedef struct {
    rl_lease *l;
    uint64_t ticket;
    rl_query q;
} query_wait_arg;

static int query_wait_slice(void *arg, int64_t max_us, rl_error *err)
{
    query_wait_arg *a = arg;
    return rl_lease_query_wait(a->l, a->ticket, max_us, &a->q, err);
}

/* _query(timeout) -> (holder or None, pttl_ms, last_token or None) */
static PyObject *Lease_query(LeaseObject *self, PyObject *arg)
{
    double timeout;
    if (rl_timeout_arg(arg, &timeout) < 0 || rl_lease_ready(self) < 0)
        return NULL;
    rl_modstate *st = rl_lease_state_of((PyObject *)self);
    if (!st)
        return NULL;
    rl_error err = {0};
    query_wait_arg a = {.l = self->lease};
    if (rl_lease_query_post(self->lease, &a.ticket, &err) < 0)
        return rl_raise(st, &err);
    int rc = rl_wait_slices(st, query_wait_slice, &a, timeout);
    if (rc < 0)
        return NULL;
    if (rc == 0) {
        rl_lease_info info;
        rl_lease_get_info(self->lease, &info, 0);
        /* PyErr_Format has no %f (3.12+ raise SystemError): format the number first. */
        char secs[64];
        snprintf(secs, sizeof secs, "%.3f", timeout);
        PyErr_Format(st->ConnectionError, "no answer from Redis within %s s%s%s", secs,
                     info.last_error ? ": " : "", info.last_error ? info.last_error : "");
        rl_lease_info_clear(&info);
        return NULL;
    }
    PyObject *holder = a.q.holder
        ? PyUnicode_DecodeUTF8(a.q.holder, (Py_ssize_t)a.q.holderlen, "surrogateescape")
        : Py_NewRef(Py_None);
    free(a.q.holder);
    if (!holder)
        return NULL;
    PyObject *tok = a.q.token >= 0 ? PyLong_FromLongLong(a.q.token) : Py_NewRef(Py_None);
    if (!tok) {
        Py_DECREF(holder);
        return NULL;
    }
    return Py_BuildValue("(NLN)", holder, a.q.pttl, tok);
}

static PyObject *Lease_info(LeaseObject *self, PyObject *unused)
{
    (void)unused;
    if (rl_lease_ready(self) < 0)
        return NULL;
    rl_lease_info info;
    rl_lease_get_info(self->lease, &info, 1);
    PyObject *r = Py_BuildValue("{s:i,s:K,s:K,s:K,s:K,s:K,s:d,s:d,s:d}",
                                "phase", info.phase,
                                "acquisitions", (unsigned long long)info.acquired,
                                "renewals", (unsigned long long)info.renewals,
                                "renew_failures", (unsigned long long)info.renew_failures,
                                "losses", (unsigned long long)info.losses,
                                "wait_unconfirmed", (unsigned long long)info.unconfirmed,
                                "last_renew_rtt_ms", (double)info.last_rtt_us / 1000.0,
                                "renew_rtt_p50_ms", (double)info.rtt_p50_us / 1000.0,
                                "renew_rtt_p99_ms", (double)info.rtt_p99_us / 1000.0);
    rl_lease_info_clear(&info);
    return r;
}

static PyObject *Lease_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    PyErr_Format(PyExc_TypeError,
                 "cannot pickle %.100s objects: they stand for a live lease held by this process; "
                 "pass the url and key instead and create a new object", Py_TYPE(self)->tp_name);
    return NULL;
}

static PyMethodDef Lease_methods[] = {
    {"start", (PyCFunction)Lease_start, METH_NOARGS,
     "start($self)\n--\n\nBegin campaigning in the background; returns at once."},
    {"stop", (PyCFunction)Lease_stop, METH_NOARGS,
     "stop($self)\n--\n\nStop campaigning, release the lease if held, and return when the engine is "
     "done with this object. Idempotent."},
    {"resign", (PyCFunction)Lease_resign, METH_NOARGS,
     "resign($self)\n--\n\nRelease now if leading; keep campaigning, but give peers retry_interval "
     "to take over first."},
    {"wait_for_leadership", (PyCFunction)(void (*)(void))Lease_wait, METH_VARARGS | METH_KEYWORDS,
     "wait_for_leadership($self, timeout=None)\n--\n\nBlock (GIL released) until this object leads; "
     "False on timeout."},
    {"_lock_acquire", (PyCFunction)Lease_lock_acquire, METH_O, NULL},
    {"_lock_begin", (PyCFunction)Lease_lock_begin, METH_O, NULL},
    {"_lock_release", (PyCFunction)Lease_lock_release, METH_O, NULL},
    {"_poll", (PyCFunction)Lease_poll, METH_O, NULL},
    {"_stop_nowait", (PyCFunction)Lease_stop_nowait, METH_NOARGS, NULL},
    {"_resign_nowait", (PyCFunction)Lease_resign_nowait, METH_NOARGS, NULL},
    {"_query", (PyCFunction)Lease_query, METH_O, NULL},
    {"_info", (PyCFunction)Lease_info, METH_NOARGS, NULL},
    {"__reduce__", Lease_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* ---- properties ---- */

static PyObject *get_is_leader(LeaseObject *self, void *c)
{
    (void)c;
    if (!self->lease)
        Py_RETURN_FALSE;
    return PyBool_FromLong(rl_lease_is_leader(self->lease));
}

static PyObject *get_token(LeaseObject *self, void *c)
{
    (void)c;
    int64_t tok;
    if (!self->lease || !rl_lease_token(self->lease, &tok))
        Py_RETURN_NONE;
    return PyLong_FromLongLong(tok);
}

static PyObject *get_remaining(LeaseObject *self, void *c)
{
    (void)c;
    return PyFloat_FromDouble(self->lease ? rl_lease_remaining(self->lease) : 0.0);
}

static PyObject *get_leader(LeaseObject *self, void *c)
{
    (void)c;
    if (rl_lease_ready(self) < 0)
        return NULL;
    rl_lease_info info;
    rl_lease_get_info(self->lease, &info, 0);
    PyObject *r = info.leader
        ? PyUnicode_DecodeUTF8(info.leader, (Py_ssize_t)info.leaderlen, "surrogateescape")
        : Py_NewRef(Py_None);
    rl_lease_info_clear(&info);
    return r;
}

static PyObject *get_last_error(LeaseObject *self, void *c)
{
    (void)c;
    if (rl_lease_ready(self) < 0)
        return NULL;
    rl_lease_info info;
    rl_lease_get_info(self->lease, &info, 0);
    PyObject *r = info.last_error ? PyUnicode_FromString(info.last_error) : Py_NewRef(Py_None);
    rl_lease_info_clear(&info);
    return r;
}

/* A read-only property of an initialised object. */
#define SIMPLE_GETTER(name, expr)                          \
    static PyObject *name(LeaseObject *self, void *c)      \
    {                                                      \
        (void)c;                                           \
        if (rl_lease_ready(self) < 0)                               \
            return NULL;                                   \
        return expr;                                       \
    }

SIMPLE_GETTER(get_key, Py_NewRef(self->key))
SIMPLE_GETTER(get_node_id, Py_NewRef(self->node_id))
SIMPLE_GETTER(get_ttl, PyFloat_FromDouble(rl_lease_ttl(self->lease)))
SIMPLE_GETTER(get_renew_interval, PyFloat_FromDouble(rl_lease_renew_interval(self->lease)))
SIMPLE_GETTER(get_retry_interval, PyFloat_FromDouble(rl_lease_retry_interval(self->lease)))
SIMPLE_GETTER(get_connect_timeout, PyFloat_FromDouble(rl_lease_connect_timeout(self->lease)))
SIMPLE_GETTER(get_command_timeout, PyFloat_FromDouble(rl_lease_command_timeout(self->lease)))
SIMPLE_GETTER(get_min_replicas, PyLong_FromLong(rl_lease_min_replicas(self->lease)))
SIMPLE_GETTER(get_wait_timeout, PyFloat_FromDouble(rl_lease_wait_timeout(self->lease)))
SIMPLE_GETTER(get_id, PyLong_FromUnsignedLongLong(rl_lease_id(self->lease)))
SIMPLE_GETTER(get_stale, PyBool_FromLong(rl_lease_stale(self->lease)))
SIMPLE_GETTER(get_phase, PyLong_FromLong(rl_lease_phase(self->lease)))

static PyObject *get_url(LeaseObject *self, void *c)
{
    (void)c;
    char buf[512];
    if (rl_lease_ready(self) < 0)
        return NULL;
    rl_lease_url_safe(self->lease, buf, sizeof buf);
    return PyUnicode_DecodeUTF8(buf, (Py_ssize_t)strlen(buf), "replace");
}

static PyGetSetDef Lease_getset[] = {
    {"is_leader", (getter)get_is_leader, NULL,
     "True while this object holds the lease and its local deadline has not passed (no I/O).", NULL},
    {"token", (getter)get_token, NULL, "Fencing token of the current term, or None when not leading.", NULL},
    {"lease_remaining", (getter)get_remaining, NULL,
     "Seconds left before the local deadline; 0.0 when not leading.", NULL},
    {"leader", (getter)get_leader, NULL, "Holder id last seen in Redis, or None.", NULL},
    {"last_error", (getter)get_last_error, NULL, "Latest background error, or None.", NULL},
    {"key", (getter)get_key, NULL, "The Redis key (str or bytes, as given).", NULL},
    {"node_id", (getter)get_node_id, NULL, "The value stored in the key while this object leads.", NULL},
    {"ttl", (getter)get_ttl, NULL, "Lease time to live in seconds.", NULL},
    {"renew_interval", (getter)get_renew_interval, NULL, "Seconds between renewals.", NULL},
    {"retry_interval", (getter)get_retry_interval, NULL, "Longest wait between acquire attempts.", NULL},
    {"url", (getter)get_url, NULL, "The Redis URL with any password masked.", NULL},
    {"connect_timeout", (getter)get_connect_timeout, NULL,
     "Connect timeout in seconds (the URL's socket_connect_timeout wins over the argument).", NULL},
    {"command_timeout", (getter)get_command_timeout, NULL,
     "Command timeout in seconds (the URL's socket_timeout wins over the argument).", NULL},
    {"min_replicas", (getter)get_min_replicas, NULL,
     "Replicas that must acknowledge (WAIT) each acquire and renew before it counts; 0: none.", NULL},
    {"wait_timeout", (getter)get_wait_timeout, NULL,
     "Seconds WAIT waits for the replicas (0.0 when min_replicas is 0).", NULL},
    {"_id", (getter)get_id, NULL, NULL, NULL},
    {"_phase", (getter)get_phase, NULL, NULL, NULL},
    {"_stale", (getter)get_stale, NULL, NULL, NULL},
    {"_rel_answer", (getter)rl_lease_get_rel_answer, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Lease_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(LeaseObject, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Lease_slots[] = {
    {Py_tp_doc, "Base of DistributionNode and Lock: one lease kept by the redlease engine."},
    {Py_tp_init, Lease_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, Lease_dealloc},
    {Py_tp_traverse, Lease_traverse},
    {Py_tp_clear, Lease_clear},
    {Py_tp_methods, Lease_methods},
    {Py_tp_getset, Lease_getset},
    {Py_tp_members, Lease_members},
    {0, NULL},
};

static PyType_Spec Lease_spec = {
    .name = "redlease._redlease.LeaseBase",
    .basicsize = sizeof(LeaseObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Lease_slots,
};

int rl_lease_type_init(PyObject *module, rl_modstate *st)
{
    st->LeaseBase_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Lease_spec, NULL);
    if (!st->LeaseBase_type)
        return -1;
    return PyModule_AddObjectRef(module, "LeaseBase", (PyObject *)st->LeaseBase_type);
}
