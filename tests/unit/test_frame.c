/* test_frame.c - the fixed frame header and the first gates of an inbound frame: size, magic,
 * version, type, room for the MAC; the replay gate on sequence numbers; op and error names;
 * object names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mpbproto.h"

/* A frame of the given type and seq with body bytes after the header. */
static size_t make_frame(uint8_t *out, uint8_t type, uint64_t seq, const void *body, size_t n) {
    mpb__frame_header(out, type, seq);
    if (n) memcpy(out + MPB__HDR_LEN, body, n);
    return MPB__HDR_LEN + n;
}

static void test_frame_header_bytes(void **state) {
    (void)state;
    uint8_t h[MPB__HDR_LEN];
    mpb__frame_header(h, MPB__T_REQ, 0x0102030405060708ULL);
    const uint8_t want[] = {'M', 'B', MPB__PROTO_VERSION, MPB__T_REQ, 1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(h, want, sizeof want);
}

static void test_frame_roundtrip_plain(void **state) {
    (void)state;
    const uint64_t seqs[] = {
        0, 1, 255, 256, 0x0102030405060708ULL, UINT64_MAX, 0x8000000000000000ULL};
    const uint8_t types[] = {MPB__T_HELLO, MPB__T_CHALLENGE, MPB__T_AUTH, MPB__T_ERROR};
    uint8_t buf[64];
    for (size_t t = 0; t < sizeof types; t++) {
        for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
            size_t n = make_frame(buf, types[t], seqs[i], "\x91\x01", 2);
            mpb__frame_t f;
            char err[128] = "";
            assert_int_equal(mpb__frame_parse(buf, n, 1024, &f, err, sizeof err), 0);
            assert_int_equal(f.type, types[t]);
            assert_true(f.seq == seqs[i]);
            assert_ptr_equal(f.body, buf + MPB__HDR_LEN);
            assert_int_equal(f.bodylen, 2);
            assert_null(f.mac);
        }
    }
}

static void test_frame_roundtrip_sealed(void **state) {
    (void)state;
    const uint8_t types[] = {MPB__T_WELCOME, MPB__T_REQ, MPB__T_REP};
    uint8_t buf[64], body[3 + MPB__MAC_LEN];
    memcpy(body, "\x92\x01\x02", 3);
    for (int i = 0; i < MPB__MAC_LEN; i++)
        body[3 + i] = (uint8_t)(0xa0 + i);
    for (size_t t = 0; t < sizeof types; t++) {
        assert_true(mpb__type_sealed(types[t]));
        size_t n = make_frame(buf, types[t], 42, body, sizeof body);
        mpb__frame_t f;
        char err[128] = "";
        assert_int_equal(mpb__frame_parse(buf, n, 1024, &f, err, sizeof err), 0);
        assert_int_equal(f.type, types[t]);
        assert_true(f.seq == 42);
        assert_ptr_equal(f.body, buf + MPB__HDR_LEN);
        assert_int_equal(f.bodylen, 3);
        assert_ptr_equal(f.mac, buf + MPB__HDR_LEN + 3);
        assert_memory_equal(f.mac, body + 3, MPB__MAC_LEN);
    }
    assert_false(mpb__type_sealed(MPB__T_HELLO));
    assert_false(mpb__type_sealed(MPB__T_CHALLENGE));
    assert_false(mpb__type_sealed(MPB__T_AUTH));
    assert_false(mpb__type_sealed(MPB__T_ERROR));
}

static void test_frame_sealed_needs_mac_room(void **state) {
    (void)state;
    uint8_t buf[64] = {0};
    mpb__frame_t f;
    char err[128];
    /* header only, and header + 15 bytes: no room for a 16-byte MAC */
    for (size_t extra = 0; extra < MPB__MAC_LEN; extra++) {
        mpb__frame_header(buf, MPB__T_REQ, 1);
        err[0] = 0;
        assert_int_equal(mpb__frame_parse(buf, MPB__HDR_LEN + extra, 1024, &f, err, sizeof err),
                         MPB_EPROTO);
        assert_non_null(strstr(err, "MAC"));
    }
    /* exactly a MAC and an empty body is well formed */
    assert_int_equal(mpb__frame_parse(buf, MPB__HDR_LEN + MPB__MAC_LEN, 1024, &f, err, sizeof err),
                     0);
    assert_int_equal(f.bodylen, 0);
    assert_ptr_equal(f.mac, buf + MPB__HDR_LEN);
    /* a plain frame may have an empty body */
    mpb__frame_header(buf, MPB__T_HELLO, 1);
    assert_int_equal(mpb__frame_parse(buf, MPB__HDR_LEN, 1024, &f, err, sizeof err), 0);
    assert_int_equal(f.bodylen, 0);
    assert_null(f.mac);
}

static void test_frame_too_big(void **state) {
    (void)state;
    uint8_t buf[128];
    size_t n = make_frame(buf, MPB__T_HELLO, 7, "\xc0\xc0\xc0\xc0", 4); /* 16 bytes */
    mpb__frame_t f;
    char err[128] = "";
    assert_int_equal(mpb__frame_parse(buf, n, 15, &f, err, sizeof err), MPB_ETOOBIG);
    assert_string_equal(err, "frame of 16 bytes > max_frame 15");
    assert_int_equal(mpb__frame_parse(buf, n, 16, &f, err, sizeof err), 0);
    /* size is the first gate: garbage that is too big is ETOOBIG, not EPROTO */
    memset(buf, 0xee, sizeof buf);
    assert_int_equal(mpb__frame_parse(buf, sizeof buf, 100, &f, err, sizeof err), MPB_ETOOBIG);
    assert_string_equal(err, "frame of 128 bytes > max_frame 100");
    /* the message of the design document */
    static uint8_t big[9000000];
    assert_int_equal(mpb__frame_parse(big, sizeof big, 8388608, &f, err, sizeof err), MPB_ETOOBIG);
    assert_string_equal(err, "frame of 9000000 bytes > max_frame 8388608");
}

static void test_frame_bad_magic(void **state) {
    (void)state;
    uint8_t buf[64];
    mpb__frame_t f;
    char err[128];
    size_t n = make_frame(buf, MPB__T_HELLO, 1, "\xc0", 1);
    buf[0] = 'X';
    assert_int_equal(mpb__frame_parse(buf, n, 1024, &f, err, sizeof err), MPB_EPROTO);
    buf[0] = 'M';
    buf[1] = 'b';
    assert_int_equal(mpb__frame_parse(buf, n, 1024, &f, err, sizeof err), MPB_EPROTO);
    buf[1] = 'B';
    assert_int_equal(mpb__frame_parse(buf, n, 1024, &f, err, sizeof err), 0);
    /* shorter than a header, even with the right magic */
    for (size_t len = 0; len < MPB__HDR_LEN; len++) {
        err[0] = 0;
        assert_int_equal(mpb__frame_parse(buf, len, 1024, &f, err, sizeof err), MPB_EPROTO);
        assert_true(strlen(err) > 0);
    }
}

static void test_frame_bad_version(void **state) {
    (void)state;
    uint8_t buf[64];
    mpb__frame_t f;
    char err[128] = "";
    size_t n = make_frame(buf, MPB__T_HELLO, 1, "\xc0", 1);
    const uint8_t bad[] = {0, MPB__PROTO_VERSION + 1, 0xff};
    for (size_t i = 0; i < sizeof bad; i++) {
        buf[2] = bad[i];
        assert_int_equal(mpb__frame_parse(buf, n, 1024, &f, err, sizeof err), MPB_EPROTO);
        assert_non_null(strstr(err, "version"));
    }
}

static void test_frame_bad_type(void **state) {
    (void)state;
    uint8_t buf[64];
    mpb__frame_t f;
    char err[128] = "";
    for (unsigned t = 0; t < 256; t++) {
        size_t n = make_frame(buf, (uint8_t)t, 1,
                              "\xc0\x00\x01\x02\x03\x04\x05\x06\x07\x08"
                              "\x09\x0a\x0b\x0c\x0d\x0e\x0f",
                              17);
        int rc = mpb__frame_parse(buf, n, 1024, &f, err, sizeof err);
        if (t >= MPB__T_HELLO && t <= MPB__T_ERROR) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, MPB_EPROTO);
            char want[64];
            snprintf(want, sizeof want, "unknown frame type %u", t);
            assert_string_equal(err, want);
        }
    }
}

static void test_frame_op_and_err_names(void **state) {
    (void)state;
    assert_string_equal(mpb__op_name(MPB_OP_PING), "ping");
    assert_string_equal(mpb__op_name(MPB_OP_DICT_GET), "dict.get");
    assert_string_equal(mpb__op_name(MPB_OP_LIST_CLEAR), "list.clear");
    assert_null(mpb__op_name(0));
    assert_null(mpb__op_name(255));
    assert_null(mpb__op_name(256));
    assert_null(mpb__op_name(100000));
    assert_string_equal(mpb__err_name(-MPB_ENOKEY), "ENOKEY");
    assert_string_equal(mpb__err_name(-MPB_ETOOBIG), "ETOOBIG");
    assert_string_equal(mpb__err_name(-MPB_EPROTO), "EPROTO");
    assert_null(mpb__err_name(0));
    assert_null(mpb__err_name(MPB_ENOKEY)); /* wire codes are positive */
    assert_null(mpb__err_name(100000));
}

static void test_frame_name_ok(void **state) {
    (void)state;
    assert_true(mpb__name_ok("users", 5));
    assert_true(mpb__name_ok("a", 1));
    assert_true(mpb__name_ok("~!@#", 4));
    assert_false(mpb__name_ok("", 0));
    assert_false(mpb__name_ok("a b", 3));
    assert_false(mpb__name_ok("a/b", 3));
    assert_false(mpb__name_ok("a\tb", 3));
    assert_false(mpb__name_ok("a\x7f", 2));
    assert_false(mpb__name_ok("\xc3\xa9", 2));
    assert_false(mpb__name_ok("a\0b", 3));
    char name[257];
    memset(name, 'x', sizeof name);
    assert_true(mpb__name_ok(name, 255));
    assert_false(mpb__name_ok(name, 256));
}

/* ---- the replay gate: strictly increasing, skips allowed ---- */

static void test_seq_accept_higher_and_skips(void **state) {
    (void)state;
    uint64_t last = 0;
    assert_int_equal(mpb__seq_accept(&last, 1), 0);
    assert_int_equal(last, 1);
    assert_int_equal(mpb__seq_accept(&last, 2), 0);
    assert_int_equal(last, 2);
    assert_int_equal(mpb__seq_accept(&last, 1000), 0); /* a skip is fine */
    assert_int_equal(last, 1000);
    assert_int_equal(mpb__seq_accept(&last, 1001), 0);
    assert_int_equal(last, 1001);
}

static void test_seq_accept_rejects_replayed_numbers(void **state) {
    (void)state;
    uint64_t last = 0;
    assert_int_equal(mpb__seq_accept(&last, 0), MPB_EREPLAY); /* sealed frames start at 1 */
    assert_int_equal(last, 0);
    assert_int_equal(mpb__seq_accept(&last, 5), 0);
    assert_int_equal(mpb__seq_accept(&last, 5), MPB_EREPLAY); /* equal: the same frame again */
    assert_int_equal(last, 5);
    assert_int_equal(mpb__seq_accept(&last, 4), MPB_EREPLAY); /* lower: an older frame */
    assert_int_equal(mpb__seq_accept(&last, 1), MPB_EREPLAY);
    assert_int_equal(mpb__seq_accept(&last, 0), MPB_EREPLAY);
    assert_int_equal(last, 5); /* a rejected number moves nothing */
    /* after a skip, the numbers skipped over are gone for good */
    assert_int_equal(mpb__seq_accept(&last, 9), 0);
    for (uint64_t s = 0; s <= 9; s++)
        assert_int_equal(mpb__seq_accept(&last, s), MPB_EREPLAY);
    assert_int_equal(mpb__seq_accept(&last, 10), 0);
}

static void test_seq_accept_uint64_edges(void **state) {
    (void)state;
    uint64_t last = UINT64_MAX - 2;
    assert_int_equal(mpb__seq_accept(&last, UINT64_MAX - 1), 0);
    assert_int_equal(mpb__seq_accept(&last, UINT64_MAX), 0);
    assert_int_equal(last, UINT64_MAX);
    /* the window is spent: nothing is accepted again, nothing wraps around to 0 */
    assert_int_equal(mpb__seq_accept(&last, UINT64_MAX), MPB_EREPLAY);
    assert_int_equal(mpb__seq_accept(&last, 0), MPB_EREPLAY);
    assert_int_equal(mpb__seq_accept(&last, 1), MPB_EREPLAY);
    assert_int_equal(last, UINT64_MAX);
    last = 0;
    assert_int_equal(mpb__seq_accept(&last, UINT64_MAX), 0); /* one jump to the end */
    assert_int_equal(mpb__seq_accept(&last, UINT64_MAX - 1), MPB_EREPLAY);
    /* the top bit is a number like any other, not a sign */
    last = (uint64_t)INT64_MAX;
    assert_int_equal(mpb__seq_accept(&last, (uint64_t)INT64_MAX + 1), 0);
    assert_int_equal(mpb__seq_accept(&last, (uint64_t)INT64_MAX), MPB_EREPLAY);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_header_bytes),
        cmocka_unit_test(test_frame_roundtrip_plain),
        cmocka_unit_test(test_frame_roundtrip_sealed),
        cmocka_unit_test(test_frame_sealed_needs_mac_room),
        cmocka_unit_test(test_frame_too_big),
        cmocka_unit_test(test_frame_bad_magic),
        cmocka_unit_test(test_frame_bad_version),
        cmocka_unit_test(test_frame_bad_type),
        cmocka_unit_test(test_frame_op_and_err_names),
        cmocka_unit_test(test_frame_name_ok),
        cmocka_unit_test(test_seq_accept_higher_and_skips),
        cmocka_unit_test(test_seq_accept_rejects_replayed_numbers),
        cmocka_unit_test(test_seq_accept_uint64_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
