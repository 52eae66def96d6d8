/* bench_output.c - one row of results: human (redis-benchmark's summary), --csv
 * (redis-benchmark's columns) or --json (an array of objects, closed by main). */
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

void print_result(bench_t *B, const result_t *r) {
    switch (B->out) {
    case OUT_CSV:
        printf("\"%s\",\"%.2f\",\"%.3f\",\"%.3f\",\"%.3f\",\"%.3f\",\"%.3f\",\"%.3f\"\n", r->name,
               r->rps, r->avg, r->min, r->p50, r->p95, r->p99, r->max);
        break;
    case OUT_JSON:
        printf("%s\n  {\"test\": \"%s\", \"rps\": %.2f, \"avg_latency_ms\": %.3f, "
               "\"min_latency_ms\": %.3f, \"p50_latency_ms\": %.3f, \"p95_latency_ms\": %.3f, "
               "\"p99_latency_ms\": %.3f, \"p999_latency_ms\": %.3f, \"max_latency_ms\": %.3f}",
               B->json_rows++ ? "," : "", r->name, r->rps, r->avg, r->min, r->p50, r->p95, r->p99,
               r->p999, r->max);
        break;
    case OUT_HUMAN:
        if (B->quiet) {
            printf("%s: %.2f requests per second, p50=%.3f msec p99=%.3f msec p99.9=%.3f msec "
                   "max=%.3f msec\n",
                   r->name, r->rps, r->p50, r->p99, r->p999, r->max);
            break;
        }
        printf("====== %s ======\n", r->name);
        printf("  %" PRIu64 " requests completed in %.2f seconds\n", r->requests, r->secs);
        printf("  %d parallel clients, pipeline %d, %zu bytes values, %s\n", B->clients,
               B->pipeline, B->dsize, B->endpoint);
        if (r->misses) printf("  %" PRIu64 " misses (no such key)\n", r->misses);
        if (r->errors) printf("  %" PRIu64 " errors\n", r->errors);
        printf("  latency (msec): avg %.3f  min %.3f  p50 %.3f  p95 %.3f  p99 %.3f  p99.9 %.3f  "
               "max %.3f\n",
               r->avg, r->min, r->p50, r->p95, r->p99, r->p999, r->max);
        printf("  %.2f requests per second\n\n", r->rps);
        break;
    }
    fflush(stdout);
}
