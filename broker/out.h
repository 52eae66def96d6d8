/* out.h - sealing and sending: every frame the broker sends passes here, held back until the
 * log records of the loop turn are written (out.c). */
#ifndef BROKER_OUT_H
#define BROKER_OUT_H

#include "sess.h"

/* router: the ROUTER socket; tp: for the output limit. */
void out_init(void *router, transport_t *tp);
void out_free(void);
/* b with MPB__HDR_LEN bytes reserved for the header, and nothing after. */
void out_reset(mpb__buf_t *b);
/* Seals b (its first MPB__HDR_LEN bytes reserved for the header) and sends it to p. */
void out_seal_and_send(peer_t *p, uint8_t type, mpb__buf_t *b);
/* A plain error frame, for peers that have no keys (yet, or any more). */
void out_plain_error(const uint8_t *rid, size_t ridlen, int code, const char *msg);
/* A plain (unsealed) frame of type with body, for the handshake. */
void out_plain(const uint8_t *rid, size_t ridlen, uint8_t type, const mpb__buf_t *body);
/* Sends one sealed reply frame [rid, code, value] to a session's current connection, and
 * keeps it for a resend (the answer to a parked request). */
void out_send_reply(sess_t *s, const uint8_t *reply, size_t n);
/* The output limit (transport.c): over it, the sweep keeps looking until the peer reads or
 * its connection is shut. */
void out_check(peer_t *p);
/* Writes the turn's log records, then lets the frames that waited for them go. 0, or -1
 * when the log cannot be written. */
int out_commit(void);

#endif
