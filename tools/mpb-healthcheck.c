/* mpb-healthcheck.c - the container's HEALTHCHECK: asks mpbrokerd's HTTP endpoint for /healthz
 * (or another path) and exits 0 only on "HTTP/1.x 200". It exists so that the image needs
 * neither curl nor wget, and it checks the real HTTP status, not only an open port.
 *
 *   mpb-healthcheck [ADDR:PORT [PATH]]
 *
 * ADDR:PORT defaults to what the broker says it got: $MPB_DATA_DIR/http.addr, which mpbrokerd
 * writes while it serves HTTP (so `--http 0.0.0.0:9000` after the image name, or port 0, is
 * found too); else $MPB_HTTP (as mpbrokerd takes it), else 127.0.0.1:8080. ADDR:PORT is read
 * by common/addr.c, the parser mpbrokerd checks --http with, so the two agree on every form;
 * an address that means "every interface" (0.0.0.0, *, [::]) is asked on loopback. The whole
 * check is bounded by 3 seconds. Exit status: 0 healthy, 1 not healthy (the reason on
 * stderr), 2 bad usage or a bad ADDR:PORT. Built by tools/CMakeLists.txt, and by
 * deploy/Dockerfile with a plain cc (this file and common/addr.c); depends on libc only. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "addr.h"

static int fail(const char *what, const char *addr) {
    fprintf(stderr, "mpb-healthcheck: %s: %s\n", addr, what);
    return 1;
}

/* The first line of DATA_DIR/http.addr into buf, or NULL. */
static const char *addr_from_file(char *buf, size_t n) {
    const char *dir = getenv("MPB_DATA_DIR");
    char path[4096];
    if (!dir || !*dir || snprintf(path, sizeof path, "%s/http.addr", dir) >= (int)sizeof path)
        return NULL;
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *line = fgets(buf, (int)n, f);
    fclose(f);
    if (!line) return NULL;
    buf[strcspn(buf, "\r\n")] = 0;
    return buf[0] ? buf : NULL;
}

int main(int argc, char **argv) {
    const char *env = getenv("MPB_HTTP");
    char fbuf[256];
    const char *from_file = argc > 1 ? NULL : addr_from_file(fbuf, sizeof fbuf);
    const char *addr = argc > 1    ? argv[1]
                       : from_file ? from_file
                                   : (env && *env ? env : "127.0.0.1:8080");
    const char *path = argc > 2 ? argv[2] : "/healthz";
    if (argc > 3 || (argc > 1 && argv[1][0] == '-') || path[0] != '/') {
        fprintf(stderr, "usage: mpb-healthcheck [ADDR:PORT [PATH]]\n");
        return 2;
    }
    if (!strcmp(addr, "off")) return fail("MPB_HTTP is off: nothing to check", addr);

    addr_t a;
    char why[512];
    if (addr_parse(addr, &a, why, sizeof why) != 0) {
        fprintf(stderr, "mpb-healthcheck: %s\n", why);
        return 2;
    }
    if (a.port == 0) { /* port 0 binds anywhere but connects nowhere */
        fprintf(stderr, "mpb-healthcheck: '%s': port 0 cannot be asked\n", addr);
        return 2;
    }
    if (a.any && a.family == AF_INET6)
        ((struct sockaddr_in6 *)&a.ss)->sin6_addr = in6addr_loopback;
    else if (a.any)
        ((struct sockaddr_in *)&a.ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    int fd = socket(a.family, SOCK_STREAM, 0);
    if (fd < 0) return fail(strerror(errno), addr);
    struct timeval tv = {3, 0}; /* connect, send and each read */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a.ss, a.len) != 0) {
        int e = errno;
        close(fd);
        return fail(strerror(e), addr);
    }
    char req[512];
    int n =
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.0\r\nHost: localhost\r\nUser-Agent: mpb-healthcheck\r\n\r\n", path);
    if (n < 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n) {
        close(fd);
        return fail("cannot send the request", addr);
    }
    char buf[256];
    size_t got = 0;
    while (got < sizeof buf - 1 && !memchr(buf, '\n', got)) {
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = 0;
    char *eol = strpbrk(buf, "\r\n");
    if (eol) *eol = 0;
    if (!strncmp(buf, "HTTP/1.", 7) && strlen(buf) >= 12 && !strncmp(buf + 8, " 200", 4) &&
        (buf[12] == ' ' || buf[12] == 0))
        return 0;
    fprintf(stderr, "mpb-healthcheck: %s%s: %s\n", addr, path, got ? buf : "no answer");
    return 1;
}
