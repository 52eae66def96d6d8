/* worker.h - what the two halves of a worker share: worker.c (the public calls and the thread
 * that talks to the broker) and worker_run.c (the threads that run tasks, in process or in a
 * child process each). Never installed. */
#ifndef MPB_CLIENT_WORKER_H
#define MPB_CLIENT_WORKER_H

#include <stdbool.h>
#include <sys/queue.h>

#include "internal.h"

enum { J_RAN, J_DIED, J_KILLED };

/* Process mode: each executing thread hands its tasks to a child process of its own, forked
 * ahead and reused, so a task can be stopped (SIGKILL) and a task that kills its process
 * costs a fresh child, not the worker. */
typedef struct slot {
    struct mpb_worker *w;
    pid_t pid; /* its child, 0: none */
    int to_child, from_child;
    int out_fd[2];   /* --forward-output: the read ends of its stdout and stderr */
    struct job *job; /* running, under the worker's mu */
} slot_t;

typedef struct fnent {
    char name[256];
    mpb_task_fn fn;
    void *ctx;
} fnent_t;

typedef struct job {
    uint64_t id;
    uint64_t gen;  /* the attempt number the broker gave it under */
    int fate;      /* J_RAN, or J_DIED: its process died; J_KILLED: the broker finished it */
    int cancelled; /* atomic: the broker finished it while it ran (mpb_task_cancelled()) */
    const fnent_t *fn;
    uint8_t *calls;
    size_t len;
    mpb__buf_t out;    /* outcomes */
    mpb__buf_t output; /* --forward-output: [stream, bin] items of what it wrote, not yet sent */
    uint32_t noutput;
    size_t output_bytes;   /* all it wrote so far, sent or not (the 64 KiB bound) */
    TAILQ_ENTRY(job) link; /* on one list at a time: todo, ask, an asked's, done */
} job_t;

TAILQ_HEAD(wjob_list, job);

/* One pool.start in flight. The broker answers them at once, so in the order they went. */
typedef struct asked {
    int64_t sent_ms;
    struct wjob_list jobs; /* the ones named, in order */
    int n;
    STAILQ_ENTRY(asked) link;
} asked_t;

struct mpb_worker {
    mpb_client_t *c;
    fnent_t *fns;
    size_t nfns;
    int concurrency, prefetch;
    uint64_t max_tasks, received, done;
    int (*init)(void *);
    void *init_arg;
    bool inited;
    size_t max_value; /* the broker's, for the threads */
    volatile sig_atomic_t stop;
    int pipefd[2];
    pthread_t *threads;
    int nthreads;
    int isolate;         /* MPB_ISOLATE_THREAD or MPB_ISOLATE_PROCESS */
    bool forward_output; /* process mode: a task's stdout and stderr go to its caller */
    slot_t *slots;       /* one per thread */
    uint64_t killed, died;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct wjob_list todo, finished; /* under mu: to run; to report */
    int ntodo, nrunning;             /* under mu */
    bool lease_note;      /* under mu: a thread found the lease run out; the pipe said so */
    int64_t lease_until;  /* atomic: held tasks may start before this (the broker's word) */
    struct wjob_list ask; /* held, not started: to ask about first (main thread only) */
    int nasking;          /* in a pool.start not answered yet */
    STAILQ_HEAD(, asked) asked;
    mpb__buf_t stream; /* under mu: [task_id, attempt, output] items for the next pool.output */
    uint32_t nstream;
    size_t room;      /* what one request may carry (a frame less its header) */
    uint64_t refused; /* held tasks the broker had taken back */
    bool quit;        /* threads: no more jobs will come */
    int inflight;     /* received, not yet reported */
    bool fetching;
    int64_t fetch_sent_ms; /* when the parked fetch went out */
    int64_t stop_ms;       /* when winding down began (0: not yet) */
    bool unregistered;     /* pool.unregister sent: the broker took back what it had given */
    int err;
};

/* ---- between the halves ---- */

/* worker_run.c: n outcomes, each the error msg (for tasks that could not run); a slot's child
 * process started and reaped (process mode); whether the lease holds (the broker answered
 * recently enough for a task to start); an executing thread. */
void mpb__worker_fail_outcomes(mpb__buf_t *out, uint32_t n, const char *msg);
int mpb__worker_slot_spawn(slot_t *sl);
void mpb__worker_slot_reap(slot_t *sl);
bool mpb__worker_lease_ok(mpb_worker_t *w);
void *mpb__worker_thread_main(void *arg);

#endif
