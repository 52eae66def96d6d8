/* args.c - the arguments of mpb's commands: kind/name, keys and values as JSON, integers,
 * seconds, and the flags (--timeout, --done) taken out of argv wherever they stand. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"

int parse_obj(const char *s, objref_t *o) {
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || (size_t)(slash - s) >= sizeof o->kind || !slash[1])
        return usage_error("'%s' is not kind/name (e.g. dict/users, list/jobs)", s);
    memcpy(o->kind, s, (size_t)(slash - s));
    o->kind[slash - s] = 0;
    o->name = slash + 1;
    return 0;
}

/* parse_obj, for a command that works on one kind only ("put works on queues, not 'dict'"). */
int parse_obj_of(const char *s, const char *kind, const char *what, objref_t *o) {
    int rc = parse_obj(s, o);
    if (rc == 0 && strcmp(o->kind, kind))
        return usage_error("%s works on %ss, not '%s'", what, kind, o->kind);
    return rc;
}

/* what: "value" or "key", for the message. */
static int parse_json_arg(const char *what, const char *text, void **out, size_t *n) {
    char err[256];
    if (cli_json_to_msgpack(text, out, n, err, sizeof err)) {
        report("EUSAGE", "%s '%s' is not JSON: %s", what, text, err);
        return EXIT_USAGE;
    }
    return 0;
}

int parse_value(const char *text, void **out, size_t *n) {
    return parse_json_arg("value", text, out, n);
}

int parse_key(const char *text, void **out, size_t *n) {
    if (opt.key_json) return parse_json_arg("key", text, out, n);
    *n = mpb_pack_str(text, strlen(text), out);
    if (!*out) {
        report("ENOMEM", "out of memory");
        return EXIT_FAIL;
    }
    return 0;
}

bool parse_i64(const char *s, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end) return false;
    *v = x;
    return true;
}

/* Seconds as typed (fractions allowed): the whole text a number >= 0. NaN is refused here,
 * since every comparison with it is false and it would pass any range check after. */
/* N of "mpb CMD ... N": an integer 1..max, else a usage error naming cmd. */
int parse_count(const char *cmd, const char *text, int64_t max, int64_t *n) {
    if (!parse_i64(text, n) || *n < 1 || *n > max)
        return usage_error("%s: N '%s' is not 1..%" PRId64, cmd, text, max);
    return 0;
}

bool parse_seconds(const char *v, double *sec) {
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || isnan(d) || d < 0) return false;
    *sec = d;
    return true;
}

/* Takes "--timeout S" (or --timeout=S) out of argv; *ms stays MPB_FOREVER without it.
 * Stops at "--". The library's timeouts are int milliseconds, so a bound past INT_MAX ms
 * (about 24.8 days, "inf" too) means forever rather than a wrapped, negative or tiny one.
 * Returns 0 or EXIT_USAGE. */
int take_timeout(int *argc, char **argv, int *ms) {
    for (int i = 0; i < *argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        const char *v = NULL;
        int used = 0;
        if (!strcmp(argv[i], "--timeout") && i + 1 < *argc)
            v = argv[i + 1], used = 2;
        else if (!strncmp(argv[i], "--timeout=", 10))
            v = argv[i] + 10, used = 1;
        else if (!strcmp(argv[i], "--timeout"))
            return usage_error("--timeout needs seconds");
        else
            continue;
        double sec;
        if (!parse_seconds(v, &sec))
            return usage_error("--timeout '%s' is not a number of seconds", v);
        double msd = sec * 1000 + 0.5;
        *ms = msd >= (double)INT_MAX + 1.0 ? MPB_FOREVER : (int)msd;
        memmove(argv + i, argv + i + used, (size_t)(*argc - i - used) * sizeof *argv);
        *argc -= used;
        i--;
    }
    return 0;
}

/* Takes a flag without a value (such as --done) out of argv, up to "--"; true if it was there. */
bool take_flag(int *argc, char **argv, const char *flag) {
    bool seen = false;
    for (int i = 0; i < *argc && strcmp(argv[i], "--"); i++) {
        if (strcmp(argv[i], flag)) continue;
        memmove(argv + i, argv + i + 1, (size_t)(*argc - i - 1) * sizeof *argv);
        (*argc)--;
        i--;
        seen = true;
    }
    return seen;
}

/* Reading a whole object that is not there is an error, not an empty answer; so is looking at
 * or finishing a queue that is not there (opening one would make it). what: the command, for
 * the message. */
int must_exist(const char *path, const char *what) {
    void *m;
    size_t n;
    int rc = mpb_obj_describe(cli, path, &m, &n);
    if (rc) return fail(rc, what);
    mpb_free(m);
    return 0;
}

/* The ops that take one count or session id, [uint64 n] (slowlog, queue.peek, session.kill):
 * calls op on obj (NULL: on the broker) and returns what mpb_call() does. */
int call_u64(unsigned op, const char *obj, uint64_t n, void **res, size_t *rn) {
    mpb_mpbuf_t b = {0};
    void *args;
    size_t an;
    mpb_mp_array(&b, 1);
    mpb_mp_u64(&b, n);
    int rc = mpb_mp_take(&b, &args, &an);
    if (rc) return rc;
    rc = mpb_call(cli, op, obj, args, an, 0, res, rn);
    mpb_free(args);
    return rc;
}
