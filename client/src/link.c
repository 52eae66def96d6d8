/* link.c - unix:// endpoints: the protocol's frames on a Unix stream socket, each after its
 * length (u32, big-endian), with no ZeroMQ thread between the caller and the broker. The
 * descriptor's number stays the client's for its life (mpb_fd()): a new connection is put in
 * its place with dup3(), and a lost one is replaced by a descriptor that never becomes ready,
 * so a loop polling it does not spin while the client connects again.
 *
 * A connection that ends is told to the reader as the broker's ERROR ESESSION would be on a
 * ZeroMQ channel that was remade under it: the same path then connects again, resumes the
 * session and sends again what got no answer. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

bool mpb__is_unix(const char *endpoint) {
    return endpoint && !strncmp(endpoint, "unix://", 7);
}

/* fd takes the place of the client's descriptor, under its number, and what was read from
 * the one before is dropped. */
static void install(mpb_client_t *c, int fd) {
    if (fd >= 0 && c->ufd >= 0) {
        dup3(fd, c->ufd, O_CLOEXEC);
        close(fd);
    } else if (fd >= 0) {
        c->ufd = fd;
    }
    c->uin.len = 0;
    c->uin_at = 0;
}

/* The descriptor of a lost connection: its number stays valid and quiet. */
static void park(mpb_client_t *c) {
    install(c, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

static void lost(mpb_client_t *c) {
    if (c->ustate != MPB__LINK_UP) return;
    c->ustate = MPB__LINK_LOST;
    park(c);
}

int mpb__unix_connect(mpb_client_t *c) {
    const char *path = c->endpoint + 7;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!*path || strlen(path) >= sizeof sa.sun_path)
        return mpb__fail(c, MPB_EINVAL, "bad endpoint '%s': a unix:// path has 1 to %zu characters",
                         c->endpoint, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return mpb__fail(c, MPB_ECONN, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        if (c->ufd >= 0) park(c);
        c->ustate = MPB__LINK_TOLD;
        return mpb__fail(c, MPB_ECONN, "cannot connect to %s: %s (is mpbrokerd running there?)",
                         c->endpoint, strerror(e));
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    install(c, fd);
    c->ustate = MPB__LINK_UP;
    return 0;
}

void mpb__unix_close(mpb_client_t *c) {
    if (c->ufd >= 0) close(c->ufd);
    c->ufd = -1;
    mpb__buf_free(&c->uin);
}

/* The whole frame, or nothing when try_only and the socket has no room now. A broker that
 * takes nothing for op_timeout_ms is taken for gone (a frame half written cannot be taken
 * back). Errors show on the next read, as on a ZeroMQ channel: 0 always. */
int mpb__unix_send(mpb_client_t *c, const uint8_t *p, size_t n, bool try_only) {
    if (c->ustate != MPB__LINK_UP) { /* as ZeroMQ queues it: the next read tells */
        c->last_send_ms = mpb__coarse_ms();
        return 0;
    }
    uint8_t h[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    size_t done = 0, total = n + 4;
    int64_t deadline = 0;
    while (done < total) {
        struct iovec iov[2];
        int k = 0;
        if (done < 4) iov[k++] = (struct iovec){h + done, 4 - done};
        size_t off = done < 4 ? 0 : done - 4;
        iov[k++] = (struct iovec){(void *)(p + off), n - off};
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)k};
        ssize_t w = sendmsg(c->ufd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            if (try_only && done == 0) return 0;
            int64_t now = mpb__now_ms();
            if (!deadline)
                deadline = now + (c->opts.op_timeout_ms > 0 ? c->opts.op_timeout_ms : 10000);
            if (now >= deadline) break;
            struct pollfd pf = {c->ufd, POLLOUT, 0};
            poll(&pf, 1, (int)(deadline - now));
            continue;
        }
        break;
    }
    if (done < total) {
        lost(c);
        return 0;
    }
    c->last_send_ms = mpb__coarse_ms();
    return 0;
}

/* A whole frame is in uin: its length in *n. */
static bool whole(const mpb_client_t *c, size_t *n) {
    size_t have = c->uin.len - c->uin_at;
    if (have < 4) return false;
    const uint8_t *h = c->uin.p + c->uin_at;
    *n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    return have >= 4 + *n;
}

bool mpb__unix_pending(mpb_client_t *c) {
    size_t n;
    if (c->ustate == MPB__LINK_LOST || whole(c, &n)) return true;
    struct pollfd pf = {c->ufd, POLLIN, 0};
    return c->ustate == MPB__LINK_UP && poll(&pf, 1, 0) > 0;
}

/* The ERROR frame the broker sends a channel it does not know, for a connection that ended:
 * told to every reader until the client connects again, so that a call made while the broker
 * is away waits for it (mpb__reconnect) as over ZeroMQ. */
static int tell_lost(mpb_client_t *c, mpb__buf_t *b) {
    c->ustate = MPB__LINK_TOLD;
    uint8_t hdr[MPB__HDR_LEN];
    mpb__frame_header(hdr, MPB__T_ERROR, 0);
    mpb__buf_reset(b);
    mpb__w_raw(b, hdr, sizeof hdr);
    mpb__w_map(b, 2);
    mpb__w_cstr(b, "code");
    mpb__w_int(b, -MPB_ESESSION);
    mpb__w_cstr(b, "msg");
    mpb__w_cstr(b, "the connection to the broker ended (a restart, or it closed it)");
    return b->oom ? mpb__fail(c, MPB_ENOMEM, "out of memory") : 0;
}

int mpb__unix_recv(mpb_client_t *c, mpb__buf_t *b, long timeout_ms) {
    int64_t deadline = timeout_ms > 0 ? mpb__now_ms() + timeout_ms : 0;
    for (;;) {
        size_t n = 0;
        if (whole(c, &n)) {
            mpb__buf_reset(b);
            mpb__w_raw(b, c->uin.p + c->uin_at + 4, n);
            c->uin_at += 4 + n;
            if (c->uin_at == c->uin.len) c->uin.len = c->uin_at = 0;
            if (b->oom) return mpb__fail(c, MPB_ENOMEM, "out of memory receiving a reply");
            return 0;
        }
        if (c->ustate != MPB__LINK_UP) return tell_lost(c, b); /* each reader: it reconnects */
        size_t have = c->uin.len - c->uin_at;
        if (have >= 4 && n > c->max_frame + (64u << 10) && n > (8u << 20)) {
            lost(c); /* no broker of ours sends that: the stream is not a channel any more */
            continue;
        }
        if (c->uin_at) {
            memmove(c->uin.p, c->uin.p + c->uin_at, have);
            c->uin.len = have;
            c->uin_at = 0;
        }
        size_t want = have >= 4 && 4 + n > have ? 4 + n - have : 0;
        if (mpb__buf_reserve(&c->uin, want > (16u << 10) ? want : 16u << 10))
            return mpb__fail(c, MPB_ENOMEM, "out of memory receiving a reply");
        ssize_t r = recv(c->ufd, c->uin.p + c->uin.len, c->uin.cap - c->uin.len, MSG_DONTWAIT);
        if (r > 0) {
            c->uin.len += (size_t)r;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            lost(c);
            continue;
        }
        if (errno == EINTR) continue;
        long wait = -1;
        if (timeout_ms == 0) return MPB_ETIMEDOUT;
        if (deadline) {
            int64_t left = deadline - mpb__now_ms();
            if (left <= 0) return MPB_ETIMEDOUT;
            wait = (long)left;
        }
        struct pollfd pf = {c->ufd, POLLIN, 0};
        int pr = poll(&pf, 1, wait > INT32_MAX ? INT32_MAX : (int)wait);
        if (pr == 0) return MPB_ETIMEDOUT;
    }
}
