/* server.c - the broker's one loop: it owns the ROUTER socket and all state. Each inbound
 * message passes the gates in order (size, header, peer, MAC, sequence, msgpack shape) and
 * the first failure is what its sender hears; each request of a batch is dispatched and its
 * reply appended to an outbound REP, sealed and sent when the next reply would not fit in
 * max_frame and at the end of the batch.
 *
 *   client DEALER --[hello]-->  peer (handshake)  --[auth ok]--> peer (ready) <-> session
 *   a session outlives its peer: a client that reconnects proves the key again and resumes. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "anon.h"
#include "commands.h"
#include "handshake.h"
#include "http.h"
#include "mem.h"
#include "metrics.h"
#include "out.h"
#include "persist.h"
#include "pool.h"
#include "replay.h"
#include "reqlog.h"
#include "server.h"
#include "store.h"
#include "stream.h"

typedef struct server {
    void *zctx, *router;
    const char *msg_addr; /* Peer-Address of the message being read (drain), or NULL */
    mpb__buf_t out;       /* the reply batch being built, header space first */
    mpb__buf_t scratch;   /* replies nobody asked for (rid 0) */
    mpb__buf_t spill;     /* the reply that starts the next REP of a batch */
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
    for (const sess_t *s = sess_all(); s; s = LIST_NEXT(s, link))
        n += s->peer != NULL;
    return n;
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

/* ---- requests ----
 *
 * The replies to one REQ frame go out in REP frames of at most max_frame bytes each: when the
 * reply just written would take the REP past that, what was before it is sealed and sent, and
 * the reply starts the next REP. And the replies to one REQ frame may take at most
 * max_batch_reply bytes (plus the one reply that crosses it): the requests after that are
 * answered ETOOBIG without being run. Without both, a frame of a few kilobytes (300 dict.get of
 * a 1 MB value) could make the broker build one answer of any size. */

/* An error about the batch rather than one request of it (rid 0). */
static void batch_error(int code, const char *msg) {
    reply_write_error(&S.out, 0, code, msg);
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
        out_seal_and_send(p, MPB__T_REP, &S.out);
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
        snprintf(msg, sizeof msg, "reply of %zu bytes > max_frame %zu",
                 n + MPB__HDR_LEN + MPB__MAC_LEN, g_limits.max_frame);
        reply_write_error(&S.out, rid, MPB_ETOOBIG, msg);
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
        batch_error(MPB_EPROTO, "a request is an array [rid, op, name, args...]");
        return;
    }
    req_t r = {.peer = p, .sess = s, .rid = rid, .op = (unsigned)(op > 0xffff ? 0xffff : op)};
    if (req_read_name(&r, &q) != 0) {
        r.out = rid ? &S.out : &S.scratch;
        reply_error(&r, MPB_EPROTO, "object name must be a string or nil");
        return;
    }
    if (rid == 0 && op != MPB_OP_PING) {
        /* rid 0 means "no reply"; only a heartbeat may ask for that */
        batch_error(MPB_EPROTO, "rid 0 is reserved for ping");
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
    /* Short of memory, a write is refused before it runs rather than left without a reply,
     * and a reply that could not be built is answered ENOMEM (mem.c). */
    if (mem_reply_headroom(&r) == 0) dispatch(&r);
    mem_reply_check(&r, before);
    int code = r.code;
    bbuf_ensure(r.out);
    if (rid && !r.parked && p->sess == s)
        replay_note(s, rid, r.op, r.out->p + before, r.out->len - before);
    int64_t t1 = lat_clock_ns();
    /* A parked request is counted when it is answered (waiter.c), with its final code. */
    if (!r.parked) {
        metrics_count(r.op, code, (uint64_t)(t1 - *clock));
        reqlog_note(&r, sid, argp, code, t1 - *clock);
    }
    *clock = t1;
}

static void on_req(peer_t *p, const mpb__frame_t *f, const uint8_t *frame, size_t framelen,
                   int fd) {
    char who[2 * RID_MAX + 1], addr[64];
    unsigned long long unlogged;
    if (!mpb__mac_verify(p->rx, frame, framelen - MPB__MAC_LEN, f->mac)) {
        peer_sample(p, who, sizeof who);
        if (peer_log_ok("mac", fd, who, addr, sizeof addr, &unlogged))
            log_kv(MPB_LOG_WARN, "message with a bad MAC dropped", "peer", who, "addr", addr,
                   "not_logged", unlogged ? LOG_UINT(unlogged) : NULL, NULL);
        out_plain_error(p->rid, p->ridlen, -MPB_EAUTH, "message MAC does not verify");
        return;
    }
    uint64_t last = p->seq_in;
    if (mpb__seq_accept(&p->seq_in, f->seq)) {
        peer_sample(p, who, sizeof who);
        if (peer_log_ok("replay", fd, who, addr, sizeof addr, &unlogged))
            log_kv(MPB_LOG_WARN, "replayed message dropped", "peer", who, "addr", addr, "seq",
                   LOG_UINT(f->seq), "last", LOG_UINT(last), "not_logged",
                   unlogged ? LOG_UINT(unlogged) : NULL, NULL);
        out_plain_error(p->rid, p->ridlen, -MPB_EREPLAY,
                        "sequence number already seen: replayed message dropped");
        return;
    }
    sess_t *s = p->sess;
    if (!s) {
        out_plain_error(p->rid, p->ridlen, -MPB_ESESSION,
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
        batch_error(MPB_EPROTO, "malformed msgpack in request batch");
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
                batch_error(MPB_EPROTO, "malformed request in batch");
                break;
            }
            size_t at = S.out.len;
            run_request(p, s, v, vn, spent >= g_limits.max_batch_reply, resend, &clock);
            spent += S.out.len - at;
            out_fit(p, at);
            if (!p->sess) break; /* bye */
        }
    }
    if (S.out.len > MPB__HDR_LEN) out_seal_and_send(p, MPB__T_REP, &S.out);
    mem_buf_trim(&S.out); /* a large page's room is not kept (mem.c) */
}

/* fd: the connection's descriptor (ZMQ_SRCFD), for the transport's table. */
static void on_message(const uint8_t *rid, size_t ridlen, const uint8_t *buf, size_t len, int fd) {
    mpb__frame_t f;
    char err[128];
    g_frames_in++;
    g_bytes_in += len;
    int rc = mpb__frame_parse(buf, len, g_limits.max_frame, &f, err, sizeof err);
    if (rc) {
        g_bad_frames++;
        char who[2 * RID_MAX + 1], sample[64], addr[64];
        rid_hex(rid, ridlen, who, sizeof who);
        unsigned long long unlogged;
        if (peer_log_ok("frame", fd, who, addr, sizeof addr, &unlogged)) {
            if (fd < 0 && S.msg_addr) snprintf(addr, sizeof addr, "%s", S.msg_addr); /* unix:// */
            rid_hex(buf, len < 24 ? len : 24, sample, sizeof sample);
            log_kv(MPB_LOG_WARN, "bad frame", "peer", who, "addr", addr, "error", err,
                   "first_bytes", sample, "not_logged", unlogged ? LOG_UINT(unlogged) : NULL, NULL);
        }
        out_plain_error(rid, ridlen, -rc, err);
        return;
    }
    switch (f.type) {
    case MPB__T_HELLO: handshake_hello(rid, ridlen, &f, S.msg_addr); return;
    case MPB__T_AUTH: handshake_auth(rid, ridlen, &f, fd); return;
    case MPB__T_REQ: {
        peer_t *p = peer_find(rid, ridlen);
        if (!p || !p->ready) {
            out_plain_error(rid, ridlen, -MPB_ESESSION,
                            "no session on this connection: say hello first");
            return;
        }
        on_req(p, &f, buf, len, fd);
        return;
    }
    default:
        snprintf(err, sizeof err, "frame type %u is not for the broker", f.type);
        out_plain_error(rid, ridlen, -MPB_EPROTO, err);
    }
}

static void on_stream_frame(const uint8_t *rid, size_t ridlen, const uint8_t *frame, size_t len,
                            const char *addr) {
    S.msg_addr = addr;
    on_message(rid, ridlen, frame, len, -1);
    S.msg_addr = NULL;
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
        /* An id a peer chose to look like a stream (unix://, mpb://) connection's would reach its
         * peer. */
        if (stream_is_rid(zmq_msg_data(&id), ridlen)) continue;
        if (extra) {
            out_plain_error(zmq_msg_data(&id), ridlen, -MPB_EPROTO,
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

/* Before the loop sleeps, after a turn that read unix:// frames: looks for the next ones for up
 * to spin-us. A local client's next request usually comes within it, and finding the loop
 * awake spares a wake-up, which on small and virtual machines costs more than the request (one
 * client's round trips: 2.7x as many). Not for ZeroMQ's sockets: their messages come through
 * libzmq's I/O thread, whom a spinning loop only takes the CPU from (one tcp:// client: 0.8x).
 * True if there is something to read now. */
static bool spin(void) {
    if (!stream_took_frames() || !g_limits.spin_us) return false;
    int64_t end = now_ns() + (int64_t)g_limits.spin_us * 1000;
    do
        if (stream_ready_now()) return true;
    while (now_ns() < end);
    return false;
}

/* ---- timers ---- */

static void sweep(int64_t now) {
    peer_sweep(now);
    transport_sweep(S.tp, now);
    stream_sweep(now);
    for (sess_t *s = sess_all(); s; s = LIST_NEXT(s, link))
        if (s->peer && s->peer->out_over) out_check(s->peer);
    sess_expire(now);
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
    g_limits = cfg->limits;
    mem_init();
    if (!g_limits.max_batch_reply) g_limits.max_batch_reply = 64u << 20;
    g_started_ms = now_ms();
    if (mpb__hash_init())
        fatal(
            "no randomness for the hash key"); /* before any table: every one hashes client bytes */
    store_init();
    store_on_delete(sess_forget_obj);
    store_on_delete(anon_forget);
    lat_clock_init();
    if (persist_open(cfg->data_dir, cfg->persist, cfg->fsync, cfg->repair) != 0) {
        while (sess_all())
            sess_end(sess_all(), "shutdown");
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
        log_kv(MPB_LOG_ERROR, "cannot set up the transport", "error", terr, NULL);
        status = 1;
        goto out;
    }
    peer_init(S.tp);
    out_init(S.router, S.tp);
    handshake_init(authkey, keylen, S.tp);
    char first[1024] = "";
    for (int i = 0; i < cfg->nlisten; i++) {
        const char *ep = cfg->listen[i];
        char ep_bound[1024];
        bool sealed = !strncmp(ep, "mpb://", 6);
        if (sealed || !strncmp(ep, "unix://", 7)) { /* stream.c's */
            const char *refused = NULL;
            if (sealed && cfg->encryption == ENC_OFF)
                refused = "mpb:// is always encrypted: use --encryption auto or on with it, or "
                          "unix:// for a local socket";
            else if (!sealed && cfg->encryption == ENC_ON)
                refused = "unix:// is not encrypted (the socket file's permissions guard it): "
                          "use --encryption auto or off, or tcp://";
            else if (stream_bind(ep, S.tp, authkey, keylen, ep_bound, sizeof ep_bound, terr,
                                 sizeof terr) != 0)
                refused = terr;
            if (refused) {
                log_kv(MPB_LOG_ERROR, "cannot listen", "endpoint", ep, "error", refused, NULL);
                status = 1;
                goto out;
            }
            if (sealed) {
                transport_note_sealed(S.tp);
                log_kv(MPB_LOG_INFO,
                       "encryption on (X25519 and ChaCha20-Poly1305, keyed by the authkey)",
                       "endpoint", ep_bound, "mechanism", "chacha20-poly1305 (mpb:// stream)",
                       NULL);
            } else {
                transport_note_plain(S.tp);
                log_kv(MPB_LOG_INFO, "encryption off", "endpoint", ep, "mechanism",
                       "none (unix:// stream)", NULL);
            }
        } else {
            if (transport_bind(S.tp, ep, cfg->encryption) != 0) {
                log_kv(MPB_LOG_ERROR, "cannot listen", "endpoint", ep, "error",
                       zmq_strerror(zmq_errno()), NULL);
                status = 1;
                goto out;
            }
            size_t eplen = sizeof ep_bound;
            zmq_getsockopt(S.router, ZMQ_LAST_ENDPOINT, ep_bound, &eplen);
        }
        log_kv(MPB_LOG_INFO, "listening", "endpoint", ep_bound, NULL);
        if (i == 0) snprintf(first, sizeof first, "%s", ep_bound);
    }
    /* Written once every endpoint is bound: whoever waits for it may use any of them. */
    if (cfg->endpoint_file && write_endpoint_file(cfg->endpoint_file, first)) {
        log_kv(MPB_LOG_ERROR, "cannot write the endpoint file", "path", cfg->endpoint_file, NULL);
        status = 1;
        goto out;
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
            log_kv(MPB_LOG_ERROR, "cannot serve HTTP", "addr", cfg->http, "error", err, NULL);
            status = 1;
            goto out;
        }
        log_kv(MPB_LOG_INFO, "serving HTTP", "addr", cfg->http, "port", LOG_INT(http_port(S.http)),
               "paths", "/healthz,/readyz,/metrics", NULL);
    }
    S.ready = true;
    log_kv(MPB_LOG_INFO, "ready", "version", MPBROKER_VERSION, "pid", LOG_INT(getpid()), NULL);
    S.next_sweep = now_ms() + 100;
    while (!S.stopping) {
        zmq_pollitem_t it[5] = {
            {S.router, 0,           ZMQ_POLLIN, 0},
            {NULL,     0,           ZMQ_POLLIN, 0},
            {NULL,     0,           ZMQ_POLLIN, 0},
            {NULL,     stream_fd(), ZMQ_POLLIN, 0},
            {NULL,     -1,          ZMQ_POLLIN, 0}
        };
        transport_sockets(S.tp, &it[1].socket, &it[2].socket);
        int nit = 4;
        int64_t now0 = now_ms();
        int64_t wait = S.next_sweep - now0;
        long wd = waiter_next_ms(now0);
        if (wd >= 0 && wd < wait) wait = wd;
        if (S.http) {
            it[4].fd = http_fd(S.http);
            nit = 5;
            long hd = http_timeout_ms(S.http);
            if (hd >= 0 && hd < wait) wait = hd;
        }
        if (wait < 0) wait = 0;
        if (wait && spin()) wait = 0;
        if (zmq_poll(it, nit, (long)wait) < 0 && zmq_errno() != EINTR) {
            log_kv(MPB_LOG_ERROR, "poll failed", "error", zmq_strerror(zmq_errno()), NULL);
            status = 1;
            break;
        }
        transport_run(S.tp, it[1].revents & ZMQ_POLLIN, it[2].revents & ZMQ_POLLIN);
        if (it[0].revents & ZMQ_POLLIN) drain();
        if (it[3].revents & ZMQ_POLLIN) stream_run(on_stream_frame);
        if (S.http) http_run(S.http);
        int64_t now = now_ms();
        waiter_expire(now);
        if (now >= S.next_sweep) {
            sweep(now);
            mem_tick(now);
            S.next_sweep = now + 100;
            persist_tick(now);
        }
        if (out_commit() != 0) {
            /* A write that cannot be logged cannot be promised: stop rather than lie. */
            status = 1;
            break;
        }
        stream_flush();
    }
    log_kv(MPB_LOG_INFO, "shutting down", "sessions", LOG_UINT(sess_count()), "objects",
           LOG_UINT(store_count()), NULL);
out:
    S.ready = false;
    http_stop(&S.http);
    if (status == 0) out_commit();
    stream_flush();
    /* Closed first: the sessions that the shutdown ends stay in the log, to be resumed. */
    persist_close();
    while (sess_all())
        sess_end(sess_all(), "shutdown");
    peer_free_all();
    stream_close_all();
    transport_close(&S.tp);
    zmq_close(S.router);
    zmq_ctx_term(S.zctx);
    mpb__buf_free(&S.out);
    mpb__buf_free(&S.scratch);
    mpb__buf_free(&S.spill);
    out_free();
    store_free();
    pool_free_all();
    return status;
}
