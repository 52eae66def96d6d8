/* driver.c - runs one fuzz harness without libFuzzer, so that gcc builds and ctest runs it:
 * the harness's seeds, then random and mutated inputs from a seeded generator, until an
 * iteration or a time limit. Without coverage feedback it finds less than libFuzzer, but the
 * same properties are checked on every build, under the sanitizers too. On a failure (an
 * abort, a sanitizer report) the input is saved to fuzz-crash-NAME.bin and shown in hex, and
 * `NAME FILE` runs it again alone.
 *
 * usage: NAME [-n ITERATIONS] [-t SECONDS] [-s SEED] [-l MAXLEN] [--write-seeds DIR] [FILE...]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

/* ---- the pool of inputs that mutations start from ---- */

#define POOL_MAX 512

typedef struct {
    uint8_t *p;
    size_t n;
} input_t;

static input_t pool[POOL_MAX];
static size_t pool_n, pool_seeds;
static const char *name = "fuzz";

static void pool_add(const void *p, size_t n) {
    if (pool_n == POOL_MAX) return;
    uint8_t *c = malloc(n ? n : 1);
    if (!c) return;
    memcpy(c, p, n);
    pool[pool_n++] = (input_t){c, n};
}

/* ---- what is running, for the death report ---- */

static const uint8_t *cur;
static size_t cur_n;

/* Only async-signal-safe calls: this runs from a signal handler or a sanitizer's death hook. */
static void save_current(void) {
    static volatile sig_atomic_t saved;
    if (saved || !cur) return;
    saved = 1;
    char path[128] = "fuzz-crash-";
    size_t k = strlen(path);
    for (const char *s = name; *s && k < sizeof path - 5; s++)
        path[k++] = *s;
    memcpy(path + k, ".bin", 5);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, cur, cur_n);
        (void)w;
        close(fd);
    }
    static const char hex[] = "0123456789abcdef";
    char line[3 * 64 + 64];
    size_t l = 0;
    const char *head = "\nfuzz: failing input saved to ";
    ssize_t w = write(2, head, strlen(head));
    w = write(2, path, strlen(path));
    w = write(2, "; its first bytes:\n", 19);
    for (size_t i = 0; i < cur_n && i < 256; i++) {
        line[l++] = hex[cur[i] >> 4];
        line[l++] = hex[cur[i] & 15];
        line[l++] = (i % 32 == 31 || i + 1 == cur_n || i == 255) ? '\n' : ' ';
        if (l > sizeof line - 4) {
            w = write(2, line, l);
            l = 0;
        }
    }
    if (l) w = write(2, line, l);
    (void)w;
}

static void on_signal(int sig) {
    save_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* The sanitizers end the process with _exit, not a signal: ask them to call us first. Weak, so
 * a build without them links. */
extern void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

/* Returns the harness's answer: 0 worth mutating further, -1 not. */
static int run_one(const uint8_t *p, size_t n) {
    uint8_t *c = malloc(n ? n : 1); /* an exact copy, so a sanitizer sees one byte too far */
    if (!c) return -1;
    memcpy(c, p, n);
    cur = c;
    cur_n = n;
    int rc = LLVMFuzzerTestOneInput(c, n);
    cur = NULL;
    free(c);
    return rc;
}

/* ---- a small seeded generator (splitmix64) ---- */

static uint64_t rng;

static uint64_t next(void) {
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t below(size_t n) {
    return n ? (size_t)(next() % n) : 0;
}

static const uint8_t interesting[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0xc0, 0xc1, 0xc4, 0xd9,
                                      0xdc, 0xdd, 0xde, 0xdf, 0x90, 0x80, 0xa0, '"',  '{',
                                      '[',  '\\', ',',  ':',  '0',  '9',  '.',  'e',  '-'};

/* One edit of buf (length *n, capacity cap). */
static void mutate_once(uint8_t *buf, size_t *n, size_t cap) {
    size_t ntok = 0;
    while (fz_tokens[ntok].p)
        ntok++;
    switch (below(9)) {
    case 0: /* flip a bit */
        if (*n) buf[below(*n)] ^= (uint8_t)(1u << below(8));
        break;
    case 1: /* a random byte */
        if (*n) buf[below(*n)] = (uint8_t)next();
        break;
    case 2: /* an interesting byte */
        if (*n) buf[below(*n)] = interesting[below(sizeof interesting)];
        break;
    case 3: /* insert a token */
    case 4: {
        if (!ntok) break;
        const fz_token_t *t = &fz_tokens[below(ntok)];
        if (*n + t->n > cap) break;
        size_t at = below(*n + 1);
        memmove(buf + at + t->n, buf + at, *n - at);
        memcpy(buf + at, t->p, t->n);
        *n += t->n;
        break;
    }
    case 5: { /* delete a range */
        if (!*n) break;
        size_t at = below(*n), len = 1 + below(*n - at < 16 ? *n - at : 16);
        memmove(buf + at, buf + at + len, *n - at - len);
        *n -= len;
        break;
    }
    case 6: { /* duplicate a range */
        if (!*n) break;
        size_t at = below(*n), len = 1 + below(*n - at < 16 ? *n - at : 16);
        if (*n + len > cap) break;
        size_t to = below(*n + 1);
        uint8_t tmp[16];
        memcpy(tmp, buf + at, len);
        memmove(buf + to + len, buf + to, *n - to);
        memcpy(buf + to, tmp, len);
        *n += len;
        break;
    }
    case 7: { /* splice: our head, another input's tail */
        const input_t *o = &pool[below(pool_n)];
        size_t keep = below(*n + 1), from = below(o->n + 1), take = o->n - from;
        if (keep + take > cap) take = cap - keep;
        memcpy(buf + keep, o->p + from, take);
        *n = keep + take;
        break;
    }
    default: /* truncate */ *n = below(*n + 1); break;
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot read %s: %s\n", name, path, strerror(errno));
        return 1;
    }
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    run_one(buf, n);
    printf("%s: %s (%zu bytes) passes\n", name, path, n);
    return 0;
}

static int write_seeds(const char *dir) {
    mkdir(dir, 0755);
    for (size_t i = 0; i < pool_seeds; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/seed-%03zu", dir, i);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(pool[i].p, 1, pool[i].n, f) != pool[i].n) {
            fprintf(stderr, "%s: cannot write %s\n", name, path);
            if (f) fclose(f);
            return 1;
        }
        fclose(f);
    }
    printf("%s: %zu seeds written to %s\n", name, pool_seeds, dir);
    return 0;
}

int main(int argc, char **argv) {
    const char *slash = strrchr(argv[0], '/');
    name = slash ? slash + 1 : argv[0];
    long iterations = 200000, maxlen = 1024;
    double seconds = 20;
    uint64_t seed = 1;
    const char *seeds_dir = NULL, *filev[64];
    int files = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-n") && v)
            iterations = strtol(v, NULL, 10), i++;
        else if (!strcmp(a, "-t") && v)
            seconds = strtod(v, NULL), i++;
        else if (!strcmp(a, "-s") && v)
            seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "-l") && v)
            maxlen = strtol(v, NULL, 10), i++;
        else if (!strcmp(a, "--write-seeds") && v)
            seeds_dir = v, i++;
        else if (a[0] == '-') {
            fprintf(stderr,
                    "usage: %s [-n ITERATIONS] [-t SECONDS] [-s SEED] [-l MAXLEN] "
                    "[--write-seeds DIR] [FILE...]\n",
                    name);
            return 2;
        } else if (files < 64) {
            filev[files++] = a;
        }
    }
    if (maxlen < 16 || maxlen > (1 << 20)) maxlen = 1024;
    signal(SIGABRT, on_signal);
    signal(SIGSEGV, on_signal);
    signal(SIGBUS, on_signal);
    signal(SIGFPE, on_signal);
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(save_current);

    fz_seeds(pool_add);
    pool_seeds = pool_n;
    if (seeds_dir) return write_seeds(seeds_dir);
    if (files) {
        int rc = 0;
        for (int i = 0; i < files; i++)
            rc |= run_file(filev[i]);
        return rc;
    }

    for (size_t i = 0; i < pool_seeds; i++)
        run_one(pool[i].p, pool[i].n);
    for (size_t i = 0; fz_tokens[i].p; i++)
        run_one((const uint8_t *)fz_tokens[i].p, fz_tokens[i].n);
    rng = seed;
    uint8_t *buf = malloc((size_t)maxlen);
    if (!buf || !pool_n) return 1;
    double t0 = now_s();
    long done = 0;
    for (; done < iterations; done++) {
        if ((done & 255) == 0 && now_s() - t0 > seconds) break;
        size_t n;
        if (below(16) == 0) { /* plain random bytes, short: most end at the first gate */
            n = below(64);
            for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t)next();
        } else {
            const input_t *from = &pool[below(pool_n)];
            n = from->n < (size_t)maxlen ? from->n : (size_t)maxlen;
            memcpy(buf, from->p, n);
            /* mostly one edit: each more makes the input likelier to fail the first gate */
            size_t k = below(4) ? 1 : 2 + below(6);
            for (size_t j = 0; j < k; j++)
                mutate_once(buf, &n, (size_t)maxlen);
        }
        /* Keep some of the inputs that passed the gates (no coverage to choose by: at random),
         * never dropping the seeds. */
        if (run_one(buf, n) == 0 && below(4) == 0) {
            if (pool_n < POOL_MAX) {
                pool_add(buf, n);
            } else {
                size_t at = pool_seeds + below(POOL_MAX - pool_seeds);
                uint8_t *c = malloc(n ? n : 1);
                if (c) {
                    memcpy(c, buf, n);
                    free(pool[at].p);
                    pool[at] = (input_t){c, n};
                }
            }
        }
    }
    printf("%s: %ld inputs in %.1f s (seed %llu, %zu seeds), no property failed\n", name, done,
           now_s() - t0, (unsigned long long)seed, pool_seeds);
    free(buf);
    for (size_t i = 0; i < pool_n; i++)
        free(pool[i].p);
    return 0;
}
