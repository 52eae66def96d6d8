/* test_list.c - every list op against a real mpbrokerd, with exact results: append/extend,
 * insert clamping, negative indexes, Python slices, pop, remove/index/count by canonical
 * equality, reverse, a stable sort that refuses incomparable items and leaves the list as it
 * was, clear, a randomised run against a model, and 100,000 items used as a ring. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th.h"
#include "th_mv.h"
#include "mpbproto.h"

static th_broker_t B;
static mpb_client_t *C;

/* ---- helpers ---- */

static mv_t F(double d) {
    static uint8_t bufs[8][9];
    static int k;
    uint8_t *b = bufs[k++ & 7];
    return (mv_t){b, mpb_pack_double(b, d)};
}

static mpb_list_t *lopen(const char *name) {
    mpb_list_t *l = NULL;
    int rc = mpb_list_open(C, name, &l);
    if (rc) fail_msg("open list %s: %s", name, mpb_errmsg(C));
    return l;
}

static void app(mpb_list_t *l, mv_t v) {
    th_assert_ok(mpb_list_append(l, v.p, v.n), C);
}

static uint64_t llen(mpb_list_t *l) {
    uint64_t n = 12345;
    th_assert_ok(mpb_list_len(l, &n), C);
    return n;
}

static void expect_get(mpb_list_t *l, int64_t i, mv_t want) {
    void *v = NULL;
    size_t vn = 0;
    th_assert_ok(mpb_list_get(l, i, &v, &vn), C);
    th_assert_bytes(v, vn, want.p, want.n);
    mpb_free(v);
}

static void expect_pop(mpb_list_t *l, int64_t i, mv_t want) {
    void *v = NULL;
    size_t vn = 0;
    th_assert_ok(mpb_list_pop(l, i, &v, &vn), C);
    th_assert_bytes(v, vn, want.p, want.n);
    mpb_free(v);
}

/* The list's items [start, stop) at most max, as the slice reply's bytes (a msgpack array). */
static void expect_slice(mpb_list_t *l, int64_t start, int64_t stop, size_t max, const void *want,
                         size_t wn, size_t wantn) {
    void *v = NULL;
    size_t vn = 0, n = 99999;
    th_assert_ok(mpb_list_slice(l, start, stop, max, &v, &vn, &n), C);
    if (n != wantn)
        fail_msg("slice(%" PRId64 ", %" PRId64 ", %zu): %zu items, want %zu", start, stop, max, n,
                 wantn);
    th_assert_bytes(v, vn, want, wn);
    mpb_free(v);
}

/* The whole list is exactly these ints (canonical encodings). */
static void expect_ints(mpb_list_t *l, size_t n, const int64_t *vals) {
    mpb__buf_t b = {0};
    mpb__w_array(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        mpb__w_int(&b, vals[i]);
    expect_slice(l, 0, INT64_MAX, 0, b.p, b.len, n);
    assert_int_equal(llen(l), n);
    mpb__buf_free(&b);
}
#define EXPECT_INTS(l, ...)                                                                        \
    expect_ints(l, sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t),                       \
                (const int64_t[]){__VA_ARGS__})

/* The whole list is exactly these values, given as one msgpack array. */
static void expect_all(mpb_list_t *l, mv_t arr) {
    mpb__rd_t r = {arr.p, arr.p + arr.n};
    uint32_t n;
    assert_int_equal(mpb__rd_array(&r, &n), 0);
    expect_slice(l, 0, INT64_MAX, 0, arr.p, arr.n, n);
    assert_int_equal(llen(l), n);
}

/* Fills a fresh list with the ints. */
static void fill_ints(mpb_list_t *l, size_t n, const int64_t *vals) {
    th_assert_ok(mpb_list_clear(l), C);
    mpb__buf_t b = {0};
    mpb__w_array(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        mpb__w_int(&b, vals[i]);
    th_assert_ok(mpb_list_extend(l, b.p, b.len), C);
    mpb__buf_free(&b);
}
#define FILL_INTS(l, ...)                                                                          \
    fill_ints(l, sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t),                         \
              (const int64_t[]){__VA_ARGS__})

static void fill_raw(mpb_list_t *l, mv_t arr) {
    th_assert_ok(mpb_list_clear(l), C);
    th_assert_ok(mpb_list_extend(l, arr.p, arr.n), C);
}

/* ---- append / extend ---- */

static void test_append_extend(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_append");
    assert_int_equal(llen(l), 0);
    expect_ints(l, 0, NULL);
    app(l, I(1));
    app(l, I(2));
    mv_t three = RAW(0x93, 0x03, 0x04, 0x05);
    th_assert_ok(mpb_list_extend(l, three.p, three.n), C);
    th_assert_ok(mpb_list_extend(l, RAW(0x90).p, 1), C);
    EXPECT_INTS(l, 1, 2, 3, 4, 5);
    /* every kind of value comes back exactly as sent */
    th_assert_ok(mpb_list_clear(l), C);
    mv_t vals[] = {
        S("text"),
        RAW(0xc4, 0x02, 0x00, 0xff),
        RAW(0xc0),
        RAW(0xc2),
        F(-2.5),
        RAW(0xca, 0x3f, 0xc0, 0x00, 0x00),
        RAW(0xd3, 0, 0, 0, 0, 0, 0, 0, 0x01), /* not canonicalised */
        RAW(0x92, 0x81, 0xa1, 'k', 0x90, 0xa0),
        I(INT64_MIN),
        RAW(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
    };
    size_t nv = sizeof vals / sizeof *vals;
    mpb__buf_t all = {0};
    mpb__w_array(&all, (uint32_t)nv);
    for (size_t i = 0; i < nv; i++) {
        app(l, vals[i]);
        mpb__w_raw(&all, vals[i].p, vals[i].n);
    }
    for (size_t i = 0; i < nv; i++)
        expect_get(l, (int64_t)i, vals[i]);
    expect_all(l, (mv_t){all.p, all.len});
    /* extend with the same values, then the list is them twice */
    th_assert_ok(mpb_list_extend(l, all.p, all.len), C);
    assert_int_equal(llen(l), 2 * nv);
    for (size_t i = 0; i < nv; i++)
        expect_get(l, (int64_t)(nv + i), vals[i]);
    /* extend with a non-array: ETYPE, nothing added */
    th_assert_err(mpb_list_extend(l, I(5).p, I(5).n), MPB_ETYPE, C, "array", NULL);
    th_assert_err(mpb_list_extend(l, RAW(0x81, 0x01, 0x02).p, 3), MPB_ETYPE, C, NULL, NULL);
    assert_int_equal(llen(l), 2 * nv);
    /* not well-formed: refused by the library */
    th_assert_err(mpb_list_append(l, RAW(0x92, 0x01).p, 2), MPB_EINVAL, C, NULL, NULL);
    th_assert_err(mpb_list_extend(l, RAW(0x93, 0x01, 0x02).p, 3), MPB_EINVAL, C, NULL, NULL);
    assert_int_equal(llen(l), 2 * nv);
    mpb__buf_free(&all);
    mpb_list_close(&l);
}

static void test_extend_all_or_none(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_extend_big");
    FILL_INTS(l, 7, 8);
    /* [1, <a value over max_value 1048576>, 3]: refused whole */
    size_t sz = 1048576;
    char *s = malloc(sz);
    memset(s, 'b', sz);
    mpb__buf_t b = {0};
    mpb__w_array(&b, 3);
    mpb__w_int(&b, 1);
    mpb__w_str(&b, s, sz);
    mpb__w_int(&b, 3);
    th_assert_err(mpb_list_extend(l, b.p, b.len), MPB_ETOOBIG, C, "value of 1048581 bytes",
                  "max_value 1048576");
    EXPECT_INTS(l, 7, 8);
    th_assert_err(mpb_list_append(l, b.p + 2, b.len - 3), MPB_ETOOBIG, C, NULL, NULL);
    th_assert_err(mpb_list_insert(l, 0, b.p + 2, b.len - 3), MPB_ETOOBIG, C, NULL, NULL);
    th_assert_err(mpb_list_set(l, 0, b.p + 2, b.len - 3), MPB_ETOOBIG, C, NULL, NULL);
    EXPECT_INTS(l, 7, 8);
    /* exactly max_value is fine */
    void *v;
    size_t vn = mpb_pack_str(s, sz - 5, &v);
    assert_int_equal(vn, sz);
    th_assert_ok(mpb_list_append(l, v, vn), C);
    expect_get(l, -1, (mv_t){v, vn});
    assert_int_equal(llen(l), 3);
    mpb_free(v);
    free(s);
    mpb__buf_free(&b);
    mpb_list_close(&l);
}

/* ---- insert ---- */

static void test_insert(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_insert");
    /* into an empty list, at any index */
    th_assert_ok(mpb_list_insert(l, 5, I(1).p, I(1).n), C);
    EXPECT_INTS(l, 1);
    th_assert_ok(mpb_list_clear(l), C);
    th_assert_ok(mpb_list_insert(l, -5, I(1).p, I(1).n), C);
    EXPECT_INTS(l, 1);
    FILL_INTS(l, 1, 2, 3);
    th_assert_ok(mpb_list_insert(l, 0, I(0).p, I(0).n), C); /* front */
    EXPECT_INTS(l, 0, 1, 2, 3);
    th_assert_ok(mpb_list_insert(l, 2, I(9).p, I(9).n), C); /* middle */
    EXPECT_INTS(l, 0, 1, 9, 2, 3);
    th_assert_ok(mpb_list_insert(l, 5, I(7).p, I(7).n), C); /* at len: the end */
    EXPECT_INTS(l, 0, 1, 9, 2, 3, 7);
    th_assert_ok(mpb_list_insert(l, -1, I(8).p, I(8).n), C); /* before the last */
    EXPECT_INTS(l, 0, 1, 9, 2, 3, 8, 7);
    th_assert_ok(mpb_list_insert(l, -7, I(-1).p, I(-1).n), C); /* -len: the front */
    EXPECT_INTS(l, -1, 0, 1, 9, 2, 3, 8, 7);
    th_assert_ok(mpb_list_insert(l, -100, I(-5).p, I(-5).n), C); /* clamps to 0 */
    EXPECT_INTS(l, -5, -1, 0, 1, 9, 2, 3, 8, 7);
    th_assert_ok(mpb_list_insert(l, 100, I(100).p, I(100).n), C); /* clamps to len */
    EXPECT_INTS(l, -5, -1, 0, 1, 9, 2, 3, 8, 7, 100);
    th_assert_ok(mpb_list_insert(l, INT64_MAX, I(101).p, I(101).n), C);
    th_assert_ok(mpb_list_insert(l, INT64_MIN, I(-6).p, I(-6).n), C);
    EXPECT_INTS(l, -6, -5, -1, 0, 1, 9, 2, 3, 8, 7, 100, 101);
    th_assert_ok(mpb_list_insert(l, -3, I(50).p, I(50).n), C);
    EXPECT_INTS(l, -6, -5, -1, 0, 1, 9, 2, 3, 8, 50, 7, 100, 101);
    th_assert_ok(mpb_list_insert(l, 1, S("s").p, S("s").n), C);
    expect_get(l, 1, S("s"));
    assert_int_equal(llen(l), 14);
    /* index not an integer: ETYPE, sent raw */
    void *res;
    size_t rn;
    th_assert_err(
        mpb_call(C, MPB_OP_LIST_INSERT, "l_insert", RAW(0x92, 0xa1, 'x', 0x01).p, 4, 0, &res, &rn),
        MPB_ETYPE, C, "index", NULL);
    assert_int_equal(llen(l), 14);
    mpb_list_close(&l);
}

/* Inserts that make the ring grow, at every kind of position, with the ring's start at
 * different offsets (the broker's capacities are powers of two from 8). */
static void test_insert_at_capacity(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_insert_cap");
    static int64_t model[300];
    const size_t sizes[] = {8, 16, 32, 64, 128};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t cap = sizes[si];
        for (size_t shift = 0; shift < 3; shift++) {
            int64_t where[] = {1, (int64_t)cap / 2 - 1, (int64_t)cap / 2, (int64_t)cap - 1, -1, -2};
            for (size_t wi = 0; wi < sizeof where / sizeof *where; wi++) {
                /* exactly cap items, the ring started 'shift' slots in */
                th_assert_ok(mpb_list_clear(l), C);
                size_t n = 0;
                for (size_t i = 0; i < cap; i++)
                    app(l, I((int64_t)(n++)));
                for (size_t i = 0; i < shift * 3; i++) {
                    expect_pop(l, 0, I((int64_t)i));
                    app(l, I((int64_t)(cap + i)));
                }
                for (size_t i = 0; i < cap; i++)
                    model[i] = (int64_t)(i + shift * 3);
                int64_t at = where[wi] < 0 ? where[wi] + (int64_t)cap : where[wi];
                th_assert_ok(mpb_list_insert(l, where[wi], I(-1).p, I(-1).n), C);
                memmove(&model[at + 1], &model[at], (cap - (size_t)at) * sizeof *model);
                model[at] = -1;
                expect_ints(l, cap + 1, model);
                /* and one more in the other half of the grown ring */
                int64_t at2 = (int64_t)cap - at;
                th_assert_ok(mpb_list_insert(l, at2, I(-2).p, I(-2).n), C);
                memmove(&model[at2 + 1], &model[at2], (cap + 1 - (size_t)at2) * sizeof *model);
                model[at2] = -2;
                expect_ints(l, cap + 2, model);
            }
        }
    }
    mpb_list_close(&l);
}

/* ---- get / set ---- */

static void test_get_set(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_getset");
    void *v;
    size_t vn;
    th_assert_err(mpb_list_get(l, 0, &v, &vn), MPB_EINDEX, C, "out of range", NULL);
    th_assert_err(mpb_list_get(l, -1, &v, &vn), MPB_EINDEX, C, NULL, NULL);
    th_assert_err(mpb_list_set(l, 0, I(1).p, I(1).n), MPB_EINDEX, C, NULL, NULL);
    assert_int_equal(llen(l), 0);
    FILL_INTS(l, 10, 20, 30);
    expect_get(l, 0, I(10));
    expect_get(l, 2, I(30));
    expect_get(l, -1, I(30));
    expect_get(l, -3, I(10));
    th_assert_err(mpb_list_get(l, 3, &v, &vn), MPB_EINDEX, C, "index 3 out of range", "len 3");
    th_assert_err(mpb_list_get(l, -4, &v, &vn), MPB_EINDEX, C, "-4", NULL);
    th_assert_err(mpb_list_get(l, INT64_MAX, &v, &vn), MPB_EINDEX, C, NULL, NULL);
    th_assert_err(mpb_list_get(l, INT64_MIN, &v, &vn), MPB_EINDEX, C, NULL, NULL);
    th_assert_ok(mpb_list_set(l, -1, S("x").p, S("x").n), C);
    expect_get(l, 2, S("x"));
    th_assert_ok(mpb_list_set(l, 0, S("a much longer value than before").p,
                              S("a much longer value than before").n),
                 C);
    expect_get(l, 0, S("a much longer value than before"));
    expect_get(l, -3, S("a much longer value than before"));
    th_assert_ok(mpb_list_set(l, -2, RAW(0xc0).p, 1), C);
    expect_get(l, 1, RAW(0xc0));
    th_assert_ok(mpb_list_set(l, 0, I(1).p, I(1).n), C);
    th_assert_err(mpb_list_set(l, 3, I(1).p, I(1).n), MPB_EINDEX, C, "assignment", "len 3");
    th_assert_err(mpb_list_set(l, -4, I(1).p, I(1).n), MPB_EINDEX, C, NULL, NULL);
    th_assert_err(mpb_list_set(l, INT64_MIN, I(1).p, I(1).n), MPB_EINDEX, C, NULL, NULL);
    mv_t want = RAW(0x93, 0x01, 0xc0, 0xa1, 'x');
    expect_all(l, want);
    mpb_list_close(&l);
}

/* ---- slice ---- */

static void test_slice(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_slice");
    FILL_INTS(l, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    struct {
        int64_t start, stop;
        size_t max;
        int from, to; /* the expected items: from..to-1 */
    } cases[] = {
        {0,         INT64_MAX, 0,      0,  10},
        {2,         5,         0,      2,  5 },
        {-3,        INT64_MAX, 0,      7,  10},
        {-100,      3,         0,      0,  3 },
        {5,         2,         0,      5,  5 },
        {8,         100,       0,      8,  10},
        {100,       200,       0,      10, 10},
        {-2,        -1,        0,      8,  9 },
        {0,         -1,        0,      0,  9 },
        {-100,      -50,       0,      0,  0 },
        {INT64_MIN, INT64_MAX, 0,      0,  10},
        {INT64_MIN, INT64_MIN, 0,      0,  0 },
        {-1,        INT64_MAX, 0,      9,  10},
        {10,        INT64_MAX, 0,      10, 10},
        {-10,       10,        0,      0,  10},
        {-11,       -9,        0,      0,  1 },
        {3,         3,         0,      3,  3 },
        {0,         INT64_MAX, 3,      0,  3 },
        {4,         9,         2,      4,  6 },
        {-5,        INT64_MAX, 1,      5,  6 },
        {0,         INT64_MAX, 10,     0,  10},
        {0,         INT64_MAX, 11,     0,  10},
        {0,         INT64_MAX, 100000, 0,  10},
        {INT64_MAX, 0,         0,      10, 10},
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        mpb__buf_t b = {0};
        int n = cases[t].to - cases[t].from;
        mpb__w_array(&b, (uint32_t)n);
        for (int i = cases[t].from; i < cases[t].to; i++)
            mpb__w_int(&b, i);
        expect_slice(l, cases[t].start, cases[t].stop, cases[t].max, b.p, b.len, (size_t)n);
        mpb__buf_free(&b);
    }
    /* nil bounds, sent raw: [nil, nil] is all, [nil, 3] is the first three */
    void *res;
    size_t rn;
    const uint8_t all[] = {0x9a, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    th_assert_ok(
        mpb_call(C, MPB_OP_LIST_SLICE, "l_slice", RAW(0x93, 0xc0, 0xc0, 0x00).p, 4, 0, &res, &rn),
        C);
    const uint8_t *v = res;
    if (rn && v[0] == 0x91) v++, rn--; /* the value, whether or not it comes wrapped */
    th_assert_bytes(v, rn, all, sizeof all);
    mpb_free(res);
    th_assert_ok(
        mpb_call(C, MPB_OP_LIST_SLICE, "l_slice", RAW(0x93, 0xc0, 0x03, 0x00).p, 4, 0, &res, &rn),
        C);
    v = res;
    if (rn && v[0] == 0x91) v++, rn--;
    th_assert_bytes(v, rn, "\x93\x00\x01\x02", 4);
    mpb_free(res);
    th_assert_ok(
        mpb_call(C, MPB_OP_LIST_SLICE, "l_slice", RAW(0x93, 0xfe, 0xc0, 0x00).p, 4, 0, &res, &rn),
        C);
    v = res;
    if (rn && v[0] == 0x91) v++, rn--;
    th_assert_bytes(v, rn, "\x92\x08\x09", 3);
    mpb_free(res);
    th_assert_err(mpb_call(C, MPB_OP_LIST_SLICE, "l_slice", RAW(0x93, 0xa1, 'x', 0xc0, 0x00).p, 5,
                           0, &res, &rn),
                  MPB_ETYPE, C, "start", NULL);
    /* an empty list */
    mpb_list_t *e = lopen("l_slice_empty");
    expect_slice(e, 0, INT64_MAX, 0, "\x90", 1, 0);
    expect_slice(e, -1, 1, 0, "\x90", 1, 0);
    mpb_list_close(&e);
    /* the broker caps a page at max_scan (1000): page through 2500 items */
    mpb_list_t *big = lopen("l_slice_big");
    mpb__buf_t b = {0};
    mpb__w_array(&b, 2500);
    for (int i = 0; i < 2500; i++)
        mpb__w_int(&b, i * 7);
    th_assert_ok(mpb_list_extend(big, b.p, b.len), C);
    mpb__buf_free(&b);
    size_t n;
    void *items;
    size_t il;
    th_assert_ok(mpb_list_slice(big, 0, INT64_MAX, 0, &items, &il, &n), C);
    assert_int_equal(n, 1000);
    mpb_free(items);
    th_assert_ok(mpb_list_slice(big, 0, INT64_MAX, 5000, &items, &il, &n), C);
    assert_int_equal(n, 1000);
    mpb_free(items);
    int64_t next = 0;
    for (int64_t start = 0;; start += (int64_t)n) {
        th_assert_ok(mpb_list_slice(big, start, INT64_MAX, 0, &items, &il, &n), C);
        th_assert_int_seq(items, il, (uint32_t)n, next * 7, 7);
        next += (int64_t)n;
        mpb_free(items);
        if (n == 0) break;
    }
    assert_int_equal(next, 2500);
    mpb_list_close(&big);
    th_assert_ok(mpb_obj_delete(C, "list/l_slice_big"), C);
    mpb_list_close(&l);
}

/* ---- pop ---- */

static void test_pop(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_pop");
    void *v;
    size_t vn;
    th_assert_err(mpb_list_pop(l, -1, &v, &vn), MPB_EINDEX, C, "pop from empty list", NULL);
    th_assert_err(mpb_list_pop(l, 0, &v, &vn), MPB_EINDEX, C, "empty", NULL);
    FILL_INTS(l, 1, 2, 3, 4, 5);
    expect_pop(l, -1, I(5)); /* pop() */
    EXPECT_INTS(l, 1, 2, 3, 4);
    expect_pop(l, 0, I(1)); /* pop(0) */
    EXPECT_INTS(l, 2, 3, 4);
    expect_pop(l, -2, I(3)); /* pop(-2) */
    EXPECT_INTS(l, 2, 4);
    th_assert_err(mpb_list_pop(l, 2, &v, &vn), MPB_EINDEX, C, "pop index 2 out of range", "len 2");
    th_assert_err(mpb_list_pop(l, -3, &v, &vn), MPB_EINDEX, C, "-3", NULL);
    th_assert_err(mpb_list_pop(l, INT64_MIN, &v, &vn), MPB_EINDEX, C, NULL, NULL);
    EXPECT_INTS(l, 2, 4);
    expect_pop(l, 1, I(4));
    expect_pop(l, -1, I(2));
    assert_int_equal(llen(l), 0);
    th_assert_err(mpb_list_pop(l, -1, &v, &vn), MPB_EINDEX, C, "empty", NULL);
    /* pops from the middle, both halves */
    FILL_INTS(l, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
    expect_pop(l, 2, I(2));
    expect_pop(l, 8, I(9));
    expect_pop(l, -5, I(6));
    EXPECT_INTS(l, 0, 1, 3, 4, 5, 7, 8, 10, 11);
    mpb_list_close(&l);
}

/* ---- remove / index / count ---- */

static void test_remove(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_remove");
    th_assert_err(mpb_list_remove(l, I(1).p, I(1).n), MPB_EVALUE, C, "not in list", NULL);
    /* [1, 2, "a", 2, 1] */
    fill_raw(l, RAW(0x95, 0x01, 0x02, 0xa1, 'a', 0x02, 0x01));
    th_assert_ok(mpb_list_remove(l, I(2).p, I(2).n), C); /* the first 2 only */
    expect_all(l, RAW(0x94, 0x01, 0xa1, 'a', 0x02, 0x01));
    th_assert_ok(mpb_list_remove(l, S("a").p, S("a").n), C);
    expect_all(l, RAW(0x93, 0x01, 0x02, 0x01));
    th_assert_err(mpb_list_remove(l, I(3).p, I(3).n), MPB_EVALUE, C,
                  "list.remove(x): x not in list", NULL);
    th_assert_err(mpb_list_remove(l, S("1").p, S("1").n), MPB_EVALUE, C, NULL, NULL);
    expect_all(l, RAW(0x93, 0x01, 0x02, 0x01));
    /* by canonical encoding: 5 as cc 05 equals 05, in the argument and in the list */
    fill_raw(l, RAW(0x94, 0x05, 0xcd, 0x00, 0x07, 0xd9, 0x01, 'z', 0x92, 0xcc, 0x01, 0xa0));
    th_assert_ok(mpb_list_remove(l, RAW(0xcc, 0x05).p, 2), C);
    expect_all(l, RAW(0x93, 0xcd, 0x00, 0x07, 0xd9, 0x01, 'z', 0x92, 0xcc, 0x01, 0xa0));
    th_assert_ok(mpb_list_remove(l, RAW(0x07).p, 1), C);
    th_assert_ok(mpb_list_remove(l, S("z").p, S("z").n), C);
    th_assert_ok(mpb_list_remove(
                     l, RAW(0xdc, 0x00, 0x02, 0xd3, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xda, 0, 0).p, 15),
                 C);
    assert_int_equal(llen(l), 0);
    /* -1 in three forms; a float is not an int of the same value (encodings differ) */
    fill_raw(l, RAW(0x93, 0xd1, 0xff, 0xff, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x01));
    th_assert_ok(mpb_list_remove(l, RAW(0xff).p, 1), C);
    th_assert_ok(mpb_list_remove(l, RAW(0xca, 0x3f, 0x80, 0x00, 0x00).p, 5), C); /* float32 1.0 */
    expect_all(l, RAW(0x91, 0x01));
    mpb_list_close(&l);
}

static void expect_index(mpb_list_t *l, mv_t v, int64_t start, int64_t stop, int64_t want) {
    int64_t got = -99;
    th_assert_ok(mpb_list_index(l, v.p, v.n, start, stop, &got), C);
    if (got != want)
        fail_msg("index(start %" PRId64 ", stop %" PRId64 ") = %" PRId64 ", want %" PRId64, start,
                 stop, got, want);
}

static void test_index_count(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_index");
    int64_t i;
    th_assert_err(mpb_list_index(l, I(5).p, I(5).n, 0, INT64_MAX, &i), MPB_EVALUE, C, NULL, NULL);
    FILL_INTS(l, 5, 6, 7, 5, 6);
    expect_index(l, I(5), 0, INT64_MAX, 0);
    expect_index(l, I(5), 1, INT64_MAX, 3);
    expect_index(l, I(6), -2, INT64_MAX, 4);
    expect_index(l, I(6), -100, INT64_MAX, 1);
    expect_index(l, I(5), -100, 1, 0);
    expect_index(l, I(7), 0, 3, 2);
    expect_index(l, I(7), INT64_MIN, -2, 2);
    expect_index(l, RAW(0xcc, 0x06), 0, INT64_MAX, 1);
    expect_index(l, RAW(0xd3, 0, 0, 0, 0, 0, 0, 0, 0x07), 0, INT64_MAX, 2);
    th_assert_err(mpb_list_index(l, I(7).p, I(7).n, 0, 2, &i), MPB_EVALUE, C, "not in list", NULL);
    th_assert_err(mpb_list_index(l, I(9).p, I(9).n, 0, INT64_MAX, &i), MPB_EVALUE, C, NULL, NULL);
    th_assert_err(mpb_list_index(l, I(5).p, I(5).n, 4, 100, &i), MPB_EVALUE, C, NULL, NULL);
    th_assert_err(mpb_list_index(l, I(5).p, I(5).n, 3, 3, &i), MPB_EVALUE, C, NULL, NULL);
    th_assert_err(mpb_list_index(l, I(5).p, I(5).n, 4, 1, &i), MPB_EVALUE, C, NULL, NULL);
    th_assert_err(mpb_list_index(l, I(5).p, I(5).n, 100, INT64_MAX, &i), MPB_EVALUE, C, NULL, NULL);
    th_assert_err(mpb_list_index(l, I(7).p, I(7).n, -2, INT64_MAX, &i), MPB_EVALUE, C, NULL, NULL);
    expect_index(l, I(6), -1, INT64_MAX, 4);
    expect_index(l, I(5), -2, -1, 3);
    /* nil bounds, raw */
    void *res;
    size_t rn;
    th_assert_ok(
        mpb_call(C, MPB_OP_LIST_INDEX, "l_index", RAW(0x93, 0x06, 0xc0, 0xc0).p, 4, 0, &res, &rn),
        C);
    const uint8_t *v = res;
    if (rn && v[0] == 0x91) v++, rn--;
    th_assert_bytes(v, rn, "\x01", 1);
    mpb_free(res);
    th_assert_ok(
        mpb_call(C, MPB_OP_LIST_INDEX, "l_index", RAW(0x93, 0x06, 0x02, 0xc0).p, 4, 0, &res, &rn),
        C);
    v = res;
    if (rn && v[0] == 0x91) v++, rn--;
    th_assert_bytes(v, rn, "\x04", 1);
    mpb_free(res);
    /* count: by canonical encoding, nested too */
    fill_raw(l, RAW(0x96, 0x01, 0xa1, 'a', 0x01, 0xcd, 0x00, 0x01, 0x91, 0x01, 0xc3));
    uint64_t n = 99;
    th_assert_ok(mpb_list_count(l, I(1).p, I(1).n, &n), C);
    assert_int_equal(n, 3);
    th_assert_ok(mpb_list_count(l, RAW(0xd3, 0, 0, 0, 0, 0, 0, 0, 0x01).p, 9, &n), C);
    assert_int_equal(n, 3);
    th_assert_ok(mpb_list_count(l, S("a").p, S("a").n, &n), C);
    assert_int_equal(n, 1);
    th_assert_ok(mpb_list_count(l, I(2).p, I(2).n, &n), C);
    assert_int_equal(n, 0);
    th_assert_ok(mpb_list_count(l, RAW(0x91, 0xcc, 0x01).p, 3, &n), C);
    assert_int_equal(n, 1);
    th_assert_ok(mpb_list_count(l, RAW(0xc3).p, 1, &n), C); /* true is not 1 by encoding */
    assert_int_equal(n, 1);
    expect_index(l, RAW(0x91, 0x01), 0, INT64_MAX, 4);
    expect_index(l, RAW(0xd0, 0x01), 1, INT64_MAX, 2);
    mpb_list_close(&l);
}

/* ---- reverse / clear ---- */

static void test_reverse_clear(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_reverse");
    th_assert_ok(mpb_list_reverse(l), C);
    expect_ints(l, 0, NULL);
    app(l, I(1));
    th_assert_ok(mpb_list_reverse(l), C);
    EXPECT_INTS(l, 1);
    app(l, I(2));
    th_assert_ok(mpb_list_reverse(l), C);
    EXPECT_INTS(l, 2, 1);
    FILL_INTS(l, 1, 2, 3, 4, 5);
    th_assert_ok(mpb_list_reverse(l), C);
    EXPECT_INTS(l, 5, 4, 3, 2, 1);
    FILL_INTS(l, 1, 2, 3, 4, 5, 6);
    th_assert_ok(mpb_list_reverse(l), C);
    EXPECT_INTS(l, 6, 5, 4, 3, 2, 1);
    th_assert_ok(mpb_list_reverse(l), C);
    EXPECT_INTS(l, 1, 2, 3, 4, 5, 6);
    /* a list whose ring has wrapped */
    for (int i = 0; i < 5; i++)
        expect_pop(l, 0, I(i + 1));
    for (int i = 7; i < 13; i++)
        app(l, I(i));
    th_assert_ok(mpb_list_insert(l, 0, I(0).p, I(0).n), C);
    th_assert_ok(mpb_list_reverse(l), C);
    EXPECT_INTS(l, 12, 11, 10, 9, 8, 7, 6, 0);
    /* clear */
    th_assert_ok(mpb_list_clear(l), C);
    assert_int_equal(llen(l), 0);
    void *v;
    size_t vn;
    th_assert_err(mpb_list_get(l, 0, &v, &vn), MPB_EINDEX, C, NULL, NULL);
    th_assert_ok(mpb_list_clear(l), C);
    uint64_t size = 99;
    assert_int_equal(th_objects_find(C, "list", "l_reverse", &size), 1);
    assert_int_equal(size, 0);
    app(l, I(3));
    EXPECT_INTS(l, 3);
    mpb_list_close(&l);
}

/* ---- sort ---- */

static void test_sort_ints_floats(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_sort");
    th_assert_ok(mpb_list_sort(l, 0), C); /* empty */
    FILL_INTS(l, 3, -1, 2, 100000, -70000, 0, 2);
    th_assert_ok(mpb_list_sort(l, 0), C);
    EXPECT_INTS(l, -70000, -1, 0, 2, 2, 3, 100000);
    th_assert_ok(mpb_list_sort(l, 1), C);
    EXPECT_INTS(l, 100000, 3, 2, 2, 0, -1, -70000);
    FILL_INTS(l, INT64_MAX, INT64_MIN, 0, -1, 1);
    th_assert_ok(mpb_list_sort(l, 0), C);
    EXPECT_INTS(l, INT64_MIN, -1, 0, 1, INT64_MAX);
    /* a uint64 above INT64_MAX sorts last */
    fill_raw(l, RAW(0x93, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd3, 0x7f, 0xff,
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
    th_assert_ok(mpb_list_sort(l, 0), C);
    expect_all(l, RAW(0x93, 0xff, 0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xcf, 0xff,
                      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
    /* mixed int and float: [3, 1.5, -2, 2.5, 0, -0.5] */
    mpb__buf_t b = {0}, w = {0};
    mpb__w_array(&b, 6);
    mpb__w_int(&b, 3);
    mpb__w_double(&b, 1.5);
    mpb__w_int(&b, -2);
    mpb__w_double(&b, 2.5);
    mpb__w_int(&b, 0);
    mpb__w_double(&b, -0.5);
    fill_raw(l, (mv_t){b.p, b.len});
    th_assert_ok(mpb_list_sort(l, 0), C);
    mpb__w_array(&w, 6);
    mpb__w_int(&w, -2);
    mpb__w_double(&w, -0.5);
    mpb__w_int(&w, 0);
    mpb__w_double(&w, 1.5);
    mpb__w_double(&w, 2.5);
    mpb__w_int(&w, 3);
    expect_all(l, (mv_t){w.p, w.len});
    /* ints against floats exactly, past 2^53: 2.0**53 < 2**53 + 1, INT64_MAX < 2.0**63 */
    mpb__buf_reset(&b);
    mpb__w_array(&b, 6);
    mpb__w_int(&b, (INT64_C(1) << 53) + 1);
    mpb__w_double(&b, 9007199254740992.0);
    mpb__w_double(&b, 9223372036854775808.0);
    mpb__w_int(&b, INT64_MAX);
    mpb__w_double(&b, -9223372036854775808.0);
    mpb__w_int(&b, INT64_MIN + 1);
    fill_raw(l, (mv_t){b.p, b.len});
    th_assert_ok(mpb_list_sort(l, 0), C);
    mpb__buf_reset(&w);
    mpb__w_array(&w, 6);
    mpb__w_double(&w, -9223372036854775808.0);
    mpb__w_int(&w, INT64_MIN + 1);
    mpb__w_double(&w, 9007199254740992.0);
    mpb__w_int(&w, (INT64_C(1) << 53) + 1);
    mpb__w_int(&w, INT64_MAX);
    mpb__w_double(&w, 9223372036854775808.0);
    expect_all(l, (mv_t){w.p, w.len});
    /* bools are numbers: false == 0, true == 1 */
    fill_raw(l, RAW(0x94, 0x02, 0xc3, 0xc2, 0xff));
    th_assert_ok(mpb_list_sort(l, 0), C);
    expect_all(l, RAW(0x94, 0xff, 0xc2, 0xc3, 0x02));
    mpb__buf_free(&b);
    mpb__buf_free(&w);
    mpb_list_close(&l);
}

static void test_sort_str_bytes_arrays(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_sort2");
    /* strings by code point: "", "Cherry", "apple", "banana", "äpfel", "€" */
    mpb__buf_t b = {0}, w = {0};
    const char *in[] = {"banana", "apple", "Cherry", "\xc3\xa4pfel", "", "\xe2\x82\xac", "app"};
    const char *out[] = {"", "Cherry", "app", "apple", "banana", "\xc3\xa4pfel", "\xe2\x82\xac"};
    mpb__w_array(&b, 7);
    mpb__w_array(&w, 7);
    for (int i = 0; i < 7; i++) {
        mpb__w_cstr(&b, in[i]);
        mpb__w_cstr(&w, out[i]);
    }
    fill_raw(l, (mv_t){b.p, b.len});
    th_assert_ok(mpb_list_sort(l, 0), C);
    expect_all(l, (mv_t){w.p, w.len});
    /* bytes: b"\x02", b"\x01\x00", b"\x01", b"", b"\xff" */
    fill_raw(l, RAW(0x95, 0xc4, 0x01, 0x02, 0xc4, 0x02, 0x01, 0x00, 0xc4, 0x01, 0x01, 0xc4, 0x00,
                    0xc4, 0x01, 0xff));
    th_assert_ok(mpb_list_sort(l, 0), C);
    expect_all(l, RAW(0x95, 0xc4, 0x00, 0xc4, 0x01, 0x01, 0xc4, 0x02, 0x01, 0x00, 0xc4, 0x01, 0x02,
                      0xc4, 0x01, 0xff));
    th_assert_ok(mpb_list_sort(l, 1), C);
    expect_all(l, RAW(0x95, 0xc4, 0x01, 0xff, 0xc4, 0x01, 0x02, 0xc4, 0x02, 0x01, 0x00, 0xc4, 0x01,
                      0x01, 0xc4, 0x00));
    /* arrays element-wise: [2,"a"], [1,"b"], [1,"a"], [1], [], [1,"a",0] */
    fill_raw(l, RAW(0x96, 0x92, 0x02, 0xa1, 'a', 0x92, 0x01, 0xa1, 'b', 0x92, 0x01, 0xa1, 'a', 0x91,
                    0x01, 0x90, 0x93, 0x01, 0xa1, 'a', 0x00));
    th_assert_ok(mpb_list_sort(l, 0), C);
    expect_all(l, RAW(0x96, 0x90, 0x91, 0x01, 0x92, 0x01, 0xa1, 'a', 0x93, 0x01, 0xa1, 'a', 0x00,
                      0x92, 0x01, 0xa1, 'b', 0x92, 0x02, 0xa1, 'a'));
    /* arrays whose later elements would not compare, decided by the first: [1,"a"], [0, 2] */
    fill_raw(l, RAW(0x92, 0x92, 0x01, 0xa1, 'a', 0x92, 0x00, 0x02));
    th_assert_ok(mpb_list_sort(l, 0), C);
    expect_all(l, RAW(0x92, 0x92, 0x00, 0x02, 0x92, 0x01, 0xa1, 'a'));
    /* equal elements of any kind are skipped: [nil, 2], [nil, 1] */
    fill_raw(l, RAW(0x92, 0x92, 0xc0, 0x02, 0x92, 0xc0, 0x01));
    th_assert_ok(mpb_list_sort(l, 0), C);
    expect_all(l, RAW(0x92, 0x92, 0xc0, 0x01, 0x92, 0xc0, 0x02));
    /* one item of any kind, even a map: nothing to compare */
    fill_raw(l, RAW(0x91, 0x81, 0x01, 0x02));
    th_assert_ok(mpb_list_sort(l, 0), C);
    expect_all(l, RAW(0x91, 0x81, 0x01, 0x02));
    mpb__buf_free(&b);
    mpb__buf_free(&w);
    mpb_list_close(&l);
}

/* Encodings of the small non-negative integer v that all compare equal to it (and to each
 * other) but differ in bytes, so each item can be told apart after the sort. */
#define NFORMS 11
static void enc_form(mpb__buf_t *b, int v, int form) {
    uint8_t t[9];
    switch (form) {
    case 0: mpb__w_int(b, v); break; /* fixint */
    case 1: t[0] = 0xcc, t[1] = (uint8_t)v, mpb__w_raw(b, t, 2); break;
    case 2: t[0] = 0xcd, t[1] = 0, t[2] = (uint8_t)v, mpb__w_raw(b, t, 3); break;
    case 3: memset(t, 0, 5), t[0] = 0xce, t[4] = (uint8_t)v, mpb__w_raw(b, t, 5); break;
    case 4: memset(t, 0, 9), t[0] = 0xcf, t[8] = (uint8_t)v, mpb__w_raw(b, t, 9); break;
    case 5: t[0] = 0xd0, t[1] = (uint8_t)v, mpb__w_raw(b, t, 2); break;
    case 6: t[0] = 0xd1, t[1] = 0, t[2] = (uint8_t)v, mpb__w_raw(b, t, 3); break;
    case 7: memset(t, 0, 5), t[0] = 0xd2, t[4] = (uint8_t)v, mpb__w_raw(b, t, 5); break;
    case 8: memset(t, 0, 9), t[0] = 0xd3, t[8] = (uint8_t)v, mpb__w_raw(b, t, 9); break;
    case 9: mpb__w_double(b, v); break;
    default: {
        float f = (float)v;
        uint32_t u;
        memcpy(&u, &f, 4);
        t[0] = 0xca, t[1] = (uint8_t)(u >> 24), t[2] = (uint8_t)(u >> 16);
        t[3] = (uint8_t)(u >> 8), t[4] = (uint8_t)u;
        mpb__w_raw(b, t, 5);
    }
    }
}

/* The sort is stable, also with reverse=1: equal items keep their order. */
static void test_sort_stable(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_sort_stable");
    /* small: [1.0, 1, 0, cc 01] -> [0, 1.0, 1, cc 01]; reverse -> [1.0, 1, cc 01, 0] */
    mv_t small = RAW(0x94, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0xcc, 0x01);
    fill_raw(l, small);
    th_assert_ok(mpb_list_sort(l, 0), C);
    expect_all(l, RAW(0x94, 0x00, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x01, 0xcc, 0x01));
    fill_raw(l, small);
    th_assert_ok(mpb_list_sort(l, 1), C);
    expect_all(l, RAW(0x94, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x01, 0xcc, 0x01, 0x00));
    /* big: values 0..19, each in 11 encodings, shuffled; merge sort paths and all */
    enum { NV = 20, N = NV * NFORMS };
    int val[N], form[N], order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    unsigned seed = 12345;
    for (int i = N - 1; i > 0; i--) {
        seed = seed * 1103515245u + 12345u;
        int j = (int)((seed >> 8) % (unsigned)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < N; i++) {
        val[i] = order[i] / NFORMS;
        form[i] = order[i] % NFORMS;
    }
    for (int rev = 0; rev <= 1; rev++) {
        mpb__buf_t in = {0}, want = {0};
        mpb__w_array(&in, N);
        for (int i = 0; i < N; i++)
            enc_form(&in, val[i], form[i]);
        fill_raw(l, (mv_t){in.p, in.len});
        th_assert_ok(mpb_list_sort(l, rev), C);
        /* expected: by value (descending if rev), equal values in their input order */
        mpb__w_array(&want, N);
        for (int k = 0; k < NV; k++) {
            int v = rev ? NV - 1 - k : k;
            for (int i = 0; i < N; i++)
                if (val[i] == v) enc_form(&want, v, form[i]);
        }
        expect_all(l, (mv_t){want.p, want.len});
        mpb__buf_free(&in);
        mpb__buf_free(&want);
    }
    /* sorting a sorted list changes nothing; sorted then reversed-sorted keeps equal order */
    mpb_list_close(&l);
}

static void test_sort_incomparable(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_sort_bad");
    /* str and int */
    fill_raw(l, RAW(0x93, 0x02, 0xa1, 'a', 0x01));
    th_assert_err(mpb_list_sort(l, 0), MPB_ETYPE, C, "'<' not supported between instances of",
                  NULL);
    if (!strstr(mpb_errmsg(C), "'str'") || !strstr(mpb_errmsg(C), "'int'"))
        fail_msg("message '%s' does not name str and int", mpb_errmsg(C));
    expect_all(l, RAW(0x93, 0x02, 0xa1, 'a', 0x01));
    th_assert_err(mpb_list_sort(l, 1), MPB_ETYPE, C, NULL, NULL);
    expect_all(l, RAW(0x93, 0x02, 0xa1, 'a', 0x01));
    /* a long list with the odd one last: found deep in a merge, the list stays as it was */
    mpb__buf_t b = {0};
    mpb__w_array(&b, 101);
    for (int i = 0; i < 100; i++)
        mpb__w_int(&b, (i * 37) % 100);
    mpb__w_cstr(&b, "odd");
    fill_raw(l, (mv_t){b.p, b.len});
    th_assert_err(mpb_list_sort(l, 0), MPB_ETYPE, C, "str", NULL);
    expect_all(l, (mv_t){b.p, b.len});
    /* and first */
    mpb__buf_reset(&b);
    mpb__w_array(&b, 101);
    mpb__w_cstr(&b, "odd");
    for (int i = 0; i < 100; i++)
        mpb__w_int(&b, (i * 37) % 100);
    fill_raw(l, (mv_t){b.p, b.len});
    th_assert_err(mpb_list_sort(l, 1), MPB_ETYPE, C, NULL, NULL);
    expect_all(l, (mv_t){b.p, b.len});
    /* nil, maps, bytes against str, arrays with incomparable elements */
    mv_t bad[] = {
        RAW(0x92, 0xc0, 0xc0),
        RAW(0x92, 0x01, 0xc0),
        RAW(0x92, 0x80, 0x80),
        RAW(0x92, 0xc4, 0x01, 'a', 0xa1, 'a'),
        RAW(0x92, 0x92, 0x01, 0xa1, 'a', 0x92, 0x01, 0x02),
        RAW(0x92, 0x91, 0x01, 0x01),
    };
    const char *names[] = {"nil", "nil", "dict", "bytes", "str", "list"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fill_raw(l, bad[i]);
        th_assert_err(mpb_list_sort(l, 0), MPB_ETYPE, C, names[i], NULL);
        expect_all(l, bad[i]);
    }
    mpb__buf_free(&b);
    mpb_list_close(&l);
}

/* ---- a random run against a model ---- */

static void test_random_ops_match_model(void **state) {
    (void)state;
    enum { CAP = 4096, OPS = 4000 };
    static int64_t model[CAP];
    size_t n = 0;
    mpb_list_t *l = lopen("l_random");
    unsigned seed = 777;
#define RND(m) (seed = seed * 1103515245u + 12345u, (int64_t)((seed >> 8) % (unsigned)(m)))
    int64_t next = 1;
    for (int op = 0; op < OPS; op++) {
        int64_t k = RND(100);
        if (k < 30 && n < CAP) { /* insert anywhere, also past either end */
            int64_t idx = RND(2 * n + 21) - (int64_t)n - 10;
            int64_t at = idx < 0 ? (idx + (int64_t)n < 0 ? 0 : idx + (int64_t)n) : idx;
            if (at > (int64_t)n) at = (int64_t)n;
            memmove(&model[at + 1], &model[at], (n - (size_t)at) * sizeof *model);
            model[at] = next;
            n++;
            th_assert_ok(mpb_list_insert(l, idx, I(next).p, I(next).n), C);
            next++;
        } else if (k < 45 && n < CAP) {
            model[n++] = next;
            app(l, I(next));
            next++;
        } else if (k < 75) { /* pop anywhere, sometimes out of range */
            int64_t idx = RND(2 * n + 5) - (int64_t)n - 2;
            int64_t at = idx < 0 ? idx + (int64_t)n : idx;
            void *v;
            size_t vn;
            int rc = mpb_list_pop(l, idx, &v, &vn);
            if (at < 0 || at >= (int64_t)n) {
                assert_int_equal(rc, MPB_EINDEX);
            } else {
                th_assert_ok(rc, C);
                th_assert_bytes(v, vn, I(model[at]).p, I(model[at]).n);
                mpb_free(v);
                memmove(&model[at], &model[at + 1], (n - (size_t)at - 1) * sizeof *model);
                n--;
            }
        } else if (k < 85 && n) { /* set */
            int64_t at = RND(n);
            int64_t idx = RND(2) ? at : at - (int64_t)n;
            model[at] = -next;
            th_assert_ok(mpb_list_set(l, idx, I(-next).p, I(-next).n), C);
            next++;
        } else if (k < 90 && n) { /* remove a value that is there */
            int64_t at = RND(n);
            int64_t x = model[at];
            th_assert_ok(mpb_list_remove(l, I(x).p, I(x).n), C);
            memmove(&model[at], &model[at + 1], (n - (size_t)at - 1) * sizeof *model);
            n--;
        } else if (k < 95 && n) { /* get */
            int64_t at = RND(n);
            expect_get(l, RND(2) ? at : at - (int64_t)n, I(model[at]));
        } else if (k == 95) {
            th_assert_ok(mpb_list_reverse(l), C);
            for (size_t i = 0; i < n / 2; i++) {
                int64_t t = model[i];
                model[i] = model[n - 1 - i];
                model[n - 1 - i] = t;
            }
        }
        if (op % 200 == 199) expect_ints(l, n, model);
    }
#undef RND
    expect_ints(l, n, model);
    mpb_list_close(&l);
}

/* ---- big: a ring of 100,000 items ---- */

static void test_100k_ring(void **state) {
    (void)state;
    enum { N = 100000, BATCH = 10000, POPS = 30000 };
    mpb_list_t *l = lopen("l_100k");
    mpb__buf_t b = {0};
    for (int i = 0; i < N; i += BATCH) {
        mpb__buf_reset(&b);
        mpb__w_array(&b, BATCH);
        for (int j = i; j < i + BATCH; j++)
            mpb__w_int(&b, j);
        th_assert_ok(mpb_list_extend(l, b.p, b.len), C);
    }
    mpb__buf_free(&b);
    assert_int_equal(llen(l), N);
    expect_get(l, 0, I(0));
    expect_get(l, -1, I(N - 1));
    expect_get(l, N / 2, I(N / 2));
    /* pop from the front while appending at the back: the ring wraps around */
    for (int i = 0; i < POPS; i++) {
        expect_pop(l, 0, I(i));
        app(l, I(N + i));
    }
    assert_int_equal(llen(l), N);
    expect_get(l, 0, I(POPS));
    expect_get(l, -1, I(N + POPS - 1));
    /* inserts and pops in the middle of a wrapped ring */
    th_assert_ok(mpb_list_insert(l, 10, S("ten").p, S("ten").n), C);
    th_assert_ok(mpb_list_insert(l, N - 10, S("late").p, S("late").n), C);
    expect_get(l, 10, S("ten"));
    expect_get(l, 11, I(POPS + 10));
    expect_get(l, N - 10, S("late"));
    expect_pop(l, N - 10, S("late"));
    expect_pop(l, 10, S("ten"));
    /* every item, in pages */
    int64_t want = POPS;
    for (int64_t start = 0; start < N;) {
        void *items;
        size_t il, n;
        th_assert_ok(mpb_list_slice(l, start, INT64_MAX, 1000, &items, &il, &n), C);
        assert_true(n >= 1 && n <= 1000);
        mpb__rd_t r = {items, (const uint8_t *)items + il};
        uint32_t cnt;
        assert_int_equal(mpb__rd_array(&r, &cnt), 0);
        for (uint32_t i = 0; i < cnt; i++) {
            int64_t x;
            assert_int_equal(mpb__rd_int(&r, &x), 0);
            if (x != want)
                fail_msg("item %" PRId64 " is %" PRId64 ", want %" PRId64, start + (int64_t)i, x,
                         want);
            want++;
        }
        mpb_free(items);
        start += (int64_t)n;
    }
    assert_int_equal(want, N + POPS);
    /* from the back too */
    for (int i = 0; i < 1000; i++)
        expect_pop(l, -1, I(N + POPS - 1 - i));
    assert_int_equal(llen(l), N - 1000);
    uint64_t count;
    th_assert_ok(mpb_list_count(l, I(N + POPS - 1001).p, I(N + POPS - 1001).n, &count), C);
    assert_int_equal(count, 1);
    int64_t idx;
    th_assert_ok(mpb_list_index(l, I(POPS + 5).p, I(POPS + 5).n, 0, INT64_MAX, &idx), C);
    assert_int_equal(idx, 5);
    th_assert_ok(mpb_list_clear(l), C);
    assert_int_equal(llen(l), 0);
    mpb_list_close(&l);
}

/* Draining a big list down gives memory back; the items left are still right. */
static void test_drain_shrinks(void **state) {
    (void)state;
    mpb_list_t *l = lopen("l_drain");
    mpb__buf_t b = {0};
    mpb__w_array(&b, 1000);
    for (int i = 0; i < 1000; i++)
        mpb__w_int(&b, i);
    th_assert_ok(mpb_list_extend(l, b.p, b.len), C);
    mpb__buf_free(&b);
    int front = 0, back = 999;
    /* alternate ends and the middle so that shrinking happens with the ring at any offset */
    while (back - front + 1 > 20) {
        expect_pop(l, 0, I(front++));
        expect_pop(l, -1, I(back--));
        if ((back - front) % 7 == 0) {
            th_assert_ok(mpb_list_insert(l, 0, I(front - 1).p, I(front - 1).n), C);
            front--;
        }
    }
    int64_t want[64];
    size_t n = 0;
    for (int i = front; i <= back; i++)
        want[n++] = i;
    expect_ints(l, n, want);
    for (int i = 0; i < 100; i++)
        app(l, I(5000 + i));
    assert_int_equal(llen(l), n + 100);
    expect_get(l, (int64_t)n, I(5000));
    expect_get(l, -1, I(5099));
    expect_get(l, 0, I(front));
    mpb_list_close(&l);
}

/* ---- objects and kinds ---- */

static void test_kinds_and_objects(void **state) {
    (void)state;
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(C, "lk_dict", &d), C);
    mpb_list_t *l = (mpb_list_t *)0x1;
    th_assert_err(mpb_list_open(C, "lk_dict", &l), MPB_EKIND, C, "lk_dict is a dict", "not a list");
    assert_null(l);
    void *res;
    size_t rn;
    th_assert_err(mpb_call(C, MPB_OP_LIST_APPEND, "lk_dict", RAW(0x91, 0x01).p, 2, 0, &res, &rn),
                  MPB_EKIND, C, "is a dict", NULL);
    th_assert_err(mpb_call(C, MPB_OP_LIST_LEN, "lk_dict", NULL, 0, 0, &res, &rn), MPB_EKIND, C,
                  NULL, NULL);
    mpb_dict_close(&d);
    /* listed with kind and size; described */
    l = lopen("lk_list");
    FILL_INTS(l, 1, 2, 3, 4);
    uint64_t size = 0;
    assert_int_equal(th_objects_find(C, "list", "lk_list", &size), 1);
    assert_int_equal(size, 4);
    uint64_t cursor = 0;
    mpb_obj_info_t info[4];
    size_t n;
    th_assert_ok(mpb_objects(C, "list/lk_*", &cursor, info, 4, &n), C);
    assert_int_equal(n, 1);
    assert_int_equal(cursor, 0);
    assert_string_equal(info[0].kind, "list");
    assert_string_equal(info[0].name, "lk_list");
    assert_int_equal(info[0].size, 4);
    void *m;
    size_t mn;
    th_assert_ok(mpb_obj_describe(C, "list/lk_list", &m, &mn), C);
    mpb__rd_t r = {m, (const uint8_t *)m + mn};
    th_assert_map_str(&r, "kind", "list");
    assert_int_equal(th_map_uint(&r, "size"), 4);
    assert_true(th_map_uint(&r, "bytes") >= 4);
    mpb_free(m);
    /* deleted: gone, and a new list under the same name is empty */
    th_assert_ok(mpb_obj_delete(C, "list/lk_list"), C);
    th_assert_err(mpb_obj_describe(C, "list/lk_list", &m, &mn), MPB_ENOOBJ, C, NULL, NULL);
    th_assert_err(mpb_obj_delete(C, "list/lk_list"), MPB_ENOOBJ, C, NULL, NULL);
    assert_int_equal(th_objects_find(C, "list", "lk_list", NULL), 0);
    assert_int_equal(llen(l), 0);
    mpb_list_close(&l);
    /* reads of a list that does not exist answer as empty and do not create it */
    th_assert_ok(mpb_call(C, MPB_OP_LIST_LEN, "lk_ghost", NULL, 0, 0, &res, &rn), C);
    const uint8_t *p = res;
    if (rn && p[0] == 0x91) p++, rn--;
    th_assert_bytes(p, rn, "\x00", 1);
    mpb_free(res);
    th_assert_err(mpb_call(C, MPB_OP_LIST_GET, "lk_ghost", RAW(0x91, 0x00).p, 2, 0, &res, &rn),
                  MPB_EINDEX, C, NULL, NULL);
    th_assert_ok(
        mpb_call(C, MPB_OP_LIST_SLICE, "lk_ghost", RAW(0x93, 0xc0, 0xc0, 0x00).p, 4, 0, &res, &rn),
        C);
    p = res;
    if (rn && p[0] == 0x91 && rn == 2) p++, rn--;
    th_assert_bytes(p, rn, "\x90", 1);
    mpb_free(res);
    th_assert_err(
        mpb_call(C, MPB_OP_LIST_INDEX, "lk_ghost", RAW(0x93, 0x01, 0xc0, 0xc0).p, 4, 0, &res, &rn),
        MPB_EVALUE, C, NULL, NULL);
    th_assert_ok(mpb_call(C, MPB_OP_LIST_COUNT, "lk_ghost", RAW(0x91, 0x01).p, 2, 0, &res, &rn), C);
    mpb_free(res);
    assert_int_equal(th_objects_find(C, "list", "lk_ghost", NULL), 0);
    th_assert_err(mpb_obj_describe(C, "list/lk_ghost", &m, &mn), MPB_ENOOBJ, C, NULL, NULL);
    /* so the name is still free for a dict */
    th_assert_ok(mpb_dict_open(C, "lk_ghost", &d), C);
    mpb_dict_close(&d);
    th_assert_ok(mpb_obj_delete(C, "dict/lk_ghost"), C);
}

/* ---- many processes on one list ---- */

static int ext_child(int idx, void *arg) {
    (void)arg;
    mpb_client_t *c = NULL;
    if (th_connect_opts(&B, NULL, &c)) return 1;
    mpb_list_t *l;
    if (mpb_list_open(c, "l_multi", &l)) return 2;
    for (int i = 0; i < 100; i++) {
        /* extend is atomic: a pair [idx*1000+i, -(idx*1000+i)] is never split */
        mpb__buf_t b = {0};
        mpb__w_array(&b, 2);
        mpb__w_int(&b, idx * 1000 + i);
        mpb__w_int(&b, -(idx * 1000 + i));
        int rc = mpb_list_extend(l, b.p, b.len);
        mpb__buf_free(&b);
        if (rc) return 3;
    }
    mpb_list_close(&l);
    mpb_close(&c);
    return 0;
}

static void test_four_processes_extend(void **state) {
    (void)state;
    assert_int_equal(th_spawn(4, ext_child, NULL, 60), 0);
    mpb_list_t *l = lopen("l_multi");
    assert_int_equal(llen(l), 800);
    void *items;
    size_t il, n;
    th_assert_ok(mpb_list_slice(l, 0, INT64_MAX, 0, &items, &il, &n), C);
    assert_int_equal(n, 800);
    mpb__rd_t r = {items, (const uint8_t *)items + il};
    uint32_t cnt;
    assert_int_equal(mpb__rd_array(&r, &cnt), 0);
    int last[4] = {-1, -1, -1, -1};
    for (uint32_t i = 0; i < cnt; i += 2) {
        int64_t a, b;
        assert_int_equal(mpb__rd_int(&r, &a), 0);
        assert_int_equal(mpb__rd_int(&r, &b), 0);
        assert_int_equal(b, -a);
        assert_true(a >= 0 && a < 4000 && a % 1000 < 100);
        assert_true(a % 1000 == last[a / 1000] + 1); /* each process's pairs in order */
        last[a / 1000] = (int)(a % 1000);
    }
    for (int p = 0; p < 4; p++)
        assert_int_equal(last[p], 99);
    mpb_free(items);
    /* sort it: all equal-magnitude pairs line up */
    th_assert_ok(mpb_list_sort(l, 0), C);
    expect_get(l, 0, I(-3099));
    expect_get(l, -1, I(3099));
    mpb_list_close(&l);
}

/* ---- last: the broker survived all of the above ---- */

static void test_broker_still_alive(void **state) {
    (void)state;
    assert_true(th_broker_alive(&B));
    mpb_client_t *c = th_connect(&B);
    mpb_list_t *l;
    th_assert_ok(mpb_list_open(c, "l_getset", &l), c);
    void *v;
    size_t vn;
    th_assert_ok(mpb_list_get(l, -1, &v, &vn), c);
    th_assert_bytes(v, vn, S("x").p, S("x").n);
    mpb_free(v);
    th_assert_ok(mpb_list_append(l, I(42).p, I(42).n), c);
    th_assert_ok(mpb_list_get(l, -1, &v, &vn), c);
    th_assert_bytes(v, vn, I(42).p, I(42).n);
    mpb_free(v);
    mpb_list_close(&l);
    th_assert_survived(&B, &c, &C);
}

int main(void) {
    th_suite(&B, &C, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_extend),
        cmocka_unit_test(test_extend_all_or_none),
        cmocka_unit_test(test_insert),
        cmocka_unit_test(test_insert_at_capacity),
        cmocka_unit_test(test_get_set),
        cmocka_unit_test(test_slice),
        cmocka_unit_test(test_pop),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_index_count),
        cmocka_unit_test(test_reverse_clear),
        cmocka_unit_test(test_sort_ints_floats),
        cmocka_unit_test(test_sort_str_bytes_arrays),
        cmocka_unit_test(test_sort_stable),
        cmocka_unit_test(test_sort_incomparable),
        cmocka_unit_test(test_random_ops_match_model),
        cmocka_unit_test(test_100k_ring),
        cmocka_unit_test(test_drain_shrinks),
        cmocka_unit_test(test_kinds_and_objects),
        cmocka_unit_test(test_four_processes_extend),
        cmocka_unit_test(test_broker_still_alive),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
