/* mpb.h - libmpb, the client of mpbrokerd: named shared dicts, lists, queues and locks on a
 * broker reached over ZeroMQ, after the shared authkey has been proved both ways.
 *
 * Conventions for every call:
 * - Returns 0 (or a documented non-negative result) on success, a negative MPB_E* on failure;
 *   mpb_errmsg() then says why, in words ("dict/users is a list").
 * - Keys and values are msgpack values passed as encoded bytes (const void *, size_t). The
 *   mpb_pack_*() and mpb_unpack_*() helpers build and read the common scalars.
 * - Memory, one rule: whatever the library hands the caller (a buffer through `void **` or
 *   `char **`, what mpb_mp_take() gives) is freed with mpb_free(), never anything else; and
 *   what the caller hands the library to keep (a worker function's *result) is allocated with
 *   malloc(), which the library frees. Pointers passed in are borrowed for the call only.
 * - timeout_ms is MPB_FOREVER (-1), MPB_NOWAIT (0) or a bound in milliseconds. Calls that do not
 *   block in the broker are bounded by the client's op timeout (mpb_options_t.op_timeout_ms).
 * - Threads: a client is used by one thread at a time. Its calls take its lock, and a blocking
 *   call keeps it for as long as it blocks, so every other call on that client, from any
 *   thread, waits behind it (and mpb_errmsg() is per client, not per thread). Two threads that
 *   share a client therefore cannot hand a Lock to each other: the holder's release queues
 *   behind the other's blocked acquire. Give each thread its own client: a session of its own
 *   makes it a lock owner of its own. Within one client, locks tell owners apart by a thread
 *   id (see mpb_lock_set_thread()), for a program that drives several logical tasks from one
 *   thread through mpb_send() and MPB_NOWAIT calls. Object handles belong to the client that
 *   opened them and are used with it.
 * - Fork: a client belongs to the process that connected it. In a forked child every call on an
 *   inherited client fails with MPB_EFORK; the child calls mpb_connect() for a session of its
 *   own, and may mpb_close() the inherited one (this does not disturb the parent's session).
 */
#ifndef MPB_MPB_H
#define MPB_MPB_H

/* The parts, each usable alone (every one includes mpb/client.h), and the op codes for
 * mpb_call() and mpb_send() (mpb/ops.h, generated from the protocol's table at build time). */
#include <mpb/ops.h>

#include "client.h"
#include "containers.h"
#include "msgpack.h"
#include "objects.h"
#include "pipe.h"
#include "pool.h"
#include "sync.h"
#include "worker.h"

#endif
