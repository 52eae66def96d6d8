/* metrics_render.c - the Prometheus text exposition of the broker's state and counters. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "persist.h"

static void line(mpb__buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(mpb__buf_t *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) mpb__w_raw(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void head(mpb__buf_t *b, const char *name, const char *type, const char *help) {
    line(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_render(mpb__buf_t *b) {
    head(b, "mpb_up", "gauge", "1 while the broker runs.");
    line(b, "mpb_up 1\n");
    head(b, "mpb_ready", "gauge",
         "1 while the broker accepts clients (as /readyz; no data to load: persistence is not "
         "implemented yet).");
    line(b, "mpb_ready %d\n", server_ready() ? 1 : 0);
    head(b, "mpb_uptime_seconds", "gauge", "Seconds since the broker started.");
    line(b, "mpb_uptime_seconds %lld\n", (long long)((now_ms() - g_started_ms) / 1000));

    head(b, "mpb_requests_total", "counter", "Requests by op and result.");
    for (unsigned op = 0; op < MPB__OP_MAX; op++) {
        const op_stats_t *s = &g_op_stats[op];
        const char *name = op ? mpb__op_name(op) : "unknown";
        if (!name) continue;
        if (s->ok) line(b, "mpb_requests_total{op=\"%s\",result=\"ok\"} %llu\n", name,
                        (unsigned long long)s->ok);
        for (int e = 1; e < 64; e++) {
            if (!s->err[e]) continue;
            const char *en = mpb__err_name(e);
            line(b, "mpb_requests_total{op=\"%s\",result=\"%s\"} %llu\n", name,
                 en ? en : "EOTHER", (unsigned long long)s->err[e]);
        }
    }
    head(b, "mpb_request_duration_seconds", "histogram",
         "Time from a request to its answer in the broker, by op; a parked request "
         "(queue.get, lock.acquire, ...) counts its wait too.");
    for (unsigned op = 1; op < MPB__OP_MAX; op++) {
        const op_stats_t *s = &g_op_stats[op];
        const char *name = mpb__op_name(op);
        uint64_t total = 0;
        for (int k = 0; k <= METRICS_BUCKETS; k++) total += s->lat[k];
        if (!name || !total) continue;
        uint64_t cum = 0;
        for (int k = 0; k < METRICS_BUCKETS; k++) {
            cum += s->lat[k];
            /* 2^k microseconds, exactly: %g would round 2^20 us to 1.04858 */
            line(b, "mpb_request_duration_seconds_bucket{op=\"%s\",le=\"%.6f\"} %llu\n", name,
                 (double)(1ull << k) * 1e-6, (unsigned long long)cum);
        }
        line(b, "mpb_request_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"} %llu\n", name,
             (unsigned long long)total);
        line(b, "mpb_request_duration_seconds_sum{op=\"%s\"} %.9f\n", name,
             (double)s->lat_sum_ns * 1e-9);
        line(b, "mpb_request_duration_seconds_count{op=\"%s\"} %llu\n", name,
             (unsigned long long)total);
    }

    head(b, "mpb_objects", "gauge", "Objects by kind.");
    for (int k = 1; k < KIND__N; k++)
        line(b, "mpb_objects{kind=\"%s\"} %zu\n", kind_name((kind_t)k), store_count_kind((kind_t)k));
    head(b, "mpb_clients", "gauge", "Authenticated connections.");
    line(b, "mpb_clients %zu\n", server_peer_count());
    head(b, "mpb_sessions", "gauge", "Client sessions.");
    line(b, "mpb_sessions %zu\n", server_session_count());
    head(b, "mpb_anonymous_objects", "gauge", "Anonymous objects (made by obj.new).");
    line(b, "mpb_anonymous_objects %zu\n", anon_count());
    head(b, "mpb_anonymous_refs", "gauge", "References sessions hold on anonymous objects.");
    line(b, "mpb_anonymous_refs %llu\n", (unsigned long long)anon_refs_total());
    head(b, "mpb_anonymous_deleted_total", "counter",
         "Anonymous objects deleted after their last reference went.");
    line(b, "mpb_anonymous_deleted_total %llu\n", (unsigned long long)g_anon_deleted);
    head(b, "mpb_sessions_expired_total", "counter", "Sessions ended by missing heartbeats.");
    line(b, "mpb_sessions_expired_total %llu\n", (unsigned long long)g_sessions_expired);
    head(b, "mpb_max_memory_bytes", "gauge", "--max-memory (0: none).");
    line(b, "mpb_max_memory_bytes %zu\n", g_limits.max_memory);
    head(b, "mpb_memory_low", "gauge", "1 while an allocation failure makes the broker refuse growth.");
    line(b, "mpb_memory_low %d\n", mem_low() ? 1 : 0);
    head(b, "mpb_oom_refused_total", "counter", "Requests refused with ENOMEM: they would grow memory.");
    line(b, "mpb_oom_refused_total %llu\n", (unsigned long long)g_oom_refused);
    head(b, "mpb_queue_redelivered_total", "counter",
         "Items a reliable queue took back because their taker's session ended.");
    line(b, "mpb_queue_redelivered_total %llu\n", (unsigned long long)g_redelivered);
    head(b, "mpb_replies_replayed_total", "counter",
         "Requests sent again after a cut, answered from the reply cache.");
    line(b, "mpb_replies_replayed_total %llu\n", (unsigned long long)g_replayed);
    head(b, "mpb_blocked_waiters", "gauge", "Requests parked in the broker.");
    line(b, "mpb_blocked_waiters %zu\n", waiter_count());
    head(b, "mpb_auth_failures_total", "counter", "Handshakes refused for a wrong authkey.");
    line(b, "mpb_auth_failures_total %llu\n", (unsigned long long)g_auth_failures);
    head(b, "mpb_bad_frames_total", "counter", "Frames refused before any request was read.");
    line(b, "mpb_bad_frames_total %llu\n", (unsigned long long)g_bad_frames);
    head(b, "mpb_frames_total", "counter", "ZeroMQ messages by direction.");
    line(b, "mpb_frames_total{direction=\"in\"} %llu\n", (unsigned long long)g_frames_in);
    line(b, "mpb_frames_total{direction=\"out\"} %llu\n", (unsigned long long)g_frames_out);
    head(b, "mpb_bytes_total", "counter", "Bytes by direction.");
    line(b, "mpb_bytes_total{direction=\"in\"} %llu\n", (unsigned long long)g_bytes_in);
    line(b, "mpb_bytes_total{direction=\"out\"} %llu\n", (unsigned long long)g_bytes_out);
    pool_metrics(b);
    persist_metrics(b);
    struct mallinfo2 mi = mallinfo2();
    head(b, "mpb_memory_bytes", "gauge", "Heap bytes in use by the broker.");
    line(b, "mpb_memory_bytes %zu\n", mi.uordblks + mi.hblkhd);
    /* Persistence is not built yet: say so plainly rather than omit it. */
    head(b, "mpb_persistence_enabled", "gauge",
         "1 when mutations are logged to disk. Always 0: persistence is not implemented yet, "
         "all state is in memory and lost when the broker stops.");
    line(b, "mpb_persistence_enabled 0\n");
}
