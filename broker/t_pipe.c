/* t_pipe.c - Pipe (multiprocessing.Pipe): a channel between end 0 and end 1. Each end is
 * claimed by the one session that opens it first and stays its own until that session closes
 * it or ends; what one end sends waits in the other end's box until it is received, in order.
 * A closed end is closed for good: once its box is empty, the other end's recv says EPIPE
 * (end of file), and a recv parked there is answered so at once.
 *
 *   end 0 (sess 12) --send--> box[1] [i1 i2] --recv--> end 1 (sess 9)
 *   end 0 (sess 12) <--recv-- box[0] [j1]    <--send-- end 1 (sess 9)
 *   sess 9 ends: end 1 closes; box[1] goes; end 0's recv drains box[0], then gets EPIPE.
 *
 * A one-way pipe (duplex false) has end 0 only receive and end 1 only send, as Python's
 * Pipe(duplex=False) returns (reader, writer). Pipes are neither logged nor saved. */
#include <stdio.h>
#include <stdlib.h>

#include "kind.h"

static pipeobj_t *as_pipe(req_t *r) {
    return &r->obj->u.pipe;
}

/* Reads the END argument; on failure replies EINVAL. */
static int arg_end(req_t *r, int *end) {
    uint64_t e;
    if (arg_uint(r, "end", &e)) return -1;
    if (e > 1)
        return reply_error(r, MPB_EINVAL, "pipe/%.*s has ends 0 and 1, not %llu", (int)r->namelen,
                           r->name, (unsigned long long)e);
    *end = (int)e;
    return 0;
}

/* Whether r's session holds end e; replies the error if not. */
static int own_end(req_t *r, int e) {
    pipeobj_t *p = as_pipe(r);
    if (p->owner[e] == r->sess) return 0;
    if (p->closed[e])
        return reply_error(r, MPB_ECLOSED, "end %d of pipe/%.*s is closed", e, (int)r->namelen,
                           r->name);
    if (p->owner[e])
        return reply_error(r, MPB_ENOTOWNER, "end %d of pipe/%.*s belongs to session %llu", e,
                           (int)r->namelen, r->name, (unsigned long long)p->owner[e]->id);
    return reply_error(r, MPB_ENOTOWNER, "end %d of pipe/%.*s is not open: pipe.open it first", e,
                       (int)r->namelen, r->name);
}

/* Whether end e of a one-way pipe may do what (sending: end 1; receiving: end 0). */
static int direction_ok(req_t *r, int e, bool sending) {
    if (as_pipe(r)->duplex || (e == 1) == sending) return 0;
    return reply_error(r, MPB_EINVAL, "end %d of the one-way pipe/%.*s only %s", e, (int)r->namelen,
                       r->name, sending ? "receives" : "sends");
}

/* End e's parked polls learn that a recv would not block now. */
static void wake_polls(pipeobj_t *p, int e) {
    while (wlist_first(&p->poll[e])) {
        waiter_t *w = wlist_first(&p->poll[e]);
        waiter_reply_bool(w, true);
        waiter_free(w);
    }
}

/* End e closes for good: what was sent to it goes, calls parked on it end, and the other end's
 * parked recvs (whose box is empty, or they would not wait) get end of file. */
static void end_close(obj_t *o, int e) {
    pipeobj_t *p = &o->u.pipe;
    p->owner[e] = NULL;
    p->closed[e] = true;
    deque_clear(&p->box[e]);
    wlist_fail(&p->recv[e], MPB_ECLOSED, "this end of the pipe was closed");
    wlist_fail(&p->poll[e], MPB_ECLOSED, "this end of the pipe was closed");
    wlist_fail(&p->recv[1 - e], MPB_EPIPE, "the other end of the pipe is closed");
    wake_polls(p, 1 - e);
}

/* pipe.open END DUPLEX|nil -> [end, duplex]. Claims end END for this session (again: no
 * change). DUPLEX is fixed by the first open (nil: true); a later open that gives the other
 * value is refused. */
int cmd_pipe_open(req_t *r) {
    pipeobj_t *p = as_pipe(r);
    int e = 0; /* set by arg_end(), which the optimiser cannot see through */
    bool duplex = true, nodup;
    if (arg_end(r, &e)) return -1;
    nodup = mpb__rd_nil(&r->args) == 0;
    if (!nodup && arg_bool(r, "duplex", &duplex)) return -1;
    if (!nodup && p->duplex_set && duplex != p->duplex)
        return reply_error(r, MPB_EINVAL, "pipe/%.*s exists and is %s", (int)r->namelen, r->name,
                           p->duplex ? "duplex" : "one-way");
    if (p->owner[e] != r->sess) {
        if (p->closed[e] || p->owner[e]) return own_end(r, e);
        p->owner[e] = r->sess;
        sess_hold(r->sess, r->obj, (uint64_t)e, 1);
    }
    if (!p->duplex_set) {
        p->duplex = duplex;
        p->duplex_set = true;
    }
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, 2);
    mpb__w_uint(b, (uint64_t)e);
    mpb__w_bool(b, p->duplex);
    return 0;
}

/* pipe.send END ITEM -> nil | EPIPE (the other end is closed). Never waits: the item goes to
 * the other end's oldest parked recv, or into its box. */
int cmd_pipe_send(req_t *r) {
    pipeobj_t *p = as_pipe(r);
    int e = 0; /* set by arg_end(), which the optimiser cannot see through */
    const uint8_t *v;
    size_t n;
    if (arg_end(r, &e) || arg_value(r, "item", g_limits.max_value, &v, &n)) return -1;
    if (own_end(r, e) || direction_ok(r, e, true)) return -1;
    int to = 1 - e;
    if (p->closed[to])
        return reply_error(r, MPB_EPIPE, "the other end of pipe/%.*s is closed", (int)r->namelen,
                           r->name);
    if (wlist_first(&p->recv[to])) {
        waiter_t *w = wlist_first(&p->recv[to]);
        waiter_reply_raw(w, v, n);
        waiter_free(w);
    } else {
        deque_push_back(&p->box[to], blob_new(v, n));
        wake_polls(p, to);
    }
    return reply_nil(r);
}

/* pipe.recv END TIMEOUT_MS -> item | EEMPTY (no wait, nothing to read) | ETIMEDOUT | EPIPE
 * (nothing to read and the other end is closed). */
int cmd_pipe_recv(req_t *r) {
    pipeobj_t *p = as_pipe(r);
    int e = 0; /* set by arg_end(), which the optimiser cannot see through */
    int64_t timeout;
    if (arg_end(r, &e) || arg_timeout(r, &timeout)) return -1;
    if (own_end(r, e) || direction_ok(r, e, false)) return -1;
    if (p->box[e].len && !wlist_first(&p->recv[e])) {
        blob_t *item = deque_pop_front(&p->box[e]);
        reply_raw(r, item->data, item->len);
        free(item);
        return 0;
    }
    if (p->closed[1 - e])
        return reply_error(r, MPB_EPIPE, "the other end of pipe/%.*s is closed", (int)r->namelen,
                           r->name);
    if (timeout == 0)
        return reply_error(r, MPB_EEMPTY, "nothing to read at end %d of pipe/%.*s", e,
                           (int)r->namelen, r->name);
    waiter_park(r, &p->recv[e], timeout);
    return 0;
}

/* pipe.poll END TIMEOUT_MS -> bool: whether a recv would not block (an item waits, or the
 * other end is closed), waiting up to the timeout for it. */
int cmd_pipe_poll(req_t *r) {
    pipeobj_t *p = as_pipe(r);
    int e = 0; /* set by arg_end(), which the optimiser cannot see through */
    int64_t timeout;
    if (arg_end(r, &e) || arg_timeout(r, &timeout)) return -1;
    if (own_end(r, e) || direction_ok(r, e, false)) return -1;
    if (p->box[e].len || p->closed[1 - e]) return reply_bool(r, true);
    if (timeout == 0) return reply_bool(r, false);
    waiter_park(r, &p->poll[e], timeout);
    return 0;
}

/* pipe.close END -> nil. Closes this session's end for good; closing a closed end again is
 * no error. */
int cmd_pipe_close(req_t *r) {
    pipeobj_t *p = as_pipe(r);
    int e = 0; /* set by arg_end(), which the optimiser cannot see through */
    if (arg_end(r, &e)) return -1;
    if (p->closed[e] && !p->owner[e]) return reply_nil(r);
    if (own_end(r, e)) return -1;
    sess_unhold(r->sess, r->obj, (uint64_t)e, 1);
    end_close(r->obj, e);
    return reply_nil(r);
}

static void pipe_release_hold(sess_t *s, hold_t *h) {
    obj_t *o = h->obj;
    int e = h->tid == 1;
    if (o->u.pipe.owner[e] != s) return;
    log_kv(MPB_LOG_INFO, "pipe end closed: its session ended", "pipe", o->name, "end", LOG_INT(e),
           "session", LOG_UINT(s->id), NULL);
    end_close(o, e);
}

static void pipe_init(obj_t *o) {
    for (int e = 0; e < 2; e++) {
        wlist_init(&o->u.pipe.recv[e]);
        wlist_init(&o->u.pipe.poll[e]);
    }
}

static void pipe_on_timeout(waiter_t *w) {
    pipeobj_t *p = &w->obj->u.pipe;
    if (w->list == &p->poll[0] || w->list == &p->poll[1])
        waiter_reply_bool(w, false);
    else
        waiter_reply_error(w, MPB_ETIMEDOUT, "pipe/%s: nothing to read before the timeout",
                           w->obj->name);
    waiter_free(w);
}

static bool pipe_busy(const obj_t *o, char *why, size_t n) {
    const pipeobj_t *p = &o->u.pipe;
    for (int e = 0; e < 2; e++) {
        if (p->owner[e]) {
            snprintf(why, n, "end %d is open in session %llu", e,
                     (unsigned long long)p->owner[e]->id);
            return true;
        }
    }
    return false;
}

static void pipe_fail_all(obj_t *o, int code, const char *msg) {
    pipeobj_t *p = &o->u.pipe;
    for (int e = 0; e < 2; e++) {
        wlist_fail(&p->recv[e], code, msg);
        wlist_fail(&p->poll[e], code, msg);
    }
}

static void pipe_free(obj_t *o) {
    deque_clear(&o->u.pipe.box[0]);
    deque_clear(&o->u.pipe.box[1]);
}

static uint32_t pipe_describe(const obj_t *o, mpb__buf_t *b) {
    const pipeobj_t *p = &o->u.pipe;
    mpb__w_cstr(b, "duplex");
    mpb__w_bool(b, p->duplex || !p->duplex_set);
    for (int e = 0; e < 2; e++) {
        mpb__w_cstr(b, e ? "end1" : "end0");
        mpb__w_map(b, 3);
        mpb__w_cstr(b, "state");
        mpb__w_cstr(b, p->closed[e] ? "closed" : p->owner[e] ? "open" : "unclaimed");
        mpb__w_cstr(b, "session");
        mpb__w_uint(b, p->owner[e] ? p->owner[e]->id : 0);
        mpb__w_cstr(b, "unread");
        mpb__w_uint(b, p->box[e].len);
    }
    const wlist_t *lists[] = {&p->recv[0], &p->recv[1], &p->poll[0], &p->poll[1]};
    waiter_describe(b, lists, 4);
    return 4;
}

static uint64_t pipe_size(const obj_t *o) {
    return o->u.pipe.box[0].len + o->u.pipe.box[1].len;
}

const kind_ops_t pipe_ops = {
    .name = "pipe",
    .init = pipe_init,
    .free = pipe_free,
    .size = pipe_size,
    .describe = pipe_describe,
    .busy = pipe_busy,
    .fail_all = pipe_fail_all,
    .on_timeout = pipe_on_timeout,
    .release_hold = pipe_release_hold,
};
