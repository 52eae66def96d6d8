/* pool.h - what the parts of libmpb's Pool share (pool.c, pool_submit.c, pool_async.c,
 * pool_imap.c): the pool, AsyncResult and imap iterator structs, and the routing of results.
 * Never installed. */
#ifndef MPB_CLIENT_POOL_H
#define MPB_CLIENT_POOL_H

#include "internal.h"

enum { A_APPLY, A_MAP, A_IMAP };

/* Where a task's result goes. */
typedef struct route {
    uint64_t id;
    void *owner; /* mpb_async_t or mpb_imap_t */
    int kind;
    uint64_t index;    /* the task's place in its owner */
    UT_hash_handle hh; /* in prt_t.r, by id */
} route_t;

/* Per client (c->pool_rt): the routing table and the one outstanding take. */
typedef struct prt {
    route_t *r;
    bool take_out;
} prt_t;

struct mpb_pool {
    mpb_client_t *c;
    bool closed;
    LIST_HEAD(, mpb_async) asyncs; /* outstanding or kept */
    size_t outstanding;
    LIST_HEAD(, mpb_imap) imaps;     /* its iterators, so terminate and free reach them */
    STAILQ_HEAD(, mpb_async) notify; /* finished, callback not yet run */
    bool notifying;
    size_t submitting; /* applies whose pool.submit is not answered yet */
    mpb_output_cb out_cb;
    void *out_arg;
    int deferred; /* an apply without a handle failed to submit: the next apply says so */
    char deferred_msg[512];
    LIST_ENTRY(mpb_pool) clink; /* in its client's pools (async_thread.c) */
};

struct mpb_async {
    mpb_pool_t *p;
    int kind;
    char fn[256];
    uint64_t ntasks, ndone;
    uint8_t **outs; /* per task: its outcomes array (copied) */
    size_t *outlens;
    uint64_t *firsts, *counts; /* submitted id ranges, for cancel */
    size_t nranges;
    bool ready, canceled, kept_by_pool, freed;
    int status;
    char msg[512];
    char ekind[64]; /* the failed call's error kind, "" when none */
    mpb__buf_t result;
    mpb_result_cb cb;
    mpb_error_cb ecb;
    void *arg;
    LIST_ENTRY(mpb_async) link;    /* in its pool's asyncs */
    STAILQ_ENTRY(mpb_async) nlink; /* in its pool's notify queue */
    bool notify_pending;
    bool submitting; /* its pool.submit is not answered yet */
};

typedef struct islot {
    uint8_t *out; /* outcomes of the chunk, NULL until it arrives */
    size_t len;
    uint32_t pos, n; /* next item to hand out, items in it */
    bool used;
} islot_t;

struct mpb_imap {
    mpb_pool_t *p;
    char fn[256];
    mpb_next_fn next;
    void *arg;
    size_t chunksize, window;
    bool ordered, input_done;
    int input_err; /* next() failed, or gave a bad item: reported after the results before it */
    int fail;      /* results will not come (connection lost, out of memory): reported at once */
    uint64_t submitted, consumed; /* chunks */
    islot_t *slots;               /* ring of window, by chunk sequence */
    uint64_t job;
    uint64_t *ids;       /* task id per slot */
    bool canceled;       /* by terminate(): no more results */
    char input_msg[160]; /* why input_err, when it is not next()'s own error */
    mpb__buf_t carry;    /* an item read from next() that did not fit in the last chunk */
    bool has_carry;
    LIST_ENTRY(mpb_imap) ilink; /* in its pool's imaps */
};

/* Applies in flight before an apply waits for their pool.submit replies: enough to fill a
 * frame with small ones, few enough that an error (ELIMIT) comes back soon. */
#define SUBMIT_WINDOW 64

/* Task id ranges to cancel (pool_async.c), merged where they touch. */
typedef struct range {
    uint64_t first, count;
} range_t;

typedef struct ranges {
    range_t *v;
    size_t n, cap;
} ranges_t;

/* ---- between the parts ---- */

/* pool.c: routes (a task id to its owner and place); a result's remote error as a message;
 * an AsyncResult finished (its callback queued); the queue of callbacks to run, run when the
 * caller is next in a pool call; the one parked pool.take kept out while tasks are routed. */
int mpb__pool_route_add(mpb_client_t *c, uint64_t id, void *owner, int kind, uint64_t index);
void mpb__pool_route_forget(mpb_client_t *c, void *owner);
void mpb__pool_remote_msg(char *out, size_t n, const char *fn, const char *s, uint32_t sl);
void mpb__pool_async_finish(mpb_async_t *a);
void mpb__pool_notify_remove(mpb_pool_t *p, mpb_async_t *a);
void mpb__pool_notify_one(mpb_async_t *a);
void mpb__pool_run_notify(mpb_pool_t *p);
void mpb__pool_pump_take(mpb_client_t *c);
/* pool_submit.c: one pool.submit of n tasks (job: 0 a new one, UINT64_MAX none); checking a
 * function name; AsyncResults made, unlinked from their pool and freed; how many tasks the
 * workers of fn take at once, and how many fit a request; waiting for the replies of applies
 * in flight until at most `most` are left. */
int mpb__pool_submit(mpb_pool_t *p, const char *fn, uint64_t job, const uint8_t *tasks, size_t tlen,
                     uint32_t n, uint64_t *first, uint64_t *job_out);
int mpb__pool_check_fn(mpb_pool_t *p, const char *fn);
void mpb__pool_async_unlink(mpb_async_t *a);
void mpb__pool_async_destroy(mpb_async_t *a);
uint64_t mpb__pool_capacity(mpb_pool_t *p, const char *fn, uint64_t *nworkers);
size_t mpb__pool_task_limit(const mpb_client_t *c);
int mpb__pool_submits_settle(mpb_pool_t *p, size_t most);
/* pool_async.c: cancelling task id ranges (one now; gathered, then sent merged; what an
 * AsyncResult or an iterator still has out). */
void mpb__pool_send_cancel(mpb_client_t *c, uint64_t first, uint64_t count);
void mpb__pool_ranges_send(mpb_client_t *c, ranges_t *r);
void mpb__pool_async_ranges(mpb_client_t *c, mpb_async_t *a, ranges_t *r);
void mpb__pool_imap_ranges(mpb_client_t *c, mpb_imap_t *it, ranges_t *r);
void mpb__pool_cancel_ranges(mpb_client_t *c, mpb_async_t *a);
/* pool_imap.c: the outcomes of chunk seq of an iterator arrived. */
void mpb__pool_imap_arrive(mpb_imap_t *it, uint64_t seq, const uint8_t *out, size_t len);

#endif
