/* b64.h - base64 (RFC 4648, standard alphabet, padded) over OpenSSL's, for the CLI's
 * {"$bytes": "..."} values. */
#ifndef MPB_COMMON_B64_H
#define MPB_COMMON_B64_H

#include <stddef.h>
#include <stdint.h>

/* The padded base64 of p[0..n) in a new NUL-terminated buffer (free() it), its length in
 * *outlen (may be NULL). NULL for out of memory. */
char *b64_encode(const uint8_t *p, size_t n, size_t *outlen);
/* Decodes s[0..n) into a new malloc'd buffer (*out, *outlen; non-NULL even when empty).
 * Padding may be left off, as many encoders do; any other character (whitespace, the URL-safe
 * alphabet, '=' inside) is refused, so a typo is an error rather than different bytes.
 * Returns 0, -1 for invalid base64, -2 for out of memory. */
int b64_decode(const char *s, size_t n, uint8_t **out, size_t *outlen);

#endif
