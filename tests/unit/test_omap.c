/* test_omap.c - the broker's insertion-ordered hash map (broker/omap.c, in mpbcore): insert,
 * lookup and delete; iteration in insertion order, also across deletes and rehashes; scan
 * cursors (entry ordinals) that survive growth; keys whose hashes collide entirely; and many
 * keys, with the index kept at most two-thirds full. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

/* An item: its key is a short string. */
typedef struct item {
    size_t n;
    char key[24];
} item_t;

static const uint8_t *item_key(const void *p, size_t *len) {
    const item_t *it = p;
    *len = it->n;
    return (const uint8_t *)it->key;
}

/* FNV-1a: any fixed hash will do, the map takes it from the caller. */
static uint64_t hash_of(const char *k, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
    return h;
}

__attribute__((format(printf, 1, 2))) static item_t *item_new(const char *fmt, ...) {
    item_t *it = calloc(1, sizeof *it);
    assert_non_null(it);
    va_list ap;
    va_start(ap, fmt);
    it->n = (size_t)vsnprintf(it->key, sizeof it->key, fmt, ap);
    va_end(ap);
    return it;
}

static size_t add(omap_t *m, item_t *it) {
    assert_int_equal(omap_find(m, (const uint8_t *)it->key, it->n, hash_of(it->key, it->n)), -1);
    return omap_add(m, it, hash_of(it->key, it->n));
}

static long find(const omap_t *m, const char *k) {
    return omap_find(m, (const uint8_t *)k, strlen(k), hash_of(k, strlen(k)));
}

/* The live items' keys in iteration order, joined by ','. */
static void order(const omap_t *m, char *out, size_t cap) {
    size_t k = 0;
    out[0] = 0;
    for (size_t i = omap_seek(m, 0); i < m->nents; i = omap_seek(m, m->ents[i].ord + 1)) {
        const item_t *it = m->ents[i].item;
        k += (size_t)snprintf(out + k, cap - k, "%s%s", k ? "," : "", it->key);
        assert_true(k < cap);
    }
}

static void test_insert_lookup_delete(void **state) {
    (void)state;
    omap_t m;
    omap_init(&m, item_key);
    assert_int_equal(find(&m, "a"), -1); /* an empty map has no index yet */
    item_t *a = item_new("a1"), *b = item_new("b2"), *c = item_new("c3");
    size_t pa = add(&m, a), pb = add(&m, b), pc = add(&m, c);
    assert_int_equal(m.live, 3);
    assert_int_equal(find(&m, "a1"), (long)pa);
    assert_int_equal(find(&m, "b2"), (long)pb);
    assert_int_equal(find(&m, "c3"), (long)pc);
    assert_ptr_equal(m.ents[pb].item, b);
    assert_int_equal(find(&m, "d4"), -1);
    assert_int_equal(find(&m, "a"), -1);   /* a prefix is another key */
    assert_int_equal(find(&m, "a11"), -1); /* and so is a longer one */
    assert_ptr_equal(omap_del(&m, pb), b);
    free(b);
    assert_int_equal(m.live, 2);
    assert_int_equal(find(&m, "b2"), -1);
    assert_int_equal(find(&m, "a1"), (long)pa);
    assert_int_equal(find(&m, "c3"), (long)pc);
    /* the newest goes, and the slot at the end with it */
    assert_int_equal(omap_last(&m), (long)pc);
    assert_ptr_equal(omap_del(&m, pc), c);
    free(c);
    assert_int_equal(omap_last(&m), (long)pa);
    assert_ptr_equal(omap_del(&m, pa), a);
    free(a);
    assert_int_equal(m.live, 0);
    assert_int_equal(m.nents, 0);
    assert_int_equal(omap_last(&m), -1);
    assert_int_equal(find(&m, "a1"), -1);
    omap_free(&m, free);
}

static void test_iteration_in_insertion_order(void **state) {
    (void)state;
    omap_t m;
    omap_init(&m, item_key);
    const char *keys[] = {"pear", "apple", "fig", "kiwi", "lime"};
    size_t pos[5];
    for (int i = 0; i < 5; i++)
        pos[i] = add(&m, item_new("%s", keys[i]));
    char got[256];
    order(&m, got, sizeof got);
    assert_string_equal(got, "pear,apple,fig,kiwi,lime");
    free(omap_del(&m, pos[1])); /* apple */
    free(omap_del(&m, pos[3])); /* kiwi */
    order(&m, got, sizeof got);
    assert_string_equal(got, "pear,fig,lime");
    add(&m, item_new("apple")); /* back in: now the newest */
    order(&m, got, sizeof got);
    assert_string_equal(got, "pear,fig,lime,apple");
    /* a cursor past fig goes on at lime, whatever was deleted before it */
    long fig = find(&m, "fig");
    assert_true(fig >= 0);
    size_t next = omap_seek(&m, m.ents[fig].ord + 1);
    assert_string_equal(((item_t *)m.ents[next].item)->key, "lime");
    omap_free(&m, free);
    assert_int_equal(m.live, 0);
    assert_int_equal(m.nents, 0);
}

/* A cursor is an ordinal: it keeps its place while the map grows and rehashes under it. */
static void test_cursor_survives_growth(void **state) {
    (void)state;
    omap_t m;
    omap_init(&m, item_key);
    for (long i = 0; i < 10; i++)
        add(&m, item_new("k%ld", i));
    long p5 = find(&m, "k5");
    uint64_t cursor = m.ents[p5].ord + 1; /* a scan has seen k0..k5 */
    size_t cap0 = m.idxcap;
    for (long i = 10; i < 5000; i++)
        add(&m, item_new("k%ld", i));
    assert_true(m.idxcap > cap0);
    /* the rest of the scan: k6 .. k4999, each once, in order */
    long want = 6;
    for (size_t i = omap_seek(&m, cursor); i < m.nents; i = omap_seek(&m, m.ents[i].ord + 1)) {
        char k[24];
        snprintf(k, sizeof k, "k%ld", want++);
        assert_string_equal(((item_t *)m.ents[i].item)->key, k);
    }
    assert_int_equal(want, 5000);
    omap_free(&m, free);
}

/* Growth: every key stays found, the index stays a power of two at most two-thirds used. */
static void test_growth_keeps_every_key(void **state) {
    (void)state;
    omap_t m;
    omap_init(&m, item_key);
    enum { N = 20000 };
    for (long i = 0; i < N; i++) {
        add(&m, item_new("key-%ld", i));
        assert_true(m.used * 3 <= m.idxcap * 2);
    }
    assert_int_equal(m.live, N);
    assert_int_equal(m.idxcap & (m.idxcap - 1), 0);
    for (long i = 0; i < N; i++) {
        char k[24];
        snprintf(k, sizeof k, "key-%ld", i);
        long p = find(&m, k);
        assert_true(p >= 0);
        assert_string_equal(((item_t *)m.ents[p].item)->key, k);
    }
    assert_int_equal(find(&m, "key-20000"), -1);
    omap_free(&m, free);
}

/* Many keys in and out: deleting most of them compacts the entries, and what is left keeps
 * its order and is found. */
static void test_many_keys_in_and_out(void **state) {
    (void)state;
    omap_t m;
    omap_init(&m, item_key);
    enum { N = 50000 };
    for (long i = 0; i < N; i++)
        add(&m, item_new("%ld", i));
    for (long i = 0; i < N; i++) {
        if (i % 10 == 3) continue;
        char k[24];
        snprintf(k, sizeof k, "%ld", i);
        long p = find(&m, k);
        assert_true(p >= 0);
        free(omap_del(&m, (size_t)p));
    }
    assert_int_equal(m.live, N / 10);
    assert_true(m.nents < N / 2); /* compacted, not N entries with holes */
    long want = 3;
    for (size_t i = omap_seek(&m, 0); i < m.nents; i = omap_seek(&m, m.ents[i].ord + 1)) {
        char k[24];
        snprintf(k, sizeof k, "%ld", want);
        assert_string_equal(((item_t *)m.ents[i].item)->key, k);
        assert_int_equal(find(&m, k), (long)i);
        want += 10;
    }
    assert_int_equal(want, N + 3);
    /* refill: tombstones do not make the probes run forever */
    for (long i = 0; i < N; i++)
        if (i % 10 != 3) add(&m, item_new("%ld", i));
    assert_int_equal(m.live, N);
    assert_true(m.used * 3 <= m.idxcap * 2);
    omap_free(&m, free);
}

/* Keys whose hashes are equal are told apart by their bytes. */
static void test_full_hash_collisions(void **state) {
    (void)state;
    omap_t m;
    omap_init(&m, item_key);
    enum { N = 600 };
    for (long i = 0; i < N; i++) {
        item_t *it = item_new("c%ld", i);
        assert_int_equal(omap_find(&m, (const uint8_t *)it->key, it->n, 42), -1);
        omap_add(&m, it, 42);
    }
    for (long i = 0; i < N; i += 2) {
        char k[24];
        int n = snprintf(k, sizeof k, "c%ld", i);
        long p = omap_find(&m, (const uint8_t *)k, (size_t)n, 42);
        assert_true(p >= 0);
        free(omap_del(&m, (size_t)p));
    }
    for (long i = 0; i < N; i++) {
        char k[24];
        int n = snprintf(k, sizeof k, "c%ld", i);
        long p = omap_find(&m, (const uint8_t *)k, (size_t)n, 42);
        if (i % 2) {
            assert_true(p >= 0);
            assert_string_equal(((item_t *)m.ents[p].item)->key, k);
        } else {
            assert_int_equal(p, -1);
        }
    }
    assert_int_equal(m.live, N / 2);
    omap_free(&m, free);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_lookup_delete),
        cmocka_unit_test(test_iteration_in_insertion_order),
        cmocka_unit_test(test_cursor_survives_growth),
        cmocka_unit_test(test_growth_keeps_every_key),
        cmocka_unit_test(test_many_keys_in_and_out),
        cmocka_unit_test(test_full_hash_collisions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
