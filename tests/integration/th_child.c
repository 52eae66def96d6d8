/* th_child.c - see th_child.h. The test process passes a child everything it needs on the
 * command line (function, index, argument, endpoint, key file), since an exec keeps none of
 * its memory. A function is named by its number: the bare ones first, then the client ones. */
#include <stdlib.h>
#include <string.h>

#include "th_child.h"

static const th_child_fn *bare_fns;
static const th_client_fn *client_fns;
static int n_bare, n_client;
static th_broker_t *child_broker;

/* Runs client function fn connected, closing its client after. */
static int run_client(th_client_fn fn, int idx, const char *arg) {
    mpb_client_t *c = th_child_connect();
    if (!c) return 1;
    int rc = fn(c, idx, arg);
    mpb_close(&c);
    return rc;
}

void th_client_main(int argc, char **argv, th_broker_t *b, const th_client_fn *fns, int nfns,
                    const th_child_fn *bare, int nbare) {
    client_fns = fns;
    n_client = nfns;
    bare_fns = bare;
    n_bare = nbare;
    child_broker = b;
    th_suite(b, NULL, 0);
    if (argc != 7 || strcmp(argv[1], "--child") != 0) return;
    snprintf(b->endpoint, sizeof b->endpoint, "%s", argv[5]);
    snprintf(b->keyfile, sizeof b->keyfile, "%s", argv[6]);
    th_broker_adopt(b);
    int fn = atoi(argv[2]), idx = atoi(argv[3]);
    const char *arg = argv[4][0] ? argv[4] : NULL;
    if (fn >= 0 && fn < n_bare) exit(bare_fns[fn](idx, arg));
    if (fn >= n_bare && fn < n_bare + n_client) exit(run_client(client_fns[fn - n_bare], idx, arg));
    exit(126);
}

void th_child_main(int argc, char **argv, th_broker_t *b, const th_child_fn *fns, int nfns) {
    th_client_main(argc, argv, b, NULL, 0, fns, nfns);
}

static int bare_number(th_child_fn fn) {
    for (int i = 0; i < n_bare; i++)
        if (bare_fns[i] == fn) return i;
    return -1;
}

static int client_number(th_client_fn fn) {
    for (int i = 0; i < n_client; i++)
        if (client_fns[i] == fn) return n_bare + i;
    return -1;
}

/* Starts function number fn (see above) in a child; -1 (not in the table) exits 126 there. */
static pid_t spawn_number(int fn, int idx, const char *arg) {
    char sfn[16], sidx[16];
    snprintf(sfn, sizeof sfn, "%d", fn);
    snprintf(sidx, sizeof sidx, "%d", idx);
    char *exe = (char *)"/proc/self/exe", *flag = (char *)"--child", *a = (char *)(arg ? arg : "");
    char *argv[] = {exe, flag, sfn, sidx, a, child_broker->endpoint, child_broker->keyfile, NULL};
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int spawn_all_number(int n, int fn, const char *arg, int timeout_s) {
    pid_t pids[64];
    if (n > 64) return n;
    for (int i = 0; i < n; i++)
        pids[i] = spawn_number(fn, i, arg);
    int failed = 0;
    int64_t end = th_now_ms() + timeout_s * 1000;
    for (int i = 0; i < n; i++) {
        int64_t left = (end - th_now_ms()) / 1000;
        if (th_wait(pids[i], left > 1 ? (int)left : 1) != 0) failed++;
    }
    return failed;
}

pid_t th_child_spawn(th_child_fn fn, int idx, const char *arg) {
    return spawn_number(bare_number(fn), idx, arg);
}

pid_t th_client_spawn(th_client_fn fn, int idx, const char *arg) {
    return spawn_number(client_number(fn), idx, arg);
}

int th_child_spawn_all(int n, th_child_fn fn, const char *arg, int timeout_s) {
    return spawn_all_number(n, bare_number(fn), arg, timeout_s);
}

int th_client_spawn_all(int n, th_client_fn fn, const char *arg, int timeout_s) {
    return spawn_all_number(n, client_number(fn), arg, timeout_s);
}

mpb_client_t *th_child_connect(void) {
    mpb_client_t *c = NULL;
    int rc = th_connect_opts(child_broker, NULL, &c);
    if (rc) {
        fprintf(stderr, "[pid %d] connect: %s\n", (int)getpid(), mpb_errmsg(c));
        mpb_close(&c);
    }
    return c;
}
