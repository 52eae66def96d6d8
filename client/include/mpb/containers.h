/* mpb/containers.h - the dict, list and queue handles, with their pipelined (asynchronous)
 * forms. */
#ifndef MPB_CONTAINERS_H
#define MPB_CONTAINERS_H

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dict ------------------------------------------------------------------------------- */

typedef struct mpb_dict mpb_dict_t;

/* Opens (creating if new) the dict called name: a new handle in *out (mpb_dict_close() it),
 * NULL on failure. MPB_EKIND if name is another kind, MPB_EINVAL for a bad name. name NULL
 * makes a new anonymous dict; a name starting with '~' takes a reference to that anonymous
 * object (MPB_ENOOBJ when it is gone): see "anonymous objects". */
MPB_EXPORT int mpb_dict_open(mpb_client_t *c, const char *name, mpb_dict_t **out);
/* A handle on dict name without a round trip: nothing is created until the first write, and
 * reads of a dict that does not exist find it empty. The kind is checked by each call. */
MPB_EXPORT int mpb_dict_attach(mpb_client_t *c, const char *name, mpb_dict_t **out);
/* Frees the handle (not the shared dict; for an anonymous one, gives back the handle's
 * reference, a round trip). Accepts &NULL; sets *d NULL. */
MPB_EXPORT void mpb_dict_close(mpb_dict_t **d);

/* Stores a copy of val under key (a new key goes last in insertion order; an existing one
 * keeps its place). MPB_EINVAL when key or val is not one well-formed msgpack value,
 * MPB_ETOOBIG past max_key (measured in the key's canonical encoding) or max_value. */
MPB_EXPORT int mpb_dict_set(mpb_dict_t *d, const void *key, size_t klen, const void *val,
                            size_t vlen);
/* Copies the value under key into a new buffer *val. MPB_ENOKEY when absent. */
MPB_EXPORT int mpb_dict_get(mpb_dict_t *d, const void *key, size_t klen, void **val, size_t *vlen);
/* As mpb_dict_get, but an absent key yields a copy of def instead of MPB_ENOKEY. */
MPB_EXPORT int mpb_dict_get_default(mpb_dict_t *d, const void *key, size_t klen, const void *def,
                                    size_t deflen, void **val, size_t *vlen);
/* Removes key. MPB_ENOKEY when absent. */
MPB_EXPORT int mpb_dict_del(mpb_dict_t *d, const void *key, size_t klen);
/* Returns 1 if key is present, 0 if not, or a negative MPB_E*. */
MPB_EXPORT int mpb_dict_contains(mpb_dict_t *d, const void *key, size_t klen);
/* *len: the number of keys (0 for a dict that does not exist; reading creates nothing). */
MPB_EXPORT int mpb_dict_len(mpb_dict_t *d, uint64_t *len);
/* Sets many pairs atomically. pairs is a msgpack map (or array of [key, value] arrays). */
MPB_EXPORT int mpb_dict_update(mpb_dict_t *d, const void *pairs, size_t len);
/* Removes key and returns its value. With def non-NULL an absent key yields def. */
MPB_EXPORT int mpb_dict_pop(mpb_dict_t *d, const void *key, size_t klen, const void *def,
                            size_t deflen, void **val, size_t *vlen);
/* Removes and returns the most recently inserted pair (LIFO, as Python's dict.popitem).
 * MPB_EEMPTY when the dict is empty. */
MPB_EXPORT int mpb_dict_popitem(mpb_dict_t *d, void **key, size_t *klen, void **val, size_t *vlen);
/* Returns the value under key, first setting it to def if absent. */
MPB_EXPORT int mpb_dict_setdefault(mpb_dict_t *d, const void *key, size_t klen, const void *def,
                                   size_t deflen, void **val, size_t *vlen);
/* Atomically adds by to the integer under key (absent counts as 0); *result is the new value.
 * MPB_ETYPE if the value is not an integer, MPB_EOVERFLOW if the sum leaves int64. */
MPB_EXPORT int mpb_dict_incr(mpb_dict_t *d, const void *key, size_t klen, int64_t by,
                             int64_t *result);
/* Removes every key; the dict itself stays (mpb_obj_delete() removes it). */
MPB_EXPORT int mpb_dict_clear(mpb_dict_t *d);
/* Makes dict dst (replacing what it held; created if new) an atomic snapshot of d. */
MPB_EXPORT int mpb_dict_copy(mpb_dict_t *d, const char *dst);

enum { MPB_SCAN_KEYS = 0, MPB_SCAN_VALUES = 1, MPB_SCAN_ITEMS = 2 };
/* One page of keys, values or items, in insertion order. Start with *cursor = 0; *cursor is 0
 * again after the last page. *page is a new buffer holding a msgpack array: of keys, of
 * values, or of [key, value] pairs; *n is its length (up to max, which the broker caps).
 * Every key present for the whole scan is returned exactly once. */
MPB_EXPORT int mpb_dict_scan(mpb_dict_t *d, int what, uint64_t *cursor, size_t max, void **page,
                             size_t *pagelen, size_t *n);

/* Convenience: key is a NUL-terminated string (stored as a msgpack str), values int64 or
 * strings; each is the call it names with those packed. MPB_EINVAL for a NULL key or value. */
MPB_EXPORT int mpb_dict_set_i64(mpb_dict_t *d, const char *key, int64_t v);
/* MPB_ENOKEY when absent, MPB_ETYPE when the value is not an integer that fits int64. */
MPB_EXPORT int mpb_dict_get_i64(mpb_dict_t *d, const char *key, int64_t *v);
MPB_EXPORT int mpb_dict_set_str(mpb_dict_t *d, const char *key, const char *v);
/* *v is a new NUL-terminated string; mpb_free() it. MPB_ENOKEY when absent, MPB_ETYPE when
 * the value is not a str. A NUL inside the value ends the C string early. */
MPB_EXPORT int mpb_dict_get_str(mpb_dict_t *d, const char *key, char **v);
/* As mpb_dict_incr. */
MPB_EXPORT int mpb_dict_incr_str(mpb_dict_t *d, const char *key, int64_t by, int64_t *result);

/* ---- list ------------------------------------------------------------------------------- */

typedef struct mpb_list mpb_list_t;

/* As mpb_dict_open, for a list: a new handle in *out (mpb_list_close() it). */
MPB_EXPORT int mpb_list_open(mpb_client_t *c, const char *name, mpb_list_t **out);
/* As mpb_dict_attach, for a list. */
MPB_EXPORT int mpb_list_attach(mpb_client_t *c, const char *name, mpb_list_t **out);
/* Frees the handle (not the shared list). Accepts &NULL; sets *l NULL. */
MPB_EXPORT void mpb_list_close(mpb_list_t **l);

/* Appends a copy of val. MPB_EINVAL when val is not one well-formed msgpack value,
 * MPB_ETOOBIG past max_value. */
MPB_EXPORT int mpb_list_append(mpb_list_t *l, const void *val, size_t vlen);
/* Appends every element of the msgpack array vals. */
MPB_EXPORT int mpb_list_extend(mpb_list_t *l, const void *vals, size_t len);
/* Inserts before index (Python's list.insert: negative counts from the end; out of range
 * clamps). */
MPB_EXPORT int mpb_list_insert(mpb_list_t *l, int64_t index, const void *val, size_t vlen);
/* Item at index (negative from the end). MPB_EINDEX when out of range. */
MPB_EXPORT int mpb_list_get(mpb_list_t *l, int64_t index, void **val, size_t *vlen);
/* Integer and string forms of append and get: MPB_ETYPE when the item is of another type; a
 * string is a new NUL-terminated buffer (mpb_free() it). */
MPB_EXPORT int mpb_list_append_i64(mpb_list_t *l, int64_t v);
MPB_EXPORT int mpb_list_append_str(mpb_list_t *l, const char *s);
MPB_EXPORT int mpb_list_get_i64(mpb_list_t *l, int64_t index, int64_t *v);
MPB_EXPORT int mpb_list_get_str(mpb_list_t *l, int64_t index, char **s);
/* Replaces the item at index (negative from the end) with a copy of val. MPB_EINDEX when out
 * of range. */
MPB_EXPORT int mpb_list_set(mpb_list_t *l, int64_t index, const void *val, size_t vlen);
/* Items [start, stop) as Python slices them (negative indexes count from the end), at most
 * max of them (the broker caps max): *items is a new msgpack array of *n values. */
MPB_EXPORT int mpb_list_slice(mpb_list_t *l, int64_t start, int64_t stop, size_t max, void **items,
                              size_t *itemslen, size_t *n);
/* Removes and returns the item at index (-1: the last). MPB_EINDEX when empty/out of range. */
MPB_EXPORT int mpb_list_pop(mpb_list_t *l, int64_t index, void **val, size_t *vlen);
/* Removes the first item equal to val. MPB_EVALUE when there is none. */
MPB_EXPORT int mpb_list_remove(mpb_list_t *l, const void *val, size_t vlen);
/* Index of the first item equal to val in [start, stop). MPB_EVALUE when there is none. */
MPB_EXPORT int mpb_list_index(mpb_list_t *l, const void *val, size_t vlen, int64_t start,
                              int64_t stop, int64_t *index);
/* *count: how many items equal val (as the dict compares keys: by canonical encoding). */
MPB_EXPORT int mpb_list_count(mpb_list_t *l, const void *val, size_t vlen, uint64_t *count);
/* *len: the number of items (0 for a list that does not exist; reading creates nothing). */
MPB_EXPORT int mpb_list_len(mpb_list_t *l, uint64_t *len);
/* Reverses the list in place. */
MPB_EXPORT int mpb_list_reverse(mpb_list_t *l);
/* Stable sort: numbers, strings (by code point), bytes, and arrays of those (element-wise),
 * each in natural order. MPB_ETYPE (and the list unchanged) when items are not comparable. */
MPB_EXPORT int mpb_list_sort(mpb_list_t *l, int reverse);
/* Removes every item; the list itself stays. */
MPB_EXPORT int mpb_list_clear(mpb_list_t *l);

/* ---- queue ------------------------------------------------------------------------------ */

typedef struct mpb_queue mpb_queue_t;

/* Opens (creating if new) queue name. maxsize: 0 unbounded, > 0 a bound, -1 "whatever it is"
 * (0 if new). joinable: 1 a JoinableQueue, 0 a plain Queue, -1 whatever it is. A queue made
 * without explicit settings (by an open with -1, or by a consumer's get) takes each setting
 * from the first open that gives it, so consumers may start before the producer; a setting
 * that differs from one given before: MPB_EINVAL says how. */
MPB_EXPORT int mpb_queue_open(mpb_client_t *c, const char *name, int64_t maxsize, int joinable,
                              mpb_queue_t **out);
/* Frees the handle (not the queue: its items stay). Accepts &NULL; sets *q NULL. */
MPB_EXPORT void mpb_queue_close(mpb_queue_t **q);
/* Puts a copy of val, blocking while the queue is full, up to timeout_ms. Returns 0,
 * MPB_EFULL (timeout_ms 0 and full: put_nowait), MPB_ETIMEDOUT. */
MPB_EXPORT int mpb_queue_put(mpb_queue_t *q, const void *val, size_t vlen, int timeout_ms);
/* Takes the oldest item into a new buffer *val, blocking while empty, up to timeout_ms.
 * Returns 0, MPB_EEMPTY (timeout_ms 0 and empty: get_nowait), MPB_ETIMEDOUT. Waiting getters
 * are served first come, first served. */
MPB_EXPORT int mpb_queue_get(mpb_queue_t *q, void **val, size_t *vlen, int timeout_ms);
/* Integer and string forms of put and get (as the dict's): the item is a msgpack int or str;
 * a string got is a new NUL-terminated buffer (mpb_free() it). A got item of another type is
 * taken all the same, and the call says MPB_ETYPE. */
MPB_EXPORT int mpb_queue_put_i64(mpb_queue_t *q, int64_t v, int timeout_ms);
MPB_EXPORT int mpb_queue_put_str(mpb_queue_t *q, const char *s, int timeout_ms);
MPB_EXPORT int mpb_queue_get_i64(mpb_queue_t *q, int64_t *v, int timeout_ms);
MPB_EXPORT int mpb_queue_get_str(mpb_queue_t *q, char **s, int timeout_ms);
/* *n: the items in the queue now (puts still waiting for room not counted). As in Python,
 * the answer may be stale by the time the caller acts on it. */
MPB_EXPORT int mpb_queue_qsize(mpb_queue_t *q, uint64_t *n);
/* 1 if it holds no item, 0 if it does, or a negative MPB_E*. */
MPB_EXPORT int mpb_queue_empty(mpb_queue_t *q);
/* 1 if it is bounded and holds maxsize items (a put would block), 0 if not, or a negative
 * MPB_E*. */
MPB_EXPORT int mpb_queue_full(mpb_queue_t *q);
/* JoinableQueue: marks one item done. MPB_EVALUE when called more times than items were put,
 * MPB_ETYPE on a plain queue. The item it finishes is this client's oldest one not yet done,
 * if it took any from this queue (see reliable delivery below). */
MPB_EXPORT int mpb_queue_task_done(mpb_queue_t *q);

/* Reliable delivery. A JoinableQueue, or a queue opened with mpb_queue_open_reliable(), keeps
 * each item it hands out until its taker says it is done (task_done); if the taker's session
 * ends first (the process died, or was cut off for longer than the session TTL), the item goes
 * back to the front of the queue for the next getter, so no item is lost with a consumer and
 * join() does not wait for a dead one. A plain queue keeps Python's semantics (an item taken
 * is gone). The broker counts items given back in /metrics (mpb_queue_redelivered_total). */

/* As mpb_queue_open, and the queue tracks its items even when not joinable (a setting fixed
 * from then on, as the others: MPB_EINVAL if an open said otherwise before). */
MPB_EXPORT int mpb_queue_open_reliable(mpb_client_t *c, const char *name, int64_t maxsize,
                                       int joinable, mpb_queue_t **out);
/* As mpb_queue_get, and *delivery is the item's delivery id (0 when the queue does not track
 * its items), for mpb_queue_task_done_id(). */
MPB_EXPORT int mpb_queue_get_tracked(mpb_queue_t *q, void **val, size_t *vlen, uint64_t *delivery,
                                     int timeout_ms);
/* Says the item of that delivery (taken by this client) is done, as AMQP's ack: on a
 * JoinableQueue it is also its task_done. MPB_EVALUE when this client has no such item not
 * yet done. */
MPB_EXPORT int mpb_queue_task_done_id(mpb_queue_t *q, uint64_t delivery);
/* JoinableQueue: blocks until every item put has been marked done. 0 or MPB_ETIMEDOUT. */
MPB_EXPORT int mpb_queue_join(mpb_queue_t *q, int timeout_ms);

/* ---- pipelined forms (see mpb_send() in mpb/client.h) ------------------------------------
 *
 * Every op on a handle has one: mpb_KIND_OP_async() takes the arguments of mpb_KIND_OP() but
 * its results, then a callback and its argument; it checks the same things, queues the request
 * as mpb_send() does (sent by mpb_flush() or any call that waits) and returns 0 or the error
 * (then cb is never called). The callback gets the reply's value as PROTOCOL.md gives it: nil
 * for set, append, put...; the value for get and pop; a boolean for contains, empty, locked,
 * is_set, poll and the waits that time out; the integer of len, incr, index, a lock's fence;
 * the page of scan and slice ([cursor, items] or the items). Nothing is copied for the caller
 * to free. A blocking op (queue get and put, join, acquire, waits, pipe recv) answers when it
 * completes or its timeout_ms passes (the broker's deadline: no client-side one). An async
 * lock acquire is the calling thread's (mpb_lock_set_thread()) and is not counted among what a
 * lost session takes (mpb_options_t). The forms of the synchronization kinds are in
 * mpb/sync.h, the pipe's in mpb/pipe.h. */

MPB_EXPORT int mpb_dict_set_async(mpb_dict_t *d, const void *key, size_t klen, const void *val,
                                  size_t vlen, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_dict_get_async(mpb_dict_t *d, const void *key, size_t klen, mpb_callback_t cb,
                                  void *arg);
MPB_EXPORT int mpb_dict_get_default_async(mpb_dict_t *d, const void *key, size_t klen,
                                          const void *def, size_t deflen, mpb_callback_t cb,
                                          void *arg);
MPB_EXPORT int mpb_dict_del_async(mpb_dict_t *d, const void *key, size_t klen, mpb_callback_t cb,
                                  void *arg);
MPB_EXPORT int mpb_dict_contains_async(mpb_dict_t *d, const void *key, size_t klen,
                                       mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_dict_len_async(mpb_dict_t *d, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_dict_update_async(mpb_dict_t *d, const void *pairs, size_t len,
                                     mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_dict_pop_async(mpb_dict_t *d, const void *key, size_t klen, const void *def,
                                  size_t deflen, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_dict_popitem_async(mpb_dict_t *d, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_dict_setdefault_async(mpb_dict_t *d, const void *key, size_t klen,
                                         const void *def, size_t deflen, mpb_callback_t cb,
                                         void *arg);
MPB_EXPORT int mpb_dict_incr_async(mpb_dict_t *d, const void *key, size_t klen, int64_t by,
                                   mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_dict_clear_async(mpb_dict_t *d, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_dict_copy_async(mpb_dict_t *d, const char *dst, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_dict_scan_async(mpb_dict_t *d, int what, uint64_t cursor, size_t max,
                                   mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_list_append_async(mpb_list_t *l, const void *val, size_t vlen, mpb_callback_t cb,
                                     void *arg);
MPB_EXPORT int mpb_list_extend_async(mpb_list_t *l, const void *vals, size_t len, mpb_callback_t cb,
                                     void *arg);
MPB_EXPORT int mpb_list_insert_async(mpb_list_t *l, int64_t index, const void *val, size_t vlen,
                                     mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_list_get_async(mpb_list_t *l, int64_t index, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_list_set_async(mpb_list_t *l, int64_t index, const void *val, size_t vlen,
                                  mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_list_slice_async(mpb_list_t *l, int64_t start, int64_t stop, size_t max,
                                    mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_list_pop_async(mpb_list_t *l, int64_t index, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_list_remove_async(mpb_list_t *l, const void *val, size_t vlen, mpb_callback_t cb,
                                     void *arg);
MPB_EXPORT int mpb_list_index_async(mpb_list_t *l, const void *val, size_t vlen, int64_t start,
                                    int64_t stop, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_list_count_async(mpb_list_t *l, const void *val, size_t vlen, mpb_callback_t cb,
                                    void *arg);
MPB_EXPORT int mpb_list_len_async(mpb_list_t *l, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_list_reverse_async(mpb_list_t *l, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_list_sort_async(mpb_list_t *l, int reverse, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_list_clear_async(mpb_list_t *l, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_queue_put_async(mpb_queue_t *q, const void *val, size_t vlen, int timeout_ms,
                                   mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_queue_get_async(mpb_queue_t *q, int timeout_ms, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_queue_get_tracked_async(mpb_queue_t *q, int timeout_ms, mpb_callback_t cb,
                                           void *arg);
MPB_EXPORT int mpb_queue_qsize_async(mpb_queue_t *q, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_queue_empty_async(mpb_queue_t *q, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_queue_full_async(mpb_queue_t *q, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_queue_task_done_async(mpb_queue_t *q, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_queue_task_done_id_async(mpb_queue_t *q, uint64_t delivery, mpb_callback_t cb,
                                            void *arg);
MPB_EXPORT int mpb_queue_join_async(mpb_queue_t *q, int timeout_ms, mpb_callback_t cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
