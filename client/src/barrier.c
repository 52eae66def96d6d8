/* barrier.c - Barrier handles. */

#include "internal.h"

typedef struct {
    int64_t parties;
    int timeout_ms;
} bargs_t;

static void fill_barrier(mpb__buf_t *b, const void *arg) {
    const bargs_t *a = arg;
    if (a->parties <= 0)
        mpb__w_nil(b);
    else
        mpb__w_int(b, a->parties);
    mpb__w_int(b, a->timeout_ms < 0 ? -1 : a->timeout_ms);
}

int mpb_barrier_open(mpb_client_t *c, const char *name, int64_t parties, int timeout_ms,
                     mpb_barrier_t **out) {
    bargs_t a = {parties, timeout_ms};
    return mpb__open_handle(c, name, MPB_OP_BARRIER_OPEN, sizeof **out, 2, fill_barrier, &a, NULL,
                            NULL, (void **)out);
}

void mpb_barrier_close(mpb_barrier_t **b) {
    mpb__close_handle((void **)b);
}

int mpb_barrier_wait(mpb_barrier_t *br, int timeout_ms, int64_t *index) {
    if (!br) return MPB_EINVAL;
    MPB__REQ(br, MPB_OP_BARRIER_WAIT, 1);
    mpb__w_int(b, mpb__ms_arg(timeout_ms));
    /* MPB_FOREVER may mean the barrier's own timeout, which the broker applies */
    return mpb__call_int(br->c, timeout_ms, index);
}

int mpb_barrier_reset(mpb_barrier_t *br) {
    if (!br) return MPB_EINVAL;
    MPB__REQ(br, MPB_OP_BARRIER_RESET, 0);
    (void)b;
    return mpb__call_nil(br->c, 0);
}

int mpb_barrier_abort(mpb_barrier_t *br) {
    if (!br) return MPB_EINVAL;
    MPB__REQ(br, MPB_OP_BARRIER_ABORT, 0);
    (void)b;
    return mpb__call_nil(br->c, 0);
}

int mpb_barrier_state(mpb_barrier_t *br, int64_t *parties, int64_t *n_waiting, int *broken) {
    if (!br) return MPB_EINVAL;
    MPB__REQ(br, MPB_OP_BARRIER_STATE, 0);
    (void)b;
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(br->c, 0, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    uint32_t three;
    int64_t p, w;
    bool bk;
    if (mpb__rd_array(&r, &three) || three != 3 || mpb__rd_int(&r, &p) || mpb__rd_int(&r, &w) ||
        mpb__rd_bool(&r, &bk))
        return mpb__fail(br->c, MPB_EPROTO, "malformed barrier.state reply");
    if (parties) *parties = p;
    if (n_waiting) *n_waiting = w;
    if (broken) *broken = bk;
    return 0;
}
