/* async_ops.c - the pipelined form of every op on a handle, mpb_KIND_OP_async(): the same
 * arguments as the synchronous call but its results, and a callback. Each is that synchronous
 * call run in send mode (mpb__async_arm): the request is built and checked by the one code
 * that builds it for the synchronous call, then queued with the callback instead of waited
 * for (see mpb__call). The reply's value reaches the callback as the broker sends it
 * (PROTOCOL.md). One table makes all of them; mpb/containers.h, mpb/sync.h and mpb/pipe.h
 * declare them. */
#include <stdlib.h>

#include "internal.h"

/* Where the synchronous calls would put their results: never written in send mode. */
typedef struct outs {
    void *p, *p2;
    size_t n, n2;
    uint64_t u;
    int64_t i, i2;
    double d;
    int flag;
} outs_t;

/* X(kind, op, (the handle and the arguments), (the synchronous call's arguments)) */
#define ASYNC_OPS(X)                                                                               \
    X(dict, set, (mpb_dict_t * d, const void *key, size_t klen, const void *val, size_t vlen),     \
      (d, key, klen, val, vlen))                                                                   \
    X(dict, get, (mpb_dict_t * d, const void *key, size_t klen), (d, key, klen, &o.p, &o.n))       \
    X(dict, get_default,                                                                           \
      (mpb_dict_t * d, const void *key, size_t klen, const void *def, size_t deflen),              \
      (d, key, klen, def, deflen, &o.p, &o.n))                                                     \
    X(dict, del, (mpb_dict_t * d, const void *key, size_t klen), (d, key, klen))                   \
    X(dict, contains, (mpb_dict_t * d, const void *key, size_t klen), (d, key, klen))              \
    X(dict, len, (mpb_dict_t * d), (d, &o.u))                                                      \
    X(dict, update, (mpb_dict_t * d, const void *pairs, size_t len), (d, pairs, len))              \
    X(dict, pop, (mpb_dict_t * d, const void *key, size_t klen, const void *def, size_t deflen),   \
      (d, key, klen, def, deflen, &o.p, &o.n))                                                     \
    X(dict, popitem, (mpb_dict_t * d), (d, &o.p, &o.n, &o.p2, &o.n2))                              \
    X(dict, setdefault,                                                                            \
      (mpb_dict_t * d, const void *key, size_t klen, const void *def, size_t deflen),              \
      (d, key, klen, def, deflen, &o.p, &o.n))                                                     \
    X(dict, incr, (mpb_dict_t * d, const void *key, size_t klen, int64_t by),                      \
      (d, key, klen, by, &o.i))                                                                    \
    X(dict, clear, (mpb_dict_t * d), (d))                                                          \
    X(dict, copy, (mpb_dict_t * d, const char *dst), (d, dst))                                     \
    X(dict, scan, (mpb_dict_t * d, int what, uint64_t cursor, size_t max),                         \
      (d, what, &cursor, max, &o.p, &o.n, &o.n2))                                                  \
    X(list, append, (mpb_list_t * l, const void *val, size_t vlen), (l, val, vlen))                \
    X(list, extend, (mpb_list_t * l, const void *vals, size_t len), (l, vals, len))                \
    X(list, insert, (mpb_list_t * l, int64_t index, const void *val, size_t vlen),                 \
      (l, index, val, vlen))                                                                       \
    X(list, get, (mpb_list_t * l, int64_t index), (l, index, &o.p, &o.n))                          \
    X(list, set, (mpb_list_t * l, int64_t index, const void *val, size_t vlen),                    \
      (l, index, val, vlen))                                                                       \
    X(list, slice, (mpb_list_t * l, int64_t start, int64_t stop, size_t max),                      \
      (l, start, stop, max, &o.p, &o.n, &o.n2))                                                    \
    X(list, pop, (mpb_list_t * l, int64_t index), (l, index, &o.p, &o.n))                          \
    X(list, remove, (mpb_list_t * l, const void *val, size_t vlen), (l, val, vlen))                \
    X(list, index, (mpb_list_t * l, const void *val, size_t vlen, int64_t start, int64_t stop),    \
      (l, val, vlen, start, stop, &o.i))                                                           \
    X(list, count, (mpb_list_t * l, const void *val, size_t vlen), (l, val, vlen, &o.u))           \
    X(list, len, (mpb_list_t * l), (l, &o.u))                                                      \
    X(list, reverse, (mpb_list_t * l), (l))                                                        \
    X(list, sort, (mpb_list_t * l, int reverse), (l, reverse))                                     \
    X(list, clear, (mpb_list_t * l), (l))                                                          \
    X(queue, put, (mpb_queue_t * q, const void *val, size_t vlen, int timeout_ms),                 \
      (q, val, vlen, timeout_ms))                                                                  \
    X(queue, get, (mpb_queue_t * q, int timeout_ms), (q, &o.p, &o.n, timeout_ms))                  \
    X(queue, get_tracked, (mpb_queue_t * q, int timeout_ms), (q, &o.p, &o.n, &o.u, timeout_ms))    \
    X(queue, qsize, (mpb_queue_t * q), (q, &o.u))                                                  \
    X(queue, empty, (mpb_queue_t * q), (q))                                                        \
    X(queue, full, (mpb_queue_t * q), (q))                                                         \
    X(queue, task_done, (mpb_queue_t * q), (q))                                                    \
    X(queue, task_done_id, (mpb_queue_t * q, uint64_t delivery), (q, delivery))                    \
    X(queue, join, (mpb_queue_t * q, int timeout_ms), (q, timeout_ms))                             \
    X(lock, acquire, (mpb_lock_t * l, int timeout_ms), (l, timeout_ms, &o.u))                      \
    X(lock, release, (mpb_lock_t * l), (l))                                                        \
    X(lock, locked, (mpb_lock_t * l), (l))                                                         \
    X(semaphore, acquire, (mpb_semaphore_t * s, int timeout_ms), (s, timeout_ms))                  \
    X(semaphore, release, (mpb_semaphore_t * s, int64_t n), (s, n))                                \
    X(semaphore, value, (mpb_semaphore_t * s), (s, &o.i))                                          \
    X(condition, acquire, (mpb_condition_t * cv, int timeout_ms), (cv, timeout_ms, &o.u))          \
    X(condition, release, (mpb_condition_t * cv), (cv))                                            \
    X(condition, wait, (mpb_condition_t * cv, int timeout_ms), (cv, timeout_ms))                   \
    X(condition, notify, (mpb_condition_t * cv, int n), (cv, n))                                   \
    X(condition, notify_all, (mpb_condition_t * cv), (cv))                                         \
    X(event, set, (mpb_event_t * e), (e))                                                          \
    X(event, clear, (mpb_event_t * e), (e))                                                        \
    X(event, is_set, (mpb_event_t * e), (e))                                                       \
    X(event, wait, (mpb_event_t * e, int timeout_ms), (e, timeout_ms))                             \
    X(barrier, wait, (mpb_barrier_t * b, int timeout_ms), (b, timeout_ms, &o.i))                   \
    X(barrier, reset, (mpb_barrier_t * b), (b))                                                    \
    X(barrier, abort, (mpb_barrier_t * b), (b))                                                    \
    X(barrier, state, (mpb_barrier_t * b), (b, &o.i, &o.i2, &o.flag))                              \
    X(value, get, (mpb_value_t * v), (v, &o.p, &o.n))                                              \
    X(value, set, (mpb_value_t * v, const void *val, size_t vlen), (v, val, vlen))                 \
    X(value, add_i64, (mpb_value_t * v, int64_t by), (v, by, &o.i))                                \
    X(value, add_double, (mpb_value_t * v, double by), (v, by, &o.d))                              \
    X(namespace, get, (mpb_namespace_t * ns, const char *attr), (ns, attr, &o.p, &o.n))            \
    X(namespace, set, (mpb_namespace_t * ns, const char *attr, const void *val, size_t vlen),      \
      (ns, attr, val, vlen))                                                                       \
    X(namespace, del, (mpb_namespace_t * ns, const char *attr), (ns, attr))                        \
    X(namespace, list, (mpb_namespace_t * ns), (ns, &o.p, &o.n))                                   \
    X(pipe, send, (mpb_pipe_t * p, const void *val, size_t vlen), (p, val, vlen))                  \
    X(pipe, recv, (mpb_pipe_t * p, int timeout_ms), (p, &o.p, &o.n, timeout_ms))                   \
    X(pipe, poll, (mpb_pipe_t * p, int timeout_ms), (p, timeout_ms))

#define UNPAREN(...) __VA_ARGS__
#define DEFINE_ASYNC(kind, op, params, args)                                                       \
    int mpb_##kind##_##op##_async(UNPAREN params, mpb_callback_t cb, void *arg) {                  \
        outs_t o = {0};                                                                            \
        (void)o;                                                                                   \
        mpb__async_arm(cb, arg);                                                                   \
        return mpb__async_done(mpb_##kind##_##op args);                                            \
    }
ASYNC_OPS(DEFINE_ASYNC)
