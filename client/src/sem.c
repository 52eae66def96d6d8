/* sem.c - Semaphore and BoundedSemaphore handles. */

#include "internal.h"

int mpb_semaphore_open(mpb_client_t *c, const char *name, int64_t value, int bounded,
                       mpb_semaphore_t **out) {
    mpb__nflag_t a = {value, bounded};
    return mpb__open_handle(c, name, MPB_OP_SEM_OPEN, sizeof **out, 2, mpb__fill_nflag, &a, NULL,
                            NULL, (void **)out);
}

void mpb_semaphore_close(mpb_semaphore_t **s) {
    mpb__close_handle((void **)s);
}

int mpb_semaphore_acquire_fenced(mpb_semaphore_t *s, int timeout_ms, uint64_t *fence) {
    if (!s) return MPB_EINVAL;
    MPB__REQ(s, MPB_OP_SEM_ACQUIRE, 1);
    mpb__w_int(b, mpb__ms_arg(timeout_ms));
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(mpb__any(s)->c, timeout_ms, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    if (fence && mpb__rd_uint(&r, fence)) *fence = 0; /* a broker before tokens answers nil */
    return 0;
}

int mpb_semaphore_acquire(mpb_semaphore_t *s, int timeout_ms) {
    if (!s) return MPB_EINVAL;
    return mpb_semaphore_acquire_fenced(s, timeout_ms, NULL);
}

int mpb_semaphore_release(mpb_semaphore_t *s, int64_t n) {
    if (!s) return MPB_EINVAL;
    MPB__REQ(s, MPB_OP_SEM_RELEASE, 1);
    mpb__w_int(b, n);
    return mpb__call_nil(s->c, 0);
}

int mpb_semaphore_value(mpb_semaphore_t *s, int64_t *value) {
    if (!s) return MPB_EINVAL;
    MPB__REQ(s, MPB_OP_SEM_VALUE, 0);
    (void)b;
    return mpb__call_int(s->c, 0, value);
}
