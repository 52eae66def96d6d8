/* auth.c - the authkey handshake, after multiprocessing.connection's deliver_challenge and
 * answer_challenge but mutual: each side proves the key with HMAC-SHA256 over both random
 * nonces under its own label, and both derive per-direction session keys with HKDF, so a
 * proof cannot be reflected and a captured channel cannot be replayed on another. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "mpbproto.h"

int mpb__random(void *out, size_t n) {
    return RAND_bytes(out, (int)n) == 1 ? 0 : MPB_ENOMEM;
}

int mpb__auth_proof(const void *authkey, size_t keylen, bool server, const uint8_t *nonce_c,
                    const uint8_t *nonce_b, uint8_t out[MPB__PROOF_LEN]) {
    uint8_t msg[16 + 2 * MPB__NONCE_LEN];
    const char *label = server ? "mpb1 server" : "mpb1 client";
    size_t ll = strlen(label);
    memcpy(msg, label, ll);
    memcpy(msg + ll, nonce_c, MPB__NONCE_LEN);
    memcpy(msg + ll + MPB__NONCE_LEN, nonce_b, MPB__NONCE_LEN);
    unsigned int olen = 0;
    if (!HMAC(EVP_sha256(), authkey, (int)keylen, msg, ll + 2 * MPB__NONCE_LEN, out, &olen))
        return MPB_ENOMEM;
    return olen == MPB__PROOF_LEN ? 0 : MPB_ENOMEM;
}

bool mpb__auth_verify(const void *authkey, size_t keylen, bool server, const uint8_t *nonce_c,
                      const uint8_t *nonce_b, const uint8_t *proof, size_t prooflen) {
    uint8_t want[MPB__PROOF_LEN];
    if (prooflen != MPB__PROOF_LEN) return false;
    if (mpb__auth_proof(authkey, keylen, server, nonce_c, nonce_b, want)) return false;
    return CRYPTO_memcmp(want, proof, MPB__PROOF_LEN) == 0;
}

int mpb__hkdf(const void *ikm, size_t ikmlen, const uint8_t *salt, size_t saltlen, const char *info,
              uint8_t *out, size_t outlen) {
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (!kdf) return MPB_ENOMEM;
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (!ctx) return MPB_ENOMEM;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info)),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_KDF_derive(ctx, out, outlen, params) == 1;
    EVP_KDF_CTX_free(ctx);
    return ok ? 0 : MPB_ENOMEM;
}

int mpb__auth_keys(const void *authkey, size_t keylen, const uint8_t *nonce_c,
                   const uint8_t *nonce_b, uint8_t c2s[MPB__KEY_LEN], uint8_t s2c[MPB__KEY_LEN]) {
    uint8_t salt[2 * MPB__NONCE_LEN];
    memcpy(salt, nonce_c, MPB__NONCE_LEN);
    memcpy(salt + MPB__NONCE_LEN, nonce_b, MPB__NONCE_LEN);
    int rc = mpb__hkdf(authkey, keylen, salt, sizeof salt, "mpb1 c2s", c2s, MPB__KEY_LEN);
    if (!rc) rc = mpb__hkdf(authkey, keylen, salt, sizeof salt, "mpb1 s2c", s2c, MPB__KEY_LEN);
    return rc;
}
