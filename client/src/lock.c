/* lock.c - Lock and RLock handles. An acquisition belongs to a thread (or to the owner set
 * with mpb_lock_set_thread); the client counts what it holds, which a lost session takes. */
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

uint64_t mpb__thread_id(const mpb__any_t *h) {
    return h->tid ? h->tid : (uint64_t)syscall(SYS_gettid);
}

int mpb_lock_open(mpb_client_t *c, const char *name, mpb_lock_t **out) {
    return mpb__open_handle(c, name, MPB_OP_LOCK_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

int mpb_rlock_open(mpb_client_t *c, const char *name, mpb_lock_t **out) {
    return mpb__open_handle(c, name, MPB_OP_RLOCK_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

void mpb_lock_close(mpb_lock_t **l) {
    mpb__close_handle((void **)l);
}

void mpb_lock_set_thread(mpb_lock_t *l, uint64_t tid) {
    if (!l) return;
    l->tid = tid;
}

static bool is_rlock(const mpb__any_t *h) {
    return h->kind_op == MPB_OP_RLOCK_OPEN;
}

int mpb__lock_acquire(mpb__any_t *h, const char *name, uint32_t nl, bool rlock, int timeout_ms,
                      uint64_t *fence) {
    mpb__buf_t *b = mpb__req(h->c, rlock ? MPB_OP_RLOCK_ACQUIRE : MPB_OP_LOCK_ACQUIRE, name, nl, 2);
    mpb__w_uint(b, mpb__thread_id(h));
    mpb__w_int(b, mpb__ms_arg(timeout_ms));
    int64_t f = 0;
    int rc = mpb__call_int(h->c, timeout_ms, &f);
    if (!rc && fence) *fence = (uint64_t)f;
    if (!rc) mpb__lock_held(h->c, rlock ? "rlock" : "lock", name, +1);
    return rc;
}

int mpb__lock_release(mpb__any_t *h, const char *name, uint32_t nl, bool rlock) {
    mpb__buf_t *b = mpb__req(h->c, rlock ? MPB_OP_RLOCK_RELEASE : MPB_OP_LOCK_RELEASE, name, nl, 1);
    mpb__w_uint(b, mpb__thread_id(h));
    int rc = mpb__call_nil(h->c, 0);
    if (!rc) mpb__lock_held(h->c, rlock ? "rlock" : "lock", name, -1);
    return rc;
}

int mpb_lock_acquire(mpb_lock_t *l, int timeout_ms, uint64_t *fence) {
    if (!l) return MPB_EINVAL;
    return mpb__lock_acquire(mpb__any(l), l->name, l->namelen, is_rlock(mpb__any(l)), timeout_ms,
                             fence);
}

int mpb_lock_release(mpb_lock_t *l) {
    if (!l) return MPB_EINVAL;
    return mpb__lock_release(mpb__any(l), l->name, l->namelen, is_rlock(mpb__any(l)));
}

int mpb_lock_locked(mpb_lock_t *l) {
    if (!l) return MPB_EINVAL;
    MPB__REQ(l, is_rlock(mpb__any(l)) ? MPB_OP_RLOCK_LOCKED : MPB_OP_LOCK_LOCKED, 0);
    (void)b;
    return mpb__call_bool(l->c, 0);
}
