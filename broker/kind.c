/* kind.c - the table of kinds: each kind's hooks (kind_ops_t, defined in its t_*.c) by its
 * number, so the store, the waiters and the sessions reach a kind without naming it. */
#include <string.h>

#include "kind.h"

static const kind_ops_t no_ops = {.name = "none"};

static const kind_ops_t *const kinds[KIND__N] = {
    [KIND_NONE] = &no_ops,         [KIND_DICT] = &dict_ops,      [KIND_LIST] = &list_ops,
    [KIND_QUEUE] = &queue_ops,     [KIND_LOCK] = &lock_ops,      [KIND_RLOCK] = &rlock_ops,
    [KIND_SEMAPHORE] = &sem_ops,   [KIND_CONDITION] = &cond_ops, [KIND_EVENT] = &event_ops,
    [KIND_BARRIER] = &barrier_ops, [KIND_VALUE] = &value_ops,    [KIND_NAMESPACE] = &namespace_ops,
    [KIND_PIPE] = &pipe_ops,
};

const kind_ops_t *kind_ops(kind_t k) {
    return k < KIND__N ? kinds[k] : &no_ops;
}

const char *kind_name(kind_t k) {
    return k < KIND__N ? kinds[k]->name : "?";
}

kind_t kind_parse(const char *s, size_t n) {
    for (int k = 1; k < KIND__N; k++)
        if (strlen(kinds[k]->name) == n && !memcmp(kinds[k]->name, s, n)) return (kind_t)k;
    return KIND_NONE;
}
