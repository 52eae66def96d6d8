/* list.c - list handles: one request per call, its reply copied out to what the caller owns;
 * the integer and string forms (the pipelined ones are in async_ops.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int mpb_list_open(mpb_client_t *c, const char *name, mpb_list_t **out) {
    return mpb__open_handle(c, name, MPB_OP_LIST_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

int mpb_list_attach(mpb_client_t *c, const char *name, mpb_list_t **out) {
    return mpb__attach_handle(c, name, sizeof **out, (void **)out);
}

void mpb_list_close(mpb_list_t **l) {
    mpb__close_handle((void **)l);
}

/* ---- list ---- */

#define LREQ(op, argc) MPB__REQ(l, op, argc)

int mpb_list_append(mpb_list_t *l, const void *val, size_t vlen) {
    if (!l) return MPB_EINVAL;
    if (mpb__check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_APPEND, 1);
    mpb__w_raw(b, val, vlen);
    return mpb__call_nil(l->c, 0);
}

int mpb_list_extend(mpb_list_t *l, const void *vals, size_t len) {
    if (!l) return MPB_EINVAL;
    if (mpb__check_val(l->c, "values", vals, len)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_EXTEND, 1);
    mpb__w_raw(b, vals, len);
    return mpb__call_nil(l->c, 0);
}

int mpb_list_insert(mpb_list_t *l, int64_t index, const void *val, size_t vlen) {
    if (!l) return MPB_EINVAL;
    if (mpb__check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_INSERT, 2);
    mpb__w_int(b, index);
    mpb__w_raw(b, val, vlen);
    return mpb__call_nil(l->c, 0);
}

int mpb_list_get(mpb_list_t *l, int64_t index, void **val, size_t *vlen) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_GET, 1);
    mpb__w_int(b, index);
    return mpb__call_copy(l->c, 0, val, vlen);
}

int mpb_list_set(mpb_list_t *l, int64_t index, const void *val, size_t vlen) {
    if (!l) return MPB_EINVAL;
    if (mpb__check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_SET, 2);
    mpb__w_int(b, index);
    mpb__w_raw(b, val, vlen);
    return mpb__call_nil(l->c, 0);
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
    return mpb__call_copy(l->c, 0, val, vlen);
}

int mpb_list_remove(mpb_list_t *l, const void *val, size_t vlen) {
    if (!l) return MPB_EINVAL;
    if (mpb__check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_REMOVE, 1);
    mpb__w_raw(b, val, vlen);
    return mpb__call_nil(l->c, 0);
}

int mpb_list_index(mpb_list_t *l, const void *val, size_t vlen, int64_t start, int64_t stop,
                   int64_t *index) {
    if (!l) return MPB_EINVAL;
    if (mpb__check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_INDEX, 3);
    mpb__w_raw(b, val, vlen);
    mpb__w_int(b, start);
    mpb__w_int(b, stop);
    return mpb__call_int(l->c, 0, index);
}

int mpb_list_count(mpb_list_t *l, const void *val, size_t vlen, uint64_t *count) {
    if (!l) return MPB_EINVAL;
    if (mpb__check_val(l->c, "value", val, vlen)) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_COUNT, 1);
    mpb__w_raw(b, val, vlen);
    return mpb__call_uint(l->c, 0, count);
}

int mpb_list_len(mpb_list_t *l, uint64_t *len) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_LEN, 0);
    (void)b;
    return mpb__call_uint(l->c, 0, len);
}

int mpb_list_reverse(mpb_list_t *l) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_REVERSE, 0);
    (void)b;
    return mpb__call_nil(l->c, 0);
}

int mpb_list_sort(mpb_list_t *l, int reverse) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_SORT, 1);
    mpb__w_bool(b, reverse != 0);
    return mpb__call_nil(l->c, 0);
}

int mpb_list_clear(mpb_list_t *l) {
    if (!l) return MPB_EINVAL;
    LREQ(MPB_OP_LIST_CLEAR, 0);
    (void)b;
    return mpb__call_nil(l->c, 0);
}

/* ---- integer and string forms ---- */

int mpb_list_append_i64(mpb_list_t *l, int64_t v) {
    if (!l) return MPB_EINVAL;
    uint8_t b[MPB_PACK_MAX_SCALAR];
    return mpb_list_append(l, b, mpb_pack_i64(b, v));
}

int mpb_list_append_str(mpb_list_t *l, const char *s) {
    if (!l) return MPB_EINVAL;
    MPB__WITH_STR(l->c, s, mpb_list_append(l, p, n));
}

int mpb_list_get_i64(mpb_list_t *l, int64_t index, int64_t *v) {
    if (!l) return MPB_EINVAL;
    if (!v) return mpb__fail(l->c, MPB_EINVAL, "no place for the value");
    void *val = NULL;
    size_t vn = 0;
    int rc = mpb_list_get(l, index, &val, &vn);
    return mpb__take_i64(l->c, rc, val, vn, v);
}

int mpb_list_get_str(mpb_list_t *l, int64_t index, char **s) {
    if (!l) return MPB_EINVAL;
    if (!s) return mpb__fail(l->c, MPB_EINVAL, "no place for the value");
    void *val = NULL;
    size_t vn = 0;
    int rc = mpb_list_get(l, index, &val, &vn);
    return mpb__take_str(l->c, rc, val, vn, s);
}
