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
extern uint64_t g_oom_refused;

#endif
