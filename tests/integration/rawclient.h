/* rawclient.h - a raw protocol client for the hostile-input tests: a ZeroMQ DEALER that does the
 * handshake one step at a time, sends any bytes at all (one frame or several), seals REQ frames
 * with a chosen sequence number, and receives and splits whatever the broker answers. It reuses
 * the proto functions libmpb uses, so what it calls "well formed" is exactly what libmpb sends.
 *
 *   rc_open -> rc_hello (HELLO, CHALLENGE) -> rc_auth (AUTH, WELCOME) -> rc_call (REQ, REP|ERROR)
 *   every step is separate, so a test can stop, skip or corrupt any of them. */
#ifndef MPB_RAWCLIENT_H
#define MPB_RAWCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mpbproto.h"

#define RC_MAX_REPLIES 32

/* One reply of a REP batch: [rid, code, value]. */
typedef struct rc_reply {
    uint64_t rid;
    uint64_t code;      /* 0: success; else the positive wire error code */
    const uint8_t *val; /* the value (or the message), msgpack, inside the frame */
    size_t vallen;
    char msg[512]; /* code != 0: the message as text */
} rc_reply_t;

/* A received frame. Pointers are into the client's receive buffer: valid until the next
 * rc_recv() on the same client. */
typedef struct rc_frame {
    uint8_t type;
    uint64_t seq;
    const uint8_t *data; /* the whole frame */
    size_t len;
    const uint8_t *body;
    size_t bodylen;
    bool mac_ok;   /* sealed, and the MAC verifies under this connection's s2c key */
    int code;      /* ERROR: the positive wire code (5 for EPROTO...) */
    char msg[512]; /* ERROR: its message */
    rc_reply_t rep[RC_MAX_REPLIES]; /* REP: the replies in order */
    size_t nrep;
} rc_frame_t;

typedef struct rawclient {
    void *ctx, *sock;
    bool own_ctx;
    uint8_t nonce_c[MPB__NONCE_LEN], nonce_b[MPB__NONCE_LEN];
    uint8_t broker_proof[MPB__PROOF_LEN];
    mpb__mac_t *tx, *rx; /* c2s and s2c, once authenticated */
    uint64_t seq_out;    /* the last sequence number sent */
    uint64_t seq_in;     /* the last sequence number received in a verified frame */
    bool ready;          /* WELCOME received and verified */
    uint64_t session, max_frame, max_value, max_key;
    uint8_t token[MPB__TOKEN_LEN]; /* the session's, from the WELCOME */
    bool resumed;                  /* the WELCOME said the session was resumed */
    uint64_t next_rid;
    mpb__buf_t in; /* the last frame received */
} rawclient_t;

/* Connects a DEALER to endpoint, in a context of its own (ctx NULL) or in ctx (for many
 * clients). Returns 0 or -1. */
int rc_open(rawclient_t *c, void *ctx, const char *endpoint);
/* As rc_open, with a chosen ZeroMQ routing id (1..255 bytes, not starting with a zero byte): the
 * broker's log then names this connection peer=<id in hex>. */
int rc_open_as(rawclient_t *c, void *ctx, const char *endpoint, const void *id, size_t idlen);
/* Ends the session (a sealed bye, without waiting) if there is one, and closes. Accepts a
 * closed client. */
void rc_close(rawclient_t *c);

/* Sends p as one ZeroMQ message / as nparts parts of one message. 0 or -1. */
int rc_send(rawclient_t *c, const void *p, size_t n);
int rc_send_parts(rawclient_t *c, const void *const *parts, const size_t *lens, int nparts);

/* Receives one message within timeout_ms and splits it into f. Returns 0, MPB_ETIMEDOUT, or
 * MPB_EPROTO when it is not a frame we can parse (f->msg says why). An ERROR frame fills
 * f->code/f->msg; a sealed frame is checked against rx (f->mac_ok); a verified REP fills
 * f->rep. A REP that does not verify is still returned (with mac_ok false). */
int rc_recv(rawclient_t *c, rc_frame_t *f, int timeout_ms);

/* Writes a plain frame header of type/seq and then body into out (reset first). */
void rc_plain(mpb__buf_t *out, uint8_t type, uint64_t seq, const void *body, size_t n);

/* Sends HELLO {v: 1, nonce} with a fresh nonce and waits for the CHALLENGE (kept in c). Returns
 * 0, the negative code of an ERROR answer, or MPB_ETIMEDOUT. f may be NULL. */
int rc_hello(rawclient_t *c, rc_frame_t *f, int timeout_ms);
/* Sends AUTH with the proof for key over the nonces of the last hello, and waits for the
 * WELCOME. 0 when it arrived and verified (c is then ready), else the negative code of the
 * ERROR, MPB_EAUTH for a WELCOME that does not verify, or MPB_ETIMEDOUT. f may be NULL. */
int rc_auth(rawclient_t *c, const void *key, size_t keylen, rc_frame_t *f, int timeout_ms);
/* As rc_auth, asking to resume session with its token (from another client's WELCOME). The
 * sequence numbers of c start again from 0: rc_seal() chooses them. */
int rc_auth_resume(rawclient_t *c, const void *key, size_t keylen, uint64_t session,
                   const uint8_t *token, rc_frame_t *f, int timeout_ms);
/* Sends AUTH with the given body only (any bytes), without waiting. */
int rc_auth_raw(rawclient_t *c, const void *body, size_t n);
/* Whether the broker's proof in the last CHALLENGE is right for key. */
bool rc_broker_proof_ok(const rawclient_t *c, const void *key, size_t keylen);
/* rc_hello then rc_auth. */
int rc_handshake(rawclient_t *c, const void *key, size_t keylen, int timeout_ms);

/* Writes into out (reset first) a REQ frame with seq and body, sealed with c's c2s key. The
 * client's own seq_out is not touched: the test chooses. */
void rc_seal(const rawclient_t *c, uint64_t seq, const void *body, size_t n, mpb__buf_t *out);
/* Seals body with the next sequence number and sends it; out (may be NULL) keeps a copy of the
 * exact bytes sent, for replays. 0 or -1. */
int rc_send_req(rawclient_t *c, const void *body, size_t n, mpb__buf_t *out);
/* rc_send_req and then rc_recv. */
int rc_call(rawclient_t *c, const void *body, size_t n, rc_frame_t *f, int timeout_ms);

/* Appends the start of one request [rid, op, name|nil, argc args...] to b; the caller writes
 * the argc args after it. name NULL: nil. */
void rc_req(mpb__buf_t *b, uint64_t rid, unsigned op, const char *name, size_t namelen,
            uint32_t argc);

#endif
