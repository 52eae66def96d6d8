/* internal.h - libmpb's private parts: the client handle, and the request/reply machinery
 * every public call is built on. Never installed. */
#ifndef MPB_CLIENT_INTERNAL_H
#define MPB_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "mpbproto.h"

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

typedef struct pend {
    uint64_t rid; /* 0: free */
    mpb_callback_t cb;
    void *arg;
} pend_t;

struct mpb_client {
    pthread_mutex_t mu; /* recursive; held for a whole call, and by the heartbeat thread */
    void *sock; /* a DEALER in the process's shared ZeroMQ context */
    bool ctx_held; /* holds a reference to that context */
    char *endpoint;
    uint8_t *authkey;
    size_t keylen;
    mpb_options_t opts;
    pid_t pid;        /* the process that connected it (for messages) */
    unsigned gen;     /* the fork generation it belongs to (see mpb__usable) */
    mpb__mac_t *tx, *rx;
    uint64_t seq_out, seq_in;
    uint64_t next_rid;
    uint64_t out_rid_lo; /* the rid of the first request in out */
    sentframe_t *sent;   /* frames with requests unanswered, oldest first */
    size_t nsent, capsent;
    bool resumed;        /* the last handshake resumed the session */
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
    bool curve;       /* the connection is encrypted (ZeroMQ CURVE) */
    void *mon;        /* during the handshake: the socket's monitor (CURVE failures) */
    int curve_fails;  /* encrypted handshakes the broker closed, this connect */
    bool fail_fast;   /* mpb_connect's first connection: a refused or unresolved tcp:// fails
                         at once instead of waiting out the timeout */
    bool tcp_up;      /* a TCP connection was made during this handshake */
    mpb__buf_t out;   /* the request frame being built: requests not sent yet */
    size_t out_n, out_mark;
    size_t autoflush_bytes, autoflush_n;
    mpb__buf_t reply; /* handshake frames */
    mpb__buf_t *last; /* the frame holding the last synchronous result */
    mpb__buf_t *spare[2];
    void *pool_rt;    /* pool.c: where each task's result goes */
    pend_t *pend;     /* asynchronous requests in flight, by rid */
    size_t pcap, pcount;
    syncwait_t *waits; /* synchronous calls in progress, innermost first */
    char err[512];
    int64_t last_send_ms;
    int rcvtimeo; /* ZMQ_RCVTIMEO as last set on sock (-1 as ZeroMQ starts it) */
    void *refd;       /* handles that hold a reference to an anonymous object: anon.c */
    bool hb_on;       /* on the heartbeat thread's list */
    struct mpb_client *hb_prev, *hb_next;
};

/* Every object handle has this shape. */
#define MPB__HANDLE                                                                                \
    mpb_client_t *c;                                                                               \
    char name[256];                                                                                \
    uint32_t namelen;                                                                              \
    unsigned kind_op; /* the kind's open op */                                                     \
    uint64_t tid;     /* locks: fixed owner thread id, 0: the calling thread's */                  \
    char lock[300];   /* condition: its lock's "kind/name" */                                  \
    bool ref;         /* holds a reference to the anonymous object name (anon.c) */           \
    void *rnext, *rprev; /* in c->refd while it does */
struct mpb_dict { MPB__HANDLE };
struct mpb_list { MPB__HANDLE };
struct mpb_queue { MPB__HANDLE };
struct mpb_lock { MPB__HANDLE };
struct mpb_semaphore { MPB__HANDLE };
struct mpb_condition { MPB__HANDLE };
struct mpb_event { MPB__HANDLE };
struct mpb_barrier { MPB__HANDLE };
struct mpb_value { MPB__HANDLE };
struct mpb_namespace { MPB__HANDLE };

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
mpb__buf_t *mpb__req(mpb_client_t *c, unsigned op, const char *name, size_t namelen,
                     uint32_t argc);
/* Sends the request and waits for its reply. block_ms: how long the broker may park it
 * (MPB_FOREVER or >= 0). On success *val points at the reply's value, valid until the next
 * call on c. Returns 0 or the error (message in c->err). */
int mpb__call(mpb_client_t *c, int block_ms, const uint8_t **val, size_t *vlen);
/* After mpb__req and the arguments: sends nothing yet (unless c->out is big), remembers cb
 * for the reply, and unlocks. */
int mpb__send(mpb_client_t *c, mpb_callback_t cb, void *arg);
/* anon.c: opens a handle of size bytes on name with the kind's open op, whose argc arguments
 * fill writes. name NULL makes an anonymous object (obj.new); a name starting with '~' takes
 * a reference to one (obj.ref) as well. *val, *vlen (if not NULL): the open's reply value,
 * valid until the next call on c. */
int mpb__open_handle(mpb_client_t *c, const char *name, unsigned op, size_t size, uint32_t argc,
                     void (*fill)(mpb__buf_t *, const void *), const void *arg,
                     const uint8_t **val, size_t *vlen, void **out);
/* Gives back the handle's reference, if it holds one, and frees it. Accepts &NULL. */
void mpb__close_handle(void **p);
/* mpb_close(c): the handles still open on c hold nothing any more (the session's end gives
 * their references back) and must not reach c when they are closed. */
void mpb__anon_detach(mpb_client_t *c);

/* A lock of c was acquired (+1) or released (-1): what a lost session takes with it. */
void mpb__lock_held(mpb_client_t *c, const char *kind, const char *name, int delta);
/* A copy of (p, n) into a new buffer. */
int mpb__dup(mpb_client_t *c, const uint8_t *p, size_t n, void **out, size_t *outlen);

#endif
