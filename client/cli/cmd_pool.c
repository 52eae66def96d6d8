/* cmd_pool.c - mpb pool: the task pool's workers, functions, callers and running maps as
 * tables (--watch redraws them), and pool map / pool apply, which run functions on its workers
 * from the shell. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "clock.h"
#include "json.h"
#include "mpb/ops.h"

static json_t *pool_stats(void) {
    void *res;
    size_t n;
    int rc = mpb_call(cli, MPB_OP_POOL_STATS, NULL, NULL, 0, 0, &res, &n);
    if (rc) {
        fail(rc, "pool");
        return NULL;
    }
    return take_jansson(res, n);
}

static void bar(FILE *f, double frac, int width) {
    int full = (int)(frac * width + 0.5);
    if (full > width) full = width;
    fputc('[', f);
    for (int i = 0; i < width; i++)
        fputc(i < full ? '#' : '.', f);
    fputc(']', f);
}

static void print_pool(json_t *st, FILE *f) {
    size_t i;
    json_t *w;
    json_t *ws = json_object_get(st, "workers"), *fs = json_object_get(st, "functions"),
           *js = json_object_get(st, "jobs");
    fprintf(f, "WORKERS %zu\n", json_array_size(ws));
    if (json_array_size(ws))
        fprintf(f, "  %-8s %-16s %-8s %-5s %-8s %-8s %-8s %-6s %-6s %-7s %s\n", "SESSION", "HOST",
                "PID", "CONC", "RUNNING", "PREFETCH", "DONE", "FAILED", "STEALS", "RETRIES",
                "FUNCTIONS");
    json_array_foreach(ws, i, w) {
        char fnlist[512] = "";
        size_t k, used = 0;
        json_t *fn;
        json_array_foreach(json_object_get(w, "functions"), k, fn) used +=
            (size_t)snprintf(fnlist + used, used < sizeof fnlist ? sizeof fnlist - used : 0, "%s%s",
                             k ? "," : "", json_string_value(fn));
        fprintf(f, "  %-8lld %-16s %-8lld %-5lld %-8lld %-8lld %-8lld %-6lld %-6lld %-7lld %s\n",
                jint(w, "session"), json_string_value(json_object_get(w, "host")), jint(w, "pid"),
                jint(w, "concurrency"), jint(w, "running"), jint(w, "prefetched"), jint(w, "done"),
                jint(w, "failed"), jint(w, "steals"), jint(w, "retries"), fnlist);
        /* its running tasks with their age: a stuck one stands out */
        json_t *ts = json_object_get(w, "tasks"), *t;
        if (json_array_size(ts)) fprintf(f, "    running:");
        json_array_foreach(ts, k, t) {
            fprintf(f, "%s task %lld (%.1f s)", k ? "," : "",
                    (long long)json_integer_value(json_array_get(t, 0)),
                    (double)json_integer_value(json_array_get(t, 1)) / 1000.0);
        }
        if (json_array_size(ts)) fputc('\n', f);
    }
    fprintf(f, "FUNCTIONS %zu\n", json_array_size(fs));
    if (json_array_size(fs))
        fprintf(f, "  %-20s %-8s %-8s %-8s %-8s %-8s %-10s %-8s %s\n", "NAME", "WORKERS", "QUEUED",
                "PAUSED", "RUNNING", "PREFETCH", "DONE", "FAILED", "CANCELED");
    json_array_foreach(fs, i, w) {
        fprintf(f, "  %-20s %-8lld %-8lld %-8lld %-8lld %-8lld %-10lld %-8lld %lld\n",
                json_string_value(json_object_get(w, "name")), jint(w, "workers"),
                jint(w, "queued"), jint(w, "paused"), jint(w, "running"), jint(w, "prefetched"),
                jint(w, "done"), jint(w, "failed"), jint(w, "canceled"));
    }
    /* one line per caller, however many applies it has out: maps get their own lines below */
    json_t *cs = json_object_get(st, "callers");
    if (json_array_size(cs)) {
        fprintf(f, "CALLERS %zu\n", json_array_size(cs));
        fprintf(f, "  %-8s %-16s %-8s %-8s %-8s %-8s %-12s %s\n", "SESSION", "HOST", "PID",
                "QUEUED", "RUNNING", "HELD", "HELD_BYTES", "STATE");
    }
    json_array_foreach(cs, i, w) {
        fprintf(f, "  %-8lld %-16s %-8lld %-8lld %-8lld %-8lld %-12lld %s\n", jint(w, "session"),
                json_string_value(json_object_get(w, "host")), jint(w, "pid"), jint(w, "queued"),
                jint(w, "running"), jint(w, "held"), jint(w, "held_bytes"),
                json_is_true(json_object_get(w, "paused")) ? "paused (results not collected)"
                                                           : "ok");
    }
    if (json_array_size(js)) fprintf(f, "MAPS %zu\n", json_array_size(js));
    json_array_foreach(js, i, w) {
        long long total = jint(w, "total");
        long long done = jint(w, "done") + jint(w, "failed") + jint(w, "canceled");
        fprintf(f, "  job %-6lld %-14s session %-5lld ", jint(w, "id"),
                json_string_value(json_object_get(w, "function")), jint(w, "session"));
        bar(f, total ? (double)done / (double)total : 0, 30);
        fprintf(f, " %lld/%lld tasks, %.1f s\n", done, total,
                (double)json_integer_value(json_object_get(w, "elapsed_ms")) / 1000.0);
    }
}

static int pool_show(int argc, char **argv) {
    bool watch = false;
    double interval = 1.0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--watch"))
            watch = true;
        else if (!strcmp(argv[i], "--interval") && i + 1 < argc) {
            char *end;
            interval = strtod(argv[++i], &end);
            if (*end || interval < 0.05 || interval > 3600)
                return usage_error("--interval '%s' is not 0.05..3600 seconds", argv[i]);
        } else
            return usage_error("pool: unknown argument '%s'", argv[i]);
    }
    do {
        json_t *st = pool_stats();
        if (!st) return EXIT_FAIL;
        if (opt.json) {
            print_json(st);
        } else {
            /* home and clear, as watch(1) does; a file or pipe gets the tables one after another */
            if (watch && isatty(1)) fputs("\033[H\033[2J", stdout);
            print_pool(st, stdout);
        }
        json_decref(st);
        fflush(stdout);
        if (watch) {
            struct timespec ts = {(time_t)interval,
                                  (long)((interval - (double)(time_t)interval) * 1e9)};
            nanosleep(&ts, NULL);
        }
    } while (watch);
    return 0;
}

/* A JSON argument of the pool commands: the text itself, or all of stdin for "-" (a command
 * line holds at most 128 KiB in one argument). *buf is what to free. */
static int pool_json_arg(const char *text, void **out, size_t *n) {
    if (strcmp(text, "-")) return parse_value(text, out, n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 == cap) {
            if (cap >= (size_t)1 << 30) {
                free(buf);
                report("ETOOBIG", "stdin holds more than 1 GiB of JSON");
                return EXIT_USAGE;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, stdin);
        len += got;
        if (got == 0) break;
    }
    if (!buf) {
        report("ENOMEM", "out of memory reading stdin");
        return EXIT_FAIL;
    }
    buf[len] = 0;
    char err[256];
    int rc = 0;
    if (cli_json_to_msgpack(buf, out, n, err, sizeof err)) {
        report("EUSAGE", "stdin is not JSON: %s", err);
        rc = EXIT_USAGE;
    }
    free(buf);
    return rc;
}

/* mpb pool map --output: each line a task wrote, on stderr, tagged by task and stream, as it
 * comes. A piece that ends mid-line waits for the rest of its line (a stream's pieces come in
 * order; a task writes at most 64 KiB); what is left at the end is printed with a newline. */
typedef struct partial {
    uint64_t task;
    int stream;
    char *text;
    size_t len;
} partial_t;

typedef struct out_state {
    partial_t *v;
    size_t n;
    bool tty; /* a progress bar is on stderr's last line: clear it first */
} out_state_t;

/* One line: what was kept of it (head), then s. */
static void print_line(const out_state_t *o, uint64_t task, int stream, const char *head, size_t hn,
                       const char *s, size_t n) {
    fprintf(stderr, "%s[task %llu %s] %.*s%.*s\n", o->tty ? "\r\033[K" : "",
            (unsigned long long)task, stream == 2 ? "stderr" : "stdout", (int)hn, head ? head : "",
            (int)n, s);
}

static void print_task_output(void *arg, mpb_async_t *a, uint64_t task, int stream,
                              const void *data, size_t len) {
    (void)a;
    out_state_t *o = arg;
    partial_t *pt = NULL;
    for (size_t i = 0; i < o->n && !pt; i++)
        if (o->v[i].task == task && o->v[i].stream == stream) pt = &o->v[i];
    const char *s = data, *end = s + len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        char *grown = NULL;
        if (!nl) { /* the start of a line: kept for the rest */
            if (!pt) {
                partial_t *v = realloc(o->v, (o->n + 1) * sizeof *v);
                if (v) {
                    o->v = v;
                    pt = &v[o->n++];
                    *pt = (partial_t){task, stream, NULL, 0};
                }
            }
            if (pt && (grown = realloc(pt->text, pt->len + n))) {
                memcpy(grown + pt->len, s, n);
                pt->text = grown;
                pt->len += n;
                return;
            }
        }
        print_line(o, task, stream, pt ? pt->text : NULL, pt ? pt->len : 0, s, n);
        if (pt) pt->len = 0;
        s += n + (nl ? 1 : 0);
    }
}

/* Prints the lines left unfinished, and forgets them. */
static void print_partials(out_state_t *o) {
    for (size_t i = 0; i < o->n; i++) {
        if (o->v[i].len)
            print_line(o, o->v[i].task, o->v[i].stream, o->v[i].text, o->v[i].len, "", 0);
        free(o->v[i].text);
    }
    free(o->v);
    *o = (out_state_t){0};
}

static int pool_map(int argc, char **argv) {
    int rc, timeout = MPB_FOREVER;
    if ((rc = take_timeout(&argc, argv, &timeout))) return rc;
    size_t chunksize = 0;
    bool output = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--output")) {
            output = true;
            memmove(argv + i, argv + i + 1, (size_t)(argc - i - 1) * sizeof *argv);
            argc--;
            i--;
            continue;
        }
        if (!strcmp(argv[i], "--chunksize") && i + 1 < argc) {
            int64_t n;
            if (!parse_i64(argv[i + 1], &n) || n < 1)
                return usage_error("--chunksize '%s' is not a positive integer", argv[i + 1]);
            chunksize = (size_t)n;
            memmove(argv + i, argv + i + 2, (size_t)(argc - i - 2) * sizeof *argv);
            argc -= 2;
            i--;
        }
    }
    if (argc != 2)
        return usage_error("pool map takes FN JSON_ARRAY [--chunksize N] [--timeout S] [--output]");
    void *items;
    size_t il;
    if ((rc = pool_json_arg(argv[1], &items, &il))) return rc;
    mpb_mpreader_t r;
    if (mpb_mpr_init(&r, items, il) || mpb_mpr_type(&r) != MPB_MP_ARRAY) {
        free(items);
        return usage_error("pool map: '%.200s' is not a JSON array", argv[1]);
    }
    mpb_pool_t *p;
    if ((rc = mpb_pool_open(cli, &p))) {
        free(items);
        return fail(rc, "pool map");
    }
    mpb_async_t *a;
    bool tty = isatty(2);
    out_state_t outs = {.tty = tty};
    if (output) mpb_pool_set_output(p, print_task_output, &outs);
    rc = mpb_pool_map_async(p, argv[0], items, il, chunksize, NULL, NULL, NULL, &a);
    free(items);
    if (rc) {
        mpb_pool_close(&p);
        return fail(rc, "pool map");
    }
    int64_t t0 = now_ms();
    int64_t end = timeout < 0 ? INT64_MAX : (int64_t)timeout;
    for (;;) {
        int64_t el = now_ms() - t0;
        int step = (int)(end - el < 200 ? (end - el < 0 ? 0 : end - el) : 200);
        int ready = mpb_async_wait(a, step);
        if (tty) {
            uint64_t done, total;
            mpb_async_progress(a, &done, &total);
            fputs("\r", stderr);
            bar(stderr, total ? (double)done / (double)total : 1, 40);
            fprintf(stderr, " %llu/%llu tasks %.1f s", (unsigned long long)done,
                    (unsigned long long)total, (double)el / 1000.0);
        }
        if (ready != 0 || el >= end) break;
    }
    if (tty) fputs("\n", stderr);
    void *res = NULL;
    size_t rl = 0;
    rc = mpb_async_get(a, 0, &res, &rl);
    print_partials(&outs);
    if (rc == MPB_ETIMEDOUT) { /* the library says why ("not ready: ..."); the wait was ours */
        const char *why = mpb_errmsg(cli);
        if (!strncmp(why, "not ready", 9)) why += 9;
        report("ETIMEDOUT", "pool map: timed out after %d ms%s", timeout, why);
        mpb_async_free(&a);
        mpb_pool_close(&p);
        return status_of(rc);
    }
    mpb_async_free(&a);
    mpb_pool_close(&p);
    if (rc) return fail(rc, "pool map");
    rc = print_value(res, rl);
    mpb_free(res);
    return rc;
}

static int pool_apply(int argc, char **argv) {
    int rc, timeout = MPB_FOREVER;
    if ((rc = take_timeout(&argc, argv, &timeout))) return rc;
    bool wait = take_flag(&argc, argv, "--wait");
    bool star = argc == 3 && !strcmp(argv[1], "--args");
    if (argc != 2 && !star)
        return usage_error("pool apply takes FN JSON_VALUE, or FN --args JSON_ARRAY");
    const char *text = argv[argc - 1];
    void *v;
    size_t vn;
    if ((rc = pool_json_arg(text, &v, &vn))) return rc;
    mpb_mpbuf_t b = {0};
    if (!star) mpb_mp_array(&b, 1); /* [value] */
    mpb_mp_raw(&b, v, vn);
    free(v);
    void *args;
    size_t an;
    if ((rc = mpb_mp_take(&b, &args, &an))) return fail(rc, "pool apply");
    mpb_pool_t *p;
    void *res = NULL;
    size_t rl = 0;
    if ((rc = mpb_pool_open(cli, &p))) {
        mpb_free(args);
        return fail(rc, "pool apply");
    }
    rc = pool_apply_wait(p, argv[0], args, an, timeout, wait, &res, &rl);
    mpb_free(args);
    if (rc) {
        mpb_pool_close(&p);
        return rc;
    }
    mpb_pool_close(&p);
    rc = print_value(res, rl);
    mpb_free(res);
    return rc;
}

int cmd_pool(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "map")) return pool_map(argc - 1, argv + 1);
    if (argc >= 1 && !strcmp(argv[0], "apply")) return pool_apply(argc - 1, argv + 1);
    return pool_show(argc, argv);
}
