/* th.h - the integration test harness: a real mpbrokerd on a free port in a temporary
 * directory, clients connected to it, and forked client processes. */
#ifndef MPB_TH_H
#define MPB_TH_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/types.h>

#include <cmocka.h>

#include "mpb/mpb.h"

typedef struct th_broker {
    pid_t pid;
    char dir[256];       /* temporary directory, removed by th_broker_stop */
    char endpoint[512];  /* as bound: tcp://127.0.0.1:PORT */
    char keyfile[300];   /* the authkey the broker generated */
    char log[300];       /* its stderr */
} th_broker_t;

/* Starts mpbrokerd with --listen tcp://127.0.0.1:0 and the extra arguments (NULL-terminated
 * list of strings), waits until it accepts a client. Fails the test if it does not start. */
void th_broker_start(th_broker_t *b, ...);
/* SIGTERM, wait, remove the directory. Accepts a stopped broker. */
void th_broker_stop(th_broker_t *b);
/* Whether the broker process is still running. */
int th_broker_alive(th_broker_t *b);
/* Connects with the broker's key; fails the test on error. */
mpb_client_t *th_connect(th_broker_t *b);
/* Connects with the given options; returns the mpb_connect status. */
int th_connect_opts(th_broker_t *b, const mpb_options_t *o, mpb_client_t **out);
/* The broker's key, read from its file (static buffer). */
const char *th_authkey(th_broker_t *b, size_t *len);
/* Forks n children; each runs child(index, arg) and exits with its return value. Waits for
 * all (bounded by timeout_s: stragglers are killed) and returns how many failed. Fork before
 * the parent connects a client: a child forked while the parent's client threads run may
 * inherit a held allocator lock (seen under ASan). */
int th_spawn(int n, int (*child)(int idx, void *arg), void *arg, int timeout_s);
/* Forks one child running child(0, arg); returns its pid (not waited for). */
pid_t th_fork(int (*child)(int idx, void *arg), void *arg);
/* Waits up to timeout_s for pid; returns its exit status, or -1 if it had to be killed. */
int th_wait(pid_t pid, int timeout_s);
/* A msgpack string / int in a static rotating buffer (valid for the next 7 calls). */
const uint8_t *th_str(const char *s, size_t *len);
const uint8_t *th_int(int64_t v, size_t *len);
int64_t th_now_ms(void);
/* Path of a built program (mpb CLI etc.), from the build. */
extern const char *th_mpb_cli;

#endif
