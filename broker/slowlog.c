/* slowlog.c - the slowest recent requests, as Redis's SLOWLOG: each request the loop serves at
 * once (a parked one's wait is not its cost) and that took more than slowlog-log-slower-than
 * µs is kept in a ring of the newest slowlog-max-len, with who sent it and on what object.
 * The ring is made on the first slow request, so a broker that has none pays nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"

typedef struct slow {
    uint64_t id;
    int64_t time_ms; /* wall clock, when it was served */
    int64_t duration_us;
    unsigned op;
    uint64_t session;
    int64_t pid;
    char host[64];
    char object[272]; /* kind/name, or "" for ops without an object */
} slow_t;

static struct {
    slow_t *ring;
    size_t cap, len, next; /* next: where the next entry goes */
    uint64_t ids;
} L;

void slowlog_note(const req_t *r, int64_t ns) {
    int64_t us = ns / 1000;
    if (g_limits.slowlog_max_len == 0 || us <= g_limits.slowlog_slower_us) return;
    if (L.cap != g_limits.slowlog_max_len) { /* first use, or a new length: start afresh */
        free(L.ring);
        L.ring = xcalloc(g_limits.slowlog_max_len, sizeof *L.ring);
        L.cap = g_limits.slowlog_max_len;
        L.len = L.next = 0;
    }
    slow_t *e = &L.ring[L.next];
    L.next = (L.next + 1) % L.cap;
    if (L.len < L.cap) L.len++;
    e->id = ++L.ids;
    e->time_ms = wall_ms();
    e->duration_us = us;
    e->op = r->op;
    /* the peer's session, not r->sess: a bye has just ended (and freed) that one */
    const sess_t *s = r->peer ? r->peer->sess : NULL;
    e->session = s ? s->id : 0;
    e->pid = s ? s->pid : 0;
    snprintf(e->host, sizeof e->host, "%s", s ? s->host : "");
    /* the kind from the op's table entry: r->obj may be gone (a handler may delete it) */
    const command_t *c = command_find(r->op);
    if (r->name && c && c->kind != KIND_NONE)
        snprintf(e->object, sizeof e->object, "%s/%.*s", kind_name(c->kind), (int)r->namelen,
                 r->name);
    else if (r->name)
        snprintf(e->object, sizeof e->object, "%.*s", (int)r->namelen, r->name);
    else
        e->object[0] = 0;
}

/* slowlog COUNT|nil -> [{id, time_ms, duration_us, op, object, session, host, pid}, ...],
 * newest first; nil or 0: all it keeps */
int cmd_slowlog(req_t *r) {
    uint64_t n = 0;
    if (mpb__rd_nil(&r->args) && arg_uint(r, "count", &n)) return -1;
    if (n == 0 || n > L.len) n = L.len;
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, (uint32_t)n);
    for (uint64_t i = 0; i < n; i++) {
        const slow_t *e = &L.ring[(L.next + L.cap - 1 - i) % L.cap];
        mpb__w_map(b, 8);
        mpb__w_cstr(b, "id");
        mpb__w_uint(b, e->id);
        mpb__w_cstr(b, "time_ms");
        mpb__w_int(b, e->time_ms);
        mpb__w_cstr(b, "duration_us");
        mpb__w_int(b, e->duration_us);
        mpb__w_cstr(b, "op");
        mpb__w_cstr(b, mpb__op_name(e->op));
        mpb__w_cstr(b, "object");
        mpb__w_cstr(b, e->object);
        mpb__w_cstr(b, "session");
        mpb__w_uint(b, e->session);
        mpb__w_cstr(b, "host");
        mpb__w_cstr(b, e->host);
        mpb__w_cstr(b, "pid");
        mpb__w_int(b, e->pid);
    }
    return 0;
}
