/* test_pool_limits.c - the remote Pool at its limits, against a real mpbrokerd and real
 * mpb-worker processes: results too big for a value or a frame (they fail that task, saying
 * so, and the worker stays connected), a caller over its result bound (its tasks wait aside
 * while another caller's map runs), a caller over pool-max-queued (ELIMIT), chunks cut to
 * max_value whatever the chunksize (SIZE_MAX included), job ids the broker never issued,
 * session end and terminate with tens of thousands of tasks (one cancel, others still
 * served), and what pool.stats and /metrics say (escaped function names, canceled apart,
 * unused function entries freed). */
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

/* ---- results too big ---- */

/* Runs big(n) over sizes with chunksize, returns the map's status; *res on success. */
static int map_big(mpb_pool_t *p, const int64_t *sizes, uint32_t n, size_t chunksize, void **res,
                   size_t *rl) {
    mpb__buf_t items = {0};
    mpb__w_array(&items, n);
    for (uint32_t i = 0; i < n; i++)
        mpb__w_int(&items, sizes[i]);
    int rc = mpb_pool_map(p, "big", items.p, items.len, chunksize, 60000, res, rl);
    mpb__buf_free(&items);
    return rc;
}

static void test_big_results_split_or_fail_and_the_worker_stays(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    pid_t w = tp_start_worker(MPB_TESTFNS_LIB, "big", 4, 0, 0, NULL);
    tp_wait_workers(c, "big", 1, 10000);
    tp_wstat_t w0;
    assert_true(tp_worker_stat(c, w, &w0));
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    void *res = NULL;
    size_t rl;
    /* 12 results of 3 MB on 4 threads: those finished together go back in several
     * pool.done requests, each under max_frame (8m) */
    int64_t sizes[12];
    for (int i = 0; i < 12; i++)
        sizes[i] = 3000000 + i;
    int rc = map_big(p, sizes, 12, 1, &res, &rl);
    if (rc) fail_msg("map of 12 x 3 MB: %s", mpb_errmsg(c));
    mpb__rd_t r = {res, (uint8_t *)res + rl};
    uint32_t n;
    assert_int_equal(mpb__rd_array(&r, &n), 0);
    assert_int_equal(n, 12);
    for (int i = 0; i < 12; i++) {
        const uint8_t *b;
        uint32_t bl;
        assert_int_equal(mpb__rd_bin(&r, &b, &bl), 0);
        assert_int_equal(bl, sizes[i]);
    }
    mpb_free(res);
    /* one chunk of three 3 MB results is 9 MB: it cannot go back in any frame, so its calls
     * fail saying so; it is not run again */
    int64_t three[3] = {3000000, 3000000, 3000000};
    rc = map_big(p, three, 3, 3, &res, &rl);
    th_assert_err(rc, MPB_EREMOTE, c, "result of 9000", "> max_frame 8388608");
    /* one result over max_value (4m) */
    int64_t five[1] = {5000000};
    rc = map_big(p, five, 1, 1, &res, &rl);
    th_assert_err(rc, MPB_EREMOTE, c, "result of 5000005 bytes > max_value 4194304", NULL);
    /* the same worker session did all of it: no reconnect, nothing run twice */
    tp_wstat_t w1;
    assert_true(tp_worker_stat(c, w, &w1));
    assert_int_equal(w1.session, w0.session);
    tp_fnstat_t s = tp_fn_stat(c, "big");
    printf("big results: %llu tasks done, %llu failed, worker session %lld throughout\n",
           (unsigned long long)s.done, (unsigned long long)s.failed, (long long)w1.session);
    assert_int_equal(s.done, 12);
    assert_int_equal(s.failed, 2);
    assert_int_equal(w1.done + w1.failed, 14);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- a caller that does not collect ---- */

static void test_paused_caller_waits_aside(void **state) {
    (void)state;
    enum { NA = 100000, NB = 2000 };
    mpb_client_t *a = th_connect(&tp_broker), *b = th_connect(&tp_broker),
                 *mon = th_connect(&tp_broker);
    pid_t w = tp_start_worker(MPB_TESTFNS_LIB, "pad", 2, 1, 0, NULL);
    mpb_pool_t *pb = tp_pool_ready(mon, "pad", 1, b);
    mpb__buf_t items = {0};
    tp_items_range(&items, NB);
    void *res = NULL;
    size_t rl;
    int64_t t0 = th_now_ms();
    int rc = mpb_pool_map(pb, "pad", items.p, items.len, 1, 60000, &res, &rl);
    if (rc) fail_msg("b's map alone: %s", mpb_errmsg(b));
    int64_t alone_ms = th_now_ms() - t0;
    mpb_free(res);
    /* caller a submits and never takes: with pad's 1 KiB results it is over the 64 KiB
     * bound after some 60 tasks */
    for (int i = 0; i < NA / 1000; i++)
        th_assert_ok(tp_raw_submit(a, "pad", TP_JOB_NIL, 0, 1000, 7, NULL, NULL), a);
    uint64_t sa = mpb_session_id(a);
    tp_cstat_t cs = {0};
    int64_t end = th_now_ms() + 20000;
    while (!(tp_caller_stat(mon, sa, &cs) && cs.paused)) {
        if (th_now_ms() > end)
            fail_msg("caller a never paused (held %lld bytes)", (long long)cs.held_bytes);
        usleep(5000);
    }
    tp_sleep_ms(100); /* what it had at the worker finishes */
    tp_fnstat_t s0 = tp_fn_stat(mon, "pad");
    assert_true(tp_caller_stat(mon, sa, &cs));
    printf("paused caller: %lld held (%lld bytes), %lld queued, function pad: %llu paused\n",
           (long long)cs.held, (long long)cs.held_bytes, (long long)cs.queued,
           (unsigned long long)s0.paused);
    assert_true(cs.paused);
    assert_true(cs.held_bytes > 64 * 1024);
    assert_int_equal(s0.paused, (uint64_t)cs.queued);
    assert_true(cs.queued > NA / 2);
    /* caller b's map goes first: the worker takes b's tasks, not a's */
    t0 = th_now_ms();
    rc = mpb_pool_map(pb, "pad", items.p, items.len, 1, 60000, &res, &rl);
    if (rc) fail_msg("b's map: %s", mpb_errmsg(b));
    int64_t ms = th_now_ms() - t0;
    mpb_free(res);
    tp_fnstat_t s1 = tp_fn_stat(mon, "pad");
    printf("b's map of %d: %lld ms alone, %lld ms beside %lld paused tasks; a's tasks run "
           "meanwhile: %lld\n",
           NB, (long long)alone_ms, (long long)ms, (long long)cs.queued,
           (long long)(s1.done - s0.done - NB));
    assert_int_equal(s1.done - s0.done, NB);
    assert_true(ms < 5 * alone_ms + 1000); /* generous: the paused tasks cost nothing per fetch */
    assert_int_equal(s1.paused, s0.paused);
    /* a collects: its tasks go out again */
    uint64_t taken = 0;
    end = th_now_ms() + 20000;
    while (tp_fn_stat(mon, "pad").done < s1.done + 100) {
        taken += tp_raw_take(a);
        if (th_now_ms() > end)
            fail_msg("caller a did not resume after taking %llu", (unsigned long long)taken);
        usleep(2000);
    }
    tp_kill_worker(w);
    mpb__buf_free(&items);
    mpb_pool_close(&pb);
    mpb_close(&a);
    mpb_close(&b);
    mpb_close(&mon);
    tp_check_healthy();
}

/* ---- a caller that submits without end ---- */

static void test_unfinished_tasks_are_bounded_per_caller(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    /* pool-max-queued 64k: a few hundred small tasks */
    size_t al;
    const uint8_t *a = tp_args1(1, &al);
    int n = 0, rc = 0;
    while (n < 10000 &&
           (rc = mpb_pool_apply_async(p, "nobody", a, al, NULL, NULL, NULL, NULL)) == 0)
        n++;
    printf("pool-max-queued 64k: %d applies accepted, then: %s\n", n, mpb_errmsg(c));
    th_assert_err(rc, MPB_ELIMIT, c, "pool-max-queued 65536", NULL);
    assert_true(n > 50 && n < 1000);
    /* a map over the bound fails as a whole, and what it had sent is cancelled */
    assert_int_equal(mpb_pool_terminate(p), 0);
    assert_int_equal(mpb_pool_join(p, 10000), 0);
    mpb_pool_close(&p);
    assert_int_equal(mpb_pool_open(c, &p), 0);
    mpb__buf_t items = {0};
    tp_items_range(&items, 2000);
    void *res = NULL;
    size_t rl;
    th_assert_err(mpb_pool_map(p, "nobody", items.p, items.len, 1, 1000, &res, &rl), MPB_ELIMIT, c,
                  "pool-max-queued", NULL);
    int64_t end = th_now_ms() + 10000;
    while (tp_fn_stat(mon, "nobody").queued) {
        if (th_now_ms() > end) fail_msg("the failed map's tasks are still queued");
        usleep(5000);
    }
    /* within the bound, work goes on */
    pid_t w = tp_start_worker(MPB_DEMO_LIB, "square", 2, 1, 0, NULL);
    tp_wait_workers(mon, "square", 1, 10000);
    tp_items_range(&items, 200);
    assert_int_equal(mpb_pool_map(p, "square", items.p, items.len, 1, 20000, &res, &rl), 0);
    assert_int_equal(tp_check_ints(res, rl, 200, tp_sq), -1);
    mpb_free(res);
    tp_kill_worker(w);
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- chunks ---- */

static void test_chunks_fit_max_value_whatever_the_chunksize(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    pid_t w = tp_start_worker(MPB_DEMO_LIB, "square", 1, 1, 0, NULL);
    mpb_pool_t *p = tp_pool_ready(c, "square", 1, c);
    enum { N = 20000 };
    mpb__buf_t items = {0};
    tp_items_range(&items, N);
    void *res = NULL;
    size_t rl;
    /* max-value 16k: the automatic chunksize (N / 4 on one slot: 5000 calls, about 20 KB) and
     * SIZE_MAX are cut to fit; SIZE_MAX - 1 must not wrap the task count either */
    const size_t sizes[] = {0, SIZE_MAX, SIZE_MAX - 1, 5000};
    uint64_t before = tp_fn_stat(c, "square").done;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int rc = mpb_pool_map(p, "square", items.p, items.len, sizes[k], 60000, &res, &rl);
        if (rc) fail_msg("chunksize %zu: %s", sizes[k], mpb_errmsg(c));
        assert_int_equal(tp_check_ints(res, rl, N, tp_sq), -1);
        mpb_free(res);
        uint64_t done = tp_fn_stat(c, "square").done;
        printf("chunksize %zu: %llu tasks\n", sizes[k], (unsigned long long)(done - before));
        assert_true(done - before >= 5); /* 80 KB of calls in tasks of at most 16 KB */
        before = done;
    }
    /* an empty map is done at once; one item with a huge chunksize is one task */
    tp_items_range(&items, 0);
    assert_int_equal(mpb_pool_map(p, "square", items.p, items.len, SIZE_MAX, 5000, &res, &rl), 0);
    assert_int_equal(tp_check_ints(res, rl, 0, tp_sq), -1);
    mpb_free(res);
    tp_items_range(&items, 1);
    assert_int_equal(mpb_pool_map(p, "square", items.p, items.len, SIZE_MAX, 5000, &res, &rl), 0);
    assert_int_equal(tp_check_ints(res, rl, 1, tp_sq), -1);
    mpb_free(res);
    /* an item that alone is over max_value: refused before anything is sent */
    mpb__buf_reset(&items);
    mpb__w_array(&items, 2);
    mpb__w_int(&items, 1);
    static uint8_t blob[20000];
    mpb__w_bin(&items, blob, sizeof blob);
    th_assert_err(mpb_pool_map(p, "square", items.p, items.len, 1, 5000, &res, &rl), MPB_ETOOBIG, c,
                  "item 1 of 20003 bytes > max_value 16384", NULL);
    tp_kill_worker(w);
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- job ids ---- */

static void test_job_ids_come_from_the_broker(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    uint64_t j1, j2, j3, first;
    th_assert_ok(tp_raw_submit(c, "nobody", TP_JOB_NIL, 0, 1, 1, &j1, &first), c);
    assert_true(j1 >= 1);
    /* ids it never gave out are refused, and do not move its counter */
    th_assert_err(tp_raw_submit(c, "nobody", TP_JOB_ID, UINT64_MAX, 1, 1, NULL, NULL), MPB_EINVAL,
                  c, "was not issued", NULL);
    th_assert_err(tp_raw_submit(c, "nobody", TP_JOB_ID, 0, 1, 1, NULL, NULL), MPB_EINVAL, c,
                  "was not issued", NULL);
    th_assert_err(tp_raw_submit(c, "nobody", TP_JOB_ID, j1 + 1, 1, 1, NULL, NULL), MPB_EINVAL, c,
                  "was not issued", NULL);
    th_assert_ok(tp_raw_submit(c, "nobody", TP_JOB_NIL, 0, 1, 1, &j2, NULL), c);
    assert_int_equal(j2, j1 + 1);
    /* its own job goes on; no job at all (an apply) is job 0 and is not listed */
    th_assert_ok(tp_raw_submit(c, "nobody", TP_JOB_ID, j1, 2, 1, &j3, NULL), c);
    assert_int_equal(j3, j1);
    th_assert_ok(tp_raw_submit(c, "nobody", TP_JOB_FALSE, 0, 1, 1, &j3, NULL), c);
    assert_int_equal(j3, 0);
    assert_int_equal(tp_jobs_count(c), 2);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- many tasks: a session's end, terminate ---- */

static int submits_left;

static void on_submitted(mpb_client_t *c, int status, const void *v, size_t n, void *arg) {
    (void)c, (void)v, (void)n, (void)arg;
    if (status) fail_msg("pool.submit: %d", status);
    submits_left--;
}

static void test_many_tasks_end_and_terminate_without_stalling_others(void **state) {
    (void)state;
    enum { NJ = 40000, NA = 5000 };
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    /* 40,000 submits of one task each, each its own job (pipelined: quick to send) */
    mpb__buf_t a = {0};
    mpb__w_array(&a, 3);
    mpb__w_cstr(&a, "nobody");
    mpb__w_nil(&a);
    mpb__w_array(&a, 1);
    mpb__w_array(&a, 1);
    mpb__w_array(&a, 1);
    mpb__w_int(&a, 1);
    submits_left = NJ;
    for (int i = 0; i < NJ; i++)
        th_assert_ok(mpb_send(c, MPB_OP_POOL_SUBMIT, NULL, a.p, a.len, on_submitted, NULL), c);
    th_assert_ok(mpb_drain(c, 60000), c);
    assert_int_equal(submits_left, 0);
    assert_int_equal(tp_fn_stat(mon, "nobody").queued, NJ);
    /* its session ends: what it owned goes, in time proportional to that alone */
    int64_t t0 = th_now_ms();
    mpb_close(&c);
    void *res = NULL;
    size_t rl;
    th_assert_ok(mpb_call(mon, MPB_OP_PING, NULL, NULL, 0, 0, &res, &rl), mon);
    mpb_free(res);
    int64_t end_ms = th_now_ms() - t0;
    assert_int_equal(tp_fn_stat(mon, "nobody").queued, 0);
    assert_int_equal(tp_jobs_count(mon), 0);
    /* terminate of 5,000 applies in a row: one pool.cancel */
    c = th_connect(&tp_broker);
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    size_t al;
    const uint8_t *arg = tp_args1(1, &al);
    tp_tally_t t = {0};
    for (int i = 0; i < NA; i++)
        th_assert_ok(
            mpb_pool_apply_async(p, "nobody", arg, al, tp_tally_ok, tp_tally_err, &t, NULL), c);
    char *m = tp_metrics_get();
    double cancels0 = th_metric(m, "mpb_requests_total{op=\"pool.cancel\",result=\"ok\"}", -1);
    free(m);
    t0 = th_now_ms();
    assert_int_equal(mpb_pool_terminate(p), 0);
    th_assert_ok(mpb_call(mon, MPB_OP_PING, NULL, NULL, 0, 0, &res, &rl), mon);
    mpb_free(res);
    int64_t term_ms = th_now_ms() - t0;
    assert_int_equal(mpb_pool_join(p, 30000), 0);
    m = tp_metrics_get();
    double cancels = th_metric(m, "mpb_requests_total{op=\"pool.cancel\",result=\"ok\"}", -1) -
                     (cancels0 < 0 ? 0 : cancels0);
    free(m);
    tp_fnstat_t s = tp_fn_stat(mon, "nobody");
    printf("%d tasks: session end and a ping %lld ms; terminate of %d applies and a ping %lld ms, "
           "%.0f pool.cancel\n",
           NJ, (long long)end_ms, NA, (long long)term_ms, cancels);
    assert_int_equal(t.canceled, NA);
    assert_int_equal(t.ok + t.other, 0);
    assert_true(cancels == 1);
    assert_int_equal(s.canceled, NA);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.queued, 0);
    /* generous: before, these took seconds */
    assert_true(end_ms < 1500);
    assert_true(term_ms < 1500);
    mpb__buf_free(&a);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- what pool.stats and /metrics say ---- */

static void test_stats_and_metrics_escape_names_and_free_unused_functions(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    size_t al;
    const uint8_t *arg = tp_args1(1, &al);
    const char *odd = "bad\"name\\x";
    assert_int_equal(mpb_pool_apply_async(p, odd, arg, al, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(tp_fn_stat(c, odd).queued, 1);
    char *m = tp_metrics_get();
    double v = th_metric(m, "mpb_pool_tasks{function=\"bad\\\"name\\\\x\",state=\"queued\"}", -1);
    if (v != 1) fail_msg("no escaped series for %s in:\n%s", odd, m);
    free(m);
    /* 200 made-up names, cancelled: their entries do not all stay */
    for (int i = 0; i < 200; i++) {
        char name[32];
        snprintf(name, sizeof name, "made-up-%d", i);
        assert_int_equal(mpb_pool_apply_async(p, name, arg, al, NULL, NULL, NULL, NULL), 0);
    }
    assert_int_equal(tp_fns_count(c), 201);
    assert_int_equal(mpb_pool_terminate(p), 0);
    assert_int_equal(mpb_pool_join(p, 10000), 0);
    uint32_t nf = tp_fns_count(c);
    m = tp_metrics_get();
    size_t series = 0;
    for (const char *q = m; (q = strstr(q, "\nmpb_pool_tasks")); q++)
        series++;
    printf("after 201 made-up functions: %u entries, %zu pool task series\n", nf, series);
    assert_true(nf <= 64);
    assert_true(series <= 64 * 7 + 8); /* 7 per function, and the totals */
    assert_true(
        th_metric(m, "mpb_pool_tasks_finished_total{function=\"made-up-199\",result=\"canceled\"}",
                  -1) == 1);
    free(m);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

static int setup_big_broker(void **state) {
    (void)state;
    th_broker_start(&tp_broker, "--max-value", "4m", NULL);
    return 0;
}

static int setup_paused_broker(void **state) {
    (void)state;
    th_broker_start(&tp_broker, "--pool-max-results", "64k", NULL);
    return 0;
}

static int setup_bounded_broker(void **state) {
    (void)state;
    th_broker_start(&tp_broker, "--pool-max-results", "64k", "--pool-max-queued", "64k", NULL);
    return 0;
}

static int setup_small_value_broker(void **state) {
    (void)state;
    th_broker_start(&tp_broker, "--max-value", "16k", NULL);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_big_results_split_or_fail_and_the_worker_stays,
                                        setup_big_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_paused_caller_waits_aside, setup_paused_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_unfinished_tasks_are_bounded_per_caller,
                                        setup_bounded_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_chunks_fit_max_value_whatever_the_chunksize,
                                        setup_small_value_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_job_ids_come_from_the_broker, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_many_tasks_end_and_terminate_without_stalling_others,
                                        tp_setup_http_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(
            test_stats_and_metrics_escape_names_and_free_unused_functions, tp_setup_http_broker,
            tp_teardown_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
