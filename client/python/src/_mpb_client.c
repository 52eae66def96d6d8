/* _mpb_client.c - _mpb.Client: one libmpb session, and a generic call(op, name, args,
 * block_ms) that sends any request of PROTOCOL.md with its arguments encoded from Python values
 * and decodes the reply; a long wait stays interruptible (Ctrl-C). A client belongs to the
 * process that connected it: after a fork the child connects its own. */
#include "mpbpy.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

PyTypeObject *mpbpy_client_type;

/* This process's id, kept by a fork handler: getpid() is a system call, and every call of a
 * client asks whether the client is this process's. */
static long g_pid;

static void note_pid(void) {
    g_pid = (long)getpid();
}

mpb_client_t *mpbpy_client_get(PyObject *self) {
    if (!PyObject_TypeCheck(self, mpbpy_client_type)) {
        PyErr_SetString(PyExc_TypeError, "not an mpbroker._mpb.Client");
        return NULL;
    }
    mpbpy_client_t *cl = (mpbpy_client_t *)self;
    if (!cl->c) {
        PyErr_SetString(PyExc_ValueError, "the client is closed");
        return NULL;
    }
    if (cl->pid != g_pid) {
        mpbpy_raise(MPB_EFORK, "this client was connected by another process (before a fork): "
                               "connect a new one");
        return NULL;
    }
    return cl->c;
}

/* A client inherited through fork is left as it is: the parent's heartbeat thread may have been
 * in the middle of using it when the process was copied (a MAC context half updated), and
 * freeing that copy can free what is not the child's. Its memory goes with the process. */
static void forget_if_inherited(mpbpy_client_t *cl) {
    if (cl->c && cl->pid != g_pid) cl->c = NULL;
}

/* close() and dealloc: the session ends (an inherited one is only forgotten). */
static void client_drop(mpbpy_client_t *cl) {
    forget_if_inherited(cl);
    if (cl->c) {
        Py_BEGIN_ALLOW_THREADS mpb_close(&cl->c);
        Py_END_ALLOW_THREADS
    }
}

static int client_init(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"endpoint",      "authkey",    "name", "connect_timeout_ms",
                             "op_timeout_ms", "serializer", NULL};
    mpbpy_client_t *cl = (mpbpy_client_t *)self;
    const char *endpoint, *name = "", *ser = "pickle";
    Py_buffer key;
    int cto = 5000, oto = 10000;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sy*|siis", kwlist, &endpoint, &key, &name, &cto,
                                     &oto, &ser))
        return -1;
    if (strcmp(ser, "pickle") && strcmp(ser, "msgpack")) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "serializer must be \"pickle\" or \"msgpack\", not \"%s\"",
                     ser);
        return -1;
    }
    forget_if_inherited(cl);
    if (cl->c) mpb_close(&cl->c);
    mpb_options_t o;
    mpb_options_init(&o);
    o.connect_timeout_ms = cto;
    o.op_timeout_ms = oto;
    o.name = name;
    mpb_client_t *c = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = mpb_connect(endpoint, key.buf, (size_t)key.len, &o, &c);
    Py_END_ALLOW_THREADS PyBuffer_Release(&key);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s: %s", endpoint, c ? mpb_errmsg(c) : mpb_strerror(rc));
        mpb_close(&c);
        mpbpy_raise(rc, msg);
        return -1;
    }
    cl->c = c;
    cl->pid = g_pid;
    cl->use_pickle = !strcmp(ser, "pickle");
    cl->op_timeout_ms = oto;
    return 0;
}

static void client_dealloc(PyObject *self) {
    client_drop((mpbpy_client_t *)self);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* Encodes args (a list or tuple) as one msgpack array. */
static PyObject *pack_args(PyObject *args, int use_pickle) {
    PyObject *seq = PySequence_Fast(args, "args must be a list or tuple");
    if (!seq) return NULL;
    PyObject *l = PySequence_List(seq);
    Py_DECREF(seq);
    if (!l) return NULL;
    PyObject *r = mpbpy_packb(l, use_pickle);
    Py_DECREF(l);
    return r;
}

/* A request in flight for call_interruptible(): filled in by its reply's callback. */
typedef struct {
    int done, status;
    void *val; /* malloc()ed: free() it */
    size_t len;
    char err[512];
} pending_t;

static void on_reply(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    pending_t *p = arg;
    p->done = 1;
    p->status = status;
    if (status) {
        snprintf(p->err, sizeof p->err, "%s", mpb_errmsg(c));
    } else if ((p->val = malloc(len ? len : 1))) {
        memcpy(p->val, val, len);
        p->len = len;
    } else {
        p->status = MPB_ENOMEM;
    }
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define POLL_SLICE_MS 100 /* how often a long wait looks at signals (Ctrl-C) */

/* As mpb_call(), for a request the broker may park long: waits for its reply in slices,
 * running Python's signal handlers between them. A handler that raises (KeyboardInterrupt)
 * abandons the request: the client is closed, so the session ends and the broker drops what
 * it had parked for it (a lock or item it had already granted is given back by that end, as for
 * a killed process), and the exception propagates. Returns 0 with *res (free() it), a negative
 * MPB_E* with msg, or 1 with a Python exception set. */
static int call_interruptible(mpbpy_client_t *cl, unsigned op, const char *name, const void *ap,
                              size_t alen, int block_ms, void **res, size_t *rlen, char *msg,
                              size_t msglen) {
    pending_t *p = calloc(1, sizeof *p);
    if (!p) return MPB_ENOMEM;
    int rc = mpb_send(cl->c, op, name, ap, alen, on_reply, p);
    if (rc) snprintf(msg, msglen, "%s", mpb_errmsg(cl->c));
    int64_t deadline = block_ms < 0 ? -1 : now_ms() + block_ms + cl->op_timeout_ms;
    while (!rc && !p->done) {
        int slice = POLL_SLICE_MS;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0) {
                rc = MPB_ETIMEDOUT;
                snprintf(msg, msglen, "no reply from the broker within %d ms",
                         block_ms + cl->op_timeout_ms);
                break;
            }
            if (left < slice) slice = (int)left;
        }
        Py_BEGIN_ALLOW_THREADS rc = mpb_poll(cl->c, slice);
        Py_END_ALLOW_THREADS if (rc > 0) rc = 0;
        if (rc < 0 && !p->done) snprintf(msg, msglen, "%s", mpb_errmsg(cl->c));
        if (!rc && !p->done && PyErr_CheckSignals()) rc = 1;
    }
    if (p->done) {
        rc = p->status;
        if (rc) snprintf(msg, msglen, "%s", p->err);
        *res = p->val;
        *rlen = p->len;
    } else if (rc) {
        /* Still in flight, and its callback holds p: end the client before p goes. */
        Py_BEGIN_ALLOW_THREADS mpb_close(&cl->c);
        Py_END_ALLOW_THREADS
    }
    free(p);
    return rc;
}

static PyObject *client_call(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"op", "name", "args", "block_ms", NULL};
    unsigned op;
    const char *name = NULL;
    PyObject *a = NULL;
    int block_ms = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Iz|Oi", kwlist, &op, &name, &a, &block_ms))
        return NULL;
    mpb_client_t *c = mpbpy_client_get(self);
    if (!c) return NULL;
    mpbpy_client_t *cl = (mpbpy_client_t *)self;
    if (a == Py_None) a = NULL;
    PyObject *packed = a ? pack_args(a, cl->use_pickle) : NULL;
    if (a && !packed) return NULL;
    void *res = NULL;
    size_t rlen = 0;
    const char *ap = packed ? PyBytes_AS_STRING(packed) : NULL;
    size_t alen = packed ? (size_t)PyBytes_GET_SIZE(packed) : 0;
    int rc;
    char msg[512] = "";
    int slow = block_ms < 0 || block_ms > POLL_SLICE_MS;
    if (slow) {
        rc = call_interruptible(cl, op, name, ap, alen, block_ms, &res, &rlen, msg, sizeof msg);
    } else {
        Py_BEGIN_ALLOW_THREADS rc = mpb_call(c, op, name, ap, alen, block_ms, &res, &rlen);
        Py_END_ALLOW_THREADS if (rc) snprintf(msg, sizeof msg, "%s", mpb_errmsg(c));
    }
    Py_XDECREF(packed);
    if (rc == 1) return NULL; /* a signal handler raised */
    if (rc) return mpbpy_raise(rc, msg);
    PyObject *v = mpbpy_unpackb(res, rlen, cl->use_pickle);
    if (slow)
        free(res);
    else
        mpb_free(res);
    return v;
}

static PyObject *client_close(PyObject *self, PyObject *noargs) {
    (void)noargs;
    client_drop((mpbpy_client_t *)self);
    Py_RETURN_NONE;
}

static PyObject *client_packb(PyObject *self, PyObject *obj) {
    return mpbpy_packb(obj, ((mpbpy_client_t *)self)->use_pickle);
}

static PyObject *client_unpackb(PyObject *self, PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE)) return NULL;
    PyObject *r = mpbpy_unpackb(b.buf, (size_t)b.len, ((mpbpy_client_t *)self)->use_pickle);
    PyBuffer_Release(&b);
    return r;
}

static PyObject *client_get_session(PyObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(mpb_session_id(((mpbpy_client_t *)self)->c));
}

static PyObject *client_get_closed(PyObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(((mpbpy_client_t *)self)->c == NULL);
}

static PyObject *client_get_pid(PyObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(((mpbpy_client_t *)self)->pid);
}

static PyObject *client_get_pickle(PyObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(((mpbpy_client_t *)self)->use_pickle);
}

static PyMethodDef client_methods[] = {
    {"call",    (PyCFunction)(void (*)(void))client_call, METH_VARARGS | METH_KEYWORDS,
     "call(op, name, args=None, block_ms=0) -> the reply's value, decoded.\n"
     "Sends one request (op code, object name or None, list of arguments) and waits for the "
     "reply, with the GIL released. block_ms: how long the broker may park it (-1 forever). "
     "A failure raises Error(code, message)."                                                                                               },
    {"close",   client_close,                             METH_NOARGS,                  "Ends the session (its locks are released at once)."},
    {"packb",   client_packb,                             METH_O,                       "Encodes a value as this client would."             },
    {"unpackb", client_unpackb,                           METH_O,                       "Decodes a value as this client would."             },
    {NULL,      NULL,                                     0,                            NULL                                                },
};

static PyGetSetDef client_getset[] = {
    {"session", client_get_session, NULL, "the broker's id for this session (0 when closed)", NULL},
    {"closed",  client_get_closed,  NULL, "True after close()",                               NULL},
    {"pid",     client_get_pid,     NULL, "the process that connected it",                    NULL},
    {"pickle",  client_get_pickle,  NULL, "False with serializer \"msgpack\"",                NULL},
    {NULL,      NULL,               NULL, NULL,                                               NULL},
};

static PyType_Slot client_slots[] = {
    {Py_tp_doc,     "Client(endpoint, authkey, name='', connect_timeout_ms=5000, "
                "op_timeout_ms=10000, serializer='pickle'): one session on a broker."},
    {Py_tp_init,    client_init                                                                     },
    {Py_tp_new,     PyType_GenericNew                                                               },
    {Py_tp_dealloc, client_dealloc                                                                  },
    {Py_tp_methods, client_methods                                                                  },
    {Py_tp_getset,  client_getset                                                                   },
    {0,             NULL                                                                            },
};

static PyType_Spec client_spec = {"mpbroker._mpb.Client", sizeof(mpbpy_client_t), 0,
                                  Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, client_slots};

/* For __init__ of a Pool or Worker on client: its libmpb client, unless the object was
 * initialised already (what names it); NULL with an exception set. */
mpb_client_t *mpbpy_init_client(PyObject *client, const void *already, const char *what) {
    mpb_client_t *c = mpbpy_client_get(client);
    if (c && already) {
        PyErr_Format(PyExc_RuntimeError, "%s already initialised", what);
        return NULL;
    }
    return c;
}

/* For __init__: 0 when rc (of making the libmpb object) is 0, else -1 with the error raised. */
int mpbpy_init_rc(mpb_client_t *c, int rc) {
    if (!rc) return 0;
    mpbpy_raise(rc, mpb_errmsg(c));
    return -1;
}

int mpbpy_client_init(PyObject *m) {
    note_pid();
    if (pthread_atfork(NULL, NULL, note_pid)) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        return -1;
    }
    mpbpy_client_type = (PyTypeObject *)PyType_FromSpec(&client_spec);
    if (!mpbpy_client_type || PyModule_AddObjectRef(m, "Client", (PyObject *)mpbpy_client_type))
        return -1;
    return 0;
}
