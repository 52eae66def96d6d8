/* pool_int.h - what the parts of the remote Pool share: its tasks, sub-queues, functions,
 * workers, jobs and callers' sessions, and the one pool state. pool.c schedules (dispatch,
 * results, fetch and take, sessions ending), pool_table.c keeps the structures (the id and
 * name tables, the lists, persistence's view), pool_cmd.c serves the other pool ops and
 * pool_stats.c reports. Nothing outside them includes it. */
#ifndef MPB_POOL_INT_H
#define MPB_POOL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "broker.h"
#include "persist.h"

/* The pool's tables are uthash's. Function names come from clients, and task ids from the
 * broker, but both are keyed (SipHash under the broker's secret, proto/hash.c), so nobody can
 * pick keys that share a bucket; their memory comes from the broker's allocator. */
#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = (unsigned)mpb__hash((keyptr), (keylen)))
#define uthash_malloc(sz)                    xmalloc(sz)
#define uthash_free(ptr, sz)                 free(ptr)
#include <uthash.h>

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

TAILQ_HEAD(task_list, task);
TAILQ_HEAD(pfn_list, pfn);
TAILQ_HEAD(oq_ring, oq);
TAILQ_HEAD(worker_fetch, worker);
LIST_HEAD(pfn_all, pfn);
LIST_HEAD(worker_all, worker);
LIST_HEAD(job_list, job);
LIST_HEAD(oq_list, oq);
LIST_HEAD(ps_all, pool_sess);

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
    uint32_t gen; /* times dispatched: the attempt number a worker names in pool.start */
    bool started; /* its worker may run it: sent to a free slot, streamed or granted */
    bool timed;   /* started into a free slot: its time to done measures its function */
    bool retry;   /* queued again after its worker died */
    int64_t start_us;
    bool failed; /* some call raised */
    bool canceled;
    worker_t *worker;
    blob_t *result; /* msgpack array of [ok, value-or-message] per call */
    blob_t *output; /* --forward-output: noutput [stream, bytes] items it wrote, not
                       yet taken (no array header), or NULL */
    uint32_t noutput;
    size_t cost;             /* what it counts against its owner's bound while unfinished */
    TAILQ_ENTRY(task) qlink; /* sub-queue, owner's running list, or owner's done list */
    TAILQ_ENTRY(task) wlink; /* worker's assigned list */
    UT_hash_handle hh;       /* the id table */
} task_t;

/* One caller's queued tasks of one function. Exists while it holds a task. */
struct oq {
    pfn_t *fn;
    pool_sess_t *ps;
    struct task_list tasks;
    uint64_t n;
    TAILQ_ENTRY(oq) rlink; /* the function's ring, while dispatchable */
    LIST_ENTRY(oq) olink;  /* its caller's sub-queues */
    bool in_ring;
};

struct pfn {
    char *name;
    uint32_t namelen;
    /* Callers' sub-queues taking turns: the head's turn is next; one that had it goes last. */
    struct oq_ring ring;
    uint64_t queued, paused, assigned;
    uint64_t done, failed, canceled;
    int64_t avg_us; /* moving average of a task's time from start to done */
    uint32_t samples;
    size_t nworkers;
    size_t refs;             /* workers, tasks and jobs that name it */
    uint64_t st_run, st_pre; /* scratch for pool.stats and metrics */
    UT_hash_handle hh;       /* the name table */
    LIST_ENTRY(pfn) link;    /* all functions, newest first */
    TAILQ_ENTRY(pfn) ilink;  /* unused ones, oldest first */
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
    bool killable;    /* runs each task in a process of its own: it can stop a running one */
    mpb__buf_t kills; /* [task_id, attempt] of tasks to stop, for its next fetch reply */
    uint32_t nkills;
    size_t plan_bytes;
    waiter_t *fetch; /* its parked pool.fetch, if any */
    int64_t fetch_max;
    struct task_list assigned; /* oldest first */
    int64_t since_ms;
    LIST_ENTRY(worker) link;   /* all workers */
    TAILQ_ENTRY(worker) flink; /* on the list of workers with a parked fetch */
    bool fetching;
};

struct job {
    uint64_t id;
    sess_t *owner;
    pfn_t *fn;
    uint64_t total, done, failed, canceled, outstanding; /* outstanding: not yet taken */
    int64_t started_ms;
    LIST_ENTRY(job) link;  /* all jobs */
    LIST_ENTRY(job) olink; /* its owner's */
};

struct pool_sess {
    sess_t *sess;
    worker_t *worker;
    struct oq_list oqs;    /* its queued tasks, by function */
    struct task_list run;  /* its tasks at workers */
    struct task_list done; /* finished, not yet taken */
    struct job_list jobs;  /* its jobs, most recently used first */
    uint64_t nqueued, nrunning, ndone;
    size_t queued_bytes; /* input of its unfinished tasks (and their records) */
    size_t held_bytes;   /* results not taken (and their records) */
    bool paused;         /* held_bytes over the bound: its tasks wait */
    bool take_output;    /* its takes take what running tasks wrote, too (pool.take's OUTPUT) */
    uint64_t nout;       /* running tasks that may hold output not yet taken */
    wlist_t takers;
    LIST_ENTRY(pool_sess) link; /* all of them */
};

/* The pool's state: one instance, shared by pool.c, pool_table.c, pool_cmd.c and
 * pool_stats.c. */
typedef struct pool_state {
    struct pfn_all fns;
    struct pfn_list idle; /* unused functions, oldest first */
    size_t nidle;
    pfn_t *fntab; /* by name */
    size_t nfns_all;
    struct worker_all workers;
    struct worker_fetch fetchers; /* workers with a parked fetch, oldest first */
    struct job_list jobs;
    struct ps_all sesses;
    task_t *tab; /* by id */
    size_t ntasks;
    uint64_t next_task, next_job;
    uint64_t total_requeued, total_abandoned;
    uint64_t total_steals, total_refusals, total_killed;
    uint64_t ntentative;   /* assigned, not started: what an idle slot may steal */
    wlist_t fetch_waiters; /* parked pool.fetch requests; order kept by fetchers */
} pool_state_t;

extern pool_state_t g_pool;

/* ---- pool_table.c ---- */

size_t pool_max_queued(void);
void pool_tab_add(task_t *t);
task_t *pool_tab_get(uint64_t id);
void pool_fn_ref(pfn_t *f);
void pool_fn_unref(pfn_t *f);
/* The entry of a function; a new one (unused, so on the idle list until referenced) if asked. */
pfn_t *pool_fn_get(const char *name, size_t n, bool create);
pool_sess_t *pool_ps(sess_t *s);
/* Queues t (owned by a live caller) in its caller's sub-queue of its function. */
void pool_q_push(task_t *t, bool front);
void pool_q_del(task_t *t);
/* q (the head of its function's ring) had its turn: the next caller's is next, q goes last. */
void pool_ring_turn(oq_t *q);
/* A caller over its result bound waits: its sub-queues leave the rings until it collects. */
void pool_ps_check_pause(pool_sess_t *ps);
void pool_run_link(pool_sess_t *ps, task_t *t);
void pool_run_unlink(pool_sess_t *ps, task_t *t);
void pool_done_push(pool_sess_t *ps, task_t *t);
void pool_done_del(pool_sess_t *ps, task_t *t);
void pool_assign(worker_t *w, task_t *t, bool started);
void pool_unassign(task_t *t);
void pool_fetch_add(worker_t *w, waiter_t *fetch);
void pool_fetch_del(worker_t *w);
void pool_job_free(job_t *j);
/* A task leaves its job's count when it is taken, cancelled or abandoned. */
void pool_job_release(task_t *t);
/* This session's job id, moved to the front (a map's batches come one after another). */
job_t *pool_job_find(pool_sess_t *ps, uint64_t id);
job_t *pool_job_new(pool_sess_t *ps, uint64_t id, pfn_t *f);
void pool_task_free(task_t *t);

/* ---- pool.c ---- */

/* A task is finished (by its worker, by giving up, or by cancelling): its caller can take it.
 * It is off every queue and worker already. */
void pool_finish(task_t *t);
/* Answers the parked pool.take of ps that covers task id, if any. */
void pool_wake_taker(pool_sess_t *ps, uint64_t id);
/* Fails every call of t with msg. */
void pool_fail_task(task_t *t, const char *msg);
/* Takes an unfinished task off its queue or worker. */
void pool_unqueue(task_t *t);
void pool_cancel_task(task_t *t);
bool pool_serves(const worker_t *w, const pfn_t *f);
/* One round: free slots first (every worker's, so none holds a prefetch while another slot
 * idles), then prefetch within each worker's credit, then idle slots steal what others hold
 * unstarted; then each parked fetch that got something is answered. */
void pool_dispatch(void);
/* t (off its worker and its owner's running list) ran where something died: back to the front
 * of its queue as a retry, or failed after pool-max-attempts ("task failed: its worker died 3
 * times ..."; what: "its worker" or "its process"). */
void pool_requeue_or_fail(task_t *t, const worker_t *w, const char *what);
/* A worker leaves: died (its session ended; what it held counts as an attempt) or
 * unregistered (it does not). */
void pool_worker_gone(worker_t *w, bool died);

#endif
