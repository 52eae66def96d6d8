/* mpack.c - the public msgpack builder (mpb_mp_*) and reader (mpb_mpr_*), so that a C program
 * packs a pool call's arguments or walks a describe map without a second msgpack library, and
 * libmpb's users (the Python extension, the CLI, the bench) share one encoder. The builder
 * writes into malloc'd memory or the caller's, with proto's integer and float64 encoders; the
 * reader stands on proto's checker (mpcheck) and reader, so it reads only checked bytes. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

_Static_assert(MPB_MP_MAX_DEPTH == MPB__MAX_DEPTH && MPB_MP_FRAME_DEPTH == MPB__FRAME_DEPTH,
               "msgpack.h's depths are PROTOCOL.md's");

/* ---- builder ---- */

enum { MODE_HEAP = 0 }; /* data is malloc'd by the builder (or NULL); else an MPB_MP_* mode */

/* Room for n more bytes at b->data + b->len, or NULL with b->err set (and nothing written). */
static unsigned char *room(mpb_mpbuf_t *b, size_t n) {
    if (b->err) return NULL;
    if (b->cap - b->len >= n) return b->data + b->len;
    if (b->mode == MPB_MP_FIXED) {
        b->err = MPB_ETOOBIG;
        return NULL;
    }
    size_t cap = b->cap > 128 ? b->cap : 128;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) {
            b->err = MPB_ENOMEM;
            return NULL;
        }
        cap *= 2;
    }
    unsigned char *p;
    if (b->mode == MODE_HEAP) {
        p = realloc(b->data, cap);
    } else if ((p = malloc(cap)) && b->len) { /* leaving the caller's memory */
        memcpy(p, b->data, b->len);
    }
    if (!p) {
        b->err = MPB_ENOMEM;
        return NULL;
    }
    b->data = p;
    b->cap = cap;
    b->mode = MODE_HEAP;
    return p + b->len;
}

static int put(mpb_mpbuf_t *b, const void *p, size_t n) {
    if (!b) return MPB_EINVAL;
    if (!n) return b->err;
    unsigned char *o = room(b, n);
    if (!o) return b->err;
    if (n) memcpy(o, p, n);
    b->len += n;
    return 0;
}

/* A header (tag, then n as a big-endian integer of w bytes) followed by len bytes of body:
 * room for both is made first, so that a failed append leaves nothing behind. */
static int put_head(mpb_mpbuf_t *b, const uint8_t *h, size_t hn, const void *body, size_t len) {
    if (!b) return MPB_EINVAL;
    unsigned char *o = room(b, hn + len);
    if (!o) return b->err;
    memcpy(o, h, hn);
    if (len) memcpy(o + hn, body, len);
    b->len += hn + len;
    return 0;
}

/* The header of a str, bin, array, map or ext of n into h; returns its length. The kinds'
 * tags: the fix form (0: none) and its largest n, then the 8-, 16- and 32-bit forms. */
typedef struct kind {
    uint8_t fix, fixmax, t8, t16, t32;
} kind_t;
static const kind_t K_STR = {0xa0, 31, 0xd9, 0xda, 0xdb}, K_BIN = {0, 0, 0xc4, 0xc5, 0xc6},
                    K_ARRAY = {0x90, 15, 0, 0xdc, 0xdd}, K_MAP = {0x80, 15, 0, 0xde, 0xdf},
                    K_EXT = {0, 0, 0xc7, 0xc8, 0xc9};

static size_t head(uint8_t *h, const kind_t *k, size_t n) {
    int w;
    if (k->fix && n <= k->fixmax) {
        h[0] = (uint8_t)(k->fix | n);
        return 1;
    }
    if (k->t8 && n <= 0xff)
        h[0] = k->t8, w = 1;
    else if (n <= 0xffff)
        h[0] = k->t16, w = 2;
    else
        h[0] = k->t32, w = 4;
    for (int i = 0; i < w; i++)
        h[1 + i] = (uint8_t)(n >> (8 * (w - 1 - i)));
    return 1 + (size_t)w;
}

void mpb_mp_init_buf(mpb_mpbuf_t *b, void *buf, size_t cap, int mode) {
    if (!b) return;
    *b = (mpb_mpbuf_t){.data = buf, .cap = buf ? cap : 0};
    b->mode = mode == MPB_MP_GROW ? MPB_MP_GROW : MPB_MP_FIXED;
}

int mpb_mp_nil(mpb_mpbuf_t *b) {
    return put(b, "\xc0", 1);
}

int mpb_mp_bool(mpb_mpbuf_t *b, int v) {
    return put(b, v ? "\xc3" : "\xc2", 1);
}

/* A scalar of at most MPB_PACK_MAX_SCALAR bytes, by one of proto's encoders: straight into b
 * when the most it can take fits, else through t (a fixed builder's last few bytes). */
#define PUT_SCALAR(b, enc, v)                                                                      \
    do {                                                                                           \
        if ((b) && !(b)->err && (b)->cap - (b)->len >= MPB_PACK_MAX_SCALAR) {                      \
            (b)->len += enc((b)->data + (b)->len, v);                                              \
            return 0;                                                                              \
        }                                                                                          \
        uint8_t t_[MPB_PACK_MAX_SCALAR];                                                           \
        return put(b, t_, enc(t_, v));                                                             \
    } while (0)

int mpb_mp_i64(mpb_mpbuf_t *b, int64_t v) {
    PUT_SCALAR(b, mpb__enc_int, v);
}

int mpb_mp_u64(mpb_mpbuf_t *b, uint64_t v) {
    PUT_SCALAR(b, mpb__enc_uint, v);
}

int mpb_mp_double(mpb_mpbuf_t *b, double v) {
    PUT_SCALAR(b, mpb__enc_double, v);
}

/* lengths past what a msgpack header can say are refused before anything is written */
static int check_span(mpb_mpbuf_t *b, const void *p, size_t len) {
    if (!b || (!p && len) || len > UINT32_MAX) return MPB_EINVAL;
    return 0;
}

static int put_sized(mpb_mpbuf_t *b, const kind_t *k, const void *p, size_t len) {
    int rc = check_span(b, p, len);
    if (rc) return rc;
    uint8_t h[5];
    return put_head(b, h, head(h, k, len), p, len);
}

int mpb_mp_str(mpb_mpbuf_t *b, const char *s, size_t len) {
    return put_sized(b, &K_STR, s, len);
}

int mpb_mp_cstr(mpb_mpbuf_t *b, const char *s) {
    if (!s) return MPB_EINVAL;
    return mpb_mp_str(b, s, strlen(s));
}

int mpb_mp_bin(mpb_mpbuf_t *b, const void *p, size_t len) {
    return put_sized(b, &K_BIN, p, len);
}

int mpb_mp_bin_head(mpb_mpbuf_t *b, size_t len) {
    if (len > UINT32_MAX) return MPB_EINVAL;
    uint8_t h[5];
    return put_head(b, h, head(h, &K_BIN, len), NULL, 0);
}

/* ext: fixext where the length is one of theirs, else ext 8/16/32; then the type byte */
int mpb_mp_ext(mpb_mpbuf_t *b, int type, const void *p, size_t len) {
    int rc = check_span(b, p, len);
    if (!rc && (type < -128 || type > 127)) rc = MPB_EINVAL;
    if (rc) return rc;
    static const uint8_t fix[17] = {[1] = 0xd4, [2] = 0xd5, [4] = 0xd6, [8] = 0xd7, [16] = 0xd8};
    uint8_t h[6];
    size_t hn = 1;
    if (len < sizeof fix && fix[len])
        h[0] = fix[len];
    else
        hn = head(h, &K_EXT, len);
    h[hn++] = (uint8_t)(int8_t)type;
    return put_head(b, h, hn, p, len);
}

int mpb_mp_array(mpb_mpbuf_t *b, uint32_t n) {
    uint8_t h[5];
    return put_head(b, h, head(h, &K_ARRAY, n), NULL, 0);
}

int mpb_mp_map(mpb_mpbuf_t *b, uint32_t n) {
    uint8_t h[5];
    return put_head(b, h, head(h, &K_MAP, n), NULL, 0);
}

int mpb_mp_raw(mpb_mpbuf_t *b, const void *p, size_t len) {
    if (!b || !p || mpb__mp_check1(p, len, MPB__MAX_DEPTH) != (long)len) return MPB_EINVAL;
    return put(b, p, len);
}

int mpb_mp_append(mpb_mpbuf_t *b, const void *p, size_t len) {
    if (!b || (!p && len)) return MPB_EINVAL;
    return put(b, p, len);
}

void mpb_mp_clear(mpb_mpbuf_t *b) {
    if (!b) return;
    b->len = 0;
    b->err = 0;
}

void mpb_mp_reset(mpb_mpbuf_t *b) {
    if (!b) return;
    if (b->mode == MODE_HEAP) free(b->data);
    memset(b, 0, sizeof *b);
}

int mpb_mp_take(mpb_mpbuf_t *b, void **out, size_t *len) {
    if (!b || !out || !len) return MPB_EINVAL;
    *out = NULL;
    *len = 0;
    int rc = b->err;
    if (!rc && b->mode != MODE_HEAP) { /* the caller's memory: hand over a copy, keep it */
        if (!(*out = malloc(b->len ? b->len : 1))) {
            rc = MPB_ENOMEM;
        } else {
            if (b->len) memcpy(*out, b->data, b->len);
            *len = b->len;
            mpb_mp_clear(b);
            return 0;
        }
    }
    if (!rc && !b->data && !(b->data = malloc(1))) rc = MPB_ENOMEM; /* nothing built: empty */
    if (rc) {
        if (b->mode == MODE_HEAP)
            mpb_mp_reset(b);
        else
            mpb_mp_clear(b);
        return rc;
    }
    *out = b->data;
    *len = b->len;
    memset(b, 0, sizeof *b);
    return 0;
}

/* ---- reader ---- */

static size_t next_val(const unsigned char *q, const unsigned char *end, mpb_mpval_t *v);

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

int mpb_mpr_init_prefix(mpb_mpreader_t *r, const void *buf, size_t len, int max_depth,
                        size_t *used) {
    if (!r || !used || max_depth < 0 || max_depth > MPB_MP_FRAME_DEPTH) return MPB_EINVAL;
    r->p = r->end = NULL;
    *used = 0;
    long n = buf ? mpb__mp_check1(buf, len, max_depth ? max_depth : MPB_MP_MAX_DEPTH) : -1;
    if (n <= 0) return MPB_EPROTO;
    r->p = buf;
    r->end = r->p + n;
    *used = (size_t)n;
    return 0;
}

int mpb_mpr_init(mpb_mpreader_t *r, const void *buf, size_t len) {
    size_t used;
    int rc = mpb_mpr_init_prefix(r, buf, len, 0, &used);
    if (!rc && used != len) {
        r->p = r->end = NULL;
        rc = MPB_EPROTO;
    }
    return rc;
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
    mpb_mpval_t v = {0};
    size_t n = next_val(r->p, r->end, &v);
    if (!n || v.type != MPB_MP_EXT) return MPB_ETYPE;
    *type = v.ext_type;
    *p = v.p;
    *len = v.n;
    r->p += n;
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

/* ---- reading any value ---- */

/* The value at q that mpb_mpr_scalar_() leaves (a str, bin, array or map with a length field,
 * or an ext) into *v. Returns the bytes its header and, for str, bin and ext, its body take, or
 * 0 for another first byte or a value that does not fit before end. */
static size_t next_val(const unsigned char *q, const unsigned char *end, mpb_mpval_t *v) {
    size_t left = (size_t)(end - q) - 1, w; /* bytes after the first; length-field bytes */
    uint8_t c = q[0];
    if (c >= 0xd4 && c <= 0xd8) { /* fixext */
        v->n = 1u << (c - 0xd4);
        if (left < 1 + (size_t)v->n) return 0;
        v->type = MPB_MP_EXT;
        v->ext_type = (int8_t)q[1];
        v->p = q + 2;
        return 2 + v->n;
    }
    if (c >= 0xc4 && c <= 0xc6)
        v->type = MPB_MP_BIN, w = (size_t)1 << (c - 0xc4);
    else if (c >= 0xc7 && c <= 0xc9)
        v->type = MPB_MP_EXT, w = (size_t)1 << (c - 0xc7);
    else if (c >= 0xd9 && c <= 0xdb)
        v->type = MPB_MP_STR, w = (size_t)1 << (c - 0xd9);
    else if (c == 0xdc || c == 0xdd)
        v->type = MPB_MP_ARRAY, w = (size_t)2 << (c - 0xdc);
    else if (c == 0xde || c == 0xdf)
        v->type = MPB_MP_MAP, w = (size_t)2 << (c - 0xde);
    else
        return 0;
    if (left < w) return 0;
    uint32_t n = 0;
    for (size_t k = 1; k <= w; k++)
        n = n << 8 | q[k];
    v->n = n;
    left -= w;
    size_t hn = 1 + w;
    /* each item takes a byte at least: a count past the bytes left is a lie */
    if (v->type == MPB_MP_ARRAY || v->type == MPB_MP_MAP)
        return (uint64_t)n * (v->type == MPB_MP_MAP ? 2 : 1) <= left ? hn : 0;
    if (v->type == MPB_MP_EXT) {
        if (left < 1) return 0;
        v->ext_type = (int8_t)q[hn++];
        left--;
    }
    if (left < n) return 0;
    v->p = q + hn;
    return hn + n;
}

int mpb_mpr_init_stream(mpb_mpreader_t *r, const void *buf, size_t len) {
    if (!r || (!buf && len)) return MPB_EINVAL;
    r->p = buf;
    r->end = r->p + len;
    return 0;
}

size_t mpb_mpr_left(const mpb_mpreader_t *r) {
    return r && r->p ? (size_t)(r->end - r->p) : 0;
}

int mpb_mpr_next(mpb_mpreader_t *r, mpb_mpval_t *v) {
    if (!r || !v) return MPB_EINVAL;
    *v = (mpb_mpval_t){.type = MPB_MP_END};
    if (r->p >= r->end) return MPB_EEMPTY;
    if (mpb_mpr_scalar_(r, v)) return 0;
    size_t n = next_val(r->p, r->end, v);
    if (!n) { /* only on a stream reader: init checked the rest */
        *v = (mpb_mpval_t){.type = MPB_MP_END};
        return MPB_EPROTO;
    }
    r->p += n;
    return 0;
}
