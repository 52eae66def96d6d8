/* t_queue.c - Queue and JoinableQueue (multiprocessing semantics): put blocks while full, get
 * while empty, both first come first served; an item put while getters wait goes straight to
 * the oldest getter. A joinable queue counts unfinished items for task_done and join. */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

static queue_t *Q(req_t *r) {
    return &r->obj->u.queue;
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

/* queue.open MAXSIZE|nil JOINABLE|nil -> [maxsize, joinable]. A queue made by an open without
 * them, or by use, is unbounded and plain until an open gives them: consumers may start
 * before the producer that knows the settings. A given setting is fixed from then on, and a
 * later open that gives another one is refused. */
int cmd_queue_open(req_t *r) {
    queue_t *q = Q(r);
    int64_t maxsize = 0;
    bool nomax, joinable = false, nojoin;
    if (arg_int_or_nil(r, "maxsize", &maxsize, &nomax)) return -1;
    nojoin = mpb__rd_nil(&r->args) == 0;
    if (!nojoin && arg_bool(r, "joinable", &joinable)) return -1;
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
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, 2);
    mpb__w_int(b, q->maxsize);
    mpb__w_bool(b, q->joinable);
    return 0;
}

/* Hands an item to the oldest getter, or keeps it. Takes ownership of item. */
static void deliver(queue_t *q, blob_t *item) {
    if (q->getters.head) {
        waiter_t *g = q->getters.head;
        waiter_reply_raw(g, item->data, item->len);
        waiter_free(g);
        free(item);
        return;
    }
    deque_push_back(&q->items, item);
}

/* After an item leaves: the oldest putter's item takes its place. */
static void admit_putters(queue_t *q) {
    while (q->putters.head && !full(q)) {
        waiter_t *p = q->putters.head;
        blob_t *item = p->item;
        p->item = NULL;
        waiter_reply_nil(p);
        waiter_free(p);
        deliver(q, item);
    }
}

/* queue.put ITEM TIMEOUT_MS -> nil | EFULL (no wait) | ETIMEDOUT */
int cmd_queue_put(req_t *r) {
    const uint8_t *v;
    size_t n;
    int64_t timeout;
    if (arg_value(r, "item", g_limits.max_value, &v, &n) || arg_timeout(r, &timeout)) return -1;
    queue_t *q = Q(r);
    if (full(q) || q->putters.head) {
        if (timeout == 0)
            return reply_error(r, MPB_EFULL, "queue/%.*s is full (maxsize %lld)",
                               (int)r->namelen, r->name, (long long)q->maxsize);
        waiter_t *w = waiter_park(r, &q->putters, timeout);
        w->item = blob_new(v, n);
        if (q->joinable) q->unfinished++; /* counted when it enters, as Python does at put */
        return 0;
    }
    if (q->joinable) q->unfinished++;
    deliver(q, blob_new(v, n));
    return reply_nil(r);
}

/* queue.get TIMEOUT_MS -> item | EEMPTY (no wait) | ETIMEDOUT */
int cmd_queue_get(req_t *r) {
    int64_t timeout;
    if (arg_timeout(r, &timeout)) return -1;
    queue_t *q = Q(r);
    if (q->items.len == 0 || q->getters.head) {
        if (timeout == 0)
            return reply_error(r, MPB_EEMPTY, "queue/%.*s is empty", (int)r->namelen, r->name);
        waiter_park(r, &q->getters, timeout);
        return 0;
    }
    blob_t *item = deque_pop_front(&q->items);
    reply_raw(r, item->data, item->len);
    free(item);
    admit_putters(q);
    return 0;
}

/* queue.qsize -> int */
int cmd_queue_qsize(req_t *r) {
    return reply_uint(r, Q(r)->items.len);
}

/* queue.peek N -> [item, ...]: the first N items, oldest first, none taken (for looking from a
 * shell); at most max_scan items and half a frame, but always one if there is one. */
int cmd_queue_peek(req_t *r) {
    uint64_t max;
    if (arg_uint(r, "count", &max)) return -1;
    reply_items(r, &Q(r)->items, 0, Q(r)->items.len, max);
    return 0;
}

/* queue.empty -> bool */
int cmd_queue_empty(req_t *r) {
    return reply_bool(r, Q(r)->items.len == 0);
}

/* queue.full -> bool */
int cmd_queue_full(req_t *r) {
    return reply_bool(r, full(Q(r)));
}

/* queue.task_done -> nil | EVALUE (more than were put) | ETYPE (not joinable) */
int cmd_queue_task_done(req_t *r) {
    queue_t *q = Q(r);
    if (!q->joinable)
        return reply_error(r, MPB_ETYPE, "queue/%.*s is not joinable", (int)r->namelen, r->name);
    if (tasks(q) <= 0)
        return reply_error(r, MPB_EVALUE, "task_done() called too many times");
    q->unfinished--;
    if (tasks(q) == 0) {
        while (q->joiners.head) {
            waiter_t *j = q->joiners.head;
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
    queue_t *q = Q(r);
    if (!q->joinable)
        return reply_error(r, MPB_ETYPE, "queue/%.*s is not joinable", (int)r->namelen, r->name);
    if (tasks(q) == 0) return reply_nil(r);
    if (timeout == 0)
        return reply_error(r, MPB_ETIMEDOUT, "%lld unfinished tasks", (long long)tasks(q));
    waiter_park(r, &q->joiners, timeout);
    return 0;
}

void queue_on_timeout(waiter_t *w);
void queue_on_timeout(waiter_t *w) {
    queue_t *q = &w->obj->u.queue;
    if (w->list == &q->putters) {
        free(w->item);
        w->item = NULL;
        if (q->joinable) q->unfinished--;
        waiter_reply_error(w, MPB_ETIMEDOUT, "queue/%s still full after the timeout",
                           w->obj->name);
    } else if (w->list == &q->getters) {
        waiter_reply_error(w, MPB_ETIMEDOUT, "queue/%s still empty after the timeout",
                           w->obj->name);
    } else {
        waiter_reply_error(w, MPB_ETIMEDOUT, "queue/%s: %lld tasks unfinished at the timeout",
                           w->obj->name, (long long)tasks(q));
    }
    waiter_free(w);
}

uint32_t queue_describe(const obj_t *o, mpb__buf_t *b);
uint32_t queue_describe(const obj_t *o, mpb__buf_t *b) {
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
    const wlist_t *lists[] = {&q->getters, &q->putters, &q->joiners};
    waiter_describe(b, lists, 3);
    return 8;
}
