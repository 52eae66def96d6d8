/* th_pool.c - the pool tests' part of the harness: workers, pool.stats readers, msgpack
 * builders and the per-test broker fixtures (th_pool.h says what each does). */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "th_pool.h"
#include "mpbproto.h"

th_broker_t tp_broker;

/* ---- worker processes ---- */

static pid_t wpids[64];
static int nwpids;

void tp_track(pid_t pid) {
    if (pid > 0 && nwpids < 64) wpids[nwpids++] = pid;
}

void tp_child_prepare(const char *tag) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char log[400];
    snprintf(log, sizeof log, "%s/%s-%d.log", tp_broker.dir, tag, (int)getpid());
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
    }
}

const char *tp_worker_init_arg;
const char *tp_worker_isolate;
bool tp_worker_forward;

pid_t tp_start_worker(const char *lib, const char *fns, int conc, int prefetch,
                      unsigned long max_tasks, const char *init) {
    char sconc[16], spre[16], smax[24];
    snprintf(sconc, sizeof sconc, "%d", conc);
    snprintf(spre, sizeof spre, "%d", prefetch);
    snprintf(smax, sizeof smax, "%lu", max_tasks);
    /* each flag with its value, in this order; a NULL value leaves the flag out */
    const char *flags[][2] = {
        {"--lib",         lib                        },
        {"--fn",          fns                        },
        {"--concurrency", sconc                      },
        {"--prefetch",    prefetch >= 0 ? spre : NULL}, /* < 0: the default */
        {"-e",            tp_broker.endpoint         },
        {"-k",            tp_broker.keyfile          },
        {"--max-tasks",   max_tasks ? smax : NULL    },
        {"--init",        init                       },
        {"--init-arg",    tp_worker_init_arg         },
        {"--isolate",     tp_worker_isolate          },
    };
    const char *argv[24] = {MPB_WORKER_PATH};
    int argc = 1;
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (!flags[i][1]) continue;
        argv[argc++] = flags[i][0];
        argv[argc++] = flags[i][1];
    }
    if (tp_worker_forward) argv[argc++] = "--forward-output";
    argv[argc] = NULL;
    pid_t pid = th_fork_bare();
    if (pid == 0) {
        tp_child_prepare("mpb-worker");
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    setpgid(pid, pid);
    tp_track(pid);
    return pid;
}

void tp_gate_open(tp_gate_t *g) {
    if (pipe(g->fd) != 0) fail_msg("pipe: %s", strerror(errno));
}

void tp_gate_release(tp_gate_t *g) {
    if (write(g->fd[1], "g", 1) != 1) fail_msg("gate: %s", strerror(errno));
}

void tp_gate_close(tp_gate_t *g) {
    close(g->fd[0]);
    close(g->fd[1]);
}

pid_t tp_start_child(int (*fn)(void *arg), void *arg, tp_gate_t *gate) {
    pid_t pid = th_fork_bare();
    if (pid == 0) {
        tp_child_prepare("child");
        if (gate) {
            char ch;
            close(gate->fd[1]);
            if (read(gate->fd[0], &ch, 1) != 1) _exit(99);
            close(gate->fd[0]);
        }
        _exit(fn(arg));
    }
    setpgid(pid, pid);
    tp_track(pid);
    return pid;
}

static void untrack(pid_t pid) {
    for (int i = 0; i < nwpids; i++)
        if (wpids[i] == pid) {
            wpids[i] = wpids[--nwpids];
            return;
        }
}

void tp_kill_worker(pid_t pid) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    th_wait(pid, 10);
    untrack(pid);
}

int tp_wait_child(pid_t pid, int timeout_s) {
    int st = th_wait(pid, timeout_s);
    kill(-pid, SIGKILL); /* anything it left behind */
    untrack(pid);
    return st;
}

int tp_stop_all_workers(void) {
    int bad = 0;
    for (int i = 0; i < nwpids; i++)
        kill(wpids[i], SIGTERM);
    while (nwpids)
        bad += tp_wait_child(wpids[nwpids - 1], 10) != 0;
    return bad;
}

static void tp_kill_all_workers(void) {
    while (nwpids)
        tp_kill_worker(wpids[nwpids - 1]);
}

/* ---- msgpack ---- */

void tp_items_range(mpb__buf_t *b, uint32_t n) {
    mpb__buf_reset(b);
    mpb__w_array(b, n);
    for (uint32_t i = 0; i < n; i++)
        mpb__w_int(b, i);
}

const uint8_t *tp_args1(int64_t x, size_t *len) {
    static uint8_t bufs[4][12];
    static int k;
    uint8_t *b = bufs[k++ & 3];
    b[0] = 0x91;
    *len = 1 + mpb_pack_i64(b + 1, x);
    return b;
}

long tp_check_ints(const void *res, size_t len, uint32_t n, int64_t (*f)(int64_t)) {
    mpb__rd_t r = {res, (const uint8_t *)res + len};
    uint32_t m;
    if (mpb__rd_array(&r, &m) || m != n) return -2;
    for (uint32_t i = 0; i < n; i++) {
        int64_t v;
        if (mpb__rd_int(&r, &v) || v != f(i)) return (long)i;
    }
    return r.p == r.end ? -1 : -2;
}

int64_t tp_sq(int64_t x) {
    return x * x;
}

int64_t tp_unpack_int(const void *v, size_t n) {
    int64_t x = INT64_MIN;
    if (mpb_unpack_i64(v, n, &x)) return INT64_MIN;
    return x;
}

/* ---- pool.stats and pool.fninfo ---- */

static int64_t map_int(const mpb__rd_t *m, const char *key) {
    mpb__rd_t v;
    int64_t x = -1;
    if (mpb__rd_mapget(m, key, &v) == 0) mpb__rd_int(&v, &x);
    return x;
}

/* A counter of a stats entry: its key, and where its 8-byte integer member lies. */
typedef struct {
    const char *key;
    size_t off;
} stat_field_t;
#define STAT_FIELD(type, member)                                                                   \
    { #member, offsetof(type, member) }

/* The counters fields[0..n) of the entry m into the struct at out (-1 where one is absent). */
static void read_fields(const mpb__rd_t *m, void *out, const stat_field_t *fields, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int64_t x = map_int(m, fields[i].key);
        memcpy((char *)out + fields[i].off, &x, sizeof x);
    }
}

/* pool.stats in a new buffer. */
static void *stats_get(mpb_client_t *c, size_t *len) {
    void *res = NULL;
    int rc = mpb_call(c, MPB_OP_POOL_STATS, NULL, NULL, 0, 0, &res, len);
    if (rc) fail_msg("pool.stats: %s", mpb_errmsg(c));
    return res;
}

/* pool.stats in *res (mpb_free it), and in *v a reader on the array under field, at its first
 * entry (stats_entry() takes each); returns how many entries it has (0 when it is absent). */
static uint32_t stats_array(mpb_client_t *c, const char *field, void **res, mpb__rd_t *v) {
    size_t len;
    *res = stats_get(c, &len);
    mpb__rd_t r = {*res, (const uint8_t *)*res + len};
    uint32_t n;
    if (mpb__rd_mapget(&r, field, v) || mpb__rd_array(v, &n)) return 0;
    return n;
}

/* A reader on the next entry of a stats_array() reader v. */
static mpb__rd_t stats_entry(mpb__rd_t *v) {
    const uint8_t *e;
    size_t el;
    mpb__rd_span(v, &e, &el);
    return (mpb__rd_t){e, e + el};
}

static const stat_field_t fn_fields[] = {
    STAT_FIELD(tp_fnstat_t, workers),    STAT_FIELD(tp_fnstat_t, queued),
    STAT_FIELD(tp_fnstat_t, running),    STAT_FIELD(tp_fnstat_t, done),
    STAT_FIELD(tp_fnstat_t, failed),     STAT_FIELD(tp_fnstat_t, paused),
    STAT_FIELD(tp_fnstat_t, prefetched), STAT_FIELD(tp_fnstat_t, canceled),
};

tp_fnstat_t tp_fn_stat(mpb_client_t *c, const char *fn) {
    tp_fnstat_t s = {0};
    void *res;
    mpb__rd_t v;
    uint32_t n = stats_array(c, "functions", &res, &v);
    for (uint32_t i = 0; i < n; i++) {
        mpb__rd_t m = stats_entry(&v), nv;
        const char *name;
        uint32_t nl;
        if (mpb__rd_mapget(&m, "name", &nv) || mpb__rd_str(&nv, &name, &nl)) continue;
        if (nl != strlen(fn) || memcmp(name, fn, nl)) continue;
        read_fields(&m, &s, fn_fields, sizeof fn_fields / sizeof fn_fields[0]);
    }
    mpb_free(res);
    return s;
}

static const stat_field_t worker_fields[] = {
    STAT_FIELD(tp_wstat_t, running), STAT_FIELD(tp_wstat_t, prefetched),
    STAT_FIELD(tp_wstat_t, session), STAT_FIELD(tp_wstat_t, concurrency),
    STAT_FIELD(tp_wstat_t, done),    STAT_FIELD(tp_wstat_t, failed),
    STAT_FIELD(tp_wstat_t, steals),  STAT_FIELD(tp_wstat_t, stolen),
    STAT_FIELD(tp_wstat_t, retries), STAT_FIELD(tp_wstat_t, refused),
};

/* The first running task of a worker entry: [task_id, age_ms] (oldest_age -1: none). */
static void worker_tasks(const mpb__rd_t *m, void *out) {
    tp_wstat_t *w = out;
    w->oldest_age = -1;
    mpb__rd_t tv;
    uint32_t two;
    if (!mpb__rd_mapget(m, "tasks", &tv) && !mpb__rd_array(&tv, &w->ntasks) && w->ntasks &&
        !mpb__rd_array(&tv, &two) && two == 2) {
        uint64_t id;
        mpb__rd_uint(&tv, &id);
        mpb__rd_int(&tv, &w->oldest_age);
    }
}

/* A caller entry's paused flag. */
static void caller_paused(const mpb__rd_t *m, void *out) {
    mpb__rd_t pv;
    if (mpb__rd_mapget(m, "paused", &pv) == 0) mpb__rd_bool(&pv, &((tp_cstat_t *)out)->paused);
}

/* The entry of pool.stats' array field whose key is want: its counters (fields) and then
 * whatever more() reads go to out, zeroed first. 1 found, 0 not. */
static int stats_find(mpb_client_t *c, const char *field, const char *key, int64_t want, void *out,
                      size_t size, const stat_field_t *fields, size_t nfields,
                      void (*more)(const mpb__rd_t *m, void *out)) {
    memset(out, 0, size);
    void *res;
    mpb__rd_t v;
    uint32_t n = stats_array(c, field, &res, &v);
    int found = 0;
    for (uint32_t i = 0; i < n; i++) {
        mpb__rd_t m = stats_entry(&v);
        if (map_int(&m, key) != want) continue;
        read_fields(&m, out, fields, nfields);
        more(&m, out);
        found = 1;
    }
    mpb_free(res);
    return found;
}

int tp_worker_stat(mpb_client_t *c, pid_t pid, tp_wstat_t *out) {
    return stats_find(c, "workers", "pid", pid, out, sizeof *out, worker_fields,
                      sizeof worker_fields / sizeof worker_fields[0], worker_tasks);
}

static const stat_field_t caller_fields[] = {
    STAT_FIELD(tp_cstat_t, queued),     STAT_FIELD(tp_cstat_t, running),
    STAT_FIELD(tp_cstat_t, held),       STAT_FIELD(tp_cstat_t, queued_bytes),
    STAT_FIELD(tp_cstat_t, held_bytes),
};

int tp_caller_stat(mpb_client_t *c, uint64_t sid, tp_cstat_t *out) {
    return stats_find(c, "callers", "session", (int64_t)sid, out, sizeof *out, caller_fields,
                      sizeof caller_fields / sizeof caller_fields[0], caller_paused);
}

uint32_t tp_stats_count(mpb_client_t *c, const char *field) {
    void *res;
    mpb__rd_t v;
    uint32_t n = stats_array(c, field, &res, &v);
    mpb_free(res);
    return n;
}

uint32_t tp_fns_count(mpb_client_t *c) {
    return tp_stats_count(c, "functions");
}

uint32_t tp_jobs_count(mpb_client_t *c) {
    return tp_stats_count(c, "jobs");
}

uint64_t tp_fn_workers(mpb_client_t *c, const char *fn) {
    mpb__buf_t a = {0};
    mpb__w_array(&a, 1);
    mpb__w_cstr(&a, fn);
    void *res = NULL;
    size_t len;
    int rc = mpb_call(c, MPB_OP_POOL_FNINFO, NULL, a.p, a.len, 0, &res, &len);
    mpb__buf_free(&a);
    if (rc) fail_msg("pool.fninfo: %s", mpb_errmsg(c));
    mpb__rd_t r = {res, (const uint8_t *)res + len};
    uint32_t six;
    uint64_t w = 0;
    if (mpb__rd_array(&r, &six) == 0 && six >= 6) mpb__rd_uint(&r, &w);
    mpb_free(res);
    return w;
}

void tp_wait_workers(mpb_client_t *c, const char *fn, uint64_t n, int timeout_ms) {
    int64_t end = th_now_ms() + timeout_ms;
    uint64_t w;
    while ((w = tp_fn_workers(c, fn)) < n) {
        if (th_now_ms() > end) {
            char why[512] = "";
            size_t k = 0;
            for (int i = 0; i < nwpids && k < sizeof why - 64; i++) {
                int st;
                if (waitpid(wpids[i], &st, WNOHANG) == wpids[i]) {
                    k += (size_t)snprintf(why + k, sizeof why - k, "; worker %d exited with %d",
                                          (int)wpids[i],
                                          WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
                    wpids[i--] = wpids[--nwpids];
                }
            }
            fail_msg("%llu of %llu workers for %s after %d ms%s", (unsigned long long)w,
                     (unsigned long long)n, fn, timeout_ms, why);
        }
        usleep(10000);
    }
}

mpb_pool_t *tp_pool_ready(mpb_client_t *watch, const char *fn, uint64_t n, mpb_client_t *c) {
    tp_wait_workers(watch, fn, n, 10000);
    mpb_pool_t *p;
    assert_int_equal(mpb_pool_open(c, &p), 0);
    return p;
}

/* ---- callbacks that count ---- */

void tp_tally_ok(void *arg, const void *res, size_t len) {
    (void)res;
    (void)len;
    ((tp_tally_t *)arg)->ok++;
}

void tp_tally_err(void *arg, int err, const char *msg) {
    (void)msg;
    tp_tally_t *t = arg;
    if (err == MPB_ECANCELED)
        t->canceled++;
    else
        t->other++;
}

/* ---- raw pool ops, for what the library does not expose ---- */

int tp_raw_submit(mpb_client_t *c, const char *fn, int mode, uint64_t job, uint32_t ntasks,
                  int64_t x, uint64_t *job_out, uint64_t *first) {
    mpb__buf_t a = {0};
    mpb__w_array(&a, 3);
    mpb__w_cstr(&a, fn);
    if (mode == TP_JOB_NIL)
        mpb__w_nil(&a);
    else if (mode == TP_JOB_FALSE)
        mpb__w_bool(&a, false);
    else
        mpb__w_uint(&a, job);
    mpb__w_array(&a, ntasks);
    for (uint32_t i = 0; i < ntasks; i++) {
        mpb__w_array(&a, 1);
        mpb__w_array(&a, 1);
        mpb__w_int(&a, x);
    }
    void *res = NULL;
    size_t len = 0;
    int rc = mpb_call(c, MPB_OP_POOL_SUBMIT, NULL, a.p, a.len, 0, &res, &len);
    mpb__buf_free(&a);
    if (rc == 0) {
        mpb__rd_t r = {res, (const uint8_t *)res + len};
        uint32_t two;
        uint64_t j = 0, f = 0;
        if (mpb__rd_array(&r, &two) || two != 2 || mpb__rd_uint(&r, &j) || mpb__rd_uint(&r, &f))
            fail_msg("malformed pool.submit reply");
        if (job_out) *job_out = j;
        if (first) *first = f;
        mpb_free(res);
    }
    return rc;
}

uint32_t tp_raw_take(mpb_client_t *c) {
    mpb__buf_t a = {0};
    mpb__w_array(&a, 3);
    mpb__w_uint(&a, 1);
    mpb__w_uint(&a, UINT64_MAX - 1);
    mpb__w_int(&a, 0);
    void *res = NULL;
    size_t len = 0;
    int rc = mpb_call(c, MPB_OP_POOL_TAKE, NULL, a.p, a.len, 0, &res, &len);
    mpb__buf_free(&a);
    if (rc == MPB_ETIMEDOUT) return 0;
    if (rc) fail_msg("pool.take: %s", mpb_errmsg(c));
    mpb__rd_t r = {res, (const uint8_t *)res + len};
    uint32_t n = 0;
    mpb__rd_array(&r, &n);
    mpb_free(res);
    return n;
}

/* ---- task counters and running tasks ---- */

uint32_t *tp_counts_file(const char *name, uint32_t n) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", tp_broker.dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)(n * sizeof(uint32_t))), 0);
    uint32_t *m = mmap(NULL, n * sizeof(uint32_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(m != MAP_FAILED);
    close(fd);
    setenv("MPB_TEST_COUNTS", path, 1);
    return m;
}

void tp_wait_running(mpb_client_t *mon, pid_t w) {
    tp_wstat_t ws = {0};
    int64_t end = th_now_ms() + 10000;
    while (!(tp_worker_stat(mon, w, &ws) && ws.running == 1 && ws.ntasks == 1)) {
        if (th_now_ms() > end) fail_msg("worker %d never ran the task", (int)w);
        usleep(5000);
    }
}

int tp_cli_map_output(const char *fn, const char *items, char *err, size_t n) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "'%s' -e '%s' -k '%s' pool map %s '%s' --output 2>&1 >/dev/null",
             th_mpb_cli, tp_broker.endpoint, tp_broker.keyfile, fn, items);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t k = fread(err, 1, n - 1, f);
    err[k] = 0;
    return pclose(f);
}

/* ---- /metrics, from a broker started with --http 127.0.0.1:0 ---- */

char *tp_metrics_get(void) {
    int port = th_http_port(&tp_broker);
    if (port <= 0) fail_msg("no HTTP address in %s/data/http.addr", tp_broker.dir);
    char *buf = th_http_request(port, "GET", "/metrics");
    char *body = strstr(buf, "\r\n\r\n");
    if (!body) fail_msg("no HTTP response from port %d", port);
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

void tp_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---- the end of every test: the broker is alive and serves a well-behaved client ---- */

void tp_check_healthy(void) {
    assert_true(th_broker_alive(&tp_broker));
    mpb_client_t *c = th_connect(&tp_broker);
    pid_t w = tp_start_worker(MPB_DEMO_LIB, "square", 2, 1, 0, NULL);
    mpb_pool_t *p = tp_pool_ready(c, "square", 1, c);
    mpb__buf_t items = {0};
    tp_items_range(&items, 300);
    void *res = NULL;
    size_t rlen;
    int rc = mpb_pool_map(p, "square", items.p, items.len, 7, 20000, &res, &rlen);
    if (rc) fail_msg("map at the end: %s", mpb_errmsg(c));
    assert_int_equal(tp_check_ints(res, rlen, 300, tp_sq), -1);
    mpb_free(res);
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "health", &d), 0);
    int64_t v = 0;
    assert_int_equal(mpb_dict_incr_str(d, "n", 41, NULL), 0);
    assert_int_equal(mpb_dict_incr_str(d, "n", 1, &v), 0);
    assert_int_equal(v, 42);
    mpb_dict_close(&d);
    mpb_close(&c);
    tp_kill_worker(w);
    assert_true(th_broker_alive(&tp_broker));
}

/* ---- per-test fixtures ---- */

int tp_setup_broker(void **state) {
    (void)state;
    th_broker_start(&tp_broker, NULL);
    return 0;
}

double tp_pool_metric(const char *series) {
    char *page = th_http_request(th_http_port(&tp_broker), "GET", "/metrics");
    double v = th_metric(page, series, -1);
    free(page);
    return v;
}

int tp_setup_http_broker(void **state) {
    (void)state;
    th_broker_start(&tp_broker, "--http", "127.0.0.1:0", NULL);
    return 0;
}

int tp_setup_fast_broker(void **state) {
    (void)state;
    th_broker_start(&tp_broker, "--heartbeat-ms", "200", "--session-ttl-ms", "1000", NULL);
    return 0;
}

/* Fails the test if a worker's log (in the broker's directory) holds a sanitizer report. */
static void check_worker_logs(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "cat %s/mpb-worker-*.log %s/child-*.log 2>/dev/null | "
             "grep -E 'Sanitizer|runtime error' >&2",
             tp_broker.dir, tp_broker.dir);
    if (system(cmd) == 0) fail_msg("a worker's log in %s has a sanitizer report", tp_broker.dir);
}

int tp_teardown_broker(void **state) {
    (void)state;
    tp_stop_all_workers();
    tp_kill_all_workers();
    check_worker_logs();
    th_broker_stop_checked(&tp_broker);
    return 0;
}
