/* test_codec.c - the msgpack writer and reader (round trips at every width boundary, exact
 * bytes, type errors, truncation, map lookup), canonical encoding and the Python-like order. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpbproto.h"

#define D MPB__MAX_DEPTH

/* ---- helpers ---- */

typedef struct {
    uint8_t b[96];
    size_t n;
} hex_t;

/* "d0 df" -> {0xd0, 0xdf}; spaces are ignored. */
static hex_t hx(const char *s) {
    hex_t h = {{0}, 0};
    while (*s) {
        if (*s == ' ') {
            s++;
            continue;
        }
        unsigned v;
        assert_int_equal(sscanf(s, "%2x", &v), 1);
        assert_true(h.n < sizeof h.b);
        h.b[h.n++] = (uint8_t)v;
        s += 2;
    }
    return h;
}

/* Asserts that b holds exactly the bytes of hex, and resets it. */
static void expect_bytes(mpb__buf_t *b, const char *hex) {
    hex_t h = hx(hex);
    assert_false(b->oom);
    assert_int_equal(b->len, h.n);
    assert_memory_equal(b->p, h.b, h.n);
    mpb__buf_reset(b);
}

static mpb__rd_t rd_of(const uint8_t *p, size_t n) {
    mpb__rd_t r = {p, p + n};
    return r;
}

/* Asserts that b starts with the bytes of hex and holds n more after them; those bytes. */
static hex_t expect_head(const mpb__buf_t *b, const char *hex, size_t n) {
    hex_t h = hx(hex);
    assert_int_equal(b->len, h.n + n);
    assert_memory_equal(b->p, h.b, h.n);
    return h;
}

/* The fixed-buffer unsigned encoder writes the bytes of h for v. */
static void expect_enc_uint(uint64_t v, const hex_t *h) {
    uint8_t t[9];
    assert_int_equal(mpb__enc_uint(t, v), h->n);
    assert_memory_equal(t, h->b, h->n);
}

/* b holds v and nothing more, read by the unsigned reader. */
static void expect_rd_uint(const mpb__buf_t *b, uint64_t v) {
    mpb__rd_t r = rd_of(b->p, b->len);
    uint64_t u;
    assert_int_equal(mpb__rd_uint(&r, &u), 0);
    assert_true(u == v);
    assert_false(mpb__rd_more(&r));
}

/* A str (bin false) or a bin, by its own reader. */
static int rd_blob(mpb__rd_t *r, bool bin, const void **p, uint32_t *n) {
    const char *s = NULL;
    const uint8_t *q = NULL;
    int rc = bin ? mpb__rd_bin(r, &q, n) : mpb__rd_str(r, &s, n);
    *p = bin ? (const void *)q : (const void *)s;
    return rc;
}

/* One str (bin false) or bin of the n bytes at p, whose header is hdr: the exact bytes, read
 * back whole, one byte short truncated, and refused by the other reader. Resets b. */
static void check_blob(mpb__buf_t *b, bool bin, const void *p, size_t n, const char *hdr) {
    if (bin)
        mpb__w_bin(b, p, n);
    else
        mpb__w_str(b, p, n);
    hex_t h = expect_head(b, hdr, n);
    mpb__rd_t r = rd_of(b->p, b->len);
    assert_int_equal(mpb__rd_type(&r), bin ? MPB__MT_BIN : MPB__MT_STR);
    const void *got;
    uint32_t gn;
    assert_int_equal(rd_blob(&r, bin, &got, &gn), 0);
    assert_int_equal(gn, n);
    if (!bin) assert_ptr_equal(got, b->p + h.n);
    if (n) assert_memory_equal(got, p, n);
    assert_false(mpb__rd_more(&r));
    if (!bin) assert_int_equal(mpb__mp_check1(b->p, b->len, D), (long)b->len);
    assert_true(mpb__canon_is(b->p, b->len));
    /* one byte short: truncated */
    r = rd_of(b->p, b->len - 1);
    assert_int_equal(rd_blob(&r, bin, &got, &gn), MPB_EPROTO);
    /* a str is not a bin, nor a bin a str */
    r = rd_of(b->p, b->len);
    assert_int_equal(rd_blob(&r, !bin, &got, &gn), MPB_ETYPE);
    assert_ptr_equal(r.p, b->p);
    mpb__buf_reset(b);
}

/* An array (map false) or a map header, by its own reader. */
static int rd_header(mpb__rd_t *r, bool map, uint32_t *n) {
    return map ? mpb__rd_map(r, n) : mpb__rd_array(r, n);
}

/* An array (map false) or map header of n elements, whose bytes are hex: exact, read back,
 * refused by the other reader, and truncated wherever it is cut. Resets b. */
static void check_header(mpb__buf_t *b, bool map, uint32_t n, const char *hex) {
    uint32_t got = 0;
    if (map)
        mpb__w_map(b, n);
    else
        mpb__w_array(b, n);
    expect_head(b, hex, 0);
    mpb__rd_t r = rd_of(b->p, b->len);
    assert_int_equal(mpb__rd_type(&r), map ? MPB__MT_MAP : MPB__MT_ARRAY);
    assert_int_equal(rd_header(&r, !map, &got), MPB_ETYPE);
    assert_ptr_equal(r.p, b->p);
    assert_int_equal(rd_header(&r, map, &got), 0);
    assert_int_equal(got, n);
    assert_false(mpb__rd_more(&r));
    for (size_t k = 1; k < b->len; k++) { /* a cut header is truncated */
        r = rd_of(b->p, k);
        assert_int_equal(rd_header(&r, map, &got), MPB_EPROTO);
    }
    mpb__buf_reset(b);
}

/* ---- writer: exact bytes and round trips ---- */

static const struct {
    int64_t v;
    const char *hex;
} ints[] = {
    {0,                      "00"                        },
    {1,                      "01"                        },
    {127,                    "7f"                        },
    {128,                    "cc 80"                     },
    {255,                    "cc ff"                     },
    {256,                    "cd 01 00"                  },
    {65535,                  "cd ff ff"                  },
    {65536,                  "ce 00 01 00 00"            },
    {4294967295LL,           "ce ff ff ff ff"            },
    {4294967296LL,           "cf 00 00 00 01 00 00 00 00"},
    {INT64_MAX,              "cf 7f ff ff ff ff ff ff ff"},
    {-1,                     "ff"                        },
    {-32,                    "e0"                        },
    {-33,                    "d0 df"                     },
    {-128,                   "d0 80"                     },
    {-129,                   "d1 ff 7f"                  },
    {-32768,                 "d1 80 00"                  },
    {-32769,                 "d2 ff ff 7f ff"            },
    {INT32_MIN,              "d2 80 00 00 00"            },
    {(int64_t)INT32_MIN - 1, "d3 ff ff ff ff 7f ff ff ff"},
    {INT64_MIN + 1,          "d3 80 00 00 00 00 00 00 01"},
    {INT64_MIN,              "d3 80 00 00 00 00 00 00 00"},
};

static void test_codec_int_roundtrip(void **state) {
    (void)state;
    mpb__buf_t b = {0};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v = ints[i].v;
        mpb__w_int(&b, v);
        hex_t h = expect_head(&b, ints[i].hex, 0);
        /* the fixed-buffer encoder agrees */
        uint8_t t[9];
        assert_int_equal(mpb__enc_int(t, v), h.n);
        assert_memory_equal(t, h.b, h.n);
        if (v >= 0) expect_enc_uint((uint64_t)v, &h);
        /* read back by every reader that takes an integer */
        mpb__rd_t r = rd_of(b.p, b.len);
        assert_int_equal(mpb__rd_type(&r), MPB__MT_INT);
        int64_t got;
        assert_int_equal(mpb__rd_int(&r, &got), 0);
        assert_true(got == v);
        assert_false(mpb__rd_more(&r));
        if (v >= 0) {
            expect_rd_uint(&b, (uint64_t)v);
        } else {
            r = rd_of(b.p, b.len);
            uint64_t u;
            assert_int_equal(mpb__rd_uint(&r, &u), MPB_ETYPE);
            assert_ptr_equal(r.p, b.p);
        }
        r = rd_of(b.p, b.len);
        double d;
        assert_int_equal(mpb__rd_double(&r, &d), 0);
        assert_true(d == (double)v);
        assert_false(mpb__rd_more(&r));
        assert_int_equal(mpb__mp_check1(b.p, b.len, D), (long)b.len);
        assert_true(mpb__canon_is(b.p, b.len));
        /* every truncation is EPROTO */
        for (size_t k = 0; k < b.len; k++) {
            r = rd_of(b.p, k);
            assert_int_equal(mpb__rd_int(&r, &got), MPB_EPROTO);
            r = rd_of(b.p, k);
            assert_int_equal(mpb__rd_double(&r, &d), MPB_EPROTO);
        }
        mpb__buf_reset(&b);
    }
    mpb__buf_free(&b);
}

static void test_codec_uint_roundtrip(void **state) {
    (void)state;
    static const struct {
        uint64_t v;
        const char *hex;
    } us[] = {
        {0,                       "00"                        },
        {127,                     "7f"                        },
        {128,                     "cc 80"                     },
        {255,                     "cc ff"                     },
        {256,                     "cd 01 00"                  },
        {65535,                   "cd ff ff"                  },
        {65536,                   "ce 00 01 00 00"            },
        {4294967295ULL,           "ce ff ff ff ff"            },
        {4294967296ULL,           "cf 00 00 00 01 00 00 00 00"},
        {(uint64_t)INT64_MAX,     "cf 7f ff ff ff ff ff ff ff"},
        {(uint64_t)INT64_MAX + 1, "cf 80 00 00 00 00 00 00 00"},
        {UINT64_MAX,              "cf ff ff ff ff ff ff ff ff"},
    };
    mpb__buf_t b = {0};
    for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
        uint64_t v = us[i].v;
        mpb__w_uint(&b, v);
        hex_t h = expect_head(&b, us[i].hex, 0);
        expect_enc_uint(v, &h);
        expect_rd_uint(&b, v);
        mpb__rd_t r = rd_of(b.p, b.len);
        int64_t s;
        if (v <= (uint64_t)INT64_MAX) {
            assert_int_equal(mpb__rd_int(&r, &s), 0);
            assert_true((uint64_t)s == v);
        } else {
            /* too big for int64: a type error that leaves the reader where it was */
            assert_int_equal(mpb__rd_int(&r, &s), MPB_ETYPE);
            assert_ptr_equal(r.p, b.p);
            assert_ptr_equal(r.end, b.p + b.len);
        }
        r = rd_of(b.p, b.len);
        double d;
        assert_int_equal(mpb__rd_double(&r, &d), 0);
        assert_true(d == (double)v);
        assert_true(mpb__canon_is(b.p, b.len));
        mpb__buf_reset(&b);
    }
    mpb__buf_free(&b);
}

/* Integers encoded wider than needed, and positive values in signed encodings, read back. */
static void test_codec_reads_any_int_encoding(void **state) {
    (void)state;
    static const struct {
        const char *hex;
        int64_t v;
    } cases[] = {
        {"cc 01",                      1         },
        {"cd 00 01",                   1         },
        {"ce 00 00 00 01",             1         },
        {"cf 00 00 00 00 00 00 00 01", 1         },
        {"d0 01",                      1         },
        {"d1 00 01",                   1         },
        {"d2 00 00 00 01",             1         },
        {"d3 00 00 00 00 00 00 00 01", 1         },
        {"d0 ff",                      -1        },
        {"d1 ff ff",                   -1        },
        {"d2 ff ff ff ff",             -1        },
        {"d3 ff ff ff ff ff ff ff ff", -1        },
        {"d0 7f",                      127       },
        {"d1 7f ff",                   32767     },
        {"d2 7f ff ff ff",             2147483647},
        {"d3 7f ff ff ff ff ff ff ff", INT64_MAX },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hex_t h = hx(cases[i].hex);
        mpb__rd_t r = rd_of(h.b, h.n);
        int64_t v;
        assert_int_equal(mpb__rd_int(&r, &v), 0);
        assert_true(v == cases[i].v);
        assert_ptr_equal(r.p, h.b + h.n);
        r = rd_of(h.b, h.n);
        uint64_t u;
        if (cases[i].v >= 0) {
            assert_int_equal(mpb__rd_uint(&r, &u), 0);
            assert_true(u == (uint64_t)cases[i].v);
        } else {
            assert_int_equal(mpb__rd_uint(&r, &u), MPB_ETYPE);
            assert_ptr_equal(r.p, h.b);
        }
    }
}

static void test_codec_nil_bool(void **state) {
    (void)state;
    mpb__buf_t b = {0};
    mpb__w_nil(&b);
    mpb__w_bool(&b, true);
    mpb__w_bool(&b, false);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.p, "\xc0\xc3\xc2", 3);
    mpb__rd_t r = rd_of(b.p, b.len);
    bool v = false;
    assert_int_equal(mpb__rd_type(&r), MPB__MT_NIL);
    assert_int_equal(mpb__rd_bool(&r, &v), MPB_ETYPE);
    assert_int_equal(mpb__rd_nil(&r), 0);
    assert_int_equal(mpb__rd_type(&r), MPB__MT_BOOL);
    assert_int_equal(mpb__rd_nil(&r), MPB_ETYPE);
    assert_int_equal(mpb__rd_bool(&r, &v), 0);
    assert_true(v);
    assert_int_equal(mpb__rd_bool(&r, &v), 0);
    assert_false(v);
    assert_false(mpb__rd_more(&r));
    assert_int_equal(mpb__rd_type(&r), MPB__MT_BAD);
    assert_int_equal(mpb__rd_nil(&r), MPB_EPROTO);
    assert_int_equal(mpb__rd_bool(&r, &v), MPB_EPROTO);
    mpb__buf_free(&b);
}

static void test_codec_double_roundtrip(void **state) {
    (void)state;
    const double vals[] = {0.0,
                           -0.0,
                           1.5,
                           -1.5,
                           3.141592653589793,
                           1e308,
                           -1e-308,
                           5e-324,
                           INFINITY,
                           -INFINITY,
                           9007199254740993.0,
                           1.0 / 3.0,
                           18446744073709551616.0};
    mpb__buf_t b = {0};
    mpb__w_double(&b, 1.5);
    expect_bytes(&b, "cb 3f f8 00 00 00 00 00 00");
    mpb__w_double(&b, -2.0);
    expect_bytes(&b, "cb c0 00 00 00 00 00 00 00");
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        mpb__w_double(&b, vals[i]);
        assert_int_equal(b.len, 9);
        assert_int_equal(b.p[0], 0xcb);
        mpb__rd_t r = rd_of(b.p, b.len);
        assert_int_equal(mpb__rd_type(&r), MPB__MT_FLOAT);
        double d;
        assert_int_equal(mpb__rd_double(&r, &d), 0);
        assert_memory_equal(&d, &vals[i], sizeof d); /* bit for bit, -0.0 included */
        assert_false(mpb__rd_more(&r));
        /* a float is not an integer */
        r = rd_of(b.p, b.len);
        int64_t v;
        assert_int_equal(mpb__rd_int(&r, &v), MPB_ETYPE);
        assert_ptr_equal(r.p, b.p);
        for (size_t k = 0; k < b.len; k++) {
            r = rd_of(b.p, k);
            assert_int_equal(mpb__rd_double(&r, &d), MPB_EPROTO);
        }
        mpb__buf_reset(&b);
    }
    mpb__w_double(&b, NAN);
    mpb__rd_t r = rd_of(b.p, b.len);
    double d = 0;
    assert_int_equal(mpb__rd_double(&r, &d), 0);
    assert_true(isnan(d));
    /* float32 */
    hex_t h = hx("ca 3f c0 00 00");
    r = rd_of(h.b, h.n);
    assert_int_equal(mpb__rd_double(&r, &d), 0);
    assert_true(d == 1.5);
    assert_ptr_equal(r.p, h.b + 5);
    for (size_t k = 0; k < h.n; k++) {
        r = rd_of(h.b, k);
        assert_int_equal(mpb__rd_double(&r, &d), MPB_EPROTO);
    }
    mpb__buf_free(&b);
}

static void test_codec_str_roundtrip(void **state) {
    (void)state;
    static const struct {
        size_t n;
        const char *hdr;
    } cases[] = {
        {0,     "a0"            },
        {1,     "a1"            },
        {31,    "bf"            },
        {32,    "d9 20"         },
        {255,   "d9 ff"         },
        {256,   "da 01 00"      },
        {65535, "da ff ff"      },
        {65536, "db 00 01 00 00"},
        {70000, "db 00 01 11 70"},
    };
    char *s = malloc(70000);
    assert_non_null(s);
    for (size_t i = 0; i < 70000; i++)
        s[i] = (char)('a' + i % 26);
    mpb__buf_t b = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_blob(&b, false, s, cases[i].n, cases[i].hdr);
    mpb__w_cstr(&b, "hello");
    expect_bytes(&b, "a5 68 65 6c 6c 6f");
    mpb__w_cstr(&b, "");
    expect_bytes(&b, "a0");
    mpb__buf_free(&b);
    free(s);
}

static void test_codec_bin_roundtrip(void **state) {
    (void)state;
    static const struct {
        size_t n;
        const char *hdr;
    } cases[] = {
        {0,     "c4 00"         },
        {1,     "c4 01"         },
        {31,    "c4 1f"         },
        {32,    "c4 20"         },
        {255,   "c4 ff"         },
        {256,   "c5 01 00"      },
        {65535, "c5 ff ff"      },
        {65536, "c6 00 01 00 00"},
    };
    uint8_t *p = malloc(65536);
    assert_non_null(p);
    for (size_t i = 0; i < 65536; i++)
        p[i] = (uint8_t)(i * 7);
    mpb__buf_t b = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_blob(&b, true, p, cases[i].n, cases[i].hdr);
    mpb__buf_free(&b);
    free(p);
}

static void test_codec_array_map_headers(void **state) {
    (void)state;
    static const struct {
        uint32_t n;
        const char *arr, *map;
    } cases[] = {
        {0,          "90",             "80"            },
        {1,          "91",             "81"            },
        {15,         "9f",             "8f"            },
        {16,         "dc 00 10",       "de 00 10"      },
        {65535,      "dc ff ff",       "de ff ff"      },
        {65536,      "dd 00 01 00 00", "df 00 01 00 00"},
        {UINT32_MAX, "dd ff ff ff ff", "df ff ff ff ff"},
    };
    mpb__buf_t b = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_header(&b, false, cases[i].n, cases[i].arr);
        check_header(&b, true, cases[i].n, cases[i].map);
    }
    mpb__buf_free(&b);
}

/* Whole containers of 15, 16, 65535 and 65536 elements, written and read element by element. */
static void test_codec_big_containers(void **state) {
    (void)state;
    const uint32_t sizes[] = {15, 16, 65535, 65536};
    mpb__buf_t b = {0};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint32_t n = sizes[i];
        mpb__w_array(&b, n);
        for (uint32_t j = 0; j < n; j++)
            mpb__w_uint(&b, j);
        mpb__w_map(&b, n);
        for (uint32_t j = 0; j < n; j++) {
            mpb__w_uint(&b, j);
            mpb__w_bool(&b, j & 1);
        }
        assert_false(b.oom);
        assert_int_equal(mpb__mp_check(b.p, b.len, D), 0);
        long l = mpb__mp_check1(b.p, b.len, D);
        assert_true(l > 0 && (size_t)l < b.len);
        assert_int_equal(mpb__mp_check1(b.p + l, b.len - (size_t)l, D), (long)(b.len - (size_t)l));
        assert_true(mpb__canon_is(b.p, (size_t)l));
        mpb__rd_t r = rd_of(b.p, b.len);
        uint32_t got;
        assert_int_equal(mpb__rd_array(&r, &got), 0);
        assert_int_equal(got, n);
        for (uint32_t j = 0; j < n; j++) {
            uint64_t u;
            assert_int_equal(mpb__rd_uint(&r, &u), 0);
            assert_true(u == j);
        }
        assert_int_equal(mpb__rd_map(&r, &got), 0);
        assert_int_equal(got, n);
        for (uint32_t j = 0; j < n; j++) {
            uint64_t u;
            bool v;
            assert_int_equal(mpb__rd_uint(&r, &u), 0);
            assert_true(u == j);
            assert_int_equal(mpb__rd_bool(&r, &v), 0);
            assert_true(v == (bool)(j & 1));
        }
        assert_false(mpb__rd_more(&r));
        mpb__buf_reset(&b);
    }
    mpb__buf_free(&b);
}

static void test_codec_sequence_and_span(void **state) {
    (void)state;
    mpb__buf_t b = {0};
    /* nil, true, -5, "x", b"\x01\x02", [1, [2]], {"k": 1.5}, ext */
    mpb__w_nil(&b);
    mpb__w_bool(&b, true);
    mpb__w_int(&b, -5);
    mpb__w_cstr(&b, "x");
    mpb__w_bin(&b, "\x01\x02", 2);
    mpb__w_array(&b, 2);
    mpb__w_int(&b, 1);
    mpb__w_array(&b, 1);
    mpb__w_int(&b, 2);
    mpb__w_map(&b, 1);
    mpb__w_cstr(&b, "k");
    mpb__w_double(&b, 1.5);
    mpb__w_raw(&b, "\xd4\x01\xaa", 3);
    expect_bytes(&b, "c0 c3 fb a1 78 c4 02 01 02 92 01 91 02 81 a1 6b cb 3f f8 00 00 00 00 00 00 "
                     "d4 01 aa");
    hex_t h = hx("c0 c3 fb a1 78 c4 02 01 02 92 01 91 02 81 a1 6b cb 3f f8 00 00 00 00 00 00 "
                 "d4 01 aa");
    const int types[] = {MPB__MT_NIL, MPB__MT_BOOL,  MPB__MT_INT, MPB__MT_STR,
                         MPB__MT_BIN, MPB__MT_ARRAY, MPB__MT_MAP, MPB__MT_EXT};
    const size_t lens[] = {1, 1, 1, 2, 4, 4, 12, 3};
    mpb__rd_t r = rd_of(h.b, h.n);
    for (size_t i = 0; i < 8; i++) {
        assert_true(mpb__rd_more(&r));
        assert_int_equal(mpb__rd_type(&r), types[i]);
        const uint8_t *v, *at = r.p;
        size_t n;
        assert_int_equal(mpb__rd_span(&r, &v, &n), 0);
        assert_ptr_equal(v, at);
        assert_int_equal(n, lens[i]);
        assert_ptr_equal(r.p, at + n);
    }
    assert_false(mpb__rd_more(&r));
    assert_int_equal(mpb__rd_type(&r), MPB__MT_BAD);
    const uint8_t *v;
    size_t n;
    assert_int_equal(mpb__rd_span(&r, &v, &n), MPB_EPROTO);
    /* a span over a truncated or invalid value fails and does not move */
    r = rd_of(h.b + 9, 6); /* [1, [2]] ... cut */
    assert_int_equal(mpb__rd_span(&r, &v, &n), 0);
    r = rd_of(h.b + 9, 3);
    assert_int_equal(mpb__rd_span(&r, &v, &n), MPB_EPROTO);
    assert_ptr_equal(r.p, h.b + 9);
    const uint8_t c1[] = {0xc1};
    r = rd_of(c1, 1);
    assert_int_equal(mpb__rd_type(&r), MPB__MT_BAD);
    assert_int_equal(mpb__rd_span(&r, &v, &n), MPB_EPROTO);
    mpb__buf_free(&b);
}

/* rd_type for every first byte. */
static void test_codec_rd_type_all_bytes(void **state) {
    (void)state;
    /* the type of each run of first bytes, by the last byte of the run */
    static const struct {
        unsigned last;
        int type;
    } first_byte[] = {
        {0x7f, MPB__MT_INT  },
        {0x8f, MPB__MT_MAP  },
        {0x9f, MPB__MT_ARRAY},
        {0xbf, MPB__MT_STR  },
        {0xc0, MPB__MT_NIL  },
        {0xc1, MPB__MT_BAD  },
        {0xc3, MPB__MT_BOOL },
        {0xc6, MPB__MT_BIN  },
        {0xc9, MPB__MT_EXT  },
        {0xcb, MPB__MT_FLOAT},
        {0xd3, MPB__MT_INT  },
        {0xd8, MPB__MT_EXT  },
        {0xdb, MPB__MT_STR  },
        {0xdd, MPB__MT_ARRAY},
        {0xdf, MPB__MT_MAP  },
        {0xff, MPB__MT_INT  },
    };
    for (unsigned c = 0; c < 256; c++) {
        uint8_t x = (uint8_t)c;
        mpb__rd_t r = rd_of(&x, 1);
        size_t k = 0;
        while (c > first_byte[k].last)
            k++;
        int want = first_byte[k].type;
        assert_int_equal(mpb__rd_type(&r), want);
    }
}

/* Every reader on every type it does not take: MPB_ETYPE, reader unchanged. */
static void test_codec_type_errors_leave_reader(void **state) {
    (void)state;
    static const struct {
        const char *hex;
        unsigned ok; /* bit i: reader i accepts it */
    } vals[] = {
  /* readers: 0 nil, 1 bool, 2 int, 3 uint, 4 double, 5 str, 6 bin, 7 array, 8 map */
        {"c0",                         1u << 0                    },
        {"c3",                         1u << 1                    },
        {"c2",                         1u << 1                    },
        {"05",                         1u << 2 | 1u << 3 | 1u << 4},
        {"cd 01 00",                   1u << 2 | 1u << 3 | 1u << 4},
        {"ff",                         1u << 2 | 1u << 4          },
        {"d3 80 00 00 00 00 00 00 00", 1u << 2 | 1u << 4          },
        {"cf ff ff ff ff ff ff ff ff", 1u << 3 | 1u << 4          },
        {"cb 3f f8 00 00 00 00 00 00", 1u << 4                    },
        {"ca 3f c0 00 00",             1u << 4                    },
        {"a1 61",                      1u << 5                    },
        {"d9 01 61",                   1u << 5                    },
        {"c4 01 00",                   1u << 6                    },
        {"91 01",                      1u << 7                    },
        {"dc 00 01 01",                1u << 7                    },
        {"81 01 02",                   1u << 8                    },
        {"de 00 01 01 02",             1u << 8                    },
        {"d4 01 00",                   0                          },
        {"c7 01 01 00",                0                          },
        {"c1",                         0                          },
    };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        hex_t h = hx(vals[i].hex);
        for (int k = 0; k < 9; k++) {
            mpb__rd_t r = rd_of(h.b, h.n);
            bool bv;
            int64_t iv;
            uint64_t uv;
            double dv;
            const char *sv;
            const uint8_t *bp;
            uint32_t n;
            int rc;
            switch (k) {
            case 0: rc = mpb__rd_nil(&r); break;
            case 1: rc = mpb__rd_bool(&r, &bv); break;
            case 2: rc = mpb__rd_int(&r, &iv); break;
            case 3: rc = mpb__rd_uint(&r, &uv); break;
            case 4: rc = mpb__rd_double(&r, &dv); break;
            case 5: rc = mpb__rd_str(&r, &sv, &n); break;
            case 6: rc = mpb__rd_bin(&r, &bp, &n); break;
            case 7: rc = mpb__rd_array(&r, &n); break;
            default: rc = mpb__rd_map(&r, &n); break;
            }
            if (vals[i].ok & (1u << k)) {
                assert_int_equal(rc, 0);
                assert_true(r.p > h.b);
            } else {
                if (rc != MPB_ETYPE)
                    print_error("value %s, reader %d: rc %d\n", vals[i].hex, k, rc);
                assert_int_equal(rc, MPB_ETYPE);
                assert_ptr_equal(r.p, h.b);
                assert_ptr_equal(r.end, h.b + h.n);
            }
        }
    }
}

static void test_codec_truncated(void **state) {
    (void)state;
    static const char *const cut[] = {
        "cc", "cd 01", "ce 00 00 00", "cf 00 00 00 00 00 00 00",
        "d0", "d1 ff", "d2 ff ff ff", "d3 ff ff ff ff ff ff ff",
    };
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        hex_t h = hx(cut[i]);
        mpb__rd_t r = rd_of(h.b, h.n);
        int64_t v;
        uint64_t u;
        double d;
        assert_int_equal(mpb__rd_int(&r, &v), MPB_EPROTO);
        r = rd_of(h.b, h.n);
        assert_int_equal(mpb__rd_uint(&r, &u), MPB_EPROTO);
        r = rd_of(h.b, h.n);
        assert_int_equal(mpb__rd_double(&r, &d), MPB_EPROTO);
    }
    mpb__rd_t r = rd_of(NULL, 0);
    const char *s;
    const uint8_t *p;
    uint32_t n;
    int64_t v;
    uint64_t u;
    double d;
    bool bv;
    assert_int_equal(mpb__rd_nil(&r), MPB_EPROTO);
    assert_int_equal(mpb__rd_bool(&r, &bv), MPB_EPROTO);
    assert_int_equal(mpb__rd_int(&r, &v), MPB_EPROTO);
    assert_int_equal(mpb__rd_uint(&r, &u), MPB_EPROTO);
    assert_int_equal(mpb__rd_double(&r, &d), MPB_EPROTO);
    assert_int_equal(mpb__rd_str(&r, &s, &n), MPB_EPROTO);
    assert_int_equal(mpb__rd_bin(&r, &p, &n), MPB_EPROTO);
    assert_int_equal(mpb__rd_array(&r, &n), MPB_EPROTO);
    assert_int_equal(mpb__rd_map(&r, &n), MPB_EPROTO);
    /* headers that claim more than is there */
    static const char *const strs[] = {"a3 61 62",
                                       "d9",
                                       "d9 03 61",
                                       "da 00",
                                       "da 00 03 61",
                                       "db 00 00 00",
                                       "db 00 00 00 03 61 62",
                                       "db ff ff ff ff 61"};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        hex_t h = hx(strs[i]);
        r = rd_of(h.b, h.n);
        assert_int_equal(mpb__rd_str(&r, &s, &n), MPB_EPROTO);
    }
    static const char *const bins[] = {"c4",          "c4 03 01 02", "c5 00",
                                       "c5 00 03 01", "c6 00 00 00", "c6 ff ff ff ff 00"};
    for (size_t i = 0; i < sizeof bins / sizeof bins[0]; i++) {
        hex_t h = hx(bins[i]);
        r = rd_of(h.b, h.n);
        assert_int_equal(mpb__rd_bin(&r, &p, &n), MPB_EPROTO);
    }
    hex_t h = hx("dc 00");
    r = rd_of(h.b, h.n);
    assert_int_equal(mpb__rd_array(&r, &n), MPB_EPROTO);
    h = hx("df 00 00 00");
    r = rd_of(h.b, h.n);
    assert_int_equal(mpb__rd_map(&r, &n), MPB_EPROTO);
}

static void test_codec_mapget(void **state) {
    (void)state;
    mpb__buf_t b = {0};
    /* {"a": 1, "bb": [1, 2], 5: "five", "c": {"d": "e"}, "": nil, "x": "a"} */
    mpb__w_map(&b, 6);
    mpb__w_cstr(&b, "a");
    mpb__w_int(&b, 1);
    mpb__w_cstr(&b, "bb");
    mpb__w_array(&b, 2);
    mpb__w_int(&b, 1);
    mpb__w_int(&b, 2);
    mpb__w_int(&b, 5);
    mpb__w_cstr(&b, "five");
    mpb__w_cstr(&b, "c");
    mpb__w_map(&b, 1);
    mpb__w_cstr(&b, "d");
    mpb__w_cstr(&b, "e");
    mpb__w_cstr(&b, "");
    mpb__w_nil(&b);
    mpb__w_cstr(&b, "x");
    mpb__w_cstr(&b, "a");
    mpb__w_int(&b, 99); /* a value after the map */
    const mpb__rd_t r = rd_of(b.p, b.len);
    mpb__rd_t v;
    int64_t i;
    uint32_t n;
    const char *s;
    assert_int_equal(mpb__rd_mapget(&r, "a", &v), 0);
    assert_int_equal(mpb__rd_int(&v, &i), 0);
    assert_true(i == 1);
    assert_int_equal(mpb__rd_mapget(&r, "bb", &v), 0);
    assert_int_equal(mpb__rd_array(&v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(mpb__rd_mapget(&r, "c", &v), 0);
    mpb__rd_t v2;
    assert_int_equal(mpb__rd_mapget(&v, "d", &v2), 0);
    assert_int_equal(mpb__rd_str(&v2, &s, &n), 0);
    assert_int_equal(n, 1);
    assert_memory_equal(s, "e", 1);
    assert_int_equal(mpb__rd_mapget(&v, "a", &v2), MPB_ENOKEY);
    assert_int_equal(mpb__rd_mapget(&r, "", &v), 0);
    assert_int_equal(mpb__rd_nil(&v), 0);
    assert_int_equal(mpb__rd_mapget(&r, "x", &v), 0);
    assert_int_equal(mpb__rd_str(&v, &s, &n), 0);
    assert_memory_equal(s, "a", 1);
    /* after the last value of the map, the reader goes on to what follows it */
    assert_int_equal(mpb__rd_int(&v, &i), 0);
    assert_true(i == 99);
    /* absent: not a prefix, not a longer key, not a value, not an int key, not case-folded */
    const char *absent[] = {"b", "bbb", "A", "five", "e", "d", "5", "xx"};
    for (size_t k = 0; k < sizeof absent / sizeof absent[0]; k++)
        assert_int_equal(mpb__rd_mapget(&r, absent[k], &v), MPB_ENOKEY);
    /* the map itself is not consumed */
    assert_ptr_equal(r.p, b.p);
    /* not a map */
    mpb__rd_t arr = rd_of((const uint8_t *)"\x91\xa1\x61", 3);
    assert_int_equal(mpb__rd_mapget(&arr, "a", &v), MPB_ETYPE);
    /* empty maps, fixmap and map16 alike */
    mpb__rd_t e = rd_of((const uint8_t *)"\x80", 1);
    assert_int_equal(mpb__rd_mapget(&e, "a", &v), MPB_ENOKEY);
    e = rd_of((const uint8_t *)"\xde\x00\x01\xd9\x01\x6b\x07", 7); /* {"k": 7}, long forms */
    assert_int_equal(mpb__rd_mapget(&e, "k", &v), 0);
    assert_int_equal(mpb__rd_int(&v, &i), 0);
    assert_true(i == 7);
    /* truncated maps do not read past the end (exact heap copies: ASan watches) */
    for (size_t k = 1; k < b.len - 1; k++) {
        uint8_t *cut = malloc(k);
        assert_non_null(cut);
        memcpy(cut, b.p, k);
        mpb__rd_t t = rd_of(cut, k);
        int rc = mpb__rd_mapget(&t, "x", &v);
        assert_true(rc == MPB_EPROTO || rc == MPB_ENOKEY || (rc == 0 && v.end == cut + k));
        rc = mpb__rd_mapget(&t, "nope", &v);
        assert_true(rc == MPB_EPROTO || rc == MPB_ENOKEY);
        free(cut);
    }
    mpb__rd_t t = rd_of(b.p, 3); /* the header and "a", no value */
    assert_int_equal(mpb__rd_mapget(&t, "zz", &v), MPB_EPROTO);
    mpb__buf_free(&b);
}

static void test_codec_buf(void **state) {
    (void)state;
    mpb__buf_t b = {0};
    mpb__w_raw(&b, "", 0);
    assert_int_equal(b.len, 0);
    assert_false(b.oom);
    /* growth keeps the content */
    for (int i = 0; i < 10000; i++)
        mpb__w_raw(&b, &i, sizeof i);
    assert_int_equal(b.len, 10000 * sizeof(int));
    assert_true(b.cap >= b.len);
    for (int i = 0; i < 10000; i++) {
        int x;
        memcpy(&x, b.p + (size_t)i * sizeof x, sizeof x);
        assert_int_equal(x, i);
    }
    size_t cap = b.cap;
    mpb__buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap); /* reset keeps the storage */
    assert_int_equal(mpb__buf_reserve(&b, 10), 0);
    /* a size that cannot be had is ENOMEM and marks the buffer incomplete */
    assert_int_equal(mpb__buf_reserve(&b, SIZE_MAX), MPB_ENOMEM);
    assert_true(b.oom);
    mpb__buf_reset(&b);
    mpb__w_raw(&b, "x", 1);
    mpb__w_raw(&b, "never read", SIZE_MAX);
    assert_true(b.oom);
    assert_int_equal(b.len, 1);
    /* a str or bin longer than msgpack can say is refused whole (s is never read) */
    mpb__buf_reset(&b);
    mpb__w_nil(&b);
    mpb__w_str(&b, "short", (size_t)UINT32_MAX + 1);
    assert_true(b.oom);
    assert_int_equal(b.len, 1);
    mpb__buf_reset(&b);
    mpb__w_bin(&b, "short", (size_t)UINT32_MAX + 1);
    assert_true(b.oom);
    assert_int_equal(b.len, 0);
    mpb__buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    mpb__buf_free(&b); /* twice is harmless */
}

/* ---- canonical encoding ---- */

static void test_codec_canon_is(void **state) {
    (void)state;
    static const char *const yes[] = {
        "00",
        "7f",
        "cc 80",
        "cd 01 00",
        "ce 00 01 00 00",
        "cf 00 00 00 01 00 00 00 00",
        "cf ff ff ff ff ff ff ff ff",
        "ff",
        "e0",
        "d0 df",
        "d1 ff 7f",
        "d2 ff ff 7f ff",
        "d3 ff ff ff ff 7f ff ff ff",
        "c0",
        "c2",
        "c3",
        "cb 3f f8 00 00 00 00 00 00",
        "a0",
        "a1 61",
        "c4 00",
        "c4 01 61",
        "90",
        "91 01",
        "80",
        "81 a1 61 01",
        "92 91 90 80",
        "d4 01 aa",
        "c7 01 01 aa" /* ext is kept as is */,
    };
    static const char *const no[] = {
        "cc 01",
        "cc 7f",
        "cd 00 01",
        "cd 00 ff",
        "ce 00 00 00 01",
        "ce 00 00 ff ff",
        "cf 00 00 00 00 00 00 00 01",
        "cf 00 00 00 00 ff ff ff ff",
        "d0 01",
        "d0 ff",
        "d0 e0",
        "d1 00 05",
        "d1 ff ff",
        "d1 ff 80",
        "d2 00 00 00 01",
        "d2 ff ff ff ff",
        "d2 ff ff 80 00",
        "d3 00 00 00 00 00 00 00 01",
        "d3 ff ff ff ff ff ff ff ff",
        "d3 ff ff ff ff 80 00 00 00",
        /* positive values in signed encodings as long as the unsigned ones */
        "d1 01 00",
        "d1 7f ff",
        "d2 00 01 00 00",
        "d2 7f ff ff ff",
        "d3 00 00 00 01 00 00 00 00",
        "d3 7f ff ff ff ff ff ff ff",
        "ca 3f c0 00 00",
        "d9 01 61",
        "d9 00",
        "da 00 01 61",
        "db 00 00 00 01 61",
        "c5 00 01 61",
        "c6 00 00 00 01 61",
        "dc 00 01 01",
        "dd 00 00 00 01 01",
        "dc 00 00",
        "de 00 01 01 01",
        "df 00 00 00 01 01 01",
        "de 00 00",
        /* non-canonical inside containers */
        "91 cc 01",
        "92 01 d0 ff",
        "81 a1 61 d9 01 62",
        "81 d9 01 61 01",
        "91 91 ca 3f c0 00 00",
        "81 01 91 d1 01 00",
        /* not one value */
        "",
        "01 01",
        "a1 61 62",
        "a1",
        "c1",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        hex_t h = hx(yes[i]);
        if (!mpb__canon_is(h.b, h.n)) print_error("canonical: %s\n", yes[i]);
        assert_true(mpb__canon_is(h.b, h.n));
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        hex_t h = hx(no[i]);
        if (mpb__canon_is(h.b, h.n)) print_error("not canonical: %s\n", no[i]);
        assert_false(mpb__canon_is(h.b, h.n));
    }
}

static void test_codec_canon(void **state) {
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"cc 01",                            "01"                        },
        {"cd 00 01",                         "01"                        },
        {"cf 00 00 00 00 00 00 00 01",       "01"                        },
        {"d3 00 00 00 00 00 00 00 01",       "01"                        },
        {"d1 00 05",                         "05"                        },
        {"d0 ff",                            "ff"                        },
        {"d3 ff ff ff ff ff ff ff e0",       "e0"                        },
        {"d2 ff ff ff df",                   "d0 df"                     },
        {"d2 ff ff ff 7f",                   "d1 ff 7f"                  },
        {"d1 01 00",                         "cd 01 00"                  },
        {"d2 00 00 ff ff",                   "cd ff ff"                  },
        {"d3 00 00 00 01 00 00 00 00",       "cf 00 00 00 01 00 00 00 00"},
        {"d3 7f ff ff ff ff ff ff ff",       "cf 7f ff ff ff ff ff ff ff"},
        {"cf ff ff ff ff ff ff ff ff",       "cf ff ff ff ff ff ff ff ff"},
        {"d3 80 00 00 00 00 00 00 00",       "d3 80 00 00 00 00 00 00 00"},
        {"ca 3f c0 00 00",                   "cb 3f f8 00 00 00 00 00 00"},
        {"ca bf 80 00 00",                   "cb bf f0 00 00 00 00 00 00"},
        {"ca 7f 80 00 00",                   "cb 7f f0 00 00 00 00 00 00"}, /* +inf */
        {"cb 3f f8 00 00 00 00 00 00",       "cb 3f f8 00 00 00 00 00 00"},
        {"d9 01 61",                         "a1 61"                     },
        {"da 00 00",                         "a0"                        },
        {"db 00 00 00 02 61 62",             "a2 61 62"                  },
        {"c5 00 01 aa",                      "c4 01 aa"                  },
        {"c6 00 00 00 00",                   "c4 00"                     },
        {"dc 00 02 cc 01 d9 01 61",          "92 01 a1 61"               },
        {"dd 00 00 00 00",                   "90"                        },
        {"de 00 01 d9 01 6b dc 00 01 d0 05", "81 a1 6b 91 05"            },
        {"df 00 00 00 01 cc 07 de 00 00",    "81 07 80"                  },
        {"91 91 91 cd 00 01",                "91 91 91 01"               },
        {"c0",                               "c0"                        },
        {"c3",                               "c3"                        },
        {"d4 01 aa",                         "d4 01 aa"                  },
        {"c7 01 01 aa",                      "c7 01 01 aa"               },
        {"92 c7 01 01 aa cc 01",             "92 c7 01 01 aa 01"         },
    };
    mpb__buf_t out = {0}, again = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hex_t in = hx(cases[i].in), want = hx(cases[i].out);
        mpb__canon(in.b, in.n, &out);
        if (out.len != want.n || memcmp(out.p, want.b, want.n))
            print_error("canon(%s) != %s\n", cases[i].in, cases[i].out);
        assert_int_equal(out.len, want.n);
        assert_memory_equal(out.p, want.b, want.n);
        assert_true(mpb__canon_is(out.p, out.len));
        /* idempotent */
        mpb__canon(out.p, out.len, &again);
        assert_int_equal(again.len, out.len);
        assert_memory_equal(again.p, out.p, out.len);
        /* canonical exactly when unchanged */
        assert_int_equal(mpb__canon_is(in.b, in.n),
                         in.n == want.n && memcmp(in.b, want.b, in.n) == 0);
        mpb__buf_reset(&out);
        mpb__buf_reset(&again);
    }
    /* it appends */
    mpb__w_nil(&out);
    mpb__canon((const uint8_t *)"\xcc\x01", 2, &out);
    expect_bytes(&out, "c0 01");
    /* a 16-element array stays array16, its elements shrink */
    mpb__buf_t in = {0};
    mpb__w_raw(&in, "\xdc\x00\x10", 3);
    for (int i = 0; i < 16; i++)
        mpb__w_raw(&in, "\xcc\x01", 2);
    mpb__canon(in.p, in.len, &out);
    assert_int_equal(out.len, 3 + 16);
    assert_memory_equal(out.p, "\xdc\x00\x10", 3);
    for (int i = 0; i < 16; i++)
        assert_int_equal(out.p[3 + i], 0x01);
    mpb__buf_free(&in);
    mpb__buf_free(&out);
    mpb__buf_free(&again);
}

/* A random value, written twice: with randomly chosen (valid, often wider) encodings into
 * wide, and canonically with the writer into canon. */
static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint32_t rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545f4914f6cdd1dULL) >> 32);
}

static void put_hdr(mpb__buf_t *b, uint8_t tag, uint64_t v, int n) {
    uint8_t t[9];
    t[0] = tag;
    for (int i = 0; i < n; i++)
        t[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    mpb__w_raw(b, t, (size_t)n + 1);
}

static void gen_int(mpb__buf_t *wide, mpb__buf_t *canon) {
    static const int64_t edges[] = {0,
                                    1,
                                    31,
                                    32,
                                    127,
                                    128,
                                    255,
                                    256,
                                    32767,
                                    32768,
                                    65535,
                                    65536,
                                    -1,
                                    -32,
                                    -33,
                                    -128,
                                    -129,
                                    -32768,
                                    -32769,
                                    INT32_MAX,
                                    (int64_t)INT32_MAX + 1,
                                    INT32_MIN,
                                    (int64_t)INT32_MIN - 1,
                                    4294967295LL,
                                    4294967296LL,
                                    INT64_MAX,
                                    INT64_MIN};
    uint32_t k = rnd() % 4;
    if (k == 0) { /* beyond INT64_MAX */
        uint64_t u = (uint64_t)INT64_MAX + 1 + (rnd() % 3 == 0 ? UINT64_MAX / 2 : rnd());
        mpb__w_uint(canon, u);
        put_hdr(wide, 0xcf, u, 8);
        return;
    }
    int64_t v = k == 1 ? edges[rnd() % (sizeof edges / sizeof edges[0])]
                       : (int64_t)(((uint64_t)rnd() << 32) | rnd()) >> (rnd() % 64);
    mpb__w_int(canon, v);
    /* every encoding that can hold v */
    uint8_t tags[10];
    int widths[10], m = 0;
    if (v >= -32 && v <= 127) tags[m] = (uint8_t)v, widths[m++] = 0;
    if (v >= 0) {
        if (v <= 0xff) tags[m] = 0xcc, widths[m++] = 1;
        if (v <= 0xffff) tags[m] = 0xcd, widths[m++] = 2;
        if (v <= 0xffffffffLL) tags[m] = 0xce, widths[m++] = 4;
        tags[m] = 0xcf, widths[m++] = 8;
    }
    if (v >= INT8_MIN && v <= INT8_MAX) tags[m] = 0xd0, widths[m++] = 1;
    if (v >= INT16_MIN && v <= INT16_MAX) tags[m] = 0xd1, widths[m++] = 2;
    if (v >= INT32_MIN && v <= INT32_MAX) tags[m] = 0xd2, widths[m++] = 4;
    tags[m] = 0xd3, widths[m++] = 8;
    int c = (int)(rnd() % (uint32_t)m);
    put_hdr(wide, tags[c], (uint64_t)v, widths[c]);
}

static void gen_value(mpb__buf_t *wide, mpb__buf_t *canon, int depth) {
    static char text[300];
    if (!text[0])
        for (size_t i = 0; i < sizeof text; i++)
            text[i] = (char)(' ' + i % 95);
    uint32_t kind = rnd() % (depth < 5 ? 9 : 6);
    switch (kind) {
    case 0: mpb__w_nil(wide), mpb__w_nil(canon); break;
    case 1: {
        bool v = rnd() & 1;
        mpb__w_bool(wide, v), mpb__w_bool(canon, v);
        break;
    }
    case 2:
    case 3: gen_int(wide, canon); break;
    case 4: { /* a float32 value, as float32 or float64 */
        float f = (float)(int32_t)rnd() / (float)(1 + rnd() % 1000);
        uint32_t u32;
        memcpy(&u32, &f, 4);
        mpb__w_double(canon, (double)f);
        if (rnd() & 1)
            put_hdr(wide, 0xca, u32, 4);
        else
            mpb__w_double(wide, (double)f);
        break;
    }
    case 5: { /* str or bin */
        bool bin = rnd() & 1;
        uint32_t n = rnd() % 8 == 0 ? 250 + rnd() % 50 : rnd() % 40;
        int w = (int)(rnd() % 4);
        if (bin) {
            mpb__w_bin(canon, text, n);
            if (w == 0) w = 1;
            put_hdr(wide,
                    w == 1 && n <= 0xff ? 0xc4
                    : w <= 2            ? 0xc5
                                        : 0xc6,
                    n,
                    w == 1 && n <= 0xff ? 1
                    : w <= 2            ? 2
                                        : 4);
        } else {
            mpb__w_str(canon, text, n);
            if (w == 0 && n <= 31)
                put_hdr(wide, (uint8_t)(0xa0 | n), 0, 0);
            else if (w <= 1 && n <= 0xff)
                put_hdr(wide, 0xd9, n, 1);
            else if (w <= 2)
                put_hdr(wide, 0xda, n, 2);
            else
                put_hdr(wide, 0xdb, n, 4);
        }
        mpb__w_raw(wide, text, n);
        break;
    }
    default: { /* array or map */
        bool map = rnd() & 1;
        uint32_t n = rnd() % 10 == 0 ? 15 + rnd() % 3 : rnd() % 4;
        int w = (int)(rnd() % 3);
        if (map)
            mpb__w_map(canon, n);
        else
            mpb__w_array(canon, n);
        if (w == 0 && n <= 15)
            put_hdr(wide, (uint8_t)((map ? 0x80 : 0x90) | n), 0, 0);
        else if (w <= 1)
            put_hdr(wide, map ? 0xde : 0xdc, n, 2);
        else
            put_hdr(wide, map ? 0xdf : 0xdd, n, 4);
        for (uint32_t i = 0; i < (map ? 2 * n : n); i++)
            gen_value(wide, canon, depth + 1);
        break;
    }
    }
}

static void test_codec_canon_random_values(void **state) {
    (void)state;
    mpb__buf_t wide = {0}, canon = {0}, out = {0}, again = {0};
    int differed = 0;
    for (int it = 0; it < 20000; it++) {
        gen_value(&wide, &canon, 0);
        assert_false(wide.oom || canon.oom);
        assert_int_equal(mpb__mp_check1(wide.p, wide.len, D), (long)wide.len);
        assert_int_equal(mpb__mp_check1(canon.p, canon.len, D), (long)canon.len);
        mpb__canon(wide.p, wide.len, &out);
        assert_int_equal(out.len, canon.len);
        assert_memory_equal(out.p, canon.p, canon.len);
        assert_true(mpb__canon_is(canon.p, canon.len));
        bool same = wide.len == canon.len && memcmp(wide.p, canon.p, canon.len) == 0;
        assert_int_equal(mpb__canon_is(wide.p, wide.len), same);
        differed += !same;
        mpb__canon(out.p, out.len, &again);
        assert_int_equal(again.len, out.len);
        assert_memory_equal(again.p, out.p, out.len);
        /* the canonical form is equal to the original in the ordering, where comparable */
        int c = 7;
        char err[128];
        int rc = mpb__mp_compare(wide.p, wide.len, canon.p, canon.len, &c, err, sizeof err);
        if (rc == 0)
            assert_int_equal(c, 0);
        else
            assert_int_equal(rc, MPB_ETYPE);
        mpb__buf_reset(&wide);
        mpb__buf_reset(&canon);
        mpb__buf_reset(&out);
        mpb__buf_reset(&again);
    }
    assert_true(differed > 1000);
    mpb__buf_free(&wide);
    mpb__buf_free(&canon);
    mpb__buf_free(&out);
    mpb__buf_free(&again);
}

/* Random bytes that pass mpcheck are safe to canonicalise, compare and sample. */
static void test_codec_fuzz_validated_bytes(void **state) {
    (void)state;
    enum { MAXLEN = 24 };
    uint8_t *mem = malloc(MAXLEN);
    assert_non_null(mem);
    mpb__buf_t out = {0}, again = {0};
    int accepted = 0;
    for (int it = 0; it < 100000; it++) {
        size_t len = 1 + rnd() % MAXLEN;
        uint8_t *buf = mem + MAXLEN - len;
        for (size_t i = 0; i < len; i++) {
            uint32_t r = rnd();
            buf[i] = (r & 3) ? (uint8_t)(0x80 + (r >> 8) % 0x60) : (uint8_t)(r >> 8);
        }
        long l = mpb__mp_check1(buf, len, D);
        if (l < 0) continue;
        accepted++;
        uint8_t *v = buf + len - (size_t)l; /* flush with the end again */
        memmove(v, buf, (size_t)l);
        bool is = mpb__canon_is(v, (size_t)l);
        mpb__canon(v, (size_t)l, &out);
        assert_false(out.oom);
        assert_int_equal(mpb__mp_check1(out.p, out.len, D), (long)out.len);
        assert_true(mpb__canon_is(out.p, out.len));
        assert_int_equal(is, out.len == (size_t)l && memcmp(out.p, v, out.len) == 0);
        mpb__canon(out.p, out.len, &again);
        assert_int_equal(again.len, out.len);
        assert_memory_equal(again.p, out.p, out.len);
        int c;
        char err[64];
        int rc = mpb__mp_compare(v, (size_t)l, out.p, out.len, &c, err, sizeof err);
        assert_true(rc == 0 || rc == MPB_ETYPE);
        if (rc == 0) assert_int_equal(c, 0);
        char sample[16];
        mpb__mp_sample(v, (size_t)l, sample, sizeof sample);
        assert_true(strlen(sample) < sizeof sample);
        mpb__buf_reset(&out);
        mpb__buf_reset(&again);
    }
    assert_true(accepted > 1000);
    free(mem);
    mpb__buf_free(&out);
    mpb__buf_free(&again);
}

/* ---- ordering ---- */

/* Compares a and b (hex), checks antisymmetry, returns the sign. */
static int cmp_hex(const char *a, const char *b) {
    hex_t x = hx(a), y = hx(b);
    int c = 42, r = 42;
    char err[128] = "";
    int rc = mpb__mp_compare(x.b, x.n, y.b, y.n, &c, err, sizeof err);
    if (rc) print_error("compare(%s, %s): %d %s\n", a, b, rc, err);
    assert_int_equal(rc, 0);
    assert_int_equal(mpb__mp_compare(y.b, y.n, x.b, x.n, &r, err, sizeof err), 0);
    assert_true(c == -1 || c == 0 || c == 1);
    assert_int_equal(r, -c);
    return c;
}

#define LT(a, b) assert_int_equal(cmp_hex(a, b), -1)
#define EQ(a, b) assert_int_equal(cmp_hex(a, b), 0)
#define GT(a, b) assert_int_equal(cmp_hex(a, b), 1)

#define F64_1_5   "cb 3f f8 00 00 00 00 00 00"
#define F32_1_5   "ca 3f c0 00 00"
#define F64_1     "cb 3f f0 00 00 00 00 00 00"
#define F64_M0    "cb 80 00 00 00 00 00 00 00"
#define F64_0_5   "cb 3f e0 00 00 00 00 00 00"
#define F64_2P53  "cb 43 40 00 00 00 00 00 00" /* 2^53 */
#define F64_2P63  "cb 43 e0 00 00 00 00 00 00" /* 2^63 */
#define F64_M2P63 "cb c3 e0 00 00 00 00 00 00" /* -2^63 */
#define F64_2P64  "cb 43 f0 00 00 00 00 00 00" /* 2^64 */
#define F64_INF   "cb 7f f0 00 00 00 00 00 00"
#define F64_MINF  "cb ff f0 00 00 00 00 00 00"
#define F64_NAN   "cb 7f f8 00 00 00 00 00 00"
#define I64_MAX   "cf 7f ff ff ff ff ff ff ff"
#define I64_MIN   "d3 80 00 00 00 00 00 00 00"
#define U64_2P63  "cf 80 00 00 00 00 00 00 00"
#define U64_MAX   "cf ff ff ff ff ff ff ff ff"

static void test_codec_compare_numbers(void **state) {
    (void)state;
    LT("01", F64_1_5);
    LT("01", F32_1_5);
    GT("02", F64_1_5);
    EQ(F32_1_5, F64_1_5);
    LT("ff", "00"); /* -1 < 0 */
    LT("ff", "01");
    LT("e0", "ff");
    LT("d0 df", "e0");
    EQ("01", "cc 01");
    EQ("01", "d3 00 00 00 00 00 00 00 01");
    EQ("ff", "d3 ff ff ff ff ff ff ff ff");
    EQ("01", F64_1);
    EQ("00", F64_M0);
    LT(I64_MIN, "ff");
    LT(I64_MIN, "d3 80 00 00 00 00 00 00 01");
    GT(U64_2P63, I64_MAX); /* 2^63 as uint64 > INT64_MAX */
    GT(U64_MAX, U64_2P63);
    GT(U64_2P63, "ff");
    LT(I64_MIN, U64_MAX);
    LT("ff", F64_0_5);
    GT("00", "cb bf e0 00 00 00 00 00 00"); /* 0 > -0.5 */
    LT("01", F64_INF);
    LT(U64_MAX, F64_INF);
    GT(I64_MIN, F64_MINF);
    LT(F64_MINF, F64_INF);
    EQ(F64_INF, F64_INF);
    /* NaN is neither less nor greater than anything */
    EQ(F64_NAN, "01");
    EQ(F64_NAN, F64_NAN);
    EQ(F64_NAN, F64_INF);
}

/* Python compares int and float exactly, not by rounding the int to a double. */
static void test_codec_compare_int_float_exact(void **state) {
    (void)state;
    GT("cf 00 20 00 00 00 00 00 01", F64_2P53); /* 2^53 + 1 > 2.0**53 */
    EQ("cf 00 20 00 00 00 00 00 00", F64_2P53);
    LT("cf 00 1f ff ff ff ff ff ff", F64_2P53);
    LT(I64_MAX, F64_2P63); /* 2^63 - 1 < 2.0**63 */
    EQ(U64_2P63, F64_2P63);
    GT("cf 80 00 00 00 00 00 00 01", F64_2P63);
    LT(U64_MAX, F64_2P64); /* 2^64 - 1 < 2.0**64 */
    EQ(I64_MIN, F64_M2P63);
    GT("d3 80 00 00 00 00 00 00 01", F64_M2P63);
    GT(I64_MIN, "cb c3 e0 00 00 00 00 00 01"); /* -2^63 > the next double down */
    GT("d3 ff df ff ff ff ff ff ff", "cb c3 40 00 00 00 00 00 01"); /* -(2^53+1) > -(2^53+2) */
    LT("d3 ff df ff ff ff ff ff ff", "cb c3 40 00 00 00 00 00 00"); /* -(2^53+1) < -2^53 */
    /* fractions near integers */
    LT("02", "cb 40 00 00 00 00 00 00 01"); /* 2 < 2.0000000000000004 */
    GT("02", "cb 3f ff ff ff ff ff ff ff"); /* 2 > 1.9999999999999998 */
    LT("fe", "cb bf ff ff ff ff ff ff ff"); /* -2 < -1.9999999999999998 */
    GT("fe", "cb c0 00 00 00 00 00 00 01"); /* -2 > -2.0000000000000004 */
    LT("c3", "cb 3f f0 00 00 00 00 00 01"); /* True < 1.0000000000000002 */
}

static void test_codec_compare_bool(void **state) {
    (void)state;
    EQ("c3", "01");
    EQ("c2", "00");
    LT("c2", "c3");
    EQ("c3", F64_1);
    LT("c3", F64_1_5);
    GT("c2", "ff");
    LT("c3", "02");
}

static void test_codec_compare_str_bin(void **state) {
    (void)state;
    EQ("a0", "a0");
    LT("a0", "a1 61");
    LT("a1 61", "a2 61 61");
    LT("a2 61 61", "a1 62");
    LT("a1 41", "a1 61");
    EQ("a3 61 62 63", "d9 03 61 62 63");
    EQ("a3 61 62 63", "db 00 00 00 03 61 62 63");
    LT("a1 7a", "a2 c3 a9");             /* 'z' < 'é' (U+E9) */
    LT("a2 c3 a9", "a3 e2 82 ac");       /* U+E9 < U+20AC */
    LT("a3 ef bf bf", "a4 f0 90 80 80"); /* U+FFFF < U+10000 */
    LT("a2 c3 a9", "a2 c3 aa");
    EQ("c4 00", "c5 00 00");
    LT("c4 00", "c4 01 00");
    LT("c4 01 00", "c4 01 01");
    LT("c4 01 01", "c4 02 01 00");
    GT("c4 01 ff", "c4 02 00 ff");
    GT("c4 01 80", "c4 01 7f"); /* bytes are unsigned */
}

static void test_codec_compare_arrays(void **state) {
    (void)state;
    EQ("90", "90");
    EQ("90", "dc 00 00");
    LT("90", "91 01");
    LT("92 01 02", "92 01 03");
    LT("92 01 02", "93 01 02 00");
    GT("91 02", "93 01 09 09");
    LT("92 01 92 02 a1 61", "92 01 92 02 a1 62");
    GT("91 90", "90");
    LT("91 90", "91 91 00");
    EQ("92 a1 61 01", "92 d9 01 61 " F64_1);
    EQ("92 01 c3", "dc 00 02 cc 01 01");
    /* decided by the first differing element: later ones need not be comparable */
    LT("92 01 a1 61", "92 02 01");
}

static void expect_type_error(const char *a, const char *b, const char *ta, const char *tb) {
    hex_t x = hx(a), y = hx(b);
    int c = 42;
    char err[128] = "";
    assert_int_equal(mpb__mp_compare(x.b, x.n, y.b, y.n, &c, err, sizeof err), MPB_ETYPE);
    char want[128];
    snprintf(want, sizeof want, "'%s' and '%s'", ta, tb);
    if (!strstr(err, want)) print_error("compare(%s, %s): \"%s\"\n", a, b, err);
    assert_non_null(strstr(err, want));
}

static void test_codec_compare_type_errors(void **state) {
    (void)state;
    expect_type_error("a1 61", "01", "str", "int");
    expect_type_error("01", "a1 61", "int", "str");
    expect_type_error(F64_1, "a1 61", "float", "str");
    expect_type_error("c0", "c0", "nil", "nil");
    expect_type_error("c0", "01", "nil", "int");
    expect_type_error("80", "80", "dict", "dict");
    expect_type_error("81 01 01", "01", "dict", "int");
    expect_type_error("91 01", "01", "list", "int");
    expect_type_error("c4 01 61", "a1 61", "bytes", "str");
    expect_type_error("d4 01 00", "d4 01 00", "ext", "ext");
    /* arrays whose elements are not comparable */
    expect_type_error("91 a1 61", "91 01", "str", "int");
    expect_type_error("92 01 a1 61", "92 01 02", "str", "int");
    expect_type_error("92 01 80", "92 01 81 01 01", "dict", "dict");
    expect_type_error("91 91 c0", "91 91 01", "nil", "int");
    /* the message is Python's */
    hex_t x = hx("a1 61"), y = hx("01");
    int c;
    char err[128];
    assert_int_equal(mpb__mp_compare(x.b, x.n, y.b, y.n, &c, err, sizeof err), MPB_ETYPE);
    assert_string_equal(err, "'<' not supported between instances of 'str' and 'int'");
    /* a small err buffer is cut, not overrun */
    char small[8];
    memset(small, 'z', sizeof small);
    assert_int_equal(mpb__mp_compare(x.b, x.n, y.b, y.n, &c, small, sizeof small), MPB_ETYPE);
    assert_int_equal(strlen(small), sizeof small - 1);
}

/* Python skips equal elements before it orders: [None] == [None], [None, 1] < [None, 2]. */
static void test_codec_compare_equal_elements_skipped(void **state) {
    (void)state;
    EQ("91 c0", "91 c0");
    LT("92 c0 01", "92 c0 02");
    LT("92 80 01", "92 80 02");
    GT("93 01 81 a1 61 01 03", "93 01 81 a1 61 01 02");
    LT("91 c0", "92 c0 c0");
    EQ("92 d4 01 00 c0", "92 d4 01 00 c0");
}

static void test_codec_sample(void **state) {
    (void)state;
    static const struct {
        const char *hex, *want;
    } cases[] = {
        {"05",                         "5"                   },
        {"ff",                         "-1"                  },
        {I64_MIN,                      "-9223372036854775808"},
        {U64_MAX,                      "18446744073709551615"},
        {F64_1_5,                      "1.5"                 },
        {"cb 3f f0 00 00 00 00 00 00", "1.0"                 }, /* not the integer key 1 */
        {"cb 3f b9 99 99 99 99 99 9a", "0.1"                 }, /* shortest that reads back */
        {"cb 44 b5 2d 02 c7 e1 4a f6", "1e+23"               },
        {"cb 7f f0 00 00 00 00 00 00", "inf"                 },
        {"ca 3f 80 00 00",             "1.0"                 },
        {"a5 68 65 6c 6c 6f",          "\"hello\""           },
        {"a3 61 0a 62",                "\"a?b\""             },
        {"c4 03 01 02 03",             "<3 bytes>"           },
        {"c0",                         "<nil>"               },
        {"c3",                         "<bool>"              },
        {"91 01",                      "<list>"              },
        {"80",                         "<dict>"              },
        {"d4 01 00",                   "<ext>"               },
        {"",                           "<invalid>"           },
        {"c1",                         "<invalid>"           },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hex_t h = hx(cases[i].hex);
        char out[64];
        mpb__mp_sample(h.b, h.n, out, sizeof out);
        assert_string_equal(out, cases[i].want);
    }
    /* long strings are cut to fit, always terminated */
    hex_t h = hx("b0 61 62 63 64 65 66 67 68 69 6a 6b 6c 6d 6e 6f 70");
    for (size_t outlen = 1; outlen < 24; outlen++) {
        char out[24];
        memset(out, 'Z', sizeof out);
        mpb__mp_sample(h.b, h.n, out, outlen);
        assert_true(strlen(out) < outlen);
        assert_int_equal(out[outlen], 'Z');
    }
    char untouched = 'Z';
    mpb__mp_sample(h.b, h.n, &untouched, 0);
    assert_int_equal(untouched, 'Z');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_int_roundtrip),
        cmocka_unit_test(test_codec_uint_roundtrip),
        cmocka_unit_test(test_codec_reads_any_int_encoding),
        cmocka_unit_test(test_codec_nil_bool),
        cmocka_unit_test(test_codec_double_roundtrip),
        cmocka_unit_test(test_codec_str_roundtrip),
        cmocka_unit_test(test_codec_bin_roundtrip),
        cmocka_unit_test(test_codec_array_map_headers),
        cmocka_unit_test(test_codec_big_containers),
        cmocka_unit_test(test_codec_sequence_and_span),
        cmocka_unit_test(test_codec_rd_type_all_bytes),
        cmocka_unit_test(test_codec_type_errors_leave_reader),
        cmocka_unit_test(test_codec_truncated),
        cmocka_unit_test(test_codec_mapget),
        cmocka_unit_test(test_codec_buf),
        cmocka_unit_test(test_codec_canon_is),
        cmocka_unit_test(test_codec_canon),
        cmocka_unit_test(test_codec_canon_random_values),
        cmocka_unit_test(test_codec_fuzz_validated_bytes),
        cmocka_unit_test(test_codec_compare_numbers),
        cmocka_unit_test(test_codec_compare_int_float_exact),
        cmocka_unit_test(test_codec_compare_bool),
        cmocka_unit_test(test_codec_compare_str_bin),
        cmocka_unit_test(test_codec_compare_arrays),
        cmocka_unit_test(test_codec_compare_type_errors),
        cmocka_unit_test(test_codec_compare_equal_elements_skipped),
        cmocka_unit_test(test_codec_sample),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
