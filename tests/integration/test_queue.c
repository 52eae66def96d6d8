/* test_queue.c - Queue and JoinableQueue against a real mpbrokerd, from many processes:
 * producers and consumers lose and duplicate nothing, join() waits for every task_done(),
 * timeouts answer on time and leave the queue as it was, misuse gets a clear error, and a
 * queue holds a million items. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpbproto.h"
#include "rawclient.h"
#include "th_child.h"

static th_broker_t B;

static size_t pack_int(uint8_t *buf, int64_t v) {
    return mpb_pack_i64(buf, v);
}

/* Takes an integer item; 0, or the error. */
static int get_int(mpb_queue_t *q, int timeout_ms, int64_t *v) {
    void *p;
    size_t n;
    int rc = mpb_queue_get(q, &p, &n, timeout_ms);
    if (rc) return rc;
    rc = mpb_unpack_i64(p, n, v);
    mpb_free(p);
    return rc;
}

static int put_int(mpb_queue_t *q, int64_t v, int timeout_ms) {
    uint8_t b[MPB_PACK_MAX_SCALAR];
    return mpb_queue_put(q, b, pack_int(b, v), timeout_ms);
}

/* Reads list name (integers) into out (up to max); returns how many, or -1. */
static long read_int_list(mpb_client_t *c, const char *name, int64_t *out, size_t max) {
    mpb_list_t *l;
    if (mpb_list_open(c, name, &l)) return -1;
    uint64_t len;
    long got = 0;
    if (mpb_list_len(l, &len) || len > max) got = -1;
    for (uint64_t start = 0; got >= 0 && start < len; start += 500) {
        void *items;
        size_t ilen, n;
        if (mpb_list_slice(l, (int64_t)start, (int64_t)start + 500, 500, &items, &ilen, &n)) {
            got = -1;
            break;
        }
        mpb__rd_t r = {items, (const uint8_t *)items + ilen};
        uint32_t an;
        if (mpb__rd_array(&r, &an) || an != n) got = -1;
        for (uint32_t i = 0; got >= 0 && i < an; i++)
            if (mpb__rd_int(&r, &out[got++])) got = -1;
        mpb_free(items);
    }
    mpb_list_close(&l);
    return got;
}

/* Appends the integers v[0..n) to list name with one list.extend. */
static int extend_ints(mpb_client_t *c, const char *name, const int64_t *v, size_t n) {
    mpb_list_t *l;
    int rc = mpb_list_open(c, name, &l);
    if (rc) return rc;
    mpb__buf_t b = {0};
    mpb__w_array(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        mpb__w_int(&b, v[i]);
    rc = b.oom ? MPB_ENOMEM : mpb_list_extend(l, b.p, b.len);
    mpb__buf_free(&b);
    mpb_list_close(&l);
    return rc;
}

/* ---- producers and consumers ---- */

#define PC_PRODUCERS 3
#define PC_ITEMS     1000
#define PC_CONSUMERS 2

static int pc_producer(mpb_client_t *c, int idx, TH_UNUSED const char *arg) {
    mpb_queue_t *q;
    CKC(c, mpb_queue_open(c, "pc", -1, -1, &q));
    for (int i = 0; i < PC_ITEMS; i++)
        CKC(c, put_int(q, idx * PC_ITEMS + i, MPB_FOREVER));
    mpb_queue_close(&q);
    return 0;
}

static int pc_consumer(mpb_client_t *c, int idx, TH_UNUSED const char *arg) {
    int me = idx;
    mpb_queue_t *q;
    CKC(c, mpb_queue_open(c, "pc", -1, -1, &q));
    static int64_t got[PC_PRODUCERS * PC_ITEMS];
    size_t n = 0;
    int64_t last[PC_PRODUCERS] = {-1, -1, -1};
    for (;;) {
        int64_t v;
        CKC(c, get_int(q, MPB_FOREVER, &v));
        if (v == -1) break; /* the sentinel: one per consumer */
        CK(v >= 0 && v < PC_PRODUCERS * PC_ITEMS && n < PC_PRODUCERS * PC_ITEMS);
        /* a FIFO queue hands each producer's items out in the order they were put */
        CK(v % PC_ITEMS > last[v / PC_ITEMS]);
        last[v / PC_ITEMS] = v % PC_ITEMS;
        got[n++] = v;
    }
    char name[32];
    snprintf(name, sizeof name, "pc.got.%d", me);
    CKC(c, extend_ints(c, name, got, n));
    mpb_queue_close(&q);
    return 0;
}

static void test_producers_consumers_each_item_exactly_once(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    /* bounded, so that producers also block on put */
    assert_int_equal(mpb_queue_open(c, "pc", 64, 0, &q), 0);
    pid_t cons[PC_CONSUMERS];
    for (int i = 0; i < PC_CONSUMERS; i++)
        cons[i] = th_client_spawn(pc_consumer, i, NULL);
    assert_int_equal(th_client_spawn_all(PC_PRODUCERS, pc_producer, NULL, 120), 0);
    for (int i = 0; i < PC_CONSUMERS; i++)
        assert_int_equal(put_int(q, -1, MPB_FOREVER), 0);
    for (int i = 0; i < PC_CONSUMERS; i++)
        assert_int_equal(th_wait(cons[i], 60), 0);

    static int64_t all[PC_PRODUCERS * PC_ITEMS + 1];
    size_t total = 0;
    for (int i = 0; i < PC_CONSUMERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "pc.got.%d", i);
        long n = read_int_list(c, name, all + total, PC_PRODUCERS * PC_ITEMS + 1 - total);
        assert_true(n >= 0);
        total += (size_t)n;
    }
    assert_int_equal(total, PC_PRODUCERS * PC_ITEMS);
    qsort(all, total, sizeof *all, th_cmp_i64);
    for (size_t i = 0; i < total; i++)
        assert_int_equal(all[i], (int64_t)i); /* once each */

    uint64_t n;
    assert_int_equal(mpb_queue_qsize(q, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(th_describe_int(c, "queue/pc", "getters"), 0);
    assert_int_equal(th_describe_int(c, "queue/pc", "putters"), 0);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* ---- JoinableQueue ---- */

#define JQ_N 300

static int jq_producer(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_queue_t *q;
    mpb_dict_t *d;
    CKC(c, mpb_queue_open(c, "jq", -1, 1, &q));
    CKC(c, mpb_dict_open(c, "jq.stats", &d));
    for (int i = 0; i < JQ_N; i++)
        CKC(c, put_int(q, i, MPB_FOREVER));
    CKC(c, mpb_dict_set_i64(d, "all_put", 1));
    CKC(c, mpb_queue_join(q, MPB_FOREVER));
    int64_t done;
    CKC(c, mpb_dict_get_i64(d, "done", &done));
    if (done != JQ_N)
        fprintf(stderr, "join returned with %lld of %d done\n", (long long)done, JQ_N);
    CK(done == JQ_N);
    mpb_dict_close(&d);
    mpb_queue_close(&q);
    return 0;
}

static int jq_consumer(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_queue_t *q;
    mpb_dict_t *d;
    CKC(c, mpb_queue_open(c, "jq", -1, 1, &q));
    CKC(c, mpb_dict_open(c, "jq.stats", &d));
    for (;;) {
        int64_t v;
        CKC(c, get_int(q, MPB_FOREVER, &v));
        if (v < 0) {
            CKC(c, mpb_queue_task_done(q));
            break;
        }
        usleep(300); /* some work, so that join() really waits */
        CKC(c, mpb_dict_incr_str(d, "done", 1, NULL));
        CKC(c, mpb_queue_task_done(q));
    }
    mpb_dict_close(&d);
    mpb_queue_close(&q);
    return 0;
}

static void test_joinable_queue_join_returns_after_every_task_done(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    mpb_dict_t *d;
    assert_int_equal(mpb_queue_open(c, "jq", 0, 1, &q), 0);
    assert_int_equal(mpb_dict_open(c, "jq.stats", &d), 0);
    assert_int_equal(mpb_dict_set_i64(d, "done", 0), 0);
    pid_t cons[2] = {th_client_spawn(jq_consumer, 0, NULL), th_client_spawn(jq_consumer, 1, NULL)};
    pid_t prod = th_client_spawn(jq_producer, 0, NULL);
    /* a second joiner, once every item has been put */
    int64_t all = 0;
    for (int i = 0; i < 6000 && all != 1; i++) {
        if (mpb_dict_get_i64(d, "all_put", &all)) all = 0;
        if (all != 1) usleep(5000);
    }
    assert_int_equal(all, 1);
    assert_int_equal(mpb_queue_join(q, 60000), 0);
    int64_t done;
    assert_int_equal(mpb_dict_get_i64(d, "done", &done), 0);
    assert_int_equal(done, JQ_N);
    assert_int_equal(th_wait(prod, 60), 0);
    assert_int_equal(put_int(q, -1, MPB_FOREVER), 0);
    assert_int_equal(put_int(q, -1, MPB_FOREVER), 0);
    assert_int_equal(th_wait(cons[0], 60), 0);
    assert_int_equal(th_wait(cons[1], 60), 0);

    assert_int_equal(th_describe_int(c, "queue/jq", "unfinished"), 0);
    assert_int_equal(mpb_queue_join(q, 0), 0);
    /* one task_done more than items put */
    assert_int_equal(mpb_queue_task_done(q), MPB_EVALUE);
    assert_non_null(strstr(mpb_errmsg(c), "too many times"));
    assert_int_equal(th_describe_int(c, "queue/jq", "unfinished"), 0);

    /* task_done and join are for JoinableQueues only */
    mpb_queue_t *plain;
    assert_int_equal(mpb_queue_open(c, "jq.plain", 0, 0, &plain), 0);
    assert_int_equal(put_int(plain, 1, 0), 0);
    assert_int_equal(mpb_queue_task_done(plain), MPB_ETYPE);
    assert_non_null(strstr(mpb_errmsg(c), "not joinable"));
    assert_int_equal(mpb_queue_join(plain, 0), MPB_ETYPE);
    uint64_t n;
    assert_int_equal(mpb_queue_qsize(plain, &n), 0);
    assert_int_equal(n, 1);
    mpb_queue_close(&plain);
    mpb_dict_close(&d);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* ---- timeouts: on time, and nothing changed ---- */

#define SLACK_MS 300

static void test_get_on_empty_queue_times_out(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "to.get", 0, 0, &q), 0);
    int64_t v;
    int64_t t0 = th_now_ms();
    assert_int_equal(get_int(q, 300, &v), MPB_ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    print_message("get(300 ms) on an empty queue: ETIMEDOUT after %lld ms\n", (long long)dt);
    assert_true(dt >= 300);
    assert_true(dt <= 300 + SLACK_MS);
    t0 = th_now_ms();
    assert_int_equal(get_int(q, 0, &v), MPB_EEMPTY); /* get_nowait */
    assert_true(th_now_ms() - t0 < SLACK_MS);
    /* nobody is left waiting, and the queue works */
    assert_int_equal(th_describe_int(c, "queue/to.get", "getters"), 0);
    assert_int_equal(put_int(q, 7, 0), 0);
    assert_int_equal(get_int(q, 0, &v), 0);
    assert_int_equal(v, 7);
    mpb_queue_close(&q);
    mpb_close(&c);
}

static void test_put_on_full_queue_times_out_and_leaves_it_unchanged(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "to.put", 3, 0, &q), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(put_int(q, i, 0), 0);
    assert_int_equal(mpb_queue_full(q), 1);
    int64_t t0 = th_now_ms();
    assert_int_equal(put_int(q, 99, 250), MPB_ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    print_message("put(250 ms) on a full queue: ETIMEDOUT after %lld ms\n", (long long)dt);
    assert_true(dt >= 250);
    assert_true(dt <= 250 + SLACK_MS);
    assert_int_equal(put_int(q, 98, 0), MPB_EFULL); /* put_nowait */
    assert_non_null(strstr(mpb_errmsg(c), "full"));
    uint64_t n;
    assert_int_equal(mpb_queue_qsize(q, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(th_describe_int(c, "queue/to.put", "putters"), 0);
    /* exactly the three items, in order: neither timed-out item got in */
    for (int i = 0; i < 3; i++) {
        int64_t v;
        assert_int_equal(get_int(q, 0, &v), 0);
        assert_int_equal(v, i);
    }
    int64_t v;
    assert_int_equal(get_int(q, 0, &v), MPB_EEMPTY);
    assert_int_equal(mpb_queue_empty(q), 1);
    assert_int_equal(mpb_queue_full(q), 0);
    mpb_queue_close(&q);

    /* a JoinableQueue does not count a put that timed out as an unfinished task */
    assert_int_equal(mpb_queue_open(c, "to.jput", 1, 1, &q), 0);
    assert_int_equal(put_int(q, 1, 0), 0);
    assert_int_equal(put_int(q, 2, 100), MPB_ETIMEDOUT);
    assert_int_equal(th_describe_int(c, "queue/to.jput", "unfinished"), 1);
    assert_int_equal(get_int(q, 0, &v), 0);
    assert_int_equal(mpb_queue_task_done(q), 0);
    assert_int_equal(mpb_queue_join(q, 0), 0);
    mpb_queue_close(&q);
    mpb_close(&c);
}

static void test_join_with_unfinished_tasks_times_out(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "to.join", 0, 1, &q), 0);
    assert_int_equal(put_int(q, 1, 0), 0);
    int64_t v;
    assert_int_equal(get_int(q, 0, &v), 0); /* taken but not done */
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_queue_join(q, 200), MPB_ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    print_message("join(200 ms) with a task unfinished: ETIMEDOUT after %lld ms\n", (long long)dt);
    assert_true(dt >= 200);
    assert_true(dt <= 200 + SLACK_MS);
    assert_int_equal(mpb_queue_join(q, 0), MPB_ETIMEDOUT);
    assert_int_equal(th_describe_int(c, "queue/to.join", "joiners"), 0);
    assert_int_equal(th_describe_int(c, "queue/to.join", "unfinished"), 1);
    assert_int_equal(mpb_queue_task_done(q), 0);
    assert_int_equal(mpb_queue_join(q, 0), 0);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* A put still waiting for room is not a task yet (Python counts it once the item is in the
 * queue): join() does not wait for it, and its timing out cannot leave a joiner hanging. */
static int jput_parked_child(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_queue_t *q;
    CKC(c, mpb_queue_open(c, "to.jpark", -1, -1, &q));
    CK(put_int(q, 2, 400) == MPB_ETIMEDOUT);
    mpb_queue_close(&q);
    return 0;
}

static void test_join_does_not_wait_for_a_put_still_blocked(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "to.jpark", 1, 1, &q), 0);
    assert_int_equal(put_int(q, 1, 0), 0);
    pid_t p = th_client_spawn(jput_parked_child, 0, NULL);
    assert_true(th_wait_field(c, "queue/to.jpark", "putters", 1, 10000));
    assert_int_equal(mpb_queue_task_done(q), 0); /* item 1 is done, though still queued */
    int64_t t0 = th_now_ms();
    int rc = mpb_queue_join(q, 3000);
    int64_t dt = th_now_ms() - t0;
    print_message("join with only a blocked put outstanding: %s after %lld ms\n",
                  rc ? mpb_strerror(rc) : "0", (long long)dt);
    assert_int_equal(rc, 0);
    assert_true(dt < SLACK_MS);
    assert_int_equal(th_wait(p, 10), 0);
    /* and no task_done for a put that never got in */
    assert_int_equal(mpb_queue_task_done(q), MPB_EVALUE);
    uint64_t n;
    assert_int_equal(mpb_queue_qsize(q, &n), 0);
    assert_int_equal(n, 1);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* ---- a joinable queue opened RELIABLE false: items leave with their takers ---- */

#define NR_GETTERS 4

typedef struct {
    int done, status;
    int64_t v;
} nr_got_t;

static void nr_on_get(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c;
    nr_got_t *g = arg;
    g->done = 1;
    g->status = status ? status : mpb_unpack_i64(val, len, &g->v);
}

/* Parks a get through mpb_send and waits for it in short mpb_poll slices (heartbeats go out
 * between them), as a binding that watches for signals does; notes the item in nr.got and
 * ends its session without task_done. */
static int nr_getter(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    uint8_t a[1 + MPB_PACK_MAX_SCALAR];
    a[0] = 0x91; /* [timeout_ms] */
    size_t n = 1 + mpb_pack_i64(a + 1, 20000);
    nr_got_t g = {0};
    CKC(c, mpb_send(c, MPB_OP_QUEUE_GET, "nr.q", a, n, nr_on_get, &g));
    int64_t end = th_now_ms() + 30000;
    while (!g.done && th_now_ms() < end)
        CK(mpb_poll(c, 100) >= 0);
    CK(g.done && g.status == 0);
    mpb_list_t *l;
    CKC(c, mpb_list_open(c, "nr.got", &l));
    CKC(c, mpb_list_append_i64(l, g.v));
    mpb_list_close(&l);
    return 0; /* the harness closes c: bye, the item not done */
}

/* Python's queue.Queue has task_done and join, but an item taken is gone with its taker: a
 * joinable queue opened RELIABLE false gives nothing back when a taker's session ends, so
 * getters parked together, each ending after its item, get every item exactly once. */
static void test_joinable_unreliable_queue_hands_each_item_out_once(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    static const uint8_t open_args[] = {0x93, 0x00, 0xc3, 0xc2}; /* [0, true, false] */
    void *res;
    size_t rl;
    th_assert_ok(mpb_call(c, MPB_OP_QUEUE_OPEN, "nr.q", open_args, sizeof open_args, 0, &res, &rl),
                 c);
    mpb_free(res);
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "nr.q", -1, -1, &q), 0);
    pid_t g[NR_GETTERS];
    for (int i = 0; i < NR_GETTERS; i++)
        g[i] = th_client_spawn(nr_getter, i, NULL);
    assert_true(th_wait_field(c, "queue/nr.q", "getters", NR_GETTERS, 20000));
    for (int i = 0; i < NR_GETTERS; i++)
        assert_int_equal(put_int(q, i, 1000), 0);
    for (int i = 0; i < NR_GETTERS; i++)
        assert_int_equal(th_wait(g[i], 60), 0);

    int64_t got[NR_GETTERS + 1];
    assert_int_equal(read_int_list(c, "nr.got", got, NR_GETTERS + 1), NR_GETTERS);
    qsort(got, NR_GETTERS, sizeof *got, th_cmp_i64);
    for (int i = 0; i < NR_GETTERS; i++)
        assert_int_equal(got[i], i); /* once each */
    uint64_t n;
    assert_int_equal(mpb_queue_qsize(q, &n), 0);
    assert_int_equal(n, 0); /* nothing came back */
    /* still joinable: every task is done once each taker's task_done is said for it */
    assert_int_equal(th_describe_int(c, "queue/nr.q", "unfinished"), NR_GETTERS);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* ---- misuse ---- */

static int getter_of_5(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_queue_t *q;
    CKC(c, mpb_queue_open(c, "misuse.q", -1, -1, &q));
    int64_t v;
    CKC(c, get_int(q, MPB_FOREVER, &v));
    CK(v == 5);
    mpb_queue_close(&q);
    return 0;
}

static void test_misuse_gets_clear_errors(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    mpb_queue_t *q = NULL;
    assert_int_equal(mpb_dict_open(c, "misuse.dict", &d), 0);
    assert_int_equal(mpb_queue_open(c, "misuse.dict", 0, 0, &q), MPB_EKIND);
    assert_null(q);
    assert_non_null(strstr(mpb_errmsg(c), "is a dict, not a queue"));
    mpb_dict_close(&d);

    assert_int_equal(mpb_queue_open(c, "misuse.q", 5, 0, &q), 0);
    mpb_queue_t *q2 = NULL;
    assert_int_equal(mpb_queue_open(c, "misuse.q", 6, -1, &q2), MPB_EINVAL);
    assert_non_null(strstr(mpb_errmsg(c), "maxsize 5"));
    assert_int_equal(mpb_queue_open(c, "misuse.q", -1, 1, &q2), MPB_EINVAL);
    assert_non_null(strstr(mpb_errmsg(c), "not joinable"));
    assert_int_equal(mpb_queue_open(c, "misuse.q", -1, -1, &q2), 0);
    mpb_queue_close(&q2);
    static const uint8_t bad[] = {0x92, 0x01}; /* an array of 2 with one element */
    assert_int_equal(mpb_queue_put(q, bad, sizeof bad, 0), MPB_EINVAL);
    assert_int_equal(mpb_queue_task_done(q), MPB_ETYPE);
    /* the queue is still empty and usable */
    assert_int_equal(mpb_queue_empty(q), 1);
    /* a queue with a blocked client cannot be deleted; an idle one can */
    pid_t g = th_client_spawn(getter_of_5, 0, NULL);
    assert_true(th_wait_field(c, "queue/misuse.q", "getters", 1, 10000));
    assert_int_equal(mpb_obj_delete(c, "queue/misuse.q"), MPB_EBUSY);
    assert_non_null(strstr(mpb_errmsg(c), "blocked"));
    assert_int_equal(put_int(q, 5, 0), 0);
    assert_int_equal(th_wait(g, 30), 0);
    assert_int_equal(mpb_obj_delete(c, "queue/misuse.q"), 0);
    assert_int_equal(mpb_obj_delete(c, "queue/misuse.q"), MPB_ENOOBJ);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* ---- settings from the first open that gives them ---- */

/* A consumer that starts before the producer: it knows nothing of the queue's settings. */
static int early_consumer(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_queue_t *q;
    CKC(c, mpb_queue_open(c, "late.q", -1, -1, &q));
    int64_t v;
    CKC(c, get_int(q, 20000, &v));
    CK(v >= 100 && v < 102);
    CKC(c, mpb_queue_task_done(q)); /* joinable by now: the producer said so */
    mpb_queue_close(&q);
    return 0;
}

static void test_settings_come_from_the_first_open_that_gives_them(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    pid_t g[2];
    for (int i = 0; i < 2; i++)
        g[i] = th_client_spawn(early_consumer, i, NULL);
    assert_true(th_wait_field(c, "queue/late.q", "getters", 2, 20000));
    assert_int_equal(th_describe_int(c, "queue/late.q", "maxsize"), 0);
    assert_int_equal(th_describe_int(c, "queue/late.q", "joinable"), 0);

    /* the producer comes with JoinableQueue(maxsize=3): that is what the queue is now */
    mpb_queue_t *q, *q2 = NULL;
    assert_int_equal(mpb_queue_open(c, "late.q", 3, 1, &q), 0);
    assert_int_equal(th_describe_int(c, "queue/late.q", "maxsize"), 3);
    assert_int_equal(th_describe_int(c, "queue/late.q", "joinable"), 1);
    assert_int_equal(put_int(q, 100, 0), 0); /* straight to the parked consumers */
    assert_int_equal(put_int(q, 101, 0), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(th_wait(g[i], 30), 0);
    assert_int_equal(mpb_queue_join(q, 0), 0); /* both consumers' task_done counted */

    /* really bounded */
    for (int i = 0; i < 3; i++)
        assert_int_equal(put_int(q, i, 0), 0);
    assert_int_equal(mpb_queue_full(q), 1);
    assert_int_equal(put_int(q, 9, 0), MPB_EFULL);
    assert_non_null(strstr(mpb_errmsg(c), "maxsize 3"));
    /* really joinable */
    assert_int_equal(mpb_queue_join(q, 0), MPB_ETIMEDOUT);
    for (int i = 0; i < 3; i++) {
        int64_t v;
        assert_int_equal(get_int(q, 0, &v), 0);
        assert_int_equal(v, i);
        assert_int_equal(mpb_queue_task_done(q), 0);
    }
    assert_int_equal(mpb_queue_join(q, 0), 0);
    assert_int_equal(mpb_queue_task_done(q), MPB_EVALUE);

    /* fixed now: another explicit setting is refused, "whatever it is" is not */
    assert_int_equal(mpb_queue_open(c, "late.q", 100, -1, &q2), MPB_EINVAL);
    assert_non_null(strstr(mpb_errmsg(c), "maxsize 3, not 100"));
    assert_int_equal(mpb_queue_open(c, "late.q", -1, 0, &q2), MPB_EINVAL);
    assert_non_null(strstr(mpb_errmsg(c), "is joinable"));
    assert_null(q2);
    assert_int_equal(mpb_queue_open(c, "late.q", 3, 1, &q2), 0);
    mpb_queue_close(&q2);
    assert_int_equal(mpb_queue_open(c, "late.q", -1, -1, &q2), 0);
    mpb_queue_close(&q2);
    mpb_queue_close(&q);

    /* each setting on its own; items put before the queue became joinable are its tasks */
    assert_int_equal(mpb_queue_open(c, "late.q2", -1, -1, &q), 0);
    assert_int_equal(put_int(q, 1, 0), 0);
    assert_int_equal(put_int(q, 2, 0), 0);
    assert_int_equal(mpb_queue_task_done(q), MPB_ETYPE);
    assert_int_equal(mpb_queue_open(c, "late.q2", -1, 1, &q2), 0);
    mpb_queue_close(&q2);
    assert_int_equal(th_describe_int(c, "queue/late.q2", "unfinished"), 2);
    assert_int_equal(mpb_queue_open(c, "late.q2", 2, -1, &q2), 0); /* already at its bound */
    mpb_queue_close(&q2);
    assert_int_equal(mpb_queue_full(q), 1);
    assert_int_equal(put_int(q, 3, 0), MPB_EFULL);
    assert_int_equal(mpb_queue_open(c, "late.q2", 0, -1, &q2), MPB_EINVAL);
    assert_int_equal(mpb_queue_open(c, "late.q2", -1, 0, &q2), MPB_EINVAL);
    int64_t v;
    assert_int_equal(get_int(q, 0, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(mpb_queue_task_done(q), 0);
    assert_int_equal(mpb_queue_join(q, 0), MPB_ETIMEDOUT);
    assert_int_equal(get_int(q, 0, &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(mpb_queue_task_done(q), 0);
    assert_int_equal(mpb_queue_join(q, 0), 0);
    mpb_queue_close(&q);

    /* explicit "unbounded, plain" is a setting too */
    assert_int_equal(mpb_queue_open(c, "late.q3", 0, 0, &q), 0);
    assert_int_equal(mpb_queue_open(c, "late.q3", 100, 1, &q2), MPB_EINVAL);
    assert_null(q2);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* A plain queue has no tasks, whoever is blocked on it; a maxsize of INT64_MAX is a bound. */
static int blocked_putter(mpb_client_t *c, TH_UNUSED int idx, const char *arg) {
    mpb_queue_t *q;
    CKC(c, mpb_queue_open(c, arg, -1, -1, &q));
    CKC(c, put_int(q, 2, 20000));
    mpb_queue_close(&q);
    return 0;
}

static void test_info_of_a_queue_with_a_blocked_putter(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    int64_t v;
    for (int joinable = 0; joinable < 2; joinable++) {
        const char *name = joinable ? "info.jq" : "info.q";
        char path[64];
        snprintf(path, sizeof path, "queue/%s", name);
        assert_int_equal(mpb_queue_open(c, name, 1, joinable, &q), 0);
        assert_int_equal(put_int(q, 1, 0), 0);
        pid_t p = th_client_spawn(blocked_putter, 0, name);
        assert_true(th_wait_field(c, path, "putters", 1, 20000));
        assert_int_equal(th_describe_int(c, path, "unfinished"), joinable ? 1 : 0);
        assert_int_equal(th_describe_int(c, path, "size"), 1);
        assert_int_equal(get_int(q, 0, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(th_wait(p, 30), 0);
        assert_int_equal(th_describe_int(c, path, "putters"), 0);
        assert_int_equal(th_describe_int(c, path, "unfinished"), joinable ? 2 : 0);
        assert_int_equal(get_int(q, 0, &v), 0);
        assert_int_equal(v, 2);
        mpb_queue_close(&q);
    }

    assert_int_equal(mpb_queue_open(c, "info.huge", INT64_MAX, 0, &q), 0);
    assert_int_equal(th_describe_int(c, "queue/info.huge", "maxsize"), INT64_MAX);
    assert_int_equal(put_int(q, 1, 0), 0);
    assert_int_equal(mpb_queue_full(q), 0);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* ---- a million items ---- */

/* A million round trips of one put each take a minute under the sanitizers, so the producers
 * speak the protocol directly and send their puts as a pipelining client would: BIG_BATCH
 * requests in one sealed frame, BIG_WINDOW frames in flight. Every reply is checked. */
#define BIG_PROCS  4
#define BIG_EACH   250000
#define BIG_BATCH  500
#define BIG_WINDOW 4

/* Receives one reply frame and checks it answers the BIG_BATCH puts from rid first with nil. */
static int big_check_replies(rawclient_t *rc, rc_frame_t *f, uint64_t first) {
    CK(rc_recv(rc, f, 30000) == 0);
    CK(f->type == MPB__T_REP && f->mac_ok);
    mpb__rd_t rd = {f->body, f->body + f->bodylen};
    for (uint64_t i = 0; i < BIG_BATCH; i++) {
        uint32_t n;
        uint64_t rid, code;
        CK(mpb__rd_array(&rd, &n) == 0 && n == 3);
        CK(mpb__rd_uint(&rd, &rid) == 0 && rid == first + i);
        CK(mpb__rd_uint(&rd, &code) == 0 && code == 0);
        CK(mpb__rd_nil(&rd) == 0);
    }
    CK(!mpb__rd_more(&rd));
    return 0;
}

static int big_producer(int idx, const char *arg) {
    (void)arg;
    static rawclient_t rc;
    static rc_frame_t f;
    size_t kl;
    const char *key = th_authkey(&B, &kl);
    CK(rc_open(&rc, NULL, B.endpoint) == 0);
    CK(rc_handshake(&rc, key, kl, 10000) == 0);
    mpb__buf_t body = {0};
    uint64_t rid = 1, unanswered = 0, next_answer = 1;
    for (int i = 0; i < BIG_EACH; i += BIG_BATCH) {
        mpb__buf_reset(&body);
        for (int j = 0; j < BIG_BATCH; j++) {
            rc_req(&body, rid++, MPB_OP_QUEUE_PUT, "big", 3, 2);
            mpb__w_int(&body, (int64_t)idx * BIG_EACH + i + j);
            mpb__w_int(&body, 0);
        }
        CK(!body.oom);
        CK(rc_send_req(&rc, body.p, body.len, NULL) == 0);
        if (++unanswered == BIG_WINDOW) {
            if (big_check_replies(&rc, &f, next_answer)) return 1;
            next_answer += BIG_BATCH;
            unanswered--;
        }
    }
    for (; unanswered; unanswered--, next_answer += BIG_BATCH)
        if (big_check_replies(&rc, &f, next_answer)) return 1;
    mpb__buf_free(&body);
    rc_close(&rc);
    return 0;
}

static void test_queue_of_a_million_items(void **state) {
    (void)state;
    int64_t t0 = th_now_ms();
    assert_int_equal(th_child_spawn_all(BIG_PROCS, big_producer, NULL, 280), 0);
    int64_t dt = th_now_ms() - t0;
    print_message("%d items put by %d processes (batches of %d) in %lld ms\n", BIG_PROCS * BIG_EACH,
                  BIG_PROCS, BIG_BATCH, (long long)dt);
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "big", -1, -1, &q), 0);
    uint64_t n;
    assert_int_equal(mpb_queue_qsize(q, &n), 0);
    assert_int_equal(n, BIG_PROCS * BIG_EACH);
    assert_int_equal(th_describe_int(c, "queue/big", "size"), BIG_PROCS * BIG_EACH);
    /* each producer's items come out in its order */
    int64_t last[BIG_PROCS] = {-1, -1, -1, -1};
    for (int i = 0; i < 100; i++) {
        int64_t v;
        assert_int_equal(get_int(q, 0, &v), 0);
        assert_true(v >= 0 && v < BIG_PROCS * BIG_EACH);
        assert_true(v % BIG_EACH > last[v / BIG_EACH]);
        last[v / BIG_EACH] = v % BIG_EACH;
        assert_int_equal(mpb_queue_qsize(q, &n), 0);
        assert_int_equal(n, BIG_PROCS * BIG_EACH - 1 - i);
    }
    assert_int_equal(mpb_obj_delete(c, "queue/big"), 0);
    void *m;
    size_t ml;
    assert_int_equal(mpb_obj_describe(c, "queue/big", &m, &ml), MPB_ENOOBJ);
    /* the name is free again: a new, empty queue */
    assert_int_equal(mpb_queue_qsize(q, &n), 0);
    assert_int_equal(n, 0);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* ---- the broker is still well ---- */

static void test_broker_still_serves_and_exits_cleanly(void **state) {
    (void)state;
    assert_true(th_broker_alive(&B));
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "final", 2, 0, &q), 0);
    assert_int_equal(put_int(q, 41, 0), 0);
    assert_int_equal(put_int(q, 42, 0), 0);
    int64_t v;
    assert_int_equal(get_int(q, 0, &v), 0);
    assert_int_equal(v, 41);
    assert_int_equal(get_int(q, 0, &v), 0);
    assert_int_equal(v, 42);
    th_assert_dict_roundtrip(c, "final.d", 5);
    mpb_queue_close(&q);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

static const th_client_fn child_fns[] = {
    pc_producer, pc_consumer,    jq_producer,    jq_consumer, jput_parked_child,
    getter_of_5, early_consumer, blocked_putter, nr_getter,
};
static const th_child_fn bare_fns[] = {big_producer};

int main(int argc, char **argv) {
    th_client_main(argc, argv, &B, child_fns, TH_NELEMS(child_fns), bare_fns, TH_NELEMS(bare_fns));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_producers_consumers_each_item_exactly_once),
        cmocka_unit_test(test_joinable_queue_join_returns_after_every_task_done),
        cmocka_unit_test(test_get_on_empty_queue_times_out),
        cmocka_unit_test(test_put_on_full_queue_times_out_and_leaves_it_unchanged),
        cmocka_unit_test(test_join_with_unfinished_tasks_times_out),
        cmocka_unit_test(test_join_does_not_wait_for_a_put_still_blocked),
        cmocka_unit_test(test_joinable_unreliable_queue_hands_each_item_out_once),
        cmocka_unit_test(test_misuse_gets_clear_errors),
        cmocka_unit_test(test_settings_come_from_the_first_open_that_gives_them),
        cmocka_unit_test(test_info_of_a_queue_with_a_blocked_putter),
        cmocka_unit_test(test_queue_of_a_million_items),
        cmocka_unit_test(test_broker_still_serves_and_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
