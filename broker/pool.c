/* pool.c - the remote Pool's dispatcher. Callers submit tasks (a task is a chunk: one or more
 * calls of one function); workers register the functions they serve and pull tasks with a
 * parked pool.fetch, never holding more than their concurrency plus prefetch. Results wait in
 * the broker until their caller takes them.
 *
 *   fn "square":  queue [t7 t8 t9]       oldest task first, across a worker's functions
 *   worker w1:    running {t5 t6}  ─ dies ─> t5 t6 back to the queue front (attempts + 1)
 *   caller s3:    done-not-taken [t4 t5]  <── pool.take (parked until one is done)
 *
 * A caller's session that ends takes its tasks with it: queued ones are dropped, running ones
 * are forgotten when they finish. A task whose workers died max_attempts times fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

enum { T_QUEUED, T_RUNNING, T_DONE };

typedef struct pfn pfn_t;
typedef struct worker worker_t;
typedef struct job job_t;

typedef struct task {
    uint64_t id;
    pfn_t *fn;
    job_t *job;
    sess_t *owner;  /* NULL: its caller is gone; the result will be dropped */
    blob_t *calls;  /* msgpack array of argument arrays */
    uint32_t ncalls;
    int state;
    int attempts;
    bool failed;    /* some call raised */
    bool canceled;
    worker_t *worker;
    blob_t *result; /* msgpack array of [ok, value-or-message] per call */
    struct task *qnext, *qprev; /* fn queue, or owner's done list */
    struct task *wnext, *wprev; /* worker's running list */
    struct task *hnext;         /* id table chain */
} task_t;

struct pfn {
    char *name;
    uint32_t namelen;
    task_t *qhead, *qtail;
    uint64_t queued, running, done, failed;
    size_t nworkers;
    pfn_t *next;
};

struct worker {
    sess_t *sess;
    pfn_t **fns;
    size_t nfns;
    int64_t concurrency, prefetch;
    int64_t inflight;
    uint64_t done, failed;
    waiter_t *fetch; /* its parked pool.fetch, if any */
    int64_t fetch_max;
    task_t *running;
    int64_t since_ms;
    worker_t *next, *prev;         /* all workers */
    worker_t *fnext, *fprev;       /* workers with a parked fetch, oldest first */
    bool fetching;
};

struct job {
    uint64_t id;
    sess_t *owner;
    pfn_t *fn;
    uint64_t total, done, failed, outstanding; /* outstanding: not yet taken */
    int64_t started_ms;
    job_t *next, *prev;
};

typedef struct pool_sess {
    worker_t *worker;
    task_t *done_head, *done_tail; /* finished, not yet taken */
    size_t held_bytes;
    wlist_t takers;
    size_t ntasks; /* tasks it owns, in any state */
} pool_sess_t;

static pfn_t *fns;
static worker_t *workers, *fetch_head, *fetch_tail;
static job_t *jobs;
static task_t **tab;
static size_t tabcap, ntasks;
static uint64_t next_task = 1, next_job = 1;
static uint64_t total_requeued, total_abandoned;
static wlist_t fetch_waiters; /* parked pool.fetch requests; order kept by fetch_head */

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

/* ---- small helpers ---- */

static pool_sess_t *PS(sess_t *s) {
    if (!s->pool) s->pool = xcalloc(1, sizeof *s->pool);
    return s->pool;
}

static pfn_t *fn_get(const char *name, size_t n, bool create) {
    for (pfn_t *f = fns; f; f = f->next)
        if (f->namelen == n && !memcmp(f->name, name, n)) return f;
    if (!create) return NULL;
    pfn_t *f = xcalloc(1, sizeof *f);
    f->name = xstrndup(name, n);
    f->namelen = (uint32_t)n;
    f->next = fns;
    fns = f;
    return f;
}

static void q_push(pfn_t *f, task_t *t, bool front) {
    t->qprev = t->qnext = NULL;
    if (front) {
        t->qnext = f->qhead;
        if (f->qhead) f->qhead->qprev = t;
        else f->qtail = t;
        f->qhead = t;
    } else {
        t->qprev = f->qtail;
        if (f->qtail) f->qtail->qnext = t;
        else f->qhead = t;
        f->qtail = t;
    }
    f->queued++;
}

static void q_del(pfn_t *f, task_t *t) {
    if (t->qprev) t->qprev->qnext = t->qnext;
    else f->qhead = t->qnext;
    if (t->qnext) t->qnext->qprev = t->qprev;
    else f->qtail = t->qprev;
    t->qnext = t->qprev = NULL;
    f->queued--;
}

static void done_push(pool_sess_t *ps, task_t *t) {
    t->qprev = ps->done_tail;
    t->qnext = NULL;
    if (ps->done_tail) ps->done_tail->qnext = t;
    else ps->done_head = t;
    ps->done_tail = t;
    ps->held_bytes += t->result ? t->result->len : 0;
}

static void done_del(pool_sess_t *ps, task_t *t) {
    if (t->qprev) t->qprev->qnext = t->qnext;
    else ps->done_head = t->qnext;
    if (t->qnext) t->qnext->qprev = t->qprev;
    else ps->done_tail = t->qprev;
    t->qnext = t->qprev = NULL;
    ps->held_bytes -= t->result ? t->result->len : 0;
}

static void run_add(worker_t *w, task_t *t) {
    t->worker = w;
    t->wprev = NULL;
    t->wnext = w->running;
    if (w->running) w->running->wprev = t;
    w->running = t;
    w->inflight++;
}

static void run_del(task_t *t) {
    worker_t *w = t->worker;
    if (!w) return;
    if (t->wprev) t->wprev->wnext = t->wnext;
    else w->running = t->wnext;
    if (t->wnext) t->wnext->wprev = t->wprev;
    t->wnext = t->wprev = NULL;
    t->worker = NULL;
    w->inflight--;
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

static void task_free(task_t *t) {
    tab_del(t);
    if (t->owner && t->owner->pool) t->owner->pool->ntasks--;
    free(t->calls);
    free(t->result);
    free(t);
}

static void job_free(job_t *j) {
    if (j->prev) j->prev->next = j->next;
    else jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    free(j);
}

/* A task leaves its job's count when it is taken, cancelled or abandoned. */
static void job_release(task_t *t) {
    job_t *j = t->job;
    t->job = NULL;
    if (j && --j->outstanding == 0 && j->done + j->failed >= j->total) job_free(j);
}

/* ---- results ---- */

/* Writes [task_id, outcomes] for every finished task of ps in [from, from + count), up to a
 * frame's worth, removing them; returns how many. */
static uint32_t take_ready(pool_sess_t *ps, uint64_t from, uint64_t count, mpb__buf_t *items) {
    uint32_t n = 0;
    size_t bytes = 0;
    for (task_t *t = ps->done_head, *nx; t && bytes < g_limits.max_frame / 2; t = nx) {
        nx = t->qnext;
        if (t->id < from || t->id - from >= count) continue;
        mpb__w_array(items, 2);
        mpb__w_uint(items, t->id);
        if (t->result) mpb__w_raw(items, t->result->data, t->result->len);
        else mpb__w_array(items, 0);
        bytes += t->result ? t->result->len : 0;
        done_del(ps, t);
        job_release(t);
        task_free(t);
        n++;
    }
    return n;
}

static void answer_take(waiter_t *w, pool_sess_t *ps) {
    mpb__buf_t items = {0};
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

static void pool_dispatch(void);

/* A task is finished (by its worker, by giving up, or by cancelling): its caller can take it. */
static void finish(task_t *t) {
    t->state = T_DONE;
    pfn_t *f = t->fn;
    if (t->failed) f->failed++;
    else f->done++;
    if (t->job) {
        if (t->failed) t->job->failed++;
        else t->job->done++;
    }
    if (!t->owner) { /* nobody will take it */
        job_release(t);
        task_free(t);
        return;
    }
    pool_sess_t *ps = PS(t->owner);
    done_push(ps, t);
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

/* ---- dispatch ---- */

static bool serves(const worker_t *w, const pfn_t *f) {
    for (size_t i = 0; i < w->nfns; i++)
        if (w->fns[i] == f) return true;
    return false;
}

/* The oldest queued task among w's functions whose caller still has room for results. */
static task_t *next_for(worker_t *w) {
    task_t *best = NULL;
    for (size_t i = 0; i < w->nfns; i++) {
        for (task_t *t = w->fns[i]->qhead; t; t = t->qnext) {
            if (t->owner && t->owner->pool && t->owner->pool->held_bytes > g_limits.pool_max_results)
                continue; /* its caller is not collecting: let it catch up */
            if (!best || t->id < best->id) best = t;
            break;
        }
    }
    return best;
}

static void dispatch_to(worker_t *w) {
    int64_t credit = w->concurrency + w->prefetch - w->inflight;
    if (credit > w->fetch_max) credit = w->fetch_max;
    if (credit <= 0) return;
    mpb__buf_t items = {0};
    uint32_t n = 0;
    size_t bytes = 0;
    while (n < credit && bytes < g_limits.max_frame / 2) {
        task_t *t = next_for(w);
        if (!t) break;
        q_del(t->fn, t);
        t->state = T_RUNNING;
        t->attempts++;
        t->fn->running++;
        run_add(w, t);
        mpb__w_array(&items, 3);
        mpb__w_uint(&items, t->id);
        mpb__w_str(&items, t->fn->name, t->fn->namelen);
        mpb__w_raw(&items, t->calls->data, t->calls->len);
        bytes += t->calls->len;
        n++;
    }
    if (!n) {
        mpb__buf_free(&items);
        return;
    }
    bbuf_ensure(&items);
    mpb__buf_t out = {0};
    mpb__w_array(&out, n);
    mpb__w_raw(&out, items.p, items.len);
    bbuf_ensure(&out);
    waiter_t *fw = w->fetch;
    fetch_del(w);
    waiter_reply_raw(fw, out.p, out.len);
    waiter_free(fw);
    mpb__buf_free(&items);
    mpb__buf_free(&out);
}

static void pool_dispatch(void) {
    for (worker_t *w = fetch_head, *nx; w; w = nx) {
        nx = w->fnext;
        dispatch_to(w);
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
    if (arg_int(r, "concurrency", &conc) || arg_int(r, "prefetch", &pre)) return -1;
    if (conc < 1 || conc > 100000) return reply_error(r, MPB_EINVAL, "concurrency must be 1..100000");
    if (pre < 0 || pre > 100000) return reply_error(r, MPB_EINVAL, "prefetch must be 0..100000");
    pool_sess_t *ps = PS(r->sess);
    if (ps->worker) return reply_error(r, MPB_EBUSY, "this session is already a worker");
    worker_t *w = xcalloc(1, sizeof *w);
    w->sess = r->sess;
    w->concurrency = conc;
    w->prefetch = pre;
    w->since_ms = now_ms();
    w->fns = xcalloc(n, sizeof *w->fns);
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t sl;
        mpb__rd_str(&names, &s, &sl);
        pfn_t *f = fn_get(s, sl, true);
        if (serves(w, f)) continue;
        w->fns[w->nfns++] = f;
        f->nworkers++;
    }
    w->next = workers;
    if (workers) workers->prev = w;
    workers = w;
    ps->worker = w;
    log_info("worker session %llu (host %s pid %lld) serves %zu functions, concurrency %lld",
             (unsigned long long)r->sess->id, r->sess->host, (long long)r->sess->pid, w->nfns,
             (long long)conc);
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
    if (max < 1) max = 1;
    w->fetch_max = max;
    w->fetch = waiter_park(r, &fetch_waiters, timeout);
    w->fetching = true;
    w->fprev = fetch_tail;
    w->fnext = NULL;
    if (fetch_tail) fetch_tail->fnext = w;
    else fetch_head = w;
    fetch_tail = w;
    dispatch_to(w);
    return 0;
}

/* pool.done [[task_id, outcomes], ...] -> nil. outcomes: one [ok, value-or-message] per call.
 * Results of tasks this worker does not hold (cancelled, or handed on after a timeout) are
 * dropped. */
int cmd_pool_done(req_t *r) {
    pool_sess_t *ps = PS(r->sess);
    worker_t *w = ps->worker;
    if (!w) return reply_error(r, MPB_EINVAL, "pool.done before pool.register");
    uint32_t n;
    mpb__rd_t q = r->args;
    if (mpb__rd_array(&q, &n)) return reply_error(r, MPB_ETYPE, "pool.done takes an array");
    for (uint32_t i = 0; i < n; i++) {
        uint32_t two, nout;
        uint64_t id;
        const uint8_t *out;
        size_t outlen;
        if (mpb__rd_array(&q, &two) || two != 2 || mpb__rd_uint(&q, &id))
            return reply_error(r, MPB_EPROTO, "pool.done item %u is not [task_id, outcomes]", i);
        mpb__rd_t o = q;
        if (mpb__rd_span(&q, &out, &outlen) || mpb__rd_array(&o, &nout))
            return reply_error(r, MPB_EPROTO, "pool.done item %u: outcomes must be an array", i);
        task_t *t = tab_get(id);
        if (!t || t->state != T_RUNNING || t->worker != w) continue;
        if (outlen > g_limits.max_frame)
            return reply_error(r, MPB_ETOOBIG, "result of %zu bytes > max_frame", outlen);
        bool failed = nout != t->ncalls;
        for (uint32_t k = 0; k < nout && !failed; k++) {
            uint32_t pair;
            bool ok;
            const uint8_t *v;
            size_t vn;
            if (mpb__rd_array(&o, &pair) || pair != 2 || mpb__rd_bool(&o, &ok) ||
                mpb__rd_span(&o, &v, &vn)) {
                failed = true;
                break;
            }
            if (!ok) failed = true;
        }
        run_del(t);
        t->fn->running--;
        if (nout != t->ncalls) {
            char msg[160];
            snprintf(msg, sizeof msg, "worker returned %u results for %u calls", nout, t->ncalls);
            w->failed++;
            fail_task(t, msg);
            continue;
        }
        t->result = blob_new(out, outlen);
        t->failed = failed;
        if (failed) w->failed++;
        else w->done++;
        finish(t);
    }
    pool_dispatch();
    return reply_nil(r);
}

/* ---- ops for callers ---- */

/* pool.submit FN JOB|nil TASKS -> [job, first_task_id]. TASKS: an array of tasks, each an
 * array of calls, each call an array of arguments; task ids are consecutive. */
int cmd_pool_submit(req_t *r) {
    const char *fname;
    uint32_t fl, n;
    uint64_t jobid = 0;
    bool nojob;
    if (arg_str(r, "function", &fname, &fl)) return -1;
    if (!mpb__name_ok(fname, fl))
        return reply_error(r, MPB_EINVAL, "function names are 1 to 255 printable characters");
    nojob = mpb__rd_nil(&r->args) == 0;
    if (!nojob && arg_uint(r, "job", &jobid)) return -1;
    mpb__rd_t q = r->args;
    if (mpb__rd_array(&q, &n) || n == 0)
        return reply_error(r, MPB_ETYPE, "tasks must be a non-empty array");
    mpb__rd_t first = q;
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
    }
    pfn_t *f = fn_get(fname, fl, true);
    job_t *j = NULL;
    for (job_t *x = jobs; x && !nojob; x = x->next)
        if (x->id == jobid && x->owner == r->sess) j = x;
    if (!j) {
        j = xcalloc(1, sizeof *j);
        j->id = nojob ? next_job++ : jobid;
        if (j->id >= next_job) next_job = j->id + 1;
        j->owner = r->sess;
        j->fn = f;
        j->started_ms = now_ms();
        j->next = jobs;
        if (jobs) jobs->prev = j;
        jobs = j;
    }
    pool_sess_t *ps = PS(r->sess);
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
        t->job = j;
        t->owner = r->sess;
        t->calls = blob_new(v, vn);
        t->ncalls = ncalls;
        t->state = T_QUEUED;
        tab_add(t);
        q_push(f, t, false);
        ps->ntasks++;
        j->total++;
        j->outstanding++;
    }
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, 2);
    mpb__w_uint(b, j->id);
    mpb__w_uint(b, first_id);
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
        if (timeout == 0) {
            pool_sess_t tmp;
            (void)tmp;
            return reply_error(r, MPB_ETIMEDOUT, "no result ready");
        }
        waiter_t *w = waiter_park(r, &ps->takers, timeout);
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
 * worker's result is dropped when it comes. */
int cmd_pool_cancel(req_t *r) {
    uint64_t from, count;
    if (arg_uint(r, "first", &from) || arg_uint(r, "count", &count)) return -1;
    uint64_t n = 0;
    for (pfn_t *f = fns; f; f = f->next) {
        for (task_t *t = f->qhead, *nx; t; t = nx) {
            nx = t->qnext;
            if (t->owner != r->sess || t->id < from || t->id - from >= count) continue;
            q_del(f, t);
            t->canceled = true;
            fail_task(t, "canceled");
            n++;
        }
    }
    for (worker_t *w = workers; w; w = w->next) {
        for (task_t *t = w->running, *nx; t; t = nx) {
            nx = t->wnext;
            if (t->owner != r->sess || t->id < from || t->id - from >= count) continue;
            run_del(t);
            t->fn->running--;
            t->canceled = true;
            fail_task(t, "canceled");
            n++;
        }
    }
    pool_dispatch();
    return reply_uint(r, n);
}

static uint64_t fn_capacity(const pfn_t *f) {
    uint64_t c = 0;
    for (worker_t *w = workers; w; w = w->next)
        if (serves(w, f)) c += (uint64_t)w->concurrency;
    return c;
}

/* pool.fninfo FN -> [workers, capacity, queued, running, done, failed] */
int cmd_pool_fninfo(req_t *r) {
    const char *fname;
    uint32_t fl;
    if (arg_str(r, "function", &fname, &fl)) return -1;
    pfn_t *f = fn_get(fname, fl, false);
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, 6);
    mpb__w_uint(b, f ? f->nworkers : 0);
    mpb__w_uint(b, f ? fn_capacity(f) : 0);
    mpb__w_uint(b, f ? f->queued : 0);
    mpb__w_uint(b, f ? f->running : 0);
    mpb__w_uint(b, f ? f->done : 0);
    mpb__w_uint(b, f ? f->failed : 0);
    return 0;
}

/* pool.stats -> {workers: [...], functions: [...], jobs: [...]} for `mpb pool` */
int cmd_pool_stats(req_t *r) {
    mpb__buf_t *b = reply_begin(r);
    int64_t now = now_ms();
    mpb__w_map(b, 3);
    uint32_t nw = 0, nf = 0, nj = 0;
    for (worker_t *w = workers; w; w = w->next) nw++;
    for (pfn_t *f = fns; f; f = f->next) nf++;
    for (job_t *j = jobs; j; j = j->next) nj++;
    mpb__w_cstr(b, "workers");
    mpb__w_array(b, nw);
    for (worker_t *w = workers; w; w = w->next) {
        mpb__w_map(b, 9);
        mpb__w_cstr(b, "session");
        mpb__w_uint(b, w->sess->id);
        mpb__w_cstr(b, "host");
        mpb__w_cstr(b, w->sess->host);
        mpb__w_cstr(b, "pid");
        mpb__w_int(b, w->sess->pid);
        mpb__w_cstr(b, "functions");
        mpb__w_array(b, (uint32_t)w->nfns);
        for (size_t i = 0; i < w->nfns; i++) mpb__w_str(b, w->fns[i]->name, w->fns[i]->namelen);
        mpb__w_cstr(b, "concurrency");
        mpb__w_int(b, w->concurrency);
        mpb__w_cstr(b, "running");
        mpb__w_int(b, w->inflight);
        mpb__w_cstr(b, "done");
        mpb__w_uint(b, w->done);
        mpb__w_cstr(b, "failed");
        mpb__w_uint(b, w->failed);
        mpb__w_cstr(b, "up_s");
        mpb__w_int(b, (now - w->since_ms) / 1000);
    }
    mpb__w_cstr(b, "functions");
    mpb__w_array(b, nf);
    for (pfn_t *f = fns; f; f = f->next) {
        mpb__w_map(b, 6);
        mpb__w_cstr(b, "name");
        mpb__w_str(b, f->name, f->namelen);
        mpb__w_cstr(b, "workers");
        mpb__w_uint(b, f->nworkers);
        mpb__w_cstr(b, "queued");
        mpb__w_uint(b, f->queued);
        mpb__w_cstr(b, "running");
        mpb__w_uint(b, f->running);
        mpb__w_cstr(b, "done");
        mpb__w_uint(b, f->done);
        mpb__w_cstr(b, "failed");
        mpb__w_uint(b, f->failed);
    }
    mpb__w_cstr(b, "jobs");
    mpb__w_array(b, nj);
    for (job_t *j = jobs; j; j = j->next) {
        mpb__w_map(b, 8);
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
        mpb__w_cstr(b, "elapsed_ms");
        mpb__w_int(b, now - j->started_ms);
    }
    return 0;
}

/* ---- sessions ending, timeouts ---- */

static void worker_gone(worker_t *w) {
    fetch_del(w); /* its parked fetch was freed with the session's other waiters */
    while (w->running) {
        task_t *t = w->running;
        run_del(t);
        t->fn->running--;
        if (!t->owner) { /* its caller is gone too: nobody wants it run again */
            job_release(t);
            task_free(t);
            continue;
        }
        if (t->attempts >= g_limits.pool_max_attempts) {
            char msg[240];
            snprintf(msg, sizeof msg,
                     "task failed: its worker died %d times (last: host %s pid %lld)",
                     t->attempts, w->sess->host, (long long)w->sess->pid);
            total_abandoned++;
            fail_task(t, msg);
        } else {
            t->state = T_QUEUED;
            q_push(t->fn, t, true); /* it was the oldest: it goes first */
            total_requeued++;
        }
    }
    for (size_t i = 0; i < w->nfns; i++) w->fns[i]->nworkers--;
    if (w->prev) w->prev->next = w->next;
    else workers = w->next;
    if (w->next) w->next->prev = w->prev;
    free(w->fns);
    free(w);
}

void pool_sess_end(sess_t *s) {
    pool_sess_t *ps = s->pool;
    if (!ps) return;
    if (ps->worker) {
        log_info("worker session %llu gone: %lld running tasks go back to the queue",
                 (unsigned long long)s->id, (long long)ps->worker->inflight);
        worker_gone(ps->worker);
        ps->worker = NULL;
    }
    /* Its own tasks: the queued are dropped, the running forgotten, the finished freed. */
    for (pfn_t *f = fns; f; f = f->next)
        for (task_t *t = f->qhead, *nx; t; t = nx) {
            nx = t->qnext;
            if (t->owner != s) continue;
            q_del(f, t);
            job_release(t);
            task_free(t);
        }
    for (worker_t *w = workers; w; w = w->next)
        for (task_t *t = w->running; t; t = t->wnext)
            if (t->owner == s) t->owner = NULL;
    while (ps->done_head) {
        task_t *t = ps->done_head;
        done_del(ps, t);
        job_release(t);
        task_free(t);
    }
    for (job_t *j = jobs, *nx; j; j = nx) {
        nx = j->next;
        if (j->owner == s) {
            for (size_t i = 0; i < tabcap; i++)
                for (task_t *t = tab[i]; t; t = t->hnext)
                    if (t->job == j) t->job = NULL;
            job_free(j);
        }
    }
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

void pool_metrics(mpb__buf_t *b) {
    char line[512];
    int n;
#define OUT(...)                                                                                   \
    do {                                                                                           \
        n = snprintf(line, sizeof line, __VA_ARGS__);                                              \
        if (n > 0) mpb__w_raw(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);    \
    } while (0)
    size_t nw = 0;
    for (worker_t *w = workers; w; w = w->next) nw++;
    OUT("# HELP mpb_pool_workers Workers registered.\n# TYPE mpb_pool_workers gauge\n");
    OUT("mpb_pool_workers %zu\n", nw);
    OUT("# HELP mpb_pool_tasks Tasks by function and state (queued, running).\n"
        "# TYPE mpb_pool_tasks gauge\n");
    for (pfn_t *f = fns; f; f = f->next) {
        OUT("mpb_pool_tasks{function=\"%s\",state=\"queued\"} %llu\n", f->name,
            (unsigned long long)f->queued);
        OUT("mpb_pool_tasks{function=\"%s\",state=\"running\"} %llu\n", f->name,
            (unsigned long long)f->running);
    }
    OUT("# HELP mpb_pool_tasks_finished_total Tasks finished by function and result.\n"
        "# TYPE mpb_pool_tasks_finished_total counter\n");
    for (pfn_t *f = fns; f; f = f->next) {
        OUT("mpb_pool_tasks_finished_total{function=\"%s\",result=\"done\"} %llu\n", f->name,
            (unsigned long long)f->done);
        OUT("mpb_pool_tasks_finished_total{function=\"%s\",result=\"failed\"} %llu\n", f->name,
            (unsigned long long)f->failed);
    }
    OUT("# HELP mpb_pool_tasks_requeued_total Tasks handed to another worker after theirs died.\n"
        "# TYPE mpb_pool_tasks_requeued_total counter\nmpb_pool_tasks_requeued_total %llu\n",
        (unsigned long long)total_requeued);
    OUT("# HELP mpb_pool_tasks_abandoned_total Tasks failed after too many worker deaths.\n"
        "# TYPE mpb_pool_tasks_abandoned_total counter\nmpb_pool_tasks_abandoned_total %llu\n",
        (unsigned long long)total_abandoned);
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
        free(w->fns);
        free(w);
    }
    fetch_head = fetch_tail = NULL;
    while (fns) {
        pfn_t *f = fns;
        fns = f->next;
        free(f->name);
        free(f);
    }
    while (jobs) job_free(jobs);
}
