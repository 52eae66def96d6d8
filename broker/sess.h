/* sess.h - sessions: one per client, outliving its connections; what each holds (lock
 * ownership, semaphore units, deliveries), given back when it ends by bye, kill or expiry. */
#ifndef BROKER_SESS_H
#define BROKER_SESS_H

#include <sys/queue.h>

#include "peer.h"

/* What a session holds, released when it ends: lock ownership or semaphore units. */
typedef struct hold {
    obj_t *obj;
    uint64_t tid;
    int64_t units;
} hold_t;

/* References one session holds on one anonymous object. */
typedef struct sref {
    obj_t *obj;
    int64_t n;
} sref_t;

struct sess {
    uint64_t id;
    hold_t *holds;
    size_t nholds, capholds;
    sref_t *refs; /* anonymous objects it keeps alive: anon.c */
    size_t nrefs, caprefs;
    LIST_HEAD(, waiter) waiters; /* its parked requests */
    struct pool_sess *pool;      /* its tasks and, for a worker, what it serves: pool.c */
    uint8_t token[MPB__TOKEN_LEN];
    peer_t *peer; /* the connection it speaks on now; NULL while none */
    char host[64];
    char name[64];
    int64_t pid;
    int64_t created_ms, last_seen_ms;
    uint64_t seq_hi;         /* highest REQ sequence number accepted on any of its channels */
    struct replay *replay;   /* replies to its recent requests: replay.c */
    uint8_t origin[RID_MAX]; /* the connection that opened it, for max-sessions-per-conn */
    uint8_t originlen;
    LIST_ENTRY(sess) link; /* all sessions: sess_all(), then LIST_NEXT(s, link) */
};

/* The sessions, newest first (walk with ->next). */
sess_t *sess_all(void);
size_t sess_count(void);
sess_t *sess_lookup(uint64_t id);
/* Whether peer p may open one more session: 0, or -1 with the limit it would pass in why. */
int sess_admit(const peer_t *p, char *why, size_t n);
sess_t *sess_new(void);
/* Ends s (why: "bye", "expired", "killed", ...): its parked requests are dropped, what it
 * held is given back, waking the next waiters. */
void sess_end(sess_t *s, const char *why);
/* Ends the sessions silent for longer than session-ttl. */
void sess_expire(int64_t now);
/* Writes who s is as three map pairs, "session" (its id), "host" and "pid", into a map the
 * caller has opened and counted them in; s NULL (gone) writes 0, "" and 0. */
void sess_describe(const sess_t *s, mpb__buf_t *b);
void sess_hold(sess_t *s, obj_t *o, uint64_t tid, int64_t units);
/* Removes up to units from the holding; returns what was removed. */
int64_t sess_unhold(sess_t *s, obj_t *o, uint64_t tid, int64_t units);

/* o is being deleted: every session forgets what it held in it (a store_on_delete hook). */
void sess_forget_obj(obj_t *o);

/* Sessions as the log brings them back (persist.c). */
sess_t *sess_restore(uint64_t id, const uint8_t *token, const char *host, int64_t pid,
                     const char *name);
void sess_bump_id(uint64_t next);
void sess_end_id(uint64_t id, const char *why);
/* After replay: sessions keep their ids and tokens, but hold no lock or unit any more. */
void sess_restore_done(void);
uint64_t sess_next_id(void);

#endif
