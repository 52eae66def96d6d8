/* rawsock.c - raw sockets and the recording proxy of rawsock.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rawsock.h"
#include "th.h"

int rs_tcp(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

bool rs_write_all(int fd, const void *p, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t k = send(fd, (const uint8_t *)p + done, n - done, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        done += (size_t)k;
    }
    return true;
}

int rs_read_exact(int fd, uint8_t *p, size_t n, int64_t end) {
    size_t got = 0;
    while (got < n) {
        int64_t left = end - th_now_ms();
        if (left <= 0) return -1;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, (int)left) <= 0) continue;
        ssize_t k = recv(fd, p + got, n - got, 0);
        if (k == 0) return 0;
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return errno == ECONNRESET ? 0 : -1;
        }
        got += (size_t)k;
    }
    return 1;
}

int64_t rs_wait_closed(int fd, int timeout_ms, size_t *extra) {
    int64_t t0 = th_now_ms(), end = t0 + timeout_ms;
    if (extra) *extra = 0;
    while (th_now_ms() < end) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) continue;
        uint8_t tmp[4096];
        ssize_t k = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (k == 0 || (k < 0 && errno == ECONNRESET)) return th_now_ms() - t0;
        if (k > 0 && extra) *extra += (size_t)k;
    }
    return -1;
}

bool rs_has(const uint8_t *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(hay + i, needle, k)) return true;
    return false;
}

static void *proxy_run(void *arg) {
    rs_proxy_t *p = arg;
    int cfd = -1, bfd = -1;
    while (!p->stop) {
        struct pollfd pf[3] = {
            {p->lfd, POLLIN, 0},
            {cfd,    POLLIN, 0},
            {bfd,    POLLIN, 0}
        };
        if (poll(pf, 3, 20) <= 0) continue;
        if (pf[0].revents & POLLIN) {
            int fd = accept(p->lfd, NULL, NULL);
            if (fd >= 0 && cfd < 0) { /* one connection at a time is all the tests make */
                cfd = fd;
                bfd = rs_tcp(p->target);
            } else if (fd >= 0) {
                close(fd);
            }
        }
        for (int dir = 0; dir < 2 && cfd >= 0 && bfd >= 0; dir++) {
            int from = dir ? bfd : cfd, to = dir ? cfd : bfd;
            if (!(pf[1 + dir].revents & (POLLIN | POLLHUP))) continue;
            uint8_t buf[65536];
            ssize_t k = recv(from, buf, sizeof buf, 0);
            if (k <= 0) {
                close(cfd);
                close(bfd);
                cfd = bfd = -1;
                break;
            }
            uint8_t *keep = dir ? p->down : p->up;
            size_t *len = dir ? &p->ndown : &p->nup;
            if (*len + (size_t)k <= p->cap) {
                memcpy(keep + *len, buf, (size_t)k);
                *len += (size_t)k;
            }
            rs_write_all(to, buf, (size_t)k);
        }
    }
    if (cfd >= 0) close(cfd);
    if (bfd >= 0) close(bfd);
    return NULL;
}

void rs_proxy_start(rs_proxy_t *p, int target) {
    memset(p, 0, sizeof *p);
    p->target = target;
    p->cap = 16 << 20;
    p->up = malloc(p->cap);
    p->down = malloc(p->cap);
    assert_non_null(p->up);
    assert_non_null(p->down);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(p->lfd, 8), 0);
    socklen_t al = sizeof a;
    getsockname(p->lfd, (struct sockaddr *)&a, &al);
    p->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&p->th, NULL, proxy_run, p), 0);
}

void rs_proxy_stop(rs_proxy_t *p) {
    if (p->lfd < 0) return;
    p->stop = 1;
    pthread_join(p->th, NULL);
    close(p->lfd);
    p->lfd = -1;
}

void rs_proxy_free(rs_proxy_t *p) {
    rs_proxy_stop(p);
    free(p->up);
    free(p->down);
    p->up = p->down = NULL;
}
