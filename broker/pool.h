/* pool.h - the remote task pool (pool.c): its ops, and what the session code and /metrics
 * ask of it. */
#ifndef BROKER_POOL_H
#define BROKER_POOL_H

#include "req.h"
#include "sess.h"
#include "waiter.h"

int cmd_pool_register(req_t *r);
int cmd_pool_fetch(req_t *r);
int cmd_pool_done(req_t *r);
int cmd_pool_submit(req_t *r);
int cmd_pool_take(req_t *r);
int cmd_pool_cancel(req_t *r);
int cmd_pool_stats(req_t *r);
int cmd_pool_fninfo(req_t *r);
int cmd_pool_unregister(req_t *r);
int cmd_pool_start(req_t *r);
int cmd_pool_output(req_t *r);
/* pool.c: a session ends (its worker's tasks go back to the queue, its own are cancelled);
 * a parked pool request times out; metrics. */
void pool_sess_end(sess_t *s);
void pool_on_timeout(waiter_t *w);
/* The pool's numbers, which metrics_render.c writes as Prometheus text. */
typedef struct pool_totals {
    size_t workers, callers_paused, results_held_bytes, unfinished_bytes;
    uint64_t requeued, abandoned, steals, refusals, killed;
} pool_totals_t;
typedef struct pool_fn_counts {
    const char *name;
    uint32_t namelen;
    uint64_t queued, paused, running, prefetched; /* tasks now */
    uint64_t done, failed, canceled;              /* tasks finished */
} pool_fn_counts_t;
void pool_totals(pool_totals_t *c);
/* Calls each(ctx, counts) for every function the pool knows, newest first. */
void pool_each_fn(void (*each)(void *ctx, const pool_fn_counts_t *c), void *ctx);
void pool_free_all(void);

#endif
