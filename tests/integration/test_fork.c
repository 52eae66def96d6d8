/* test_fork.c - a client across fork(), as mpb.h documents it: in a forked child every call on
 * the inherited client fails with MPB_EFORK and a message that says what to do; mpb_close() of
 * it in the child (or exiting without closing it) leaves the parent's connection and session
 * alone; a new mpb_connect() in the child gets a session of its own; and the parent's session
 * keeps working throughout, a lock it holds staying held (by it, with its token).
 *
 * The parent's client runs without the heartbeat thread: a child forked while that thread is
 * inside malloc would inherit a held allocator lock under ASan (its allocator has no fork
 * handlers here). The test is short enough for the TTL; libzmq's own thread is idle when it
 * forks, nothing being in flight. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th_child.h"

static th_broker_t B;

typedef struct parent {
    mpb_client_t *c;
    mpb_dict_t *d;
    mpb_lock_t *l;
    uint64_t session, fence;
    pid_t pid;
    bool close_inherited; /* what the child does with the parent's client */
} parent_t;

static int forked_child(int idx, void *arg) {
    (void)idx;
    parent_t *p = arg;
    alarm(60);
    /* Every call on what the parent connected fails, and says why and what to do. */
    int64_t v = 0;
    int rc = mpb_dict_get_i64(p->d, "k", &v);
    CK(rc == MPB_EFORK);
    char pidstr[32];
    snprintf(pidstr, sizeof pidstr, "process %d", (int)p->pid);
    const char *msg = mpb_errmsg(p->c);
    if (!strstr(msg, "after fork") || !strstr(msg, "mpb_connect()") || !strstr(msg, pidstr)) {
        fprintf(stderr, "[child] EFORK message: '%s'\n", msg);
        return 1;
    }
    CK(mpb_dict_set_i64(p->d, "k", 666) == MPB_EFORK);
    CK(mpb_lock_release(p->l) == MPB_EFORK); /* the parent's lock is not the child's to give */
    uint64_t f;
    CK(mpb_lock_acquire(p->l, 0, &f) == MPB_EFORK);
    void *m;
    size_t n;
    CK(mpb_broker_info(p->c, &m, &n) == MPB_EFORK);
    CK(mpb_session_id(p->c) == p->session); /* still says whose it was */
    if (p->close_inherited) {
        mpb_dict_close(&p->d);
        mpb_lock_close(&p->l);
        mpb_close(&p->c);
        CK(p->c == NULL);
    }

    /* A client of its own: a new session, the same objects. */
    mpb_client_t *c = NULL;
    CK(th_connect_opts(&B, NULL, &c) == 0);
    uint64_t mine = mpb_session_id(c);
    CK(mine != 0 && mine != p->session);
    mpb_dict_t *d;
    mpb_lock_t *l;
    CKC(c, mpb_dict_open(c, "fork", &d));
    CKC(c, mpb_lock_open(c, "fork.lock", &l));
    CKC(c, mpb_dict_get_i64(d, "k", &v));
    CK(v == 42);
    CKC(c, mpb_dict_set_i64(d, p->close_inherited ? "child.closed" : "child.left", (int64_t)mine));
    CK(mpb_lock_locked(l) == 1); /* the parent's, still */
    CK(mpb_lock_acquire(l, 50, &f) == MPB_ETIMEDOUT);
    CK(mpb_lock_release(l) == MPB_ENOTOWNER);
    mpb_lock_close(&l);
    mpb_dict_close(&d);
    mpb_close(&c);
    return 0; /* exits with the inherited client still open when close_inherited is false */
}

/* The parent's session answers, is the same one, and still owns the lock with its token. */
static void parent_intact(parent_t *p) {
    int64_t v = 0;
    assert_int_equal(mpb_dict_get_i64(p->d, "k", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(mpb_session_id(p->c), p->session);
    assert_int_equal(mpb_lock_locked(p->l), 1);
    assert_int_equal(th_describe_int(p->c, "lock/fork.lock", "fence"), (int64_t)p->fence);
    void *m;
    mpb__rd_t owner, sv;
    assert_int_equal(th_describe_get(p->c, "lock/fork.lock", "owner", &m, &owner), 0);
    uint64_t who = 0;
    assert_int_equal(mpb__rd_mapget(&owner, "session", &sv), 0);
    assert_int_equal(mpb__rd_uint(&sv, &who), 0);
    mpb_free(m);
    assert_int_equal(who, p->session);
}

static void test_fork_child_gets_efork_and_its_own_session(void **state) {
    (void)state;
    parent_t p = {0};
    mpb_options_t o;
    mpb_options_init(&o);
    o.no_heartbeat_thread = 1; /* see the top of the file */
    assert_int_equal(th_connect_opts(&B, &o, &p.c), 0);
    p.session = mpb_session_id(p.c);
    p.pid = getpid();
    assert_int_equal(mpb_dict_open(p.c, "fork", &p.d), 0);
    assert_int_equal(mpb_lock_open(p.c, "fork.lock", &p.l), 0);
    assert_int_equal(mpb_dict_set_i64(p.d, "k", 42), 0);
    assert_int_equal(mpb_lock_acquire(p.l, 0, &p.fence), 0);

    for (int round = 0; round < 2; round++) {
        p.close_inherited = round == 0;
        pid_t pid = th_fork(forked_child, &p);
        assert_true(pid > 0);
        assert_int_equal(th_wait(pid, 60), 0);
        parent_intact(&p); /* the child's close (or its exit) changed nothing here */
        int64_t child = 0;
        assert_int_equal(mpb_dict_get_i64(p.d, round == 0 ? "child.closed" : "child.left", &child),
                         0);
        assert_true(child != 0 && (uint64_t)child != p.session);
    }

    /* The parent can still let go of its lock (it is the owner), and a sibling client gets
     * it next with a larger token. */
    assert_int_equal(mpb_lock_release(p.l), 0);
    mpb_client_t *c2 = th_connect(&B);
    mpb_lock_t *l2;
    uint64_t f2 = 0;
    assert_int_equal(mpb_lock_open(c2, "fork.lock", &l2), 0);
    assert_int_equal(mpb_lock_acquire(l2, 1000, &f2), 0);
    assert_true(f2 > p.fence);
    assert_int_equal(mpb_lock_release(l2), 0);
    mpb_lock_close(&l2);
    mpb_close(&c2);
    mpb_lock_close(&p.l);
    mpb_dict_close(&p.d);
    mpb_close(&p.c);
}

/* The child of a process whose heartbeat thread is busy signing pings: the fork waits for that
 * thread to be between rounds, so the inherited client's MAC contexts are whole and the
 * child's mpb_close() frees each once (under ASan a context copied mid-update was freed
 * twice). The child exits with _exit: nothing else of the parent's is the child's to run. */
static int close_inherited_child(int idx, void *arg) {
    (void)idx;
    mpb_client_t **cp = arg;
    alarm(20);
    mpb_dict_t *d = NULL;
    if (mpb_dict_open(*cp, "fork.hb", &d) != MPB_EFORK || d) return 1;
    mpb_close(cp);
    return *cp == NULL ? 0 : 2;
}

static void test_fork_while_heartbeat_thread_pings(void **state) {
    (void)state;
    mpb_options_t o;
    mpb_options_init(&o);
    o.heartbeat_ms = 2; /* a ping every millisecond: the thread is nearly always signing */
    mpb_client_t *c = NULL;
    assert_int_equal(th_connect_opts(&B, &o, &c), 0);
    uint64_t session = mpb_session_id(c);
    for (int i = 0; i < 40; i++) {
        usleep(700 + (unsigned)i * 37); /* land at different points of the ping cycle */
        pid_t pid = th_fork(close_inherited_child, &c);
        assert_true(pid > 0);
        assert_int_equal(th_wait(pid, 30), 0);
    }
    /* the parent's session went on undisturbed */
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "fork.hb", &d), 0);
    assert_int_equal(mpb_dict_set_i64(d, "n", 40), 0);
    int64_t n = 0;
    assert_int_equal(mpb_dict_get_i64(d, "n", &n), 0);
    assert_int_equal(n, 40);
    assert_int_equal(mpb_session_id(c), session);
    mpb_dict_close(&d);
    mpb_close(&c);
}

static void test_broker_still_serves_and_exits_cleanly(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    int64_t x;
    assert_int_equal(mpb_dict_open(c, "fork", &d), 0);
    assert_int_equal(mpb_dict_get_i64(d, "k", &x), 0);
    assert_int_equal(x, 42); /* no child's write got through the inherited client */
    mpb_dict_close(&d);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

int main(void) {
    th_suite(&B, NULL, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_child_gets_efork_and_its_own_session),
        cmocka_unit_test(test_fork_while_heartbeat_thread_pings),
        cmocka_unit_test(test_broker_still_serves_and_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
