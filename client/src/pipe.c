/* pipe.c - Pipe handles: an end of a channel the broker keeps (t_pipe.c). The handle knows
 * its end; every call names it, and the broker checks that this session owns it. Blocking
 * calls send their timeout to the broker, which parks them. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct mpb_pipe {
    MPB__HANDLE;
    int end;
};

typedef struct {
    int end, duplex;
} pargs_t;

static void fill_pipe(mpb__buf_t *b, const void *arg) {
    const pargs_t *a = arg;
    mpb__w_uint(b, (uint64_t)a->end);
    if (a->duplex < 0)
        mpb__w_nil(b);
    else
        mpb__w_bool(b, a->duplex != 0);
}

int mpb_pipe_open(mpb_client_t *c, const char *name, int end, int duplex, mpb_pipe_t **out) {
    if (out) *out = NULL;
    if (!c) return MPB_EINVAL;
    if (!out) return mpb__fail(c, MPB_EINVAL, "mpb_pipe_open: out is NULL");
    if (!name || name[0] == '~')
        return mpb__fail(c, MPB_EINVAL, "a pipe needs a name of its own (none starting with '~')");
    if (end != 0 && end != 1)
        return mpb__fail(c, MPB_EINVAL, "a pipe has ends 0 and 1, not %d", end);
    pargs_t a = {end, duplex};
    int rc = mpb__open_handle(c, name, MPB_OP_PIPE_OPEN, sizeof **out, 2, fill_pipe, &a, NULL, NULL,
                              (void **)out);
    if (!rc) (*out)->end = end;
    return rc;
}

/* A request on p's end: the name, the end, then argc - 1 more arguments. */
static mpb__buf_t *pipe_req(mpb_pipe_t *p, unsigned op, uint32_t argc) {
    mpb__buf_t *b = mpb__req(p->c, op, p->name, p->namelen, argc);
    mpb__w_uint(b, (uint64_t)p->end);
    return b;
}

int mpb_pipe_send(mpb_pipe_t *p, const void *val, size_t vlen) {
    if (!p) return MPB_EINVAL;
    if (!val || mpb__mp_check1(val, vlen, MPB__MAX_DEPTH) != (long)vlen)
        return mpb__fail(p->c, MPB_EINVAL, "value is not one well-formed msgpack value");
    mpb__w_raw(pipe_req(p, MPB_OP_PIPE_SEND, 2), val, vlen);
    const uint8_t *v;
    size_t n;
    return mpb__call(p->c, 0, &v, &n);
}

int mpb_pipe_recv(mpb_pipe_t *p, void **val, size_t *vlen, int timeout_ms) {
    if (!p) return MPB_EINVAL;
    if (!val || !vlen) return mpb__fail(p->c, MPB_EINVAL, "mpb_pipe_recv: val and vlen are needed");
    mpb__w_int(pipe_req(p, MPB_OP_PIPE_RECV, 2), timeout_ms < 0 ? -1 : timeout_ms);
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(p->c, timeout_ms, &v, &n);
    if (rc) return rc;
    return mpb__dup(p->c, v, n, val, vlen);
}

int mpb_pipe_poll(mpb_pipe_t *p, int timeout_ms) {
    if (!p) return MPB_EINVAL;
    mpb__w_int(pipe_req(p, MPB_OP_PIPE_POLL, 2), timeout_ms < 0 ? -1 : timeout_ms);
    const uint8_t *v;
    size_t n;
    int rc = mpb__call(p->c, timeout_ms, &v, &n);
    if (rc) return rc;
    mpb__rd_t r = {v, v + n};
    bool x;
    if (mpb__rd_bool(&r, &x)) return mpb__fail(p->c, MPB_EPROTO, "expected a boolean reply");
    return x;
}

int mpb_pipe_close(mpb_pipe_t **pp) {
    if (!pp || !*pp) return MPB_EINVAL;
    mpb_pipe_t *p = *pp;
    int rc = 0;
    /* A child's copy of its parent's handle: the end is the parent's session's to close. */
    if (p->c && p->c->gen == mpb__gen()) {
        pipe_req(p, MPB_OP_PIPE_CLOSE, 1);
        const uint8_t *v;
        size_t n;
        rc = mpb__call(p->c, 0, &v, &n);
    }
    mpb__close_handle((void **)pp);
    return rc;
}

int mpb_pipe_end(const mpb_pipe_t *p) {
    return p ? p->end : MPB_EINVAL;
}

const char *mpb_pipe_name(const mpb_pipe_t *p) {
    return p ? p->name : NULL;
}
