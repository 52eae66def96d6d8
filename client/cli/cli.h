/* cli.h - what mpb.c shares with the command files beside it (cmd_*.c, help.c,
 * repl.c): the options, the connection, the one way each reports errors and
 * exits (report.c), and the argument readers (args.c). Internal to the mpb
 * program; never installed. */
#ifndef MPB_CLI_CLI_H
#define MPB_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "mpb/mpb.h"

#define EXIT_FAIL     1
#define EXIT_USAGE    2
#define EXIT_NOTFOUND 3
#define EXIT_TIMEOUT  75 /* EX_TEMPFAIL: try again later */

typedef struct cli_opt {
    const char *endpoint;
    const char *keyfile;
    bool json;
    bool key_json;
    int connect_timeout_ms;
} cli_opt_t;

extern cli_opt_t opt;
extern mpb_client_t *cli;
extern const char *cur_cmd; /* the command being run, for "op" in --json errors */

typedef struct {
    char kind[16];
    const char *name;
} objref_t;

/* report.c: reporting. Each returns (or is followed by) the exit status for
 * what it reports. */
__attribute__((format(printf, 2, 3))) void report(const char *code, const char *fmt, ...);
int fail(int rc, const char *what);
/* fail() for rc != 0, else {"ok":true} with --json: a command's last line. */
int report_ok(int rc, const char *what);
__attribute__((format(printf, 1, 2))) int usage_error(const char *fmt, ...);
/* The exit status for a failed call's rc (3 for not found or empty, 75 timed out). */
int status_of(int rc);
/* The one shape of every --json error, on stdout ("op" omitted when NULL). */
void print_json_error(const char *code, const char *msg, const char *op);
void print_json(json_t *j);
/* Prints one msgpack value as JSON: 0 or the exit status, reported. */
int print_value(const void *v, size_t n);
json_t *to_jansson(const void *v, size_t n);
/* to_jansson() of a reply, which it frees (mpb_free()). */
json_t *take_jansson(void *res, size_t n);
/* --json: prints j and frees it; returns 0, the command's status. */
int print_json_free(json_t *j);
long long jint(const json_t *o, const char *key);

/* args.c: each returns 0 or the exit status (usage errors reported). */
int parse_obj(const char *s, objref_t *o);
int parse_obj_of(const char *s, const char *kind, const char *what, objref_t *o);
/* A VALUE (JSON) as msgpack in a new *out (free() it). */
int parse_value(const char *text, void **out, size_t *n);
int parse_key(const char *text, void **out, size_t *n);
bool parse_i64(const char *s, int64_t *v); /* true if s is all an integer */
bool parse_seconds(const char *v, double *sec);
int parse_count(const char *cmd, const char *text, int64_t max, int64_t *n);
/* Takes --timeout S out of argv (up to "--"); *ms stays as it was without it. */
int take_timeout(int *argc, char **argv, int *ms);
/* Takes a flag without a value out of argv (up to "--"); true if it was there. */
bool take_flag(int *argc, char **argv, const char *flag);
/* 0 if kind/name exists, else the failure of command what, reported. */
int must_exist(const char *path, const char *what);
/* mpb_call() of op on obj (NULL: the broker) with the arguments [n]. */
int call_u64(unsigned op, const char *obj, uint64_t n, void **res, size_t *rn);

/* mpb.c: runs one command by name on the open connection (argv[0] is the
 * command). Returns its exit status; a name that is not a command is a usage
 * error. */
int cli_run(int argc, char **argv);
/* mpb.c: one prompt line (argv[0] the command, help too), options after it
 * included. */
int cli_exec(int argc, char **argv);
/* mpb.c: connects as the options say, with heartbeats; 0 or the exit status of
 * the failure. */
int cli_connect(void);
/* true if name is a command mpb knows */
bool cli_is_command(const char *name);

/* help.c: the usage texts, one per command, and the whole list. */
void help_usage(FILE *f);
/* Prints the help of one command to f; returns false if there is no such
 * command. */
bool help_command(FILE *f, const char *name);
int cmd_help(int argc, char **argv);

/* cmd_broker.c: mpb info [OBJ], mpb ping, mpb save */
int cmd_info(int argc, char **argv);
int cmd_ping(int argc, char **argv);
int cmd_save(int argc, char **argv);

/* cmd_obj.c: mpb ls, get, set, incr, del, append, put */
int cmd_ls(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_set(int argc, char **argv);
int cmd_incr(int argc, char **argv);
int cmd_del(int argc, char **argv);
int cmd_append(int argc, char **argv);
int cmd_put(int argc, char **argv);

/* cmd_sync.c: mpb set/clear/wait event/NAME (what: "set", "clear" or "wait"), and mpb lock */
int cmd_event(const char *what, int argc, char **argv);
int cmd_clear(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_lock(int argc, char **argv);

/* cmd_pool.c: mpb pool [--watch], pool map, pool apply */
int cmd_pool(int argc, char **argv);

/* cmd_watch.c: mpb watch [--interval S] [-r N] [-i S] COMMAND ARGS... */
int cmd_watch(int argc, char **argv);

/* cmd_clients.c: mpb clients, mpb kill SESSION */
int cmd_clients(int argc, char **argv);
int cmd_kill(int argc, char **argv);

/* cmd_slowlog.c: mpb slowlog [N] */
int cmd_slowlog(int argc, char **argv);
/* cmd_monitor.c: mpb monitor [--values] */
int cmd_monitor(int argc, char **argv);

/* cmd_queue.c: mpb task-done queue/NAME, mpb peek queue/NAME [N] */
int cmd_task_done(int argc, char **argv);
int cmd_peek(int argc, char **argv);

/* pool_wait.c: submits fn(*args) and waits up to timeout for the result (*res, mpb_free() it);
 * after a second with no worker serving fn, fails unless wait. Returns 0 or the exit status,
 * reported. */
int pool_apply_wait(mpb_pool_t *p, const char *fn, const void *args, size_t alen, int timeout,
                    bool wait, void **res, size_t *rlen);

/* repl.c: the interactive prompt of `mpb` with no command on a terminal. */
int repl_run(void);

#endif
