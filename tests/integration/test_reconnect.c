/* test_reconnect.c - nothing acknowledged is lost, nothing applies twice: requests sent again
 * on a resumed session are answered from the broker's reply cache (raw client, exact bytes);
 * libmpb clients mid-stream ride through a 3 s network cut (a TCP proxy that drops every
 * connection and refuses new ones) with no losses and no duplicates, a blocking get and a
 * held lock survive one; a client cut off longer than its session's TTL, or whose broker
 * restarted without it, is told MPB_ESESSION with what it lost. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cutproxy.h"
#include "rawclient.h"
#include "th.h"

static th_broker_t B;
static cutproxy_t P;
static int bport; /* the broker's fixed TCP port (so a restarted one is found at it) */
static char bep[64];

static void start_broker(th_broker_t *b, const char *a1, const char *a2, const char *a3,
                         const char *a4) {
    char listen[64];
    snprintf(listen, sizeof listen, "tcp://127.0.0.1:%d", bport);
    th_broker_start(b, "--listen", listen, a1, a2, a3, a4, NULL);
}

static int setup(void **state) {
    (void)state;
    bport = cp_free_port();
    assert_true(bport > 0);
    snprintf(bep, sizeof bep, "tcp://127.0.0.1:%d", bport);
    start_broker(&B, NULL, NULL, NULL, NULL);
    assert_int_equal(cp_start(&P, bport), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cp_stop(&P);
    th_broker_stop(&B);
    return 0;
}

/* A client of the broker at its fixed port (not through the proxy). */
static mpb_client_t *direct(void) {
    size_t kl;
    const char *k = th_authkey(&B, &kl);
    mpb_client_t *c;
    int rc = mpb_connect(bep, k, kl, NULL, &c);
    if (rc) fail_msg("connect %s: %s", bep, mpb_errmsg(c));
    return c;
}

static mpb_client_t *via_proxy(const char *name) {
    size_t kl;
    const char *k = th_authkey(&B, &kl);
    mpb_options_t o;
    mpb_options_init(&o);
    o.name = name;
    mpb_client_t *c;
    int rc = mpb_connect(P.endpoint, k, kl, &o, &c);
    if (rc) fail_msg("connect %s: %s", P.endpoint, mpb_errmsg(c));
    return c;
}

static int64_t dict_int(mpb_client_t *c, const char *dict, const char *key) {
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, dict, &d), c);
    int64_t v = INT64_MIN;
    int rc = mpb_dict_get_i64(d, key, &v);
    mpb_dict_close(&d);
    return rc ? INT64_MIN : v;
}

static uint64_t qsize(mpb_client_t *c, const char *name) {
    mpb_queue_t *q;
    th_assert_ok(mpb_queue_open(c, name, -1, -1, &q), c);
    uint64_t n = 0;
    th_assert_ok(mpb_queue_qsize(q, &n), c);
    mpb_queue_close(&q);
    return n;
}

static void queue_put_str(mpb_client_t *c, const char *name, const char *s) {
    mpb_queue_t *q;
    th_assert_ok(mpb_queue_open(c, name, -1, -1, &q), c);
    size_t n;
    const uint8_t *v = th_str(s, &n);
    th_assert_ok(mpb_queue_put(q, v, n, 0), c);
    mpb_queue_close(&q);
}

/* ---- the reply cache, through a raw client ---- */

/* A raw session and another channel resuming it; rc_frame_t is large, hence static. */
static rc_frame_t F;

static void raw_resume(rawclient_t *to, const rawclient_t *from) {
    size_t kl;
    const char *k = th_authkey(&B, &kl);
    assert_int_equal(rc_open(to, NULL, B.endpoint), 0);
    assert_int_equal(rc_hello(to, NULL, 5000), 0);
    assert_int_equal(rc_auth_resume(to, k, kl, from->session, from->token, NULL, 5000), 0);
    assert_true(to->resumed);
    assert_int_equal(to->session, from->session);
    memcpy(to->token, from->token, sizeof to->token);
}

/* Sends body as frame seq on c and waits for a REP (or an ERROR). */
static void raw_send(rawclient_t *c, uint64_t seq, const mpb__buf_t *body) {
    mpb__buf_t out = {0};
    rc_seal(c, seq, body->p, body->len, &out);
    assert_int_equal(rc_send(c, out.p, out.len), 0);
    mpb__buf_free(&out);
}

/* Sends body as frame seq on c and expects one REP of one reply: returns it (valid until the
 * next receive). */
static const rc_reply_t *raw_call(rawclient_t *c, uint64_t seq, const mpb__buf_t *body) {
    raw_send(c, seq, body);
    assert_int_equal(rc_recv(c, &F, 5000), 0);
    assert_int_equal(F.type, MPB__T_REP);
    assert_int_equal(F.nrep, 1);
    return &F.rep[0];
}

/* Sends body as frame seq on c and expects no answer now (the request is parked). */
static void raw_parked(rawclient_t *c, uint64_t seq, const mpb__buf_t *body) {
    raw_send(c, seq, body);
    assert_int_equal(rc_recv(c, &F, 200), MPB_ETIMEDOUT);
}

/* A request body [rid, op, dict, key] (dict.incr: and by 1), or [rid, queue.get, q, -1]. */
static void req_dict(mpb__buf_t *b, uint64_t rid, unsigned op, const char *dict, const char *key) {
    mpb__buf_reset(b);
    rc_req(b, rid, op, dict, strlen(dict), op == MPB_OP_DICT_INCR ? 2 : 1);
    mpb__w_cstr(b, key);
    if (op == MPB_OP_DICT_INCR) mpb__w_int(b, 1);
}

static void req_get(mpb__buf_t *b, uint64_t rid, const char *queue) {
    mpb__buf_reset(b);
    rc_req(b, rid, MPB_OP_QUEUE_GET, queue, strlen(queue), 1);
    mpb__w_int(b, -1);
}

typedef struct kept {
    uint64_t rid, code;
    uint8_t val[256];
    size_t len;
} kept_t;

static void keep(const rc_frame_t *f, kept_t *k, size_t n) {
    assert_int_equal(f->type, MPB__T_REP);
    assert_true(f->mac_ok);
    assert_int_equal(f->nrep, n);
    for (size_t i = 0; i < n; i++) {
        k[i].rid = f->rep[i].rid;
        k[i].code = f->rep[i].code;
        assert_true(f->rep[i].vallen <= sizeof k[i].val);
        memcpy(k[i].val, f->rep[i].val, f->rep[i].vallen);
        k[i].len = f->rep[i].vallen;
    }
}

static void test_a_resent_request_is_answered_from_the_cache_not_run_again(void **state) {
    (void)state;
    size_t kl;
    const char *k = th_authkey(&B, &kl);
    static rawclient_t a, b, c2, d, e;
    assert_int_equal(rc_open(&a, NULL, B.endpoint), 0);
    assert_int_equal(rc_handshake(&a, k, kl, 5000), 0);

    /* frame 1: dict.incr, list.append, queue.put, pool.submit */
    mpb__buf_t body = {0};
    req_dict(&body, 1, MPB_OP_DICT_INCR, "eo", "n");
    rc_req(&body, 2, MPB_OP_LIST_APPEND, "eo-l", 4, 1);
    mpb__w_cstr(&body, "x");
    rc_req(&body, 3, MPB_OP_QUEUE_PUT, "eo-q", 4, 2);
    mpb__w_cstr(&body, "y");
    mpb__w_int(&body, -1);
    rc_req(&body, 4, MPB_OP_POOL_SUBMIT, NULL, 0, 3);
    mpb__w_cstr(&body, "eofn");
    mpb__w_nil(&body);
    mpb__w_array(&body, 1); /* one task */
    mpb__w_array(&body, 1); /* of one call */
    mpb__w_array(&body, 1); /* with one argument */
    mpb__w_int(&body, 7);
    raw_send(&a, 1, &body);
    assert_int_equal(rc_recv(&a, &F, 5000), 0);
    kept_t first[4];
    keep(&F, first, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(first[i].code, 0);
    assert_int_equal(first[0].len, 1);
    assert_int_equal(first[0].val[0], 1); /* incr -> 1 */

    /* The same frame again, on a new channel of the same session, as a client that never
     * saw the replies sends it: the same four answers, byte for byte, and nothing ran. */
    raw_resume(&b, &a);
    raw_send(&b, 1, &body);
    assert_int_equal(rc_recv(&b, &F, 5000), 0);
    kept_t again[4];
    keep(&F, again, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(again[i].rid, first[i].rid);
        assert_int_equal(again[i].code, first[i].code);
        th_assert_bytes(again[i].val, again[i].len, first[i].val, first[i].len);
    }
    mpb_client_t *c = direct();
    assert_int_equal(dict_int(c, "eo", "n"), 1);
    mpb_list_t *l;
    th_assert_ok(mpb_list_open(c, "eo-l", &l), c);
    uint64_t len = 0;
    th_assert_ok(mpb_list_len(l, &len), c);
    assert_int_equal(len, 1);
    mpb_list_close(&l);
    assert_int_equal(qsize(c, "eo-q"), 1);
    const uint8_t args[] = {0x91, 0xa4, 'e', 'o', 'f', 'n'}; /* ["eofn"] */
    size_t an = sizeof args;
    void *res = NULL;
    size_t rl = 0;
    th_assert_ok(mpb_call(c, MPB_OP_POOL_FNINFO, NULL, args, an, 0, &res, &rl), c);
    /* [workers, capacity, queued, ...]: one task queued, not two */
    assert_true(rl >= 4);
    assert_int_equal(((uint8_t *)res)[3], 1);
    mpb_free(res);

    /* A new frame that reuses rid 1 is a new request: it runs. */
    mpb__buf_t b2 = {0};
    req_dict(&b2, 1, MPB_OP_DICT_INCR, "eo", "n");
    const rc_reply_t *rp = raw_call(&b, 2, &b2);
    assert_int_equal(rp->code, 0);
    assert_int_equal(rp->val[0], 2);

    /* A read sent again runs again (it changes nothing): it sees the value of now. */
    mpb__buf_t b3 = {0};
    req_dict(&b3, 5, MPB_OP_DICT_GET, "eo", "n");
    assert_int_equal(raw_call(&b, 3, &b3)->val[0], 2);
    mpb_dict_t *dd;
    th_assert_ok(mpb_dict_open(c, "eo", &dd), c);
    int64_t now = 0;
    th_assert_ok(mpb_dict_incr_str(dd, "n", 10, &now), c);
    assert_int_equal(now, 12);
    raw_resume(&c2, &a);
    assert_int_equal(raw_call(&c2, 3, &b3)->val[0], 12);

    /* A parked get sent again stays one getter, and its answer reaches the newest channel. */
    mpb__buf_t b4 = {0};
    req_get(&b4, 6, "eo-pq");
    raw_parked(&c2, 4, &b4);
    raw_resume(&d, &a);
    raw_parked(&d, 4, &b4);
    assert_int_equal(th_describe_int(c, "queue/eo-pq", "getters"), 1);
    queue_put_str(c, "eo-pq", "i1");
    assert_int_equal(rc_recv(&d, &F, 5000), 0);
    assert_int_equal(F.nrep, 1);
    assert_int_equal(F.rep[0].rid, 6);
    size_t sl;
    const uint8_t *want = th_str("i1", &sl);
    th_assert_bytes(F.rep[0].val, F.rep[0].vallen, want, sl);
    queue_put_str(c, "eo-pq", "i2");
    assert_int_equal(qsize(c, "eo-pq"), 1);

    /* A get answered while no channel listened: sent again, it gets that same item from the
     * cache, and takes no second one. */
    mpb__buf_t b5 = {0};
    req_get(&b5, 7, "eo-pq2");
    raw_parked(&d, 5, &b5);
    rc_close(&d); /* its answer now goes nowhere */
    queue_put_str(c, "eo-pq2", "j1");
    raw_resume(&e, &a);
    rp = raw_call(&e, 5, &b5);
    assert_int_equal(rp->rid, 7);
    assert_int_equal(rp->code, 0);
    want = th_str("j1", &sl);
    th_assert_bytes(rp->val, rp->vallen, want, sl);
    queue_put_str(c, "eo-pq2", "j2");
    assert_int_equal(qsize(c, "eo-pq2"), 1);

    /* The cache is no way around the sequence check: on the same channel, a number seen
     * already is still refused. */
    raw_send(&e, 5, &b5);
    assert_int_equal(rc_recv(&e, &F, 5000), 0);
    assert_int_equal(F.type, MPB__T_ERROR);
    assert_int_equal(F.code, -MPB_EREPLAY);

    mpb__buf_free(&body);
    mpb__buf_free(&b2);
    mpb__buf_free(&b3);
    mpb__buf_free(&b4);
    mpb__buf_free(&b5);
    mpb_dict_close(&dd);
    rc_close(&e);
    rc_close(&c2);
    rc_close(&b);
    /* a's session ends with its bye */
    rc_close(&a);
    th_assert_dict_roundtrip(c, "eo-end", 42);
    mpb_close(&c);
}

/* With --reply-cache 2, a request whose reply has left the cache is not run again: it is
 * refused with EREPLAY, which names the setting. */
static void test_a_reply_that_left_the_cache_is_refused_not_rerun(void **state) {
    (void)state;
    static th_broker_t S;
    th_broker_start(&S, "--reply-cache", "2", NULL);
    size_t kl;
    const char *k = th_authkey(&S, &kl);
    static rawclient_t a, b;
    assert_int_equal(rc_open(&a, NULL, S.endpoint), 0);
    assert_int_equal(rc_handshake(&a, k, kl, 5000), 0);
    mpb__buf_t body[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        req_dict(&body[i], (uint64_t)i + 1, MPB_OP_DICT_INCR, "rc", "n");
        assert_int_equal(raw_call(&a, (uint64_t)i + 1, &body[i])->val[0], i + 1);
    }
    assert_int_equal(rc_open(&b, NULL, S.endpoint), 0);
    assert_int_equal(rc_hello(&b, NULL, 5000), 0);
    assert_int_equal(rc_auth_resume(&b, k, kl, a.session, a.token, NULL, 5000), 0);
    assert_true(b.resumed);
    const rc_reply_t *rp = raw_call(&b, 1, &body[0]);
    assert_int_equal(rp->code, -MPB_EREPLAY);
    assert_non_null(strstr(rp->msg, "reply-cache 2"));
    rp = raw_call(&b, 3, &body[2]);
    assert_int_equal(rp->code, 0);
    assert_int_equal(rp->val[0], 3);
    /* and the counter is 3: nothing ran twice */
    mpb__buf_t g = {0};
    req_dict(&g, 9, MPB_OP_DICT_GET, "rc", "n");
    assert_int_equal(raw_call(&b, 4, &g)->val[0], 3);
    for (int i = 0; i < 3; i++)
        mpb__buf_free(&body[i]);
    mpb__buf_free(&g);
    rc_close(&b);
    rc_close(&a);
    th_broker_stop_checked(&S);
}

/* ---- libmpb across a 3 s cut ---- */

#define N_ITEMS   3000
#define N_WRITERS 2

static int async_ok, async_bad;
static void on_incr(mpb_client_t *c, int status, const void *v, size_t n, void *arg) {
    (void)c, (void)v, (void)n, (void)arg;
    if (status)
        async_bad++;
    else
        async_ok++;
}

/* Writes N_ITEMS increments, appends and puts (and a tenth as many pipelined increments)
 * through the proxy; any call that fails fails the child. */
static int writer(int unused, void *arg) {
    (void)unused;
    int idx = *(const int *)arg;
    char name[32];
    snprintf(name, sizeof name, "writer-%d", idx);
    mpb_client_t *c = via_proxy(name);
    mpb_dict_t *d;
    mpb_list_t *l;
    mpb_queue_t *q;
    if (mpb_dict_open(c, "cut", &d) || mpb_list_open(c, "cut-l", &l) ||
        mpb_queue_open(c, "cut-q", -1, -1, &q)) {
        fprintf(stderr, "writer %d: open: %s\n", idx, mpb_errmsg(c));
        return 1;
    }
    const uint8_t akey[] = {0xa1, 'a'}; /* "a" */
    size_t akl = sizeof akey;
    for (int i = 0; i < N_ITEMS; i++) {
        uint8_t v[16];
        size_t vn = mpb_pack_i64(v, (int64_t)idx * 1000000 + i);
        int64_t now;
        int rc = mpb_dict_incr_str(d, "n", 1, &now);
        if (!rc) rc = mpb_list_append(l, v, vn);
        if (!rc) rc = mpb_queue_put(q, v, vn, 0);
        if (!rc && i % 10 == 0) rc = mpb_dict_incr_async(d, akey, akl, 1, on_incr, NULL);
        if (rc) {
            fprintf(stderr, "writer %d: item %d: %s: %s\n", idx, i, mpb_strerror(rc),
                    mpb_errmsg(c));
            return 1;
        }
    }
    int rc = mpb_drain(c, 30000);
    if (rc || async_bad || async_ok != N_ITEMS / 10) {
        fprintf(stderr, "writer %d: drain %d, %d async ok, %d failed: %s\n", idx, rc, async_ok,
                async_bad, mpb_errmsg(c));
        return 1;
    }
    char key[32];
    snprintf(key, sizeof key, "reconnects-%d", idx);
    rc = mpb_dict_set_i64(d, key, mpb_reconnects(c));
    mpb_dict_close(&d);
    mpb_list_close(&l);
    mpb_queue_close(&q);
    mpb_close(&c);
    return rc != 0;
}

/* Reads every item of list (or, popping, of queue) as int64, sorted. */
static void all_ints(mpb_client_t *c, const char *list, const char *queue, int64_t *out,
                     size_t want) {
    size_t got = 0;
    if (list) {
        mpb_list_t *l;
        th_assert_ok(mpb_list_open(c, list, &l), c);
        while (got < want) {
            void *items;
            size_t il, n;
            th_assert_ok(mpb_list_slice(l, (int64_t)got, (int64_t)want, 0, &items, &il, &n), c);
            assert_true(n > 0);
            mpb__rd_t r = {items, (uint8_t *)items + il};
            uint32_t an;
            assert_int_equal(mpb__rd_array(&r, &an), 0);
            for (uint32_t i = 0; i < an; i++)
                assert_int_equal(mpb__rd_int(&r, &out[got++]), 0);
            mpb_free(items);
        }
        mpb_list_close(&l);
    } else {
        mpb_queue_t *q;
        th_assert_ok(mpb_queue_open(c, queue, -1, -1, &q), c);
        for (; got < want; got++) {
            void *v;
            size_t vn;
            th_assert_ok(mpb_queue_get(q, &v, &vn, 0), c);
            assert_int_equal(mpb_unpack_i64(v, vn, &out[got]), 0);
            mpb_free(v);
        }
        mpb_queue_close(&q);
    }
    qsort(out, got, sizeof *out, th_cmp_i64);
}

static void test_writers_mid_stream_ride_through_a_3s_cut_exactly_once(void **state) {
    (void)state;
    pid_t kids[N_WRITERS];
    static int idx[N_WRITERS];
    for (int i = 0; i < N_WRITERS; i++) {
        idx[i] = i;
        kids[i] = th_fork(writer, &idx[i]);
    }
    mpb_client_t *c = direct();
    mpb_list_t *l;
    th_assert_ok(mpb_list_open(c, "cut-l", &l), c);
    uint64_t len = 0;
    int64_t end = th_now_ms() + 30000;
    while (len < N_WRITERS * N_ITEMS / 5 && th_now_ms() < end) {
        th_assert_ok(mpb_list_len(l, &len), c);
        usleep(2000);
    }
    int closed = cp_cut(&P);
    th_assert_ok(mpb_list_len(l, &len), c);
    print_message("cut %d connections with %llu of %d appends done\n", closed,
                  (unsigned long long)len, N_WRITERS * N_ITEMS);
    assert_true(len < N_WRITERS * N_ITEMS); /* really mid-stream */
    assert_true(closed >= 1);
    sleep(3);
    assert_int_equal(cp_resume(&P), 0);
    for (int i = 0; i < N_WRITERS; i++)
        assert_int_equal(th_wait(kids[i], 60), 0);

    /* Every write is there exactly once. */
    assert_int_equal(dict_int(c, "cut", "n"), N_WRITERS * N_ITEMS);
    assert_int_equal(dict_int(c, "cut", "a"), N_WRITERS * (N_ITEMS / 10));
    for (int i = 0; i < N_WRITERS; i++) {
        char key[32];
        snprintf(key, sizeof key, "reconnects-%d", i);
        int64_t r = dict_int(c, "cut", key);
        print_message("writer %d reconnected %lld times\n", i, (long long)r);
        assert_true(r >= 1);
    }
    th_assert_ok(mpb_list_len(l, &len), c);
    assert_int_equal(len, N_WRITERS * N_ITEMS);
    assert_int_equal(qsize(c, "cut-q"), N_WRITERS * N_ITEMS);
    static int64_t items[N_WRITERS * N_ITEMS], want[N_WRITERS * N_ITEMS];
    for (int w = 0; w < N_WRITERS; w++)
        for (int i = 0; i < N_ITEMS; i++)
            want[w * N_ITEMS + i] = (int64_t)w * 1000000 + i;
    all_ints(c, "cut-l", NULL, items, N_WRITERS * N_ITEMS);
    assert_memory_equal(items, want, sizeof want);
    all_ints(c, NULL, "cut-q", items, N_WRITERS * N_ITEMS);
    assert_memory_equal(items, want, sizeof want);
    mpb_list_close(&l);
    mpb_close(&c);
}

/* ---- across a broker restart (SIGKILL, same data dir, --fsync always) ---- */

static th_broker_t K; /* the broker that is killed */

/* As writer, straight to K: increments and appends, each acknowledged one must be there
 * once after the crash. */
static int restart_writer(int unused, void *arg) {
    (void)unused, (void)arg;
    size_t kl;
    const char *k = th_authkey(&K, &kl);
    mpb_client_t *c;
    if (mpb_connect(K.endpoint, k, kl, NULL, &c)) {
        fprintf(stderr, "restart writer: connect: %s\n", mpb_errmsg(c));
        return 1;
    }
    uint64_t sess = mpb_session_id(c);
    mpb_dict_t *d;
    mpb_list_t *l;
    if (mpb_dict_open(c, "rs", &d) || mpb_list_open(c, "rs-l", &l)) return 1;
    for (int i = 0; i < N_ITEMS; i++) {
        uint8_t v[16];
        size_t vn = mpb_pack_i64(v, i);
        int64_t now;
        int rc = mpb_dict_incr_str(d, "n", 1, &now);
        if (!rc && now != i + 1) {
            fprintf(stderr, "restart writer: item %d: the counter says %lld\n", i, (long long)now);
            return 1;
        }
        if (!rc) rc = mpb_list_append(l, v, vn);
        if (rc) {
            fprintf(stderr, "restart writer: item %d: %s: %s\n", i, mpb_strerror(rc),
                    mpb_errmsg(c));
            return 1;
        }
    }
    int rc = mpb_dict_set_i64(d, "reconnects", mpb_reconnects(c));
    if (!rc) rc = mpb_dict_set_i64(d, "same-session", mpb_session_id(c) == sess);
    mpb_dict_close(&d);
    mpb_list_close(&l);
    mpb_close(&c);
    return rc != 0;
}

/* A client mid-stream across a SIGKILL of its broker and a restart on the same data dir: it
 * resumes its session (kept in the log), sends again what had no reply, and the counter and
 * the list hold every write once: a write that ran before the crash is answered from the
 * reply cache the log brought back. */
static void test_a_writer_mid_stream_rides_through_a_broker_crash_and_restart(void **state) {
    (void)state;
    th_broker_start(&K, "--fsync", "always", NULL);
    pid_t kid = th_fork(restart_writer, NULL);
    mpb_client_t *c;
    size_t kl;
    const char *k = th_authkey(&K, &kl);
    th_assert_ok(mpb_connect(K.endpoint, k, kl, NULL, &c), c);
    mpb_list_t *l;
    th_assert_ok(mpb_list_open(c, "rs-l", &l), c);
    uint64_t len = 0;
    int64_t end = th_now_ms() + 30000;
    while (len < N_ITEMS / 3 && th_now_ms() < end) {
        th_assert_ok(mpb_list_len(l, &len), c);
        usleep(2000);
    }
    mpb_list_close(&l);
    mpb_close(&c);
    th_broker_restart(&K, SIGKILL, "--fsync", "always", NULL);
    print_message("broker killed and restarted with %llu of %d appends done\n",
                  (unsigned long long)len, N_ITEMS);
    assert_true(len < N_ITEMS);
    assert_int_equal(th_wait(kid, 60), 0);
    th_assert_ok(mpb_connect(K.endpoint, k, kl, NULL, &c), c);
    assert_int_equal(dict_int(c, "rs", "n"), N_ITEMS);
    assert_true(dict_int(c, "rs", "reconnects") >= 1);
    assert_int_equal(dict_int(c, "rs", "same-session"), 1);
    static int64_t items[N_ITEMS], want[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++)
        want[i] = i;
    all_ints(c, "rs-l", NULL, items, N_ITEMS);
    assert_memory_equal(items, want, sizeof want);
    th_assert_ok(mpb_list_open(c, "rs-l", &l), c);
    th_assert_ok(mpb_list_len(l, &len), c);
    assert_int_equal(len, N_ITEMS);
    mpb_list_close(&l);
    mpb_close(&c);
    th_broker_stop_checked(&K);
}

/* ---- a blocking get and a held lock across a cut ---- */

/* Holds lock "cl" and blocks on queue "bq" through the proxy; appends what it got to list
 * "bq-got", then releases the lock: every step must succeed, the session must have resumed. */
static int getter(int idx, void *arg) {
    (void)idx, (void)arg;
    mpb_client_t *c = via_proxy("getter");
    uint64_t sess = mpb_session_id(c), fence;
    mpb_lock_t *lk;
    mpb_queue_t *q;
    mpb_list_t *l;
    int rc = mpb_lock_open(c, "cl", &lk);
    if (!rc) rc = mpb_lock_acquire(lk, 0, &fence);
    if (!rc) rc = mpb_queue_open(c, "bq", -1, -1, &q);
    if (!rc) rc = mpb_list_open(c, "bq-got", &l);
    void *v = NULL;
    size_t vn = 0;
    if (!rc) rc = mpb_queue_get(q, &v, &vn, MPB_FOREVER);
    if (!rc) rc = mpb_list_append(l, v, vn);
    if (!rc) rc = mpb_lock_release(lk);
    if (rc) {
        fprintf(stderr, "getter: %s: %s\n", mpb_strerror(rc), mpb_errmsg(c));
        return 1;
    }
    if (mpb_reconnects(c) < 1 || mpb_session_id(c) != sess) {
        fprintf(stderr, "getter: %u reconnects, session %llu then %llu\n", mpb_reconnects(c),
                (unsigned long long)sess, (unsigned long long)mpb_session_id(c));
        return 1;
    }
    mpb_free(v);
    mpb_close(&c);
    return 0;
}

/* Waits on event "cev" through the proxy, for ever: it must come back set, on its session. */
static int event_waiter(int idx, void *arg) {
    (void)idx, (void)arg;
    mpb_client_t *c = via_proxy("event-waiter");
    uint64_t sess = mpb_session_id(c);
    mpb_event_t *e;
    int rc = mpb_event_open(c, "cev", &e);
    int set = rc ? rc : mpb_event_wait(e, MPB_FOREVER);
    if (set != 1 || mpb_reconnects(c) < 1 || mpb_session_id(c) != sess) {
        fprintf(stderr, "event waiter: wait gave %d (%s), %u reconnects\n", set, mpb_errmsg(c),
                mpb_reconnects(c));
        return 1;
    }
    mpb_event_close(&e);
    mpb_close(&c);
    return 0;
}

/* The item is put while the getter is cut off: its answer goes nowhere, and the getter,
 * back, gets it from the reply cache; the lock it held all along is still its own. An event
 * set meanwhile wakes its waiter the same way. */
static void test_a_blocked_get_and_a_held_lock_survive_a_3s_cut(void **state) {
    (void)state;
    pid_t kid = th_fork(getter, NULL), ekid = th_fork(event_waiter, NULL);
    mpb_client_t *c = direct();
    assert_true(th_wait_field(c, "queue/bq", "getters", 1, 10000));
    assert_true(th_wait_field(c, "event/cev", "waiters", 1, 10000));
    assert_int_equal(th_describe_int(c, "lock/cl", "locked"), 1);
    assert_int_equal(cp_cut(&P), 2);
    sleep(1);
    queue_put_str(c, "bq", "item1");
    assert_int_equal(qsize(c, "bq"), 0); /* handed to the getter, whose channel is gone */
    mpb_event_t *e;
    th_assert_ok(mpb_event_open(c, "cev", &e), c);
    th_assert_ok(mpb_event_set(e), c);
    assert_int_equal(th_describe_int(c, "event/cev", "waiters"), 0); /* answered, unheard */
    mpb_event_close(&e);
    sleep(2);
    assert_int_equal(cp_resume(&P), 0);
    assert_int_equal(th_wait(kid, 30), 0);
    assert_int_equal(th_wait(ekid, 30), 0);
    mpb_list_t *l;
    th_assert_ok(mpb_list_open(c, "bq-got", &l), c);
    uint64_t len = 0;
    th_assert_ok(mpb_list_len(l, &len), c);
    assert_int_equal(len, 1);
    void *v;
    size_t vn, sl;
    th_assert_ok(mpb_list_get(l, 0, &v, &vn), c);
    const uint8_t *want = th_str("item1", &sl);
    th_assert_bytes(v, vn, want, sl);
    mpb_free(v);
    mpb_list_close(&l);
    /* no second getter was left behind, and the lock was released by its holder */
    queue_put_str(c, "bq", "item2");
    assert_int_equal(qsize(c, "bq"), 1);
    assert_int_equal(th_describe_int(c, "lock/cl", "locked"), 0);
    mpb_close(&c);
}

/* ---- sessions that did not survive ---- */

static int got_code;
static void on_get(mpb_client_t *c, int status, const void *v, size_t n, void *arg) {
    (void)c, (void)v, (void)n, (void)arg;
    got_code = status;
}

/* A broker whose sessions outlive a silence of 2 s only, and a proxy q in front of it. */
static void start_short_ttl(th_broker_t *s, cutproxy_t *q) {
    th_broker_start(s, "--session-ttl-ms", "2000", "--heartbeat-ms", "200", NULL);
    int port = atoi(strrchr(s->endpoint, ':') + 1);
    assert_int_equal(cp_start(q, port), 0);
}

/* Cut off for longer than its TTL, a client is told on its next call: MPB_ESESSION, naming
 * the lock it held and the call it had parked; it is in a new session from then on. */
static void test_a_cut_longer_than_the_ttl_is_told_esession_with_what_was_lost(void **state) {
    (void)state;
    static th_broker_t S;
    static cutproxy_t Q;
    start_short_ttl(&S, &Q);
    size_t kl;
    const char *k = th_authkey(&S, &kl);
    mpb_client_t *c, *other;
    th_assert_ok(mpb_connect(Q.endpoint, k, kl, NULL, &c), c);
    th_assert_ok(mpb_connect(S.endpoint, k, kl, NULL, &other), other);
    uint64_t old = mpb_session_id(c), fence;
    mpb_lock_t *lk;
    mpb_queue_t *q;
    th_assert_ok(mpb_lock_open(c, "el", &lk), c);
    th_assert_ok(mpb_lock_acquire(lk, 0, &fence), c);
    th_assert_ok(mpb_queue_open(c, "eq", -1, -1, &q), c);
    got_code = 1;
    th_assert_ok(mpb_queue_get_async(q, MPB_FOREVER, on_get, NULL), c);
    th_assert_ok(mpb_flush(c), c);
    assert_true(th_wait_field(other, "queue/eq", "getters", 1, 5000));
    assert_int_equal(cp_cut(&Q), 1);
    /* the broker ends the silent session: its lock passes on */
    assert_true(th_wait_field(other, "lock/el", "locked", 0, 5000));
    assert_int_equal(th_describe_int(other, "queue/eq", "getters"), 0);
    assert_int_equal(cp_resume(&Q), 0);
    int rc = mpb_lock_release(lk);
    /* in flight: the parked get, and this release */
    th_assert_err(rc, MPB_ESESSION, c, "lock/el", "2 calls in flight");
    char want[64];
    snprintf(want, sizeof want, "session %llu ended", (unsigned long long)old);
    assert_non_null(strstr(mpb_errmsg(c), want));
    assert_int_equal(got_code, MPB_ESESSION); /* the parked get heard it too */
    assert_true(mpb_session_id(c) != old);
    assert_int_equal(mpb_reconnects(c), 1);
    /* from then on, the new session works */
    th_assert_ok(mpb_lock_acquire(lk, 0, &fence), c);
    th_assert_ok(mpb_lock_release(lk), c);
    th_assert_dict_roundtrip(c, "after-esession", 7);
    mpb_lock_close(&lk);
    mpb_queue_close(&q);
    mpb_close(&c);
    mpb_close(&other);
    cp_stop(&Q);
    th_broker_stop_checked(&S);
}

/* A copy of B's key file at path (a key that outlives B's directory, or sits in it). */
static void copy_key(const char *path) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp %s %s", B.keyfile, path);
    assert_int_equal(system(cmd), 0);
}

/* A broker that restarts without its state (another data dir) does not know the session:
 * the client is told so on its next call, with what it lost, and carries on. */
static void test_a_restart_without_state_is_told_esession(void **state) {
    (void)state;
    char key[300];
    snprintf(key, sizeof key, "/tmp/mpbtest-restart-%d.key", (int)getpid());
    copy_key(key);
    mpb_client_t *c = direct();
    uint64_t old = mpb_session_id(c), fence;
    mpb_lock_t *lk;
    th_assert_ok(mpb_lock_open(c, "rl", &lk), c);
    th_assert_ok(mpb_lock_acquire(lk, 0, &fence), c);
    static th_broker_t R;
    th_broker_stop(&B); /* its dir (and key) go: R has the copy in a dir of its own */
    start_broker(&R, "--authkey-file", key, NULL, NULL);
    unlink(key);
    int rc = mpb_lock_release(lk);
    th_assert_err(rc, MPB_ESESSION, c, "lock/rl", "restarted");
    char want[64];
    snprintf(want, sizeof want, "session %llu ended", (unsigned long long)old);
    assert_non_null(strstr(mpb_errmsg(c), want));
    th_assert_ok(mpb_lock_acquire(lk, 0, &fence), c);
    th_assert_dict_roundtrip(c, "after-restart", 9);
    mpb_lock_close(&lk);
    mpb_close(&c);
    th_broker_stop(&R);
}

/* ---- mpb lock -- CMD through a cut ---- */

/* Starts `mpb lock lock/NAME -- sh -c 'sleep 4; touch DONE'` at endpoint with keyfile, its
 * stderr into errfile. */
static pid_t mpb_lock_cmd(const char *endpoint, const char *keyfile, const char *name,
                          const char *done, const char *errfile) {
    char path[300], script[400];
    snprintf(path, sizeof path, "lock/%s", name);
    snprintf(script, sizeof script, "sleep 4; touch %s; exit 5", done);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("MPB_ENDPOINT", endpoint, 1);
        setenv("MPB_AUTHKEY_FILE", keyfile, 1);
        unsetenv("MPB_AUTHKEY");
        if (!freopen(errfile, "w", stderr)) _exit(126);
        execl(th_mpb_cli, th_mpb_cli, "lock", path, "--", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void slurp(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = 0;
    fclose(f);
}

/* A 3 s cut while COMMAND runs: the heartbeat thread reconnects and resumes, the lock stays
 * held, and mpb lock exits with COMMAND's status. Cut off for longer than the TTL, the lock
 * is lost: mpb lock says so and exits 76, whatever COMMAND's status. */
static void test_mpb_lock_keeps_its_lock_through_a_cut_and_exits_76_when_lost(void **state) {
    (void)state;
    char done[300], errf[300], msg[2048];
    snprintf(done, sizeof done, "%s/lock-done", B.dir);
    snprintf(errf, sizeof errf, "%s/lock-err", B.dir);
    mpb_client_t *c = direct();
    pid_t m = mpb_lock_cmd(P.endpoint, B.keyfile, "ml", done, errf);
    assert_true(th_wait_field(c, "lock/ml", "locked", 1, 10000));
    assert_int_equal(cp_cut(&P), 1);
    sleep(3);
    assert_int_equal(cp_resume(&P), 0);
    assert_int_equal(th_wait(m, 30), 5); /* COMMAND's own status */
    assert_int_equal(access(done, F_OK), 0);
    assert_int_equal(th_describe_int(c, "lock/ml", "locked"), 0);
    mpb_close(&c);

    static th_broker_t S;
    static cutproxy_t Q;
    start_short_ttl(&S, &Q);
    size_t kl;
    const char *k = th_authkey(&S, &kl);
    th_assert_ok(mpb_connect(S.endpoint, k, kl, NULL, &c), c);
    unlink(done);
    m = mpb_lock_cmd(Q.endpoint, S.keyfile, "ml", done, errf);
    assert_true(th_wait_field(c, "lock/ml", "locked", 1, 10000));
    assert_int_equal(cp_cut(&Q), 1);
    assert_true(th_wait_field(c, "lock/ml", "locked", 0, 5000)); /* expired: released */
    uint64_t fence;
    mpb_lock_t *lk;
    th_assert_ok(mpb_lock_open(c, "ml", &lk), c);
    th_assert_ok(mpb_lock_acquire(lk, 0, &fence), c); /* someone else has it now */
    assert_int_equal(cp_resume(&Q), 0);
    assert_int_equal(th_wait(m, 30), 76);
    assert_int_equal(access(done, F_OK), 0); /* COMMAND did finish */
    slurp(errf, msg, sizeof msg);
    if (!strstr(msg, "lock/ml was lost before sh finished") || !strstr(msg, "lock lock/ml"))
        fail_msg("stderr: %s", msg);
    th_assert_ok(mpb_lock_release(lk), c);
    mpb_lock_close(&lk);
    mpb_close(&c);
    cp_stop(&Q);
    th_broker_stop_checked(&S);
}

/* ---- a worker through a cut ---- */

static void test_a_worker_keeps_serving_its_pool_across_a_3s_cut(void **state) {
    (void)state;
    char key[300];
    snprintf(key, sizeof key, "%s/worker.key", B.dir);
    copy_key(key);
    const char *argv[] = {MPB_WORKER_PATH, "--lib", MPB_DEMO_LIB, "--fn", "square", "-e",
                          P.endpoint,      "-k",    key,          NULL};
    fflush(stdout);
    fflush(stderr);
    pid_t w = fork();
    assert_true(w >= 0);
    if (w == 0) {
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    mpb_client_t *c = direct();
    mpb_pool_t *p;
    th_assert_ok(mpb_pool_open(c, &p), c);
    /* [0, 1, ..., 99] and then [100, ..., 199] */
    uint8_t items[2][400];
    size_t il[2];
    for (int h = 0; h < 2; h++) {
        size_t n = 0;
        items[h][n++] = 0xdc;
        items[h][n++] = 0;
        items[h][n++] = 100;
        for (int i = 0; i < 100; i++)
            n += mpb_pack_i64(items[h] + n, h * 100 + i);
        il[h] = n;
    }
    void *res;
    size_t rl;
    th_assert_ok(mpb_pool_map(p, "square", items[0], il[0], 1, 30000, &res, &rl), c);
    mpb_free(res);
    mpb_async_t *a;
    assert_int_equal(cp_cut(&P), 1);
    th_assert_ok(mpb_pool_map_async(p, "square", items[1], il[1], 1, NULL, NULL, NULL, &a), c);
    sleep(3);
    assert_int_equal(cp_resume(&P), 0);
    th_assert_ok(mpb_async_get(a, 30000, &res, &rl), c);
    mpb__rd_t r = {res, (uint8_t *)res + rl};
    uint32_t n;
    assert_int_equal(mpb__rd_array(&r, &n), 0);
    assert_int_equal(n, 100);
    for (int i = 0; i < 100; i++) {
        int64_t x;
        assert_int_equal(mpb__rd_int(&r, &x), 0);
        assert_int_equal(x, (int64_t)(100 + i) * (100 + i));
    }
    mpb_free(res);
    mpb_async_free(&a);
    mpb_pool_close(&p);
    mpb_close(&c);
    kill(w, SIGTERM);
    assert_int_equal(th_wait(w, 20), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_resent_request_is_answered_from_the_cache_not_run_again, setup, teardown),
        cmocka_unit_test(test_a_reply_that_left_the_cache_is_refused_not_rerun),
        cmocka_unit_test_setup_teardown(test_writers_mid_stream_ride_through_a_3s_cut_exactly_once,
                                        setup, teardown),
        cmocka_unit_test(test_a_writer_mid_stream_rides_through_a_broker_crash_and_restart),
        cmocka_unit_test_setup_teardown(test_a_blocked_get_and_a_held_lock_survive_a_3s_cut, setup,
                                        teardown),
        cmocka_unit_test(test_a_cut_longer_than_the_ttl_is_told_esession_with_what_was_lost),
        cmocka_unit_test_setup_teardown(test_a_restart_without_state_is_told_esession, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_worker_keeps_serving_its_pool_across_a_3s_cut, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_mpb_lock_keeps_its_lock_through_a_cut_and_exits_76_when_lost, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
