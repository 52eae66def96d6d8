/* clients.c - the operator's view of sessions, as Redis's CLIENT LIST and CLIENT KILL: who is
 * connected, since when, idle how long, holding and waiting on what; and ending one session
 * as its expiry would (sess_end: locks released with larger fences, parked calls answered). */
#include <stdio.h>

#include "broker.h"

/* Writes "kind/name" of o. */
static void w_path(mpb__buf_t *b, const obj_t *o) {
    char path[300];
    int n = snprintf(path, sizeof path, "%s/%.*s", kind_name(o->kind), (int)o->namelen, o->name);
    mpb__w_str(b, path, n < (int)sizeof path ? (size_t)n : sizeof path - 1);
}

/* clients -> [{session, host, pid, address, name, connected, age_ms, idle_ms, holds: [{object,
 * units}], waits: [{object, op}]}, ...], newest session first */
int cmd_clients(req_t *r) {
    mpb__buf_t *b = reply_begin(r);
    int64_t now = now_ms();
    mpb__w_array(b, (uint32_t)sess_count());
    for (const sess_t *s = sess_all(); s; s = LIST_NEXT(s, link)) {
        mpb__w_map(b, 10);
        sess_describe(s, b); /* session, host, pid */
        mpb__w_cstr(b, "address");
        mpb__w_cstr(b, s->peer ? s->peer->addr : "");
        mpb__w_cstr(b, "name");
        mpb__w_cstr(b, s->name);
        mpb__w_cstr(b, "connected");
        mpb__w_bool(b, s->peer != NULL);
        mpb__w_cstr(b, "age_ms");
        mpb__w_int(b, now - s->created_ms);
        mpb__w_cstr(b, "idle_ms");
        mpb__w_int(b, now - s->last_seen_ms);
        mpb__w_cstr(b, "holds");
        mpb__w_array(b, (uint32_t)s->nholds);
        for (size_t i = 0; i < s->nholds; i++) {
            mpb__w_map(b, 2);
            mpb__w_cstr(b, "object");
            w_path(b, s->holds[i].obj);
            mpb__w_cstr(b, "units");
            mpb__w_int(b, s->holds[i].units);
        }
        uint32_t nw = 0;
        for (const waiter_t *w = LIST_FIRST(&s->waiters); w; w = LIST_NEXT(w, slink))
            nw += w->obj != NULL;
        mpb__w_cstr(b, "waits");
        mpb__w_array(b, nw);
        for (const waiter_t *w = LIST_FIRST(&s->waiters); w; w = LIST_NEXT(w, slink)) {
            if (!w->obj) continue;
            mpb__w_map(b, 2);
            mpb__w_cstr(b, "object");
            w_path(b, w->obj);
            mpb__w_cstr(b, "op");
            mpb__w_cstr(b, mpb__op_name(w->op));
        }
    }
    return 0;
}

/* session.kill ID -> nil | EVALUE (no such session) | EINVAL (the caller's own: bye ends it) */
int cmd_session_kill(req_t *r) {
    uint64_t id;
    if (arg_uint(r, "session", &id)) return -1;
    if (r->sess && r->sess->id == id)
        return reply_error(r, MPB_EINVAL, "session %llu is the caller's own (bye ends it)",
                           (unsigned long long)id);
    for (sess_t *s = sess_all(); s; s = LIST_NEXT(s, link)) {
        if (s->id != id) continue;
        sess_end(s, "killed");
        return reply_nil(r);
    }
    return reply_error(r, MPB_EVALUE, "no session %llu", (unsigned long long)id);
}
