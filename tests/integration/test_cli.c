/* test_cli.c - the `mpb` command line against a real broker: each case runs the built CLI as a
 * child process and checks its stdout, its stderr and its exit status exactly (0 done, 1 the
 * operation failed, 2 bad usage, 3 no such key/object). What the CLI writes is cross-checked
 * through libmpb where the bytes matter (an integer key must arrive as an integer). */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "th.h"

static th_broker_t B;

/* ---- running the CLI ---- */

typedef struct cli_run {
    int status; /* exit status, 128 + signal, or -1 if it had to be killed */
    char out[1 << 16];
    char err[1 << 16];
    int64_t ms;
} cli_run_t;

static cli_run_t R; /* the last run */

/* Reads both pipes to their end (neither may fill and block the child). */
static void drain(int fo, int fe) {
    size_t no = 0, ne = 0;
    struct pollfd p[2] = {
        {fo, POLLIN, 0},
        {fe, POLLIN, 0}
    };
    int open = 2;
    int64_t end = th_now_ms() + 30000;
    while (open && th_now_ms() < end) {
        if (poll(p, 2, 1000) < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char *buf = i ? R.err : R.out;
            size_t *n = i ? &ne : &no;
            char tmp[4096];
            ssize_t k = read(p[i].fd, tmp, sizeof tmp);
            if (k <= 0) {
                p[i].fd = -1;
                open--;
                continue;
            }
            size_t room = sizeof R.out - 1 - *n;
            size_t take = (size_t)k < room ? (size_t)k : room;
            memcpy(buf + *n, tmp, take);
            *n += take;
        }
    }
    R.out[no] = 0;
    R.err[ne] = 0;
}

/* Runs mpb with the given arguments (NULL-terminated) and returns its exit status; R holds
 * what it printed. */
static int vrun(const char *first, va_list ap) {
    const char *argv[64] = {th_mpb_cli};
    int argc = 1;
    for (const char *a = first; a && argc < 62; a = va_arg(ap, const char *))
        argv[argc++] = a;
    argv[argc] = NULL;
    int po[2], pe[2];
    if (pipe(po) || pipe(pe)) fail_msg("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    int64_t t0 = th_now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        close(po[1]);
        close(pe[1]);
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    drain(po[0], pe[0]);
    close(po[0]);
    close(pe[0]);
    R.status = th_wait(pid, 30);
    R.ms = th_now_ms() - t0;
    return R.status;
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

/* mpb ARGS... exits with status, prints exactly out on stdout and nothing on stderr. */
#define EXPECT_OUT(status, out, ...) expect_out(status, out, __VA_ARGS__, NULL)
static void expect_out(int status, const char *out, const char *first, ...) {
    va_list ap;
    va_start(ap, first);
    vrun(first, ap);
    va_end(ap);
    if (R.status != status) show("wrong exit status");
    if (strcmp(R.out, out)) show(out);
    if (R.err[0]) show("stderr not empty");
}

/* mpb ARGS... exits with status, prints nothing on stdout and a message holding words (one
 * line, starting "mpb: ") on stderr. */
#define EXPECT_ERR(status, words, ...) expect_err(status, words, __VA_ARGS__, NULL)
static void expect_err(int status, const char *words, const char *first, ...) {
    va_list ap;
    va_start(ap, first);
    vrun(first, ap);
    va_end(ap);
    if (R.status != status) show("wrong exit status");
    if (R.out[0]) show("stdout not empty");
    if (strncmp(R.err, "mpb: ", 5)) show("stderr does not start with \"mpb: \"");
    if (!strstr(R.err, words)) show(words);
}

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

static void use_broker_env(const th_broker_t *b) {
    setenv("MPB_ENDPOINT", b->endpoint, 1);
    setenv("MPB_AUTHKEY_FILE", b->keyfile, 1);
    unsetenv("MPB_AUTHKEY");
}

/* ---- info, ping ---- */

static void test_info_prints_lines(void **state) {
    (void)state;
    assert_int_equal(run("info", NULL), 0);
    if (R.err[0]) show("stderr not empty");
    const char *want[] = {"version", "uptime_s", "pid", "clients", "sessions", "objects", "memory"};
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
    /* without --key-json, 5 is the string "5": another key */
    EXPECT_ERR(3, "no key \"5\" in dict/kj", "get", "dict/kj", "5");
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
    use_broker_env(&b2);
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
    use_broker_env(&B);
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
    EXPECT_ERR(1, "authentication failed", "-k", path, "info");
    EXPECT_ERR(1, "authentication failed", "--authkey-file", path, "get", "dict/u", "alice");
    EXPECT_JSON_ERR(1, "EAUTH", "authentication failed", "-k", path, "info");
    /* From the environment too. */
    setenv("MPB_AUTHKEY_FILE", path, 1);
    EXPECT_ERR(1, "authentication failed", "ping");
    unsetenv("MPB_AUTHKEY_FILE");
    setenv("MPB_AUTHKEY", "also wrong", 1);
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
    use_broker_env(&B);
}

static void test_unreachable_broker_exits_1(void **state) {
    (void)state;
    EXPECT_ERR(1, "no mpbroker answered at tcp://127.0.0.1:1 within 1000 ms", "-e",
               "tcp://127.0.0.1:1", "--connect-timeout", "1", "info");
    if (R.ms > 5000) fail_msg("took %lld ms with --connect-timeout 1", (long long)R.ms);
    EXPECT_JSON_ERR(1, "ECONN", "no mpbroker answered", "-e", "tcp://127.0.0.1:1",
                    "--connect-timeout", "0.5", "ping");
    setenv("MPB_ENDPOINT", "tcp://127.0.0.1:1", 1);
    EXPECT_ERR(1, "no mpbroker answered at tcp://127.0.0.1:1", "--connect-timeout", "0.3", "ping");
    /* -e wins over the environment. */
    EXPECT_OUT(0, "pong\n", "-e", B.endpoint, "ping");
    use_broker_env(&B);
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

static int setup(void **state) {
    (void)state;
    th_broker_start(&B, NULL);
    use_broker_env(&B);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    th_broker_stop(&B);
    return 0;
}

int main(void) {
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
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
