/* bench.h - what the files of mpb-bench share: the settings and state of a run (bench_t), a
 * client and its in-flight slots, the tests, the latency histogram, and a builder over a
 * request's buffer. Files: mpb-bench.c (options, main), bench_harness.c (threads, one test's
 * run), bench_ops.c (each test's operations, blocking and pipelined), bench_echo.c (the bare
 * ZeroMQ echo, client and server), bench_output.c (human, --csv, --json rows), bench_util.c
 * (allocation, reading pool.fninfo, histogram). Internal to mpb-bench. */
#ifndef MPB_BENCH_H
#define MPB_BENCH_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mpb/mpb.h>

#include "clock.h"
#include <mpb/ops.h>

#define DICT_NAME  "bench"
#define LIST_NAME  "bench-list"
#define QUEUE_NAME "bench-queue"
#define LOCK_FMT   "bench-lock-%d-%d"
#define POOL_FN    "square"
#define BLOCK_MS   10000 /* how long a queue.get / lock.acquire may park: never, in these tests */

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

static inline size_t hist_index(uint64_t v) {
    if (v < HSUB) return (size_t)v;
    int e = 63 - __builtin_clzll(v);
    return (size_t)(e - 6) * HSUB + (size_t)((v >> (e - 7)) & (HSUB - 1));
}

static inline void hist_add(hist_t *h, uint64_t v) {
    h->count++;
    h->sum += v;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    h->b[hist_index(v)]++;
}

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
    int busy; /* slots with an operation in flight */
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
    int (*sync_op)(bclient_t *cl); /* one operation by blocking calls; 0 or an error */
    int (*send_op)(slot_t *s);     /* starts one operation; 0 or an error */
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

typedef struct result {
    const char *name;
    double rps, avg, min, p50, p95, p99, p999, max; /* latencies in ms */
    uint64_t requests, errors, misses;
    double secs;
} result_t;

/* bench_util.c */
__attribute__((format(printf, 1, 2), noreturn)) void die(const char *fmt, ...);
void *xcalloc(size_t n, size_t size); /* never NULL: dies */
/* A builder over the n bytes at p (a client's or a slot's argument buffer): requests are built
 * with libmpb's mpb_mp_*() and allocate nothing on the hot path. A request too big for its
 * buffer fails with MPB_ETOOBIG in b.err. */
static inline mpb_mpbuf_t args_over(void *p, size_t n) {
    mpb_mpbuf_t b;
    mpb_mp_init_buf(&b, p, n, MPB_MP_FIXED);
    return b;
}
/* The first unsigned integer of a msgpack array (pool.fninfo's worker count), or -1. */
int64_t mp_first_uint(const void *p, size_t n);
void hist_init(hist_t *h);
void hist_free(hist_t *h);
void hist_clear(hist_t *h);
void hist_merge(hist_t *into, const hist_t *h);
uint64_t hist_quantile(const hist_t *h, double q);

/* bench_ops.c: the tests, in -t and output order; the harness tells some apart by index */
#define BENCH_NTESTS 8
extern const test_t bench_tests[BENCH_NTESTS];
/* Appends the msgpack key of the next operation to b; returns b->err. */
int next_key(bclient_t *cl, const char *prefix, mpb_mpbuf_t *b);
void note_error(bclient_t *cl, int rc);
/* true while cl may start another operation (quota, deadline, stop) */
bool may_issue(bclient_t *cl, int64_t now);
/* Starts the next operation on slot s (pipelined path), or leaves it idle. */
void slot_issue(slot_t *s, int64_t now);

/* bench_echo.c */
extern const test_t echo_test;
size_t echo_frame_size(bench_t *B);
void echo_issue(slot_t *s, int64_t now);
void echo_service(bclient_t *cl, int timeout_ms);
/* mpb-bench --serve-echo: a ROUTER on each endpoint, sending back what comes, until a signal */
int serve_echo(char **eps, int neps, const char *epfile);

/* bench_harness.c */
extern volatile sig_atomic_t g_stop; /* set by SIGINT/SIGTERM: finish and print what ran */
void on_sigint(int sig);
void preload(bench_t *B); /* fills the dict's keyspace, for dict.get run alone */
/* Runs test t on every client as the settings say; fills *res. 0 or -1 after saying why. */
int run_test(bench_t *B, const test_t *t, result_t *res);
void warm_up(bench_t *B, const test_t *t);

/* bench_output.c */
void print_result(bench_t *B, const result_t *r);

#endif
