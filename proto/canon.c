/* canon.c - keys are hashed and compared by their canonical encoding (shortest headers,
 * float32 widened), so that 1 sent as uint8 and 1 sent as int64 are the same key; values are
 * ordered for list.sort the way Python orders them. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "mpbproto.h"

static size_t minhdr_str(uint32_t n) {
    return n <= 31 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
}
static size_t minhdr_bin(uint32_t n) {
    return n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
}
static size_t minhdr_coll(uint32_t n) {
    return n <= 15 ? 1 : n <= 0xffff ? 3 : 5;
}

/* Walks one value; with out == NULL only checks canonicity. Returns false when not canonical
 * (check mode) or on malformed input. */
static bool canon_rec(mpb__rd_t *r, mpb__buf_t *out) {
    const uint8_t *start = r->p;
    switch (mpb__rd_type(r)) {
    case MPB__MT_INT: {
        /* Compare bytes, not lengths: 256 as int16 (d1 01 00) is as long as cd 01 00. */
        int64_t v;
        uint64_t u;
        uint8_t t[9];
        size_t tl;
        if (mpb__rd_int(r, &v) == 0)
            tl = mpb__enc_int(t, v);
        else if (mpb__rd_uint(r, &u) == 0)
            tl = mpb__enc_uint(t, u);
        else
            return false;
        if (!out) return (size_t)(r->p - start) == tl && memcmp(start, t, tl) == 0;
        mpb__w_raw(out, t, tl);
        return true;
    }
    case MPB__MT_FLOAT: {
        double d;
        bool wide = *r->p == 0xcb;
        if (mpb__rd_double(r, &d)) return false;
        if (!out) return wide;
        mpb__w_double(out, d);
        return true;
    }
    case MPB__MT_STR: {
        const char *s;
        uint32_t n;
        if (mpb__rd_str(r, &s, &n)) return false;
        if (!out) return (size_t)(r->p - start) - n == minhdr_str(n);
        mpb__w_str(out, s, n);
        return true;
    }
    case MPB__MT_BIN: {
        const uint8_t *p;
        uint32_t n;
        if (mpb__rd_bin(r, &p, &n)) return false;
        if (!out) return (size_t)(r->p - start) - n == minhdr_bin(n);
        mpb__w_bin(out, p, n);
        return true;
    }
    case MPB__MT_ARRAY:
    case MPB__MT_MAP: {
        bool map = mpb__rd_type(r) == MPB__MT_MAP;
        uint32_t n;
        if ((map ? mpb__rd_map(r, &n) : mpb__rd_array(r, &n))) return false;
        if (!out && (size_t)(r->p - start) != minhdr_coll(n)) return false;
        if (out) map ? mpb__w_map(out, n) : mpb__w_array(out, n);
        uint64_t items = map ? (uint64_t)n * 2 : n;
        for (uint64_t i = 0; i < items; i++)
            if (!canon_rec(r, out)) return false;
        return true;
    }
    case MPB__MT_NIL:
    case MPB__MT_BOOL:
    case MPB__MT_EXT: {
        const uint8_t *v;
        size_t n;
        if (mpb__rd_span(r, &v, &n)) return false;
        if (out) mpb__w_raw(out, v, n);
        return true;
    }
    default: return false;
    }
}

bool mpb__canon_is(const uint8_t *v, size_t n) {
    /* the common keys first: small ints and short strings */
    if (n == 1 && (v[0] <= 0x7f || v[0] >= 0xe0)) return true;
    if (n >= 1 && v[0] >= 0xa0 && v[0] <= 0xbf) return n == 1u + (v[0] & 0x1fu);
    mpb__rd_t r = {v, v + n};
    return canon_rec(&r, NULL) && r.p == r.end;
}

void mpb__canon(const uint8_t *v, size_t n, mpb__buf_t *out) {
    mpb__rd_t r = {v, v + n};
    canon_rec(&r, out);
}

/* ---- ordering ---- */

enum { C_NUM, C_STR, C_BIN, C_ARR, C_NONE };

static int klass(const mpb__rd_t *r) {
    switch (mpb__rd_type(r)) {
    case MPB__MT_INT:
    case MPB__MT_FLOAT:
    case MPB__MT_BOOL: return C_NUM;
    case MPB__MT_STR: return C_STR;
    case MPB__MT_BIN: return C_BIN;
    case MPB__MT_ARRAY: return C_ARR;
    default: return C_NONE;
    }
}

static const char *tname(const mpb__rd_t *r) {
    switch (mpb__rd_type(r)) {
    case MPB__MT_NIL: return "nil";
    case MPB__MT_BOOL: return "bool";
    case MPB__MT_INT: return "int";
    case MPB__MT_FLOAT: return "float";
    case MPB__MT_STR: return "str";
    case MPB__MT_BIN: return "bytes";
    case MPB__MT_ARRAY: return "list";
    case MPB__MT_MAP: return "dict";
    case MPB__MT_EXT: return "ext";
    default: return "invalid";
    }
}

/* A number as an exact integer when it is one, else as a double. */
typedef struct {
    bool is_int, neg;
    uint64_t u;
    double d;
} num_t;

static int rd_num(mpb__rd_t *r, num_t *n) {
    memset(n, 0, sizeof *n);
    int t = mpb__rd_type(r);
    if (t == MPB__MT_BOOL) {
        bool b;
        mpb__rd_bool(r, &b);
        n->is_int = true;
        n->u = b;
        return 0;
    }
    if (t == MPB__MT_FLOAT) return mpb__rd_double(r, &n->d);
    int64_t v;
    if (mpb__rd_int(r, &v) == 0) {
        n->is_int = true;
        n->neg = v < 0;
        n->u = (uint64_t)v;
        return 0;
    }
    n->is_int = true;
    return mpb__rd_uint(r, &n->u);
}

/* An integer against a double, exactly as Python does it: converting the integer to a double
 * would round (2^53 + 1 == 2.0**53, INT64_MAX == 2.0**63) and break the order. */
static int cmp_int_double(bool neg, uint64_t u, double d) {
    if (isnan(d)) return 0; /* as Python: NaN is neither less nor greater */
    if (neg) {
        if (d >= 0) return -1;
        if (d < -9223372036854775808.0) return 1; /* below INT64_MIN, or -inf */
        double f = floor(d);                      /* in [-2^63, -1]: exact as int64 */
        int64_t i = (int64_t)u, fi = (int64_t)f;
        if (i != fi) return i < fi ? -1 : 1;
        return f < d ? -1 : 0;
    }
    if (d < 0) return 1;
    if (d >= 18446744073709551616.0) return -1; /* 2^64 and above, or +inf */
    double f = floor(d);                        /* in [0, 2^64): exact as uint64 */
    uint64_t fu = (uint64_t)f;
    if (u != fu) return u < fu ? -1 : 1;
    return f < d ? -1 : 0;
}

static int cmp_num(const num_t *a, const num_t *b) {
    if (a->is_int && b->is_int) {
        if (a->neg != b->neg) return a->neg ? -1 : 1;
        int64_t x = (int64_t)a->u, y = (int64_t)b->u;
        if (a->neg) return x < y ? -1 : x > y;
        return a->u < b->u ? -1 : a->u > b->u;
    }
    if (a->is_int) return cmp_int_double(a->neg, a->u, b->d);
    if (b->is_int) return -cmp_int_double(b->neg, b->u, a->d);
    if (isnan(a->d) || isnan(b->d)) return 0;
    return a->d < b->d ? -1 : a->d > b->d;
}

static int cmp_bytes(const void *a, uint32_t an, const void *b, uint32_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c) return c < 0 ? -1 : 1;
    return an < bn ? -1 : an > bn;
}

static int cmp_rec(mpb__rd_t *a, mpb__rd_t *b, int *out, char *err, size_t errlen) {
    int ka = klass(a), kb = klass(b);
    if (ka == C_NONE || kb == C_NONE || ka != kb) {
        snprintf(err, errlen, "'<' not supported between instances of '%s' and '%s'", tname(a),
                 tname(b));
        return MPB_ETYPE;
    }
    switch (ka) {
    case C_NUM: {
        num_t x, y;
        if (rd_num(a, &x) || rd_num(b, &y)) return MPB_EPROTO;
        *out = cmp_num(&x, &y);
        return 0;
    }
    case C_STR: {
        const char *x, *y;
        uint32_t xn, yn;
        if (mpb__rd_str(a, &x, &xn) || mpb__rd_str(b, &y, &yn)) return MPB_EPROTO;
        *out = cmp_bytes(x, xn, y, yn); /* UTF-8 byte order is code point order */
        return 0;
    }
    case C_BIN: {
        const uint8_t *x, *y;
        uint32_t xn, yn;
        if (mpb__rd_bin(a, &x, &xn) || mpb__rd_bin(b, &y, &yn)) return MPB_EPROTO;
        *out = cmp_bytes(x, xn, y, yn);
        return 0;
    }
    default: {
        uint32_t xn, yn;
        if (mpb__rd_array(a, &xn) || mpb__rd_array(b, &yn)) return MPB_EPROTO;
        uint32_t m = xn < yn ? xn : yn;
        for (uint32_t i = 0; i < m; i++) {
            /* As Python, skip equal elements first ([None] == [None], [None, 1] < [None, 2]):
             * only the first pair that differs has to be ordered. Same bytes, same value. */
            mpb__rd_t ea = *a, eb = *b;
            const uint8_t *va, *vb;
            size_t na, nb;
            if (mpb__rd_span(&ea, &va, &na) || mpb__rd_span(&eb, &vb, &nb)) return MPB_EPROTO;
            if (na == nb && memcmp(va, vb, na) == 0) {
                *a = ea;
                *b = eb;
                continue;
            }
            int rc = cmp_rec(a, b, out, err, errlen);
            if (rc) return rc;
            if (*out) {
                return 0;
            }
        }
        *out = xn < yn ? -1 : xn > yn;
        return 0;
    }
    }
}

int mpb__mp_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, int *cmp,
                    char *err, size_t errlen) {
    mpb__rd_t x = {a, a + alen}, y = {b, b + blen};
    return cmp_rec(&x, &y, cmp, err, errlen);
}

/* ---- samples for logs ---- */

/* The shortest text that reads back as d, with a ".0" when it would look like an integer:
 * the float key 1.0 is not the integer key 1, and a message must not say it is. */
static void float_sample(double d, char *out, size_t outlen) {
    char t[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(t, sizeof t, "%.*g", prec, d);
        if (strtod(t, NULL) == d || prec == 17) break;
    }
    if (isfinite(d) && !strpbrk(t, ".en")) strcat(t, ".0");
    snprintf(out, outlen, "%s", t);
}

void mpb__mp_sample(const uint8_t *v, size_t n, char *out, size_t outlen) {
    if (!outlen) return;
    mpb__rd_t r = {v, v + n};
    int64_t i;
    uint64_t u;
    double d;
    const char *s;
    uint32_t sl;
    const uint8_t *b;
    if (mpb__rd_int(&r, &i) == 0)
        snprintf(out, outlen, "%lld", (long long)i);
    else if (mpb__rd_uint(&r, &u) == 0)
        snprintf(out, outlen, "%llu", (unsigned long long)u);
    else if (mpb__rd_double(&r, &d) == 0)
        float_sample(d, out, outlen);
    else if (mpb__rd_str(&r, &s, &sl) == 0) {
        size_t k = 0;
        out[k++] = '"';
        for (uint32_t j = 0; j < sl && k + 5 < outlen; j++)
            out[k++] = (s[j] >= ' ' && s[j] <= '~') ? s[j] : '?';
        if (k + 1 < outlen) out[k++] = '"';
        out[k < outlen ? k : outlen - 1] = 0;
    } else if (mpb__rd_bin(&r, &b, &sl) == 0)
        snprintf(out, outlen, "<%u bytes>", sl);
    else
        snprintf(out, outlen, "<%s>", tname(&r));
}
