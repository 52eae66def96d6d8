/* test_unix.c - unix:// endpoints (broker/stream.c, client/src/link.c): the protocol's frames
 * on a Unix stream socket, each after its length (u32, big-endian), with no ZeroMQ. Ops from
 * several processes over it, bad input on a raw socket (a frame over the bound for a peer
 * without a session, a partial frame left idle, bad magic answered, a flood of silent
 * connections), a client that never reads its replies, a broker killed and restarted under
 * its clients (same descriptor number, same session, a parked get that completes), the starts
 * the broker refuses (encryption on, a regular file, a live broker's socket) and the stale
 * socket it replaces, and ZeroMQ peers that pose as a unix:// connection. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "rawclient.h"
#include "rawsock.h"
#include "th.h"

/* The largest frame a connection without a session may send (STREAM_UNPROVEN_FRAME). */
#define UNPROVEN_FRAME 16384

static th_broker_t B;   /* the suite's broker: tcp:// (encrypted) and unix:// upath */
static char upath[128]; /* its unix socket's path */
static char uep[160];   /* unix://upath */

/* /tmp/mpbtest-unix-PID-N.sock into buf, and unix:// of it into ep (may be NULL). */
static void make_path(char *buf, size_t n, char *ep, size_t epn, int k) {
    snprintf(buf, n, "/tmp/mpbtest-unix-%d-%d.sock", (int)getpid(), k);
    if (ep) snprintf(ep, epn, "unix://%s", buf);
}

/* Connects to endpoint with b's key and the options o (NULL: the defaults). */
static int connect_ep(th_broker_t *b, const char *endpoint, const mpb_options_t *o,
                      mpb_client_t **out) {
    size_t kl;
    const char *k = th_authkey(b, &kl);
    char key[512];
    memcpy(key, k, kl);
    return mpb_connect(endpoint, key, kl, o, out);
}

/* A client of b on endpoint; fails the test if it cannot connect. */
static mpb_client_t *must_connect(th_broker_t *b, const char *endpoint) {
    mpb_client_t *c = NULL;
    int rc = connect_ep(b, endpoint, NULL, &c);
    if (rc) fail_msg("connect %s: %s: %s", endpoint, mpb_strerror(rc), mpb_errmsg(c));
    return c;
}

/* Until b logs "ready" (its endpoint file, which th_broker_start() waits for, is written once
 * every endpoint is bound: this also checks that). before: how many "ready" lines b's log had
 * before (0 for a new broker). */
static void wait_ready(th_broker_t *b, int before) {
    int64_t end = th_now_ms() + 10000;
    while (th_log_count(b, "msg=\"ready\"") <= before) {
        if (th_now_ms() > end) fail_msg("the broker did not log ready within 10 s");
        usleep(5000);
    }
}

/* Starts b with the extra arguments (NULL-terminated) and waits until it
 * is ready on every endpoint. */
#define START(b, ...)                                                                              \
    do {                                                                                           \
        th_broker_start((b), __VA_ARGS__);                                                         \
        wait_ready((b), 0);                                                                        \
    } while (0)
#define RESTART(b, sig, ...)                                                                       \
    do {                                                                                           \
        int ready0_ = th_log_count((b), "msg=\"ready\"");                                          \
        th_broker_restart((b), (sig), __VA_ARGS__);                                                \
        wait_ready((b), ready0_);                                                                  \
    } while (0)

/* ---- raw unix:// connections ---- */

static int raw_unix(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) fail_msg("path too long: %s", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends one frame after its length. */
static bool send_frame(int fd, const void *p, size_t n) {
    uint8_t h[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    return rs_write_all(fd, h, 4) && rs_write_all(fd, p, n);
}

/* Reads one length-prefixed frame into buf (at most cap bytes) within timeout_ms: its length,
 * 0 on EOF, -1 on a timeout. */
static long read_frame(int fd, uint8_t *buf, size_t cap, int timeout_ms) {
    int64_t end = th_now_ms() + timeout_ms;
    uint8_t h[4];
    int r = rs_read_exact(fd, h, 4, end);
    if (r <= 0) return r;
    size_t n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (n == 0 || n > cap) fail_msg("a frame of %zu bytes from the broker", n);
    r = rs_read_exact(fd, buf, n, end);
    if (r <= 0) return r;
    return (long)n;
}

/* Whether fd has been closed by the broker (without waiting). */
static bool is_closed_now(int fd) {
    uint8_t c;
    ssize_t k = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Fails the test unless frame (n bytes) is an ERROR frame whose code is want_code; returns a
 * pointer to a static copy of its message. */
static const char *assert_error_frame(const uint8_t *f, long n, uint64_t want_code) {
    static char msg[256];
    assert_true(n >= MPB__HDR_LEN);
    assert_int_equal(f[0], 'M');
    assert_int_equal(f[1], 'B');
    assert_int_equal(f[2], 1);
    assert_int_equal(f[3], MPB__T_ERROR); /* 7 */
    mpb__rd_t r = {f + MPB__HDR_LEN, f + n};
    assert_int_equal(th_map_uint(&r, "code"), want_code);
    mpb__rd_t m = r, v;
    const char *s;
    uint32_t sn;
    assert_int_equal(mpb__rd_mapget(&m, "msg", &v), 0);
    assert_int_equal(mpb__rd_str(&v, &s, &sn), 0);
    snprintf(msg, sizeof msg, "%.*s", (int)sn, s);
    return msg;
}

/* A HELLO frame {v: 1, nonce} as libmpb sends it, into out. */
static void hello_frame(mpb__buf_t *out) {
    uint8_t nonce[MPB__NONCE_LEN];
    mpb__random(nonce, sizeof nonce);
    mpb__buf_t body = {0};
    mpb__w_map(&body, 2);
    mpb__w_cstr(&body, "v");
    mpb__w_uint(&body, MPB__PROTO_VERSION);
    mpb__w_cstr(&body, "nonce");
    mpb__w_bin(&body, nonce, sizeof nonce);
    rc_plain(out, MPB__T_HELLO, 0, body.p, body.len);
    mpb__buf_free(&body);
}

/* dict name: key set to v through c. */
static void dict_set(mpb_client_t *c, const char *name, const char *key, int64_t v) {
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, name, &d), c);
    th_assert_ok(mpb_dict_set_i64(d, key, v), c);
    mpb_dict_close(&d);
}

/* ---- 1. ops over unix:// ---- */

enum { PUT_ITEMS = 5 };

/* A child: puts 1000..1004 on queue "u.q" over unix:// and closes. */
static int putter(int idx, void *arg) {
    (void)idx, (void)arg;
    mpb_client_t *c = NULL;
    if (connect_ep(&B, uep, NULL, &c)) {
        fprintf(stderr, "putter: connect: %s\n", mpb_errmsg(c));
        return 1;
    }
    mpb_queue_t *q;
    int rc = mpb_queue_open(c, "u.q", -1, -1, &q);
    for (int i = 0; !rc && i < PUT_ITEMS; i++)
        rc = mpb_queue_put_i64(q, 1000 + i, 5000);
    if (rc) fprintf(stderr, "putter: %s: %s\n", mpb_strerror(rc), mpb_errmsg(c));
    mpb_queue_close(&q);
    mpb_close(&c);
    return rc != 0;
}

static void test_ops_over_unix(void **state) {
    (void)state;
    pid_t kid = th_fork(putter, NULL); /* before this process connects */
    mpb_client_t *c = must_connect(&B, uep);
    int fd = mpb_fd(c);
    struct stat st;
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(S_ISSOCK(st.st_mode)); /* the stream socket itself, no ZeroMQ */

    /* dict */
    size_t kn, vn;
    const uint8_t *k = th_str("name", &kn);
    uint8_t key[16];
    memcpy(key, k, kn);
    const uint8_t *v = th_str("over a unix socket", &vn);
    uint8_t val[64];
    memcpy(val, v, vn);
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "u.d", &d), c);
    th_assert_ok(mpb_dict_set(d, key, kn, val, vn), c);
    void *got;
    size_t gn;
    th_assert_ok(mpb_dict_get(d, key, kn, &got, &gn), c);
    th_assert_bytes(got, gn, val, vn);
    mpb_free(got);
    uint64_t len = 0;
    th_assert_ok(mpb_dict_len(d, &len), c);
    assert_int_equal(len, 1);
    mpb_dict_close(&d);

    /* the queue: the child's puts, in order */
    mpb_queue_t *q;
    th_assert_ok(mpb_queue_open(c, "u.q", -1, -1, &q), c);
    int64_t t0 = th_now_ms();
    for (int i = 0; i < PUT_ITEMS; i++) {
        int64_t x = -1;
        th_assert_ok(mpb_queue_get_i64(q, &x, 10000), c);
        assert_int_equal(x, 1000 + i);
    }
    int64_t qms = th_now_ms() - t0;
    mpb_queue_close(&q);
    assert_int_equal(th_wait(kid, 30), 0);

    /* a lock: held over unix://, refused to a tcp:// client meanwhile, then passed over */
    mpb_client_t *t = th_connect(&B);
    mpb_lock_t *l1, *l2;
    uint64_t f1 = 0, f2 = 0;
    th_assert_ok(mpb_lock_open(c, "u.lk", &l1), c);
    th_assert_ok(mpb_lock_open(t, "u.lk", &l2), t);
    th_assert_ok(mpb_lock_acquire(l1, 5000, &f1), c);
    assert_int_equal(mpb_lock_locked(l2), 1);
    assert_int_equal(mpb_lock_acquire(l2, MPB_NOWAIT, NULL), MPB_ETIMEDOUT);
    th_assert_ok(mpb_lock_release(l1), c);
    th_assert_ok(mpb_lock_acquire(l2, 5000, &f2), t);
    assert_true(f2 > f1);
    assert_int_equal(mpb_lock_release(l1), MPB_ENOTOWNER);
    th_assert_ok(mpb_lock_release(l2), t);
    assert_int_equal(mpb_lock_locked(l1), 0);
    mpb_lock_close(&l1);
    mpb_lock_close(&l2);

    /* the tcp:// client sees what the unix:// one wrote */
    th_assert_ok(mpb_dict_open(t, "u.d", &d), t);
    th_assert_ok(mpb_dict_get(d, key, kn, &got, &gn), t);
    th_assert_bytes(got, gn, val, vn);
    mpb_free(got);
    mpb_dict_close(&d);

    /* tcp:// encrypted and unix:// not */
    th_assert_info_str(c, "encryption", "mixed");
    int64_t conns = th_info_int(c, "connections");
    print_message("queue: %d items from a child in %lld ms; fences %llu < %llu; info "
                  "connections %lld\n",
                  PUT_ITEMS, (long long)qms, (unsigned long long)f1, (unsigned long long)f2,
                  (long long)conns);
    assert_true(conns >= 2); /* this one (unix://) and t (tcp://) */
    assert_int_equal(mpb_fd(c), fd);
    mpb_close(&t);
    mpb_close(&c);
}

/* ---- 2. many processes ---- */

enum { PROCS = 8, INCRS = 500 };

static int incrementer(int idx, void *arg) {
    (void)idx, (void)arg;
    mpb_client_t *c = NULL;
    if (connect_ep(&B, uep, NULL, &c)) {
        fprintf(stderr, "incrementer %d: connect: %s\n", idx, mpb_errmsg(c));
        return 1;
    }
    mpb_dict_t *d;
    int rc = mpb_dict_open(c, "u.count", &d);
    size_t kn;
    const uint8_t *k = th_str("n", &kn);
    uint8_t key[8];
    memcpy(key, k, kn);
    int64_t last = 0;
    bool ordered = true;
    for (int i = 0; !rc && ordered && i < INCRS; i++) {
        int64_t now = 0;
        rc = mpb_dict_incr(d, key, kn, 1, &now);
        if (!rc && now <= last) {
            fprintf(stderr, "incrementer %d: %lld after %lld\n", idx, (long long)now,
                    (long long)last);
            ordered = false;
        }
        last = now;
    }
    if (rc) fprintf(stderr, "incrementer %d: %s: %s\n", idx, mpb_strerror(rc), mpb_errmsg(c));
    mpb_dict_close(&d);
    mpb_close(&c);
    return rc != 0 || !ordered;
}

static void test_eight_processes_increment(void **state) {
    (void)state;
    int64_t t0 = th_now_ms();
    assert_int_equal(th_spawn(PROCS, incrementer, NULL, 120), 0);
    int64_t ms = th_now_ms() - t0;
    mpb_client_t *c = must_connect(&B, uep);
    int64_t n = th_dict_i64(c, "u.count", "n");
    print_message("%d processes x %d increments over unix://: %lld in %lld ms\n", PROCS, INCRS,
                  (long long)n, (long long)ms);
    assert_int_equal(n, PROCS * INCRS);
    mpb_close(&c);
}

/* ---- 3. bad input on a raw unix socket ---- */

/* (a) a length past 16384 before any session closes the connection; exactly 16384 is read
 * (and answered: it is no frame of ours). */
static void test_raw_large_frame_without_session(void **state) {
    (void)state;
    mpb_client_t *c = must_connect(&B, uep);
    dict_set(c, "u.before", "k", 77);
    mpb_close(&c);
    int logged0 = th_log_count(&B, "large frame without a session");

    /* 16384 bytes of garbage: the most a peer without a session may send in one frame */
    int fd = raw_unix(upath);
    assert_true(fd >= 0);
    uint8_t *junk = malloc(UNPROVEN_FRAME + 64);
    assert_non_null(junk);
    memset(junk, 'x', UNPROVEN_FRAME + 64);
    assert_true(send_frame(fd, junk, UNPROVEN_FRAME));
    static uint8_t f[1 << 16];
    long n = read_frame(fd, f, sizeof f, 5000);
    const char *msg = assert_error_frame(f, n, 5); /* EPROTO: no magic */
    print_message("16384-byte garbage frame answered: %s\n", msg);
    assert_false(is_closed_now(fd));
    close(fd);

    /* one byte more: closed without an answer */
    fd = raw_unix(upath);
    assert_true(fd >= 0);
    uint8_t h[4 + 100] = {0, 0, 0x40, 0x01}; /* 16385, then 100 bytes of it, in one write */
    memset(h + 4, 'x', 100);
    assert_true(rs_write_all(fd, h, sizeof h));
    size_t extra = 0;
    int64_t ms = rs_wait_closed(fd, 5000, &extra);
    close(fd);
    /* a length far past it, all of it sent */
    fd = raw_unix(upath);
    assert_true(fd >= 0);
    uint8_t h2[4] = {0x00, 0x10, 0x00, 0x00}; /* 1 MiB */
    rs_write_all(fd, h2, 4);
    rs_write_all(fd, junk, UNPROVEN_FRAME + 64); /* may fail once it is closed */
    size_t extra2 = 0;
    int64_t ms2 = rs_wait_closed(fd, 5000, &extra2);
    close(fd);
    free(junk);
    print_message("a 16385-byte frame without a session: closed after %lld ms (%zu bytes "
                  "answered); a 1 MiB one: after %lld ms (%zu bytes)\n",
                  (long long)ms, extra, (long long)ms2, extra2);
    assert_true(ms >= 0);
    assert_true(ms2 >= 0);
    assert_int_equal(extra, 0);
    assert_int_equal(extra2, 0);
    assert_true(th_wait_log_line(&B, "large frame without a session", 2000));
    int logged = th_log_count(&B, "large frame without a session") - logged0;
    print_message("logged %d time(s)\n", logged);
    assert_true(logged >= 1);
    /* naming the peer by its credentials (SO_PEERCRED): this process */
    char me[64];
    snprintf(me, sizeof me, "addr=:%u:%u:%d", (unsigned)getuid(), (unsigned)getgid(),
             (int)getpid());
    assert_true(th_log_has_line(&B, "reason=\"large frame without a session\"", me));

    /* libmpb clients on both transports work, and what was there is intact */
    c = must_connect(&B, uep);
    assert_int_equal(th_dict_i64(c, "u.before", "k"), 77);
    th_assert_dict_roundtrip(c, "u.after-large", 1);
    mpb_close(&c);
    c = th_connect(&B);
    assert_int_equal(th_dict_i64(c, "u.before", "k"), 77);
    th_assert_dict_roundtrip(c, "u.after-large", 2);
    mpb_close(&c);
}

/* (b) a partial frame, then silence: closed after idle-ms. */
static th_broker_t IB; /* --idle-ms 1000 */

static void test_raw_partial_frame_idle(void **state) {
    (void)state;
    char path[128], ep[160];
    make_path(path, sizeof path, ep, sizeof ep, 2);
    START(&IB, "--listen", ep, "--idle-ms", "1000", NULL);
    int fd = raw_unix(path);
    assert_true(fd >= 0);
    int64_t t0 = th_now_ms();
    uint8_t h[4] = {0, 0, 0, 100};
    uint8_t part[10] = {'M', 'B', 1, 1, 0, 0, 0, 0, 0, 0};
    assert_true(rs_write_all(fd, h, 4));
    assert_true(rs_write_all(fd, part, sizeof part));
    size_t extra = 0;
    int64_t ms = rs_wait_closed(fd, 6000, &extra);
    int64_t total = ms >= 0 ? th_now_ms() - t0 : -1;
    close(fd);
    print_message("partial frame (10 of 100 bytes), idle-ms 1000: closed after %lld ms\n",
                  (long long)total);
    assert_true(ms >= 0);
    assert_true(total >= 900); /* not before idle-ms */
    assert_true(total < 5000);
    assert_int_equal(extra, 0);
    assert_true(th_wait_log_line(&IB, "idle without a session", 2000));
    assert_true(th_log_count(&IB, "connection closed") >= 1);
    /* the broker serves unix:// clients after it */
    mpb_client_t *c = must_connect(&IB, ep);
    th_assert_dict_roundtrip(c, "u.after-idle", 3);
    mpb_close(&c);
    th_broker_stop_checked(&IB);
    assert_int_equal(access(path, F_OK), -1); /* the broker removed its socket file */
    unlink(path);
}

/* (c) well-formed frames with a bad magic or version: ERROR frames, the connection stays
 * (and a HELLO on it is then answered with a CHALLENGE). */
static void test_raw_bad_magic_answered(void **state) {
    (void)state;
    int fd = raw_unix(upath);
    assert_true(fd >= 0);
    mpb__buf_t fr = {0};
    hello_frame(&fr);
    static uint8_t f[1 << 16];

    fr.p[0] = 'X'; /* bad magic */
    assert_true(send_frame(fd, fr.p, fr.len));
    long n = read_frame(fd, f, sizeof f, 5000);
    const char *m1 = assert_error_frame(f, n, 5);
    print_message("bad magic: ERROR %ld bytes: %s\n", n, m1);

    fr.p[0] = 'M';
    fr.p[2] = 9; /* a protocol version nobody speaks */
    assert_true(send_frame(fd, fr.p, fr.len));
    n = read_frame(fd, f, sizeof f, 5000);
    const char *m2 = assert_error_frame(f, n, 5);
    print_message("bad version: ERROR %ld bytes: %s\n", n, m2);

    fr.p[0] = 'Q'; /* and a bad magic again */
    fr.p[2] = 1;
    assert_true(send_frame(fd, fr.p, fr.len));
    n = read_frame(fd, f, sizeof f, 5000);
    assert_error_frame(f, n, 5);

    /* a REQ without a session: ESESSION */
    mpb__buf_t req = {0};
    rc_plain(&req, MPB__T_REQ, 1, "\x90", 1);
    for (int i = 0; i < MPB__MAC_LEN; i++)
        mpb__w_raw(&req, (const uint8_t *)"\0", 1);
    assert_true(send_frame(fd, req.p, req.len));
    n = read_frame(fd, f, sizeof f, 5000);
    const char *m3 = assert_error_frame(f, n, 21);
    print_message("REQ without a session: %s\n", m3);
    mpb__buf_free(&req);

    /* the same connection: a good HELLO gets the CHALLENGE */
    fr.p[0] = 'M';
    assert_true(send_frame(fd, fr.p, fr.len));
    n = read_frame(fd, f, sizeof f, 5000);
    assert_true(n >= MPB__HDR_LEN);
    assert_int_equal(f[0], 'M');
    assert_int_equal(f[3], MPB__T_CHALLENGE);
    assert_false(is_closed_now(fd));
    mpb__buf_free(&fr);
    close(fd);
    assert_true(th_log_count(&B, "bad frame") >= 1);
    mpb_client_t *c = must_connect(&B, uep);
    th_assert_dict_roundtrip(c, "u.after-magic", 4);
    mpb_close(&c);
}

/* (d) 200 silent connections do not keep a client out. */
static void test_raw_silent_connections(void **state) {
    (void)state;
    enum { SILENT = 200 };
    int fds[SILENT];
    int opened = 0;
    for (int i = 0; i < SILENT; i++) {
        fds[i] = raw_unix(upath);
        opened += fds[i] >= 0;
    }
    assert_int_equal(opened, SILENT);
    usleep(200000);
    int64_t t0 = th_now_ms();
    mpb_client_t *c = must_connect(&B, uep);
    th_assert_dict_roundtrip(c, "u.silent", 5);
    int64_t ms = th_now_ms() - t0;
    int64_t conns = th_info_int(c, "connections");
    int still = 0;
    for (int i = 0; i < SILENT; i++)
        still += !is_closed_now(fds[i]);
    print_message("with %d silent unix:// connections: a client connected and served in "
                  "%lld ms; info connections %lld; %d of them still open\n",
                  SILENT, (long long)ms, (long long)conns, still);
    assert_true(ms < 5000);
    /* within idle-ms (10 s) and far below max-unauth-memory / 16 KiB: all kept */
    assert_int_equal(still, SILENT);
    assert_true(conns >= SILENT + 1);
    /* a tcp:// client too */
    mpb_client_t *t = th_connect(&B);
    th_assert_dict_roundtrip(t, "u.silent-tcp", 6);
    mpb_close(&t);
    for (int i = 0; i < SILENT; i++)
        close(fds[i]);
    /* they go from the broker's count */
    int64_t end = th_now_ms() + 5000, after = conns;
    while (th_now_ms() < end && (after = th_info_int(c, "connections")) > 2)
        usleep(20000);
    print_message("info connections once they closed: %lld\n", (long long)after);
    assert_true(after <= 2);
    mpb_close(&c);
}

/* ---- 4. a client that never reads ---- */

enum { BIG = (1 << 20) - 5, PER_FLUSH = 4 }; /* a value of 1 MiB, its header included */

static char nr_ep[160];
static th_broker_t NB;
static pid_t non_reader_pid;
static int nr_gets;  /* how many gets of it the non-reader sends */
static int nr_go[2]; /* a pipe: the parent says when to send them */

static void ignore_reply(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c, (void)status, (void)val, (void)len, (void)arg;
}

/* Connects over unix://, sets the 1 MiB value, waits for the parent's go, asks for it nr_gets
 * times (PER_FLUSH a frame, pipelined with mpb_send, never polling) and stops itself without
 * reading a reply: with the whole process stopped, its heartbeat thread reads nothing either. */
static int non_reader(int idx, void *arg) {
    (void)idx, (void)arg;
    close(nr_go[1]);
    mpb_client_t *c = NULL;
    if (connect_ep(&NB, nr_ep, NULL, &c)) {
        fprintf(stderr, "non-reader: connect: %s\n", mpb_errmsg(c));
        return 1;
    }
    mpb_dict_t *d;
    uint8_t *v = th_big_bin(BIG);
    if (mpb_dict_open(c, "big", &d)) return 2;
    size_t kn;
    const uint8_t *k = th_str("v", &kn);
    uint8_t key[8];
    memcpy(key, k, kn);
    if (mpb_dict_set(d, key, kn, v, 5 + BIG)) {
        fprintf(stderr, "non-reader: set: %s\n", mpb_errmsg(c));
        return 3;
    }
    free(v);
    mpb_dict_close(&d);
    char go;
    struct pollfd pf = {nr_go[0], POLLIN, 0};
    if (poll(&pf, 1, 30000) != 1 || read(nr_go[0], &go, 1) != 1) return 4;
    uint8_t args[8];
    args[0] = 0x91; /* [key] */
    memcpy(args + 1, key, kn);
    for (int i = 0; i < nr_gets; i++) {
        if (mpb_send(c, MPB_OP_DICT_GET, "big", args, 1 + kn, ignore_reply, NULL)) return 5;
        if ((i + 1) % PER_FLUSH == 0 && mpb_flush(c)) return 6;
    }
    if (mpb_flush(c)) return 7;
    th_stop_self_quietly();
    return 0; /* killed by the test */
}

static int kill_non_reader(void **state) {
    (void)state;
    if (non_reader_pid > 0) {
        kill(non_reader_pid, SIGKILL);
        th_wait(non_reader_pid, 10);
        non_reader_pid = 0;
    }
    if (NB.pid > 0) th_broker_stop(&NB);
    return 0;
}

/* Samples a process's RSS every 2 ms into peak until stop is set. */
typedef struct rss_sampler {
    pid_t pid;
    volatile int stop;
    long peak;
    pthread_t th;
} rss_sampler_t;

static void *rss_sample(void *arg) {
    rss_sampler_t *s = arg;
    while (!s->stop) {
        long kb = th_rss_kb(s->pid);
        if (kb > s->peak) s->peak = kb;
        usleep(2000);
    }
    return NULL;
}

/* One round trip (dict.set then dict.get of a small value) of c, in ms. */
static int64_t small_round_trip(mpb_client_t *c, int64_t v) {
    int64_t t0 = th_now_ms();
    dict_set(c, "small", "k", v);
    assert_int_equal(th_dict_i64(c, "small", "k"), v);
    return th_now_ms() - t0;
}

/* A broker with --max-output 8m --max-batch-reply 8m; a child asks for the 1 MiB value gets
 * times and stops; another client works all along.
 * The broker's RSS once it is closed must be within 64 MiB of before, and at its peak too if
 * peak_bounded. Returns the ms from the child's stop to the log line that says its connection
 * was closed. */
static int64_t run_non_reader(int gets, bool peak_bounded) {
    char path[128];
    make_path(path, sizeof path, nr_ep, sizeof nr_ep, 4);
    unlink(path);
    char *asan0 = th_asan_quarantine_off();
    START(&NB, "--listen", nr_ep, "--max-output", "8m", "--max-batch-reply", "8m",
          "--session-ttl-ms", "30000", NULL);
    th_asan_restore(asan0);
    nr_gets = gets;
    assert_int_equal(pipe(nr_go), 0);
    pid_t child = non_reader_pid = th_fork(non_reader, NULL); /* before this process connects */
    close(nr_go[0]);
    mpb_client_t *c = must_connect(&NB, nr_ep);
    /* the child has set the value */
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "big", &d), c);
    size_t kn;
    const uint8_t *k = th_str("v", &kn);
    uint8_t key[8];
    memcpy(key, k, kn);
    int64_t end = th_now_ms() + 30000;
    while (th_now_ms() < end && mpb_dict_contains(d, key, kn) != 1)
        usleep(10000);
    assert_int_equal(mpb_dict_contains(d, key, kn), 1);
    mpb_dict_close(&d);
    int64_t before = 0;
    for (int i = 0; i < 20; i++) {
        int64_t ms = small_round_trip(c, i);
        if (ms > before) before = ms;
    }
    long rss0 = th_rss_kb(NB.pid);

    /* go: the child sends, stops; the broker pushes at it; c goes on being served */
    assert_int_equal(write(nr_go[1], "g", 1), 1);
    close(nr_go[1]);
    int64_t t_go = th_now_ms(), t_stop = -1, t_closed = -1, worst = 0;
    rss_sampler_t rs = {.pid = NB.pid, .peak = rss0};
    assert_int_equal(pthread_create(&rs.th, NULL, rss_sample, &rs), 0);
    int rounds = 0, st = 0;
    end = t_go + 60000;
    while (t_closed < 0 && th_now_ms() < end) {
        int64_t ms = small_round_trip(c, 1000 + rounds);
        if (ms > worst) worst = ms;
        rounds++;
        if (t_stop < 0 && waitpid(child, &st, WNOHANG | WUNTRACED) == child) {
            if (!WIFSTOPPED(st)) fail_msg("the non-reading client failed (status %d)", st);
            t_stop = th_now_ms();
        }
        if (t_stop >= 0 && th_log_count(&NB, "past max-output") > 0) t_closed = th_now_ms();
        usleep(5000);
    }
    rs.stop = 1;
    pthread_join(rs.th, NULL);
    long rss1 = th_rss_kb(NB.pid), peak = rs.peak;
    /* served after it too, over tcp:// as well */
    mpb_client_t *t = th_connect(&NB);
    th_assert_dict_roundtrip(t, "after", 7);
    mpb_close(&t);
    int64_t sessions = th_info_int(c, "sessions");
    print_message("non-reader: %d gets of 1 MiB sent and stopped %lld ms after go; closed past "
                  "max-output %lld ms after its stop; RSS %ld kB -> %ld kB (peak %ld kB, "
                  "+%ld kB); the other client: %d round trips meanwhile, slowest %lld ms "
                  "(before: %lld ms); sessions %lld\n",
                  gets, (long long)(t_stop - t_go),
                  (long long)(t_closed >= 0 ? t_closed - t_stop : -1), rss0, rss1, peak,
                  peak - rss0, rounds, (long long)worst, (long long)before, (long long)sessions);
    assert_true(t_stop >= 0);
    assert_true(t_closed >= 0);
    assert_int_equal(
        th_log_count(&NB, "connection closed: its replies went unread past max-output"), 1);
    /* gets MiB asked for; held at most: twice max-output plus max-batch-reply (24 MiB), the
     * socket buffers, and slack */
    if (peak_bounded) assert_true(peak - rss0 < 64 * 1024);
    assert_true(rss1 - rss0 < 64 * 1024);
    assert_true(rounds >= 1);
    assert_true(worst < 5000); /* served, not stalled behind the replies */
    /* its session lives on: the stopped one's and c's */
    assert_int_equal(sessions, 2);
    kill(child, SIGKILL);
    th_wait(child, 10);
    non_reader_pid = 0;
    mpb_close(&c);
    th_broker_stop_checked(&NB);
    unlink(path);
    return t_closed - t_stop;
}

/* 200 MiB asked for: past twice max-output plus max-batch-reply queued, closed at once, and
 * the broker's RSS bounded at its peak too: a frame counts against the bound when it is sealed
 * (stream_admit), also while another client's writes hold the replies of the turn back for the
 * log, so the replies built for the non-reader stop at the bound. */
static void test_non_reading_client_closed(void **state) {
    (void)state;
    int64_t ms = run_non_reader(200, true);
    assert_true(ms < 60000);
}

/* 12 MiB asked for: past max-output (8m) but under the immediate bound (24m); closed by the
 * sweep once its output has not moved for a second. */
static void test_non_reading_client_closed_after_a_second(void **state) {
    (void)state;
    int64_t ms = run_non_reader(12, true);
    assert_true(ms >= 500); /* not at once: after a second without progress */
    assert_true(ms < 10000);
}

/* ---- 5. a broker killed and restarted under its unix:// clients ---- */

static th_broker_t K;
static char k_ep[160];

typedef struct parked {
    mpb_client_t *c;
    int rc;
    int64_t got, ms;
} parked_t;

static void *parked_get(void *arg) {
    parked_t *p = arg;
    mpb_queue_t *q;
    int64_t t0 = th_now_ms();
    p->rc = mpb_queue_open(p->c, "rq", -1, -1, &q);
    if (!p->rc) p->rc = mpb_queue_get_i64(q, &p->got, 10000);
    p->ms = th_now_ms() - t0;
    mpb_queue_close(&q);
    return NULL;
}

static void test_restart_resumes_same_fd(void **state) {
    (void)state;
    char path[128];
    make_path(path, sizeof path, k_ep, sizeof k_ep, 5);
    START(&K, "--listen", k_ep, "--fsync", "always", NULL);
    mpb_client_t *c = must_connect(&K, k_ep);
    mpb_client_t *g = must_connect(&K, k_ep);
    dict_set(c, "rk", "v", 99);
    int fd0 = mpb_fd(c);
    uint64_t sess = mpb_session_id(c);
    unsigned rec0 = mpb_reconnects(c);

    /* g parks a get on "rq" (10 s) in a thread */
    parked_t p = {.c = g, .rc = 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, parked_get, &p), 0);
    assert_true(th_wait_field(c, "queue/rq", "getters", 1, 5000));

    /* not waiting for its unix:// socket (RESTART): the clients find it on their own */
    int64_t t0 = th_now_ms();
    th_broker_restart(&K, SIGKILL, "--listen", k_ep, "--fsync", "always", NULL);
    int64_t t_up = th_now_ms();
    /* the same client object, no reconnect by the test */
    int64_t v = th_dict_i64(c, "rk", "v");
    int64_t t_call = th_now_ms();
    int fd1 = mpb_fd(c);
    print_message("restart took %lld ms; the next call %lld ms after it: v = %lld; fd %d -> %d; "
                  "session %llu -> %llu; reconnects %u -> %u\n",
                  (long long)(t_up - t0), (long long)(t_call - t_up), (long long)v, fd0, fd1,
                  (unsigned long long)sess, (unsigned long long)mpb_session_id(c), rec0,
                  mpb_reconnects(c));
    assert_int_equal(v, 99);
    assert_int_equal(fd1, fd0);
    assert_int_equal(mpb_session_id(c), sess);
    assert_true(mpb_reconnects(c) >= rec0 + 1);

    /* the parked get, sent again on its resumed session, takes what c puts now */
    assert_true(th_wait_field(c, "queue/rq", "getters", 1, 8000));
    mpb_queue_t *q;
    th_assert_ok(mpb_queue_open(c, "rq", -1, -1, &q), c);
    th_assert_ok(mpb_queue_put_i64(q, 4242, 0), c);
    mpb_queue_close(&q);
    pthread_join(th, NULL);
    print_message("parked get: rc %d (%s), got %lld, %lld ms in all\n", p.rc,
                  p.rc ? mpb_errmsg(g) : "ok", (long long)p.got, (long long)p.ms);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.got, 4242);
    assert_true(p.ms < 10000);
    assert_true(mpb_reconnects(g) >= 1);
    /* both still work, and a new client sees the state */
    th_assert_dict_roundtrip(c, "after-restart", 8);
    th_assert_dict_roundtrip(g, "after-restart-g", 9);
    mpb_client_t *n = must_connect(&K, k_ep);
    assert_int_equal(th_dict_i64(n, "rk", "v"), 99);
    assert_int_equal(th_info_int(n, "sessions"), 3);
    mpb_close(&n);
    mpb_close(&g);
    mpb_close(&c);
    th_broker_stop_checked(&K);
    assert_int_equal(access(path, F_OK), -1);
    unlink(path);
}

/* ---- 6. starts refused, a stale socket replaced ---- */

static th_broker_t RB; /* started, refused, started */

static void test_start_refusals_and_stale_socket(void **state) {
    (void)state;
    char path[128], ep[160];
    make_path(path, sizeof path, ep, sizeof ep, 6);
    unlink(path);
    th_broker_start(&RB, NULL);

    /* --encryption on with unix:// */
    int st = th_broker_restart_fails(&RB, SIGTERM, "--listen", ep, "--encryption", "on", NULL);
    print_message("--encryption on with unix://: exit status %d\n", st);
    assert_true(st > 0);
    assert_true(th_log_has_line(&RB, "cannot listen", "unix:// is not encrypted"));
    assert_int_equal(access(path, F_OK), -1); /* nothing bound */

    /* a regular file there: refused, and left alone */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a socket\n", f);
    fclose(f);
    st = th_broker_restart_fails(&RB, 0, "--listen", ep, NULL);
    print_message("a regular file at the path: exit status %d\n", st);
    assert_true(st > 0);
    assert_true(th_log_has_line(&RB, "cannot listen", "not a socket"));
    char buf[64] = "";
    f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    assert_string_equal(buf, "not a socket\n");
    unlink(path);

    /* the path of a live broker (the suite's): refused, and that broker keeps its socket */
    st = th_broker_restart_fails(&RB, 0, "--listen", uep, NULL);
    print_message("another broker's live socket: exit status %d\n", st);
    assert_true(st > 0);
    assert_true(th_log_has_line(&RB, "cannot listen", "listens there already"));
    mpb_client_t *c = must_connect(&B, uep);
    th_assert_dict_roundtrip(c, "u.still-mine", 10);
    mpb_close(&c);

    /* a stale socket file (bound, closed, never removed): replaced */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    close(s);
    struct stat sst;
    assert_int_equal(lstat(path, &sst), 0);
    assert_true(S_ISSOCK(sst.st_mode));
    RESTART(&RB, 0, "--listen", ep, NULL);
    c = must_connect(&RB, ep);
    th_assert_dict_roundtrip(c, "u.stale", 11);
    mpb_close(&c);

    /* a client that insists on encryption over unix:// */
    mpb_options_t o;
    mpb_options_init(&o);
    o.encryption = MPB_ENCRYPTION_ON;
    int64_t t0 = th_now_ms();
    int rc = connect_ep(&RB, ep, &o, &c);
    int64_t ms = th_now_ms() - t0;
    print_message("client with encryption on over unix://: %s in %lld ms: %s\n", mpb_strerror(rc),
                  (long long)ms, c ? mpb_errmsg(c) : "(no client)");
    th_assert_err(rc, MPB_EINVAL, c, "not encrypted", NULL);
    assert_true(ms < 1000); /* at once, not after a connect timeout */
    mpb_close(&c);
    th_broker_stop_checked(&RB);
    unlink(path);
}

/* ---- 7. a ZeroMQ peer posing as a unix:// connection ---- */

static th_broker_t ZB;

static void test_zmq_peer_with_stream_like_id_dropped(void **state) {
    (void)state;
    char path[128], ep[160];
    make_path(path, sizeof path, ep, sizeof ep, 7);
    START(&ZB, "--listen", ep, NULL);
    /* the first unix:// connection of this broker: its id is 00 'U' 00 00 00 01 */
    int victim = raw_unix(path);
    assert_true(victim >= 0);
    const uint8_t id[6] = {0x00, 'U', 0, 0, 0, 1};

    /* does libzmq take such a routing id at all? */
    void *ctx = zmq_ctx_new();
    void *probe = zmq_socket(ctx, ZMQ_DEALER);
    int set = zmq_setsockopt(probe, ZMQ_ROUTING_ID, id, sizeof id);
    int set_errno = set ? zmq_errno() : 0;
    zmq_close(probe);
    zmq_ctx_term(ctx);
    print_message("libzmq %s a routing id starting 0x00 'U'%s%s\n", set ? "refuses" : "accepts",
                  set ? ": " : "", set ? zmq_strerror(set_errno) : "");

    static rawclient_t rc, ok;
    static rc_frame_t f;
    int hello = -100;
    size_t leaked = 0;
    if (set) {
        /* refused by libzmq itself: no ZeroMQ peer can claim it */
        assert_int_equal(rc_open_as(&rc, NULL, ZB.endpoint, id, sizeof id), -1);
        assert_int_equal(set_errno, EINVAL);
    } else {
        assert_int_equal(rc_open_as(&rc, NULL, ZB.endpoint, id, sizeof id), 0);
        hello = rc_hello(&rc, &f, 2000);
        /* and the one with 00 'U' and another counter */
        static rawclient_t rc2;
        const uint8_t id2[6] = {0x00, 'U', 0x12, 0x34, 0x56, 0x78};
        assert_int_equal(rc_open_as(&rc2, NULL, ZB.endpoint, id2, sizeof id2), 0);
        int hello2 = rc_hello(&rc2, &f, 1000);
        rc_close(&rc2);
        /* the unix:// connection whose id it took heard nothing either */
        uint8_t tmp[256];
        struct pollfd pf = {victim, POLLIN, 0};
        if (poll(&pf, 1, 200) > 0) {
            ssize_t k = recv(victim, tmp, sizeof tmp, MSG_DONTWAIT);
            if (k > 0) leaked = (size_t)k;
        }
        print_message("HELLO as 00 55 00 00 00 01: %s; as 00 55 12 34 56 78: %s; bytes that "
                      "reached the unix:// connection: %zu\n",
                      hello == MPB_ETIMEDOUT ? "no answer" : "answered",
                      hello2 == MPB_ETIMEDOUT ? "no answer" : "answered", leaked);
        assert_int_equal(hello, MPB_ETIMEDOUT);
        assert_int_equal(hello2, MPB_ETIMEDOUT);
        assert_int_equal(leaked, 0);
    }
    rc_close(&rc);
    /* the same DEALER with an ordinary id is answered: the drop is the id's */
    const uint8_t good[6] = {'U', 'U', 0, 0, 0, 1};
    assert_int_equal(rc_open_as(&ok, NULL, ZB.endpoint, good, sizeof good), 0);
    assert_int_equal(rc_hello(&ok, &f, 5000), 0);
    rc_close(&ok);
    /* the victim's connection is fine: a HELLO on it gets its CHALLENGE */
    mpb__buf_t fr = {0};
    hello_frame(&fr);
    assert_true(send_frame(victim, fr.p, fr.len));
    mpb__buf_free(&fr);
    static uint8_t buf[1 << 16];
    long n = read_frame(victim, buf, sizeof buf, 5000);
    assert_true(n >= MPB__HDR_LEN);
    assert_int_equal(buf[3], MPB__T_CHALLENGE);
    close(victim);
    /* and a unix:// client works */
    mpb_client_t *c = must_connect(&ZB, ep);
    th_assert_dict_roundtrip(c, "u.zmq-posing", 12);
    mpb_close(&c);
    th_broker_stop_checked(&ZB);
    unlink(path);
}

/* A unix:// broker that goes away is heard at once (the end of the stream), and stays away:
 * its idle client tries once per heartbeat look, and the heartbeat thread, which serves every
 * client of the process, goes on pinging the others. Before, it retried for reconnect-ms in
 * one go, and a client of another broker lost its session at its TTL. */
static void test_broker_away_costs_others_nothing(void **state) {
    (void)state;
    char ep[160], path[128];
    make_path(path, sizeof path, ep, sizeof ep, 9);
    th_broker_t A, Bk;
    START(&A, "--listen", ep, NULL);
    th_broker_start(&Bk, "--session-ttl-ms", "2000", "--heartbeat-ms", "500", NULL);
    mpb_client_t *a = must_connect(&A, ep);
    mpb_client_t *b = th_connect(&Bk);
    uint64_t sess = mpb_session_id(b);
    th_assert_dict_roundtrip(b, "before", 1);
    th_broker_kill(&A, SIGKILL);
    usleep(3 * 2000 * 1000); /* three of B's session TTLs, while a's broker is away */
    int64_t t0 = th_now_ms();
    th_assert_dict_roundtrip(b, "after", 2);
    int64_t ms = th_now_ms() - t0;
    print_message("a client of another broker, 6 s after a unix:// broker went away under an idle "
                  "client: session %llu -> %llu, a round trip in %lld ms\n",
                  (unsigned long long)sess, (unsigned long long)mpb_session_id(b), (long long)ms);
    assert_int_equal(mpb_session_id(b), sess);
    assert_int_equal(th_info_int(b, "sessions"), 1);
    assert_int_equal(th_log_count(&Bk, "reason=expired"), 0);
    /* and a's broker back: its client resumes on its own, without a call */
    RESTART(&A, 0, "--listen", ep, NULL);
    int64_t end = th_now_ms() + 10000;
    while (mpb_reconnects(a) < 1 && th_now_ms() < end)
        usleep(20000);
    assert_true(mpb_reconnects(a) >= 1);
    th_assert_dict_roundtrip(a, "back", 3);
    mpb_close(&a);
    mpb_close(&b);
    th_broker_stop(&Bk);
    th_broker_stop(&A);
    unlink(path);
}

/* ---- 8. the last ---- */

static void test_last_still_serves(void **state) {
    (void)state;
    mpb_client_t *c = must_connect(&B, uep);
    th_assert_dict_roundtrip(c, "last", 13);
    assert_int_equal(th_dict_i64(c, "u.before", "k"), 77);
    assert_int_equal(th_dict_i64(c, "u.count", "n"), PROCS * INCRS);
    mpb_close(&c);
    c = th_connect(&B);
    th_assert_dict_roundtrip(c, "last-tcp", 14);
    mpb_close(&c);
    th_broker_stop_checked(&B);
    assert_int_equal(access(upath, F_OK), -1); /* removed at a clean stop */
}

static int setup(void **state) {
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    make_path(upath, sizeof upath, uep, sizeof uep, 1);
    unlink(upath);
    START(&B, "--listen", uep, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    th_broker_stop(&B);
    char p[128];
    for (int k = 1; k <= 7; k++) {
        make_path(p, sizeof p, NULL, 0, k);
        unlink(p);
    }
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_over_unix),
        cmocka_unit_test(test_eight_processes_increment),
        cmocka_unit_test(test_raw_large_frame_without_session),
        cmocka_unit_test(test_raw_partial_frame_idle),
        cmocka_unit_test(test_raw_bad_magic_answered),
        cmocka_unit_test(test_raw_silent_connections),
        cmocka_unit_test_teardown(test_non_reading_client_closed, kill_non_reader),
        cmocka_unit_test_teardown(test_non_reading_client_closed_after_a_second, kill_non_reader),
        cmocka_unit_test(test_restart_resumes_same_fd),
        cmocka_unit_test(test_broker_away_costs_others_nothing),
        cmocka_unit_test(test_start_refusals_and_stale_socket),
        cmocka_unit_test(test_zmq_peer_with_stream_like_id_dropped),
        cmocka_unit_test(test_last_still_serves),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
