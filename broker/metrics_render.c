/* metrics_render.c - the Prometheus text exposition of the broker's state and counters. */
#include <dirent.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

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

/* The start of this process in seconds since the epoch, as the kernel has it: its start in
 * clock ticks after boot (/proc/self/stat field 22) plus the boot time (/proc/stat btime).
 * Read once: it does not change. -1 when /proc cannot say. */
static double process_start_time(void) {
    static double start = 0;
    if (start) return start;
    start = -1;
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return start;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ticks = 0;
    /* after ")": state is field 3, starttime field 22 */
    for (int field = 2; p && field < 22; field++) p = strchr(p + 1, ' ');
    if (!p || sscanf(p + 1, "%llu", &ticks) != 1) return start;
    unsigned long long btime = 0;
    f = fopen("/proc/stat", "r");
    if (!f) return start;
    char line_[256];
    while (fgets(line_, sizeof line_, f))
        if (sscanf(line_, "btime %llu", &btime) == 1) break;
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (btime && hz > 0) start = (double)btime + (double)ticks / (double)hz;
    return start;
}

static long open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor, open while it is read */
}

/* The process_* series every Prometheus client library exports, under their standard names. */
static void process_metrics(mpb__buf_t *b) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        head(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.");
        line(b, "process_cpu_seconds_total %.6f\n",
             (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6);
    }
    unsigned long long vsz = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &vsz, &rss) == 2) {
            unsigned long long page = (unsigned long long)sysconf(_SC_PAGESIZE);
            head(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
            line(b, "process_resident_memory_bytes %llu\n", rss * page);
            head(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
            line(b, "process_virtual_memory_bytes %llu\n", vsz * page);
        }
        fclose(f);
    }
    long fds = open_fds();
    if (fds >= 0) {
        head(b, "process_open_fds", "gauge", "Number of open file descriptors.");
        line(b, "process_open_fds %ld\n", fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        head(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        line(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
    double start = process_start_time();
    if (start > 0) {
        head(b, "process_start_time_seconds", "gauge",
             "Start time of the process since unix epoch in seconds.");
        line(b, "process_start_time_seconds %.2f\n", start);
    }
}

/* ---- per-queue depth: a bounded label set ----
 *
 * A series per queue would let a program that makes queues by the thousand blow up every
 * scrape (and the monitoring's storage), so only the METRICS_TOP_QUEUES longest queues get
 * one (length plus blocked getters and putters; ties: the one made first), and
 * mpb_queues_unlabelled counts the rest. */
#define METRICS_TOP_QUEUES 20

/* name as a label value: backslash and double quote escaped (names have no newline) */
static void label_value(char *out, size_t n, const char *name) {
    size_t j = 0;
    for (const char *p = name; *p && j + 2 < n; p++) {
        if (*p == '\\' || *p == '"') out[j++] = '\\';
        out[j++] = *p;
    }
    out[j] = 0;
}

/* by size: items, and the clients blocked on it (an empty queue with many getters matters) */
static size_t queue_rank(const queue_t *q) {
    return q->items.len + q->getters.n + q->putters.n;
}

static void queue_metrics(mpb__buf_t *b) {
    const obj_t *top[METRICS_TOP_QUEUES];
    size_t ntop = 0, nq = 0;
    const omap_t *m = store_map();
    for (size_t i = 0; i < m->nents; i++) {
        const obj_t *o = m->ents[i].item;
        if (!o || o->kind != KIND_QUEUE) continue;
        nq++;
        size_t rank = queue_rank(&o->u.queue), at = ntop;
        while (at > 0 && queue_rank(&top[at - 1]->u.queue) < rank) at--;
        if (at >= METRICS_TOP_QUEUES) continue;
        if (ntop < METRICS_TOP_QUEUES) ntop++;
        memmove(&top[at + 1], &top[at], (ntop - 1 - at) * sizeof *top);
        top[at] = o;
    }
    static const struct {
        const char *name, *help;
    } series[] = {
        {"mpb_queue_length", "Items in the queue (the largest queues only: see mpb_queues_unlabelled)."},
        {"mpb_queue_unfinished", "Items of a joinable queue put and not yet task_done."},
        {"mpb_queue_getters", "Clients blocked in get on the queue."},
        {"mpb_queue_putters", "Clients blocked in put on the full queue."},
    };
    for (size_t s = 0; s < sizeof series / sizeof *series; s++) {
        head(b, series[s].name, "gauge", series[s].help);
        for (size_t i = 0; i < ntop; i++) {
            const queue_t *q = &top[i]->u.queue;
            long long v = s == 0 ? (long long)q->items.len
                        : s == 1 ? (long long)q->unfinished
                        : s == 2 ? (long long)q->getters.n
                                 : (long long)q->putters.n;
            char lv[520];
            label_value(lv, sizeof lv, top[i]->name);
            line(b, "%s{queue=\"%s\"} %lld\n", series[s].name, lv, v);
        }
    }
    char help[128];
    snprintf(help, sizeof help, "Queues beyond the %d largest, which have no mpb_queue_* series.",
             METRICS_TOP_QUEUES);
    head(b, "mpb_queues_unlabelled", "gauge", help);
    line(b, "mpb_queues_unlabelled %zu\n", nq - ntop);
}

void metrics_render(mpb__buf_t *b) {
    head(b, "mpb_build_info", "gauge", "Always 1; the broker's version in the label.");
    line(b, "mpb_build_info{version=\"%s\"} 1\n", MPBROKER_VERSION);
    process_metrics(b);
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
            /* Every other bound (x4 apart, and the last): 14 lines an op instead of 26 keep a
             * scrape small; the counts stay exact, being cumulative. */
            if (k % 2 && k != METRICS_BUCKETS - 1) continue;
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
    line(b, "mpb_sessions %zu\n", sess_count());
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
    head(b, "mpb_sessions_refused_total", "counter",
         "New sessions refused at max-sessions or max-sessions-per-conn.");
    line(b, "mpb_sessions_refused_total %llu\n", (unsigned long long)g_sessions_refused);
    head(b, "mpb_http_deadline_closed_total", "counter",
         "HTTP connections closed for a request slower than its deadline.");
    line(b, "mpb_http_deadline_closed_total %llu\n", (unsigned long long)g_http_deadline_closed);
    head(b, "mpb_blocked_waiters", "gauge", "Requests parked in the broker.");
    line(b, "mpb_blocked_waiters %zu\n", waiter_count());
    head(b, "mpb_auth_failures_total", "counter", "Handshakes refused for a wrong authkey.");
    line(b, "mpb_auth_failures_total %llu\n", (unsigned long long)g_auth_failures);
    head(b, "mpb_connections", "gauge", "TCP and IPC connections open.");
    line(b, "mpb_connections %zu\n", transport_connections(server_transport()));
    head(b, "mpb_connections_closed_total", "counter",
         "Connections the broker closed: over a limit at accept, or idle without a session.");
    line(b, "mpb_connections_closed_total{reason=\"limit\"} %llu\n",
         (unsigned long long)g_conn_refused);
    line(b, "mpb_connections_closed_total{reason=\"idle\"} %llu\n",
         (unsigned long long)g_conn_idle_closed);
    head(b, "mpb_output_limit_closed_total", "counter",
         "Connections closed because their replies went unread past max-output.");
    line(b, "mpb_output_limit_closed_total %llu\n", (unsigned long long)g_output_closed);
    head(b, "mpb_curve_refused_total", "counter",
         "Encrypted handshakes refused: not under this authkey.");
    line(b, "mpb_curve_refused_total %llu\n", (unsigned long long)g_curve_denied);
    head(b, "mpb_bad_frames_total", "counter", "Frames refused before any request was read.");
    line(b, "mpb_bad_frames_total %llu\n", (unsigned long long)g_bad_frames);
    head(b, "mpb_frames_total", "counter", "ZeroMQ messages by direction.");
    line(b, "mpb_frames_total{direction=\"in\"} %llu\n", (unsigned long long)g_frames_in);
    line(b, "mpb_frames_total{direction=\"out\"} %llu\n", (unsigned long long)g_frames_out);
    head(b, "mpb_bytes_total", "counter", "Bytes by direction.");
    line(b, "mpb_bytes_total{direction=\"in\"} %llu\n", (unsigned long long)g_bytes_in);
    line(b, "mpb_bytes_total{direction=\"out\"} %llu\n", (unsigned long long)g_bytes_out);
    queue_metrics(b);
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
