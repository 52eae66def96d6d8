/* test_curve.c - the CURVE key derivation of PROTOCOL.md section 1: the vectors are read from
 * the specification itself (so the text and the code cannot drift apart), and the public keys
 * are checked against libzmq's own zmq_curve_public(), which is what the transport uses. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "mpbproto.h"
#include "spec.h"

/* One "name  hex" line of the CURVE vectors block, by name; the hex is 64 digits. */
static void spec_value(const char *name, uint8_t out[32]) {
    spec_named_hex("CURVE key vectors", name, out, 32);
}

static void spec_authkey(char *out, size_t n) {
    FILE *f = fopen(MPB_PROTOCOL_MD, "r");
    assert_non_null(f);
    char line[512];
    bool in_block = false;
    out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "CURVE key vectors")) in_block = true;
        if (in_block && strncmp(line, "authkey ", 8) == 0) {
            const char *p = line + 8;
            while (*p == ' ')
                p++;
            size_t len = strcspn(p, " \n");
            if (len >= n) fail_msg("authkey vector of %zu characters > %zu", len, n - 1);
            memcpy(out, p, len);
            out[len] = 0;
            break;
        }
    }
    fclose(f);
    assert_true(out[0] != 0);
}

static void test_curve_keys_match_the_spec(void **state) {
    (void)state;
    char key[128];
    spec_authkey(key, sizeof key);
    mpb__curve_t k;
    assert_int_equal(mpb__curve_keys(key, strlen(key), &k), 0);
    uint8_t want[32];
    spec_value("broker secret", want);
    assert_memory_equal(k.broker_sec, want, 32);
    spec_value("broker public", want);
    assert_memory_equal(k.broker_pub, want, 32);
    spec_value("client secret", want);
    assert_memory_equal(k.client_sec, want, 32);
    spec_value("client public", want);
    assert_memory_equal(k.client_pub, want, 32);
}

/* libzmq derives a public key from a Z85 secret; ours must be the same key. */
static void check_with_zmq(const uint8_t sec[32], const uint8_t pub[32]) {
    char zsec[41], zpub[41], want[41];
    assert_non_null(zmq_z85_encode(zsec, sec, 32));
    assert_int_equal(zmq_curve_public(zpub, zsec), 0);
    assert_non_null(zmq_z85_encode(want, pub, 32));
    assert_string_equal(zpub, want);
}

static void test_curve_public_keys_agree_with_libzmq(void **state) {
    (void)state;
    if (!zmq_has("curve")) skip();
    const char *keys[] = {"secret-key", "k", "a longer authkey of 48 bytes...................."};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        mpb__curve_t k;
        assert_int_equal(mpb__curve_keys(keys[i], strlen(keys[i]), &k), 0);
        check_with_zmq(k.broker_sec, k.broker_pub);
        check_with_zmq(k.client_sec, k.client_pub);
        assert_memory_not_equal(k.broker_sec, k.client_sec, 32);
    }
}

static void test_curve_keys_differ_by_authkey(void **state) {
    (void)state;
    mpb__curve_t a, b;
    assert_int_equal(mpb__curve_keys("secret-key", 10, &a), 0);
    assert_int_equal(mpb__curve_keys("secret-kez", 10, &b), 0);
    assert_memory_not_equal(a.client_pub, b.client_pub, 32);
    assert_memory_not_equal(a.broker_pub, b.broker_pub, 32);
    mpb__curve_wipe(&a);
    uint8_t zero[sizeof a] = {0};
    assert_memory_equal(&a, zero, sizeof a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curve_keys_match_the_spec),
        cmocka_unit_test(test_curve_public_keys_agree_with_libzmq),
        cmocka_unit_test(test_curve_keys_differ_by_authkey),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
