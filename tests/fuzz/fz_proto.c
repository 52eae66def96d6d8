/* fz_proto.c - fuzz harness for proto/: the inbound gates (frame parsing, mpcheck) on any
 * bytes, then the readers, the canonical form, compare, sample and hash on every value that
 * passes them. Properties, besides "no crash, no sanitizer report": a parsed frame lies inside
 * its buffer and its header re-encodes to the same bytes; mp_check, mp_check1 and the reader's
 * spans agree; canon() is valid, canonical, idempotent and leaves canonical input as it is;
 * compare is antisymmetric and a value equals itself. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "mpbproto.h"

/* Every reader on arbitrary bytes: they are bounds-checked, so this must be safe even where
 * no validation ran (the handshake reads bodies with them only after mp_check, but a slip there
 * must not become an overread). */
static void walk_readers(const uint8_t *v, size_t n) {
    mpb__rd_t r = {v, v + n};
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    const char *s;
    const uint8_t *p;
    uint32_t l;
    mpb__rd_t val;
    (void)mpb__rd_type(&r);
    (void)mpb__rd_nil(&r);
    r.p = v;
    (void)mpb__rd_int(&r, &i);
    r.p = v;
    (void)mpb__rd_uint(&r, &u);
    r.p = v;
    (void)mpb__rd_double(&r, &d);
    r.p = v;
    (void)mpb__rd_bool(&r, &b);
    r.p = v;
    if (mpb__rd_str(&r, &s, &l) == 0)
        FZ_CHECK(s >= (const char *)v && s + l <= (const char *)v + n, "str outside its buffer");
    r.p = v;
    if (mpb__rd_bin(&r, &p, &l) == 0) FZ_CHECK(p >= v && p + l <= v + n, "bin outside its buffer");
    r.p = v;
    (void)mpb__rd_array(&r, &l);
    r.p = v;
    (void)mpb__rd_map(&r, &l);
    r.p = v;
    if (mpb__rd_mapget(&r, "nonce", &val) == 0)
        FZ_CHECK(val.p >= v && val.p <= v + n, "mapget outside");
    r.p = v;
    const uint8_t *sp;
    size_t sn;
    if (mpb__rd_span(&r, &sp, &sn) == 0) FZ_CHECK(sp == v && sn <= n, "span outside its buffer");
}

/* Returns whether data is a frame. */
static bool check_frame(const uint8_t *data, size_t len) {
    mpb__frame_t f;
    char err[160];
    if (mpb__frame_parse(data, len, 1 << 20, &f, err, sizeof err) != 0) return false;
    FZ_CHECK(f.body == data + MPB__HDR_LEN, "body does not follow the header");
    FZ_CHECK(f.body + f.bodylen + (f.mac ? MPB__MAC_LEN : 0) == data + len,
             "body and MAC do not fill the frame");
    uint8_t hdr[MPB__HDR_LEN];
    mpb__frame_header(hdr, f.type, f.seq);
    FZ_CHECK(!memcmp(hdr, data, MPB__HDR_LEN), "header does not re-encode to its bytes");
    FZ_CHECK(mpb__frame_parse(data, len, len - 1, &f, err, sizeof err) == MPB_ETOOBIG,
             "a frame over max_frame is not ETOOBIG");
    return true;
}

static void check_value(const uint8_t *v, size_t n, const uint8_t *prev, size_t prevn) {
    FZ_CHECK(mpb__mp_check1(v, n, MPB__MAX_DEPTH) == (long)n, "a span is not one valid value");
    walk_readers(v, n);
    bool is = mpb__canon_is(v, n);
    mpb__buf_t c = {0}, c2 = {0};
    mpb__canon(v, n, &c);
    if (!c.oom) {
        FZ_CHECK(mpb__mp_check1(c.p, c.len, MPB__MAX_DEPTH) == (long)c.len, "canon not valid");
        FZ_CHECK(mpb__canon_is(c.p, c.len), "canon not canonical");
        mpb__canon(c.p, c.len, &c2);
        FZ_CHECK(!c2.oom && c2.len == c.len && !memcmp(c.p, c2.p, c.len), "canon not idempotent");
        FZ_CHECK(!is || (c.len == n && !memcmp(c.p, v, n)), "canon_is, but canon changed it");
    }
    char s[64];
    mpb__mp_sample(v, n, s, sizeof s);
    FZ_CHECK(memchr(s, 0, sizeof s), "sample not terminated");
    mpb__mp_sample(v, n, s, 3);
    FZ_CHECK(memchr(s, 0, 3), "sample not terminated in 3 bytes");
    mpb__mp_sample(v, n, s, 1);
    FZ_CHECK(s[0] == 0, "sample not empty in 1 byte");
    char e[160];
    int z = 1;
    /* A value equals itself; NaN compares as 0 too (it is neither less nor
     * greater). */
    if (mpb__mp_compare(v, n, v, n, &z, e, sizeof e) == 0) FZ_CHECK(z == 0, "self compare %d", z);
    if (prev) {
        int x = 0, y = 0;
        int r1 = mpb__mp_compare(prev, prevn, v, n, &x, e, sizeof e);
        int r2 = mpb__mp_compare(v, n, prev, prevn, &y, e, sizeof e);
        FZ_CHECK(r1 == r2, "compare succeeds one way only (%d, %d)", r1, r2);
        FZ_CHECK(r1 || (x > 0) - (x < 0) == -((y > 0) - (y < 0)),
                 "compare not antisymmetric (%d, %d)", x, y);
    }
    (void)mpb__hash(v, n);
    mpb__buf_free(&c);
    mpb__buf_free(&c2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    bool framed = check_frame(data, len);
    if (len) walk_readers(data, len);
    int depth = len ? data[0] % 40 : MPB__MAX_DEPTH;
    long one = mpb__mp_check1(data, len, depth);
    FZ_CHECK(one == MPB_EPROTO || (one > 0 && (size_t)one <= len), "check1 returned %ld", one);
    if (mpb__mp_check(data, len, MPB__MAX_DEPTH) != 0) return framed ? 0 : -1;
    /* A valid sequence: the reader's spans cover it exactly, each one value per
     * check1. */
    mpb__rd_t r = {data, data + len};
    const uint8_t *prev = NULL;
    size_t prevn = 0, seen = 0;
    while (mpb__rd_more(&r)) { /* bounded: each span consumes at least one byte */
        const uint8_t *v;
        size_t n;
        FZ_CHECK(mpb__rd_span(&r, &v, &n) == 0 && n > 0, "span failed on checked bytes");
        FZ_CHECK(mpb__mp_check1(v, len - (size_t)(v - data), MPB__MAX_DEPTH) == (long)n,
                 "check1 and span disagree");
        check_value(v, n, prev, prevn);
        prev = v;
        prevn = n;
        seen += n;
    }
    FZ_CHECK(seen == len, "spans cover %zu of %zu bytes", seen, len);
    return 0;
}

/* ---- seeds for driver.c ---- */

static void add_frame(void (*add)(const void *, size_t), uint8_t type, const mpb__buf_t *body,
                      bool sealed) {
    mpb__buf_t f = {0};
    uint8_t hdr[MPB__HDR_LEN];
    mpb__frame_header(hdr, type, 7);
    mpb__w_raw(&f, hdr, sizeof hdr);
    mpb__w_raw(&f, body->p, body->len);
    if (sealed) mpb__w_raw(&f, "0123456789abcdef", MPB__MAC_LEN);
    if (!f.oom) add(f.p, f.len);
    mpb__buf_free(&f);
}

void fz_seeds(void (*add)(const void *p, size_t n)) {
    mpb__buf_t b = {0};
    /* HELLO {"v": 1, "nonce": bin 32} */
    uint8_t nonce[MPB__NONCE_LEN] = {1, 2, 3};
    mpb__w_map(&b, 2);
    mpb__w_cstr(&b, "v");
    mpb__w_int(&b, 1);
    mpb__w_cstr(&b, "nonce");
    mpb__w_bin(&b, nonce, sizeof nonce);
    add_frame(add, MPB__T_HELLO, &b, false);
    add(b.p, b.len);
    /* A REQ batch of two requests: [rid, op, name, args...] each. */
    mpb__buf_reset(&b);
    mpb__w_array(&b, 4);
    mpb__w_int(&b, 1);
    mpb__w_int(&b, MPB_OP_DICT_SET);
    mpb__w_cstr(&b, "users");
    mpb__w_array(&b, 2);
    mpb__w_cstr(&b, "alice");
    mpb__w_map(&b, 1);
    mpb__w_cstr(&b, "age");
    mpb__w_int(&b, 30);
    mpb__w_array(&b, 3);
    mpb__w_int(&b, 2);
    mpb__w_int(&b, MPB_OP_DICT_GET);
    mpb__w_cstr(&b, "users");
    add_frame(add, MPB__T_REQ, &b, true);
    add(b.p, b.len);
    /* Values of every type and width, for canon and compare. */
    mpb__buf_reset(&b);
    mpb__w_nil(&b);
    mpb__w_bool(&b, true);
    mpb__w_int(&b, -1);
    mpb__w_int(&b, 200);
    mpb__w_int(&b, -40000);
    mpb__w_int(&b, INT64_MIN);
    mpb__w_uint(&b, UINT64_MAX);
    mpb__w_double(&b, 1.5);
    mpb__w_double(&b, NAN);
    mpb__w_cstr(&b, "text");
    mpb__w_bin(&b, "\0\1", 2);
    mpb__w_array(&b, 2);
    mpb__w_int(&b, 1);
    mpb__w_cstr(&b, "a");
    add(b.p, b.len);
    mpb__buf_free(&b);
    /* Non-canonical and hostile encodings, written out. */
    static const fz_token_t raw[] = {
        {"\xd0\x05",                                   2 }, /* int8 5: canonical is fixint */
        {"\xcd\x00\x05",                               3 }, /* uint16 5 */
        {"\xca\x3f\xc0\x00\x00",                       5 }, /* float32 1.5 */
        {"\xd9\x01\x61",                               3 }, /* str8 "a" */
        {"\xdc\x00\x01\x01",                           4 }, /* array16 [1] */
        {"\xde\x00\x01\xa1\x61\x01",                   6 }, /* map16 {"a": 1} */
        {"\xdd\xff\xff\xff\xff",                       5 }, /* array32 of 4G elements, none there */
        {"\xc1",                                       1 }, /* reserved */
        {"\xd6\x01\x00\x00\x00\x00",                   6 }, /* fixext4 */
        {"\xc7\x02\x05\xaa\xbb",                       5 }, /* ext8 */
        {"MB\x01\x05\x00\x00\x00\x00\x00\x00\x00\x01", 12}, /* sealed, no MAC */
    };
    fz_add_each(add, raw, sizeof raw / sizeof *raw);
}

const fz_token_t fz_tokens[] = {
    FZ_TOK("\xc0"),
    FZ_TOK("\xc2"),
    FZ_TOK("\xc3"),
    FZ_TOK("\xcc\xff"),
    FZ_TOK("\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),
    FZ_TOK("\xd3\x80\x00\x00\x00\x00\x00\x00\x00"),
    FZ_TOK("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x01"),
    FZ_TOK("\xa0"),
    FZ_TOK("\xbf"),
    FZ_TOK("\xd9\xff"),
    FZ_TOK("\xda\xff\xff"),
    FZ_TOK("\xdb\xff\xff\xff\xff"),
    FZ_TOK("\xc4\x10"),
    FZ_TOK("\xc6\x00\x00\x00\x20"),
    FZ_TOK("\x90"),
    FZ_TOK("\x9f"),
    FZ_TOK("\xdc\xff\xff"),
    FZ_TOK("\xdd\x00\x00\x00\x02"),
    FZ_TOK("\x80"),
    FZ_TOK("\x8f"),
    FZ_TOK("\xde\x00\x02"),
    FZ_TOK("\xdf\x00\x00\x00\x02"),
    FZ_TOK("\xd4\x00"),
    FZ_TOK("\xd8\x7f"),
    FZ_TOK("\xc9\x00\x00\x00\x01\x00"),
    FZ_TOK("MB\x01"),
    FZ_TOK("\x91\x91\x91\x91\x91\x91\x91\x91"),
    {NULL, 0},
};
