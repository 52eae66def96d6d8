/* test_anon.c - anonymous objects, as Python's manager.dict() makes them: opened without a
 * name, they get one of the broker's ("~" and 16 hex digits) and live while some session holds
 * a reference. Every kind is deleted when its last handle closes; references from several
 * processes keep one alive until all are given back; a holder's session that ends by
 * mpb_close, by expiry or by SIGKILL gives its references back; calls parked on a deleted one
 * are answered ENOOBJ; the grace period lets a name passed on be taken up after its sender let
 * go; named objects keep their rules; bad requests get clear errors. The broker runs with a
 * 200 ms heartbeat, a 1 s session TTL and no grace period (deletion is immediate), except in
 * the grace test, which starts a broker of its own. */
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
#define GONE_MS  4000 /* a dead holder's objects must be gone within this after the kill */
#define GRACE_MS 1500 /* the grace test's broker */

/* One sample of the broker's /metrics page. */
static double metric(const char *series) {
    char *page = th_http_request(th_http_port(&B), "GET", "/metrics");
    double v = th_metric(page, series, -1);
    free(page);
    return v;
}

/* Whether the object kind/name exists: 1, 0 (ENOOBJ), or the unexpected error. */
static int exists(mpb_client_t *c, const char *kind, const char *name) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s", kind, name);
    void *m = NULL;
    size_t n;
    int rc = mpb_obj_describe(c, path, &m, &n);
    mpb_free(m);
    return rc == 0 ? 1 : rc == MPB_ENOOBJ ? 0 : rc;
}

static int64_t refs_of(mpb_client_t *c, const char *kind, const char *name) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s", kind, name);
    return th_describe_int(c, path, "refs");
}

/* Polls until kind/name is gone; false if it is still there after timeout_ms. */
static bool wait_gone(mpb_client_t *c, const char *kind, const char *name, int timeout_ms) {
    int64_t end = th_now_ms() + timeout_ms;
    for (;;) {
        int e = exists(c, kind, name);
        if (e == 0) return true;
        if (th_now_ms() > end) return false;
        usleep(10000);
    }
}

static void assert_anon_name(const char *name) {
    assert_non_null(name);
    assert_int_equal(strlen(name), 17);
    assert_int_equal(name[0], '~');
    for (int i = 1; i < 17; i++)
        assert_non_null(strchr("0123456789abcdef", name[i]));
}

/* Whether `mpb ls` lists kind/name with the given size. */
static bool ls_shows(const char *kind, const char *name, int size) {
    char cmd[1200], line[512], want[400];
    snprintf(cmd, sizeof cmd, "MPB_ENDPOINT='%s' MPB_AUTHKEY_FILE='%s' '%s' ls", B.endpoint,
             B.keyfile, th_mpb_cli);
    snprintf(want, sizeof want, "%s/%s", kind, name);
    FILE *p = popen(cmd, "r");
    if (!p) return false;
    bool found = false;
    while (fgets(line, sizeof line, p)) {
        char *at = strstr(line, want);
        if (!at) continue;
        int sz = -1;
        for (char *q = at + strlen(want); *q; q++)
            if (*q >= '0' && *q <= '9') {
                sz = atoi(q);
                break;
            }
        found = found || sz == size;
    }
    return pclose(p) == 0 && found;
}

/* ---- every kind, deleted when its last holder closes ---- */

#define NKINDS 11
static const char *const kinds[NKINDS] = {"dict",    "list",      "queue",     "lock",
                                          "rlock",   "semaphore", "condition", "event",
                                          "barrier", "value",     "namespace"};

/* One anonymous object of every kind, made through the typed opens with name NULL. */
typedef struct every {
    mpb_dict_t *d;
    mpb_list_t *l;
    mpb_queue_t *q;
    mpb_lock_t *lk, *rl;
    mpb_semaphore_t *s;
    mpb_condition_t *cv;
    mpb_event_t *e;
    mpb_barrier_t *b;
    mpb_value_t *v;
    mpb_namespace_t *ns;
    char names[NKINDS][18]; /* in the order of kinds[] */
} every_t;

/* Opens them all on c: a joinable Queue(3), a BoundedSemaphore(2), a Barrier(3), a Value(7).
 * Returns 0 or the first error. */
static int every_open(mpb_client_t *c, every_t *h) {
    size_t n;
    const uint8_t *seven = th_int(7, &n);
    int rc;
    if ((rc = mpb_dict_open(c, NULL, &h->d)) || (rc = mpb_list_open(c, NULL, &h->l)) ||
        (rc = mpb_queue_open(c, NULL, 3, 1, &h->q)) || (rc = mpb_lock_open(c, NULL, &h->lk)) ||
        (rc = mpb_rlock_open(c, NULL, &h->rl)) || (rc = mpb_semaphore_open(c, NULL, 2, 1, &h->s)) ||
        (rc = mpb_condition_open(c, NULL, NULL, &h->cv)) || (rc = mpb_event_open(c, NULL, &h->e)) ||
        (rc = mpb_barrier_open(c, NULL, 3, -1, &h->b)) ||
        (rc = mpb_value_open(c, NULL, seven, n, &h->v)) ||
        (rc = mpb_namespace_open(c, NULL, &h->ns)))
        return rc;
    const char *names[NKINDS] = {
        mpb_dict_name(h->d),       mpb_list_name(h->l),       mpb_queue_name(h->q),
        mpb_lock_name(h->lk),      mpb_lock_name(h->rl),      mpb_semaphore_name(h->s),
        mpb_condition_name(h->cv), mpb_event_name(h->e),      mpb_barrier_name(h->b),
        mpb_value_name(h->v),      mpb_namespace_name(h->ns),
    };
    for (int i = 0; i < NKINDS; i++)
        snprintf(h->names[i], sizeof h->names[i], "%s", names[i]);
    return 0;
}

static void every_close(every_t *h) {
    mpb_dict_close(&h->d);
    mpb_list_close(&h->l);
    mpb_queue_close(&h->q);
    mpb_lock_close(&h->lk);
    mpb_lock_close(&h->rl);
    mpb_semaphore_close(&h->s);
    mpb_condition_close(&h->cv);
    mpb_event_close(&h->e);
    mpb_barrier_close(&h->b);
    mpb_value_close(&h->v);
    mpb_namespace_close(&h->ns);
}

/* How many of the objects named exist now, the condition's RLock counted as a twelfth. */
static int every_existing(mpb_client_t *c, char names[NKINDS][18]) {
    int n = 0;
    for (int i = 0; i < NKINDS; i++)
        n += exists(c, kinds[i], names[i]) == 1;
    char cvlock[32];
    snprintf(cvlock, sizeof cvlock, "%s.lock", names[6]);
    return n + (exists(c, "rlock", cvlock) == 1);
}

static void test_every_kind_lives_until_its_handle_closes(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    int64_t anon0 = th_info_int(c, "anonymous");
    every_t h;
    th_assert_ok(every_open(c, &h), c);
    struct {
        const char *kind, *name;
    } all[NKINDS];
    for (int i = 0; i < NKINDS; i++)
        all[i].kind = kinds[i], all[i].name = h.names[i];
    const int N = NKINDS;
    for (int i = 0; i < N; i++) {
        assert_anon_name(all[i].name);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(all[i].name, all[j].name);
        char path[300];
        snprintf(path, sizeof path, "%s/%s", all[i].kind, all[i].name);
        assert_int_equal(th_describe_int(c, path, "anonymous"), 1);
        assert_int_equal(th_describe_int(c, path, "refs"), 1);
        assert_int_equal(th_describe_int(c, path, "holders"), 1);
        assert_int_equal(th_describe_int(c, path, "delete_in_ms"), -1);
    }
    assert_int_equal(th_info_int(c, "anonymous"), anon0 + N);
    assert_int_equal(th_info_int(c, "refs"), N);
    assert_true(metric("mpb_anonymous_objects") == (double)(anon0 + N));
    assert_true(metric("mpb_anonymous_refs") == (double)N);
    double deleted0 = metric("mpb_anonymous_deleted_total");
    assert_true(deleted0 >= 0);
    /* the open's settings took: a joinable queue of 3, a bounded Semaphore(2), Barrier(3) */
    char path[300];
    snprintf(path, sizeof path, "queue/%s", mpb_queue_name(h.q));
    assert_int_equal(th_describe_int(c, path, "maxsize"), 3);
    assert_int_equal(th_describe_int(c, path, "joinable"), 1);
    snprintf(path, sizeof path, "semaphore/%s", mpb_semaphore_name(h.s));
    assert_int_equal(th_describe_int(c, path, "initial"), 2);
    assert_int_equal(th_describe_int(c, path, "bounded"), 1);
    snprintf(path, sizeof path, "barrier/%s", mpb_barrier_name(h.b));
    assert_int_equal(th_describe_int(c, path, "parties"), 3);
    int64_t got;
    th_assert_ok(mpb_value_get_i64(h.v, &got), c);
    assert_int_equal(got, 7);
    /* the condition's own RLock is "<name>.lock", and it works */
    char cvlock[64];
    snprintf(cvlock, sizeof cvlock, "%s.lock", mpb_condition_name(h.cv));
    assert_int_equal(exists(c, "rlock", cvlock), 1);
    th_assert_ok(mpb_condition_acquire(h.cv, 0, NULL), c);
    th_assert_ok(mpb_condition_release(h.cv), c);
    /* used as any object, shown by mpb ls */
    size_t n;
    const uint8_t *seven = th_int(7, &n);
    th_assert_ok(mpb_dict_set_i64(h.d, "k", 41), c);
    th_assert_ok(mpb_list_append(h.l, seven, n), c);
    th_assert_ok(mpb_list_append(h.l, seven, n), c);
    assert_true(ls_shows("dict", mpb_dict_name(h.d), 1));
    assert_true(ls_shows("list", mpb_list_name(h.l), 2));
    assert_true(ls_shows("event", mpb_event_name(h.e), 0));
    assert_int_equal(every_existing(c, h.names), NKINDS + 1);
    every_close(&h);
    assert_int_equal(every_existing(c, h.names), 0);
    char(*names)[18] = h.names;
    assert_int_equal(th_info_int(c, "anonymous"), anon0);
    assert_int_equal(th_info_int(c, "refs"), 0);
    assert_true(metric("mpb_anonymous_objects") == (double)anon0);
    assert_true(metric("mpb_anonymous_refs") == 0);
    assert_true(metric("mpb_anonymous_deleted_total") == deleted0 + N);
    /* a use of a gone name is an error, not a new or empty object */
    mpb_dict_t *again;
    assert_int_equal(mpb_dict_attach(c, names[0], &again), 0);
    int64_t x;
    th_assert_err(mpb_dict_get_i64(again, "k", &x), MPB_ENOOBJ, c, names[0], "anonymous");
    th_assert_err(mpb_dict_set_i64(again, "k", 1), MPB_ENOOBJ, c, names[0], NULL);
    mpb_dict_close(&again);
    assert_int_equal(exists(c, "dict", names[0]), 0);
    mpb_close(&c);
}

/* ---- references from several processes ---- */

#define HOLDERS 4

/* Takes a reference to the queue named arg by opening it, puts its index, and gives the
 * reference back by closing the handle when event anon.go.IDX is set. */
static int ref_holder(int idx, const char *arg) {
    mpb_client_t *c = th_child_connect();
    CK(c);
    mpb_queue_t *q;
    CKC(c, mpb_queue_open(c, arg, -1, -1, &q));
    size_t n;
    const uint8_t *v = th_int(idx, &n);
    CKC(c, mpb_queue_put(q, v, n, 0));
    char ev[32];
    snprintf(ev, sizeof ev, "anon.go.%d", idx);
    mpb_event_t *e;
    CKC(c, mpb_event_open(c, ev, &e));
    CK(mpb_event_wait(e, 20000) == 1);
    mpb_queue_close(&q);
    mpb_event_close(&e);
    for (;;)
        pause(); /* the session lives on: only the handle's close gave the ref back */
}

static void test_refs_from_several_processes_keep_it_alive(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    th_assert_ok(mpb_queue_open(c, NULL, -1, -1, &q), c);
    char name[18];
    snprintf(name, sizeof name, "%s", mpb_queue_name(q));
    pid_t kids[HOLDERS];
    for (int i = 0; i < HOLDERS; i++)
        kids[i] = th_child_spawn(ref_holder, i, name);
    char path[300];
    snprintf(path, sizeof path, "queue/%s", name);
    assert_true(th_wait_field(c, path, "refs", 1 + HOLDERS, 10000));
    assert_int_equal(th_describe_int(c, path, "holders"), 1 + HOLDERS);
    assert_true(th_wait_field(c, path, "size", HOLDERS, 5000));
    /* the maker lets go: the children keep it */
    mpb_queue_close(&q);
    assert_int_equal(refs_of(c, "queue", name), HOLDERS);
    assert_int_equal(th_describe_int(c, path, "size"), HOLDERS);
    for (int i = 0; i < HOLDERS; i++) {
        char ev[32];
        snprintf(ev, sizeof ev, "anon.go.%d", i);
        mpb_event_t *e;
        th_assert_ok(mpb_event_open(c, ev, &e), c);
        th_assert_ok(mpb_event_set(e), c);
        mpb_event_close(&e);
        if (i < HOLDERS - 1) {
            assert_true(th_wait_field(c, path, "refs", HOLDERS - 1 - i, 5000));
            assert_int_equal(th_describe_int(c, path, "size"), HOLDERS);
        }
    }
    assert_true(wait_gone(c, "queue", name, 5000));
    for (int i = 0; i < HOLDERS; i++) {
        kill(kids[i], SIGKILL);
        th_wait(kids[i], 10);
    }
    mpb_close(&c);
}

/* ---- a holder's session ends ---- */

/* Makes an anonymous object of every kind (and takes its lock), notes their names in dict
 * anon.names under "IDX.K" (K: the index in kinds[]), then ends as arg says: "close"
 * (mpb_close without closing the handles), "kill" (waits to be SIGKILLed). */
static int session_holder(int idx, const char *arg) {
    mpb_client_t *c = th_child_connect();
    CK(c);
    every_t h;
    CKC(c, every_open(c, &h));
    CKC(c, mpb_lock_acquire(h.lk, 0, NULL));
    mpb_dict_t *notes;
    CKC(c, mpb_dict_open(c, "anon.names", &notes));
    for (int i = 0; i < NKINDS; i++) {
        char key[16];
        size_t kn, vn;
        snprintf(key, sizeof key, "%d.%d", idx, i);
        const uint8_t *k = th_str(key, &kn), *v = th_str(h.names[i], &vn);
        CKC(c, mpb_dict_set(notes, k, kn, v, vn));
    }
    mpb_dict_close(&notes);
    if (!strcmp(arg, "close")) {
        mpb_close(&c); /* the handles are left open: the session's end is what counts */
        every_close(&h);
        return 0;
    }
    for (;;)
        pause();
}

/* The names a session_holder idx noted, waiting for them up to 10 s. */
static void noted_names(mpb_client_t *c, int idx, char out[NKINDS][18]) {
    mpb_dict_t *notes;
    th_assert_ok(mpb_dict_open(c, "anon.names", &notes), c);
    for (int i = 0; i < NKINDS; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d.%d", idx, i);
        size_t kn;
        const uint8_t *k = th_str(key, &kn);
        void *v = NULL;
        size_t vn;
        int64_t end = th_now_ms() + 10000;
        while (mpb_dict_get(notes, k, kn, &v, &vn) != 0) {
            assert_true(th_now_ms() < end);
            usleep(10000);
        }
        const char *s;
        size_t sl;
        assert_int_equal(mpb_unpack_str(v, vn, &s, &sl), 0);
        assert_int_equal(sl, 17);
        memcpy(out[i], s, sl);
        out[i][sl] = 0;
        mpb_free(v);
    }
    mpb_dict_close(&notes);
}

static void test_holder_closing_its_client_gives_back_all(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    pid_t p = th_child_spawn(session_holder, 0, "close");
    assert_int_equal(th_wait(p, 20), 0);
    char names[NKINDS][18];
    noted_names(c, 0, names);
    /* mpb_close said bye: nothing waits for the TTL */
    assert_int_equal(every_existing(c, names), 0);
    mpb_close(&c);
}

static void test_killed_holder_gives_back_all_after_its_ttl(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    pid_t p = th_child_spawn(session_holder, 1, "kill");
    char names[NKINDS][18];
    noted_names(c, 1, names);
    assert_int_equal(every_existing(c, names), NKINDS + 1);
    char path[300];
    snprintf(path, sizeof path, "lock/%s", names[3]);
    assert_int_equal(th_describe_int(c, path, "locked"), 1);
    int64_t t0 = th_now_ms();
    kill(p, SIGKILL);
    th_wait(p, 10);
    /* the session lives until its TTL, and its objects with it */
    assert_int_equal(every_existing(c, names), NKINDS + 1);
    while (every_existing(c, names) > 0 && th_now_ms() - t0 < GONE_MS)
        usleep(10000);
    int64_t took = th_now_ms() - t0;
    assert_int_equal(every_existing(c, names), 0);
    print_message("killed holder's anonymous objects gone after %lld ms (TTL %d ms)\n",
                  (long long)took, TTL_MS);
    assert_true(took >= TTL_MS - 50);
    mpb_close(&c);
}

static void test_silent_holder_expires_and_gives_back_all(void **state) {
    (void)state;
    mpb_client_t *quiet = th_connect_quiet(&B); /* heartbeats only from within calls */
    mpb_client_t *c = th_connect(&B);
    every_t h;
    th_assert_ok(every_open(quiet, &h), quiet);
    assert_int_equal(every_existing(c, h.names), NKINDS + 1);
    int64_t t0 = th_now_ms();
    while (every_existing(c, h.names) > 0 && th_now_ms() - t0 < TTL_MS + 3000)
        usleep(10000);
    assert_int_equal(every_existing(c, h.names), 0);
    size_t one;
    const uint8_t *v = th_int(1, &one);
    assert_int_equal(mpb_namespace_set(h.ns, "a", v, one), MPB_ESESSION);
    every_close(&h); /* its session is gone: nothing to give back, no crash */
    mpb_close(&quiet);
    mpb_close(&c);
}

/* ---- a handle across fork() ---- */

typedef struct forked {
    mpb_client_t *c;
    mpb_dict_t *d;
} forked_t;

/* In a forked child: closing the inherited handle and client gives back nothing of the
 * parent's; the child's own open of the name takes (and its close gives back) one of its own. */
static int forked_child(int idx, void *arg) {
    (void)idx;
    forked_t *f = arg;
    char name[18];
    snprintf(name, sizeof name, "%s", mpb_dict_name(f->d));
    mpb_dict_close(&f->d);
    mpb_close(&f->c);
    mpb_client_t *c = th_connect(&B);
    char path[300];
    snprintf(path, sizeof path, "dict/%s", name);
    if (th_describe_int(c, path, "refs") != 1) return 1;
    mpb_dict_t *d;
    if (mpb_dict_open(c, name, &d)) return 2;
    if (th_describe_int(c, path, "refs") != 2) return 3;
    if (mpb_dict_set_i64(d, "child", 1)) return 4;
    mpb_dict_close(&d);
    if (th_describe_int(c, path, "refs") != 1) return 5;
    mpb_close(&c);
    return 0;
}

static void test_a_forked_child_gives_back_only_its_own(void **state) {
    (void)state;
    mpb_options_t o;
    mpb_options_init(&o);
    o.no_heartbeat_thread = 1; /* no thread of ours inside malloc when it forks */
    forked_t f;
    assert_int_equal(th_connect_opts(&B, &o, &f.c), 0);
    th_assert_ok(mpb_dict_open(f.c, NULL, &f.d), f.c);
    char name[18];
    snprintf(name, sizeof name, "%s", mpb_dict_name(f.d));
    pid_t p = th_fork(forked_child, &f);
    assert_int_equal(th_wait(p, 20), 0);
    assert_int_equal(refs_of(f.c, "dict", name), 1);
    int64_t v;
    th_assert_ok(mpb_dict_get_i64(f.d, "child", &v), f.c);
    assert_int_equal(v, 1);
    mpb_dict_close(&f.d);
    assert_int_equal(exists(f.c, "dict", name), 0);
    mpb_close(&f.c);
}

/* ---- calls parked on an object that goes ---- */

/* Parks a call on the object that arg names ("queue:NAME", "lock:NAME" or "condition:NAME"),
 * without a reference of its own, and expects ENOOBJ when the object goes. */
static int bare_waiter(int idx, const char *arg) {
    (void)idx;
    mpb_client_t *c = th_child_connect();
    CK(c);
    const char *name = strchr(arg, ':') + 1;
    void *res = NULL;
    size_t rn;
    int rc;
    if (!strncmp(arg, "queue:", 6)) {
        uint8_t args[] = {0x91, 0xff}; /* [-1]: wait forever */
        rc = mpb_call(c, MPB_OP_QUEUE_GET, name, args, sizeof args, MPB_FOREVER, &res, &rn);
    } else if (!strncmp(arg, "lock:", 5)) {
        uint8_t args[] = {0x92, 0x01, 0xff}; /* [tid 1, -1] */
        rc = mpb_call(c, MPB_OP_LOCK_ACQUIRE, name, args, sizeof args, MPB_FOREVER, &res, &rn);
    } else {
        char lock[64];
        snprintf(lock, sizeof lock, "%s.lock", name);
        uint8_t acq[] = {0x92, 0x01, 0x00}; /* [tid 1, 0] */
        CKC(c, mpb_call(c, MPB_OP_RLOCK_ACQUIRE, lock, acq, sizeof acq, 0, &res, &rn));
        mpb_free(res);
        res = NULL;
        uint8_t args[] = {0x92, 0x01, 0xff};
        rc = mpb_call(c, MPB_OP_COND_WAIT, name, args, sizeof args, MPB_FOREVER, &res, &rn);
    }
    mpb_free(res);
    CK(rc == MPB_ENOOBJ);
    CK(strstr(mpb_errmsg(c), "deleted") != NULL);
    CK(strstr(mpb_errmsg(c), name) != NULL);
    mpb_close(&c);
    return 0;
}

static void test_parked_calls_get_enoobj_when_it_goes(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    mpb_lock_t *l;
    mpb_condition_t *cv;
    th_assert_ok(mpb_queue_open(c, NULL, -1, -1, &q), c);
    th_assert_ok(mpb_lock_open(c, NULL, &l), c);
    th_assert_ok(mpb_lock_acquire(l, 0, NULL), c);
    th_assert_ok(mpb_condition_open(c, NULL, NULL, &cv), c);
    char arg[3][64], path[3][300];
    snprintf(arg[0], sizeof arg[0], "queue:%s", mpb_queue_name(q));
    snprintf(path[0], sizeof path[0], "queue/%s", mpb_queue_name(q));
    snprintf(arg[1], sizeof arg[1], "lock:%s", mpb_lock_name(l));
    snprintf(path[1], sizeof path[1], "lock/%s", mpb_lock_name(l));
    snprintf(arg[2], sizeof arg[2], "condition:%s", mpb_condition_name(cv));
    snprintf(path[2], sizeof path[2], "condition/%s", mpb_condition_name(cv));
    const char *field[3] = {"getters", "waiters", "waiters"};
    pid_t w[3];
    for (int i = 0; i < 3; i++) {
        w[i] = th_child_spawn(bare_waiter, i, arg[i]);
        assert_true(th_wait_field(c, path[i], field[i], 1, 10000));
        assert_int_equal(th_describe_int(c, path[i], "refs"), 1); /* the waiter holds none */
    }
    mpb_queue_close(&q);
    mpb_lock_close(&l); /* held by c: deleted all the same */
    mpb_condition_close(&cv);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(th_wait(w[i], 10), 0);
        assert_int_equal(exists(c,
                                i == 0   ? "queue"
                                : i == 1 ? "lock"
                                         : "condition",
                                strchr(arg[i], ':') + 1),
                         0);
    }
    assert_int_equal(th_info_int(c, "waiters"), 0);
    mpb_close(&c);
}

/* ---- an operator's delete ---- */

static void test_delete_forgets_the_references(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B), *op = th_connect(&B);
    mpb_event_t *e, *e2;
    th_assert_ok(mpb_event_open(c, NULL, &e), c);
    th_assert_ok(mpb_event_open(op, mpb_event_name(e), &e2), op);
    char path[300];
    snprintf(path, sizeof path, "event/%s", mpb_event_name(e));
    assert_int_equal(th_describe_int(c, path, "refs"), 2);
    assert_int_equal(th_info_int(c, "refs"), 2);
    th_assert_ok(mpb_obj_delete(op, path), op);
    assert_int_equal(th_info_int(c, "refs"), 0);
    assert_int_equal(th_info_int(c, "anonymous"), 0);
    th_assert_err(mpb_event_set(e), MPB_ENOOBJ, c, NULL, NULL);
    th_assert_err((int)mpb_unref(c, "event", mpb_event_name(e)), MPB_ENOOBJ, c, NULL, NULL);
    mpb_event_close(&e); /* its reference is gone already: nothing to give back */
    mpb_event_close(&e2);
    assert_int_equal(th_info_int(c, "refs"), 0);
    mpb_close(&op);
    mpb_close(&c);
}

/* ---- named objects keep their rules ---- */

static void test_named_objects_are_unaffected(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "anon.named", &d), c);
    th_assert_ok(mpb_dict_set_i64(d, "k", 5), c);
    mpb_dict_close(&d);
    mpb_close(&c);
    c = th_connect(&B);
    /* no reference, no deletion: closing handles and clients leaves it as it was */
    assert_int_equal(exists(c, "dict", "anon.named"), 1);
    assert_int_equal(th_describe_int(c, "dict/anon.named", "refs"), INT64_MIN);
    assert_int_equal(th_describe_int(c, "dict/anon.named", "anonymous"), INT64_MIN);
    th_assert_err((int)mpb_ref(c, "dict", "anon.named"), MPB_EINVAL, c, "named object", NULL);
    th_assert_err((int)mpb_unref(c, "dict", "anon.named"), MPB_EINVAL, c, "named object", NULL);
    th_assert_ok(mpb_dict_open(c, "anon.named", &d), c);
    int64_t v;
    th_assert_ok(mpb_dict_get_i64(d, "k", &v), c);
    assert_int_equal(v, 5);
    mpb_dict_close(&d);
    /* reads of a missing named object still find it empty, writes still make it */
    th_assert_ok(mpb_dict_attach(c, "anon.fresh", &d), c);
    assert_int_equal(mpb_dict_get_i64(d, "k", &v), MPB_ENOKEY);
    th_assert_ok(mpb_dict_set_i64(d, "k", 1), c);
    mpb_dict_close(&d);
    assert_int_equal(exists(c, "dict", "anon.fresh"), 1);
    /* no named open can make a name of the broker's */
    th_assert_err(mpb_dict_open(c, "~0000000000000001", &d), MPB_ENOOBJ, c, "anonymous", NULL);
    assert_null(d);
    mpb_queue_t *q;
    th_assert_err(mpb_queue_open(c, "~mine", 1, 0, &q), MPB_ENOOBJ, c, NULL, NULL);
    assert_int_equal(exists(c, "queue", "~mine"), 0);
    mpb_condition_t *cv;
    th_assert_err(mpb_condition_open(c, "anon.cv", "lock/~mine", &cv), MPB_ENOOBJ, c, "~", NULL);
    assert_int_equal(exists(c, "lock", "~mine"), 0);
    mpb_dict_t *src;
    th_assert_ok(mpb_dict_open(c, NULL, &src), c);
    char dest[32];
    snprintf(dest, sizeof dest, "%s", mpb_dict_name(src));
    dest[1] = dest[1] == '0' ? '1' : '0'; /* another broker-style name, surely absent */
    th_assert_err(mpb_dict_copy(src, dest), MPB_ENOOBJ, c, "~", NULL);
    assert_int_equal(exists(c, "dict", dest), 0);
    /* a copy onto an anonymous dict keeps its references */
    mpb_dict_t *named;
    th_assert_ok(mpb_dict_open(c, "anon.src", &named), c);
    th_assert_ok(mpb_dict_set_i64(named, "copied", 1), c);
    th_assert_ok(mpb_dict_copy(named, mpb_dict_name(src)), c);
    mpb_dict_close(&named);
    assert_int_equal(refs_of(c, "dict", mpb_dict_name(src)), 1);
    int64_t cv1;
    th_assert_ok(mpb_dict_get_i64(src, "copied", &cv1), c);
    assert_int_equal(cv1, 1);
    snprintf(dest, sizeof dest, "%s", mpb_dict_name(src));
    mpb_dict_close(&src);
    assert_int_equal(exists(c, "dict", dest), 0);
    mpb_close(&c);
}

/* ---- bad input ---- */

/* A raw obj.new: args is the msgpack array after the name. */
static int raw_new(mpb_client_t *c, const char *name, const void *args, size_t n) {
    void *res = NULL;
    size_t rn;
    int rc = mpb_call(c, MPB_OP_OBJ_NEW, name, args, n, 0, &res, &rn);
    mpb_free(res);
    return rc;
}

static void test_bad_requests_get_clear_errors(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B), *other = th_connect(&B);
    int64_t anon0 = th_info_int(c, "anonymous");
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, NULL, &d), c);
    const char *name = mpb_dict_name(d);
    /* unref without a ref: another session holds none */
    th_assert_err((int)mpb_unref(other, "dict", name), MPB_EVALUE, other, "holds no reference",
                  name);
    assert_int_equal(refs_of(c, "dict", name), 1);
    /* ref of a name that does not exist, of the wrong kind, of a bad kind or name */
    th_assert_err((int)mpb_ref(other, "dict", "~0123456789abcdef"), MPB_ENOOBJ, other, NULL, NULL);
    th_assert_err((int)mpb_ref(other, "list", name), MPB_EKIND, other, "is a dict", NULL);
    th_assert_err((int)mpb_ref(other, "dictionary", name), MPB_EINVAL, other, "unknown kind", NULL);
    th_assert_err((int)mpb_ref(other, "dict", NULL), MPB_EINVAL, other, NULL, NULL);
    th_assert_err((int)mpb_ref(other, "dict", "a b"), MPB_EINVAL, other, NULL, NULL);
    mpb_list_t *l;
    th_assert_err(mpb_list_open(other, name, &l), MPB_EKIND, other, "is a dict", NULL);
    assert_int_equal(refs_of(c, "dict", name), 1); /* nothing taken by the failures */
    /* a ref and an unref balance; two unrefs of one ref do not */
    assert_int_equal(mpb_ref(other, "dict", name), 2);
    assert_int_equal(mpb_unref(other, "dict", name), 1);
    th_assert_err((int)mpb_unref(other, "dict", name), MPB_EVALUE, other, NULL, NULL);
    assert_int_equal(refs_of(c, "dict", name), 1);
    /* obj.new: a name given, an unknown kind, a kind that is not a string, wrong arguments,
     * an open that refuses its arguments: errors, and nothing made */
    uint8_t dict_args[] = {0x91, 0xa4, 'd', 'i', 'c', 't'};
    th_assert_err(raw_new(other, "mine", dict_args, sizeof dict_args), MPB_EINVAL, other, "no name",
                  NULL);
    uint8_t bad_kind[] = {0x91, 0xa3, 'f', 'o', 'o'};
    th_assert_err(raw_new(other, NULL, bad_kind, sizeof bad_kind), MPB_EINVAL, other,
                  "unknown kind", NULL);
    uint8_t int_kind[] = {0x91, 0x07};
    th_assert_err(raw_new(other, NULL, int_kind, sizeof int_kind), MPB_ETYPE, other, "kind", NULL);
    uint8_t no_args[] = {0x90};
    th_assert_err(raw_new(other, NULL, no_args, sizeof no_args), MPB_EPROTO, other, NULL, NULL);
    uint8_t queue_one[] = {0x92, 0xa5, 'q', 'u', 'e', 'u', 'e', 0x01}; /* needs 2 after it */
    th_assert_err(raw_new(other, NULL, queue_one, sizeof queue_one), MPB_EPROTO, other,
                  "queue.open", NULL);
    uint8_t queue_bad[] = {0x93, 0xa5, 'q', 'u', 'e', 'u', 'e', 0xa1, 'x', 0xc0};
    th_assert_err(raw_new(other, NULL, queue_bad, sizeof queue_bad), MPB_ETYPE, other, NULL, NULL);
    uint8_t sem_neg[] = {0x93, 0xa9, 's', 'e', 'm', 'a', 'p', 'h', 'o', 'r', 'e', 0xff, 0xc0};
    assert_true(raw_new(other, NULL, sem_neg, sizeof sem_neg) < 0);
    uint8_t cond_bad[] = {0x92, 0xa9, 'c',  'o', 'n', 'd', 'i', 't', 'i',
                          'o',  'n',  0xa6, 'd', 'i', 'c', 't', '/', 'x'};
    th_assert_err(raw_new(other, NULL, cond_bad, sizeof cond_bad), MPB_EINVAL, other, NULL, NULL);
    assert_int_equal(th_info_int(c, "anonymous"), anon0 + 1);
    /* obj.ref and obj.unref want kind/name */
    th_assert_err(mpb_call(other, MPB_OP_OBJ_REF, name, "\x90", 1, 0, NULL, NULL), MPB_EINVAL,
                  other, "kind/name", NULL);
    th_assert_err(mpb_call(other, MPB_OP_OBJ_UNREF, NULL, "\x90", 1, 0, NULL, NULL), MPB_EINVAL,
                  other, NULL, NULL);
    /* a raw obj.new is a real one: its maker's session holds the reference */
    void *res = NULL;
    size_t rn;
    th_assert_ok(mpb_call(other, MPB_OP_OBJ_NEW, NULL, dict_args, sizeof dict_args, 0, &res, &rn),
                 other);
    mpb__rd_t r = {res, (const uint8_t *)res + rn};
    uint32_t two, nl;
    const char *nm;
    assert_int_equal(mpb__rd_array(&r, &two), 0);
    assert_int_equal(two, 2);
    assert_int_equal(mpb__rd_str(&r, &nm, &nl), 0);
    assert_int_equal(mpb__rd_nil(&r), 0); /* dict.open's nil */
    char made[18];
    assert_int_equal(nl, 17);
    memcpy(made, nm, 17);
    made[17] = 0;
    mpb_free(res);
    assert_int_equal(refs_of(c, "dict", made), 1);
    mpb_close(&other);
    assert_int_equal(exists(c, "dict", made), 0);
    /* and the broker serves on */
    assert_int_equal(refs_of(c, "dict", name), 1);
    mpb_dict_close(&d);
    assert_int_equal(th_info_int(c, "anonymous"), anon0);
    th_assert_dict_roundtrip(c, "anon.after-bad", 9);
    mpb_close(&c);
}

/* ---- the grace period: a name passed on outlives its sender's reference ---- */

static void test_grace_lets_a_receiver_take_it_up(void **state) {
    (void)state;
    th_broker_t g;
    th_broker_start(&g, "--anon-grace-ms", "1500", NULL);
    mpb_client_t *a = th_connect(&g), *b = th_connect(&g);
    mpb_queue_t *q, *carrier;
    th_assert_ok(mpb_queue_open(a, NULL, -1, -1, &q), a);
    char name[18], path[300];
    snprintf(name, sizeof name, "%s", mpb_queue_name(q));
    snprintf(path, sizeof path, "queue/%s", name);
    /* a passes the name through a named queue and lets go before b takes it up */
    th_assert_ok(mpb_queue_open(a, "anon.carrier", -1, -1, &carrier), a);
    size_t n;
    const uint8_t *v = th_str(name, &n);
    th_assert_ok(mpb_queue_put(carrier, v, n, 0), a);
    v = th_int(42, &n);
    th_assert_ok(mpb_queue_put(q, v, n, 0), a);
    mpb_queue_close(&q);
    mpb_queue_close(&carrier);
    assert_int_equal(th_describe_int(a, path, "refs"), 0);
    int64_t left = th_describe_int(a, path, "delete_in_ms");
    assert_true(left > 0 && left <= GRACE_MS);
    th_assert_ok(mpb_queue_open(b, "anon.carrier", -1, -1, &carrier), b);
    void *got;
    size_t gn;
    th_assert_ok(mpb_queue_get(carrier, &got, &gn, 0), b);
    const char *s;
    size_t sl;
    assert_int_equal(mpb_unpack_str(got, gn, &s, &sl), 0);
    char taken[18];
    snprintf(taken, sizeof taken, "%.*s", (int)sl, s);
    mpb_free(got);
    mpb_queue_t *qb;
    th_assert_ok(mpb_queue_open(b, taken, -1, -1, &qb), b);
    assert_int_equal(th_describe_int(a, path, "refs"), 1);
    assert_int_equal(th_describe_int(a, path, "delete_in_ms"), -1);
    usleep((GRACE_MS + 500) * 1000); /* past the grace it would have had */
    th_assert_ok(mpb_queue_get(qb, &got, &gn, 0), b);
    int64_t x;
    assert_int_equal(mpb_unpack_i64(got, gn, &x), 0);
    assert_int_equal(x, 42);
    mpb_free(got);
    /* the last reference goes: deleted after the grace, not before */
    int64_t t0 = th_now_ms();
    mpb_queue_close(&qb);
    assert_int_equal(exists(a, "queue", name), 1);
    assert_true(wait_gone(a, "queue", name, GRACE_MS + 2000));
    int64_t took = th_now_ms() - t0;
    print_message("unreferenced anonymous queue deleted after %lld ms (grace %d ms)\n",
                  (long long)took, GRACE_MS);
    assert_true(took >= GRACE_MS - 50);
    mpb_queue_close(&carrier);
    mpb_close(&a);
    mpb_close(&b);
    th_broker_stop_checked(&g);
}

/* ---- the broker is still well ---- */

static void test_broker_still_serves_and_exits_cleanly(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    assert_int_equal(th_info_int(c, "anonymous"), 0);
    assert_int_equal(th_info_int(c, "refs"), 0);
    assert_int_equal(th_info_int(c, "waiters"), 0);
    th_assert_dict_roundtrip(c, "anon.final", 3);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

static int setup(void **state) {
    (void)state;
    th_broker_start(&B, "--heartbeat-ms", "200", "--session-ttl-ms", "1000", "--anon-grace-ms", "0",
                    "--http", "127.0.0.1:0", NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    th_broker_stop(&B);
    return 0;
}

static const th_child_fn child_fns[] = {ref_holder, session_holder, bare_waiter};

int main(int argc, char **argv) {
    th_child_main(argc, argv, &B, child_fns, TH_NELEMS(child_fns));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_lives_until_its_handle_closes),
        cmocka_unit_test(test_refs_from_several_processes_keep_it_alive),
        cmocka_unit_test(test_holder_closing_its_client_gives_back_all),
        cmocka_unit_test(test_killed_holder_gives_back_all_after_its_ttl),
        cmocka_unit_test(test_silent_holder_expires_and_gives_back_all),
        cmocka_unit_test(test_a_forked_child_gives_back_only_its_own),
        cmocka_unit_test(test_parked_calls_get_enoobj_when_it_goes),
        cmocka_unit_test(test_delete_forgets_the_references),
        cmocka_unit_test(test_named_objects_are_unaffected),
        cmocka_unit_test(test_bad_requests_get_clear_errors),
        cmocka_unit_test(test_grace_lets_a_receiver_take_it_up),
        cmocka_unit_test(test_broker_still_serves_and_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
