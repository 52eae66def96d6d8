/* test_async_ops.c - the pipelined form of every op (mpb_KIND_OP_async, async_ops.c) against a
 * real broker: each op runs synchronously on one object and asynchronously on a twin in the
 * same state, and the callback's value is what the synchronous call gave (the same bytes, the
 * same integer or boolean, the same error), both objects ending alike. Blocking ops complete
 * when another process (forked before connecting, held behind a gate) puts, sets or sends.
 * The NULL handles of these calls are checked by test_null_handles, generated from the
 * header. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "th.h"

static th_broker_t B;

typedef struct got {
    int done, status;
    uint8_t *v;
    size_t n;
} got_t;

static void on_got(mpb_client_t *c, int status, const void *v, size_t n, void *arg) {
    (void)c;
    got_t *g = arg;
    g->done++;
    g->status = status;
    free(g->v);
    g->v = malloc(n ? n : 1);
    if (n) memcpy(g->v, v, n);
    g->n = n;
}

/* Runs an async call (cb and arg appended here) to its reply. */
#define RUN(c, g, fn, ...)                                                                         \
    do {                                                                                           \
        (g).done = 0;                                                                              \
        assert_int_equal(fn(__VA_ARGS__, on_got, &(g)), 0);                                        \
        assert_int_equal(mpb_drain(c, 10000), 0);                                                  \
        assert_int_equal((g).done, 1);                                                             \
    } while (0)

static void same_nil(const got_t *g, int rc) {
    assert_int_equal(g->status, rc);
    if (!rc) {
        assert_int_equal(g->n, 1);
        assert_int_equal(g->v[0], 0xc0);
    }
}

static void same_val(const got_t *g, int rc, const void *v, size_t n) {
    assert_int_equal(g->status, rc);
    if (rc) return;
    assert_int_equal(g->n, n);
    assert_memory_equal(g->v, v, n);
}

static void same_int(const got_t *g, int rc, int64_t x) {
    assert_int_equal(g->status, rc);
    if (rc) return;
    int64_t y;
    assert_int_equal(mpb_unpack_i64(g->v, g->n, &y), 0);
    assert_int_equal(y, x);
}

/* rc: what a boolean call returned (1, 0 or an error) */
static void same_bool(const got_t *g, int rc) {
    assert_int_equal(g->status, rc < 0 ? rc : 0);
    if (rc < 0) return;
    int y;
    assert_int_equal(mpb_unpack_bool(g->v, g->n, &y), 0);
    assert_int_equal(y, rc);
}

static uint8_t K1[] = {0xa2, 'k', '1'}, K2[] = {0xa2, 'k', '2'}, KX[] = {0xa1, 'x'};
static uint8_t V1[] = {0xa3, 'o', 'n', 'e'}, V2[] = {0x92, 0x01, 0x02}, V3[] = {0x2a};

static void test_dict(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *a, *b;
    assert_int_equal(mpb_dict_open(c, "adA", &a), 0);
    assert_int_equal(mpb_dict_open(c, "adB", &b), 0);
    got_t g = {0};
    void *v;
    size_t n;
    uint64_t u;
    int64_t x;
    int rc;

    rc = mpb_dict_set(a, K1, 3, V1, 4);
    RUN(c, g, mpb_dict_set_async, b, K1, 3, V1, 4);
    same_nil(&g, rc);
    rc = mpb_dict_set(a, K2, 3, V2, 3);
    RUN(c, g, mpb_dict_set_async, b, K2, 3, V2, 3);
    same_nil(&g, rc);
    assert_int_equal(mpb_dict_get(a, K1, 3, &v, &n), 0);
    RUN(c, g, mpb_dict_get_async, b, K1, 3);
    same_val(&g, 0, v, n);
    mpb_free(v);
    rc = mpb_dict_get(a, KX, 2, &v, &n);
    assert_int_equal(rc, MPB_ENOKEY);
    RUN(c, g, mpb_dict_get_async, b, KX, 2);
    same_val(&g, rc, NULL, 0);
    assert_int_equal(mpb_dict_get_default(a, KX, 2, V3, 1, &v, &n), 0);
    RUN(c, g, mpb_dict_get_default_async, b, KX, 2, V3, 1);
    same_val(&g, 0, v, n);
    mpb_free(v);
    rc = mpb_dict_contains(a, K2, 3);
    assert_int_equal(rc, 1);
    RUN(c, g, mpb_dict_contains_async, b, K2, 3);
    same_bool(&g, rc);
    rc = mpb_dict_contains(a, KX, 2);
    RUN(c, g, mpb_dict_contains_async, b, KX, 2);
    same_bool(&g, rc);
    assert_int_equal(mpb_dict_len(a, &u), 0);
    RUN(c, g, mpb_dict_len_async, b);
    same_int(&g, 0, (int64_t)u);
    assert_int_equal(mpb_dict_incr(a, KX, 2, 5, &x), 0);
    RUN(c, g, mpb_dict_incr_async, b, KX, 2, 5);
    same_int(&g, 0, x);
    rc = mpb_dict_incr(a, K1, 3, 1, &x); /* a string: ETYPE */
    assert_int_equal(rc, MPB_ETYPE);
    RUN(c, g, mpb_dict_incr_async, b, K1, 3, 1);
    same_int(&g, rc, 0);
    uint8_t pairs[] = {0x81, 0xa1, 'u', 0x07};
    rc = mpb_dict_update(a, pairs, sizeof pairs);
    RUN(c, g, mpb_dict_update_async, b, pairs, sizeof pairs);
    same_nil(&g, rc);
    assert_int_equal(mpb_dict_setdefault(a, K1, 3, V3, 1, &v, &n), 0);
    RUN(c, g, mpb_dict_setdefault_async, b, K1, 3, V3, 1);
    same_val(&g, 0, v, n);
    mpb_free(v);
    /* a page of items: the callback gets the reply, [cursor, items] */
    void *page;
    size_t plen, cnt;
    uint64_t cur = 0;
    assert_int_equal(mpb_dict_scan(a, MPB_SCAN_ITEMS, &cur, 2, &page, &plen, &cnt), 0);
    RUN(c, g, mpb_dict_scan_async, b, MPB_SCAN_ITEMS, 0, 2);
    assert_int_equal(g.status, 0);
    mpb_mpreader_t r;
    uint32_t two;
    uint64_t cur2;
    const void *items;
    size_t ilen;
    assert_int_equal(mpb_mpr_init(&r, g.v, g.n), 0);
    assert_int_equal(mpb_mpr_array(&r, &two), 0);
    assert_int_equal(two, 2);
    assert_int_equal(mpb_mpr_u64(&r, &cur2), 0);
    assert_int_equal(cur2, cur);
    assert_int_equal(mpb_mpr_skip(&r, &items, &ilen), 0);
    assert_int_equal(ilen, plen);
    assert_memory_equal(items, page, plen);
    mpb_free(page);
    assert_int_equal(mpb_dict_pop(a, K2, 3, NULL, 0, &v, &n), 0);
    RUN(c, g, mpb_dict_pop_async, b, K2, 3, NULL, 0);
    same_val(&g, 0, v, n);
    mpb_free(v);
    assert_int_equal(mpb_dict_pop(a, K2, 3, V3, 1, &v, &n), 0); /* gone: the default */
    RUN(c, g, mpb_dict_pop_async, b, K2, 3, V3, 1);
    same_val(&g, 0, v, n);
    mpb_free(v);
    void *k;
    size_t kn;
    assert_int_equal(mpb_dict_popitem(a, &k, &kn, &v, &n), 0);
    RUN(c, g, mpb_dict_popitem_async, b);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.n, 1 + kn + n); /* [key, value] */
    assert_int_equal(g.v[0], 0x92);
    assert_memory_equal(g.v + 1, k, kn);
    assert_memory_equal(g.v + 1 + kn, v, n);
    mpb_free(k);
    mpb_free(v);
    rc = mpb_dict_del(a, KX, 2);
    RUN(c, g, mpb_dict_del_async, b, KX, 2);
    same_nil(&g, rc);
    rc = mpb_dict_del(a, KX, 2);
    assert_int_equal(rc, MPB_ENOKEY);
    RUN(c, g, mpb_dict_del_async, b, KX, 2);
    same_nil(&g, rc);
    rc = mpb_dict_copy(a, "adA2");
    RUN(c, g, mpb_dict_copy_async, b, "adB2");
    same_nil(&g, rc);
    /* both copies, and both originals, alike */
    mpb_dict_t *a2, *b2;
    assert_int_equal(mpb_dict_open(c, "adA2", &a2), 0);
    assert_int_equal(mpb_dict_open(c, "adB2", &b2), 0);
    uint64_t la, lb;
    assert_int_equal(mpb_dict_len(a2, &la), 0);
    assert_int_equal(mpb_dict_len(b2, &lb), 0);
    assert_int_equal(la, lb);
    assert_int_equal(la, 1); /* k1 is what is left */
    mpb_dict_close(&a2);
    mpb_dict_close(&b2);
    rc = mpb_dict_clear(a);
    RUN(c, g, mpb_dict_clear_async, b);
    same_nil(&g, rc);
    RUN(c, g, mpb_dict_len_async, b);
    same_int(&g, 0, 0);
    /* a bad argument: refused at once, as the synchronous call does, and no callback */
    assert_int_equal(mpb_dict_get_async(b, "\xc1", 1, on_got, &g), MPB_EINVAL);
    assert_int_equal(mpb_dict_copy_async(b, "bad/name", on_got, &g), MPB_EINVAL);
    assert_int_equal(mpb_inflight(c), 0);
    free(g.v);
    mpb_dict_close(&a);
    mpb_dict_close(&b);
    mpb_close(&c);
}

static void test_list(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_list_t *a, *b;
    assert_int_equal(mpb_list_open(c, "alA", &a), 0);
    assert_int_equal(mpb_list_open(c, "alB", &b), 0);
    got_t g = {0};
    void *v;
    size_t n, cnt;
    uint64_t u;
    int64_t x;
    int rc;
    rc = mpb_list_append(a, V1, 4);
    RUN(c, g, mpb_list_append_async, b, V1, 4);
    same_nil(&g, rc);
    uint8_t three[] = {0x93, 0x03, 0x01, 0x02};
    rc = mpb_list_extend(a, three, sizeof three);
    RUN(c, g, mpb_list_extend_async, b, three, sizeof three);
    same_nil(&g, rc);
    rc = mpb_list_insert(a, 1, V3, 1);
    RUN(c, g, mpb_list_insert_async, b, 1, V3, 1);
    same_nil(&g, rc);
    assert_int_equal(mpb_list_get(a, -1, &v, &n), 0);
    RUN(c, g, mpb_list_get_async, b, -1);
    same_val(&g, 0, v, n);
    mpb_free(v);
    rc = mpb_list_get(a, 99, &v, &n);
    assert_int_equal(rc, MPB_EINDEX);
    RUN(c, g, mpb_list_get_async, b, 99);
    same_val(&g, rc, NULL, 0);
    rc = mpb_list_set(a, 0, V2, 3);
    RUN(c, g, mpb_list_set_async, b, 0, V2, 3);
    same_nil(&g, rc);
    assert_int_equal(mpb_list_index(a, V3, 1, 0, 100, &x), 0);
    RUN(c, g, mpb_list_index_async, b, V3, 1, 0, 100);
    same_int(&g, 0, x);
    assert_int_equal(mpb_list_count(a, V3, 1, &u), 0);
    RUN(c, g, mpb_list_count_async, b, V3, 1);
    same_int(&g, 0, (int64_t)u);
    assert_int_equal(mpb_list_len(a, &u), 0);
    RUN(c, g, mpb_list_len_async, b);
    same_int(&g, 0, (int64_t)u);
    rc = mpb_list_remove(a, V3, 1);
    RUN(c, g, mpb_list_remove_async, b, V3, 1);
    same_nil(&g, rc);
    rc = mpb_list_remove(a, V1, 4); /* not there any more */
    assert_int_equal(rc, MPB_EVALUE);
    RUN(c, g, mpb_list_remove_async, b, V1, 4);
    same_nil(&g, rc);
    rc = mpb_list_reverse(a);
    RUN(c, g, mpb_list_reverse_async, b);
    same_nil(&g, rc);
    rc = mpb_list_sort(a, 0); /* numbers and an array: not comparable */
    assert_int_equal(rc, MPB_ETYPE);
    RUN(c, g, mpb_list_sort_async, b, 0);
    same_nil(&g, rc);
    assert_int_equal(mpb_list_pop(a, -1, &v, &n), 0); /* the array */
    RUN(c, g, mpb_list_pop_async, b, -1);
    same_val(&g, 0, v, n);
    mpb_free(v);
    rc = mpb_list_sort(a, 1);
    assert_int_equal(rc, 0);
    RUN(c, g, mpb_list_sort_async, b, 1);
    same_nil(&g, rc);
    void *items;
    assert_int_equal(mpb_list_slice(a, 0, 10, 100, &items, &n, &cnt), 0);
    RUN(c, g, mpb_list_slice_async, b, 0, 10, 100);
    same_val(&g, 0, items, n);
    mpb_free(items);
    rc = mpb_list_clear(a);
    RUN(c, g, mpb_list_clear_async, b);
    same_nil(&g, rc);
    RUN(c, g, mpb_list_len_async, b);
    same_int(&g, 0, 0);
    free(g.v);
    mpb_list_close(&a);
    mpb_list_close(&b);
    mpb_close(&c);
}

/* ---- blocking ops, completed by another process ---- */

static int gate[2]; /* the other process waits for a byte */

/* Puts two items on aqX, sets event aeX, sends two items on pipe apX (end 1), waits at the
 * barrier abX (2 parties) twice and releases semaphore asX twice; X: A for the synchronous
 * calls' object, B for the async ones'. */
static int other_party(void) {
    char ch;
    close(gate[1]);
    if (read(gate[0], &ch, 1) != 1) return 99;
    mpb_client_t *c = th_connect_quiet(&B);
    int bad = 0;
    for (int i = 0; i < 2; i++) {
        const char *x = i ? "B" : "A";
        char name[16];
        mpb_queue_t *q;
        mpb_event_t *e;
        mpb_pipe_t *p;
        mpb_semaphore_t *s;
        snprintf(name, sizeof name, "aq%s", x);
        bad |= mpb_queue_open(c, name, -1, -1, &q) || mpb_queue_put_i64(q, 7, 5000) ||
               mpb_queue_put_i64(q, 8, 5000);
        mpb_queue_close(&q);
        snprintf(name, sizeof name, "ae%s", x);
        bad |= mpb_event_open(c, name, &e) || mpb_event_set(e);
        mpb_event_close(&e);
        snprintf(name, sizeof name, "ap%s", x);
        bad |=
            mpb_pipe_open(c, name, 1, 1, &p) || mpb_pipe_send(p, V1, 4) || mpb_pipe_send(p, V2, 3);
        mpb_pipe_close(&p);
        snprintf(name, sizeof name, "as%s", x);
        bad |= mpb_semaphore_open(c, name, 0, 0, &s) || mpb_semaphore_release(s, 1);
        mpb_semaphore_close(&s);
    }
    mpb_close(&c);
    if (bad) fprintf(stderr, "other party: %d\n", bad);
    return bad;
}

static void test_blocking_ops_complete_when_another_process_acts(void **state) {
    (void)state;
    assert_int_equal(pipe(gate), 0);
    pid_t kid = th_fork_bare(); /* before connecting: see th_fork_children() */
    if (kid == 0) _exit(other_party());
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *qa, *qb;
    mpb_event_t *ea, *eb;
    mpb_pipe_t *pa, *pb;
    mpb_semaphore_t *sa, *sb;
    assert_int_equal(mpb_queue_open(c, "aqA", 0, 0, &qa), 0);
    assert_int_equal(mpb_queue_open(c, "aqB", 0, 0, &qb), 0);
    assert_int_equal(mpb_event_open(c, "aeA", &ea), 0);
    assert_int_equal(mpb_event_open(c, "aeB", &eb), 0);
    assert_int_equal(mpb_pipe_open(c, "apA", 0, 1, &pa), 0);
    assert_int_equal(mpb_pipe_open(c, "apB", 0, 1, &pb), 0);
    assert_int_equal(mpb_semaphore_open(c, "asA", 0, 0, &sa), 0);
    assert_int_equal(mpb_semaphore_open(c, "asB", 0, 0, &sb), 0);
    /* the async ones first, parked until the other process acts */
    got_t qg = {0}, eg = {0}, pg = {0}, sg = {0}, pollg = {0};
    assert_int_equal(mpb_queue_get_async(qb, 20000, on_got, &qg), 0);
    assert_int_equal(mpb_event_wait_async(eb, 20000, on_got, &eg), 0);
    assert_int_equal(mpb_pipe_poll_async(pb, 20000, on_got, &pollg), 0);
    assert_int_equal(mpb_semaphore_acquire_async(sb, 20000, on_got, &sg), 0);
    assert_int_equal(mpb_flush(c), 0);
    assert_int_equal(mpb_poll(c, 200), 0); /* nothing answers yet */
    assert_int_equal(write(gate[1], "g", 1), 1);
    assert_int_equal(mpb_drain(c, 20000), 0);
    void *v;
    size_t n;
    int64_t x;
    assert_int_equal(mpb_queue_get(qa, &v, &n, 20000), 0);
    same_val(&qg, 0, v, n);
    mpb_free(v);
    assert_int_equal(mpb_unpack_i64(qg.v, qg.n, &x), 0);
    assert_int_equal(x, 7);
    same_bool(&eg, mpb_event_wait(ea, 20000));
    same_bool(&pollg, mpb_pipe_poll(pa, 20000));
    assert_int_equal(mpb_semaphore_acquire(sa, 20000), 0);
    assert_int_equal(sg.status, 0);
    assert_int_equal(mpb_pipe_recv(pa, &v, &n, 20000), 0);
    RUN(c, pg, mpb_pipe_recv_async, pb, 20000);
    same_val(&pg, 0, v, n);
    assert_memory_equal(v, V1, 4);
    mpb_free(v);
    assert_int_equal(th_wait(kid, 20), 0);
    close(gate[0]);
    close(gate[1]);
    /* the rest, now without waiting */
    got_t g = {0};
    uint64_t u;
    int rc;
    RUN(c, g, mpb_queue_get_async, qb, 0);
    assert_int_equal(mpb_queue_get(qa, &v, &n, 0), 0);
    same_val(&g, 0, v, n);
    mpb_free(v);
    rc = mpb_queue_get(qa, &v, &n, 0);
    assert_int_equal(rc, MPB_EEMPTY);
    RUN(c, g, mpb_queue_get_async, qb, 0);
    same_val(&g, rc, NULL, 0);
    rc = mpb_queue_put(qa, V3, 1, 0);
    RUN(c, g, mpb_queue_put_async, qb, V3, 1, 0);
    same_nil(&g, rc);
    assert_int_equal(mpb_queue_qsize(qa, &u), 0);
    RUN(c, g, mpb_queue_qsize_async, qb);
    same_int(&g, 0, (int64_t)u);
    rc = mpb_queue_empty(qa);
    RUN(c, g, mpb_queue_empty_async, qb);
    same_bool(&g, rc);
    rc = mpb_queue_full(qa);
    RUN(c, g, mpb_queue_full_async, qb);
    same_bool(&g, rc);
    rc = mpb_queue_task_done(qa); /* a plain queue: ETYPE */
    assert_int_equal(rc, MPB_ETYPE);
    RUN(c, g, mpb_queue_task_done_async, qb);
    same_nil(&g, rc);
    rc = mpb_event_is_set(ea);
    RUN(c, g, mpb_event_is_set_async, eb);
    same_bool(&g, rc);
    rc = mpb_event_clear(ea);
    RUN(c, g, mpb_event_clear_async, eb);
    same_nil(&g, rc);
    rc = mpb_event_wait(ea, 0);
    assert_int_equal(rc, 0);
    RUN(c, g, mpb_event_wait_async, eb, 0);
    same_bool(&g, rc);
    rc = mpb_event_set(ea);
    RUN(c, g, mpb_event_set_async, eb);
    same_nil(&g, rc);
    rc = mpb_pipe_send(pa, V3, 1); /* one way back */
    RUN(c, g, mpb_pipe_send_async, pb, V3, 1);
    same_nil(&g, rc);
    mpb_queue_close(&qa);
    mpb_queue_close(&qb);
    mpb_event_close(&ea);
    mpb_event_close(&eb);
    mpb_pipe_close(&pa);
    mpb_pipe_close(&pb);
    mpb_semaphore_close(&sa);
    mpb_semaphore_close(&sb);
    free(qg.v);
    free(eg.v);
    free(pg.v);
    free(sg.v);
    free(pollg.v);
    free(g.v);
    mpb_close(&c);
}

/* A joinable, reliable queue: tracked gets, task_done_id, join. */
static void test_tracked_queue(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *a, *b;
    assert_int_equal(mpb_queue_open_reliable(c, "atA", 0, 1, &a), 0);
    assert_int_equal(mpb_queue_open_reliable(c, "atB", 0, 1, &b), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mpb_queue_put(a, V2, 3, 0), 0);
        assert_int_equal(mpb_queue_put(b, V2, 3, 0), 0);
    }
    got_t g = {0};
    void *v;
    size_t n;
    uint64_t da;
    assert_int_equal(mpb_queue_get_tracked(a, &v, &n, &da, 0), 0);
    RUN(c, g, mpb_queue_get_tracked_async, b, 0);
    assert_int_equal(g.status, 0);
    mpb_mpreader_t r;
    uint32_t two;
    uint64_t db;
    const void *item;
    size_t il;
    assert_int_equal(mpb_mpr_init(&r, g.v, g.n), 0);
    assert_int_equal(mpb_mpr_array(&r, &two), 0);
    assert_int_equal(mpb_mpr_u64(&r, &db), 0);
    assert_int_equal(mpb_mpr_skip(&r, &item, &il), 0);
    assert_int_equal(il, n);
    assert_memory_equal(item, v, n);
    assert_true(da > 0 && db > 0);
    mpb_free(v);
    int rc = mpb_queue_task_done_id(a, da);
    RUN(c, g, mpb_queue_task_done_id_async, b, db);
    same_nil(&g, rc);
    rc = mpb_queue_task_done_id(a, da); /* done already */
    assert_int_equal(rc, MPB_EVALUE);
    RUN(c, g, mpb_queue_task_done_id_async, b, db);
    same_nil(&g, rc);
    rc = mpb_queue_join(a, 0); /* two left unfinished */
    assert_true(rc < 0);
    RUN(c, g, mpb_queue_join_async, b, 0);
    same_nil(&g, rc);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mpb_queue_get(a, &v, &n, 0), 0);
        mpb_free(v);
        assert_int_equal(mpb_queue_task_done(a), 0);
        RUN(c, g, mpb_queue_get_async, b, 0);
        RUN(c, g, mpb_queue_task_done_async, b);
        same_nil(&g, 0);
    }
    rc = mpb_queue_join(a, 0);
    RUN(c, g, mpb_queue_join_async, b, 0);
    same_nil(&g, rc);
    free(g.v);
    mpb_queue_close(&a);
    mpb_queue_close(&b);
    mpb_close(&c);
}

static void test_sync_kinds_value_namespace(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    got_t g = {0};
    int rc;
    int64_t x;
    uint64_t f;
    /* lock: the fences differ (each acquisition gets a larger one) but are both given */
    mpb_lock_t *la, *lb;
    assert_int_equal(mpb_lock_open(c, "alkA", &la), 0);
    assert_int_equal(mpb_lock_open(c, "alkB", &lb), 0);
    assert_int_equal(mpb_lock_acquire(la, 1000, &f), 0);
    RUN(c, g, mpb_lock_acquire_async, lb, 1000);
    assert_int_equal(g.status, 0);
    assert_int_equal(mpb_unpack_i64(g.v, g.n, &x), 0);
    assert_true(f > 0 && x > 0);
    rc = mpb_lock_locked(la);
    RUN(c, g, mpb_lock_locked_async, lb);
    same_bool(&g, rc);
    rc = mpb_lock_acquire(la, 0, NULL); /* held: not now */
    assert_true(rc < 0);
    RUN(c, g, mpb_lock_acquire_async, lb, 0);
    same_int(&g, rc, 0);
    rc = mpb_lock_release(la);
    RUN(c, g, mpb_lock_release_async, lb);
    same_nil(&g, rc);
    rc = mpb_lock_release(la);
    assert_true(rc < 0);
    RUN(c, g, mpb_lock_release_async, lb);
    same_nil(&g, rc);
    mpb_lock_close(&la);
    mpb_lock_close(&lb);
    /* semaphore */
    mpb_semaphore_t *sa, *sb;
    assert_int_equal(mpb_semaphore_open(c, "asmA", 2, 1, &sa), 0);
    assert_int_equal(mpb_semaphore_open(c, "asmB", 2, 1, &sb), 0);
    rc = mpb_semaphore_acquire(sa, 0);
    RUN(c, g, mpb_semaphore_acquire_async, sb, 0);
    assert_int_equal(g.status, rc);
    assert_int_equal(mpb_semaphore_value(sa, &x), 0);
    RUN(c, g, mpb_semaphore_value_async, sb);
    same_int(&g, 0, x);
    rc = mpb_semaphore_release(sa, 2); /* bounded at 2: too many */
    assert_true(rc < 0);
    RUN(c, g, mpb_semaphore_release_async, sb, 2);
    same_nil(&g, rc);
    rc = mpb_semaphore_release(sa, 1);
    RUN(c, g, mpb_semaphore_release_async, sb, 1);
    same_nil(&g, rc);
    mpb_semaphore_close(&sa);
    mpb_semaphore_close(&sb);
    /* condition, with a lock of its own */
    mpb_condition_t *ca, *cb;
    assert_int_equal(mpb_condition_open(c, "acA", NULL, &ca), 0);
    assert_int_equal(mpb_condition_open(c, "acB", NULL, &cb), 0);
    assert_int_equal(mpb_condition_acquire(ca, 1000, &f), 0);
    RUN(c, g, mpb_condition_acquire_async, cb, 1000);
    assert_int_equal(g.status, 0);
    rc = mpb_condition_notify(ca, 1);
    assert_int_equal(rc, 0);
    RUN(c, g, mpb_condition_notify_async, cb, 1);
    same_int(&g, 0, rc);
    rc = mpb_condition_notify_all(ca);
    RUN(c, g, mpb_condition_notify_all_async, cb);
    same_int(&g, 0, rc);
    rc = mpb_condition_wait(ca, 20); /* nobody notifies: false, the lock held again */
    assert_int_equal(rc, 0);
    RUN(c, g, mpb_condition_wait_async, cb, 20);
    same_bool(&g, rc);
    rc = mpb_condition_release(ca);
    RUN(c, g, mpb_condition_release_async, cb);
    same_nil(&g, rc);
    mpb_condition_close(&ca);
    mpb_condition_close(&cb);
    /* barrier of one party: each wait passes at once */
    mpb_barrier_t *ba, *bb;
    assert_int_equal(mpb_barrier_open(c, "abA", 1, -1, &ba), 0);
    assert_int_equal(mpb_barrier_open(c, "abB", 1, -1, &bb), 0);
    assert_int_equal(mpb_barrier_wait(ba, 1000, &x), 0);
    RUN(c, g, mpb_barrier_wait_async, bb, 1000);
    same_int(&g, 0, x);
    rc = mpb_barrier_abort(ba);
    RUN(c, g, mpb_barrier_abort_async, bb);
    same_nil(&g, rc);
    int64_t parties, waiting;
    int broken;
    assert_int_equal(mpb_barrier_state(ba, &parties, &waiting, &broken), 0);
    assert_int_equal(broken, 1);
    RUN(c, g, mpb_barrier_state_async, bb);
    uint8_t st[] = {0x93, (uint8_t)parties, (uint8_t)waiting, 0xc3}; /* [1, 0, true] */
    same_val(&g, 0, st, sizeof st);
    rc = mpb_barrier_wait(ba, 1000, &x);
    assert_int_equal(rc, MPB_EBROKEN);
    RUN(c, g, mpb_barrier_wait_async, bb, 1000);
    same_int(&g, rc, 0);
    rc = mpb_barrier_reset(ba);
    RUN(c, g, mpb_barrier_reset_async, bb);
    same_nil(&g, rc);
    mpb_barrier_close(&ba);
    mpb_barrier_close(&bb);
    /* value */
    mpb_value_t *va, *vb;
    uint8_t zero[] = {0x00};
    assert_int_equal(mpb_value_open(c, "avA", zero, 1, &va), 0);
    assert_int_equal(mpb_value_open(c, "avB", zero, 1, &vb), 0);
    assert_int_equal(mpb_value_add_i64(va, 40, &x), 0);
    RUN(c, g, mpb_value_add_i64_async, vb, 40);
    same_int(&g, 0, x);
    void *v;
    size_t n;
    assert_int_equal(mpb_value_get(va, &v, &n), 0);
    RUN(c, g, mpb_value_get_async, vb);
    same_val(&g, 0, v, n);
    mpb_free(v);
    uint8_t half[9];
    size_t hl = mpb_pack_double(half, 0.5);
    rc = mpb_value_set(va, half, hl);
    RUN(c, g, mpb_value_set_async, vb, half, hl);
    same_nil(&g, rc);
    double d, d2;
    assert_int_equal(mpb_value_add_double(va, 1.25, &d), 0);
    RUN(c, g, mpb_value_add_double_async, vb, 1.25);
    assert_int_equal(g.status, 0);
    assert_int_equal(mpb_unpack_double(g.v, g.n, &d2), 0);
    assert_true(d == 1.75 && d2 == d);
    mpb_value_close(&va);
    mpb_value_close(&vb);
    /* namespace */
    mpb_namespace_t *na, *nb;
    assert_int_equal(mpb_namespace_open(c, "anA", &na), 0);
    assert_int_equal(mpb_namespace_open(c, "anB", &nb), 0);
    rc = mpb_namespace_set(na, "x", V1, 4);
    RUN(c, g, mpb_namespace_set_async, nb, "x", V1, 4);
    same_nil(&g, rc);
    rc = mpb_namespace_set(na, "y", V2, 3);
    RUN(c, g, mpb_namespace_set_async, nb, "y", V2, 3);
    same_nil(&g, rc);
    assert_int_equal(mpb_namespace_get(na, "y", &v, &n), 0);
    RUN(c, g, mpb_namespace_get_async, nb, "y");
    same_val(&g, 0, v, n);
    mpb_free(v);
    rc = mpb_namespace_del(na, "x");
    RUN(c, g, mpb_namespace_del_async, nb, "x");
    same_nil(&g, rc);
    rc = mpb_namespace_get(na, "x", &v, &n);
    assert_true(rc < 0);
    RUN(c, g, mpb_namespace_get_async, nb, "x");
    same_val(&g, rc, NULL, 0);
    assert_int_equal(mpb_namespace_list(na, &v, &n), 0);
    RUN(c, g, mpb_namespace_list_async, nb);
    same_val(&g, 0, v, n);
    mpb_free(v);
    mpb_namespace_close(&na);
    mpb_namespace_close(&nb);
    free(g.v);
    mpb_close(&c);
}

static void test_broker_still_serves(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    th_assert_dict_roundtrip(c, "async-ops", 42);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

int main(void) {
    th_suite(&B, NULL, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocking_ops_complete_when_another_process_acts),
        cmocka_unit_test(test_dict),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_tracked_queue),
        cmocka_unit_test(test_sync_kinds_value_namespace),
        cmocka_unit_test(test_broker_still_serves),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
