/* clock.h - the one clock of the programs (clock.c), monotonic and wall: mpbrokerd, mpb,
 * mpb-worker, mpb-bench and the tools read time through it. libmpb keeps its own, as it links no
 * part of common/. */
#ifndef MPB_CLOCK_H
#define MPB_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC: never jumps with the wall clock, so deadlines and intervals stay true. */
int64_t now_ns(void);
int64_t now_us(void);
int64_t now_ms(void);
/* CLOCK_REALTIME since the epoch: for timestamps shown to people or kept across restarts,
 * never for intervals (it jumps when the clock is set). */
int64_t wall_ms(void);
int64_t wall_us(void);
/* For timing requests: the TSC where the kernel keeps time by it, else now_ns(). Call
 * lat_clock_init() once before the first lat_clock_ns() (it does not wait: the TSC is used
 * from the first call at least 20 ms later, the clock until then). One thread only. */
void lat_clock_init(void);
int64_t lat_clock_ns(void);

#endif
