/* test_auth.c - the authkey handshake (proofs both ways, session keys) and per-message MACs,
 * checked against OpenSSL's one-shot HMAC() and published vectors, and played end to end.
 *
 * Test vectors (proto/PROTOCOL.md), authkey "secret-key" (10 ASCII bytes),
 * nonce_c = 00 01 02 .. 1f, nonce_b = 20 21 22 .. 3f (32 bytes each):
 *   server proof = HMAC-SHA256(authkey, "mpb1 server" || nonce_c || nonce_b)
 *     6383307b22797a5817d9b0e93cebc58ce4fc1c001024eb5855bc988a5bd87d52
 *   client proof = HMAC-SHA256(authkey, "mpb1 client" || nonce_c || nonce_b)
 *     127ce6a4a37e02a2ac17c99f1982d5ab76ccaf2df7eafd82f2d4e7377326704e
 *   HKDF-SHA256 PRK = HMAC-SHA256(nonce_c || nonce_b, authkey)
 *     558d9d82ad7d3cb503b79b0090f2d3fa301a89352a7ceb1640a055a102d239e2
 *   c2s = HKDF-Expand(PRK, "mpb1 c2s", 32)
 *     5d608589271082f1ea7dbeadc08e99dc8bb132fe793db26daa7a454dbcc74be8
 *   s2c = HKDF-Expand(PRK, "mpb1 s2c", 32)
 *     ead9e27980b92f8a0ae223b067b9c59ebd3dac790355859e68fe78dc1d0b1da1
 *   MAC under c2s of the 5 bytes "hello" = HMAC-SHA256(c2s, "hello")[0:16]
 *     d6f88c356f473d4fd70ede47d2e50aa1
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "mpbproto.h"

static const char authkey[] = "secret-key";
#define AUTHKEY_LEN 10

static void nonces(uint8_t nc[MPB__NONCE_LEN], uint8_t nb[MPB__NONCE_LEN]) {
    for (int i = 0; i < MPB__NONCE_LEN; i++) {
        nc[i] = (uint8_t)i;
        nb[i] = (uint8_t)(0x20 + i);
    }
}

static void unhex(const char *s, uint8_t *out, size_t n) {
    assert_int_equal(strlen(s), 2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void expect_hex(const uint8_t *got, size_t n, const char *hex) {
    uint8_t want[64];
    assert_true(n <= sizeof want);
    unhex(hex, want, n);
    if (memcmp(got, want, n)) {
        char h[129];
        for (size_t i = 0; i < n; i++)
            snprintf(h + 2 * i, 3, "%02x", got[i]);
        print_error("got  %s\nwant %s\n", h, hex);
    }
    assert_memory_equal(got, want, n);
}

/* HMAC-SHA256 through OpenSSL's one-shot HMAC(), independently of proto/. */
static void hmac256(const void *key, size_t keylen, const void *data, size_t n, uint8_t out[32]) {
    unsigned int olen = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)keylen, data, n, out, &olen));
    assert_int_equal(olen, 32);
}

/* HKDF-SHA256 (RFC 5869) for one 32-byte block, from HMAC() alone. */
static void hkdf256(const void *ikm, size_t ikmlen, const uint8_t *salt, size_t saltlen,
                    const char *info, uint8_t out[32]) {
    uint8_t prk[32], t[64];
    size_t il = strlen(info);
    hmac256(salt, saltlen, ikm, ikmlen, prk);
    assert_true(il + 1 <= sizeof t);
    memcpy(t, info, il);
    t[il] = 0x01;
    hmac256(prk, sizeof prk, t, il + 1, out);
}

/* ---- proofs ---- */

static void test_auth_vectors(void **state) {
    (void)state;
    uint8_t nc[32], nb[32], p[32], c2s[32], s2c[32];
    nonces(nc, nb);
    assert_int_equal(mpb__auth_proof(authkey, AUTHKEY_LEN, true, nc, nb, p), 0);
    expect_hex(p, 32, "6383307b22797a5817d9b0e93cebc58ce4fc1c001024eb5855bc988a5bd87d52");
    assert_int_equal(mpb__auth_proof(authkey, AUTHKEY_LEN, false, nc, nb, p), 0);
    expect_hex(p, 32, "127ce6a4a37e02a2ac17c99f1982d5ab76ccaf2df7eafd82f2d4e7377326704e");
    assert_int_equal(mpb__auth_keys(authkey, AUTHKEY_LEN, nc, nb, c2s, s2c), 0);
    expect_hex(c2s, 32, "5d608589271082f1ea7dbeadc08e99dc8bb132fe793db26daa7a454dbcc74be8");
    expect_hex(s2c, 32, "ead9e27980b92f8a0ae223b067b9c59ebd3dac790355859e68fe78dc1d0b1da1");
    mpb__mac_t *m = mpb__mac_new(c2s);
    assert_non_null(m);
    uint8_t mac[MPB__MAC_LEN];
    assert_int_equal(mpb__mac_sign(m, (const uint8_t *)"hello", 5, mac), 0);
    expect_hex(mac, MPB__MAC_LEN, "d6f88c356f473d4fd70ede47d2e50aa1");
    mpb__mac_free(&m);
    assert_null(m);
}

static void test_auth_proof_matches_hmac(void **state) {
    (void)state;
    uint8_t nc[32], nb[32], p[32], want[32], msg[11 + 64];
    nonces(nc, nb);
    for (int server = 0; server <= 1; server++) {
        memcpy(msg, server ? "mpb1 server" : "mpb1 client", 11);
        memcpy(msg + 11, nc, 32);
        memcpy(msg + 43, nb, 32);
        hmac256(authkey, AUTHKEY_LEN, msg, sizeof msg, want);
        assert_int_equal(mpb__auth_proof(authkey, AUTHKEY_LEN, server, nc, nb, p), 0);
        assert_memory_equal(p, want, 32);
    }
    /* a long authkey (hashed first by HMAC) and a one-byte one */
    uint8_t longkey[200];
    for (size_t i = 0; i < sizeof longkey; i++)
        longkey[i] = (uint8_t)(i * 13);
    memcpy(msg, "mpb1 client", 11);
    hmac256(longkey, sizeof longkey, msg, sizeof msg, want);
    assert_int_equal(mpb__auth_proof(longkey, sizeof longkey, false, nc, nb, p), 0);
    assert_memory_equal(p, want, 32);
    hmac256("k", 1, msg, sizeof msg, want);
    assert_int_equal(mpb__auth_proof("k", 1, false, nc, nb, p), 0);
    assert_memory_equal(p, want, 32);
}

static void test_auth_proof_labels_differ(void **state) {
    (void)state;
    uint8_t nc[32], nb[32], ps[32], pc[32];
    nonces(nc, nb);
    assert_int_equal(mpb__auth_proof(authkey, AUTHKEY_LEN, true, nc, nb, ps), 0);
    assert_int_equal(mpb__auth_proof(authkey, AUTHKEY_LEN, false, nc, nb, pc), 0);
    assert_memory_not_equal(ps, pc, 32);
    /* a proof cannot be reflected: the server's proof is no client proof, and back */
    assert_false(mpb__auth_verify(authkey, AUTHKEY_LEN, false, nc, nb, ps, 32));
    assert_false(mpb__auth_verify(authkey, AUTHKEY_LEN, true, nc, nb, pc, 32));
    assert_true(mpb__auth_verify(authkey, AUTHKEY_LEN, true, nc, nb, ps, 32));
    assert_true(mpb__auth_verify(authkey, AUTHKEY_LEN, false, nc, nb, pc, 32));
}

static void test_auth_verify_rejects(void **state) {
    (void)state;
    uint8_t nc[32], nb[32], p[33];
    nonces(nc, nb);
    for (int server = 0; server <= 1; server++) {
        assert_int_equal(mpb__auth_proof(authkey, AUTHKEY_LEN, server, nc, nb, p), 0);
        assert_true(mpb__auth_verify(authkey, AUTHKEY_LEN, server, nc, nb, p, 32));
        /* wrong keys: another, a prefix, an extension, an empty one */
        assert_false(mpb__auth_verify("secret-kez", 10, server, nc, nb, p, 32));
        assert_false(mpb__auth_verify("secret-ke", 9, server, nc, nb, p, 32));
        assert_false(mpb__auth_verify("secret-keyx", 11, server, nc, nb, p, 32));
        assert_false(mpb__auth_verify("Secret-key", 10, server, nc, nb, p, 32));
        /* swapped nonces, and a nonce with one bit changed */
        assert_false(mpb__auth_verify(authkey, AUTHKEY_LEN, server, nb, nc, p, 32));
        uint8_t nc2[32];
        memcpy(nc2, nc, 32);
        nc2[31] ^= 0x80;
        assert_false(mpb__auth_verify(authkey, AUTHKEY_LEN, server, nc2, nb, p, 32));
        assert_false(mpb__auth_verify(authkey, AUTHKEY_LEN, server, nc, nc2, p, 32));
        /* every single flipped bit of the proof */
        for (int bit = 0; bit < 256; bit++) {
            p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            assert_false(mpb__auth_verify(authkey, AUTHKEY_LEN, server, nc, nb, p, 32));
            p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        assert_true(mpb__auth_verify(authkey, AUTHKEY_LEN, server, nc, nb, p, 32));
        /* wrong lengths, even when the first 32 bytes are right */
        p[32] = 0;
        assert_false(mpb__auth_verify(authkey, AUTHKEY_LEN, server, nc, nb, p, 33));
        assert_false(mpb__auth_verify(authkey, AUTHKEY_LEN, server, nc, nb, p, 31));
        assert_false(mpb__auth_verify(authkey, AUTHKEY_LEN, server, nc, nb, p, 16));
        assert_false(mpb__auth_verify(authkey, AUTHKEY_LEN, server, nc, nb, p, 0));
        uint8_t zero[32] = {0};
        assert_false(mpb__auth_verify(authkey, AUTHKEY_LEN, server, nc, nb, zero, 32));
    }
}

/* ---- session keys ---- */

static void test_auth_keys(void **state) {
    (void)state;
    uint8_t nc[32], nb[32], c2s[32], s2c[32], c2s2[32], s2c2[32], want[32];
    nonces(nc, nb);
    assert_int_equal(mpb__auth_keys(authkey, AUTHKEY_LEN, nc, nb, c2s, s2c), 0);
    assert_memory_not_equal(c2s, s2c, 32);
    /* RFC 5869 HKDF computed from HMAC() alone */
    uint8_t salt[64];
    memcpy(salt, nc, 32);
    memcpy(salt + 32, nb, 32);
    hkdf256(authkey, AUTHKEY_LEN, salt, sizeof salt, "mpb1 c2s", want);
    assert_memory_equal(c2s, want, 32);
    hkdf256(authkey, AUTHKEY_LEN, salt, sizeof salt, "mpb1 s2c", want);
    assert_memory_equal(s2c, want, 32);
    /* deterministic */
    assert_int_equal(mpb__auth_keys(authkey, AUTHKEY_LEN, nc, nb, c2s2, s2c2), 0);
    assert_memory_equal(c2s, c2s2, 32);
    assert_memory_equal(s2c, s2c2, 32);
    /* other nonces, swapped nonces, another key: other keys */
    uint8_t nx[32];
    memcpy(nx, nc, 32);
    nx[0] ^= 1;
    assert_int_equal(mpb__auth_keys(authkey, AUTHKEY_LEN, nx, nb, c2s2, s2c2), 0);
    assert_memory_not_equal(c2s, c2s2, 32);
    assert_memory_not_equal(s2c, s2c2, 32);
    assert_int_equal(mpb__auth_keys(authkey, AUTHKEY_LEN, nc, nx, c2s2, s2c2), 0);
    assert_memory_not_equal(c2s, c2s2, 32);
    assert_memory_not_equal(s2c, s2c2, 32);
    assert_int_equal(mpb__auth_keys(authkey, AUTHKEY_LEN, nb, nc, c2s2, s2c2), 0);
    assert_memory_not_equal(c2s, c2s2, 32);
    assert_memory_not_equal(s2c, s2c2, 32);
    assert_int_equal(mpb__auth_keys("secret-kez", 10, nc, nb, c2s2, s2c2), 0);
    assert_memory_not_equal(c2s, c2s2, 32);
    assert_memory_not_equal(s2c, s2c2, 32);
    /* keys are not the proofs */
    uint8_t p[32];
    assert_int_equal(mpb__auth_proof(authkey, AUTHKEY_LEN, true, nc, nb, p), 0);
    assert_memory_not_equal(p, c2s, 32);
    assert_memory_not_equal(p, s2c, 32);
}

static void test_auth_random(void **state) {
    (void)state;
    uint8_t a[32] = {0}, b[32] = {0};
    assert_int_equal(mpb__random(a, sizeof a), 0);
    assert_int_equal(mpb__random(b, sizeof b), 0);
    assert_memory_not_equal(a, b, 32);
}

/* ---- MAC ---- */

static void test_auth_mac_matches_hmac(void **state) {
    (void)state;
    uint8_t key[32], data[1000], full[32], mac[MPB__MAC_LEN];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(0xa5 ^ i);
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    mpb__mac_t *m = mpb__mac_new(key);
    assert_non_null(m);
    const size_t lens[] = {0, 1, 15, 16, 31, 32, 63, 64, 65, 127, 128, 999, 1000};
    /* twice round, so that the re-used context is shown to forget the previous message */
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            hmac256(key, sizeof key, data, lens[i], full);
            assert_int_equal(mpb__mac_sign(m, data, lens[i], mac), 0);
            assert_memory_equal(mac, full, MPB__MAC_LEN);
            assert_true(mpb__mac_verify(m, data, lens[i], full));
        }
    }
    mpb__mac_free(&m);
    assert_null(m);
    mpb__mac_free(&m); /* &NULL is fine */
}

/* RFC 4868 section 2.7.2.1, PRF-HMAC-SHA-256 with 32-byte keys (AUTH256-1 and -2). */
static void test_auth_mac_rfc4868(void **state) {
    (void)state;
    uint8_t key[32], mac[MPB__MAC_LEN];
    memset(key, 0x0b, sizeof key);
    mpb__mac_t *m = mpb__mac_new(key);
    assert_non_null(m);
    assert_int_equal(mpb__mac_sign(m, (const uint8_t *)"Hi There", 8, mac), 0);
    expect_hex(mac, 16, "198a607eb44bfbc69903a0f1cf2bbdc5"); /* ba0aa3f3d9ae3c1c7a3b1696a0b68cf7 */
    mpb__mac_free(&m);
    memcpy(key, "JefeJefeJefeJefeJefeJefeJefeJefe", 32);
    m = mpb__mac_new(key);
    assert_non_null(m);
    const char *what = "what do ya want for nothing?";
    assert_int_equal(mpb__mac_sign(m, (const uint8_t *)what, strlen(what), mac), 0);
    expect_hex(mac, 16, "167f928588c5cc2eef8e3093caa0e87c"); /* 9ff566a14794aa61648d81621a2a40c6 */
    mpb__mac_free(&m);
}

static void test_auth_mac_verify_flipped_bits(void **state) {
    (void)state;
    uint8_t key[32], data[48], mac[MPB__MAC_LEN];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(0x40 + i);
    mpb__mac_t *m = mpb__mac_new(key);
    assert_non_null(m);
    assert_int_equal(mpb__mac_sign(m, data, sizeof data, mac), 0);
    assert_true(mpb__mac_verify(m, data, sizeof data, mac));
    for (size_t bit = 0; bit < 8 * sizeof data; bit++) {
        data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_false(mpb__mac_verify(m, data, sizeof data, mac));
        data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t bit = 0; bit < 8 * MPB__MAC_LEN; bit++) {
        mac[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_false(mpb__mac_verify(m, data, sizeof data, mac));
        mac[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* shorter or longer data */
    assert_false(mpb__mac_verify(m, data, sizeof data - 1, mac));
    assert_false(mpb__mac_verify(m, data, 0, mac));
    assert_true(mpb__mac_verify(m, data, sizeof data, mac));
    /* another key */
    key[0] ^= 1;
    mpb__mac_t *other = mpb__mac_new(key);
    assert_non_null(other);
    assert_false(mpb__mac_verify(other, data, sizeof data, mac));
    mpb__mac_free(&other);
    mpb__mac_free(&m);
}

/* ---- the handshake, both ways ---- */

typedef struct {
    const char *authkey;
    size_t keylen;
    uint8_t nc[32], nb[32];
    mpb__mac_t *tx, *rx; /* sign what we send, verify what we receive */
} side_t;

static void side_free(side_t *s) {
    mpb__mac_free(&s->tx);
    mpb__mac_free(&s->rx);
}

/* Seals a frame: header, body, then the MAC of header and body. */
static size_t seal(side_t *s, uint8_t type, uint64_t seq, const char *body, uint8_t *out) {
    size_t n = strlen(body);
    mpb__frame_header(out, type, seq);
    memcpy(out + MPB__HDR_LEN, body, n);
    assert_int_equal(mpb__mac_sign(s->tx, out, MPB__HDR_LEN + n, out + MPB__HDR_LEN + n), 0);
    return MPB__HDR_LEN + n + MPB__MAC_LEN;
}

/* Parses and checks a sealed frame; true if its MAC verifies. */
static bool open_frame(side_t *s, const uint8_t *buf, size_t n, mpb__frame_t *f) {
    char err[128];
    assert_int_equal(mpb__frame_parse(buf, n, 1 << 20, f, err, sizeof err), 0);
    assert_non_null(f->mac);
    return mpb__mac_verify(s->rx, buf, (size_t)(f->mac - buf), f->mac);
}

/* Plays client and broker. Returns whether each side accepted the other. */
static void handshake(const char *ckey, const char *bkey, bool *client_ok, bool *broker_ok,
                      bool *channel_ok) {
    side_t c = {ckey, strlen(ckey), {0}, {0}, NULL, NULL};
    side_t b = {bkey, strlen(bkey), {0}, {0}, NULL, NULL};
    uint8_t sproof[32], cproof[32];
    /* HELLO: client -> broker, nonce_c */
    assert_int_equal(mpb__random(c.nc, 32), 0);
    memcpy(b.nc, c.nc, 32);
    /* CHALLENGE: broker -> client, nonce_b and the server proof */
    assert_int_equal(mpb__random(b.nb, 32), 0);
    assert_int_equal(mpb__auth_proof(b.authkey, b.keylen, true, b.nc, b.nb, sproof), 0);
    memcpy(c.nb, b.nb, 32);
    *client_ok = mpb__auth_verify(c.authkey, c.keylen, true, c.nc, c.nb, sproof, 32);
    /* AUTH: client -> broker, the client proof */
    assert_int_equal(mpb__auth_proof(c.authkey, c.keylen, false, c.nc, c.nb, cproof), 0);
    *broker_ok = mpb__auth_verify(b.authkey, b.keylen, false, b.nc, b.nb, cproof, 32);
    /* both derive the keys; the client sends under c2s, the broker under s2c */
    uint8_t cc2s[32], cs2c[32], bc2s[32], bs2c[32];
    assert_int_equal(mpb__auth_keys(c.authkey, c.keylen, c.nc, c.nb, cc2s, cs2c), 0);
    assert_int_equal(mpb__auth_keys(b.authkey, b.keylen, b.nc, b.nb, bc2s, bs2c), 0);
    assert_memory_not_equal(cc2s, cs2c, 32);
    c.tx = mpb__mac_new(cc2s);
    c.rx = mpb__mac_new(cs2c);
    b.tx = mpb__mac_new(bs2c);
    b.rx = mpb__mac_new(bc2s);
    assert_true(c.tx && c.rx && b.tx && b.rx);
    bool same = memcmp(cc2s, bc2s, 32) == 0 && memcmp(cs2c, bs2c, 32) == 0;
    /* WELCOME broker -> client, then a request and a reply */
    uint8_t buf[256];
    mpb__frame_t f;
    size_t n = seal(&b, MPB__T_WELCOME, 0, "\x81\xa2id\x07", buf);
    bool ok = open_frame(&c, buf, n, &f);
    size_t m = seal(&c, MPB__T_REQ, 1, "\x93\x12\xa5users\xa3key", buf);
    ok = open_frame(&b, buf, m, &f) && ok;
    if (ok) {
        assert_int_equal(f.type, MPB__T_REQ);
        assert_true(f.seq == 1);
        assert_int_equal(mpb__mp_check(f.body, f.bodylen, MPB__MAX_DEPTH), 0);
        /* a frame reflected back to its sender does not verify: directions have own keys */
        assert_false(open_frame(&c, buf, m, &f));
        /* nor does one with its seq changed */
        buf[11] ^= 1;
        assert_false(open_frame(&b, buf, m, &f));
        buf[11] ^= 1;
    }
    m = seal(&b, MPB__T_REP, 1, "\xa5value", buf);
    ok = open_frame(&c, buf, m, &f) && ok;
    *channel_ok = ok;
    assert_int_equal(ok, same);
    side_free(&c);
    side_free(&b);
}

static void test_auth_handshake_both_ways(void **state) {
    (void)state;
    bool cok, bok, chan;
    handshake("secret-key", "secret-key", &cok, &bok, &chan);
    assert_true(cok);
    assert_true(bok);
    assert_true(chan);
    /* wrong key on the client side */
    handshake("secret-kez", "secret-key", &cok, &bok, &chan);
    assert_false(cok);
    assert_false(bok);
    assert_false(chan);
    /* wrong key on the broker side */
    handshake("secret-key", "another key", &cok, &bok, &chan);
    assert_false(cok);
    assert_false(bok);
    assert_false(chan);
    /* again, fresh nonces each time */
    for (int i = 0; i < 20; i++) {
        handshake("k", "k", &cok, &bok, &chan);
        assert_true(cok && bok && chan);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_vectors),
        cmocka_unit_test(test_auth_proof_matches_hmac),
        cmocka_unit_test(test_auth_proof_labels_differ),
        cmocka_unit_test(test_auth_verify_rejects),
        cmocka_unit_test(test_auth_keys),
        cmocka_unit_test(test_auth_random),
        cmocka_unit_test(test_auth_mac_matches_hmac),
        cmocka_unit_test(test_auth_mac_rfc4868),
        cmocka_unit_test(test_auth_mac_verify_flipped_bits),
        cmocka_unit_test(test_auth_handshake_both_ways),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
