/* pool_testfns.c - libmpbtestfns.so: pool functions that only the pool tests need, loaded by
 * mpb-worker (--lib). Each takes [n] (one integer) and answers one msgpack value.
 *
 *   pad(n)      -> bin of 1024 bytes: n big-endian in the first 8, then the byte n & 0xff
 *   sqsleep(n)  -> n * n after sleeping 1 ms; counts its runs in $MPB_TEST_COUNTS
 *   crash(n)    -> never answers: the worker process kills itself (SIGKILL, as a lost host)
 *   procinfo(n) -> [pid, times testinit ran in this process]
 *   initarg(n)  -> the string testinit was given (--init-arg), or nil
 *   conc(ms)    -> after sleeping ms: the most calls this process has run at once so far
 *   nap(n)      -> n, after sleeping $MPB_TEST_NAP_MS (read once per process; default 0)
 *   countnap(n) -> n, after counting its start in $MPB_TEST_COUNTS and sleeping as nap does
 *   kinded(n)   -> n when n >= 0; else fails with kind ValueError (odd n) or KeyError (even)
 *   chatty(n)   -> n, after printing "out N line 1\nout N line 2\n" and "err N\n" to stderr
 *   slowchat(n) -> n, after printing "first N\n", sleeping 1 s and printing "second N\n"
 *                  (no flush: the worker's line buffering sends each line as it is written)
 *   flood(n)    -> n, after printing n lines of 99 'x' and a newline (100 bytes each)
 *   exact64k(n) -> n, after writing 65536 bytes to stdout in 4 KiB writes, sleeping 300 ms
 *                  (the worker has read them all by then) and writing n bytes more
 *   coop(n)     -> n after 60 s; once mpb_task_cancelled() says its task was cancelled, it
 *                  counts that in $MPB_TEST_COUNTS (counter n) and fails at once
 *   big(n)      -> bin of n bytes (results over the broker's limits)
 *   testinit    -> for --init: counts its runs; fails (returns 7) when its argument is "fail"
 *
 * $MPB_TEST_COUNTS names a file of 32-bit counters (one per n) shared with the test through
 * mmap, so the test sees every execution, including the ones whose worker was killed. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mpb/mpb.h"

#define EXPORT __attribute__((visibility("default")))

typedef int task_fn(void *ctx, const void *args, size_t alen, void **result, size_t *rlen,
                    char *err, size_t errlen);
EXPORT task_fn pad, sqsleep, crash, procinfo, initarg, conc, nap, big, countnap, kinded, chatty,
    slowchat, coop, flood, exact64k;
EXPORT int testinit(const char *arg);

static int inits;
static const char *init_arg;

/* [n] with n any msgpack integer. */
static int arg0(const void *args, size_t alen, int64_t *v, char *err, size_t errlen) {
    const uint8_t *p = args;
    if (alen >= 2 && p[0] == 0x91) {
        uint8_t t = p[1];
        size_t need = 0;
        if (t <= 0x7f || t >= 0xe0) {
            *v = (int8_t)t;
            if (t <= 0x7f) *v = t;
            return 0;
        }
        switch (t) {
        case 0xcc:
        case 0xd0: need = 1; break;
        case 0xcd:
        case 0xd1: need = 2; break;
        case 0xce:
        case 0xd2: need = 4; break;
        case 0xcf:
        case 0xd3: need = 8; break;
        default: break;
        }
        if (need && alen == 2 + need) {
            uint64_t u = 0;
            for (size_t i = 0; i < need; i++)
                u = u << 8 | p[2 + i];
            if (t >= 0xd0) { /* signed: sign-extend */
                unsigned shift = (unsigned)(64 - 8 * need);
                *v = (int64_t)(u << shift) >> shift;
            } else {
                *v = (int64_t)u;
            }
            return 0;
        }
    }
    snprintf(err, errlen, "expected one integer argument");
    return -1;
}

static size_t enc_int(uint8_t *b, int64_t v) {
    b[0] = 0xd3;
    for (int i = 0; i < 8; i++)
        b[1 + i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
    return 9;
}

int pad(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
        size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    uint8_t *b = malloc(3 + 1024);
    if (!b) return -1;
    b[0] = 0xc5; /* bin16 */
    b[1] = 1024 >> 8;
    b[2] = 1024 & 0xff;
    memset(b + 3, (int)(n & 0xff), 1024);
    for (int i = 0; i < 8; i++)
        b[3 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    *result = b;
    *rlen = 3 + 1024;
    return 0;
}

static uint32_t *counts;
static size_t ncounts;
static pthread_once_t counts_once = PTHREAD_ONCE_INIT;

static void counts_open(void) {
    const char *path = getenv("MPB_TEST_COUNTS");
    if (!path) return;
    int fd = open(path, O_RDWR);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            counts = m;
            ncounts = (size_t)st.st_size / sizeof *counts;
        }
    }
    close(fd);
}

int sqsleep(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
            size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    pthread_once(&counts_once, counts_open);
    if (counts && n >= 0 && (size_t)n < ncounts)
        __atomic_fetch_add(&counts[n], 1, __ATOMIC_SEQ_CST);
    struct timespec ts = {0, 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    uint8_t *b = malloc(9);
    if (!b) return -1;
    *rlen = enc_int(b, n * n);
    *result = b;
    return 0;
}

int crash(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
          size_t errlen) {
    (void)ctx;
    (void)args;
    (void)alen;
    (void)result;
    (void)rlen;
    (void)err;
    (void)errlen;
    raise(SIGKILL);
    return -1;
}

int testinit(const char *arg) {
    __atomic_fetch_add(&inits, 1, __ATOMIC_SEQ_CST);
    init_arg = arg;
    return arg && !strcmp(arg, "fail") ? 7 : 0;
}

int initarg(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
            size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    size_t l = init_arg ? strlen(init_arg) : 0;
    uint8_t *b = malloc(2 + l);
    if (!b || l > 31) {
        free(b);
        snprintf(err, errlen, "initarg: no room");
        return -1;
    }
    if (!init_arg) {
        b[0] = 0xc0;
        *rlen = 1;
    } else {
        b[0] = (uint8_t)(0xa0 | l); /* fixstr */
        memcpy(b + 1, init_arg, l);
        *rlen = 1 + l;
    }
    *result = b;
    return 0;
}

static void sleep_for(int64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int running, peak;

int conc(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
         size_t errlen) {
    (void)ctx;
    int64_t ms;
    if (arg0(args, alen, &ms, err, errlen)) return -1;
    int now = __atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
    int p = __atomic_load_n(&peak, __ATOMIC_SEQ_CST);
    while (now > p && !__atomic_compare_exchange_n(&peak, &p, now, false, __ATOMIC_SEQ_CST,
                                                   __ATOMIC_SEQ_CST)) {
    }
    sleep_for(ms);
    int most = __atomic_load_n(&peak, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
    uint8_t *b = malloc(9);
    if (!b) return -1;
    *rlen = enc_int(b, most);
    *result = b;
    return 0;
}

static int64_t nap_ms = -1;

int nap(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
        size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    int64_t ms = __atomic_load_n(&nap_ms, __ATOMIC_SEQ_CST);
    if (ms < 0) {
        const char *e = getenv("MPB_TEST_NAP_MS");
        ms = e ? atoll(e) : 0;
        __atomic_store_n(&nap_ms, ms, __ATOMIC_SEQ_CST);
    }
    sleep_for(ms);
    uint8_t *b = malloc(9);
    if (!b) return -1;
    *rlen = enc_int(b, n);
    *result = b;
    return 0;
}

int countnap(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
             size_t errlen) {
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    pthread_once(&counts_once, counts_open);
    if (counts && n >= 0 && (size_t)n < ncounts)
        __atomic_fetch_add(&counts[n], 1, __ATOMIC_SEQ_CST);
    return nap(ctx, args, alen, result, rlen, err, errlen);
}

int kinded(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
           size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    if (n < 0)
        return mpb_task_fail(err, errlen, n % 2 ? "ValueError" : "KeyError",
                             "kinded: %lld is negative", (long long)n);
    uint8_t *b = malloc(9);
    if (!b) return -1;
    *rlen = enc_int(b, n);
    *result = b;
    return 0;
}

int chatty(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
           size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    printf("out %lld line 1\nout %lld line 2\n", (long long)n, (long long)n);
    fprintf(stderr, "err %lld\n", (long long)n);
    uint8_t *b = malloc(9);
    if (!b) return -1;
    *rlen = enc_int(b, n);
    *result = b;
    return 0;
}

int slowchat(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
             size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    printf("first %lld\n", (long long)n);
    sleep_for(1000);
    printf("second %lld\n", (long long)n);
    uint8_t *b = malloc(9);
    if (!b) return -1;
    *rlen = enc_int(b, n);
    *result = b;
    return 0;
}

int flood(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
          size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    char line[101];
    memset(line, 'x', 99);
    line[99] = '\n';
    line[100] = 0;
    for (int64_t i = 0; i < n; i++)
        fputs(line, stdout);
    uint8_t *b = malloc(9);
    if (!b) return -1;
    *rlen = enc_int(b, n);
    *result = b;
    return 0;
}

int exact64k(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
             size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    static char block[4096];
    memset(block, 'y', sizeof block);
    fflush(stdout);
    for (int i = 0; i < 16; i++)
        if (write(1, block, sizeof block) != (ssize_t)sizeof block) return -1;
    usleep(300000);
    for (int64_t left = n; left > 0; left -= (int64_t)sizeof block)
        if (write(1, block, left < (int64_t)sizeof block ? (size_t)left : sizeof block) < 0)
            return -1;
    uint8_t *b = malloc(9);
    if (!b) return -1;
    *rlen = enc_int(b, n);
    *result = b;
    return 0;
}

int coop(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
         size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    pthread_once(&counts_once, counts_open);
    for (int i = 0; i < 60000; i++) {
        if (mpb_task_cancelled()) {
            if (counts && n >= 0 && (size_t)n < ncounts)
                __atomic_fetch_add(&counts[n], 1, __ATOMIC_SEQ_CST);
            snprintf(err, errlen, "coop: cancelled");
            return -1;
        }
        sleep_for(1);
    }
    uint8_t *b = malloc(9);
    if (!b) return -1;
    *rlen = enc_int(b, n);
    *result = b;
    return 0;
}

int big(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
        size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    if (n < 0 || n > (1 << 30)) {
        snprintf(err, errlen, "big: %lld is not 0..1g", (long long)n);
        return -1;
    }
    uint8_t *b = malloc(5 + (size_t)n);
    if (!b) return -1;
    b[0] = 0xc6; /* bin32 */
    for (int i = 0; i < 4; i++)
        b[1 + i] = (uint8_t)((uint64_t)n >> (24 - 8 * i));
    memset(b + 5, 'x', (size_t)n);
    *result = b;
    *rlen = 5 + (size_t)n;
    return 0;
}

int procinfo(void *ctx, const void *args, size_t alen, void **result, size_t *rlen, char *err,
             size_t errlen) {
    (void)ctx;
    int64_t n;
    if (arg0(args, alen, &n, err, errlen)) return -1;
    uint8_t *b = malloc(1 + 9 + 9);
    if (!b) return -1;
    b[0] = 0x92;
    size_t k = 1 + enc_int(b + 1, getpid());
    k += enc_int(b + k, __atomic_load_n(&inits, __ATOMIC_SEQ_CST));
    *result = b;
    *rlen = k;
    return 0;
}
