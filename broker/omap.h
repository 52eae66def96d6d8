/* omap.h - an insertion-ordered hash map, the body of dict and of the store.
 *
 *   ents: [e0 e1 (deleted) e3 ...]  dense, in insertion order; each has an ordinal that
 *                                    only grows, so a cursor survives inserts and rehashes
 *   idx:  [ . 3 . 1 . . 4 ...]       open addressing (linear probing) over ents positions + 2
 */
#ifndef BROKER_OMAP_H
#define BROKER_OMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct oent {
    uint64_t hash;
    uint64_t ord;
    void *item; /* NULL: deleted */
} oent_t;
typedef const uint8_t *(*omap_key_fn)(const void *item, size_t *len);
typedef struct omap {
    oent_t *ents;
    size_t nents, entcap, live;
    uint64_t *idx; /* position + 2 | hash tag; see omap.c */
    size_t idxcap; /* power of two */
    size_t used;   /* index slots not empty: positions and tombstones */
    uint64_t next_ord;
    omap_key_fn key;
} omap_t;
void omap_init(omap_t *m, omap_key_fn key);
/* The position in ents of key, or -1. */
long omap_find(const omap_t *m, const uint8_t *key, size_t n, uint64_t hash);
/* Adds an item whose key is absent; returns its position. */
size_t omap_add(omap_t *m, void *item, uint64_t hash);
/* Removes the entry at pos and returns its item. */
void *omap_del(omap_t *m, size_t pos);
/* The position of the first live entry with ord >= from, or nents. */
size_t omap_seek(const omap_t *m, uint64_t from);
/* The last live entry's position, or -1. */
long omap_last(omap_t *m);
void omap_free(omap_t *m, void (*free_item)(void *));

#endif
