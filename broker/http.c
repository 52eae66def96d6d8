/* http.c - the operator's HTTP endpoint: /healthz (alive), /readyz (accepting clients; "data
 * loaded" is trivially true while persistence is not built), /metrics (Prometheus text).
 * libmicrohttpd runs without a thread of its own: its epoll descriptor sits in the loop's poll
 * set, so handlers read broker state from the one thread that owns it. Its messages go to the
 * broker's log, as log lines. The address it got (with port 0, the port the kernel chose) is
 * written to a file for health checks and tests: see http_set_addr_file().
 *
 * On an open network (a slowloris: many connections, each dribbling a header line now and
 * then, used to hold all 64 of libmicrohttpd's connections and time the probes out) it bounds
 * what one address can hold: HTTP_PER_ADDR connections at once, HTTP_IDLE_S without a byte,
 * and HTTP_REQUEST_MS for a whole request from its first byte to its last header, dribbled or
 * not (libmicrohttpd only knows the idle timeout: http_run() shuts the late ones). The probes
 * need one short request each, so they keep answering. /metrics shows object and function
 * names: with --http-auth FILE it asks for "Authorization: Bearer <the file's token>"; the
 * probes stay open, for the kubelet.
 *
 * libmicrohttpd is opened (dlopen) by the first http_start(), not linked: it pulls in GnuTLS
 * and a dozen libraries more, which a broker without --http (the private one each Python
 * Manager() starts) would map at every start for nothing. */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
    XX(MHD_destroy_response)

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

#define HTTP_PER_ADDR   8    /* connections one address may hold */
#define HTTP_MAX_CONNS  256  /* in all */
#define HTTP_IDLE_S     2    /* a connection silent this long is closed */
#define HTTP_REQUEST_MS 3000 /* first byte to last header of one request */

/* One open connection, from libmicrohttpd's notices; since_ms while a request is coming in. */
typedef struct hconn {
    struct MHD_Connection *c;
    int64_t since_ms; /* 0: between requests (the idle timeout covers it) */
    struct hconn *next, *prev;
} hconn_t;

struct http {
    struct MHD_Daemon *d;
    int port;
    hconn_t *conns;
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
        e->next = h->conns;
        if (h->conns) h->conns->prev = e;
        h->conns = e;
        *ctx = e;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *ctx) {
        hconn_t *e = *ctx;
        if (e->prev)
            e->prev->next = e->next;
        else
            h->conns = e->next;
        if (e->next) e->next->prev = e->prev;
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
    for (hconn_t *e = h->conns; e; e = e->next) {
        if (!e->since_ms) continue;
        int64_t due = e->since_ms + HTTP_REQUEST_MS;
        if (now >= due) {
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(e->c, MHD_CONNECTION_INFO_CONNECTION_FD);
            if (ci) shutdown(ci->connect_fd, SHUT_RDWR);
            e->since_ms = 0;
            g_http_deadline_closed++;
        } else if (next < 0 || due - now < next) {
            next = due - now;
        }
    }
    return (long)next;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state) {
    (void)cls;
    (void)version;
    (void)upload;
    (void)state;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context) ((hconn_t *)ci->socket_context)->since_ms = 0; /* all in */
    if (*upload_size) { /* no endpoint takes a body: drop it */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return reply(c, 405, "text/plain", "method not allowed\n", 19);
    if (!strcmp(url, "/healthz")) return reply(c, 200, "text/plain", "ok\n", 3);
    if (!strcmp(url, "/readyz")) {
        if (server_ready()) return reply(c, 200, "text/plain", "ready\n", 6);
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
        mpb__buf_t b = {0};
        metrics_render(&b);
        bbuf_ensure(&b);
        enum MHD_Result ok = reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
        mpb__buf_free(&b);
        return ok;
    }
    return reply(c, 404, "text/plain", "not found: try /healthz, /readyz, /metrics\n", 44);
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

http_t *http_start(const char *addr, char *err, size_t errlen) {
    addr_t a;
    if (addr_parse(addr, &a, err, errlen) != 0 || mhd_load(err, errlen) != 0) return NULL;
    int fam = a.family;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    http_t *h = xcalloc(1, sizeof *h); /* the connection notices need it from the start */
    if (fam == AF_INET6) flags |= MHD_USE_IPv6;
    start_msg[0] = 0;
    starting = true;
    /* The port is given beside the address only for libmicrohttpd's own messages, which would
     * say "port 0" otherwise; it binds the address. */
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, a.port, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a.ss, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)HTTP_MAX_CONNS, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HTTP_PER_ADDR,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_S, MHD_OPTION_NOTIFY_CONNECTION, on_conn,
        h, MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL, MHD_OPTION_END);
    starting = false;
    if (!d) {
        snprintf(err, errlen, "%s", start_msg[0] ? start_msg : "in use, or not an address here");
        free(h);
        return NULL;
    }
    h->d = d;
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
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    return i ? i->epoll_fd : -1;
}

long http_timeout_ms(http_t *h) {
    MHD_UNSIGNED_LONG_LONG t;
    long mhd = MHD_get_timeout(h->d, &t) != MHD_YES ? -1 : t > 100000 ? 100000 : (long)t;
    long own = enforce_deadlines(h);
    return own >= 0 && (mhd < 0 || own < mhd) ? own : mhd;
}

void http_run(http_t *h) {
    MHD_run(h->d);
    enforce_deadlines(h);
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

void http_stop(http_t **h) {
    if (!*h) return;
    MHD_stop_daemon((*h)->d);         /* its CLOSED notices free the connection list */
    if (addr_file) unlink(addr_file); /* a stopped broker has no address */
    free(*h);
    *h = NULL;
}
