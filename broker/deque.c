/* deque.c - a ring of blob pointers with power-of-two capacity: O(1) at both ends for queues
 * and list.pop(0), and a memmove-free insert that shifts only one side. */
#include <stdlib.h>
#include <string.h>

#include "deque.h"

/* Copies the ring into a new array of ncap slots, head at 0. */
static void resize(deque_t *d, size_t ncap) {
    blob_t **v = xmalloc(ncap * sizeof *v);
    for (size_t i = 0; i < d->len; i++)
        v[i] = deque_at(d, i);
    free(d->v);
    d->v = v;
    d->cap = ncap;
    d->head = 0;
}

static void grow(deque_t *d) {
    resize(d, d->cap ? d->cap * 2 : 8);
}

static void shrink(deque_t *d) {
    /* give memory back after a big queue drains */
    if (d->cap > 64 && d->len < d->cap / 8) resize(d, d->cap / 4);
}

void deque_push_back(deque_t *d, blob_t *b) {
    if (d->len == d->cap) grow(d);
    d->v[(d->head + d->len) & (d->cap - 1)] = b;
    d->len++;
}

void deque_push_front(deque_t *d, blob_t *b) {
    if (d->len == d->cap) grow(d);
    d->head = (d->head + d->cap - 1) & (d->cap - 1);
    d->v[d->head] = b;
    d->len++;
}

blob_t *deque_pop_front(deque_t *d) {
    if (!d->len) return NULL;
    blob_t *b = d->v[d->head];
    d->head = (d->head + 1) & (d->cap - 1);
    d->len--;
    shrink(d);
    return b;
}

blob_t *deque_pop_back(deque_t *d) {
    if (!d->len) return NULL;
    blob_t *b = deque_at(d, d->len - 1);
    d->len--;
    shrink(d);
    return b;
}

void deque_insert(deque_t *d, size_t i, blob_t *b) {
    if (i == 0) return deque_push_front(d, b);
    if (i >= d->len) return deque_push_back(d, b);
    if (d->len == d->cap) grow(d);
    if (i < d->len / 2) {
        d->head = (d->head + d->cap - 1) & (d->cap - 1);
        for (size_t j = 0; j < i; j++)
            *deque_ref(d, j) = deque_at(d, j + 1);
    } else {
        for (size_t j = d->len; j > i; j--)
            *deque_ref(d, j) = deque_at(d, j - 1);
    }
    *deque_ref(d, i) = b;
    d->len++;
}

blob_t *deque_remove(deque_t *d, size_t i) {
    blob_t *b = deque_at(d, i);
    if (i < d->len / 2) {
        for (size_t j = i; j > 0; j--)
            *deque_ref(d, j) = deque_at(d, j - 1);
        d->head = (d->head + 1) & (d->cap - 1);
    } else {
        for (size_t j = i; j + 1 < d->len; j++)
            *deque_ref(d, j) = deque_at(d, j + 1);
    }
    d->len--;
    shrink(d);
    return b;
}

void deque_clear(deque_t *d) {
    for (size_t i = 0; i < d->len; i++)
        free(deque_at(d, i));
    free(d->v);
    memset(d, 0, sizeof *d);
}

size_t deque_bytes(const deque_t *d) {
    size_t n = d->cap * sizeof(blob_t *);
    for (size_t i = 0; i < d->len; i++)
        n += sizeof(blob_t) + deque_at(d, i)->len;
    return n;
}
