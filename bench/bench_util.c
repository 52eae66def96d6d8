/* bench_util.c - the small tools of mpb-bench: allocation that dies on failure, reading
 * pool.fninfo's answer, and the latency histogram (log-linear, 1/128 relative precision, in
 * nanoseconds). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mpb-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) die("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

/* The first unsigned integer of a msgpack array (pool.fninfo's worker count), or -1. */
int64_t mp_first_uint(const void *p, size_t n) {
    mpb_mpreader_t r;
    uint32_t items;
    uint64_t v;
    if (mpb_mpr_init(&r, p, n) || mpb_mpr_array(&r, &items) || !items || mpb_mpr_u64(&r, &v) ||
        v > INT64_MAX)
        return -1;
    return (int64_t)v;
}

void hist_init(hist_t *h) {
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
    h->b = xcalloc(HSLOTS, sizeof *h->b);
}

void hist_free(hist_t *h) {
    free(h->b);
    h->b = NULL;
}

void hist_clear(hist_t *h) {
    uint32_t *b = h->b;
    memset(b, 0, HSLOTS * sizeof *b);
    memset(h, 0, sizeof *h);
    h->b = b;
    h->min = UINT64_MAX;
}

/* The middle of bucket i. */
static uint64_t hist_value(size_t i) {
    if (i < HSUB) return i;
    int e = (int)(i / HSUB) + 6;
    uint64_t lo = (uint64_t)(HSUB + i % HSUB) << (e - 7);
    return lo + ((1ull << (e - 7)) >> 1);
}

void hist_merge(hist_t *into, const hist_t *h) {
    if (!h->count) return;
    into->count += h->count;
    into->sum += h->sum;
    if (h->min < into->min) into->min = h->min;
    if (h->max > into->max) into->max = h->max;
    for (size_t i = 0; i < HSLOTS; i++)
        into->b[i] += h->b[i];
}

/* The q-quantile (0 < q <= 1), clamped to the exact min and max. */
uint64_t hist_quantile(const hist_t *h, double q) {
    if (!h->count) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HSLOTS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = hist_value(i);
            if (v < h->min) v = h->min;
            if (v > h->max) v = h->max;
            return v;
        }
    }
    return h->max;
}
