/* metrics.h - counters the loop keeps, rendered for Prometheus by http.c (metrics.c). */
#ifndef BROKER_METRICS_H
#define BROKER_METRICS_H

#include "util.h"

#define METRICS_BUCKETS 24 /* latency histogram: le 1us * 2^k, k < 24 (8.4 s): see metrics.c */
typedef struct op_stats {
    uint64_t ok, err[64]; /* by error code */
    uint64_t lat[METRICS_BUCKETS + 1];
    uint64_t lat_sum_ns;
} op_stats_t;
extern op_stats_t g_op_stats[MPB__OP_MAX];
extern uint64_t g_frames_in, g_frames_out, g_bytes_in, g_bytes_out, g_auth_failures, g_bad_frames,
    g_sessions_expired, g_sessions_refused, g_http_deadline_closed;
/* Counts one request's outcome and its time in the broker. */
void metrics_count(unsigned op, int code, uint64_t ns);
/* Appends the Prometheus text exposition of every metric to out. */
void metrics_render(mpb__buf_t *out);

#endif
