/* test_log.c - the log lines (common/log.c) as a tool reads them: the shape of a logfmt and a
 * JSON line, the level filter, quoting and escaping, the keys a field may not take, the caps
 * on message and field count. Each test sends stderr to a file and reads the lines back. The
 * rate limit of lines about peers has its own test (test_lograte.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char out_path[] = "/tmp/mpb-test-log-XXXXXX";
static int saved_fd = -1;

/* stderr into a new empty file until captured() reads it back. */
static void capture(void) {
    fflush(stderr);
    int fd = mkstemp(out_path);
    assert_true(fd >= 0);
    saved_fd = dup(2);
    assert_true(saved_fd >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    close(fd);
}

/* What was written since capture(), in a static buffer; stderr is given back. */
static const char *captured(void) {
    static char buf[65536];
    fflush(stderr);
    assert_int_equal(dup2(saved_fd, 2), 2);
    close(saved_fd);
    FILE *f = fopen(out_path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    unlink(out_path);
    memcpy(out_path + strlen(out_path) - 6, "XXXXXX", 6);
    return buf;
}

/* The line without its timestamp (checked against the pattern first), for exact compares. */
static const char *untimed(const char *line, bool json) {
    static char rest[65536];
    const char *pat = json ? "^\\{\"ts\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                             "\\.[0-9]{3}Z\","
                           : "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                             "\\.[0-9]{3}Z ";
    regex_t re;
    regmatch_t m;
    assert_int_equal(regcomp(&re, pat, REG_EXTENDED), 0);
    int rc = regexec(&re, line, 1, &m, 0);
    regfree(&re);
    if (rc != 0) fail_msg("no timestamp at the start of: %s", line);
    snprintf(rest, sizeof rest, "%s", line + m.rm_eo);
    return rest;
}

static void test_log_logfmt_shape(void **state) {
    (void)state;
    log_setup(MPB_LOG_INFO, false);
    capture();
    log_kv(MPB_LOG_WARN, "authentication failed", "peer", "10.0.0.7", "op", LOG_INT(-42), NULL);
    const char *s = captured();
    assert_string_equal(untimed(s, false),
                        "level=warn msg=\"authentication failed\" peer=10.0.0.7 op=-42\n");
}

static void test_log_json_shape(void **state) {
    (void)state;
    log_setup(MPB_LOG_INFO, true);
    capture();
    log_kv(MPB_LOG_INFO, "session opened", "session", LOG_UINT(18446744073709551615ull), "host",
           "a b", NULL);
    const char *s = captured();
    assert_string_equal(untimed(s, true),
                        "\"level\":\"info\",\"msg\":\"session opened\","
                        "\"session\":\"18446744073709551615\",\"host\":\"a b\"}\n");
    log_setup(MPB_LOG_INFO, false);
}

static void test_log_levels(void **state) {
    (void)state;
    log_setup(MPB_LOG_WARN, false);
    capture();
    log_kv(MPB_LOG_DEBUG, "d", NULL);
    log_kv(MPB_LOG_INFO, "i", NULL);
    log_msg(MPB_LOG_INFO, "%s", "i2");
    log_kv(MPB_LOG_WARN, "w", NULL);
    log_error("e %d", 7);
    const char *s = captured();
    const char *nl = strchr(s, '\n');
    assert_non_null(nl);
    char first[256];
    snprintf(first, sizeof first, "%.*s", (int)(nl - s + 1), s);
    assert_string_equal(untimed(first, false), "level=warn msg=\"w\"\n");
    assert_string_equal(untimed(nl + 1, false), "level=error msg=\"e 7\"\n");

    log_setup(MPB_LOG_DEBUG, false);
    capture();
    log_debug("x");
    assert_string_equal(untimed(captured(), false), "level=debug msg=\"x\"\n");
    log_setup(MPB_LOG_INFO, false);

    assert_int_equal(log_level_parse("debug"), MPB_LOG_DEBUG);
    assert_int_equal(log_level_parse("INFO"), MPB_LOG_INFO);
    assert_int_equal(log_level_parse("warning"), MPB_LOG_WARN);
    assert_int_equal(log_level_parse("warn"), MPB_LOG_WARN);
    assert_int_equal(log_level_parse("error"), MPB_LOG_ERROR);
    assert_int_equal(log_level_parse("loud"), -1);
    assert_int_equal(log_format_parse("logfmt"), 0);
    assert_int_equal(log_format_parse("json"), 1);
    assert_int_equal(log_format_parse("JSON"), -1);
}

static void test_log_quoting_and_escapes(void **state) {
    (void)state;
    log_setup(MPB_LOG_INFO, false);
    capture();
    /* empty, '=', quote, backslash, newline, control byte, non-UTF-8, UTF-8 */
    log_kv(MPB_LOG_INFO, "say \"hi\"\n", "a", "", "b", "x=y", "c", "q\"\\", "d", "l1\nl2", "e",
           "\x01", "f", "\xff", "g", "\xc3\xa9t\xc3\xa9", NULL);
    assert_string_equal(untimed(captured(), false),
                        "level=info msg=\"say \\\"hi\\\"\\n\" a=\"\" b=\"x=y\" c=\"q\\\"\\\\\" "
                        "d=\"l1\\nl2\" e=\"\\u0001\" f=\"\\xff\" g=\"\xc3\xa9t\xc3\xa9\"\n");
    log_setup(MPB_LOG_INFO, true);
    capture();
    log_kv(MPB_LOG_INFO, "m", "f", "\xff", "e", "\x1f", NULL);
    assert_string_equal(untimed(captured(), true),
                        "\"level\":\"info\",\"msg\":\"m\",\"f\":\"\\ufffd\",\"e\":\"\\u001f\"}\n");
    log_setup(MPB_LOG_INFO, false);
}

static void test_log_keys_and_fields(void **state) {
    (void)state;
    log_setup(MPB_LOG_INFO, false);
    capture();
    /* the line's own keys get a '_'; other bytes in a key become '_'; a NULL value is left out */
    log_kv(MPB_LOG_INFO, "k", "ts", "1", "level", "2", "msg", "3", "a b=c", "4", "gone", NULL,
           "ok.k-1_", "5", NULL);
    assert_string_equal(untimed(captured(), false),
                        "level=info msg=\"k\" _ts=1 _level=2 _msg=3 a_b_c=4 ok.k-1_=5\n");
    /* at most 16 fields */
    capture();
    log_kv(MPB_LOG_INFO, "many", "f1", "1", "f2", "2", "f3", "3", "f4", "4", "f5", "5", "f6", "6",
           "f7", "7", "f8", "8", "f9", "9", "f10", "10", "f11", "11", "f12", "12", "f13", "13",
           "f14", "14", "f15", "15", "f16", "16", "f17", "17", NULL);
    const char *s = untimed(captured(), false);
    assert_non_null(strstr(s, " f16=16\n"));
    assert_null(strstr(s, "f17"));
}

static void test_log_long_message_cut(void **state) {
    (void)state;
    log_setup(MPB_LOG_INFO, false);
    char msg[3000], val[600];
    memset(msg, 'm', sizeof msg - 1);
    msg[sizeof msg - 1] = 0;
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = 0;
    capture();
    log_kv(MPB_LOG_INFO, msg, "v", val, NULL);
    const char *s = untimed(captured(), false);
    char want[2048];
    snprintf(want, sizeof want, "level=info msg=\"%.1024s...\" v=%.256s...\n", msg, val);
    assert_string_equal(s, want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_logfmt_shape),    cmocka_unit_test(test_log_json_shape),
        cmocka_unit_test(test_log_levels),          cmocka_unit_test(test_log_quoting_and_escapes),
        cmocka_unit_test(test_log_keys_and_fields), cmocka_unit_test(test_log_long_message_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
