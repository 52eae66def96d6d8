/* req.c - what every handler reads and writes: the argument readers, which answer a bad
 * argument themselves, and the reply writers, the one writer of each reply shape
 * [rid, code, value] (errors included: reply_write_error). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anon.h"
#include "kind.h"
#include "persist.h"
#include "store.h"

/* ---- replies ---- */

void reply_write_ok(mpb__buf_t *b, uint64_t rid) {
    mpb__w_array(b, 3);
    mpb__w_uint(b, rid);
    mpb__w_uint(b, 0);
}

void reply_write_error(mpb__buf_t *b, uint64_t rid, int code, const char *msg) {
    mpb__w_array(b, 3);
    mpb__w_uint(b, rid);
    mpb__w_uint(b, (uint64_t)-code);
    mpb__w_cstr(b, msg);
}

mpb__buf_t *reply_begin(req_t *r) {
    reply_write_ok(r->out, r->rid);
    return r->out;
}

int reply_nil(req_t *r) {
    mpb__w_nil(reply_begin(r));
    return 0;
}

int reply_bool(req_t *r, bool v) {
    mpb__w_bool(reply_begin(r), v);
    return 0;
}

int reply_int(req_t *r, int64_t v) {
    mpb__w_int(reply_begin(r), v);
    return 0;
}

int reply_uint(req_t *r, uint64_t v) {
    mpb__w_uint(reply_begin(r), v);
    return 0;
}

int reply_raw(req_t *r, const uint8_t *v, size_t n) {
    mpb__w_raw(reply_begin(r), v, n);
    return 0;
}

int reply_error(req_t *r, int code, const char *fmt, ...) {
    char msg[512];
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    } else {
        snprintf(msg, sizeof msg, "%s", mpb__strerror(code));
    }
    reply_write_error(r->out, r->rid, code, msg);
    r->code = -code;
    if (log_min_level <= MPB_LOG_DEBUG) {
        const char *opn = mpb__op_name(r->op);
        char name[300]; /* the log cuts it at 256 bytes */
        snprintf(name, sizeof name, "%.*s", (int)(r->name ? r->namelen : 1),
                 r->name ? r->name : "-");
        log_kv(MPB_LOG_DEBUG, "error reply", "op", opn ? opn : "?", "object", name, "error", msg,
               NULL);
    }
    return code;
}

int req_read_name(req_t *r, mpb__rd_t *q) {
    const char *name;
    uint32_t nl;
    if (mpb__rd_nil(q) == 0) {
        r->name = NULL;
        return 0;
    }
    if (mpb__rd_str(q, &name, &nl) != 0) return -1;
    r->name = name;
    r->namelen = nl;
    return 0;
}

/* ---- arguments ---- */

/* Every caller passes max_value (keys go through arg_key): the message names it so. */
int arg_value(req_t *r, const char *what, size_t max, const uint8_t **v, size_t *n) {
    if (mpb__rd_span(&r->args, v, n))
        return reply_error(r, MPB_EPROTO, "%s: missing or malformed", what);
    if (mpb__mp_check1(*v, *n, MPB__MAX_DEPTH) < 0)
        return reply_error(r, MPB_EPROTO, "%s nests deeper than %d", what, MPB__MAX_DEPTH);
    if (*n > max)
        return reply_error(r, MPB_ETOOBIG, "%s of %zu bytes > max_value %zu", what, *n, max);
    return 0;
}

/* The limit is on the canonical encoding, which is what is stored: it can be longer than the
 * bytes sent (a float32 widens from 5 to 9 bytes) or shorter (cd 00 01 becomes 01). */
int arg_key(req_t *r, const uint8_t **k, size_t *n, mpb__buf_t *scratch) {
    if (mpb__rd_span(&r->args, k, n))
        return reply_error(r, MPB_EPROTO, "key: missing or malformed");
    if (mpb__mp_check1(*k, *n, MPB__MAX_DEPTH) < 0)
        return reply_error(r, MPB_EPROTO, "key nests deeper than %d", MPB__MAX_DEPTH);
    size_t sent = *n;
    if (!mpb__canon_is(*k, *n)) {
        mpb__buf_reset(scratch);
        mpb__canon(*k, *n, scratch);
        bbuf_ensure(scratch);
        *k = scratch->p;
        *n = scratch->len;
    }
    if (*n > g_limits.max_key) {
        if (*n == sent)
            return reply_error(r, MPB_ETOOBIG, "key of %zu bytes > max_key %zu", *n,
                               g_limits.max_key);
        return reply_error(r, MPB_ETOOBIG,
                           "key of %zu bytes in canonical encoding (%zu as sent) > max_key %zu", *n,
                           sent, g_limits.max_key);
    }
    return 0;
}

int arg_int(req_t *r, const char *what, int64_t *v) {
    if (mpb__rd_int(&r->args, v)) return reply_error(r, MPB_ETYPE, "%s must be an integer", what);
    return 0;
}

int arg_int_or_nil(req_t *r, const char *what, int64_t *v, bool *isnil) {
    *isnil = mpb__rd_nil(&r->args) == 0;
    if (*isnil) return 0;
    return arg_int(r, what, v);
}

int arg_uint(req_t *r, const char *what, uint64_t *v) {
    if (mpb__rd_uint(&r->args, v))
        return reply_error(r, MPB_ETYPE, "%s must be a non-negative integer", what);
    return 0;
}

int arg_bool(req_t *r, const char *what, bool *v) {
    if (mpb__rd_bool(&r->args, v)) return reply_error(r, MPB_ETYPE, "%s must be a boolean", what);
    return 0;
}

int arg_timeout(req_t *r, int64_t *ms) {
    if (mpb__rd_nil(&r->args) == 0) {
        *ms = -1;
    } else {
        if (mpb__rd_int(&r->args, ms))
            return reply_error(r, MPB_ETYPE, "timeout must be milliseconds (-1: forever)");
        if (*ms < -1) *ms = -1;
    }
    /* A logged request took effect at once, or was logged again when it did: never wait. */
    if (persist_replaying()) *ms = 0;
    return 0;
}

int arg_str(req_t *r, const char *what, const char **s, uint32_t *n) {
    if (mpb__rd_str(&r->args, s, n)) return reply_error(r, MPB_ETYPE, "%s must be a string", what);
    return 0;
}

/* Replies with the items [lo, hi) of d as an array: at most max (0 or past max_scan: max_scan)
 * and half a frame, but always one item (the next slice goes on from there). */
void reply_items(req_t *r, const deque_t *d, size_t lo, size_t hi, uint64_t max) {
    if (max == 0 || max > g_limits.max_scan) max = g_limits.max_scan;
    size_t bytes = 0, end = lo;
    while (end < hi && end - lo < max) {
        size_t sz = deque_at(d, end)->len;
        if (end > lo && bytes + sz > g_limits.max_frame / 2) break;
        bytes += sz;
        end++;
    }
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, (uint32_t)(end - lo));
    for (size_t i = lo; i < end; i++) {
        const blob_t *x = deque_at(d, i);
        mpb__w_raw(b, x->data, x->len);
    }
}

obj_t *resolve_path(req_t *r) {
    const char *slash = memchr(r->name, '/', r->namelen);
    if (!slash) {
        reply_error(r, MPB_EINVAL, "object path must be kind/name, got '%.*s'", (int)r->namelen,
                    r->name);
        return NULL;
    }
    size_t kl = (size_t)(slash - r->name), nl = r->namelen - kl - 1;
    const char *name = slash + 1;
    kind_t k = kind_parse(r->name, kl);
    if (k == KIND_NONE) {
        reply_error(r, MPB_EINVAL, "unknown kind '%.*s'", (int)kl, r->name);
        return NULL;
    }
    if (!mpb__name_ok(name, nl)) {
        reply_error(r, MPB_EINVAL, "bad object name '%.*s'", (int)nl, name);
        return NULL;
    }
    obj_t *o = store_get(name, nl);
    if (!o) {
        reply_error(r, MPB_ENOOBJ, "no object %.*s%s", (int)r->namelen, r->name,
                    anon_name(name, nl) ? " (an anonymous object: gone after its last reference "
                                          "was given back, or never made)"
                                        : "");
        return NULL;
    }
    if (o->kind != k) {
        reply_error(r, MPB_EKIND, "%.*s is a %s, not a %s", (int)nl, name, kind_name(o->kind),
                    kind_name(k));
        return NULL;
    }
    return o;
}
