/* mem.c - a memory limit that protects the data, as Redis's maxmemory with noeviction: past
 * --max-memory, requests that would grow the broker's memory are refused with ENOMEM naming
 * the limit, while reads, deletes and pops go on and nothing stored is dropped.
 *
 * And a reserve against the allocator saying no (an address-space limit, ulimit -v): 64 MiB of
 * address space held from the start and given back the moment an allocation fails, so that the
 * allocation in progress (and libzmq's, which cannot fail cleanly) still succeeds; from then on
 * the broker refuses to grow, as past the limit, until the reserve can be taken again.
 *
 *   used = heap bytes in use (glibc's mallinfo2, or ASan's counter), read at most every 10 ms;
 *          between readings, the bytes of the growing requests accepted are added to it. */
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>

#if defined(__SANITIZE_ADDRESS__)
/* libasan's (its header, sanitizer/allocator_interface.h, is not always installed) */
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#include <malloc.h>
#endif

#include "broker.h"

#define RESERVE_BYTES ((size_t)64 << 20)
#define REFRESH_MS    10

uint64_t g_oom_refused;

static struct {
    void *reserve; /* NULL: given back (the broker is short of memory) */
    size_t used;   /* at the last reading, plus what was accepted since */
    int64_t read_ms;
    bool low; /* an allocation failed: refuse growth until the reserve is back */
} M;

size_t mem_used(void) {
#if defined(__SANITIZE_ADDRESS__)
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

static void *reserve_take(void) {
    void *p =
        mmap(NULL, RESERVE_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void mem_init(void) {
    M.reserve = reserve_take();
    M.used = mem_used();
    M.read_ms = now_ms();
    /* Under an address-space limit and no --max-memory, refuse growth well before the
     * allocator fails: half of what the limit leaves now (address space is not heap: each
     * thread's malloc arena reserves 64 MiB of it). */
    struct rlimit rl;
    if (!g_limits.max_memory && getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        size_t vm = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (f) {
            unsigned long pages = 0;
            if (fscanf(f, "%lu", &pages) == 1) vm = pages * 4096;
            fclose(f);
        }
        size_t left = rl.rlim_cur > vm ? (size_t)rl.rlim_cur - vm : 0;
        g_limits.max_memory = M.used + left / 2;
        if (g_limits.max_memory < ((size_t)16 << 20)) g_limits.max_memory = (size_t)16 << 20;
        char lim[32];
        snprintf(lim, sizeof lim, "%zu", g_limits.max_memory);
        log_kv(MPB_LOG_INFO, "max-memory set from the address-space limit (ulimit -v)",
               "max_memory", lim, NULL);
    }
}

bool mem_release_reserve(void) {
    if (!M.reserve) return false;
    munmap(M.reserve, RESERVE_BYTES);
    M.reserve = NULL;
    M.low = true;
    log_kv(MPB_LOG_WARN,
           "out of memory: reserve given back; requests that would grow memory are refused", NULL);
    return true;
}

void mem_tick(int64_t now) {
    (void)now;
    if (!M.low) return;
    /* Back to normal once the reserve can be held again and the limit allows. */
    M.reserve = reserve_take();
    if (M.reserve) {
        M.low = false;
        log_kv(MPB_LOG_INFO, "memory available again: the reserve is held", NULL);
    }
}

bool mem_low(void) {
    return M.low;
}

size_t mem_used_estimate(void) {
    return M.used;
}

int mem_refuse(req_t *r, size_t incoming) {
    if (!M.low && !g_limits.max_memory) return 0;
    int64_t now = now_ms();
    /* Past the limit, read again (at most once a millisecond): deletes may have freed some. */
    if (now - M.read_ms >= REFRESH_MS ||
        (M.used + incoming > g_limits.max_memory && now != M.read_ms)) {
        M.used = mem_used();
        M.read_ms = now;
    }
    if (M.low) {
        g_oom_refused++;
        return reply_error(r, MPB_ENOMEM,
                           "out of memory: the allocator failed; writes that grow memory are "
                           "refused until memory is freed (reads, deletes and pops work)");
    }
    if (M.used + incoming > g_limits.max_memory) {
        g_oom_refused++;
        return reply_error(r, MPB_ENOMEM,
                           "out of memory: %zu bytes used > max-memory %zu (reads, deletes and "
                           "pops work)",
                           M.used + incoming, g_limits.max_memory);
    }
    M.used += incoming; /* until the next reading */
    return 0;
}
