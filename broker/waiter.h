/* waiter.h - requests parked until an op or a deadline answers them (waiter.c). */
#ifndef BROKER_WAITER_H
#define BROKER_WAITER_H

#include "obj.h"

/*   obj ── wlist ──> [w1] <-> [w2] <-> [w3]     FIFO per object (and per purpose): a TAILQ
 *   sess ──────────> [w1] -> [w7]                 to drop them when the session ends
 *   heap of deadlines ─> the loop's poll timeout */
struct waiter {
    sess_t *sess;
    uint64_t rid;
    unsigned op;
    obj_t *obj;
    wlist_t *list;
    TAILQ_ENTRY(waiter) link; /* in list */
    LIST_ENTRY(waiter) slink; /* in sess->waiters */
    int64_t deadline;         /* INT64_MAX: none */
    size_t heap;              /* position in the timer heap + 1; 0: not in it */
    blob_t *item;             /* queue.put: the item */
    uint64_t tid;             /* lock owner thread id */
    int64_t count;            /* rlock recursion to restore (condition.wait) */
    bool timed_out;           /* condition.wait: re-acquiring after a timeout */
    obj_t *cond;              /* condition.wait: the condition waited on */
    uint64_t parked_ns;       /* when it was parked (CLOCK_MONOTONIC): its latency when answered */
    bool with_id;             /* queue.get: answer [delivery id, item] */
    /* Answers it at its deadline, and frees or moves it: its kind's on_timeout, or the
     * pool's for the pool's waiters (which are on no object). */
    void (*on_timeout)(waiter_t *w);
};

/* An empty list. A TAILQ head points into itself, so all zero is not empty: a list in static
 * storage starts as WLIST_INITIALIZER, one in calloc'd memory (an object, by its kind's init
 * hook) with wlist_init. */
#define WLIST_INITIALIZER(l)                                                                       \
    { TAILQ_HEAD_INITIALIZER((l).head), 0 }
static inline void wlist_init(wlist_t *l) {
    TAILQ_INIT(&l->head);
    l->n = 0;
}
/* The oldest waiter on l, or NULL. */
static inline waiter_t *wlist_first(const wlist_t *l) {
    return TAILQ_FIRST(&l->head);
}

/* Parks the request on list (FIFO) with a deadline from timeout_ms (-1: none). */
waiter_t *waiter_park(req_t *r, wlist_t *list, int64_t timeout_ms);
/* Takes w off its list, the heap and its session; frees it (not its item). */
void waiter_free(waiter_t *w);
/* Writes one map pair for describe: "waiting": [{session, host, pid, op}, ...], the calls
 * parked on each of the n lists, oldest first in each (for mpb info: who waits, for what). */
void waiter_describe(mpb__buf_t *b, const wlist_t *const *lists, size_t n);
/* Moves w to the end of another list, with a new deadline (INT64_MAX: none). */
void waiter_move(waiter_t *w, obj_t *obj, wlist_t *list, int64_t deadline);
/* Answers a parked request: exactly one value or an error, in a frame of its own. */
void waiter_reply_nil(waiter_t *w);
void waiter_reply_bool(waiter_t *w, bool v);
void waiter_reply_int(waiter_t *w, int64_t v);
void waiter_reply_raw(waiter_t *w, const uint8_t *v, size_t n);
__attribute__((format(printf, 3, 4))) void waiter_reply_error(waiter_t *w, int code,
                                                              const char *fmt, ...);
/* Milliseconds until the next deadline (-1: none), and firing the ones that are due. */
long waiter_next_ms(int64_t now);
void waiter_expire(int64_t now);
size_t waiter_count(void);
/* Drops every waiter on list with an error (object deleted, barrier broken...). */
void wlist_fail(wlist_t *l, int code, const char *msg);
/* Whether any waits on l: then why says so (for a kind's busy hook). */
bool wlist_busy(const wlist_t *l, char *why, size_t n);
/* The same for the oldest waiter only (the list must not be empty). */
void wlist_fail_one(wlist_t *l, int code, const char *msg);

#endif
