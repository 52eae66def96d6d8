/* seal.c - the encryption of mpb:// connections (PROTOCOL.md 1.2): each side sends a greeting
 * with a fresh X25519 public key; HKDF-SHA256 of the shared secret and the authkey, salted
 * with both keys, gives a ChaCha20-Poly1305 key per direction, and each frame is sealed under
 * a counter nonce with its length as associated data. A peer without the authkey cannot make
 * the keys, so its first frame does not open and the broker closes the connection before it
 * reads anything of it; a new connection has new keys, so nothing recorded replays. */
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "mpbproto.h"

void mpb__seal_tcp_opts(int fd) {
    int one = 1, idle = 60, intvl = 10, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

void mpb__seal_free(mpb__seal_t *s) {
    EVP_CIPHER_CTX_free(s->tx);
    EVP_CIPHER_CTX_free(s->rx);
    EVP_PKEY_free(s->eph);
    memset(s, 0, sizeof *s);
}

int mpb__seal_greet_with(mpb__seal_t *s, const uint8_t sec[32], uint8_t out[MPB__GREET_LEN]) {
    mpb__seal_free(s);
    s->eph = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sec, 32);
    size_t n = 32;
    if (!s->eph || EVP_PKEY_get_raw_public_key(s->eph, s->mine, &n) != 1 || n != 32) {
        mpb__seal_free(s);
        return MPB_ENOMEM;
    }
    memcpy(out, MPB__GREET_MAGIC, 4);
    memcpy(out + 4, s->mine, 32);
    return 0;
}

int mpb__seal_greet(mpb__seal_t *s, uint8_t out[MPB__GREET_LEN]) {
    uint8_t sec[32];
    if (RAND_bytes(sec, sizeof sec) != 1) return MPB_ENOMEM;
    int rc = mpb__seal_greet_with(s, sec, out);
    OPENSSL_cleanse(sec, sizeof sec);
    return rc;
}

static EVP_CIPHER_CTX *cipher(const uint8_t key[32], bool enc) {
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (x && EVP_CipherInit_ex(x, EVP_chacha20_poly1305(), NULL, key, NULL, enc) == 1) return x;
    EVP_CIPHER_CTX_free(x);
    return NULL;
}

int mpb__seal_keys(mpb__seal_t *s, const void *authkey, size_t keylen, bool broker,
                   const uint8_t peer[MPB__GREET_LEN]) {
    if (!s->eph || memcmp(peer, MPB__GREET_MAGIC, 4)) return MPB_EPROTO;
    uint8_t salt[64], okm[64];
    uint8_t *ikm = malloc(32 + keylen); /* the shared secret, then the authkey */
    if (!ikm) return MPB_ENOMEM;
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer + 4, 32);
    EVP_PKEY_CTX *dc = pk ? EVP_PKEY_CTX_new(s->eph, NULL) : NULL;
    size_t n = 32;
    int ok = dc && EVP_PKEY_derive_init(dc) == 1 && EVP_PKEY_derive_set_peer(dc, pk) == 1 &&
             EVP_PKEY_derive(dc, ikm, &n) == 1 && n == 32;
    EVP_PKEY_CTX_free(dc);
    EVP_PKEY_free(pk);
    static const uint8_t zero[32];
    /* a low-order point gives all zeros (OpenSSL refuses it too): no secret at all */
    if (!ok || CRYPTO_memcmp(ikm, zero, 32) == 0) {
        OPENSSL_clear_free(ikm, 32 + keylen);
        return MPB_EPROTO;
    }
    memcpy(ikm + 32, authkey, keylen);
    memcpy(salt, broker ? peer + 4 : s->mine, 32); /* the client's key, then the broker's */
    memcpy(salt + 32, broker ? s->mine : peer + 4, 32);
    int rc = mpb__hkdf(ikm, 32 + keylen, salt, sizeof salt, "mpb1 stream", okm, sizeof okm);
    OPENSSL_clear_free(ikm, 32 + keylen);
    if (rc) {
        OPENSSL_cleanse(okm, sizeof okm);
        return rc;
    }
    /* okm: client to broker, then broker to client */
    s->tx = cipher(broker ? okm + 32 : okm, true);
    s->rx = cipher(broker ? okm : okm + 32, false);
    OPENSSL_cleanse(okm, sizeof okm);
    EVP_PKEY_free(s->eph);
    s->eph = NULL;
    s->ntx = s->nrx = 0;
    return s->tx && s->rx ? 0 : MPB_ENOMEM;
}

static void nonce(uint8_t iv[12], uint64_t n) {
    memset(iv, 0, 4);
    for (int i = 0; i < 8; i++)
        iv[4 + i] = (uint8_t)(n >> (56 - 8 * i));
}

static void put_len(uint8_t h[4], size_t n) {
    h[0] = (uint8_t)(n >> 24);
    h[1] = (uint8_t)(n >> 16);
    h[2] = (uint8_t)(n >> 8);
    h[3] = (uint8_t)n;
}

int mpb__seal(mpb__seal_t *s, const uint8_t *pt, size_t n, uint8_t *out) {
    uint8_t iv[12];
    int k = 0, f = 0;
    put_len(out, n + MPB__SEAL_TAG);
    nonce(iv, s->ntx);
    if (EVP_CipherInit_ex(s->tx, NULL, NULL, NULL, iv, 1) != 1 ||
        EVP_CipherUpdate(s->tx, NULL, &k, out, 4) != 1 ||
        (n && EVP_CipherUpdate(s->tx, out + 4, &k, pt, (int)n) != 1) ||
        EVP_CipherFinal_ex(s->tx, out + 4 + n, &f) != 1 ||
        EVP_CIPHER_CTX_ctrl(s->tx, EVP_CTRL_AEAD_GET_TAG, MPB__SEAL_TAG, out + 4 + n) != 1)
        return MPB_ENOMEM;
    s->ntx++;
    return 0;
}

int mpb__seal_open(mpb__seal_t *s, uint8_t *p, size_t n) {
    if (n < 4 + MPB__SEAL_TAG) return MPB_EPROTO;
    size_t ct = n - 4 - MPB__SEAL_TAG;
    uint8_t iv[12];
    int k = 0, f = 0;
    nonce(iv, s->nrx);
    if (EVP_CipherInit_ex(s->rx, NULL, NULL, NULL, iv, 0) != 1 ||
        EVP_CipherUpdate(s->rx, NULL, &k, p, 4) != 1 ||
        (ct && EVP_CipherUpdate(s->rx, p + 4, &k, p + 4, (int)ct) != 1) ||
        EVP_CIPHER_CTX_ctrl(s->rx, EVP_CTRL_AEAD_SET_TAG, MPB__SEAL_TAG, p + 4 + ct) != 1 ||
        EVP_CipherFinal_ex(s->rx, p + 4 + ct, &f) != 1)
        return MPB_EPROTO;
    s->nrx++;
    return 0;
}
