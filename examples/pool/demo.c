/* demo.c - libmpbdemo.so: pool functions for the README, the tests and a first worker.
 * Start workers with: mpb-worker --lib libmpbdemo.so --fn square,fail,sleep_ms
 *
 * A pool function gets its call's arguments as a msgpack array (read here with libmpb's
 * mpb_mpr_* reader) and answers one msgpack value in a malloc()ed buffer, or returns non-zero
 * with a message (the C analogue of raising). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpb/mpb.h"

/* The call's n integer arguments (args is the array [a, b, ...]), or an error message. */
static int int_args(const void *args, size_t alen, int64_t *v, uint32_t n, char *err,
                    size_t errlen) {
    mpb_mpreader_t r;
    uint32_t got = 0;
    if (mpb_mpr_init(&r, args, alen) != 0 || mpb_mpr_array(&r, &got) != 0 || got != n) goto bad;
    for (uint32_t i = 0; i < n; i++)
        if (mpb_mpr_i64(&r, &v[i]) != 0) goto bad;
    return 0;
bad:
    snprintf(err, errlen, "expected %u integer argument%s", n, n == 1 ? "" : "s");
    return -1;
}

static int arg0_int(const void *args, size_t alen, int64_t *v, char *err, size_t errlen) {
    return int_args(args, alen, v, 1, err, errlen);
}

static int reply_int(int64_t v, void **result, size_t *rlen) {
    uint8_t *b = malloc(MPB_PACK_MAX_SCALAR);
    if (!b) return -1;
    *rlen = mpb_pack_i64(b, v);
    *result = b;
    return 0;
}

/* square(n) -> n * n */
int square(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
           size_t errlen);
int square(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
           size_t errlen) {
    (void)ctx;
    int64_t n, sq;
    if (arg0_int(args, alen, &n, err, errlen)) return -1;
    if (__builtin_mul_overflow(n, n, &sq)) {
        snprintf(err, errlen, "square(%lld) overflows int64", (long long)n);
        return -1;
    }
    return reply_int(sq, result, rlen);
}

/* fail(...) -> always an error, naming its argument */
int fail(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
         size_t errlen);
int fail(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
         size_t errlen) {
    (void)ctx;
    (void)result;
    (void)rlen;
    int64_t n;
    if (arg0_int(args, alen, &n, err, errlen) == 0)
        snprintf(err, errlen, "ValueError: fail(%lld) always fails", (long long)n);
    else
        snprintf(err, errlen, "ValueError: fail() always fails");
    return -1;
}

/* sleep_ms(ms) -> ms, after sleeping that long */
int sleep_ms(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
             size_t errlen);
int sleep_ms(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
             size_t errlen) {
    (void)ctx;
    int64_t ms;
    if (arg0_int(args, alen, &ms, err, errlen)) return -1;
    if (ms < 0 || ms > 3600000) {
        snprintf(err, errlen, "sleep_ms: %lld is not 0..3600000", (long long)ms);
        return -1;
    }
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    return reply_int(ms, result, rlen);
}

/* add(a, b) -> a + b: for starmap */
int add(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
        size_t errlen);
int add(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
        size_t errlen) {
    (void)ctx;
    int64_t ab[2], sum;
    if (int_args(args, alen, ab, 2, err, errlen)) return -1;
    if (__builtin_add_overflow(ab[0], ab[1], &sum)) {
        snprintf(err, errlen, "add(%lld, %lld) overflows int64", (long long)ab[0],
                 (long long)ab[1]);
        return -1;
    }
    return reply_int(sum, result, rlen);
}
