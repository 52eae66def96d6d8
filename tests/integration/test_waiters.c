/* test_waiters.c - many clients parked in the broker at once. 2,000 getters on one queue (20
 * processes x 100 threads, each thread a client of its own) each receive exactly one of 2,000
 * items; blocked getters are served in arrival order; and waiters with deadlines expire on
 * time among others that wait forever, which then still get their items. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th_child.h"

static th_broker_t B;

#define SLACK_MS 300

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---- getter threads, each with a client of its own, reporting through a pipe ---- */

enum { REP_ITEM = 1, REP_TIMEDOUT = 2, REP_ERROR = 3 };

/* What a getter reports: 8 bytes, so each write() to the pipe is atomic. */
typedef struct report {
    int32_t kind;
    int32_t val; /* the item; for a timed-out get 8 x the ms it took + its n % 5; for an
                    error the source line */
} report_t;

typedef struct getters_cfg {
    int threads; /* per process */
    const char *queue;
    const char *go;  /* an event to wait for before the get, or NULL */
    bool some_timed; /* odd-numbered threads get with a timeout (timed_ms()) */
    int fd;          /* the pipe's write end */
} getters_cfg_t;

typedef struct getter {
    const getters_cfg_t *cfg;
    int n; /* process index * threads + thread index */
    const char *key;
    size_t keylen;
} getter_t;

static int timed_ms(int n) {
    return 300 + (n % 5) * 50;
}

static void report(int fd, int32_t kind, int32_t val) {
    report_t r = {kind, val};
    ssize_t w;
    do
        w = write(fd, &r, sizeof r);
    while (w < 0 && errno == EINTR);
}

static void *getter_main(void *arg) {
    getter_t *g = arg;
    const getters_cfg_t *cfg = g->cfg;
    mpb_options_t o;
    mpb_options_init(&o);
    o.no_heartbeat_thread = 1; /* a parked call heartbeats by itself; saves 2,000 threads */
    o.connect_timeout_ms = 60000;
    o.op_timeout_ms = 60000;
    mpb_client_t *c = NULL;
    mpb_queue_t *q = NULL;
    mpb_event_t *e = NULL;
    int line = 0;
    if (mpb_connect(B.endpoint, g->key, g->keylen, &o, &c)) line = __LINE__;
    if (!line && mpb_queue_open(c, cfg->queue, -1, -1, &q)) line = __LINE__;
    if (!line && cfg->go && mpb_event_open(c, cfg->go, &e)) line = __LINE__;
    if (!line && cfg->go && mpb_event_wait(e, 60000) != 1) line = __LINE__;
    if (!line) {
        int timeout = cfg->some_timed && g->n % 2 ? timed_ms(g->n) : MPB_FOREVER;
        void *v;
        size_t vl;
        int64_t item, t0 = th_now_ms();
        int rc = mpb_queue_get(q, &v, &vl, timeout);
        int64_t dt = th_now_ms() - t0;
        if (rc == MPB_ETIMEDOUT && timeout != MPB_FOREVER) {
            report(cfg->fd, REP_TIMEDOUT, (int32_t)(dt * 8 + g->n % 5)); /* see timed_ms() */
        } else if (rc) {
            line = __LINE__;
        } else {
            if (mpb_unpack_i64(v, vl, &item))
                line = __LINE__;
            else
                report(cfg->fd, REP_ITEM, (int32_t)item);
            mpb_free(v);
        }
    }
    if (line) {
        fprintf(stderr, "[pid %d] getter %d failed at line %d: %s\n", (int)getpid(), g->n, line,
                c ? mpb_errmsg(c) : "out of memory");
        report(cfg->fd, REP_ERROR, line);
    }
    mpb_event_close(&e);
    mpb_queue_close(&q);
    mpb_close(&c);
    return NULL;
}

/* arg: "FD THREADS QUEUE GO|- TIMED", the fields of getters_cfg_t. */
static int getters_child(int idx, const char *arg) {
    static getters_cfg_t conf;
    static char queue[64], go[64];
    int timed = 0;
    CK(arg && sscanf(arg, "%d %d %63s %63s %d", &conf.fd, &conf.threads, queue, go, &timed) == 5);
    conf.queue = queue;
    conf.go = strcmp(go, "-") ? go : NULL;
    conf.some_timed = timed != 0;
    const getters_cfg_t *cfg = &conf;
    alarm(240); /* whatever happens, this process does not outlive the test */
    raise_nofile();
    size_t kl;
    static char key[512];
    const char *k = th_authkey(&B, &kl);
    CK(kl < sizeof key);
    memcpy(key, k, kl);
    getter_t *g = calloc((size_t)cfg->threads, sizeof *g);
    pthread_t *t = calloc((size_t)cfg->threads, sizeof *t);
    CK(g && t);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1u << 20);
    int started = 0;
    for (int i = 0; i < cfg->threads; i++) {
        g[i] = (getter_t){cfg, idx * cfg->threads + i, key, kl};
        if (pthread_create(&t[i], &attr, getter_main, &g[i]) != 0) {
            report(cfg->fd, REP_ERROR, __LINE__);
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    pthread_attr_destroy(&attr);
    free(g);
    free(t);
    return started == cfg->threads ? 0 : 1;
}

static void kill_all(pid_t *pids, int n) {
    for (int i = 0; i < n; i++)
        if (pids[i] > 0) kill(pids[i], SIGKILL);
    for (int i = 0; i < n; i++)
        if (pids[i] > 0) waitpid(pids[i], NULL, 0);
}

/* ---- 2,000 getters ---- */

#define MANY_PROCS   20
#define MANY_THREADS 100
#define MANY         (MANY_PROCS * MANY_THREADS)

static void test_2000_parked_getters_each_get_one_item(void **state) {
    (void)state;
    raise_nofile();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    char arg[64];
    snprintf(arg, sizeof arg, "%d %d many - 0", fds[1], MANY_THREADS);
    pid_t pids[MANY_PROCS];
    int64_t t0 = th_now_ms();
    for (int i = 0; i < MANY_PROCS; i++)
        pids[i] = th_child_spawn(getters_child, i, arg);
    close(fds[1]);
    mpb_client_t *c = th_connect(&B);
    bool parked = th_wait_field(c, "queue/many", "getters", MANY, 180000);
    int64_t t_parked = th_now_ms();
    int64_t getters = th_describe_int(c, "queue/many", "getters");
    int64_t all_waiters = th_info_int(c, "waiters");
    print_message("%lld getters parked at once (%lld waiters in the broker) after %lld ms\n",
                  (long long)getters, (long long)all_waiters, (long long)(t_parked - t0));
    if (!parked) kill_all(pids, MANY_PROCS);
    assert_true(parked);
    assert_int_equal(all_waiters, MANY);

    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "many", -1, -1, &q), 0);
    for (int i = 0; i < MANY; i++) {
        uint8_t b[MPB_PACK_MAX_SCALAR];
        assert_int_equal(mpb_queue_put(q, b, mpb_pack_i64(b, 10000 + i), 0), 0);
    }
    static report_t reps[MANY];
    int n = th_read_records(fds[0], reps, sizeof *reps, MANY, 120000);
    int64_t t_done = th_now_ms();
    print_message("%d items put and received by %d getters in %lld ms\n", MANY, n,
                  (long long)(t_done - t_parked));
    int failed = 0;
    for (int i = 0; i < MANY_PROCS; i++) {
        if (th_wait(pids[i], 120) != 0) failed++;
        pids[i] = 0;
    }
    close(fds[0]);
    assert_int_equal(n, MANY);
    static char seen[MANY];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < n; i++) {
        assert_int_equal(reps[i].kind, REP_ITEM);
        int v = reps[i].val - 10000;
        assert_true(v >= 0 && v < MANY);
        assert_int_equal(seen[v], 0); /* exactly once */
        seen[v] = 1;
    }
    assert_int_equal(failed, 0);
    uint64_t left;
    assert_int_equal(mpb_queue_qsize(q, &left), 0);
    assert_int_equal(left, 0);
    assert_int_equal(th_describe_int(c, "queue/many", "getters"), 0);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* ---- first come, first served ---- */

#define FIFO_N 5

/* Starts FIFO_N children running fn, each once the one before is parked (field of path reads
 * its count), so that they queue in the order of idx; pause_ms more between them. */
static void spawn_in_line(mpb_client_t *c, th_client_fn fn, const char *path, const char *field,
                          pid_t *pids, int pause_ms) {
    for (int i = 0; i < FIFO_N; i++) {
        pids[i] = th_client_spawn(fn, i, NULL);
        bool ok = th_wait_field(c, path, field, i + 1, 20000);
        if (!ok) kill_all(pids, i + 1);
        assert_true(ok);
        usleep((useconds_t)pause_ms * 1000);
    }
}

static int fifo_getter(mpb_client_t *c, int idx, TH_UNUSED const char *arg) {
    int me = idx;
    mpb_queue_t *q;
    mpb_dict_t *d;
    CKC(c, mpb_queue_open(c, "fifo", -1, -1, &q));
    CKC(c, mpb_dict_open(c, "fifo.got", &d));
    void *v;
    size_t vl;
    int64_t item;
    CKC(c, mpb_queue_get(q, &v, &vl, MPB_FOREVER));
    CK(mpb_unpack_i64(v, vl, &item) == 0);
    mpb_free(v);
    char key[16];
    snprintf(key, sizeof key, "w%d", me);
    CKC(c, mpb_dict_set_i64(d, key, item));
    mpb_dict_close(&d);
    mpb_queue_close(&q);
    return 0;
}

static void test_blocked_getters_are_served_in_arrival_order(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "fifo", 0, 0, &q), 0);
    pid_t pids[FIFO_N];
    spawn_in_line(c, fifo_getter, "queue/fifo", "getters", pids, 100);
    for (int i = 0; i < FIFO_N; i++) {
        uint8_t b[MPB_PACK_MAX_SCALAR];
        assert_int_equal(mpb_queue_put(q, b, mpb_pack_i64(b, i), 0), 0);
    }
    for (int i = 0; i < FIFO_N; i++)
        assert_int_equal(th_wait(pids[i], 30), 0);
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "fifo.got", &d), 0);
    for (int i = 0; i < FIFO_N; i++) {
        char key[16];
        int64_t v;
        snprintf(key, sizeof key, "w%d", i);
        assert_int_equal(mpb_dict_get_i64(d, key, &v), 0);
        assert_int_equal(v, i); /* the first to wait got the first item */
    }
    mpb_dict_close(&d);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* Blocked putters enter a full queue in arrival order, and blocked semaphore acquirers get
 * units in arrival order. */
static int fifo_putter(mpb_client_t *c, int idx, TH_UNUSED const char *arg) {
    mpb_queue_t *q;
    CKC(c, mpb_queue_open(c, "fifo.full", -1, -1, &q));
    uint8_t b[MPB_PACK_MAX_SCALAR];
    CKC(c, mpb_queue_put(q, b, mpb_pack_i64(b, 100 + idx), MPB_FOREVER));
    mpb_queue_close(&q);
    return 0;
}

static int fifo_sem_taker(mpb_client_t *c, int idx, TH_UNUSED const char *arg) {
    mpb_semaphore_t *s;
    mpb_list_t *order;
    CKC(c, mpb_semaphore_open(c, "fifo.sem", -1, -1, &s));
    CKC(c, mpb_list_open(c, "fifo.sem.order", &order));
    CKC(c, mpb_semaphore_acquire(s, MPB_FOREVER));
    uint8_t b[MPB_PACK_MAX_SCALAR];
    CKC(c, mpb_list_append(order, b, mpb_pack_i64(b, idx)));
    mpb_list_close(&order);
    mpb_semaphore_close(&s);
    return 0;
}

static void test_blocked_putters_and_acquirers_are_served_in_arrival_order(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    uint8_t b[MPB_PACK_MAX_SCALAR];
    assert_int_equal(mpb_queue_open(c, "fifo.full", 1, 0, &q), 0);
    assert_int_equal(mpb_queue_put(q, b, mpb_pack_i64(b, 0), 0), 0);
    pid_t pids[FIFO_N];
    spawn_in_line(c, fifo_putter, "queue/fifo.full", "putters", pids, 0);
    /* each get makes room for the oldest putter */
    for (int i = 0; i <= FIFO_N; i++) {
        int64_t x;
        assert_int_equal(mpb_queue_get_i64(q, &x, 10000), 0);
        assert_int_equal(x, i == 0 ? 0 : 100 + i - 1);
    }
    for (int i = 0; i < FIFO_N; i++)
        assert_int_equal(th_wait(pids[i], 30), 0);
    mpb_queue_close(&q);

    mpb_semaphore_t *s;
    assert_int_equal(mpb_semaphore_open(c, "fifo.sem", 0, 0, &s), 0);
    spawn_in_line(c, fifo_sem_taker, "semaphore/fifo.sem", "waiters", pids, 0);
    for (int i = 0; i < FIFO_N; i++) {
        assert_int_equal(mpb_semaphore_release(s, 1), 0);
        assert_true(th_wait_field(c, "semaphore/fifo.sem", "waiters", FIFO_N - 1 - i, 10000));
        assert_int_equal(th_wait(pids[i], 30), 0); /* the oldest got the unit */
    }
    mpb_list_t *order;
    assert_int_equal(mpb_list_open(c, "fifo.sem.order", &order), 0);
    for (int i = 0; i < FIFO_N; i++) {
        int64_t x;
        assert_int_equal(mpb_list_get_i64(order, i, &x), 0);
        assert_int_equal(x, i);
    }
    mpb_list_close(&order);
    mpb_semaphore_close(&s);
    mpb_close(&c);
}

/* ---- deadlines among waiters that wait forever ---- */

#define MIX_PROCS   10
#define MIX_THREADS 20
#define MIX         (MIX_PROCS * MIX_THREADS)

static void test_timed_getters_expire_among_forever_ones(void **state) {
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    char arg[64];
    snprintf(arg, sizeof arg, "%d %d mix mix.go 1", fds[1], MIX_THREADS);
    pid_t pids[MIX_PROCS];
    for (int i = 0; i < MIX_PROCS; i++)
        pids[i] = th_child_spawn(getters_child, i, arg);
    close(fds[1]);
    mpb_client_t *c = th_connect(&B);
    mpb_event_t *go;
    assert_int_equal(mpb_event_open(c, "mix.go", &go), 0);
    /* everyone parked on the event first, so that the gets start together */
    bool ready = th_wait_field(c, "event/mix.go", "waiters", MIX, 120000);
    if (!ready) kill_all(pids, MIX_PROCS);
    assert_true(ready);
    assert_int_equal(mpb_event_set(go), 0);
    /* the timed half leaves on its own (nothing has been put: these are all timeouts) */
    static report_t reps[MIX];
    int n = th_read_records(fds[0], reps, sizeof *reps, MIX / 2, 20000);
    /* ... and the other half stays */
    bool half = n == MIX / 2 && th_wait_field(c, "queue/mix", "getters", MIX / 2, 20000);
    if (!half) kill_all(pids, MIX_PROCS);
    assert_int_equal(n, MIX / 2);
    assert_true(half);
    usleep(100000);
    assert_int_equal(th_describe_int(c, "queue/mix", "getters"), MIX / 2);
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "mix", -1, -1, &q), 0);
    for (int i = 0; i < MIX / 2; i++) {
        uint8_t b[MPB_PACK_MAX_SCALAR];
        assert_int_equal(mpb_queue_put(q, b, mpb_pack_i64(b, i), 0), 0);
    }
    n += th_read_records(fds[0], reps + n, sizeof *reps, MIX - n, 60000);
    int failed = 0;
    for (int i = 0; i < MIX_PROCS; i++)
        if (th_wait(pids[i], 60) != 0) failed++;
    close(fds[0]);
    assert_int_equal(n, MIX);
    static char seen[MIX / 2];
    memset(seen, 0, sizeof seen);
    int items = 0, timeouts = 0, worst = 0;
    for (int i = 0; i < n; i++) {
        if (reps[i].kind == REP_ITEM) {
            assert_true(reps[i].val >= 0 && reps[i].val < MIX / 2);
            assert_int_equal(seen[reps[i].val], 0);
            seen[reps[i].val] = 1;
            items++;
        } else {
            assert_int_equal(reps[i].kind, REP_TIMEDOUT);
            int took = reps[i].val / 8, timeout = timed_ms(reps[i].val % 8);
            /* each timed out no sooner than its own timeout (300..500 ms) */
            assert_true(took >= timeout);
            if (took - timeout > worst) worst = took - timeout;
            timeouts++;
        }
    }
    print_message("%d timed getters (300..500 ms) among %d waiting forever: all timed out, "
                  "at most %d ms late\n",
                  timeouts, items, worst);
    assert_int_equal(items, MIX / 2);
    assert_int_equal(timeouts, MIX / 2);
    assert_true(worst <= 1000); /* 200 clients on 2 cores: a looser bound than alone */
    assert_int_equal(failed, 0);
    assert_int_equal(th_describe_int(c, "queue/mix", "getters"), 0);
    mpb_queue_close(&q);
    mpb_event_close(&go);
    mpb_close(&c);
}

/* ---- the broker is still well ---- */

static void test_broker_still_serves_and_exits_cleanly(void **state) {
    (void)state;
    assert_true(th_broker_alive(&B));
    mpb_client_t *c = th_connect(&B);
    assert_int_equal(th_info_int(c, "waiters"), 0);
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "final", 0, 0, &q), 0);
    uint8_t b[MPB_PACK_MAX_SCALAR];
    assert_int_equal(mpb_queue_put(q, b, mpb_pack_i64(b, 9), 0), 0);
    int64_t x;
    assert_int_equal(mpb_queue_get_i64(q, &x, 0), 0);
    assert_int_equal(x, 9);
    th_assert_dict_roundtrip(c, "final.d", 5);
    mpb_queue_close(&q);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

static const th_client_fn child_fns[] = {fifo_getter, fifo_putter, fifo_sem_taker};
static const th_child_fn bare_fns[] = {getters_child}; /* its threads connect */

int main(int argc, char **argv) {
    th_client_main(argc, argv, &B, child_fns, TH_NELEMS(child_fns), bare_fns, TH_NELEMS(bare_fns));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_2000_parked_getters_each_get_one_item),
        cmocka_unit_test(test_blocked_getters_are_served_in_arrival_order),
        cmocka_unit_test(test_blocked_putters_and_acquirers_are_served_in_arrival_order),
        cmocka_unit_test(test_timed_getters_expire_among_forever_ones),
        cmocka_unit_test(test_broker_still_serves_and_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
