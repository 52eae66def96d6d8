/* pool.c - multiprocessing.Pool's API over the broker. Submitting is a call that returns task
 * ids; results come back through one parked pool.take per client that covers every task the
 * session has out, and each result is routed by task id to the AsyncResult or imap iterator
 * that owns it. A result may arrive inside any call that reads replies, even inside another
 * call's wait; its callback is queued and run when the caller is next in a pool call (poll,
 * join, wait/get/ready, imap_next, submitting), outside any wait, so a callback may itself
 * make calls on the client (submit more tasks, store the result). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

/* ---- routing ---- */

static prt_t *rt(mpb_client_t *c) {
    if (!c->pool_rt) c->pool_rt = calloc(1, sizeof(prt_t));
    return c->pool_rt;
}

int mpb__pool_route_add(mpb_client_t *c, uint64_t id, void *owner, int kind, uint64_t index) {
    prt_t *t = rt(c);
    route_t *e = t ? malloc(sizeof *e) : NULL;
    if (!e) return MPB_ENOMEM;
    *e = (route_t){.id = id, .owner = owner, .kind = kind, .index = index};
    HASH_ADD(hh, t->r, id, sizeof e->id, e);
    route_t *in;
    HASH_FIND(hh, t->r, &id, sizeof id, in);
    if (in != e) { /* the table could not grow (HASH_NONFATAL_OOM) */
        free(e);
        return MPB_ENOMEM;
    }
    return 0;
}

static void route_del(prt_t *t, route_t *e) {
    HASH_DEL(t->r, e);
    free(e);
}

/* Finds the route of id (and removes it if take). */
static bool route_find(mpb_client_t *c, uint64_t id, route_t *out, bool take) {
    prt_t *t = c->pool_rt;
    route_t *e = NULL;
    if (t) HASH_FIND(hh, t->r, &id, sizeof id, e);
    if (!e) return false;
    *out = *e;
    if (take) route_del(t, e);
    return true;
}

static bool route_take(mpb_client_t *c, uint64_t id, route_t *out) {
    return route_find(c, id, out, true);
}

/* Forgets every route of owner (it is being freed). */
void mpb__pool_route_forget(mpb_client_t *c, void *owner) {
    prt_t *t = c->pool_rt;
    if (!t) return;
    route_t *e, *tmp;
    HASH_ITER(hh, t->r, e, tmp) {
        if (e->owner == owner) route_del(t, e);
    }
}

void mpb__pool_rt_free(mpb_client_t *c) {
    prt_t *t = c->pool_rt;
    if (!t) return;
    route_t *e, *tmp;
    HASH_ITER(hh, t->r, e, tmp) {
        route_del(t, e);
    }
    free(t);
    c->pool_rt = NULL;
}

/* ---- completing ---- */

/* A remote message as the caller sees it: "fn: message", unless the function named itself
 * already ("sleep_ms: -1 is not ...", "square(4000000000) overflows"). */
void mpb__pool_remote_msg(char *out, size_t n, const char *fn, const char *s, uint32_t sl) {
    size_t fl = strlen(fn);
    if (sl > fl && !memcmp(s, fn, fl) && (s[fl] == ':' || s[fl] == '('))
        snprintf(out, n, "%.*s", (int)sl, s);
    else
        snprintf(out, n, "%s: %.*s", fn, (int)sl, s);
}

void mpb__pool_async_finish(mpb_async_t *a) {
    a->ready = true;
    mpb_pool_t *p = a->p;
    if (p) p->outstanding--;
    if (a->canceled && a->status == 0) {
        a->status = MPB_ECANCELED;
        snprintf(a->msg, sizeof a->msg, "canceled by terminate()");
    }
    if (!a->status) {
        /* Assemble the value: apply's one value, or map's array in input order. The first
         * failed call (in input order) fails the whole, as Python raises it. */
        uint64_t total = 0;
        for (uint64_t i = 0; i < a->ntasks; i++) {
            mpb__rd_t r = {a->outs[i], a->outs[i] + a->outlens[i]};
            uint32_t n = 0;
            mpb__rd_array(&r, &n);
            total += n;
        }
        if (a->kind == A_MAP) mpb__w_array(&a->result, (uint32_t)total);
        for (uint64_t i = 0; i < a->ntasks && !a->status; i++) {
            mpb__rd_t r = {a->outs[i], a->outs[i] + a->outlens[i]};
            uint32_t n = 0;
            mpb__rd_array(&r, &n);
            for (uint32_t k = 0; k < n; k++) {
                uint32_t two;
                bool ok = false;
                const uint8_t *v;
                size_t vn;
                if (mpb__rd_array(&r, &two) || two < 2 || two > 3 || mpb__rd_bool(&r, &ok) ||
                    mpb__rd_span(&r, &v, &vn)) {
                    a->status = MPB_EPROTO;
                    snprintf(a->msg, sizeof a->msg, "malformed result");
                    break;
                }
                if (!ok) {
                    mpb__rd_t m = {v, v + vn};
                    const char *s = "";
                    uint32_t sl = 0;
                    mpb__rd_str(&m, &s, &sl);
                    a->status = MPB_EREMOTE;
                    mpb__pool_remote_msg(a->msg, sizeof a->msg, a->fn, s, sl);
                    const char *ks = "";
                    uint32_t kl = 0;
                    if (two == 3 && !mpb__rd_str(&r, &ks, &kl)) /* [false, message, kind] */
                        snprintf(a->ekind, sizeof a->ekind, "%.*s", (int)kl, ks);
                    if (sl == 8 && !memcmp(s, "canceled", 8)) a->status = MPB_ECANCELED;
                    break;
                }
                mpb__w_raw(&a->result, v, vn);
            }
        }
        if (a->result.oom && !a->status) {
            a->status = MPB_ENOMEM;
            snprintf(a->msg, sizeof a->msg, "out of memory assembling the result");
        }
    }
    for (uint64_t i = 0; i < a->ntasks; i++)
        free(a->outs[i]);
    free(a->outs);
    free(a->outlens);
    a->outs = NULL;
    a->outlens = NULL;
    if (p) { /* its callback runs later, outside whatever call is reading replies now */
        a->notify_pending = true;
        STAILQ_INSERT_TAIL(&p->notify, a, nlink);
        mpb__cb_due(p->c); /* with the callback thread: now */
    }
}

void mpb__pool_notify_remove(mpb_pool_t *p, mpb_async_t *a) {
    if (!a->notify_pending) return;
    STAILQ_REMOVE(&p->notify, a, mpb_async, nlink);
    a->notify_pending = false;
}

void mpb__pool_notify_one(mpb_async_t *a) {
    if (a->status) {
        if (a->ecb) a->ecb(a->arg, a->status, a->msg);
    } else if (a->cb) {
        a->cb(a->arg, a->result.p, a->result.len);
    }
}

/* Runs the callbacks of finished results, in the order they finished. Not nested: a callback
 * that calls into the pool adds to the queue this loop is draining. Under the client's cb_mu
 * (one callback at a time, whichever thread runs them); the queue is the client's mu's. */
void mpb__pool_run_notify(mpb_pool_t *p) {
    int held;
    if (!p || !mpb__cb_enter(p->c, &held)) return;
    mpb_client_t *c = p->c;
    if (p->notifying) {
        mpb__cb_leave(c, held);
        return;
    }
    p->notifying = true;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        mpb_async_t *a = STAILQ_FIRST(&p->notify);
        if (a) mpb__pool_notify_remove(p, a);
        pthread_mutex_unlock(&c->mu);
        if (!a) break;
        mpb__pool_notify_one(a); /* may free a */
    }
    p->notifying = false;
    mpb__cb_leave(c, held);
    mpb_flush(c); /* what the callbacks submitted */
}

/* Hands a task's [[stream, bytes], ...] to its pool's output callback. */
static void deliver_output(const route_t *r, const uint8_t *p, size_t n) {
    mpb_pool_t *pool =
        r->kind == A_IMAP ? ((mpb_imap_t *)r->owner)->p : ((mpb_async_t *)r->owner)->p;
    if (!pool || !pool->out_cb) return;
    mpb__rd_t rd = {p, p + n};
    uint32_t k;
    if (mpb__rd_array(&rd, &k)) return;
    for (uint32_t i = 0; i < k; i++) {
        uint32_t two;
        int64_t stream;
        const uint8_t *b;
        uint32_t bl;
        if (mpb__rd_array(&rd, &two) || two != 2 || mpb__rd_int(&rd, &stream) ||
            mpb__rd_bin(&rd, &b, &bl))
            return;
        pool->out_cb(pool->out_arg, r->kind == A_IMAP ? NULL : r->owner, r->index, (int)stream, b,
                     bl);
    }
}

static void on_take(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)arg;
    prt_t *t = c->pool_rt;
    if (!t) return;
    t->take_out = false;
    if (status) {
        /* The connection or session failed: every task still routed fails with it. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", mpb_errmsg(c));
        while (t->r) { /* the head each time: route_forget may remove any other */
            route_t r;
            if (!route_take(c, t->r->id, &r)) break;
            if (r.kind == A_IMAP) {
                mpb_imap_t *it = r.owner;
                it->fail = status;
                continue;
            }
            mpb_async_t *a = r.owner;
            if (a->ready) continue;
            a->status = status;
            snprintf(a->msg, sizeof a->msg, "%s", msg);
            mpb__pool_route_forget(c, a);
            mpb__pool_async_finish(a);
        }
        return;
    }
    mpb__rd_t rd = {val, (const uint8_t *)val + len};
    uint32_t n;
    if (mpb__rd_array(&rd, &n)) return;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t two;
        uint64_t id;
        const uint8_t *out, *output = NULL;
        size_t ol, outputlen = 0;
        if (mpb__rd_array(&rd, &two) || two < 2 || two > 3 || mpb__rd_uint(&rd, &id) ||
            mpb__rd_span(&rd, &out, &ol) || (two == 3 && mpb__rd_span(&rd, &output, &outputlen)))
            return;
        route_t r;
        if (ol == 1 && out[0] == 0xc0) { /* [task_id, nil, output]: it runs, and wrote this */
            if (output && route_find(c, id, &r, false)) deliver_output(&r, output, outputlen);
            continue;
        }
        if (!route_take(c, id, &r)) continue;
        if (output) deliver_output(&r, output, outputlen);
        if (r.kind == A_IMAP) {
            mpb__pool_imap_arrive(r.owner, r.index, out, ol);
            continue;
        }
        mpb_async_t *a = r.owner;
        uint8_t *copy = malloc(ol ? ol : 1);
        if (!copy) {
            a->status = MPB_ENOMEM;
            snprintf(a->msg, sizeof a->msg, "out of memory");
        } else {
            memcpy(copy, out, ol);
            a->outs[r.index] = copy;
            a->outlens[r.index] = ol;
        }
        if (++a->ndone == a->ntasks) mpb__pool_async_finish(a);
    }
    mpb__pool_pump_take(c);
}

/* Keeps one pool.take parked while any task is routed. */
void mpb__pool_pump_take(mpb_client_t *c) {
    prt_t *t = c->pool_rt;
    if (!t || t->take_out || !t->r) return;
    mpb__buf_t *b = mpb__req(c, MPB_OP_POOL_TAKE, NULL, 0, 4);
    mpb__w_uint(b, 1);
    mpb__w_uint(b, UINT64_MAX - 1);
    mpb__w_int(b, -1);
    mpb__w_bool(b, true); /* what running tasks write, as they write it */
    if (mpb__send(c, on_take, NULL) == 0) t->take_out = true;
}

/* ---- the public calls ---- */

int mpb_pool_open(mpb_client_t *c, mpb_pool_t **out) {
    *out = NULL;
    if (!c) return MPB_EINVAL;
    int rc = mpb__usable(c);
    if (rc) return rc;
    mpb_pool_t *p = calloc(1, sizeof *p);
    if (!p) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    p->c = c;
    STAILQ_INIT(&p->notify);
    pthread_mutex_lock(&c->cb_mu); /* on c's list, for the callback thread */
    pthread_mutex_lock(&c->mu);
    LIST_INSERT_HEAD(&c->pools, p, clink);
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&c->cb_mu);
    *out = p;
    return 0;
}

/* ---- close, join, terminate ---- */

int mpb_pool_finish(mpb_pool_t *p) {
    if (!p) return MPB_EINVAL;
    p->closed = true;
    return 0;
}

void mpb_pool_set_output(mpb_pool_t *p, mpb_output_cb cb, void *arg) {
    if (!p) return;
    p->out_cb = cb;
    p->out_arg = arg;
}

int mpb_pool_poll(mpb_pool_t *p, int timeout_ms) {
    if (!p) return MPB_EINVAL;
    MPB__POOL_HOLD(p->c);
    size_t before = p->outstanding;
    int rc = mpb_poll(p->c, timeout_ms);
    size_t done = before - p->outstanding;
    mpb__pool_run_notify(p);
    if (rc < 0) return rc;
    return (int)done;
}

int mpb_pool_join(mpb_pool_t *p, int timeout_ms) {
    if (!p) return MPB_EINVAL;
    MPB__POOL_HOLD(p->c);
    if (!p->closed) return mpb__fail(p->c, MPB_EINVAL, "join() before close() or terminate()");
    int64_t end = timeout_ms < 0 ? INT64_MAX : mpb__now_ms() + timeout_ms;
    while (p->outstanding) {
        int64_t left = end == INT64_MAX ? -1 : end - mpb__now_ms();
        if (end != INT64_MAX && left <= 0)
            return mpb__fail(p->c, MPB_ETIMEDOUT, "%zu results still outstanding", p->outstanding);
        int rc = mpb_poll(p->c, (int)(left < 0 || left > 1000 ? 1000 : left));
        mpb__pool_run_notify(p);
        if (rc < 0) return rc;
    }
    mpb__pool_run_notify(p);
    return 0;
}

int mpb_pool_terminate(mpb_pool_t *p) {
    if (!p) return MPB_EINVAL;
    MPB__POOL_HOLD(p->c);
    p->closed = true;
    if (mpb__usable(p->c)) return mpb__usable(p->c);
    mpb__pool_submits_settle(p, 0); /* every apply has its task id */
    ranges_t r = {0};
    mpb_async_t *a;
    LIST_FOREACH(a, &p->asyncs, link) {
        if (a->ready) continue;
        a->canceled = true;
        mpb__pool_async_ranges(p->c, a, &r);
    }
    mpb_imap_t *it;
    LIST_FOREACH(it, &p->imaps, ilink) {
        if (it->canceled) continue;
        mpb__pool_imap_ranges(p->c, it, &r);
        it->canceled = true;
        it->input_done = true;
        mpb__pool_route_forget(p->c, it); /* what still comes for it is dropped */
    }
    mpb__pool_ranges_send(p->c, &r); /* 80,000 applies in a row are one cancel */
    return mpb_flush(p->c);
}

void mpb_pool_close(mpb_pool_t **pp) {
    mpb_pool_t *p = *pp;
    if (!p) return;
    *pp = NULL;
    mpb_client_t *c = p->c;
    pthread_mutex_lock(&c->cb_mu); /* not while the callback thread runs p's callbacks */
    MPB__POOL_HOLD(c);
    mpb__pool_run_notify(p);
    if (p->submitting && mpb__usable(p->c) == 0) mpb__pool_submits_settle(p, 0);
    if ((p->outstanding || !LIST_EMPTY(&p->imaps)) && mpb__usable(p->c) == 0) mpb_pool_terminate(p);
    /* a caller's iterator stays valid (detached) until mpb_imap_free */
    while (!LIST_EMPTY(&p->imaps)) {
        mpb_imap_t *it = LIST_FIRST(&p->imaps);
        LIST_REMOVE(it, ilink);
        mpb__pool_route_forget(p->c, it);
        it->p = NULL;
    }
    while (!LIST_EMPTY(&p->asyncs)) {
        mpb_async_t *a = LIST_FIRST(&p->asyncs);
        mpb__pool_route_forget(p->c, a);
        mpb__pool_async_unlink(a);
        if (a->kept_by_pool) mpb__pool_async_destroy(a);
        /* a handle the caller holds stays valid (detached) until mpb_async_free */
    }
    LIST_REMOVE(p, clink);
    c->pools_gen++;
    pthread_mutex_unlock(&c->cb_mu);
    free(p);
}
