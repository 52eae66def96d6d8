/* waiter.c - clients parked on queue.get, lock.acquire, event.wait ... until an op or a
 * deadline answers them. A waiter is a small record on its object's FIFO list, on its
 * session's list and, when it has a deadline, in a binary heap that gives the loop its poll
 * timeout: ten thousand blocked clients cost ten thousand records, not threads. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kind.h"
#include "metrics.h"
#include "out.h"

static waiter_t **heap;
static size_t heap_n, heap_cap, n_waiters;
static mpb__buf_t wbuf;

size_t waiter_count(void) {
    return n_waiters;
}

/* ---- the deadline heap (positions stored 1-based in w->heap) ---- */

static void heap_set(size_t i, waiter_t *w) {
    heap[i] = w;
    w->heap = i + 1;
}

static void heap_up(size_t i) {
    waiter_t *w = heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (heap[p]->deadline <= w->deadline) break;
        heap_set(i, heap[p]);
        i = p;
    }
    heap_set(i, w);
}

static void heap_down(size_t i) {
    waiter_t *w = heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= heap_n) break;
        if (c + 1 < heap_n && heap[c + 1]->deadline < heap[c]->deadline) c++;
        if (heap[c]->deadline >= w->deadline) break;
        heap_set(i, heap[c]);
        i = c;
    }
    heap_set(i, w);
}

static void heap_add(waiter_t *w) {
    if (heap_n == heap_cap) {
        heap_cap = heap_cap ? heap_cap * 2 : 256;
        heap = xrealloc(heap, heap_cap * sizeof *heap);
    }
    heap[heap_n] = w;
    heap_up(heap_n++);
}

static void heap_del(waiter_t *w) {
    if (!w->heap) return;
    size_t i = w->heap - 1;
    w->heap = 0;
    heap_n--;
    if (i == heap_n) return;
    heap_set(i, heap[heap_n]);
    heap_up(i);
    heap_down(heap[i]->heap - 1);
}

/* ---- lists ---- */

static void list_add(wlist_t *l, waiter_t *w) {
    w->list = l;
    TAILQ_INSERT_TAIL(&l->head, w, link);
    l->n++;
}

static void list_del(waiter_t *w) {
    wlist_t *l = w->list;
    if (!l) return;
    TAILQ_REMOVE(&l->head, w, link);
    l->n--;
    w->list = NULL;
}

/* now_ms() truncates: the true time may be up to 1 ms past it, so a deadline of now_ms() +
 * timeout could fire up to 1 ms early. One more ms makes it never early (and at most 1 ms
 * late). A timeout too large to add to the clock is no deadline at all: forever. */
static int64_t deadline_of(int64_t timeout_ms) {
    if (timeout_ms < 0) return INT64_MAX;
    int64_t now = now_ms();
    if (timeout_ms >= INT64_MAX - 1 - now) return INT64_MAX;
    return now + timeout_ms + 1;
}

waiter_t *waiter_park(req_t *r, wlist_t *list, int64_t timeout_ms) {
    waiter_t *w = xcalloc(1, sizeof *w);
    w->sess = r->sess;
    w->rid = r->rid;
    w->op = r->op;
    w->obj = r->obj;
    w->deadline = deadline_of(timeout_ms);
    if (r->obj) w->on_timeout = kind_ops(r->obj->kind)->on_timeout;
    w->parked_ns = (uint64_t)now_ns();
    list_add(list, w);
    if (w->deadline != INT64_MAX) heap_add(w);
    LIST_INSERT_HEAD(&r->sess->waiters, w, slink);
    r->parked = true;
    n_waiters++;
    return w;
}

void waiter_move(waiter_t *w, obj_t *obj, wlist_t *list, int64_t deadline) {
    list_del(w);
    heap_del(w);
    w->obj = obj;
    if (obj) w->on_timeout = kind_ops(obj->kind)->on_timeout; /* else: the one it had */
    w->deadline = deadline;
    list_add(list, w);
    if (deadline != INT64_MAX) heap_add(w);
}

void waiter_free(waiter_t *w) {
    list_del(w);
    heap_del(w);
    if (w->sess) LIST_REMOVE(w, slink);
    n_waiters--;
    free(w);
}

/* ---- replies ----
 *
 * Every answer to a parked request, from every kind, passes here: so this is where it is
 * counted, with its final code and the time from parking to answer (the dispatch that
 * parked it counted nothing). A request dropped with its session is not answered, nor
 * counted. */

static void send_w(waiter_t *w, int code) {
    bbuf_ensure(&wbuf);
    metrics_count(w->op, code, (uint64_t)now_ns() - w->parked_ns);
    if (w->rid && w->sess) out_send_reply(w->sess, wbuf.p, wbuf.len);
}

static void begin_ok(waiter_t *w) {
    mpb__buf_reset(&wbuf);
    reply_write_ok(&wbuf, w->rid);
}

void waiter_reply_nil(waiter_t *w) {
    begin_ok(w);
    mpb__w_nil(&wbuf);
    send_w(w, 0);
}

void waiter_reply_bool(waiter_t *w, bool v) {
    begin_ok(w);
    mpb__w_bool(&wbuf, v);
    send_w(w, 0);
}

void waiter_reply_int(waiter_t *w, int64_t v) {
    begin_ok(w);
    mpb__w_int(&wbuf, v);
    send_w(w, 0);
}

void waiter_reply_raw(waiter_t *w, const uint8_t *v, size_t n) {
    begin_ok(w);
    mpb__w_raw(&wbuf, v, n);
    send_w(w, 0);
}

void waiter_reply_error(waiter_t *w, int code, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mpb__buf_reset(&wbuf);
    reply_write_error(&wbuf, w->rid, code, msg);
    send_w(w, -code);
}

void wlist_fail_one(wlist_t *l, int code, const char *msg) {
    waiter_t *w = wlist_first(l);
    waiter_reply_error(w, code, "%s", msg);
    if (w->item) free(w->item);
    waiter_free(w);
}

void wlist_fail(wlist_t *l, int code, const char *msg) {
    while (wlist_first(l))
        wlist_fail_one(l, code, msg);
}

bool wlist_busy(const wlist_t *l, char *why, size_t n) {
    if (!l->n) return false;
    snprintf(why, n, "clients are waiting on it");
    return true;
}

/* ---- deadlines ---- */

long waiter_next_ms(int64_t now) {
    if (!heap_n) return -1;
    int64_t d = heap[0]->deadline - now;
    return d < 0 ? 0 : (long)d;
}

void waiter_expire(int64_t now) {
    while (heap_n && heap[0]->deadline <= now) {
        waiter_t *w = heap[0];
        heap_del(w);
        if (w->on_timeout) {
            w->on_timeout(w); /* answers it, and frees or moves it */
        } else {
            waiter_reply_error(w, MPB_ETIMEDOUT, "timed out");
            waiter_free(w);
        }
    }
}

void waiter_describe(mpb__buf_t *b, const wlist_t *const *lists, size_t n) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lists[i]->n;
    mpb__w_cstr(b, "waiting");
    mpb__w_array(b, (uint32_t)total);
    for (size_t i = 0; i < n; i++)
        for (const waiter_t *w = wlist_first(lists[i]); w; w = TAILQ_NEXT(w, link)) {
            mpb__w_map(b, 4);
            sess_describe(w->sess, b);
            mpb__w_cstr(b, "op");
            mpb__w_cstr(b, mpb__op_name(w->op));
        }
}
