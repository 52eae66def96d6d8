/* _mpb_codec.c - Python values as msgpack and back, for every call of the module.
 *
 * What msgpack carries natively (None, bool, int within 64 bits, float, str, bytes and lists
 * and dicts of these, checked by exact type so that True stays True) goes as plain msgpack, so
 * C programs and `mpb get` read it; anything else (tuple, set, big int, subclasses, user
 * classes, values nested past 32 levels) is pickled into ext type MPBPY_EXT_PICKLE. With pickle
 * refused (serializer "msgpack") such values are a TypeError and such ext values come back as
 * Ext(type, data). The msgpack itself is written and read by libmpb's public builder and reader
 * (mpb/msgpack.h); this file maps Python objects onto them. The byte buffer is the pool's batch
 * writer's. */
#include "mpbpy.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

static PyTypeObject *ext_type; /* _mpb.Ext, a struct sequence (type, data) */
static PyObject *pickle_dumps; /* pickle.dumps and pickle.loads, imported once */
static PyObject *pickle_loads;

#define MAX_DEPTH MPB_MP_MAX_DEPTH /* PROTOCOL.md: a key or value may nest 32 deep */

/* ---- the byte buffer the pool's batch writer appends to ---- */

static int buf_grow(mpbpy_buf_t *b, size_t n) {
    if (b->len + n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n)
        cap *= 2;
    char *np = PyMem_Realloc(b->p, cap);
    if (!np) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

int mpbpy_buf_put(mpbpy_buf_t *b, const void *p, size_t n) {
    if (buf_grow(b, n)) return -1;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

/* A libmpb builder's failure as a Python exception; returns -1. */
static int mp_failed(int rc) {
    if (rc == MPB_ENOMEM)
        PyErr_NoMemory();
    else
        PyErr_SetString(PyExc_ValueError, "value too large for msgpack");
    return -1;
}

/* The header of an array of n items, or of a bin of n bytes, written by libmpb's builder. */
static int buf_head(mpbpy_buf_t *b, size_t n, int bin) {
    unsigned char h[8];
    mpb_mpbuf_t w;
    mpb_mp_init_buf(&w, h, sizeof h, MPB_MP_FIXED);
    int rc = n > UINT32_MAX ? MPB_EINVAL
             : bin          ? mpb_mp_bin_head(&w, n)
                            : mpb_mp_array(&w, (uint32_t)n);
    return rc ? mp_failed(rc) : mpbpy_buf_put(b, w.data, w.len);
}

int mpbpy_buf_array(mpbpy_buf_t *b, size_t n) {
    return buf_head(b, n, 0);
}

int mpbpy_buf_bin(mpbpy_buf_t *b, size_t n) {
    return buf_head(b, n, 1);
}

/* ---- Python -> msgpack ---- */

/* 0, or -1 with the exception a libmpb builder's failure rc stands for. */
static int mp_rc(int rc) {
    return rc ? mp_failed(rc) : 0;
}

static int put_pickle(mpb_mpbuf_t *b, PyObject *obj) {
    PyObject *pk = PyObject_CallFunction(pickle_dumps, "Oi", obj, 4);
    if (!pk) return -1;
    char *p;
    Py_ssize_t n;
    int rc = PyBytes_AsStringAndSize(pk, &p, &n);
    if (!rc) {
        /* A 16-byte pickle ((1,) is one) goes as ext 8, as it always has, not fixext 16: keys
         * compare by their bytes, and another form would make it another key. */
        static const uint8_t ext8_16[] = {0xc7, 16, MPBPY_EXT_PICKLE};
        if (n == 16) {
            mpb_mp_append(b, ext8_16, sizeof ext8_16);
            rc = mpb_mp_append(b, p, 16);
        } else {
            rc = mpb_mp_ext(b, MPBPY_EXT_PICKLE, p, (size_t)n);
        }
        if (rc) rc = mp_failed(rc);
    }
    Py_DECREF(pk);
    return rc;
}

static int encode(mpb_mpbuf_t *b, PyObject *o, int use_pickle, int depth);

/* 0 done, -1 failed (exception set), 1 not msgpack-native: then nothing was written. */
static int encode_native(mpb_mpbuf_t *b, PyObject *o, int use_pickle, int depth) {
    if (o == Py_None) return mp_rc(mpb_mp_nil_fast(b));
    if (o == Py_True || o == Py_False) return mp_rc(mpb_mp_bool_fast(b, o == Py_True));
    if (PyLong_CheckExact(o)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (!overflow) return v == -1 && PyErr_Occurred() ? -1 : mp_rc(mpb_mp_i64_fast(b, v));
        if (overflow > 0) {
            unsigned long long u = PyLong_AsUnsignedLongLong(o);
            if (!PyErr_Occurred()) return mp_rc(mpb_mp_u64(b, u));
            PyErr_Clear();
        }
        return 1; /* past 64 bits */
    }
    if (PyFloat_CheckExact(o)) return mp_rc(mpb_mp_double(b, PyFloat_AS_DOUBLE(o)));
    if (PyUnicode_CheckExact(o)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(o, &n);
        if (!s) {
            PyErr_Clear(); /* lone surrogates: not UTF-8, so not a msgpack str */
            return 1;
        }
        return mp_rc(mpb_mp_str_fast(b, s, (size_t)n));
    }
    if (PyBytes_CheckExact(o))
        return mp_rc(mpb_mp_bin(b, PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o)));
    if (depth >= MAX_DEPTH) return 1;
    if (PyList_CheckExact(o)) {
        Py_ssize_t n = PyList_GET_SIZE(o);
        if ((size_t)n > UINT32_MAX) return mp_failed(MPB_EINVAL);
        if (mp_rc(mpb_mp_array_fast(b, (uint32_t)n))) return -1;
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
        if ((size_t)n > UINT32_MAX) return mp_failed(MPB_EINVAL);
        if (mp_rc(mpb_mp_map_fast(b, (uint32_t)n))) return -1;
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
static int encode(mpb_mpbuf_t *b, PyObject *o, int use_pickle, int depth) {
    if (Py_EnterRecursiveCall(" while encoding a value")) return -1;
    int rc = encode_native(b, o, use_pickle, depth);
    if (rc > 0) {
        if (use_pickle)
            rc = put_pickle(b, o);
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
    unsigned char mem[512]; /* most values fit: no allocation for them */
    mpb_mpbuf_t b;
    mpb_mp_init_buf(&b, mem, sizeof mem, MPB_MP_GROW);
    PyObject *r = NULL;
    if (!encode(&b, obj, use_pickle, 0))
        r = PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.len);
    mpb_mp_reset(&b);
    return r;
}

/* ---- msgpack -> Python ---- */

static PyObject *bad(const char *why) {
    PyErr_Format(PyExc_ValueError, "malformed msgpack: %s", why);
    return NULL;
}

static PyObject *decode(mpb_mpreader_t *r, int use_pickle, int depth);

static PyObject *decode_ext(const mpb_mpval_t *v, int use_pickle) {
    if (v->ext_type == MPBPY_EXT_PICKLE && use_pickle)
        return PyObject_CallFunction(pickle_loads, "y#", (const char *)v->p, (Py_ssize_t)v->n);
    PyObject *e = PyStructSequence_New(ext_type);
    if (!e) return NULL;
    PyObject *ty = PyLong_FromLong(v->ext_type);
    PyObject *data = PyBytes_FromStringAndSize(v->p, (Py_ssize_t)v->n);
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

static PyObject *decode_array(mpb_mpreader_t *r, uint32_t n, int use_pickle, int depth) {
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (uint32_t i = 0; l && i < n; i++) {
        PyObject *v = decode(r, use_pickle, depth + 1);
        if (!v)
            Py_CLEAR(l);
        else
            PyList_SET_ITEM(l, (Py_ssize_t)i, v);
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
            if (!e)
                Py_CLEAR(t);
            else
                PyTuple_SET_ITEM(t, i, e);
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

static PyObject *decode_map(mpb_mpreader_t *r, uint32_t n, int use_pickle, int depth) {
    PyObject *m = PyDict_New();
    for (uint32_t i = 0; m && i < n; i++) {
        PyObject *k = decode(r, use_pickle, depth + 1),
                 *v = k ? decode(r, use_pickle, depth + 1) : NULL;
        if (k && v) k = hashable(k);
        if (!k || !v || PyDict_SetItem(m, k, v)) Py_CLEAR(m);
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    return m;
}

/* The next value at r, a reader that checks as it reads (mpb_mpr_init_stream): every count it
 * gives is within the bytes left. depth: the arrays and maps around the value. */
static PyObject *decode(mpb_mpreader_t *r, int use_pickle, int depth) {
    mpb_mpval_t v;
    /* a value nests 32 deep; a batch or a result list holds such values in arrays of its own */
    if (depth > MPB_MP_FRAME_DEPTH) return bad("nested too deep");
    int rc = mpb_mpr_next_fast(r, &v);
    if (rc)
        return bad(rc == MPB_EEMPTY ? "truncated"
                                    : "not a value (cut short, a reserved byte, or "
                                      "more items than bytes)");
    switch (v.type) {
    case MPB_MP_NIL: Py_RETURN_NONE;
    case MPB_MP_BOOL: return PyBool_FromLong((long)v.i);
    case MPB_MP_INT:
        if (v.big) return PyLong_FromUnsignedLongLong(v.u);
#if LONG_MAX >= INT64_MAX /* PyLong_FromLong has the fast path for small values */
        return PyLong_FromLong((long)v.i);
#else
        return PyLong_FromLongLong(v.i);
#endif
    case MPB_MP_FLOAT: return PyFloat_FromDouble(v.d);
    case MPB_MP_STR: return PyUnicode_DecodeUTF8(v.p, (Py_ssize_t)v.n, "surrogateescape");
    case MPB_MP_BIN: return PyBytes_FromStringAndSize(v.p, (Py_ssize_t)v.n);
    case MPB_MP_EXT: return decode_ext(&v, use_pickle);
    case MPB_MP_ARRAY: return decode_array(r, v.n, use_pickle, depth);
    case MPB_MP_MAP: return decode_map(r, v.n, use_pickle, depth);
    }
    return bad("unknown type");
}

PyObject *mpbpy_unpackb(const void *buf, size_t len, int use_pickle) {
    mpb_mpreader_t r;
    if (mpb_mpr_init_stream(&r, buf, len)) return bad("no bytes");
    PyObject *o = decode(&r, use_pickle, 0);
    if (o && mpb_mpr_left(&r)) {
        Py_DECREF(o);
        return bad("bytes after the value");
    }
    return o;
}

static PyStructSequence_Field ext_fields[] = {
    {"type", "the msgpack ext type (-128..127)"},
    {"data", "its bytes"                       },
    {NULL,   NULL                              },
};
static PyStructSequence_Desc ext_desc = {
    "mpbroker._mpb.Ext", "A msgpack ext value the codec does not turn into a Python object.",
    ext_fields, 2};

int mpbpy_codec_init(PyObject *m) {
    PyObject *pk = PyImport_ImportModule("pickle");
    if (!pk) return -1;
    pickle_dumps = PyObject_GetAttrString(pk, "dumps");
    pickle_loads = PyObject_GetAttrString(pk, "loads");
    Py_DECREF(pk);
    if (!pickle_dumps || !pickle_loads) return -1;
    ext_type = PyStructSequence_NewType(&ext_desc);
    if (!ext_type || PyModule_AddObjectRef(m, "Ext", (PyObject *)ext_type)) return -1;
    return 0;
}
