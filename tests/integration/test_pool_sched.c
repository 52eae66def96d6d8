/* test_pool_sched.c - how the remote Pool places tasks, with mpb-worker's default settings:
 * four 2 s tasks on two workers of two slots run in one task-time; a slot that turns idle takes
 * the tasks another worker holds unstarted (that worker is refused when it asks to start
 * them); and a worker paused past its session's end (SIGSTOP) starts none of the tasks the
 * broker handed to others meanwhile, whether it held them tentatively (long tasks) or
 * streamed (short ones): a shared file counts every start of every task. */
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

/* [ms] * n, as map items */
static void items_ms(mpb__buf_t *b, uint32_t n, int64_t ms) {
    mpb__buf_reset(b);
    mpb__w_array(b, n);
    for (uint32_t i = 0; i < n; i++)
        mpb__w_int(b, ms);
}

static void check_all_ms(const void *res, size_t len, uint32_t n, int64_t ms) {
    th_assert_int_seq(res, len, n, ms, 0);
}

/* `mpb pool`'s table, as text, in out (NUL-terminated). */
static void mpb_pool_table(char *out, size_t n) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' -e '%s' -k '%s' pool", th_mpb_cli, tp_broker.endpoint,
             tp_broker.keyfile);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t k = fread(out, 1, n - 1, f);
    out[k] = 0;
    assert_int_equal(pclose(f), 0);
}

/* ---- long tasks spread ---- */

static void test_default_settings_run_4_long_tasks_on_2x2_slots_at_once(void **state) {
    (void)state;
    enum { N = 4, MS = 2000 };
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    tp_start_worker(MPB_DEMO_LIB, "sleep_ms", 2, -1, 0, NULL);
    tp_start_worker(MPB_DEMO_LIB, "sleep_ms", 2, -1, 0, NULL);
    mpb_pool_t *p = tp_pool_ready(mon, "sleep_ms", 2, c);
    mpb__buf_t items = {0};
    items_ms(&items, N, MS);
    for (int round = 0; round < 2; round++) { /* the second with the function's times known */
        void *res = NULL;
        size_t rl;
        int64_t t0 = th_now_ms();
        int rc = mpb_pool_map(p, "sleep_ms", items.p, items.len, 1, 20000, &res, &rl);
        int64_t ms = th_now_ms() - t0;
        if (rc) fail_msg("map: %s", mpb_errmsg(c));
        check_all_ms(res, rl, N, MS);
        mpb_free(res);
        printf("round %d: %d x %d ms on 2 workers x 2 slots, default prefetch: %lld ms\n", round, N,
               MS, (long long)ms);
        assert_true(ms <= 2500);
    }
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* A holds 2 running and 2 tentative when B arrives: B's idle slots take the 2, A is refused
 * when it asks to start them. */
static void test_idle_slot_steals_what_another_worker_has_not_started(void **state) {
    (void)state;
    enum { N = 4, MS = 2000 };
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    pid_t a = tp_start_worker(MPB_DEMO_LIB, "sleep_ms", 2, -1, 0, NULL);
    mpb_pool_t *p = tp_pool_ready(mon, "sleep_ms", 1, c);
    mpb__buf_t items = {0};
    items_ms(&items, N, MS);
    mpb_async_t *as = NULL;
    int64_t t0 = th_now_ms();
    assert_int_equal(
        mpb_pool_map_async(p, "sleep_ms", items.p, items.len, 1, NULL, NULL, NULL, &as), 0);
    tp_wstat_t ws = {0};
    int64_t end = th_now_ms() + 5000;
    while (!(tp_worker_stat(mon, a, &ws) && ws.running == 2 && ws.prefetched == 2)) {
        if (th_now_ms() > end)
            fail_msg("worker A holds %lld running, %lld prefetched", (long long)ws.running,
                     (long long)ws.prefetched);
        mpb_pool_poll(p, 5);
    }
    assert_int_equal(ws.ntasks, 2); /* the running ones, with their age */
    assert_true(ws.oldest_age >= 0 && ws.oldest_age < 2000);
    char table[8192];
    mpb_pool_table(table, sizeof table);
    if (!strstr(table, "STEALS") || !strstr(table, "RETRIES") ||
        !strstr(table, "    running: task"))
        fail_msg("mpb pool shows no steals, retries or running tasks:\n%s", table);
    pid_t b = tp_start_worker(MPB_DEMO_LIB, "sleep_ms", 2, -1, 0, NULL);
    tp_wait_workers(mon, "sleep_ms", 2, 10000);
    int64_t t_b = th_now_ms(); /* B serves: its idle slots steal at once */
    void *res = NULL;
    size_t rl;
    int rc = mpb_async_get(as, 20000, &res, &rl);
    int64_t ms = th_now_ms() - t0, after_b = th_now_ms() - t_b;
    if (rc) fail_msg("map: %s", mpb_errmsg(c));
    check_all_ms(res, rl, N, MS);
    mpb_free(res);
    mpb_async_free(&as);
    tp_wstat_t wa, wb;
    end = th_now_ms() + 3000;
    do { /* A asks to start its two once its slots are free; the answer may trail the map */
        assert_true(tp_worker_stat(mon, a, &wa));
        assert_true(tp_worker_stat(mon, b, &wb));
    } while (wa.refused < 2 && th_now_ms() < end && (usleep(10000), 1));
    printf("B served %lld ms after the map began; map of %d x %d ms done in %lld ms; A: done "
           "%llu stolen %llu refused %llu; B: done %llu steals %llu\n",
           (long long)(t_b - t0), N, MS, (long long)ms, (unsigned long long)wa.done,
           (unsigned long long)wa.stolen, (unsigned long long)wa.refused,
           (unsigned long long)wb.done, (unsigned long long)wb.steals);
    assert_int_equal(wa.done, 2);
    assert_int_equal(wb.done, 2);
    assert_int_equal(wa.stolen, 2);
    assert_int_equal(wb.steals, 2);
    assert_int_equal(wa.refused, 2);
    assert_true(after_b <= 2500); /* one task-time once B serves */
    assert_true(ms < 2 * MS);     /* not two task-times */
    assert_true(tp_pool_metric("mpb_pool_steals_total") == 2);
    assert_true(tp_pool_metric("mpb_pool_lease_refusals_total") == 2);
    assert_true(tp_pool_metric("mpb_pool_tasks_killed_total") == 0); /* threads: none killed */
    tp_fnstat_t f = tp_fn_stat(mon, "sleep_ms");
    assert_int_equal(f.done, N);
    assert_int_equal(f.queued + f.running + f.prefetched, 0);
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- a paused worker ---- */

/* Waits until process pid is stopped (state T in /proc/PID/stat). */
static void wait_stopped(pid_t pid) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 1000; i++) {
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = 0;
        char *rp = strrchr(buf, ')');
        if (rp && rp[1] == ' ' && rp[2] == 'T') return;
        usleep(1000);
    }
    fail_msg("process %d did not stop", (int)pid);
}

/* Two workers (one slot each, default prefetch) run n x countnap(nap_ms); once one of them,
 * A, holds a running task and a prefetch and at least done_before tasks are done, A is
 * SIGSTOPped until the broker has taken its session for dead, then continued. Every task must
 * have started, and a task that had not started when A stopped must start exactly once: only
 * what A had started may run again (handed on when A was taken for dead), and A's one slot
 * may have taken a task it had not yet begun to run. */
static void pause_past_ttl(uint32_t n, const char *nap_ms, uint64_t done_before) {
    uint32_t *starts = tp_counts_file("starts", n);
    setenv("MPB_TEST_NAP_MS", nap_ms, 1);
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    pid_t w[2];
    w[0] = tp_start_worker(MPB_TESTFNS_LIB, "countnap", 1, -1, 0, NULL);
    w[1] = tp_start_worker(MPB_TESTFNS_LIB, "countnap", 1, -1, 0, NULL);
    tp_wait_workers(mon, "countnap", 2, 10000);
    unsetenv("MPB_TEST_COUNTS");
    unsetenv("MPB_TEST_NAP_MS");
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    mpb__buf_t items = {0};
    tp_items_range(&items, n);
    mpb_async_t *as = NULL;
    assert_int_equal(
        mpb_pool_map_async(p, "countnap", items.p, items.len, 1, NULL, NULL, NULL, &as), 0);
    tp_wstat_t ws = {0};
    pid_t a = 0;
    int64_t end = th_now_ms() + 20000;
    while (!a) {
        if (tp_fn_stat(mon, "countnap").done >= done_before)
            for (int i = 0; i < 2 && !a; i++)
                if (tp_worker_stat(mon, w[i], &ws) && ws.running == 1 && ws.prefetched >= 1)
                    a = w[i];
        if (!a && th_now_ms() > end) fail_msg("no worker held a running and a prefetched task");
        if (!a) mpb_pool_poll(p, 1);
    }
    kill(a, SIGSTOP);
    wait_stopped(a);
    uint32_t *before = malloc(n * sizeof *before);
    assert_non_null(before);
    memcpy(before, starts, n * sizeof *before);
    int64_t held = ws.prefetched;
    end = th_now_ms() + 10000;
    while (tp_worker_stat(mon, a, &ws)) { /* until its session ends (TTL 1 s) */
        if (th_now_ms() > end) fail_msg("worker A's session outlived 10 s of SIGSTOP");
        mpb_pool_poll(p, 20);
    }
    kill(a, SIGCONT);
    void *res = NULL;
    size_t rl;
    int rc = mpb_async_get(as, 60000, &res, &rl);
    if (rc) fail_msg("map: %s", mpb_errmsg(c));
    mpb_free(res);
    mpb_async_free(&as);
    tp_sleep_ms(600); /* time enough for A to start what it held, were it to */
    uint64_t total = 0;
    uint32_t twice = 0, late = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (starts[i] < 1 || starts[i] > 2) fail_msg("task %u started %u times", i, starts[i]);
        /* one such may be the task A's thread had taken but not yet begun when it stopped */
        if (starts[i] == 2 && !before[i] && ++late > 1)
            fail_msg("task %u, not started when A stopped, started twice (%u such)", i, late);
        total += starts[i];
        twice += starts[i] == 2;
    }
    printf("nap %s ms: A held %lld unstarted when stopped; %u tasks, %llu starts, %u twice\n",
           nap_ms, (long long)held, n, (unsigned long long)total, twice);
    assert_true(twice <= 2); /* A's running task, and one it finished but had not reported */
    free(before);
    munmap(starts, n * sizeof(uint32_t));
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

static void test_paused_worker_starts_no_tentative_task_given_to_another(void **state) {
    (void)state;
    pause_past_ttl(12, "300", 0);
}

static void test_paused_worker_starts_no_streamed_task_given_to_another(void **state) {
    (void)state;
    pause_past_ttl(600, "3", 300);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_default_settings_run_4_long_tasks_on_2x2_slots_at_once,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_idle_slot_steals_what_another_worker_has_not_started,
                                        tp_setup_http_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(
            test_paused_worker_starts_no_tentative_task_given_to_another, tp_setup_fast_broker,
            tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_paused_worker_starts_no_streamed_task_given_to_another,
                                        tp_setup_fast_broker, tp_teardown_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
