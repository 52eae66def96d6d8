/* test_callbacks.c - callbacks that run while the caller does something else. With the callback
 * thread (mpb_options_t.callback_thread, mpb_set_callback_thread) and with the caller's own loop
 * (poll on mpb_fd(), mpb_process()), a pool result's callback and an async op's callback fire
 * while the caller sleeps, within 50 ms of the submit (the best of five tries, so that one
 * scheduling hiccup of a loaded machine is not what is measured); without either, nothing
 * fires while the caller sleeps. Callbacks never run two at once, even while the caller makes
 * calls of its own; a callback that calls the client (a dict incr, another apply_async) does
 * not deadlock, and what it wrote is read by another process; stopping the thread runs what
 * was put off. Workers are real mpb-worker processes. */
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "th_pool.h"

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One callback's record: written by whichever thread runs it. */
typedef struct rec {
    atomic_int fired;
    atomic_llong at_us;
    int64_t value;
    int err;
} rec_t;

/* Callbacks in progress now, and whether two ever overlapped. */
static atomic_int running, overlapped;

static void enter(void) {
    if (atomic_fetch_add(&running, 1) != 0) atomic_store(&overlapped, 1);
    usleep(2000); /* wide enough for an overlap to be seen */
}

static void done(rec_t *r) {
    atomic_store(&r->at_us, now_us());
    atomic_fetch_sub(&running, 1);
    atomic_store(&r->fired, 1);
}

static void on_value(void *arg, const void *res, size_t len) {
    enter();
    rec_t *r = arg;
    r->value = tp_unpack_int(res, len);
    done(r);
}

static void on_error(void *arg, int err, const char *msg) {
    (void)msg;
    enter();
    rec_t *r = arg;
    r->err = err;
    done(r);
}

static void on_reply(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c;
    enter();
    rec_t *r = arg;
    r->err = status;
    if (!status) r->value = tp_unpack_int(val, len);
    done(r);
}

enum { M_NONE, M_THREAD, M_LOOP };

/* Waits, without calling libmpb but for M_LOOP's mpb_process(), until r fired or ms passed.
 * Returns the microseconds from t0 to the callback, or -1 if it did not fire. */
static int64_t wait_fired(mpb_client_t *c, int mode, rec_t *r, int64_t t0, int ms) {
    int64_t end = now_us() + (int64_t)ms * 1000;
    int wait_ms = mode == M_LOOP ? mpb_process(c) : 0;
    while (!atomic_load(&r->fired) && now_us() < end) {
        if (mode != M_LOOP) {
            usleep(1000);
            continue;
        }
        assert_true(wait_ms > 0);
        struct pollfd p = {mpb_fd(c), POLLIN, 0};
        poll(&p, 1, wait_ms);
        wait_ms = mpb_process(c);
    }
    return atomic_load(&r->fired) ? atomic_load(&r->at_us) - t0 : -1;
}

static mpb_client_t *connect_mode(int mode) {
    atomic_store(&running, 0);
    atomic_store(&overlapped, 0);
    mpb_options_t o;
    mpb_options_init(&o);
    o.callback_thread = mode == M_THREAD;
    mpb_client_t *c = NULL;
    assert_int_equal(th_connect_opts(&tp_broker, &o, &c), 0);
    return c;
}

/* Five applies and five dict gets, one at a time: each callback fires while the caller waits
 * outside libmpb, and the quickest of each within 50 ms. */
static void prompt_in_mode(int mode) {
    mpb_client_t *mon = th_connect(&tp_broker);
    tp_start_worker(MPB_DEMO_LIB, "square", 1, -1, 0, NULL);
    mpb_client_t *c = connect_mode(mode);
    mpb_pool_t *p = tp_pool_ready(mon, "square", 1, c);
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "cb", &d), 0);
    assert_int_equal(mpb_dict_set_i64(d, "k", 41), 0);
    const uint8_t key[] = {0xa1, 'k'};
    int64_t best_apply = INT64_MAX, best_get = INT64_MAX;
    for (int i = 0; i < 5; i++) {
        rec_t r = {0};
        size_t al;
        const uint8_t *a = tp_args1(i + 3, &al);
        int64_t t0 = now_us();
        assert_int_equal(mpb_pool_apply_async(p, "square", a, al, on_value, on_error, &r, NULL), 0);
        int64_t lat = wait_fired(c, mode, &r, t0, 3000);
        assert_true(lat >= 0);
        assert_int_equal(r.err, 0);
        assert_int_equal(r.value, (i + 3) * (i + 3));
        if (lat < best_apply) best_apply = lat;

        rec_t g = {0};
        t0 = now_us();
        assert_int_equal(mpb_dict_get_async(d, key, sizeof key, on_reply, &g), 0);
        assert_int_equal(mpb_flush(c), 0);
        lat = wait_fired(c, mode, &g, t0, 3000);
        assert_true(lat >= 0);
        assert_int_equal(g.err, 0);
        assert_int_equal(g.value, 41);
        if (lat < best_get) best_get = lat;
    }
    print_message(
        "mode %s: apply_async callback %.1f ms, dict_get_async callback %.1f ms (best of 5)\n",
        mode == M_THREAD ? "thread" : "loop", best_apply / 1000.0, best_get / 1000.0);
    assert_true(best_apply < 50000);
    assert_true(best_get < 50000);
    assert_false(atomic_load(&overlapped));
    mpb_dict_close(&d);
    mpb_pool_close(&p);
    mpb_close(&c);
    mpb_close(&mon);
}

static void test_callback_thread_fires_while_the_caller_sleeps(void **state) {
    (void)state;
    prompt_in_mode(M_THREAD);
}

static void test_own_loop_on_mpb_fd_fires_while_the_caller_polls(void **state) {
    (void)state;
    prompt_in_mode(M_LOOP);
}

/* Without the thread or a loop, a result waits for the caller's next pool call. */
static void test_without_either_nothing_fires_while_the_caller_sleeps(void **state) {
    (void)state;
    mpb_client_t *mon = th_connect(&tp_broker);
    tp_start_worker(MPB_DEMO_LIB, "square", 1, -1, 0, NULL);
    mpb_client_t *c = connect_mode(M_NONE);
    mpb_pool_t *p = tp_pool_ready(mon, "square", 1, c);
    rec_t r = {0};
    size_t al;
    const uint8_t *a = tp_args1(9, &al);
    assert_int_equal(mpb_pool_apply_async(p, "square", a, al, on_value, on_error, &r, NULL), 0);
    assert_int_equal(wait_fired(c, M_NONE, &r, now_us(), 300), -1);
    /* the result is there: the next pool call runs its callback */
    assert_int_equal(mpb_pool_finish(p), 0);
    assert_int_equal(mpb_pool_join(p, 10000), 0);
    assert_int_equal(atomic_load(&r.fired), 1);
    assert_int_equal(r.value, 81);
    mpb_pool_close(&p);
    mpb_close(&c);
    mpb_close(&mon);
}

/* ---- callbacks that call the client ---- */

#define CHAIN 20

typedef struct chain {
    mpb_client_t *c;
    mpb_pool_t *p;
    mpb_dict_t *d;
    atomic_int left, failed;
} chain_t;

/* Each result adds itself to a shared counter (a synchronous call) and submits the next. */
static void chain_value(void *arg, const void *res, size_t len) {
    chain_t *ch = arg;
    if (atomic_fetch_add(&running, 1) != 0) atomic_store(&overlapped, 1);
    int64_t v = tp_unpack_int(res, len), total;
    if (mpb_dict_incr_str(ch->d, "sum", v, &total)) atomic_store(&ch->failed, 1);
    if (atomic_fetch_sub(&ch->left, 1) > 1) {
        size_t al;
        const uint8_t *a = tp_args1(atomic_load(&ch->left), &al);
        if (mpb_pool_apply_async(ch->p, "square", a, al, chain_value, NULL, ch, NULL))
            atomic_store(&ch->failed, 1);
    }
    atomic_fetch_sub(&running, 1);
}

#define CHAIN_SUM ((int64_t)CHAIN * (CHAIN + 1) * (2 * CHAIN + 1) / 6) /* k*k, k = 1..CHAIN */

/* Another process reads what the callbacks wrote. */
static int check_chain_sum(void *arg) {
    (void)arg;
    mpb_client_t *o = th_connect_quiet(&tp_broker);
    mpb_dict_t *d;
    int64_t v = -1;
    int bad = mpb_dict_open(o, "chain", &d) || mpb_dict_get_i64(d, "sum", &v) || v != CHAIN_SUM;
    if (bad) fprintf(stderr, "chain sum %lld, want %lld\n", (long long)v, (long long)CHAIN_SUM);
    mpb_dict_close(&d);
    mpb_close(&o);
    return bad;
}

static void chain_in_mode(int mode) {
    tp_gate_t gate;
    tp_gate_open(&gate);
    pid_t reader = tp_start_child(check_chain_sum, NULL, &gate); /* forked before connecting */
    mpb_client_t *mon = th_connect(&tp_broker);
    tp_start_worker(MPB_DEMO_LIB, "square", 2, -1, 0, NULL);
    mpb_client_t *c = connect_mode(mode);
    chain_t ch = {.c = c};
    atomic_store(&ch.left, CHAIN);
    ch.p = tp_pool_ready(mon, "square", 1, c);
    assert_int_equal(mpb_dict_open(c, "chain", &ch.d), 0);
    size_t al;
    const uint8_t *a = tp_args1(CHAIN, &al);
    assert_int_equal(mpb_pool_apply_async(ch.p, "square", a, al, chain_value, NULL, &ch, NULL), 0);
    /* meanwhile the caller makes calls of its own on the same client */
    mpb_dict_t *own;
    assert_int_equal(mpb_dict_open(c, "own", &own), 0);
    int64_t end = now_us() + 20 * 1000000LL, n = 0;
    while (atomic_load(&ch.left) > 0 && now_us() < end) {
        int64_t v;
        assert_int_equal(mpb_dict_incr_str(own, "n", 1, &v), 0);
        assert_int_equal(v, ++n);
        if (mode == M_LOOP)
            mpb_process(c);
        else
            usleep(500);
    }
    assert_int_equal(atomic_load(&ch.left), 0);
    assert_int_equal(atomic_load(&ch.failed), 0);
    assert_false(atomic_load(&overlapped));
    tp_gate_release(&gate);
    assert_int_equal(tp_wait_child(reader, 20), 0);
    tp_gate_close(&gate);
    mpb_dict_close(&own);
    mpb_dict_close(&ch.d);
    mpb_pool_close(&ch.p);
    mpb_close(&c);
    mpb_close(&mon);
}

static void test_thread_callbacks_call_the_client_without_deadlock(void **state) {
    (void)state;
    chain_in_mode(M_THREAD);
}

static void test_loop_callbacks_call_the_client_without_deadlock(void **state) {
    (void)state;
    chain_in_mode(M_LOOP);
}

/* Stopping the thread: callbacks put off run in the caller's thread; the client still works,
 * and runs callbacks where replies are read again. A NULL client is refused. */
static void test_stopping_the_thread(void **state) {
    (void)state;
    assert_int_equal(mpb_set_callback_thread(NULL, 1), MPB_EINVAL);
    assert_int_equal(mpb_process(NULL), MPB_EINVAL);
    mpb_client_t *c = connect_mode(M_NONE);
    assert_int_equal(mpb_set_callback_thread(c, 1), 0);
    assert_int_equal(mpb_set_callback_thread(c, 1), 0); /* already on */
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "cbq", 0, 0, &q), 0);
    rec_t r[8] = {0};
    for (int i = 0; i < 8; i++)
        assert_int_equal(mpb_queue_get_async(q, 5000, on_reply, &r[i]), 0);
    assert_int_equal(mpb_flush(c), 0);
    int64_t t0 = now_us();
    for (int i = 0; i < 4; i++)
        assert_int_equal(mpb_queue_put_i64(q, 100 + i, 0), 0);
    for (int i = 0; i < 4; i++)
        assert_true(wait_fired(c, M_THREAD, &r[i], t0, 3000) >= 0);
    assert_int_equal(mpb_set_callback_thread(c, 0), 0);
    for (int i = 4; i < 8; i++)
        assert_int_equal(mpb_queue_put_i64(q, 100 + i, 0), 0);
    assert_int_equal(mpb_drain(c, 5000), 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(atomic_load(&r[i].fired), 1);
        assert_int_equal(r[i].err, 0);
        assert_int_equal(r[i].value, 100 + i); /* getters are served in order */
    }
    assert_false(atomic_load(&overlapped));
    mpb_queue_close(&q);
    mpb_close(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_callback_thread_fires_while_the_caller_sleeps,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_own_loop_on_mpb_fd_fires_while_the_caller_polls,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_without_either_nothing_fires_while_the_caller_sleeps,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_thread_callbacks_call_the_client_without_deadlock,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_loop_callbacks_call_the_client_without_deadlock,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_stopping_the_thread, tp_setup_broker,
                                        tp_teardown_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
