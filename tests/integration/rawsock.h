/* rawsock.h - raw sockets for the tests of the stream endpoints and of what crosses the wire
 * (rawsock.c, in the th library): blocking TCP connects on loopback, whole writes and reads
 * with a deadline, waiting for the broker to close a connection, and a proxy that relays one
 * connection at a time and keeps the bytes of both directions. */
#ifndef MPB_RAWSOCK_H
#define MPB_RAWSOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A blocking TCP connection to 127.0.0.1:port, or -1. */
int rs_tcp(int port);
/* Writes all n bytes (MSG_NOSIGNAL); false once the peer is gone. */
bool rs_write_all(int fd, const void *p, size_t n);
/* Reads exactly n bytes before the deadline end (th_now_ms() time): 1, 0 on EOF, -1 on a
 * timeout or an error. */
int rs_read_exact(int fd, uint8_t *p, size_t n, int64_t end);
/* Waits up to timeout_ms for the peer to close fd, counting what it sends meanwhile in
 * *extra (may be NULL): the ms it took, or -1 if it stays open. */
int64_t rs_wait_closed(int fd, int timeout_ms, size_t *extra);
/* Whether needle occurs in hay[0..n). */
bool rs_has(const uint8_t *hay, size_t n, const char *needle);

/* A proxy on 127.0.0.1:port in front of 127.0.0.1:target, in a thread. */
typedef struct rs_proxy {
    int lfd, port, target;
    pthread_t th;
    volatile int stop;
    uint8_t *up, *down; /* client -> target, target -> client (the first 16 MiB) */
    size_t nup, ndown, cap;
} rs_proxy_t;

/* Listens and relays; fails the test if it cannot. */
void rs_proxy_start(rs_proxy_t *p, int target);
/* Stops relaying and listening; the bytes stay for reading. */
void rs_proxy_stop(rs_proxy_t *p);
void rs_proxy_free(rs_proxy_t *p);

#endif
