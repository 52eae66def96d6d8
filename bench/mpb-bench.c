/* mpb-bench.c - mpbroker's load generator, modelled on redis-benchmark: -c clients (each its own
 * connection and mpb_client_t), -n requests, -P requests in flight per client, -d value bytes,
 * -r key space, -t tests; human, --csv (redis-benchmark's columns) or --json output.
 *
 * It drives the broker through the public header only, as a user's program would: -P 1 makes
 * synchronous calls (mpb_dict_set, ...), one thread per client; -P N keeps N operations in
 * flight per client with mpb_send() and callbacks, and the library coalesces what is queued
 * together into one ZeroMQ message. Latency is measured per operation, from the call (or
 * mpb_send) to its return (or callback).
 *
 * The same harness can drive a bare ZeroMQ ROUTER/DEALER echo (--echo EP), which mpb-bench
 * also serves (--serve-echo EP): frames the size of a dict.get request, P separate messages in
 * flight, no authentication. That is the transport's own limit, what any ZeroMQ broker pays
 * before it does any work.
 *
 *   main: connect -c clients ──> per test: prepare ──> harness threads ──> merge histograms
 *   harness thread: -P 1: one client, blocking calls;  -P N: its clients' fds in one poll(),
 *                   replies run callbacks, each callback issues that slot's next operation. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include <mpb/mpb.h>
#include <mpb/ops.h>

#include "clock.h"


#define DICT_NAME  "bench"
#define LIST_NAME  "bench-list"
#define QUEUE_NAME "bench-queue"
#define LOCK_FMT   "bench-lock-%d-%d"
#define POOL_FN    "square"
#define BLOCK_MS   10000 /* how long a queue.get / lock.acquire may park: never, in these tests */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mpb-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) die("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

/* ---- msgpack, just what the requests need ---- */

static size_t mp_array(uint8_t *p, uint32_t n) {
    if (n < 16) {
        p[0] = (uint8_t)(0x90 | n);
        return 1;
    }
    p[0] = 0xdc;
    p[1] = (uint8_t)(n >> 8);
    p[2] = (uint8_t)n;
    return 3;
}

static size_t mp_uint(uint8_t *p, uint64_t v) {
    if (v < 128) {
        p[0] = (uint8_t)v;
        return 1;
    }
    if (v < 256) {
        p[0] = 0xcc;
        p[1] = (uint8_t)v;
        return 2;
    }
    if (v < 65536) {
        p[0] = 0xcd;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)v;
        return 3;
    }
    if (v <= 0xffffffffu) {
        p[0] = 0xce;
        for (int i = 0; i < 4; i++) p[1 + i] = (uint8_t)(v >> (24 - 8 * i));
        return 5;
    }
    p[0] = 0xcf;
    for (int i = 0; i < 8; i++) p[1 + i] = (uint8_t)(v >> (56 - 8 * i));
    return 9;
}

static size_t mp_str(uint8_t *p, const char *s, size_t n) {
    size_t h;
    if (n < 32) {
        p[0] = (uint8_t)(0xa0 | n);
        h = 1;
    } else if (n < 256) {
        p[0] = 0xd9;
        p[1] = (uint8_t)n;
        h = 2;
    } else {
        p[0] = 0xda;
        p[1] = (uint8_t)(n >> 8);
        p[2] = (uint8_t)n;
        h = 3;
    }
    memcpy(p + h, s, n);
    return h + n;
}

/* bin header for n bytes; the caller writes the bytes */
static size_t mp_bin_hdr(uint8_t *p, size_t n) {
    if (n < 256) {
        p[0] = 0xc4;
        p[1] = (uint8_t)n;
        return 2;
    }
    if (n < 65536) {
        p[0] = 0xc5;
        p[1] = (uint8_t)(n >> 8);
        p[2] = (uint8_t)n;
        return 3;
    }
    p[0] = 0xc6;
    for (int i = 0; i < 4; i++) p[1 + i] = (uint8_t)(n >> (24 - 8 * i));
    return 5;
}

/* The first unsigned integer of a msgpack array (pool.fninfo's worker count), or -1. */
static int64_t mp_first_uint(const uint8_t *p, size_t n) {
    if (n < 2) return -1;
    size_t i;
    if ((p[0] & 0xf0) == 0x90) i = 1;
    else if (p[0] == 0xdc && n >= 4) i = 3;
    else return -1;
    if (p[i] < 128) return p[i];
    if (p[i] == 0xcc && n > i + 1) return p[i + 1];
    if (p[i] == 0xcd && n > i + 2) return (p[i + 1] << 8) | p[i + 2];
    if (p[i] == 0xce && n > i + 4)
        return ((int64_t)p[i + 1] << 24) | (p[i + 2] << 16) | (p[i + 3] << 8) | p[i + 4];
    return -1;
}

/* ---- latency histogram: log-linear, 1/128 relative precision, in nanoseconds ----
 *
 *   v < 128:  bucket v (exact)
 *   v >= 128: e = index of v's top bit, m = the 7 bits below it: bucket (e - 6) * 128 + m
 */

#define HSUB   128
#define HSLOTS ((64 - 6) * HSUB)

typedef struct hist {
    uint64_t count, sum, min, max;
    uint32_t *b; /* HSLOTS */
} hist_t;

static void hist_init(hist_t *h) {
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
    h->b = xcalloc(HSLOTS, sizeof *h->b);
}

static void hist_free(hist_t *h) {
    free(h->b);
    h->b = NULL;
}

static void hist_clear(hist_t *h) {
    uint32_t *b = h->b;
    memset(b, 0, HSLOTS * sizeof *b);
    memset(h, 0, sizeof *h);
    h->b = b;
    h->min = UINT64_MAX;
}

static size_t hist_index(uint64_t v) {
    if (v < HSUB) return (size_t)v;
    int e = 63 - __builtin_clzll(v);
    return (size_t)(e - 6) * HSUB + (size_t)((v >> (e - 7)) & (HSUB - 1));
}

/* The middle of bucket i. */
static uint64_t hist_value(size_t i) {
    if (i < HSUB) return i;
    int e = (int)(i / HSUB) + 6;
    uint64_t lo = (uint64_t)(HSUB + i % HSUB) << (e - 7);
    return lo + ((1ull << (e - 7)) >> 1);
}

static inline void hist_add(hist_t *h, uint64_t v) {
    h->count++;
    h->sum += v;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    h->b[hist_index(v)]++;
}

static void hist_merge(hist_t *into, const hist_t *h) {
    if (!h->count) return;
    into->count += h->count;
    into->sum += h->sum;
    if (h->min < into->min) into->min = h->min;
    if (h->max > into->max) into->max = h->max;
    for (size_t i = 0; i < HSLOTS; i++) into->b[i] += h->b[i];
}

/* The q-quantile (0 < q <= 1), clamped to the exact min and max. */
static uint64_t hist_quantile(const hist_t *h, double q) {
    if (!h->count) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HSLOTS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = hist_value(i);
            if (v < h->min) v = h->min;
            if (v > h->max) v = h->max;
            return v;
        }
    }
    return h->max;
}

/* ---- the benchmark ---- */

typedef struct bench bench_t;
typedef struct bclient bclient_t;

typedef struct slot {
    bclient_t *cl;
    int idx;
    int64_t t0;
    bool busy, failed;
    mpb_async_t *a; /* pool.apply */
    uint8_t args[64];
} slot_t;

struct bclient {
    bench_t *B;
    int id;
    mpb_client_t *c;
    void *sock; /* --echo */
    int fd;
    bool dead;
    /* per test */
    mpb_dict_t *d;
    mpb_list_t *l;
    mpb_queue_t *q;
    mpb_lock_t *lk;
    mpb_pool_t *pool;
    slot_t *slots;
    int busy;                          /* slots with an operation in flight */
    uint64_t quota, issued, done, errors, misses;
    uint64_t rng;
    int64_t end_ns;
    hist_t h;
    char firsterr[200];
    uint8_t *buf; /* argument buffer (sync: key, value; echo: the frame) */
    size_t buflen;
};

typedef struct test {
    const char *name;
    const char *alias;
    int (*sync_op)(bclient_t *cl);  /* one operation by blocking calls; 0 or an error */
    int (*send_op)(slot_t *s);      /* starts one operation; 0 or an error */
    bool pool;
} test_t;

struct bench {
    /* settings */
    const char *endpoint;
    void *authkey;
    size_t keylen;
    int clients, pipeline, threads;
    uint64_t n, keyspace;
    size_t dsize;
    double time_s;
    double warmup_s; /* --warmup: the first test runs this long, unmeasured, first */
    bool sequential, quiet, echo;
    enum { OUT_HUMAN, OUT_CSV, OUT_JSON } out;
    /* state */
    bclient_t *cls;
    const test_t *test;
    bool async; /* the pipelined path (mpb_send / P frames in flight) */
    int64_t deadline;
    uint8_t *val; /* the value: msgpack bin of dsize bytes */
    size_t vallen;
    size_t echo_frame;
    pthread_barrier_t go;
    int64_t start_ns;
    int json_rows;
};

static volatile sig_atomic_t g_stop;

static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

static uint64_t rng_next(uint64_t *s) { /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Writes the msgpack key of the next operation ("key:__rand_int__" as redis-benchmark without
 * -r; "key:000000000123" with it) and returns its length. */
static size_t next_key(bclient_t *cl, const char *prefix, uint8_t *out) {
    bench_t *B = cl->B;
    char k[64];
    size_t pn = strlen(prefix), kn;
    memcpy(k, prefix, pn);
    k[pn] = ':';
    if (!B->keyspace) {
        memcpy(k + pn + 1, "__rand_int__", 12);
    } else {
        uint64_t i;
        if (B->sequential) i = ((uint64_t)cl->id + cl->issued * (uint64_t)B->clients) % B->keyspace;
        else i = rng_next(&cl->rng) % B->keyspace;
        /* twelve digits, as redis-benchmark writes them; not snprintf, which costs more than
         * the rest of building the request */
        for (int d = 11; d >= 0; d--, i /= 10) k[pn + 1 + (size_t)d] = (char)('0' + i % 10);
    }
    kn = pn + 13;
    return mp_str(out, k, kn);
}

/* Remembers the first failure's reason. */
static void note_why(bclient_t *cl, int rc) {
    if (!cl->firsterr[0])
        snprintf(cl->firsterr, sizeof cl->firsterr, "%s: %s",
                 cl->c ? mpb_errmsg(cl->c) : "", mpb_strerror(rc));
}

static void note_error(bclient_t *cl, int rc) {
    cl->errors++;
    note_why(cl, rc);
}

/* May another operation start, now? (The caller's clock reading: one per operation.) */
static bool may_issue(bclient_t *cl, int64_t now) {
    if (cl->dead || g_stop || cl->issued >= cl->quota) return false;
    return !cl->B->deadline || now < cl->B->deadline;
}

/* ---- synchronous operations (-P 1): the blocking calls of the public API ---- */

static int sync_dict_set(bclient_t *cl) {
    size_t kn = next_key(cl, "key", cl->buf);
    return mpb_dict_set(cl->d, cl->buf, kn, cl->B->val, cl->B->vallen);
}

static int sync_dict_get(bclient_t *cl) {
    size_t kn = next_key(cl, "key", cl->buf);
    void *v = NULL;
    size_t vn;
    int rc = mpb_dict_get(cl->d, cl->buf, kn, &v, &vn);
    mpb_free(v);
    if (rc == MPB_ENOKEY) {
        cl->misses++;
        rc = 0;
    }
    return rc;
}

static int sync_dict_incr(bclient_t *cl) {
    size_t kn = next_key(cl, "counter", cl->buf);
    int64_t r;
    return mpb_dict_incr(cl->d, cl->buf, kn, 1, &r);
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
    size_t an = mp_array(args, 1);
    an += mp_uint(args + an, cl->issued % 1000);
    void *r = NULL;
    size_t rn;
    int rc = mpb_pool_apply(cl->pool, POOL_FN, args, an, BLOCK_MS, &r, &rn);
    mpb_free(r);
    return rc;
}

/* ---- pipelined operations (-P N): mpb_send and callbacks ---- */

static void slot_issue(slot_t *s, int64_t now);

/* An operation finished (its last reply came): record it, start the slot's next one. */
static void slot_done(slot_t *s, int status) {
    bclient_t *cl = s->cl;
    int64_t t = now_ns();
    hist_add(&cl->h, (uint64_t)(t - s->t0));
    cl->done++;
    if (status == MPB_ENOKEY) cl->misses++;
    else if (status) note_error(cl, status);
    else if (s->failed) cl->errors++;
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
    uint8_t *p = cl->buf;
    size_t n = mp_array(p, 2);
    n += next_key(cl, "key", p + n);
    memcpy(p + n, cl->B->val, cl->B->vallen);
    n += cl->B->vallen;
    return mpb_send(cl->c, MPB_OP_DICT_SET, DICT_NAME, p, n, cb_done, s);
}

static int send_dict_get(slot_t *s) {
    bclient_t *cl = s->cl;
    size_t n = mp_array(s->args, 1);
    n += next_key(cl, "key", s->args + n);
    return mpb_send(cl->c, MPB_OP_DICT_GET, DICT_NAME, s->args, n, cb_done, s);
}

static int send_dict_incr(slot_t *s) {
    bclient_t *cl = s->cl;
    size_t n = mp_array(s->args, 2);
    n += next_key(cl, "counter", s->args + n);
    n += mp_uint(s->args + n, 1);
    return mpb_send(cl->c, MPB_OP_DICT_INCR, DICT_NAME, s->args, n, cb_done, s);
}

static int send_list_append(slot_t *s) {
    bclient_t *cl = s->cl;
    uint8_t *p = cl->buf;
    size_t n = mp_array(p, 1);
    memcpy(p + n, cl->B->val, cl->B->vallen);
    n += cl->B->vallen;
    return mpb_send(cl->c, MPB_OP_LIST_APPEND, LIST_NAME, p, n, cb_done, s);
}

/* put then get, sent together: one operation, one round trip. The queue is never empty when
 * a get is served, since each client's put is served before its get. */
/* queue.put alone (the queue grows for the test's length; it is deleted after it) */
static int sync_queue_put(bclient_t *cl) {
    return mpb_queue_put(cl->q, cl->B->val, cl->B->vallen, BLOCK_MS);
}

static size_t queue_put_args(bclient_t *cl, uint8_t *p) {
    size_t n = mp_array(p, 2);
    memcpy(p + n, cl->B->val, cl->B->vallen);
    n += cl->B->vallen;
    return n + mp_uint(p + n, BLOCK_MS);
}

static int send_queue_put(slot_t *s) {
    bclient_t *cl = s->cl;
    size_t n = queue_put_args(cl, cl->buf);
    return mpb_send(cl->c, MPB_OP_QUEUE_PUT, QUEUE_NAME, cl->buf, n, cb_done, s);
}

static int send_queue(slot_t *s) {
    bclient_t *cl = s->cl;
    uint8_t *p = cl->buf;
    size_t n = queue_put_args(cl, p);
    int rc = mpb_send(cl->c, MPB_OP_QUEUE_PUT, QUEUE_NAME, p, n, cb_first, s);
    if (rc) return rc;
    n = mp_array(s->args, 1);
    n += mp_uint(s->args + n, BLOCK_MS);
    return mpb_send(cl->c, MPB_OP_QUEUE_GET, QUEUE_NAME, s->args, n, cb_done, s);
}

/* acquire then release, sent together. Each slot has a lock of its own (no contention), so
 * the acquire is granted at once and the release that follows it finds it held. */
static int send_lock(slot_t *s) {
    bclient_t *cl = s->cl;
    char name[64];
    snprintf(name, sizeof name, LOCK_FMT, cl->id, s->idx);
    size_t n = mp_array(s->args, 2);
    n += mp_uint(s->args + n, (uint64_t)s->idx + 1);
    n += mp_uint(s->args + n, BLOCK_MS);
    int rc = mpb_send(cl->c, MPB_OP_LOCK_ACQUIRE, name, s->args, n, cb_first, s);
    if (rc) return rc;
    n = mp_array(s->args, 1);
    n += mp_uint(s->args + n, (uint64_t)s->idx + 1);
    return mpb_send(cl->c, MPB_OP_LOCK_RELEASE, name, s->args, n, cb_done, s);
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
    size_t n = mp_array(s->args, 1);
    n += mp_uint(s->args + n, cl->issued % 1000);
    return mpb_pool_apply_async(cl->pool, POOL_FN, s->args, n, pool_ok, pool_err, s, &s->a);
}

/* Starts the slot's next operation, if the budget allows. */
static void slot_issue(slot_t *s, int64_t now) {
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

/* ---- the echo: the same harness on bare DEALER sockets ---- */

/* A frame the size of a dict.get request: header 12, [rid, op, name, key], MAC 16. The first
 * bytes carry the slot and its send time; the echo sends every byte back. */
static size_t echo_frame_size(bench_t *B) {
    uint8_t tmp[128];
    bclient_t probe = {.B = B};
    size_t body = mp_array(tmp, 4) + mp_uint(tmp, 40000) + mp_uint(tmp, MPB_OP_DICT_GET) +
                  mp_str(tmp, DICT_NAME, strlen(DICT_NAME)) + next_key(&probe, "key", tmp);
    return 12 + body + 16;
}

static int echo_send(slot_t *s) {
    bclient_t *cl = s->cl;
    uint8_t *f = cl->buf;
    uint32_t idx = (uint32_t)s->idx;
    memcpy(f, &idx, sizeof idx);
    memcpy(f + 4, &s->t0, sizeof s->t0);
    if (zmq_send(cl->sock, f, cl->B->echo_frame, 0) < 0) return MPB_ECONN;
    return 0;
}

static void echo_issue(slot_t *s, int64_t now) {
    bclient_t *cl = s->cl;
    if (!may_issue(cl, now)) return;
    s->busy = true;
    cl->busy++;
    cl->issued++;
    s->t0 = now;
    if (echo_send(s)) {
        s->busy = false;
        cl->busy--;
        cl->dead = true;
        snprintf(cl->firsterr, sizeof cl->firsterr, "send: %s", zmq_strerror(zmq_errno()));
    }
}

/* Reads every echoed frame that has arrived (waiting up to timeout_ms for the first); each
 * completes its slot, which sends the next. Ends with a read that would block, so the edge-
 * triggered ZMQ_FD is armed again. */
static void echo_service(bclient_t *cl, int timeout_ms) {
    uint8_t in[16];
    if (timeout_ms && cl->busy) {
        zmq_pollitem_t it = {cl->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, timeout_ms) < 0 && zmq_errno() != EINTR) cl->dead = true;
    }
    for (;;) {
        int rc = zmq_recv(cl->sock, in, sizeof in, ZMQ_DONTWAIT);
        if (rc < 0) {
            if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) cl->dead = true;
            return;
        }
        uint32_t idx;
        memcpy(&idx, in, sizeof idx);
        if (rc < 12 || idx >= (uint32_t)cl->B->pipeline || !cl->slots[idx].busy) continue;
        slot_t *s = &cl->slots[idx];
        int64_t t = now_ns();
        hist_add(&cl->h, (uint64_t)(t - s->t0));
        cl->done++;
        cl->end_ns = t;
        s->busy = false;
        cl->busy--;
        echo_issue(s, t);
    }
}

/* ---- harness threads ---- */

typedef struct tctx {
    bench_t *B;
    bclient_t **cls;
    int n;
    pthread_t th;
} tctx_t;

/* Reads what has arrived for cl (waiting up to timeout_ms for the first reply), running the
 * callbacks, and sends what they queued: polls again until a poll completes nothing, so it
 * ends with a flush and a read that would block (which also re-arms the edge-triggered
 * mpb_fd). Progress is judged by our own count of completions, not by mpb_poll's result: that
 * is the change in requests in flight, which is 0 when each callback queues the next. */
static void service(bclient_t *cl, int timeout_ms) {
    if (cl->dead) return;
    if (cl->B->echo) {
        echo_service(cl, timeout_ms);
        return;
    }
    for (;;) {
        uint64_t before = cl->done;
        int rc = cl->pool ? mpb_pool_poll(cl->pool, timeout_ms) : mpb_poll(cl->c, timeout_ms);
        if (rc < 0) {
            note_error(cl, rc);
            cl->dead = true;
            return;
        }
        if (cl->done == before) return;
        timeout_ms = 0;
    }
}

static void sync_run(bclient_t *cl) {
    bench_t *B = cl->B;
    int64_t t0 = now_ns();
    while (may_issue(cl, t0)) {
        cl->issued++;
        int rc = B->echo ? 0 : B->test->sync_op(cl);
        if (B->echo) {
            if (zmq_send(cl->sock, cl->buf, B->echo_frame, 0) < 0 ||
                zmq_recv(cl->sock, cl->buf + B->echo_frame, B->echo_frame, 0) < 0) {
                cl->dead = true;
                snprintf(cl->firsterr, sizeof cl->firsterr, "echo: %s", zmq_strerror(zmq_errno()));
                break;
            }
        }
        int64_t t1 = now_ns();
        hist_add(&cl->h, (uint64_t)(t1 - t0));
        cl->done++;
        cl->end_ns = t1;
        t0 = t1;
        if (rc) {
            note_error(cl, rc);
            if (rc == MPB_ECONN || rc == MPB_EFORK) cl->dead = true;
        }
    }
}

static void *harness(void *arg) {
    tctx_t *t = arg;
    bench_t *B = t->B;
    pthread_barrier_wait(&B->go);
    if (!B->async) {
        sync_run(t->cls[0]);
        return NULL;
    }
    for (int i = 0; i < t->n; i++) {
        bclient_t *cl = t->cls[i];
        for (int k = 0; k < B->pipeline; k++) {
            if (B->echo) echo_issue(&cl->slots[k], now_ns());
            else slot_issue(&cl->slots[k], now_ns());
        }
        service(cl, 0);
    }
    /* epoll, as redis-benchmark's event loop: a wake-up costs the same for 1 ready client of
     * 50 as for 50, where poll() would pass and scan every descriptor each time */
    int ep = t->n > 1 ? epoll_create1(EPOLL_CLOEXEC) : -1;
    if (t->n > 1 && ep < 0) die("epoll_create1: %s", strerror(errno));
    for (int i = 0; ep >= 0 && i < t->n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = t->cls[i]};
        if (t->cls[i]->fd >= 0) epoll_ctl(ep, EPOLL_CTL_ADD, t->cls[i]->fd, &ev);
    }
    struct epoll_event *evs = xcalloc((size_t)t->n, sizeof *evs);
    for (;;) {
        int active = 0;
        for (int i = 0; i < t->n; i++)
            if (!t->cls[i]->dead && t->cls[i]->busy) active++;
        if (!active) break;
        if (ep < 0) { /* one client: block in the library, as a single-client program does */
            service(t->cls[0], 1000);
            continue;
        }
        int rc = epoll_wait(ep, evs, t->n, 100);
        if (rc <= 0) { /* nothing for 100 ms: look at every client, in case an edge was missed */
            for (int i = 0; i < t->n; i++) service(t->cls[i], 0);
            continue;
        }
        for (int i = 0; i < rc; i++) service(evs[i].data.ptr, 0);
    }
    free(evs);
    if (ep >= 0) close(ep);
    return NULL;
}

/* ---- tests ---- */

static const test_t TESTS[] = {
    {"dict.set", "set", sync_dict_set, send_dict_set, false},
    {"dict.get", "get", sync_dict_get, send_dict_get, false},
    {"dict.incr", "incr", sync_dict_incr, send_dict_incr, false},
    {"list.append", "append", sync_list_append, send_list_append, false},
    {"queue.put+get", "queue", sync_queue, send_queue, false},
    {"lock.acquire+release", "lock", sync_lock, send_lock, false},
    {"pool.apply", "pool", sync_pool, send_pool, true},
    {"queue.put", "put", sync_queue_put, send_queue_put, false},
};
#define NTESTS (sizeof TESTS / sizeof TESTS[0])
static const test_t ECHO_TEST = {"echo", "echo", NULL, NULL, false};

typedef struct result {
    const char *name;
    double rps, avg, min, p50, p95, p99, p999, max; /* latencies in ms */
    uint64_t requests, errors, misses;
    double secs;
} result_t;

/* Opens what each client needs for test t. Returns 0, or -1 after saying why. */
static int prepare(bench_t *B, const test_t *t) {
    for (int i = 0; i < B->clients; i++) {
        bclient_t *cl = &B->cls[i];
        mpb_client_t *c = cl->c;
        int rc = 0;
        if (t == &TESTS[0] || t == &TESTS[1] || t == &TESTS[2]) rc = mpb_dict_attach(c, DICT_NAME, &cl->d);
        else if (t == &TESTS[3]) rc = mpb_list_attach(c, LIST_NAME, &cl->l);
        else if (t == &TESTS[4] || t == &TESTS[7])
            rc = mpb_queue_open(c, QUEUE_NAME, -1, -1, &cl->q);
        else if (t == &TESTS[5]) {
            char name[64];
            int nlocks = B->async ? B->pipeline : 1;
            for (int k = 0; k < nlocks && !rc; k++) {
                snprintf(name, sizeof name, LOCK_FMT, cl->id, k);
                mpb_lock_t *lk = NULL;
                rc = mpb_lock_open(c, name, &lk);
                if (!rc && k == 0 && !B->async) cl->lk = lk;
                else mpb_lock_close(&lk);
            }
        } else if (t->pool) rc = mpb_pool_open(c, &cl->pool);
        if (rc) {
            fprintf(stderr, "mpb-bench: %s: client %d: %s\n", t->name, i, mpb_errmsg(c));
            return -1;
        }
    }
    return 0;
}

static void unprepare(bench_t *B, const test_t *t) {
    for (int i = 0; i < B->clients; i++) {
        bclient_t *cl = &B->cls[i];
        if (cl->pool) {
            mpb_pool_terminate(cl->pool);
            mpb_pool_close(&cl->pool);
        }
        for (int k = 0; k < B->pipeline; k++) mpb_async_free(&cl->slots[k].a);
        mpb_dict_close(&cl->d);
        mpb_list_close(&cl->l);
        mpb_queue_close(&cl->q);
        mpb_lock_close(&cl->lk);
    }
    /* Leave the broker as it was found, apart from the dict (redis-benchmark leaves its keys
     * too): a list of millions of appended values would only skew the tests after it. */
    mpb_client_t *c = B->cls[0].c;
    if (!c || B->cls[0].dead) return;
    if (t == &TESTS[3]) mpb_obj_delete(c, "list/" LIST_NAME);
    if (t == &TESTS[4] || t == &TESTS[7]) mpb_obj_delete(c, "queue/" QUEUE_NAME);
    if (t == &TESTS[5]) {
        char path[80];
        for (int i = 0; i < B->clients; i++)
            for (int k = 0; k < (B->async ? B->pipeline : 1); k++) {
                snprintf(path, sizeof path, "lock/" LOCK_FMT, i, k);
                mpb_obj_delete(c, path);
            }
    }
}

/* dict.get without dict.set before it: give the keys it reads values first, so it measures
 * hits (as after redis-benchmark's SET). Untimed. */
static void preload(bench_t *B) {
    mpb_client_t *c = B->cls[0].c;
    mpb_dict_t *d = NULL;
    if (mpb_dict_attach(c, DICT_NAME, &d)) return;
    uint64_t n = B->keyspace ? B->keyspace : 1;
    uint8_t *args = xcalloc(1, 64 + B->vallen);
    for (uint64_t i = 0; i < n; i++) {
        char k[64];
        int kn = B->keyspace ? snprintf(k, sizeof k, "key:%012" PRIu64, i)
                             : snprintf(k, sizeof k, "key:__rand_int__");
        size_t an = mp_array(args, 2);
        an += mp_str(args + an, k, (size_t)kn);
        memcpy(args + an, B->val, B->vallen);
        an += B->vallen;
        if (mpb_send(c, MPB_OP_DICT_SET, DICT_NAME, args, an, NULL, NULL)) break;
        if (mpb_inflight(c) >= 512) mpb_poll(c, 1000);
    }
    mpb_drain(c, 60000);
    free(args);
    mpb_dict_close(&d);
}

static int run_test(bench_t *B, const test_t *t, result_t *res) {
    B->test = t;
    memset(res, 0, sizeof *res);
    res->name = t->name;
    if (!B->echo && prepare(B, t)) {
        unprepare(B, t);
        return -1;
    }
    uint64_t per = B->n / (uint64_t)B->clients, extra = B->n % (uint64_t)B->clients;
    for (int i = 0; i < B->clients; i++) {
        bclient_t *cl = &B->cls[i];
        cl->quota = per + ((uint64_t)i < extra ? 1 : 0);
        cl->issued = cl->done = cl->errors = cl->misses = 0;
        cl->busy = 0;
        cl->firsterr[0] = 0;
        cl->end_ns = 0;
        hist_clear(&cl->h);
        for (int k = 0; k < B->pipeline; k++) {
            cl->slots[k] = (slot_t){.cl = cl, .idx = k};
        }
    }
    int nthreads = B->async ? B->threads : B->clients;
    if (nthreads > B->clients) nthreads = B->clients;
    tctx_t *ts = xcalloc((size_t)nthreads, sizeof *ts);
    for (int i = 0; i < nthreads; i++) {
        ts[i].B = B;
        ts[i].cls = xcalloc((size_t)B->clients, sizeof *ts[i].cls);
    }
    for (int i = 0; i < B->clients; i++) {
        tctx_t *tc = &ts[i % nthreads];
        tc->cls[tc->n++] = &B->cls[i];
    }
    pthread_barrier_init(&B->go, NULL, (unsigned)nthreads + 1);
    B->deadline = 0;
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&ts[i].th, NULL, harness, &ts[i]) != 0) die("cannot start a thread");
    int64_t start = now_ns();
    if (B->time_s > 0) B->deadline = start + (int64_t)(B->time_s * 1e9);
    pthread_barrier_wait(&B->go);
    for (int i = 0; i < nthreads; i++) pthread_join(ts[i].th, NULL);
    pthread_barrier_destroy(&B->go);
    int64_t end = start;
    hist_t h;
    hist_init(&h);
    const char *why = NULL;
    for (int i = 0; i < B->clients; i++) {
        bclient_t *cl = &B->cls[i];
        hist_merge(&h, &cl->h);
        res->errors += cl->errors;
        res->misses += cl->misses;
        if (cl->end_ns > end) end = cl->end_ns;
        if (!why && cl->firsterr[0]) why = cl->firsterr;
    }
    for (int i = 0; i < nthreads; i++) free(ts[i].cls);
    free(ts);
    res->requests = h.count;
    res->secs = (double)(end - start) / 1e9;
    res->rps = res->secs > 0 ? (double)h.count / res->secs : 0;
    res->avg = h.count ? (double)h.sum / (double)h.count / 1e6 : 0;
    res->min = h.count ? (double)h.min / 1e6 : 0;
    res->p50 = (double)hist_quantile(&h, 0.50) / 1e6;
    res->p95 = (double)hist_quantile(&h, 0.95) / 1e6;
    res->p99 = (double)hist_quantile(&h, 0.99) / 1e6;
    res->p999 = (double)hist_quantile(&h, 0.999) / 1e6;
    res->max = (double)h.max / 1e6;
    hist_free(&h);
    if (res->errors || why)
        fprintf(stderr, "mpb-bench: %s: %" PRIu64 " of %" PRIu64 " operations failed%s%s\n",
                t->name, res->errors, res->requests, why ? ": " : "", why ? why : "");
    if (!B->echo) unprepare(B, t);
    return 0;
}

/* Runs t for --warmup seconds and forgets the figures: new connections' first messages, and
 * the scheduler settling, are not what the first measured test should show. */
static void warm_up(bench_t *B, const test_t *t) {
    if (B->warmup_s <= 0) return;
    double time_s = B->time_s;
    B->time_s = B->warmup_s;
    result_t r;
    run_test(B, t, &r);
    B->time_s = time_s;
}

/* ---- output ---- */

static void print_result(bench_t *B, const result_t *r) {
    switch (B->out) {
    case OUT_CSV:
        printf("\"%s\",\"%.2f\",\"%.3f\",\"%.3f\",\"%.3f\",\"%.3f\",\"%.3f\",\"%.3f\"\n", r->name,
               r->rps, r->avg, r->min, r->p50, r->p95, r->p99, r->max);
        break;
    case OUT_JSON:
        printf("%s\n  {\"test\": \"%s\", \"rps\": %.2f, \"avg_latency_ms\": %.3f, "
               "\"min_latency_ms\": %.3f, \"p50_latency_ms\": %.3f, \"p95_latency_ms\": %.3f, "
               "\"p99_latency_ms\": %.3f, \"p999_latency_ms\": %.3f, \"max_latency_ms\": %.3f}",
               B->json_rows++ ? "," : "", r->name, r->rps, r->avg, r->min, r->p50, r->p95, r->p99,
               r->p999, r->max);
        break;
    case OUT_HUMAN:
        if (B->quiet) {
            printf("%s: %.2f requests per second, p50=%.3f msec p99=%.3f msec p99.9=%.3f msec "
                   "max=%.3f msec\n",
                   r->name, r->rps, r->p50, r->p99, r->p999, r->max);
            break;
        }
        printf("====== %s ======\n", r->name);
        printf("  %" PRIu64 " requests completed in %.2f seconds\n", r->requests, r->secs);
        printf("  %d parallel clients, pipeline %d, %zu bytes values, %s\n", B->clients,
               B->pipeline, B->dsize, B->endpoint);
        if (r->misses) printf("  %" PRIu64 " misses (no such key)\n", r->misses);
        if (r->errors) printf("  %" PRIu64 " errors\n", r->errors);
        printf("  latency (msec): avg %.3f  min %.3f  p50 %.3f  p95 %.3f  p99 %.3f  p99.9 %.3f  "
               "max %.3f\n",
               r->avg, r->min, r->p50, r->p95, r->p99, r->p999, r->max);
        printf("  %.2f requests per second\n\n", r->rps);
        break;
    }
    fflush(stdout);
}

/* ---- the echo server ---- */

static int serve_echo(char **eps, int neps, const char *epfile) {
    void *ctx = zmq_ctx_new();
    void *r = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0, hwm = 100000;
    zmq_setsockopt(r, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(r, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r, ZMQ_RCVHWM, &hwm, sizeof hwm);
    for (int i = 0; i < neps; i++) {
        if (zmq_bind(r, eps[i]) != 0) die("cannot bind %s: %s", eps[i], zmq_strerror(zmq_errno()));
        char ep[1024];
        size_t eplen = sizeof ep;
        zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, ep, &eplen);
        if (i == 0 && epfile) {
            FILE *f = fopen(epfile, "w");
            if (!f) die("cannot write %s: %s", epfile, strerror(errno));
            fprintf(f, "%s\n", ep);
            fclose(f);
        }
        fprintf(stderr, "mpb-bench: echo on %s\n", ep);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    while (!g_stop) {
        zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 500) < 0 && zmq_errno() != EINTR) break;
        /* like the broker: read until the socket would block, then poll again */
        for (int i = 0; i < 4096; i++) {
            if (zmq_msg_recv(&id, r, ZMQ_DONTWAIT) < 0) break;
            if (!zmq_msg_more(&id) || zmq_msg_recv(&body, r, 0) < 0) continue;
            while (zmq_msg_more(&body)) { /* one frame per message: drop the rest */
                zmq_msg_t x;
                zmq_msg_init(&x);
                int more = zmq_msg_recv(&x, r, 0) >= 0 && zmq_msg_more(&x);
                zmq_msg_close(&x);
                if (!more) break;
            }
            /* zmq_msg_send takes the messages over (no copy) and leaves them empty */
            if (zmq_msg_send(&id, r, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) continue;
            zmq_msg_send(&body, r, ZMQ_DONTWAIT);
        }
    }
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    zmq_close(r);
    zmq_ctx_term(ctx);
    return 0;
}

/* ---- main ---- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: mpb-bench [options]              benchmark an mpbrokerd\n"
            "       mpb-bench --echo EP [options]    the same harness against a bare ZeroMQ echo\n"
            "       mpb-bench --serve-echo EP [--serve-echo EP2] [--endpoint-file F]\n"
            "                                        serve that echo (ROUTER, one thread)\n"
            "\n"
            "  -e, --endpoint EP     broker (env MPB_ENDPOINT, default tcp://127.0.0.1:5555)\n"
            "  -k, --authkey-file F  authkey (env MPB_AUTHKEY_FILE, or MPB_AUTHKEY itself)\n"
            "  -c N                  parallel clients, each its own connection (default 50)\n"
            "  -n N                  total operations per test (default 100000)\n"
            "  -P N                  operations in flight per client (default 1: synchronous\n"
            "                        calls, a thread per client; N > 1: mpb_send + callbacks)\n"
            "  -d N                  value size in bytes, a msgpack bin (default 16)\n"
            "  -r N                  random keys key:000000000123 in [0, N) (default: one key,\n"
            "                        key:__rand_int__, as redis-benchmark without -r)\n"
            "  -t TESTS              comma list (default all): dict.set dict.get dict.incr\n"
            "                        list.append queue.put+get lock.acquire+release pool.apply\n"
            "                        queue.put (or set get incr append queue lock pool put)\n"
            "  --threads N           harness threads (default 0: one per client, as if each\n"
            "                        were its own process); N < -c: each thread polls its\n"
            "                        clients' mpb_fd() in one loop, as redis-benchmark does\n"
            "                        (with -P 1 too: one request in flight per client)\n"
            "  --time S              stop each test after S seconds (fractions allowed)\n"
            "  --warmup S            run the first test S seconds, unmeasured, before it counts\n"
            "  --sequential          with -r: keys in order, not random (-n = -r loads them all)\n"
            "  --csv                 CSV with redis-benchmark --csv's columns\n"
            "  --json                a JSON array of objects, p999_latency_ms added\n"
            "  -q                    quiet: one line per test\n"
            "  -h, --help            this text\n"
            "\n"
            "pool.apply calls square([i]) on a worker (mpb-worker --lib libmpbdemo.so --fn\n"
            "square); it is skipped, with a note, when no worker serves it.\n");
}

static int parse_tests(const char *spec, bool *want) {
    char *s = strdup(spec), *save = NULL;
    if (!s) die("out of memory");
    int n = 0;
    for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        bool found = false;
        for (size_t i = 0; i < NTESTS; i++)
            if (!strcmp(tok, TESTS[i].name) || !strcmp(tok, TESTS[i].alias)) {
                want[i] = found = true;
                n++;
            }
        if (!found) {
            fprintf(stderr, "mpb-bench: unknown test '%s'\n", tok);
            free(s);
            return -1;
        }
    }
    free(s);
    return n;
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t min) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || v < min) die("bad value for %s: '%s'", opt, s);
    return v;
}

/* Is a worker serving the pool's function? */
static bool pool_served(mpb_client_t *c) {
    uint8_t args[16];
    size_t n = mp_array(args, 1);
    n += mp_str(args + n, POOL_FN, strlen(POOL_FN));
    void *r = NULL;
    size_t rn = 0;
    if (mpb_call(c, MPB_OP_POOL_FNINFO, NULL, args, n, 0, &r, &rn)) return false;
    int64_t workers = mp_first_uint(r, rn);
    mpb_free(r);
    return workers > 0;
}

int main(int argc, char **argv) {
    void *echo_ctx = NULL;
    bench_t B = {0};
    B.endpoint = getenv("MPB_ENDPOINT");
    if (!B.endpoint || !*B.endpoint) B.endpoint = "tcp://127.0.0.1:5555";
    B.clients = 50;
    B.n = 100000;
    B.pipeline = 1;
    B.dsize = 16;
    B.threads = 0;
    const char *keyfile = NULL, *tests = NULL, *epfile = NULL;
    char *serve[16];
    int nserve = 0;
    bool threads_set = false;
    enum { O_CSV = 256, O_JSON, O_TIME, O_ECHO, O_SERVE, O_EPFILE, O_THREADS, O_SEQ, O_WARMUP };
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"authkey-file", required_argument, NULL, 'k'},
        {"csv", no_argument, NULL, O_CSV},
        {"json", no_argument, NULL, O_JSON},
        {"time", required_argument, NULL, O_TIME},
        {"echo", required_argument, NULL, O_ECHO},
        {"serve-echo", required_argument, NULL, O_SERVE},
        {"endpoint-file", required_argument, NULL, O_EPFILE},
        {"threads", required_argument, NULL, O_THREADS},
        {"sequential", no_argument, NULL, O_SEQ},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "e:k:c:n:P:d:r:t:qh", longopts, NULL)) != -1) {
        switch (o) {
        case 'e': B.endpoint = optarg; break;
        case 'k': keyfile = optarg; break;
        case 'c': B.clients = (int)parse_u64("-c", optarg, 1); break;
        case 'n': B.n = parse_u64("-n", optarg, 1); break;
        case 'P': B.pipeline = (int)parse_u64("-P", optarg, 1); break;
        case 'd': B.dsize = parse_u64("-d", optarg, 0); break;
        case 'r': B.keyspace = parse_u64("-r", optarg, 0); break;
        case 't': tests = optarg; break;
        case 'q': B.quiet = true; break;
        case O_CSV: B.out = OUT_CSV; break;
        case O_JSON: B.out = OUT_JSON; break;
        case O_TIME: {
            char *end;
            B.time_s = strtod(optarg, &end);
            if (*end || B.time_s <= 0) die("bad value for --time: '%s'", optarg);
            break;
        }
        case O_ECHO: B.echo = true; B.endpoint = optarg; break;
        case O_SERVE:
            if (nserve == 16) die("too many --serve-echo endpoints");
            serve[nserve++] = optarg;
            break;
        case O_EPFILE: epfile = optarg; break;
        case O_THREADS:
            B.threads = (int)parse_u64("--threads", optarg, 0);
            threads_set = true;
            break;
        case O_SEQ: B.sequential = true; break;
        case O_WARMUP: {
            char *end;
            B.warmup_s = strtod(optarg, &end);
            if (*end || !(B.warmup_s >= 0 && B.warmup_s <= 600))
                die("bad value for --warmup: '%s' (seconds, 0 to 600)", optarg);
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mpb-bench: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (nserve) return serve_echo(serve, nserve, epfile);
    if (B.clients > 10000 || B.pipeline > 100000 || B.dsize > (64u << 20))
        die("-c, -P or -d out of range");
    if (B.threads == 0 || B.threads > B.clients) B.threads = B.clients;
    /* -P 1 makes blocking calls, a thread per client, unless fewer threads were asked for:
     * then each client keeps one request in flight through mpb_send, as redis-benchmark does */
    B.async = B.pipeline > 1 || (threads_set && B.threads < B.clients);

    bool want[NTESTS] = {0};
    if (tests) {
        if (parse_tests(tests, want) <= 0) return 2;
    } else {
        for (size_t i = 0; i < NTESTS; i++) want[i] = true;
    }

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);

    /* the value: dsize bytes of 'x', as a msgpack bin */
    B.val = xcalloc(1, B.dsize + 8);
    B.vallen = mp_bin_hdr(B.val, B.dsize);
    memset(B.val + B.vallen, 'x', B.dsize);
    B.vallen += B.dsize;
    B.echo_frame = echo_frame_size(&B);

    if (!B.echo) {
        char err[256];
        if (mpb_authkey_load(keyfile, &B.authkey, &B.keylen, err, sizeof err))
            die("authkey: %s", err);
    }
    B.cls = xcalloc((size_t)B.clients, sizeof *B.cls);
    for (int i = 0; i < B.clients; i++) {
        bclient_t *cl = &B.cls[i];
        cl->B = &B;
        cl->id = i;
        cl->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) ^ (uint64_t)now_ns();
        if (!cl->rng) cl->rng = 1;
        cl->slots = xcalloc((size_t)B.pipeline, sizeof *cl->slots);
        cl->buflen = B.vallen + 128 + 2 * B.echo_frame;
        cl->buf = xcalloc(1, cl->buflen);
        hist_init(&cl->h);
        cl->fd = -1;
        if (B.echo) {
            /* one context for every echo client, as libmpb shares one among its clients */
            if (!echo_ctx) echo_ctx = zmq_ctx_new();
            cl->sock = zmq_socket(echo_ctx, ZMQ_DEALER);
            int zero = 0;
            zmq_setsockopt(cl->sock, ZMQ_LINGER, &zero, sizeof zero);
            if (!cl->sock || zmq_connect(cl->sock, B.endpoint) != 0)
                die("cannot connect to %s: %s", B.endpoint, zmq_strerror(zmq_errno()));
            size_t fl = sizeof cl->fd;
            zmq_getsockopt(cl->sock, ZMQ_FD, &cl->fd, &fl);
            memset(cl->buf, 'e', cl->buflen);
            continue;
        }
        mpb_options_t opts;
        mpb_options_init(&opts);
        opts.name = "mpb-bench";
        int rc = mpb_connect(B.endpoint, B.authkey, B.keylen, &opts, &cl->c);
        if (rc) die("client %d: %s", i, cl->c ? mpb_errmsg(cl->c) : mpb_strerror(rc));
        cl->fd = mpb_fd(cl->c);
    }
    if (B.echo) { /* a round trip on each first, so the timed part finds them connected */
        for (int i = 0; i < B.clients; i++) {
            bclient_t *cl = &B.cls[i];
            uint32_t bad = UINT32_MAX;
            memcpy(cl->buf, &bad, sizeof bad);
            if (zmq_send(cl->sock, cl->buf, B.echo_frame, 0) < 0) die("echo: cannot send");
            zmq_pollitem_t it = {cl->sock, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&it, 1, 5000) <= 0) die("no echo from %s within 5 s", B.endpoint);
            zmq_recv(cl->sock, cl->buf, cl->buflen, 0);
        }
    }

    if (B.out == OUT_CSV)
        printf("\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\","
               "\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n");
    if (B.out == OUT_JSON) printf("[");
    int status = 0;
    bool set_ran = false;
    bool warm = B.warmup_s <= 0;
    if (B.echo) {
        result_t r;
        warm_up(&B, &ECHO_TEST);
        run_test(&B, &ECHO_TEST, &r);
        print_result(&B, &r);
        if (r.errors || !r.requests) status = 1;
    }
    for (size_t i = 0; i < NTESTS && !B.echo && !g_stop; i++) {
        if (!want[i]) continue;
        const test_t *t = &TESTS[i];
        if (t->pool && !pool_served(B.cls[0].c)) {
            fprintf(stderr, "mpb-bench: %s: skipped: no worker serves '%s' (start one: mpb-worker "
                    "--lib libmpbdemo.so --fn %s)\n", t->name, POOL_FN, POOL_FN);
            continue;
        }
        if (t == &TESTS[1] && !set_ran) preload(&B);
        if (!warm) {
            warm_up(&B, t);
            warm = true;
        }
        result_t r;
        if (run_test(&B, t, &r)) {
            status = 1;
            continue;
        }
        if (t == &TESTS[0]) set_ran = true;
        print_result(&B, &r);
        if (r.errors) status = 1;
    }
    if (B.out == OUT_JSON) printf("%s]\n", B.json_rows ? "\n" : "");
    fflush(stdout);

    for (int i = 0; i < B.clients; i++) {
        bclient_t *cl = &B.cls[i];
        mpb_close(&cl->c);
        if (cl->sock) zmq_close(cl->sock);
        hist_free(&cl->h);
        free(cl->slots);
        free(cl->buf);
    }
    if (echo_ctx) zmq_ctx_term(echo_ctx);
    free(B.cls);
    free(B.val);
    mpb_free(B.authkey);
    return status;
}
