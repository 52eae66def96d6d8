/* curve.c - the ZeroMQ CURVE key pairs both sides derive from the authkey, so that encryption
 * needs nothing the user does not already have: HKDF-SHA256 turns the authkey into the
 * broker's and the clients' Curve25519 secret keys (distinct labels), and X25519 gives their
 * public keys (the same scalar multiplication libsodium's crypto_scalarmult_base does, which
 * zmq_curve_public() calls; the unit test checks both agree). A peer without the authkey
 * cannot make the client secret key, so the broker's ZAP handler, admitting only the client
 * public key, turns it away inside the ZeroMQ handshake. See PROTOCOL.md section 1. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "mpbproto.h"

static int curve_secret(const void *authkey, size_t keylen, const char *info,
                        uint8_t out[MPB__CURVE_LEN]) {
    static const char salt[] = "mpb1 curve";
    return mpb__hkdf(authkey, keylen, (const uint8_t *)salt, sizeof salt - 1, info, out,
                     MPB__CURVE_LEN);
}

static int curve_public(const uint8_t sec[MPB__CURVE_LEN], uint8_t pub[MPB__CURVE_LEN]) {
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sec, MPB__CURVE_LEN);
    if (!k) return MPB_ENOMEM;
    size_t n = MPB__CURVE_LEN;
    int ok = EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == MPB__CURVE_LEN;
    EVP_PKEY_free(k);
    return ok ? 0 : MPB_ENOMEM;
}

int mpb__curve_keys(const void *authkey, size_t keylen, mpb__curve_t *out) {
    int rc = curve_secret(authkey, keylen, "mpb1 curve broker", out->broker_sec);
    if (!rc) rc = curve_public(out->broker_sec, out->broker_pub);
    if (!rc) rc = curve_secret(authkey, keylen, "mpb1 curve client", out->client_sec);
    if (!rc) rc = curve_public(out->client_sec, out->client_pub);
    if (rc) mpb__curve_wipe(out);
    return rc;
}

void mpb__curve_wipe(mpb__curve_t *k) {
    OPENSSL_cleanse(k, sizeof *k);
}
