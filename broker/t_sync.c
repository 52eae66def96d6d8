/* t_sync.c - Semaphore, BoundedSemaphore, Event, Barrier and Value, and the hooks through
 * which every blocking kind answers timeouts, gives back what an ended session held, and
 * tells whether it may be deleted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "persist.h"

void queue_on_timeout(waiter_t *w);
void lock_on_timeout(waiter_t *w);
void lock_release_hold(sess_t *s, hold_t *h);
void cond_release_hold(sess_t *s, hold_t *h);
void cond_on_waiter_gone(obj_t *o);
bool lock_busy_cond(const obj_t *o, char *why, size_t n);
uint32_t queue_describe(const obj_t *o, mpb__buf_t *b);
uint32_t lock_describe(const obj_t *o, mpb__buf_t *b);
uint32_t cond_describe(const obj_t *o, mpb__buf_t *b);

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
    while (s->value > 0 && s->waiters.head) {
        waiter_t *w = s->waiters.head;
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
    if (!novalue && value < 0) return reply_error(r, MPB_EINVAL, "semaphore initial value must be >= 0");
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

static sem_t *SEM(req_t *r) {
    sem_t *s = &r->obj->u.sem;
    if (s->initial < 0) s->initial = s->value = 1; /* used without open: Semaphore() */
    return s;
}

/* semaphore.acquire TIMEOUT_MS -> fencing token (as lock.acquire's) | ETIMEDOUT */
int cmd_sem_acquire(req_t *r) {
    int64_t timeout;
    if (arg_timeout(r, &timeout)) return -1;
    sem_t *s = SEM(r);
    if (s->value > 0 && !s->waiters.head) {
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
    sem_t *s = SEM(r);
    int64_t room; /* below the bound; more than int64 holds when the subtraction overflows */
    if (s->bounded && !__builtin_sub_overflow(s->initial, s->value, &room) && n > room)
        return reply_error(r, MPB_EVALUE, "semaphore/%.*s released too many times (value %lld, "
                           "bound %lld)", (int)r->namelen, r->name, (long long)s->value,
                           (long long)s->initial);
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
    return reply_int(r, SEM(r)->value);
}

/* ---- event ---- */

/* event.set -> nil: wakes every waiter */
int cmd_event_set(req_t *r) {
    event_t *e = &r->obj->u.event;
    e->set = true;
    while (e->waiters.head) {
        waiter_t *w = e->waiters.head;
        waiter_reply_bool(w, true);
        waiter_free(w);
    }
    return reply_nil(r);
}

/* event.clear -> nil */
int cmd_event_clear(req_t *r) {
    r->obj->u.event.set = false;
    return reply_nil(r);
}

/* event.is_set -> bool */
int cmd_event_is_set(req_t *r) {
    return reply_bool(r, r->obj->u.event.set);
}

/* event.wait TIMEOUT_MS -> true when set, false when the timeout came first */
int cmd_event_wait(req_t *r) {
    int64_t timeout;
    if (arg_timeout(r, &timeout)) return -1;
    event_t *e = &r->obj->u.event;
    if (e->set) return reply_bool(r, true);
    if (timeout == 0) return reply_bool(r, false);
    waiter_park(r, &e->waiters, timeout);
    return 0;
}

/* ---- barrier ---- */

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
        return reply_error(r, MPB_EINVAL, "barrier/%.*s exists with %lld parties",
                           (int)r->namelen, r->name, (long long)b->parties);
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
        while (b->waiters.head) {
            waiter_t *w = b->waiters.head;
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

/* ---- value ---- */

static const uint8_t zero_int[1] = {0};

/* value.open INITIAL|nil -> the value (INITIAL, default 0, applies when it is new) */
int cmd_value_open(req_t *r) {
    blob_t **v = &r->obj->u.value;
    if (!*v) {
        const uint8_t *p = zero_int;
        size_t n = 1;
        if (mpb__rd_nil(&r->args) != 0 && arg_value(r, "initial", g_limits.max_value, &p, &n))
            return -1;
        *v = blob_new(p, n);
    }
    return reply_raw(r, (*v)->data, (*v)->len);
}

/* value.get -> the value (0 if never set) */
int cmd_value_get(req_t *r) {
    blob_t *v = r->obj->u.value;
    return v ? reply_raw(r, v->data, v->len) : reply_raw(r, zero_int, 1);
}

/* value.set V -> nil */
int cmd_value_set(req_t *r) {
    const uint8_t *p;
    size_t n;
    if (arg_value(r, "value", g_limits.max_value, &p, &n)) return -1;
    free(r->obj->u.value);
    r->obj->u.value = blob_new(p, n);
    return reply_nil(r);
}

/* value.add N [INT_ONLY] -> the new value. Integers stay integers (EOVERFLOW past int64); a float on
 * either side gives a float. ETYPE when the value is not a number. */
int cmd_value_add(req_t *r) {
    if (r->argc > 2) return reply_error(r, MPB_EPROTO, "value.add takes 1 or 2 arguments");
    blob_t *v = r->obj->u.value;
    mpb__rd_t cur = v ? (mpb__rd_t){v->data, v->data + v->len} : (mpb__rd_t){zero_int, zero_int + 1};
    int ta = mpb__rd_type(&cur), tb = mpb__rd_type(&r->args);
    if ((ta != MPB__MT_INT && ta != MPB__MT_FLOAT) || (tb != MPB__MT_INT && tb != MPB__MT_FLOAT))
        return reply_error(r, MPB_ETYPE, "value.add needs numbers");
    if (r->argc == 2) { /* INT_ONLY: refuse rather than turn the answer into a float */
        mpb__rd_t q = r->args;
        const uint8_t *sk;
        size_t skn;
        bool int_only = false;
        mpb__rd_span(&q, &sk, &skn);
        mpb__rd_bool(&q, &int_only);
        if (int_only && (ta != MPB__MT_INT || tb != MPB__MT_INT))
            return reply_error(r, MPB_ETYPE, "value/%.*s is not an integer", (int)r->namelen,
                               r->name);
    }
    uint8_t enc[9];
    size_t en;
    if (ta == MPB__MT_INT && tb == MPB__MT_INT) {
        int64_t a, b, s;
        if (mpb__rd_int(&cur, &a) || mpb__rd_int(&r->args, &b))
            return reply_error(r, MPB_EOVERFLOW, "value beyond int64");
        if (__builtin_add_overflow(a, b, &s))
            return reply_error(r, MPB_EOVERFLOW, "%lld + %lld overflows int64", (long long)a,
                               (long long)b);
        en = mpb__enc_int(enc, s);
    } else {
        double a, b;
        mpb__rd_double(&cur, &a);
        mpb__rd_double(&r->args, &b);
        en = mpb__enc_double(enc, a + b);
    }
    free(v);
    r->obj->u.value = blob_new(enc, en);
    return reply_raw(r, enc, en);
}

/* ---- hooks by kind ---- */

void sync_on_timeout(waiter_t *w) {
    obj_t *o = w->obj;
    if (!o) {
        pool_on_timeout(w);
        return;
    }
    switch (o->kind) {
    case KIND_QUEUE: queue_on_timeout(w); return;
    case KIND_PIPE: pipe_on_timeout(w); return;
    case KIND_LOCK:
    case KIND_RLOCK:
    case KIND_CONDITION: lock_on_timeout(w); return;
    case KIND_SEMAPHORE:
        waiter_reply_error(w, MPB_ETIMEDOUT, "semaphore/%s had no unit free before the timeout",
                           o->name);
        waiter_free(w);
        return;
    case KIND_EVENT:
        waiter_reply_bool(w, false);
        waiter_free(w);
        return;
    case KIND_BARRIER: barrier_break(o, "timed out"); return;
    default:
        waiter_reply_error(w, MPB_ETIMEDOUT, "timed out");
        waiter_free(w);
    }
}

void sync_release_hold(sess_t *s, hold_t *h) {
    obj_t *o = h->obj;
    if (o->kind == KIND_LOCK || o->kind == KIND_RLOCK) {
        lock_release_hold(s, h);
    } else if (o->kind == KIND_CONDITION) {
        cond_release_hold(s, h);
    } else if (o->kind == KIND_QUEUE) {
        queue_release_hold(s, h);
    } else if (o->kind == KIND_PIPE) {
        pipe_release_hold(s, h);
    } else if (o->kind == KIND_SEMAPHORE) {
        /* Given back only up to the initial value, bounded or not: a unit taken from a
         * Semaphore(0) used as a signal was consumed, not borrowed, and must not come back
         * as a phantom when its taker ends (mpb_close included). */
        sem_t *sm = &o->u.sem;
        holders_take(sm, s, INT64_MAX);
        int64_t back;
        if (__builtin_sub_overflow(sm->initial, sm->value, &back) || back > h->units)
            back = h->units;
        if (back < 0) back = 0;
        sm->value += back;
        log_kv(LOG_INFO, "units given back: their holder's session ended", "kind", "semaphore",
               "name", o->name, "units", LOG_INT(back), "held", LOG_INT(h->units), "session",
               LOG_UINT(s->id), NULL);
        sem_wake(o);
    }
}

/* A party that leaves a barrier round (its session ended) breaks it, as a timeout would,
 * even when it waited alone: the parties still to come would wait for it in vain. */
void sync_on_waiter_gone(obj_t *o) {
    if (o && o->kind == KIND_BARRIER) barrier_break(o, "lost a party whose session ended");
    if (o && o->kind == KIND_CONDITION) cond_on_waiter_gone(o);
}

bool sync_busy(const obj_t *o, char *why, size_t n) {
    if (o->kind == KIND_CONDITION && o->u.cond.notified > 0) {
        snprintf(why, n, "%lld notified waiters have not released its lock yet",
                 (long long)o->u.cond.notified);
        return true;
    }
    switch (o->kind) {
    case KIND_PIPE: return pipe_busy(o, why, n);
    case KIND_QUEUE:
        if (o->u.queue.getters.n + o->u.queue.putters.n + o->u.queue.joiners.n) {
            snprintf(why, n, "clients are blocked on it");
            return true;
        }
        return false;
    case KIND_LOCK:
    case KIND_RLOCK:
        if (o->u.lock.owner) {
            snprintf(why, n, "it is held by session %llu",
                     (unsigned long long)o->u.lock.owner->id);
            return true;
        }
        if (o->u.lock.waiters.n) {
            snprintf(why, n, "clients are waiting for it");
            return true;
        }
        return lock_busy_cond(o, why, n);
    case KIND_SEMAPHORE:
        if (o->u.sem.waiters.n || o->u.sem.nholders ||
            (o->u.sem.initial >= 0 && o->u.sem.value != o->u.sem.initial)) {
            snprintf(why, n, "units are held or awaited");
            return true;
        }
        return false;
    case KIND_CONDITION:
    case KIND_EVENT:
    case KIND_BARRIER: {
        const wlist_t *l = o->kind == KIND_CONDITION ? &o->u.cond.waiters
                           : o->kind == KIND_EVENT   ? &o->u.event.waiters
                                                     : &o->u.barrier.waiters;
        if (l->n) {
            snprintf(why, n, "clients are waiting on it");
            return true;
        }
        return false;
    }
    default: return false;
    }
}

/* Answers every call parked on o with an error: it is being deleted whatever waits. */
void sync_fail_all(obj_t *o, int code, const char *msg) {
    switch (o->kind) {
    case KIND_PIPE: pipe_fail_all(o, code, msg); break;
    case KIND_QUEUE:
        wlist_fail(&o->u.queue.getters, code, msg);
        wlist_fail(&o->u.queue.putters, code, msg);
        wlist_fail(&o->u.queue.joiners, code, msg);
        break;
    case KIND_LOCK:
    case KIND_RLOCK: wlist_fail(&o->u.lock.waiters, code, msg); break;
    case KIND_SEMAPHORE: wlist_fail(&o->u.sem.waiters, code, msg); break;
    case KIND_CONDITION:
        /* Each waiter gone is one fewer that needs the bound lock to stay. */
        for (size_t n = o->u.cond.waiters.n; n; n--) {
            wlist_fail_one(&o->u.cond.waiters, code, msg);
            sync_on_waiter_gone(o);
        }
        break;
    case KIND_EVENT: wlist_fail(&o->u.event.waiters, code, msg); break;
    case KIND_BARRIER: wlist_fail(&o->u.barrier.waiters, code, msg); break;
    default: break;
    }
}

void sync_free(obj_t *o) {
    switch (o->kind) {
    case KIND_PIPE: pipe_free(o); break;
    case KIND_QUEUE:
        deque_clear(&o->u.queue.items);
        queue_free_deliveries(o);
        break;
    case KIND_CONDITION: free(o->u.cond.lock_name); break;
    case KIND_SEMAPHORE: free(o->u.sem.holders); break;
    case KIND_VALUE: free(o->u.value); break;
    default: break;
    }
}

/* "unit_holders": [{session, host, pid, units}], oldest first: who took the units not given
 * back ("holders" is an anonymous object's reference holders) */
static uint32_t describe_holders(const sem_t *s, mpb__buf_t *b) {
    mpb__w_cstr(b, "unit_holders");
    mpb__w_array(b, (uint32_t)s->nholders);
    for (size_t i = 0; i < s->nholders; i++) {
        mpb__w_map(b, 4);
        sess_describe(s->holders[i].sess, b);
        mpb__w_cstr(b, "units");
        mpb__w_int(b, s->holders[i].units);
    }
    return 1;
}

static uint32_t describe_waiting(const wlist_t *l, mpb__buf_t *b) {
    waiter_describe(b, &l, 1);
    return 1;
}

uint32_t sync_describe(const obj_t *o, mpb__buf_t *b) {
    switch (o->kind) {
    case KIND_QUEUE: return queue_describe(o, b);
    case KIND_PIPE: return pipe_describe(o, b);
    case KIND_LOCK:
    case KIND_RLOCK: return lock_describe(o, b);
    case KIND_CONDITION: return cond_describe(o, b);
    case KIND_SEMAPHORE:
        mpb__w_cstr(b, "value");
        mpb__w_int(b, o->u.sem.value);
        mpb__w_cstr(b, "initial");
        mpb__w_int(b, o->u.sem.initial);
        mpb__w_cstr(b, "bounded");
        mpb__w_bool(b, o->u.sem.bounded);
        mpb__w_cstr(b, "waiters");
        mpb__w_uint(b, o->u.sem.waiters.n);
        return 4 + describe_holders(&o->u.sem, b) + describe_waiting(&o->u.sem.waiters, b);
    case KIND_EVENT:
        mpb__w_cstr(b, "set");
        mpb__w_bool(b, o->u.event.set);
        mpb__w_cstr(b, "waiters");
        mpb__w_uint(b, o->u.event.waiters.n);
        return 2 + describe_waiting(&o->u.event.waiters, b);
    case KIND_BARRIER:
        mpb__w_cstr(b, "parties");
        mpb__w_int(b, o->u.barrier.parties);
        mpb__w_cstr(b, "n_waiting");
        mpb__w_uint(b, o->u.barrier.waiters.n);
        mpb__w_cstr(b, "broken");
        mpb__w_bool(b, o->u.barrier.broken);
        mpb__w_cstr(b, "timeout_ms");
        mpb__w_int(b, o->u.barrier.timeout_ms);
        return 4 + describe_waiting(&o->u.barrier.waiters, b);
    case KIND_VALUE:
        mpb__w_cstr(b, "value");
        if (o->u.value) mpb__w_raw(b, o->u.value->data, o->u.value->len);
        else mpb__w_int(b, 0);
        return 1;
    default: return 0;
    }
}
