/* queue.c - queue handles, plain and reliable (tracked deliveries). Blocking calls send their
 * timeout to the broker, which parks them; the client only waits for the answer. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void fill_queue_reliable(mpb__buf_t *b, const void *arg) {
    mpb__fill_nflag(b, arg);
    mpb__w_bool(b, true);
}

int mpb_queue_open(mpb_client_t *c, const char *name, int64_t maxsize, int joinable,
                   mpb_queue_t **out) {
    mpb__nflag_t a = {maxsize, joinable};
    return mpb__open_handle(c, name, MPB_OP_QUEUE_OPEN, sizeof **out, 2, mpb__fill_nflag, &a, NULL,
                            NULL, (void **)out);
}

void mpb_queue_close(mpb_queue_t **q) {
    mpb__close_handle((void **)q);
}

int mpb_queue_put(mpb_queue_t *q, const void *val, size_t vlen, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    if (mpb__check_val(q->c, "value", val, vlen)) return MPB_EINVAL;
    MPB__REQ(q, MPB_OP_QUEUE_PUT, 2);
    mpb__w_raw(b, val, vlen);
    mpb__w_int(b, mpb__ms_arg(timeout_ms));
    return mpb__call_nil(q->c, timeout_ms);
}

int mpb_queue_get(mpb_queue_t *q, void **val, size_t *vlen, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    MPB__REQ(q, MPB_OP_QUEUE_GET, 1);
    mpb__w_int(b, mpb__ms_arg(timeout_ms));
    return mpb__call_copy(q->c, timeout_ms, val, vlen);
}

int mpb_queue_qsize(mpb_queue_t *q, uint64_t *n) {
    if (!q) return MPB_EINVAL;
    MPB__REQ(q, MPB_OP_QUEUE_QSIZE, 0);
    (void)b;
    int64_t x = 0;
    int rc = mpb__call_int(q->c, 0, &x);
    if (!rc) *n = (uint64_t)x;
    return rc;
}

int mpb_queue_empty(mpb_queue_t *q) {
    if (!q) return MPB_EINVAL;
    MPB__REQ(q, MPB_OP_QUEUE_EMPTY, 0);
    (void)b;
    return mpb__call_bool(q->c, 0);
}

int mpb_queue_full(mpb_queue_t *q) {
    if (!q) return MPB_EINVAL;
    MPB__REQ(q, MPB_OP_QUEUE_FULL, 0);
    (void)b;
    return mpb__call_bool(q->c, 0);
}

int mpb_queue_task_done(mpb_queue_t *q) {
    if (!q) return MPB_EINVAL;
    MPB__REQ(q, MPB_OP_QUEUE_TASK_DONE, 0);
    (void)b;
    return mpb__call_nil(q->c, 0);
}

int mpb_queue_open_reliable(mpb_client_t *c, const char *name, int64_t maxsize, int joinable,
                            mpb_queue_t **out) {
    mpb__nflag_t a = {maxsize, joinable};
    return mpb__open_handle(c, name, MPB_OP_QUEUE_OPEN, sizeof **out, 3, fill_queue_reliable, &a,
                            NULL, NULL, (void **)out);
}

int mpb_queue_get_tracked(mpb_queue_t *q, void **val, size_t *vlen, uint64_t *delivery,
                          int timeout_ms) {
    if (!q) return MPB_EINVAL;
    MPB__REQ(q, MPB_OP_QUEUE_GET, 2);
    mpb__w_int(b, mpb__ms_arg(timeout_ms));
    mpb__w_bool(b, true);
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(mpb__any(q)->c, timeout_ms, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    uint32_t len;
    uint64_t id;
    const uint8_t *item;
    size_t il;
    if (mpb__rd_array(&r, &len) || len != 2 || mpb__rd_uint(&r, &id) ||
        mpb__rd_span(&r, &item, &il))
        return mpb__fail(mpb__any(q)->c, MPB_EPROTO, "expected [delivery id, item]");
    if (delivery) *delivery = id;
    return mpb__dup(mpb__any(q)->c, item, il, val, vlen);
}

int mpb_queue_task_done_id(mpb_queue_t *q, uint64_t delivery) {
    if (!q) return MPB_EINVAL;
    MPB__REQ(q, MPB_OP_QUEUE_TASK_DONE, 1);
    mpb__w_uint(b, delivery);
    return mpb__call_nil(q->c, 0);
}

int mpb_queue_join(mpb_queue_t *q, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    MPB__REQ(q, MPB_OP_QUEUE_JOIN, 1);
    mpb__w_int(b, mpb__ms_arg(timeout_ms));
    return mpb__call_nil(q->c, timeout_ms);
}

/* ---- integer and string forms ---- */

int mpb_queue_put_i64(mpb_queue_t *q, int64_t v, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    uint8_t b[MPB_PACK_MAX_SCALAR];
    return mpb_queue_put(q, b, mpb_pack_i64(b, v), timeout_ms);
}

int mpb_queue_put_str(mpb_queue_t *q, const char *s, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    MPB__WITH_STR(q->c, s, mpb_queue_put(q, p, n, timeout_ms));
}

int mpb_queue_get_i64(mpb_queue_t *q, int64_t *v, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    if (!v) return mpb__fail(q->c, MPB_EINVAL, "no place for the value");
    void *val = NULL;
    size_t vn = 0;
    int rc = mpb_queue_get(q, &val, &vn, timeout_ms);
    return mpb__take_i64(q->c, rc, val, vn, v);
}

int mpb_queue_get_str(mpb_queue_t *q, char **s, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    if (!s) return mpb__fail(q->c, MPB_EINVAL, "no place for the value");
    void *val = NULL;
    size_t vn = 0;
    int rc = mpb_queue_get(q, &val, &vn, timeout_ms);
    return mpb__take_str(q->c, rc, val, vn, s);
}
