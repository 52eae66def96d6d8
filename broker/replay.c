/* replay.c - exactly-once answers for a client that resends: each session keeps the replies
 * to its recent requests that changed something (or waited), and a request the client sends
 * again on a new channel, after a cut or a restart, is answered from here instead of running
 * twice. A retried queue.put, dict.incr, list.append or pool.submit thus applies once.
 *
 *   sess ── replay ──> ring of the last reply-cache replies, oldest overwritten first
 *                      [rid 41 | [41,0,nil]] [rid 42 | [42,0,7]] ... [rid 40 | ...]
 *
 * Which requests are resends is decided by the frame's sequence number (server.c): a client
 * that resumes its session keeps numbering its frames where it was and resends the frames
 * that got no reply with their original numbers, so a frame numbered at or below the highest
 * the session ever accepted (s->seq_hi) carried requests the broker has already seen. */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

struct replay {
    uint64_t *rids;
    blob_t **replies; /* NULL: empty slot */
    size_t cap, next; /* next: the slot written next (the oldest once full) */
    size_t n, bytes;  /* replies kept, and their bytes */
};

/* Ops whose rerun is harmless (they change nothing and never wait): not worth a copy. */
bool replay_cacheable(unsigned op) {
    const command_t *cmd = command_find(op);
    if (!cmd || (cmd->flags & CMD_READ)) return false;
    switch (op) {
    case MPB_OP_PING:
    case MPB_OP_INFO:
    case MPB_OP_OBJ_LIST:
    case MPB_OP_OBJ_INFO:
    case MPB_OP_POOL_STATS:
    case MPB_OP_POOL_FNINFO: return false;
    default: return true;
    }
}

/* Drops the oldest kept reply. */
static void evict(struct replay *c) {
    size_t i = (c->next + c->cap - c->n) % c->cap;
    c->bytes -= c->replies[i]->len;
    free(c->replies[i]);
    c->replies[i] = NULL;
    c->n--;
}

/* Keeps at most reply-cache replies and reply-cache-bytes of them per session: a page of
 * results (pool.take) can be megabytes, and ten thousand sessions each keep theirs. A reply
 * larger than the byte bound alone is not kept. */
static void put(sess_t *s, uint64_t rid, const uint8_t *reply, size_t n) {
    size_t cap = g_limits.reply_cache;
    if (!cap || n > g_limits.reply_cache_bytes) return;
    /* Short of memory the copy is not kept (a resend then hears EREPLAY): a reply the client
     * may never ask for again is no reason to abort. */
    blob_t *kept = malloc(sizeof *kept + n);
    if (!kept) return;
    kept->len = (uint32_t)n;
    memcpy(kept->data, reply, n);
    struct replay *c = s->replay;
    if (!c) {
        c = s->replay = xcalloc(1, sizeof *c);
        c->cap = cap;
        c->rids = xcalloc(cap, sizeof *c->rids);
        c->replies = xcalloc(cap, sizeof *c->replies);
    }
    while (c->n && (c->n == c->cap || c->bytes + n > g_limits.reply_cache_bytes))
        evict(c);
    c->rids[c->next] = rid;
    c->replies[c->next] = kept;
    c->next = (c->next + 1) % c->cap;
    c->n++;
    c->bytes += n;
}

void replay_note(sess_t *s, uint64_t rid, unsigned op, const uint8_t *reply, size_t n) {
    if (!s || !rid || !replay_cacheable(op)) return;
    put(s, rid, reply, n);
}

/* Every parked request is one that waited, so each of its answers is kept; its rid is in the
 * reply itself. */
void replay_note_parked(sess_t *s, const uint8_t *reply, size_t n) {
    mpb__rd_t r = {reply, reply + n};
    uint32_t len;
    uint64_t rid;
    if (!s || mpb__rd_array(&r, &len) || mpb__rd_uint(&r, &rid) || !rid) return;
    put(s, rid, reply, n);
}

const blob_t *replay_find(const sess_t *s, uint64_t rid) {
    const struct replay *c = s->replay;
    if (!c) return NULL;
    for (size_t k = 1; k <= c->n; k++) { /* newest first: a rid a client reused is its last */
        size_t i = (c->next + c->cap - k) % c->cap;
        if (c->rids[i] == rid) return c->replies[i];
    }
    return NULL;
}

bool replay_parked(const sess_t *s, uint64_t rid) {
    for (const waiter_t *w = LIST_FIRST(&s->waiters); w; w = LIST_NEXT(w, slink))
        if (w->rid == rid) return true;
    return false;
}

size_t replay_bytes(const sess_t *s) {
    const struct replay *c = s->replay;
    size_t n = 0;
    if (!c) return 0;
    n = sizeof *c + c->cap * (sizeof *c->rids + sizeof *c->replies);
    return n + c->n * sizeof(blob_t) + c->bytes;
}

void replay_free(sess_t *s) {
    struct replay *c = s->replay;
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++)
        free(c->replies[i]);
    free(c->replies);
    free(c->rids);
    free(c);
    s->replay = NULL;
}
uint64_t g_replayed;
