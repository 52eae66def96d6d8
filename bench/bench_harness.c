/* bench_harness.c - one test's run: open what each client needs, start the harness threads
 * (-P 1: one client each, blocking calls; -P N: their clients' fds in one epoll, replies run
 * callbacks), wait, merge the histograms into a result; and the warm-up and dict.get's preload. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>

#include <zmq.h>

#include "bench.h"

volatile sig_atomic_t g_stop;

void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

typedef struct tctx {
    bench_t *B;
    bclient_t **cls;
    int n;
    pthread_t th;
} tctx_t;

/* Reads what has arrived for cl (waiting up to timeout_ms for the first reply), running the
 * callbacks, and sends what they queued: polls again until a poll completes nothing, so it
 * ends with a flush and a read that would block (which also re-arms the edge-triggered
 * mpb_fd). Progress is judged by our own count of completions, not by mpb_poll's result: that
 * is the change in requests in flight, which is 0 when each callback queues the next. */
static void service(bclient_t *cl, int timeout_ms) {
    if (cl->dead) return;
    if (cl->B->echo) {
        echo_service(cl, timeout_ms);
        return;
    }
    for (;;) {
        uint64_t before = cl->done;
        int rc = cl->pool ? mpb_pool_poll(cl->pool, timeout_ms) : mpb_poll(cl->c, timeout_ms);
        if (rc < 0) {
            note_error(cl, rc);
            cl->dead = true;
            return;
        }
        if (cl->done == before) return;
        timeout_ms = 0;
    }
}

static void sync_run(bclient_t *cl) {
    bench_t *B = cl->B;
    int64_t t0 = now_ns();
    while (may_issue(cl, t0)) {
        cl->issued++;
        int rc = B->echo ? 0 : B->test->sync_op(cl);
        if (B->echo) {
            if (zmq_send(cl->sock, cl->buf, B->echo_frame, 0) < 0 ||
                zmq_recv(cl->sock, cl->buf + B->echo_frame, B->echo_frame, 0) < 0) {
                cl->dead = true;
                snprintf(cl->firsterr, sizeof cl->firsterr, "echo: %s", zmq_strerror(zmq_errno()));
                break;
            }
        }
        int64_t t1 = now_ns();
        hist_add(&cl->h, (uint64_t)(t1 - t0));
        cl->done++;
        cl->end_ns = t1;
        t0 = t1;
        if (rc) {
            note_error(cl, rc);
            if (rc == MPB_ECONN || rc == MPB_EFORK) cl->dead = true;
        }
    }
}

static void *harness(void *arg) {
    tctx_t *t = arg;
    bench_t *B = t->B;
    pthread_barrier_wait(&B->go);
    if (!B->async) {
        sync_run(t->cls[0]);
        return NULL;
    }
    for (int i = 0; i < t->n; i++) {
        bclient_t *cl = t->cls[i];
        for (int k = 0; k < B->pipeline; k++) {
            if (B->echo)
                echo_issue(&cl->slots[k], now_ns());
            else
                slot_issue(&cl->slots[k], now_ns());
        }
        service(cl, 0);
    }
    /* epoll, as redis-benchmark's event loop: a wake-up costs the same for 1 ready client of
     * 50 as for 50, where poll() would pass and scan every descriptor each time */
    int ep = t->n > 1 ? epoll_create1(EPOLL_CLOEXEC) : -1;
    if (t->n > 1 && ep < 0) die("epoll_create1: %s", strerror(errno));
    for (int i = 0; ep >= 0 && i < t->n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = t->cls[i]};
        if (t->cls[i]->fd >= 0) epoll_ctl(ep, EPOLL_CTL_ADD, t->cls[i]->fd, &ev);
    }
    struct epoll_event *evs = xcalloc((size_t)t->n, sizeof *evs);
    for (;;) {
        int active = 0;
        for (int i = 0; i < t->n; i++)
            if (!t->cls[i]->dead && t->cls[i]->busy) active++;
        if (!active) break;
        if (ep < 0) { /* one client: block in the library, as a single-client program does */
            service(t->cls[0], 1000);
            continue;
        }
        int rc = epoll_wait(ep, evs, t->n, 100);
        if (rc <= 0) { /* nothing for 100 ms: look at every client, in case an edge was missed */
            for (int i = 0; i < t->n; i++)
                service(t->cls[i], 0);
            continue;
        }
        for (int i = 0; i < rc; i++)
            service(evs[i].data.ptr, 0);
    }
    free(evs);
    if (ep >= 0) close(ep);
    return NULL;
}

/* Opens what each client needs for test t. Returns 0, or -1 after saying why. */
static int prepare(bench_t *B, const test_t *t) {
    for (int i = 0; i < B->clients; i++) {
        bclient_t *cl = &B->cls[i];
        mpb_client_t *c = cl->c;
        int rc = 0;
        if (t == &bench_tests[0] || t == &bench_tests[1] || t == &bench_tests[2])
            rc = mpb_dict_attach(c, DICT_NAME, &cl->d);
        else if (t == &bench_tests[3])
            rc = mpb_list_attach(c, LIST_NAME, &cl->l);
        else if (t == &bench_tests[4] || t == &bench_tests[7])
            rc = mpb_queue_open(c, QUEUE_NAME, -1, -1, &cl->q);
        else if (t == &bench_tests[5]) {
            char name[64];
            int nlocks = B->async ? B->pipeline : 1;
            for (int k = 0; k < nlocks && !rc; k++) {
                snprintf(name, sizeof name, LOCK_FMT, cl->id, k);
                mpb_lock_t *lk = NULL;
                rc = mpb_lock_open(c, name, &lk);
                if (!rc && k == 0 && !B->async)
                    cl->lk = lk;
                else
                    mpb_lock_close(&lk);
            }
        } else if (t->pool)
            rc = mpb_pool_open(c, &cl->pool);
        if (rc) {
            fprintf(stderr, "mpb-bench: %s: client %d: %s\n", t->name, i, mpb_errmsg(c));
            return -1;
        }
    }
    return 0;
}

static void unprepare(bench_t *B, const test_t *t) {
    for (int i = 0; i < B->clients; i++) {
        bclient_t *cl = &B->cls[i];
        if (cl->pool) {
            mpb_pool_terminate(cl->pool);
            mpb_pool_close(&cl->pool);
        }
        for (int k = 0; k < B->pipeline; k++)
            mpb_async_free(&cl->slots[k].a);
        mpb_dict_close(&cl->d);
        mpb_list_close(&cl->l);
        mpb_queue_close(&cl->q);
        mpb_lock_close(&cl->lk);
    }
    /* Leave the broker as it was found, apart from the dict (redis-benchmark leaves its keys
     * too): a list of millions of appended values would only skew the tests after it. */
    mpb_client_t *c = B->cls[0].c;
    if (!c || B->cls[0].dead) return;
    if (t == &bench_tests[3]) mpb_obj_delete(c, "list/" LIST_NAME);
    if (t == &bench_tests[4] || t == &bench_tests[7]) mpb_obj_delete(c, "queue/" QUEUE_NAME);
    if (t == &bench_tests[5]) {
        char path[80];
        for (int i = 0; i < B->clients; i++)
            for (int k = 0; k < (B->async ? B->pipeline : 1); k++) {
                snprintf(path, sizeof path, "lock/" LOCK_FMT, i, k);
                mpb_obj_delete(c, path);
            }
    }
}

/* dict.get without dict.set before it: give the keys it reads values first, so it measures
 * hits (as after redis-benchmark's SET). Untimed. */
void preload(bench_t *B) {
    mpb_client_t *c = B->cls[0].c;
    mpb_dict_t *d = NULL;
    if (mpb_dict_attach(c, DICT_NAME, &d)) return;
    uint64_t n = B->keyspace ? B->keyspace : 1;
    uint8_t *args = xcalloc(1, 64 + B->vallen);
    mpb_mpbuf_t b = args_over(args, 64 + B->vallen);
    for (uint64_t i = 0; i < n; i++) {
        char k[64];
        int kn = B->keyspace ? snprintf(k, sizeof k, "key:%012" PRIu64, i)
                             : snprintf(k, sizeof k, "key:__rand_int__");
        mpb_mp_clear(&b);
        mpb_mp_array(&b, 2);
        mpb_mp_str(&b, k, (size_t)kn);
        mpb_mp_append(&b, B->val, B->vallen);
        if (b.err || mpb_send(c, MPB_OP_DICT_SET, DICT_NAME, b.data, b.len, NULL, NULL)) break;
        if (mpb_inflight(c) >= 512) mpb_poll(c, 1000);
    }
    mpb_drain(c, 60000);
    free(args);
    mpb_dict_close(&d);
}

int run_test(bench_t *B, const test_t *t, result_t *res) {
    B->test = t;
    memset(res, 0, sizeof *res);
    res->name = t->name;
    if (!B->echo && prepare(B, t)) {
        unprepare(B, t);
        return -1;
    }
    uint64_t per = B->n / (uint64_t)B->clients, extra = B->n % (uint64_t)B->clients;
    for (int i = 0; i < B->clients; i++) {
        bclient_t *cl = &B->cls[i];
        cl->quota = per + ((uint64_t)i < extra ? 1 : 0);
        cl->issued = cl->done = cl->errors = cl->misses = 0;
        cl->busy = 0;
        cl->firsterr[0] = 0;
        cl->end_ns = 0;
        hist_clear(&cl->h);
        for (int k = 0; k < B->pipeline; k++) {
            cl->slots[k] = (slot_t){.cl = cl, .idx = k};
        }
    }
    int nthreads = B->async ? B->threads : B->clients;
    if (nthreads > B->clients) nthreads = B->clients;
    tctx_t *ts = xcalloc((size_t)nthreads, sizeof *ts);
    for (int i = 0; i < nthreads; i++) {
        ts[i].B = B;
        ts[i].cls = xcalloc((size_t)B->clients, sizeof *ts[i].cls);
    }
    for (int i = 0; i < B->clients; i++) {
        tctx_t *tc = &ts[i % nthreads];
        tc->cls[tc->n++] = &B->cls[i];
    }
    pthread_barrier_init(&B->go, NULL, (unsigned)nthreads + 1);
    B->deadline = 0;
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&ts[i].th, NULL, harness, &ts[i]) != 0) die("cannot start a thread");
    int64_t start = now_ns();
    if (B->time_s > 0) B->deadline = start + (int64_t)(B->time_s * 1e9);
    pthread_barrier_wait(&B->go);
    for (int i = 0; i < nthreads; i++)
        pthread_join(ts[i].th, NULL);
    pthread_barrier_destroy(&B->go);
    int64_t end = start;
    hist_t h;
    hist_init(&h);
    const char *why = NULL;
    for (int i = 0; i < B->clients; i++) {
        bclient_t *cl = &B->cls[i];
        hist_merge(&h, &cl->h);
        res->errors += cl->errors;
        res->misses += cl->misses;
        if (cl->end_ns > end) end = cl->end_ns;
        if (!why && cl->firsterr[0]) why = cl->firsterr;
    }
    for (int i = 0; i < nthreads; i++)
        free(ts[i].cls);
    free(ts);
    res->requests = h.count;
    res->secs = (double)(end - start) / 1e9;
    res->rps = res->secs > 0 ? (double)h.count / res->secs : 0;
    res->avg = h.count ? (double)h.sum / (double)h.count / 1e6 : 0;
    res->min = h.count ? (double)h.min / 1e6 : 0;
    res->p50 = (double)hist_quantile(&h, 0.50) / 1e6;
    res->p95 = (double)hist_quantile(&h, 0.95) / 1e6;
    res->p99 = (double)hist_quantile(&h, 0.99) / 1e6;
    res->p999 = (double)hist_quantile(&h, 0.999) / 1e6;
    res->max = (double)h.max / 1e6;
    hist_free(&h);
    if (res->errors || why)
        fprintf(stderr, "mpb-bench: %s: %" PRIu64 " of %" PRIu64 " operations failed%s%s\n",
                t->name, res->errors, res->requests, why ? ": " : "", why ? why : "");
    if (!B->echo) unprepare(B, t);
    return 0;
}

/* Runs t for --warmup seconds and forgets the figures: new connections' first messages, and
 * the scheduler settling, are not what the first measured test should show. */
void warm_up(bench_t *B, const test_t *t) {
    if (B->warmup_s <= 0) return;
    double time_s = B->time_s;
    B->time_s = B->warmup_s;
    result_t r;
    run_test(B, t, &r);
    B->time_s = time_s;
}
