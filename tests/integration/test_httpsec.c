/* test_httpsec.c - the HTTP endpoint on an open network (issue 11, finding 4):
 * /healthz and /readyz keep answering within 100 ms, every one of them, while one
 * address holds a slowloris of 70 connections, each dribbling a header line, and
 * the dribblers are closed by the per-address limit or the whole-request deadline;
 * --http-auth makes
 * /metrics ask for the bearer token in its file while the probes stay open.
 * Before, 70 such connections held all of libmicrohttpd's 64 and /healthz timed
 * out for as long as they lasted. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "th.h"

#define NLORIS 70

/* A TCP connection to 127.0.0.1:port from the loopback address src (all of
 * 127/8 is ours). */
static int dial(const char *src, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    a.sin_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &a.sin_addr), 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Sends req from src and reads the whole answer (2 s at most); returns the
 * status code and the body in body (NUL-terminated, cut to n). -1: no answer in
 * time. *connect_ms (if not NULL) gets what its own connect took. */
static int http_timed(const char *src, int port, const char *req, char *body, size_t n,
                      int64_t *connect_ms) {
    int64_t t0 = th_now_ms();
    int fd = dial(src, port);
    if (connect_ms) *connect_ms = th_now_ms() - t0;
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    char buf[65536];
    size_t len = 0;
    int64_t end = th_now_ms() + 2000;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int64_t left = end - th_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            close(fd);
            return -1;
        }
        ssize_t k = read(fd, buf + len, sizeof buf - 1 - len);
        if (k <= 0) break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = 0;
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) return -1;
    const char *b = strstr(buf, "\r\n\r\n");
    if (body) snprintf(body, n, "%s", b ? b + 4 : "");
    return status;
}

static int http(const char *src, int port, const char *req, char *body, size_t n) {
    return http_timed(src, port, req, body, n, NULL);
}

static void test_httpsec_slowloris(void **state) {
    (void)state;
    th_broker_t b;
    th_broker_start(&b, "--http", "127.0.0.1:0", NULL);
    int port = th_http_port(&b);
    assert_true(port > 0);
    int fds[NLORIS];
    int64_t closed_at[NLORIS];
    int64_t t0 = th_now_ms();
    for (int i = 0; i < NLORIS; i++) {
        fds[i] = dial("127.0.0.2", port);
        closed_at[i] = 0;
        const char *line = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
        if (write(fds[i], line, strlen(line)) < 0) closed_at[i] = th_now_ms();
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
    /* 5 s of it: a header line on each open connection every 500 ms (well inside
     * any idle timeout), and a probe from another address every 100 ms */
    int probes = 0, slow = 0, bad = 0;
    int64_t worst = 0, worst_connect = 0, next_dribble = th_now_ms() + 500;
    while (th_now_ms() - t0 < 5000) {
        if (th_now_ms() >= next_dribble) {
            next_dribble += 500;
            for (int i = 0; i < NLORIS; i++) {
                if (closed_at[i]) continue;
                char c[64];
                ssize_t k = read(fds[i], c, sizeof c);
                if (k == 0 || (k < 0 && errno != EAGAIN) || write(fds[i], "X-Slow: 1\r\n", 11) < 0)
                    closed_at[i] = th_now_ms();
            }
        }
        int64_t p0 = th_now_ms(), conn;
        char body[64];
        bool ready = probes % 2; /* /healthz and /readyz in turn */
        const char *req = ready ? "GET /readyz HTTP/1.0\r\n\r\n" : "GET /healthz HTTP/1.0\r\n\r\n";
        int st = http_timed("127.0.0.1", port, req, body, sizeof body, &conn);
        int64_t dt = th_now_ms() - p0 - conn; /* the request written to the answer read */
        probes++;
        if (dt > worst) worst = dt;
        if (conn > worst_connect) worst_connect = conn;
        if (dt >= 100) slow++;
        if (st != 200 || strcmp(body, ready ? "ready\n" : "ok\n")) bad++;
        usleep(100000);
    }
    int open_left = 0;
    int64_t last_close = 0;
    for (int i = 0; i < NLORIS; i++) {
        if (!closed_at[i]) { /* one last look */
            char c[64];
            ssize_t k = read(fds[i], c, sizeof c);
            if (k == 0 || (k < 0 && errno != EAGAIN)) closed_at[i] = th_now_ms();
        }
        if (!closed_at[i])
            open_left++;
        else if (closed_at[i] - t0 > last_close)
            last_close = closed_at[i] - t0;
        close(fds[i]);
    }
    print_message("%d probes during the slowloris: %d answered in 100 ms or more, slowest %lld "
                  "ms (their own connects: slowest %lld ms); dribblers all closed by %lld ms\n",
                  probes, slow, (long long)worst, (long long)worst_connect, (long long)last_close);
    assert_true(probes >= 20);
    assert_int_equal(bad, 0);
    /* Every probe answered within 100 ms of its request (before, they all timed out). The
     * broker answers them from a thread of its own, whatever its loop is doing. What is not
     * the broker's, the probe's own connect (the kernel's handshake, and this process waiting
     * for a CPU on a loaded machine), is
     * held only to stay clear of a probe's 1 s timeout. */
    assert_int_equal(slow, 0);
    assert_true(worst_connect < 1000);
    /* none outlived the per-address limit (at accept) or the 3 s deadline,
     * dribbling or not */
    assert_int_equal(open_left, 0);
    assert_true(last_close < 4800);

    /* and /readyz, and a client */
    assert_int_equal(http("127.0.0.1", port, "GET /readyz HTTP/1.0\r\n\r\n", NULL, 0), 200);
    mpb_client_t *c = th_connect(&b);
    th_assert_dict_roundtrip(c, "loris", 1);
    mpb_close(&c);
    th_broker_stop_checked(&b);
}

static void test_httpsec_auth(void **state) {
    (void)state;
    char dir[] = "/tmp/mpbhttp.XXXXXX", tok[64];
    assert_non_null(mkdtemp(dir));
    snprintf(tok, sizeof tok, "%s/token", dir);
    FILE *f = fopen(tok, "w");
    assert_non_null(f);
    fputs("s3cret-scrape-token-0123456789\n", f);
    fclose(f);
    assert_int_equal(chmod(tok, 0600), 0);
    th_broker_t b;
    th_broker_start(&b, "--http", "127.0.0.1:0", "--http-auth", tok, NULL);
    int port = th_http_port(&b);
    assert_true(port > 0);
    char body[65536];
    /* no token, a wrong one, another scheme: 401 and nothing of the page */
    assert_int_equal(http("127.0.0.1", port, "GET /metrics HTTP/1.0\r\n\r\n", body, sizeof body),
                     401);
    assert_null(strstr(body, "mpb_"));
    assert_int_equal(http("127.0.0.1", port,
                          "GET /metrics HTTP/1.0\r\nAuthorization: Bearer "
                          "s3cret-scrape-token-0123456788\r\n\r\n",
                          body, sizeof body),
                     401);
    assert_int_equal(http("127.0.0.1", port,
                          "GET /metrics HTTP/1.0\r\nAuthorization: Bearer s3cret\r\n\r\n", body,
                          sizeof body),
                     401);
    assert_int_equal(http("127.0.0.1", port,
                          "GET /metrics HTTP/1.0\r\nAuthorization: Basic czNjcmV0\r\n\r\n", body,
                          sizeof body),
                     401);
    /* the token: the page */
    assert_int_equal(http("127.0.0.1", port,
                          "GET /metrics HTTP/1.0\r\nAuthorization: Bearer "
                          "s3cret-scrape-token-0123456789\r\n\r\n",
                          body, sizeof body),
                     200);
    assert_non_null(strstr(body, "mpb_sessions "));
    /* the probes need none */
    assert_int_equal(http("127.0.0.1", port, "GET /healthz HTTP/1.0\r\n\r\n", body, sizeof body),
                     200);
    assert_int_equal(http("127.0.0.1", port, "GET /readyz HTTP/1.0\r\n\r\n", body, sizeof body),
                     200);
    mpb_client_t *c = th_connect(&b);
    th_assert_dict_roundtrip(c, "auth", 2);
    mpb_close(&c);
    th_broker_stop_checked(&b);

    /* a token file others can write is refused, as an authkey file is */
    assert_int_equal(chmod(tok, 0666), 0);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "%s --check-config --listen tcp://127.0.0.1:0 --data-dir %s/d "
             "--http-auth %s "
             "> %s/out 2>&1",
             MPBROKERD_PATH, dir, tok, dir);
    int st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    snprintf(cmd, sizeof cmd,
             "grep -q 'http-auth (flag --http-auth): http-auth token file .* is "
             "writable by others' %s/out",
             dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_httpsec_slowloris),
        cmocka_unit_test(test_httpsec_auth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
