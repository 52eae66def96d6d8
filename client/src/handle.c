/* handle.c - what the calls on every kind share: opening and closing a handle (named, or an
 * anonymous object the handle holds a reference to), and reading the common reply shapes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- handles, and the references they hold on anonymous objects ---- */

/* The kind of each open op, as obj.new and obj.ref name it. */
static const char *op_kind(unsigned op) {
    switch (op) {
    case MPB_OP_DICT_OPEN: return "dict";
    case MPB_OP_LIST_OPEN: return "list";
    case MPB_OP_QUEUE_OPEN: return "queue";
    case MPB_OP_LOCK_OPEN: return "lock";
    case MPB_OP_RLOCK_OPEN: return "rlock";
    case MPB_OP_SEM_OPEN: return "semaphore";
    case MPB_OP_COND_OPEN: return "condition";
    case MPB_OP_EVENT_OPEN: return "event";
    case MPB_OP_BARRIER_OPEN: return "barrier";
    case MPB_OP_VALUE_OPEN: return "value";
    case MPB_OP_NS_OPEN: return "namespace";
    default: return "?";
    }
}

/* obj.ref / obj.unref of "kind/name": the object's reference count after it, or an error. */
static int64_t ref_call(mpb_client_t *c, unsigned op, const char *kind, const char *name) {
    if (!c) return MPB_EINVAL;
    if (!kind || !name || !mpb__name_ok(name, strlen(name)))
        return mpb__fail(c, MPB_EINVAL, "%s needs a kind and an object name", mpb__op_name(op));
    char path[300];
    int n = snprintf(path, sizeof path, "%s/%s", kind, name);
    if (n < 0 || (size_t)n >= sizeof path) return mpb__fail(c, MPB_EINVAL, "object path too long");
    mpb__buf_t *b = mpb__req(c, op, path, (size_t)n, 0);
    (void)b;
    mpb__rd_t r;
    int rc = mpb__call_rd(c, 0, &r);
    if (rc) return rc;
    int64_t count;
    if (mpb__rd_int(&r, &count) || count < 0)
        return mpb__fail(c, MPB_EPROTO, "expected a reference count");
    return count;
}

int64_t mpb_ref(mpb_client_t *c, const char *kind, const char *name) {
    return ref_call(c, MPB_OP_OBJ_REF, kind, name);
}

int64_t mpb_unref(mpb_client_t *c, const char *kind, const char *name) {
    return ref_call(c, MPB_OP_OBJ_UNREF, kind, name);
}

/* The list is the client's: changed under its lock, except in a forked child, whose copy of
 * the list is its own and whose copy of the lock may have been held by a thread left behind. */
static void refd_lock(mpb_client_t *c, bool lock) {
    if (c->gen != mpb__gen()) return;
    if (lock)
        pthread_mutex_lock(&c->mu);
    else
        pthread_mutex_unlock(&c->mu);
}

static void refd_add(mpb__any_t *h) {
    refd_lock(h->c, true);
    h->ref = true;
    LIST_INSERT_HEAD(&h->c->refd, h, rlink);
    refd_lock(h->c, false);
}

static void refd_del(mpb__any_t *h) {
    refd_lock(h->c, true);
    LIST_REMOVE(h, rlink);
    h->ref = false;
    refd_lock(h->c, false);
}

void mpb__anon_detach(mpb_client_t *c) {
    while (!LIST_EMPTY(&c->refd)) {
        mpb__any_t *h = LIST_FIRST(&c->refd);
        refd_del(h);
        h->c = NULL;
    }
}

/* obj.new KIND ARGS -> [name, the open's value]: the handle's name is the broker's. */
static int open_anon(mpb_client_t *c, mpb__any_t *h, unsigned op, uint32_t argc,
                     void (*fill)(mpb__buf_t *, const void *), const void *arg, const uint8_t **val,
                     size_t *vlen) {
    mpb__buf_t *b = mpb__req(c, MPB_OP_OBJ_NEW, NULL, 0, argc + 1);
    mpb__w_cstr(b, op_kind(op));
    if (fill) fill(b, arg);
    mpb__rd_t r;
    int rc = mpb__call_rd(c, 0, &r);
    if (rc) return rc;
    uint32_t two, nl;
    const char *nm;
    if (mpb__rd_array(&r, &two) || two != 2 || mpb__rd_str(&r, &nm, &nl) || !nl ||
        nl >= sizeof h->name || mpb__rd_span(&r, val, vlen))
        return mpb__fail(c, MPB_EPROTO, "malformed obj.new reply");
    memcpy(h->name, nm, nl);
    h->name[nl] = 0;
    h->namelen = nl;
    return 0;
}

int mpb__open_handle(mpb_client_t *c, const char *name, unsigned op, size_t size, uint32_t argc,
                     void (*fill)(mpb__buf_t *, const void *), const void *arg, const uint8_t **val,
                     size_t *vlen, void **out) {
    *out = NULL;
    if (!c) return MPB_EINVAL;
    if (name) {
        int rc = mpb__check_name(c, name);
        if (rc) return rc;
    }
    mpb__any_t *h = calloc(1, size);
    if (!h) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    h->c = c;
    h->kind_op = op;
    const uint8_t *v;
    size_t vn;
    if (!val) val = &v;
    if (!vlen) vlen = &vn;
    int rc;
    if (!name) {
        rc = open_anon(c, h, op, argc, fill, arg, val, vlen);
    } else {
        h->namelen = (uint32_t)strlen(name);
        memcpy(h->name, name, h->namelen + 1);
        /* An anonymous object's name: this handle keeps it alive too, first of all. */
        int64_t refs = name[0] == '~' ? mpb_ref(c, op_kind(op), name) : 0;
        rc = refs < 0 ? (int)refs : 0;
        if (!rc) {
            mpb__buf_t *b = mpb__req(c, op, name, h->namelen, argc);
            if (fill) fill(b, arg);
            rc = mpb__call(c, 0, val, vlen);
            if (rc && name[0] == '~') {
                char err[sizeof c->err];
                memcpy(err, c->err, sizeof err);
                mpb_unref(c, op_kind(op), name);
                memcpy(c->err, err, sizeof err);
            }
        }
    }
    if (rc) {
        free(h);
        return rc;
    }
    if (!name || name[0] == '~') refd_add(h);
    *out = h;
    return 0;
}

void mpb__close_handle(void **p) {
    mpb__any_t *h = *p;
    if (!h) return;
    *p = NULL;
    if (h->ref) {
        mpb_client_t *c = h->c;
        refd_del(h);
        /* Not from a forked child: the reference is its parent's session's. */
        if (c->gen == mpb__gen()) mpb_unref(c, op_kind(h->kind_op), h->name);
    }
    free(h);
}

#define NAME_FN(kind)                                                                              \
    const char *mpb_##kind##_name(const mpb_##kind##_t *h) {                                       \
        return h ? h->name : NULL;                                                                 \
    }
NAME_FN(dict)
NAME_FN(list)
NAME_FN(queue)
NAME_FN(lock)
NAME_FN(semaphore)
NAME_FN(condition)
NAME_FN(event)
NAME_FN(barrier)
NAME_FN(value)
NAME_FN(namespace)

/* ---- attached handles: filled in locally, nothing asked of the broker ---- */

int mpb__attach_handle(mpb_client_t *c, const char *name, size_t size, void **out) {
    *out = NULL;
    if (!c) return MPB_EINVAL;
    int rc = mpb__check_name(c, name);
    if (rc) return rc;
    mpb__any_t *h = calloc(1, size);
    if (!h) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    h->c = c;
    h->namelen = (uint32_t)strlen(name);
    memcpy(h->name, name, h->namelen + 1);
    *out = h;
    return 0;
}

/* ---- checks and replies ---- */

int mpb__check_name(mpb_client_t *c, const char *name) {
    if (!name || !mpb__name_ok(name, strlen(name)))
        return mpb__fail(c, MPB_EINVAL,
                         "bad object name '%s': 1 to 255 printable ASCII characters, no '/' or "
                         "space",
                         name ? name : "(null)");
    return 0;
}

/* Calls that answer nil. */
int mpb__call_nil(mpb_client_t *c, int block_ms) {
    const uint8_t *v;
    size_t n;
    return mpb__call(c, block_ms, &v, &n);
}

int mpb__call_rd(mpb_client_t *c, int block_ms, mpb__rd_t *r) {
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(c, block_ms, &v, &n);
    if (rc) return rc;
    *r = (mpb__rd_t){v, v + n};
    return 0;
}

int mpb__call_copy(mpb_client_t *c, int block_ms, void **out, size_t *outlen) {
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(c, block_ms, &v, &n);
    if (rc) return rc;
    return mpb__dup(c, v, n, out, outlen);
}

int mpb__call_uint(mpb_client_t *c, int block_ms, uint64_t *out) {
    mpb__rd_t r;
    int rc = mpb__call_rd(c, block_ms, &r);
    if (rc) return rc;
    if (mpb__rd_uint(&r, out)) return mpb__fail(c, MPB_EPROTO, "expected an integer reply");
    return 0;
}

int mpb__call_int(mpb_client_t *c, int block_ms, int64_t *out) {
    mpb__rd_t r;
    int rc = mpb__call_rd(c, block_ms, &r);
    if (rc) return rc;
    int64_t x = 0;
    if (mpb__rd_int(&r, &x)) return mpb__fail(c, MPB_EPROTO, "expected an integer reply");
    if (out) *out = x;
    return 0;
}

/* Checks caller-given msgpack before it goes on the wire. */
int mpb__check_val(mpb_client_t *c, const char *what, const void *p, size_t n) {
    if (!p || mpb__mp_check1(p, n, MPB__MAX_DEPTH) != (long)n)
        return mpb__fail(c, MPB_EINVAL, "%s is not one well-formed msgpack value", what);
    return 0;
}

/* Calls that answer a boolean: 1 or 0, or the error. */
int mpb__call_bool(mpb_client_t *c, int block_ms) {
    mpb__rd_t r;
    int rc = mpb__call_rd(c, block_ms, &r);
    if (rc) return rc;
    bool x;
    if (mpb__rd_bool(&r, &x)) return mpb__fail(c, MPB_EPROTO, "expected a boolean reply");
    return x;
}

/* ---- scalars out of a copied value ---- */

/* A value got by a call (freed here either way) as an int64 or a new C string. */
int mpb__take_i64(mpb_client_t *c, int rc, void *val, size_t vn, int64_t *out) {
    if (rc) return rc;
    int64_t x;
    rc = mpb_unpack_i64(val, vn, &x);
    free(val);
    if (rc) return mpb__fail(c, MPB_ETYPE, "the value is not an integer that fits int64");
    *out = x;
    return 0;
}

int mpb__take_str(mpb_client_t *c, int rc, void *val, size_t vn, char **out) {
    if (rc) return rc;
    const char *s;
    size_t sl;
    if (mpb_unpack_str(val, vn, &s, &sl)) {
        free(val);
        return mpb__fail(c, MPB_ETYPE, "the value is not a string");
    }
    char *copy = malloc(sl + 1);
    if (copy) {
        memcpy(copy, s, sl);
        copy[sl] = 0;
    }
    free(val);
    if (!copy) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    *out = copy;
    return 0;
}

/* ---- open arguments ---- */

void mpb__fill_nflag(mpb__buf_t *b, const void *arg) {
    const mpb__nflag_t *a = arg;
    if (a->n < 0)
        mpb__w_nil(b);
    else
        mpb__w_int(b, a->n);
    if (a->flag < 0)
        mpb__w_nil(b);
    else
        mpb__w_bool(b, a->flag != 0);
}
