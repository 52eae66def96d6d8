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

/* Allocation that cannot fail: client data is refused by the limits long before memory runs
 * out, so running out here is fatal and says how much was asked. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrndup(const char *s, size_t n);
int64_t now_ms(void);
/* The buffer's space is ours to grow: wraps mpb__buf_reserve and aborts on failure. */
void bbuf_ensure(mpb__buf_t *b);

/* ---- log.c ---- */

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
void log_setup(int level, bool json);
int log_level_parse(const char *s); /* -1 if unknown */
/* One line: time, level, message, then key=value pairs given as a NULL-terminated list of
 * alternating const char * keys and values. */
__attribute__((format(printf, 2, 3))) void log_msg(int level, const char *fmt, ...);
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
extern int log_min_level;

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
    uint32_t *idx;
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
    KIND__N
} kind_t;
const char *kind_name(kind_t k);
kind_t kind_parse(const char *s, size_t n); /* KIND_NONE if unknown */

typedef struct obj {
    kind_t kind;
    uint32_t namelen;
    char *name;
    bool readonly_empty; /* the shared stand-in for a missing object read by a CMD_READ op */
    union {
        omap_t dict; /* items: dkv_t */
        deque_t list;
    } u;
} obj_t;

/* A dict pair: [klen][vlen][key][value] in one allocation. */
typedef struct dkv {
    uint32_t klen, vlen;
    uint8_t data[];
} dkv_t;

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

typedef struct sess sess_t;
typedef struct peer {
    uint8_t rid[RID_MAX];
    uint8_t ridlen;
    bool ready; /* handshake done, keys set */
    uint8_t nonce_c[MPB__NONCE_LEN], nonce_b[MPB__NONCE_LEN];
    int64_t hs_deadline;
    mpb__mac_t *rx, *tx;
    uint64_t seq_in, seq_out;
    sess_t *sess;
    struct peer *hnext; /* peer table chain */
} peer_t;

struct sess {
    uint64_t id;
    uint8_t token[MPB__TOKEN_LEN];
    peer_t *peer; /* the connection it speaks on now; NULL while none */
    char host[64];
    char name[64];
    int64_t pid;
    int64_t created_ms, last_seen_ms;
    sess_t *next, *prev; /* all sessions */
};

/* ---- requests and replies ---- */

typedef struct req {
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
} req_t;

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
    size_t max_pending; /* handshakes in progress */
    int handshake_ms;
    int heartbeat_ms;
    int session_ttl_ms;
} limits_t;

typedef struct config {
    const char *listen[8];
    int nlisten;
    const char *authkey_file;
    const char *data_dir;
    const char *endpoint_file;
    const char *http;
    int log_level;
    bool log_json;
    limits_t limits;
} config_t;

extern limits_t g_limits;
extern int64_t g_started_ms;
size_t server_peer_count(void);
size_t server_session_count(void);
/* Runs the broker until SIGTERM/SIGINT. authkey is borrowed. Returns the exit status. */
int server_main(const config_t *cfg, const uint8_t *authkey, size_t keylen);
void server_stop(void);

/* ---- commands.c ---- */

enum { CMD_READ = 1, CMD_WRITE = 2, CMD_NOOBJ = 4, CMD_ANYKIND = 8 };
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
/* Kind-specific parts of obj.info: write (count) more map pairs into b. */
uint32_t dict_describe(const obj_t *o, mpb__buf_t *b);
uint32_t list_describe(const obj_t *o, mpb__buf_t *b);
void sess_end(sess_t *s, const char *why);

#endif
