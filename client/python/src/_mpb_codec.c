/* _mpb_codec.c - Python values as msgpack and back, for every call of the module.
 *
 * What msgpack carries natively (None, bool, int within 64 bits, float, str, bytes and lists
 * and dicts of these, checked by exact type so that True stays True) goes as plain msgpack, so
 * C programs and `mpb get` read it; anything else (tuple, set, big int, subclasses, user
 * classes, values nested past 32 levels) is pickled into ext type MPBPY_EXT_PICKLE. With pickle
 * refused (serializer "msgpack") such values are a TypeError and such ext values come back as
 * Ext(type, data). The growable buffer is shared with the pool's batch writer. */
#include "mpbpy.h"

#include <stdint.h>
#include <string.h>

static PyTypeObject *ext_type; /* _mpb.Ext, a struct sequence (type, data) */
static PyObject *pickle_dumps; /* pickle.dumps and pickle.loads, imported once */
static PyObject *pickle_loads;

#define MAX_DEPTH 32 /* PROTOCOL.md: a key or value may nest 32 deep */

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

/* A header byte followed by a big-endian integer of nbytes (0, 1, 2, 4 or 8). */
static int put_be(mpbpy_buf_t *b, uint8_t head, uint64_t v, int nbytes) {
    uint8_t t[9];
    t[0] = head;
    for (int i = 0; i < nbytes; i++)
        t[1 + i] = (uint8_t)(v >> (8 * (nbytes - 1 - i)));
    return mpbpy_buf_put(b, t, 1 + (size_t)nbytes);
}

static int put_uint(mpbpy_buf_t *b, uint64_t v) {
    if (v < 128) return put_be(b, (uint8_t)v, 0, 0);
    if (v <= 0xff) return put_be(b, 0xcc, v, 1);
    if (v <= 0xffff) return put_be(b, 0xcd, v, 2);
    if (v <= 0xffffffff) return put_be(b, 0xce, v, 4);
    return put_be(b, 0xcf, v, 8);
}

static int put_int(mpbpy_buf_t *b, int64_t v) {
    if (v >= 0) return put_uint(b, (uint64_t)v);
    if (v >= -32) return put_be(b, (uint8_t)(0xe0 | (v + 32)), 0, 0);
    if (v >= INT8_MIN) return put_be(b, 0xd0, (uint64_t)v & 0xff, 1);
    if (v >= INT16_MIN) return put_be(b, 0xd1, (uint64_t)v & 0xffff, 2);
    if (v >= INT32_MIN) return put_be(b, 0xd2, (uint64_t)v & 0xffffffff, 4);
    return put_be(b, 0xd3, (uint64_t)v, 8);
}

/* The header of a str, bin, array or map of n (fix: the fix-size base, or 0 for none). */
static int put_head(mpbpy_buf_t *b, uint8_t fix, size_t fixmax, uint8_t h8, uint8_t h16,
                    uint8_t h32, size_t n) {
    if (fix && n <= fixmax) return put_be(b, (uint8_t)(fix | n), 0, 0);
    if (h8 && n <= 0xff) return put_be(b, h8, n, 1);
    if (n <= 0xffff) return put_be(b, h16, n, 2);
    if (n <= 0xffffffff) return put_be(b, h32, n, 4);
    PyErr_SetString(PyExc_ValueError, "value too large for msgpack");
    return -1;
}

int mpbpy_buf_array(mpbpy_buf_t *b, size_t n) {
    return put_head(b, 0x90, 15, 0, 0xdc, 0xdd, n);
}

int mpbpy_buf_bin(mpbpy_buf_t *b, size_t n) {
    return put_head(b, 0, 0, 0xc4, 0xc5, 0xc6, n);
}

static int put_pickle(mpbpy_buf_t *b, PyObject *obj) {
    PyObject *pk = PyObject_CallFunction(pickle_dumps, "Oi", obj, 4);
    if (!pk) return -1;
    char *p;
    Py_ssize_t n;
    int rc = PyBytes_AsStringAndSize(pk, &p, &n);
    if (!rc) {
        static const uint8_t fix[] = {0, 0xd4, 0xd5, 0, 0xd6, 0, 0, 0, 0xd7};
        size_t un = (size_t)n;
        if ((un == 1 || un == 2 || un == 4 || un == 8) && fix[un])
            rc = put_be(b, fix[un], 0, 0);
        else if (un <= 0xff)
            rc = put_be(b, 0xc7, un, 1);
        else if (un <= 0xffff)
            rc = put_be(b, 0xc8, un, 2);
        else if (un <= 0xffffffff)
            rc = put_be(b, 0xc9, un, 4);
        else {
            PyErr_SetString(PyExc_ValueError, "pickled value too large");
            rc = -1;
        }
        uint8_t t = MPBPY_EXT_PICKLE;
        if (!rc) rc = mpbpy_buf_put(b, &t, 1);
        if (!rc) rc = mpbpy_buf_put(b, p, un);
    }
    Py_DECREF(pk);
    return rc;
}

static int encode(mpbpy_buf_t *b, PyObject *o, int use_pickle, int depth);

static int encode_native(mpbpy_buf_t *b, PyObject *o, int use_pickle, int depth) {
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
        return mpbpy_buf_put(b, s, (size_t)n);
    }
    if (PyBytes_CheckExact(o)) {
        size_t n = (size_t)PyBytes_GET_SIZE(o);
        if (mpbpy_buf_bin(b, n)) return -1;
        return mpbpy_buf_put(b, PyBytes_AS_STRING(o), n);
    }
    if (depth >= MAX_DEPTH) return 1;
    if (PyList_CheckExact(o)) {
        Py_ssize_t n = PyList_GET_SIZE(o);
        if (mpbpy_buf_array(b, (size_t)n)) return -1;
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
static int encode(mpbpy_buf_t *b, PyObject *o, int use_pickle, int depth) {
    if (Py_EnterRecursiveCall(" while encoding a value")) return -1;
    size_t mark = b->len;
    int rc = encode_native(b, o, use_pickle, depth);
    if (rc > 0) {
        b->len = mark;
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
    mpbpy_buf_t b = {0};
    PyObject *r = NULL;
    if (!encode(&b, obj, use_pickle, 0)) r = PyBytes_FromStringAndSize(b.p, (Py_ssize_t)b.len);
    PyMem_Free(b.p);
    return r;
}

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
    for (int i = 0; i < nbytes; i++)
        *v = (*v << 8) | s[i];
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
        {0xc4, 'b', 1},
        {0xc5, 'b', 2},
        {0xc6, 'b', 4},
        {0xd9, 's', 1},
        {0xda, 's', 2},
        {0xdb, 's', 4},
        {0xdc, 'a', 2},
        {0xdd, 'a', 4},
        {0xde, 'm', 2},
        {0xdf, 'm', 4},
        {0xc7, 'x', 1},
        {0xc8, 'x', 2},
        {0xc9, 'x', 4},
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
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        if (take_be(r, 1 << (c - 0xcc), &v)) return bad("truncated int");
        return PyLong_FromUnsignedLongLong(v);
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
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
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: return decode_ext(r, (size_t)1 << (c - 0xd4));
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
