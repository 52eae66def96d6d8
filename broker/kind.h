/* kind.h - the kinds of object: the hooks each defines for the rest of the broker
 * (kind_ops_t), and the handlers of their ops. */
#ifndef BROKER_KIND_H
#define BROKER_KIND_H

#include "req.h"
#include "sess.h"
#include "waiter.h"

/* What the rest of the broker asks of an object without knowing its kind: the store frees
 * and sizes it, obj.info describes it, obj.delete asks whether it is busy, the waiters' heap
 * times out what is parked on it, and an ending session gives back what it held in it and drops
 * what it had parked there. Each t_*.c defines the table of its kind; a NULL hook does nothing
 * (busy: never; size: 0; describe: no pair). */
typedef struct kind_ops {
    const char *name;       /* as in "kind/name" paths and obj.list */
    void (*init)(obj_t *o); /* a new object: its defaults beyond all zero */
    void (*free)(obj_t *o); /* its content, not o */
    uint64_t (*size)(const obj_t *o);
    uint32_t (*describe)(const obj_t *o, mpb__buf_t *b);   /* obj.info's pairs: their count */
    bool (*busy)(const obj_t *o, char *why, size_t n);     /* waiters or holders: no delete */
    void (*fail_all)(obj_t *o, int code, const char *msg); /* it goes: answer every waiter */
    void (*on_timeout)(waiter_t *w);                       /* answers w, and frees or moves it */
    void (*release_hold)(sess_t *s, hold_t *h);            /* s ended holding h */
    /* A waiter on o went with its session, after it was freed; item: what it carried (a
     * queue.put's), now the hook's to free. */
    void (*on_waiter_gone)(obj_t *o, blob_t *item);
    bool hold_outlives_restart; /* its holds stay with their sessions across a restart */
} kind_ops_t;

/* The table of kind k (a stand-in with no hooks for KIND_NONE). */
const kind_ops_t *kind_ops(kind_t k);
const char *kind_name(kind_t k);
kind_t kind_parse(const char *s, size_t n); /* KIND_NONE if unknown */

extern const kind_ops_t dict_ops, list_ops, queue_ops, pipe_ops, lock_ops, rlock_ops, sem_ops,
    cond_ops, event_ops, barrier_ops, value_ops, namespace_ops;

/* The next fencing token (locks and semaphores): larger than any before, in this run or an
 * earlier one of the broker (t_lock.c). */
uint64_t fence_next(void);
extern uint64_t g_fence;
extern uint64_t g_redelivered; /* items given back to a queue because their taker's session ended */
/* What a condition (t_cond.c) does to its lock (t_lock.c): hands it to its next waiter if any
 * can have it now; checks that the caller owns it (else the ENOTOWNER reply, and -1); lets
 * it go whatever its recursion. */
void lock_grant_next(obj_t *o);
int lock_check_owner(req_t *r, obj_t *o, uint64_t tid, const char *what);
void lock_release_all(obj_t *o);

/* The dict's map and hooks, which the namespace kind shares (t_dict.c). */
void dict_put(omap_t *m, const uint8_t *k, size_t kn, uint64_t h, const uint8_t *v, size_t vn);
/* The position of key k in m, or -1; *h gets its hash. */
long dict_find(omap_t *m, const uint8_t *k, size_t kn, uint64_t *h);
void dict_init(obj_t *o);
void dict_free(obj_t *o);
uint64_t dict_size(const obj_t *o);
uint32_t dict_describe(const obj_t *o, mpb__buf_t *b);

/* Touches the dict entries that the next max (<= DICT_PREFETCH_MAX) requests of a batch
 * starting at p will look up, so their cache misses overlap; returns where it stopped. */
#define DICT_PREFETCH_MAX 32
const uint8_t *dict_prefetch(const uint8_t *p, const uint8_t *end, int max);

/* Handlers, one file per kind: cmd_<kind>_<op>. */
/* t_dict.c */
int cmd_dict_set(req_t *r);
int cmd_dict_get(req_t *r);
int cmd_dict_del(req_t *r);
int cmd_dict_contains(req_t *r);
int cmd_dict_len(req_t *r);
int cmd_dict_scan(req_t *r);
int cmd_dict_update(req_t *r);
int cmd_dict_pop(req_t *r);
int cmd_dict_popitem(req_t *r);
int cmd_dict_setdefault(req_t *r);
int cmd_dict_incr(req_t *r);
int cmd_dict_clear(req_t *r);
int cmd_dict_copy(req_t *r);
/* t_list.c */
int cmd_list_append(req_t *r);
int cmd_list_extend(req_t *r);
int cmd_list_insert(req_t *r);
int cmd_list_get(req_t *r);
int cmd_list_set(req_t *r);
int cmd_list_slice(req_t *r);
int cmd_list_pop(req_t *r);
int cmd_list_remove(req_t *r);
int cmd_list_index(req_t *r);
int cmd_list_count(req_t *r);
int cmd_list_len(req_t *r);
int cmd_list_reverse(req_t *r);
int cmd_list_sort(req_t *r);
int cmd_list_clear(req_t *r);
/* t_queue.c */
int cmd_queue_open(req_t *r);
int cmd_queue_put(req_t *r);
int cmd_queue_get(req_t *r);
int cmd_queue_qsize(req_t *r);
int cmd_queue_peek(req_t *r);
int cmd_queue_task_done(req_t *r);
int cmd_queue_join(req_t *r);
int cmd_queue_empty(req_t *r);
int cmd_queue_full(req_t *r);
/* t_pipe.c */
int cmd_pipe_open(req_t *r);
int cmd_pipe_send(req_t *r);
int cmd_pipe_recv(req_t *r);
int cmd_pipe_poll(req_t *r);
int cmd_pipe_close(req_t *r);
/* t_lock.c */
int cmd_lock_acquire(req_t *r);
int cmd_lock_release(req_t *r);
int cmd_lock_locked(req_t *r);
/* t_sem.c */
int cmd_sem_open(req_t *r);
int cmd_sem_acquire(req_t *r);
int cmd_sem_release(req_t *r);
int cmd_sem_value(req_t *r);
/* t_cond.c */
int cmd_cond_open(req_t *r);
int cmd_cond_wait(req_t *r);
int cmd_cond_notify(req_t *r);
/* t_event.c */
int cmd_event_set(req_t *r);
int cmd_event_clear(req_t *r);
int cmd_event_is_set(req_t *r);
int cmd_event_wait(req_t *r);
/* t_barrier.c */
int cmd_barrier_open(req_t *r);
int cmd_barrier_wait(req_t *r);
int cmd_barrier_reset(req_t *r);
int cmd_barrier_abort(req_t *r);
int cmd_barrier_state(req_t *r);
/* t_value.c */
int cmd_value_open(req_t *r);
int cmd_value_get(req_t *r);
int cmd_value_set(req_t *r);
int cmd_value_add(req_t *r);
/* t_namespace.c */
int cmd_ns_get(req_t *r);
int cmd_ns_set(req_t *r);
int cmd_ns_del(req_t *r);
int cmd_ns_list(req_t *r);

#endif
