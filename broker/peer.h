/* peer.h - peers, one per ZeroMQ connection (routing id): the handshake state, the keys,
 * the sequence numbers and the output accounting of each, in one table by routing id. */
#ifndef BROKER_PEER_H
#define BROKER_PEER_H

#include "obj.h"
#include "table.h"
#include "transport.h"

#define RID_MAX 256

struct peer {
    uint8_t rid[RID_MAX];
    uint8_t ridlen;
    bool ready; /* handshake done, keys set */
    uint8_t nonce_c[MPB__NONCE_LEN], nonce_b[MPB__NONCE_LEN];
    int64_t hs_deadline;
    mpb__mac_t *rx, *tx;
    uint64_t seq_in, seq_out;
    sess_t *sess;
    int fd; /* its connection's descriptor while it has a session, else -1 */
    uint64_t out_bytes, out_checked; /* reply bytes sent since its session began; at the last
                                        look at what its TCP acknowledged */
    int64_t acked0;                  /* what its TCP had acknowledged then (-1: not TCP) */
    int64_t acked_seen, acked_ms;    /* over max-output: acknowledged at the last look, and
                                        since when that has not moved */
    bool out_over;                   /* over max-output at the last look: the sweep looks */
    bool out_cut;                    /* shut for it: its replies are dropped from now on */
    uint32_t nsess_opened; /* live sessions this connection opened: max-sessions-per-conn */
    UT_hash_handle hh;     /* the peer table, by rid */
    char addr[64];         /* its Peer-Address at its hello (TCP: the IP; ipc://: libzmq's
                              ":uid:gid:pid" of the peer process): mpb clients, and the key of
                              its address's share of max-handshakes */
};

/* The table starts empty; tp: the transport told when a peer's connection loses its session. */
void peer_init(transport_t *tp);
/* Frees every peer (shutdown). */
void peer_free_all(void);
peer_t *peer_find(const uint8_t *rid, size_t n);
/* A new peer in the handshake, from addr (its Peer-Address; NULL: none): counted in
 * peer_pending() and peer_pending_from(addr). */
peer_t *peer_new(const uint8_t *rid, size_t n, const char *addr);
void peer_free(peer_t *p);
/* The handshake of p is done: it no longer counts in peer_pending(). */
void peer_ready(peer_t *p);
size_t peer_pending(void);
/* Handshakes in progress from addr. */
size_t peer_pending_from(const char *addr);
/* A routing id in hex, for the log (cut to fit n, the terminating zero included). */
void rid_hex(const uint8_t *rid, size_t ridlen, char *out, size_t n);
/* Its routing id in hex, for the log. */
void peer_sample(const peer_t *p, char *out, size_t n);
/* Whether a line of this kind (what: a short tag) about this peer may be written now (log.c's
 * rate limit), keyed by the kind and its address, or its connection when it has none
 * (ipc://): a flood of one kind never hides the first line of another. addr gets the address. */
bool peer_log_ok(const char *what, int fd, const char *who, char *addr, size_t n,
                 unsigned long long *held);
/* Frees peers whose handshake timed out, and ready ones that speak for no session and opened
 * none that lives. */
void peer_sweep(int64_t now);

#endif
