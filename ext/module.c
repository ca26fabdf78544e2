/* Module redlease._redlease: state, exceptions, engine-wide functions, and
 * multi-phase initialisation. */
#include "binding.h"

#include <math.h>

#include "core/rl_clock.h"
#include "core/rl_engine.h"
#include "core/rl_scripts.h"
#include "core/rl_types.h"

/* ---- module functions ---- */

static PyObject *next_event(PyObject *m, PyObject *arg)
{
    (void)m;
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    if (!(timeout >= 0) || timeout > 3600)
        timeout = 0.25;
    rl_event ev;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = rl_engine_next_event(&ev, rl_seconds_to_us(timeout));
    if (rc < 0) {
        struct timespec ts = {(time_t)timeout, (long)((timeout - (double)(time_t)timeout) * 1e9)};
        nanosleep(&ts, NULL);
    }
    Py_END_ALLOW_THREADS
    if (rc <= 0)
        Py_RETURN_NONE;
    PyObject *text;
    if (ev.text)
        text = PyUnicode_DecodeUTF8(ev.text, (Py_ssize_t)ev.textlen, "surrogateescape");
    else
        text = Py_NewRef(Py_None);
    free(ev.text);
    if (!text)
        return NULL;
    return Py_BuildValue("(KiLN)", (unsigned long long)ev.lease_id, ev.kind, (long long)ev.token, text);
}

static PyObject *shutdown(PyObject *m, PyObject *arg)
{
    (void)m;
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    /* the engine adds it to now: at most an hour, never negative */
    rc = rl_engine_shutdown(timeout > 0 ? (timeout < 3600 ? rl_seconds_to_us(timeout) : 3600000000) : 0);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(rc == 0);
}

static PyObject *engine_stats(PyObject *m, PyObject *unused)
{
    (void)m;
    (void)unused;
    rl_engine_info info;
    rl_engine_get_info(&info);
    return Py_BuildValue("{s:i,s:K,s:K,s:K,s:K,s:K,s:K,s:K}",
                         "threads", info.running ? 1 : 0,
                         "commands", (unsigned long long)info.commands,
                         "reconnects", (unsigned long long)info.reconnects,
                         "connections", (unsigned long long)info.open_connections,
                         "connections_opened", (unsigned long long)info.connections,
                         "leases", (unsigned long long)info.leases,
                         "endpoints", (unsigned long long)info.endpoints,
                         "dropped_events", (unsigned long long)info.dropped_events);
}

static PyObject *set_async_exc(PyObject *m, PyObject *args)
{
    unsigned long tid;
    PyObject *exc;
    (void)m;
    if (!PyArg_ParseTuple(args, "kO:_set_async_exc", &tid, &exc))
        return NULL;
    int n = PyThreadState_SetAsyncExc(tid, exc == Py_None ? NULL : exc);
    return PyLong_FromLong(n);
}

static PyObject *add_waker(PyObject *m, PyObject *arg)
{
    int fd = (int)PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    rl_error err = {0};
    if (rl_waker_add(fd, &err) < 0)
        return rl_raise(PyModule_GetState(m), &err);
    Py_RETURN_NONE;
}

static PyObject *remove_waker(PyObject *m, PyObject *arg)
{
    (void)m;
    int fd = (int)PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    rl_waker_remove(fd);
    Py_RETURN_NONE;
}

/* _term_node_id(value: bytes) -> bytes: the node_id part of a value stored
 * in a lease key ("<node_id>#<16 hex>"); other values unchanged. */
static PyObject *term_node_id(PyObject *m, PyObject *arg)
{
    (void)m;
    char *buf;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &buf, &n) < 0)
        return NULL;
    return PyBytes_FromStringAndSize(buf, (Py_ssize_t)rl_term_idlen(buf, (size_t)n));
}

static PyMethodDef module_methods[] = {
    {"_term_node_id", term_node_id, METH_O,
     "_term_node_id(value: bytes) -> bytes: the node_id part of a stored lease value"},
    {"_add_waker", add_waker, METH_O, "_add_waker(fd): write 8 bytes to fd on every state change"},
    {"_remove_waker", remove_waker, METH_O, "_remove_waker(fd)"},
    {"_next_event", next_event, METH_O,
     "_next_event(timeout) -> (lease_id, kind, token, text) or None"},
    {"_shutdown", shutdown, METH_O,
     "_shutdown(timeout) -> bool: stop every lease (releasing held keys) and the engine thread"},
    {"engine_stats", engine_stats, METH_NOARGS,
     "engine_stats() -> dict: threads, commands, reconnects, connections, leases, endpoints"},
    {"_set_async_exc", set_async_exc, METH_VARARGS,
     "_set_async_exc(thread_id, exc_type or None) -> int"},
    {NULL, NULL, 0, NULL},
};

/* ---- exceptions and constants ---- */

static PyObject *new_exc(PyObject *m, const char *name, const char *doc, PyObject *bases)
{
    char full[96];
    snprintf(full, sizeof full, "redlease.%s", name);
    PyObject *e = PyErr_NewExceptionWithDoc(full, doc, bases, NULL);
    if (!e)
        return NULL;
    if (PyModule_AddObjectRef(m, name, e) < 0) {
        Py_DECREF(e);
        return NULL;
    }
    return e;
}

static int add_scripts(PyObject *m)
{
    PyObject *d = PyDict_New();
    if (!d)
        return -1;
    for (int i = 0; i < RL_SCRIPT_COUNT; i++) {
        PyObject *s = PyUnicode_FromString(rl_script_text[i]);
        if (!s || PyDict_SetItemString(d, rl_script_name[i], s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(d);
            return -1;
        }
        Py_DECREF(s);
    }
    int rc = PyModule_AddObjectRef(m, "SCRIPTS", d);
    Py_DECREF(d);
    return rc;
}

/* The engine, its thread, its event queue and its atexit hook are per
 * process and deliver to the main interpreter only: a module object in a
 * subinterpreter would take the main interpreter's events and shut the
 * engine down for everyone when that interpreter is destroyed.  On 3.12+
 * the Py_mod_multiple_interpreters slot below refuses isolated
 * subinterpreters before this runs; legacy ones (Py_NewInterpreter(),
 * _testcapi.run_in_subinterp) are let through by CPython on every version,
 * so this check is the one that always holds. */
static int main_interpreter_only(void)
{
    if (PyInterpreterState_Get() == PyInterpreterState_Main())
        return 0;
    PyErr_SetString(PyExc_ImportError,
                    "redlease supports only the main interpreter: redlease._redlease cannot be "
                    "imported in a subinterpreter (its engine thread serves one interpreter "
                    "per process)");
    return -1;
}

static int module_exec(PyObject *m)
{
    if (main_interpreter_only() < 0)
        return -1;
    rl_modstate *st = PyModule_GetState(m);
    PyObject *bases = NULL;

    st->RedleaseError = new_exc(m, "RedleaseError", "Base class of redlease's errors.", NULL);
    if (!st->RedleaseError)
        return -1;
    st->LeadershipLost = new_exc(m, "LeadershipLost",
                                 "Leadership (or a lock's lease) was lost while it was needed.",
                                 st->RedleaseError);
    bases = PyTuple_Pack(2, st->RedleaseError, PyExc_ConnectionError);
    if (!bases)
        return -1;
    st->ConnectionError = new_exc(m, "ConnectionError", "Redis cannot be reached.", bases);
    Py_DECREF(bases);
    if (!st->LeadershipLost || !st->ConnectionError)
        return -1;
    st->AuthenticationError = new_exc(m, "AuthenticationError",
                                      "Redis refused the user name or password.", st->ConnectionError);
    st->RedisError = new_exc(m, "RedisError", "Redis answered with an error.", st->RedleaseError);
    /* Like threading.Lock's "release unlocked lock": a RuntimeError too. */
    bases = PyTuple_Pack(2, st->RedleaseError, PyExc_RuntimeError);
    if (!bases)
        return -1;
    st->LockNotOwnedError = new_exc(m, "LockNotOwnedError",
                                    "The lock is not held by this object (and this thread).", bases);
    Py_DECREF(bases);
    if (!st->AuthenticationError || !st->RedisError || !st->LockNotOwnedError)
        return -1;
    /* Not a ConnectionError: retrying does not fix an ACL denial. */
    st->PermissionError = new_exc(m, "PermissionError",
                                  "Redis denied a command, key or channel to this user (NOPERM, ACL).",
                                  st->RedisError);
    if (!st->PermissionError)
        return -1;
    /* A ConnectionError (what retry loops catch), but one that waiting does
     * not fix: a certificate, host name or protocol problem. */
    st->TLSError = new_exc(m, "TLSError",
                           "The TLS handshake with Redis was refused (certificate, host name, "
                           "protocol); a ConnectionError.", st->ConnectionError);
    if (!st->TLSError)
        return -1;

    int major, minor, patch;
    rl_hiredis_version(&major, &minor, &patch);
    PyObject *v = Py_BuildValue("(iii)", major, minor, patch);
    if (!v || PyModule_AddObjectRef(m, "hiredis_version", v) < 0) {
        Py_XDECREF(v);
        return -1;
    }
    Py_DECREF(v);
    if (PyModule_AddIntConstant(m, "HAS_TLS", rl_has_tls()) < 0 ||
        PyModule_AddIntConstant(m, "LEASE_STATE_BYTES", (long)rl_lease_struct_size()) < 0 ||
        PyModule_AddIntConstant(m, "EV_ELECTED", RL_EV_ELECTED) < 0 ||
        PyModule_AddIntConstant(m, "EV_REVOKED", RL_EV_REVOKED) < 0 ||
        PyModule_AddIntConstant(m, "EV_LEADER", RL_EV_LEADER) < 0 ||
        PyModule_AddIntConstant(m, "EV_ERROR", RL_EV_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "EV_RECOVERED", RL_EV_RECOVERED) < 0 ||
        PyModule_AddIntConstant(m, "PHASE_IDLE", RL_P_IDLE) < 0 ||
        PyModule_AddIntConstant(m, "PHASE_RUNNING", RL_P_RUNNING) < 0 ||
        PyModule_AddIntConstant(m, "PHASE_STOPPING", RL_P_STOPPING) < 0 ||
        PyModule_AddIntConstant(m, "PHASE_STOPPED", RL_P_STOPPED) < 0 ||
        PyModule_AddIntConstant(m, "MODE_NODE", RL_MODE_NODE) < 0 ||
        PyModule_AddIntConstant(m, "MODE_LOCK", RL_MODE_LOCK) < 0 ||
        PyModule_AddIntConstant(m, "MODE_WATCH", RL_MODE_WATCH) < 0 ||
        PyModule_AddIntConstant(m, "WAIT_LEADER", RL_WAIT_LEADER) < 0 ||
        PyModule_AddIntConstant(m, "WAIT_STOPPED", RL_WAIT_STOPPED) < 0 ||
        PyModule_AddIntConstant(m, "WAIT_LOCK", RL_WAIT_LOCK) < 0 ||
        PyModule_AddIntConstant(m, "WAIT_RELEASED", RL_WAIT_RELEASED) < 0 ||
        PyModule_AddIntConstant(m, "WATCH_INITIAL", RL_WATCH_INITIAL) < 0 ||
        PyModule_AddIntConstant(m, "WATCH_ELECTED", RL_WATCH_ELECTED) < 0 ||
        PyModule_AddIntConstant(m, "WATCH_RELEASED", RL_WATCH_RELEASED) < 0 ||
        PyModule_AddIntConstant(m, "WATCH_EXPIRED", RL_WATCH_EXPIRED) < 0)
        return -1;
    if (add_scripts(m) < 0)
        return -1;
    return rl_lease_type_init(m, st);
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    rl_modstate *st = PyModule_GetState(m);
    Py_VISIT(st->LeaseBase_type);
    Py_VISIT(st->RedleaseError);
    Py_VISIT(st->LeadershipLost);
    Py_VISIT(st->ConnectionError);
    Py_VISIT(st->AuthenticationError);
    Py_VISIT(st->RedisError);
    Py_VISIT(st->PermissionError);
    Py_VISIT(st->TLSError);
    Py_VISIT(st->LockNotOwnedError);
    return 0;
}

static int module_clear(PyObject *m)
{
    rl_modstate *st = PyModule_GetState(m);
    Py_CLEAR(st->LeaseBase_type);
    Py_CLEAR(st->RedleaseError);
    Py_CLEAR(st->LeadershipLost);
    Py_CLEAR(st->ConnectionError);
    Py_CLEAR(st->AuthenticationError);
    Py_CLEAR(st->RedisError);
    Py_CLEAR(st->PermissionError);
    Py_CLEAR(st->TLSError);
    Py_CLEAR(st->LockNotOwnedError);
    return 0;
}

static void module_free(void *m)
{
    module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters   /* 3.12+ */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

PyModuleDef rl_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "redlease._redlease",
    .m_doc = "C core of redlease: one engine thread keeps every lease on Redis.",
    .m_size = sizeof(rl_modstate),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__redlease(void)
{
    return PyModuleDef_Init(&rl_module_def);
}
