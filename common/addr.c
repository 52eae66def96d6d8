/* addr.c - "ADDR:PORT" into a socket address, one way for every program: mpbrokerd checks
 * --http with it (config.c) and binds with it (http.c), and the health probe connects with it
 * (tools/mpb-healthcheck.c), so what one accepts the others accept too. Numeric addresses only:
 * a name would need a resolver, which the probe and the config check must not wait on. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

__attribute__((format(printf, 4, 5))) static int fail(addr_t *a, char *err, size_t errlen,
                                                      const char *fmt, ...) {
    memset(a, 0, sizeof *a);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* The port after the last ':' as 0..65535: digits only (no sign, blank or suffix). */
static int parse_port(const char *p, uint16_t *out) {
    if (!*p || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p)) return -1;
    long v = strtol(p, NULL, 10);
    if (v > 65535) return -1;
    *out = (uint16_t)v;
    return 0;
}

int addr_parse(const char *s, addr_t *a, char *err, size_t errlen) {
    const char *colon = strrchr(s, ':');
    if (!colon) return fail(a, err, errlen, "'%s' is not ADDR:PORT (e.g. 0.0.0.0:8080)", s);
    size_t hl = (size_t)(colon - s);
    if (hl == 0)
        return fail(a, err, errlen,
                    "'%s': the address before ':' is empty (* or 0.0.0.0 means every "
                    "interface)",
                    s);
    if (!colon[1]) return fail(a, err, errlen, "'%s': the port after ':' is empty", s);
    if (hl > ADDR_HOST_MAX)
        return fail(a, err, errlen, "'%s': the address is longer than %d characters", s,
                    ADDR_HOST_MAX);
    uint16_t port;
    if (parse_port(colon + 1, &port) != 0)
        return fail(a, err, errlen, "'%s': the port must be a number in 0..65535", s);

    char host[ADDR_HOST_MAX + 1];
    memcpy(host, s, hl);
    host[hl] = 0;
    memset(a, 0, sizeof *a);
    a->port = port;
    if (host[0] == '[') {
        if (host[hl - 1] != ']')
            return fail(a, err, errlen, "'%s': an IPv6 address ends with ']' before ':PORT'", s);
        host[hl - 1] = 0;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&a->ss;
        if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
            return fail(a, err, errlen, "'%s': not a numeric IPv6 address in brackets", s);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        a->family = AF_INET6;
        a->len = sizeof *a6;
        a->any = IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr);
        return 0;
    }
    if (strchr(host, ':'))
        return fail(a, err, errlen, "'%s': an IPv6 address goes in brackets ([::1]:5555)", s);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&a->ss;
    if (!strcmp(host, "*"))
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
        return fail(a, err, errlen,
                    "'%s': the address is not a numeric IPv4 one, * or an [IPv6] one", s);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    a->family = AF_INET;
    a->len = sizeof *a4;
    a->any = a4->sin_addr.s_addr == htonl(INADDR_ANY);
    return 0;
}
