/* test_pipe.c - Pipe (issue 14): two processes exchange messages both ways, in order; recv
 * and poll time out; recv says EPIPE (end of file) once the other end is closed, or its
 * process was SIGKILLed and its session expired; a third session cannot take an end another
 * holds; a one-way pipe; bad input gets clear errors and the broker keeps serving. The broker
 * runs with a short session TTL so that a killed peer's session ends within two seconds. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th.h"

static th_broker_t B;

static int setup(void **state) {
    (void)state;
    th_broker_start(&B, "--session-ttl-ms", "2000", "--heartbeat-ms", "200", "--max-value", "4096",
                    NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    th_broker_stop(&B);
    return 0;
}

enum { N = 200 };

static int send_i64(mpb_pipe_t *p, int64_t v) {
    uint8_t b[16];
    return mpb_pipe_send(p, b, mpb_pack_i64(b, v));
}

/* Receives an integer into *v; returns the call's status, or MPB_ETYPE for another value. */
static int recv_i64(mpb_pipe_t *p, int64_t *v, int timeout_ms) {
    void *val;
    size_t n;
    int rc = mpb_pipe_recv(p, &val, &n, timeout_ms);
    if (rc) return rc;
    rc = mpb_unpack_i64(val, n, v) ? MPB_ETYPE : 0;
    mpb_free(val);
    return rc;
}

/* End 1 of pipe "duo": reads N integers that must come as 0..N-1 and answers each with
 * 1000 + it, then sends -1 and closes. Exit status: where it went wrong. */
static int echo_child(int idx, void *arg) {
    (void)idx, (void)arg;
    mpb_client_t *c = th_connect(&B);
    mpb_pipe_t *p;
    if (mpb_pipe_open(c, "duo", 1, 1, &p)) return 1;
    for (int64_t i = 0; i < N; i++) {
        int64_t v = -5;
        if (recv_i64(p, &v, 10000)) return 2;
        if (v != i) return 3;
        if (send_i64(p, 1000 + v)) return 4;
    }
    if (send_i64(p, -1) || mpb_pipe_close(&p)) return 5;
    mpb_close(&c);
    return 0;
}

static void test_two_processes_exchange_messages_both_ways_in_order(void **state) {
    (void)state;
    pid_t kid = th_fork(echo_child, NULL);
    mpb_client_t *c = th_connect(&B);
    mpb_pipe_t *p;
    th_assert_ok(mpb_pipe_open(c, "duo", 0, 1, &p), c);
    assert_int_equal(mpb_pipe_end(p), 0);
    assert_string_equal(mpb_pipe_name(p), "duo");
    /* the first half before the child may even have opened its end: it waits there */
    for (int64_t i = 0; i < N / 2; i++)
        th_assert_ok(send_i64(p, i), c);
    for (int64_t i = 0; i < N / 2; i++) {
        int64_t v;
        th_assert_ok(recv_i64(p, &v, 10000), c);
        assert_int_equal(v, 1000 + i);
    }
    /* then one at a time: each recv parks until the child's answer comes */
    for (int64_t i = N / 2; i < N; i++) {
        th_assert_ok(send_i64(p, i), c);
        int64_t v;
        th_assert_ok(recv_i64(p, &v, 10000), c);
        assert_int_equal(v, 1000 + i);
    }
    int64_t last;
    th_assert_ok(recv_i64(p, &last, 10000), c);
    assert_int_equal(last, -1);
    assert_int_equal(th_wait(kid, 30), 0);
    /* the child closed its end: end of file, for recv and send alike; poll says recv won't block */
    assert_int_equal(mpb_pipe_poll(p, 0), 1);
    th_assert_err(recv_i64(p, &last, 5000), MPB_EPIPE, c, "other end", "closed");
    th_assert_err(send_i64(p, 1), MPB_EPIPE, c, "other end", "closed");
    th_assert_ok(mpb_pipe_close(&p), c);
    assert_null(p);
    mpb_close(&c);
}

/* One session may hold both ends (a Pipe used within one process). */
static void test_recv_and_poll_time_out(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_pipe_t *a, *b;
    th_assert_ok(mpb_pipe_open(c, "lone", 0, -1, &a), c);
    th_assert_ok(mpb_pipe_open(c, "lone", 1, -1, &b), c);
    int64_t v, t0 = th_now_ms();
    th_assert_err(recv_i64(a, &v, 300), MPB_ETIMEDOUT, c, "nothing to read", NULL);
    assert_true(th_now_ms() - t0 >= 250);
    th_assert_err(recv_i64(a, &v, 0), MPB_EEMPTY, c, "nothing to read", "end 0");
    assert_int_equal(mpb_pipe_poll(a, 0), 0);
    t0 = th_now_ms();
    assert_int_equal(mpb_pipe_poll(a, 300), 0);
    assert_true(th_now_ms() - t0 >= 250);
    th_assert_ok(send_i64(b, 7), c);
    assert_int_equal(mpb_pipe_poll(a, 0), 1);
    assert_int_equal(mpb_pipe_poll(b, 0), 0); /* nothing was sent to end 1 */
    th_assert_ok(recv_i64(a, &v, 0), c);
    assert_int_equal(v, 7);
    th_assert_ok(send_i64(a, 8), c);
    th_assert_ok(recv_i64(b, &v, 0), c);
    assert_int_equal(v, 8);
    th_assert_ok(mpb_pipe_close(&a), c);
    th_assert_ok(mpb_pipe_close(&b), c);
    mpb_close(&c);
}

/* End 1 of pipe arg: sleeps, then sends 1 and 2 and closes its end; then waits to be killed,
 * so that only the close (not the session's end) can be what ends the pipe. */
static int closer_child(int idx, void *arg) {
    (void)idx, (void)arg;
    mpb_client_t *c = th_connect(&B);
    mpb_pipe_t *p;
    if (mpb_pipe_open(c, "eof", 1, -1, &p)) return 1;
    usleep(300 * 1000);
    if (send_i64(p, 1) || send_i64(p, 2) || mpb_pipe_close(&p)) return 2;
    sleep(60); /* bounded: a failed test leaves no process behind for long */
    return 0;
}

static void test_recv_gets_eof_after_the_peer_closes(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_pipe_t *p;
    th_assert_ok(mpb_pipe_open(c, "eof", 0, -1, &p), c);
    pid_t kid = th_fork(closer_child, NULL);
    int64_t v;
    th_assert_ok(recv_i64(p, &v, 10000), c);
    assert_int_equal(v, 1);
    /* what was sent before the close is still read, then end of file */
    th_assert_ok(recv_i64(p, &v, 10000), c);
    assert_int_equal(v, 2);
    th_assert_err(recv_i64(p, &v, 10000), MPB_EPIPE, c, "closed", NULL);
    th_assert_err(recv_i64(p, &v, 0), MPB_EPIPE, c, "closed", NULL);
    assert_true(th_broker_alive(&B));
    kill(kid, SIGKILL);
    (void)th_wait(kid, 10);
    mpb_pipe_close(&p);
    mpb_close(&c);
}

/* A recv parked when the peer closes is answered EPIPE at once. */
static int late_closer(int idx, void *arg) {
    (void)idx, (void)arg;
    mpb_client_t *c = th_connect(&B);
    mpb_pipe_t *p;
    if (mpb_pipe_open(c, "eof2", 1, -1, &p)) return 1;
    usleep(300 * 1000);
    return mpb_pipe_close(&p) ? 2 : 0;
}

static void test_a_parked_recv_gets_eof_when_the_peer_closes(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_pipe_t *p;
    th_assert_ok(mpb_pipe_open(c, "eof2", 0, -1, &p), c);
    pid_t kid = th_fork(late_closer, NULL);
    int64_t v, t0 = th_now_ms();
    th_assert_err(recv_i64(p, &v, 20000), MPB_EPIPE, c, "closed", NULL);
    assert_true(th_now_ms() - t0 < 15000); /* woken by the close, not by the timeout */
    assert_int_equal(th_wait(kid, 10), 0);
    mpb_pipe_close(&p);
    mpb_close(&c);
}

/* End 1 of "dead": sends 42, then hangs until killed. */
static int dying_child(int idx, void *arg) {
    (void)idx, (void)arg;
    mpb_client_t *c = th_connect(&B);
    mpb_pipe_t *p;
    if (mpb_pipe_open(c, "dead", 1, -1, &p) || send_i64(p, 42)) return 1;
    sleep(60); /* killed long before */
    return 0;
}

static void test_recv_gets_eof_when_the_peer_dies(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_pipe_t *p;
    th_assert_ok(mpb_pipe_open(c, "dead", 0, -1, &p), c);
    pid_t kid = th_fork(dying_child, NULL);
    int64_t v;
    th_assert_ok(recv_i64(p, &v, 10000), c);
    assert_int_equal(v, 42);
    kill(kid, SIGKILL);
    (void)th_wait(kid, 10);
    /* parked until the dead session expires (TTL 2 s), then end of file */
    int64_t t0 = th_now_ms();
    th_assert_err(recv_i64(p, &v, 30000), MPB_EPIPE, c, "closed", NULL);
    assert_true(th_now_ms() - t0 < 25000);
    th_assert_err(send_i64(p, 1), MPB_EPIPE, c, NULL, NULL);
    mpb_pipe_close(&p);
    mpb_close(&c);
}

static void test_a_third_session_cannot_take_an_owned_end(void **state) {
    (void)state;
    mpb_client_t *c1 = th_connect(&B), *c2 = th_connect(&B), *c3 = th_connect(&B);
    mpb_pipe_t *p1, *p2, *p3 = NULL, *again;
    th_assert_ok(mpb_pipe_open(c1, "own", 0, -1, &p1), c1);
    th_assert_ok(mpb_pipe_open(c2, "own", 1, -1, &p2), c2);
    char who[64];
    snprintf(who, sizeof who, "session %llu", (unsigned long long)mpb_session_id(c1));
    th_assert_err(mpb_pipe_open(c3, "own", 0, -1, &p3), MPB_ENOTOWNER, c3, "end 0", who);
    assert_null(p3);
    th_assert_err(mpb_pipe_open(c3, "own", 1, -1, &p3), MPB_ENOTOWNER, c3, "end 1", NULL);
    /* raw ops on an end it does not hold are refused too */
    const uint8_t send0[] = {0x92, 0x00, 0x05}; /* [0, 5] */
    const uint8_t recv1[] = {0x92, 0x01, 0x00}; /* [1, 0] */
    void *res = NULL;
    size_t rl;
    th_assert_err(mpb_call(c3, MPB_OP_PIPE_SEND, "own", send0, sizeof send0, 0, &res, &rl),
                  MPB_ENOTOWNER, c3, "belongs to session", NULL);
    th_assert_err(mpb_call(c3, MPB_OP_PIPE_RECV, "own", recv1, sizeof recv1, 0, &res, &rl),
                  MPB_ENOTOWNER, c3, "belongs to session", NULL);
    /* the owner may open its end again; the pipe still works between c1 and c2 */
    th_assert_ok(mpb_pipe_open(c1, "own", 0, -1, &again), c1);
    th_assert_ok(send_i64(p1, 5), c1);
    int64_t v;
    th_assert_ok(recv_i64(p2, &v, 5000), c2);
    assert_int_equal(v, 5);
    assert_int_equal(mpb_obj_delete(c3, "pipe/own"), MPB_EBUSY);
    /* a closed end is closed for good */
    th_assert_ok(mpb_pipe_close(&p1), c1);
    th_assert_err(mpb_pipe_open(c3, "own", 0, -1, &p3), MPB_ECLOSED, c3, "end 0", "closed");
    th_assert_err(send_i64(again, 1), MPB_ECLOSED, c1, "closed", NULL);
    th_assert_ok(mpb_pipe_close(&again), c1); /* closing again: no error */
    mpb_pipe_close(&p2);
    th_assert_ok(mpb_obj_delete(c3, "pipe/own"), c3);
    mpb_close(&c1);
    mpb_close(&c2);
    mpb_close(&c3);
}

static void test_a_one_way_pipe_reads_at_end_0_and_writes_at_end_1(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B), *w = th_connect(&B);
    mpb_pipe_t *r, *s;
    th_assert_ok(mpb_pipe_open(c, "oneway", 0, 0, &r), c);
    th_assert_err(mpb_pipe_open(w, "oneway", 1, 1, &s), MPB_EINVAL, w, "one-way", NULL);
    th_assert_ok(mpb_pipe_open(w, "oneway", 1, -1, &s), w);
    th_assert_ok(send_i64(s, 3), w);
    int64_t v;
    th_assert_ok(recv_i64(r, &v, 5000), c);
    assert_int_equal(v, 3);
    th_assert_err(send_i64(r, 1), MPB_EINVAL, c, "end 0", "only receives");
    th_assert_err(recv_i64(s, &v, 0), MPB_EINVAL, w, "end 1", "only sends");
    th_assert_err(mpb_pipe_poll(s, 0), MPB_EINVAL, w, "end 1", "only sends");
    mpb_pipe_close(&r);
    mpb_pipe_close(&s);
    mpb_close(&c);
    mpb_close(&w);
}

/* Pipes are neither logged nor saved: after a crash and restart the dict written alongside
 * is back, the pipe is not, and a pipe of that name starts empty with both ends free. */
static void test_a_restarted_broker_has_no_pipe(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_pipe_t *a, *b;
    th_assert_ok(mpb_pipe_open(c, "gone", 0, -1, &a), c);
    th_assert_ok(mpb_pipe_open(c, "gone", 1, -1, &b), c);
    th_assert_ok(send_i64(a, 1), c);
    th_assert_ok(send_i64(b, 2), c);
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "kept", &d), c);
    th_assert_ok(mpb_dict_set_i64(d, "k", 77), c);
    mpb_dict_close(&d);
    assert_int_equal(th_describe_int(c, "pipe/gone", "size"), 2);
    mpb_pipe_close(&a);
    mpb_pipe_close(&b);
    mpb_close(&c);
    th_broker_restart(&B, SIGKILL, "--session-ttl-ms", "2000", "--heartbeat-ms", "200", NULL);
    c = th_connect(&B);
    th_assert_ok(mpb_dict_open(c, "kept", &d), c);
    int64_t v;
    th_assert_ok(mpb_dict_get_i64(d, "k", &v), c);
    assert_int_equal(v, 77);
    mpb_dict_close(&d);
    void *info = NULL;
    size_t il;
    assert_int_equal(mpb_obj_describe(c, "pipe/gone", &info, &il), MPB_ENOOBJ);
    th_assert_ok(mpb_pipe_open(c, "gone", 0, -1, &a), c);
    th_assert_err(recv_i64(a, &v, 0), MPB_EEMPTY, c, NULL, NULL);
    mpb_pipe_close(&a);
    mpb_close(&c);
}

static void test_bad_input_gets_clear_errors_and_the_broker_serves_on(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_pipe_t *p = NULL;
    void *res = NULL;
    size_t rl;
    /* ends other than 0 and 1, in libmpb and on the wire */
    th_assert_err(mpb_pipe_open(c, "bad", 2, -1, &p), MPB_EINVAL, c, "ends 0 and 1", NULL);
    const uint8_t open2[] = {0x92, 0x02, 0xc0};         /* [2, nil] */
    const uint8_t open_str[] = {0x92, 0xa1, 'x', 0xc0}; /* ["x", nil] */
    const uint8_t open_dup[] = {0x92, 0x00, 0x05};      /* [0, 5] */
    const uint8_t open_one[] = {0x91, 0x00};            /* [0] */
    th_assert_err(mpb_call(c, MPB_OP_PIPE_OPEN, "bad", open2, sizeof open2, 0, &res, &rl),
                  MPB_EINVAL, c, "ends 0 and 1, not 2", NULL);
    th_assert_err(mpb_call(c, MPB_OP_PIPE_OPEN, "bad", open_str, sizeof open_str, 0, &res, &rl),
                  MPB_ETYPE, c, "end", "non-negative integer");
    th_assert_err(mpb_call(c, MPB_OP_PIPE_OPEN, "bad", open_dup, sizeof open_dup, 0, &res, &rl),
                  MPB_ETYPE, c, "duplex", "boolean");
    th_assert_err(mpb_call(c, MPB_OP_PIPE_OPEN, "bad", open_one, sizeof open_one, 0, &res, &rl),
                  MPB_EPROTO, c, NULL, NULL);
    /* an object of another kind */
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "notapipe", &d), c);
    th_assert_err(mpb_pipe_open(c, "notapipe", 0, -1, &p), MPB_EKIND, c, NULL, NULL);
    mpb_dict_close(&d);
    /* no anonymous pipes */
    th_assert_err(mpb_pipe_open(c, NULL, 0, -1, &p), MPB_EINVAL, c, "name", NULL);
    const uint8_t new_pipe[] = {0x93, 0xa4, 'p', 'i', 'p', 'e', 0x00, 0xc0}; /* ["pipe", 0, nil] */
    th_assert_err(mpb_call(c, MPB_OP_OBJ_NEW, NULL, new_pipe, sizeof new_pipe, 0, &res, &rl),
                  MPB_EINVAL, c, "pipe", "anonymous");
    /* a value over max-value (4096 here), and bytes that are not one msgpack value */
    mpb_pipe_t *a, *b;
    th_assert_ok(mpb_pipe_open(c, "big", 0, -1, &a), c);
    th_assert_ok(mpb_pipe_open(c, "big", 1, -1, &b), c);
    char *big = malloc(5000);
    assert_non_null(big);
    memset(big, 'z', 4999);
    big[4999] = 0;
    void *packed;
    size_t pn = mpb_pack_str(big, 4999, &packed);
    assert_true(pn > 4999);
    th_assert_err(mpb_pipe_send(a, packed, pn), MPB_ETOOBIG, c, "item of", "max_value");
    mpb_free(packed);
    free(big);
    const uint8_t torn[] = {0x92, 0x01};
    th_assert_err(mpb_pipe_send(a, torn, sizeof torn), MPB_EINVAL, c, "msgpack", NULL);
    /* the pipe still works after all that */
    th_assert_ok(send_i64(a, 9), c);
    int64_t v;
    th_assert_ok(recv_i64(b, &v, 0), c);
    assert_int_equal(v, 9);
    mpb_pipe_close(&a);
    mpb_pipe_close(&b);
    assert_true(th_broker_alive(&B));
    th_assert_dict_roundtrip(c, "after-pipes", 14);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_processes_exchange_messages_both_ways_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_recv_and_poll_time_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recv_gets_eof_after_the_peer_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_parked_recv_gets_eof_when_the_peer_closes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_recv_gets_eof_when_the_peer_dies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_third_session_cannot_take_an_owned_end, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_one_way_pipe_reads_at_end_0_and_writes_at_end_1,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_restarted_broker_has_no_pipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_gets_clear_errors_and_the_broker_serves_on,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
