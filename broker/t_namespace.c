/* t_namespace.c - Namespace: a dict whose keys are attribute names (strings of 1 to 255
 * bytes), over the dict's own map and pairs (t_dict.c). */
#include <stdlib.h>

#include "kind.h"

static mpb__buf_t attrbuf; /* canonical form of the request's attribute name, when it was not */

static int attr(req_t *r, const uint8_t **k, size_t *kn) {
    const char *s;
    uint32_t n;
    const uint8_t *start = r->args.p;
    if (arg_str(r, "attribute name", &s, &n)) return -1;
    if (n == 0 || n > 255) return reply_error(r, MPB_EINVAL, "attribute names are 1 to 255 bytes");
    *k = start;
    *kn = (size_t)(r->args.p - start);
    if (!mpb__canon_is(*k, *kn)) {
        mpb__buf_reset(&attrbuf);
        mpb__w_str(&attrbuf, s, n);
        bbuf_ensure(&attrbuf);
        *k = attrbuf.p;
        *kn = attrbuf.len;
    }
    return 0;
}

static int no_attr(req_t *r, const uint8_t *k, size_t kn) {
    char s[80];
    mpb__mp_sample(k, kn, s, sizeof s);
    return reply_error(r, MPB_ENOKEY, "namespace/%.*s has no attribute %s", (int)r->obj->namelen,
                       r->obj->name, s);
}

/* The position of the request's attribute, or -1 after the reply (ENOKEY, or a bad name). */
static long attr_pos(req_t *r) {
    const uint8_t *k = NULL;
    size_t kn = 0;
    uint64_t h;
    if (attr(r, &k, &kn)) return -1;
    long pos = dict_find(&r->obj->u.dict, k, kn, &h);
    if (pos < 0) no_attr(r, k, kn);
    return pos;
}

/* namespace.get ATTR -> value | ENOKEY */
int cmd_ns_get(req_t *r) {
    long pos = attr_pos(r);
    if (pos < 0) return -1;
    const dkv_t *kv = r->obj->u.dict.ents[pos].item;
    return reply_raw(r, dkv_val(kv), kv->vlen);
}

/* namespace.set ATTR VALUE -> nil */
int cmd_ns_set(req_t *r) {
    const uint8_t *k = NULL, *v;
    size_t kn = 0, vn;
    if (attr(r, &k, &kn) || arg_value(r, "value", g_limits.max_value, &v, &vn)) return -1;
    dict_put(&r->obj->u.dict, k, kn, mpb__hash(k, kn), v, vn);
    return reply_nil(r);
}

/* namespace.del ATTR -> nil | ENOKEY */
int cmd_ns_del(req_t *r) {
    long pos = attr_pos(r);
    if (pos < 0) return -1;
    free(omap_del(&r->obj->u.dict, (size_t)pos));
    return reply_nil(r);
}

/* namespace.list -> {attr: value, ...} in the order they were first set */
int cmd_ns_list(req_t *r) {
    omap_t *m = &r->obj->u.dict;
    mpb__buf_t *b = reply_begin(r);
    mpb__w_map(b, (uint32_t)m->live);
    for (size_t i = 0; i < m->nents; i++) {
        const dkv_t *kv = m->ents[i].item;
        if (kv) mpb__w_raw(b, kv->data, kv->klen + kv->vlen);
    }
    return 0;
}

const kind_ops_t namespace_ops = {
    .name = "namespace",
    .init = dict_init,
    .free = dict_free,
    .size = dict_size,
    .describe = dict_describe,
};
