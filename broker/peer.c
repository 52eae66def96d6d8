/* peer.c - the peers: one per ZeroMQ connection (routing id) that said hello, in one table by
 * routing id. A peer in its handshake counts against max-handshakes, in all and for its
 * address (a second table, by address, holds the counts); a ready one speaks for its session
 * until the session ends or moves to another connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"
#include "sess.h"
#include "table.h"

static peer_t *peers; /* uthash by rid */
static size_t npending;

/* Handshakes in progress from one address (an entry with none is removed). */
typedef struct addr_pending {
    char addr[sizeof((peer_t *)0)->addr];
    size_t n;
    UT_hash_handle hh;
} addr_pending_t;
static addr_pending_t *by_addr; /* uthash by addr */
static transport_t *tp;

void peer_init(transport_t *t) {
    tp = t;
}

peer_t *peer_find(const uint8_t *rid, size_t n) {
    peer_t *p;
    HASH_FIND(hh, peers, rid, n, p);
    return p;
}

static addr_pending_t *addr_find(const char *addr) {
    addr_pending_t *a;
    HASH_FIND_STR(by_addr, addr, a);
    return a;
}

/* One handshake of p's address is over (done, failed or forgotten). */
static void pending_end(peer_t *p) {
    npending--;
    addr_pending_t *a = addr_find(p->addr);
    if (!a || --a->n) return;
    HASH_DELETE(hh, by_addr, a);
    free(a);
}

peer_t *peer_new(const uint8_t *rid, size_t n, const char *addr) {
    peer_t *p = xcalloc(1, sizeof *p);
    memcpy(p->rid, rid, n);
    p->ridlen = (uint8_t)n;
    p->fd = -1;
    snprintf(p->addr, sizeof p->addr, "%s", addr ? addr : "");
    HASH_ADD(hh, peers, rid, n, p);
    npending++;
    addr_pending_t *a = addr_find(p->addr);
    if (!a) {
        a = xcalloc(1, sizeof *a);
        memcpy(a->addr, p->addr, sizeof a->addr);
        HASH_ADD_STR(by_addr, addr, a);
    }
    a->n++;
    return p;
}

void peer_ready(peer_t *p) {
    p->ready = true;
    pending_end(p);
}

size_t peer_pending(void) {
    return npending;
}

size_t peer_pending_from(const char *addr) {
    char key[sizeof((peer_t *)0)->addr]; /* cut as peer_new() cuts it */
    snprintf(key, sizeof key, "%s", addr ? addr : "");
    addr_pending_t *a = addr_find(key);
    return a ? a->n : 0;
}

void peer_free(peer_t *p) {
    HASH_DELETE(hh, peers, p);
    if (!p->ready) pending_end(p);
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

void rid_hex(const uint8_t *rid, size_t ridlen, char *out, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < ridlen && k + 2 < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%02x", rid[i]);
    out[k] = 0;
}

void peer_sample(const peer_t *p, char *out, size_t n) {
    rid_hex(p->rid, p->ridlen, out, n);
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
