/* persist_snap.c - snapshots: a forked child writes every session, pool task and object
 * from its copy of memory while the loop goes on in a new log segment; once the snapshot is in
 * place the segments it covers are removed (compaction, automatic once the log outgrows the
 * snapshot). Also persistence's info fields and metrics. See persist.c. */
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

/* ---- snapshot: objects ---- */

static void w_blobs_deque(mpb__buf_t *b, const deque_t *d) {
    mpb__w_array(b, (uint32_t)d->len);
    for (size_t i = 0; i < d->len; i++) {
        const blob_t *x = deque_at(d, i);
        mpb__w_raw(b, x->data, x->len);
    }
}

static void w_obj(mpb__buf_t *b, const obj_t *o) {
    size_t at = persist_rec_begin(b);
    const uint32_t extra[KIND__N] = {[KIND_DICT] = 1,  [KIND_NAMESPACE] = 1, [KIND_LIST] = 1,
                                     [KIND_QUEUE] = 9, [KIND_SEMAPHORE] = 5, [KIND_CONDITION] = 2,
                                     [KIND_EVENT] = 1, [KIND_BARRIER] = 3,   [KIND_VALUE] = 1};
    mpb__w_array(b, 3 + extra[o->kind]);
    mpb__w_uint(b, R_OBJ);
    mpb__w_uint(b, o->kind);
    mpb__w_str(b, o->name, o->namelen);
    switch (o->kind) {
    case KIND_DICT:
    case KIND_NAMESPACE: {
        const omap_t *m = &o->u.dict;
        mpb__w_array(b, (uint32_t)(2 * m->live));
        for (size_t i = 0; i < m->nents; i++) {
            const dkv_t *kv = m->ents[i].item;
            if (!kv) continue;
            mpb__w_raw(b, kv->data, kv->klen);
            mpb__w_raw(b, kv->data + kv->klen, kv->vlen);
        }
        break;
    }
    case KIND_LIST: w_blobs_deque(b, &o->u.list); break;
    case KIND_QUEUE: {
        const queue_t *q = &o->u.queue;
        mpb__w_int(b, q->maxsize);
        mpb__w_bool(b, q->maxsize_set);
        mpb__w_bool(b, q->joinable);
        mpb__w_bool(b, q->joinable_set);
        /* Putters still waiting are not brought back: neither is their count. */
        mpb__w_int(b, q->joinable ? q->unfinished - (int64_t)q->putters.n : 0);
        w_blobs_deque(b, &q->items);
        mpb__w_bool(b, q->reliable);
        mpb__w_bool(b, q->reliable_set);
        mpb__w_uint(b, q->next_dv);
        mpb__w_array(
            b, (uint32_t)q->ndv); /* items handed out, not finished: [id, session, task, item] */
        for (size_t i = 0; i < q->ndv; i++) {
            const delivery_t *d = &q->dv[i];
            mpb__w_array(b, 4);
            mpb__w_uint(b, d->id);
            mpb__w_uint(b, d->sess ? d->sess->id : 0);
            mpb__w_bool(b, d->task);
            mpb__w_raw(b, d->item->data, d->item->len);
        }
        break;
    }
    case KIND_SEMAPHORE: {
        const sem_t *s = &o->u.sem;
        /* Units held go back, as when their sessions end (sync_release_hold): only up to
         * the initial value. */
        int64_t held = 0, back;
        for (size_t i = 0; i < s->nholders; i++)
            held += s->holders[i].units;
        if (__builtin_sub_overflow(s->initial, s->value, &back) || back > held) back = held;
        if (back < 0) back = 0;
        mpb__w_int(b, s->initial);
        mpb__w_int(b, s->value + back);
        mpb__w_bool(b, s->bounded);
        mpb__w_bool(b, s->value_set);
        mpb__w_bool(b, s->bounded_set);
        break;
    }
    case KIND_CONDITION:
        mpb__w_uint(b, o->u.cond.lock_kind);
        mpb__w_str(b, o->u.cond.lock_name ? o->u.cond.lock_name : "", o->u.cond.lock_namelen);
        break;
    case KIND_EVENT: mpb__w_bool(b, o->u.event.set); break;
    case KIND_BARRIER:
        mpb__w_int(b, o->u.barrier.parties);
        mpb__w_int(b, o->u.barrier.timeout_ms);
        mpb__w_bool(b, o->u.barrier.broken);
        break;
    case KIND_VALUE:
        if (o->u.value)
            mpb__w_raw(b, o->u.value->data, o->u.value->len);
        else
            mpb__w_nil(b);
        break;
    default: break;
    }
    persist_rec_end(b, at);
}

struct snap_ctx {
    mpb__buf_t *b;
    int fd, rc;
    uint64_t n;
};

/* Writes out b once it holds a megabyte. */
static int snap_flush(mpb__buf_t *b, int fd) {
    if (b->len < (1u << 20)) return 0;
    bbuf_ensure(b);
    int rc = persist_write_all(fd, b->p, b->len);
    mpb__buf_reset(b);
    return rc;
}

static void w_task(void *ctx, uint64_t id, const sess_t *owner, const char *fn, uint32_t fl,
                   const blob_t *calls, bool done, bool failed, bool canceled,
                   const blob_t *result) {
    struct snap_ctx *sc = ctx;
    if (sc->rc) return;
    size_t at = persist_rec_begin(sc->b);
    mpb__w_array(sc->b, 9);
    mpb__w_uint(sc->b, R_TASK);
    mpb__w_uint(sc->b, id);
    mpb__w_uint(sc->b, owner->id);
    mpb__w_str(sc->b, fn, fl);
    mpb__w_raw(sc->b, calls->data, calls->len);
    mpb__w_bool(sc->b, done);
    mpb__w_bool(sc->b, failed);
    mpb__w_bool(sc->b, canceled);
    persist_w_result(sc->b, done ? result : NULL);
    persist_rec_end(sc->b, at);
    sc->n++;
    sc->rc = snap_flush(sc->b, sc->fd);
}

/* The child's work: every session, pool task and object into DIR/snapshot.tmp, renamed. */
static int snap_write(uint64_t first_seg) {
    char tmp[3100], path[3100];
    snprintf(tmp, sizeof tmp, "%s/snapshot.tmp", g_persist.dir);
    snprintf(path, sizeof path, "%s/snapshot", g_persist.dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    mpb__buf_t b = {0};
    uint64_t nrec = 0;
    size_t at = persist_rec_begin(&b);
    mpb__w_array(&b, 6);
    mpb__w_uint(&b, R_SNAP);
    mpb__w_cstr(&b, SNAP_MAGIC);
    mpb__w_uint(&b, 1);
    mpb__w_uint(&b, first_seg);
    mpb__w_uint(&b, sess_next_id());
    uint64_t bound = g_persist.fence_bound;
    mpb__w_uint(&b, bound > g_fence ? bound : g_fence + FENCE_LEAD_US);
    persist_rec_end(&b, at);
    nrec++;
    int rc = 0;
    for (const sess_t *s = sess_all(); s; s = LIST_NEXT(s, link)) {
        if (s->id == 0) continue;
        persist_w_sess(&b, s);
        nrec++;
    }
    uint64_t next_task, next_job;
    pool_counters(&next_task, &next_job);
    at = persist_rec_begin(&b);
    mpb__w_array(&b, 3);
    mpb__w_uint(&b, R_POOL);
    mpb__w_uint(&b, next_task);
    mpb__w_uint(&b, next_job);
    persist_rec_end(&b, at);
    nrec++;
    struct snap_ctx sc = {&b, fd, 0, 0};
    pool_each_task(w_task, &sc);
    nrec += sc.n;
    rc = sc.rc;
    const omap_t *m = store_map();
    for (size_t i = 0; i < m->nents && rc == 0; i++) {
        const obj_t *o = m->ents[i].item;
        if (!o || o->kind == KIND_PIPE) continue; /* not kept: see persist_logs_op */
        w_obj(&b, o);
        nrec++;
        rc = snap_flush(&b, fd);
    }
    /* The references, once the objects they name are loaded. */
    for (const sess_t *s = sess_all(); s && rc == 0; s = LIST_NEXT(s, link))
        for (size_t i = 0; s->id && i < s->nrefs; i++) {
            at = persist_rec_begin(&b);
            mpb__w_array(&b, 4);
            mpb__w_uint(&b, R_AREF);
            mpb__w_str(&b, s->refs[i].obj->name, s->refs[i].obj->namelen);
            mpb__w_uint(&b, s->id);
            mpb__w_int(&b, s->refs[i].n);
            persist_rec_end(&b, at);
            nrec++;
        }
    at = persist_rec_begin(&b);
    mpb__w_array(&b, 2);
    mpb__w_uint(&b, R_END);
    mpb__w_uint(&b, nrec);
    persist_rec_end(&b, at);
    if (rc == 0) rc = persist_write_all(fd, b.p, b.len);
    mpb__buf_free(&b);
    if (rc == 0) rc = fsync(fd);
    if (close(fd) != 0) rc = -1;
    if (rc == 0) rc = rename(tmp, path);
    if (rc == 0) persist_sync_dir();
    return rc;
}

static void drop_segments_below(uint64_t seg) {
    DIR *d = opendir(g_persist.dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "log.", 4)) continue;
        unsigned long long k = strtoull(e->d_name + 4, &end, 10);
        if (*end || end == e->d_name + 4 || k >= seg) continue;
        char path[3100];
        persist_seg_path(path, sizeof path, k);
        unlink(path);
    }
    closedir(d);
}

int persist_save(char *err, size_t n) {
    if (!g_persist.on) {
        snprintf(err, n, "persistence is off (--persist off)");
        return -1;
    }
    if (g_persist.child > 0) {
        snprintf(err, n, "a snapshot is already being written (pid %d)", (int)g_persist.child);
        return -1;
    }
    /* The child's memory must be exactly the segments it replaces: write what is pending,
     * then new records go to a new segment. */
    if (persist_commit() != 0 || persist_seg_open(g_persist.seg + 1) != 0) {
        snprintf(err, n, "cannot start a new log segment: %s", strerror(errno));
        return -1;
    }
    g_persist.child_started_ns = now_ns();
    pid_t pid = fork();
    int64_t fork_us = (now_ns() - g_persist.child_started_ns) / 1000; /* the loop's stall */
    if (pid < 0) {
        snprintf(err, n, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) _exit(snap_write(g_persist.seg) == 0 ? 0 : 1);
    g_persist.child = pid;
    g_persist.child_seg = g_persist.seg;
    log_kv(MPB_LOG_INFO, "snapshot started", "pid", LOG_INT(pid), "segment",
           LOG_UINT(g_persist.seg), "fork_us", LOG_INT(fork_us), NULL);
    return 0;
}

int persist_save_req(req_t *r) {
    char err[256];
    if (!g_persist.on) return reply_error(r, MPB_EINVAL, "persistence is off (--persist off)");
    if (g_persist.child > 0)
        return reply_error(r, MPB_EBUSY, "a snapshot is already being written (pid %d)",
                           (int)g_persist.child);
    if (persist_save(err, sizeof err) != 0) return reply_error(r, MPB_EIO, "%s", err);
    if (!r->sess) return reply_nil(r);
    if (g_persist.nsavers == g_persist.capsavers) {
        g_persist.capsavers = g_persist.capsavers ? 2 * g_persist.capsavers : 4;
        g_persist.savers =
            xrealloc(g_persist.savers, g_persist.capsavers * sizeof *g_persist.savers);
    }
    g_persist.savers[g_persist.nsavers++] = (struct saver){r->sess->id, r->rid};
    r->parked = true;
    return 0;
}

/* Answers the save requests waiting for the child: {bytes, ms}, or EIO. */
static void answer_savers(bool ok, int64_t ms) {
    mpb__buf_t b = {0};
    for (size_t i = 0; i < g_persist.nsavers; i++) {
        sess_t *s = sess_lookup(g_persist.savers[i].sess);
        if (!s) continue;
        mpb__buf_reset(&b);
        mpb__w_array(&b, 3);
        mpb__w_uint(&b, g_persist.savers[i].rid);
        if (ok) {
            mpb__w_uint(&b, 0);
            mpb__w_map(&b, 2);
            mpb__w_cstr(&b, "bytes");
            mpb__w_uint(&b, g_persist.snap_bytes);
            mpb__w_cstr(&b, "ms");
            mpb__w_int(&b, ms);
        } else {
            mpb__w_uint(&b, (uint64_t)-MPB_EIO);
            mpb__w_cstr(&b, "the snapshot could not be written (see the broker's log); the log "
                            "is kept");
        }
        bbuf_ensure(&b);
        out_send_reply(s, b.p, b.len);
    }
    mpb__buf_free(&b);
    g_persist.nsavers = 0;
}

void persist_child_done(int status) {
    int64_t dur = (now_ns() - g_persist.child_started_ns) / 1000000;
    pid_t pid = g_persist.child;
    g_persist.child = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        g_persist.snaps_failed++;
        log_kv(MPB_LOG_ERROR, "snapshot failed; the log is kept", "pid", LOG_INT(pid), NULL);
        answer_savers(false, dur);
        return;
    }
    drop_segments_below(g_persist.child_seg);
    char path[3100];
    struct stat st;
    snprintf(path, sizeof path, "%s/snapshot", g_persist.dir);
    g_persist.snap_bytes = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
    g_persist.log_bytes = g_persist.end + g_persist.batch.len;
    g_persist.last_snap_ms = wall_ms();
    g_persist.last_snap_dur_ms = dur;
    g_persist.snaps_ok++;
    log_kv(MPB_LOG_INFO, "snapshot written", "bytes", LOG_UINT(g_persist.snap_bytes), "ms",
           LOG_INT(dur), NULL);
    answer_savers(true, dur);
}

void persist_tick(int64_t now) {
    if (!g_persist.on) return;
    if (g_persist.mode == FSYNC_EVERYSEC && g_persist.dirty &&
        now - g_persist.last_fsync_ms >= 1000)
        persist_do_fsync();
    /* a failed fsync in the thread: the next commit stops the broker */
    if (g_persist.child > 0) {
        int status;
        if (waitpid(g_persist.child, &status, WNOHANG) == g_persist.child)
            persist_child_done(status);
    } else if (g_persist.log_bytes > AUTO_MIN && g_persist.log_bytes > g_persist.snap_bytes) {
        char err[256];
        if (persist_save(err, sizeof err) != 0)
            log_kv(MPB_LOG_WARN, "cannot start a snapshot", "error", err, NULL);
    }
}

/* ---- info and metrics ---- */

void persist_stats(persist_stats_t *st) {
    *st = (persist_stats_t){
        .on = g_persist.on,
        .fsync_mode = g_persist.mode,
        .log_bytes = g_persist.log_bytes,
        .writes = g_persist.writes,
        .snap_bytes = g_persist.snap_bytes,
        .snaps_failed = g_persist.snaps_failed,
        .replay_failed = g_persist.replay_failed,
        .loaded_records = g_persist.loaded_records,
        .last_snap_ms = g_persist.last_snap_ms,
        .last_snap_dur_ms = g_persist.last_snap_dur_ms,
        .load_ms = g_persist.load_ms,
        .snapshot_in_progress = g_persist.child > 0,
    };
    persist_fsync_stats(&st->fsyncs, &st->last_fsync_unix_ms);
}

uint32_t persist_info(mpb__buf_t *b) {
    persist_stats_t st;
    persist_stats(&st);
    mpb__w_cstr(b, "persistence");
    if (!st.on) {
        mpb__w_map(b, 1);
        mpb__w_cstr(b, "enabled");
        mpb__w_bool(b, false);
        return 1;
    }
    static const char *const modes[] = {"no", "everysec", "always"};
    /* u: unsigned, i: signed, b: bool; times are Unix ms */
    const struct {
        const char *key;
        char type;
        int64_t v;
    } fields[] = {
        {"log_bytes",                 'u', (int64_t)st.log_bytes     },
        {"last_fsync_ms",             'i', st.last_fsync_unix_ms     },
        {"snapshot_bytes",            'u', (int64_t)st.snap_bytes    },
        {"last_snapshot_ms",          'i', st.last_snap_ms           },
        {"last_snapshot_duration_ms", 'i', st.last_snap_dur_ms       },
        {"snapshot_in_progress",      'b', st.snapshot_in_progress   },
        {"replay_failed",             'u', (int64_t)st.replay_failed },
        {"loaded_records",            'u', (int64_t)st.loaded_records},
        {"load_ms",                   'i', st.load_ms                },
    };
    size_t n = sizeof fields / sizeof fields[0];
    mpb__w_map(b, (uint32_t)(2 + n));
    mpb__w_cstr(b, "enabled");
    mpb__w_bool(b, true);
    mpb__w_cstr(b, "fsync");
    mpb__w_cstr(b, modes[st.fsync_mode]);
    for (size_t i = 0; i < n; i++) {
        mpb__w_cstr(b, fields[i].key);
        if (fields[i].type == 'u')
            mpb__w_uint(b, (uint64_t)fields[i].v);
        else if (fields[i].type == 'b')
            mpb__w_bool(b, fields[i].v != 0);
        else
            mpb__w_int(b, fields[i].v);
    }
    return 1;
}
