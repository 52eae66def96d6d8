/* oldhash.h - the hash mpbroker used for its tables before SipHash (a seeded multiply-rotate
 * over 8-byte blocks), and keys built offline that all share one hash under it for a given
 * seed, as an attacker who knows or guesses the seed builds them. The tests insert these keys
 * into today's tables and check that they spread; they also check that the keys really collide
 * under the old construction, so the attack stays real if this file is touched. */
#ifndef MPB_TESTS_OLDHASH_H
#define MPB_TESTS_OLDHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define OLD_C 0x9e3779b97f4a7c15ULL

static inline uint64_t old_mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static inline uint64_t old_load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t old_hash(uint64_t seed, const uint8_t *p, size_t n) {
    uint64_t h = seed ^ (n * OLD_C);
    while (n >= 8) {
        h = (h ^ old_mix(old_load64(p))) * OLD_C;
        h = (h << 27) | (h >> 37);
        p += 8;
        n -= 8;
    }
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++)
        t |= (uint64_t)p[i] << (8 * i);
    h ^= old_mix(t ^ ((uint64_t)n << 56));
    return old_mix(h);
}

/* The inverse of multiplying by an odd a, mod 2^64 (Newton's iteration). */
static inline uint64_t old_inv(uint64_t a) {
    uint64_t x = a;
    for (int i = 0; i < 6; i++)
        x *= 2 - a * x;
    return x;
}

static inline uint64_t old_unmix(uint64_t k) {
    k ^= k >> 33; /* x ^= x >> 33 is its own inverse, as 2 * 33 > 64 */
    k *= old_inv(0xc4ceb9fe1a85ec53ULL);
    k ^= k >> 33;
    k *= old_inv(0xff51afd7ed558ccdULL);
    k ^= k >> 33;
    return k;
}

#define OLD_KEY_LEN 24 /* a msgpack bin8 of 22 bytes: c4 16 + 22 bytes, three 8-byte blocks */

/* Key number i (0 <= i < 2^32) of a family whose members all hash to one value under seed:
 * the first block holds i, the second is fixed, the third is solved for so that the state
 * after it is the same for every i. Each key is canonical msgpack (a bin of 22 bytes). */
static inline void old_colliding_key(uint64_t seed, uint32_t i, uint8_t out[OLD_KEY_LEN]) {
    const uint64_t target = 0x0123456789abcdefULL; /* the state after the third block */
    memset(out, 0, OLD_KEY_LEN);
    out[0] = 0xc4;
    out[1] = 22;
    memcpy(out + 2, &i, 4);
    memcpy(out + 8, "mpbflood", 8);
    uint64_t h = seed ^ (OLD_KEY_LEN * OLD_C);
    for (int b = 0; b < 2; b++) {
        h = (h ^ old_mix(old_load64(out + 8 * b))) * OLD_C;
        h = (h << 27) | (h >> 37);
    }
    /* rotl((h ^ mix(m)) * C, 27) == target  <=>  mix(m) == (rotr(target, 27) * C^-1) ^ h */
    uint64_t want = ((target >> 27) | (target << 37)) * old_inv(OLD_C);
    uint64_t m = old_unmix(want ^ h);
    memcpy(out + 16, &m, 8);
}

#endif
