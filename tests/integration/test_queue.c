#include <stdio.h>
#include <unistd.h>
#include "th.h"
static th_broker_t B;
static int child(int idx, void *arg) {
    (void)arg;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    if (mpb_queue_open(c, "big", 0, 0, &q)) return 1;
    for (int i = 0; i < 20000; i++) {
        uint8_t b[9];
        size_t n = mpb_pack_i64(b, idx * 1000000 + i);
        if (mpb_queue_put(q, b, n, 0)) return 2;
    }
    mpb_close(&c);
    return 0;
}
static void t(void **s) {
    (void)s;
    th_broker_start(&B, NULL);
    int64_t t0 = th_now_ms();
    assert_int_equal(th_spawn(1, child, NULL, 100), 0);
    int64_t t1 = th_now_ms();
    assert_int_equal(th_spawn(4, child, NULL, 100), 0);
    int64_t t2 = th_now_ms();
    fprintf(stderr, "1x20000: %lld ms, 4x20000: %lld ms\n", (long long)(t1 - t0), (long long)(t2 - t1));
    th_broker_stop(&B);
}
int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(t)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
