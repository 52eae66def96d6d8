/* t_list.c - the list kind: Python list semantics (negative indexes, slices, insert clamping,
 * stable sort that refuses incomparable types) over a ring of value blobs. Equality for
 * remove/index/count is equality of canonical encodings. */
#include <stdlib.h>
#include <string.h>

#include "kind.h"
#include "mem.h"

static mpb__buf_t canon_arg, canon_item;

static deque_t *as_list(req_t *r) {
    return &r->obj->u.list;
}

static int arg_item(req_t *r, const uint8_t **v, size_t *n) {
    return arg_value(r, "value", g_limits.max_value, v, n);
}

/* Resolves a Python index against len: -1 when out of range. */
static long norm_index(int64_t i, size_t len) {
    if (i < 0) i += (int64_t)len;
    return (i < 0 || (uint64_t)i >= len) ? -1 : (long)i;
}

/* Canonical form of the argument, to compare items against. */
static int arg_canon(req_t *r, const uint8_t **v, size_t *n) {
    if (arg_item(r, v, n)) return -1;
    if (!mpb__canon_is(*v, *n)) {
        mpb__buf_reset(&canon_arg);
        mpb__canon(*v, *n, &canon_arg);
        bbuf_ensure(&canon_arg);
        *v = canon_arg.p;
        *n = canon_arg.len;
    }
    return 0;
}

static bool item_equals(const blob_t *b, const uint8_t *v, size_t n) {
    if (mpb__canon_is(b->data, b->len)) return b->len == n && !memcmp(b->data, v, n);
    mpb__buf_reset(&canon_item);
    mpb__canon(b->data, b->len, &canon_item);
    bbuf_ensure(&canon_item);
    return canon_item.len == n && !memcmp(canon_item.p, v, n);
}

/* list.append VALUE -> nil */
int cmd_list_append(req_t *r) {
    const uint8_t *v;
    size_t n;
    if (arg_item(r, &v, &n)) return -1;
    deque_push_back(as_list(r), blob_new(v, n));
    return reply_nil(r);
}

/* list.extend ARRAY -> nil (all items checked before any is added) */
int cmd_list_extend(req_t *r) {
    uint32_t n;
    mpb__rd_t q = r->args;
    if (mpb__rd_array(&q, &n)) return reply_error(r, MPB_ETYPE, "extend takes an array");
    mpb__rd_t first = q;
    for (int pass = 0; pass < 2; pass++) {
        r->args = first;
        for (uint32_t i = 0; i < n; i++) {
            const uint8_t *v;
            size_t vn;
            if (arg_item(r, &v, &vn)) return -1;
            if (pass) deque_push_back(as_list(r), blob_new(v, vn));
        }
    }
    return reply_nil(r);
}

/* list.insert INDEX VALUE -> nil (index clamped as Python does) */
int cmd_list_insert(req_t *r) {
    int64_t i;
    const uint8_t *v;
    size_t n;
    if (arg_int(r, "index", &i) || arg_item(r, &v, &n)) return -1;
    int64_t len = (int64_t)as_list(r)->len;
    if (i < 0) i = i + len < 0 ? 0 : i + len;
    if (i > len) i = len;
    deque_insert(as_list(r), (size_t)i, blob_new(v, n));
    return reply_nil(r);
}

/* list.get INDEX -> value | EINDEX */
int cmd_list_get(req_t *r) {
    int64_t i;
    if (arg_int(r, "index", &i)) return -1;
    long k = norm_index(i, as_list(r)->len);
    if (k < 0)
        return reply_error(r, MPB_EINDEX, "list index %lld out of range (len %zu)", (long long)i,
                           as_list(r)->len);
    const blob_t *b = deque_at(as_list(r), (size_t)k);
    return reply_raw(r, b->data, b->len);
}

/* list.set INDEX VALUE -> nil | EINDEX */
int cmd_list_set(req_t *r) {
    int64_t i;
    const uint8_t *v;
    size_t n;
    if (arg_int(r, "index", &i) || arg_item(r, &v, &n)) return -1;
    long k = norm_index(i, as_list(r)->len);
    if (k < 0)
        return reply_error(r, MPB_EINDEX, "list assignment index %lld out of range (len %zu)",
                           (long long)i, as_list(r)->len);
    blob_t **slot = deque_ref(as_list(r), (size_t)k);
    free(*slot);
    *slot = blob_new(v, n);
    return reply_nil(r);
}

/* Python's slice bounds for step 1. */
static void slice_bounds(int64_t start, bool snil, int64_t stop, bool enil, size_t len, size_t *lo,
                         size_t *hi) {
    int64_t n = (int64_t)len;
    int64_t a = snil ? 0 : start, b = enil ? n : stop;
    if (a < 0) a = a + n < 0 ? 0 : a + n;
    if (b < 0) b = b + n < 0 ? 0 : b + n;
    if (a > n) a = n;
    if (b > n) b = n;
    *lo = (size_t)a;
    *hi = (size_t)(b < a ? a : b);
}

/* list.slice START|nil STOP|nil MAX -> [values] (at most MAX, capped by max_scan) */
int cmd_list_slice(req_t *r) {
    int64_t start = 0, stop = 0;
    bool snil, enil;
    uint64_t max;
    if (arg_int_or_nil(r, "start", &start, &snil) || arg_int_or_nil(r, "stop", &stop, &enil) ||
        arg_uint(r, "max", &max))
        return -1;
    size_t lo, hi;
    slice_bounds(start, snil, stop, enil, as_list(r)->len, &lo, &hi);
    reply_items(r, as_list(r), lo, hi, max);
    return 0;
}

/* list.pop INDEX -> value | EINDEX */
int cmd_list_pop(req_t *r) {
    int64_t i;
    if (arg_int(r, "index", &i)) return -1;
    if (!as_list(r)->len) return reply_error(r, MPB_EINDEX, "pop from empty list");
    long k = norm_index(i, as_list(r)->len);
    if (k < 0)
        return reply_error(r, MPB_EINDEX, "pop index %lld out of range (len %zu)", (long long)i,
                           as_list(r)->len);
    /* room for the item first: once taken out, it must reach the caller (mem.c) */
    if (mem_reply_room(r, deque_at(as_list(r), (size_t)k)->len) < 0) return -1;
    blob_t *b = deque_remove(as_list(r), (size_t)k);
    reply_raw(r, b->data, b->len);
    free(b);
    return 0;
}

/* list.remove VALUE -> nil | EVALUE (removes the first equal item) */
int cmd_list_remove(req_t *r) {
    const uint8_t *v;
    size_t n;
    if (arg_canon(r, &v, &n)) return -1;
    for (size_t i = 0; i < as_list(r)->len; i++) {
        if (item_equals(deque_at(as_list(r), i), v, n)) {
            free(deque_remove(as_list(r), i));
            return reply_nil(r);
        }
    }
    return reply_error(r, MPB_EVALUE, "list.remove(x): x not in list");
}

/* list.index VALUE START|nil STOP|nil -> int | EVALUE */
int cmd_list_index(req_t *r) {
    const uint8_t *v;
    size_t n, lo, hi;
    int64_t start = 0, stop = 0;
    bool snil, enil;
    if (arg_canon(r, &v, &n) || arg_int_or_nil(r, "start", &start, &snil) ||
        arg_int_or_nil(r, "stop", &stop, &enil))
        return -1;
    slice_bounds(start, snil, stop, enil, as_list(r)->len, &lo, &hi);
    for (size_t i = lo; i < hi; i++)
        if (item_equals(deque_at(as_list(r), i), v, n)) return reply_uint(r, i);
    return reply_error(r, MPB_EVALUE, "value is not in list");
}

/* list.count VALUE -> int */
int cmd_list_count(req_t *r) {
    const uint8_t *v;
    size_t n;
    if (arg_canon(r, &v, &n)) return -1;
    uint64_t c = 0;
    for (size_t i = 0; i < as_list(r)->len; i++)
        c += item_equals(deque_at(as_list(r), i), v, n);
    return reply_uint(r, c);
}

/* list.len -> int */
int cmd_list_len(req_t *r) {
    return reply_uint(r, as_list(r)->len);
}

/* list.reverse -> nil */
int cmd_list_reverse(req_t *r) {
    deque_t *d = as_list(r);
    for (size_t i = 0, j = d->len; i + 1 < j; i++, j--) {
        blob_t *t = *deque_ref(d, i);
        *deque_ref(d, i) = deque_at(d, j - 1);
        *deque_ref(d, j - 1) = t;
    }
    return reply_nil(r);
}

/* Stable merge sort of blob pointers; stops at the first incomparable pair. */
typedef struct {
    bool reverse;
    int err;
    char msg[160];
} sortctx_t;

static int cmp(sortctx_t *c, const blob_t *a, const blob_t *b) {
    int x = 0;
    if (c->err) return 0;
    c->err = mpb__mp_compare(a->data, a->len, b->data, b->len, &x, c->msg, sizeof c->msg);
    return c->reverse ? -x : x;
}

static void msort(sortctx_t *c, blob_t **v, blob_t **tmp, size_t n) {
    if (n < 2 || c->err) return;
    if (n <= 8) { /* insertion sort: stable, and cheap at the leaves */
        for (size_t i = 1; i < n && !c->err; i++) {
            blob_t *x = v[i];
            size_t j = i;
            while (j > 0 && cmp(c, v[j - 1], x) > 0) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
        return;
    }
    size_t h = n / 2;
    msort(c, v, tmp, h);
    msort(c, v + h, tmp, n - h);
    if (c->err || cmp(c, v[h - 1], v[h]) <= 0) return;
    memcpy(tmp, v, h * sizeof *v);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        v[k++] = cmp(c, v[j], tmp[i]) < 0 ? v[j++] : tmp[i++];
    while (i < h)
        v[k++] = tmp[i++];
}

/* list.sort REVERSE -> nil | ETYPE (the list unchanged) */
int cmd_list_sort(req_t *r) {
    bool reverse;
    if (arg_bool(r, "reverse", &reverse)) return -1;
    deque_t *d = as_list(r);
    size_t n = d->len;
    if (n < 2) return reply_nil(r);
    blob_t **v = xmalloc(n * sizeof *v), **tmp = xmalloc(n * sizeof *tmp);
    for (size_t i = 0; i < n; i++)
        v[i] = deque_at(d, i);
    sortctx_t c = {.reverse = reverse};
    msort(&c, v, tmp, n);
    if (!c.err)
        for (size_t i = 0; i < n; i++)
            *deque_ref(d, i) = v[i];
    free(v);
    free(tmp);
    if (c.err) return reply_error(r, c.err, "%s", c.msg);
    return reply_nil(r);
}

/* list.clear -> nil */
int cmd_list_clear(req_t *r) {
    deque_clear(as_list(r));
    return reply_nil(r);
}

static uint32_t list_describe(const obj_t *o, mpb__buf_t *b) {
    mpb__w_cstr(b, "bytes");
    mpb__w_uint(b, deque_bytes(&o->u.list));
    return 1;
}

static void list_free(obj_t *o) {
    deque_clear(&o->u.list);
}

static uint64_t list_size(const obj_t *o) {
    return o->u.list.len;
}

const kind_ops_t list_ops = {
    .name = "list",
    .free = list_free,
    .size = list_size,
    .describe = list_describe,
};
