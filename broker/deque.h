/* deque.h - a ring of blobs, the body of list and queue. */
#ifndef BROKER_DEQUE_H
#define BROKER_DEQUE_H

#include "util.h"

typedef struct deque {
    blob_t **v;
    size_t head, len, cap; /* cap is 0 or a power of two */
} deque_t;
static inline blob_t *deque_at(const deque_t *d, size_t i) {
    return d->v[(d->head + i) & (d->cap - 1)];
}
static inline blob_t **deque_ref(deque_t *d, size_t i) {
    return &d->v[(d->head + i) & (d->cap - 1)];
}
void deque_push_back(deque_t *d, blob_t *b);
void deque_push_front(deque_t *d, blob_t *b);
blob_t *deque_pop_front(deque_t *d);
blob_t *deque_pop_back(deque_t *d);
void deque_insert(deque_t *d, size_t i, blob_t *b);
blob_t *deque_remove(deque_t *d, size_t i);
void deque_clear(deque_t *d); /* frees the blobs */
size_t deque_bytes(const deque_t *d);

#endif
