/* test_pool_worker.c - the worker side of the remote Pool: workers written with the worker API
 * (forked children of the test) and the ready mpb-worker program. The initializer runs once
 * per worker process, before the first task; max_tasks recycling (mpb-worker --max-tasks, and
 * mpb_worker_set_max_tasks in a program of one's own) serves everything; mpb_worker_stop from
 * another thread or a signal handler ends serve with 0 after the running task is reported;
 * a serve that returns unregisters (the session, still alive, serves no more) and the client
 * may serve again; mpb-worker --init-arg reaches the initializer, whose failure stops it. */
#include <poll.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mpbproto.h"
#include "th_pool.h"

/* ---- an in-process worker: functions and the child that serves them ---- */

static int g_inits;
static const int g_init_arg = 7;
static mpb_worker_t *g_w;

static int ip_init(void *arg) {
    if (arg == &g_init_arg) __atomic_fetch_add(&g_inits, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static int reply_int(int64_t v, void **result, size_t *rlen) {
    uint8_t *b = malloc(MPB_PACK_MAX_SCALAR);
    if (!b) return -1;
    *rlen = mpb_pack_i64(b, v);
    *result = b;
    return 0;
}

static int arg_int(const void *args, size_t alen, int64_t *v, char *err, size_t errlen) {
    const uint8_t *p = args;
    if (alen < 2 || p[0] != 0x91 || mpb_unpack_i64(p + 1, alen - 1, v)) {
        snprintf(err, errlen, "expected [int]");
        return -1;
    }
    return 0;
}

/* ip_square(n) -> n * n */
static int ip_square(void *ctx, const void *args, size_t alen, void **result, size_t *rlen,
                     char *err, size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg_int(args, alen, &n, err, errlen)) return -1;
    return reply_int(n * n, result, rlen);
}

/* ip_inits(_) -> how many times the initializer has run in this process */
static int ip_inits(void *ctx, const void *args, size_t alen, void **result, size_t *rlen,
                    char *err, size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg_int(args, alen, &n, err, errlen)) return -1;
    return reply_int(__atomic_load_n(&g_inits, __ATOMIC_SEQ_CST), result, rlen);
}

/* ip_sleep(ms) -> ms, after sleeping */
static int ip_sleep(void *ctx, const void *args, size_t alen, void **result, size_t *rlen,
                    char *err, size_t errlen) {
    (void)ctx;
    int64_t ms;
    if (arg_int(args, alen, &ms, err, errlen)) return -1;
    tp_sleep_ms((int)ms);
    return reply_int(ms, result, rlen);
}

typedef struct wcfg {
    int conc, prefetch;
    uint64_t max_tasks;
    uint64_t stop_after; /* > 0: a thread stops the worker once it has done this many */
    bool on_sigusr1;     /* SIGUSR1 stops the worker */
} wcfg_t;

static void on_usr1(int sig) {
    (void)sig;
    if (g_w) mpb_worker_stop(g_w);
}

static void *stopper(void *arg) {
    const wcfg_t *cfg = arg;
    while (mpb_worker_tasks_done(g_w) < cfg->stop_after)
        tp_sleep_ms(5);
    mpb_worker_stop(g_w);
    return NULL;
}

/* Exit status: 0 when serve returned 0, the initializer ran exactly once and max_tasks (if
 * set) were done; else a code saying what went wrong. */
static int worker_child(void *arg) {
    const wcfg_t *cfg = arg;
    mpb_client_t *c = NULL;
    if (th_connect_opts(&tp_broker, NULL, &c)) {
        fprintf(stderr, "connect: %s\n", mpb_errmsg(c));
        return 10;
    }
    mpb_worker_t *w = NULL;
    if (mpb_worker_open(c, &w)) return 11;
    if (mpb_worker_add(w, "ip_square", ip_square, NULL) ||
        mpb_worker_add(w, "ip_inits", ip_inits, NULL) ||
        mpb_worker_add(w, "ip_sleep", ip_sleep, NULL))
        return 12;
    mpb_worker_set_concurrency(w, cfg->conc);
    mpb_worker_set_prefetch(w, cfg->prefetch);
    if (cfg->max_tasks) mpb_worker_set_max_tasks(w, cfg->max_tasks);
    mpb_worker_set_initializer(w, ip_init, (void *)&g_init_arg);
    g_w = w;
    if (cfg->on_sigusr1) {
        struct sigaction sa = {0};
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, NULL);
    }
    pthread_t th;
    if (cfg->stop_after && pthread_create(&th, NULL, stopper, (void *)cfg)) return 13;
    int rc = mpb_worker_serve(w);
    if (cfg->stop_after) pthread_join(th, NULL);
    uint64_t done = mpb_worker_tasks_done(w);
    if (rc) {
        fprintf(stderr, "serve: %s\n", mpb_errmsg(c));
        return 20;
    }
    if (g_inits != 1) return 21;
    if (cfg->max_tasks && done != cfg->max_tasks) return 22;
    if (cfg->stop_after && done < cfg->stop_after) return 23;
    g_w = NULL;
    mpb_worker_close(&w);
    mpb_close(&c);
    return 0;
}

/* fn over 0..n-1 (chunksize 1): the call succeeds, and *res holds an array of n results; a
 * reader on its first. */
static mpb__rd_t map_range(mpb_pool_t *p, const char *fn, uint32_t n, int timeout_ms, void **res) {
    mpb__buf_t items = {0};
    tp_items_range(&items, n);
    size_t rl;
    assert_int_equal(mpb_pool_map(p, fn, items.p, items.len, 1, timeout_ms, res, &rl), 0);
    mpb__buf_free(&items);
    return th_rd_array(*res, rl, n);
}

/* ip_square of base + i for each of the n tasks h[i], submitted asynchronously. */
static void squares_async(mpb_pool_t *p, mpb_async_t **h, int n, int base) {
    for (int i = 0; i < n; i++) {
        size_t al;
        const uint8_t *a = tp_args1(base + i, &al);
        assert_int_equal(mpb_pool_apply_async(p, "ip_square", a, al, NULL, NULL, NULL, &h[i]), 0);
    }
}

/* Each of squares_async's n tasks gives its square (waiting up to 20 s); frees them. */
static void expect_squares(mpb_client_t *c, mpb_async_t **h, int n, int base) {
    for (int i = 0; i < n; i++) {
        void *res = NULL;
        size_t rl;
        int rc = mpb_async_get(h[i], 20000, &res, &rl);
        if (rc) fail_msg("task %d: %s", i, mpb_errmsg(c));
        assert_int_equal(tp_unpack_int(res, rl), (base + i) * (base + i));
        mpb_free(res);
        mpb_async_free(&h[i]);
    }
}

/* ---- tests ---- */

static void test_initializer_runs_once_per_worker_process(void **state) {
    (void)state;
    wcfg_t cfg = {.conc = 4, .prefetch = 2, .on_sigusr1 = true};
    pid_t w1 = tp_start_child(worker_child, &cfg, NULL); /* before this process has threads */
    pid_t w2 = tp_start_child(worker_child, &cfg, NULL);
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = tp_pool_ready(c, "ip_inits", 2, c);
    void *res = NULL;
    /* every call, on 8 threads in 2 processes, sees the initializer run exactly once */
    mpb__rd_t r = map_range(p, "ip_inits", 200, 20000, &res);
    for (uint32_t i = 0; i < 200; i++) {
        int64_t v;
        assert_int_equal(mpb__rd_int(&r, &v), 0);
        assert_int_equal(v, 1);
    }
    mpb_free(res);
    tp_wstat_t s1, s2;
    assert_true(tp_worker_stat(c, w1, &s1));
    assert_true(tp_worker_stat(c, w2, &s2));
    assert_int_equal(s1.concurrency, 4);
    assert_int_equal(s1.done + s2.done, 200);
    /* SIGUSR1 -> mpb_worker_stop from a signal handler: serve returns 0, and the child
     * checks once more that its initializer ran once */
    kill(w1, SIGUSR1);
    kill(w2, SIGUSR1);
    assert_int_equal(tp_wait_child(w1, 10), 0);
    assert_int_equal(tp_wait_child(w2, 10), 0);
    assert_int_equal(tp_fn_workers(c, "ip_inits"), 0);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* `mpb-worker --check` against B: its exit status, its output in out. */
static int worker_check(char *out, size_t n) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' --check -e '%s' -k '%s' 2>&1", MPB_WORKER_PATH,
             tp_broker.endpoint, tp_broker.keyfile);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t k = fread(out, 1, n - 1, f);
    out[k] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The worker's own health check: 0 while a worker of this host is registered, 1 (and why)
 * before one is and after it stopped; a wrong key or no broker is 1 too. */
static void test_mpb_worker_check(void **state) {
    (void)state;
    char out[512];
    assert_int_equal(worker_check(out, sizeof out), 1);
    assert_non_null(strstr(out, "no worker of host"));
    mpb_client_t *c = th_connect(&tp_broker);
    pid_t w = tp_start_worker(MPB_TESTFNS_LIB, "procinfo", 1, 1, 0, NULL);
    tp_wait_workers(c, "procinfo", 1, 10000);
    assert_int_equal(worker_check(out, sizeof out), 0);
    assert_non_null(strstr(out, "ok: 1 worker session of "));
    kill(w, SIGTERM);
    assert_int_equal(tp_wait_child(w, 10), 0);
    tp_wait_workers(c, "procinfo", 0, 10000);
    assert_int_equal(worker_check(out, sizeof out), 1);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "'%s' --check -e tcp://127.0.0.1:1 -k '%s' >/dev/null 2>&1",
             MPB_WORKER_PATH, tp_broker.keyfile);
    int st = system(cmd);
    assert_int_equal(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 1);
    mpb_close(&c);
}

static void test_mpb_worker_max_tasks_recycles_and_serves_all(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    /* --max-tasks 5: each process serves 5 tasks and a fresh one (its own --init) follows */
    pid_t w = tp_start_worker(MPB_TESTFNS_LIB, "procinfo", 1, 1, 5, "testinit");
    mpb_pool_t *p = tp_pool_ready(c, "procinfo", 1, c);
    void *res = NULL;
    mpb__rd_t r = map_range(p, "procinfo", 20, 30000, &res);
    uint32_t n = 20;
    int64_t pids[20];
    int npids = 0, per[20] = {0};
    for (uint32_t i = 0; i < n; i++) {
        uint32_t two;
        int64_t pid, inits;
        assert_int_equal(mpb__rd_array(&r, &two), 0);
        assert_int_equal(two, 2);
        assert_int_equal(mpb__rd_int(&r, &pid), 0);
        assert_int_equal(mpb__rd_int(&r, &inits), 0);
        assert_int_equal(inits, 1); /* --init ran once in every process, before its tasks */
        assert_true(pid != w);      /* served by the children, not the parent */
        int k = 0;
        while (k < npids && pids[k] != pid)
            k++;
        if (k == npids) pids[npids++] = pid;
        per[k]++;
    }
    mpb_free(res);
    printf("mpb-worker --max-tasks 5: 20 tasks served by %d processes\n", npids);
    assert_true(npids >= 4);
    for (int k = 0; k < npids; k++)
        assert_true(per[k] <= 5);
    /* SIGTERM: the recycling parent and its child stop cleanly */
    kill(w, SIGTERM);
    assert_int_equal(tp_wait_child(w, 10), 0);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

static void test_worker_api_max_tasks_returns_after_that_many(void **state) {
    (void)state;
    wcfg_t cfg = {.conc = 1, .prefetch = 1, .max_tasks = 3};
    wcfg_t cfg2 = {.conc = 2, .prefetch = 0, .stop_after = 2};
    tp_gate_t gate;
    tp_gate_open(&gate);
    pid_t w = tp_start_child(worker_child, &cfg, NULL);
    pid_t w2 = tp_start_child(worker_child, &cfg2, &gate); /* held back until the first is gone */
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = tp_pool_ready(c, "ip_square", 1, c);
    mpb_async_t *h[5];
    squares_async(p, h, 5, 10);
    /* serve returns 0 after exactly 3 tasks (the child checks), and the process exits */
    assert_int_equal(tp_wait_child(w, 20), 0);
    int ready = 0;
    for (int i = 0; i < 5; i++)
        ready += mpb_async_wait(h[i], i < 3 ? 5000 : 0);
    assert_int_equal(ready, 3);
    assert_int_equal(tp_fn_stat(c, "ip_square").queued, 2);
    assert_int_equal(tp_fn_workers(c, "ip_square"), 0);
    /* the other two wait for the next worker, and lose nothing */
    tp_gate_release(&gate);
    tp_gate_close(&gate);
    expect_squares(c, h, 5, 10);
    /* w2 is stopped by its own thread after 2 tasks: serve returns 0 */
    assert_int_equal(tp_wait_child(w2, 10), 0);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

static void test_stop_from_a_thread_ends_serve_with_0(void **state) {
    (void)state;
    wcfg_t cfg = {.conc = 2, .prefetch = 1, .stop_after = 10};
    pid_t w = tp_start_child(worker_child, &cfg, NULL);
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = tp_pool_ready(c, "ip_square", 1, c);
    for (int i = 0; i < 10; i++) {
        size_t al, rl;
        const uint8_t *a = tp_args1(i, &al);
        void *res = NULL;
        assert_int_equal(mpb_pool_apply(p, "ip_square", a, al, 10000, &res, &rl), 0);
        assert_int_equal(tp_unpack_int(res, rl), i * i);
        mpb_free(res);
    }
    int64_t t0 = th_now_ms();
    assert_int_equal(tp_wait_child(w, 10), 0);
    printf("stopped from a thread: the process exited %lld ms after its 10th task\n",
           (long long)(th_now_ms() - t0));
    assert_int_equal(tp_fn_workers(c, "ip_square"), 0);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

static void test_stop_from_a_signal_reports_the_running_task_first(void **state) {
    (void)state;
    /* the worker API: SIGUSR1 -> mpb_worker_stop; mpb-worker: SIGTERM */
    wcfg_t cfg = {.conc = 1, .prefetch = 0, .on_sigusr1 = true};
    pid_t w1 = tp_start_child(worker_child, &cfg, NULL);
    mpb_client_t *c = th_connect(&tp_broker);
    pid_t w2 = tp_start_worker(MPB_DEMO_LIB, "sleep_ms", 1, 0, 0, NULL);
    tp_wait_workers(c, "ip_sleep", 1, 10000);
    mpb_pool_t *p = tp_pool_ready(c, "sleep_ms", 1, c);
    size_t al;
    const uint8_t *a = tp_args1(400, &al);
    mpb_async_t *h1, *h2;
    assert_int_equal(mpb_pool_apply_async(p, "ip_sleep", a, al, NULL, NULL, NULL, &h1), 0);
    assert_int_equal(mpb_pool_apply_async(p, "sleep_ms", a, al, NULL, NULL, NULL, &h2), 0);
    tp_wstat_t s1 = {0}, s2 = {0};
    int64_t end = th_now_ms() + 10000;
    while (!(tp_worker_stat(c, w1, &s1) && s1.running == 1 && tp_worker_stat(c, w2, &s2) &&
             s2.running == 1)) {
        if (th_now_ms() > end) fail_msg("the workers never got their tasks");
        usleep(5000);
    }
    tp_sleep_ms(100); /* both are now in the middle of their 400 ms */
    kill(w1, SIGUSR1);
    kill(w2, SIGTERM);
    void *res = NULL;
    size_t rl;
    assert_int_equal(mpb_async_get(h1, 10000, &res, &rl), 0);
    assert_int_equal(tp_unpack_int(res, rl), 400);
    mpb_free(res);
    assert_int_equal(mpb_async_get(h2, 10000, &res, &rl), 0);
    assert_int_equal(tp_unpack_int(res, rl), 400);
    mpb_free(res);
    assert_int_equal(tp_wait_child(w1, 10), 0);
    assert_int_equal(tp_wait_child(w2, 10), 0);
    /* finished by the workers that were stopping, not handed on */
    assert_int_equal(tp_fn_stat(c, "ip_sleep").done, 1);
    assert_int_equal(tp_fn_stat(c, "sleep_ms").done, 1);
    mpb_async_free(&h1);
    mpb_async_free(&h2);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- serve returns: the session unregisters, and may serve again ---- */

static int to_parent[2], to_child[2];

/* Serves 2 tasks, tells the parent, waits for its go, serves 2 more with the same worker. */
static int twice_child(void *arg) {
    (void)arg;
    mpb_client_t *c = NULL;
    if (th_connect_opts(&tp_broker, NULL, &c)) return 10;
    mpb_worker_t *w = NULL;
    if (mpb_worker_open(c, &w) || mpb_worker_add(w, "ip_square", ip_square, NULL)) return 11;
    mpb_worker_set_max_tasks(w, 2);
    if (mpb_worker_serve(w)) {
        fprintf(stderr, "serve 1: %s\n", mpb_errmsg(c));
        return 20;
    }
    char ch = 's';
    if (write(to_parent[1], &ch, 1) != 1 || read(to_child[0], &ch, 1) != 1) return 12;
    if (mpb_worker_serve(w)) {
        fprintf(stderr, "serve 2: %s\n", mpb_errmsg(c));
        return 21;
    }
    if (mpb_worker_tasks_done(w) != 4) return 22;
    mpb_worker_close(&w);
    mpb_close(&c);
    return 0;
}

static void test_serve_returns_unregistered_and_may_serve_again(void **state) {
    (void)state;
    assert_int_equal(pipe(to_parent), 0);
    assert_int_equal(pipe(to_child), 0);
    pid_t w = tp_start_child(twice_child, NULL, NULL);
    mpb_client_t *c = th_connect(&tp_broker);
    mpb_pool_t *p = tp_pool_ready(c, "ip_square", 1, c);
    mpb_async_t *h[4];
    squares_async(p, h, 4, 3);
    struct pollfd pf = {to_parent[0], POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 10000), 1);
    char ch;
    assert_int_equal(read(to_parent[0], &ch, 1), 1);
    /* its process and session live on, but it is no worker now: not listed, not counted */
    assert_int_equal(kill(w, 0), 0);
    tp_wstat_t ws;
    assert_int_equal(tp_worker_stat(c, w, &ws), 0);
    assert_int_equal(tp_fn_workers(c, "ip_square"), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(mpb_async_wait(h[i], 5000), 1);
    void *res = NULL;
    size_t rl;
    th_assert_err(mpb_async_get(h[2], 200, &res, &rl), MPB_ETIMEDOUT, c,
                  "no worker serves function 'ip_square'", NULL);
    assert_int_equal(tp_fn_stat(c, "ip_square").queued, 2);
    /* the same worker serves again on the same client */
    ch = 'g';
    assert_int_equal(write(to_child[1], &ch, 1), 1);
    expect_squares(c, h, 4, 3);
    assert_int_equal(tp_wait_child(w, 10), 0);
    for (int i = 0; i < 2; i++) {
        close(to_parent[i]);
        close(to_child[i]);
    }
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* ---- mpb-worker --init SYMBOL --init-arg STRING ---- */

static void test_mpb_worker_init_arg_and_a_failing_initializer(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&tp_broker);
    tp_worker_init_arg = "hello";
    pid_t w = tp_start_worker(MPB_TESTFNS_LIB, "initarg", 1, 1, 0, "testinit");
    tp_worker_init_arg = NULL;
    mpb_pool_t *p = tp_pool_ready(c, "initarg", 1, c);
    size_t al, rl;
    const uint8_t *a = tp_args1(0, &al);
    void *res = NULL;
    assert_int_equal(mpb_pool_apply(p, "initarg", a, al, 10000, &res, &rl), 0);
    assert_int_equal(rl, 6);
    assert_memory_equal(res, "\xa5hello", 6);
    mpb_free(res);
    kill(w, SIGTERM);
    assert_int_equal(tp_wait_child(w, 10), 0);
    /* testinit fails (7) for "fail": the worker says so, exits 3, and never registers */
    tp_worker_init_arg = "fail";
    w = tp_start_worker(MPB_TESTFNS_LIB, "initarg", 1, 1, 0, "testinit");
    tp_worker_init_arg = NULL;
    assert_int_equal(tp_wait_child(w, 10), 3);
    char path[400], log[2048] = "";
    snprintf(path, sizeof path, "%s/mpb-worker-%d.log", tp_broker.dir, (int)w);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    log[fread(log, 1, sizeof log - 1, f)] = 0;
    fclose(f);
    assert_non_null(strstr(log, "the initializer failed; not serving\" init=testinit returned=7"));
    assert_int_equal(tp_fn_workers(c, "initarg"), 0);
    /* and with recycling (--max-tasks), it is not restarted over and over */
    tp_worker_init_arg = "fail";
    w = tp_start_worker(MPB_TESTFNS_LIB, "initarg", 1, 1, 5, "testinit");
    tp_worker_init_arg = NULL;
    assert_int_equal(tp_wait_child(w, 10), 3);
    mpb_pool_close(&p);
    mpb_close(&c);
    tp_check_healthy();
}

/* mpb-worker outlives its broker: when the broker is gone and another comes up at the same
 * endpoint with the same key, the worker connects to it and serves again; and a worker whose
 * broker is gone stops on SIGTERM within a few seconds, with status 0. */
static void test_mpb_worker_survives_a_broker_restart_and_stops_without_one(void **state) {
    (void)state;
    char ipc[300], ep[320], key[300];
    snprintf(ipc, sizeof ipc, "%s/restart.sock", tp_broker.dir);
    snprintf(ep, sizeof ep, "ipc://%s", ipc);
    snprintf(key, sizeof key, "%s/restart.key", tp_broker.dir);
    static th_broker_t R; /* static: the harness stops it at exit if an assertion fails */
    th_broker_start(&R, "--listen", ep, NULL);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cp %s %s", R.keyfile, key);
    assert_int_equal(system(cmd), 0);
    const char *argv[] = {
        MPB_WORKER_PATH, "--lib", MPB_DEMO_LIB, "--fn", "square", "-e", ep, "-k", key, NULL};
    fflush(stdout);
    fflush(stderr);
    pid_t w = fork();
    assert_true(w >= 0);
    if (w == 0) {
        tp_child_prepare("restart-worker");
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    setpgid(w, w);
    tp_track(w);
    uint8_t a[] = {0x91, 0x07}; /* [7] */
    for (int round = 0; round < 2; round++) {
        size_t kl;
        const char *k = th_authkey(&R, &kl);
        mpb_client_t *c;
        assert_int_equal(mpb_connect(ep, k, kl, NULL, &c), 0);
        mpb_pool_t *p;
        assert_int_equal(mpb_pool_open(c, &p), 0);
        void *res = NULL;
        size_t rl;
        /* after the restart the worker finds the new broker within its reconnect delay, or
         * within a fetch's silence (about 11 s) if its connection was carried over */
        assert_int_equal(mpb_pool_apply(p, "square", a, sizeof a, 30000, &res, &rl), 0);
        assert_int_equal(tp_unpack_int(res, rl), 49);
        mpb_free(res);
        mpb_pool_close(&p);
        mpb_close(&c);
        th_broker_stop(&R);
        if (round == 0) th_broker_start(&R, "--listen", ep, "--authkey-file", key, NULL);
    }
    /* no broker now: SIGTERM still ends it, soon */
    int64_t t0 = th_now_ms();
    kill(w, SIGTERM);
    assert_int_equal(tp_wait_child(w, 10), 0);
    int64_t dt = th_now_ms() - t0;
    print_message("a worker without a broker stopped %lld ms after SIGTERM\n", (long long)dt);
    assert_true(dt < 6000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_initializer_runs_once_per_worker_process,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_mpb_worker_check, tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_mpb_worker_max_tasks_recycles_and_serves_all,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_worker_api_max_tasks_returns_after_that_many,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_stop_from_a_thread_ends_serve_with_0, tp_setup_broker,
                                        tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_stop_from_a_signal_reports_the_running_task_first,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_serve_returns_unregistered_and_may_serve_again,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(test_mpb_worker_init_arg_and_a_failing_initializer,
                                        tp_setup_broker, tp_teardown_broker),
        cmocka_unit_test_setup_teardown(
            test_mpb_worker_survives_a_broker_restart_and_stops_without_one, tp_setup_broker,
            tp_teardown_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
