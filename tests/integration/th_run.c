/* th_run.c - the harness's runner of programs (the mpb CLI, mpb-worker, mpbrokerd --version):
 * stdout and stderr read as they come, through pipes or a pseudo-terminal, into a th_run_t. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "th.h"

int th_run(const char *const *argv, const th_run_opts_t *o, th_run_t *r) {
    static const th_run_opts_t none = {0};
    if (!o) o = &none;
    int po[2], pe[2], master = -1;
    pid_t pid;
    fflush(stdout);
    fflush(stderr);
    int64_t start = th_now_ms(), end = start + (o->timeout_ms > 0 ? o->timeout_ms : 20000);
    if (o->pty) {
        pid = forkpty(&master, NULL, NULL, NULL);
        if (pid == 0) {
            execv(argv[0], (char **)argv);
            _exit(127);
        }
        po[0] = master, pe[0] = -1;
    } else {
        if (pipe(po) || pipe(pe)) fail_msg("pipe: %s", strerror(errno));
        pid = fork();
        if (pid == 0) {
            int nul = open("/dev/null", O_RDONLY);
            dup2(nul, 0);
            dup2(po[1], 1);
            dup2(pe[1], 2);
            execv(argv[0], (char **)argv);
            _exit(127);
        }
        close(po[1]);
        close(pe[1]);
    }
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    size_t n[2] = {0, 0};
    r->out[0] = r->err[0] = 0;
    bool fed = false, killed = false;
    struct pollfd p[2] = {
        {po[0], POLLIN, 0},
        {pe[0], POLLIN, 0}
    };
    while ((p[0].fd >= 0 || p[1].fd >= 0) && th_now_ms() < end) {
        if (o->kill_ms > 0 && !killed && th_now_ms() - start >= o->kill_ms)
            kill(pid, SIGTERM), killed = true;
        /* input goes in once "until" shows on the terminal and the line editor has
         * turned off canonical mode (libedit flushes input typed before it does) */
        struct termios tio;
        if (o->pty && o->input && !fed && strstr(r->out, o->until) && !tcgetattr(master, &tio) &&
            !(tio.c_lflag & ICANON)) {
            if (write(master, o->input, strlen(o->input)) < 0)
                fail_msg("write: %s", strerror(errno));
            fed = true;
        }
        if (poll(p, 2, 50) < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char *buf = i ? r->err : r->out, tmp[4096];
            ssize_t k = read(p[i].fd, tmp, sizeof tmp);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) { /* closed after the wait: closing a pty master hangs up its
                             child */
                p[i].fd = -1;
                continue;
            }
            size_t room = sizeof r->out - 1 - n[i]; /* past it, read on and drop the rest */
            size_t take = (size_t)k < room ? (size_t)k : room;
            memcpy(buf + n[i], tmp, take);
            n[i] += take;
            buf[n[i]] = 0;
        }
    }
    r->out[n[0]] = 0;
    r->err[n[1]] = 0;
    if (th_now_ms() >= end) kill(pid, SIGKILL);
    r->status = th_wait(pid, 10);
    r->ms = th_now_ms() - start;
    close(po[0]);
    if (pe[0] >= 0) close(pe[0]);
    return r->status;
}
