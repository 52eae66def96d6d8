/* transport.c - what stands between the network and the loop: the ROUTER's ZeroMQ options,
 * CURVE encryption keyed by the authkey with a ZAP handler that admits only the client key,
 * and a table of the TCP connections (from the socket monitor) that bounds what peers without
 * a session can hold: connections in all, connections of one address without a session, and
 * their memory, each closed at accept when over; and an idle deadline for connections that
 * never get a session. The loop polls the ZAP and monitor sockets (no thread of our own).
 *
 *   accept ──▶ unproven ──[a message through CURVE: ZAP admitted its key]──▶ proven
 *     │                                                  ──[AUTH ok]──▶ session
 *     │ over max-handshakes-per-addr: shut at once; over max-connections or
 *     │ max-unauth-memory: the oldest unproven connection is shut
 *     └ unproven for idle-ms (from accept, or from its session's end): shut
 *
 * Only a peer that holds the key gets a message through CURVE, and the message names its
 * connection (ZMQ_SRCFD), so proven is exact. Under NULL (encryption off) nothing is proven
 * before the session: every connection without one counts against the bounds.
 *
 * libzmq owns the descriptors: "shut" is shutdown(2), after which libzmq reads EOF and
 * closes the connection itself. The monitor reports a connection by its descriptor number,
 * which the kernel reuses; events arrive in order, so a number's DISCONNECTED is always seen
 * before its next ACCEPTED, and the worst a late event can do is shut a newer connection of
 * the same number, which is one still without a session (it retries, as libzmq reconnects). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked (glibc's has not) */
#include <openssl/crypto.h>
#include <zmq.h>

#include "limits.h"
#include "metrics.h"
#include "table.h"
#include "transport.h"

/* What one connection without a session can make libzmq hold besides its message: the
 * engine's read and write batches, the handshake state, the pipe. Measured at about 30 kB. */
#define CONN_OVERHEAD (64u << 10)
#define FD_RESERVE    64 /* descriptors kept for files, the HTTP listener, ZeroMQ's own */
/* An unproven connection is old enough to give way to a new one after EVICT_AGE_MS, or four
 * times what real handshakes have lately taken if that is longer: under a flood of silent peers
 * real handshakes take milliseconds and the floor holds; under a burst of real clients on a
 * slow machine (thousands reconnecting at once) they take longer, and a fixed second would shut
 * each before it finished, every retry, for ever. */
#define EVICT_AGE_MS 1000

typedef struct conn {
    int fd;
    bool open, sess, shut;
    bool proven;             /* a message came through CURVE: it holds the key (never under NULL) */
    bool timed;              /* its handshake's duration is in hs_ms */
    TAILQ_ENTRY(conn) ulink; /* on the unproven list while unproven() */
    uint8_t addr[16];        /* IPv6, or IPv4-mapped; all zero for ipc:// */
    uint16_t port;           /* with addr, names the TCP connection: checked before a shutdown */
    int64_t since_ms;        /* accept, or the end of its session */
} conn_t;

/* Connections without a session, by address (an entry with none is removed). */
typedef struct addr_count {
    uint8_t addr[16];
    uint32_t n;
    UT_hash_handle hh;
} addr_count_t;

struct transport {
    void *router, *zap, *monitor;
    mpb__curve_t keys;
    bool any_curve, any_plain, any_sealed, tcp_curve;
    conn_t **conns; /* by descriptor; each made at its first accept and kept for reuse */
    size_t nconns_cap, nopen, nunauth;
    TAILQ_HEAD(, conn) unproven; /* connections without a session nor the key, oldest first */
    addr_count_t *addrs;         /* uthash by addr */
    size_t max_open, max_unauth, per_peer;
    int64_t hs_ms; /* recent handshakes' duration, a decaying maximum: see EVICT_AGE_MS */
    uint64_t refused, curve_denied, idle_closed;
    int64_t next_log_ms; /* refusals are logged once a second at most, with a count */
    uint64_t unlogged;
    bool crypto_failed; /* a CURVE HELLO failed: the next DISCONNECTED is its connection */
    struct auth_log {   /* failed handshakes: a line per address per second, with a count */
        uint8_t addr[16];
        int64_t last_ms;
        uint64_t unlogged;
    } auth_log[32];
};

uint64_t g_conn_refused, g_conn_idle_closed, g_curve_denied, g_output_closed;

static const char *mode_name(bool curve) {
    return curve ? "curve" : "none";
}

/* ---- descriptors ---- */

/* The soft limit up to the hard one, so the limit we plan with is the one we get. */
static size_t raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            log_kv(MPB_LOG_DEBUG, "descriptor limit raised", "from", LOG_UINT(was), "to",
                   LOG_UINT(rl.rlim_cur), NULL);
        else
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? (size_t)1 << 20 : (size_t)rl.rlim_cur;
}

/* ---- the table ---- */

/* The entry of descriptor fd, or NULL if none was ever accepted there. */
static conn_t *conn_get(const transport_t *t, int fd) {
    return fd >= 0 && (size_t)fd < t->nconns_cap ? t->conns[fd] : NULL;
}

/* The same, made (all zero) if there is none: entries are not moved when the table grows, so
 * the unproven list can link them. */
static conn_t *conn_at(transport_t *t, int fd) {
    if (fd < 0) return NULL;
    if ((size_t)fd >= t->nconns_cap) {
        size_t cap = t->nconns_cap ? t->nconns_cap : 256;
        while (cap <= (size_t)fd)
            cap *= 2;
        t->conns = xrealloc(t->conns, cap * sizeof *t->conns);
        memset(t->conns + t->nconns_cap, 0, (cap - t->nconns_cap) * sizeof *t->conns);
        t->nconns_cap = cap;
    }
    if (!t->conns[fd]) t->conns[fd] = xcalloc(1, sizeof **t->conns);
    return t->conns[fd];
}

static addr_count_t *addr_slot(transport_t *t, const uint8_t addr[16], bool add) {
    addr_count_t *a;
    HASH_FIND(hh, t->addrs, addr, 16, a);
    if (!a && add) {
        a = xcalloc(1, sizeof *a);
        memcpy(a->addr, addr, 16);
        HASH_ADD(hh, t->addrs, addr, 16, a);
    }
    return a;
}

/* Removes one from an address's count; the entry goes with its last. */
static void addr_dec(transport_t *t, const uint8_t addr[16]) {
    addr_count_t *a = addr_slot(t, addr, false);
    if (!a || --a->n) return;
    HASH_DELETE(hh, t->addrs, a);
    free(a);
}

static void unauth_add(transport_t *t, conn_t *c) {
    t->nunauth++;
    addr_count_t *a = addr_slot(t, c->addr, true);
    a->n++;
    TAILQ_INSERT_TAIL(&t->unproven, c, ulink);
}

static void unauth_del(transport_t *t, conn_t *c) {
    t->nunauth--;
    addr_dec(t, c->addr);
    TAILQ_REMOVE(&t->unproven, c, ulink);
}

static void addr_text(const uint8_t a[16], char *out, size_t n) {
    static const uint8_t v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, none[16] = {0};
    if (!memcmp(a, none, 16))
        snprintf(out, n, "unknown"); /* gone before we asked, or ipc */
    else if (!memcmp(a, v4, 12))
        inet_ntop(AF_INET, a + 12, out, (socklen_t)n);
    else
        inet_ntop(AF_INET6, a, out, (socklen_t)n);
}

static void peer_addr(int fd, uint8_t out[16], uint16_t *port) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(out, 0, 16);
    *port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) return;
    if (ss.ss_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        memcpy(out, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
}

/* Whether fd is still the connection c recorded: a monitor event seen late (or one libzmq
 * dropped) must not make us shut a newer connection that got the same descriptor number. */
static bool same_conn(int fd, const conn_t *c) {
    uint8_t a[16];
    uint16_t port;
    peer_addr(fd, a, &port);
    return port == c->port && !memcmp(a, c->addr, 16);
}

/* ipc:// peers have no address (all zero): the socket file's permissions admit them. */
static bool is_local(const uint8_t a[16]) {
    static const uint8_t zero[16] = {0};
    return !memcmp(a, zero, 16);
}

static void shut(transport_t *t, int fd, conn_t *c, const char *why, uint64_t *counter) {
    if (c->shut) return;
    c->shut = true;
    if (!same_conn(fd, c)) return; /* gone already: the table was late */
    shutdown(fd, SHUT_RDWR);
    (*counter)++;
    int64_t now = now_ms();
    t->unlogged++;
    if (now >= t->next_log_ms) {
        char a[INET6_ADDRSTRLEN];
        addr_text(c->addr, a, sizeof a);
        log_kv(MPB_LOG_WARN, "connection closed", "reason", why, "addr", a, "connections",
               LOG_UINT(t->nopen), "without_session", LOG_UINT(t->nunauth), "closed_since_last",
               LOG_UINT(t->unlogged), NULL);
        t->unlogged = 0;
        t->next_log_ms = now + 1000;
    }
}

static bool unproven(const conn_t *c) {
    return c->open && !c->sess && !c->proven;
}

static int64_t evict_age_ms(const transport_t *t) {
    int64_t age = 4 * t->hs_ms;
    if (age > g_limits.handshake_ms) age = g_limits.handshake_ms;
    return age > EVICT_AGE_MS ? age : EVICT_AGE_MS;
}

/* c has just shown the key or got a session: the first time, since its accept, is its
 * handshake (a later session, after one ended, says nothing of handshakes). */
static void handshake_took(transport_t *t, conn_t *c) {
    if (c->timed) return;
    c->timed = true;
    int64_t d = now_ms() - c->since_ms;
    t->hs_ms -= t->hs_ms / 16; /* forgets a slow spell over some dozens of handshakes */
    if (d > t->hs_ms) t->hs_ms = d;
}

static void on_accepted(transport_t *t, int fd) {
    conn_t *c = conn_at(t, fd);
    if (!c) return;
    if (c->open) { /* a DISCONNECTED we never saw: forget the old one */
        if (unproven(c)) unauth_del(t, c);
        t->nopen--;
    }
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->open = true;
    c->since_ms = now_ms();
    peer_addr(fd, c->addr, &c->port);
    t->nopen++;
    addr_count_t *a = addr_slot(t, c->addr, false);
    size_t from_addr = a ? a->n : 0;
    unauth_add(t, c);
    if (from_addr >= g_limits.max_handshakes_per_addr && !is_local(c->addr)) {
        shut(t, fd, c, "max-handshakes-per-addr", &g_conn_refused);
    } else if (t->nopen > t->max_open || t->nunauth > t->max_unauth) {
        /* Over a total: the oldest connection that has shown neither the key nor a session
         * goes, if it has had a second for that: real handshakes take milliseconds, so under
         * a flood of silent or dribbling peers it is one of theirs, and a real client still
         * gets in. Else (a burst of real clients) the new one goes, and libzmq retries it. */
        conn_t *victim = c, *v;
        TAILQ_FOREACH(v, &t->unproven, ulink) {
            if (v->shut) continue;
            if (c->since_ms - v->since_ms >= evict_age_ms(t)) victim = v;
            break;
        }
        shut(t, victim->fd, victim,
             t->nopen > t->max_open ? "max-connections" : "max-unauth-memory", &g_conn_refused);
    }
}

/* One line for a handshake refused for the key, with the peer's address; from one address,
 * a line a second at most, saying how many were not logged since. */
static void log_auth_failure(transport_t *t, const uint8_t addr[16], const char *why) {
    int64_t now = now_ms();
    struct auth_log *e = NULL, *oldest = &t->auth_log[0];
    for (size_t i = 0; i < sizeof t->auth_log / sizeof *t->auth_log; i++) {
        if (!memcmp(t->auth_log[i].addr, addr, 16) && t->auth_log[i].last_ms) {
            e = &t->auth_log[i];
            break;
        }
        if (t->auth_log[i].last_ms < oldest->last_ms) oldest = &t->auth_log[i];
    }
    if (e && now - e->last_ms < 1000) {
        e->unlogged++;
        return;
    }
    uint64_t skipped = e ? e->unlogged : 0;
    if (!e) {
        e = oldest;
        memcpy(e->addr, addr, 16);
    }
    e->last_ms = now;
    e->unlogged = 0;
    char a[INET6_ADDRSTRLEN];
    addr_text(addr, a, sizeof a);
    log_kv(MPB_LOG_WARN, "authentication failed", "addr", a, "reason", why, "not_logged",
           skipped ? LOG_UINT(skipped) : NULL, NULL);
}

static void on_closed(transport_t *t, int fd) {
    conn_t *c = conn_get(t, fd);
    if (!c) return;
    if (t->crypto_failed && c->open) {
        /* libzmq reports a failed handshake and then, next, its connection's close */
        t->crypto_failed = false;
        log_auth_failure(t, c->addr, "its CURVE handshake is not under this authkey");
    }
    if (!c->open) return;
    if (unproven(c)) unauth_del(t, c);
    t->nopen--;
    memset(c, 0, sizeof *c);
    c->fd = fd;
}

void transport_conn_seen(transport_t *t, int fd) {
    conn_t *c = t && t->tcp_curve ? conn_get(t, fd) : NULL;
    if (!c || !unproven(c) || is_local(c->addr)) return; /* ipc:// is never CURVE unless asked */
    unauth_del(t, c);
    handshake_took(t, c);
    c->proven = true;
}

void transport_conn_session(transport_t *t, int fd, bool has) {
    conn_t *c = t ? conn_get(t, fd) : NULL;
    if (!c || !c->open || c->sess == has) return;
    bool was = unproven(c);
    c->sess = has;
    if (!has) c->since_ms = now_ms();
    if (was && !unproven(c)) {
        unauth_del(t, c);
        handshake_took(t, c);
    } else if (!was && unproven(c)) {
        unauth_add(t, c);
    }
}

void transport_sweep(transport_t *t, int64_t now) {
    if (!t) return;
    conn_t *c;
    TAILQ_FOREACH(c, &t->unproven, ulink) {
        if (!c->shut && now - c->since_ms > g_limits.idle_ms)
            shut(t, c->fd, c, "no session within idle-ms", &g_conn_idle_closed);
    }
}

/* ---- the output limit ----
 *
 * ZeroMQ's ROUTER does not say how much waits for one peer, so we ask the kernel what the
 * peer's TCP acknowledged of what we sent: what we handed to libzmq for it since its session
 * began, less that, is what waits in libzmq's pipe, our socket's send buffer and the network
 * (ZeroMQ's framing and CURVE's boxes are acknowledged too, so this counts a little low). A
 * client that reads keeps it near zero whatever it asks for; one that does not read stops
 * acknowledging once its receive buffer is full, and is closed past max-output. */

int64_t transport_acked(int fd) {
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof ti.tcpi_bytes_acked)
        return -1;
    return (int64_t)ti.tcpi_bytes_acked;
}

int transport_output_check(transport_t *t, int fd, uint64_t sent, int64_t acked0, int64_t *seen,
                           int64_t *since_ms, const char *who) {
    conn_t *c = t && g_limits.max_output && acked0 >= 0 ? conn_get(t, fd) : NULL;
    if (!c) return 0;
    int64_t acked = transport_acked(fd);
    if (!c->open || c->shut || acked < 0) return 0;
    uint64_t got = (uint64_t)(acked - acked0);
    uint64_t unread = sent > got ? sent - got : 0;
    if (unread <= g_limits.max_output) return 0;
    int64_t now = now_ms();
    /* One request frame may ask for max-batch-reply at once: past twice max-output plus that,
     * no reading client is catching up. */
    bool hard = unread > 2 * g_limits.max_output + g_limits.max_batch_reply;
    if (!hard && (acked != *seen || !*since_ms)) { /* still reading: catching up a burst */
        *seen = acked;
        *since_ms = now;
        return 1;
    }
    if (!hard && now - *since_ms < 1000) return 1;
    c->shut = true;
    if (!same_conn(fd, c)) return 0;
    shutdown(fd, SHUT_RDWR);
    g_output_closed++;
    char a[INET6_ADDRSTRLEN];
    addr_text(c->addr, a, sizeof a);
    log_kv(MPB_LOG_WARN, "connection closed: its replies went unread past max-output", "peer", who,
           "addr", a, "unread", LOG_UINT(unread), "max_output", LOG_UINT(g_limits.max_output),
           NULL);
    return 2;
}

/* ---- the monitor ---- */

static void monitor_read(transport_t *t) {
    for (int i = 0; i < 1024; i++) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, t->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t event = 0;
        int32_t value = -1;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&value, (uint8_t *)zmq_msg_data(&ev) + 2, 4);
        }
        bool more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        if (more) { /* the endpoint: not needed */
            zmq_msg_init(&addr);
            zmq_msg_recv(&addr, t->monitor, 0);
            zmq_msg_close(&addr);
        }
        switch (event) {
        case ZMQ_EVENT_ACCEPTED: on_accepted(t, value); break;
        case ZMQ_EVENT_DISCONNECTED:
        case ZMQ_EVENT_CLOSED: on_closed(t, value); break;
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            /* Under CURVE, ZAP admitted only the client key of our authkey: the peer has the
             * key, so it is no candidate for eviction, even before the loop reads its HELLO
             * (a burst of real clients evicted after sending it lost it, and waited out their
             * connect timeout). */
            transport_conn_seen(t, value);
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            /* A CURVE HELLO that does not open under our key: a client with another authkey,
             * or a peer that has none. (ZAP refusals are counted in zap_handle.) */
            if ((uint32_t)value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC) {
                g_auth_failures++;
                g_curve_denied++;
                t->crypto_failed = true;
            }
            break;
        case ZMQ_EVENT_ACCEPT_FAILED:
            /* Out of descriptors (EMFILE) despite max-connections: say so, once a second. */
            if (now_ms() >= t->next_log_ms) {
                log_kv(MPB_LOG_WARN, "accept failed", "error", strerror(value), "connections",
                       LOG_UINT(t->nopen), NULL);
                t->next_log_ms = now_ms() + 1000;
            }
            break;
        default: break;
        }
    }
}

/* ---- ZAP (rfc.zeromq.org/spec:27) ---- */

static void zap_reply(void *s, const void *reqid, size_t reqidlen, const char *code,
                      const char *text) {
    zmq_send(s, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(s, reqid, reqidlen, ZMQ_SNDMORE);
    zmq_send(s, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(s, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, "", 0, 0);
}

/* Frames: version, request id, domain, address, identity, mechanism, credentials... */
static void zap_handle(transport_t *t) {
    for (int i = 0; i < 256; i++) {
        zmq_msg_t part[8];
        int n = 0;
        bool more = true;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, t->zap, n ? 0 : ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                if (n == 0) return;
                break;
            }
            more = zmq_msg_more(&m);
            if (n < 8)
                part[n++] = m;
            else
                zmq_msg_close(&m);
        }
        const char *mech = n >= 6 ? zmq_msg_data(&part[5]) : "";
        size_t mechlen = n >= 6 ? zmq_msg_size(&part[5]) : 0;
        bool ok = false;
        char a[64] = "";
        uint8_t bin[16] = {0};
        if (n >= 4)
            snprintf(a, sizeof a, "%.*s", (int)zmq_msg_size(&part[3]),
                     (const char *)zmq_msg_data(&part[3]));
        if (inet_pton(AF_INET, a, bin + 12) == 1)
            bin[10] = bin[11] = 0xff;
        else
            inet_pton(AF_INET6, a, bin);
        if (n >= 7 && mechlen == 5 && !memcmp(mech, "CURVE", 5)) {
            ok = zmq_msg_size(&part[6]) == MPB__CURVE_LEN &&
                 CRYPTO_memcmp(zmq_msg_data(&part[6]), t->keys.client_pub, MPB__CURVE_LEN) == 0;
        } else if (n >= 6 && mechlen == 4 && !memcmp(mech, "NULL", 4)) {
            ok = true; /* only endpoints bound without encryption offer NULL */
        }
        if (n >= 2) {
            zap_reply(t->zap, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ok ? "200" : "400",
                      ok ? "OK" : "not the client key of this authkey");
        }
        if (!ok) {
            g_curve_denied++;
            g_auth_failures++;
            log_auth_failure(t, bin, "its CURVE key is not the client key of this authkey");
        }
        for (int k = 0; k < n; k++)
            zmq_msg_close(&part[k]);
    }
}

/* ---- setup ---- */

static bool wants_curve(const char *endpoint, int enc) {
    if (enc == ENC_ON) return true;
    if (enc == ENC_OFF) return false;
    return strncmp(endpoint, "ipc://", 6) != 0 && strncmp(endpoint, "inproc://", 9) != 0;
}

transport_t *transport_open(void *zctx, void *router, const uint8_t *authkey, size_t keylen,
                            char *err, size_t errlen) {
    transport_t *t = xcalloc(1, sizeof *t);
    t->router = router;
    TAILQ_INIT(&t->unproven);
    if (mpb__curve_keys(authkey, keylen, &t->keys)) {
        snprintf(err, errlen, "cannot derive the CURVE keys");
        goto fail;
    }
    /* The handler must be bound before the first peer can connect: without one, libzmq
     * lets every CURVE client in. */
    t->zap = zmq_socket(zctx, ZMQ_REP);
    int zero = 0;
    if (!t->zap || zmq_setsockopt(t->zap, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_bind(t->zap, "inproc://zeromq.zap.01")) {
        snprintf(err, errlen, "ZAP handler: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zmq_socket_monitor(router, "inproc://mpb.monitor",
                           ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED |
                               ZMQ_EVENT_ACCEPT_FAILED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ||
        !(t->monitor = zmq_socket(zctx, ZMQ_PAIR)) ||
        zmq_setsockopt(t->monitor, ZMQ_LINGER, &zero, sizeof zero) ||
        /* no limit on the events queued for us: a dropped close would leave a stale entry */
        zmq_setsockopt(t->monitor, ZMQ_RCVHWM, &zero, sizeof zero) ||
        zmq_connect(t->monitor, "inproc://mpb.monitor")) {
        snprintf(err, errlen, "socket monitor: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }

    size_t nofile = raise_nofile();
    t->max_open = g_limits.max_connections  ? g_limits.max_connections
                  : nofile > 2 * FD_RESERVE ? nofile - FD_RESERVE
                                            : nofile / 2;
    /* A peer without a session can declare one message up to ZMQ_MAXMSGSIZE and send all
     * but its last byte: that, plus the engine's buffers, is what it can make us hold. */
    int64_t maxmsg = (int64_t)g_limits.max_frame + 65536;
    t->per_peer = (size_t)maxmsg + CONN_OVERHEAD;
    t->max_unauth = g_limits.max_unauth_memory / t->per_peer;
    if (t->max_unauth < 1) t->max_unauth = 1;

    /* No ZeroMQ heartbeat: libzmq keeps its timers in one ordered map and cancels them by a
     * linear search, so a heartbeat timer per connection makes every timer change cost the
     * number of connections (10,000 clients held its I/O thread at 100 % CPU, connecting at
     * 40 a second). Dead peers are found by TCP keepalive, silent ones without a session by
     * idle-ms, and a stopped one with a session by its session's TTL (after which it has no
     * session, and idle-ms closes it). */
    int one = 1, hs = g_limits.handshake_ms, idle = 30, intvl = 10, cnt = 3;
    /* Thousands of clients reconnect at once after a restart or a cut: with libzmq's listen
     * backlog of 100 the kernel drops their SYNs, and each dropped one waits out TCP's SYN
     * backoff (1, 3, 7, 15 s...) before it is even accepted. The kernel caps this at
     * net.core.somaxconn. */
    int backlog = 4096;
    zmq_setsockopt(router, ZMQ_BACKLOG, &backlog, sizeof backlog);
    zmq_setsockopt(router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(router, ZMQ_HANDSHAKE_IVL, &hs, sizeof hs);
    zmq_setsockopt(router, ZMQ_TCP_KEEPALIVE, &one, sizeof one);
    zmq_setsockopt(router, ZMQ_TCP_KEEPALIVE_IDLE, &idle, sizeof idle);
    zmq_setsockopt(router, ZMQ_TCP_KEEPALIVE_INTVL, &intvl, sizeof intvl);
    zmq_setsockopt(router, ZMQ_TCP_KEEPALIVE_CNT, &cnt, sizeof cnt);
    /* With a domain, libzmq asks the handler about NULL peers too (CURVE peers always). */
    zmq_setsockopt(router, ZMQ_ZAP_DOMAIN, "mpb", 3);
    log_kv(MPB_LOG_INFO, "connection limits", "max_connections", LOG_UINT(t->max_open),
           "max_without_session", LOG_UINT(t->max_unauth), "bytes_per_peer_without_session",
           LOG_UINT(t->per_peer), "max_unauth_memory", LOG_UINT(g_limits.max_unauth_memory),
           "max_handshakes_per_addr", LOG_UINT(g_limits.max_handshakes_per_addr), NULL);
    return t;
fail:
    transport_close(&t);
    return NULL;
}

int transport_bind(transport_t *t, const char *endpoint, int enc) {
    bool curve = wants_curve(endpoint, enc);
    if (curve && !zmq_has("curve")) {
        log_kv(MPB_LOG_ERROR, "encryption asked for but this libzmq has no CURVE", "endpoint",
               endpoint, NULL);
        errno = ENOTSUP;
        return -1;
    }
    /* The mechanism options are taken at bind: each endpoint keeps the one set now. */
    int on = curve ? 1 : 0;
    if (curve) {
        zmq_setsockopt(t->router, ZMQ_CURVE_SERVER, &on, sizeof on);
        zmq_setsockopt(t->router, ZMQ_CURVE_SECRETKEY, t->keys.broker_sec, MPB__CURVE_LEN);
    } else {
        zmq_setsockopt(t->router, ZMQ_CURVE_SERVER, &on, sizeof on); /* back to NULL */
    }
    if (zmq_bind(t->router, endpoint) != 0) return -1;
    t->any_curve |= curve;
    t->any_plain |= !curve;
    t->tcp_curve |= curve && !strncmp(endpoint, "tcp://", 6);
    log_kv(MPB_LOG_INFO,
           curve ? "encryption on (ZeroMQ CURVE, keys derived from the authkey)" : "encryption off",
           "endpoint", endpoint, "mechanism", mode_name(curve), NULL);
    return 0;
}

void transport_note_plain(transport_t *t) {
    t->any_plain = true;
}

void transport_note_sealed(transport_t *t) {
    t->any_sealed = true;
}

const char *transport_encryption(const transport_t *t) {
    if (!t) return "none";
    if ((t->any_curve || t->any_sealed) && t->any_plain) return "mixed";
    if (t->any_sealed) return t->any_curve ? "curve, chacha20-poly1305" : "chacha20-poly1305";
    return mode_name(t->any_curve);
}

size_t transport_connections(const transport_t *t) {
    return t ? t->nopen : 0;
}

size_t transport_max_open(const transport_t *t) {
    return t ? t->max_open : 0;
}

void transport_sockets(transport_t *t, void **zap, void **monitor) {
    *zap = t->zap;
    *monitor = t->monitor;
}

void transport_run(transport_t *t, bool zap_ready, bool monitor_ready) {
    if (monitor_ready) monitor_read(t); /* accepts first: ZAP may ask about them */
    if (zap_ready) zap_handle(t);
}

void transport_close(transport_t **tp) {
    transport_t *t = *tp;
    if (!t) return;
    if (t->router) zmq_socket_monitor(t->router, NULL, 0);
    if (t->monitor) zmq_close(t->monitor);
    if (t->zap) zmq_close(t->zap);
    mpb__curve_wipe(&t->keys);
    for (size_t fd = 0; fd < t->nconns_cap; fd++)
        free(t->conns[fd]);
    free(t->conns);
    addr_count_t *a, *next;
    HASH_ITER(hh, t->addrs, a, next) {
        HASH_DELETE(hh, t->addrs, a);
        free(a);
    }
    free(t);
    *tp = NULL;
}
