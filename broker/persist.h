/* persist.h - the broker's state on disk: a log of the writes, appended before their replies
 * leave, and a snapshot that compacts it. See persist.c and PERSISTENCE.md. */
#ifndef BROKER_PERSIST_H
#define BROKER_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "req.h"
#include "sess.h"
#include "waiter.h"

enum { FSYNC_NO, FSYNC_EVERYSEC, FSYNC_ALWAYS };

/* Loads the snapshot and replays the log of dir, then opens the log for appending. With
 * on false it does nothing (pure in-memory broker). A damaged record in the middle of the
 * log refuses the start (-1, the reason logged) unless repair: then the log is cut there and
 * what was cut is reported. Returns 0 or -1. */
int persist_open(const char *dir, bool on, int fsync_mode, bool repair);
/* Writes what is pending, fsyncs, waits for a snapshot child, closes the log. */
void persist_close(void);
bool persist_enabled(void);
/* True while the log is being replayed: blocking ops do not wait, nothing is logged. */
bool persist_replaying(void);

/* Whether requests of this op are logged (state-changing ones but locks and waits). */
bool persist_logs_op(unsigned op);
/* Appends one request [rid, op, name, args...] (its raw msgpack) made by session s to the
 * batch of this loop turn; returns where its record ends, for persist_unlog(), 0 when nothing
 * is logged, or PERSIST_NOROOM when memory for the record ran out (the request must not run). */
size_t persist_req(const sess_t *s, const uint8_t *raw, size_t n);
#define PERSIST_NOROOM ((size_t)-1) /* persist_req: no memory for the record, not logged */
/* Takes back the record that ends at end, if nothing came after it (a refused or parked
 * request changed nothing). */
void persist_unlog(size_t end);
/* A parked request that now takes effect (a getter handed an item, a putter admitted, a
 * semaphore unit granted): logs [rid, op, name, args] for w's session, args being argc
 * msgpack values in a, n bytes. */
void persist_parked(const waiter_t *w, uint32_t argc, const uint8_t *a, size_t n);
/* obj.new as replay must run it: [rid, obj.new, the name it made, kind, open args] (argc
 * values in a, n bytes), session s holding the reference. */
void persist_obj_new(const sess_t *s, uint64_t rid, const obj_t *o, uint32_t argc, const uint8_t *a,
                     size_t n);
/* An anonymous object's grace ran out: it was deleted. */
void persist_anon_gone(const obj_t *o);
/* Sessions, so that a client can resume one after a restart. */
void persist_session(const sess_t *s);
void persist_session_end(const sess_t *s);
/* A pool task finished (done, failed or canceled) with result: its outcome, for a task that
 * the log brings back queued. */
void persist_task_done(uint64_t id, bool failed, bool canceled, const blob_t *result);
/* Fencing tokens: the log keeps a bound above every token handed out. */
void persist_fence(uint64_t token);

/* Records of this turn that are not yet written (and with --fsync always, not on disk):
 * replies must wait. */
bool persist_holding(void);
/* Writes the turn's records in one write() and fsyncs as --fsync says. 0 or -1 (logged;
 * the broker cannot keep its promise then and stops). */
int persist_commit(void);
/* Timers: fsync every second (everysec), a snapshot child that finished, automatic
 * compaction when the log has grown. */
void persist_tick(int64_t now);
/* Starts a snapshot in the background. 0, or -1 with why in err. */
int persist_save(char *err, size_t n);
/* The save op: starts a snapshot and parks r, answered {bytes, ms} when the child is done,
 * EIO if it failed; EBUSY while another one is being written, EINVAL with persistence off. */
int persist_save_req(req_t *r);
/* What the log and the snapshots did, for info and /metrics (metrics_render.c). */
typedef struct persist_stats {
    bool on;
    int fsync_mode; /* FSYNC_* */
    uint64_t log_bytes, fsyncs, writes, snap_bytes, snaps_failed, replay_failed, loaded_records;
    int64_t last_fsync_unix_ms, last_snap_ms, last_snap_dur_ms, load_ms; /* Unix ms; ms */
    bool snapshot_in_progress;
} persist_stats_t;
void persist_stats(persist_stats_t *st);
/* info: the persistence map pair (count returned). */
uint32_t persist_info(mpb__buf_t *b);

/* pool.c: its tasks for a snapshot (every task with a caller, by id), its id counters, and
 * tasks brought back (pool_restore_task: -1 if the record makes no sense). */
typedef void (*pool_task_fn)(void *ctx, uint64_t id, const sess_t *owner, const char *fn,
                             uint32_t fnlen, const blob_t *calls, bool done, bool failed,
                             bool canceled, const blob_t *result);
void pool_each_task(pool_task_fn fn, void *ctx);
void pool_counters(uint64_t *task, uint64_t *job);
void pool_set_counters(uint64_t task, uint64_t job);
int pool_restore_task(uint64_t id, sess_t *owner, const char *fn, uint32_t fnlen,
                      const uint8_t *calls, size_t n, bool done, bool failed, bool canceled,
                      const uint8_t *result, size_t rn);
void pool_restore_finish(uint64_t id, bool failed, bool canceled, const uint8_t *result, size_t rn);

#endif
