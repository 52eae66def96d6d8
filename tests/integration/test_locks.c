/* test_locks.c - Lock and RLock against a real mpbrokerd, from many processes: a lock-guarded
 * read-modify-write loses no update, fencing tokens only grow, an RLock counts its levels,
 * a timed-out acquire leaves the holder holding, misuse gets clear errors, and blocked
 * acquirers are served first come, first served. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpbproto.h"
#include "th_child.h"

static th_broker_t B;

#define SLACK_MS 300

/* How many clients wait for the lock at path (its "waiters" array); -1 on error. */
static int64_t lock_waiters(mpb_client_t *c, const char *path) {
    void *m;
    mpb__rd_t v;
    if (th_describe_get(c, path, "waiters", &m, &v)) return -1;
    uint32_t n;
    int64_t x = mpb__rd_array(&v, &n) ? -1 : (int64_t)n;
    mpb_free(m);
    return x;
}

/* The holder's field ("session", "pid", "thread") of the lock at path; -1 when free. */
static int64_t lock_owner(mpb_client_t *c, const char *path, const char *field) {
    void *m;
    mpb__rd_t v, f;
    if (th_describe_get(c, path, "owner", &m, &v)) return INT64_MIN;
    int64_t x = -1;
    if (mpb__rd_type(&v) == MPB__MT_MAP && mpb__rd_mapget(&v, field, &f) == 0 &&
        mpb__rd_int(&f, &x))
        x = INT64_MIN;
    mpb_free(m);
    return x;
}

static bool wait_waiters(mpb_client_t *c, const char *path, int64_t want, int timeout_ms) {
    int64_t end = th_now_ms() + timeout_ms;
    do {
        if (lock_waiters(c, path) == want) return true;
        usleep(5000);
    } while (th_now_ms() < end);
    return false;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- read-modify-write under a lock ---- */

#define RMW_PROCS 8
#define RMW_ITERS 200

static int rmw_child(int idx, const char *arg) {
    (void)arg;
    mpb_client_t *c = th_child_connect();
    CK(c);
    mpb_lock_t *l;
    mpb_dict_t *d;
    mpb_list_t *fl;
    CKC(c, mpb_lock_open(c, "rmw", &l));
    CKC(c, mpb_dict_open(c, "rmw.data", &d));
    CKC(c, mpb_list_open(c, "rmw.fences", &fl));
    uint64_t fences[RMW_ITERS];
    for (int i = 0; i < RMW_ITERS; i++) {
        uint64_t f = 0;
        CKC(c, mpb_lock_acquire(l, MPB_FOREVER, &f));
        int64_t n, last;
        CKC(c, mpb_dict_get_i64(d, "n", &n));
        CKC(c, mpb_dict_get_i64(d, "last_fence", &last));
        /* every acquisition, by anyone, has a larger token than the one before it */
        if (f <= (uint64_t)last)
            fprintf(stderr, "fence %llu after %lld\n", (unsigned long long)f, (long long)last);
        CK(f > (uint64_t)last);
        CKC(c, mpb_dict_set_i64(d, "n", n + 1));
        CKC(c, mpb_dict_set_i64(d, "last_fence", (int64_t)f));
        CKC(c, mpb_lock_release(l));
        CK(i == 0 || f > fences[i - 1]);
        fences[i] = f;
    }
    mpb__buf_t b = {0};
    mpb__w_array(&b, RMW_ITERS);
    for (int i = 0; i < RMW_ITERS; i++)
        mpb__w_uint(&b, fences[i]);
    CK(!b.oom);
    CKC(c, mpb_list_extend(fl, b.p, b.len));
    mpb__buf_free(&b);
    (void)idx;
    mpb_list_close(&fl);
    mpb_dict_close(&d);
    mpb_lock_close(&l);
    mpb_close(&c);
    return 0;
}

static void test_lock_guarded_increments_lose_nothing(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "rmw.data", &d), 0);
    assert_int_equal(mpb_dict_set_i64(d, "n", 0), 0);
    assert_int_equal(mpb_dict_set_i64(d, "last_fence", 0), 0);
    int64_t t0 = th_now_ms();
    assert_int_equal(th_child_spawn_all(RMW_PROCS, rmw_child, NULL, 120), 0);
    print_message("%d x %d lock-guarded increments in %lld ms\n", RMW_PROCS, RMW_ITERS,
                  (long long)(th_now_ms() - t0));
    int64_t n;
    assert_int_equal(mpb_dict_get_i64(d, "n", &n), 0);
    assert_int_equal(n, RMW_PROCS * RMW_ITERS);

    /* every token handed out once */
    mpb_list_t *fl;
    assert_int_equal(mpb_list_open(c, "rmw.fences", &fl), 0);
    uint64_t len;
    assert_int_equal(mpb_list_len(fl, &len), 0);
    assert_int_equal(len, RMW_PROCS * RMW_ITERS);
    static uint64_t all[RMW_PROCS * RMW_ITERS];
    size_t k = 0;
    for (uint64_t start = 0; start < len; start += 500) {
        void *items;
        size_t ilen, cnt;
        assert_int_equal(
            mpb_list_slice(fl, (int64_t)start, (int64_t)start + 500, 500, &items, &ilen, &cnt), 0);
        mpb__rd_t r = {items, (const uint8_t *)items + ilen};
        uint32_t an;
        assert_int_equal(mpb__rd_array(&r, &an), 0);
        for (uint32_t i = 0; i < an; i++) {
            assert_true(k < RMW_PROCS * RMW_ITERS);
            assert_int_equal(mpb__rd_uint(&r, &all[k++]), 0);
        }
        mpb_free(items);
    }
    assert_int_equal(k, RMW_PROCS * RMW_ITERS);
    qsort(all, k, sizeof *all, cmp_u64);
    for (size_t i = 1; i < k; i++)
        assert_true(all[i] > all[i - 1]);
    int64_t last;
    assert_int_equal(mpb_dict_get_i64(d, "last_fence", &last), 0);
    assert_int_equal((uint64_t)last, all[k - 1]);
    assert_int_equal(th_describe_int(c, "lock/rmw", "locked"), 0);
    mpb_list_close(&fl);
    mpb_dict_close(&d);
    mpb_close(&c);
}

/* ---- RLock ---- */

static int rlock_try_child(int idx, const char *arg) {
    (void)idx;
    (void)arg;
    mpb_client_t *c = th_child_connect();
    CK(c);
    mpb_lock_t *l;
    CKC(c, mpb_rlock_open(c, "rl", &l));
    /* held by another session: not ours to take or give back */
    CK(mpb_lock_acquire(l, 0, NULL) == MPB_ETIMEDOUT);
    CK(mpb_lock_release(l) == MPB_ENOTOWNER);
    uint64_t f;
    CKC(c, mpb_lock_acquire(l, MPB_FOREVER, &f));
    CK(f > 0);
    CKC(c, mpb_lock_release(l));
    mpb_lock_close(&l);
    mpb_close(&c);
    return 0;
}

static void test_rlock_counts_levels_and_keeps_its_token(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_lock_t *l;
    assert_int_equal(mpb_rlock_open(c, "rl", &l), 0);
    uint64_t f1, f2, f3;
    assert_int_equal(mpb_lock_acquire(l, 0, &f1), 0);
    assert_int_equal(mpb_lock_acquire(l, 0, &f2), 0);
    assert_int_equal(mpb_lock_acquire(l, MPB_FOREVER, &f3), 0);
    assert_true(f1 == f2 && f2 == f3);
    assert_int_equal(th_describe_int(c, "rlock/rl", "count"), 3);
    pid_t p = th_child_spawn(rlock_try_child, 0, NULL);
    assert_true(wait_waiters(c, "rlock/rl", 1, 10000));
    assert_int_equal(mpb_lock_release(l), 0);
    assert_int_equal(mpb_lock_release(l), 0);
    assert_int_equal(mpb_lock_locked(l), 1);
    assert_int_equal(lock_waiters(c, "rlock/rl"), 1); /* one level left: still ours */
    assert_int_equal(mpb_lock_release(l), 0);
    assert_int_equal(th_wait(p, 30), 0);
    assert_int_equal(mpb_lock_locked(l), 0);
    assert_int_equal(mpb_lock_release(l), MPB_ENOTOWNER);
    /* the next acquisition has a new, larger token */
    uint64_t f4;
    assert_int_equal(mpb_lock_acquire(l, 0, &f4), 0);
    assert_true(f4 > f1);
    assert_int_equal(mpb_lock_release(l), 0);
    mpb_lock_close(&l);
    mpb_close(&c);
}

/* ---- a timed-out acquire ---- */

static void test_acquire_of_held_lock_times_out_and_holder_keeps_it(void **state) {
    (void)state;
    mpb_client_t *a = th_connect(&B), *b = th_connect(&B);
    mpb_lock_t *la, *lb;
    assert_int_equal(mpb_lock_open(a, "to.lock", &la), 0);
    assert_int_equal(mpb_lock_open(b, "to.lock", &lb), 0);
    uint64_t fa;
    assert_int_equal(mpb_lock_acquire(la, 0, &fa), 0);
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_lock_acquire(lb, 300, NULL), MPB_ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    print_message("acquire(300 ms) of a held lock: ETIMEDOUT after %lld ms\n", (long long)dt);
    assert_true(dt >= 300);
    assert_true(dt <= 300 + SLACK_MS);
    assert_non_null(strstr(mpb_errmsg(b), "held by"));
    t0 = th_now_ms();
    assert_int_equal(mpb_lock_acquire(lb, 0, NULL), MPB_ETIMEDOUT);
    assert_true(th_now_ms() - t0 < SLACK_MS);
    /* the holder still holds it, and nobody is left waiting */
    assert_int_equal(lock_owner(b, "lock/to.lock", "session"), (int64_t)mpb_session_id(a));
    assert_int_equal(lock_waiters(b, "lock/to.lock"), 0);
    assert_int_equal(mpb_lock_locked(lb), 1);
    assert_int_equal(mpb_lock_release(lb), MPB_ENOTOWNER);
    assert_int_equal(mpb_lock_release(la), 0);
    uint64_t fb;
    assert_int_equal(mpb_lock_acquire(lb, 0, &fb), 0);
    assert_true(fb > fa);
    assert_int_equal(mpb_lock_release(lb), 0);

    /* the same for an RLock held two levels deep */
    mpb_lock_t *ra, *rb;
    assert_int_equal(mpb_rlock_open(a, "to.rlock", &ra), 0);
    assert_int_equal(mpb_rlock_open(b, "to.rlock", &rb), 0);
    assert_int_equal(mpb_lock_acquire(ra, 0, NULL), 0);
    assert_int_equal(mpb_lock_acquire(ra, 0, NULL), 0);
    t0 = th_now_ms();
    assert_int_equal(mpb_lock_acquire(rb, 150, NULL), MPB_ETIMEDOUT);
    dt = th_now_ms() - t0;
    assert_true(dt >= 150 && dt <= 150 + SLACK_MS);
    assert_int_equal(th_describe_int(a, "rlock/to.rlock", "count"), 2);
    assert_int_equal(mpb_lock_release(ra), 0);
    assert_int_equal(mpb_lock_release(ra), 0);
    assert_int_equal(mpb_lock_release(ra), MPB_ENOTOWNER);
    mpb_lock_close(&ra);
    mpb_lock_close(&rb);
    mpb_lock_close(&la);
    mpb_lock_close(&lb);
    mpb_close(&a);
    mpb_close(&b);
}

/* ---- misuse ---- */

static int release_other_child(int idx, const char *arg) {
    (void)idx;
    (void)arg;
    mpb_client_t *c = th_child_connect();
    CK(c);
    mpb_lock_t *l;
    CKC(c, mpb_lock_open(c, "mis", &l));
    CK(mpb_lock_release(l) == MPB_ENOTOWNER);
    CK(strstr(mpb_errmsg(c), "held by session") != NULL);
    CK(mpb_lock_locked(l) == 1);
    mpb_lock_close(&l);
    mpb_close(&c);
    return 0;
}

static void test_lock_misuse_gets_clear_errors(void **state) {
    (void)state;
    mpb_client_t *a = th_connect(&B), *b = th_connect(&B);
    mpb_lock_t *la, *lb;
    assert_int_equal(mpb_lock_open(a, "mis", &la), 0);
    assert_int_equal(mpb_lock_open(b, "mis", &lb), 0);

    /* release of a lock nobody holds */
    assert_int_equal(mpb_lock_release(la), MPB_ENOTOWNER);
    assert_non_null(strstr(mpb_errmsg(a), "unlocked lock/mis"));

    /* release of a lock another session holds: the message names the holder */
    assert_int_equal(mpb_lock_acquire(la, 0, NULL), 0);
    assert_int_equal(mpb_lock_release(lb), MPB_ENOTOWNER);
    char want[64];
    snprintf(want, sizeof want, "session %llu", (unsigned long long)mpb_session_id(a));
    assert_non_null(strstr(mpb_errmsg(b), want));
    snprintf(want, sizeof want, "pid %d", (int)getpid());
    assert_non_null(strstr(mpb_errmsg(b), want));
    /* ... and by another process */
    assert_int_equal(th_wait(th_child_spawn(release_other_child, 0, NULL), 30), 0);

    /* a Lock is not re-entrant */
    assert_int_equal(mpb_lock_acquire(la, 0, NULL), MPB_EBUSY);
    assert_non_null(strstr(mpb_errmsg(a), "not re-entrant"));
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_lock_acquire(la, 1000, NULL), MPB_EBUSY); /* at once, not after 1 s */
    assert_true(th_now_ms() - t0 < SLACK_MS);
    assert_int_equal(mpb_lock_acquire(la, MPB_FOREVER, NULL), MPB_EBUSY);
    assert_int_equal(th_describe_int(a, "lock/mis", "count"), 1);

    /* a held lock cannot be deleted */
    assert_int_equal(mpb_obj_delete(b, "lock/mis"), MPB_EBUSY);
    assert_non_null(strstr(mpb_errmsg(b), "held by session"));
    assert_int_equal(mpb_lock_release(la), 0);

    /* two threads of one client are two owners */
    mpb_lock_t *t1, *t2;
    assert_int_equal(mpb_lock_open(a, "mis", &t1), 0);
    assert_int_equal(mpb_lock_open(a, "mis", &t2), 0);
    mpb_lock_set_thread(t1, 1);
    mpb_lock_set_thread(t2, 2);
    assert_int_equal(mpb_lock_acquire(t1, 0, NULL), 0);
    assert_int_equal(mpb_lock_acquire(t2, 0, NULL), MPB_ETIMEDOUT);
    assert_int_equal(mpb_lock_release(t2), MPB_ENOTOWNER);
    assert_non_null(strstr(mpb_errmsg(a), "another thread"));
    assert_int_equal(lock_owner(a, "lock/mis", "thread"), 1);
    assert_int_equal(mpb_lock_release(t1), 0);
    assert_int_equal(mpb_lock_acquire(t2, 0, NULL), 0);
    assert_int_equal(lock_owner(a, "lock/mis", "thread"), 2);
    assert_int_equal(mpb_lock_release(t2), 0);
    mpb_lock_close(&t1);
    mpb_lock_close(&t2);

    /* a free lock can be deleted; the kinds stay apart */
    assert_int_equal(mpb_obj_delete(a, "lock/mis"), 0);
    mpb_lock_t *x = NULL;
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(a, "mis.dict", &d), 0);
    assert_int_equal(mpb_lock_open(a, "mis.dict", &x), MPB_EKIND);
    assert_int_equal(mpb_rlock_open(a, "mis.dict", &x), MPB_EKIND);
    assert_null(x);
    assert_int_equal(mpb_lock_open(a, "mis.l", &x), 0);
    mpb_lock_t *y = NULL;
    assert_int_equal(mpb_rlock_open(a, "mis.l", &y), MPB_EKIND);
    assert_non_null(strstr(mpb_errmsg(a), "is a lock, not a rlock"));
    assert_int_equal(mpb_obj_delete(a, "rlock/mis.l"), MPB_EKIND);
    mpb_lock_close(&x);
    mpb_dict_close(&d);
    mpb_lock_close(&la);
    mpb_lock_close(&lb);
    mpb_close(&a);
    mpb_close(&b);
}

/* ---- first come, first served ---- */

#define FIFO_N 5

static int fifo_acquirer(int idx, const char *arg) {
    (void)arg;
    int me = idx;
    mpb_client_t *c = th_child_connect();
    CK(c);
    mpb_lock_t *l;
    mpb_list_t *order;
    CKC(c, mpb_lock_open(c, "fifo", &l));
    CKC(c, mpb_list_open(c, "fifo.order", &order));
    CKC(c, mpb_lock_acquire(l, MPB_FOREVER, NULL));
    uint8_t b[MPB_PACK_MAX_SCALAR];
    CKC(c, mpb_list_append(order, b, mpb_pack_i64(b, me)));
    CKC(c, mpb_lock_release(l));
    mpb_list_close(&order);
    mpb_lock_close(&l);
    mpb_close(&c);
    return 0;
}

static void test_blocked_acquirers_are_served_in_arrival_order(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_lock_t *l;
    assert_int_equal(mpb_lock_open(c, "fifo", &l), 0);
    assert_int_equal(mpb_lock_acquire(l, 0, NULL), 0);
    pid_t pids[FIFO_N];
    for (int i = 0; i < FIFO_N; i++) {
        pids[i] = th_child_spawn(fifo_acquirer, i, NULL);
        assert_true(wait_waiters(c, "lock/fifo", i + 1, 10000));
    }
    assert_int_equal(mpb_lock_release(l), 0);
    for (int i = 0; i < FIFO_N; i++)
        assert_int_equal(th_wait(pids[i], 30), 0);
    mpb_list_t *order;
    assert_int_equal(mpb_list_open(c, "fifo.order", &order), 0);
    uint64_t len;
    assert_int_equal(mpb_list_len(order, &len), 0);
    assert_int_equal(len, FIFO_N);
    for (int i = 0; i < FIFO_N; i++) {
        void *v;
        size_t n;
        int64_t x;
        assert_int_equal(mpb_list_get(order, i, &v, &n), 0);
        assert_int_equal(mpb_unpack_i64(v, n, &x), 0);
        mpb_free(v);
        assert_int_equal(x, i);
    }
    mpb_list_close(&order);
    mpb_lock_close(&l);
    mpb_close(&c);
}

/* ---- fencing tokens ---- */

/* semaphore.acquire's raw reply: the fencing token. */
static uint64_t sem_token(mpb_client_t *c, const char *name) {
    mpb_semaphore_t *s;
    uint64_t t = 0;
    assert_int_equal(mpb_semaphore_open(c, name, -1, -1, &s), 0);
    assert_int_equal(mpb_semaphore_acquire_fenced(s, MPB_NOWAIT, &t), 0);
    assert_true(t > 0);
    mpb_semaphore_close(&s);
    return t;
}

/* Locks and semaphores draw from one counter, and a restarted broker does not start it over:
 * a holder from before the restart has a smaller token than anyone after. */
static void test_fencing_tokens_grow_across_a_broker_restart(void **state) {
    (void)state;
    static th_broker_t R; /* static: the harness stops it at exit if an assertion fails */
    uint64_t before = 0;
    for (int run = 0; run < 2; run++) {
        th_broker_start(&R, NULL);
        mpb_client_t *c = th_connect(&R);
        mpb_lock_t *l;
        mpb_semaphore_t *s;
        uint64_t f1, f2;
        assert_int_equal(mpb_lock_open(c, "fence", &l), 0);
        assert_int_equal(mpb_semaphore_open(c, "fence.sem", 2, 0, &s), 0);
        assert_int_equal(mpb_lock_acquire(l, 0, &f1), 0);
        uint64_t t = sem_token(c, "fence.sem");
        assert_int_equal(mpb_lock_release(l), 0);
        assert_int_equal(mpb_lock_acquire(l, 0, &f2), 0);
        print_message("broker run %d: tokens %llu, semaphore %llu, %llu (last run's last %llu)\n",
                      run + 1, (unsigned long long)f1, (unsigned long long)t,
                      (unsigned long long)f2, (unsigned long long)before);
        assert_true(f1 > before);
        assert_true(t > f1);
        assert_true(f2 > t);
        assert_int_equal(th_describe_int(c, "semaphore/fence.sem", "value"), 1);
        before = f2;
        mpb_semaphore_close(&s);
        mpb_lock_close(&l);
        mpb_close(&c);
        th_broker_stop_checked(&R);
    }
}

/* ---- the broker is still well ---- */

static void test_broker_still_serves_and_exits_cleanly(void **state) {
    (void)state;
    assert_true(th_broker_alive(&B));
    mpb_client_t *c = th_connect(&B);
    mpb_lock_t *l;
    assert_int_equal(mpb_lock_open(c, "final", &l), 0);
    uint64_t f1, f2;
    assert_int_equal(mpb_lock_acquire(l, 0, &f1), 0);
    assert_int_equal(mpb_lock_locked(l), 1);
    assert_int_equal(mpb_lock_release(l), 0);
    assert_int_equal(mpb_lock_acquire(l, 0, &f2), 0);
    assert_true(f2 > f1);
    assert_int_equal(mpb_lock_release(l), 0);
    th_assert_dict_roundtrip(c, "final.d", 5);
    mpb_lock_close(&l);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

static const th_child_fn child_fns[] = {
    rmw_child,
    rlock_try_child,
    release_other_child,
    fifo_acquirer,
};

int main(int argc, char **argv) {
    th_child_main(argc, argv, &B, child_fns, TH_NELEMS(child_fns));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_guarded_increments_lose_nothing),
        cmocka_unit_test(test_rlock_counts_levels_and_keeps_its_token),
        cmocka_unit_test(test_acquire_of_held_lock_times_out_and_holder_keeps_it),
        cmocka_unit_test(test_lock_misuse_gets_clear_errors),
        cmocka_unit_test(test_blocked_acquirers_are_served_in_arrival_order),
        cmocka_unit_test(test_fencing_tokens_grow_across_a_broker_restart),
        cmocka_unit_test(test_broker_still_serves_and_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
