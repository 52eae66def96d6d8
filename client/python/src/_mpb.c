/* _mpb.c - the extension module mpbroker._mpb: its errors (Error(code, message), strerror,
 * errname), the op and error code constants, and the init that adds the rest: the value codec
 * (_mpb_codec.c), the Client type (_mpb_client.c), and the Pool and Worker (_mpb_pool.c,
 * _mpb_worker.c) when built in. The pure-Python package on top (mpbroker/) makes the proxies. */
#include "mpbpy.h"

#include <mpb/ops.h>

static PyObject *mpbpy_error; /* _mpb.Error */

PyObject *mpbpy_raise(int code, const char *msg) {
    PyObject *e = Py_BuildValue("(is)", code, msg && *msg ? msg : mpb_strerror(code));
    if (e) {
        PyErr_SetObject(mpbpy_error, e);
        Py_DECREF(e);
    }
    return NULL;
}

static PyObject *mod_packb(PyObject *m, PyObject *args, PyObject *kw) {
    (void)m;
    static char *kwlist[] = {"obj", "pickle", NULL};
    PyObject *o;
    int use_pickle = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p", kwlist, &o, &use_pickle)) return NULL;
    return mpbpy_packb(o, use_pickle);
}

static PyObject *mod_unpackb(PyObject *m, PyObject *args, PyObject *kw) {
    (void)m;
    static char *kwlist[] = {"data", "pickle", NULL};
    Py_buffer b;
    int use_pickle = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|p", kwlist, &b, &use_pickle)) return NULL;
    PyObject *r = mpbpy_unpackb(b.buf, (size_t)b.len, use_pickle);
    PyBuffer_Release(&b);
    return r;
}

static PyObject *mod_strerror(PyObject *m, PyObject *arg) {
    (void)m;
    long code = PyLong_AsLong(arg);
    if (PyErr_Occurred()) return NULL;
    return PyUnicode_FromString(mpb_strerror((int)(code < 0 ? code : -code)));
}

static PyObject *mod_errname(PyObject *m, PyObject *arg) {
    (void)m;
    long code = PyLong_AsLong(arg);
    if (PyErr_Occurred()) return NULL;
    return PyUnicode_FromString(mpb_err_name((int)(code < 0 ? code : -code)));
}

static PyMethodDef mod_methods[] = {
    {"packb",    (PyCFunction)(void (*)(void))mod_packb,   METH_VARARGS | METH_KEYWORDS,
     "packb(obj, pickle=True) -> bytes: one msgpack value"                                                                   },
    {"unpackb",  (PyCFunction)(void (*)(void))mod_unpackb, METH_VARARGS | METH_KEYWORDS,
     "unpackb(data, pickle=True) -> the value"                                                                               },
    {"strerror", mod_strerror,                             METH_O,                       "strerror(code) -> the error's text"},
    {"errname",  mod_errname,                              METH_O,                       "errname(code) -> 'ENOKEY', ..."    },
    {NULL,       NULL,                                     0,                            NULL                                },
};

static int add_constants(PyObject *m) {
#define XX(name, code, text)                                                                       \
    if (PyModule_AddIntConstant(m, "OP_" #name, code)) return -1;
    MPB_OPS_MAP(XX)
#undef XX
#define XX(name, code, text)                                                                       \
    if (PyModule_AddIntConstant(m, #name, -(code))) return -1;
    MPB_ERRNO_MAP(XX)
#undef XX
    if (PyModule_AddIntConstant(m, "FOREVER", MPB_FOREVER)) return -1;
    if (PyModule_AddIntConstant(m, "EXT_PICKLE", MPBPY_EXT_PICKLE)) return -1;
    if (PyModule_AddIntConstant(m, "LIB_VERSION", (long)mpb_version())) return -1;
    return PyModule_AddIntConstant(m, "HAVE_POOL",
#ifdef MPBPY_HAVE_POOL
                                   1
#else
                                   0
#endif
    );
}

static struct PyModuleDef mod_def = {
    PyModuleDef_HEAD_INIT,
    "mpbroker._mpb",
    "libmpb for Python: Client(endpoint, authkey).call(op, name, args, block_ms), the value "
    "codec, Error(code, message), op codes OP_* and error codes (negative, as libmpb's).",
    -1,
    mod_methods,
    NULL,
    NULL,
    NULL,
    NULL};

PyMODINIT_FUNC PyInit__mpb(void);
PyMODINIT_FUNC PyInit__mpb(void) {
    PyObject *m = PyModule_Create(&mod_def);
    if (!m) return NULL;
    mpbpy_error =
        PyErr_NewExceptionWithDoc("mpbroker._mpb.Error",
                                  "A failed call: args are (code, message); code is libmpb's "
                                  "negative MPB_E* (see errname()).",
                                  NULL, NULL);
    if (!mpbpy_error || PyModule_AddObjectRef(m, "Error", mpbpy_error)) goto fail;
    if (mpbpy_codec_init(m) || mpbpy_client_init(m)) goto fail;
    if (add_constants(m)) goto fail;
#ifdef MPBPY_HAVE_POOL
    if (mpb_py_pool_init(m)) goto fail;
#endif
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
