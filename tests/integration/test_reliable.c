/* test_reliable.c - reliable get: an item a JoinableQueue (or a queue opened reliable) hands
 * to a consumer that dies before task_done goes back to the front of the queue, another
 * consumer takes it and join() returns; task_done names the item it finishes (a delivery id),
 * and the old task_done still works; a plain queue keeps Python's semantics. The broker runs
 * with a short session TTL so that a SIGKILLed consumer's session ends within two seconds. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th.h"

static th_broker_t B;
static int http_port;

static int setup(void **state) {
    (void)state;
    th_broker_start(&B, "--session-ttl-ms", "2000", "--heartbeat-ms", "200", "--http",
                    "127.0.0.1:0", NULL);
    http_port = th_http_port(&B);
    if (http_port <= 0) fail_msg("no HTTP port in %s", B.log);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    th_broker_stop(&B);
    return 0;
}

static double redelivered(void) {
    char *page = th_http_request(http_port, "GET", "/metrics");
    double v = th_metric(page, "mpb_queue_redelivered_total", -1);
    free(page);
    return v;
}

static void put_str(mpb_queue_t *q, const char *s) {
    size_t n;
    const uint8_t *v = th_str(s, &n);
    assert_int_equal(mpb_queue_put(q, v, n, 0), 0);
}

/* Gets one item (a string) from q and checks it is want. Returns its delivery id. */
static uint64_t get_str(mpb_client_t *c, mpb_queue_t *q, const char *want) {
    void *v;
    size_t n, wn;
    uint64_t id = 0;
    th_assert_ok(mpb_queue_get_tracked(q, &v, &n, &id, 5000), c);
    const uint8_t *w = th_str(want, &wn);
    th_assert_bytes(v, n, w, wn);
    mpb_free(v);
    return id;
}

/* A consumer that takes one item of queue arg and then hangs until killed. */
static int taker(int idx, void *arg) {
    (void)idx;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    if (mpb_queue_open(c, (const char *)arg, -1, -1, &q)) return 1;
    void *v;
    size_t n;
    if (mpb_queue_get(q, &v, &n, 10000)) return 2;
    for (;;)
        pause(); /* between get and task_done: killed here */
}

/* Starts a taker on queue name and waits until it holds its item; then SIGKILLs it. */
static void take_and_die(mpb_client_t *c, const char *name, bool tracked) {
    static char qname[64];
    snprintf(qname, sizeof qname, "%s", name);
    pid_t kid = th_fork(taker, qname);
    char path[80];
    snprintf(path, sizeof path, "queue/%s", name);
    if (tracked) {
        assert_true(th_wait_field(c, path, "delivered", 1, 10000));
    } else {
        int64_t before = th_describe_int(c, path, "size");
        for (int i = 0; i < 1000 && th_describe_int(c, path, "size") == before; i++)
            usleep(5000);
        assert_int_equal(th_describe_int(c, path, "size"), before - 1);
    }
    kill(kid, SIGKILL);
    (void)th_wait(kid, 10); /* killed: reaped */
}

/* The consumer SIGKILLed between get and task_done: its item is back at the front (counted
 * in /metrics), another consumer takes it, and join() returns once all are done. */
static void test_a_consumer_killed_before_task_done_gives_its_item_back(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    th_assert_ok(mpb_queue_open(c, "jq", 0, 1, &q), c);
    put_str(q, "a0");
    put_str(q, "a1");
    put_str(q, "a2");
    double r0 = redelivered();
    take_and_die(c, "jq", true);
    /* its session ends within the TTL (2 s); the item comes back to the front */
    assert_true(th_wait_field(c, "queue/jq", "size", 3, 10000));
    assert_int_equal(th_describe_int(c, "queue/jq", "delivered"), 0);
    assert_int_equal(th_describe_int(c, "queue/jq", "unfinished"), 3);
    assert_true(redelivered() == r0 + 1);
    uint64_t d0 = get_str(c, q, "a0");
    uint64_t d1 = get_str(c, q, "a1");
    uint64_t d2 = get_str(c, q, "a2");
    assert_true(d0 > 0 && d1 > d0 && d2 > d1);
    assert_int_equal(mpb_queue_join(q, 0), MPB_ETIMEDOUT);
    th_assert_ok(mpb_queue_task_done_id(q, d1), c); /* in any order */
    th_assert_ok(mpb_queue_task_done(q), c);        /* the oldest: a0 */
    th_assert_ok(mpb_queue_task_done_id(q, d2), c);
    th_assert_ok(mpb_queue_join(q, 10000), c);
    assert_int_equal(th_describe_int(c, "queue/jq", "delivered"), 0);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* A getter blocked when the item comes back gets it straight away. */
static int blocked_getter(int idx, void *arg) {
    (void)idx, (void)arg;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    void *v;
    size_t n, wn;
    uint64_t id;
    if (mpb_queue_open(c, "jq2", -1, -1, &q) || mpb_queue_get_tracked(q, &v, &n, &id, 20000))
        return 1;
    const uint8_t *w = th_str("only", &wn);
    if (n != wn || memcmp(v, w, n)) return 2;
    mpb_free(v);
    return mpb_queue_task_done_id(q, id) ? 3 : 0;
}

static void test_a_blocked_getter_gets_the_item_a_dead_consumer_gave_back(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    th_assert_ok(mpb_queue_open(c, "jq2", 0, 1, &q), c);
    put_str(q, "only");
    static char name[] = "jq2";
    pid_t kid = th_fork(taker, name);
    assert_true(th_wait_field(c, "queue/jq2", "delivered", 1, 10000));
    pid_t g = th_fork(blocked_getter, NULL);
    assert_true(th_wait_field(c, "queue/jq2", "getters", 1, 10000));
    kill(kid, SIGKILL);
    (void)th_wait(kid, 10);
    assert_int_equal(th_wait(g, 20), 0);
    th_assert_ok(mpb_queue_join(q, 5000), c);
    assert_int_equal(th_describe_int(c, "queue/jq2", "size"), 0);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* task_done names its item: a wrong or finished id is refused, and changes nothing. */
static void test_task_done_names_its_item(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B), *other = th_connect(&B);
    mpb_queue_t *q, *oq;
    th_assert_ok(mpb_queue_open(c, "jq3", 0, 1, &q), c);
    th_assert_ok(mpb_queue_open(other, "jq3", -1, -1, &oq), other);
    put_str(q, "x");
    put_str(q, "y");
    uint64_t dx = get_str(c, q, "x");
    uint64_t dy = get_str(c, q, "y");
    assert_int_equal(th_describe_int(c, "queue/jq3", "delivered"), 2);
    th_assert_ok(mpb_queue_task_done_id(q, dy), c);
    th_assert_err(mpb_queue_task_done_id(q, dy), MPB_EVALUE, c, "no item", "not done");
    th_assert_err(mpb_queue_task_done_id(q, 999), MPB_EVALUE, c, "999", NULL);
    /* another session cannot finish this one's item by its id */
    th_assert_err(mpb_queue_task_done_id(oq, dx), MPB_EVALUE, other, "no item", NULL);
    assert_int_equal(th_describe_int(c, "queue/jq3", "unfinished"), 1);
    th_assert_ok(mpb_queue_task_done_id(q, dx), c);
    th_assert_ok(mpb_queue_join(q, 5000), c);
    /* and one task_done too many is still refused */
    th_assert_err(mpb_queue_task_done(q), MPB_EVALUE, c, "too many", NULL);
    mpb_queue_close(&q);
    mpb_queue_close(&oq);
    mpb_close(&other);
    mpb_close(&c);
}

/* A plain queue: a dead taker's item is gone, as in Python. Opened reliable: it comes back,
 * and task_done acknowledges an item there without any joining. */
static void test_a_plain_queue_keeps_python_semantics_unless_opened_reliable(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q, *rq;
    th_assert_ok(mpb_queue_open(c, "pq", 0, 0, &q), c);
    put_str(q, "p0");
    put_str(q, "p1");
    take_and_die(c, "pq", false);
    sleep(3); /* past the TTL: its session is over */
    assert_int_equal(th_describe_int(c, "queue/pq", "size"), 1);
    assert_int_equal(get_str(c, q, "p1"), 0); /* not tracked: no delivery id */
    th_assert_err(mpb_queue_task_done(q), MPB_ETYPE, c, "not joinable", NULL);

    double r0 = redelivered();
    th_assert_ok(mpb_queue_open_reliable(c, "rq", 0, 0, &rq), c);
    put_str(rq, "r0");
    put_str(rq, "r1");
    take_and_die(c, "rq", true);
    assert_true(th_wait_field(c, "queue/rq", "size", 2, 10000));
    assert_true(redelivered() == r0 + 1);
    uint64_t d = get_str(c, rq, "r0");
    assert_true(d > 0);
    th_assert_ok(mpb_queue_task_done_id(rq, d), c);
    assert_int_equal(th_describe_int(c, "queue/rq", "delivered"), 0);
    th_assert_err(mpb_queue_task_done(rq), MPB_EVALUE, c, "no item handed", NULL);
    /* the setting is fixed: a plain open may not say otherwise */
    uint8_t args[] = {0x93, 0xc0, 0xc0, 0xc2}; /* [nil, nil, false] */
    void *res = NULL;
    size_t rl;
    th_assert_err(mpb_call(c, MPB_OP_QUEUE_OPEN, "rq", args, sizeof args, 0, &res, &rl), MPB_EINVAL,
                  c, "is reliable", NULL);
    mpb_queue_close(&q);
    mpb_queue_close(&rq);
    th_assert_dict_roundtrip(c, "rel-end", 11);
    mpb_close(&c);
}

/* Bad arguments to the new forms: clear errors, and the broker serves on. */
static void test_bad_delivery_arguments_get_clear_errors(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    void *res = NULL;
    size_t rl;
    const uint8_t get_bad[] = {0x92, 0x00, 0xa1, 'x'};   /* [0, "x"] */
    const uint8_t done_bad[] = {0x91, 0xa1, 'x'};        /* ["x"] */
    const uint8_t done_many[] = {0x92, 0x01, 0x02};      /* [1, 2] */
    const uint8_t open_bad[] = {0x93, 0xc0, 0xc0, 0x05}; /* [nil, nil, 5] */
    th_assert_err(mpb_call(c, MPB_OP_QUEUE_GET, "bq", get_bad, sizeof get_bad, 0, &res, &rl),
                  MPB_ETYPE, c, "with_id", NULL);
    th_assert_err(
        mpb_call(c, MPB_OP_QUEUE_TASK_DONE, "bq", done_bad, sizeof done_bad, 0, &res, &rl),
        MPB_ETYPE, c, "delivery id", NULL);
    th_assert_err(
        mpb_call(c, MPB_OP_QUEUE_TASK_DONE, "bq", done_many, sizeof done_many, 0, &res, &rl),
        MPB_EPROTO, c, "0 or 1 arguments", NULL);
    th_assert_err(mpb_call(c, MPB_OP_QUEUE_OPEN, "bq", open_bad, sizeof open_bad, 0, &res, &rl),
                  MPB_ETYPE, c, "reliable", NULL);
    th_assert_dict_roundtrip(c, "bad-end", 12);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_consumer_killed_before_task_done_gives_its_item_back,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_blocked_getter_gets_the_item_a_dead_consumer_gave_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_done_names_its_item, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_plain_queue_keeps_python_semantics_unless_opened_reliable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_delivery_arguments_get_clear_errors, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
