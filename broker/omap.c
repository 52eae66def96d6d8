/* omap.c - an insertion-ordered hash map (the layout of CPython's compact dict): a dense
 * array of entries in insertion order and a sparse index of positions into it. Iteration
 * follows insertion order, popitem takes the newest, and a scan cursor is an entry ordinal,
 * which stays meaningful across inserts, deletes and rehashes. */
#include <stdlib.h>
#include <string.h>

#include "omap.h"
#include "util.h"

#define SLOT_EMPTY 0u
#define SLOT_DEL   1u /* tombstone */

void omap_init(omap_t *m, omap_key_fn key) {
    memset(m, 0, sizeof *m);
    m->key = key;
    m->next_ord = 1;
}

static bool same_key(const omap_t *m, const oent_t *e, const uint8_t *key, size_t n,
                     uint64_t hash) {
    if (e->hash != hash) return false;
    size_t kn;
    const uint8_t *k = m->key(e->item, &kn);
    return kn == n && memcmp(k, key, n) == 0;
}

/* A slot holds the entry's position + 2 in its low half and the top half of its hash in the
 * high half, so a probe that meets another key's slot is told apart without reading ents
 * (a cache miss each on a big dict). */
#define SLOT_TAG(h) ((h)&0xffffffff00000000ull)
#define SLOT_POS(s) ((size_t)(uint32_t)(s)-2)

long omap_find(const omap_t *m, const uint8_t *key, size_t n, uint64_t hash) {
    if (!m->idxcap) return -1;
    size_t mask = m->idxcap - 1;
    uint64_t tag = SLOT_TAG(hash);
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        uint64_t s = m->idx[i];
        if (s == SLOT_EMPTY) return -1;
        if (s != SLOT_DEL && SLOT_TAG(s) == tag && same_key(m, &m->ents[SLOT_POS(s)], key, n, hash))
            return (long)SLOT_POS(s);
    }
}

static void index_put(omap_t *m, size_t pos) {
    size_t mask = m->idxcap - 1;
    size_t i = m->ents[pos].hash & mask;
    while (m->idx[i] > SLOT_DEL)
        i = (i + 1) & mask;
    if (m->idx[i] == SLOT_EMPTY) m->used++;
    m->idx[i] = SLOT_TAG(m->ents[pos].hash) | (uint64_t)(pos + 2);
}

/* Drops deleted entries and rebuilds the index at a size fit for the live ones. */
static void rebuild(omap_t *m, size_t want_live) {
    size_t j = 0;
    for (size_t i = 0; i < m->nents; i++)
        if (m->ents[i].item) m->ents[j++] = m->ents[i];
    m->nents = j;
    size_t cap = 8;
    while (cap * 2 < want_live * 3)
        cap *= 2; /* load <= 2/3 */
    free(m->idx);
    m->idx = xcalloc(cap, sizeof *m->idx);
    m->idxcap = cap;
    m->used = 0;
    for (size_t i = 0; i < m->nents; i++)
        index_put(m, i);
}

size_t omap_add(omap_t *m, void *item, uint64_t hash) {
    if (m->nents == m->entcap) {
        if (m->nents - m->live > m->nents / 4 && m->nents > 8) {
            rebuild(m, m->live + 1); /* many holes: compact instead of growing */
        }
        if (m->nents == m->entcap) {
            m->entcap = m->entcap ? m->entcap + m->entcap / 2 : 4;
            m->ents = xrealloc(m->ents, m->entcap * sizeof *m->ents);
        }
    }
    /* Probing ends at an empty slot: keep at least a third of them empty, counting
     * tombstones as used. */
    if ((m->used + 1) * 3 > m->idxcap * 2) rebuild(m, (m->live + 1) * 2);
    size_t pos = m->nents++;
    m->ents[pos] = (oent_t){hash, m->next_ord++, item};
    index_put(m, pos);
    m->live++;
    return pos;
}

void *omap_del(omap_t *m, size_t pos) {
    oent_t *e = &m->ents[pos];
    void *item = e->item;
    size_t mask = m->idxcap - 1;
    for (size_t i = e->hash & mask;; i = (i + 1) & mask) {
        if (m->idx[i] > SLOT_DEL && SLOT_POS(m->idx[i]) == pos) {
            m->idx[i] = SLOT_DEL;
            break;
        }
    }
    e->item = NULL;
    m->live--;
    /* trailing holes cost nothing to drop, and keep popitem O(1) */
    while (m->nents && !m->ents[m->nents - 1].item) {
        m->nents--;
        /* its index slot is a tombstone already; position nents is reused by the next add,
         * so no slot may still point at it */
    }
    if (m->live == 0) {
        m->nents = 0;
        if (m->idxcap) memset(m->idx, 0, m->idxcap * sizeof *m->idx);
        m->used = 0;
    } else if (m->live < m->nents / 4 && m->nents > 64) {
        rebuild(m, m->live * 2);
        if (m->entcap > m->nents * 4) {
            m->entcap = m->nents * 2;
            m->ents = xrealloc(m->ents, m->entcap * sizeof *m->ents);
        }
    }
    return item;
}

size_t omap_seek(const omap_t *m, uint64_t from) {
    size_t lo = 0, hi = m->nents;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->ents[mid].ord < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    while (lo < m->nents && !m->ents[lo].item)
        lo++;
    return lo;
}

long omap_last(omap_t *m) {
    for (size_t i = m->nents; i > 0; i--)
        if (m->ents[i - 1].item) return (long)(i - 1);
    return -1;
}

void omap_free(omap_t *m, void (*free_item)(void *)) {
    for (size_t i = 0; i < m->nents; i++)
        if (m->ents[i].item && free_item) free_item(m->ents[i].item);
    free(m->ents);
    free(m->idx);
    omap_key_fn k = m->key;
    omap_init(m, k);
}
