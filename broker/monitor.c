/* monitor.c - the requests the broker serves, as Redis's MONITOR (`mpb monitor`). A session
 * becomes a monitor with its first `monitor` call and reads on with the next ones, each
 * carrying the id of the next line it wants. Lines go to one ring of MON_RING entries shared
 * by all monitors, made when the first monitor comes: a monitor that stops reading pins
 * nothing and slows nobody, the lines it missed are counted as skipped when it reads again.
 * A monitor's own requests are not shown; one that has not read for MON_IDLE_MS is dropped. */
#include <stdlib.h>

#include "commands.h"
#include "reqlog.h"

#define MON_RING     4096  /* lines kept for all monitors */
#define MON_MAX      16    /* monitors at once */
#define MON_IDLE_MS  30000 /* a monitor that has not read for this long is dropped */
#define MON_READ_MAX 512   /* lines one read returns */

typedef struct mon {
    uint64_t session;
    int64_t read_ms;
} mon_t;

static struct {
    reqrec_t *ring;
    uint64_t ids; /* the last line's id */
    mon_t mons[MON_MAX];
    size_t n;
} M;

static mon_t *mon_find(uint64_t session) {
    for (size_t i = 0; i < M.n; i++)
        if (M.mons[i].session == session) return &M.mons[i];
    return NULL;
}

/* Drops monitors that stopped reading; frees the ring when none is left. */
static void mon_sweep(int64_t now) {
    for (size_t i = 0; i < M.n;) {
        if (now - M.mons[i].read_ms > MON_IDLE_MS)
            M.mons[i] = M.mons[--M.n];
        else
            i++;
    }
    if (M.n == 0 && M.ring) {
        free(M.ring);
        M.ring = NULL;
    }
}

bool monitor_wants(uint64_t sid) {
    if (M.n == 0) return false;
    if (sid && mon_find(sid)) return false; /* a monitor does not see itself */
    mon_sweep(now_ms());
    return M.n > 0;
}

void monitor_keep(const reqrec_t *rec) {
    reqrec_t *e = &M.ring[M.ids % MON_RING];
    *e = *rec;
    e->id = ++M.ids;
}

/* monitor NEXT VALUES -> {next, more, skipped, lines: [{id, time_ms, op, object, session,
 * latency_us, code[, args | args_bytes]}, ...]}; NEXT 0: start from now */
int cmd_monitor(req_t *r) {
    static const reqrec_field_t fields[] = {RF_ID,      RF_TIME,    RF_OP,   RF_OBJECT,
                                            RF_SESSION, RF_LATENCY, RF_CODE, RF_ARGS};
    uint64_t next;
    bool values;
    if (arg_uint(r, "next", &next) || arg_bool(r, "values", &values)) return -1;
    uint64_t sid = r->sess ? r->sess->id : 0;
    int64_t now = now_ms();
    mon_sweep(now);
    mon_t *m = mon_find(sid);
    if (!m) {
        if (M.n == MON_MAX) return reply_error(r, MPB_ELIMIT, "%d monitors already", MON_MAX);
        if (!M.ring) M.ring = xcalloc(MON_RING, sizeof *M.ring);
        m = &M.mons[M.n++];
        m->session = sid;
    }
    m->read_ms = now;
    uint64_t oldest = M.ids >= MON_RING ? M.ids - MON_RING + 1 : 1;
    uint64_t skipped = 0;
    if (next == 0 || next > M.ids + 1) next = M.ids + 1;
    if (next < oldest) {
        skipped = oldest - next;
        next = oldest;
    }
    uint64_t n = M.ids + 1 - next;
    if (n > MON_READ_MAX) n = MON_READ_MAX;
    mpb__buf_t *b = reply_begin(r);
    mpb__w_map(b, 4);
    mpb__w_cstr(b, "next");
    mpb__w_uint(b, next + n);
    mpb__w_cstr(b, "more");
    mpb__w_bool(b, next + n <= M.ids);
    mpb__w_cstr(b, "skipped");
    mpb__w_uint(b, skipped);
    mpb__w_cstr(b, "lines");
    mpb__w_array(b, (uint32_t)n);
    for (uint64_t i = 0; i < n; i++) {
        const reqrec_t *e = &M.ring[(next + i - 1) % MON_RING];
        reqrec_write(b, e, fields, values ? 8 : 7);
    }
    return 0;
}
