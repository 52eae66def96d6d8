/* client.c - the client handle: connecting and closing it, what a process shares (its ZeroMQ
 * context, the fork generation) and the heartbeat that keeps a session alive while its
 * process computes. The handshake is in handshake.c, requests and replies in call.c. */
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

static pthread_mutex_t proc_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t proc_once = PTHREAD_ONCE_INIT;
static void *proc_ctx;
static size_t proc_ctx_refs;
static unsigned proc_gen;
static LIST_HEAD(, mpb_client) hb_list = LIST_HEAD_INITIALIZER(hb_list);
static bool hb_running;
static pthread_cond_t hb_cv = PTHREAD_COND_INITIALIZER;

/* fork() waits for the heartbeat thread to be between rounds: it signs pings (an OpenSSL MAC
 * context, malloc) only while holding proc_mu, so with proc_mu held across the fork a child never
 * inherits a MAC context or an allocator half-way through an update, and can free both. */
static void on_fork_prepare(void) {
    pthread_mutex_lock(&proc_mu);
}

static void on_fork_parent(void) {
    pthread_mutex_unlock(&proc_mu);
}

static void on_fork_child(void) {
    /* The parent's threads do not exist here; its context is not ours to terminate. */
    pthread_mutex_init(&proc_mu, NULL);
    pthread_cond_init(&hb_cv, NULL);
    proc_ctx = NULL;
    proc_ctx_refs = 0;
    LIST_INIT(&hb_list);
    hb_running = false;
    proc_gen++;
}

static void register_atfork(void) {
    pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
}

static void *ctx_ref(void) {
    pthread_mutex_lock(&proc_mu);
    if (!proc_ctx) {
        proc_ctx = zmq_ctx_new();
        if (proc_ctx) {
            /* the default of 1023 sockets would cap the clients one process may have */
            int limit = zmq_ctx_get(proc_ctx, ZMQ_SOCKET_LIMIT);
            zmq_ctx_set(proc_ctx, ZMQ_MAX_SOCKETS, limit > 65535 ? 65535 : limit);
        }
    }
    void *ctx = proc_ctx;
    if (ctx) proc_ctx_refs++;
    pthread_mutex_unlock(&proc_mu);
    return ctx;
}

static void ctx_unref(void) {
    pthread_mutex_lock(&proc_mu);
    void *ctx = NULL;
    if (proc_ctx_refs && --proc_ctx_refs == 0) {
        ctx = proc_ctx;
        proc_ctx = NULL;
    }
    pthread_mutex_unlock(&proc_mu);
    if (ctx) zmq_ctx_term(ctx); /* every socket of it is closed: returns at once */
}

unsigned mpb__gen(void) {
    return proc_gen;
}

int mpb__usable(mpb_client_t *c) {
    if (!c) return MPB_EINVAL;
    if (c->gen != proc_gen)
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

/* ---- heartbeat ---- */

int64_t mpb__ping_if_due(mpb_client_t *c, int64_t now) {
    int half = c->heartbeat_ms / 2;
    if (c->connected && now - c->last_send_ms >= half) mpb__send_ping(c);
    return c->last_send_ms + half;
}

void mpb__send_ping(mpb_client_t *c) {
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
    mpb__send_frame(c, b.p, b.len, true);
}

/* Pings every idle client on the list, then sleeps until the next one is due. A client in a
 * call is skipped (trylock): the call heartbeats while it waits. Lock order is proc_mu, then a
 * client's mu, and only by trylock, so a client may take proc_mu while holding its own. */

static void *hb_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&proc_mu);
    while (!LIST_EMPTY(&hb_list)) {
        int64_t now = mpb__now_ms(), next = now + 1000;
        mpb_client_t *c;
        LIST_FOREACH(c, &hb_list, hb_link) {
            int64_t due = now + 100; /* busy: look again soon */
            if (pthread_mutex_trylock(&c->mu) == 0) {
                mpb__idle_check(c);
                due = mpb__ping_if_due(c, now);
                mpb__cb_kick(c); /* the send may have taken the wake-up of a reply */
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
        pthread_cond_timedwait(&hb_cv, &proc_mu, &ts);
    }
    hb_running = false; /* the next client to need it starts another */
    pthread_mutex_unlock(&proc_mu);
    return NULL;
}

static int hb_add(mpb_client_t *c) {
    int rc = 0;
    pthread_mutex_lock(&proc_mu);
    if (!hb_running) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, hb_main, NULL) == 0)
            hb_running = true;
        else
            rc = -1;
        pthread_attr_destroy(&a);
    }
    if (!rc) {
        LIST_INSERT_HEAD(&hb_list, c, hb_link);
        c->hb_on = true;
        pthread_cond_signal(&hb_cv);
    }
    pthread_mutex_unlock(&proc_mu);
    return rc;
}

/* After it returns the heartbeat thread no longer touches c. */
static void hb_remove(mpb_client_t *c) {
    if (!c->hb_on) return;
    pthread_mutex_lock(&proc_mu);
    LIST_REMOVE(c, hb_link);
    c->hb_on = false;
    pthread_cond_signal(&hb_cv);
    pthread_mutex_unlock(&proc_mu);
}

/* ---- connect / close ---- */

/* CURVE or not, as the options, $MPB_ENCRYPTION and the endpoint say; sets the socket's keys
 * (derived from the authkey) before it connects. */
static int use_curve(mpb_client_t *c) {
    int enc = c->opts.encryption;
    const char *env = getenv("MPB_ENCRYPTION");
    if (enc == MPB_ENCRYPTION_AUTO && env && *env) {
        if (!strcmp(env, "on"))
            enc = MPB_ENCRYPTION_ON;
        else if (!strcmp(env, "off"))
            enc = MPB_ENCRYPTION_OFF;
        else if (strcmp(env, "auto"))
            return mpb__fail(c, MPB_EINVAL, "MPB_ENCRYPTION is '%s', not on, off or auto", env);
    }
    bool unix_ep = mpb__is_unix(c->endpoint);
    if (mpb__is_stream(c->endpoint) && !unix_ep) { /* mpb://: sealed by link.c, not CURVE */
        c->curve = false;
        if (enc == MPB_ENCRYPTION_OFF)
            return mpb__fail(c, MPB_EINVAL,
                             "mpb:// is always encrypted: use encryption auto or on with it, or "
                             "unix:// for a local socket");
        return 0;
    }
    if (unix_ep && enc == MPB_ENCRYPTION_ON)
        return mpb__fail(c, MPB_EINVAL,
                         "unix:// is not encrypted (the socket file's permissions guard it): "
                         "use encryption auto or off with it, or tcp://");
    if (enc == MPB_ENCRYPTION_AUTO)
        enc = strncmp(c->endpoint, "ipc://", 6) && strncmp(c->endpoint, "inproc://", 9) && !unix_ep
                  ? MPB_ENCRYPTION_ON
                  : MPB_ENCRYPTION_OFF;
    else if (enc != MPB_ENCRYPTION_ON && enc != MPB_ENCRYPTION_OFF)
        return mpb__fail(c, MPB_EINVAL, "encryption option %d is not AUTO, ON or OFF", enc);
    c->curve = enc == MPB_ENCRYPTION_ON;
    if (!c->curve) return 0;
    if (!zmq_has("curve"))
        return mpb__fail(c, MPB_EINVAL,
                         "encryption asked for, but this libzmq has no CURVE "
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

int mpb__open_socket(mpb_client_t *c) {
    if (mpb__is_stream(c->endpoint)) {
        int rc = use_curve(c);
        return rc ? rc : mpb__unix_connect(c);
    }
    c->sock = zmq_socket(proc_ctx, ZMQ_DEALER); /* ours while c holds its reference */
    if (!c->sock) return mpb__fail(c, MPB_ENOMEM, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    c->rcvtimeo = -1;
    int rc = use_curve(c);
    if (rc) return rc;
    c->tcp_up = false;
    bool tcp = !strncmp(c->endpoint, "tcp://", 6);
    if ((c->curve || (c->fail_fast && tcp)) && mpb__hs_monitor_start(c, proc_ctx))
        return mpb__fail(c, MPB_ENOMEM, "socket monitor: %s", zmq_strerror(zmq_errno()));
    if (zmq_connect(c->sock, c->endpoint) != 0)
        return mpb__fail(c, MPB_EINVAL,
                         "bad endpoint '%s': %s (use tcp://HOST:PORT or ipc:///PATH)", c->endpoint,
                         zmq_strerror(zmq_errno()));
    return 0;
}

int mpb_connect(const char *endpoint, const void *authkey, size_t keylen, const mpb_options_t *opts,
                mpb_client_t **out) {
    *out = NULL;
    mpb_client_t *c = calloc(1, sizeof *c);
    if (!c) return MPB_ENOMEM;
    *out = c;
    mpb_options_init(&c->opts);
    if (opts) memcpy(&c->opts, opts, opts->size < sizeof c->opts ? opts->size : sizeof c->opts);
    if (c->opts.connect_timeout_ms <= 0) c->opts.connect_timeout_ms = 5000;
    if (c->opts.op_timeout_ms <= 0) c->opts.op_timeout_ms = 10000;
    c->opts.name = NULL; /* borrowed; not kept */
    pthread_once(&proc_once, register_atfork);
    c->pid = getpid();
    c->gen = proc_gen;
    c->max_frame = 8u << 20;
    c->heartbeat_ms = 1000;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    /* recursive: a callback run while replies are read may make calls of its own */
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&c->mu, &ma);
    pthread_mutex_init(&c->cb_mu, &ma); /* recursive too: a callback may run those due */
    pthread_mutexattr_destroy(&ma);
    STAILQ_INIT(&c->later);
    c->ufd = -1;
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
    if (!mpb__is_stream(c->endpoint)) { /* unix://, mpb://: no ZeroMQ context, nor its threads */
        void *ctx = ctx_ref();
        if (!ctx) return mpb__fail(c, MPB_ENOMEM, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        c->ctx_held = true;
    }
    c->fail_fast = true;
    int rc = mpb__open_socket(c);
    if (rc) return rc;
    const char *name =
        opts && opts->size >= offsetof(mpb_options_t, name) + sizeof opts->name && opts->name
            ? opts->name
            : "";
    c->opts.name = name;
    rc = mpb__handshake(c);
    mpb__hs_monitor_stop(c);
    c->fail_fast = false; /* from now on a cut is retried: reconnect_ms says how */
    c->opts.name = NULL;
    if (rc) return rc;
    if (!c->opts.no_heartbeat_thread) {
        if (hb_add(c)) return mpb__fail(c, MPB_ENOMEM, "cannot start the heartbeat thread");
    }
    if (c->opts.callback_thread && (rc = mpb_set_callback_thread(c, 1))) return rc;
    c->err[0] = 0;
    return 0;
}

void mpb_close(mpb_client_t **cp) {
    mpb_client_t *c = *cp;
    if (!c) return;
    *cp = NULL;
    mpb__anon_detach(c);
    bool mine = c->gen == proc_gen;
    if (mine) {
        mpb__cb_stop(c); /* before the BYE: its replies are read here now */
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
            mpb__hs_monitor_stop(c);
            zmq_close(c->sock);
        }
        mpb__unix_close(c);
        if (c->ctx_held) ctx_unref();
        pthread_mutex_destroy(&c->mu);
        pthread_mutex_destroy(&c->cb_mu);
    } else {
        mpb__unix_close(c); /* the child's copy of the descriptor: the parent keeps its own */
    }
    mpb__cb_free(c);
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
    for (int i = 0; i < 2; i++) {
        mpb__buf_t *l = i ? c->last_cbt : c->last;
        if (l) mpb__buf_free(l);
        free(l);
    }
    mpb__pend_free(c);
    mpb__sent_clear(c);
    free(c->sent);
    mpb__pool_rt_free(c);
    free(c);
}
