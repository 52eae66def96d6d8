/* test_addr.c - the one ADDR:PORT parser (common/addr.c) that --http, MPB_HTTP and the health
 * probe share: every accepted form with the socket address it gives, and every refusal with
 * the sentence that says why. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"

/* s is accepted as the family's address ip (as inet_ntop writes it) and port. */
static void expect_ok(const char *s, int family, const char *ip, uint16_t port, bool any) {
    addr_t a;
    char err[512] = "";
    if (addr_parse(s, &a, err, sizeof err) != 0) fail_msg("'%s' refused: %s", s, err);
    assert_int_equal(a.family, family);
    assert_int_equal(a.ss.ss_family, family);
    assert_int_equal(a.port, port);
    assert_int_equal(a.any, any);
    const struct sockaddr_in *a4 = (const struct sockaddr_in *)&a.ss;
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&a.ss;
    bool v6 = family == AF_INET6;
    assert_int_equal(a.len, v6 ? sizeof *a6 : sizeof *a4);
    assert_int_equal(ntohs(v6 ? a6->sin6_port : a4->sin_port), port);
    char got[INET6_ADDRSTRLEN];
    assert_non_null(inet_ntop(
        family, v6 ? (const void *)&a6->sin6_addr : (const void *)&a4->sin_addr, got, sizeof got));
    assert_string_equal(got, ip);
}

#define expect_v4(s, ip, port, any) expect_ok(s, AF_INET, ip, port, any)
#define expect_v6(s, ip, port, any) expect_ok(s, AF_INET6, ip, port, any)

/* s is refused with exactly the sentence want, and *a is left zeroed. */
static void expect_error(const char *s, const char *want) {
    addr_t a;
    memset(&a, 0x5a, sizeof a);
    char err[512] = "";
    assert_int_equal(addr_parse(s, &a, err, sizeof err), -1);
    assert_string_equal(err, want);
    addr_t zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&a, &zero, sizeof a);
}

static void test_addr_ipv4(void **state) {
    (void)state;
    expect_v4("127.0.0.1:8080", "127.0.0.1", 8080, false);
    expect_v4("10.1.2.3:1", "10.1.2.3", 1, false);
    expect_v4("0.0.0.0:9000", "0.0.0.0", 9000, true);
    expect_v4("*:5555", "0.0.0.0", 5555, true);
    expect_v4("127.0.0.1:0", "127.0.0.1", 0, false); /* the kernel picks, where binding */
    expect_v4("127.0.0.1:65535", "127.0.0.1", 65535, false);
    expect_v4("127.0.0.1:00080", "127.0.0.1", 80, false);
}

static void test_addr_ipv6(void **state) {
    (void)state;
    expect_v6("[::1]:5555", "::1", 5555, false);
    expect_v6("[::]:8080", "::", 8080, true);
    expect_v6("[fe80::1:2]:1", "fe80::1:2", 1, false);
    expect_v6("[::ffff:10.0.0.1]:80", "::ffff:10.0.0.1", 80, false);
}

static void test_addr_empty_parts(void **state) {
    (void)state;
    expect_error(":8080",
                 "':8080': the address before ':' is empty (* or 0.0.0.0 means every interface)");
    expect_error("127.0.0.1:", "'127.0.0.1:': the port after ':' is empty");
    expect_error(":", "':': the address before ':' is empty (* or 0.0.0.0 means every interface)");
    expect_error("", "'' is not ADDR:PORT (e.g. 0.0.0.0:8080)");
    expect_error("8080", "'8080' is not ADDR:PORT (e.g. 0.0.0.0:8080)");
    expect_error("[]:80", "'[]:80': not a numeric IPv6 address in brackets");
    expect_error("[:80", "'[:80': an IPv6 address ends with ']' before ':PORT'");
}

static void test_addr_port_range(void **state) {
    (void)state;
    expect_error("127.0.0.1:65536", "'127.0.0.1:65536': the port must be a number in 0..65535");
    expect_error("127.0.0.1:70000", "'127.0.0.1:70000': the port must be a number in 0..65535");
    expect_error("127.0.0.1:-1", "'127.0.0.1:-1': the port must be a number in 0..65535");
    expect_error("127.0.0.1:+80", "'127.0.0.1:+80': the port must be a number in 0..65535");
    expect_error("127.0.0.1: 80", "'127.0.0.1: 80': the port must be a number in 0..65535");
    expect_error("127.0.0.1:80k", "'127.0.0.1:80k': the port must be a number in 0..65535");
    expect_error("127.0.0.1:http", "'127.0.0.1:http': the port must be a number in 0..65535");
    expect_error("127.0.0.1:123456", "'127.0.0.1:123456': the port must be a number in 0..65535");
    expect_error("127.0.0.1:99999999999999999999",
                 "'127.0.0.1:99999999999999999999': the port must be a number in 0..65535");
}

static void test_addr_host_too_long(void **state) {
    (void)state;
    char s[400], want[600];
    /* 255 characters of address is the most: refused then for not being numeric */
    memset(s, '1', 255);
    snprintf(s + 255, sizeof s - 255, ":80");
    snprintf(want, sizeof want, "'%s': the address is not a numeric IPv4 one, * or an [IPv6] one",
             s);
    expect_error(s, want);
    /* 256 is too long, whatever it holds */
    memset(s, '1', 256);
    snprintf(s + 256, sizeof s - 256, ":80");
    snprintf(want, sizeof want, "'%s': the address is longer than 255 characters", s);
    expect_error(s, want);
}

static void test_addr_bad_hosts(void **state) {
    (void)state;
    expect_error("localhost:8080",
                 "'localhost:8080': the address is not a numeric IPv4 one, * or an [IPv6] one");
    expect_error("256.0.0.1:80",
                 "'256.0.0.1:80': the address is not a numeric IPv4 one, * or an [IPv6] one");
    expect_error("1.2.3:80",
                 "'1.2.3:80': the address is not a numeric IPv4 one, * or an [IPv6] one");
    expect_error("**:80", "'**:80': the address is not a numeric IPv4 one, * or an [IPv6] one");
    expect_error("::1:5555", "'::1:5555': an IPv6 address goes in brackets ([::1]:5555)");
    expect_error("[::1:80", "'[::1:80': an IPv6 address ends with ']' before ':PORT'");
    expect_error("[::1]5555:80", "'[::1]5555:80': an IPv6 address ends with ']' before ':PORT'");
    expect_error("[::1]:", "'[::1]:': the port after ':' is empty");
    expect_error("[1.2.3.4]:80", "'[1.2.3.4]:80': not a numeric IPv6 address in brackets");
    expect_error("[nope]:80", "'[nope]:80': not a numeric IPv6 address in brackets");
}

/* A short error buffer holds the start of the sentence, ended. */
static void test_addr_short_err(void **state) {
    (void)state;
    addr_t a;
    char err[8];
    assert_int_equal(addr_parse("x:1", &a, err, sizeof err), -1);
    assert_string_equal(err, "'x:1': ");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_ipv4),          cmocka_unit_test(test_addr_ipv6),
        cmocka_unit_test(test_addr_empty_parts),   cmocka_unit_test(test_addr_port_range),
        cmocka_unit_test(test_addr_host_too_long), cmocka_unit_test(test_addr_bad_hosts),
        cmocka_unit_test(test_addr_short_err),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
