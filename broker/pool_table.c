/* pool_table.c - the Pool's structures: the task id table, the function name table with its
 * list of unused entries, callers' sessions, sub-queues and the functions' rings, owners' and
 * workers' task lists, jobs; freeing all of it; and what persistence saves and brings back.
 * The scheduling over them is pool.c. */
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"

size_t pool_max_queued(void) {
    return g_limits.pool_max_queued ? g_limits.pool_max_queued : (size_t)256 << 20;
}

/* ---- the task table (id -> task) ---- */

void pool_tab_add(task_t *t) {
    HASH_ADD(hh, g_pool.tab, id, sizeof t->id, t);
    g_pool.ntasks++;
}

task_t *pool_tab_get(uint64_t id) {
    task_t *t;
    HASH_FIND(hh, g_pool.tab, &id, sizeof id, t);
    return t;
}

static void tab_del(task_t *t) {
    HASH_DEL(g_pool.tab, t);
    g_pool.ntasks--;
}

/* ---- functions: a name table, and the unused ones on an LRU list ---- */

static void idle_del(pfn_t *f) {
    if (!f->idle) return;
    TAILQ_REMOVE(&g_pool.idle, f, ilink);
    f->idle = false;
    g_pool.nidle--;
}

static void fn_destroy(pfn_t *f) {
    idle_del(f);
    HASH_DEL(g_pool.fntab, f);
    LIST_REMOVE(f, link);
    g_pool.nfns_all--;
    free(f->name);
    free(f);
}

void pool_fn_ref(pfn_t *f) {
    if (f->refs++ == 0) idle_del(f);
}

void pool_fn_unref(pfn_t *f) {
    if (--f->refs) return;
    f->idle = true;
    TAILQ_INSERT_TAIL(&g_pool.idle, f, ilink);
    g_pool.nidle++;
    while (g_pool.nidle > IDLE_FNS_MAX)
        fn_destroy(TAILQ_FIRST(&g_pool.idle));
}

/* The entry of a function; a new one (unused, so on the idle list until referenced) if asked. */
pfn_t *pool_fn_get(const char *name, size_t n, bool create) {
    pfn_t *f;
    HASH_FIND(hh, g_pool.fntab, name, n, f);
    if (f || !create) return f;
    f = xcalloc(1, sizeof *f);
    f->name = xstrndup(name, n);
    f->namelen = (uint32_t)n;
    TAILQ_INIT(&f->ring);
    HASH_ADD_KEYPTR(hh, g_pool.fntab, f->name, f->namelen, f);
    LIST_INSERT_HEAD(&g_pool.fns, f, link);
    g_pool.nfns_all++;
    return f; /* not idle: the caller references it at once */
}

/* ---- callers' sessions ---- */

pool_sess_t *pool_ps(sess_t *s) {
    if (!s->pool) {
        pool_sess_t *ps = xcalloc(1, sizeof *ps);
        ps->sess = s;
        TAILQ_INIT(&ps->run);
        TAILQ_INIT(&ps->done);
        wlist_init(&ps->takers);
        LIST_INSERT_HEAD(&g_pool.sesses, ps, link);
        s->pool = ps;
    }
    return s->pool;
}

/* ---- sub-queues and the functions' rings ---- */

/* A sub-queue that joins takes its turn last. One that leaves while its turn is next hands
 * it to the one after. */
static void ring_add(oq_t *q) {
    if (q->in_ring) return;
    TAILQ_INSERT_TAIL(&q->fn->ring, q, rlink);
    q->in_ring = true;
}

static void ring_del(oq_t *q) {
    if (!q->in_ring) return;
    TAILQ_REMOVE(&q->fn->ring, q, rlink);
    q->in_ring = false;
}

void pool_ring_turn(oq_t *q) {
    TAILQ_REMOVE(&q->fn->ring, q, rlink);
    TAILQ_INSERT_TAIL(&q->fn->ring, q, rlink);
}

static oq_t *oq_get(pool_sess_t *ps, pfn_t *f) {
    oq_t *q;
    LIST_FOREACH(q, &ps->oqs, olink)
    if (q->fn == f) return q;
    q = xcalloc(1, sizeof *q);
    q->fn = f;
    TAILQ_INIT(&q->tasks);
    q->ps = ps;
    LIST_INSERT_HEAD(&ps->oqs, q, olink);
    return q;
}

static void oq_free(oq_t *q) {
    ring_del(q);
    LIST_REMOVE(q, olink);
    free(q);
}

/* Queues t (owned by a live caller) in its caller's sub-queue of its function. */
void pool_q_push(task_t *t, bool front) {
    pool_sess_t *ps = t->owner->pool;
    oq_t *q = oq_get(ps, t->fn);
    t->oq = q;
    if (front)
        TAILQ_INSERT_HEAD(&q->tasks, t, qlink);
    else
        TAILQ_INSERT_TAIL(&q->tasks, t, qlink);
    q->n++;
    ps->nqueued++;
    t->fn->queued++;
    if (ps->paused)
        t->fn->paused++;
    else
        ring_add(q);
}

void pool_q_del(task_t *t) {
    oq_t *q = t->oq;
    TAILQ_REMOVE(&q->tasks, t, qlink);
    t->oq = NULL;
    q->n--;
    q->ps->nqueued--;
    t->fn->queued--;
    if (q->ps->paused) t->fn->paused--;
    if (!q->n) oq_free(q);
}

/* A caller over its result bound waits: its sub-queues leave the rings until it collects. */
void pool_ps_check_pause(pool_sess_t *ps) {
    bool over = ps->held_bytes > g_limits.pool_max_results;
    if (over == ps->paused) return;
    ps->paused = over;
    oq_t *q;
    LIST_FOREACH(q, &ps->oqs, olink) {
        if (over) {
            ring_del(q);
            q->fn->paused += q->n;
        } else {
            ring_add(q);
            q->fn->paused -= q->n;
        }
    }
}

/* ---- owners' running and done lists ---- */

void pool_run_link(pool_sess_t *ps, task_t *t) {
    TAILQ_INSERT_HEAD(&ps->run, t, qlink);
    ps->nrunning++;
}

void pool_run_unlink(pool_sess_t *ps, task_t *t) {
    TAILQ_REMOVE(&ps->run, t, qlink);
    ps->nrunning--;
}

static size_t held_cost(const task_t *t) {
    return sizeof *t + (t->result ? t->result->len : 0) + (t->output ? t->output->len : 0);
}

void pool_done_push(pool_sess_t *ps, task_t *t) {
    TAILQ_INSERT_TAIL(&ps->done, t, qlink);
    ps->ndone++;
    ps->held_bytes += held_cost(t);
}

void pool_done_del(pool_sess_t *ps, task_t *t) {
    TAILQ_REMOVE(&ps->done, t, qlink);
    ps->ndone--;
    ps->held_bytes -= held_cost(t);
}

/* ---- workers' assigned lists ---- */

void pool_assign(worker_t *w, task_t *t, bool started) {
    t->worker = w;
    t->started = started;
    t->timed = started && w->committed < w->concurrency;
    t->start_us = now_us();
    if (started)
        w->committed++;
    else
        g_pool.ntentative++;
    TAILQ_INSERT_TAIL(&w->assigned, t, wlink);
    w->inflight++;
    t->fn->assigned++;
}

void pool_unassign(task_t *t) {
    worker_t *w = t->worker;
    if (!w) return;
    TAILQ_REMOVE(&w->assigned, t, wlink);
    t->worker = NULL;
    if (t->started)
        w->committed--;
    else
        g_pool.ntentative--;
    t->started = t->timed = false;
    w->inflight--;
    t->fn->assigned--;
}

void pool_fetch_add(worker_t *w, waiter_t *fetch) {
    w->fetch = fetch;
    w->fetching = true;
    TAILQ_INSERT_TAIL(&g_pool.fetchers, w, flink);
}

void pool_fetch_del(worker_t *w) {
    if (!w->fetching) return;
    TAILQ_REMOVE(&g_pool.fetchers, w, flink);
    w->fetching = false;
    w->fetch = NULL;
}

/* ---- jobs ---- */

void pool_job_free(job_t *j) {
    LIST_REMOVE(j, link);
    if (j->owner && j->owner->pool) LIST_REMOVE(j, olink);
    pool_fn_unref(j->fn);
    free(j);
}

/* A task leaves its job's count when it is taken, cancelled or abandoned. */
void pool_job_release(task_t *t) {
    job_t *j = t->job;
    t->job = NULL;
    if (j && --j->outstanding == 0 && j->done + j->failed + j->canceled >= j->total)
        pool_job_free(j);
}

/* This session's job id, moved to the front (a map's batches come one after another). */
job_t *pool_job_find(pool_sess_t *ps, uint64_t id) {
    job_t *j;
    LIST_FOREACH(j, &ps->jobs, olink) {
        if (j->id != id) continue;
        if (j != LIST_FIRST(&ps->jobs)) {
            LIST_REMOVE(j, olink);
            LIST_INSERT_HEAD(&ps->jobs, j, olink);
        }
        return j;
    }
    return NULL;
}

job_t *pool_job_new(pool_sess_t *ps, uint64_t id, pfn_t *f) {
    job_t *j = xcalloc(1, sizeof *j);
    j->id = id;
    j->owner = ps->sess;
    j->fn = f;
    pool_fn_ref(f);
    j->started_ms = now_ms();
    LIST_INSERT_HEAD(&g_pool.jobs, j, link);
    LIST_INSERT_HEAD(&ps->jobs, j, olink);
    return j;
}

/* ---- tasks ---- */

void pool_task_free(task_t *t) {
    tab_del(t);
    pool_fn_unref(t->fn);
    free(t->calls);
    free(t->result);
    free(t->output);
    free(t);
}

void pool_free_all(void) {
    task_t *t, *tnx;
    HASH_ITER(hh, g_pool.tab, t, tnx) {
        HASH_DEL(g_pool.tab, t);
        free(t->calls);
        free(t->result);
        free(t);
    }
    g_pool.ntasks = 0;
    while (!LIST_EMPTY(&g_pool.workers)) {
        worker_t *w = LIST_FIRST(&g_pool.workers);
        LIST_REMOVE(w, link);
        mpb__buf_free(&w->plan);
        mpb__buf_free(&w->kills);
        free(w->fns);
        free(w);
    }
    TAILQ_INIT(&g_pool.fetchers);
    while (!LIST_EMPTY(&g_pool.jobs)) {
        job_t *j = LIST_FIRST(&g_pool.jobs);
        LIST_REMOVE(j, link);
        free(j);
    }
    while (!LIST_EMPTY(&g_pool.sesses)) { /* none: every session ended before this */
        pool_sess_t *ps = LIST_FIRST(&g_pool.sesses);
        LIST_REMOVE(ps, link);
        while (!LIST_EMPTY(&ps->oqs)) {
            oq_t *q = LIST_FIRST(&ps->oqs);
            LIST_REMOVE(q, olink);
            free(q);
        }
        free(ps);
    }
    HASH_CLEAR(hh, g_pool.fntab);
    while (!LIST_EMPTY(&g_pool.fns)) {
        pfn_t *f = LIST_FIRST(&g_pool.fns);
        LIST_REMOVE(f, link);
        free(f->name);
        free(f);
    }
    g_pool.nfns_all = g_pool.nidle = 0;
    TAILQ_INIT(&g_pool.idle);
}

/* ---- persistence (persist.c) ----
 *
 * The log brings tasks back by running pool.submit again (ids follow from next_task) and
 * then the outcome of each finished one (pool_restore_finish); a snapshot lists the tasks
 * themselves (pool_each_task, pool_restore_task). Workers are not brought back: tasks that
 * were at a worker come back queued, and run again. */

static int cmp_task_id(const void *a, const void *b) {
    uint64_t x = (*(task_t *const *)a)->id, y = (*(task_t *const *)b)->id;
    return x < y ? -1 : x > y;
}

void pool_each_task(pool_task_fn fn, void *ctx) {
    task_t **v = xmalloc((g_pool.ntasks ? g_pool.ntasks : 1) * sizeof *v);
    size_t n = 0;
    for (task_t *t = g_pool.tab; t; t = t->hh.next)
        if (t->owner && n < g_pool.ntasks) v[n++] = t;
    qsort(v, n, sizeof *v, cmp_task_id);
    for (size_t i = 0; i < n; i++) {
        const task_t *t = v[i];
        fn(ctx, t->id, t->owner, t->fn->name, t->fn->namelen, t->calls, t->state == T_DONE,
           t->failed, t->canceled, t->result);
    }
    free(v);
}

void pool_counters(uint64_t *task, uint64_t *job) {
    *task = g_pool.next_task;
    *job = g_pool.next_job;
}

void pool_set_counters(uint64_t task, uint64_t job) {
    if (task > g_pool.next_task) g_pool.next_task = task;
    if (job > g_pool.next_job) g_pool.next_job = job;
}

int pool_restore_task(uint64_t id, sess_t *owner, const char *fname, uint32_t fl,
                      const uint8_t *calls, size_t n, bool done, bool failed, bool canceled,
                      const uint8_t *result, size_t rn) {
    mpb__rd_t r = {calls, calls + n};
    uint32_t ncalls;
    if (!owner || id == 0 || pool_tab_get(id) || !mpb__name_ok(fname, fl) ||
        mpb__rd_array(&r, &ncalls) || ncalls == 0 || (done && !result))
        return -1;
    pool_sess_t *ps = pool_ps(owner);
    task_t *t = xcalloc(1, sizeof *t);
    t->id = id;
    t->fn = pool_fn_get(fname, fl, true);
    pool_fn_ref(t->fn);
    t->owner = owner;
    t->calls = blob_new(calls, n);
    t->ncalls = ncalls;
    t->cost = sizeof(task_t) + sizeof(blob_t) + n;
    pool_tab_add(t);
    if (id >= g_pool.next_task) g_pool.next_task = id + 1;
    if (done) {
        t->state = T_DONE;
        t->failed = failed;
        t->canceled = canceled;
        t->result = blob_new(result, rn);
        pool_done_push(ps, t);
        pool_ps_check_pause(ps);
    } else {
        t->state = T_QUEUED;
        ps->queued_bytes += t->cost;
        pool_q_push(t, false);
    }
    return 0;
}

void pool_restore_finish(uint64_t id, bool failed, bool canceled, const uint8_t *result,
                         size_t rn) {
    task_t *t = pool_tab_get(id);
    if (!t || t->state != T_QUEUED) return; /* its caller has gone, or a cancel finished it */
    pool_unqueue(t);
    free(t->result);
    t->result = result ? blob_new(result, rn) : NULL;
    t->failed = failed;
    t->canceled = canceled;
    pool_finish(t);
}
