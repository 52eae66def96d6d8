/* mpb.h - libmpb, the client of mpbrokerd: named shared dicts, lists, queues and locks on a
 * broker reached over ZeroMQ, after the shared authkey has been proved both ways.
 *
 * Conventions for every call:
 * - Returns 0 (or a documented non-negative result) on success, a negative MPB_E* on failure;
 *   mpb_errmsg() then says why, in words ("dict/users is a list").
 * - Keys and values are msgpack values passed as encoded bytes (const void *, size_t). The
 *   mpb_pack_*() and mpb_unpack_*() helpers build and read the common scalars.
 * - Memory, one rule: whatever the library hands the caller (a buffer through `void **` or
 *   `char **`, what mpb_mp_take() gives) is freed with mpb_free(), never anything else; and
 *   what the caller hands the library to keep (a worker function's *result) is allocated with
 *   malloc(), which the library frees. Pointers passed in are borrowed for the call only.
 * - timeout_ms is MPB_FOREVER (-1), MPB_NOWAIT (0) or a bound in milliseconds. Calls that do not
 *   block in the broker are bounded by the client's op timeout (mpb_options_t.op_timeout_ms).
 * - Threads: a client is used by one thread at a time. Its calls take its lock, and a blocking
 *   call keeps it for as long as it blocks, so every other call on that client, from any
 *   thread, waits behind it (and mpb_errmsg() is per client, not per thread). Two threads that
 *   share a client therefore cannot hand a Lock to each other: the holder's release queues
 *   behind the other's blocked acquire. Give each thread its own client: a session of its own
 *   makes it a lock owner of its own. Within one client, locks tell owners apart by a thread
 *   id (see mpb_lock_set_thread()), for a program that drives several logical tasks from one
 *   thread through mpb_send() and MPB_NOWAIT calls. Object handles belong to the client that
 *   opened them and are used with it.
 * - Fork: a client belongs to the process that connected it. In a forked child every call on an
 *   inherited client fails with MPB_EFORK; the child calls mpb_connect() for a session of its
 *   own, and may mpb_close() the inherited one (this does not disturb the parent's session).
 */
#ifndef MPB_MPB_H
#define MPB_MPB_H

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
    XX(EVALUE, 15, "bad value (not present, or released or finished too often)")                  \
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

typedef struct mpb_options {
    size_t size;              /* sizeof(mpb_options_t), set by mpb_options_init() */
    int connect_timeout_ms;   /* the whole handshake; default 5000 */
    int op_timeout_ms;        /* non-blocking ops, and the grace after a blocking op's own
                                 deadline; default 10000 */
    const char *name;         /* shown by `mpb info`; default "" */
    int heartbeat_ms;         /* session heartbeat; 0 = the broker's choice (sent at connect) */
    int no_heartbeat_thread;  /* 1: send heartbeats only from within calls (see mpb_connect) */
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
    int encryption;           /* MPB_ENCRYPTION_AUTO (default), _ON or _OFF: see below */
} mpb_options_t;

/* mpb_options_t.encryption: whether the connection uses ZeroMQ CURVE, keyed by the authkey
 * (nothing else to configure; PROTOCOL.md section 1). AUTO takes $MPB_ENCRYPTION ("on" or
 * "off") if set, else CURVE on tcp:// and none on ipc://, as mpbrokerd does by default. It
 * must match the broker's --encryption: a mismatch never finishes the ZeroMQ handshake, and
 * mpb_connect() fails with MPB_ECONN after connect_timeout_ms, saying so. */
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

/* Connects to endpoint ("tcp://host:port" or "ipc:///path"; NULL: the one in $MPB_ENDPOINT, as
 * mpb_authkey_load() reads $MPB_AUTHKEY_FILE) and proves the authkey both ways
 * (the broker proves it too). Blocks up to opts->connect_timeout_ms. opts may be NULL for the
 * defaults. Returns 0 or a negative MPB_E* (MPB_EAUTH: wrong key; MPB_ECONN / MPB_ETIMEDOUT:
 * no broker answered; MPB_ECONN at once, without waiting out the timeout, when a tcp:// host
 * does not resolve or refuses the connection, mpb_errmsg() saying which). *out is set even on failure (NULL only for MPB_ENOMEM) so mpb_errmsg()
 * can say why; mpb_close() it either way. Unless opts->no_heartbeat_thread, a background
 * thread keeps the session alive between calls; it only ever holds the client's internal lock
 * briefly and never runs user code. */
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

/* ---- msgpack helpers -------------------------------------------------------------------- */

#define MPB_PACK_MAX_SCALAR 9 /* the most bytes mpb_pack_i64/double/bool/nil write */

/* Encode a scalar into buf (at least MPB_PACK_MAX_SCALAR bytes); return its length. */
MPB_EXPORT size_t mpb_pack_i64(void *buf, int64_t v);
MPB_EXPORT size_t mpb_pack_double(void *buf, double v);
MPB_EXPORT size_t mpb_pack_bool(void *buf, int v);
MPB_EXPORT size_t mpb_pack_nil(void *buf);
/* Encode a string (len bytes of UTF-8 text, not necessarily NUL-terminated) or bytes into a
 * new buffer *out (mpb_free() it). Returns its length, or 0 with *out NULL when out of memory.
 * The string is not checked: a str that is not UTF-8 is stored as given. */
MPB_EXPORT size_t mpb_pack_str(const char *s, size_t len, void **out);
MPB_EXPORT size_t mpb_pack_bin(const void *p, size_t len, void **out);
/* Decode one msgpack value. Return 0, or MPB_ETYPE when buf holds another type (an integer is
 * accepted as a double), MPB_EPROTO when it is not one well-formed value. _str and _bin point
 * *s into buf (not NUL-terminated); they do not copy. */
MPB_EXPORT int mpb_unpack_i64(const void *buf, size_t len, int64_t *v);
MPB_EXPORT int mpb_unpack_double(const void *buf, size_t len, double *v);
MPB_EXPORT int mpb_unpack_bool(const void *buf, size_t len, int *v);
MPB_EXPORT int mpb_unpack_str(const void *buf, size_t len, const char **s, size_t *slen);
MPB_EXPORT int mpb_unpack_bin(const void *buf, size_t len, const void **p, size_t *plen);

/* ---- building and reading msgpack -----------------------------------------------------------
 *
 * Arguments, values and results are msgpack; these build and read them without another
 * library. A builder starts zeroed (mpb_mpbuf_t b = {0};). Each mpb_mp_*() appends one value
 * (mpb_mp_array/map append a header: the n values, or n key/value pairs, that follow are its
 * items) and returns 0, MPB_EINVAL (b NULL, or raw bytes that are not one well-formed value) or
 * MPB_ENOMEM, which sticks in b->err so a sequence of appends can be checked once, at
 * mpb_mp_take(). Example, the arguments [3, "x"] of a pool call:
 *     mpb_mpbuf_t b = {0};
 *     mpb_mp_array(&b, 2); mpb_mp_i64(&b, 3); mpb_mp_cstr(&b, "x");
 *     void *args; size_t n;
 *     if (mpb_mp_take(&b, &args, &n) == 0) { ...; mpb_free(args); }
 */
typedef struct mpb_mpbuf {
    unsigned char *data; /* what is built so far (read-only for the caller) */
    size_t len, cap;
    int err;             /* the first failure, or 0 */
} mpb_mpbuf_t;

MPB_EXPORT int mpb_mp_nil(mpb_mpbuf_t *b);
MPB_EXPORT int mpb_mp_bool(mpb_mpbuf_t *b, int v);
MPB_EXPORT int mpb_mp_i64(mpb_mpbuf_t *b, int64_t v);
MPB_EXPORT int mpb_mp_u64(mpb_mpbuf_t *b, uint64_t v);
MPB_EXPORT int mpb_mp_double(mpb_mpbuf_t *b, double v);
/* len bytes of UTF-8 text (not checked); _cstr takes a NUL-terminated one. */
MPB_EXPORT int mpb_mp_str(mpb_mpbuf_t *b, const char *s, size_t len);
MPB_EXPORT int mpb_mp_cstr(mpb_mpbuf_t *b, const char *s);
MPB_EXPORT int mpb_mp_bin(mpb_mpbuf_t *b, const void *p, size_t len);
/* An extension value: type -128..127, len bytes of data. */
MPB_EXPORT int mpb_mp_ext(mpb_mpbuf_t *b, int type, const void *p, size_t len);
MPB_EXPORT int mpb_mp_array(mpb_mpbuf_t *b, uint32_t n);
MPB_EXPORT int mpb_mp_map(mpb_mpbuf_t *b, uint32_t n);
/* One value already encoded (a reply, a dict value): checked, then copied in. */
MPB_EXPORT int mpb_mp_raw(mpb_mpbuf_t *b, const void *p, size_t len);
/* Hands over what was built: *out a new buffer (mpb_free() it) of *len bytes, and b is empty
 * again. Returns b->err (then nothing is handed over and b is emptied) or 0. */
MPB_EXPORT int mpb_mp_take(mpb_mpbuf_t *b, void **out, size_t *len);
/* Frees what b holds and empties it. Accepts NULL. */
MPB_EXPORT void mpb_mp_reset(mpb_mpbuf_t *b);

/* A reader walks one msgpack value (a result, a describe map, a dict_scan page) in place: it
 * copies nothing, and strings point into the buffer, which must outlive the reader.
 * mpb_mpr_init() checks the whole buffer first (MPB_EPROTO: not exactly one well-formed value,
 * nested at most 32 deep), so the calls after it never read past it. Each mpb_mpr_<type>()
 * reads the next value: 0, MPB_ETYPE (another type, or an integer that does not fit; the reader
 * does not move) or MPB_EEMPTY (nothing left). An array or map is read as its header (the count)
 * and then its items one by one. */
typedef struct mpb_mpreader {
    const unsigned char *p, *end; /* private */
} mpb_mpreader_t;

enum { MPB_MP_END, MPB_MP_NIL, MPB_MP_BOOL, MPB_MP_INT, MPB_MP_FLOAT, MPB_MP_STR, MPB_MP_BIN,
       MPB_MP_ARRAY, MPB_MP_MAP, MPB_MP_EXT };

MPB_EXPORT int mpb_mpr_init(mpb_mpreader_t *r, const void *buf, size_t len);
/* The next value's MPB_MP_* type; MPB_MP_END when all is read (or r is NULL). */
MPB_EXPORT int mpb_mpr_type(const mpb_mpreader_t *r);
MPB_EXPORT int mpb_mpr_nil(mpb_mpreader_t *r);
MPB_EXPORT int mpb_mpr_bool(mpb_mpreader_t *r, int *v);
MPB_EXPORT int mpb_mpr_i64(mpb_mpreader_t *r, int64_t *v);
MPB_EXPORT int mpb_mpr_u64(mpb_mpreader_t *r, uint64_t *v);  /* non-negative only */
MPB_EXPORT int mpb_mpr_double(mpb_mpreader_t *r, double *v); /* an integer is accepted */
MPB_EXPORT int mpb_mpr_str(mpb_mpreader_t *r, const char **s, size_t *len);
MPB_EXPORT int mpb_mpr_bin(mpb_mpreader_t *r, const void **p, size_t *len);
MPB_EXPORT int mpb_mpr_ext(mpb_mpreader_t *r, int *type, const void **p, size_t *len);
MPB_EXPORT int mpb_mpr_array(mpb_mpreader_t *r, uint32_t *n);
MPB_EXPORT int mpb_mpr_map(mpb_mpreader_t *r, uint32_t *n);
/* Skips the next whole value; (*p, *len), when p is non-NULL, is its encoding (for
 * mpb_dict_get, mpb_mp_raw, ...). */
MPB_EXPORT int mpb_mpr_skip(mpb_mpreader_t *r, const void **p, size_t *len);
/* With r on a map (not moved): *val reads the value of the string key key. MPB_ENOKEY when
 * the map has no such key, MPB_ETYPE when r is not on a map. */
MPB_EXPORT int mpb_mpr_find(const mpb_mpreader_t *r, const char *key, mpb_mpreader_t *val);

/* ---- objects ---------------------------------------------------------------------------- */

/* Object names are 1..255 bytes of printable ASCII without '/' ... see PROTOCOL.md. One name
 * space for all kinds: opening a name as another kind fails with MPB_EKIND. Every
 * mpb_<kind>_open() also takes name NULL, for a new anonymous object, and a handle on one holds
 * a reference to it: see "anonymous objects" below. */

typedef struct mpb_obj_info {
    char kind[16]; /* "dict", "list", ... */
    char name[256];
    uint64_t size; /* items in it */
} mpb_obj_info_t;

/* Lists objects whose "kind/name" matches the glob pattern (NULL or "*": all), a page at a
 * time: start with *cursor = 0; each call fills up to max entries into out (the caller's
 * array), sets *n, and sets *cursor to 0 when there are no more. Objects made or deleted
 * during the listing may or may not appear. */
MPB_EXPORT int mpb_objects(mpb_client_t *c, const char *pattern, uint64_t *cursor,
                           mpb_obj_info_t *out, size_t max, size_t *n);
/* Describes one object as a msgpack map (field names per kind: PROTOCOL.md "obj.info") in a
 * new buffer *map (mpb_free() it). path is "kind/name". MPB_ENOOBJ when there is none,
 * MPB_EKIND when name is of another kind, MPB_EINVAL for a path that is not kind/name. */
MPB_EXPORT int mpb_obj_describe(mpb_client_t *c, const char *path, void **map, size_t *len);
/* Deletes the object "kind/name", with what it holds. MPB_ENOOBJ if absent, MPB_EKIND if it
 * is of another kind, MPB_EBUSY while clients hold it or are blocked on it (a held lock, a
 * queue with blocked getters or putters; mpb_errmsg() says which). Handles on it stay valid:
 * the next write through one makes a new, empty object. */
MPB_EXPORT int mpb_obj_delete(mpb_client_t *c, const char *path);
/* Broker facts as a msgpack map (version, uptime_s, clients, sessions, objects, memory) in a
 * new buffer *map (mpb_free() it). */
MPB_EXPORT int mpb_broker_info(mpb_client_t *c, void **map, size_t *len);

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
MPB_EXPORT int mpb_dict_get(mpb_dict_t *d, const void *key, size_t klen, void **val,
                            size_t *vlen);
/* As mpb_dict_get, but an absent key yields a copy of def instead of MPB_ENOKEY. */
MPB_EXPORT int mpb_dict_get_default(mpb_dict_t *d, const void *key, size_t klen,
                                    const void *def, size_t deflen, void **val, size_t *vlen);
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
MPB_EXPORT int mpb_dict_popitem(mpb_dict_t *d, void **key, size_t *klen, void **val,
                                size_t *vlen);
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
MPB_EXPORT int mpb_list_slice(mpb_list_t *l, int64_t start, int64_t stop, size_t max,
                              void **items, size_t *itemslen, size_t *n);
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
MPB_EXPORT int mpb_queue_get_tracked(mpb_queue_t *q, void **val, size_t *vlen,
                                     uint64_t *delivery, int timeout_ms);
/* Says the item of that delivery (taken by this client) is done, as AMQP's ack: on a
 * JoinableQueue it is also its task_done. MPB_EVALUE when this client has no such item not
 * yet done. */
MPB_EXPORT int mpb_queue_task_done_id(mpb_queue_t *q, uint64_t delivery);
/* JoinableQueue: blocks until every item put has been marked done. 0 or MPB_ETIMEDOUT. */
MPB_EXPORT int mpb_queue_join(mpb_queue_t *q, int timeout_ms);

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
MPB_EXPORT int mpb_barrier_open(mpb_client_t *c, const char *name, int64_t parties,
                                int timeout_ms, mpb_barrier_t **out);
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
MPB_EXPORT int mpb_value_open(mpb_client_t *c, const char *name, const void *initial,
                              size_t len, mpb_value_t **out);
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
MPB_EXPORT int mpb_namespace_get(mpb_namespace_t *ns, const char *attr, void **val,
                                 size_t *vlen);
/* Sets attribute attr to a copy of val (any msgpack value). MPB_EINVAL when val is not one
 * well-formed value, MPB_ETOOBIG past max_value. */
MPB_EXPORT int mpb_namespace_set(mpb_namespace_t *ns, const char *attr, const void *val,
                                 size_t vlen);
/* Removes attribute attr. MPB_ENOKEY when there is no such attribute. */
MPB_EXPORT int mpb_namespace_del(mpb_namespace_t *ns, const char *attr);
/* Every attribute as a msgpack map {name: value}, in the order they were first set, in a new
 * buffer *map (mpb_free() it). */
MPB_EXPORT int mpb_namespace_list(mpb_namespace_t *ns, void **map, size_t *len);

/* ---- pipe -------------------------------------------------------------------------------
 *
 * A Pipe as multiprocessing.Pipe(): a channel between end 0 and end 1 of pipe name, kept by
 * the broker. Ownership: an end belongs to the first session that opens it, and to it alone,
 * until that session closes it (mpb_pipe_close) or ends (mpb_close, or its expiry after the
 * session TTL when its process dies); another session's open of it fails with MPB_ENOTOWNER,
 * and a closed end cannot be opened again (MPB_ECLOSED). The usual pattern: the parent opens
 * end 0, the child (on its own client) end 1. Items are msgpack values, delivered in the order
 * sent. What is sent to an end that has not been opened yet waits for it. End of file: once
 * the other end is closed (or its session ended), send says MPB_EPIPE, and recv does as soon
 * as it has read what was sent before. Pipes are not persisted: a restarted broker has none. Names starting
 * with '~' (anonymous objects) are not pipes. */
typedef struct mpb_pipe mpb_pipe_t;

/* Opens end (0 or 1) of pipe name for this session, creating the pipe if new. duplex: 1 both
 * ends send and receive; 0 one-way, as Pipe(duplex=False): end 0 only receives, end 1 only
 * sends; -1 whatever the pipe is (duplex if new). The first open fixes it; an open that gives
 * the other value fails with MPB_EINVAL. Returns 0, MPB_ENOTOWNER (another session holds
 * that end), MPB_ECLOSED (it was closed), MPB_EKIND (name is another kind), MPB_EINVAL. The
 * same session may open its end again (a second handle on it). */
MPB_EXPORT int mpb_pipe_open(mpb_client_t *c, const char *name, int end, int duplex,
                             mpb_pipe_t **out);
/* Sends a copy of val (one msgpack value) to the other end. Never blocks: items wait in the
 * broker until received (bounded by the broker's max-value and max-memory). Returns 0,
 * MPB_EPIPE (the other end is closed), MPB_EINVAL (one-way pipe's end 0; not one value),
 * MPB_ETOOBIG, MPB_ENOMEM. */
MPB_EXPORT int mpb_pipe_send(mpb_pipe_t *p, const void *val, size_t vlen);
/* Receives the oldest item sent to this end into a new buffer *val (mpb_free() it), blocking
 * up to timeout_ms (MPB_FOREVER: no bound; 0: never blocks) while there is none; the broker
 * parks the call, so the wait costs no polling. Returns 0, MPB_EEMPTY (timeout_ms 0 and none),
 * MPB_ETIMEDOUT, MPB_EPIPE (none left and the other end is closed: end of file), MPB_EINVAL
 * (one-way pipe's end 1), MPB_ECLOSED (this end was closed meanwhile). */
MPB_EXPORT int mpb_pipe_recv(mpb_pipe_t *p, void **val, size_t *vlen, int timeout_ms);
/* 1 if a recv would not block now (an item waits, or end of file), waiting up to timeout_ms
 * (MPB_FOREVER: no bound) for that; 0 if not by then; or a negative MPB_E*. */
MPB_EXPORT int mpb_pipe_poll(mpb_pipe_t *p, int timeout_ms);
/* Closes this end for good (the other end sees end of file once it has read what was sent)
 * and frees the handle; items sent to this end and not received are dropped. Sets *p NULL.
 * Returns 0 or the error of the close (the handle is freed either way); MPB_EINVAL for &NULL
 * (nothing to do). Close pipe handles before mpb_close() of their client (which closes the
 * ends of its session anyway). */
MPB_EXPORT int mpb_pipe_close(mpb_pipe_t **p);
/* The end the handle holds (0 or 1), or MPB_EINVAL for NULL. */
MPB_EXPORT int mpb_pipe_end(const mpb_pipe_t *p);
MPB_EXPORT const char *mpb_pipe_name(const mpb_pipe_t *p);

/* ---- anonymous objects ------------------------------------------------------------------
 *
 * Every mpb_<kind>_open() also accepts name NULL, as Python's manager.dict() takes none: the
 * broker makes a new object with a unique name of its own ("~" and 16 hex digits, such as
 * "~3f9a0c2b7d41e865"; read it with mpb_<kind>_name()). Names starting with '~' are reserved:
 * only the broker makes them, so no named open can ever create or collide with one.
 *
 * An anonymous object lives while some session holds a reference to it:
 *   - the handle that made it holds one; opening its name in any session takes another
 *     (mpb_dict_open(c2, "~3f9a...", &d) in the process it was passed to), and so does
 *     mpb_ref(); MPB_ENOOBJ when it is gone;
 *   - mpb_<kind>_close() of such a handle, and mpb_unref(), give one back; mpb_close() and the
 *     end of the session (expiry after its TTL: a killed process) give back all of its own;
 *   - when the last goes, the broker deletes the object after its grace period (the broker's
 *     anon-grace-ms, 5 s by default), unless a reference is taken again meanwhile: a handle
 *     passed through a queue by a process that then closed it can still be opened at the other
 *     end. Calls parked on it are answered MPB_ENOOBJ.
 * _attach() handles take no reference. A handle used after fork belongs to the parent: the
 * child's close of it gives nothing back (open the name again on the child's own client).
 * Named objects have no references and keep their rules. */

/* The handle's object name: NUL-terminated, owned by the handle, valid until it is closed.
 * NULL for a NULL handle. */
MPB_EXPORT const char *mpb_dict_name(const mpb_dict_t *d);
MPB_EXPORT const char *mpb_list_name(const mpb_list_t *l);
MPB_EXPORT const char *mpb_queue_name(const mpb_queue_t *q);
MPB_EXPORT const char *mpb_lock_name(const mpb_lock_t *l); /* also for an RLock's handle */
MPB_EXPORT const char *mpb_semaphore_name(const mpb_semaphore_t *s);
MPB_EXPORT const char *mpb_condition_name(const mpb_condition_t *cv);
MPB_EXPORT const char *mpb_event_name(const mpb_event_t *e);
MPB_EXPORT const char *mpb_barrier_name(const mpb_barrier_t *b);
MPB_EXPORT const char *mpb_value_name(const mpb_value_t *v);
MPB_EXPORT const char *mpb_namespace_name(const mpb_namespace_t *ns);

/* Takes one more reference for this session on the anonymous object kind/name (kind as the
 * wire says it: "dict", "list", "queue", "lock", "rlock", "semaphore", "condition", "event",
 * "barrier", "value", "namespace"; both strings borrowed). Returns the object's reference
 * count after the call (>= 1), or MPB_ENOOBJ (gone, or never was), MPB_EKIND (another kind),
 * MPB_EINVAL (a named object: it has no references; a bad kind or name). */
MPB_EXPORT int64_t mpb_ref(mpb_client_t *c, const char *kind, const char *name);
/* Gives back one of this session's references. Returns the count left (0: the object will be
 * deleted after the grace period unless someone takes a reference), or MPB_EVALUE when this
 * session holds none, or the errors of mpb_ref(). */
MPB_EXPORT int64_t mpb_unref(mpb_client_t *c, const char *kind, const char *name);

/* ---- raw requests ----------------------------------------------------------------------- */

/* Sends one request (op code, object name or NULL, and a msgpack array of arguments, see
 * PROTOCOL.md) and waits for its reply: *result (if result is non-NULL) is a new buffer with
 * the reply's value. For tools and bindings; returns 0 or the reply's error as a negative
 * MPB_E*. block_ms is how long the broker may park the request (MPB_FOREVER, or >= 0); the
 * wait is that plus the op timeout. */
MPB_EXPORT int mpb_call(mpb_client_t *c, unsigned op, const char *name, const void *args,
                        size_t argslen, int block_ms, void **result, size_t *resultlen);

/* ---- the remote Pool: workers ---------------------------------------------------------------
 *
 * A worker process serves named functions for pools on any host. A function gets its call's
 * arguments as a msgpack array (apply(fn, [1, 2]) passes [1, 2]; map(fn, items) passes [item];
 * starmap passes each item, itself an array) and answers with one msgpack value in a new
 * malloc()ed buffer, which the library frees; or it fails (the C analogue of raising): it
 * returns non-zero with a message in err, which reaches the caller. Functions run on the
 * worker's own threads (concurrency of them), so they must be thread-safe when concurrency > 1. */

typedef int (*mpb_task_fn)(void *ctx, const void *args, size_t alen, void **result,
                           size_t *rlen, char *err, size_t errlen);

typedef struct mpb_worker mpb_worker_t;

/* For a pool function that fails with a kind of error: writes the message (printf-style) into
 * its err buffer and, after it, the kind, a short type name ("ValueError", at most 63 bytes),
 * which reaches the caller beside the message (mpb_async_error()) so that a client can raise
 * the matching exception. Returns -1, for `return mpb_task_fail(err, errlen, "ValueError",
 * "%d is negative", x);`. Pure: it touches nothing but err. */
MPB_EXPORT int mpb_task_fail(char *err, size_t errlen, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A worker on client c (which it uses exclusively while serving). */
MPB_EXPORT int mpb_worker_new(mpb_client_t *c, mpb_worker_t **out);
MPB_EXPORT void mpb_worker_free(mpb_worker_t **w);
/* Serves function name with fn (ctx is passed through). Before mpb_worker_serve(). */
MPB_EXPORT int mpb_worker_add(mpb_worker_t *w, const char *name, mpb_task_fn fn, void *ctx);
/* Tasks run at once (default 1) and tasks held beyond those (default MPB_WORKER_PREFETCH).
 * A held task waits only while every other slot is busy: the broker takes back a task not
 * yet started for a slot idle elsewhere, and the worker asks before it starts one (except
 * for functions whose tasks take under ~10 ms, which stream), so a large prefetch costs long
 * tasks nothing and lets tiny ones stream. */
#define MPB_WORKER_PREFETCH 64
MPB_EXPORT void mpb_worker_set_concurrency(mpb_worker_t *w, int n);
/* Where tasks run. MPB_ISOLATE_THREAD (the default, the fastest): on the worker's threads; a
 * task that was cancelled (terminate(), a timeout, a freed AsyncResult, its caller gone) runs
 * to its end and its result is dropped. MPB_ISOLATE_PROCESS: each thread hands its tasks to a
 * child process of its own, forked before serving and reused, so such a task is killed at once
 * and its slot freed; a task that kills its process is retried (pool-max-attempts) while the
 * worker lives on and forks a fresh child. Functions keep the state the worker had when the
 * child was forked (after the initializer); what a task changes stays in its child. */
enum { MPB_ISOLATE_THREAD = 0, MPB_ISOLATE_PROCESS = 1 };
MPB_EXPORT void mpb_worker_set_isolate(mpb_worker_t *w, int mode);
/* on: what a task writes to stdout and stderr (up to 64 KiB a task) goes with its result to its
 * caller (mpb_pool_set_output()), tagged by task and stream. Sets process mode: each child's
 * stdout and stderr are pipes the worker reads. */
MPB_EXPORT void mpb_worker_set_forward_output(mpb_worker_t *w, int on);
MPB_EXPORT void mpb_worker_set_prefetch(mpb_worker_t *w, int n);
/* Runs init(arg) once, in the first mpb_worker_serve() before it registers (as
 * Pool(initializer, initargs)). A non-zero return is a failure: serve returns MPB_EINVAL
 * ("the initializer failed (returned N)") and no task reaches this worker. */
MPB_EXPORT void mpb_worker_set_initializer(mpb_worker_t *w, int (*init)(void *arg), void *arg);
/* After n tasks, serve returns (maxtasksperchild: the caller starts a fresh process). */
MPB_EXPORT void mpb_worker_set_max_tasks(mpb_worker_t *w, uint64_t n);
/* Registers and serves until mpb_worker_stop() or max tasks. Blocks. Returns 0 when stopped or
 * done, or a negative MPB_E* when the connection failed. Tasks running at the stop finish and
 * their results are sent first; then the session unregisters (it serves no more, and the
 * broker stops counting it), so the client may serve again, with this worker or another.
 * A result over the broker's max_value, or a chunk's results over its max_frame, reaches the
 * caller as that call's failure ("result of N bytes > max_value M"). */
MPB_EXPORT int mpb_worker_serve(mpb_worker_t *w);
/* Asks a serving worker to stop. Safe from a signal handler and from other threads. */
MPB_EXPORT void mpb_worker_stop(mpb_worker_t *w);
/* Tasks completed so far. */
MPB_EXPORT uint64_t mpb_worker_tasks_done(const mpb_worker_t *w);

/* ---- the remote Pool: callers ---------------------------------------------------------------
 *
 * multiprocessing.Pool's API over the broker's workers. Callbacks run in the calling process,
 * in the thread that calls the pool, inside a pool call and never nested in another call:
 * mpb_pool_poll(), mpb_pool_join(), mpb_async_get()/wait()/ready(), mpb_imap_next(), the
 * submitting calls, mpb_async_free() and mpb_pool_free(). A callback may call the pool or the
 * client again. A function that fails makes its result fail with MPB_EREMOTE and the
 * remote message in mpb_errmsg(); a map fails with its first failed item, as Python's does. */

typedef struct mpb_pool mpb_pool_t;
typedef struct mpb_async mpb_async_t;
typedef struct mpb_imap mpb_imap_t;
/* result: the value (apply) or a msgpack array of values (map, starmap), valid during the call */
typedef void (*mpb_result_cb)(void *arg, const void *result, size_t len);
/* err: a negative MPB_E*; msg: the remote error message or the reason */
typedef void (*mpb_error_cb)(void *arg, int err, const char *msg);
/* What a task wrote (workers with --forward-output): stream 1 stdout, 2 stderr; task is the
 * task's place in its apply (0) or map (its chunk's index); a is its AsyncResult (NULL for
 * imap). Called as its result arrives, before the result's own callback, while replies are
 * read: it must not call the pool or the client. data is valid during the call. */
typedef void (*mpb_output_cb)(void *arg, mpb_async_t *a, uint64_t task, int stream,
                              const void *data, size_t len);

MPB_EXPORT int mpb_pool_open(mpb_client_t *c, mpb_pool_t **out);
/* Terminates what is still outstanding and frees the pool. Accepts &NULL. Handles and
 * iterators the caller still holds stay valid, detached, until freed. */
MPB_EXPORT void mpb_pool_free(mpb_pool_t **p);

/* fn(*args) on some worker; blocks up to timeout_ms for the result (a new buffer). */
MPB_EXPORT int mpb_pool_apply(mpb_pool_t *p, const char *fn, const void *args, size_t alen,
                              int timeout_ms, void **result, size_t *rlen);
/* Submits fn(*args); *out (may be NULL: then the pool keeps it) completes later, running cb or
 * ecb (either may be NULL). Free *out with mpb_async_free(). */
MPB_EXPORT int mpb_pool_apply_async(mpb_pool_t *p, const char *fn, const void *args,
                                    size_t alen, mpb_result_cb cb, mpb_error_cb ecb, void *arg,
                                    mpb_async_t **out);
/* fn(item) for every item of the msgpack array items, chunksize items per task (0: chosen
 * as Python does, about len / (4 * workers); any larger value is one chunk), and fewer where
 * a chunk would pass the broker's max_value; *results is a msgpack array in input order.
 * MPB_ETOOBIG for an item that alone passes it, MPB_ELIMIT when the broker holds as much of
 * this client's unfinished work as it allows (pool-max-queued). */
MPB_EXPORT int mpb_pool_map(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                            size_t chunksize, int timeout_ms, void **results, size_t *rlen);
MPB_EXPORT int mpb_pool_map_async(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                                  size_t chunksize, mpb_result_cb cb, mpb_error_cb ecb,
                                  void *arg, mpb_async_t **out);
/* As map, but each item is an array of arguments: fn(*item). */
MPB_EXPORT int mpb_pool_starmap(mpb_pool_t *p, const char *fn, const void *items, size_t len,
                                size_t chunksize, int timeout_ms, void **results, size_t *rlen);
MPB_EXPORT int mpb_pool_starmap_async(mpb_pool_t *p, const char *fn, const void *items,
                                      size_t len, size_t chunksize, mpb_result_cb cb,
                                      mpb_error_cb ecb, void *arg, mpb_async_t **out);

/* Lazy map over items that next() produces one at a time (return 1 with *item set to one
 * msgpack value, valid until the next call; 0 at the end; < 0 to stop with that error). At most
 * window chunks (0: 64) are in flight, so memory stays bounded however long the input.
 * ordered 1: results in input order (imap); 0: as they finish (imap_unordered). */
typedef int (*mpb_next_fn)(void *arg, const void **item, size_t *len);
MPB_EXPORT int mpb_pool_imap(mpb_pool_t *p, const char *fn, mpb_next_fn next, void *arg,
                             size_t chunksize, int ordered, size_t window, mpb_imap_t **out);
/* The next result (a new buffer). MPB_ECLOSED after the last; MPB_EREMOTE for an item whose
 * call failed (iteration may go on); MPB_ETIMEDOUT; MPB_ECANCELED after mpb_pool_terminate();
 * MPB_ECLOSED (without a message) after mpb_pool_free(). Chunks are cut short where they would
 * pass the broker's max_value; an item that alone would ends the input with MPB_ETOOBIG. */
MPB_EXPORT int mpb_imap_next(mpb_imap_t *it, int timeout_ms, void **result, size_t *rlen);
MPB_EXPORT void mpb_imap_free(mpb_imap_t **it);

/* No more tasks may be submitted. */
MPB_EXPORT int mpb_pool_close(mpb_pool_t *p);
/* After close: waits for every outstanding task (running callbacks). 0 or MPB_ETIMEDOUT;
 * MPB_EINVAL if the pool is not closed. */
MPB_EXPORT int mpb_pool_join(mpb_pool_t *p, int timeout_ms);
/* Cancels every outstanding task (imap iterators too): they finish with MPB_ECANCELED. Closes
 * the pool. */
MPB_EXPORT int mpb_pool_terminate(mpb_pool_t *p);
/* Where the output of p's tasks goes (cb NULL: nowhere, the default). */
MPB_EXPORT void mpb_pool_set_output(mpb_pool_t *p, mpb_output_cb cb, void *arg);
/* Reads results that have arrived (up to timeout_ms for one) and runs their callbacks.
 * Returns how many results completed, or a negative MPB_E*. */
MPB_EXPORT int mpb_pool_poll(mpb_pool_t *p, int timeout_ms);

/* Waits up to timeout_ms; the value (apply) or array (map) in a new buffer. MPB_EREMOTE (the
 * function failed: mpb_errmsg() has its message), MPB_ECANCELED, MPB_ETIMEDOUT (with why:
 * e.g. no worker serves the function). */
MPB_EXPORT int mpb_async_get(mpb_async_t *a, int timeout_ms, void **result, size_t *rlen);
/* Waits up to timeout_ms; returns 1 if ready, 0 if not. */
MPB_EXPORT int mpb_async_wait(mpb_async_t *a, int timeout_ms);
MPB_EXPORT int mpb_async_ready(mpb_async_t *a);
/* 1 succeeded, 0 failed; MPB_EINVAL before it is ready (as Python raises ValueError). */
MPB_EXPORT int mpb_async_successful(mpb_async_t *a);
/* Why a finished result failed: returns its code (0: it succeeded; MPB_EINVAL: not ready),
 * and in *kind the error kind the function gave (mpb_task_fail(): "ValueError"; "" when
 * none) and in *msg its message, both owned by a and valid until it is freed; either may be
 * NULL. A map gives its first failed call's. */
MPB_EXPORT int mpb_async_error(const mpb_async_t *a, const char **kind, const char **msg);
/* Tasks (chunks) finished so far and in all; either may be NULL. */
MPB_EXPORT void mpb_async_progress(const mpb_async_t *a, uint64_t *done, uint64_t *total);
/* Frees the handle; a result still outstanding is cancelled. Accepts &NULL. */
MPB_EXPORT void mpb_async_free(mpb_async_t **a);

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

typedef void (*mpb_callback_t)(mpb_client_t *c, int status, const void *val, size_t len,
                               void *arg);

/* Queues op on object name (NULL for none) with the elements of args (a msgpack array, or
 * NULL for no arguments). Returns 0 or a negative MPB_E* (then cb is never called). */
MPB_EXPORT int mpb_send(mpb_client_t *c, unsigned op, const char *name, const void *args,
                        size_t argslen, mpb_callback_t cb, void *arg);
/* Typed forms of mpb_send for the common ops: same arguments as their synchronous calls, and
 * the reply's value in the callback (nil for set/append/put; the value for get; the new
 * integer for incr; the item for queue get). Nothing is copied for the caller to free. */
MPB_EXPORT int mpb_dict_set_async(mpb_dict_t *d, const void *key, size_t klen, const void *val,
                                  size_t vlen, mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_dict_get_async(mpb_dict_t *d, const void *key, size_t klen,
                                  mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_dict_incr_async(mpb_dict_t *d, const void *key, size_t klen, int64_t by,
                                   mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_list_append_async(mpb_list_t *l, const void *val, size_t vlen,
                                     mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_queue_put_async(mpb_queue_t *q, const void *val, size_t vlen, int timeout_ms,
                                   mpb_callback_t cb, void *arg);
MPB_EXPORT int mpb_queue_get_async(mpb_queue_t *q, int timeout_ms, mpb_callback_t cb,
                                   void *arg);
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
/* A descriptor that becomes readable when replies may be waiting (see above), or -1. */
MPB_EXPORT int mpb_fd(mpb_client_t *c);

#ifdef __cplusplus
}
#endif
#endif
