/* test_pool_isolate.c - mpb-worker --isolate process: each slot runs its tasks in a child
 * process of its own, so terminate(), a timeout, a freed AsyncResult and a caller whose session
 * ended each kill a running sleep_ms(60000) and free the slot within a second (the next task on
 * the one-slot worker is answered within it); and a poison task (it kills its process) fails
 * after pool-max-attempts with every worker still alive and serving; a function's error kind
 * and what a task writes reach the caller. The caller's-end test runs with a 1 s session TTL. */
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

/* Starts one process-mode worker with one slot serving fns of lib; waits until it serves. */
static pid_t start_isolated(mpb_client_t *mon, const char *lib, const char *fns, const char *fn) {
    tp_worker_isolate = "process";
    pid_t w = tp_start_worker(lib, fns, 1, -1, 0, NULL);
    tp_worker_isolate = NULL;
    tp_wait_workers(mon, fn, 1, 10000);
    return w;
}

/* square(7) on the one-slot worker must be answered within a second of `since`: the slot the
 * stopped task held is free. */
static void assert_slot_free(mpb_pool_t *p, int64_t since, const char *after) {
    size_t al, rl;
    const uint8_t *a = tp_args1(7, &al);
    void *res = NULL;
    int rc = mpb_pool_apply(p, "square", a, al, 10000, &res, &rl);
    int64_t ms = th_now_ms() - since;
    th_assert_ok(rc, NULL);
    assert_int_equal(tp_unpack_int(res, rl), 49);
    mpb_free(res);
    printf("after %s: the next task answered in %lld ms\n", after, (long long)ms);
    if (ms >= 1000) fail_msg("after %s the slot was busy for %lld ms", after, (long long)ms);
}

static void sleep_60s_async(mpb_pool_t *p, mpb_async_t **a) {
    size_t al;
    const uint8_t *args = tp_args1(60000, &al);
    assert_int_equal(mpb_pool_apply_async(p, "sleep_ms", args, al, NULL, NULL, NULL, a), 0);
}

static void test_terminate_timeout_and_cancel_kill_the_running_task(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    pid_t w = start_isolated(mon, MPB_DEMO_LIB, "sleep_ms,square", "sleep_ms");
    mpb_pool_t *p, *p2;
    assert_int_equal(mpb_pool_open(c, &p2), 0);
    /* terminate() */
    assert_int_equal(mpb_pool_open(c, &p), 0);
    mpb_async_t *a = NULL;
    sleep_60s_async(p, &a);
    tp_wait_running(mon, w);
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_pool_terminate(p), 0);
    assert_int_equal(mpb_async_get(a, 5000, NULL, NULL), MPB_ECANCELED);
    mpb_async_free(&a);
    mpb_pool_close(&p);
    assert_slot_free(p2, t0, "terminate()");
    /* apply(..., timeout) */
    size_t al;
    const uint8_t *args = tp_args1(60000, &al);
    void *res = NULL;
    size_t rl;
    assert_int_equal(mpb_pool_apply(p2, "sleep_ms", args, al, 300, &res, &rl), MPB_ETIMEDOUT);
    assert_slot_free(p2, th_now_ms(), "a 300 ms timeout");
    /* a cancelled (freed) AsyncResult */
    sleep_60s_async(p2, &a);
    tp_wait_running(mon, w);
    t0 = th_now_ms();
    mpb_async_free(&a);
    assert_slot_free(p2, t0, "mpb_async_free()");
    /* the same worker process throughout, and nothing left running */
    tp_wstat_t ws;
    assert_true(tp_worker_stat(mon, w, &ws));
    assert_int_equal(ws.running + ws.prefetched, 0);
    tp_fnstat_t f = tp_fn_stat(mon, "sleep_ms");
    assert_int_equal(f.canceled, 3);
    assert_int_equal(f.done, 0);
    assert_true(tp_pool_metric("mpb_pool_tasks_killed_total") == 3);
    mpb_pool_close(&p2);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

static int caller_child(void *arg) {
    int fd = *(int *)arg;
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p;
    mpb_async_t *a = NULL;
    if (mpb_pool_open(c, &p)) return 1;
    size_t al;
    const uint8_t *args = tp_args1(60000, &al);
    if (mpb_pool_apply_async(p, "sleep_ms", args, al, NULL, NULL, NULL, &a)) return 2;
    mpb_pool_poll(p, 0);
    if (write(fd, "s", 1) != 1) return 3;
    pause(); /* until SIGKILL: its session ends with the TTL */
    return 0;
}

static void test_a_callers_end_kills_its_running_task(void **state) {
    (void)state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t caller = tp_start_child(caller_child, &pfd[1], NULL); /* before this process connects */
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    pid_t w = start_isolated(mon, MPB_DEMO_LIB, "sleep_ms,square", "sleep_ms");
    char ch;
    assert_int_equal(read(pfd[0], &ch, 1), 1);
    tp_wait_running(mon, w);
    kill(caller, SIGKILL);
    assert_int_equal(tp_wait_child(caller, 10), 128 + SIGKILL);
    int64_t end = th_now_ms() + 10000;
    while (tp_stats_count(mon, "callers") > 0) { /* its session is gone (TTL 1 s) */
        if (th_now_ms() > end) fail_msg("the killed caller's session outlived 10 s");
        usleep(5000);
    }
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    assert_slot_free(p, th_now_ms(), "the caller's session ended");
    tp_wstat_t ws;
    assert_true(tp_worker_stat(mon, w, &ws));
    assert_int_equal(ws.done, 1); /* square; the sleep was stopped */
    close(pfd[0]);
    close(pfd[1]);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

static int64_t same_int(int64_t x) {
    return x;
}

/* crash(n) kills its process (SIGKILL): in process mode only the slot's child dies. */
static void test_poison_task_fails_after_its_attempts_every_worker_alive(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    tp_worker_isolate = "process";
    pid_t w1 = tp_start_worker(MPB_TESTFNS_LIB, "crash,nap", 1, -1, 0, NULL);
    pid_t w2 = tp_start_worker(MPB_TESTFNS_LIB, "crash,nap", 1, -1, 0, NULL);
    tp_worker_isolate = NULL;
    tp_wait_workers(mon, "crash", 2, 10000);
    tp_wstat_t s1, s2;
    assert_true(tp_worker_stat(mon, w1, &s1));
    assert_true(tp_worker_stat(mon, w2, &s2));
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    size_t al, rl;
    const uint8_t *a = tp_args1(1, &al);
    void *res = NULL;
    int64_t t0 = th_now_ms();
    int rc = mpb_pool_apply(p, "crash", a, al, 20000, &res, &rl);
    int64_t ms = th_now_ms() - t0;
    printf("poison task: %s after %lld ms\n", mpb_errmsg(c), (long long)ms);
    th_assert_err(rc, MPB_EREMOTE, c, "its process died 3 times", NULL);
    /* both workers: the same processes and sessions, still registered, and they serve */
    assert_int_equal(kill(w1, 0), 0);
    assert_int_equal(kill(w2, 0), 0);
    tp_wstat_t t1, t2;
    assert_true(tp_worker_stat(mon, w1, &t1));
    assert_true(tp_worker_stat(mon, w2, &t2));
    assert_int_equal(t1.session, s1.session);
    assert_int_equal(t2.session, s2.session);
    assert_int_equal(t1.retries + t2.retries, 2); /* attempts 2 and 3 */
    mpb__buf_t items = {0};
    tp_items_range(&items, 20);
    rc = mpb_pool_map(p, "nap", items.p, items.len, 1, 10000, &res, &rl);
    th_assert_ok(rc, c);
    assert_int_equal(tp_check_ints(res, rl, 20, same_int), -1);
    mpb_free(res);
    mpb__buf_free(&items);
    tp_fnstat_t f = tp_fn_stat(mon, "crash");
    assert_int_equal(f.failed, 1);
    assert_int_equal(f.workers, 2);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* A function's error kind reaches the caller beside its message, from a thread-mode worker and
 * from a process-mode one, for apply and for a map (its first failed call). */
static void test_error_kinds_reach_the_caller(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    for (int mode = 0; mode < 2; mode++) {
        tp_worker_isolate = mode ? "process" : "thread";
        pid_t w = tp_start_worker(MPB_TESTFNS_LIB, "kinded", 1, -1, 0, NULL);
        tp_worker_isolate = NULL;
        mpb_pool_t *p = tp_pool_ready(mon, "kinded", 1, c);
        size_t al;
        const uint8_t *a = tp_args1(-3, &al);
        mpb_async_t *h = NULL;
        assert_int_equal(mpb_pool_apply_async(p, "kinded", a, al, NULL, NULL, NULL, &h), 0);
        assert_int_equal(mpb_async_error(h, NULL, NULL), MPB_EINVAL); /* not ready yet */
        assert_int_equal(mpb_async_get(h, 10000, NULL, NULL), MPB_EREMOTE);
        const char *kind = NULL, *msg = NULL;
        assert_int_equal(mpb_async_error(h, &kind, &msg), MPB_EREMOTE);
        assert_string_equal(kind, "ValueError");
        assert_string_equal(msg, "kinded: -3 is negative");
        mpb_async_free(&h);
        /* a map: [1, 2, -4, -5]: the first failed call is -4's */
        uint8_t items[] = {0x94, 0x01, 0x02, 0xfc, 0xfb};
        assert_int_equal(
            mpb_pool_map_async(p, "kinded", items, sizeof items, 1, NULL, NULL, NULL, &h), 0);
        assert_int_equal(mpb_async_get(h, 10000, NULL, NULL), MPB_EREMOTE);
        assert_int_equal(mpb_async_error(h, &kind, &msg), MPB_EREMOTE);
        assert_string_equal(kind, "KeyError");
        assert_string_equal(msg, "kinded: -4 is negative");
        mpb_async_free(&h);
        /* success: code 0, no kind */
        a = tp_args1(6, &al);
        assert_int_equal(mpb_pool_apply_async(p, "kinded", a, al, NULL, NULL, NULL, &h), 0);
        void *res = NULL;
        size_t rl;
        assert_int_equal(mpb_async_get(h, 10000, &res, &rl), 0);
        assert_int_equal(tp_unpack_int(res, rl), 6);
        mpb_free(res);
        assert_int_equal(mpb_async_error(h, &kind, &msg), 0);
        assert_string_equal(kind, "");
        mpb_async_free(&h);
        mpb_pool_close(&p);
        tp_kill_worker(w);
        int64_t end = th_now_ms() + 10000;
        while (tp_fn_workers(mon, "kinded")) {
            if (th_now_ms() > end) fail_msg("the killed worker is still listed");
            usleep(10000);
        }
    }
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- output forwarding ---- */

typedef struct outlog {
    char text[64][2][128]; /* per task, per stream */
    int calls;
} outlog_t;

static void collect_output(void *arg, mpb_async_t *a, uint64_t task, int stream, const void *data,
                           size_t len) {
    (void)a;
    outlog_t *o = arg;
    o->calls++;
    if (task >= 64 || stream < 1 || stream > 2)
        fail_msg("output of task %llu stream %d", (unsigned long long)task, stream);
    char *t = o->text[task][stream - 1];
    size_t have = strlen(t);
    if (have + len >= 128) fail_msg("too much output for task %llu", (unsigned long long)task);
    memcpy(t + have, data, len);
    t[have + len] = 0;
}

static void test_forward_output_reaches_the_caller_tagged_and_complete(void **state) {
    (void)state;
    enum { N = 40 };
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    tp_worker_forward = true;
    tp_start_worker(MPB_TESTFNS_LIB, "chatty", 2, -1, 0, NULL);
    tp_start_worker(MPB_TESTFNS_LIB, "chatty", 2, -1, 0, NULL);
    tp_worker_forward = false;
    mpb_pool_t *p = tp_pool_ready(mon, "chatty", 2, c);
    static outlog_t o;
    memset(&o, 0, sizeof o);
    mpb_pool_set_output(p, collect_output, &o);
    mpb__buf_t items = {0};
    tp_items_range(&items, N);
    void *res = NULL;
    size_t rl;
    th_assert_ok(mpb_pool_map(p, "chatty", items.p, items.len, 1, 20000, &res, &rl), c);
    assert_int_equal(tp_check_ints(res, rl, N, same_int), -1);
    mpb_free(res);
    for (int i = 0; i < N; i++) { /* task i ran item i: its lines, whole, on their streams */
        char want[2][128];
        snprintf(want[0], sizeof want[0], "out %d line 1\nout %d line 2\n", i, i);
        snprintf(want[1], sizeof want[1], "err %d\n", i);
        assert_string_equal(o.text[i][0], want[0]);
        assert_string_equal(o.text[i][1], want[1]);
    }
    /* the CLI: tagged lines on stderr */
    char err[8192];
    assert_int_equal(tp_cli_map_output("chatty", "[5,6]", err, sizeof err), 0);
    const char *lines[] = {"[task 0 stdout] out 5 line 1\n", "[task 0 stdout] out 5 line 2\n",
                           "[task 0 stderr] err 5\n",        "[task 1 stdout] out 6 line 1\n",
                           "[task 1 stdout] out 6 line 2\n", "[task 1 stderr] err 6\n"};
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++)
        if (!strstr(err, lines[i])) fail_msg("no '%s' in:\n%s", lines[i], err);
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_terminate_timeout_and_cancel_kill_the_running_task,
                                        tp_setup_http_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_a_callers_end_kills_its_running_task,
                                        tp_setup_fast_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(
            test_poison_task_fails_after_its_attempts_every_worker_alive, tp_setup_broker,
            tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_error_kinds_reach_the_caller, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_forward_output_reaches_the_caller_tagged_and_complete,
                                        tp_setup_broker, tp_teardown_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
