/* test_ops_metrics.c - the operator's HTTP endpoint of a real mpbrokerd (--http 127.0.0.1:0):
 * /metrics scraped before and after a known workload (7 dict.set, 3 dict.get of missing keys,
 * one client with a wrong key) and its values checked exactly; the exposition's format;
 * /healthz, /readyz, an unknown path and a wrong method; and the image's health probe
 * (deploy/mpb-healthcheck.c, built here as mpb_healthcheck) against the same broker. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th.h"

static th_broker_t B;
static int http_port;

/* ---- a small HTTP/1.0 client ---- */

typedef struct resp {
    int status;
    char head[2048];
    char *body; /* malloc'd, NUL-terminated */
} resp_t;

static void http_req(const char *method, const char *path, resp_t *r) {
    memset(r, 0, sizeof *r);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)http_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail_msg("connect to 127.0.0.1:%d: %s", http_port, strerror(errno));
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: localhost\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t k = read(fd, buf + len, cap - len - 1);
        if (k < 0) fail_msg("read from HTTP: %s", strerror(errno));
        if (k == 0) break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = 0;
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

/* The value of the sample whose name and labels are exactly series; -1 when absent. */
static double sample(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, series, n) && p[n] == ' ') return strtod(p + n + 1, NULL);
    }
    return -1;
}

static void expect(const char *text, const char *series, double want) {
    double got = sample(text, series);
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
    assert_int_equal(regcomp(&help_re, "^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$", REG_EXTENDED),
                     0);
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

static char *scrape(void) {
    resp_t r;
    http_req("GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    if (!strstr(r.head, "text/plain; version=0.0.4")) fail_msg("content type: %s", r.head);
    return r.body;
}

/* ---- the broker, and the port its HTTP endpoint got ---- */

static int setup(void **state) {
    (void)state;
    th_broker_start(&B, "--http", "127.0.0.1:0", NULL);
    for (int i = 0; i < 500 && !http_port; i++) { /* logged just after the endpoint file */
        FILE *f = fopen(B.log, "r");
        char line[1024];
        while (f && fgets(line, sizeof line, f)) {
            char *p = strstr(line, "(port ");
            if (p && strstr(line, "HTTP on")) http_port = atoi(p + 6);
        }
        if (f) fclose(f);
        if (!http_port) usleep(10000);
    }
    if (http_port <= 0) fail_msg("no 'HTTP on ... (port N)' in %s", B.log);
    return 0;
}

static int teardown(void **state) {
    (void)state;
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
    http_req("GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http_req("HEAD", "/healthz", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http_req("GET", "/no-such-thing", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http_req("GET", "/metrics/x", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http_req("DELETE", "/metrics", &r);
    assert_int_equal(r.status, 405);
    resp_free(&r);
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
    double auth0 = sample(m, "mpb_auth_failures_total");
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
    expect(m, "mpb_objects{kind=\"dict\"}", 1);
    expect(m, "mpb_objects{kind=\"list\"}", 0);
    expect(m, "mpb_sessions", 1);
    expect(m, "mpb_clients", 1);
    expect(m, "mpb_auth_failures_total", auth0 + 1);
    assert_true(sample(m, "mpb_memory_bytes") >= 0); /* present (0 under ASan's malloc) */
    free(m);

    mpb_dict_close(&d);
    mpb_close(&c);
    /* The session ends with the client (bye); the dict stays. */
    for (int i = 0; i < 200; i++) {
        m = scrape();
        double s = sample(m, "mpb_sessions");
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
    assert_int_equal(mpb_dict_open(c, "ops-metrics", &d), 0);
    int64_t v = 0;
    assert_int_equal(mpb_dict_get_i64(d, "k6", &v), 0);
    assert_int_equal(v, 36);
    mpb_dict_close(&d);
    mpb_close(&c);
}

/* ---- deploy/mpb-healthcheck.c, the image's HEALTHCHECK ---- */

static int run_probe(const char *env_http, const char *a1, const char *a2) {
    pid_t pid = fork();
    if (pid == 0) {
        if (env_http) setenv("MPB_HTTP", env_http, 1);
        else unsetenv("MPB_HTTP");
        if (!freopen("/dev/null", "w", stderr)) _exit(126);
        execl(MPB_HEALTHCHECK_PATH, "mpb-healthcheck", a1, a2, (char *)NULL);
        _exit(127);
    }
    return th_wait(pid, 10);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_endpoints),
        cmocka_unit_test(test_metrics_count_what_was_done),
        cmocka_unit_test(test_healthcheck_probe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
