/* util.c - allocation that aborts with the size it wanted (after giving back the reserve of
 * mem.c and trying again), clocks, blobs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "broker.h"

static void oom(size_t n) {
    fprintf(stderr, "mpbrokerd: out of memory allocating %zu bytes\n", n);
    abort();
}

/* A failed allocation is tried once more after the reserve is given back (mem.c): then the
 * broker refuses to grow instead of dying with everything it holds. */
void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p && mem_release_reserve()) p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *xcalloc(size_t n, size_t m) {
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p && mem_release_reserve()) p = calloc(n ? n : 1, m ? m : 1);
    if (!p) oom(n * m);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q && mem_release_reserve()) q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *xstrndup(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Request latencies are timed once per request, a million times a second under load: where
 * the kernel itself keeps time by the TSC, reading it costs a third of clock_gettime(). */
#if defined(__x86_64__)
static double tsc_ns_per_tick; /* 0: use the clock */
static uint64_t tsc_t0;
static int64_t tsc_ns0;

void lat_clock_init(void) {
    char src[32] = "";
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f) {
        if (!fgets(src, sizeof src, f)) src[0] = 0;
        fclose(f);
    }
    if (strncmp(src, "tsc", 3) != 0 || (src[3] != '\n' && src[3] != 0)) return;
    int64_t a = now_ns();
    uint64_t ta = __rdtsc();
    while (now_ns() - a < 20000000) { /* 20 ms */
    }
    int64_t b = now_ns();
    uint64_t tb = __rdtsc();
    if (tb <= ta) return;
    tsc_ns_per_tick = (double)(b - a) / (double)(tb - ta);
    tsc_t0 = tb;
    tsc_ns0 = b;
}

int64_t lat_clock_ns(void) {
    if (tsc_ns_per_tick == 0) return now_ns();
    return tsc_ns0 + (int64_t)((double)(__rdtsc() - tsc_t0) * tsc_ns_per_tick);
}
#else
void lat_clock_init(void) {
}

int64_t lat_clock_ns(void) {
    return now_ns();
}
#endif

int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void bbuf_ensure(mpb__buf_t *b) {
    if (b->oom) oom(b->cap * 2);
}

blob_t *blob_new(const uint8_t *p, size_t n) {
    blob_t *b = xmalloc(sizeof *b + n);
    b->len = (uint32_t)n;
    memcpy(b->data, p, n);
    return b;
}
