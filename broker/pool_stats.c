/* pool_stats.c - what the Pool says about itself: pool.fninfo, pool.stats and its metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"

/* A map's number fields, in order (counts stay far below 2^63: written as msgpack writes a
 * uint). */
typedef struct kv {
    const char *key;
    int64_t v;
} kv_t;

static void w_kvs(mpb__buf_t *b, const kv_t *kv, size_t n) {
    for (size_t i = 0; i < n; i++) {
        mpb__w_cstr(b, kv[i].key);
        mpb__w_int(b, kv[i].v);
    }
}

static uint64_t fn_capacity(const pfn_t *f) {
    uint64_t c = 0;
    for (worker_t *w = LIST_FIRST(&g_pool.workers); w; w = LIST_NEXT(w, link))
        if (pool_serves(w, f)) c += (uint64_t)w->concurrency;
    return c;
}

/* Splits every function's assigned tasks into running and prefetched: a worker runs the
 * oldest `concurrency` of the tasks it may start, the rest wait in its prefetch. */
static void split_assigned(void) {
    for (pfn_t *f = LIST_FIRST(&g_pool.fns); f; f = LIST_NEXT(f, link))
        f->st_run = f->st_pre = 0;
    for (worker_t *w = LIST_FIRST(&g_pool.workers); w; w = LIST_NEXT(w, link)) {
        int64_t k = 0;
        task_t *t;
        TAILQ_FOREACH(t, &w->assigned, wlink) {
            if (t->started && k++ < w->concurrency)
                t->fn->st_run++;
            else
                t->fn->st_pre++;
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
    pfn_t *f = pool_fn_get(fname, fl, false);
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
    for (worker_t *w = LIST_FIRST(&g_pool.workers); w; w = LIST_NEXT(w, link))
        nw++;
    for (pfn_t *f = LIST_FIRST(&g_pool.fns); f; f = LIST_NEXT(f, link))
        nf++;
    for (job_t *j = LIST_FIRST(&g_pool.jobs); j; j = LIST_NEXT(j, link))
        nj++;
    for (pool_sess_t *ps = LIST_FIRST(&g_pool.sesses); ps; ps = LIST_NEXT(ps, link))
        nc += ps->nqueued + ps->nrunning + ps->ndone > 0;
    mpb__w_cstr(b, "workers");
    mpb__w_array(b, nw);
    for (worker_t *w = LIST_FIRST(&g_pool.workers); w; w = LIST_NEXT(w, link)) {
        mpb__w_map(b, 15);
        sess_describe(w->sess, b);
        mpb__w_cstr(b, "functions");
        mpb__w_array(b, (uint32_t)w->nfns);
        for (size_t i = 0; i < w->nfns; i++)
            mpb__w_str(b, w->fns[i]->name, w->fns[i]->namelen);
        int64_t run = w_running(w);
        const kv_t kv[] = {
            {"concurrency", w->concurrency            },
            {"running",     run                       },
            {"prefetched",  w->inflight - run         },
            {"done",        (int64_t)w->done          },
            {"failed",      (int64_t)w->failed        },
            {"up_s",        (now - w->since_ms) / 1000},
            {"steals",      (int64_t)w->steals        },
            {"stolen",      (int64_t)w->stolen        },
            {"retries",     (int64_t)w->retries       },
            {"refused",     (int64_t)w->refused       }
        };
        w_kvs(b, kv, sizeof kv / sizeof kv[0]);
        /* the running ones, oldest first: [task_id, age_ms] */
        int64_t nrun = w_running(w), k = 0, now_u = now_us();
        mpb__w_cstr(b, "tasks");
        mpb__w_array(b, (uint32_t)nrun);
        for (task_t *t = TAILQ_FIRST(&w->assigned); t && k < nrun; t = TAILQ_NEXT(t, wlink)) {
            if (!t->started) continue;
            mpb__w_array(b, 2);
            mpb__w_uint(b, t->id);
            mpb__w_int(b, (now_u - t->start_us) / 1000);
            k++;
        }
    }
    mpb__w_cstr(b, "functions");
    mpb__w_array(b, nf);
    for (pfn_t *f = LIST_FIRST(&g_pool.fns); f; f = LIST_NEXT(f, link)) {
        mpb__w_map(b, 9);
        mpb__w_cstr(b, "name");
        mpb__w_str(b, f->name, f->namelen);
        const kv_t kv[] = {
            {"workers",    (int64_t)f->nworkers},
            {"queued",     (int64_t)f->queued  },
            {"paused",     (int64_t)f->paused  },
            {"running",    (int64_t)f->st_run  },
            {"prefetched", (int64_t)f->st_pre  },
            {"done",       (int64_t)f->done    },
            {"failed",     (int64_t)f->failed  },
            {"canceled",   (int64_t)f->canceled}
        };
        w_kvs(b, kv, sizeof kv / sizeof kv[0]);
    }
    mpb__w_cstr(b, "jobs");
    mpb__w_array(b, nj);
    for (job_t *j = LIST_FIRST(&g_pool.jobs); j; j = LIST_NEXT(j, link)) {
        mpb__w_map(b, 9);
        mpb__w_cstr(b, "id");
        mpb__w_uint(b, j->id);
        mpb__w_cstr(b, "function");
        mpb__w_str(b, j->fn->name, j->fn->namelen);
        mpb__w_cstr(b, "session");
        mpb__w_uint(b, j->owner ? j->owner->id : 0);
        mpb__w_cstr(b, "host");
        mpb__w_cstr(b, j->owner ? j->owner->host : "");
        const kv_t kv[] = {
            {"total",      (int64_t)j->total   },
            {"done",       (int64_t)j->done    },
            {"failed",     (int64_t)j->failed  },
            {"canceled",   (int64_t)j->canceled},
            {"elapsed_ms", now - j->started_ms }
        };
        w_kvs(b, kv, sizeof kv / sizeof kv[0]);
    }
    mpb__w_cstr(b, "callers");
    mpb__w_array(b, nc);
    for (pool_sess_t *ps = LIST_FIRST(&g_pool.sesses); ps; ps = LIST_NEXT(ps, link)) {
        if (!(ps->nqueued + ps->nrunning + ps->ndone)) continue;
        mpb__w_map(b, 9);
        sess_describe(ps->sess, b);
        const kv_t kv[] = {
            {"queued",       (int64_t)ps->nqueued     },
            {"running",      (int64_t)ps->nrunning    },
            {"held",         (int64_t)ps->ndone       },
            {"queued_bytes", (int64_t)ps->queued_bytes},
            {"held_bytes",   (int64_t)ps->held_bytes  }
        };
        w_kvs(b, kv, sizeof kv / sizeof kv[0]);
        mpb__w_cstr(b, "paused");
        mpb__w_bool(b, ps->paused);
    }
    return 0;
}

void pool_totals(pool_totals_t *c) {
    *c = (pool_totals_t){.requeued = g_pool.total_requeued,
                         .abandoned = g_pool.total_abandoned,
                         .steals = g_pool.total_steals,
                         .refusals = g_pool.total_refusals,
                         .killed = g_pool.total_killed};
    for (worker_t *w = LIST_FIRST(&g_pool.workers); w; w = LIST_NEXT(w, link))
        c->workers++;
    for (pool_sess_t *ps = LIST_FIRST(&g_pool.sesses); ps; ps = LIST_NEXT(ps, link)) {
        c->callers_paused += ps->paused;
        c->results_held_bytes += ps->held_bytes;
        c->unfinished_bytes += ps->queued_bytes;
    }
}

void pool_each_fn(void (*each)(void *ctx, const pool_fn_counts_t *c), void *ctx) {
    split_assigned();
    for (pfn_t *f = LIST_FIRST(&g_pool.fns); f; f = LIST_NEXT(f, link)) {
        pool_fn_counts_t c = {f->name,   f->namelen, f->queued, f->paused,  f->st_run,
                              f->st_pre, f->done,    f->failed, f->canceled};
        each(ctx, &c);
    }
}
