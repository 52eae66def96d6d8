/* out.c - sealing and sending. Every frame goes out here: replies sealed with the peer's key
 * and sequence number, plain frames for the handshake and for peers without keys; all held
 * back, while the log has records of this loop turn to write, until they are written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "limits.h"
#include "mem.h"
#include "metrics.h"
#include "out.h"
#include "persist.h"
#include "replay.h"
#include "stream.h"

static void *router;
static transport_t *tp;
static mpb__buf_t reply_buf; /* one reply to a parked request */

void out_init(void *r, transport_t *t) {
    router = r;
    tp = t;
}

/* Frames held until the log records of this loop turn are written (and with --fsync always,
 * on disk): [u8 ridlen][rid][u32 len][frame], in the order they were sent. */
static mpb__buf_t held;

static void send_now(const uint8_t *rid, size_t ridlen, const uint8_t *buf, size_t len) {
    if (stream_is_rid(rid, ridlen)) {
        stream_send(rid, buf, len);
        return;
    }
    if (zmq_send(router, rid, ridlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return;
    if (zmq_send(router, buf, len, ZMQ_DONTWAIT) < 0) {
        log_kv(MPB_LOG_WARN, "reply dropped", "bytes", LOG_UINT(len), "error",
               zmq_strerror(zmq_errno()), NULL);
        return;
    }
    g_frames_out++;
    g_bytes_out += len;
}

/* False when the frame's connection is gone or was closed for it (unix://: stream.c counts a
 * frame against the output limit here, held for the log or not). */
static bool send_frame(const uint8_t *rid, size_t ridlen, const uint8_t *buf, size_t len) {
    if (stream_is_rid(rid, ridlen) && !stream_admit(rid, len)) return false;
    if (!persist_holding() && !held.len) {
        send_now(rid, ridlen, buf, len);
        return true;
    }
    if (mpb__buf_reserve(&held, 5 + ridlen + len)) {
        /* No memory to hold it: the log is written now and the frames held so far sent, so
         * this one may go at once (if the log cannot be written, the loop stops). */
        held.oom = false;
        if (out_commit() == 0) send_now(rid, ridlen, buf, len);
        return true;
    }
    uint8_t hdr[5] = {(uint8_t)ridlen, (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
                      (uint8_t)(len >> 24)};
    mpb__w_raw(&held, hdr, 1);
    mpb__w_raw(&held, rid, ridlen);
    mpb__w_raw(&held, hdr + 1, 4);
    mpb__w_raw(&held, buf, len);
    bbuf_ensure(&held);
    return true;
}

int out_commit(void) {
    if (persist_commit() != 0) return -1;
    for (size_t at = 0; at < held.len;) {
        const uint8_t *h = held.p + at;
        size_t ridlen = h[0];
        const uint8_t *l = h + 1 + ridlen;
        size_t len = (size_t)l[0] | (size_t)l[1] << 8 | (size_t)l[2] << 16 | (size_t)l[3] << 24;
        send_now(h + 1, ridlen, l + 4, len);
        at += 1 + ridlen + 4 + len;
    }
    mpb__buf_reset(&held);
    mem_buf_trim(&held);
    return 0;
}

void out_plain(const uint8_t *rid, size_t ridlen, uint8_t type, const mpb__buf_t *body) {
    mpb__buf_t b = {0};
    uint8_t hdr[MPB__HDR_LEN];
    mpb__frame_header(hdr, type, 0);
    mpb__w_raw(&b, hdr, sizeof hdr);
    mpb__w_raw(&b, body->p, body->len);
    bbuf_ensure(&b);
    send_frame(rid, ridlen, b.p, b.len);
    mpb__buf_free(&b);
}

void out_plain_error(const uint8_t *rid, size_t ridlen, int code, const char *msg) {
    mpb__buf_t body = {0};
    mpb__w_map(&body, 2);
    mpb__w_cstr(&body, "code");
    mpb__w_int(&body, code);
    mpb__w_cstr(&body, "msg");
    mpb__w_cstr(&body, msg);
    bbuf_ensure(&body);
    out_plain(rid, ridlen, MPB__T_ERROR, &body);
    mpb__buf_free(&body);
}

void out_check(peer_t *p) {
    char who[2 * RID_MAX + 1];
    peer_sample(p, who, sizeof who);
    int rc = transport_output_check(tp, p->fd, p->out_bytes, p->acked0, &p->acked_seen,
                                    &p->acked_ms, who);
    p->out_over = rc == 1;
    p->out_cut |= rc == 2;
    if (rc != 1) p->acked_ms = 0;
}

void out_seal_and_send(peer_t *p, uint8_t type, mpb__buf_t *b) {
    if (p->out_cut) return; /* its connection is closing: libzmq would only queue them */
    mpb__frame_header(b->p, type, ++p->seq_out);
    uint8_t mac[MPB__MAC_LEN];
    if (mpb__mac_sign(p->tx, b->p, b->len, mac)) fatal("signing a reply failed");
    mpb__w_raw(b, mac, sizeof mac);
    bbuf_ensure(b);
    if (!send_frame(p->rid, p->ridlen, b->p, b->len)) p->out_cut = true;
    /* The output limit, looked at every 256 KiB of replies: cheap, and a client that does not
     * read can be at most that much past it. */
    p->out_bytes += b->len;
    if (g_limits.max_output && p->out_bytes - p->out_checked >= (256u << 10)) {
        p->out_checked = p->out_bytes;
        out_check(p);
    }
}

void out_reset(mpb__buf_t *b) {
    mpb__buf_reset(b);
    mpb__buf_reserve(b, MPB__HDR_LEN);
    bbuf_ensure(b);
    b->len = MPB__HDR_LEN;
}

void out_send_reply(sess_t *s, const uint8_t *reply, size_t n) {
    replay_note_parked(s, reply, n); /* kept even when no channel carries it now */
    peer_t *p = s->peer;
    if (!p || !p->ready) return;
    out_reset(&reply_buf);
    mpb__w_raw(&reply_buf, reply, n);
    bbuf_ensure(&reply_buf);
    out_seal_and_send(p, MPB__T_REP, &reply_buf);
}

void out_free(void) {
    mpb__buf_free(&held);
    mpb__buf_free(&reply_buf);
}
