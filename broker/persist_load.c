/* persist_load.c - a start: the snapshot loaded, then every log segment after it replayed
 * through the same handlers that served the requests; a segment damaged in its middle refuses
 * the start, or with --repair is cut there and what was cut reported. See persist.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "persist_int.h"

/* ---- replay ---- */

static mpb__buf_t replay_out;
static sess_t *replay_fallback;
static sess_t *replay_last; /* the session of the last record: most come in runs */

static sess_t *replay_sess(uint64_t id) {
    sess_t *last = replay_last;
    if (last && last->id == id && id) return last;
    sess_t *s = id ? sess_lookup(id) : NULL;
    if (!s) {
        /* Its session record went with an older segment: it runs as nobody's. */
        if (!replay_fallback) replay_fallback = sess_restore(0, NULL, "", 0, "replay");
        return replay_fallback;
    }
    return replay_last = s;
}

/* Where the record being applied is (its segment and offset), for the warnings below. */
static const char *rec_path = "";
static size_t rec_off;

/* A record whose checksum holds but that cannot be applied (a shape or type this code does
 * not know, a request that fails): the state loaded is not the one that was. It is said with
 * where the record is, counted in info's replay_failed and skipped; the rest is replayed. */
static void rec_skipped(const char *msg, const char *key, const char *what, uint64_t sess) {
    g_persist.replay_failed++;
    log_kv(MPB_LOG_WARN, msg, "path", rec_path, "offset", LOG_UINT(rec_off), key, what, "session",
           LOG_UINT(sess), NULL);
}

/* A logged request took effect when it ran, so it must again: one that fails now (another
 * kind under its name, an index out of range) is reported and skipped. */
static void replay_check(const req_t *r) {
    mpb__buf_t *o = &replay_out;
    bbuf_ensure(o);
    mpb__rd_t rd = {o->p, o->p + o->len};
    uint32_t three;
    uint64_t rid, code;
    const char *msg = "";
    uint32_t ml = 0;
    if (r->parked || !o->len || mpb__rd_array(&rd, &three) || three != 3 ||
        mpb__rd_uint(&rd, &rid) || mpb__rd_uint(&rd, &code) || code == 0)
        return;
    if (mpb__rd_str(&rd, &msg, &ml)) ml = 0;
    char what[300];
    snprintf(what, sizeof what, "%s %.*s: %.*s", mpb__op_name(r->op) ? mpb__op_name(r->op) : "?",
             (int)(r->name ? r->namelen : 0), r->name ? r->name : "", (int)ml, msg);
    rec_skipped("a logged request failed at replay: skipped", "request", what,
                r->sess ? r->sess->id : 0);
}

static void replay_req(sess_t *s, const uint8_t *v, size_t vn) {
    mpb__rd_t q = {v, v + vn};
    uint32_t n;
    uint64_t rid = 0, op = 0;
    req_t r = {.sess = s};
    if (mpb__rd_array(&q, &n) || n < 3 || mpb__rd_uint(&q, &rid) || mpb__rd_uint(&q, &op)) {
        rec_skipped("a logged request is not [rid, op, name, args...]: skipped", "request", "?",
                    s->id);
        return;
    }
    r.rid = rid;
    r.op = (unsigned)(op > 0xffff ? 0xffff : op);
    if (req_read_name(&r, &q) != 0) {
        rec_skipped("a logged request names no object: skipped", "request",
                    mpb__op_name(r.op) ? mpb__op_name(r.op) : "?", s->id);
        return;
    }
    r.args = q;
    r.argc = n - 3;
    mpb__buf_reset(&replay_out);
    r.out = &replay_out;
    dispatch(&r);
    replay_check(&r);
    /* The reply cache comes back with the requests: a resend after the restart is answered. */
    if (rid && !r.parked) replay_note(s, rid, r.op, replay_out.p, replay_out.len);
}

static void str_copy(mpb__rd_t *r, char *out, size_t n) {
    const char *s;
    uint32_t sl;
    out[0] = 0;
    if (mpb__rd_str(r, &s, &sl) == 0) snprintf(out, n, "%.*s", (int)sl, s);
}

int persist_load_obj(mpb__rd_t *r, uint32_t n);

/* A result is a msgpack array, or nil (none yet). */
static int rd_result(mpb__rd_t *r, const uint8_t **v, size_t *n) {
    if (mpb__rd_nil(r) == 0) {
        *v = NULL;
        *n = 0;
        return 0;
    }
    return mpb__rd_type(r) == MPB__MT_ARRAY ? mpb__rd_span(r, v, n) : -1;
}

static int load_task(mpb__rd_t *r, uint64_t type, uint32_t len) {
    uint64_t id, owner = 0;
    const char *fn = NULL;
    uint32_t fl = 0;
    const uint8_t *calls = NULL, *res;
    size_t cn = 0, rn;
    bool done = true, failed, canceled;
    if (type == R_TASK_DONE ? len != 5 : len != 9) return -1;
    if (mpb__rd_uint(r, &id)) return -1;
    if (type == R_TASK &&
        (mpb__rd_uint(r, &owner) || mpb__rd_str(r, &fn, &fl) || mpb__rd_type(r) != MPB__MT_ARRAY ||
         mpb__rd_span(r, &calls, &cn) || mpb__rd_bool(r, &done)))
        return -1;
    if (mpb__rd_bool(r, &failed) || mpb__rd_bool(r, &canceled) || rd_result(r, &res, &rn))
        return -1;
    if (type == R_TASK_DONE) {
        pool_restore_finish(id, failed, canceled, res, rn);
        return 0;
    }
    sess_t *s = sess_lookup(owner);
    if (!s) return 0; /* its caller's session is not in the snapshot: nobody would take it */
    return pool_restore_task(id, s, fn, fl, calls, cn, done, failed, canceled, res, rn);
}

/* The types a log segment holds; the others are the snapshot's. */
static bool log_type(uint64_t type) {
    return type == R_REQ || type == R_SESS || type == R_SESS_END || type == R_FENCE ||
           type == R_TASK_DONE || type == R_ANON_GONE;
}

/* Applies one record of the snapshot (first_seg set) or of the log (NULL); -1 if its type or
 * shape is not one this code knows. */
static int apply(const uint8_t *p, size_t n, uint64_t *first_seg) {
    mpb__rd_t r = {p, p + n};
    uint32_t len;
    uint64_t type, id;
    if (mpb__rd_array(&r, &len) || len < 2 || mpb__rd_uint(&r, &type)) return -1;
    if (!first_seg && !log_type(type)) return -1;
    switch (type) {
    case R_REQ: {
        const uint8_t *v;
        size_t vn;
        uint64_t seq;
        if (len != 4 || mpb__rd_uint(&r, &id) || mpb__rd_uint(&r, &seq) ||
            mpb__rd_span(&r, &v, &vn))
            return -1;
        sess_t *s = replay_sess(id);
        if (seq > s->seq_hi) s->seq_hi = seq; /* resends after the restart are still known */
        replay_req(s, v, vn);
        return 0;
    }
    case R_SESS: {
        const uint8_t *tok;
        uint32_t tl;
        int64_t pid = 0;
        char host[64], name[64];
        if (len != 6 || mpb__rd_uint(&r, &id) || mpb__rd_bin(&r, &tok, &tl) || tl != MPB__TOKEN_LEN)
            return -1;
        str_copy(&r, host, sizeof host);
        mpb__rd_int(&r, &pid);
        str_copy(&r, name, sizeof name);
        if (!sess_lookup(id)) sess_restore(id, tok, host, pid, name);
        return 0;
    }
    case R_SESS_END:
        if (mpb__rd_uint(&r, &id)) return -1;
        if (replay_last && replay_last->id == id) replay_last = NULL;
        sess_end_id(id, "ended before the restart");
        return 0;
    case R_FENCE:
        if (mpb__rd_uint(&r, &id)) return -1;
        if (id > g_fence) g_fence = id;
        if (id > g_persist.fence_bound) g_persist.fence_bound = id;
        return 0;
    case R_OBJ: return persist_load_obj(&r, len);
    case R_ANON_GONE:
    case R_AREF: {
        const char *name;
        uint32_t nl;
        int64_t nref = 0;
        if (len != (type == R_AREF ? 4u : 2u) || mpb__rd_str(&r, &name, &nl)) return -1;
        obj_t *o = store_get(name, nl);
        if (type == R_ANON_GONE) {
            if (o) anon_replay_gone(o);
            return 0;
        }
        if (mpb__rd_uint(&r, &id) || mpb__rd_int(&r, &nref) || !o) return -1;
        sess_t *s = sess_lookup(id);
        return s ? anon_restore_ref(s, o, nref) : -1;
    }
    case R_TASK_DONE:
    case R_TASK: return load_task(&r, type, len);
    case R_POOL: {
        uint64_t task, job;
        if (len != 3 || mpb__rd_uint(&r, &task) || mpb__rd_uint(&r, &job)) return -1;
        pool_set_counters(task, job);
        return 0;
    }
    case R_SNAP: {
        const char *magic;
        uint32_t ml;
        uint64_t ver, seg, next, fence;
        if (len != 6 || mpb__rd_str(&r, &magic, &ml) || ml != strlen(SNAP_MAGIC) ||
            memcmp(magic, SNAP_MAGIC, ml) || mpb__rd_uint(&r, &ver) || ver != 1 ||
            mpb__rd_uint(&r, &seg) || mpb__rd_uint(&r, &next) || mpb__rd_uint(&r, &fence))
            return -1;
        if (first_seg) *first_seg = seg;
        sess_bump_id(next);
        if (fence > g_fence) g_fence = fence;
        if (fence > g_persist.fence_bound) g_persist.fence_bound = fence;
        return 0;
    }
    case R_END: return 0;
    default: return -1;
    }
}

static int rd_blobs(mpb__rd_t *r, deque_t *d) {
    uint32_t n;
    if (mpb__rd_array(r, &n)) return -1;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *v;
        size_t vn;
        if (mpb__rd_span(r, &v, &vn)) return -1;
        deque_push_back(d, blob_new(v, vn));
    }
    return 0;
}

/* A queue's state, and its deliveries: each back with its taker's session (which holds it, so
 * that the session's end puts the item back), or at the front of the queue if the session is
 * gone, as its end would have done. */
static int load_queue(obj_t *o, mpb__rd_t *r) {
    queue_t *q = &o->u.queue;
    uint32_t n;
    if (mpb__rd_int(r, &q->maxsize) || mpb__rd_bool(r, &q->maxsize_set) ||
        mpb__rd_bool(r, &q->joinable) || mpb__rd_bool(r, &q->joinable_set) ||
        mpb__rd_int(r, &q->unfinished) || rd_blobs(r, &q->items) || mpb__rd_bool(r, &q->reliable) ||
        mpb__rd_bool(r, &q->reliable_set) || mpb__rd_uint(r, &q->next_dv) || mpb__rd_array(r, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t four;
        uint64_t id, sid;
        bool task;
        const uint8_t *v;
        size_t vn;
        if (mpb__rd_array(r, &four) || four != 4 || mpb__rd_uint(r, &id) || mpb__rd_uint(r, &sid) ||
            mpb__rd_bool(r, &task) || mpb__rd_span(r, &v, &vn))
            return -1;
        sess_t *s = sid ? sess_lookup(sid) : NULL;
        if (!s) {
            if (!task && q->joinable) q->unfinished++;
            deque_push_front(&q->items, blob_new(v, vn));
            continue;
        }
        if (q->ndv == q->capdv)
            q->dv = xrealloc(q->dv, (q->capdv = q->capdv ? 2 * q->capdv : 4) * sizeof *q->dv);
        q->dv[q->ndv++] = (delivery_t){id, s, blob_new(v, vn), task};
        sess_hold(s, o, id, 1);
    }
    return 0;
}

int persist_load_obj(mpb__rd_t *r, uint32_t len) {
    uint64_t kind;
    const char *name;
    uint32_t nl;
    if (len < 3 || mpb__rd_uint(r, &kind) || kind == KIND_NONE || kind >= KIND__N ||
        mpb__rd_str(r, &name, &nl) || !mpb__name_ok(name, nl) || store_get(name, nl))
        return -1;
    obj_t *o = store_create((kind_t)kind, name, nl);
    if (anon_name(name, nl)) anon_loaded(o);
    switch (o->kind) {
    case KIND_DICT:
    case KIND_NAMESPACE: {
        uint32_t n;
        if (mpb__rd_array(r, &n) || n % 2) return -1;
        for (uint32_t i = 0; i < n; i += 2) {
            const uint8_t *k, *v;
            size_t kn, vn;
            if (mpb__rd_span(r, &k, &kn) || mpb__rd_span(r, &v, &vn)) return -1;
            uint64_t h = mpb__hash(k, kn);
            if (omap_find(&o->u.dict, k, kn, h) >= 0) return -1;
            dkv_t *kv = xmalloc(sizeof *kv + kn + vn);
            kv->klen = (uint32_t)kn;
            kv->vlen = (uint32_t)vn;
            memcpy(kv->data, k, kn);
            memcpy(kv->data + kn, v, vn);
            omap_add(&o->u.dict, kv, h);
        }
        return 0;
    }
    case KIND_LIST: return rd_blobs(r, &o->u.list);
    case KIND_QUEUE: return load_queue(o, r);
    case KIND_SEMAPHORE: {
        sem_t *s = &o->u.sem;
        if (mpb__rd_int(r, &s->initial) || mpb__rd_int(r, &s->value) ||
            mpb__rd_bool(r, &s->bounded) || mpb__rd_bool(r, &s->value_set) ||
            mpb__rd_bool(r, &s->bounded_set))
            return -1;
        return 0;
    }
    case KIND_CONDITION: {
        uint64_t lk;
        const char *ln;
        uint32_t lnl;
        if (mpb__rd_uint(r, &lk) || mpb__rd_str(r, &ln, &lnl)) return -1;
        o->u.cond.lock_kind = (kind_t)lk;
        o->u.cond.lock_name = lnl ? xstrndup(ln, lnl) : NULL;
        o->u.cond.lock_namelen = lnl;
        return 0;
    }
    case KIND_EVENT: return mpb__rd_bool(r, &o->u.event.set) ? -1 : 0;
    case KIND_BARRIER:
        return mpb__rd_int(r, &o->u.barrier.parties) || mpb__rd_int(r, &o->u.barrier.timeout_ms) ||
                       mpb__rd_bool(r, &o->u.barrier.broken)
                   ? -1
                   : 0;
    case KIND_VALUE: {
        const uint8_t *v;
        size_t vn;
        if (mpb__rd_nil(r) == 0) return 0;
        if (mpb__rd_span(r, &v, &vn)) return -1;
        o->u.value = blob_new(v, vn);
        return 0;
    }
    default: return 0;
    }
}

/* ---- start ---- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static size_t list_segments(uint64_t **out) {
    size_t n = 0, cap = 0;
    uint64_t *v = NULL;
    DIR *d = opendir(g_persist.dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            char *end;
            if (strncmp(e->d_name, "log.", 4)) continue;
            unsigned long long k = strtoull(e->d_name + 4, &end, 10);
            if (*end || end == e->d_name + 4) continue;
            if (n == cap) v = xrealloc(v, (cap = cap ? cap * 2 : 8) * sizeof *v);
            v[n++] = k;
        }
        closedir(d);
    }
    if (n) qsort(v, n, sizeof *v, cmp_u64);
    *out = v;
    return n;
}

static bool all_zero(const uint8_t *p, size_t n) {
    while (n--)
        if (*p++) return false;
    return true;
}

/* Counts the records readable after a damaged one, skipping it by its length if plausible. */
static uint64_t count_after(const uint8_t *p, size_t n, size_t off) {
    uint32_t len = n - off >= REC_HDR ? persist_get32(p + off) : 0;
    if (len == 0 || len > n - off - REC_HDR) return 0;
    uint64_t k = 0;
    const uint8_t *pl;
    size_t pn;
    for (off += REC_HDR + len; persist_rec_next(p, n, off, &pl, &pn) == 1; off += REC_HDR + pn)
        k++;
    return k;
}

/* Saves bytes [off, n) of a segment beside it before they are cut, for a later look. */
static void keep_cut(const char *path, const uint8_t *p, size_t n, size_t off) {
    char cut[3200];
    snprintf(cut, sizeof cut, "%s.cut-at-%zu", path, off);
    int fd = open(cut, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    if (persist_write_all(fd, p + off, n - off) == 0) fsync(fd);
    close(fd);
}

static int cut_at(const char *path, size_t off) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0) {
        log_kv(MPB_LOG_ERROR, "cannot cut the log", "path", path, "error", strerror(errno), NULL);
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* Replays one segment; a bad record is a torn tail (cut) when it is the last thing in the
 * last segment, else damage: refused, or cut with repair. *stop: later segments are dropped. */
static int replay_segment(uint64_t seg, bool last, bool repair, bool *stop) {
    char path[3100];
    persist_seg_path(path, sizeof path, seg);
    uint8_t *p;
    size_t n, off = 0;
    if (persist_read_file(path, &p, &n) != 0) {
        log_kv(MPB_LOG_ERROR, "cannot read the log", "path", path, "error", strerror(errno), NULL);
        return -1;
    }
    const uint8_t *pl;
    size_t pn;
    int rc;
    rec_path = path;
    while ((rc = persist_rec_next(p, n, off, &pl, &pn)) == 1) {
        rec_off = off;
        /* Sound (its checksum holds, its msgpack is whole) but not one this code can apply:
         * not damage, so neither cut nor refused, but not loaded either. */
        if (apply(pl, pn, NULL) != 0) {
            mpb__rd_t t = {pl, pl + pn};
            uint32_t len;
            uint64_t ty;
            char type[24] = "?";
            if (!mpb__rd_array(&t, &len) && !mpb__rd_uint(&t, &ty))
                snprintf(type, sizeof type, "%llu", (unsigned long long)ty);
            rec_skipped("a logged record could not be applied at replay: skipped", "type", type, 0);
        }
        g_persist.loaded_records++;
        off += REC_HDR + pn;
    }
    rec_path = "";
    if (rc == 0) {
        free(p);
        return 0;
    }
    uint32_t len = n - off >= REC_HDR ? persist_get32(p + off) : 0;
    if (last && all_zero(p + off, n - off)) {
        /* Nothing but zeros after the last record: the space --fsync always fills ahead of
         * its writes (or a write that left nothing). Not a record: cut without a word. */
        log_kv(MPB_LOG_INFO, "zero-filled space after the last record cut", "path", path, "offset",
               LOG_UINT(off), "bytes", LOG_UINT(n - off), NULL);
        free(p);
        return cut_at(path, off);
    }
    /* A record cut short by a crash is the last thing written: after it, the file ends or
     * there are only the zeros filled ahead of it. */
    bool torn = last && (n - off < REC_HDR || len == 0 || len > n - off - REC_HDR ||
                         all_zero(p + off + REC_HDR + len, n - off - REC_HDR - len));
    if (torn) {
        log_kv(MPB_LOG_WARN, "torn record at the end of the log cut", "path", path, "offset",
               LOG_UINT(off), "bytes_cut", LOG_UINT(n - off), NULL);
    } else {
        uint64_t after = count_after(p, n, off);
        if (!repair) {
            log_kv(MPB_LOG_ERROR,
                   "damaged record in the middle of the log: refusing to start (start with "
                   "--repair to cut the log there and keep what is before it)",
                   "path", path, "offset", LOG_UINT(off), "bytes_after", LOG_UINT(n - off),
                   "records_after", LOG_UINT(after), NULL);
            free(p);
            return -1;
        }
        log_kv(MPB_LOG_WARN, "repair: log cut at a damaged record; what followed it is lost",
               "path", path, "offset", LOG_UINT(off), "bytes_lost", LOG_UINT(n - off),
               "records_lost", LOG_UINT(after + 1), NULL);
        *stop = true;
    }
    keep_cut(path, p, n, off);
    free(p);
    return cut_at(path, off);
}

static int load_snapshot(uint64_t *first_seg) {
    char path[3100];
    snprintf(path, sizeof path, "%s/snapshot", g_persist.dir);
    uint8_t *p;
    size_t n, off = 0;
    if (persist_read_file(path, &p, &n) != 0) return errno == ENOENT ? 0 : -1;
    const uint8_t *pl;
    size_t pn;
    int rc;
    uint64_t nrec = 0;
    bool ended = false;
    while ((rc = persist_rec_next(p, n, off, &pl, &pn)) == 1) {
        if ((nrec == 0) != (pl[0] == 0x96 && pl[1] == R_SNAP) || apply(pl, pn, first_seg) != 0) {
            rc = -1;
            break;
        }
        nrec++;
        off += REC_HDR + pn;
        if (pl[1] == R_END) {
            ended = off == n;
            break;
        }
    }
    free(p);
    if (rc < 0 || !ended) {
        log_kv(MPB_LOG_ERROR, "the snapshot is damaged: refusing to start", "path", path, "offset",
               LOG_UINT(off), NULL);
        return -1;
    }
    g_persist.loaded_records += nrec;
    return 0;
}

int persist_open(const char *dir, bool on, int fsync_mode, bool repair) {
    g_persist.on = on;
    g_persist.mode = fsync_mode;
    if (!on) return 0;
    persist_crc_init();
    snprintf(g_persist.dir, sizeof g_persist.dir, "%s", dir);
    int64_t t0 = now_ns();
    g_persist.replaying = true;
    uint64_t first = 0, *segs;
    int rc = load_snapshot(&first);
    size_t nseg = list_segments(&segs);
    bool stop = false;
    uint64_t seg = first;
    for (size_t i = 0; i < nseg && rc == 0; i++) {
        char path[3100];
        if (segs[i] < first || stop) {
            /* covered by the snapshot (a crash before they were removed), or after a cut */
            persist_seg_path(path, sizeof path, segs[i]);
            if (stop) {
                char moved[3200];
                snprintf(moved, sizeof moved, "%s.after-cut", path);
                rename(path, moved);
            } else {
                unlink(path);
            }
            continue;
        }
        rc = replay_segment(segs[i], i + 1 == nseg, repair, &stop);
        seg = segs[i];
    }
    free(segs);
    replay_last = NULL;
    if (replay_fallback) {
        sess_end_id(0, "replay");
        replay_fallback = NULL;
    }
    sess_restore_done();
    anon_restore_done();
    g_persist.replaying = false;
    mpb__buf_free(&replay_out);
    if (rc != 0) return -1;
    if (persist_seg_open(seg) != 0) return -1;
    g_persist.log_bytes = g_persist.end;
    struct stat st;
    char path[3100];
    snprintf(path, sizeof path, "%s/snapshot", g_persist.dir);
    g_persist.snap_bytes = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
    g_persist.load_ms = (now_ns() - t0) / 1000000;
    g_persist.last_fsync_ms = now_ms();
    /* Tokens handed out from now on are above every one the log knows of. */
    if (g_persist.fence_bound > g_fence) g_fence = g_persist.fence_bound;
    log_kv(MPB_LOG_INFO, "state loaded", "records", LOG_UINT(g_persist.loaded_records), "objects",
           LOG_UINT(store_count()), "sessions", LOG_UINT(sess_count()), "ms",
           LOG_INT(g_persist.load_ms), NULL);
    return 0;
}
