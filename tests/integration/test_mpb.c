/* test_mpb.c - mpb:// endpoints (broker/stream.c, client/src/link.c, proto/seal.c): the
 * protocol's frames on TCP without ZeroMQ, sealed with keys both sides make from the authkey
 * and their greetings. Ops from several processes and a pool served by mpb-worker over it;
 * nothing readable on the wire; a client with another key refused with a clear error; bad
 * input on raw sockets (not a greeting, a frame that does not open, a length past the bound,
 * silence) closed while others are served; a stranger's client built from PROTOCOL.md alone
 * (greeting, keys, a sealed HELLO answered by a sealed CHALLENGE); memory held by peers
 * without a session bounded; a restart under a client that resumes its session; the refusals
 * of --encryption off; and a writer that rides through a 3 s network cut exactly once. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cutproxy.h"
#include "rawclient.h"
#include "rawsock.h"
#include "th.h"
#include "th_pool.h"

static th_broker_t B; /* the suite's broker: tcp:// and mpb://127.0.0.1:mport */
static int mport;
static char mep[64];

static mpb_client_t *must_connect_key(const char *ep, const char *key, size_t kl) {
    mpb_client_t *c = NULL;
    int rc = mpb_connect(ep, key, kl, NULL, &c);
    if (rc) fail_msg("connect %s: %s: %s", ep, mpb_strerror(rc), mpb_errmsg(c));
    return c;
}

static mpb_client_t *must_connect(th_broker_t *b, const char *ep) {
    size_t kl;
    const char *k = th_authkey(b, &kl);
    char key[512];
    memcpy(key, k, kl);
    return must_connect_key(ep, key, kl);
}

static void start_suite_broker(void) {
    mport = cp_free_port();
    snprintf(mep, sizeof mep, "mpb://127.0.0.1:%d", mport);
    th_broker_start(&B, "--listen", mep, NULL);
}

/* ---- raw TCP ---- */

/* A raw connection that has sent its greeting and read the broker's (keys made with key,
 * unless key is NULL). The broker greets once ours is in. */
static int greeted(int port, mpb__seal_t *s, const char *key, size_t kl) {
    int fd = rs_tcp(port);
    assert_true(fd >= 0);
    uint8_t mine[MPB__GREET_LEN], theirs[MPB__GREET_LEN];
    memset(s, 0, sizeof *s);
    assert_int_equal(mpb__seal_greet(s, mine), 0);
    assert_true(rs_write_all(fd, mine, sizeof mine));
    assert_int_equal(rs_read_exact(fd, theirs, sizeof theirs, th_now_ms() + 5000), 1);
    assert_memory_equal(theirs, "MPB1", 4);
    if (key) assert_int_equal(mpb__seal_keys(s, key, kl, false, theirs), 0);
    return fd;
}

/* ---- 1. ops from several processes ---- */

enum { NPROC = 6, INCRS = 200 };

static int incrementer(int idx, void *arg) {
    (void)arg;
    size_t kl;
    const char *k = th_authkey(&B, &kl);
    mpb_client_t *c = NULL;
    if (mpb_connect(mep, k, kl, NULL, &c)) {
        fprintf(stderr, "child %d: connect: %s\n", idx, mpb_errmsg(c));
        return 1;
    }
    mpb_dict_t *d;
    mpb_queue_t *q;
    int rc = mpb_dict_open(c, "m.count", &d);
    if (!rc) rc = mpb_queue_open(c, "m.q", -1, -1, &q);
    for (int i = 0; !rc && i < INCRS; i++)
        rc = mpb_dict_incr_str(d, "n", 1, NULL);
    if (!rc) rc = mpb_queue_put_i64(q, 1000 + idx, 5000);
    if (rc) fprintf(stderr, "child %d: %s: %s\n", idx, mpb_strerror(rc), mpb_errmsg(c));
    mpb_close(&c);
    return rc != 0;
}

static void test_ops_from_processes(void **state) {
    (void)state;
    assert_int_equal(th_spawn(NPROC, incrementer, NULL, 60), 0);
    mpb_client_t *c = must_connect(&B, mep);
    assert_int_equal(th_dict_i64(c, "m.count", "n"), NPROC * INCRS);
    mpb_queue_t *q;
    th_assert_ok(mpb_queue_open(c, "m.q", -1, -1, &q), c);
    int64_t sum = 0;
    for (int i = 0; i < NPROC; i++) {
        int64_t v;
        th_assert_ok(mpb_queue_get_i64(q, &v, 2000), c);
        sum += v;
    }
    mpb_queue_close(&q);
    assert_int_equal(sum, NPROC * 1000 + NPROC * (NPROC - 1) / 2);
    th_assert_info_str(c, "encryption", "curve, chacha20-poly1305");
    /* a tcp:// client sees the same state */
    mpb_client_t *t = th_connect(&B);
    assert_int_equal(th_dict_i64(t, "m.count", "n"), NPROC * INCRS);
    mpb_close(&t);
    mpb_close(&c);
    assert_true(th_log_has_line(&B, "encryption on (X25519 and ChaCha20-Poly1305", mep));
}

/* ---- 2. a pool served over mpb:// ---- */

static void test_pool_over_mpb(void **state) {
    (void)state;
    tp_broker = B;
    snprintf(tp_broker.endpoint, sizeof tp_broker.endpoint, "%s", mep); /* the workers' */
    tp_check_healthy(); /* mpb-worker serving over mpb://, a map through it, a dict incr */
}

/* ---- 3. nothing readable on the wire ---- */

static void test_nothing_readable_on_the_wire(void **state) {
    (void)state;
    rs_proxy_t p;
    rs_proxy_start(&p, mport);
    char ep[64];
    snprintf(ep, sizeof ep, "mpb://127.0.0.1:%d", p.port);
    mpb_client_t *c = must_connect(&B, ep);
    th_assert_str_roundtrip(c, "secrets", "db_password", "correct-horse-battery-staple");
    mpb_close(&c);
    usleep(100000);
    rs_proxy_stop(&p);
    print_message("through the proxy: %zu bytes up, %zu down\n", p.nup, p.ndown);
    assert_true(p.nup > 200 && p.ndown > 200); /* it did carry the traffic */
    assert_memory_equal(p.up, "MPB1", 4);      /* and it was mpb:// */
    assert_memory_equal(p.down, "MPB1", 4);
    const char *needles[] = {"correct-horse", "db_password", "secrets", "dict", "nonce"};
    for (size_t i = 0; i < sizeof needles / sizeof *needles; i++) {
        if (rs_has(p.up, p.nup, needles[i])) fail_msg("'%s' readable client -> broker", needles[i]);
        if (rs_has(p.down, p.ndown, needles[i]))
            fail_msg("'%s' readable broker -> client", needles[i]);
    }
    rs_proxy_free(&p);
}

/* ---- 4. another key ---- */

static void test_another_key_refused(void **state) {
    (void)state;
    mpb_client_t *c = must_connect(&B, mep);
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "m.keep", &d), c);
    th_assert_ok(mpb_dict_set_i64(d, "k", 5), c);
    mpb_dict_close(&d);
    int closed0 = th_log_count(&B, "does not open (no authkey?)");
    const char *wrong = "not-the-broker's-key-0123456789abcdef";
    mpb_client_t *w = NULL;
    int64_t t0 = th_now_ms();
    int rc = mpb_connect(mep, wrong, strlen(wrong), NULL, &w);
    int64_t ms = th_now_ms() - t0;
    print_message("another key: %s after %lld ms: %s\n", mpb_strerror(rc), (long long)ms,
                  mpb_errmsg(w));
    assert_int_equal(rc, MPB_ECONN);
    assert_non_null(strstr(mpb_errmsg(w), "different authkey"));
    assert_true(ms < 5000);
    mpb_close(&w);
    assert_true(th_wait_log_line(&B, "does not open (no authkey?)", 2000));
    assert_true(th_log_count(&B, "does not open (no authkey?)") > closed0);
    assert_int_equal(th_dict_i64(c, "m.keep", "k"), 5); /* served, and nothing lost */
    mpb_close(&c);

    /* encryption off is refused by the client for mpb:// */
    mpb_options_t o;
    mpb_options_init(&o);
    o.encryption = MPB_ENCRYPTION_OFF;
    size_t kl;
    const char *k = th_authkey(&B, &kl);
    rc = mpb_connect(mep, k, kl, &o, &w);
    assert_int_equal(rc, MPB_EINVAL);
    assert_non_null(strstr(mpb_errmsg(w), "always encrypted"));
    mpb_close(&w);
}

/* ---- 5. bad input on raw sockets ---- */

static void test_raw_bad_input(void **state) {
    (void)state;
    mpb_client_t *c = must_connect(&B, mep);
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "m.before", &d), c);
    th_assert_ok(mpb_dict_set_i64(d, "k", 77), c);
    mpb_dict_close(&d);
    size_t extra;

    /* (a) not a greeting: closed at its first 4 bytes, before the broker says anything */
    int fd = rs_tcp(mport);
    assert_true(fd >= 0);
    char junk[64];
    memset(junk, 'x', sizeof junk);
    assert_true(rs_write_all(fd, "GET ", 4));
    int64_t ms = rs_wait_closed(fd, 5000, &extra);
    close(fd);
    print_message("(a) not a greeting: closed after %lld ms, %zu bytes sent to it\n", (long long)ms,
                  extra);
    assert_true(ms >= 0);
    assert_int_equal(extra, 0); /* the broker greets only a peer that greeted */
    assert_true(th_wait_log_line(&B, "not an mpb:// greeting", 2000));

    /* (b) a greeting, then a frame sealed by nobody: closed, nothing answered */
    mpb__seal_t s;
    fd = greeted(mport, &s, NULL, 0);
    uint8_t f[4 + 40] = {0, 0, 0, 40};
    memset(f + 4, 0x5a, 40);
    assert_true(rs_write_all(fd, f, sizeof f));
    ms = rs_wait_closed(fd, 5000, &extra);
    close(fd);
    mpb__seal_free(&s);
    print_message("(b) a frame that does not open: closed after %lld ms, %zu bytes more\n",
                  (long long)ms, extra);
    assert_true(ms >= 0);
    assert_int_equal(extra, 0);

    /* (c) a length past the bound for a peer without a session: closed before it is sent */
    fd = greeted(mport, &s, NULL, 0);
    uint8_t h[4] = {0x7f, 0xff, 0xff, 0xff};
    assert_true(rs_write_all(fd, h, 4));
    rs_write_all(fd, junk, sizeof junk);
    ms = rs_wait_closed(fd, 5000, &extra);
    close(fd);
    mpb__seal_free(&s);
    print_message("(c) a 2 GiB length: closed after %lld ms\n", (long long)ms);
    assert_true(ms >= 0);
    assert_int_equal(extra, 0);
    assert_true(th_wait_log_line(&B, "large frame without a session", 2000));

    /* (d) a short length (below a tag) */
    fd = greeted(mport, &s, NULL, 0);
    uint8_t h2[4 + 8] = {0, 0, 0, 8};
    assert_true(rs_write_all(fd, h2, sizeof h2));
    ms = rs_wait_closed(fd, 5000, &extra);
    close(fd);
    mpb__seal_free(&s);
    assert_true(ms >= 0);

    /* served throughout, and intact */
    assert_int_equal(th_dict_i64(c, "m.before", "k"), 77);
    th_assert_dict_roundtrip(c, "m.after-bad", 3);
    mpb_close(&c);
    assert_true(th_broker_alive(&B));
}

/* ---- 6. a client from the specification alone ---- */

static void test_client_from_the_spec(void **state) {
    (void)state;
    size_t kl;
    const char *key = th_authkey(&B, &kl);
    mpb__seal_t s;
    int fd = greeted(mport, &s, key, kl);
    /* a HELLO (§3), sealed as §1 says */
    uint8_t nonce[MPB__NONCE_LEN];
    mpb__random(nonce, sizeof nonce);
    mpb__buf_t body = {0}, hello = {0};
    mpb__w_map(&body, 2);
    mpb__w_cstr(&body, "v");
    mpb__w_uint(&body, MPB__PROTO_VERSION);
    mpb__w_cstr(&body, "nonce");
    mpb__w_bin(&body, nonce, sizeof nonce);
    rc_plain(&hello, MPB__T_HELLO, 0, body.p, body.len);
    uint8_t out[1024];
    assert_true(hello.len + 20 <= sizeof out);
    assert_int_equal(mpb__seal(&s, hello.p, hello.len, out), 0);
    assert_true(rs_write_all(fd, out, hello.len + 20));
    /* the answer: a sealed CHALLENGE */
    uint8_t in[4096];
    int64_t end = th_now_ms() + 5000;
    assert_int_equal(rs_read_exact(fd, in, 4, end), 1);
    size_t n = (size_t)in[0] << 24 | (size_t)in[1] << 16 | (size_t)in[2] << 8 | in[3];
    assert_true(n > MPB__SEAL_TAG && n + 4 <= sizeof in);
    assert_int_equal(rs_read_exact(fd, in + 4, n, end), 1);
    assert_int_equal(mpb__seal_open(&s, in, 4 + n), 0);
    print_message("sealed HELLO (%zu bytes) answered by a sealed frame of %zu: type %u\n",
                  hello.len, n - MPB__SEAL_TAG, in[4 + 3]);
    assert_int_equal(in[4 + 0], 'M');
    assert_int_equal(in[4 + 1], 'B');
    assert_int_equal(in[4 + 3], MPB__T_CHALLENGE);
    /* the same frame sent again (a replay) does not open: the connection is closed */
    assert_true(rs_write_all(fd, out, hello.len + 20));
    size_t extra;
    assert_true(rs_wait_closed(fd, 5000, &extra) >= 0);
    close(fd);
    mpb__seal_free(&s);
    mpb__buf_free(&body);
    mpb__buf_free(&hello);
}

/* ---- 7. memory of peers without a session ---- */

enum { PARTIAL_PEERS = 200 };

static void test_partial_frames_bounded(void **state) {
    (void)state;
    long rss0 = th_rss_kb(B.pid);
    static int fds[PARTIAL_PEERS];
    static uint8_t part[4 + 16000];
    int opened = 0;
    for (int i = 0; i < PARTIAL_PEERS; i++) {
        mpb__seal_t s;
        fds[i] = rs_tcp(mport);
        if (fds[i] < 0) break;
        uint8_t g[MPB__GREET_LEN];
        memset(&s, 0, sizeof s);
        mpb__seal_greet(&s, g);
        mpb__seal_free(&s);
        /* a greeting and all but the last bytes of a frame at the bound (16384 + tag) */
        uint32_t len = 16384 + MPB__SEAL_TAG;
        part[0] = (uint8_t)(len >> 24);
        part[1] = (uint8_t)(len >> 16);
        part[2] = (uint8_t)(len >> 8);
        part[3] = (uint8_t)len;
        memset(part + 4, 0x33, sizeof part - 4);
        rs_write_all(fds[i], g, sizeof g);
        rs_write_all(fds[i], part, sizeof part);
        opened++;
    }
    usleep(500000);
    long rss1 = th_rss_kb(B.pid);
    /* a real client is served meanwhile */
    mpb_client_t *c = must_connect(&B, mep);
    th_assert_dict_roundtrip(c, "m.during-partial", 4);
    mpb_close(&c);
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    print_message("%d peers each holding a 16 KB partial frame: broker RSS %ld kB -> %ld kB\n",
                  opened, rss0, rss1);
    assert_int_equal(opened, PARTIAL_PEERS);
    /* 200 x 16 KiB = 3.2 MB held at most, with slack for the allocator */
    assert_true(rss1 - rss0 < 16 * 1024);
}

/* ---- 8. idle without a session ---- */

static void test_silent_peer_closed_after_idle(void **state) {
    (void)state;
    th_broker_t ib;
    int port = cp_free_port();
    char ep[64];
    snprintf(ep, sizeof ep, "mpb://127.0.0.1:%d", port);
    th_broker_start(&ib, "--listen", ep, "--idle-ms", "1000", NULL);
    int fd = rs_tcp(port);
    assert_true(fd >= 0);
    int64_t t0 = th_now_ms();
    size_t extra;
    int64_t ms = rs_wait_closed(fd, 6000, &extra);
    close(fd);
    print_message("a silent peer, idle-ms 1000: closed after %lld ms (%zu bytes sent to it)\n",
                  (long long)ms, extra);
    assert_true(ms >= 0);
    assert_true(th_now_ms() - t0 >= 900);
    assert_int_equal(extra, 0);
    assert_true(th_wait_log_line(&ib, "idle without a session", 2000));
    mpb_client_t *c = must_connect(&ib, ep);
    th_assert_dict_roundtrip(c, "m.after-idle", 5);
    mpb_close(&c);
    th_broker_stop_checked(&ib);
}

/* One host's connections without a session: past max-handshakes-per-addr, closed at once. */
enum { SHARE = 8 };

static void test_one_host_share_of_silent_connections(void **state) {
    (void)state;
    th_broker_t hb;
    int port = cp_free_port();
    char ep[64], share[16];
    snprintf(ep, sizeof ep, "mpb://127.0.0.1:%d", port);
    snprintf(share, sizeof share, "%d", SHARE);
    th_broker_start(&hb, "--listen", ep, "--max-handshakes-per-addr", share, NULL);
    mpb_client_t *c = must_connect(&hb, ep); /* with a session: not counted */
    int fds[SHARE + 4];
    for (int i = 0; i < SHARE + 4; i++) {
        fds[i] = rs_tcp(port);
        assert_true(fds[i] >= 0);
        usleep(20000); /* accepted in order */
    }
    int closed = 0;
    for (int i = 0; i < SHARE + 4; i++) {
        size_t extra;
        int64_t ms = rs_wait_closed(fds[i], i < SHARE ? 300 : 3000, &extra);
        closed += ms >= 0;
        if (i < SHARE) assert_true(ms < 0); /* within its host's share: kept */
        if (i >= SHARE) assert_true(ms >= 0);
    }
    print_message("%d silent connections from one host, share %d: %d closed at once\n", SHARE + 4,
                  SHARE, closed);
    assert_int_equal(closed, 4);
    assert_true(th_wait_log_line(&hb, "too many without a session from this address", 2000));
    th_assert_dict_roundtrip(c, "m.share", 6); /* the client with a session is served */
    /* and was never cut: idle for seconds, its connection counts nothing unread (its
     * greeting is counted as written and as queued) */
    assert_int_equal(mpb_reconnects(c), 0);
    assert_int_equal(th_log_count(&hb, "unread past max-output"), 0);
    for (int i = 0; i < SHARE + 4; i++)
        close(fds[i]);
    usleep(200000);
    mpb_client_t *n = must_connect(&hb, ep); /* the share is free again */
    th_assert_dict_roundtrip(n, "m.share-after", 7);
    mpb_close(&n);
    mpb_close(&c);
    th_broker_stop_checked(&hb);
}

/* ---- 9. a restart under a client; the starts refused ---- */

static void test_restart_resumes_session(void **state) {
    (void)state;
    th_broker_t k;
    int port = cp_free_port();
    char ep[64];
    snprintf(ep, sizeof ep, "mpb://127.0.0.1:%d", port);
    th_broker_start(&k, "--listen", ep, "--fsync", "always", NULL);
    mpb_client_t *c = must_connect(&k, ep);
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "rk", &d), c);
    th_assert_ok(mpb_dict_set_i64(d, "v", 99), c);
    uint64_t sess = mpb_session_id(c);
    int fd0 = mpb_fd(c);
    th_broker_restart(&k, SIGKILL, "--listen", ep, "--fsync", "always", NULL);
    int64_t v = 0;
    th_assert_ok(mpb_dict_get_i64(d, "v", &v), c);
    print_message("after a SIGKILL and restart: v = %lld, session %llu -> %llu, reconnects %u\n",
                  (long long)v, (unsigned long long)sess, (unsigned long long)mpb_session_id(c),
                  mpb_reconnects(c));
    assert_int_equal(v, 99);
    assert_int_equal(mpb_session_id(c), sess);
    assert_int_equal(mpb_fd(c), fd0);
    assert_true(mpb_reconnects(c) >= 1);
    th_assert_ok(mpb_dict_incr_str(d, "v", 1, &v), c);
    assert_int_equal(v, 100);
    mpb_dict_close(&d);
    mpb_close(&c);

    /* --encryption off with mpb:// is refused at the start, with the reason */
    int st = th_broker_restart_fails(&k, SIGTERM, "--listen", ep, "--encryption", "off", NULL);
    assert_int_not_equal(st, 0);
    assert_true(th_log_has_line(&k, "always encrypted", NULL));
    /* a bad address is refused too */
    st = th_broker_restart_fails(&k, 0, "--listen", "mpb://not-an-address:1", NULL);
    assert_int_not_equal(st, 0);
    th_broker_stop(&k);
}

/* ---- 10. a 3 s network cut under a writer ---- */

static cutproxy_t P; /* in front of mport, started before any client */
enum { CUT_N = 3000 };

typedef struct cutw {
    mpb_client_t *c;
    int done, rc;
    char err[256];
} cutw_t;

static void *cut_writer(void *arg) {
    cutw_t *w = arg;
    mpb_dict_t *d = NULL;
    mpb_list_t *l = NULL;
    int rc = mpb_dict_open(w->c, "m.cut", &d);
    if (!rc) rc = mpb_list_open(w->c, "m.cut-l", &l);
    for (int i = 0; !rc && i < CUT_N; i++) {
        size_t n;
        const uint8_t *v = th_int(i, &n);
        rc = mpb_dict_incr_str(d, "n", 1, NULL);
        if (!rc) rc = mpb_list_append(l, v, n);
        if (!rc) __atomic_store_n(&w->done, i + 1, __ATOMIC_RELEASE);
    }
    if (rc) snprintf(w->err, sizeof w->err, "%s: %s", mpb_strerror(rc), mpb_errmsg(w->c));
    w->rc = rc;
    mpb_dict_close(&d);
    mpb_list_close(&l);
    return NULL;
}

static void test_writer_rides_a_3s_cut_exactly_once(void **state) {
    (void)state;
    char ep[64];
    snprintf(ep, sizeof ep, "mpb://127.0.0.1:%d", P.port);
    cutw_t w = {.c = must_connect(&B, ep)};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cut_writer, &w), 0);
    int64_t end = th_now_ms() + 30000;
    while (__atomic_load_n(&w.done, __ATOMIC_ACQUIRE) < CUT_N / 5 && th_now_ms() < end)
        usleep(1000);
    int closed = cp_cut(&P);
    int at = __atomic_load_n(&w.done, __ATOMIC_ACQUIRE);
    sleep(3);
    assert_int_equal(cp_resume(&P), 0);
    pthread_join(th, NULL);
    print_message("cut %d connection(s) with %d of %d writes done; writer: %s, %u reconnect(s)\n",
                  closed, at, CUT_N, w.rc ? w.err : "ok", mpb_reconnects(w.c));
    assert_true(closed >= 1);
    assert_true(at < CUT_N); /* really mid-stream */
    assert_int_equal(w.rc, 0);
    assert_true(mpb_reconnects(w.c) >= 1);
    mpb_close(&w.c);
    /* every write there exactly once, in order */
    mpb_client_t *c = must_connect(&B, mep);
    assert_int_equal(th_dict_i64(c, "m.cut", "n"), CUT_N);
    mpb_list_t *l;
    th_assert_ok(mpb_list_open(c, "m.cut-l", &l), c);
    uint64_t len = 0;
    th_assert_ok(mpb_list_len(l, &len), c);
    assert_int_equal(len, CUT_N);
    for (int i = 0; i < CUT_N; i += 997) {
        void *v;
        size_t vn;
        th_assert_ok(mpb_list_get(l, i, &v, &vn), c);
        size_t wn;
        const uint8_t *want = th_int(i, &wn);
        th_assert_bytes(v, vn, want, wn);
        mpb_free(v);
    }
    mpb_list_close(&l);
    mpb_close(&c);
}

static void test_last_still_serves(void **state) {
    (void)state;
    mpb_client_t *c = must_connect(&B, mep);
    assert_int_equal(th_dict_i64(c, "m.count", "n"), NPROC * INCRS);
    th_assert_dict_roundtrip(c, "m.last", 9);
    mpb_close(&c);
    th_broker_stop_checked(&B);
    cp_stop(&P);
}

int main(void) {
    start_suite_broker();
    if (cp_start(&P, mport) != 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_from_processes),
        cmocka_unit_test(test_pool_over_mpb),
        cmocka_unit_test(test_nothing_readable_on_the_wire),
        cmocka_unit_test(test_another_key_refused),
        cmocka_unit_test(test_raw_bad_input),
        cmocka_unit_test(test_client_from_the_spec),
        cmocka_unit_test(test_partial_frames_bounded),
        cmocka_unit_test(test_silent_peer_closed_after_idle),
        cmocka_unit_test(test_one_host_share_of_silent_connections),
        cmocka_unit_test(test_restart_resumes_session),
        cmocka_unit_test(test_writer_rides_a_3s_cut_exactly_once),
        cmocka_unit_test(test_last_still_serves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
