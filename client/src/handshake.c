/* handshake.c - frames on the socket, the handshake (the broker proves the key first, then we
 * do), and connecting again after a cut: a new socket, the session resumed or lost. */
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
/* ---- frames ---- */

int mpb__send_frame(mpb_client_t *c, const uint8_t *p, size_t n, bool try_only) {
    if (c->ufd >= 0) return mpb__unix_send(c, p, n, try_only);
    if (zmq_send(c->sock, p, n, try_only ? ZMQ_DONTWAIT : 0) < 0)
        return try_only ? 0
                        : mpb__fail(c, MPB_ECONN, "send to %s: %s", c->endpoint,
                                    zmq_strerror(zmq_errno()));
    c->last_send_ms = mpb__coarse_ms();
    return 0;
}

/* Seals b (header space reserved at its start) with sequence number seq and sends it. */
int mpb__seal_send_seq(mpb_client_t *c, mpb__buf_t *b, uint64_t seq) {
    mpb__frame_header(b->p, MPB__T_REQ, seq);
    uint8_t mac[MPB__MAC_LEN];
    if (mpb__mac_sign(c->tx, b->p, b->len, mac)) return mpb__fail(c, MPB_ENOMEM, "MAC failed");
    mpb__w_raw(b, mac, sizeof mac);
    if (b->oom) return mpb__fail(c, MPB_ENOMEM, "out of memory building a request");
    if (b->len > c->max_frame)
        return mpb__fail(c, MPB_ETOOBIG, "request of %zu bytes > max_frame %zu", b->len,
                         c->max_frame);
    return mpb__send_frame(c, b->p, b->len, false);
}

/* Receives one message into c->reply within timeout_ms (-1: forever). 0, MPB_ETIMEDOUT. */
static int recv_frame(mpb_client_t *c, long timeout_ms) {
    return mpb__recv_into(c, &c->reply, timeout_ms);
}

/* The broker's plain error frame {code, msg} as a call result. */
int mpb__plain_error(mpb_client_t *c, const mpb__frame_t *f) {
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
            event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
            event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            c->curve_fails++;
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) c->curve_fails = 0;
    }
    return 0;
}

void mpb__hs_monitor_stop(mpb_client_t *c) {
    if (!c->mon) return;
    zmq_socket_monitor(c->sock, NULL, 0);
    zmq_close(c->mon);
    c->mon = NULL;
}

int mpb__hs_monitor_start(mpb_client_t *c, void *ctx) {
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
        mpb__hs_monitor_stop(c);
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
            return mpb__fail(c, MPB_ECONN, "no mpbroker answered at %s within %d ms%s", c->endpoint,
                             c->opts.connect_timeout_ms,
                             c->curve ? " (encryption on: a broker started with --encryption "
                                        "off needs MPB_ENCRYPTION=off)"
                                      : " (encryption off: a broker that encrypts this "
                                        "endpoint needs MPB_ENCRYPTION=on)");
        if (c->ufd >= 0 && c->ustate != MPB__LINK_UP)
            return mpb__fail(c, MPB_ECONN, "%s closed the connection during the handshake%s",
                             c->endpoint,
                             c->useal ? ": it holds a different authkey (or it refuses "
                                        "connections: its log says why)"
                                      : "");
        int rc = recv_frame(c, c->mon && left > 50 ? 50 : (long)left);
        if (rc == MPB_ETIMEDOUT) continue;
        if (rc) return rc;
        char err[128];
        if (mpb__frame_parse(c->reply.p, c->reply.len, SIZE_MAX, f, err, sizeof err))
            return mpb__fail(c, MPB_EPROTO, "handshake with %s: %s", c->endpoint, err);
        if (f->type == MPB__T_ERROR) {
            int code = mpb__plain_error(c, f);
            if (code == MPB_ESESSION) continue; /* about a frame of the channel before */
            return code;
        }
        if (f->type != want) continue;
        if (mpb__mp_check(f->body, f->bodylen, 8))
            return mpb__fail(c, MPB_EPROTO, "handshake with %s: malformed body", c->endpoint);
        return 0;
    }
}

int mpb__handshake(mpb_client_t *c) {
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
    int rc =
        b.oom ? mpb__fail(c, MPB_ENOMEM, "out of memory") : mpb__send_frame(c, b.p, b.len, false);
    mpb__frame_t f;
    if (!rc) rc = hs_recv(c, deadline, MPB__T_CHALLENGE, &f);
    const uint8_t *nb, *proof;
    bool broker_ok = false;
    if (!rc) {
        mpb__rd_t m = {f.body, f.body + f.bodylen};
        if (get_bin(&m, "nonce", MPB__NONCE_LEN, &nb) ||
            get_bin(&m, "proof", MPB__PROOF_LEN, &proof))
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
        if (!rc)
            rc = b.oom ? mpb__fail(c, MPB_ENOMEM, "out of memory")
                       : mpb__send_frame(c, b.p, b.len, false);
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

/* ---- connecting again ----
 *
 * A call that hears ESESSION from the broker (it does not know this channel: the connection
 * was cut and remade under us, or the broker restarted) makes a new socket and handshake,
 * asking to resume its session, with backoff and jitter between attempts. Resumed, it resends
 * the kept frames with their numbers, and the broker answers from its reply cache what it
 * had already run; not resumed, everything in flight fails with ESESSION naming what was
 * lost, and the client goes on in its new session. */

/* A fresh connection on the same socket (so mpb_fd() stays valid): what was queued for the
 * old one, sealed with its keys, is dropped with it. */
static int relink(mpb_client_t *c) {
    if (mpb__is_stream(c->endpoint)) /* a connection made for this and not used yet serves */
        return c->ustate == MPB__LINK_UP && c->ufresh ? 0 : mpb__unix_connect(c);
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
    for (syncwait_t *w = c->waits; w; w = w->outer)
        calls += !w->done;
    char locks[400] = "";
    if (c->locks_held == 1)
        snprintf(locks, sizeof locks, "the lock %s, ", c->lock_last);
    else if (c->locks_held > 1)
        snprintf(locks, sizeof locks, "%d locks (the last one %s), ", c->locks_held, c->lock_last);
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
    mpb__fail_all(c, MPB_ESESSION);
    snprintf(c->err, sizeof c->err, "%s", msg);
    mpb__sent_clear(c);
}

int mpb__reconnect(mpb_client_t *c) {
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
        if (!rc) rc = mpb__handshake(c);
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
    rc = mpb__resend(c);
    if (rc) c->connected = false;
    return rc;
}

/* An idle client (no call, nothing in flight) reads nothing, so the heartbeat thread looks
 * at what came in: an ESESSION answer to its pings means the connection was remade under it
 * (a cut, a restart), and it connects again at once, so that a session which holds a lock
 * and only heartbeats (mpb lock -- CMD) does not run out its TTL after a short cut. Anything
 * else is for no one: every request has been answered or given up. */
/* One try to connect a stream endpoint again, from the heartbeat thread: mpb:// may wait on a
 * host that does not answer, and this thread pings every client of the process, so it waits
 * a second at most. */
static bool idle_connect(mpb_client_t *c) {
    int saved = c->opts.connect_timeout_ms;
    if (saved <= 0 || saved > 1000) c->opts.connect_timeout_ms = 1000;
    c->uno_resolve = true;
    int rc = mpb__unix_connect(c);
    c->uno_resolve = false;
    c->opts.connect_timeout_ms = saved;
    return rc == 0;
}

void mpb__idle_check(mpb_client_t *c) {
    if (!c->connected || c->pcount || c->waits || c->opts.reconnect_ms < 0) return;
    if (c->ufd >= 0 && c->ustate != MPB__LINK_UP) {
        /* unix://, mpb://: the end of the stream is heard at once, also while the broker is away.
         * One try per look (this thread pings every client of the process): the session is
         * resumed once one connects. */
        if (idle_connect(c)) mpb__reconnect(c);
        return;
    }
    for (int i = 0; i < 64; i++) {
        mpb__buf_t *b = mpb__buf_take(c);
        if (!b) return;
        int rc = mpb__recv_into(c, b, 0);
        mpb__frame_t f;
        char err[128];
        bool lost = !rc && !mpb__frame_parse(b->p, b->len, SIZE_MAX, &f, err, sizeof err) &&
                    f.type == MPB__T_ERROR && mpb__plain_error(c, &f) == MPB_ESESSION;
        mpb__buf_give(c, b);
        if (rc) return;
        if (lost) { /* the outcome is for the next call: c->lost_pending, or ECONN */
            if (c->ufd < 0 || idle_connect(c)) mpb__reconnect(c); /* one try, as above */
            return;
        }
    }
}

/* Reads frames until the synchronous call `want` (NULL: none) is answered, or one frame has
 * been handled when want is NULL, or the deadline passes; heartbeats while it waits. Returns 0,
 * MPB_ETIMEDOUT, or an error of the connection. Replies to any synchronous call in progress
 * (nested ones included) are copied into its record. */
