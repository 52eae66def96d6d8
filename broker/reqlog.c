/* reqlog.c - the one hook through which the loop tells the slow log and the monitors about
 * each request it served, and the one writer of the record both keep. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "reqlog.h"
#include "sess.h"

static void fill(reqrec_t *e, const req_t *r, uint64_t sid, const uint8_t *args, int code,
                 int64_t ns) {
    e->time_ms = wall_ms();
    e->us = ns / 1000;
    e->op = r->op;
    e->code = code;
    e->session = sid;
    /* the peer's session, not r->sess: a bye has just ended (and freed) that one */
    const sess_t *s = r->peer ? r->peer->sess : NULL;
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
    size_t n =
        args && r->raw && args <= r->raw + r->rawlen ? (size_t)(r->raw + r->rawlen - args) : 0;
    e->argc = n ? r->argc : 0;
    e->args_len = (uint32_t)n;
    e->args_kept = n <= REQREC_ARGS_MAX;
    if (e->args_kept && n) memcpy(e->args, args, n);
}

void reqlog_note(const req_t *r, uint64_t sid, const uint8_t *args, int code, int64_t ns) {
    bool slow = slowlog_wants(ns / 1000), mon = monitor_wants(sid);
    if (!slow && !mon) return; /* the common case: nothing is filled */
    reqrec_t e;
    fill(&e, r, sid, args, code, ns);
    if (slow) slowlog_keep(&e);
    if (mon) monitor_keep(&e);
}

void reqrec_write(mpb__buf_t *b, const reqrec_t *e, const reqrec_field_t *fields, size_t n) {
    mpb__w_map(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        switch (fields[i]) {
        case RF_ID:
            mpb__w_cstr(b, "id");
            mpb__w_uint(b, e->id);
            break;
        case RF_TIME:
            mpb__w_cstr(b, "time_ms");
            mpb__w_int(b, e->time_ms);
            break;
        case RF_DURATION:
            mpb__w_cstr(b, "duration_us");
            mpb__w_int(b, e->us);
            break;
        case RF_LATENCY:
            mpb__w_cstr(b, "latency_us");
            mpb__w_int(b, e->us);
            break;
        case RF_OP:
            mpb__w_cstr(b, "op");
            mpb__w_cstr(b, mpb__op_name(e->op));
            break;
        case RF_OBJECT:
            mpb__w_cstr(b, "object");
            mpb__w_cstr(b, e->object);
            break;
        case RF_SESSION:
            mpb__w_cstr(b, "session");
            mpb__w_uint(b, e->session);
            break;
        case RF_HOST:
            mpb__w_cstr(b, "host");
            mpb__w_cstr(b, e->host);
            break;
        case RF_PID:
            mpb__w_cstr(b, "pid");
            mpb__w_int(b, e->pid);
            break;
        case RF_CODE:
            mpb__w_cstr(b, "code");
            mpb__w_int(b, e->code);
            break;
        case RF_ARGS:
            if (e->args_kept) {
                mpb__w_cstr(b, "args");
                mpb__w_array(b, e->argc);
                mpb__w_raw(b, e->args, e->args_len);
            } else {
                mpb__w_cstr(b, "args_bytes");
                mpb__w_uint(b, e->args_len);
            }
            break;
        }
    }
}
