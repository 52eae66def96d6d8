/* test_10k_waiters.c - ten thousand clients blocked in the broker at once (issue 3). Four
 * processes of 2,500 raw protocol clients each (rawclient.c: a DEALER and a session per
 * client, no threads) park, half on queue.get of an empty queue, half on lock.acquire of a
 * lock this test holds, until the broker counts 10,000 waiters. Then 5,000 items are put and
 * the lock is released: every client is answered exactly once, each item reaches exactly one
 * getter, and the lock passes through all 5,000 acquirers (each releases it as soon as it has
 * it) with fencing tokens that only grow. A libmpb client is served throughout and after.
 *
 * A child watches its 2,500 sockets with epoll on their ZMQ_FDs, so a hand-off costs it the
 * sockets that have news, not a poll of all of them. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "rawclient.h"
#include "th_child.h"

static th_broker_t B;

#define PROCS    4
#define PER_PROC 2500
#define ALL      (PROCS * PER_PROC)
#define HALF     (ALL / 2)
#define QUEUE    "big.q"
#define LOCK     "big.lock"
#define RID_WAIT 1 /* the parked request */
#define RID_FREE 2 /* lock.release after the grant */

/* 12,000 descriptors at least: the broker holds a connection per client, and a child two per
 * client (its TCP connection and its socket's mailbox). Root may raise the hard limit too. */
static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_max < 32768) {
        struct rlimit want = {32768, 32768};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) return;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static long nofile(void) {
    struct rlimit rl;
    return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (long)rl.rlim_cur : -1;
}

/* What a child reports per client: 16 bytes, so each write() to the pipe is atomic. */
enum { REP_ITEM = 1, REP_FENCE = 2, REP_ERROR = 3 };
typedef struct report {
    int32_t kind, child;
    int64_t val; /* the item, the fence, or for an error the source line */
} report_t;

static void report(int fd, int32_t kind, int32_t child, int64_t val) {
    report_t r = {kind, child, val};
    ssize_t w;
    do
        w = write(fd, &r, sizeof r);
    while (w < 0 && errno == EINTR);
}

static int64_t mono_ms(void) {
    return th_now_ms();
}

/* Sends [rid, op, name, args...] with argc integer arguments. */
static void send_small(rawclient_t *c, uint64_t rid, unsigned op, const char *name, int argc,
                       int64_t a1, int64_t a2) {
    mpb__buf_t b = {0};
    rc_req(&b, rid, op, name, name ? strlen(name) : 0, (uint32_t)argc);
    if (argc >= 1) mpb__w_int(&b, a1);
    if (argc >= 2) mpb__w_int(&b, a2);
    rc_send_req(c, b.p, b.len, NULL);
    mpb__buf_free(&b);
}

/* One child: arg "FD MODE" (MODE get or lock). Returns 0 when each of its clients was answered
 * exactly once, as it should be. */
static int waiters_child(int idx, const char *arg) {
    int fd;
    char mode[8];
    CK(arg && sscanf(arg, "%d %7s", &fd, mode) == 2);
    bool lock = !strcmp(mode, "lock");
    alarm(600); /* whatever happens, this process does not outlive the test */
    raise_nofile();
    size_t kl;
    const char *k = th_authkey(&B, &kl);
    char key[512];
    CK(kl < sizeof key);
    memcpy(key, k, kl);

    void *ctx = zmq_ctx_new();
    CK(ctx);
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, PER_PROC + 16);
    rawclient_t *c = calloc(PER_PROC, sizeof *c);
    char *got = calloc(PER_PROC, 1), *freed = calloc(PER_PROC, 1);
    static rc_frame_t f;
    CK(c && got && freed);
    int ep = epoll_create1(0);
    CK(ep >= 0);
    int64_t last_ping = mono_ms();
    for (int i = 0; i < PER_PROC; i++) {
        CK(rc_open(&c[i], ctx, B.endpoint) == 0);
        int rc = rc_handshake(&c[i], key, kl, 60000);
        if (rc) {
            fprintf(stderr, "[child %d] handshake %d: %s\n", idx, i, mpb_strerror(rc));
            return 1;
        }
        if (lock)
            send_small(&c[i], RID_WAIT, MPB_OP_LOCK_ACQUIRE, LOCK, 2, 1, -1);
        else
            send_small(&c[i], RID_WAIT, MPB_OP_QUEUE_GET, QUEUE, 1, -1, 0);
        /* heartbeats would not be needed with the test's TTL; they keep it honest */
        if (mono_ms() - last_ping > 2000) {
            for (int j = 0; j <= i; j++)
                send_small(&c[j], 0, MPB_OP_PING, NULL, 0, 0, 0);
            last_ping = mono_ms();
        }
        int zfd;
        size_t zl = sizeof zfd;
        CK(zmq_getsockopt(c[i].sock, ZMQ_FD, &zfd, &zl) == 0);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u32 = (uint32_t)i};
        CK(epoll_ctl(ep, EPOLL_CTL_ADD, zfd, &ev) == 0);
    }

    /* Each client: one answer to its wait and, for a lock, one to its release. */
    int want = lock ? 2 * PER_PROC : PER_PROC, have = 0, bad = 0;
    int64_t end = mono_ms() + 480000, last_sweep = 0;
    uint64_t last_fence = 0;
    struct epoll_event evs[256];
    while (have < want && !bad && mono_ms() < end) {
        int n = epoll_wait(ep, evs, 256, 200);
        if (n < 0 && errno != EINTR) break;
        /* ZMQ_FD is edge-triggered and a send can swallow an edge: look at every socket now
         * and then, besides those epoll names. */
        bool sweep = mono_ms() - last_sweep > 1000;
        int m = sweep ? PER_PROC : (n > 0 ? n : 0);
        if (sweep) last_sweep = mono_ms();
        for (int e = 0; e < m; e++) {
            int i = sweep ? e : (int)evs[e].data.u32;
            for (;;) {
                int zev = 0;
                size_t zl = sizeof zev;
                if (zmq_getsockopt(c[i].sock, ZMQ_EVENTS, &zev, &zl) || !(zev & ZMQ_POLLIN)) break;
                if (rc_recv(&c[i], &f, 0)) break;
                if (f.type != MPB__T_REP || !f.mac_ok) {
                    fprintf(stderr, "[child %d] client %d: frame type %d %s\n", idx, i, f.type,
                            f.msg);
                    bad++;
                    break;
                }
                for (size_t r = 0; r < f.nrep; r++) {
                    rc_reply_t *rp = &f.rep[r];
                    if (rp->code) {
                        fprintf(stderr, "[child %d] client %d rid %llu: %s\n", idx, i,
                                (unsigned long long)rp->rid, rp->msg);
                        bad++;
                        continue;
                    }
                    mpb__rd_t rd = {rp->val, rp->val + rp->vallen};
                    if (rp->rid == RID_WAIT && !got[i]) {
                        got[i] = 1;
                        have++;
                        if (lock) {
                            uint64_t fence = 0;
                            if (mpb__rd_uint(&rd, &fence) || fence <= last_fence) bad++;
                            last_fence = fence;
                            report(fd, REP_FENCE, idx, (int64_t)fence);
                            send_small(&c[i], RID_FREE, MPB_OP_LOCK_RELEASE, LOCK, 1, 1, 0);
                        } else {
                            int64_t item = -1;
                            if (mpb__rd_int(&rd, &item)) bad++;
                            report(fd, REP_ITEM, idx, item);
                        }
                    } else if (rp->rid == RID_FREE && lock && got[i] && !freed[i]) {
                        freed[i] = 1;
                        have++;
                    } else {
                        fprintf(stderr, "[child %d] client %d: unexpected reply rid %llu\n", idx, i,
                                (unsigned long long)rp->rid);
                        bad++;
                    }
                }
            }
        }
        if (mono_ms() - last_ping > 2000) {
            for (int j = 0; j < PER_PROC; j++)
                send_small(&c[j], 0, MPB_OP_PING, NULL, 0, 0, 0);
            last_ping = mono_ms();
        }
    }
    if (have < want) fprintf(stderr, "[child %d] %d of %d answers\n", idx, have, want);
    for (int i = 0; i < PER_PROC; i++)
        rc_close(&c[i]);
    zmq_ctx_term(ctx);
    close(ep);
    free(c);
    free(got);
    free(freed);
    return have == want && !bad ? 0 : 1;
}

/* ---- the test ---- */

/* Whether one of the children has exited (they exit only when done, or on failure). */
static bool any_exited(const pid_t *pids, int n) {
    for (int i = 0; i < n; i++)
        if (kill(pids[i], 0) != 0 || waitpid(pids[i], NULL, WNOHANG) == pids[i]) return true;
    return false;
}

static void on_put(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    (void)c, (void)val, (void)len;
    if (status == 0) ++*(int *)arg;
}

static void test_10000_blocked_clients_on_queues_and_locks(void **state) {
    (void)state;
    if (nofile() < 12000) fail_msg("RLIMIT_NOFILE is %ld: 10,000 clients need 12,000", nofile());
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    mpb_lock_t *l;
    assert_int_equal(mpb_queue_open(c, QUEUE, 0, 0, &q), 0);
    assert_int_equal(mpb_lock_open(c, LOCK, &l), 0);
    uint64_t f0 = 0;
    assert_int_equal(mpb_lock_acquire(l, 0, &f0), 0);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pids[PROCS];
    char arg[2][32];
    snprintf(arg[0], sizeof arg[0], "%d get", fds[1]);
    snprintf(arg[1], sizeof arg[1], "%d lock", fds[1]);
    int64_t t0 = th_now_ms();
    for (int i = 0; i < PROCS; i++)
        pids[i] = th_child_spawn(waiters_child, i, arg[i % 2]);
    close(fds[1]);

    /* All parked at once; the test's own client is served meanwhile. */
    int64_t w = 0, end = th_now_ms() + 300000;
    int probes = 0;
    while ((w = th_info_int(c, "waiters")) != ALL && th_now_ms() < end &&
           !any_exited(pids, PROCS)) {
        uint64_t n;
        assert_int_equal(mpb_queue_qsize(q, &n), 0);
        assert_int_equal(n, 0);
        probes++;
        usleep(100000);
    }
    int64_t t_parked = th_now_ms();
    if (w != ALL)
        for (int i = 0; i < PROCS; i++)
            kill(pids[i], SIGKILL);
    print_message("%lld clients parked at once after %lld ms (%d probes answered meanwhile)\n",
                  (long long)w, (long long)(t_parked - t0), probes);
    assert_int_equal(w, ALL);
    assert_int_equal(th_describe_int(c, "queue/" QUEUE, "getters"), HALF);
    assert_int_equal(th_describe_int(c, "lock/" LOCK, "waiters"), HALF);

    /* 5,000 items, pipelined, and the lock let go. */
    int put = 0;
    for (int i = 0; i < HALF; i++) {
        uint8_t b[MPB_PACK_MAX_SCALAR];
        assert_int_equal(mpb_queue_put_async(q, b, mpb_pack_i64(b, i), 0, on_put, &put), 0);
        if (i % 500 == 499) assert_int_equal(mpb_drain(c, 60000), 0);
    }
    assert_int_equal(mpb_drain(c, 60000), 0);
    assert_int_equal(put, HALF);
    assert_int_equal(mpb_lock_release(l), 0);

    static report_t reps[ALL];
    int n = th_read_records(fds[0], reps, sizeof *reps, ALL, 300000);
    int64_t t_done = th_now_ms();
    print_message("%d answers (%d items, %d lock hand-offs) in %lld ms\n", n, HALF, HALF,
                  (long long)(t_done - t_parked));
    int failed = 0;
    for (int i = 0; i < PROCS; i++)
        if (th_wait(pids[i], 120) != 0) failed++;
    close(fds[0]);
    assert_int_equal(failed, 0);
    assert_int_equal(n, ALL);

    static char seen[HALF];
    memset(seen, 0, sizeof seen);
    int items = 0, fences = 0;
    uint64_t top = f0;
    for (int i = 0; i < n; i++) {
        if (reps[i].kind == REP_ITEM) {
            assert_true(reps[i].val >= 0 && reps[i].val < HALF);
            assert_int_equal(seen[reps[i].val], 0); /* exactly once */
            seen[reps[i].val] = 1;
            items++;
        } else {
            assert_int_equal(reps[i].kind, REP_FENCE);
            /* reports from one pipe come in grant order: tokens only grow */
            assert_true((uint64_t)reps[i].val > top);
            top = (uint64_t)reps[i].val;
            fences++;
        }
    }
    assert_int_equal(items, HALF);
    assert_int_equal(fences, HALF);

    /* Nothing is left parked; the lock is free and the next holder gets a larger token. */
    assert_true(th_wait_field(c, "queue/" QUEUE, "getters", 0, 10000));
    int64_t left = th_info_int(c, "waiters");
    assert_int_equal(left, 0);
    assert_int_equal(mpb_lock_locked(l), 0);
    uint64_t f1 = 0;
    assert_int_equal(mpb_lock_acquire(l, 1000, &f1), 0);
    assert_true(f1 > top);
    assert_int_equal(mpb_lock_release(l), 0);
    uint64_t qn;
    assert_int_equal(mpb_queue_qsize(q, &qn), 0);
    assert_int_equal(qn, 0);
    mpb_lock_close(&l);
    mpb_queue_close(&q);
    mpb_close(&c);
}

static void test_broker_still_serves_and_exits_cleanly(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    th_assert_dict_roundtrip(c, "after", 10000);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

static int setup(void **state) {
    (void)state;
    /* A TTL longer than the run: the children heartbeat, but 10,000 handshakes under a
     * sanitizer can take longer than the default 5 s between a child's first and last. */
    /* The children connect all at once, from one address: room and time for that burst of
     * handshakes (the defaults admit 126 unauthenticated peers at a time, 1,024 from one
     * address, which is what they are for; this test is about parking 10,000 calls). */
    th_broker_start(&B, "--session-ttl-ms", "120000", "--heartbeat-ms", "2000",
                    "--max-unauth-memory", "64g", "--max-handshakes-per-addr", "20000",
                    "--handshake-ms", "120000", "--idle-ms", "120000", NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    th_broker_stop(&B);
    return 0;
}

static const th_child_fn child_fns[] = {waiters_child};

int main(int argc, char **argv) {
    raise_nofile(); /* before the broker starts: it inherits the limit */
    th_child_main(argc, argv, &B, child_fns, TH_NELEMS(child_fns));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_10000_blocked_clients_on_queues_and_locks),
        cmocka_unit_test(test_broker_still_serves_and_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
