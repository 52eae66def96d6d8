/* test_pool_stream.c - what a remote Pool does while a task runs: a --forward-output worker's
 * lines reach the caller as they are written (a task that prints, sleeps 1 s and prints again:
 * its first line comes a poll before its result, both lines tagged by task, whole and in
 * order; past 64 KiB it is cut with a note); a task on a worker's thread, which cannot be killed,
 * sees mpb_task_cancelled() once terminate(), a timeout or a freed AsyncResult finished it, while
 * the caller had its answer at once and the slot serves again; and pool.output refuses malformed
 * input, saying why, while the broker goes on serving. */
#include <sys/mman.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpbproto.h"
#include "th_pool.h"

/* ---- output while the task runs ---- */

typedef struct stream_log {
    char text[2][2][128]; /* per task, per stream */
    int polls;            /* the mpb_pool_poll() calls made so far */
    int first_line_poll[2], result_poll[2];
    int results;
} stream_log_t;

static void on_output(void *arg, mpb_async_t *a, uint64_t task, int stream, const void *data,
                      size_t len) {
    (void)a;
    stream_log_t *o = arg;
    if (task >= 2 || stream < 1 || stream > 2)
        fail_msg("output of task %llu stream %d", (unsigned long long)task, stream);
    char *t = o->text[task][stream - 1];
    size_t have = strlen(t);
    if (have + len >= sizeof o->text[0][0])
        fail_msg("too much output for task %llu", (unsigned long long)task);
    memcpy(t + have, data, len);
    t[have + len] = 0;
    if (!o->first_line_poll[task] && strchr(t, '\n')) o->first_line_poll[task] = o->polls;
}

static void on_result(void *arg, const void *res, size_t len) {
    stream_log_t *o = arg;
    mpb__rd_t r = {res, (const uint8_t *)res + len};
    uint32_t n;
    if (mpb__rd_array(&r, &n) || n != 2) fail_msg("not a 2-item result");
    for (int i = 0; i < 2; i++)
        o->result_poll[i] = o->polls;
    o->results++;
}

/* A pool of a new client served by one mpb-worker that forwards its tasks' output (fn, at
 * concurrency conc); mon, another client, saw the worker come. */
static mpb_pool_t *forwarding_pool(const char *fn, int conc, mpb_client_t **c, mpb_client_t **mon) {
    *c = th_connect(&tp_broker);
    *mon = th_connect(&tp_broker);
    tp_worker_forward = true;
    tp_start_worker(MPB_TESTFNS_LIB, fn, conc, -1, 0, NULL);
    tp_worker_forward = false;
    return tp_pool_ready(*mon, fn, 1, *c);
}

static void test_output_reaches_the_caller_while_the_task_runs(void **state) {
    (void)state;
    mpb_client_t *c, *mon;
    mpb_pool_t *p = forwarding_pool("slowchat", 2, &c, &mon);
    static stream_log_t o;
    memset(&o, 0, sizeof o);
    mpb_pool_set_output(p, on_output, &o);
    uint8_t items[] = {0x92, 0x05, 0x06}; /* [5, 6]: task 0 runs 5, task 1 runs 6 */
    mpb_async_t *a = NULL;
    assert_int_equal(
        mpb_pool_map_async(p, "slowchat", items, sizeof items, 1, on_result, NULL, &o, &a), 0);
    int64_t t0 = th_now_ms(), first_ms = -1;
    while (!o.results) {
        if (th_now_ms() - t0 > 20000) fail_msg("no result in 20 s");
        o.polls++;
        assert_true(mpb_pool_poll(p, 50) >= 0);
        if (first_ms < 0 && o.first_line_poll[0] && o.first_line_poll[1])
            first_ms = th_now_ms() - t0;
    }
    printf("first lines after %lld ms, the result after %lld ms\n", (long long)first_ms,
           (long long)(th_now_ms() - t0));
    for (int i = 0; i < 2; i++) { /* tagged, whole, in order, and the first one early */
        char want[64];
        snprintf(want, sizeof want, "first %d\nsecond %d\n", 5 + i, 5 + i);
        assert_string_equal(o.text[i][0], want);
        assert_string_equal(o.text[i][1], "");
        if (!o.first_line_poll[i] || o.first_line_poll[i] >= o.result_poll[i])
            fail_msg("task %d's first line came in poll %d, its result in poll %d", i,
                     o.first_line_poll[i], o.result_poll[i]);
    }
    void *res = NULL;
    size_t rl;
    assert_int_equal(mpb_async_get(a, 0, &res, &rl), 0);
    mpb_free(res);
    mpb_async_free(&a);
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* What a task writes past 64 KiB is cut, saying so, however many pieces it went in. */
typedef struct big_out {
    char *text;
    size_t len;
    int pieces;
} big_out_t;

static void on_big_output(void *arg, mpb_async_t *a, uint64_t task, int stream, const void *data,
                          size_t len) {
    (void)a;
    big_out_t *o = arg;
    if (task != 0 || stream != 1)
        fail_msg("output of task %llu stream %d", (unsigned long long)task, stream);
    if (o->len + len > 70000) fail_msg("%zu bytes of output, past the bound", o->len + len);
    memcpy(o->text + o->len, data, len);
    o->len += len;
    o->pieces++;
}

static void test_output_past_64k_is_cut_with_a_note(void **state) {
    (void)state;
    mpb_client_t *c, *mon;
    mpb_pool_t *p = forwarding_pool("flood", 1, &c, &mon);
    static char text[70000];
    big_out_t o = {text, 0, 0};
    mpb_pool_set_output(p, on_big_output, &o);
    size_t al, rl;
    const uint8_t *args = tp_args1(1000, &al); /* 100,000 bytes */
    void *res = NULL;
    th_assert_ok(mpb_pool_apply(p, "flood", args, al, 20000, &res, &rl), c);
    assert_int_equal(tp_unpack_int(res, rl), 1000);
    mpb_free(res);
    static const char note[] = "\n[output cut at 65536 bytes]\n";
    printf("%zu bytes of output in %d pieces\n", o.len, o.pieces);
    assert_int_equal(o.len, 65536 + sizeof note - 1);
    for (size_t i = 0; i < 65536; i++) /* 655 whole lines, then 36 bytes of the next */
        if (text[i] != (i % 100 == 99 ? '\n' : 'x')) fail_msg("byte %zu is 0x%02x", i, text[i]);
    assert_memory_equal(text + 65536, note, sizeof note - 1);
    /* the CLI: 50 lines of 99 bytes (the worker reads 4 KiB at a time, so some come in two
     * pieces), each whole on a line of its own */
    static char err[8192];
    assert_int_equal(tp_cli_map_output("flood", "[50]", err, sizeof err), 0);
    char want[128];
    snprintf(want, sizeof want, "[task 0 stdout] %.99s\n",
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
             "xxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_int_equal(strlen(want), 16 + 99 + 1);
    for (int i = 0; i < 50; i++)
        if (memcmp(err + i * strlen(want), want, strlen(want)))
            fail_msg("line %d of the CLI's output is not whole:\n%s", i, err);
    assert_int_equal(strlen(err), 50 * strlen(want));
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* Output that reaches the bound exactly, in reads that end there, is not cut: the note comes
 * with the first byte past it (it once never came). */
static void test_output_exactly_64k_then_more(void **state) {
    (void)state;
    mpb_client_t *c, *mon;
    mpb_pool_t *p = forwarding_pool("exact64k", 1, &c, &mon);
    static char text[70000];
    static const char note[] = "\n[output cut at 65536 bytes]\n";
    for (int more = 0; more <= 10; more += 10) {
        big_out_t o = {text, 0, 0};
        mpb_pool_set_output(p, on_big_output, &o);
        size_t al, rl;
        const uint8_t *args = tp_args1(more, &al);
        void *res = NULL;
        th_assert_ok(mpb_pool_apply(p, "exact64k", args, al, 20000, &res, &rl), c);
        assert_int_equal(tp_unpack_int(res, rl), more);
        mpb_free(res);
        printf("65536 + %d bytes written: %zu bytes of output in %d pieces\n", more, o.len,
               o.pieces);
        assert_int_equal(o.len, 65536 + (more ? sizeof note - 1 : 0));
        for (size_t i = 0; i < 65536; i++)
            if (text[i] != 'y') fail_msg("byte %zu is 0x%02x", i, text[i]);
        if (more) assert_memory_equal(text + 65536, note, sizeof note - 1);
    }
    mpb_pool_close(&p);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- thread mode: cancelling is cooperative ---- */

/* After `how` finished coop(k) at t0 (the caller had its answer already): the function saw
 * mpb_task_cancelled() and returned, and the one slot answers nap(7). */
static void assert_told_and_free(mpb_pool_t *p, volatile uint32_t *cancels, int k, int64_t t0,
                                 const char *how) {
    int64_t end = t0 + 10000;
    while (__atomic_load_n(&cancels[k], __ATOMIC_SEQ_CST) == 0) {
        if (th_now_ms() > end) fail_msg("after %s the task never saw mpb_task_cancelled()", how);
        usleep(2000);
    }
    int64_t told = th_now_ms() - t0;
    size_t al, rl;
    const uint8_t *a = tp_args1(7, &al);
    void *res = NULL;
    th_assert_ok(mpb_pool_apply(p, "nap", a, al, 10000, &res, &rl), NULL);
    assert_int_equal(tp_unpack_int(res, rl), 7);
    mpb_free(res);
    printf("after %s: the task saw it in %lld ms, the slot answered in %lld ms\n", how,
           (long long)told, (long long)(th_now_ms() - t0));
    assert_int_equal(cancels[k], 1);
}

static void coop_async(mpb_pool_t *p, int k, mpb_async_t **a) {
    size_t al;
    const uint8_t *args = tp_args1(k, &al);
    assert_int_equal(mpb_pool_apply_async(p, "coop", args, al, NULL, NULL, NULL, a), 0);
}

static void test_thread_mode_cancel_is_seen_by_the_task(void **state) {
    (void)state;
    uint32_t *cancels = tp_counts_file("cancels", 3);
    mpb_client_t *c = th_connect(&tp_broker), *mon = th_connect(&tp_broker);
    pid_t w = tp_start_worker(MPB_TESTFNS_LIB, "coop,nap", 1, -1, 0, NULL); /* threads */
    tp_wait_workers(mon, "coop", 1, 10000);
    unsetenv("MPB_TEST_COUNTS");
    mpb_pool_t *p, *p2;
    assert_int_equal(mpb_pool_open(c, &p2), 0);
    /* terminate(): the caller has ECANCELED at once, not when the thread is done */
    assert_int_equal(mpb_pool_open(c, &p), 0);
    mpb_async_t *a = NULL;
    coop_async(p, 0, &a);
    tp_wait_running(mon, w);
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_pool_terminate(p), 0);
    assert_int_equal(mpb_async_get(a, 5000, NULL, NULL), MPB_ECANCELED);
    printf("terminate(): the caller's answer in %lld ms\n", (long long)(th_now_ms() - t0));
    mpb_async_free(&a);
    mpb_pool_close(&p);
    assert_told_and_free(p2, cancels, 0, t0, "terminate()");
    /* apply(..., timeout) */
    size_t al;
    const uint8_t *args = tp_args1(1, &al);
    void *res = NULL;
    size_t rl;
    assert_int_equal(mpb_pool_apply(p2, "coop", args, al, 300, &res, &rl), MPB_ETIMEDOUT);
    assert_told_and_free(p2, cancels, 1, th_now_ms(), "a 300 ms timeout");
    /* a freed AsyncResult */
    coop_async(p2, 2, &a);
    tp_wait_running(mon, w);
    t0 = th_now_ms();
    mpb_async_free(&a);
    assert_told_and_free(p2, cancels, 2, t0, "mpb_async_free()");
    /* one worker process throughout; three tasks cancelled, none killed, nothing left */
    tp_wstat_t ws;
    assert_true(tp_worker_stat(mon, w, &ws));
    assert_int_equal(ws.running + ws.prefetched, 0);
    assert_int_equal(ws.done, 3); /* the naps: the cancelled tasks' results were dropped */
    tp_fnstat_t f = tp_fn_stat(mon, "coop");
    assert_int_equal(f.canceled, 3);
    assert_int_equal(f.done + f.failed, 0);
    assert_true(tp_pool_metric("mpb_pool_tasks_killed_total") == 0);
    munmap(cancels, 3 * sizeof(uint32_t));
    mpb_pool_close(&p2);
    mpb_close(&mon);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- pool.output: bad input ---- */

/* pool.output with one argument, the msgpack in arg (n bytes). */
static int raw_output(mpb_client_t *c, const uint8_t *arg, size_t n) {
    mpb__buf_t a = {0};
    mpb__w_array(&a, 1);
    mpb__w_raw(&a, arg, n);
    void *res = NULL;
    size_t len = 0;
    int rc = mpb_call(c, MPB_OP_POOL_OUTPUT, NULL, a.p, a.len, 5000, &res, &len);
    mpb__buf_free(&a);
    if (rc == 0) {
        assert_int_equal(len, 1);
        assert_int_equal(((uint8_t *)res)[0], 0xc0); /* nil */
    }
    mpb_free(res);
    return rc;
}

static void test_pool_output_refuses_malformed_input(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    const uint8_t empty[] = {0x90};
    th_assert_err(raw_output(c, empty, sizeof empty), MPB_EINVAL, c,
                  "pool.output before pool.register", NULL);
    mpb__buf_t a = {0};
    mpb__w_array(&a, 3); /* pool.register ["x"] 1 0 */
    mpb__w_array(&a, 1);
    mpb__w_cstr(&a, "x");
    mpb__w_int(&a, 1);
    mpb__w_int(&a, 0);
    void *res = NULL;
    size_t len;
    th_assert_ok(mpb_call(c, MPB_OP_POOL_REGISTER, NULL, a.p, a.len, 5000, &res, &len), c);
    mpb_free(res);
    mpb__buf_free(&a);
    const uint8_t not_array[] = {0x07};
    th_assert_err(raw_output(c, not_array, sizeof not_array), MPB_ETYPE, c,
                  "pool.output takes an array", NULL);
    const uint8_t short_item[] = {0x91, 0x92, 0x01, 0x01}; /* [[1, 1]] */
    th_assert_err(raw_output(c, short_item, sizeof short_item), MPB_EPROTO, c,
                  "pool.output item 0 is not [task_id, attempt, output]", NULL);
    /* [[1, 1, [[3, bin "a"]]]]: stream 3 */
    const uint8_t bad_stream[] = {0x91, 0x93, 0x01, 0x01, 0x91, 0x92, 0x03, 0xc4, 0x01, 'a'};
    th_assert_err(raw_output(c, bad_stream, sizeof bad_stream), MPB_EPROTO, c,
                  "pool.output item 0: output must be [[stream, bin], ...]", NULL);
    /* [[1, 1, [[1, "a"]]]]: a str, not a bin */
    const uint8_t not_bin[] = {0x91, 0x93, 0x01, 0x01, 0x91, 0x92, 0x01, 0xa1, 'a'};
    th_assert_err(raw_output(c, not_bin, sizeof not_bin), MPB_EPROTO, c,
                  "pool.output item 0: output must be [[stream, bin], ...]", NULL);
    /* well-formed, for a task this session does not run: dropped */
    const uint8_t stray[] = {0x91, 0x93, 0x01, 0x01, 0x91, 0x92, 0x01, 0xc4, 0x01, 'a'};
    th_assert_ok(raw_output(c, stray, sizeof stray), c);
    /* pool.take's OUTPUT must be a bool */
    mpb__w_array(&a, 4);
    mpb__w_uint(&a, 1);
    mpb__w_uint(&a, 10);
    mpb__w_int(&a, 0);
    mpb__w_int(&a, 1);
    th_assert_err(mpb_call(c, MPB_OP_POOL_TAKE, NULL, a.p, a.len, 5000, &res, &len), MPB_ETYPE, c,
                  "output must be a boolean", NULL);
    mpb__buf_free(&a);
    mpb_close(&c);
    tp_check_healthy();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_output_reaches_the_caller_while_the_task_runs,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_output_past_64k_is_cut_with_a_note, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_output_exactly_64k_then_more, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_thread_mode_cancel_is_seen_by_the_task,
                                        tp_setup_http_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_pool_output_refuses_malformed_input, tp_setup_broker,
                                        tp_teardown_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
