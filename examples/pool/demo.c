/* demo.c - libmpbdemo.so: pool functions for the README, the tests and a first worker.
 * Start workers with: mpb-worker --lib libmpbdemo.so --fn square,fail,sleep_ms
 *
 * A pool function gets its call's arguments as a msgpack array and answers one msgpack value
 * in a malloc()ed buffer, or returns non-zero with a message (the C analogue of raising). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpb/mpb.h"

/* The first argument as an integer, or an error message. */
static int arg0_int(const void *args, size_t alen, int64_t *v, char *err, size_t errlen) {
    const uint8_t *p = args;
    /* [x]: a fixarray of one element, then x */
    if (alen < 2 || p[0] != 0x91 || mpb_unpack_i64(p + 1, alen - 1, v) != 0) {
        snprintf(err, errlen, "expected one integer argument");
        return -1;
    }
    return 0;
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
    const uint8_t *p = args;
    int64_t a, b;
    /* [a, b] with both as small encodings is the common case; accept any integer widths */
    if (alen < 3 || p[0] != 0x92) {
        snprintf(err, errlen, "add takes two integers");
        return -1;
    }
    /* find the end of the first integer by trying each possible length */
    for (size_t k = 1; k < alen - 1 && k <= 9; k++) {
        if (mpb_unpack_i64(p + 1, k, &a) == 0 && mpb_unpack_i64(p + 1 + k, alen - 1 - k, &b) == 0)
            return reply_int(a + b, result, rlen);
    }
    snprintf(err, errlen, "add takes two integers");
    return -1;
}
