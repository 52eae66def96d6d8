/* stream.c - unix:// and mpb:// endpoints. Each protocol frame goes on the socket after its
 * length (u32, big-endian); the loop accepts, reads and writes through one epoll set that it
 * polls beside the ROUTER. A request then wakes the loop directly, and its reply is one
 * write(): a ZeroMQ round trip crosses two I/O threads more, which on small machines costs
 * more than the request itself. On mpb:// (TCP) both sides first send a greeting with an
 * ephemeral key and every frame is then sealed (proto/seal.c, PROTOCOL.md 1.2): a frame that
 * does not open, as every frame of a peer without the authkey, closes the connection.
 *
 * Bounds, as for ZeroMQ connections: a connection counts against max-connections; one without
 * a session may send frames of STREAM_UNPROVEN_FRAME bytes at most, so all of them together
 * hold at most max-unauth-memory (past that the oldest unproven one that has had a second
 * goes, else the new one); one without a session for idle-ms is closed; one whose replies go
 * unread past max-output is closed (its session is kept, as on tcp://). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "addr.h"

#include "limits.h"
#include "mem.h"
#include "metrics.h"
#include "peer.h"
#include "stream.h"
#include "util.h"

#define READ_TURN  ((size_t)256 << 10) /* bytes read from one connection per loop turn */
#define MAX_LISTEN 8

typedef struct sconn {
    uint32_t id;
    int fd;
    uint8_t rid[STREAM_RID_LEN];
    char addr[64];
    mpb__seal_t *seal;   /* mpb://: the keys, once the peer's greeting is in (NULL before) */
    bool tcp;            /* mpb:// */
    bool counted;        /* in its address's count of connections without a session */
    int64_t since_ms;    /* accepted, or last seen with a session: its idle clock */
    int64_t progress_ms; /* the last write that moved, or when output began to wait */
    mpb__buf_t in;       /* bytes read that are not a whole frame yet */
    mpb__buf_t out;      /* frames to write, from out_at */
    size_t out_at;
    uint64_t queued, written;  /* frame bytes admitted (sent, or held for the log) and written */
    bool want_out;             /* EPOLLOUT is asked for */
    bool dead;                 /* closed at the end of the turn; nothing more is read or sent */
    bool dirty;                /* on the flush list */
    STAILQ_ENTRY(sconn) dlink; /* on the flush list, or once dead on the list to close */
    UT_hash_handle hh;         /* by id */
} sconn_t;

static struct {
    int ep; /* the epoll set, -1 before the first bind */
    int lfd[MAX_LISTEN];
    char *lpath[MAX_LISTEN]; /* unix://: the socket file; NULL for mpb:// */
    const void *authkey;
    size_t keylen;
    int nlisten;
    sconn_t *conns;
    struct addrcount *unproven_by_addr; /* mpb:// connections without a session, per host */
    size_t n;
    uint32_t next_id;
    transport_t *tp;
    STAILQ_HEAD(, sconn) dirty;
    STAILQ_HEAD(, sconn) dead; /* closed at the end of the turn */
    bool read_frames;          /* since the last spin: only a busy client is waited for */
} T = {.ep = -1};

/* How many mpb:// connections without a session one host has: past limits_addr_share() a new
 * one is closed at once,
 * so one host cannot fill max-connections with peers that never greet. */
typedef struct addrcount {
    char addr[64];
    size_t n;
    UT_hash_handle hh;
} addrcount_t;

static addrcount_t *addr_entry(const char *addr, bool make) {
    addrcount_t *a;
    HASH_FIND_STR(T.unproven_by_addr, addr, a);
    if (!a && make && (a = calloc(1, sizeof *a))) {
        snprintf(a->addr, sizeof a->addr, "%s", addr);
        HASH_ADD_STR(T.unproven_by_addr, addr, a);
    }
    return a;
}

static void uncount(sconn_t *c) {
    if (!c->counted) return;
    c->counted = false;
    addrcount_t *a = addr_entry(c->addr, false);
    if (a && --a->n == 0) {
        HASH_DEL(T.unproven_by_addr, a);
        free(a);
    }
}

/* epoll data: listener i as i, a connection as its id + MAX_LISTEN */
static sconn_t *conn_by_id(uint32_t id) {
    sconn_t *c;
    HASH_FIND(hh, T.conns, &id, sizeof id, c);
    return c;
}

static sconn_t *conn_by_rid(const uint8_t *rid) {
    uint32_t id = (uint32_t)rid[2] << 24 | (uint32_t)rid[3] << 16 | (uint32_t)rid[4] << 8 | rid[5];
    return conn_by_id(id);
}

static bool proven(const sconn_t *c) {
    const peer_t *p = peer_find(c->rid, STREAM_RID_LEN);
    return p && p->ready && p->sess;
}

/* Marks c for closing at the end of the turn (a frame of it may be in the middle of being
 * handled); why, if not NULL, is logged. */
static void doom(sconn_t *c, const char *why) {
    if (c->dead) return;
    c->dead = true;
    if (c->dirty) STAILQ_REMOVE(&T.dirty, c, sconn, dlink);
    c->dirty = false;
    STAILQ_INSERT_TAIL(&T.dead, c, dlink);
    if (why) {
        char w[2 * STREAM_RID_LEN + 1], key[80];
        unsigned long long unlogged;
        rid_hex(c->rid, STREAM_RID_LEN, w, sizeof w);
        snprintf(key, sizeof key, "stream %s", why);
        if (log_rate_ok(key, &unlogged))
            log_kv(MPB_LOG_WARN, "connection closed", "peer", w, "addr", c->addr, "reason", why,
                   "not_logged", unlogged ? LOG_UINT(unlogged) : NULL, NULL);
    }
}

static void reap(void) {
    sconn_t *c;
    while ((c = STAILQ_FIRST(&T.dead))) {
        STAILQ_REMOVE_HEAD(&T.dead, dlink);
        /* A handshake cut short is over now; a session stays for its client to resume. */
        peer_t *p = peer_find(c->rid, STREAM_RID_LEN);
        if (p && !p->ready) peer_free(p);
        uncount(c);
        close(c->fd); /* leaves the epoll set with it */
        if (c->seal) mpb__seal_free(c->seal);
        free(c->seal);
        HASH_DEL(T.conns, c);
        T.n--;
        mpb__buf_free(&c->in);
        mpb__buf_free(&c->out);
        free(c);
    }
}

int stream_fd(void) {
    return T.ep;
}

size_t stream_count(void) {
    return T.n;
}

static size_t unproven_max(void) {
    size_t m = g_limits.max_unauth_memory / STREAM_UNPROVEN_FRAME;
    return m < 16 ? 16 : m;
}

/* ---- listening ---- */

static int set_up(transport_t *tp, char *err, size_t errlen) {
    if (T.ep >= 0) return 0;
    T.ep = epoll_create1(EPOLL_CLOEXEC);
    if (T.ep < 0) {
        snprintf(err, errlen, "epoll: %s", strerror(errno));
        return -1;
    }
    STAILQ_INIT(&T.dirty);
    STAILQ_INIT(&T.dead);
    T.tp = tp;
    return 0;
}

static int listening(int fd, char *path, char *err, size_t errlen) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)T.nlisten};
    if (epoll_ctl(T.ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        snprintf(err, errlen, "epoll: %s", strerror(errno));
        close(fd);
        if (path) unlink(path);
        return -1;
    }
    T.lfd[T.nlisten] = fd;
    T.lpath[T.nlisten] = path ? strdup(path) : NULL;
    T.nlisten++;
    return 0;
}

/* fd's own address (peer false) or its peer's as text into out, its port into *port: the
 * family, or 0 (out and *port left as they were). */
static int sock_ip(int fd, bool peer, char *out, size_t n, uint16_t *port) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&ss, &sl) != 0) return 0;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t)n);
        *port = ntohs(s6->sin6_port);
    } else if (ss.ss_family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, out, (socklen_t)n);
        *port = ntohs(s4->sin_port);
    }
    return ss.ss_family;
}

/* "mpb://ADDR:PORT": a TCP listener; bound gets the endpoint with the port it has. */
static int bind_tcp(const char *endpoint, char *bound, size_t boundlen, char *err, size_t errlen) {
    addr_t a;
    if (addr_parse(endpoint + 6, &a, err, errlen) != 0) return -1;
    int fd = socket(a.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a.ss, a.len) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    char host[INET6_ADDRSTRLEN] = "";
    uint16_t port = a.port;
    int fam = sock_ip(fd, false, host, sizeof host, &port);
    snprintf(bound, boundlen, fam == AF_INET6 ? "mpb://[%s]:%u" : "mpb://%s:%u", host,
             (unsigned)port);
    return listening(fd, NULL, err, errlen);
}

int stream_bind(const char *endpoint, transport_t *tp, const void *authkey, size_t keylen,
                char *bound, size_t boundlen, char *err, size_t errlen) {
    if (T.nlisten == MAX_LISTEN) {
        snprintf(err, errlen, "at most %d unix:// and mpb:// endpoints", MAX_LISTEN);
        return -1;
    }
    if (set_up(tp, err, errlen)) return -1;
    T.authkey = authkey;
    T.keylen = keylen;
    if (!strncmp(endpoint, "mpb://", 6)) return bind_tcp(endpoint, bound, boundlen, err, errlen);
    snprintf(bound, boundlen, "%s", endpoint);
    const char *path = endpoint + strlen("unix://");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!*path || strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "a unix:// path must have 1 to %zu characters",
                 sizeof sa.sun_path - 1);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        /* A socket file nobody answers on is a broker's that is gone (as libzmq does for
         * ipc://); anything else is not ours to remove. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0) close(probe);
        if (!S_ISSOCK(st.st_mode) || live) {
            snprintf(err, errlen, "%s",
                     live ? "something listens there already (another broker?)"
                          : "the path exists and is not a socket");
            close(fd);
            return -1;
        }
        unlink(path);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return listening(fd, (char *)path, err, errlen);
}

/* Over a limit, the oldest connection without a session goes if it has had a second to
 * show one (a flood of silent peers); else the new one (a burst of real clients retries). */
static void admit(sconn_t *c) {
    size_t open = T.n + transport_connections(T.tp);
    bool over_conn = open > transport_max_open(T.tp);
    if (!over_conn && T.n <= unproven_max()) return; /* no count needed: all are within */
    size_t unproven = 0;
    sconn_t *oldest = NULL, *o, *tmp;
    HASH_ITER(hh, T.conns, o, tmp) {
        if (o->dead || proven(o)) continue;
        unproven++;
        if (o != c && (!oldest || o->since_ms < oldest->since_ms)) oldest = o;
    }
    if (!over_conn && unproven <= unproven_max()) return;
    sconn_t *victim = oldest && c->since_ms - oldest->since_ms >= 1000 ? oldest : c;
    g_conn_refused++;
    doom(victim, over_conn ? "max-connections" : "max-unauth-memory");
}

static void peer_cred(int fd, char *out, size_t n) {
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0)
        snprintf(out, n, ":%u:%u:%d", (unsigned)uc.uid, (unsigned)uc.gid, (int)uc.pid);
    else
        snprintf(out, n, "local");
}

/* mpb://: no delay for small replies, keepalive so that a peer that vanished is closed; over
 * its host's share of connections without a session, refused. Nothing costs a key until the
 * peer has sent a whole greeting. */
static int tcp_start(sconn_t *c) {
    mpb__seal_tcp_opts(c->fd);
    uint16_t port;
    snprintf(c->addr, sizeof c->addr, "?");
    /* the address alone (as libzmq's Peer-Address for tcp://): a host's connections count
     * together */
    sock_ip(c->fd, true, c->addr, sizeof c->addr, &port);
    c->tcp = true;
    addrcount_t *a = addr_entry(c->addr, true);
    if (!a) return -1;
    if (a->n >= limits_addr_share()) {
        unsigned long long unlogged;
        g_conn_refused++;
        if (log_rate_ok("stream addr share", &unlogged))
            log_kv(MPB_LOG_WARN, "connection refused: too many without a session from this address",
                   "addr", c->addr, "open", LOG_UINT(a->n), "max_handshakes_per_addr",
                   LOG_UINT(limits_addr_share()), "not_logged",
                   unlogged ? LOG_UINT(unlogged) : NULL, NULL);
        if (a->n == 0) { /* made just now */
            HASH_DEL(T.unproven_by_addr, a);
            free(a);
        }
        return -1;
    }
    a->n++;
    c->counted = true;
    return 0;
}

/* The peer's greeting is in: ours goes out (before any reply) and the keys are made. */
static int tcp_keys(sconn_t *c, const uint8_t *greeting) {
    uint8_t g[MPB__GREET_LEN];
    mpb__seal_t *s = calloc(1, sizeof *s);
    if (!s || mpb__seal_greet(s, g) || mpb__seal_keys(s, T.authkey, T.keylen, true, greeting) ||
        (mpb__w_raw(&c->out, g, sizeof g), c->out.oom)) {
        if (s) mpb__seal_free(s);
        free(s);
        return -1;
    }
    c->seal = s;
    c->queued += sizeof g; /* as a frame's bytes are: written counts it too */
    if (!c->dirty) {
        c->dirty = true;
        STAILQ_INSERT_TAIL(&T.dirty, c, dlink);
    }
    return 0;
}

static void on_accept(int li) {
    int lfd = T.lfd[li];
    for (int i = 0; i < 256; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                unsigned long long unlogged;
                if (log_rate_ok("stream accept", &unlogged))
                    log_kv(MPB_LOG_WARN, "cannot accept a connection", "error", strerror(errno),
                           "endpoint", T.lpath[li] ? "unix://" : "mpb://", NULL);
            }
            return;
        }
        sconn_t *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        do
            c->id = ++T.next_id;
        while (c->id == 0 || conn_by_id(c->id));
        c->fd = fd;
        c->rid[0] = 0;
        c->rid[1] = 'U';
        c->rid[2] = (uint8_t)(c->id >> 24);
        c->rid[3] = (uint8_t)(c->id >> 16);
        c->rid[4] = (uint8_t)(c->id >> 8);
        c->rid[5] = (uint8_t)c->id;
        c->since_ms = now_ms();
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)c->id + MAX_LISTEN};
        bool tcp = !T.lpath[li];
        if (!tcp) peer_cred(fd, c->addr, sizeof c->addr);
        if ((tcp && tcp_start(c)) || epoll_ctl(T.ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            uncount(c);
            close(fd);
            free(c);
            continue;
        }
        HASH_ADD(hh, T.conns, id, sizeof c->id, c);
        T.n++;
        admit(c);
    }
}

/* ---- reading ---- */

/* Bytes are read here first: the frames whole in a read are handled where they are, and only
 * the start of one that the read cut is kept with its connection (an idle one holds none). */
static uint8_t rbuf[READ_TURN];

/* Handles the whole frames in p[0..n) (opened in place on mpb://); returns the bytes they
 * took (what is left is the start of one), or SIZE_MAX when c was closed. */
static size_t frames(sconn_t *c, uint8_t *p, size_t n, stream_on_frame_t on_frame) {
    size_t at = 0;
    bool ok = proven(c); /* looked up again only while it is not: its AUTH may be in this read */
    size_t tag = c->tcp ? MPB__SEAL_TAG : 0;
    if (c->tcp && !c->seal) {
        if ((n >= 4 && memcmp(p, MPB__GREET_MAGIC, 4)) || (n >= MPB__GREET_LEN && tcp_keys(c, p))) {
            g_bad_frames++;
            doom(c, "not an mpb:// greeting");
            return SIZE_MAX;
        }
        if (!c->seal) return 0; /* the rest of the greeting is to come */
        at = MPB__GREET_LEN;
    }
    while (!c->dead && n - at >= 4) {
        uint8_t *h = p + at;
        size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        if (!ok) ok = proven(c);
        if (len > (ok ? g_limits.max_frame + (64u << 10) : STREAM_UNPROVEN_FRAME) + tag ||
            len < tag) {
            /* As ZeroMQ's maximum message size: a frame far past any limit is not read. */
            g_bad_frames++;
            doom(c, len < tag ? "a frame shorter than its tag"
                    : ok      ? "frame far over max-frame"
                              : "large frame without a session");
            return SIZE_MAX;
        }
        if (n - at < 4 + len) break;
        if (c->seal && mpb__seal_open(c->seal, h, 4 + len)) {
            /* what a peer without the key sends, or bytes changed on the way */
            g_bad_frames++;
            doom(c, ok ? "a frame that does not open (changed on the way?)"
                       : "a frame that does not open (no authkey?)");
            return SIZE_MAX;
        }
        on_frame(c->rid, STREAM_RID_LEN, h + 4, len - tag, c->addr);
        T.read_frames = true;
        at += 4 + len;
    }
    return at;
}

static void on_readable(sconn_t *c, stream_on_frame_t on_frame) {
    size_t got = 0;
    while (got < READ_TURN && !c->dead) {
        ssize_t r = read(c->fd, rbuf, sizeof rbuf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) break;
        if (r <= 0) {
            doom(c, NULL); /* the peer went */
            return;
        }
        got += (size_t)r;
        uint8_t *p = rbuf;
        size_t n = (size_t)r;
        if (c->in.len) { /* the rest of a frame begun before */
            mpb__w_raw(&c->in, rbuf, n);
            p = c->in.p;
            n = c->in.len;
        }
        if (c->in.oom) {
            doom(c, "out of memory reading");
            return;
        }
        size_t used = frames(c, p, n, on_frame);
        if (used == SIZE_MAX) return; /* closed for a length */
        if (p == rbuf) {
            mpb__buf_reset(&c->in);
            mpb__w_raw(&c->in, rbuf + used, n - used);
        } else {
            memmove(c->in.p, c->in.p + used, n - used);
            c->in.len = n - used;
        }
        if (c->in.oom) {
            doom(c, "out of memory reading");
            return;
        }
        if ((size_t)r < sizeof rbuf) break; /* read to the end: epoll says when there is more */
    }
    if (!c->in.len && c->in.cap > (64u << 10)) mpb__buf_free(&c->in);
}

/* ---- writing ---- */

static void want_out(sconn_t *c, bool on) {
    if (c->want_out == on) return;
    c->want_out = on;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.u64 = (uint64_t)c->id + MAX_LISTEN};
    epoll_ctl(T.ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void over_output(sconn_t *c, size_t unread) {
    char w[2 * STREAM_RID_LEN + 1];
    rid_hex(c->rid, STREAM_RID_LEN, w, sizeof w);
    g_output_closed++;
    log_kv(MPB_LOG_WARN, "connection closed: its replies went unread past max-output", "peer", w,
           "addr", c->addr, "unread", LOG_UINT(unread), "max_output", LOG_UINT(g_limits.max_output),
           NULL);
    doom(c, NULL);
}

bool stream_admit(const uint8_t *rid, size_t len) {
    sconn_t *c = conn_by_rid(rid);
    if (!c || c->dead) return false;
    if (c->queued == c->written) c->progress_ms = now_ms(); /* its output starts to wait now */
    c->queued += 4 + len + (c->tcp ? MPB__SEAL_TAG : 0);
    uint64_t pending = c->queued - c->written;
    /* One frame may ask for max-batch-reply at once: past twice max-output plus that, no
     * reading client is catching up. */
    if (g_limits.max_output && pending > 2 * g_limits.max_output + g_limits.max_batch_reply) {
        over_output(c, pending);
        return false;
    }
    return true;
}

void stream_send(const uint8_t *rid, const uint8_t *frame, size_t len) {
    sconn_t *c = conn_by_rid(rid);
    if (!c || c->dead || (c->tcp && !c->seal)) return; /* nothing is sent before the keys */
    size_t tag = c->tcp ? MPB__SEAL_TAG : 0;
    if (mpb__buf_reserve(&c->out, 4 + len + tag)) {
        doom(c, "out of memory for its replies");
        return;
    }
    if (c->seal) {
        if (mpb__seal(c->seal, frame, len, c->out.p + c->out.len)) {
            doom(c, "cannot seal its replies");
            return;
        }
        c->out.len += 4 + len + tag;
    } else {
        uint8_t h[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                        (uint8_t)len};
        mpb__w_raw(&c->out, h, 4);
        mpb__w_raw(&c->out, frame, len);
    }
    g_frames_out++;
    g_bytes_out += len;
    if (!c->dirty) {
        c->dirty = true;
        STAILQ_INSERT_TAIL(&T.dirty, c, dlink);
    }
}

static void write_out(sconn_t *c) {
    while (c->out_at < c->out.len) {
        ssize_t w = write(c->fd, c->out.p + c->out_at, c->out.len - c->out_at);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            want_out(c, true);
            return;
        }
        if (w <= 0) {
            doom(c, NULL);
            return;
        }
        c->out_at += (size_t)w;
        c->written += (uint64_t)w;
        c->progress_ms = now_ms();
    }
    c->out_at = 0;
    mpb__buf_reset(&c->out);
    if (c->out.cap > (64u << 10)) mpb__buf_free(&c->out); /* a burst's room is not kept */
    want_out(c, false);
}

void stream_flush(void) {
    if (T.ep < 0) return;
    sconn_t *c;
    while ((c = STAILQ_FIRST(&T.dirty))) {
        STAILQ_REMOVE_HEAD(&T.dirty, dlink);
        c->dirty = false;
        if (!c->dead) write_out(c);
    }
    reap();
}

void stream_run(stream_on_frame_t on_frame) {
    if (T.ep < 0) return;
    struct epoll_event ev[128];
    int n = epoll_wait(T.ep, ev, 128, 0);
    for (int i = 0; i < n; i++) {
        uint64_t d = ev[i].data.u64;
        if (d < MAX_LISTEN) {
            on_accept((int)d);
            continue;
        }
        sconn_t *c = conn_by_id((uint32_t)(d - MAX_LISTEN));
        if (!c || c->dead) continue;
        if (ev[i].events & EPOLLOUT) write_out(c);
        if (!c->dead && ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c, on_frame);
    }
    reap();
}

/* ---- timers ---- */

void stream_sweep(int64_t now) {
    if (T.ep < 0) return;
    sconn_t *c, *tmp;
    HASH_ITER(hh, T.conns, c, tmp) {
        if (c->dead) continue;
        if (proven(c)) {
            uncount(c);
            c->since_ms = now;
        } else if (g_limits.idle_ms > 0 && now - c->since_ms > g_limits.idle_ms) {
            g_conn_idle_closed++;
            doom(c, "idle without a session");
            continue;
        }
        uint64_t pending = c->queued - c->written;
        if (g_limits.max_output && pending > g_limits.max_output && now - c->progress_ms >= 1000)
            over_output(c, pending);
    }
    reap();
}

bool stream_took_frames(void) {
    bool r = T.read_frames;
    T.read_frames = false;
    return r;
}

bool stream_ready_now(void) {
    struct pollfd pf = {T.ep, POLLIN, 0};
    return T.ep >= 0 && poll(&pf, 1, 0) > 0;
}

void stream_close_all(void) {
    sconn_t *c, *tmp;
    HASH_ITER(hh, T.conns, c, tmp) {
        write_out(c); /* the last replies (a bye's), if there is room for them */
        doom(c, NULL);
    }
    reap();
    for (int i = 0; i < T.nlisten; i++) {
        close(T.lfd[i]);
        if (T.lpath[i]) unlink(T.lpath[i]);
        free(T.lpath[i]);
    }
    T.nlisten = 0;
    if (T.ep >= 0) close(T.ep);
    T.ep = -1;
}
