/* reqlog.h - one record of a request served, as the slow log (slowlog.c) and the monitors
 * (monitor.c) keep it, and the one writer of its map: the loop notes each request once. */
#ifndef BROKER_REQLOG_H
#define BROKER_REQLOG_H

#include "req.h"

#define REQREC_ARGS_MAX 256 /* argument bytes kept for mpb monitor --values */

typedef struct reqrec {
    uint64_t id;     /* the keeper's own numbering */
    int64_t time_ms; /* wall clock, when it was served */
    int64_t us;      /* its time in the broker */
    unsigned op;
    int code;         /* its reply's, as on the wire */
    uint64_t session; /* the session that sent it (taken before dispatch: a bye ends it) */
    int64_t pid;
    char host[64];
    char object[272]; /* kind/name, or "" for ops without an object */
    uint32_t argc;
    uint32_t args_len; /* the arguments' msgpack bytes */
    bool args_kept;    /* within REQREC_ARGS_MAX: args holds them */
    uint8_t args[REQREC_ARGS_MAX];
} reqrec_t;

/* The pairs a keeper writes, in its order: RF_DURATION and RF_LATENCY are both us. */
typedef enum reqrec_field {
    RF_ID,
    RF_TIME,
    RF_DURATION,
    RF_LATENCY,
    RF_OP,
    RF_OBJECT,
    RF_SESSION,
    RF_HOST,
    RF_PID,
    RF_CODE,
    RF_ARGS, /* "args": [...], or "args_bytes": n when they were too long to keep */
} reqrec_field_t;

/* Writes e as a map of the n fields, in that order. */
void reqrec_write(mpb__buf_t *b, const reqrec_t *e, const reqrec_field_t *fields, size_t n);

/* A request was served (not parked): sid, the session that sent it; args, where its arguments
 * begin in r->raw; code, its reply's; ns, its time. The slow log and the monitors get it. */
void reqlog_note(const req_t *r, uint64_t sid, const uint8_t *args, int code, int64_t ns);

/* slowlog.c: whether a request of us µs is kept, and keeping it. */
bool slowlog_wants(int64_t us);
void slowlog_keep(const reqrec_t *e);
/* monitor.c: whether a request of session sid is shown (monitors exist, sid is none), and
 * showing it. */
bool monitor_wants(uint64_t sid);
void monitor_keep(const reqrec_t *e);

#endif
