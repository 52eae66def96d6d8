/* handshake.h - hello, challenge, auth, welcome: a peer proves the key and opens or resumes
 * a session (handshake.c). */
#ifndef BROKER_HANDSHAKE_H
#define BROKER_HANDSHAKE_H

#include "sess.h"

/* authkey is borrowed for the broker's life; tp: told when a connection has a session. */
void handshake_init(const uint8_t *authkey, size_t keylen, transport_t *tp);
/* addr: the Peer-Address of the message (NULL: none). */
void handshake_hello(const uint8_t *rid, size_t ridlen, const mpb__frame_t *f, const char *addr);
/* fd: the connection's descriptor (ZMQ_SRCFD). */
void handshake_auth(const uint8_t *rid, size_t ridlen, const mpb__frame_t *f, int fd);

#endif
