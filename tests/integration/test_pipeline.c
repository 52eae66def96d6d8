/* test_pipeline.c - the pipelined client API: many requests in flight on one connection,
 * replies in order per object, errors in the middle of a pipeline, parked requests beside
 * quick ones, callbacks that queue more, and an own event loop on mpb_fd(). */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th.h"

static th_broker_t B;

typedef struct {
    int n, errors, last_status;
    int64_t values[1200];
    char msg[200];
} seen_t;

static void on_int(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    seen_t *s = arg;
    (void)c;
    if (status) {
        s->errors++;
        s->last_status = status;
        snprintf(s->msg, sizeof s->msg, "%s", mpb_errmsg(c));
        return;
    }
    int64_t v = -1;
    if (mpb_unpack_i64(val, len, &v) == 0 && s->n < 1200) s->values[s->n] = v;
    s->n++;
}

static void test_pipeline_thousand_in_flight_in_order(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "pipe", &d), 0);
    seen_t s = {0};
    size_t kn;
    const uint8_t *k = th_str("n", &kn);
    uint8_t key[8];
    memcpy(key, k, kn);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(mpb_dict_incr_async(d, key, kn, 1, on_int, &s), 0);
    assert_int_equal(mpb_inflight(c), 1000);
    assert_int_equal(mpb_drain(c, 20000), 0);
    assert_int_equal(mpb_inflight(c), 0);
    assert_int_equal(s.errors, 0);
    assert_int_equal(s.n, 1000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(s.values[i], i + 1); /* in order */
    int64_t v;
    assert_int_equal(mpb_dict_get_i64(d, "n", &v), 0);
    assert_int_equal(v, 1000);
    mpb_dict_close(&d);
    mpb_close(&c);
}

typedef struct {
    int ok, nokey, type, order[8], n;
} mixed_t;

static void on_mixed(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c;
    (void)val;
    (void)len;
    mixed_t *m = arg;
    if (m->n < 8) m->order[m->n++] = status;
    if (status == 0)
        m->ok++;
    else if (status == MPB_ENOKEY)
        m->nokey++;
    else if (status == MPB_ETYPE)
        m->type++;
}

static void test_pipeline_errors_in_the_middle(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "mixed", &d), 0);
    mixed_t m = {0};
    size_t an, bn, vn, xn;
    uint8_t a[8], bb[8], v[8], x[8];
    {
        const uint8_t *p_ = th_str("a", &an);
        memcpy(a, p_, an);
    }
    {
        const uint8_t *p_ = th_str("missing", &bn);
        memcpy(bb, p_, bn);
    }
    {
        const uint8_t *p_ = th_str("text", &vn);
        memcpy(v, p_, vn);
    }
    {
        const uint8_t *p_ = th_int(5, &xn);
        memcpy(x, p_, xn);
    }
    assert_int_equal(mpb_dict_set_async(d, a, an, v, vn, on_mixed, &m), 0);  /* ok */
    assert_int_equal(mpb_dict_get_async(d, bb, bn, on_mixed, &m), 0);        /* ENOKEY */
    assert_int_equal(mpb_dict_incr_async(d, a, an, 1, on_mixed, &m), 0);     /* ETYPE */
    assert_int_equal(mpb_dict_set_async(d, bb, bn, x, xn, on_mixed, &m), 0); /* ok */
    assert_int_equal(mpb_dict_get_async(d, bb, bn, on_mixed, &m), 0);        /* ok */
    assert_int_equal(mpb_drain(c, 5000), 0);
    assert_int_equal(m.n, 5);
    assert_int_equal(m.order[0], 0);
    assert_int_equal(m.order[1], MPB_ENOKEY);
    assert_int_equal(m.order[2], MPB_ETYPE);
    assert_int_equal(m.order[3], 0);
    assert_int_equal(m.order[4], 0);
    /* the synchronous API on the same client still works after the errors */
    int64_t got;
    assert_int_equal(mpb_dict_get_i64(d, "missing", &got), 0);
    assert_int_equal(got, 5);
    mpb_dict_close(&d);
    mpb_close(&c);
}

static void on_item(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c;
    seen_t *s = arg;
    if (status) {
        s->errors++;
        return;
    }
    mpb_unpack_i64(val, len, &s->values[s->n]);
    s->n++;
}

static int put_later(int idx, void *arg) {
    (void)idx;
    (void)arg;
    usleep(300000);
    mpb_client_t *c = NULL;
    if (th_connect_opts(&B, NULL, &c)) return 1;
    mpb_queue_t *q;
    size_t n;
    const uint8_t *v = th_int(42, &n);
    int rc = mpb_queue_open(c, "later", -1, -1, &q) || mpb_queue_put(q, v, n, 1000);
    mpb_queue_close(&q);
    mpb_close(&c);
    return rc;
}

static void test_pipeline_parked_request_beside_quick_ones(void **state) {
    (void)state;
    pid_t pid = th_fork(put_later, NULL); /* before this process connects: see th.h */
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    mpb_dict_t *d;
    assert_int_equal(mpb_queue_open(c, "later", -1, -1, &q), 0);
    assert_int_equal(mpb_dict_open(c, "beside", &d), 0);
    seen_t got = {0}, incs = {0};
    assert_int_equal(mpb_queue_get_async(q, 10000, on_item, &got), 0);
    size_t kn;
    uint8_t k[8];
    {
        const uint8_t *p_ = th_str("k", &kn);
        memcpy(k, p_, kn);
    }
    for (int i = 0; i < 50; i++)
        assert_int_equal(mpb_dict_incr_async(d, k, kn, 2, on_int, &incs), 0);
    /* the quick ones complete while the get stays parked */
    int64_t end = th_now_ms() + 5000;
    while (incs.n < 50 && th_now_ms() < end)
        assert_true(mpb_poll(c, 100) >= 0);
    assert_int_equal(incs.n, 50);
    assert_int_equal(incs.values[49], 100);
    assert_int_equal(got.n, 0);
    assert_int_equal(mpb_inflight(c), 1);
    /* then the put from the other process answers it */
    assert_int_equal(mpb_drain(c, 10000), 0);
    assert_int_equal(got.n, 1);
    assert_int_equal(got.values[0], 42);
    assert_int_equal(th_wait(pid, 10), 0);
    mpb_queue_close(&q);
    mpb_dict_close(&d);
    mpb_close(&c);
}

typedef struct {
    mpb_list_t *l;
    int remaining, done;
} chain_t;

static void on_chain(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c;
    (void)val;
    (void)len;
    chain_t *ch = arg;
    if (status) return;
    ch->done++;
    if (ch->remaining-- > 0) { /* a callback may queue the next request */
        size_t n;
        const uint8_t *v = th_int(ch->done, &n);
        mpb_list_append_async(ch->l, v, n, on_chain, ch);
    }
}

static void test_pipeline_callbacks_queue_more(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    chain_t ch = {0};
    assert_int_equal(mpb_list_open(c, "chain", &ch.l), 0);
    ch.remaining = 99;
    size_t n;
    const uint8_t *v = th_int(0, &n);
    assert_int_equal(mpb_list_append_async(ch.l, v, n, on_chain, &ch), 0);
    assert_int_equal(mpb_drain(c, 10000), 0);
    assert_int_equal(ch.done, 100);
    uint64_t len;
    assert_int_equal(mpb_list_len(ch.l, &len), 0);
    assert_int_equal(len, 100);
    for (int64_t i = 0; i < 100; i += 33) {
        void *x;
        size_t xn;
        int64_t got;
        assert_int_equal(mpb_list_get(ch.l, i, &x, &xn), 0);
        assert_int_equal(mpb_unpack_i64(x, xn, &got), 0);
        assert_int_equal(got, i);
        mpb_free(x);
    }
    mpb_list_close(&ch.l);
    mpb_close(&c);
}

typedef struct {
    mpb_dict_t *d;
    int n, bad;
} nest_t;

/* A callback that makes synchronous calls of its own, while an outer call is reading. */
static void on_nested(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c;
    nest_t *ns = arg;
    int64_t v = -1, mirror = -1;
    if (status || mpb_unpack_i64(val, len, &v)) {
        ns->bad++;
        return;
    }
    if (mpb_dict_set_i64(ns->d, "mirror", v) || mpb_dict_get_i64(ns->d, "mirror", &mirror) ||
        mirror != v)
        ns->bad++;
    ns->n++;
}

static void test_pipeline_sync_calls_inside_callbacks(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    nest_t ns = {0};
    assert_int_equal(mpb_dict_open(c, "nested", &ns.d), 0);
    size_t kn;
    const uint8_t *k0 = th_str("ctr", &kn);
    uint8_t k[8];
    memcpy(k, k0, kn);
    for (int i = 0; i < 50; i++)
        assert_int_equal(mpb_dict_incr_async(ns.d, k, kn, 1, on_nested, &ns), 0);
    /* an outer synchronous call reads the replies, and each callback nests two calls in it */
    int64_t ctr = 0;
    assert_int_equal(mpb_dict_get_i64(ns.d, "ctr", &ctr), 0);
    assert_int_equal(mpb_drain(c, 10000), 0);
    assert_int_equal(ns.bad, 0);
    assert_int_equal(ns.n, 50);
    assert_int_equal(ctr, 50); /* requests on one dict are answered in order */
    int64_t mirror;
    assert_int_equal(mpb_dict_get_i64(ns.d, "mirror", &mirror), 0);
    assert_int_equal(mirror, 50);
    mpb_dict_close(&ns.d);
    mpb_close(&c);
}

static void test_pipeline_own_event_loop_on_fd(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "fdloop", &d), 0);
    seen_t s = {0};
    size_t kn;
    uint8_t k[8];
    {
        const uint8_t *p_ = th_str("x", &kn);
        memcpy(k, p_, kn);
    }
    for (int i = 0; i < 200; i++)
        assert_int_equal(mpb_dict_incr_async(d, k, kn, 1, on_int, &s), 0);
    assert_int_equal(mpb_flush(c), 0);
    int fd = mpb_fd(c);
    assert_true(fd >= 0);
    int64_t end = th_now_ms() + 10000;
    while (s.n < 200 && th_now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        poll(&p, 1, 100);
        /* edge-triggered: read until nothing is left */
        while (mpb_poll(c, 0) > 0) {
        }
    }
    assert_int_equal(s.n, 200);
    assert_int_equal(s.values[199], 200);
    mpb_dict_close(&d);
    mpb_close(&c);
}

static void test_pipeline_broker_still_serves(void **state) {
    (void)state;
    assert_true(th_broker_alive(&B));
    mpb_client_t *c = th_connect(&B);
    assert_int_equal(th_dict_i64(c, "pipe", "n"), 1000);
    mpb_close(&c);
}

int main(void) {
    th_suite(&B, NULL, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_thousand_in_flight_in_order),
        cmocka_unit_test(test_pipeline_errors_in_the_middle),
        cmocka_unit_test(test_pipeline_parked_request_beside_quick_ones),
        cmocka_unit_test(test_pipeline_callbacks_queue_more),
        cmocka_unit_test(test_pipeline_sync_calls_inside_callbacks),
        cmocka_unit_test(test_pipeline_own_event_loop_on_fd),
        cmocka_unit_test(test_pipeline_broker_still_serves),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
