/* event.c - Event handles. */

#include "internal.h"

int mpb_event_open(mpb_client_t *c, const char *name, mpb_event_t **out) {
    return mpb__open_handle(c, name, MPB_OP_EVENT_OPEN, sizeof **out, 0, NULL, NULL, NULL, NULL,
                            (void **)out);
}

void mpb_event_close(mpb_event_t **e) {
    mpb__close_handle((void **)e);
}

int mpb_event_set(mpb_event_t *e) {
    if (!e) return MPB_EINVAL;
    MPB__REQ(e, MPB_OP_EVENT_SET, 0);
    (void)b;
    return mpb__call_nil(e->c, 0);
}

int mpb_event_clear(mpb_event_t *e) {
    if (!e) return MPB_EINVAL;
    MPB__REQ(e, MPB_OP_EVENT_CLEAR, 0);
    (void)b;
    return mpb__call_nil(e->c, 0);
}

int mpb_event_is_set(mpb_event_t *e) {
    if (!e) return MPB_EINVAL;
    MPB__REQ(e, MPB_OP_EVENT_IS_SET, 0);
    (void)b;
    return mpb__call_bool(e->c, 0);
}

int mpb_event_wait(mpb_event_t *e, int timeout_ms) {
    if (!e) return MPB_EINVAL;
    MPB__REQ(e, MPB_OP_EVENT_WAIT, 1);
    mpb__w_int(b, mpb__ms_arg(timeout_ms));
    return mpb__call_bool(e->c, timeout_ms);
}
