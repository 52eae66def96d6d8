/* value.c - Value handles: one msgpack value, with integer, float and string forms. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct {
    const void *p;
    size_t n;
} raw_t;

static void fill_raw(mpb__buf_t *b, const void *arg) {
    const raw_t *r = arg;
    if (r->p)
        mpb__w_raw(b, r->p, r->n);
    else
        mpb__w_nil(b);
}

int mpb_value_open(mpb_client_t *c, const char *name, const void *initial, size_t len,
                   mpb_value_t **out) {
    if (initial && (mpb__mp_check1(initial, len, MPB__MAX_DEPTH) != (long)len))
        return mpb__fail(c, MPB_EINVAL, "initial is not one well-formed msgpack value");
    raw_t a = {initial, len};
    return mpb__open_handle(c, name, MPB_OP_VALUE_OPEN, sizeof **out, 1, fill_raw, &a, NULL, NULL,
                            (void **)out);
}

void mpb_value_close(mpb_value_t **v) {
    mpb__close_handle((void **)v);
}

int mpb_value_get(mpb_value_t *v, void **val, size_t *vlen) {
    if (!v) return MPB_EINVAL;
    MPB__REQ(v, MPB_OP_VALUE_GET, 0);
    (void)b;
    return mpb__call_copy(v->c, 0, val, vlen);
}

int mpb_value_set(mpb_value_t *v, const void *val, size_t vlen) {
    if (!v) return MPB_EINVAL;
    if (mpb__check_val(v->c, "value", val, vlen)) return MPB_EINVAL;
    MPB__REQ(v, MPB_OP_VALUE_SET, 1);
    mpb__w_raw(b, val, vlen);
    return mpb__call_nil(v->c, 0);
}

int mpb_value_get_i64(mpb_value_t *v, int64_t *out) {
    if (!v) return MPB_EINVAL;
    MPB__REQ(v, MPB_OP_VALUE_GET, 0);
    (void)b;
    int rc = mpb__call_int(v->c, 0, out);
    if (rc == MPB_EPROTO) return mpb__fail(v->c, MPB_ETYPE, "value/%s is not an integer", v->name);
    return rc;
}

int mpb_value_set_i64(mpb_value_t *v, int64_t x) {
    if (!v) return MPB_EINVAL;
    uint8_t enc[MPB_PACK_MAX_SCALAR];
    return mpb_value_set(v, enc, mpb_pack_i64(enc, x));
}

int mpb_value_add_i64(mpb_value_t *v, int64_t by, int64_t *result) {
    if (!v) return MPB_EINVAL;
    MPB__REQ(v, MPB_OP_VALUE_ADD, 2);
    mpb__w_int(b, by);
    mpb__w_bool(b, true);
    int rc = mpb__call_int(v->c, 0, result);
    if (rc == MPB_EPROTO) return mpb__fail(v->c, MPB_ETYPE, "value/%s is not an integer", v->name);
    return rc;
}

int mpb_value_add_double(mpb_value_t *v, double by, double *result) {
    if (!v) return MPB_EINVAL;
    MPB__REQ(v, MPB_OP_VALUE_ADD, 1);
    mpb__w_double(b, by);
    const uint8_t *p;
    size_t n;
    int rc = mpb__call(v->c, 0, &p, &n);
    if (rc) return rc;
    mpb__rd_t r = {p, p + n};
    double d;
    if (mpb__rd_double(&r, &d)) return mpb__fail(v->c, MPB_EPROTO, "expected a number");
    if (result) *result = d;
    return 0;
}

/* ---- string forms ---- */

int mpb_value_set_str(mpb_value_t *v, const char *s) {
    if (!v) return MPB_EINVAL;
    MPB__WITH_STR(v->c, s, mpb_value_set(v, p, n));
}

int mpb_value_get_str(mpb_value_t *v, char **s) {
    if (!v) return MPB_EINVAL;
    if (!s) return mpb__fail(v->c, MPB_EINVAL, "no place for the value");
    void *val = NULL;
    size_t vn = 0;
    int rc = mpb_value_get(v, &val, &vn);
    return mpb__take_str(v->c, rc, val, vn, s);
}
