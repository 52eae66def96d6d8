/* test_mpcheck.c - the validator that runs before anything decodes msgpack: lengths within the
 * bytes, bounded depth, no reserved byte, exact lengths, and no crash on random bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mpbproto.h"

#define D MPB__MAX_DEPTH

/* Checks v in a heap buffer of exactly n bytes, so that ASan sees any read past the end. */
static long check1_exact(const uint8_t *v, size_t n, int max_depth) {
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    if (n) memcpy(p, v, n);
    long l = mpb__mp_check1(p, n, max_depth);
    free(p);
    return l;
}

static void test_mpcheck_rejects_oversized_array(void **state) {
    (void)state;
    const uint8_t evil[] = {0xdd, 0xff, 0xff, 0xff, 0xff}; /* array32 header, no elements */
    assert_int_equal(mpb__mp_check(evil, sizeof evil, D), MPB_EPROTO);
    assert_int_equal(check1_exact(evil, sizeof evil, D), MPB_EPROTO);
    const uint8_t evil16[] = {0xdc, 0xff, 0xff, 0x01, 0x02};
    assert_int_equal(check1_exact(evil16, sizeof evil16, D), MPB_EPROTO);
    /* a count one more than the elements present */
    const uint8_t short3[] = {0x93, 0x01, 0x02};
    assert_int_equal(check1_exact(short3, sizeof short3, D), MPB_EPROTO);
    const uint8_t short32[] = {0xdd, 0x00, 0x00, 0x00, 0x03, 0x01, 0x02};
    assert_int_equal(check1_exact(short32, sizeof short32, D), MPB_EPROTO);
    const uint8_t ok32[] = {0xdd, 0x00, 0x00, 0x00, 0x02, 0x01, 0x02};
    assert_int_equal(check1_exact(ok32, sizeof ok32, D), 7);
}

static void test_mpcheck_rejects_oversized_map(void **state) {
    (void)state;
    const uint8_t evil[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(mpb__mp_check(evil, sizeof evil, D), MPB_EPROTO);
    assert_int_equal(check1_exact(evil, sizeof evil, D), MPB_EPROTO);
    /* 0x80000000 pairs: the item count (2^32) does not fit in 32 bits */
    const uint8_t evil2[] = {0xdf, 0x80, 0x00, 0x00, 0x00, 0x01, 0x02};
    assert_int_equal(check1_exact(evil2, sizeof evil2, D), MPB_EPROTO);
    const uint8_t evil16[] = {0xde, 0xff, 0xff, 0x01, 0x02};
    assert_int_equal(check1_exact(evil16, sizeof evil16, D), MPB_EPROTO);
    /* one pair needs two values: a key alone is not enough */
    const uint8_t half[] = {0x81, 0x01};
    assert_int_equal(check1_exact(half, sizeof half, D), MPB_EPROTO);
    const uint8_t half32[] = {0xdf, 0x00, 0x00, 0x00, 0x01, 0x01};
    assert_int_equal(check1_exact(half32, sizeof half32, D), MPB_EPROTO);
    const uint8_t ok[] = {0xdf, 0x00, 0x00, 0x00, 0x01, 0x01, 0xc0};
    assert_int_equal(check1_exact(ok, sizeof ok, D), 7);
}

static void test_mpcheck_rejects_oversized_str_bin_ext(void **state) {
    (void)state;
    static const struct {
        uint8_t v[12];
        size_t n;
    } bad[] = {
        {{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},                6 },
        {{0xdb, 0x00, 0x00, 0x00, 0x05, 'a', 'b', 'c', 'd'}, 9 },
        {{0xda, 0x00, 0x05, 'a', 'b', 'c', 'd'},             7 },
        {{0xd9, 0x05, 'a', 'b', 'c', 'd'},                   6 },
        {{0xa5, 'a', 'b', 'c', 'd'},                         5 },
        {{0xc6, 0xff, 0xff, 0xff, 0xff, 0x00},               6 },
        {{0xc6, 0x00, 0x00, 0x00, 0x05, 1, 2, 3, 4},         9 },
        {{0xc5, 0x00, 0x05, 1, 2, 3, 4},                     7 },
        {{0xc4, 0x05, 1, 2, 3, 4},                           6 },
        {{0xc7, 0x02, 0x01, 0xaa},                           4 }, /* ext8: type + 2 bytes, one missing */
        {{0xc8, 0x00, 0x02, 0x01, 0xaa},                     5 }, /* ext16 */
        {{0xc9, 0x00, 0x00, 0x00, 0x02, 0x01, 0xaa},         7 },
        {{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01},               6 },
        {{0xd4, 0x01},                                       2 }, /* fixext1: type, 1 byte */
        {{0xd8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},         12},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(check1_exact(bad[i].v, bad[i].n, D), MPB_EPROTO);
        assert_int_equal(mpb__mp_check(bad[i].v, bad[i].n, D), MPB_EPROTO);
    }
    const uint8_t ok[] = {0xdb, 0x00, 0x00, 0x00, 0x04, 'a', 'b', 'c', 'd'};
    assert_int_equal(check1_exact(ok, sizeof ok, D), 9);
}

/* One value of every kind, with its exact length; every proper prefix is truncated. */
static const struct {
    uint8_t v[24];
    long n;
} whole[] = {
    {{0x00},                                                              1 },
    {{0x7f},                                                              1 },
    {{0xe0},                                                              1 },
    {{0xff},                                                              1 },
    {{0xc0},                                                              1 },
    {{0xc2},                                                              1 },
    {{0xc3},                                                              1 },
    {{0xcc, 0xff},                                                        2 },
    {{0xcd, 0xff, 0xff},                                                  3 },
    {{0xce, 1, 2, 3, 4},                                                  5 },
    {{0xcf, 1, 2, 3, 4, 5, 6, 7, 8},                                      9 },
    {{0xd0, 0x80},                                                        2 },
    {{0xd1, 0x80, 0x00},                                                  3 },
    {{0xd2, 0x80, 0, 0, 0},                                               5 },
    {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0},                                   9 },
    {{0xca, 0x3f, 0xc0, 0, 0},                                            5 },
    {{0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0},                                9 },
    {{0xa0},                                                              1 },
    {{0xa3, 'a', 'b', 'c'},                                               4 },
    {{0xd9, 0x03, 'a', 'b', 'c'},                                         5 },
    {{0xda, 0x00, 0x03, 'a', 'b', 'c'},                                   6 },
    {{0xdb, 0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c'},                       8 },
    {{0xc4, 0x00},                                                        2 },
    {{0xc4, 0x03, 1, 2, 3},                                               5 },
    {{0xc5, 0x00, 0x03, 1, 2, 3},                                         6 },
    {{0xc6, 0x00, 0x00, 0x00, 0x03, 1, 2, 3},                             8 },
    {{0xd4, 0x01, 0xaa},                                                  3 },
    {{0xd5, 0x01, 0xaa, 0xbb},                                            4 },
    {{0xd6, 0x01, 1, 2, 3, 4},                                            6 },
    {{0xd7, 0x01, 1, 2, 3, 4, 5, 6, 7, 8},                                10},
    {{0xd8, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, 18},
    {{0xc7, 0x00, 0x01},                                                  3 },
    {{0xc7, 0x03, 0x01, 1, 2, 3},                                         6 },
    {{0xc8, 0x00, 0x03, 0x01, 1, 2, 3},                                   7 },
    {{0xc9, 0x00, 0x00, 0x00, 0x03, 0x01, 1, 2, 3},                       9 },
    {{0x90},                                                              1 },
    {{0x93, 0x01, 0xc0, 0xa1, 'x'},                                       5 },
    {{0xdc, 0x00, 0x02, 0xcc, 0xff, 0xc3},                                6 },
    {{0xdd, 0x00, 0x00, 0x00, 0x01, 0x90},                                6 },
    {{0x80},                                                              1 },
    {{0x82, 0x01, 0x02, 0xa1, 'k', 0x91, 0x03},                           7 },
    {{0xde, 0x00, 0x01, 0x01, 0xc0},                                      5 },
    {{0xdf, 0x00, 0x00, 0x00, 0x01, 0xa1, 'k', 0x80},                     8 },
};

static void test_mpcheck_exact_lengths(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        long n = whole[i].n;
        assert_int_equal(check1_exact(whole[i].v, (size_t)n, D), n);
        assert_int_equal(mpb__mp_check(whole[i].v, (size_t)n, D), 0);
        /* trailing bytes are not part of the value */
        uint8_t more[32];
        memcpy(more, whole[i].v, (size_t)n);
        memset(more + n, 0xc1, sizeof more - (size_t)n);
        assert_int_equal(mpb__mp_check1(more, sizeof more, D), n);
        assert_int_equal(mpb__mp_check(more, sizeof more, D), MPB_EPROTO);
    }
}

static void test_mpcheck_rejects_truncated(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        for (long k = 0; k < whole[i].n; k++) {
            assert_int_equal(check1_exact(whole[i].v, (size_t)k, D), MPB_EPROTO);
            if (k) assert_int_equal(mpb__mp_check(whole[i].v, (size_t)k, D), MPB_EPROTO);
        }
    }
}

static void test_mpcheck_rejects_reserved(void **state) {
    (void)state;
    const uint8_t c1[] = {0xc1};
    assert_int_equal(check1_exact(c1, 1, D), MPB_EPROTO);
    const uint8_t in_array[] = {0x92, 0x01, 0xc1};
    assert_int_equal(check1_exact(in_array, sizeof in_array, D), MPB_EPROTO);
    const uint8_t in_map[] = {0x81, 0xc1, 0x01};
    assert_int_equal(check1_exact(in_map, sizeof in_map, D), MPB_EPROTO);
    const uint8_t after[] = {0x01, 0xc1};
    assert_int_equal(mpb__mp_check(after, sizeof after, D), MPB_EPROTO);
    assert_int_equal(mpb__mp_check1(after, sizeof after, D), 1);
}

/* levels nested containers: fixarrays (or fixmaps with the child as the value), the innermost
 * holding inner (an empty container or a scalar). */
static size_t nest(uint8_t *out, int levels, bool map, bool empty_inner) {
    size_t n = 0;
    for (int i = 0; i < levels - (empty_inner ? 1 : 0); i++) {
        if (map) {
            out[n++] = 0x81;
            out[n++] = 0x00; /* key */
        } else {
            out[n++] = 0x91;
        }
    }
    out[n++] = empty_inner ? (map ? 0x80 : 0x90) : 0x2a;
    return n;
}

static void test_mpcheck_depth_limit(void **state) {
    (void)state;
    uint8_t buf[256];
    for (int map = 0; map <= 1; map++) {
        for (int empty = 0; empty <= 1; empty++) {
            /* depth <= 32 containers is accepted, 33 is not, empty innermost or not */
            size_t n = nest(buf, D, map, empty);
            assert_int_equal(check1_exact(buf, n, D), (long)n);
            assert_int_equal(mpb__mp_check(buf, n, D), 0);
            n = nest(buf, D + 1, map, empty);
            assert_int_equal(check1_exact(buf, n, D), MPB_EPROTO);
            assert_int_equal(mpb__mp_check(buf, n, D), MPB_EPROTO);
            /* max_depth above the hard limit (a frame's depth) is the hard limit */
            n = nest(buf, MPB__FRAME_DEPTH, map, empty);
            assert_int_equal(check1_exact(buf, n, 1000), (long)n);
            n = nest(buf, MPB__FRAME_DEPTH + 1, map, empty);
            assert_int_equal(check1_exact(buf, n, 1000), MPB_EPROTO);
            /* a smaller max_depth is honoured the same way */
            n = nest(buf, 3, map, empty);
            assert_int_equal(check1_exact(buf, n, 3), (long)n);
            assert_int_equal(check1_exact(buf, n, 2), MPB_EPROTO);
        }
    }
    /* 33 nested fixarrays, exactly: 32 x 0x91 then 0x90 */
    memset(buf, 0x91, 32);
    buf[32] = 0x90;
    assert_int_equal(check1_exact(buf, 33, D), MPB_EPROTO);
    /* 32: 31 x 0x91 then 0x90 */
    buf[31] = 0x90;
    assert_int_equal(check1_exact(buf, 32, D), 32);
    /* max_depth 0: scalars only */
    const uint8_t one = 0x01, empty_arr = 0x90, empty_map = 0x80;
    assert_int_equal(check1_exact(&one, 1, 0), 1);
    assert_int_equal(check1_exact(&empty_arr, 1, 0), MPB_EPROTO);
    assert_int_equal(check1_exact(&empty_map, 1, 0), MPB_EPROTO);
    assert_int_equal(check1_exact(&empty_arr, 1, 1), 1);
    /* depth is nesting, not the number of containers side by side */
    uint8_t wide[1 + 15 * 2];
    wide[0] = 0x9f;
    for (int i = 0; i < 15; i++)
        wide[1 + 2 * i] = 0x91, wide[2 + 2 * i] = 0x90;
    assert_int_equal(check1_exact(wide, sizeof wide, 3), (long)sizeof wide);
    assert_int_equal(check1_exact(wide, sizeof wide, 2), MPB_EPROTO);
}

static void test_mpcheck_very_deep(void **state) {
    (void)state;
    size_t n = 1000000;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    memset(p, 0x91, n - 1);
    p[n - 1] = 0x01;
    assert_int_equal(mpb__mp_check1(p, n, D), MPB_EPROTO);
    memset(p, 0x81, n); /* maps as keys of maps */
    assert_int_equal(mpb__mp_check1(p, n, D), MPB_EPROTO);
    free(p);
}

static void test_mpcheck_accepts_nested(void **state) {
    (void)state;
    /* {"a": [1, -1, 2.5, nil, true, "xy", b"\x01", {}], "b": {"c": [[], [[]]]}, 7: false} */
    const uint8_t v[] = {0x83, 0xa1, 'a',  0x98, 0x01, 0xff, 0xcb, 0x40, 0x04, 0,    0,    0,
                         0,    0,    0,    0xc0, 0xc3, 0xa2, 'x',  'y',  0xc4, 0x01, 0x01, 0x80,
                         0xa1, 'b',  0x81, 0xa1, 'c',  0x92, 0x90, 0x91, 0x90, 0x07, 0xc2};
    assert_int_equal(check1_exact(v, sizeof v, D), (long)sizeof v);
    assert_int_equal(mpb__mp_check(v, sizeof v, D), 0);
    /* map, map, array, array, empty array: depth 5 */
    assert_int_equal(check1_exact(v, sizeof v, 5), (long)sizeof v);
    assert_int_equal(check1_exact(v, sizeof v, 4), MPB_EPROTO);
}

static void test_mpcheck_sequence(void **state) {
    (void)state;
    assert_int_equal(mpb__mp_check((const uint8_t *)"", 0, D), 0); /* zero values */
    const uint8_t seq[] = {0x01, 0xa1, 'a', 0x92, 0x01, 0x02, 0xc0, 0x80, 0xcd, 0x01, 0x00};
    assert_int_equal(mpb__mp_check(seq, sizeof seq, D), 0);
    /* walking it value by value gives the same boundaries */
    const long lens[] = {1, 2, 3, 1, 1, 3};
    size_t off = 0;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        long l = mpb__mp_check1(seq + off, sizeof seq - off, D);
        assert_int_equal(l, lens[i]);
        off += (size_t)l;
    }
    assert_int_equal(off, sizeof seq);
    /* every truncation of the last value fails the whole sequence */
    assert_int_equal(mpb__mp_check(seq, sizeof seq - 1, D), MPB_EPROTO);
    assert_int_equal(mpb__mp_check(seq, sizeof seq - 2, D), MPB_EPROTO);
    assert_int_equal(mpb__mp_check(seq, sizeof seq - 3, D), 0);
    assert_int_equal(mpb__mp_check1((const uint8_t *)"", 0, D), MPB_EPROTO);
    /* a deep value in the middle of a sequence */
    uint8_t deep[64];
    size_t n = nest(deep + 1, D + 1, false, false);
    deep[0] = 0x01;
    deep[n + 1] = 0x02;
    assert_int_equal(mpb__mp_check(deep, n + 2, D), MPB_EPROTO);
}

/* A small deterministic generator (xorshift64*), so a failure reproduces. */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545f4914f6cdd1dULL) >> 32);
}

/* Bytes that are headers or small lengths more often than chance would make them. */
static uint8_t rnd_byte(void) {
    static const uint8_t hot[] = {0x00, 0x01, 0x02, 0x03, 0x0f, 0x10, 0x7f, 0x80, 0x81, 0x82, 0x8f,
                                  0x90, 0x91, 0x92, 0x9f, 0xa0, 0xa1, 0xa2, 0xbf, 0xc0, 0xc1, 0xc2,
                                  0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd,
                                  0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8,
                                  0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};
    uint32_t r = rnd();
    return (r & 1) ? hot[(r >> 8) % sizeof hot] : (uint8_t)(r >> 8);
}

static void test_mpcheck_fuzz_random_bytes(void **state) {
    (void)state;
    enum { MAXLEN = 40, ITER = 200000 };
    uint8_t *mem = malloc(MAXLEN);
    assert_non_null(mem);
    long accepted = 0;
    for (int it = 0; it < ITER; it++) {
        size_t len = rnd() % (MAXLEN + 1);
        uint8_t *buf = mem + MAXLEN - len; /* flush with the end: ASan sees any overread */
        for (size_t i = 0; i < len; i++)
            buf[i] = rnd_byte();
        int depth = (int)(rnd() % 40);
        long l = mpb__mp_check1(buf, len, depth);
        if (l != MPB_EPROTO) {
            assert_true(l > 0 && (size_t)l <= len);
            accepted++;
            /* the accepted prefix is accepted alone, with the same length */
            assert_int_equal(mpb__mp_check1(buf, (size_t)l, depth), l);
            assert_int_equal(mpb__mp_check(buf, (size_t)l, depth), 0);
            /* and without its last byte it is truncated */
            assert_int_equal(mpb__mp_check1(buf, (size_t)l - 1, depth), MPB_EPROTO);
        }
        int rc = mpb__mp_check(buf, len, depth);
        assert_true(rc == 0 || rc == MPB_EPROTO);
        if (rc == 0) {
            size_t off = 0;
            while (off < len) {
                long k = mpb__mp_check1(buf + off, len - off, depth);
                assert_true(k > 0 && (size_t)k <= len - off);
                off += (size_t)k;
            }
        }
    }
    free(mem);
    assert_true(accepted > 1000); /* the generator does reach valid values */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpcheck_rejects_oversized_array),
        cmocka_unit_test(test_mpcheck_rejects_oversized_map),
        cmocka_unit_test(test_mpcheck_rejects_oversized_str_bin_ext),
        cmocka_unit_test(test_mpcheck_exact_lengths),
        cmocka_unit_test(test_mpcheck_rejects_truncated),
        cmocka_unit_test(test_mpcheck_rejects_reserved),
        cmocka_unit_test(test_mpcheck_depth_limit),
        cmocka_unit_test(test_mpcheck_very_deep),
        cmocka_unit_test(test_mpcheck_accepts_nested),
        cmocka_unit_test(test_mpcheck_sequence),
        cmocka_unit_test(test_mpcheck_fuzz_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
