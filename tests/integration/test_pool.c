/* test_pool.c - the remote Pool from a caller's side, against real mpb-worker processes: the
 * seed programs' multiprocessing.Pool uses ported (apply_async with callbacks, apply, map with
 * chunksize 1 and 100, imap over 100,000 items in bounded memory, imap_unordered, starmap),
 * remote errors, credit-based flow control, close/join, terminate, and timeouts. */
#include <math.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mpbproto.h"
#include "th_pool.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif
#ifdef POOL_ASAN
/* ASan keeps up to 256 MB of freed memory out of reuse by default, so any long run looks like a
 * leak to an RSS measurement. A small quarantine lets the memory-bound checks mean something
 * (ASAN_OPTIONS still wins). */
__attribute__((visibility("default"))) const char *__asan_default_options(void);
__attribute__((visibility("default"))) const char *__asan_default_options(void) {
    return "quarantine_size_mb=4";
}
#endif

#define DEMO_FNS "square,fail,sleep_ms,add"

static pthread_t main_thread;

/* Two mpb-worker processes with concurrency 2 each: Pool(4). */
/* Two workers of the demo functions, two calls at a time each, and c's pool over them. */
static mpb_pool_t *start_pool4(mpb_client_t *c) {
    tp_start_worker(MPB_DEMO_LIB, DEMO_FNS, 2, 1, 0, NULL);
    tp_start_worker(MPB_DEMO_LIB, DEMO_FNS, 2, 1, 0, NULL);
    mpb_pool_t *p = tp_pool_ready(c, "square", 2, c);
    return p;
}

/* One sleep_ms worker (its pid in *w), seen by mon, and c's pool. */
static mpb_pool_t *start_sleeper(mpb_client_t *c, mpb_client_t *mon, pid_t *w) {
    *w = tp_start_worker(MPB_DEMO_LIB, "sleep_ms", 1, 0, 0, NULL);
    return tp_pool_ready(mon, "sleep_ms", 1, c);
}

static long maxrss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* ---- imap over 100,000 items: lazy input, results in order, bounded memory ---- */

typedef struct gen {
    uint64_t produced, limit;
    uint8_t buf[16];
} gen_t;

/* A generator: 0, 1, 2, ... limit-1. */
static int gen_next(void *arg, const void **item, size_t *len) {
    gen_t *g = arg;
    if (g->produced >= g->limit) return 0;
    *len = mpb_pack_i64(g->buf, (int64_t)g->produced++);
    *item = g->buf;
    return 1;
}

/* pad(n) is 1 KiB, so holding 100,000 results would cost 100 MiB on either side. */
static void test_imap_100k_items_in_order_with_bounded_memory(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    tp_start_worker(MPB_TESTFNS_LIB, "pad", 2, 1, 0, NULL);
    tp_start_worker(MPB_TESTFNS_LIB, "pad", 2, 1, 0, NULL);
    tp_wait_workers(mon, "pad", 2, 10000);
    enum { N = 100000, CHUNK = 100, WINDOW = 16 };
    long rss0 = maxrss_kb(), brss0 = th_rss_kb(tp_broker.pid), brss_max = brss0;
    uint64_t held_max = 0;
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    gen_t g = {.limit = N};
    mpb_imap_t *it;
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_pool_imap(p, "pad", gen_next, &g, CHUNK, 1, WINDOW, &it), 0);
    for (uint32_t i = 0; i < N; i++) {
        void *v = NULL;
        size_t n = 0;
        int rc = mpb_imap_next(it, 30000, &v, &n);
        if (rc) fail_msg("imap result %u: %s", i, mpb_errmsg(c));
        const uint8_t *b = v;
        uint64_t x = 0;
        if (n == 3 + 1024 && b[0] == 0xc5)
            for (int k = 0; k < 8; k++)
                x = x << 8 | b[3 + k];
        if (n != 3 + 1024 || x != i || b[3 + 1023] != (i & 0xff))
            fail_msg("imap result %u: %zu bytes holding %llu", i, n, (unsigned long long)x);
        mpb_free(v);
        /* lazy: the input is read at most a window of chunks ahead of the results */
        if (g.produced > (uint64_t)i + 1 + WINDOW * CHUNK)
            fail_msg("after %u results the input was read to %llu", i + 1,
                     (unsigned long long)g.produced);
        if (i % 2500 == 0) {
            tp_fnstat_t s = tp_fn_stat(mon, "pad");
            if (s.queued + s.running + s.prefetched > held_max)
                held_max = s.queued + s.running + s.prefetched;
            long r = th_rss_kb(tp_broker.pid);
            if (r > brss_max) brss_max = r;
        }
    }
    void *v = NULL;
    size_t n;
    assert_int_equal(mpb_imap_next(it, 1000, &v, &n), MPB_ECLOSED);
    int64_t ms = th_now_ms() - t0;
    assert_int_equal(g.produced, N);
    mpb_imap_free(&it);
    long grew = maxrss_kb() - rss0, bgrew = brss_max - brss0;
    printf("imap: %d results of 1 KiB in %lld ms (%.0f items/s); client max RSS +%ld kB, broker "
           "VmRSS +%ld kB, at most %llu chunks queued+running\n",
           N, (long long)ms, N * 1000.0 / (double)(ms ? ms : 1), grew, bgrew,
           (unsigned long long)held_max);
    /* All results held would be > 100 MiB; the window holds 16 chunks of 100 KiB. */
    assert_true(grew < 32 * 1024);
    assert_true(bgrew < 32 * 1024);
    assert_true(held_max <= WINDOW);
    tp_fnstat_t s = tp_fn_stat(mon, "pad");
    assert_int_equal(s.done, N / CHUNK);
    assert_int_equal(s.queued + s.running + s.prefetched, 0);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- imap: an input that fails, and an iterator dropped early ---- */

typedef struct badgen {
    gen_t g;
    uint64_t fail_at;
} badgen_t;

static int badgen_next(void *arg, const void **item, size_t *len) {
    badgen_t *b = arg;
    if (b->g.produced == b->fail_at) return MPB_EVALUE;
    return gen_next(&b->g, item, len);
}

/* Waits until exactly one worker serves sleep_ms (the killed ones' sessions are gone). */
static void wait_one_worker(mpb_client_t *mon) {
    int64_t end = th_now_ms() + 10000;
    while (tp_fn_workers(mon, "sleep_ms") != 1) {
        if (th_now_ms() > end) fail_msg("not one worker for sleep_ms after 10 s");
        usleep(10000);
    }
}

static void test_imap_input_error_and_early_free(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    mpb_pool_t *p = start_pool4(c);
    /* the input fails after 55 items: those 55 results come, in order, then the error */
    for (int ordered = 1; ordered >= 0; ordered--) {
        badgen_t b = {.g = {.limit = 1000}, .fail_at = 55};
        mpb_imap_t *it;
        assert_int_equal(mpb_pool_imap(p, "square", badgen_next, &b, 10, ordered, 4, &it), 0);
        static char seen[55];
        memset(seen, 0, sizeof seen);
        for (int i = 0; i < 55; i++) {
            void *v = NULL;
            size_t n;
            int rc = mpb_imap_next(it, 10000, &v, &n);
            if (rc) fail_msg("imap (ordered %d) result %d: %s", ordered, i, mpb_errmsg(c));
            int64_t x = tp_unpack_int(v, n);
            mpb_free(v);
            int64_t r = (int64_t)llround(sqrt((double)x));
            assert_true(r >= 0 && r < 55 && r * r == x && !seen[r]);
            if (ordered) assert_int_equal(r, i);
            seen[r] = 1;
        }
        void *v = NULL;
        size_t n;
        assert_int_equal(mpb_imap_next(it, 10000, &v, &n), MPB_EVALUE);
        assert_int_equal(mpb_imap_next(it, 1000, &v, &n), MPB_ECLOSED);
        assert_int_equal(b.g.produced, 55);
        mpb_imap_free(&it);
    }
    /* dropped after a few results: what it had queued is cancelled (one worker, 1 slot) */
    assert_int_equal(tp_stop_all_workers(), 0);
    tp_start_worker(MPB_DEMO_LIB, "sleep_ms", 1, 0, 0, NULL);
    wait_one_worker(mon);
    mpb_imap_t *it;
    gen_t g = {.limit = 100000};
    /* sleep_ms(i) for i = 0, 1, 2...: short at first */
    assert_int_equal(mpb_pool_imap(p, "sleep_ms", gen_next, &g, 1, 1, 32, &it), 0);
    for (int i = 0; i < 5; i++) {
        void *v = NULL;
        size_t n;
        assert_int_equal(mpb_imap_next(it, 10000, &v, &n), 0);
        assert_int_equal(tp_unpack_int(v, n), i);
        mpb_free(v);
    }
    tp_fnstat_t s = tp_fn_stat(mon, "sleep_ms");
    assert_true(s.queued >= 20);
    mpb_imap_free(&it);
    int64_t end = th_now_ms() + 5000;
    for (;;) {
        s = tp_fn_stat(mon, "sleep_ms");
        if (s.queued + s.running + s.prefetched == 0 || th_now_ms() > end) break;
        usleep(10000);
    }
    assert_int_equal(s.queued + s.running + s.prefetched, 0);
    assert_true(g.produced <= 5 + 32 + 1);
    assert_true(s.done <= 10);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- apply_async with a callback, 5 tasks, Pool(4) ---- */

typedef struct rec {
    int64_t x;
    int calls, ecalls, err;
    int64_t value;
    char msg[256];
    bool in_main_thread;
} rec_t;

static void on_value(void *arg, const void *res, size_t len) {
    rec_t *r = arg;
    r->calls++;
    r->value = tp_unpack_int(res, len);
    r->in_main_thread = pthread_equal(pthread_self(), main_thread);
}

static void on_error(void *arg, int err, const char *msg) {
    rec_t *r = arg;
    r->ecalls++;
    r->err = err;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
    r->in_main_thread = pthread_equal(pthread_self(), main_thread);
}

static void test_seed_apply_async_callbacks_5_tasks(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = start_pool4(c);
    rec_t recs[5] = {{0}};
    for (int i = 0; i < 5; i++) {
        recs[i].x = i + 1;
        size_t al;
        const uint8_t *a = tp_args1(i + 1, &al);
        assert_int_equal(
            mpb_pool_apply_async(p, "square", a, al, on_value, on_error, &recs[i], NULL), 0);
    }
    assert_int_equal(mpb_pool_finish(p), 0);
    assert_int_equal(mpb_pool_join(p, 20000), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(recs[i].calls, 1);
        assert_int_equal(recs[i].ecalls, 0);
        assert_int_equal(recs[i].value, (i + 1) * (i + 1));
        assert_true(recs[i].in_main_thread);
    }
    /* nothing more arrives later */
    assert_int_equal(mpb_pool_join(p, 100), 0);
    assert_int_equal(mpb_pool_poll(p, 100), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(recs[i].calls, 1);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- callbacks that submit more work (a common Pool pattern) ---- */

typedef struct chain {
    mpb_pool_t *p;
    mpb_dict_t *d;
    int64_t x;
    int depth, calls, errs;
    int64_t last;
} chain_t;

static void chain_err(void *arg, int err, const char *msg) {
    (void)err;
    (void)msg;
    ((chain_t *)arg)->errs++;
}

/* 2 -> 4 -> 16 -> 256 -> 65536: each result is squared again, submitted from the callback,
 * which also counts itself in a dict on the same client */
static void chain_next(void *arg, const void *res, size_t len) {
    chain_t *ch = arg;
    ch->calls++;
    ch->last = tp_unpack_int(res, len);
    if (mpb_dict_incr_str(ch->d, "callbacks", 1, NULL)) ch->errs++; /* a call of its own */
    if (ch->calls < ch->depth) {
        size_t al;
        const uint8_t *a = tp_args1(ch->last, &al);
        if (mpb_pool_apply_async(ch->p, "square", a, al, chain_next, chain_err, ch, NULL))
            ch->errs++;
    }
}

static void test_callbacks_may_submit_more_tasks(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = start_pool4(c);
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "chains", &d), 0);
    enum { NCH = 20 };
    chain_t ch[NCH];
    for (int i = 0; i < NCH; i++) {
        ch[i] = (chain_t){.p = p, .d = d, .x = 2, .depth = 4};
        size_t al;
        const uint8_t *a = tp_args1(2, &al);
        assert_int_equal(
            mpb_pool_apply_async(p, "square", a, al, chain_next, chain_err, &ch[i], NULL), 0);
    }
    /* meanwhile synchronous calls on the same client, while callbacks run inside them */
    for (int i = 0; i < 30; i++) {
        size_t al, rl;
        const uint8_t *a = tp_args1(i, &al);
        void *res = NULL;
        int rc = mpb_pool_apply(p, "square", a, al, 10000, &res, &rl);
        if (rc) fail_msg("apply %d between callbacks: %s", i, mpb_errmsg(c));
        assert_int_equal(tp_unpack_int(res, rl), i * i);
        mpb_free(res);
    }
    int64_t end = th_now_ms() + 20000;
    for (;;) {
        int all = 1;
        for (int i = 0; i < NCH; i++)
            all &= ch[i].calls == ch[i].depth || ch[i].errs > 0;
        if (all || th_now_ms() > end) break;
        mpb_pool_poll(p, 50);
    }
    for (int i = 0; i < NCH; i++) {
        assert_int_equal(ch[i].errs, 0);
        assert_int_equal(ch[i].calls, 4);
        assert_int_equal(ch[i].last, 65536);
    }
    int64_t v = 0;
    assert_int_equal(mpb_dict_get_i64(d, "callbacks", &v), 0);
    assert_int_equal(v, NCH * 4);
    assert_int_equal(mpb_pool_finish(p), 0);
    assert_int_equal(mpb_pool_join(p, 10000), 0);
    mpb_dict_close(&d);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- apply called serially ---- */

static void test_seed_apply_serially(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = start_pool4(c);
    int64_t t0 = th_now_ms();
    for (int i = 0; i < 20; i++) {
        size_t al, rl;
        const uint8_t *a = tp_args1(i - 7, &al);
        void *res = NULL;
        int rc = mpb_pool_apply(p, "square", a, al, 10000, &res, &rl);
        if (rc) fail_msg("apply %d: %s", i, mpb_errmsg(c));
        assert_int_equal(tp_unpack_int(res, rl), (i - 7) * (i - 7));
        mpb_free(res);
    }
    printf("apply: 20 serial round trips in %lld ms\n", (long long)(th_now_ms() - t0));
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- map over a range with chunksize 1 and 100 ---- */

static double timed_map(mpb_client_t *c, mpb_pool_t *p, uint32_t n, size_t chunksize) {
    mpb__buf_t items = {0};
    tp_items_range(&items, n);
    void *res = NULL;
    size_t rl;
    int64_t t0 = th_now_ms();
    int rc = mpb_pool_map(p, "square", items.p, items.len, chunksize, 60000, &res, &rl);
    int64_t ms = th_now_ms() - t0;
    if (rc) fail_msg("map of %u, chunksize %zu: %s", n, chunksize, mpb_errmsg(c));
    assert_int_equal(tp_check_ints(res, rl, n, tp_sq), -1);
    mpb_free(res);
    mpb__buf_free(&items);
    return n * 1000.0 / (double)(ms ? ms : 1);
}

static void test_seed_map_chunksize_1_and_100(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = start_pool4(c);
    double r1 = timed_map(c, p, 1000, 1);
    double r100 = timed_map(c, p, 1000, 100);
    double r0 = timed_map(c, p, 1000, 0); /* chosen as Python does */
    /* tiny-task throughput, 2 workers x concurrency 2 */
    double t1 = timed_map(c, p, 5000, 1);
    double t100 = timed_map(c, p, 100000, 100);
    printf("map square: 1000 items: %.0f/s (chunksize 1), %.0f/s (100), %.0f/s (auto); "
           "5000 items chunksize 1: %.0f tasks/s; 100000 items chunksize 100: %.0f items/s\n",
           r1, r100, r0, t1, t100);
    /* the empty map is done at once */
    void *res = NULL;
    size_t rl;
    assert_int_equal(mpb_pool_map(p, "square", "\x90", 1, 1, 1000, &res, &rl), 0);
    assert_int_equal(rl, 1);
    assert_int_equal(((uint8_t *)res)[0], 0x90);
    mpb_free(res);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- imap_unordered: every result exactly once, in any order ---- */

static void test_seed_imap_unordered(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = start_pool4(c);
    enum { N = 10000 };
    static char seen[N];
    memset(seen, 0, sizeof seen);
    gen_t g = {.limit = N};
    mpb_imap_t *it;
    assert_int_equal(mpb_pool_imap(p, "square", gen_next, &g, 10, 0, 8, &it), 0);
    uint32_t got = 0, out_of_order = 0;
    int64_t last = -1;
    for (;;) {
        void *v = NULL;
        size_t n;
        int rc = mpb_imap_next(it, 30000, &v, &n);
        if (rc == MPB_ECLOSED) break;
        if (rc) fail_msg("imap_unordered after %u results: %s", got, mpb_errmsg(c));
        int64_t x = tp_unpack_int(v, n);
        mpb_free(v);
        int64_t r = (int64_t)llround(sqrt((double)x));
        if (r < 0 || r >= N || r * r != x)
            fail_msg("imap_unordered: unexpected result %lld", (long long)x);
        if (seen[r]++) fail_msg("imap_unordered: result of %lld twice", (long long)r);
        if (r < last) out_of_order++;
        last = r;
        got++;
    }
    assert_int_equal(got, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    printf("imap_unordered: %u results, %u came before an earlier item's\n", got, out_of_order);
    mpb_imap_free(&it);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- starmap with add over pairs ---- */

static int64_t triple(int64_t x) {
    return 3 * x;
}

typedef struct mrec {
    int calls, ecalls;
    long check;
} mrec_t;

static void on_triples(void *arg, const void *res, size_t len) {
    mrec_t *m = arg;
    m->calls++;
    m->check = tp_check_ints(res, len, 100, triple);
}

static void on_merr(void *arg, int err, const char *msg) {
    (void)err;
    (void)msg;
    ((mrec_t *)arg)->ecalls++;
}

static void test_seed_starmap(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = start_pool4(c);
    mpb__buf_t pairs = {0};
    mpb__w_array(&pairs, 500);
    for (int i = 0; i < 500; i++) { /* [i, 2i]: widths from fixint to int32 */
        mpb__w_array(&pairs, 2);
        mpb__w_int(&pairs, i * 1000);
        mpb__w_int(&pairs, 2 * i * 1000);
    }
    void *res = NULL;
    size_t rl;
    assert_int_equal(mpb_pool_starmap(p, "add", pairs.p, pairs.len, 7, 20000, &res, &rl), 0);
    mpb__rd_t r = {res, (uint8_t *)res + rl};
    uint32_t n;
    assert_int_equal(mpb__rd_array(&r, &n), 0);
    assert_int_equal(n, 500);
    for (int i = 0; i < 500; i++) {
        int64_t v;
        assert_int_equal(mpb__rd_int(&r, &v), 0);
        assert_int_equal(v, 3 * i * 1000);
    }
    mpb_free(res);
    /* starmap_async, chunksize chosen by the pool, with a callback */
    mpb__buf_reset(&pairs);
    mpb__w_array(&pairs, 100);
    for (int i = 0; i < 100; i++) {
        mpb__w_array(&pairs, 2);
        mpb__w_int(&pairs, i);
        mpb__w_int(&pairs, 2 * i);
    }
    mrec_t m = {0};
    mpb_async_t *a = NULL;
    assert_int_equal(
        mpb_pool_starmap_async(p, "add", pairs.p, pairs.len, 0, on_triples, on_merr, &m, &a), 0);
    assert_int_equal(mpb_async_wait(a, 20000), 1);
    assert_int_equal(m.calls, 1);
    assert_int_equal(m.ecalls, 0);
    assert_int_equal(m.check, -1);
    assert_int_equal(mpb_async_successful(a), 1);
    assert_int_equal(mpb_async_get(a, 0, &res, &rl), 0);
    assert_int_equal(tp_check_ints(res, rl, 100, triple), -1);
    mpb_free(res);
    mpb_async_free(&a);
    /* an item that is not an argument array is refused before anything is sent */
    assert_int_equal(mpb_pool_starmap(p, "add", "\x92\x01\x02", 3, 1, 1000, &res, &rl), MPB_EINVAL);
    mpb__buf_free(&pairs);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- a function that fails ---- */

static void test_remote_error_reaches_the_caller(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = start_pool4(c);
    size_t al, rl;
    const uint8_t *a7 = tp_args1(7, &al);
    void *res = NULL;
    /* apply: get reports the remote message */
    assert_int_equal(mpb_pool_apply(p, "fail", a7, al, 10000, &res, &rl), MPB_EREMOTE);
    assert_non_null(strstr(mpb_errmsg(c), "fail(7)"));
    assert_non_null(strstr(mpb_errmsg(c), "always fails"));
    /* apply_async: error_callback runs once, successful() is false, get fails the same way */
    rec_t r = {0};
    mpb_async_t *a = NULL;
    const uint8_t *a8 = tp_args1(8, &al);
    assert_int_equal(mpb_pool_apply_async(p, "fail", a8, al, on_value, on_error, &r, &a), 0);
    assert_int_equal(mpb_async_wait(a, 10000), 1);
    assert_int_equal(r.ecalls, 1);
    assert_int_equal(r.calls, 0);
    assert_int_equal(r.err, MPB_EREMOTE);
    assert_non_null(strstr(r.msg, "fail(8) always fails"));
    assert_true(r.in_main_thread);
    assert_int_equal(mpb_async_ready(a), 1);
    assert_int_equal(mpb_async_successful(a), 0);
    assert_int_equal(mpb_async_get(a, 0, &res, &rl), MPB_EREMOTE);
    assert_non_null(strstr(mpb_errmsg(c), "fail(8) always fails"));
    mpb_async_free(&a);
    /* successful() before the result is ready is an error, as Python's ValueError */
    const uint8_t *a300 = tp_args1(300, &al);
    assert_int_equal(mpb_pool_apply_async(p, "sleep_ms", a300, al, NULL, NULL, NULL, &a), 0);
    assert_int_equal(mpb_async_ready(a), 0);
    assert_int_equal(mpb_async_successful(a), MPB_EINVAL);
    assert_int_equal(mpb_async_wait(a, 0), 0);
    assert_int_equal(mpb_async_wait(a, 10000), 1);
    assert_int_equal(mpb_async_successful(a), 1);
    assert_int_equal(mpb_async_get(a, 0, &res, &rl), 0);
    assert_int_equal(tp_unpack_int(res, rl), 300);
    mpb_free(res);
    mpb_async_free(&a);
    /* map: one failing item fails the map with that item's message (the first in order) */
    mpb__buf_t items = {0};
    mpb__w_array(&items, 100);
    for (int i = 0; i < 100; i++)
        mpb__w_int(&items, i == 37 ? 4000000000LL : i == 60 ? 5000000000LL : i);
    assert_int_equal(mpb_pool_map(p, "square", items.p, items.len, 10, 20000, &res, &rl),
                     MPB_EREMOTE);
    assert_non_null(strstr(mpb_errmsg(c), "square(4000000000) overflows"));
    assert_int_equal(mpb_pool_map(p, "square", items.p, items.len, 1, 20000, &res, &rl),
                     MPB_EREMOTE);
    assert_non_null(strstr(mpb_errmsg(c), "square(4000000000) overflows"));
    /* map_async: the error callback, once */
    mrec_t m = {0};
    assert_int_equal(
        mpb_pool_map_async(p, "square", items.p, items.len, 3, on_triples, on_merr, &m, &a), 0);
    assert_int_equal(mpb_async_wait(a, 20000), 1);
    assert_int_equal(m.ecalls, 1);
    assert_int_equal(m.calls, 0);
    assert_int_equal(mpb_async_successful(a), 0);
    assert_int_equal(mpb_async_get(a, 0, &res, &rl), MPB_EREMOTE);
    assert_non_null(strstr(mpb_errmsg(c), "square(4000000000)"));
    mpb_async_free(&a);
    /* imap: the failed item says so, and the iteration goes on */
    gen_t g = {.limit = 5};
    mpb_imap_t *it;
    assert_int_equal(mpb_pool_imap(p, "fail", gen_next, &g, 2, 1, 4, &it), 0);
    for (int i = 0; i < 5; i++) {
        char want[32];
        snprintf(want, sizeof want, "fail(%d) always fails", i);
        assert_int_equal(mpb_imap_next(it, 10000, &res, &rl), MPB_EREMOTE);
        assert_non_null(strstr(mpb_errmsg(c), want));
    }
    assert_int_equal(mpb_imap_next(it, 1000, &res, &rl), MPB_ECLOSED);
    mpb_imap_free(&it);
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- flow control ---- */

/* Runs a map of n x conc(ms) on worker w while sampling what the broker has given it. conc
 * answers the most calls its process has run at once so far: *most_run is the largest of
 * those (the worker's own count), and the return value the most tasks the broker had out to
 * the worker at once (running plus prefetched). */
static int64_t credit_during_map(mpb_pool_t *p, mpb_client_t *mon, pid_t w, uint32_t n, int ms,
                                 int64_t *most_run) {
    mpb__buf_t items = {0};
    mpb__w_array(&items, n);
    for (uint32_t i = 0; i < n; i++)
        mpb__w_int(&items, ms);
    mpb_async_t *a = NULL;
    assert_int_equal(mpb_pool_map_async(p, "conc", items.p, items.len, 1, NULL, NULL, NULL, &a), 0);
    int64_t most = 0, end = th_now_ms() + 30000;
    int samples = 0;
    while (!mpb_async_ready(a) && th_now_ms() < end) {
        tp_wstat_t s;
        if (tp_worker_stat(mon, w, &s) && s.running + s.prefetched > most)
            most = s.running + s.prefetched;
        samples++;
        mpb_pool_poll(p, 2);
    }
    void *res = NULL;
    size_t rl;
    assert_int_equal(mpb_async_get(a, 0, &res, &rl), 0);
    mpb_async_free(&a);
    mpb__rd_t r = th_rd_array(res, rl, n);
    *most_run = 0;
    for (uint32_t i = 0; i < n; i++) {
        int64_t v;
        assert_int_equal(mpb__rd_int(&r, &v), 0);
        if (v > *most_run) *most_run = v;
    }
    mpb_free(res);
    mpb__buf_free(&items);
    printf("flow control: %d samples, at most %lld tasks at the worker, at most %lld running in "
           "it\n",
           samples, (long long)most, (long long)*most_run);
    return most;
}

static int64_t same(int64_t x) {
    return x;
}

static void test_flow_control_worker_never_exceeds_its_credit(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    /* concurrency 1, prefetch 1: one runs at a time, at most 2 held */
    pid_t w = tp_start_worker(MPB_TESTFNS_LIB, "conc", 1, 1, 0, NULL);
    tp_wait_workers(mon, "conc", 1, 10000);
    int64_t run;
    int64_t held = credit_during_map(p, mon, w, 30, 20, &run);
    assert_int_equal(run, 1);
    assert_true(held >= 1 && held <= 2);
    tp_kill_worker(w);
    /* concurrency 3, prefetch 2: up to 3 at once, at most 5 held */
    w = tp_start_worker(MPB_TESTFNS_LIB, "conc", 3, 2, 0, NULL);
    tp_wait_workers(mon, "conc", 1, 10000);
    held = credit_during_map(p, mon, w, 60, 20, &run);
    assert_true(run >= 2 && run <= 3);
    assert_true(held >= 3 && held <= 5);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

static void test_flow_control_slow_worker_does_not_delay_the_rest(void **state) {
    (void)state;
    enum { N = 100, SLOW_MS = 500 };
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    /* nap(n) sleeps $MPB_TEST_NAP_MS in its worker: one slow worker with the default prefetch,
     * registered first, and two fast ones */
    setenv("MPB_TEST_NAP_MS", "500", 1);
    pid_t slow = tp_start_worker(MPB_TESTFNS_LIB, "nap", 1, 1, 0, NULL);
    setenv("MPB_TEST_NAP_MS", "5", 1);
    tp_wait_workers(mon, "nap", 1, 10000);
    pid_t f1 = tp_start_worker(MPB_TESTFNS_LIB, "nap", 4, 1, 0, NULL);
    pid_t f2 = tp_start_worker(MPB_TESTFNS_LIB, "nap", 4, 1, 0, NULL);
    unsetenv("MPB_TEST_NAP_MS");
    mpb_pool_t *p = tp_pool_ready(mon, "nap", 3, c);
    mpb__buf_t items = {0};
    tp_items_range(&items, N);
    void *res = NULL;
    size_t rl;
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_pool_map(p, "nap", items.p, items.len, 1, 60000, &res, &rl), 0);
    int64_t ms = th_now_ms() - t0;
    assert_int_equal(tp_check_ints(res, rl, N, same), -1);
    mpb_free(res);
    tp_wstat_t ss, fs1, fs2;
    assert_true(tp_worker_stat(mon, slow, &ss));
    assert_true(tp_worker_stat(mon, f1, &fs1));
    assert_true(tp_worker_stat(mon, f2, &fs2));
    printf("slow worker (%d ms a task) ran %llu, fast ones %llu and %llu; %d tasks in %lld ms "
           "(the slow one alone: %d ms)\n",
           SLOW_MS, (unsigned long long)ss.done, (unsigned long long)fs1.done,
           (unsigned long long)fs2.done, N, (long long)ms, N * SLOW_MS);
    /* the slow one holds its credit (1 running + 1 prefetched, so 2; a little slack for a slow
     * machine); the fast ones do the rest, and the map ends long before the slow worker alone
     * could finish it */
    assert_true(ss.done <= 4);
    assert_int_equal(ss.done + fs1.done + fs2.done, N);
    assert_true(fs1.done + fs2.done >= N - 4);
    assert_true(ms < N * SLOW_MS / 5);
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- close, join, terminate, timeouts ---- */

static void test_close_then_join_waits_for_all(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = start_pool4(c);
    size_t al;
    const uint8_t *a = tp_args1(50, &al);
    assert_int_equal(mpb_pool_join(p, 100), MPB_EINVAL); /* join before close */
    rec_t recs[20] = {{0}};
    for (int i = 0; i < 20; i++)
        assert_int_equal(
            mpb_pool_apply_async(p, "sleep_ms", a, al, on_value, on_error, &recs[i], NULL), 0);
    mrec_t m = {0};
    mpb__buf_t items = {0};
    mpb__w_array(&items, 100);
    for (int i = 0; i < 100; i++) {
        mpb__w_array(&items, 2);
        mpb__w_int(&items, i);
        mpb__w_int(&items, 2 * i);
    }
    assert_int_equal(
        mpb_pool_starmap_async(p, "add", items.p, items.len, 9, on_triples, on_merr, &m, NULL), 0);
    assert_int_equal(mpb_pool_finish(p), 0);
    /* closed: nothing more may be submitted */
    assert_int_equal(mpb_pool_apply_async(p, "sleep_ms", a, al, NULL, NULL, NULL, NULL),
                     MPB_EINVAL);
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_pool_join(p, 20000), 0);
    int64_t ms = th_now_ms() - t0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(recs[i].calls, 1);
        assert_int_equal(recs[i].value, 50);
    }
    assert_int_equal(m.calls, 1);
    assert_int_equal(m.check, -1);
    /* 20 x 50 ms on 4 slots: at least 5 rounds */
    assert_true(ms >= 200);
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

static void test_terminate_cancels_the_rest(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    pid_t w;
    mpb_pool_t *p = start_sleeper(c, mon, &w);
    size_t al;
    const uint8_t *a = tp_args1(200, &al);
    tp_tally_t t = {0};
    mpb_async_t *h[50];
    for (int i = 0; i < 50; i++)
        assert_int_equal(mpb_pool_apply_async(p, "sleep_ms", a, al, tp_tally_ok, tp_tally_err, &t,
                                              i < 10 ? &h[i] : NULL),
                         0);
    /* and a map, which terminate cancels as a whole */
    mpb__buf_t items = {0};
    mpb__w_array(&items, 20);
    for (int i = 0; i < 20; i++)
        mpb__w_int(&items, 200);
    mpb_async_t *ma = NULL;
    assert_int_equal(
        mpb_pool_map_async(p, "sleep_ms", items.p, items.len, 1, NULL, NULL, NULL, &ma), 0);
    int64_t end = th_now_ms() + 300;
    while (th_now_ms() < end)
        mpb_pool_poll(p, (int)(end - th_now_ms()));
    assert_int_equal(mpb_pool_terminate(p), 0);
    assert_int_equal(mpb_pool_join(p, 10000), 0);
    printf("terminate after 300 ms: %d of 50 done, %d canceled, %d other\n", t.ok, t.canceled,
           t.other);
    assert_int_equal(t.ok + t.canceled, 50);
    assert_int_equal(t.other, 0);
    assert_true(t.ok <= 3); /* one 200 ms task done in 300 ms, perhaps a second */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(mpb_async_ready(h[i]), 1);
        void *res = NULL;
        size_t rl;
        int rc = mpb_async_get(h[i], 0, &res, &rl);
        if (rc == 0)
            mpb_free(res);
        else
            assert_int_equal(rc, MPB_ECANCELED);
        assert_int_equal(mpb_async_successful(h[i]), rc == 0);
        mpb_async_free(&h[i]);
    }
    assert_int_equal(mpb_async_get(ma, 0, NULL, NULL), MPB_ECANCELED);
    mpb_async_free(&ma);
    /* the broker's queue is empty, and what was queued never runs */
    tp_fnstat_t s = tp_fn_stat(mon, "sleep_ms");
    assert_int_equal(s.queued, 0);
    tp_wstat_t ws0, ws1;
    assert_true(tp_worker_stat(mon, w, &ws0));
    tp_sleep_ms(600);
    assert_true(tp_worker_stat(mon, w, &ws1));
    s = tp_fn_stat(mon, "sleep_ms");
    assert_int_equal(s.queued, 0);
    assert_int_equal(s.running, 0);
    assert_int_equal(ws1.done, ws0.done);
    assert_true(ws1.done <= 3);
    assert_true(s.done <= 3);
    /* a closed pool takes nothing more */
    assert_int_equal(mpb_pool_apply_async(p, "sleep_ms", a, al, NULL, NULL, NULL, NULL),
                     MPB_EINVAL);
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

static void test_get_times_out_when_no_worker_serves_the_function(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    size_t al, rl;
    const uint8_t *a = tp_args1(1, &al);
    mpb_async_t *h = NULL;
    rec_t r = {0};
    assert_int_equal(mpb_pool_apply_async(p, "nobody", a, al, on_value, on_error, &r, &h), 0);
    int64_t t0 = th_now_ms();
    void *res = NULL;
    assert_int_equal(mpb_async_get(h, 300, &res, &rl), MPB_ETIMEDOUT);
    int64_t ms = th_now_ms() - t0;
    assert_true(ms >= 290 && ms < 3000);
    assert_non_null(strstr(mpb_errmsg(c), "no worker serves function"));
    assert_int_equal(mpb_async_ready(h), 0);
    assert_int_equal(mpb_async_successful(h), MPB_EINVAL);
    /* apply with a timeout says the same */
    assert_int_equal(mpb_pool_apply(p, "nobody", a, al, 200, &res, &rl), MPB_ETIMEDOUT);
    assert_non_null(strstr(mpb_errmsg(c), "no worker serves function"));
    /* a map too */
    mpb__buf_t items = {0};
    tp_items_range(&items, 10);
    assert_int_equal(mpb_pool_map(p, "nobody", items.p, items.len, 2, 200, &res, &rl),
                     MPB_ETIMEDOUT);
    assert_non_null(strstr(mpb_errmsg(c), "no worker serves"));
    /* join: before close it is refused; after, it times out while the task waits */
    assert_int_equal(mpb_pool_join(p, 100), MPB_EINVAL);
    assert_int_equal(mpb_pool_finish(p), 0);
    assert_int_equal(mpb_pool_join(p, 200), MPB_ETIMEDOUT);
    assert_int_equal(r.calls + r.ecalls, 0);
    /* terminate: the waiting task is cancelled */
    assert_int_equal(mpb_pool_terminate(p), 0);
    assert_int_equal(mpb_pool_join(p, 5000), 0);
    assert_int_equal(r.ecalls, 1);
    assert_int_equal(r.err, MPB_ECANCELED);
    assert_int_equal(mpb_async_get(h, 0, &res, &rl), MPB_ECANCELED);
    assert_int_equal(mpb_async_successful(h), 0);
    mpb_async_free(&h);
    tp_fnstat_t s = tp_fn_stat(c, "nobody");
    assert_int_equal(s.queued, 0);
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- imap iterators under terminate and mpb_pool_close ---- */

static void test_imap_canceled_by_terminate_and_detached_by_free(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    pid_t w;
    mpb_pool_t *p = start_sleeper(c, mon, &w);
    /* 1000 x sleep_ms(g) with g counting up from 0: the first ones are quick */
    gen_t g = {.limit = 1000}, g2 = {.limit = 1000};
    mpb_imap_t *it, *it2;
    assert_int_equal(mpb_pool_imap(p, "sleep_ms", gen_next, &g, 1, 1, 8, &it), 0);
    assert_int_equal(mpb_pool_imap(p, "sleep_ms", gen_next, &g2, 1, 0, 8, &it2), 0);
    void *res = NULL;
    size_t rl;
    assert_int_equal(mpb_imap_next(it, 10000, &res, &rl), 0);
    assert_int_equal(tp_unpack_int(res, rl), 0);
    mpb_free(res);
    /* terminate reaches the iterators: their queued chunks are cancelled, next says so */
    assert_int_equal(mpb_pool_terminate(p), 0);
    th_assert_err(mpb_imap_next(it, 1000, &res, &rl), MPB_ECANCELED, c, "terminate", NULL);
    th_assert_err(mpb_imap_next(it2, 1000, &res, &rl), MPB_ECANCELED, c, "terminate", NULL);
    int64_t end = th_now_ms() + 10000;
    tp_fnstat_t s;
    for (;;) {
        s = tp_fn_stat(mon, "sleep_ms");
        if (s.queued + s.running + s.prefetched == 0) break;
        if (th_now_ms() > end) fail_msg("the iterators' tasks are still out after terminate");
        usleep(5000);
    }
    assert_true(s.canceled >= 12);
    assert_true(g.produced <= 10 && g2.produced <= 9); /* nothing more was read */
    mpb_imap_free(&it);
    mpb_imap_free(&it2);
    mpb_pool_close(&p);
    /* mpb_pool_close with iterators alive: they are detached (next: MPB_ECLOSED), not left
     * pointing at a freed pool (ASan builds check) */
    assert_int_equal(mpb_pool_open(c, &p), 0);
    gen_t g3 = {.limit = 100};
    assert_int_equal(mpb_pool_imap(p, "sleep_ms", gen_next, &g3, 1, 1, 8, &it), 0);
    mpb_pool_close(&p);
    assert_int_equal(mpb_imap_next(it, 1000, &res, &rl), MPB_ECLOSED);
    assert_int_equal(mpb_imap_next(it, 0, &res, &rl), MPB_ECLOSED);
    mpb_imap_free(&it);
    end = th_now_ms() + 10000;
    while ((s = tp_fn_stat(mon, "sleep_ms")).queued) {
        if (th_now_ms() > end) fail_msg("the freed pool's iterator tasks are still queued");
        usleep(5000);
    }
    tp_kill_worker(w);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- the mpb CLI's pool commands ---- */

/* Runs mpb -e EP -k KEY args... with input on stdin; stdout and stderr in out/err (up to
 * their size, NUL-terminated). Returns its exit status. */
static int run_mpb(const char *input, char *out, size_t outn, char *err, size_t errn, ...) {
    const char *argv[32] = {th_mpb_cli, "-e", tp_broker.endpoint, "-k", tp_broker.keyfile};
    int argc = 5;
    va_list ap;
    va_start(ap, errn);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 30)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    char path[2][400];
    for (int i = 0; i < 2; i++)
        snprintf(path[i], sizeof path[i], "%s/cli.%d", tp_broker.dir, i);
    int in[2];
    if (pipe(in) != 0) fail_msg("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        close(in[1]);
        for (int i = 0; i < 2; i++) {
            int fd = open(path[i], O_WRONLY | O_CREAT | O_TRUNC, 0600);
            dup2(fd, 1 + i);
        }
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    close(in[0]);
    size_t len = input ? strlen(input) : 0, off = 0;
    while (off < len) {
        ssize_t k = write(in[1], input + off, len - off);
        if (k <= 0) break;
        off += (size_t)k;
    }
    close(in[1]);
    int st = th_wait(pid, 60);
    char *bufs[2] = {out, err};
    size_t sizes[2] = {outn, errn};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(path[i], "r");
        size_t k = f ? fread(bufs[i], 1, sizes[i] - 1, f) : 0;
        bufs[i][k] = 0;
        if (f) fclose(f);
    }
    return st;
}

static void test_cli_pool_commands(void **state) {
    (void)state;
    char out[65536], err[4096];
    /* the timeout it was given, and why */
    int st = run_mpb(NULL, out, sizeof out, err, sizeof err, "pool", "map", "nobody", "[1]",
                     "--timeout", "1", NULL);
    printf("mpb pool map nobody: exit %d: %s", st, err);
    assert_int_not_equal(st, 0);
    assert_non_null(strstr(err, "timed out after 1000 ms: no worker serves function 'nobody'"));
    mpb_client_t *c = th_connect(&tp_broker);
    pid_t w = tp_start_worker(MPB_DEMO_LIB, "square,sleep_ms", 2, 1, 0, NULL);
    tp_wait_workers(c, "square", 1, 10000);
    /* JSON from stdin: past what one command-line argument may hold (128 KiB) */
    enum { N = 40000 };
    size_t cap = (size_t)N * 8 + 16, k = 0;
    char *in = malloc(cap);
    k += (size_t)snprintf(in + k, cap - k, "[");
    for (int i = 0; i < N; i++)
        k += (size_t)snprintf(in + k, cap - k, "%s%d", i ? "," : "", i);
    snprintf(in + k, cap - k, "]\n");
    assert_true(strlen(in) > 128 * 1024);
    char *big = malloc(1 << 20);
    st = run_mpb(in, big, 1 << 20, err, sizeof err, "pool", "map", "square", "-", "--chunksize",
                 "500", NULL);
    if (st) fail_msg("mpb pool map square - : exit %d: %s", st, err);
    assert_true(!strncmp(big, "[0,1,4,9,16,", 12));
    assert_non_null(strstr(big, ",1599920001]")); /* 39999 squared, last */
    free(big);
    free(in);
    st = run_mpb("12", out, sizeof out, err, sizeof err, "pool", "apply", "square", "-", NULL);
    assert_int_equal(st, 0);
    assert_string_equal(out, "144\n");
    /* the function's own message, once */
    st = run_mpb(NULL, out, sizeof out, err, sizeof err, "pool", "apply", "sleep_ms", "-1", NULL);
    assert_int_not_equal(st, 0);
    assert_non_null(strstr(err, "sleep_ms: -1 is not"));
    assert_null(strstr(err, "sleep_ms: sleep_ms"));
    /* 3000 applies out: one line for their caller, not one each */
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    size_t al;
    const uint8_t *a = tp_args1(1, &al);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(mpb_pool_apply_async(p, "nobody", a, al, NULL, NULL, NULL, NULL), 0);
    st = run_mpb(NULL, out, sizeof out, err, sizeof err, "pool", NULL);
    assert_int_equal(st, 0);
    printf("mpb pool with 3000 applies out: %zu bytes\n%s", strlen(out), out);
    assert_true(strlen(out) < 4096);
    assert_non_null(strstr(out, "CALLERS 1"));
    assert_null(strstr(out, "MAPS"));
    assert_int_equal(mpb_pool_terminate(p), 0);
    assert_int_equal(mpb_pool_join(p, 10000), 0);
    mpb_pool_close(&p);
    tp_kill_worker(w);
    mpb_close(&c);
    tp_check_healthy();
}

int main(void) {
    main_thread = pthread_self();
#ifdef POOL_ASAN
    /* the broker and the workers too (appended: what is already set stays, unless it sets
     * the quarantine itself) */
    char opts[1024];
    const char *old = getenv("ASAN_OPTIONS");
    snprintf(opts, sizeof opts, "quarantine_size_mb=4%s%s", old ? ":" : "", old ? old : "");
    setenv("ASAN_OPTIONS", opts, 1);
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_imap_100k_items_in_order_with_bounded_memory,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_imap_input_error_and_early_free, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_seed_apply_async_callbacks_5_tasks, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_callbacks_may_submit_more_tasks, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_seed_apply_serially, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_seed_map_chunksize_1_and_100, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_seed_imap_unordered, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_seed_starmap, tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_remote_error_reaches_the_caller, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_flow_control_worker_never_exceeds_its_credit,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_flow_control_slow_worker_does_not_delay_the_rest,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_close_then_join_waits_for_all, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_terminate_cancels_the_rest, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_get_times_out_when_no_worker_serves_the_function,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_imap_canceled_by_terminate_and_detached_by_free,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_cli_pool_commands, tp_setup_broker,
                                        tp_teardown_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
