/* _mpb.c - the extension module mpbroker._mpb: one libmpb session per Client object, a generic
 * call(op, name, args, block_ms) that sends any request of PROTOCOL.md with its arguments
 * encoded from Python values and decodes the reply, and the codec for those values.
 *
 * Values: what msgpack carries natively (None, bool, int within 64 bits, float, str, bytes and
 * lists and dicts of these, checked by exact type so that True stays True) goes as plain
 * msgpack, so C programs and `mpb get` read it; anything else (tuple, set, big int, subclasses,
 * user classes, values nested past 32 levels) is pickled into ext type MPBPY_EXT_PICKLE. With
 * pickle refused (serializer "msgpack") such values are a TypeError and such ext values come
 * back as Ext(type, data). The pure-Python package on top (mpbroker/) makes the proxies. */
#include "mpbpy.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 32 /* PROTOCOL.md: a key or value may nest 32 deep */

static PyObject *mpbpy_error;     /* _mpb.Error */
static PyTypeObject *ext_type;    /* _mpb.Ext, a struct sequence (type, data) */
static PyObject *pickle_dumps;    /* pickle.dumps and pickle.loads, imported once */
static PyObject *pickle_loads;
PyTypeObject *mpbpy_client_type;

/* ---- errors ---- */

PyObject *mpbpy_raise(int code, const char *msg) {
    PyObject *e = Py_BuildValue("(is)", code, msg && *msg ? msg : mpb_strerror(code));
    if (e) {
        PyErr_SetObject(mpbpy_error, e);
        Py_DECREF(e);
    }
    return NULL;
}

/* ---- encoding ---- */

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static int buf_grow(buf_t *b, size_t n) {
    if (b->len + n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n) cap *= 2;
    char *np = PyMem_Realloc(b->p, cap);
    if (!np) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

static int put(buf_t *b, const void *p, size_t n) {
    if (buf_grow(b, n)) return -1;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

/* A header byte followed by a big-endian integer of nbytes (0, 1, 2, 4 or 8). */
static int put_be(buf_t *b, uint8_t head, uint64_t v, int nbytes) {
    uint8_t t[9];
    t[0] = head;
    for (int i = 0; i < nbytes; i++) t[1 + i] = (uint8_t)(v >> (8 * (nbytes - 1 - i)));
    return put(b, t, 1 + (size_t)nbytes);
}

static int put_uint(buf_t *b, uint64_t v) {
    if (v < 128) return put_be(b, (uint8_t)v, 0, 0);
    if (v <= 0xff) return put_be(b, 0xcc, v, 1);
    if (v <= 0xffff) return put_be(b, 0xcd, v, 2);
    if (v <= 0xffffffff) return put_be(b, 0xce, v, 4);
    return put_be(b, 0xcf, v, 8);
}

static int put_int(buf_t *b, int64_t v) {
    if (v >= 0) return put_uint(b, (uint64_t)v);
    if (v >= -32) return put_be(b, (uint8_t)(0xe0 | (v + 32)), 0, 0);
    if (v >= INT8_MIN) return put_be(b, 0xd0, (uint64_t)v & 0xff, 1);
    if (v >= INT16_MIN) return put_be(b, 0xd1, (uint64_t)v & 0xffff, 2);
    if (v >= INT32_MIN) return put_be(b, 0xd2, (uint64_t)v & 0xffffffff, 4);
    return put_be(b, 0xd3, (uint64_t)v, 8);
}

/* The header of a str, bin, array or map of n (fix: the fix-size base, or 0 for none). */
static int put_head(buf_t *b, uint8_t fix, size_t fixmax, uint8_t h8, uint8_t h16, uint8_t h32,
                    size_t n) {
    if (fix && n <= fixmax) return put_be(b, (uint8_t)(fix | n), 0, 0);
    if (h8 && n <= 0xff) return put_be(b, h8, n, 1);
    if (n <= 0xffff) return put_be(b, h16, n, 2);
    if (n <= 0xffffffff) return put_be(b, h32, n, 4);
    PyErr_SetString(PyExc_ValueError, "value too large for msgpack");
    return -1;
}

static int put_pickle(buf_t *b, PyObject *obj) {
    PyObject *pk = PyObject_CallFunction(pickle_dumps, "Oi", obj, 4);
    if (!pk) return -1;
    char *p;
    Py_ssize_t n;
    int rc = PyBytes_AsStringAndSize(pk, &p, &n);
    if (!rc) {
        static const uint8_t fix[] = {0, 0xd4, 0xd5, 0, 0xd6, 0, 0, 0, 0xd7};
        size_t un = (size_t)n;
        if ((un == 1 || un == 2 || un == 4 || un == 8) && fix[un]) rc = put_be(b, fix[un], 0, 0);
        else if (un <= 0xff) rc = put_be(b, 0xc7, un, 1);
        else if (un <= 0xffff) rc = put_be(b, 0xc8, un, 2);
        else if (un <= 0xffffffff) rc = put_be(b, 0xc9, un, 4);
        else {
            PyErr_SetString(PyExc_ValueError, "pickled value too large");
            rc = -1;
        }
        uint8_t t = MPBPY_EXT_PICKLE;
        if (!rc) rc = put(b, &t, 1);
        if (!rc) rc = put(b, p, un);
    }
    Py_DECREF(pk);
    return rc;
}

static int encode(buf_t *b, PyObject *o, int use_pickle, int depth);

static int encode_native(buf_t *b, PyObject *o, int use_pickle, int depth) {
    if (o == Py_None) return put_be(b, 0xc0, 0, 0);
    if (o == Py_True) return put_be(b, 0xc3, 0, 0);
    if (o == Py_False) return put_be(b, 0xc2, 0, 0);
    if (PyLong_CheckExact(o)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (!overflow) return v == -1 && PyErr_Occurred() ? -1 : put_int(b, v);
        if (overflow > 0) {
            unsigned long long u = PyLong_AsUnsignedLongLong(o);
            if (!PyErr_Occurred()) return put_uint(b, u);
            PyErr_Clear();
        }
        return 1; /* past 64 bits */
    }
    if (PyFloat_CheckExact(o)) {
        double d = PyFloat_AS_DOUBLE(o);
        uint64_t u;
        memcpy(&u, &d, 8);
        return put_be(b, 0xcb, u, 8);
    }
    if (PyUnicode_CheckExact(o)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(o, &n);
        if (!s) {
            PyErr_Clear(); /* lone surrogates: not UTF-8, so not a msgpack str */
            return 1;
        }
        if (put_head(b, 0xa0, 31, 0xd9, 0xda, 0xdb, (size_t)n)) return -1;
        return put(b, s, (size_t)n);
    }
    if (PyBytes_CheckExact(o)) {
        size_t n = (size_t)PyBytes_GET_SIZE(o);
        if (put_head(b, 0, 0, 0xc4, 0xc5, 0xc6, n)) return -1;
        return put(b, PyBytes_AS_STRING(o), n);
    }
    if (depth >= MAX_DEPTH) return 1;
    if (PyList_CheckExact(o)) {
        Py_ssize_t n = PyList_GET_SIZE(o);
        if (put_head(b, 0x90, 15, 0, 0xdc, 0xdd, (size_t)n)) return -1;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o); i++) {
            if (i >= n) break; /* shrunk by a __reduce__ meanwhile */
            if (encode(b, PyList_GET_ITEM(o, i), use_pickle, depth + 1)) return -1;
        }
        if (PyList_GET_SIZE(o) != n) {
            PyErr_SetString(PyExc_RuntimeError, "list changed size during encoding");
            return -1;
        }
        return 0;
    }
    if (PyDict_CheckExact(o)) {
        Py_ssize_t n = PyDict_GET_SIZE(o), pos = 0, seen = 0;
        PyObject *k, *v;
        if (put_head(b, 0x80, 15, 0, 0xde, 0xdf, (size_t)n)) return -1;
        while (PyDict_Next(o, &pos, &k, &v)) {
            Py_INCREF(k);
            Py_INCREF(v);
            int rc = encode(b, k, use_pickle, depth + 1);
            if (!rc) rc = encode(b, v, use_pickle, depth + 1);
            Py_DECREF(k);
            Py_DECREF(v);
            if (rc) return -1;
            seen++;
        }
        if (seen != n) {
            PyErr_SetString(PyExc_RuntimeError, "dict changed size during encoding");
            return -1;
        }
        return 0;
    }
    return 1;
}

/* 0 done, -1 failed (exception set). */
static int encode(buf_t *b, PyObject *o, int use_pickle, int depth) {
    if (Py_EnterRecursiveCall(" while encoding a value")) return -1;
    size_t mark = b->len;
    int rc = encode_native(b, o, use_pickle, depth);
    if (rc > 0) {
        b->len = mark;
        if (use_pickle) rc = put_pickle(b, o);
        else {
            PyErr_Format(PyExc_TypeError,
                         "%s values are not msgpack-native and serializer is \"msgpack\" "
                         "(no pickle)",
                         Py_TYPE(o)->tp_name);
            rc = -1;
        }
    }
    Py_LeaveRecursiveCall();
    return rc;
}

PyObject *mpbpy_packb(PyObject *obj, int use_pickle) {
    buf_t b = {0};
    PyObject *r = NULL;
    if (!encode(&b, obj, use_pickle, 0)) r = PyBytes_FromStringAndSize(b.p, (Py_ssize_t)b.len);
    PyMem_Free(b.p);
    return r;
}

/* ---- decoding ---- */

typedef struct {
    const uint8_t *p;
    size_t len, off;
    int use_pickle;
} rd_t;

static PyObject *bad(const char *why) {
    PyErr_Format(PyExc_ValueError, "malformed msgpack: %s", why);
    return NULL;
}

static int take(rd_t *r, size_t n, const uint8_t **out) {
    if (r->len - r->off < n) return -1;
    *out = r->p + r->off;
    r->off += n;
    return 0;
}

static int take_be(rd_t *r, int nbytes, uint64_t *v) {
    const uint8_t *s;
    if (take(r, (size_t)nbytes, &s)) return -1;
    *v = 0;
    for (int i = 0; i < nbytes; i++) *v = (*v << 8) | s[i];
    return 0;
}

static PyObject *decode(rd_t *r, int depth);

static PyObject *decode_ext(rd_t *r, size_t n) {
    const uint8_t *t, *d;
    if (take(r, 1, &t) || take(r, n, &d)) return bad("truncated ext");
    if ((int8_t)t[0] == MPBPY_EXT_PICKLE && r->use_pickle)
        return PyObject_CallFunction(pickle_loads, "y#", (const char *)d, (Py_ssize_t)n);
    PyObject *e = PyStructSequence_New(ext_type);
    if (!e) return NULL;
    PyObject *ty = PyLong_FromLong((int8_t)t[0]);
    PyObject *data = PyBytes_FromStringAndSize((const char *)d, (Py_ssize_t)n);
    if (!ty || !data) {
        Py_XDECREF(ty);
        Py_XDECREF(data);
        Py_DECREF(e);
        return NULL;
    }
    PyStructSequence_SetItem(e, 0, ty);
    PyStructSequence_SetItem(e, 1, data);
    return e;
}

static PyObject *decode_array(rd_t *r, size_t n, int depth) {
    if (n > r->len - r->off) return bad("array longer than its bytes");
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; l && i < n; i++) {
        PyObject *v = decode(r, depth + 1);
        if (!v) Py_CLEAR(l);
        else PyList_SET_ITEM(l, (Py_ssize_t)i, v);
    }
    return l;
}

/* A key Python cannot hash (an array, from a C program) becomes a tuple, recursively; one that
 * still cannot be hashed (a map) makes the value malformed for Python. Takes k. */
static PyObject *hashable(PyObject *k) {
    if (PyList_CheckExact(k)) {
        Py_ssize_t n = PyList_GET_SIZE(k);
        PyObject *t = PyTuple_New(n);
        for (Py_ssize_t i = 0; t && i < n; i++) {
            PyObject *e = PyList_GET_ITEM(k, i);
            Py_INCREF(e);
            e = hashable(e);
            if (!e) Py_CLEAR(t);
            else PyTuple_SET_ITEM(t, i, e);
        }
        Py_DECREF(k);
        return t;
    }
    if (PyObject_Hash(k) == -1) {
        Py_DECREF(k);
        PyErr_Clear();
        return bad("a map key Python cannot hash");
    }
    return k;
}

static PyObject *decode_map(rd_t *r, size_t n, int depth) {
    if (n > (r->len - r->off) / 2) return bad("map longer than its bytes");
    PyObject *m = PyDict_New();
    for (size_t i = 0; m && i < n; i++) {
        PyObject *k = decode(r, depth + 1), *v = k ? decode(r, depth + 1) : NULL;
        if (k && v) k = hashable(k);
        if (!k || !v || PyDict_SetItem(m, k, v)) Py_CLEAR(m);
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    return m;
}

static PyObject *decode_len(rd_t *r, uint8_t kind, size_t n, int depth) {
    const uint8_t *s;
    switch (kind) {
    case 's':
        if (take(r, n, &s)) return bad("truncated str");
        return PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)n, "surrogateescape");
    case 'b':
        if (take(r, n, &s)) return bad("truncated bin");
        return PyBytes_FromStringAndSize((const char *)s, (Py_ssize_t)n);
    case 'a': return decode_array(r, n, depth);
    case 'm': return decode_map(r, n, depth);
    default: return decode_ext(r, n);
    }
}

static PyObject *decode(rd_t *r, int depth) {
    const uint8_t *h;
    uint64_t v;
    if (depth > MAX_DEPTH + 4) return bad("nested too deep");
    if (take(r, 1, &h)) return bad("truncated");
    uint8_t c = h[0];
    if (c <= 0x7f) return PyLong_FromLong(c);
    if (c >= 0xe0) return PyLong_FromLong((int8_t)c);
    if (c >= 0xa0 && c <= 0xbf) return decode_len(r, 's', c & 0x1f, depth);
    if (c >= 0x90 && c <= 0x9f) return decode_len(r, 'a', c & 0x0f, depth);
    if (c >= 0x80 && c <= 0x8f) return decode_len(r, 'm', c & 0x0f, depth);
    static const struct {
        uint8_t code, kind, nbytes;
    } tab[] = {
        {0xc4, 'b', 1}, {0xc5, 'b', 2}, {0xc6, 'b', 4}, {0xd9, 's', 1}, {0xda, 's', 2},
        {0xdb, 's', 4}, {0xdc, 'a', 2}, {0xdd, 'a', 4}, {0xde, 'm', 2}, {0xdf, 'm', 4},
        {0xc7, 'x', 1}, {0xc8, 'x', 2}, {0xc9, 'x', 4},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        if (tab[i].code != c) continue;
        if (take_be(r, tab[i].nbytes, &v)) return bad("truncated length");
        if (v > r->len) return bad("length past the end");
        return decode_len(r, tab[i].kind, (size_t)v, depth);
    }
    switch (c) {
    case 0xc0: Py_RETURN_NONE;
    case 0xc2: Py_RETURN_FALSE;
    case 0xc3: Py_RETURN_TRUE;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        if (take_be(r, 1 << (c - 0xcc), &v)) return bad("truncated int");
        return PyLong_FromUnsignedLongLong(v);
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int nb = 1 << (c - 0xd0);
        if (take_be(r, nb, &v)) return bad("truncated int");
        if (nb < 8 && (v >> (8 * nb - 1))) v |= ~(uint64_t)0 << (8 * nb); /* sign-extend */
        return PyLong_FromLongLong((long long)v);
    }
    case 0xca: {
        if (take_be(r, 4, &v)) return bad("truncated float");
        uint32_t u = (uint32_t)v;
        float f;
        memcpy(&f, &u, 4);
        return PyFloat_FromDouble(f);
    }
    case 0xcb: {
        if (take_be(r, 8, &v)) return bad("truncated float");
        double d;
        memcpy(&d, &v, 8);
        return PyFloat_FromDouble(d);
    }
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        return decode_ext(r, (size_t)1 << (c - 0xd4));
    }
    return bad("reserved byte 0xc1");
}

PyObject *mpbpy_unpackb(const void *buf, size_t len, int use_pickle) {
    rd_t r = {buf, len, 0, use_pickle};
    PyObject *o = decode(&r, 0);
    if (o && r.off != len) {
        Py_DECREF(o);
        return bad("bytes after the value");
    }
    return o;
}

/* ---- the Client type ---- */

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

static int client_init(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"endpoint", "authkey", "name", "connect_timeout_ms",
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
    Py_BEGIN_ALLOW_THREADS
    rc = mpb_connect(endpoint, key.buf, (size_t)key.len, &o, &c);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&key);
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
    mpbpy_client_t *cl = (mpbpy_client_t *)self;
    forget_if_inherited(cl);
    if (cl->c) {
        Py_BEGIN_ALLOW_THREADS
        mpb_close(&cl->c);
        Py_END_ALLOW_THREADS
    }
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
        Py_BEGIN_ALLOW_THREADS
        rc = mpb_poll(cl->c, slice);
        Py_END_ALLOW_THREADS
        if (rc > 0) rc = 0;
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
        Py_BEGIN_ALLOW_THREADS
        mpb_close(&cl->c);
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
        Py_BEGIN_ALLOW_THREADS
        rc = mpb_call(c, op, name, ap, alen, block_ms, &res, &rlen);
        Py_END_ALLOW_THREADS
        if (rc) snprintf(msg, sizeof msg, "%s", mpb_errmsg(c));
    }
    Py_XDECREF(packed);
    if (rc == 1) return NULL; /* a signal handler raised */
    if (rc) return mpbpy_raise(rc, msg);
    PyObject *v = mpbpy_unpackb(res, rlen, cl->use_pickle);
    if (slow) free(res);
    else mpb_free(res);
    return v;
}

static PyObject *client_close(PyObject *self, PyObject *noargs) {
    (void)noargs;
    mpbpy_client_t *cl = (mpbpy_client_t *)self;
    forget_if_inherited(cl);
    if (cl->c) {
        Py_BEGIN_ALLOW_THREADS
        mpb_close(&cl->c);
        Py_END_ALLOW_THREADS
    }
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
    {"call", (PyCFunction)(void (*)(void))client_call, METH_VARARGS | METH_KEYWORDS,
     "call(op, name, args=None, block_ms=0) -> the reply's value, decoded.\n"
     "Sends one request (op code, object name or None, list of arguments) and waits for the "
     "reply, with the GIL released. block_ms: how long the broker may park it (-1 forever). "
     "A failure raises Error(code, message)."},
    {"close", client_close, METH_NOARGS, "Ends the session (its locks are released at once)."},
    {"packb", client_packb, METH_O, "Encodes a value as this client would."},
    {"unpackb", client_unpackb, METH_O, "Decodes a value as this client would."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef client_getset[] = {
    {"session", client_get_session, NULL, "the broker's id for this session (0 when closed)",
     NULL},
    {"closed", client_get_closed, NULL, "True after close()", NULL},
    {"pid", client_get_pid, NULL, "the process that connected it", NULL},
    {"pickle", client_get_pickle, NULL, "False with serializer \"msgpack\"", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot client_slots[] = {
    {Py_tp_doc, "Client(endpoint, authkey, name='', connect_timeout_ms=5000, "
                "op_timeout_ms=10000, serializer='pickle'): one session on a broker."},
    {Py_tp_init, client_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, client_dealloc},
    {Py_tp_methods, client_methods},
    {Py_tp_getset, client_getset},
    {0, NULL},
};

static PyType_Spec client_spec = {"mpbroker._mpb.Client", sizeof(mpbpy_client_t), 0,
                                  Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, client_slots};

/* ---- module functions ---- */

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
    {"packb", (PyCFunction)(void (*)(void))mod_packb, METH_VARARGS | METH_KEYWORDS,
     "packb(obj, pickle=True) -> bytes: one msgpack value"},
    {"unpackb", (PyCFunction)(void (*)(void))mod_unpackb, METH_VARARGS | METH_KEYWORDS,
     "unpackb(data, pickle=True) -> the value"},
    {"strerror", mod_strerror, METH_O, "strerror(code) -> the error's text"},
    {"errname", mod_errname, METH_O, "errname(code) -> 'ENOKEY', ..."},
    {NULL, NULL, 0, NULL},
};

static PyStructSequence_Field ext_fields[] = {
    {"type", "the msgpack ext type (-128..127)"},
    {"data", "its bytes"},
    {NULL, NULL},
};
static PyStructSequence_Desc ext_desc = {
    "mpbroker._mpb.Ext", "A msgpack ext value the codec does not turn into a Python object.",
    ext_fields, 2};

static int add_constants(PyObject *m) {
#define XX(name, code, text)                                                                       \
    if (PyModule_AddIntConstant(m, "OP_" #name, code)) return -1;
#include "ops.def"
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
    PyModuleDef_HEAD_INIT, "mpbroker._mpb",
    "libmpb for Python: Client(endpoint, authkey).call(op, name, args, block_ms), the value "
    "codec, Error(code, message), op codes OP_* and error codes (negative, as libmpb's).",
    -1, mod_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__mpb(void);
PyMODINIT_FUNC PyInit__mpb(void) {
    PyObject *m = PyModule_Create(&mod_def);
    if (!m) return NULL;
    note_pid();
    if (pthread_atfork(NULL, NULL, note_pid)) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        goto fail;
    }
    PyObject *pk = PyImport_ImportModule("pickle");
    if (!pk) goto fail;
    pickle_dumps = PyObject_GetAttrString(pk, "dumps");
    pickle_loads = PyObject_GetAttrString(pk, "loads");
    Py_DECREF(pk);
    if (!pickle_dumps || !pickle_loads) goto fail;
    mpbpy_error = PyErr_NewExceptionWithDoc(
        "mpbroker._mpb.Error", "A failed call: args are (code, message); code is libmpb's "
                               "negative MPB_E* (see errname()).",
        NULL, NULL);
    if (!mpbpy_error || PyModule_AddObjectRef(m, "Error", mpbpy_error)) goto fail;
    ext_type = PyStructSequence_NewType(&ext_desc);
    if (!ext_type || PyModule_AddObjectRef(m, "Ext", (PyObject *)ext_type)) goto fail;
    mpbpy_client_type = (PyTypeObject *)PyType_FromSpec(&client_spec);
    if (!mpbpy_client_type || PyModule_AddObjectRef(m, "Client", (PyObject *)mpbpy_client_type))
        goto fail;
    if (add_constants(m)) goto fail;
#ifdef MPBPY_HAVE_POOL
    if (mpb_py_pool_init(m)) goto fail;
#endif
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
