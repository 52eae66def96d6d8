/* pool-bench.c - tiny-task throughput of the remote Pool through the public API: map square
 * over N integers with a given chunksize, checking every result. Used by pool-vs-python.sh.
 * Usage: mpb-pool-bench N CHUNKSIZE  (endpoint and key from MPB_ENDPOINT, MPB_AUTHKEY_FILE) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "mpb/mpb.h"

static double now(void) {
    return (double)now_ns() * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: mpb-pool-bench N CHUNKSIZE\n");
        return 2;
    }
    long n = atol(argv[1]), cs = atol(argv[2]);
    if (n < 1 || n > 10000000 || cs < 1) {
        fprintf(stderr, "mpb-pool-bench: N must be 1..10000000 and CHUNKSIZE >= 1\n");
        return 2;
    }
    const char *ep = getenv("MPB_ENDPOINT") ? getenv("MPB_ENDPOINT") : "tcp://127.0.0.1:5555";
    void *key;
    size_t kl;
    char err[300];
    if (mpb_authkey_load(NULL, &key, &kl, err, sizeof err)) {
        fprintf(stderr, "mpb-pool-bench: %s\n", err);
        return 1;
    }
    mpb_client_t *c;
    if (mpb_connect(ep, key, kl, NULL, &c)) {
        fprintf(stderr, "mpb-pool-bench: %s\n", mpb_errmsg(c));
        return 1;
    }
    /* items: [0, 1, ..., n - 1] */
    mpb_mpbuf_t b = {0};
    mpb_mp_array(&b, (uint32_t)n);
    for (long i = 0; i < n; i++)
        mpb_mp_i64(&b, i);
    void *items;
    size_t len;
    if (mpb_mp_take(&b, &items, &len)) {
        fprintf(stderr, "mpb-pool-bench: out of memory\n");
        return 1;
    }
    mpb_pool_t *p;
    if (mpb_pool_open(c, &p)) {
        fprintf(stderr, "mpb-pool-bench: %s\n", mpb_errmsg(c));
        return 1;
    }
    void *res;
    size_t rl;
    /* a first small map, untimed, as the Python side's warm-up: workers are fetching by then */
    uint8_t warm[8];
    mpb_mp_init_buf(&b, warm, sizeof warm, MPB_MP_FIXED);
    mpb_mp_array(&b, 3);
    for (int i = 1; i <= 3; i++)
        mpb_mp_i64(&b, i);
    if (mpb_pool_map(p, "square", b.data, b.len, 1, 60000, &res, &rl) == 0) mpb_free(res);
    double t0 = now();
    int rc = mpb_pool_map(p, "square", items, len, (size_t)cs, 600000, &res, &rl);
    double t1 = now();
    if (rc) {
        fprintf(stderr, "mpb-pool-bench: map: %s\n", mpb_errmsg(c));
        return 1;
    }
    /* check: [0, 1, 4, ...] */
    mpb_mpreader_t r;
    uint32_t count;
    if (mpb_mpr_init(&r, res, rl) || mpb_mpr_array(&r, &count) || count != (uint32_t)n) {
        fprintf(stderr, "mpb-pool-bench: the results are not an array of %ld\n", n);
        return 1;
    }
    for (long i = 0; i < n; i++) {
        int64_t v;
        if (mpb_mpr_i64(&r, &v) || v != i * i) {
            fprintf(stderr, "mpb-pool-bench: result %ld is wrong\n", i);
            return 1;
        }
    }
    printf("%.0f\n", (double)n / (t1 - t0));
    mpb_free(res);
    mpb_free(items);
    mpb_pool_close(&p);
    mpb_close(&c);
    mpb_free(key);
    return 0;
}
