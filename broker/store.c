/* store.c - the named objects: one insertion-ordered map from name to object, one name space
 * for every kind, so that "x" is a dict or a list but never both. */
#include <stdlib.h>
#include <string.h>

#include "kind.h"
#include "store.h"

static omap_t objects;
static size_t per_kind[KIND__N];
typedef void (*on_delete_fn)(obj_t *o);
static on_delete_fn *on_delete;
static size_t n_on_delete;

void store_on_delete(void (*fn)(obj_t *o)) {
    for (size_t i = 0; i < n_on_delete; i++)
        if (on_delete[i] == fn) return;
    on_delete = xrealloc(on_delete, (n_on_delete + 1) * sizeof *on_delete);
    on_delete[n_on_delete++] = fn;
}

static const uint8_t *obj_key(const void *item, size_t *len) {
    const obj_t *o = item;
    *len = o->namelen;
    return (const uint8_t *)o->name;
}

void store_init(void) {
    omap_init(&objects, obj_key);
}

void obj_free(obj_t *o) {
    if (!o) return;
    const kind_ops_t *k = kind_ops(o->kind);
    if (k->free) k->free(o);
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

obj_t *obj_new(kind_t kind, const char *name, size_t n) {
    obj_t *o = xcalloc(1, sizeof *o);
    o->kind = kind;
    o->name = xstrndup(name, n);
    o->namelen = (uint32_t)n;
    const kind_ops_t *k = kind_ops(kind);
    if (k->init) k->init(o);
    return o;
}

obj_t *store_create(kind_t kind, const char *name, size_t n) {
    obj_t *o = obj_new(kind, name, n);
    omap_add(&objects, o, mpb__hash(name, n));
    per_kind[kind]++;
    return o;
}

void store_delete(obj_t *o) {
    long pos =
        omap_find(&objects, (const uint8_t *)o->name, o->namelen, mpb__hash(o->name, o->namelen));
    if (pos >= 0) omap_del(&objects, (size_t)pos);
    per_kind[o->kind]--;
    for (size_t i = 0; i < n_on_delete; i++)
        on_delete[i](o);
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
    const kind_ops_t *k = kind_ops(o->kind);
    return k->size ? k->size(o) : 0;
}

void store_replace(obj_t *old, obj_t *o) {
    long pos = omap_find(&objects, (const uint8_t *)old->name, old->namelen,
                         mpb__hash(old->name, old->namelen));
    objects.ents[pos].item = o;
    obj_free(old);
}

bool obj_busy(const obj_t *o, char *why, size_t n) {
    const kind_ops_t *k = kind_ops(o->kind);
    return k->busy && k->busy(o, why, n);
}

void obj_fail_all(obj_t *o, int code, const char *msg) {
    const kind_ops_t *k = kind_ops(o->kind);
    if (k->fail_all) k->fail_all(o, code, msg);
}
