/* objects.c - calls on the broker and on objects of any kind: the broker's info, listing
 * objects, describing and deleting one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define REQ(c, op, name, nlen, argc) mpb__buf_t *b = mpb__req(c, op, name, nlen, argc)

/* ---- broker and objects ---- */

int mpb_broker_info(mpb_client_t *c, void **map, size_t *len) {
    if (!c) return MPB_EINVAL;
    REQ(c, MPB_OP_INFO, NULL, 0, 0);
    (void)b;
    return mpb__call_copy(c, 0, map, len);
}

int mpb_objects(mpb_client_t *c, const char *pattern, uint64_t *cursor, mpb_obj_info_t *out,
                size_t max, size_t *n) {
    if (!c) return MPB_EINVAL;
    *n = 0;
    REQ(c, MPB_OP_OBJ_LIST, NULL, 0, 3);
    if (pattern)
        mpb__w_cstr(b, pattern);
    else
        mpb__w_nil(b);
    mpb__w_uint(b, *cursor);
    mpb__w_uint(b, max);
    mpb__rd_t r;
    int rc = mpb__call_rd(c, 0, &r);
    if (rc) return rc;
    uint32_t two, cnt;
    if (mpb__rd_array(&r, &two) || two != 2 || mpb__rd_uint(&r, cursor) || mpb__rd_array(&r, &cnt))
        return mpb__fail(c, MPB_EPROTO, "malformed obj.list reply");
    for (uint32_t i = 0; i < cnt && i < max; i++) {
        uint32_t three, kl, nl;
        const char *k, *nm;
        mpb_obj_info_t *o = &out[i];
        if (mpb__rd_array(&r, &three) || three != 3 || mpb__rd_str(&r, &k, &kl) ||
            mpb__rd_str(&r, &nm, &nl) || mpb__rd_uint(&r, &o->size))
            return mpb__fail(c, MPB_EPROTO, "malformed obj.list entry");
        snprintf(o->kind, sizeof o->kind, "%.*s", (int)kl, k);
        snprintf(o->name, sizeof o->name, "%.*s", (int)nl, nm);
        (*n)++;
    }
    return 0;
}

int mpb_obj_describe(mpb_client_t *c, const char *path, void **map, size_t *len) {
    if (!c) return MPB_EINVAL;
    if (!path) return mpb__fail(c, MPB_EINVAL, "no object path");
    REQ(c, MPB_OP_OBJ_INFO, path, strlen(path), 0);
    (void)b;
    return mpb__call_copy(c, 0, map, len);
}

int mpb_obj_delete(mpb_client_t *c, const char *path) {
    if (!c) return MPB_EINVAL;
    if (!path) return mpb__fail(c, MPB_EINVAL, "no object path");
    REQ(c, MPB_OP_OBJ_DELETE, path, strlen(path), 0);
    (void)b;
    return mpb__call_nil(c, 0);
}
