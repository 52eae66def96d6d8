/* clock.c - monotonic time in ns, us and ms and wall time in ms and us for every program of
 * the tree, and the cheaper request clock of the broker's latency histograms (the TSC, where the
 * kernel trusts it). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "clock.h"

int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t now_us(void) {
    return now_ns() / 1000;
}

int64_t now_ms(void) {
    return now_ns() / 1000000;
}

int64_t wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t wall_ms(void) {
    return wall_us() / 1000;
}

/* Request latencies are timed once per request, a million times a second under load: where
 * the kernel itself keeps time by the TSC, reading it costs a third of clock_gettime(). */
#if defined(__x86_64__)
/* The TSC's rate is taken from two readings of it and of the clock at least TSC_SPAN_NS apart:
 * the first by lat_clock_init(), the second by the first lat_clock_ns() after that span
 * (calibrating by spinning for the span made every broker start 20 ms longer, half the start
 * of the private broker of a Python Manager()). Until then lat_clock_ns() is the clock. */
#define TSC_SPAN_NS 20000000
static double tsc_ns_per_tick; /* 0: use the clock */
static bool tsc_pending;       /* the first readings are taken: the rate is due */
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
    tsc_ns0 = now_ns();
    tsc_t0 = __rdtsc();
    tsc_pending = true;
}

int64_t lat_clock_ns(void) {
    if (tsc_ns_per_tick != 0)
        return tsc_ns0 + (int64_t)((double)(__rdtsc() - tsc_t0) * tsc_ns_per_tick);
    int64_t b = now_ns();
    if (tsc_pending && b - tsc_ns0 >= TSC_SPAN_NS) {
        uint64_t tb = __rdtsc();
        tsc_pending = false;
        if (tb > tsc_t0) {
            tsc_ns_per_tick = (double)(b - tsc_ns0) / (double)(tb - tsc_t0);
            tsc_t0 = tb;
            tsc_ns0 = b;
        }
    }
    return b;
}
#else
void lat_clock_init(void) {
}

int64_t lat_clock_ns(void) {
    return now_ns();
}
#endif
