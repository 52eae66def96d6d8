/* server.c - the broker's one loop: it owns the ROUTER socket and all state. Each inbound
 * message passes the gates in order (size, header, peer, MAC, sequence, msgpack shape) and
 * the first failure is what its sender hears; each request of a batch is dispatched and its
 * reply appended to an outbound REP, sealed and sent when the next reply would not fit in
 * max_frame and at the end of the batch.
 *
 *   client DEALER --[hello]-->  peer (handshake)  --[auth ok]--> peer (ready) <-> session
 *   a session outlives its peer: a client that reconnects proves the key again and resumes. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "broker.h"
#include "persist.h"

limits_t g_limits;
int64_t g_started_ms;

typedef struct server {
    void *zctx, *router;
    const uint8_t *authkey;
    size_t keylen;
    peer_t **buckets;
    size_t nbuckets, npeers, npending;
    sess_t *sessions;
    size_t nsessions;
    const char *msg_addr; /* Peer-Address of the message being read (drain), or NULL */
    uint64_t next_sess_id;
    mpb__buf_t out;     /* the reply batch being built, header space first */
    mpb__buf_t scratch; /* replies nobody asked for (rid 0) */
    mpb__buf_t spill;   /* the reply that starts the next REP of a batch */
    volatile sig_atomic_t stopping;
    int64_t next_sweep;
    http_t *http;
    transport_t *tp;
    bool ready;
} server_t;

static server_t S;

/* Connections that speak for a live session. A connection whose session has ended (bye,
 * expiry, resumed elsewhere) is no client any more, though the sweep frees it only later. */
size_t server_peer_count(void) {
    size_t n = 0;
    for (const sess_t *s = S.sessions; s; s = s->next) n += s->peer != NULL;
    return n;
}

size_t server_session_count(void) {
    return S.nsessions;
}

transport_t *server_transport(void) {
    return S.tp;
}

void server_stop(void) {
    S.stopping = 1;
}

bool server_ready(void) {
    return S.ready && !S.stopping;
}

/* ---- peers ---- */

static uint64_t rid_hash(const uint8_t *rid, size_t n) {
    return mpb__hash(rid, n);
}

static peer_t **peer_slot(const uint8_t *rid, size_t n) {
    peer_t **pp = &S.buckets[rid_hash(rid, n) & (S.nbuckets - 1)];
    while (*pp && !((*pp)->ridlen == n && !memcmp((*pp)->rid, rid, n))) pp = &(*pp)->hnext;
    return pp;
}

static peer_t *peer_find(const uint8_t *rid, size_t n) {
    return *peer_slot(rid, n);
}

static void peer_rehash(void) {
    size_t nb = S.nbuckets * 2;
    peer_t **b = xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < S.nbuckets; i++) {
        for (peer_t *p = S.buckets[i], *next; p; p = next) {
            next = p->hnext;
            peer_t **slot = &b[rid_hash(p->rid, p->ridlen) & (nb - 1)];
            p->hnext = *slot;
            *slot = p;
        }
    }
    free(S.buckets);
    S.buckets = b;
    S.nbuckets = nb;
}

static peer_t *peer_new(const uint8_t *rid, size_t n) {
    if (S.npeers >= S.nbuckets) peer_rehash();
    peer_t *p = xcalloc(1, sizeof *p);
    memcpy(p->rid, rid, n);
    p->ridlen = (uint8_t)n;
    p->fd = -1;
    peer_t **slot = &S.buckets[rid_hash(rid, n) & (S.nbuckets - 1)];
    p->hnext = *slot;
    *slot = p;
    S.npeers++;
    S.npending++;
    return p;
}

static void peer_free(peer_t *p) {
    peer_t **pp = peer_slot(p->rid, p->ridlen);
    if (*pp == p) *pp = p->hnext;
    S.npeers--;
    if (!p->ready) S.npending--;
    if (p->sess && p->sess->peer == p) p->sess->peer = NULL;
    transport_conn_session(S.tp, p->fd, false); /* its connection's idle clock starts */
    mpb__mac_free(&p->rx);
    mpb__mac_free(&p->tx);
    free(p);
}

static void peer_sample(const peer_t *p, char *out, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < p->ridlen && k + 3 < n; i++) k += (size_t)snprintf(out + k, n - k, "%02x", p->rid[i]);
    out[k] = 0;
}

/* Whether a line about this peer may be written now (log.c's rate limit), keyed by its address,
 * or by its connection when it has none (ipc://). addr gets the address for the line. */
static bool peer_log_ok(int fd, const char *who, char *addr, size_t n, unsigned long long *held) {
    log_peer_addr(fd, addr, n);
    bool net = strcmp(addr, "local") && strcmp(addr, "unknown");
    return log_rate_ok(net ? addr : who, held);
}

/* ---- sending ---- */

/* Frames held until the log records of this loop turn are written (and with --fsync always,
 * on disk): [u8 ridlen][rid][u32 len][frame], in the order they were sent. */
static mpb__buf_t held;

static void send_now(const uint8_t *rid, size_t ridlen, const uint8_t *buf, size_t len) {
    if (zmq_send(S.router, rid, ridlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return;
    if (zmq_send(S.router, buf, len, ZMQ_DONTWAIT) < 0) {
        log_kv(LOG_WARN, "reply dropped", "bytes", LOG_UINT(len), "error",
               zmq_strerror(zmq_errno()), NULL);
        return;
    }
    g_frames_out++;
    g_bytes_out += len;
}

static void send_frame(const uint8_t *rid, size_t ridlen, const uint8_t *buf, size_t len) {
    if (!persist_holding() && !held.len) {
        send_now(rid, ridlen, buf, len);
        return;
    }
    uint8_t hdr[5] = {(uint8_t)ridlen, (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
                      (uint8_t)(len >> 24)};
    mpb__w_raw(&held, hdr, 1);
    mpb__w_raw(&held, rid, ridlen);
    mpb__w_raw(&held, hdr + 1, 4);
    mpb__w_raw(&held, buf, len);
    bbuf_ensure(&held);
}

/* Writes the turn's log records, then lets the frames that waited for them go. */
static int commit_and_send(void) {
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
    return 0;
}

/* A plain error frame, for peers that have no keys (yet, or any more). */
static void send_plain_error(const uint8_t *rid, size_t ridlen, int code, const char *msg) {
    mpb__buf_t b = {0};
    uint8_t hdr[MPB__HDR_LEN];
    mpb__frame_header(hdr, MPB__T_ERROR, 0);
    mpb__w_raw(&b, hdr, sizeof hdr);
    mpb__w_map(&b, 2);
    mpb__w_cstr(&b, "code");
    mpb__w_int(&b, code);
    mpb__w_cstr(&b, "msg");
    mpb__w_cstr(&b, msg);
    bbuf_ensure(&b);
    send_frame(rid, ridlen, b.p, b.len);
    mpb__buf_free(&b);
}

static void plain(const uint8_t *rid, size_t ridlen, uint8_t type, mpb__buf_t *body) {
    mpb__buf_t b = {0};
    uint8_t hdr[MPB__HDR_LEN];
    mpb__frame_header(hdr, type, 0);
    mpb__w_raw(&b, hdr, sizeof hdr);
    mpb__w_raw(&b, body->p, body->len);
    bbuf_ensure(&b);
    send_frame(rid, ridlen, b.p, b.len);
    mpb__buf_free(&b);
}

/* The output limit (transport.c): over it, the sweep keeps looking until the peer reads or
 * its connection is shut. */
static void output_check(peer_t *p) {
    char who[2 * RID_MAX + 1];
    peer_sample(p, who, sizeof who);
    int rc = transport_output_check(S.tp, p->fd, p->out_bytes, p->acked0, &p->acked_seen,
                                    &p->acked_ms, who);
    p->out_over = rc == 1;
    p->out_cut |= rc == 2;
    if (rc != 1) p->acked_ms = 0;
}

/* Seals b (whose first MPB__HDR_LEN bytes are reserved for the header) and sends it. */
static void seal_and_send(peer_t *p, uint8_t type, mpb__buf_t *b) {
    if (p->out_cut) return; /* its connection is closing: libzmq would only queue them */
    mpb__frame_header(b->p, type, ++p->seq_out);
    uint8_t mac[MPB__MAC_LEN];
    if (mpb__mac_sign(p->tx, b->p, b->len, mac)) abort();
    mpb__w_raw(b, mac, sizeof mac);
    bbuf_ensure(b);
    send_frame(p->rid, p->ridlen, b->p, b->len);
    /* The output limit, looked at every 256 KiB of replies: cheap, and a client that does not
     * read can be at most that much past it. */
    p->out_bytes += b->len;
    if (g_limits.max_output && p->out_bytes - p->out_checked >= (256u << 10)) {
        p->out_checked = p->out_bytes;
        output_check(p);
    }
}

static void out_reset(mpb__buf_t *b) {
    mpb__buf_reset(b);
    mpb__buf_reserve(b, MPB__HDR_LEN);
    bbuf_ensure(b);
    b->len = MPB__HDR_LEN;
}

/* ---- sessions ---- */

static sess_t *sess_find(uint64_t id) {
    for (sess_t *s = S.sessions; s; s = s->next)
        if (s->id == id) return s;
    return NULL;
}

/* Whether peer p may open one more session: 0, or -1 with the limit it would pass in why.
 * Counted per connection (sessions it opened that live on, across new handshakes on it), so
 * that one connection cannot open thousands, and in all. Resuming one opens none. */
static int sess_admit(const peer_t *p, char *why, size_t n) {
    if (S.nsessions >= g_limits.max_sessions) {
        snprintf(why, n, "sessions at max-sessions %zu: try again later", g_limits.max_sessions);
        g_sessions_refused++;
        return -1;
    }
    if (p->nsess_opened >= g_limits.max_sessions_per_conn) {
        snprintf(why, n, "this connection opened max-sessions-per-conn %zu live sessions",
                 g_limits.max_sessions_per_conn);
        g_sessions_refused++;
        return -1;
    }
    return 0;
}

static sess_t *sess_new(void) {
    sess_t *s = xcalloc(1, sizeof *s);
    s->id = ++S.next_sess_id;
    if (mpb__random(s->token, sizeof s->token)) abort();
    s->created_ms = s->last_seen_ms = now_ms();
    s->next = S.sessions;
    if (S.sessions) S.sessions->prev = s;
    S.sessions = s;
    S.nsessions++;
    return s;
}

/* ---- sessions brought back from the log (persist.c) ---- */

sess_t *server_sess_restore(uint64_t id, const uint8_t *token, const char *host, int64_t pid,
                            const char *name) {
    uint64_t next = S.next_sess_id;
    sess_t *s = sess_new();
    S.next_sess_id = id > next ? id : next;
    s->id = id;
    if (token) memcpy(s->token, token, MPB__TOKEN_LEN);
    snprintf(s->host, sizeof s->host, "%s", host);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->pid = pid;
    return s;
}

void server_bump_sess_id(uint64_t next) {
    if (next > S.next_sess_id) S.next_sess_id = next;
}

sess_t *server_sess_lookup(uint64_t id) {
    return sess_find(id);
}

void server_sess_end_id(uint64_t id, const char *why) {
    sess_t *s = sess_find(id);
    if (s) sess_end(s, why);
}

void server_restore_done(void) {
    for (sess_t *s = S.sessions; s; s = s->next) {
        /* Locks and semaphore units go; items of reliable queues stay with their takers,
         * who may resume and finish them (their session's end puts them back). */
        for (size_t i = s->nholds; i-- > 0;) {
            if (s->holds[i].obj->kind == KIND_QUEUE) continue;
            hold_t h = s->holds[i];
            s->holds[i] = s->holds[--s->nholds];
            sync_release_hold(s, &h);
        }
        s->last_seen_ms = now_ms(); /* the TTL to resume starts now */
    }
}

uint64_t server_next_sess_id(void) {
    return S.next_sess_id;
}

void server_send_reply(sess_t *s, const uint8_t *reply, size_t n) {
    replay_note_parked(s, reply, n); /* kept even when no channel carries it now */
    peer_t *p = s->peer;
    if (!p || !p->ready) return;
    mpb__buf_t *b = &S.scratch;
    out_reset(b);
    mpb__w_raw(b, reply, n);
    bbuf_ensure(b);
    seal_and_send(p, MPB__T_REP, b);
}

sess_t *server_sessions(void) {
    return S.sessions;
}

void server_forget_obj(obj_t *o) {
    for (sess_t *s = S.sessions; s; s = s->next)
        for (size_t i = 0; i < s->nholds;)
            if (s->holds[i].obj == o) s->holds[i] = s->holds[--s->nholds];
            else i++;
}

/* Drops a session's parked requests and gives back what it held, waking the next waiters. */
static void sess_release(sess_t *s) {
    while (s->waiters) {
        waiter_t *w = s->waiters;
        obj_t *o = w->obj;
        if (o && w->item) {
            if (o->kind == KIND_QUEUE && o->u.queue.joinable) o->u.queue.unfinished--;
            free(w->item);
            w->item = NULL;
        }
        waiter_free(w);
        sync_on_waiter_gone(o);
    }
    while (s->nholds) {
        hold_t h = s->holds[--s->nholds];
        sync_release_hold(s, &h);
    }
    anon_sess_end(s); /* last: what it held in them is given back already */
    pool_sess_end(s);
    replay_free(s);
    free(s->holds);
    s->holds = NULL;
}

void sess_describe(const sess_t *s, mpb__buf_t *b) {
    mpb__w_cstr(b, "session");
    mpb__w_uint(b, s ? s->id : 0);
    mpb__w_cstr(b, "host");
    mpb__w_cstr(b, s ? s->host : "");
    mpb__w_cstr(b, "pid");
    mpb__w_int(b, s ? s->pid : 0);
}

void sess_end(sess_t *s, const char *why) {
    /* A session that says bye is routine; one that goes silent is news. */
    log_kv(strcmp(why, "bye") && !persist_replaying() ? LOG_INFO : LOG_DEBUG, "session ended", "session", LOG_UINT(s->id),
           "reason", why, "host", s->host, "pid", LOG_INT(s->pid), "name", s->name, NULL);
    if (s->peer) {
        s->peer->sess = NULL;
        s->peer = NULL;
    }
    persist_session_end(s);
    peer_t *origin = peer_find(s->origin, s->originlen);
    if (origin && origin->nsess_opened) origin->nsess_opened--;
    sess_release(s);
    if (s->prev) s->prev->next = s->next;
    else S.sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    S.nsessions--;
    free(s);
}

/* ---- handshake ---- */

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

static void on_hello(const uint8_t *rid, size_t ridlen, const mpb__frame_t *f) {
    mpb__rd_t m = {f->body, f->body + f->bodylen}, v;
    const uint8_t *nonce;
    int64_t ver = 0;
    if (mpb__mp_check(f->body, f->bodylen, 4) || mpb__rd_mapget(&m, "v", &v) ||
        mpb__rd_int(&v, &ver) || get_bin(&m, "nonce", MPB__NONCE_LEN, &nonce)) {
        send_plain_error(rid, ridlen, -MPB_EPROTO, "hello must be {v: 1, nonce: bin 32}");
        return;
    }
    if (ver != MPB__PROTO_VERSION) {
        char msg[96];
        snprintf(msg, sizeof msg, "protocol version %lld not supported (broker speaks %d)",
                 (long long)ver, MPB__PROTO_VERSION);
        send_plain_error(rid, ridlen, -MPB_EPROTO, msg);
        return;
    }
    peer_t *p = peer_find(rid, ridlen);
    uint32_t opened = p ? p->nsess_opened : 0; /* the connection's, not the handshake's */
    if (p) peer_free(p); /* a new handshake on this connection starts from nothing */
    if (S.npending >= g_limits.max_pending) {
        send_plain_error(rid, ridlen, -MPB_ELIMIT, "too many handshakes in progress");
        return;
    }
    p = peer_new(rid, ridlen);
    p->nsess_opened = opened;
    snprintf(p->addr, sizeof p->addr, "%s", S.msg_addr ? S.msg_addr : "");
    memcpy(p->nonce_c, nonce, MPB__NONCE_LEN);
    if (mpb__random(p->nonce_b, MPB__NONCE_LEN)) abort();
    p->hs_deadline = now_ms() + g_limits.handshake_ms;
    uint8_t proof[MPB__PROOF_LEN];
    if (mpb__auth_proof(S.authkey, S.keylen, true, p->nonce_c, p->nonce_b, proof)) abort();
    mpb__buf_t b = {0};
    mpb__w_map(&b, 2);
    mpb__w_cstr(&b, "nonce");
    mpb__w_bin(&b, p->nonce_b, MPB__NONCE_LEN);
    mpb__w_cstr(&b, "proof");
    mpb__w_bin(&b, proof, sizeof proof);
    bbuf_ensure(&b);
    plain(rid, ridlen, MPB__T_CHALLENGE, &b);
    mpb__buf_free(&b);
}

static void on_auth(const uint8_t *rid, size_t ridlen, const mpb__frame_t *f, int fd) {
    char who[2 * RID_MAX + 1];
    peer_t *p = peer_find(rid, ridlen);
    if (!p || p->ready) {
        send_plain_error(rid, ridlen, -MPB_EPROTO, "auth without hello");
        return;
    }
    peer_sample(p, who, sizeof who);
    mpb__rd_t m = {f->body, f->body + f->bodylen}, v;
    const uint8_t *proof;
    if (mpb__mp_check(f->body, f->bodylen, 4) || get_bin(&m, "proof", MPB__PROOF_LEN, &proof) ||
        !mpb__auth_verify(S.authkey, S.keylen, false, p->nonce_c, p->nonce_b, proof,
                          MPB__PROOF_LEN)) {
        char addr[64];
        unsigned long long unlogged;
        if (peer_log_ok(fd, who, addr, sizeof addr, &unlogged))
            log_kv(LOG_WARN, "authentication failed", "peer", who, "addr", addr, "not_logged",
                   unlogged ? LOG_UINT(unlogged) : NULL, NULL);
        g_auth_failures++;
        send_plain_error(rid, ridlen, -MPB_EAUTH, "authentication failed");
        peer_free(p); /* no state for a peer that fails */
        return;
    }
    uint8_t c2s[MPB__KEY_LEN], s2c[MPB__KEY_LEN];
    if (mpb__auth_keys(S.authkey, S.keylen, p->nonce_c, p->nonce_b, c2s, s2c)) abort();
    p->rx = mpb__mac_new(c2s);
    p->tx = mpb__mac_new(s2c);
    if (!p->rx || !p->tx) abort();
    p->ready = true;
    S.npending--;

    sess_t *s = NULL;
    bool resumed = false;
    mpb__rd_t rv;
    if (mpb__rd_mapget(&m, "resume", &rv) == 0 && mpb__rd_type(&rv) == MPB__MT_MAP) {
        mpb__rd_t idv;
        uint64_t id = 0;
        const uint8_t *tok;
        if (mpb__rd_mapget(&rv, "id", &idv) == 0 && mpb__rd_uint(&idv, &id) == 0 &&
            get_bin(&rv, "token", MPB__TOKEN_LEN, &tok) == 0) {
            s = sess_find(id);
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
            send_plain_error(rid, ridlen, -MPB_ELIMIT, why);
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
    transport_conn_session(S.tp, fd, true);
    s->last_seen_ms = now_ms();
    log_kv(LOG_DEBUG, resumed ? "session resumed" : "session opened", "session", LOG_UINT(s->id),
           "peer", who, "host", s->host, "pid", LOG_INT(s->pid), "name", s->name, NULL);

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
    seal_and_send(p, MPB__T_WELCOME, &b);
    mpb__buf_free(&b);
}

/* ---- requests ----
 *
 * The replies to one REQ frame go out in REP frames of at most max_frame bytes each: when the
 * reply just written would take the REP past that, what was before it is sealed and sent, and
 * the reply starts the next REP. And the replies to one REQ frame may take at most
 * max_batch_reply bytes (plus the one reply that crosses it): the requests after that are
 * answered ETOOBIG without being run. Without both, a frame of a few kilobytes (300 dict.get of
 * a 1 MB value) could make the broker build one answer of any size. */

static void batch_error(int code, const char *msg) {
    mpb__buf_t *b = &S.out;
    mpb__w_array(b, 3);
    mpb__w_uint(b, 0);
    mpb__w_int(b, code);
    mpb__w_cstr(b, msg);
}

/* The code of the reply dispatch just wrote ([rid, code, ...]). */
static int reply_code(const uint8_t *p, size_t n) {
    if (n < 3) return 0;
    mpb__rd_t r = {p, p + n};
    uint32_t len;
    uint64_t rid, code;
    if (mpb__rd_array(&r, &len) || mpb__rd_uint(&r, &rid) || mpb__rd_uint(&r, &code)) return 0;
    return (int)code;
}

/* Keeps the REP being built in S.out within max_frame, the reply written last starting at at. */
static void out_fit(peer_t *p, size_t at) {
    size_t room = g_limits.max_frame - MPB__MAC_LEN;
    if (S.out.len <= room) return;
    size_t n = S.out.len - at;
    if (at > MPB__HDR_LEN) {
        mpb__buf_reset(&S.spill);
        mpb__w_raw(&S.spill, S.out.p + at, n);
        bbuf_ensure(&S.spill);
        S.out.len = at;
        seal_and_send(p, MPB__T_REP, &S.out);
        out_reset(&S.out);
        mpb__w_raw(&S.out, S.spill.p, n);
        bbuf_ensure(&S.out);
    }
    if (S.out.len > room) {
        /* One reply larger than any frame: only a page of a scan can be, and only when
         * max-value is near max-frame. Its sender hears why instead. */
        mpb__rd_t r = {S.out.p + MPB__HDR_LEN, S.out.p + S.out.len};
        uint32_t len;
        uint64_t rid = 0;
        if (mpb__rd_array(&r, &len) || mpb__rd_uint(&r, &rid)) rid = 0;
        out_reset(&S.out);
        char msg[128];
        snprintf(msg, sizeof msg, "reply of %zu bytes > max_frame %zu", n + MPB__HDR_LEN +
                 MPB__MAC_LEN, g_limits.max_frame);
        mpb__w_array(&S.out, 3);
        mpb__w_uint(&S.out, rid);
        mpb__w_uint(&S.out, (uint64_t)-MPB_ETOOBIG);
        mpb__w_cstr(&S.out, msg);
        bbuf_ensure(&S.out);
    }
}

/* Checks and runs one request of a batch (v, vn: its bytes); its reply, if it has one now,
 * goes to S.out. over_budget: the frame's replies have reached max_batch_reply. */
/* *clock: when the previous request of the frame ended (one clock reading per request). */
/* resend: the frame is one the session sent before (replay.c); what already ran is answered
 * from its reply cache, what is parked stays parked, the rest runs. */
static void run_request(peer_t *p, sess_t *s, const uint8_t *v, size_t vn, bool over_budget,
                        bool resend, int64_t *clock) {
    uint32_t n;
    uint64_t rid = 0, op = 0;
    mpb__rd_t q = {v, v + vn};
    if (mpb__rd_array(&q, &n) || n < 3 || mpb__rd_uint(&q, &rid) || mpb__rd_uint(&q, &op)) {
        batch_error(-MPB_EPROTO, "a request is an array [rid, op, name, args...]");
        return;
    }
    req_t r = {.peer = p, .sess = s, .rid = rid, .op = (unsigned)(op > 0xffff ? 0xffff : op)};
    const char *name;
    uint32_t nl;
    if (mpb__rd_nil(&q) == 0) {
        r.name = NULL;
    } else if (mpb__rd_str(&q, &name, &nl) == 0) {
        r.name = name;
        r.namelen = nl;
    } else {
        r.out = rid ? &S.out : &S.scratch;
        reply_error(&r, MPB_EPROTO, "object name must be a string or nil");
        return;
    }
    if (rid == 0 && op != MPB_OP_PING) {
        /* rid 0 means "no reply"; only a heartbeat may ask for that */
        batch_error(-MPB_EPROTO, "rid 0 is reserved for ping");
        return;
    }
    r.args = q;
    r.argc = n - 3;
    r.raw = v;
    r.rawlen = vn;
    if (rid) {
        r.out = &S.out;
    } else {
        mpb__buf_reset(&S.scratch);
        r.out = &S.scratch;
    }
    if (rid && resend) {
        const blob_t *kept = replay_find(s, rid);
        if (kept) {
            mpb__w_raw(r.out, kept->data, kept->len);
            bbuf_ensure(r.out);
            g_replayed++;
            return;
        }
        if (replay_parked(s, rid)) return; /* its answer goes to the session's new channel */
        if (replay_cacheable(r.op)) {
            reply_error(&r, MPB_EREPLAY,
                        "request %llu already ran, and its reply is no longer kept "
                        "(reply-cache %zu)",
                        (unsigned long long)rid, g_limits.reply_cache);
            return;
        }
    }
    if (rid && over_budget) {
        reply_error(&r, MPB_ETOOBIG,
                    "not run: the replies to its frame reached max_batch_reply %zu",
                    g_limits.max_batch_reply);
        metrics_count(r.op, -MPB_ETOOBIG, 0);
        return;
    }
    size_t before = r.out->len;
    const uint8_t *argp = r.args.p;
    uint64_t sid = r.sess ? r.sess->id : 0;
    dispatch(&r);
    bbuf_ensure(r.out);
    if (rid && !r.parked && p->sess == s)
        replay_note(s, rid, r.op, r.out->p + before, r.out->len - before);
    int64_t t1 = lat_clock_ns();
    /* A parked request is counted when it is answered (waiter.c), with its final code. */
    if (!r.parked) {
        int code = reply_code(r.out->p + before, r.out->len - before);
        metrics_count(r.op, code, (uint64_t)(t1 - *clock));
        slowlog_note(&r, t1 - *clock);
        monitor_note(&r, sid, argp, code, t1 - *clock);
    }
    *clock = t1;
}

static void on_req(peer_t *p, const mpb__frame_t *f, const uint8_t *frame, size_t framelen,
                   int fd) {
    char who[2 * RID_MAX + 1], addr[64];
    unsigned long long unlogged;
    if (!mpb__mac_verify(p->rx, frame, framelen - MPB__MAC_LEN, f->mac)) {
        peer_sample(p, who, sizeof who);
        if (peer_log_ok(fd, who, addr, sizeof addr, &unlogged))
            log_kv(LOG_WARN, "message with a bad MAC dropped", "peer", who, "addr", addr,
                   "not_logged", unlogged ? LOG_UINT(unlogged) : NULL, NULL);
        send_plain_error(p->rid, p->ridlen, -MPB_EAUTH, "message MAC does not verify");
        return;
    }
    uint64_t last = p->seq_in;
    if (mpb__seq_accept(&p->seq_in, f->seq)) {
        peer_sample(p, who, sizeof who);
        if (peer_log_ok(fd, who, addr, sizeof addr, &unlogged))
            log_kv(LOG_WARN, "replayed message dropped", "peer", who, "addr", addr, "seq",
                   LOG_UINT(f->seq), "last", LOG_UINT(last), "not_logged",
                   unlogged ? LOG_UINT(unlogged) : NULL, NULL);
        send_plain_error(p->rid, p->ridlen, -MPB_EREPLAY,
                         "sequence number already seen: replayed message dropped");
        return;
    }
    sess_t *s = p->sess;
    if (!s) {
        send_plain_error(p->rid, p->ridlen, -MPB_ESESSION,
                         "the session of this connection has ended; connect again");
        return;
    }
    /* A client numbers its frames on from one channel to the next: a number the session has
     * seen already is a frame sent again after a cut. */
    bool resend = f->seq <= s->seq_hi;
    if (!resend) s->seq_hi = f->seq;
    s->last_seen_ms = now_ms();
    out_reset(&S.out);
    if (mpb__mp_check(f->body, f->bodylen, MPB__FRAME_DEPTH)) {
        batch_error(-MPB_EPROTO, "malformed msgpack in request batch");
    } else {
        mpb__rd_t rd = {f->body, f->body + f->bodylen};
        size_t spent = 0; /* reply bytes of this frame so far, in every REP */
        int window = 2;   /* the first request goes alone: a lone one would gain nothing */
        int64_t clock = lat_clock_ns();
        while (mpb__rd_more(&rd)) {
            const uint8_t *v;
            size_t vn;
            if (--window == 0) {
                dict_prefetch(rd.p, rd.end, DICT_PREFETCH_MAX);
                window = DICT_PREFETCH_MAX;
            }
            if (mpb__rd_span(&rd, &v, &vn)) { /* cannot happen after the check: say so if it does */
                batch_error(-MPB_EPROTO, "malformed request in batch");
                break;
            }
            size_t at = S.out.len;
            run_request(p, s, v, vn, spent >= g_limits.max_batch_reply, resend, &clock);
            spent += S.out.len - at;
            out_fit(p, at);
            if (!p->sess) break; /* bye */
        }
    }
    if (S.out.len > MPB__HDR_LEN) seal_and_send(p, MPB__T_REP, &S.out);
}

/* fd: the connection's descriptor (ZMQ_SRCFD), for the transport's table. */
static void on_message(const uint8_t *rid, size_t ridlen, const uint8_t *buf, size_t len,
                       int fd) {
    mpb__frame_t f;
    char err[128];
    g_frames_in++;
    g_bytes_in += len;
    int rc = mpb__frame_parse(buf, len, g_limits.max_frame, &f, err, sizeof err);
    if (rc) {
        g_bad_frames++;
        char who[2 * RID_MAX + 1], sample[64], addr[64];
        size_t k = 0;
        for (size_t i = 0; i < ridlen && k + 3 < sizeof who; i++)
            k += (size_t)snprintf(who + k, sizeof who - k, "%02x", rid[i]);
        who[k] = 0;
        unsigned long long unlogged;
        if (peer_log_ok(fd, who, addr, sizeof addr, &unlogged)) {
            k = 0;
            for (size_t i = 0; i < len && i < 24 && k + 3 < sizeof sample; i++)
                k += (size_t)snprintf(sample + k, sizeof sample - k, "%02x", buf[i]);
            sample[k] = 0;
            log_kv(LOG_WARN, "bad frame", "peer", who, "addr", addr, "error", err, "first_bytes",
                   sample, "not_logged", unlogged ? LOG_UINT(unlogged) : NULL, NULL);
        }
        send_plain_error(rid, ridlen, -rc, err);
        return;
    }
    switch (f.type) {
    case MPB__T_HELLO: on_hello(rid, ridlen, &f); return;
    case MPB__T_AUTH: on_auth(rid, ridlen, &f, fd); return;
    case MPB__T_REQ: {
        peer_t *p = peer_find(rid, ridlen);
        if (!p || !p->ready) {
            send_plain_error(rid, ridlen, -MPB_ESESSION,
                             "no session on this connection: say hello first");
            return;
        }
        on_req(p, &f, buf, len, fd);
        return;
    }
    default:
        snprintf(err, sizeof err, "frame type %u is not for the broker", f.type);
        send_plain_error(rid, ridlen, -MPB_EPROTO, err);
    }
}

/* Reads until the socket would block, so one poll wake-up serves every queued message. */
static void drain(void) {
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    for (int i = 0; i < 4096; i++) {
        if (zmq_msg_recv(&id, S.router, ZMQ_DONTWAIT) < 0) break;
        if (!zmq_msg_more(&id) || zmq_msg_recv(&body, S.router, 0) < 0) continue;
        bool extra = zmq_msg_more(&body);
        while (zmq_msg_more(&body) && zmq_msg_recv(&body, S.router, 0) >= 0) {
        }
        size_t ridlen = zmq_msg_size(&id);
        if (ridlen == 0 || ridlen > RID_MAX) continue;
        if (extra) {
            send_plain_error(zmq_msg_data(&id), ridlen, -MPB_EPROTO,
                             "one frame per message expected");
            continue;
        }
        int fd = zmq_msg_get(&body, ZMQ_SRCFD);
        transport_conn_seen(S.tp, fd);
        S.msg_addr = zmq_msg_gets(&body, "Peer-Address"); /* valid while body is */
        on_message(zmq_msg_data(&id), ridlen, zmq_msg_data(&body), zmq_msg_size(&body), fd);
        S.msg_addr = NULL;
    }
    zmq_msg_close(&id);
    zmq_msg_close(&body);
}

/* ---- timers ---- */

static void sweep(int64_t now) {
    for (size_t i = 0; i < S.nbuckets; i++) {
        for (peer_t *p = S.buckets[i], *next; p; p = next) {
            next = p->hnext;
            if (!p->ready && now > p->hs_deadline) {
                char who[2 * RID_MAX + 1];
                peer_sample(p, who, sizeof who);
                log_kv(LOG_INFO, "handshake timed out", "peer", who, NULL);
                peer_free(p);
            } else if (p->ready && !p->sess && !p->nsess_opened) {
                peer_free(p);
            }
        }
    }
    transport_sweep(S.tp, now);
    for (sess_t *s = S.sessions; s; s = s->next)
        if (s->peer && s->peer->out_over) output_check(s->peer);
    for (sess_t *s = S.sessions, *next; s; s = next) {
        next = s->next;
        if (now - s->last_seen_ms > g_limits.session_ttl_ms) {
            g_sessions_expired++;
            sess_end(s, "expired");
        }
    }
    anon_reap(now);
}

/* ---- setup ---- */

static void on_signal(int sig) {
    (void)sig;
    S.stopping = 1;
}

static int write_endpoint_file(const char *path, const char *ep) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "%s\n", ep);
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

int server_main(const config_t *cfg, const uint8_t *authkey, size_t keylen) {
    memset(&S, 0, sizeof S);
    int status = 0;
    S.authkey = authkey;
    S.keylen = keylen;
    S.nbuckets = 1024;
    S.buckets = xcalloc(S.nbuckets, sizeof *S.buckets);
    g_limits = cfg->limits;
    mem_init();
    if (!g_limits.max_batch_reply) g_limits.max_batch_reply = 64u << 20;
    g_started_ms = now_ms();
    if (mpb__hash_init()) abort(); /* before any table: every one hashes client bytes */
    store_init();
    lat_clock_init();
    if (persist_open(cfg->data_dir, cfg->persist, cfg->fsync, cfg->repair) != 0) {
        while (S.sessions) sess_end(S.sessions, "shutdown");
        free(S.buckets);
        store_free();
        pool_free_all();
        return 2;
    }

    S.zctx = zmq_ctx_new();
    zmq_ctx_set(S.zctx, ZMQ_MAX_SOCKETS, 64);
    S.router = zmq_socket(S.zctx, ZMQ_ROUTER);
    int one = 1, zero = 0, hwm = 100000;
    zmq_setsockopt(S.router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(S.router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(S.router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(S.router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    char terr[256];
    /* Frames a little over max_frame still get a clear ETOOBIG; far over it, libzmq drops
     * the connection before buffering them (transport.c sets ZMQ_MAXMSGSIZE). */
    if (!(S.tp = transport_open(S.zctx, S.router, authkey, keylen, terr, sizeof terr))) {
        log_kv(LOG_ERROR, "cannot set up the transport", "error", terr, NULL);
        status = 1;
        goto out;
    }
    for (int i = 0; i < cfg->nlisten; i++) {
        if (transport_bind(S.tp, cfg->listen[i], cfg->encryption) != 0) {
            log_kv(LOG_ERROR, "cannot listen", "endpoint", cfg->listen[i], "error",
                   zmq_strerror(zmq_errno()), NULL);
            status = 1;
            goto out;
        }
        char ep[1024];
        size_t eplen = sizeof ep;
        zmq_getsockopt(S.router, ZMQ_LAST_ENDPOINT, ep, &eplen);
        log_kv(LOG_INFO, "listening", "endpoint", ep, NULL);
        if (i == 0 && cfg->endpoint_file && write_endpoint_file(cfg->endpoint_file, ep)) {
            log_kv(LOG_ERROR, "cannot write the endpoint file", "path", cfg->endpoint_file, NULL);
            status = 1;
            goto out;
        }
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (cfg->http) {
        char err[256];
        S.http = http_start(cfg->http, err, sizeof err);
        if (!S.http) {
            log_kv(LOG_ERROR, "cannot serve HTTP", "addr", cfg->http, "error", err, NULL);
            status = 1;
            goto out;
        }
        log_kv(LOG_INFO, "serving HTTP", "addr", cfg->http, "port", LOG_INT(http_port(S.http)),
               "paths", "/healthz,/readyz,/metrics", NULL);
    }
    S.ready = true;
    log_kv(LOG_INFO, "ready", "version", MPBROKER_VERSION, "pid", LOG_INT(getpid()), NULL);
    S.next_sweep = now_ms() + 100;
    while (!S.stopping) {
        zmq_pollitem_t it[4] = {{S.router, 0, ZMQ_POLLIN, 0}, {NULL, 0, ZMQ_POLLIN, 0},
                                {NULL, 0, ZMQ_POLLIN, 0}, {NULL, -1, ZMQ_POLLIN, 0}};
        transport_sockets(S.tp, &it[1].socket, &it[2].socket);
        int nit = 3;
        int64_t now0 = now_ms();
        int64_t wait = S.next_sweep - now0;
        long wd = waiter_next_ms(now0);
        if (wd >= 0 && wd < wait) wait = wd;
        if (S.http) {
            it[3].fd = http_fd(S.http);
            nit = 4;
            long hd = http_timeout_ms(S.http);
            if (hd >= 0 && hd < wait) wait = hd;
        }
        if (wait < 0) wait = 0;
        if (zmq_poll(it, nit, (long)wait) < 0 && zmq_errno() != EINTR) {
            log_kv(LOG_ERROR, "poll failed", "error", zmq_strerror(zmq_errno()), NULL);
            status = 1;
            break;
        }
        transport_run(S.tp, it[1].revents & ZMQ_POLLIN, it[2].revents & ZMQ_POLLIN);
        if (it[0].revents & ZMQ_POLLIN) drain();
        if (S.http) http_run(S.http);
        int64_t now = now_ms();
        waiter_expire(now);
        if (now >= S.next_sweep) {
            sweep(now);
            mem_tick(now);
            S.next_sweep = now + 100;
            persist_tick(now);
        }
        if (commit_and_send() != 0) {
            /* A write that cannot be logged cannot be promised: stop rather than lie. */
            status = 1;
            break;
        }
    }
    log_kv(LOG_INFO, "shutting down", "sessions", LOG_UINT(S.nsessions), "objects",
           LOG_UINT(store_count()), NULL);
out:
    S.ready = false;
    http_stop(&S.http);
    if (status == 0) commit_and_send();
    /* Closed first: the sessions that the shutdown ends stay in the log, to be resumed. */
    persist_close();
    mpb__buf_free(&held);
    while (S.sessions) sess_end(S.sessions, "shutdown");
    for (size_t i = 0; i < S.nbuckets; i++)
        while (S.buckets[i]) peer_free(S.buckets[i]);
    free(S.buckets);
    transport_close(&S.tp);
    zmq_close(S.router);
    zmq_ctx_term(S.zctx);
    mpb__buf_free(&S.out);
    mpb__buf_free(&S.scratch);
    mpb__buf_free(&S.spill);
    store_free();
    pool_free_all();
    (void)fcntl;
    return status;
}
