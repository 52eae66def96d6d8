/* mpb/sync.h - the synchronisation kinds: Lock and RLock, Semaphore, Condition, Event,
 * Barrier, and the Value and Namespace handles. */
#ifndef MPB_SYNC_H
#define MPB_SYNC_H

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Lock and RLock ------------------------------------------------------------------------
 * The owner is this client's session plus a thread id: by default the calling thread's (so two
 * threads of one process are two owners), or the one given to mpb_lock_set_thread(). When the
 * session ends (mpb_close, or no heartbeat for the broker's TTL: process killed, host gone,
 * network cut) the broker releases what it held and the next waiter gets it. A blocked acquire
 * occupies its client (see "Threads" above): threads that pass a lock between them each need
 * a client of their own. */

typedef struct mpb_lock mpb_lock_t;

/* Opens (creating if new, unlocked) the Lock called name; does not acquire it. A new handle
 * in *out (mpb_lock_close() it). MPB_EKIND if name is another kind, an RLock included. */
MPB_EXPORT int mpb_lock_open(mpb_client_t *c, const char *name, mpb_lock_t **out);
/* The same for an RLock, which its owner may acquire again (each acquire needs a release).
 * Locks and RLocks are two kinds: "lock/x" and "rlock/x" cannot both exist. */
MPB_EXPORT int mpb_rlock_open(mpb_client_t *c, const char *name, mpb_lock_t **out);
/* Frees the handle. It does not release the lock: a lock held stays held by this owner until
 * released through another handle on the same name, mpb_close(), or the session's end.
 * Accepts &NULL; sets *l NULL. */
MPB_EXPORT void mpb_lock_close(mpb_lock_t **l);
/* Fixes the owner's thread id for later calls on l (0: back to the calling thread's). Two
 * handles with different ids are two owners within one session: for logical tasks that one
 * thread drives (acquiring with MPB_NOWAIT, or through mpb_send() with the lock ops and the
 * id, as PROTOCOL.md gives them), never for real threads, which need clients of their own. */
MPB_EXPORT void mpb_lock_set_thread(mpb_lock_t *l, uint64_t tid);
/* Acquires, blocking up to timeout_ms. *fence (may be NULL) receives the fencing token: larger
 * for every later acquisition, broker-wide and across broker restarts (it starts from the wall
 * clock in microseconds), so a resource can refuse a stale holder. Returns 0, MPB_ETIMEDOUT, or
 * MPB_EBUSY at once, whatever timeout_ms, for a Lock acquired again by its own owner (it is not
 * re-entrant: where Python's Lock would deadlock, this is an error). An RLock acquired again by
 * its owner counts levels and keeps its token. */
MPB_EXPORT int mpb_lock_acquire(mpb_lock_t *l, int timeout_ms, uint64_t *fence);
/* Releases one level. MPB_ENOTOWNER when this owner does not hold it. */
MPB_EXPORT int mpb_lock_release(mpb_lock_t *l);
/* 1 if held by anyone, 0 if free, or a negative MPB_E*. */
MPB_EXPORT int mpb_lock_locked(mpb_lock_t *l);

/* ---- Semaphore and BoundedSemaphore -------------------------------------------------------
 * When a session ends, the units it acquired that nobody has released for it are given back,
 * up to the semaphore's initial value: a release by another session pays off the oldest
 * outstanding unit first, so a semaphore used as a signal gains no phantom units. */

typedef struct mpb_semaphore mpb_semaphore_t;

/* value: the initial count when new (-1: whatever it is, 1 if new); bounded: 1 for a
 * BoundedSemaphore, 0 not, -1 whatever it is. A semaphore first made without explicit settings
 * (by an open with -1, or by use) takes them from the first open that gives them: the initial
 * value becomes value and the free count moves by value - 1, so it can be below 0 when units
 * were taken before. Explicit settings that differ from earlier explicit ones: MPB_EINVAL. */
MPB_EXPORT int mpb_semaphore_open(mpb_client_t *c, const char *name, int64_t value, int bounded,
                                  mpb_semaphore_t **out);
/* Frees the handle; units acquired stay acquired. Accepts &NULL; sets *s NULL. */
MPB_EXPORT void mpb_semaphore_close(mpb_semaphore_t **s);
/* Takes one unit, blocking up to timeout_ms. 0 or MPB_ETIMEDOUT. */
MPB_EXPORT int mpb_semaphore_acquire(mpb_semaphore_t *s, int timeout_ms);
/* As mpb_semaphore_acquire; *fence (may be NULL) receives a fencing token from the counter that
 * locks use: larger than every token handed out before, by this broker run or an earlier one. */
MPB_EXPORT int mpb_semaphore_acquire_fenced(mpb_semaphore_t *s, int timeout_ms, uint64_t *fence);
/* Gives back n units (n >= 1, else MPB_EINVAL). MPB_EVALUE when a bounded semaphore would exceed
 * its initial value; MPB_EOVERFLOW when the count would pass INT64_MAX. */
MPB_EXPORT int mpb_semaphore_release(mpb_semaphore_t *s, int64_t n);
/* *value: the units free now (as Python's get_value(); may be stale at once). */
MPB_EXPORT int mpb_semaphore_value(mpb_semaphore_t *s, int64_t *value);

/* ---- Condition ---------------------------------------------------------------------------- */

typedef struct mpb_condition mpb_condition_t;

/* Opens condition name bound to lockpath ("lock/NAME" or "rlock/NAME", created if new), or with
 * lockpath NULL to an RLock "rlock/NAME.lock". The binding is fixed when the condition is made. */
MPB_EXPORT int mpb_condition_open(mpb_client_t *c, const char *name, const char *lockpath,
                                  mpb_condition_t **out);
/* Frees the handle; neither the lock nor a wait is released. Accepts &NULL; sets *cv NULL. */
MPB_EXPORT void mpb_condition_close(mpb_condition_t **cv);
/* Acquire and release the condition's lock (as mpb_lock_acquire/release). */
MPB_EXPORT int mpb_condition_acquire(mpb_condition_t *cv, int timeout_ms, uint64_t *fence);
MPB_EXPORT int mpb_condition_release(mpb_condition_t *cv);
/* With the lock held: releases it, waits for a notify up to timeout_ms, and takes the lock
 * back (all RLock levels) before returning 1 (notified) or 0 (timed out). MPB_ENOTOWNER
 * without the lock. MPB_ENOOBJ when the condition's lock no longer exists (deleted while free,
 * or made again as another kind): at the call, or at the timeout, when the lock cannot be
 * taken back; MPB_EINVAL for a condition never opened with its lock (mpb_condition_open()
 * always gives it one). The re-acquisition itself is not bounded by timeout_ms, as in Python.
 * A notification is never lost to a waiter that dies: if a woken waiter's session ends before
 * it releases the lock again, the notification passes to the condition's next waiter. */
MPB_EXPORT int mpb_condition_wait(mpb_condition_t *cv, int timeout_ms);
/* Waits until pred(arg) is true, re-checking after each wake-up, for at most timeout_ms in
 * all. Returns pred's last answer as 1/0, or a negative MPB_E*. The lock must be held. */
MPB_EXPORT int mpb_condition_wait_for(mpb_condition_t *cv, int (*pred)(void *arg), void *arg,
                                      int timeout_ms);
/* Wakes up to n waiters (they take the lock after the caller releases it); returns how many
 * were woken, or a negative MPB_E* (MPB_ENOTOWNER without the lock). */
MPB_EXPORT int mpb_condition_notify(mpb_condition_t *cv, int n);
/* As mpb_condition_notify for every waiter. */
MPB_EXPORT int mpb_condition_notify_all(mpb_condition_t *cv);

/* ---- Event -------------------------------------------------------------------------------- */

typedef struct mpb_event mpb_event_t;

/* Opens (creating if new, not set) the event called name: a new handle in *out
 * (mpb_event_close() it). MPB_EKIND if name is another kind. */
MPB_EXPORT int mpb_event_open(mpb_client_t *c, const char *name, mpb_event_t **out);
/* Frees the handle (not the event). Accepts &NULL; sets *e NULL. */
MPB_EXPORT void mpb_event_close(mpb_event_t **e);
/* Sets the event: every waiter is answered 1 at once, and later waits return at once until it
 * is cleared. Setting a set event changes nothing. */
MPB_EXPORT int mpb_event_set(mpb_event_t *e);
/* Clears it: later waits block until the next set. Waiters answered already stay answered. */
MPB_EXPORT int mpb_event_clear(mpb_event_t *e);
/* 1 or 0, or a negative MPB_E*. */
MPB_EXPORT int mpb_event_is_set(mpb_event_t *e);
/* Blocks until the event is set, up to timeout_ms: 1 if it is set (at once if it already is),
 * 0 if the time ran out; MPB_NOWAIT only looks. */
MPB_EXPORT int mpb_event_wait(mpb_event_t *e, int timeout_ms);

/* ---- Barrier ------------------------------------------------------------------------------ */

typedef struct mpb_barrier mpb_barrier_t;

/* Opens (creating if new) the barrier called name: a new handle in *out (mpb_barrier_close()
 * it). parties: needed when new (must match when not; 0: whatever it is). timeout_ms: the
 * default for waits given MPB_FOREVER (-1: none), fixed when the barrier is made. MPB_EINVAL
 * for a new barrier without parties, or parties that differ from the existing barrier's. */
MPB_EXPORT int mpb_barrier_open(mpb_client_t *c, const char *name, int64_t parties, int timeout_ms,
                                mpb_barrier_t **out);
/* Frees the handle. Accepts &NULL; sets *b NULL. */
MPB_EXPORT void mpb_barrier_close(mpb_barrier_t **b);
/* Waits for all parties; *index (may be NULL) is unique among the parties of this round, from
 * 0 to parties-1. MPB_EBROKEN when the barrier is or becomes broken: a wait timed out, it was
 * aborted or reset, or a waiting party's session ended. A timeout breaks it for every waiter. */
MPB_EXPORT int mpb_barrier_wait(mpb_barrier_t *b, int timeout_ms, int64_t *index);
/* Breaks the current round (its waiters get MPB_EBROKEN at once) and makes the barrier whole
 * again: the next waits start a new round. */
MPB_EXPORT int mpb_barrier_reset(mpb_barrier_t *b);
/* Breaks the barrier: its waiters, and every wait after, get MPB_EBROKEN until
 * mpb_barrier_reset(). */
MPB_EXPORT int mpb_barrier_abort(mpb_barrier_t *b);
/* The number of parties, how many wait in the current round, and whether it is broken (1/0).
 * Any of the outputs may be NULL. */
MPB_EXPORT int mpb_barrier_state(mpb_barrier_t *b, int64_t *parties, int64_t *n_waiting,
                                 int *broken);

/* ---- Value and Namespace ------------------------------------------------------------------ */

typedef struct mpb_value mpb_value_t;
typedef struct mpb_namespace mpb_namespace_t;

/* Opens (creating if new) the Value called name: a new handle in *out (mpb_value_close() it).
 * initial (a msgpack value, or NULL for the integer 0) applies when the value is new; an
 * existing value keeps what it holds. MPB_EINVAL when initial is not one well-formed value. */
MPB_EXPORT int mpb_value_open(mpb_client_t *c, const char *name, const void *initial, size_t len,
                              mpb_value_t **out);
/* Frees the handle (not the value). Accepts &NULL; sets *v NULL. */
MPB_EXPORT void mpb_value_close(mpb_value_t **v);
/* A copy of the value (any msgpack value; the integer 0 if never set) in a new buffer *val:
 * mpb_free() it. */
MPB_EXPORT int mpb_value_get(mpb_value_t *v, void **val, size_t *vlen);
/* Replaces the value with a copy of val, of any type. MPB_EINVAL when val is not one
 * well-formed msgpack value, MPB_ETOOBIG past max_value. */
MPB_EXPORT int mpb_value_set(mpb_value_t *v, const void *val, size_t vlen);
/* The value as an int64. MPB_ETYPE (and *out untouched) when it is not an integer that fits:
 * a float, a string, any other type, or an unsigned integer above INT64_MAX. */
MPB_EXPORT int mpb_value_get_i64(mpb_value_t *v, int64_t *out);
/* mpb_value_set with the integer x. */
MPB_EXPORT int mpb_value_set_i64(mpb_value_t *v, int64_t x);
/* The value as a string (a new NUL-terminated buffer: mpb_free() it; MPB_ETYPE when it is not
 * a str), and mpb_value_set with the string s. */
MPB_EXPORT int mpb_value_get_str(mpb_value_t *v, char **s);
MPB_EXPORT int mpb_value_set_str(mpb_value_t *v, const char *s);
/* Atomically adds by; *result (may be NULL) is the new value. MPB_ETYPE (and nothing added)
 * if the value is not an integer, MPB_EOVERFLOW past int64. add_double works on any number
 * and makes the value a float. */
MPB_EXPORT int mpb_value_add_i64(mpb_value_t *v, int64_t by, int64_t *result);
MPB_EXPORT int mpb_value_add_double(mpb_value_t *v, double by, double *result);

/* Opens (creating if new, empty) the Namespace called name: a new handle in *out
 * (mpb_namespace_close() it). MPB_EKIND if name is another kind. Attribute names are
 * NUL-terminated strings of 1 to 255 bytes; any other gives MPB_EINVAL. */
MPB_EXPORT int mpb_namespace_open(mpb_client_t *c, const char *name, mpb_namespace_t **out);
/* Frees the handle (not the namespace). Accepts &NULL; sets *ns NULL. */
MPB_EXPORT void mpb_namespace_close(mpb_namespace_t **ns);
/* A copy of attribute attr's value in a new buffer *val (mpb_free() it). MPB_ENOKEY when
 * there is no such attribute. */
MPB_EXPORT int mpb_namespace_get(mpb_namespace_t *ns, const char *attr, void **val, size_t *vlen);
/* Sets attribute attr to a copy of val (any msgpack value). MPB_EINVAL when val is not one
 * well-formed value, MPB_ETOOBIG past max_value. */
MPB_EXPORT int mpb_namespace_set(mpb_namespace_t *ns, const char *attr, const void *val,
                                 size_t vlen);
/* Removes attribute attr. MPB_ENOKEY when there is no such attribute. */
MPB_EXPORT int mpb_namespace_del(mpb_namespace_t *ns, const char *attr);
/* Every attribute as a msgpack map {name: value}, in the order they were first set, in a new
 * buffer *map (mpb_free() it). */
MPB_EXPORT int mpb_namespace_list(mpb_namespace_t *ns, void **map, size_t *len);

/* ---- pipelined forms of synchronization kinds, values and namespaces: see mpb/containers.h ----
 */

MPB_EXPORT int mpb_lock_acquire_async(mpb_lock_t *l, int timeout_ms, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_lock_release_async(mpb_lock_t *l, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_lock_locked_async(mpb_lock_t *l, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_semaphore_acquire_async(mpb_semaphore_t *s, int timeout_ms, mpb_callback_t cb,
                                           void *arg);
MPB_EXPORT int mpb_semaphore_release_async(mpb_semaphore_t *s, int64_t n, mpb_callback_t cb,
                                           void *arg);
MPB_EXPORT int mpb_semaphore_value_async(mpb_semaphore_t *s, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_condition_acquire_async(mpb_condition_t *cv, int timeout_ms, mpb_callback_t cb,
                                           void *arg);
MPB_EXPORT int mpb_condition_release_async(mpb_condition_t *cv, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_condition_wait_async(mpb_condition_t *cv, int timeout_ms, mpb_callback_t cb,
                                        void *arg);
MPB_EXPORT int mpb_condition_notify_async(mpb_condition_t *cv, int n, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_condition_notify_all_async(mpb_condition_t *cv, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_event_set_async(mpb_event_t *e, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_event_clear_async(mpb_event_t *e, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_event_is_set_async(mpb_event_t *e, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_event_wait_async(mpb_event_t *e, int timeout_ms, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_barrier_wait_async(mpb_barrier_t *b, int timeout_ms, mpb_callback_t cb,
                                      void *arg);
MPB_EXPORT int mpb_barrier_reset_async(mpb_barrier_t *b, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_barrier_abort_async(mpb_barrier_t *b, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_barrier_state_async(mpb_barrier_t *b, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_value_get_async(mpb_value_t *v, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_value_set_async(mpb_value_t *v, const void *val, size_t vlen, mpb_callback_t cb,
                                   void *arg);
MPB_EXPORT int mpb_value_add_i64_async(mpb_value_t *v, int64_t by, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_value_add_double_async(mpb_value_t *v, double by, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_namespace_get_async(mpb_namespace_t *ns, const char *attr, mpb_callback_t cb,
                                       void *arg);
MPB_EXPORT int mpb_namespace_set_async(mpb_namespace_t *ns, const char *attr, const void *val,
                                       size_t vlen, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_namespace_del_async(mpb_namespace_t *ns, const char *attr, mpb_callback_t cb,
                                       void *arg);
MPB_EXPORT int mpb_namespace_list_async(mpb_namespace_t *ns, mpb_callback_t cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
