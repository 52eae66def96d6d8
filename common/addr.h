/* addr.h - the one parser of "ADDR:PORT" (addr.c), as --http, MPB_HTTP and the health probe
 * take it: ADDR a numeric IPv4 address, * for every interface, or an IPv6 address in brackets
 * ("[::1]:5555"); PORT 0..65535 (0: the kernel picks one, where binding). */
#ifndef MPB_ADDR_H
#define MPB_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ADDR_HOST_MAX 255 /* characters of ADDR, brackets included */

typedef struct addr {
    struct sockaddr_storage ss; /* the address with its port, ready for bind() or connect() */
    socklen_t len;              /* of ss as used: sizeof(struct sockaddr_in) or _in6 */
    int family;                 /* AF_INET or AF_INET6 */
    uint16_t port;
    bool any; /* every interface: *, 0.0.0.0 or [::] */
} addr_t;

/* Parses s into *a. Returns 0, or -1 with a sentence naming s and what is wrong in err (empty
 * address, empty port, port out of range, address too long, IPv6 without brackets, not a
 * numeric address); *a is then zeroed. */
int addr_parse(const char *s, addr_t *a, char *err, size_t errlen);

#endif
