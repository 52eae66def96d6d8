/* test_timers.c - the broker's heap of deadlines (broker/waiter.c, in mpbcore), which gives
 * the loop its poll timeout: the earliest deadline is always on top, a waiter taken out of
 * the middle (answered, or its session gone) leaves the rest in order, a moved waiter takes
 * its new deadline, and thousands of timers come out sorted. Waiters are parked on a list of
 * their own with a session of their own; they are freed here, never expired (expiry answers
 * them, which is the kinds' business and the integration tests'). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "broker.h"

static sess_t sess;
static wlist_t list;

/* Parks a request with no deadline, then gives it deadline d (INT64_MAX: none). */
static waiter_t *park_at(int64_t d) {
    req_t r;
    memset(&r, 0, sizeof r);
    r.sess = &sess;
    r.rid = 1;
    waiter_t *w = waiter_park(&r, &list, -1);
    assert_true(r.parked);
    assert_int_equal(w->heap, 0); /* no deadline: not in the heap */
    if (d != INT64_MAX) waiter_move(w, NULL, &list, d);
    return w;
}

/* The waiter on top of the heap (position 1), among the n in ws. */
static waiter_t *top(waiter_t **ws, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ws[i] && ws[i]->heap == 1) return ws[i];
    return NULL;
}

static int setup(void **state) {
    (void)state;
    memset(&sess, 0, sizeof sess);
    wlist_init(&list);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    while (wlist_first(&list))
        waiter_free(wlist_first(&list));
    assert_int_equal(waiter_count(), 0);
    assert_null(LIST_FIRST(&sess.waiters));
    assert_int_equal(waiter_next_ms(0), -1);
    return 0;
}

static void test_earliest_deadline_on_top(void **state) {
    (void)state;
    assert_int_equal(waiter_next_ms(0), -1); /* nothing due ever */
    waiter_t *ws[5];
    const int64_t d[5] = {500, 200, 900, 100, 300};
    for (int i = 0; i < 5; i++)
        ws[i] = park_at(d[i]);
    assert_int_equal(waiter_count(), 5);
    assert_int_equal(list.n, 5);
    assert_int_equal(waiter_next_ms(0), 100);
    assert_int_equal(waiter_next_ms(40), 60);
    assert_int_equal(waiter_next_ms(100), 0);
    assert_int_equal(waiter_next_ms(5000), 0); /* overdue: at once, never negative */
    assert_ptr_equal(top(ws, 5), ws[3]);
    /* take them off the top: they come in deadline order */
    const int64_t want[5] = {100, 200, 300, 500, 900};
    for (int k = 0; k < 5; k++) {
        waiter_t *t = top(ws, 5);
        assert_non_null(t);
        assert_int_equal(t->deadline, want[k]);
        assert_int_equal(waiter_next_ms(0), want[k]);
        for (int i = 0; i < 5; i++)
            if (ws[i] == t) ws[i] = NULL;
        waiter_free(t);
    }
    assert_int_equal(waiter_next_ms(0), -1);
}

/* A waiter freed from the middle of the heap (not its top, not its last slot). */
static void test_remove_from_middle(void **state) {
    (void)state;
    enum { N = 15 };
    waiter_t *ws[N];
    for (int i = 0; i < N; i++)
        ws[i] = park_at(1000 + 10 * ((i * 7) % N));
    waiter_t *mid = NULL;
    for (int i = 0; i < N; i++)
        if (ws[i]->heap > 1 && ws[i]->heap < N) mid = ws[i];
    assert_non_null(mid);
    int64_t gone = mid->deadline;
    for (int i = 0; i < N; i++)
        if (ws[i] == mid) ws[i] = NULL;
    waiter_free(mid);
    assert_int_equal(waiter_count(), N - 1);
    int64_t last = 0;
    for (int k = 0; k < N - 1; k++) {
        waiter_t *t = top(ws, N);
        assert_non_null(t);
        assert_true(t->deadline > last);
        assert_true(t->deadline != gone);
        last = t->deadline;
        for (int i = 0; i < N; i++)
            if (ws[i] == t) ws[i] = NULL;
        waiter_free(t);
    }
    assert_int_equal(last, 1000 + 10 * (N - 1) - (gone == 1000 + 10 * (N - 1) ? 10 : 0));
}

/* waiter_move gives a new deadline (up or down the heap), or none. */
static void test_move_changes_deadline(void **state) {
    (void)state;
    waiter_t *a = park_at(100), *b = park_at(200), *c = park_at(300);
    assert_int_equal(waiter_next_ms(0), 100);
    waiter_move(a, NULL, &list, 400); /* down */
    assert_int_equal(waiter_next_ms(0), 200);
    waiter_move(c, NULL, &list, 50); /* up */
    assert_int_equal(waiter_next_ms(0), 50);
    assert_int_equal(c->heap, 1);
    waiter_move(c, NULL, &list, INT64_MAX); /* none: out of the heap */
    assert_int_equal(c->heap, 0);
    assert_int_equal(waiter_next_ms(0), 200);
    waiter_free(b);
    assert_int_equal(waiter_next_ms(0), 400);
    waiter_free(a);
    assert_int_equal(waiter_next_ms(0), -1);
    assert_int_equal(waiter_count(), 1); /* c waits on, without a deadline */
    assert_ptr_equal(wlist_first(&list), c);
}

/* A timeout parks with a deadline from the clock; a negative one or one too large for the
 * clock parks with none. */
static void test_timeouts_from_the_clock(void **state) {
    (void)state;
    req_t r;
    memset(&r, 0, sizeof r);
    r.sess = &sess;
    int64_t before = now_ms();
    waiter_t *w = waiter_park(&r, &list, 1000);
    int64_t after = now_ms();
    assert_true(w->deadline > before + 1000); /* never early: one ms more */
    assert_true(w->deadline <= after + 1001);
    assert_int_equal(w->heap, 1);
    waiter_t *never = waiter_park(&r, &list, -1);
    waiter_t *huge = waiter_park(&r, &list, INT64_MAX - 1);
    assert_int_equal(never->deadline, INT64_MAX);
    assert_int_equal(huge->deadline, INT64_MAX);
    assert_int_equal(never->heap, 0);
    assert_int_equal(huge->heap, 0);
    long ms = waiter_next_ms(after);
    assert_true(ms >= 0 && ms <= 1001);
    assert_int_equal(list.n, 3);
    assert_ptr_equal(LIST_FIRST(&sess.waiters), huge); /* newest first in the session's list */
}

/* Many timers with repeated deadlines come out sorted; some are dropped on the way. */
static void test_many_timers_sorted(void **state) {
    (void)state;
    enum { N = 5000 };
    waiter_t **ws = calloc(N, sizeof *ws);
    assert_non_null(ws);
    uint64_t x = 88172645463325252ull; /* xorshift: the same sequence every run */
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ws[i] = park_at((int64_t)(x % 1000));
    }
    for (int i = 0; i < N; i += 3) { /* a third go before their time */
        waiter_free(ws[i]);
        ws[i] = NULL;
    }
    /* every position is consistent: a parent is never later than its child */
    waiter_t **by_pos = calloc(N + 1, sizeof *by_pos);
    assert_non_null(by_pos);
    size_t n = 0;
    for (int i = 0; i < N; i++)
        if (ws[i]) {
            assert_null(by_pos[ws[i]->heap]);
            by_pos[ws[i]->heap] = ws[i];
            n++;
        }
    for (size_t p = 2; p <= n; p++) {
        assert_non_null(by_pos[p]);
        assert_true(by_pos[p / 2]->deadline <= by_pos[p]->deadline);
    }
    free(by_pos);
    int64_t last = -1;
    for (size_t k = 0; k < n; k++) {
        long next = waiter_next_ms(0);
        assert_true(next >= last);
        last = next;
        waiter_t *t = wlist_first(&list);
        for (waiter_t *w = wlist_first(&list); w; w = TAILQ_NEXT(w, link))
            if (w->heap == 1) t = w;
        assert_int_equal(t->heap, 1);
        assert_int_equal(t->deadline, next);
        waiter_free(t);
    }
    assert_int_equal(waiter_next_ms(0), -1);
    free(ws);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_earliest_deadline_on_top, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_from_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move_changes_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts_from_the_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_timers_sorted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
