/* pool_submit.c - submitting to the Pool: apply, map and starmap (sync and async), in batches
 * that fit a frame and the workers' capacity; an apply's task id comes back asynchronously. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

/* ---- submitting ---- */

/* mpb__pool_submit()'s job for a lone apply: no job, so `mpb pool` does not list it as a map. */
#define JOB_NONE UINT64_MAX

/* Submits tasks (each a msgpack array of calls) given as one msgpack array body of n tasks,
 * into job (0: a new one; JOB_NONE: none). Returns the first task id. */
int mpb__pool_submit(mpb_pool_t *p, const char *fn, uint64_t job, const uint8_t *tasks, size_t tlen,
                     uint32_t n, uint64_t *first, uint64_t *job_out) {
    if (tlen > p->c->max_frame / 4) mpb_flush(p->c); /* a big batch gets a frame of its own */
    mpb__buf_t *b = mpb__req(p->c, MPB_OP_POOL_SUBMIT, NULL, 0, 3);
    mpb__w_cstr(b, fn);
    if (job == JOB_NONE)
        mpb__w_bool(b, false);
    else if (job)
        mpb__w_uint(b, job);
    else
        mpb__w_nil(b);
    mpb__w_array(b, n);
    mpb__w_raw(b, tasks, tlen);
    const uint8_t *v;
    size_t vn;
    int rc = mpb__call(p->c, 0, &v, &vn);
    if (rc) return rc;
    mpb__rd_t r = {v, v + vn};
    uint32_t two;
    uint64_t j;
    if (mpb__rd_array(&r, &two) || two != 2 || mpb__rd_uint(&r, &j) || mpb__rd_uint(&r, first))
        return mpb__fail(p->c, MPB_EPROTO, "malformed pool.submit reply");
    if (job_out) *job_out = j;
    return 0;
}

int mpb__pool_check_fn(mpb_pool_t *p, const char *fn) {
    if (!p) return MPB_EINVAL;
    if (!fn || !mpb__name_ok(fn, strlen(fn)))
        return mpb__fail(p->c, MPB_EINVAL, "function names are 1 to 255 printable characters");
    if (p->closed) return mpb__fail(p->c, MPB_EINVAL, "the pool is closed");
    return mpb__usable(p->c);
}

static mpb_async_t *async_new(mpb_pool_t *p, int kind, const char *fn, uint64_t ntasks) {
    mpb_async_t *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->p = p;
    a->kind = kind;
    snprintf(a->fn, sizeof a->fn, "%s", fn);
    a->ntasks = ntasks;
    a->outs = calloc(ntasks ? ntasks : 1, sizeof *a->outs);
    a->outlens = calloc(ntasks ? ntasks : 1, sizeof *a->outlens);
    if (!a->outs || !a->outlens) {
        free(a->outs);
        free(a->outlens);
        free(a);
        return NULL;
    }
    LIST_INSERT_HEAD(&p->asyncs, a, link);
    p->outstanding++;
    return a;
}

void mpb__pool_async_unlink(mpb_async_t *a) {
    mpb_pool_t *p = a->p;
    if (!p) return;
    mpb__pool_notify_remove(p, a);
    LIST_REMOVE(a, link);
    if (!a->ready) p->outstanding--;
    a->p = NULL;
}

void mpb__pool_async_destroy(mpb_async_t *a) {
    if (a->outs)
        for (uint64_t i = 0; i < a->ntasks; i++)
            free(a->outs[i]);
    free(a->outs);
    free(a->outlens);
    free(a->firsts);
    free(a->counts);
    mpb__buf_free(&a->result);
    free(a);
}

static int add_range(mpb_async_t *a, uint64_t first, uint64_t count) {
    uint64_t *f = realloc(a->firsts, (a->nranges + 1) * sizeof *f);
    if (!f) return MPB_ENOMEM;
    a->firsts = f;
    uint64_t *n = realloc(a->counts, (a->nranges + 1) * sizeof *n);
    if (!n) return MPB_ENOMEM;
    a->counts = n;
    a->firsts[a->nranges] = first;
    a->counts[a->nranges] = count;
    a->nranges++;
    return 0;
}

/* The number of calls the functions' workers can run at once (0 if none serve it). */
uint64_t mpb__pool_capacity(mpb_pool_t *p, const char *fn, uint64_t *nworkers) {
    mpb__buf_t *b = mpb__req(p->c, MPB_OP_POOL_FNINFO, NULL, 0, 1);
    mpb__w_cstr(b, fn);
    const uint8_t *v;
    size_t vn;
    uint64_t w = 0, cap = 0;
    if (mpb__call(p->c, 0, &v, &vn) == 0) {
        mpb__rd_t r = {v, v + vn};
        uint32_t six;
        if (!mpb__rd_array(&r, &six) && six >= 2 && !mpb__rd_uint(&r, &w)) mpb__rd_uint(&r, &cap);
    }
    if (nworkers) *nworkers = w;
    return cap;
}

/* The largest task (a chunk's encoded calls) the broker takes, with room in a frame for it. */
size_t mpb__pool_task_limit(const mpb_client_t *c) {
    size_t lim = c->max_value;
    if (lim + 1024 > c->max_frame) lim = c->max_frame > 2048 ? c->max_frame - 1024 : 1024;
    return lim;
}

/* The encoded size of item as a call: [item], or item itself for starmap. */
static size_t call_len(size_t vn, bool star) {
    return star ? vn : vn + 1;
}

/* Sends the in_batch chunks in batch (tasks batch_start on of a's ntasks) in one pool.submit,
 * routes each task's result to a and records the range of task ids they got. oom: the chunk
 * buffer ran out of memory. *job: the job id, 0 until the first submit names one. Returns 0 or
 * a negative MPB_E*. */
static int submit_batch(mpb_pool_t *p, const char *fn, mpb_async_t *a, int kind,
                        const mpb__buf_t *batch, bool oom, uint64_t batch_start, uint32_t in_batch,
                        uint64_t ntasks, uint64_t *job) {
    mpb_client_t *c = p->c;
    uint64_t first;
    int rc = 0;
    if (batch->oom || oom || batch_start + in_batch > ntasks)
        rc = mpb__fail(c, MPB_ENOMEM, "out of memory");
    if (!rc) rc = mpb__pool_submit(p, fn, *job, batch->p, batch->len, in_batch, &first, job);
    for (uint64_t t = 0; !rc && t < in_batch; t++)
        if (mpb__pool_route_add(c, first + t, a, kind, batch_start + t))
            rc = mpb__fail(c, MPB_ENOMEM, "out of memory");
    if (!rc && add_range(a, first, in_batch)) rc = mpb__fail(c, MPB_ENOMEM, "out of memory");
    return rc;
}

/* Splits items into chunks of up to chunksize calls, cut earlier where a chunk would pass the
 * broker's max_value (as Python never fails on a chunksize, neither does this), and submits
 * them, a frame's worth at a time. star: each item is already an argument array; else it
 * becomes [item]. */
static int submit_items(mpb_pool_t *p, const char *fn, const uint8_t *items, size_t len,
                        size_t chunksize, bool star, mpb_async_t **out, int kind) {
    mpb_client_t *c = p->c;
    mpb__rd_t r = {items, items + len};
    uint32_t n;
    if (!items || mpb__mp_check1(items, len, MPB__MAX_DEPTH) != (long)len || mpb__rd_array(&r, &n))
        return mpb__fail(c, MPB_EINVAL, "items must be one msgpack array");
    if (chunksize == 0) { /* as Python: about four chunks per worker process */
        uint64_t cap = mpb__pool_capacity(p, fn, NULL);
        chunksize = cap ? (size_t)(((uint64_t)n + 4 * cap - 1) / (4 * cap)) : 1;
    }
    if (chunksize > n) chunksize = n ? n : 1;
    if (chunksize == 0) chunksize = 1;
    size_t limit = mpb__pool_task_limit(c);
    /* First pass: check the items and count the chunks. */
    mpb__rd_t scan = r;
    uint64_t ntasks = 0;
    size_t k = 0, bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *v;
        size_t vn;
        mpb__rd_span(&scan, &v, &vn);
        if (star) {
            mpb__rd_t t = {v, v + vn};
            uint32_t dummy;
            if (mpb__rd_array(&t, &dummy))
                return mpb__fail(c, MPB_EINVAL, "starmap item %u is not an array of arguments", i);
        }
        size_t cl = call_len(vn, star);
        if (cl + 5 > limit)
            return mpb__fail(c, MPB_ETOOBIG, "item %u of %zu bytes > max_value %zu", i, vn,
                             c->max_value);
        if (k && (k == chunksize || bytes + cl + 5 > limit)) {
            ntasks++;
            k = bytes = 0;
        }
        k++;
        bytes += cl;
    }
    if (k) ntasks++;
    mpb_async_t *a = async_new(p, kind, fn, ntasks);
    if (!a) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    mpb__buf_t batch = {0}, chunk = {0};
    uint64_t job = 0, task_index = 0, batch_start = 0;
    uint32_t in_batch = 0, in_chunk = 0;
    int rc = 0;
    for (uint32_t i = 0; i <= n && !rc; i++) {
        const uint8_t *v = NULL;
        size_t vn = 0;
        if (i < n) mpb__rd_span(&r, &v, &vn);
        size_t cl = call_len(vn, star);
        /* the chunk so far is complete: it goes into the batch, and the batch out when full */
        if (in_chunk && (i == n || in_chunk == chunksize || chunk.len + cl + 5 > limit)) {
            if (in_batch && (batch.len + chunk.len + 5 > c->max_frame / 4 || in_batch == 10000)) {
                rc = submit_batch(p, fn, a, kind, &batch, chunk.oom, batch_start, in_batch, ntasks,
                                  &job);
                task_index += in_batch;
                batch_start = task_index;
                in_batch = 0;
                mpb__buf_reset(&batch);
            }
            mpb__w_array(&batch, in_chunk);
            mpb__w_raw(&batch, chunk.p, chunk.len);
            mpb__buf_reset(&chunk);
            in_chunk = 0;
            in_batch++;
        }
        if (i == n || rc) break;
        if (!star) mpb__w_array(&chunk, 1);
        mpb__w_raw(&chunk, v, vn);
        in_chunk++;
    }
    if (!rc && in_batch)
        rc = submit_batch(p, fn, a, kind, &batch, chunk.oom, batch_start, in_batch, ntasks, &job);
    mpb__buf_free(&batch);
    mpb__buf_free(&chunk);
    if (rc) {
        /* what went out is cancelled; the handle is not given out */
        if (mpb__usable(c) == 0) {
            mpb__pool_cancel_ranges(c, a);
            mpb_flush(c);
        }
        mpb__pool_route_forget(c, a);
        mpb__pool_async_unlink(a);
        mpb__pool_async_destroy(a);
        return rc;
    }
    if (ntasks == 0) mpb__pool_async_finish(a);
    *out = a;
    pthread_mutex_lock(&c->mu);
    mpb__pool_pump_take(c);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* An apply's pool.submit reply: its task id routes its result; a refusal fails it. */
static void on_apply_submit(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    mpb_async_t *a = arg;
    mpb_pool_t *p = a->p;
    a->submitting = false;
    if (p) p->submitting--;
    mpb__rd_t r = {val, (const uint8_t *)val + len};
    uint32_t two;
    uint64_t job, first = 0;
    if (!status &&
        (mpb__rd_array(&r, &two) || two != 2 || mpb__rd_uint(&r, &job) || mpb__rd_uint(&r, &first)))
        status = mpb__fail(c, MPB_EPROTO, "malformed pool.submit reply");
    if (!status && (mpb__pool_route_add(c, first, a, A_APPLY, 0) || add_range(a, first, 1)))
        status = mpb__fail(c, MPB_ENOMEM, "out of memory");
    if (status) {
        mpb__pool_route_forget(c, a);
        a->status = status;
        snprintf(a->msg, sizeof a->msg, "%s", mpb_errmsg(c));
        if (p && a->kept_by_pool && !p->deferred) { /* nobody holds it to hear why */
            p->deferred = status;
            snprintf(p->deferred_msg, sizeof p->deferred_msg, "%s", a->msg);
        }
        if (!a->ready) mpb__pool_async_finish(a);
        return;
    }
    if (a->canceled) { /* terminated while the submit was out */
        mpb__pool_send_cancel(c, first, 1);
        return;
    }
    mpb__pool_pump_take(c);
}

/* Waits until at most `most` applies of p are waiting for their pool.submit reply. */
int mpb__pool_submits_settle(mpb_pool_t *p, size_t most) {
    int rc = 0;
    int64_t end = mpb__now_ms() + p->c->opts.op_timeout_ms;
    while (p->submitting > most && rc >= 0) {
        if (mpb__now_ms() > end)
            return mpb__fail(p->c, MPB_ETIMEDOUT, "no pool.submit reply from the broker");
        rc = mpb_poll(p->c, 100);
    }
    return rc < 0 ? rc : 0;
}

/* apply_async sends its pool.submit without waiting for the reply (up to SUBMIT_WINDOW of them
 * at once), so a caller keeping many in flight pays no round trip for each; the reply routes
 * the result when it comes. */
int mpb_pool_apply_async(mpb_pool_t *p, const char *fn, const void *args, size_t alen,
                         mpb_result_cb cb, mpb_error_cb ecb, void *arg, mpb_async_t **out) {
    if (out) *out = NULL;
    int rc = mpb__pool_check_fn(p, fn);
    if (rc) return rc;
    MPB__POOL_HOLD(p->c);
    mpb__rd_t r = {args, (const uint8_t *)args + alen};
    uint32_t na;
    if (!args || mpb__mp_check1(args, alen, MPB__MAX_DEPTH) != (long)alen || mpb__rd_array(&r, &na))
        return mpb__fail(p->c, MPB_EINVAL, "args must be one msgpack array");
    if (alen + 1 > p->c->max_value)
        return mpb__fail(p->c, MPB_ETOOBIG, "task of %zu bytes > max_value %zu", alen + 1,
                         p->c->max_value);
    if ((rc = mpb__pool_submits_settle(p, SUBMIT_WINDOW - 1))) return rc;
    if (p->deferred) {
        rc = p->deferred;
        p->deferred = 0;
        return mpb__fail(p->c, rc, "%s", p->deferred_msg);
    }
    mpb_async_t *a = async_new(p, A_APPLY, fn, 1);
    if (!a) return mpb__fail(p->c, MPB_ENOMEM, "out of memory");
    a->cb = cb;
    a->ecb = ecb;
    a->arg = arg;
    a->kept_by_pool = !out;
    /* one task of one call: [[args]] */
    mpb__buf_t *b = mpb__req(p->c, MPB_OP_POOL_SUBMIT, NULL, 0, 3);
    mpb__w_cstr(b, fn);
    mpb__w_bool(b, false); /* no job: `mpb pool` does not list it as a map */
    mpb__w_array(b, 1);
    mpb__w_array(b, 1);
    mpb__w_raw(b, args, alen);
    a->submitting = true;
    p->submitting++;
    rc = mpb__send(p->c, on_apply_submit, a);
    if (rc) { /* not sent: no reply will come */
        if (a->submitting) {
            a->submitting = false;
            p->submitting--;
        }
        mpb__pool_async_unlink(a);
        mpb__pool_async_destroy(a);
        return rc;
    }
    if (out) *out = a;
    /* Out now, as Python's apply_async hands its task on at once, even if the caller does
     * not call the pool again for a while; from inside a callback, mpb__pool_run_notify() sends
     * what the callbacks submitted in one frame when they are done. */
    rc = p->notifying ? 0 : mpb_flush(p->c);
    mpb__pool_run_notify(p);
    return rc;
}

static int map_async(mpb_pool_t *p, const char *fn, const void *items, size_t len, size_t chunksize,
                     bool star, mpb_result_cb cb, mpb_error_cb ecb, void *arg, mpb_async_t **out) {
    if (out) *out = NULL;
    int rc = mpb__pool_check_fn(p, fn);
    if (rc) return rc;
    MPB__POOL_HOLD(p->c);
    mpb_async_t *a = NULL;
    rc = submit_items(p, fn, items, len, chunksize, star, &a, A_MAP);
    if (rc) return rc;
    a->cb = cb;
    a->ecb = ecb;
    a->arg = arg;
    if (out)
        *out = a;
    else
        a->kept_by_pool = true;
    mpb__pool_run_notify(p); /* an empty map is done at once */
    return 0;
}

int mpb_pool_map_async(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                       size_t chunksize, mpb_result_cb cb, mpb_error_cb ecb, void *arg,
                       mpb_async_t **out) {
    return map_async(p, fn, items, len, chunksize, false, cb, ecb, arg, out);
}

int mpb_pool_starmap_async(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                           size_t chunksize, mpb_result_cb cb, mpb_error_cb ecb, void *arg,
                           mpb_async_t **out) {
    return map_async(p, fn, items, len, chunksize, true, cb, ecb, arg, out);
}

/* Waits for a, gives out its result, frees it. */
static int finish_sync(mpb_async_t *a, int timeout_ms, void **result, size_t *rlen) {
    int rc = mpb_async_get(a, timeout_ms, result, rlen);
    mpb_async_free(&a);
    return rc;
}

int mpb_pool_apply(mpb_pool_t *p, const char *fn, const void *args, size_t alen, int timeout_ms,
                   void **result, size_t *rlen) {
    mpb_async_t *a = NULL;
    int rc = mpb_pool_apply_async(p, fn, args, alen, NULL, NULL, NULL, &a);
    return rc ? rc : finish_sync(a, timeout_ms, result, rlen);
}

int mpb_pool_map(mpb_pool_t *p, const char *fn, const void *items, size_t len, size_t chunksize,
                 int timeout_ms, void **results, size_t *rlen) {
    mpb_async_t *a = NULL;
    int rc = mpb_pool_map_async(p, fn, items, len, chunksize, NULL, NULL, NULL, &a);
    return rc ? rc : finish_sync(a, timeout_ms, results, rlen);
}

int mpb_pool_starmap(mpb_pool_t *p, const char *fn, const void *items, size_t len, size_t chunksize,
                     int timeout_ms, void **results, size_t *rlen) {
    mpb_async_t *a = NULL;
    int rc = mpb_pool_starmap_async(p, fn, items, len, chunksize, NULL, NULL, NULL, &a);
    return rc ? rc : finish_sync(a, timeout_ms, results, rlen);
}
