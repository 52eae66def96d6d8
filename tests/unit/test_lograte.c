/* test_lograte.c - the rate limit of the broker's lines about peers (log.c): one line a second
 * per key with the count held back, LOG_RATE_MAX lines a second in all, and the peer address
 * those lines carry. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

static void test_lograte_per_key(void **state) {
    (void)state;
    unsigned long long held = 99;
    assert_true(log_rate_ok("10.0.0.1", &held));
    assert_int_equal(held, 0);
    for (int i = 0; i < 1000; i++)
        assert_false(log_rate_ok("10.0.0.1", &held));
    /* another key has its own second */
    assert_true(log_rate_ok("10.0.0.2", &held));
    assert_int_equal(held, 0);
    usleep((LOG_RATE_MS + 50) * 1000);
    assert_true(log_rate_ok("10.0.0.1", &held));
    assert_int_equal(held, 1000); /* what the line stands for besides itself */
    assert_false(log_rate_ok("10.0.0.1", &held));
}

static void test_lograte_in_all(void **state) {
    (void)state;
    usleep((LOG_RATE_MS + 50) * 1000);
    unsigned long long held;
    int ok = 0;
    char key[32];
    for (int i = 0; i < 3 * LOG_RATE_MAX; i++) {
        snprintf(key, sizeof key, "192.0.2.%d", i);
        ok += log_rate_ok(key, &held);
    }
    assert_int_equal(ok, LOG_RATE_MAX); /* many addresses do not make many lines */
    /* more keys than it remembers: it forgets the oldest, and still answers */
    for (int i = 0; i < 4 * LOG_RATE_KEYS; i++) {
        snprintf(key, sizeof key, "198.51.100.%d", i);
        log_rate_ok(key, &held);
    }
    usleep((LOG_RATE_MS + 50) * 1000);
    assert_true(log_rate_ok("203.0.113.7", &held));
}

static void test_lograte_peer_addr(void **state) {
    (void)state;
    char a[64];
    assert_string_equal(log_peer_addr(-1, a, sizeof a), "unknown");
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    assert_string_equal(log_peer_addr(sp[0], a, sizeof a), "local");
    close(sp[0]);
    close(sp[1]);
    /* a TCP connection over loopback from 127.0.0.3 */
    int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(l, 1), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.3", &src.sin_addr);
    assert_int_equal(bind(c, (struct sockaddr *)&src, sizeof src), 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    int s = accept(l, NULL, NULL);
    assert_true(s >= 0);
    assert_string_equal(log_peer_addr(s, a, sizeof a), "127.0.0.3");
    close(s);
    close(c);
    close(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lograte_per_key),
        cmocka_unit_test(test_lograte_in_all),
        cmocka_unit_test(test_lograte_peer_addr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
