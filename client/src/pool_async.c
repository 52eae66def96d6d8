/* pool_async.c - AsyncResult: waiting, reading the result or the error, freeing; and
 * cancelling what it still has out (task id ranges, merged, one pool.cancel per run). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

/* ---- AsyncResult ---- */

int mpb_async_wait(mpb_async_t *a, int timeout_ms) {
    if (!a) return MPB_EINVAL;
    mpb_pool_t *p = a->p;
    MPB__POOL_HOLD(p ? p->c : NULL);
    if (!p) return a->ready ? 1 : 0;
    int64_t end = timeout_ms < 0 ? INT64_MAX : mpb__now_ms() + timeout_ms;
    while (!a->ready) {
        int64_t left = end == INT64_MAX ? -1 : end - mpb__now_ms();
        if (end != INT64_MAX && left <= 0) break;
        int rc = mpb_poll(p->c, (int)(left < 0 || left > 1000 ? 1000 : left));
        if (rc < 0 && !a->ready) return rc;
    }
    int ready = a->ready; /* a callback run now may free a */
    mpb__pool_run_notify(p);
    return ready ? 1 : 0;
}

int mpb_async_ready(mpb_async_t *a) {
    if (!a) return MPB_EINVAL;
    mpb_pool_t *p = a->p;
    MPB__POOL_HOLD(p ? p->c : NULL);
    if (!a->ready && p) mpb_poll(p->c, 0);
    int ready = a->ready;
    mpb__pool_run_notify(p);
    return ready ? 1 : 0;
}

int mpb_async_successful(mpb_async_t *a) {
    if (!a) return MPB_EINVAL;
    if (!mpb_async_ready(a)) {
        if (a->p) mpb__fail(a->p->c, MPB_EINVAL, "the result is not ready yet");
        return MPB_EINVAL;
    }
    return a->status == 0;
}

int mpb_async_get(mpb_async_t *a, int timeout_ms, void **result, size_t *rlen) {
    if (!a) return MPB_EINVAL;
    mpb_pool_t *p = a->p;
    MPB__POOL_HOLD(p ? p->c : NULL);
    int rc = mpb_async_wait(a, timeout_ms);
    if (rc < 0) return rc;
    mpb_client_t *c = p ? p->c : NULL;
    if (!a->ready && !p) return MPB_ECLOSED; /* its pool was freed before it finished */
    if (!a->ready) {
        uint64_t nworkers = 0;
        uint64_t cap = mpb__pool_capacity(p, a->fn, &nworkers);
        char when[48] = "not ready"; /* a poll (timeout 0) did not wait */
        if (timeout_ms != 0) snprintf(when, sizeof when, "timed out after %d ms", timeout_ms);
        if (!nworkers)
            return mpb__fail(c, MPB_ETIMEDOUT, "%s: no worker serves function '%s'", when, a->fn);
        return mpb__fail(c, MPB_ETIMEDOUT,
                         "%s: %llu of %llu tasks done; %llu workers (%llu slots) serve '%s'", when,
                         (unsigned long long)a->ndone, (unsigned long long)a->ntasks,
                         (unsigned long long)nworkers, (unsigned long long)cap, a->fn);
    }
    if (a->status) return c ? mpb__fail(c, a->status, "%s", a->msg) : a->status;
    if (result) {
        void *q = malloc(a->result.len ? a->result.len : 1);
        if (!q) return c ? mpb__fail(c, MPB_ENOMEM, "out of memory") : MPB_ENOMEM;
        memcpy(q, a->result.p, a->result.len);
        *result = q;
        if (rlen) *rlen = a->result.len;
    }
    return 0;
}

int mpb_async_error(const mpb_async_t *a, const char **kind, const char **msg) {
    if (!a || !a->ready) return MPB_EINVAL;
    if (kind) *kind = a->ekind;
    if (msg) *msg = a->msg;
    return a->status;
}

void mpb_async_progress(const mpb_async_t *a, uint64_t *done, uint64_t *total) {
    if (done) *done = a ? (a->ready ? a->ntasks : a->ndone) : 0;
    if (total) *total = a ? a->ntasks : 0;
}

/* ---- cancelling: task id ranges, merged where they touch, one pool.cancel per run ---- */

void mpb__pool_send_cancel(mpb_client_t *c, uint64_t first, uint64_t count) {
    mpb__buf_t *b = mpb__req(c, MPB_OP_POOL_CANCEL, NULL, 0, 2);
    mpb__w_uint(b, first);
    mpb__w_uint(b, count);
    mpb__send(c, NULL, NULL);
}

static void ranges_add(mpb_client_t *c, ranges_t *r, uint64_t first, uint64_t count) {
    if (r->n && r->v[r->n - 1].first + r->v[r->n - 1].count == first) {
        r->v[r->n - 1].count += count; /* the common case: the next batch of the same map */
        return;
    }
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        range_t *nv = realloc(r->v, ncap * sizeof *nv);
        if (!nv) { /* no room to merge it: it goes alone */
            mpb__pool_send_cancel(c, first, count);
            return;
        }
        r->v = nv;
        r->cap = ncap;
    }
    r->v[r->n++] = (range_t){first, count};
}

static int range_cmp(const void *x, const void *y) {
    const range_t *a = x, *b = y;
    return a->first < b->first ? -1 : a->first > b->first;
}

/* Sends the cancels (replies not awaited) and frees the list. */
void mpb__pool_ranges_send(mpb_client_t *c, ranges_t *r) {
    if (r->n) qsort(r->v, r->n, sizeof *r->v, range_cmp);
    for (size_t i = 0; i < r->n;) {
        uint64_t first = r->v[i].first, end = first + r->v[i].count;
        for (i++; i < r->n && r->v[i].first <= end; i++)
            if (r->v[i].first + r->v[i].count > end) end = r->v[i].first + r->v[i].count;
        mpb__pool_send_cancel(c, first, end - first);
    }
    free(r->v);
    *r = (ranges_t){0};
}

void mpb__pool_async_ranges(mpb_client_t *c, mpb_async_t *a, ranges_t *r) {
    for (size_t i = 0; i < a->nranges; i++)
        ranges_add(c, r, a->firsts[i], a->counts[i]);
}

/* The ids of an iterator's chunks that have not come back. */
void mpb__pool_imap_ranges(mpb_client_t *c, mpb_imap_t *it, ranges_t *r) {
    if (!it->slots || !it->ids) return;
    for (uint64_t q = it->consumed; q < it->submitted; q++) {
        islot_t *s = &it->slots[q % it->window];
        if (s->used && !s->out) ranges_add(c, r, it->ids[q % it->window], 1);
    }
}

void mpb__pool_cancel_ranges(mpb_client_t *c, mpb_async_t *a) {
    ranges_t r = {0};
    mpb__pool_async_ranges(c, a, &r);
    mpb__pool_ranges_send(c, &r);
}

void mpb_async_free(mpb_async_t **ap) {
    mpb_async_t *a = *ap;
    if (!a) return;
    *ap = NULL;
    MPB__POOL_HOLD(a->p ? a->p->c : NULL);
    if (a->submitting && a->p) mpb__pool_submits_settle(a->p, 0); /* its reply names it */
    if (a->p && a->notify_pending) { /* finished: its callback is owed */
        mpb__pool_notify_remove(a->p, a);
        int held; /* as the other callbacks run: one at a time, mu let go */
        bool one = mpb__cb_enter(a->p->c, &held);
        mpb__pool_notify_one(a);
        if (one) mpb__cb_leave(a->p->c, held);
    }
    if (a->p) {
        mpb_client_t *c = a->p->c;
        if (!a->ready && mpb__usable(c) == 0) {
            mpb__pool_cancel_ranges(c, a);
            mpb_flush(c);
        }
        mpb__pool_route_forget(c, a);
        mpb__pool_async_unlink(a);
    }
    mpb__pool_async_destroy(a);
}
