/* req.h - one request as its handler sees it, the argument readers every handler calls and
 * the reply writers: the one writer of each reply shape, [rid, code, value] (req.c). */
#ifndef BROKER_REQ_H
#define BROKER_REQ_H

#include "limits.h"
#include "obj.h"

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
    bool parked;        /* the handler parked it: no reply now */
    const uint8_t *raw; /* the request's msgpack bytes, for the log (NULL: not logged) */
    size_t rawlen;
    int code; /* the reply's code as on the wire (0, or the error's number): dispatch's */
};

/* Each writes exactly one reply [rid, code, value] and returns 0. */
int reply_nil(req_t *r);
int reply_bool(req_t *r, bool v);
int reply_int(req_t *r, int64_t v);
int reply_uint(req_t *r, uint64_t v);
int reply_raw(req_t *r, const uint8_t *v, size_t n); /* v: one msgpack value */
/* Starts a success reply: the caller writes exactly one value into the returned buffer. */
mpb__buf_t *reply_begin(req_t *r);
/* fmt NULL: the error table's text. Returns code (negative). */
__attribute__((format(printf, 3, 4))) int reply_error(req_t *r, int code, const char *fmt, ...);
/* Replies with the items [lo, hi) of d as an array: at most max (0 or past max_scan: max_scan)
 * and half a frame, but always one item (the next slice goes on from there). */
void reply_items(req_t *r, const deque_t *d, size_t lo, size_t hi, uint64_t max);
/* Appends the error reply [rid, -code, msg] to b: for the replies that have no request
 * (a malformed one in a batch, rid 0) or answer a parked one. Every error reply is this. */
void reply_write_error(mpb__buf_t *b, uint64_t rid, int code, const char *msg);
/* Starts the success reply [rid, 0, ...] in b: exactly one value follows. */
void reply_write_ok(mpb__buf_t *b, uint64_t rid);

/* Reads a request's object name (a str, or nil: r->name NULL) from q into r; -1 for anything
 * else (nothing written: the loop and the replay each say so their way). */
int req_read_name(req_t *r, mpb__rd_t *q);

/* Argument helpers: on failure they write the error reply and return a negative code. */
int arg_value(req_t *r, const char *what, size_t max, const uint8_t **v, size_t *n);
int arg_key(req_t *r, const uint8_t **k, size_t *n, mpb__buf_t *scratch);
int arg_int(req_t *r, const char *what, int64_t *v);
int arg_int_or_nil(req_t *r, const char *what, int64_t *v, bool *isnil);
int arg_uint(req_t *r, const char *what, uint64_t *v);
int arg_bool(req_t *r, const char *what, bool *v);
int arg_str(req_t *r, const char *what, const char **s, uint32_t *n);
/* Reads a blocking op's timeout argument (ms; -1: forever, 0: do not wait). */
int arg_timeout(req_t *r, int64_t *ms);
/* Resolves r->name as "kind/name" (obj.info, obj.delete, obj.ref): the object, or NULL after
 * replying ENOOBJ, EKIND or EINVAL. */
obj_t *resolve_path(req_t *r);

#endif
