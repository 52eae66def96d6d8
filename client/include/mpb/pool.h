/* mpb/pool.h - the remote Pool, as a caller sees it: apply, map, imap (and their async forms),
 * AsyncResult, close, join, terminate. */
#ifndef MPB_POOL_H
#define MPB_POOL_H

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the remote Pool: callers ---------------------------------------------------------------
 *
 * multiprocessing.Pool's API over the broker's workers. Callbacks run in the calling process,
 * never two at once and never nested in another call: by default in the thread that calls the
 * pool, inside a pool call (mpb_pool_poll(), mpb_pool_join(), mpb_async_get()/wait()/ready(),
 * mpb_imap_next(), the submitting calls, mpb_async_free() and mpb_pool_close()); with the
 * client's callback thread or an own loop over mpb_process() as soon as their results arrive
 * ("when callbacks run", mpb/client.h). A callback may call the pool or the client again. A
 * function that fails makes its result fail with MPB_EREMOTE and the remote message in
 * mpb_errmsg(); a map fails with its first failed item, as Python's does. */

typedef struct mpb_pool mpb_pool_t;
typedef struct mpb_async mpb_async_t;
typedef struct mpb_imap mpb_imap_t;
/* result: the value (apply) or a msgpack array of values (map, starmap), valid during the call */
typedef void (*mpb_result_cb)(void *arg, const void *result, size_t len);
/* err: a negative MPB_E*; msg: the remote error message or the reason */
typedef void (*mpb_error_cb)(void *arg, int err, const char *msg);
/* What a task wrote (workers with --forward-output): stream 1 stdout, 2 stderr; task is the
 * task's place in its apply (0) or map (its chunk's index); a is its AsyncResult (NULL for
 * imap). Called while the task runs, as its output arrives (within ~50 ms of being written),
 * and for the rest as its result arrives, before the result's own callback; each stream's
 * pieces in the order written. Called while replies are read: it must not call the pool or
 * the client. data is valid during the call. */
typedef void (*mpb_output_cb)(void *arg, mpb_async_t *a, uint64_t task, int stream,
                              const void *data, size_t len);

MPB_EXPORT int mpb_pool_open(mpb_client_t *c, mpb_pool_t **out);
/* Terminates what is still outstanding and frees the pool. Accepts &NULL. Handles and
 * iterators the caller still holds stay valid, detached, until freed. */
MPB_EXPORT void mpb_pool_close(mpb_pool_t **p);

/* fn(*args) on some worker; blocks up to timeout_ms for the result (a new buffer). */
MPB_EXPORT int mpb_pool_apply(mpb_pool_t *p, const char *fn, const void *args, size_t alen,
                              int timeout_ms, void **result, size_t *rlen);
/* Submits fn(*args); *out (may be NULL: then the pool keeps it) completes later, running cb or
 * ecb (either may be NULL). Free *out with mpb_async_free(). */
MPB_EXPORT int mpb_pool_apply_async(mpb_pool_t *p, const char *fn, const void *args, size_t alen,
                                    mpb_result_cb cb, mpb_error_cb ecb, void *arg,
                                    mpb_async_t **out);
/* fn(item) for every item of the msgpack array items, chunksize items per task (0: chosen
 * as Python does, about len / (4 * workers); any larger value is one chunk), and fewer where
 * a chunk would pass the broker's max_value; *results is a msgpack array in input order.
 * MPB_ETOOBIG for an item that alone passes it, MPB_ELIMIT when the broker holds as much of
 * this client's unfinished work as it allows (pool-max-queued). */
MPB_EXPORT int mpb_pool_map(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                            size_t chunksize, int timeout_ms, void **results, size_t *rlen);
MPB_EXPORT int mpb_pool_map_async(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                                  size_t chunksize, mpb_result_cb cb, mpb_error_cb ecb, void *arg,
                                  mpb_async_t **out);
/* As map, but each item is an array of arguments: fn(*item). */
MPB_EXPORT int mpb_pool_starmap(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                                size_t chunksize, int timeout_ms, void **results, size_t *rlen);
MPB_EXPORT int mpb_pool_starmap_async(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                                      size_t chunksize, mpb_result_cb cb, mpb_error_cb ecb,
                                      void *arg, mpb_async_t **out);

/* Lazy map over items that next() produces one at a time (return 1 with *item set to one
 * msgpack value, valid until the next call; 0 at the end; < 0 to stop with that error). At most
 * window chunks (0: 64) are in flight, so memory stays bounded however long the input.
 * ordered 1: results in input order (imap); 0: as they finish (imap_unordered). */
typedef int (*mpb_next_fn)(void *arg, const void **item, size_t *len);
MPB_EXPORT int mpb_pool_imap(mpb_pool_t *p, const char *fn, mpb_next_fn next, void *arg,
                             size_t chunksize, int ordered, size_t window, mpb_imap_t **out);
/* The next result (a new buffer). MPB_ECLOSED after the last; MPB_EREMOTE for an item whose
 * call failed (iteration may go on); MPB_ETIMEDOUT; MPB_ECANCELED after mpb_pool_terminate();
 * MPB_ECLOSED (without a message) after mpb_pool_close(). Chunks are cut short where they would
 * pass the broker's max_value; an item that alone would ends the input with MPB_ETOOBIG. */
MPB_EXPORT int mpb_imap_next(mpb_imap_t *it, int timeout_ms, void **result, size_t *rlen);
MPB_EXPORT void mpb_imap_free(mpb_imap_t **it);

/* No more tasks may be submitted (Python's Pool.close(); the handle stays open until
 * mpb_pool_close()). */
MPB_EXPORT int mpb_pool_finish(mpb_pool_t *p);
/* After mpb_pool_finish() or mpb_pool_terminate(): waits for every outstanding task (running
 * callbacks). 0 or MPB_ETIMEDOUT; MPB_EINVAL before either. */
MPB_EXPORT int mpb_pool_join(mpb_pool_t *p, int timeout_ms);
/* Cancels every outstanding task (imap iterators too): they finish with MPB_ECANCELED. No more
 * tasks may be submitted (as after mpb_pool_finish()). */
MPB_EXPORT int mpb_pool_terminate(mpb_pool_t *p);
/* Where the output of p's tasks goes (cb NULL: nowhere, the default). */
MPB_EXPORT void mpb_pool_set_output(mpb_pool_t *p, mpb_output_cb cb, void *arg);
/* Reads results that have arrived (up to timeout_ms for one) and runs their callbacks.
 * Returns how many results completed, or a negative MPB_E*. */
MPB_EXPORT int mpb_pool_poll(mpb_pool_t *p, int timeout_ms);

/* Waits up to timeout_ms; the value (apply) or array (map) in a new buffer. MPB_EREMOTE (the
 * function failed: mpb_errmsg() has its message), MPB_ECANCELED, MPB_ETIMEDOUT (with why:
 * e.g. no worker serves the function). */
MPB_EXPORT int mpb_async_get(mpb_async_t *a, int timeout_ms, void **result, size_t *rlen);
/* Waits up to timeout_ms; returns 1 if ready, 0 if not. */
MPB_EXPORT int mpb_async_wait(mpb_async_t *a, int timeout_ms);
MPB_EXPORT int mpb_async_ready(mpb_async_t *a);
/* 1 succeeded, 0 failed; MPB_EINVAL before it is ready (as Python raises ValueError). */
MPB_EXPORT int mpb_async_successful(mpb_async_t *a);
/* Why a finished result failed: returns its code (0: it succeeded; MPB_EINVAL: not ready),
 * and in *kind the error kind the function gave (mpb_task_fail(): "ValueError"; "" when
 * none) and in *msg its message, both owned by a and valid until it is freed; either may be
 * NULL. A map gives its first failed call's. */
MPB_EXPORT int mpb_async_error(const mpb_async_t *a, const char **kind, const char **msg);
/* Tasks (chunks) finished so far and in all; either may be NULL. */
MPB_EXPORT void mpb_async_progress(const mpb_async_t *a, uint64_t *done, uint64_t *total);
/* Frees the handle; a result still outstanding is cancelled. Accepts &NULL. */
MPB_EXPORT void mpb_async_free(mpb_async_t **a);

#ifdef __cplusplus
}
#endif
#endif
