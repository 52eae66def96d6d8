/* call.c - the call path: sealed request frames, waiting for a reply by request id, frames
 * kept for resending after a cut, and the asynchronous (pipelined) requests. */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "internal.h"
/* ---- the call path ----
 *
 * Requests are appended to c->out (one frame, coalesced) and remembered by rid in a small
 * table; c->out is sealed and sent by a flush (every synchronous call flushes). Replies are
 * matched by rid: a synchronous call waits for its own, and the callbacks of asynchronous
 * ones run as their replies are read, in whichever call is reading. */

/* Remembered requests, by rid. Their records are reused (c->pend_spare), so that a stream of
 * pipelined requests does not allocate one each. */
static pend_t *pend_find(mpb_client_t *c, uint64_t rid) {
    pend_t *p;
    HASH_FIND(hh, c->pend, &rid, sizeof rid, p);
    return p;
}

static int pend_add(mpb_client_t *c, uint64_t rid, mpb_callback_t cb, void *arg, bool user) {
    pend_t *p = SLIST_FIRST(&c->pend_spare);
    if (p)
        SLIST_REMOVE_HEAD(&c->pend_spare, spare);
    else if (!(p = malloc(sizeof *p)))
        return mpb__fail(c, MPB_ENOMEM, "out of memory");
    p->rid = rid;
    p->cb = cb;
    p->arg = arg;
    p->user = user;
    HASH_ADD(hh, c->pend, rid, sizeof p->rid, p);
    if (pend_find(c, rid) != p) { /* the table could not grow */
        free(p);
        return mpb__fail(c, MPB_ENOMEM, "out of memory");
    }
    c->pcount++;
    return 0;
}

/* Takes p out of the table: *p stays readable until the next pend_add. */
static void pend_del(mpb_client_t *c, pend_t *p) {
    HASH_DEL(c->pend, p);
    c->pcount--;
    SLIST_INSERT_HEAD(&c->pend_spare, p, spare);
}

void mpb__pend_free(mpb_client_t *c) {
    pend_t *p, *tmp;
    HASH_ITER(hh, c->pend, p, tmp) {
        HASH_DEL(c->pend, p);
        free(p);
    }
    while ((p = SLIST_FIRST(&c->pend_spare))) {
        SLIST_REMOVE_HEAD(&c->pend_spare, spare);
        free(p);
    }
    c->pcount = 0;
}

mpb__buf_t *mpb__req(mpb_client_t *c, unsigned op, const char *name, size_t namelen,
                     uint32_t argc) {
    pthread_mutex_lock(&c->mu);
    mpb__buf_t *b = &c->out;
    if (c->out_n == 0) {
        mpb__buf_reset(b);
        if (mpb__buf_reserve(b, MPB__HDR_LEN) == 0) b->len = MPB__HDR_LEN;
        c->out_rid_lo = c->next_rid + 1;
    }
    c->out_mark = b->len; /* where this request starts, to take it back on failure */
    c->out_n++;
    mpb__w_array(b, 3 + argc);
    mpb__w_uint(b, ++c->next_rid);
    mpb__w_uint(b, op);
    if (name)
        mpb__w_str(b, name, namelen);
    else
        mpb__w_nil(b);
    return b;
}

/* A session lost while the client was idle is told to the next call, which does not run. */
static int told_lost(mpb_client_t *c) {
    if (!c->lost_pending) return 0;
    c->lost_pending = false;
    return mpb__fail(c, MPB_ESESSION, "%s", c->lost_msg);
}

/* Takes the last request out of c->out again (it could not be sent). */
static void unreq(mpb_client_t *c) {
    c->out.len = c->out_mark;
    c->out.oom = false;
    if (--c->out_n == 0) c->out.len = 0;
}

/* ---- frames kept for resending ---- */

/* The kept frame holding rid, or NULL (binary search: frames are kept in rid order). */
static sentframe_t *sent_find(mpb_client_t *c, uint64_t rid) {
    size_t lo = 0, hi = c->nsent;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->sent[mid].rid_hi < rid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < c->nsent && c->sent[lo].rid_lo <= rid) return &c->sent[lo];
    return NULL;
}

/* Request rid is answered or given up: a frame with nothing left to answer is dropped. */
static void sent_done(mpb_client_t *c, uint64_t rid) {
    sentframe_t *f = sent_find(c, rid);
    if (!f || --f->left) return;
    free(f->body);
    size_t i = (size_t)(f - c->sent);
    memmove(f, f + 1, (c->nsent - i - 1) * sizeof *f);
    c->nsent--;
}

void mpb__sent_clear(mpb_client_t *c) {
    for (size_t i = 0; i < c->nsent; i++)
        free(c->sent[i].body);
    c->nsent = 0;
}

/* Keeps the requests of c->out (header space first, no MAC yet) as frame seq. */
static int sent_keep(mpb_client_t *c, uint64_t seq) {
    if (c->nsent == c->capsent) {
        size_t ncap = c->capsent ? c->capsent * 2 : 16;
        sentframe_t *n = realloc(c->sent, ncap * sizeof *n);
        if (!n) return mpb__fail(c, MPB_ENOMEM, "out of memory keeping a request");
        c->sent = n;
        c->capsent = ncap;
    }
    size_t len = c->out.len - MPB__HDR_LEN;
    uint8_t *body = malloc(len ? len : 1);
    if (!body) return mpb__fail(c, MPB_ENOMEM, "out of memory keeping a request");
    memcpy(body, c->out.p + MPB__HDR_LEN, len);
    c->sent[c->nsent++] = (sentframe_t){seq, c->out_rid_lo, c->next_rid, c->out_n, body, len};
    return 0;
}

static int flush_locked(mpb_client_t *c) {
    if (!c->out_n) return 0;
    int rc = c->out.oom ? mpb__fail(c, MPB_ENOMEM, "out of memory building a request") : 0;
    uint64_t seq = c->seq_out + 1;
    if (!rc && c->opts.reconnect_ms >= 0) rc = sent_keep(c, seq);
    if (!rc) {
        c->seq_out = seq;
        rc = mpb__seal_send_seq(c, &c->out, seq);
        if (rc == MPB_ETOOBIG || rc == MPB_ENOMEM) { /* it never left: nothing to resend */
            if (c->nsent && c->sent[c->nsent - 1].seq == seq) free(c->sent[--c->nsent].body);
        }
    }
    c->out_n = 0;
    mpb__buf_reset(&c->out);
    return rc;
}

/* Sends every kept frame again on the new channel, with its own sequence number. */
int mpb__resend(mpb_client_t *c) {
    mpb__buf_t b = {0};
    int rc = 0;
    for (size_t i = 0; i < c->nsent && !rc; i++) {
        mpb__buf_reset(&b);
        if (mpb__buf_reserve(&b, MPB__HDR_LEN) == 0) b.len = MPB__HDR_LEN;
        mpb__w_raw(&b, c->sent[i].body, c->sent[i].len);
        rc = b.oom ? mpb__fail(c, MPB_ENOMEM, "out of memory resending")
                   : mpb__seal_send_seq(c, &b, c->sent[i].seq);
    }
    mpb__buf_free(&b);
    return rc;
}

/* Receive buffers: a reply's value is read where it arrived, so a buffer stays ours while a
 * callback or the synchronous caller may still look at it; two spares avoid allocating. */
mpb__buf_t *mpb__buf_take(mpb_client_t *c) {
    for (int i = 0; i < 2; i++)
        if (c->spare[i]) {
            mpb__buf_t *b = c->spare[i];
            c->spare[i] = NULL;
            mpb__buf_reset(b);
            return b;
        }
    return calloc(1, sizeof(mpb__buf_t));
}

void mpb__buf_give(mpb_client_t *c, mpb__buf_t *b) {
    if (!b) return;
    for (int i = 0; i < 2; i++)
        if (!c->spare[i]) {
            c->spare[i] = b;
            return;
        }
    mpb__buf_free(b);
    free(b);
}

/* Receives one message into b within timeout_ms (-1: forever). 0, MPB_ETIMEDOUT.
 * One blocking zmq_msg_recv() under ZMQ_RCVTIMEO, not a try, a zmq_poll() and a second try:
 * each libzmq call polls its mailbox (a poll() and a getpid() each time), and zmq_poll() builds
 * a poller of its own, so the waits of a synchronous call cost a third of the system calls. */
int mpb__recv_into(mpb_client_t *c, mpb__buf_t *b, long timeout_ms) {
    if (c->ufd >= 0) return mpb__unix_recv(c, b, timeout_ms);
    int t = timeout_ms < 0 ? -1 : timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;
    if (t != c->rcvtimeo) {
        if (zmq_setsockopt(c->sock, ZMQ_RCVTIMEO, &t, sizeof t) != 0)
            return mpb__fail(c, MPB_ECONN, "recv timeout: %s", zmq_strerror(zmq_errno()));
        c->rcvtimeo = t;
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, c->sock, t == 0 ? ZMQ_DONTWAIT : 0) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&m);
        if (e == EAGAIN || e == EINTR) return MPB_ETIMEDOUT;
        return mpb__fail(c, MPB_ECONN, "recv: %s", zmq_strerror(e));
    }
    mpb__buf_reset(b);
    mpb__w_raw(b, zmq_msg_data(&m), zmq_msg_size(&m));
    bool more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    while (more) { /* not ours to have: drop the rest */
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, 0) < 0)
            more = false;
        else
            more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    if (b->oom) return mpb__fail(c, MPB_ENOMEM, "out of memory receiving a reply");
    return 0;
}

/* Fails every remembered request (the connection is gone): their callbacks hear why. */
void mpb__fail_all(mpb_client_t *c, int code) {
    char msg[sizeof c->err];
    snprintf(msg, sizeof msg, "%s", c->err);
    /* The ones in flight now: a callback may make new requests, which are not failed here. */
    pend_t *now = c->pend, *q, *tmp;
    c->pend = NULL;
    HASH_ITER(hh, now, q, tmp) {
        HASH_DEL(now, q);
        c->pcount--;
        pend_t p = *q;
        SLIST_INSERT_HEAD(&c->pend_spare, q, spare);
        sent_done(c, p.rid);
        if (p.cb) {
            snprintf(c->err, sizeof c->err, "%s", msg);
            mpb__reply_cb(c, p.user, p.cb, p.arg, code, NULL, 0);
        }
    }
}

static int pump(mpb_client_t *c, syncwait_t *want, int64_t deadline) {
    for (;;) {
        long wait = 0;
        if (deadline > 0) { /* 0 and below: do not wait, and read no clock */
            int64_t now = mpb__now_ms();
            int64_t hb_at = c->last_send_ms + c->heartbeat_ms / 2;
            int64_t until = deadline < hb_at ? deadline : hb_at;
            wait = until > now ? (long)(until - now) : 0;
        }
        mpb__buf_t *b = mpb__buf_take(c);
        if (!b) return mpb__fail(c, MPB_ENOMEM, "out of memory");
        int rc = mpb__recv_into(c, b, wait);
        if (rc == MPB_ETIMEDOUT) {
            mpb__buf_give(c, b);
            if (mpb__coarse_ms() - c->last_send_ms >= c->heartbeat_ms / 2) mpb__send_ping(c);
            if (deadline <= 0 || mpb__now_ms() >= deadline) return MPB_ETIMEDOUT;
            continue;
        }
        if (rc) {
            mpb__buf_give(c, b);
            c->connected = false;
            mpb__fail_all(c, rc);
            return rc;
        }
        mpb__frame_t f;
        char err[128];
        if (mpb__frame_parse(b->p, b->len, SIZE_MAX, &f, err, sizeof err)) {
            mpb__buf_give(c, b);
            continue; /* not a frame of ours */
        }
        if (f.type == MPB__T_ERROR) {
            rc = mpb__plain_error(c, &f);
            mpb__buf_give(c, b);
            if (rc == MPB_ESESSION && c->opts.reconnect_ms >= 0) {
                /* The broker does not know this channel any more (a cut, a restart): connect
                 * again; what was in flight is sent again or failed there. */
                int64_t t0 = mpb__now_ms();
                rc = mpb__reconnect(c);
                if (deadline > 0 && deadline != INT64_MAX) deadline += mpb__now_ms() - t0;
                if (!rc) {
                    if (want && want->done) return 0;
                    continue;
                }
                if (rc == MPB_ESESSION) return want && want->done ? 0 : rc;
            }
            /* A broker without our session, or a frame it could not verify: nothing in
             * flight will be answered now. */
            c->connected =
                rc != MPB_ESESSION && rc != MPB_EAUTH && rc != MPB_EREPLAY && rc != MPB_ECONN;
            mpb__fail_all(c, rc);
            return rc;
        }
        if (f.type != MPB__T_REP || !mpb__mac_verify(c->rx, b->p, b->len - MPB__MAC_LEN, f.mac) ||
            mpb__mp_check(f.body, f.bodylen, MPB__FRAME_DEPTH) ||
            mpb__seq_accept(&c->seq_in, f.seq)) {
            mpb__buf_give(c, b);
            continue; /* forged, replayed or garbled: not from our broker */
        }
        int batch_err = 0;
        mpb__rd_t rd = {f.body, f.body + f.bodylen};
        while (mpb__rd_more(&rd)) {
            uint32_t n;
            uint64_t rid, code;
            const uint8_t *v;
            size_t vn;
            if (mpb__rd_array(&rd, &n) || n != 3 || mpb__rd_uint(&rd, &rid) ||
                mpb__rd_uint(&rd, &code) || mpb__rd_span(&rd, &v, &vn))
                break;
            int status = code == 0 ? 0 : code > 1000 ? MPB_EPROTO : -(int)code;
            if (status) {
                mpb__rd_t m = {v, v + vn};
                const char *s = "";
                uint32_t sl = 0;
                mpb__rd_str(&m, &s, &sl);
                snprintf(c->err, sizeof c->err, "%.*s", (int)sl, s);
            }
            if (rid == 0) { /* the whole batch was refused: a bug on this side */
                batch_err = status ? status : MPB_EPROTO;
                continue;
            }
            syncwait_t *w = c->waits;
            while (w && w->rid != rid)
                w = w->outer;
            if (w) {
                w->done = true;
                w->code = status;
                mpb__buf_reset(&w->val);
                if (!status) mpb__w_raw(&w->val, v, vn);
                if (w->val.oom) w->code = MPB_ENOMEM;
                continue;
            }
            pend_t *p = pend_find(c, rid);
            if (!p) continue; /* a reply to a call that gave up */
            pend_t copy = *p;
            pend_del(c, p);
            sent_done(c, rid);
            if (copy.cb)
                mpb__reply_cb(c, copy.user, copy.cb, copy.arg, status, status ? NULL : v,
                              status ? 0 : vn);
        }
        mpb__buf_give(c, b);
        if (batch_err && want && !want->done) {
            want->done = true;
            want->code = batch_err;
        }
        if (!want || want->done) return 0;
    }
}

/* ---- send mode, for the pipelined form of every op (async_ops.c) ---- */

static _Thread_local struct {
    mpb_callback_t cb;
    void *arg;
    bool armed, sent;
} send_mode;

void mpb__async_arm(mpb_callback_t cb, void *arg) {
    send_mode.cb = cb;
    send_mode.arg = arg;
    send_mode.armed = true;
    send_mode.sent = false;
}

int mpb__async_done(int rc) {
    bool sent = send_mode.sent;
    send_mode.armed = send_mode.sent = false;
    return sent ? 0 : rc;
}

static int send_req(mpb_client_t *c, mpb_callback_t cb, void *arg, bool user);

int mpb__call(mpb_client_t *c, int block_ms, const uint8_t **val, size_t *vlen) {
    *val = NULL;
    *vlen = 0;
    if (send_mode.armed) { /* the caller's request, with its callback: queued, not waited for */
        send_mode.armed = false;
        int rc = send_req(c, send_mode.cb, send_mode.arg, true);
        if (rc) return rc;
        send_mode.sent = true;
        return MPB__SENT;
    }
    uint64_t rid = c->next_rid;
    int rc = mpb__usable(c);
    if (!rc) rc = told_lost(c);
    if (!rc && c->out.oom) rc = mpb__fail(c, MPB_ENOMEM, "out of memory building a request");
    if (rc) {
        unreq(c);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    c->err[0] = 0;
    syncwait_t w = {.rid = rid, .outer = c->waits};
    c->waits = &w;
    rc = flush_locked(c);
    if (!rc) {
        int64_t start = mpb__now_ms();
        int64_t deadline = block_ms < 0 ? INT64_MAX : start + block_ms + c->opts.op_timeout_ms;
        rc = pump(c, &w, deadline);
        if (rc == MPB_ETIMEDOUT)
            rc = mpb__fail(c, MPB_ETIMEDOUT, "no reply from %s within %lld ms", c->endpoint,
                           (long long)(mpb__now_ms() - start));
        else if (!rc)
            rc = w.code;
    }
    c->waits = w.outer;
    sent_done(c, rid); /* answered, or given up: not to be sent again */
    mpb__cb_kick(c);
    /* The value stays readable until the next call on c. */
    /* The callback thread's calls keep theirs apart: the caller reads its value after mu is
     * let go, while that thread may be calling too. */
    mpb__buf_t **last =
        c->cbt_on && pthread_equal(pthread_self(), c->cbt) ? &c->last_cbt : &c->last;
    if (!*last) *last = calloc(1, sizeof **last);
    if (*last) {
        mpb__buf_free(*last);
        **last = w.val;
        *val = (*last)->p;
        *vlen = (*last)->len;
    } else {
        mpb__buf_free(&w.val);
        if (!rc) rc = mpb__fail(c, MPB_ENOMEM, "out of memory");
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Writes op's request with the elements of args (a msgpack array) as its arguments. */
static int put_args(mpb_client_t *c, const void *args, size_t argslen, uint32_t *argc,
                    const void **body, size_t *bodylen) {
    *argc = 0;
    *body = NULL;
    *bodylen = 0;
    if (!args) return 0;
    mpb__rd_t r = {args, (const uint8_t *)args + argslen};
    if (mpb__mp_check1(args, argslen, MPB__MAX_DEPTH) != (long)argslen || mpb__rd_array(&r, argc))
        return mpb__fail(c, MPB_EINVAL, "args must be one msgpack array");
    *body = r.p;
    *bodylen = (size_t)(r.end - r.p);
    return 0;
}

/* Starts the request of op on name with the caller's msgpack array args as its arguments. */
static int raw_req(mpb_client_t *c, unsigned op, const char *name, const void *args,
                   size_t argslen) {
    uint32_t argc;
    const void *body;
    size_t bodylen;
    if (put_args(c, args, argslen, &argc, &body, &bodylen)) return MPB_EINVAL;
    mpb__buf_t *b = mpb__req(c, op, name, name ? strlen(name) : 0, argc);
    mpb__w_raw(b, body, bodylen);
    return 0;
}

int mpb_call(mpb_client_t *c, unsigned op, const char *name, const void *args, size_t argslen,
             int block_ms, void **result, size_t *resultlen) {
    if (!c) return MPB_EINVAL;
    if (raw_req(c, op, name, args, argslen)) return MPB_EINVAL;
    const uint8_t *v = NULL;
    size_t vn = 0;
    int rc = mpb__call(c, block_ms, &v, &vn);
    if (rc || !result) return rc;
    return mpb__dup(c, v, vn, result, resultlen);
}

int mpb__read_arrived(mpb_client_t *c) {
    int rc = mpb__usable(c);
    while (!rc)
        rc = pump(c, NULL, 0);
    return rc == MPB_ETIMEDOUT ? 0 : rc;
}

/* ---- asynchronous requests ---- */

static int send_req(mpb_client_t *c, mpb_callback_t cb, void *arg, bool user) {
    uint64_t rid = c->next_rid;
    int rc = mpb__usable(c);
    if (!rc) rc = told_lost(c);
    if (!rc && c->out.oom) rc = mpb__fail(c, MPB_ENOMEM, "out of memory building a request");
    if (!rc) rc = pend_add(c, rid, cb, arg, user);
    if (rc) {
        unreq(c);
    } else if (c->out.len >= c->autoflush_bytes || c->out_n >= c->autoflush_n) {
        rc = flush_locked(c);
        mpb__cb_kick(c);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int mpb__send(mpb_client_t *c, mpb_callback_t cb, void *arg) {
    return send_req(c, cb, arg, false);
}

int mpb__send_user(mpb_client_t *c, mpb_callback_t cb, void *arg) {
    return send_req(c, cb, arg, true);
}

int mpb_send(mpb_client_t *c, unsigned op, const char *name, const void *args, size_t argslen,
             mpb_callback_t cb, void *arg) {
    if (!c) return MPB_EINVAL;
    if (raw_req(c, op, name, args, argslen)) return MPB_EINVAL;
    return mpb__send_user(c, cb, arg);
}

int mpb_flush(mpb_client_t *c) {
    if (!c) return MPB_EINVAL;
    pthread_mutex_lock(&c->mu);
    int rc = mpb__usable(c);
    if (!rc) rc = flush_locked(c);
    mpb__cb_kick(c);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int mpb_poll(mpb_client_t *c, int timeout_ms) {
    if (!c) return MPB_EINVAL;
    pthread_mutex_lock(&c->mu);
    int rc = mpb__usable(c);
    if (!rc) rc = flush_locked(c);
    if (!rc && c->pcount) {
        int64_t deadline = timeout_ms < 0    ? INT64_MAX
                           : timeout_ms == 0 ? 0
                                             : mpb__now_ms() + timeout_ms;
        size_t before = c->pcount;
        rc = pump(c, NULL, deadline);
        /* then whatever else is already here, without waiting */
        while (!rc && c->pcount)
            rc = pump(c, NULL, 0);
        if (rc == MPB_ETIMEDOUT) rc = 0;
        if (!rc) rc = (int)(before - c->pcount);
    }
    mpb__cb_kick(c);
    pthread_mutex_unlock(&c->mu);
    mpb__run_callbacks(c, false); /* with the callback thread: those of replies read by now */
    return rc;
}

int mpb_drain(mpb_client_t *c, int timeout_ms) {
    if (!c) return MPB_EINVAL;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : mpb__now_ms() + timeout_ms;
    for (;;) {
        int rc = mpb_poll(c, (int)(deadline == INT64_MAX ? -1 : deadline - mpb__now_ms()));
        if (rc < 0) return rc;
        if (!mpb_inflight(c)) return 0;
        if (mpb__now_ms() >= deadline)
            return mpb__fail(c, MPB_ETIMEDOUT, "%zu requests still in flight", mpb_inflight(c));
    }
}

size_t mpb_inflight(const mpb_client_t *c) {
    return c ? c->pcount : 0;
}

int mpb_fd(mpb_client_t *c) {
    if (c && c->ufd >= 0) return c->ufd;
    if (!c || !c->sock) return -1;
    int fd = -1;
    size_t len = sizeof fd;
    if (zmq_getsockopt(c->sock, ZMQ_FD, &fd, &len) != 0) return -1;
    return fd;
}
