/* test_concurrency.c - many processes on one broker: atomic increments lose nothing, appends
 * from every process all arrive, and each process has a session of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th.h"

static th_broker_t B;

static int incr_child(int idx, void *arg) {
    (void)idx;
    (void)arg;
    mpb_client_t *c = NULL;
    if (th_connect_opts(&B, NULL, &c)) return 1;
    mpb_dict_t *d;
    if (mpb_dict_open(c, "counters", &d)) return 2;
    for (int i = 0; i < 1000; i++)
        if (mpb_dict_incr_str(d, "hits", 1, NULL)) return 3;
    mpb_dict_close(&d);
    mpb_close(&c);
    return 0;
}

static void test_8x1000_increments_give_8000(void **state) {
    (void)state;
    assert_int_equal(th_spawn(8, incr_child, NULL, 120), 0);
    mpb_client_t *c = th_connect(&B);
    assert_int_equal(th_dict_i64(c, "counters", "hits"), 8000);
    mpb_close(&c);
}

static int append_child(int idx, void *arg) {
    (void)arg;
    mpb_client_t *c = NULL;
    if (th_connect_opts(&B, NULL, &c)) return 1;
    mpb_list_t *l;
    if (mpb_list_open(c, "items", &l)) return 2;
    for (int i = 0; i < 250; i++) {
        size_t n;
        const uint8_t *v = th_int(idx * 1000 + i, &n);
        if (mpb_list_append(l, v, n)) return 3;
    }
    mpb_list_close(&l);
    mpb_close(&c);
    return 0;
}

static void test_8_processes_appending_give_all_items(void **state) {
    (void)state;
    assert_int_equal(th_spawn(8, append_child, NULL, 120), 0);
    mpb_client_t *c = th_connect(&B);
    mpb_list_t *l;
    assert_int_equal(mpb_list_open(c, "items", &l), 0);
    uint64_t len;
    assert_int_equal(mpb_list_len(l, &len), 0);
    assert_int_equal(len, 2000);
    static char seen[8000];
    memset(seen, 0, sizeof seen);
    int last[8];
    for (int i = 0; i < 8; i++)
        last[i] = -1;
    for (uint64_t i = 0; i < len; i++) {
        void *v;
        size_t n;
        int64_t x;
        assert_int_equal(mpb_list_get(l, (int64_t)i, &v, &n), 0);
        assert_int_equal(mpb_unpack_i64(v, n, &x), 0);
        mpb_free(v);
        assert_true(x >= 0 && x < 8000 && x % 1000 < 250);
        assert_int_equal(seen[x], 0);
        seen[x] = 1;
        /* each process's items arrive in the order it sent them */
        assert_true(x % 1000 > last[x / 1000]);
        last[x / 1000] = (int)(x % 1000);
    }
    mpb_list_close(&l);
    mpb_close(&c);
}

int main(void) {
    th_suite(&B, NULL, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_8x1000_increments_give_8000),
        cmocka_unit_test(test_8_processes_appending_give_all_items),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
