/* link.c - unix:// and mpb:// endpoints: the protocol's frames on a Unix or TCP stream socket,
 * each after its length (u32, big-endian), with no ZeroMQ thread between the caller and the
 * broker. On mpb:// each side first sends a greeting with an ephemeral key, and every frame
 * is sealed with the keys they make with the authkey (proto/seal.c, PROTOCOL.md 1.2). The
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
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "internal.h"

bool mpb__is_unix(const char *endpoint) {
    return endpoint && !strncmp(endpoint, "unix://", 7);
}

bool mpb__is_stream(const char *endpoint) {
    return mpb__is_unix(endpoint) || (endpoint && !strncmp(endpoint, "mpb://", 6));
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

/* Waits up to the deadline for fd to be ready for ev: 0, or -1 (errno ETIMEDOUT). */
static int wait_fd(int fd, short ev, int64_t deadline) {
    for (;;) {
        int64_t left = deadline - mpb__now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pf = {fd, ev, 0};
        int r = poll(&pf, 1, (int)left);
        if (r > 0) return 0;
        if (r < 0 && errno != EINTR) return -1;
    }
}

/* A connected TCP socket to sa (non-blocking), or -1 with the reason in *e. */
static int try_addr(const struct sockaddr *sa, socklen_t len, int64_t deadline, int *e) {
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        *e = errno;
        return -1;
    }
    int r = connect(fd, sa, len), err = r == 0 ? 0 : errno;
    socklen_t el = sizeof err;
    if (r != 0 && err == EINPROGRESS) {
        if (wait_fd(fd, POLLOUT, deadline) != 0)
            err = errno;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
            err = errno;
    }
    if (err) {
        *e = err;
        close(fd);
        return -1;
    }
    return fd;
}

/* The TCP connection of an mpb:// endpoint, greetings exchanged and keys made. */
static int tcp_open(mpb_client_t *c, int *out) {
    const char *hp = c->endpoint + 6, *colon = strrchr(hp, ':');
    char host[256];
    size_t hl = colon ? (size_t)(colon - hp) : 0;
    if (!colon || !hl || hl >= sizeof host || !colon[1])
        return mpb__fail(c, MPB_EINVAL, "bad endpoint '%s': mpb://HOST:PORT", c->endpoint);
    memcpy(host, hp, hl);
    host[hl] = 0;
    if (host[0] == '[' && host[hl - 1] == ']') { /* [::1] */
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    int64_t deadline =
        mpb__now_ms() + (c->opts.connect_timeout_ms > 0 ? c->opts.connect_timeout_ms : 10000);
    int e = 0;
    /* the address that answered last first: a reconnect (from the heartbeat thread too) does
     * not wait on a resolver */
    int fd = c->uaddrlen ? try_addr((struct sockaddr *)&c->uaddr, c->uaddrlen, deadline, &e) : -1;
    if (fd < 0 && !(c->uaddrlen && c->uno_resolve)) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
        int g = getaddrinfo(host, colon + 1, &hints, &ai);
        if (g)
            return mpb__fail(c, MPB_ECONN, "cannot connect to %s: %s", c->endpoint,
                             gai_strerror(g));
        for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
            fd = try_addr(a->ai_addr, a->ai_addrlen, deadline, &e);
            if (fd >= 0 && a->ai_addrlen <= sizeof c->uaddr) {
                memcpy(&c->uaddr, a->ai_addr, a->ai_addrlen);
                c->uaddrlen = a->ai_addrlen;
            }
        }
        freeaddrinfo(ai);
    }
    if (fd < 0)
        return mpb__fail(c, MPB_ECONN, "cannot connect to %s: %s (is mpbrokerd running there?)",
                         c->endpoint, strerror(e ? e : ECONNREFUSED));
    mpb__seal_tcp_opts(fd);
    if (!c->useal && !(c->useal = calloc(1, sizeof *c->useal))) {
        close(fd);
        return mpb__fail(c, MPB_ENOMEM, "out of memory");
    }
    uint8_t mine[MPB__GREET_LEN], theirs[MPB__GREET_LEN];
    size_t got = 0;
    const char *why = NULL;
    if (mpb__seal_greet(c->useal, mine)) {
        close(fd);
        return mpb__fail(c, MPB_ENOMEM, "out of memory making a key");
    }
    if (send(fd, mine, sizeof mine, MSG_NOSIGNAL) != (ssize_t)sizeof mine) why = strerror(errno);
    while (!why && got < sizeof theirs) {
        ssize_t r = recv(fd, theirs + got, sizeof theirs - got, 0);
        if (r > 0)
            got += (size_t)r;
        else if (r == 0)
            why = "it closed the connection (is it an mpbroker's mpb:// endpoint?)";
        else if (errno == EAGAIN && wait_fd(fd, POLLIN, deadline) != 0)
            why = "no greeting came (is it an mpbroker's mpb:// endpoint?)";
        else if (errno != EAGAIN && errno != EINTR)
            why = strerror(errno);
    }
    if (!why && mpb__seal_keys(c->useal, c->authkey, c->keylen, false, theirs))
        why = "what answered is not an mpbroker's mpb:// endpoint";
    if (why) {
        close(fd);
        return mpb__fail(c, MPB_ECONN, "cannot connect to %s: %s", c->endpoint, why);
    }
    *out = fd;
    return 0;
}

int mpb__unix_connect(mpb_client_t *c) {
    if (!mpb__is_unix(c->endpoint)) {
        int fd = -1, rc = tcp_open(c, &fd);
        if (rc) {
            if (c->ufd >= 0) park(c);
            c->ustate = MPB__LINK_TOLD;
            return rc;
        }
        install(c, fd);
        c->ustate = MPB__LINK_UP;
        c->ufresh = true;
        return 0;
    }
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
    c->ufresh = true;
    return 0;
}

void mpb__unix_close(mpb_client_t *c) {
    if (c->ufd >= 0) close(c->ufd);
    c->ufd = -1;
    mpb__buf_free(&c->uin);
    mpb__buf_free(&c->uout);
    if (c->useal) mpb__seal_free(c->useal);
    free(c->useal);
    c->useal = NULL;
}

/* The whole frame, or nothing when try_only and the socket has no room now. A broker that
 * takes nothing for op_timeout_ms is taken for gone (a frame half written cannot be taken
 * back). Errors show on the next read, as on a ZeroMQ channel: 0 always. */
int mpb__unix_send(mpb_client_t *c, const uint8_t *p, size_t n, bool try_only) {
    c->ufresh = false;
    if (c->ustate != MPB__LINK_UP) { /* as ZeroMQ queues it: the next read tells */
        c->last_send_ms = mpb__coarse_ms();
        return 0;
    }
    uint8_t h[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    if (c->useal) { /* the sealed frame, its length included, goes as the frame's body */
        mpb__buf_reset(&c->uout);
        if (mpb__buf_reserve(&c->uout, 4 + n + MPB__SEAL_TAG) ||
            mpb__seal(c->useal, p, n, c->uout.p)) {
            lost(c);
            return 0;
        }
        c->uout.len = 4 + n + MPB__SEAL_TAG;
    }
    size_t hl = 4; /* the length goes before the frame, unless it is in it (sealed) */
    if (c->useal) {
        p = c->uout.p;
        n = c->uout.len;
        hl = 0;
    }
    size_t done = 0, total = n + hl;
    int64_t deadline = 0;
    while (done < total) {
        struct iovec iov[2];
        int k = 0;
        if (done < hl) iov[k++] = (struct iovec){h + done, hl - done};
        size_t off = done < hl ? 0 : done - hl;
        iov[k++] = (struct iovec){(void *)(p + off), n - off};
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)k};
        ssize_t w = sendmsg(c->ufd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            if (try_only && done == 0) {
                if (c->useal) c->useal->ntx--; /* not sent: its nonce is the next one's */
                return 0;
            }
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
            if (c->useal) {
                if (n < MPB__SEAL_TAG || mpb__seal_open(c->useal, c->uin.p + c->uin_at, 4 + n)) {
                    lost(c); /* not from the broker we greeted, or changed on the way */
                    continue;
                }
                n -= MPB__SEAL_TAG;
            }
            mpb__buf_reset(b);
            mpb__w_raw(b, c->uin.p + c->uin_at + 4, n);
            c->uin_at += 4 + n + (c->useal ? MPB__SEAL_TAG : 0);
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
