/* t_value.c - Value: one msgpack value, get, set and add (numbers stay their type). */
#include <stdlib.h>
#include <string.h>

#include "kind.h"

static const uint8_t zero_int[1] = {0};

/* value.open INITIAL|nil -> the value (INITIAL, default 0, applies when it is new) */
int cmd_value_open(req_t *r) {
    blob_t **v = &r->obj->u.value;
    if (!*v) {
        const uint8_t *p = zero_int;
        size_t n = 1;
        if (mpb__rd_nil(&r->args) != 0 && arg_value(r, "initial", g_limits.max_value, &p, &n))
            return -1;
        *v = blob_new(p, n);
    }
    return reply_raw(r, (*v)->data, (*v)->len);
}

/* value.get -> the value (0 if never set) */
int cmd_value_get(req_t *r) {
    blob_t *v = r->obj->u.value;
    return v ? reply_raw(r, v->data, v->len) : reply_raw(r, zero_int, 1);
}

/* value.set V -> nil */
int cmd_value_set(req_t *r) {
    const uint8_t *p;
    size_t n;
    if (arg_value(r, "value", g_limits.max_value, &p, &n)) return -1;
    free(r->obj->u.value);
    r->obj->u.value = blob_new(p, n);
    return reply_nil(r);
}

/* value.add N [INT_ONLY] -> the new value. Integers stay integers (EOVERFLOW past int64); a float
 * on either side gives a float. ETYPE when the value is not a number. */
int cmd_value_add(req_t *r) {
    if (r->argc > 2) return reply_error(r, MPB_EPROTO, "value.add takes 1 or 2 arguments");
    blob_t *v = r->obj->u.value;
    mpb__rd_t cur =
        v ? (mpb__rd_t){v->data, v->data + v->len} : (mpb__rd_t){zero_int, zero_int + 1};
    int ta = mpb__rd_type(&cur), tb = mpb__rd_type(&r->args);
    if ((ta != MPB__MT_INT && ta != MPB__MT_FLOAT) || (tb != MPB__MT_INT && tb != MPB__MT_FLOAT))
        return reply_error(r, MPB_ETYPE, "value.add needs numbers");
    if (r->argc == 2) { /* INT_ONLY: refuse rather than turn the answer into a float */
        mpb__rd_t q = r->args;
        const uint8_t *sk;
        size_t skn;
        bool int_only = false;
        mpb__rd_span(&q, &sk, &skn);
        mpb__rd_bool(&q, &int_only);
        if (int_only && (ta != MPB__MT_INT || tb != MPB__MT_INT))
            return reply_error(r, MPB_ETYPE, "value/%.*s is not an integer", (int)r->namelen,
                               r->name);
    }
    uint8_t enc[9];
    size_t en;
    if (ta == MPB__MT_INT && tb == MPB__MT_INT) {
        int64_t a, b, s;
        if (mpb__rd_int(&cur, &a) || mpb__rd_int(&r->args, &b))
            return reply_error(r, MPB_EOVERFLOW, "value beyond int64");
        if (__builtin_add_overflow(a, b, &s))
            return reply_error(r, MPB_EOVERFLOW, "%lld + %lld overflows int64", (long long)a,
                               (long long)b);
        en = mpb__enc_int(enc, s);
    } else {
        double a, b;
        mpb__rd_double(&cur, &a);
        mpb__rd_double(&r->args, &b);
        en = mpb__enc_double(enc, a + b);
    }
    free(v);
    r->obj->u.value = blob_new(enc, en);
    return reply_raw(r, enc, en);
}

/* ---- hooks ---- */

static void value_free(obj_t *o) {
    free(o->u.value);
}

static uint64_t value_size(const obj_t *o) {
    (void)o;
    return 1;
}

static uint32_t value_describe(const obj_t *o, mpb__buf_t *b) {
    mpb__w_cstr(b, "value");
    if (o->u.value)
        mpb__w_raw(b, o->u.value->data, o->u.value->len);
    else
        mpb__w_int(b, 0);
    return 1;
}

const kind_ops_t value_ops = {
    .name = "value",
    .free = value_free,
    .size = value_size,
    .describe = value_describe,
};
