/* client.c - connecting, the handshake (the broker proves the key first, then we do), sealed
 * request frames, waiting for a reply by request id, and the heartbeat that keeps a session
 * alive while its process computes. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "internal.h"

int64_t mpb__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The same clock to a tick (a few ms), for heartbeat bookkeeping on every send: a fraction of
 * the cost of the precise one. */
int64_t mpb__coarse_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mpb__fail(mpb_client_t *c, int code, const char *fmt, ...) {
    if (!c) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return code;
}

const char *mpb_errmsg(const mpb_client_t *c) {
    if (!c) return "out of memory";
    return c->err[0] ? c->err : "no error";
}

uint64_t mpb_session_id(const mpb_client_t *c) {
    return c ? c->session_id : 0;
}

void mpb_free(void *p) {
    free(p);
}

void mpb_options_init(mpb_options_t *o) {
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->connect_timeout_ms = 5000;
    o->op_timeout_ms = 10000;
    o->name = "";
}

/* ---- what a process shares: its ZeroMQ context, its heartbeat thread ----
 *
 * One context per process, as ZeroMQ advises: its one I/O thread carries every client's
 * socket, instead of a context (and an I/O thread) per client. One heartbeat thread pings the
 * clients that are idle. A forked child inherits neither thread: the atfork handler starts a
 * new generation, so the child makes its own context and inherited clients refuse calls. */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void *g_ctx;
static size_t g_ctx_refs;
static unsigned g_gen;
static mpb_client_t *g_hb_head;
static bool g_hb_running;
static pthread_cond_t g_hb_cv = PTHREAD_COND_INITIALIZER;

static void on_fork_child(void) {
    /* The parent's threads do not exist here; its context is not ours to terminate. */
    pthread_mutex_init(&g_mu, NULL);
    pthread_cond_init(&g_hb_cv, NULL);
    g_ctx = NULL;
    g_ctx_refs = 0;
    g_hb_head = NULL;
    g_hb_running = false;
    g_gen++;
}

static void register_atfork(void) {
    pthread_atfork(NULL, NULL, on_fork_child);
}

static void *ctx_ref(void) {
    pthread_mutex_lock(&g_mu);
    if (!g_ctx) {
        g_ctx = zmq_ctx_new();
        if (g_ctx) {
            /* the default of 1023 sockets would cap the clients one process may have */
            int limit = zmq_ctx_get(g_ctx, ZMQ_SOCKET_LIMIT);
            zmq_ctx_set(g_ctx, ZMQ_MAX_SOCKETS, limit > 65535 ? 65535 : limit);
        }
    }
    void *ctx = g_ctx;
    if (ctx) g_ctx_refs++;
    pthread_mutex_unlock(&g_mu);
    return ctx;
}

static void ctx_unref(void) {
    pthread_mutex_lock(&g_mu);
    void *ctx = NULL;
    if (g_ctx_refs && --g_ctx_refs == 0) {
        ctx = g_ctx;
        g_ctx = NULL;
    }
    pthread_mutex_unlock(&g_mu);
    if (ctx) zmq_ctx_term(ctx); /* every socket of it is closed: returns at once */
}

unsigned mpb__gen(void) {
    return g_gen;
}

int mpb__usable(mpb_client_t *c) {
    if (!c) return MPB_EINVAL;
    if (c->gen != g_gen)
        return mpb__fail(c, MPB_EFORK,
                         "this client was connected by process %d; after fork, call "
                         "mpb_connect() in the child",
                         (int)c->pid);
    if (!c->connected) return mpb__fail(c, MPB_ECONN, "not connected to %s", c->endpoint);
    return 0;
}

int mpb__dup(mpb_client_t *c, const uint8_t *p, size_t n, void **out, size_t *outlen) {
    void *q = malloc(n ? n : 1);
    if (!q) return mpb__fail(c, MPB_ENOMEM, "out of memory copying %zu bytes", n);
    memcpy(q, p, n);
    *out = q;
    if (outlen) *outlen = n;
    return 0;
}

/* ---- frames ---- */

static int send_raw(mpb_client_t *c, const uint8_t *p, size_t n) {
    if (zmq_send(c->sock, p, n, 0) < 0)
        return mpb__fail(c, MPB_ECONN, "send to %s: %s", c->endpoint, zmq_strerror(zmq_errno()));
    c->last_send_ms = mpb__coarse_ms();
    return 0;
}

/* Seals b (header space reserved at its start) with the next sequence number and sends it. */
static int seal_send(mpb_client_t *c, mpb__buf_t *b) {
    mpb__frame_header(b->p, MPB__T_REQ, ++c->seq_out);
    uint8_t mac[MPB__MAC_LEN];
    if (mpb__mac_sign(c->tx, b->p, b->len, mac)) return mpb__fail(c, MPB_ENOMEM, "MAC failed");
    mpb__w_raw(b, mac, sizeof mac);
    if (b->oom) return mpb__fail(c, MPB_ENOMEM, "out of memory building a request");
    if (b->len > c->max_frame)
        return mpb__fail(c, MPB_ETOOBIG, "request of %zu bytes > max_frame %zu", b->len,
                         c->max_frame);
    return send_raw(c, b->p, b->len);
}

/* Receives one message into c->reply within timeout_ms (-1: forever). 0, MPB_ETIMEDOUT. */
static int recv_frame(mpb_client_t *c, long timeout_ms) {
    zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&it, 1, timeout_ms);
    if (rc < 0) {
        if (zmq_errno() == EINTR) return MPB_ETIMEDOUT;
        return mpb__fail(c, MPB_ECONN, "poll: %s", zmq_strerror(zmq_errno()));
    }
    if (rc == 0) return MPB_ETIMEDOUT;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return MPB_ETIMEDOUT;
    }
    mpb__buf_reset(&c->reply);
    mpb__w_raw(&c->reply, zmq_msg_data(&m), zmq_msg_size(&m));
    bool more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    while (more) { /* not ours to have: drop the rest */
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, 0) < 0) more = false;
        else more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    if (c->reply.oom) return mpb__fail(c, MPB_ENOMEM, "out of memory receiving a reply");
    return 0;
}

/* The broker's plain error frame {code, msg} as a call result. */
static int plain_error(mpb_client_t *c, const mpb__frame_t *f) {
    mpb__rd_t m = {f->body, f->body + f->bodylen}, v;
    int64_t code = MPB_EPROTO;
    const char *s = "malformed error from broker";
    uint32_t sl = (uint32_t)strlen(s);
    if (mpb__mp_check(f->body, f->bodylen, 4) == 0) {
        if (mpb__rd_mapget(&m, "code", &v) == 0) mpb__rd_int(&v, &code);
        if (mpb__rd_mapget(&m, "msg", &v) == 0) mpb__rd_str(&v, &s, &sl);
    }
    if (code <= 0 || code > 1000) code = -MPB_EPROTO;
    return mpb__fail(c, (int)-code, "%.*s", (int)sl, s);
}

/* ---- connecting ---- */

static void put_str(mpb__buf_t *b, const char *k, const char *v) {
    mpb__w_cstr(b, k);
    mpb__w_cstr(b, v ? v : "");
}

static int get_bin(mpb__rd_t *map, const char *key, size_t want, const uint8_t **out) {
    mpb__rd_t v;
    uint32_t n;
    if (mpb__rd_mapget(map, key, &v) || mpb__rd_bin(&v, out, &n) || n != want) return -1;
    return 0;
}

static uint64_t map_uint(mpb__rd_t *map, const char *key, uint64_t dflt) {
    mpb__rd_t v;
    uint64_t u;
    if (mpb__rd_mapget(map, key, &v) || mpb__rd_uint(&v, &u)) return dflt;
    return u;
}

/* Waits for a plain or sealed handshake frame of the wanted type. */
static int hs_recv(mpb_client_t *c, int64_t deadline, uint8_t want, mpb__frame_t *f) {
    for (;;) {
        int64_t left = deadline - mpb__now_ms();
        if (left <= 0)
            return mpb__fail(c, MPB_ECONN, "no mpbroker answered at %s within %d ms",
                             c->endpoint, c->opts.connect_timeout_ms);
        int rc = recv_frame(c, (long)left);
        if (rc == MPB_ETIMEDOUT) continue;
        if (rc) return rc;
        char err[128];
        if (mpb__frame_parse(c->reply.p, c->reply.len, SIZE_MAX, f, err, sizeof err))
            return mpb__fail(c, MPB_EPROTO, "handshake with %s: %s", c->endpoint, err);
        if (f->type == MPB__T_ERROR) return plain_error(c, f);
        if (f->type != want) continue;
        if (mpb__mp_check(f->body, f->bodylen, 8))
            return mpb__fail(c, MPB_EPROTO, "handshake with %s: malformed body", c->endpoint);
        return 0;
    }
}

static int handshake(mpb_client_t *c) {
    int64_t deadline = mpb__now_ms() + c->opts.connect_timeout_ms;
    uint8_t nonce_c[MPB__NONCE_LEN], nonce_b[MPB__NONCE_LEN];
    if (mpb__random(nonce_c, sizeof nonce_c)) return mpb__fail(c, MPB_ENOMEM, "no randomness");
    mpb__buf_t b = {0};
    uint8_t hdr[MPB__HDR_LEN];
    mpb__frame_header(hdr, MPB__T_HELLO, 0);
    mpb__w_raw(&b, hdr, sizeof hdr);
    mpb__w_map(&b, 2);
    mpb__w_cstr(&b, "v");
    mpb__w_uint(&b, MPB__PROTO_VERSION);
    mpb__w_cstr(&b, "nonce");
    mpb__w_bin(&b, nonce_c, sizeof nonce_c);
    int rc = b.oom ? mpb__fail(c, MPB_ENOMEM, "out of memory") : send_raw(c, b.p, b.len);
    mpb__frame_t f;
    if (!rc) rc = hs_recv(c, deadline, MPB__T_CHALLENGE, &f);
    const uint8_t *nb, *proof;
    bool broker_ok = false;
    if (!rc) {
        mpb__rd_t m = {f.body, f.body + f.bodylen};
        if (get_bin(&m, "nonce", MPB__NONCE_LEN, &nb) || get_bin(&m, "proof", MPB__PROOF_LEN, &proof))
            rc = mpb__fail(c, MPB_EPROTO, "malformed challenge from %s", c->endpoint);
        else {
            memcpy(nonce_b, nb, sizeof nonce_b);
            broker_ok = mpb__auth_verify(c->authkey, c->keylen, true, nonce_c, nonce_b, proof,
                                         MPB__PROOF_LEN);
        }
    }
    if (!rc) {
        /* Answer even when the broker's proof failed, so its log shows the failure too. */
        uint8_t mine[MPB__PROOF_LEN];
        char host[64] = "";
        gethostname(host, sizeof host - 1);
        if (mpb__auth_proof(c->authkey, c->keylen, false, nonce_c, nonce_b, mine))
            rc = mpb__fail(c, MPB_ENOMEM, "HMAC failed");
        mpb__buf_reset(&b);
        mpb__frame_header(hdr, MPB__T_AUTH, 0);
        mpb__w_raw(&b, hdr, sizeof hdr);
        mpb__w_map(&b, c->session_id ? 5 : 4);
        mpb__w_cstr(&b, "proof");
        mpb__w_bin(&b, mine, sizeof mine);
        put_str(&b, "host", host);
        mpb__w_cstr(&b, "pid");
        mpb__w_int(&b, getpid());
        put_str(&b, "name", c->opts.name);
        if (c->session_id) {
            mpb__w_cstr(&b, "resume");
            mpb__w_map(&b, 2);
            mpb__w_cstr(&b, "id");
            mpb__w_uint(&b, c->session_id);
            mpb__w_cstr(&b, "token");
            mpb__w_bin(&b, c->token, sizeof c->token);
        }
        if (!rc) rc = b.oom ? mpb__fail(c, MPB_ENOMEM, "out of memory") : send_raw(c, b.p, b.len);
    }
    mpb__buf_free(&b);
    if (!rc && !broker_ok)
        return mpb__fail(c, MPB_EAUTH,
                         "authentication failed: the broker at %s holds a different authkey",
                         c->endpoint);
    if (rc) return rc;
    uint8_t c2s[MPB__KEY_LEN], s2c[MPB__KEY_LEN];
    if (mpb__auth_keys(c->authkey, c->keylen, nonce_c, nonce_b, c2s, s2c))
        return mpb__fail(c, MPB_ENOMEM, "key derivation failed");
    mpb__mac_free(&c->tx);
    mpb__mac_free(&c->rx);
    c->tx = mpb__mac_new(c2s);
    c->rx = mpb__mac_new(s2c);
    if (!c->tx || !c->rx) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    c->seq_out = c->seq_in = 0;
    rc = hs_recv(c, deadline, MPB__T_WELCOME, &f);
    if (rc == MPB_EAUTH)
        return mpb__fail(c, MPB_EAUTH, "authentication failed: %s refused this client's authkey",
                         c->endpoint);
    if (rc) return rc;
    if (!mpb__mac_verify(c->rx, c->reply.p, c->reply.len - MPB__MAC_LEN, f.mac))
        return mpb__fail(c, MPB_EAUTH, "welcome from %s does not verify", c->endpoint);
    c->seq_in = f.seq;
    mpb__rd_t m = {f.body, f.body + f.bodylen};
    const uint8_t *tok;
    c->session_id = map_uint(&m, "session", 0);
    if (!c->session_id || get_bin(&m, "token", MPB__TOKEN_LEN, &tok))
        return mpb__fail(c, MPB_EPROTO, "malformed welcome from %s", c->endpoint);
    memcpy(c->token, tok, sizeof c->token);
    c->max_frame = map_uint(&m, "max_frame", 8u << 20);
    c->max_value = map_uint(&m, "max_value", 1u << 20);
    c->max_scan = map_uint(&m, "max_scan", 1000);
    c->heartbeat_ms = (int)map_uint(&m, "heartbeat_ms", 1000);
    c->ttl_ms = (int)map_uint(&m, "ttl_ms", 5000);
    if (c->opts.heartbeat_ms > 0 && c->opts.heartbeat_ms < c->heartbeat_ms)
        c->heartbeat_ms = c->opts.heartbeat_ms;
    c->connected = true;
    return 0;
}

/* ---- heartbeat ---- */

static void send_ping(mpb_client_t *c) {
    uint8_t buf[MPB__HDR_LEN + 8 + MPB__MAC_LEN];
    mpb__buf_t b = {.p = buf, .cap = sizeof buf};
    b.len = MPB__HDR_LEN;
    mpb__w_array(&b, 3);
    mpb__w_uint(&b, 0); /* rid 0: no reply wanted */
    mpb__w_uint(&b, MPB_OP_PING);
    mpb__w_nil(&b);
    mpb__frame_header(b.p, MPB__T_REQ, ++c->seq_out);
    uint8_t mac[MPB__MAC_LEN];
    if (mpb__mac_sign(c->tx, b.p, b.len, mac)) return;
    mpb__w_raw(&b, mac, sizeof mac);
    if (zmq_send(c->sock, b.p, b.len, ZMQ_DONTWAIT) >= 0) c->last_send_ms = mpb__coarse_ms();
}

/* Pings every idle client on the list, then sleeps until the next one is due. A client in a
 * call is skipped (trylock): the call heartbeats while it waits. Lock order is g_mu, then a
 * client's mu, and only by trylock, so a client may take g_mu while holding its own. */
static void *hb_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g_mu);
    while (g_hb_head) {
        int64_t now = mpb__now_ms(), next = now + 1000;
        for (mpb_client_t *c = g_hb_head; c; c = c->hb_next) {
            int64_t due = now + 100; /* busy: look again soon */
            if (pthread_mutex_trylock(&c->mu) == 0) {
                int half = c->heartbeat_ms / 2;
                if (c->connected && now - c->last_send_ms >= half) send_ping(c);
                due = c->last_send_ms + half;
                pthread_mutex_unlock(&c->mu);
            }
            if (due < next) next = due;
        }
        if (next <= now) next = now + 1;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = ts.tv_nsec + (next - now) * 1000000;
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&g_hb_cv, &g_mu, &ts);
    }
    g_hb_running = false; /* the next client to need it starts another */
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

static int hb_add(mpb_client_t *c) {
    int rc = 0;
    pthread_mutex_lock(&g_mu);
    if (!g_hb_running) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, hb_main, NULL) == 0) g_hb_running = true;
        else rc = -1;
        pthread_attr_destroy(&a);
    }
    if (!rc) {
        c->hb_next = g_hb_head;
        if (g_hb_head) g_hb_head->hb_prev = c;
        g_hb_head = c;
        c->hb_on = true;
        pthread_cond_signal(&g_hb_cv);
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

/* After it returns the heartbeat thread no longer touches c. */
static void hb_remove(mpb_client_t *c) {
    if (!c->hb_on) return;
    pthread_mutex_lock(&g_mu);
    if (c->hb_prev) c->hb_prev->hb_next = c->hb_next;
    else g_hb_head = c->hb_next;
    if (c->hb_next) c->hb_next->hb_prev = c->hb_prev;
    c->hb_on = false;
    pthread_cond_signal(&g_hb_cv);
    pthread_mutex_unlock(&g_mu);
}

/* ---- the call path ----
 *
 * Requests are appended to c->out (one frame, coalesced) and remembered by rid in a small
 * table; c->out is sealed and sent by a flush (every synchronous call flushes). Replies are
 * matched by rid: a synchronous call waits for its own, and the callbacks of asynchronous
 * ones run as their replies are read, in whichever call is reading. */

/* Remembered requests: slot = rid & mask (rids are sequential, so the table only grows
 * when more requests are in flight than it has slots). */
static pend_t *pend_slot(mpb_client_t *c, uint64_t rid) {
    if (!c->pcap) return NULL;
    pend_t *p = &c->pend[rid & (c->pcap - 1)];
    return p->rid == rid ? p : NULL;
}

static int pend_add(mpb_client_t *c, uint64_t rid, mpb_callback_t cb, void *arg) {
    if (!c->pcap || c->pend[rid & (c->pcap - 1)].rid) {
        size_t ncap = c->pcap ? c->pcap * 2 : 64;
        for (;;) {
            pend_t *np = calloc(ncap, sizeof *np);
            if (!np) return mpb__fail(c, MPB_ENOMEM, "out of memory");
            bool clash = false;
            for (size_t i = 0; i < c->pcap && !clash; i++) {
                if (!c->pend[i].rid) continue;
                pend_t *d = &np[c->pend[i].rid & (ncap - 1)];
                if (d->rid) clash = true;
                else *d = c->pend[i];
            }
            if (!clash && !np[rid & (ncap - 1)].rid) {
                free(c->pend);
                c->pend = np;
                c->pcap = ncap;
                break;
            }
            free(np);
            ncap *= 2;
        }
    }
    c->pend[rid & (c->pcap - 1)] = (pend_t){rid, cb, arg};
    c->pcount++;
    return 0;
}

mpb__buf_t *mpb__req(mpb_client_t *c, unsigned op, const char *name, size_t namelen,
                     uint32_t argc) {
    pthread_mutex_lock(&c->mu);
    mpb__buf_t *b = &c->out;
    if (c->out_n == 0) {
        mpb__buf_reset(b);
        if (mpb__buf_reserve(b, MPB__HDR_LEN) == 0) b->len = MPB__HDR_LEN;
    }
    c->out_mark = b->len; /* where this request starts, to take it back on failure */
    c->out_n++;
    mpb__w_array(b, 3 + argc);
    mpb__w_uint(b, ++c->next_rid);
    mpb__w_uint(b, op);
    if (name) mpb__w_str(b, name, namelen);
    else mpb__w_nil(b);
    return b;
}

/* Takes the last request out of c->out again (it could not be sent). */
static void unreq(mpb_client_t *c) {
    c->out.len = c->out_mark;
    c->out.oom = false;
    if (--c->out_n == 0) c->out.len = 0;
}

static int flush_locked(mpb_client_t *c) {
    if (!c->out_n) return 0;
    int rc = seal_send(c, &c->out);
    c->out_n = 0;
    mpb__buf_reset(&c->out);
    return rc;
}

/* Receive buffers: a reply's value is read where it arrived, so a buffer stays ours while a
 * callback or the synchronous caller may still look at it; two spares avoid allocating. */
static mpb__buf_t *buf_take(mpb_client_t *c) {
    for (int i = 0; i < 2; i++)
        if (c->spare[i]) {
            mpb__buf_t *b = c->spare[i];
            c->spare[i] = NULL;
            mpb__buf_reset(b);
            return b;
        }
    return calloc(1, sizeof(mpb__buf_t));
}

static void buf_give(mpb_client_t *c, mpb__buf_t *b) {
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
static int recv_into(mpb_client_t *c, mpb__buf_t *b, long timeout_ms) {
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
        if (zmq_msg_recv(&m, c->sock, 0) < 0) more = false;
        else more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    if (b->oom) return mpb__fail(c, MPB_ENOMEM, "out of memory receiving a reply");
    return 0;
}

/* Fails every remembered request (the connection is gone): their callbacks hear why. */
static void fail_all(mpb_client_t *c, int code) {
    char msg[sizeof c->err];
    snprintf(msg, sizeof msg, "%s", c->err);
    for (size_t i = 0; i < c->pcap; i++) {
        pend_t p = c->pend[i];
        if (!p.rid) continue;
        c->pend[i].rid = 0;
        c->pcount--;
        if (p.cb) {
            snprintf(c->err, sizeof c->err, "%s", msg);
            p.cb(c, code, NULL, 0, p.arg);
        }
    }
}

/* Reads frames until the synchronous call `want` (NULL: none) is answered, or one frame has
 * been handled when want is NULL, or the deadline passes; heartbeats while it waits. Returns 0,
 * MPB_ETIMEDOUT, or an error of the connection. Replies to any synchronous call in progress
 * (nested ones included) are copied into its record. */
static int pump(mpb_client_t *c, syncwait_t *want, int64_t deadline) {
    for (;;) {
        long wait = 0;
        if (deadline > 0) { /* 0 and below: do not wait, and read no clock */
            int64_t now = mpb__now_ms();
            int64_t hb_at = c->last_send_ms + c->heartbeat_ms / 2;
            int64_t until = deadline < hb_at ? deadline : hb_at;
            wait = until > now ? (long)(until - now) : 0;
        }
        mpb__buf_t *b = buf_take(c);
        if (!b) return mpb__fail(c, MPB_ENOMEM, "out of memory");
        int rc = recv_into(c, b, wait);
        if (rc == MPB_ETIMEDOUT) {
            buf_give(c, b);
            if (mpb__coarse_ms() - c->last_send_ms >= c->heartbeat_ms / 2) send_ping(c);
            if (deadline <= 0 || mpb__now_ms() >= deadline) return MPB_ETIMEDOUT;
            continue;
        }
        if (rc) {
            buf_give(c, b);
            c->connected = false;
            fail_all(c, rc);
            return rc;
        }
        mpb__frame_t f;
        char err[128];
        if (mpb__frame_parse(b->p, b->len, SIZE_MAX, &f, err, sizeof err)) {
            buf_give(c, b);
            continue; /* not a frame of ours */
        }
        if (f.type == MPB__T_ERROR) {
            rc = plain_error(c, &f);
            buf_give(c, b);
            /* A broker without our session, or a frame it could not verify: nothing in
             * flight will be answered now. */
            c->connected = rc != MPB_ESESSION && rc != MPB_EAUTH && rc != MPB_EREPLAY;
            fail_all(c, rc);
            return rc;
        }
        if (f.type != MPB__T_REP ||
            !mpb__mac_verify(c->rx, b->p, b->len - MPB__MAC_LEN, f.mac) ||
            mpb__mp_check(f.body, f.bodylen, MPB__FRAME_DEPTH) ||
            mpb__seq_accept(&c->seq_in, f.seq)) {
            buf_give(c, b);
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
            while (w && w->rid != rid) w = w->outer;
            if (w) {
                w->done = true;
                w->code = status;
                mpb__buf_reset(&w->val);
                if (!status) mpb__w_raw(&w->val, v, vn);
                if (w->val.oom) w->code = MPB_ENOMEM;
                continue;
            }
            pend_t *p = pend_slot(c, rid);
            if (!p) continue; /* a reply to a call that gave up */
            pend_t copy = *p;
            p->rid = 0;
            c->pcount--;
            if (copy.cb) copy.cb(c, status, status ? NULL : v, status ? 0 : vn, copy.arg);
        }
        buf_give(c, b);
        if (batch_err && want && !want->done) {
            want->done = true;
            want->code = batch_err;
        }
        if (!want || want->done) return 0;
    }
}

int mpb__call(mpb_client_t *c, int block_ms, const uint8_t **val, size_t *vlen) {
    uint64_t rid = c->next_rid;
    int rc = mpb__usable(c);
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
    /* The value stays readable until the next call on c. */
    if (!c->last) c->last = calloc(1, sizeof *c->last);
    if (c->last) {
        mpb__buf_free(c->last);
        *c->last = w.val;
        *val = c->last->p;
        *vlen = c->last->len;
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

int mpb_call(mpb_client_t *c, unsigned op, const char *name, const void *args, size_t argslen,
             int block_ms, void **result, size_t *resultlen) {
    if (!c) return MPB_EINVAL;
    uint32_t argc;
    const void *body;
    size_t bodylen;
    if (put_args(c, args, argslen, &argc, &body, &bodylen)) return MPB_EINVAL;
    mpb__buf_t *b = mpb__req(c, op, name, name ? strlen(name) : 0, argc);
    mpb__w_raw(b, body, bodylen);
    const uint8_t *v;
    size_t vn;
    int rc = mpb__call(c, block_ms, &v, &vn);
    if (rc || !result) return rc;
    return mpb__dup(c, v, vn, result, resultlen);
}

/* ---- asynchronous requests ---- */

int mpb__send(mpb_client_t *c, mpb_callback_t cb, void *arg) {
    uint64_t rid = c->next_rid;
    int rc = mpb__usable(c);
    if (!rc && c->out.oom) rc = mpb__fail(c, MPB_ENOMEM, "out of memory building a request");
    if (!rc) rc = pend_add(c, rid, cb, arg);
    if (rc) {
        unreq(c);
    } else if (c->out.len >= c->autoflush_bytes || c->out_n >= c->autoflush_n) {
        rc = flush_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int mpb_send(mpb_client_t *c, unsigned op, const char *name, const void *args, size_t argslen,
             mpb_callback_t cb, void *arg) {
    if (!c) return MPB_EINVAL;
    uint32_t argc;
    const void *body;
    size_t bodylen;
    if (put_args(c, args, argslen, &argc, &body, &bodylen)) return MPB_EINVAL;
    mpb__buf_t *b = mpb__req(c, op, name, name ? strlen(name) : 0, argc);
    mpb__w_raw(b, body, bodylen);
    return mpb__send(c, cb, arg);
}

int mpb_flush(mpb_client_t *c) {
    if (!c) return MPB_EINVAL;
    pthread_mutex_lock(&c->mu);
    int rc = mpb__usable(c);
    if (!rc) rc = flush_locked(c);
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
        while (!rc && c->pcount) rc = pump(c, NULL, 0);
        if (rc == MPB_ETIMEDOUT) rc = 0;
        if (!rc) rc = (int)(before - c->pcount);
    }
    pthread_mutex_unlock(&c->mu);
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
    if (!c || !c->sock) return -1;
    int fd = -1;
    size_t len = sizeof fd;
    if (zmq_getsockopt(c->sock, ZMQ_FD, &fd, &len) != 0) return -1;
    return fd;
}

/* ---- connect / close ---- */

int mpb_connect(const char *endpoint, const void *authkey, size_t keylen,
                const mpb_options_t *opts, mpb_client_t **out) {
    *out = NULL;
    mpb_client_t *c = calloc(1, sizeof *c);
    if (!c) return MPB_ENOMEM;
    *out = c;
    mpb_options_init(&c->opts);
    if (opts) memcpy(&c->opts, opts, opts->size < sizeof c->opts ? opts->size : sizeof c->opts);
    if (c->opts.connect_timeout_ms <= 0) c->opts.connect_timeout_ms = 5000;
    if (c->opts.op_timeout_ms <= 0) c->opts.op_timeout_ms = 10000;
    c->opts.name = NULL; /* borrowed; not kept */
    pthread_once(&g_once, register_atfork);
    c->pid = getpid();
    c->gen = g_gen;
    c->max_frame = 8u << 20;
    c->heartbeat_ms = 1000;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    /* recursive: a callback run while replies are read may make calls of its own */
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&c->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    c->autoflush_bytes = 64 * 1024;
    c->autoflush_n = 256;
    c->endpoint = strdup(endpoint ? endpoint : "");
    c->authkey = malloc(keylen ? keylen : 1);
    if (!c->endpoint || !c->authkey) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    if (!endpoint || !*endpoint) return mpb__fail(c, MPB_EINVAL, "no endpoint given");
    if (!authkey || !keylen) return mpb__fail(c, MPB_EINVAL, "no authkey given");
    memcpy(c->authkey, authkey, keylen);
    c->keylen = keylen;
    void *ctx = ctx_ref();
    if (!ctx) return mpb__fail(c, MPB_ENOMEM, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    c->sock = zmq_socket(ctx, ZMQ_DEALER);
    if (!c->sock) {
        ctx_unref();
        return mpb__fail(c, MPB_ENOMEM, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    }
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    c->rcvtimeo = -1;
    if (zmq_connect(c->sock, endpoint) != 0)
        return mpb__fail(c, MPB_EINVAL, "bad endpoint '%s': %s (use tcp://HOST:PORT or ipc:///PATH)",
                         endpoint, zmq_strerror(zmq_errno()));
    const char *name = opts && opts->size >= sizeof *opts && opts->name ? opts->name : "";
    c->opts.name = name;
    int rc = handshake(c);
    c->opts.name = NULL;
    if (rc) return rc;
    if (!c->opts.no_heartbeat_thread) {
        if (hb_add(c)) return mpb__fail(c, MPB_ENOMEM, "cannot start the heartbeat thread");
    }
    c->err[0] = 0;
    return 0;
}

void mpb_close(mpb_client_t **cp) {
    mpb_client_t *c = *cp;
    if (!c) return;
    *cp = NULL;
    mpb__anon_detach(c);
    bool mine = c->gen == g_gen;
    if (mine) {
        hb_remove(c);
        if (c->connected) {
            /* End the session now rather than at its TTL: its locks pass on at once. */
            mpb__buf_t *b = mpb__req(c, MPB_OP_BYE, NULL, 0, 0);
            (void)b;
            const uint8_t *v;
            size_t vn;
            int t = c->opts.op_timeout_ms;
            c->opts.op_timeout_ms = 1000;
            mpb__call(c, 0, &v, &vn);
            c->opts.op_timeout_ms = t;
        }
        if (c->sock) {
            zmq_close(c->sock);
            ctx_unref();
        }
        pthread_mutex_destroy(&c->mu);
    }
    /* In a forked child the parent's sockets are left alone: closing them here would disturb
     * the parent's connection, and libzmq's threads do not exist in the child. */
    mpb__mac_free(&c->tx);
    mpb__mac_free(&c->rx);
    if (c->authkey) memset(c->authkey, 0, c->keylen);
    free(c->authkey);
    free(c->endpoint);
    mpb__buf_free(&c->out);
    mpb__buf_free(&c->reply);
    for (int i = 0; i < 2; i++) {
        if (c->spare[i]) mpb__buf_free(c->spare[i]);
        free(c->spare[i]);
    }
    if (c->last) mpb__buf_free(c->last);
    free(c->last);
    free(c->pend);
    if (c->pool_rt) free(*(void **)c->pool_rt); /* its route array is its first member */
    free(c->pool_rt);
    free(c);
}
