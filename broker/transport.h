/* transport.h - ZeroMQ options, CURVE + ZAP, the connection table and its bounds (transport.c). */
#ifndef BROKER_TRANSPORT_H
#define BROKER_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct transport transport_t;
/* Derives the CURVE keys, binds the ZAP handler and the socket monitor, raises the descriptor
 * limit and sets the ROUTER's options (heartbeats, keepalive, handshake deadline, message
 * size). Call before any bind. NULL with a reason in err. authkey is borrowed. */
transport_t *transport_open(void *zctx, void *router, const uint8_t *authkey, size_t keylen,
                            char *err, size_t errlen);
/* Binds endpoint with CURVE or without, as enc (ENC_*) says for it, and logs which.
 * 0, or -1 with zmq_errno() set. */
int transport_bind(transport_t *t, const char *endpoint, int enc);
/* An endpoint of another transport (unix://, stream.c) is bound, unencrypted. */
void transport_note_plain(transport_t *t);
/* An mpb:// endpoint (sealed by stream.c) is bound. */
void transport_note_sealed(transport_t *t);
/* "curve", "none" or "mixed" (some endpoints each way), for info. */
const char *transport_encryption(const transport_t *t);
size_t transport_connections(const transport_t *t);
/* max-connections as it applies (the descriptor limit less a reserve when not set). */
size_t transport_max_open(const transport_t *t);
/* The two sockets the loop polls for it (for ZMQ_POLLIN): the ZAP handler and the monitor. */
void transport_sockets(transport_t *t, void **zap, void **monitor);
/* Serves what the poll found ready on them. */
void transport_run(transport_t *t, bool zap_ready, bool monitor_ready);
/* Shuts connections that have gone idle-ms without a session. */
void transport_sweep(transport_t *t, int64_t now);
/* A message came on the connection with descriptor fd (ZMQ_SRCFD): under CURVE, its peer
 * holds the key. */
void transport_conn_seen(transport_t *t, int fd);
/* Bytes of the TCP connection fd that its peer acknowledged (TCP_INFO), -1 if not TCP. */
int64_t transport_acked(int fd);
/* The output limit, for a connection that sent bytes since acked0 (transport_acked() when its
 * session began): 0 when what its peer has not acknowledged is within max-output; 1 when it
 * is over but the peer acknowledged something since the last look (*seen, *since_ms: what and
 * when; a reading client catching up with a burst); 2 when it has been over with nothing
 * acknowledged for a second, or is over twice max-output plus max-batch-reply: the connection
 * is then shut (its session is kept), logged with who and counted. */
int transport_output_check(transport_t *t, int fd, uint64_t sent, int64_t acked0, int64_t *seen,
                           int64_t *since_ms, const char *who);
extern uint64_t g_output_closed;
/* The connection with descriptor fd (ZMQ_SRCFD of its message) has a session now, or not. */
void transport_conn_session(transport_t *t, int fd, bool has);
void transport_close(transport_t **t);
extern uint64_t g_conn_refused, g_conn_idle_closed, g_curve_denied;

#endif
