/* commands.c - the command table, the checks every request passes before its handler runs
 * (known op, argument count, object name, kind), and the ops that are about the broker
 * itself rather than one object. */
#include <fnmatch.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anon.h"
#include "commands.h"
#include "mem.h"
#include "persist.h"
#include "pool.h"
#include "server.h"
#include "stream.h"
#include "store.h"

/* op, handler, arity (arguments after the name; -N: at least N), kind, flags */
static const command_t commands[] = {
    {MPB_OP_PING,            cmd_ping,            0,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_INFO,            cmd_info,            0,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_OBJ_LIST,        cmd_obj_list,        3,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_OBJ_INFO,        cmd_obj_info,        0,  KIND_NONE,      CMD_ANYKIND                       },
    {MPB_OP_OBJ_DELETE,      cmd_obj_delete,      0,  KIND_NONE,      CMD_ANYKIND                       },
    {MPB_OP_BYE,             cmd_bye,             0,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_CLIENTS,         cmd_clients,         0,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_SESSION_KILL,    cmd_session_kill,    1,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_SLOWLOG,         cmd_slowlog,         1,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_MONITOR,         cmd_monitor,         2,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_OBJ_NEW,         cmd_obj_new,         -1, KIND_NONE,      CMD_NOOBJ | CMD_DENYOOM           },
    {MPB_OP_OBJ_REF,         cmd_obj_ref,         0,  KIND_NONE,      CMD_ANYKIND                       },
    {MPB_OP_OBJ_UNREF,       cmd_obj_unref,       0,  KIND_NONE,      CMD_ANYKIND                       },
    {MPB_OP_SAVE,            cmd_save,            0,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_DICT_OPEN,       cmd_open,            0,  KIND_DICT,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_DICT_SET,        cmd_dict_set,        2,  KIND_DICT,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_DICT_GET,        cmd_dict_get,        -1, KIND_DICT,      CMD_READ                          },
    {MPB_OP_DICT_DEL,        cmd_dict_del,        1,  KIND_DICT,      CMD_WRITE                         },
    {MPB_OP_DICT_CONTAINS,   cmd_dict_contains,   1,  KIND_DICT,      CMD_READ                          },
    {MPB_OP_DICT_LEN,        cmd_dict_len,        0,  KIND_DICT,      CMD_READ                          },
    {MPB_OP_DICT_SCAN,       cmd_dict_scan,       3,  KIND_DICT,      CMD_READ                          },
    {MPB_OP_DICT_UPDATE,     cmd_dict_update,     1,  KIND_DICT,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_DICT_POP,        cmd_dict_pop,        -1, KIND_DICT,      CMD_WRITE                         },
    {MPB_OP_DICT_POPITEM,    cmd_dict_popitem,    0,  KIND_DICT,      CMD_WRITE                         },
    {MPB_OP_DICT_SETDEFAULT, cmd_dict_setdefault, 2,  KIND_DICT,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_DICT_INCR,       cmd_dict_incr,       2,  KIND_DICT,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_DICT_CLEAR,      cmd_dict_clear,      0,  KIND_DICT,      CMD_WRITE                         },
    {MPB_OP_DICT_COPY,       cmd_dict_copy,       1,  KIND_DICT,      CMD_READ                          },
    {MPB_OP_LIST_OPEN,       cmd_open,            0,  KIND_LIST,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_LIST_APPEND,     cmd_list_append,     1,  KIND_LIST,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_LIST_EXTEND,     cmd_list_extend,     1,  KIND_LIST,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_LIST_INSERT,     cmd_list_insert,     2,  KIND_LIST,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_LIST_GET,        cmd_list_get,        1,  KIND_LIST,      CMD_READ                          },
    {MPB_OP_LIST_SET,        cmd_list_set,        2,  KIND_LIST,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_LIST_SLICE,      cmd_list_slice,      3,  KIND_LIST,      CMD_READ                          },
    {MPB_OP_LIST_POP,        cmd_list_pop,        1,  KIND_LIST,      CMD_WRITE                         },
    {MPB_OP_LIST_REMOVE,     cmd_list_remove,     1,  KIND_LIST,      CMD_WRITE                         },
    {MPB_OP_LIST_INDEX,      cmd_list_index,      3,  KIND_LIST,      CMD_READ                          },
    {MPB_OP_LIST_COUNT,      cmd_list_count,      1,  KIND_LIST,      CMD_READ                          },
    {MPB_OP_LIST_LEN,        cmd_list_len,        0,  KIND_LIST,      CMD_READ                          },
    {MPB_OP_LIST_REVERSE,    cmd_list_reverse,    0,  KIND_LIST,      CMD_WRITE                         },
    {MPB_OP_LIST_SORT,       cmd_list_sort,       1,  KIND_LIST,      CMD_WRITE                         },
    {MPB_OP_LIST_CLEAR,      cmd_list_clear,      0,  KIND_LIST,      CMD_WRITE                         },
    {MPB_OP_QUEUE_OPEN,      cmd_queue_open,      2,  KIND_QUEUE,     CMD_WRITE | CMD_OPT1 | CMD_DENYOOM},
    {MPB_OP_QUEUE_PUT,       cmd_queue_put,       2,  KIND_QUEUE,     CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_QUEUE_GET,       cmd_queue_get,       1,  KIND_QUEUE,     CMD_WRITE | CMD_OPT1              },
    {MPB_OP_QUEUE_QSIZE,     cmd_queue_qsize,     0,  KIND_QUEUE,     CMD_READ                          },
    {MPB_OP_QUEUE_TASK_DONE, cmd_queue_task_done, 0,  KIND_QUEUE,     CMD_WRITE | CMD_OPT1              },
    {MPB_OP_QUEUE_JOIN,      cmd_queue_join,      1,  KIND_QUEUE,     CMD_WRITE                         },
    {MPB_OP_QUEUE_EMPTY,     cmd_queue_empty,     0,  KIND_QUEUE,     CMD_READ                          },
    {MPB_OP_QUEUE_FULL,      cmd_queue_full,      0,  KIND_QUEUE,     CMD_READ                          },
    {MPB_OP_QUEUE_PEEK,      cmd_queue_peek,      1,  KIND_QUEUE,     CMD_READ                          },
    {MPB_OP_PIPE_OPEN,       cmd_pipe_open,       2,  KIND_PIPE,      CMD_WRITE                         },
    {MPB_OP_PIPE_SEND,       cmd_pipe_send,       2,  KIND_PIPE,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_PIPE_RECV,       cmd_pipe_recv,       2,  KIND_PIPE,      CMD_WRITE                         },
    {MPB_OP_PIPE_POLL,       cmd_pipe_poll,       2,  KIND_PIPE,      CMD_WRITE                         },
    {MPB_OP_PIPE_CLOSE,      cmd_pipe_close,      1,  KIND_PIPE,      CMD_WRITE                         },
    {MPB_OP_LOCK_OPEN,       cmd_open,            0,  KIND_LOCK,      CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_LOCK_ACQUIRE,    cmd_lock_acquire,    2,  KIND_LOCK,      CMD_WRITE                         },
    {MPB_OP_LOCK_RELEASE,    cmd_lock_release,    1,  KIND_LOCK,      CMD_WRITE                         },
    {MPB_OP_LOCK_LOCKED,     cmd_lock_locked,     0,  KIND_LOCK,      CMD_READ                          },
    {MPB_OP_RLOCK_OPEN,      cmd_open,            0,  KIND_RLOCK,     CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_RLOCK_ACQUIRE,   cmd_lock_acquire,    2,  KIND_RLOCK,     CMD_WRITE                         },
    {MPB_OP_RLOCK_RELEASE,   cmd_lock_release,    1,  KIND_RLOCK,     CMD_WRITE                         },
    {MPB_OP_RLOCK_LOCKED,    cmd_lock_locked,     0,  KIND_RLOCK,     CMD_READ                          },
    {MPB_OP_SEM_OPEN,        cmd_sem_open,        2,  KIND_SEMAPHORE, CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_SEM_ACQUIRE,     cmd_sem_acquire,     1,  KIND_SEMAPHORE, CMD_WRITE                         },
    {MPB_OP_SEM_RELEASE,     cmd_sem_release,     1,  KIND_SEMAPHORE, CMD_WRITE                         },
    {MPB_OP_SEM_VALUE,       cmd_sem_value,       0,  KIND_SEMAPHORE, CMD_WRITE                         },
    {MPB_OP_COND_OPEN,       cmd_cond_open,       1,  KIND_CONDITION, CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_COND_WAIT,       cmd_cond_wait,       2,  KIND_CONDITION, CMD_WRITE                         },
    {MPB_OP_COND_NOTIFY,     cmd_cond_notify,     2,  KIND_CONDITION, CMD_WRITE                         },
    {MPB_OP_EVENT_OPEN,      cmd_open,            0,  KIND_EVENT,     CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_EVENT_SET,       cmd_event_set,       0,  KIND_EVENT,     CMD_WRITE                         },
    {MPB_OP_EVENT_CLEAR,     cmd_event_clear,     0,  KIND_EVENT,     CMD_WRITE                         },
    {MPB_OP_EVENT_IS_SET,    cmd_event_is_set,    0,  KIND_EVENT,     CMD_READ                          },
    {MPB_OP_EVENT_WAIT,      cmd_event_wait,      1,  KIND_EVENT,     CMD_WRITE                         },
    {MPB_OP_BARRIER_OPEN,    cmd_barrier_open,    2,  KIND_BARRIER,   CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_BARRIER_WAIT,    cmd_barrier_wait,    1,  KIND_BARRIER,   CMD_WRITE                         },
    {MPB_OP_BARRIER_RESET,   cmd_barrier_reset,   0,  KIND_BARRIER,   CMD_WRITE                         },
    {MPB_OP_BARRIER_ABORT,   cmd_barrier_abort,   0,  KIND_BARRIER,   CMD_WRITE                         },
    {MPB_OP_BARRIER_STATE,   cmd_barrier_state,   0,  KIND_BARRIER,   CMD_READ                          },
    {MPB_OP_VALUE_OPEN,      cmd_value_open,      1,  KIND_VALUE,     CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_VALUE_GET,       cmd_value_get,       0,  KIND_VALUE,     CMD_READ                          },
    {MPB_OP_VALUE_SET,       cmd_value_set,       1,  KIND_VALUE,     CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_VALUE_ADD,       cmd_value_add,       -1, KIND_VALUE,     CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_NS_OPEN,         cmd_open,            0,  KIND_NAMESPACE, CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_NS_GET,          cmd_ns_get,          1,  KIND_NAMESPACE, CMD_READ                          },
    {MPB_OP_NS_SET,          cmd_ns_set,          2,  KIND_NAMESPACE, CMD_WRITE | CMD_DENYOOM           },
    {MPB_OP_NS_DEL,          cmd_ns_del,          1,  KIND_NAMESPACE, CMD_WRITE                         },
    {MPB_OP_NS_LIST,         cmd_ns_list,         0,  KIND_NAMESPACE, CMD_READ                          },
    {MPB_OP_POOL_REGISTER,   cmd_pool_register,   -3, KIND_NONE,      CMD_NOOBJ | CMD_DENYOOM           },
    {MPB_OP_POOL_FETCH,      cmd_pool_fetch,      2,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_POOL_DONE,       cmd_pool_done,       1,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_POOL_SUBMIT,     cmd_pool_submit,     3,  KIND_NONE,      CMD_NOOBJ | CMD_DENYOOM           },
    {MPB_OP_POOL_TAKE,       cmd_pool_take,       3,  KIND_NONE,      CMD_NOOBJ | CMD_OPT1              },
    {MPB_OP_POOL_CANCEL,     cmd_pool_cancel,     2,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_POOL_STATS,      cmd_pool_stats,      0,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_POOL_FNINFO,     cmd_pool_fninfo,     1,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_POOL_UNREGISTER, cmd_pool_unregister, 0,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_POOL_START,      cmd_pool_start,      1,  KIND_NONE,      CMD_NOOBJ                         },
    {MPB_OP_POOL_OUTPUT,     cmd_pool_output,     1,  KIND_NONE,      CMD_NOOBJ                         },
};

static const command_t *by_op[MPB__OP_MAX];

const command_t *command_find(unsigned op) {
    if (!by_op[MPB_OP_PING]) {
        for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
            by_op[commands[i].op] = &commands[i];
    }
    return op < MPB__OP_MAX ? by_op[op] : NULL;
}

bool arity_ok(const command_t *c, uint32_t argc) {
    if (c->arity < 0) return argc >= (uint32_t)-c->arity;
    return argc >= (uint32_t)c->arity && argc <= (uint32_t)c->arity + !!(c->flags & CMD_OPT1);
}

/* A request that changes state goes to the log before it runs, so that what it causes
 * (a parked getter it wakes) is logged after it; a refused or parked one is taken back. */
static size_t run_logged_begin(req_t *r) {
    if (!r->raw || !persist_logs_op(r->op)) return 0;
    return persist_req(r->sess, r->raw, r->rawlen);
}

static void run_logged(const command_t *cmd, req_t *r) {
    size_t logged = run_logged_begin(r);
    int rc = logged == PERSIST_NOROOM ? mem_no_log_room(r) : cmd->proc(r);
    if (logged && (rc < 0 || r->parked)) persist_unlog(logged);
}

static bool is_open(unsigned op) {
    const char *n = mpb__op_name(op);
    size_t l = n ? strlen(n) : 0;
    return l > 5 && !strcmp(n + l - 5, ".open");
}

/* Stand-ins for objects that a read finds missing: reading must not create. */
static obj_t empty_objs[KIND__N];

int dispatch(req_t *r) {
    const command_t *cmd = command_find(r->op);
    if (!cmd) {
        reply_error(r, MPB_EUNKNOWNOP, "unknown op %u", r->op);
        return r->code;
    }
    if (!arity_ok(cmd, r->argc)) {
        if (cmd->flags & CMD_OPT1)
            reply_error(r, MPB_EPROTO, "%s takes %d or %d arguments, got %u", mpb__op_name(r->op),
                        cmd->arity, cmd->arity + 1, r->argc);
        else
            reply_error(r, MPB_EPROTO, "%s takes %s%d argument%s, got %u", mpb__op_name(r->op),
                        cmd->arity < 0 ? "at least " : "", abs(cmd->arity),
                        abs(cmd->arity) == 1 ? "" : "s", r->argc);
        return r->code;
    }
    /* Past --max-memory (or short of memory), what would grow memory is refused; reads,
     * deletes and pops go on. */
    if ((cmd->flags & (CMD_DENYOOM | CMD_NOOBJ)) == (CMD_DENYOOM | CMD_NOOBJ) &&
        mem_refuse(r, r->rawlen) < 0)
        return r->code;
    if (cmd->flags & CMD_NOOBJ) {
        run_logged(cmd, r);
        return r->code;
    }
    if (!r->name) {
        reply_error(r, MPB_EINVAL, "%s needs an object name", mpb__op_name(r->op));
        return r->code;
    }
    if (cmd->flags & CMD_ANYKIND) {
        run_logged(cmd, r); /* the handler resolves "kind/name" itself */
        return r->code;
    }
    if (!mpb__name_ok(r->name, r->namelen)) {
        reply_error(r, MPB_EINVAL,
                    "bad object name: 1 to 255 printable ASCII characters, no '/' or space");
        return r->code;
    }
    obj_t *o = store_get(r->name, r->namelen);
    if (!o && anon_name(r->name, r->namelen)) {
        /* Reading it as empty, or making it anew, would hide that it is gone. */
        reply_error(r, MPB_ENOOBJ,
                    "no object %s/%.*s: names starting with '~' are anonymous objects, made by "
                    "obj.new, and this one is gone (its last reference was given back) or "
                    "never was",
                    kind_name(cmd->kind), (int)r->namelen, r->name);
        return r->code;
    }
    if (o && o->kind != cmd->kind) {
        reply_error(r, MPB_EKIND, "%.*s is a %s, not a %s", (int)r->namelen, r->name,
                    kind_name(o->kind), kind_name(cmd->kind));
        return r->code;
    }
    /* Opening an object that exists grows nothing: a client short of memory may still. */
    if ((cmd->flags & CMD_DENYOOM) && !(o && is_open(r->op)) &&
        mem_refuse(r, r->rawlen ? r->rawlen : r->namelen + 64u) < 0)
        return r->code;
    bool created = false;
    if (!o) {
        if (cmd->flags & CMD_READ) {
            o = &empty_objs[cmd->kind];
            if (!o->readonly_empty) {
                o->kind = cmd->kind;
                o->readonly_empty = true;
                const kind_ops_t *k = kind_ops(cmd->kind);
                if (k->init) k->init(o);
            }
            o->name = (char *)r->name; /* only for messages, during this call */
            o->namelen = r->namelen;
        } else {
            if (g_limits.max_objects && store_count() >= g_limits.max_objects) {
                reply_error(r, MPB_ELIMIT,
                            "%zu objects: max-objects %zu reached (delete some first)",
                            store_count(), g_limits.max_objects);
                return r->code;
            }
            o = store_create(cmd->kind, r->name, r->namelen);
            created = true;
        }
    }
    r->obj = o;
    size_t logged = run_logged_begin(r);
    int rc = logged == PERSIST_NOROOM ? mem_no_log_room(r) : cmd->proc(r);
    if (logged && (rc < 0 || r->parked)) persist_unlog(logged);
    /* A refused write leaves no trace: not even the object it would have made. */
    char why[8];
    if (created && rc < 0 && obj_size(o) == 0 && !obj_busy(o, why, sizeof why)) store_delete(o);
    return r->code;
}

/* ---- ops about the broker ---- */

/* ping -> nil. Also the heartbeat (sent with rid 0: no reply). */
int cmd_ping(req_t *r) {
    return reply_nil(r);
}

/* bye -> nil, then the session ends: its locks and waits are released at once. */
int cmd_bye(req_t *r) {
    reply_nil(r);
    sess_end(r->sess, "bye");
    return 0;
}

/* save -> {bytes, ms} once a snapshot of the state now is on disk (the loop goes on
 * meanwhile: the request is answered when the snapshot's child is done). EBUSY while another
 * snapshot is being written, EINVAL without persistence. */
int cmd_save(req_t *r) {
    return persist_save_req(r);
}

/* dict.open / list.open -> nil: creates the object if new (dispatch did). */
int cmd_open(req_t *r) {
    return reply_nil(r);
}

static size_t heap_bytes(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* info -> {version, uptime_s, pid, clients, sessions, objects, objects_by_kind, memory,
 *          waiters, encryption, connections} */
int cmd_info(req_t *r) {
    mpb__buf_t *b = reply_begin(r);
    mpb__w_map(b, 14);
    mpb__w_cstr(b, "version");
    mpb__w_cstr(b, MPBROKER_VERSION);
    mpb__w_cstr(b, "uptime_s");
    mpb__w_uint(b, (uint64_t)(now_ms() - g_started_ms) / 1000);
    mpb__w_cstr(b, "pid");
    mpb__w_int(b, getpid());
    mpb__w_cstr(b, "clients");
    mpb__w_uint(b, server_peer_count());
    mpb__w_cstr(b, "sessions");
    mpb__w_uint(b, sess_count());
    mpb__w_cstr(b, "objects");
    mpb__w_uint(b, store_count());
    mpb__w_cstr(b, "objects_by_kind");
    mpb__w_map(b, KIND__N - 1);
    for (int k = 1; k < KIND__N; k++) {
        mpb__w_cstr(b, kind_name((kind_t)k));
        mpb__w_uint(b, store_count_kind((kind_t)k));
    }
    mpb__w_cstr(b, "memory");
    mpb__w_uint(b, heap_bytes());
    mpb__w_cstr(b, "waiters");
    mpb__w_uint(b, waiter_count());
    mpb__w_cstr(b, "anonymous");
    mpb__w_uint(b, anon_count());
    mpb__w_cstr(b, "refs");
    mpb__w_uint(b, anon_refs_total());
    persist_info(b);
    mpb__w_cstr(b, "encryption");
    mpb__w_cstr(b, transport_encryption(server_transport()));
    mpb__w_cstr(b, "connections");
    mpb__w_uint(b, transport_connections(server_transport()) + stream_count());
    return 0;
}

/* obj.list PATTERN|nil CURSOR COUNT -> [next_cursor, [[kind, name, size], ...]] */
int cmd_obj_list(req_t *r) {
    const char *pat = NULL;
    uint32_t patlen = 0;
    uint64_t cursor, count;
    if (mpb__rd_nil(&r->args) && arg_str(r, "pattern", &pat, &patlen)) return -1;
    if (arg_uint(r, "cursor", &cursor) || arg_uint(r, "count", &count)) return -1;
    if (count == 0 || count > g_limits.max_scan) count = g_limits.max_scan;
    char pattern[512] = "*", path[300];
    if (pat) snprintf(pattern, sizeof pattern, "%.*s", (int)patlen, pat);
    const omap_t *m = store_map();
    mpb__buf_t items = {0};
    uint32_t n = 0;
    size_t i = omap_seek(m, cursor);
    uint64_t next = 0;
    for (; i < m->nents; i++) {
        const obj_t *o = m->ents[i].item;
        if (!o) continue;
        if (n == count) {
            next = m->ents[i].ord;
            break;
        }
        snprintf(path, sizeof path, "%s/%.*s", kind_name(o->kind), (int)o->namelen, o->name);
        if (fnmatch(pattern, path, 0) != 0 && fnmatch(pattern, o->name, 0) != 0) continue;
        mpb__w_array(&items, 3);
        mpb__w_cstr(&items, kind_name(o->kind));
        mpb__w_str(&items, o->name, o->namelen);
        mpb__w_uint(&items, obj_size(o));
        n++;
    }
    bbuf_ensure(&items);
    mpb__buf_t *b = reply_begin(r);
    mpb__w_array(b, 2);
    mpb__w_uint(b, next);
    mpb__w_array(b, n);
    mpb__w_raw(b, items.p, items.len);
    mpb__buf_free(&items);
    return 0;
}

/* obj.info "kind/name" -> {kind, name, size, ...per kind} */
int cmd_obj_info(req_t *r) {
    obj_t *o = resolve_path(r);
    if (!o) return -1;
    mpb__buf_t extra = {0};
    uint32_t n = 0;
    const kind_ops_t *k = kind_ops(o->kind);
    if (k->describe) n = k->describe(o, &extra);
    if (o->anon) n += anon_describe(o, &extra);
    bbuf_ensure(&extra);
    mpb__buf_t *b = reply_begin(r);
    mpb__w_map(b, 3 + n);
    mpb__w_cstr(b, "kind");
    mpb__w_cstr(b, kind_name(o->kind));
    mpb__w_cstr(b, "name");
    mpb__w_str(b, o->name, o->namelen);
    mpb__w_cstr(b, "size");
    mpb__w_uint(b, obj_size(o));
    mpb__w_raw(b, extra.p, extra.len);
    mpb__buf_free(&extra);
    return 0;
}

/* obj.delete "kind/name" -> nil */
int cmd_obj_delete(req_t *r) {
    obj_t *o = resolve_path(r);
    if (!o) return -1;
    char why[160];
    if (obj_busy(o, why, sizeof why))
        return reply_error(r, MPB_EBUSY, "cannot delete %.*s: %s", (int)r->namelen, r->name, why);
    store_delete(o);
    return reply_nil(r);
}
