/* test_hash.c - the keyed hash of the broker's tables (hash.c): SipHash against its published
 * vectors, a new key giving other hashes, and keys built to collide under the construction it
 * replaced spreading over an omap (broker/omap.c) as any keys do. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mpbproto.h"
#include "broker.h"
#include "../common/oldhash.h"

/* util.c's allocators fall back on mem.c's reserve, which this test does not link: none. */
bool mem_release_reserve(void) {
    return false;
}

#define NKEYS 65536

/* SipHash-2-4, key 00 01 .. 0f, messages 00 01 .. (len - 1): from the reference vectors. */
static void test_hash_siphash24_vectors(void **state) {
    (void)state;
    uint8_t k[16], m[16];
    for (int i = 0; i < 16; i++)
        k[i] = m[i] = (uint8_t)i;
    assert_true(mpb__siphash(k, m, 0, 2, 4) == 0x726fdb47dd0e0e31ULL);
    assert_true(mpb__siphash(k, m, 1, 2, 4) == 0x74f839c593dc67fdULL);
    assert_true(mpb__siphash(k, m, 2, 2, 4) == 0x0d6c8009d9a94f5aULL);
    assert_true(mpb__siphash(k, m, 15, 2, 4) == 0xa129ca6149be45e5ULL);
}

static void test_hash_keyed(void **state) {
    (void)state;
    const char *data = "the quick brown fox jumps over the lazy dog";
    size_t n = strlen(data);
    uint64_t h = mpb__hash(data, n);
    assert_true(h == mpb__hash(data, n));
    assert_true(h == mpb__siphash(mpb__hash_key, data, n, 1, 3));
    /* every length and every one-bit change gives another hash */
    for (size_t k = 0; k < n; k++)
        assert_true(mpb__hash(data, k) != h);
    char copy[64];
    memcpy(copy, data, n);
    for (size_t k = 0; k < n; k++) {
        copy[k] ^= 1;
        assert_true(mpb__hash(copy, n) != h);
        copy[k] ^= 1;
    }
    /* a new key, as each broker draws at start, gives other hashes */
    uint8_t saved[16];
    memcpy(saved, mpb__hash_key, 16);
    assert_int_equal(mpb__hash_init(), 0);
    assert_memory_not_equal(saved, mpb__hash_key, 16);
    assert_true(mpb__hash(data, n) != h);
    memcpy(mpb__hash_key, saved, 16);
    assert_true(mpb__hash(data, n) == h);
}

typedef struct item {
    uint8_t k[OLD_KEY_LEN];
} item_t;

static const uint8_t *item_key(const void *it, size_t *n) {
    *n = OLD_KEY_LEN;
    return ((const item_t *)it)->k;
}

/* How far each entry sits from its home slot, summed and at most: the probes a lookup of it
 * takes, less one. Read off the index itself (see omap.c), so nothing is timed. */
static void displacement(const omap_t *m, uint64_t *sum, uint64_t *max) {
    size_t mask = m->idxcap - 1;
    *sum = *max = 0;
    for (size_t j = 0; j < m->idxcap; j++) {
        uint64_t s = m->idx[j];
        if (s <= 1) continue; /* empty or tombstone */
        size_t pos = (size_t)(uint32_t)s - 2;
        uint64_t d = (j - (m->ents[pos].hash & mask)) & mask;
        *sum += d;
        if (d > *max) *max = d;
    }
}

static void test_hash_old_collisions_spread(void **state) {
    (void)state;
    assert_int_equal(mpb__hash_init(), 0);
    const uint64_t seed = 0x5eed5eed5eed5eedULL;
    item_t *items = calloc(NKEYS, sizeof *items);
    assert_non_null(items);
    for (uint32_t i = 0; i < NKEYS; i++)
        old_colliding_key(seed, i, items[i].k);
    /* The attack is real: every key has one hash under the old construction. */
    uint64_t h0 = old_hash(seed, items[0].k, OLD_KEY_LEN);
    for (uint32_t i = 1; i < NKEYS; i++)
        assert_true(old_hash(seed, items[i].k, OLD_KEY_LEN) == h0);
    assert_memory_not_equal(items[0].k, items[1].k, OLD_KEY_LEN);

    /* Under it, the table degenerates into one run: key i sits i slots from home (checked on
     * the first 2,048 keys; all 65,536 would take the 2^31 probes the finding timed). */
    omap_t old;
    omap_init(&old, item_key);
    for (uint32_t i = 0; i < 2048; i++)
        omap_add(&old, &items[i], h0);
    uint64_t sum, max;
    displacement(&old, &sum, &max);
    assert_int_equal(max, 2047);
    assert_int_equal(sum, 2047ULL * 2048 / 2);
    omap_free(&old, NULL);

    /* Under SipHash, all 65,536 spread as random keys do: at load <= 2/3, linear probing puts
     * an entry about one slot from home on average; the worst is tens of slots, not 65,535. */
    omap_t m;
    omap_init(&m, item_key);
    for (uint32_t i = 0; i < NKEYS; i++) {
        uint64_t h = mpb__hash(items[i].k, OLD_KEY_LEN);
        assert_int_equal(omap_find(&m, items[i].k, OLD_KEY_LEN, h), -1);
        omap_add(&m, &items[i], h);
    }
    assert_int_equal(m.live, NKEYS);
    displacement(&m, &sum, &max);
    assert_true(sum < 2ULL * NKEYS);
    assert_true(max < 256);
    for (uint32_t i = 0; i < NKEYS; i += 97)
        assert_int_equal(omap_find(&m, items[i].k, OLD_KEY_LEN, mpb__hash(items[i].k, OLD_KEY_LEN)),
                         (long)i);
    omap_free(&m, NULL);
    free(items);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_siphash24_vectors),
        cmocka_unit_test(test_hash_keyed),
        cmocka_unit_test(test_hash_old_collisions_spread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
