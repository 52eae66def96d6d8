/* t_lock.c - Lock and RLock. An owner is a session plus a thread
 * id the client chooses, so two threads of one process are two owners. Every acquisition
 * gets a fencing token from one broker-wide counter, so a later holder always has a larger
 * token than an earlier one, whoever died in between.
 *
 * A Condition (t_cond.c) waits on one of these: lock_check_owner, lock_release_all and
 * lock_grant_next are what it uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kind.h"
#include "persist.h"
#include "store.h"

uint64_t g_fence;

/* Tokens follow the wall clock in microseconds, and grow by at least one each time: a broker
 * that restarts hands out tokens above those of its earlier run (unless that run averaged
 * over a million acquisitions a second, or the clock was set back by more than its lead). */
uint64_t fence_next(void) {
    uint64_t us = (uint64_t)wall_us();
    g_fence = us > g_fence ? us : g_fence + 1;
    persist_fence(g_fence); /* the log keeps a bound above it, whatever the clock does */
    return g_fence;
}

static lockobj_t *as_lock(obj_t *o) {
    return &o->u.lock;
}

static void grant(obj_t *o, sess_t *s, uint64_t tid, int64_t count) {
    lockobj_t *l = as_lock(o);
    l->owner = s;
    l->tid = tid;
    l->count = count;
    l->fence = fence_next();
    l->acquired_ms = now_ms();
    sess_hold(s, o, tid, 1);
}

void lock_grant_next(obj_t *o) {
    lockobj_t *l = as_lock(o);
    while (!l->owner && wlist_first(&l->waiters)) {
        waiter_t *w = wlist_first(&l->waiters);
        grant(o, w->sess, w->tid, w->count ? w->count : 1);
        if (w->cond && !w->timed_out) l->woken_by = w->cond;
        if (w->cond)
            waiter_reply_bool(w, !w->timed_out);
        else
            waiter_reply_int(w, (int64_t)l->fence);
        waiter_free(w);
    }
}

/* The owner is done with the notify it was woken by. */
static void notify_done(lockobj_t *l) {
    if (!l->woken_by) return;
    l->woken_by->u.cond.notified -= sess_unhold(l->owner, l->woken_by, l->tid, 1);
    l->woken_by = NULL;
}

void lock_release_all(obj_t *o) {
    lockobj_t *l = as_lock(o);
    notify_done(l);
    sess_unhold(l->owner, o, l->tid, 1);
    l->owner = NULL;
    l->tid = 0;
    l->count = 0;
    lock_grant_next(o);
}

static void describe_owner(const lockobj_t *l, char *out, size_t n) {
    snprintf(out, n, "session %llu (host %s, pid %lld)", (unsigned long long)l->owner->id,
             l->owner->host, (long long)l->owner->pid);
}

/* lock.acquire / rlock.acquire TID TIMEOUT_MS -> fencing token | ETIMEDOUT | EBUSY */
int cmd_lock_acquire(req_t *r) {
    uint64_t tid;
    int64_t timeout;
    if (arg_uint(r, "thread id", &tid) || arg_timeout(r, &timeout)) return -1;
    obj_t *o = r->obj;
    lockobj_t *l = as_lock(o);
    if (!l->owner) {
        grant(o, r->sess, tid, 1);
        return reply_uint(r, l->fence);
    }
    if (l->owner == r->sess && l->tid == tid) {
        if (o->kind == KIND_RLOCK) {
            l->count++;
            return reply_uint(r, l->fence);
        }
        return reply_error(r, MPB_EBUSY,
                           "lock/%.*s is already held by this owner; a Lock is not re-entrant "
                           "(use an RLock)",
                           (int)r->namelen, r->name);
    }
    if (timeout == 0) {
        char who[160];
        describe_owner(l, who, sizeof who);
        return reply_error(r, MPB_ETIMEDOUT, "%s/%.*s is held by %s", kind_name(o->kind),
                           (int)r->namelen, r->name, who);
    }
    waiter_t *w = waiter_park(r, &l->waiters, timeout);
    w->tid = tid;
    return 0;
}

int lock_check_owner(req_t *r, obj_t *o, uint64_t tid, const char *what) {
    lockobj_t *l = as_lock(o);
    if (!l->owner)
        return reply_error(r, MPB_ENOTOWNER, "%s of unlocked %s/%s", what, kind_name(o->kind),
                           o->name);
    if (l->owner != r->sess || l->tid != tid) {
        char who[160];
        describe_owner(l, who, sizeof who);
        return reply_error(r, MPB_ENOTOWNER, "%s of %s/%s, which is held by %s%s", what,
                           kind_name(o->kind), o->name, who,
                           l->owner == r->sess ? " from another thread" : "");
    }
    return 0;
}

/* lock.release / rlock.release TID -> nil | ENOTOWNER */
int cmd_lock_release(req_t *r) {
    uint64_t tid;
    if (arg_uint(r, "thread id", &tid)) return -1;
    if (lock_check_owner(r, r->obj, tid, "release")) return -1;
    lockobj_t *l = as_lock(r->obj);
    if (--l->count <= 0) lock_release_all(r->obj);
    return reply_nil(r);
}

/* lock.locked / rlock.locked -> bool */
int cmd_lock_locked(req_t *r) {
    return reply_bool(r, as_lock(r->obj)->owner != NULL);
}

static void lock_release_hold(sess_t *s, hold_t *h) {
    obj_t *o = h->obj;
    lockobj_t *l = as_lock(o);
    if (l->owner == s && l->tid == h->tid) {
        log_kv(MPB_LOG_INFO, "released: its holder's session ended", "kind", kind_name(o->kind),
               "name", o->name, "session", LOG_UINT(s->id), NULL);
        l->owner = NULL;
        l->tid = 0;
        l->count = 0;
        l->woken_by = NULL; /* the session's hold on the condition passes the notify on */
        lock_grant_next(o);
    }
}

/* Whether a condition bound to lock o has parked waiters, which need o to take it back. */
static bool lock_busy_cond(const obj_t *o, char *why, size_t n) {
    if (o->u.lock.cond_waiting <= 0) return false;
    const omap_t *m = store_map();
    for (size_t i = 0; i < m->nents; i++) {
        const obj_t *co = m->ents[i].item;
        if (!co || co->kind != KIND_CONDITION || !co->u.cond.waiters.n ||
            co->u.cond.lock_kind != o->kind || co->u.cond.lock_namelen != o->namelen ||
            memcmp(co->u.cond.lock_name, o->name, o->namelen))
            continue;
        snprintf(why, n, "condition/%s has %zu waiters that must take it back", co->name,
                 co->u.cond.waiters.n);
        return true;
    }
    snprintf(why, n, "clients wait on a condition bound to it");
    return true;
}

static uint32_t lock_describe(const obj_t *o, mpb__buf_t *b) {
    const lockobj_t *l = &o->u.lock;
    mpb__w_cstr(b, "locked");
    mpb__w_bool(b, l->owner != NULL);
    mpb__w_cstr(b, "owner");
    if (l->owner) {
        mpb__w_map(b, 6);
        sess_describe(l->owner, b);
        mpb__w_cstr(b, "name");
        mpb__w_cstr(b, l->owner->name);
        mpb__w_cstr(b, "thread");
        mpb__w_uint(b, l->tid);
        mpb__w_cstr(b, "held_ms");
        mpb__w_int(b, now_ms() - l->acquired_ms);
    } else {
        mpb__w_nil(b);
    }
    mpb__w_cstr(b, "count");
    mpb__w_int(b, l->count);
    mpb__w_cstr(b, "fence");
    mpb__w_uint(b, l->fence);
    mpb__w_cstr(b, "waiters");
    mpb__w_array(b, (uint32_t)l->waiters.n);
    for (waiter_t *w = wlist_first(&l->waiters); w; w = TAILQ_NEXT(w, link)) {
        mpb__w_map(b, 3);
        sess_describe(w->sess, b);
    }
    return 5;
}

static void lock_init(obj_t *o) {
    wlist_init(&o->u.lock.waiters);
}

static void lock_on_timeout(waiter_t *w) {
    obj_t *o = w->obj;
    char who[160] = "nobody";
    if (as_lock(o)->owner) describe_owner(as_lock(o), who, sizeof who);
    waiter_reply_error(w, MPB_ETIMEDOUT, "%s/%s still held by %s at the timeout",
                       kind_name(o->kind), o->name, who);
    waiter_free(w);
}

static uint64_t lock_size(const obj_t *o) {
    return o->u.lock.owner ? 1 : 0;
}

static bool lock_busy(const obj_t *o, char *why, size_t n) {
    if (o->u.lock.owner) {
        snprintf(why, n, "it is held by session %llu", (unsigned long long)o->u.lock.owner->id);
        return true;
    }
    if (o->u.lock.waiters.n) {
        snprintf(why, n, "clients are waiting for it");
        return true;
    }
    return lock_busy_cond(o, why, n);
}

static void lock_fail_all(obj_t *o, int code, const char *msg) {
    wlist_fail(&o->u.lock.waiters, code, msg);
}

/* Lock and RLock differ in their ops (re-entry), not in their hooks. */
#define LOCK_HOOKS                                                                                 \
    .init = lock_init, .size = lock_size, .describe = lock_describe, .busy = lock_busy,            \
    .fail_all = lock_fail_all, .on_timeout = lock_on_timeout, .release_hold = lock_release_hold

const kind_ops_t lock_ops = {.name = "lock", LOCK_HOOKS};
const kind_ops_t rlock_ops = {.name = "rlock", LOCK_HOOKS};
