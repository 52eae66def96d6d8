/* monitor.c - the requests the broker serves, as Redis's MONITOR (`mpb monitor`). A session
 * becomes a monitor with its first `monitor` call and reads on with the next ones, each
 * carrying the id of the next line it wants. Lines go to one ring of MON_RING entries shared
 * by all monitors, made when the first monitor comes: a monitor that stops reading pins
 * nothing and slows nobody, the lines it missed are counted as skipped when it reads again.
 * A monitor's own requests are not shown; one that has not read for MON_IDLE_MS is dropped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"

#define MON_RING 4096       /* lines kept for all monitors */
#define MON_MAX 16          /* monitors at once */
#define MON_IDLE_MS 30000   /* a monitor that has not read for this long is dropped */
#define MON_ARGS_MAX 256    /* argument bytes kept for --values; longer ones give their size */
#define MON_READ_MAX 512    /* lines one read returns */

typedef struct mon_line {
    uint64_t id;
    int64_t time_ms;
    int64_t latency_us;
    unsigned op;
    int code;
    uint64_t session;
    char object[272];
    uint32_t argc;
    uint32_t args_len;        /* the arguments' msgpack bytes */
    bool args_kept;           /* within MON_ARGS_MAX: args holds them */
    uint8_t args[MON_ARGS_MAX];
} mon_line_t;

typedef struct mon {
    uint64_t session;
    int64_t read_ms;
} mon_t;

static struct {
    mon_line_t *ring;
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

void monitor_note(const req_t *r, uint64_t sid, const uint8_t *args, int code, int64_t ns) {
    if (M.n == 0) return;
    if (sid && mon_find(sid)) return; /* a monitor does not see itself */
    mon_sweep(now_ms());
    if (M.n == 0) return;
    mon_line_t *e = &M.ring[M.ids % MON_RING];
    e->id = ++M.ids;
    e->time_ms = wall_ms();
    e->latency_us = ns / 1000;
    e->op = r->op;
    e->code = code;
    e->session = sid;
    const command_t *c = command_find(r->op);
    if (r->name && c && c->kind != KIND_NONE)
        snprintf(e->object, sizeof e->object, "%s/%.*s", kind_name(c->kind), (int)r->namelen,
                 r->name);
    else if (r->name)
        snprintf(e->object, sizeof e->object, "%.*s", (int)r->namelen, r->name);
    else
        e->object[0] = 0;
    size_t n = args && r->raw && args <= r->raw + r->rawlen
                   ? (size_t)(r->raw + r->rawlen - args)
                   : 0;
    e->argc = n ? r->argc : 0;
    e->args_len = (uint32_t)n;
    e->args_kept = n <= MON_ARGS_MAX;
    if (e->args_kept && n) memcpy(e->args, args, n);
}

/* monitor NEXT VALUES -> {next, more, skipped, lines: [{id, time_ms, op, object, session,
 * latency_us, code[, args | args_bytes]}, ...]}; NEXT 0: start from now */
int cmd_monitor(req_t *r) {
    uint64_t next;
    bool values;
    if (arg_uint(r, "next", &next) || arg_bool(r, "values", &values)) return -1;
    uint64_t sid = r->sess ? r->sess->id : 0;
    int64_t now = now_ms();
    mon_sweep(now);
    mon_t *m = mon_find(sid);
    if (!m) {
        if (M.n == MON_MAX)
            return reply_error(r, MPB_ELIMIT, "%d monitors already", MON_MAX);
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
        const mon_line_t *e = &M.ring[(next + i - 1) % MON_RING];
        bool with = values;
        mpb__w_map(b, with ? 8 : 7);
        mpb__w_cstr(b, "id");
        mpb__w_uint(b, e->id);
        mpb__w_cstr(b, "time_ms");
        mpb__w_int(b, e->time_ms);
        mpb__w_cstr(b, "op");
        mpb__w_cstr(b, mpb__op_name(e->op));
        mpb__w_cstr(b, "object");
        mpb__w_cstr(b, e->object);
        mpb__w_cstr(b, "session");
        mpb__w_uint(b, e->session);
        mpb__w_cstr(b, "latency_us");
        mpb__w_int(b, e->latency_us);
        mpb__w_cstr(b, "code");
        mpb__w_int(b, e->code);
        if (!with) continue;
        if (e->args_kept) {
            mpb__w_cstr(b, "args");
            mpb__w_array(b, e->argc);
            mpb__w_raw(b, e->args, e->args_len);
        } else {
            mpb__w_cstr(b, "args_bytes");
            mpb__w_uint(b, e->args_len);
        }
    }
    return 0;
}
