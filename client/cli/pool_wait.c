/* pool_wait.c - the wait of mpb pool apply: a task for a function that no worker serves would
 * wait silently until its timeout, so after a second the CLI asks the broker (pool.stats)
 * whether a worker serves it, and says so: without --wait that ends the command, with it a
 * note goes to stderr and the wait goes on (a worker may be starting). */
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clock.h"
#include "mpb/ops.h"

#define ASK_AFTER_MS 1000

/* true if pool.stats lists a worker serving fn, or cannot be read (then nothing is claimed) */
static bool served(const char *fn) {
    void *res;
    size_t n;
    if (mpb_call(cli, MPB_OP_POOL_STATS, NULL, NULL, 0, 0, &res, &n)) return true;
    json_t *st = to_jansson(res, n);
    mpb_free(res);
    bool yes = false;
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(st, "functions"), i, f) {
        const char *name = json_string_value(json_object_get(f, "name"));
        if (name && !strcmp(name, fn) && json_integer_value(json_object_get(f, "workers")) > 0)
            yes = true;
    }
    json_decref(st);
    return yes;
}

int pool_apply_wait(mpb_pool_t *p, const char *fn, const void *args, size_t alen, int timeout,
                    bool wait, void **res, size_t *rlen) {
    mpb_async_t *a;
    int rc = mpb_pool_apply_async(p, fn, args, alen, NULL, NULL, NULL, &a);
    if (rc) return fail(rc, "pool apply");
    int64_t t0 = now_ms();
    int first = timeout >= 0 && timeout < ASK_AFTER_MS ? timeout : ASK_AFTER_MS;
    if (!mpb_async_wait(a, first) && first == ASK_AFTER_MS && !served(fn)) {
        if (!wait) {
            mpb_async_free(&a);
            report("ENOWORKER",
                   "pool apply: no worker serves '%s' (mpb pool lists the workers; --wait waits "
                   "for one)",
                   fn);
            return EXIT_FAIL;
        }
        if (!opt.json) fprintf(stderr, "mpb: pool apply: no worker serves '%s' yet; waiting\n", fn);
    }
    int left = MPB_FOREVER;
    if (timeout >= 0) {
        int64_t l = timeout - (now_ms() - t0);
        left = l > 0 ? (int)l : 0;
    }
    rc = mpb_async_get(a, left, res, rlen);
    if (rc == MPB_ETIMEDOUT) {
        const char *why = mpb_errmsg(cli); /* "not ready: no worker serves ..." */
        if (!strncmp(why, "not ready", 9)) why += 9;
        report("ETIMEDOUT", "pool apply: timed out after %d ms%s", timeout, why);
        mpb_async_free(&a);
        return EXIT_TIMEOUT;
    }
    mpb_async_free(&a);
    return rc ? fail(rc, "pool apply") : 0;
}
