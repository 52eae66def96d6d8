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
 * A record is [u32 len][u32 crc32c(payload)][payload: one msgpack array], little-endian. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "persist.h"

enum {
    R_REQ = 1,      /* [1, session, its seq_hi, [rid, op, name, args...]] */
    R_SESS = 2,     /* [2, id, token, host, pid, name] */
    R_SESS_END = 3, /* [3, id] */
    R_FENCE = 4,    /* [4, bound above every token handed out] */
    R_OBJ = 5,      /* [5, kind, name, state...] (snapshot) */
    R_SNAP = 6,     /* [6, "mpb-snapshot", 1, first segment, next session id, fence] */
    R_END = 7,      /* [7, records before it] (snapshot) */
    R_TASK_DONE = 8, /* [8, task id, failed, canceled, result|nil] */
    R_TASK = 9,      /* [9, id, caller, function, calls, done, failed, canceled, result|nil] */
    R_POOL = 10,     /* [10, next task id, next job id] (snapshot) */
    R_ANON_GONE = 11, /* [11, name]: an anonymous object's grace ran out */
    R_AREF = 12,      /* [12, name, session, n]: references it held (snapshot) */
};

#define REC_HDR       8
#define REC_MAX       (1u << 30)
#define SNAP_MAGIC    "mpb-snapshot"
#define AUTO_MIN      (64u << 20) /* compaction once the log passes this and the snapshot */
#define FENCE_LEAD_US 10000000u   /* the bound the log keeps runs this far ahead */

static struct {
    bool on, replaying;
    int mode;
    char dir[3000];
    int fd;
    uint64_t seg;      /* the segment appended to */
    mpb__buf_t batch;  /* records of this turn, not yet written */
    size_t last_at;    /* where the batch's last request record starts */
    bool dirty;        /* written, not yet fsynced */
    uint64_t log_bytes; /* in every segment since the snapshot */
    uint64_t fence_bound;
    int64_t last_fsync_ms;      /* monotonic, for everysec */
    int64_t last_fsync_unix_ms; /* for info and /metrics */
    uint64_t fsyncs, writes, records;
    pid_t child;
    uint64_t child_seg; /* the first segment the child's snapshot does not cover */
    int64_t child_started_ns;
    int64_t last_snap_ms, last_snap_dur_ms;
    uint64_t snap_bytes, snaps_ok, snaps_failed;
    uint64_t replay_failed; /* logged requests that failed when replayed */
    uint64_t loaded_records;
    int64_t load_ms;
    struct saver {
        uint64_t sess, rid;
    } *savers; /* save requests answered when the child is done */
    size_t nsavers, capsavers;
} P = {.fd = -1};

/* ---- crc32c (Castagnoli), table-driven ---- */

static uint32_t crc_tab[256];

static uint32_t crc32c_sw(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    while (n--) c = crc_tab[(c ^ *p++) & 0xff] ^ (c >> 8);
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
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32 ^ 0xffffffffu;
}
#endif

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_tab[i] = c;
    }
    /* The check value of CRC-32C ("123456789" -> e3069283) decides, on this machine. */
    static const uint8_t check[] = "123456789";
    if (crc32c_sw(check, 9) != 0xe3069283u) abort();
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2") && crc32c_hw(check, 9) == 0xe3069283u)
        crc32c = crc32c_hw;
#endif
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- records ---- */

static size_t rec_begin(mpb__buf_t *b) {
    size_t at = b->len;
    static const uint8_t zero[REC_HDR];
    mpb__w_raw(b, zero, sizeof zero);
    return at;
}

static void rec_end(mpb__buf_t *b, size_t at) {
    bbuf_ensure(b);
    size_t n = b->len - at - REC_HDR;
    put32(b->p + at, (uint32_t)n);
    put32(b->p + at + 4, crc32c(b->p + at + REC_HDR, n));
}

static bool logging(void) {
    return P.on && !P.replaying && P.fd >= 0;
}

bool persist_enabled(void) {
    return P.on;
}

bool persist_replaying(void) {
    return P.replaying;
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
    size_t at = P.last_at = rec_begin(&P.batch);
    mpb__w_array(&P.batch, 4);
    mpb__w_uint(&P.batch, R_REQ);
    mpb__w_uint(&P.batch, s ? s->id : 0);
    mpb__w_uint(&P.batch, s ? s->seq_hi : 0);
    mpb__w_raw(&P.batch, raw, n);
    rec_end(&P.batch, at);
    P.records++;
    return P.batch.len;
}

void persist_unlog(size_t end) {
    if (!logging() || end == 0 || P.batch.len != end) return;
    P.batch.len = P.last_at; /* nothing came after it: it is the last request record */
    P.records--;
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
    bbuf_ensure(&req);
    persist_req(s, req.p, req.len);
    mpb__buf_free(&req);
}

void persist_parked(const waiter_t *w, uint32_t argc, const uint8_t *a, size_t n) {
    if (!logging() || !w->obj) return;
    log_req(w->sess, w->rid, w->op, w->obj, argc, a, n);
}

void persist_obj_new(const sess_t *s, uint64_t rid, const obj_t *o, uint32_t argc,
                     const uint8_t *a, size_t n) {
    if (!logging()) return;
    log_req(s, rid, MPB_OP_OBJ_NEW, o, argc, a, n);
}

void persist_anon_gone(const obj_t *o) {
    if (!logging()) return;
    size_t at = rec_begin(&P.batch);
    mpb__w_array(&P.batch, 2);
    mpb__w_uint(&P.batch, R_ANON_GONE);
    mpb__w_str(&P.batch, o->name, o->namelen);
    rec_end(&P.batch, at);
    P.records++;
}

static void w_sess(mpb__buf_t *b, const sess_t *s) {
    size_t at = rec_begin(b);
    mpb__w_array(b, 6);
    mpb__w_uint(b, R_SESS);
    mpb__w_uint(b, s->id);
    mpb__w_bin(b, s->token, MPB__TOKEN_LEN);
    mpb__w_cstr(b, s->host);
    mpb__w_int(b, s->pid);
    mpb__w_cstr(b, s->name);
    rec_end(b, at);
}

void persist_session(const sess_t *s) {
    if (!logging() || s->id == 0) return;
    w_sess(&P.batch, s);
    P.records++;
}

void persist_session_end(const sess_t *s) {
    if (!logging() || s->id == 0) return;
    size_t at = rec_begin(&P.batch);
    mpb__w_array(&P.batch, 2);
    mpb__w_uint(&P.batch, R_SESS_END);
    mpb__w_uint(&P.batch, s->id);
    rec_end(&P.batch, at);
    P.records++;
}

static void w_result(mpb__buf_t *b, const blob_t *result) {
    if (result) mpb__w_raw(b, result->data, result->len);
    else mpb__w_nil(b);
}

void persist_task_done(uint64_t id, bool failed, bool canceled, const blob_t *result) {
    if (!logging()) return;
    size_t at = rec_begin(&P.batch);
    mpb__w_array(&P.batch, 5);
    mpb__w_uint(&P.batch, R_TASK_DONE);
    mpb__w_uint(&P.batch, id);
    mpb__w_bool(&P.batch, failed);
    mpb__w_bool(&P.batch, canceled);
    w_result(&P.batch, result);
    rec_end(&P.batch, at);
    P.records++;
}

static void w_fence(mpb__buf_t *b, uint64_t bound) {
    size_t at = rec_begin(b);
    mpb__w_array(b, 2);
    mpb__w_uint(b, R_FENCE);
    mpb__w_uint(b, bound);
    rec_end(b, at);
}

void persist_fence(uint64_t token) {
    if (token < P.fence_bound) return;
    P.fence_bound = token + FENCE_LEAD_US;
    if (!logging()) return;
    w_fence(&P.batch, P.fence_bound);
    P.records++;
}

/* ---- writing ---- */

static int write_all(int fd, const uint8_t *p, size_t n) {
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
    P.fsyncs++;
    P.last_fsync_unix_ms = wall_ms();
}

static void *fsync_thread(void *arg) {
    (void)arg;
    pthread_mutex_lock(&F.mu);
    for (;;) {
        while (!F.stop && F.fd < 0) pthread_cond_wait(&F.cv, &F.mu);
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
        log_kv(LOG_ERROR, "cannot fsync the log", "error", strerror(F.error), NULL);
        rc = -1;
    } else if (F.fd < 0) {
        if (!F.started)
            F.started = pthread_create(&F.thread, NULL, fsync_thread, NULL) == 0;
        F.fd = F.started ? dup(P.fd) : -1;
        if (F.fd >= 0) {
            P.dirty = false;
            P.last_fsync_ms = now_ms();
            pthread_cond_signal(&F.cv);
        } else {
            rc = 1;
        }
    }
    pthread_mutex_unlock(&F.mu);
    return rc;
}

/* What the thread did, read under its lock. */
static void fsync_stats(uint64_t *count, int64_t *last_unix_ms) {
    pthread_mutex_lock(&F.mu);
    *count = P.fsyncs;
    *last_unix_ms = P.last_fsync_unix_ms;
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

static int do_fsync(void) {
    if (!P.dirty || P.fd < 0) return 0;
    if (P.mode == FSYNC_EVERYSEC) {
        int later = fsync_later();
        if (later <= 0) return later;
    }
    int rc = fdatasync(P.fd), err = errno;
    pthread_mutex_lock(&F.mu);
    fsync_done(rc, err);
    pthread_mutex_unlock(&F.mu);
    if (rc != 0) {
        log_kv(LOG_ERROR, "cannot fsync the log", "error", strerror(err), NULL);
        return -1;
    }
    P.dirty = false;
    P.last_fsync_ms = now_ms();
    return 0;
}

bool persist_holding(void) {
    return P.batch.len > 0;
}

int persist_commit(void) {
    if (!P.batch.len || P.fd < 0) return 0;
    bbuf_ensure(&P.batch);
    if (write_all(P.fd, P.batch.p, P.batch.len) != 0) {
        log_kv(LOG_ERROR, "cannot write the log", "error", strerror(errno), NULL);
        return -1;
    }
    P.writes++;
    P.log_bytes += P.batch.len;
    mpb__buf_reset(&P.batch);
    P.dirty = true;
    if (P.mode == FSYNC_ALWAYS || (P.mode == FSYNC_EVERYSEC && now_ms() - P.last_fsync_ms >= 1000))
        return do_fsync();
    return 0;
}

static void seg_path(char *out, size_t n, uint64_t seg) {
    snprintf(out, n, "%s/log.%06" PRIu64, P.dir, seg);
}

static void sync_dir(void) {
    int d = open(P.dir, O_RDONLY | O_DIRECTORY);
    if (d >= 0) {
        fsync(d);
        close(d);
    }
}

static int seg_open(uint64_t seg) {
    char path[3100];
    seg_path(path, sizeof path, seg);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_kv(LOG_ERROR, "cannot open the log", "path", path, "error", strerror(errno), NULL);
        return -1;
    }
    if (P.fd >= 0) {
        fdatasync(P.fd);
        close(P.fd);
    }
    P.fd = fd;
    P.seg = seg;
    P.dirty = false;
    sync_dir();
    return 0;
}

/* ---- reading ---- */

static int read_file(const char *path, uint8_t **out, size_t *n) {
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
static int rec_next(const uint8_t *p, size_t n, size_t off, const uint8_t **pl, size_t *pn) {
    if (off == n) return 0;
    if (n - off < REC_HDR) return -1;
    uint32_t len = get32(p + off);
    if (len == 0 || len > REC_MAX || len > n - off - REC_HDR) return -1;
    if (crc32c(p + off + REC_HDR, len) != get32(p + off + 4)) return -1;
    if (mpb__mp_check(p + off + REC_HDR, len, MPB__FRAME_DEPTH) != 0) return -1;
    *pl = p + off + REC_HDR;
    *pn = len;
    return 1;
}

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

/* A logged request took effect when it ran, so it must again: one that fails now means the
 * state loaded is not the one that was (a record the code cannot redo). It is said, and
 * counted in info's replay_failed, instead of passing unseen. */
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
    P.replay_failed++;
    char what[300];
    snprintf(what, sizeof what, "%s %.*s: %.*s", mpb__op_name(r->op) ? mpb__op_name(r->op) : "?",
             (int)(r->name ? r->namelen : 0), r->name ? r->name : "", (int)ml, msg);
    log_kv(LOG_WARN, "a logged request failed at replay", "request", what, "session",
           LOG_INT((int64_t)(r->sess ? r->sess->id : 0)), NULL);
}

static void replay_req(sess_t *s, const uint8_t *v, size_t vn) {
    mpb__rd_t q = {v, v + vn};
    uint32_t n;
    uint64_t rid = 0, op = 0;
    if (mpb__rd_array(&q, &n) || n < 3 || mpb__rd_uint(&q, &rid) || mpb__rd_uint(&q, &op))
        return;
    req_t r = {.sess = s, .rid = rid, .op = (unsigned)(op > 0xffff ? 0xffff : op)};
    const char *name;
    uint32_t nl;
    if (mpb__rd_nil(&q) == 0) r.name = NULL;
    else if (mpb__rd_str(&q, &name, &nl) == 0) {
        r.name = name;
        r.namelen = nl;
    } else return;
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

static int load_obj(mpb__rd_t *r, uint32_t n);

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
    if (type == R_TASK && (mpb__rd_uint(r, &owner) || mpb__rd_str(r, &fn, &fl) ||
                           mpb__rd_type(r) != MPB__MT_ARRAY || mpb__rd_span(r, &calls, &cn) ||
                           mpb__rd_bool(r, &done)))
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

/* Applies one record; -1 if its shape is wrong (the file is not ours, or is damaged). */
static int apply(const uint8_t *p, size_t n, uint64_t *first_seg) {
    mpb__rd_t r = {p, p + n};
    uint32_t len;
    uint64_t type, id;
    if (mpb__rd_array(&r, &len) || len < 2 || mpb__rd_uint(&r, &type)) return -1;
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
        if (len != 6 || mpb__rd_uint(&r, &id) || mpb__rd_bin(&r, &tok, &tl) ||
            tl != MPB__TOKEN_LEN)
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
        if (id > P.fence_bound) P.fence_bound = id;
        return 0;
    case R_OBJ: return load_obj(&r, len);
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
        if (fence > P.fence_bound) P.fence_bound = fence;
        return 0;
    }
    case R_END: return 0;
    default: return -1;
    }
}

/* ---- snapshot: objects ---- */

static void w_blobs_deque(mpb__buf_t *b, const deque_t *d) {
    mpb__w_array(b, (uint32_t)d->len);
    for (size_t i = 0; i < d->len; i++) {
        const blob_t *x = deque_at(d, i);
        mpb__w_raw(b, x->data, x->len);
    }
}

static void w_obj(mpb__buf_t *b, const obj_t *o) {
    size_t at = rec_begin(b);
    const uint32_t extra[KIND__N] = {[KIND_DICT] = 1,      [KIND_NAMESPACE] = 1, [KIND_LIST] = 1,
                                     [KIND_QUEUE] = 9,     [KIND_SEMAPHORE] = 5, [KIND_CONDITION] = 2,
                                     [KIND_EVENT] = 1,     [KIND_BARRIER] = 3,   [KIND_VALUE] = 1};
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
        mpb__w_array(b, (uint32_t)q->ndv); /* items handed out, not finished: [id, session, task, item] */
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
        for (size_t i = 0; i < s->nholders; i++) held += s->holders[i].units;
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
        if (o->u.value) mpb__w_raw(b, o->u.value->data, o->u.value->len);
        else mpb__w_nil(b);
        break;
    default: break;
    }
    rec_end(b, at);
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
        mpb__rd_int(r, &q->unfinished) || rd_blobs(r, &q->items) ||
        mpb__rd_bool(r, &q->reliable) || mpb__rd_bool(r, &q->reliable_set) ||
        mpb__rd_uint(r, &q->next_dv) || mpb__rd_array(r, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t four;
        uint64_t id, sid;
        bool task;
        const uint8_t *v;
        size_t vn;
        if (mpb__rd_array(r, &four) || four != 4 || mpb__rd_uint(r, &id) ||
            mpb__rd_uint(r, &sid) || mpb__rd_bool(r, &task) || mpb__rd_span(r, &v, &vn))
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

static int load_obj(mpb__rd_t *r, uint32_t len) {
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
        return mpb__rd_int(r, &o->u.barrier.parties) ||
                       mpb__rd_int(r, &o->u.barrier.timeout_ms) ||
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

struct snap_ctx {
    mpb__buf_t *b;
    int fd, rc;
    uint64_t n;
};

/* Writes out b once it holds a megabyte. */
static int snap_flush(mpb__buf_t *b, int fd) {
    if (b->len < (1u << 20)) return 0;
    bbuf_ensure(b);
    int rc = write_all(fd, b->p, b->len);
    mpb__buf_reset(b);
    return rc;
}

static void w_task(void *ctx, uint64_t id, const sess_t *owner, const char *fn, uint32_t fl,
                   const blob_t *calls, bool done, bool failed, bool canceled,
                   const blob_t *result) {
    struct snap_ctx *sc = ctx;
    if (sc->rc) return;
    size_t at = rec_begin(sc->b);
    mpb__w_array(sc->b, 9);
    mpb__w_uint(sc->b, R_TASK);
    mpb__w_uint(sc->b, id);
    mpb__w_uint(sc->b, owner->id);
    mpb__w_str(sc->b, fn, fl);
    mpb__w_raw(sc->b, calls->data, calls->len);
    mpb__w_bool(sc->b, done);
    mpb__w_bool(sc->b, failed);
    mpb__w_bool(sc->b, canceled);
    w_result(sc->b, done ? result : NULL);
    rec_end(sc->b, at);
    sc->n++;
    sc->rc = snap_flush(sc->b, sc->fd);
}

/* The child's work: every session, pool task and object into DIR/snapshot.tmp, renamed. */
static int snap_write(uint64_t first_seg) {
    char tmp[3100], path[3100];
    snprintf(tmp, sizeof tmp, "%s/snapshot.tmp", P.dir);
    snprintf(path, sizeof path, "%s/snapshot", P.dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    mpb__buf_t b = {0};
    uint64_t nrec = 0;
    size_t at = rec_begin(&b);
    mpb__w_array(&b, 6);
    mpb__w_uint(&b, R_SNAP);
    mpb__w_cstr(&b, SNAP_MAGIC);
    mpb__w_uint(&b, 1);
    mpb__w_uint(&b, first_seg);
    mpb__w_uint(&b, sess_next_id());
    mpb__w_uint(&b, P.fence_bound > g_fence ? P.fence_bound : g_fence + FENCE_LEAD_US);
    rec_end(&b, at);
    nrec++;
    int rc = 0;
    for (const sess_t *s = sess_all(); s; s = LIST_NEXT(s, link)) {
        if (s->id == 0) continue;
        w_sess(&b, s);
        nrec++;
    }
    uint64_t next_task, next_job;
    pool_counters(&next_task, &next_job);
    at = rec_begin(&b);
    mpb__w_array(&b, 3);
    mpb__w_uint(&b, R_POOL);
    mpb__w_uint(&b, next_task);
    mpb__w_uint(&b, next_job);
    rec_end(&b, at);
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
            at = rec_begin(&b);
            mpb__w_array(&b, 4);
            mpb__w_uint(&b, R_AREF);
            mpb__w_str(&b, s->refs[i].obj->name, s->refs[i].obj->namelen);
            mpb__w_uint(&b, s->id);
            mpb__w_int(&b, s->refs[i].n);
            rec_end(&b, at);
            nrec++;
        }
    at = rec_begin(&b);
    mpb__w_array(&b, 2);
    mpb__w_uint(&b, R_END);
    mpb__w_uint(&b, nrec);
    rec_end(&b, at);
    if (rc == 0) rc = write_all(fd, b.p, b.len);
    mpb__buf_free(&b);
    if (rc == 0) rc = fsync(fd);
    if (close(fd) != 0) rc = -1;
    if (rc == 0) rc = rename(tmp, path);
    if (rc == 0) sync_dir();
    return rc;
}

static void drop_segments_below(uint64_t seg) {
    DIR *d = opendir(P.dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "log.", 4)) continue;
        unsigned long long k = strtoull(e->d_name + 4, &end, 10);
        if (*end || end == e->d_name + 4 || k >= seg) continue;
        char path[3100];
        seg_path(path, sizeof path, k);
        unlink(path);
    }
    closedir(d);
}

int persist_save(char *err, size_t n) {
    if (!P.on) {
        snprintf(err, n, "persistence is off (--persist off)");
        return -1;
    }
    if (P.child > 0) {
        snprintf(err, n, "a snapshot is already being written (pid %d)", (int)P.child);
        return -1;
    }
    /* The child's memory must be exactly the segments it replaces: write what is pending,
     * then new records go to a new segment. */
    if (persist_commit() != 0 || seg_open(P.seg + 1) != 0) {
        snprintf(err, n, "cannot start a new log segment: %s", strerror(errno));
        return -1;
    }
    P.child_started_ns = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, n, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) _exit(snap_write(P.seg) == 0 ? 0 : 1);
    P.child = pid;
    P.child_seg = P.seg;
    log_kv(LOG_INFO, "snapshot started", "pid", LOG_INT(pid), "segment", LOG_UINT(P.seg), NULL);
    return 0;
}

int persist_save_req(req_t *r) {
    char err[256];
    if (!P.on) return reply_error(r, MPB_EINVAL, "persistence is off (--persist off)");
    if (P.child > 0)
        return reply_error(r, MPB_EBUSY, "a snapshot is already being written (pid %d)",
                           (int)P.child);
    if (persist_save(err, sizeof err) != 0) return reply_error(r, MPB_EIO, "%s", err);
    if (!r->sess) return reply_nil(r);
    if (P.nsavers == P.capsavers)
        P.savers = xrealloc(P.savers, (P.capsavers = P.capsavers ? 2 * P.capsavers : 4) *
                                          sizeof *P.savers);
    P.savers[P.nsavers++] = (struct saver){r->sess->id, r->rid};
    r->parked = true;
    return 0;
}

/* Answers the save requests waiting for the child: {bytes, ms}, or EIO. */
static void answer_savers(bool ok, int64_t ms) {
    mpb__buf_t b = {0};
    for (size_t i = 0; i < P.nsavers; i++) {
        sess_t *s = sess_lookup(P.savers[i].sess);
        if (!s) continue;
        mpb__buf_reset(&b);
        mpb__w_array(&b, 3);
        mpb__w_uint(&b, P.savers[i].rid);
        if (ok) {
            mpb__w_uint(&b, 0);
            mpb__w_map(&b, 2);
            mpb__w_cstr(&b, "bytes");
            mpb__w_uint(&b, P.snap_bytes);
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
    P.nsavers = 0;
}

static void child_done(int status) {
    int64_t dur = (now_ns() - P.child_started_ns) / 1000000;
    pid_t pid = P.child;
    P.child = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        P.snaps_failed++;
        log_kv(LOG_ERROR, "snapshot failed; the log is kept", "pid", LOG_INT(pid), NULL);
        answer_savers(false, dur);
        return;
    }
    drop_segments_below(P.child_seg);
    char path[3100];
    struct stat st;
    snprintf(path, sizeof path, "%s/snapshot", P.dir);
    P.snap_bytes = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
    seg_path(path, sizeof path, P.seg);
    P.log_bytes = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
    P.log_bytes += P.batch.len;
    P.last_snap_ms = wall_ms();
    P.last_snap_dur_ms = dur;
    P.snaps_ok++;
    log_kv(LOG_INFO, "snapshot written", "bytes", LOG_UINT(P.snap_bytes), "ms", LOG_INT(dur),
           NULL);
    answer_savers(true, dur);
}

void persist_tick(int64_t now) {
    if (!P.on) return;
    if (P.mode == FSYNC_EVERYSEC && P.dirty && now - P.last_fsync_ms >= 1000) do_fsync();
    /* a failed fsync in the thread: the next commit stops the broker */
    if (P.child > 0) {
        int status;
        if (waitpid(P.child, &status, WNOHANG) == P.child) child_done(status);
    } else if (P.log_bytes > AUTO_MIN && P.log_bytes > P.snap_bytes) {
        char err[256];
        if (persist_save(err, sizeof err) != 0)
            log_kv(LOG_WARN, "cannot start a snapshot", "error", err, NULL);
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
    DIR *d = opendir(P.dir);
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
    uint32_t len = n - off >= REC_HDR ? get32(p + off) : 0;
    if (len == 0 || len > n - off - REC_HDR) return 0;
    uint64_t k = 0;
    const uint8_t *pl;
    size_t pn;
    for (off += REC_HDR + len; rec_next(p, n, off, &pl, &pn) == 1; off += REC_HDR + pn) k++;
    return k;
}

/* Saves bytes [off, n) of a segment beside it before they are cut, for a later look. */
static void keep_cut(const char *path, const uint8_t *p, size_t n, size_t off) {
    char cut[3200];
    snprintf(cut, sizeof cut, "%s.cut-at-%zu", path, off);
    int fd = open(cut, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    if (write_all(fd, p + off, n - off) == 0) fsync(fd);
    close(fd);
}

/* Replays one segment; a bad record is a torn tail (cut) when it is the last thing in the
 * last segment, else damage: refused, or cut with repair. *stop: later segments are dropped. */
static int replay_segment(uint64_t seg, bool last, bool repair, bool *stop) {
    char path[3100];
    seg_path(path, sizeof path, seg);
    uint8_t *p;
    size_t n, off = 0;
    if (read_file(path, &p, &n) != 0) {
        log_kv(LOG_ERROR, "cannot read the log", "path", path, "error", strerror(errno), NULL);
        return -1;
    }
    const uint8_t *pl;
    size_t pn;
    int rc;
    while ((rc = rec_next(p, n, off, &pl, &pn)) == 1) {
        if (apply(pl, pn, NULL) != 0) {
            rc = -1;
            break;
        }
        P.loaded_records++;
        off += REC_HDR + pn;
    }
    if (rc == 0) {
        free(p);
        return 0;
    }
    uint32_t len = n - off >= REC_HDR ? get32(p + off) : 0;
    bool torn = last && (n - off < REC_HDR || len == 0 || len > n - off - REC_HDR ||
                         off + REC_HDR + len == n || all_zero(p + off, n - off));
    if (torn) {
        log_kv(LOG_WARN, "torn record at the end of the log cut", "path", path, "offset",
               LOG_UINT(off), "bytes_cut", LOG_UINT(n - off), NULL);
    } else {
        uint64_t after = count_after(p, n, off);
        if (!repair) {
            log_kv(LOG_ERROR,
                   "damaged record in the middle of the log: refusing to start (start with "
                   "--repair to cut the log there and keep what is before it)",
                   "path", path, "offset", LOG_UINT(off), "bytes_after", LOG_UINT(n - off),
                   "records_after", LOG_UINT(after), NULL);
            free(p);
            return -1;
        }
        log_kv(LOG_WARN, "repair: log cut at a damaged record; what followed it is lost",
               "path", path, "offset", LOG_UINT(off), "bytes_lost", LOG_UINT(n - off),
               "records_lost", LOG_UINT(after + 1), NULL);
        *stop = true;
    }
    keep_cut(path, p, n, off);
    free(p);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0) {
        log_kv(LOG_ERROR, "cannot cut the log", "path", path, "error", strerror(errno), NULL);
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int load_snapshot(uint64_t *first_seg) {
    char path[3100];
    snprintf(path, sizeof path, "%s/snapshot", P.dir);
    uint8_t *p;
    size_t n, off = 0;
    if (read_file(path, &p, &n) != 0) return errno == ENOENT ? 0 : -1;
    const uint8_t *pl;
    size_t pn;
    int rc;
    uint64_t nrec = 0;
    bool ended = false;
    while ((rc = rec_next(p, n, off, &pl, &pn)) == 1) {
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
        log_kv(LOG_ERROR, "the snapshot is damaged: refusing to start", "path", path, "offset",
               LOG_UINT(off), NULL);
        return -1;
    }
    P.loaded_records += nrec;
    return 0;
}

int persist_open(const char *dir, bool on, int fsync_mode, bool repair) {
    P.on = on;
    P.mode = fsync_mode;
    if (!on) return 0;
    crc_init();
    snprintf(P.dir, sizeof P.dir, "%s", dir);
    int64_t t0 = now_ns();
    P.replaying = true;
    uint64_t first = 0, *segs;
    int rc = load_snapshot(&first);
    size_t nseg = list_segments(&segs);
    bool stop = false;
    uint64_t seg = first;
    for (size_t i = 0; i < nseg && rc == 0; i++) {
        char path[3100];
        if (segs[i] < first || stop) {
            /* covered by the snapshot (a crash before they were removed), or after a cut */
            seg_path(path, sizeof path, segs[i]);
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
    P.replaying = false;
    mpb__buf_free(&replay_out);
    if (rc != 0) return -1;
    if (seg_open(seg) != 0) return -1;
    struct stat st;
    P.log_bytes = fstat(P.fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    char path[3100];
    snprintf(path, sizeof path, "%s/snapshot", P.dir);
    P.snap_bytes = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
    P.load_ms = (now_ns() - t0) / 1000000;
    P.last_fsync_ms = now_ms();
    /* Tokens handed out from now on are above every one the log knows of. */
    if (P.fence_bound > g_fence) g_fence = P.fence_bound;
    log_kv(LOG_INFO, "state loaded", "records", LOG_UINT(P.loaded_records), "objects",
           LOG_UINT(store_count()), "sessions", LOG_UINT(sess_count()), "ms",
           LOG_INT(P.load_ms), NULL);
    return 0;
}

void persist_close(void) {
    if (!P.on) return;
    persist_commit();
    fsync_thread_stop();
    if (P.child > 0) {
        int status;
        if (waitpid(P.child, &status, 0) == P.child) child_done(status);
    }
    if (P.fd >= 0) {
        fdatasync(P.fd);
        close(P.fd);
        P.fd = -1;
    }
    mpb__buf_free(&P.batch);
    free(P.savers);
    P.savers = NULL;
    P.nsavers = P.capsavers = 0;
}

/* ---- info and metrics ---- */

static const char *mode_name(void) {
    static const char *const names[] = {"no", "everysec", "always"};
    return names[P.mode];
}

uint32_t persist_info(mpb__buf_t *b) {
    mpb__w_cstr(b, "persistence");
    if (!P.on) {
        mpb__w_map(b, 1);
        mpb__w_cstr(b, "enabled");
        mpb__w_bool(b, false);
        return 1;
    }
    mpb__w_map(b, 11);
    mpb__w_cstr(b, "enabled");
    mpb__w_bool(b, true);
    mpb__w_cstr(b, "fsync");
    mpb__w_cstr(b, mode_name());
    mpb__w_cstr(b, "log_bytes");
    mpb__w_uint(b, P.log_bytes);
    uint64_t fsyncs;
    int64_t last_fsync;
    fsync_stats(&fsyncs, &last_fsync);
    mpb__w_cstr(b, "last_fsync_ms"); /* Unix time */
    mpb__w_int(b, last_fsync);
    mpb__w_cstr(b, "snapshot_bytes");
    mpb__w_uint(b, P.snap_bytes);
    mpb__w_cstr(b, "last_snapshot_ms");
    mpb__w_int(b, P.last_snap_ms);
    mpb__w_cstr(b, "last_snapshot_duration_ms");
    mpb__w_int(b, P.last_snap_dur_ms);
    mpb__w_cstr(b, "snapshot_in_progress");
    mpb__w_bool(b, P.child > 0);
    mpb__w_cstr(b, "replay_failed");
    mpb__w_uint(b, P.replay_failed);
    mpb__w_cstr(b, "loaded_records");
    mpb__w_uint(b, P.loaded_records);
    mpb__w_cstr(b, "load_ms");
    mpb__w_int(b, P.load_ms);
    return 1;
}

static void metric(mpb__buf_t *b, const char *name, const char *type, const char *help,
                   double v) {
    char line[512];
    int k = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help,
                     name, type, name, v);
    mpb__w_raw(b, line, (size_t)k);
}

void persist_metrics(mpb__buf_t *b) {
    metric(b, "mpb_persist_enabled", "gauge", "1 when the state is logged to disk", P.on);
    if (!P.on) return;
    metric(b, "mpb_persist_log_bytes", "gauge", "Bytes in the log since the last snapshot",
           (double)P.log_bytes);
    uint64_t fsyncs;
    int64_t last_fsync;
    fsync_stats(&fsyncs, &last_fsync);
    metric(b, "mpb_persist_last_fsync_timestamp_seconds", "gauge",
           "When the log was last fsynced (Unix time)", (double)last_fsync / 1000.0);
    metric(b, "mpb_persist_fsyncs_total", "counter", "fsyncs of the log", (double)fsyncs);
    metric(b, "mpb_persist_writes_total", "counter", "write() calls on the log", (double)P.writes);
    metric(b, "mpb_persist_snapshot_bytes", "gauge", "Size of the last snapshot",
           (double)P.snap_bytes);
    metric(b, "mpb_persist_last_snapshot_timestamp_seconds", "gauge",
           "When the last snapshot was finished (Unix time; 0: none in this run)",
           (double)P.last_snap_ms / 1000.0);
    metric(b, "mpb_persist_last_snapshot_duration_seconds", "gauge",
           "How long the last snapshot took", (double)P.last_snap_dur_ms / 1000.0);
    metric(b, "mpb_persist_snapshots_failed_total", "counter", "Snapshots that failed",
           (double)P.snaps_failed);
}
