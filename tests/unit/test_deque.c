/* test_deque.c - the broker's ring of blobs (broker/deque.c, in mpbcore), the body of lists
 * and queues: push and pop at both ends, a ring whose items wrap around the end of its array,
 * growth while wrapped, insert and remove on either side of the middle, indexing, and giving
 * memory back once a big queue drains. Each blob holds its number, so order is checked. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "broker.h"

static blob_t *num(int64_t v) {
    return blob_new((const uint8_t *)&v, sizeof v);
}

static int64_t val(const blob_t *b) {
    int64_t v;
    assert_non_null(b);
    assert_int_equal(b->len, sizeof v);
    memcpy(&v, b->data, sizeof v);
    return v;
}

/* Pops b and checks that it holds want. */
static void expect_popped(blob_t *b, int64_t want) {
    assert_int_equal(val(b), want);
    free(b);
}

/* The deque is exactly want[0..n) (deque_at). */
static void expect_items(const deque_t *d, const int64_t *want, size_t n) {
    assert_int_equal(d->len, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(val(deque_at(d, i)), want[i]);
}
#define EXPECT_ITEMS(d, ...)                                                                       \
    expect_items(d, (const int64_t[]){__VA_ARGS__},                                                \
                 sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

static void test_push_pop_both_ends(void **state) {
    (void)state;
    deque_t d = {0};
    assert_null(deque_pop_front(&d)); /* empty: nothing at either end */
    assert_null(deque_pop_back(&d));
    deque_push_back(&d, num(1));
    deque_push_back(&d, num(2));
    deque_push_front(&d, num(0));
    deque_push_front(&d, num(-1));
    EXPECT_ITEMS(&d, -1, 0, 1, 2);
    expect_popped(deque_pop_front(&d), -1);
    expect_popped(deque_pop_back(&d), 2);
    EXPECT_ITEMS(&d, 0, 1);
    expect_popped(deque_pop_back(&d), 1);
    expect_popped(deque_pop_back(&d), 0);
    assert_null(deque_pop_back(&d));
    assert_null(deque_pop_front(&d));
    assert_int_equal(d.len, 0);
    deque_clear(&d);
    assert_null(d.v);
}

/* Push at the back, pop at the front, past the end of the array many times over. */
static void test_wrap_around(void **state) {
    (void)state;
    deque_t d = {0};
    for (int64_t i = 0; i < 6; i++)
        deque_push_back(&d, num(i));
    size_t cap = d.cap;
    assert_int_equal(cap, 8);
    int64_t next_in = 6, next_out = 0;
    for (int round = 0; round < 100; round++) {
        for (int k = 0; k < 4; k++)
            expect_popped(deque_pop_front(&d), next_out++);
        for (int k = 0; k < 4; k++)
            deque_push_back(&d, num(next_in++));
        assert_int_equal(d.cap, cap); /* never more than 6 held: no growth */
        for (size_t i = 0; i < d.len; i++)
            assert_int_equal(val(deque_at(&d, i)), next_out + i);
    }
    /* and at the front: push_front wraps below index 0 */
    deque_t f = {0};
    for (int64_t i = 0; i < 7; i++)
        deque_push_front(&f, num(i));
    EXPECT_ITEMS(&f, 6, 5, 4, 3, 2, 1, 0);
    deque_clear(&d);
    deque_clear(&f);
}

/* Growing a wrapped ring keeps the order. */
static void test_growth_while_wrapped(void **state) {
    (void)state;
    deque_t d = {0};
    for (int64_t i = 0; i < 8; i++)
        deque_push_back(&d, num(i));
    for (int64_t i = 0; i < 5; i++)
        expect_popped(deque_pop_front(&d), i);
    for (int64_t i = 8; i < 13; i++)
        deque_push_back(&d, num(i)); /* wraps: head is 5 */
    assert_int_equal(d.cap, 8);
    for (int64_t i = 13; i < 1000; i++)
        deque_push_back(&d, num(i));
    assert_int_equal(d.cap, 1024);
    assert_int_equal(d.len, 995);
    for (size_t i = 0; i < d.len; i++)
        assert_int_equal(val(deque_at(&d, i)), (int64_t)i + 5);
    /* deque_ref writes in place */
    free(*deque_ref(&d, 10));
    *deque_ref(&d, 10) = num(-10);
    assert_int_equal(val(deque_at(&d, 10)), -10);
    assert_int_equal(deque_bytes(&d), 1024 * sizeof(blob_t *) + 995 * (sizeof(blob_t) + 8));
    deque_clear(&d);
    assert_int_equal(d.len, 0);
    assert_int_equal(d.cap, 0);
}

/* Insert and remove shift whichever side is shorter; both must give the same list. */
static void test_insert_remove_middle(void **state) {
    (void)state;
    deque_t d = {0};
    for (int64_t i = 0; i < 6; i++)
        deque_push_back(&d, num(i * 10));
    deque_insert(&d, 1, num(5));   /* front half */
    deque_insert(&d, 5, num(35));  /* back half */
    deque_insert(&d, 0, num(-5));  /* the front */
    deque_insert(&d, 99, num(99)); /* past the end: the back */
    EXPECT_ITEMS(&d, -5, 0, 5, 10, 20, 30, 35, 40, 50, 99);
    expect_popped(deque_remove(&d, 2), 5);  /* front half */
    expect_popped(deque_remove(&d, 6), 40); /* back half */
    expect_popped(deque_remove(&d, 0), -5);
    expect_popped(deque_remove(&d, d.len - 1), 99);
    EXPECT_ITEMS(&d, 0, 10, 20, 30, 35, 50);
    /* the same in a wrapped ring */
    for (int k = 0; k < 5; k++) {
        int64_t first = val(deque_at(&d, 0));
        expect_popped(deque_pop_front(&d), first);
        deque_push_back(&d, num(100 + k));
    }
    EXPECT_ITEMS(&d, 50, 100, 101, 102, 103, 104);
    deque_insert(&d, 2, num(7));
    deque_insert(&d, 5, num(8));
    EXPECT_ITEMS(&d, 50, 100, 7, 101, 102, 8, 103, 104);
    expect_popped(deque_remove(&d, 1), 100);
    expect_popped(deque_remove(&d, 5), 103);
    EXPECT_ITEMS(&d, 50, 7, 101, 102, 8, 104);
    deque_clear(&d);
}

/* A queue that held many items and drained gives its array back (to a quarter, at most). */
static void test_shrinks_after_draining(void **state) {
    (void)state;
    deque_t d = {0};
    enum { N = 100000 };
    for (int64_t i = 0; i < N; i++)
        deque_push_back(&d, num(i));
    size_t big = d.cap;
    assert_true(big >= N);
    for (int64_t i = 0; i < N - 10; i++)
        expect_popped(deque_pop_front(&d), i);
    assert_true(d.cap < big / 64);
    assert_true(d.cap >= d.len);
    for (size_t i = 0; i < d.len; i++)
        assert_int_equal(val(deque_at(&d, i)), N - 10 + (int64_t)i);
    deque_clear(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_pop_both_ends),     cmocka_unit_test(test_wrap_around),
        cmocka_unit_test(test_growth_while_wrapped),   cmocka_unit_test(test_insert_remove_middle),
        cmocka_unit_test(test_shrinks_after_draining),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
