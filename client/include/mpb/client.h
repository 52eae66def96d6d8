/* mpb/client.h - libmpb's base (included by every other part of mpb/mpb.h): the version, the
 * error codes and their names, connecting and closing, raw requests (mpb_call) and pipelining
 * (mpb_send, mpb_poll...). The conventions of every call are in mpb/mpb.h. */
#ifndef MPB_CLIENT_H
#define MPB_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MPB_VERSION_MAJOR 0
#define MPB_VERSION_MINOR 1
#define MPB_VERSION_PATCH 0
#define MPB_VERSION_HEX   ((MPB_VERSION_MAJOR << 16) | (MPB_VERSION_MINOR << 8) | MPB_VERSION_PATCH)

#define MPB_EXPORT __attribute__((visibility("default")))

#define MPB_FOREVER (-1)
#define MPB_NOWAIT  0

/* One table makes the enum, mpb_strerror() and the wire codes listed in PROTOCOL.md.
 * Calls return 0 or a negative MPB_E*; replies carry the positive code. Append only. */
#define MPB_ERRNO_MAP(XX)                                                                          \
    XX(ENOMEM, 1, "out of memory")                                                                 \
    XX(ETIMEDOUT, 2, "timed out")                                                                  \
    XX(ENOKEY, 3, "no such key")                                                                   \
    XX(EAUTH, 4, "authentication failed")                                                          \
    XX(EPROTO, 5, "protocol error")                                                                \
    XX(EKIND, 6, "object is of another kind")                                                      \
    XX(EREPLAY, 7, "replayed or out-of-order message")                                             \
    XX(ELIMIT, 8, "limit reached")                                                                 \
    XX(EEMPTY, 9, "empty")                                                                         \
    XX(EFULL, 10, "full")                                                                          \
    XX(EUNKNOWNOP, 11, "unknown op")                                                               \
    XX(ETOOBIG, 12, "message too big")                                                             \
    XX(EINDEX, 13, "index out of range")                                                           \
    XX(ETYPE, 14, "wrong type")                                                                    \
    XX(EVALUE, 15, "bad value (not present, or released or finished too often)")                   \
    XX(ECONN, 16, "cannot reach the broker")                                                       \
    XX(EINVAL, 17, "invalid argument")                                                             \
    XX(EOVERFLOW, 18, "integer overflow")                                                          \
    XX(ENOTOWNER, 19, "not the owner")                                                             \
    XX(EBROKEN, 20, "broken barrier")                                                              \
    XX(ESESSION, 21, "no such session")                                                            \
    XX(EFORK, 22, "client used after fork")                                                        \
    XX(ENOOBJ, 23, "no such object")                                                               \
    XX(EREMOTE, 24, "remote function failed")                                                      \
    XX(ECLOSED, 25, "closed")                                                                      \
    XX(ECANCELED, 26, "canceled")                                                                  \
    XX(EBUSY, 27, "busy")                                                                          \
    XX(EIO, 28, "input/output error")                                                              \
    XX(EPIPE, 29, "end of file: the other end is closed")

enum {
#define XX(name, code, text) MPB_##name = -(code),
    MPB_ERRNO_MAP(XX)
#undef XX
};

/* A static description of err (a negative MPB_E*), or "unknown error". */
MPB_EXPORT const char *mpb_strerror(int err);
/* The name of err (a negative MPB_E*) as MPB_ERRNO_MAP spells it without the prefix: "EINVAL",
 * "ETIMEDOUT"...; "OK" for 0 and "EUNKNOWN" for anything else. Static. */
MPB_EXPORT const char *mpb_err_name(int err);
/* The library's version as MPB_VERSION_HEX, for checking the shared object at run time. */
MPB_EXPORT unsigned mpb_version(void);

/* ---- connecting ------------------------------------------------------------------------- */

typedef struct mpb_client mpb_client_t;
/* The object handles, declared here for the parts that name several kinds (mpb/objects.h). */
typedef struct mpb_dict mpb_dict_t;
typedef struct mpb_list mpb_list_t;
typedef struct mpb_queue mpb_queue_t;
typedef struct mpb_lock mpb_lock_t;
typedef struct mpb_semaphore mpb_semaphore_t;
typedef struct mpb_condition mpb_condition_t;
typedef struct mpb_event mpb_event_t;
typedef struct mpb_barrier mpb_barrier_t;
typedef struct mpb_value mpb_value_t;
typedef struct mpb_namespace mpb_namespace_t;

typedef struct mpb_options {
    size_t size;             /* sizeof(mpb_options_t), set by mpb_options_init() */
    int connect_timeout_ms;  /* the whole handshake; default 5000 */
    int op_timeout_ms;       /* non-blocking ops, and the grace after a blocking op's own
                                deadline; default 10000 */
    const char *name;        /* shown by `mpb info`; default "" */
    int heartbeat_ms;        /* session heartbeat; 0 = the broker's choice (sent at connect) */
    int no_heartbeat_thread; /* 1: send heartbeats only from within calls (see mpb_connect) */
    /* Riding through cuts and broker restarts. These fields are appended, never inserted:
     * a program built against an older header passes a smaller size, and the fields past it
     * keep the defaults of mpb_options_init() (so the ABI stays, and such a program
     * reconnects too). When a call finds its connection gone (the broker does not know it any
     * more: a cut, a restart), the client connects again, resumes its session and resends the
     * requests that had no reply yet, which the broker runs once (it answers a request it
     * already ran from its reply cache); the call then goes on waiting, and a blocking call
     * (queue get, lock acquire, event wait, pool fetch) goes on blocking. If the session did
     * not survive (cut longer than the broker's session TTL, or a restart without it), the
     * calls in flight and the next call fail with MPB_ESESSION, whose message says what was
     * lost (held locks, calls in flight); later calls run in the new session. */
    int reconnect_ms;           /* how long to keep trying before failing with MPB_ECONN;
                                   default 30000; -1: never reconnect */
    int reconnect_delay_ms;     /* first pause between attempts, doubled after each failed
                                   one, each pause drawn between half and all of it (jitter);
                                   default 50 */
    int reconnect_delay_max_ms; /* the longest pause; default 2000 */
    int encryption;             /* MPB_ENCRYPTION_AUTO (default), _ON or _OFF: see below */
    int callback_thread;        /* 1: start the callback thread (mpb_set_callback_thread) */
} mpb_options_t;

/* mpb_options_t.encryption: whether the connection uses ZeroMQ CURVE, keyed by the authkey
 * (nothing else to configure; PROTOCOL.md section 1). AUTO takes $MPB_ENCRYPTION ("on" or
 * "off") if set, else CURVE on tcp:// and none on ipc://, as mpbrokerd does by default. It
 * must match the broker's --encryption: a mismatch never finishes the ZeroMQ handshake, and
 * mpb_connect() fails with MPB_ECONN after connect_timeout_ms, saying so. mpb:// is always
 * encrypted (its own X25519 and ChaCha20-Poly1305, keyed by the authkey): OFF is refused
 * there with MPB_EINVAL. */
enum { MPB_ENCRYPTION_AUTO = 0, MPB_ENCRYPTION_ON = 1, MPB_ENCRYPTION_OFF = 2 };

/* Fills o with the defaults, o->size included. Start from it and change fields: a program
 * built against an older header then still gets the defaults of fields it does not know. */
MPB_EXPORT void mpb_options_init(mpb_options_t *o);

/* Reads the authkey the way the tools do: the file named by path if path is non-NULL, else
 * the file in $MPB_AUTHKEY_FILE, else the bytes of $MPB_AUTHKEY. A trailing newline in a file
 * is dropped. As ssh does with key files, a file that group or others can write is refused,
 * and one they can read is used with a warning, as is a key shorter than 16 bytes (guessable
 * offline): on success errbuf holds the warnings ("" if none; show them to the operator). On
 * success *key is a new buffer (wipe it, then mpb_free() it) of *len bytes. Returns 0,
 * MPB_EINVAL (none configured, unreadable, empty or writable by others; errbuf says which) or
 * MPB_ENOMEM. */
MPB_EXPORT int mpb_authkey_load(const char *path, void **key, size_t *len, char *errbuf,
                                size_t errlen);

/* Connects to endpoint ("tcp://host:port"; "mpb://host:port", the broker's own encrypted
 * TCP framing without ZeroMQ, the fastest from another host; "ipc:///path"; or
 * "unix:///path" for a broker on this host listening there, the fastest; NULL: the one in
 * $MPB_ENDPOINT, as mpb_authkey_load() reads $MPB_AUTHKEY_FILE) and proves the authkey both
 * ways (the broker proves it too). Blocks up to opts->connect_timeout_ms. opts may be NULL for
 * the defaults. Returns 0 or a negative MPB_E* (MPB_EAUTH: wrong key; MPB_ECONN /
 * MPB_ETIMEDOUT: no broker answered; MPB_ECONN at once, without waiting out the timeout, when
 * a tcp:// or mpb:// host does not resolve or refuses the connection, or an mpb:// broker with
 * another key closes it, mpb_errmsg() saying which). *out is set even on failure (NULL only
 * for MPB_ENOMEM) so mpb_errmsg() can say why; mpb_close() it either way. Unless
 * opts->no_heartbeat_thread, a background thread keeps the session alive between calls; it
 * only ever holds the client's internal lock briefly and never runs user code. */
MPB_EXPORT int mpb_connect(const char *endpoint, const void *authkey, size_t authkey_len,
                           const mpb_options_t *opts, mpb_client_t **out);
/* Ends the session (its locks, semaphore units and parked waits are released at once) and
 * frees c. Blocks up to 1 s for the broker to acknowledge; without an answer the session ends
 * at its TTL instead. Handles opened on c must not be used afterwards, but may still be closed.
 * In a forked child it frees the inherited copy only (the parent's session is untouched).
 * Accepts &NULL; sets *c NULL. */
MPB_EXPORT void mpb_close(mpb_client_t **c);
/* Why the last call on c failed. Owned by c, valid until the next call on c. Never NULL. */
MPB_EXPORT const char *mpb_errmsg(const mpb_client_t *c);
/* The broker's id for this client's session: non-zero once connected, 0 for NULL. It is the
 * "session" that `mpb info lock/NAME` shows for an owner. */
MPB_EXPORT uint64_t mpb_session_id(const mpb_client_t *c);
/* How many times c has connected again after losing its connection (see reconnect_ms in
 * mpb_options_t), whether its session survived or not. 0 for NULL. */
MPB_EXPORT unsigned mpb_reconnects(const mpb_client_t *c);

/* Frees a buffer returned by the library. Accepts NULL. */
MPB_EXPORT void mpb_free(void *p);

/* ---- raw requests ----------------------------------------------------------------------- */

/* Sends one request (op code, object name or NULL, and a msgpack array of arguments, see
 * PROTOCOL.md) and waits for its reply: *result (if result is non-NULL) is a new buffer with
 * the reply's value. For tools and bindings; returns 0 or the reply's error as a negative
 * MPB_E*. block_ms is how long the broker may park the request (MPB_FOREVER, or >= 0); the
 * wait is that plus the op timeout. */
MPB_EXPORT int mpb_call(mpb_client_t *c, unsigned op, const char *name, const void *args,
                        size_t argslen, int block_ms, void **result, size_t *resultlen);

/* ---- pipelining: many requests in flight on one connection ---------------------------------
 *
 * mpb_send() queues a request and returns at once; requests queued together travel in one
 * message (call mpb_flush(), or any call that waits, to send them). Replies come back in the
 * order the broker answers (requests on one object are answered in order; a blocking one is
 * answered when it can be). Each reply runs its callback, in the thread that is reading
 * replies at that moment: inside mpb_poll(), mpb_drain() or any synchronous call on the same
 * client. In a callback, status is 0 and (val, len) the reply's msgpack value (valid during
 * the callback only), or status is a negative MPB_E* and mpb_errmsg(c) says why. A callback
 * may queue further requests. If the connection fails, every request in flight gets its
 * callback with the error. An own event loop can poll mpb_fd(c) for readability (it is
 * edge-triggered, as ZMQ_FD is: after it fires, call mpb_poll(c, 0) until it returns 0). */

typedef void (*mpb_callback_t)(mpb_client_t *c, int status, const void *val, size_t len, void *arg);

/* Queues op on object name (NULL for none) with the elements of args (a msgpack array, or
 * NULL for no arguments). Returns 0 or a negative MPB_E* (then cb is never called). */
MPB_EXPORT int mpb_send(mpb_client_t *c, unsigned op, const char *name, const void *args,
                        size_t argslen, mpb_callback_t cb, void *arg);

/* Sends what is queued, without waiting for any reply. 0, or the error of the connection
 * (MPB_ECONN, MPB_EFORK, ...). */
MPB_EXPORT int mpb_flush(mpb_client_t *c);
/* Sends what is queued, then reads replies for up to timeout_ms (0: only what has arrived,
 * MPB_FOREVER: until one comes) and runs their callbacks. Returns how many requests were
 * completed, or a negative MPB_E*. */
MPB_EXPORT int mpb_poll(mpb_client_t *c, int timeout_ms);
/* Polls until no request is in flight. 0 or MPB_ETIMEDOUT. */
MPB_EXPORT int mpb_drain(mpb_client_t *c, int timeout_ms);
/* Requests sent or queued and not yet answered. */
MPB_EXPORT size_t mpb_inflight(const mpb_client_t *c);
/* A descriptor that becomes readable when replies may be waiting (see above), or -1. On
 * unix:// and mpb:// it is the socket itself, and keeps its number across reconnects. */
MPB_EXPORT int mpb_fd(mpb_client_t *c);

/* ---- when callbacks run ------------------------------------------------------------------
 *
 * The callbacks of a client (mpb_send's and the mpb_*_async forms', and its pools': results,
 * errors, mpb/pool.h) never run two at once, and a callback may call the client again (a
 * synchronous call, more requests, the pool) from any of the threads below. By
 * default they run inside the calls that read replies (above; a pool's inside its pool
 * calls), so a program that sleeps or computes between calls hears of nothing meanwhile. Two
 * ways to hear at once:
 *
 * The callback thread: mpb_set_callback_thread(c, 1), or mpb_options_t.callback_thread at
 * connect, starts one thread of libmpb's for c that reads replies as they arrive and runs the
 * callbacks, on itself; replies read by the caller's own calls meanwhile have their callbacks
 * run there too, not in the caller's thread. mpb_poll(), mpb_drain() and the pool calls that
 * wait (join, get, wait, poll, imap_next) still run those already due before they return, in
 * the caller's thread. A callback that takes long holds up the ones after it, as in Python's
 * Pool (its result handler thread). A pool's output callback (mpb_pool_set_output) is the
 * exception: it runs where the result is read, on either thread. */

/* Starts (on 1) or stops (0) c's callback thread. Stopping waits for the callback running, if
 * any, and runs what was put off in the caller's thread. MPB_EBUSY from a callback on that
 * thread; mpb_close() stops it too (never call it from a callback). 0 or a negative MPB_E*. */
MPB_EXPORT int mpb_set_callback_thread(mpb_client_t *c, int on);

/* A loop of the caller's own: poll mpb_fd(c) for readability with a timeout of what the last
 * mpb_process() returned, and call mpb_process(c) when it fires, when it times out, and after
 * other calls on c (which may have read replies: the descriptor is edge-triggered, and does
 * not fire again for what is already here). It reads every reply that has arrived, runs the
 * callbacks due (the pools' too) in the caller's thread, sends a heartbeat when due, and
 * returns the most milliseconds to wait before calling it again (1 to 1000), or a negative
 * MPB_E*. Without the callback thread. */
MPB_EXPORT int mpb_process(mpb_client_t *c);

#ifdef __cplusplus
}
#endif
#endif
