/* stream.h - unix:// and mpb:// endpoints: the protocol's frames on Unix and TCP stream
 * sockets (sealed on TCP), read and written by the loop itself (stream.c), with no ZeroMQ I/O
 * thread between a client and it. */
#ifndef BROKER_STREAM_H
#define BROKER_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

/* A stream connection's routing id: 0x00 'U' and a 32-bit counter. libzmq makes 5-byte ids
 * and the ZeroMQ side drops messages whose id looks like one of these (server.c). */
#define STREAM_RID_LEN 6

/* Frames of a connection without a session are at most this long (a HELLO or an AUTH is a
 * few hundred bytes): what a peer without the key can make the broker hold is bounded. */
#define STREAM_UNPROVEN_FRAME (16u << 10)

/* A whole frame arrived: rid names its connection (as a ROUTER's routing id does), addr is
 * its Peer-Address (":uid:gid:pid", as libzmq gives for ipc://). */
typedef void (*stream_on_frame_t)(const uint8_t *rid, size_t ridlen, const uint8_t *frame,
                                  size_t len, const char *addr);

/* Binds "unix:///PATH" (a stale socket file of a broker that is gone is replaced; a live one
 * or another file is an error) or "mpb://ADDR:PORT" (TCP, sealed with keys made from authkey,
 * which must outlive the listeners). tp: for the shared connection limit. bound gets the
 * endpoint as clients reach it (mpb:// with the port the kernel gave for 0). 0, or -1 with a
 * reason. */
int stream_bind(const char *endpoint, transport_t *tp, const void *authkey, size_t keylen,
                char *bound, size_t boundlen, char *err, size_t errlen);
/* The descriptor the loop polls (an epoll set), -1 while nothing is bound. */
int stream_fd(void);
/* Accepts, reads and writes what is ready; each whole frame goes to on_frame. */
void stream_run(stream_on_frame_t on_frame);
static inline bool stream_is_rid(const uint8_t *rid, size_t n) {
    return n == STREAM_RID_LEN && rid[0] == 0 && rid[1] == 'U';
}
/* Counts a frame for the connection rid against max-output, before it is held for the log or
 * sent: false (drop it) when the connection is gone, or is closed now for unread replies. */
bool stream_admit(const uint8_t *rid, size_t len);
/* Queues a frame for the connection rid (dropped if it is gone); written by stream_flush(). */
void stream_send(const uint8_t *rid, const uint8_t *frame, size_t len);
/* Writes what was queued, at the end of each loop turn. */
void stream_flush(void);
/* Closes connections idle without a session past idle-ms and ones whose replies go unread. */
void stream_sweep(int64_t now);
size_t stream_count(void);
/* Whether frames were read since the last call. */
bool stream_took_frames(void);
/* Something waits to be read or accepted now. */
bool stream_ready_now(void);
/* Closes every connection and the listeners, removing their socket files. */
void stream_close_all(void);

#endif
