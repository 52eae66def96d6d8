/* client.c - connecting, the handshake (the broker proves the key first, then we do), sealed
 * request frames, waiting for a reply by request id, and the heartbeat that keeps a session
 * alive while its process computes. */
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

unsigned mpb_reconnects(const mpb_client_t *c) {
    return c ? c->reconnects : 0;
}

void mpb__lock_held(mpb_client_t *c, const char *kind, const char *name, int delta) {
    c->locks_held += delta;
    if (c->locks_held < 0) c->locks_held = 0;
    if (delta > 0) snprintf(c->lock_last, sizeof c->lock_last, "%s/%s", kind, name);
}

void mpb_free(void *p) {
    free(p);
}

void mpb_options_init(mpb_options_t *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->connect_timeout_ms = 5000;
    o->op_timeout_ms = 10000;
    o->name = "";
    o->reconnect_ms = 30000;
    o->reconnect_delay_ms = 50;
    o->reconnect_delay_max_ms = 2000;
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

/* fork() waits for the heartbeat thread to be between rounds: it signs pings (an OpenSSL MAC
 * context, malloc) only while holding g_mu, so with g_mu held across the fork a child never
 * inherits a MAC context or an allocator half-way through an update, and can free both. */
static void on_fork_prepare(void) {
    pthread_mutex_lock(&g_mu);
}

static void on_fork_parent(void) {
    pthread_mutex_unlock(&g_mu);
}

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
    pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
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

/* Seals b (header space reserved at its start) with sequence number seq and sends it. */
static int seal_send_seq(mpb_client_t *c, mpb__buf_t *b, uint64_t seq) {
    mpb__frame_header(b->p, MPB__T_REQ, seq);
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

/* Reads what the socket's monitor said about the encrypted ZeroMQ handshake. A broker that
 * does not encrypt shows as a mechanism mismatch, and we say so at once. One that holds
 * another authkey cannot open our CURVE HELLO and closes the connection, which libzmq retries;
 * but so does a broker at its connection limits (a burst of clients, or a flood), which lets
 * the retry in: so closed handshakes only decide what the timeout reports. */
/* Why a tcp:// connection could not be made: the host does not resolve, or nothing accepts on
 * its port. */
static int connect_failed(mpb_client_t *c) {
    char host[256], port[16];
    const char *h = c->endpoint + 6, *colon = strrchr(h, ':');
    if (!colon || (size_t)(colon - h) >= sizeof host || strlen(colon + 1) >= sizeof port)
        return mpb__fail(c, MPB_ECONN, "cannot connect to %s", c->endpoint);
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = 0;
    snprintf(port, sizeof port, "%s", colon + 1);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* tcp://[::1]:PORT */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (ai) freeaddrinfo(ai);
    if (g)
        return mpb__fail(c, MPB_ECONN, "cannot resolve host '%s' (%s): %s", host, c->endpoint,
                         gai_strerror(g));
    return mpb__fail(c, MPB_ECONN, "connection refused by %s:%s (is mpbrokerd running there?)",
                     host, port);
}

static int hs_monitor(mpb_client_t *c) {
    for (int i = 0; c->mon && i < 64; i++) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            break;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&value, (uint8_t *)zmq_msg_data(&ev) + 2, 4);
        }
        bool more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        if (more) {
            zmq_msg_init(&ev);
            zmq_msg_recv(&ev, c->mon, 0);
            zmq_msg_close(&ev);
        }
        if (event == ZMQ_EVENT_CONNECTED) c->tcp_up = true;
        /* libzmq retries a connection that failed, quietly, until the timeout: before any
         * session exists, nothing listening or a name that does not resolve is final */
        if (event == ZMQ_EVENT_CONNECT_RETRIED && c->fail_fast && !c->tcp_up)
            return connect_failed(c);
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
            value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
            return mpb__fail(c, MPB_ECONN,
                             "the broker at %s does not encrypt this endpoint (--encryption "
                             "off): set MPB_ENCRYPTION=off to match it",
                             c->endpoint);
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
            event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            c->curve_fails++;
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) c->curve_fails = 0;
    }
    return 0;
}

static void hs_monitor_stop(mpb_client_t *c) {
    if (!c->mon) return;
    zmq_socket_monitor(c->sock, NULL, 0);
    zmq_close(c->mon);
    c->mon = NULL;
}

static int hs_monitor_start(mpb_client_t *c, void *ctx) {
    char ep[64];
    static unsigned long n; /* one endpoint per monitor in the process's context */
    snprintf(ep, sizeof ep, "inproc://mpb.client.mon.%d.%lu", (int)getpid(),
             __atomic_add_fetch(&n, 1, __ATOMIC_RELAXED));
    if (zmq_socket_monitor(c->sock, ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_CONNECTED |
                               ZMQ_EVENT_CONNECT_RETRIED))
        return -1;
    if (!(c->mon = zmq_socket(ctx, ZMQ_PAIR)) || zmq_connect(c->mon, ep)) {
        hs_monitor_stop(c);
        return -1;
    }
    return 0;
}

/* Waits for a plain or sealed handshake frame of the wanted type. */
static int hs_recv(mpb_client_t *c, int64_t deadline, uint8_t want, mpb__frame_t *f) {
    for (;;) {
        int mrc = hs_monitor(c);
        if (mrc) return mrc;
        int64_t left = deadline - mpb__now_ms();
        if (left <= 0 && c->curve_fails)
            return mpb__fail(c, MPB_EAUTH,
                             "authentication failed: the broker at %s closed each encrypted "
                             "handshake (%d) for %d ms: it holds a different authkey (or it "
                             "does not encrypt: then set MPB_ENCRYPTION=off; or it refuses "
                             "connections: its log says why)",
                             c->endpoint, c->curve_fails, c->opts.connect_timeout_ms);
        if (left <= 0)
            return mpb__fail(c, MPB_ECONN, "no mpbroker answered at %s within %d ms%s",
                             c->endpoint, c->opts.connect_timeout_ms,
                             c->curve ? " (encryption on: a broker started with --encryption "
                                        "off needs MPB_ENCRYPTION=off)"
                                      : " (encryption off: a broker that encrypts this "
                                        "endpoint needs MPB_ENCRYPTION=on)");
        int rc = recv_frame(c, c->mon && left > 50 ? 50 : (long)left);
        if (rc == MPB_ETIMEDOUT) continue;
        if (rc) return rc;
        char err[128];
        if (mpb__frame_parse(c->reply.p, c->reply.len, SIZE_MAX, f, err, sizeof err))
            return mpb__fail(c, MPB_EPROTO, "handshake with %s: %s", c->endpoint, err);
        if (f->type == MPB__T_ERROR) {
            int code = plain_error(c, f);
            if (code == MPB_ESESSION) continue; /* about a frame of the channel before */
            return code;
        }
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
    /* Our numbering goes on from one channel to the next (the broker tells a resent frame by
     * its number); the broker's starts again with each channel. */
    c->seq_in = 0;
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
    mpb__rd_t rv;
    c->resumed = mpb__rd_mapget(&m, "resumed", &rv) == 0 && mpb__rd_bool(&rv, &c->resumed) == 0 &&
                 c->resumed;
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
static void idle_check(mpb_client_t *c);

static void *hb_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g_mu);
    while (g_hb_head) {
        int64_t now = mpb__now_ms(), next = now + 1000;
        for (mpb_client_t *c = g_hb_head; c; c = c->hb_next) {
            int64_t due = now + 100; /* busy: look again soon */
            if (pthread_mutex_trylock(&c->mu) == 0) {
                int half = c->heartbeat_ms / 2;
                idle_check(c);
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
        c->out_rid_lo = c->next_rid + 1;
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
        if (c->sent[mid].rid_hi < rid) lo = mid + 1;
        else hi = mid;
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

static void sent_clear(mpb_client_t *c) {
    for (size_t i = 0; i < c->nsent; i++) free(c->sent[i].body);
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
        rc = seal_send_seq(c, &c->out, seq);
        if (rc == MPB_ETOOBIG || rc == MPB_ENOMEM) { /* it never left: nothing to resend */
            if (c->nsent && c->sent[c->nsent - 1].seq == seq) free(c->sent[--c->nsent].body);
        }
    }
    c->out_n = 0;
    mpb__buf_reset(&c->out);
    return rc;
}

/* Sends every kept frame again on the new channel, with its own sequence number. */
static int resend(mpb_client_t *c) {
    mpb__buf_t b = {0};
    int rc = 0;
    for (size_t i = 0; i < c->nsent && !rc; i++) {
        mpb__buf_reset(&b);
        if (mpb__buf_reserve(&b, MPB__HDR_LEN) == 0) b.len = MPB__HDR_LEN;
        mpb__w_raw(&b, c->sent[i].body, c->sent[i].len);
        rc = b.oom ? mpb__fail(c, MPB_ENOMEM, "out of memory resending")
                   : seal_send_seq(c, &b, c->sent[i].seq);
    }
    mpb__buf_free(&b);
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
        sent_done(c, p.rid);
        if (p.cb) {
            snprintf(c->err, sizeof c->err, "%s", msg);
            p.cb(c, code, NULL, 0, p.arg);
        }
    }
}

/* ---- connecting again ----
 *
 * A call that hears ESESSION from the broker (it does not know this channel: the connection
 * was cut and remade under us, or the broker restarted) makes a new socket and handshake,
 * asking to resume its session, with backoff and jitter between attempts. Resumed, it resends
 * the kept frames with their numbers, and the broker answers from its reply cache what it
 * had already run; not resumed, everything in flight fails with ESESSION naming what was
 * lost, and the client goes on in its new session. */

static int use_curve(mpb_client_t *c);

static int open_socket(mpb_client_t *c) {
    c->sock = zmq_socket(g_ctx, ZMQ_DEALER); /* ours while c holds its reference */
    if (!c->sock) return mpb__fail(c, MPB_ENOMEM, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    c->rcvtimeo = -1;
    int rc = use_curve(c);
    if (rc) return rc;
    c->tcp_up = false;
    bool tcp = !strncmp(c->endpoint, "tcp://", 6);
    if ((c->curve || (c->fail_fast && tcp)) && hs_monitor_start(c, g_ctx))
        return mpb__fail(c, MPB_ENOMEM, "socket monitor: %s", zmq_strerror(zmq_errno()));
    if (zmq_connect(c->sock, c->endpoint) != 0)
        return mpb__fail(c, MPB_EINVAL,
                         "bad endpoint '%s': %s (use tcp://HOST:PORT or ipc:///PATH)",
                         c->endpoint, zmq_strerror(zmq_errno()));
    return 0;
}

/* A fresh connection on the same socket (so mpb_fd() stays valid): what was queued for the
 * old one, sealed with its keys, is dropped with it. */
static int relink(mpb_client_t *c) {
    zmq_disconnect(c->sock, c->endpoint);
    if (zmq_connect(c->sock, c->endpoint) != 0)
        return mpb__fail(c, MPB_ECONN, "connect %s: %s", c->endpoint, zmq_strerror(zmq_errno()));
    return 0;
}

static void sleep_ms(int64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The session is gone: the calls in flight fail with ESESSION and a message that says what
 * went with it. */
static void lose_session(mpb_client_t *c, uint64_t old) {
    size_t calls = c->pcount;
    for (syncwait_t *w = c->waits; w; w = w->outer) calls += !w->done;
    char locks[400] = "";
    if (c->locks_held == 1) snprintf(locks, sizeof locks, "the lock %s, ", c->lock_last);
    else if (c->locks_held > 1)
        snprintf(locks, sizeof locks, "%d locks (the last one %s), ", c->locks_held,
                 c->lock_last);
    mpb__fail(c, MPB_ESESSION,
              "session %llu ended while this client was cut off from %s (for longer than "
              "its ttl, or the broker restarted without it): lost %s%zu call%s in flight "
              "(parked or unanswered); this client is session %llu now",
              (unsigned long long)old, c->endpoint, locks, calls, calls == 1 ? "" : "s",
              (unsigned long long)c->session_id);
    c->locks_held = 0;
    /* Nobody was waiting to hear it: the next call is told. A loss not told yet is kept as
     * it was (it names what was held then; the session lost after it held nothing). */
    if (calls == 0 && !c->lost_pending) {
        c->lost_pending = true;
        snprintf(c->lost_msg, sizeof c->lost_msg, "%s", c->err);
    }
    for (syncwait_t *w = c->waits; w; w = w->outer) {
        if (w->done) continue;
        w->done = true;
        w->code = MPB_ESESSION;
    }
    char msg[sizeof c->err];
    snprintf(msg, sizeof msg, "%s", c->err);
    fail_all(c, MPB_ESESSION);
    snprintf(c->err, sizeof c->err, "%s", msg);
    sent_clear(c);
}

static int reconnect(mpb_client_t *c) {
    char why[sizeof c->err];
    snprintf(why, sizeof why, "%s", c->err);
    uint64_t old = c->session_id;
    int64_t start = mpb__now_ms();
    int64_t until = start + (c->opts.reconnect_ms > 0 ? c->opts.reconnect_ms : 30000);
    int64_t pause = c->opts.reconnect_delay_ms > 0 ? c->opts.reconnect_delay_ms : 50;
    int64_t pause_max = c->opts.reconnect_delay_max_ms > 0 ? c->opts.reconnect_delay_max_ms : 2000;
    int attempts = 0, rc;
    c->connected = false;
    for (;;) {
        attempts++;
        int64_t left = until - mpb__now_ms();
        int saved = c->opts.connect_timeout_ms;
        if (left < saved) c->opts.connect_timeout_ms = left > 100 ? (int)left : 100;
        rc = relink(c);
        if (!rc) rc = handshake(c);
        c->opts.connect_timeout_ms = saved;
        if (!rc || rc == MPB_EAUTH || rc == MPB_ENOMEM) break;
        uint32_t r = 0;
        mpb__random(&r, sizeof r);
        int64_t nap = pause / 2 + (int64_t)(r % (uint32_t)(pause / 2 + 1));
        if (mpb__now_ms() + nap >= until) {
            c->connected = false;
            return mpb__fail(c, MPB_ECONN,
                             "lost the connection to %s (%s) and could not connect again "
                             "within %lld ms (%d attempts): %s",
                             c->endpoint, why, (long long)(mpb__now_ms() - start), attempts,
                             c->err);
        }
        sleep_ms(nap);
        pause = pause * 2 < pause_max ? pause * 2 : pause_max;
    }
    if (rc) {
        c->connected = false;
        return rc;
    }
    c->reconnects++;
    if (!c->resumed) {
        lose_session(c, old);
        return MPB_ESESSION;
    }
    rc = resend(c);
    if (rc) c->connected = false;
    return rc;
}

/* An idle client (no call, nothing in flight) reads nothing, so the heartbeat thread looks
 * at what came in: an ESESSION answer to its pings means the connection was remade under it
 * (a cut, a restart), and it connects again at once, so that a session which holds a lock
 * and only heartbeats (mpb lock -- CMD) does not run out its TTL after a short cut. Anything
 * else is for no one: every request has been answered or given up. */
static void idle_check(mpb_client_t *c) {
    if (!c->connected || c->pcount || c->waits || c->opts.reconnect_ms < 0) return;
    for (int i = 0; i < 64; i++) {
        mpb__buf_t *b = buf_take(c);
        if (!b) return;
        int rc = recv_into(c, b, 0);
        mpb__frame_t f;
        char err[128];
        bool lost = !rc && !mpb__frame_parse(b->p, b->len, SIZE_MAX, &f, err, sizeof err) &&
                    f.type == MPB__T_ERROR && plain_error(c, &f) == MPB_ESESSION;
        buf_give(c, b);
        if (rc) return;
        if (lost) {
            reconnect(c); /* the outcome is for the next call: c->lost_pending, or ECONN */
            return;
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
            if (rc == MPB_ESESSION && c->opts.reconnect_ms >= 0) {
                /* The broker does not know this channel any more (a cut, a restart): connect
                 * again; what was in flight is sent again or failed there. */
                int64_t t0 = mpb__now_ms();
                rc = reconnect(c);
                if (deadline > 0 && deadline != INT64_MAX) deadline += mpb__now_ms() - t0;
                if (!rc) {
                    if (want && want->done) return 0;
                    continue;
                }
                if (rc == MPB_ESESSION) return want && want->done ? 0 : rc;
            }
            /* A broker without our session, or a frame it could not verify: nothing in
             * flight will be answered now. */
            c->connected = rc != MPB_ESESSION && rc != MPB_EAUTH && rc != MPB_EREPLAY &&
                           rc != MPB_ECONN;
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
            sent_done(c, rid);
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
    if (!rc) rc = told_lost(c);
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

/* CURVE or not, as the options, $MPB_ENCRYPTION and the endpoint say; sets the socket's keys
 * (derived from the authkey) before it connects. */
static int use_curve(mpb_client_t *c) {
    int enc = c->opts.encryption;
    const char *env = getenv("MPB_ENCRYPTION");
    if (enc == MPB_ENCRYPTION_AUTO && env && *env) {
        if (!strcmp(env, "on")) enc = MPB_ENCRYPTION_ON;
        else if (!strcmp(env, "off")) enc = MPB_ENCRYPTION_OFF;
        else if (strcmp(env, "auto"))
            return mpb__fail(c, MPB_EINVAL, "MPB_ENCRYPTION is '%s', not on, off or auto", env);
    }
    if (enc == MPB_ENCRYPTION_AUTO)
        enc = strncmp(c->endpoint, "ipc://", 6) && strncmp(c->endpoint, "inproc://", 9)
                  ? MPB_ENCRYPTION_ON
                  : MPB_ENCRYPTION_OFF;
    else if (enc != MPB_ENCRYPTION_ON && enc != MPB_ENCRYPTION_OFF)
        return mpb__fail(c, MPB_EINVAL, "encryption option %d is not AUTO, ON or OFF", enc);
    c->curve = enc == MPB_ENCRYPTION_ON;
    if (!c->curve) return 0;
    if (!zmq_has("curve"))
        return mpb__fail(c, MPB_EINVAL, "encryption asked for, but this libzmq has no CURVE "
                                        "(MPB_ENCRYPTION=off, with a broker that does not "
                                        "encrypt)");
    mpb__curve_t k;
    if (mpb__curve_keys(c->authkey, c->keylen, &k))
        return mpb__fail(c, MPB_ENOMEM, "CURVE key derivation failed");
    int rc = zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, k.broker_pub, MPB__CURVE_LEN) ||
             zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, k.client_pub, MPB__CURVE_LEN) ||
             zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, k.client_sec, MPB__CURVE_LEN);
    mpb__curve_wipe(&k);
    if (rc) return mpb__fail(c, MPB_ENOMEM, "CURVE keys: %s", zmq_strerror(zmq_errno()));
    return 0;
}

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
    if (!endpoint) endpoint = getenv("MPB_ENDPOINT");
    c->endpoint = strdup(endpoint ? endpoint : "");
    c->authkey = malloc(keylen ? keylen : 1);
    if (!c->endpoint || !c->authkey) return mpb__fail(c, MPB_ENOMEM, "out of memory");
    if (!endpoint || !*endpoint)
        return mpb__fail(c, MPB_EINVAL, "no endpoint given, and MPB_ENDPOINT is not set");
    if (!authkey || !keylen) return mpb__fail(c, MPB_EINVAL, "no authkey given");
    memcpy(c->authkey, authkey, keylen);
    c->keylen = keylen;
    void *ctx = ctx_ref();
    if (!ctx) return mpb__fail(c, MPB_ENOMEM, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    c->ctx_held = true;
    c->fail_fast = true;
    int rc = open_socket(c);
    if (rc) return rc;
    const char *name =
        opts && opts->size >= offsetof(mpb_options_t, name) + sizeof opts->name && opts->name
            ? opts->name
            : "";
    c->opts.name = name;
    rc = handshake(c);
    hs_monitor_stop(c);
    c->fail_fast = false; /* from now on a cut is retried: reconnect_ms says how */
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
        c->opts.reconnect_ms = -1; /* a client that leaves does not come back to say so */
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
            hs_monitor_stop(c);
            zmq_close(c->sock);
        }
        if (c->ctx_held) ctx_unref();
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
    sent_clear(c);
    free(c->sent);
    if (c->pool_rt) free(*(void **)c->pool_rt); /* its route array is its first member */
    free(c->pool_rt);
    free(c);
}
