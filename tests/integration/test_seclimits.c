/* test_seclimits.c - what one peer can make the broker keep or write (issue 11, finding 8):
 * sessions per connection and in all (max-sessions-per-conn, max-sessions: ELIMIT, named, and
 * counted in /metrics), and the log under a flood of bad frames and failed handshakes from
 * one connection: a line a second per address, each with the count it stands for. Before,
 * one connection opened 13,000 sessions in 5 s and wrote 9.2 MB of log in 1.7 s. Each test
 * ends with a well-behaved client served. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
        cmocka_unit_test(test_seclimits_log_flood),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
