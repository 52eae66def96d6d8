/* peer.c - the peers: one per ZeroMQ connection (routing id) that said hello, in one table by
 * routing id. A peer in its handshake counts against max-pending; a ready one speaks for its
 * session until the session ends or moves to another connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"
#include "sess.h"
#include "table.h"

static peer_t *peers; /* uthash by rid */
static size_t npending;
static transport_t *tp;

void peer_init(transport_t *t) {
    tp = t;
}

peer_t *peer_find(const uint8_t *rid, size_t n) {
    peer_t *p;
    HASH_FIND(hh, peers, rid, n, p);
    return p;
}

peer_t *peer_new(const uint8_t *rid, size_t n) {
    peer_t *p = xcalloc(1, sizeof *p);
    memcpy(p->rid, rid, n);
    p->ridlen = (uint8_t)n;
    p->fd = -1;
    HASH_ADD(hh, peers, rid, n, p);
    npending++;
    return p;
}

void peer_ready(peer_t *p) {
    p->ready = true;
    npending--;
}

size_t peer_pending(void) {
    return npending;
}

void peer_free(peer_t *p) {
    HASH_DELETE(hh, peers, p);
    if (!p->ready) npending--;
    if (p->sess && p->sess->peer == p) p->sess->peer = NULL;
    transport_conn_session(tp, p->fd, false); /* its connection's idle clock starts */
    mpb__mac_free(&p->rx);
    mpb__mac_free(&p->tx);
    free(p);
}

void peer_free_all(void) {
    while (peers)
        peer_free(peers);
}

void peer_sample(const peer_t *p, char *out, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < p->ridlen && k + 3 < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%02x", p->rid[i]);
    out[k] = 0;
}

bool peer_log_ok(const char *what, int fd, const char *who, char *addr, size_t n,
                 unsigned long long *held) {
    log_peer_addr(fd, addr, n);
    bool net = strcmp(addr, "local") && strcmp(addr, "unknown");
    char key[96];
    snprintf(key, sizeof key, "%s %s", what, net ? addr : who);
    return log_rate_ok(key, held);
}

void peer_sweep(int64_t now) {
    peer_t *p, *next;
    HASH_ITER(hh, peers, p, next) {
        if (!p->ready && now > p->hs_deadline) {
            char who[2 * RID_MAX + 1];
            peer_sample(p, who, sizeof who);
            log_kv(MPB_LOG_INFO, "handshake timed out", "peer", who, NULL);
            peer_free(p);
        } else if (p->ready && !p->sess && !p->nsess_opened) {
            peer_free(p);
        }
    }
}
