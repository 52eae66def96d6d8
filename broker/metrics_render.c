/* metrics_render.c - the Prometheus text exposition of the broker's state and counters: the
 * one writer of it. Other modules hand it numbers (pool_totals(), pool_each_fn(),
 * persist_stats()); most series are rows of a table written by one loop. */
#include <dirent.h>
#include <fnmatch.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "persist.h"
#include "stream.h"

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

/* One sample: its series' HELP and TYPE first unless help is NULL (one more sample of the
 * series of the row before, told apart by label). */
typedef struct row {
    const char *name, *type, *help;
    const char *label; /* key="value", or NULL */
    uint64_t v;
} row_t;

static void rows(mpb__buf_t *b, const row_t *r, size_t n) {
    for (; n--; r++) {
        if (r->help) head(b, r->name, r->type, r->help);
        if (r->label)
            line(b, "%s{%s} %llu\n", r->name, r->label, (unsigned long long)r->v);
        else
            line(b, "%s %llu\n", r->name, (unsigned long long)r->v);
    }
}

/* A series of one value that need not be whole (seconds from milliseconds). */
typedef struct real {
    const char *name, *type, *help;
    double v;
} real_t;

static void reals(mpb__buf_t *b, const real_t *r, size_t n) {
    for (; n--; r++) {
        head(b, r->name, r->type, r->help);
        line(b, "%s %.17g\n", r->name, r->v);
    }
}

#define NROWS(a) (sizeof(a) / sizeof((a)[0]))

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void w_label(mpb__buf_t *b, const char *s, size_t n) {
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = s[i] == '\\'   ? "\\\\"
                          : s[i] == '"'  ? "\\\""
                          : s[i] == '\n' ? "\\n"
                                         : NULL;
        if (!esc) continue;
        mpb__w_raw(b, s + from, i - from);
        mpb__w_raw(b, esc, 2);
        from = i + 1;
    }
    mpb__w_raw(b, s + from, n - from);
}

/* name{key="VAL"MORE} n, VAL (a name a client chose) escaped, MORE more labels or "". */
static void labelled(mpb__buf_t *b, const char *name, const char *key, const char *val, size_t vlen,
                     const char *more, unsigned long long n) {
    line(b, "%s{%s=\"", name, key);
    w_label(b, val, vlen);
    line(b, "\"%s} %llu\n", more, n);
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
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
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
        head(b, "process_cpu_seconds_total", "counter",
             "User and system CPU time spent in seconds.");
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
 * mpb_queues_unlabelled counts the rest. An operator may name queues that always get one
 * (--metrics-queues, fnmatch patterns separated by commas), up to METRICS_NAMED_QUEUES of
 * them; the top rule ranks the others. */
#define METRICS_TOP_QUEUES   20
#define METRICS_NAMED_QUEUES 100

/* by size: items, and the clients blocked on it (an empty queue with many getters matters) */
static size_t queue_rank(const queue_t *q) {
    return q->items.len + q->getters.n + q->putters.n;
}

/* Whether name matches one of the comma-separated patterns of --metrics-queues. */
static bool queue_named(const char *name) {
    const char *pats = g_limits.metrics_queues;
    while (pats && *pats) {
        size_t n = strcspn(pats, ",");
        char pat[256];
        if (n && n < sizeof pat) {
            memcpy(pat, pats, n);
            pat[n] = 0;
            if (fnmatch(pat, name, 0) == 0) return true;
        }
        pats += n + (pats[n] == ',');
    }
    return false;
}

static void queue_metrics(mpb__buf_t *b) {
    const obj_t *top[METRICS_NAMED_QUEUES + METRICS_TOP_QUEUES];
    const obj_t **ranked = top + METRICS_NAMED_QUEUES;
    size_t nnamed = 0, ntop = 0, nq = 0;
    const omap_t *m = store_map();
    for (size_t i = 0; i < m->nents; i++) {
        const obj_t *o = m->ents[i].item;
        if (!o || o->kind != KIND_QUEUE) continue;
        nq++;
        if (nnamed < METRICS_NAMED_QUEUES && queue_named(o->name)) {
            top[nnamed++] = o;
            continue;
        }
        size_t rank = queue_rank(&o->u.queue), at = ntop;
        while (at > 0 && queue_rank(&ranked[at - 1]->u.queue) < rank)
            at--;
        if (at >= METRICS_TOP_QUEUES) continue;
        if (ntop < METRICS_TOP_QUEUES) ntop++;
        memmove(&ranked[at + 1], &ranked[at], (ntop - 1 - at) * sizeof *ranked);
        ranked[at] = o;
    }
    /* the named ones, then the largest of the rest: one run */
    memmove(top + nnamed, ranked, ntop * sizeof *top);
    ntop += nnamed;
    static const struct {
        const char *name, *help;
    } series[] = {
        {"mpb_queue_length",
         "Items in the queue (queues named by --metrics-queues, and the largest others only: "
         "see mpb_queues_unlabelled)."                                                 },
        {"mpb_queue_unfinished", "Items of a joinable queue put and not yet task_done."},
        {"mpb_queue_getters",    "Clients blocked in get on the queue."                },
        {"mpb_queue_putters",    "Clients blocked in put on the full queue."           },
    };
    for (size_t s = 0; s < sizeof series / sizeof *series; s++) {
        head(b, series[s].name, "gauge", series[s].help);
        for (size_t i = 0; i < ntop; i++) {
            const queue_t *q = &top[i]->u.queue;
            long long v = s == 0   ? (long long)q->items.len
                          : s == 1 ? (long long)q->unfinished
                          : s == 2 ? (long long)q->getters.n
                                   : (long long)q->putters.n;
            labelled(b, series[s].name, "queue", top[i]->name, top[i]->namelen, "",
                     (unsigned long long)v);
        }
    }
    char help[160];
    snprintf(help, sizeof help,
             "Queues beyond the %d largest (and those --metrics-queues names), which have no "
             "mpb_queue_* series.",
             METRICS_TOP_QUEUES);
    head(b, "mpb_queues_unlabelled", "gauge", help);
    line(b, "mpb_queues_unlabelled %zu\n", nq - ntop);
}

/* ---- the pool and persistence, from their numbers ---- */

static void pool_fn_tasks(void *ctx, const pool_fn_counts_t *c) {
    static const char *const states[] = {",state=\"queued\"", ",state=\"paused\"",
                                         ",state=\"running\"", ",state=\"prefetched\""};
    const uint64_t v[] = {c->queued, c->paused, c->running, c->prefetched};
    for (size_t i = 0; i < NROWS(v); i++)
        labelled(ctx, "mpb_pool_tasks", "function", c->name, c->namelen, states[i], v[i]);
}

static void pool_fn_finished(void *ctx, const pool_fn_counts_t *c) {
    static const char *const results[] = {",result=\"done\"", ",result=\"failed\"",
                                          ",result=\"canceled\""};
    const uint64_t v[] = {c->done, c->failed, c->canceled};
    for (size_t i = 0; i < NROWS(v); i++)
        labelled(ctx, "mpb_pool_tasks_finished_total", "function", c->name, c->namelen, results[i],
                 v[i]);
}

static void pool_metrics(mpb__buf_t *b) {
    pool_totals_t t;
    pool_totals(&t);
    const row_t workers[] = {
        {"mpb_pool_workers", "gauge", "Workers registered.", NULL, t.workers}
    };
    rows(b, workers, 1);
    head(b, "mpb_pool_tasks", "gauge",
         "Tasks by function and state (queued: waiting, paused: of those, waiting for their "
         "caller to collect results; running; prefetched: held by a worker beyond its "
         "concurrency).");
    pool_each_fn(pool_fn_tasks, b);
    head(b, "mpb_pool_tasks_finished_total", "counter", "Tasks finished by function and result.");
    pool_each_fn(pool_fn_finished, b);
    const row_t r[] = {
        {"mpb_pool_tasks_requeued_total",   "counter",
         "Tasks handed to another worker after theirs died.",                                        NULL, t.requeued          },
        {"mpb_pool_tasks_abandoned_total",  "counter", "Tasks failed after too many worker deaths.",
         NULL,                                                                                             t.abandoned         },
        {"mpb_pool_steals_total",           "counter",
         "Tasks an idle slot took from another worker's prefetch before it started them.",           NULL,
         t.steals                                                                                                              },
        {"mpb_pool_lease_refusals_total",   "counter",
         "pool.start refusals: the task had been handed to another worker.",                         NULL, t.refusals          },
        {"mpb_pool_tasks_killed_total",     "counter",
         "Running tasks whose worker was told to kill them (terminate, timeout, cancel, caller "
         "gone).",                                                                                   NULL, t.killed            },
        {"mpb_pool_callers_paused",         "gauge",
         "Callers whose results not taken exceed pool-max-results (their tasks wait).",              NULL,
         t.callers_paused                                                                                                      },
        {"mpb_pool_results_held_bytes",     "gauge",
         "Bytes of finished results waiting for their callers.",                                     NULL, t.results_held_bytes},
        {"mpb_pool_tasks_unfinished_bytes", "gauge",   "Bytes of tasks queued or running.",          NULL,
         t.unfinished_bytes                                                                                                    },
    };
    rows(b, r, NROWS(r));
}

static void persist_metrics(mpb__buf_t *b) {
    persist_stats_t st;
    persist_stats(&st);
    const real_t on[] = {
        {"mpb_persist_enabled", "gauge", "1 when the state is logged to disk", st.on}
    };
    reals(b, on, 1);
    if (!st.on) return;
    const real_t r[] = {
        {"mpb_persist_log_bytes",                       "gauge",   "Bytes in the log since the last snapshot",
         (double)st.log_bytes                                                                                                                        },
        {"mpb_persist_last_fsync_timestamp_seconds",    "gauge",
         "When the log was last fsynced (Unix time)",                                                          (double)st.last_fsync_unix_ms / 1000.0},
        {"mpb_persist_fsyncs_total",                    "counter", "fsyncs of the log",                        (double)st.fsyncs                     },
        {"mpb_persist_writes_total",                    "counter", "write() calls on the log",                 (double)st.writes                     },
        {"mpb_persist_snapshot_bytes",                  "gauge",   "Size of the last snapshot",                (double)st.snap_bytes                 },
        {"mpb_persist_last_snapshot_timestamp_seconds", "gauge",
         "When the last snapshot was finished (Unix time; 0: none in this run)",                               (double)st.last_snap_ms / 1000.0      },
        {"mpb_persist_last_snapshot_duration_seconds",  "gauge",   "How long the last snapshot took",
         (double)st.last_snap_dur_ms / 1000.0                                                                                                        },
        {"mpb_persist_snapshots_failed_total",          "counter", "Snapshots that failed",
         (double)st.snaps_failed                                                                                                                     },
    };
    reals(b, r, NROWS(r));
}

/* Requests by op and result, and their durations. */
static void request_metrics(mpb__buf_t *b) {
    head(b, "mpb_requests_total", "counter", "Requests by op and result.");
    for (unsigned op = 0; op < MPB__OP_MAX; op++) {
        const op_stats_t *s = &g_op_stats[op];
        const char *name = op ? mpb__op_name(op) : "unknown";
        if (!name) continue;
        if (s->ok)
            line(b, "mpb_requests_total{op=\"%s\",result=\"ok\"} %llu\n", name,
                 (unsigned long long)s->ok);
        for (int e = 1; e < 64; e++) {
            if (!s->err[e]) continue;
            const char *en = mpb__err_name(e);
            line(b, "mpb_requests_total{op=\"%s\",result=\"%s\"} %llu\n", name, en ? en : "EOTHER",
                 (unsigned long long)s->err[e]);
        }
    }
    head(b, "mpb_request_duration_seconds", "histogram",
         "Time from a request to its answer in the broker, by op; a parked request "
         "(queue.get, lock.acquire, ...) counts its wait too.");
    for (unsigned op = 1; op < MPB__OP_MAX; op++) {
        const op_stats_t *s = &g_op_stats[op];
        const char *name = mpb__op_name(op);
        uint64_t total = 0;
        for (int k = 0; k <= METRICS_BUCKETS; k++)
            total += s->lat[k];
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
}

void metrics_render(mpb__buf_t *b) {
    head(b, "mpb_build_info", "gauge", "Always 1; the broker's version in the label.");
    line(b, "mpb_build_info{version=\"%s\"} 1\n", MPBROKER_VERSION);
    process_metrics(b);
    const row_t top[] = {
        {"mpb_up",             "gauge", "1 while the broker runs.",          NULL, 1                     },
        {"mpb_ready",          "gauge",
         "1 while the broker accepts clients (as /readyz; no data to load: persistence is not "
         "implemented yet).",                                                NULL, server_ready() ? 1 : 0},
        {"mpb_uptime_seconds", "gauge", "Seconds since the broker started.", NULL,
         (uint64_t)((now_ms() - g_started_ms) / 1000)                                                    },
    };
    rows(b, top, NROWS(top));
    request_metrics(b);

    head(b, "mpb_objects", "gauge", "Objects by kind.");
    for (int k = 1; k < KIND__N; k++)
        line(b, "mpb_objects{kind=\"%s\"} %zu\n", kind_name((kind_t)k),
             store_count_kind((kind_t)k));
    const row_t r[] = {
        {"mpb_clients",                    "gauge",   "Authenticated connections.",                                    NULL,                server_peer_count()},
        {"mpb_sessions",                   "gauge",   "Client sessions.",                                              NULL,                sess_count()       },
        {"mpb_anonymous_objects",          "gauge",   "Anonymous objects (made by obj.new).",                          NULL,
         anon_count()                                                                                                                                          },
        {"mpb_anonymous_refs",             "gauge",   "References sessions hold on anonymous objects.",                NULL,
         (uint64_t)anon_refs_total()                                                                                                                           },
        {"mpb_anonymous_deleted_total",    "counter",
         "Anonymous objects deleted after their last reference went.",                                                 NULL,                g_anon_deleted     },
        {"mpb_sessions_expired_total",     "counter", "Sessions ended by missing heartbeats.",                         NULL,
         g_sessions_expired                                                                                                                                    },
        {"mpb_max_memory_bytes",           "gauge",   "--max-memory (0: none).",                                       NULL,                g_limits.max_memory},
        {"mpb_memory_low",                 "gauge",   "1 while an allocation failure makes the broker refuse growth.",
         NULL,                                                                                                                              mem_low() ? 1 : 0  },
        {"mpb_oom_refused_total",          "counter",
         "Requests refused with ENOMEM: they would grow memory.",                                                      NULL,                g_oom_refused      },
        {"mpb_queue_redelivered_total",    "counter",
         "Items a reliable queue took back because their taker's session ended.",                                      NULL,
         g_redelivered                                                                                                                                         },
        {"mpb_replies_replayed_total",     "counter",
         "Requests sent again after a cut, answered from the reply cache.",                                            NULL,                g_replayed         },
        {"mpb_sessions_refused_total",     "counter",
         "New sessions refused at max-sessions or max-sessions-per-conn.",                                             NULL,
         g_sessions_refused                                                                                                                                    },
        {"mpb_http_deadline_closed_total", "counter",
         "HTTP connections closed for a request slower than its deadline.",                                            NULL,
         g_http_deadline_closed                                                                                                                                },
        {"mpb_blocked_waiters",            "gauge",   "Requests parked in the broker.",                                NULL,                waiter_count()     },
        {"mpb_auth_failures_total",        "counter", "Handshakes refused for a wrong authkey.",                       NULL,
         g_auth_failures                                                                                                                                       },
        {"mpb_connections",                "gauge",   "TCP and IPC connections open.",                                 NULL,
         transport_connections(server_transport()) + stream_count()                                                                                            },
        {"mpb_connections_closed_total",   "counter",
         "Connections the broker closed: over a limit at accept, or idle without a session.",                          "reason=\"limit\"",  g_conn_refused     },
        {"mpb_connections_closed_total",   NULL,      NULL,                                                            "reason=\"idle\"",   g_conn_idle_closed },
        {"mpb_output_limit_closed_total",  "counter",
         "Connections closed because their replies went unread past max-output.",                                      NULL,
         g_output_closed                                                                                                                                       },
        {"mpb_curve_refused_total",        "counter",
         "Encrypted handshakes refused: not under this authkey.",                                                      NULL,                g_curve_denied     },
        {"mpb_bad_frames_total",           "counter", "Frames refused before any request was read.",                   NULL,
         g_bad_frames                                                                                                                                          },
        {"mpb_frames_total",               "counter", "ZeroMQ messages by direction.",                                 "direction=\"in\"",
         g_frames_in                                                                                                                                           },
        {"mpb_frames_total",               NULL,      NULL,                                                            "direction=\"out\"", g_frames_out       },
        {"mpb_bytes_total",                "counter", "Bytes by direction.",                                           "direction=\"in\"",  g_bytes_in         },
        {"mpb_bytes_total",                NULL,      NULL,                                                            "direction=\"out\"", g_bytes_out        },
    };
    rows(b, r, NROWS(r));
    queue_metrics(b);
    pool_metrics(b);
    persist_metrics(b);
    struct mallinfo2 mi = mallinfo2();
    const row_t end[] = {
        {"mpb_memory_bytes",        "gauge", "Heap bytes in use by the broker.", NULL,
         mi.uordblks + mi.hblkhd                                                        },
 /* Persistence is not built yet: say so plainly rather than omit it. */
        {"mpb_persistence_enabled", "gauge",
         "1 when mutations are logged to disk. Always 0: persistence is not implemented yet, "
         "all state is in memory and lost when the broker stops.",               NULL, 0},
    };
    rows(b, end, NROWS(end));
}
