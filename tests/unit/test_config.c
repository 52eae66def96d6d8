/* test_config.c - mpbrokerd's settings (broker/config.c, in mpbcore), without a broker: good
 * values from flags, a config file and MPB_* variables, with flags over the environment over
 * the file over the defaults; every kind of bad value (size, milliseconds, count, level, format,
 * on/off, fsync, encryption, endpoint, HTTP address, path) with its exact message naming where
 * it came from; the file's syntax (comments, quotes, a key twice, unknown keys with a hint, a
 * pasted authkey); all problems reported, not only the first; and config_print's output read
 * back to the same settings. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

extern char **environ;

static char cfg_path[64];

/* What one config_load() gave. */
typedef struct loaded {
    int rc;
    conf_t *conf;
    char *err; /* everything it wrote on err */
} loaded_t;

/* Runs config_load over the flags (NULL-terminated) with the config file text (NULL: no
 * file; else it is passed with --config). */
static loaded_t load(const char *file_text, ...) {
    char *argv[40];
    int argc = 0;
    argv[argc++] = "mpbrokerd";
    if (file_text) {
        FILE *f = fopen(cfg_path, "w");
        assert_non_null(f);
        fputs(file_text, f);
        fclose(f);
        argv[argc++] = "--config";
        argv[argc++] = cfg_path;
    }
    va_list ap;
    va_start(ap, file_text);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 39;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    loaded_t l = {0};
    size_t n = 0;
    FILE *err = open_memstream(&l.err, &n);
    assert_non_null(err);
    l.rc = config_load(argc, argv, err, &l.conf);
    fclose(err);
    return l;
}

static void done(loaded_t *l) {
    config_free(&l->conf);
    assert_null(l->conf);
    free(l->err);
}

/* The load must fail with exactly this on err (each problem a line, then the count). */
static void expect_bad(loaded_t l, const char *want) {
    if (l.rc != CONF_BAD || strcmp(l.err, want))
        fail_msg("config_load gave %d, err:\n%s\nwanted %d, err:\n%s", l.rc, l.err, CONF_BAD, want);
    done(&l);
}

/* No MPB_* variable from the environment the tests run in. */
static int setup(void **state) {
    (void)state;
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++)
            if (!strncmp(*e, "MPB_", 4)) {
                char name[128];
                size_t n = strcspn(*e, "=");
                if (n >= sizeof name) continue;
                memcpy(name, *e, n);
                name[n] = 0;
                unsetenv(name);
                again = 1;
                break;
            }
    }
    snprintf(cfg_path, sizeof cfg_path, "/tmp/mpb-test-config-%d.conf", (int)getpid());
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unlink(cfg_path);
    return 0;
}

static void test_defaults(void **state) {
    (void)state;
    loaded_t l = load(NULL, NULL);
    assert_int_equal(l.rc, CONF_RUN);
    assert_string_equal(l.err, "");
    const config_t *g = config_get(l.conf);
    assert_int_equal(g->nlisten, 1);
    assert_string_equal(g->listen[0], "tcp://127.0.0.1:5555");
    assert_string_equal(g->data_dir, "./mpb-data");
    assert_null(g->http);
    assert_null(g->authkey_file);
    assert_int_equal(g->limits.max_frame, 8u << 20);
    assert_int_equal(g->limits.max_value, 1u << 20);
    assert_int_equal(g->limits.max_key, 64u << 10);
    assert_int_equal(g->limits.heartbeat_ms, 1000);
    assert_int_equal(g->limits.session_ttl_ms, 5000);
    assert_int_equal(g->limits.pool_max_attempts, 3);
    assert_int_equal(g->limits.slowlog_max_len, 128);
    assert_true(g->persist);
    assert_false(g->log_json);
    assert_int_equal(config_keysrc(l.conf), KEYSRC_GENERATE);
    assert_null(config_file(l.conf));
    done(&l);
}

/* Good values of every type, from flags. */
static void test_good_flags(void **state) {
    (void)state;
    loaded_t l = load(NULL, "--listen", "tcp://0.0.0.0:*", "-l", "ipc:///tmp/mpb.sock",
                      "--max-frame", "2M", "--max-value", "512k", "--max-key", "4096",
                      "--heartbeat-ms", "200", "--session-ttl-ms", "1000", "--log-level", "debug",
                      "--log-format", "json", "--persist", "off", "--fsync", "always",
                      "--encryption", "off", "--http", "[::1]:0", "--max-objects", "7",
                      "--max-memory", "1g", "-k", "/some/key", "-d", "/var/lib/x", NULL);
    assert_int_equal(l.rc, CONF_RUN);
    assert_string_equal(l.err, "");
    const config_t *g = config_get(l.conf);
    assert_int_equal(g->nlisten, 2);
    assert_string_equal(g->listen[0], "tcp://0.0.0.0:*");
    assert_string_equal(g->listen[1], "ipc:///tmp/mpb.sock");
    assert_int_equal(g->limits.max_frame, 2u << 20);
    assert_int_equal(g->limits.max_value, 512u << 10);
    assert_int_equal(g->limits.max_key, 4096);
    assert_int_equal(g->limits.heartbeat_ms, 200);
    assert_int_equal(g->limits.session_ttl_ms, 1000);
    assert_true(g->log_json);
    assert_false(g->persist);
    assert_int_equal(g->encryption, ENC_OFF);
    assert_string_equal(g->http, "[::1]:0");
    assert_int_equal(g->limits.max_objects, 7);
    assert_int_equal(g->limits.max_memory, 1ull << 30);
    assert_string_equal(g->authkey_file, "/some/key");
    assert_string_equal(g->data_dir, "/var/lib/x");
    assert_int_equal(config_keysrc(l.conf), KEYSRC_FILE);
    done(&l);
}

/* The layers: flag > MPB_* > file > default, each setting on its own. */
static void test_precedence(void **state) {
    (void)state;
    setenv("MPB_MAX_KEY", "1k", 1);
    setenv("MPB_HEARTBEAT_MS", "300", 1);
    setenv("MPB_LISTEN", "tcp://127.0.0.1:7001, tcp://127.0.0.1:7002", 1);
    loaded_t l = load("# a comment\n"
                      "max-key = 2k\n"
                      "max-value = 100k   # trailing comment\n"
                      "heartbeat-ms = 400\n"
                      "log-level = warn\n"
                      "listen = tcp://127.0.0.1:6000\n"
                      "data-dir = \"/d#ir\"  # quoted: the # is part of it\n",
                      "--heartbeat-ms", "500", NULL);
    unsetenv("MPB_MAX_KEY");
    unsetenv("MPB_HEARTBEAT_MS");
    unsetenv("MPB_LISTEN");
    assert_int_equal(l.rc, CONF_RUN);
    assert_string_equal(l.err, "");
    const config_t *g = config_get(l.conf);
    assert_int_equal(g->limits.max_key, 1024);        /* env over file */
    assert_int_equal(g->limits.max_value, 100 << 10); /* file over default */
    assert_int_equal(g->limits.heartbeat_ms, 500);    /* flag over env and file */
    assert_string_equal(g->data_dir, "/d#ir");
    assert_int_equal(g->nlisten, 2); /* the env's list replaces the file's */
    assert_string_equal(g->listen[0], "tcp://127.0.0.1:7001");
    assert_string_equal(g->listen[1], "tcp://127.0.0.1:7002");
    assert_string_equal(config_file(l.conf), cfg_path);
    done(&l);
}

/* Every type of value, bad, from a flag: one line each, all of them, then the count. */
static void test_bad_flag_values(void **state) {
    (void)state;
    expect_bad(load(NULL, "--max-frame", "1k", NULL),
               "mpbrokerd: --max-frame: '1k' is not a size from 4096 to 1g (bytes; k, m, g "
               "suffixes)\n"
               "mpbrokerd: 1 bad setting\n");
    expect_bad(load(NULL, "--max-value", "12x", "--max-key", "-1", "--heartbeat-ms", "5",
                    "--session-ttl-ms", "1s", "--pool-max-attempts", "1k", "--log-level", "loud",
                    "--log-format", "xml", "--persist", "yes", "--fsync", "sometimes",
                    "--encryption", "maybe", NULL),
               "mpbrokerd: --max-value: '12x' is not a size from 16 to 1g (bytes; k, m, g "
               "suffixes)\n"
               "mpbrokerd: --max-key: '-1' is not a size from 16 to 16m (bytes; k, m, g "
               "suffixes)\n"
               "mpbrokerd: --heartbeat-ms: '5' is not a number of milliseconds from 10 to "
               "600000\n"
               "mpbrokerd: --session-ttl-ms: '1s' is not a number of milliseconds from 50 to "
               "86400000\n"
               "mpbrokerd: --pool-max-attempts: '1k' is not a number from 1 to 1000\n"
               "mpbrokerd: --log-level: 'loud' is not debug, info, warn or error\n"
               "mpbrokerd: --log-format: 'xml' is not logfmt or json\n"
               "mpbrokerd: --persist: 'yes' is not on or off\n"
               "mpbrokerd: --fsync: 'sometimes' is not always, everysec or no\n"
               "mpbrokerd: --encryption: 'maybe' is not on, off or auto\n"
               "mpbrokerd: 10 bad settings\n");
    /* a size past the 64-bit range does not wrap around into the range */
    expect_bad(load(NULL, "--max-memory", "18446744073709551615g", NULL),
               "mpbrokerd: --max-memory: '18446744073709551615g' is not a size from 0 to 16t "
               "(bytes; k, m, g suffixes)\n"
               "mpbrokerd: 1 bad setting\n");
}

static void test_bad_endpoints_and_paths(void **state) {
    (void)state;
    expect_bad(load(NULL, "-l", "tcp://:1", "-l", "tcp://h:70000", "-l", "udp://h:1", "-l",
                    "ipc://", "-l", "unix://", "-l", "tcp://a b:1", "--http", "localhost:80",
                    "--http", "1.2.3.4:x", "-d", "", "-l", "mpb://host:1", NULL),
               "mpbrokerd: --listen: 'tcp://:1' is not tcp://ADDR:PORT\n"
               "mpbrokerd: --listen: 'tcp://h:70000': the port must be 0..65535 or *\n"
               "mpbrokerd: --listen: 'udp://h:1' is not tcp://ADDR:PORT, mpb://ADDR:PORT, "
               "ipc:///PATH or unix:///PATH\n"
               "mpbrokerd: --listen: 'ipc://': a socket path must have 1 to 107 characters\n"
               "mpbrokerd: --listen: 'unix://': a socket path must have 1 to 107 characters\n"
               "mpbrokerd: --listen: 'tcp://a b:1' contains a blank or control character\n"
               "mpbrokerd: --http: 'localhost:80': the address is not a numeric IPv4 one, * or "
               "an [IPv6] one\n"
               "mpbrokerd: --http: '1.2.3.4:x': the port must be a number in 0..65535\n"
               "mpbrokerd: --data-dir: empty path\n"
               "mpbrokerd: --listen: 'mpb://host:1': the address is not a numeric IPv4 one, * or "
               "an [IPv6] one\n"
               "mpbrokerd: 10 bad settings\n");
}

/* Bad values from the environment name the variable. */
static void test_bad_env_values(void **state) {
    (void)state;
    setenv("MPB_MAX_FRAME", "huge", 1);
    setenv("MPB_LOG_LEVEL", "verbose", 1);
    loaded_t l = load(NULL, NULL);
    unsetenv("MPB_MAX_FRAME");
    unsetenv("MPB_LOG_LEVEL");
    expect_bad(l, "mpbrokerd: MPB_MAX_FRAME: 'huge' is not a size from 4096 to 1g (bytes; k, m, "
                  "g suffixes)\n"
                  "mpbrokerd: MPB_LOG_LEVEL: 'verbose' is not debug, info, warn or error\n"
                  "mpbrokerd: 2 bad settings\n");
}

/* The file's syntax, each problem at its line. */
static void test_bad_file_lines(void **state) {
    (void)state;
    char want[4096];
    snprintf(want, sizeof want,
             "mpbrokerd: %1$s:1: expected 'key = value' (a line without '=')\n"
             "mpbrokerd: %1$s:2: no key before '='\n"
             "mpbrokerd: %1$s:3: unknown key 'max_frame' (did you mean 'max-frame'?)\n"
             "mpbrokerd: %1$s:4: unknown key 'colour'\n"
             "mpbrokerd: %1$s:5: the authkey itself does not belong in a config file: put it "
             "in a file of its own (mode 0600) and name that with authkey-file\n"
             "mpbrokerd: %1$s:6: a config file cannot name another one\n"
             "mpbrokerd: %1$s:7: max-key: empty value\n"
             "mpbrokerd: %1$s:8: data-dir: no closing '\"'\n"
             "mpbrokerd: %1$s:9: endpoint-file: unexpected 'x' after the quoted value\n"
             "mpbrokerd: %1$s:11: max-value: given twice (first on line 10)\n"
             "mpbrokerd: %1$s:12: heartbeat-ms: '0' is not a number of milliseconds from 10 "
             "to 600000\n"
             "mpbrokerd: 11 bad settings\n",
             cfg_path);
    expect_bad(load("s3cr3tkeypasted\n"
                    "= 5\n"
                    "max_frame = 8m\n"
                    "colour = blue\n"
                    "authkey = hunter2\n"
                    "config = /etc/other.conf\n"
                    "max-key =   # nothing\n"
                    "data-dir = \"/unclosed\n"
                    "endpoint-file = \"/e\" x\n"
                    "max-value = 1m\n"
                    "max-value = 2m\n"
                    "heartbeat-ms = 0\n",
                    NULL),
               want);
}

/* Settings that are each valid but not together, and a file that cannot be read. */
static void test_cross_checks_and_missing_file(void **state) {
    (void)state;
    expect_bad(load(NULL, "--max-frame", "4096", "--max-value", "4k", "--heartbeat-ms", "1000",
                    "--session-ttl-ms", "1999", NULL),
               "mpbrokerd: max-value (4096, flag --max-value) plus max-key (65536, default) "
               "plus 64 must fit in max-frame (4096, flag --max-frame)\n"
               "mpbrokerd: session-ttl-ms (1999, flag --session-ttl-ms) must be at least twice "
               "heartbeat-ms (1000, flag --heartbeat-ms)\n"
               "mpbrokerd: 2 bad settings\n");
    expect_bad(load(NULL, "--config", "/nonexistent/mpb.conf", NULL),
               "mpbrokerd: flag --config: cannot read config file /nonexistent/mpb.conf: No "
               "such file or directory\n"
               "mpbrokerd: 1 bad setting\n");
    expect_bad(load(NULL, "--config", "", NULL), "mpbrokerd: --config: empty path\n"
                                                 "mpbrokerd: 1 bad setting\n");
    expect_bad(load(NULL, "stray", NULL),
               "mpbrokerd: unexpected argument 'stray' (try 'mpbrokerd --help')\n"
               "mpbrokerd: 1 bad setting\n");
    loaded_t l = load(NULL, "--no-such-flag", NULL);
    assert_int_equal(l.rc, CONF_BAD);
    assert_non_null(strstr(l.err, "mpbrokerd: try 'mpbrokerd --help'\n"));
    assert_null(l.conf);
    done(&l);
}

/* config_print writes a file this parser takes back, to the same settings. */
static void test_print_reads_back(void **state) {
    (void)state;
    loaded_t a = load(NULL, "-l", "tcp://127.0.0.1:7100", "--max-frame", "3m", "--fsync", "no",
                      "--log-format", "json", "--idle-ms", "2500", "-d", "/data dir", NULL);
    assert_int_equal(a.rc, CONF_RUN);
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    assert_non_null(f);
    config_print(a.conf, f);
    fclose(f);
    assert_non_null(strstr(text, "max-frame = 3145728  # flag --max-frame\n"));
    assert_non_null(strstr(text, "max-value = 1048576  # default\n"));
    loaded_t b = load(text, NULL);
    if (b.rc != CONF_RUN) fail_msg("printed config not taken back:\n%s\n%s", text, b.err);
    const config_t *ga = config_get(a.conf), *gb = config_get(b.conf);
    assert_int_equal(gb->nlisten, 1);
    assert_string_equal(gb->listen[0], ga->listen[0]);
    assert_string_equal(gb->data_dir, "/data dir");
    assert_int_equal(memcmp(&ga->limits, &gb->limits, sizeof ga->limits), 0);
    assert_int_equal(gb->fsync, ga->fsync);
    assert_true(gb->log_json);
    free(text);
    done(&a);
    done(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_good_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_flag_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_endpoints_and_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_env_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_file_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_checks_and_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_reads_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
