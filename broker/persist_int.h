/* persist_int.h - what the three parts of persistence share: the record types, the state of
 * the log, and the record and file helpers. persist.c writes the log (group commit, fsync),
 * persist_snap.c writes snapshots and compacts, persist_load.c loads and repairs at a start.
 * Nothing outside them includes it: see persist.h. */
#ifndef MPB_PERSIST_INT_H
#define MPB_PERSIST_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker.h"
#include "persist.h"

enum {
    R_REQ = 1,        /* [1, session, its seq_hi, [rid, op, name, args...]] */
    R_SESS = 2,       /* [2, id, token, host, pid, name] */
    R_SESS_END = 3,   /* [3, id] */
    R_FENCE = 4,      /* [4, bound above every token handed out] */
    R_OBJ = 5,        /* [5, kind, name, state...] (snapshot) */
    R_SNAP = 6,       /* [6, "mpb-snapshot", 1, first segment, next session id, fence] */
    R_END = 7,        /* [7, records before it] (snapshot) */
    R_TASK_DONE = 8,  /* [8, task id, failed, canceled, result|nil] */
    R_TASK = 9,       /* [9, id, caller, function, calls, done, failed, canceled, result|nil] */
    R_POOL = 10,      /* [10, next task id, next job id] (snapshot) */
    R_ANON_GONE = 11, /* [11, name]: an anonymous object's grace ran out */
    R_AREF = 12,      /* [12, name, session, n]: references it held (snapshot) */
};

#define REC_HDR       8
#define REC_MAX       (1u << 30)
#define SNAP_MAGIC    "mpb-snapshot"
#define AUTO_MIN      (64u << 20) /* compaction once the log passes this and the snapshot */
#define FENCE_LEAD_US 10000000u   /* the bound the log keeps runs this far ahead */

typedef struct persist_state {
    bool on, replaying;
    int mode;
    char dir[3000];
    int fd;
    uint64_t seg;       /* the segment appended to */
    uint64_t end;       /* its records end here */
    uint64_t zeroed;    /* zero-filled and durable up to here (--fsync always; else <= end) */
    mpb__buf_t batch;   /* records of this turn, not yet written */
    size_t last_at;     /* where the batch's last request record starts */
    bool dirty;         /* written, not yet fsynced */
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
    } * savers; /* save requests answered when the child is done */
    size_t nsavers, capsavers;
} persist_state_t;

extern persist_state_t g_persist;

/* persist.c */
void persist_crc_init(void);
/* A record's header is reserved at persist_rec_begin() and filled at persist_rec_end(). */
size_t persist_rec_begin(mpb__buf_t *b);
void persist_rec_end(mpb__buf_t *b, size_t at);
/* The session record [R_SESS, id, token, host, pid, name], for the log and the snapshot. */
void persist_w_sess(mpb__buf_t *b, const sess_t *s);
/* A result blob as it is, or nil. */
void persist_w_result(mpb__buf_t *b, const blob_t *result);
void persist_w_fence(mpb__buf_t *b, uint64_t bound);
int persist_write_all(int fd, const uint8_t *p, size_t n);
int persist_do_fsync(void);
/* What the fsync thread did, read under its lock. */
void persist_fsync_stats(uint64_t *count, int64_t *last_unix_ms);
void persist_seg_path(char *out, size_t n, uint64_t seg);
void persist_sync_dir(void);
/* Makes segment seg the one appended to. 0 or -1 (logged). */
int persist_seg_open(uint64_t seg);
/* A whole file into a new buffer. 0 or -1. */
int persist_read_file(const char *path, uint8_t **out, size_t *n);
/* The record at off: 1 and its payload, 0 at the end, -1 if it is damaged or cut short. */
int persist_rec_next(const uint8_t *p, size_t n, size_t off, const uint8_t **pl, size_t *pn);
/* A little-endian u32, as the record header has its length and CRC. */
uint32_t persist_get32(const uint8_t *p);

/* persist_snap.c */
/* Reaps a snapshot child that ended with status. */
void persist_child_done(int status);

/* persist_load.c */
/* An object record [R_OBJ, kind, name, state...] of len items, as the snapshot has it. */
int persist_load_obj(mpb__rd_t *r, uint32_t len);

#endif
