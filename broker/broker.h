/* broker.h - what the parts of mpbrokerd share: the server and its limits, peers (one per
 * ZeroMQ connection) and sessions (one per client, outliving connections), the object store,
 * requests and replies. Everything here is touched by the loop thread only. */
#ifndef MPB_BROKER_H
#define MPB_BROKER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mpbproto.h"

/* ---- util.c ---- */

/* Allocation that cannot fail: client data is refused by the limits (--max-memory) before
 * memory runs out, and a first failure gives back a reserve and is tried again (mem.c), after
 * which growth is refused; running out anyway is fatal and says how much was asked. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrndup(const char *s, size_t n);
int64_t now_ms(void);
int64_t now_ns(void); /* CLOCK_MONOTONIC */
/* For timing requests: the TSC where the kernel keeps time by it, else now_ns(). */
void lat_clock_init(void);
int64_t lat_clock_ns(void);
/* The buffer's space is ours to grow: wraps mpb__buf_reserve and aborts on failure. */
void bbuf_ensure(mpb__buf_t *b);

/* ---- log.c ---- */

#include "log.h"

typedef struct req req_t;

/* ---- values ---- */

/* A value as stored: its msgpack bytes with their length in front, one allocation. */
typedef struct blob {
    uint32_t len;
    uint8_t data[];
} blob_t;
blob_t *blob_new(const uint8_t *p, size_t n);

/* ---- deque.c: a ring of blobs, the body of list and queue ---- */

typedef struct deque {
    blob_t **v;
    size_t head, len, cap; /* cap is 0 or a power of two */
} deque_t;
static inline blob_t *deque_at(const deque_t *d, size_t i) {
    return d->v[(d->head + i) & (d->cap - 1)];
}
static inline blob_t **deque_ref(deque_t *d, size_t i) {
    return &d->v[(d->head + i) & (d->cap - 1)];
}
void deque_push_back(deque_t *d, blob_t *b);
void deque_push_front(deque_t *d, blob_t *b);
blob_t *deque_pop_front(deque_t *d);
blob_t *deque_pop_back(deque_t *d);
void deque_insert(deque_t *d, size_t i, blob_t *b);
blob_t *deque_remove(deque_t *d, size_t i);
void deque_clear(deque_t *d); /* frees the blobs */
size_t deque_bytes(const deque_t *d);

/* ---- omap.c: an insertion-ordered hash map, the body of dict and of the store ----
 *
 *   ents: [e0 e1 (deleted) e3 ...]  dense, in insertion order; each has an ordinal that
 *                                    only grows, so a cursor survives inserts and rehashes
 *   idx:  [ . 3 . 1 . . 4 ...]       open addressing (linear probing) over ents positions + 2
 */
typedef struct oent {
    uint64_t hash;
    uint64_t ord;
    void *item; /* NULL: deleted */
} oent_t;
typedef const uint8_t *(*omap_key_fn)(const void *item, size_t *len);
typedef struct omap {
    oent_t *ents;
    size_t nents, entcap, live;
    uint64_t *idx; /* position + 2 | hash tag; see omap.c */
    size_t idxcap; /* power of two */
    size_t used;   /* index slots not empty: positions and tombstones */
    uint64_t next_ord;
    omap_key_fn key;
} omap_t;
void omap_init(omap_t *m, omap_key_fn key);
/* The position in ents of key, or -1. */
long omap_find(const omap_t *m, const uint8_t *key, size_t n, uint64_t hash);
/* Adds an item whose key is absent; returns its position. */
size_t omap_add(omap_t *m, void *item, uint64_t hash);
/* Removes the entry at pos and returns its item. */
void *omap_del(omap_t *m, size_t pos);
/* The position of the first live entry with ord >= from, or nents. */
size_t omap_seek(const omap_t *m, uint64_t from);
/* The last live entry's position, or -1. */
long omap_last(omap_t *m);
void omap_free(omap_t *m, void (*free_item)(void *));

/* ---- objects ---- */

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
const char *kind_name(kind_t k);
kind_t kind_parse(const char *s, size_t n); /* KIND_NONE if unknown */

typedef struct sess sess_t;
typedef struct waiter waiter_t;

/* Parked requests of one object, oldest first. */
typedef struct wlist {
    waiter_t *head, *tail;
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
    int64_t unfinished;          /* joinable: items put and not yet task_done */
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

/* Touches the dict entries that the next max (<= DICT_PREFETCH_MAX) requests of a batch
 * starting at p will look up, so their cache misses overlap; returns where it stopped. */
#define DICT_PREFETCH_MAX 32
const uint8_t *dict_prefetch(const uint8_t *p, const uint8_t *end, int max);

/* ---- store.c ---- */

void store_init(void);
void store_free(void);
/* The object called name, or NULL. */
obj_t *store_get(const char *name, size_t n);
/* Creates a new object (the name must be absent). */
obj_t *store_create(kind_t kind, const char *name, size_t n);
void store_delete(obj_t *o);
/* Puts o (same name) in the place of old and frees old. */
void store_replace(obj_t *old, obj_t *o);
size_t store_count(void);
size_t store_count_kind(kind_t k);
const omap_t *store_map(void);
uint64_t obj_size(const obj_t *o);
void obj_free(obj_t *o);
/* A new empty object with the same kind and name but no content (for dict.copy). */
obj_t *dict_clone(const obj_t *src, const char *name, size_t n);

/* ---- sessions and peers ---- */

#define RID_MAX 256

typedef struct peer {
    uint8_t rid[RID_MAX];
    uint8_t ridlen;
    bool ready; /* handshake done, keys set */
    uint8_t nonce_c[MPB__NONCE_LEN], nonce_b[MPB__NONCE_LEN];
    int64_t hs_deadline;
    mpb__mac_t *rx, *tx;
    uint64_t seq_in, seq_out;
    sess_t *sess;
    int fd;             /* its connection's descriptor while it has a session, else -1 */
    uint64_t out_bytes, out_checked; /* reply bytes sent since its session began; at the last
                                        look at what its TCP acknowledged */
    int64_t acked0;                  /* what its TCP had acknowledged then (-1: not TCP) */
    int64_t acked_seen, acked_ms;    /* over max-output: acknowledged at the last look, and
                                        since when that has not moved */
    bool out_over;                   /* over max-output at the last look: the sweep looks */
    bool out_cut;                    /* shut for it: its replies are dropped from now on */
    uint32_t nsess_opened; /* live sessions this connection opened: max-sessions-per-conn */
    struct peer *hnext; /* peer table chain */
    char addr[48];      /* the TCP peer's address at its hello ("" for ipc): mpb clients */
} peer_t;

/* What a session holds, released when it ends: lock ownership or semaphore units. */
typedef struct hold {
    obj_t *obj;
    uint64_t tid;
    int64_t units;
} hold_t;

/* References one session holds on one anonymous object. */
typedef struct sref {
    obj_t *obj;
    int64_t n;
} sref_t;

struct sess {
    uint64_t id;
    hold_t *holds;
    size_t nholds, capholds;
    sref_t *refs; /* anonymous objects it keeps alive: anon.c */
    size_t nrefs, caprefs;
    waiter_t *waiters; /* its parked requests, through waiter.snext */
    struct pool_sess *pool; /* its tasks and, for a worker, what it serves: pool.c */
    uint8_t token[MPB__TOKEN_LEN];
    peer_t *peer; /* the connection it speaks on now; NULL while none */
    char host[64];
    char name[64];
    int64_t pid;
    int64_t created_ms, last_seen_ms;
    uint64_t seq_hi;       /* highest REQ sequence number accepted on any of its channels */
    struct replay *replay; /* replies to its recent requests: replay.c */
    uint8_t origin[RID_MAX]; /* the connection that opened it, for max-sessions-per-conn */
    uint8_t originlen;
    sess_t *next, *prev; /* all sessions */
};

/* ---- replay.c: the replies a client that resends is answered from ---- */

/* Whether an op's replies are kept (it changes something or waits; a read just runs again). */
bool replay_cacheable(unsigned op);
/* Keeps the reply [rid, code, value] to a request of s just run (if op's replies are kept). */
void replay_note(sess_t *s, uint64_t rid, unsigned op, const uint8_t *reply, size_t n);
/* Keeps the answer to a parked request of s (server_send_reply). */
void replay_note_parked(sess_t *s, const uint8_t *reply, size_t n);
/* The kept reply to rid, or NULL. */
const blob_t *replay_find(const sess_t *s, uint64_t rid);
/* Whether a request rid of s is parked, to be answered later. */
bool replay_parked(const sess_t *s, uint64_t rid);
size_t replay_bytes(const sess_t *s);
void replay_free(sess_t *s);
extern uint64_t g_replayed; /* requests answered from the cache instead of running again */

/* ---- mem.c: --max-memory, and a reserve against the allocator failing ---- */

void mem_init(void);
/* Heap bytes in use now. */
size_t mem_used(void);
size_t mem_used_estimate(void);
/* Whether a request that brings incoming bytes and would grow memory must be refused: then
 * its ENOMEM reply is written and a negative code returned; else 0. */
int mem_refuse(req_t *r, size_t incoming);
/* An allocation failed: gives the reserve back (true) so it can be tried again, once. */
bool mem_release_reserve(void);
bool mem_low(void);
void mem_tick(int64_t now);
extern uint64_t g_oom_refused;

/* ---- t_pipe.c: the hooks of the pipe kind ---- */

/* s ended holding end h->tid of pipe h->obj: the end closes, its peer sees EOF. */
void pipe_release_hold(sess_t *s, hold_t *h);
void pipe_on_timeout(waiter_t *w);
bool pipe_busy(const obj_t *o, char *why, size_t n);
void pipe_fail_all(obj_t *o, int code, const char *msg);
void pipe_free(obj_t *o);
uint32_t pipe_describe(const obj_t *o, mpb__buf_t *b);

/* ---- t_queue.c: reliable delivery ---- */

/* s ended holding delivery h->tid of queue h->obj: the item goes back to the front. */
void queue_release_hold(sess_t *s, hold_t *h);
void queue_free_deliveries(obj_t *o);
extern uint64_t g_redelivered; /* items given back to a queue because their taker's session ended */

/* Writes who s is as three map pairs, "session" (its id), "host" and "pid", into a map the
 * caller has opened and counted them in; s NULL (gone) writes 0, "" and 0. server.c */
void sess_describe(const sess_t *s, mpb__buf_t *b);

/* ---- waiter.c: requests parked until an op or a deadline answers them ----
 *
 *   obj ── wlist ──> [w1] <-> [w2] <-> [w3]     FIFO per object (and per purpose)
 *   sess ──────────> [w1] -> [w7]                 to drop them when the session ends
 *   heap of deadlines ─> the loop's poll timeout */
struct waiter {
    sess_t *sess;
    uint64_t rid;
    unsigned op;
    obj_t *obj;
    wlist_t *list;
    waiter_t *next, *prev; /* in list */
    waiter_t *snext, *sprev; /* in sess->waiters */
    int64_t deadline; /* INT64_MAX: none */
    size_t heap;      /* position in the timer heap + 1; 0: not in it */
    blob_t *item;     /* queue.put: the item */
    uint64_t tid;     /* lock owner thread id */
    int64_t count;    /* rlock recursion to restore (condition.wait) */
    bool timed_out;   /* condition.wait: re-acquiring after a timeout */
    obj_t *cond;      /* condition.wait: the condition waited on */
    uint64_t parked_ns; /* when it was parked (CLOCK_MONOTONIC): its latency when answered */
    bool with_id;       /* queue.get: answer [delivery id, item] */
};

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
/* The same for the oldest waiter only (the list must not be empty). */
void wlist_fail_one(wlist_t *l, int code, const char *msg);

/* ---- session holdings ---- */
void sess_hold(sess_t *s, obj_t *o, uint64_t tid, int64_t units);
/* Removes up to units from the holding; returns what was removed. */
int64_t sess_unhold(sess_t *s, obj_t *o, uint64_t tid, int64_t units);

/* What an object does when a waiter times out, a session ends, or the object goes. */
void sync_on_timeout(waiter_t *w);
void sync_release_hold(sess_t *s, hold_t *h);
void sync_on_waiter_gone(obj_t *o);
/* Whether o has waiters or holders: such an object cannot be deleted. */
bool sync_busy(const obj_t *o, char *why, size_t n);
void sync_free(obj_t *o);
/* Answers every call parked on o with code and msg (o is being deleted whatever waits). */
void sync_fail_all(obj_t *o, int code, const char *msg);
uint32_t sync_describe(const obj_t *o, mpb__buf_t *b);
/* A lock's next holder, if any waiter can have it now. */
void lock_grant_next(obj_t *o);
extern uint64_t g_fence;
/* The next fencing token (locks and semaphores): larger than any before, in this run or an
 * earlier one of the broker. */
uint64_t fence_next(void);
/* Sends one sealed reply frame [rid, code, value] to a session's current connection. */
void server_send_reply(sess_t *s, const uint8_t *reply, size_t n);
/* Forgets every session's holdings of o (it is being deleted). */
void server_forget_obj(obj_t *o);
/* Every session, for walks that need them all (the holders of an anonymous object). */
sess_t *server_sessions(void);

/* ---- requests and replies ---- */

struct req {
    peer_t *peer;
    sess_t *sess;
    uint64_t rid; /* 0: the sender wants no reply */
    unsigned op;
    const char *name; /* NULL for ops without an object */
    uint32_t namelen;
    obj_t *obj;
    mpb__rd_t args; /* positioned on the first argument */
    uint32_t argc;
    mpb__buf_t *out;
    bool parked; /* the handler parked it: no reply now */
    const uint8_t *raw; /* the request's msgpack bytes, for the log (NULL: not logged) */
    size_t rawlen;
};

/* Each writes exactly one reply [rid, code, value] and returns 0. */
int reply_nil(req_t *r);
int reply_bool(req_t *r, bool v);
int reply_int(req_t *r, int64_t v);
int reply_uint(req_t *r, uint64_t v);
int reply_raw(req_t *r, const uint8_t *v, size_t n); /* v: one msgpack value */
/* Starts a success reply: the caller writes exactly one value into the returned buffer. */
mpb__buf_t *reply_begin(req_t *r);
/* fmt NULL: the error table's text. */
__attribute__((format(printf, 3, 4))) int reply_error(req_t *r, int code, const char *fmt, ...);

/* ---- limits and the server ---- */

typedef struct limits {
    size_t max_frame;
    size_t max_value;
    size_t max_key;
    size_t max_scan; /* items in one dict.scan / list.slice / obj.list page */
    size_t max_batch_reply; /* reply bytes one REQ frame may ask for; later requests: ETOOBIG */
    size_t max_pending; /* handshakes in progress */
    int pool_max_attempts;     /* dispatches of a task before it fails (worker deaths) */
    size_t pool_max_results;   /* result bytes held for one session before its dispatch waits */
    size_t pool_max_queued;    /* bytes of unfinished tasks one session may have */
    int handshake_ms;
    int heartbeat_ms;
    int session_ttl_ms;
    int anon_grace_ms; /* how long an anonymous object outlives its last reference */
    size_t reply_cache; /* replies kept per session for resends (replay.c); 0: none */
    size_t reply_cache_bytes; /* and the most bytes of them per session */
    size_t max_memory;  /* heap bytes past which growing requests get ENOMEM (mem.c); 0: none */
    size_t max_objects; /* objects the store may hold; 0: no limit */
    /* transport (transport.c) */
    size_t max_sessions;            /* sessions at once */
    size_t max_sessions_per_conn;   /* live sessions opened by one connection */
    size_t max_connections;         /* 0: the descriptor limit less 64 */
    size_t max_handshakes_per_addr; /* connections of one address still in a handshake */
    size_t max_unauth_memory;       /* bytes all peers without a session may pin */
    int idle_ms;                    /* a connection without a session is closed after it */
    size_t max_output;              /* unacknowledged reply bytes of one connection; 0: off */
    int64_t slowlog_slower_us; /* requests served slower than this go to the slow log */
    size_t slowlog_max_len;    /* entries it keeps; 0: none */
} limits_t;

enum { ENC_AUTO, ENC_ON, ENC_OFF }; /* --encryption; auto: on for tcp://, off for ipc:// */

typedef struct config {
    const char *listen[8];
    int nlisten;
    const char *authkey_file;
    const char *data_dir;
    const char *endpoint_file;
    const char *http;
    int log_level;
    bool log_json;
    bool persist; /* log writes to data_dir and load them on start */
    int fsync;    /* FSYNC_NO, FSYNC_EVERYSEC, FSYNC_ALWAYS: persist.h */
    bool repair;  /* cut a damaged log at the damage instead of refusing to start */
    int encryption; /* ENC_* */
    const char *http_auth; /* bearer token file for /metrics; NULL: open */
    limits_t limits;
} config_t;

extern limits_t g_limits;
extern int64_t g_started_ms;
size_t server_peer_count(void);
size_t server_session_count(void);
/* Runs the broker until SIGTERM/SIGINT. authkey is borrowed. Returns the exit status. */
int server_main(const config_t *cfg, const uint8_t *authkey, size_t keylen);
void server_stop(void);

/* ---- transport.c: ZeroMQ options, CURVE + ZAP, the connection table and its bounds ---- */

typedef struct transport transport_t;
/* Derives the CURVE keys, binds the ZAP handler and the socket monitor, raises the descriptor
 * limit and sets the ROUTER's options (heartbeats, keepalive, handshake deadline, message
 * size). Call before any bind. NULL with a reason in err. authkey is borrowed. */
transport_t *transport_open(void *zctx, void *router, const uint8_t *authkey, size_t keylen,
                            char *err, size_t errlen);
/* Binds endpoint with CURVE or without, as enc (ENC_*) says for it, and logs which.
 * 0, or -1 with zmq_errno() set. */
int transport_bind(transport_t *t, const char *endpoint, int enc);
/* "curve", "none" or "mixed" (some endpoints each way), for info. */
const char *transport_encryption(const transport_t *t);
size_t transport_connections(const transport_t *t);
/* The two sockets the loop polls for it (for ZMQ_POLLIN): the ZAP handler and the monitor. */
void transport_sockets(transport_t *t, void **zap, void **monitor);
/* Serves what the poll found ready on them. */
void transport_run(transport_t *t, bool zap_ready, bool monitor_ready);
/* Shuts connections that have gone idle-ms without a session. */
void transport_sweep(transport_t *t, int64_t now);
/* A message came on the connection with descriptor fd (ZMQ_SRCFD): under CURVE, its peer
 * holds the key. */
void transport_conn_seen(transport_t *t, int fd);
/* Bytes of the TCP connection fd that its peer acknowledged (TCP_INFO), -1 if not TCP. */
int64_t transport_acked(int fd);
/* The output limit, for a connection that sent bytes since acked0 (transport_acked() when its
 * session began): 0 when what its peer has not acknowledged is within max-output; 1 when it
 * is over but the peer acknowledged something since the last look (*seen, *since_ms: what and
 * when; a reading client catching up with a burst); 2 when it has been over with nothing
 * acknowledged for a second, or is over twice max-output plus max-batch-reply: the connection
 * is then shut (its session is kept), logged with who and counted. */
int transport_output_check(transport_t *t, int fd, uint64_t sent, int64_t acked0,
                           int64_t *seen, int64_t *since_ms, const char *who);
extern uint64_t g_output_closed;
/* The connection with descriptor fd (ZMQ_SRCFD of its message) has a session now, or not. */
void transport_conn_session(transport_t *t, int fd, bool has);
void transport_close(transport_t **t);
extern uint64_t g_conn_refused, g_conn_idle_closed, g_curve_denied;
/* The loop's transport (NULL before the server starts), for info. */
transport_t *server_transport(void);

/* ---- metrics.c: counters the loop keeps, rendered for Prometheus by http.c ---- */

#define METRICS_BUCKETS 24 /* latency histogram: le 1us * 2^k, k < 24 (8.4 s): see metrics.c */
typedef struct op_stats {
    uint64_t ok, err[64];      /* by error code */
    uint64_t lat[METRICS_BUCKETS + 1];
    uint64_t lat_sum_ns;
} op_stats_t;
extern op_stats_t g_op_stats[MPB__OP_MAX];
extern uint64_t g_frames_in, g_frames_out, g_bytes_in, g_bytes_out, g_auth_failures,
    g_bad_frames, g_sessions_expired, g_sessions_refused, g_http_deadline_closed;
/* Counts one request's outcome and its time in the broker. */
void metrics_count(unsigned op, int code, uint64_t ns);
/* Appends the Prometheus text exposition of every metric to out. */
void metrics_render(mpb__buf_t *out);

/* ---- http.c: /healthz, /readyz, /metrics, polled by the loop (no thread of its own) ---- */

typedef struct http http_t;
/* Listens on "ADDR:PORT" (e.g. 0.0.0.0:8080, 127.0.0.1:0). NULL with a reason in err. */
http_t *http_start(const char *addr, char *err, size_t errlen);
/* The one descriptor the loop polls for it, and how long it may wait (-1: no limit). */
int http_fd(http_t *h);
long http_timeout_ms(http_t *h);
/* Serves what is ready, without blocking. */
void http_run(http_t *h);
/* The port it listens on (useful with port 0). */
int http_port(http_t *h);
/* Stops it and removes the address file. */
void http_stop(http_t **h);
/* A file that http_start() fills with "HOST:PORT", the port it got (for port 0): health checks
 * and tests read it. NULL: none. Set before http_start(). */
void http_set_addr_file(const char *path);
/* --http-auth: /metrics asks for "Authorization: Bearer TOKEN", the token being the one line
 * in the file at path (read now, with the authkey file's checks); NULL: /metrics is open.
 * Returns 0, or -1 with the reason in err. Set before http_start(). */
int http_set_auth(const char *path, char *err, size_t errlen);
/* Whether "ADDR:PORT" can be bound now (--check-config): binds a socket and closes it at once.
 * 0, or -1 with the reason in err. */
int http_check_bind(const char *addr, char *err, size_t errlen);
/* Whether the broker accepts clients (and its data is loaded). */
bool server_ready(void);

/* ---- commands.c ---- */

/* CMD_OPT1: one more argument may follow the arity ones (an argument added to an op later).
 * CMD_DENYOOM: it may grow memory, so it is refused past --max-memory (mem.c). */
enum { CMD_READ = 1, CMD_WRITE = 2, CMD_NOOBJ = 4, CMD_ANYKIND = 8, CMD_OPT1 = 16, CMD_DENYOOM = 32 };
typedef int (*cmd_proc)(req_t *r);
typedef struct command {
    unsigned op;
    cmd_proc proc;
    int arity; /* arguments after the name; -N: at least N */
    kind_t kind;
    int flags;
} command_t;
const command_t *command_find(unsigned op);
/* Checks and runs one request; writes its reply. */
void dispatch(req_t *r);

/* Argument helpers: on failure they write the error reply and return a negative code. */
int arg_value(req_t *r, const char *what, size_t max, const uint8_t **v, size_t *n);
int arg_key(req_t *r, const uint8_t **k, size_t *n, mpb__buf_t *scratch);
int arg_int(req_t *r, const char *what, int64_t *v);
int arg_int_or_nil(req_t *r, const char *what, int64_t *v, bool *isnil);
int arg_uint(req_t *r, const char *what, uint64_t *v);
int arg_bool(req_t *r, const char *what, bool *v);
int arg_str(req_t *r, const char *what, const char **s, uint32_t *n);

/* Handlers, one file per kind: cmd_<kind>_<op>. */
int cmd_ping(req_t *r);
int cmd_info(req_t *r);
int cmd_obj_list(req_t *r);
int cmd_obj_info(req_t *r);
int cmd_obj_delete(req_t *r);
int cmd_bye(req_t *r);
int cmd_save(req_t *r);
int cmd_open(req_t *r);
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
int cmd_queue_open(req_t *r);
int cmd_queue_put(req_t *r);
int cmd_queue_get(req_t *r);
int cmd_queue_qsize(req_t *r);
int cmd_queue_peek(req_t *r);
/* slowlog.c: the slowest recent requests, as Redis's SLOWLOG: a request served (not parked)
 * in more than slowlog-log-slower-than µs is kept, the newest slowlog-max-len of them. */
void slowlog_note(const req_t *r, int64_t ns);
int cmd_slowlog(req_t *r);
/* monitor.c: the requests served, for the sessions that asked (mpb monitor); sid: the
 * session that sent it (taken before dispatch: a bye ends it), args: where its arguments
 * begin in r->raw, code: its reply's. */
void monitor_note(const req_t *r, uint64_t sid, const uint8_t *args, int code, int64_t ns);
int cmd_monitor(req_t *r);
/* clients.c */
int cmd_clients(req_t *r);
int cmd_session_kill(req_t *r);
void reply_items(req_t *r, const deque_t *d, size_t lo, size_t hi, uint64_t max);
int cmd_queue_task_done(req_t *r);
int cmd_queue_join(req_t *r);
int cmd_queue_empty(req_t *r);
int cmd_queue_full(req_t *r);
int cmd_pipe_open(req_t *r);
int cmd_pipe_send(req_t *r);
int cmd_pipe_recv(req_t *r);
int cmd_pipe_poll(req_t *r);
int cmd_pipe_close(req_t *r);
int cmd_lock_acquire(req_t *r);
int cmd_lock_release(req_t *r);
int cmd_lock_locked(req_t *r);
int cmd_sem_open(req_t *r);
int cmd_sem_acquire(req_t *r);
int cmd_sem_release(req_t *r);
int cmd_sem_value(req_t *r);
int cmd_cond_open(req_t *r);
int cmd_cond_wait(req_t *r);
int cmd_cond_notify(req_t *r);
int cmd_event_set(req_t *r);
int cmd_event_clear(req_t *r);
int cmd_event_is_set(req_t *r);
int cmd_event_wait(req_t *r);
int cmd_barrier_open(req_t *r);
int cmd_barrier_wait(req_t *r);
int cmd_barrier_reset(req_t *r);
int cmd_barrier_abort(req_t *r);
int cmd_barrier_state(req_t *r);
int cmd_value_open(req_t *r);
int cmd_value_get(req_t *r);
int cmd_value_set(req_t *r);
int cmd_value_add(req_t *r);
int cmd_ns_get(req_t *r);
int cmd_ns_set(req_t *r);
int cmd_ns_del(req_t *r);
int cmd_ns_list(req_t *r);
int cmd_pool_register(req_t *r);
int cmd_pool_fetch(req_t *r);
int cmd_pool_done(req_t *r);
int cmd_pool_submit(req_t *r);
int cmd_pool_take(req_t *r);
int cmd_pool_cancel(req_t *r);
int cmd_pool_stats(req_t *r);
int cmd_pool_fninfo(req_t *r);
int cmd_pool_unregister(req_t *r);
int cmd_pool_start(req_t *r);
/* pool.c: a session ends (its worker's tasks go back to the queue, its own are cancelled);
 * a parked pool request times out; metrics. */
void pool_sess_end(sess_t *s);
void pool_on_timeout(waiter_t *w);
/* The pool's numbers, which metrics_render.c writes as Prometheus text. */
typedef struct pool_totals {
    size_t workers, callers_paused, results_held_bytes, unfinished_bytes;
    uint64_t requeued, abandoned, steals, refusals, killed;
} pool_totals_t;
typedef struct pool_fn_counts {
    const char *name;
    uint32_t namelen;
    uint64_t queued, paused, running, prefetched; /* tasks now */
    uint64_t done, failed, canceled;               /* tasks finished */
} pool_fn_counts_t;
void pool_totals(pool_totals_t *c);
/* Calls each(ctx, counts) for every function the pool knows, newest first. */
void pool_each_fn(void (*each)(void *ctx, const pool_fn_counts_t *c), void *ctx);
void pool_free_all(void);
/* Reads a blocking op's timeout argument (ms; -1: forever, 0: do not wait). */
int arg_timeout(req_t *r, int64_t *ms);
/* Resolves r->name as "kind/name" (obj.info, obj.delete, obj.ref): the object, or NULL after
 * replying ENOOBJ, EKIND or EINVAL. */
obj_t *resolve_path(req_t *r);
/* Whether the argument counts suit a command (after the object name). */
bool arity_ok(const command_t *c, uint32_t argc);

/* ---- anon.c: anonymous objects (obj.new, obj.ref, obj.unref) ---- */

int cmd_obj_new(req_t *r);
int cmd_obj_ref(req_t *r);
int cmd_obj_unref(req_t *r);
/* Names starting with '~' are the broker's: only obj.new makes an object so called. */
static inline bool anon_name(const char *name, size_t n) {
    return n > 0 && name[0] == '~';
}
/* A session ends: each of its references is given back (deleting what nobody else holds). */
void anon_sess_end(sess_t *s);
/* Deletes the anonymous objects whose grace period has passed. */
void anon_reap(int64_t now);
/* o takes old's place in the store (dict.copy onto it): its references come along. */
void anon_moved(obj_t *old, obj_t *o);
/* o is being deleted (by anyone): forget it in the reference tables. */
void anon_forget(obj_t *o);
/* obj.info's extra pairs for an anonymous object: refs, holders, delete_in_ms. */
uint32_t anon_describe(const obj_t *o, mpb__buf_t *b);
/* For info and /metrics. */
size_t anon_count(void);
uint64_t anon_refs_total(void);
extern uint64_t g_anon_deleted;
/* After a restart: o came from the snapshot (a '~' name); s held n references on o (-1 if o
 * is no anonymous object or n makes no sense); o's deletion was logged; and when all is
 * loaded, what nobody holds is doomed afresh (0 refs at the crash: deleted after a grace). */
void anon_loaded(obj_t *o);
int anon_restore_ref(sess_t *s, obj_t *o, int64_t n);
void anon_replay_gone(obj_t *o);
void anon_restore_done(void);

/* Kind-specific parts of obj.info: write (count) more map pairs into b. */
uint32_t dict_describe(const obj_t *o, mpb__buf_t *b);
uint32_t list_describe(const obj_t *o, mpb__buf_t *b);
void sess_end(sess_t *s, const char *why);

#endif
