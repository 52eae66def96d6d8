/* test_cli2.c - the `mpb` commands and flags of the operator's courtesies
 * against a real broker: --version, help, options after the command, the key
 * hint, task-done and get --done, watch, pool --watch in a pipe, and what mpb
 * does on a terminal (a get that says it waits, the prompt with its history),
 * the last two through a pseudo-terminal (forkpty). Each case checks stdout,
 * stderr and the exit status exactly. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>

#include "th.h"

static th_broker_t B;
static mpb_client_t *C;

static th_run_t R; /* the last run */

/* Runs argv, as th_run() with these options; R holds what it wrote. */
static int spawn(const char *const *argv, int kill_ms, bool pty, const char *input,
                 const char *until) {
    th_run_opts_t o = {.kill_ms = kill_ms, .pty = pty, .input = input, .until = until};
    return th_run(argv, &o, &R);
}

static int vmpb(va_list ap, int kill_ms) {
    const char *argv[64] = {th_mpb_cli};
    int argc = 1;
    for (const char *a = va_arg(ap, const char *); a && argc < 62; a = va_arg(ap, const char *))
        argv[argc++] = a;
    argv[argc] = NULL;
    return spawn(argv, kill_ms, false, NULL, NULL);
}

/* mpb ARGS..., NULL: the exit status; R holds what it wrote */
static int mpb(int dummy, ...) {
    va_list ap;
    va_start(ap, dummy);
    int st = vmpb(ap, 0);
    va_end(ap);
    return st;
}
#define MPB(...) mpb(0, __VA_ARGS__, NULL)

static void show(const char *why) {
    fail_msg("%s\n  exit %d\n  stdout: \"%s\"\n  stderr: \"%s\"", why, R.status, R.out, R.err);
}

#define EXPECT_OUT(st, text, ...)                                                                  \
    do {                                                                                           \
        MPB(__VA_ARGS__);                                                                          \
        if (R.status != (st)) show("wrong exit status");                                           \
        if (strcmp(R.out, (text))) show(text);                                                     \
        if (R.err[0]) show("stderr not empty");                                                    \
    } while (0)

#define EXPECT_ERR(st, words, ...)                                                                 \
    do {                                                                                           \
        MPB(__VA_ARGS__);                                                                          \
        if (R.status != (st)) show("wrong exit status");                                           \
        if (R.out[0]) show("stdout not empty");                                                    \
        if (strncmp(R.err, "mpb: ", 5) || !strstr(R.err, (words))) show("stderr lacks: " words);   \
    } while (0)

static const char *sibling(const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s", th_mpb_cli);
    char *slash = strrchr(path, '/');
    snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "%s", name);
    return path;
}

/* ---- --version, help ---- */

static void test_version(void **state) {
    (void)state;
    char want[200];
    snprintf(want, sizeof want, "mpb %s (libmpb %s)\n", MPBROKER_VERSION, MPBROKER_VERSION);
    EXPECT_OUT(0, want, "--version");
    EXPECT_OUT(0, want, "-V");
    const char *w[] = {sibling("mpb-worker"), "--version", NULL};
    snprintf(want, sizeof want, "mpb-worker %s\n", MPBROKER_VERSION);
    spawn(w, 0, false, NULL, NULL);
    assert_int_equal(R.status, 0);
    assert_string_equal(R.out, want);
    const char *d[] = {MPBROKERD_PATH, "--version", NULL};
    snprintf(want, sizeof want, "mpbrokerd %s\n", MPBROKER_VERSION);
    spawn(d, 0, false, NULL, NULL);
    assert_int_equal(R.status, 0);
    assert_string_equal(R.out, want);
}

static void test_help(void **state) {
    (void)state;
    MPB("--help");
    static char full[sizeof R.out];
    memcpy(full, R.out, sizeof full);
    assert_true(strstr(full, "usage: mpb [options] COMMAND") != NULL);
    EXPECT_OUT(0, full, "help");
    static const char *const cmds[] = {"info",    "ls",    "get",       "set",  "incr",    "del",
                                       "append",  "put",   "task-done", "peek", "clients", "kill",
                                       "slowlog", "clear", "wait",      "lock", "pool",    "ping",
                                       "watch",   "help",  "monitor",   NULL};
    for (int i = 0; cmds[i]; i++) {
        char head[100];
        static char one[sizeof R.out];
        MPB("help", cmds[i]);
        if (R.status) show("help COMMAND failed");
        snprintf(head, sizeof head, "usage: mpb [options] %s", cmds[i]);
        if (strncmp(R.out, head, strlen(head))) show(head);
        memcpy(one, R.out, sizeof one);
        /* COMMAND --help (and -h) is the same text, and needs no broker */
        EXPECT_OUT(0, one, cmds[i], "--help", "-e", "tcp://127.0.0.1:1");
        if (strcmp(cmds[i], "help")) EXPECT_OUT(0, one, cmds[i], "-h");
    }
    EXPECT_ERR(2, "help: no command 'nope'", "help", "nope");
    EXPECT_ERR(2, "help takes at most one command", "help", "get", "put");
    MPB("help", "--man");
    assert_int_equal(R.status, 0);
    assert_true(strstr(R.out, ".SH COMMANDS\n") && strstr(R.out, ".B task\\-done queue/NAME\n"));
}

/* ---- options after the command; usage errors exit 2 ---- */

static void test_options_after_command(void **state) {
    (void)state;
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(C, "opts", &d), 0);
    assert_int_equal(mpb_dict_set(d, "\xa6--json", 7, "\x01", 1), 0);
    EXPECT_OUT(0, "[{\"kind\":\"dict\",\"name\":\"opts\",\"size\":1}]\n", "ls", "dict/opts",
               "--json");
    EXPECT_OUT(0, "dict/opts\t1\n", "ls", "opts");
    /* "--" ends them: the key is the text "--json" */
    EXPECT_OUT(0, "1\n", "get", "dict/opts", "--", "--json");
    MPB("get", "dict/opts", "nokey", "--json");
    assert_int_equal(R.status, 3);
    assert_true(strstr(R.out, "{\"error\":{\"code\":\"ENOKEY\"") == R.out);
    /* an endpoint given after the command is the one used */
    EXPECT_ERR(1, "connect", "ls", "-e", "tcp://127.0.0.1:1", "--connect-timeout", "0.3");
    EXPECT_ERR(2, "--connect-timeout 'x' is not a number of seconds", "ls", "--connect-timeout",
               "x");
    EXPECT_ERR(2, "option '-e' needs a value", "ls", "-e");
    mpb_dict_close(&d);
}

static void test_usage_errors_exit_2(void **state) {
    (void)state;
    EXPECT_ERR(2, "unknown command 'frob'", "frob");
    EXPECT_ERR(2, "watch takes a COMMAND", "watch");
    EXPECT_ERR(2, "-r '0' is not a count", "watch", "-r", "0", "ls");
    EXPECT_ERR(2, "interval 'abc' is not", "watch", "-i", "abc", "ls");
    EXPECT_ERR(2, "option '-i' needs a value", "watch", "-i");
    EXPECT_ERR(2, "unknown option '-x'", "watch", "-x", "ls");
    EXPECT_ERR(2, "'set' cannot be watched", "watch", "set", "dict/a", "b", "1");
    EXPECT_ERR(2, "get queue/q would take an item", "watch", "get", "queue/q");
    EXPECT_ERR(2, "task-done takes queue/NAME", "task-done");
    EXPECT_ERR(2, "task-done works on queues, not 'dict'", "task-done", "dict/x");
    EXPECT_ERR(2, "get --done works on queues", "get", "dict/x", "k", "--done");
    /* no command, not on a terminal: the usage, exit 2 */
    MPB("-e", "tcp://127.0.0.1:1");
    if (R.status != 2 || !strstr(R.err, "usage: mpb")) show("no command: usage, exit 2");
    const char *w[] = {sibling("mpb-worker"), "--bogus", NULL};
    assert_int_equal(spawn(w, 0, false, NULL, NULL), 2);
    /* the broker still serves */
    EXPECT_OUT(0, "pong\n", "ping");
}

/* ---- keys as a newcomer types them ---- */

static void test_key_hint(void **state) {
    (void)state;
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(C, "hint", &d), 0);
    assert_int_equal(mpb_dict_set(d, "\x05", 1,
                                  "\xa4"
                                  "five",
                                  5),
                     0); /* 5 */
    assert_int_equal(mpb_dict_set(d, "\xc0", 1,
                                  "\xa4"
                                  "null",
                                  5),
                     0);                                                /* null */
    assert_int_equal(mpb_dict_set(d, "\x92\x01\x02", 3, "\x0c", 1), 0); /* [1,2] */
    EXPECT_ERR(3,
               "no string key \"5\" in dict/hint, but the integer key 5 exists: "
               "name it with "
               "--key-json (mpb --key-json get dict/hint '5')",
               "get", "dict/hint", "5");
    EXPECT_ERR(3, "the null key null exists", "get", "dict/hint", "null");
    EXPECT_ERR(3, "the array key [1,2] exists", "get", "dict/hint", "[1,2]");
    EXPECT_OUT(0, "\"five\"\n", "--key-json", "get", "dict/hint", "5");
    /* no JSON form, or none stored: the plain message */
    EXPECT_ERR(3, "get: no key 6 in dict/hint\n", "get", "dict/hint", "6");
    MPB("get", "dict/hint", "abc");
    if (R.status != 3 || strstr(R.err, "--key-json")) show("no hint for a plain missing string");
    MPB("get", "dict/hint", "5", "--json");
    assert_int_equal(R.status, 3);
    assert_true(strstr(R.out, "\"code\":\"ENOKEY\"") && strstr(R.out, "integer key 5 exists"));
    /* del gives the hint and deletes nothing */
    EXPECT_ERR(3, "del: no string key \"5\"", "del", "dict/hint", "5");
    void *v;
    size_t vn;
    assert_int_equal(mpb_dict_get(d, "\x05", 1, &v, &vn), 0);
    mpb_free(v);
    /* with the string "5" there too, it is the one a plain KEY names */
    assert_int_equal(mpb_dict_set(d,
                                  "\xa1"
                                  "5",
                                  2,
                                  "\xa6"
                                  "string",
                                  7),
                     0);
    EXPECT_OUT(0, "\"string\"\n", "get", "dict/hint", "5");
    mpb_dict_close(&d);
}

/* ---- a JoinableQueue finished from the shell ---- */

static int joiner(int idx, void *arg) {
    (void)idx, (void)arg;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    if (mpb_queue_open(c, "jobs", 0, 1, &q)) return 10;
    int rc = mpb_queue_join(q, 10000);
    mpb_queue_close(&q);
    mpb_close(&c);
    return rc ? 11 : 0;
}

static void test_task_done(void **state) {
    (void)state;
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(C, "jobs", 0, 1, &q), 0);
    EXPECT_OUT(0, "", "put", "queue/jobs", "\"a\"");
    EXPECT_OUT(0, "", "put", "queue/jobs", "\"b\"");
    EXPECT_OUT(0, "\"a\"\n", "get", "queue/jobs", "--done");
    EXPECT_OUT(0, "\"b\"\n", "get", "queue/jobs");
    /* one item unfinished: join waits */
    assert_int_equal(mpb_queue_join(q, 200), MPB_ETIMEDOUT);
    pid_t pid = fork();
    if (pid == 0) _exit(joiner(0, NULL));
    usleep(200000);
    EXPECT_OUT(0, "{\"ok\":true}\n", "task-done", "queue/jobs", "--json");
    assert_int_equal(th_wait(pid, 10), 0);
    assert_int_equal(mpb_queue_join(q, 0), 0);
    /* nothing left to finish */
    EXPECT_ERR(1, "task-done", "task-done", "queue/jobs");
    EXPECT_ERR(3, "task-done: no object queue/nosuch", "task-done", "queue/nosuch");
    mpb_queue_close(&q);
}

/* ---- looking at a queue takes nothing ---- */

static void test_peek(void **state) {
    (void)state;
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(C, "pk", 0, 0, &q), 0);
    EXPECT_OUT(0, "", "peek", "queue/pk");
    for (uint8_t i = 1; i <= 3; i++)
        assert_int_equal(mpb_queue_put(q, &i, 1, 1000), 0);
    EXPECT_OUT(0, "1\n2\n3\n", "peek", "queue/pk");
    EXPECT_OUT(0, "1\n2\n", "peek", "queue/pk", "2");
    EXPECT_OUT(0, "[1,2,3]\n", "peek", "queue/pk", "--json");
    EXPECT_OUT(0, "1\n\n1\n", "watch", "-r", "2", "-i", "0.05", "peek", "queue/pk", "1");
    uint64_t n;
    assert_int_equal(mpb_queue_qsize(q, &n), 0);
    assert_int_equal(n, 3);
    EXPECT_OUT(0, "1\n", "get", "queue/pk");
    EXPECT_OUT(0, "2\n3\n", "peek", "queue/pk", "100");
    /* no such queue: exit 3, and none is made by looking */
    EXPECT_ERR(3, "peek: no object queue/nope", "peek", "queue/nope");
    EXPECT_OUT(0, "", "ls", "queue/nope");
    EXPECT_ERR(2, "peek works on queues, not 'dict'", "peek", "dict/pk");
    EXPECT_ERR(2, "peek: N '0' is not 1..1000000", "peek", "queue/pk", "0");
    EXPECT_ERR(2, "peek takes queue/NAME [N]", "peek");
    /* the op refuses a count that is not one, or none (arity); the broker serves
     * on */
    void *res = NULL;
    size_t rn;
    assert_int_equal(mpb_call(C, MPB_OP_QUEUE_PEEK, "pk", "\x91\xa1x", 3, 0, &res, &rn), MPB_ETYPE);
    assert_string_equal(mpb_errmsg(C), "count must be a non-negative integer");
    assert_int_equal(mpb_call(C, MPB_OP_QUEUE_PEEK, "pk", "\x90", 1, 0, &res, &rn), MPB_EPROTO);
    assert_int_equal(mpb_call(C, MPB_OP_QUEUE_PEEK, "pk", "\x91\x00", 2, 0, &res, &rn), 0);
    assert_memory_equal(res, "\x92\x02\x03", 3);
    mpb_free(res);
    mpb_queue_close(&q);
}

/* ---- watch ---- */

static void test_watch(void **state) {
    (void)state;
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(C, "w1", &d), 0);
    assert_int_equal(mpb_dict_set(d, "\xa1k", 2, "\x07", 1), 0);
    EXPECT_OUT(0, "dict/w1\t1\n\ndict/w1\t1\n\ndict/w1\t1\n", "watch", "-r", "3", "-i", "0.05",
               "ls", "dict/w*");
    EXPECT_OUT(0, "7\n\n7\n", "watch", "--interval", "0.05", "-r", "2", "get", "dict/w1", "k");
    /* --json: one document a line */
    MPB("watch", "-r", "3", "-i", "0.05", "--json", "info");
    assert_int_equal(R.status, 0);
    char *line = R.out;
    int lines = 0;
    for (char *nl; (nl = strchr(line, '\n')); line = nl + 1, lines++) {
        *nl = 0;
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j || !json_is_integer(json_object_get(j, "pid"))) show("a line is not info's JSON");
        json_decref(j);
    }
    assert_int_equal(lines, 3);
    /* clients: the table each round, the test's own session in every one */
    MPB("watch", "-r", "2", "-i", "0.05", "clients");
    assert_int_equal(R.status, 0);
    int tables = 0;
    for (const char *p = R.out; (p = strstr(p, "SESSION  HOST ")); p++)
        tables++;
    assert_int_equal(tables, 2);
    if (!strstr(R.out, " 127.0.0.1 ") || strchr(R.out, '\033'))
        show("watch clients: two tables, with the test's own client, no screen codes");
    /* a failing round is told and the next one runs; the status is the last
     * round's */
    MPB("watch", "-r", "2", "-i", "0.05", "get", "dict/w1", "nokey");
    assert_int_equal(R.status, 3);
    assert_string_equal(R.out, "\n");
    assert_string_equal(R.err, "mpb: get: no key \"nokey\" in dict/w1\n"
                               "mpb: get: no key \"nokey\" in dict/w1\n");
    /* it sees changes between rounds */
    pid_t pid = fork();
    if (pid == 0) {
        mpb_client_t *c = th_connect(&B);
        mpb_dict_t *x;
        usleep(1500000); /* after the first rounds, however slow mpb starts */
        int rc = mpb_dict_open(c, "w1", &x) || mpb_dict_set(x, "\xa1k", 2, "\x08", 1);
        mpb_dict_close(&x);
        mpb_close(&c);
        _exit(rc);
    }
    MPB("watch", "-r", "40", "-i", "0.1", "get", "dict/w1", "k");
    assert_int_equal(th_wait(pid, 10), 0);
    assert_int_equal(R.status, 0);
    if (!strstr(R.out, "7\n") || !strstr(R.out, "8\n") || strchr(R.out, '\033'))
        show("watch saw 7 then 8, without screen codes");
    mpb_dict_close(&d);
}

static void test_pool_watch_in_a_pipe(void **state) {
    (void)state;
    const char *argv[] = {th_mpb_cli, "pool", "--watch", "--interval", "0.05", NULL};
    spawn(argv, 3000, false, NULL, NULL); /* rounds of 0.05 s, however slow mpb starts */
    assert_int_equal(R.status, 128 + SIGTERM);
    if (strchr(R.out, '\033')) show("screen codes in a pipe");
    char *second = strstr(R.out, "WORKERS 0\n");
    if (!second || !strstr(second + 1, "WORKERS 0\n")) show("two rounds of the table");
}

/* ---- sessions: clients, kill ---- */

/* A client named name; idx 0 holds lock/K, idx 1 parks a get on queue/kq. Writes the
 * outcome's code to fd out (0: got it), then sleeps until killed. */
static void session_child(const char *name, int what, int out) {
    mpb_options_t o;
    mpb_options_init(&o);
    o.name = name;
    mpb_client_t *c;
    if (th_connect_opts(&B, &o, &c)) _exit(10);
    int rc;
    if (what == 0) {
        mpb_lock_t *l;
        uint64_t fence;
        rc = mpb_lock_open(c, "K", &l) || mpb_lock_acquire(l, 5000, &fence);
        if (write(out, &rc, sizeof rc) < 0) _exit(11);
    } else {
        mpb_queue_t *q;
        void *v;
        size_t vn;
        rc = mpb_queue_open(c, "kq", 0, 0, &q);
        if (!rc) rc = mpb_queue_get(q, &v, &vn, 15000);
        if (write(out, &rc, sizeof rc) < 0) _exit(11);
    }
    for (int i = 0; i < 300; i++)
        usleep(100000);
    _exit(0);
}

/* The session id of the client named name in mpb clients --json, or 0. */
static long long session_of(const char *name) {
    MPB("clients", "--json");
    json_error_t je;
    json_t *all = json_loads(R.out, 0, &je), *c;
    size_t i;
    long long id = 0;
    json_array_foreach(all, i, c) {
        if (!strcmp(json_string_value(json_object_get(c, "name")), name))
            id = json_integer_value(json_object_get(c, "session"));
    }
    json_decref(all);
    return id;
}

static void test_clients_and_kill(void **state) {
    (void)state;
    int ph[2], pg[2];
    assert_int_equal(pipe(ph), 0);
    assert_int_equal(pipe(pg), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t holder = fork();
    if (holder == 0) session_child("holder", 0, ph[1]);
    int rc = -1;
    assert_int_equal(read(ph[0], &rc, sizeof rc), (ssize_t)sizeof rc);
    assert_int_equal(rc, 0);
    pid_t getter = fork();
    if (getter == 0) session_child("getter", 1, pg[1]);
    long long hid = 0, gid = 0;
    for (int i = 0; i < 100 && !(strstr(R.out, "queue/kq") && hid && gid); i++) {
        usleep(50000);
        hid = session_of("holder");
        gid = session_of("getter");
    }
    assert_true(hid > 0 && gid > 0);
    assert_non_null(strstr(R.out, "\"holds\":[{\"object\":\"lock/K\",\"units\":1}]"));
    assert_non_null(strstr(R.out, "\"waits\":[{\"object\":\"queue/kq\",\"op\":\"queue.get\"}]"));
    MPB("clients");
    assert_int_equal(R.status, 0);
    assert_true(!strncmp(
        R.out, "SESSION  HOST             PID      ADDRESS          NAME         CONNECTED", 74));
    char want[200];
    snprintf(want, sizeof want, "\n%-8lld ", hid);
    char *line = strstr(R.out, want);
    if (!line || !strstr(line, " 127.0.0.1 ") || !strstr(line, " holder ") ||
        !strstr(line, " lock/K "))
        show("the holder's line: 127.0.0.1, holder, lock/K");
    snprintf(want, sizeof want, "\n%-8lld ", gid);
    line = strstr(R.out, want);
    if (!line || !strstr(line, " getter ") || !strstr(line, "queue/kq(queue.get)"))
        show("the getter's line");
    /* kill the getter: its parked get is answered, its session gone */
    char id[32];
    snprintf(id, sizeof id, "%lld", gid);
    EXPECT_OUT(0, "", "kill", id);
    assert_int_equal(read(pg[0], &rc, sizeof rc), (ssize_t)sizeof rc);
    if (rc == 0 || rc == MPB_ETIMEDOUT) fail_msg("the killed session's get answered %d", rc);
    assert_int_equal(session_of("getter"), 0);
    EXPECT_ERR(3, "kill: no session", "kill", id);
    /* kill the holder: the lock is free at once, with a larger fence */
    MPB("--json", "info", "lock/K");
    json_error_t je;
    json_t *j = json_loads(R.out, 0, &je);
    uint64_t fence0 = (uint64_t)json_integer_value(json_object_get(j, "fence"));
    json_decref(j);
    snprintf(id, sizeof id, "%lld", hid);
    EXPECT_OUT(0, "{\"ok\":true}\n", "--json", "kill", id);
    mpb_lock_t *l;
    uint64_t fence = 0;
    assert_int_equal(mpb_lock_open(C, "K", &l), 0);
    assert_int_equal(mpb_lock_acquire(l, 0, &fence), 0);
    assert_true(fence > fence0);
    assert_int_equal(mpb_lock_release(l), 0);
    mpb_lock_close(&l);
    /* a session cannot kill itself; the broker goes on serving */
    long long me = 0;
    MPB("clients", "--json");
    json_t *all = json_loads(R.out, 0, &je), *c;
    size_t i;
    json_array_foreach(all, i, c) {
        if (json_integer_value(json_object_get(c, "pid")) == getpid())
            me = json_integer_value(json_object_get(c, "session"));
    }
    json_decref(all);
    assert_true(me > 0);
    uint8_t args[10] = {0x91, 0xcf};
    for (int k = 0; k < 8; k++)
        args[2 + k] = (uint8_t)((uint64_t)me >> (56 - 8 * k));
    assert_int_equal(mpb_call(C, MPB_OP_SESSION_KILL, NULL, args, sizeof args, 0, NULL, NULL),
                     MPB_EINVAL);
    assert_int_equal(mpb_call(C, MPB_OP_SESSION_KILL, NULL, "\x91\xa1x", 3, 0, NULL, NULL),
                     MPB_ETYPE);
    EXPECT_ERR(2, "kill takes SESSION", "kill");
    EXPECT_ERR(2, "kill: SESSION '-5' is not a session number", "kill", "-5");
    EXPECT_ERR(2, "clients takes no arguments", "clients", "x");
    EXPECT_OUT(0, "pong\n", "ping");
    kill(holder, SIGKILL);
    kill(getter, SIGKILL);
    th_wait(holder, 10);
    th_wait(getter, 10);
    close(ph[0]), close(ph[1]), close(pg[0]), close(pg[1]);
}

/* ---- holders and waiters in mpb info ---- */

static void test_info_holders_and_waiters(void **state) {
    (void)state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child == 0) {
        /* takes 2 units of semaphore/ws, then parks a get on queue/wq */
        mpb_client_t *c = th_connect(&B);
        mpb_semaphore_t *s;
        mpb_queue_t *q;
        void *v;
        size_t vn;
        int rc = mpb_semaphore_open(c, "ws", 3, 0, &s) || mpb_semaphore_acquire(s, 0) ||
                 mpb_semaphore_acquire(s, 0) || mpb_queue_open(c, "wq", 0, 0, &q);
        if (write(pfd[1], &rc, sizeof rc) < 0) _exit(11);
        if (!rc) mpb_queue_get(q, &v, &vn, 30000);
        _exit(0);
    }
    int rc = -1;
    assert_int_equal(read(pfd[0], &rc, sizeof rc), (ssize_t)sizeof rc);
    assert_int_equal(rc, 0);
    json_t *w = NULL;
    for (int i = 0; i < 100 && json_array_size(w) == 0; i++) {
        usleep(50000);
        MPB("--json", "info", "queue/wq");
        json_error_t je;
        json_t *j = json_loads(R.out, 0, &je);
        json_decref(w);
        w = json_incref(json_object_get(j, "waiting"));
        json_decref(j);
    }
    assert_int_equal(json_array_size(w), 1);
    json_t *e = json_array_get(w, 0);
    assert_int_equal(json_integer_value(json_object_get(e, "pid")), child);
    assert_string_equal(json_string_value(json_object_get(e, "op")), "queue.get");
    long long sess = (long long)json_integer_value(json_object_get(e, "session"));
    assert_true(sess > 0);
    json_decref(w);
    char want[300];
    MPB("--json", "info", "semaphore/ws");
    json_error_t je;
    json_t *j = json_loads(R.out, 0, &je);
    char *holders =
        json_dumps(json_object_get(j, "unit_holders"), JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    snprintf(want, sizeof want, "[{\"session\":%lld,\"host\":\"%s\",\"pid\":%d,\"units\":2}]", sess,
             host, (int)child);
    assert_string_equal(holders, want);
    free(holders);
    kill(child, SIGKILL);
    th_wait(child, 10);
    close(pfd[0]), close(pfd[1]);
}

/* ---- the slow log ---- */

/* mpb save: the snapshot is on disk when it answers, its size and time said (or as JSON). */
static void test_save(void **state) {
    (void)state;
    MPB("set", "dict/saved", "k", "\"v\"");
    assert_int_equal(R.status, 0);
    MPB("save");
    assert_int_equal(R.status, 0);
    long long bytes = -1, ms = -1;
    if (sscanf(R.out, "saved %lld bytes in %lld ms\n", &bytes, &ms) != 2 || bytes <= 0 || ms < 0)
        show("save: \"saved N bytes in M ms\"");
    char path[400];
    snprintf(path, sizeof path, "%s/data/snapshot", B.dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 0);
    MPB("save", "--json");
    assert_int_equal(R.status, 0);
    json_error_t je;
    json_t *j = json_loads(R.out, 0, &je);
    if (!j || json_integer_value(json_object_get(j, "bytes")) <= 0) show("save --json: bytes");
    json_decref(j);
    EXPECT_ERR(2, "save takes no arguments", "save", "now");
}

static void test_slowlog(void **state) {
    (void)state;
    th_broker_t b2;
    /* every request is slow; the log keeps 4 */
    th_broker_start(&b2, "--slowlog-log-slower-than", "0", "--slowlog-max-len", "4", NULL);
    MPB("set", "dict/s", "k", "1", "-e", b2.endpoint, "-k", b2.keyfile);
    assert_int_equal(R.status, 0);
    MPB("slowlog", "2", "--json", "-e", b2.endpoint, "-k", b2.keyfile);
    assert_int_equal(R.status, 0);
    json_error_t je;
    json_t *all = json_loads(R.out, 0, &je);
    /* newest first: the set's process ended with dict.set then bye */
    assert_int_equal(json_array_size(all), 2);
    json_t *bye = json_array_get(all, 0), *set = json_array_get(all, 1);
    assert_string_equal(json_string_value(json_object_get(bye, "op")), "bye");
    assert_string_equal(json_string_value(json_object_get(set, "op")), "dict.set");
    assert_string_equal(json_string_value(json_object_get(set, "object")), "dict/s");
    assert_int_equal(json_integer_value(json_object_get(set, "id")) + 1,
                     json_integer_value(json_object_get(bye, "id")));
    assert_true(json_integer_value(json_object_get(set, "duration_us")) >= 0);
    assert_true(json_integer_value(json_object_get(set, "session")) > 0);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    assert_string_equal(json_string_value(json_object_get(set, "host")), host);
    json_decref(all);
    /* no more than slowlog-max-len */
    MPB("slowlog", "100", "--json", "-e", b2.endpoint, "-k", b2.keyfile);
    all = json_loads(R.out, 0, &je);
    assert_int_equal(json_array_size(all), 4);
    json_decref(all);
    MPB("slowlog", "-e", b2.endpoint, "-k", b2.keyfile);
    assert_int_equal(R.status, 0);
    assert_true(!strncmp(R.out, "ID     TIME                 DURATION_US OP", 42));
    th_broker_stop(&b2);
    /* max-len 0 keeps none, whatever the threshold */
    th_broker_start(&b2, "--slowlog-log-slower-than", "0", "--slowlog-max-len", "0", NULL);
    MPB("set", "dict/s", "k", "1", "-e", b2.endpoint, "-k", b2.keyfile);
    EXPECT_OUT(0, "[]\n", "slowlog", "--json", "-e", b2.endpoint, "-k", b2.keyfile);
    th_broker_stop(&b2);
    /* a threshold past anything served here keeps none */
    th_broker_start(&b2, "--slowlog-log-slower-than", "3600000000", NULL);
    MPB("set", "dict/s", "k", "1", "-e", b2.endpoint, "-k", b2.keyfile);
    EXPECT_OUT(0, "[]\n", "slowlog", "--json", "-e", b2.endpoint, "-k", b2.keyfile);
    th_broker_stop(&b2);
    EXPECT_ERR(2, "slowlog: N '0' is not 1..100000", "slowlog", "0");
    EXPECT_ERR(2, "slowlog takes at most a count", "slowlog", "1", "2");
    /* the op refuses a count that is not one */
    assert_int_equal(mpb_call(C, MPB_OP_SLOWLOG, NULL, "\x91\xa1x", 3, 0, NULL, NULL), MPB_ETYPE);
    assert_int_equal(mpb_call(C, MPB_OP_SLOWLOG, NULL, "\x91\xc0", 2, 0, NULL, NULL), 0);
    /* the setting is checked as the others are */
    const char *bad[] = {MPBROKERD_PATH, "--slowlog-max-len", "-1", NULL};
    spawn(bad, 0, false, NULL, NULL);
    assert_int_equal(R.status, 2);
    assert_non_null(strstr(R.err, "slowlog-max-len"));
}

/* ---- pool apply with no worker for the function ---- */

static void test_pool_apply_no_worker(void **state) {
    (void)state;
    int64_t t0 = th_now_ms();
    EXPECT_ERR(1, "pool apply: no worker serves 'square' (mpb pool lists the workers; --wait",
               "pool", "apply", "square", "7");
    int64_t took = th_now_ms() - t0;
    if (took < 900 || took > 10000)
        fail_msg("told after %lld ms, not about a second", (long long)took);
    MPB("--json", "pool", "apply", "square", "7");
    assert_int_equal(R.status, 1);
    assert_true(strstr(R.out, "{\"error\":{\"code\":\"ENOWORKER\"") == R.out);
    /* --wait: said once, then the wait goes on to its bound */
    MPB("pool", "apply", "square", "7", "--wait", "--timeout", "1.5");
    assert_int_equal(R.status, 75);
    assert_string_equal(R.out, "");
    assert_true(strstr(R.err, "mpb: pool apply: no worker serves 'square' yet; waiting\n") ==
                R.err);
    assert_non_null(strstr(R.err, "pool apply: timed out after 1500 ms"));
    /* --wait, and a worker comes: the result */
    const char *wargv[] = {sibling("mpb-worker"), "--lib", MPB_DEMO_LIB, "--fn", "square", NULL};
    fflush(stdout);
    fflush(stderr);
    pid_t w = fork();
    if (w == 0) {
        usleep(1800000);
        int nul = open("/dev/null", O_WRONLY);
        dup2(nul, 2);
        execv(wargv[0], (char **)wargv);
        _exit(127);
    }
    MPB("pool", "apply", "square", "7", "--wait", "--timeout", "30");
    kill(w, SIGTERM);
    assert_int_equal(th_wait(w, 10), 0);
    if (R.status != 0 || strcmp(R.out, "49\n") || !strstr(R.err, "yet; waiting"))
        show("--wait got the result of a worker started later");
    EXPECT_ERR(2, "pool apply takes FN JSON_VALUE", "pool", "apply", "square", "--wait");
}

/* ---- on a terminal ---- */

static void test_get_on_terminal_says_it_waits(void **state) {
    (void)state;
    const char *argv[] = {th_mpb_cli, "get", "queue/tty", NULL};
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(C, "tty", 0, 0, &q), 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* the item comes once mpb has said it waits */
        mpb_client_t *c = th_connect(&B);
        mpb_queue_t *x;
        usleep(700000);
        int rc = mpb_queue_open(c, "tty", 0, 0, &x) || mpb_queue_put(x, "\x2a", 1, 1000);
        mpb_queue_close(&x);
        mpb_close(&c);
        _exit(rc);
    }
    spawn(argv, 0, true, NULL, NULL);
    assert_int_equal(th_wait(pid, 10), 0);
    assert_int_equal(R.status, 0);
    assert_string_equal(R.out, "mpb: waiting for an item on queue/tty (Ctrl-C to stop; --timeout "
                               "S bounds the wait)\r\n42\r\n");
    /* an item already there: taken without a word */
    assert_int_equal(mpb_queue_put(q, "\x2b", 1, 1000), 0);
    spawn(argv, 0, true, NULL, NULL);
    assert_int_equal(R.status, 0);
    assert_string_equal(R.out, "43\r\n");
    mpb_queue_close(&q);
}

static void test_prompt(void **state) {
    (void)state;
    char hist[400];
    snprintf(hist, sizeof hist, "%s/history", B.dir);
    setenv("MPB_HISTFILE", hist, 1);
    const char *argv[] = {th_mpb_cli, NULL};
    spawn(argv, 0, true,
          "set dict/p k '\"two words\"'\nget dict/p k\nget dict/p k "
          "--json\nfrob\nls 'dict/p'\n"
          "quit\n",
          "> ");
    if (R.status != 0) show("prompt exit status");
    if (!strstr(R.out, "\r\n\"two words\"\r\n") || !strstr(R.out, "mpb: unknown command 'frob'") ||
        !strstr(R.out, "dict/p\t1\r\n"))
        show("prompt output");
    FILE *f = fopen(hist, "r");
    assert_non_null(f);
    char buf[1000];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    if (!strstr(buf, "dict/p")) fail_msg("history: \"%s\"", buf);
    /* the history is there next time: up arrow four times is "get dict/p k
     * --json" */
    spawn(argv, 0, true, "\033[A\033[A\033[A\033[A\nquit\n", "> ");
    if (R.status != 0 || !strstr(R.out, "get dict/p k --json\r\n\"two words\"\r\n"))
        show("history recalled");
    /* Ctrl-D at once ends it with status 0 */
    spawn(argv, 0, true, "\004", "> ");
    assert_int_equal(R.status, 0);
    unsetenv("MPB_HISTFILE");
}

int main(void) {
    th_suite(&B, &C, TH_SUITE_ENV);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_options_after_command),
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_key_hint),
        cmocka_unit_test(test_task_done),
        cmocka_unit_test(test_peek),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_pool_watch_in_a_pipe),
        cmocka_unit_test(test_pool_apply_no_worker),
        cmocka_unit_test(test_clients_and_kill),
        cmocka_unit_test(test_info_holders_and_waiters),
        cmocka_unit_test(test_save),
        cmocka_unit_test(test_slowlog),
        cmocka_unit_test(test_get_on_terminal_says_it_waits),
        cmocka_unit_test(test_prompt),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
