/* test_seclimits.c - what one peer can make the broker keep or write (issue 11, findings 2
 * and 8): sessions per connection and in all (max-sessions-per-conn, max-sessions: ELIMIT,
 * named, and counted in /metrics); HMAC handshakes in progress (max-handshakes, and one
 * address's share of it) under a flood of HELLOs without AUTH from one address, over tcp://
 * without encryption and over ipc://, where an address is a process; and the log under a flood
 * of bad frames and failed handshakes from one connection: a line a second per address, each
 * with the count it stands for. Before, one connection opened 13,000 sessions in 5 s, 4,200
 * HELLOs filled the fixed 4,096 handshakes and kept every client out, and one connection wrote
 * 9.2 MB of log in 1.7 s. Each test ends with a well-behaved client served. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "th.h"
#include "rawclient.h"

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static double metric(th_broker_t *b, const char *series) {
    int port = th_http_port(b);
    assert_true(port > 0);
    char *page = th_http_request(port, "GET", "/metrics");
    double v = th_metric(page, series, -1);
    free(page);
    return v;
}

static void test_seclimits_sessions_per_conn(void **state) {
    (void)state;
    th_broker_t b;
    th_broker_start(&b, "--max-sessions-per-conn", "4", "--session-ttl-ms", "60000", "--http",
                    "127.0.0.1:0", NULL);
    size_t kl;
    const char *key = th_authkey(&b, &kl);
    rawclient_t c;
    assert_int_equal(rc_open(&c, NULL, b.endpoint), 0);
    /* handshake after handshake on one connection: each would open a session of its own */
    int opened = 0, refused = 0;
    char why[512] = "";
    for (int i = 0; i < 40; i++) {
        rc_frame_t f;
        int rc = rc_hello(&c, &f, 5000);
        assert_int_equal(rc, 0);
        rc = rc_auth(&c, key, kl, &f, 5000);
        if (rc == 0)
            opened++;
        else {
            assert_int_equal(rc, MPB_ELIMIT);
            snprintf(why, sizeof why, "%s", f.msg);
            refused++;
        }
    }
    assert_int_equal(opened, 4);
    assert_int_equal(refused, 36);
    assert_non_null(strstr(why, "max-sessions-per-conn 4"));
    assert_true(metric(&b, "mpb_sessions_refused_total") == 36);
    rc_close(&c);

    /* another connection opens its own, and a client is served */
    mpb_client_t *cl = th_connect(&b);
    assert_true(th_info_int(cl, "sessions") >= 1);
    th_assert_dict_roundtrip(cl, "perconn", 4);
    mpb_close(&cl);
    th_broker_stop_checked(&b);
}

static void test_seclimits_max_sessions(void **state) {
    (void)state;
    th_broker_t b;
    th_broker_start(&b, "--max-sessions", "6", "--session-ttl-ms", "60000", NULL);
    size_t kl;
    const char *key = th_authkey(&b, &kl);
    rawclient_t c[7];
    for (int i = 0; i < 6; i++) {
        assert_int_equal(rc_open(&c[i], NULL, b.endpoint), 0);
        assert_int_equal(rc_handshake(&c[i], key, kl, 5000), 0);
    }
    rc_frame_t f;
    assert_int_equal(rc_open(&c[6], NULL, b.endpoint), 0);
    assert_int_equal(rc_hello(&c[6], &f, 5000), 0);
    assert_int_equal(rc_auth(&c[6], key, kl, &f, 5000), MPB_ELIMIT);
    assert_non_null(strstr(f.msg, "max-sessions 6"));
    /* the libmpb client hears it too, by name */
    mpb_client_t *cl = NULL;
    assert_int_equal(th_connect_opts(&b, NULL, &cl), MPB_ELIMIT);
    assert_non_null(strstr(mpb_errmsg(cl), "max-sessions 6"));
    mpb_close(&cl);
    /* one says bye: room for one more */
    rc_close(&c[0]);
    int rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) { /* the bye is not waited for: up to 5 s */
        if (i) usleep(50000);
        rc = th_connect_opts(&b, NULL, &cl);
        if (rc) mpb_close(&cl);
    }
    assert_int_equal(rc, 0);
    th_assert_dict_roundtrip(cl, "maxsess", 5);
    mpb_close(&cl);
    for (int i = 1; i < 7; i++)
        rc_close(&c[i]);
    th_broker_stop_checked(&b);
}

/* ---- handshakes in progress ---- */

#define HS_MAX   64 /* --max-handshakes of these tests: an address's share is 32 */
#define HS_SHARE 32
#define HS_FLOOD 100 /* HELLOs without AUTH from one address */

/* n raw clients on endpoint in ctx, each saying HELLO and never AUTH: *ok got a CHALLENGE,
 * *refused ELIMIT (the last refusal's message in why, if not NULL); nothing else comes. */
static void hello_flood(void *ctx, const char *endpoint, rawclient_t *c, int n, int *ok,
                        int *refused, char *why, size_t whylen) {
    *ok = *refused = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(rc_open(&c[i], ctx, endpoint), 0);
        rc_frame_t f;
        int rc = rc_hello(&c[i], &f, 10000);
        if (rc == 0) {
            (*ok)++;
            continue;
        }
        assert_int_equal(rc, MPB_ELIMIT);
        (*refused)++;
        if (why) snprintf(why, whylen, "%s", f.msg);
    }
}

static void close_all(rawclient_t *c, int n) {
    for (int i = 0; i < n; i++)
        rc_close(&c[i]);
}

/* The broker of these tests: a small table, and handshakes and idle connections kept longer
 * than the test, so that only the limits decide. */
static void start_hs_broker(th_broker_t *b, const char *listen, const char *enc) {
    char max[16];
    snprintf(max, sizeof max, "%d", HS_MAX);
    th_broker_start(b, "--max-handshakes", max, "--handshake-ms", "60000", "--idle-ms", "60000",
                    "--max-frame", "2m", "--encryption", enc, listen ? "--listen" : NULL, listen,
                    NULL);
}

/* A libmpb client without encryption on endpoint: it gets in and is served. */
static void assert_client_served(th_broker_t *b, const char *endpoint, const char *name) {
    size_t kl;
    const char *key = th_authkey(b, &kl);
    mpb_options_t o;
    mpb_options_init(&o);
    o.encryption = MPB_ENCRYPTION_OFF;
    o.connect_timeout_ms = 5000;
    mpb_client_t *cl = NULL;
    th_assert_ok(mpb_connect(endpoint, key, kl, &o, &cl), cl);
    th_assert_dict_roundtrip(cl, name, 7);
    mpb_close(&cl);
}

static void test_seclimits_hello_flood_tcp(void **state) {
    (void)state;
    th_broker_t b;
    start_hs_broker(&b, NULL, "off");
    const char *port = strrchr(b.endpoint, ':') + 1;
    char from2[128], from3[128], from4[128];
    snprintf(from2, sizeof from2, "tcp://127.0.0.2:0;127.0.0.1:%s", port);
    snprintf(from3, sizeof from3, "tcp://127.0.0.3:0;127.0.0.1:%s", port);
    snprintf(from4, sizeof from4, "tcp://127.0.0.4:0;127.0.0.1:%s", port);
    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    static rawclient_t a[HS_FLOOD], c[HS_FLOOD], d[1];
    int ok, refused;
    char why[512] = "";

    /* one address: its share, then ELIMIT naming why */
    hello_flood(ctx, from2, a, HS_FLOOD, &ok, &refused, why, sizeof why);
    print_message("%d HELLOs from 127.0.0.2: %d challenged, %d refused (%s)\n", HS_FLOOD, ok,
                  refused, why);
    assert_int_equal(ok, HS_SHARE);
    assert_int_equal(refused, HS_FLOOD - HS_SHARE);
    assert_non_null(strstr(why, "too many handshakes in progress from this address (32"));
    assert_true(th_wait_log_line(&b, "msg=\"handshake refused\" addr=127.0.0.2", 2000));

    /* a client from 127.0.0.1 gets in meanwhile (before, the table was full: ELIMIT) */
    assert_client_served(&b, b.endpoint, "hsflood");

    /* a second address takes the rest of the table; then it is full for everyone */
    hello_flood(ctx, from3, c, HS_FLOOD, &ok, &refused, NULL, 0);
    assert_int_equal(ok, HS_MAX - HS_SHARE);
    assert_int_equal(refused, HS_FLOOD - (HS_MAX - HS_SHARE));
    hello_flood(ctx, from4, d, 1, &ok, &refused, why, sizeof why);
    assert_int_equal(ok, 0);
    assert_non_null(strstr(why, "too many handshakes in progress (max-handshakes 64)"));

    /* a finished handshake leaves the table: one of 127.0.0.3's proves the key, and 127.0.0.4
     * gets its place */
    size_t kl;
    const char *key = th_authkey(&b, &kl);
    assert_int_equal(rc_auth(&c[0], key, kl, NULL, 5000), 0);
    rc_close(&d[0]);
    hello_flood(ctx, from4, d, 1, &ok, &refused, NULL, 0);
    assert_int_equal(ok, 1);

    close_all(a, HS_FLOOD);
    close_all(c, HS_FLOOD);
    close_all(d, 1);
    zmq_ctx_term(ctx);
    th_broker_stop_checked(&b);
}

/* Over ipc:// an address is a process: a child floods, the test's own process still gets in. */
static void test_seclimits_hello_flood_ipc(void **state) {
    (void)state;
    char ipc[300];
    snprintf(ipc, sizeof ipc, "ipc:///tmp/mpbtest-hs-%d.sock", (int)getpid());
    th_broker_t b;
    start_hs_broker(&b, ipc, "auto");
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* the flood: its counts up the pipe, then it holds on until told */
        static rawclient_t a[HS_FLOOD];
        void *ctx = zmq_ctx_new();
        int counts[3] = {0, 0, 0}; /* challenged, refused, anything else (no asserts here) */
        for (int i = 0; i < HS_FLOOD; i++) {
            int rc = !ctx || rc_open(&a[i], ctx, ipc) ? -1 : rc_hello(&a[i], NULL, 10000);
            counts[rc == 0 ? 0 : rc == MPB_ELIMIT ? 1 : 2]++;
        }
        if (write(up[1], counts, sizeof counts) != (ssize_t)sizeof counts) _exit(1);
        struct pollfd p = {down[0], POLLIN, 0};
        poll(&p, 1, 60000);
        close_all(a, HS_FLOOD);
        if (ctx) zmq_ctx_term(ctx);
        _exit(0);
    }
    close(up[1]);
    close(down[0]);
    int counts[3] = {-1, -1, -1};
    struct pollfd p = {up[0], POLLIN, 0};
    assert_int_equal(poll(&p, 1, 60000), 1);
    assert_int_equal(read(up[0], counts, sizeof counts), (ssize_t)sizeof counts);
    print_message("%d HELLOs from one process over ipc://: %d challenged, %d refused\n", HS_FLOOD,
                  counts[0], counts[1]);
    assert_int_equal(counts[2], 0);
    assert_int_equal(counts[0], HS_SHARE);
    assert_int_equal(counts[1], HS_FLOOD - HS_SHARE);

    /* this process is another address: its HELLO is answered, and a client gets in */
    rawclient_t r;
    assert_int_equal(rc_open(&r, NULL, ipc), 0);
    assert_int_equal(rc_hello(&r, NULL, 5000), 0);
    rc_close(&r);
    assert_client_served(&b, ipc, "hsflood-ipc");

    assert_int_equal(write(down[1], "x", 1), 1);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(up[0]);
    close(down[1]);
    th_broker_stop_checked(&b);
}

/* mpbrokerd --check-config with data as its data-dir and up to two more arguments (a2, or
 * both, NULL: none): its exit status; what it wrote in r. */
static int check_config(const char *data, const char *a1, const char *a2, th_run_t *r) {
    const char *argv[] = {MPBROKERD_PATH,
                          "--check-config",
                          "--listen",
                          "tcp://127.0.0.1:0",
                          "--data-dir",
                          data,
                          a1,
                          a2,
                          NULL};
    return th_run(argv, NULL, r);
}

/* max-handshakes is a setting as every other: flag, file and default printed by
 * --check-config, a bad value refused, and --help lists it. */
static void test_seclimits_max_handshakes_setting(void **state) {
    (void)state;
    char dir[] = "/tmp/mpbhs.XXXXXX", conf[64], data[64], want[128];
    assert_non_null(mkdtemp(dir));
    snprintf(conf, sizeof conf, "%s/conf", dir);
    snprintf(data, sizeof data, "%s/d", dir);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs("max-handshakes = 300\n", f);
    fclose(f);
    static th_run_t r;
    assert_int_equal(check_config(data, "--max-handshakes", "64", &r), 0);
    assert_non_null(strstr(r.out, "\nmax-handshakes = 64  # flag --max-handshakes\n"));
    assert_int_equal(check_config(data, NULL, NULL, &r), 0);
    assert_non_null(strstr(r.out, "\nmax-handshakes = 4096  # default\n"));
    assert_int_equal(check_config(data, "--config", conf, &r), 0);
    snprintf(want, sizeof want, "\nmax-handshakes = 300  # %s:1\n", conf);
    assert_non_null(strstr(r.out, want));
    assert_int_equal(check_config(data, "--max-handshakes", "1", &r), 2);
    assert_non_null(strstr(r.err, "--max-handshakes: '1' is not a number from 2 to 1000000"));
    const char *help[] = {MPBROKERD_PATH, "--help", NULL};
    assert_int_equal(th_run(help, NULL, &r), 0);
    assert_non_null(strstr(r.out, "--max-handshakes N"));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Sums the not_logged=N fields of the log lines whose msg is msg; *lines gets how many. */
static long long count_lines(const char *path, const char *msg, long long *lines) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096], want[128];
    snprintf(want, sizeof want, "msg=\"%s\"", msg);
    long long held = 0;
    *lines = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, want)) continue;
        (*lines)++;
        const char *n = strstr(line, " not_logged=");
        if (n) held += atoll(n + 12);
        assert_non_null(strstr(line, " addr=127.0.0.1"));
    }
    fclose(f);
    return held;
}

static void test_seclimits_log_flood(void **state) {
    (void)state;
    th_broker_t b;
    th_broker_start(&b, "--http", "127.0.0.1:0", NULL);
    size_t kl;
    const char *key = th_authkey(&b, &kl);
    long before = file_size(b.log);
    rawclient_t c;
    assert_int_equal(rc_open(&c, NULL, b.endpoint), 0);
    /* bad frames as fast as one connection can send them, for 1.5 s or 200,000 of them */
    const char junk[] = "this is no frame of mpbroker's at all";
    int64_t t0 = th_now_ms();
    long long sent = 0;
    while (sent < 200000 && th_now_ms() - t0 < 1500) {
        assert_int_equal(rc_send(&c, junk, sizeof junk), 0);
        sent++;
    }
    /* the broker has read them all when the metric says so */
    int64_t deadline = th_now_ms() + 20000;
    while (metric(&b, "mpb_bad_frames_total") < (double)sent && th_now_ms() < deadline)
        usleep(20000);
    assert_true(metric(&b, "mpb_bad_frames_total") == (double)sent);
    int64_t secs = (th_now_ms() - t0) / 1000 + 1;
    /* a second later, one more: its line carries the count of those held back */
    usleep(1100 * 1000);
    assert_int_equal(rc_send(&c, junk, sizeof junk), 0);
    sent++;
    deadline = th_now_ms() + 5000;
    long long lines = 0, held = 0;
    while (th_now_ms() < deadline) {
        held = count_lines(b.log, "bad frame", &lines);
        if (lines + held == sent) break;
        usleep(20000);
    }
    long grew = file_size(b.log) - before;
    print_message("%lld bad frames: %lld log lines, %ld bytes (not_logged %lld)\n", sent, lines,
                  grew, held);
    assert_true(sent > 1000);
    assert_int_equal(lines + held, sent); /* every frame is in a line or in a count */
    assert_true(lines >= 2 && lines <= secs + 2);
    assert_true(grew < 32768); /* 9.2 MB in 1.7 s before */

    /* failed handshakes: one line a second for the address too (a new connection: the old
     * one has the answers to the junk still to read) */
    rc_close(&c);
    assert_int_equal(rc_open(&c, NULL, b.endpoint), 0);
    long mark = file_size(b.log);
    long long fails = 0;
    t0 = th_now_ms();
    for (int i = 0; i < 2000 && th_now_ms() - t0 < 3000; i++) {
        rc_frame_t f;
        assert_int_equal(rc_hello(&c, &f, 5000), 0);
        assert_int_equal(rc_auth(&c, "not the key", 11, &f, 5000), MPB_EAUTH);
        fails++;
    }
    secs = (th_now_ms() - t0) / 1000 + 1;
    long long alines = 0;
    /* the broker may still be writing its line when the last refusal reaches us */
    th_wait_log_line(&b, "msg=\"authentication failed\"", 2000);
    count_lines(b.log, "authentication failed", &alines);
    grew = file_size(b.log) - mark;
    print_message("%lld failed handshakes in %lld s: %lld log lines, %ld bytes\n", fails,
                  (long long)secs, alines, grew);
    assert_true(fails > 100);
    assert_true(alines >= 1 && alines <= secs + 2);
    assert_true(grew < 16384);
    assert_true(metric(&b, "mpb_auth_failures_total") >= (double)fails);
    rc_close(&c);

    mpb_client_t *cl = th_connect(&b);
    th_assert_dict_roundtrip(cl, "flood", 6);
    mpb_close(&cl);
    (void)key;
    th_broker_stop_checked(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seclimits_sessions_per_conn),
        cmocka_unit_test(test_seclimits_max_sessions),
        cmocka_unit_test(test_seclimits_hello_flood_tcp),
        cmocka_unit_test(test_seclimits_hello_flood_ipc),
        cmocka_unit_test(test_seclimits_max_handshakes_setting),
        cmocka_unit_test(test_seclimits_log_flood),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
