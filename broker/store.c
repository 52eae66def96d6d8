/* store.c - the named objects: one insertion-ordered map from name to object, one name space
 * for every kind, so that "x" is a dict or a list but never both. */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

static omap_t objects;
static size_t per_kind[KIND__N];

static const char *const kind_names[KIND__N] = {
    [KIND_NONE] = "none",
    [KIND_DICT] = "dict",
    [KIND_LIST] = "list",
    [KIND_QUEUE] = "queue",
    [KIND_LOCK] = "lock",
    [KIND_RLOCK] = "rlock",
    [KIND_SEMAPHORE] = "semaphore",
    [KIND_CONDITION] = "condition",
    [KIND_EVENT] = "event",
    [KIND_BARRIER] = "barrier",
    [KIND_VALUE] = "value",
    [KIND_NAMESPACE] = "namespace",
    [KIND_PIPE] = "pipe",
};

const char *kind_name(kind_t k) {
    return k < KIND__N && kind_names[k] ? kind_names[k] : "?";
}

kind_t kind_parse(const char *s, size_t n) {
    for (int k = 1; k < KIND__N; k++)
        if (kind_names[k] && strlen(kind_names[k]) == n && !memcmp(kind_names[k], s, n))
            return (kind_t)k;
    return KIND_NONE;
}

static const uint8_t *obj_key(const void *item, size_t *len) {
    const obj_t *o = item;
    *len = o->namelen;
    return (const uint8_t *)o->name;
}

static const uint8_t *dkv_key(const void *item, size_t *len) {
    const dkv_t *kv = item;
    *len = kv->klen;
    return kv->data;
}

void store_init(void) {
    omap_init(&objects, obj_key);
}

void obj_free(obj_t *o) {
    if (!o) return;
    switch (o->kind) {
    case KIND_DICT:
    case KIND_NAMESPACE: omap_free(&o->u.dict, free); break;
    case KIND_LIST: deque_clear(&o->u.list); break;
    default: sync_free(o); break;
    }
    free(o->name);
    free(o);
}

static void obj_free_v(void *o) {
    obj_free(o);
}

void store_free(void) {
    omap_free(&objects, obj_free_v);
    memset(per_kind, 0, sizeof per_kind);
}

obj_t *store_get(const char *name, size_t n) {
    long pos = omap_find(&objects, (const uint8_t *)name, n, mpb__hash(name, n));
    return pos < 0 ? NULL : objects.ents[pos].item;
}

static obj_t *obj_new(kind_t kind, const char *name, size_t n) {
    obj_t *o = xcalloc(1, sizeof *o);
    o->kind = kind;
    o->name = xstrndup(name, n);
    o->namelen = (uint32_t)n;
    if (kind == KIND_DICT || kind == KIND_NAMESPACE) omap_init(&o->u.dict, dkv_key);
    if (kind == KIND_SEMAPHORE) o->u.sem.initial = -1; /* not opened yet: see t_sync.c */
    if (kind == KIND_BARRIER) o->u.barrier.timeout_ms = -1;
    return o;
}

obj_t *store_create(kind_t kind, const char *name, size_t n) {
    obj_t *o = obj_new(kind, name, n);
    omap_add(&objects, o, mpb__hash(name, n));
    per_kind[kind]++;
    return o;
}

void store_delete(obj_t *o) {
    long pos = omap_find(&objects, (const uint8_t *)o->name, o->namelen,
                         mpb__hash(o->name, o->namelen));
    if (pos >= 0) omap_del(&objects, (size_t)pos);
    per_kind[o->kind]--;
    server_forget_obj(o);
    anon_forget(o);
    obj_free(o);
}

size_t store_count(void) {
    return objects.live;
}

size_t store_count_kind(kind_t k) {
    return per_kind[k];
}

const omap_t *store_map(void) {
    return &objects;
}

uint64_t obj_size(const obj_t *o) {
    switch (o->kind) {
    case KIND_DICT:
    case KIND_NAMESPACE: return o->u.dict.live;
    case KIND_LIST: return o->u.list.len;
    case KIND_QUEUE: return o->u.queue.items.len;
    case KIND_LOCK:
    case KIND_RLOCK: return o->u.lock.owner ? 1 : 0;
    case KIND_SEMAPHORE: return o->u.sem.value < 0 ? 0 : (uint64_t)o->u.sem.value;
    case KIND_EVENT: return o->u.event.set;
    case KIND_BARRIER: return o->u.barrier.waiters.n;
    case KIND_CONDITION: return o->u.cond.waiters.n;
    case KIND_VALUE: return 1;
    case KIND_PIPE: return o->u.pipe.box[0].len + o->u.pipe.box[1].len;
    default: return 0;
    }
}

obj_t *dict_clone(const obj_t *src, const char *name, size_t n) {
    obj_t *o = obj_new(KIND_DICT, name, n);
    const omap_t *m = &src->u.dict;
    for (size_t i = 0; i < m->nents; i++) {
        const dkv_t *kv = m->ents[i].item;
        if (!kv) continue;
        size_t sz = sizeof *kv + kv->klen + kv->vlen;
        dkv_t *c = xmalloc(sz);
        memcpy(c, kv, sz);
        omap_add(&o->u.dict, c, m->ents[i].hash);
    }
    return o;
}

void store_replace(obj_t *old, obj_t *o) {
    long pos = omap_find(&objects, (const uint8_t *)old->name, old->namelen,
                         mpb__hash(old->name, old->namelen));
    objects.ents[pos].item = o;
    if (old->anon) anon_moved(old, o);
    obj_free(old);
}
