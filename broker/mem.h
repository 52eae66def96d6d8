/* mem.h - --max-memory, and a reserve against the allocator failing (mem.c). */
#ifndef BROKER_MEM_H
#define BROKER_MEM_H

#include "obj.h"

void mem_init(void);
/* Heap bytes in use now. */
size_t mem_used(void);
size_t mem_used_estimate(void);
/* Whether a request that brings incoming bytes and would grow memory must be refused: then
 * its ENOMEM reply is written and a negative code returned; else 0. */
int mem_refuse(req_t *r, size_t incoming);
/* An allocation failed: gives the reserve back (true) so it can be tried again, once. */
bool mem_release_reserve(void);
bool mem_low(void);
void mem_tick(int64_t now);

/* Gives back a buffer's room once it is empty, if it is large: a page of megabytes would keep
 * its room (twice its size, as buffers double) for ever, and address space is what ulimit -v
 * counts. */
void mem_buf_trim(mpb__buf_t *b);

/* Room in a reply, so that what cannot be answered is refused before it changes anything. */
#define MEM_REPLY_HEADROOM 1024 /* a reply that carries no stored value fits in it */
/* Before a pop takes a value of n bytes out: room for it in r's reply, or 0 replied ENOMEM
 * (negative code returned) and the value stays. */
int mem_reply_room(req_t *r, size_t n);
/* Before r runs: room for a small reply. A write without it is refused ENOMEM (negative code
 * returned); a read runs anyway (mem_reply_check() answers it if its reply cannot be built). */
int mem_reply_headroom(req_t *r);
/* No memory for r's log record: r is refused ENOMEM unrun (the code returned). */
int mem_no_log_room(req_t *r);
/* After r ran, its reply starting at before: one that could not be built (r->out->oom), or a
 * large one of a read that libzmq would have no memory to copy and encrypt (it aborts when an
 * allocation fails), is taken back and r answered ENOMEM. */
void mem_reply_check(req_t *r, size_t before);
extern uint64_t g_oom_refused;

#endif
