/* clock.c - monotonic time in ns, us and ms and wall time in ms and us for every program of
 * the tree, and the cheaper request clock of the broker's latency histograms (the TSC, where the
 * kernel trusts it). */
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
