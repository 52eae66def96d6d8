/* test_cli.c - the `mpb` command line against a real broker: each case runs the built CLI as a
 * child process and checks its stdout, its stderr and its exit status exactly (0 done, 1 the
 * operation failed, 2 bad usage, 3 no such key/object or --timeout 0 on an empty or full queue,
 * 75 timed out). What the CLI writes is cross-checked
 * through libmpb where the bytes matter (an integer key must arrive as an integer). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "th.h"

static th_broker_t B;

/* ---- running the CLI ---- */

static th_run_t R; /* the last run */

/* Runs mpb with the given arguments (NULL-terminated) and returns its exit status; R holds
 * what it printed. */
static int vrun(const char *first, va_list ap) {
    const char *argv[64] = {th_mpb_cli};
    int argc = 1;
    for (const char *a = first; a && argc < 62; a = va_arg(ap, const char *))
        argv[argc++] = a;
    argv[argc] = NULL;
    const th_run_opts_t o = {.timeout_ms = 30000};
    return th_run(argv, &o, &R);
}

static int run(const char *first, ...) {
    va_list ap;
    va_start(ap, first);
    int st = vrun(first, ap);
    va_end(ap);
    return st;
}

static void show(const char *why) {
    fail_msg("%s\n  exit %d\n  stdout: \"%s\"\n  stderr: \"%s\"", why, R.status, R.out, R.err);
}

/* mpb ARGS... exits with status and, when out is given, prints exactly out on stdout and
 * nothing on stderr; else nothing on stdout and a message holding words (one line, starting
 * "mpb: ") on stderr. EXPECT_OUT and EXPECT_ERR say which. */
static void expect(int status, const char *out, const char *words, const char *first, ...) {
    va_list ap;
    va_start(ap, first);
    vrun(first, ap);
    va_end(ap);
    if (R.status != status) show("wrong exit status");
    if (out) {
        if (strcmp(R.out, out)) show(out);
        if (R.err[0]) show("stderr not empty");
        return;
    }
    if (R.out[0]) show("stdout not empty");
    if (strncmp(R.err, "mpb: ", 5)) show("stderr does not start with \"mpb: \"");
    if (!strstr(R.err, words)) show(words);
}
#define EXPECT_OUT(status, out, ...)   expect(status, out, NULL, __VA_ARGS__, NULL)
#define EXPECT_ERR(status, words, ...) expect(status, NULL, words, __VA_ARGS__, NULL)

/* --json errors: exit status, nothing on stderr, stdout one JSON object
 * {"error": {"code": code, "message": "...words..."}}. */
#define EXPECT_JSON_ERR(status, code, words, ...)                                                  \
    expect_json_err(status, code, words, "--json", __VA_ARGS__, NULL)
static void expect_json_err(int status, const char *code, const char *words, const char *first,
                            ...) {
    va_list ap;
    va_start(ap, first);
    vrun(first, ap);
    va_end(ap);
    if (R.status != status) show("wrong exit status");
    if (R.err[0]) show("stderr not empty");
    json_error_t je;
    json_t *j = json_loads(R.out, 0, &je);
    if (!j) show("stdout is not JSON");
    json_t *e = json_object_get(j, "error");
    if (!json_is_object(e)) show("no \"error\" object");
    if (!json_is_string(json_object_get(e, "code")) ||
        strcmp(json_string_value(json_object_get(e, "code")), code))
        show(code);
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (!msg || !strstr(msg, words)) show(words);
    json_decref(j);
}

static json_t *json_of_stdout(void) {
    json_error_t je;
    json_t *j = json_loads(R.out, JSON_DECODE_ANY, &je);
    if (!j) fail_msg("stdout is not JSON (%s): \"%s\"", je.text, R.out);
    return j;
}

/* ---- info, ping ---- */

static void test_info_prints_lines(void **state) {
    (void)state;
    assert_int_equal(run("info", NULL), 0);
    if (R.err[0]) show("stderr not empty");
    const char *want[] = {"version", "uptime_s",  "pid",  "clients",    "sessions", "objects",
                          "memory",  "anonymous", "refs", "encryption", "persist"};
    char *save, *line = strtok_r(R.out, "\n", &save);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        if (!line) fail_msg("no line for %s", want[i]);
        char k[32], v[64];
        if (sscanf(line, "%31s %63s", k, v) != 2) fail_msg("line \"%s\" is not KEY VALUE", line);
        assert_string_equal(k, want[i]);
        /* the value starts in column 12 (%-10s and a space) */
        assert_true(strlen(line) > 11 && line[10] == ' ' && line[11] != ' ');
        if (i == 0) {
            char ver[32];
            snprintf(ver, sizeof ver, "%d.%d.%d", MPB_VERSION_MAJOR, MPB_VERSION_MINOR,
                     MPB_VERSION_PATCH);
            assert_string_equal(v, ver);
        } else if (!strcmp(k, "persist")) {
            if (!strstr(line, "fsync everysec, log ")) fail_msg("persist line \"%s\"", line);
        } else if (!strcmp(k, "encryption")) {
            assert_string_equal(v, "curve"); /* the test broker listens on tcp:// */
        } else {
            char *end;
            long long n = strtoll(v, &end, 10);
            if (*end || n < 0) fail_msg("%s is \"%s\", not a count", k, v);
            if (!strcmp(k, "clients") || !strcmp(k, "sessions")) assert_true(n >= 1);
        }
        line = strtok_r(NULL, "\n", &save);
    }
    assert_null(line);
}

static void test_info_json(void **state) {
    (void)state;
    assert_int_equal(run("set", "dict/ij", "a", "1", NULL), 0);
    assert_int_equal(run("--json", "info", NULL), 0);
    if (R.err[0]) show("stderr not empty");
    json_t *j = json_of_stdout();
    assert_true(json_is_object(j));
    assert_true(json_is_string(json_object_get(j, "version")));
    const char *ints[] = {"uptime_s", "clients", "sessions", "objects"};
    for (size_t i = 0; i < 4; i++)
        if (!json_is_integer(json_object_get(j, ints[i])))
            fail_msg("%s is not an integer", ints[i]);
    assert_true(json_integer_value(json_object_get(j, "clients")) >= 1);
    assert_true(json_integer_value(json_object_get(j, "sessions")) >= 1);
    assert_true(json_integer_value(json_object_get(j, "objects")) >= 1);
    json_decref(j);

    /* One object's facts. */
    assert_int_equal(run("info", "dict/ij", NULL), 0);
    if (!strstr(R.out, "kind       dict\n") || !strstr(R.out, "name       ij\n") ||
        !strstr(R.out, "size       1\n"))
        show("info dict/ij");
    assert_int_equal(run("--json", "info", "dict/ij", NULL), 0);
    j = json_of_stdout();
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "dict");
    assert_string_equal(json_string_value(json_object_get(j, "name")), "ij");
    assert_int_equal(json_integer_value(json_object_get(j, "size")), 1);
    json_decref(j);
    EXPECT_ERR(3, "no object dict/none", "info", "dict/none");
    EXPECT_ERR(1, "ij is a dict, not a list", "info", "list/ij");
    EXPECT_ERR(2, "info takes at most one object", "info", "dict/a", "dict/b");
}

static void test_ping(void **state) {
    (void)state;
    EXPECT_OUT(0, "pong\n", "ping");
    EXPECT_OUT(0, "{\"ok\":true}\n", "--json", "ping");
    EXPECT_ERR(2, "ping takes no arguments", "ping", "x");
}

/* ---- dicts ---- */

static void test_dict_set_get(void **state) {
    (void)state;
    EXPECT_OUT(0, "", "set", "dict/u", "alice", "{\"age\":30}");
    EXPECT_OUT(0, "{\"age\":30}\n", "get", "dict/u", "alice");
    EXPECT_OUT(0, "{\"alice\":{\"age\":30}}\n", "get", "dict/u");
    EXPECT_OUT(0, "{\"ok\":true}\n", "--json", "set", "dict/u", "bob",
               "[1,\"two\",null,true,1.5,{\"$bytes\":\"AAE=\"}]");
    EXPECT_OUT(0, "[1,\"two\",null,true,1.5,{\"$bytes\":\"AAE=\"}]\n", "get", "dict/u", "bob");
    EXPECT_OUT(0,
               "{\"alice\":{\"age\":30},\"bob\":[1,\"two\",null,true,1.5,{\"$bytes\":\"AAE=\"}]}\n",
               "get", "dict/u");
    EXPECT_OUT(0, "{\"age\":30}\n", "--json", "get", "dict/u", "alice");
    /* Replacing a value. */
    EXPECT_OUT(0, "", "set", "dict/u", "alice", "\"gone\"");
    EXPECT_OUT(0, "\"gone\"\n", "get", "dict/u", "alice");
    EXPECT_OUT(0, "", "set", "dict/u", "alice", "{\"age\":30}");

    /* What libmpb sees: a string key, a msgpack map. */
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    void *v;
    size_t vn;
    assert_int_equal(mpb_dict_open(c, "u", &d), 0);
    assert_int_equal(mpb_dict_get(d,
                                  "\xa5"
                                  "alice",
                                  6, &v, &vn),
                     0);
    assert_int_equal(vn, 6);
    assert_memory_equal(v,
                        "\x81\xa3"
                        "age"
                        "\x1e",
                        6);
    mpb_free(v);
    mpb_dict_close(&d);
    mpb_close(&c);
}

static void test_key_json(void **state) {
    (void)state;
    EXPECT_OUT(0, "", "--key-json", "set", "dict/kj", "5", "\"five\"");
    EXPECT_OUT(0, "\"five\"\n", "--key-json", "get", "dict/kj", "5");
    /* without --key-json, 5 is the string "5": another key, and the error names the integer */
    EXPECT_ERR(3, "no string key \"5\" in dict/kj, but the integer key 5 exists", "get", "dict/kj",
               "5");
    EXPECT_OUT(0, "", "--key-json", "set", "dict/kj", "[1,2]", "12");
    EXPECT_OUT(0, "12\n", "--key-json", "get", "dict/kj", "[1, 2]");
    /* a negative key reaches the command intact (options end at the command) */
    EXPECT_OUT(0, "", "--key-json", "set", "dict/kj", "-7", "\"neg\"");
    EXPECT_OUT(0, "\"neg\"\n", "--key-json", "get", "dict/kj", "-7");
    /* The whole dict: with any key not a string, an array of [key, value] pairs in insertion
     * order, each key as its JSON value. */
    EXPECT_OUT(0, "[[5,\"five\"],[[1,2],12],[-7,\"neg\"]]\n", "get", "dict/kj");
    EXPECT_OUT(0, "[[5,\"five\"],[[1,2],12],[-7,\"neg\"]]\n", "--json", "get", "dict/kj");
    EXPECT_OUT(0, "", "--key-json", "del", "dict/kj", "-7");
    EXPECT_ERR(3, "no key -7", "--key-json", "get", "dict/kj", "-7");
    EXPECT_ERR(2, "is not JSON", "--key-json", "get", "dict/kj", "{nope");

    /* The integer 5 and the string "5" are two keys; the whole-dict view shows both, as
     * [key, value] pairs in insertion order. */
    EXPECT_OUT(0, "", "set", "dict/kc", "5", "\"string\"");
    EXPECT_OUT(0, "", "--key-json", "set", "dict/kc", "5", "\"integer\"");
    EXPECT_OUT(0, "[[\"5\",\"string\"],[5,\"integer\"]]\n", "get", "dict/kc");
    /* Insertion order, not key order: the integer first this time. */
    EXPECT_OUT(0, "", "--key-json", "set", "dict/kd", "5", "\"integer\"");
    EXPECT_OUT(0, "", "set", "dict/kd", "5", "\"string\"");
    EXPECT_OUT(0, "", "set", "dict/kd", "a", "1");
    EXPECT_OUT(0, "[[5,\"integer\"],[\"5\",\"string\"],[\"a\",1]]\n", "get", "dict/kd");
    /* Once the only non-string key is gone, it is an object again. */
    EXPECT_OUT(0, "", "--key-json", "del", "dict/kd", "5");
    EXPECT_OUT(0, "{\"5\":\"string\",\"a\":1}\n", "get", "dict/kd");

    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    void *v;
    size_t vn;
    assert_int_equal(mpb_dict_open(c, "kj", &d), 0);
    assert_int_equal(mpb_dict_get(d, "\x05", 1, &v, &vn), 0); /* the integer 5 */
    assert_int_equal(vn, 5);
    assert_memory_equal(v,
                        "\xa4"
                        "five",
                        5);
    mpb_free(v);
    mpb_dict_close(&d);
    mpb_close(&c);
}

static void test_incr(void **state) {
    (void)state;
    EXPECT_OUT(0, "1\n", "incr", "dict/c", "hits");
    EXPECT_OUT(0, "6\n", "incr", "dict/c", "hits", "5");
    EXPECT_OUT(0, "4\n", "incr", "dict/c", "hits", "-2");
    EXPECT_OUT(0, "4\n", "get", "dict/c", "hits");
    EXPECT_ERR(2, "increment 'x' is not an integer", "incr", "dict/c", "hits", "x");
    EXPECT_ERR(2, "incr takes dict/NAME KEY [N]", "incr", "dict/c");
    EXPECT_ERR(2, "incr works on dicts", "incr", "list/c", "hits");
    EXPECT_OUT(0, "", "set", "dict/c", "s", "\"text\"");
    EXPECT_ERR(1, "not an integer", "incr", "dict/c", "s");
    EXPECT_OUT(0, "", "set", "dict/c", "big", "9223372036854775807");
    EXPECT_ERR(1, "overflows", "incr", "dict/c", "big");
    EXPECT_OUT(0, "9223372036854775807\n", "get", "dict/c", "big");
}

/* ---- lists ---- */

static void test_list(void **state) {
    (void)state;
    EXPECT_OUT(0, "", "append", "list/p", "1");
    EXPECT_OUT(0, "[1]\n", "get", "list/p");
    EXPECT_OUT(0, "1\n", "get", "list/p", "-1");
    EXPECT_OUT(0, "{\"ok\":true}\n", "--json", "append", "list/p", "\"x\"");
    EXPECT_OUT(0, "[1,\"x\"]\n", "get", "list/p");
    EXPECT_OUT(0, "\"x\"\n", "get", "list/p", "-1");
    EXPECT_OUT(0, "1\n", "get", "list/p", "0");
    EXPECT_OUT(0, "", "set", "list/p", "0", "{\"a\":null}");
    EXPECT_OUT(0, "{\"a\":null}\n", "get", "list/p", "0");
    EXPECT_ERR(3, "out of range", "get", "list/p", "5");
    EXPECT_ERR(3, "out of range", "get", "list/p", "-3");
    EXPECT_ERR(3, "out of range", "set", "list/p", "9", "1");
    EXPECT_ERR(2, "list index 'abc' is not an integer", "get", "list/p", "abc");
    EXPECT_ERR(2, "append takes list/NAME VALUE", "append", "list/p");
    EXPECT_ERR(2, "append works on lists", "append", "dict/p", "1");
    /* Looking must not create: reading a name that does not exist is "no such object" (exit
     * 3) and leaves no object behind. */
    EXPECT_ERR(3, "no object list/never", "get", "list/never");
    EXPECT_JSON_ERR(3, "ENOOBJ", "no object list/never", "get", "list/never");
    EXPECT_ERR(3, "typo", "get", "dict/typo", "k");
    EXPECT_ERR(3, "no object dict/typo", "get", "dict/typo");
    EXPECT_ERR(3, "list index 0 out of range (len 0)", "get", "list/never", "0");
    EXPECT_OUT(0, "", "ls", "never");
    EXPECT_OUT(0, "", "ls", "typo");
    EXPECT_ERR(3, "no object list/never", "info", "list/never");
    EXPECT_ERR(3, "no object dict/typo", "info", "dict/typo");
}

static void test_del(void **state) {
    (void)state;
    EXPECT_OUT(0, "", "set", "dict/dd", "a", "1");
    EXPECT_OUT(0, "", "set", "dict/dd", "b", "2");
    EXPECT_OUT(0, "", "del", "dict/dd", "a");
    EXPECT_ERR(3, "no key \"a\" in dict/dd", "get", "dict/dd", "a");
    EXPECT_ERR(3, "no key", "del", "dict/dd", "a");
    EXPECT_OUT(0, "{\"b\":2}\n", "get", "dict/dd");
    for (int i = 1; i <= 3; i++) {
        char v[4];
        snprintf(v, sizeof v, "%d", i);
        EXPECT_OUT(0, "", "append", "list/dq", v);
    }
    EXPECT_OUT(0, "", "del", "list/dq", "0");
    EXPECT_OUT(0, "[2,3]\n", "get", "list/dq");
    EXPECT_OUT(0, "{\"ok\":true}\n", "--json", "del", "list/dq", "-1");
    EXPECT_OUT(0, "[2]\n", "get", "list/dq");
    EXPECT_ERR(3, "out of range", "del", "list/dq", "4");
    /* The whole object. */
    EXPECT_OUT(0, "", "del", "dict/dd");
    EXPECT_OUT(0, "", "ls", "dict/dd");
    EXPECT_ERR(3, "no object dict/dd", "info", "dict/dd");
    EXPECT_ERR(3, "no object dict/dd", "del", "dict/dd");
    EXPECT_ERR(1, "dq is a list, not a dict", "del", "dict/dq");
    EXPECT_OUT(0, "", "del", "list/dq");
    EXPECT_ERR(2, "del takes OBJ [KEY|INDEX]", "del");
    /* Deleting from a missing object: exit 3, and nothing is created. */
    EXPECT_ERR(3, "deltypo", "del", "dict/deltypo", "k");
    EXPECT_ERR(3, "pop from empty list", "del", "list/delnever", "0");
    EXPECT_OUT(0, "", "ls", "deltypo");
    EXPECT_OUT(0, "", "ls", "delnever");
    EXPECT_ERR(3, "no object dict/deltypo", "info", "dict/deltypo");
    EXPECT_ERR(3, "no object list/delnever", "info", "list/delnever");
}

/* ---- ls, on a broker of its own so the listing is exact ---- */

static void test_ls(void **state) {
    (void)state;
    th_broker_t b2;
    th_broker_start(&b2, NULL);
    th_use_broker_env(&b2);
    EXPECT_OUT(0, "", "ls");
    EXPECT_OUT(0, "", "set", "dict/a", "x", "1");
    EXPECT_OUT(0, "", "set", "dict/b", "y", "1");
    EXPECT_OUT(0, "", "set", "dict/b", "z", "2");
    EXPECT_OUT(0, "", "append", "list/l", "1");
    EXPECT_OUT(0, "dict/a\t1\ndict/b\t2\nlist/l\t1\n", "ls");
    EXPECT_OUT(0, "dict/a\t1\ndict/b\t2\n", "ls", "dict/*");
    EXPECT_OUT(0, "list/l\t1\n", "ls", "l*");
    EXPECT_OUT(0, "dict/b\t2\n", "ls", "*/b");
    EXPECT_OUT(0, "", "ls", "nomatch*");
    EXPECT_OUT(0,
               "[{\"kind\":\"dict\",\"name\":\"a\",\"size\":1},{\"kind\":\"dict\",\"name\":\"b\","
               "\"size\":2},{\"kind\":\"list\",\"name\":\"l\",\"size\":1}]\n",
               "--json", "ls");
    EXPECT_ERR(2, "ls takes at most one pattern", "ls", "a", "b");

    /* More objects than one page (the CLI asks 200 at a time). */
    mpb_client_t *c = NULL;
    assert_int_equal(th_connect_opts(&b2, NULL, &c), 0);
    for (int i = 0; i < 450; i++) {
        char name[16];
        mpb_dict_t *d;
        snprintf(name, sizeof name, "many%03d", i);
        assert_int_equal(mpb_dict_open(c, name, &d), 0);
        mpb_dict_close(&d);
    }
    mpb_close(&c);
    assert_int_equal(run("ls", NULL), 0);
    int lines = 0;
    for (char *p = R.out; (p = strchr(p, '\n')); p++)
        lines++;
    assert_int_equal(lines, 453);
    assert_non_null(strstr(R.out, "dict/many000\t0\n"));
    assert_non_null(strstr(R.out, "dict/many449\t0\n"));
    assert_int_equal(run("ls", "dict/many1*", NULL), 0);
    lines = 0;
    for (char *p = R.out; (p = strchr(p, '\n')); p++)
        lines++;
    assert_int_equal(lines, 100);

    th_broker_stop(&b2);
    th_use_broker_env(&B);
}

/* ---- failures ---- */

static void test_missing_key_exits_3(void **state) {
    (void)state;
    EXPECT_OUT(0, "", "set", "dict/mk", "here", "1");
    EXPECT_ERR(3, "no key \"nobody\" in dict/mk", "get", "dict/mk", "nobody");
    assert_string_equal(R.err, "mpb: get: no key \"nobody\" in dict/mk\n");
    EXPECT_JSON_ERR(3, "ENOKEY", "no key \"nobody\"", "get", "dict/mk", "nobody");
    EXPECT_JSON_ERR(3, "ENOOBJ", "no object dict/none", "info", "dict/none");
    EXPECT_JSON_ERR(3, "EINDEX", "out of range", "get", "list/empty", "0");
    EXPECT_JSON_ERR(1, "EKIND", "is a dict", "get", "list/mk");
}

static void test_wrong_authkey_exits_1(void **state) {
    (void)state;
    char path[400];
    snprintf(path, sizeof path, "%s/wrongkey", B.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not the key\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0); /* else the CLI warns that others can read it */
    EXPECT_ERR(1, "authentication failed", "-k", path, "info");
    EXPECT_ERR(1, "authentication failed", "--authkey-file", path, "get", "dict/u", "alice");
    EXPECT_JSON_ERR(1, "EAUTH", "authentication failed", "-k", path, "info");
    /* From the environment too. */
    setenv("MPB_AUTHKEY_FILE", path, 1);
    EXPECT_ERR(1, "authentication failed", "ping");
    unsetenv("MPB_AUTHKEY_FILE");
    setenv("MPB_AUTHKEY", "also the wrong key", 1); /* 16 bytes or more: no warning */
    EXPECT_ERR(1, "authentication failed", "ping");
    /* The right key given as MPB_AUTHKEY itself works. */
    size_t kl;
    const char *k = th_authkey(&B, &kl);
    setenv("MPB_AUTHKEY", k, 1);
    EXPECT_OUT(0, "pong\n", "ping");
    /* No key at all. */
    unsetenv("MPB_AUTHKEY");
    EXPECT_ERR(1, "no authkey", "ping");
    EXPECT_JSON_ERR(1, "EINVAL", "no authkey", "ping");
    snprintf(path, sizeof path, "%s/absent", B.dir);
    EXPECT_ERR(1, "cannot read authkey file", "-k", path, "ping");
    th_use_broker_env(&B);
}

static void test_unreachable_broker_exits_1(void **state) {
    (void)state;
    /* nothing listens on port 1: said at once, not after the timeout (test_cli3 times it) */
    EXPECT_ERR(1, "connection refused by 127.0.0.1:1", "-e", "tcp://127.0.0.1:1",
               "--connect-timeout", "1", "info");
    if (R.ms > 5000) fail_msg("took %lld ms with --connect-timeout 1", (long long)R.ms);
    EXPECT_JSON_ERR(1, "ECONN", "connection refused by 127.0.0.1:1", "-e", "tcp://127.0.0.1:1",
                    "--connect-timeout", "0.5", "ping");
    setenv("MPB_ENDPOINT", "tcp://127.0.0.1:1", 1);
    EXPECT_ERR(1, "connection refused by 127.0.0.1:1", "--connect-timeout", "0.3", "ping");
    /* -e wins over the environment. */
    EXPECT_OUT(0, "pong\n", "-e", B.endpoint, "ping");
    th_use_broker_env(&B);
    EXPECT_ERR(1, "bad endpoint 'nonsense'", "-e", "nonsense", "ping");
}

static void test_usage_errors_exit_2(void **state) {
    (void)state;
    EXPECT_ERR(2, "value '{bad' is not JSON", "set", "dict/u", "x", "{bad");
    EXPECT_ERR(2, "is not JSON", "append", "list/p", "[1,");
    EXPECT_ERR(2, "is not JSON", "set", "dict/u", "x", "");
    EXPECT_ERR(2, "unknown command 'frob'", "frob");
    EXPECT_ERR(2, "'dictu' is not kind/name", "get", "dictu");
    EXPECT_ERR(2, "is not kind/name", "get", "dict/");
    EXPECT_ERR(2, "is not kind/name", "get", "/u");
    EXPECT_ERR(2, "'bogus'", "get", "bogus/x");
    EXPECT_ERR(2, "get takes OBJ [KEY|INDEX]", "get");
    EXPECT_ERR(2, "set takes OBJ KEY VALUE", "set", "dict/u", "x");
    EXPECT_ERR(2, "--connect-timeout 'abc' is not a number of seconds", "--connect-timeout", "abc",
               "ping");
    /* No command, or an unknown option: the usage text, on stderr. */
    assert_int_equal(run(NULL), 2);
    if (R.out[0] || !strstr(R.err, "usage: mpb")) show("usage on stderr");
    assert_int_equal(run("--bogus", "ping", NULL), 2);
    if (R.out[0] || !strstr(R.err, "usage: mpb")) show("usage on stderr");
    /* --help: the usage text on stdout, success. */
    assert_int_equal(run("--help", NULL), 0);
    if (strncmp(R.out, "usage: mpb", 10) || R.err[0]) show("usage on stdout");
    /* Nothing was stored by any of them. */
    EXPECT_ERR(3, "no key", "get", "dict/u", "x");
}

static void test_kind_mismatch_exits_1(void **state) {
    (void)state;
    EXPECT_OUT(0, "", "set", "dict/km", "a", "1");
    EXPECT_OUT(0, "", "append", "list/kl", "1");
    EXPECT_ERR(1, "km is a dict", "get", "list/km");
    assert_string_equal(R.err, "mpb: get: km is a dict, not a list\n");
    EXPECT_ERR(1, "km is a dict", "get", "list/km", "0");
    EXPECT_ERR(1, "km is a dict", "append", "list/km", "1");
    EXPECT_ERR(1, "kl is a list", "get", "dict/kl");
    EXPECT_ERR(1, "kl is a list", "set", "dict/kl", "a", "1");
    EXPECT_ERR(1, "kl is a list", "incr", "dict/kl", "a");
    /* Both are as they were. */
    EXPECT_OUT(0, "{\"a\":1}\n", "get", "dict/km");
    EXPECT_OUT(0, "[1]\n", "get", "list/kl");
}

/* ---- --json covers usage errors too ---- */

/* mpb ARGS... exits 2 and prints exactly this EUSAGE error object on stdout, nothing else. */
#define EXPECT_USAGE_JSON(json, ...) EXPECT_OUT(2, json "\n", "--json", __VA_ARGS__)

static void test_json_usage_errors(void **state) {
    (void)state;
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"unknown command 'bogus'\"}}",
                      "bogus");
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"get takes OBJ "
                      "[KEY|INDEX]\",\"op\":\"get\"}}",
                      "get");
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"increment 'notanumber' is not "
                      "an integer\",\"op\":\"incr\"}}",
                      "incr", "dict/ju", "hits", "notanumber");
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"value '{not json' is not "
                      "JSON: JSON: string or '}' expected near 'not' at line 1 column 4\","
                      "\"op\":\"set\"}}",
                      "set", "dict/ju", "k", "{not json");
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"key '{bad' is not JSON: JSON: "
                      "string or '}' expected near 'bad' at line 1 column 4\",\"op\":\"set\"}}",
                      "--key-json", "set", "dict/ju", "{bad", "1");
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"'dictu' is not kind/name "
                      "(e.g. dict/users, list/jobs)\",\"op\":\"get\"}}",
                      "get", "dictu");
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"--timeout 'soon' is not a "
                      "number of seconds\",\"op\":\"get\"}}",
                      "get", "queue/x", "--timeout", "soon");
    /* Before any command: no "op". Options are all read first, so --json may come after. */
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"no command (mpb --help lists "
                      "them)\"}}",
                      "--key-json");
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"unknown option '--bogus'\"}}",
                      "--bogus", "ping");
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"unknown option '-x'\"}}", "-x",
                      "ping");
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"option '-e' needs a value\"}}",
                      "-e");
    EXPECT_OUT(2,
               "{\"error\":{\"code\":\"EUSAGE\",\"message\":\"--connect-timeout 'abc' is not a "
               "number of seconds\"}}\n",
               "--connect-timeout", "abc", "--json", "ping");
    /* Bytes that are not UTF-8 in what is echoed still give valid JSON. */
    EXPECT_USAGE_JSON("{\"error\":{\"code\":\"EUSAGE\",\"message\":\"unknown command 'b?d'\"}}",
                      "b\xff"
                      "d");
    /* Text mode is unchanged: the message and the pointer to --help on stderr. */
    EXPECT_ERR(2, "unknown command 'bogus'", "bogus");
    assert_string_equal(R.err, "mpb: unknown command 'bogus'\n(mpb --help for usage)\n");
    EXPECT_ERR(2, "increment", "incr", "dict/ju", "hits", "notanumber");
    assert_string_equal(R.err,
                        "mpb: increment 'notanumber' is not an integer\n(mpb --help for usage)\n");
    assert_int_equal(run("--bogus", "ping", NULL), 2);
    const char *head = "mpb: unknown option '--bogus'\nusage: mpb";
    if (R.out[0] || strncmp(R.err, head, strlen(head)))
        show("unknown option, then the usage text, on stderr");
    /* Nothing was stored by any of them. */
    EXPECT_ERR(3, "no object dict/ju", "get", "dict/ju");
}

/* Every numeric option: garbage, NaN, out of range and overflowing values are refused (or, for
 * a timeout too long for the library, mean forever) instead of wrapping. */
static void test_numeric_options(void **state) {
    (void)state;
    const char *bad_timeouts[] = {"nan", "-1", "1x", "", "0x", "-inf", " "};
    for (size_t i = 0; i < sizeof bad_timeouts / sizeof *bad_timeouts; i++) {
        char want[64];
        snprintf(want, sizeof want, "--timeout '%s' is not a number of seconds", bad_timeouts[i]);
        EXPECT_ERR(2, want, "get", "queue/num", "--timeout", bad_timeouts[i]);
    }
    EXPECT_ERR(2, "--timeout 'NaN' is not", "wait", "event/num", "--timeout=NaN");
    EXPECT_ERR(2, "--timeout 'nan' is not", "lock", "lock/num", "--timeout", "nan", "--", "true");
    EXPECT_ERR(2, "--timeout needs seconds", "get", "queue/num", "--timeout");
    EXPECT_ERR(2, "--connect-timeout 'nan' is not a number of seconds", "--connect-timeout", "nan",
               "ping");
    EXPECT_ERR(2, "--connect-timeout '0' is not", "--connect-timeout", "0", "ping");
    EXPECT_ERR(2, "--connect-timeout '7200' is not", "--connect-timeout", "7200", "ping");
    EXPECT_ERR(2, "--conflict-exit-code '256' is not 0..255", "lock", "lock/num",
               "--conflict-exit-code", "256", "--", "true");
    EXPECT_ERR(2, "--conflict-exit-code '-1' is not 0..255", "lock", "lock/num",
               "--conflict-exit-code", "-1", "--", "true");
    EXPECT_ERR(2, "--conflict-exit-code '99999999999999999999' is not 0..255", "lock", "lock/num",
               "--conflict-exit-code", "99999999999999999999", "--", "true");
    EXPECT_ERR(2, "increment '9223372036854775808' is not an integer", "incr", "dict/num", "k",
               "9223372036854775808");
    EXPECT_ERR(2, "increment '1.5' is not an integer", "incr", "dict/num", "k", "1.5");
    EXPECT_ERR(2, "list index '99999999999999999999' is not an integer", "get", "list/num",
               "99999999999999999999");
    /* The extremes that do fit work. */
    EXPECT_OUT(0, "-9223372036854775808\n", "incr", "dict/num", "k", "-9223372036854775808");
    EXPECT_ERR(1, "overflows", "incr", "dict/num", "k", "-1");
    /* A timeout past INT_MAX ms (24.8 days) waits forever, not wrapped to a negative or tiny
     * bound: the event is set by another process after 400 ms and the wait sees it. */
    const char *longs[] = {"2147484", "31536000", "1e300", "inf"};
    for (size_t i = 0; i < sizeof longs / sizeof *longs; i++) {
        EXPECT_OUT(0, "", "clear", "event/numlong");
        pid_t p = fork();
        if (p == 0) {
            struct timespec ts = {0, 400 * 1000000L};
            nanosleep(&ts, NULL);
            int dn = open("/dev/null", O_WRONLY);
            dup2(dn, 1);
            dup2(dn, 2);
            execl(th_mpb_cli, th_mpb_cli, "set", "event/numlong", (char *)NULL);
            _exit(127);
        }
        EXPECT_OUT(0, "", "wait", "event/numlong", "--timeout", longs[i]);
        if (R.ms < 300) show("returned before the event was set");
        assert_int_equal(th_wait(p, 10), 0);
    }
    /* 2147483.647 s is the longest bound; it is a bound (the wait is answered at once here). */
    EXPECT_OUT(0, "", "wait", "event/numlong", "--timeout", "2147483.647");
}

/* ---- the whole dict keeps every key ---- */

static void test_dict_dump_every_key(void **state) {
    (void)state;
    /* String keys that differ only after a NUL are two keys, in a JSON object. */
    EXPECT_OUT(0, "", "--key-json", "set", "dict/nul", "\"a\\u0000b\"", "1");
    EXPECT_OUT(0, "", "--key-json", "set", "dict/nul", "\"a\\u0000c\"", "2");
    EXPECT_OUT(0, "", "set", "dict/nul", "a", "3");
    EXPECT_OUT(0, "{\"a\\u0000b\":1,\"a\\u0000c\":2,\"a\":3}\n", "get", "dict/nul");
    EXPECT_OUT(0, "{\"a\\u0000b\":1,\"a\\u0000c\":2,\"a\":3}\n", "--json", "get", "dict/nul");
    EXPECT_OUT(0, "2\n", "--key-json", "get", "dict/nul", "\"a\\u0000c\"");

    /* Any key that is not a UTF-8 string makes it an array of [key, value] pairs, in insertion
     * order: a float, bytes, null, a map, a bool, and a str that is not UTF-8 (as bytes). */
    EXPECT_OUT(0, "", "set", "dict/mix", "s", "0");
    EXPECT_OUT(0, "", "--key-json", "set", "dict/mix", "1.5", "1");
    EXPECT_OUT(0, "", "--key-json", "set", "dict/mix", "{\"$bytes\":\"AAE=\"}", "2");
    EXPECT_OUT(0, "", "--key-json", "set", "dict/mix", "null", "3");
    EXPECT_OUT(0, "", "--key-json", "set", "dict/mix", "{\"a\":[1]}", "4");
    EXPECT_OUT(0, "", "--key-json", "set", "dict/mix", "true", "5");
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "mix", &d), c);
    const uint8_t notutf8[] = {0xa2, 0xc3, 0x28}; /* str of 2 bytes, invalid UTF-8 */
    uint8_t six[MPB_PACK_MAX_SCALAR];
    th_assert_ok(mpb_dict_set(d, notutf8, sizeof notutf8, six, mpb_pack_i64(six, 6)), c);
    mpb_dict_close(&d);
    mpb_close(&c);
    const char *pairs = "[[\"s\",0],[1.5,1],[{\"$bytes\":\"AAE=\"},2],[null,3],[{\"a\":[1]},4],"
                        "[true,5],[{\"$bytes\":\"wyg=\"},6]]\n";
    EXPECT_OUT(0, pairs, "get", "dict/mix");
    EXPECT_OUT(0, pairs, "--json", "get", "dict/mix");
    /* Each key as printed reads back with --key-json. */
    EXPECT_OUT(0, "4\n", "--key-json", "get", "dict/mix", "{\"a\":[1]}");
    EXPECT_OUT(0, "2\n", "--key-json", "get", "dict/mix", "{\"$bytes\":\"AAE=\"}");
    EXPECT_OUT(0, "1\n", "--key-json", "get", "dict/mix", "1.5");

    /* More than one page of keys (the CLI asks 1000 at a time), mixed: every key, once. */
    c = th_connect(&B);
    th_assert_ok(mpb_dict_open(c, "big", &d), c);
    for (int i = 0; i < 2500; i++) {
        uint8_t k[MPB_PACK_MAX_SCALAR], v[MPB_PACK_MAX_SCALAR];
        th_assert_ok(mpb_dict_set(d, k, mpb_pack_i64(k, i), v, mpb_pack_i64(v, -i)), c);
    }
    mpb_dict_close(&d);
    mpb_close(&c);
    assert_int_equal(run("get", "dict/big", NULL), 0);
    json_t *j = json_of_stdout();
    assert_int_equal(json_array_size(j), 2500);
    for (size_t i = 0; i < 2500; i++) {
        json_t *pr = json_array_get(j, i);
        assert_int_equal(json_integer_value(json_array_get(pr, 0)), (json_int_t)i);
        assert_int_equal(json_integer_value(json_array_get(pr, 1)), -(json_int_t)i);
    }
    json_decref(j);
}

static void test_key_messages(void **state) {
    (void)state;
    /* A KEY that is not JSON is called a key, not a value. */
    EXPECT_ERR(2, "key '{bad' is not JSON", "--key-json", "set", "dict/km2", "{bad", "1");
    assert_string_equal(R.err, "mpb: key '{bad' is not JSON: JSON: string or '}' expected near "
                               "'bad' at line 1 column 4\n");
    EXPECT_ERR(2, "key '[1,' is not JSON", "--key-json", "get", "dict/km2", "[1,");
    EXPECT_ERR(2, "key 'x' is not JSON", "--key-json", "del", "dict/km2", "x");
    EXPECT_ERR(2, "key 'y' is not JSON", "--key-json", "incr", "dict/km2", "y");
    EXPECT_ERR(2, "value '{bad' is not JSON", "--key-json", "set", "dict/km2", "1", "{bad");
    /* Nothing was stored. */
    EXPECT_ERR(3, "no object dict/km2", "get", "dict/km2");
}

/* ---- queues, locks, events: the shell side of the synchronisation kinds ---- */

/* Starts mpb ARGS... in the background after delay_ms, in a process group of its own (so a
 * test can kill it with what it runs), output discarded; th_wait() its pid. After fork only
 * async-signal-safe calls: this process may have a client's heartbeat thread running. */
#define SPAWN(delay_ms, ...) spawn_cli(delay_ms, __VA_ARGS__, NULL)
static pid_t spawn_cli(int delay_ms, const char *first, ...) {
    const char *argv[32] = {th_mpb_cli};
    int argc = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 30; a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    pid_t pid = th_fork_bare();
    if (pid == 0) {
        setpgid(0, 0);
        struct timespec ts = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        int dn = open("/dev/null", O_WRONLY);
        dup2(dn, 1);
        dup2(dn, 2);
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    setpgid(pid, pid); /* on both sides, so it holds whichever runs first */
    return pid;
}

/* R.out is `mpb info OBJ` text: exactly these "%-10s %s" lines, in this order. kv holds field,
 * value pairs; a value ending in '*' matches by its prefix (for a byte count or a duration). */
static void expect_info(const char *const *kv, size_t n) {
    const char *p = R.out;
    for (size_t i = 0; i + 1 < n; i += 2) {
        const char *nl = strchr(p, '\n');
        if (!nl) fail_msg("no line for %s in \"%s\"", kv[i], R.out);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(nl - p), p);
        char want[1024];
        snprintf(want, sizeof want, "%-10s %s", kv[i], kv[i + 1]);
        size_t wl = strlen(want);
        bool ok = want[wl - 1] == '*' ? !strncmp(line, want, wl - 1) : !strcmp(line, want);
        if (!ok) fail_msg("line \"%s\", wanted \"%s\"; all:\n%s", line, want, R.out);
        p = nl + 1;
    }
    if (*p) fail_msg("lines after the last expected one: \"%s\"", p);
    if (R.err[0] || R.status) show("info failed");
}
#define EXPECT_INFO(...)                                                                           \
    do {                                                                                           \
        const char *kv_[] = {__VA_ARGS__};                                                         \
        expect_info(kv_, sizeof kv_ / sizeof *kv_);                                                \
    } while (0)

/* The integer at a path of JSON object members in j ("owner", "pid"), INT64_MIN if absent. */
static int64_t jint(json_t *j, const char *a, const char *b) {
    json_t *v = json_object_get(j, a);
    if (b) v = json_object_get(v, b);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : INT64_MIN;
}

static const char *hostname(void) {
    static char h[256];
    if (!h[0] && gethostname(h, sizeof h - 1)) fail_msg("gethostname: %s", strerror(errno));
    return h;
}

static void expect_took(int64_t lo, int64_t hi) {
    if (R.ms < lo || R.ms > hi)
        fail_msg("took %lld ms, expected %lld..%lld", (long long)R.ms, (long long)lo,
                 (long long)hi);
}

/* `mpb info queue/NAME`, as text and with --json: its counts, and a blocked caller waiting. */
static void expect_queue_info(const char *name, int size, int maxsize, int getters, int putters) {
    char path[64], n[4][16];
    snprintf(path, sizeof path, "queue/%s", name);
    const int counts[4] = {size, maxsize, getters, putters};
    for (int i = 0; i < 4; i++)
        snprintf(n[i], sizeof n[i], "%d", counts[i]);
    run("info", path, NULL);
    EXPECT_INFO("kind", "queue", "name", name, "size", n[0], "maxsize", n[1], "joinable", "false",
                "unfinished", "0", "getters", n[2], "putters", n[3], "joiners", "0", "bytes", "*",
                "reliable", "false", "delivered", "0", "waiting", "[{\"session\":*");
    assert_int_equal(run("--json", "info", path, NULL), 0);
    json_t *j = json_of_stdout();
    assert_int_equal(jint(j, "size", NULL), size);
    assert_int_equal(jint(j, "maxsize", NULL), maxsize);
    assert_int_equal(jint(j, "getters", NULL), getters);
    assert_int_equal(jint(j, "putters", NULL), putters);
    json_decref(j);
}

static void test_queue_put_get(void **state) {
    (void)state;
    EXPECT_OUT(0, "", "put", "queue/cq", "\"a\"");
    EXPECT_OUT(0, "{\"ok\":true}\n", "--json", "put", "queue/cq", "[1,{\"b\":null}]");
    EXPECT_OUT(0, "", "put", "queue/cq", "3", "--timeout", "1");
    EXPECT_OUT(0, "queue/cq\t3\n", "ls", "queue/cq");
    EXPECT_OUT(0, "[{\"kind\":\"queue\",\"name\":\"cq\",\"size\":3}]\n", "--json", "ls",
               "queue/cq*");
    run("info", "queue/cq", NULL);
    EXPECT_INFO("kind", "queue", "name", "cq", "size", "3", "maxsize", "0", "joinable", "false",
                "unfinished", "0", "getters", "0", "putters", "0", "joiners", "0", "bytes", "*",
                "reliable", "false", "delivered", "0", "waiting", "[]");
    /* First in, first out; --json prints the item itself. */
    EXPECT_OUT(0, "\"a\"\n", "get", "queue/cq");
    EXPECT_OUT(0, "[1,{\"b\":null}]\n", "--json", "get", "queue/cq");
    EXPECT_OUT(0, "3\n", "get", "queue/cq", "--timeout", "0");
    EXPECT_OUT(0, "queue/cq\t0\n", "ls", "queue/cq");

    /* Empty: at once with --timeout 0 (exit 3, as put on a full queue), else at the deadline. */
    EXPECT_ERR(3, "is empty", "get", "queue/cq", "--timeout", "0");
    assert_string_equal(R.err, "mpb: get: queue/cq is empty\n");
    EXPECT_OUT(
        3, "{\"error\":{\"code\":\"EEMPTY\",\"message\":\"queue/cq is empty\",\"op\":\"get\"}}\n",
        "--json", "get", "queue/cq", "--timeout", "0");
    EXPECT_ERR(75, "still empty", "get", "queue/cq", "--timeout", "0.3");
    assert_string_equal(R.err, "mpb: get: queue/cq still empty after the timeout\n");
    expect_took(280, 5000);
    EXPECT_OUT(75,
               "{\"error\":{\"code\":\"ETIMEDOUT\",\"message\":\"queue/cq still empty after the "
               "timeout\",\"op\":\"get\"}}\n",
               "--json", "get", "queue/cq", "--timeout=0.2");
    expect_took(180, 5000);

    /* Without --timeout a get waits as long as it takes: here for another process's put. */
    pid_t p = SPAWN(300, "put", "queue/cq", "\"late\"");
    EXPECT_OUT(0, "\"late\"\n", "get", "queue/cq");
    expect_took(250, 10000);
    assert_int_equal(th_wait(p, 10), 0);

    /* A blocked getter is shown, and served by the next put. */
    mpb_client_t *c = th_connect(&B);
    p = SPAWN(0, "get", "queue/cq", "--timeout", "30");
    assert_true(th_wait_field(c, "queue/cq", "getters", 1, 5000));
    expect_queue_info("cq", 0, 0, 1, 0);
    EXPECT_OUT(0, "", "put", "queue/cq", "\"x\"");
    assert_int_equal(th_wait(p, 10), 0);
    assert_true(th_wait_field(c, "queue/cq", "getters", 0, 5000));
    EXPECT_OUT(0, "queue/cq\t0\n", "ls", "queue/cq");
    mpb_close(&c);

    EXPECT_ERR(2, "put takes queue/NAME VALUE [--timeout S]", "put", "queue/cq");
    EXPECT_ERR(2, "put works on queues, not 'dict'", "put", "dict/cq", "1");
    EXPECT_ERR(2, "get queue/NAME takes no key", "get", "queue/cq", "k");
    EXPECT_ERR(2, "value '[' is not JSON", "put", "queue/cq", "[");
    EXPECT_ERR(1, "cq is a queue, not a dict", "get", "dict/cq");
    EXPECT_OUT(0, "queue/cq\t0\n", "ls", "queue/cq");
}

static void test_queue_full(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    th_assert_ok(mpb_queue_open(c, "cf", 1, 0, &q), c);
    EXPECT_OUT(0, "", "put", "queue/cf", "1");
    /* Full: exit 3 at once with --timeout 0, as get on an empty queue; 75 at a deadline. */
    EXPECT_ERR(3, "is full", "put", "queue/cf", "2", "--timeout", "0");
    assert_string_equal(R.err, "mpb: put: queue/cf is full (maxsize 1)\n");
    EXPECT_OUT(3,
               "{\"error\":{\"code\":\"EFULL\",\"message\":\"queue/cf is full (maxsize 1)\","
               "\"op\":\"put\"}}\n",
               "--json", "put", "queue/cf", "2", "--timeout", "0");
    EXPECT_ERR(75, "still full", "put", "queue/cf", "2", "--timeout", "0.3");
    assert_string_equal(R.err, "mpb: put: queue/cf still full after the timeout\n");
    expect_took(280, 5000);
    EXPECT_OUT(75,
               "{\"error\":{\"code\":\"ETIMEDOUT\",\"message\":\"queue/cf still full after the "
               "timeout\",\"op\":\"put\"}}\n",
               "--json", "put", "queue/cf", "2", "--timeout", "0.2");

    /* A blocked putter is shown, and gets in when an item is taken. */
    pid_t p = SPAWN(0, "put", "queue/cf", "2");
    assert_true(th_wait_field(c, "queue/cf", "putters", 1, 5000));
    expect_queue_info("cf", 1, 1, 0, 1);
    EXPECT_OUT(0, "1\n", "get", "queue/cf");
    assert_int_equal(th_wait(p, 10), 0);
    EXPECT_OUT(0, "2\n", "get", "queue/cf", "--timeout", "0");
    EXPECT_OUT(0, "queue/cf\t0\n", "ls", "queue/cf");
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* The fence the command printed as its first line ("$MPB_FENCE"). */
static uint64_t printed_fence(void) {
    char *end;
    unsigned long long f = strtoull(R.out, &end, 10);
    if (end == R.out || *end != '\n' || f == 0) show("no fencing token on the first line");
    return f;
}

static void test_lock_runs_command(void **state) {
    (void)state;
    /* The command runs holding the lock, MPB_FENCE in its environment, and its exit status is
     * mpb's. Each acquisition gets a larger token. */
    assert_int_equal(run("lock", "lock/cl", "--", "sh", "-c", "echo \"$MPB_FENCE\"", NULL), 0);
    if (R.err[0]) show("stderr not empty");
    uint64_t f1 = printed_fence();
    assert_int_equal(run("lock", "lock/cl", "--", "sh", "-c", "echo \"$MPB_FENCE\"", NULL), 0);
    uint64_t f2 = printed_fence();
    assert_true(f2 > f1);
    /* While it runs, the broker shows this mpb as the owner, with that token. */
    assert_int_equal(run("lock", "lock/cl", "--", "sh", "-c",
                         "echo \"$MPB_FENCE\"; \"$0\" --json info lock/cl", th_mpb_cli, NULL),
                     0);
    uint64_t f3 = printed_fence();
    assert_true(f3 > f2);
    json_error_t je;
    json_t *j = json_loads(strchr(R.out, '\n') + 1, 0, &je);
    if (!j) show("no JSON after the fence");
    assert_true(json_is_true(json_object_get(j, "locked")));
    assert_int_equal(jint(j, "count", NULL), 1);
    assert_int_equal(jint(j, "fence", NULL), (int64_t)f3);
    assert_true(jint(j, "owner", "session") > 0);
    assert_true(jint(j, "owner", "pid") > 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "owner"), "host")),
                        hostname());
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "owner"), "name")),
                        "mpb");
    json_decref(j);
    /* Released afterwards. */
    run("info", "lock/cl", NULL);
    char fs[32];
    snprintf(fs, sizeof fs, "%llu", (unsigned long long)f3);
    EXPECT_INFO("kind", "lock", "name", "cl", "size", "0", "locked", "false", "owner", "null",
                "count", "0", "fence", fs, "waiters", "[]");

    EXPECT_OUT(7, "", "lock", "lock/cl", "--", "sh", "-c", "exit 7");
    EXPECT_OUT(143, "", "lock", "lock/cl", "--", "sh", "-c", "kill -TERM $$");
    EXPECT_OUT(0, "", "lock", "--timeout", "5", "lock/cl", "--", "true");
    EXPECT_OUT(0, "", "lock", "rlock/crl", "--timeout", "5", "--", "true");
    /* Everything after -- is the command's, options included. */
    EXPECT_OUT(0, "--timeout 5 --conflict-exit-code 9 -- --json\n", "lock", "lock/cl", "--", "echo",
               "--timeout", "5", "--conflict-exit-code", "9", "--", "--json");
    EXPECT_OUT(0, "x\n", "--json", "lock", "lock/cl", "--", "echo", "x");
    /* A command that cannot be run: 127, as a shell says, and the lock is released. */
    EXPECT_ERR(127, "cannot run", "lock", "lock/cl", "--", "/nonexistent/cmd");
    assert_string_equal(R.err,
                        "mpb: lock: cannot run /nonexistent/cmd: No such file or directory\n");
    EXPECT_OUT(127,
               "{\"error\":{\"code\":\"EINVAL\",\"message\":\"lock: cannot run /nonexistent/cmd: "
               "No such file or directory\",\"op\":\"lock\"}}\n",
               "--json", "lock", "lock/cl", "--", "/nonexistent/cmd");
    EXPECT_OUT(0, "", "lock", "lock/cl", "--timeout", "0", "--", "true");

    EXPECT_ERR(2, "lock takes lock/NAME [--timeout S] -- COMMAND [ARGS...]", "lock", "lock/cl");
    EXPECT_ERR(2, "lock takes lock/NAME", "lock", "lock/cl", "--");
    EXPECT_ERR(2, "lock takes lock/NAME", "lock", "lock/cl", "extra", "--", "true");
    EXPECT_ERR(2, "lock works on locks, not 'dict'", "lock", "dict/cl", "--", "true");
    EXPECT_ERR(2, "--conflict-exit-code 'x' is not 0..255", "lock", "lock/cl",
               "--conflict-exit-code", "x", "--", "true");
}

static void test_lock_held_elsewhere(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_lock_t *l;
    uint64_t f;
    th_assert_ok(mpb_lock_open(c, "held", &l), c);
    th_assert_ok(mpb_lock_acquire(l, 0, &f), c);
    char who[400], want[600];
    snprintf(who, sizeof who, "session %llu (host %s, pid %d)",
             (unsigned long long)mpb_session_id(c), hostname(), (int)getpid());

    /* Not had in time: exit 75 (or --conflict-exit-code), a message naming the holder, and
     * the command never runs. */
    EXPECT_ERR(75, "not acquired", "lock", "lock/held", "--timeout", "0.3", "--", "echo", "ran");
    snprintf(want, sizeof want,
             "mpb: lock: lock/held not acquired within the timeout: lock/held still held by %s at "
             "the timeout\n",
             who);
    assert_string_equal(R.err, want);
    expect_took(280, 5000);
    EXPECT_ERR(75, "not acquired", "lock", "lock/held", "--timeout", "0", "--", "echo", "ran");
    snprintf(want, sizeof want,
             "mpb: lock: lock/held not acquired within the timeout: lock/held is held by %s\n",
             who);
    assert_string_equal(R.err, want);
    EXPECT_ERR(9, "not acquired", "lock", "lock/held", "--timeout", "0.1", "--conflict-exit-code",
               "9", "--", "echo", "ran");
    snprintf(want, sizeof want,
             "{\"error\":{\"code\":\"ETIMEDOUT\",\"message\":\"lock: lock/held not acquired "
             "within the timeout: lock/held still held by %s at the timeout\",\"op\":\"lock\"}}\n",
             who);
    assert_int_equal(
        run("--json", "lock", "lock/held", "--timeout", "0.1", "--", "echo", "ran", NULL), 75);
    assert_string_equal(R.out, want);
    if (R.err[0]) show("stderr not empty");

    /* mpb info: the owner (session, host, pid), the token and the waiters. */
    pid_t p = SPAWN(0, "lock", "lock/held", "--timeout", "30", "--", "true");
    assert_true(th_wait_field(c, "lock/held", "waiters", 1, 5000));
    assert_int_equal(run("--json", "info", "lock/held", NULL), 0);
    json_t *j = json_of_stdout();
    assert_true(json_is_true(json_object_get(j, "locked")));
    assert_int_equal(jint(j, "count", NULL), 1);
    assert_int_equal(jint(j, "fence", NULL), (int64_t)f);
    assert_int_equal(jint(j, "owner", "session"), (int64_t)mpb_session_id(c));
    assert_int_equal(jint(j, "owner", "pid"), getpid());
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "owner"), "host")),
                        hostname());
    json_t *ws = json_object_get(j, "waiters");
    assert_int_equal(json_array_size(ws), 1);
    json_t *w0 = json_array_get(ws, 0);
    assert_true(json_is_integer(json_object_get(w0, "session")));
    assert_int_equal(json_integer_value(json_object_get(w0, "pid")), p);
    assert_string_equal(json_string_value(json_object_get(w0, "host")), hostname());
    json_decref(j);
    run("info", "lock/held", NULL);
    char owner[300], fs[32], waiters[300];
    snprintf(owner, sizeof owner, "{\"session\":%llu,\"host\":\"%s\",\"pid\":%d,*",
             (unsigned long long)mpb_session_id(c), hostname(), (int)getpid());
    snprintf(fs, sizeof fs, "%llu", (unsigned long long)f);
    snprintf(waiters, sizeof waiters, "[{\"session\":*");
    EXPECT_INFO("kind", "lock", "name", "held", "size", "1", "locked", "true", "owner", owner,
                "count", "1", "fence", fs, "waiters", waiters);
    if (!strstr(R.out, "\"host\":\"") || !strstr(R.out, "}]\n")) show("waiters line");

    /* Released here, the waiting mpb gets it with a larger token and runs its command. */
    th_assert_ok(mpb_lock_release(l), c);
    assert_int_equal(th_wait(p, 10), 0);
    assert_true(th_describe_int(c, "lock/held", "fence") > (int64_t)f);
    assert_int_equal(th_describe_int(c, "lock/held", "locked"), 0);
    mpb_lock_close(&l);
    mpb_close(&c);
}

/* The session heartbeats while the command runs, so a command longer than the TTL keeps the
 * lock; a killed mpb loses it at the TTL, to the next acquirer, with a larger token. */
static void test_lock_holder_killed(void **state) {
    (void)state;
    th_broker_t b2;
    th_broker_start(&b2, "--heartbeat-ms", "200", "--session-ttl-ms", "1000", NULL);
    th_use_broker_env(&b2);
    mpb_client_t *c = NULL;
    assert_int_equal(th_connect_opts(&b2, NULL, &c), 0);
    pid_t p = SPAWN(0, "lock", "lock/dl", "--", "sleep", "60");
    assert_true(th_wait_field(c, "lock/dl", "locked", 1, 5000));
    int64_t f1 = th_describe_int(c, "lock/dl", "fence");
    EXPECT_ERR(75, "still held", "lock", "lock/dl", "--timeout", "2", "--", "true");
    expect_took(1900, 8000);
    kill(-p, SIGKILL); /* mpb and its sleep */
    assert_int_equal(th_wait(p, 10), 128 + SIGKILL);
    assert_int_equal(
        run("lock", "lock/dl", "--timeout", "20", "--", "sh", "-c", "echo \"$MPB_FENCE\"", NULL),
        0);
    expect_took(0, 1000 + 5000); /* the TTL, and generous slack */
    assert_true((int64_t)printed_fence() > f1);
    mpb_close(&c);
    th_broker_stop(&b2);
    th_use_broker_env(&B);
}

static void test_event_cmds(void **state) {
    (void)state;
    EXPECT_OUT(0, "", "set", "event/ce");
    EXPECT_OUT(0, "{\"ok\":true}\n", "--json", "set", "event/ce");
    run("info", "event/ce", NULL);
    EXPECT_INFO("kind", "event", "name", "ce", "size", "1", "set", "true", "waiters", "0",
                "waiting", "[]");
    EXPECT_OUT(0, "", "wait", "event/ce");
    EXPECT_OUT(0, "{\"set\":true}\n", "--json", "wait", "event/ce", "--timeout", "0");
    EXPECT_OUT(0, "", "clear", "event/ce");
    EXPECT_OUT(0, "{\"ok\":true}\n", "--json", "clear", "event/ce");
    run("info", "event/ce", NULL);
    EXPECT_INFO("kind", "event", "name", "ce", "size", "0", "set", "false", "waiters", "0",
                "waiting", "[]");
    EXPECT_ERR(75, "not set", "wait", "event/ce", "--timeout", "0.3");
    assert_string_equal(R.err, "mpb: wait: event/ce not set within the timeout\n");
    expect_took(280, 5000);
    EXPECT_OUT(75, "{\"set\":false}\n", "--json", "wait", "event/ce", "--timeout", "0");
    EXPECT_ERR(75, "not set", "wait", "event/ce", "--timeout", "0");

    /* Woken by another process's set. */
    pid_t p = SPAWN(300, "set", "event/ce");
    EXPECT_OUT(0, "", "wait", "event/ce", "--timeout", "20");
    expect_took(250, 10000);
    assert_int_equal(th_wait(p, 10), 0);
    /* Waiters are shown. */
    mpb_client_t *c = th_connect(&B);
    EXPECT_OUT(0, "", "clear", "event/ce");
    p = SPAWN(0, "wait", "event/ce", "--timeout", "30");
    pid_t p2 = SPAWN(0, "wait", "event/ce");
    assert_true(th_wait_field(c, "event/ce", "waiters", 2, 5000));
    run("info", "event/ce", NULL);
    EXPECT_INFO("kind", "event", "name", "ce", "size", "0", "set", "false", "waiters", "2",
                "waiting", "[{\"session\":*");
    assert_int_equal(run("--json", "info", "event/ce", NULL), 0);
    json_t *j = json_of_stdout();
    assert_true(json_is_false(json_object_get(j, "set")));
    assert_int_equal(jint(j, "waiters", NULL), 2);
    json_decref(j);
    EXPECT_OUT(0, "", "set", "event/ce");
    assert_int_equal(th_wait(p, 10), 0);
    assert_int_equal(th_wait(p2, 10), 0);
    mpb_close(&c);

    EXPECT_ERR(2, "set takes event/NAME", "set", "event/ce", "x");
    EXPECT_ERR(2, "wait takes event/NAME", "wait", "event/ce", "x");
    EXPECT_ERR(2, "clear takes event/NAME", "clear");
    EXPECT_ERR(2, "clear works on events, not 'dict'", "clear", "dict/ce");
    EXPECT_ERR(2, "wait works on events, not 'lock'", "wait", "lock/ce");
}

static void bwait_cb(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c, (void)val, (void)len;
    *(int *)arg = status;
}

/* mpb info for the kinds the CLI only looks at: semaphore value, barrier parties and waiting
 * count, a value and a namespace. */
static void test_info_semaphore_barrier(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B), *c2 = th_connect(&B);
    mpb_semaphore_t *s;
    th_assert_ok(mpb_semaphore_open(c, "cs", 3, 1, &s), c);
    th_assert_ok(mpb_semaphore_acquire(s, 0), c);
    run("info", "semaphore/cs", NULL);
    EXPECT_INFO("kind", "semaphore", "name", "cs", "size", "*", "value", "2", "initial", "3",
                "bounded", "true", "waiters", "0", "unit_holders", "[{\"session\":*", "waiting",
                "[]");
    assert_int_equal(run("--json", "info", "semaphore/cs", NULL), 0);
    json_t *j = json_of_stdout();
    assert_int_equal(jint(j, "value", NULL), 2);
    assert_int_equal(jint(j, "initial", NULL), 3);
    assert_true(json_is_true(json_object_get(j, "bounded")));
    json_decref(j);
    mpb_semaphore_close(&s);

    mpb_barrier_t *b;
    th_assert_ok(mpb_barrier_open(c, "cb", 3, -1, &b), c);
    int st = 1;
    const uint8_t forever[] = {0x91, 0xff}; /* [-1] */
    th_assert_ok(mpb_send(c2, MPB_OP_BARRIER_WAIT, "cb", forever, sizeof forever, bwait_cb, &st),
                 c2);
    th_assert_ok(mpb_flush(c2), c2);
    assert_true(th_wait_field(c, "barrier/cb", "n_waiting", 1, 5000));
    run("info", "barrier/cb", NULL);
    EXPECT_INFO("kind", "barrier", "name", "cb", "size", "*", "parties", "3", "n_waiting", "1",
                "broken", "false", "timeout_ms", "-1", "waiting", "[{\"session\":*");
    assert_int_equal(run("--json", "info", "barrier/cb", NULL), 0);
    j = json_of_stdout();
    assert_int_equal(jint(j, "parties", NULL), 3);
    assert_int_equal(jint(j, "n_waiting", NULL), 1);
    assert_true(json_is_false(json_object_get(j, "broken")));
    json_decref(j);
    th_assert_ok(mpb_barrier_abort(b), c);
    assert_int_equal(mpb_drain(c2, 5000), 0);
    assert_int_equal(st, MPB_EBROKEN);
    assert_int_equal(run("--json", "info", "barrier/cb", NULL), 0);
    j = json_of_stdout();
    assert_int_equal(jint(j, "n_waiting", NULL), 0);
    assert_true(json_is_true(json_object_get(j, "broken")));
    json_decref(j);
    mpb_barrier_close(&b);
    mpb_close(&c2);
    mpb_close(&c);

    EXPECT_OUT(0, "", "set", "value/cv", "5");
    EXPECT_OUT(0, "5\n", "get", "value/cv");
    EXPECT_OUT(0, "{\"ok\":true}\n", "--json", "set", "value/cv", "[1.5,\"x\"]");
    EXPECT_OUT(0, "[1.5,\"x\"]\n", "get", "value/cv");
    EXPECT_ERR(2, "get value/NAME takes no key", "get", "value/cv", "k");
    EXPECT_OUT(0, "", "set", "namespace/cn", "a", "1");
    EXPECT_OUT(0, "", "set", "namespace/cn", "b", "{\"c\":[true]}");
    EXPECT_OUT(0, "1\n", "get", "namespace/cn", "a");
    EXPECT_OUT(0, "{\"a\":1,\"b\":{\"c\":[true]}}\n", "get", "namespace/cn");
    EXPECT_ERR(3, "", "get", "namespace/cn", "zz");
    EXPECT_JSON_ERR(3, "ENOKEY", "", "get", "namespace/cn", "zz");
}

int main(void) {
    th_suite(&B, NULL, TH_SUITE_ENV);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_prints_lines),
        cmocka_unit_test(test_info_json),
        cmocka_unit_test(test_ping),
        cmocka_unit_test(test_dict_set_get),
        cmocka_unit_test(test_key_json),
        cmocka_unit_test(test_incr),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_del),
        cmocka_unit_test(test_ls),
        cmocka_unit_test(test_missing_key_exits_3),
        cmocka_unit_test(test_wrong_authkey_exits_1),
        cmocka_unit_test(test_unreachable_broker_exits_1),
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_kind_mismatch_exits_1),
        cmocka_unit_test(test_json_usage_errors),
        cmocka_unit_test(test_numeric_options),
        cmocka_unit_test(test_dict_dump_every_key),
        cmocka_unit_test(test_key_messages),
        cmocka_unit_test(test_queue_put_get),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_lock_runs_command),
        cmocka_unit_test(test_lock_held_elsewhere),
        cmocka_unit_test(test_lock_holder_killed),
        cmocka_unit_test(test_event_cmds),
        cmocka_unit_test(test_info_semaphore_barrier),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
