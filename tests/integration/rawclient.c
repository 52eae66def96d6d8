/* rawclient.c - see rawclient.h. Nothing here checks what it is asked to send: sending bad
 * frames is its purpose. What it receives is parsed with the same proto functions libmpb uses. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "rawclient.h"
#include "th.h"

int rc_open(rawclient_t *c, void *ctx, const char *endpoint) {
    return rc_open_as(c, ctx, endpoint, NULL, 0);
}

int rc_open_as(rawclient_t *c, void *ctx, const char *endpoint, const void *id, size_t idlen) {
    memset(c, 0, sizeof *c);
    c->own_ctx = ctx == NULL;
    c->ctx = ctx ? ctx : zmq_ctx_new();
    if (!c->ctx) return -1;
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!c->sock) return -1;
    /* Long enough for a last bye to leave, short enough not to hold a test up. */
    int linger = 200;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (id && zmq_setsockopt(c->sock, ZMQ_ROUTING_ID, id, idlen) != 0) return -1;
    /* A broker of the harness on tcp:// encrypts: speak CURVE with its key, as libmpb does. */
    size_t kl;
    const char *key = strncmp(endpoint, "tcp://", 6) ? NULL : th_authkey_for(endpoint, &kl);
    if (key) {
        mpb__curve_t k;
        if (mpb__curve_keys(key, kl, &k)) return -1;
        int rc = zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, k.broker_pub, MPB__CURVE_LEN) ||
                 zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, k.client_pub, MPB__CURVE_LEN) ||
                 zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, k.client_sec, MPB__CURVE_LEN);
        mpb__curve_wipe(&k);
        if (rc) return -1;
    }
    c->next_rid = 1;
    return zmq_connect(c->sock, endpoint) == 0 ? 0 : -1;
}

void rc_close(rawclient_t *c) {
    if (!c->sock) return;
    if (c->ready) {
        mpb__buf_t b = {0};
        rc_req(&b, c->next_rid++, MPB_OP_BYE, NULL, 0, 0); /* the reply is not waited for */
        rc_send_req(c, b.p, b.len, NULL);
        mpb__buf_free(&b);
    }
    zmq_close(c->sock);
    if (c->own_ctx) zmq_ctx_term(c->ctx);
    mpb__mac_free(&c->tx);
    mpb__mac_free(&c->rx);
    mpb__buf_free(&c->in);
    memset(c, 0, sizeof *c);
}

int rc_send(rawclient_t *c, const void *p, size_t n) {
    return zmq_send(c->sock, p, n, 0) < 0 ? -1 : 0;
}

int rc_send_parts(rawclient_t *c, const void *const *parts, const size_t *lens, int nparts) {
    for (int i = 0; i < nparts; i++)
        if (zmq_send(c->sock, parts[i], lens[i], i + 1 < nparts ? ZMQ_SNDMORE : 0) < 0) return -1;
    return 0;
}

static void str_of(const uint8_t *v, size_t n, char *out, size_t outlen) {
    mpb__rd_t r = {v, v + n};
    const char *s;
    uint32_t sl;
    if (mpb__rd_str(&r, &s, &sl)) {
        mpb__mp_sample(v, n, out, outlen);
        return;
    }
    snprintf(out, outlen, "%.*s", (int)sl, s);
}

static void split_error(rc_frame_t *f) {
    mpb__rd_t m = {f->body, f->body + f->bodylen}, v;
    int64_t code = 0;
    f->code = 0;
    snprintf(f->msg, sizeof f->msg, "(malformed error frame)");
    if (mpb__mp_check(f->body, f->bodylen, 4)) return;
    if (mpb__rd_mapget(&m, "code", &v) == 0 && mpb__rd_int(&v, &code) == 0) f->code = (int)code;
    if (mpb__rd_mapget(&m, "msg", &v) == 0) {
        const uint8_t *s;
        size_t sn;
        if (mpb__rd_span(&v, &s, &sn) == 0) str_of(s, sn, f->msg, sizeof f->msg);
    }
}

static void split_replies(rc_frame_t *f) {
    f->nrep = 0;
    if (mpb__mp_check(f->body, f->bodylen, MPB__MAX_DEPTH)) return;
    mpb__rd_t rd = {f->body, f->body + f->bodylen};
    while (mpb__rd_more(&rd) && f->nrep < RC_MAX_REPLIES) {
        rc_reply_t *r = &f->rep[f->nrep];
        uint32_t n;
        memset(r, 0, sizeof *r);
        if (mpb__rd_array(&rd, &n) || n != 3 || mpb__rd_uint(&rd, &r->rid) ||
            mpb__rd_uint(&rd, &r->code) || mpb__rd_span(&rd, &r->val, &r->vallen))
            return;
        if (r->code) str_of(r->val, r->vallen, r->msg, sizeof r->msg);
        f->nrep++;
    }
}

int rc_recv(rawclient_t *c, rc_frame_t *f, int timeout_ms) {
    memset(f, 0, sizeof *f);
    zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0) return MPB_ETIMEDOUT;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return MPB_ETIMEDOUT;
    }
    mpb__buf_reset(&c->in);
    mpb__w_raw(&c->in, zmq_msg_data(&m), zmq_msg_size(&m));
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    if (more) { /* the broker never sends more than one part: drop the rest and say so */
        while (more) {
            zmq_msg_init(&m);
            more = zmq_msg_recv(&m, c->sock, 0) >= 0 && zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        snprintf(f->msg, sizeof f->msg, "multipart message from the broker");
        return MPB_EPROTO;
    }
    f->data = c->in.p;
    f->len = c->in.len;
    mpb__frame_t fr;
    char err[128];
    if (mpb__frame_parse(c->in.p, c->in.len, SIZE_MAX, &fr, err, sizeof err)) {
        snprintf(f->msg, sizeof f->msg, "%s", err);
        return MPB_EPROTO;
    }
    f->type = fr.type;
    f->seq = fr.seq;
    f->body = fr.body;
    f->bodylen = fr.bodylen;
    if (fr.type == MPB__T_ERROR) {
        split_error(f);
        return 0;
    }
    if (fr.mac && c->rx) {
        f->mac_ok = mpb__mac_verify(c->rx, c->in.p, c->in.len - MPB__MAC_LEN, fr.mac);
        if (f->mac_ok && fr.seq > c->seq_in) c->seq_in = fr.seq;
    }
    if (fr.type == MPB__T_REP && f->mac_ok) split_replies(f);
    return 0;
}

void rc_plain(mpb__buf_t *out, uint8_t type, uint64_t seq, const void *body, size_t n) {
    uint8_t hdr[MPB__HDR_LEN];
    mpb__buf_reset(out);
    mpb__frame_header(hdr, type, seq);
    mpb__w_raw(out, hdr, sizeof hdr);
    mpb__w_raw(out, body, n);
}

/* Waits for a frame of type want, or an ERROR. */
static int wait_for(rawclient_t *c, uint8_t want, rc_frame_t *f, int timeout_ms) {
    int rc = rc_recv(c, f, timeout_ms);
    if (rc) return rc;
    if (f->type == MPB__T_ERROR) return f->code > 0 ? -f->code : MPB_EPROTO;
    return f->type == want ? 0 : MPB_EPROTO;
}

int rc_hello(rawclient_t *c, rc_frame_t *f, int timeout_ms) {
    rc_frame_t local;
    if (!f) f = &local;
    mpb__random(c->nonce_c, sizeof c->nonce_c);
    mpb__buf_t body = {0}, fr = {0};
    mpb__w_map(&body, 2);
    mpb__w_cstr(&body, "v");
    mpb__w_uint(&body, MPB__PROTO_VERSION);
    mpb__w_cstr(&body, "nonce");
    mpb__w_bin(&body, c->nonce_c, sizeof c->nonce_c);
    rc_plain(&fr, MPB__T_HELLO, 0, body.p, body.len);
    int rc = rc_send(c, fr.p, fr.len);
    mpb__buf_free(&body);
    mpb__buf_free(&fr);
    if (rc) return MPB_ECONN;
    rc = wait_for(c, MPB__T_CHALLENGE, f, timeout_ms);
    if (rc) return rc;
    mpb__rd_t m = {f->body, f->body + f->bodylen}, v;
    const uint8_t *p;
    uint32_t n;
    if (mpb__mp_check(f->body, f->bodylen, 4) || mpb__rd_mapget(&m, "nonce", &v) ||
        mpb__rd_bin(&v, &p, &n) || n != MPB__NONCE_LEN)
        return MPB_EPROTO;
    memcpy(c->nonce_b, p, MPB__NONCE_LEN);
    if (mpb__rd_mapget(&m, "proof", &v) || mpb__rd_bin(&v, &p, &n) || n != MPB__PROOF_LEN)
        return MPB_EPROTO;
    memcpy(c->broker_proof, p, MPB__PROOF_LEN);
    return 0;
}

bool rc_broker_proof_ok(const rawclient_t *c, const void *key, size_t keylen) {
    return mpb__auth_verify(key, keylen, true, c->nonce_c, c->nonce_b, c->broker_proof,
                            MPB__PROOF_LEN);
}

int rc_auth_raw(rawclient_t *c, const void *body, size_t n) {
    mpb__buf_t fr = {0};
    rc_plain(&fr, MPB__T_AUTH, 0, body, n);
    int rc = rc_send(c, fr.p, fr.len);
    mpb__buf_free(&fr);
    return rc;
}

static int auth(rawclient_t *c, const void *key, size_t keylen, uint64_t resume_id,
                const uint8_t *resume_token, rc_frame_t *f, int timeout_ms) {
    rc_frame_t local;
    if (!f) f = &local;
    uint8_t proof[MPB__PROOF_LEN];
    mpb__auth_proof(key, keylen, false, c->nonce_c, c->nonce_b, proof);
    mpb__buf_t body = {0};
    mpb__w_map(&body, resume_token ? 5 : 4);
    if (resume_token) {
        mpb__w_cstr(&body, "resume");
        mpb__w_map(&body, 2);
        mpb__w_cstr(&body, "id");
        mpb__w_uint(&body, resume_id);
        mpb__w_cstr(&body, "token");
        mpb__w_bin(&body, resume_token, MPB__TOKEN_LEN);
    }
    mpb__w_cstr(&body, "proof");
    mpb__w_bin(&body, proof, sizeof proof);
    mpb__w_cstr(&body, "host");
    mpb__w_cstr(&body, "rawclient");
    mpb__w_cstr(&body, "pid");
    mpb__w_int(&body, getpid());
    mpb__w_cstr(&body, "name");
    mpb__w_cstr(&body, "test_badinput");
    int rc = rc_auth_raw(c, body.p, body.len);
    mpb__buf_free(&body);
    if (rc) return MPB_ECONN;
    uint8_t c2s[MPB__KEY_LEN], s2c[MPB__KEY_LEN];
    mpb__auth_keys(key, keylen, c->nonce_c, c->nonce_b, c2s, s2c);
    mpb__mac_free(&c->tx);
    mpb__mac_free(&c->rx);
    c->tx = mpb__mac_new(c2s);
    c->rx = mpb__mac_new(s2c);
    c->seq_out = c->seq_in = 0;
    c->ready = false;
    rc = wait_for(c, MPB__T_WELCOME, f, timeout_ms);
    if (rc) return rc;
    if (!f->mac_ok) return MPB_EAUTH;
    mpb__rd_t m = {f->body, f->body + f->bodylen}, v;
    if (mpb__rd_mapget(&m, "session", &v) == 0) mpb__rd_uint(&v, &c->session);
    const uint8_t *tok;
    uint32_t tl;
    if (mpb__rd_mapget(&m, "token", &v) == 0 && mpb__rd_bin(&v, &tok, &tl) == 0 &&
        tl == MPB__TOKEN_LEN)
        memcpy(c->token, tok, tl);
    c->resumed = false;
    if (mpb__rd_mapget(&m, "resumed", &v) == 0) mpb__rd_bool(&v, &c->resumed);
    if (mpb__rd_mapget(&m, "max_frame", &v) == 0) mpb__rd_uint(&v, &c->max_frame);
    if (mpb__rd_mapget(&m, "max_value", &v) == 0) mpb__rd_uint(&v, &c->max_value);
    if (mpb__rd_mapget(&m, "max_key", &v) == 0) mpb__rd_uint(&v, &c->max_key);
    c->ready = true;
    return 0;
}

int rc_auth(rawclient_t *c, const void *key, size_t keylen, rc_frame_t *f, int timeout_ms) {
    return auth(c, key, keylen, 0, NULL, f, timeout_ms);
}

int rc_auth_resume(rawclient_t *c, const void *key, size_t keylen, uint64_t session,
                   const uint8_t *token, rc_frame_t *f, int timeout_ms) {
    return auth(c, key, keylen, session, token, f, timeout_ms);
}

int rc_handshake(rawclient_t *c, const void *key, size_t keylen, int timeout_ms) {
    int rc = rc_hello(c, NULL, timeout_ms);
    return rc ? rc : rc_auth(c, key, keylen, NULL, timeout_ms);
}

void rc_seal(const rawclient_t *c, uint64_t seq, const void *body, size_t n, mpb__buf_t *out) {
    uint8_t mac[MPB__MAC_LEN];
    rc_plain(out, MPB__T_REQ, seq, body, n);
    mpb__mac_sign(c->tx, out->p, out->len, mac);
    mpb__w_raw(out, mac, sizeof mac);
}

int rc_send_req(rawclient_t *c, const void *body, size_t n, mpb__buf_t *out) {
    mpb__buf_t local = {0};
    mpb__buf_t *b = out ? out : &local;
    rc_seal(c, ++c->seq_out, body, n, b);
    int rc = rc_send(c, b->p, b->len);
    mpb__buf_free(&local);
    return rc;
}

int rc_call(rawclient_t *c, const void *body, size_t n, rc_frame_t *f, int timeout_ms) {
    if (rc_send_req(c, body, n, NULL)) return MPB_ECONN;
    return rc_recv(c, f, timeout_ms);
}

void rc_req(mpb__buf_t *b, uint64_t rid, unsigned op, const char *name, size_t namelen,
            uint32_t argc) {
    mpb__w_array(b, 3 + argc);
    mpb__w_uint(b, rid);
    mpb__w_uint(b, op);
    if (name)
        mpb__w_str(b, name, namelen);
    else
        mpb__w_nil(b);
}
