/* test_cli3.c - mpb monitor against a real broker: another client's requests show with op,
 * object and session (their arguments only with --values, the monitor's own never, --json
 * one object a line), and a monitor that stops reading neither grows nor slows the broker:
 * the lines it missed are counted as skipped when it reads again. A connect to a closed port
 * or to a host that does not resolve fails at once with its cause, not after the timeout. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <jansson.h>

#include "th.h"

static th_broker_t B;
static mpb_client_t *C;

typedef struct {
    pid_t pid;
    int fd;
    size_t n;
    char out[1 << 22]; /* the stalled monitor writes ~4096 JSON lines */
} bg_t;
static bg_t M;

/* Starts `mpb ARGS...` (NULL-terminated) with its stdout on a pipe read by bg_until(). */
static void bg_start(const char *const *args) {
    int po[2];
    if (pipe(po)) fail_msg("pipe: %s", strerror(errno));
    M.pid = th_fork_bare();
    if (M.pid == 0) {
        const char *argv[16] = {th_mpb_cli};
        for (int i = 0; args[i] && i < 14; i++)
            argv[i + 1] = args[i];
        dup2(po[1], 1);
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    close(po[1]);
    M.fd = po[0];
    M.n = 0;
    M.out[0] = 0;
}

/* Reads the monitor's output until it holds want (true) or ms pass (false). */
static bool bg_until(const char *want, int ms) {
    int64_t end = th_now_ms() + ms;
    while (!strstr(M.out, want) && th_now_ms() < end) {
        struct pollfd p = {M.fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        ssize_t k = read(M.fd, M.out + M.n, sizeof M.out - 1 - M.n);
        if (k <= 0) break;
        M.n += (size_t)k;
        M.out[M.n] = 0;
    }
    return strstr(M.out, want) != NULL;
}

/* SIGTERM, the rest of its output, and its exit status (0 expected). */
static int bg_stop(void) {
    kill(M.pid, SIGTERM);
    bg_until("\x01never", 1000);
    close(M.fd);
    int st = th_wait(M.pid, 10);
    M.pid = 0;
    return st;
}

/* Sets dict/NAME k=v from C until the running monitor shows want (it has started). */
static void sync_monitor(const char *want) {
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(C, "ready", &d), C);
    size_t kn, vn;
    for (int i = 0; i < 250 && !strstr(M.out, want); i++) {
        const uint8_t *k = th_str("go", &kn);
        uint8_t kb[16];
        memcpy(kb, k, kn);
        const uint8_t *v = th_int(i, &vn);
        th_assert_ok(mpb_dict_set(d, kb, kn, v, vn), C);
        bg_until(want, 20);
    }
    mpb_dict_close(&d);
    if (!strstr(M.out, want)) fail_msg("the monitor never showed '%s': \"%s\"", want, M.out);
}

/* d[key] = val, both msgpack-encoded (a string key, an int value). */
static void dict_set(mpb_dict_t *d, const char *key, int64_t val) {
    size_t kn, vn;
    uint8_t kb[64];
    const uint8_t *k = th_str(key, &kn);
    memcpy(kb, k, kn);
    const uint8_t *v = th_int(val, &vn);
    th_assert_ok(mpb_dict_set(d, kb, kn, v, vn), C);
}

static void set_x(const char *key, int64_t val) {
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(C, "x", &d), C);
    dict_set(d, key, val);
    mpb_dict_close(&d);
}

static void test_monitor_text(void **state) {
    (void)state;
    char want[200];
    uint64_t sid = mpb_session_id(C);
    bg_start((const char *[]){"monitor", NULL});
    sync_monitor("dict.set dict/ready");
    set_x("secret-key", 4242);
    snprintf(want, sizeof want, "[%llu] dict.set dict/x ", (unsigned long long)sid);
    if (!bg_until(want, 5000)) fail_msg("no '%s' in \"%s\"", want, M.out);
    assert_int_equal(bg_stop(), 0);
    /* the line is: HH:MM:SS.mmm [SESSION] OP OBJECT LATENCYus, and no value without --values */
    const char *l = strstr(M.out, want);
    const char *eol = strchr(l, '\n');
    assert_non_null(eol);
    assert_int_equal(eol[-1], 's');
    assert_int_equal(eol[-2], 'u');
    assert_null(strstr(M.out, "secret-key"));
    assert_null(strstr(M.out, "4242"));
    assert_null(strstr(M.out, " monitor ")); /* its own reads are not shown */
}

static void test_monitor_values_json(void **state) {
    (void)state;
    uint64_t sid = mpb_session_id(C);
    bg_start((const char *[]){"--json", "monitor", "--values", NULL});
    sync_monitor("\"dict/ready\"");
    set_x("secret-key", 4242);
    if (!bg_until("secret-key", 5000)) fail_msg("no value in \"%s\"", M.out);
    assert_int_equal(bg_stop(), 0);
    int found = 0;
    for (char *line = strtok(M.out, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j) fail_msg("not JSON: '%s'", line);
        const char *op = json_string_value(json_object_get(j, "op"));
        assert_non_null(op);
        assert_string_not_equal(op, "monitor");
        if (!strcmp(op, "dict.set") &&
            !strcmp(json_string_value(json_object_get(j, "object")), "dict/x")) {
            found++;
            assert_int_equal(json_integer_value(json_object_get(j, "session")), (json_int_t)sid);
            assert_int_equal(json_integer_value(json_object_get(j, "code")), 0);
            assert_true(json_integer_value(json_object_get(j, "latency_us")) >= 0);
            json_t *a = json_object_get(j, "args");
            assert_int_equal(json_array_size(a), 2);
            assert_string_equal(json_string_value(json_array_get(a, 0)), "secret-key");
            assert_int_equal(json_integer_value(json_array_get(a, 1)), 4242);
        }
        json_decref(j);
    }
    assert_int_equal(found, 1);
}

/* A monitor stopped (SIGSTOP) while 5000 requests are served: the broker keeps only its
 * ring of 4096 lines for it, so when it goes on it reports the rest as skipped and shows the
 * newest lines, up to the last request. */
static void test_monitor_stalled(void **state) {
    (void)state;
    enum { N = 5000, RING = 4096 };
    bg_start((const char *[]){"--json", "monitor", "--values", NULL});
    sync_monitor("\"dict/ready\"");
    kill(M.pid, SIGSTOP);
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(C, "stall", &d), C);
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        dict_set(d, key, i);
    }
    mpb_dict_close(&d);
    kill(M.pid, SIGCONT);
    if (!bg_until("\"k4999\"", 10000)) fail_msg("the last request never showed");
    assert_int_equal(bg_stop(), 0);
    long long skipped = -1;
    int sets = 0, last = -1;
    for (char *line = strtok(M.out, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j) fail_msg("not JSON: '%s'", line);
        json_t *sk = json_object_get(j, "skipped");
        if (sk) {
            assert_int_equal(skipped, -1); /* once, when it read again */
            skipped = json_integer_value(sk);
        } else if (!strcmp(json_string_value(json_object_get(j, "object")), "dict/stall") &&
                   !strcmp(json_string_value(json_object_get(j, "op")), "dict.set")) {
            int i = (int)json_integer_value(json_array_get(json_object_get(j, "args"), 1));
            assert_true(i > last); /* in order, none twice */
            last = i;
            sets++;
        }
        json_decref(j);
    }
    assert_int_equal(last, N - 1);
    /* at most the ring's worth shown; what it lost is counted, not queued */
    assert_true(sets <= RING);
    assert_true(skipped >= N - RING);
    assert_true(skipped + sets >= N);
    assert_int_equal(th_broker_alive(&B), 1);
}

static void test_monitor_usage(void **state) {
    (void)state;
    bg_start((const char *[]){"monitor", "--bogus", NULL});
    bg_until("\x01never", 2000);
    close(M.fd);
    assert_int_equal(th_wait(M.pid, 10), 2);
}

/* mpb -e EP --connect-timeout 20 get dict/x k: its exit status and stderr, and how long it
 * took (ms) in *ms. */
static int get_from(const char *ep, int64_t *ms, char *err, size_t errlen) {
    static th_run_t r;
    const char *argv[] = {th_mpb_cli, "-e", ep,  "--connect-timeout", "20", "get",
                          "dict/x",   "k",  NULL};
    const th_run_opts_t o = {.timeout_ms = 30000};
    int st = th_run(argv, &o, &r);
    size_t n = strnlen(r.err, errlen - 1); /* the start of stderr: what the test looks at */
    memcpy(err, r.err, n);
    err[n] = 0;
    *ms = r.ms;
    return st;
}

/* A loopback port with nothing listening: bound, then closed. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len))
        fail_msg("bind: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* The bound: well under the 20 s connect timeout (generous for ASan and a busy box). */
#define FAST_MS 5000

static void test_connect_refused(void **state) {
    (void)state;
    char ep[64], err[2048], want[100];
    int port = closed_port();
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    int64_t ms;
    int st = get_from(ep, &ms, err, sizeof err);
    snprintf(want, sizeof want, "connection refused by 127.0.0.1:%d", port);
    if (st != 1 || !strstr(err, want) || strncmp(err, "mpb: ", 5))
        fail_msg("exit %d, stderr \"%s\"", st, err);
    if (ms >= FAST_MS) fail_msg("took %lld ms", (long long)ms);
}

static void test_connect_unresolvable(void **state) {
    (void)state;
    char err[2048];
    int64_t ms;
    /* .invalid never resolves (RFC 2606) */
    int st = get_from("tcp://no-such-host.invalid:5555", &ms, err, sizeof err);
    if (st != 1 || !strstr(err, "cannot resolve host 'no-such-host.invalid'"))
        fail_msg("exit %d, stderr \"%s\"", st, err);
    if (ms >= FAST_MS) fail_msg("took %lld ms", (long long)ms);
    /* the broker is unaffected, and a real endpoint still connects */
    st = get_from(B.endpoint, &ms, err, sizeof err);
    assert_int_equal(st, 3); /* no such key: it connected */
}

static int teardown(void **state) {
    (void)state;
    if (M.pid > 0 && kill(M.pid, 0) == 0) { /* a failed case left its monitor */
        kill(M.pid, SIGKILL);
        th_wait(M.pid, 10);
    }
    mpb_close(&C);
    th_broker_stop_checked(&B);
    return 0;
}

int main(void) {
    th_suite(&B, &C, TH_SUITE_ENV);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monitor_text),    cmocka_unit_test(test_monitor_values_json),
        cmocka_unit_test(test_monitor_stalled), cmocka_unit_test(test_monitor_usage),
        cmocka_unit_test(test_connect_refused), cmocka_unit_test(test_connect_unresolvable),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, teardown);
}
