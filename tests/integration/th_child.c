/* th_child.c - see th_child.h. The test process passes a child everything it needs on the
 * command line (function, index, argument, endpoint, key file), since an exec keeps none of
 * its memory. */
#include <stdlib.h>
#include <string.h>

#include "th_child.h"

static const th_child_fn *child_fns;
static int child_nfns;
static th_broker_t *child_broker;

static int child_index(th_child_fn fn) {
    for (int i = 0; i < child_nfns; i++)
        if (child_fns[i] == fn) return i;
    return -1;
}

void th_child_main(int argc, char **argv, th_broker_t *b, const th_child_fn *fns, int nfns) {
    child_fns = fns;
    child_nfns = nfns;
    child_broker = b;
    th_suite(b, NULL, 0);
    if (argc != 7 || strcmp(argv[1], "--child") != 0) return;
    snprintf(b->endpoint, sizeof b->endpoint, "%s", argv[5]);
    snprintf(b->keyfile, sizeof b->keyfile, "%s", argv[6]);
    th_broker_adopt(b);
    int fn = atoi(argv[2]);
    if (fn < 0 || fn >= nfns) exit(126);
    exit(fns[fn](atoi(argv[3]), argv[4][0] ? argv[4] : NULL));
}

pid_t th_child_spawn(th_child_fn fn, int idx, const char *arg) {
    char sfn[16], sidx[16];
    snprintf(sfn, sizeof sfn, "%d", child_index(fn));
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

int th_child_spawn_all(int n, th_child_fn fn, const char *arg, int timeout_s) {
    pid_t pids[64];
    if (n > 64) return n;
    for (int i = 0; i < n; i++)
        pids[i] = th_child_spawn(fn, i, arg);
    int failed = 0;
    int64_t end = th_now_ms() + timeout_s * 1000;
    for (int i = 0; i < n; i++) {
        int64_t left = (end - th_now_ms()) / 1000;
        if (th_wait(pids[i], left > 1 ? (int)left : 1) != 0) failed++;
    }
    return failed;
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
