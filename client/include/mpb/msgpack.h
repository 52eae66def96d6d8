/* mpb/msgpack.h - packing and reading the msgpack values that keys, values and arguments are:
 * one-scalar helpers (mpb_pack_*, mpb_unpack_*), a builder (mpb_mp_*) and a reader (mpb_mpr_*). */
#ifndef MPB_MSGPACK_H
#define MPB_MSGPACK_H

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
 * library. A builder starts zeroed (mpb_mpbuf_t b = {0};). Each mpb_mp_*() appends one value
 * (mpb_mp_array/map append a header: the n values, or n key/value pairs, that follow are its
 * items) and returns 0, MPB_EINVAL (b NULL, or raw bytes that are not one well-formed value) or
 * MPB_ENOMEM, which sticks in b->err so a sequence of appends can be checked once, at
 * mpb_mp_take(). Example, the arguments [3, "x"] of a pool call:
 *     mpb_mpbuf_t b = {0};
 *     mpb_mp_array(&b, 2); mpb_mp_i64(&b, 3); mpb_mp_cstr(&b, "x");
 *     void *args; size_t n;
 *     if (mpb_mp_take(&b, &args, &n) == 0) { ...; mpb_free(args); }
 */
typedef struct mpb_mpbuf {
    unsigned char *data; /* what is built so far (read-only for the caller) */
    size_t len, cap;
    int err; /* the first failure, or 0 */
} mpb_mpbuf_t;

MPB_EXPORT int mpb_mp_nil(mpb_mpbuf_t *b);
MPB_EXPORT int mpb_mp_bool(mpb_mpbuf_t *b, int v);
MPB_EXPORT int mpb_mp_i64(mpb_mpbuf_t *b, int64_t v);
MPB_EXPORT int mpb_mp_u64(mpb_mpbuf_t *b, uint64_t v);
MPB_EXPORT int mpb_mp_double(mpb_mpbuf_t *b, double v);
/* len bytes of UTF-8 text (not checked); _cstr takes a NUL-terminated one. */
MPB_EXPORT int mpb_mp_str(mpb_mpbuf_t *b, const char *s, size_t len);
MPB_EXPORT int mpb_mp_cstr(mpb_mpbuf_t *b, const char *s);
MPB_EXPORT int mpb_mp_bin(mpb_mpbuf_t *b, const void *p, size_t len);
/* An extension value: type -128..127, len bytes of data. */
MPB_EXPORT int mpb_mp_ext(mpb_mpbuf_t *b, int type, const void *p, size_t len);
MPB_EXPORT int mpb_mp_array(mpb_mpbuf_t *b, uint32_t n);
MPB_EXPORT int mpb_mp_map(mpb_mpbuf_t *b, uint32_t n);
/* One value already encoded (a reply, a dict value): checked, then copied in. */
MPB_EXPORT int mpb_mp_raw(mpb_mpbuf_t *b, const void *p, size_t len);
/* Hands over what was built: *out a new buffer (mpb_free() it) of *len bytes, and b is empty
 * again. Returns b->err (then nothing is handed over and b is emptied) or 0. */
MPB_EXPORT int mpb_mp_take(mpb_mpbuf_t *b, void **out, size_t *len);
/* Frees what b holds and empties it. Accepts NULL. */
MPB_EXPORT void mpb_mp_reset(mpb_mpbuf_t *b);

/* A reader walks one msgpack value (a result, a describe map, a dict_scan page) in place: it
 * copies nothing, and strings point into the buffer, which must outlive the reader.
 * mpb_mpr_init() checks the whole buffer first (MPB_EPROTO: not exactly one well-formed value,
 * nested at most 32 deep), so the calls after it never read past it. Each mpb_mpr_<type>()
 * reads the next value: 0, MPB_ETYPE (another type, or an integer that does not fit; the reader
 * does not move) or MPB_EEMPTY (nothing left). An array or map is read as its header (the count)
 * and then its items one by one. */
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

MPB_EXPORT int mpb_mpr_init(mpb_mpreader_t *r, const void *buf, size_t len);
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
/* Skips the next whole value; (*p, *len), when p is non-NULL, is its encoding (for
 * mpb_dict_get, mpb_mp_raw, ...). */
MPB_EXPORT int mpb_mpr_skip(mpb_mpreader_t *r, const void **p, size_t *len);
/* With r on a map (not moved): *val reads the value of the string key key. MPB_ENOKEY when
 * the map has no such key, MPB_ETYPE when r is not on a map. */
MPB_EXPORT int mpb_mpr_find(const mpb_mpreader_t *r, const char *key, mpb_mpreader_t *val);

#ifdef __cplusplus
}
#endif
#endif
