/* http.c - the operator's HTTP endpoint: /healthz (alive), /readyz (accepting clients),
 * /metrics (Prometheus text). libmicrohttpd runs in a thread of its own (http_main), so the
 * probes answer at once whatever the loop is doing (a drain of 4,096 requests, an fsync, a
 * burst of handshakes); before, its descriptor sat in the loop's poll set and a probe waited
 * for the loop's turn. The probes need no broker state: /healthz says whether the loop still
 * turns (it does at least every 100 ms, for its sweep: HTTP_STALL_MS without a turn is a
 * stuck loop, 503), /readyz what the loop said at its last turn. /metrics reads broker state,
 * which only the loop may touch: its connection is suspended, the loop is woken (http_fd()),
 * renders the page between two turns (http_run()) and wakes this thread, which resumes the
 * connection with the page. Its messages go to the broker's log, as log lines. The address it
 * got (with port 0, the port the kernel chose) is written to a file for health checks and
 * tests: see http_set_addr_file().
 *
 * On an open network (a slowloris: many connections, each dribbling a header line now and
 * then, used to hold all 64 of libmicrohttpd's connections and time the probes out) it bounds
 * what one address can hold: HTTP_PER_ADDR connections at once, HTTP_IDLE_S without a byte,
 * and HTTP_REQUEST_MS for a whole request from its first byte to its last header, dribbled or
 * not (libmicrohttpd only knows the idle timeout: the thread shuts the late ones). The probes
 * need one short request each, so they keep answering. /metrics shows object and function
 * names: with --http-auth FILE it asks for "Authorization: Bearer <the file's token>"; the
 * probes stay open, for the kubelet.
 *
 * libmicrohttpd is opened (dlopen) by the first http_start(), not linked: it pulls in GnuTLS
 * and a dozen libraries more, which a broker without --http (the private one each Python
 * Manager() starts) would map at every start for nothing. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "addr.h"
#include "broker.h"

/* ---- libmicrohttpd, opened at run time ----
 * Each function used is a pointer of the header's own type, filled by mhd_load(); the names
 * below then call through them. MPB_MHD_SONAME comes from the build (broker/CMakeLists.txt). */
#define MHD_FUNCS(XX)                                                                              \
    XX(MHD_start_daemon)                                                                           \
    XX(MHD_stop_daemon)                                                                            \
    XX(MHD_run)                                                                                    \
    XX(MHD_get_timeout)                                                                            \
    XX(MHD_get_daemon_info)                                                                        \
    XX(MHD_get_connection_info)                                                                    \
    XX(MHD_lookup_connection_value)                                                                \
    XX(MHD_create_response_from_buffer)                                                            \
    XX(MHD_add_response_header)                                                                    \
    XX(MHD_queue_response)                                                                         \
    XX(MHD_destroy_response)                                                                       \
    XX(MHD_suspend_connection)                                                                     \
    XX(MHD_resume_connection)

static struct {
    void *lib;
#define XX(f) __typeof__(f) *p_##f;
    MHD_FUNCS(XX)
#undef XX
} mhd_lib;

/* 0, or -1 with the reason in err (the library or one of its functions is missing). */
static int mhd_load(char *err, size_t errlen) {
    if (mhd_lib.lib) return 0;
    void *lib = dlopen(MPB_MHD_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(err, errlen, "cannot load libmicrohttpd: %s", dlerror());
        return -1;
    }
#define XX(f)                                                                                      \
    if (!(mhd_lib.p_##f = (__typeof__(f) *)dlsym(lib, #f))) {                                      \
        snprintf(err, errlen, "%s has no %s", MPB_MHD_SONAME, #f);                                 \
        dlclose(lib);                                                                              \
        return -1;                                                                                 \
    }
    MHD_FUNCS(XX)
#undef XX
    mhd_lib.lib = lib;
    return 0;
}

#define MHD_start_daemon                (*mhd_lib.p_MHD_start_daemon)
#define MHD_stop_daemon                 (*mhd_lib.p_MHD_stop_daemon)
#define MHD_run                         (*mhd_lib.p_MHD_run)
#define MHD_get_timeout                 (*mhd_lib.p_MHD_get_timeout)
#define MHD_get_daemon_info             (*mhd_lib.p_MHD_get_daemon_info)
#define MHD_get_connection_info         (*mhd_lib.p_MHD_get_connection_info)
#define MHD_lookup_connection_value     (*mhd_lib.p_MHD_lookup_connection_value)
#define MHD_create_response_from_buffer (*mhd_lib.p_MHD_create_response_from_buffer)
#define MHD_add_response_header         (*mhd_lib.p_MHD_add_response_header)
#define MHD_queue_response              (*mhd_lib.p_MHD_queue_response)
#define MHD_destroy_response            (*mhd_lib.p_MHD_destroy_response)
#define MHD_suspend_connection          (*mhd_lib.p_MHD_suspend_connection)
#define MHD_resume_connection           (*mhd_lib.p_MHD_resume_connection)

#define HTTP_PER_ADDR   8     /* connections one address may hold */
#define HTTP_MAX_CONNS  256   /* in all */
#define HTTP_IDLE_S     2     /* a connection silent this long is closed */
#define HTTP_REQUEST_MS 3000  /* first byte to last header of one request */
#define HTTP_STALL_MS   10000 /* a loop that has not turned for this long is stuck */

/* One open connection, from libmicrohttpd's notices; since_ms while a request is coming in. */
typedef struct hconn {
    struct MHD_Connection *c;
    int64_t since_ms; /* 0: between requests (the idle timeout covers it) */
    LIST_ENTRY(hconn) link;
} hconn_t;

/* A /metrics request waiting for the loop to render its page. */
typedef struct mjob {
    struct MHD_Connection *c; /* suspended until the page is there */
    mpb__buf_t page;
    bool rendered; /* by the loop; false at a shutdown */
    struct mjob *next;
} mjob_t;

struct http {
    struct MHD_Daemon *d;
    int port;
    LIST_HEAD(, hconn) conns; /* the HTTP thread's */
    pthread_t thread;
    bool running;
    int wake[2];             /* to the HTTP thread: pages rendered, or stop */
    int want[2];             /* to the loop: a page is wanted (http_fd) */
    pthread_mutex_t mu;      /* todo, done */
    mjob_t *todo, *done;     /* for the loop to render; for the HTTP thread to resume */
    atomic_bool asked;       /* todo may hold jobs: the loop looks */
    atomic_bool stopping;    /* the HTTP thread ends */
    _Atomic int64_t turn_ms; /* when the loop last went to its poll */
    atomic_bool ready;       /* server_ready() then */
};

static char *addr_file;  /* http_set_addr_file(); NULL: none */
static char *auth_token; /* http_set_auth(); NULL: /metrics is open */
static size_t auth_len;

/* While http_start runs, libmicrohttpd's messages are kept to say why it failed; after, they
 * are log lines. */
static char start_msg[512];
static bool starting;

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == ' '))
        msg[--n] = 0;
    if (starting) {
        snprintf(start_msg, sizeof start_msg, "%s", msg);
        return;
    }
    log_kv(MPB_LOG_WARN, msg, "source", "libmicrohttpd", NULL);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                             const void *body, size_t n) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* With --http-auth: whether the request carries "Authorization: Bearer <token>" (compared in
 * constant time). Without it, everyone is. */
static bool authorized(struct MHD_Connection *c) {
    if (!auth_token) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    while (*h == ' ')
        h++;
    size_t n = strlen(h);
    return n == auth_len && CRYPTO_memcmp(h, auth_token, n) == 0;
}

static void on_conn(void *cls, struct MHD_Connection *c, void **ctx,
                    enum MHD_ConnectionNotificationCode toe) {
    http_t *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        hconn_t *e = xcalloc(1, sizeof *e);
        e->c = c;
        e->since_ms = now_ms(); /* its first request starts with the connection */
        LIST_INSERT_HEAD(&h->conns, e, link);
        *ctx = e;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *ctx) {
        hconn_t *e = *ctx;
        LIST_REMOVE(e, link);
        free(e);
        *ctx = NULL;
    }
}

/* A request line has arrived: a new request starts on a kept-alive connection. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    (void)cls;
    (void)uri;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    hconn_t *e = ci ? ci->socket_context : NULL;
    if (e && !e->since_ms) e->since_ms = now_ms();
    return NULL;
}

/* Shuts the connections whose request has taken longer than HTTP_REQUEST_MS; libmicrohttpd
 * then reads EOF and closes them. Returns the ms until the next one is due (-1: none). */
static long enforce_deadlines(http_t *h) {
    int64_t now = now_ms(), next = -1;
    hconn_t *e;
    LIST_FOREACH(e, &h->conns, link) {
        if (!e->since_ms) continue;
        int64_t due = e->since_ms + HTTP_REQUEST_MS;
        if (now >= due) {
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(e->c, MHD_CONNECTION_INFO_CONNECTION_FD);
            if (ci) shutdown(ci->connect_fd, SHUT_RDWR);
            e->since_ms = 0;
            __atomic_fetch_add(&g_http_deadline_closed, 1,
                               __ATOMIC_RELAXED); /* the loop reads it */
        } else if (next < 0 || due - now < next) {
            next = due - now;
        }
    }
    return (long)next;
}

static void wake(int fd) {
    ssize_t w = write(fd, "w", 1); /* a full pipe wakes its reader as well */
    (void)w;
}

static void drain(int fd) {
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

/* /metrics, in the HTTP thread: the first call suspends the connection and asks the loop for
 * the page; the call after the resume sends it. */
static enum MHD_Result metrics_page(http_t *h, struct MHD_Connection *c, void **state) {
    mjob_t *j = *state;
    if (!j) {
        j = xcalloc(1, sizeof *j);
        j->c = c;
        *state = j;
        pthread_mutex_lock(&h->mu);
        j->next = h->todo;
        h->todo = j;
        pthread_mutex_unlock(&h->mu);
        atomic_store(&h->asked, true);
        wake(h->want[1]);
        MHD_suspend_connection(c);
        return MHD_YES;
    }
    if (!j->rendered) return reply(c, 503, "text/plain", "shutting down\n", 14);
    return reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", j->page.p, j->page.len);
}

/* The loop has not turned for HTTP_STALL_MS: *ms gets how long. */
static bool stalled(http_t *h, int64_t *ms) {
    *ms = now_ms() - atomic_load(&h->turn_ms);
    return *ms > HTTP_STALL_MS;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state) {
    http_t *h = cls;
    (void)version;
    (void)upload;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context) ((hconn_t *)ci->socket_context)->since_ms = 0; /* all in */
    if (*upload_size) { /* no endpoint takes a body: drop it */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return reply(c, 405, "text/plain", "method not allowed\n", 19);
    int64_t ms;
    if (!strcmp(url, "/healthz") || !strcmp(url, "/readyz")) {
        char msg[96];
        if (stalled(h, &ms)) {
            int n =
                snprintf(msg, sizeof msg, "stuck: the broker's loop has not turned for %lld ms\n",
                         (long long)ms);
            return reply(c, 503, "text/plain", msg, (size_t)n);
        }
        if (!strcmp(url, "/healthz")) return reply(c, 200, "text/plain", "ok\n", 3);
        if (atomic_load(&h->ready)) return reply(c, 200, "text/plain", "ready\n", 6);
        return reply(c, 503, "text/plain", "not ready\n", 10);
    }
    if (!strcmp(url, "/metrics")) {
        if (!authorized(c)) {
            struct MHD_Response *r = MHD_create_response_from_buffer(
                23, (void *)"bearer token required\n", MHD_RESPMEM_PERSISTENT);
            if (!r) return MHD_NO;
            MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"mpbroker\"");
            MHD_add_response_header(r, "Content-Type", "text/plain");
            enum MHD_Result ok = MHD_queue_response(c, 401, r);
            MHD_destroy_response(r);
            return ok;
        }
        return metrics_page(h, c, state);
    }
    return reply(c, 404, "text/plain", "not found: try /healthz, /readyz, /metrics\n", 44);
}

/* A request has ended (answered, cut, or the daemon stopping): its page goes. */
static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    mjob_t *j = *state;
    if (!j) return;
    mpb__buf_free(&j->page);
    free(j);
    *state = NULL;
}

/* Takes the jobs of list (todo or done) out of it. */
static mjob_t *take(http_t *h, mjob_t **list) {
    pthread_mutex_lock(&h->mu);
    mjob_t *j = *list;
    *list = NULL;
    pthread_mutex_unlock(&h->mu);
    return j;
}

static void resume_all(mjob_t *j) {
    for (mjob_t *next; j; j = next) {
        next = j->next; /* the job is the request's from now: on_completed frees it */
        MHD_resume_connection(j->c);
    }
}

/* The HTTP thread: libmicrohttpd's events, the deadlines, and the pages the loop rendered. */
static void *http_main(void *arg) {
    http_t *h = arg;
    const union MHD_DaemonInfo *ei = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    int efd = ei ? ei->epoll_fd : -1;
    while (!atomic_load(&h->stopping)) {
        MHD_UNSIGNED_LONG_LONG t;
        long wait = MHD_get_timeout(h->d, &t) != MHD_YES ? 1000 : t > 1000 ? 1000 : (long)t;
        long own = enforce_deadlines(h);
        if (own >= 0 && own < wait) wait = own;
        struct pollfd p[2] = {
            {efd,        POLLIN, 0},
            {h->wake[0], POLLIN, 0}
        };
        poll(p, 2, (int)wait);
        if (p[1].revents & POLLIN) {
            drain(h->wake[0]);
            resume_all(take(h, &h->done));
        }
        MHD_run(h->d);
        enforce_deadlines(h);
    }
    return NULL;
}

void http_set_addr_file(const char *path) {
    free(addr_file);
    addr_file = path ? xstrndup(path, strlen(path)) : NULL;
}

/* "HOST:PORT" with the port the daemon got, written whole or not at all (rename). */
static int write_addr_file(const char *addr, int port) {
    char tmp[4200];
    const char *colon = strrchr(addr, ':');
    int hl = colon ? (int)(colon - addr) : 0;
    snprintf(tmp, sizeof tmp, "%s.tmp", addr_file);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "%.*s:%d\n", hl, addr, port);
    if (fclose(f) != 0 || rename(tmp, addr_file) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* A pipe, non-blocking at both ends and closed on exec. */
static int nb_pipe(int fd[2]) {
    if (pipe(fd)) return -1;
    for (int i = 0; i < 2; i++)
        if (fcntl(fd[i], F_SETFL, O_NONBLOCK) || fcntl(fd[i], F_SETFD, FD_CLOEXEC)) return -1;
    return 0;
}

static void close_pipes(http_t *h) {
    for (int i = 0; i < 2; i++) {
        if (h->wake[i] >= 0) close(h->wake[i]);
        if (h->want[i] >= 0) close(h->want[i]);
    }
}

http_t *http_start(const char *addr, char *err, size_t errlen) {
    addr_t a;
    if (addr_parse(addr, &a, err, errlen) != 0 || mhd_load(err, errlen) != 0) return NULL;
    int fam = a.family;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    http_t *h = xcalloc(1, sizeof *h); /* the connection notices need it from the start */
    h->wake[0] = h->wake[1] = h->want[0] = h->want[1] = -1;
    if (nb_pipe(h->wake) || nb_pipe(h->want)) {
        snprintf(err, errlen, "cannot make a pipe: %s", strerror(errno));
        close_pipes(h);
        free(h);
        return NULL;
    }
    pthread_mutex_init(&h->mu, NULL);
    atomic_store(&h->turn_ms, now_ms());
    if (fam == AF_INET6) flags |= MHD_USE_IPv6;
    start_msg[0] = 0;
    starting = true;
    /* The port is given beside the address only for libmicrohttpd's own messages, which would
     * say "port 0" otherwise; it binds the address. */
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, a.port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a.ss, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)HTTP_MAX_CONNS, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HTTP_PER_ADDR,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_S, MHD_OPTION_NOTIFY_CONNECTION, on_conn,
        h, MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        NULL, MHD_OPTION_END);
    starting = false;
    if (!d) {
        snprintf(err, errlen, "%s", start_msg[0] ? start_msg : "in use, or not an address here");
        close_pipes(h);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return NULL;
    }
    h->d = d;
    /* Signals stay the loop's: its poll is what they must interrupt. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&h->thread, NULL, http_main, h);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        snprintf(err, errlen, "cannot start its thread: %s", strerror(rc));
        http_stop(&h);
        return NULL;
    }
    h->running = true;
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = pi ? pi->port : 0;
    if (addr_file && write_addr_file(addr, h->port) != 0)
        log_kv(MPB_LOG_WARN, "cannot write the HTTP address file", "path", addr_file, "error",
               strerror(errno), NULL);
    return h;
}

int http_check_bind(const char *addr, char *err, size_t errlen) {
    addr_t a;
    if (addr_parse(addr, &a, err, errlen) != 0) return -1;
    int fam = a.family;
    int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot make a socket: %s", strerror(errno));
        return -1;
    }
    /* As libmicrohttpd binds: SO_REUSEADDR, and IPv6 only on an IPv6 address. */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fam == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    int rc = bind(fd, (struct sockaddr *)&a.ss, a.len) == 0 ? 0 : -1;
    if (rc == 0 && listen(fd, 1) != 0) rc = -1;
    int e = errno;
    close(fd);
    if (rc) snprintf(err, errlen, "cannot bind %s: %s", addr, strerror(e));
    return rc;
}

int http_fd(http_t *h) {
    return h->want[0];
}

long http_timeout_ms(http_t *h) {
    atomic_store(&h->turn_ms, now_ms());
    atomic_store(&h->ready, server_ready());
    return -1;
}

void http_run(http_t *h) {
    if (!atomic_load(&h->asked)) return;
    drain(h->want[0]); /* before the flag: a job asked for after it wakes the next poll */
    atomic_store(&h->asked, false);
    mjob_t *todo = take(h, &h->todo), *last = NULL;
    for (mjob_t *j = todo; j; j = j->next) {
        metrics_render(&j->page);
        bbuf_ensure(&j->page);
        j->rendered = true;
        last = j;
    }
    if (!last) return;
    pthread_mutex_lock(&h->mu);
    last->next = h->done;
    h->done = todo;
    pthread_mutex_unlock(&h->mu);
    wake(h->wake[1]);
}

int http_set_auth(const char *path, char *err, size_t errlen) {
    if (auth_token) OPENSSL_cleanse(auth_token, auth_len);
    free(auth_token);
    auth_token = NULL;
    auth_len = 0;
    if (!path) return 0;
    uint8_t *tok = NULL;
    size_t n = 0;
    char warn[1024];
    if (mpb__key_file_read("http-auth token file", path, &tok, &n, err, errlen, warn, sizeof warn))
        return -1;
    if (warn[0])
        log_kv(MPB_LOG_WARN, "the http-auth token file", "path", path, "problem", warn, NULL);
    if (memchr(tok, 0, n) || memchr(tok, '\n', n) || memchr(tok, '\r', n)) {
        snprintf(err, errlen, "HTTP token file %s: the token must be one line of text", path);
        OPENSSL_cleanse(tok, n);
        free(tok);
        return -1;
    }
    auth_token = (char *)tok;
    auth_len = n;
    return 0;
}

int http_port(http_t *h) {
    return h->port;
}

void http_stop(http_t **hp) {
    http_t *h = *hp;
    if (!h) return;
    if (h->running) {
        atomic_store(&h->stopping, true);
        wake(h->wake[1]);
        pthread_join(h->thread, NULL);
    }
    /* libmicrohttpd must have no suspended connection when it stops: the /metrics requests
     * still waiting get their page, or 503 if the loop has not rendered it. */
    mjob_t *todo = take(h, &h->todo), *done = take(h, &h->done);
    if (todo || done) {
        resume_all(todo);
        resume_all(done);
        MHD_run(h->d);
    }
    MHD_stop_daemon(h->d);            /* its CLOSED notices free the connection list */
    if (addr_file) unlink(addr_file); /* a stopped broker has no address */
    close_pipes(h);
    pthread_mutex_destroy(&h->mu);
    free(h);
    *hp = NULL;
}
