/* test_hashflood.c - hash flooding (issue 11, finding 7) against a real mpbrokerd: 65,536 keys
 * built offline to share one hash under the construction the broker's tables used before
 * SipHash go into one dict in eight frames of 8,192, while another process keeps using the
 * broker. Before the keyed hash, the inserts took 31.9 s and one frame stalled every client
 * for 8.7 s; now each frame is ordinary work. The structural proof (probe lengths under both
 * hashes) is tests/unit/test_hash.c; here the bounds are generous wall-clock ones. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th.h"
#include "mpbproto.h"
#include "../common/oldhash.h"

#define NKEYS     65536
#define PER_FRAME 8192

static th_broker_t B;

typedef struct probe_rec {
    int64_t ops, errors, worst_ms;
} probe_rec_t;

typedef struct probe_arg {
    int stop_fd, out_fd;
    int parent_fds[2]; /* the parent's ends, closed here so that EOF reaches the child */
} probe_arg_t;

/* Another client: set and read back its own counter until told to stop (or 60 s), then
 * report how many round trips it made, how many went wrong and the slowest. */
static int probe(int idx, void *arg) {
    (void)idx;
    const probe_arg_t *a = arg;
    close(a->parent_fds[0]);
    close(a->parent_fds[1]);
    probe_rec_t r = {0, 0, 0};
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d = NULL;
    if (mpb_dict_open(c, "probe", &d)) return 1;
    int64_t end = th_now_ms() + 60000;
    for (int64_t i = 0; th_now_ms() < end; i++) {
        struct pollfd p = {a->stop_fd, POLLIN, 0};
        if (poll(&p, 1, 0) > 0) break;
        int64_t t0 = th_now_ms(), got = -1;
        if (mpb_dict_set_i64(d, "n", i) || mpb_dict_get_i64(d, "n", &got) || got != i) r.errors++;
        int64_t dt = th_now_ms() - t0;
        if (dt > r.worst_ms) r.worst_ms = dt;
        r.ops++;
    }
    mpb_dict_close(&d);
    mpb_close(&c);
    return write(a->out_fd, &r, sizeof r) == sizeof r ? 0 : 1;
}

static void test_hashflood_old_collisions(void **state) {
    (void)state;
    const uint64_t seed = 0x5eed5eed5eed5eedULL;
    int stop[2], out[2];
    assert_int_equal(pipe(stop), 0);
    assert_int_equal(pipe(out), 0);
    probe_arg_t pa = {
        stop[0], out[1], {stop[1], out[0]}
    };
    pid_t child = th_fork(probe, &pa);
    close(out[1]);
    close(stop[0]);

    /* eight frames of {key: 1, ...} with 8,192 colliding keys each */
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d = NULL;
    th_assert_ok(mpb_dict_open(c, "flood", &d), c);
    uint8_t k[OLD_KEY_LEN];
    old_colliding_key(seed, 0, k);
    const uint64_t h0 = old_hash(seed, k, OLD_KEY_LEN);
    mpb__buf_t b = {0};
    int64_t t0 = th_now_ms();
    for (uint32_t f = 0; f < NKEYS / PER_FRAME; f++) {
        mpb__buf_reset(&b);
        mpb__w_map(&b, PER_FRAME);
        for (uint32_t i = f * PER_FRAME; i < (f + 1) * PER_FRAME; i++) {
            old_colliding_key(seed, i, k);
            assert_true(old_hash(seed, k, OLD_KEY_LEN) == h0); /* the attack is real */
            mpb__w_raw(&b, k, OLD_KEY_LEN);
            mpb__w_int(&b, 1);
        }
        th_assert_ok(mpb_dict_update(d, b.p, b.len), c);
    }
    int64_t took = th_now_ms() - t0;
    mpb__buf_free(&b);
    print_message("65,536 colliding keys inserted in %lld ms\n", (long long)took);
    assert_true(took < 5000); /* was 31.9 s */

    uint64_t n = 0;
    th_assert_ok(mpb_dict_len(d, &n), c);
    assert_int_equal(n, NKEYS);
    for (uint32_t i = 0; i < NKEYS; i += 4099) {
        old_colliding_key(seed, i, k);
        void *v = NULL;
        size_t vn = 0;
        th_assert_ok(mpb_dict_get(d, k, OLD_KEY_LEN, &v, &vn), c);
        th_assert_bytes(v, vn, "\x01", 1);
        mpb_free(v);
    }

    /* the other client was served all along */
    close(stop[1]);
    probe_rec_t r = {0, 0, -1};
    assert_int_equal(th_read_records(out[0], &r, sizeof r, 1, 70000), 1);
    close(out[0]);
    assert_int_equal(th_wait(child, 10), 0);
    print_message("probe: %lld round trips, slowest %lld ms\n", (long long)r.ops,
                  (long long)r.worst_ms);
    assert_int_equal(r.errors, 0);
    assert_true(r.ops > 0);
    assert_true(r.worst_ms < 2000); /* one frame stalled every client 8.7 s */

    mpb_dict_close(&d);
    th_assert_dict_roundtrip(c, "after", 7);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

static int setup(void **state) {
    (void)state;
    th_broker_start(&B, NULL);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hashflood_old_collisions),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
