/* b64.c - base64 (RFC 4648, standard alphabet, padded) through OpenSSL's EVP_EncodeBlock and
 * EVP_DecodeBlock, for the CLI's {"$bytes": "..."} values. OpenSSL's decoder is lenient where
 * the CLI must not be (it skips blanks at both ends, and counts padding as decoded bytes), so
 * the input is checked here first and the length corrected after. */
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "b64.h"

/* Bytes per EVP call: a multiple of 3 (encode) and its base64 a multiple of 4 (decode), and
 * far below INT_MAX, the most one call takes. */
#define CHUNK (3u << 20)

char *b64_encode(const uint8_t *p, size_t n, size_t *outlen) {
    if (n > (SIZE_MAX - 1) / 4 * 3 - 3) return NULL;
    size_t olen = (n + 2) / 3 * 4;
    char *s = malloc(olen + 1);
    if (!s) return NULL;
    size_t o = 0;
    s[0] = 0;
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        o += (size_t)EVP_EncodeBlock((unsigned char *)s + o, p + i, (int)k);
    }
    if (outlen) *outlen = o;
    return s;
}

static bool b64_char(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int b64_decode(const char *s, size_t n, uint8_t **out, size_t *outlen) {
    if (n % 4 == 0 && n > 0 && s[n - 1] == '=') n -= (s[n - 2] == '=') ? 2 : 1;
    if (n % 4 == 1) return -1;
    for (size_t i = 0; i < n; i++)
        if (!b64_char((unsigned char)s[i])) return -1;
    size_t pad = (4 - n % 4) % 4, full = n + pad; /* padding put back where it was left off */
    size_t dlen = full / 4 * 3 - pad;
    uint8_t *d = malloc(full / 4 * 3 + 1);
    char *in = malloc(full + 1);
    if (!d || !in) {
        free(d);
        free(in);
        return -2;
    }
    memcpy(in, s, n);
    memset(in + n, '=', pad);
    size_t k = 0;
    for (size_t i = 0; i < full; i += CHUNK / 3 * 4) {
        size_t m = full - i < CHUNK / 3 * 4 ? full - i : CHUNK / 3 * 4;
        int r = EVP_DecodeBlock(d + k, (const unsigned char *)in + i, (int)m);
        if (r < 0) {
            free(d);
            free(in);
            return -1;
        }
        k += (size_t)r;
    }
    free(in);
    *out = d;
    *outlen = dlen;
    return 0;
}
