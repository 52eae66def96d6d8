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
 *          between readings, the bytes of the growing requests accepted are added to it.
 *
 * And replies that cannot be built: a reply, a log record or a held frame is grown where the
 * allocator may say no (proto's buffers give back the reserve and try again, as xmalloc does);
 * when it still says no, the request is answered ENOMEM instead of the broker aborting, and
 * what is stored is left as it was: a write is refused before it runs (room for its reply and
 * its record is made first), a pop makes room for the value before taking it out, and a read
 * whose reply could not be built is simply answered ENOMEM. */
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
#include "commands.h"

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
    mpb__buf_on_oom = mem_release_reserve;
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

/* The ENOMEM reply for a reply that could not be built, naming the limits in force. */
static int reply_nomem(req_t *r) {
    g_oom_refused++;
    struct rlimit rl;
    char as[32] = "none";
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        snprintf(as, sizeof as, "%llu", (unsigned long long)rl.rlim_cur);
    return reply_error(r, MPB_ENOMEM,
                       "out of memory: no room for the reply (%zu bytes used, max-memory %zu, "
                       "address-space limit %s); nothing was changed: ask for less at a time",
                       mem_used(), g_limits.max_memory, as);
}

int mem_no_log_room(req_t *r) {
    g_oom_refused++;
    return reply_error(r, MPB_ENOMEM,
                       "out of memory: no room for its log record (%zu bytes used, max-memory "
                       "%zu); not run",
                       mem_used(), g_limits.max_memory);
}

/* Takes back a failed growth of b (its content is whole: a write that failed wrote nothing). */
static void buf_unfail(mpb__buf_t *b, size_t len) {
    b->len = len;
    b->oom = false;
}

/* A reply of n bytes is copied by libzmq (zmq_send) and again by its CURVE encoder, in its own
 * thread, which aborts if it cannot allocate: a large one goes only when that much memory, and
 * as much again for others in flight, can be had now (allocated and given back at once). */
#define BIG_REPLY ((size_t)1 << 20)
static bool zmq_room(size_t n) {
    if (n < BIG_REPLY) return true;
    void *volatile p = malloc(4 * n); /* volatile: the probe must happen */
    bool ok = p != NULL;
    free(p);
    return ok;
}

int mem_reply_room(req_t *r, size_t n) {
    n += 64; /* the reply's own [rid, code, ...] around the value */
    if (zmq_room(n) && mpb__buf_reserve(r->out, n) == 0) return 0;
    buf_unfail(r->out, r->out->len);
    return reply_nomem(r);
}

int mem_reply_headroom(req_t *r) {
    if (mpb__buf_reserve(r->out, MEM_REPLY_HEADROOM) == 0) return 0;
    buf_unfail(r->out, r->out->len);
    const command_t *c = command_find(r->op);
    if (c && (c->flags & CMD_READ)) return 0; /* it changes nothing: it may try */
    return reply_nomem(r);
}

void mem_reply_check(req_t *r, size_t before) {
    if (!r->out->oom) {
        /* Only a read's reply may be taken back: a pop made room before its value left. */
        const command_t *c = command_find(r->op);
        if (!c || !(c->flags & CMD_READ) || zmq_room(r->out->len - before)) return;
    }
    buf_unfail(r->out, before);
    reply_nomem(r);
}

void mem_buf_trim(mpb__buf_t *b) {
    if (b->cap > ((size_t)4 << 20)) mpb__buf_free(b);
}
