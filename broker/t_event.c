/* t_event.c - Event: set, clear, and waits that the set wakes all at once. */
#include <stdio.h>

#include "kind.h"

/* event.set -> nil: wakes every waiter */
int cmd_event_set(req_t *r) {
    event_t *e = &r->obj->u.event;
    e->set = true;
    while (wlist_first(&e->waiters)) {
        waiter_t *w = wlist_first(&e->waiters);
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

/* ---- hooks ---- */

static void event_init(obj_t *o) {
    wlist_init(&o->u.event.waiters);
}

static uint64_t event_size(const obj_t *o) {
    return o->u.event.set;
}

static void event_on_timeout(waiter_t *w) {
    waiter_reply_bool(w, false);
    waiter_free(w);
}

static bool event_busy(const obj_t *o, char *why, size_t n) {
    return wlist_busy(&o->u.event.waiters, why, n);
}

static void event_fail_all(obj_t *o, int code, const char *msg) {
    wlist_fail(&o->u.event.waiters, code, msg);
}

static uint32_t event_describe(const obj_t *o, mpb__buf_t *b) {
    mpb__w_cstr(b, "set");
    mpb__w_bool(b, o->u.event.set);
    mpb__w_cstr(b, "waiters");
    mpb__w_uint(b, o->u.event.waiters.n);
    waiter_describe(b, (const wlist_t *[]){&o->u.event.waiters}, 1);
    return 3;
}

const kind_ops_t event_ops = {
    .name = "event",
    .init = event_init,
    .size = event_size,
    .describe = event_describe,
    .busy = event_busy,
    .fail_all = event_fail_all,
    .on_timeout = event_on_timeout,
};
