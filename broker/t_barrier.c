/* t_barrier.c - Barrier: parties wait until the last one comes; a timeout, an abort or a
 * party whose session ends breaks it for all, until a reset. */
#include <stdio.h>

#include "kind.h"

static void barrier_break(obj_t *o, const char *why) {
    barrier_t *b = &o->u.barrier;
    b->broken = true;
    char msg[200];
    snprintf(msg, sizeof msg, "broken barrier: barrier/%s %s", o->name, why);
    wlist_fail(&b->waiters, MPB_EBROKEN, msg);
}

/* barrier.open PARTIES|nil TIMEOUT_MS|nil -> [parties, timeout_ms]. PARTIES is needed when
 * the barrier is new, and must match when it is not. */
int cmd_barrier_open(req_t *r) {
    barrier_t *b = &r->obj->u.barrier;
    int64_t parties = 0, timeout = -1;
    bool noparties, notimeout;
    if (arg_int_or_nil(r, "parties", &parties, &noparties) ||
        arg_int_or_nil(r, "timeout", &timeout, &notimeout))
        return -1;
    if (!noparties && parties < 1) return reply_error(r, MPB_EINVAL, "parties must be >= 1");
    if (b->parties == 0) {
        if (noparties)
            return reply_error(r, MPB_EINVAL, "barrier/%.*s is new: give its number of parties",
                               (int)r->namelen, r->name);
        b->parties = parties;
        b->timeout_ms = notimeout || timeout < 0 ? -1 : timeout;
    } else if (!noparties && parties != b->parties) {
        return reply_error(r, MPB_EINVAL, "barrier/%.*s exists with %lld parties", (int)r->namelen,
                           r->name, (long long)b->parties);
    }
    mpb__buf_t *o = reply_begin(r);
    mpb__w_array(o, 2);
    mpb__w_int(o, b->parties);
    mpb__w_int(o, b->timeout_ms);
    return 0;
}

/* barrier.wait TIMEOUT_MS -> this party's index in its round (0 .. parties-1) | EBROKEN.
 * TIMEOUT_MS -1 uses the barrier's own timeout. A timeout breaks the barrier for all. */
int cmd_barrier_wait(req_t *r) {
    int64_t timeout;
    if (arg_timeout(r, &timeout)) return -1;
    obj_t *o = r->obj;
    barrier_t *b = &o->u.barrier;
    if (b->parties == 0)
        return reply_error(r, MPB_EINVAL, "barrier/%.*s was never opened with its parties",
                           (int)r->namelen, r->name);
    if (b->broken)
        return reply_error(r, MPB_EBROKEN, "broken barrier: barrier/%.*s is broken; reset() it",
                           (int)r->namelen, r->name);
    int64_t index = (int64_t)b->waiters.n;
    if (index + 1 == b->parties) {
        while (wlist_first(&b->waiters)) {
            waiter_t *w = wlist_first(&b->waiters);
            waiter_reply_int(w, w->count);
            waiter_free(w);
        }
        b->round++;
        return reply_int(r, index);
    }
    if (timeout < 0) timeout = b->timeout_ms;
    if (timeout == 0) {
        barrier_break(o, "timed out");
        return reply_error(r, MPB_EBROKEN, "broken barrier: barrier/%.*s timed out",
                           (int)r->namelen, r->name);
    }
    waiter_t *w = waiter_park(r, &b->waiters, timeout);
    w->count = index;
    return 0;
}

/* barrier.reset -> nil: waiters get EBROKEN, the barrier is whole again */
int cmd_barrier_reset(req_t *r) {
    barrier_break(r->obj, "was reset");
    r->obj->u.barrier.broken = false;
    return reply_nil(r);
}

/* barrier.abort -> nil: broken until reset */
int cmd_barrier_abort(req_t *r) {
    barrier_break(r->obj, "was aborted");
    return reply_nil(r);
}

/* barrier.state -> [parties, n_waiting, broken] */
int cmd_barrier_state(req_t *r) {
    barrier_t *b = &r->obj->u.barrier;
    mpb__buf_t *o = reply_begin(r);
    mpb__w_array(o, 3);
    mpb__w_int(o, b->parties);
    mpb__w_uint(o, b->waiters.n);
    mpb__w_bool(o, b->broken);
    return 0;
}

/* ---- hooks ---- */

static void barrier_init(obj_t *o) {
    o->u.barrier.timeout_ms = -1;
    wlist_init(&o->u.barrier.waiters);
}

static uint64_t barrier_size(const obj_t *o) {
    return o->u.barrier.waiters.n;
}

static void barrier_on_timeout(waiter_t *w) {
    barrier_break(w->obj, "timed out");
}

static bool barrier_busy(const obj_t *o, char *why, size_t n) {
    return wlist_busy(&o->u.barrier.waiters, why, n);
}

static void barrier_fail_all(obj_t *o, int code, const char *msg) {
    wlist_fail(&o->u.barrier.waiters, code, msg);
}

/* A party that leaves a barrier round (its session ended) breaks it, as a timeout would,
 * even when it waited alone: the parties still to come would wait for it in vain. */
static void barrier_on_waiter_gone(obj_t *o, blob_t *item) {
    free(item);
    barrier_break(o, "lost a party whose session ended");
}

static uint32_t barrier_describe(const obj_t *o, mpb__buf_t *b) {
    mpb__w_cstr(b, "parties");
    mpb__w_int(b, o->u.barrier.parties);
    mpb__w_cstr(b, "n_waiting");
    mpb__w_uint(b, o->u.barrier.waiters.n);
    mpb__w_cstr(b, "broken");
    mpb__w_bool(b, o->u.barrier.broken);
    mpb__w_cstr(b, "timeout_ms");
    mpb__w_int(b, o->u.barrier.timeout_ms);
    waiter_describe(b, (const wlist_t *[]){&o->u.barrier.waiters}, 1);
    return 5;
}

const kind_ops_t barrier_ops = {
    .name = "barrier",
    .init = barrier_init,
    .size = barrier_size,
    .describe = barrier_describe,
    .busy = barrier_busy,
    .fail_all = barrier_fail_all,
    .on_timeout = barrier_on_timeout,
    .on_waiter_gone = barrier_on_waiter_gone,
};
