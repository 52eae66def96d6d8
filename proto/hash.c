/* hash.c - the hash of every table that holds client-chosen bytes (dict keys, object names,
 * pool function names, routing ids): SipHash-1-3, as Redis hashes its dicts, under a 128-bit
 * key drawn from RAND_bytes when the broker starts. Without a secret key, a client can build
 * keys offline that all land in one slot and make each insert walk all the others (65,536 of
 * them took 31.9 s to insert under the unkeyed-in-effect hash this replaced); SipHash is a PRF,
 * so without the key such keys are no likelier to collide than any others.
 *
 * The core takes its round counts so the unit tests can check it against SipHash-2-4's
 * published vectors; the tables use 1-3 (one compression round per 8 bytes, three at the end),
 * which keeps a 16-byte key at a few nanoseconds. */
#include <string.h>

#include "mpbproto.h"

/* Fixed until mpb__hash_init(): deterministic for the unit tests and tools that never set it.
 * The broker calls mpb__hash_init() before it makes any table. */
uint8_t mpb__hash_key[16] = {0x24, 0x3f, 0x6a, 0x88, 0x85, 0xa3, 0x08, 0xd3,
                             0x13, 0x19, 0x8a, 0x2e, 0x03, 0x70, 0x73, 0x44};

int mpb__hash_init(void) {
    return mpb__random(mpb__hash_key, sizeof mpb__hash_key);
}

static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static inline __attribute__((always_inline)) uint64_t sip(const uint8_t k[16], const uint8_t *p,
                                                          size_t n, int c, int d) {
    uint64_t k0 = rd64(k), k1 = rd64(k + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    uint64_t b = (uint64_t)n << 56;
    const uint8_t *end = p + (n & ~(size_t)7);
    for (; p != end; p += 8) {
        uint64_t m = rd64(p);
        v3 ^= m;
        for (int i = 0; i < c; i++)
            SIPROUND;
        v0 ^= m;
    }
    switch (n & 7) {
    case 7: b |= (uint64_t)p[6] << 48; /* fall through */
    case 6: b |= (uint64_t)p[5] << 40; /* fall through */
    case 5: b |= (uint64_t)p[4] << 32; /* fall through */
    case 4: b |= (uint64_t)p[3] << 24; /* fall through */
    case 3: b |= (uint64_t)p[2] << 16; /* fall through */
    case 2: b |= (uint64_t)p[1] << 8;  /* fall through */
    case 1: b |= (uint64_t)p[0]; break;
    case 0: break;
    }
    v3 ^= b;
    for (int i = 0; i < c; i++)
        SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < d; i++)
        SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t mpb__siphash(const uint8_t key[16], const void *data, size_t n, int crounds, int drounds) {
    return sip(key, data, n, crounds, drounds);
}

uint64_t mpb__hash(const void *data, size_t n) {
    return sip(mpb__hash_key, data, n, 1, 3);
}
