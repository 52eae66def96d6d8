/* bench_echo.c - the transport's own limit: the same harness on bare ZeroMQ DEALER sockets
 * against a ROUTER that sends every frame back (--echo EP), and that echo server itself
 * (--serve-echo EP). Frames are the size of a dict.get request; no authentication. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "bench.h"

/* A frame the size of a dict.get request: header 12, [rid, op, name, key], MAC 16. The first
 * bytes carry the slot and its send time; the echo sends every byte back. */
const test_t echo_test = {"echo", "echo", NULL, NULL, false};

size_t echo_frame_size(bench_t *B) {
    uint8_t tmp[128];
    bclient_t probe = {.B = B};
    mpb_mpbuf_t b = args_over(tmp, sizeof tmp);
    mpb_mp_array(&b, 4);
    mpb_mp_u64(&b, 40000);
    mpb_mp_u64(&b, MPB_OP_DICT_GET);
    mpb_mp_cstr(&b, DICT_NAME);
    if (next_key(&probe, "key", &b)) die("echo frame: %s", mpb_strerror(b.err));
    return 12 + b.len + 16;
}

static int echo_send(slot_t *s) {
    bclient_t *cl = s->cl;
    uint8_t *f = cl->buf;
    uint32_t idx = (uint32_t)s->idx;
    memcpy(f, &idx, sizeof idx);
    memcpy(f + 4, &s->t0, sizeof s->t0);
    if (zmq_send(cl->sock, f, cl->B->echo_frame, 0) < 0) return MPB_ECONN;
    return 0;
}

void echo_issue(slot_t *s, int64_t now) {
    bclient_t *cl = s->cl;
    if (!may_issue(cl, now)) return;
    s->busy = true;
    cl->busy++;
    cl->issued++;
    s->t0 = now;
    if (echo_send(s)) {
        s->busy = false;
        cl->busy--;
        cl->dead = true;
        snprintf(cl->firsterr, sizeof cl->firsterr, "send: %s", zmq_strerror(zmq_errno()));
    }
}

/* Reads every echoed frame that has arrived (waiting up to timeout_ms for the first); each
 * completes its slot, which sends the next. Ends with a read that would block, so the edge-
 * triggered ZMQ_FD is armed again. */
void echo_service(bclient_t *cl, int timeout_ms) {
    uint8_t in[16];
    if (timeout_ms && cl->busy) {
        zmq_pollitem_t it = {cl->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, timeout_ms) < 0 && zmq_errno() != EINTR) cl->dead = true;
    }
    for (;;) {
        int rc = zmq_recv(cl->sock, in, sizeof in, ZMQ_DONTWAIT);
        if (rc < 0) {
            if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) cl->dead = true;
            return;
        }
        uint32_t idx;
        memcpy(&idx, in, sizeof idx);
        if (rc < 12 || idx >= (uint32_t)cl->B->pipeline || !cl->slots[idx].busy) continue;
        slot_t *s = &cl->slots[idx];
        int64_t t = now_ns();
        hist_add(&cl->h, (uint64_t)(t - s->t0));
        cl->done++;
        cl->end_ns = t;
        s->busy = false;
        cl->busy--;
        echo_issue(s, t);
    }
}

int serve_echo(char **eps, int neps, const char *epfile) {
    void *ctx = zmq_ctx_new();
    void *r = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0, hwm = 100000;
    zmq_setsockopt(r, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(r, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r, ZMQ_RCVHWM, &hwm, sizeof hwm);
    for (int i = 0; i < neps; i++) {
        if (zmq_bind(r, eps[i]) != 0) die("cannot bind %s: %s", eps[i], zmq_strerror(zmq_errno()));
        char ep[1024];
        size_t eplen = sizeof ep;
        zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, ep, &eplen);
        if (i == 0 && epfile) {
            FILE *f = fopen(epfile, "w");
            if (!f) die("cannot write %s: %s", epfile, strerror(errno));
            fprintf(f, "%s\n", ep);
            fclose(f);
        }
        fprintf(stderr, "mpb-bench: echo on %s\n", ep);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    while (!g_stop) {
        zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 500) < 0 && zmq_errno() != EINTR) break;
        /* like the broker: read until the socket would block, then poll again */
        for (int i = 0; i < 4096; i++) {
            if (zmq_msg_recv(&id, r, ZMQ_DONTWAIT) < 0) break;
            if (!zmq_msg_more(&id) || zmq_msg_recv(&body, r, 0) < 0) continue;
            while (zmq_msg_more(&body)) { /* one frame per message: drop the rest */
                zmq_msg_t x;
                zmq_msg_init(&x);
                int more = zmq_msg_recv(&x, r, 0) >= 0 && zmq_msg_more(&x);
                zmq_msg_close(&x);
                if (!more) break;
            }
            /* zmq_msg_send takes the messages over (no copy) and leaves them empty */
            if (zmq_msg_send(&id, r, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) continue;
            zmq_msg_send(&body, r, ZMQ_DONTWAIT);
        }
    }
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    zmq_close(r);
    zmq_ctx_term(ctx);
    return 0;
}
