/* test_persist.c - the broker's state survives it: SIGKILLed in a loop while clients append,
 * put, incr and submit pool tasks, it comes back with every acknowledged write exactly once
 * (--fsync always) or at most the last second lost (everysec); each kind comes back with its
 * state, and pool tasks queued, unfinished or not yet taken; a torn tail is
 * cut and a damaged middle refused (or cut with --repair); a snapshot taken under load and
 * reloaded equals the live state, object by object.
 *
 * MPB_CRASH_KILLS (default 20) and MPB_CRASH_GAP_MS (default 150, the longest pause between
 * kills; each is drawn from half of it to all of it) make the crash loop longer by hand. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "th.h"

static th_broker_t B;

static int64_t unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

/* ---- requests by op code: one way to drive every kind ---- */

static mpb__buf_t args;

/* Starts an argument array of n values; the caller writes them into the returned buffer. */
static mpb__buf_t *argv_begin(uint32_t n) {
    mpb__buf_reset(&args);
    mpb__w_array(&args, n);
    return &args;
}

/* Runs op on name with the arguments built since argv_begin(); the reply's value in *res
 * (mpb_free it) when res is not NULL. */
static int call(mpb_client_t *c, unsigned op, const char *name, void **res, size_t *rn) {
    return mpb_call(c, op, name, args.p, args.len, 0, res, rn);
}

static int call0(mpb_client_t *c, unsigned op, const char *name) {
    argv_begin(0);
    return call(c, op, name, NULL, NULL);
}

static int call_int(mpb_client_t *c, unsigned op, const char *name, int64_t v) {
    mpb__w_int(argv_begin(1), v);
    return call(c, op, name, NULL, NULL);
}

/* ---- the whole state, as bytes that two brokers agree on when their states are equal ---- */

/* Appends the pages of a scan-like op (dict.scan items, list.slice) of name to out. */
static void dump_pages(mpb_client_t *c, unsigned op, const char *name, mpb__buf_t *out) {
    int64_t at = 0;
    for (int guard = 0; guard < 100000; guard++) {
        mpb__buf_t *a = argv_begin(3);
        if (op == MPB_OP_DICT_SCAN) mpb__w_uint(a, 2);
        mpb__w_int(a, at);
        if (op == MPB_OP_LIST_SLICE) mpb__w_nil(a);
        mpb__w_uint(a, 0);
        void *res;
        size_t rn;
        th_assert_ok(call(c, op, name, &res, &rn), c);
        mpb__rd_t r = {res, (const uint8_t *)res + rn};
        uint32_t n = 0;
        uint64_t next = 0;
        if (op == MPB_OP_DICT_SCAN) {
            assert_int_equal(mpb__rd_array(&r, &n), 0);
            assert_int_equal(mpb__rd_uint(&r, &next), 0);
        }
        const uint8_t *v;
        size_t vn;
        assert_int_equal(mpb__rd_span(&r, &v, &vn), 0);
        mpb__w_raw(out, v, vn);
        mpb__rd_t items = {v, v + vn};
        assert_int_equal(mpb__rd_array(&items, &n), 0);
        mpb_free(res);
        if (op == MPB_OP_DICT_SCAN ? next == 0 : n == 0) return;
        at = op == MPB_OP_DICT_SCAN ? (int64_t)next : at + n;
    }
    fail_msg("scan of %s did not end", name);
}

/* obj.info of path without the fields that belong to a run, not to the state (waiters,
 * owners, fencing tokens of held locks). */
static void dump_info(mpb_client_t *c, const char *path, mpb__buf_t *out) {
    void *m;
    size_t n;
    th_assert_ok(mpb_obj_describe(c, path, &m, &n), c);
    mpb__rd_t r = {m, (const uint8_t *)m + n};
    uint32_t pairs;
    assert_int_equal(mpb__rd_map(&r, &pairs), 0);
    /* bytes: what a dict's table costs depends on its history, not on what it holds */
    static const char *const skip[] = {"waiters", "getters", "putters",   "joiners",
                                       "owner",   "fence",   "n_waiting", "locked",
                                       "count",   "bytes",   NULL};
    for (uint32_t i = 0; i < pairs; i++) {
        const char *k;
        uint32_t kl;
        const uint8_t *v;
        size_t vn;
        assert_int_equal(mpb__rd_str(&r, &k, &kl), 0);
        assert_int_equal(mpb__rd_span(&r, &v, &vn), 0);
        bool keep = true;
        for (int j = 0; skip[j]; j++)
            if (strlen(skip[j]) == kl && !memcmp(skip[j], k, kl)) keep = false;
        if (!keep) continue;
        mpb__w_str(out, k, kl);
        mpb__w_raw(out, v, vn);
    }
    mpb_free(m);
}

/* Takes every item of queue name (timeout 0) into out; puts them back in order if put_back
 * (with a task_done for each in a joinable queue, whose unfinished count stays as it was). */
static size_t drain_queue(mpb_client_t *c, const char *name, mpb__buf_t *out, bool put_back) {
    char path[300];
    snprintf(path, sizeof path, "queue/%s", name);
    bool joinable = put_back && th_describe_int(c, path, "joinable") == 1;
    mpb__buf_t items = {0};
    size_t n = 0;
    for (;;) {
        void *v;
        size_t vn;
        mpb__w_int(argv_begin(1), 0);
        int rc = call(c, MPB_OP_QUEUE_GET, name, &v, &vn);
        if (rc == MPB_EEMPTY) break;
        th_assert_ok(rc, c);
        mpb__w_raw(&items, v, vn);
        mpb_free(v);
        n++;
    }
    if (out) mpb__w_raw(out, items.p, items.len);
    mpb__rd_t r = {items.p, items.p + items.len};
    for (size_t i = 0; put_back && i < n; i++) {
        const uint8_t *v;
        size_t vn;
        assert_int_equal(mpb__rd_span(&r, &v, &vn), 0);
        mpb__buf_t *a = argv_begin(2);
        mpb__w_raw(a, v, vn);
        mpb__w_int(a, 0);
        th_assert_ok(call(c, MPB_OP_QUEUE_PUT, name, NULL, NULL), c);
        if (joinable) th_assert_ok(call0(c, MPB_OP_QUEUE_TASK_DONE, name), c);
    }
    mpb__buf_free(&items);
    return n;
}

/* Every object, sorted by path: its info and its content (queues are drained and refilled). */
static void dump_state(mpb_client_t *c, mpb__buf_t *out) {
    mpb_obj_info_t page[256];
    static char paths[1024][300];
    size_t np = 0, n;
    uint64_t cursor = 0;
    do {
        th_assert_ok(mpb_objects(c, NULL, &cursor, page, 256, &n), c);
        for (size_t i = 0; i < n && np < 1024; i++)
            if (snprintf(paths[np++], sizeof paths[0], "%s/%s", page[i].kind, page[i].name) >=
                (int)sizeof paths[0])
                fail_msg("object name %s too long for the dump", page[i].name);
    } while (cursor);
    qsort(paths, np, sizeof paths[0], (int (*)(const void *, const void *))strcmp);
    for (size_t i = 0; i < np; i++) {
        const char *name = strchr(paths[i], '/') + 1;
        mpb__w_cstr(out, paths[i]);
        dump_info(c, paths[i], out);
        if (!strncmp(paths[i], "dict/", 5)) {
            dump_pages(c, MPB_OP_DICT_SCAN, name, out);
        } else if (!strncmp(paths[i], "namespace/", 10)) {
            void *m;
            size_t mn;
            argv_begin(0);
            th_assert_ok(call(c, MPB_OP_NS_LIST, name, &m, &mn), c);
            mpb__w_raw(out, m, mn);
            mpb_free(m);
        } else if (!strncmp(paths[i], "list/", 5))
            dump_pages(c, MPB_OP_LIST_SLICE, name, out);
        else if (!strncmp(paths[i], "queue/", 6))
            drain_queue(c, name, out, true);
    }
}

/* Fails with where two dumps first differ (and the object path before it) unless equal. */
static void assert_same_state(const mpb__buf_t *got, const mpb__buf_t *want) {
    size_t n = got->len < want->len ? got->len : want->len, i = 0;
    while (i < n && got->p[i] == want->p[i])
        i++;
    if (i == n && got->len == want->len) return;
    size_t from = i > 48 ? i - 48 : 0;
    char ctx[200] = "";
    for (size_t k = from, j = 0; k < i + 16 && k < n && j + 4 < sizeof ctx; k++)
        j += (size_t)snprintf(ctx + j, sizeof ctx - j, "%c",
                              want->p[k] >= 32 && want->p[k] < 127 ? want->p[k] : '.');
    fail_msg("states differ at byte %zu of %zu/%zu (got %02x, want %02x) after: %s", i, got->len,
             want->len, i < got->len ? got->p[i] : 0, i < want->len ? want->p[i] : 0, ctx);
}

/* ---- each kind's state across a crash ---- */

static int64_t info_int(mpb_client_t *c, const char *path, const char *field) {
    return th_describe_int(c, path, field);
}

static void test_kinds_restored(void **state) {
    (void)state;
    th_broker_start(&B, "--fsync", "always", NULL);
    mpb_client_t *c = th_connect(&B);
    /* dict, list, namespace, value */
    for (int i = 0; i < 50; i++) {
        mpb__buf_t *a = argv_begin(2);
        mpb__w_int(a, i);
        mpb__w_int(a, i * i);
        th_assert_ok(call(c, MPB_OP_DICT_SET, "d", NULL, NULL), c);
        th_assert_ok(call_int(c, MPB_OP_LIST_APPEND, "l", i), c);
    }
    mpb__w_int(argv_begin(1), 7);
    th_assert_ok(call(c, MPB_OP_DICT_DEL, "d", NULL, NULL), c);
    th_assert_ok(call0(c, MPB_OP_LIST_REVERSE, "l"), c);
    mpb__buf_t *a = argv_begin(2);
    mpb__w_cstr(a, "attr");
    mpb__w_cstr(a, "x");
    th_assert_ok(call(c, MPB_OP_NS_SET, "ns", NULL, NULL), c);
    th_assert_ok(call_int(c, MPB_OP_VALUE_SET, "v", 41), c);
    mpb__w_int(argv_begin(1), 1);
    th_assert_ok(call(c, MPB_OP_VALUE_ADD, "v", NULL, NULL), c);
    /* a joinable queue: 3 put, 1 taken, none done -> 2 items, 3 unfinished; then 1 done */
    a = argv_begin(2);
    mpb__w_int(a, 10);
    mpb__w_bool(a, true);
    th_assert_ok(call(c, MPB_OP_QUEUE_OPEN, "jq", NULL, NULL), c);
    for (int i = 0; i < 3; i++) {
        a = argv_begin(2);
        mpb__w_int(a, 100 + i);
        mpb__w_int(a, 0);
        th_assert_ok(call(c, MPB_OP_QUEUE_PUT, "jq", NULL, NULL), c);
    }
    th_assert_ok(call_int(c, MPB_OP_QUEUE_GET, "jq", 0), c);
    th_assert_ok(call0(c, MPB_OP_QUEUE_TASK_DONE, "jq"), c);
    /* a semaphore of 3 released once beyond its units (4); another of 2 (below) with a unit
     * held at the crash, given back as when its session ends */
    a = argv_begin(2);
    mpb__w_int(a, 3);
    mpb__w_bool(a, false);
    th_assert_ok(call(c, MPB_OP_SEM_OPEN, "s", NULL, NULL), c);
    th_assert_ok(call_int(c, MPB_OP_SEM_ACQUIRE, "s", 0), c);
    th_assert_ok(call_int(c, MPB_OP_SEM_RELEASE, "s", 2), c); /* own unit back, one more */
    a = argv_begin(2);
    mpb__w_int(a, 2);
    mpb__w_bool(a, true);
    th_assert_ok(call(c, MPB_OP_SEM_OPEN, "s2", NULL, NULL), c);
    th_assert_ok(call0(c, MPB_OP_EVENT_SET, "e"), c);
    a = argv_begin(2);
    mpb__w_int(a, 3);
    mpb__w_int(a, 2500);
    th_assert_ok(call(c, MPB_OP_BARRIER_OPEN, "bar", NULL, NULL), c);
    th_assert_ok(call0(c, MPB_OP_BARRIER_ABORT, "bar"), c);
    mpb__w_cstr(argv_begin(1), "lock/lk");
    th_assert_ok(call(c, MPB_OP_COND_OPEN, "cv", NULL, NULL), c);
    th_assert_ok(call0(c, MPB_OP_RLOCK_OPEN, "rl"), c);
    mpb__buf_t before = {0};
    dump_state(c, &before);
    /* held at the crash: a semaphore unit, which goes back, and a lock, which is free after
     * it, though its token stays below the next holder's */
    th_assert_ok(call_int(c, MPB_OP_SEM_ACQUIRE, "s2", 0), c);
    void *tok;
    size_t tn;
    a = argv_begin(2);
    mpb__w_uint(a, 1);
    mpb__w_int(a, 0);
    th_assert_ok(call(c, MPB_OP_LOCK_ACQUIRE, "lk", &tok, &tn), c);
    mpb__rd_t tr = {tok, (const uint8_t *)tok + tn};
    uint64_t token0;
    assert_int_equal(mpb__rd_uint(&tr, &token0), 0);
    mpb_free(tok);
    mpb_close(&c);

    th_broker_restart(&B, SIGKILL, "--fsync", "always", NULL);
    c = th_connect(&B);
    /* the table of kinds: what each must be after the crash */
    struct {
        const char *path, *field;
        int64_t want;
    } rows[] = {
        {"dict/d",       "size",       49  },
        {"list/l",       "size",       50  },
        {"namespace/ns", "size",       1   },
        {"queue/jq",     "size",       2   },
        {"queue/jq",     "unfinished", 2   },
        {"queue/jq",     "maxsize",    10  },
        {"queue/jq",     "joinable",   1   },
        {"semaphore/s",  "value",      4   },
        {"semaphore/s",  "initial",    3   },
        {"semaphore/s2", "value",      2   },
        {"semaphore/s2", "bounded",    1   },
        {"event/e",      "set",        1   },
        {"barrier/bar",  "parties",    3   },
        {"barrier/bar",  "broken",     1   },
        {"barrier/bar",  "timeout_ms", 2500},
        {"lock/lk",      "locked",     0   },
        {"rlock/rl",     "locked",     0   },
    };
    printf("%-14s %-11s %6s %6s\n", "object", "field", "want", "got");
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        int64_t got = info_int(c, rows[i].path, rows[i].field);
        printf("%-14s %-11s %6lld %6lld\n", rows[i].path, rows[i].field, (long long)rows[i].want,
               (long long)got);
        assert_int_equal(got, rows[i].want);
    }
    /* contents, item by item */
    void *v;
    size_t vn;
    int64_t x;
    mpb__w_int(argv_begin(1), 9);
    th_assert_ok(call(c, MPB_OP_DICT_GET, "d", &v, &vn), c);
    mpb__rd_t r = {v, (const uint8_t *)v + vn};
    assert_int_equal(mpb__rd_int(&r, &x), 0);
    assert_int_equal(x, 81);
    mpb_free(v);
    mpb__w_int(argv_begin(1), 0);
    th_assert_ok(call(c, MPB_OP_LIST_GET, "l", &v, &vn), c);
    r = (mpb__rd_t){v, (const uint8_t *)v + vn};
    assert_int_equal(mpb__rd_int(&r, &x), 0);
    assert_int_equal(x, 49); /* reversed */
    mpb_free(v);
    argv_begin(0);
    th_assert_ok(call(c, MPB_OP_VALUE_GET, "v", &v, &vn), c);
    r = (mpb__rd_t){v, (const uint8_t *)v + vn};
    assert_int_equal(mpb__rd_int(&r, &x), 0);
    assert_int_equal(x, 42);
    mpb_free(v);
    void *cv;
    size_t cvn;
    mpb__w_nil(argv_begin(1));
    th_assert_ok(call(c, MPB_OP_COND_OPEN, "cv", &cv, &cvn), c);
    r = (mpb__rd_t){cv, (const uint8_t *)cv + cvn};
    const char *lp;
    uint32_t lpl;
    assert_int_equal(mpb__rd_str(&r, &lp, &lpl), 0);
    assert_int_equal(lpl, 7);
    assert_memory_equal(lp, "lock/lk", 7);
    mpb_free(cv);
    /* every object, as the client saw it before the crash */
    mpb__buf_t after = {0};
    dump_state(c, &after);
    assert_same_state(&after, &before);
    /* the queue's items in order */
    th_assert_ok(call_int(c, MPB_OP_QUEUE_GET, "jq", 0), c);
    argv_begin(1);
    mpb__w_int(&args, 0);
    th_assert_ok(call(c, MPB_OP_QUEUE_GET, "jq", &v, &vn), c);
    r = (mpb__rd_t){v, (const uint8_t *)v + vn};
    assert_int_equal(mpb__rd_int(&r, &x), 0);
    assert_int_equal(x, 102);
    mpb_free(v);
    /* the next lock holder's token is above the one held at the crash */
    a = argv_begin(2);
    mpb__w_uint(a, 1);
    mpb__w_int(a, 0);
    th_assert_ok(call(c, MPB_OP_LOCK_ACQUIRE, "lk", &tok, &tn), c);
    tr = (mpb__rd_t){tok, (const uint8_t *)tok + tn};
    uint64_t token1;
    assert_int_equal(mpb__rd_uint(&tr, &token1), 0);
    mpb_free(tok);
    assert_true(token1 > token0);
    mpb__buf_free(&before);
    mpb__buf_free(&after);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

/* ---- the crash loop ---- */

#define CL_CLIENTS 4

typedef struct cl_arg {
    const char *dir;
} cl_arg_t;

/* One client: appends its ids to list/cl_l, puts them to queue/cl_q, incrs dict/cl_d[idx],
 * submits pool tasks of function cl<idx> (no worker: they stay queued); each
 * acknowledged write is a line "OP ID UNIX_MS" in its file, each one whose outcome it could
 * not know "? OP ID". It connects again itself whenever a call fails. */
static int cl_child(int idx, void *arg) {
    const cl_arg_t *ca = arg;
    char path[400], stop[400], ep[512];
    snprintf(path, sizeof path, "%s/acks.%d", ca->dir, idx);
    snprintf(stop, sizeof stop, "%s/stop", ca->dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    snprintf(ep, sizeof ep, "%s", B.endpoint);
    size_t kl;
    const char *key = th_authkey(&B, &kl);
    mpb_options_t o;
    mpb_options_init(&o);
    o.connect_timeout_ms = 1000;
    o.op_timeout_ms = 1000;
    mpb_client_t *c = NULL;
    int64_t id = (int64_t)idx * 1000000;
    static const char ops[] = "APIS";
    char fn[16];
    snprintf(fn, sizeof fn, "cl%d", idx);
    int sessions = 0;
    int64_t deadline = th_now_ms() + 120000;
    while (access(stop, F_OK) != 0 && th_now_ms() < deadline) {
        if (!c) {
            if (mpb_connect(ep, key, kl, &o, &c) != 0) {
                mpb_close(&c);
                usleep(20000);
                continue;
            }
            sessions++;
        }
        char op = ops[id % 4];
        int rc;
        uint8_t buf[MPB_PACK_MAX_SCALAR];
        size_t n = mpb_pack_i64(buf, id);
        mpb__buf_reset(&args);
        if (op == 'A') {
            mpb__w_array(&args, 1);
            mpb__w_raw(&args, buf, n);
            rc = mpb_call(c, MPB_OP_LIST_APPEND, "cl_l", args.p, args.len, 0, NULL, NULL);
        } else if (op == 'P') {
            mpb__w_array(&args, 2);
            mpb__w_raw(&args, buf, n);
            mpb__w_int(&args, 0);
            rc = mpb_call(c, MPB_OP_QUEUE_PUT, "cl_q", args.p, args.len, 0, NULL, NULL);
        } else if (op == 'I') {
            mpb__w_array(&args, 2);
            mpb__w_int(&args, idx);
            mpb__w_int(&args, 1);
            rc = mpb_call(c, MPB_OP_DICT_INCR, "cl_d", args.p, args.len, 0, NULL, NULL);
        } else { /* a pool task of one call fn(id); no worker runs it: it stays queued */
            mpb__w_array(&args, 3);
            mpb__w_cstr(&args, fn);
            mpb__w_bool(&args, false);
            mpb__w_array(&args, 1);
            mpb__w_array(&args, 1);
            mpb__w_array(&args, 1);
            mpb__w_raw(&args, buf, n);
            rc = mpb_call(c, MPB_OP_POOL_SUBMIT, NULL, args.p, args.len, 0, NULL, NULL);
        }
        if (rc == 0) {
            fprintf(f, "%c %lld %lld\n", op, (long long)id, (long long)unix_ms());
        } else {
            fprintf(f, "? %c %lld\n", op, (long long)id);
            mpb_close(&c);
        }
        id++;
    }
    /* the tasks its session has queued (only one session: those of another one ended) */
    int64_t queued = -1;
    /* A call that failed just before the stop closed c: a new session asks (and, not the
     * only one any more, is not held to the count). */
    if (!c) {
        if (mpb_connect(ep, key, kl, &o, &c) == 0)
            sessions++;
        else
            mpb_close(&c);
    }
    /* the last kill may land on this call: the client rides through it, given a few tries */
    for (int tries = 0; c && queued < 0 && tries < 50; tries++) {
        if (tries) usleep(100000);
        mpb__buf_reset(&args);
        mpb__w_array(&args, 1);
        mpb__w_cstr(&args, fn);
        void *p;
        size_t pn;
        if (mpb_call(c, MPB_OP_POOL_FNINFO, NULL, args.p, args.len, 0, &p, &pn) == 0) {
            mpb__rd_t r = {p, (const uint8_t *)p + pn};
            uint32_t k;
            int64_t v[3];
            if (mpb__rd_array(&r, &k) == 0 && k >= 3 && mpb__rd_int(&r, &v[0]) == 0 &&
                mpb__rd_int(&r, &v[1]) == 0 && mpb__rd_int(&r, &v[2]) == 0)
                queued = v[2];
            mpb_free(p);
        }
    }
    fprintf(f, "Q %lld %d\n", (long long)queued, sessions);
    mpb_close(&c);
    mpb__buf_free(&args);
    return fclose(f) == 0 ? 0 : 1;
}

typedef struct acks {
    int64_t *id, *ms; /* acknowledged appends, puts (one array each, by op) */
    size_t n, cap;
} acks_t;

static void acks_add(acks_t *a, int64_t id, int64_t ms) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 1024;
        a->id = realloc(a->id, a->cap * sizeof *a->id);
        a->ms = realloc(a->ms, a->cap * sizeof *a->ms);
        assert_non_null(a->id);
        assert_non_null(a->ms);
    }
    a->id[a->n] = id;
    a->ms[a->n++] = ms;
}

/* Whether an ack at ms may have been lost: it came less than window ms before a kill. */
static bool in_window(int64_t ms, const int64_t *kills, int nkills, int64_t window) {
    for (int i = 0; i < nkills; i++)
        if (ms <= kills[i] && kills[i] - ms <= window) return true;
    return false;
}

/* Checks the ids found (sorted in place) against the acknowledged ones: no id twice, every
 * acknowledged one there (or, with a window, lost only within it before a kill), no id that
 * was never sent. Returns how many acknowledged ones are missing. */
static size_t check_ids(const char *what, int64_t *found, size_t nfound, const acks_t *acked,
                        const int64_t *unknown, size_t nunknown, const int64_t *kills, int nkills,
                        int64_t window) {
    qsort(found, nfound, sizeof *found, th_cmp_i64);
    for (size_t i = 1; i < nfound; i++)
        if (found[i] == found[i - 1])
            fail_msg("%s: id %lld is there twice", what, (long long)found[i]);
    size_t missing = 0;
    for (size_t i = 0; i < acked->n; i++) {
        if (bsearch(&acked->id[i], found, nfound, sizeof *found, th_cmp_i64)) continue;
        missing++;
        if (!window || !in_window(acked->ms[i], kills, nkills, window))
            fail_msg("%s: acknowledged id %lld (at %lld) is lost", what, (long long)acked->id[i],
                     (long long)acked->ms[i]);
    }
    size_t extra = 0;
    for (size_t i = 0; i < nfound; i++) {
        bool ok = false;
        for (size_t j = 0; j < acked->n && !ok; j++)
            ok = acked->id[j] == found[i];
        for (size_t j = 0; j < nunknown && !ok; j++)
            ok = unknown[j] == found[i];
        if (!ok) fail_msg("%s: id %lld was never sent", what, (long long)found[i]);
        extra++;
    }
    (void)extra;
    return missing;
}

/* Reads the integers of an array value (a list.slice page or a concatenation of items). */
static size_t read_ints(const uint8_t *p, size_t n, bool array, int64_t **out) {
    mpb__rd_t r = {p, p + n};
    uint32_t an = 0;
    if (array) assert_int_equal(mpb__rd_array(&r, &an), 0);
    size_t k = 0, cap = 16;
    int64_t *v = malloc(cap * sizeof *v);
    while (mpb__rd_more(&r) && (!array || k < an)) {
        if (k == cap) v = realloc(v, (cap *= 2) * sizeof *v);
        assert_int_equal(mpb__rd_int(&r, &v[k]), 0);
        k++;
    }
    *out = v;
    return k;
}

static void crash_loop(const char *fsync_mode, int64_t window) {
    int kills = env_int("MPB_CRASH_KILLS", 20), gap = env_int("MPB_CRASH_GAP_MS", 150);
    if (kills > 10000) kills = 10000;
    th_broker_start(&B, "--fsync", fsync_mode, NULL);
    cl_arg_t ca = {B.dir};
    pid_t kids[CL_CLIENTS];
    fflush(stdout);
    for (int i = 0; i < CL_CLIENTS; i++) {
        kids[i] = fork();
        if (kids[i] == 0) _exit(cl_child(i, &ca));
    }
    int64_t *kill_ms = calloc((size_t)kills, sizeof *kill_ms);
    srand((unsigned)getpid());
    for (int k = 0; k < kills; k++) {
        usleep((useconds_t)(gap / 2 + rand() % (gap / 2 + 1)) * 1000);
        kill_ms[k] = unix_ms();
        th_broker_restart(&B, SIGKILL, "--fsync", fsync_mode, NULL);
    }
    usleep(300000);
    char stop[400];
    snprintf(stop, sizeof stop, "%s/stop", B.dir);
    close(open(stop, O_CREAT | O_WRONLY, 0600));
    for (int i = 0; i < CL_CLIENTS; i++)
        assert_int_equal(th_wait(kids[i], 60), 0);

    /* what the clients were told */
    acks_t app = {0}, put = {0};
    int64_t *unknown = NULL;
    size_t nunknown = 0, capunknown = 0;
    int64_t incr_acked[CL_CLIENTS] = {0}, incr_unknown[CL_CLIENTS] = {0};
    int64_t incr_window[CL_CLIENTS] = {0};
    int64_t sub_acked[CL_CLIENTS] = {0}, sub_unknown[CL_CLIENTS] = {0};
    int64_t sub_window[CL_CLIENTS] = {0}, sub_queued[CL_CLIENTS], sub_sessions[CL_CLIENTS];
    for (int i = 0; i < CL_CLIENTS; i++) {
        char path[400], line[200];
        snprintf(path, sizeof path, "%s/acks.%d", B.dir, i);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        while (fgets(line, sizeof line, f)) {
            char op, op2;
            long long id, ms;
            int nsess;
            if (sscanf(line, "Q %lld %d", &id, &nsess) == 2) {
                sub_queued[i] = id;
                sub_sessions[i] = nsess;
            } else if (sscanf(line, "? %c %lld", &op2, &id) == 2) {
                if (nunknown == capunknown)
                    unknown = realloc(unknown, (capunknown = capunknown ? 2 * capunknown : 64) *
                                                   sizeof *unknown);
                unknown[nunknown++] = id;
                if (op2 == 'I') incr_unknown[i]++;
                if (op2 == 'S') sub_unknown[i]++;
            } else if (sscanf(line, "%c %lld %lld", &op, &id, &ms) == 3) {
                if (op == 'A')
                    acks_add(&app, id, ms);
                else if (op == 'P')
                    acks_add(&put, id, ms);
                else if (op == 'S') {
                    sub_acked[i]++;
                    if (window && in_window(ms, kill_ms, kills, window)) sub_window[i]++;
                } else {
                    incr_acked[i]++;
                    if (window && in_window(ms, kill_ms, kills, window)) incr_window[i]++;
                }
            }
        }
        fclose(f);
    }
    /* what the broker has */
    mpb_client_t *c = th_connect(&B);
    mpb__buf_t lst = {0}, q = {0};
    dump_pages(c, MPB_OP_LIST_SLICE, "cl_l", &lst);
    size_t nq = drain_queue(c, "cl_q", &q, false);
    int64_t *found_l = NULL, *found_q = NULL;
    /* dump_pages wrote one array per page: read them one by one */
    size_t nl = 0;
    {
        mpb__rd_t r = {lst.p, lst.p + lst.len};
        int64_t *all = NULL;
        while (mpb__rd_more(&r)) {
            const uint8_t *v;
            size_t vn;
            assert_int_equal(mpb__rd_span(&r, &v, &vn), 0);
            int64_t *part;
            size_t k = read_ints(v, vn, true, &part);
            all = realloc(all, (nl + k + 1) * sizeof *all);
            memcpy(all + nl, part, k * sizeof *part);
            nl += k;
            free(part);
        }
        found_l = all ? all : malloc(8);
    }
    size_t nq2 = read_ints(q.p, q.len, false, &found_q);
    assert_int_equal(nq2, nq);
    size_t lost_l = check_ids("list", found_l, nl, &app, unknown, nunknown, kill_ms, kills, window);
    size_t lost_q =
        check_ids("queue", found_q, nq, &put, unknown, nunknown, kill_ms, kills, window);
    int64_t incr_total = 0, incr_got_total = 0, sub_total = 0, sub_checked = 0;
    for (int i = 0; i < CL_CLIENTS; i++) {
        void *v;
        size_t vn;
        int64_t got = 0;
        mpb__w_int(argv_begin(1), i);
        int rc = call(c, MPB_OP_DICT_GET, "cl_d", &v, &vn);
        if (rc == 0) {
            mpb__rd_t r = {v, (const uint8_t *)v + vn};
            assert_int_equal(mpb__rd_int(&r, &got), 0);
            mpb_free(v);
        }
        /* each acknowledged incr once; an unknown one at most once; with a window, the
         * acknowledged ones just before a kill may be lost */
        if (got > incr_acked[i] + incr_unknown[i] || got < incr_acked[i] - incr_window[i])
            fail_msg("dict.incr of client %d: %lld, acknowledged %lld, unknown %lld, in the "
                     "window %lld",
                     i, (long long)got, (long long)incr_acked[i], (long long)incr_unknown[i],
                     (long long)incr_window[i]);
        incr_total += incr_acked[i];
        incr_got_total += got;
        /* pool.submit: each acknowledged task queued once, in the session that stayed */
        if (sub_sessions[i] == 1 && (sub_queued[i] > sub_acked[i] + sub_unknown[i] ||
                                     sub_queued[i] < sub_acked[i] - sub_window[i]))
            fail_msg("pool.submit of client %d: %lld queued, acknowledged %lld, unknown %lld, "
                     "in the window %lld",
                     i, (long long)sub_queued[i], (long long)sub_acked[i],
                     (long long)sub_unknown[i], (long long)sub_window[i]);
        sub_total += sub_acked[i];
        if (sub_sessions[i] == 1) sub_checked += sub_queued[i];
    }
    printf("crash loop --fsync %s: %d kills; acknowledged: %zu appends, %zu puts, %lld incrs, "
           "%lld submits; outcome unknown: %zu; found: %zu appends, %zu items, incr total %lld, "
           "%lld tasks queued; acknowledged but lost: %zu appends, %zu puts, %lld incrs; "
           "duplicates: 0\n",
           fsync_mode, kills, app.n, put.n, (long long)incr_total, (long long)sub_total, nunknown,
           nl, nq, (long long)incr_got_total, (long long)sub_checked, lost_l, lost_q,
           (long long)(incr_total > incr_got_total ? incr_total - incr_got_total : 0));
    if (!window) {
        assert_int_equal(lost_l, 0);
        assert_int_equal(lost_q, 0);
    }
    assert_true(app.n > 0 && put.n > 0 && incr_total > 0 && sub_total > 0);
    mpb_close(&c);
    free(found_l);
    free(found_q);
    free(unknown);
    free(app.id);
    free(app.ms);
    free(put.id);
    free(put.ms);
    free(kill_ms);
    mpb__buf_free(&lst);
    mpb__buf_free(&q);
    th_broker_stop_checked(&B);
}

static void test_crash_loop_always(void **state) {
    (void)state;
    crash_loop("always", 0);
}

/* everysec: what was acknowledged in the last second before a kill may be lost (1.5 s: the
 * fsync runs on the loop's 100 ms tick after the second has passed). */
static void test_crash_loop_everysec(void **state) {
    (void)state;
    crash_loop("everysec", 1500);
}

/* ---- damage ---- */

static void log_path(char *out, size_t n, int seg) {
    snprintf(out, n, "%s/data/log.%06d", B.dir, seg);
}

static off_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Where the records of the log at path end: past the last [len][crc][payload] whose length
 * fits (the checksums are not looked at); --fsync always leaves zeros after it. */
static off_t log_end(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    off_t at = 0, size = file_size(path);
    uint8_t h[8];
    while (at + 8 <= size && fseek(f, at, SEEK_SET) == 0 && fread(h, 1, 8, f) == 8) {
        uint32_t len =
            (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        if (len == 0 || at + 8 + (off_t)len > size) break;
        at += 8 + (off_t)len;
    }
    fclose(f);
    return at;
}

/* Whether bytes [from, end of file) of path are all zero. */
static bool zeros_from(const char *path, off_t from) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, from, SEEK_SET);
    int ch;
    while ((ch = fgetc(f)) == 0) {
    }
    fclose(f);
    return ch == EOF;
}

/* Sets keys k000..k(n-1) in dict/dmg, one request each, with --fsync always. */
static void fill_keys(mpb_client_t *c, int from, int n) {
    for (int i = from; i < from + n; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%03d", i);
        mpb__buf_t *a = argv_begin(2);
        mpb__w_cstr(a, k);
        mpb__w_int(a, i);
        th_assert_ok(call(c, MPB_OP_DICT_SET, "dmg", NULL, NULL), c);
    }
}

/* The length of name by op (dict.len, list.len). */
static int64_t len_of(mpb_client_t *c, unsigned op, const char *name) {
    void *v;
    size_t vn;
    argv_begin(0);
    th_assert_ok(call(c, op, name, &v, &vn), c);
    mpb__rd_t r = {v, (const uint8_t *)v + vn};
    int64_t n;
    assert_int_equal(mpb__rd_int(&r, &n), 0);
    mpb_free(v);
    return n;
}

static int64_t dict_len(mpb_client_t *c, const char *name) {
    return len_of(c, MPB_OP_DICT_LEN, name);
}

/* A broker with --fsync mode sets k000..k099 in dict/dmg and is killed; path: its log. */
static void hundred_keys_then_crash(const char *mode, char *path, size_t n) {
    th_broker_start(&B, "--fsync", mode, NULL);
    mpb_client_t *c = th_connect(&B);
    fill_keys(c, 0, 100);
    mpb_close(&c);
    log_path(path, n, 0);
    th_broker_kill(&B, SIGKILL);
}

/* --fsync always writes into zeros it fills ahead (PERSISTENCE.md): after a kill the log ends
 * in them, and a start cuts them without calling it damage; a clean stop leaves none. */
static void test_zero_filled_tail_cut_quietly(void **state) {
    (void)state;
    char path[400];
    hundred_keys_then_crash("always", path, sizeof path);
    mpb_client_t *c;
    off_t end = log_end(path);
    assert_true(end > 0);
    assert_true(file_size(path) >= end + (1 << 20)); /* filled ahead */
    assert_true(zeros_from(path, end));
    th_broker_restart(&B, 0, "--fsync", "always", NULL);
    assert_int_equal(th_log_count(&B, "torn record"), 0);
    assert_int_equal(th_log_count(&B, "damaged record"), 0);
    assert_true(th_log_count(&B, "zero-filled space after the last record cut") > 0);
    c = th_connect(&B);
    assert_int_equal(dict_len(c, "dmg"), 100);
    fill_keys(c, 100, 5);
    mpb_close(&c);
    th_broker_kill(&B, SIGTERM); /* a clean stop: the zeros are cut at the close */
    int segs = 0;
    for (int seg = 0; seg < 10; seg++) {
        log_path(path, sizeof path, seg);
        if (file_size(path) < 0) continue;
        segs++;
        assert_int_equal(file_size(path), log_end(path));
    }
    assert_true(segs > 0);
    th_broker_restart(&B, 0, "--fsync", "always", NULL);
    c = th_connect(&B);
    assert_int_equal(dict_len(c, "dmg"), 105);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

/* Half a record at the end of the log, written by mode's broker: as a crash leaves it after
 * an append (everysec) or inside the zeros filled ahead (always). */
static void torn_tail_cut(const char *mode) {
    char path[400];
    hundred_keys_then_crash(mode, path, sizeof path);
    mpb_client_t *c;
    off_t good = log_end(path), size = file_size(path);
    assert_true(good > 0);
    assert_true(strcmp(mode, "always") ? size == good : size > good + 38);
    /* half a record: a header that promises 200 bytes, and 30 of them */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    uint8_t half[38] = {200, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0x94, 1};
    fseek(f, good, SEEK_SET);
    assert_int_equal(fwrite(half, 1, sizeof half, f), sizeof half);
    fclose(f);
    th_broker_restart(&B, 0, "--fsync", mode, NULL);
    char want[64];
    snprintf(want, sizeof want, "offset=%lld", (long long)good);
    assert_true(th_log_count(&B, "torn record at the end of the log cut") > 0);
    assert_true(th_log_count(&B, want) > 0);
    assert_int_equal(th_log_count(&B, "damaged record"), 0);
    c = th_connect(&B);
    assert_int_equal(dict_len(c, "dmg"), 100);
    fill_keys(c, 100, 1); /* the log goes on after the cut */
    mpb_close(&c);
    th_broker_restart(&B, SIGKILL, "--fsync", mode, NULL);
    c = th_connect(&B);
    assert_int_equal(dict_len(c, "dmg"), 101);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

static void test_torn_tail_cut(void **state) {
    (void)state;
    torn_tail_cut("everysec");
    torn_tail_cut("always");
}

static void test_damaged_middle_refused_then_repaired(void **state) {
    (void)state;
    th_broker_start(&B, "--fsync", "always", NULL);
    mpb_client_t *c = th_connect(&B);
    fill_keys(c, 0, 100);
    mpb_close(&c);
    th_broker_kill(&B, SIGKILL);
    char path[400];
    log_path(path, sizeof path, 0);
    off_t size = file_size(path);
    assert_true(size > 0 && size < (1 << 30));
    /* flip a byte of the record that sets k050 */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    size_t len = (size_t)size & 0x3fffffff; /* checked above; tells the optimiser too */
    char *buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, len, f), len);
    char *at = NULL;
    for (off_t i = 0; i + 4 <= size && !at; i++)
        if (!memcmp(buf + i, "k050", 4)) at = buf + i;
    assert_non_null(at);
    fseek(f, at - buf, SEEK_SET);
    fputc('K', f);
    fclose(f);
    free(buf);
    int st = th_broker_restart_fails(&B, 0, "--fsync", "always", NULL);
    assert_int_equal(st, 2);
    assert_true(th_log_count(&B, "damaged record in the middle of the log: refusing to start") > 0);
    assert_true(th_log_count(&B, "--repair") > 0);
    assert_int_equal(file_size(path), size); /* nothing was cut without being asked */
    th_broker_restart(&B, 0, "--fsync", "always", "--repair", NULL);
    assert_true(th_log_count(&B, "repair: log cut at a damaged record") > 0);
    assert_true(th_log_count(&B, "records_lost=") > 0);
    c = th_connect(&B);
    assert_int_equal(dict_len(c, "dmg"), 50); /* k000..k049: what came before the damage */
    mpb__w_cstr(argv_begin(1), "k049");
    th_assert_ok(call(c, MPB_OP_DICT_CONTAINS, "dmg", NULL, NULL), c);
    th_assert_dict_roundtrip(c, "after_repair", 5);
    mpb_close(&c);
    /* and the repaired log loads as it is from now on */
    th_broker_restart(&B, SIGKILL, "--fsync", "always", NULL);
    c = th_connect(&B);
    assert_int_equal(dict_len(c, "dmg"), 50);
    th_assert_dict_roundtrip(c, "after_repair", 6);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

/* ---- records that are sound but cannot be applied ---- */

static int64_t persist_info_int(mpb_client_t *c, const char *field);

/* CRC-32C, as the log's record header has it (PERSISTENCE.md), to write records by hand. */
static uint32_t crc32c(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return c ^ 0xffffffffu;
}

/* Appends one framed record with payload body to the log at path (after its last record,
 * cutting the zeros --fsync always left); returns its offset. */
static off_t append_record(const char *path, const mpb__buf_t *body) {
    off_t at = log_end(path);
    assert_int_equal(truncate(path, at), 0);
    uint32_t len = (uint32_t)body->len, crc = crc32c(body->p, body->len);
    uint8_t hdr[8];
    for (int i = 0; i < 4; i++) {
        hdr[i] = (uint8_t)(len >> 8 * i);
        hdr[4 + i] = (uint8_t)(crc >> 8 * i);
    }
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    assert_int_equal(fwrite(hdr, 1, 8, f), 8);
    assert_int_equal(fwrite(body->p, 1, body->len, f), body->len);
    fclose(f);
    return at;
}

/* A request record [1, session 0, seq 0, [rid, op, name, ...]]; the caller writes argc values. */
static mpb__buf_t *req_record(mpb__buf_t *b, uint64_t rid, unsigned op, const char *name,
                              uint32_t argc) {
    mpb__buf_reset(b);
    mpb__w_array(b, 4);
    mpb__w_uint(b, 1);
    mpb__w_uint(b, 0);
    mpb__w_uint(b, 0);
    mpb__w_array(b, 3 + argc);
    mpb__w_uint(b, rid);
    mpb__w_uint(b, op);
    mpb__w_cstr(b, name);
    return b;
}

/* Asserts that the broker's log has a line with msg and "offset=at ". */
static void assert_warned_at(const char *msg, off_t at) {
    char want[64];
    snprintf(want, sizeof want, "offset=%lld ", (long long)at);
    FILE *f = fopen(B.log, "r");
    assert_non_null(f);
    char line[4096];
    bool found = false;
    while (fgets(line, sizeof line, f) && !found)
        found = strstr(line, msg) && strstr(line, want);
    fclose(f);
    if (!found) fail_msg("no \"%s\" at %s in %s", msg, want, B.log);
}

/* Records whose checksum holds but that cannot be applied (a dict.set on a list, a list.set
 * out of range, a request that is no request, a type this code does not know) are each
 * reported with their offset and skipped: the records after them still load, nothing is cut,
 * and the broker serves. */
static void test_unappliable_record_warned_and_skipped(void **state) {
    (void)state;
    th_broker_start(&B, "--fsync", "always", NULL);
    mpb_client_t *c = th_connect(&B);
    fill_keys(c, 0, 10);
    for (int i = 0; i < 3; i++)
        th_assert_ok(call_int(c, MPB_OP_LIST_APPEND, "lst", i), c);
    mpb_close(&c);
    th_broker_kill(&B, SIGKILL);
    char path[400];
    log_path(path, sizeof path, 0);
    mpb__buf_t b = {0};
    mpb__buf_t *r = req_record(&b, 9001, MPB_OP_DICT_SET, "lst", 2);
    mpb__w_cstr(r, "kx");
    mpb__w_int(r, 1);
    off_t wrong_kind = append_record(path, r);
    r = req_record(&b, 9002, MPB_OP_LIST_SET, "lst", 2);
    mpb__w_int(r, 99);
    mpb__w_int(r, 7);
    off_t out_of_range = append_record(path, r);
    mpb__buf_reset(&b);
    mpb__w_array(&b, 4);
    mpb__w_uint(&b, 1);
    mpb__w_uint(&b, 0);
    mpb__w_uint(&b, 0);
    mpb__w_array(&b, 1);
    mpb__w_uint(&b, 9003);
    off_t no_request = append_record(path, &b);
    r = req_record(&b, 9004, MPB_OP_DICT_SET, "dmg", 2);
    mpb__w_cstr(r, "k100");
    mpb__w_int(r, 100);
    append_record(path, r);
    mpb__buf_reset(&b); /* the last record: sound, so no torn tail either */
    mpb__w_array(&b, 2);
    mpb__w_uint(&b, 99);
    mpb__w_uint(&b, 1);
    off_t unknown = append_record(path, &b);
    mpb__buf_free(&b);
    off_t size = file_size(path);

    th_broker_restart(&B, 0, "--fsync", "always", NULL);
    assert_int_equal(th_log_count(&B, "a logged request failed at replay: skipped"), 2);
    assert_warned_at("a logged request failed at replay: skipped", wrong_kind);
    assert_warned_at("a logged request failed at replay: skipped", out_of_range);
    assert_warned_at("a logged request is not [rid, op, name, args...]: skipped", no_request);
    assert_warned_at("a logged record could not be applied at replay: skipped", unknown);
    assert_int_equal(th_log_count(&B, "torn record"), 0);
    assert_int_equal(file_size(path), size); /* nothing cut */
    c = th_connect(&B);
    assert_int_equal(persist_info_int(c, "replay_failed"), 4);
    assert_int_equal(dict_len(c, "dmg"), 11); /* k000..k009 and k100, after the skipped ones */
    assert_int_equal(len_of(c, MPB_OP_LIST_LEN, "lst"), 3);
    mpb__w_int(argv_begin(1), 2);
    void *v;
    size_t vn;
    th_assert_ok(call(c, MPB_OP_LIST_GET, "lst", &v, &vn), c);
    mpb__rd_t rd = {v, (const uint8_t *)v + vn};
    int64_t x;
    assert_int_equal(mpb__rd_int(&rd, &x), 0);
    assert_int_equal(x, 2);
    mpb_free(v);
    th_assert_dict_roundtrip(c, "after_skip", 3);
    mpb_close(&c);
    /* the log goes on after them, and loads again the same way */
    th_broker_restart(&B, SIGKILL, "--fsync", "always", NULL);
    c = th_connect(&B);
    assert_int_equal(dict_len(c, "dmg"), 11);
    assert_int_equal(persist_info_int(c, "replay_failed"), 4);
    th_assert_dict_roundtrip(c, "after_skip", 4);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

/* ---- snapshot ---- */

static int load_child(int idx, void *arg) {
    (void)arg;
    mpb_client_t *c = th_connect(&B);
    /* 1.5 s and 3000 requests at least (a loaded machine is slow), 20 s at most */
    int64_t t0 = th_now_ms();
    char name[32];
    for (int64_t i = 0; i < 2000000; i++) {
        int64_t t = th_now_ms() - t0;
        if ((t >= 1500 && i >= 3000) || t >= 20000) break;
        snprintf(name, sizeof name, "o%d", (int)(i % 7));
        mpb__buf_t *a;
        switch (i % 5) {
        case 0:
            a = argv_begin(2);
            mpb__w_int(a, i % 500);
            mpb__w_int(a, i);
            mpb_call(c, MPB_OP_DICT_SET, name, args.p, args.len, 0, NULL, NULL);
            break;
        case 1:
            mpb__w_int(argv_begin(1), i);
            snprintf(name, sizeof name, "l%d", idx);
            mpb_call(c, MPB_OP_LIST_APPEND, name, args.p, args.len, 0, NULL, NULL);
            break;
        case 2:
            a = argv_begin(2);
            mpb__w_int(a, i);
            mpb__w_int(a, 0);
            snprintf(name, sizeof name, "q%d", idx);
            mpb_call(c, MPB_OP_QUEUE_PUT, name, args.p, args.len, 0, NULL, NULL);
            break;
        case 3:
            if (i % 15 == 3) {
                mpb__w_int(argv_begin(1), 0);
                snprintf(name, sizeof name, "q%d", idx);
                mpb_call(c, MPB_OP_QUEUE_GET, name, args.p, args.len, 0, NULL, NULL);
            } else {
                mpb__w_int(argv_begin(1), 1);
                mpb_call(c, MPB_OP_VALUE_ADD, "counter", args.p, args.len, 0, NULL, NULL);
            }
            break;
        default:
            a = argv_begin(1);
            mpb__w_int(a, (i / 5) % 500);
            mpb_call(c, MPB_OP_DICT_DEL, name, args.p, args.len, 0, NULL, NULL);
        }
    }
    mpb_close(&c);
    return 0;
}

static void test_snapshot_under_load_equals_live(void **state) {
    (void)state;
    th_broker_start(&B, NULL);
    int n = 3;
    pid_t kids[3];
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        kids[i] = fork();
        if (kids[i] == 0) _exit(load_child(i, NULL));
    }
    usleep(500000);
    mpb_client_t *c = th_connect(&B);
    void *res;
    size_t rn;
    argv_begin(0);
    th_assert_ok(mpb_call(c, MPB_OP_SAVE, NULL, args.p, args.len, 60000, &res, &rn), c);
    mpb_free(res);
    for (int i = 0; i < n; i++)
        assert_int_equal(th_wait(kids[i], 60), 0);
    /* the snapshot replaced the first segment: what is loaded comes from it */
    char path[400];
    log_path(path, sizeof path, 0);
    assert_int_equal(access(path, F_OK), -1);
    mpb__buf_t live = {0}, loaded = {0};
    dump_state(c, &live);
    mpb_close(&c);
    th_broker_restart(&B, SIGKILL, NULL);
    c = th_connect(&B);
    dump_state(c, &loaded);
    printf("state of %zu bytes, equal after the reload\n", live.len);
    assert_same_state(&loaded, &live);
    assert_true(live.len > 4000);
    /* a second save while nothing runs, then a reload from the snapshot alone */
    argv_begin(0);
    th_assert_ok(mpb_call(c, MPB_OP_SAVE, NULL, args.p, args.len, 60000, &res, &rn), c);
    mpb_free(res);
    mpb_close(&c);
    th_broker_restart(&B, SIGKILL, NULL);
    c = th_connect(&B);
    mpb__buf_reset(&loaded);
    dump_state(c, &loaded);
    assert_same_state(&loaded, &live);
    mpb__buf_free(&live);
    mpb__buf_free(&loaded);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

/* ---- pool tasks ---- */

/* Reads [[task_id, [[ok, value]]], ...] (a pool.take or pool.fetch page) into ids and, for a
 * take, the one value of each; returns how many. */
static size_t read_tasks(const void *p, size_t n, bool take, uint64_t *ids, int64_t *vals,
                         size_t max) {
    mpb__rd_t r = {p, (const uint8_t *)p + n};
    uint32_t k, two;
    assert_int_equal(mpb__rd_array(&r, &k), 0);
    assert_true(k <= max);
    for (uint32_t i = 0; i < k; i++) {
        assert_int_equal(mpb__rd_array(&r, &two), 0);
        assert_int_equal(mpb__rd_uint(&r, &ids[i]), 0);
        if (!take) { /* fetch: [id, function, calls, attempt, start] */
            const uint8_t *v;
            size_t vn;
            assert_true(two >= 3);
            for (uint32_t j = 1; j < two; j++)
                assert_int_equal(mpb__rd_span(&r, &v, &vn), 0);
            continue;
        }
        uint32_t ncalls, pair;
        bool ok;
        assert_int_equal(mpb__rd_array(&r, &ncalls), 0);
        assert_int_equal(ncalls, 1);
        assert_int_equal(mpb__rd_array(&r, &pair), 0);
        assert_int_equal(mpb__rd_bool(&r, &ok), 0);
        assert_true(ok);
        assert_int_equal(mpb__rd_int(&r, &vals[i]), 0);
    }
    return k;
}

/* A worker's pool.done for task id of the call sq(x): x * x. */
static void done_square(mpb_client_t *w, uint64_t id, int64_t x) {
    mpb__buf_t *a = argv_begin(1);
    mpb__w_array(a, 1);
    mpb__w_array(a, 2);
    mpb__w_uint(a, id);
    mpb__w_array(a, 1);
    mpb__w_array(a, 2);
    mpb__w_bool(a, true);
    mpb__w_int(a, x * x);
    th_assert_ok(call(w, MPB_OP_POOL_DONE, NULL, NULL, NULL), w);
}

static size_t fetch(mpb_client_t *w, uint64_t *ids, size_t max) {
    mpb__buf_t *a = argv_begin(2);
    mpb__w_uint(a, max);
    mpb__w_int(a, 2000);
    void *p;
    size_t n;
    th_assert_ok(mpb_call(w, MPB_OP_POOL_FETCH, NULL, args.p, args.len, 2000, &p, &n), w);
    size_t k = read_tasks(p, n, false, ids, NULL, max);
    mpb_free(p);
    return k;
}

static void register_worker(mpb_client_t *w) {
    mpb__buf_t *a = argv_begin(3);
    mpb__w_array(a, 1);
    mpb__w_cstr(a, "sq");
    mpb__w_uint(a, 16);
    mpb__w_uint(a, 0);
    th_assert_ok(call(w, MPB_OP_POOL_REGISTER, NULL, NULL, NULL), w);
}

/* pool.take of [first, first+count): every result (waiting up to 2 s for each page). */
static size_t take(mpb_client_t *c, uint64_t first, uint64_t count, uint64_t *ids, int64_t *vals) {
    size_t got = 0;
    for (int guard = 0; got < count && guard < 100; guard++) {
        mpb__buf_t *a = argv_begin(3);
        mpb__w_uint(a, first);
        mpb__w_uint(a, count);
        mpb__w_int(a, 2000);
        void *p;
        size_t n;
        th_assert_ok(mpb_call(c, MPB_OP_POOL_TAKE, NULL, args.p, args.len, 2000, &p, &n), c);
        got += read_tasks(p, n, true, ids + got, vals + got, count - got);
        mpb_free(p);
    }
    return got;
}

static int64_t fn_queued(mpb_client_t *c) {
    mpb__w_cstr(argv_begin(1), "sq");
    void *p;
    size_t n;
    th_assert_ok(call(c, MPB_OP_POOL_FNINFO, NULL, &p, &n), c);
    mpb__rd_t r = {p, (const uint8_t *)p + n};
    uint32_t k;
    int64_t v[8];
    assert_int_equal(mpb__rd_array(&r, &k), 0);
    for (uint32_t i = 0; i < k && i < 8; i++)
        assert_int_equal(mpb__rd_int(&r, &v[i]), 0);
    mpb_free(p);
    return v[2]; /* [workers, capacity, queued, ...] */
}

/* Queued and unfinished tasks, and finished ones not yet taken, come back after a crash (from
 * a snapshot and the log after it); the caller's session resumes and takes them; a task that
 * was at a worker runs again. */
static void test_pool_tasks_restored(void **state) {
    (void)state;
    th_broker_start(&B, "--fsync", "always", NULL);
    mpb_client_t *c = th_connect(&B), *w = th_connect(&B);
    mpb__buf_t *a = argv_begin(3);
    mpb__w_cstr(a, "sq");
    mpb__w_bool(a, false);
    mpb__w_array(a, 10);
    for (int i = 1; i <= 10; i++) {
        mpb__w_array(a, 1); /* a task of one call */
        mpb__w_array(a, 1); /* its arguments */
        mpb__w_int(a, i);
    }
    void *p;
    size_t n;
    th_assert_ok(call(c, MPB_OP_POOL_SUBMIT, NULL, &p, &n), c);
    mpb__rd_t r = {p, (const uint8_t *)p + n};
    uint32_t two;
    uint64_t job, first;
    assert_int_equal(mpb__rd_array(&r, &two), 0);
    assert_int_equal(mpb__rd_uint(&r, &job), 0);
    assert_int_equal(mpb__rd_uint(&r, &first), 0);
    mpb_free(p);
    register_worker(w);
    uint64_t ids[16];
    int64_t vals[16];
    assert_int_equal(fetch(w, ids, 3), 3);
    assert_int_equal(ids[0], first);
    done_square(w, first, 1);
    done_square(w, first + 1, 2);
    assert_int_equal(take(c, first, 1, ids, vals), 1);
    assert_int_equal(vals[0], 1);
    argv_begin(0);
    th_assert_ok(mpb_call(c, MPB_OP_SAVE, NULL, args.p, args.len, 60000, &p, &n), c);
    mpb_free(p);
    done_square(w, first + 2, 3); /* after the snapshot: in the log */

    th_broker_restart(&B, SIGKILL, "--fsync", "always", NULL);
    /* c resumes its session (libmpb reconnects) and finds its two results */
    assert_int_equal(take(c, first + 1, 2, ids, vals), 2);
    assert_int_equal(ids[0], first + 1);
    assert_int_equal(vals[0], 4);
    assert_int_equal(ids[1], first + 2);
    assert_int_equal(vals[1], 9);
    assert_int_equal(fn_queued(c), 7);
    /* a new worker runs the other seven, oldest first */
    mpb_client_t *w2 = th_connect(&B);
    register_worker(w2);
    size_t k = fetch(w2, ids, 10);
    assert_int_equal(k, 7);
    for (size_t i = 0; i < k; i++) {
        assert_int_equal(ids[i], first + 3 + i);
        done_square(w2, ids[i], (int64_t)(4 + i));
    }
    assert_int_equal(take(c, first + 3, 7, ids, vals), 7);
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(vals[i], (int64_t)((4 + i) * (4 + i)));
    mpb_close(&w2);
    mpb_close(&w);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

/* ---- reliable queues ---- */

/* queue.get WITH_ID of rq (waiting up to timeout_ms): the delivery id, and the item (an
 * integer) in *item. */
static uint64_t get_with_id(mpb_client_t *c, int64_t *item, int timeout_ms) {
    mpb__buf_t *a = argv_begin(2);
    mpb__w_int(a, timeout_ms);
    mpb__w_bool(a, true);
    void *v;
    size_t vn;
    th_assert_ok(mpb_call(c, MPB_OP_QUEUE_GET, "rq", args.p, args.len, timeout_ms, &v, &vn), c);
    mpb__rd_t r = {v, (const uint8_t *)v + vn};
    uint32_t two;
    uint64_t id;
    assert_int_equal(mpb__rd_array(&r, &two), 0);
    assert_int_equal(mpb__rd_uint(&r, &id), 0);
    assert_int_equal(mpb__rd_int(&r, item), 0);
    mpb_free(v);
    return id;
}

static int taker_fd[2];

/* Takes one item of rq (waiting for the first) and says which through the pipe, then waits
 * to be killed. */
static int taker(int idx, void *arg) {
    (void)idx;
    (void)arg;
    mpb_client_t *c = th_connect(&B);
    int64_t x = 0;
    get_with_id(c, &x, 20000);
    if (write(taker_fd[1], &x, sizeof x) != (ssize_t)sizeof x) return 1;
    pause();
    return 0;
}

/* Items of a reliable joinable queue handed out and not finished stay with their takers
 * across a crash (from a snapshot and from the log): the taker resumes and finishes them; the
 * items of a taker that never comes back return to the queue when its session expires. */
static void test_reliable_deliveries_restored(void **state) {
    (void)state;
    th_broker_start(&B, "--fsync", "always", "--session-ttl-ms", "1500", "--heartbeat-ms", "500",
                    NULL);
    /* 1: taken by a process that dies with the broker (its session is not resumed); forked
     * before this process connects, its get waits for the first item */
    assert_int_equal(pipe(taker_fd), 0);
    pid_t kid = th_fork(taker, NULL);
    mpb_client_t *c = th_connect(&B);
    assert_true(th_wait_field(c, "queue/rq", "getters", 1, 10000));
    mpb__buf_t *a = argv_begin(3);
    mpb__w_nil(a);
    mpb__w_bool(a, true);
    mpb__w_bool(a, true);
    th_assert_ok(call(c, MPB_OP_QUEUE_OPEN, "rq", NULL, NULL), c);
    for (int i = 1; i <= 4; i++) {
        a = argv_begin(2);
        mpb__w_int(a, i);
        mpb__w_int(a, 0);
        th_assert_ok(call(c, MPB_OP_QUEUE_PUT, "rq", NULL, NULL), c);
    }
    int64_t x;
    assert_int_equal(th_read_records(taker_fd[0], &x, sizeof x, 1, 10000), 1);
    assert_int_equal(x, 1);
    kill(kid, SIGKILL);
    th_wait(kid, 10);
    uint64_t d1 = get_with_id(c, &x, 0); /* 2: taken before the snapshot */
    assert_int_equal(x, 2);
    argv_begin(0);
    void *res;
    size_t rn;
    th_assert_ok(mpb_call(c, MPB_OP_SAVE, NULL, args.p, args.len, 60000, &res, &rn), c);
    mpb_free(res);
    uint64_t d3 = get_with_id(c, &x, 0); /* 3: taken after it (in the log) */
    assert_int_equal(x, 3);
    th_broker_restart(&B, SIGKILL, "--fsync", "always", "--session-ttl-ms", "1500",
                      "--heartbeat-ms", "500", NULL);
    assert_int_equal(th_describe_int(c, "queue/rq", "unfinished"), 4);
    assert_int_equal(th_describe_int(c, "queue/rq", "size"), 1); /* 4 */
    /* c finishes what it took before the crash, by delivery id */
    th_assert_ok(call_int(c, MPB_OP_QUEUE_TASK_DONE, "rq", (int64_t)d3), c);
    th_assert_ok(call_int(c, MPB_OP_QUEUE_TASK_DONE, "rq", (int64_t)d1), c);
    /* the dead taker's session expires: item 1 goes back to the front */
    assert_true(th_wait_field(c, "queue/rq", "size", 2, 10000));
    assert_int_equal(get_with_id(c, &x, 0) > 0, 1);
    assert_int_equal(x, 1);
    assert_int_equal(th_describe_int(c, "queue/rq", "unfinished"), 2);
    close(taker_fd[0]);
    close(taker_fd[1]);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

/* ---- anonymous objects ---- */

static int anon_fd[2];

/* Makes an anonymous queue holding 7, says its name through the pipe, waits to be killed. */
static int anon_holder(int idx, void *arg) {
    (void)idx;
    (void)arg;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    size_t n;
    const uint8_t *v = th_int(7, &n);
    if (mpb_queue_open(c, NULL, -1, -1, &q) || mpb_queue_put(q, v, n, 0)) return 1;
    char name[18] = "";
    snprintf(name, sizeof name, "%s", mpb_queue_name(q));
    if (write(anon_fd[1], name, sizeof name) != (ssize_t)sizeof name) return 1;
    pause();
    return 0;
}

static bool anon_exists(mpb_client_t *c, const char *path) {
    void *m = NULL;
    size_t n;
    int rc = mpb_obj_describe(c, path, &m, &n);
    mpb_free(m);
    assert_true(rc == 0 || rc == MPB_ENOOBJ);
    return rc == 0;
}

static bool anon_wait_gone(mpb_client_t *c, const char *path, int timeout_ms) {
    int64_t end = th_now_ms() + timeout_ms;
    while (anon_exists(c, path))
        if (th_now_ms() > end)
            return false;
        else
            usleep(10000);
    return true;
}

/* The session id of the one holder of path, from obj.info's holders. */
static uint64_t anon_holder_of(mpb_client_t *c, const char *path) {
    void *m;
    size_t n;
    th_assert_ok(mpb_obj_describe(c, path, &m, &n), c);
    mpb__rd_t r = {m, (const uint8_t *)m + n}, h, one, sid;
    uint32_t nh;
    uint64_t id = 0;
    assert_int_equal(mpb__rd_mapget(&r, "holders", &h), 0);
    assert_int_equal(mpb__rd_array(&h, &nh), 0);
    assert_int_equal(nh, 1);
    one = h;
    assert_int_equal(mpb__rd_mapget(&one, "session", &sid), 0);
    assert_int_equal(mpb__rd_uint(&sid, &id), 0);
    mpb_free(m);
    return id;
}

/* Anonymous objects come back like named ones, from the snapshot (a dict) and from the log (a
 * queue, a lock, references taken and given back): their names, contents and the references
 * of the sessions that resume; a holder that never comes back expires and lets its object go;
 * one whose last reference went before the crash is deleted after its grace; a deletion
 * before a crash stays done. */
static void test_anon_restored(void **state) {
    (void)state;
    const char *opts[] = {"--fsync",        "always", "--session-ttl-ms", "1500",
                          "--heartbeat-ms", "500",    "--anon-grace-ms",  "1000"};
#define ANON_OPTS opts[0], opts[1], opts[2], opts[3], opts[4], opts[5], opts[6], opts[7]
    th_broker_start(&B, ANON_OPTS, NULL);
    assert_int_equal(pipe(anon_fd), 0);
    pid_t kid = th_fork(anon_holder, NULL);
    char kq[18], p_kq[40], p_d[40], p_q[40], p_lk[40], p_l[40];
    assert_int_equal(th_read_records(anon_fd[0], kq, sizeof kq, 1, 10000), 1);
    snprintf(p_kq, sizeof p_kq, "queue/%s", kq);
    kill(kid, SIGKILL);
    th_wait(kid, 10);
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    mpb_queue_t *q;
    mpb_lock_t *lk;
    mpb_list_t *l;
    size_t kn, vn;
    const uint8_t *k = th_str("k", &kn);
    uint8_t key[16];
    memcpy(key, k, kn);
    const uint8_t *v = th_int(41, &vn);
    th_assert_ok(mpb_dict_open(c, NULL, &d), c);
    th_assert_ok(mpb_dict_set(d, key, kn, v, vn), c);
    snprintf(p_d, sizeof p_d, "dict/%s", mpb_dict_name(d));
    argv_begin(0);
    void *res;
    size_t rn;
    th_assert_ok(mpb_call(c, MPB_OP_SAVE, NULL, args.p, args.len, 60000, &res, &rn), c);
    mpb_free(res);
    /* after the snapshot, in the log only */
    v = th_int(42, &vn);
    th_assert_ok(mpb_dict_set(d, key, kn, v, vn), c);
    th_assert_ok(call0(c, MPB_OP_OBJ_REF, p_d), c);
    th_assert_ok(call0(c, MPB_OP_OBJ_REF, p_d), c);
    th_assert_ok(call0(c, MPB_OP_OBJ_UNREF, p_d), c);
    th_assert_ok(mpb_queue_open(c, NULL, -1, -1, &q), c);
    v = th_int(5, &vn);
    th_assert_ok(mpb_queue_put(q, v, vn, 0), c);
    snprintf(p_q, sizeof p_q, "queue/%s", mpb_queue_name(q));
    th_assert_ok(mpb_lock_open(c, NULL, &lk), c);
    snprintf(p_lk, sizeof p_lk, "lock/%s", mpb_lock_name(lk));
    th_assert_ok(mpb_list_open(c, NULL, &l), c);
    snprintf(p_l, sizeof p_l, "list/%s", mpb_list_name(l));
    mpb_list_close(&l); /* doomed at the crash */
    assert_int_equal(th_describe_int(c, p_l, "refs"), 0);
    uint64_t me = anon_holder_of(c, p_q);
    th_broker_restart(&B, SIGKILL, ANON_OPTS, NULL);
    assert_int_equal(persist_info_int(c, "replay_failed"), 0);
    /* contents, and the references of the resumed session */
    void *got;
    size_t gn;
    int64_t x;
    th_assert_ok(mpb_dict_get(d, key, kn, &got, &gn), c);
    assert_int_equal(mpb_unpack_i64(got, gn, &x), 0);
    assert_int_equal(x, 42);
    mpb_free(got);
    assert_int_equal(th_describe_int(c, p_d, "refs"), 2);
    assert_int_equal(th_describe_int(c, p_d, "delete_in_ms"), -1);
    assert_int_equal(anon_holder_of(c, p_d), me);
    th_assert_ok(mpb_queue_get(q, &got, &gn, 0), c);
    assert_int_equal(mpb_unpack_i64(got, gn, &x), 0);
    assert_int_equal(x, 5);
    mpb_free(got);
    assert_int_equal(anon_holder_of(c, p_q), me);
    th_assert_ok(mpb_lock_acquire(lk, 0, NULL), c);
    th_assert_ok(mpb_lock_release(lk), c);
    assert_int_equal(th_describe_int(c, p_lk, "refs"), 1);
    /* the dead holder's queue, with its item, until its session expires */
    assert_int_equal(th_describe_int(c, p_kq, "size"), 1);
    assert_int_equal(th_describe_int(c, p_kq, "refs"), 1);
    assert_true(anon_wait_gone(c, p_kq, 10000));
    /* doomed before the crash: deleted after its grace */
    assert_true(anon_wait_gone(c, p_l, 5000));
    /* the handle's references go: deleted after the grace, not at once */
    th_assert_ok(call0(c, MPB_OP_OBJ_UNREF, p_d), c);
    mpb_dict_close(&d);
    assert_int_equal(th_describe_int(c, p_d, "refs"), 0);
    assert_true(anon_exists(c, p_d));
    assert_true(anon_wait_gone(c, p_d, 5000));
    /* a deletion is logged: it does not come back */
    th_broker_restart(&B, SIGKILL, ANON_OPTS, NULL);
    assert_int_equal(persist_info_int(c, "replay_failed"), 0);
    assert_false(anon_exists(c, p_d));
    assert_false(anon_exists(c, p_l));
    assert_true(anon_exists(c, p_q));
    assert_int_equal(th_describe_int(c, p_q, "refs"), 1);
    mpb_queue_close(&q);
    mpb_lock_close(&lk);
    assert_true(anon_wait_gone(c, p_q, 5000));
    assert_true(anon_wait_gone(c, p_lk, 5000));
#undef ANON_OPTS
    close(anon_fd[0]);
    close(anon_fd[1]);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

/* ---- seen from outside ---- */

/* The persistence map of info as a reader on field, in *buf (mpb_free it). */
static void persist_info(mpb_client_t *c, const char *field, void **buf, mpb__rd_t *v) {
    size_t n;
    th_assert_ok(mpb_broker_info(c, buf, &n), c);
    mpb__rd_t r = {*buf, (const uint8_t *)*buf + n}, p;
    assert_int_equal(mpb__rd_mapget(&r, "persistence", &p), 0);
    assert_int_equal(mpb__rd_mapget(&p, field, v), 0);
}

static int64_t persist_info_int(mpb_client_t *c, const char *field) {
    void *buf;
    mpb__rd_t v;
    int64_t x;
    persist_info(c, field, &buf, &v);
    assert_int_equal(mpb__rd_int(&v, &x), 0);
    mpb_free(buf);
    return x;
}

static char *metrics(void) {
    int port = th_http_port(&B);
    assert_true(port > 0);
    return th_http_request(port, "GET", "/metrics");
}

/* info and /metrics: the log's size, the last fsync, the last snapshot and its duration. */
static void test_info_and_metrics(void **state) {
    (void)state;
    th_broker_start(&B, "--fsync", "always", "--http", "127.0.0.1:0", NULL);
    mpb_client_t *c = th_connect(&B);
    fill_keys(c, 0, 20);
    void *buf;
    mpb__rd_t v;
    const char *mode;
    uint32_t ml;
    persist_info(c, "fsync", &buf, &v);
    assert_int_equal(mpb__rd_str(&v, &mode, &ml), 0);
    assert_int_equal(ml, 6);
    assert_memory_equal(mode, "always", 6);
    mpb_free(buf);
    char path[400];
    log_path(path, sizeof path, 0);
    int64_t logb = persist_info_int(c, "log_bytes");
    assert_int_equal(logb, log_end(path));
    assert_true(file_size(path) > logb); /* --fsync always: zero-filled ahead */
    assert_true(persist_info_int(c, "last_fsync_ms") > unix_ms() - 60000);
    assert_int_equal(persist_info_int(c, "last_snapshot_ms"), 0);
    char *m = metrics();
    assert_true(th_metric(m, "mpb_persist_enabled", 0) == 1);
    assert_true(th_metric(m, "mpb_persist_log_bytes", -1) >= (double)logb);
    assert_true(th_metric(m, "mpb_persist_fsyncs_total", 0) >= 20); /* --fsync always */
    assert_true(th_metric(m, "mpb_persist_last_fsync_timestamp_seconds", 0) > 1e9);
    free(m);
    argv_begin(0);
    void *res;
    size_t rn;
    th_assert_ok(mpb_call(c, MPB_OP_SAVE, NULL, args.p, args.len, 60000, &res, &rn), c);
    mpb_free(res);
    assert_true(persist_info_int(c, "last_snapshot_ms") > unix_ms() - 60000);
    assert_true(persist_info_int(c, "snapshot_bytes") > 20 * 8);
    assert_true(persist_info_int(c, "last_snapshot_duration_ms") >= 0);
    m = metrics();
    assert_true(th_metric(m, "mpb_persist_last_snapshot_timestamp_seconds", 0) > 1e9);
    assert_true(th_metric(m, "mpb_persist_snapshot_bytes", 0) > 20 * 8);
    assert_true(th_metric(m, "mpb_persist_last_snapshot_duration_seconds", -1) >= 0);
    free(m);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

/* A snapshot that does not read back whole refuses the start: it was renamed into place
 * only once complete, so damage in it is not a crash's. */
static void test_damaged_snapshot_refused(void **state) {
    (void)state;
    th_broker_start(&B, NULL);
    mpb_client_t *c = th_connect(&B);
    fill_keys(c, 0, 50);
    argv_begin(0);
    void *res;
    size_t rn;
    th_assert_ok(mpb_call(c, MPB_OP_SAVE, NULL, args.p, args.len, 60000, &res, &rn), c);
    mpb_free(res);
    mpb_close(&c);
    th_broker_kill(&B, SIGKILL);
    char path[400];
    snprintf(path, sizeof path, "%s/data/snapshot", B.dir);
    off_t size = file_size(path);
    assert_true(size > 100);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, size / 2, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, size / 2, SEEK_SET);
    fputc(ch ^ 0x40, f);
    fclose(f);
    assert_int_equal(th_broker_restart_fails(&B, 0, NULL), 2);
    assert_true(th_log_count(&B, "the snapshot is damaged: refusing to start") > 0);
    /* put back, it loads */
    f = fopen(path, "r+b");
    fseek(f, size / 2, SEEK_SET);
    fputc(ch, f);
    fclose(f);
    th_broker_restart(&B, 0, NULL);
    c = th_connect(&B);
    assert_int_equal(dict_len(c, "dmg"), 50);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

/* ---- settings ---- */

static void test_persist_off_keeps_nothing(void **state) {
    (void)state;
    th_broker_start(&B, "--persist", "off", NULL);
    mpb_client_t *c = th_connect(&B);
    fill_keys(c, 0, 10);
    argv_begin(0);
    th_assert_err(mpb_call(c, MPB_OP_SAVE, NULL, args.p, args.len, 0, NULL, NULL), MPB_EINVAL, c,
                  "persistence is off", NULL);
    mpb_close(&c);
    th_broker_restart(&B, SIGKILL, "--persist", "off", NULL);
    c = th_connect(&B);
    assert_int_equal(dict_len(c, "dmg"), 0);
    mpb_close(&c);
    char path[400];
    log_path(path, sizeof path, 0);
    assert_int_equal(access(path, F_OK), -1);
    th_broker_stop_checked(&B);
}

int main(void) {
    if (getenv("TH_ONLY")) cmocka_set_test_filter(getenv("TH_ONLY"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_restored),
        cmocka_unit_test(test_zero_filled_tail_cut_quietly),
        cmocka_unit_test(test_torn_tail_cut),
        cmocka_unit_test(test_damaged_middle_refused_then_repaired),
        cmocka_unit_test(test_unappliable_record_warned_and_skipped),
        cmocka_unit_test(test_snapshot_under_load_equals_live),
        cmocka_unit_test(test_persist_off_keeps_nothing),
        cmocka_unit_test(test_pool_tasks_restored),
        cmocka_unit_test(test_reliable_deliveries_restored),
        cmocka_unit_test(test_anon_restored),
        cmocka_unit_test(test_info_and_metrics),
        cmocka_unit_test(test_damaged_snapshot_refused),
        cmocka_unit_test(test_crash_loop_always),
        cmocka_unit_test(test_crash_loop_everysec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
