/* cli.h - what mpb.c shares with the command files beside it (cmd_watch.c,
 * help.c, repl.c): the options, the connection, and the one way each reports
 * errors and exits. Internal to the mpb program; never installed. */
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

/* mpb.c: reporting. Each returns (or is followed by) the exit status for what
 * it reports. */
__attribute__((format(printf, 2, 3))) void report(const char *code, const char *fmt, ...);
int fail(int rc, const char *what);
__attribute__((format(printf, 1, 2))) int usage_error(const char *fmt, ...);
void print_json(json_t *j);
json_t *to_jansson(const void *v, size_t n);
int parse_obj(const char *s, objref_t *o);
int parse_key(const char *text, void **out, size_t *n);
bool parse_seconds(const char *v, double *sec);

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
