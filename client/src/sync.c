/* sync.c - queues and the synchronisation kinds. Blocking calls send their timeout to the
 * broker, which parks them; the client only waits for the answer (heartbeating meanwhile). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* All handles share one layout (MPB__HANDLE); this is it, for code common to all kinds. */
struct mpb_any { MPB__HANDLE };
typedef struct mpb_any any_t;

static int64_t ms_arg(int timeout_ms) {
    return timeout_ms < 0 ? -1 : timeout_ms;
}

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
    const uint8_t *v;
    size_t vn;
    int rc = mpb__call(c, 0, &v, &vn);
    if (rc) return rc;
    mpb__rd_t r = {v, v + vn};
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
    if (lock) pthread_mutex_lock(&c->mu);
    else pthread_mutex_unlock(&c->mu);
}

static void refd_add(any_t *h) {
    refd_lock(h->c, true);
    h->ref = true;
    h->rprev = NULL;
    h->rnext = h->c->refd;
    if (h->rnext) ((any_t *)h->rnext)->rprev = h;
    h->c->refd = h;
    refd_lock(h->c, false);
}

static void refd_del(any_t *h) {
    refd_lock(h->c, true);
    if (h->rprev)
        ((any_t *)h->rprev)->rnext = h->rnext;
    else
        h->c->refd = h->rnext;
    if (h->rnext) ((any_t *)h->rnext)->rprev = h->rprev;
    h->ref = false;
    refd_lock(h->c, false);
}

void mpb__anon_detach(mpb_client_t *c) {
    while (c->refd) {
        any_t *h = c->refd;
        refd_del(h);
        h->c = NULL;
    }
}

/* obj.new KIND ARGS -> [name, the open's value]: the handle's name is the broker's. */
static int open_anon(mpb_client_t *c, any_t *h, unsigned op, uint32_t argc,
                     void (*fill)(mpb__buf_t *, const void *), const void *arg, const uint8_t **val,
                     size_t *vlen) {
    mpb__buf_t *b = mpb__req(c, MPB_OP_OBJ_NEW, NULL, 0, argc + 1);
    mpb__w_cstr(b, op_kind(op));
    if (fill) fill(b, arg);
    const uint8_t *v;
    size_t vn;
    int rc = mpb__call(c, 0, &v, &vn);
    if (rc) return rc;
    mpb__rd_t r = {v, v + vn};
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
    if (name && !mpb__name_ok(name, strlen(name)))
        return mpb__fail(c, MPB_EINVAL,
                         "bad object name '%s': 1 to 255 printable ASCII characters, no '/' or "
                         "space",
                         name);
    any_t *h = calloc(1, size);
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
    any_t *h = *p;
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

#define H(x) ((any_t *)(x))
#define REQ(h, op, argc) mpb__buf_t *b = mpb__req(H(h)->c, op, H(h)->name, H(h)->namelen, argc)

static int done(any_t *h, int block_ms) {
    const uint8_t *v;
    size_t n;
    return mpb__call(h->c, block_ms, &v, &n);
}

static int done_bool(any_t *h, int block_ms) {
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(h->c, block_ms, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    bool x;
    if (mpb__rd_bool(&r, &x)) return mpb__fail(h->c, MPB_EPROTO, "expected a boolean reply");
    return x;
}

static int done_int(any_t *h, int block_ms, int64_t *out) {
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(h->c, block_ms, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    int64_t x = 0;
    if (mpb__rd_int(&r, &x)) return mpb__fail(h->c, MPB_EPROTO, "expected an integer reply");
    if (out) *out = x;
    return 0;
}

static int done_copy(any_t *h, int block_ms, void **val, size_t *vlen) {
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(h->c, block_ms, &v, &n);
    if (rc) return rc;
    return mpb__dup(h->c, v, n, val, vlen);
}

static int check_val(any_t *h, const void *p, size_t n) {
    if (!p || mpb__mp_check1(p, n, MPB__MAX_DEPTH) != (long)n)
        return mpb__fail(h->c, MPB_EINVAL, "value is not one well-formed msgpack value");
    return 0;
}

static void close_handle(void **p) {
    mpb__close_handle(p);
}

/* ---- queue ---- */

typedef struct {
    int64_t maxsize;
    int joinable;
} qargs_t;

static void fill_queue(mpb__buf_t *b, const void *arg) {
    const qargs_t *a = arg;
    if (a->maxsize < 0) mpb__w_nil(b);
    else mpb__w_int(b, a->maxsize);
    if (a->joinable < 0) mpb__w_nil(b);
    else mpb__w_bool(b, a->joinable != 0);
}

static void fill_queue_reliable(mpb__buf_t *b, const void *arg) {
    fill_queue(b, arg);
    mpb__w_bool(b, true);
}

int mpb_queue_open(mpb_client_t *c, const char *name, int64_t maxsize, int joinable,
                   mpb_queue_t **out) {
    qargs_t a = {maxsize, joinable};
    return mpb__open_handle(c, name, MPB_OP_QUEUE_OPEN, sizeof **out, 2, fill_queue, &a, NULL, NULL,
                            (void **)out);
}

void mpb_queue_close(mpb_queue_t **q) {
    close_handle((void **)q);
}

int mpb_queue_put(mpb_queue_t *q, const void *val, size_t vlen, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    if (check_val(H(q), val, vlen)) return MPB_EINVAL;
    REQ(q, MPB_OP_QUEUE_PUT, 2);
    mpb__w_raw(b, val, vlen);
    mpb__w_int(b, ms_arg(timeout_ms));
    return done(H(q), timeout_ms);
}

int mpb_queue_get(mpb_queue_t *q, void **val, size_t *vlen, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    REQ(q, MPB_OP_QUEUE_GET, 1);
    mpb__w_int(b, ms_arg(timeout_ms));
    return done_copy(H(q), timeout_ms, val, vlen);
}

int mpb_queue_put_async(mpb_queue_t *q, const void *val, size_t vlen, int timeout_ms,
                        mpb_callback_t cb, void *arg) {
    if (!q) return MPB_EINVAL;
    if (check_val(H(q), val, vlen)) return MPB_EINVAL;
    REQ(q, MPB_OP_QUEUE_PUT, 2);
    mpb__w_raw(b, val, vlen);
    mpb__w_int(b, ms_arg(timeout_ms));
    return mpb__send(q->c, cb, arg);
}

int mpb_queue_get_async(mpb_queue_t *q, int timeout_ms, mpb_callback_t cb, void *arg) {
    if (!q) return MPB_EINVAL;
    REQ(q, MPB_OP_QUEUE_GET, 1);
    mpb__w_int(b, ms_arg(timeout_ms));
    return mpb__send(q->c, cb, arg);
}

int mpb_queue_qsize(mpb_queue_t *q, uint64_t *n) {
    if (!q) return MPB_EINVAL;
    REQ(q, MPB_OP_QUEUE_QSIZE, 0);
    (void)b;
    int64_t x = 0;
    int rc = done_int(H(q), 0, &x);
    if (!rc) *n = (uint64_t)x;
    return rc;
}

int mpb_queue_empty(mpb_queue_t *q) {
    if (!q) return MPB_EINVAL;
    REQ(q, MPB_OP_QUEUE_EMPTY, 0);
    (void)b;
    return done_bool(H(q), 0);
}

int mpb_queue_full(mpb_queue_t *q) {
    if (!q) return MPB_EINVAL;
    REQ(q, MPB_OP_QUEUE_FULL, 0);
    (void)b;
    return done_bool(H(q), 0);
}

int mpb_queue_task_done(mpb_queue_t *q) {
    if (!q) return MPB_EINVAL;
    REQ(q, MPB_OP_QUEUE_TASK_DONE, 0);
    (void)b;
    return done(H(q), 0);
}

int mpb_queue_open_reliable(mpb_client_t *c, const char *name, int64_t maxsize, int joinable,
                            mpb_queue_t **out) {
    qargs_t a = {maxsize, joinable};
    return mpb__open_handle(c, name, MPB_OP_QUEUE_OPEN, sizeof **out, 3, fill_queue_reliable, &a,
                       NULL, NULL, (void **)out);
}

int mpb_queue_get_tracked(mpb_queue_t *q, void **val, size_t *vlen, uint64_t *delivery,
                          int timeout_ms) {
    if (!q) return MPB_EINVAL;
    REQ(q, MPB_OP_QUEUE_GET, 2);
    mpb__w_int(b, ms_arg(timeout_ms));
    mpb__w_bool(b, true);
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(H(q)->c, timeout_ms, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    uint32_t len;
    uint64_t id;
    const uint8_t *item;
    size_t il;
    if (mpb__rd_array(&r, &len) || len != 2 || mpb__rd_uint(&r, &id) ||
        mpb__rd_span(&r, &item, &il))
        return mpb__fail(H(q)->c, MPB_EPROTO, "expected [delivery id, item]");
    if (delivery) *delivery = id;
    return mpb__dup(H(q)->c, item, il, val, vlen);
}

int mpb_queue_task_done_id(mpb_queue_t *q, uint64_t delivery) {
    if (!q) return MPB_EINVAL;
    REQ(q, MPB_OP_QUEUE_TASK_DONE, 1);
    mpb__w_uint(b, delivery);
    return done(H(q), 0);
}

int mpb_queue_join(mpb_queue_t *q, int timeout_ms) {
    if (!q) return MPB_EINVAL;
    REQ(q, MPB_OP_QUEUE_JOIN, 1);
    mpb__w_int(b, ms_arg(timeout_ms));
    return done(H(q), timeout_ms);
}

/* ---- locks ---- */

static uint64_t thread_id(const any_t *h) {
    return h->tid ? h->tid : (uint64_t)syscall(SYS_gettid);
}

int mpb_lock_open(mpb_client_t *c, const char *name, mpb_lock_t **out) {
    return mpb__open_handle(c, name, MPB_OP_LOCK_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

int mpb_rlock_open(mpb_client_t *c, const char *name, mpb_lock_t **out) {
    return mpb__open_handle(c, name, MPB_OP_RLOCK_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

void mpb_lock_close(mpb_lock_t **l) {
    close_handle((void **)l);
}

void mpb_lock_set_thread(mpb_lock_t *l, uint64_t tid) {
    if (!l) return;
    l->tid = tid;
}

static bool is_rlock(const any_t *h) {
    return h->kind_op == MPB_OP_RLOCK_OPEN;
}

static int lock_acquire(any_t *h, const char *name, uint32_t nl, bool rlock, int timeout_ms,
                        uint64_t *fence) {
    mpb__buf_t *b = mpb__req(h->c, rlock ? MPB_OP_RLOCK_ACQUIRE : MPB_OP_LOCK_ACQUIRE, name, nl, 2);
    mpb__w_uint(b, thread_id(h));
    mpb__w_int(b, ms_arg(timeout_ms));
    int64_t f = 0;
    int rc = done_int(h, timeout_ms, &f);
    if (!rc && fence) *fence = (uint64_t)f;
    if (!rc) mpb__lock_held(h->c, rlock ? "rlock" : "lock", name, +1);
    return rc;
}

static int lock_release(any_t *h, const char *name, uint32_t nl, bool rlock) {
    mpb__buf_t *b = mpb__req(h->c, rlock ? MPB_OP_RLOCK_RELEASE : MPB_OP_LOCK_RELEASE, name, nl, 1);
    mpb__w_uint(b, thread_id(h));
    int rc = done(h, 0);
    if (!rc) mpb__lock_held(h->c, rlock ? "rlock" : "lock", name, -1);
    return rc;
}

int mpb_lock_acquire(mpb_lock_t *l, int timeout_ms, uint64_t *fence) {
    if (!l) return MPB_EINVAL;
    return lock_acquire(H(l), l->name, l->namelen, is_rlock(H(l)), timeout_ms, fence);
}

int mpb_lock_release(mpb_lock_t *l) {
    if (!l) return MPB_EINVAL;
    return lock_release(H(l), l->name, l->namelen, is_rlock(H(l)));
}

int mpb_lock_locked(mpb_lock_t *l) {
    if (!l) return MPB_EINVAL;
    REQ(l, is_rlock(H(l)) ? MPB_OP_RLOCK_LOCKED : MPB_OP_LOCK_LOCKED, 0);
    (void)b;
    return done_bool(H(l), 0);
}

/* ---- semaphore ---- */

static void fill_sem(mpb__buf_t *b, const void *arg) {
    const qargs_t *a = arg;
    if (a->maxsize < 0) mpb__w_nil(b);
    else mpb__w_int(b, a->maxsize);
    if (a->joinable < 0) mpb__w_nil(b);
    else mpb__w_bool(b, a->joinable != 0);
}

int mpb_semaphore_open(mpb_client_t *c, const char *name, int64_t value, int bounded,
                       mpb_semaphore_t **out) {
    qargs_t a = {value, bounded};
    return mpb__open_handle(c, name, MPB_OP_SEM_OPEN, sizeof **out, 2, fill_sem, &a, NULL, NULL,
                            (void **)out);
}

void mpb_semaphore_close(mpb_semaphore_t **s) {
    close_handle((void **)s);
}

int mpb_semaphore_acquire_fenced(mpb_semaphore_t *s, int timeout_ms, uint64_t *fence) {
    if (!s) return MPB_EINVAL;
    REQ(s, MPB_OP_SEM_ACQUIRE, 1);
    mpb__w_int(b, ms_arg(timeout_ms));
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(H(s)->c, timeout_ms, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    if (fence && mpb__rd_uint(&r, fence)) *fence = 0; /* a broker before tokens answers nil */
    return 0;
}

int mpb_semaphore_acquire(mpb_semaphore_t *s, int timeout_ms) {
    if (!s) return MPB_EINVAL;
    return mpb_semaphore_acquire_fenced(s, timeout_ms, NULL);
}

int mpb_semaphore_release(mpb_semaphore_t *s, int64_t n) {
    if (!s) return MPB_EINVAL;
    REQ(s, MPB_OP_SEM_RELEASE, 1);
    mpb__w_int(b, n);
    return done(H(s), 0);
}

int mpb_semaphore_value(mpb_semaphore_t *s, int64_t *value) {
    if (!s) return MPB_EINVAL;
    REQ(s, MPB_OP_SEM_VALUE, 0);
    (void)b;
    return done_int(H(s), 0, value);
}

/* ---- condition ---- */

static void fill_str(mpb__buf_t *b, const void *arg) {
    if (arg) mpb__w_cstr(b, arg);
    else mpb__w_nil(b);
}

int mpb_condition_open(mpb_client_t *c, const char *name, const char *lockpath,
                       mpb_condition_t **out) {
    const uint8_t *v;
    size_t vn;
    int rc = mpb__open_handle(c, name, MPB_OP_COND_OPEN, sizeof **out, 1, fill_str, lockpath, &v,
                              &vn, (void **)out);
    if (rc) return rc;
    mpb__rd_t r = {v, v + vn};
    const char *s;
    uint32_t sl;
    if (mpb__rd_str(&r, &s, &sl) || sl >= sizeof (*out)->lock || !memchr(s, '/', sl)) {
        mpb_condition_close(out);
        return mpb__fail(c, MPB_EPROTO, "malformed condition.open reply");
    }
    memcpy((*out)->lock, s, sl);
    (*out)->lock[sl] = 0;
    return 0;
}

void mpb_condition_close(mpb_condition_t **cv) {
    close_handle((void **)cv);
}

static const char *cv_lockname(mpb_condition_t *cv, bool *rlock) {
    *rlock = !strncmp(cv->lock, "rlock/", 6);
    return strchr(cv->lock, '/') + 1;
}

int mpb_condition_acquire(mpb_condition_t *cv, int timeout_ms, uint64_t *fence) {
    if (!cv) return MPB_EINVAL;
    bool rl;
    const char *n = cv_lockname(cv, &rl);
    return lock_acquire(H(cv), n, (uint32_t)strlen(n), rl, timeout_ms, fence);
}

int mpb_condition_release(mpb_condition_t *cv) {
    if (!cv) return MPB_EINVAL;
    bool rl;
    const char *n = cv_lockname(cv, &rl);
    return lock_release(H(cv), n, (uint32_t)strlen(n), rl);
}

int mpb_condition_wait(mpb_condition_t *cv, int timeout_ms) {
    if (!cv) return MPB_EINVAL;
    REQ(cv, MPB_OP_COND_WAIT, 2);
    mpb__w_uint(b, thread_id(H(cv)));
    mpb__w_int(b, ms_arg(timeout_ms));
    /* the answer may wait for the lock after the timeout: no client-side bound beyond that */
    return done_bool(H(cv), MPB_FOREVER);
}

int mpb_condition_wait_for(mpb_condition_t *cv, int (*pred)(void *arg), void *arg,
                           int timeout_ms) {
    if (!cv || !pred) return MPB_EINVAL;
    int64_t end = timeout_ms < 0 ? INT64_MAX : mpb__now_ms() + timeout_ms;
    int ok = pred(arg);
    while (!ok) {
        int64_t left = end == INT64_MAX ? -1 : end - mpb__now_ms();
        if (end != INT64_MAX && left <= 0) break;
        int rc = mpb_condition_wait(cv, (int)left);
        if (rc < 0) return rc;
        ok = pred(arg);
    }
    return ok ? 1 : 0;
}

int mpb_condition_notify(mpb_condition_t *cv, int n) {
    if (!cv) return MPB_EINVAL;
    REQ(cv, MPB_OP_COND_NOTIFY, 2);
    mpb__w_uint(b, thread_id(H(cv)));
    mpb__w_int(b, n);
    int64_t woken = 0;
    int rc = done_int(H(cv), 0, &woken);
    return rc ? rc : (int)woken;
}

int mpb_condition_notify_all(mpb_condition_t *cv) {
    if (!cv) return MPB_EINVAL;
    return mpb_condition_notify(cv, -1);
}

/* ---- event ---- */

int mpb_event_open(mpb_client_t *c, const char *name, mpb_event_t **out) {
    return mpb__open_handle(c, name, MPB_OP_EVENT_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

void mpb_event_close(mpb_event_t **e) {
    close_handle((void **)e);
}

int mpb_event_set(mpb_event_t *e) {
    if (!e) return MPB_EINVAL;
    REQ(e, MPB_OP_EVENT_SET, 0);
    (void)b;
    return done(H(e), 0);
}

int mpb_event_clear(mpb_event_t *e) {
    if (!e) return MPB_EINVAL;
    REQ(e, MPB_OP_EVENT_CLEAR, 0);
    (void)b;
    return done(H(e), 0);
}

int mpb_event_is_set(mpb_event_t *e) {
    if (!e) return MPB_EINVAL;
    REQ(e, MPB_OP_EVENT_IS_SET, 0);
    (void)b;
    return done_bool(H(e), 0);
}

int mpb_event_wait(mpb_event_t *e, int timeout_ms) {
    if (!e) return MPB_EINVAL;
    REQ(e, MPB_OP_EVENT_WAIT, 1);
    mpb__w_int(b, ms_arg(timeout_ms));
    return done_bool(H(e), timeout_ms);
}

/* ---- barrier ---- */

typedef struct {
    int64_t parties;
    int timeout_ms;
} bargs_t;

static void fill_barrier(mpb__buf_t *b, const void *arg) {
    const bargs_t *a = arg;
    if (a->parties <= 0) mpb__w_nil(b);
    else mpb__w_int(b, a->parties);
    mpb__w_int(b, a->timeout_ms < 0 ? -1 : a->timeout_ms);
}

int mpb_barrier_open(mpb_client_t *c, const char *name, int64_t parties, int timeout_ms,
                     mpb_barrier_t **out) {
    bargs_t a = {parties, timeout_ms};
    return mpb__open_handle(c, name, MPB_OP_BARRIER_OPEN, sizeof **out, 2, fill_barrier, &a, NULL,
                            NULL, (void **)out);
}

void mpb_barrier_close(mpb_barrier_t **b) {
    close_handle((void **)b);
}

int mpb_barrier_wait(mpb_barrier_t *br, int timeout_ms, int64_t *index) {
    if (!br) return MPB_EINVAL;
    REQ(br, MPB_OP_BARRIER_WAIT, 1);
    mpb__w_int(b, ms_arg(timeout_ms));
    /* MPB_FOREVER may mean the barrier's own timeout, which the broker applies */
    return done_int(H(br), timeout_ms, index);
}

int mpb_barrier_reset(mpb_barrier_t *br) {
    if (!br) return MPB_EINVAL;
    REQ(br, MPB_OP_BARRIER_RESET, 0);
    (void)b;
    return done(H(br), 0);
}

int mpb_barrier_abort(mpb_barrier_t *br) {
    if (!br) return MPB_EINVAL;
    REQ(br, MPB_OP_BARRIER_ABORT, 0);
    (void)b;
    return done(H(br), 0);
}

int mpb_barrier_state(mpb_barrier_t *br, int64_t *parties, int64_t *n_waiting, int *broken) {
    if (!br) return MPB_EINVAL;
    REQ(br, MPB_OP_BARRIER_STATE, 0);
    (void)b;
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(br->c, 0, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    uint32_t three;
    int64_t p, w;
    bool bk;
    if (mpb__rd_array(&r, &three) || three != 3 || mpb__rd_int(&r, &p) || mpb__rd_int(&r, &w) ||
        mpb__rd_bool(&r, &bk))
        return mpb__fail(br->c, MPB_EPROTO, "malformed barrier.state reply");
    if (parties) *parties = p;
    if (n_waiting) *n_waiting = w;
    if (broken) *broken = bk;
    return 0;
}

/* ---- value ---- */

typedef struct {
    const void *p;
    size_t n;
} raw_t;

static void fill_raw(mpb__buf_t *b, const void *arg) {
    const raw_t *r = arg;
    if (r->p) mpb__w_raw(b, r->p, r->n);
    else mpb__w_nil(b);
}

int mpb_value_open(mpb_client_t *c, const char *name, const void *initial, size_t len,
                   mpb_value_t **out) {
    if (initial && (mpb__mp_check1(initial, len, MPB__MAX_DEPTH) != (long)len))
        return mpb__fail(c, MPB_EINVAL, "initial is not one well-formed msgpack value");
    raw_t a = {initial, len};
    return mpb__open_handle(c, name, MPB_OP_VALUE_OPEN, sizeof **out, 1, fill_raw, &a, NULL, NULL,
                            (void **)out);
}

void mpb_value_close(mpb_value_t **v) {
    close_handle((void **)v);
}

int mpb_value_get(mpb_value_t *v, void **val, size_t *vlen) {
    if (!v) return MPB_EINVAL;
    REQ(v, MPB_OP_VALUE_GET, 0);
    (void)b;
    return done_copy(H(v), 0, val, vlen);
}

int mpb_value_set(mpb_value_t *v, const void *val, size_t vlen) {
    if (!v) return MPB_EINVAL;
    if (check_val(H(v), val, vlen)) return MPB_EINVAL;
    REQ(v, MPB_OP_VALUE_SET, 1);
    mpb__w_raw(b, val, vlen);
    return done(H(v), 0);
}

int mpb_value_get_i64(mpb_value_t *v, int64_t *out) {
    if (!v) return MPB_EINVAL;
    REQ(v, MPB_OP_VALUE_GET, 0);
    (void)b;
    int rc = done_int(H(v), 0, out);
    if (rc == MPB_EPROTO) return mpb__fail(v->c, MPB_ETYPE, "value/%s is not an integer", v->name);
    return rc;
}

int mpb_value_set_i64(mpb_value_t *v, int64_t x) {
    if (!v) return MPB_EINVAL;
    uint8_t enc[MPB_PACK_MAX_SCALAR];
    return mpb_value_set(v, enc, mpb_pack_i64(enc, x));
}

int mpb_value_add_i64(mpb_value_t *v, int64_t by, int64_t *result) {
    if (!v) return MPB_EINVAL;
    REQ(v, MPB_OP_VALUE_ADD, 2);
    mpb__w_int(b, by);
    mpb__w_bool(b, true);
    int rc = done_int(H(v), 0, result);
    if (rc == MPB_EPROTO) return mpb__fail(v->c, MPB_ETYPE, "value/%s is not an integer", v->name);
    return rc;
}

int mpb_value_add_double(mpb_value_t *v, double by, double *result) {
    if (!v) return MPB_EINVAL;
    REQ(v, MPB_OP_VALUE_ADD, 1);
    mpb__w_double(b, by);
    const uint8_t *p;
    size_t n;
    int rc = mpb__call(v->c, 0, &p, &n);
    if (rc) return rc;
    mpb__rd_t r = {p, p + n};
    double d;
    if (mpb__rd_double(&r, &d)) return mpb__fail(v->c, MPB_EPROTO, "expected a number");
    if (result) *result = d;
    return 0;
}

/* ---- namespace ---- */

int mpb_namespace_open(mpb_client_t *c, const char *name, mpb_namespace_t **out) {
    return mpb__open_handle(c, name, MPB_OP_NS_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

void mpb_namespace_close(mpb_namespace_t **ns) {
    close_handle((void **)ns);
}

static int check_attr(any_t *h, const char *attr) {
    if (!attr || !*attr || strlen(attr) > 255)
        return mpb__fail(h->c, MPB_EINVAL, "attribute names are 1 to 255 bytes");
    return 0;
}

int mpb_namespace_get(mpb_namespace_t *ns, const char *attr, void **val, size_t *vlen) {
    if (!ns) return MPB_EINVAL;
    if (check_attr(H(ns), attr)) return MPB_EINVAL;
    REQ(ns, MPB_OP_NS_GET, 1);
    mpb__w_cstr(b, attr);
    return done_copy(H(ns), 0, val, vlen);
}

int mpb_namespace_set(mpb_namespace_t *ns, const char *attr, const void *val, size_t vlen) {
    if (!ns) return MPB_EINVAL;
    if (check_attr(H(ns), attr) || check_val(H(ns), val, vlen)) return MPB_EINVAL;
    REQ(ns, MPB_OP_NS_SET, 2);
    mpb__w_cstr(b, attr);
    mpb__w_raw(b, val, vlen);
    return done(H(ns), 0);
}

int mpb_namespace_del(mpb_namespace_t *ns, const char *attr) {
    if (!ns) return MPB_EINVAL;
    if (check_attr(H(ns), attr)) return MPB_EINVAL;
    REQ(ns, MPB_OP_NS_DEL, 1);
    mpb__w_cstr(b, attr);
    return done(H(ns), 0);
}

int mpb_namespace_list(mpb_namespace_t *ns, void **map, size_t *len) {
    if (!ns) return MPB_EINVAL;
    REQ(ns, MPB_OP_NS_LIST, 0);
    (void)b;
    return done_copy(H(ns), 0, map, len);
}
