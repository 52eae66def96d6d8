/* sess.c - sessions: one per client, outliving its connections (a client that reconnects
 * proves the key again and resumes it). What a session holds (lock ownership, semaphore units,
 * deliveries of reliable queues, notifications) is kept in its holds and given back, through
 * its kind's hooks, when it ends: by bye, kill, or silence past session-ttl. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anon.h"
#include "kind.h"
#include "limits.h"
#include "metrics.h"
#include "persist.h"
#include "pool.h"
#include "replay.h"
#include "sess.h"

static LIST_HEAD(, sess) sessions;
static size_t nsessions;
static uint64_t next_id;

size_t sess_count(void) {
    return nsessions;
}

sess_t *sess_lookup(uint64_t id) {
    sess_t *s;
    LIST_FOREACH(s, &sessions, link)
    if (s->id == id) return s;
    return NULL;
}

/* Whether peer p may open one more session: 0, or -1 with the limit it would pass in why.
 * Counted per connection (sessions it opened that live on, across new handshakes on it), so
 * that one connection cannot open thousands, and in all. Resuming one opens none. */
int sess_admit(const peer_t *p, char *why, size_t n) {
    if (nsessions >= g_limits.max_sessions) {
        snprintf(why, n, "sessions at max-sessions %zu: try again later", g_limits.max_sessions);
        g_sessions_refused++;
        return -1;
    }
    if (p->nsess_opened >= g_limits.max_sessions_per_conn) {
        snprintf(why, n, "this connection opened max-sessions-per-conn %zu live sessions",
                 g_limits.max_sessions_per_conn);
        g_sessions_refused++;
        return -1;
    }
    return 0;
}

sess_t *sess_new(void) {
    sess_t *s = xcalloc(1, sizeof *s);
    s->id = ++next_id;
    if (mpb__random(s->token, sizeof s->token)) fatal("no randomness for a session token");
    s->created_ms = s->last_seen_ms = now_ms();
    LIST_INSERT_HEAD(&sessions, s, link);
    nsessions++;
    return s;
}

/* ---- sessions brought back from the log (persist.c) ---- */

sess_t *sess_restore(uint64_t id, const uint8_t *token, const char *host, int64_t pid,
                     const char *name) {
    uint64_t next = next_id;
    sess_t *s = sess_new();
    next_id = id > next ? id : next;
    s->id = id;
    if (token) memcpy(s->token, token, MPB__TOKEN_LEN);
    snprintf(s->host, sizeof s->host, "%s", host);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->pid = pid;
    return s;
}

void sess_bump_id(uint64_t next) {
    if (next > next_id) next_id = next;
}

void sess_end_id(uint64_t id, const char *why) {
    sess_t *s = sess_lookup(id);
    if (s) sess_end(s, why);
}

void sess_restore_done(void) {
    sess_t *s;
    LIST_FOREACH(s, &sessions, link) {
        /* Locks and semaphore units go; items of reliable queues stay with their takers,
         * who may resume and finish them (their session's end puts them back). */
        for (size_t i = s->nholds; i-- > 0;) {
            const kind_ops_t *k = kind_ops(s->holds[i].obj->kind);
            if (k->hold_outlives_restart) continue;
            hold_t h = s->holds[i];
            s->holds[i] = s->holds[--s->nholds];
            if (k->release_hold) k->release_hold(s, &h);
        }
        s->last_seen_ms = now_ms(); /* the TTL to resume starts now */
    }
}

uint64_t sess_next_id(void) {
    return next_id;
}

sess_t *sess_all(void) {
    return LIST_FIRST(&sessions);
}

void sess_forget_obj(obj_t *o) {
    sess_t *s;
    LIST_FOREACH(s, &sessions, link)
    for (size_t i = 0; i < s->nholds;)
        if (s->holds[i].obj == o)
            s->holds[i] = s->holds[--s->nholds];
        else
            i++;
}

/* Drops a session's parked requests and gives back what it held, waking the next waiters. */
static void sess_release(sess_t *s) {
    while (!LIST_EMPTY(&s->waiters)) {
        waiter_t *w = LIST_FIRST(&s->waiters);
        obj_t *o = w->obj;
        blob_t *item = w->item;
        waiter_free(w);
        const kind_ops_t *k = o ? kind_ops(o->kind) : NULL;
        if (k && k->on_waiter_gone)
            k->on_waiter_gone(o, item);
        else
            free(item);
    }
    while (s->nholds) {
        hold_t h = s->holds[--s->nholds];
        const kind_ops_t *k = kind_ops(h.obj->kind);
        if (k->release_hold) k->release_hold(s, &h);
    }
    anon_sess_end(s); /* last: what it held in them is given back already */
    pool_sess_end(s);
    replay_free(s);
    free(s->holds);
    s->holds = NULL;
}

void sess_describe(const sess_t *s, mpb__buf_t *b) {
    mpb__w_cstr(b, "session");
    mpb__w_uint(b, s ? s->id : 0);
    mpb__w_cstr(b, "host");
    mpb__w_cstr(b, s ? s->host : "");
    mpb__w_cstr(b, "pid");
    mpb__w_int(b, s ? s->pid : 0);
}

void sess_end(sess_t *s, const char *why) {
    /* A session that says bye is routine; one that goes silent is news. */
    log_kv(strcmp(why, "bye") && !persist_replaying() ? MPB_LOG_INFO : MPB_LOG_DEBUG,
           "session ended", "session", LOG_UINT(s->id), "reason", why, "host", s->host, "pid",
           LOG_INT(s->pid), "name", s->name, NULL);
    if (s->peer) {
        s->peer->sess = NULL;
        s->peer = NULL;
    }
    persist_session_end(s);
    peer_t *origin = peer_find(s->origin, s->originlen);
    if (origin && origin->nsess_opened) origin->nsess_opened--;
    sess_release(s);
    LIST_REMOVE(s, link);
    nsessions--;
    free(s);
}

void sess_expire(int64_t now) {
    sess_t *s, *next;
    for (s = LIST_FIRST(&sessions); s; s = next) {
        next = LIST_NEXT(s, link);
        if (now - s->last_seen_ms > g_limits.session_ttl_ms) {
            g_sessions_expired++;
            sess_end(s, "expired");
        }
    }
}

/* ---- what sessions hold ---- */

void sess_hold(sess_t *s, obj_t *o, uint64_t tid, int64_t units) {
    for (size_t i = 0; i < s->nholds; i++) {
        if (s->holds[i].obj == o && s->holds[i].tid == tid) {
            s->holds[i].units += units;
            return;
        }
    }
    if (s->nholds == s->capholds) {
        s->capholds = s->capholds ? s->capholds * 2 : 4;
        s->holds = xrealloc(s->holds, s->capholds * sizeof *s->holds);
    }
    s->holds[s->nholds++] = (hold_t){o, tid, units};
}

int64_t sess_unhold(sess_t *s, obj_t *o, uint64_t tid, int64_t units) {
    for (size_t i = 0; i < s->nholds; i++) {
        hold_t *h = &s->holds[i];
        if (h->obj != o || h->tid != tid) continue;
        int64_t took = units < h->units ? units : h->units;
        h->units -= took;
        if (h->units == 0) s->holds[i] = s->holds[--s->nholds];
        return took;
    }
    return 0;
}
