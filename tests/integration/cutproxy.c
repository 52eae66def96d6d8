/* cutproxy.c - see cutproxy.h. One process, one poll loop: the listening socket, the control
 * socket and both ends of every relayed connection. Commands are one byte each ('c' cut,
 * 'r' resume, 'q' quit), each answered with one byte once done. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cutproxy.h"

#define CP_MAX 64 /* connection pairs */

static int listen_on(int port, int *bound) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 64) ||
        getsockname(fd, (struct sockaddr *)&a, &al)) {
        close(fd);
        return -1;
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

int cp_free_port(void) {
    int port = 0;
    int fd = listen_on(0, &port);
    if (fd < 0) return -1;
    close(fd);
    return port;
}

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Writes all of buf to fd (blocking). 0 or -1. */
static int write_all(int fd, const char *buf, size_t n) {
    while (n) {
        ssize_t k = write(fd, buf, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        buf += k;
        n -= (size_t)k;
    }
    return 0;
}

static void relay(int lfd, int ctl, int upstream) {
    int a[CP_MAX], b[CP_MAX]; /* client side, broker side; -1: free */
    for (int i = 0; i < CP_MAX; i++)
        a[i] = b[i] = -1;
    int cut = 0;
    static char buf[1 << 16];
    for (;;) {
        struct pollfd p[2 + 2 * CP_MAX];
        int map[2 + 2 * CP_MAX];
        int n = 0;
        p[n++] = (struct pollfd){lfd, POLLIN, 0};
        p[n++] = (struct pollfd){ctl, POLLIN, 0};
        for (int i = 0; i < CP_MAX; i++) {
            if (a[i] < 0) continue;
            map[n] = i;
            p[n++] = (struct pollfd){a[i], POLLIN, 0};
            map[n] = CP_MAX + i;
            p[n++] = (struct pollfd){b[i], POLLIN, 0};
        }
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (p[1].revents) {
            char cmd;
            if (read(ctl, &cmd, 1) != 1 || cmd == 'q') return;
            char ack = 0;
            if (cmd == 'c') {
                cut = 1;
                for (int i = 0; i < CP_MAX; i++) {
                    if (a[i] < 0) continue;
                    close(a[i]);
                    close(b[i]);
                    a[i] = b[i] = -1;
                    ack++;
                }
            } else if (cmd == 'r') {
                cut = 0;
            }
            if (write(ctl, &ack, 1) != 1) return;
            continue; /* the fds polled may be closed now */
        }
        if (p[0].revents) {
            int c = accept(lfd, NULL, NULL);
            if (c >= 0) {
                int slot = -1;
                for (int i = 0; i < CP_MAX && slot < 0; i++)
                    if (a[i] < 0) slot = i;
                int u = cut || slot < 0 ? -1 : dial(upstream);
                if (u < 0) {
                    close(c); /* down: the connection is dropped at once */
                } else {
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    a[slot] = c;
                    b[slot] = u;
                }
            }
        }
        for (int k = 2; k < n; k++) {
            if (!p[k].revents) continue;
            int i = map[k] % CP_MAX;
            if (a[i] < 0) continue;
            int from = map[k] < CP_MAX ? a[i] : b[i], to = map[k] < CP_MAX ? b[i] : a[i];
            ssize_t got = read(from, buf, sizeof buf);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0 || write_all(to, buf, (size_t)got)) {
                close(a[i]);
                close(b[i]);
                a[i] = b[i] = -1;
            }
        }
    }
}

int cp_start(cutproxy_t *p, int upstream_port) {
    memset(p, 0, sizeof *p);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return -1;
    int lfd = listen_on(0, &p->port);
    if (lfd < 0) return -1;
    snprintf(p->endpoint, sizeof p->endpoint, "tcp://127.0.0.1:%d", p->port);
    fflush(stdout);
    fflush(stderr);
    p->pid = fork();
    if (p->pid < 0) return -1;
    if (p->pid == 0) {
        close(sv[0]);
        signal(SIGPIPE, SIG_IGN);
        relay(lfd, sv[1], upstream_port);
        _exit(0);
    }
    close(lfd);
    close(sv[1]);
    p->ctl = sv[0];
    return 0;
}

static int command(cutproxy_t *p, char cmd) {
    if (!p->pid || write(p->ctl, &cmd, 1) != 1) return -1;
    char ack;
    if (read(p->ctl, &ack, 1) != 1) return -1;
    return (unsigned char)ack;
}

int cp_cut(cutproxy_t *p) {
    return command(p, 'c');
}

int cp_resume(cutproxy_t *p) {
    return command(p, 'r') < 0 ? -1 : 0;
}

void cp_stop(cutproxy_t *p) {
    if (!p->pid) return;
    char q = 'q';
    if (write(p->ctl, &q, 1) != 1) kill(p->pid, SIGKILL);
    int st;
    waitpid(p->pid, &st, 0);
    close(p->ctl);
    p->pid = 0;
}
