/* slowlog.c - the slowest recent requests, as Redis's SLOWLOG: each request the loop serves at
 * once (a parked one's wait is not its cost) and that took more than slowlog-log-slower-than
 * µs is kept in a ring of the newest slowlog-max-len, with who sent it and on what object.
 * The ring is made on the first slow request, so a broker that has none pays nothing. */
#include <stdlib.h>

#include "commands.h"
#include "reqlog.h"

static struct {
    reqrec_t *ring;
    size_t cap, len, next; /* next: where the next entry goes */
    uint64_t ids;
} ring;

bool slowlog_wants(int64_t us) {
    return g_limits.slowlog_max_len && us > g_limits.slowlog_slower_us;
}

void slowlog_keep(const reqrec_t *rec) {
    if (ring.cap != g_limits.slowlog_max_len) { /* first use, or a new length: start afresh */
        free(ring.ring);
        ring.ring = xcalloc(g_limits.slowlog_max_len, sizeof *ring.ring);
        ring.cap = g_limits.slowlog_max_len;
        ring.len = ring.next = 0;
    }
    reqrec_t *e = &ring.ring[ring.next];
    ring.next = (ring.next + 1) % ring.cap;
    if (ring.len < ring.cap) ring.len++;
    *e = *rec;
    e->id = ++ring.ids;
}

/* slowlog COUNT|nil -> [{id, time_ms, duration_us, op, object, session, host, pid}, ...],
 * newest first; nil or 0: all it keeps */
int cmd_slowlog(req_t *r) {
    static const reqrec_field_t fields[] = {RF_ID,     RF_TIME,    RF_DURATION, RF_OP,
                                            RF_OBJECT, RF_SESSION, RF_HOST,     RF_PID};
    uint64_t n = 0;
    if (mpb__rd_nil(&r->args) && arg_uint(r, "count", &n)) return -1;
    if (n == 0 || n > ring.len) n = ring.len;
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, (uint32_t)n);
    for (uint64_t i = 0; i < n; i++) {
        const reqrec_t *e = &ring.ring[(ring.next + ring.cap - 1 - i) % ring.cap];
        reqrec_write(b, e, fields, sizeof fields / sizeof *fields);
    }
    return 0;
}
