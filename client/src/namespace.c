/* namespace.c - Namespace handles: named attributes of one object. */
#include <string.h>

#include "internal.h"

int mpb_namespace_open(mpb_client_t *c, const char *name, mpb_namespace_t **out) {
    return mpb__open_handle(c, name, MPB_OP_NS_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

void mpb_namespace_close(mpb_namespace_t **ns) {
    mpb__close_handle((void **)ns);
}

static int check_attr(mpb__any_t *h, const char *attr) {
    if (!attr || !*attr || strlen(attr) > 255)
        return mpb__fail(h->c, MPB_EINVAL, "attribute names are 1 to 255 bytes");
    return 0;
}

int mpb_namespace_get(mpb_namespace_t *ns, const char *attr, void **val, size_t *vlen) {
    if (!ns) return MPB_EINVAL;
    if (check_attr(mpb__any(ns), attr)) return MPB_EINVAL;
    MPB__REQ(ns, MPB_OP_NS_GET, 1);
    mpb__w_cstr(b, attr);
    return mpb__call_copy(ns->c, 0, val, vlen);
}

int mpb_namespace_set(mpb_namespace_t *ns, const char *attr, const void *val, size_t vlen) {
    if (!ns) return MPB_EINVAL;
    if (check_attr(mpb__any(ns), attr) || mpb__check_val(ns->c, "value", val, vlen))
        return MPB_EINVAL;
    MPB__REQ(ns, MPB_OP_NS_SET, 2);
    mpb__w_cstr(b, attr);
    mpb__w_raw(b, val, vlen);
    return mpb__call_nil(ns->c, 0);
}

int mpb_namespace_del(mpb_namespace_t *ns, const char *attr) {
    if (!ns) return MPB_EINVAL;
    if (check_attr(mpb__any(ns), attr)) return MPB_EINVAL;
    MPB__REQ(ns, MPB_OP_NS_DEL, 1);
    mpb__w_cstr(b, attr);
    return mpb__call_nil(ns->c, 0);
}

int mpb_namespace_list(mpb_namespace_t *ns, void **map, size_t *len) {
    if (!ns) return MPB_EINVAL;
    MPB__REQ(ns, MPB_OP_NS_LIST, 0);
    (void)b;
    return mpb__call_copy(ns->c, 0, map, len);
}
