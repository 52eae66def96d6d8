/* replay.h - the replies a client that resends is answered from (replay.c). */
#ifndef BROKER_REPLAY_H
#define BROKER_REPLAY_H

#include "sess.h"

/* Whether an op's replies are kept (it changes something or waits; a read just runs again). */
bool replay_cacheable(unsigned op);
/* Keeps the reply [rid, code, value] to a request of s just run (if op's replies are kept). */
void replay_note(sess_t *s, uint64_t rid, unsigned op, const uint8_t *reply, size_t n);
/* Keeps the answer to a parked request of s (server_send_reply). */
void replay_note_parked(sess_t *s, const uint8_t *reply, size_t n);
/* The kept reply to rid, or NULL. */
const blob_t *replay_find(const sess_t *s, uint64_t rid);
/* Whether a request rid of s is parked, to be answered later. */
bool replay_parked(const sess_t *s, uint64_t rid);
size_t replay_bytes(const sess_t *s);
void replay_free(sess_t *s);
extern uint64_t g_replayed; /* requests answered from the cache instead of running again */

#endif
