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
    /* items: array32 header, then each integer */
    uint8_t *items = malloc(5 + (size_t)n * MPB_PACK_MAX_SCALAR);
    if (!items) {
        fprintf(stderr, "mpb-pool-bench: out of memory\n");
        return 1;
    }
    size_t len = 0;
    items[len++] = 0xdd;
    for (int i = 3; i >= 0; i--)
        items[len++] = (uint8_t)((unsigned long)n >> (8 * i));
    for (long i = 0; i < n; i++)
        len += mpb_pack_i64(items + len, i);
    mpb_pool_t *p;
    if (mpb_pool_open(c, &p)) {
        fprintf(stderr, "mpb-pool-bench: %s\n", mpb_errmsg(c));
        return 1;
    }
    void *res;
    size_t rl;
    /* a first small map, untimed, as the Python side's warm-up: workers are fetching by then */
    static const uint8_t warm[] = {0x93, 0x01, 0x02, 0x03};
    if (mpb_pool_map(p, "square", warm, sizeof warm, 1, 60000, &res, &rl) == 0) mpb_free(res);
    double t0 = now();
    int rc = mpb_pool_map(p, "square", items, len, (size_t)cs, 600000, &res, &rl);
    double t1 = now();
    if (rc) {
        fprintf(stderr, "mpb-pool-bench: map: %s\n", mpb_errmsg(c));
        return 1;
    }
    /* check: [0, 1, 4, ...] */
    const uint8_t *q = res;
    size_t off = q[0] == 0xdd ? 5 : q[0] == 0xdc ? 3 : 1;
    for (long i = 0; i < n; i++) {
        int64_t v;
        size_t k = 1;
        while (k <= 9 && mpb_unpack_i64(q + off, k, &v) != 0)
            k++;
        if (k > 9 || v != i * i) {
            fprintf(stderr, "mpb-pool-bench: result %ld is wrong\n", i);
            return 1;
        }
        off += k;
    }
    printf("%.0f\n", (double)n / (t1 - t0));
    mpb_free(res);
    free(items);
    mpb_pool_close(&p);
    mpb_close(&c);
    mpb_free(key);
    return 0;
}
