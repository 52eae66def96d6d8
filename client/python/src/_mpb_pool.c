/* _mpb_pool.c - the remote Pool for Python: _mpb.Pool over libmpb's mpb_pool_* (the caller
 * side), its Imap, and pack_batches(); _mpb.Worker (the serving side) is in _mpb_worker.c.
 *
 * Every Python task goes under one broker function name (the pool.py layer picks it); a call
 * is the msgpack array [FUNCTION, ARG...] where FUNCTION is the pickle of the callable, so a
 * worker serves any function it can import, without a registration per name. This file only
 * moves bytes and Python objects across libmpb: pool.py decides what a call and a failure
 * look like.
 *
 * libmpb calls run with the GIL released; libmpb's callbacks (results, imap input, worker
 * tasks) take it back with PyGILState_Ensure(). A Pool's results do not run Python callbacks
 * from inside libmpb: they are queued as (key, ok, value) and take_done() hands them to
 * pool.py, which runs the user's callbacks outside any pool call.
 *
 *   pool.py ──apply/starmap/imap──> _mpb.Pool ──mpb_pool_*──> broker ──> Worker ──> fn(*args)
 *   pool.py <──take_done()── [done list] <──result callbacks── mpb_pool_poll()             */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpbpy.h"

typedef struct {
    PyObject_HEAD PyObject *client; /* the Client the pool runs on (kept alive) */
    mpb_client_t *c;
    mpb_pool_t *p;
    PyObject *done; /* [(key, ok, value)] finished since the last take_done() */
    int use_pickle;
} pypool_t;

/* What a result callback needs: where to queue, under which key, one value or a list. */
typedef struct {
    pypool_t *pool;
    PyObject *key;
    int many;
} cbctx_t;

static PyTypeObject *pypool_type, *pyimap_type;

/* Queues (key, ok, value); a failure to queue leaves the exception printed, since the
 * callback has nobody to return it to. Takes value. */
static void queue_done(cbctx_t *x, int ok, PyObject *value) {
    PyObject *t = value ? Py_BuildValue("(OON)", x->key, ok ? Py_True : Py_False, value) : NULL;
    if (!t || PyList_Append(x->pool->done, t) < 0) PyErr_WriteUnraisable(x->key);
    Py_XDECREF(t);
}

static void cbctx_free(cbctx_t *x) {
    Py_DECREF(x->key);
    Py_DECREF((PyObject *)x->pool);
    free(x);
}

static void on_result(void *arg, const void *result, size_t len) {
    cbctx_t *x = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *v = mpbpy_unpackb(result, len, x->pool->use_pickle);
    if (v) {
        queue_done(x, 1, v);
    } else { /* a result this process cannot decode fails its call, with the reason */
        PyObject *type, *val, *tb;
        PyErr_Fetch(&type, &val, &tb);
        PyObject *s = val ? PyObject_Str(val) : NULL;
        PyErr_Clear();
        queue_done(x, 0, Py_BuildValue("(is)", MPB_EINVAL, s ? PyUnicode_AsUTF8(s) : "?"));
        Py_XDECREF(s);
        Py_XDECREF(type);
        Py_XDECREF(val);
        Py_XDECREF(tb);
    }
    cbctx_free(x);
    PyGILState_Release(g);
}

static void on_error(void *arg, int err, const char *msg) {
    cbctx_t *x = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    queue_done(x, 0, Py_BuildValue("(is)", err, msg ? msg : ""));
    cbctx_free(x);
    PyGILState_Release(g);
}

static cbctx_t *cbctx_new(pypool_t *self, PyObject *key, int many) {
    cbctx_t *x = malloc(sizeof *x);
    if (!x) {
        PyErr_NoMemory();
        return NULL;
    }
    Py_INCREF(self);
    Py_INCREF(key);
    *x = (cbctx_t){self, key, many};
    return x;
}

static int pool_ready(pypool_t *self) {
    if (self->p && mpbpy_client_get(self->client)) return 1;
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "Pool not running");
    return 0;
}

static PyObject *pool_raise(pypool_t *self, int rc) {
    return mpbpy_raise(rc, mpb_errmsg(self->c));
}

static int pypool_init(pypool_t *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"client", NULL};
    PyObject *client;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!", kwlist, mpbpy_client_type, &client)) return -1;
    mpb_client_t *c = mpbpy_init_client(client, self->p, "Pool");
    if (!c || mpbpy_init_rc(c, mpb_pool_open(c, &self->p))) return -1;
    Py_INCREF(client);
    self->client = client;
    self->c = c;
    self->use_pickle = ((mpbpy_client_t *)client)->use_pickle;
    self->done = PyList_New(0);
    return self->done ? 0 : -1;
}

static void pool_free_handle(pypool_t *self) {
    if (!self->p) return;
    mpb_pool_t *p = self->p;
    self->p = NULL;
    Py_BEGIN_ALLOW_THREADS mpb_pool_close(&p);
    Py_END_ALLOW_THREADS
}

static void pypool_dealloc(pypool_t *self) {
    /* Results that still had callbacks hold a reference to the pool, so a pool being freed
     * has none outstanding that would call back into it. */
    if (self->p && self->client && mpbpy_client_get(self->client)) pool_free_handle(self);
    PyErr_Clear();
    Py_XDECREF(self->done);
    Py_XDECREF(self->client);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* An apply of the one call in data (chunksize < 0) or a starmap of its calls; without the GIL. */
static int pool_send(mpb_pool_t *p, const char *fn, const char *data, size_t len,
                     Py_ssize_t chunksize, cbctx_t *x) {
    if (chunksize < 0) return mpb_pool_apply_async(p, fn, data, len, on_result, on_error, x, NULL);
    return mpb_pool_starmap_async(p, fn, data, len, (size_t)chunksize, on_result, on_error, x,
                                  NULL);
}

/* Submits the packed b (taken) as an apply of one call (chunksize < 0) or as a starmap of
 * its calls in chunks of chunksize; the outcome is queued under key. None, or NULL raised. */
static PyObject *pool_submit(pypool_t *self, const char *fn, PyObject *b, PyObject *key,
                             Py_ssize_t chunksize) {
    cbctx_t *x = cbctx_new(self, key, chunksize >= 0);
    if (!x) {
        Py_DECREF(b);
        return NULL;
    }
    const char *data = PyBytes_AS_STRING(b);
    size_t len = (size_t)PyBytes_GET_SIZE(b);
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = pool_send(self->p, fn, data, len, chunksize, x);
    Py_END_ALLOW_THREADS Py_DECREF(b);
    if (rc) {
        cbctx_free(x);
        return pool_raise(self, rc);
    }
    Py_RETURN_NONE;
}

/* apply(fn, call, key): submits one call (a list [FUNCTION, ARG...]); its value arrives as
 * (key, True, value) or (key, False, (code, message)). */
static PyObject *pypool_apply(pypool_t *self, PyObject *args) {
    const char *fn;
    PyObject *call, *key;
    if (!PyArg_ParseTuple(args, "sOO", &fn, &call, &key) || !pool_ready(self)) return NULL;
    PyObject *b = mpbpy_packb(call, self->use_pickle);
    return b ? pool_submit(self, fn, b, key, -1) : NULL;
}

/* starmap(fn, calls, chunksize, key): submits calls (pack_batches()'s bytes); their values
 * arrive together as (key, True, [value, ...]) in input order, or (key, False, (code,
 * message)). */
static PyObject *pypool_starmap(pypool_t *self, PyObject *args) {
    const char *fn;
    PyObject *b, *key;
    Py_ssize_t chunksize;
    if (!PyArg_ParseTuple(args, "sSnO", &fn, &b, &chunksize, &key) || !pool_ready(self))
        return NULL;
    if (chunksize < 0) return PyErr_Format(PyExc_ValueError, "chunksize must be >= 0");
    Py_INCREF(b);
    return pool_submit(self, fn, b, key, chunksize);
}

static int wb_value(mpbpy_buf_t *b, PyObject *v, int use_pickle) {
    PyObject *e = mpbpy_packb(v, use_pickle);
    if (!e) return -1;
    int rc = mpbpy_buf_put(b, PyBytes_AS_STRING(e), (size_t)PyBytes_GET_SIZE(e));
    Py_DECREF(e);
    return rc;
}

/* Writes one item of a batch: the value, or for starmap the array of its arguments (each packed
 * alone: a tuple would otherwise travel as one pickle). */
static int wb_item(mpbpy_buf_t *b, PyObject *item, int star, int use_pickle) {
    if (!star) return wb_value(b, item, use_pickle);
    PyObject *fargs = PySequence_Fast(item, "starmap items must be iterables");
    if (!fargs) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fargs);
    int rc = mpbpy_buf_array(b, (size_t)n);
    for (Py_ssize_t k = 0; rc == 0 && k < n; k++)
        rc = wb_value(b, PySequence_Fast_GET_ITEM(fargs, k), use_pickle);
    Py_DECREF(fargs);
    return rc;
}

/* Appends the call [MARKED KEY, [ITEM...]] of the batch in items (a buffer of n items). */
static int wb_batch(mpbpy_buf_t *b, const uint8_t *key, size_t klen, uint8_t marker,
                    const mpbpy_buf_t *items, size_t n) {
    int rc = mpbpy_buf_array(b, 2);
    if (!rc) rc = mpbpy_buf_bin(b, klen);
    if (!rc) rc = mpbpy_buf_put(b, &marker, 1);
    if (!rc) rc = mpbpy_buf_put(b, key + 1, klen - 1);
    if (!rc) rc = mpbpy_buf_array(b, n);
    if (!rc) rc = mpbpy_buf_put(b, items->p, items->len);
    return rc;
}

/* pack_batches(key, items, star, chunksize, limit, pickle=True) -> (bytes, count): a map's
 * items cut into batches of chunksize items (fewer where a batch would pass limit bytes), each
 * batch one call [KEY', [ITEM...]] whose KEY' is key (a function key, 00 + digest) marked 01 for
 * map or 02 for starmap: a worker runs a whole batch in one go and answers with the list of its
 * results. bytes is the msgpack array of the calls, for pool.starmap with chunksize 1. */
static PyObject *pack_batches(PyObject *mod, PyObject *args, PyObject *kw) {
    (void)mod;
    static char *kwlist[] = {"key", "items", "star", "chunksize", "limit", "pickle", NULL};
    Py_buffer key;
    PyObject *items;
    int star, use_pickle = 1;
    Py_ssize_t chunksize, limit;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*Opnn|p", kwlist, &key, &items, &star, &chunksize,
                                     &limit, &use_pickle))
        return NULL;
    PyObject *seq = NULL, *out = NULL;
    mpbpy_buf_t calls = {0}, batch = {0};
    size_t ncalls = 0, inbatch = 0;
    uint8_t marker = star ? 2 : 1;
    if (key.len < 2 || key.len > 64 || ((const uint8_t *)key.buf)[0] != 0 || chunksize < 1) {
        PyErr_SetString(PyExc_ValueError, "pack_batches: a function key and a chunksize >= 1");
        goto done;
    }
    if (!(seq = PySequence_Fast(items, "items must be a sequence"))) goto done;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        if (wb_item(&batch, PySequence_Fast_GET_ITEM(seq, i), star, use_pickle)) goto done;
        inbatch++;
        if ((Py_ssize_t)inbatch < chunksize && (Py_ssize_t)batch.len < limit) continue;
        if (wb_batch(&calls, key.buf, (size_t)key.len, marker, &batch, inbatch)) goto done;
        ncalls++;
        batch.len = 0;
        inbatch = 0;
    }
    if (inbatch) {
        if (wb_batch(&calls, key.buf, (size_t)key.len, marker, &batch, inbatch)) goto done;
        ncalls++;
    }
    mpbpy_buf_t whole = {0};
    if (mpbpy_buf_array(&whole, ncalls) == 0 && mpbpy_buf_put(&whole, calls.p, calls.len) == 0)
        out = Py_BuildValue("(y#n)", whole.p, (Py_ssize_t)whole.len, (Py_ssize_t)ncalls);
    PyMem_Free(whole.p);
done:
    PyMem_Free(calls.p);
    PyMem_Free(batch.p);
    Py_XDECREF(seq);
    PyBuffer_Release(&key);
    return out;
}

/* poll(timeout_ms): reads the results that have arrived (waiting up to timeout_ms for one);
 * how many completed. */
static PyObject *pypool_poll(pypool_t *self, PyObject *args) {
    int timeout_ms, rc;
    if (!PyArg_ParseTuple(args, "i", &timeout_ms) || !pool_ready(self)) return NULL;
    Py_BEGIN_ALLOW_THREADS rc = mpb_pool_poll(self->p, timeout_ms);
    Py_END_ALLOW_THREADS if (rc < 0) return pool_raise(self, rc);
    return PyLong_FromLong(rc);
}

/* take_done(): the (key, ok, value) tuples queued since the last call, oldest first. */
static PyObject *pypool_take_done(pypool_t *self, PyObject *unused) {
    (void)unused;
    if (!self->done) return PyList_New(0);
    PyObject *fresh = PyList_New(0);
    if (!fresh) return NULL;
    PyObject *out = self->done;
    self->done = fresh;
    return out;
}

static PyObject *pypool_close(pypool_t *self, PyObject *unused) {
    (void)unused;
    if (!pool_ready(self)) return NULL;
    int rc = mpb_pool_finish(self->p);
    if (rc) return pool_raise(self, rc);
    Py_RETURN_NONE;
}

/* join(timeout_ms): after close, waits for every outstanding result; True when all came. */
static PyObject *pypool_join(pypool_t *self, PyObject *args) {
    int timeout_ms, rc;
    if (!PyArg_ParseTuple(args, "i", &timeout_ms) || !pool_ready(self)) return NULL;
    Py_BEGIN_ALLOW_THREADS rc = mpb_pool_join(self->p, timeout_ms);
    Py_END_ALLOW_THREADS if (rc == MPB_ETIMEDOUT) Py_RETURN_FALSE;
    if (rc) return pool_raise(self, rc);
    Py_RETURN_TRUE;
}

static PyObject *pypool_terminate(pypool_t *self, PyObject *unused) {
    (void)unused;
    int rc;
    if (!pool_ready(self)) return NULL;
    Py_BEGIN_ALLOW_THREADS rc = mpb_pool_terminate(self->p);
    Py_END_ALLOW_THREADS if (rc) return pool_raise(self, rc);
    Py_RETURN_NONE;
}

/* free(): terminates what is outstanding (queued as canceled) and frees the libmpb pool. */
static PyObject *pypool_free(pypool_t *self, PyObject *unused) {
    (void)unused;
    if (self->p && mpbpy_client_get(self->client))
        pool_free_handle(self);
    else
        self->p = NULL; /* a client gone or inherited over fork: nothing to tell the broker */
    PyErr_Clear();
    Py_RETURN_NONE;
}

/* fileno(): a descriptor that becomes readable when results may have arrived (edge-triggered,
 * as ZMQ_FD is: poll(0) until it returns 0 after it fires). */
static PyObject *pypool_fileno(pypool_t *self, PyObject *unused) {
    (void)unused;
    if (!pool_ready(self)) return NULL;
    return PyLong_FromLong(mpb_fd(self->c));
}

typedef struct {
    PyObject_HEAD pypool_t *pool;
    mpb_imap_t *it;
    PyObject *src;                         /* iterator of calls */
    PyObject *item;                        /* the packed call libmpb is reading */
    PyObject *exc_type, *exc_val, *exc_tb; /* what the source raised, raised again in its
                                            * place in the results */
} pyimap_t;

static void imap_clear_exc(pyimap_t *self) {
    Py_CLEAR(self->exc_type);
    Py_CLEAR(self->exc_val);
    Py_CLEAR(self->exc_tb);
}

/* mpb_next_fn: the next call of the source iterator, packed. */
static int imap_next_item(void *arg, const void **item, size_t *len) {
    pyimap_t *self = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = 1;
    Py_CLEAR(self->item);
    PyObject *call = PyIter_Next(self->src);
    if (call) {
        self->item = mpbpy_packb(call, self->pool->use_pickle);
        Py_DECREF(call);
    }
    if (self->item) {
        *item = PyBytes_AS_STRING(self->item);
        *len = (size_t)PyBytes_GET_SIZE(self->item);
    } else if (PyErr_Occurred()) {
        imap_clear_exc(self);
        PyErr_Fetch(&self->exc_type, &self->exc_val, &self->exc_tb);
        rc = MPB_EINVAL;
    } else {
        rc = 0;
    }
    PyGILState_Release(g);
    return rc;
}

static void pyimap_dealloc(pyimap_t *self) {
    if (self->it) {
        mpb_imap_t *it = self->it;
        self->it = NULL;
        Py_BEGIN_ALLOW_THREADS mpb_imap_free(&it);
        Py_END_ALLOW_THREADS
    }
    Py_XDECREF(self->item);
    imap_clear_exc(self);
    Py_XDECREF(self->src);
    Py_XDECREF(self->pool);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* imap(fn, calls, chunksize, ordered, window): a lazy map over an iterator of calls. */
static PyObject *pypool_imap(pypool_t *self, PyObject *args) {
    const char *fn;
    PyObject *calls;
    Py_ssize_t chunksize, window;
    int ordered;
    if (!PyArg_ParseTuple(args, "sOnpn", &fn, &calls, &chunksize, &ordered, &window) ||
        !pool_ready(self))
        return NULL;
    if (chunksize < 1)
        return PyErr_Format(PyExc_ValueError, "Chunksize must be 1+, not %zd", chunksize);
    pyimap_t *it = PyObject_New(pyimap_t, pyimap_type);
    if (!it) return NULL;
    it->it = NULL;
    it->item = it->exc_type = it->exc_val = it->exc_tb = NULL;
    it->src = PyObject_GetIter(calls);
    Py_INCREF(self);
    it->pool = self;
    if (!it->src) {
        Py_DECREF(it);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = mpb_pool_imap(self->p, fn, imap_next_item, it, (size_t)chunksize,
                                              ordered, window < 0 ? 0 : (size_t)window, &it->it);
    Py_END_ALLOW_THREADS if (rc) {
        Py_DECREF(it);
        return pool_raise(self, rc);
    }
    return (PyObject *)it;
}

/* next(timeout_ms) -> (0, value) | (1, None) at the end | (2, None) timed out; the source's
 * own exception is raised where it stopped, any other failure as _mpb.Error. */
static PyObject *pyimap_next(pyimap_t *self, PyObject *args) {
    int timeout_ms, rc;
    if (!PyArg_ParseTuple(args, "i", &timeout_ms)) return NULL;
    if (!self->it) return Py_BuildValue("(iO)", 1, Py_None);
    void *res = NULL;
    size_t rlen = 0;
    Py_BEGIN_ALLOW_THREADS rc = mpb_imap_next(self->it, timeout_ms, &res, &rlen);
    Py_END_ALLOW_THREADS if (rc == 0) {
        PyObject *v = mpbpy_unpackb(res, rlen, self->pool->use_pickle);
        mpb_free(res);
        return v ? Py_BuildValue("(iN)", 0, v) : NULL;
    }
    if (rc == MPB_ECLOSED && !self->exc_type) return Py_BuildValue("(iO)", 1, Py_None);
    if (rc == MPB_ETIMEDOUT) return Py_BuildValue("(iO)", 2, Py_None);
    if (self->exc_type && rc == MPB_EINVAL) {
        PyErr_Restore(self->exc_type, self->exc_val, self->exc_tb);
        self->exc_type = self->exc_val = self->exc_tb = NULL;
        return NULL;
    }
    return mpbpy_raise(rc, mpb_errmsg(self->pool->c));
}

static PyMethodDef pyimap_methods[] = {
    {"next", (PyCFunction)pyimap_next, METH_VARARGS, "next(timeout_ms) -> (status, value)"},
    {NULL,   NULL,                     0,            NULL                                 },
};

static PyType_Slot pyimap_slots[] = {
    {Py_tp_dealloc, pyimap_dealloc                           },
    {Py_tp_methods, pyimap_methods                           },
    {Py_tp_doc,     "A lazy map's results, from Pool.imap()."},
    {0,             NULL                                     },
};

static PyType_Spec pyimap_spec = {"mpbroker._mpb.Imap", sizeof(pyimap_t), 0, Py_TPFLAGS_DEFAULT,
                                  pyimap_slots};

static PyMethodDef pypool_methods[] = {
    {"apply",     (PyCFunction)pypool_apply,     METH_VARARGS, "apply(fn, call, key)"              },
    {"starmap",   (PyCFunction)pypool_starmap,   METH_VARARGS, "starmap(fn, calls, chunksize, key)"},
    {"imap",      (PyCFunction)pypool_imap,      METH_VARARGS,
     "imap(fn, calls, chunksize, ordered, window) -> Imap"                                         },
    {"poll",      (PyCFunction)pypool_poll,      METH_VARARGS, "poll(timeout_ms) -> completed"     },
    {"take_done", (PyCFunction)pypool_take_done, METH_NOARGS,  "take_done() -> [(key, ok, v)]"     },
    {"close",     (PyCFunction)pypool_close,     METH_NOARGS,  "close()"                           },
    {"join",      (PyCFunction)pypool_join,      METH_VARARGS, "join(timeout_ms) -> bool"          },
    {"terminate", (PyCFunction)pypool_terminate, METH_NOARGS,  "terminate()"                       },
    {"free",      (PyCFunction)pypool_free,      METH_NOARGS,  "free()"                            },
    {"fileno",    (PyCFunction)pypool_fileno,    METH_NOARGS,  "fileno() -> fd"                    },
    {NULL,        NULL,                          0,            NULL                                },
};

static PyType_Slot pypool_slots[] = {
    {Py_tp_init,    pypool_init                                                  },
    {Py_tp_new,     PyType_GenericNew                                            },
    {Py_tp_dealloc, pypool_dealloc                                               },
    {Py_tp_methods, pypool_methods                                               },
    {Py_tp_doc,     "Pool(client): libmpb's pool on a Client, for mpbroker.pool."},
    {0,             NULL                                                         },
};

static PyType_Spec pypool_spec = {"mpbroker._mpb.Pool", sizeof(pypool_t), 0,
                                  Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, pypool_slots};

static PyMethodDef pool_functions[] = {
    {"pack_batches", (PyCFunction)(void (*)(void))pack_batches, METH_VARARGS | METH_KEYWORDS,
     "pack_batches(key, items, star, chunksize, limit, pickle=True) -> (bytes, count)"            },
    {NULL,           NULL,                                      0,                            NULL},
};

int mpb_py_pool_init(PyObject *module) {
    if (PyModule_AddFunctions(module, pool_functions) < 0) return -1;
    pypool_type = (PyTypeObject *)PyType_FromSpec(&pypool_spec);
    pyimap_type = (PyTypeObject *)PyType_FromSpec(&pyimap_spec);
    if (!pypool_type || !pyimap_type) return -1;
    if (PyModule_AddObjectRef(module, "Pool", (PyObject *)pypool_type) < 0 ||
        PyModule_AddObjectRef(module, "Imap", (PyObject *)pyimap_type) < 0)
        return -1;
    return mpbpy_worker_init(module);
}
