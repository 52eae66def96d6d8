/* test_seal.c - the mpb:// encryption of PROTOCOL.md section 1 (proto/seal.c): the vectors are
 * read from the specification itself; a frame changed in any byte, replayed, reflected or
 * sealed under another authkey does not open. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpbproto.h"
#include "spec.h"

#define BLOCK "mpb:// stream vectors"

static void v(const char *name, uint8_t *out, size_t n) {
    spec_named_hex(BLOCK, name, out, n);
}

/* Both ends greeted with the spec's ephemeral keys and keyed with authkey "secret-key". */
static void pair(mpb__seal_t *cl, mpb__seal_t *br, uint8_t gc[MPB__GREET_LEN],
                 uint8_t gb[MPB__GREET_LEN]) {
    uint8_t sc[32], sb[32];
    v("client ephemeral secret", sc, 32);
    v("broker ephemeral secret", sb, 32);
    memset(cl, 0, sizeof *cl);
    memset(br, 0, sizeof *br);
    assert_int_equal(mpb__seal_greet_with(cl, sc, gc), 0);
    assert_int_equal(mpb__seal_greet_with(br, sb, gb), 0);
    assert_int_equal(mpb__seal_keys(cl, "secret-key", 10, false, gb), 0);
    assert_int_equal(mpb__seal_keys(br, "secret-key", 10, true, gc), 0);
}

static void test_vectors_match_the_spec(void **state) {
    (void)state;
    mpb__seal_t cl, br;
    uint8_t gc[MPB__GREET_LEN], gb[MPB__GREET_LEN], want[64];
    pair(&cl, &br, gc, gb);
    v("client greeting", want, MPB__GREET_LEN);
    assert_memory_equal(gc, want, MPB__GREET_LEN);
    v("broker greeting", want, MPB__GREET_LEN);
    assert_memory_equal(gb, want, MPB__GREET_LEN);
    /* the keys as the text derives them: HKDF of X25519(...) || authkey, salted with both keys */
    uint8_t shared[32], ikm[42], salt[64], okm[64];
    v("shared secret", shared, 32);
    memcpy(ikm, shared, 32);
    memcpy(ikm + 32, "secret-key", 10);
    memcpy(salt, gc + 4, 32);
    memcpy(salt + 32, gb + 4, 32);
    assert_int_equal(mpb__hkdf(ikm, sizeof ikm, salt, sizeof salt, "mpb1 stream", okm, 64), 0);
    v("key client to broker", want, 32);
    assert_memory_equal(okm, want, 32);
    v("key broker to client", want, 32);
    assert_memory_equal(okm + 32, want, 32);
    /* the first two frames each way */
    const char *msgs[2] = {"hello", "world!"};
    const char *cnames[2] = {"client frame 0", "client frame 1"};
    const char *bnames[2] = {"broker frame 0", "broker frame 1"};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(msgs[i]);
        uint8_t out[64];
        assert_int_equal(mpb__seal(&cl, (const uint8_t *)msgs[i], n, out), 0);
        v(cnames[i], want, 4 + n + 16);
        assert_memory_equal(out, want, 4 + n + 16);
        assert_int_equal(mpb__seal_open(&br, out, 4 + n + 16), 0);
        assert_memory_equal(out + 4, msgs[i], n);
        assert_int_equal(mpb__seal(&br, (const uint8_t *)msgs[i], n, out), 0);
        v(bnames[i], want, 4 + n + 16);
        assert_memory_equal(out, want, 4 + n + 16);
        assert_int_equal(mpb__seal_open(&cl, out, 4 + n + 16), 0);
    }
    mpb__seal_free(&cl);
    mpb__seal_free(&br);
}

static void test_changed_replayed_reflected_frames_do_not_open(void **state) {
    (void)state;
    mpb__seal_t cl, br;
    uint8_t gc[MPB__GREET_LEN], gb[MPB__GREET_LEN];
    pair(&cl, &br, gc, gb);
    uint8_t f[4 + 8 + 16], g[sizeof f];
    assert_int_equal(mpb__seal(&cl, (const uint8_t *)"12345678", 8, f), 0);
    for (size_t i = 0; i < sizeof f; i++) { /* every byte, length included */
        memcpy(g, f, sizeof f);
        g[i] ^= 0x01;
        mpb__seal_t b2 = br; /* the same keys and counter: only the byte differs */
        assert_int_not_equal(mpb__seal_open(&b2, g, sizeof g), 0);
        br.nrx = 0;
    }
    memcpy(g, f, sizeof f);
    assert_int_equal(mpb__seal_open(&br, g, sizeof g), 0);
    memcpy(g, f, sizeof f);
    assert_int_not_equal(mpb__seal_open(&br, g, sizeof g), 0); /* replayed: the next nonce */
    memcpy(g, f, sizeof f);
    assert_int_not_equal(mpb__seal_open(&cl, g, sizeof g), 0); /* back to its sender */
    assert_int_not_equal(mpb__seal_open(&br, g, 4 + 15), 0);   /* shorter than a tag */
    mpb__seal_free(&cl);
    mpb__seal_free(&br);
}

static void test_another_authkey_makes_other_keys(void **state) {
    (void)state;
    mpb__seal_t cl = {0}, br = {0};
    uint8_t gc[MPB__GREET_LEN], gb[MPB__GREET_LEN], f[4 + 5 + 16];
    assert_int_equal(mpb__seal_greet(&cl, gc), 0);
    assert_int_equal(mpb__seal_greet(&br, gb), 0);
    assert_int_equal(mpb__seal_keys(&cl, "secret-kez", 10, false, gb), 0);
    assert_int_equal(mpb__seal_keys(&br, "secret-key", 10, true, gc), 0);
    assert_int_equal(mpb__seal(&cl, (const uint8_t *)"hello", 5, f), 0);
    assert_int_not_equal(mpb__seal_open(&br, f, sizeof f), 0);
    mpb__seal_free(&cl);
    mpb__seal_free(&br);
}

static void test_greetings_that_are_not_refused(void **state) {
    (void)state;
    mpb__seal_t s = {0};
    uint8_t g[MPB__GREET_LEN], bad[MPB__GREET_LEN];
    assert_int_equal(mpb__seal_greet(&s, g), 0);
    memcpy(bad, g, sizeof bad);
    bad[0] = 'X'; /* not "MPB1" */
    assert_int_equal(mpb__seal_keys(&s, "k", 1, true, bad), MPB_EPROTO);
    memcpy(bad, "MPB1", 4);
    memset(bad + 4, 0, 32); /* a low-order point: the shared secret would be all zeros */
    assert_int_equal(mpb__seal_keys(&s, "k", 1, true, bad), MPB_EPROTO);
    mpb__seal_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_match_the_spec),
        cmocka_unit_test(test_changed_replayed_reflected_frames_do_not_open),
        cmocka_unit_test(test_another_authkey_makes_other_keys),
        cmocka_unit_test(test_greetings_that_are_not_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
