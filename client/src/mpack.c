/* mpack.c - the public msgpack builder (mpb_mp_*) and reader (mpb_mpr_*): thin, checked
 * wrappers over the codec the broker and the client already share, so a C program packs a
 * pool call's arguments or walks a describe map without a second msgpack library. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- builder ---- */

/* The public buffer and the codec's have the same three fields; every append goes through
 * one conversion so the codec's growth and out-of-memory rules hold for both. */
typedef void (*put_fn)(mpb__buf_t *w, const void *arg);

static int put(mpb_mpbuf_t *b, put_fn fn, const void *arg) {
    if (!b) return MPB_EINVAL;
    if (b->err) return b->err;
    mpb__buf_t w = {.p = b->data, .len = b->len, .cap = b->cap};
    fn(&w, arg);
    b->data = w.p;
    b->cap = w.cap;
    if (w.oom) return b->err = MPB_ENOMEM; /* the codec keeps len where it was */
    b->len = w.len;
    return 0;
}

typedef struct span {
    const void *p;
    size_t n;
    int64_t i;
    uint64_t u;
    double d;
} span_t;

static void w_nil(mpb__buf_t *w, const void *a) {
    (void)a;
    mpb__w_nil(w);
}
static void w_bool(mpb__buf_t *w, const void *a) {
    mpb__w_bool(w, ((const span_t *)a)->i != 0);
}
static void w_i64(mpb__buf_t *w, const void *a) {
    mpb__w_int(w, ((const span_t *)a)->i);
}
static void w_u64(mpb__buf_t *w, const void *a) {
    mpb__w_uint(w, ((const span_t *)a)->u);
}
static void w_double(mpb__buf_t *w, const void *a) {
    mpb__w_double(w, ((const span_t *)a)->d);
}
static void w_array(mpb__buf_t *w, const void *a) {
    mpb__w_array(w, (uint32_t)((const span_t *)a)->u);
}
static void w_map(mpb__buf_t *w, const void *a) {
    mpb__w_map(w, (uint32_t)((const span_t *)a)->u);
}
static void w_raw(mpb__buf_t *w, const void *a) {
    const span_t *s = a;
    mpb__w_raw(w, s->p, s->n);
}
static void w_str(mpb__buf_t *w, const void *a) {
    const span_t *s = a;
    mpb__w_str(w, s->p, s->n);
}
static void w_bin(mpb__buf_t *w, const void *a) {
    const span_t *s = a;
    mpb__w_bin(w, s->p, s->n);
}

/* ext: fixext where the length is one of theirs, else ext 8/16/32 */
static void w_ext(mpb__buf_t *w, const void *a) {
    const span_t *s = a;
    uint8_t h[6];
    size_t hn = 0;
    switch (s->n) {
    case 1: h[hn++] = 0xd4; break;
    case 2: h[hn++] = 0xd5; break;
    case 4: h[hn++] = 0xd6; break;
    case 8: h[hn++] = 0xd7; break;
    case 16: h[hn++] = 0xd8; break;
    default:
        if (s->n <= 0xff) {
            h[hn++] = 0xc7;
        } else if (s->n <= 0xffff) {
            h[hn++] = 0xc8;
            h[hn++] = (uint8_t)(s->n >> 8);
        } else {
            h[hn++] = 0xc9;
            h[hn++] = (uint8_t)(s->n >> 24);
            h[hn++] = (uint8_t)(s->n >> 16);
            h[hn++] = (uint8_t)(s->n >> 8);
        }
        h[hn++] = (uint8_t)s->n;
    }
    h[hn++] = (uint8_t)(int8_t)s->i;
    mpb__w_raw(w, h, hn);
    mpb__w_raw(w, s->p, s->n);
}

int mpb_mp_nil(mpb_mpbuf_t *b) {
    return put(b, w_nil, NULL);
}

int mpb_mp_bool(mpb_mpbuf_t *b, int v) {
    return put(b, w_bool, &(span_t){.i = v});
}

int mpb_mp_i64(mpb_mpbuf_t *b, int64_t v) {
    return put(b, w_i64, &(span_t){.i = v});
}

int mpb_mp_u64(mpb_mpbuf_t *b, uint64_t v) {
    return put(b, w_u64, &(span_t){.u = v});
}

int mpb_mp_double(mpb_mpbuf_t *b, double v) {
    return put(b, w_double, &(span_t){.d = v});
}

/* lengths past what a msgpack header can say are refused before anything is written */
static int check_span(mpb_mpbuf_t *b, const void *p, size_t len) {
    if (!b || (!p && len) || len > UINT32_MAX) return MPB_EINVAL;
    return 0;
}

int mpb_mp_str(mpb_mpbuf_t *b, const char *s, size_t len) {
    int rc = check_span(b, s, len);
    return rc ? rc : put(b, w_str, &(span_t){.p = s, .n = len});
}

int mpb_mp_cstr(mpb_mpbuf_t *b, const char *s) {
    if (!s) return MPB_EINVAL;
    return mpb_mp_str(b, s, strlen(s));
}

int mpb_mp_bin(mpb_mpbuf_t *b, const void *p, size_t len) {
    int rc = check_span(b, p, len);
    return rc ? rc : put(b, w_bin, &(span_t){.p = p, .n = len});
}

int mpb_mp_ext(mpb_mpbuf_t *b, int type, const void *p, size_t len) {
    int rc = check_span(b, p, len);
    if (!rc && (type < -128 || type > 127)) rc = MPB_EINVAL;
    return rc ? rc : put(b, w_ext, &(span_t){.p = p, .n = len, .i = type});
}

int mpb_mp_array(mpb_mpbuf_t *b, uint32_t n) {
    return put(b, w_array, &(span_t){.u = n});
}

int mpb_mp_map(mpb_mpbuf_t *b, uint32_t n) {
    return put(b, w_map, &(span_t){.u = n});
}

int mpb_mp_raw(mpb_mpbuf_t *b, const void *p, size_t len) {
    if (!b || !p || mpb__mp_check1(p, len, MPB__MAX_DEPTH) != (long)len) return MPB_EINVAL;
    return put(b, w_raw, &(span_t){.p = p, .n = len});
}

void mpb_mp_reset(mpb_mpbuf_t *b) {
    if (!b) return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

int mpb_mp_take(mpb_mpbuf_t *b, void **out, size_t *len) {
    if (!b || !out || !len) return MPB_EINVAL;
    *out = NULL;
    *len = 0;
    int rc = b->err;
    if (!rc && !b->data && !(b->data = malloc(1))) rc = MPB_ENOMEM; /* nothing built: empty */
    if (rc) {
        mpb_mp_reset(b);
        return rc;
    }
    *out = b->data;
    *len = b->len;
    memset(b, 0, sizeof *b);
    return 0;
}

/* ---- reader ---- */

static mpb__rd_t rd(const mpb_mpreader_t *r) {
    return (mpb__rd_t){r->p, r->end};
}

/* Runs one codec read on r; the codec leaves the reader where it was on a type mismatch. */
#define READ(r, call)                                                                              \
    do {                                                                                           \
        if (!(r)) return MPB_EINVAL;                                                               \
        if ((r)->p >= (r)->end) return MPB_EEMPTY;                                                 \
        mpb__rd_t c_ = rd(r);                                                                      \
        int rc_ = call;                                                                            \
        if (rc_) return rc_ == MPB_EPROTO ? MPB_ETYPE : rc_;                                       \
        (r)->p = c_.p;                                                                             \
        return 0;                                                                                  \
    } while (0)

int mpb_mpr_init(mpb_mpreader_t *r, const void *buf, size_t len) {
    if (!r) return MPB_EINVAL;
    r->p = r->end = NULL;
    if (!buf || mpb__mp_check1(buf, len, MPB__MAX_DEPTH) != (long)len) return MPB_EPROTO;
    r->p = buf;
    r->end = r->p + len;
    return 0;
}

int mpb_mpr_type(const mpb_mpreader_t *r) {
    if (!r || r->p >= r->end) return MPB_MP_END;
    mpb__rd_t c = rd(r);
    static const int map[] = {
        [MPB__MT_NIL] = MPB_MP_NIL,     [MPB__MT_BOOL] = MPB_MP_BOOL, [MPB__MT_INT] = MPB_MP_INT,
        [MPB__MT_FLOAT] = MPB_MP_FLOAT, [MPB__MT_STR] = MPB_MP_STR,   [MPB__MT_BIN] = MPB_MP_BIN,
        [MPB__MT_ARRAY] = MPB_MP_ARRAY, [MPB__MT_MAP] = MPB_MP_MAP,   [MPB__MT_EXT] = MPB_MP_EXT,
        [MPB__MT_BAD] = MPB_MP_END,
    };
    return map[mpb__rd_type(&c)];
}

int mpb_mpr_nil(mpb_mpreader_t *r) {
    READ(r, mpb__rd_nil(&c_));
}

int mpb_mpr_bool(mpb_mpreader_t *r, int *v) {
    bool b = false;
    if (!v) return MPB_EINVAL;
    READ(r, (mpb__rd_bool(&c_, &b) ? MPB_ETYPE : (*v = b, 0)));
}

int mpb_mpr_i64(mpb_mpreader_t *r, int64_t *v) {
    if (!v) return MPB_EINVAL;
    READ(r, mpb__rd_int(&c_, v));
}

int mpb_mpr_u64(mpb_mpreader_t *r, uint64_t *v) {
    if (!v) return MPB_EINVAL;
    READ(r, mpb__rd_uint(&c_, v));
}

int mpb_mpr_double(mpb_mpreader_t *r, double *v) {
    if (!v) return MPB_EINVAL;
    READ(r, mpb__rd_double(&c_, v));
}

int mpb_mpr_str(mpb_mpreader_t *r, const char **s, size_t *len) {
    uint32_t n = 0;
    if (!s || !len) return MPB_EINVAL;
    READ(r, (mpb__rd_str(&c_, s, &n) ? MPB_ETYPE : (*len = n, 0)));
}

int mpb_mpr_bin(mpb_mpreader_t *r, const void **p, size_t *len) {
    uint32_t n = 0;
    const uint8_t *q = NULL;
    if (!p || !len) return MPB_EINVAL;
    READ(r, (mpb__rd_bin(&c_, &q, &n) ? MPB_ETYPE : (*p = q, *len = n, 0)));
}

int mpb_mpr_array(mpb_mpreader_t *r, uint32_t *n) {
    if (!n) return MPB_EINVAL;
    READ(r, mpb__rd_array(&c_, n));
}

int mpb_mpr_map(mpb_mpreader_t *r, uint32_t *n) {
    if (!n) return MPB_EINVAL;
    READ(r, mpb__rd_map(&c_, n));
}

int mpb_mpr_skip(mpb_mpreader_t *r, const void **p, size_t *len) {
    const uint8_t *q = NULL;
    size_t n = 0;
    READ(r, (mpb__rd_span(&c_, &q, &n) ? MPB_ETYPE : ((p ? *p = q : 0), (len ? *len = n : 0), 0)));
}

int mpb_mpr_ext(mpb_mpreader_t *r, int *type, const void **p, size_t *len) {
    if (!r || !type || !p || !len) return MPB_EINVAL;
    if (r->p >= r->end) return MPB_EEMPTY;
    const unsigned char *q = r->p;
    size_t n, hn;
    switch (*q) {
    case 0xd4: n = 1, hn = 1; break;
    case 0xd5: n = 2, hn = 1; break;
    case 0xd6: n = 4, hn = 1; break;
    case 0xd7: n = 8, hn = 1; break;
    case 0xd8: n = 16, hn = 1; break;
    case 0xc7: n = q[1], hn = 2; break;
    case 0xc8: n = (size_t)q[1] << 8 | q[2], hn = 3; break;
    case 0xc9:
        n = (size_t)q[1] << 24 | (size_t)q[2] << 16 | (size_t)q[3] << 8 | q[4], hn = 5;
        break;
    default: return MPB_ETYPE;
    }
    /* init checked the whole value, so header, type byte and data are all inside */
    *type = (int8_t)q[hn];
    *p = q + hn + 1;
    *len = n;
    r->p = q + hn + 1 + n;
    return 0;
}

int mpb_mpr_find(const mpb_mpreader_t *r, const char *key, mpb_mpreader_t *val) {
    if (!r || !key || !val) return MPB_EINVAL;
    if (mpb_mpr_type(r) != MPB_MP_MAP) return MPB_ETYPE;
    mpb__rd_t c = rd(r), v;
    int rc = mpb__rd_mapget(&c, key, &v);
    if (rc) return rc;
    val->p = v.p;
    val->end = r->end;
    return 0;
}
