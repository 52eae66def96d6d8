/* metrics.c - counters kept by the loop: requests by op and result, time spent per op in a
 * log2 histogram, traffic, failures. Rendering them for Prometheus lives in metrics_render. */
#include <stdio.h>
#include <string.h>

#include "broker.h"

op_stats_t g_op_stats[MPB__OP_MAX];
uint64_t g_frames_in, g_frames_out, g_bytes_in, g_bytes_out, g_auth_failures, g_bad_frames,
    g_sessions_expired, g_sessions_refused, g_http_deadline_closed;

void metrics_count(unsigned op, int code, uint64_t ns) {
    if (op >= MPB__OP_MAX) op = 0; /* unknown ops are counted under op 0 */
    op_stats_t *s = &g_op_stats[op];
    if (code == 0)
        s->ok++;
    else
        s->err[code < 64 ? code : 63]++;
    /* bucket k holds times <= 1us * 2^k; the last one everything slower */
    uint64_t us = ns / 1000;
    int k = 0;
    while (k < METRICS_BUCKETS && us > (1ull << k))
        k++;
    s->lat[k]++;
    s->lat_sum_ns += ns;
}
