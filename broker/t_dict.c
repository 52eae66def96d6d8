/* t_dict.c - the dict kind: Python dict semantics over an insertion-ordered hash map whose
 * items are key and value bytes in one allocation (dkv_t). Keys arrive canonicalised. */
#include <stdlib.h>
#include <string.h>

#include "anon.h"
#include "kind.h"
#include "mem.h"
#include "store.h"

static mpb__buf_t keybuf; /* canonical form of the request's key, when it was not */

static dkv_t *dkv_new(const uint8_t *k, size_t kn, const uint8_t *v, size_t vn) {
    dkv_t *kv = xmalloc(sizeof *kv + kn + vn);
    kv->klen = (uint32_t)kn;
    kv->vlen = (uint32_t)vn;
    memcpy(kv->data, k, kn);
    memcpy(kv->data + kn, v, vn);
    return kv;
}

static omap_t *as_dict(req_t *r) {
    return &r->obj->u.dict;
}

/* Sets the value of the pair at pos (from omap_find; -1: a new pair), replacing the pair's
 * allocation when the size changes. */
static void dict_store(omap_t *m, long pos, const uint8_t *k, size_t kn, uint64_t h,
                       const uint8_t *v, size_t vn) {
    if (pos < 0) {
        omap_add(m, dkv_new(k, kn, v, vn), h);
        return;
    }
    dkv_t *kv = m->ents[pos].item;
    if (kv->vlen != vn) {
        kv = xrealloc(kv, sizeof *kv + kn + vn);
        kv->vlen = (uint32_t)vn;
        m->ents[pos].item = kv;
    }
    memcpy(kv->data + kn, v, vn);
}

void dict_put(omap_t *m, const uint8_t *k, size_t kn, uint64_t h, const uint8_t *v, size_t vn) {
    dict_store(m, omap_find(m, k, kn, h), k, kn, h, v, vn);
}

long dict_find(omap_t *m, const uint8_t *k, size_t kn, uint64_t *h) {
    *h = mpb__hash(k, kn);
    return omap_find(m, k, kn, *h);
}

/* ---- hooks (the namespace kind shares them) ---- */

static const uint8_t *dkv_key(const void *item, size_t *len) {
    const dkv_t *kv = item;
    *len = kv->klen;
    return kv->data;
}

void dict_init(obj_t *o) {
    omap_init(&o->u.dict, dkv_key);
}

void dict_free(obj_t *o) {
    omap_free(&o->u.dict, free);
}

uint64_t dict_size(const obj_t *o) {
    return o->u.dict.live;
}

/* A new dict with src's pairs, under name, in no store (dict.copy). */
static obj_t *dict_clone(const obj_t *src, const char *name, size_t n) {
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

/* dict.set KEY VALUE -> nil */
int cmd_dict_set(req_t *r) {
    const uint8_t *k, *v;
    size_t kn, vn;
    if (arg_key(r, &k, &kn, &keybuf) || arg_value(r, "value", g_limits.max_value, &v, &vn))
        return -1;
    dict_put(as_dict(r), k, kn, mpb__hash(k, kn), v, vn);
    return reply_nil(r);
}

/* The key of a KEY [DEFAULT] request and its position (-1: not there), or -2 after an error
 * reply. */
static long key_default_pos(req_t *r, const char *op, const uint8_t **k, size_t *kn) {
    if (r->argc > 2)
        return reply_error(r, MPB_EPROTO, "%s takes 1 or 2 arguments, got %u", op, r->argc), -2;
    uint64_t h;
    if (arg_key(r, k, kn, &keybuf)) return -2;
    return dict_find(as_dict(r), *k, *kn, &h);
}

/* A missing key of a KEY [DEFAULT] request: the default, or ENOKEY. */
static int reply_default(req_t *r, const uint8_t *k, size_t kn) {
    const uint8_t *d;
    size_t dn;
    if (r->argc >= 2) {
        if (arg_value(r, "default", g_limits.max_value, &d, &dn)) return -1;
        return reply_raw(r, d, dn);
    }
    char s[80];
    mpb__mp_sample(k, kn, s, sizeof s);
    return reply_error(r, MPB_ENOKEY, "no key %s in dict/%.*s", s, (int)r->obj->namelen,
                       r->obj->name);
}

/* dict.get KEY [DEFAULT] -> value | DEFAULT | ENOKEY */
int cmd_dict_get(req_t *r) {
    const uint8_t *k;
    size_t kn;
    long pos = key_default_pos(r, "dict.get", &k, &kn);
    if (pos == -2) return -1;
    if (pos < 0) return reply_default(r, k, kn);
    const dkv_t *kv = as_dict(r)->ents[pos].item;
    return reply_raw(r, dkv_val(kv), kv->vlen);
}

/* dict.del KEY -> nil | ENOKEY */
int cmd_dict_del(req_t *r) {
    const uint8_t *k;
    size_t kn;
    uint64_t h;
    if (arg_key(r, &k, &kn, &keybuf)) return -1;
    long pos = dict_find(as_dict(r), k, kn, &h);
    if (pos < 0) {
        char s[80];
        mpb__mp_sample(k, kn, s, sizeof s);
        return reply_error(r, MPB_ENOKEY, "no key %s in dict/%.*s", s, (int)r->obj->namelen,
                           r->obj->name);
    }
    free(omap_del(as_dict(r), (size_t)pos));
    return reply_nil(r);
}

/* dict.contains KEY -> bool */
int cmd_dict_contains(req_t *r) {
    const uint8_t *k;
    size_t kn;
    uint64_t h;
    if (arg_key(r, &k, &kn, &keybuf)) return -1;
    return reply_bool(r, dict_find(as_dict(r), k, kn, &h) >= 0);
}

/* dict.len -> int */
int cmd_dict_len(req_t *r) {
    return reply_uint(r, as_dict(r)->live);
}

/* dict.scan WHAT CURSOR COUNT -> [next_cursor, [keys | values | [key, value] pairs]]
 * WHAT: 0 keys, 1 values, 2 items. Cursor 0 starts; a next_cursor of 0 means done. */
int cmd_dict_scan(req_t *r) {
    uint64_t what, cursor, count;
    if (arg_uint(r, "what", &what) || arg_uint(r, "cursor", &cursor) ||
        arg_uint(r, "count", &count))
        return -1;
    if (what > 2)
        return reply_error(r, MPB_EINVAL, "what must be 0 (keys), 1 (values) or 2 (items)");
    if (count == 0 || count > g_limits.max_scan) count = g_limits.max_scan;
    omap_t *m = as_dict(r);
    size_t i = omap_seek(m, cursor), end = i;
    uint32_t n = 0;
    size_t bytes = 0;
    /* Pages are bounded by count and by half a frame (but one item always goes, however big,
     * for progress), so a page fits in a frame with its reply around it. */
    while (end < m->nents && n < count) {
        const dkv_t *kv = m->ents[end].item;
        if (kv) {
            size_t sz = kv->klen + kv->vlen + 2;
            if (n && bytes + sz > g_limits.max_frame / 2) break; /* the next page takes it */
            n++;
            bytes += sz;
        }
        end++;
    }
    while (end < m->nents && !m->ents[end].item)
        end++;
    uint64_t next = end < m->nents ? m->ents[end].ord : 0;
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, 2);
    mpb__w_uint(b, next);
    mpb__w_array(b, n);
    for (; i < end; i++) {
        const dkv_t *kv = m->ents[i].item;
        if (!kv) continue;
        if (what == 0) {
            mpb__w_raw(b, kv->data, kv->klen);
        } else if (what == 1) {
            mpb__w_raw(b, dkv_val(kv), kv->vlen);
        } else {
            mpb__w_array(b, 2);
            mpb__w_raw(b, kv->data, kv->klen + kv->vlen);
        }
    }
    return 0;
}

/* dict.update PAIRS -> nil. PAIRS: a map, or an array of [key, value] arrays. All or none:
 * every pair is checked before any is set. */
int cmd_dict_update(req_t *r) {
    mpb__rd_t start = r->args, q = r->args;
    uint32_t n;
    bool map = mpb__rd_map(&q, &n) == 0;
    if (!map) {
        q = start;
        if (mpb__rd_array(&q, &n))
            return reply_error(r, MPB_ETYPE, "update takes a map or an array of [key, value]");
    }
    mpb__rd_t first = q;
    for (int pass = 0; pass < 2; pass++) {
        q = first;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t two = 2;
            if (!map && (mpb__rd_array(&q, &two) || two != 2))
                return reply_error(r, MPB_ETYPE, "update: item %u is not a [key, value] pair", i);
            const uint8_t *k, *v;
            size_t kn, vn;
            r->args = q;
            if (arg_key(r, &k, &kn, &keybuf)) return -1;
            if (arg_value(r, "value", g_limits.max_value, &v, &vn)) return -1;
            q = r->args;
            if (pass == 1) dict_put(as_dict(r), k, kn, mpb__hash(k, kn), v, vn);
        }
    }
    return reply_nil(r);
}

/* dict.pop KEY [DEFAULT] -> value | DEFAULT | ENOKEY */
int cmd_dict_pop(req_t *r) {
    const uint8_t *k;
    size_t kn;
    long pos = key_default_pos(r, "dict.pop", &k, &kn);
    if (pos == -2) return -1;
    if (pos < 0) return reply_default(r, k, kn);
    const dkv_t *at = as_dict(r)->ents[pos].item;
    if (mem_reply_room(r, at->vlen) < 0) return -1; /* before it leaves the dict (mem.c) */
    dkv_t *kv = omap_del(as_dict(r), (size_t)pos);
    reply_raw(r, dkv_val(kv), kv->vlen);
    free(kv);
    return 0;
}

/* dict.popitem -> [key, value] of the newest pair | EEMPTY */
int cmd_dict_popitem(req_t *r) {
    long pos = omap_last(as_dict(r));
    if (pos < 0)
        return reply_error(r, MPB_EEMPTY, "popitem(): dict/%.*s is empty", (int)r->obj->namelen,
                           r->obj->name);
    const dkv_t *at = as_dict(r)->ents[pos].item;
    if (mem_reply_room(r, at->klen + at->vlen) < 0) return -1;
    dkv_t *kv = omap_del(as_dict(r), (size_t)pos);
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, 2);
    mpb__w_raw(b, kv->data, kv->klen + kv->vlen);
    free(kv);
    return 0;
}

/* dict.setdefault KEY DEFAULT -> the value now under KEY */
int cmd_dict_setdefault(req_t *r) {
    const uint8_t *k, *d;
    size_t kn, dn;
    uint64_t h;
    if (arg_key(r, &k, &kn, &keybuf) || arg_value(r, "default", g_limits.max_value, &d, &dn))
        return -1;
    long pos = dict_find(as_dict(r), k, kn, &h);
    if (pos >= 0) {
        const dkv_t *kv = as_dict(r)->ents[pos].item;
        return reply_raw(r, dkv_val(kv), kv->vlen);
    }
    omap_add(as_dict(r), dkv_new(k, kn, d, dn), h);
    return reply_raw(r, d, dn);
}

/* dict.incr KEY BY -> the new integer. An absent key counts as 0. */
int cmd_dict_incr(req_t *r) {
    const uint8_t *k;
    size_t kn;
    int64_t by, cur = 0;
    uint64_t h;
    if (arg_key(r, &k, &kn, &keybuf) || arg_int(r, "increment", &by)) return -1;
    long pos = dict_find(as_dict(r), k, kn, &h);
    if (pos >= 0) {
        const dkv_t *kv = as_dict(r)->ents[pos].item;
        mpb__rd_t v = {dkv_val(kv), dkv_val(kv) + kv->vlen};
        if (mpb__rd_int(&v, &cur) || v.p != v.end) {
            char s[80];
            mpb__mp_sample(k, kn, s, sizeof s);
            return reply_error(r, MPB_ETYPE, "value under %s is not an integer", s);
        }
    }
    int64_t sum;
    if (__builtin_add_overflow(cur, by, &sum))
        return reply_error(r, MPB_EOVERFLOW, "%lld + %lld overflows int64", (long long)cur,
                           (long long)by);
    uint8_t enc[9];
    size_t en = mpb__enc_int(enc, sum);
    dict_store(as_dict(r), pos, k, kn, h, enc, en); /* pos is still good: nothing moved */
    return reply_int(r, sum);
}

/* dict.clear -> nil */
int cmd_dict_clear(req_t *r) {
    omap_free(as_dict(r), free);
    return reply_nil(r);
}

/* dict.copy DST -> nil: DST becomes an atomic snapshot (created, or replaced if a dict). */
int cmd_dict_copy(req_t *r) {
    const char *dst;
    uint32_t dn;
    if (arg_str(r, "destination", &dst, &dn)) return -1;
    if (!mpb__name_ok(dst, dn)) return reply_error(r, MPB_EINVAL, "bad destination name");
    obj_t *old = store_get(dst, dn);
    if (old == r->obj) return reply_nil(r);
    if (old && old->kind != KIND_DICT)
        return reply_error(r, MPB_EKIND, "%.*s is a %s, not a dict", (int)dn, dst,
                           kind_name(old->kind));
    if (!old && anon_name(dst, dn))
        return reply_error(r, MPB_ENOOBJ,
                           "no object dict/%.*s: names starting with '~' are anonymous objects, "
                           "made by obj.new, and this one is gone or never was",
                           (int)dn, dst);
    obj_t *copy = dict_clone(r->obj, dst, dn);
    if (old) {
        if (old->anon) anon_moved(old, copy); /* its references come along */
        store_replace(old, copy);
    } else {
        obj_t *fresh = store_create(KIND_DICT, dst, dn);
        store_replace(fresh, copy);
    }
    return reply_nil(r);
}

uint32_t dict_describe(const obj_t *o, mpb__buf_t *b) {
    const omap_t *m = &o->u.dict;
    size_t bytes = m->entcap * sizeof(oent_t) + m->idxcap * sizeof *m->idx;
    for (size_t i = 0; i < m->nents; i++) {
        const dkv_t *kv = m->ents[i].item;
        if (kv) bytes += sizeof *kv + kv->klen + kv->vlen;
    }
    mpb__w_cstr(b, "bytes");
    mpb__w_uint(b, bytes);
    return 1;
}

/* ---- batches ----
 *
 * A lookup in a big dict is a chain of cache misses: index slot, entry, pair. One at a time,
 * a batch of them waits for each miss in turn; touching the next requests' slots first lets
 * the misses of a whole window overlap, then each request finds its lines in cache. */

typedef struct ahead {
    const omap_t *m;
    uint64_t hash;
} ahead_t;

static bool keyed_op(uint64_t op) {
    switch (op) {
    case MPB_OP_DICT_SET:
    case MPB_OP_DICT_GET:
    case MPB_OP_DICT_DEL:
    case MPB_OP_DICT_CONTAINS:
    case MPB_OP_DICT_POP:
    case MPB_OP_DICT_SETDEFAULT:
    case MPB_OP_DICT_INCR: return true;
    default: return false;
    }
}

const uint8_t *dict_prefetch(const uint8_t *p, const uint8_t *end, int max) {
    ahead_t a[DICT_PREFETCH_MAX];
    int n = 0;
    if (max > DICT_PREFETCH_MAX) max = DICT_PREFETCH_MAX;
    mpb__rd_t rd = {p, end};
    for (int i = 0; i < max && mpb__rd_more(&rd); i++) {
        const uint8_t *v, *k;
        size_t vn, kn;
        uint32_t len, nl;
        uint64_t rid, op;
        const char *name;
        if (mpb__rd_span(&rd, &v, &vn)) break;
        mpb__rd_t q = {v, v + vn};
        if (mpb__rd_array(&q, &len) || len < 4 || mpb__rd_uint(&q, &rid) || mpb__rd_uint(&q, &op) ||
            !keyed_op(op) || mpb__rd_str(&q, &name, &nl) || mpb__rd_span(&q, &k, &kn) ||
            !mpb__canon_is(k, kn))
            continue;
        const obj_t *o = store_get(name, nl);
        if (!o || o->kind != KIND_DICT || !o->u.dict.idxcap) continue;
        const omap_t *m = &o->u.dict;
        a[n].m = m;
        a[n].hash = mpb__hash(k, kn);
        __builtin_prefetch(&m->idx[a[n].hash & (m->idxcap - 1)]);
        n++;
    }
    for (int i = 0; i < n; i++) {
        const omap_t *m = a[i].m;
        uint64_t s = m->idx[a[i].hash & (m->idxcap - 1)];
        if (s > 1)
            __builtin_prefetch(&m->ents[(uint32_t)s - 2]);
        else
            a[i].m = NULL;
    }
    for (int i = 0; i < n; i++) {
        const omap_t *m = a[i].m;
        if (!m) continue;
        uint64_t s = m->idx[a[i].hash & (m->idxcap - 1)];
        __builtin_prefetch(m->ents[(uint32_t)s - 2].item);
    }
    return rd.p;
}

const kind_ops_t dict_ops = {
    .name = "dict",
    .init = dict_init,
    .free = dict_free,
    .size = dict_size,
    .describe = dict_describe,
};
