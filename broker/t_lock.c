/* t_lock.c - Lock, RLock and the Condition bound to one. An owner is a session plus a thread
 * id the client chooses, so two threads of one process are two owners. Every acquisition
 * gets a fencing token from one broker-wide counter, so a later holder always has a larger
 * token than an earlier one, whoever died in between.
 *
 * condition.wait releases the lock (all RLock levels), waits on the condition, and then waits
 * on the lock's own queue to take it back with the same levels before it answers.
 *
 * A notify is not lost to a waiter that dies: from the notify until the woken waiter releases
 * the lock again, its session holds the notification (a hold on the condition). If the
 * session ends first, the notification passes to the condition's next waiter.
 *
 *   condition.waiters ──notify──> lock.waiters ──grant──> owner (woken_by) ──release──> done
 *        (cond_waiting)           └───── hold on the condition, cond.notified ─────┘ */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "persist.h"

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

static lockobj_t *LK(obj_t *o) {
    return &o->u.lock;
}

static void grant(obj_t *o, sess_t *s, uint64_t tid, int64_t count) {
    lockobj_t *l = LK(o);
    l->owner = s;
    l->tid = tid;
    l->count = count;
    l->fence = fence_next();
    l->acquired_ms = now_ms();
    sess_hold(s, o, tid, 1);
}

void lock_grant_next(obj_t *o) {
    lockobj_t *l = LK(o);
    while (!l->owner && l->waiters.head) {
        waiter_t *w = l->waiters.head;
        grant(o, w->sess, w->tid, w->count ? w->count : 1);
        if (w->cond && !w->timed_out) l->woken_by = w->cond;
        if (w->cond) waiter_reply_bool(w, !w->timed_out);
        else waiter_reply_int(w, (int64_t)l->fence);
        waiter_free(w);
    }
}

/* The owner is done with the notify it was woken by. */
static void notify_done(lockobj_t *l) {
    if (!l->woken_by) return;
    l->woken_by->u.cond.notified -= sess_unhold(l->owner, l->woken_by, l->tid, 1);
    l->woken_by = NULL;
}

static void release_all(obj_t *o) {
    lockobj_t *l = LK(o);
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
    lockobj_t *l = LK(o);
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

static int check_owner(req_t *r, obj_t *o, uint64_t tid, const char *what) {
    lockobj_t *l = LK(o);
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
    if (check_owner(r, r->obj, tid, "release")) return -1;
    lockobj_t *l = LK(r->obj);
    if (--l->count <= 0) release_all(r->obj);
    return reply_nil(r);
}

/* lock.locked / rlock.locked -> bool */
int cmd_lock_locked(req_t *r) {
    return reply_bool(r, LK(r->obj)->owner != NULL);
}

/* ---- condition ---- */

/* Moves w from condition co's waiters to the queue of its lock lo: notified, or timed out. */
static void cond_take(obj_t *co, waiter_t *w, obj_t *lo, bool notified) {
    LK(lo)->cond_waiting--;
    if (notified) {
        sess_hold(w->sess, co, w->tid, 1);
        co->u.cond.notified++;
    } else {
        w->timed_out = true;
    }
    waiter_move(w, lo, &LK(lo)->waiters, INT64_MAX);
}

static obj_t *cond_lock(req_t *r) {
    cond_t *c = &r->obj->u.cond;
    if (!c->lock_name) {
        reply_error(r, MPB_EINVAL, "condition/%.*s was never opened with its lock",
                    (int)r->namelen, r->name);
        return NULL;
    }
    obj_t *o = store_get(c->lock_name, c->lock_namelen);
    if (!o || o->kind != c->lock_kind) {
        reply_error(r, MPB_ENOOBJ, "the lock of condition/%.*s (%s/%s) is gone", (int)r->namelen,
                    r->name, kind_name(c->lock_kind), c->lock_name);
        return NULL;
    }
    return o;
}

/* condition.open LOCKPATH|nil -> "kind/name" of its lock. nil: an RLock named NAME.lock.
 * The lock is created if new; a condition keeps the lock it was first opened with. */
int cmd_cond_open(req_t *r) {
    cond_t *c = &r->obj->u.cond;
    const char *p = NULL;
    uint32_t pn = 0;
    char dflt[300];
    if (mpb__rd_nil(&r->args) != 0 && arg_str(r, "lock", &p, &pn)) return -1;
    bool explicit = p != NULL;
    if (!p) {
        pn = (uint32_t)snprintf(dflt, sizeof dflt, "rlock/%.*s.lock", (int)r->namelen, r->name);
        p = dflt;
    }
    const char *slash = memchr(p, '/', pn);
    kind_t k = slash ? kind_parse(p, (size_t)(slash - p)) : KIND_NONE;
    if (k != KIND_LOCK && k != KIND_RLOCK)
        return reply_error(r, MPB_EINVAL, "a condition's lock is lock/NAME or rlock/NAME, not %.*s",
                           (int)pn, p);
    const char *ln = slash + 1;
    uint32_t lnl = pn - (uint32_t)(ln - p);
    if (!mpb__name_ok(ln, lnl)) return reply_error(r, MPB_EINVAL, "bad lock name");
    if (explicit && c->lock_name &&
        (c->lock_kind != k || c->lock_namelen != lnl || memcmp(c->lock_name, ln, lnl)))
        return reply_error(r, MPB_EINVAL, "condition/%.*s is bound to %s/%s", (int)r->namelen,
                           r->name, kind_name(c->lock_kind), c->lock_name);
    if (!c->lock_name) {
        obj_t *lo = store_get(ln, lnl);
        if (lo && lo->kind != k)
            return reply_error(r, MPB_EKIND, "%.*s is a %s, not a %s", (int)lnl, ln,
                               kind_name(lo->kind), kind_name(k));
        if (!lo && explicit && anon_name(ln, lnl))
            return reply_error(r, MPB_ENOOBJ,
                               "no object %.*s: names starting with '~' are anonymous objects, "
                               "made by obj.new, and this one is gone or never was",
                               (int)pn, p);
        if (!lo) store_create(k, ln, lnl);
        c->lock_kind = k;
        c->lock_name = xstrndup(ln, lnl);
        c->lock_namelen = lnl;
    }
    mpb__buf_t *b = reply_begin(r);
    char path[300];
    int n = snprintf(path, sizeof path, "%s/%s", kind_name(c->lock_kind), c->lock_name);
    mpb__w_str(b, path, (size_t)n);
    return 0;
}

/* condition.wait TID TIMEOUT_MS -> true (notified) | false (timed out); either way the lock
 * is held again when the answer comes. ENOTOWNER if the caller does not hold the lock. */
int cmd_cond_wait(req_t *r) {
    uint64_t tid;
    int64_t timeout;
    if (arg_uint(r, "thread id", &tid) || arg_timeout(r, &timeout)) return -1;
    obj_t *lo = cond_lock(r);
    if (!lo) return -1;
    if (check_owner(r, lo, tid, "wait")) return -1;
    lockobj_t *l = LK(lo);
    int64_t count = l->count;
    waiter_t *w = waiter_park(r, &r->obj->u.cond.waiters, timeout);
    w->tid = tid;
    w->count = count;
    w->cond = r->obj;
    l->cond_waiting++;
    release_all(lo);
    return 0;
}

/* condition.notify TID N -> how many were woken (N < 0: all). ENOTOWNER without the lock. */
int cmd_cond_notify(req_t *r) {
    uint64_t tid;
    int64_t n;
    if (arg_uint(r, "thread id", &tid) || arg_int(r, "n", &n)) return -1;
    obj_t *lo = cond_lock(r);
    if (!lo) return -1;
    if (check_owner(r, lo, tid, "notify")) return -1;
    cond_t *c = &r->obj->u.cond;
    int64_t woken = 0;
    while (c->waiters.head && (n < 0 || woken < n)) {
        cond_take(r->obj, c->waiters.head, lo, true);
        woken++;
    }
    return reply_int(r, woken);
}

void lock_on_timeout(waiter_t *w);
void lock_on_timeout(waiter_t *w) {
    obj_t *o = w->obj;
    if (o->kind == KIND_CONDITION) {
        /* Timed out on the condition: take the lock back before answering false. */
        obj_t *lo = store_get(o->u.cond.lock_name, o->u.cond.lock_namelen);
        if (!lo || lo->kind != o->u.cond.lock_kind) {
            waiter_reply_error(w, MPB_ENOOBJ, "the lock of condition/%s is gone", o->name);
            waiter_free(w);
            return;
        }
        cond_take(o, w, lo, false);
        lock_grant_next(lo);
        return;
    }
    char who[160] = "nobody";
    if (LK(o)->owner) describe_owner(LK(o), who, sizeof who);
    waiter_reply_error(w, MPB_ETIMEDOUT, "%s/%s still held by %s at the timeout",
                       kind_name(o->kind), o->name, who);
    waiter_free(w);
}

void lock_release_hold(sess_t *s, hold_t *h);
void lock_release_hold(sess_t *s, hold_t *h) {
    obj_t *o = h->obj;
    lockobj_t *l = LK(o);
    if (l->owner == s && l->tid == h->tid) {
        log_kv(LOG_INFO, "released: its holder's session ended", "kind", kind_name(o->kind), "name",
               o->name, "session", LOG_UINT(s->id), NULL);
        l->owner = NULL;
        l->tid = 0;
        l->count = 0;
        l->woken_by = NULL; /* the session's hold on the condition passes the notify on */
        lock_grant_next(o);
    }
}

/* The condition's lock, or NULL if it is gone (or of another kind now). */
static obj_t *bound_lock(const cond_t *c) {
    obj_t *lo = c->lock_name ? store_get(c->lock_name, c->lock_namelen) : NULL;
    return lo && lo->kind == c->lock_kind ? lo : NULL;
}

/* A session ended holding notifications of condition o: woken waiters that had not yet
 * released the lock (they may never have seen the answer). Each goes to the next waiter. */
void cond_release_hold(sess_t *s, hold_t *h);
void cond_release_hold(sess_t *s, hold_t *h) {
    obj_t *o = h->obj;
    cond_t *c = &o->u.cond;
    c->notified -= h->units;
    obj_t *lo = bound_lock(c);
    if (!lo) return;
    int64_t passed = 0;
    while (passed < h->units && c->waiters.head) {
        cond_take(o, c->waiters.head, lo, true);
        passed++;
    }
    log_kv(LOG_INFO, "notifications passed on: a woken session ended", "kind", "condition", "name",
           o->name, "passed", LOG_INT(passed), "held", LOG_INT(h->units), "session",
           LOG_UINT(s->id), NULL);
    lock_grant_next(lo);
}

/* A waiter parked on condition o is gone (its session ended). */
void cond_on_waiter_gone(obj_t *o);
void cond_on_waiter_gone(obj_t *o) {
    obj_t *lo = bound_lock(&o->u.cond);
    if (lo) LK(lo)->cond_waiting--;
}

/* Whether a condition bound to lock o has parked waiters, which need o to take it back. */
bool lock_busy_cond(const obj_t *o, char *why, size_t n);
bool lock_busy_cond(const obj_t *o, char *why, size_t n) {
    if (o->u.lock.cond_waiting <= 0) return false;
    const omap_t *m = store_map();
    for (size_t i = 0; i < m->nents; i++) {
        const obj_t *co = m->ents[i].item;
        if (!co || co->kind != KIND_CONDITION || !co->u.cond.waiters.n ||
            co->u.cond.lock_kind != o->kind || co->u.cond.lock_namelen != o->namelen ||
            memcmp(co->u.cond.lock_name, o->name, o->namelen))
            continue;
        snprintf(why, n, "condition/%s has %zu waiters that must take it back",
                 co->name, co->u.cond.waiters.n);
        return true;
    }
    snprintf(why, n, "clients wait on a condition bound to it");
    return true;
}

uint32_t lock_describe(const obj_t *o, mpb__buf_t *b);
uint32_t lock_describe(const obj_t *o, mpb__buf_t *b) {
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
    for (waiter_t *w = l->waiters.head; w; w = w->next) {
        mpb__w_map(b, 3);
        sess_describe(w->sess, b);
    }
    return 5;
}

uint32_t cond_describe(const obj_t *o, mpb__buf_t *b);
uint32_t cond_describe(const obj_t *o, mpb__buf_t *b) {
    const cond_t *c = &o->u.cond;
    char path[300];
    snprintf(path, sizeof path, "%s/%s", kind_name(c->lock_kind),
             c->lock_name ? c->lock_name : "");
    mpb__w_cstr(b, "lock");
    if (c->lock_name) mpb__w_cstr(b, path);
    else mpb__w_nil(b);
    mpb__w_cstr(b, "waiters");
    mpb__w_uint(b, c->waiters.n);
    const wlist_t *lists[] = {&c->waiters};
    waiter_describe(b, lists, 1);
    return 3;
}
