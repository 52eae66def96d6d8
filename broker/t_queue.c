/* t_queue.c - Queue and JoinableQueue (multiprocessing semantics): put blocks while full, get
 * while empty, both first come first served; an item put while getters wait goes straight to
 * the oldest getter. A joinable queue counts unfinished items for task_done and join.
 *
 * A joinable queue (unless opened RELIABLE false), or one opened reliable, also keeps each item
 * it hands out, as a delivery with an id, until its taker says task_done (naming the id, as
 * AMQP's ack, or not: then its oldest): if the taker's session ends first, the item goes back
 * to the front of the queue, so no item is lost with a consumer and join() never waits for a
 * dead one.
 *
 *   items:  [i7 i8 i9]            dv: [#3 i4 sess 12] [#5 i6 sess 9]   (handed out, not done)
 *   sess 12 ends: i4 goes back to the front (or straight to the oldest getter). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kind.h"
#include "persist.h"

/* A parked request that takes effect is logged as if it had run now without waiting. */
static const uint8_t no_wait[1] = {0};

static queue_t *as_queue(req_t *r) {
    return &r->obj->u.queue;
}

uint64_t g_redelivered;

/* RELIABLE given decides; without it a joinable queue tracks. A joinable queue opened RELIABLE
 * false counts tasks only: its items leave with their takers, as in Python's queue.Queue (the
 * Python client's unnamed Queue(), which has task_done and join). */
static bool tracked(const queue_t *q) {
    return q->reliable_set ? q->reliable : q->joinable;
}

/* Keeps item as handed to s; returns its delivery id. */
static uint64_t track(obj_t *o, sess_t *s, blob_t *item) {
    queue_t *q = &o->u.queue;
    if (q->ndv == q->capdv) {
        q->capdv = q->capdv ? q->capdv * 2 : 4;
        q->dv = xrealloc(q->dv, q->capdv * sizeof *q->dv);
    }
    uint64_t id = ++q->next_dv;
    q->dv[q->ndv++] = (delivery_t){id, s, item, q->joinable};
    sess_hold(s, o, id, 1);
    return id;
}

/* Forgets delivery i (its item is the caller's now). */
static blob_t *untrack(queue_t *q, size_t i) {
    blob_t *item = q->dv[i].item;
    memmove(&q->dv[i], &q->dv[i + 1], (q->ndv - i - 1) * sizeof *q->dv);
    q->ndv--;
    return item;
}

static void queue_free_deliveries(obj_t *o) {
    queue_t *q = &o->u.queue;
    for (size_t i = 0; i < q->ndv; i++)
        free(q->dv[i].item);
    free(q->dv);
    q->dv = NULL;
    q->ndv = q->capdv = 0;
}

/* An item handed out: the item, or [delivery id, item] when asked (id 0: not tracked). */
static void write_item(mpb__buf_t *b, bool with_id, uint64_t id, const blob_t *item) {
    if (with_id) {
        mpb__w_array(b, 2);
        mpb__w_uint(b, id);
    }
    mpb__w_raw(b, item->data, item->len);
}

static bool full(const queue_t *q) {
    return q->maxsize > 0 && (int64_t)q->items.len >= q->maxsize;
}

/* Tasks for task_done and join: items that entered the queue and are not done yet. A put
 * waiting for room is in unfinished from the moment it parks, so that whoever drops it (its
 * timeout here, its session's end in server.c) takes it back out; but as in Python it is no
 * task until its item is in the queue, so join() does not wait for it. A plain queue has none. */
static int64_t tasks(const queue_t *q) {
    return q->joinable ? q->unfinished - (int64_t)q->putters.n : 0;
}

/* queue.open MAXSIZE|nil JOINABLE|nil [RELIABLE|nil] -> [maxsize, joinable]. A queue made by an
 * open without them, or by use, is unbounded and plain until an open gives them: consumers may
 * start before the producer that knows the settings. A given setting is fixed from then on,
 * and a later open that gives another one is refused. */
int cmd_queue_open(req_t *r) {
    queue_t *q = as_queue(r);
    int64_t maxsize = 0;
    bool nomax, joinable = false, nojoin, rel = false, norel = true;
    if (arg_int_or_nil(r, "maxsize", &maxsize, &nomax)) return -1;
    nojoin = mpb__rd_nil(&r->args) == 0;
    if (!nojoin && arg_bool(r, "joinable", &joinable)) return -1;
    if (r->argc > 2) {
        norel = mpb__rd_nil(&r->args) == 0;
        if (!norel && arg_bool(r, "reliable", &rel)) return -1;
    }
    if (!norel && q->reliable_set && rel != q->reliable)
        return reply_error(r, MPB_EINVAL, "queue/%.*s exists and is %sreliable", (int)r->namelen,
                           r->name, q->reliable ? "" : "not ");
    if (!nomax && maxsize < 0) maxsize = 0;
    if (!nomax && q->maxsize_set && maxsize != q->maxsize)
        return reply_error(r, MPB_EINVAL, "queue/%.*s exists with maxsize %lld, not %lld",
                           (int)r->namelen, r->name, (long long)q->maxsize, (long long)maxsize);
    if (!nojoin && q->joinable_set && joinable != q->joinable)
        return reply_error(r, MPB_EINVAL, "queue/%.*s exists and is %sjoinable", (int)r->namelen,
                           r->name, q->joinable ? "" : "not ");
    if (!nomax && !q->maxsize_set) {
        /* Items already beyond the bound stay; puts wait until the queue is below it. */
        q->maxsize = maxsize;
        q->maxsize_set = true;
    }
    if (!nojoin && !q->joinable_set) {
        /* What is in the queue (or waiting to enter) becomes a task; what left it before it
         * was joinable does not. */
        if (joinable && !q->joinable) q->unfinished = (int64_t)(q->items.len + q->putters.n);
        q->joinable = joinable;
        q->joinable_set = true;
    }
    if (!norel && !q->reliable_set) {
        q->reliable = rel;
        q->reliable_set = true;
    }
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, 2);
    mpb__w_int(b, q->maxsize);
    mpb__w_bool(b, q->joinable);
    return 0;
}

/* Hands an item to the oldest getter, or keeps it (at the back, or at the front when it comes
 * back from a taker that died). Takes ownership of item. */
static void deliver(obj_t *o, blob_t *item, bool front) {
    queue_t *q = &o->u.queue;
    if (wlist_first(&q->getters)) {
        waiter_t *g = wlist_first(&q->getters);
        static const uint8_t no_wait_id[2] = {0, 0xc3}; /* 0, true */
        persist_parked(g, g->with_id ? 2 : 1, g->with_id ? no_wait_id : no_wait,
                       g->with_id ? 2 : 1);
        uint64_t id = tracked(q) ? track(o, g->sess, item) : 0;
        mpb__buf_t b = {0};
        write_item(&b, g->with_id, id, item);
        bbuf_ensure(&b);
        waiter_reply_raw(g, b.p, b.len);
        mpb__buf_free(&b);
        waiter_free(g);
        if (!id) free(item);
        return;
    }
    if (front)
        deque_push_front(&q->items, item);
    else
        deque_push_back(&q->items, item);
}

static void queue_release_hold(sess_t *s, hold_t *h) {
    obj_t *o = h->obj;
    queue_t *q = &o->u.queue;
    for (size_t i = 0; i < q->ndv; i++) {
        if (q->dv[i].id != h->tid || q->dv[i].sess != s) continue;
        bool task = q->dv[i].task;
        blob_t *item = untrack(q, i);
        if (!task && q->joinable) q->unfinished++; /* it enters a queue that counts tasks now */
        g_redelivered++;
        log_kv(MPB_LOG_INFO, "item given back: its taker's session ended", "queue", o->name,
               "session", LOG_UINT(s->id), "delivery", LOG_UINT(h->tid), NULL);
        deliver(o, item, true);
        return;
    }
}

/* After an item leaves: the oldest putter's item takes its place. */
static void admit_putters(obj_t *p_obj) {
    queue_t *q = &p_obj->u.queue;
    while (wlist_first(&q->putters) && !full(q)) {
        waiter_t *p = wlist_first(&q->putters);
        blob_t *item = p->item;
        p->item = NULL;
        mpb__buf_t a = {0};
        mpb__w_raw(&a, item->data, item->len);
        mpb__w_raw(&a, no_wait, 1);
        bbuf_ensure(&a);
        persist_parked(p, 2, a.p, a.len);
        mpb__buf_free(&a);
        waiter_reply_nil(p);
        waiter_free(p);
        deliver(p_obj, item, false);
    }
}

/* queue.put ITEM TIMEOUT_MS -> nil | EFULL (no wait) | ETIMEDOUT */
int cmd_queue_put(req_t *r) {
    const uint8_t *v;
    size_t n;
    int64_t timeout;
    if (arg_value(r, "item", g_limits.max_value, &v, &n) || arg_timeout(r, &timeout)) return -1;
    queue_t *q = as_queue(r);
    if (full(q) || wlist_first(&q->putters)) {
        if (timeout == 0)
            return reply_error(r, MPB_EFULL, "queue/%.*s is full (maxsize %lld)", (int)r->namelen,
                               r->name, (long long)q->maxsize);
        waiter_t *w = waiter_park(r, &q->putters, timeout);
        w->item = blob_new(v, n);
        if (q->joinable) q->unfinished++; /* counted when it enters, as Python does at put */
        return 0;
    }
    if (q->joinable) q->unfinished++;
    deliver(r->obj, blob_new(v, n), false);
    return reply_nil(r);
}

/* queue.get TIMEOUT_MS [WITH_ID] -> item (or [delivery id, item]) | EEMPTY (no wait) |
 * ETIMEDOUT. A tracked queue keeps the item as this session's delivery until task_done. */
int cmd_queue_get(req_t *r) {
    int64_t timeout;
    bool with_id = false;
    if (arg_timeout(r, &timeout)) return -1;
    if (r->argc > 1 && mpb__rd_nil(&r->args) != 0 && arg_bool(r, "with_id", &with_id)) return -1;
    queue_t *q = as_queue(r);
    if (q->items.len == 0 || wlist_first(&q->getters)) {
        if (timeout == 0)
            return reply_error(r, MPB_EEMPTY, "queue/%.*s is empty", (int)r->namelen, r->name);
        waiter_park(r, &q->getters, timeout)->with_id = with_id;
        return 0;
    }
    blob_t *item = deque_pop_front(&q->items);
    uint64_t id = tracked(q) ? track(r->obj, r->sess, item) : 0;
    write_item(reply_begin(r), with_id, id, item);
    if (!id) free(item);
    admit_putters(r->obj);
    return 0;
}

/* queue.qsize -> int */
int cmd_queue_qsize(req_t *r) {
    return reply_uint(r, as_queue(r)->items.len);
}

/* queue.peek N -> [item, ...]: the first N items, oldest first, none taken (for looking from a
 * shell); at most max_scan items and half a frame, but always one if there is one. */
int cmd_queue_peek(req_t *r) {
    uint64_t max;
    if (arg_uint(r, "count", &max)) return -1;
    reply_items(r, &as_queue(r)->items, 0, as_queue(r)->items.len, max);
    return 0;
}

/* queue.empty -> bool */
int cmd_queue_empty(req_t *r) {
    return reply_bool(r, as_queue(r)->items.len == 0);
}

/* queue.full -> bool */
int cmd_queue_full(req_t *r) {
    return reply_bool(r, full(as_queue(r)));
}

/* queue.task_done [DELIVERY_ID] -> nil | EVALUE (more than were put; no such delivery of this
 * session) | ETYPE (neither joinable nor reliable). Finishes the named delivery of this session,
 * or without an id its oldest one (if it has any on this queue). */
int cmd_queue_task_done(req_t *r) {
    queue_t *q = as_queue(r);
    uint64_t id = 0;
    bool named = r->argc > 0;
    if (named && arg_uint(r, "delivery id", &id)) return -1;
    size_t i = 0;
    while (i < q->ndv && !(q->dv[i].sess == r->sess && (!named || q->dv[i].id == id)))
        i++;
    if (named && i == q->ndv)
        return reply_error(r, MPB_EVALUE,
                           "queue/%.*s has no item %llu handed to this session and not done",
                           (int)r->namelen, r->name, (unsigned long long)id);
    if (!q->joinable && !q->reliable)
        return reply_error(r, MPB_ETYPE, "queue/%.*s is not joinable", (int)r->namelen, r->name);
    bool task = true;
    if (i < q->ndv) {
        task = q->dv[i].task;
        sess_unhold(r->sess, r->obj, q->dv[i].id, 1);
        free(untrack(q, i));
    } else if (!q->joinable) {
        return reply_error(r, MPB_EVALUE, "queue/%.*s: no item handed to this session to finish",
                           (int)r->namelen, r->name);
    }
    if (!task || !q->joinable) return reply_nil(r);
    if (tasks(q) <= 0) return reply_error(r, MPB_EVALUE, "task_done() called too many times");
    q->unfinished--;
    if (tasks(q) == 0) {
        while (wlist_first(&q->joiners)) {
            waiter_t *j = wlist_first(&q->joiners);
            waiter_reply_nil(j);
            waiter_free(j);
        }
    }
    return reply_nil(r);
}

/* queue.join TIMEOUT_MS -> nil once every item put is done | ETIMEDOUT */
int cmd_queue_join(req_t *r) {
    int64_t timeout;
    if (arg_timeout(r, &timeout)) return -1;
    queue_t *q = as_queue(r);
    if (!q->joinable)
        return reply_error(r, MPB_ETYPE, "queue/%.*s is not joinable", (int)r->namelen, r->name);
    if (tasks(q) == 0) return reply_nil(r);
    if (timeout == 0)
        return reply_error(r, MPB_ETIMEDOUT, "%lld unfinished tasks", (long long)tasks(q));
    waiter_park(r, &q->joiners, timeout);
    return 0;
}

static void queue_init(obj_t *o) {
    wlist_init(&o->u.queue.getters);
    wlist_init(&o->u.queue.putters);
    wlist_init(&o->u.queue.joiners);
}

static void queue_on_timeout(waiter_t *w) {
    queue_t *q = &w->obj->u.queue;
    if (w->list == &q->putters) {
        free(w->item);
        w->item = NULL;
        if (q->joinable) q->unfinished--;
        waiter_reply_error(w, MPB_ETIMEDOUT, "queue/%s still full after the timeout", w->obj->name);
    } else if (w->list == &q->getters) {
        waiter_reply_error(w, MPB_ETIMEDOUT, "queue/%s still empty after the timeout",
                           w->obj->name);
    } else {
        waiter_reply_error(w, MPB_ETIMEDOUT, "queue/%s: %lld tasks unfinished at the timeout",
                           w->obj->name, (long long)tasks(q));
    }
    waiter_free(w);
}

static uint32_t queue_describe(const obj_t *o, mpb__buf_t *b) {
    const queue_t *q = &o->u.queue;
    mpb__w_cstr(b, "maxsize");
    mpb__w_int(b, q->maxsize);
    mpb__w_cstr(b, "joinable");
    mpb__w_bool(b, q->joinable);
    mpb__w_cstr(b, "unfinished");
    mpb__w_int(b, tasks(q));
    mpb__w_cstr(b, "getters");
    mpb__w_uint(b, q->getters.n);
    mpb__w_cstr(b, "putters");
    mpb__w_uint(b, q->putters.n);
    mpb__w_cstr(b, "joiners");
    mpb__w_uint(b, q->joiners.n);
    mpb__w_cstr(b, "bytes");
    mpb__w_uint(b, deque_bytes(&q->items));
    mpb__w_cstr(b, "reliable");
    mpb__w_bool(b, tracked(q));
    mpb__w_cstr(b, "delivered");
    mpb__w_uint(b, q->ndv);
    const wlist_t *lists[] = {&q->getters, &q->putters, &q->joiners};
    waiter_describe(b, lists, 3);
    return 10;
}

static void queue_free(obj_t *o) {
    deque_clear(&o->u.queue.items);
    queue_free_deliveries(o);
}

static uint64_t queue_size(const obj_t *o) {
    return o->u.queue.items.len;
}

static bool queue_busy(const obj_t *o, char *why, size_t n) {
    if (o->u.queue.getters.n + o->u.queue.putters.n + o->u.queue.joiners.n) {
        snprintf(why, n, "clients are blocked on it");
        return true;
    }
    return false;
}

static void queue_fail_all(obj_t *o, int code, const char *msg) {
    wlist_fail(&o->u.queue.getters, code, msg);
    wlist_fail(&o->u.queue.putters, code, msg);
    wlist_fail(&o->u.queue.joiners, code, msg);
}

/* A parked put went with its session: its item was counted unfinished when it came. */
static void queue_on_waiter_gone(obj_t *o, blob_t *item) {
    if (item && o->u.queue.joinable) o->u.queue.unfinished--;
    free(item);
}

/* A delivery stays with its taker across a restart: the taker may resume and finish it. */
const kind_ops_t queue_ops = {
    .name = "queue",
    .init = queue_init,
    .free = queue_free,
    .size = queue_size,
    .describe = queue_describe,
    .busy = queue_busy,
    .fail_all = queue_fail_all,
    .on_timeout = queue_on_timeout,
    .release_hold = queue_release_hold,
    .on_waiter_gone = queue_on_waiter_gone,
    .hold_outlives_restart = true,
};
