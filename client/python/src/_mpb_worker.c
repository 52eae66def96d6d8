/* _mpb_worker.c - _mpb.Worker: serves the Python tasks of a remote Pool over libmpb's
 * mpb_worker_*. A call is [FUNCTION, ARG...] (FUNCTION the pickle of the callable, so a worker
 * runs any function it can import) or a batch [KEY', [ITEM...]] of pack_batches(); each runs
 * with the GIL taken back in libmpb's task callback, and an exception travels back as its text.
 * SIGINT/SIGTERM during serve() stop the worker between tasks. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpbpy.h"

static PyTypeObject *pyworker_type;

typedef struct {
    PyObject_HEAD PyObject *client;
    mpb_worker_t *w;
    PyObject *resolve; /* resolve(ref) -> the callable a call's FUNCTION names */
    PyObject *capture; /* capture(exc) -> the value that reports a call's exception */
    PyObject *fail;    /* fail(exc, value) -> that value, for a result that cannot be packed */
    PyObject *last_ref, *last_fn; /* the previous call's function: a chunk's calls share it */
    int use_pickle;
} pyworker_t;

/* The worker serving in this process's main thread, for the signal handler. */
static mpb_worker_t *volatile g_serving;

static void on_stop_signal(int sig) {
    (void)sig;
    if (g_serving) mpb_worker_stop(g_serving);
}

/* Writes the pending exception as "Type: message" into err. */
static void exc_to_err(char *err, size_t errlen) {
    PyObject *type, *val, *tb;
    PyErr_Fetch(&type, &val, &tb);
    PyErr_NormalizeException(&type, &val, &tb);
    PyObject *s = val ? PyObject_Str(val) : NULL;
    const char *name = type ? ((PyTypeObject *)type)->tp_name : "error";
    const char *text = s ? PyUnicode_AsUTF8(s) : NULL;
    snprintf(err, errlen, "%s: %s", name, text ? text : "?");
    PyErr_Clear();
    Py_XDECREF(s);
    Py_XDECREF(type);
    Py_XDECREF(val);
    Py_XDECREF(tb);
}

/* The pending exception, normalised, with its traceback attached; NULL if none. */
static PyObject *fetch_exc(void) {
    PyObject *type, *val, *tb;
    PyErr_Fetch(&type, &val, &tb);
    PyErr_NormalizeException(&type, &val, &tb);
    if (val && tb) PyException_SetTraceback(val, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return val;
}

/* A worker thread keeps its Python thread state from its first call on: PyGILState_Ensure()
 * on a thread without one makes one and PyGILState_Release() frees it again, which costs more
 * than a small call does. The state stays until the process ends. */
static _Thread_local int t_has_state;

/* Reads a msgpack array header (*n elements) or bin header (*n bytes, then *p past them,
 * *data at them) at *p, within end. -1 for anything else or too short. */
static int rd_array(const uint8_t **p, const uint8_t *end, uint32_t *n) {
    const uint8_t *q = *p;
    if (q >= end) return -1;
    if ((*q & 0xf0) == 0x90) {
        *n = *q & 0x0f;
        *p = q + 1;
    } else if (*q == 0xdc && end - q >= 3) {
        *n = (uint32_t)q[1] << 8 | q[2];
        *p = q + 3;
    } else if (*q == 0xdd && end - q >= 5) {
        *n = (uint32_t)q[1] << 24 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 8 | q[4];
        *p = q + 5;
    } else {
        return -1;
    }
    return 0;
}

static int rd_bin(const uint8_t **p, const uint8_t *end, const uint8_t **data, uint32_t *n) {
    const uint8_t *q = *p;
    size_t h;
    if (q >= end) return -1;
    if (*q == 0xc4 && end - q >= 2) {
        *n = q[1];
        h = 2;
    } else if (*q == 0xc5 && end - q >= 3) {
        *n = (uint32_t)q[1] << 8 | q[2];
        h = 3;
    } else if (*q == 0xc6 && end - q >= 5) {
        *n = (uint32_t)q[1] << 24 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 8 | q[4];
        h = 5;
    } else {
        return -1;
    }
    if ((size_t)(end - q) - h < *n) return -1;
    *data = q + h;
    *p = q + h + *n;
    return 0;
}

/* The callable of a call's FUNCTION (a pickle): the previous call's when the bytes are the
 * same, else resolve(ref). New reference, or NULL with an exception set. */
static PyObject *worker_fn(pyworker_t *self, const uint8_t *ref, uint32_t rl) {
    if (!self->last_ref || (size_t)PyBytes_GET_SIZE(self->last_ref) != rl ||
        memcmp(PyBytes_AS_STRING(self->last_ref), ref, rl) != 0) {
        PyObject *r = PyBytes_FromStringAndSize((const char *)ref, rl);
        PyObject *fn = r ? PyObject_CallOneArg(self->resolve, r) : NULL;
        if (!fn) {
            Py_XDECREF(r);
            return NULL;
        }
        Py_XSETREF(self->last_ref, r);
        Py_XSETREF(self->last_fn, fn);
    }
    Py_INCREF(self->last_fn);
    return self->last_fn;
}

/* The arguments of a call: the n values from p to end, as a tuple. */
static PyObject *worker_args(pyworker_t *self, const uint8_t *p, const uint8_t *end, uint32_t n) {
    if (n == 0) return PyTuple_New(0);
    if (n == 1) { /* map's one item: the rest is exactly one value */
        PyObject *v = mpbpy_unpackb(p, (size_t)(end - p), self->use_pickle);
        PyObject *t = v ? PyTuple_Pack(1, v) : NULL;
        Py_XDECREF(v);
        return t;
    }
    mpbpy_buf_t b = {0};
    PyObject *t = NULL;
    if (mpbpy_buf_array(&b, n) == 0 && mpbpy_buf_put(&b, p, (size_t)(end - p)) == 0) {
        PyObject *l = mpbpy_unpackb(b.p, b.len, self->use_pickle);
        t = l && PyList_Check(l) ? PyList_AsTuple(l) : NULL;
        if (l && !t && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "malformed call");
        Py_XDECREF(l);
    }
    PyMem_Free(b.p);
    return t;
}

/* Runs a batch (a call [KEY', [ITEM...]] of pack_batches()): fn on each item in turn, or on
 * each item's arguments with star. The list of results, or what capture() makes of the first
 * exception (as a map fails with its first failed item). */
static PyObject *worker_batch(pyworker_t *self, PyObject *fn, const uint8_t *p, const uint8_t *end,
                              int star) {
    PyObject *items = mpbpy_unpackb(p, (size_t)(end - p), self->use_pickle);
    if (!items) return NULL;
    if (!PyList_Check(items)) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "malformed call: a batch that is not an array");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i), *r = NULL;
        if (!star) {
            r = PyObject_CallOneArg(fn, item);
        } else if (PyList_Check(item)) {
            PyObject *t = PyList_AsTuple(item);
            r = t ? PyObject_Call(fn, t, NULL) : NULL;
            Py_XDECREF(t);
        } else {
            PyErr_SetString(PyExc_TypeError, "starmap item is not an array of arguments");
        }
        if (!r) {
            PyObject *e = fetch_exc();
            Py_SETREF(out, PyObject_CallOneArg(self->capture, e ? e : Py_None));
            Py_XDECREF(e);
            break;
        }
        PyList_SET_ITEM(out, i, r);
    }
    Py_DECREF(items);
    return out;
}

/* Runs one call [FUNCTION, ARG...] (imap's comes wrapped as [[FUNCTION, ARG...]]): its value,
 * or what capture() makes of its exception; NULL with an exception set only when the call
 * itself is malformed or capture() fails. */
static PyObject *worker_run(pyworker_t *self, const void *args, size_t alen) {
    const uint8_t *p = args, *end = p + alen, *ref;
    uint32_t n, rl;
    if (rd_array(&p, end, &n)) goto malformed;
    if (n == 1 && p < end && ((*p & 0xf0) == 0x90 || *p == 0xdc || *p == 0xdd) &&
        rd_array(&p, end, &n))
        goto malformed;
    if (n < 1 || rd_bin(&p, end, &ref, &rl)) goto malformed;
    if (rl >= 2 && rl <= 64 && (ref[0] == 1 || ref[0] == 2)) { /* a batch: [KEY', ITEMS] */
        uint8_t k[64];
        memcpy(k, ref, rl);
        k[0] = 0; /* the function's own key */
        if (n != 2) goto malformed;
        PyObject *bfn = worker_fn(self, k, rl);
        if (bfn) {
            PyObject *r = worker_batch(self, bfn, p, end, ref[0] == 2);
            Py_DECREF(bfn);
            return r;
        }
        PyObject *e = fetch_exc(); /* resolving the function failed: the batch reports it */
        PyObject *r = PyObject_CallOneArg(self->capture, e ? e : Py_None);
        Py_XDECREF(e);
        return r;
    }
    PyObject *fn = worker_fn(self, ref, rl);
    PyObject *a = fn ? worker_args(self, p, end, n - 1) : NULL;
    PyObject *r = a ? PyObject_Call(fn, a, NULL) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(fn);
    if (r) return r;
    PyObject *e = fetch_exc();
    r = PyObject_CallOneArg(self->capture, e ? e : Py_None);
    Py_XDECREF(e);
    return r;
malformed:
    PyErr_SetString(PyExc_ValueError, "malformed call: not [FUNCTION (bin), ARG...]");
    return NULL;
}

/* mpb_task_fn: one call, run under the GIL. */
static int trampoline(void *ctx, const void *args, size_t alen, void **result, size_t *rlen,
                      char *err, size_t errlen) {
    pyworker_t *self = ctx;
    if (!t_has_state) {
        PyGILState_Ensure();
        PyEval_SaveThread();
        t_has_state = 1;
    }
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = 1;
    PyObject *r = worker_run(self, args, alen);
    PyObject *b = r ? mpbpy_packb(r, self->use_pickle) : NULL;
    if (r && !b) { /* the value cannot travel: fail() says so in a value that can */
        PyObject *e = fetch_exc();
        PyObject *f = PyObject_CallFunctionObjArgs(self->fail, e ? e : Py_None, r, NULL);
        Py_XDECREF(e);
        b = f ? mpbpy_packb(f, self->use_pickle) : NULL;
        Py_XDECREF(f);
    }
    if (b) {
        *rlen = (size_t)PyBytes_GET_SIZE(b);
        *result = malloc(*rlen ? *rlen : 1);
        if (*result) {
            memcpy(*result, PyBytes_AS_STRING(b), *rlen);
            rc = 0;
        } else {
            snprintf(err, errlen, "out of memory for a result of %zu bytes", *rlen);
        }
    } else {
        exc_to_err(err, errlen);
    }
    Py_XDECREF(b);
    Py_XDECREF(r);
    PyGILState_Release(g);
    return rc;
}

static int pyworker_init(pyworker_t *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"client",      "names",    "resolve",   "capture", "fail",
                             "concurrency", "prefetch", "max_tasks", NULL};
    PyObject *client, *names, *resolve, *capture, *fail;
    int concurrency = 1, prefetch = 1;
    unsigned long long max_tasks = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OOOO|iiK", kwlist, mpbpy_client_type, &client,
                                     &names, &resolve, &capture, &fail, &concurrency, &prefetch,
                                     &max_tasks))
        return -1;
    mpb_client_t *c = mpbpy_init_client(client, self->w, "Worker");
    if (!c) return -1;
    if (!PyCallable_Check(resolve) || !PyCallable_Check(capture) || !PyCallable_Check(fail)) {
        PyErr_SetString(PyExc_TypeError, "resolve, capture and fail must be callable");
        return -1;
    }
    if (mpbpy_init_rc(c, mpb_worker_open(c, &self->w))) return -1;
    int rc;
    Py_INCREF(client);
    self->client = client;
    Py_INCREF(resolve);
    self->resolve = resolve;
    Py_INCREF(capture);
    self->capture = capture;
    Py_INCREF(fail);
    self->fail = fail;
    self->use_pickle = ((mpbpy_client_t *)client)->use_pickle;
    PyObject *seq = PySequence_Fast(names, "names must be a list of str");
    if (!seq) return -1;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        const char *n = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i));
        if (!n || (rc = mpb_worker_add(self->w, n, trampoline, self)) != 0) {
            Py_DECREF(seq);
            if (n) mpbpy_raise(rc, mpb_errmsg(c));
            return -1;
        }
    }
    Py_DECREF(seq);
    mpb_worker_set_concurrency(self->w, concurrency);
    mpb_worker_set_prefetch(self->w, prefetch);
    mpb_worker_set_max_tasks(self->w, max_tasks);
    return 0;
}

static void pyworker_dealloc(pyworker_t *self) {
    mpb_worker_close(&self->w);
    Py_XDECREF(self->resolve);
    Py_XDECREF(self->capture);
    Py_XDECREF(self->fail);
    Py_XDECREF(self->last_ref);
    Py_XDECREF(self->last_fn);
    Py_XDECREF(self->client);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* serve(signals): serves until stop() or max_tasks, and SIGTERM or SIGINT if signals (only
 * the main thread may ask for that: the handlers are process-wide). */
static PyObject *pyworker_serve(pyworker_t *self, PyObject *args) {
    int main_thread = 0;
    if (!PyArg_ParseTuple(args, "|p", &main_thread)) return NULL;
    if (!self->w || !mpbpy_client_get(self->client)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "Worker not initialised");
        return NULL;
    }
    struct sigaction sa, oldterm, oldint;
    if (main_thread) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        g_serving = self->w;
        sigaction(SIGTERM, &sa, &oldterm);
        sigaction(SIGINT, &sa, &oldint);
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = mpb_worker_serve(self->w);
    Py_END_ALLOW_THREADS if (main_thread) {
        sigaction(SIGTERM, &oldterm, NULL);
        sigaction(SIGINT, &oldint, NULL);
        g_serving = NULL;
    }
    if (rc) return mpbpy_raise(rc, mpb_errmsg(((mpbpy_client_t *)self->client)->c));
    Py_RETURN_NONE;
}

static PyObject *pyworker_stop(pyworker_t *self, PyObject *unused) {
    (void)unused;
    if (self->w) mpb_worker_stop(self->w);
    Py_RETURN_NONE;
}

static PyObject *pyworker_tasks_done(pyworker_t *self, void *unused) {
    (void)unused;
    return PyLong_FromUnsignedLongLong(self->w ? mpb_worker_tasks_done(self->w) : 0);
}

static PyMethodDef pyworker_methods[] = {
    {"serve", (PyCFunction)pyworker_serve, METH_VARARGS,
     "serve(signals=False): blocks until stopped"                                        },
    {"stop",  (PyCFunction)pyworker_stop,  METH_NOARGS,  "stop(): asks serve() to return"},
    {NULL,    NULL,                        0,            NULL                            },
};

static PyGetSetDef pyworker_getset[] = {
    {"tasks_done", (getter)pyworker_tasks_done, NULL, "tasks completed so far", NULL},
    {NULL,         NULL,                        NULL, NULL,                     NULL},
};

static PyType_Slot pyworker_slots[] = {
    {Py_tp_init,    pyworker_init            },
    {Py_tp_new,     PyType_GenericNew        },
    {Py_tp_dealloc, pyworker_dealloc         },
    {Py_tp_methods, pyworker_methods         },
    {Py_tp_getset,  pyworker_getset          },
    {Py_tp_doc,     "Worker(client, names, resolve, capture, fail, concurrency=1, prefetch=1, "
                "max_tasks=0)"},
    {0,             NULL                     },
};

static PyType_Spec pyworker_spec = {"mpbroker._mpb.Worker", sizeof(pyworker_t), 0,
                                    Py_TPFLAGS_DEFAULT, pyworker_slots};

int mpbpy_worker_init(PyObject *module) {
    pyworker_type = (PyTypeObject *)PyType_FromSpec(&pyworker_spec);
    if (!pyworker_type || PyModule_AddObjectRef(module, "Worker", (PyObject *)pyworker_type) < 0)
        return -1;
    return 0;
}
