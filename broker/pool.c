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

#include "pool_int.h"

pool_state_t g_pool = {
    .next_task = 1,
    .next_job = 1,
    .idle = TAILQ_HEAD_INITIALIZER(g_pool.idle),
    .fetchers = TAILQ_HEAD_INITIALIZER(g_pool.fetchers),
    .fetch_waiters = WLIST_INITIALIZER(g_pool.fetch_waiters),
};

/* ---- results ---- */

/* Writes [task_id, nil, output] for running tasks of ps in [from, from + count) that wrote
 * something (when its takes want it), then [task_id, outcomes] (or [task_id, outcomes,
 * output]) for finished ones, up to a frame's worth (always at least one), removing them;
 * returns how many. */
static uint32_t take_ready(pool_sess_t *ps, uint64_t from, uint64_t count, mpb__buf_t *items) {
    uint32_t n = 0;
    size_t bytes = 0, room = g_limits.max_frame - FRAME_SLACK;
    if (ps->take_output && ps->nout) {
        uint64_t left = 0; /* what stays for the next take: out of range or of room */
        task_t *t;
        TAILQ_FOREACH(t, &ps->run, qlink) {
            if (!t->output) continue;
            size_t len = t->output->len + 16;
            if (t->id < from || t->id - from >= count || (n && bytes + len > room)) {
                left++;
                continue;
            }
            mpb__w_array(items, 3);
            mpb__w_uint(items, t->id);
            mpb__w_nil(items);
            mpb__w_array(items, t->noutput);
            mpb__w_raw(items, t->output->data, t->output->len);
            free(t->output);
            t->output = NULL;
            t->noutput = 0;
            bytes += len;
            n++;
        }
        ps->nout = left;
    }
    for (task_t *t = TAILQ_FIRST(&ps->done), *nx; t; t = nx) {
        nx = TAILQ_NEXT(t, qlink);
        if (t->id < from || t->id - from >= count) continue;
        size_t len = (t->result ? t->result->len : 1) + (t->output ? t->output->len : 0) + 16;
        if (n && bytes + len > room) break;
        mpb__w_array(items, t->output ? 3 : 2);
        mpb__w_uint(items, t->id);
        if (t->result)
            mpb__w_raw(items, t->result->data, t->result->len);
        else
            mpb__w_array(items, 0);
        if (t->output) {
            mpb__w_array(items, t->noutput);
            mpb__w_raw(items, t->output->data, t->output->len);
        }
        bytes += len;
        pool_done_del(ps, t);
        pool_job_release(t);
        pool_task_free(t);
        n++;
    }
    pool_ps_check_pause(ps);
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
void pool_finish(task_t *t) {
    persist_task_done(t->id, t->failed, t->canceled, t->result); /* the log has its outcome */
    t->state = T_DONE;
    pfn_t *f = t->fn;
    if (t->canceled)
        f->canceled++;
    else if (t->failed)
        f->failed++;
    else
        f->done++;
    if (t->job) {
        if (t->canceled)
            t->job->canceled++;
        else if (t->failed)
            t->job->failed++;
        else
            t->job->done++;
    }
    if (!t->owner) { /* nobody will take it */
        pool_job_release(t);
        pool_task_free(t);
        return;
    }
    pool_sess_t *ps = t->owner->pool;
    ps->queued_bytes -= t->cost;
    pool_done_push(ps, t);
    pool_ps_check_pause(ps);
    pool_wake_taker(ps, t->id);
}

/* Answers the parked pool.take of ps that covers task id, if any. */
void pool_wake_taker(pool_sess_t *ps, uint64_t id) {
    waiter_t *w;
    TAILQ_FOREACH(w, &ps->takers.head, link) {
        if (id >= w->tid && id - w->tid < (uint64_t)w->count) {
            answer_take(w, ps);
            break;
        }
    }
}

/* Fails every call of t with msg. */
void pool_fail_task(task_t *t, const char *msg) {
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
    pool_finish(t);
}

/* Takes an unfinished task off its queue or worker. */
void pool_unqueue(task_t *t) {
    if (t->state == T_QUEUED) {
        pool_q_del(t);
    } else if (t->state == T_RUNNING) {
        pool_unassign(t);
        if (t->owner) pool_run_unlink(t->owner->pool, t);
    }
}

/* A task its worker holds is finished here (cancelled, or its caller is gone): the worker is
 * told, and drops it, kills the process running it, or (on a thread, which cannot be killed)
 * lets the function see mpb_task_cancelled(). Its slot counts as free at once. */
static void kill_notice(task_t *t) {
    worker_t *w = t->worker;
    if (!w) return;
    mpb__w_array(&w->kills, 2);
    mpb__w_uint(&w->kills, t->id);
    mpb__w_uint(&w->kills, t->gen);
    w->nkills++;
    if (t->started && w->killable) g_pool.total_killed++;
}

void pool_cancel_task(task_t *t) {
    if (t->state == T_RUNNING) kill_notice(t);
    pool_unqueue(t);
    t->canceled = true;
    pool_fail_task(t, "canceled");
}

/* ---- dispatch ---- */

bool pool_serves(const worker_t *w, const pfn_t *f) {
    for (size_t i = 0; i < w->nfns; i++)
        if (w->fns[i] == f) return true;
    return false;
}

/* The next task for w: among its functions the oldest of the tasks whose turn it is. Callers
 * over their result bound are not in the rings. */
static task_t *next_for(worker_t *w) {
    task_t *best = NULL;
    for (size_t i = 0; i < w->nfns; i++) {
        oq_t *q = TAILQ_FIRST(&w->fns[i]->ring);
        task_t *first = q ? TAILQ_FIRST(&q->tasks) : NULL;
        if (first && (!best || first->id < best->id)) best = first;
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
    pool_assign(w, t, started);
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
        pool_ring_turn(t->oq);
        pool_q_del(t);
        pool_run_link(t->owner->pool, t);
        plan_add(w, t);
    }
}

/* An idle slot beside a waiting task: w takes tasks another worker holds but has not started
 * (newest first, the last that worker would reach). That worker learns it when it asks to
 * start one: the attempt number it names is no longer the task's. */
static void steal_for(worker_t *w) {
    for (worker_t *v = LIST_FIRST(&g_pool.workers); v && g_pool.ntentative;
         v = LIST_NEXT(v, link)) {
        if (v == w) continue;
        for (task_t *t = TAILQ_LAST(&v->assigned, task_list), *pv; t; t = pv) {
            pv = TAILQ_PREV(t, task_list, wlink);
            if (w_idle(w) <= 0 || w_credit(w) <= 0) return;
            if (t->started || !pool_serves(w, t->fn) || !plan_room(w, t)) continue;
            pool_unassign(t);
            t->attempts--; /* a steal is not an attempt that failed */
            v->stolen++;
            w->steals++;
            g_pool.total_steals++;
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
    pool_fetch_del(w);
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
void pool_dispatch(void) {
    worker_t *w, *nx;
    TAILQ_FOREACH(w, &g_pool.fetchers, flink) {
        if (w_idle(w) > 0) plan_queued(w, true);
    }
    TAILQ_FOREACH(w, &g_pool.fetchers, flink) {
        plan_queued(w, false);
    }
    for (w = TAILQ_FIRST(&g_pool.fetchers); w && g_pool.ntentative; w = TAILQ_NEXT(w, flink))
        if (w_idle(w) > 0 && w_credit(w) > 0) steal_for(w);
    for (w = TAILQ_FIRST(&g_pool.fetchers); w; w = nx) {
        nx = TAILQ_NEXT(w, flink);
        plan_send(w); /* takes w off the list */
    }
}

/* pool.fetch MAX TIMEOUT_MS -> [[task_id, fn, calls], ...]: up to MAX tasks within the
 * worker's credit, parked until there is at least one. */
int cmd_pool_fetch(req_t *r) {
    int64_t max, timeout;
    if (arg_int(r, "max", &max) || arg_timeout(r, &timeout)) return -1;
    pool_sess_t *ps = pool_ps(r->sess);
    worker_t *w = ps->worker;
    if (!w) return reply_error(r, MPB_EINVAL, "pool.fetch before pool.register");
    if (w->fetching) return reply_error(r, MPB_EBUSY, "a fetch is already waiting");
    if (max < 0) max = 0; /* 0: no task, only word of tasks to stop */
    w->fetch_max = max;
    pool_fetch_add(w, waiter_park(r, &g_pool.fetch_waiters, timeout));
    w->fetch->on_timeout = pool_on_timeout;
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
    pool_sess_t *ps = pool_ps(r->sess);
    if (r->argc > 3 && arg_bool(r, "output", &ps->take_output)) return -1;
    bool any = false;
    for (task_t *t = TAILQ_FIRST(&ps->done); t && !any; t = TAILQ_NEXT(t, qlink))
        any = t->id >= from && t->id - from < count;
    if (ps->take_output) /* what a running task wrote counts as something to take */
        for (task_t *t = ps->nout ? TAILQ_FIRST(&ps->run) : NULL; t && !any;
             t = TAILQ_NEXT(t, qlink))
            any = t->output && t->id >= from && t->id - from < count;
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

/* ---- sessions ending, timeouts ---- */

/* t (off its worker and its owner's running list) ran where something died: back to the front
 * of its queue as a retry, or failed after pool-max-attempts ("task failed: its worker died 3
 * times ..."; what: "its worker" or "its process"). */
void pool_requeue_or_fail(task_t *t, const worker_t *w, const char *what) {
    if (t->attempts >= g_limits.pool_max_attempts) {
        char msg[240];
        snprintf(msg, sizeof msg, "task failed: %s died %d times (last: host %s pid %lld)", what,
                 t->attempts, w->sess->host, (long long)w->sess->pid);
        g_pool.total_abandoned++;
        pool_fail_task(t, msg);
        return;
    }
    t->state = T_QUEUED;
    pool_q_push(t, true); /* it was among the oldest: it goes first */
    g_pool.total_requeued++;
    t->retry = true;
}

/* A worker leaves: died (its session ended; what it held counts as an attempt) or
 * unregistered (it does not). */
void pool_worker_gone(worker_t *w, bool died) {
    pool_fetch_del(w); /* a dead worker's parked fetch was freed with the session's other waiters */
    while (!TAILQ_EMPTY(&w->assigned)) {
        task_t *t = TAILQ_FIRST(&w->assigned);
        pool_unassign(t);
        if (!t->owner) { /* its caller is gone too: nobody wants it run again */
            pool_job_release(t);
            pool_task_free(t);
            continue;
        }
        pool_run_unlink(t->owner->pool, t);
        if (!died) {
            t->attempts--;
            t->state = T_QUEUED;
            pool_q_push(t, true); /* it was among the oldest: it goes first */
        } else {
            pool_requeue_or_fail(t, w, "its worker");
        }
    }
    for (size_t i = 0; i < w->nfns; i++) {
        w->fns[i]->nworkers--;
        pool_fn_unref(w->fns[i]);
    }
    LIST_REMOVE(w, link);
    mpb__buf_free(&w->plan);
    mpb__buf_free(&w->kills);
    free(w->fns);
    free(w);
}

void pool_sess_end(sess_t *s) {
    pool_sess_t *ps = s->pool;
    if (!ps) return;
    if (ps->worker) {
        log_kv(MPB_LOG_INFO, "worker gone: its running tasks go back to the queue", "session",
               LOG_UINT(s->id), "tasks", LOG_INT(ps->worker->inflight), NULL);
        pool_worker_gone(ps->worker, true);
        ps->worker = NULL;
    }
    /* Its own tasks: the queued are dropped, the running forgotten, the finished freed; each
     * list is its own, so this costs what it owned. */
    while (!LIST_EMPTY(&ps->oqs)) {
        task_t *t = TAILQ_FIRST(&LIST_FIRST(&ps->oqs)->tasks);
        pool_q_del(t); /* frees the sub-queue with its last task */
        pool_job_release(t);
        pool_task_free(t);
    }
    while (!TAILQ_EMPTY(&ps->run)) {
        task_t *t = TAILQ_FIRST(&ps->run);
        pool_run_unlink(ps, t);
        t->owner = NULL;
        t->job = NULL; /* its job goes below */
        /* stopped now rather than forgotten later; a thread, which cannot be stopped, keeps
         * its slot busy until the task ends */
        if (t->worker && t->worker->killable) {
            kill_notice(t);
            pool_unassign(t);
            pool_task_free(t);
        }
    }
    while (!TAILQ_EMPTY(&ps->done)) {
        task_t *t = TAILQ_FIRST(&ps->done);
        pool_done_del(ps, t);
        pool_job_release(t);
        pool_task_free(t);
    }
    while (!LIST_EMPTY(&ps->jobs))
        pool_job_free(LIST_FIRST(&ps->jobs));
    LIST_REMOVE(ps, link);
    free(ps);
    s->pool = NULL;
    pool_dispatch();
}

void pool_on_timeout(waiter_t *w) {
    if (w->op == MPB_OP_POOL_FETCH) {
        pool_sess_t *ps = w->sess->pool;
        if (ps && ps->worker) pool_fetch_del(ps->worker);
        waiter_reply_raw(w, (const uint8_t *)"\x90", 1); /* no task: an empty list */
        waiter_free(w);
        return;
    }
    waiter_reply_error(w, MPB_ETIMEDOUT, "no result ready before the timeout");
    waiter_free(w);
}
