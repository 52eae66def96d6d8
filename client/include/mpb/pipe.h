/* mpb/pipe.h - Pipe handles: one end of a channel the broker keeps. */
#ifndef MPB_PIPE_H
#define MPB_PIPE_H

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- pipe -------------------------------------------------------------------------------
 *
 * A Pipe as multiprocessing.Pipe(): a channel between end 0 and end 1 of pipe name, kept by
 * the broker. Ownership: an end belongs to the first session that opens it, and to it alone,
 * until that session closes it (mpb_pipe_close) or ends (mpb_close, or its expiry after the
 * session TTL when its process dies); another session's open of it fails with MPB_ENOTOWNER,
 * and a closed end cannot be opened again (MPB_ECLOSED). The usual pattern: the parent opens
 * end 0, the child (on its own client) end 1. Items are msgpack values, delivered in the order
 * sent. What is sent to an end that has not been opened yet waits for it. End of file: once
 * the other end is closed (or its session ended), send says MPB_EPIPE, and recv does as soon
 * as it has read what was sent before. Pipes are not persisted: a restarted broker has none. Names
 * starting with '~' (anonymous objects) are not pipes. */
typedef struct mpb_pipe mpb_pipe_t;

/* Opens end (0 or 1) of pipe name for this session, creating the pipe if new. duplex: 1 both
 * ends send and receive; 0 one-way, as Pipe(duplex=False): end 0 only receives, end 1 only
 * sends; -1 whatever the pipe is (duplex if new). The first open fixes it; an open that gives
 * the other value fails with MPB_EINVAL. Returns 0, MPB_ENOTOWNER (another session holds
 * that end), MPB_ECLOSED (it was closed), MPB_EKIND (name is another kind), MPB_EINVAL. The
 * same session may open its end again (a second handle on it). */
MPB_EXPORT int mpb_pipe_open(mpb_client_t *c, const char *name, int end, int duplex,
                             mpb_pipe_t **out);
/* Sends a copy of val (one msgpack value) to the other end. Never blocks: items wait in the
 * broker until received (bounded by the broker's max-value and max-memory). Returns 0,
 * MPB_EPIPE (the other end is closed), MPB_EINVAL (one-way pipe's end 0; not one value),
 * MPB_ETOOBIG, MPB_ENOMEM. */
MPB_EXPORT int mpb_pipe_send(mpb_pipe_t *p, const void *val, size_t vlen);
/* Receives the oldest item sent to this end into a new buffer *val (mpb_free() it), blocking
 * up to timeout_ms (MPB_FOREVER: no bound; 0: never blocks) while there is none; the broker
 * parks the call, so the wait costs no polling. Returns 0, MPB_EEMPTY (timeout_ms 0 and none),
 * MPB_ETIMEDOUT, MPB_EPIPE (none left and the other end is closed: end of file), MPB_EINVAL
 * (one-way pipe's end 1), MPB_ECLOSED (this end was closed meanwhile). */
MPB_EXPORT int mpb_pipe_recv(mpb_pipe_t *p, void **val, size_t *vlen, int timeout_ms);
/* 1 if a recv would not block now (an item waits, or end of file), waiting up to timeout_ms
 * (MPB_FOREVER: no bound) for that; 0 if not by then; or a negative MPB_E*. */
MPB_EXPORT int mpb_pipe_poll(mpb_pipe_t *p, int timeout_ms);
/* Closes this end for good (the other end sees end of file once it has read what was sent)
 * and frees the handle; items sent to this end and not received are dropped. Sets *p NULL.
 * Returns 0 or the error of the close (the handle is freed either way); MPB_EINVAL for &NULL
 * (nothing to do). Close pipe handles before mpb_close() of their client (which closes the
 * ends of its session anyway). */
MPB_EXPORT int mpb_pipe_close(mpb_pipe_t **p);
/* The end the handle holds (0 or 1), or MPB_EINVAL for NULL. */
MPB_EXPORT int mpb_pipe_end(const mpb_pipe_t *p);
MPB_EXPORT const char *mpb_pipe_name(const mpb_pipe_t *p);

/* ---- pipelined forms of the pipe: see mpb/containers.h ---- */

MPB_EXPORT int mpb_pipe_send_async(mpb_pipe_t *p, const void *val, size_t vlen, mpb_callback_t cb,
                                   void *arg);
MPB_EXPORT int mpb_pipe_recv_async(mpb_pipe_t *p, int timeout_ms, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_pipe_poll_async(mpb_pipe_t *p, int timeout_ms, mpb_callback_t cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
