/* pool_cmd.c - the Pool's ops but fetch and take (pool.c): workers register, start, finish
 * and unregister; callers submit and cancel. See pool.c for the picture. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"

/* ---- ops for workers ---- */

/* Answers w's parked fetch with no task. */
static void fetch_answer_empty(worker_t *w) {
    waiter_t *fw = w->fetch;
    pool_fetch_del(w);
    waiter_reply_raw(fw, (const uint8_t *)"\x90", 1);
    waiter_free(fw);
}

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
            return reply_error(r, MPB_EINVAL,
                               "function %u: names are 1 to 255 printable characters", i);
    }
    r->args = q;
    bool killable = false;
    if (arg_int(r, "concurrency", &conc) || arg_int(r, "prefetch", &pre)) return -1;
    if (r->argc > 3 && arg_bool(r, "killable", &killable)) return -1;
    if (conc < 1 || conc > 100000)
        return reply_error(r, MPB_EINVAL, "concurrency must be 1..100000");
    if (pre < 0 || pre > 100000) return reply_error(r, MPB_EINVAL, "prefetch must be 0..100000");
    pool_sess_t *ps = pool_ps(r->sess);
    if (ps->worker) return reply_error(r, MPB_EBUSY, "this session is already a worker");
    worker_t *w = xcalloc(1, sizeof *w);
    TAILQ_INIT(&w->assigned);
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
        pfn_t *f = pool_fn_get(s, sl, true);
        if (pool_serves(w, f)) continue;
        pool_fn_ref(f);
        w->fns[w->nfns++] = f;
        f->nworkers++;
    }
    LIST_INSERT_HEAD(&g_pool.workers, w, link);
    ps->worker = w;
    char served[300] = ""; /* enough: the log cuts a value at 256 bytes */
    size_t k = 0;
    for (size_t i = 0; i < w->nfns && k < sizeof served; i++)
        k += (size_t)snprintf(served + k, sizeof served - k, "%s%.*s", i ? "," : "",
                              (int)w->fns[i]->namelen, w->fns[i]->name);
    log_kv(MPB_LOG_INFO, "worker registered", "session", LOG_UINT(r->sess->id), "host",
           r->sess->host, "pid", LOG_INT(r->sess->pid), "functions", served, "concurrency",
           LOG_INT(conc), NULL);
    return reply_nil(r);
}

/* The process a task ran in died (the worker lives on): as for a worker's death, the task goes
 * back to the queue, or fails after pool-max-attempts. */
static void task_died(worker_t *w, task_t *t) {
    pool_unassign(t);
    if (!t->owner) { /* its caller is gone: nobody wants it run again */
        pool_job_release(t);
        pool_task_free(t);
        return;
    }
    pool_run_unlink(t->owner->pool, t);
    pool_requeue_or_fail(t, w, "its process");
}

/* A task of f took us from its start to its done (round trip included). */
static void fn_sample(pfn_t *f, int64_t us) {
    f->avg_us = f->samples ? (f->avg_us * 3 + us) / 4 : us;
    if (f->samples < UINT32_MAX) f->samples++;
}

/* The worker behind a worker's op and the array it takes: 0, or -1 when it replied an error. */
static int worker_list(req_t *r, const char *op, worker_t **w, mpb__rd_t *q, uint32_t *n) {
    *w = pool_ps(r->sess)->worker;
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
        task_t *t = pool_tab_get(id);
        if (!t || t->state != T_RUNNING || t->worker != w || t->gen != gen) {
            w->refused++;
            g_pool.total_refusals++;
            continue;
        }
        if (!t->started) {
            t->started = true;
            t->timed = w->committed < w->concurrency;
            t->start_us = now_us();
            w->committed++;
            g_pool.ntentative--;
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

/* Checks output, an array of [stream (1 or 2), bin] items: its items (without the array's
 * header) in *items, *ilen and *n. -1 if malformed. */
static int output_check(const uint8_t *output, size_t len, const uint8_t **items, size_t *ilen,
                        uint32_t *n) {
    mpb__rd_t r = {output, output + len};
    if (mpb__rd_array(&r, n)) return -1;
    *items = r.p;
    for (uint32_t i = 0; i < *n; i++) {
        uint32_t two, bl;
        int64_t stream;
        const uint8_t *b;
        if (mpb__rd_array(&r, &two) || two != 2 || mpb__rd_int(&r, &stream) || stream < 1 ||
            stream > 2 || mpb__rd_bin(&r, &b, &bl))
            return -1;
    }
    *ilen = (size_t)(r.p - *items);
    return 0;
}

/* Adds n checked items to what t wrote and its caller has not taken; what would take that
 * past max_value is dropped (the result matters more). */
static void output_append(task_t *t, const uint8_t *items, size_t ilen, uint32_t n) {
    size_t have = t->output ? t->output->len : 0;
    if (!n || have + ilen > g_limits.max_value) return;
    t->output = xrealloc(t->output, sizeof *t->output + have + ilen);
    memcpy(t->output->data + have, items, ilen);
    t->output->len = (uint32_t)(have + ilen);
    t->noutput += n;
}

/* pool.output [[task_id, attempt, output], ...] -> nil: what running tasks wrote so far
 * (output: [[stream, bytes], ...], stream 1 stdout, 2 stderr), for their callers' takes;
 * dropped for a task this worker no longer runs under that attempt. */
int cmd_pool_output(req_t *r) {
    worker_t *w;
    uint32_t n;
    mpb__rd_t q;
    if (worker_list(r, "pool.output", &w, &q, &n)) return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t three, k;
        uint64_t id, gen;
        const uint8_t *output, *items;
        size_t len, ilen;
        if (mpb__rd_array(&q, &three) || three != 3 || mpb__rd_uint(&q, &id) ||
            mpb__rd_uint(&q, &gen) || mpb__rd_span(&q, &output, &len))
            return reply_error(r, MPB_EPROTO,
                               "pool.output item %u is not [task_id, attempt, output]", i);
        if (output_check(output, len, &items, &ilen, &k))
            return reply_error(r, MPB_EPROTO,
                               "pool.output item %u: output must be [[stream, bin], ...]", i);
        task_t *t = pool_tab_get(id);
        if (!t || t->state != T_RUNNING || t->worker != w || t->gen != gen || !t->owner) continue;
        uint32_t had = t->noutput;
        output_append(t, items, ilen, k);
        if (t->noutput == had) continue;
        pool_sess_t *ps = t->owner->pool;
        ps->nout++;
        if (ps->take_output) pool_wake_taker(ps, id);
    }
    return reply_nil(r);
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
            task_t *t = pool_tab_get(id);
            if (t && t->state == T_RUNNING && t->worker == w) task_died(w, t);
            continue;
        }
        mpb__rd_t o = q;
        if (mpb__rd_span(&q, &out, &outlen) || mpb__rd_array(&o, &nout))
            return reply_error(r, MPB_EPROTO, "pool.done item %u: outcomes must be an array", i);
        const uint8_t *output = NULL, *items = NULL; /* [[stream, bytes], ...]: what it wrote */
        size_t outputlen = 0, ilen = 0;
        uint32_t nitems = 0;
        if (two == 3 && (mpb__rd_span(&q, &output, &outputlen) ||
                         output_check(output, outputlen, &items, &ilen, &nitems)))
            return reply_error(r, MPB_EPROTO,
                               "pool.done item %u: output must be [[stream, bin], ...]", i);
        task_t *t = pool_tab_get(id);
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
        pool_unqueue(t);
        char msg[160];
        if (nout != t->ncalls || big) {
            if (big)
                snprintf(msg, sizeof msg, "result of %zu bytes > max_value %zu", big,
                         g_limits.max_value);
            else
                snprintf(msg, sizeof msg, "worker returned %u results for %u calls", nout,
                         t->ncalls);
            w->failed++;
            pool_fail_task(t, msg);
            continue;
        }
        t->result = blob_new(out, outlen);
        output_append(t, items, ilen, nitems);
        t->failed = failed;
        if (failed)
            w->failed++;
        else
            w->done++;
        pool_finish(t);
    }
    pool_dispatch();
    /* A fetch parked without credit (only for tasks to stop) is answered: the worker has
     * credit again and asks for tasks next, rather than wait out that fetch. */
    if (w->fetching && w->fetch_max == 0) fetch_answer_empty(w);
    return reply_nil(r);
}

/* pool.unregister -> nil: this session serves no more; what it still holds goes back to the
 * queues (not counted as an attempt), its parked fetch is answered with an empty array. */
int cmd_pool_unregister(req_t *r) {
    pool_sess_t *ps = pool_ps(r->sess);
    worker_t *w = ps->worker;
    if (!w) return reply_error(r, MPB_EINVAL, "this session is not a worker");
    if (w->fetching) fetch_answer_empty(w);
    log_kv(MPB_LOG_INFO, "worker unregistered: its held tasks go back to the queue", "session",
           LOG_UINT(r->sess->id), "tasks", LOG_INT(w->inflight), NULL);
    pool_worker_gone(w, false);
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
        if (jobid == 0 || jobid >= g_pool.next_job)
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
                return reply_error(r, MPB_ETYPE, "task %u call %u: arguments must be an array", i,
                                   k);
            mpb__rd_span(&c, &v, &vn);
        }
        mpb__rd_span(&q, &v, &vn);
        if (vn > g_limits.max_value)
            return reply_error(r, MPB_ETOOBIG, "task of %zu bytes > max_value %zu", vn,
                               g_limits.max_value);
        cost += sizeof(task_t) + sizeof(blob_t) + vn;
    }
    pool_sess_t *ps = pool_ps(r->sess);
    if (ps->queued_bytes + cost > pool_max_queued())
        return reply_error(r, MPB_ELIMIT,
                           "unfinished tasks of this session would hold %zu bytes > "
                           "pool-max-queued %zu: wait for results before submitting more",
                           ps->queued_bytes + cost, pool_max_queued());
    pfn_t *f = pool_fn_get(fname, fl, true);
    pool_fn_ref(f); /* held while this runs, so an empty entry is not freed under it */
    job_t *j = NULL;
    if (jmode == J_GIVEN && !(j = pool_job_find(ps, jobid)))
        j = pool_job_new(ps, jobid, f); /* finished and freed: it goes on under the same id */
    else if (jmode == J_NEW)
        j = pool_job_new(ps, g_pool.next_job++, f);
    uint64_t first_id = g_pool.next_task;
    q = first;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *v;
        size_t vn;
        mpb__rd_t c = q;
        uint32_t ncalls;
        mpb__rd_array(&c, &ncalls);
        mpb__rd_span(&q, &v, &vn);
        task_t *t = xcalloc(1, sizeof *t);
        t->id = g_pool.next_task++;
        t->fn = f;
        pool_fn_ref(f);
        t->job = j;
        t->owner = r->sess;
        t->calls = blob_new(v, vn);
        t->ncalls = ncalls;
        t->state = T_QUEUED;
        t->cost = sizeof(task_t) + sizeof(blob_t) + vn;
        ps->queued_bytes += t->cost;
        pool_tab_add(t);
        pool_q_push(t, false);
        if (j) {
            j->total++;
            j->outstanding++;
        }
    }
    pool_fn_unref(f);
    mpb__buf_t *rb = reply_begin(r);
    mpb__w_array(rb, 2);
    mpb__w_uint(rb, j ? j->id : 0);
    mpb__w_uint(rb, first_id);
    pool_dispatch();
    return 0;
}

/* pool.cancel FIRST COUNT -> how many were cancelled: this session's queued tasks in the range
 * finish at once as failed with "canceled"; running ones finish the same way, and their
 * worker's result is dropped when it comes. Costs min(COUNT, the session's unfinished tasks). */
int cmd_pool_cancel(req_t *r) {
    uint64_t from, count;
    if (arg_uint(r, "first", &from) || arg_uint(r, "count", &count)) return -1;
    pool_sess_t *ps = pool_ps(r->sess);
    uint64_t n = 0, mine = ps->nqueued + ps->nrunning;
#define IN_RANGE(t) ((t)->id >= from && (t)->id - from < count)
    if (count <= 2 * mine + 64) {
        for (uint64_t k = 0; k < count && mine; k++) {
            task_t *t = pool_tab_get(from + k);
            if (!t || t->owner != r->sess || t->state == T_DONE) continue;
            pool_cancel_task(t);
            mine--;
            n++;
        }
    } else { /* a wide range: walk what the session has instead */
        for (oq_t *q = LIST_FIRST(&ps->oqs), *qn; q; q = qn) {
            qn = LIST_NEXT(q, olink);
            for (task_t *t = TAILQ_FIRST(&q->tasks), *tn; t; t = tn) {
                tn = TAILQ_NEXT(t, qlink); /* the last one frees q */
                if (!IN_RANGE(t)) continue;
                pool_cancel_task(t);
                n++;
            }
        }
        for (task_t *t = TAILQ_FIRST(&ps->run), *tn; t; t = tn) {
            tn = TAILQ_NEXT(t, qlink);
            if (!IN_RANGE(t)) continue;
            pool_cancel_task(t);
            n++;
        }
    }
#undef IN_RANGE
    pool_dispatch();
    return reply_uint(r, n);
}
