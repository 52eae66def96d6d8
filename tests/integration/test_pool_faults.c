/* test_pool_faults.c - the remote Pool when processes die: a worker SIGKILLed in the middle of
 * a 10,000-task map (its tasks go to the others: the result is complete, in order, each task's
 * result once), a caller SIGKILLed with 200 tasks pending (they are cancelled, not run, even
 * when the worker holding some of them dies too), a task whose worker dies every time (it
 * fails after max_attempts with "worker died", 3 by default and 2 when pool-max-attempts says
 * so), and a live worker busy for longer than the TTL (it keeps its task). The broker runs with a 1
 * s session TTL so the dead are noticed quickly. */
#include <poll.h>
#include <sys/mman.h>

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

/* ---- a worker killed mid-map ---- */

static void test_worker_killed_mid_map_loses_nothing(void **state) {
    (void)state;
    enum { N = 10000 };
    /* sqsleep counts every run of n in a shared file: runs that were cut short count too */
    char path[400];
    snprintf(path, sizeof path, "%s/runs", tp_broker.dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, N * sizeof(uint32_t)), 0);
    uint32_t *runs = mmap(NULL, N * sizeof(uint32_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(runs != MAP_FAILED);
    close(fd);
    setenv("MPB_TEST_COUNTS", path, 1);
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    pid_t victim = tp_start_worker(MPB_TESTFNS_LIB, "sqsleep", 2, 1, 0, NULL);
    tp_start_worker(MPB_TESTFNS_LIB, "sqsleep", 2, 1, 0, NULL);
    tp_start_worker(MPB_TESTFNS_LIB, "sqsleep", 2, 1, 0, NULL);
    unsetenv("MPB_TEST_COUNTS");
    mpb_pool_t *p = tp_pool_ready(mon, "sqsleep", 3, c);
    mpb__buf_t items = {0};
    tp_items_range(&items, N);
    mpb_async_t *a = NULL;
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_pool_map_async(p, "sqsleep", items.p, items.len, 1, NULL, NULL, NULL, &a),
                     0);
    /* mid-flight: a quarter done */
    tp_fnstat_t s = {0};
    int64_t end = th_now_ms() + 60000;
    while ((s = tp_fn_stat(mon, "sqsleep")).done < N / 4) {
        if (th_now_ms() > end)
            fail_msg("only %llu tasks done after 60 s", (unsigned long long)s.done);
        assert_int_equal(mpb_async_ready(a), 0);
        mpb_pool_poll(p, 20);
    }
    tp_wstat_t ws;
    assert_true(tp_worker_stat(mon, victim, &ws));
    kill(victim, SIGKILL);
    int64_t t_kill = th_now_ms();
    tp_kill_worker(victim);
    assert_int_equal(mpb_async_ready(a), 0);
    void *res = NULL;
    size_t rl;
    int rc = mpb_async_get(a, 60000, &res, &rl);
    if (rc) fail_msg("map after the kill: %s", mpb_errmsg(c));
    int64_t t_end = th_now_ms();
    /* complete, correct, in order */
    assert_int_equal(tp_check_ints(res, rl, N, tp_sq), -1);
    mpb_free(res);
    mpb_async_free(&a);
    /* every task ran, a few twice (the ones the victim held), and finished once */
    uint64_t total = 0;
    uint32_t twice = 0;
    for (int i = 0; i < N; i++) {
        if (runs[i] < 1 || runs[i] > 2) fail_msg("task %d ran %u times", i, runs[i]);
        total += runs[i];
        twice += runs[i] == 2;
    }
    tp_fnstat_t f = tp_fn_stat(mon, "sqsleep");
    printf("killed a worker (%lld tasks in flight, %llu done) at %lld ms; map of %d done at "
           "%lld ms; %u tasks ran twice, %llu runs in all\n",
           (long long)ws.running, (unsigned long long)ws.done, (long long)(t_kill - t0), N,
           (long long)(t_end - t0), twice, (unsigned long long)total);
    assert_true(twice <= 3); /* its concurrency + prefetch */
    assert_int_equal(f.done, N);
    assert_int_equal(f.failed, 0);
    assert_int_equal(f.queued + f.running + f.prefetched, 0);
    assert_int_equal(f.workers, 2);
    munmap(runs, N * sizeof(uint32_t));
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- a caller that dies ---- */

static int caller_child(void *arg) {
    int *pfd = arg;
    mpb_client_t *c = NULL;
    if (th_connect_opts(&tp_broker, NULL, &c)) return 10;
    mpb_pool_t *p;
    if (mpb_pool_open(c, &p)) return 11;
    mpb__buf_t items = {0};
    mpb__w_array(&items, 200);
    for (int i = 0; i < 200; i++)
        mpb__w_int(&items, 250);
    if (mpb_pool_map_async(p, "sleep_ms", items.p, items.len, 1, NULL, NULL, NULL, NULL)) return 12;
    if (write(pfd[1], "s", 1) != 1) return 13;
    for (;;)
        mpb_pool_poll(p, 1000); /* until killed */
}

static void test_caller_killed_its_tasks_are_cancelled(void **state) {
    (void)state;
    /* the caller is forked first (no threads here yet) and starts when the worker is there */
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    tp_gate_t gate;
    tp_gate_open(&gate);
    pid_t caller = tp_start_child(caller_child, pfd, &gate);
    mpb_client_t *mon = th_connect(&tp_broker);
    /* one slow worker: concurrency 1, and one task held beyond it */
    pid_t w = tp_start_worker(MPB_DEMO_LIB, "sleep_ms", 1, 1, 0, NULL);
    tp_wait_workers(mon, "sleep_ms", 1, 10000);
    tp_gate_release(&gate);
    tp_gate_close(&gate);
    struct pollfd pf = {pfd[0], POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 10000), 1);
    char ch;
    assert_int_equal(read(pfd[0], &ch, 1), 1);
    close(pfd[0]);
    close(pfd[1]);
    /* the worker is busy with the caller's tasks */
    tp_wstat_t ws;
    int64_t end = th_now_ms() + 10000;
    while (!tp_worker_stat(mon, w, &ws) || ws.running < 1) {
        if (th_now_ms() > end) fail_msg("the worker never got a task");
        usleep(5000);
    }
    tp_fnstat_t s = tp_fn_stat(mon, "sleep_ms");
    assert_true(s.queued >= 190);
    assert_int_equal(tp_jobs_count(mon), 1);
    kill(caller, SIGKILL);
    int64_t t_kill = th_now_ms();
    tp_kill_worker(caller);
    /* after the TTL the queue is drained without running it */
    end = th_now_ms() + 10000;
    while ((s = tp_fn_stat(mon, "sleep_ms")).queued > 0) {
        if (th_now_ms() > end)
            fail_msg("%llu tasks still queued 10 s after the caller died",
                     (unsigned long long)s.queued);
        usleep(10000);
    }
    int64_t drained = th_now_ms() - t_kill;
    assert_int_equal(tp_jobs_count(mon), 0);
    /* The worker still holds what it had (nobody wants those results). It dies now: what it
     * held is dropped, not handed to another worker. */
    assert_true(tp_worker_stat(mon, w, &ws));
    kill(w, SIGKILL);
    tp_kill_worker(w);
    printf("caller killed: queue drained after %lld ms; the worker had run %llu of 200 tasks "
           "and died holding %lld\n",
           (long long)drained, (unsigned long long)ws.done, (long long)ws.running);
    assert_true(ws.done <= 20); /* 250 ms each for about the TTL: most never ran */
    assert_true(ws.running >= 1);
    end = th_now_ms() + 10000;
    while (tp_fn_workers(mon, "sleep_ms") > 0) {
        if (th_now_ms() > end) fail_msg("the dead worker is still registered after 10 s");
        usleep(20000);
    }
    s = tp_fn_stat(mon, "sleep_ms");
    assert_int_equal(s.queued, 0);
    assert_int_equal(s.running + s.prefetched, 0);
    /* a fresh worker finds nothing of the dead caller's to run */
    pid_t w2 = tp_start_worker(MPB_DEMO_LIB, "sleep_ms", 1, 1, 0, NULL);
    tp_wait_workers(mon, "sleep_ms", 1, 10000);
    tp_sleep_ms(400);
    tp_wstat_t ws2;
    assert_true(tp_worker_stat(mon, w2, &ws2));
    assert_int_equal(ws2.done + (uint64_t)ws2.running + (uint64_t)ws2.prefetched, 0);
    tp_fnstat_t s2 = tp_fn_stat(mon, "sleep_ms");
    assert_int_equal(s2.done, s.done);
    assert_int_equal(s2.queued + s2.running + s2.prefetched, 0);
    mpb_close(&mon);
    tp_check_healthy();
}

/* ---- a task whose worker always dies ---- */

/* A recycling mpb-worker serving crash (every child that dies is replaced by a fresh one),
 * seen by mon, and a pool on c. */
static mpb_pool_t *crash_pool(mpb_client_t *c, mpb_client_t *mon) {
    tp_start_worker(MPB_TESTFNS_LIB, "crash", 1, 0, 1000000, NULL);
    mpb_pool_t *p = tp_pool_ready(mon, "crash", 1, c);
    return p;
}

/* pool.apply of crash(1) on p, 30 s at most: returns its status, and in *ms how long it
 * took. */
static int apply_crash(mpb_pool_t *p, int64_t *ms) {
    size_t al, rl;
    const uint8_t *a = tp_args1(1, &al);
    void *res = NULL;
    int64_t t0 = th_now_ms();
    int rc = mpb_pool_apply(p, "crash", a, al, 30000, &res, &rl);
    *ms = th_now_ms() - t0;
    return rc;
}

static void test_task_fails_after_its_worker_died_max_attempts_times(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    mpb_pool_t *p = crash_pool(c, mon);
    int64_t ms;
    assert_int_equal(apply_crash(p, &ms), MPB_EREMOTE);
    printf("crash: failed after %lld ms: %s\n", (long long)ms, mpb_errmsg(c));
    assert_non_null(strstr(mpb_errmsg(c), "worker died"));
    assert_non_null(strstr(mpb_errmsg(c), "3 times"));
    assert_true(ms >= 2000); /* three deaths, each noticed after the 1 s TTL */
    tp_fnstat_t s = tp_fn_stat(mon, "crash");
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.done, 0);
    assert_int_equal(s.queued + s.running + s.prefetched, 0);
    /* the async form: error_callback with the same words */
    size_t al, rl;
    const uint8_t *a = tp_args1(1, &al);
    void *res = NULL;
    mpb_async_t *h = NULL;
    assert_int_equal(mpb_pool_apply_async(p, "crash", a, al, NULL, NULL, NULL, &h), 0);
    assert_int_equal(mpb_async_wait(h, 30000), 1);
    assert_int_equal(mpb_async_successful(h), 0);
    assert_int_equal(mpb_async_get(h, 0, &res, &rl), MPB_EREMOTE);
    assert_non_null(strstr(mpb_errmsg(c), "worker died"));
    mpb_async_free(&h);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* With pool-max-attempts 2, the second death fails the task, and says 2. */
static void test_max_attempts_is_a_setting(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    mpb_pool_t *p = crash_pool(c, mon);
    int64_t ms;
    int rc = apply_crash(p, &ms);
    printf("crash with pool-max-attempts 2: failed after %lld ms: %s\n", (long long)ms,
           mpb_errmsg(c));
    th_assert_err(rc, MPB_EREMOTE, c, "its worker died 2 times", NULL);
    assert_true(ms >= 1000); /* two deaths, each noticed after the 1 s TTL */
    char *m = tp_metrics_get();
    assert_true(th_metric(m, "mpb_pool_tasks_requeued_total", -1) == 1);
    assert_true(th_metric(m, "mpb_pool_tasks_abandoned_total", -1) == 1);
    free(m);
    tp_fnstat_t s = tp_fn_stat(mon, "crash");
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.queued + s.running + s.prefetched, 0);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

static int setup_two_attempts_broker(void **state) {
    (void)state;
    th_broker_start(&tp_broker, "--heartbeat-ms", "200", "--session-ttl-ms", "1000",
                    "--pool-max-attempts", "2", "--http", "127.0.0.1:0", NULL);
    return 0;
}

/* ---- a worker busy for longer than the TTL is alive, and keeps its task ---- */

static void test_busy_worker_keeps_its_task_past_the_ttl(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    pid_t w = tp_start_worker(MPB_DEMO_LIB, "sleep_ms", 1, 0, 0, NULL);
    mpb_pool_t *p = tp_pool_ready(c, "sleep_ms", 1, c);
    size_t al, rl;
    const uint8_t *a = tp_args1(2500, &al);
    void *res = NULL;
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_pool_apply(p, "sleep_ms", a, al, 20000, &res, &rl), 0);
    int64_t ms = th_now_ms() - t0;
    assert_int_equal(tp_unpack_int(res, rl), 2500);
    mpb_free(res);
    /* run once, by the same worker session: not handed on after 1 s */
    tp_wstat_t ws;
    assert_true(tp_worker_stat(c, w, &ws));
    assert_int_equal(ws.done, 1);
    tp_fnstat_t s = tp_fn_stat(c, "sleep_ms");
    assert_int_equal(s.done, 1);
    assert_int_equal(s.workers, 1);
    assert_true(ms < 4500);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_worker_killed_mid_map_loses_nothing,
                                        tp_setup_fast_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_caller_killed_its_tasks_are_cancelled,
                                        tp_setup_fast_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_task_fails_after_its_worker_died_max_attempts_times,
                                        tp_setup_fast_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_max_attempts_is_a_setting, setup_two_attempts_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_busy_worker_keeps_its_task_past_the_ttl,
                                        tp_setup_fast_broker, tp_teardown_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
