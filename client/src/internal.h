/* internal.h - libmpb's private parts: the client handle, and the request/reply machinery
 * every public call is built on. Never installed. */
#ifndef MPB_CLIENT_INTERNAL_H
#define MPB_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "mpbproto.h"

/* uthash, for the tables keyed by id: a failed allocation leaves the table as it was (or
 * unexpanded) instead of exiting the program; callers look their element up to know. */
#define HASH_NONFATAL_OOM        1
#define uthash_nonfatal_oom(elt) ((void)(elt))
#include <uthash.h>

/* A synchronous call waiting for its reply. Calls nest (a callback run while replies are read
 * may make one), so each has its own record, linked from the client, innermost first. */
typedef struct syncwait {
    uint64_t rid;
    bool done;
    int code;
    mpb__buf_t val; /* a copy of the reply's value */
    struct syncwait *outer;
} syncwait_t;

/* A REQ frame sent and not yet wholly answered: kept so that, after a cut, it can be sent
 * again on the new channel with its original sequence number (the broker answers what it
 * already ran from its reply cache). Requests in it have rids in [rid_lo, rid_hi]. */
typedef struct sentframe {
    uint64_t seq;
    uint64_t rid_lo, rid_hi;
    size_t left; /* requests still waiting for their reply */
    uint8_t *body;
    size_t len;
} sentframe_t;

/* An asynchronous request waiting for its reply. */
typedef struct pend {
    uint64_t rid;
    mpb_callback_t cb;
    void *arg;
    bool user;         /* the caller's callback (mpb_send, mpb_*_async), not one of libmpb's own */
    UT_hash_handle hh; /* in c->pend, by rid */
    SLIST_ENTRY(pend) spare; /* in c->pend_spare once answered */
} pend_t;

struct mpb_pool;   /* pool.h */
struct mpb__later; /* below */

struct mpb_client {
    pthread_mutex_t mu; /* recursive; held for a whole call, and by the heartbeat thread */
    void *sock;         /* a DEALER in the process's shared ZeroMQ context (not for unix://) */
    int ufd;            /* unix://, mpb://: the stream socket, the same number for life (link.c),
                           else -1 */
    uint8_t ustate;     /* unix://, mpb://: MPB__LINK_* */
    mpb__buf_t uin;     /* unix://, mpb://: bytes read, from uin_at, not handed out yet */
    size_t uin_at;
    mpb__seal_t *useal;            /* mpb://: the connection's keys */
    mpb__buf_t uout;               /* mpb://: the frame being sealed */
    struct sockaddr_storage uaddr; /* mpb://: the address that answered last */
    socklen_t uaddrlen;
    bool uno_resolve; /* mpb://: the heartbeat thread's try: that address only */
    bool ufresh;      /* mpb://, unix://: connected, nothing sent on it yet */
    bool ctx_held;    /* holds a reference to that context */
    char *endpoint;
    uint8_t *authkey;
    size_t keylen;
    mpb_options_t opts;
    pid_t pid;    /* the process that connected it (for messages) */
    unsigned gen; /* the fork generation it belongs to (see mpb__usable) */
    mpb__mac_t *tx, *rx;
    uint64_t seq_out, seq_in;
    uint64_t next_rid;
    uint64_t out_rid_lo; /* the rid of the first request in out */
    sentframe_t *sent;   /* frames with requests unanswered, oldest first */
    size_t nsent, capsent;
    bool resumed; /* the last handshake resumed the session */
    unsigned reconnects;
    int locks_held;      /* lock and rlock acquisitions not released: lost with the session */
    char lock_last[300]; /* the last one acquired, to name it then */
    bool lost_pending;   /* the session was lost while idle: the next call is told */
    char lost_msg[512];
    uint64_t session_id;
    uint8_t token[MPB__TOKEN_LEN];
    size_t max_frame, max_value, max_scan;
    int heartbeat_ms, ttl_ms;
    bool connected;
    bool curve;      /* the connection is encrypted (ZeroMQ CURVE) */
    void *mon;       /* during the handshake: the socket's monitor (CURVE failures) */
    int curve_fails; /* encrypted handshakes the broker closed, this connect */
    bool fail_fast;  /* mpb_connect's first connection: a refused or unresolved tcp:// fails
                        at once instead of waiting out the timeout */
    bool tcp_up;     /* a TCP connection was made during this handshake */
    mpb__buf_t out;  /* the request frame being built: requests not sent yet */
    size_t out_n, out_mark;
    size_t autoflush_bytes, autoflush_n;
    mpb__buf_t reply;     /* handshake frames */
    mpb__buf_t *last;     /* the frame holding the last synchronous result */
    mpb__buf_t *last_cbt; /* the same, of the callback thread's calls */
    mpb__buf_t *spare[2];
    void *pool_rt; /* pool.c: where each task's result goes (mpb__pool_rt_free) */
    pend_t *pend;  /* asynchronous requests in flight, by rid (uthash) */
    size_t pcount;
    SLIST_HEAD(, pend) pend_spare; /* records of answered requests, for the next ones */
    syncwait_t *waits;             /* synchronous calls in progress, innermost first */
    char err[512];
    int64_t last_send_ms;
    int rcvtimeo;              /* ZMQ_RCVTIMEO as last set on sock (-1 as ZeroMQ starts it) */
    LIST_HEAD(, mpb_any) refd; /* handles that hold a reference to an anonymous object */
    bool hb_on;                /* on the heartbeat thread's list */
    LIST_ENTRY(mpb_client) hb_link;
    /* Callbacks (async_thread.c). cb_mu is held while the caller's callbacks run, never with
     * mu held first (but by trylock), so two never run at once and a callback may call in. */
    pthread_mutex_t cb_mu;           /* recursive */
    bool cb_running;                 /* under cb_mu: callbacks are running (not nested) */
    STAILQ_HEAD(, mpb__later) later; /* under mu: replies whose callbacks the thread runs */
    LIST_HEAD(, mpb_pool) pools;     /* under mu and cb_mu: c's pools, for their callbacks */
    unsigned pools_gen;              /* bumped when one is closed */
    bool cbt_on;                     /* the callback thread runs (mpb_set_callback_thread) */
    bool cbt_stop;                   /* under mu: it is to end */
    int cbt_wake;                    /* an eventfd that wakes it */
    pthread_t cbt;
};

/* A reply whose callback runs later, on the callback thread (async_thread.c). */
typedef struct mpb__later {
    mpb_callback_t cb;
    void *arg;
    int status;
    char *msg; /* the error's message, in data after the value */
    size_t len;
    STAILQ_ENTRY(mpb__later) link;
    uint8_t data[];
} mpb__later_t;

/* Every object handle has this shape. */
#define MPB__HANDLE                                                                                \
    mpb_client_t *c;                                                                               \
    char name[256];                                                                                \
    uint32_t namelen;                                                                              \
    unsigned kind_op;          /* the kind's open op */                                            \
    uint64_t tid;              /* locks: fixed owner thread id, 0: the calling thread's */         \
    char lock[300];            /* condition: its lock's "kind/name" */                             \
    bool ref;                  /* holds a reference to the anonymous object name (anon.c) */       \
    LIST_ENTRY(mpb_any) rlink; /* in c->refd while it does */
/* All handles share this layout; mpb__any_t is it, for code common to all kinds. */
struct mpb_any {
    MPB__HANDLE
};
typedef struct mpb_any mpb__any_t;
static inline mpb__any_t *mpb__any(const void *h) {
    return (mpb__any_t *)h;
}
struct mpb_dict {
    MPB__HANDLE
};
struct mpb_list {
    MPB__HANDLE
};
struct mpb_queue {
    MPB__HANDLE
};
struct mpb_lock {
    MPB__HANDLE
};
struct mpb_semaphore {
    MPB__HANDLE
};
struct mpb_condition {
    MPB__HANDLE
};
struct mpb_event {
    MPB__HANDLE
};
struct mpb_barrier {
    MPB__HANDLE
};
struct mpb_value {
    MPB__HANDLE
};
struct mpb_namespace {
    MPB__HANDLE
};

int64_t mpb__now_ms(void);
int64_t mpb__coarse_ms(void); /* CLOCK_MONOTONIC_COARSE: for heartbeats */
/* Sets c->err and returns code. */
__attribute__((format(printf, 3, 4))) int mpb__fail(mpb_client_t *c, int code, const char *fmt,
                                                    ...);
/* The fork generation of this process: a client whose gen differs was inherited. */
unsigned mpb__gen(void);
/* Checks the client may be used by this process now. 0 or a negative MPB_E*. */
int mpb__usable(mpb_client_t *c);

/* Starts a request [rid, op, name, argc args...]: write exactly argc values into the buffer
 * that comes back. name may be NULL. */
mpb__buf_t *mpb__req(mpb_client_t *c, unsigned op, const char *name, size_t namelen, uint32_t argc);
/* Sends the request and waits for its reply. block_ms: how long the broker may park it
 * (MPB_FOREVER or >= 0). On success *val points at the reply's value, valid until the next
 * call on c. Returns 0 or the error (message in c->err). */
int mpb__call(mpb_client_t *c, int block_ms, const uint8_t **val, size_t *vlen);
/* After mpb__req and the arguments: sends nothing yet (unless c->out is big), remembers cb
 * for the reply, and unlocks. */
int mpb__send(mpb_client_t *c, mpb_callback_t cb, void *arg);
/* handle.c: opens a handle of size bytes on name with the kind's open op, whose argc arguments
 * fill writes. name NULL makes an anonymous object (obj.new); a name starting with '~' takes
 * a reference to one (obj.ref) as well. *val, *vlen (if not NULL): the open's reply value,
 * valid until the next call on c. */
int mpb__open_handle(mpb_client_t *c, const char *name, unsigned op, size_t size, uint32_t argc,
                     void (*fill)(mpb__buf_t *, const void *), const void *arg, const uint8_t **val,
                     size_t *vlen, void **out);
/* Gives back the handle's reference, if it holds one, and frees it. Accepts &NULL. */
void mpb__close_handle(void **p);
/* mpb_close(c): the handles still open on c hold nothing any more (the session's end gives
 * their references back) and must not reach c when they are closed. */
void mpb__anon_detach(mpb_client_t *c);

/* A lock of c was acquired (+1) or released (-1): what a lost session takes with it. */
void mpb__lock_held(mpb_client_t *c, const char *kind, const char *name, int delta);
/* A copy of (p, n) into a new buffer. */
int mpb__dup(mpb_client_t *c, const uint8_t *p, size_t n, void **out, size_t *outlen);

/* ---- between client.c, handshake.c and call.c ---- */

/* handshake.c: sends one frame on c's channel (ZeroMQ or unix://). try_only: nothing, and no
 * error, if it cannot go at once (a heartbeat). 0 or MPB_ECONN. */
int mpb__send_frame(mpb_client_t *c, const uint8_t *p, size_t n, bool try_only);

/* link.c: unix:// endpoints, the frames on a Unix stream socket. */
enum { MPB__LINK_UP, MPB__LINK_LOST /* not told to a reader yet */, MPB__LINK_TOLD };
bool mpb__is_unix(const char *endpoint);
/* unix:// or mpb://: a stream socket of link.c, no ZeroMQ. */
bool mpb__is_stream(const char *endpoint);
/* Connects (again), in the place of the descriptor before. 0 or MPB_ECONN/MPB_EINVAL. */
int mpb__unix_connect(mpb_client_t *c);
void mpb__unix_close(mpb_client_t *c);
/* Sends one frame; a failure shows on the next read. try_only: nothing if there is no room. */
int mpb__unix_send(mpb_client_t *c, const uint8_t *p, size_t n, bool try_only);
/* As mpb__recv_into. A connection that ended reads once as the broker's ERROR ESESSION. */
int mpb__unix_recv(mpb_client_t *c, mpb__buf_t *b, long timeout_ms);
/* A frame can be read without waiting. */
bool mpb__unix_pending(mpb_client_t *c);

/* client.c: a new DEALER socket for c in the process's context, monitored during the
 * handshake if it is encrypted or must fail fast, and connected. */
int mpb__open_socket(mpb_client_t *c);
/* client.c: a PING now, if c has been quiet (the heartbeat). */
void mpb__send_ping(mpb_client_t *c);
/* Pings c if it is connected and has sent nothing for half its heartbeat; returns when the
 * next ping falls due. Called with c->mu held. */
int64_t mpb__ping_if_due(mpb_client_t *c, int64_t now);
/* handshake.c: the handshake on c->sock (resuming c's session if it has one); the socket's
 * handshake monitor, started with the socket and stopped once the handshake is over; what a
 * client that has been idle a while checks before a call (a lost session, a cut). */
int mpb__handshake(mpb_client_t *c);
/* Seals b (a frame with room for its MAC) with sequence number seq and sends it. */
int mpb__seal_send_seq(mpb_client_t *c, mpb__buf_t *b, uint64_t seq);
/* The error an unsealed ERROR frame from the broker carries, with its message in c->err. */
int mpb__plain_error(mpb_client_t *c, const mpb__frame_t *f);
int mpb__hs_monitor_start(mpb_client_t *c, void *ctx);
void mpb__hs_monitor_stop(mpb_client_t *c);
void mpb__idle_check(mpb_client_t *c);
/* A new channel after a cut: a new handshake, the session resumed (frames resent) or lost. */
int mpb__reconnect(mpb_client_t *c);
/* call.c: the frames kept for resending (dropped; sent again after a resumed session); every
 * request in flight failed with code; reply buffers lent and given back; one frame received
 * into b. */
void mpb__sent_clear(mpb_client_t *c);
/* Frees the records of asynchronous requests (c is being closed: their callbacks are not run). */
void mpb__pend_free(mpb_client_t *c);
int mpb__resend(mpb_client_t *c);
void mpb__fail_all(mpb_client_t *c, int code);
mpb__buf_t *mpb__buf_take(mpb_client_t *c);
void mpb__buf_give(mpb_client_t *c, mpb__buf_t *b);
int mpb__recv_into(mpb_client_t *c, mpb__buf_t *b, long timeout_ms);

/* pool.c: frees c->pool_rt, the routes of c's pool results; runs the callbacks of p's
 * finished results (under c->cb_mu). */
void mpb__pool_rt_free(mpb_client_t *c);
void mpb__pool_run_notify(struct mpb_pool *p);

/* ---- async_thread.c: when the caller's callbacks run ----
 *
 * Without the callback thread, a reply's callback runs where the reply is read; with it, the
 * caller's callbacks are put off (mpb__later) and run on that thread, one at a time. */

/* Nonzero while this thread runs a callback inline, holding some client's mu. */
extern _Thread_local int mpb__in_reply;
/* Runs cb for a reply, or (callback thread on, user) queues a copy for the thread. */
void mpb__reply_cb(mpb_client_t *c, bool user, mpb_callback_t cb, void *arg, int status,
                   const void *val, size_t len);
/* Wakes the callback thread, if c has one: a callback is due. Any thread, mu held or not. */
void mpb__cb_due(mpb_client_t *c);
/* With mu held, after using the socket: wakes the callback thread if replies wait unread
 * (mpb_fd() is edge-triggered: what another thread left unread would not wake it). */
void mpb__cb_kick(mpb_client_t *c);
/* Runs the queued callbacks (mpb__later, then the pools'), with c->cb_mu; mu not held. */
void mpb__run_callbacks(mpb_client_t *c, bool pools);
/* A pool call holds c's mu for its whole run (MPB__POOL_HOLD), so that the callback thread
 * reads no reply while it works on the pool's state; callbacks are run with those holds let go
 * (mpb__cb_enter: the holds of this thread given back, then cb_mu; mpb__cb_leave: the other
 * way round), so they never wait for mu with cb_mu held. c NULL: nothing. */
typedef struct {
    mpb_client_t *c;
} mpb__hold_t;
mpb__hold_t mpb__hold(mpb_client_t *c);
void mpb__hold_end(mpb__hold_t *h);
#define MPB__POOL_HOLD(cl) __attribute__((cleanup(mpb__hold_end))) mpb__hold_t hold_ = mpb__hold(cl)
bool mpb__cb_enter(mpb_client_t *c, int *held);
void mpb__cb_leave(mpb_client_t *c, int held);
/* mpb_close(): stops the callback thread, and frees what it had not run yet. */
void mpb__cb_stop(mpb_client_t *c);
void mpb__cb_free(mpb_client_t *c);
/* call.c: with mu held, reads every reply that has arrived (callbacks as above); 0 or the
 * connection's error. */
int mpb__read_arrived(mpb_client_t *c);
/* call.c: as mpb__send, for the caller's callback. */
int mpb__send_user(mpb_client_t *c, mpb_callback_t cb, void *arg);
/* call.c, for async_ops.c: the next mpb__call of this thread queues its request with cb as
 * mpb__send_user does instead of waiting, and returns MPB__SENT (which the synchronous calls
 * pass up as an error, untouched); mpb__async_done(rc of that synchronous call) ends send mode:
 * 0 if the request went out, else rc (it failed before: cb is never called). */
#define MPB__SENT 1
void mpb__async_arm(mpb_callback_t cb, void *arg);
int mpb__async_done(int rc);

/* ---- handle.c: what the calls on every kind share ---- */

/* Starts a request on handle h's object: b is the buffer for its argc arguments. */
#define MPB__REQ(h, op, argc)                                                                      \
    mpb__buf_t *b = mpb__req(mpb__any(h)->c, op, mpb__any(h)->name, mpb__any(h)->namelen, argc)
/* A timeout as the broker takes it: -1 for none. */
static inline int64_t mpb__ms_arg(int timeout_ms) {
    return timeout_ms < 0 ? -1 : timeout_ms;
}
/* A handle of size bytes on name, filled in locally (nothing asked of the broker). */
int mpb__attach_handle(mpb_client_t *c, const char *name, size_t size, void **out);
/* 0, or MPB_EINVAL with the message, for a name that is not an object name. */
int mpb__check_name(mpb_client_t *c, const char *name);
/* Checks caller-given msgpack (what: "key", "value"...) before it goes on the wire. */
int mpb__check_val(mpb_client_t *c, const char *what, const void *p, size_t n);
/* mpb__call for each reply shape: nil; a boolean (1, 0 or the error); an integer (out may be
 * NULL); a copy of the value, which the caller owns. */
int mpb__call_nil(mpb_client_t *c, int block_ms);
int mpb__call_bool(mpb_client_t *c, int block_ms);
int mpb__call_int(mpb_client_t *c, int block_ms, int64_t *out);
int mpb__call_uint(mpb_client_t *c, int block_ms, uint64_t *out);
/* A call whose reply is read in place: r covers it until the next call. */
int mpb__call_rd(mpb_client_t *c, int block_ms, mpb__rd_t *r);
int mpb__call_copy(mpb_client_t *c, int block_ms, void **out, size_t *outlen);
/* lock.c, for conditions too: the thread an acquisition belongs to (h->tid, or the caller's);
 * acquiring and releasing the lock (or rlock) name, counted in c->locks_held. */
uint64_t mpb__thread_id(const mpb__any_t *h);
int mpb__lock_acquire(mpb__any_t *h, const char *name, uint32_t nl, bool rlock, int timeout_ms,
                      uint64_t *fence);
int mpb__lock_release(mpb__any_t *h, const char *name, uint32_t nl, bool rlock);
/* The open arguments [n or nil, flag or nil] (queue: maxsize, joinable; semaphore: value,
 * bounded): a negative n or flag is nil, the broker's default. */
typedef struct {
    int64_t n;
    int flag;
} mpb__nflag_t;
void mpb__fill_nflag(mpb__buf_t *b, const void *arg);
/* A value got by a call (freed here either way) as an int64 or a new C string. */
int mpb__take_i64(mpb_client_t *c, int rc, void *val, size_t vn, int64_t *out);
int mpb__take_str(mpb_client_t *c, int rc, void *val, size_t vn, char **out);
/* Runs call with (p, n) the msgpack str of s. */
#define MPB__WITH_STR(c, s, call)                                                                  \
    do {                                                                                           \
        if (!(s)) return mpb__fail(c, MPB_EINVAL, "value is NULL");                                \
        void *p;                                                                                   \
        size_t n = mpb_pack_str(s, strlen(s), &p);                                                 \
        if (!p) return mpb__fail(c, MPB_ENOMEM, "out of memory");                                  \
        int rc_ = call;                                                                            \
        free(p);                                                                                   \
        return rc_;                                                                                \
    } while (0)

#endif
