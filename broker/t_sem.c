/* t_sem.c - Semaphore and BoundedSemaphore. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kind.h"
#include "persist.h"

/* ---- semaphore ----
 *
 * Who holds units is kept twice: in each session's holds, so that its end gives them back,
 * and here, oldest first, so that a release by someone who holds none pays off the oldest
 * hold. Only units nobody gave back return when a session ends: Semaphore(2), A acquires,
 * B releases (for A), C acquires, A dies: A's unit was already given back by B. */

static void holders_add(sem_t *s, sess_t *who) {
    if (s->nholders && s->holders[s->nholders - 1].sess == who) {
        s->holders[s->nholders - 1].units++;
        return;
    }
    if (s->nholders == s->capholders) {
        s->capholders = s->capholders ? s->capholders * 2 : 4;
        s->holders = xrealloc(s->holders, s->capholders * sizeof *s->holders);
    }
    s->holders[s->nholders++] = (semhold_t){who, 1};
}

static void holders_del(sem_t *s, size_t i) {
    memmove(&s->holders[i], &s->holders[i + 1], (s->nholders - i - 1) * sizeof *s->holders);
    s->nholders--;
}

/* Takes up to units of who's units off the list, newest first (all of them: INT64_MAX). */
static void holders_take(sem_t *s, sess_t *who, int64_t units) {
    for (size_t i = s->nholders; i-- > 0 && units > 0;) {
        semhold_t *h = &s->holders[i];
        if (h->sess != who) continue;
        int64_t k = h->units < units ? h->units : units;
        h->units -= k;
        units -= k;
        if (!h->units) holders_del(s, i);
    }
}

/* n units released by someone who did not hold them pay off the oldest holds. */
static void holders_pay_off(obj_t *o, int64_t n) {
    sem_t *s = &o->u.sem;
    while (n > 0 && s->nholders) {
        semhold_t *h = &s->holders[0];
        int64_t k = h->units < n ? h->units : n;
        sess_unhold(h->sess, o, 0, k);
        h->units -= k;
        n -= k;
        if (!h->units) holders_del(s, 0);
    }
}

static void take_unit(obj_t *o, sess_t *who) {
    o->u.sem.value--;
    sess_hold(who, o, 0, 1);
    holders_add(&o->u.sem, who);
}

static void sem_wake(obj_t *o) {
    sem_t *s = &o->u.sem;
    while (s->value > 0 && wlist_first(&s->waiters)) {
        waiter_t *w = wlist_first(&s->waiters);
        static const uint8_t no_wait[1] = {0};
        persist_parked(w, 1, no_wait, 1); /* logged as an acquire that did not wait */
        take_unit(o, w->sess);
        waiter_reply_int(w, (int64_t)fence_next());
        waiter_free(w);
    }
}

/* semaphore.open VALUE|nil BOUNDED|nil -> [value, initial, bounded]. A semaphore made by an
 * open without them, or by use, is Semaphore(1) until an open gives them: its initial value
 * then changes to VALUE and its value by as much (units taken stay taken, so the value may be
 * below 0 for a while). A given setting is fixed from then on; another one is refused. */
int cmd_sem_open(req_t *r) {
    sem_t *s = &r->obj->u.sem;
    int64_t value = 1;
    bool novalue, bounded = false, nobound;
    if (arg_int_or_nil(r, "value", &value, &novalue)) return -1;
    nobound = mpb__rd_nil(&r->args) == 0;
    if (!nobound && arg_bool(r, "bounded", &bounded)) return -1;
    if (!novalue && value < 0)
        return reply_error(r, MPB_EINVAL, "semaphore initial value must be >= 0");
    if (s->initial < 0) s->initial = s->value = 1; /* new: store.c marks it with -1 */
    if ((!novalue && s->value_set && value != s->initial) ||
        (!nobound && s->bounded_set && bounded != s->bounded))
        return reply_error(r, MPB_EINVAL, "semaphore/%.*s exists with value %lld%s",
                           (int)r->namelen, r->name, (long long)s->initial,
                           s->bounded ? ", bounded" : "");
    if (!novalue && !s->value_set) {
        int64_t v;
        if (__builtin_add_overflow(s->value, value - s->initial, &v))
            return reply_error(r, MPB_EOVERFLOW,
                               "semaphore/%.*s: value %lld raised to initial %lld overflows",
                               (int)r->namelen, r->name, (long long)s->value, (long long)value);
        s->value = v;
        s->initial = value;
        s->value_set = true;
    }
    if (!nobound && !s->bounded_set) {
        s->bounded = bounded;
        s->bounded_set = true;
    }
    sem_wake(r->obj); /* acquirers parked on the implicit Semaphore(1) */
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, 3);
    mpb__w_int(b, s->value);
    mpb__w_int(b, s->initial);
    mpb__w_bool(b, s->bounded);
    return 0;
}

static sem_t *as_sem(req_t *r) {
    sem_t *s = &r->obj->u.sem;
    if (s->initial < 0) s->initial = s->value = 1; /* used without open: Semaphore() */
    return s;
}

/* semaphore.acquire TIMEOUT_MS -> fencing token (as lock.acquire's) | ETIMEDOUT */
int cmd_sem_acquire(req_t *r) {
    int64_t timeout;
    if (arg_timeout(r, &timeout)) return -1;
    sem_t *s = as_sem(r);
    if (s->value > 0 && !wlist_first(&s->waiters)) {
        take_unit(r->obj, r->sess);
        return reply_uint(r, fence_next());
    }
    if (timeout == 0)
        return reply_error(r, MPB_ETIMEDOUT, "semaphore/%.*s has no units free", (int)r->namelen,
                           r->name);
    waiter_park(r, &s->waiters, timeout);
    return 0;
}

/* semaphore.release N -> nil | EVALUE (a bounded semaphore released above its value) |
 * EOVERFLOW. The releaser's own units go back first; the rest pay off the oldest holds. */
int cmd_sem_release(req_t *r) {
    int64_t n, sum;
    if (arg_int(r, "n", &n)) return -1;
    if (n < 1) return reply_error(r, MPB_EINVAL, "n must be >= 1");
    sem_t *s = as_sem(r);
    int64_t room; /* below the bound; more than int64 holds when the subtraction overflows */
    if (s->bounded && !__builtin_sub_overflow(s->initial, s->value, &room) && n > room)
        return reply_error(r, MPB_EVALUE,
                           "semaphore/%.*s released too many times (value %lld, "
                           "bound %lld)",
                           (int)r->namelen, r->name, (long long)s->value, (long long)s->initial);
    if (__builtin_add_overflow(s->value, n, &sum))
        return reply_error(r, MPB_EOVERFLOW, "semaphore/%.*s: value %lld + %lld overflows int64",
                           (int)r->namelen, r->name, (long long)s->value, (long long)n);
    int64_t own = sess_unhold(r->sess, r->obj, 0, n);
    holders_take(s, r->sess, own);
    holders_pay_off(r->obj, n - own);
    s->value = sum;
    sem_wake(r->obj);
    return reply_nil(r);
}

/* semaphore.value -> int */
int cmd_sem_value(req_t *r) {
    return reply_int(r, as_sem(r)->value);
}

/* ---- hooks ---- */

static void sem_init(obj_t *o) {
    o->u.sem.initial = -1; /* not opened yet: see cmd_sem_open */
    wlist_init(&o->u.sem.waiters);
}

static void sem_free(obj_t *o) {
    free(o->u.sem.holders);
}

static uint64_t sem_size(const obj_t *o) {
    return o->u.sem.value < 0 ? 0 : (uint64_t)o->u.sem.value;
}

static void sem_on_timeout(waiter_t *w) {
    waiter_reply_error(w, MPB_ETIMEDOUT, "semaphore/%s had no unit free before the timeout",
                       w->obj->name);
    waiter_free(w);
}

/* Given back only up to the initial value, bounded or not: a unit taken from a Semaphore(0)
 * used as a signal was consumed, not borrowed, and must not come back as a phantom when its
 * taker ends (mpb_close included). */
static void sem_release_hold(sess_t *s, hold_t *h) {
    obj_t *o = h->obj;
    sem_t *sm = &o->u.sem;
    holders_take(sm, s, INT64_MAX);
    int64_t back;
    if (__builtin_sub_overflow(sm->initial, sm->value, &back) || back > h->units) back = h->units;
    if (back < 0) back = 0;
    sm->value += back;
    log_kv(MPB_LOG_INFO, "units given back: their holder's session ended", "kind", "semaphore",
           "name", o->name, "units", LOG_INT(back), "held", LOG_INT(h->units), "session",
           LOG_UINT(s->id), NULL);
    sem_wake(o);
}

static bool sem_busy(const obj_t *o, char *why, size_t n) {
    if (o->u.sem.waiters.n || o->u.sem.nholders ||
        (o->u.sem.initial >= 0 && o->u.sem.value != o->u.sem.initial)) {
        snprintf(why, n, "units are held or awaited");
        return true;
    }
    return false;
}

static void sem_fail_all(obj_t *o, int code, const char *msg) {
    wlist_fail(&o->u.sem.waiters, code, msg);
}

/* "unit_holders": [{session, host, pid, units}], oldest first: who took the units not given
 * back ("holders" is an anonymous object's reference holders) */
static uint32_t sem_describe(const obj_t *o, mpb__buf_t *b) {
    const sem_t *s = &o->u.sem;
    mpb__w_cstr(b, "value");
    mpb__w_int(b, s->value);
    mpb__w_cstr(b, "initial");
    mpb__w_int(b, s->initial);
    mpb__w_cstr(b, "bounded");
    mpb__w_bool(b, s->bounded);
    mpb__w_cstr(b, "waiters");
    mpb__w_uint(b, s->waiters.n);
    mpb__w_cstr(b, "unit_holders");
    mpb__w_array(b, (uint32_t)s->nholders);
    for (size_t i = 0; i < s->nholders; i++) {
        mpb__w_map(b, 4);
        sess_describe(s->holders[i].sess, b);
        mpb__w_cstr(b, "units");
        mpb__w_int(b, s->holders[i].units);
    }
    waiter_describe(b, (const wlist_t *[]){&s->waiters}, 1);
    return 6;
}

const kind_ops_t sem_ops = {
    .name = "semaphore",
    .init = sem_init,
    .free = sem_free,
    .size = sem_size,
    .describe = sem_describe,
    .busy = sem_busy,
    .fail_all = sem_fail_all,
    .on_timeout = sem_on_timeout,
    .release_hold = sem_release_hold,
};
