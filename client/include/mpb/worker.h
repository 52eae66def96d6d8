/* mpb/worker.h - serving the remote Pool's tasks: a worker registers functions and runs what
 * the broker hands it. */
#ifndef MPB_WORKER_H
#define MPB_WORKER_H

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the remote Pool: workers ---------------------------------------------------------------
 *
 * A worker process serves named functions for pools on any host. A function gets its call's
 * arguments as a msgpack array (apply(fn, [1, 2]) passes [1, 2]; map(fn, items) passes [item];
 * starmap passes each item, itself an array) and answers with one msgpack value in a new
 * malloc()ed buffer, which the library frees; or it fails (the C analogue of raising): it
 * returns non-zero with a message in err, which reaches the caller. Functions run on the
 * worker's own threads (concurrency of them), so they must be thread-safe when concurrency > 1. */

typedef int (*mpb_task_fn)(void *ctx, const void *args, size_t alen, void **result, size_t *rlen,
                           char *err, size_t errlen);

typedef struct mpb_worker mpb_worker_t;

/* For a pool function that fails with a kind of error: writes the message (printf-style) into
 * its err buffer and, after it, the kind, a short type name ("ValueError", at most 63 bytes),
 * which reaches the caller beside the message (mpb_async_error()) so that a client can raise
 * the matching exception. Returns -1, for `return mpb_task_fail(err, errlen, "ValueError",
 * "%d is negative", x);`. Pure: it touches nothing but err. */
MPB_EXPORT int mpb_task_fail(char *err, size_t errlen, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* For a pool function on a worker's thread: 1 once the broker has finished the task it runs
 * (terminate(), its timeout or a freed AsyncResult; the caller has its MPB_ECANCELED or
 * MPB_ETIMEDOUT already), else 0. A thread cannot be killed: a long function
 * asks now and then and returns early (its result is dropped). Always 0 in process mode, where
 * such a task is killed. It reads the state of the libmpb that runs the worker: a function
 * library linked against the shared libmpb reaches mpb-worker's (which exports this symbol). */
MPB_EXPORT int mpb_task_cancelled(void);

/* A worker on client c (which it uses exclusively while serving). */
MPB_EXPORT int mpb_worker_open(mpb_client_t *c, mpb_worker_t **out);
MPB_EXPORT void mpb_worker_close(mpb_worker_t **w);
/* Serves function name with fn (ctx is passed through). Before mpb_worker_serve(). */
MPB_EXPORT int mpb_worker_add(mpb_worker_t *w, const char *name, mpb_task_fn fn, void *ctx);
/* Tasks run at once (default 1) and tasks held beyond those (default MPB_WORKER_PREFETCH).
 * A held task waits only while every other slot is busy: the broker takes back a task not
 * yet started for a slot idle elsewhere, and the worker asks before it starts one (except
 * for functions whose tasks take under ~10 ms, which stream), so a large prefetch costs long
 * tasks nothing and lets tiny ones stream. */
#define MPB_WORKER_PREFETCH 64
MPB_EXPORT void mpb_worker_set_concurrency(mpb_worker_t *w, int n);
/* Where tasks run. MPB_ISOLATE_THREAD (the default, the fastest): on the worker's threads; a
 * task that was cancelled (terminate(), a timeout, a freed AsyncResult) is finished for its
 * caller at once, but its thread cannot be killed: the function sees mpb_task_cancelled() and
 * may return early; its result is dropped. A task whose caller is gone runs to its end.
 * MPB_ISOLATE_PROCESS (the only mode that kills): each thread hands its tasks to a child process of
 * its own, forked before serving and reused, so such a task is killed at once and its slot freed; a
 * task that kills its process is retried (pool-max-attempts) while the worker lives on and forks a
 * fresh child. Functions keep the state the worker had when the child was forked (after the
 * initializer); what a task changes stays in its child. */
enum { MPB_ISOLATE_THREAD = 0, MPB_ISOLATE_PROCESS = 1 };
MPB_EXPORT void mpb_worker_set_isolate(mpb_worker_t *w, int mode);
/* on: what a task writes to stdout and stderr (up to 64 KiB a task, then cut with a note) goes
 * to its caller (mpb_pool_set_output()) while the task runs, tagged by task and stream: within
 * ~50 ms of being written (stdout is line-buffered), the rest with its result. Sets process
 * mode: each child's stdout and stderr are pipes the worker reads. */
MPB_EXPORT void mpb_worker_set_forward_output(mpb_worker_t *w, int on);
MPB_EXPORT void mpb_worker_set_prefetch(mpb_worker_t *w, int n);
/* Runs init(arg) once, in the first mpb_worker_serve() before it registers (as
 * Pool(initializer, initargs)). A non-zero return is a failure: serve returns MPB_EINVAL
 * ("the initializer failed (returned N)") and no task reaches this worker. */
MPB_EXPORT void mpb_worker_set_initializer(mpb_worker_t *w, int (*init)(void *arg), void *arg);
/* After n tasks, serve returns (maxtasksperchild: the caller starts a fresh process). */
MPB_EXPORT void mpb_worker_set_max_tasks(mpb_worker_t *w, uint64_t n);
/* Registers and serves until mpb_worker_stop() or max tasks. Blocks. Returns 0 when stopped or
 * done, or a negative MPB_E* when the connection failed. Tasks running at the stop finish and
 * their results are sent first; then the session unregisters (it serves no more, and the
 * broker stops counting it), so the client may serve again, with this worker or another.
 * A result over the broker's max_value, or a chunk's results over its max_frame, reaches the
 * caller as that call's failure ("result of N bytes > max_value M"). */
MPB_EXPORT int mpb_worker_serve(mpb_worker_t *w);
/* Asks a serving worker to stop. Safe from a signal handler and from other threads. */
MPB_EXPORT void mpb_worker_stop(mpb_worker_t *w);
/* Tasks completed so far. */
MPB_EXPORT uint64_t mpb_worker_tasks_done(const mpb_worker_t *w);

#ifdef __cplusplus
}
#endif
#endif
