/* test_sync.c - Event, Barrier, Condition, Semaphore, Value and Namespace against a real
 * mpbrokerd, from many processes, with Python multiprocessing's semantics: one set() wakes
 * every waiter, a barrier hands out each index once per round and breaks for all on a
 * timeout, notify(n) wakes exactly n and a woken waiter holds the lock, a semaphore never lets
 * more in than it has units, and atomic adds lose nothing. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mpbproto.h"
#include "th_child.h"

static th_broker_t B;

#define SLACK_MS 300

/* Waits up to timeout_ms for any of pids[0..n) (those not yet reaped, pid > 0) to exit; sets
 * its slot to 0 and returns its status, or -1 when none did. */
static int reap_any(pid_t *pids, int n, int timeout_ms) {
    int64_t end = th_now_ms() + timeout_ms;
    do {
        for (int i = 0; i < n; i++) {
            int st;
            if (pids[i] > 0 && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
                pids[i] = 0;
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            }
        }
        usleep(2000);
    } while (th_now_ms() < end);
    return -1;
}

/* ---- Event ---- */

#define EV_WAITERS 5

static int event_waiter(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_event_t *e;
    CKC(c, mpb_event_open(c, "ev", &e));
    int rc = mpb_event_wait(e, MPB_FOREVER);
    CKC(c, rc);
    CK(rc == 1);
    mpb_event_close(&e);
    return 0;
}

static void test_event_set_wakes_every_waiter(void **state) {
    (void)state;
    pid_t pids[EV_WAITERS];
    for (int i = 0; i < EV_WAITERS; i++)
        pids[i] = th_client_spawn(event_waiter, i, NULL);
    mpb_client_t *c = th_connect(&B);
    mpb_event_t *e;
    assert_int_equal(mpb_event_open(c, "ev", &e), 0);
    assert_true(th_wait_field(c, "event/ev", "waiters", EV_WAITERS, 20000));
    assert_int_equal(mpb_event_is_set(e), 0);
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_event_set(e), 0);
    for (int i = 0; i < EV_WAITERS; i++)
        assert_int_equal(th_wait(pids[i], 10), 0);
    print_message("one set() woke %d waiting processes; all exited within %lld ms\n", EV_WAITERS,
                  (long long)(th_now_ms() - t0));
    assert_int_equal(th_describe_int(c, "event/ev", "waiters"), 0);
    assert_int_equal(mpb_event_is_set(e), 1);
    assert_int_equal(mpb_event_wait(e, MPB_FOREVER), 1); /* set: at once */
    assert_int_equal(mpb_event_wait(e, 0), 1);

    assert_int_equal(mpb_event_clear(e), 0);
    assert_int_equal(mpb_event_is_set(e), 0);
    assert_int_equal(mpb_event_wait(e, 0), 0);
    t0 = th_now_ms();
    assert_int_equal(mpb_event_wait(e, 250), 0);
    int64_t dt = th_now_ms() - t0;
    print_message("wait(250 ms) on an unset event: 0 after %lld ms\n", (long long)dt);
    assert_true(dt >= 250 && dt <= 250 + SLACK_MS);
    assert_int_equal(th_describe_int(c, "event/ev", "waiters"), 0);
    assert_int_equal(mpb_event_is_set(e), 0);
    mpb_event_close(&e);
    mpb_close(&c);
}

/* ---- Barrier ---- */

#define BAR_PARTIES 4
#define BAR_ROUNDS  5

static int barrier_rounds_child(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_barrier_t *b;
    mpb_dict_t *d;
    CKC(c, mpb_barrier_open(c, "bar", BAR_PARTIES, -1, &b));
    CKC(c, mpb_dict_open(c, "bar.seen", &d));
    for (int r = 0; r < BAR_ROUNDS; r++) {
        int64_t index = -1;
        CKC(c, mpb_barrier_wait(b, MPB_FOREVER, &index));
        CK(index >= 0 && index < BAR_PARTIES);
        char key[32];
        snprintf(key, sizeof key, "r%d.i%lld", r, (long long)index);
        int64_t times;
        CKC(c, mpb_dict_incr_str(d, key, 1, &times));
        CK(times == 1); /* nobody else had this index in this round */
    }
    mpb_dict_close(&d);
    mpb_barrier_close(&b);
    return 0;
}

static void test_barrier_rounds_hand_out_each_index_once(void **state) {
    (void)state;
    assert_int_equal(th_client_spawn_all(BAR_PARTIES, barrier_rounds_child, NULL, 60), 0);
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "bar.seen", &d), 0);
    uint64_t len;
    assert_int_equal(mpb_dict_len(d, &len), 0);
    assert_int_equal(len, BAR_PARTIES * BAR_ROUNDS);
    for (int r = 0; r < BAR_ROUNDS; r++)
        for (int i = 0; i < BAR_PARTIES; i++) {
            char key[32];
            int64_t v;
            snprintf(key, sizeof key, "r%d.i%d", r, i);
            assert_int_equal(mpb_dict_get_i64(d, key, &v), 0);
            assert_int_equal(v, 1);
        }
    mpb_barrier_t *b;
    assert_int_equal(mpb_barrier_open(c, "bar", 0, -1, &b), 0);
    int64_t parties, waiting;
    int broken;
    assert_int_equal(mpb_barrier_state(b, &parties, &waiting, &broken), 0);
    assert_int_equal(parties, BAR_PARTIES);
    assert_int_equal(waiting, 0);
    assert_int_equal(broken, 0);
    mpb_barrier_close(&b);
    mpb_dict_close(&d);
    mpb_close(&c);
}

static int barrier_expect_broken(mpb_client_t *c, TH_UNUSED int idx, const char *arg) {
    const char *name = arg;
    mpb_barrier_t *b;
    CKC(c, mpb_barrier_open(c, name, 0, -1, &b));
    int rc = mpb_barrier_wait(b, MPB_FOREVER, NULL);
    if (rc != MPB_EBROKEN) fprintf(stderr, "barrier wait: %s\n", mpb_strerror(rc));
    CK(rc == MPB_EBROKEN);
    CK(strstr(mpb_errmsg(c), "broken barrier") != NULL);
    mpb_barrier_close(&b);
    return 0;
}

static int barrier_once_child(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_barrier_t *b;
    mpb_dict_t *d;
    CKC(c, mpb_barrier_open(c, "bar2", 0, -1, &b));
    CKC(c, mpb_dict_open(c, "bar2.seen", &d));
    int64_t index;
    CKC(c, mpb_barrier_wait(b, 20000, &index));
    char key[32];
    snprintf(key, sizeof key, "i%lld", (long long)index);
    int64_t times;
    CKC(c, mpb_dict_incr_str(d, key, 1, &times));
    CK(times == 1);
    mpb_dict_close(&d);
    mpb_barrier_close(&b);
    return 0;
}

static void test_barrier_timeout_abort_and_reset(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_barrier_t *b;
    assert_int_equal(mpb_barrier_open(c, "bar2", BAR_PARTIES, -1, &b), 0);
    int64_t parties, waiting;
    int broken;

    /* two parties wait; a third times out: all three get EBROKEN */
    pid_t w[2] = {th_client_spawn(barrier_expect_broken, 0, "bar2"),
                  th_client_spawn(barrier_expect_broken, 1, "bar2")};
    assert_true(th_wait_field(c, "barrier/bar2", "n_waiting", 2, 20000));
    assert_int_equal(mpb_barrier_state(b, &parties, &waiting, &broken), 0);
    assert_int_equal(parties, BAR_PARTIES);
    assert_int_equal(waiting, 2);
    assert_int_equal(broken, 0);
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_barrier_wait(b, 200, NULL), MPB_EBROKEN);
    int64_t dt = th_now_ms() - t0;
    print_message("barrier wait(200 ms) short of parties: EBROKEN after %lld ms\n", (long long)dt);
    assert_true(dt >= 200 && dt <= 200 + SLACK_MS);
    assert_int_equal(th_wait(w[0], 10), 0);
    assert_int_equal(th_wait(w[1], 10), 0);
    assert_int_equal(mpb_barrier_state(b, &parties, &waiting, &broken), 0);
    assert_int_equal(waiting, 0);
    assert_int_equal(broken, 1);
    /* broken until reset: a wait fails at once */
    t0 = th_now_ms();
    assert_int_equal(mpb_barrier_wait(b, 5000, NULL), MPB_EBROKEN);
    assert_true(th_now_ms() - t0 < SLACK_MS);

    /* reset makes it whole: a full round works again */
    assert_int_equal(mpb_barrier_reset(b), 0);
    assert_int_equal(mpb_barrier_state(b, NULL, NULL, &broken), 0);
    assert_int_equal(broken, 0);
    assert_int_equal(th_client_spawn_all(BAR_PARTIES, barrier_once_child, NULL, 30), 0);
    mpb_dict_t *d;
    uint64_t len;
    assert_int_equal(mpb_dict_open(c, "bar2.seen", &d), 0);
    assert_int_equal(mpb_dict_len(d, &len), 0);
    assert_int_equal(len, BAR_PARTIES); /* i0 .. i3, once each */
    mpb_dict_close(&d);

    /* abort breaks it for the waiting party and for later ones */
    pid_t a = th_client_spawn(barrier_expect_broken, 0, "bar2");
    assert_true(th_wait_field(c, "barrier/bar2", "n_waiting", 1, 20000));
    assert_int_equal(mpb_barrier_abort(b), 0);
    assert_int_equal(th_wait(a, 10), 0);
    assert_int_equal(mpb_barrier_state(b, NULL, &waiting, &broken), 0);
    assert_int_equal(waiting, 0);
    assert_int_equal(broken, 1);
    assert_int_equal(mpb_barrier_wait(b, 0, NULL), MPB_EBROKEN);
    /* reset with a party waiting: it gets EBROKEN, the barrier is whole */
    assert_int_equal(mpb_barrier_reset(b), 0);
    a = th_client_spawn(barrier_expect_broken, 0, "bar2");
    assert_true(th_wait_field(c, "barrier/bar2", "n_waiting", 1, 20000));
    assert_int_equal(mpb_barrier_reset(b), 0);
    assert_int_equal(th_wait(a, 10), 0);
    assert_int_equal(mpb_barrier_state(b, NULL, &waiting, &broken), 0);
    assert_int_equal(waiting, 0);
    assert_int_equal(broken, 0);
    mpb_barrier_close(&b);

    /* the barrier's own timeout applies to waits that give none */
    assert_int_equal(mpb_barrier_open(c, "bar3", 2, 150, &b), 0);
    t0 = th_now_ms();
    assert_int_equal(mpb_barrier_wait(b, MPB_FOREVER, NULL), MPB_EBROKEN);
    dt = th_now_ms() - t0;
    assert_true(dt >= 150 && dt <= 150 + SLACK_MS);
    mpb_barrier_close(&b);

    /* parameters */
    assert_int_equal(mpb_barrier_open(c, "bar2", 3, -1, &b), MPB_EINVAL);
    assert_non_null(strstr(mpb_errmsg(c), "4 parties"));
    assert_int_equal(mpb_barrier_open(c, "bar.new", 0, -1, &b), MPB_EINVAL);
    assert_null(b);
    mpb_close(&c);
}

/* ---- Condition ---- */

#define CV_INCRS 4
#define CV_EACH  25

static int cv_incr_child(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_condition_t *cv;
    mpb_value_t *v;
    CKC(c, mpb_condition_open(c, "cv.count", NULL, &cv));
    CKC(c, mpb_value_open(c, "cv.n", NULL, 0, &v));
    for (int i = 0; i < CV_EACH; i++) {
        CKC(c, mpb_condition_acquire(cv, MPB_FOREVER, NULL));
        CKC(c, mpb_value_add_i64(v, 1, NULL));
        CKC(c, mpb_condition_notify_all(cv));
        CKC(c, mpb_condition_release(cv));
    }
    mpb_value_close(&v);
    mpb_condition_close(&cv);
    return 0;
}

typedef struct {
    mpb_value_t *v;
    int64_t want;
    int calls;
} pred_arg_t;

static int count_reached(void *arg) {
    pred_arg_t *p = arg;
    int64_t n = 0;
    p->calls++;
    return mpb_value_get_i64(p->v, &n) == 0 && n >= p->want;
}

static void test_condition_wait_for_a_counter(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_condition_t *cv;
    mpb_value_t *v;
    assert_int_equal(mpb_condition_open(c, "cv.count", NULL, &cv), 0);
    assert_int_equal(mpb_value_open(c, "cv.n", NULL, 0, &v), 0);
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    /* the incrementers start while we hold the lock, and get it once we wait */
    pid_t pids[CV_INCRS];
    for (int i = 0; i < CV_INCRS; i++)
        pids[i] = th_client_spawn(cv_incr_child, i, NULL);
    pred_arg_t pa = {v, CV_INCRS * CV_EACH, 0};
    assert_int_equal(mpb_condition_wait_for(cv, count_reached, &pa, 30000), 1);
    /* the lock is ours again: the count cannot move */
    int64_t n;
    assert_int_equal(mpb_value_get_i64(v, &n), 0);
    assert_int_equal(n, CV_INCRS * CV_EACH);
    assert_true(pa.calls >= 2);
    assert_int_equal(th_describe_int(c, "rlock/cv.count.lock", "count"), 1);
    assert_int_equal(mpb_condition_release(cv), 0);
    for (int i = 0; i < CV_INCRS; i++)
        assert_int_equal(th_wait(pids[i], 30), 0);

    /* a predicate that never holds: 0 after the timeout, with the lock held */
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    pa.want = 1000000;
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_condition_wait_for(cv, count_reached, &pa, 200), 0);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 200 && dt <= 200 + SLACK_MS);
    assert_int_equal(mpb_condition_release(cv), 0);
    mpb_value_close(&v);
    mpb_condition_close(&cv);
    mpb_close(&c);
}

static int cv_waiter_child(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_condition_t *cv;
    CKC(c, mpb_condition_open(c, "cv.n3", "lock/cv.n3.lock", &cv));
    CKC(c, mpb_condition_acquire(cv, MPB_FOREVER, NULL));
    int rc = mpb_condition_wait(cv, MPB_FOREVER);
    CKC(c, rc);
    CK(rc == 1);
    /* woken holding the lock */
    CKC(c, mpb_condition_release(cv));
    mpb_condition_close(&cv);
    return 0;
}

static void test_condition_notify_wakes_exactly_n(void **state) {
    (void)state;
    pid_t pids[3];
    for (int i = 0; i < 3; i++)
        pids[i] = th_client_spawn(cv_waiter_child, i, NULL);
    mpb_client_t *c = th_connect(&B);
    mpb_condition_t *cv;
    assert_int_equal(mpb_condition_open(c, "cv.n3", "lock/cv.n3.lock", &cv), 0);
    assert_true(th_wait_field(c, "condition/cv.n3", "waiters", 3, 20000));
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    assert_int_equal(mpb_condition_notify(cv, 2), 2);
    assert_int_equal(th_describe_int(c, "condition/cv.n3", "waiters"), 1);
    assert_int_equal(mpb_condition_release(cv), 0);
    assert_int_equal(reap_any(pids, 3, 10000), 0);
    assert_int_equal(reap_any(pids, 3, 10000), 0);
    /* the third is still waiting */
    assert_int_equal(reap_any(pids, 3, 300), -1);
    assert_int_equal(th_describe_int(c, "condition/cv.n3", "waiters"), 1);
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    assert_int_equal(mpb_condition_notify_all(cv), 1);
    assert_int_equal(mpb_condition_notify_all(cv), 0); /* nobody left */
    assert_int_equal(mpb_condition_release(cv), 0);
    assert_int_equal(reap_any(pids, 3, 10000), 0);
    assert_int_equal(th_describe_int(c, "condition/cv.n3", "waiters"), 0);
    assert_int_equal(th_describe_int(c, "lock/cv.n3.lock", "locked"), 0);

    /* notify with nobody waiting wakes nobody */
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    assert_int_equal(mpb_condition_notify(cv, 1), 0);
    assert_int_equal(mpb_condition_release(cv), 0);
    mpb_condition_close(&cv);
    mpb_close(&c);
}

static void test_condition_wait_timeout_and_misuse(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_condition_t *cv, *cv2 = NULL;
    assert_int_equal(mpb_condition_open(c, "cv.to", "lock/cv.to.lock", &cv), 0);

    /* without the lock */
    assert_int_equal(mpb_condition_wait(cv, 100), MPB_ENOTOWNER);
    assert_non_null(strstr(mpb_errmsg(c), "unlocked lock/cv.to.lock"));
    assert_int_equal(mpb_condition_notify(cv, 1), MPB_ENOTOWNER);
    assert_int_equal(mpb_condition_notify_all(cv), MPB_ENOTOWNER);
    assert_int_equal(th_describe_int(c, "condition/cv.to", "waiters"), 0);

    /* a timed-out wait answers 0, holding the lock again */
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_condition_wait(cv, 200), 0);
    int64_t dt = th_now_ms() - t0;
    print_message("condition wait(200 ms) without notify: 0 after %lld ms\n", (long long)dt);
    assert_true(dt >= 200 && dt <= 200 + SLACK_MS);
    assert_int_equal(th_describe_int(c, "lock/cv.to.lock", "locked"), 1);
    assert_int_equal(mpb_condition_release(cv), 0);
    assert_int_equal(mpb_condition_release(cv), MPB_ENOTOWNER);

    /* with an RLock: every level is given back after the wait */
    mpb_condition_t *rc;
    assert_int_equal(mpb_condition_open(c, "cv.r", NULL, &rc), 0);
    assert_int_equal(mpb_condition_acquire(rc, 0, NULL), 0);
    assert_int_equal(mpb_condition_acquire(rc, 0, NULL), 0);
    assert_int_equal(mpb_condition_wait(rc, 100), 0);
    assert_int_equal(th_describe_int(c, "rlock/cv.r.lock", "count"), 2);
    assert_int_equal(mpb_condition_release(rc), 0);
    assert_int_equal(mpb_condition_release(rc), 0);
    assert_int_equal(mpb_condition_release(rc), MPB_ENOTOWNER);
    mpb_condition_close(&rc);

    /* held by another client: not ours to wait on */
    mpb_client_t *o = th_connect(&B);
    mpb_condition_t *ocv;
    assert_int_equal(mpb_condition_open(o, "cv.to", NULL, &ocv), 0); /* keeps its lock */
    assert_int_equal(mpb_condition_acquire(ocv, 0, NULL), 0);
    assert_int_equal(mpb_condition_wait(cv, 100), MPB_ENOTOWNER);
    assert_non_null(strstr(mpb_errmsg(c), "held by session"));
    assert_int_equal(mpb_condition_notify(cv, 1), MPB_ENOTOWNER);
    assert_int_equal(mpb_condition_release(ocv), 0);
    mpb_condition_close(&ocv);
    mpb_close(&o);

    /* the binding is fixed */
    assert_int_equal(mpb_condition_open(c, "cv.to", "lock/other", &cv2), MPB_EINVAL);
    assert_non_null(strstr(mpb_errmsg(c), "bound to lock/cv.to.lock"));
    assert_int_equal(mpb_condition_open(c, "cv.bad", "dict/x", &cv2), MPB_EINVAL);
    assert_null(cv2);
    mpb_condition_close(&cv);
    mpb_close(&c);
}

/* A condition's lock stays while waiters need it back: deleting it is refused, naming the
 * condition, from the wait until the woken waiter has released the lock. */
static int cv_del_child(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_condition_t *cv;
    mpb_event_t *woken, *go;
    CKC(c, mpb_condition_open(c, "cv.del", "lock/cv.del.lock", &cv));
    CKC(c, mpb_event_open(c, "cv.del.woken", &woken));
    CKC(c, mpb_event_open(c, "cv.del.go", &go));
    CKC(c, mpb_condition_acquire(cv, MPB_FOREVER, NULL));
    int rc = mpb_condition_wait(cv, 20000);
    CKC(c, rc);
    CK(rc == 1);
    CKC(c, mpb_event_set(woken));
    CK(mpb_event_wait(go, 20000) == 1);
    CKC(c, mpb_condition_release(cv)); /* still ours: nobody could delete it */
    mpb_event_close(&go);
    mpb_event_close(&woken);
    mpb_condition_close(&cv);
    return 0;
}

static void test_condition_lock_cannot_be_deleted_under_its_waiters(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_condition_t *cv;
    mpb_event_t *woken, *go;
    assert_int_equal(mpb_condition_open(c, "cv.del", "lock/cv.del.lock", &cv), 0);
    assert_int_equal(mpb_event_open(c, "cv.del.woken", &woken), 0);
    assert_int_equal(mpb_event_open(c, "cv.del.go", &go), 0);
    pid_t p = th_client_spawn(cv_del_child, 0, NULL);
    assert_true(th_wait_field(c, "condition/cv.del", "waiters", 1, 20000));
    /* parked on the condition: the lock is free, and still not to be deleted */
    assert_int_equal(th_describe_int(c, "lock/cv.del.lock", "locked"), 0);
    assert_int_equal(mpb_obj_delete(c, "lock/cv.del.lock"), MPB_EBUSY);
    assert_non_null(strstr(mpb_errmsg(c), "condition/cv.del has 1 waiters"));
    assert_int_equal(mpb_obj_delete(c, "condition/cv.del"), MPB_EBUSY);
    /* notified, waiting to take the lock back */
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    assert_int_equal(mpb_condition_notify(cv, 1), 1);
    assert_int_equal(mpb_obj_delete(c, "condition/cv.del"), MPB_EBUSY);
    assert_non_null(strstr(mpb_errmsg(c), "notified"));
    assert_int_equal(mpb_obj_delete(c, "lock/cv.del.lock"), MPB_EBUSY);
    assert_int_equal(mpb_condition_release(cv), 0);
    /* woken, holding it */
    assert_int_equal(mpb_event_wait(woken, 20000), 1);
    assert_int_equal(mpb_obj_delete(c, "lock/cv.del.lock"), MPB_EBUSY);
    assert_non_null(strstr(mpb_errmsg(c), "held by session"));
    assert_int_equal(mpb_obj_delete(c, "condition/cv.del"), MPB_EBUSY);
    assert_int_equal(mpb_event_set(go), 0);
    assert_int_equal(th_wait(p, 30), 0);
    /* all done: both may go */
    assert_int_equal(mpb_obj_delete(c, "condition/cv.del"), 0);
    assert_int_equal(mpb_obj_delete(c, "lock/cv.del.lock"), 0);
    mpb_event_close(&go);
    mpb_event_close(&woken);
    mpb_condition_close(&cv);
    mpb_close(&c);
}

/* ---- Semaphore ---- */

#define SEM_UNITS 3
#define SEM_PROCS 6
#define SEM_ITERS 15

static int sem_child(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_semaphore_t *s;
    mpb_dict_t *d;
    CKC(c, mpb_semaphore_open(c, "sem", SEM_UNITS, 0, &s));
    CKC(c, mpb_dict_open(c, "sem.d", &d));
    for (int i = 0; i < SEM_ITERS; i++) {
        CKC(c, mpb_semaphore_acquire(s, MPB_FOREVER));
        int64_t inside;
        CKC(c, mpb_dict_incr_str(d, "inside", 1, &inside));
        CK(inside >= 1 && inside <= SEM_UNITS);
        int64_t top;
        CKC(c, mpb_dict_get_i64(d, "top", &top));
        if (inside > top) CKC(c, mpb_dict_set_i64(d, "top", inside));
        usleep(1000);
        CKC(c, mpb_dict_incr_str(d, "inside", -1, NULL));
        CKC(c, mpb_semaphore_release(s, 1));
    }
    mpb_dict_close(&d);
    mpb_semaphore_close(&s);
    return 0;
}

static int sem_blocked_child(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_semaphore_t *s;
    CKC(c, mpb_semaphore_open(c, "sem0", -1, -1, &s));
    CKC(c, mpb_semaphore_acquire(s, MPB_FOREVER));
    mpb_semaphore_close(&s);
    return 0;
}

static void test_semaphore_limits_and_errors(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_semaphore_t *s;
    mpb_dict_t *d;
    assert_int_equal(mpb_semaphore_open(c, "sem", SEM_UNITS, 0, &s), 0);
    assert_int_equal(mpb_dict_open(c, "sem.d", &d), 0);
    assert_int_equal(mpb_dict_set_i64(d, "inside", 0), 0);
    assert_int_equal(mpb_dict_set_i64(d, "top", 0), 0);
    assert_int_equal(th_client_spawn_all(SEM_PROCS, sem_child, NULL, 60), 0);
    int64_t v, top;
    assert_int_equal(mpb_semaphore_value(s, &v), 0);
    assert_int_equal(v, SEM_UNITS);
    assert_int_equal(mpb_dict_get_i64(d, "top", &top), 0);
    print_message("semaphore(%d): at most %lld of %d processes inside at once\n", SEM_UNITS,
                  (long long)top, SEM_PROCS);
    assert_true(top >= 1 && top <= SEM_UNITS);
    mpb_dict_close(&d);
    mpb_semaphore_close(&s);

    /* no unit: ETIMEDOUT at once, or after the timeout; nothing changes */
    assert_int_equal(mpb_semaphore_open(c, "sem0", 0, 0, &s), 0);
    assert_int_equal(mpb_semaphore_acquire(s, 0), MPB_ETIMEDOUT);
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_semaphore_acquire(s, 200), MPB_ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    print_message("semaphore acquire(200 ms) with no unit: ETIMEDOUT after %lld ms\n",
                  (long long)dt);
    assert_true(dt >= 200 && dt <= 200 + SLACK_MS);
    assert_int_equal(mpb_semaphore_value(s, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(th_describe_int(c, "semaphore/sem0", "waiters"), 0);
    /* a release from another client wakes a blocked acquirer */
    pid_t p = th_client_spawn(sem_blocked_child, 0, NULL);
    assert_true(th_wait_field(c, "semaphore/sem0", "waiters", 1, 20000));
    assert_int_equal(mpb_semaphore_release(s, 1), 0);
    assert_int_equal(th_wait(p, 10), 0);
    mpb_semaphore_close(&s);

    /* a plain Semaphore may be released above its start; a BoundedSemaphore may not */
    assert_int_equal(mpb_semaphore_open(c, "sem.plain", 1, 0, &s), 0);
    assert_int_equal(mpb_semaphore_release(s, 2), 0);
    assert_int_equal(mpb_semaphore_value(s, &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(mpb_semaphore_release(s, 0), MPB_EINVAL);
    mpb_semaphore_close(&s);
    assert_int_equal(mpb_semaphore_open(c, "sem.bounded", 2, 1, &s), 0);
    assert_int_equal(mpb_semaphore_release(s, 1), MPB_EVALUE);
    assert_non_null(strstr(mpb_errmsg(c), "released too many times"));
    assert_int_equal(mpb_semaphore_acquire(s, 0), 0);
    assert_int_equal(mpb_semaphore_release(s, 2), MPB_EVALUE);
    assert_int_equal(mpb_semaphore_release(s, 1), 0);
    assert_int_equal(mpb_semaphore_value(s, &v), 0);
    assert_int_equal(v, 2);
    mpb_semaphore_t *s2 = NULL;
    assert_int_equal(mpb_semaphore_open(c, "sem.bounded", 3, -1, &s2), MPB_EINVAL);
    assert_int_equal(mpb_semaphore_open(c, "sem.bounded", -1, 0, &s2), MPB_EINVAL);
    assert_null(s2);
    assert_int_equal(mpb_semaphore_open(c, "sem.bounded", -1, -1, &s2), 0);
    mpb_semaphore_close(&s2);
    mpb_semaphore_close(&s);
    mpb_close(&c);
}

/* A Semaphore(0) used as a signal: the units a consumer took were consumed, and its session
 * ending (here by mpb_close) must not hand them out again. */
static void test_signalling_semaphore_units_do_not_come_back(void **state) {
    (void)state;
    mpb_client_t *prod = th_connect(&B), *cons = th_connect(&B);
    mpb_semaphore_t *sp, *sc;
    int64_t v;
    assert_int_equal(mpb_semaphore_open(prod, "sig", 0, 0, &sp), 0);
    assert_int_equal(mpb_semaphore_open(cons, "sig", 0, 0, &sc), 0);
    assert_int_equal(mpb_semaphore_release(sp, 3), 0); /* three items ready */
    for (int i = 0; i < 3; i++)
        assert_int_equal(mpb_semaphore_acquire(sc, 0), 0);
    assert_int_equal(mpb_semaphore_acquire(sc, 0), MPB_ETIMEDOUT);
    mpb_semaphore_close(&sc);
    mpb_close(&cons);
    assert_int_equal(mpb_semaphore_value(sp, &v), 0);
    assert_int_equal(v, 0);

    /* a Semaphore(2) used as a pool of two: a taker's units do come back */
    mpb_semaphore_t *pool;
    cons = th_connect(&B);
    assert_int_equal(mpb_semaphore_open(cons, "pool2", 2, 0, &pool), 0);
    assert_int_equal(mpb_semaphore_acquire(pool, 0), 0);
    assert_int_equal(mpb_semaphore_acquire(pool, 0), 0);
    mpb_semaphore_close(&pool);
    mpb_close(&cons);
    assert_int_equal(mpb_semaphore_open(prod, "pool2", -1, -1, &pool), 0);
    assert_int_equal(mpb_semaphore_value(pool, &v), 0);
    assert_int_equal(v, 2);
    mpb_semaphore_close(&pool);
    mpb_semaphore_close(&sp);
    mpb_close(&prod);
}

/* A semaphore made by an open without a value, or by use, is Semaphore(1) until an open
 * gives its settings: the units taken stay taken, and a parked acquirer gets the new ones. */
static int sem_late_child(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_semaphore_t *s;
    CKC(c, mpb_semaphore_open(c, "late.sem", -1, -1, &s));
    CKC(c, mpb_semaphore_acquire(s, 20000));
    CKC(c, mpb_semaphore_release(s, 1));
    mpb_semaphore_close(&s);
    return 0;
}

static void test_semaphore_settings_come_from_the_first_open_that_gives_them(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_semaphore_t *s, *s2 = NULL;
    int64_t v;
    assert_int_equal(mpb_semaphore_open(c, "late.sem", -1, -1, &s), 0);
    assert_int_equal(th_describe_int(c, "semaphore/late.sem", "initial"), 1);
    assert_int_equal(mpb_semaphore_acquire(s, 0), 0); /* the default unit */
    pid_t p = th_client_spawn(sem_late_child, 0, NULL);
    assert_true(th_wait_field(c, "semaphore/late.sem", "waiters", 1, 20000));
    /* BoundedSemaphore(3): two more units, one of them for the parked acquirer */
    assert_int_equal(mpb_semaphore_open(c, "late.sem", 3, 1, &s2), 0);
    mpb_semaphore_close(&s2);
    assert_int_equal(th_wait(p, 30), 0);
    assert_int_equal(mpb_semaphore_value(s, &v), 0);
    assert_int_equal(v, 2); /* we still hold one */
    assert_int_equal(th_describe_int(c, "semaphore/late.sem", "initial"), 3);
    assert_int_equal(th_describe_int(c, "semaphore/late.sem", "bounded"), 1);
    assert_int_equal(mpb_semaphore_open(c, "late.sem", 4, -1, &s2), MPB_EINVAL);
    assert_non_null(strstr(mpb_errmsg(c), "exists with value 3, bounded"));
    assert_int_equal(mpb_semaphore_open(c, "late.sem", -1, 0, &s2), MPB_EINVAL);
    assert_null(s2);
    assert_int_equal(mpb_semaphore_open(c, "late.sem", 3, 1, &s2), 0);
    mpb_semaphore_close(&s2);
    assert_int_equal(mpb_semaphore_release(s, 1), 0);
    assert_int_equal(mpb_semaphore_release(s, 1), MPB_EVALUE);
    mpb_semaphore_close(&s);

    /* made Semaphore(0) after its default unit was taken: one unit is owed */
    assert_int_equal(mpb_semaphore_open(c, "late.sem0", -1, -1, &s), 0);
    assert_int_equal(mpb_semaphore_acquire(s, 0), 0);
    assert_int_equal(mpb_semaphore_open(c, "late.sem0", 0, 0, &s2), 0);
    mpb_semaphore_close(&s2);
    assert_int_equal(mpb_semaphore_value(s, &v), 0);
    assert_int_equal(v, -1);
    assert_int_equal(mpb_semaphore_acquire(s, 0), MPB_ETIMEDOUT);
    assert_int_equal(mpb_semaphore_release(s, 1), 0);
    assert_int_equal(mpb_semaphore_acquire(s, 0), MPB_ETIMEDOUT);
    assert_int_equal(mpb_semaphore_release(s, 1), 0);
    assert_int_equal(mpb_semaphore_acquire(s, 0), 0);
    mpb_semaphore_close(&s);

    /* each setting on its own */
    assert_int_equal(mpb_semaphore_open(c, "late.sem2", 5, -1, &s), 0);
    assert_int_equal(mpb_semaphore_release(s, 1), 0); /* not bounded yet: 6 */
    assert_int_equal(mpb_semaphore_open(c, "late.sem2", -1, 1, &s2), 0);
    mpb_semaphore_close(&s2);
    assert_int_equal(mpb_semaphore_release(s, 1), MPB_EVALUE); /* above its bound already */
    assert_int_equal(mpb_semaphore_acquire(s, 0), 0);
    assert_int_equal(mpb_semaphore_acquire(s, 0), 0);
    assert_int_equal(mpb_semaphore_release(s, 1), 0); /* ours: back to 5 */
    assert_int_equal(mpb_semaphore_release(s, 1), MPB_EVALUE);
    assert_int_equal(mpb_semaphore_open(c, "late.sem2", 6, -1, &s2), MPB_EINVAL);
    assert_int_equal(mpb_semaphore_open(c, "late.sem2", -1, 0, &s2), MPB_EINVAL);
    mpb_semaphore_close(&s);
    mpb_close(&c);
}

/* A release by someone who holds no unit pays off the oldest hold, so a session's end gives
 * back only the units nobody gave back for it. */
static void test_semaphore_release_by_another_pays_off_the_oldest_hold(void **state) {
    (void)state;
    mpb_client_t *a = th_connect(&B), *b = th_connect(&B), *d = th_connect(&B);
    mpb_semaphore_t *sa, *sb, *sd;
    int64_t v;
    assert_int_equal(mpb_semaphore_open(a, "payoff", 2, 0, &sa), 0);
    assert_int_equal(mpb_semaphore_open(b, "payoff", 2, 0, &sb), 0);
    assert_int_equal(mpb_semaphore_open(d, "payoff", 2, 0, &sd), 0);
    assert_int_equal(mpb_semaphore_acquire(sa, 0), 0);
    assert_int_equal(mpb_semaphore_acquire(sd, 0), 0);
    assert_int_equal(mpb_semaphore_release(sb, 1), 0); /* for a, the oldest */
    mpb_semaphore_close(&sa);
    mpb_close(&a); /* its unit was given back already */
    assert_int_equal(mpb_semaphore_value(sb, &v), 0);
    assert_int_equal(v, 1);
    mpb_semaphore_close(&sd);
    mpb_close(&d); /* d's was not */
    assert_int_equal(mpb_semaphore_value(sb, &v), 0);
    assert_int_equal(v, 2);

    /* a release of more than the releaser holds: its own first, then the oldest other */
    a = th_connect(&B);
    d = th_connect(&B);
    assert_int_equal(mpb_semaphore_open(a, "payoff", -1, -1, &sa), 0);
    assert_int_equal(mpb_semaphore_open(d, "payoff", -1, -1, &sd), 0);
    assert_int_equal(mpb_semaphore_acquire(sa, 0), 0);
    assert_int_equal(mpb_semaphore_acquire(sd, 0), 0);
    assert_int_equal(mpb_semaphore_release(sd, 2), 0);
    mpb_semaphore_close(&sa);
    mpb_close(&a);
    mpb_semaphore_close(&sd);
    mpb_close(&d);
    assert_int_equal(mpb_semaphore_value(sb, &v), 0);
    assert_int_equal(v, 2);
    /* nothing held: it may go */
    assert_int_equal(mpb_obj_delete(b, "semaphore/payoff"), 0);
    mpb_semaphore_close(&sb);
    mpb_close(&b);
}

/* Counts a client could push past int64 are refused with a reason, and change nothing. */
static int bar_huge_timeout_child(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_barrier_t *b;
    CKC(c, mpb_barrier_open(c, "ovf.bart", 0, -1, &b));
    int64_t index;
    CKC(c, mpb_barrier_wait(b, MPB_FOREVER, &index));
    CK(index == 0);
    mpb_barrier_close(&b);
    return 0;
}

static void test_counts_that_would_overflow_are_refused(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_semaphore_t *s;
    int64_t v;
    assert_int_equal(mpb_semaphore_open(c, "ovf.sem", 1, 0, &s), 0);
    assert_int_equal(mpb_semaphore_release(s, INT64_MAX), MPB_EOVERFLOW);
    assert_non_null(strstr(mpb_errmsg(c), "overflows"));
    assert_int_equal(mpb_semaphore_value(s, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(mpb_semaphore_release(s, INT64_MAX - 1), 0);
    assert_int_equal(mpb_semaphore_release(s, 1), MPB_EOVERFLOW);
    assert_int_equal(mpb_semaphore_acquire(s, 0), 0);
    assert_int_equal(mpb_semaphore_value(s, &v), 0);
    assert_int_equal(v, INT64_MAX - 1);
    mpb_semaphore_close(&s);

    assert_int_equal(mpb_semaphore_open(c, "ovf.bsem", INT64_MAX, 1, &s), 0);
    assert_int_equal(mpb_semaphore_acquire(s, 0), 0);
    assert_int_equal(mpb_semaphore_release(s, INT64_MAX), MPB_EVALUE); /* the bound first */
    assert_int_equal(mpb_semaphore_release(s, 1), 0);
    assert_int_equal(mpb_semaphore_release(s, 1), MPB_EVALUE);
    mpb_semaphore_close(&s);

    /* an initial value set late that the value cannot follow */
    mpb_semaphore_t *s2 = NULL;
    assert_int_equal(mpb_semaphore_open(c, "ovf.late", -1, -1, &s), 0);
    assert_int_equal(mpb_semaphore_release(s, INT64_MAX - 1), 0);
    assert_int_equal(mpb_semaphore_open(c, "ovf.late", INT64_MAX, -1, &s2), MPB_EOVERFLOW);
    assert_null(s2);
    assert_int_equal(th_describe_int(c, "semaphore/ovf.late", "initial"), 1);
    assert_int_equal(mpb_semaphore_open(c, "ovf.late", 1, -1, &s2), 0);
    mpb_semaphore_close(&s2);
    mpb_semaphore_close(&s);

    /* a barrier nobody could fill, and one whose own timeout is too long to add to a clock */
    mpb_barrier_t *b;
    int64_t parties, waiting;
    int broken;
    assert_int_equal(mpb_barrier_open(c, "ovf.bar", INT64_MAX, -1, &b), 0);
    assert_int_equal(mpb_barrier_state(b, &parties, NULL, NULL), 0);
    assert_int_equal(parties, INT64_MAX);
    assert_int_equal(mpb_barrier_wait(b, 0, NULL), MPB_EBROKEN);
    assert_int_equal(mpb_barrier_reset(b), 0);
    mpb_barrier_close(&b);
    static const uint8_t args[] = {0x92, 0x02, 0xcf, 0x7f, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff}; /* [2, INT64_MAX] */
    assert_int_equal(mpb_call(c, MPB_OP_BARRIER_OPEN, "ovf.bart", args, sizeof args, 0, NULL, NULL),
                     0);
    pid_t p = th_client_spawn(bar_huge_timeout_child, 0, NULL);
    assert_true(th_wait_field(c, "barrier/ovf.bart", "n_waiting", 1, 20000));
    usleep(300000); /* it does not time out at once */
    assert_int_equal(mpb_barrier_open(c, "ovf.bart", 2, -1, &b), 0);
    assert_int_equal(mpb_barrier_state(b, NULL, &waiting, &broken), 0);
    assert_int_equal(waiting, 1);
    assert_int_equal(broken, 0);
    int64_t index;
    assert_int_equal(mpb_barrier_wait(b, 5000, &index), 0);
    assert_int_equal(index, 1);
    assert_int_equal(th_wait(p, 30), 0);
    mpb_barrier_close(&b);
    mpb_close(&c);
}

/* ---- Value and Namespace ---- */

#define VAL_PROCS 8
#define VAL_ADDS  500

static int value_add_child(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_value_t *v;
    CKC(c, mpb_value_open(c, "val.count", NULL, 0, &v));
    for (int i = 0; i < VAL_ADDS; i++)
        CKC(c, mpb_value_add_i64(v, 1, NULL));
    mpb_value_close(&v);
    return 0;
}

static void test_value_ops(void **state) {
    (void)state;
    assert_int_equal(th_client_spawn_all(VAL_PROCS, value_add_child, NULL, 60), 0);
    mpb_client_t *c = th_connect(&B);
    mpb_value_t *v;
    int64_t x;
    assert_int_equal(mpb_value_open(c, "val.count", NULL, 0, &v), 0);
    assert_int_equal(mpb_value_get_i64(v, &x), 0);
    assert_int_equal(x, VAL_PROCS * VAL_ADDS);
    mpb_value_close(&v);

    /* get, set, add */
    uint8_t enc[MPB_PACK_MAX_SCALAR];
    assert_int_equal(mpb_value_open(c, "val.i", enc, mpb_pack_i64(enc, 10), &v), 0);
    assert_int_equal(mpb_value_get_i64(v, &x), 0);
    assert_int_equal(x, 10);
    assert_int_equal(mpb_value_add_i64(v, -15, &x), 0);
    assert_int_equal(x, -5);
    assert_int_equal(mpb_value_set_i64(v, 100), 0);
    mpb_value_t *again;
    /* the initial value applies only to a new Value */
    assert_int_equal(mpb_value_open(c, "val.i", enc, mpb_pack_i64(enc, 7), &again), 0);
    assert_int_equal(mpb_value_get_i64(again, &x), 0);
    assert_int_equal(x, 100);
    mpb_value_close(&again);
    assert_int_equal(mpb_value_set_i64(v, INT64_MAX), 0);
    assert_int_equal(mpb_value_add_i64(v, 1, NULL), MPB_EOVERFLOW);
    assert_int_equal(mpb_value_get_i64(v, &x), 0);
    assert_int_equal(x, INT64_MAX);
    /* a float on either side makes a float */
    double d;
    assert_int_equal(mpb_value_set_i64(v, 2), 0);
    assert_int_equal(mpb_value_add_double(v, 0.5, &d), 0);
    assert_true(d == 2.5);
    assert_int_equal(mpb_value_add_double(v, 1.25, &d), 0);
    assert_true(d == 3.75);
    void *raw;
    size_t rn;
    assert_int_equal(mpb_value_get(v, &raw, &rn), 0);
    assert_int_equal(mpb_unpack_double(raw, rn, &d), 0);
    assert_true(d == 3.75);
    mpb_free(raw);
    /* not a number */
    void *s;
    size_t sn = mpb_pack_str("seven", 5, &s);
    assert_true(sn > 0);
    assert_int_equal(mpb_value_set(v, s, sn), 0);
    assert_int_equal(mpb_value_add_i64(v, 1, NULL), MPB_ETYPE);
    assert_int_equal(mpb_value_add_double(v, 1.0, NULL), MPB_ETYPE);
    assert_int_equal(mpb_value_get_i64(v, &x), MPB_ETYPE);
    assert_int_equal(mpb_value_get(v, &raw, &rn), 0);
    assert_memory_equal(raw, s, sn);
    mpb_free(raw);
    mpb_free(s);
    mpb_value_close(&v);

    /* a Value is its own kind */
    mpb_dict_t *dd;
    assert_int_equal(mpb_dict_open(c, "val.dict", &dd), 0);
    assert_int_equal(mpb_value_open(c, "val.dict", NULL, 0, &v), MPB_EKIND);
    mpb_dict_close(&dd);
    mpb_close(&c);
}

static void test_namespace_ops(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_namespace_t *ns;
    assert_int_equal(mpb_namespace_open(c, "ns", &ns), 0);
    uint8_t enc[MPB_PACK_MAX_SCALAR];
    void *str;
    size_t sl = mpb_pack_str("text", 4, &str);
    assert_int_equal(mpb_namespace_set(ns, "a", enc, mpb_pack_i64(enc, 1)), 0);
    assert_int_equal(mpb_namespace_set(ns, "b", str, sl), 0);
    assert_int_equal(mpb_namespace_set(ns, "a", enc, mpb_pack_i64(enc, 2)), 0);
    void *val;
    size_t vl;
    int64_t x;
    assert_int_equal(mpb_namespace_get(ns, "a", &val, &vl), 0);
    assert_int_equal(mpb_unpack_i64(val, vl, &x), 0);
    assert_int_equal(x, 2);
    mpb_free(val);
    assert_int_equal(mpb_namespace_get(ns, "b", &val, &vl), 0);
    assert_int_equal(vl, sl);
    assert_memory_equal(val, str, sl);
    mpb_free(val);

    /* list: {a: 2, b: "text"} */
    void *map;
    size_t ml;
    assert_int_equal(mpb_namespace_list(ns, &map, &ml), 0);
    mpb__rd_t r = {map, (const uint8_t *)map + ml}, f;
    uint32_t n;
    mpb__rd_t r2 = r;
    assert_int_equal(mpb__rd_map(&r2, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(mpb__rd_mapget(&r, "a", &f), 0);
    assert_int_equal(mpb__rd_int(&f, &x), 0);
    assert_int_equal(x, 2);
    assert_int_equal(mpb__rd_mapget(&r, "b", &f), 0);
    mpb_free(map);

    /* del; a missing attribute is ENOKEY, naming it */
    assert_int_equal(mpb_namespace_del(ns, "a"), 0);
    assert_int_equal(mpb_namespace_get(ns, "a", &val, &vl), MPB_ENOKEY);
    assert_non_null(strstr(mpb_errmsg(c), "no attribute"));
    assert_non_null(strstr(mpb_errmsg(c), "a"));
    assert_int_equal(mpb_namespace_del(ns, "a"), MPB_ENOKEY);
    assert_int_equal(mpb_namespace_get(ns, "never", &val, &vl), MPB_ENOKEY);
    assert_int_equal(mpb_namespace_list(ns, &map, &ml), 0);
    r = (mpb__rd_t){map, (const uint8_t *)map + ml};
    assert_int_equal(mpb__rd_map(&r, &n), 0);
    assert_int_equal(n, 1);
    mpb_free(map);
    assert_int_equal(mpb_namespace_set(ns, "", enc, 1), MPB_EINVAL);
    mpb_free(str);

    /* another client sees the same attributes */
    mpb_client_t *o = th_connect(&B);
    mpb_namespace_t *ons;
    assert_int_equal(mpb_namespace_open(o, "ns", &ons), 0);
    assert_int_equal(mpb_namespace_get(ons, "b", &val, &vl), 0);
    mpb_free(val);
    mpb_namespace_close(&ons);
    mpb_close(&o);
    mpb_namespace_close(&ns);
    mpb_close(&c);
}

/* ---- the broker is still well ---- */

static void test_broker_still_serves_and_exits_cleanly(void **state) {
    (void)state;
    assert_true(th_broker_alive(&B));
    mpb_client_t *c = th_connect(&B);
    mpb_event_t *e;
    assert_int_equal(mpb_event_open(c, "final", &e), 0);
    assert_int_equal(mpb_event_set(e), 0);
    assert_int_equal(mpb_event_wait(e, 100), 1);
    th_assert_dict_roundtrip(c, "final.d", 5);
    mpb_event_close(&e);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

static const th_client_fn child_fns[] = {
    event_waiter,       barrier_rounds_child, barrier_expect_broken,
    barrier_once_child, cv_incr_child,        cv_waiter_child,
    sem_child,          sem_blocked_child,    value_add_child,
    cv_del_child,       sem_late_child,       bar_huge_timeout_child,
};

int main(int argc, char **argv) {
    th_client_main(argc, argv, &B, child_fns, TH_NELEMS(child_fns), NULL, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_set_wakes_every_waiter),
        cmocka_unit_test(test_barrier_rounds_hand_out_each_index_once),
        cmocka_unit_test(test_barrier_timeout_abort_and_reset),
        cmocka_unit_test(test_condition_wait_for_a_counter),
        cmocka_unit_test(test_condition_notify_wakes_exactly_n),
        cmocka_unit_test(test_condition_wait_timeout_and_misuse),
        cmocka_unit_test(test_condition_lock_cannot_be_deleted_under_its_waiters),
        cmocka_unit_test(test_semaphore_limits_and_errors),
        cmocka_unit_test(test_signalling_semaphore_units_do_not_come_back),
        cmocka_unit_test(test_semaphore_settings_come_from_the_first_open_that_gives_them),
        cmocka_unit_test(test_semaphore_release_by_another_pays_off_the_oldest_hold),
        cmocka_unit_test(test_counts_that_would_overflow_are_refused),
        cmocka_unit_test(test_value_ops),
        cmocka_unit_test(test_namespace_ops),
        cmocka_unit_test(test_broker_still_serves_and_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
