/* shortcuts.c - integer and string forms of the queue, list and value calls, as the dict has
 * (mpb_dict_set_i64 and kin): each packs or unpacks one scalar around the call it names. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A value got by a call (freed here either way) as an int64 or a new C string. */
static int take_i64(mpb_client_t *c, int rc, void *val, size_t vn, int64_t *out) {
    if (rc) return rc;
    int64_t x;
    rc = mpb_unpack_i64(val, vn, &x);
    free(val);
    if (rc) return mpb__fail(c, MPB_ETYPE, "the value is not an integer that fits int64");
    *out = x;
    return 0;
}

static int take_str(mpb_client_t *c, int rc, void *val, size_t vn, char **out) {
    if (rc) return rc;
    const char *s;
    size_t sl;
    if (mpb_unpack_str(val, vn, &s, &sl)) {
        free(val);
        return mpb__fail(c, MPB_ETYPE, "the value is not a string");
    }
    char *copy = malloc(sl + 1);
    if (copy) {
        memcpy(copy, s, sl);
        copy[sl] = 0;
    }
    free(val);
    if (!copy) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    *out = copy;
    return 0;
}

/* Runs call with (p, n) the msgpack str of s. */
#define WITH_STR(c, s, call)                                                                       \
    do {                                                                                           \
        if (!(s)) return mpb__fail(c, MPB_EINVAL, "value is NULL");                                \
        void *p;                                                                                   \
        size_t n = mpb_pack_str(s, strlen(s), &p);                                                 \
        if (!p) return mpb__fail(c, MPB_ENOMEM, "out of memory");                                  \
        int rc_ = call;                                                                            \
        free(p);                                                                                   \
        return rc_;                                                                                \
    } while (0)

/* ---- queue ---- */

int mpb_queue_put_i64(mpb_queue_t *q, int64_t v, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    uint8_t b[MPB_PACK_MAX_SCALAR];
    return mpb_queue_put(q, b, mpb_pack_i64(b, v), timeout_ms);
}

int mpb_queue_put_str(mpb_queue_t *q, const char *s, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    WITH_STR(q->c, s, mpb_queue_put(q, p, n, timeout_ms));
}

int mpb_queue_get_i64(mpb_queue_t *q, int64_t *v, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    if (!v) return mpb__fail(q->c, MPB_EINVAL, "no place for the value");
    void *val = NULL;
    size_t vn = 0;
    int rc = mpb_queue_get(q, &val, &vn, timeout_ms);
    return take_i64(q->c, rc, val, vn, v);
}

int mpb_queue_get_str(mpb_queue_t *q, char **s, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    if (!s) return mpb__fail(q->c, MPB_EINVAL, "no place for the value");
    void *val = NULL;
    size_t vn = 0;
    int rc = mpb_queue_get(q, &val, &vn, timeout_ms);
    return take_str(q->c, rc, val, vn, s);
}

/* ---- list ---- */

int mpb_list_append_i64(mpb_list_t *l, int64_t v) {
    if (!l) return MPB_EINVAL;
    uint8_t b[MPB_PACK_MAX_SCALAR];
    return mpb_list_append(l, b, mpb_pack_i64(b, v));
}

int mpb_list_append_str(mpb_list_t *l, const char *s) {
    if (!l) return MPB_EINVAL;
    WITH_STR(l->c, s, mpb_list_append(l, p, n));
}

int mpb_list_get_i64(mpb_list_t *l, int64_t index, int64_t *v) {
    if (!l) return MPB_EINVAL;
    if (!v) return mpb__fail(l->c, MPB_EINVAL, "no place for the value");
    void *val = NULL;
    size_t vn = 0;
    int rc = mpb_list_get(l, index, &val, &vn);
    return take_i64(l->c, rc, val, vn, v);
}

int mpb_list_get_str(mpb_list_t *l, int64_t index, char **s) {
    if (!l) return MPB_EINVAL;
    if (!s) return mpb__fail(l->c, MPB_EINVAL, "no place for the value");
    void *val = NULL;
    size_t vn = 0;
    int rc = mpb_list_get(l, index, &val, &vn);
    return take_str(l->c, rc, val, vn, s);
}

/* ---- value ---- */

int mpb_value_set_str(mpb_value_t *v, const char *s) {
    if (!v) return MPB_EINVAL;
    WITH_STR(v->c, s, mpb_value_set(v, p, n));
}

int mpb_value_get_str(mpb_value_t *v, char **s) {
    if (!v) return MPB_EINVAL;
    if (!s) return mpb__fail(v->c, MPB_EINVAL, "no place for the value");
    void *val = NULL;
    size_t vn = 0;
    int rc = mpb_value_get(v, &val, &vn);
    return take_str(v->c, rc, val, vn, s);
}
