/* pool.c - the remote Pool's dispatcher. Callers submit tasks (a task is a chunk: one or more
 * calls of one function); workers register the functions they serve and pull tasks with a
 * parked pool.fetch, never holding more than their concurrency plus prefetch. Results wait in
 * the broker until their caller takes them.
 *
 *   fn "square":  ring of callers' sub-queues, one turn each:  ─> [s3: t7 t8] ─> [s5: t9] ─┐
 *                                                              └────────────────────────────┘
 *   caller s4:    over its result bound: its sub-queues are out of the ring until it collects
 *   worker w1:    assigned [t5 t6] (oldest first: the first `concurrency` run, the rest are
 *                 prefetched)  ─ dies ─> t5 t6 back to the front of their sub-queues
 *   caller s3:    done-not-taken [t4 t5]  <── pool.take (parked until one is done)
 *
 * Every task is also on a list of its owner (its sub-queue, its running list or its done list)
 * and in the id table, so a session's end, a cancel and a take cost what the session owns, not
 * what the broker holds. A caller's session that ends takes its tasks with it: queued ones are
 * dropped, running ones are forgotten when they finish (or stopped, at a worker that runs
 * tasks in processes). A task whose workers (or processes) died pool_max_attempts times fails.
 *
 * Placement: free slots first, then prefetch; a task beyond a worker's free slots is tentative
 * (unless its function streams) and an idle slot elsewhere may steal it; the worker asks
 * (pool.start, naming the attempt number) before it starts one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "broker.h"
#include "persist.h"

enum { T_QUEUED, T_RUNNING, T_DONE };

/* Function entries nobody uses (no worker, no task, no job) kept for their counters; beyond
 * this many the least recently used go, so made-up names cannot grow the broker. */
#define IDLE_FNS_MAX 64
/* Room left in a reply frame for its header, rid, MAC and array headers. */
#define FRAME_SLACK 1024

typedef struct pfn pfn_t;
typedef struct worker worker_t;
typedef struct job job_t;
typedef struct oq oq_t;
typedef struct pool_sess pool_sess_t;

typedef struct task {
    uint64_t id;
    pfn_t *fn;
    job_t *job;
    sess_t *owner; /* NULL: its caller is gone; the result will be dropped */
    oq_t *oq;      /* queued: the sub-queue it is in */
    blob_t *calls; /* msgpack array of argument arrays */
    uint32_t ncalls;
    int state;
    int attempts;
    uint32_t gen;  /* times dispatched: the attempt number a worker names in pool.start */
    bool started;  /* its worker may run it: sent to a free slot, streamed or granted */
    bool timed;    /* started into a free slot: its time to done measures its function */
    bool retry;    /* queued again after its worker died */
    int64_t start_us;
    bool failed; /* some call raised */
    bool canceled;
    worker_t *worker;
    blob_t *result; /* msgpack array of [ok, value-or-message] per call */
    blob_t *output; /* --forward-output: [[stream, bytes], ...] it wrote, or NULL */
    size_t cost;    /* what it counts against its owner's bound while unfinished */
    struct task *qnext, *qprev; /* sub-queue, owner's running list, or owner's done list */
    struct task *wnext, *wprev; /* worker's assigned list */
    struct task *hnext;         /* id table chain */
} task_t;

/* One caller's queued tasks of one function. Exists while it holds a task. */
struct oq {
    pfn_t *fn;
    pool_sess_t *ps;
    task_t *head, *tail;
    uint64_t n;
    oq_t *rnext, *rprev; /* the function's ring, while dispatchable */
    oq_t *onext, *oprev; /* its caller's sub-queues */
    bool in_ring;
};

struct pfn {
    char *name;
    uint32_t namelen;
    oq_t *ring; /* the sub-queue whose turn is next */
    uint64_t queued, paused, assigned;
    uint64_t done, failed, canceled;
    int64_t avg_us;   /* moving average of a task's time from start to done */
    uint32_t samples;
    size_t nworkers;
    size_t refs;                /* workers, tasks and jobs that name it */
    uint64_t st_run, st_pre;    /* scratch for pool.stats and metrics */
    pfn_t *hnext;               /* name table chain */
    pfn_t *next, *prev;         /* all functions, newest first */
    pfn_t *inext, *iprev;       /* unused ones, oldest first */
    bool idle;
};

struct worker {
    sess_t *sess;
    pfn_t **fns;
    size_t nfns;
    int64_t concurrency, prefetch;
    int64_t inflight;
    int64_t committed; /* assigned and started: the slots it is using as the broker sees it */
    uint64_t done, failed;
    uint64_t steals, stolen, retries, refused; /* for pool.stats */
    mpb__buf_t plan; /* tasks picked for its parked fetch in this round of dispatch */
    uint32_t nplan;
    bool killable;   /* runs each task in a process of its own: it can stop a running one */
    mpb__buf_t kills; /* [task_id, attempt] of tasks to stop, for its next fetch reply */
    uint32_t nkills;
    size_t plan_bytes;
    waiter_t *fetch; /* its parked pool.fetch, if any */
    int64_t fetch_max;
    task_t *ahead, *atail; /* assigned to it, oldest first */
    int64_t since_ms;
    worker_t *next, *prev;   /* all workers */
    worker_t *fnext, *fprev; /* workers with a parked fetch, oldest first */
    bool fetching;
};

struct job {
    uint64_t id;
    sess_t *owner;
    pfn_t *fn;
    uint64_t total, done, failed, canceled, outstanding; /* outstanding: not yet taken */
    int64_t started_ms;
    job_t *next, *prev;   /* all jobs */
    job_t *onext, *oprev; /* its owner's */
};

struct pool_sess {
    sess_t *sess;
    worker_t *worker;
    oq_t *oqs;                     /* its queued tasks, by function */
    task_t *run_head;              /* its tasks at workers */
    task_t *done_head, *done_tail; /* finished, not yet taken */
    job_t *jobs;                   /* its jobs, most recently used first */
    uint64_t nqueued, nrunning, ndone;
    size_t queued_bytes; /* input of its unfinished tasks (and their records) */
    size_t held_bytes;   /* results not taken (and their records) */
    bool paused;         /* held_bytes over the bound: its tasks wait */
    wlist_t takers;
    pool_sess_t *next, *prev; /* all of them */
};

static pfn_t *fns, *idle_head, *idle_tail;
static size_t nidle;
static pfn_t **fntab;
static size_t fntabcap, nfns_all;
static worker_t *workers, *fetch_head, *fetch_tail;
static job_t *jobs;
static pool_sess_t *sesses;
static task_t **tab;
static size_t tabcap, ntasks;
static uint64_t next_task = 1, next_job = 1;
static uint64_t total_requeued, total_abandoned;
static uint64_t total_steals, total_refusals, total_killed;
static uint64_t ntentative; /* assigned, not started: what an idle slot may steal */
static wlist_t fetch_waiters; /* parked pool.fetch requests; order kept by fetch_head */

static size_t max_queued(void) {
    return g_limits.pool_max_queued ? g_limits.pool_max_queued : (size_t)256 << 20;
}

/* ---- the task table (id -> task) ---- */

static size_t slot(uint64_t id) {
    return (size_t)(id * 0x9e3779b97f4a7c15ULL >> 20) & (tabcap - 1);
}

static void tab_add(task_t *t) {
    if (ntasks + 1 > tabcap) {
        size_t ncap = tabcap ? tabcap * 2 : 1024;
        task_t **nt = xcalloc(ncap, sizeof *nt);
        size_t ocap = tabcap;
        task_t **old = tab;
        tab = nt;
        tabcap = ncap;
        for (size_t i = 0; i < ocap; i++)
            for (task_t *x = old[i], *nx; x; x = nx) {
                nx = x->hnext;
                x->hnext = tab[slot(x->id)];
                tab[slot(x->id)] = x;
            }
        free(old);
    }
    t->hnext = tab[slot(t->id)];
    tab[slot(t->id)] = t;
    ntasks++;
}

static task_t *tab_get(uint64_t id) {
    if (!tabcap) return NULL;
    for (task_t *t = tab[slot(id)]; t; t = t->hnext)
        if (t->id == id) return t;
    return NULL;
}

static void tab_del(task_t *t) {
    task_t **pp = &tab[slot(t->id)];
    while (*pp && *pp != t) pp = &(*pp)->hnext;
    if (*pp) *pp = t->hnext;
    ntasks--;
}

/* ---- functions: a name table, and the unused ones on an LRU list ---- */

/* Names come from clients: keyed, so nobody can pick names that share a chain. */
static uint64_t name_hash(const char *s, size_t n) {
    return mpb__hash(s, n);
}

static void fntab_grow(void) {
    size_t ncap = fntabcap ? fntabcap * 2 : 64;
    pfn_t **nt = xcalloc(ncap, sizeof *nt);
    for (size_t i = 0; i < fntabcap; i++)
        for (pfn_t *f = fntab[i], *nx; f; f = nx) {
            nx = f->hnext;
            size_t k = name_hash(f->name, f->namelen) & (ncap - 1);
            f->hnext = nt[k];
            nt[k] = f;
        }
    free(fntab);
    fntab = nt;
    fntabcap = ncap;
}

static void idle_del(pfn_t *f) {
    if (!f->idle) return;
    if (f->iprev) f->iprev->inext = f->inext;
    else idle_head = f->inext;
    if (f->inext) f->inext->iprev = f->iprev;
    else idle_tail = f->iprev;
    f->inext = f->iprev = NULL;
    f->idle = false;
    nidle--;
}

static void fn_destroy(pfn_t *f) {
    idle_del(f);
    pfn_t **pp = &fntab[name_hash(f->name, f->namelen) & (fntabcap - 1)];
    while (*pp && *pp != f) pp = &(*pp)->hnext;
    if (*pp) *pp = f->hnext;
    if (f->prev) f->prev->next = f->next;
    else fns = f->next;
    if (f->next) f->next->prev = f->prev;
    nfns_all--;
    free(f->name);
    free(f);
}

static void fn_ref(pfn_t *f) {
    if (f->refs++ == 0) idle_del(f);
}

static void fn_unref(pfn_t *f) {
    if (--f->refs) return;
    f->idle = true;
    f->iprev = idle_tail;
    f->inext = NULL;
    if (idle_tail) idle_tail->inext = f;
    else idle_head = f;
    idle_tail = f;
    nidle++;
    while (nidle > IDLE_FNS_MAX) fn_destroy(idle_head);
}

/* The entry of a function; a new one (unused, so on the idle list until referenced) if asked. */
static pfn_t *fn_get(const char *name, size_t n, bool create) {
    if (fntabcap)
        for (pfn_t *f = fntab[name_hash(name, n) & (fntabcap - 1)]; f; f = f->hnext)
            if (f->namelen == n && !memcmp(f->name, name, n)) return f;
    if (!create) return NULL;
    if (nfns_all + 1 > fntabcap) fntab_grow();
    pfn_t *f = xcalloc(1, sizeof *f);
    f->name = xstrndup(name, n);
    f->namelen = (uint32_t)n;
    size_t k = name_hash(name, n) & (fntabcap - 1);
    f->hnext = fntab[k];
    fntab[k] = f;
    f->next = fns;
    if (fns) fns->prev = f;
    fns = f;
    nfns_all++;
    return f; /* not idle: the caller references it at once */
}

/* ---- callers' sessions ---- */

static pool_sess_t *PS(sess_t *s) {
    if (!s->pool) {
        pool_sess_t *ps = xcalloc(1, sizeof *ps);
        ps->sess = s;
        ps->next = sesses;
        if (sesses) sesses->prev = ps;
        sesses = ps;
        s->pool = ps;
    }
    return s->pool;
}

/* ---- sub-queues and the functions' rings ---- */

static void ring_add(oq_t *q) {
    if (q->in_ring) return;
    pfn_t *f = q->fn;
    if (!f->ring) {
        q->rnext = q->rprev = q;
        f->ring = q;
    } else { /* last in turn: just before the one whose turn is next */
        q->rnext = f->ring;
        q->rprev = f->ring->rprev;
        q->rprev->rnext = q;
        f->ring->rprev = q;
    }
    q->in_ring = true;
}

static void ring_del(oq_t *q) {
    if (!q->in_ring) return;
    pfn_t *f = q->fn;
    if (q->rnext == q) {
        f->ring = NULL;
    } else {
        q->rprev->rnext = q->rnext;
        q->rnext->rprev = q->rprev;
        if (f->ring == q) f->ring = q->rnext;
    }
    q->rnext = q->rprev = NULL;
    q->in_ring = false;
}

static oq_t *oq_get(pool_sess_t *ps, pfn_t *f) {
    for (oq_t *q = ps->oqs; q; q = q->onext)
        if (q->fn == f) return q;
    oq_t *q = xcalloc(1, sizeof *q);
    q->fn = f;
    q->ps = ps;
    q->onext = ps->oqs;
    if (ps->oqs) ps->oqs->oprev = q;
    ps->oqs = q;
    return q;
}

static void oq_free(oq_t *q) {
    ring_del(q);
    pool_sess_t *ps = q->ps;
    if (q->oprev) q->oprev->onext = q->onext;
    else ps->oqs = q->onext;
    if (q->onext) q->onext->oprev = q->oprev;
    free(q);
}

/* Queues t (owned by a live caller) in its caller's sub-queue of its function. */
static void q_push(task_t *t, bool front) {
    pool_sess_t *ps = t->owner->pool;
    oq_t *q = oq_get(ps, t->fn);
    t->oq = q;
    t->qprev = t->qnext = NULL;
    if (front) {
        t->qnext = q->head;
        if (q->head) q->head->qprev = t;
        else q->tail = t;
        q->head = t;
    } else {
        t->qprev = q->tail;
        if (q->tail) q->tail->qnext = t;
        else q->head = t;
        q->tail = t;
    }
    q->n++;
    ps->nqueued++;
    t->fn->queued++;
    if (ps->paused) t->fn->paused++;
    else ring_add(q);
}

static void q_del(task_t *t) {
    oq_t *q = t->oq;
    if (t->qprev) t->qprev->qnext = t->qnext;
    else q->head = t->qnext;
    if (t->qnext) t->qnext->qprev = t->qprev;
    else q->tail = t->qprev;
    t->qnext = t->qprev = NULL;
    t->oq = NULL;
    q->n--;
    q->ps->nqueued--;
    t->fn->queued--;
    if (q->ps->paused) t->fn->paused--;
    if (!q->n) oq_free(q);
}

/* A caller over its result bound waits: its sub-queues leave the rings until it collects. */
static void ps_check_pause(pool_sess_t *ps) {
    bool over = ps->held_bytes > g_limits.pool_max_results;
    if (over == ps->paused) return;
    ps->paused = over;
    for (oq_t *q = ps->oqs; q; q = q->onext) {
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

static void run_link(pool_sess_t *ps, task_t *t) {
    t->qprev = NULL;
    t->qnext = ps->run_head;
    if (ps->run_head) ps->run_head->qprev = t;
    ps->run_head = t;
    ps->nrunning++;
}

static void run_unlink(pool_sess_t *ps, task_t *t) {
    if (t->qprev) t->qprev->qnext = t->qnext;
    else ps->run_head = t->qnext;
    if (t->qnext) t->qnext->qprev = t->qprev;
    t->qnext = t->qprev = NULL;
    ps->nrunning--;
}

static size_t held_cost(const task_t *t) {
    return sizeof *t + (t->result ? t->result->len : 0) + (t->output ? t->output->len : 0);
}

static void done_push(pool_sess_t *ps, task_t *t) {
    t->qprev = ps->done_tail;
    t->qnext = NULL;
    if (ps->done_tail) ps->done_tail->qnext = t;
    else ps->done_head = t;
    ps->done_tail = t;
    ps->ndone++;
    ps->held_bytes += held_cost(t);
}

static void done_del(pool_sess_t *ps, task_t *t) {
    if (t->qprev) t->qprev->qnext = t->qnext;
    else ps->done_head = t->qnext;
    if (t->qnext) t->qnext->qprev = t->qprev;
    else ps->done_tail = t->qprev;
    t->qnext = t->qprev = NULL;
    ps->ndone--;
    ps->held_bytes -= held_cost(t);
}

/* ---- workers' assigned lists ---- */

static void assign(worker_t *w, task_t *t, bool started) {
    t->worker = w;
    t->started = started;
    t->timed = started && w->committed < w->concurrency;
    t->start_us = now_us();
    if (started) w->committed++;
    else ntentative++;
    t->wnext = NULL;
    t->wprev = w->atail;
    if (w->atail) w->atail->wnext = t;
    else w->ahead = t;
    w->atail = t;
    w->inflight++;
    t->fn->assigned++;
}

static void unassign(task_t *t) {
    worker_t *w = t->worker;
    if (!w) return;
    if (t->wprev) t->wprev->wnext = t->wnext;
    else w->ahead = t->wnext;
    if (t->wnext) t->wnext->wprev = t->wprev;
    else w->atail = t->wprev;
    t->wnext = t->wprev = NULL;
    t->worker = NULL;
    if (t->started) w->committed--;
    else ntentative--;
    t->started = t->timed = false;
    w->inflight--;
    t->fn->assigned--;
}

static void fetch_del(worker_t *w) {
    if (!w->fetching) return;
    if (w->fprev) w->fprev->fnext = w->fnext;
    else fetch_head = w->fnext;
    if (w->fnext) w->fnext->fprev = w->fprev;
    else fetch_tail = w->fprev;
    w->fnext = w->fprev = NULL;
    w->fetching = false;
    w->fetch = NULL;
}

/* ---- jobs ---- */

static void job_free(job_t *j) {
    if (j->prev) j->prev->next = j->next;
    else jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    pool_sess_t *ps = j->owner ? j->owner->pool : NULL;
    if (ps) {
        if (j->oprev) j->oprev->onext = j->onext;
        else ps->jobs = j->onext;
        if (j->onext) j->onext->oprev = j->oprev;
    }
    fn_unref(j->fn);
    free(j);
}

/* A task leaves its job's count when it is taken, cancelled or abandoned. */
static void job_release(task_t *t) {
    job_t *j = t->job;
    t->job = NULL;
    if (j && --j->outstanding == 0 && j->done + j->failed + j->canceled >= j->total) job_free(j);
}

/* This session's job id, moved to the front (a map's batches come one after another). */
static job_t *job_find(pool_sess_t *ps, uint64_t id) {
    for (job_t *j = ps->jobs; j; j = j->onext) {
        if (j->id != id) continue;
        if (j != ps->jobs) {
            j->oprev->onext = j->onext;
            if (j->onext) j->onext->oprev = j->oprev;
            j->oprev = NULL;
            j->onext = ps->jobs;
            ps->jobs->oprev = j;
            ps->jobs = j;
        }
        return j;
    }
    return NULL;
}

static job_t *job_new(pool_sess_t *ps, uint64_t id, pfn_t *f) {
    job_t *j = xcalloc(1, sizeof *j);
    j->id = id;
    j->owner = ps->sess;
    j->fn = f;
    fn_ref(f);
    j->started_ms = now_ms();
    j->next = jobs;
    if (jobs) jobs->prev = j;
    jobs = j;
    j->onext = ps->jobs;
    if (ps->jobs) ps->jobs->oprev = j;
    ps->jobs = j;
    return j;
}

/* ---- tasks ---- */

static void task_free(task_t *t) {
    tab_del(t);
    fn_unref(t->fn);
    free(t->calls);
    free(t->result);
    free(t->output);
    free(t);
}

/* ---- results ---- */

/* Writes [task_id, outcomes] for finished tasks of ps in [from, from + count), up to a frame's
 * worth (always at least one), removing them; returns how many. */
static uint32_t take_ready(pool_sess_t *ps, uint64_t from, uint64_t count, mpb__buf_t *items) {
    uint32_t n = 0;
    size_t bytes = 0, room = g_limits.max_frame - FRAME_SLACK;
    for (task_t *t = ps->done_head, *nx; t; t = nx) {
        nx = t->qnext;
        if (t->id < from || t->id - from >= count) continue;
        size_t len = (t->result ? t->result->len : 1) + (t->output ? t->output->len : 0) + 16;
        if (n && bytes + len > room) break;
        mpb__w_array(items, t->output ? 3 : 2);
        mpb__w_uint(items, t->id);
        if (t->result) mpb__w_raw(items, t->result->data, t->result->len);
        else mpb__w_array(items, 0);
        if (t->output) mpb__w_raw(items, t->output->data, t->output->len);
        bytes += len;
        done_del(ps, t);
        job_release(t);
        task_free(t);
        n++;
    }
    ps_check_pause(ps);
    return n;
}

static void answer_take(waiter_t *w, pool_sess_t *ps) {
    mpb__buf_t items = {0};
    /* logged as the take it is, made now without waiting */
    mpb__w_uint(&items, w->tid);
    mpb__w_uint(&items, (uint64_t)w->count);
    mpb__w_int(&items, 0);
    bbuf_ensure(&items);
    persist_parked(w, 3, items.p, items.len);
    mpb__buf_reset(&items);
    uint32_t n = take_ready(ps, w->tid, (uint64_t)w->count, &items);
    bbuf_ensure(&items);
    mpb__buf_t out = {0};
    mpb__w_array(&out, n);
    mpb__w_raw(&out, items.p, items.len);
    bbuf_ensure(&out);
    waiter_reply_raw(w, out.p, out.len);
    mpb__buf_free(&items);
    mpb__buf_free(&out);
    waiter_free(w);
}

/* A task is finished (by its worker, by giving up, or by cancelling): its caller can take it.
 * It is off every queue and worker already. */
static void finish(task_t *t) {
    persist_task_done(t->id, t->failed, t->canceled, t->result); /* the log has its outcome */
    t->state = T_DONE;
    pfn_t *f = t->fn;
    if (t->canceled) f->canceled++;
    else if (t->failed) f->failed++;
    else f->done++;
    if (t->job) {
        if (t->canceled) t->job->canceled++;
        else if (t->failed) t->job->failed++;
        else t->job->done++;
    }
    if (!t->owner) { /* nobody will take it */
        job_release(t);
        task_free(t);
        return;
    }
    pool_sess_t *ps = t->owner->pool;
    ps->queued_bytes -= t->cost;
    done_push(ps, t);
    ps_check_pause(ps);
    for (waiter_t *w = ps->takers.head, *nx; w; w = nx) {
        nx = w->next;
        if (t->id >= w->tid && t->id - w->tid < (uint64_t)w->count) {
            answer_take(w, ps);
            break;
        }
    }
}

/* Fails every call of t with msg. */
static void fail_task(task_t *t, const char *msg) {
    mpb__buf_t b = {0};
    mpb__w_array(&b, t->ncalls);
    for (uint32_t i = 0; i < t->ncalls; i++) {
        mpb__w_array(&b, 2);
        mpb__w_bool(&b, false);
        mpb__w_cstr(&b, msg);
    }
    bbuf_ensure(&b);
    free(t->result);
    t->result = blob_new(b.p, b.len);
    mpb__buf_free(&b);
    t->failed = true;
    finish(t);
}

/* Takes an unfinished task off its queue or worker. */
static void unqueue(task_t *t) {
    if (t->state == T_QUEUED) {
        q_del(t);
    } else if (t->state == T_RUNNING) {
        unassign(t);
        if (t->owner) run_unlink(t->owner->pool, t);
    }
}

/* A task its worker holds is finished here (cancelled, or its caller is gone): a worker that
 * can stop a running task is told to, so its slot is free at once. */
static void kill_notice(task_t *t) {
    worker_t *w = t->worker;
    if (!w || !w->killable) return;
    mpb__w_array(&w->kills, 2);
    mpb__w_uint(&w->kills, t->id);
    mpb__w_uint(&w->kills, t->gen);
    w->nkills++;
    if (t->started) total_killed++;
}

static void cancel_task(task_t *t) {
    if (t->state == T_RUNNING) kill_notice(t);
    unqueue(t);
    t->canceled = true;
    fail_task(t, "canceled");
}

/* ---- dispatch ---- */

static bool serves(const worker_t *w, const pfn_t *f) {
    for (size_t i = 0; i < w->nfns; i++)
        if (w->fns[i] == f) return true;
    return false;
}

/* The next task for w: among its functions the oldest of the tasks whose turn it is. Callers
 * over their result bound are not in the rings. */
static task_t *next_for(worker_t *w) {
    task_t *best = NULL;
    for (size_t i = 0; i < w->nfns; i++) {
        oq_t *q = w->fns[i]->ring;
        if (q && (!best || q->head->id < best->id)) best = q->head;
    }
    return best;
}

/* Tasks of a function shorter than this on average are streamed: a worker may be given more
 * than its free slots, to start without asking, since none waits long behind the others. */
#define STREAM_US 10000

static bool fn_streams(const pfn_t *f) {
    return f->samples > 0 && f->avg_us < STREAM_US;
}

/* Free slots of w as the broker sees them (negative when it streams ahead). */
static int64_t w_idle(const worker_t *w) {
    return w->concurrency - w->committed;
}

/* How many more tasks w's parked fetch may be given in this round. */
static int64_t w_credit(const worker_t *w) {
    if (!w->fetching) return 0;
    int64_t credit = w->concurrency + w->prefetch - w->inflight;
    int64_t ask = w->fetch_max - (int64_t)w->nplan;
    return credit < ask ? credit : ask;
}

/* Adds t (off every queue and worker) to w's plan: started at once into a free slot, or
 * streamed; otherwise tentative, for w to ask about before it starts it. */
static void plan_add(worker_t *w, task_t *t) {
    bool started = w_idle(w) > 0 || fn_streams(t->fn);
    t->state = T_RUNNING;
    t->attempts++;
    t->gen++;
    if (t->retry) w->retries++;
    t->retry = false;
    assign(w, t, started);
    mpb__w_array(&w->plan, 5);
    mpb__w_uint(&w->plan, t->id);
    mpb__w_str(&w->plan, t->fn->name, t->fn->namelen);
    mpb__w_raw(&w->plan, t->calls->data, t->calls->len);
    mpb__w_uint(&w->plan, t->gen);
    mpb__w_bool(&w->plan, started);
    w->plan_bytes += t->calls->len + t->fn->namelen + 24;
    w->nplan++;
}

/* Whether t still fits in w's reply frame (the first always does). */
static bool plan_room(const worker_t *w, const task_t *t) {
    size_t room = g_limits.max_frame - FRAME_SLACK;
    return !w->nplan || w->plan_bytes + t->calls->len + t->fn->namelen + 24 <= room;
}

/* Plans queued tasks for w within its credit (and its free slots if slots_only). */
static void plan_queued(worker_t *w, bool slots_only) {
    while (w_credit(w) > 0 && (!slots_only || w_idle(w) > 0)) {
        task_t *t = next_for(w);
        if (!t || !plan_room(w, t)) break;
        oq_t *q = t->oq;
        t->fn->ring = q->rnext; /* the next caller's turn */
        q_del(t);
        run_link(t->owner->pool, t);
        plan_add(w, t);
    }
}

/* An idle slot beside a waiting task: w takes tasks another worker holds but has not started
 * (newest first, the last that worker would reach). That worker learns it when it asks to
 * start one: the attempt number it names is no longer the task's. */
static void steal_for(worker_t *w) {
    for (worker_t *v = workers; v && ntentative; v = v->next) {
        if (v == w) continue;
        for (task_t *t = v->atail, *pv; t; t = pv) {
            pv = t->wprev;
            if (w_idle(w) <= 0 || w_credit(w) <= 0) return;
            if (t->started || !serves(w, t->fn) || !plan_room(w, t)) continue;
            unassign(t);
            t->attempts--; /* a steal is not an attempt that failed */
            v->stolen++;
            w->steals++;
            total_steals++;
            plan_add(w, t);
        }
    }
}

/* Sends w the tasks planned for it, answering its parked fetch. */
static void plan_send(worker_t *w) {
    if (!w->nplan && !w->nkills) return;
    bbuf_ensure(&w->plan);
    bbuf_ensure(&w->kills);
    mpb__buf_t out = {0};
    mpb__w_array(&out, w->nplan + w->nkills);
    mpb__w_raw(&out, w->kills.p, w->kills.len); /* stops first: they free slots */
    mpb__w_raw(&out, w->plan.p, w->plan.len);
    bbuf_ensure(&out);
    waiter_t *fw = w->fetch;
    fetch_del(w);
    waiter_reply_raw(fw, out.p, out.len);
    waiter_free(fw);
    mpb__buf_free(&out);
    mpb__buf_reset(&w->plan);
    mpb__buf_reset(&w->kills);
    w->nplan = w->nkills = 0;
    w->plan_bytes = 0;
}

/* One round: free slots first (every worker's, so none holds a prefetch while another slot
 * idles), then prefetch within each worker's credit, then idle slots steal what others hold
 * unstarted; then each parked fetch that got something is answered. */
static void pool_dispatch(void) {
    for (worker_t *w = fetch_head; w; w = w->fnext)
        if (w_idle(w) > 0) plan_queued(w, true);
    for (worker_t *w = fetch_head; w; w = w->fnext) plan_queued(w, false);
    for (worker_t *w = fetch_head; w && ntentative; w = w->fnext)
        if (w_idle(w) > 0 && w_credit(w) > 0) steal_for(w);
    for (worker_t *w = fetch_head, *nx; w; w = nx) {
        nx = w->fnext;
        plan_send(w);
    }
}

/* ---- ops for workers ---- */

/* pool.register FNS CONCURRENCY PREFETCH -> nil: this session serves FNS (array of names),
 * running up to CONCURRENCY tasks at once and holding up to PREFETCH more. */
int cmd_pool_register(req_t *r) {
    uint32_t n;
    int64_t conc, pre;
    mpb__rd_t q = r->args;
    if (mpb__rd_array(&q, &n) || n == 0 || n > 1024)
        return reply_error(r, MPB_EINVAL, "functions must be an array of 1 to 1024 names");
    mpb__rd_t names = q;
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t sl;
        if (mpb__rd_str(&q, &s, &sl) || !mpb__name_ok(s, sl))
            return reply_error(r, MPB_EINVAL, "function %u: names are 1 to 255 printable characters", i);
    }
    r->args = q;
    bool killable = false;
    if (arg_int(r, "concurrency", &conc) || arg_int(r, "prefetch", &pre)) return -1;
    if (r->argc > 3 && arg_bool(r, "killable", &killable)) return -1;
    if (conc < 1 || conc > 100000) return reply_error(r, MPB_EINVAL, "concurrency must be 1..100000");
    if (pre < 0 || pre > 100000) return reply_error(r, MPB_EINVAL, "prefetch must be 0..100000");
    pool_sess_t *ps = PS(r->sess);
    if (ps->worker) return reply_error(r, MPB_EBUSY, "this session is already a worker");
    worker_t *w = xcalloc(1, sizeof *w);
    w->sess = r->sess;
    w->concurrency = conc;
    w->prefetch = pre;
    w->killable = killable;
    w->since_ms = now_ms();
    w->fns = xcalloc(n, sizeof *w->fns);
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t sl;
        mpb__rd_str(&names, &s, &sl);
        pfn_t *f = fn_get(s, sl, true);
        if (serves(w, f)) continue;
        fn_ref(f);
        w->fns[w->nfns++] = f;
        f->nworkers++;
    }
    w->next = workers;
    if (workers) workers->prev = w;
    workers = w;
    ps->worker = w;
    char served[300] = ""; /* enough: the log cuts a value at 256 bytes */
    size_t k = 0;
    for (size_t i = 0; i < w->nfns && k < sizeof served; i++)
        k += (size_t)snprintf(served + k, sizeof served - k, "%s%.*s", i ? "," : "",
                              (int)w->fns[i]->namelen, w->fns[i]->name);
    log_kv(LOG_INFO, "worker registered", "session", LOG_UINT(r->sess->id), "host", r->sess->host,
           "pid", LOG_INT(r->sess->pid), "functions", served, "concurrency", LOG_INT(conc), NULL);
    return reply_nil(r);
}

/* pool.fetch MAX TIMEOUT_MS -> [[task_id, fn, calls], ...]: up to MAX tasks within the
 * worker's credit, parked until there is at least one. */
int cmd_pool_fetch(req_t *r) {
    int64_t max, timeout;
    if (arg_int(r, "max", &max) || arg_timeout(r, &timeout)) return -1;
    pool_sess_t *ps = PS(r->sess);
    worker_t *w = ps->worker;
    if (!w) return reply_error(r, MPB_EINVAL, "pool.fetch before pool.register");
    if (w->fetching) return reply_error(r, MPB_EBUSY, "a fetch is already waiting");
    if (max < 0) max = 0; /* 0: no task, only word of tasks to stop */
    w->fetch_max = max;
    w->fetch = waiter_park(r, &fetch_waiters, timeout);
    w->fetch->on_timeout = pool_on_timeout;
    w->fetching = true;
    w->fprev = fetch_tail;
    w->fnext = NULL;
    if (fetch_tail) fetch_tail->fnext = w;
    else fetch_head = w;
    fetch_tail = w;
    pool_dispatch();
    return 0;
}

static void requeue_or_fail(task_t *t, const worker_t *w, const char *what);

/* The process a task ran in died (the worker lives on): as for a worker's death, the task goes
 * back to the queue, or fails after pool-max-attempts. */
static void task_died(worker_t *w, task_t *t) {
    unassign(t);
    if (!t->owner) { /* its caller is gone: nobody wants it run again */
        job_release(t);
        task_free(t);
        return;
    }
    run_unlink(t->owner->pool, t);
    requeue_or_fail(t, w, "its process");
}

/* A task of f took us from its start to its done (round trip included). */
static void fn_sample(pfn_t *f, int64_t us) {
    f->avg_us = f->samples ? (f->avg_us * 3 + us) / 4 : us;
    if (f->samples < UINT32_MAX) f->samples++;
}

/* The worker behind a worker's op and the array it takes: 0, or -1 when it replied an error. */
static int worker_list(req_t *r, const char *op, worker_t **w, mpb__rd_t *q, uint32_t *n) {
    *w = PS(r->sess)->worker;
    if (!*w) {
        reply_error(r, MPB_EINVAL, "%s before pool.register", op);
        return -1;
    }
    *q = r->args;
    if (mpb__rd_array(q, n)) {
        reply_error(r, MPB_ETYPE, "%s takes an array", op);
        return -1;
    }
    return 0;
}

/* pool.start [[task_id, attempt], ...] -> [task_id, ...]: the tasks of the list this worker
 * may start now: it holds them, under that attempt number (the broker did not take one back
 * for an idle slot elsewhere, nor hand it on after this session was taken for dead). Each one
 * granted counts as started: it is not taken back any more. The rest are refused: the worker
 * drops them. */
int cmd_pool_start(req_t *r) {
    worker_t *w;
    uint32_t n;
    mpb__rd_t q;
    if (worker_list(r, "pool.start", &w, &q, &n)) return -1;
    mpb__buf_t ok = {0};
    uint32_t granted = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t two;
        uint64_t id, gen;
        if (mpb__rd_array(&q, &two) || two != 2 || mpb__rd_uint(&q, &id) ||
            mpb__rd_uint(&q, &gen)) {
            mpb__buf_free(&ok);
            return reply_error(r, MPB_EPROTO, "pool.start item %u is not [task_id, attempt]", i);
        }
        task_t *t = tab_get(id);
        if (!t || t->state != T_RUNNING || t->worker != w || t->gen != gen) {
            w->refused++;
            total_refusals++;
            continue;
        }
        if (!t->started) {
            t->started = true;
            t->timed = w->committed < w->concurrency;
            t->start_us = now_us();
            w->committed++;
            ntentative--;
        }
        mpb__w_uint(&ok, id);
        granted++;
    }
    bbuf_ensure(&ok);
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, granted);
    mpb__w_raw(b, ok.p, ok.len);
    mpb__buf_free(&ok);
    return 0;
}

/* pool.done [[task_id, outcomes], ...] -> nil. outcomes: one [ok, value-or-message] per call.
 * Results of tasks this worker does not hold (cancelled, or handed on after a timeout) are
 * dropped. A value over max_value fails its task instead of being held. */
int cmd_pool_done(req_t *r) {
    worker_t *w;
    uint32_t n;
    mpb__rd_t q;
    if (worker_list(r, "pool.done", &w, &q, &n)) return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t two, nout;
        uint64_t id;
        const uint8_t *out;
        size_t outlen;
        if (mpb__rd_array(&q, &two) || two < 2 || two > 3 || mpb__rd_uint(&q, &id))
            return reply_error(r, MPB_EPROTO, "pool.done item %u is not [task_id, outcomes]", i);
        if (mpb__rd_type(&q) == MPB__MT_BOOL) { /* false: the process running it died */
            bool dummy;
            mpb__rd_bool(&q, &dummy);
            task_t *t = tab_get(id);
            if (t && t->state == T_RUNNING && t->worker == w) task_died(w, t);
            continue;
        }
        mpb__rd_t o = q;
        if (mpb__rd_span(&q, &out, &outlen) || mpb__rd_array(&o, &nout))
            return reply_error(r, MPB_EPROTO, "pool.done item %u: outcomes must be an array", i);
        const uint8_t *output = NULL; /* [[stream, bytes], ...]: what the task wrote */
        size_t outputlen = 0;
        if (two == 3) {
            mpb__rd_t oa = q;
            uint32_t nchunks;
            if (mpb__rd_span(&q, &output, &outputlen) || mpb__rd_array(&oa, &nchunks))
                return reply_error(r, MPB_EPROTO, "pool.done item %u: output must be an array", i);
            if (outputlen > g_limits.max_value) output = NULL; /* the result matters more */
        }
        task_t *t = tab_get(id);
        if (!t || t->state != T_RUNNING || t->worker != w) continue;
        if (t->timed) fn_sample(t->fn, now_us() - t->start_us);
        bool failed = nout != t->ncalls;
        size_t big = 0;
        for (uint32_t k = 0; k < nout && !failed; k++) {
            uint32_t pair;
            bool ok;
            const uint8_t *v;
            size_t vn;
            const uint8_t *kv;
            size_t kn;
            if (mpb__rd_array(&o, &pair) || pair < 2 || pair > 3 || mpb__rd_bool(&o, &ok) ||
                mpb__rd_span(&o, &v, &vn) || (pair == 3 && (ok || mpb__rd_span(&o, &kv, &kn)))) {
                failed = true;
                break;
            }
            if (!ok) failed = true;
            if (vn > g_limits.max_value && vn > big) big = vn;
        }
        unqueue(t);
        char msg[160];
        if (nout != t->ncalls || big) {
            if (big)
                snprintf(msg, sizeof msg, "result of %zu bytes > max_value %zu", big,
                         g_limits.max_value);
            else
                snprintf(msg, sizeof msg, "worker returned %u results for %u calls", nout,
                         t->ncalls);
            w->failed++;
            fail_task(t, msg);
            continue;
        }
        t->result = blob_new(out, outlen);
        if (output && nout == t->ncalls) t->output = blob_new(output, outputlen);
        t->failed = failed;
        if (failed) w->failed++;
        else w->done++;
        finish(t);
    }
    pool_dispatch();
    return reply_nil(r);
}

static void worker_gone(worker_t *w, bool died);

/* pool.unregister -> nil: this session serves no more; what it still holds goes back to the
 * queues (not counted as an attempt), its parked fetch is answered with an empty array. */
int cmd_pool_unregister(req_t *r) {
    pool_sess_t *ps = PS(r->sess);
    worker_t *w = ps->worker;
    if (!w) return reply_error(r, MPB_EINVAL, "this session is not a worker");
    if (w->fetching) {
        waiter_t *fw = w->fetch;
        fetch_del(w);
        waiter_reply_raw(fw, (const uint8_t *)"\x90", 1);
        waiter_free(fw);
    }
    log_kv(LOG_INFO, "worker unregistered: its held tasks go back to the queue", "session",
           LOG_UINT(r->sess->id), "tasks", LOG_INT(w->inflight), NULL);
    worker_gone(w, false);
    ps->worker = NULL;
    pool_dispatch();
    return reply_nil(r);
}

/* ---- ops for callers ---- */

/* pool.submit FN JOB TASKS -> [job, first_task_id]. JOB: nil (a new job, as for a map), false
 * (no job: a lone apply) or a job id this broker gave the session before. TASKS: an array of
 * tasks, each an array of calls, each call an array of arguments; task ids are consecutive. */
int cmd_pool_submit(req_t *r) {
    const char *fname;
    uint32_t fl, n;
    uint64_t jobid = 0;
    enum { J_NEW, J_NONE, J_GIVEN } jmode = J_NEW;
    if (arg_str(r, "function", &fname, &fl)) return -1;
    if (!mpb__name_ok(fname, fl))
        return reply_error(r, MPB_EINVAL, "function names are 1 to 255 printable characters");
    bool b;
    if (mpb__rd_nil(&r->args) == 0) {
        jmode = J_NEW;
    } else if (mpb__rd_type(&r->args) == MPB__MT_BOOL) {
        mpb__rd_bool(&r->args, &b);
        if (b) return reply_error(r, MPB_EINVAL, "job must be nil, false or a job id");
        jmode = J_NONE;
    } else {
        if (arg_uint(r, "job", &jobid)) return -1;
        if (jobid == 0 || jobid >= next_job)
            return reply_error(r, MPB_EINVAL, "job %llu was not issued by this broker",
                               (unsigned long long)jobid);
        jmode = J_GIVEN;
    }
    mpb__rd_t q = r->args;
    if (mpb__rd_array(&q, &n) || n == 0)
        return reply_error(r, MPB_ETYPE, "tasks must be a non-empty array");
    mpb__rd_t first = q;
    size_t cost = 0;
    for (uint32_t i = 0; i < n; i++) { /* all checked before any is queued */
        mpb__rd_t c = q;
        uint32_t ncalls;
        const uint8_t *v;
        size_t vn;
        if (mpb__rd_array(&c, &ncalls) || ncalls == 0)
            return reply_error(r, MPB_ETYPE, "task %u: a task is a non-empty array of calls", i);
        for (uint32_t k = 0; k < ncalls; k++) {
            uint32_t na;
            mpb__rd_t a = c;
            if (mpb__rd_array(&a, &na))
                return reply_error(r, MPB_ETYPE, "task %u call %u: arguments must be an array", i, k);
            mpb__rd_span(&c, &v, &vn);
        }
        mpb__rd_span(&q, &v, &vn);
        if (vn > g_limits.max_value)
            return reply_error(r, MPB_ETOOBIG, "task of %zu bytes > max_value %zu", vn,
                               g_limits.max_value);
        cost += sizeof(task_t) + sizeof(blob_t) + vn;
    }
    pool_sess_t *ps = PS(r->sess);
    if (ps->queued_bytes + cost > max_queued())
        return reply_error(r, MPB_ELIMIT,
                           "unfinished tasks of this session would hold %zu bytes > "
                           "pool-max-queued %zu: wait for results before submitting more",
                           ps->queued_bytes + cost, max_queued());
    pfn_t *f = fn_get(fname, fl, true);
    fn_ref(f); /* held while this runs, so an empty entry is not freed under it */
    job_t *j = NULL;
    if (jmode == J_GIVEN && !(j = job_find(ps, jobid)))
        j = job_new(ps, jobid, f); /* finished and freed: it goes on under the same id */
    else if (jmode == J_NEW)
        j = job_new(ps, next_job++, f);
    uint64_t first_id = next_task;
    q = first;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *v;
        size_t vn;
        mpb__rd_t c = q;
        uint32_t ncalls;
        mpb__rd_array(&c, &ncalls);
        mpb__rd_span(&q, &v, &vn);
        task_t *t = xcalloc(1, sizeof *t);
        t->id = next_task++;
        t->fn = f;
        fn_ref(f);
        t->job = j;
        t->owner = r->sess;
        t->calls = blob_new(v, vn);
        t->ncalls = ncalls;
        t->state = T_QUEUED;
        t->cost = sizeof(task_t) + sizeof(blob_t) + vn;
        ps->queued_bytes += t->cost;
        tab_add(t);
        q_push(t, false);
        if (j) {
            j->total++;
            j->outstanding++;
        }
    }
    fn_unref(f);
    mpb__buf_t *rb = reply_begin(r);
    mpb__w_array(rb, 2);
    mpb__w_uint(rb, j ? j->id : 0);
    mpb__w_uint(rb, first_id);
    pool_dispatch();
    return 0;
}

/* pool.take FIRST COUNT TIMEOUT_MS -> [[task_id, outcomes], ...]: the finished tasks of this
 * session with ids in [FIRST, FIRST+COUNT), parked until there is one. Taken results are gone
 * from the broker. */
int cmd_pool_take(req_t *r) {
    uint64_t from, count;
    int64_t timeout;
    if (arg_uint(r, "first", &from) || arg_uint(r, "count", &count) || arg_timeout(r, &timeout))
        return -1;
    if (count == 0) return reply_error(r, MPB_EINVAL, "count must be >= 1");
    pool_sess_t *ps = PS(r->sess);
    bool any = false;
    for (task_t *t = ps->done_head; t && !any; t = t->qnext)
        any = t->id >= from && t->id - from < count;
    if (!any) {
        if (timeout == 0) return reply_error(r, MPB_ETIMEDOUT, "no result ready");
        waiter_t *w = waiter_park(r, &ps->takers, timeout);
        w->on_timeout = pool_on_timeout;
        w->tid = from;
        w->count = (int64_t)(count > INT64_MAX ? INT64_MAX : count);
        return 0;
    }
    mpb__buf_t items = {0};
    uint32_t n = take_ready(ps, from, count, &items);
    bbuf_ensure(&items);
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, n);
    mpb__w_raw(b, items.p, items.len);
    mpb__buf_free(&items);
    pool_dispatch(); /* collecting may let a paused caller's tasks go out again */
    return 0;
}

/* pool.cancel FIRST COUNT -> how many were cancelled: this session's queued tasks in the range
 * finish at once as failed with "canceled"; running ones finish the same way, and their
 * worker's result is dropped when it comes. Costs min(COUNT, the session's unfinished tasks). */
int cmd_pool_cancel(req_t *r) {
    uint64_t from, count;
    if (arg_uint(r, "first", &from) || arg_uint(r, "count", &count)) return -1;
    pool_sess_t *ps = PS(r->sess);
    uint64_t n = 0, mine = ps->nqueued + ps->nrunning;
#define IN_RANGE(t) ((t)->id >= from && (t)->id - from < count)
    if (count <= 2 * mine + 64) {
        for (uint64_t k = 0; k < count && mine; k++) {
            task_t *t = tab_get(from + k);
            if (!t || t->owner != r->sess || t->state == T_DONE) continue;
            cancel_task(t);
            mine--;
            n++;
        }
    } else { /* a wide range: walk what the session has instead */
        for (oq_t *q = ps->oqs, *qn; q; q = qn) {
            qn = q->onext;
            for (task_t *t = q->head, *tn; t; t = tn) {
                tn = t->qnext; /* the last one frees q */
                if (!IN_RANGE(t)) continue;
                cancel_task(t);
                n++;
            }
        }
        for (task_t *t = ps->run_head, *tn; t; t = tn) {
            tn = t->qnext;
            if (!IN_RANGE(t)) continue;
            cancel_task(t);
            n++;
        }
    }
#undef IN_RANGE
    pool_dispatch();
    return reply_uint(r, n);
}

static uint64_t fn_capacity(const pfn_t *f) {
    uint64_t c = 0;
    for (worker_t *w = workers; w; w = w->next)
        if (serves(w, f)) c += (uint64_t)w->concurrency;
    return c;
}

/* Splits every function's assigned tasks into running and prefetched: a worker runs the
 * oldest `concurrency` of the tasks it may start, the rest wait in its prefetch. */
static void split_assigned(void) {
    for (pfn_t *f = fns; f; f = f->next) f->st_run = f->st_pre = 0;
    for (worker_t *w = workers; w; w = w->next) {
        int64_t k = 0;
        for (task_t *t = w->ahead; t; t = t->wnext) {
            if (t->started && k++ < w->concurrency) t->fn->st_run++;
            else t->fn->st_pre++;
        }
    }
}

static int64_t w_running(const worker_t *w) {
    return w->committed < w->concurrency ? w->committed : w->concurrency;
}

/* pool.fninfo FN -> [workers, capacity, queued, running, done, failed, prefetched, canceled] */
int cmd_pool_fninfo(req_t *r) {
    const char *fname;
    uint32_t fl;
    if (arg_str(r, "function", &fname, &fl)) return -1;
    pfn_t *f = fn_get(fname, fl, false);
    if (f) split_assigned();
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, 8);
    mpb__w_uint(b, f ? f->nworkers : 0);
    mpb__w_uint(b, f ? fn_capacity(f) : 0);
    mpb__w_uint(b, f ? f->queued : 0);
    mpb__w_uint(b, f ? f->st_run : 0);
    mpb__w_uint(b, f ? f->done : 0);
    mpb__w_uint(b, f ? f->failed : 0);
    mpb__w_uint(b, f ? f->st_pre : 0);
    mpb__w_uint(b, f ? f->canceled : 0);
    return 0;
}

/* pool.stats -> {workers: [...], functions: [...], jobs: [...], callers: [...]} */
int cmd_pool_stats(req_t *r) {
    mpb__buf_t *b = reply_begin(r);
    int64_t now = now_ms();
    split_assigned();
    mpb__w_map(b, 4);
    uint32_t nw = 0, nf = 0, nj = 0, nc = 0;
    for (worker_t *w = workers; w; w = w->next) nw++;
    for (pfn_t *f = fns; f; f = f->next) nf++;
    for (job_t *j = jobs; j; j = j->next) nj++;
    for (pool_sess_t *ps = sesses; ps; ps = ps->next)
        nc += ps->nqueued + ps->nrunning + ps->ndone > 0;
    mpb__w_cstr(b, "workers");
    mpb__w_array(b, nw);
    for (worker_t *w = workers; w; w = w->next) {
        mpb__w_map(b, 15);
        sess_describe(w->sess, b);
        mpb__w_cstr(b, "functions");
        mpb__w_array(b, (uint32_t)w->nfns);
        for (size_t i = 0; i < w->nfns; i++) mpb__w_str(b, w->fns[i]->name, w->fns[i]->namelen);
        mpb__w_cstr(b, "concurrency");
        mpb__w_int(b, w->concurrency);
        mpb__w_cstr(b, "running");
        mpb__w_int(b, w_running(w));
        mpb__w_cstr(b, "prefetched");
        mpb__w_int(b, w->inflight - w_running(w));
        mpb__w_cstr(b, "done");
        mpb__w_uint(b, w->done);
        mpb__w_cstr(b, "failed");
        mpb__w_uint(b, w->failed);
        mpb__w_cstr(b, "up_s");
        mpb__w_int(b, (now - w->since_ms) / 1000);
        mpb__w_cstr(b, "steals");
        mpb__w_uint(b, w->steals);
        mpb__w_cstr(b, "stolen");
        mpb__w_uint(b, w->stolen);
        mpb__w_cstr(b, "retries");
        mpb__w_uint(b, w->retries);
        mpb__w_cstr(b, "refused");
        mpb__w_uint(b, w->refused);
        /* the running ones, oldest first: [task_id, age_ms] */
        int64_t nrun = w_running(w), k = 0, now_u = now_us();
        mpb__w_cstr(b, "tasks");
        mpb__w_array(b, (uint32_t)nrun);
        for (task_t *t = w->ahead; t && k < nrun; t = t->wnext) {
            if (!t->started) continue;
            mpb__w_array(b, 2);
            mpb__w_uint(b, t->id);
            mpb__w_int(b, (now_u - t->start_us) / 1000);
            k++;
        }
    }
    mpb__w_cstr(b, "functions");
    mpb__w_array(b, nf);
    for (pfn_t *f = fns; f; f = f->next) {
        mpb__w_map(b, 9);
        mpb__w_cstr(b, "name");
        mpb__w_str(b, f->name, f->namelen);
        mpb__w_cstr(b, "workers");
        mpb__w_uint(b, f->nworkers);
        mpb__w_cstr(b, "queued");
        mpb__w_uint(b, f->queued);
        mpb__w_cstr(b, "paused");
        mpb__w_uint(b, f->paused);
        mpb__w_cstr(b, "running");
        mpb__w_uint(b, f->st_run);
        mpb__w_cstr(b, "prefetched");
        mpb__w_uint(b, f->st_pre);
        mpb__w_cstr(b, "done");
        mpb__w_uint(b, f->done);
        mpb__w_cstr(b, "failed");
        mpb__w_uint(b, f->failed);
        mpb__w_cstr(b, "canceled");
        mpb__w_uint(b, f->canceled);
    }
    mpb__w_cstr(b, "jobs");
    mpb__w_array(b, nj);
    for (job_t *j = jobs; j; j = j->next) {
        mpb__w_map(b, 9);
        mpb__w_cstr(b, "id");
        mpb__w_uint(b, j->id);
        mpb__w_cstr(b, "function");
        mpb__w_str(b, j->fn->name, j->fn->namelen);
        mpb__w_cstr(b, "session");
        mpb__w_uint(b, j->owner ? j->owner->id : 0);
        mpb__w_cstr(b, "host");
        mpb__w_cstr(b, j->owner ? j->owner->host : "");
        mpb__w_cstr(b, "total");
        mpb__w_uint(b, j->total);
        mpb__w_cstr(b, "done");
        mpb__w_uint(b, j->done);
        mpb__w_cstr(b, "failed");
        mpb__w_uint(b, j->failed);
        mpb__w_cstr(b, "canceled");
        mpb__w_uint(b, j->canceled);
        mpb__w_cstr(b, "elapsed_ms");
        mpb__w_int(b, now - j->started_ms);
    }
    mpb__w_cstr(b, "callers");
    mpb__w_array(b, nc);
    for (pool_sess_t *ps = sesses; ps; ps = ps->next) {
        if (!(ps->nqueued + ps->nrunning + ps->ndone)) continue;
        mpb__w_map(b, 9);
        sess_describe(ps->sess, b);
        mpb__w_cstr(b, "queued");
        mpb__w_uint(b, ps->nqueued);
        mpb__w_cstr(b, "running");
        mpb__w_uint(b, ps->nrunning);
        mpb__w_cstr(b, "held");
        mpb__w_uint(b, ps->ndone);
        mpb__w_cstr(b, "queued_bytes");
        mpb__w_uint(b, ps->queued_bytes);
        mpb__w_cstr(b, "held_bytes");
        mpb__w_uint(b, ps->held_bytes);
        mpb__w_cstr(b, "paused");
        mpb__w_bool(b, ps->paused);
    }
    return 0;
}

/* ---- sessions ending, timeouts ---- */

/* t (off its worker and its owner's running list) ran where something died: back to the front
 * of its queue as a retry, or failed after pool-max-attempts ("task failed: its worker died 3
 * times ..."; what: "its worker" or "its process"). */
static void requeue_or_fail(task_t *t, const worker_t *w, const char *what) {
    if (t->attempts >= g_limits.pool_max_attempts) {
        char msg[240];
        snprintf(msg, sizeof msg, "task failed: %s died %d times (last: host %s pid %lld)", what,
                 t->attempts, w->sess->host, (long long)w->sess->pid);
        total_abandoned++;
        fail_task(t, msg);
        return;
    }
    t->state = T_QUEUED;
    q_push(t, true); /* it was among the oldest: it goes first */
    total_requeued++;
    t->retry = true;
}

/* A worker leaves: died (its session ended; what it held counts as an attempt) or
 * unregistered (it does not). */
static void worker_gone(worker_t *w, bool died) {
    fetch_del(w); /* a dead worker's parked fetch was freed with the session's other waiters */
    while (w->ahead) {
        task_t *t = w->ahead;
        unassign(t);
        if (!t->owner) { /* its caller is gone too: nobody wants it run again */
            job_release(t);
            task_free(t);
            continue;
        }
        run_unlink(t->owner->pool, t);
        if (!died) {
            t->attempts--;
            t->state = T_QUEUED;
            q_push(t, true); /* it was among the oldest: it goes first */
        } else {
            requeue_or_fail(t, w, "its worker");
        }
    }
    for (size_t i = 0; i < w->nfns; i++) {
        w->fns[i]->nworkers--;
        fn_unref(w->fns[i]);
    }
    if (w->prev) w->prev->next = w->next;
    else workers = w->next;
    if (w->next) w->next->prev = w->prev;
    mpb__buf_free(&w->plan);
    mpb__buf_free(&w->kills);
    free(w->fns);
    free(w);
}

void pool_sess_end(sess_t *s) {
    pool_sess_t *ps = s->pool;
    if (!ps) return;
    if (ps->worker) {
        log_kv(LOG_INFO, "worker gone: its running tasks go back to the queue", "session",
               LOG_UINT(s->id), "tasks", LOG_INT(ps->worker->inflight), NULL);
        worker_gone(ps->worker, true);
        ps->worker = NULL;
    }
    /* Its own tasks: the queued are dropped, the running forgotten, the finished freed; each
     * list is its own, so this costs what it owned. */
    while (ps->oqs) {
        task_t *t = ps->oqs->head;
        q_del(t); /* frees the sub-queue with its last task */
        job_release(t);
        task_free(t);
    }
    while (ps->run_head) {
        task_t *t = ps->run_head;
        run_unlink(ps, t);
        t->owner = NULL;
        t->job = NULL; /* its job goes below */
        if (t->worker && t->worker->killable) { /* stopped now rather than forgotten later */
            kill_notice(t);
            unassign(t);
            task_free(t);
        }
    }
    while (ps->done_head) {
        task_t *t = ps->done_head;
        done_del(ps, t);
        job_release(t);
        task_free(t);
    }
    while (ps->jobs) job_free(ps->jobs);
    if (ps->prev) ps->prev->next = ps->next;
    else sesses = ps->next;
    if (ps->next) ps->next->prev = ps->prev;
    free(ps);
    s->pool = NULL;
    pool_dispatch();
}

void pool_on_timeout(waiter_t *w) {
    if (w->op == MPB_OP_POOL_FETCH) {
        pool_sess_t *ps = w->sess->pool;
        if (ps && ps->worker) fetch_del(ps->worker);
        waiter_reply_raw(w, (const uint8_t *)"\x90", 1); /* no task: an empty list */
        waiter_free(w);
        return;
    }
    waiter_reply_error(w, MPB_ETIMEDOUT, "no result ready before the timeout");
    waiter_free(w);
}

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void w_label(mpb__buf_t *b, const char *s, size_t n) {
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = s[i] == '\\'   ? "\\\\"
                          : s[i] == '"'  ? "\\\""
                          : s[i] == '\n' ? "\\n"
                                         : NULL;
        if (!esc) continue;
        mpb__w_raw(b, s + from, i - from);
        mpb__w_raw(b, esc, 2);
        from = i + 1;
    }
    mpb__w_raw(b, s + from, n - from);
}

/* name{function="F",KEY="VAL"} N */
static void w_fn_sample(mpb__buf_t *b, const char *name, const pfn_t *f, const char *key,
                        const char *val, uint64_t n) {
    char num[32];
    mpb__w_raw(b, name, strlen(name));
    mpb__w_raw(b, "{function=\"", 11);
    w_label(b, f->name, f->namelen);
    int k = snprintf(num, sizeof num, "\"} %llu\n", (unsigned long long)n);
    char head[64];
    int h = snprintf(head, sizeof head, "\",%s=\"%s", key, val);
    mpb__w_raw(b, head, (size_t)h);
    mpb__w_raw(b, num, (size_t)k);
}

void pool_metrics(mpb__buf_t *b) {
    char line[512];
    int n;
#define OUT(...)                                                                                   \
    do {                                                                                           \
        n = snprintf(line, sizeof line, __VA_ARGS__);                                              \
        if (n > 0) mpb__w_raw(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);    \
    } while (0)
    size_t nw = 0, npaused = 0, held = 0, queued = 0;
    for (worker_t *w = workers; w; w = w->next) nw++;
    for (pool_sess_t *ps = sesses; ps; ps = ps->next) {
        npaused += ps->paused;
        held += ps->held_bytes;
        queued += ps->queued_bytes;
    }
    split_assigned();
    OUT("# HELP mpb_pool_workers Workers registered.\n# TYPE mpb_pool_workers gauge\n");
    OUT("mpb_pool_workers %zu\n", nw);
    OUT("# HELP mpb_pool_tasks Tasks by function and state (queued: waiting, paused: of those, "
        "waiting for their caller to collect results; running; prefetched: held by a worker "
        "beyond its concurrency).\n# TYPE mpb_pool_tasks gauge\n");
    for (pfn_t *f = fns; f; f = f->next) {
        w_fn_sample(b, "mpb_pool_tasks", f, "state", "queued", f->queued);
        w_fn_sample(b, "mpb_pool_tasks", f, "state", "paused", f->paused);
        w_fn_sample(b, "mpb_pool_tasks", f, "state", "running", f->st_run);
        w_fn_sample(b, "mpb_pool_tasks", f, "state", "prefetched", f->st_pre);
    }
    OUT("# HELP mpb_pool_tasks_finished_total Tasks finished by function and result.\n"
        "# TYPE mpb_pool_tasks_finished_total counter\n");
    for (pfn_t *f = fns; f; f = f->next) {
        w_fn_sample(b, "mpb_pool_tasks_finished_total", f, "result", "done", f->done);
        w_fn_sample(b, "mpb_pool_tasks_finished_total", f, "result", "failed", f->failed);
        w_fn_sample(b, "mpb_pool_tasks_finished_total", f, "result", "canceled", f->canceled);
    }
    OUT("# HELP mpb_pool_tasks_requeued_total Tasks handed to another worker after theirs died.\n"
        "# TYPE mpb_pool_tasks_requeued_total counter\nmpb_pool_tasks_requeued_total %llu\n",
        (unsigned long long)total_requeued);
    OUT("# HELP mpb_pool_tasks_abandoned_total Tasks failed after too many worker deaths.\n"
        "# TYPE mpb_pool_tasks_abandoned_total counter\nmpb_pool_tasks_abandoned_total %llu\n",
        (unsigned long long)total_abandoned);
    OUT("# HELP mpb_pool_steals_total Tasks an idle slot took from another worker's prefetch "
        "before it started them.\n# TYPE mpb_pool_steals_total counter\nmpb_pool_steals_total "
        "%llu\n",
        (unsigned long long)total_steals);
    OUT("# HELP mpb_pool_lease_refusals_total pool.start refusals: the task had been handed to "
        "another worker.\n# TYPE mpb_pool_lease_refusals_total counter\n"
        "mpb_pool_lease_refusals_total %llu\n",
        (unsigned long long)total_refusals);
    OUT("# HELP mpb_pool_tasks_killed_total Running tasks whose worker was told to kill them "
        "(terminate, timeout, cancel, caller gone).\n# TYPE mpb_pool_tasks_killed_total "
        "counter\nmpb_pool_tasks_killed_total %llu\n",
        (unsigned long long)total_killed);
    OUT("# HELP mpb_pool_callers_paused Callers whose results not taken exceed pool-max-results "
        "(their tasks wait).\n# TYPE mpb_pool_callers_paused gauge\nmpb_pool_callers_paused "
        "%zu\n",
        npaused);
    OUT("# HELP mpb_pool_results_held_bytes Bytes of finished results waiting for their "
        "callers.\n# TYPE mpb_pool_results_held_bytes gauge\nmpb_pool_results_held_bytes %zu\n",
        held);
    OUT("# HELP mpb_pool_tasks_unfinished_bytes Bytes of tasks queued or running.\n"
        "# TYPE mpb_pool_tasks_unfinished_bytes gauge\nmpb_pool_tasks_unfinished_bytes %zu\n",
        queued);
#undef OUT
}

void pool_free_all(void) {
    for (size_t i = 0; i < tabcap; i++)
        for (task_t *t = tab[i], *nx; t; t = nx) {
            nx = t->hnext;
            free(t->calls);
            free(t->result);
            free(t);
        }
    free(tab);
    tab = NULL;
    tabcap = ntasks = 0;
    while (workers) {
        worker_t *w = workers;
        workers = w->next;
        mpb__buf_free(&w->plan);
        mpb__buf_free(&w->kills);
        free(w->fns);
        free(w);
    }
    fetch_head = fetch_tail = NULL;
    while (jobs) {
        job_t *j = jobs;
        jobs = j->next;
        free(j);
    }
    while (sesses) { /* none: every session ended before this */
        pool_sess_t *ps = sesses;
        sesses = ps->next;
        while (ps->oqs) {
            oq_t *q = ps->oqs;
            ps->oqs = q->onext;
            free(q);
        }
        free(ps);
    }
    while (fns) {
        pfn_t *f = fns;
        fns = f->next;
        free(f->name);
        free(f);
    }
    free(fntab);
    fntab = NULL;
    fntabcap = nfns_all = nidle = 0;
    idle_head = idle_tail = NULL;
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
    task_t **v = xmalloc((ntasks ? ntasks : 1) * sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < tabcap; i++)
        for (task_t *t = tab[i]; t; t = t->hnext)
            if (t->owner && n < ntasks) v[n++] = t;
    qsort(v, n, sizeof *v, cmp_task_id);
    for (size_t i = 0; i < n; i++) {
        const task_t *t = v[i];
        fn(ctx, t->id, t->owner, t->fn->name, t->fn->namelen, t->calls, t->state == T_DONE,
           t->failed, t->canceled, t->result);
    }
    free(v);
}

void pool_counters(uint64_t *task, uint64_t *job) {
    *task = next_task;
    *job = next_job;
}

void pool_set_counters(uint64_t task, uint64_t job) {
    if (task > next_task) next_task = task;
    if (job > next_job) next_job = job;
}

int pool_restore_task(uint64_t id, sess_t *owner, const char *fname, uint32_t fl,
                      const uint8_t *calls, size_t n, bool done, bool failed, bool canceled,
                      const uint8_t *result, size_t rn) {
    mpb__rd_t r = {calls, calls + n};
    uint32_t ncalls;
    if (!owner || id == 0 || tab_get(id) || !mpb__name_ok(fname, fl) ||
        mpb__rd_array(&r, &ncalls) || ncalls == 0 || (done && !result))
        return -1;
    pool_sess_t *ps = PS(owner);
    task_t *t = xcalloc(1, sizeof *t);
    t->id = id;
    t->fn = fn_get(fname, fl, true);
    fn_ref(t->fn);
    t->owner = owner;
    t->calls = blob_new(calls, n);
    t->ncalls = ncalls;
    t->cost = sizeof(task_t) + sizeof(blob_t) + n;
    tab_add(t);
    if (id >= next_task) next_task = id + 1;
    if (done) {
        t->state = T_DONE;
        t->failed = failed;
        t->canceled = canceled;
        t->result = blob_new(result, rn);
        done_push(ps, t);
        ps_check_pause(ps);
    } else {
        t->state = T_QUEUED;
        ps->queued_bytes += t->cost;
        q_push(t, false);
    }
    return 0;
}

void pool_restore_finish(uint64_t id, bool failed, bool canceled, const uint8_t *result,
                         size_t rn) {
    task_t *t = tab_get(id);
    if (!t || t->state != T_QUEUED) return; /* its caller has gone, or a cancel finished it */
    unqueue(t);
    free(t->result);
    t->result = result ? blob_new(result, rn) : NULL;
    t->failed = failed;
    t->canceled = canceled;
    finish(t);
}
