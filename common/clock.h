/* clock.h - the one monotonic clock of the programs (clock.c): mpbrokerd, mpb, mpb-worker,
 * mpb-bench and the tools read time through it. libmpb keeps its own, as it links no part of
 * common/. */
#ifndef MPB_CLOCK_H
#define MPB_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC: never jumps with the wall clock, so deadlines and intervals stay true. */
int64_t now_ns(void);
int64_t now_us(void);
int64_t now_ms(void);
/* For timing requests: the TSC where the kernel keeps time by it, else now_ns(). Call
 * lat_clock_init() once (it takes 20 ms on the TSC) before the first lat_clock_ns(). */
void lat_clock_init(void);
int64_t lat_clock_ns(void);

#endif
