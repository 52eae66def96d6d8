/* persist.c - the broker's state on disk. Every request that changes state is appended to a
 * log (the request itself, with the session that made it) before its reply leaves; a start
 * loads the snapshot and runs the log's requests again through the same handlers. A snapshot
 * is written by a forked child from its copy of memory while the loop goes on writing a new
 * log segment; once it is in place the segments it covers are removed. Formats: PERSISTENCE.md.
 *
 *   DATA/snapshot        state up to the start of segment K (header says K)
 *   DATA/log.K           records since, one write() per loop turn
 *   DATA/log.K+1 ...     segments opened by later snapshots
 *
 * A record is [u32 len][u32 crc32c(payload)][payload: one msgpack array], little-endian.
 *
 * This file writes the log: its records, one pwrite() per loop turn (group commit) and the
 * fsync thread. persist_snap.c writes snapshots, persist_load.c loads at a start. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "persist_int.h"

persist_state_t g_persist = {.fd = -1};

/* ---- crc32c (Castagnoli), table-driven ---- */

static uint32_t crc_tab[256];

static uint32_t crc32c_sw(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    while (n--)
        c = crc_tab[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static uint32_t (*crc32c)(const uint8_t *p, size_t n) = crc32c_sw;

#if defined(__x86_64__)
/* SSE 4.2 has CRC-32C as an instruction: eight bytes a step. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(const uint8_t *p, size_t n) {
    uint64_t c = 0xffffffffu;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32 ^ 0xffffffffu;
}
#endif

void persist_crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_tab[i] = c;
    }
    /* The check value of CRC-32C ("123456789" -> e3069283) decides, on this machine. */
    static const uint8_t check[] = "123456789";
    if (crc32c_sw(check, 9) != 0xe3069283u) fatal("CRC-32C self-check failed");
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2") && crc32c_hw(check, 9) == 0xe3069283u) crc32c = crc32c_hw;
#endif
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint32_t persist_get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- records ---- */

size_t persist_rec_begin(mpb__buf_t *b) {
    size_t at = b->len;
    static const uint8_t zero[REC_HDR];
    mpb__w_raw(b, zero, sizeof zero);
    return at;
}

void persist_rec_end(mpb__buf_t *b, size_t at) {
    bbuf_ensure(b);
    size_t n = b->len - at - REC_HDR;
    put32(b->p + at, (uint32_t)n);
    put32(b->p + at + 4, crc32c(b->p + at + REC_HDR, n));
}

static bool logging(void) {
    return g_persist.on && !g_persist.replaying && g_persist.fd >= 0;
}

bool persist_enabled(void) {
    return g_persist.on;
}

bool persist_replaying(void) {
    return g_persist.replaying;
}

bool persist_logs_op(unsigned op) {
    switch (op) {
    case MPB_OP_LOCK_ACQUIRE:
    case MPB_OP_LOCK_RELEASE:
    case MPB_OP_RLOCK_ACQUIRE:
    case MPB_OP_RLOCK_RELEASE:
    case MPB_OP_COND_WAIT:
    case MPB_OP_COND_NOTIFY:
    case MPB_OP_EVENT_WAIT:
    case MPB_OP_BARRIER_WAIT:
    case MPB_OP_QUEUE_JOIN:
    case MPB_OP_SEM_VALUE: return false; /* held locks and waits are not brought back */
    case MPB_OP_PIPE_OPEN:
    case MPB_OP_PIPE_SEND:
    case MPB_OP_PIPE_RECV:
    case MPB_OP_PIPE_POLL:
    case MPB_OP_PIPE_CLOSE:
        /* A pipe lives with the two sessions at its ends: it is neither logged nor saved,
         * and a restarted broker has none (PERSISTENCE.md). */
        return false;
    case MPB_OP_OBJ_NEW: return false; /* logged by obj.new, with the name it made */
    case MPB_OP_OBJ_REF:
    case MPB_OP_OBJ_UNREF:
    case MPB_OP_OBJ_DELETE:
    case MPB_OP_DICT_COPY:
    case MPB_OP_POOL_SUBMIT:
    case MPB_OP_POOL_TAKE:
    case MPB_OP_POOL_CANCEL: return true; /* change state though they are no CMD_WRITE */
    default: {
        const command_t *c = command_find(op);
        return c && (c->flags & CMD_WRITE);
    }
    }
}

size_t persist_req(const sess_t *s, const uint8_t *raw, size_t n) {
    if (!logging()) return 0;
    /* Room for the record first; short of memory, the turn's records are written now (the
     * batch's space is kept) and, if that is not enough, the request is refused unrun. */
    size_t need = REC_HDR + 2 + 2 * 9 + n;
    if (mpb__buf_reserve(&g_persist.batch, need)) {
        g_persist.batch.oom = false;
        if (persist_commit() != 0 || mpb__buf_reserve(&g_persist.batch, need)) {
            g_persist.batch.oom = false;
            return PERSIST_NOROOM;
        }
    }
    /* Written straight into the room reserved above: every write request comes here, so the
     * record is encoded with no call per value. [1, session, seq_hi, request] */
    mpb__buf_t *b = &g_persist.batch;
    size_t at = g_persist.last_at = b->len;
    uint8_t *p = b->p + at + REC_HDR;
    *p++ = 0x94; /* array of 4 */
    *p++ = R_REQ;
    p += mpb__enc_uint(p, s ? s->id : 0);
    p += mpb__enc_uint(p, s ? s->seq_hi : 0);
    memcpy(p, raw, n);
    b->len = (size_t)(p + n - b->p);
    persist_rec_end(b, at);
    g_persist.records++;
    return g_persist.batch.len;
}

void persist_unlog(size_t end) {
    if (!logging() || end == 0 || g_persist.batch.len != end) return;
    /* nothing came after it: it is the last request record */
    g_persist.batch.len = g_persist.last_at;
    g_persist.records--;
}

/* A request record made here: [rid, op, o's name, args] (argc values in a, n bytes). */
static void log_req(const sess_t *s, uint64_t rid, unsigned op, const obj_t *o, uint32_t argc,
                    const uint8_t *a, size_t n) {
    mpb__buf_t req = {0};
    mpb__w_array(&req, 3 + argc);
    mpb__w_uint(&req, rid);
    mpb__w_uint(&req, op);
    mpb__w_str(&req, o->name, o->namelen);
    mpb__w_raw(&req, a, n);
    /* It took effect already: short of memory for its record, the log can only say so. */
    if (req.oom || persist_req(s, req.p, req.len) == PERSIST_NOROOM)
        log_kv(MPB_LOG_ERROR, "out of memory: a request that took effect could not be logged", "op",
               mpb__op_name(op), "object", o->name, "bytes", LOG_UINT(req.len), NULL);
    mpb__buf_free(&req);
}

void persist_parked(const waiter_t *w, uint32_t argc, const uint8_t *a, size_t n) {
    if (!logging() || !w->obj) return;
    log_req(w->sess, w->rid, w->op, w->obj, argc, a, n);
}

void persist_obj_new(const sess_t *s, uint64_t rid, const obj_t *o, uint32_t argc, const uint8_t *a,
                     size_t n) {
    if (!logging()) return;
    log_req(s, rid, MPB_OP_OBJ_NEW, o, argc, a, n);
}

void persist_anon_gone(const obj_t *o) {
    if (!logging()) return;
    size_t at = persist_rec_begin(&g_persist.batch);
    mpb__w_array(&g_persist.batch, 2);
    mpb__w_uint(&g_persist.batch, R_ANON_GONE);
    mpb__w_str(&g_persist.batch, o->name, o->namelen);
    persist_rec_end(&g_persist.batch, at);
    g_persist.records++;
}

void persist_w_sess(mpb__buf_t *b, const sess_t *s) {
    size_t at = persist_rec_begin(b);
    mpb__w_array(b, 6);
    mpb__w_uint(b, R_SESS);
    mpb__w_uint(b, s->id);
    mpb__w_bin(b, s->token, MPB__TOKEN_LEN);
    mpb__w_cstr(b, s->host);
    mpb__w_int(b, s->pid);
    mpb__w_cstr(b, s->name);
    persist_rec_end(b, at);
}

void persist_session(const sess_t *s) {
    if (!logging() || s->id == 0) return;
    persist_w_sess(&g_persist.batch, s);
    g_persist.records++;
}

void persist_session_end(const sess_t *s) {
    if (!logging() || s->id == 0) return;
    size_t at = persist_rec_begin(&g_persist.batch);
    mpb__w_array(&g_persist.batch, 2);
    mpb__w_uint(&g_persist.batch, R_SESS_END);
    mpb__w_uint(&g_persist.batch, s->id);
    persist_rec_end(&g_persist.batch, at);
    g_persist.records++;
}

void persist_w_result(mpb__buf_t *b, const blob_t *result) {
    if (result)
        mpb__w_raw(b, result->data, result->len);
    else
        mpb__w_nil(b);
}

void persist_task_done(uint64_t id, bool failed, bool canceled, const blob_t *result) {
    if (!logging()) return;
    size_t at = persist_rec_begin(&g_persist.batch);
    mpb__w_array(&g_persist.batch, 5);
    mpb__w_uint(&g_persist.batch, R_TASK_DONE);
    mpb__w_uint(&g_persist.batch, id);
    mpb__w_bool(&g_persist.batch, failed);
    mpb__w_bool(&g_persist.batch, canceled);
    persist_w_result(&g_persist.batch, result);
    persist_rec_end(&g_persist.batch, at);
    g_persist.records++;
}

void persist_w_fence(mpb__buf_t *b, uint64_t bound) {
    size_t at = persist_rec_begin(b);
    mpb__w_array(b, 2);
    mpb__w_uint(b, R_FENCE);
    mpb__w_uint(b, bound);
    persist_rec_end(b, at);
}

void persist_fence(uint64_t token) {
    if (token < g_persist.fence_bound) return;
    g_persist.fence_bound = token + FENCE_LEAD_US;
    if (!logging()) return;
    persist_w_fence(&g_persist.batch, g_persist.fence_bound);
    g_persist.records++;
}

/* ---- writing ---- */

int persist_write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* ---- fsync: in the loop for always (the replies wait for it anyway), in a thread of its own
 * for everysec, so that a slow disk never stalls the loop (as Redis's bio thread). The thread
 * syncs a dup() of the log's descriptor, so a new segment may close the old one meanwhile. */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    int fd;    /* a dup of the log's descriptor to fsync; -1: nothing asked */
    int error; /* errno of a failed fsync, for the loop to stop on */
} F = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false, false, -1, 0};

static void fsync_done(int rc, int err) {
    if (rc != 0) {
        F.error = err;
        return;
    }
    g_persist.fsyncs++;
    g_persist.last_fsync_unix_ms = wall_ms();
}

static void *fsync_thread(void *arg) {
    (void)arg;
    pthread_mutex_lock(&F.mu);
    for (;;) {
        while (!F.stop && F.fd < 0)
            pthread_cond_wait(&F.cv, &F.mu);
        if (F.fd < 0) break; /* stop, nothing left */
        int fd = F.fd;
        pthread_mutex_unlock(&F.mu);
        int rc = fdatasync(fd), err = errno;
        close(fd);
        pthread_mutex_lock(&F.mu);
        fsync_done(rc, err);
        F.fd = -1;
    }
    pthread_mutex_unlock(&F.mu);
    return NULL;
}

/* everysec: hands the thread the log to fsync, unless it is still at the previous one.
 * Returns 1 when there is no thread (it could not be made): the caller syncs itself. */
static int fsync_later(void) {
    int rc = 0;
    pthread_mutex_lock(&F.mu);
    if (F.error) {
        log_kv(MPB_LOG_ERROR, "cannot fsync the log", "error", strerror(F.error), NULL);
        rc = -1;
    } else if (F.fd < 0) {
        if (!F.started) F.started = pthread_create(&F.thread, NULL, fsync_thread, NULL) == 0;
        F.fd = F.started ? dup(g_persist.fd) : -1;
        if (F.fd >= 0) {
            g_persist.dirty = false;
            g_persist.last_fsync_ms = now_ms();
            pthread_cond_signal(&F.cv);
        } else {
            rc = 1;
        }
    }
    pthread_mutex_unlock(&F.mu);
    return rc;
}

/* What the thread did, read under its lock. */
void persist_fsync_stats(uint64_t *count, int64_t *last_unix_ms) {
    pthread_mutex_lock(&F.mu);
    *count = g_persist.fsyncs;
    *last_unix_ms = g_persist.last_fsync_unix_ms;
    pthread_mutex_unlock(&F.mu);
}

static void fsync_thread_stop(void) {
    if (!F.started) return;
    pthread_mutex_lock(&F.mu);
    F.stop = true;
    pthread_cond_signal(&F.cv);
    pthread_mutex_unlock(&F.mu);
    pthread_join(F.thread, NULL);
    F.started = F.stop = false;
}

int persist_do_fsync(void) {
    if (!g_persist.dirty || g_persist.fd < 0) return 0;
    if (g_persist.mode == FSYNC_EVERYSEC) {
        int later = fsync_later();
        if (later <= 0) return later;
    }
    int rc = fdatasync(g_persist.fd), err = errno;
    pthread_mutex_lock(&F.mu);
    fsync_done(rc, err);
    pthread_mutex_unlock(&F.mu);
    if (rc != 0) {
        log_kv(MPB_LOG_ERROR, "cannot fsync the log", "error", strerror(err), NULL);
        return -1;
    }
    g_persist.dirty = false;
    g_persist.last_fsync_ms = now_ms();
    return 0;
}

/* Each turn's records go at g_persist.end. --fsync always writes into space that is
 * zero-filled and made durable ahead of it, PREALLOC at a time: the fdatasync() of an
 * overwrite has no file size nor block allocation to commit (on ext4 about 40 % cheaper than
 * one after an append), and `always` pays one per busy turn. The zeros after the last record
 * are cut at a clean close and at a start (persist_load.c). */
#define PREALLOC (2u << 20)

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off) {
    while (n) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* Zero-fills the open segment up to past the next n bytes, durably. */
static int zero_ahead(size_t n) {
    static const uint8_t zeros[64u << 10];
    uint64_t at = g_persist.zeroed, to = g_persist.end + n + PREALLOC;
    for (; at < to; at += sizeof zeros)
        if (pwrite_all(g_persist.fd, zeros, sizeof zeros, at) != 0) return -1;
    if (fdatasync(g_persist.fd) != 0) return -1;
    g_persist.zeroed = at;
    return 0;
}

/* Cuts the zeros after the open segment's last record, durably: a next segment is made only
 * after, so that zeros can only end the last one. */
static int seg_trim(void) {
    if (g_persist.zeroed <= g_persist.end) return 0;
    if (ftruncate(g_persist.fd, (off_t)g_persist.end) != 0 || fdatasync(g_persist.fd) != 0)
        return -1;
    g_persist.zeroed = g_persist.end;
    return 0;
}

bool persist_holding(void) {
    return g_persist.batch.len > 0;
}

int persist_commit(void) {
    if (!g_persist.batch.len || g_persist.fd < 0) return 0;
    bbuf_ensure(&g_persist.batch);
    size_t n = g_persist.batch.len;
    if (g_persist.mode == FSYNC_ALWAYS && g_persist.end + n > g_persist.zeroed && zero_ahead(n)) {
        log_kv(MPB_LOG_ERROR, "cannot extend the log", "error", strerror(errno), NULL);
        return -1;
    }
    if (pwrite_all(g_persist.fd, g_persist.batch.p, n, g_persist.end) != 0) {
        log_kv(MPB_LOG_ERROR, "cannot write the log", "error", strerror(errno), NULL);
        return -1;
    }
    g_persist.writes++;
    g_persist.end += n;
    g_persist.log_bytes += n;
    mpb__buf_reset(&g_persist.batch);
    g_persist.dirty = true;
    if (g_persist.mode == FSYNC_ALWAYS ||
        (g_persist.mode == FSYNC_EVERYSEC && now_ms() - g_persist.last_fsync_ms >= 1000))
        return persist_do_fsync();
    return 0;
}

void persist_seg_path(char *out, size_t n, uint64_t seg) {
    snprintf(out, n, "%s/log.%06" PRIu64, g_persist.dir, seg);
}

void persist_sync_dir(void) {
    int d = open(g_persist.dir, O_RDONLY | O_DIRECTORY);
    if (d >= 0) {
        fsync(d);
        close(d);
    }
}

int persist_seg_open(uint64_t seg) {
    char path[3100];
    persist_seg_path(path, sizeof path, seg);
    /* The old segment is cut to its records first: only the last one may end in zeros. */
    if (g_persist.fd >= 0 && seg_trim() != 0) {
        log_kv(MPB_LOG_ERROR, "cannot cut the log", "error", strerror(errno), NULL);
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        log_kv(MPB_LOG_ERROR, "cannot open the log", "path", path, "error", strerror(errno), NULL);
        if (fd >= 0) close(fd);
        return -1;
    }
    if (g_persist.fd >= 0) {
        fdatasync(g_persist.fd);
        close(g_persist.fd);
    }
    g_persist.fd = fd;
    g_persist.end = g_persist.zeroed = (uint64_t)st.st_size;
    g_persist.seg = seg;
    g_persist.dirty = false;
    persist_sync_dir();
    return 0;
}

/* ---- reading ---- */

int persist_read_file(const char *path, uint8_t **out, size_t *n) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *p = xmalloc(len ? len : 1);
    size_t got = 0;
    while (got < len) {
        ssize_t k = read(fd, p + got, len - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    *out = p;
    *n = got;
    return 0;
}

/* The record at off: 1 and its payload, 0 at the end, -1 if it is damaged or cut short. */
int persist_rec_next(const uint8_t *p, size_t n, size_t off, const uint8_t **pl, size_t *pn) {
    if (off == n) return 0;
    if (n - off < REC_HDR) return -1;
    uint32_t len = persist_get32(p + off);
    if (len == 0 || len > REC_MAX || len > n - off - REC_HDR) return -1;
    if (crc32c(p + off + REC_HDR, len) != persist_get32(p + off + 4)) return -1;
    if (mpb__mp_check(p + off + REC_HDR, len, MPB__FRAME_DEPTH) != 0) return -1;
    *pl = p + off + REC_HDR;
    *pn = len;
    return 1;
}

void persist_close(void) {
    if (!g_persist.on) return;
    persist_commit();
    fsync_thread_stop();
    if (g_persist.child > 0) {
        int status;
        if (waitpid(g_persist.child, &status, 0) == g_persist.child) persist_child_done(status);
    }
    if (g_persist.fd >= 0) {
        seg_trim();
        fdatasync(g_persist.fd);
        close(g_persist.fd);
        g_persist.fd = -1;
    }
    mpb__buf_free(&g_persist.batch);
    free(g_persist.savers);
    g_persist.savers = NULL;
    g_persist.nsavers = g_persist.capsavers = 0;
}
