/* t_cond.c - Condition, bound to one Lock or RLock (t_lock.c). condition.wait releases the
 * lock (all RLock levels), waits on the condition, and then waits on the lock's own queue to
 * take it back with the same levels before it answers.
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

#include "anon.h"
#include "kind.h"
#include "store.h"

/* Moves w from condition co's waiters to the queue of its lock lo: notified, or timed out. */
static void cond_take(obj_t *co, waiter_t *w, obj_t *lo, bool notified) {
    lo->u.lock.cond_waiting--;
    if (notified) {
        sess_hold(w->sess, co, w->tid, 1);
        co->u.cond.notified++;
    } else {
        w->timed_out = true;
    }
    waiter_move(w, lo, &lo->u.lock.waiters, INT64_MAX);
}

static obj_t *cond_lock(req_t *r) {
    cond_t *c = &r->obj->u.cond;
    if (!c->lock_name) {
        reply_error(r, MPB_EINVAL, "condition/%.*s was never opened with its lock", (int)r->namelen,
                    r->name);
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
    if (lock_check_owner(r, lo, tid, "wait")) return -1;
    lockobj_t *l = (&lo->u.lock);
    int64_t count = l->count;
    waiter_t *w = waiter_park(r, &r->obj->u.cond.waiters, timeout);
    w->tid = tid;
    w->count = count;
    w->cond = r->obj;
    l->cond_waiting++;
    lock_release_all(lo);
    return 0;
}

/* condition.notify TID N -> how many were woken (N < 0: all). ENOTOWNER without the lock. */
int cmd_cond_notify(req_t *r) {
    uint64_t tid;
    int64_t n;
    if (arg_uint(r, "thread id", &tid) || arg_int(r, "n", &n)) return -1;
    obj_t *lo = cond_lock(r);
    if (!lo) return -1;
    if (lock_check_owner(r, lo, tid, "notify")) return -1;
    cond_t *c = &r->obj->u.cond;
    int64_t woken = 0;
    while (wlist_first(&c->waiters) && (n < 0 || woken < n)) {
        cond_take(r->obj, wlist_first(&c->waiters), lo, true);
        woken++;
    }
    return reply_int(r, woken);
}

/* The condition's lock, or NULL if it is gone (or of another kind now). */
static obj_t *bound_lock(const cond_t *c) {
    obj_t *lo = c->lock_name ? store_get(c->lock_name, c->lock_namelen) : NULL;
    return lo && lo->kind == c->lock_kind ? lo : NULL;
}

/* A session ended holding notifications of condition o: woken waiters that had not yet
 * released the lock (they may never have seen the answer). Each goes to the next waiter. */
static void cond_release_hold(sess_t *s, hold_t *h) {
    obj_t *o = h->obj;
    cond_t *c = &o->u.cond;
    c->notified -= h->units;
    obj_t *lo = bound_lock(c);
    if (!lo) return;
    int64_t passed = 0;
    while (passed < h->units && wlist_first(&c->waiters)) {
        cond_take(o, wlist_first(&c->waiters), lo, true);
        passed++;
    }
    log_kv(MPB_LOG_INFO, "notifications passed on: a woken session ended", "kind", "condition",
           "name", o->name, "passed", LOG_INT(passed), "held", LOG_INT(h->units), "session",
           LOG_UINT(s->id), NULL);
    lock_grant_next(lo);
}

/* A waiter parked on condition o is gone (its session ended). */
static void cond_on_waiter_gone(obj_t *o, blob_t *item) {
    free(item);
    obj_t *lo = bound_lock(&o->u.cond);
    if (lo) lo->u.lock.cond_waiting--;
}

static void cond_init(obj_t *o) {
    wlist_init(&o->u.cond.waiters);
}

/* Timed out on the condition: take the lock back before answering false. */
static void cond_on_timeout(waiter_t *w) {
    obj_t *o = w->obj;
    obj_t *lo = bound_lock(&o->u.cond);
    if (!lo) {
        waiter_reply_error(w, MPB_ENOOBJ, "the lock of condition/%s is gone", o->name);
        waiter_free(w);
        return;
    }
    cond_take(o, w, lo, false);
    lock_grant_next(lo);
}

static void cond_free(obj_t *o) {
    free(o->u.cond.lock_name);
}

static uint64_t cond_size(const obj_t *o) {
    return o->u.cond.waiters.n;
}

static bool cond_busy(const obj_t *o, char *why, size_t n) {
    if (o->u.cond.notified > 0) {
        snprintf(why, n, "%lld notified waiters have not released its lock yet",
                 (long long)o->u.cond.notified);
        return true;
    }
    return wlist_busy(&o->u.cond.waiters, why, n);
}

/* Each waiter gone is one fewer that needs the bound lock to stay. */
static void cond_fail_all(obj_t *o, int code, const char *msg) {
    for (size_t n = o->u.cond.waiters.n; n; n--) {
        wlist_fail_one(&o->u.cond.waiters, code, msg);
        cond_on_waiter_gone(o, NULL);
    }
}

static uint32_t cond_describe(const obj_t *o, mpb__buf_t *b) {
    const cond_t *c = &o->u.cond;
    char path[300];
    snprintf(path, sizeof path, "%s/%s", kind_name(c->lock_kind), c->lock_name ? c->lock_name : "");
    mpb__w_cstr(b, "lock");
    if (c->lock_name)
        mpb__w_cstr(b, path);
    else
        mpb__w_nil(b);
    mpb__w_cstr(b, "waiters");
    mpb__w_uint(b, c->waiters.n);
    const wlist_t *lists[] = {&c->waiters};
    waiter_describe(b, lists, 1);
    return 3;
}

const kind_ops_t cond_ops = {
    .name = "condition",
    .init = cond_init,
    .free = cond_free,
    .size = cond_size,
    .describe = cond_describe,
    .busy = cond_busy,
    .fail_all = cond_fail_all,
    .on_timeout = cond_on_timeout,
    .release_hold = cond_release_hold,
    .on_waiter_gone = cond_on_waiter_gone,
};
