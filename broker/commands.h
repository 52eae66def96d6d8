/* commands.h - the command table, dispatch, and the ops about the broker itself rather than
 * one object (commands.c, clients.c, slowlog.c, monitor.c, anon.c). */
#ifndef BROKER_COMMANDS_H
#define BROKER_COMMANDS_H

#include "kind.h"

/* CMD_OPT1: one more argument may follow the arity ones (an argument added to an op later).
 * CMD_DENYOOM: it may grow memory, so it is refused past --max-memory (mem.c). */
enum {
    CMD_READ = 1,
    CMD_WRITE = 2,
    CMD_NOOBJ = 4,
    CMD_ANYKIND = 8,
    CMD_OPT1 = 16,
    CMD_DENYOOM = 32
};
typedef int (*cmd_proc)(req_t *r);
typedef struct command {
    unsigned op;
    cmd_proc proc;
    int arity; /* arguments after the name; -N: at least N */
    kind_t kind;
    int flags;
} command_t;
const command_t *command_find(unsigned op);
/* Checks and runs one request; writes its reply (none if it parks it). Returns the reply's
 * code as on the wire: 0, or the error's number (MPB_E... negated). */
int dispatch(req_t *r);

/* Handlers of the ops about the broker and its objects as a whole. */
int cmd_ping(req_t *r);
int cmd_info(req_t *r);
int cmd_obj_list(req_t *r);
int cmd_obj_info(req_t *r);
int cmd_obj_delete(req_t *r);
int cmd_bye(req_t *r);
int cmd_save(req_t *r);
int cmd_open(req_t *r);
/* slowlog.c: the slowest recent requests, as Redis's SLOWLOG: a request served (not parked)
 * in more than slowlog-log-slower-than µs is kept, the newest slowlog-max-len of them. */
int cmd_slowlog(req_t *r);
/* monitor.c: the requests served, for the sessions that asked (mpb monitor). */
int cmd_monitor(req_t *r);
/* clients.c */
int cmd_clients(req_t *r);
int cmd_session_kill(req_t *r);
/* Whether the argument counts suit a command (after the object name). */
bool arity_ok(const command_t *c, uint32_t argc);

#endif
