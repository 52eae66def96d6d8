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
/* pool.c: a session ends (its worker's tasks go back to the queue, its own are cancelled);
 * a parked pool request times out; metrics. */
void pool_sess_end(sess_t *s);
void pool_on_timeout(waiter_t *w);
void pool_metrics(mpb__buf_t *b);
void pool_free_all(void);

#endif
