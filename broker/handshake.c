/* handshake.c - a peer proves the authkey (hello, challenge, auth: HMAC proofs over both
 * nonces, see proto/PROTOCOL.md), gets its keys, and opens a session or resumes its own
 * (welcome). A peer that fails is forgotten; one over the limits hears why. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handshake.h"
#include "limits.h"
#include "metrics.h"
#include "out.h"
#include "persist.h"

static const uint8_t *authkey;
static size_t keylen;
static transport_t *tp;

void handshake_init(const uint8_t *key, size_t len, transport_t *t) {
    authkey = key;
    keylen = len;
    tp = t;
}

static void copy_str(mpb__rd_t *map, const char *key, char *out, size_t n) {
    mpb__rd_t v;
    const char *s;
    uint32_t sl;
    if (mpb__rd_mapget(map, key, &v) || mpb__rd_str(&v, &s, &sl)) return;
    size_t k = 0;
    for (uint32_t i = 0; i < sl && k + 1 < n; i++)
        out[k++] = (s[i] >= ' ' && s[i] <= '~') ? s[i] : '?';
    out[k] = 0;
}

static int get_bin(mpb__rd_t *map, const char *key, size_t want, const uint8_t **out) {
    mpb__rd_t v;
    uint32_t n;
    if (mpb__rd_mapget(map, key, &v) || mpb__rd_bin(&v, out, &n) || n != want) return -1;
    return 0;
}

/* Whether a HELLO from addr must be refused for the limits; if so, it is answered ELIMIT,
 * and logged (a line a second per address, with a count). */
static bool over_limits(const uint8_t *rid, size_t ridlen, const char *addr) {
    char msg[160];
    /* On tcp:// under CURVE only holders of the key get this far; the share matters for ipc://
     * (an address is a process there: libzmq gives ":uid:gid:pid") and for tcp:// with
     * encryption off. */
    size_t share = limits_addr_share();
    if (peer_pending_from(addr) >= share)
        snprintf(msg, sizeof msg,
                 "too many handshakes in progress from this address (%zu: "
                 "max-handshakes-per-addr, at most half of max-handshakes %zu)",
                 share, g_limits.max_handshakes);
    else if (peer_pending() >= g_limits.max_handshakes)
        snprintf(msg, sizeof msg, "too many handshakes in progress (max-handshakes %zu)",
                 g_limits.max_handshakes);
    else
        return false;
    char key[96];
    unsigned long long unlogged;
    snprintf(key, sizeof key, "hello %s", addr);
    if (log_rate_ok(key, &unlogged))
        log_kv(MPB_LOG_WARN, "handshake refused", "addr", addr[0] ? addr : "unknown", "reason", msg,
               "in_progress", LOG_UINT(peer_pending()), "not_logged",
               unlogged ? LOG_UINT(unlogged) : NULL, NULL);
    out_plain_error(rid, ridlen, -MPB_ELIMIT, msg);
    return true;
}

void handshake_hello(const uint8_t *rid, size_t ridlen, const mpb__frame_t *f, const char *addr) {
    mpb__rd_t m = {f->body, f->body + f->bodylen}, v;
    const uint8_t *nonce;
    int64_t ver = 0;
    if (mpb__mp_check(f->body, f->bodylen, 4) || mpb__rd_mapget(&m, "v", &v) ||
        mpb__rd_int(&v, &ver) || get_bin(&m, "nonce", MPB__NONCE_LEN, &nonce)) {
        out_plain_error(rid, ridlen, -MPB_EPROTO, "hello must be {v: 1, nonce: bin 32}");
        return;
    }
    if (ver != MPB__PROTO_VERSION) {
        char msg[96];
        snprintf(msg, sizeof msg, "protocol version %lld not supported (broker speaks %d)",
                 (long long)ver, MPB__PROTO_VERSION);
        out_plain_error(rid, ridlen, -MPB_EPROTO, msg);
        return;
    }
    peer_t *p = peer_find(rid, ridlen);
    uint32_t opened = p ? p->nsess_opened : 0; /* the connection's, not the handshake's */
    if (p) peer_free(p); /* a new handshake on this connection starts from nothing */
    if (!addr) addr = "";
    if (over_limits(rid, ridlen, addr)) return;
    p = peer_new(rid, ridlen, addr);
    p->nsess_opened = opened;
    memcpy(p->nonce_c, nonce, MPB__NONCE_LEN);
    if (mpb__random(p->nonce_b, MPB__NONCE_LEN)) fatal("no randomness for a nonce");
    p->hs_deadline = now_ms() + g_limits.handshake_ms;
    uint8_t proof[MPB__PROOF_LEN];
    if (mpb__auth_proof(authkey, keylen, true, p->nonce_c, p->nonce_b, proof))
        fatal("HMAC of the handshake proof failed");
    mpb__buf_t b = {0};
    mpb__w_map(&b, 2);
    mpb__w_cstr(&b, "nonce");
    mpb__w_bin(&b, p->nonce_b, MPB__NONCE_LEN);
    mpb__w_cstr(&b, "proof");
    mpb__w_bin(&b, proof, sizeof proof);
    bbuf_ensure(&b);
    out_plain(rid, ridlen, MPB__T_CHALLENGE, &b);
    mpb__buf_free(&b);
}

void handshake_auth(const uint8_t *rid, size_t ridlen, const mpb__frame_t *f, int fd) {
    char who[2 * RID_MAX + 1];
    peer_t *p = peer_find(rid, ridlen);
    if (!p || p->ready) {
        out_plain_error(rid, ridlen, -MPB_EPROTO, "auth without hello");
        return;
    }
    peer_sample(p, who, sizeof who);
    mpb__rd_t m = {f->body, f->body + f->bodylen}, v;
    const uint8_t *proof;
    if (mpb__mp_check(f->body, f->bodylen, 4) || get_bin(&m, "proof", MPB__PROOF_LEN, &proof) ||
        !mpb__auth_verify(authkey, keylen, false, p->nonce_c, p->nonce_b, proof, MPB__PROOF_LEN)) {
        char addr[64];
        unsigned long long unlogged;
        if (peer_log_ok("auth", fd, who, addr, sizeof addr, &unlogged))
            log_kv(MPB_LOG_WARN, "authentication failed", "peer", who, "addr", addr, "not_logged",
                   unlogged ? LOG_UINT(unlogged) : NULL, NULL);
        g_auth_failures++;
        out_plain_error(rid, ridlen, -MPB_EAUTH, "authentication failed");
        peer_free(p); /* no state for a peer that fails */
        return;
    }
    uint8_t c2s[MPB__KEY_LEN], s2c[MPB__KEY_LEN];
    if (mpb__auth_keys(authkey, keylen, p->nonce_c, p->nonce_b, c2s, s2c))
        fatal("deriving the session keys failed");
    p->rx = mpb__mac_new(c2s);
    p->tx = mpb__mac_new(s2c);
    if (!p->rx || !p->tx) fatal("out of memory for a MAC context");
    peer_ready(p);

    sess_t *s = NULL;
    bool resumed = false;
    mpb__rd_t rv;
    if (mpb__rd_mapget(&m, "resume", &rv) == 0 && mpb__rd_type(&rv) == MPB__MT_MAP) {
        mpb__rd_t idv;
        uint64_t id = 0;
        const uint8_t *tok;
        if (mpb__rd_mapget(&rv, "id", &idv) == 0 && mpb__rd_uint(&idv, &id) == 0 &&
            get_bin(&rv, "token", MPB__TOKEN_LEN, &tok) == 0) {
            s = sess_lookup(id);
            if (s && memcmp(s->token, tok, MPB__TOKEN_LEN) != 0) s = NULL;
        }
    }
    if (s) {
        resumed = true;
        if (s->peer && s->peer != p) {
            s->peer->sess = NULL; /* the old connection speaks for nobody now */
        }
    } else {
        char why[128];
        if (sess_admit(p, why, sizeof why)) {
            /* The peer stays, without a session, so that its count stays; the sweep frees it
             * once the sessions it opened have ended. */
            out_plain_error(rid, ridlen, -MPB_ELIMIT, why);
            return;
        }
        s = sess_new();
        p->nsess_opened++;
        memcpy(s->origin, rid, ridlen);
        s->originlen = (uint8_t)ridlen;
        copy_str(&m, "host", s->host, sizeof s->host);
        copy_str(&m, "name", s->name, sizeof s->name);
        if (mpb__rd_mapget(&m, "pid", &v) == 0) mpb__rd_int(&v, &s->pid);
        persist_session(s); /* so that it can be resumed after a restart */
    }
    s->peer = p;
    p->sess = s;
    p->fd = fd;
    p->out_bytes = p->out_checked = 0;
    p->acked0 = transport_acked(fd);
    p->acked_seen = p->acked_ms = 0;
    p->out_over = false;
    transport_conn_session(tp, fd, true);
    s->last_seen_ms = now_ms();
    log_kv(MPB_LOG_DEBUG, resumed ? "session resumed" : "session opened", "session",
           LOG_UINT(s->id), "peer", who, "host", s->host, "pid", LOG_INT(s->pid), "name", s->name,
           NULL);

    mpb__buf_t b = {0};
    out_reset(&b);
    mpb__w_map(&b, 10);
    mpb__w_cstr(&b, "session");
    mpb__w_uint(&b, s->id);
    mpb__w_cstr(&b, "token");
    mpb__w_bin(&b, s->token, MPB__TOKEN_LEN);
    mpb__w_cstr(&b, "resumed");
    mpb__w_bool(&b, resumed);
    mpb__w_cstr(&b, "version");
    mpb__w_cstr(&b, MPBROKER_VERSION);
    mpb__w_cstr(&b, "max_frame");
    mpb__w_uint(&b, g_limits.max_frame);
    mpb__w_cstr(&b, "max_value");
    mpb__w_uint(&b, g_limits.max_value);
    mpb__w_cstr(&b, "max_key");
    mpb__w_uint(&b, g_limits.max_key);
    mpb__w_cstr(&b, "max_scan");
    mpb__w_uint(&b, g_limits.max_scan);
    mpb__w_cstr(&b, "heartbeat_ms");
    mpb__w_uint(&b, (uint64_t)g_limits.heartbeat_ms);
    mpb__w_cstr(&b, "ttl_ms");
    mpb__w_uint(&b, (uint64_t)g_limits.session_ttl_ms);
    bbuf_ensure(&b);
    out_seal_and_send(p, MPB__T_WELCOME, &b);
    mpb__buf_free(&b);
}
