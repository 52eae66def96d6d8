/* mac.c - the per-message MAC. One keyed EVP_MAC context per direction of a channel, re-used
 * for every message: re-initialising a keyed HMAC costs a fraction of a one-shot HMAC(). */
#include <pthread.h>
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "mpbproto.h"

struct mpb__mac {
    EVP_MAC_CTX *ctx;
};

/* Fetched once per process: a fetch costs a lock and a lookup. */
static EVP_MAC *hmac;
static pthread_once_t alg_once = PTHREAD_ONCE_INIT;
static void alg_fetch(void) {
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}
static EVP_MAC *hmac_alg(void) {
    pthread_once(&alg_once, alg_fetch);
    return hmac;
}

mpb__mac_t *mpb__mac_new(const uint8_t key[MPB__KEY_LEN]) {
    EVP_MAC *alg = hmac_alg();
    if (!alg) return NULL;
    mpb__mac_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->ctx = EVP_MAC_CTX_new(alg);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (!m->ctx || EVP_MAC_init(m->ctx, key, MPB__KEY_LEN, params) != 1) {
        mpb__mac_free(&m);
        return NULL;
    }
    return m;
}

void mpb__mac_free(mpb__mac_t **m) {
    if (!*m) return;
    EVP_MAC_CTX_free((*m)->ctx);
    free(*m);
    *m = NULL;
}

int mpb__mac_sign(mpb__mac_t *m, const uint8_t *data, size_t n, uint8_t out[MPB__MAC_LEN]) {
    uint8_t full[32];
    size_t olen = 0;
    /* A NULL key re-initialises with the key already set. */
    if (EVP_MAC_init(m->ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(m->ctx, data, n) != 1 ||
        EVP_MAC_final(m->ctx, full, &olen, sizeof full) != 1)
        return MPB_ENOMEM;
    for (int i = 0; i < MPB__MAC_LEN; i++)
        out[i] = full[i];
    return 0;
}

bool mpb__mac_verify(mpb__mac_t *m, const uint8_t *data, size_t n, const uint8_t *mac) {
    uint8_t want[MPB__MAC_LEN];
    if (mpb__mac_sign(m, data, n, want)) return false;
    return CRYPTO_memcmp(want, mac, MPB__MAC_LEN) == 0;
}
