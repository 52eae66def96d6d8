/* http.c - the operator's HTTP endpoint: /healthz (alive), /readyz (accepting clients; "data
 * loaded" is trivially true while persistence is not built), /metrics (Prometheus text).
 * libmicrohttpd runs without a thread of its own: its epoll descriptor sits in the loop's poll
 * set, so handlers read broker state from the one thread that owns it. Its messages go to the
 * broker's log, as log lines. The address it got (with port 0, the port the kernel chose) is
 * written to a file for health checks and tests: see http_set_addr_file(). */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <microhttpd.h>

#include "broker.h"

struct http {
    struct MHD_Daemon *d;
    int port;
};

static char *addr_file; /* http_set_addr_file(); NULL: none */

/* While http_start runs, libmicrohttpd's messages are kept to say why it failed; after, they
 * are log lines. */
static char start_msg[512];
static bool starting;

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == ' ')) msg[--n] = 0;
    if (starting) {
        snprintf(start_msg, sizeof start_msg, "%s", msg);
        return;
    }
    log_kv(LOG_WARN, msg, "source", "libmicrohttpd", NULL);
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **state) {
    (void)cls;
    (void)version;
    (void)upload;
    (void)state;
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
        mpb__buf_t b = {0};
        metrics_render(&b);
        bbuf_ensure(&b);
        enum MHD_Result ok =
            reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
        mpb__buf_free(&b);
        return ok;
    }
    return reply(c, 404, "text/plain", "not found: try /healthz, /readyz, /metrics\n", 44);
}

/* Splits "ADDR:PORT" ("[::1]:8080" for IPv6) into a socket address. */
static int parse_addr(const char *s, struct sockaddr_storage *ss, char *err, size_t errlen) {
    char host[256];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) {
        snprintf(err, errlen, "'%s' is not ADDR:PORT", s);
        return -1;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) {
        snprintf(err, errlen, "'%s': port must be 0..65535", s);
        return -1;
    }
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof host) hl = sizeof host - 1;
    memcpy(host, s, hl);
    host[hl] = 0;
    memset(ss, 0, sizeof *ss);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) == 1) return AF_INET6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        if (!strcmp(host, "*") || !host[0]) host[0] = 0, a4->sin_addr.s_addr = htonl(INADDR_ANY);
        if (!host[0] || inet_pton(AF_INET, host, &a4->sin_addr) == 1) return AF_INET;
    }
    snprintf(err, errlen, "'%s': not a numeric IPv4 or [IPv6] address", host);
    return -1;
}

static uint16_t addr_port(const struct sockaddr_storage *ss) {
    return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
                                           : ((const struct sockaddr_in *)ss)->sin_port);
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
    struct sockaddr_storage ss;
    int fam = parse_addr(addr, &ss, err, errlen);
    if (fam < 0) return NULL;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (fam == AF_INET6) flags |= MHD_USE_IPv6;
    start_msg[0] = 0;
    starting = true;
    /* The port is given beside the address only for libmicrohttpd's own messages, which would
     * say "port 0" otherwise; it binds the address. */
    struct MHD_Daemon *d =
        MHD_start_daemon(flags, addr_port(&ss), NULL, NULL, on_request, NULL,
                         MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    starting = false;
    if (!d) {
        snprintf(err, errlen, "%s", start_msg[0] ? start_msg : "in use, or not an address here");
        return NULL;
    }
    http_t *h = xcalloc(1, sizeof *h);
    h->d = d;
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = pi ? pi->port : 0;
    if (addr_file && write_addr_file(addr, h->port) != 0)
        log_kv(LOG_WARN, "cannot write the HTTP address file", "path", addr_file, "error",
               strerror(errno), NULL);
    return h;
}

int http_check_bind(const char *addr, char *err, size_t errlen) {
    struct sockaddr_storage ss;
    int fam = parse_addr(addr, &ss, err, errlen);
    if (fam < 0) return -1;
    int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot make a socket: %s", strerror(errno));
        return -1;
    }
    /* As libmicrohttpd binds: SO_REUSEADDR, and IPv6 only on an IPv6 address. */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fam == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    socklen_t sl = fam == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int rc = bind(fd, (struct sockaddr *)&ss, sl) == 0 ? 0 : -1;
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
    if (MHD_get_timeout(h->d, &t) != MHD_YES) return -1;
    return t > 100000 ? 100000 : (long)t;
}

void http_run(http_t *h) {
    MHD_run(h->d);
}

int http_port(http_t *h) {
    return h->port;
}

void http_stop(http_t **h) {
    if (!*h) return;
    MHD_stop_daemon((*h)->d);
    if (addr_file) unlink(addr_file); /* a stopped broker has no address */
    free(*h);
    *h = NULL;
}
