/* test_expiry.c - what a session leaves behind when its process dies. The broker runs with a
 * 200 ms heartbeat and a 1 s session TTL; a process is SIGKILLed while it holds a Lock, RLock
 * levels, Semaphore units, or waits on a Condition, a Queue or a Barrier. Within the TTL (plus
 * slack) its locks and units pass to the next waiter, with a larger fencing token, and its
 * parked waits are dropped without using up a notify or an item. mpb_close() gives everything
 * back at once, and a client that stops heartbeating finds its session gone. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mpbproto.h"
#include "th_child.h"

static th_broker_t B;

#define TTL_MS   1000
#define PASS_MS  3000 /* a dead holder's lock must pass on within this after the kill */
#define CLOSE_MS 500  /* ... and a closed holder's, well under the TTL */
#define SLACK_MS 300

/* Records key = v in dict "exp" with a client of the caller's. */
static int note(mpb_client_t *c, const char *key, int64_t v) {
    mpb_dict_t *d;
    int rc = mpb_dict_open(c, "exp", &d);
    if (!rc) rc = mpb_dict_set_i64(d, key, v);
    mpb_dict_close(&d);
    return rc;
}

/* Waits up to timeout_ms for key to appear in dict "exp"; returns its value or INT64_MIN. */
static int64_t await_note(mpb_client_t *c, const char *key, int timeout_ms) {
    mpb_dict_t *d;
    int64_t v = INT64_MIN;
    if (mpb_dict_open(c, "exp", &d)) return v;
    int64_t end = th_now_ms() + timeout_ms;
    while (mpb_dict_get_i64(d, key, &v) != 0) {
        v = INT64_MIN;
        if (th_now_ms() > end) break;
        usleep(5000);
    }
    mpb_dict_close(&d);
    return v;
}

/* Empties dict "exp" for a test's notes: the dict, open (close it at the end). */
static mpb_dict_t *clear_notes(mpb_client_t *c) {
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "exp", &d), 0);
    assert_int_equal(mpb_dict_clear(d), 0);
    return d;
}

/* The holder's pid of the lock at path; 0 when free. */
static int64_t lock_owner_pid(mpb_client_t *c, const char *path) {
    void *m;
    mpb__rd_t v, f;
    if (th_describe_get(c, path, "owner", &m, &v)) return -1;
    int64_t pid = 0;
    if (mpb__rd_type(&v) == MPB__MT_MAP &&
        (mpb__rd_mapget(&v, "pid", &f) != 0 || mpb__rd_int(&f, &pid) != 0))
        pid = -1;
    mpb_free(m);
    return pid;
}

static void kill_child(pid_t p) {
    kill(p, SIGKILL);
    int st;
    waitpid(p, &st, 0);
}

/* Kills child p and waits (up to PASS_MS) until field of path reads want: the broker has
 * noticed. Prints after how long, as "what N ms after the kill". */
static void kill_until(mpb_client_t *c, pid_t p, const char *path, const char *field, int64_t want,
                       const char *what) {
    int64_t t_kill = th_now_ms();
    kill_child(p);
    assert_true(th_wait_field(c, path, field, want, PASS_MS));
    print_message("%s %lld ms after the kill\n", what, (long long)(th_now_ms() - t_kill));
}

/* ---- a killed Lock holder ---- */

/* Opens the lock named "lock/NAME" or the rlock named "rlock/NAME". */
static int open_named_lock(mpb_client_t *c, const char *name, mpb_lock_t **l) {
    const char *bare = strchr(name, '/') + 1;
    return name[0] == 'r' ? mpb_rlock_open(c, bare, l) : mpb_lock_open(c, bare, l);
}

static int lock_holder(mpb_client_t *c, TH_UNUSED int idx, const char *arg) {
    const char *name = arg; /* "lock/NAME" or "rlock/NAME" */
    bool rlock = name[0] == 'r';
    mpb_lock_t *l;
    CKC(c, open_named_lock(c, name, &l));
    uint64_t f = 0;
    for (int i = 0; i < (rlock ? 3 : 1); i++)
        CKC(c, mpb_lock_acquire(l, MPB_FOREVER, &f));
    CKC(c, note(c, "holder.fence", (int64_t)f));
    for (;;)
        pause(); /* until killed; the heartbeat thread keeps the session alive */
}

static int lock_waiter(mpb_client_t *c, TH_UNUSED int idx, const char *arg) {
    const char *name = arg;
    mpb_lock_t *l;
    CKC(c, open_named_lock(c, name, &l));
    uint64_t f = 0;
    CKC(c, mpb_lock_acquire(l, MPB_FOREVER, &f));
    int64_t got = th_now_ms();
    CKC(c, note(c, "waiter.got_ms", got));
    CKC(c, note(c, "waiter.fence", (int64_t)f));
    /* ours alone, one level: the dead holder's levels did not carry over */
    void *m;
    mpb__rd_t v;
    CK(th_describe_get(c, name, "count", &m, &v) == 0);
    int64_t count = -1;
    mpb__rd_int(&v, &count);
    mpb_free(m);
    CK(count == 1);
    CKC(c, mpb_lock_release(l));
    CK(mpb_lock_release(l) == MPB_ENOTOWNER);
    mpb_lock_close(&l);
    return 0;
}

/* Kills a holder of path and measures how long until the blocked waiter had the lock. */
static void dead_holder_passes_on(const char *path, int hold_ms) {
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d = clear_notes(c);
    pid_t holder = th_client_spawn(lock_holder, 0, path);
    int64_t f1 = await_note(c, "holder.fence", 20000);
    assert_true(f1 > 0);
    pid_t waiter = th_client_spawn(lock_waiter, 0, path);
    assert_true(th_wait_field(c, path, "waiters", 1, 20000));
    /* an idle holder stays the holder past the TTL: its heartbeat thread speaks for it */
    for (int64_t end = th_now_ms() + hold_ms; th_now_ms() < end;) {
        assert_int_equal(lock_owner_pid(c, path), holder);
        usleep(100000);
    }
    assert_int_equal(th_describe_int(c, path, "waiters"), 1);
    int64_t t_kill = th_now_ms();
    kill_child(holder);
    assert_int_equal(th_wait(waiter, 20), 0);
    int64_t got = await_note(c, "waiter.got_ms", 1000);
    int64_t f2 = await_note(c, "waiter.fence", 1000);
    print_message("%s: SIGKILLed holder's lock passed on %lld ms after the kill (TTL %d ms); "
                  "fence %lld -> %lld\n",
                  path, (long long)(got - t_kill), TTL_MS, (long long)f1, (long long)f2);
    assert_true(got >= t_kill);
    assert_true(got - t_kill < PASS_MS);
    assert_true(f2 > f1);
    assert_int_equal(lock_owner_pid(c, path), 0);
    mpb_dict_close(&d);
    mpb_close(&c);
}

static void test_killed_lock_holder_passes_the_lock_on(void **state) {
    (void)state;
    dead_holder_passes_on("lock/dead.lock", TTL_MS + 500);
}

static void test_killed_rlock_holder_three_levels_deep(void **state) {
    (void)state;
    dead_holder_passes_on("rlock/dead.rlock", 0);
}

/* ---- a killed Semaphore holder ---- */

static int sem_holder(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_semaphore_t *s;
    CKC(c, mpb_semaphore_open(c, "dead.sem", 2, 0, &s));
    CKC(c, mpb_semaphore_acquire(s, MPB_FOREVER));
    CKC(c, mpb_semaphore_acquire(s, MPB_FOREVER));
    CKC(c, note(c, "sem.held", 2));
    for (;;)
        pause();
}

static int sem_waiter(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_semaphore_t *s;
    CKC(c, mpb_semaphore_open(c, "dead.sem", 2, 0, &s));
    CKC(c, mpb_semaphore_acquire(s, MPB_FOREVER));
    CKC(c, note(c, "sem.got_ms", th_now_ms()));
    int64_t v;
    CKC(c, mpb_semaphore_value(s, &v));
    CK(v == 1); /* both dead units back, one of them now ours */
    mpb_semaphore_close(&s);
    return 0; /* the harness closes c, which gives our unit back too */
}

static void test_killed_semaphore_holder_gives_its_units_back(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d = clear_notes(c);
    pid_t holder = th_client_spawn(sem_holder, 0, NULL);
    assert_int_equal(await_note(c, "sem.held", 20000), 2);
    pid_t waiter = th_client_spawn(sem_waiter, 0, NULL);
    assert_true(th_wait_field(c, "semaphore/dead.sem", "waiters", 1, 20000));
    assert_int_equal(th_describe_int(c, "semaphore/dead.sem", "value"), 0);
    int64_t t_kill = th_now_ms();
    kill_child(holder);
    assert_int_equal(th_wait(waiter, 20), 0);
    int64_t got = await_note(c, "sem.got_ms", 1000);
    print_message("semaphore(2): SIGKILLed holder's units came back %lld ms after the kill\n",
                  (long long)(got - t_kill));
    assert_true(got >= t_kill && got - t_kill < PASS_MS);
    assert_int_equal(th_describe_int(c, "semaphore/dead.sem", "value"), 2);
    mpb_dict_close(&d);
    mpb_close(&c);
}

/* ---- a killed Condition waiter ---- */

static int cv_waiter(mpb_client_t *c, TH_UNUSED int idx, const char *arg) {
    bool expect_wakeup = arg != NULL;
    mpb_condition_t *cv;
    CKC(c, mpb_condition_open(c, "dead.cv", "lock/dead.cv.lock", &cv));
    CKC(c, mpb_condition_acquire(cv, MPB_FOREVER, NULL));
    int rc = mpb_condition_wait(cv, MPB_FOREVER);
    CKC(c, rc);
    CK(rc == 1 && expect_wakeup);
    CKC(c, mpb_condition_release(cv));
    mpb_condition_close(&cv);
    return 0;
}

/* Parks two cv_waiter children on dead.cv, each counted by the broker before the next:
 * first the doomed one (returned, for the test to kill), then a live one (*live) that
 * expects to be woken. */
static pid_t park_doomed_and_live(mpb_client_t *c, pid_t *live) {
    pid_t dead = th_client_spawn(cv_waiter, 0, NULL);
    assert_true(th_wait_field(c, "condition/dead.cv", "waiters", 1, 20000));
    *live = th_client_spawn(cv_waiter, 1, "wake");
    assert_true(th_wait_field(c, "condition/dead.cv", "waiters", 2, 20000));
    return dead;
}

static void test_killed_condition_waiter_is_dropped(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_condition_t *cv;
    assert_int_equal(mpb_condition_open(c, "dead.cv", "lock/dead.cv.lock", &cv), 0);
    pid_t live, dead = park_doomed_and_live(c, &live);
    kill_until(c, dead, "condition/dead.cv", "waiters", 1, "condition: SIGKILLed waiter dropped");
    /* notify(1) goes to the live waiter: the dead one does not use it up */
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    assert_int_equal(mpb_condition_notify(cv, 1), 1);
    assert_int_equal(mpb_condition_release(cv), 0);
    assert_int_equal(th_wait(live, 10), 0);
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    assert_int_equal(mpb_condition_notify(cv, 1), 0);
    assert_int_equal(mpb_condition_release(cv), 0);

    /* A waiter notified after it died (before its session expired) is granted the lock when
     * the notifier lets go: the lock then passes on at the TTL like any dead holder's. */
    dead = th_client_spawn(cv_waiter, 2, NULL);
    assert_true(th_wait_field(c, "condition/dead.cv", "waiters", 1, 20000));
    kill_child(dead);
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    assert_int_equal(mpb_condition_notify(cv, 1), 1);
    int64_t t_kill = th_now_ms();
    assert_int_equal(mpb_condition_release(cv), 0);
    assert_int_equal(lock_owner_pid(c, "lock/dead.cv.lock"), dead);
    assert_int_equal(mpb_condition_acquire(cv, PASS_MS, NULL), 0);
    print_message("condition: lock granted to a dead notified waiter came back after %lld ms\n",
                  (long long)(th_now_ms() - t_kill));
    assert_int_equal(mpb_condition_release(cv), 0);
    mpb_condition_close(&cv);
    mpb_close(&c);
}

/* A notify that woke a waiter which then died is not lost: when the dead session ends, the
 * notification passes to the next waiter of the condition. The notifier lets go at once
 * (the dead waiter is granted the lock and holds it until its TTL), or holds the lock past
 * the TTL (the dead waiter is still queued for the lock). */
static void notify_of_dead_waiter_passes_on(bool hold_past_ttl) {
    mpb_client_t *c = th_connect(&B);
    mpb_condition_t *cv;
    assert_int_equal(mpb_condition_open(c, "dead.cv", "lock/dead.cv.lock", &cv), 0);
    pid_t live, dead = park_doomed_and_live(c, &live);
    int64_t t_kill = th_now_ms();
    kill_child(dead);
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    assert_int_equal(mpb_condition_notify(cv, 1), 1); /* the dead one: it was first */
    assert_int_equal(th_describe_int(c, "condition/dead.cv", "waiters"), 1);
    if (hold_past_ttl) {
        /* the live waiter leaves the condition for the lock's queue when the dead one ends */
        assert_true(th_wait_field(c, "condition/dead.cv", "waiters", 0, PASS_MS));
        assert_int_equal(th_describe_int(c, "lock/dead.cv.lock", "waiters"), 1);
        assert_int_equal(mpb_condition_release(cv), 0);
    } else {
        assert_int_equal(mpb_condition_release(cv), 0);
        assert_int_equal(lock_owner_pid(c, "lock/dead.cv.lock"), dead);
    }
    assert_int_equal(th_wait(live, 10), 0); /* woken with 1, and it held the lock */
    int64_t dt = th_now_ms() - t_kill;
    print_message("condition: notify taken by a SIGKILLed waiter reached the next one %lld ms "
                  "after the kill (TTL %d ms)%s\n",
                  (long long)dt, TTL_MS, hold_past_ttl ? ", notifier holding the lock" : "");
    assert_true(dt < PASS_MS + SLACK_MS);
    assert_int_equal(lock_owner_pid(c, "lock/dead.cv.lock"), 0);
    assert_int_equal(th_describe_int(c, "condition/dead.cv", "waiters"), 0);
    /* nothing left over: a notify now wakes nobody, and both objects may go */
    assert_int_equal(mpb_condition_acquire(cv, 0, NULL), 0);
    assert_int_equal(mpb_condition_notify(cv, 1), 0);
    assert_int_equal(mpb_condition_release(cv), 0);
    assert_int_equal(mpb_obj_delete(c, "condition/dead.cv"), 0);
    assert_int_equal(mpb_obj_delete(c, "lock/dead.cv.lock"), 0);
    mpb_condition_close(&cv);
    mpb_close(&c);
}

static void test_notify_taken_by_a_dead_waiter_passes_on(void **state) {
    (void)state;
    notify_of_dead_waiter_passes_on(false);
    notify_of_dead_waiter_passes_on(true);
}

/* An RLock condition waiter three levels deep, woken by a notifier that dies holding the
 * lock: it gets the lock back at the notifier's TTL with its three levels, and no more. */
static int rl_cv_waiter(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_condition_t *cv;
    CKC(c, mpb_condition_open(c, "rl.cv", NULL, &cv));
    for (int i = 0; i < 3; i++)
        CKC(c, mpb_condition_acquire(cv, MPB_FOREVER, NULL));
    int rc = mpb_condition_wait(cv, MPB_FOREVER);
    CKC(c, rc);
    CK(rc == 1);
    CK(th_describe_int(c, "rlock/rl.cv.lock", "count") == 3);
    CK(lock_owner_pid(c, "rlock/rl.cv.lock") == getpid());
    for (int i = 0; i < 3; i++)
        CKC(c, mpb_condition_release(cv));
    CK(mpb_condition_release(cv) == MPB_ENOTOWNER);
    mpb_condition_close(&cv);
    return 0;
}

static int rl_cv_notifier(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_condition_t *cv;
    CKC(c, mpb_condition_open(c, "rl.cv", NULL, &cv));
    CKC(c, mpb_condition_acquire(cv, MPB_FOREVER, NULL));
    CKC(c, mpb_condition_acquire(cv, MPB_FOREVER, NULL));
    CK(mpb_condition_notify(cv, 1) == 1);
    CKC(c, note(c, "rl.notified", 1));
    for (;;)
        pause();
}

static void test_rlock_levels_survive_a_dead_notifier(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    pid_t w = th_client_spawn(rl_cv_waiter, 0, NULL);
    assert_true(th_wait_field(c, "condition/rl.cv", "waiters", 1, 20000));
    pid_t n = th_client_spawn(rl_cv_notifier, 0, NULL);
    assert_int_equal(await_note(c, "rl.notified", 20000), 1);
    assert_int_equal(th_describe_int(c, "rlock/rl.cv.lock", "count"), 2);
    int64_t t_kill = th_now_ms();
    kill_child(n);
    assert_int_equal(th_wait(w, 10), 0);
    print_message("condition on an RLock: woken waiter had its 3 levels back %lld ms after the "
                  "notifier holding 2 was SIGKILLed\n",
                  (long long)(th_now_ms() - t_kill));
    assert_true(th_now_ms() - t_kill < PASS_MS + SLACK_MS);
    assert_int_equal(lock_owner_pid(c, "rlock/rl.cv.lock"), 0);
    assert_int_equal(th_describe_int(c, "rlock/rl.cv.lock", "count"), 0);
    mpb_close(&c);
}

/* ---- a killed semaphore holder whose unit someone else gave back ---- */

static int ph_holder(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_semaphore_t *s;
    mpb_lock_t *l;
    CKC(c, mpb_semaphore_open(c, "ph.sem", 2, 0, &s));
    CKC(c, mpb_lock_open(c, "ph.lock", &l)); /* its release tells the session is gone */
    CKC(c, mpb_semaphore_acquire(s, MPB_FOREVER));
    CKC(c, mpb_lock_acquire(l, MPB_FOREVER, NULL));
    CKC(c, note(c, "ph.held", 1));
    for (;;)
        pause();
}

static void test_dead_holder_gives_back_only_units_nobody_released(void **state) {
    (void)state;
    mpb_client_t *b = th_connect(&B), *cc = th_connect(&B);
    mpb_semaphore_t *sb, *sc;
    int64_t v;
    assert_int_equal(mpb_semaphore_open(b, "ph.sem", 2, 0, &sb), 0);
    assert_int_equal(mpb_semaphore_open(cc, "ph.sem", 2, 0, &sc), 0);
    pid_t a = th_client_spawn(ph_holder, 0, NULL);
    assert_int_equal(await_note(b, "ph.held", 20000), 1);
    assert_int_equal(mpb_semaphore_release(sb, 1), 0); /* B gives back A's unit */
    assert_int_equal(mpb_semaphore_acquire(sc, 0), 0); /* C takes one */
    assert_int_equal(mpb_semaphore_value(sb, &v), 0);
    assert_int_equal(v, 1);
    int64_t t_kill = th_now_ms();
    kill_child(a);
    int64_t end = t_kill + PASS_MS;
    while (lock_owner_pid(b, "lock/ph.lock") != 0 && th_now_ms() < end)
        usleep(5000);
    assert_int_equal(lock_owner_pid(b, "lock/ph.lock"), 0);
    assert_int_equal(mpb_semaphore_value(sb, &v), 0);
    print_message("semaphore(2): A's session ended %lld ms after the kill; value %lld with C "
                  "holding one\n",
                  (long long)(th_now_ms() - t_kill), (long long)v);
    assert_int_equal(v, 1); /* not 2: B already gave A's unit back */
    assert_int_equal(mpb_semaphore_release(sc, 1), 0);
    assert_int_equal(mpb_semaphore_value(sb, &v), 0);
    assert_int_equal(v, 2);
    mpb_semaphore_close(&sb);
    mpb_semaphore_close(&sc);
    mpb_close(&b);
    mpb_close(&cc);
}

/* ---- killed Queue and Barrier waiters ---- */

static int q_getter(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_queue_t *q;
    CKC(c, mpb_queue_open(c, "dead.q", -1, -1, &q));
    void *v;
    size_t n;
    CKC(c, mpb_queue_get(q, &v, &n, MPB_FOREVER));
    mpb_free(v);
    return 1; /* it should have been killed before */
}

static int q_putter(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_queue_t *q;
    CKC(c, mpb_queue_open(c, "dead.jq", -1, -1, &q));
    uint8_t b[MPB_PACK_MAX_SCALAR];
    CKC(c, mpb_queue_put(q, b, mpb_pack_i64(b, 2), MPB_FOREVER));
    return 1;
}

static int bar_party(mpb_client_t *c, TH_UNUSED int idx, const char *arg) {
    bool doomed = arg == NULL;
    mpb_barrier_t *b;
    CKC(c, mpb_barrier_open(c, "dead.bar", 3, -1, &b));
    int rc = mpb_barrier_wait(b, MPB_FOREVER, NULL);
    CK(!doomed && rc == MPB_EBROKEN);
    CK(strstr(mpb_errmsg(c), "session ended") != NULL);
    mpb_barrier_close(&b);
    return 0;
}

static void test_killed_queue_and_barrier_waiters_are_dropped(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    uint8_t b[MPB_PACK_MAX_SCALAR];

    /* a dead getter does not swallow the next item (once its session is gone) */
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "dead.q", 0, 0, &q), 0);
    pid_t g = th_client_spawn(q_getter, 0, NULL);
    assert_true(th_wait_field(c, "queue/dead.q", "getters", 1, 20000));
    kill_until(c, g, "queue/dead.q", "getters", 0, "queue: SIGKILLed getter dropped");
    assert_int_equal(mpb_queue_put(q, b, mpb_pack_i64(b, 1), 0), 0);
    uint64_t n;
    assert_int_equal(mpb_queue_qsize(q, &n), 0);
    assert_int_equal(n, 1);
    mpb_queue_close(&q);

    /* a dead putter's item never gets in, and is no task of a JoinableQueue */
    assert_int_equal(mpb_queue_open(c, "dead.jq", 1, 1, &q), 0);
    assert_int_equal(mpb_queue_put(q, b, mpb_pack_i64(b, 1), 0), 0);
    pid_t p = th_client_spawn(q_putter, 0, NULL);
    assert_true(th_wait_field(c, "queue/dead.jq", "putters", 1, 20000));
    kill_until(c, p, "queue/dead.jq", "putters", 0, "queue: SIGKILLed putter dropped");
    assert_int_equal(th_describe_int(c, "queue/dead.jq", "unfinished"), 1);
    void *v;
    size_t vl;
    int64_t x;
    assert_int_equal(mpb_queue_get(q, &v, &vl, 0), 0);
    assert_int_equal(mpb_unpack_i64(v, vl, &x), 0);
    mpb_free(v);
    assert_int_equal(x, 1);
    assert_int_equal(mpb_queue_get(q, &v, &vl, 0), MPB_EEMPTY);
    assert_int_equal(mpb_queue_task_done(q), 0);
    assert_int_equal(mpb_queue_join(q, 0), 0);
    assert_int_equal(mpb_queue_task_done(q), MPB_EVALUE);
    mpb_queue_close(&q);

    /* a party that dies breaks the barrier for the others */
    mpb_barrier_t *br;
    assert_int_equal(mpb_barrier_open(c, "dead.bar", 3, -1, &br), 0);
    pid_t doomed = th_client_spawn(bar_party, 0, NULL);
    assert_true(th_wait_field(c, "barrier/dead.bar", "n_waiting", 1, 20000));
    pid_t other = th_client_spawn(bar_party, 1, "live");
    assert_true(th_wait_field(c, "barrier/dead.bar", "n_waiting", 2, 20000));
    int64_t t_kill = th_now_ms();
    kill_child(doomed);
    assert_int_equal(th_wait(other, 10), 0);
    print_message("barrier: broken for the others %lld ms after a party was SIGKILLed\n",
                  (long long)(th_now_ms() - t_kill));
    assert_true(th_now_ms() - t_kill < PASS_MS);
    int broken;
    int64_t waiting;
    assert_int_equal(mpb_barrier_state(br, NULL, &waiting, &broken), 0);
    assert_int_equal(broken, 1);
    assert_int_equal(waiting, 0);
    assert_int_equal(mpb_barrier_reset(br), 0);
    mpb_barrier_close(&br);
    mpb_close(&c);
}

/* A party that dies waiting alone breaks the barrier too: the parties still to come would
 * otherwise wait for it in vain. */
static void test_lone_dead_barrier_party_breaks_it(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_barrier_t *br;
    assert_int_equal(mpb_barrier_open(c, "dead.bar", 3, -1, &br), 0);
    assert_int_equal(mpb_barrier_reset(br), 0);
    pid_t doomed = th_client_spawn(bar_party, 0, NULL);
    assert_true(th_wait_field(c, "barrier/dead.bar", "n_waiting", 1, 20000));
    kill_until(c, doomed, "barrier/dead.bar", "broken", 1,
               "barrier: a lone SIGKILLed party broke it");
    assert_int_equal(th_describe_int(c, "barrier/dead.bar", "n_waiting"), 0);
    assert_int_equal(mpb_barrier_wait(br, 5000, NULL), MPB_EBROKEN);
    assert_non_null(strstr(mpb_errmsg(c), "reset"));
    assert_int_equal(mpb_barrier_reset(br), 0);
    assert_int_equal(th_describe_int(c, "barrier/dead.bar", "broken"), 0);
    mpb_barrier_close(&br);
    mpb_close(&c);
}

/* ---- mpb_close gives back at once ---- */

static int closing_holder(int idx, const char *arg) {
    (void)idx;
    (void)arg;
    mpb_client_t *c = th_child_connect();
    CK(c);
    mpb_lock_t *l;
    mpb_semaphore_t *s;
    mpb_event_t *e;
    CKC(c, mpb_lock_open(c, "close.lock", &l));
    CKC(c, mpb_semaphore_open(c, "close.sem", 1, 1, &s));
    CKC(c, mpb_event_open(c, "close.now", &e));
    CKC(c, mpb_lock_acquire(l, MPB_FOREVER, NULL));
    CKC(c, mpb_semaphore_acquire(s, MPB_FOREVER));
    CKC(c, note(c, "close.held", 1));
    CK(mpb_event_wait(e, 30000) == 1);
    mpb_event_close(&e);
    mpb_semaphore_close(&s);
    mpb_lock_close(&l);
    mpb_close(&c); /* no release: closing ends the session */
    for (;;)
        pause(); /* the process lives on: only the session ended */
}

static int closing_waiter(mpb_client_t *c, TH_UNUSED int idx, TH_UNUSED const char *arg) {
    mpb_lock_t *l;
    mpb_semaphore_t *s;
    CKC(c, mpb_lock_open(c, "close.lock", &l));
    CKC(c, mpb_semaphore_open(c, "close.sem", 1, 1, &s));
    CKC(c, mpb_lock_acquire(l, MPB_FOREVER, NULL));
    CKC(c, mpb_semaphore_acquire(s, MPB_FOREVER));
    CKC(c, note(c, "close.got_ms", th_now_ms()));
    CKC(c, mpb_semaphore_release(s, 1));
    CKC(c, mpb_lock_release(l));
    mpb_semaphore_close(&s);
    mpb_lock_close(&l);
    return 0;
}

static void test_close_releases_at_once(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_event_t *e;
    assert_int_equal(mpb_event_open(c, "close.now", &e), 0);
    pid_t holder = th_child_spawn(closing_holder, 0, NULL);
    assert_int_equal(await_note(c, "close.held", 20000), 1);
    pid_t waiter = th_client_spawn(closing_waiter, 0, NULL);
    assert_true(th_wait_field(c, "lock/close.lock", "waiters", 1, 20000));
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_event_set(e), 0);
    assert_int_equal(th_wait(waiter, 10), 0);
    int64_t got = await_note(c, "close.got_ms", 1000);
    print_message("mpb_close(): lock and semaphore unit passed on %lld ms after the holder was "
                  "told to close (TTL %d ms)\n",
                  (long long)(got - t0), TTL_MS);
    assert_true(got >= t0 && got - t0 < CLOSE_MS);
    assert_int_equal(th_describe_int(c, "lock/close.lock", "locked"), 0);
    assert_int_equal(th_describe_int(c, "semaphore/close.sem", "value"), 1);
    kill_child(holder);
    mpb_event_close(&e);
    mpb_close(&c);
}

/* ---- a client that stops heartbeating ---- */

static void test_silent_client_loses_its_session(void **state) {
    (void)state;
    mpb_client_t *quiet = th_connect_quiet(&B); /* heartbeats only from within calls */
    mpb_client_t *c = th_connect(&B);
    mpb_lock_t *lq, *lc;
    assert_int_equal(mpb_lock_open(quiet, "quiet.lock", &lq), 0);
    assert_int_equal(mpb_lock_open(c, "quiet.lock", &lc), 0);
    uint64_t f1, f2;
    assert_int_equal(mpb_lock_acquire(lq, 0, &f1), 0);
    /* a blocking call heartbeats while it waits: a long wait does not expire the session */
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(quiet, "quiet.q", 0, 0, &q), 0);
    void *v;
    size_t vl;
    assert_int_equal(mpb_queue_get(q, &v, &vl, TTL_MS + 500), MPB_ETIMEDOUT);
    assert_int_equal(lock_owner_pid(c, "lock/quiet.lock"), getpid());
    /* silence longer than the TTL: the session ends and the lock passes on */
    int64_t t0 = th_now_ms();
    assert_int_equal(mpb_lock_acquire(lc, PASS_MS, &f2), 0);
    print_message("silent client's lock passed on after %lld ms\n", (long long)(th_now_ms() - t0));
    assert_true(f2 > f1);
    assert_int_equal(mpb_lock_release(lq), MPB_ESESSION);
    assert_non_null(strstr(mpb_errmsg(quiet), "session"));
    assert_int_equal(mpb_lock_release(lc), 0);
    mpb_queue_close(&q);
    mpb_lock_close(&lq);
    mpb_lock_close(&lc);
    mpb_close(&quiet);
    mpb_close(&c);
}

/* ---- the broker is still well ---- */

static void test_broker_still_serves_and_exits_cleanly(void **state) {
    (void)state;
    assert_true(th_broker_alive(&B));
    mpb_client_t *c = th_connect(&B);
    mpb_lock_t *l;
    assert_int_equal(mpb_lock_open(c, "dead.lock", &l), 0);
    assert_int_equal(mpb_lock_acquire(l, 0, NULL), 0);
    assert_int_equal(mpb_lock_release(l), 0);
    th_assert_dict_roundtrip(c, "final.d", 5);
    void *info;
    size_t il;
    assert_int_equal(mpb_broker_info(c, &info, &il), 0);
    mpb__rd_t r = {info, (const uint8_t *)info + il}, f;
    int64_t sessions = -1, waiters = -1;
    assert_int_equal(mpb__rd_mapget(&r, "sessions", &f), 0);
    assert_int_equal(mpb__rd_int(&f, &sessions), 0);
    assert_int_equal(mpb__rd_mapget(&r, "waiters", &f), 0);
    assert_int_equal(mpb__rd_int(&f, &waiters), 0);
    mpb_free(info);
    assert_int_equal(sessions, 1); /* every dead session is gone */
    assert_int_equal(waiters, 0);
    mpb_lock_close(&l);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

static int setup(void **state) {
    (void)state;
    th_broker_start(&B, "--heartbeat-ms", "200", "--session-ttl-ms", "1000", NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    th_broker_stop(&B);
    return 0;
}

static const th_client_fn child_fns[] = {
    lock_holder, lock_waiter, sem_holder,     sem_waiter,   cv_waiter,      q_getter,
    q_putter,    bar_party,   closing_waiter, rl_cv_waiter, rl_cv_notifier, ph_holder,
};
static const th_child_fn bare_fns[] = {closing_holder}; /* closes its client and lives on */

int main(int argc, char **argv) {
    th_client_main(argc, argv, &B, child_fns, TH_NELEMS(child_fns), bare_fns, TH_NELEMS(bare_fns));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_killed_lock_holder_passes_the_lock_on),
        cmocka_unit_test(test_killed_rlock_holder_three_levels_deep),
        cmocka_unit_test(test_killed_semaphore_holder_gives_its_units_back),
        cmocka_unit_test(test_killed_condition_waiter_is_dropped),
        cmocka_unit_test(test_notify_taken_by_a_dead_waiter_passes_on),
        cmocka_unit_test(test_rlock_levels_survive_a_dead_notifier),
        cmocka_unit_test(test_killed_queue_and_barrier_waiters_are_dropped),
        cmocka_unit_test(test_lone_dead_barrier_party_breaks_it),
        cmocka_unit_test(test_dead_holder_gives_back_only_units_nobody_released),
        cmocka_unit_test(test_close_releases_at_once),
        cmocka_unit_test(test_silent_client_loses_its_session),
        cmocka_unit_test(test_broker_still_serves_and_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
