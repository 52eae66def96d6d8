/* util.h - allocation that cannot fail, clocks, and the value blob every kind stores. */
#ifndef BROKER_UTIL_H
#define BROKER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h" /* common/: now_ms, now_ns, wall_ms, lat_clock_ns */
#include "log.h"
#include "mpbproto.h"

/* Allocation that cannot fail: client data is refused by the limits (--max-memory) before
 * memory runs out, and a first failure gives back a reserve and is tried again (mem.c), after
 * which growth is refused; running out anyway is fatal and says how much was asked. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrndup(const char *s, size_t n);
/* What cannot go on (no randomness, a crypto call failing on our own buffers): says what on
 * stderr and aborts, so that a core dump is left rather than a broker that lies. */
_Noreturn void fatal(const char *what);
/* The buffer's space is ours to grow: wraps mpb__buf_reserve and aborts on failure. */
void bbuf_ensure(mpb__buf_t *b);

/* A value as stored: its msgpack bytes with their length in front, one allocation. */
typedef struct blob {
    uint32_t len;
    uint8_t data[];
} blob_t;
blob_t *blob_new(const uint8_t *p, size_t n);

#endif
