/* mpb/msgpack.h - packing and reading the msgpack values that keys, values and arguments are:
 * one-scalar helpers (mpb_pack_*, mpb_unpack_*), a builder (mpb_mp_*) and a reader (mpb_mpr_*). */
#ifndef MPB_MSGPACK_H
#define MPB_MSGPACK_H

#include <string.h>

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- msgpack helpers -------------------------------------------------------------------- */

#define MPB_PACK_MAX_SCALAR 9 /* the most bytes mpb_pack_i64/double/bool/nil write */

/* Encode a scalar into buf (at least MPB_PACK_MAX_SCALAR bytes); return its length. */
MPB_EXPORT size_t mpb_pack_i64(void *buf, int64_t v);
MPB_EXPORT size_t mpb_pack_double(void *buf, double v);
MPB_EXPORT size_t mpb_pack_bool(void *buf, int v);
MPB_EXPORT size_t mpb_pack_nil(void *buf);
/* Encode a string (len bytes of UTF-8 text, not necessarily NUL-terminated) or bytes into a
 * new buffer *out (mpb_free() it). Returns its length, or 0 with *out NULL when out of memory.
 * The string is not checked: a str that is not UTF-8 is stored as given. */
MPB_EXPORT size_t mpb_pack_str(const char *s, size_t len, void **out);
MPB_EXPORT size_t mpb_pack_bin(const void *p, size_t len, void **out);
/* Decode one msgpack value. Return 0, or MPB_ETYPE when buf holds another type (an integer is
 * accepted as a double), MPB_EPROTO when it is not one well-formed value. _str and _bin point
 * *s into buf (not NUL-terminated); they do not copy. */
MPB_EXPORT int mpb_unpack_i64(const void *buf, size_t len, int64_t *v);
MPB_EXPORT int mpb_unpack_double(const void *buf, size_t len, double *v);
MPB_EXPORT int mpb_unpack_bool(const void *buf, size_t len, int *v);
MPB_EXPORT int mpb_unpack_str(const void *buf, size_t len, const char **s, size_t *slen);
MPB_EXPORT int mpb_unpack_bin(const void *buf, size_t len, const void **p, size_t *plen);

/* ---- building and reading msgpack -----------------------------------------------------------
 *
 * Arguments, values and results are msgpack; these build and read them without another
 * library. A builder starts zeroed (mpb_mpbuf_t b = {0};) and grows in malloc'd memory, or
 * over the caller's memory (mpb_mp_init_buf). Each mpb_mp_*() appends one value
 * (mpb_mp_array/map append a header: the n values, or n key/value pairs, that follow are its
 * items) and returns 0, MPB_EINVAL (b NULL, or raw bytes that are not one well-formed value),
 * MPB_ENOMEM or MPB_ETOOBIG (a fixed builder is full), which sticks in b->err so a sequence of
 * appends can be checked once, at mpb_mp_take() or by reading b->err. A failed append writes
 * nothing. Example, the arguments [3, "x"] of a pool call:
 *     mpb_mpbuf_t b = {0};
 *     mpb_mp_array(&b, 2); mpb_mp_i64(&b, 3); mpb_mp_cstr(&b, "x");
 *     void *args; size_t n;
 *     if (mpb_mp_take(&b, &args, &n) == 0) { ...; mpb_free(args); }
 * and the same on the stack, one message after another, with no allocation:
 *     unsigned char mem[256];
 *     mpb_mpbuf_t b;
 *     mpb_mp_init_buf(&b, mem, sizeof mem, MPB_MP_FIXED);
 *     for (...) {
 *         mpb_mp_clear(&b);
 *         mpb_mp_array(&b, 2); mpb_mp_i64(&b, i); mpb_mp_cstr(&b, "x");
 *         if (b.err == 0) mpb_call(c, op, name, b.data, b.len, ...);
 *     }
 */
typedef struct mpb_mpbuf {
    unsigned char *data; /* what is built so far (read-only for the caller) */
    size_t len, cap;
    int err;  /* the first failure, or 0 */
    int mode; /* private: whose memory data is */
} mpb_mpbuf_t;

/* mpb_mp_init_buf() modes: when an append does not fit in the caller's memory, MPB_MP_FIXED
 * fails it (MPB_ETOOBIG) and MPB_MP_GROW moves what is built to malloc'd memory and goes on
 * there (b->data then no longer points at the caller's buffer). */
enum { MPB_MP_FIXED = 1, MPB_MP_GROW = 2 };

/* Makes b an empty builder over the caller's cap bytes at buf, which must outlive it. */
MPB_EXPORT void mpb_mp_init_buf(mpb_mpbuf_t *b, void *buf, size_t cap, int mode);
MPB_EXPORT int mpb_mp_nil(mpb_mpbuf_t *b);
MPB_EXPORT int mpb_mp_bool(mpb_mpbuf_t *b, int v);
MPB_EXPORT int mpb_mp_i64(mpb_mpbuf_t *b, int64_t v);
MPB_EXPORT int mpb_mp_u64(mpb_mpbuf_t *b, uint64_t v);
MPB_EXPORT int mpb_mp_double(mpb_mpbuf_t *b, double v); /* always float64 */
/* len bytes of UTF-8 text (not checked); _cstr takes a NUL-terminated one. */
MPB_EXPORT int mpb_mp_str(mpb_mpbuf_t *b, const char *s, size_t len);
MPB_EXPORT int mpb_mp_cstr(mpb_mpbuf_t *b, const char *s);
MPB_EXPORT int mpb_mp_bin(mpb_mpbuf_t *b, const void *p, size_t len);
/* An extension value: type -128..127, len bytes of data. */
MPB_EXPORT int mpb_mp_ext(mpb_mpbuf_t *b, int type, const void *p, size_t len);
MPB_EXPORT int mpb_mp_array(mpb_mpbuf_t *b, uint32_t n);
MPB_EXPORT int mpb_mp_map(mpb_mpbuf_t *b, uint32_t n);
/* The header of a bin of len bytes, which the caller then appends (mpb_mp_append), in pieces
 * if it likes. */
MPB_EXPORT int mpb_mp_bin_head(mpb_mpbuf_t *b, size_t len);
/* One value already encoded (a reply, a dict value): checked, then copied in. */
MPB_EXPORT int mpb_mp_raw(mpb_mpbuf_t *b, const void *p, size_t len);
/* len bytes copied in as they are, unchecked: a value's body after mpb_mp_bin_head, or
 * several values at once. The caller answers for the result being well-formed. */
MPB_EXPORT int mpb_mp_append(mpb_mpbuf_t *b, const void *p, size_t len);
/* Hands over what was built: *out a new buffer (mpb_free() it) of *len bytes (a copy when
 * the bytes are in the caller's memory), and b is empty again (a builder over the caller's
 * memory stays over it). Returns b->err (then nothing is handed over and b is emptied) or 0. */
MPB_EXPORT int mpb_mp_take(mpb_mpbuf_t *b, void **out, size_t *len);
/* Empties b for the next message and keeps its memory: len and err are 0 again. Accepts NULL. */
MPB_EXPORT void mpb_mp_clear(mpb_mpbuf_t *b);
/* Frees what b allocated (never the caller's memory) and makes it a zeroed builder. Accepts
 * NULL. */
MPB_EXPORT void mpb_mp_reset(mpb_mpbuf_t *b);

/* A reader walks one msgpack value (a result, a describe map, a dict_scan page) in place: it
 * copies nothing, and strings point into the buffer, which must outlive the reader.
 * mpb_mpr_init() checks the whole buffer first (MPB_EPROTO: not exactly one well-formed value,
 * nested at most 32 deep), so the calls after it never read past it. Each mpb_mpr_<type>()
 * reads the next value: 0, MPB_ETYPE (another type, or an integer that does not fit; the reader
 * does not move) or MPB_EEMPTY (nothing left). An array or map is read as its header (the count)
 * and then its items one by one; mpb_mpr_next() reads the next value whatever its type, for a
 * program that walks values it does not know in advance (a printer, a language binding). */
typedef struct mpb_mpreader {
    const unsigned char *p, *end; /* private */
} mpb_mpreader_t;

enum {
    MPB_MP_END,
    MPB_MP_NIL,
    MPB_MP_BOOL,
    MPB_MP_INT,
    MPB_MP_FLOAT,
    MPB_MP_STR,
    MPB_MP_BIN,
    MPB_MP_ARRAY,
    MPB_MP_MAP,
    MPB_MP_EXT
};

/* How deep arrays and maps nest: in a value (PROTOCOL.md), and in a reply or batch that holds
 * such values in a few arrays of its own (pool.map's results, a worker's batch). */
#define MPB_MP_MAX_DEPTH   32
#define MPB_MP_FRAME_DEPTH 36

MPB_EXPORT int mpb_mpr_init(mpb_mpreader_t *r, const void *buf, size_t len);
/* Like mpb_mpr_init(), over the value at the start of buf, whatever follows it: *used is the
 * bytes it takes, so *used < len says "len - *used trailing bytes", and MPB_EPROTO says "buf
 * does not start with a well-formed value". max_depth bounds the nesting (0: MPB_MP_MAX_DEPTH;
 * at most MPB_MP_FRAME_DEPTH). */
MPB_EXPORT int mpb_mpr_init_prefix(mpb_mpreader_t *r, const void *buf, size_t len, int max_depth,
                                   size_t *used);
/* A reader that checks as it reads instead of first, for a program that reads each value once
 * with mpb_mpr_next() (a decoder): no pass over the buffer before. Every read stays within len:
 * mpb_mpr_next() says MPB_EPROTO at a value cut short, a reserved byte, or an array or map that
 * counts more items than there are bytes left; the depth is the caller's to bound (it recurses,
 * it knows). mpb_mpr_left() then says whether bytes follow the value. 0, or MPB_EINVAL. */
MPB_EXPORT int mpb_mpr_init_stream(mpb_mpreader_t *r, const void *buf, size_t len);
/* The bytes r has not read yet (0 for NULL). */
MPB_EXPORT size_t mpb_mpr_left(const mpb_mpreader_t *r);
/* The next value's MPB_MP_* type; MPB_MP_END when all is read (or r is NULL). */
MPB_EXPORT int mpb_mpr_type(const mpb_mpreader_t *r);
MPB_EXPORT int mpb_mpr_nil(mpb_mpreader_t *r);
MPB_EXPORT int mpb_mpr_bool(mpb_mpreader_t *r, int *v);
MPB_EXPORT int mpb_mpr_i64(mpb_mpreader_t *r, int64_t *v);
MPB_EXPORT int mpb_mpr_u64(mpb_mpreader_t *r, uint64_t *v);  /* non-negative only */
MPB_EXPORT int mpb_mpr_double(mpb_mpreader_t *r, double *v); /* an integer is accepted */
MPB_EXPORT int mpb_mpr_str(mpb_mpreader_t *r, const char **s, size_t *len);
MPB_EXPORT int mpb_mpr_bin(mpb_mpreader_t *r, const void **p, size_t *len);
MPB_EXPORT int mpb_mpr_ext(mpb_mpreader_t *r, int *type, const void **p, size_t *len);
MPB_EXPORT int mpb_mpr_array(mpb_mpreader_t *r, uint32_t *n);
MPB_EXPORT int mpb_mpr_map(mpb_mpreader_t *r, uint32_t *n);

/* One value as mpb_mpr_next() reads it: type says which fields hold it. */
typedef struct mpb_mpval {
    int type;      /* MPB_MP_NIL ... MPB_MP_EXT */
    int ext_type;  /* MPB_MP_EXT: -128..127 */
    int big;       /* MPB_MP_INT: 1 when above INT64_MAX (then only u holds it) */
    int64_t i;     /* MPB_MP_BOOL (0 or 1); MPB_MP_INT unless big */
    uint64_t u;    /* MPB_MP_INT when big, or non-negative */
    double d;      /* MPB_MP_FLOAT (a float32 widened) */
    const void *p; /* MPB_MP_STR, _BIN, _EXT: the bytes, in the reader's buffer */
    uint32_t n;    /* their count; MPB_MP_ARRAY: the items, MPB_MP_MAP: the pairs that follow */
} mpb_mpval_t;

/* Reads the next value into *v (an array or map: its header). 0, MPB_EEMPTY (then v->type is
 * MPB_MP_END) or, on a reader from mpb_mpr_init_stream(), MPB_EPROTO (the reader does not move).
 * The fields that v's type does not use are zero. */
MPB_EXPORT int mpb_mpr_next(mpb_mpreader_t *r, mpb_mpval_t *v);
/* Skips the next whole value; (*p, *len), when p is non-NULL, is its encoding (for
 * mpb_dict_get, mpb_mp_raw, ...). */
MPB_EXPORT int mpb_mpr_skip(mpb_mpreader_t *r, const void **p, size_t *len);
/* With r on a map (not moved): *val reads the value of the string key key. MPB_ENOKEY when
 * the map has no such key, MPB_ETYPE when r is not on a map. */
MPB_EXPORT int mpb_mpr_find(const mpb_mpreader_t *r, const char *key, mpb_mpreader_t *val);

/* ---- inline fast paths ----------------------------------------------------------------------
 *
 * For a program that makes one call per value (a language binding's encoder and decoder): the
 * same as the calls they are named after, done inline for the one-byte forms that most values
 * take (nil, booleans, integers -32..127, strings of up to 31 bytes, arrays and maps of up to
 * 15 items) and by that call otherwise; mpb_mpr_next_fast() reads every scalar inline. It
 * sets only the fields of v that the value's type uses. */
static inline int mpb_mp_room_(const mpb_mpbuf_t *b, size_t n) {
    return b && !b->err && b->cap - b->len >= n;
}

static inline int mpb_mp_byte_(mpb_mpbuf_t *b, unsigned c) {
    b->data[b->len++] = (unsigned char)c;
    return 0;
}

static inline int mpb_mp_nil_fast(mpb_mpbuf_t *b) {
    return mpb_mp_room_(b, 1) ? mpb_mp_byte_(b, 0xc0) : mpb_mp_nil(b);
}

static inline int mpb_mp_bool_fast(mpb_mpbuf_t *b, int v) {
    return mpb_mp_room_(b, 1) ? mpb_mp_byte_(b, v ? 0xc3 : 0xc2) : mpb_mp_bool(b, v);
}

static inline int mpb_mp_i64_fast(mpb_mpbuf_t *b, int64_t v) {
    if (v >= -32 && v <= 127 && mpb_mp_room_(b, 1)) return mpb_mp_byte_(b, (unsigned)(v & 0xff));
    return mpb_mp_i64(b, v);
}

static inline int mpb_mp_str_fast(mpb_mpbuf_t *b, const char *s, size_t len) {
    if (!s || len > 31 || !mpb_mp_room_(b, 1 + len)) return mpb_mp_str(b, s, len);
    mpb_mp_byte_(b, 0xa0 | (unsigned)len);
    memcpy(b->data + b->len, s, len);
    b->len += len;
    return 0;
}

static inline int mpb_mp_array_fast(mpb_mpbuf_t *b, uint32_t n) {
    return n <= 15 && mpb_mp_room_(b, 1) ? mpb_mp_byte_(b, 0x90 | n) : mpb_mp_array(b, n);
}

static inline int mpb_mp_map_fast(mpb_mpbuf_t *b, uint32_t n) {
    return n <= 15 && mpb_mp_room_(b, 1) ? mpb_mp_byte_(b, 0x80 | n) : mpb_mp_map(b, n);
}

/* The value at r when it is a scalar or a fix-size header (every form but the str, bin, array
 * and map of 8 to 32-bit length and the exts), and within the bytes left, into *v, moving r
 * past it: 1, or 0 (r not moved). The one decoder of these forms: mpb_mpr_next() starts with
 * it too. */
static inline int mpb_mpr_scalar_(mpb_mpreader_t *r, mpb_mpval_t *v) {
    const unsigned char *q = r->p;
    size_t left = (size_t)(r->end - q) - 1; /* the bytes after c (r->p < r->end) */
    unsigned c = q[0];
    size_t w = 0; /* the bytes of the value after c */
    uint64_t u = 0;
    if (c <= 0x7f || c >= 0xe0) {
        v->type = MPB_MP_INT, v->big = 0, v->i = (int8_t)c, v->u = c <= 0x7f ? c : 0;
    } else if (c >= 0xa0 && c <= 0xbf) {
        if ((c & 0x1f) > left) return 0;
        v->type = MPB_MP_STR, v->n = c & 0x1f, v->p = q + 1, w = v->n;
    } else if (c >= 0x80 && c <= 0x9f) {
        /* each item takes a byte at least: a count past the bytes left is a lie */
        if ((size_t)(c & 0x0f) * (c >= 0x90 ? 1 : 2) > left) return 0;
        v->type = c >= 0x90 ? MPB_MP_ARRAY : MPB_MP_MAP, v->n = c & 0x0f;
    } else if (c == 0xc0) {
        v->type = MPB_MP_NIL;
    } else if (c == 0xc2 || c == 0xc3) {
        v->type = MPB_MP_BOOL, v->i = c == 0xc3;
    } else if (c >= 0xca && c <= 0xd3) {
        static const unsigned char width[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
        w = width[c - 0xca];
        if (w > left) return 0;
        for (size_t k = 1; k <= w; k++)
            u = u << 8 | q[k];
        if (c == 0xca) {
            uint32_t u32 = (uint32_t)u;
            float f;
            memcpy(&f, &u32, 4);
            v->type = MPB_MP_FLOAT, v->d = f;
        } else if (c == 0xcb) {
            v->type = MPB_MP_FLOAT;
            memcpy(&v->d, &u, 8);
        } else if (c <= 0xcf) {
            v->type = MPB_MP_INT, v->u = u, v->big = u > INT64_MAX, v->i = v->big ? 0 : (int64_t)u;
        } else {
            if (w < 8 && u >> (8 * w - 1)) u |= ~(uint64_t)0 << (8 * w); /* sign-extend */
            v->type = MPB_MP_INT, v->big = 0, v->i = (int64_t)u, v->u = v->i >= 0 ? u : 0;
        }
    } else {
        return 0;
    }
    r->p = q + 1 + w;
    return 1;
}

static inline int mpb_mpr_next_fast(mpb_mpreader_t *r, mpb_mpval_t *v) {
    if (r && v && r->p < r->end && mpb_mpr_scalar_(r, v)) return 0;
    return mpb_mpr_next(r, v);
}

#ifdef __cplusplus
}
#endif
#endif
