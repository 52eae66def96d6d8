/* objects.c - the public calls on objects: each builds one request, waits for its reply and
 * copies out what the caller owns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define REQ(c, op, name, nlen, argc) mpb__buf_t *b = mpb__req(c, op, name, nlen, argc)

static int check_name(mpb_client_t *c, const char *name) {
    if (!name || !mpb__name_ok(name, strlen(name)))
        return mpb__fail(c, MPB_EINVAL,
                         "bad object name '%s': 1 to 255 printable ASCII characters, no '/' or "
                         "space",
                         name ? name : "(null)");
    return 0;
}

/* Calls that answer nil. */
static int call_nil(mpb_client_t *c, int block_ms) {
    const uint8_t *v;
    size_t n;
    return mpb__call(c, block_ms, &v, &n);
}

static int call_copy(mpb_client_t *c, void **out, size_t *outlen) {
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(c, 0, &v, &n);
    if (rc) return rc;
    return mpb__dup(c, v, n, out, outlen);
}

static int call_uint(mpb_client_t *c, uint64_t *out) {
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(c, 0, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    if (mpb__rd_uint(&r, out)) return mpb__fail(c, MPB_EPROTO, "expected an integer reply");
    return 0;
}

static int call_int(mpb_client_t *c, int64_t *out) {
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(c, 0, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    if (mpb__rd_int(&r, out)) return mpb__fail(c, MPB_EPROTO, "expected an integer reply");
    return 0;
}

/* Checks caller-given msgpack before it goes on the wire. */
static int check_val(mpb_client_t *c, const char *what, const void *p, size_t n) {
    if (!p || mpb__mp_check1(p, n, MPB__MAX_DEPTH) != (long)n)
        return mpb__fail(c, MPB_EINVAL, "%s is not one well-formed msgpack value", what);
    return 0;
}

/* ---- broker and objects ---- */

int mpb_broker_info(mpb_client_t *c, void **map, size_t *len) {
    if (!c) return MPB_EINVAL;
    REQ(c, MPB_OP_INFO, NULL, 0, 0);
    (void)b;
    return call_copy(c, map, len);
}

int mpb_objects(mpb_client_t *c, const char *pattern, uint64_t *cursor, mpb_obj_info_t *out,
                size_t max, size_t *n) {
    if (!c) return MPB_EINVAL;
    *n = 0;
    REQ(c, MPB_OP_OBJ_LIST, NULL, 0, 3);
    if (pattern) mpb__w_cstr(b, pattern);
    else mpb__w_nil(b);
    mpb__w_uint(b, *cursor);
    mpb__w_uint(b, max);
    const uint8_t *v;
    size_t vn;
    int rc = mpb__call(c, 0, &v, &vn);
    if (rc) return rc;
    mpb__rd_t r = {v, v + vn};
    uint32_t two, cnt;
    if (mpb__rd_array(&r, &two) || two != 2 || mpb__rd_uint(&r, cursor) ||
        mpb__rd_array(&r, &cnt))
        return mpb__fail(c, MPB_EPROTO, "malformed obj.list reply");
    for (uint32_t i = 0; i < cnt && i < max; i++) {
        uint32_t three, kl, nl;
        const char *k, *nm;
        mpb_obj_info_t *o = &out[i];
        if (mpb__rd_array(&r, &three) || three != 3 || mpb__rd_str(&r, &k, &kl) ||
            mpb__rd_str(&r, &nm, &nl) || mpb__rd_uint(&r, &o->size))
            return mpb__fail(c, MPB_EPROTO, "malformed obj.list entry");
        snprintf(o->kind, sizeof o->kind, "%.*s", (int)kl, k);
        snprintf(o->name, sizeof o->name, "%.*s", (int)nl, nm);
        (*n)++;
    }
    return 0;
}

int mpb_obj_describe(mpb_client_t *c, const char *path, void **map, size_t *len) {
    if (!c) return MPB_EINVAL;
    if (!path) return mpb__fail(c, MPB_EINVAL, "no object path");
    REQ(c, MPB_OP_OBJ_INFO, path, strlen(path), 0);
    (void)b;
    return call_copy(c, map, len);
}

int mpb_obj_delete(mpb_client_t *c, const char *path) {
    if (!c) return MPB_EINVAL;
    if (!path) return mpb__fail(c, MPB_EINVAL, "no object path");
    REQ(c, MPB_OP_OBJ_DELETE, path, strlen(path), 0);
    (void)b;
    return call_nil(c, 0);
}

/* ---- handles ---- */

int mpb_dict_open(mpb_client_t *c, const char *name, mpb_dict_t **out) {
    return mpb__open_handle(c, name, MPB_OP_DICT_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

/* A handle filled in locally. */
static int attach(mpb_client_t *c, const char *name, mpb_client_t **hc, char *hname,
                  uint32_t *hlen) {
    int rc = check_name(c, name);
    if (rc) return rc;
    *hc = c;
    *hlen = (uint32_t)strlen(name);
    memcpy(hname, name, *hlen + 1);
    return 0;
}

int mpb_dict_attach(mpb_client_t *c, const char *name, mpb_dict_t **out) {
    *out = NULL;
    if (!c) return MPB_EINVAL;
    mpb_dict_t *d = calloc(1, sizeof *d);
    if (!d) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    int rc = attach(c, name, &d->c, d->name, &d->namelen);
    if (rc) {
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int mpb_list_attach(mpb_client_t *c, const char *name, mpb_list_t **out) {
    *out = NULL;
    if (!c) return MPB_EINVAL;
    mpb_list_t *l = calloc(1, sizeof *l);
    if (!l) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    int rc = attach(c, name, &l->c, l->name, &l->namelen);
    if (rc) {
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void mpb_dict_close(mpb_dict_t **d) {
    mpb__close_handle((void **)d);
}

int mpb_list_open(mpb_client_t *c, const char *name, mpb_list_t **out) {
    return mpb__open_handle(c, name, MPB_OP_LIST_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

void mpb_list_close(mpb_list_t **l) {
    mpb__close_handle((void **)l);
}

/* ---- dict ---- */

#define DREQ(op, argc) REQ(d->c, op, d->name, d->namelen, argc)

int mpb_dict_set(mpb_dict_t *d, const void *key, size_t klen, const void *val, size_t vlen) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "key", key, klen) || check_val(d->c, "value", val, vlen)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_SET, 2);
    mpb__w_raw(b, key, klen);
    mpb__w_raw(b, val, vlen);
    return call_nil(d->c, 0);
}

int mpb_dict_get(mpb_dict_t *d, const void *key, size_t klen, void **val, size_t *vlen) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "key", key, klen)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_GET, 1);
    mpb__w_raw(b, key, klen);
    return call_copy(d->c, val, vlen);
}

int mpb_dict_get_default(mpb_dict_t *d, const void *key, size_t klen, const void *def,
                         size_t deflen, void **val, size_t *vlen) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "key", key, klen) || check_val(d->c, "default", def, deflen))
        return MPB_EINVAL;
    DREQ(MPB_OP_DICT_GET, 2);
    mpb__w_raw(b, key, klen);
    mpb__w_raw(b, def, deflen);
    return call_copy(d->c, val, vlen);
}

int mpb_dict_del(mpb_dict_t *d, const void *key, size_t klen) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "key", key, klen)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_DEL, 1);
    mpb__w_raw(b, key, klen);
    return call_nil(d->c, 0);
}

int mpb_dict_contains(mpb_dict_t *d, const void *key, size_t klen) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "key", key, klen)) return MPB_EINVAL;
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
    return call_uint(d->c, len);
}

int mpb_dict_update(mpb_dict_t *d, const void *pairs, size_t len) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "pairs", pairs, len)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_UPDATE, 1);
    mpb__w_raw(b, pairs, len);
    return call_nil(d->c, 0);
}

int mpb_dict_pop(mpb_dict_t *d, const void *key, size_t klen, const void *def, size_t deflen,
                 void **val, size_t *vlen) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "key", key, klen) || (def && check_val(d->c, "default", def, deflen)))
        return MPB_EINVAL;
    DREQ(MPB_OP_DICT_POP, def ? 2 : 1);
    mpb__w_raw(b, key, klen);
    if (def) mpb__w_raw(b, def, deflen);
    return call_copy(d->c, val, vlen);
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

int mpb_dict_setdefault(mpb_dict_t *d, const void *key, size_t klen, const void *def,
                        size_t deflen, void **val, size_t *vlen) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "key", key, klen) || check_val(d->c, "default", def, deflen))
        return MPB_EINVAL;
    DREQ(MPB_OP_DICT_SETDEFAULT, 2);
    mpb__w_raw(b, key, klen);
    mpb__w_raw(b, def, deflen);
    return call_copy(d->c, val, vlen);
}

int mpb_dict_incr(mpb_dict_t *d, const void *key, size_t klen, int64_t by, int64_t *result) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "key", key, klen)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_INCR, 2);
    mpb__w_raw(b, key, klen);
    mpb__w_int(b, by);
    int64_t tmp;
    return call_int(d->c, result ? result : &tmp);
}

int mpb_dict_clear(mpb_dict_t *d) {
    if (!d) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_CLEAR, 0);
    (void)b;
    return call_nil(d->c, 0);
}

int mpb_dict_copy(mpb_dict_t *d, const char *dst) {
    if (!d) return MPB_EINVAL;
    int rc = check_name(d->c, dst);
    if (rc) return rc;
    DREQ(MPB_OP_DICT_COPY, 1);
    mpb__w_cstr(b, dst);
    return call_nil(d->c, 0);
}

/* Splits a [next_cursor, [items...]] page reply. */
static int page(mpb_client_t *c, uint64_t *cursor, void **out, size_t *outlen, size_t *n) {
    const uint8_t *v;
    size_t vn;
    int rc = mpb__call(c, 0, &v, &vn);
    if (rc) return rc;
    mpb__rd_t r = {v, v + vn};
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

int mpb_dict_scan(mpb_dict_t *d, int what, uint64_t *cursor, size_t max, void **pg,
                  size_t *pagelen, size_t *n) {
    if (!d) return MPB_EINVAL;
    if (what < MPB_SCAN_KEYS || what > MPB_SCAN_ITEMS)
        return mpb__fail(d->c, MPB_EINVAL, "what must be MPB_SCAN_KEYS, _VALUES or _ITEMS");
    DREQ(MPB_OP_DICT_SCAN, 3);
    mpb__w_uint(b, (uint64_t)what);
    mpb__w_uint(b, *cursor);
    mpb__w_uint(b, max);
    return page(d->c, cursor, pg, pagelen, n);
}

static int key_str(mpb_client_t *c, const char *key, uint8_t *small, size_t smallcap,
                   void **heap, const uint8_t **k, size_t *kn) {
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
        if (!key) return mpb__fail(d->c, MPB_EINVAL, "key is NULL");                              \
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

/* ---- list ---- */

#define LREQ(op, argc) REQ(l->c, op, l->name, l->namelen, argc)

int mpb_list_append(mpb_list_t *l, const void *val, size_t vlen) {
    if (!l) return MPB_EINVAL;
    if (check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_APPEND, 1);
    mpb__w_raw(b, val, vlen);
    return call_nil(l->c, 0);
}

int mpb_list_extend(mpb_list_t *l, const void *vals, size_t len) {
    if (!l) return MPB_EINVAL;
    if (check_val(l->c, "values", vals, len)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_EXTEND, 1);
    mpb__w_raw(b, vals, len);
    return call_nil(l->c, 0);
}

int mpb_list_insert(mpb_list_t *l, int64_t index, const void *val, size_t vlen) {
    if (!l) return MPB_EINVAL;
    if (check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_INSERT, 2);
    mpb__w_int(b, index);
    mpb__w_raw(b, val, vlen);
    return call_nil(l->c, 0);
}

int mpb_list_get(mpb_list_t *l, int64_t index, void **val, size_t *vlen) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_GET, 1);
    mpb__w_int(b, index);
    return call_copy(l->c, val, vlen);
}

int mpb_list_set(mpb_list_t *l, int64_t index, const void *val, size_t vlen) {
    if (!l) return MPB_EINVAL;
    if (check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_SET, 2);
    mpb__w_int(b, index);
    mpb__w_raw(b, val, vlen);
    return call_nil(l->c, 0);
}

int mpb_list_slice(mpb_list_t *l, int64_t start, int64_t stop, size_t max, void **items,
                   size_t *itemslen, size_t *n) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_SLICE, 3);
    mpb__w_int(b, start);
    mpb__w_int(b, stop);
    mpb__w_uint(b, max);
    const uint8_t *v;
    size_t vn;
    int rc = mpb__call(l->c, 0, &v, &vn);
    if (rc) return rc;
    mpb__rd_t r = {v, v + vn};
    uint32_t cnt;
    if (mpb__rd_array(&r, &cnt)) return mpb__fail(l->c, MPB_EPROTO, "malformed slice reply");
    *n = cnt;
    return mpb__dup(l->c, v, vn, items, itemslen);
}

int mpb_list_pop(mpb_list_t *l, int64_t index, void **val, size_t *vlen) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_POP, 1);
    mpb__w_int(b, index);
    return call_copy(l->c, val, vlen);
}

int mpb_list_remove(mpb_list_t *l, const void *val, size_t vlen) {
    if (!l) return MPB_EINVAL;
    if (check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_REMOVE, 1);
    mpb__w_raw(b, val, vlen);
    return call_nil(l->c, 0);
}

int mpb_list_index(mpb_list_t *l, const void *val, size_t vlen, int64_t start, int64_t stop,
                   int64_t *index) {
    if (!l) return MPB_EINVAL;
    if (check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_INDEX, 3);
    mpb__w_raw(b, val, vlen);
    mpb__w_int(b, start);
    mpb__w_int(b, stop);
    return call_int(l->c, index);
}

int mpb_list_count(mpb_list_t *l, const void *val, size_t vlen, uint64_t *count) {
    if (!l) return MPB_EINVAL;
    if (check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_COUNT, 1);
    mpb__w_raw(b, val, vlen);
    return call_uint(l->c, count);
}

int mpb_list_len(mpb_list_t *l, uint64_t *len) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_LEN, 0);
    (void)b;
    return call_uint(l->c, len);
}

int mpb_list_reverse(mpb_list_t *l) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_REVERSE, 0);
    (void)b;
    return call_nil(l->c, 0);
}

int mpb_list_sort(mpb_list_t *l, int reverse) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_SORT, 1);
    mpb__w_bool(b, reverse != 0);
    return call_nil(l->c, 0);
}

int mpb_list_clear(mpb_list_t *l) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_CLEAR, 0);
    (void)b;
    return call_nil(l->c, 0);
}

/* ---- pipelined forms ---- */

int mpb_dict_set_async(mpb_dict_t *d, const void *key, size_t klen, const void *val,
                       size_t vlen, mpb_callback_t cb, void *arg) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "key", key, klen) || check_val(d->c, "value", val, vlen)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_SET, 2);
    mpb__w_raw(b, key, klen);
    mpb__w_raw(b, val, vlen);
    return mpb__send(d->c, cb, arg);
}

int mpb_dict_get_async(mpb_dict_t *d, const void *key, size_t klen, mpb_callback_t cb,
                       void *arg) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "key", key, klen)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_GET, 1);
    mpb__w_raw(b, key, klen);
    return mpb__send(d->c, cb, arg);
}

int mpb_dict_incr_async(mpb_dict_t *d, const void *key, size_t klen, int64_t by,
                        mpb_callback_t cb, void *arg) {
    if (!d) return MPB_EINVAL;
    if (check_val(d->c, "key", key, klen)) return MPB_EINVAL;
    DREQ(MPB_OP_DICT_INCR, 2);
    mpb__w_raw(b, key, klen);
    mpb__w_int(b, by);
    return mpb__send(d->c, cb, arg);
}

int mpb_list_append_async(mpb_list_t *l, const void *val, size_t vlen, mpb_callback_t cb,
                          void *arg) {
    if (!l) return MPB_EINVAL;
    if (check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_APPEND, 1);
    mpb__w_raw(b, val, vlen);
    return mpb__send(l->c, cb, arg);
}
