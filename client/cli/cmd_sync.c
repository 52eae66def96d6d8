/* cmd_sync.c - mpb's synchronisation commands: set, clear and wait on an event, and mpb lock,
 * which runs a command while holding a lock (as flock(1) does). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* set / clear / wait on an event */
int cmd_event(const char *what, int argc, char **argv) {
    objref_t o;
    int rc, timeout = MPB_FOREVER;
    if (!strcmp(what, "wait") && (rc = take_timeout(&argc, argv, &timeout))) return rc;
    if (argc != 1) return usage_error("%s takes event/NAME", what);
    if ((rc = parse_obj_of(argv[0], "event", what, &o))) return rc;
    mpb_event_t *e;
    if ((rc = mpb_event_open(cli, o.name, &e))) return fail(rc, what);
    if (!strcmp(what, "set"))
        rc = mpb_event_set(e);
    else if (!strcmp(what, "clear"))
        rc = mpb_event_clear(e);
    else
        rc = mpb_event_wait(e, timeout);
    mpb_event_close(&e);
    if (rc < 0) return fail(rc, what);
    if (!strcmp(what, "wait") && rc == 0) {
        if (opt.json)
            puts("{\"set\":false}");
        else
            fprintf(stderr, "mpb: wait: event/%s not set within the timeout\n", o.name);
        return EXIT_TIMEOUT;
    }
    if (opt.json) puts(strcmp(what, "wait") ? "{\"ok\":true}" : "{\"set\":true}");
    return 0;
}

int cmd_clear(int argc, char **argv) {
    return cmd_event("clear", argc, argv);
}

int cmd_wait(int argc, char **argv) {
    return cmd_event("wait", argc, argv);
}

static pid_t lock_child;
#define LOCK_LOST_EXIT 76 /* mpb lock: the lock was lost before the command finished */

static void forward_signal(int sig) {
    if (lock_child > 0) kill(lock_child, sig);
}

/* mpb lock lock/NAME [--timeout S] [--conflict-exit-code N] -- COMMAND [ARGS...]: the session
 * heartbeats while COMMAND runs, so a long command keeps the lock; if this process dies, the
 * broker releases the lock at the session's TTL. */
int cmd_lock(int argc, char **argv) {
    objref_t o;
    int rc, timeout = MPB_FOREVER, conflict = EXIT_TIMEOUT;
    if ((rc = take_timeout(&argc, argv, &timeout))) return rc;
    int dd = -1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            dd = i;
            break;
        }
        if (!strcmp(argv[i], "--conflict-exit-code") && i + 1 < argc) {
            int64_t n;
            if (!parse_i64(argv[i + 1], &n) || n < 0 || n > 255)
                return usage_error("--conflict-exit-code '%s' is not 0..255", argv[i + 1]);
            conflict = (int)n;
            memmove(argv + i, argv + i + 2, (size_t)(argc - i - 2) * sizeof *argv);
            argc -= 2;
            i--;
        }
    }
    if (dd != 1 || dd + 1 >= argc)
        return usage_error("lock takes lock/NAME [--timeout S] -- COMMAND [ARGS...]");
    if ((rc = parse_obj(argv[0], &o))) return rc;
    bool re = !strcmp(o.kind, "rlock");
    if (strcmp(o.kind, "lock") && !re) return usage_error("lock works on locks, not '%s'", o.kind);
    mpb_lock_t *l;
    rc = re ? mpb_rlock_open(cli, o.name, &l) : mpb_lock_open(cli, o.name, &l);
    if (rc) return fail(rc, "lock");
    uint64_t fence = 0;
    rc = mpb_lock_acquire(l, timeout, &fence);
    if (rc == MPB_ETIMEDOUT) {
        report("ETIMEDOUT", "lock: %s not acquired within the timeout: %s", argv[0],
               mpb_errmsg(cli));
        mpb_lock_close(&l);
        return conflict;
    }
    if (rc) {
        mpb_lock_close(&l);
        return fail(rc, "lock");
    }
    char fs[32];
    snprintf(fs, sizeof fs, "%llu", (unsigned long long)fence);
    setenv("MPB_FENCE", fs, 1); /* the command can hand its token to what it protects */
    fflush(stdout);
    fflush(stderr);
    /* Handlers before fork, so no signal falls between; exec resets them in the child. The
     * child sends exec's errno up a close-on-exec pipe and the parent reports it: the child
     * must not format JSON (malloc) while the heartbeat thread may hold the allocator. */
    struct sigaction sa = {0};
    sa.sa_handler = forward_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    int ep[2] = {-1, -1};
    if (pipe(ep) == 0) {
        fcntl(ep[0], F_SETFD, FD_CLOEXEC);
        fcntl(ep[1], F_SETFD, FD_CLOEXEC);
    }
    lock_child = fork();
    if (lock_child == 0) {
        execvp(argv[dd + 1], argv + dd + 1);
        int e = errno;
        ssize_t k = ep[1] >= 0 ? write(ep[1], &e, sizeof e) : 0;
        (void)k; /* nothing more to do if even that fails */
        _exit(127);
    }
    if (ep[1] >= 0) close(ep[1]);
    int status = 1, exec_errno = 0;
    if (lock_child < 0) {
        report("ENOMEM", "lock: fork: %s", strerror(errno));
    } else {
        ssize_t got;
        while ((got = read(ep[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {
        } /* bounded: EOF comes at exec or exit */
        if (got != (ssize_t)sizeof exec_errno) exec_errno = 0;
        int st = 0;
        pid_t w;
        while ((w = waitpid(lock_child, &st, 0)) < 0 && errno == EINTR) {
        }
        if (w < 0)
            status = 1;
        else
            status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (exec_errno)
            report("EINVAL", "lock: cannot run %s: %s", argv[dd + 1], strerror(exec_errno));
    }
    if (ep[0] >= 0) close(ep[0]);
    rc = mpb_lock_release(l);
    if (rc == MPB_ESESSION || rc == MPB_ENOTOWNER) {
        /* someone else may have held it meanwhile: what COMMAND did was not protected */
        report(mpb_err_name(rc), "lock: %s was lost before %s finished: %s", argv[0], argv[dd + 1],
               mpb_errmsg(cli));
        status = LOCK_LOST_EXIT;
    } else if (rc) {
        report(mpb_err_name(rc), "lock: release of %s: %s", argv[0], mpb_errmsg(cli));
    }
    mpb_lock_close(&l);
    return status;
}
