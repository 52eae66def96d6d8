/* cond.c - Condition handles: a condition over a lock (its own, or one named at open). */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "internal.h"

static void fill_str(mpb__buf_t *b, const void *arg) {
    if (arg)
        mpb__w_cstr(b, arg);
    else
        mpb__w_nil(b);
}

int mpb_condition_open(mpb_client_t *c, const char *name, const char *lockpath,
                       mpb_condition_t **out) {
    const uint8_t *v;
    size_t vn;
    int rc = mpb__open_handle(c, name, MPB_OP_COND_OPEN, sizeof **out, 1, fill_str, lockpath, &v,
                              &vn, (void **)out);
    if (rc) return rc;
    mpb__rd_t r = {v, v + vn};
    const char *s;
    uint32_t sl;
    if (mpb__rd_str(&r, &s, &sl) || sl >= sizeof(*out)->lock || !memchr(s, '/', sl)) {
        mpb_condition_close(out);
        return mpb__fail(c, MPB_EPROTO, "malformed condition.open reply");
    }
    memcpy((*out)->lock, s, sl);
    (*out)->lock[sl] = 0;
    return 0;
}

void mpb_condition_close(mpb_condition_t **cv) {
    mpb__close_handle((void **)cv);
}

static const char *cv_lockname(mpb_condition_t *cv, bool *rlock) {
    *rlock = !strncmp(cv->lock, "rlock/", 6);
    return strchr(cv->lock, '/') + 1;
}

int mpb_condition_acquire(mpb_condition_t *cv, int timeout_ms, uint64_t *fence) {
    if (!cv) return MPB_EINVAL;
    bool rl;
    const char *n = cv_lockname(cv, &rl);
    return mpb__lock_acquire(mpb__any(cv), n, (uint32_t)strlen(n), rl, timeout_ms, fence);
}

int mpb_condition_release(mpb_condition_t *cv) {
    if (!cv) return MPB_EINVAL;
    bool rl;
    const char *n = cv_lockname(cv, &rl);
    return mpb__lock_release(mpb__any(cv), n, (uint32_t)strlen(n), rl);
}

int mpb_condition_wait(mpb_condition_t *cv, int timeout_ms) {
    if (!cv) return MPB_EINVAL;
    MPB__REQ(cv, MPB_OP_COND_WAIT, 2);
    mpb__w_uint(b, mpb__thread_id(mpb__any(cv)));
    mpb__w_int(b, mpb__ms_arg(timeout_ms));
    /* the answer may wait for the lock after the timeout: no client-side bound beyond that */
    return mpb__call_bool(cv->c, MPB_FOREVER);
}

int mpb_condition_wait_for(mpb_condition_t *cv, int (*pred)(void *arg), void *arg, int timeout_ms) {
    if (!cv) return MPB_EINVAL;
    if (!pred) return mpb__fail(cv->c, MPB_EINVAL, "condition wait_for: the predicate is NULL");
    int64_t end = timeout_ms < 0 ? INT64_MAX : mpb__now_ms() + timeout_ms;
    int ok = pred(arg);
    while (!ok) {
        int64_t left = end == INT64_MAX ? -1 : end - mpb__now_ms();
        if (end != INT64_MAX && left <= 0) break;
        int rc = mpb_condition_wait(cv, (int)left);
        if (rc < 0) return rc;
        ok = pred(arg);
    }
    return ok ? 1 : 0;
}

int mpb_condition_notify(mpb_condition_t *cv, int n) {
    if (!cv) return MPB_EINVAL;
    MPB__REQ(cv, MPB_OP_COND_NOTIFY, 2);
    mpb__w_uint(b, mpb__thread_id(mpb__any(cv)));
    mpb__w_int(b, n);
    int64_t woken = 0;
    int rc = mpb__call_int(cv->c, 0, &woken);
    return rc ? rc : (int)woken;
}

int mpb_condition_notify_all(mpb_condition_t *cv) {
    if (!cv) return MPB_EINVAL;
    return mpb_condition_notify(cv, -1);
}
