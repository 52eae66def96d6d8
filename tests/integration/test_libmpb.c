/* test_libmpb.c - libmpb as a C program uses it without a second msgpack library: every
 * msgpack type built with mpb_mp_*() comes back unchanged through mpb_mpr_*() and through the
 * broker (a value stored by one process, read by another); the reader refuses malformed bytes
 * and says ETYPE/EEMPTY without moving; mpb_mpr_next reads any value, mpb_mpr_init_prefix
 * measures one, a stream reader checks as it reads; the builder writes the shortest headers, and
 * over the caller's memory allocates nothing (or grows out of it); a describe map and a list slice
 * are read with it; integer and string forms of queue, list and value calls, used from two
 * processes; mpb_connect(NULL, ...) takes $MPB_ENDPOINT; EVALUE's text fits a task_done past zero;
 * a failed call sets a message of its own (never the last call's); mpb_err_name names every code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th.h"
#include "mpb/ops.h"

static th_broker_t B;

#define CKM(x) assert_int_equal((x), 0)

static const int64_t INTS[] = {
    INT64_MIN, -2147483649LL, -32769, -129,  -33,   -32,          -1,           0,        1, 127,
    128,       255,           256,    65535, 65536, 4294967295LL, 4294967296LL, INT64_MAX};
static const size_t LENS[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 70000};

static char *filled(size_t n, char base) {
    char *p = malloc(n + 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(base + (char)(i % 26));
    p[n] = 0;
    return p;
}

/* [nil, true, false, ints..., UINT64_MAX, 1.5, -0.25, strs..., bins..., exts..., {"a": [1, {}]}] */
static void build_everything(void **out, size_t *len) {
    size_t nl = sizeof LENS / sizeof *LENS, ni = sizeof INTS / sizeof *INTS;
    mpb_mpbuf_t b = {0};
    CKM(mpb_mp_array(&b, (uint32_t)(3 + ni + 1 + 2 + 3 * nl + 1)));
    CKM(mpb_mp_nil(&b));
    CKM(mpb_mp_bool(&b, 1));
    CKM(mpb_mp_bool(&b, 0));
    for (size_t i = 0; i < ni; i++)
        CKM(mpb_mp_i64(&b, INTS[i]));
    CKM(mpb_mp_u64(&b, UINT64_MAX));
    CKM(mpb_mp_double(&b, 1.5));
    CKM(mpb_mp_double(&b, -0.25));
    for (size_t i = 0; i < nl; i++) {
        char *s = filled(LENS[i], 'a');
        CKM(mpb_mp_str(&b, s, LENS[i]));
        CKM(mpb_mp_bin(&b, s, LENS[i]));
        CKM(mpb_mp_ext(&b, (int)i - 4, s, LENS[i]));
        free(s);
    }
    CKM(mpb_mp_map(&b, 1));
    CKM(mpb_mp_cstr(&b, "a"));
    CKM(mpb_mp_array(&b, 2));
    CKM(mpb_mp_i64(&b, 1));
    CKM(mpb_mp_map(&b, 0));
    CKM(mpb_mp_take(&b, out, len));
    assert_null(b.data);
}

static void read_everything(const void *buf, size_t len) {
    size_t nl = sizeof LENS / sizeof *LENS, ni = sizeof INTS / sizeof *INTS;
    mpb_mpreader_t r;
    uint32_t n;
    CKM(mpb_mpr_init(&r, buf, len));
    assert_int_equal(mpb_mpr_type(&r), MPB_MP_ARRAY);
    CKM(mpb_mpr_array(&r, &n));
    assert_int_equal(n, 3 + ni + 1 + 2 + 3 * nl + 1);
    assert_int_equal(mpb_mpr_i64(&r, &(int64_t){0}), MPB_ETYPE); /* nil: not moved */
    CKM(mpb_mpr_nil(&r));
    int bv = -1;
    CKM(mpb_mpr_bool(&r, &bv));
    assert_int_equal(bv, 1);
    CKM(mpb_mpr_bool(&r, &bv));
    assert_int_equal(bv, 0);
    for (size_t i = 0; i < ni; i++) {
        int64_t v = 0;
        assert_int_equal(mpb_mpr_type(&r), MPB_MP_INT);
        CKM(mpb_mpr_i64(&r, &v));
        assert_true(v == INTS[i]);
    }
    int64_t big;
    assert_int_equal(mpb_mpr_i64(&r, &big), MPB_ETYPE); /* UINT64_MAX does not fit */
    uint64_t u = 0;
    CKM(mpb_mpr_u64(&r, &u));
    assert_true(u == UINT64_MAX);
    double d = 0;
    assert_int_equal(mpb_mpr_type(&r), MPB_MP_FLOAT);
    CKM(mpb_mpr_double(&r, &d));
    assert_true(d == 1.5);
    CKM(mpb_mpr_double(&r, &d));
    assert_true(d == -0.25);
    for (size_t i = 0; i < nl; i++) {
        char *want = filled(LENS[i], 'a');
        const char *s;
        const void *p;
        size_t sl = 99;
        int type = 99;
        assert_int_equal(mpb_mpr_type(&r), MPB_MP_STR);
        assert_int_equal(mpb_mpr_bin(&r, &p, &sl), MPB_ETYPE);
        CKM(mpb_mpr_str(&r, &s, &sl));
        assert_int_equal(sl, LENS[i]);
        if (sl) assert_memory_equal(s, want, sl);
        assert_int_equal(mpb_mpr_type(&r), MPB_MP_BIN);
        CKM(mpb_mpr_bin(&r, &p, &sl));
        assert_int_equal(sl, LENS[i]);
        if (sl) assert_memory_equal(p, want, sl);
        assert_int_equal(mpb_mpr_type(&r), MPB_MP_EXT);
        CKM(mpb_mpr_ext(&r, &type, &p, &sl));
        assert_int_equal(type, (int)i - 4);
        assert_int_equal(sl, LENS[i]);
        if (sl) assert_memory_equal(p, want, sl);
        free(want);
    }
    mpb_mpreader_t v;
    CKM(mpb_mpr_find(&r, "a", &v));
    assert_int_equal(mpb_mpr_find(&r, "b", &v), MPB_ENOKEY);
    CKM(mpb_mpr_array(&v, &n));
    assert_int_equal(n, 2);
    CKM(mpb_mpr_map(&r, &n));
    assert_int_equal(n, 1);
    const void *raw;
    size_t rawlen;
    CKM(mpb_mpr_skip(&r, &raw, &rawlen)); /* "a" */
    assert_int_equal(rawlen, 2);
    CKM(mpb_mpr_skip(&r, NULL, NULL)); /* [1, {}] */
    assert_int_equal(mpb_mpr_type(&r), MPB_MP_END);
    assert_int_equal(mpb_mpr_nil(&r), MPB_EEMPTY);
    assert_int_equal(mpb_mpr_skip(&r, NULL, NULL), MPB_EEMPTY);
}

static void test_every_type_round_trips(void **state) {
    (void)state;
    void *buf;
    size_t len;
    build_everything(&buf, &len);
    read_everything(buf, len);
    /* and what one value holds can be built again from its parts, byte for byte */
    mpb_mpbuf_t b = {0};
    CKM(mpb_mp_raw(&b, buf, len));
    assert_int_equal(b.len, len);
    assert_memory_equal(b.data, buf, len);
    mpb_mp_reset(&b);
    assert_null(b.data);
    mpb_free(buf);
}

/* Reads the next value with mpb_mpr_next() (fast: its inline fast path) and appends it to b
 * again from what it says (fast: with the builder's inline fast paths where there are some). */
static void rebuild(mpb_mpreader_t *r, mpb_mpbuf_t *b, int fast) {
    mpb_mpval_t v;
    CKM(fast ? mpb_mpr_next_fast(r, &v) : mpb_mpr_next(r, &v));
    switch (v.type) {
    case MPB_MP_NIL: CKM(fast ? mpb_mp_nil_fast(b) : mpb_mp_nil(b)); break;
    case MPB_MP_BOOL:
        assert_true(v.i == 0 || v.i == 1);
        CKM(fast ? mpb_mp_bool_fast(b, (int)v.i) : mpb_mp_bool(b, (int)v.i));
        break;
    case MPB_MP_INT:
        if (!v.big && v.i >= 0) assert_true(v.u == (uint64_t)v.i);
        if (v.big)
            CKM(mpb_mp_u64(b, v.u));
        else
            CKM(fast ? mpb_mp_i64_fast(b, v.i) : mpb_mp_i64(b, v.i));
        break;
    case MPB_MP_FLOAT: CKM(mpb_mp_double(b, v.d)); break;
    case MPB_MP_STR: CKM(fast ? mpb_mp_str_fast(b, v.p, v.n) : mpb_mp_str(b, v.p, v.n)); break;
    case MPB_MP_BIN: CKM(mpb_mp_bin(b, v.p, v.n)); break;
    case MPB_MP_EXT: CKM(mpb_mp_ext(b, v.ext_type, v.p, v.n)); break;
    case MPB_MP_ARRAY:
        CKM(fast ? mpb_mp_array_fast(b, v.n) : mpb_mp_array(b, v.n));
        for (uint32_t i = 0; i < v.n; i++)
            rebuild(r, b, fast);
        break;
    case MPB_MP_MAP:
        CKM(fast ? mpb_mp_map_fast(b, v.n) : mpb_mp_map(b, v.n));
        for (uint32_t i = 0; i < 2 * v.n; i++)
            rebuild(r, b, fast);
        break;
    default: fail_msg("mpb_mpr_next: type %d", v.type);
    }
}

/* What mpb_mpr_next() reads of every type, built again, is the same bytes, and so through the
 * inline fast paths; and it reads the encodings libmpb does not write (float32, integers wider
 * than they need) as their values, the fields the type does not use zero. */
static void test_next_reads_every_type(void **state) {
    (void)state;
    void *buf;
    size_t len;
    build_everything(&buf, &len);
    mpb_mpreader_t r;
    mpb_mpval_t v;
    for (int fast = 0; fast < 2; fast++) {
        CKM(mpb_mpr_init(&r, buf, len));
        mpb_mpbuf_t b = {0};
        rebuild(&r, &b, fast);
        assert_int_equal(fast ? mpb_mpr_next_fast(&r, &v) : mpb_mpr_next(&r, &v), MPB_EEMPTY);
        assert_int_equal(v.type, MPB_MP_END);
        assert_int_equal(b.len, len);
        assert_memory_equal(b.data, buf, len);
        mpb_mp_reset(&b);
    }
    mpb_free(buf);

    static const struct {
        const char *bytes;
        size_t n;
        int type, big;
        int64_t i;
        uint64_t u;
        double d;
    } one[] = {
        {"\xca\x3f\xc0\x00\x00",                 5, MPB_MP_FLOAT, 0, 0,         0,                   1.5  },
        {"\xcb\xbf\xd0\x00\x00\x00\x00\x00\x00", 9, MPB_MP_FLOAT, 0, 0,         0,                   -0.25},
        {"\xd0\xff",                             2, MPB_MP_INT,   0, -1,        0,                   0    },
        {"\xd1\xff\x7f",                         3, MPB_MP_INT,   0, -129,      0,                   0    },
        {"\xd2\x80\x00\x00\x00",                 5, MPB_MP_INT,   0, INT32_MIN, 0,                   0    },
        {"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, MPB_MP_INT,   0, INT64_MIN, 0,                   0    },
        {"\xcd\x00\x05",                         3, MPB_MP_INT,   0, 5,         5,                   0    },
        {"\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 9, MPB_MP_INT,   1, 0,         1ull << 63,          0    },
        {"\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9, MPB_MP_INT,   0, INT64_MAX, (uint64_t)INT64_MAX,
         0                                                                                                },
        {"\xe0",                                 1, MPB_MP_INT,   0, -32,       0,                   0    },
        {"\x7f",                                 1, MPB_MP_INT,   0, 127,       127,                 0    },
    };
    for (size_t k = 0; k < sizeof one / sizeof *one; k++) {
        CKM(mpb_mpr_init(&r, one[k].bytes, one[k].n));
        CKM(mpb_mpr_next(&r, &v));
        if (v.type != one[k].type || v.big != one[k].big || v.i != one[k].i || v.u != one[k].u ||
            v.d != one[k].d)
            fail_msg("value %zu: type %d big %d i %lld u %llu d %g", k, v.type, v.big,
                     (long long)v.i, (unsigned long long)v.u, v.d);
        assert_int_equal(mpb_mpr_type(&r), MPB_MP_END);
    }
    /* a fixext 16 and an ext 8 of 3 bytes */
    unsigned char ext[19] = {0xd8, 0xfb};
    CKM(mpb_mpr_init(&r, ext, 18));
    CKM(mpb_mpr_next(&r, &v));
    assert_int_equal(v.type, MPB_MP_EXT);
    assert_int_equal(v.ext_type, -5);
    assert_int_equal(v.n, 16);
    assert_ptr_equal(v.p, ext + 2);
    CKM(mpb_mpr_init(&r, "\xc7\x03\x07xyz", 6));
    CKM(mpb_mpr_next(&r, &v));
    assert_int_equal(v.ext_type, 7);
    assert_int_equal(v.n, 3);
    assert_memory_equal(v.p, "xyz", 3);
}

/* b holds a header of hn bytes (h) and then body bytes; empties b. */
static void expect_head(mpb_mpbuf_t *b, const char *h, size_t hn, size_t body) {
    assert_int_equal(b->err, 0);
    assert_int_equal(b->len, hn + body);
    assert_memory_equal(b->data, h, hn);
    mpb_mp_clear(b);
}

/* The builder writes the shortest header of each kind at each boundary. */
static void test_builder_writes_the_shortest_header(void **state) {
    (void)state;
    char *s = filled(65536, 'a');
    mpb_mpbuf_t b = {0};
    static const struct {
        size_t n;
        const char *str, *bin, *ext;
        size_t sh, bh, eh;
    } H[] = {
        {0,     "\xa0",                 "\xc4\x00",             "\xc7\x00\x01",             1, 2, 3},
        {1,     "\xa1",                 "\xc4\x01",             "\xd4\x01",                 1, 2, 2},
        {3,     "\xa3",                 "\xc4\x03",             "\xc7\x03\x01",             1, 2, 3},
        {16,    "\xb0",                 "\xc4\x10",             "\xd8\x01",                 1, 2, 2},
        {31,    "\xbf",                 "\xc4\x1f",             "\xc7\x1f\x01",             1, 2, 3},
        {32,    "\xd9\x20",             "\xc4\x20",             "\xc7\x20\x01",             2, 2, 3},
        {255,   "\xd9\xff",             "\xc4\xff",             "\xc7\xff\x01",             2, 2, 3},
        {256,   "\xda\x01\x00",         "\xc5\x01\x00",         "\xc8\x01\x00\x01",         3, 3, 4},
        {65535, "\xda\xff\xff",         "\xc5\xff\xff",         "\xc8\xff\xff\x01",         3, 3, 4},
        {65536, "\xdb\x00\x01\x00\x00", "\xc6\x00\x01\x00\x00", "\xc9\x00\x01\x00\x00\x01", 5, 5,
         6                                                                                         },
    };
    for (size_t k = 0; k < sizeof H / sizeof *H; k++) {
        CKM(mpb_mp_str(&b, s, H[k].n));
        expect_head(&b, H[k].str, H[k].sh, H[k].n);
        CKM(mpb_mp_bin(&b, s, H[k].n));
        expect_head(&b, H[k].bin, H[k].bh, H[k].n);
        CKM(mpb_mp_bin_head(&b, H[k].n));
        expect_head(&b, H[k].bin, H[k].bh, 0);
        CKM(mpb_mp_ext(&b, 1, s, H[k].n));
        expect_head(&b, H[k].ext, H[k].eh, H[k].n);
    }
    static const struct {
        uint32_t n;
        const char *arr, *map;
        size_t hn;
    } C[] = {
        {0,     "\x90",                 "\x80",                 1},
        {15,    "\x9f",                 "\x8f",                 1},
        {16,    "\xdc\x00\x10",         "\xde\x00\x10",         3},
        {65535, "\xdc\xff\xff",         "\xde\xff\xff",         3},
        {65536, "\xdd\x00\x01\x00\x00", "\xdf\x00\x01\x00\x00", 5},
    };
    for (size_t k = 0; k < sizeof C / sizeof *C; k++) {
        CKM(mpb_mp_array(&b, C[k].n));
        expect_head(&b, C[k].arr, C[k].hn, 0);
        CKM(mpb_mp_map(&b, C[k].n));
        expect_head(&b, C[k].map, C[k].hn, 0);
    }
    CKM(mpb_mp_double(&b, 1.0)); /* float64 always, even where a float32 would hold it */
    expect_head(&b, "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 9, 0);
    CKM(mpb_mp_u64(&b, 200));
    expect_head(&b, "\xcc\xc8", 2, 0);
    CKM(mpb_mp_i64(&b, -33));
    expect_head(&b, "\xd0\xdf", 2, 0);
    /* a bin in pieces: its header, then its bytes appended as they come */
    CKM(mpb_mp_bin_head(&b, 5));
    CKM(mpb_mp_append(&b, "ab", 2));
    CKM(mpb_mp_append(&b, "cde", 3));
    CKM(mpb_mp_append(&b, NULL, 0));
    expect_head(&b,
                "\xc4\x05"
                "abcde",
                7, 0);
    assert_int_equal(mpb_mp_append(&b, NULL, 1), MPB_EINVAL);
    assert_int_equal(mpb_mp_bin_head(&b, (size_t)UINT32_MAX + 1), MPB_EINVAL);
    assert_int_equal(b.len, 0);
    mpb_mp_reset(&b);
    free(s);
}

/* A builder over the caller's memory: no allocation while it fits; MPB_MP_FIXED then fails,
 * sticky and writing nothing of the value that did not fit; MPB_MP_GROW moves to the heap and
 * builds the same bytes; mpb_mp_clear keeps the memory, whoever's it is. */
static void test_builder_over_callers_memory(void **state) {
    (void)state;
    void *want;
    size_t wlen;
    build_everything(&want, &wlen);
    mpb_mpreader_t r;
    mpb_mpbuf_t b;
    unsigned char *mem = malloc(wlen + 8);
    assert_non_null(mem);
    mpb_mp_init_buf(&b, mem, wlen + 8, MPB_MP_FIXED);
    CKM(mpb_mpr_init(&r, want, wlen));
    rebuild(&r, &b, 1);
    assert_ptr_equal(b.data, mem);
    assert_int_equal(b.len, wlen);
    assert_memory_equal(mem, want, wlen);
    /* a copy is handed over; the builder stays over mem, empty */
    void *out;
    size_t olen;
    CKM(mpb_mp_take(&b, &out, &olen));
    assert_int_equal(olen, wlen);
    assert_memory_equal(out, want, wlen);
    mpb_free(out);
    assert_ptr_equal(b.data, mem);
    assert_int_equal(b.len, 0);

    mpb_mp_init_buf(&b, mem, 10, MPB_MP_FIXED);
    CKM(mpb_mp_str(&b, "abcdefgh", 8)); /* 9 bytes */
    assert_int_equal(mpb_mp_str(&b, "ab", 2), MPB_ETOOBIG);
    assert_int_equal(b.len, 9);
    assert_int_equal(mpb_mp_nil(&b), MPB_ETOOBIG); /* it would fit, but the message is lost */
    assert_int_equal(mpb_mp_nil_fast(&b), MPB_ETOOBIG);
    assert_int_equal(mpb_mp_i64_fast(&b, 1), MPB_ETOOBIG);
    assert_int_equal(b.err, MPB_ETOOBIG);
    assert_int_equal(mpb_mp_take(&b, &out, &olen), MPB_ETOOBIG);
    assert_null(out);
    assert_ptr_equal(b.data, mem); /* emptied, still over mem */
    assert_int_equal(b.err, 0);
    CKM(mpb_mp_array(&b, 1));
    CKM(mpb_mp_nil(&b));
    mpb_mp_clear(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.err, 0);
    CKM(mpb_mp_i64(&b, INT64_MIN)); /* 9 bytes of 10 */
    assert_int_equal(mpb_mp_u64(&b, 1u << 20), MPB_ETOOBIG);
    assert_int_equal(b.len, 9);
    mpb_mp_reset(&b); /* leaves mem alone (ASan would see a bad free) */
    assert_null(b.data);

    unsigned char small[16];
    memset(small, 0xee, sizeof small);
    mpb_mp_init_buf(&b, small, sizeof small, MPB_MP_GROW);
    CKM(mpb_mpr_init(&r, want, wlen));
    rebuild(&r, &b, 1);
    assert_true(b.data != small);
    assert_int_equal(b.len, wlen);
    assert_memory_equal(b.data, want, wlen);
    assert_memory_equal(small, want, 3); /* what it built there before it moved */
    unsigned char *heap = b.data;
    mpb_mp_clear(&b);
    CKM(mpb_mp_nil(&b));
    assert_ptr_equal(b.data, heap);
    mpb_mp_reset(&b);

    /* a malloc'd builder keeps its memory across clear too */
    mpb_mpbuf_t h = {0};
    CKM(mpb_mp_cstr(&h, "one"));
    heap = h.data;
    mpb_mp_clear(&h);
    CKM(mpb_mp_cstr(&h, "two"));
    assert_ptr_equal(h.data, heap);
    expect_head(&h, "\xa3two", 4, 0);
    mpb_mp_reset(&h);
    mpb_mp_init_buf(&h, NULL, 0, MPB_MP_FIXED);
    assert_int_equal(mpb_mp_nil(&h), MPB_ETOOBIG);
    mpb_mp_clear(NULL);
    mpb_mp_init_buf(NULL, mem, 1, MPB_MP_FIXED);
    free(mem);
    mpb_free(want);
}

/* mpb_mpr_init_prefix() says how long the first value is, so trailing bytes are told from
 * bytes that are not a value; it reads the few levels of a reply around a 32-deep value. */
static void test_prefix_says_how_long_a_value_is(void **state) {
    (void)state;
    mpb_mpreader_t r;
    mpb_mpval_t v;
    size_t used = 99;
    CKM(mpb_mpr_init_prefix(&r, "\x01\x02", 2, 0, &used));
    assert_int_equal(used, 1);
    CKM(mpb_mpr_next(&r, &v));
    assert_int_equal(v.i, 1);
    assert_int_equal(mpb_mpr_type(&r), MPB_MP_END); /* the trailing byte is not read */
    CKM(mpb_mpr_init_prefix(&r, "\x92\x01\xa1x\xc0\xc1", 6, 0, &used));
    assert_int_equal(used, 4);
    CKM(mpb_mpr_init_prefix(&r, "\xc0", 1, 0, &used));
    assert_int_equal(used, 1);
    static const struct {
        const char *bytes;
        size_t n;
    } bad[] = {
        {"",                     0},
        {"\xc1",                 1},
        {"\x92\x01",             2},
        {"\xa5"
         "abc",         4},
        {"\xdb\xff\xff\xff\xff", 5},
        {"\xd6\x01\x00",         3},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        used = 99;
        assert_int_equal(mpb_mpr_init_prefix(&r, bad[i].bytes, bad[i].n, 0, &used), MPB_EPROTO);
        assert_int_equal(used, 0);
        assert_int_equal(mpb_mpr_type(&r), MPB_MP_END);
        assert_int_equal(mpb_mpr_next(&r, &v), MPB_EEMPTY);
    }
    /* depth: 32 arrays for a value, 36 for a reply, never more */
    unsigned char deep[MPB_MP_FRAME_DEPTH + 2];
    memset(deep, 0x91, sizeof deep);
    deep[MPB_MP_MAX_DEPTH] = 0xc0;
    CKM(mpb_mpr_init(&r, deep, MPB_MP_MAX_DEPTH + 1));
    deep[MPB_MP_MAX_DEPTH] = 0x91;
    deep[MPB_MP_FRAME_DEPTH] = 0xc0;
    assert_int_equal(mpb_mpr_init(&r, deep, MPB_MP_FRAME_DEPTH + 1), MPB_EPROTO);
    assert_int_equal(mpb_mpr_init_prefix(&r, deep, sizeof deep, 0, &used), MPB_EPROTO);
    CKM(mpb_mpr_init_prefix(&r, deep, sizeof deep, MPB_MP_FRAME_DEPTH, &used));
    assert_int_equal(used, MPB_MP_FRAME_DEPTH + 1);
    deep[MPB_MP_FRAME_DEPTH] = 0x91;
    deep[MPB_MP_FRAME_DEPTH + 1] = 0xc0;
    assert_int_equal(mpb_mpr_init_prefix(&r, deep, sizeof deep, MPB_MP_FRAME_DEPTH, &used),
                     MPB_EPROTO);
    assert_int_equal(mpb_mpr_init_prefix(&r, deep, sizeof deep, MPB_MP_FRAME_DEPTH + 1, &used),
                     MPB_EINVAL);
    assert_int_equal(mpb_mpr_init_prefix(&r, deep, sizeof deep, -1, &used), MPB_EINVAL);
    assert_int_equal(mpb_mpr_init_prefix(&r, "\xc0", 1, 0, NULL), MPB_EINVAL);
    assert_int_equal(mpb_mpr_next(&r, NULL), MPB_EINVAL);
}

/* Reads one whole value at r with mpb_mpr_next (fast: its inline form), arrays and maps item by
 * item: 0 or the first failure. */
static int walk(mpb_mpreader_t *r, int fast) {
    mpb_mpval_t v;
    int rc = fast ? mpb_mpr_next_fast(r, &v) : mpb_mpr_next(r, &v);
    if (rc) return rc;
    uint64_t items = v.type == MPB_MP_ARRAY ? v.n : v.type == MPB_MP_MAP ? 2ull * v.n : 0;
    for (uint64_t i = 0; i < items; i++)
        if ((rc = walk(r, fast))) return rc;
    return 0;
}

/* walk() over a malloc'd copy of exactly n bytes (ASan sees a read past them). */
static int walk_copy(const void *p, size_t n, int fast, size_t *left) {
    unsigned char *q = malloc(n ? n : 1);
    assert_non_null(q);
    if (n) memcpy(q, p, n);
    mpb_mpreader_t r;
    CKM(mpb_mpr_init_stream(&r, q, n));
    int rc = walk(&r, fast);
    *left = mpb_mpr_left(&r);
    free(q);
    return rc;
}

/* A reader from mpb_mpr_init_stream() checks as it reads: the whole value reads, every prefix of
 * it fails (MPB_EPROTO, or MPB_EEMPTY where it ends between values) without reading past its
 * end, and hostile headers (counts past the bytes, cut scalars, a reserved byte) say
 * MPB_EPROTO without moving the reader. */
static void test_stream_reader_checks_as_it_reads(void **state) {
    (void)state;
    void *buf;
    size_t len, left;
    build_everything(&buf, &len);
    for (int fast = 0; fast < 2; fast++) {
        CKM(walk_copy(buf, len, fast, &left));
        assert_int_equal(left, 0);
        for (size_t n = 0; n < len; n += n < 300 ? 1 : n / 8) {
            int rc = walk_copy(buf, n, fast, &left);
            if (rc != MPB_EPROTO && rc != MPB_EEMPTY) fail_msg("prefix of %zu: %d", n, rc);
        }
    }
    mpb_free(buf);
    static const struct {
        const char *bytes;
        size_t n;
        int rc;
    } bad[] = {
        {"\xc1",                             1, MPB_EPROTO},
        {"\xdd\xff\xff\xff\xff",             5, MPB_EPROTO},
        {"\x9f\x01",                         2, MPB_EPROTO},
        {"\x81\x01",                         2, MPB_EPROTO},
        {"\xdf\x00\x00\x00\x02\x01\x02\x03", 8, MPB_EPROTO},
        {"\xdb\x00\x00\x01\x00"
         "ab",                      7, MPB_EPROTO},
        {"\xda\x00",                         2, MPB_EPROTO},
        {"\xcb\x00",                         2, MPB_EPROTO},
        {"\xcf\x00\x00\x00\x00\x00\x00\x00", 8, MPB_EPROTO},
        {"\xa5"
         "ab",                      3, MPB_EPROTO},
        {"\xc7\x05\x01"
         "ab",                      5, MPB_EPROTO},
        {"\xc7\x05",                         2, MPB_EPROTO},
        {"\xd8\x01",                         2, MPB_EPROTO},
        {"\x92\xcd\x00\x01",                 4, MPB_EEMPTY},
        {"\x92\x01",                         2, MPB_EPROTO},
        {"",                                 0, MPB_EEMPTY},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        for (int fast = 0; fast < 2; fast++) {
            int rc = walk_copy(bad[i].bytes, bad[i].n, fast, &left);
            if (rc != bad[i].rc) fail_msg("bad value %zu (fast %d): %d", i, fast, rc);
        }
    }
    /* a failed read leaves the reader on the value; what follows one value is left unread */
    mpb_mpreader_t r;
    mpb_mpval_t v;
    CKM(mpb_mpr_init_stream(&r, "\x91\xcd\x01", 3));
    CKM(mpb_mpr_next(&r, &v));
    assert_int_equal(mpb_mpr_next_fast(&r, &v), MPB_EPROTO);
    assert_int_equal(mpb_mpr_next(&r, &v), MPB_EPROTO);
    assert_int_equal(v.type, MPB_MP_END);
    assert_int_equal(mpb_mpr_left(&r), 2);
    assert_int_equal(walk_copy("\x01\x02", 2, 1, &left), 0);
    assert_int_equal(left, 1);
    assert_int_equal(mpb_mpr_init_stream(&r, NULL, 1), MPB_EINVAL);
    assert_int_equal(mpb_mpr_left(NULL), 0);
}

/* A child process builds the value and stores it; the parent reads it back from the broker. */
static int store_child(int idx, void *arg) {
    (void)idx;
    (void)arg;
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    void *buf;
    size_t len;
    if (mpb_dict_open(c, "libmpb", &d)) return 1;
    build_everything(&buf, &len);
    mpb_mpbuf_t k = {0};
    mpb_mp_cstr(&k, "everything");
    int rc = mpb_dict_set(d, k.data, k.len, buf, len);
    mpb_mp_reset(&k);
    mpb_free(buf);
    mpb_dict_close(&d);
    mpb_close(&c);
    return rc ? 2 : 0;
}

static void test_every_type_through_the_broker(void **state) {
    (void)state;
    assert_int_equal(th_spawn(1, store_child, NULL, 60), 0);
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, "libmpb", &d), 0);
    mpb_mpbuf_t k = {0};
    CKM(mpb_mp_cstr(&k, "everything"));
    void *val;
    size_t vlen;
    assert_int_equal(mpb_dict_get(d, k.data, k.len, &val, &vlen), 0);
    read_everything(val, vlen);
    mpb_free(val);
    mpb_mp_reset(&k);
    mpb_dict_close(&d);
    mpb_close(&c);
}

static void test_reader_refuses_malformed_input(void **state) {
    (void)state;
    static const struct {
        const char *what;
        const char *bytes;
        size_t n;
    } bad[] = {
        {"empty",                    "",             0},
        {"reserved byte",            "\xc1",         1},
        {"array missing an item",    "\x92\x01",     2},
        {"truncated str",
         "\xa5"
         "abc",                                      4},
        {"str8 length past the end",
         "\xd9\xff"
         "ab",                                       4},
        {"truncated uint64",         "\xcf\x00\x01", 3},
        {"trailing bytes",           "\x01\x02",     2},
        {"map missing a value",      "\x81\xa1k",    3},
        {"truncated ext",            "\xd6\x01\x00", 3},
    };
    mpb_mpreader_t r;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = mpb_mpr_init(&r, bad[i].bytes, bad[i].n);
        if (rc != MPB_EPROTO) fail_msg("%s: %d", bad[i].what, rc);
        assert_int_equal(mpb_mpr_type(&r), MPB_MP_END); /* a refused reader reads nothing */
        mpb_mpbuf_t b = {0};
        assert_int_equal(mpb_mp_raw(&b, bad[i].bytes, bad[i].n), MPB_EINVAL);
        assert_int_equal(b.len, 0);
        mpb_mp_reset(&b);
    }
    assert_int_equal(mpb_mpr_init(&r, NULL, 3), MPB_EPROTO);
    /* nested deeper than 32 */
    unsigned char deep[40];
    memset(deep, 0x91, sizeof deep - 1);
    deep[sizeof deep - 1] = 0xc0;
    assert_int_equal(mpb_mpr_init(&r, deep, sizeof deep), MPB_EPROTO);
    CKM(mpb_mpr_init(&r, deep + sizeof deep - 30, 30));
    /* a builder given NULLs says so and builds nothing */
    mpb_mpbuf_t b = {0};
    assert_int_equal(mpb_mp_str(&b, NULL, 3), MPB_EINVAL);
    assert_int_equal(mpb_mp_cstr(&b, NULL), MPB_EINVAL);
    assert_int_equal(mpb_mp_ext(&b, 200, "x", 1), MPB_EINVAL);
    void *out;
    size_t len = 7;
    CKM(mpb_mp_take(&b, &out, &len)); /* nothing built: an empty buffer */
    assert_int_equal(len, 0);
    mpb_free(out);
}

static void test_reading_what_the_broker_answers(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    assert_int_equal(mpb_queue_open(c, "libmpb.q", 10, 1, &q), 0);
    uint8_t one[MPB_PACK_MAX_SCALAR];
    for (int i = 0; i < 3; i++)
        assert_int_equal(mpb_queue_put(q, one, mpb_pack_i64(one, i), 0), 0);
    void *m;
    size_t ml;
    assert_int_equal(mpb_obj_describe(c, "queue/libmpb.q", &m, &ml), 0);
    mpb_mpreader_t r, v;
    CKM(mpb_mpr_init(&r, m, ml));
    const char *s;
    size_t sl;
    CKM(mpb_mpr_find(&r, "kind", &v));
    CKM(mpb_mpr_str(&v, &s, &sl));
    assert_int_equal(sl, 5);
    assert_memory_equal(s, "queue", 5);
    int64_t x = 0;
    CKM(mpb_mpr_find(&r, "size", &v));
    CKM(mpb_mpr_i64(&v, &x));
    assert_int_equal(x, 3);
    CKM(mpb_mpr_find(&r, "unfinished", &v));
    CKM(mpb_mpr_i64(&v, &x));
    assert_int_equal(x, 3);
    CKM(mpb_mpr_find(&r, "maxsize", &v));
    CKM(mpb_mpr_i64(&v, &x));
    assert_int_equal(x, 10);
    int joinable = 0;
    CKM(mpb_mpr_find(&r, "joinable", &v));
    CKM(mpb_mpr_bool(&v, &joinable));
    assert_int_equal(joinable, 1);
    mpb_free(m);

    /* a list slice is an array of the items */
    mpb_list_t *l;
    assert_int_equal(mpb_list_open(c, "libmpb.l", &l), 0);
    assert_int_equal(mpb_list_clear(l), 0);
    for (int i = 0; i < 5; i++) {
        mpb_mpbuf_t b = {0};
        mpb_mp_array(&b, 2);
        mpb_mp_i64(&b, i);
        mpb_mp_cstr(&b, i % 2 ? "odd" : "even");
        assert_int_equal(b.err, 0);
        assert_int_equal(mpb_list_append(l, b.data, b.len), 0);
        mpb_mp_reset(&b);
    }
    void *items;
    size_t il, n;
    assert_int_equal(mpb_list_slice(l, 1, 4, 100, &items, &il, &n), 0);
    assert_int_equal(n, 3);
    CKM(mpb_mpr_init(&r, items, il));
    uint32_t an;
    CKM(mpb_mpr_array(&r, &an));
    assert_int_equal(an, 3);
    for (int i = 1; i < 4; i++) {
        CKM(mpb_mpr_array(&r, &an));
        assert_int_equal(an, 2);
        CKM(mpb_mpr_i64(&r, &x));
        assert_int_equal(x, i);
        CKM(mpb_mpr_str(&r, &s, &sl));
        assert_int_equal(sl, i % 2 ? 3 : 4);
        assert_memory_equal(s, i % 2 ? "odd" : "even", sl);
    }
    assert_int_equal(mpb_mpr_type(&r), MPB_MP_END);
    mpb_free(items);

    /* a raw call named through mpb/ops.h, its answer read with the reader */
    void *info;
    size_t infolen;
    assert_int_equal(mpb_call(c, MPB_OP_INFO, NULL, NULL, 0, 0, &info, &infolen), 0);
    CKM(mpb_mpr_init(&r, info, infolen));
    CKM(mpb_mpr_find(&r, "version", &v));
    assert_int_equal(mpb_mpr_type(&v), MPB_MP_STR);
    mpb_free(info);
#define XX(name, code, wire) +(strcmp(wire, "obj.info") == 0 ? code : 0)
    assert_int_equal(0 MPB_OPS_MAP(XX), 4); /* the table PROTOCOL.md lists: obj.info is 4 */
#undef XX

    /* EVALUE's words fit a task_done past zero */
    for (int i = 0; i < 3; i++)
        assert_int_equal(mpb_queue_get(q, &m, &ml, 0), 0), mpb_free(m),
            assert_int_equal(mpb_queue_task_done(q), 0);
    int rc = mpb_queue_task_done(q);
    assert_int_equal(rc, MPB_EVALUE);
    assert_non_null(strstr(mpb_strerror(rc), "finished too often"));
    assert_non_null(strstr(mpb_errmsg(c), "task_done() called too many times"));
    mpb_list_close(&l);
    mpb_queue_close(&q);
    mpb_close(&c);
}

/* Another process fills a queue, a list and a value with the integer and string forms. */
static int shortcut_child(int idx, void *arg) {
    (void)idx;
    (void)arg;
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    mpb_list_t *l;
    mpb_value_t *v;
    if (mpb_queue_open(c, "libmpb.sq", 0, 0, &q) || mpb_list_open(c, "libmpb.sl", &l) ||
        mpb_value_open(c, "libmpb.sv", NULL, 0, &v))
        return 1;
    int bad = 0;
    bad |= mpb_queue_put_i64(q, -5, 1000) | mpb_queue_put_str(q, "héllo", 1000);
    bad |= mpb_queue_put_i64(q, INT64_MAX, 1000);
    bad |= mpb_list_append_str(l, "first") | mpb_list_append_i64(l, 1234567890123LL);
    bad |= mpb_value_set_str(v, "a value");
    bad |= mpb_queue_put_str(q, NULL, 0) != MPB_EINVAL;
    mpb_queue_close(&q);
    mpb_list_close(&l);
    mpb_value_close(&v);
    mpb_close(&c);
    return bad ? 2 : 0;
}

static void test_integer_and_string_shortcuts(void **state) {
    (void)state;
    assert_int_equal(th_spawn(1, shortcut_child, NULL, 60), 0);
    mpb_client_t *c = th_connect(&B);
    mpb_queue_t *q;
    mpb_list_t *l;
    mpb_value_t *v;
    assert_int_equal(mpb_queue_open(c, "libmpb.sq", 0, 0, &q), 0);
    assert_int_equal(mpb_list_open(c, "libmpb.sl", &l), 0);
    assert_int_equal(mpb_value_open(c, "libmpb.sv", NULL, 0, &v), 0);
    int64_t x = 0;
    char *s = NULL;
    assert_int_equal(mpb_queue_get_i64(q, &x, 1000), 0);
    assert_int_equal(x, -5);
    assert_int_equal(mpb_queue_get_i64(q, &x, 1000), MPB_ETYPE); /* "héllo": taken, not an int */
    assert_non_null(strstr(mpb_errmsg(c), "not an integer"));
    assert_int_equal(x, -5);
    assert_int_equal(mpb_queue_get_str(q, &s, 1000), MPB_ETYPE);
    assert_null(s);
    assert_int_equal(mpb_queue_get_str(q, &s, 0), MPB_EEMPTY);
    assert_int_equal(mpb_list_get_str(l, 0, &s), 0);
    assert_string_equal(s, "first");
    mpb_free(s);
    assert_int_equal(mpb_list_get_i64(l, -1, &x), 0);
    assert_int_equal(x, 1234567890123LL);
    assert_int_equal(mpb_list_get_i64(l, 2, &x), MPB_EINDEX);
    assert_int_equal(mpb_value_get_str(v, &s), 0);
    assert_string_equal(s, "a value");
    mpb_free(s);
    assert_int_equal(mpb_value_get_i64(v, &x), MPB_ETYPE);
    assert_int_equal(mpb_queue_put_str(q, "é", 0), 0);
    assert_int_equal(mpb_queue_get_str(q, &s, 0), 0);
    assert_string_equal(s, "é");
    mpb_free(s);
    mpb_queue_close(&q);
    mpb_list_close(&l);
    mpb_value_close(&v);
    mpb_close(&c);
}

static void test_connect_null_uses_mpb_endpoint(void **state) {
    (void)state;
    size_t kl;
    const char *key = th_authkey(&B, &kl);
    mpb_client_t *c = NULL;
    unsetenv("MPB_ENDPOINT");
    assert_int_equal(mpb_connect(NULL, key, kl, NULL, &c), MPB_EINVAL);
    assert_non_null(strstr(mpb_errmsg(c), "MPB_ENDPOINT"));
    mpb_close(&c);
    setenv("MPB_ENDPOINT", B.endpoint, 1);
    assert_int_equal(mpb_connect(NULL, key, kl, NULL, &c), 0);
    assert_true(mpb_session_id(c) != 0);
    th_assert_dict_roundtrip(c, "libmpb.env", 7);
    mpb_close(&c);
    unsetenv("MPB_ENDPOINT");
}

/* A failed call leaves the stale message of the call before it (a missing key) for a message
 * of its own: for checks made in the client (a NULL argument, a malformed value or argument
 * array) as for the broker's answers. */
#define FRESH(call, code, words)                                                                   \
    do {                                                                                           \
        assert_int_equal(mpb_dict_get(d, k, kn, &val, &vn), MPB_ENOKEY);                           \
        char stale_[512];                                                                          \
        snprintf(stale_, sizeof stale_, "%s", mpb_errmsg(c));                                      \
        assert_int_equal((call), (code));                                                          \
        assert_string_not_equal(mpb_errmsg(c), stale_);                                            \
        if (!strstr(mpb_errmsg(c), (words)))                                                       \
            fail_msg("%s: '%s' does not say '%s'", #call, mpb_errmsg(c), (words));                 \
    } while (0)

static int never(void *arg) {
    (void)arg;
    return 0;
}

static void test_every_error_sets_a_fresh_message(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    mpb_dict_t *d;
    mpb_condition_t *cv;
    mpb_pipe_t *p;
    assert_int_equal(mpb_dict_open(c, "libmpb.fresh", &d), 0);
    assert_int_equal(mpb_condition_open(c, "libmpb.fresh.cv", NULL, &cv), 0);
    assert_int_equal(mpb_pipe_open(c, "libmpb.fresh.pipe", 0, 1, &p), 0);
    uint8_t k[16], notone[] = {0x92, 0x01}; /* an array of 2 with one element */
    size_t kn = mpb_pack_i64(k, 404);
    void *val = NULL;
    size_t vn = 0;
    FRESH(mpb_condition_wait_for(cv, NULL, NULL, 0), MPB_EINVAL, "predicate");
    FRESH(mpb_pipe_recv(p, NULL, NULL, 0), MPB_EINVAL, "val and vlen");
    FRESH(mpb_pipe_open(c, "libmpb.fresh.pipe", 1, 1, NULL), MPB_EINVAL, "out is NULL");
    FRESH(mpb_dict_set(d, notone, sizeof notone, k, kn), MPB_EINVAL, "key is not one");
    FRESH(mpb_dict_set(d, k, kn, notone, sizeof notone), MPB_EINVAL, "value is not one");
    FRESH(mpb_call(c, MPB_OP_DICT_LEN, "libmpb.fresh", k, kn, 0, NULL, NULL), MPB_EINVAL,
          "args must be one msgpack array");
    FRESH(mpb_dict_open(c, "bad name", &(mpb_dict_t *){NULL}), MPB_EINVAL, "bad object name");
    FRESH(mpb_pipe_recv(p, &val, &vn, 0), MPB_EEMPTY, "");
    assert_int_equal(mpb_condition_acquire(cv, 1000, NULL), 0);
    assert_int_equal(mpb_condition_wait_for(cv, never, NULL, 50), 0); /* False, as in Python */
    assert_int_equal(mpb_condition_release(cv), 0);
    FRESH(mpb_condition_release(cv), MPB_ENOTOWNER, "");
    assert_null(val);
    mpb_pipe_close(&p);
    mpb_condition_close(&cv);
    mpb_dict_close(&d);
    th_assert_dict_roundtrip(c, "libmpb.fresh2", 5);
    mpb_close(&c);
}

/* mpb_err_name names every code of the one table, and mpb_strerror describes it. */
static void test_err_name_names_every_code(void **state) {
    (void)state;
    int n = 0;
#define XX(name, code, text)                                                                       \
    assert_string_equal(mpb_err_name(-(code)), #name);                                             \
    assert_string_equal(mpb_strerror(-(code)), text);                                              \
    n++;
    MPB_ERRNO_MAP(XX)
#undef XX
    assert_int_equal(n, 29);
    assert_string_equal(mpb_err_name(MPB_EINVAL), "EINVAL");
    assert_string_equal(mpb_err_name(0), "OK");
    assert_string_equal(mpb_err_name(-1000), "EUNKNOWN");
    assert_string_equal(mpb_err_name(5), "EUNKNOWN");
    assert_int_equal(mpb_version(), MPB_VERSION_HEX);
}

static void test_broker_still_serves_and_exits_cleanly(void **state) {
    (void)state;
    mpb_client_t *c = th_connect(&B);
    th_assert_dict_roundtrip(c, "libmpb", 42);
    mpb_close(&c);
    th_broker_stop_checked(&B);
}

int main(void) {
    th_suite(&B, NULL, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_round_trips),
        cmocka_unit_test(test_every_type_through_the_broker),
        cmocka_unit_test(test_reader_refuses_malformed_input),
        cmocka_unit_test(test_next_reads_every_type),
        cmocka_unit_test(test_builder_writes_the_shortest_header),
        cmocka_unit_test(test_builder_over_callers_memory),
        cmocka_unit_test(test_prefix_says_how_long_a_value_is),
        cmocka_unit_test(test_stream_reader_checks_as_it_reads),
        cmocka_unit_test(test_reading_what_the_broker_answers),
        cmocka_unit_test(test_integer_and_string_shortcuts),
        cmocka_unit_test(test_connect_null_uses_mpb_endpoint),
        cmocka_unit_test(test_every_error_sets_a_fresh_message),
        cmocka_unit_test(test_err_name_names_every_code),
        cmocka_unit_test(test_broker_still_serves_and_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown);
}
