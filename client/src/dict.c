/* dict.c - dict handles: one request per call, its reply copied out to what the caller owns;
 * the integer and string forms (the pipelined ones are in async_ops.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int mpb_dict_open(mpb_client_t *c, const char *name, mpb_dict_t **out) {
    return mpb__open_handle(c, name, MPB_OP_DICT_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

int mpb_dict_attach(mpb_client_t *c, const char *name, mpb_dict_t **out) {
    return mpb__attach_handle(c, name, sizeof **out, (void **)out);
}

void mpb_dict_close(mpb_dict_t **d) {
    mpb__close_handle((void **)d);
}

/* ---- dict ---- */

#define DREQ(op, argc) MPB__REQ(d, op, argc)

/* Starts op KEY [VAL] after checking both (VAL, named what, is sent only with with_val). */
static int key_val_req(mpb_dict_t *d, unsigned op, const void *key, size_t klen, const char *what,
                       const void *val, size_t vlen, bool with_val) {
    if (!d) return MPB_EINVAL;
    if (mpb__check_val(d->c, "key", key, klen) ||
        (with_val && mpb__check_val(d->c, what, val, vlen)))
        return MPB_EINVAL;
    DREQ(op, with_val ? 2 : 1);
    mpb__w_raw(b, key, klen);
    if (with_val) mpb__w_raw(b, val, vlen);
    return 0;
}

int mpb_dict_set(mpb_dict_t *d, const void *key, size_t klen, const void *val, size_t vlen) {
    int rc = key_val_req(d, MPB_OP_DICT_SET, key, klen, "value", val, vlen, true);
    return rc ? rc : mpb__call_nil(d->c, 0);
}

int mpb_dict_get(mpb_dict_t *d, const void *key, size_t klen, void **val, size_t *vlen) {
    if (!d) return MPB_EINVAL;
    if (mpb__check_val(d->c, "key", key, klen)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_GET, 1);
    mpb__w_raw(b, key, klen);
    return mpb__call_copy(d->c, 0, val, vlen);
}

/* op KEY DEFAULT -> a copy of the value: get with a default, setdefault. */
static int key_default(mpb_dict_t *d, unsigned op, const void *key, size_t klen, const void *def,
                       size_t deflen, void **val, size_t *vlen) {
    int rc = key_val_req(d, op, key, klen, "default", def, deflen, true);
    return rc ? rc : mpb__call_copy(d->c, 0, val, vlen);
}

int mpb_dict_get_default(mpb_dict_t *d, const void *key, size_t klen, const void *def,
                         size_t deflen, void **val, size_t *vlen) {
    return key_default(d, MPB_OP_DICT_GET, key, klen, def, deflen, val, vlen);
}

int mpb_dict_del(mpb_dict_t *d, const void *key, size_t klen) {
    if (!d) return MPB_EINVAL;
    if (mpb__check_val(d->c, "key", key, klen)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_DEL, 1);
    mpb__w_raw(b, key, klen);
    return mpb__call_nil(d->c, 0);
}

int mpb_dict_contains(mpb_dict_t *d, const void *key, size_t klen) {
    if (!d) return MPB_EINVAL;
    if (mpb__check_val(d->c, "key", key, klen)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_CONTAINS, 1);
    mpb__w_raw(b, key, klen);
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(d->c, 0, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    bool yes;
    if (mpb__rd_bool(&r, &yes)) return mpb__fail(d->c, MPB_EPROTO, "expected a boolean reply");
    return yes;
}

int mpb_dict_len(mpb_dict_t *d, uint64_t *len) {
    if (!d) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_LEN, 0);
    (void)b;
    return mpb__call_uint(d->c, 0, len);
}

int mpb_dict_update(mpb_dict_t *d, const void *pairs, size_t len) {
    if (!d) return MPB_EINVAL;
    if (mpb__check_val(d->c, "pairs", pairs, len)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_UPDATE, 1);
    mpb__w_raw(b, pairs, len);
    return mpb__call_nil(d->c, 0);
}

int mpb_dict_pop(mpb_dict_t *d, const void *key, size_t klen, const void *def, size_t deflen,
                 void **val, size_t *vlen) {
    int rc = key_val_req(d, MPB_OP_DICT_POP, key, klen, "default", def, deflen, def != NULL);
    return rc ? rc : mpb__call_copy(d->c, 0, val, vlen);
}

int mpb_dict_popitem(mpb_dict_t *d, void **key, size_t *klen, void **val, size_t *vlen) {
    if (!d) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_POPITEM, 0);
    (void)b;
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(d->c, 0, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    uint32_t two;
    const uint8_t *k, *x;
    size_t kn, xn;
    if (mpb__rd_array(&r, &two) || two != 2 || mpb__rd_span(&r, &k, &kn) ||
        mpb__rd_span(&r, &x, &xn))
        return mpb__fail(d->c, MPB_EPROTO, "malformed popitem reply");
    rc = mpb__dup(d->c, k, kn, key, klen);
    if (rc) return rc;
    rc = mpb__dup(d->c, x, xn, val, vlen);
    if (rc) {
        free(*key);
        *key = NULL;
    }
    return rc;
}

int mpb_dict_setdefault(mpb_dict_t *d, const void *key, size_t klen, const void *def, size_t deflen,
                        void **val, size_t *vlen) {
    return key_default(d, MPB_OP_DICT_SETDEFAULT, key, klen, def, deflen, val, vlen);
}

int mpb_dict_incr(mpb_dict_t *d, const void *key, size_t klen, int64_t by, int64_t *result) {
    if (!d) return MPB_EINVAL;
    if (mpb__check_val(d->c, "key", key, klen)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_INCR, 2);
    mpb__w_raw(b, key, klen);
    mpb__w_int(b, by);
    int64_t tmp;
    return mpb__call_int(d->c, 0, result ? result : &tmp);
}

int mpb_dict_clear(mpb_dict_t *d) {
    if (!d) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_CLEAR, 0);
    (void)b;
    return mpb__call_nil(d->c, 0);
}

int mpb_dict_copy(mpb_dict_t *d, const char *dst) {
    if (!d) return MPB_EINVAL;
    int rc = mpb__check_name(d->c, dst);
    if (rc) return rc;
    DREQ(MPB_OP_DICT_COPY, 1);
    mpb__w_cstr(b, dst);
    return mpb__call_nil(d->c, 0);
}

/* Splits a [next_cursor, [items...]] page reply. */
static int page(mpb_client_t *c, uint64_t *cursor, void **out, size_t *outlen, size_t *n) {
    mpb__rd_t r;
    int rc = mpb__call_rd(c, 0, &r);
    if (rc) return rc;
    uint32_t two, cnt;
    const uint8_t *arr;
    size_t an;
    if (mpb__rd_array(&r, &two) || two != 2 || mpb__rd_uint(&r, cursor))
        return mpb__fail(c, MPB_EPROTO, "malformed page reply");
    mpb__rd_t a = r;
    if (mpb__rd_array(&a, &cnt) || mpb__rd_span(&r, &arr, &an))
        return mpb__fail(c, MPB_EPROTO, "malformed page reply");
    *n = cnt;
    return mpb__dup(c, arr, an, out, outlen);
}

int mpb_dict_scan(mpb_dict_t *d, int what, uint64_t *cursor, size_t max, void **pg, size_t *pagelen,
                  size_t *n) {
    if (!d) return MPB_EINVAL;
    if (what < MPB_SCAN_KEYS || what > MPB_SCAN_ITEMS)
        return mpb__fail(d->c, MPB_EINVAL, "what must be MPB_SCAN_KEYS, _VALUES or _ITEMS");
    DREQ(MPB_OP_DICT_SCAN, 3);
    mpb__w_uint(b, (uint64_t)what);
    mpb__w_uint(b, *cursor);
    mpb__w_uint(b, max);
    return page(d->c, cursor, pg, pagelen, n);
}

static int key_str(mpb_client_t *c, const char *key, uint8_t *small, size_t smallcap, void **heap,
                   const uint8_t **k, size_t *kn) {
    size_t n = strlen(key);
    *heap = NULL;
    if (n + 5 <= smallcap) {
        mpb__buf_t b = {.p = small, .cap = smallcap};
        mpb__w_str(&b, key, n);
        *k = small;
        *kn = b.len;
        return 0;
    }
    *kn = mpb_pack_str(key, n, heap);
    if (!*heap) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    *k = *heap;
    return 0;
}

#define WITH_KEY(d, key, body)                                                                     \
    do {                                                                                           \
        uint8_t small_[128];                                                                       \
        void *heap_ = NULL;                                                                        \
        const uint8_t *k = NULL;                                                                   \
        size_t kn = 0;                                                                             \
        if (!key) return mpb__fail(d->c, MPB_EINVAL, "key is NULL");                               \
        int krc_ = key_str(d->c, key, small_, sizeof small_, &heap_, &k, &kn);                     \
        if (krc_) return krc_;                                                                     \
        int rc_ = (body);                                                                          \
        free(heap_);                                                                               \
        return rc_;                                                                                \
    } while (0)

int mpb_dict_set_i64(mpb_dict_t *d, const char *key, int64_t v) {
    if (!d) return MPB_EINVAL;
    uint8_t val[MPB_PACK_MAX_SCALAR];
    size_t vn = mpb_pack_i64(val, v);
    WITH_KEY(d, key, mpb_dict_set(d, k, kn, val, vn));
}

int mpb_dict_incr_str(mpb_dict_t *d, const char *key, int64_t by, int64_t *result) {
    if (!d) return MPB_EINVAL;
    WITH_KEY(d, key, mpb_dict_incr(d, k, kn, by, result));
}

static int get_i64(mpb_dict_t *d, const uint8_t *k, size_t kn, int64_t *v) {
    void *val;
    size_t vn;
    int rc = mpb_dict_get(d, k, kn, &val, &vn);
    if (rc) return rc;
    rc = mpb_unpack_i64(val, vn, v);
    free(val);
    if (rc) return mpb__fail(d->c, rc, "value is not an integer");
    return 0;
}

int mpb_dict_get_i64(mpb_dict_t *d, const char *key, int64_t *v) {
    if (!d) return MPB_EINVAL;
    WITH_KEY(d, key, get_i64(d, k, kn, v));
}

static int set_str(mpb_dict_t *d, const uint8_t *k, size_t kn, const char *v) {
    void *val;
    size_t vn = mpb_pack_str(v, strlen(v), &val);
    if (!val) return mpb__fail(d->c, MPB_ENOMEM, "out of memory");
    int rc = mpb_dict_set(d, k, kn, val, vn);
    free(val);
    return rc;
}

int mpb_dict_set_str(mpb_dict_t *d, const char *key, const char *v) {
    if (!d) return MPB_EINVAL;
    if (!v) return mpb__fail(d->c, MPB_EINVAL, "value is NULL");
    WITH_KEY(d, key, set_str(d, k, kn, v));
}

static int get_str(mpb_dict_t *d, const uint8_t *k, size_t kn, char **v) {
    void *val;
    size_t vn;
    int rc = mpb_dict_get(d, k, kn, &val, &vn);
    if (rc) return rc;
    const char *s;
    size_t sl;
    rc = mpb_unpack_str(val, vn, &s, &sl);
    if (rc) {
        free(val);
        return mpb__fail(d->c, rc, "value is not a string");
    }
    *v = malloc(sl + 1);
    if (*v) {
        memcpy(*v, s, sl);
        (*v)[sl] = 0;
    }
    free(val);
    return *v ? 0 : mpb__fail(d->c, MPB_ENOMEM, "out of memory");
}

int mpb_dict_get_str(mpb_dict_t *d, const char *key, char **v) {
    if (!d) return MPB_EINVAL;
    WITH_KEY(d, key, get_str(d, k, kn, v));
}
