/* pipeline.c - many requests in flight on one connection, driven from a program's own event
 * loop: mpb_send-style calls queue requests and return at once, the library coalesces what is
 * queued into one message, and the loop polls mpb_fd() beside its own descriptors.
 *
 *   usage: pipeline [ENDPOINT] [N]   (authkey from MPB_AUTHKEY_FILE or MPB_AUTHKEY)
 *
 * It increments counter "hits" N times (default 10000) with 256 requests in flight, and
 * checks that the last reply it saw is the dict's final value. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpb/mpb.h>

#define IN_FLIGHT 256

typedef struct state {
    mpb_dict_t *d;
    uint8_t key[16];
    size_t keylen;
    long sent, done, total;
    int64_t last;
    int failed;
} state_t;

static void send_more(state_t *s);

/* Runs inside mpb_poll(), in this thread: one reply, then the next request takes its place. */
static void on_incr(mpb_client_t *c, int status, const void *val, size_t len, void *arg) {
    state_t *s = arg;
    s->done++;
    int64_t v;
    if (status || mpb_unpack_i64(val, len, &v)) {
        fprintf(stderr, "pipeline: incr failed: %s\n", mpb_errmsg(c));
        s->failed = 1;
        return;
    }
    if (v > s->last) s->last = v; /* others may add too: the last is at least before + N */
    send_more(s);
}

static void send_more(state_t *s) {
    while (!s->failed && s->sent < s->total && s->sent - s->done < IN_FLIGHT) {
        if (mpb_dict_incr_async(s->d, s->key, s->keylen, 1, on_incr, s) != 0) {
            s->failed = 1;
            return;
        }
        s->sent++;
    }
}

int main(int argc, char **argv) {
    const char *ep = argc > 1 ? argv[1] : getenv("MPB_ENDPOINT");
    long n = argc > 2 ? atol(argv[2]) : 10000;
    if (!ep) ep = "tcp://127.0.0.1:5555";
    void *key;
    size_t keylen;
    char err[256];
    if (n < 1 || mpb_authkey_load(NULL, &key, &keylen, err, sizeof err) != 0) {
        fprintf(stderr, "pipeline: %s\n", n < 1 ? "N must be positive" : err);
        return 2;
    }
    mpb_client_t *c;
    int rc = mpb_connect(ep, key, keylen, NULL, &c);
    mpb_free(key);
    state_t s = {.total = n};
    if (rc == 0) rc = mpb_dict_open(c, "counters", &s.d);
    if (rc != 0) {
        fprintf(stderr, "pipeline: %s\n", mpb_errmsg(c));
        mpb_close(&c);
        return 1;
    }
    /* the key "hits" as msgpack: fixstr */
    s.key[0] = 0xa4;
    memcpy(s.key + 1, "hits", 4);
    s.keylen = 5;
    int64_t before = 0;
    mpb_dict_get_i64(s.d, "hits", &before); /* absent: stays 0 */

    send_more(&s);
    int fd = mpb_fd(c);
    while (!s.failed && s.done < s.total) {
        if (mpb_flush(c) != 0) break; /* what the callbacks queued goes out as one message */
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 1000) < 0) break;
        /* mpb_fd() is edge-triggered: read until nothing more has arrived */
        long seen;
        do {
            seen = s.done;
            if (mpb_poll(c, 0) < 0) s.failed = 1;
        } while (!s.failed && s.done != seen);
    }
    int ok = !s.failed && s.done == s.total && s.last >= before + s.total;
    printf("%ld increments, counters[hits] now %lld%s\n", s.done, (long long)s.last,
           ok ? "" : " (FAILED)");
    mpb_dict_close(&s.d);
    mpb_close(&c);
    return ok ? 0 : 1;
}
