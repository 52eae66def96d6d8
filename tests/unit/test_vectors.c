/* test_vectors.c - the byte-exact examples of proto/PROTOCOL.md, read out of the file itself at
 * run time, so the specification and the code cannot drift apart (an edit of either fails
 * here): the direction keys, and a sealed request and a sealed reply under them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "mpbproto.h"
#include "spec.h"

#define EXAMPLES "## 8. Examples"

static const char *AUTHKEY = "secret-key";

static void keys(uint8_t c2s[32], uint8_t s2c[32]) {
    uint8_t nc[32], nb[32];
    for (int i = 0; i < 32; i++)
        nc[i] = (uint8_t)i, nb[i] = (uint8_t)(32 + i);
    assert_int_equal(mpb__auth_keys(AUTHKEY, strlen(AUTHKEY), nc, nb, c2s, s2c), 0);
    uint8_t want[32];
    spec_named_hex(EXAMPLES, "c2s ", want, 32);
    assert_memory_equal(c2s, want, 32);
    spec_named_hex(EXAMPLES, "s2c ", want, 32);
    assert_memory_equal(s2c, want, 32);
}

/* Builds header + body + MAC the way both sides do and compares with the bytes of the example
 * that follows the line of PROTOCOL.md containing example. */
static void check_frame(uint8_t type, uint64_t seq, const uint8_t *body, size_t n,
                        const uint8_t key[32], const char *example) {
    uint8_t frame[128], want[128];
    size_t len = MPB__HDR_LEN + n + MPB__MAC_LEN;
    size_t wn = spec_block_hex(example, want, sizeof want);
    mpb__frame_header(frame, type, seq);
    memcpy(frame + MPB__HDR_LEN, body, n);
    mpb__mac_t *m = mpb__mac_new(key);
    assert_non_null(m);
    assert_int_equal(mpb__mac_sign(m, frame, MPB__HDR_LEN + n, frame + MPB__HDR_LEN + n), 0);
    assert_int_equal(wn, len);
    assert_memory_equal(frame, want, len);
    mpb__frame_t f;
    char err[100];
    assert_int_equal(mpb__frame_parse(want, len, 1 << 20, &f, err, sizeof err), 0);
    assert_int_equal(f.type, type);
    assert_int_equal(f.seq, seq);
    assert_true(mpb__mac_verify(m, want, len - MPB__MAC_LEN, f.mac));
    mpb__mac_free(&m);
}

static void test_vectors_request_frame(void **state) {
    (void)state;
    uint8_t c2s[32], s2c[32];
    keys(c2s, s2c);
    /* [1, 18 (dict.get), "users", "alice"] */
    const uint8_t body[] = {0x94, 0x01, 0x12, 0xa5, 'u', 's', 'e', 'r',
                            's',  0xa5, 'a',  'l',  'i', 'c', 'e'};
    check_frame(MPB__T_REQ, 1, body, sizeof body, c2s, "A REQ with sequence 1 carrying");
}

static void test_vectors_reply_frame(void **state) {
    (void)state;
    uint8_t c2s[32], s2c[32];
    keys(c2s, s2c);
    /* [1, 0, {"age": 30}] */
    const uint8_t body[] = {0x93, 0x01, 0x00, 0x81, 0xa3, 'a', 'g', 'e', 0x1e};
    check_frame(MPB__T_REP, 2, body, sizeof body, s2c, "Its REP with sequence 2 carrying");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_request_frame),
        cmocka_unit_test(test_vectors_reply_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
