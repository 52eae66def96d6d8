/* snapshot-bench.c - what a snapshot of a big state costs the broker's loop, two ways: the
 * fork that mpbrokerd does (persist_snap.c: the child writes from its copy of memory while the
 * loop goes on) against an incremental scheme that serialises the same state in the loop
 * itself, a slice of a few milliseconds at a time. Run in-process on the broker's own store
 * (mpbcore), with a dict of N keys (16-byte values, as bench/compare's restart rows):
 *
 *   fork:         the loop's stall in fork() (the page tables copied), then the loop writes
 *                 random keys as fast as it can while the child writes the snapshot: the
 *                 longest and the p99 write, and the memory copy-on-write costs (the loop's
 *                 pages copied, and the child's own);
 *   incremental:  the dict serialised into a file in slices of S ms (the loop's stall each
 *                 time), as an in-loop writer would: the slices' count, the longest, the total.
 *
 * Usage: mpb-snapshot-bench [KEYS (1000000)] [DIR (a new one under /tmp)] [WRITES/S (0: as
 *        many as the loop can)]
 * Prints one line per measurement; broker/PERSISTENCE.md has a run of it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"
#include "persist_int.h" /* the snapshot child's pid: this measures the internals */

#define VALUE_LEN 16

static obj_t *dict;
static size_t nkeys;

/* msgpack str "key:%07zu" and bin16 value (seed), as dict.set would store them. */
static dkv_t *make_kv(size_t i, uint32_t seed) {
    uint8_t k[32], v[2 + VALUE_LEN];
    int kl = snprintf((char *)k + 1, sizeof k - 1, "key:%07zu", i);
    k[0] = (uint8_t)(0xa0 | kl);
    v[0] = 0xc4;
    v[1] = VALUE_LEN;
    for (int j = 0; j < VALUE_LEN; j++)
        v[2 + j] = (uint8_t)(seed + (uint32_t)j);
    dkv_t *kv = xmalloc(sizeof *kv + (size_t)kl + 1 + sizeof v);
    kv->klen = (uint32_t)kl + 1;
    kv->vlen = sizeof v;
    memcpy(kv->data, k, kv->klen);
    memcpy(kv->data + kv->klen, v, sizeof v);
    return kv;
}

/* One dict.set of a random existing key, as the handler does it: a new pair in the old's
 * place. */
static void write_one(uint64_t *rng) {
    *rng = *rng * 6364136223846793005u + 1442695040888963407u;
    size_t i = (size_t)(*rng >> 33) % nkeys;
    dkv_t *kv = make_kv(i, (uint32_t)*rng);
    omap_t *m = &dict->u.dict;
    long pos = omap_find(m, kv->data, kv->klen, mpb__hash(kv->data, kv->klen));
    if (pos < 0) fatal("snapshot-bench: key missing");
    free(m->ents[pos].item);
    m->ents[pos].item = kv;
}

/* Private_Dirty of a process in bytes (smaps_rollup), or 0. */
static uint64_t private_dirty(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    uint64_t kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Private_Dirty: %" SCNu64, &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* A bare fork() of this process, the child exiting at once: the loop's stall alone. */
static double bare_fork_ms(void) {
    int64_t t0 = now_ns();
    pid_t pid = fork();
    int64_t t1 = now_ns();
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    return (double)(t1 - t0) / 1e6;
}

static void bench_fork(uint64_t rate) {
    for (int i = 0; i < 3; i++)
        printf("fork: bare fork() of the process: %.2f ms\n", bare_fork_ms());
    uint64_t before = private_dirty(getpid());
    char err[256];
    int64_t t0 = now_ns();
    if (persist_save(err, sizeof err) != 0) fatal(err);
    int64_t t1 = now_ns();
    persist_stats_t st;
    persist_stats(&st);
    /* the loop goes on: random writes, timed one by one, while the child writes */
    size_t cap = 1u << 24, n = 0;
    int64_t *lat = xmalloc(cap * sizeof *lat);
    uint64_t rng = 42, parent_max = 0, child_max = 0;
    pid_t child = g_persist.child;
    int64_t next_sample = now_ms(), sampling = 0, w0 = now_ns();
    while (g_persist.child > 0) {
        if (rate && (double)n >= (double)rate * (double)(now_ns() - w0) / 1e9) {
            usleep(1000); /* the loop waits for its next requests */
            continue;
        }
        for (int k = 0; k < 100; k++) {
            int64_t a = now_ns();
            write_one(&rng);
            if (n < cap) lat[n++] = now_ns() - a;
        }
        if (now_ms() >= next_sample) { /* outside the timed writes */
            int64_t a = now_ns();
            uint64_t p = private_dirty(getpid()), c = private_dirty(child);
            sampling += now_ns() - a;
            if (p > parent_max) parent_max = p;
            if (c > child_max) child_max = c;
            next_sample = now_ms() + 100;
            persist_tick(now_ms());
        }
    }
    persist_stats(&st);
    qsort(lat, n, sizeof *lat, cmp_i64);
    uint64_t after = private_dirty(getpid());
    printf("fork: persist_save (log segment switch + fork): %.2f ms; snapshot written in %" PRId64
           " ms, %" PRIu64 " bytes\n",
           (double)(t1 - t0) / 1e6, st.last_snap_dur_ms, st.snap_bytes);
    printf("fork: %zu writes in the loop meanwhile (%.0f/s, not counting %.0f ms reading "
           "smaps): p50 %.2f us, p99 %.2f us, p99.9 %.2f us, longest %.2f ms\n",
           n, (double)n / ((double)(now_ns() - w0 - sampling) / 1e9), (double)sampling / 1e6,
           (double)lat[n / 2] / 1e3, (double)lat[n * 99 / 100] / 1e3,
           (double)lat[n * 999 / 1000] / 1e3, (double)lat[n - 1] / 1e6);
    /* A page the loop writes while the child lives is copied: the loop gets the copy and the
     * child keeps the original to itself, so the child's private dirty pages are what the
     * copy-on-write costs (plus its own buffer). */
    printf("fork: memory: the loop's private dirty %.1f MiB before, at most %.1f MiB while the "
           "child ran, %.1f MiB after; the child's private dirty (pages copied on write, and its "
           "buffer) at most %.1f MiB\n",
           (double)before / 1048576, (double)parent_max / 1048576, (double)after / 1048576,
           (double)child_max / 1048576);
    free(lat);
}

/* The dict serialised in slices of slice_ms: as an in-loop writer, it stops when its time is
 * up (checked every 256 entries) and goes on at the next turn. */
static void bench_incremental(const char *dir, double slice_ms) {
    char path[4200];
    snprintf(path, sizeof path, "%s/incremental.tmp", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) fatal("snapshot-bench: cannot open the file");
    const omap_t *m = &dict->u.dict;
    mpb__buf_t b = {0};
    size_t i = 0, slices = 0;
    int64_t longest = 0, total = 0, budget = (int64_t)(slice_ms * 1e6);
    int64_t wall0 = now_ns();
    while (i < m->nents) {
        int64_t t0 = now_ns(), t = t0;
        while (i < m->nents && t - t0 < budget) {
            for (size_t end = i + 256; i < m->nents && i < end; i++) {
                const dkv_t *kv = m->ents[i].item;
                if (!kv) continue;
                mpb__w_raw(&b, kv->data, kv->klen + kv->vlen);
            }
            if (b.len >= (1u << 20)) {
                bbuf_ensure(&b);
                if (persist_write_all(fd, b.p, b.len) != 0) fatal("snapshot-bench: write");
                mpb__buf_reset(&b);
            }
            t = now_ns();
        }
        slices++;
        total += t - t0;
        if (t - t0 > longest) longest = t - t0;
    }
    bbuf_ensure(&b);
    if (persist_write_all(fd, b.p, b.len) != 0 || fsync(fd) != 0) fatal("snapshot-bench: write");
    int64_t fs = now_ns();
    close(fd);
    unlink(path);
    mpb__buf_free(&b);
    printf("incremental, slices of %g ms: %zu slices, longest %.2f ms, %.1f ms in the loop in "
           "all (+%.1f ms fsync), %.1f ms from first to last\n",
           slice_ms, slices, (double)longest / 1e6, (double)total / 1e6,
           (double)(now_ns() - fs) / 1e6, (double)(fs - wall0) / 1e6);
}

int main(int argc, char **argv) {
    nkeys = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 1000000;
    uint64_t rate = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
    char dir[4096];
    if (argc > 2 && argv[2][0]) {
        snprintf(dir, sizeof dir, "%s", argv[2]);
        mkdir(dir, 0700);
    } else {
        snprintf(dir, sizeof dir, "/tmp/mpb-snapbench-XXXXXX");
        if (!mkdtemp(dir)) fatal("snapshot-bench: mkdtemp");
    }
    if (nkeys == 0) nkeys = 1;
    log_setup(MPB_LOG_WARN, false);
    if (mpb__hash_init()) fatal("snapshot-bench: no randomness");
    store_init();
    if (persist_open(dir, true, FSYNC_NO, false) != 0) fatal("snapshot-bench: persist_open");
    dict = store_create(KIND_DICT, "bench", 5);
    int64_t t0 = now_ns();
    for (size_t i = 0; i < nkeys; i++) {
        dkv_t *kv = make_kv(i, (uint32_t)i);
        omap_add(&dict->u.dict, kv, mpb__hash(kv->data, kv->klen));
    }
    printf("state: %zu keys of %d-byte values in one dict (%.0f ms to build), %.1f MiB of heap; "
           "files in %s\n",
           nkeys, VALUE_LEN, (double)(now_ns() - t0) / 1e6, (double)mem_used() / 1048576, dir);
    fflush(stdout);
    bench_fork(rate);
    static const double slices[] = {1, 2, 5};
    for (size_t k = 0; k < sizeof slices / sizeof *slices; k++)
        bench_incremental(dir, slices[k]);
    persist_close();
    if (argc <= 2 || !argv[2][0]) { /* the directory made here, and what the bench left in it */
        char path[4200];
        snprintf(path, sizeof path, "%s/snapshot", dir);
        unlink(path);
        for (uint64_t seg = 0; seg <= g_persist.seg; seg++) {
            persist_seg_path(path, sizeof path, seg);
            unlink(path);
        }
        rmdir(dir);
    }
    return 0;
}
