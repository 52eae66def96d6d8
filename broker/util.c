/* util.c - allocation that aborts with the size it wanted (after giving back the reserve of
 * mem.c and trying again), blobs. The clocks are common/clock.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "util.h"

void fatal(const char *what) {
    fprintf(stderr, "mpbrokerd: fatal: %s\n", what);
    abort();
}

static void oom(size_t n) {
    char m[64];
    snprintf(m, sizeof m, "out of memory allocating %zu bytes", n);
    fatal(m);
}

/* A failed allocation is tried once more after the reserve is given back (mem.c): then the
 * broker refuses to grow instead of dying with everything it holds. */
void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p && mem_release_reserve()) p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *xcalloc(size_t n, size_t m) {
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p && mem_release_reserve()) p = calloc(n ? n : 1, m ? m : 1);
    if (!p) oom(n * m);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q && mem_release_reserve()) q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *xstrndup(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void bbuf_ensure(mpb__buf_t *b) {
    if (b->oom) oom(b->cap * 2);
}

blob_t *blob_new(const uint8_t *p, size_t n) {
    blob_t *b = xmalloc(sizeof *b + n);
    b->len = (uint32_t)n;
    memcpy(b->data, p, n);
    return b;
}
