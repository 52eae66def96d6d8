/* test_ops_metrics.c - the operator's HTTP endpoint of a real mpbrokerd (--http 127.0.0.1:0):
 * /metrics scraped before and after known workloads, its values checked exactly:
 *   - 7 dict.set, 3 dict.get of missing keys, one client with a wrong key;
 *   - objects of several kinds made and one deleted: mpb_objects by kind;
 *   - 5 requests parked (3 queue.get, 2 event.wait, by mpb CLI processes): mpb_blocked_waiters
 *     5, then 0 once they are answered;
 *   - a queue.get that times out: counted with its ETIMEDOUT result;
 *   - a real mpb-worker (concurrency 1, no prefetch): a map of square with one failing item,
 *     fail(), and sleep_ms tasks seen queued and running: the pool's per-function counts;
 *   - every latency histogram: buckets grow with le, +Inf == _count == the op's requests;
 * and every scrape passes this file's own parser and `promtool check metrics` (from Debian's
 * prometheus package, unpacked into a cache by tests/ops/get_promtool.sh, never installed).
 * Also /healthz, /readyz, an unknown path and a wrong method; the HTTP address file the broker
 * writes (DATA_DIR/http.addr); and the image's health probe (tools/mpb-healthcheck.c, built
 * here as mpb_healthcheck) against the same broker, by flag, $MPB_HTTP and that file. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "th.h"

static th_broker_t B;
static int http_port;
static char promtool[1024]; /* its path, found in setup */
static pid_t kids[8];       /* processes a failed test left running: the teardown kills them */
static int nkids;

/* ---- a small HTTP/1.0 client ---- */

typedef struct resp {
    int status;
    char head[2048];
    char *body; /* malloc'd, NUL-terminated */
} resp_t;

static void http_req(const char *method, const char *path, resp_t *r) {
    memset(r, 0, sizeof *r);
    char *buf = th_http_request(http_port, method, path);
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep) fail_msg("no end of HTTP header in: %.200s", buf);
    *sep = 0;
    snprintf(r->head, sizeof r->head, "%s", buf);
    if (sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) fail_msg("bad status line: %.100s", buf);
    r->body = strdup(sep + 4);
    free(buf);
}

static void resp_free(resp_t *r) {
    free(r->body);
    r->body = NULL;
}

static void expect(const char *text, const char *series, double want) {
    double got = th_metric(text, series, -1);
    if (got != want) {
        fprintf(stderr, "---- /metrics ----\n%s------------------\n", text);
        fail_msg("%s is %g, want %g", series, got, want);
    }
}

/* Every line is a "# HELP", a "# TYPE" or a sample of a metric that has both. */
static void check_format(const char *text) {
    regex_t sample_re, help_re, type_re;
    assert_int_equal(regcomp(&sample_re,
                             "^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
                             "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? "
                             "(-?[0-9.eE+-]+|\\+Inf|NaN)$",
                             REG_EXTENDED),
                     0);
    assert_int_equal(regcomp(&help_re, "^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$", REG_EXTENDED), 0);
    assert_int_equal(
        regcomp(&type_re,
                "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$",
                REG_EXTENDED),
        0);
    char *copy = strdup(text), *save = NULL;
    int lines = 0;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save), lines++) {
        regmatch_t m[2];
        if (!regexec(&help_re, l, 2, m, 0) || !regexec(&type_re, l, 2, m, 0)) continue;
        if (regexec(&sample_re, l, 2, m, 0)) fail_msg("not a Prometheus text line: '%s'", l);
        /* its metric (without _bucket/_sum/_count) has a TYPE line */
        char name[128], want[160];
        snprintf(name, sizeof name, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), l + m[1].rm_so);
        snprintf(want, sizeof want, "# TYPE %s ", name);
        if (!strstr(text, want)) {
            char *suf = NULL;
            const char *sufs[] = {"_bucket", "_sum", "_count"};
            for (int i = 0; i < 3 && !suf; i++) {
                size_t nl = strlen(name), sl = strlen(sufs[i]);
                if (nl > sl && !strcmp(name + nl - sl, sufs[i])) suf = name + nl - sl;
            }
            if (suf) *suf = 0;
            snprintf(want, sizeof want, "# TYPE %s histogram", name);
            if (!suf || !strstr(text, want)) fail_msg("sample without a # TYPE: '%s'", l);
        }
    }
    assert_true(lines > 20);
    free(copy);
    regfree(&sample_re);
    regfree(&help_re);
    regfree(&type_re);
}

/* The sum of every sample of metric whose labels contain label (e.g. op="dict.get"). */
static double sum_of(const char *text, const char *metric, const char *label) {
    double sum = 0;
    size_t n = strlen(metric);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, metric, n) || p[n] != '{') continue;
        const char *close = strchr(p, '}'), *at = strstr(p, label);
        if (close && at && at < close) sum += strtod(close + 1, NULL);
    }
    return sum;
}

/* Every op's latency histogram: le grows, the counts never shrink, +Inf is the last bucket and
 * equals _count, _sum is not negative, and _count is the op's requests of every result. */
static void check_histograms(const char *text) {
    const char *pre = "mpb_request_duration_seconds_bucket{op=\"";
    char op[64] = "";
    double last_le = -1, last_v = -1;
    int hists = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, pre, strlen(pre))) continue;
        const char *o = p + strlen(pre), *q = strchr(o, '"');
        assert_non_null(q);
        char cur[64];
        snprintf(cur, sizeof cur, "%.*s", (int)(q - o), o);
        if (strcmp(cur, op)) { /* a new op: the one before ended with +Inf */
            if (op[0] && last_le != 1e300) fail_msg("%s: histogram without a +Inf bucket", op);
            snprintf(op, sizeof op, "%s", cur);
            last_le = -1, last_v = -1;
            hists++;
        }
        if (strncmp(q, "\",le=\"", 6)) fail_msg("bucket line without le: %.120s", p);
        const char *le = q + 6;
        double lv = !strncmp(le, "+Inf\"", 5) ? 1e300 : strtod(le, NULL);
        double v = strtod(strchr(le, '}') + 1, NULL);
        if (lv <= last_le) fail_msg("%s: le %g after %g", op, lv, last_le);
        if (v < last_v)
            fail_msg("%s: bucket le=%g holds %g < %g of the one before", op, lv, v, last_v);
        last_le = lv, last_v = v;
        if (lv == 1e300) {
            char series[160], label[96];
            snprintf(series, sizeof series, "mpb_request_duration_seconds_count{op=\"%s\"}", op);
            double count = th_metric(text, series, -1);
            if (count != v) fail_msg("%s: +Inf bucket %g != _count %g", op, v, count);
            snprintf(series, sizeof series, "mpb_request_duration_seconds_sum{op=\"%s\"}", op);
            if (!(th_metric(text, series, -1) >= 0)) fail_msg("%s: _sum missing or negative", op);
            snprintf(label, sizeof label, "op=\"%s\"", op);
            double reqs = sum_of(text, "mpb_requests_total", label);
            if (reqs != count)
                fail_msg("%s: %g requests counted by result, %g in its latency histogram", op, reqs,
                         count);
        }
    }
    if (op[0] && last_le != 1e300) fail_msg("%s: histogram without a +Inf bucket", op);
    (void)hists;
}

/* promtool: $MPB_PROMTOOL, promtool on PATH, or the one get_promtool.sh unpacks into the test
 * cache (it fetches it there if need be). */
static void find_promtool(void) {
    const char *env = getenv("MPB_PROMTOOL");
    if (env && *env) {
        snprintf(promtool, sizeof promtool, "%s", env);
        return;
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "command -v promtool 2>/dev/null || timeout 300 sh '%s/get_promtool.sh' 2>&1",
             MPB_OPS_DIR);
    FILE *p = popen(cmd, "r");
    char out[sizeof promtool] = "", line[sizeof promtool];
    while (p && fgets(line, sizeof line, p))
        memcpy(out, line, sizeof out);
    int st = p ? pclose(p) : -1;
    out[strcspn(out, "\n")] = 0;
    if (st != 0 || access(out, X_OK) != 0)
        fail_msg("promtool is needed to check /metrics and could not be had: %s\n"
                 "  get it with: sh %s/get_promtool.sh  (apt-get download prometheus, unpacked "
                 "into $MPB_TEST_CACHE, default /var/cache/mpb-test; nothing is installed), or "
                 "set MPB_PROMTOOL",
                 out, MPB_OPS_DIR);
    snprintf(promtool, sizeof promtool, "%s", out);
}

/* `promtool check metrics` reads the text on stdin: exit 0 and nothing said, or the test fails
 * with what it said. */
static void check_promtool(const char *text) {
    char in[] = "/tmp/mpb-ops-metrics.XXXXXX";
    int fd = mkstemp(in);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "timeout 60 '%s' check metrics < '%s' 2>&1", promtool, in);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096] = "";
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    int st = pclose(p);
    unlink(in);
    if (st != 0 || got) {
        fprintf(stderr, "---- /metrics ----\n%s------------------\n", text);
        fail_msg("promtool check metrics (exit %d): %s", WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
    }
}

static char *scrape(void) {
    resp_t r;
    http_req("GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    if (!strstr(r.head, "text/plain; version=0.0.4")) fail_msg("content type: %s", r.head);
    check_format(r.body);
    check_histograms(r.body);
    check_promtool(r.body);
    return r.body;
}

/* Scrapes until series has the value want (up to timeout_ms); the last scrape either way. */
static char *scrape_until(const char *series, double want, int timeout_ms) {
    int64_t end = th_now_ms() + timeout_ms;
    for (int i = 0; i < 10000; i++) {
        char *m = scrape();
        if (th_metric(m, series, -1) == want || th_now_ms() > end) return m;
        free(m);
        usleep(20000);
    }
    return scrape();
}

/* ---- the broker, and the port its HTTP endpoint got ---- */

/* DATA_DIR/http.addr: "127.0.0.1:PORT", written once the endpoint listens. */
static int read_addr_file(char *buf, size_t n) {
    char path[400];
    snprintf(path, sizeof path, "%s/data/http.addr", B.dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t k = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[k] = 0;
    return (int)k;
}

static int setup(void **state) {
    (void)state;
    find_promtool();
    /* queues named pinned.* or low.X always get their series (test_queue_depth_by_name) */
    th_broker_start(&B, "--http", "127.0.0.1:0", "--metrics-queues", "pinned.*,low.?", NULL);
    char addr[128] = "";
    for (int i = 0; i < 500 && !http_port; i++) { /* written just after the endpoint file */
        if (read_addr_file(addr, sizeof addr) > 0 && !strncmp(addr, "127.0.0.1:", 10))
            http_port = atoi(addr + 10);
        if (!http_port) usleep(10000);
    }
    if (http_port <= 0) fail_msg("no port in %s/data/http.addr: '%s'", B.dir, addr);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < nkids; i++) {
        kill(kids[i], SIGKILL);
        th_wait(kids[i], 5);
    }
    th_broker_stop(&B);
    return 0;
}

/* ---- tests ---- */

static void test_health_endpoints(void **state) {
    (void)state;
    resp_t r;
    http_req("GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    resp_free(&r);
    static const struct {
        const char *method, *path;
        int status;
    } reqs[] = {
        {"GET",    "/readyz",        200},
        {"HEAD",   "/healthz",       200},
        {"GET",    "/no-such-thing", 404},
        {"GET",    "/metrics/x",     404},
        {"DELETE", "/metrics",       405},
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        http_req(reqs[i].method, reqs[i].path, &r);
        assert_int_equal(r.status, reqs[i].status);
        resp_free(&r);
    }
}

static void test_metrics_count_what_was_done(void **state) {
    (void)state;
    char *m = scrape();
    check_format(m);
    expect(m, "mpb_up", 1);
    expect(m, "mpb_ready", 1);
    expect(m, "mpb_objects{kind=\"dict\"}", 0);
    expect(m, "mpb_sessions", 0);
    expect(m, "mpb_requests_total{op=\"dict.set\",result=\"ok\"}", -1);
    double auth0 = th_metric(m, "mpb_auth_failures_total", -1);
    assert_true(auth0 >= 0);
    free(m);

    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d = NULL;
    assert_int_equal(mpb_dict_open(c, "ops-metrics", &d), 0);
    for (int i = 0; i < 7; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(mpb_dict_set_i64(d, k, i * i), 0);
    }
    for (int i = 0; i < 3; i++) {
        int64_t v;
        char k[16];
        snprintf(k, sizeof k, "missing%d", i);
        assert_int_equal(mpb_dict_get_i64(d, k, &v), MPB_ENOKEY);
    }

    /* A client with a wrong key is refused, and counted. */
    mpb_client_t *bad = NULL;
    assert_int_equal(mpb_connect(B.endpoint, "not-the-key", 11, NULL, &bad), MPB_EAUTH);
    mpb_close(&bad);

    m = scrape();
    check_format(m);
    expect(m, "mpb_requests_total{op=\"dict.set\",result=\"ok\"}", 7);
    expect(m, "mpb_requests_total{op=\"dict.get\",result=\"ENOKEY\"}", 3);
    expect(m, "mpb_requests_total{op=\"dict.get\",result=\"ok\"}", -1);
    expect(m, "mpb_request_duration_seconds_count{op=\"dict.set\"}", 7);
    expect(m, "mpb_request_duration_seconds_count{op=\"dict.get\"}", 3);
    expect(m, "mpb_request_duration_seconds_bucket{op=\"dict.set\",le=\"+Inf\"}", 7);
    /* trimmed: 1 us, 4 us, ... 4.19 s, 8.39 s and +Inf */
    int buckets = 0;
    for (const char *p = m;
         (p = strstr(p, "\nmpb_request_duration_seconds_bucket{op=\"dict.set\",")); p++)
        buckets++;
    assert_int_equal(buckets, 14);
    assert_true(th_metric(m, "mpb_request_duration_seconds_bucket{op=\"dict.set\",le=\"0.000004\"}",
                          -1) >= 0);
    assert_true(th_metric(m, "mpb_request_duration_seconds_bucket{op=\"dict.set\",le=\"0.000002\"}",
                          -1) < 0);
    expect(m, "mpb_objects{kind=\"dict\"}", 1);
    expect(m, "mpb_objects{kind=\"list\"}", 0);
    expect(m, "mpb_sessions", 1);
    expect(m, "mpb_clients", 1);
    free(m);
    /* Over tcp:// the wrong key fails the CURVE handshake, which libzmq retries (every
     * 100 ms) until libmpb's connect timeout: each try is a refused handshake, counted. */
    m = scrape();
    double fails = th_metric(m, "mpb_auth_failures_total", -1);
    if (fails < auth0 + 3) fail_msg("mpb_auth_failures_total is %g, want >= %g", fails, auth0 + 3);
    assert_true(th_metric(m, "mpb_memory_bytes", -1) >= 0); /* present (0 under ASan's malloc) */
    free(m);

    mpb_dict_close(&d);
    mpb_close(&c);
    /* The session ends with the client (bye); the dict stays. */
    for (int i = 0; i < 200; i++) {
        m = scrape();
        double s = th_metric(m, "mpb_sessions", -1);
        free(m);
        if (s == 0) break;
        usleep(10000);
    }
    m = scrape();
    expect(m, "mpb_sessions", 0);
    expect(m, "mpb_objects{kind=\"dict\"}", 1);
    expect(m, "mpb_requests_total{op=\"dict.set\",result=\"ok\"}", 7);
    free(m);

    /* And the broker goes on serving. */
    c = th_connect(&B);
    assert_int_equal(th_dict_i64(c, "ops-metrics", "k6"), 36);
    mpb_close(&c);
}

/* ---- objects of several kinds ---- */

static double kind_count(const char *m, const char *kind) {
    char series[96];
    snprintf(series, sizeof series, "mpb_objects{kind=\"%s\"}", kind);
    return th_metric(m, series, -1);
}

/* The standard process_* series and mpb_build_info: the broker's own pid, checked against what
 * /proc says of it, so the numbers are the broker's and not this process's. */
static void test_process_metrics_and_build_info(void **state) {
    (void)state;
    char *m = scrape();
    expect(m, "mpb_build_info{version=\"" MPB_TEST_VERSION "\"}", 1);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)B.pid);
    int fds = 0;
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        fds += e->d_name[0] != '.';
    closedir(d);
    double open = th_metric(m, "process_open_fds", -1);
    /* the scrape's own connection may come and go between the two counts */
    if (open < fds - 2 || open > fds + 2) fail_msg("process_open_fds %g, /proc says %d", open, fds);
    snprintf(path, sizeof path, "/proc/%d/statm", (int)B.pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    unsigned long long vsz = 0, rss = 0;
    assert_int_equal(fscanf(f, "%llu %llu", &vsz, &rss), 2);
    fclose(f);
    double page = (double)sysconf(_SC_PAGESIZE), want = (double)rss * page;
    double got = th_metric(m, "process_resident_memory_bytes", -1);
    if (got < want * 0.5 || got > want * 2) fail_msg("RSS %g, /proc says %g", got, want);
    assert_true(th_metric(m, "process_virtual_memory_bytes", -1) >= got);
    assert_true(th_metric(m, "process_max_fds", -1) >= 64);
    double cpu = th_metric(m, "process_cpu_seconds_total", -1);
    assert_true(cpu >= 0 && cpu < 3600);
    double start = th_metric(m, "process_start_time_seconds", -1), now = (double)time(NULL);
    double up = th_metric(m, "mpb_uptime_seconds", -1);
    /* started when its uptime says, to a couple of seconds */
    if (start < now - up - 3 || start > now - up + 3)
        fail_msg("process_start_time_seconds %.2f, now %.0f, uptime %g", start, now, up);
    free(m);
}

static void on_get(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c, (void)val, (void)len;
    if (status == 0) ++*(int *)arg;
}

/* Per-queue depth: 8 gets parked on an empty queue show as its getters; then of 25 queues
 * holding 1..25 items (the first joinable, one full with a blocked put) only the 20 largest
 * get series, and the rest are counted. */
static void test_queue_depth(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B), *c2 = th_connect(&B);
    mpb_queue_t *q, *q2;
    th_assert_ok(mpb_queue_open(c, "depth.get", 0, 0, &q), c);
    th_assert_ok(mpb_queue_open(c2, "depth.get", 0, 0, &q2), c2);
    int got = 0;
    for (int i = 0; i < 8; i++)
        th_assert_ok(mpb_queue_get_async(q, 20000, on_get, &got), c);
    th_assert_ok(mpb_flush(c), c);
    char *m = scrape_until("mpb_queue_getters{queue=\"depth.get\"}", 8, 10000);
    expect(m, "mpb_queue_getters{queue=\"depth.get\"}", 8);
    expect(m, "mpb_queue_length{queue=\"depth.get\"}", 0);
    free(m);
    for (int i = 0; i < 8; i++)
        th_assert_ok(mpb_queue_put_i64(q2, i, 1000), c2);
    th_assert_ok(mpb_drain(c, 10000), c);
    assert_int_equal(got, 8);
    mpb_queue_close(&q);
    mpb_queue_close(&q2);

    for (int i = 1; i <= 25; i++) {
        char name[32];
        snprintf(name, sizeof name, "depth.%02d", i);
        th_assert_ok(mpb_queue_open(c, name, i, i == 25, &q), c);
        for (int k = 0; k < i; k++)
            th_assert_ok(mpb_queue_put_i64(q, k, 1000), c);
        mpb_queue_close(&q);
    }
    th_assert_ok(mpb_queue_open(c2, "depth.24", 24, 0, &q2), c2); /* full: this put parks */
    th_assert_ok(mpb_queue_put_async(q2, "\x01", 1, 20000, NULL, NULL), c2);
    th_assert_ok(mpb_flush(c2), c2);
    m = scrape_until("mpb_queue_putters{queue=\"depth.24\"}", 1, 10000);
    expect(m, "mpb_queue_putters{queue=\"depth.24\"}", 1);
    expect(m, "mpb_queue_length{queue=\"depth.25\"}", 25);
    expect(m, "mpb_queue_unfinished{queue=\"depth.25\"}", 25);
    expect(m, "mpb_queue_unfinished{queue=\"depth.24\"}", 0);
    expect(m, "mpb_queue_length{queue=\"depth.07\"}", 7);
    assert_true(th_metric(m, "mpb_queue_length{queue=\"depth.05\"}", -1) < 0); /* not in the top */
    int labelled = 0;
    for (const char *p = m; (p = strstr(p, "\nmpb_queue_length{")); p++)
        labelled++;
    assert_int_equal(labelled, 20);
    assert_true(th_metric(m, "mpb_queues_unlabelled", -1) >= 6);
    free(m);
    mpb_queue_t *q24;
    th_assert_ok(mpb_queue_open(c, "depth.24", 24, 0, &q24), c);
    int64_t x;
    th_assert_ok(mpb_queue_get_i64(q24, &x, 1000), c); /* room: the parked put goes in */
    th_assert_ok(mpb_drain(c2, 10000), c2);
    mpb_queue_close(&q24);
    mpb_queue_close(&q2);
    mpb_close(&c2);
    mpb_close(&c);
}

/* --metrics-queues: queues named by its patterns get series however small, besides the 20
 * largest of the rest (the 25 of test_queue_depth are still there); one the patterns miss
 * does not; a second client's process-wide view is the same. */
static void test_queue_depth_by_name(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    static const char *const names[] = {"pinned.a", "pinned.b", "low.x", "low.xy", "other.z"};
    mpb_queue_t *q;
    for (int i = 0; i < 5; i++) {
        th_assert_ok(mpb_queue_open(c, names[i], 0, 0, &q), c);
        for (int k = 0; k < 5 - i; k++)
            th_assert_ok(mpb_queue_put_i64(q, k, 1000), c);
        mpb_queue_close(&q);
    }
    char *m = scrape();
    expect(m, "mpb_queue_length{queue=\"pinned.a\"}", 5);
    expect(m, "mpb_queue_length{queue=\"pinned.b\"}", 4);
    expect(m, "mpb_queue_length{queue=\"low.x\"}", 3);
    expect(m, "mpb_queue_getters{queue=\"low.x\"}", 0);
    assert_true(th_metric(m, "mpb_queue_length{queue=\"low.xy\"}", -1) < 0); /* low.? */
    assert_true(th_metric(m, "mpb_queue_length{queue=\"other.z\"}", -1) < 0);
    expect(m, "mpb_queue_length{queue=\"depth.06\"}", 6); /* the 20th largest of the rest */
    assert_true(th_metric(m, "mpb_queue_length{queue=\"depth.05\"}", -1) < 0);
    int labelled = 0;
    for (const char *p = m; (p = strstr(p, "\nmpb_queue_length{")); p++)
        labelled++;
    assert_int_equal(labelled, 23);
    double unlabelled = th_metric(m, "mpb_queues_unlabelled", -1);
    free(m);
    /* every queue there is: labelled or counted */
    uint64_t cursor = 0, nq = 0;
    do {
        mpb_obj_info_t info[64];
        size_t n = 0;
        th_assert_ok(mpb_objects(c, "*", &cursor, info, 64, &n), c);
        for (size_t i = 0; i < n; i++)
            nq += !strcmp(info[i].kind, "queue");
    } while (cursor);
    assert_int_equal((uint64_t)unlabelled + 23, nq);
    mpb_close(&c);
}

static void test_objects_by_kind(void **state) {
    (void)state;
    static const char *const kinds[] = {"dict",    "list",      "queue",     "lock",
                                        "rlock",   "semaphore", "condition", "event",
                                        "barrier", "value",     "namespace"};
    enum { NK = sizeof kinds / sizeof kinds[0] };
    double before[NK];
    char *m = scrape();
    for (int i = 0; i < NK; i++) {
        before[i] = kind_count(m, kinds[i]);
        if (before[i] < 0) fail_msg("no mpb_objects{kind=\"%s\"} in /metrics", kinds[i]);
    }
    free(m);

    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d = NULL;
    mpb_list_t *l1 = NULL, *l2 = NULL;
    mpb_queue_t *q = NULL;
    mpb_lock_t *lk = NULL;
    mpb_event_t *e = NULL;
    mpb_semaphore_t *sem = NULL;
    th_assert_ok(mpb_dict_open(c, "kinds-d", &d), c);
    th_assert_ok(mpb_dict_set_i64(d, "x", 1), c);
    th_assert_ok(mpb_list_open(c, "kinds-l1", &l1), c);
    th_assert_ok(mpb_list_open(c, "kinds-l2", &l2), c);
    size_t n;
    const uint8_t *one = th_int(1, &n);
    th_assert_ok(mpb_list_append(l1, one, n), c);
    th_assert_ok(mpb_list_append(l2, one, n), c);
    th_assert_ok(mpb_queue_open(c, "kinds-q", 0, 0, &q), c);
    th_assert_ok(mpb_lock_open(c, "kinds-lock", &lk), c);
    th_assert_ok(mpb_event_open(c, "kinds-e", &e), c);
    th_assert_ok(mpb_semaphore_open(c, "kinds-s", 2, 0, &sem), c);
    th_assert_ok(mpb_obj_delete(c, "list/kinds-l2"), c);

    /* +1 dict, +1 list (two made, one deleted), +1 queue, lock, event, semaphore; no other */
    const double delta[NK] = {1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0};
    m = scrape();
    for (int i = 0; i < NK; i++)
        if (kind_count(m, kinds[i]) != before[i] + delta[i]) {
            fprintf(stderr, "---- /metrics ----\n%s------------------\n", m);
            fail_msg("mpb_objects{kind=\"%s\"} is %g, want %g", kinds[i], kind_count(m, kinds[i]),
                     before[i] + delta[i]);
        }
    free(m);
    mpb_dict_close(&d);
    mpb_list_close(&l1);
    mpb_list_close(&l2);
    mpb_queue_close(&q);
    mpb_lock_close(&lk);
    mpb_event_close(&e);
    mpb_semaphore_close(&sem);
    mpb_close(&c);
}

/* ---- parked requests: mpb_blocked_waiters, and a timeout counted with its result ---- */

/* Starts argv[0] with fd (closed here) as its descriptor target: its pid. */
static pid_t spawn_onto(const char *const *argv, int fd, int target) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, target);
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    close(fd);
    assert_true(pid > 0);
    return pid;
}

/* Runs the mpb CLI with its 4 args against B, output to /dev/null. Everything the child needs
 * is ready before fork: it only execs. */
static pid_t spawn_cli(const char *const args[4]) {
    const char *argv[10];
    int k = 0;
    argv[k++] = th_mpb_cli;
    argv[k++] = "-e";
    argv[k++] = B.endpoint;
    argv[k++] = "-k";
    argv[k++] = B.keyfile;
    for (int i = 0; i < 4; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(devnull >= 0);
    return spawn_onto(argv, devnull, 1);
}

static void test_blocked_waiters(void **state) {
    (void)state;
    char *m = scrape();
    expect(m, "mpb_blocked_waiters", 0);
    double gets_ok = th_metric(m, "mpb_requests_total{op=\"queue.get\",result=\"ok\"}", -1);
    double waits_ok = th_metric(m, "mpb_requests_total{op=\"event.wait\",result=\"ok\"}", -1);
    free(m);
    if (gets_ok < 0) gets_ok = 0;
    if (waits_ok < 0) waits_ok = 0;

    /* 3 takers on an empty queue and 2 waiters on a clear event, each a process of its own */
    static const char *const get[4] = {"get", "queue/ops-wait-q", "--timeout", "30"};
    static const char *const wait[4] = {"wait", "event/ops-wait-e", "--timeout", "30"};
    for (int i = 0; i < 5; i++)
        kids[nkids++] = spawn_cli(i < 3 ? get : wait);
    m = scrape_until("mpb_blocked_waiters", 5, 10000);
    expect(m, "mpb_blocked_waiters", 5);
    free(m);
    usleep(200000); /* and it stays 5: nothing else parks or leaves */
    m = scrape();
    expect(m, "mpb_blocked_waiters", 5);
    free(m);

    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q = NULL;
    mpb_event_t *e = NULL;
    th_assert_ok(mpb_queue_open(c, "ops-wait-q", 0, 0, &q), c);
    th_assert_ok(mpb_event_open(c, "ops-wait-e", &e), c);
    size_t n;
    for (int i = 0; i < 3; i++) {
        const uint8_t *v = th_int(i, &n);
        th_assert_ok(mpb_queue_put(q, v, n, 5000), c);
    }
    th_assert_ok(mpb_event_set(e), c);
    for (int i = 0; i < 5; i++) {
        int st = th_wait(kids[i], 20);
        if (st != 0)
            fail_msg("mpb %s (pid %d) exited with %d", i < 3 ? "get" : "wait", (int)kids[i], st);
    }
    nkids = 0;
    m = scrape_until("mpb_blocked_waiters", 0, 5000);
    expect(m, "mpb_blocked_waiters", 0);
    expect(m, "mpb_requests_total{op=\"queue.get\",result=\"ok\"}", gets_ok + 3);
    expect(m, "mpb_requests_total{op=\"event.wait\",result=\"ok\"}", waits_ok + 2);
    free(m);
    mpb_queue_close(&q);
    mpb_event_close(&e);
    mpb_close(&c);
}

/* A parked queue.get that times out is answered ETIMEDOUT by the broker's timer: counted once,
 * under that result, and in the latency histogram (check_histograms). */
static void test_timeout_counted(void **state) {
    (void)state;
    const char *series = "mpb_requests_total{op=\"queue.get\",result=\"ETIMEDOUT\"}";
    char *m = scrape();
    double before = th_metric(m, series, -1);
    free(m);
    if (before < 0) before = 0;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q = NULL;
    th_assert_ok(mpb_queue_open(c, "ops-timeout", 0, 0, &q), c);
    void *v = NULL;
    size_t n;
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_queue_get(q, &v, &n, 150), MPB_ETIMEDOUT);
    assert_true(th_now_ms() - t0 >= 150);
    m = scrape();
    if (th_metric(m, series, -1) != before + 1) {
        fprintf(stderr, "---- /metrics ----\n%s------------------\n", m);
        fail_msg("%s is %g after one queue.get timed out, want %g (a parked request must be "
                 "counted when it is answered, with its result)",
                 series, th_metric(m, series, -1), before + 1);
    }
    expect(m, "mpb_blocked_waiters", 0);
    free(m);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* ---- the pool, with a real mpb-worker ---- */

static double fn_state(const char *m, const char *fn, const char *state) {
    char series[160];
    if (!strcmp(state, "done") || !strcmp(state, "failed"))
        snprintf(series, sizeof series,
                 "mpb_pool_tasks_finished_total{function=\"%s\",result=\"%s\"}", fn, state);
    else
        snprintf(series, sizeof series, "mpb_pool_tasks{function=\"%s\",state=\"%s\"}", fn, state);
    return th_metric(m, series, -1);
}

/* The four counts of fn are exactly these. */
static void expect_fn(const char *m, const char *fn, double queued, double running, double done,
                      double failed) {
    double got[4] = {fn_state(m, fn, "queued"), fn_state(m, fn, "running"), fn_state(m, fn, "done"),
                     fn_state(m, fn, "failed")};
    if (got[0] != queued || got[1] != running || got[2] != done || got[3] != failed) {
        fprintf(stderr, "---- /metrics ----\n%s------------------\n", m);
        fail_msg("pool %s: queued %g running %g done %g failed %g; want %g %g %g %g", fn, got[0],
                 got[1], got[2], got[3], queued, running, done, failed);
    }
}

static pid_t start_worker(void) {
    const char *argv[] = {MPB_WORKER_PATH, "--lib", MPB_DEMO_LIB, "--fn", "square,fail,sleep_ms",
                          "--concurrency", "1",     "--prefetch", "0",    "-e",
                          B.endpoint,      "-k",    B.keyfile,    NULL};
    char log[400];
    snprintf(log, sizeof log, "%s/worker.log", B.dir);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    return spawn_onto(argv, fd, 2);
}

static const uint8_t *ints(mpb__buf_t *b, const int64_t *v, uint32_t n) {
    mpb__buf_reset(b);
    mpb__w_array(b, n);
    for (uint32_t i = 0; i < n; i++)
        mpb__w_int(b, v[i]);
    return b->p;
}

static void test_pool_metrics(void **state) {
    (void)state;
    char *m = scrape();
    expect(m, "mpb_pool_workers", 0);
    free(m);
    pid_t w = start_worker();
    kids[nkids++] = w;
    m = scrape_until("mpb_pool_workers", 1, 10000);
    expect(m, "mpb_pool_workers", 1);
    /* registered, nothing run yet */
    expect_fn(m, "square", 0, 0, 0, 0);
    expect_fn(m, "fail", 0, 0, 0, 0);
    expect_fn(m, "sleep_ms", 0, 0, 0, 0);
    free(m);

    mpb_client_t *c = th_connect(&B);
    mpb_pool_t *p = NULL;
    th_assert_ok(mpb_pool_open(c, &p), c);
    mpb__buf_t items = {0};
    void *res = NULL;
    size_t rl;

    /* square over 4 items, one task each; the last overflows int64: 3 done, 1 failed */
    const int64_t sq[] = {1, 2, 3, 4294967296LL};
    ints(&items, sq, 4);
    assert_int_equal(mpb_pool_map(p, "square", items.p, items.len, 1, 20000, &res, &rl),
                     MPB_EREMOTE);
    assert_non_null(strstr(mpb_errmsg(c), "overflows"));
    /* fail(7): one failed task */
    size_t al;
    uint8_t a7[12];
    a7[0] = 0x91;
    al = 1 + mpb_pack_i64(a7 + 1, 7);
    assert_int_equal(mpb_pool_apply(p, "fail", a7, al, 20000, &res, &rl), MPB_EREMOTE);
    m = scrape();
    expect_fn(m, "square", 0, 0, 3, 1);
    expect_fn(m, "fail", 0, 0, 0, 1);
    expect_fn(m, "sleep_ms", 0, 0, 0, 0);
    free(m);

    /* 3 sleep_ms tasks on one worker that takes one at a time: 1 running, 2 queued, then 3 done */
    const int64_t naps[] = {400, 400, 400};
    ints(&items, naps, 3);
    mpb_async_t *a = NULL;
    th_assert_ok(mpb_pool_map_async(p, "sleep_ms", items.p, items.len, 1, NULL, NULL, NULL, &a), c);
    m = scrape_until("mpb_pool_tasks{function=\"sleep_ms\",state=\"running\"}", 1, 5000);
    expect_fn(m, "sleep_ms", 2, 1, 0, 0);
    free(m);
    th_assert_ok(mpb_async_get(a, 20000, &res, &rl), c);
    mpb_free(res);
    mpb_async_free(&a);
    m = scrape();
    expect_fn(m, "sleep_ms", 0, 0, 3, 0);
    expect_fn(m, "square", 0, 0, 3, 1);
    expect_fn(m, "fail", 0, 0, 0, 1);
    expect(m, "mpb_pool_tasks_requeued_total", 0);
    expect(m, "mpb_pool_tasks_abandoned_total", 0);
    free(m);
    mpb__buf_free(&items);
    mpb_pool_close(&p);
    mpb_close(&c);

    kill(w, SIGTERM);
    assert_int_equal(th_wait(w, 10), 0);
    nkids--;
    m = scrape_until("mpb_pool_workers", 0, 5000);
    expect(m, "mpb_pool_workers", 0);
    expect_fn(m, "square", 0, 0, 3, 1); /* counts outlive the worker */
    free(m);
}

/* ---- the HTTP address file ---- */

static void test_addr_file(void **state) {
    (void)state;
    char addr[128], want[64];
    assert_true(read_addr_file(addr, sizeof addr) > 0);
    snprintf(want, sizeof want, "127.0.0.1:%d\n", http_port);
    assert_string_equal(addr, want);
}

/* ---- tools/mpb-healthcheck.c, the image's HEALTHCHECK ---- */

static int run_probe_in(const char *data_dir, const char *env_http, const char *a1,
                        const char *a2) {
    pid_t pid = fork();
    if (pid == 0) {
        if (env_http)
            setenv("MPB_HTTP", env_http, 1);
        else
            unsetenv("MPB_HTTP");
        if (data_dir)
            setenv("MPB_DATA_DIR", data_dir, 1);
        else
            unsetenv("MPB_DATA_DIR");
        if (!freopen("/dev/null", "w", stderr)) _exit(126);
        execl(MPB_HEALTHCHECK_PATH, "mpb-healthcheck", a1, a2, (char *)NULL);
        _exit(127);
    }
    return th_wait(pid, 10);
}

static int run_probe(const char *env_http, const char *a1, const char *a2) {
    return run_probe_in(NULL, env_http, a1, a2);
}

static void test_healthcheck_probe(void **state) {
    (void)state;
    char addr[64], any[64], any6[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", http_port);
    snprintf(any, sizeof any, "0.0.0.0:%d", http_port);
    snprintf(any6, sizeof any6, "*:%d", http_port);
    assert_int_equal(run_probe(NULL, addr, NULL), 0);
    assert_int_equal(run_probe(NULL, addr, "/readyz"), 0);
    assert_int_equal(run_probe(NULL, addr, "/metrics"), 0);
    assert_int_equal(run_probe(NULL, addr, "/nope"), 1); /* 404 is not healthy */
    assert_int_equal(run_probe(any, NULL, NULL), 0);     /* $MPB_HTTP, every interface */
    assert_int_equal(run_probe(any6, NULL, NULL), 0);
    assert_int_equal(run_probe("off", NULL, NULL), 1);
    assert_int_equal(run_probe(NULL, "127.0.0.1", NULL), 2);
    /* $MPB_DATA_DIR/http.addr, the address the broker got, wins over $MPB_HTTP (which says
     * what was asked for, maybe port 0, or what an image's ENV says while a flag says else) */
    char data[300], none[300];
    snprintf(data, sizeof data, "%s/data", B.dir);
    snprintf(none, sizeof none, "%s/no-such-dir", B.dir);
    assert_int_equal(run_probe_in(data, "127.0.0.1:0", NULL, NULL), 0);
    assert_int_equal(run_probe_in(data, "off", NULL, NULL), 0);
    assert_int_equal(run_probe_in(none, any, NULL, NULL), 0);           /* no file: $MPB_HTTP */
    assert_int_equal(run_probe_in(data, NULL, "127.0.0.1:1", NULL), 1); /* a flag wins */

    /* Nothing listening: a port that was just free. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    char closed[64];
    snprintf(closed, sizeof closed, "127.0.0.1:%d", ntohs(a.sin_port));
    assert_int_equal(run_probe(NULL, closed, NULL), 1);
}

/* Last: a broker that stops removes its address file (a stale one would send the health
 * check to a port nobody, or somebody else, has). */
static void test_stop_removes_addr_file(void **state) {
    (void)state;
    char path[400];
    snprintf(path, sizeof path, "%s/data/http.addr", B.dir);
    assert_int_equal(access(path, F_OK), 0);
    kill(B.pid, SIGTERM);
    assert_int_equal(th_wait(B.pid, 20), 0);
    B.pid = 0;
    assert_int_equal(access(path, F_OK), -1);
    /* and the broker's log holds no sanitizer report (an ASan build's leak or bad access) */
    FILE *f = fopen(B.log, "r");
    assert_non_null(f);
    char line[2048];
    while (fgets(line, sizeof line, f))
        if (strstr(line, "Sanitizer") || strstr(line, "runtime error"))
            fail_msg("the broker's log: %s", line);
    fclose(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_endpoints),
        cmocka_unit_test(test_metrics_count_what_was_done),
        cmocka_unit_test(test_process_metrics_and_build_info),
        cmocka_unit_test(test_objects_by_kind),
        cmocka_unit_test(test_blocked_waiters),
        cmocka_unit_test(test_timeout_counted),
        cmocka_unit_test(test_pool_metrics),
        cmocka_unit_test(test_queue_depth),
        cmocka_unit_test(test_queue_depth_by_name),
        cmocka_unit_test(test_addr_file),
        cmocka_unit_test(test_healthcheck_probe),
        cmocka_unit_test(test_stop_removes_addr_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
