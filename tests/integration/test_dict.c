/* test_dict.c - every dict op against a real mpbrokerd, with exact results: scalars and nested
 * keys and values, defaults and missing keys, scans in small pages (also while the dict
 * changes, and over 200,000 keys), all-or-none update, pop/popitem/setdefault/incr, copy as a
 * snapshot, canonical keys, the string/int helpers, the object listing and kinds, and four
 * processes working on one dict at once. */
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

static mpb_dict_t *dopen(const char *name) {
    mpb_dict_t *d = NULL;
    int rc = mpb_dict_open(C, name, &d);
    if (rc) fail_msg("open dict %s: %s", name, mpb_errmsg(C));
    return d;
}

static void dset(mpb_dict_t *d, mv_t k, mv_t v) {
    th_assert_ok(mpb_dict_set(d, k.p, k.n, v.p, v.n), C);
}

static void expect_get(mpb_dict_t *d, mv_t k, mv_t want) {
    void *v = NULL;
    size_t vn = 0;
    th_assert_ok(mpb_dict_get(d, k.p, k.n, &v, &vn), C);
    th_assert_bytes(v, vn, want.p, want.n);
    mpb_free(v);
}

static void expect_nokey(mpb_dict_t *d, mv_t k) {
    void *v = NULL;
    size_t vn = 0;
    th_assert_err(mpb_dict_get(d, k.p, k.n, &v, &vn), MPB_ENOKEY, C, "no key", NULL);
}

static uint64_t dlen(mpb_dict_t *d) {
    uint64_t n = 12345;
    th_assert_ok(mpb_dict_len(d, &n), C);
    return n;
}

/* Scans the whole dict in pages of max, checking that each page holds *n values and at
 * most max of them (when max is given), and appends every element's bytes to out. Returns
 * the number of elements and the number of pages. */
static size_t scan_all(mpb_dict_t *d, int what, size_t max, mpb__buf_t *out, size_t *pages) {
    uint64_t cursor = 0;
    size_t total = 0, np = 0;
    do {
        void *pg = NULL;
        size_t pl = 0, n = 99999;
        th_assert_ok(mpb_dict_scan(d, what, &cursor, max, &pg, &pl, &n), C);
        mpb__rd_t r = {pg, (const uint8_t *)pg + pl};
        uint32_t cnt;
        assert_int_equal(mpb__rd_array(&r, &cnt), 0);
        assert_int_equal(cnt, n);
        if (max) assert_true(n <= max);
        for (uint32_t i = 0; i < cnt; i++) {
            const uint8_t *e;
            size_t en;
            assert_int_equal(mpb__rd_span(&r, &e, &en), 0);
        }
        assert_true(r.p == r.end); /* exactly cnt values in the page */
        mpb__rd_t r2 = {pg, (const uint8_t *)pg + pl};
        mpb__rd_array(&r2, &cnt);
        mpb__w_raw(out, r2.p, (size_t)(r2.end - r2.p));
        mpb_free(pg);
        total += n;
        np++;
        assert_true(np < 1000000);
    } while (cursor != 0);
    if (pages) *pages = np;
    return total;
}

/* ---- set / get ---- */

static void test_set_get_scalars(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_scalars");
    dset(d, S("name"), S("alice"));
    dset(d, I(42), I(-7));
    dset(d, RAW(0xc4, 0x03, 0x00, 0x01, 0x02), RAW(0xc4, 0x02, 0xff, 0xfe)); /* bytes */
    dset(d, S("nil"), RAW(0xc0));
    dset(d, S("true"), RAW(0xc3));
    dset(d, S("pi"), RAW(0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18));
    dset(d, I(-100000), S(""));
    dset(d, I(INT64_MIN), I(INT64_MAX));
    dset(d, RAW(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), S("u64max"));
    expect_get(d, S("name"), S("alice"));
    expect_get(d, I(42), I(-7));
    expect_get(d, RAW(0xc4, 0x03, 0x00, 0x01, 0x02), RAW(0xc4, 0x02, 0xff, 0xfe));
    expect_get(d, S("nil"), RAW(0xc0));
    expect_get(d, S("true"), RAW(0xc3));
    expect_get(d, S("pi"), RAW(0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18));
    expect_get(d, I(-100000), S(""));
    expect_get(d, I(INT64_MIN), I(INT64_MAX));
    expect_get(d, RAW(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), S("u64max"));
    /* str "1", int 1, bytes "1" and bool true are four different keys */
    dset(d, S("1"), S("str"));
    dset(d, I(1), S("int"));
    dset(d, RAW(0xc4, 0x01, '1'), S("bin"));
    dset(d, RAW(0xc3), S("bool"));
    expect_get(d, S("1"), S("str"));
    expect_get(d, I(1), S("int"));
    expect_get(d, RAW(0xc4, 0x01, '1'), S("bin"));
    expect_get(d, RAW(0xc3), S("bool"));
    expect_nokey(d, S("alice")); /* values are not keys */
    expect_nokey(d, I(-8));
    assert_int_equal(dlen(d), 13);
    mpb_dict_close(&d);
}

static void test_set_get_nested(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_nested");
    /* key [1, "a", [2]]  ->  value {"x": [1, 2], "y": {"z": nil}} */
    mv_t key = RAW(0x93, 0x01, 0xa1, 'a', 0x91, 0x02);
    mv_t val = RAW(0x82, 0xa1, 'x', 0x92, 0x01, 0x02, 0xa1, 'y', 0x81, 0xa1, 'z', 0xc0);
    dset(d, key, val);
    expect_get(d, key, val);
    /* the same key with its inner ints and the array header in longer encodings */
    expect_get(
        d,
        RAW(0xdc, 0x00, 0x03, 0xcc, 0x01, 0xd9, 0x01, 'a', 0x91, 0xd3, 0, 0, 0, 0, 0, 0, 0, 0x02),
        val);
    /* a map key, and an empty array and empty map as keys */
    mv_t mkey = RAW(0x81, 0xa1, 'a', 0x01);
    dset(d, mkey, S("map key"));
    dset(d, RAW(0x90), S("empty array"));
    dset(d, RAW(0x80), S("empty map"));
    expect_get(d, mkey, S("map key"));
    expect_get(d, RAW(0x90), S("empty array"));
    expect_get(d, RAW(0x80), S("empty map"));
    expect_get(d, RAW(0xde, 0x00, 0x01, 0xa1, 'a', 0xcc, 0x01), S("map key"));
    expect_nokey(d, RAW(0x91, 0x90)); /* [[]] is not [] */
    expect_nokey(d, RAW(0x93, 0x01, 0xa1, 'a', 0x91, 0x03));
    /* deep nesting: [[[[[[[[1]]]]]]]] */
    mv_t deep = RAW(0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x01);
    dset(d, deep, deep);
    expect_get(d, deep, deep);
    assert_int_equal(dlen(d), 5);
    mpb_dict_close(&d);
}

static void test_get_default_and_missing(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_get");
    dset(d, S("here"), I(1));
    void *v = NULL;
    size_t vn = 0;
    /* absent: the default comes back, and is not stored */
    th_assert_ok(
        mpb_dict_get_default(d, S("gone").p, S("gone").n, S("dflt").p, S("dflt").n, &v, &vn), C);
    th_assert_bytes(v, vn, S("dflt").p, S("dflt").n);
    mpb_free(v);
    assert_int_equal(mpb_dict_contains(d, S("gone").p, S("gone").n), 0);
    assert_int_equal(dlen(d), 1);
    /* present: the value, not the default */
    th_assert_ok(mpb_dict_get_default(d, S("here").p, S("here").n, RAW(0xc0).p, 1, &v, &vn), C);
    th_assert_bytes(v, vn, I(1).p, I(1).n);
    mpb_free(v);
    /* a nested default */
    mv_t nd = RAW(0x92, 0x01, 0x81, 0xa1, 'k', 0xc2);
    th_assert_ok(mpb_dict_get_default(d, I(5).p, I(5).n, nd.p, nd.n, &v, &vn), C);
    th_assert_bytes(v, vn, nd.p, nd.n);
    mpb_free(v);
    /* missing: ENOKEY naming the key and the dict */
    th_assert_err(mpb_dict_get(d, S("nokey").p, S("nokey").n, &v, &vn), MPB_ENOKEY, C, "\"nokey\"",
                  "d_get");
    th_assert_err(mpb_dict_get(d, I(12345).p, I(12345).n, &v, &vn), MPB_ENOKEY, C, "12345",
                  "d_get");
    th_assert_err(mpb_dict_get(d, I(-77).p, I(-77).n, &v, &vn), MPB_ENOKEY, C, "-77", NULL);
    /* not one well-formed value: refused before it is sent */
    th_assert_err(mpb_dict_get(d, RAW(0xa5, 'a', 'b').p, 3, &v, &vn), MPB_EINVAL, C, "key", NULL);
    th_assert_err(mpb_dict_get(d, RAW(0x01, 0x02).p, 2, &v, &vn), MPB_EINVAL, C, "key", NULL);
    th_assert_err(mpb_dict_set(d, S("k").p, S("k").n, RAW(0xc1).p, 1), MPB_EINVAL, C, "value",
                  NULL);
    assert_int_equal(dlen(d), 1);
    mpb_dict_close(&d);
}

static void test_set_overwrite_sizes(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_overwrite");
    static char big[2001];
    memset(big, 'x', 2000);
    void *bigv;
    size_t bign = mpb_pack_str(big, 2000, &bigv);
    assert_non_null(bigv);
    dset(d, S("a"), I(1));
    dset(d, S("b"), I(2));
    dset(d, S("c"), I(3));
    dset(d, S("a"), (mv_t){bigv, bign}); /* grows */
    expect_get(d, S("a"), (mv_t){bigv, bign});
    dset(d, S("a"), S("short")); /* shrinks */
    expect_get(d, S("a"), S("short"));
    dset(d, S("a"), S("shorx")); /* same size */
    expect_get(d, S("a"), S("shorx"));
    dset(d, S("a"), RAW(0xc0));
    expect_get(d, S("a"), RAW(0xc0));
    dset(d, S("b"), (mv_t){bigv, bign});
    expect_get(d, S("b"), (mv_t){bigv, bign});
    expect_get(d, S("c"), I(3));
    assert_int_equal(dlen(d), 3);
    /* an overwritten key keeps its place in the order, as in Python */
    mpb__buf_t out = {0}, want = {0};
    assert_int_equal(scan_all(d, MPB_SCAN_KEYS, 2, &out, NULL), 3);
    mv_t abc = RAW(0xa1, 'a', 0xa1, 'b', 0xa1, 'c');
    mpb__w_raw(&want, abc.p, abc.n);
    th_assert_bytes(out.p, out.len, want.p, want.len);
    mpb__buf_free(&out);
    mpb__buf_free(&want);
    mpb_free(bigv);
    mpb_dict_close(&d);
}

static void test_key_and_value_limits(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_limits");
    /* default limits: max_key 65536, max_value 1048576 (the whole encoding counts) */
    size_t kl = 65536 - 3; /* str16: 3-byte header */
    char *s = malloc(1048576);
    memset(s, 'k', 1048576);
    void *k;
    size_t kn = mpb_pack_str(s, kl, &k);
    assert_int_equal(kn, 65536);
    dset(d, (mv_t){k, kn}, I(1));
    expect_get(d, (mv_t){k, kn}, I(1));
    mpb_free(k);
    kn = mpb_pack_str(s, kl + 1, &k);
    th_assert_err(mpb_dict_set(d, k, kn, I(2).p, I(2).n), MPB_ETOOBIG, C, "key of 65537 bytes",
                  "max_key 65536");
    mpb_free(k);
    void *v;
    size_t vn = mpb_pack_str(s, 1048576 - 5, &v); /* str32: 5-byte header */
    assert_int_equal(vn, 1048576);
    dset(d, S("v"), (mv_t){v, vn});
    expect_get(d, S("v"), (mv_t){v, vn});
    mpb_free(v);
    vn = mpb_pack_str(s, 1048576 - 4, &v);
    th_assert_err(mpb_dict_set(d, S("v2").p, S("v2").n, v, vn), MPB_ETOOBIG, C,
                  "value of 1048577 bytes", "max_value 1048576");
    mpb_free(v);
    free(s);
    assert_int_equal(mpb_dict_contains(d, S("v2").p, S("v2").n), 0);
    assert_int_equal(dlen(d), 2);
    mpb_dict_close(&d);
}

/* ---- del / contains / len ---- */

static void test_del_contains_len(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_del");
    assert_int_equal(dlen(d), 0);
    assert_int_equal(mpb_dict_contains(d, S("a").p, S("a").n), 0);
    dset(d, S("a"), I(1));
    dset(d, S("b"), I(2));
    dset(d, I(3), I(3));
    assert_int_equal(dlen(d), 3);
    assert_int_equal(mpb_dict_contains(d, S("a").p, S("a").n), 1);
    assert_int_equal(mpb_dict_contains(d, I(3).p, I(3).n), 1);
    assert_int_equal(mpb_dict_contains(d, S("3").p, S("3").n), 0);
    th_assert_ok(mpb_dict_del(d, S("a").p, S("a").n), C);
    assert_int_equal(mpb_dict_contains(d, S("a").p, S("a").n), 0);
    expect_nokey(d, S("a"));
    assert_int_equal(dlen(d), 2);
    th_assert_err(mpb_dict_del(d, S("a").p, S("a").n), MPB_ENOKEY, C, "\"a\"", "d_del");
    th_assert_err(mpb_dict_del(d, I(99).p, I(99).n), MPB_ENOKEY, C, "99", "d_del");
    assert_int_equal(dlen(d), 2);
    th_assert_ok(mpb_dict_del(d, RAW(0xd3, 0, 0, 0, 0, 0, 0, 0, 3).p, 9), C); /* int 3, long form */
    assert_int_equal(mpb_dict_contains(d, I(3).p, I(3).n), 0);
    /* a deleted key set again goes to the end of the order */
    dset(d, S("a"), I(10));
    dset(d, S("c"), I(11));
    mpb__buf_t out = {0};
    assert_int_equal(scan_all(d, MPB_SCAN_KEYS, 0, &out, NULL), 3);
    mv_t bac = RAW(0xa1, 'b', 0xa1, 'a', 0xa1, 'c');
    th_assert_bytes(out.p, out.len, bac.p, bac.n);
    mpb__buf_free(&out);
    /* delete everything, then the dict works as new */
    th_assert_ok(mpb_dict_del(d, S("a").p, S("a").n), C);
    th_assert_ok(mpb_dict_del(d, S("b").p, S("b").n), C);
    th_assert_ok(mpb_dict_del(d, S("c").p, S("c").n), C);
    assert_int_equal(dlen(d), 0);
    dset(d, S("z"), I(26));
    expect_get(d, S("z"), I(26));
    assert_int_equal(dlen(d), 1);
    mpb_dict_close(&d);
}

/* ---- scan ---- */

static void key_of(int i, char *buf) {
    snprintf(buf, 16, "k%03d", i);
}

static void test_scan_small_pages(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_scan");
    char k[16];
    for (int i = 0; i < 100; i++) {
        key_of(i, k);
        dset(d, S(k), I(i * 10));
    }
    mpb__buf_t keys = {0}, vals = {0}, items = {0}, out = {0};
    for (int i = 0; i < 100; i++) {
        key_of(i, k);
        mv_t ks = S(k), vs = I(i * 10);
        mpb__w_raw(&keys, ks.p, ks.n);
        mpb__w_raw(&vals, vs.p, vs.n);
        mpb__w_array(&items, 2);
        mpb__w_raw(&items, ks.p, ks.n);
        mpb__w_raw(&items, vs.p, vs.n);
    }
    /* pages of 7 (14 of 7, one of 2); sizes 1 and exactly the size; 0 means the broker's cap */
    const struct {
        int what;
        size_t max, pages;
        const mpb__buf_t *want; /* NULL: the pages only */
    } scans[] = {
        {MPB_SCAN_KEYS,   7,   15,  &keys },
        {MPB_SCAN_VALUES, 7,   15,  &vals },
        {MPB_SCAN_ITEMS,  7,   15,  &items},
        {MPB_SCAN_KEYS,   1,   100, &keys },
        {MPB_SCAN_KEYS,   100, 1,   NULL  },
        {MPB_SCAN_ITEMS,  0,   1,   &items},
    };
    size_t pages;
    for (size_t i = 0; i < sizeof scans / sizeof scans[0]; i++) {
        assert_int_equal(scan_all(d, scans[i].what, scans[i].max, &out, &pages), 100);
        assert_int_equal(pages, scans[i].pages);
        if (scans[i].want) th_assert_bytes(out.p, out.len, scans[i].want->p, scans[i].want->len);
        mpb__buf_reset(&out);
    }
    /* with holes: every third key deleted; the rest in order */
    mpb__buf_t rest = {0};
    for (int i = 0; i < 100; i++) {
        key_of(i, k);
        if (i % 3 == 0)
            th_assert_ok(mpb_dict_del(d, S(k).p, S(k).n), C);
        else
            mpb__w_raw(&rest, S(k).p, S(k).n);
    }
    assert_int_equal(scan_all(d, MPB_SCAN_KEYS, 7, &out, &pages), 66);
    assert_int_equal(pages, 10);
    th_assert_bytes(out.p, out.len, rest.p, rest.len);
    mpb__buf_reset(&out);
    /* bad 'what': refused by the library, and by the broker */
    uint64_t cursor = 0;
    void *pg;
    size_t pl, n;
    th_assert_err(mpb_dict_scan(d, 3, &cursor, 7, &pg, &pl, &n), MPB_EINVAL, C, NULL, NULL);
    void *res = NULL;
    size_t rn;
    th_assert_err(
        mpb_call(C, MPB_OP_DICT_SCAN, "d_scan", RAW(0x93, 0x03, 0x00, 0x07).p, 4, 0, &res, &rn),
        MPB_EINVAL, C, "what", NULL);
    /* an empty dict: one empty page */
    mpb_dict_t *e = dopen("d_scan_empty");
    assert_int_equal(scan_all(e, MPB_SCAN_ITEMS, 7, &out, &pages), 0);
    assert_int_equal(pages, 1);
    mpb_dict_close(&e);
    mpb__buf_free(&keys);
    mpb__buf_free(&vals);
    mpb__buf_free(&items);
    mpb__buf_free(&out);
    mpb__buf_free(&rest);
    mpb_dict_close(&d);
}

/* Keys present for the whole scan come back exactly once, in insertion order, while other
 * keys are deleted (including the one the cursor points at, and enough at once to make the
 * broker compact its table) and new ones are added between pages. */
#define MS_N   400
#define MS_NEW 400
static void test_scan_while_mutating(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_scan_mut");
    /* original keys o0..o399 get ordinals 0..399, new keys n0.. get 400.. */
    static bool alive[MS_N + MS_NEW];
    static int seen[MS_N + MS_NEW];
    memset(alive, 0, sizeof alive);
    memset(seen, 0, sizeof seen);
    char k[16];
    for (int i = 0; i < MS_N; i++) {
        snprintf(k, sizeof k, "o%d", i);
        dset(d, S(k), I(i));
        alive[i] = true;
    }
    /* stable keys: i % 5 == 0; all others are victims */
    int nnew = 0, last = -1, page = 0;
    uint64_t cursor = 0;
    do {
        void *pg;
        size_t pl, n;
        th_assert_ok(mpb_dict_scan(d, MPB_SCAN_KEYS, &cursor, 7, &pg, &pl, &n), C);
        assert_true(n <= 7);
        mpb__rd_t r = {pg, (const uint8_t *)pg + pl};
        uint32_t cnt;
        assert_int_equal(mpb__rd_array(&r, &cnt), 0);
        assert_int_equal(cnt, n);
        for (uint32_t i = 0; i < cnt; i++) {
            const char *s;
            uint32_t sl;
            assert_int_equal(mpb__rd_str(&r, &s, &sl), 0);
            char name[16];
            snprintf(name, sizeof name, "%.*s", (int)sl, s);
            int ord = name[0] == 'o' ? atoi(name + 1) : MS_N + atoi(name + 1);
            assert_true(ord >= 0 && ord < MS_N + MS_NEW);
            if (!alive[ord]) fail_msg("scan returned %s, deleted before this page", name);
            if (seen[ord]++) fail_msg("scan returned %s twice", name);
            if (ord <= last) fail_msg("scan returned %s out of insertion order", name);
            last = ord;
        }
        mpb_free(pg);
        page++;
        /* between pages: delete the next three unseen victims (often the very key the cursor
         * points at), two seen victims, and add four new keys */
        int del = 0;
        for (int i = last + 1; i < MS_N && del < 3; i++)
            if (i % 5 && alive[i]) {
                snprintf(k, sizeof k, "o%d", i);
                th_assert_ok(mpb_dict_del(d, S(k).p, S(k).n), C);
                alive[i] = false;
                del++;
            }
        del = 0;
        for (int i = 0; i < last && i < MS_N && del < 2; i++)
            if (i % 5 && alive[i]) {
                snprintf(k, sizeof k, "o%d", i);
                th_assert_ok(mpb_dict_del(d, S(k).p, S(k).n), C);
                alive[i] = false;
                del++;
            }
        for (int j = 0; j < 4 && nnew < MS_NEW; j++, nnew++) {
            snprintf(k, sizeof k, "n%d", nnew);
            dset(d, S(k), I(nnew));
            alive[MS_N + nnew] = true;
        }
        if (page == 5) /* most at once: the broker rebuilds its table mid-scan */
            for (int i = 0; i < MS_N; i++)
                if (i % 5 && alive[i]) {
                    snprintf(k, sizeof k, "o%d", i);
                    th_assert_ok(mpb_dict_del(d, S(k).p, S(k).n), C);
                    alive[i] = false;
                }
        assert_true(page < 10000);
    } while (cursor);
    for (int i = 0; i < MS_N; i += 5)
        if (seen[i] != 1) fail_msg("stable key o%d returned %d times", i, seen[i]);
    /* the dict holds exactly the live keys */
    uint64_t live = 0;
    for (int i = 0; i < MS_N + MS_NEW; i++)
        live += alive[i];
    assert_int_equal(dlen(d), live);
    mpb_dict_close(&d);
}

/* 200,000 keys, set in batches by update, scanned in pages: each page bounded, every key
 * once and in order. */
static void test_scan_200k(void **state) {
    (void)state;
    enum { N = 200000, BATCH = 10000 };
    mpb_dict_t *d = dopen("d_200k");
    mpb__buf_t b = {0};
    for (int i = 0; i < N; i += BATCH) {
        mpb__buf_reset(&b);
        mpb__w_map(&b, BATCH);
        for (int j = i; j < i + BATCH; j++) {
            mpb__w_int(&b, j);
            mpb__w_int(&b, (int64_t)j * 3 - 7);
        }
        assert_false(b.oom);
        th_assert_ok(mpb_dict_update(d, b.p, b.len), C);
    }
    mpb__buf_free(&b);
    assert_int_equal(dlen(d), N);
    /* max 5000 asks for more than the broker gives (max_scan 1000) */
    uint64_t cursor = 0;
    int64_t next = 0;
    size_t pages = 0;
    do {
        void *pg;
        size_t pl, n;
        th_assert_ok(mpb_dict_scan(d, MPB_SCAN_ITEMS, &cursor, 5000, &pg, &pl, &n), C);
        assert_true(n >= 1 && n <= 1000);
        assert_true(pl < (8u << 20));
        mpb__rd_t r = {pg, (const uint8_t *)pg + pl};
        uint32_t cnt, two;
        assert_int_equal(mpb__rd_array(&r, &cnt), 0);
        assert_int_equal(cnt, n);
        for (uint32_t i = 0; i < cnt; i++) {
            int64_t k, v;
            assert_int_equal(mpb__rd_array(&r, &two), 0);
            assert_int_equal(two, 2);
            assert_int_equal(mpb__rd_int(&r, &k), 0);
            assert_int_equal(mpb__rd_int(&r, &v), 0);
            if (k != next)
                fail_msg("page %zu item %u: key %" PRId64 ", want %" PRId64, pages, i, k, next);
            assert_int_equal(v, k * 3 - 7);
            next++;
        }
        assert_true(r.p == r.end);
        mpb_free(pg);
        pages++;
    } while (cursor);
    assert_int_equal(next, N);
    assert_int_equal(pages, N / 1000);
    /* keys in pages of 999: the last page is short */
    mpb__buf_t out = {0};
    assert_int_equal(scan_all(d, MPB_SCAN_KEYS, 999, &out, &pages), N);
    assert_int_equal(pages, (N + 998) / 999);
    mpb__buf_free(&out);
    mpb_dict_close(&d);
    th_assert_ok(mpb_obj_delete(C, "dict/d_200k"), C);
}

/* Pages are bounded by bytes too: ten values of 900 KB never come back in one 8 MB frame. */
static void test_scan_big_values_bounded(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_bigvals");
    size_t sz = 900 * 1024;
    char *s = malloc(sz);
    for (int i = 0; i < 10; i++) {
        memset(s, 'a' + i, sz);
        void *v;
        size_t vn = mpb_pack_str(s, sz, &v);
        dset(d, I(i), (mv_t){v, vn});
        mpb_free(v);
    }
    uint64_t cursor = 0;
    int next = 0;
    size_t pages = 0;
    do {
        void *pg;
        size_t pl, n;
        th_assert_ok(mpb_dict_scan(d, MPB_SCAN_VALUES, &cursor, 0, &pg, &pl, &n), C);
        assert_true(n >= 1 && n < 10);
        assert_true(pl < (8u << 20));
        mpb__rd_t r = {pg, (const uint8_t *)pg + pl};
        uint32_t cnt;
        assert_int_equal(mpb__rd_array(&r, &cnt), 0);
        for (uint32_t i = 0; i < cnt; i++) {
            const char *str;
            uint32_t sl;
            assert_int_equal(mpb__rd_str(&r, &str, &sl), 0);
            assert_int_equal(sl, sz);
            assert_int_equal(str[0], 'a' + next);
            assert_int_equal(str[sl - 1], 'a' + next);
            next++;
        }
        mpb_free(pg);
        pages++;
    } while (cursor);
    assert_int_equal(next, 10);
    assert_true(pages >= 2);
    free(s);
    mpb_dict_close(&d);
    th_assert_ok(mpb_obj_delete(C, "dict/d_bigvals"), C);
}

/* ---- update ---- */

static void test_update_map_and_pairs(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_update");
    /* {"a": 1, "b": 2} */
    mv_t m = RAW(0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0x02);
    th_assert_ok(mpb_dict_update(d, m.p, m.n), C);
    expect_get(d, S("a"), I(1));
    expect_get(d, S("b"), I(2));
    /* [["c", 3], ["a", 10]]: a keeps its place */
    mv_t pairs = RAW(0x92, 0x92, 0xa1, 'c', 0x03, 0x92, 0xa1, 'a', 0x0a);
    th_assert_ok(mpb_dict_update(d, pairs.p, pairs.n), C);
    expect_get(d, S("a"), I(10));
    expect_get(d, S("c"), I(3));
    /* the same key twice in one update: the last wins; an int key in a long form */
    mv_t dup = RAW(0x83, 0xa1, 'd', 0x01, 0xa1, 'd', 0x02, 0xd1, 0x00, 0x07, 0xa1, 'x');
    th_assert_ok(mpb_dict_update(d, dup.p, dup.n), C);
    expect_get(d, S("d"), I(2));
    expect_get(d, I(7), S("x"));
    /* empty map and empty array change nothing */
    th_assert_ok(mpb_dict_update(d, RAW(0x80).p, 1), C);
    th_assert_ok(mpb_dict_update(d, RAW(0x90).p, 1), C);
    assert_int_equal(dlen(d), 5);
    mpb__buf_t out = {0};
    mv_t order = RAW(0xa1, 'a', 0xa1, 'b', 0xa1, 'c', 0xa1, 'd', 0x07);
    assert_int_equal(scan_all(d, MPB_SCAN_KEYS, 2, &out, NULL), 5);
    th_assert_bytes(out.p, out.len, order.p, order.n);
    mpb__buf_free(&out);
    /* not a map or array of pairs: ETYPE, nothing changed */
    th_assert_err(mpb_dict_update(d, I(5).p, I(5).n), MPB_ETYPE, C, NULL, NULL);
    mv_t notpair = RAW(0x92, 0x92, 0xa1, 'x', 0x01, 0x05);
    th_assert_err(mpb_dict_update(d, notpair.p, notpair.n), MPB_ETYPE, C, "item 1", NULL);
    mv_t triple = RAW(0x92, 0x92, 0xa1, 'y', 0x01, 0x93, 0xa1, 'z', 0x01, 0x02);
    th_assert_err(mpb_dict_update(d, triple.p, triple.n), MPB_ETYPE, C, "item 1", NULL);
    mv_t single = RAW(0x91, 0x91, 0xa1, 'w');
    th_assert_err(mpb_dict_update(d, single.p, single.n), MPB_ETYPE, C, "item 0", NULL);
    assert_int_equal(mpb_dict_contains(d, S("x").p, S("x").n), 0);
    assert_int_equal(mpb_dict_contains(d, S("y").p, S("y").n), 0);
    assert_int_equal(dlen(d), 5);
    mpb_dict_close(&d);
}

static void test_update_all_or_none(void **state) {
    (void)state;
    th_broker_t b2;
    th_broker_start(&b2, "--max-value", "1024", NULL);
    mpb_client_t *c = th_connect(&b2);
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "d", &d), c);
    th_assert_ok(mpb_dict_set(d, S("keep").p, S("keep").n, I(1).p, I(1).n), c);
    static char s[2048];
    memset(s, 'v', sizeof s);
    /* a value of exactly 1024 bytes is accepted, 1025 is not */
    void *ok, *big;
    size_t okn = mpb_pack_str(s, 1021, &ok), bign = mpb_pack_str(s, 1022, &big);
    assert_int_equal(okn, 1024);
    assert_int_equal(bign, 1025);
    th_assert_ok(mpb_dict_set(d, S("exact").p, S("exact").n, ok, okn), c);
    th_assert_err(mpb_dict_set(d, S("over").p, S("over").n, big, bign), MPB_ETOOBIG, c,
                  "value of 1025 bytes", "max_value 1024");
    /* map {"a": 1, "b": <1025 bytes>, "c": 3} */
    mpb__buf_t m = {0};
    mpb__w_map(&m, 3);
    mpb__w_cstr(&m, "a");
    mpb__w_int(&m, 1);
    mpb__w_cstr(&m, "b");
    mpb__w_raw(&m, big, bign);
    mpb__w_cstr(&m, "c");
    mpb__w_int(&m, 3);
    th_assert_err(mpb_dict_update(d, m.p, m.len), MPB_ETOOBIG, c, "value of 1025 bytes",
                  "max_value 1024");
    /* the same as pairs, with "keep" overwritten first */
    mpb__buf_t p = {0};
    mpb__w_array(&p, 3);
    mpb__w_array(&p, 2);
    mpb__w_cstr(&p, "keep");
    mpb__w_int(&p, 100);
    mpb__w_array(&p, 2);
    mpb__w_cstr(&p, "a");
    mpb__w_int(&p, 1);
    mpb__w_array(&p, 2);
    mpb__w_cstr(&p, "b");
    mpb__w_raw(&p, big, bign);
    th_assert_err(mpb_dict_update(d, p.p, p.len), MPB_ETOOBIG, c, "value of 1025 bytes", NULL);
    /* a bad pair at the end, after good ones */
    mpb__buf_t q = {0};
    mpb__w_array(&q, 2);
    mpb__w_array(&q, 2);
    mpb__w_cstr(&q, "a");
    mpb__w_int(&q, 1);
    mpb__w_int(&q, 5);
    th_assert_err(mpb_dict_update(d, q.p, q.len), MPB_ETYPE, c, NULL, NULL);
    uint64_t n;
    th_assert_ok(mpb_dict_len(d, &n), c);
    assert_int_equal(n, 2);
    void *v;
    size_t vn;
    th_assert_ok(mpb_dict_get(d, S("keep").p, S("keep").n, &v, &vn), c);
    th_assert_bytes(v, vn, I(1).p, I(1).n);
    mpb_free(v);
    assert_int_equal(mpb_dict_contains(d, S("a").p, S("a").n), 0);
    assert_int_equal(mpb_dict_contains(d, S("c").p, S("c").n), 0);
    /* the good parts alone go in */
    mpb__buf_reset(&m);
    mpb__w_map(&m, 2);
    mpb__w_cstr(&m, "a");
    mpb__w_raw(&m, ok, okn);
    mpb__w_cstr(&m, "c");
    mpb__w_int(&m, 3);
    th_assert_ok(mpb_dict_update(d, m.p, m.len), c);
    th_assert_ok(mpb_dict_len(d, &n), c);
    assert_int_equal(n, 4);
    mpb__buf_free(&m);
    mpb__buf_free(&p);
    mpb__buf_free(&q);
    mpb_free(ok);
    mpb_free(big);
    mpb_dict_close(&d);
    mpb_close(&c);
    assert_true(th_broker_alive(&b2));
    th_broker_stop_checked(&b2);
}

/* ---- pop / popitem / setdefault ---- */

static void test_pop(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_pop");
    dset(d, S("a"), S("alpha"));
    dset(d, S("b"), S("beta"));
    void *v;
    size_t vn;
    th_assert_ok(mpb_dict_pop(d, S("a").p, S("a").n, NULL, 0, &v, &vn), C);
    th_assert_bytes(v, vn, S("alpha").p, S("alpha").n);
    mpb_free(v);
    assert_int_equal(mpb_dict_contains(d, S("a").p, S("a").n), 0);
    assert_int_equal(dlen(d), 1);
    /* missing with a default: the default, nothing stored */
    th_assert_ok(mpb_dict_pop(d, S("a").p, S("a").n, I(-1).p, I(-1).n, &v, &vn), C);
    th_assert_bytes(v, vn, I(-1).p, I(-1).n);
    mpb_free(v);
    assert_int_equal(mpb_dict_contains(d, S("a").p, S("a").n), 0);
    /* present with a default: the value */
    th_assert_ok(mpb_dict_pop(d, S("b").p, S("b").n, I(-1).p, I(-1).n, &v, &vn), C);
    th_assert_bytes(v, vn, S("beta").p, S("beta").n);
    mpb_free(v);
    assert_int_equal(dlen(d), 0);
    /* missing without one: ENOKEY naming the key */
    th_assert_err(mpb_dict_pop(d, S("b").p, S("b").n, NULL, 0, &v, &vn), MPB_ENOKEY, C, "\"b\"",
                  "d_pop");
    th_assert_err(mpb_dict_pop(d, I(404).p, I(404).n, NULL, 0, &v, &vn), MPB_ENOKEY, C, "404",
                  NULL);
    /* canonical key */
    dset(d, I(300), S("x"));
    th_assert_ok(mpb_dict_pop(d, RAW(0xd2, 0, 0, 0x01, 0x2c).p, 5, NULL, 0, &v, &vn), C);
    th_assert_bytes(v, vn, S("x").p, S("x").n);
    mpb_free(v);
    assert_int_equal(dlen(d), 0);
    mpb_dict_close(&d);
}

static void expect_popitem(mpb_dict_t *d, mv_t k, mv_t v) {
    void *kp = NULL, *vp = NULL;
    size_t kn = 0, vn = 0;
    th_assert_ok(mpb_dict_popitem(d, &kp, &kn, &vp, &vn), C);
    th_assert_bytes(kp, kn, k.p, k.n);
    th_assert_bytes(vp, vn, v.p, v.n);
    mpb_free(kp);
    mpb_free(vp);
}

static void test_popitem_lifo(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_popitem");
    void *kp, *vp;
    size_t kn, vn;
    th_assert_err(mpb_dict_popitem(d, &kp, &kn, &vp, &vn), MPB_EEMPTY, C, "d_popitem", "empty");
    dset(d, S("a"), I(1));
    dset(d, S("b"), I(2));
    dset(d, S("c"), I(3));
    expect_popitem(d, S("c"), I(3));
    expect_popitem(d, S("b"), I(2));
    dset(d, S("d"), I(4));
    expect_popitem(d, S("d"), I(4));
    expect_popitem(d, S("a"), I(1));
    th_assert_err(mpb_dict_popitem(d, &kp, &kn, &vp, &vn), MPB_EEMPTY, C, "empty", NULL);
    /* overwriting keeps the place: x, y, x=3 -> popitem gives y first (as Python) */
    dset(d, S("x"), I(1));
    dset(d, S("y"), I(2));
    dset(d, S("x"), I(3));
    expect_popitem(d, S("y"), I(2));
    expect_popitem(d, S("x"), I(3));
    /* deleted in the middle and at the end: popitem skips the holes */
    for (int i = 0; i < 10; i++)
        dset(d, I(i), I(i * i));
    th_assert_ok(mpb_dict_del(d, I(9).p, I(9).n), C);
    th_assert_ok(mpb_dict_del(d, I(8).p, I(8).n), C);
    th_assert_ok(mpb_dict_del(d, I(5).p, I(5).n), C);
    expect_popitem(d, I(7), I(49));
    expect_popitem(d, I(6), I(36));
    expect_popitem(d, I(4), I(16));
    dset(d, I(100), I(0));
    expect_popitem(d, I(100), I(0));
    expect_popitem(d, I(3), I(9));
    assert_int_equal(dlen(d), 3);
    /* nested keys come back exactly */
    mv_t nk = RAW(0x92, 0xa1, 'n', 0x91, 0x01);
    dset(d, nk, RAW(0x80));
    expect_popitem(d, nk, RAW(0x80));
    mpb_dict_close(&d);
}

static void test_setdefault(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_setdefault");
    void *v;
    size_t vn;
    th_assert_ok(mpb_dict_setdefault(d, S("a").p, S("a").n, I(5).p, I(5).n, &v, &vn), C);
    th_assert_bytes(v, vn, I(5).p, I(5).n);
    mpb_free(v);
    expect_get(d, S("a"), I(5));
    th_assert_ok(mpb_dict_setdefault(d, S("a").p, S("a").n, I(6).p, I(6).n, &v, &vn), C);
    th_assert_bytes(v, vn, I(5).p, I(5).n);
    mpb_free(v);
    expect_get(d, S("a"), I(5));
    /* a nil value is a value: setdefault leaves it */
    dset(d, S("n"), RAW(0xc0));
    th_assert_ok(mpb_dict_setdefault(d, S("n").p, S("n").n, I(6).p, I(6).n, &v, &vn), C);
    th_assert_bytes(v, vn, RAW(0xc0).p, 1);
    mpb_free(v);
    mv_t nested = RAW(0x91, 0x92, 0x01, 0x02);
    th_assert_ok(mpb_dict_setdefault(d, I(1).p, I(1).n, nested.p, nested.n, &v, &vn), C);
    th_assert_bytes(v, vn, nested.p, nested.n);
    mpb_free(v);
    expect_get(d, RAW(0xcc, 0x01), nested);
    assert_int_equal(dlen(d), 3);
    mpb_dict_close(&d);
}

/* ---- incr ---- */

static void test_incr(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_incr");
    int64_t r = 0;
    /* absent counts as 0 */
    th_assert_ok(mpb_dict_incr(d, S("n").p, S("n").n, 5, &r), C);
    assert_int_equal(r, 5);
    expect_get(d, S("n"), I(5));
    th_assert_ok(mpb_dict_incr(d, S("n").p, S("n").n, -8, &r), C);
    assert_int_equal(r, -3);
    expect_get(d, S("n"), I(-3));
    th_assert_ok(mpb_dict_incr(d, S("n").p, S("n").n, 0, &r), C);
    assert_int_equal(r, -3);
    th_assert_ok(mpb_dict_incr(d, S("n").p, S("n").n, 1000000, NULL), C);
    expect_get(d, S("n"), I(999997));
    /* incr by 0 on an absent key stores 0 */
    th_assert_ok(mpb_dict_incr(d, S("z").p, S("z").n, 0, &r), C);
    assert_int_equal(r, 0);
    expect_get(d, S("z"), I(0));
    /* a stored integer in a long encoding, and an int key in another form */
    dset(d, I(7), RAW(0xd3, 0, 0, 0, 0, 0, 0, 0, 0x05));
    th_assert_ok(mpb_dict_incr(d, RAW(0xcc, 0x07).p, 2, 1, &r), C);
    assert_int_equal(r, 6);
    expect_get(d, I(7), I(6));
    /* not an integer: ETYPE naming the key, value unchanged */
    dset(d, S("s"), S("text"));
    th_assert_err(mpb_dict_incr(d, S("s").p, S("s").n, 1, &r), MPB_ETYPE, C, "\"s\"", "integer");
    expect_get(d, S("s"), S("text"));
    mv_t dbl = RAW(0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0); /* 1.0 */
    dset(d, S("f"), dbl);
    th_assert_err(mpb_dict_incr(d, S("f").p, S("f").n, 1, &r), MPB_ETYPE, C, NULL, NULL);
    expect_get(d, S("f"), dbl);
    dset(d, S("arr"), RAW(0x91, 0x01));
    th_assert_err(mpb_dict_incr(d, S("arr").p, S("arr").n, 1, &r), MPB_ETYPE, C, NULL, NULL);
    expect_get(d, S("arr"), RAW(0x91, 0x01));
    /* overflow both ways: EOVERFLOW, value unchanged */
    dset(d, S("max"), I(INT64_MAX));
    th_assert_err(mpb_dict_incr(d, S("max").p, S("max").n, 1, &r), MPB_EOVERFLOW, C,
                  "9223372036854775807", "overflow");
    expect_get(d, S("max"), I(INT64_MAX));
    th_assert_ok(mpb_dict_incr(d, S("max").p, S("max").n, -1, &r), C);
    assert_int_equal(r, INT64_MAX - 1);
    th_assert_ok(mpb_dict_incr(d, S("max").p, S("max").n, 1, &r), C);
    assert_int_equal(r, INT64_MAX);
    dset(d, S("min"), I(INT64_MIN + 5));
    th_assert_err(mpb_dict_incr(d, S("min").p, S("min").n, -6, &r), MPB_EOVERFLOW, C, NULL, NULL);
    expect_get(d, S("min"), I(INT64_MIN + 5));
    th_assert_ok(mpb_dict_incr(d, S("min").p, S("min").n, -5, &r), C);
    assert_int_equal(r, INT64_MIN);
    th_assert_err(mpb_dict_incr(d, S("min").p, S("min").n, INT64_MIN, &r), MPB_EOVERFLOW, C, NULL,
                  NULL);
    expect_get(d, S("min"), I(INT64_MIN));
    th_assert_ok(mpb_dict_incr(d, S("big").p, S("big").n, INT64_MAX, &r), C);
    th_assert_ok(mpb_dict_incr(d, S("big").p, S("big").n, INT64_MIN, &r), C);
    assert_int_equal(r, -1);
    mpb_dict_close(&d);
}

/* ---- clear / copy ---- */

static void test_clear(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_clear");
    for (int i = 0; i < 50; i++)
        dset(d, I(i), I(i));
    th_assert_ok(mpb_dict_clear(d), C);
    assert_int_equal(dlen(d), 0);
    expect_nokey(d, I(1));
    mpb__buf_t out = {0};
    size_t pages;
    assert_int_equal(scan_all(d, MPB_SCAN_KEYS, 7, &out, &pages), 0);
    assert_int_equal(pages, 1);
    void *kp, *vp;
    size_t kn, vn;
    th_assert_err(mpb_dict_popitem(d, &kp, &kn, &vp, &vn), MPB_EEMPTY, C, NULL, NULL);
    th_assert_ok(mpb_dict_clear(d), C); /* clearing an empty dict */
    /* it is still a dict, and works as new */
    uint64_t size = 99;
    assert_int_equal(th_objects_find(C, "dict", "d_clear", &size), 1);
    assert_int_equal(size, 0);
    dset(d, S("b"), I(2));
    dset(d, S("a"), I(1));
    assert_int_equal(scan_all(d, MPB_SCAN_KEYS, 1, &out, &pages), 2);
    mv_t ba = RAW(0xa1, 'b', 0xa1, 'a');
    th_assert_bytes(out.p, out.len, ba.p, ba.n);
    mpb__buf_free(&out);
    mpb_dict_close(&d);
}

static void test_copy(void **state) {
    (void)state;
    mpb_dict_t *src = dopen("d_copy_src");
    for (int i = 0; i < 20; i++)
        dset(src, I(i), I(-i));
    th_assert_ok(mpb_dict_del(src, I(3).p, I(3).n), C);
    mpb__buf_t before = {0}, after = {0};
    assert_int_equal(scan_all(src, MPB_SCAN_ITEMS, 0, &before, NULL), 19);
    /* to a new name */
    th_assert_ok(mpb_dict_copy(src, "d_copy_snap"), C);
    mpb_dict_t *snap = dopen("d_copy_snap");
    assert_int_equal(scan_all(snap, MPB_SCAN_ITEMS, 4, &after, NULL), 19);
    th_assert_bytes(after.p, after.len, before.p, before.len);
    /* later changes to the source do not show in the copy, nor the other way */
    dset(src, S("new"), I(1));
    th_assert_ok(mpb_dict_del(src, I(0).p, I(0).n), C);
    dset(src, I(1), S("changed"));
    dset(snap, S("only in snap"), I(2));
    mpb__buf_reset(&after);
    assert_int_equal(scan_all(snap, MPB_SCAN_ITEMS, 4, &after, NULL), 20);
    th_assert_bytes(after.p, before.len, before.p, before.len);
    expect_get(snap, I(0), I(0));
    expect_get(snap, I(1), I(-1));
    assert_int_equal(mpb_dict_contains(snap, S("new").p, S("new").n), 0);
    assert_int_equal(mpb_dict_contains(src, S("only in snap").p, S("only in snap").n), 0);
    assert_int_equal(dlen(src), 19);
    /* the copy keeps the order: popitem gives the newest */
    expect_popitem(snap, S("only in snap"), I(2));
    expect_popitem(snap, I(19), I(-19));
    /* over an existing dict: replaced entirely; a handle opened before still works */
    mpb_dict_t *old = dopen("d_copy_old");
    dset(old, S("z"), I(9));
    dset(old, I(1), S("old"));
    th_assert_ok(mpb_dict_copy(src, "d_copy_old"), C);
    assert_int_equal(mpb_dict_contains(old, S("z").p, S("z").n), 0);
    expect_get(old, I(1), S("changed"));
    assert_int_equal(dlen(old), 19);
    mpb__buf_t s1 = {0}, s2 = {0};
    scan_all(src, MPB_SCAN_ITEMS, 0, &s1, NULL);
    scan_all(old, MPB_SCAN_ITEMS, 0, &s2, NULL);
    th_assert_bytes(s2.p, s2.len, s1.p, s1.len);
    mpb__buf_free(&s1);
    mpb__buf_free(&s2);
    /* onto itself: nothing changes */
    th_assert_ok(mpb_dict_copy(src, "d_copy_src"), C);
    assert_int_equal(dlen(src), 19);
    /* onto a list: EKIND, and the list untouched */
    mpb_list_t *l;
    th_assert_ok(mpb_list_open(C, "d_copy_list", &l), C);
    th_assert_ok(mpb_list_append(l, I(1).p, I(1).n), C);
    th_assert_err(mpb_dict_copy(src, "d_copy_list"), MPB_EKIND, C, "d_copy_list", "list");
    uint64_t ll;
    th_assert_ok(mpb_list_len(l, &ll), C);
    assert_int_equal(ll, 1);
    mpb_list_close(&l);
    /* a bad destination name */
    th_assert_err(mpb_dict_copy(src, "a/b"), MPB_EINVAL, C, NULL, NULL);
    th_assert_err(mpb_dict_copy(src, ""), MPB_EINVAL, C, NULL, NULL);
    /* an empty source makes an empty dict */
    mpb_dict_t *empty = dopen("d_copy_empty");
    th_assert_ok(mpb_dict_copy(empty, "d_copy_old"), C);
    assert_int_equal(dlen(old), 0);
    uint64_t size = 99;
    assert_int_equal(th_objects_find(C, "dict", "d_copy_old", &size), 1);
    assert_int_equal(size, 0);
    mpb__buf_free(&before);
    mpb__buf_free(&after);
    mpb_dict_close(&empty);
    mpb_dict_close(&old);
    mpb_dict_close(&snap);
    mpb_dict_close(&src);
}

/* ---- canonical keys ---- */

static void test_canonical_keys(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_canon");
    /* 1 as uint8 (cc 01), positive fixint (01), int64 (d3 ... 01) and every other form */
    mv_t forms[] = {
        RAW(0xcc, 0x01),
        RAW(0x01),
        RAW(0xd3, 0, 0, 0, 0, 0, 0, 0, 0x01),
        RAW(0xcd, 0x00, 0x01),
        RAW(0xce, 0, 0, 0, 0x01),
        RAW(0xcf, 0, 0, 0, 0, 0, 0, 0, 0x01),
        RAW(0xd0, 0x01),
        RAW(0xd1, 0x00, 0x01),
        RAW(0xd2, 0, 0, 0, 0x01),
    };
    dset(d, forms[0], S("one"));
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        expect_get(d, forms[i], S("one"));
        assert_int_equal(mpb_dict_contains(d, forms[i].p, forms[i].n), 1);
    }
    dset(d, forms[2], S("uno")); /* overwrites, does not add */
    assert_int_equal(dlen(d), 1);
    expect_get(d, forms[1], S("uno"));
    /* the key is kept (and scanned) in its canonical form */
    mpb__buf_t out = {0};
    assert_int_equal(scan_all(d, MPB_SCAN_KEYS, 0, &out, NULL), 1);
    th_assert_bytes(out.p, out.len, "\x01", 1);
    mpb__buf_reset(&out);
    th_assert_ok(mpb_dict_del(d, forms[7].p, forms[7].n), C);
    assert_int_equal(dlen(d), 0);
    /* -1: negative fixint, int8, int64 */
    dset(d, RAW(0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), S("minus one"));
    expect_get(d, RAW(0xff), S("minus one"));
    expect_get(d, RAW(0xd0, 0xff), S("minus one"));
    expect_get(d, RAW(0xd1, 0xff, 0xff), S("minus one"));
    /* 256 as uint16 and as int16 (same length, different bytes) */
    dset(d, RAW(0xd1, 0x01, 0x00), S("256"));
    expect_get(d, RAW(0xcd, 0x01, 0x00), S("256"));
    expect_get(d, I(256), S("256"));
    /* strings: fixstr, str8, str16 */
    dset(d, RAW(0xda, 0x00, 0x03, 'a', 'b', 'c'), S("abc"));
    expect_get(d, RAW(0xa3, 'a', 'b', 'c'), S("abc"));
    expect_get(d, RAW(0xd9, 0x03, 'a', 'b', 'c'), S("abc"));
    /* bytes: bin8 and bin16 */
    dset(d, RAW(0xc5, 0x00, 0x02, 'h', 'i'), S("bin"));
    expect_get(d, RAW(0xc4, 0x02, 'h', 'i'), S("bin"));
    /* float32 1.5 is float64 1.5; but float 1.0 is not int 1 */
    dset(d, RAW(0xca, 0x3f, 0xc0, 0x00, 0x00), S("1.5"));
    expect_get(d, RAW(0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0), S("1.5"));
    /* arrays and maps: long headers, inner values in other forms */
    dset(d, RAW(0xdd, 0, 0, 0, 0x02, 0xcc, 0x05, 0xd9, 0x01, 'x'), S("arr"));
    expect_get(d, RAW(0x92, 0x05, 0xa1, 'x'), S("arr"));
    dset(d, RAW(0xdf, 0, 0, 0, 0x01, 0xa1, 'k', 0xd0, 0x03), S("map"));
    expect_get(d, RAW(0x81, 0xa1, 'k', 0x03), S("map"));
    assert_int_equal(dlen(d), 7);
    /* the same keys through update and popitem */
    mv_t upd = RAW(0x82, 0xce, 0, 0, 0x01, 0x00, 0x01, 0xd9, 0x03, 'a', 'b', 'c', 0x02);
    th_assert_ok(mpb_dict_update(d, upd.p, upd.n), C);
    expect_get(d, I(256), I(1));
    expect_get(d, S("abc"), I(2));
    assert_int_equal(dlen(d), 7);
    expect_popitem(d, RAW(0x81, 0xa1, 'k', 0x03), S("map"));
    /* values are stored as sent, not canonicalised */
    dset(d, S("v"), RAW(0xd3, 0, 0, 0, 0, 0, 0, 0, 0x01));
    expect_get(d, S("v"), RAW(0xd3, 0, 0, 0, 0, 0, 0, 0, 0x01));
    mpb__buf_free(&out);
    mpb_dict_close(&d);
}

/* ---- convenience calls ---- */

static void test_helpers(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_helpers");
    th_assert_ok(mpb_dict_set_str(d, "greeting", "hello"), C);
    char *s = NULL;
    th_assert_ok(mpb_dict_get_str(d, "greeting", &s), C);
    assert_string_equal(s, "hello");
    mpb_free(s);
    expect_get(d, S("greeting"), S("hello")); /* the same key as a packed string */
    th_assert_ok(mpb_dict_set_str(d, "empty", ""), C);
    th_assert_ok(mpb_dict_get_str(d, "empty", &s), C);
    assert_string_equal(s, "");
    mpb_free(s);
    th_assert_ok(mpb_dict_set_i64(d, "n", -42), C);
    int64_t v = 0;
    th_assert_ok(mpb_dict_get_i64(d, "n", &v), C);
    assert_int_equal(v, -42);
    expect_get(d, S("n"), I(-42));
    th_assert_ok(mpb_dict_set_i64(d, "max", INT64_MAX), C);
    th_assert_ok(mpb_dict_get_i64(d, "max", &v), C);
    assert_int_equal(v, INT64_MAX);
    th_assert_ok(mpb_dict_incr_str(d, "n", 50, &v), C);
    assert_int_equal(v, 8);
    th_assert_ok(mpb_dict_incr_str(d, "fresh", -3, &v), C);
    assert_int_equal(v, -3);
    th_assert_ok(mpb_dict_get_i64(d, "fresh", &v), C);
    assert_int_equal(v, -3);
    th_assert_err(mpb_dict_incr_str(d, "max", 1, &v), MPB_EOVERFLOW, C, NULL, NULL);
    th_assert_err(mpb_dict_incr_str(d, "greeting", 1, &v), MPB_ETYPE, C, "greeting", NULL);
    /* wrong types and missing keys */
    th_assert_err(mpb_dict_get_i64(d, "greeting", &v), MPB_ETYPE, C, NULL, NULL);
    th_assert_err(mpb_dict_get_str(d, "n", &s), MPB_ETYPE, C, NULL, NULL);
    th_assert_err(mpb_dict_get_str(d, "nope", &s), MPB_ENOKEY, C, "\"nope\"", NULL);
    th_assert_err(mpb_dict_get_i64(d, "nope", &v), MPB_ENOKEY, C, "\"nope\"", NULL);
    th_assert_err(mpb_dict_set_str(d, "x", NULL), MPB_EINVAL, C, NULL, NULL);
    th_assert_err(mpb_dict_set_str(d, NULL, "x"), MPB_EINVAL, C, NULL, NULL);
    /* long keys and values (past the helpers' stack buffer) */
    char key[300], val[5000];
    memset(key, 'K', sizeof key - 1);
    key[sizeof key - 1] = 0;
    memset(val, 'V', sizeof val - 1);
    val[sizeof val - 1] = 0;
    th_assert_ok(mpb_dict_set_str(d, key, val), C);
    th_assert_ok(mpb_dict_get_str(d, key, &s), C);
    assert_string_equal(s, val);
    mpb_free(s);
    th_assert_ok(mpb_dict_incr_str(d, key + 150, 7, &v), C);
    th_assert_ok(mpb_dict_get_i64(d, key + 150, &v), C);
    assert_int_equal(v, 7);
    /* UTF-8 and a string with an embedded quote */
    th_assert_ok(mpb_dict_set_str(d, "clé \"q\"", "värde ✓"), C);
    th_assert_ok(mpb_dict_get_str(d, "clé \"q\"", &s), C);
    assert_string_equal(s, "värde ✓");
    mpb_free(s);
    assert_int_equal(dlen(d), 8);
    mpb_dict_close(&d);
}

/* ---- objects and kinds ---- */

static void test_objects_list_describe_delete(void **state) {
    (void)state;
    mpb_dict_t *d1 = dopen("obj_d1"), *d2 = dopen("obj_d2");
    dset(d1, S("a"), I(1));
    dset(d1, S("b"), I(2));
    dset(d1, S("c"), I(3));
    mpb_list_t *l;
    th_assert_ok(mpb_list_open(C, "obj_l1", &l), C);
    th_assert_ok(mpb_list_append(l, I(1).p, I(1).n), C);
    th_assert_ok(mpb_list_append(l, I(2).p, I(2).n), C);
    /* "kind/name" patterns, in pages of 2 */
    struct {
        const char *pattern;
        int n;
    } cases[] = {
        {"*/obj_*",     3},
        {"dict/obj_*",  2},
        {"list/obj_*",  1},
        {"obj_l*",      1},
        {"obj_d?",      2},
        {"nomatch*",    0},
        {"dict/obj_d1", 1}
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        uint64_t cursor = 0;
        int found = 0, d1seen = 0, d2seen = 0, l1seen = 0, pages = 0;
        do {
            mpb_obj_info_t info[2];
            size_t n = 99;
            th_assert_ok(mpb_objects(C, cases[t].pattern, &cursor, info, 2, &n), C);
            assert_true(n <= 2);
            for (size_t i = 0; i < n; i++) {
                found++;
                if (!strcmp(info[i].name, "obj_d1")) {
                    assert_string_equal(info[i].kind, "dict");
                    assert_int_equal(info[i].size, 3);
                    d1seen++;
                } else if (!strcmp(info[i].name, "obj_d2")) {
                    assert_string_equal(info[i].kind, "dict");
                    assert_int_equal(info[i].size, 0);
                    d2seen++;
                } else if (!strcmp(info[i].name, "obj_l1")) {
                    assert_string_equal(info[i].kind, "list");
                    assert_int_equal(info[i].size, 2);
                    l1seen++;
                } else {
                    fail_msg("pattern %s matched %s/%s", cases[t].pattern, info[i].kind,
                             info[i].name);
                }
            }
            assert_true(++pages < 1000);
        } while (cursor);
        if (found != cases[t].n)
            fail_msg("pattern %s: %d objects, want %d", cases[t].pattern, found, cases[t].n);
        assert_true(d1seen <= 1 && d2seen <= 1 && l1seen <= 1);
    }
    /* describe */
    void *m;
    size_t mn;
    th_assert_ok(mpb_obj_describe(C, "dict/obj_d1", &m, &mn), C);
    mpb__rd_t r = {m, (const uint8_t *)m + mn};
    th_assert_map_str(&r, "kind", "dict");
    th_assert_map_str(&r, "name", "obj_d1");
    assert_int_equal(th_map_uint(&r, "size"), 3);
    assert_true(th_map_uint(&r, "bytes") > 0);
    mpb_free(m);
    th_assert_ok(mpb_obj_describe(C, "list/obj_l1", &m, &mn), C);
    r = (mpb__rd_t){m, (const uint8_t *)m + mn};
    assert_int_equal(th_map_uint(&r, "size"), 2);
    mpb_free(m);
    th_assert_err(mpb_obj_describe(C, "dict/obj_none", &m, &mn), MPB_ENOOBJ, C, "obj_none", NULL);
    th_assert_err(mpb_obj_describe(C, "list/obj_d1", &m, &mn), MPB_EKIND, C, "obj_d1", "dict");
    th_assert_err(mpb_obj_describe(C, "obj_d1", &m, &mn), MPB_EINVAL, C, NULL, NULL);
    th_assert_err(mpb_obj_describe(C, "nosuchkind/obj_d1", &m, &mn), MPB_EINVAL, C, NULL, NULL);
    /* delete */
    th_assert_err(mpb_obj_delete(C, "list/obj_d1"), MPB_EKIND, C, "obj_d1", NULL);
    th_assert_ok(mpb_obj_delete(C, "dict/obj_d1"), C);
    th_assert_err(mpb_obj_describe(C, "dict/obj_d1", &m, &mn), MPB_ENOOBJ, C, NULL, NULL);
    th_assert_err(mpb_obj_delete(C, "dict/obj_d1"), MPB_ENOOBJ, C, "obj_d1", NULL);
    assert_int_equal(th_objects_find(C, "dict", "obj_d1", NULL), 0);
    assert_int_equal(th_objects_find(C, "dict", "obj_d2", NULL), 1);
    /* the old handle names a dict that is gone: using it makes a new, empty one */
    assert_int_equal(dlen(d1), 0);
    expect_nokey(d1, S("a"));
    dset(d1, S("again"), I(1));
    assert_int_equal(dlen(d1), 1);
    /* a deleted name is free for another kind */
    th_assert_ok(mpb_obj_delete(C, "list/obj_l1"), C);
    mpb_list_close(&l);
    th_assert_ok(mpb_obj_delete(C, "dict/obj_d2"), C);
    mpb_dict_close(&d2);
    th_assert_ok(mpb_dict_open(C, "obj_l1", &d2), C);
    dset(d2, S("k"), I(1));
    th_assert_ok(mpb_obj_delete(C, "dict/obj_l1"), C);
    mpb_dict_close(&d2);
    mpb_dict_close(&d1);
}

static void test_kind_mismatch(void **state) {
    (void)state;
    mpb_list_t *l;
    th_assert_ok(mpb_list_open(C, "kind_list", &l), C);
    th_assert_ok(mpb_list_append(l, S("x").p, S("x").n), C);
    mpb_dict_t *d = (mpb_dict_t *)0x1;
    th_assert_err(mpb_dict_open(C, "kind_list", &d), MPB_EKIND, C, "kind_list is a list",
                  "not a dict");
    assert_null(d);
    /* and every dict op on that name, sent raw */
    void *res = NULL;
    size_t rn;
    th_assert_err(mpb_call(C, MPB_OP_DICT_GET, "kind_list", RAW(0x91, 0x01).p, 2, 0, &res, &rn),
                  MPB_EKIND, C, "is a list", NULL);
    th_assert_err(
        mpb_call(C, MPB_OP_DICT_SET, "kind_list", RAW(0x92, 0x01, 0x01).p, 3, 0, &res, &rn),
        MPB_EKIND, C, "is a list", NULL);
    th_assert_err(mpb_call(C, MPB_OP_DICT_LEN, "kind_list", NULL, 0, 0, &res, &rn), MPB_EKIND, C,
                  NULL, NULL);
    /* a dict name opened as a list */
    mpb_dict_t *kd = dopen("kind_dict");
    mpb_list_t *kl = (mpb_list_t *)0x1;
    th_assert_err(mpb_list_open(C, "kind_dict", &kl), MPB_EKIND, C, "kind_dict is a dict",
                  "not a list");
    assert_null(kl);
    /* bad names */
    th_assert_err(mpb_dict_open(C, "has/slash", &d), MPB_EINVAL, C, NULL, NULL);
    th_assert_err(mpb_dict_open(C, "has space", &d), MPB_EINVAL, C, NULL, NULL);
    th_assert_err(mpb_dict_open(C, "", &d), MPB_EINVAL, C, NULL, NULL);
    char longname[300];
    memset(longname, 'n', 256);
    longname[256] = 0;
    th_assert_err(mpb_dict_open(C, longname, &d), MPB_EINVAL, C, NULL, NULL);
    longname[255] = 0;
    th_assert_ok(mpb_dict_open(C, longname, &d), C);
    assert_int_equal(th_objects_find(C, "dict", longname, NULL), 1);
    mpb_dict_close(&d);
    /* the list is untouched */
    uint64_t n;
    th_assert_ok(mpb_list_len(l, &n), C);
    assert_int_equal(n, 1);
    mpb_list_close(&l);
    mpb_dict_close(&kd);
}

/* Reading a dict that does not exist answers as if it were empty, and does not create it. */
static void test_read_does_not_create(void **state) {
    (void)state;
    void *res = NULL;
    size_t rn;
    th_assert_ok(mpb_call(C, MPB_OP_DICT_LEN, "ghost", NULL, 0, 0, &res, &rn), C);
    /* mpb_call's *result is the reply's bare value (mpb.h), not wrapped in an array. */
    th_assert_bytes(res, rn, "\x00", 1);
    mpb_free(res);
    th_assert_err(mpb_call(C, MPB_OP_DICT_GET, "ghost", RAW(0x91, 0xa1, 'k').p, 3, 0, &res, &rn),
                  MPB_ENOKEY, C, "\"k\"", "ghost");
    th_assert_ok(
        mpb_call(C, MPB_OP_DICT_GET, "ghost", RAW(0x92, 0xa1, 'k', 0x07).p, 4, 0, &res, &rn), C);
    th_assert_bytes(res, rn, "\x07", 1);
    mpb_free(res);
    th_assert_ok(mpb_call(C, MPB_OP_DICT_CONTAINS, "ghost", RAW(0x91, 0x01).p, 2, 0, &res, &rn), C);
    th_assert_bytes(res, rn, "\xc2", 1);
    mpb_free(res);
    th_assert_ok(
        mpb_call(C, MPB_OP_DICT_SCAN, "ghost", RAW(0x93, 0x02, 0x00, 0x07).p, 4, 0, &res, &rn), C);
    th_assert_bytes(res, rn, "\x92\x00\x90", 3); /* [0, []] */
    mpb_free(res);
    /* a copy of it makes an empty destination, but still not the source */
    th_assert_ok(mpb_call(C, MPB_OP_DICT_COPY, "ghost",
                          RAW(0x91, 0xa6, 'g', 'h', 'o', 's', 't', '2').p, 8, 0, &res, &rn),
                 C);
    mpb_free(res);
    uint64_t size = 99;
    assert_int_equal(th_objects_find(C, "dict", "ghost2", &size), 1);
    assert_int_equal(size, 0);
    assert_int_equal(th_objects_find(C, "dict", "ghost", NULL), 0);
    assert_int_equal(th_objects_find(C, "list", "ghost", NULL), 0);
    void *m;
    size_t mn;
    th_assert_err(mpb_obj_describe(C, "dict/ghost", &m, &mn), MPB_ENOOBJ, C, NULL, NULL);
    /* a read did not reserve the name: it can still become a list */
    mpb_list_t *l;
    th_assert_ok(mpb_list_open(C, "ghost", &l), C);
    assert_int_equal(th_objects_find(C, "list", "ghost", NULL), 1);
    mpb_list_close(&l);
    th_assert_ok(mpb_obj_delete(C, "list/ghost"), C);
    /* writes do create */
    th_assert_ok(mpb_call(C, MPB_OP_DICT_SET, "ghost3", RAW(0x92, 0x01, 0x02).p, 3, 0, &res, &rn),
                 C);
    mpb_free(res);
    assert_int_equal(th_objects_find(C, "dict", "ghost3", &size), 1);
    assert_int_equal(size, 1);
    /* wrong argument counts are refused before anything is created */
    th_assert_err(mpb_call(C, MPB_OP_DICT_SET, "ghost4", RAW(0x91, 0x01).p, 2, 0, &res, &rn),
                  MPB_EPROTO, C, NULL, NULL);
    assert_int_equal(th_objects_find(C, "dict", "ghost4", NULL), 0);
}

/* Arguments beyond an op's contract are refused, and a cursor past the end ends the scan. */
/* Values nest up to 32 deep, as keys do; the request's own array does not count against them. */
static void test_deep_values(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_deep");
    uint8_t v[40], k[40];
    for (size_t depth = 31; depth <= 33; depth++) {
        size_t n = 0;
        while (n + 1 < depth)
            v[n++] = 0x91; /* [[[...[]...]]]: depth arrays */
        v[n++] = 0x90;
        memcpy(k, v, n);
        int rc = mpb_dict_set(d, k, n, v, n);
        if (depth <= 32) {
            assert_int_equal(rc, 0);
            void *got;
            size_t gn;
            assert_int_equal(mpb_dict_get(d, k, n, &got, &gn), 0);
            assert_int_equal(gn, n);
            assert_memory_equal(got, v, n);
            mpb_free(got);
        } else {
            th_assert_err(rc, MPB_EINVAL, C, "well-formed", NULL);
        }
    }
    uint64_t len;
    assert_int_equal(mpb_dict_len(d, &len), 0);
    assert_int_equal(len, 2);
    mpb_dict_close(&d);
}

/* With values of more than half a frame allowed, a scan page stops before the pair that would
 * take it past half a frame (the old rule stopped only after it, and a 32 KB value followed by a
 * 48 KB one overflowed a 64 KB frame): every page arrives, every key once. */
static void test_scan_pages_of_big_values(void **state) {
    (void)state;
    static th_broker_t R;
    th_broker_start(&R, "--max-frame", "65536", "--max-value", "49152", "--max-key", "1024", NULL);
    mpb_client_t *c = th_connect(&R);
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "bigvals", &d), 0);
    static uint8_t v[48005];
    for (int i = 0; i < 4; i++) {
        size_t len = i % 2 ? 48000 : 32000; /* bin32 header, then the bytes */
        v[0] = 0xc6;
        v[1] = 0;
        v[2] = 0;
        v[3] = (uint8_t)(len >> 8);
        v[4] = (uint8_t)len;
        memset(v + 5, 'a' + i, len);
        uint8_t k = (uint8_t)i;
        assert_int_equal(mpb_dict_set(d, &k, 1, v, 5 + len), 0);
    }
    uint64_t cursor = 0;
    int pages = 0, seen = 0;
    do {
        void *page;
        size_t pl, n;
        assert_int_equal(mpb_dict_scan(d, MPB_SCAN_ITEMS, &cursor, 100, &page, &pl, &n), 0);
        assert_int_equal(n, 1);
        assert_true(pl < 65536);
        seen += (int)n;
        pages++;
        mpb_free(page);
    } while (cursor && pages < 10);
    assert_int_equal(seen, 4);
    mpb_list_t *l;
    assert_int_equal(mpb_list_open(c, "biglist", &l), 0);
    for (int i = 0; i < 4; i++) {
        size_t len = i % 2 ? 48000 : 32000;
        v[3] = (uint8_t)(len >> 8);
        v[4] = (uint8_t)len;
        assert_int_equal(mpb_list_append(l, v, 5 + len), 0);
    }
    void *items;
    size_t il, n;
    assert_int_equal(mpb_list_slice(l, 0, 4, 100, &items, &il, &n), 0);
    assert_int_equal(n, 1); /* 32000 alone: with the 48000 after it, it would pass half */
    mpb_free(items);
    assert_int_equal(mpb_list_slice(l, 1, 4, 100, &items, &il, &n), 0);
    assert_int_equal(n, 1);
    mpb_free(items);
    mpb_list_close(&l);
    mpb_dict_close(&d);
    mpb_close(&c);
    th_broker_stop_checked(&R);
}

static void test_bad_arguments(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_args");
    dset(d, I(1), I(10));
    void *res = NULL;
    size_t rn;
    /* too few */
    th_assert_err(mpb_call(C, MPB_OP_DICT_GET, "d_args", RAW(0x90).p, 1, 0, &res, &rn), MPB_EPROTO,
                  C, "dict.get", NULL);
    th_assert_err(mpb_call(C, MPB_OP_DICT_INCR, "d_args", RAW(0x91, 0x01).p, 2, 0, &res, &rn),
                  MPB_EPROTO, C, NULL, NULL);
    /* wrong types */
    th_assert_err(
        mpb_call(C, MPB_OP_DICT_INCR, "d_args", RAW(0x92, 0x01, 0xa1, 'x').p, 4, 0, &res, &rn),
        MPB_ETYPE, C, "increment", NULL);
    th_assert_err(
        mpb_call(C, MPB_OP_DICT_SCAN, "d_args", RAW(0x93, 0x00, 0xff, 0x07).p, 4, 0, &res, &rn),
        MPB_ETYPE, C, "cursor", NULL);
    th_assert_err(mpb_call(C, MPB_OP_DICT_COPY, "d_args", RAW(0x91, 0x01).p, 2, 0, &res, &rn),
                  MPB_ETYPE, C, "destination", NULL);
    /* a cursor no page ever gave: an empty last page */
    mv_t far = RAW(0x93, 0x00, 0xcf, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x07);
    th_assert_ok(mpb_call(C, MPB_OP_DICT_SCAN, "d_args", far.p, far.n, 0, &res, &rn), C);
    th_assert_bytes(res, rn, "\x92\x00\x90", 3);
    mpb_free(res);
    /* too many: dict.get KEY [DEFAULT] and dict.pop KEY [DEFAULT] take at most two */
    res = NULL;
    int rc = mpb_call(C, MPB_OP_DICT_GET, "d_args", RAW(0x93, 0x01, 0x02, 0x03).p, 4, 0, &res, &rn);
    if (rc == 0) mpb_free(res);
    th_assert_err(rc, MPB_EPROTO, C, "dict.get takes 1 or 2 arguments, got 3", NULL);
    res = NULL;
    rc = mpb_call(C, MPB_OP_DICT_GET, "d_args", RAW(0x94, 0x01, 0x02, 0x03, 0x04).p, 5, 0, &res,
                  &rn);
    if (rc == 0) mpb_free(res);
    th_assert_err(rc, MPB_EPROTO, C, "dict.get takes 1 or 2 arguments, got 4", NULL);
    /* the refused pop names a key that is there: it must stay */
    res = NULL;
    rc = mpb_call(C, MPB_OP_DICT_POP, "d_args", RAW(0x93, 0x01, 0x02, 0x03).p, 4, 0, &res, &rn);
    if (rc == 0) mpb_free(res);
    th_assert_err(rc, MPB_EPROTO, C, "dict.pop takes 1 or 2 arguments, got 3", NULL);
    res = NULL;
    rc = mpb_call(C, MPB_OP_DICT_POP, "d_args", RAW(0x93, 0x05, 0x02, 0x03).p, 4, 0, &res, &rn);
    if (rc == 0) mpb_free(res);
    th_assert_err(rc, MPB_EPROTO, C, "dict.pop takes 1 or 2 arguments, got 3", NULL);
    expect_get(d, I(1), I(10));
    assert_int_equal(dlen(d), 1);
    mpb_dict_close(&d);
}

/* ---- many processes ---- */

#define MP_PROCS 4
#define MP_KEYS  400
#define MP_EXTRA 40

/* What one process's keys hold at the end: mp_model() replays the same operations. */
typedef struct {
    bool present[MP_KEYS + MP_EXTRA];
    int64_t val[MP_KEYS + MP_EXTRA];
    uint64_t ord[MP_KEYS + MP_EXTRA];
    uint64_t next_ord;
} mp_model_t;

static void mp_key(int idx, int i, char *buf) {
    snprintf(buf, 32, "p%d_%d", idx, i);
}

static void model_set(mp_model_t *m, int i, int64_t v) {
    if (!m->present[i]) m->ord[i] = m->next_ord++;
    m->present[i] = true;
    m->val[i] = v;
}

/* Runs the mixed ops for process idx; with d NULL only updates the model. Returns 0 when
 * every answer from the broker matched the model. */
/* op (setdefault or pop) of the string key k with the integer default dflt: 0 when it answers
 * want, 1 when the call fails, 2 when it answers something else. */
static int with_default(int (*op)(mpb_dict_t *, const void *, size_t, const void *, size_t, void **,
                                  size_t *),
                        mpb_dict_t *d, const char *k, int64_t dflt, int64_t want) {
    size_t kn, dn;
    const uint8_t *kp = th_str(k, &kn), *dp = th_int(dflt, &dn);
    void *v;
    size_t vn;
    int64_t got;
    if (op(d, kp, kn, dp, dn, &v, &vn)) return 1;
    int bad = mpb_unpack_i64(v, vn, &got) || got != want;
    mpb_free(v);
    return bad ? 2 : 0;
}

static int mp_run(int idx, mpb_dict_t *d, mp_model_t *m) {
    char k[32];
    memset(m, 0, sizeof *m);
    for (int i = 0; i < MP_KEYS; i++) {
        mp_key(idx, i, k);
        int64_t r;
        model_set(m, i, i);
        if (d && mpb_dict_set_i64(d, k, i)) return 10;
        if (i % 5 == 0) {
            model_set(m, i, m->val[i] + 1000 + idx);
            if (d && (mpb_dict_incr_str(d, k, 1000 + idx, &r) || r != m->val[i])) return 11;
        }
        if (i % 7 == 0) {
            m->present[i] = false;
            if (d) {
                size_t kn;
                const uint8_t *kp = th_str(k, &kn);
                if (mpb_dict_del(d, kp, kn)) return 12;
            }
        }
        if (i % 11 == 0) { /* setdefault: re-adds a deleted key, else leaves it */
            if (!m->present[i]) model_set(m, i, -1);
            int wd = d ? with_default(mpb_dict_setdefault, d, k, -1, m->val[i]) : 0;
            if (wd) return 12 + wd;
        }
        if (i % 13 == 1 && i > 13) { /* pop an earlier key with a default */
            int j = i - 13;
            int64_t want = m->present[j] ? m->val[j] : -2;
            m->present[j] = false;
            if (d) {
                mp_key(idx, j, k);
                int wd = with_default(mpb_dict_pop, d, k, -2, want);
                if (wd) return 14 + wd;
            }
        }
        if (i % 50 == 49) { /* update ten extra keys at once */
            mpb__buf_t b = {0};
            mpb__w_map(&b, 10);
            for (int j = 0; j < 10; j++) {
                int e = MP_KEYS + (i / 50 * 10 + j) % MP_EXTRA;
                model_set(m, e, i * 100 + j);
                mp_key(idx, e, k);
                mpb__w_cstr(&b, k);
                mpb__w_int(&b, i * 100 + j);
            }
            int rc = d ? mpb_dict_update(d, b.p, b.len) : 0;
            mpb__buf_free(&b);
            if (rc) return 17;
        }
    }
    return 0;
}

static int mp_child(int idx, void *arg) {
    (void)arg;
    mpb_client_t *c = NULL;
    if (th_connect_opts(&B, NULL, &c)) return 1;
    mpb_dict_t *d;
    if (mpb_dict_open(c, "d_multi", &d)) return 2;
    static mp_model_t m;
    int rc = mp_run(idx, d, &m);
    if (rc) fprintf(stderr, "child %d: step failed (%d): %s\n", idx, rc, mpb_errmsg(c));
    mpb_dict_close(&d);
    mpb_close(&c);
    return rc;
}

static void test_four_processes_disjoint_keys(void **state) {
    (void)state;
    mpb_dict_t *d = dopen("d_multi");
    dset(d, S("shared"), I(0));
    assert_int_equal(th_spawn(MP_PROCS, mp_child, NULL, 60), 0);
    static mp_model_t m[MP_PROCS];
    uint64_t want_len = 1;
    for (int p = 0; p < MP_PROCS; p++) {
        assert_int_equal(mp_run(p, NULL, &m[p]), 0);
        for (int i = 0; i < MP_KEYS + MP_EXTRA; i++)
            want_len += m[p].present[i];
    }
    assert_int_equal(dlen(d), want_len);
    /* every key with its exact value, and each process's keys in the order it made them */
    uint64_t last_ord[MP_PROCS] = {0};
    int seen[MP_PROCS] = {0};
    mpb__buf_t out = {0};
    size_t n = scan_all(d, MPB_SCAN_ITEMS, 97, &out, NULL);
    assert_int_equal(n, want_len);
    mpb__rd_t r = {out.p, out.p + out.len};
    for (size_t i = 0; i < n; i++) {
        uint32_t two;
        const char *s;
        uint32_t sl;
        int64_t v;
        assert_int_equal(mpb__rd_array(&r, &two), 0);
        assert_int_equal(mpb__rd_str(&r, &s, &sl), 0);
        assert_int_equal(mpb__rd_int(&r, &v), 0);
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)sl, s);
        if (!strcmp(name, "shared")) {
            assert_int_equal(v, 0);
            continue;
        }
        int p, k;
        assert_int_equal(sscanf(name, "p%d_%d", &p, &k), 2);
        assert_true(p >= 0 && p < MP_PROCS && k >= 0 && k < MP_KEYS + MP_EXTRA);
        if (!m[p].present[k]) fail_msg("%s is present but was deleted", name);
        if (v != m[p].val[k]) fail_msg("%s = %" PRId64 ", want %" PRId64, name, v, m[p].val[k]);
        if (seen[p] && m[p].ord[k] <= last_ord[p]) fail_msg("%s out of order", name);
        last_ord[p] = m[p].ord[k];
        seen[p]++;
    }
    for (int p = 0; p < MP_PROCS; p++) {
        int want = 0;
        for (int i = 0; i < MP_KEYS + MP_EXTRA; i++)
            want += m[p].present[i];
        assert_int_equal(seen[p], want);
    }
    mpb__buf_free(&out);
    mpb_dict_close(&d);
}

/* ---- last: the broker survived all of the above ---- */

static void test_broker_still_alive(void **state) {
    (void)state;
    assert_true(th_broker_alive(&B));
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    th_assert_ok(mpb_dict_open(c, "d_scalars", &d), c);
    void *v;
    size_t vn;
    th_assert_ok(mpb_dict_get(d, S("name").p, S("name").n, &v, &vn), c);
    th_assert_bytes(v, vn, S("alice").p, S("alice").n);
    mpb_free(v);
    th_assert_ok(mpb_dict_set_i64(d, "alive", 1), c);
    int64_t x;
    th_assert_ok(mpb_dict_get_i64(d, "alive", &x), c);
    assert_int_equal(x, 1);
    mpb_dict_close(&d);
    th_assert_survived(&B, &c, &C);
}

int main(void) {
    th_suite(&B, &C, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get_scalars),
        cmocka_unit_test(test_set_get_nested),
        cmocka_unit_test(test_get_default_and_missing),
        cmocka_unit_test(test_set_overwrite_sizes),
        cmocka_unit_test(test_key_and_value_limits),
        cmocka_unit_test(test_del_contains_len),
        cmocka_unit_test(test_scan_small_pages),
        cmocka_unit_test(test_scan_while_mutating),
        cmocka_unit_test(test_scan_200k),
        cmocka_unit_test(test_scan_big_values_bounded),
        cmocka_unit_test(test_update_map_and_pairs),
        cmocka_unit_test(test_update_all_or_none),
        cmocka_unit_test(test_pop),
        cmocka_unit_test(test_popitem_lifo),
        cmocka_unit_test(test_setdefault),
        cmocka_unit_test(test_incr),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_canonical_keys),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_objects_list_describe_delete),
        cmocka_unit_test(test_kind_mismatch),
        cmocka_unit_test(test_read_does_not_create),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_deep_values),
        cmocka_unit_test(test_scan_pages_of_big_values),
        cmocka_unit_test(test_four_processes_disjoint_keys),
        cmocka_unit_test(test_broker_still_alive),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
