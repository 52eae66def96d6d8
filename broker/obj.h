/* obj.h - the objects the store holds: one struct per kind in a union, and the lists of
 * requests parked on them. */
#ifndef BROKER_OBJ_H
#define BROKER_OBJ_H

#include <sys/queue.h>

#include "deque.h"
#include "omap.h"

typedef struct req req_t;
typedef struct sess sess_t;
typedef struct waiter waiter_t;
typedef struct peer peer_t;

typedef enum kind {
    KIND_NONE = 0,
    KIND_DICT,
    KIND_LIST,
    KIND_QUEUE,
    KIND_LOCK,
    KIND_RLOCK,
    KIND_SEMAPHORE,
    KIND_CONDITION,
    KIND_EVENT,
    KIND_BARRIER,
    KIND_VALUE,
    KIND_NAMESPACE,
    KIND_PIPE,
    KIND__N
} kind_t;

/* Parked requests of one object, oldest first. Its head points into itself: a kind's init
 * hook (kind.h) starts each of its lists with wlist_init (waiter.h), and an object holding
 * lists is never moved. */
TAILQ_HEAD(waiter_q, waiter);
typedef struct wlist {
    struct waiter_q head;
    size_t n;
} wlist_t;

/* An item a reliable queue handed out that its taker has not finished (task_done) yet: it
 * goes back to the front of the queue if the taker's session ends first. */
typedef struct delivery {
    uint64_t id;
    sess_t *sess;
    blob_t *item;
    bool task; /* counted in unfinished (the queue was joinable when it was handed out) */
} delivery_t;

typedef struct queue {
    deque_t items;
    int64_t maxsize; /* 0: unbounded */
    bool joinable;
    bool maxsize_set, joinable_set; /* given by an open: fixed from then on */
    int64_t unfinished;             /* joinable: items put and not yet task_done */
    wlist_t getters, putters, joiners;
    bool reliable, reliable_set; /* items handed out are tracked: reliable if set, else joinable */
    delivery_t *dv;              /* handed out and not finished, oldest first */
    size_t ndv, capdv;
    uint64_t next_dv; /* the last delivery id given */
} queue_t;

/* lock and rlock */
typedef struct lockobj {
    sess_t *owner; /* NULL: free */
    uint64_t tid;
    int64_t count; /* rlock recursion */
    uint64_t fence;
    int64_t acquired_ms;
    wlist_t waiters;
    struct obj *woken_by; /* the condition whose notify the owner took it back with */
    int64_t cond_waiting; /* waiters parked on conditions bound to it: it must stay */
} lockobj_t;

/* Units one session took from a semaphore and nobody has given back yet. */
typedef struct semhold {
    sess_t *sess;
    int64_t units;
} semhold_t;

typedef struct sem {
    int64_t value, initial; /* value may be below 0 when an open set initial after use */
    bool bounded;
    bool value_set, bounded_set; /* given by an open: fixed from then on */
    semhold_t *holders;          /* oldest first */
    size_t nholders, capholders;
    wlist_t waiters;
} sem_t;

typedef struct cond {
    kind_t lock_kind; /* KIND_LOCK or KIND_RLOCK */
    char *lock_name;
    uint32_t lock_namelen;
    wlist_t waiters;
    int64_t notified; /* notified waiters that have not yet released the lock after */
} cond_t;

typedef struct event {
    bool set;
    wlist_t waiters;
} event_t;

typedef struct barrier {
    int64_t parties;
    int64_t timeout_ms; /* default for waits that give none; -1: none */
    bool broken;
    uint64_t round;
    wlist_t waiters;
} barrier_t;

/* A duplex channel between end 0 and end 1 (multiprocessing.Pipe), each end owned by the one
 * session that opened it until it closes it or ends: t_pipe.c. */
typedef struct pipeobj {
    deque_t box[2];           /* items sent to end e, oldest first, waiting for its recv */
    sess_t *owner[2];         /* the session that holds end e; NULL: not yet opened, or closed */
    bool closed[2];           /* end e was opened and is closed now (for good) */
    bool duplex, duplex_set;  /* one-way: end 0 only receives, end 1 only sends */
    wlist_t recv[2], poll[2]; /* calls parked on end e */
} pipeobj_t;

typedef struct obj {
    kind_t kind;
    uint32_t namelen;
    char *name;
    bool readonly_empty; /* the shared stand-in for a missing object read by a CMD_READ op */
    bool anon;           /* made by obj.new: lives while sessions hold references (anon.c) */
    int64_t refs;        /* anon: references all sessions hold */
    int64_t doomed_at;   /* anon with no reference: when it goes (ms); 0: not doomed */
    union {
        omap_t dict; /* items: dkv_t; also namespace */
        deque_t list;
        queue_t queue;
        pipeobj_t pipe;
        lockobj_t lock;
        sem_t sem;
        cond_t cond;
        event_t event;
        barrier_t barrier;
        blob_t *value;
    } u;
} obj_t;

/* A dict pair: [klen][vlen][key][value] in one allocation. */
typedef struct dkv {
    uint32_t klen, vlen;
    uint8_t data[];
} dkv_t;
static inline const uint8_t *dkv_val(const dkv_t *kv) {
    return kv->data + kv->klen;
}

#endif
