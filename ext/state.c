/* The module's state as seen from a type (also a Python subclass of one),
 * and raising the Python exception for a core error. */
#include "binding.h"

rl_modstate *rl_state_from_type(PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *m = PyType_GetModuleByDef(tp, &rl_module_def);
    if (!m)
        return NULL;
    return PyModule_GetState(m);
#else
    PyObject *mro = tp->tp_mro;
    for (Py_ssize_t i = 0; mro && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!(t->tp_flags & Py_TPFLAGS_HEAPTYPE))
            continue;
        PyObject *m = PyType_GetModule(t);
        if (m && PyModule_GetDef(m) == &rl_module_def)
            return PyModule_GetState(m);
        PyErr_Clear();
    }
    PyErr_SetString(PyExc_TypeError, "redlease: module state not found");
    return NULL;
#endif
}

PyObject *rl_raise(rl_modstate *st, const rl_error *err)
{
    PyObject *type;
    switch (err->kind) {
    case RL_EVALUE: type = PyExc_ValueError; break;
    case RL_ECONN: type = st->ConnectionError; break;
    case RL_EAUTH: type = st->AuthenticationError; break;
    case RL_EREDIS: type = st->RedisError; break;
    case RL_ENOMEM: return PyErr_NoMemory();
    case RL_ESYS: type = PyExc_OSError; break;
    case RL_EPERM: type = st->PermissionError; break;
    case RL_ETLS: type = st->TLSError; break;
    default: type = st->RedleaseError; break;
    }
    PyErr_SetString(type, err->msg);
    return NULL;
}
