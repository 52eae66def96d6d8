/* _mpb_pool.c - the remote Pool and its worker for Python: _mpb.Pool over libmpb's
 * mpb_pool_* (the caller side) and _mpb.Worker over mpb_worker_* (the serving side).
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

/* ---- Pool ------------------------------------------------------------------------------- */

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

static PyTypeObject *pypool_type, *pyimap_type, *pyworker_type;

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

/* For __init__ of a Pool or Worker on client: its libmpb client, unless the object was
 * initialised already (what names it); NULL with an exception set. */
static mpb_client_t *init_client(PyObject *client, const void *already, const char *what) {
    mpb_client_t *c = mpbpy_client_get(client);
    if (c && already) {
        PyErr_Format(PyExc_RuntimeError, "%s already initialised", what);
        return NULL;
    }
    return c;
}

/* For __init__: 0 when rc (of making the libmpb object) is 0, else -1 with the error raised. */
static int init_rc(mpb_client_t *c, int rc) {
    if (!rc) return 0;
    mpbpy_raise(rc, mpb_errmsg(c));
    return -1;
}

static int pypool_init(pypool_t *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"client", NULL};
    PyObject *client;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!", kwlist, mpbpy_client_type, &client)) return -1;
    mpb_client_t *c = init_client(client, self->p, "Pool");
    if (!c || init_rc(c, mpb_pool_open(c, &self->p))) return -1;
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

/* ---- calls ---- */

typedef struct {
    char *p;
    size_t len, cap;
} wbuf_t;

static int wb_put(wbuf_t *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *p = PyMem_Realloc(b->p, cap);
        if (!p) {
            PyErr_NoMemory();
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

/* A msgpack array header (tag 0xdd) or bin header (tag 0xc6), in its shortest form. */
static int wb_head(wbuf_t *b, uint8_t tag, size_t n) {
    uint8_t h[5];
    size_t hl = 5;
    if (tag == 0xdd && n < 16) {
        h[0] = (uint8_t)(0x90 | n);
        hl = 1;
    } else if (tag == 0xc6 && n < 256) {
        h[0] = 0xc4;
        h[1] = (uint8_t)n;
        hl = 2;
    } else {
        h[0] = tag;
        h[1] = (uint8_t)(n >> 24);
        h[2] = (uint8_t)(n >> 16);
        h[3] = (uint8_t)(n >> 8);
        h[4] = (uint8_t)n;
    }
    return wb_put(b, h, hl);
}

static int wb_value(wbuf_t *b, PyObject *v, int use_pickle) {
    PyObject *e = mpbpy_packb(v, use_pickle);
    if (!e) return -1;
    int rc = wb_put(b, PyBytes_AS_STRING(e), (size_t)PyBytes_GET_SIZE(e));
    Py_DECREF(e);
    return rc;
}

/* Writes one item of a batch: the value, or for starmap the array of its arguments (each packed
 * alone: a tuple would otherwise travel as one pickle). */
static int wb_item(wbuf_t *b, PyObject *item, int star, int use_pickle) {
    if (!star) return wb_value(b, item, use_pickle);
    PyObject *fargs = PySequence_Fast(item, "starmap items must be iterables");
    if (!fargs) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fargs);
    int rc = wb_head(b, 0xdd, (size_t)n);
    for (Py_ssize_t k = 0; rc == 0 && k < n; k++)
        rc = wb_value(b, PySequence_Fast_GET_ITEM(fargs, k), use_pickle);
    Py_DECREF(fargs);
    return rc;
}

/* Appends the call [MARKED KEY, [ITEM...]] of the batch in items (a buffer of n items). */
static int wb_batch(wbuf_t *b, const uint8_t *key, size_t klen, uint8_t marker, const wbuf_t *items,
                    size_t n) {
    int rc = wb_head(b, 0xdd, 2);
    if (!rc) rc = wb_head(b, 0xc6, klen);
    if (!rc) rc = wb_put(b, &marker, 1);
    if (!rc) rc = wb_put(b, key + 1, klen - 1);
    if (!rc) rc = wb_head(b, 0xdd, n);
    if (!rc) rc = wb_put(b, items->p, items->len);
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
    wbuf_t calls = {0}, batch = {0};
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
    wbuf_t whole = {0};
    if (wb_head(&whole, 0xdd, ncalls) == 0 && wb_put(&whole, calls.p, calls.len) == 0)
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

/* ---- imap ------------------------------------------------------------------------------- */

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

/* ---- Worker ----------------------------------------------------------------------------- */

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
    wbuf_t b = {0};
    PyObject *t = NULL;
    if (wb_head(&b, 0xdd, n) == 0 && wb_put(&b, p, (size_t)(end - p)) == 0) {
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
    mpb_client_t *c = init_client(client, self->w, "Worker");
    if (!c) return -1;
    if (!PyCallable_Check(resolve) || !PyCallable_Check(capture) || !PyCallable_Check(fail)) {
        PyErr_SetString(PyExc_TypeError, "resolve, capture and fail must be callable");
        return -1;
    }
    if (init_rc(c, mpb_worker_open(c, &self->w))) return -1;
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

static PyMethodDef pool_functions[] = {
    {"pack_batches", (PyCFunction)(void (*)(void))pack_batches, METH_VARARGS | METH_KEYWORDS,
     "pack_batches(key, items, star, chunksize, limit, pickle=True) -> (bytes, count)"            },
    {NULL,           NULL,                                      0,                            NULL},
};

int mpb_py_pool_init(PyObject *module) {
    if (PyModule_AddFunctions(module, pool_functions) < 0) return -1;
    pypool_type = (PyTypeObject *)PyType_FromSpec(&pypool_spec);
    pyimap_type = (PyTypeObject *)PyType_FromSpec(&pyimap_spec);
    pyworker_type = (PyTypeObject *)PyType_FromSpec(&pyworker_spec);
    if (!pypool_type || !pyimap_type || !pyworker_type) return -1;
    if (PyModule_AddObjectRef(module, "Pool", (PyObject *)pypool_type) < 0 ||
        PyModule_AddObjectRef(module, "Imap", (PyObject *)pyimap_type) < 0 ||
        PyModule_AddObjectRef(module, "Worker", (PyObject *)pyworker_type) < 0)
        return -1;
    return 0;
}
