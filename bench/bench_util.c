/* bench_util.c - the small tools of mpb-bench: a monotonic clock, allocation that dies on
 * failure, the msgpack writers the requests need (into a caller's buffer, no allocation on the
 * hot path), and the latency histogram (log-linear, 1/128 relative precision, in nanoseconds). */
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

/* The header of a str, bin or array of n items or bytes: fix | n up to fixmax (fix 0: none),
 * then the 8 (h8 0: none), 16 and 32-bit forms. */
static size_t mp_head(uint8_t *p, size_t n, uint8_t fix, size_t fixmax, uint8_t h8, uint8_t h16,
                      uint8_t h32) {
    if (fix && n <= fixmax) {
        p[0] = (uint8_t)(fix | n);
        return 1;
    }
    if (h8 && n <= 0xff) {
        p[0] = h8;
        p[1] = (uint8_t)n;
        return 2;
    }
    if (n <= 0xffff) {
        p[0] = h16;
        p[1] = (uint8_t)(n >> 8);
        p[2] = (uint8_t)n;
        return 3;
    }
    p[0] = h32;
    for (int i = 0; i < 4; i++)
        p[1 + i] = (uint8_t)(n >> (24 - 8 * i));
    return 5;
}

size_t mp_array(uint8_t *p, uint32_t n) {
    return mp_head(p, n, 0x90, 15, 0, 0xdc, 0xdd);
}

size_t mp_uint(uint8_t *p, uint64_t v) {
    if (v < 128) {
        p[0] = (uint8_t)v;
        return 1;
    }
    if (v < 256) {
        p[0] = 0xcc;
        p[1] = (uint8_t)v;
        return 2;
    }
    if (v < 65536) {
        p[0] = 0xcd;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)v;
        return 3;
    }
    if (v <= 0xffffffffu) {
        p[0] = 0xce;
        for (int i = 0; i < 4; i++)
            p[1 + i] = (uint8_t)(v >> (24 - 8 * i));
        return 5;
    }
    p[0] = 0xcf;
    for (int i = 0; i < 8; i++)
        p[1 + i] = (uint8_t)(v >> (56 - 8 * i));
    return 9;
}

size_t mp_str(uint8_t *p, const char *s, size_t n) {
    size_t h = mp_head(p, n, 0xa0, 31, 0xd9, 0xda, 0xdb);
    memcpy(p + h, s, n);
    return h + n;
}

/* bin header for n bytes; the caller writes the bytes */
size_t mp_bin_hdr(uint8_t *p, size_t n) {
    return mp_head(p, n, 0, 0, 0xc4, 0xc5, 0xc6);
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
