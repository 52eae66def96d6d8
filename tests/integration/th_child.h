/* th_child.h - child processes for the integration tests that drive the broker from many
 * processes: a test starts a function in a fresh run of its own program, connected to the same
 * broker, and the child reports through its exit status (CK, CKC) since it runs outside cmocka.
 * One table per test program names the functions a child may run: client functions, which the
 * harness connects for and closes after, and bare ones, which connect themselves (or not). */
#ifndef MPB_TH_CHILD_H
#define MPB_TH_CHILD_H

#include <stdio.h>
#include <unistd.h>

#include "th.h"

/* Checks for a child function (returning int): they print where and what failed, with the
 * pid since many children share one stderr, and return 1 from the function; the parent
 * asserts on the exit status. CKC(c, call) fails on a negative MPB_E* and names the error
 * and c's message. */
#define CK(cond)                                                                                   \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "[pid %d] %s:%d: check failed: %s\n", (int)getpid(), __FILE__,         \
                    __LINE__, #cond);                                                              \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)
#define CKC(c, call)                                                                               \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ < 0) {                                                                             \
            fprintf(stderr, "[pid %d] %s:%d: %s -> %s (%s)\n", (int)getpid(), __FILE__, __LINE__,  \
                    #call, mpb_strerror(rc_), mpb_errmsg(c));                                      \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* What a child runs: idx tells siblings apart, arg is the string given to th_child_spawn
 * (NULL when none). Its return value is the child's exit status. A client function gets c,
 * connected with the default options (so a heartbeat thread keeps an idle session alive); the
 * harness closes it when the function returns. A bare one connects as it needs. */
typedef int (*th_client_fn)(mpb_client_t *c, int idx, const char *arg);
typedef int (*th_child_fn)(int idx, const char *arg);
/* Marks the idx or arg a child function does not use (most use neither). */
#define TH_UNUSED __attribute__((unused))

#define TH_NELEMS(a) ((int)(sizeof(a) / sizeof *(a)))

/* Call first in main: th_child_main(argc, argv, &B, child_fns, TH_NELEMS(child_fns)).
 * Remembers the table (a child is told its function by index in it) and the broker the
 * children connect to, which is also the suite's (th_suite(b, NULL, 0): run the tests with
 * th_suite_setup and th_suite_teardown). In a child (argv: --child FN IDX ARG ENDPOINT KEYFILE) it
 * copies the endpoint and key file into *b, runs the function and exits with its status (126: no
 * such function), so it returns only in the test process. */
void th_child_main(int argc, char **argv, th_broker_t *b, const th_child_fn *fns, int nfns);
/* The same for a program whose children are client functions, and bare ones if any (bare:
 * NULL, 0 when none). A child whose connection fails prints why and exits with 1. */
void th_client_main(int argc, char **argv, th_broker_t *b, const th_client_fn *fns, int nfns,
                    const th_child_fn *bare, int nbare);

/* Starts fn(idx, arg) in a child process; returns its pid (wait with th_wait). fn must be in
 * the table. Unlike th_fork, the child is a fork followed at once by an exec of
 * /proc/self/exe --child, so it may be started after this process has connected clients: a
 * bare fork of a process with client threads (heartbeat, ZeroMQ) inherits whatever lock one
 * of them held at that instant - the sanitizer allocator's, say - and can hang in its first
 * malloc. */
pid_t th_child_spawn(th_child_fn fn, int idx, const char *arg);
pid_t th_client_spawn(th_client_fn fn, int idx, const char *arg);

/* Runs fn(0..n-1, arg) in n children (n <= 64) and waits for them; stragglers are killed
 * after timeout_s. Returns how many failed (n when n is too large). */
int th_child_spawn_all(int n, th_child_fn fn, const char *arg, int timeout_s);
int th_client_spawn_all(int n, th_client_fn fn, const char *arg, int timeout_s);

/* In a child: connects to the broker with the default options (so a heartbeat thread keeps an
 * idle session alive). On failure prints why and returns NULL. */
mpb_client_t *th_child_connect(void);

#endif
