/* bench_ops.c - the operations of each test, as a user's program makes them: -P 1 by the
 * blocking calls of the public API (sync_*), -P N by mpb_send() with callbacks that start the
 * slot's next operation (send_*); and the table of tests that names both. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static uint64_t rng_next(uint64_t *s) { /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Appends the msgpack key of the next operation ("key:__rand_int__" as redis-benchmark without
 * -r; "key:000000000123" with it) to b. */
int next_key(bclient_t *cl, const char *prefix, mpb_mpbuf_t *b) {
    bench_t *B = cl->B;
    char k[64];
    size_t pn = strlen(prefix), kn;
    memcpy(k, prefix, pn);
    k[pn] = ':';
    if (!B->keyspace) {
        memcpy(k + pn + 1, "__rand_int__", 12);
    } else {
        uint64_t i;
        if (B->sequential)
            i = ((uint64_t)cl->id + cl->issued * (uint64_t)B->clients) % B->keyspace;
        else
            i = rng_next(&cl->rng) % B->keyspace;
        /* twelve digits, as redis-benchmark writes them; not snprintf, which costs more than
         * the rest of building the request */
        for (int d = 11; d >= 0; d--, i /= 10)
            k[pn + 1 + (size_t)d] = (char)('0' + i % 10);
    }
    kn = pn + 13;
    return mpb_mp_str(b, k, kn);
}

/* mpb_send() of what b built, or the builder's failure (a buffer too small). */
static int send_built(bclient_t *cl, unsigned op, const char *name, const mpb_mpbuf_t *b,
                      mpb_callback_t cb, slot_t *s) {
    if (b->err) return b->err;
    return mpb_send(cl->c, op, name, b->data, b->len, cb, s);
}

/* Remembers the first failure's reason. */
static void note_why(bclient_t *cl, int rc) {
    if (!cl->firsterr[0])
        snprintf(cl->firsterr, sizeof cl->firsterr, "%s: %s", cl->c ? mpb_errmsg(cl->c) : "",
                 mpb_strerror(rc));
}

void note_error(bclient_t *cl, int rc) {
    cl->errors++;
    note_why(cl, rc);
}

/* May another operation start, now? (The caller's clock reading: one per operation.) */
bool may_issue(bclient_t *cl, int64_t now) {
    if (cl->dead || g_stop || cl->issued >= cl->quota) return false;
    return !cl->B->deadline || now < cl->B->deadline;
}

static int sync_dict_set(bclient_t *cl) {
    mpb_mpbuf_t k = args_over(cl->buf, cl->buflen);
    if (next_key(cl, "key", &k)) return k.err;
    return mpb_dict_set(cl->d, k.data, k.len, cl->B->val, cl->B->vallen);
}

static int sync_dict_get(bclient_t *cl) {
    mpb_mpbuf_t k = args_over(cl->buf, cl->buflen);
    if (next_key(cl, "key", &k)) return k.err;
    void *v = NULL;
    size_t vn;
    int rc = mpb_dict_get(cl->d, k.data, k.len, &v, &vn);
    mpb_free(v);
    if (rc == MPB_ENOKEY) {
        cl->misses++;
        rc = 0;
    }
    return rc;
}

static int sync_dict_incr(bclient_t *cl) {
    mpb_mpbuf_t k = args_over(cl->buf, cl->buflen);
    if (next_key(cl, "counter", &k)) return k.err;
    int64_t r;
    return mpb_dict_incr(cl->d, k.data, k.len, 1, &r);
}

static int sync_list_append(bclient_t *cl) {
    return mpb_list_append(cl->l, cl->B->val, cl->B->vallen);
}

static int sync_queue(bclient_t *cl) {
    int rc = mpb_queue_put(cl->q, cl->B->val, cl->B->vallen, BLOCK_MS);
    if (rc) return rc;
    void *v = NULL;
    size_t vn;
    rc = mpb_queue_get(cl->q, &v, &vn, BLOCK_MS);
    mpb_free(v);
    return rc;
}

static int sync_lock(bclient_t *cl) {
    int rc = mpb_lock_acquire(cl->lk, BLOCK_MS, NULL);
    if (rc) return rc;
    return mpb_lock_release(cl->lk);
}

static int sync_pool(bclient_t *cl) {
    uint8_t args[16];
    mpb_mpbuf_t b = args_over(args, sizeof args);
    mpb_mp_array(&b, 1);
    mpb_mp_u64(&b, cl->issued % 1000);
    if (b.err) return b.err;
    void *r = NULL;
    size_t rn;
    int rc = mpb_pool_apply(cl->pool, POOL_FN, b.data, b.len, BLOCK_MS, &r, &rn);
    mpb_free(r);
    return rc;
}

/* An operation finished (its last reply came): record it, start the slot's next one. */
static void slot_done(slot_t *s, int status) {
    bclient_t *cl = s->cl;
    int64_t t = now_ns();
    hist_add(&cl->h, (uint64_t)(t - s->t0));
    cl->done++;
    if (status == MPB_ENOKEY)
        cl->misses++;
    else if (status)
        note_error(cl, status);
    else if (s->failed)
        cl->errors++;
    s->busy = false;
    cl->busy--;
    cl->end_ns = t;
    slot_issue(s, t); /* the next operation starts as this one ends */
}

static void cb_done(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c, (void)val, (void)len;
    slot_done(arg, status);
}

/* The first request of a two-request operation (queue put, lock acquire). */
static void cb_first(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c, (void)val, (void)len;
    slot_t *s = arg;
    if (status) { /* counted once, when the operation ends */
        note_why(s->cl, status);
        s->failed = true;
    }
}

static int send_dict_set(slot_t *s) {
    bclient_t *cl = s->cl;
    mpb_mpbuf_t b = args_over(cl->buf, cl->buflen);
    mpb_mp_array(&b, 2);
    next_key(cl, "key", &b);
    mpb_mp_append(&b, cl->B->val, cl->B->vallen);
    return send_built(cl, MPB_OP_DICT_SET, DICT_NAME, &b, cb_done, s);
}

static int send_dict_get(slot_t *s) {
    bclient_t *cl = s->cl;
    mpb_mpbuf_t b = args_over(s->args, sizeof s->args);
    mpb_mp_array(&b, 1);
    next_key(cl, "key", &b);
    return send_built(cl, MPB_OP_DICT_GET, DICT_NAME, &b, cb_done, s);
}

static int send_dict_incr(slot_t *s) {
    bclient_t *cl = s->cl;
    mpb_mpbuf_t b = args_over(s->args, sizeof s->args);
    mpb_mp_array(&b, 2);
    next_key(cl, "counter", &b);
    mpb_mp_u64(&b, 1);
    return send_built(cl, MPB_OP_DICT_INCR, DICT_NAME, &b, cb_done, s);
}

static int send_list_append(slot_t *s) {
    bclient_t *cl = s->cl;
    mpb_mpbuf_t b = args_over(cl->buf, cl->buflen);
    mpb_mp_array(&b, 1);
    mpb_mp_append(&b, cl->B->val, cl->B->vallen);
    return send_built(cl, MPB_OP_LIST_APPEND, LIST_NAME, &b, cb_done, s);
}

/* put then get, sent together: one operation, one round trip. The queue is never empty when
 * a get is served, since each client's put is served before its get. */
/* queue.put alone (the queue grows for the test's length; it is deleted after it) */
static int sync_queue_put(bclient_t *cl) {
    return mpb_queue_put(cl->q, cl->B->val, cl->B->vallen, BLOCK_MS);
}

static mpb_mpbuf_t queue_put_args(bclient_t *cl) {
    mpb_mpbuf_t b = args_over(cl->buf, cl->buflen);
    mpb_mp_array(&b, 2);
    mpb_mp_append(&b, cl->B->val, cl->B->vallen);
    mpb_mp_u64(&b, BLOCK_MS);
    return b;
}

static int send_queue_put(slot_t *s) {
    mpb_mpbuf_t b = queue_put_args(s->cl);
    return send_built(s->cl, MPB_OP_QUEUE_PUT, QUEUE_NAME, &b, cb_done, s);
}

static int send_queue(slot_t *s) {
    bclient_t *cl = s->cl;
    mpb_mpbuf_t b = queue_put_args(cl);
    int rc = send_built(cl, MPB_OP_QUEUE_PUT, QUEUE_NAME, &b, cb_first, s);
    if (rc) return rc;
    b = args_over(s->args, sizeof s->args);
    mpb_mp_array(&b, 1);
    mpb_mp_u64(&b, BLOCK_MS);
    return send_built(cl, MPB_OP_QUEUE_GET, QUEUE_NAME, &b, cb_done, s);
}

/* acquire then release, sent together. Each slot has a lock of its own (no contention), so
 * the acquire is granted at once and the release that follows it finds it held. */
static int send_lock(slot_t *s) {
    bclient_t *cl = s->cl;
    char name[64];
    snprintf(name, sizeof name, LOCK_FMT, cl->id, s->idx);
    mpb_mpbuf_t b = args_over(s->args, sizeof s->args);
    mpb_mp_array(&b, 2);
    mpb_mp_u64(&b, (uint64_t)s->idx + 1);
    mpb_mp_u64(&b, BLOCK_MS);
    int rc = send_built(cl, MPB_OP_LOCK_ACQUIRE, name, &b, cb_first, s);
    if (rc) return rc;
    mpb_mp_clear(&b);
    mpb_mp_array(&b, 1);
    mpb_mp_u64(&b, (uint64_t)s->idx + 1);
    return send_built(cl, MPB_OP_LOCK_RELEASE, name, &b, cb_done, s);
}

static void pool_ok(void *arg, const void *result, size_t len) {
    (void)result, (void)len;
    slot_t *s = arg;
    mpb_async_free(&s->a);
    slot_done(s, 0);
}

static void pool_err(void *arg, int err, const char *msg) {
    slot_t *s = arg;
    bclient_t *cl = s->cl;
    if (!cl->firsterr[0]) snprintf(cl->firsterr, sizeof cl->firsterr, "%s", msg);
    mpb_async_free(&s->a);
    slot_done(s, err);
}

/* The task's submission is a round trip; its result comes back through the pool's one parked
 * pool.take, so P tasks are in flight at once. */
static int send_pool(slot_t *s) {
    bclient_t *cl = s->cl;
    mpb_mpbuf_t b = args_over(s->args, sizeof s->args);
    mpb_mp_array(&b, 1);
    mpb_mp_u64(&b, cl->issued % 1000);
    if (b.err) return b.err;
    return mpb_pool_apply_async(cl->pool, POOL_FN, b.data, b.len, pool_ok, pool_err, s, &s->a);
}

/* Starts the slot's next operation, if the budget allows. */
void slot_issue(slot_t *s, int64_t now) {
    bclient_t *cl = s->cl;
    if (!may_issue(cl, now)) return;
    s->busy = true;
    s->failed = false;
    cl->busy++;
    cl->issued++;
    s->t0 = now;
    int rc = cl->B->test->send_op(s);
    if (rc) { /* never sent: its callback will not run */
        s->busy = false;
        cl->busy--;
        cl->done++;
        note_error(cl, rc);
        if (rc == MPB_ECONN || rc == MPB_EFORK || rc == MPB_ENOMEM) cl->dead = true;
    }
}

const test_t bench_tests[BENCH_NTESTS] = {
    {"dict.set",             "set",    sync_dict_set,    send_dict_set,    false},
    {"dict.get",             "get",    sync_dict_get,    send_dict_get,    false},
    {"dict.incr",            "incr",   sync_dict_incr,   send_dict_incr,   false},
    {"list.append",          "append", sync_list_append, send_list_append, false},
    {"queue.put+get",        "queue",  sync_queue,       send_queue,       false},
    {"lock.acquire+release", "lock",   sync_lock,        send_lock,        false},
    {"pool.apply",           "pool",   sync_pool,        send_pool,        true },
    {"queue.put",            "put",    sync_queue_put,   send_queue_put,   false},
};
