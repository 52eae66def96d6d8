/* mpb.c - the operator's command line: look at a broker and its objects, and change them.
 * Values typed and printed are JSON (json.c converts); --json makes every output JSON, for
 * scripts. Exit status: 0 done, 1 the operation failed, 2 bad usage, 3 no such key/object (and,
 * with --timeout 0, an empty queue to get from or a full one to put into), 75 timed out. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "json.h"

#include "cli.h"
#include "clock.h"

cli_opt_t opt;
mpb_client_t *cli;
const char *cur_cmd;

static void usage(FILE *f) {
    fprintf(f,
            "usage: mpb [options] COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  info [OBJ]                    broker facts, or one object's (OBJ is kind/name)\n"
            "  ls [PATTERN]                  objects (glob on kind/name or name), with sizes\n"
            "  help [COMMAND]                this text, or one command's (mpb COMMAND --help)\n"
            "  watch [-i S] [-r N] COMMAND [ARGS...]  COMMAND every S seconds (default 1), N times\n"
            "                                (default until stopped); info, ls, get, peek, clients,\n"
            "                                pool\n"
            "  get queue/NAME --done         take an item and mark it done (JoinableQueue)\n"
            "  task-done queue/NAME          one task_done() on a JoinableQueue\n"
            "  peek queue/NAME [N]           the first N items (default 10), none taken\n"
            "  clients                       sessions: host, pid, address, name, age, idle, holds,\n"
            "                                waits\n"
            "  kill SESSION                  end a session as its expiry would\n"
            "  slowlog [N]                   the N (default 10) slowest recent requests\n"
            "  monitor [--values]            the requests the broker serves, as they come\n"
            "  get OBJ [KEY|INDEX]           a dict value, a list item, or the whole object\n"
            "  set dict/NAME KEY VALUE       set a dict key\n"
            "  set list/NAME INDEX VALUE     replace a list item\n"
            "  incr dict/NAME KEY [N]        add N (default 1) to an integer; prints it\n"
            "  del OBJ [KEY|INDEX]           delete a key, a list item, or the whole object\n"
            "  append list/NAME VALUE        append to a list\n"
            "  put queue/NAME VALUE [--timeout S]   put an item (blocks while full)\n"
            "  get queue/NAME [--timeout S]  take an item (blocks while empty)\n"
            "  set event/NAME | clear event/NAME    set or clear an event\n"
            "  wait event/NAME [--timeout S] wait until the event is set\n"
            "  lock lock/NAME [--timeout S] [--conflict-exit-code N] -- COMMAND [ARGS...]\n"
            "                                run COMMAND holding the lock (as flock(1) does)\n"
            "  get value/NAME | set value/NAME VALUE\n"
            "  get namespace/NAME [ATTR] | set namespace/NAME ATTR VALUE\n"
            "  pool [--watch [--interval S]] workers, functions and running maps\n"
            "  pool map FN JSON_ARRAY [--chunksize N] [--timeout S] [--output]   FN over every\n"
            "                                item; --output: what the tasks wrote (workers with\n"
            "                                --forward-output), on stderr as [task N stdout] LINE\n"
            "                                ('-' for JSON from stdin, here and in apply);\n"
            "                                prints the results as a JSON array\n"
            "  pool apply FN JSON_VALUE [--timeout S] [--wait]  FN(JSON_VALUE) on some worker;\n"
            "                                after 1 s with no worker serving FN it fails\n"
            "                                (exit 1), unless --wait says to keep waiting\n"
            "  pool apply FN --args JSON_ARRAY [--timeout S]  FN(*JSON_ARRAY)\n"
            "  ping                          check the broker answers\n"
            "  save                          write a snapshot of the broker's state to its\n"
            "                                data dir now (compacting its log); waits for it\n"
            "\n"
            "VALUEs are JSON text ('42', '\"text\"', '[1,2]', '{\"$bytes\":\"AAE=\"}' for bytes).\n"
            "A KEY is a string as typed, unless --key-json says it is JSON too.\n"
            "--timeout S: seconds (fractions allowed); without it, blocking commands wait\n"
            "forever, as they do for a timeout past 24.8 days (2^31 ms, the library's most).\n"
            "Exit status: 0 done, 1 failed, 2 bad usage, 3 no such key/item/object (with\n"
            "--timeout 0 too: an empty queue for get, a full one for put), 75 timed out\n"
            "(also: the lock was not had in time, unless --conflict-exit-code N says\n"
            "otherwise); mpb lock exits with COMMAND's status, 127 if it cannot be run,\n"
            "and 76 if the lock was lost before COMMAND finished (its session ended: cut\n"
            "off from the broker for longer than the session TTL, or the broker restarted\n"
            "without it), whatever COMMAND's status.\n"
            "With --json, errors are JSON on stdout too:\n"
            "  {\"error\":{\"code\":\"ENOKEY\",\"message\":\"...\",\"op\":\"get\"}}\n"
            "code EUSAGE for bad usage; \"op\" is absent before a command is known.\n"
            "\n"
            "options:\n"
            "  -e, --endpoint EP        broker (env MPB_ENDPOINT, default tcp://127.0.0.1:5555)\n"
            "  -k, --authkey-file PATH  authkey (env MPB_AUTHKEY_FILE, or MPB_AUTHKEY itself)\n"
            "      --json               machine-readable JSON output, errors included\n"
            "      --key-json           KEYs are JSON (for integer or compound keys)\n"
            "      --connect-timeout S  seconds to wait for the broker (default 5)\n"
            "  -h, --help               this text\n"
            "  -V, --version            mpb's version\n"
            "Options may follow the command too (mpb ls --json); '--' ends them.\n"
            "With no COMMAND on a terminal, mpb reads commands at a prompt (with history).\n");
}

/* ---- output ---- */

/* EFULL pairs with EEMPTY: both are "--timeout 0 and the queue could not take or give an item
 * at once", so put and get answer alike (3); with a bound > 0 both time out instead (75). */
static int status_of(int rc) {
    if (rc == MPB_ETIMEDOUT) return EXIT_TIMEOUT;
    return rc == MPB_ENOKEY || rc == MPB_ENOOBJ || rc == MPB_EINDEX || rc == MPB_EEMPTY ||
                   rc == MPB_EFULL
               ? EXIT_NOTFOUND
               : EXIT_FAIL;
}

/* A jansson string of s; bytes that are not UTF-8 (a key or value echoed in a message) become
 * '?', since jansson refuses such strings and the error must still print. */
static json_t *json_text(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s);
    char *t = malloc(n + 1);
    if (!t) return NULL;
    for (size_t i = 0; i <= n; i++)
        t[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    j = json_string(t);
    free(t);
    return j;
}

/* The one shape of every --json error, on stdout: {"error":{"code":..,"message":..,"op":..}},
 * "op" being the command (absent before one is known). */
static void print_json_error(const char *code, const char *msg, const char *op) {
    json_t *e = json_object(), *o = json_object();
    json_object_set_new(e, "code", json_string(code));
    json_object_set_new(e, "message", json_text(msg));
    if (op) json_object_set_new(e, "op", json_text(op));
    json_object_set_new(o, "error", e);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) puts(s);
    free(s);
    json_decref(o);
}

/* A failure found by the CLI itself: "mpb: MESSAGE" on stderr, or the JSON error. */
void report(const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (opt.json) print_json_error(code, msg, cur_cmd);
    else fprintf(stderr, "mpb: %s\n", msg);
}

/* Reports a failed call and returns the exit status for it. */
int fail(int rc, const char *what) {
    const char *msg = cli ? mpb_errmsg(cli) : mpb_strerror(rc);
    if (opt.json) print_json_error(mpb_err_name(rc), msg, what);
    else fprintf(stderr, "mpb: %s: %s\n", what, msg);
    return status_of(rc);
}

/* Bad usage: exit 2; with --json the error code is EUSAGE (the CLI's own, not an MPB_E*). */
int usage_error(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (opt.json) print_json_error("EUSAGE", msg, cur_cmd);
    else fprintf(stderr, "mpb: %s\n(mpb --help for usage)\n", msg);
    return EXIT_USAGE;
}

void print_json(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (s) puts(s);
    free(s);
}

/* Prints one msgpack value as JSON. */
static int print_value(const void *v, size_t n) {
    char *s, err[200];
    if (cli_msgpack_to_json(v, n, 1, &s, err, sizeof err)) {
        report("EPROTO", "cannot show value: %s", err);
        return EXIT_FAIL;
    }
    puts(s);
    free(s);
    return 0;
}

json_t *to_jansson(const void *v, size_t n) {
    char err[200];
    json_t *j = cli_msgpack_to_jansson(v, n, err, sizeof err);
    return j ? j : json_string("<unprintable>");
}

/* ---- arguments ---- */

int parse_obj(const char *s, objref_t *o) {
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || (size_t)(slash - s) >= sizeof o->kind || !slash[1])
        return usage_error("'%s' is not kind/name (e.g. dict/users, list/jobs)", s);
    memcpy(o->kind, s, (size_t)(slash - s));
    o->kind[slash - s] = 0;
    o->name = slash + 1;
    return 0;
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

static int parse_value(const char *text, void **out, size_t *n) {
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

static bool parse_i64(const char *s, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end) return false;
    *v = x;
    return true;
}

/* ---- connecting ---- */

/* Seconds as typed (fractions allowed): the whole text a number >= 0. NaN is refused here,
 * since every comparison with it is false and it would pass any range check after. */
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
static int take_timeout(int *argc, char **argv, int *ms) {
    for (int i = 0; i < *argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        const char *v = NULL;
        int used = 0;
        if (!strcmp(argv[i], "--timeout") && i + 1 < *argc) v = argv[i + 1], used = 2;
        else if (!strncmp(argv[i], "--timeout=", 10)) v = argv[i] + 10, used = 1;
        else if (!strcmp(argv[i], "--timeout")) return usage_error("--timeout needs seconds");
        else continue;
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

static bool want_heartbeat;

static int connect_broker(void) {
    void *key;
    size_t keylen;
    char err[300];
    int rc = mpb_authkey_load(opt.keyfile, &key, &keylen, err, sizeof err);
    if (rc) {
        if (opt.json) print_json_error(mpb_err_name(rc), err, "connect");
        else fprintf(stderr, "mpb: %s\n", err);
        return EXIT_FAIL;
    }
    if (err[0]) fprintf(stderr, "mpb: warning: %s\n", err);
    mpb_options_t o;
    mpb_options_init(&o);
    o.connect_timeout_ms = opt.connect_timeout_ms;
    o.name = "mpb";
    o.no_heartbeat_thread = !want_heartbeat;
    rc = mpb_connect(opt.endpoint, key, keylen, &o, &cli);
    memset(key, 0, keylen);
    mpb_free(key);
    if (rc) return fail(rc, "connect");
    return 0;
}

/* ---- commands ---- */

static const char *const info_fields[] = {"version", "uptime_s", "pid", "clients", "sessions",
                                          "objects", "memory", "anonymous", "refs", "encryption",
                                          NULL};

static long long jint(const json_t *o, const char *key);

/* The "persist" line of mpb info: the fsync mode, the log, the last snapshot. */
static void print_persist(const json_t *p) {
    if (!json_is_object(p)) return;
    if (!json_is_true(json_object_get(p, "enabled"))) {
        printf("%-10s off\n", "persist");
        return;
    }
    const json_t *mode = json_object_get(p, "fsync");
    printf("%-10s fsync %s, log %lld bytes, snapshot %lld bytes", "persist",
           json_is_string(mode) ? json_string_value(mode) : "?", jint(p, "log_bytes"),
           jint(p, "snapshot_bytes"));
    if (jint(p, "last_snapshot_ms") > 0)
        printf(" (written in %lld ms)", jint(p, "last_snapshot_duration_ms"));
    if (jint(p, "last_fsync_ms") > 0) {
        long long now = wall_ms();
        printf(", last fsync %.1f s ago", (double)(now - jint(p, "last_fsync_ms")) / 1000.0);
    }
    if (json_is_true(json_object_get(p, "snapshot_in_progress"))) printf(", snapshot running");
    putchar('\n');
}

static int cmd_info(int argc, char **argv) {
    void *m;
    size_t n;
    int rc;
    if (argc > 1) return usage_error("info takes at most one object, got '%s'", argv[1]);
    if (argc == 1) {
        objref_t o;
        if ((rc = parse_obj(argv[0], &o))) return rc;
        rc = mpb_obj_describe(cli, argv[0], &m, &n);
    } else {
        rc = mpb_broker_info(cli, &m, &n);
    }
    if (rc) return fail(rc, "info");
    json_t *j = to_jansson(m, n);
    mpb_free(m);
    if (opt.json) {
        print_json(j);
    } else if (argc == 0) {
        for (int i = 0; info_fields[i]; i++) {
            json_t *v = json_object_get(j, info_fields[i]);
            char *s = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            if (s && json_is_string(v)) printf("%-10s %s\n", info_fields[i], json_string_value(v));
            else if (s) printf("%-10s %s\n", info_fields[i], s);
            free(s);
        }
        print_persist(json_object_get(j, "persistence"));
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_PRESERVE_ORDER);
            printf("%-10s %s\n", k, json_is_string(v) ? json_string_value(v) : s);
            free(s);
        }
    }
    json_decref(j);
    return 0;
}

static int cmd_ping(int argc, char **argv) {
    (void)argv;
    if (argc) return usage_error("ping takes no arguments");
    int rc = mpb_call(cli, 1, NULL, NULL, 0, 0, NULL, NULL);
    if (rc) return fail(rc, "ping");
    if (opt.json) puts("{\"ok\":true}");
    else puts("pong");
    return 0;
}

static int cmd_ls(int argc, char **argv) {
    if (argc > 1) return usage_error("ls takes at most one pattern, got '%s'", argv[1]);
    const char *pat = argc ? argv[0] : NULL;
    uint64_t cursor = 0;
    mpb_obj_info_t page[200];
    json_t *all = opt.json ? json_array() : NULL;
    do {
        size_t n;
        int rc = mpb_objects(cli, pat, &cursor, page, 200, &n);
        if (rc) {
            json_decref(all);
            return fail(rc, "ls");
        }
        for (size_t i = 0; i < n; i++) {
            if (all)
                json_array_append_new(all, json_pack("{s:s,s:s,s:I}", "kind", page[i].kind,
                                                     "name", page[i].name,
                                                     "size", (json_int_t)page[i].size));
            else
                printf("%s/%s\t%" PRIu64 "\n", page[i].kind, page[i].name, page[i].size);
        }
    } while (cursor);
    if (all) {
        print_json(all);
        json_decref(all);
    }
    return 0;
}

/* The whole dict: a JSON object when every key is a UTF-8 string (a NUL inside included:
 * "a\u0000b"); otherwise an array of [key, value] pairs, each key as its JSON value (5, [1,2],
 * {"$bytes":..} for bin or a str that is not UTF-8), so that keys 5 and "5" both survive. Either
 * way every key shows once, in insertion order. */
static int get_dict_all(mpb_dict_t *d) {
    json_t *pairs = json_array();
    bool all_str = true;
    uint64_t cursor = 0;
    do {
        void *pg;
        size_t pl, n;
        int rc = mpb_dict_scan(d, MPB_SCAN_ITEMS, &cursor, 1000, &pg, &pl, &n);
        if (rc) {
            json_decref(pairs);
            return fail(rc, "get");
        }
        json_t *arr = to_jansson(pg, pl);
        mpb_free(pg);
        size_t i;
        json_t *pair;
        json_array_foreach(arr, i, pair) {
            if (!json_is_string(json_array_get(pair, 0))) all_str = false;
            json_array_append(pairs, pair);
        }
        json_decref(arr);
    } while (cursor);
    if (all_str) {
        json_t *obj = json_object();
        size_t i;
        json_t *pair;
        json_array_foreach(pairs, i, pair) {
            json_t *k = json_array_get(pair, 0); /* length-aware: a key may hold a NUL */
            json_object_setn(obj, json_string_value(k), json_string_length(k),
                             json_array_get(pair, 1));
        }
        print_json(obj);
        json_decref(obj);
    } else {
        print_json(pairs);
    }
    json_decref(pairs);
    return 0;
}

static int get_list_all(mpb_list_t *l) {
    json_t *arr = json_array();
    int64_t start = 0;
    for (;;) {
        void *items;
        size_t il, n;
        int rc = mpb_list_slice(l, start, INT64_MAX, 1000, &items, &il, &n);
        if (rc) {
            json_decref(arr);
            return fail(rc, "get");
        }
        json_t *page = to_jansson(items, il);
        mpb_free(items);
        json_array_extend(arr, page);
        json_decref(page);
        if (n == 0) break;
        start += (int64_t)n;
    }
    print_json(arr);
    json_decref(arr);
    return 0;
}

/* Reading a whole object that is not there is an error, not an empty answer. */
static int must_exist(const char *path) {
    void *m;
    size_t n;
    int rc = mpb_obj_describe(cli, path, &m, &n);
    if (rc) return fail(rc, "get");
    mpb_free(m);
    return 0;
}

/* Takes a flag without a value (such as --done) out of argv, up to "--"; true if it was there. */
static bool take_flag(int *argc, char **argv, const char *flag) {
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

/* A get that would wait forever on a terminal says so first, so an empty queue does not look
 * like a hung command; an item already there is taken without a word. */
static int queue_get_told(mpb_queue_t *q, const char *path, void **v, size_t *vn, int timeout) {
    if (timeout != MPB_FOREVER || opt.json || !isatty(2)) return mpb_queue_get(q, v, vn, timeout);
    int rc = mpb_queue_get(q, v, vn, MPB_NOWAIT);
    if (rc != MPB_EEMPTY) return rc;
    fprintf(stderr, "mpb: waiting for an item on %s (Ctrl-C to stop; --timeout S bounds the "
                    "wait)\n", path);
    return mpb_queue_get(q, v, vn, timeout);
}

/* The name of a msgpack value's type, from its first byte, for the key hint. */
static const char *mp_type_name(uint8_t b) {
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) return "integer";
    if (b == 0xca || b == 0xcb) return "number";
    if (b == 0xc0) return "null";
    if (b == 0xc2 || b == 0xc3) return "boolean";
    if ((b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd) return "array";
    if ((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf) return "object";
    return NULL; /* a string, bytes or ext: typed as a string key already */
}

/* Keys as a newcomer types them: "5" was looked up as the string "5"; if the dict has no such
 * string but holds the key that the text means as JSON (the integer 5, null, [1,2]...), the
 * error says so and names --key-json. It never matches that key on its own: with both "5" and 5
 * possible in one dict, a guess would read or delete the wrong entry. Returns true if it
 * reported (exit 3), false if the plain "no such key" stands. */
static bool key_hint(mpb_dict_t *d, const char *path, const char *text, const char *what) {
    if (opt.key_json) return false;
    void *k, *v;
    size_t kn, vn;
    char err[64];
    if (cli_json_to_msgpack(text, &k, &kn, err, sizeof err)) return false;
    const char *type = kn ? mp_type_name(((const uint8_t *)k)[0]) : NULL;
    int rc = type ? mpb_dict_get(d, k, kn, &v, &vn) : MPB_ENOKEY;
    free(k);
    if (rc) return false;
    mpb_free(v);
    report("ENOKEY",
           "%s: no string key \"%s\" in %s, but the %s key %s exists: name it with --key-json "
           "(mpb --key-json %s %s '%s')",
           what, text, path, type, text, what, path, text);
    return true;
}

static int cmd_get(int argc, char **argv) {
    objref_t o;
    int rc, timeout = MPB_FOREVER;
    if ((rc = take_timeout(&argc, argv, &timeout))) return rc;
    bool done = take_flag(&argc, argv, "--done");
    if (argc < 1 || argc > 2) return usage_error("get takes OBJ [KEY|INDEX]");
    if ((rc = parse_obj(argv[0], &o))) return rc;
    if (done && strcmp(o.kind, "queue"))
        return usage_error("get --done works on queues (a JoinableQueue's task_done)");
    void *v = NULL, *k = NULL;
    size_t vn, kn;
    if (!strcmp(o.kind, "queue")) {
        mpb_queue_t *q;
        if (argc != 1) return usage_error("get queue/NAME takes no key");
        if ((rc = mpb_queue_open(cli, o.name, -1, -1, &q))) return fail(rc, "get");
        rc = queue_get_told(q, argv[0], &v, &vn, timeout);
        if (rc == 0 && done) rc = mpb_queue_task_done(q);
        mpb_queue_close(&q);
    } else if (!strcmp(o.kind, "value")) {
        mpb_value_t *x;
        if (argc != 1) return usage_error("get value/NAME takes no key");
        if (!(rc = mpb_value_open(cli, o.name, NULL, 0, &x))) rc = mpb_value_get(x, &v, &vn);
        mpb_value_close(&x);
    } else if (!strcmp(o.kind, "namespace")) {
        mpb_namespace_t *ns;
        if ((rc = mpb_namespace_open(cli, o.name, &ns))) return fail(rc, "get");
        if (argc == 2) rc = mpb_namespace_get(ns, argv[1], &v, &vn);
        else rc = mpb_namespace_list(ns, &v, &vn);
        mpb_namespace_close(&ns);
    } else if (!strcmp(o.kind, "dict")) {
        mpb_dict_t *d;
        if (argc == 1 && (rc = must_exist(argv[0]))) return rc;
        if ((rc = mpb_dict_attach(cli, o.name, &d))) return fail(rc, "get");
        if (argc == 1) {
            rc = get_dict_all(d);
            mpb_dict_close(&d);
            return rc;
        }
        if ((rc = parse_key(argv[1], &k, &kn))) {
            mpb_dict_close(&d);
            return rc;
        }
        rc = mpb_dict_get(d, k, kn, &v, &vn);
        mpb_free(k);
        if (rc == MPB_ENOKEY && key_hint(d, argv[0], argv[1], "get")) rc = EXIT_NOTFOUND;
        mpb_dict_close(&d);
        if (rc == EXIT_NOTFOUND) return rc;
    } else if (!strcmp(o.kind, "list")) {
        mpb_list_t *l;
        if (argc == 1 && (rc = must_exist(argv[0]))) return rc;
        if ((rc = mpb_list_attach(cli, o.name, &l))) return fail(rc, "get");
        if (argc == 1) {
            rc = get_list_all(l);
            mpb_list_close(&l);
            return rc;
        }
        int64_t i;
        if (!parse_i64(argv[1], &i)) {
            mpb_list_close(&l);
            return usage_error("list index '%s' is not an integer", argv[1]);
        }
        rc = mpb_list_get(l, i, &v, &vn);
        mpb_list_close(&l);
    } else {
        return usage_error("get: cannot get from '%s' (dict, list, queue, value, namespace)",
                           o.kind);
    }
    if (rc) return fail(rc, "get");
    rc = print_value(v, vn);
    mpb_free(v);
    return rc;
}

static int event_cmd(const char *what, int argc, char **argv);

static int cmd_set(int argc, char **argv) {
    objref_t o;
    int rc;
    if (argc >= 1 && !strncmp(argv[0], "event/", 6)) return event_cmd("set", argc, argv);
    if (argc == 2 && !strncmp(argv[0], "value/", 6)) {
        if ((rc = parse_obj(argv[0], &o))) return rc;
        void *v;
        size_t vn;
        if ((rc = parse_value(argv[1], &v, &vn))) return rc;
        mpb_value_t *x;
        if (!(rc = mpb_value_open(cli, o.name, NULL, 0, &x))) rc = mpb_value_set(x, v, vn);
        mpb_value_close(&x);
        free(v);
        if (rc) return fail(rc, "set");
        if (opt.json) puts("{\"ok\":true}");
        return 0;
    }
    if (argc != 3) return usage_error("set takes OBJ KEY VALUE");
    if ((rc = parse_obj(argv[0], &o))) return rc;
    void *v, *k;
    size_t vn, kn;
    if (!strcmp(o.kind, "namespace")) {
        if ((rc = parse_value(argv[2], &v, &vn))) return rc;
        mpb_namespace_t *ns;
        if (!(rc = mpb_namespace_open(cli, o.name, &ns))) rc = mpb_namespace_set(ns, argv[1], v, vn);
        mpb_namespace_close(&ns);
        free(v);
        if (rc) return fail(rc, "set");
        if (opt.json) puts("{\"ok\":true}");
        return 0;
    }
    if ((rc = parse_value(argv[2], &v, &vn))) return rc;
    if (!strcmp(o.kind, "dict")) {
        mpb_dict_t *d;
        if ((rc = parse_key(argv[1], &k, &kn))) {
            free(v);
            return rc;
        }
        if (!(rc = mpb_dict_open(cli, o.name, &d))) rc = mpb_dict_set(d, k, kn, v, vn);
        mpb_dict_close(&d);
        free(k);
    } else if (!strcmp(o.kind, "list")) {
        int64_t i;
        mpb_list_t *l;
        if (!parse_i64(argv[1], &i)) {
            free(v);
            return usage_error("list index '%s' is not an integer", argv[1]);
        }
        if (!(rc = mpb_list_open(cli, o.name, &l))) rc = mpb_list_set(l, i, v, vn);
        mpb_list_close(&l);
    } else {
        free(v);
        return usage_error("set: unknown kind '%s' (dict or list)", o.kind);
    }
    free(v);
    if (rc) return fail(rc, "set");
    if (opt.json) puts("{\"ok\":true}");
    return 0;
}

static int cmd_incr(int argc, char **argv) {
    objref_t o;
    int rc;
    int64_t by = 1, result;
    if (argc < 2 || argc > 3) return usage_error("incr takes dict/NAME KEY [N]");
    if ((rc = parse_obj(argv[0], &o))) return rc;
    if (strcmp(o.kind, "dict")) return usage_error("incr works on dicts, not '%s'", o.kind);
    if (argc == 3 && !parse_i64(argv[2], &by))
        return usage_error("increment '%s' is not an integer", argv[2]);
    void *k;
    size_t kn;
    if ((rc = parse_key(argv[1], &k, &kn))) return rc;
    mpb_dict_t *d;
    if (!(rc = mpb_dict_open(cli, o.name, &d))) rc = mpb_dict_incr(d, k, kn, by, &result);
    mpb_dict_close(&d);
    free(k);
    if (rc) return fail(rc, "incr");
    printf("%" PRId64 "\n", result);
    return 0;
}

static int cmd_del(int argc, char **argv) {
    objref_t o;
    int rc;
    if (argc < 1 || argc > 2) return usage_error("del takes OBJ [KEY|INDEX]");
    if ((rc = parse_obj(argv[0], &o))) return rc;
    if (argc == 1) {
        rc = mpb_obj_delete(cli, argv[0]);
    } else if (!strcmp(o.kind, "dict")) {
        void *k;
        size_t kn;
        mpb_dict_t *d;
        if ((rc = parse_key(argv[1], &k, &kn))) return rc;
        if (!(rc = mpb_dict_attach(cli, o.name, &d))) rc = mpb_dict_del(d, k, kn);
        if (rc == MPB_ENOKEY && key_hint(d, argv[0], argv[1], "del")) rc = EXIT_NOTFOUND;
        mpb_dict_close(&d);
        free(k);
        if (rc == EXIT_NOTFOUND) return rc;
    } else if (!strcmp(o.kind, "list")) {
        int64_t i;
        mpb_list_t *l;
        void *v;
        size_t vn;
        if (!parse_i64(argv[1], &i)) return usage_error("list index '%s' is not an integer", argv[1]);
        if (!(rc = mpb_list_attach(cli, o.name, &l)) && !(rc = mpb_list_pop(l, i, &v, &vn)))
            mpb_free(v);
        mpb_list_close(&l);
    } else {
        return usage_error("del: unknown kind '%s' (dict or list)", o.kind);
    }
    if (rc) return fail(rc, "del");
    if (opt.json) puts("{\"ok\":true}");
    return 0;
}

static int cmd_append(int argc, char **argv) {
    objref_t o;
    int rc;
    if (argc != 2) return usage_error("append takes list/NAME VALUE");
    if ((rc = parse_obj(argv[0], &o))) return rc;
    if (strcmp(o.kind, "list")) return usage_error("append works on lists, not '%s'", o.kind);
    void *v;
    size_t vn;
    if ((rc = parse_value(argv[1], &v, &vn))) return rc;
    mpb_list_t *l;
    if (!(rc = mpb_list_open(cli, o.name, &l))) rc = mpb_list_append(l, v, vn);
    mpb_list_close(&l);
    free(v);
    if (rc) return fail(rc, "append");
    if (opt.json) puts("{\"ok\":true}");
    return 0;
}

static int cmd_put(int argc, char **argv) {
    objref_t o;
    int rc, timeout = MPB_FOREVER;
    if ((rc = take_timeout(&argc, argv, &timeout))) return rc;
    if (argc != 2) return usage_error("put takes queue/NAME VALUE [--timeout S]");
    if ((rc = parse_obj(argv[0], &o))) return rc;
    if (strcmp(o.kind, "queue")) return usage_error("put works on queues, not '%s'", o.kind);
    void *v;
    size_t vn;
    if ((rc = parse_value(argv[1], &v, &vn))) return rc;
    mpb_queue_t *q;
    if (!(rc = mpb_queue_open(cli, o.name, -1, -1, &q))) rc = mpb_queue_put(q, v, vn, timeout);
    mpb_queue_close(&q);
    free(v);
    if (rc) return fail(rc, "put");
    if (opt.json) puts("{\"ok\":true}");
    return 0;
}

/* set / clear / wait on an event */
static int event_cmd(const char *what, int argc, char **argv) {
    objref_t o;
    int rc, timeout = MPB_FOREVER;
    if (!strcmp(what, "wait") && (rc = take_timeout(&argc, argv, &timeout))) return rc;
    if (argc != 1) return usage_error("%s takes event/NAME", what);
    if ((rc = parse_obj(argv[0], &o))) return rc;
    if (strcmp(o.kind, "event")) return usage_error("%s works on events, not '%s'", what, o.kind);
    mpb_event_t *e;
    if ((rc = mpb_event_open(cli, o.name, &e))) return fail(rc, what);
    if (!strcmp(what, "set")) rc = mpb_event_set(e);
    else if (!strcmp(what, "clear")) rc = mpb_event_clear(e);
    else rc = mpb_event_wait(e, timeout);
    mpb_event_close(&e);
    if (rc < 0) return fail(rc, what);
    if (!strcmp(what, "wait") && rc == 0) {
        if (opt.json) puts("{\"set\":false}");
        else fprintf(stderr, "mpb: wait: event/%s not set within the timeout\n", o.name);
        return EXIT_TIMEOUT;
    }
    if (opt.json) puts(strcmp(what, "wait") ? "{\"ok\":true}" : "{\"set\":true}");
    return 0;
}

static int cmd_clear(int argc, char **argv) {
    return event_cmd("clear", argc, argv);
}

static int cmd_wait(int argc, char **argv) {
    return event_cmd("wait", argc, argv);
}

static pid_t lock_child;
#define LOCK_LOST_EXIT 76 /* mpb lock: the lock was lost before the command finished */

static void forward_signal(int sig) {
    if (lock_child > 0) kill(lock_child, sig);
}

/* mpb lock lock/NAME [--timeout S] [--conflict-exit-code N] -- COMMAND [ARGS...]: the session
 * heartbeats while COMMAND runs, so a long command keeps the lock; if this process dies, the
 * broker releases the lock at the session's TTL. */
static int cmd_lock(int argc, char **argv) {
    objref_t o;
    int rc, timeout = MPB_FOREVER, conflict = EXIT_TIMEOUT;
    if ((rc = take_timeout(&argc, argv, &timeout))) return rc;
    int dd = -1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            dd = i;
            break;
        }
        if (!strcmp(argv[i], "--conflict-exit-code") && i + 1 < argc) {
            int64_t n;
            if (!parse_i64(argv[i + 1], &n) || n < 0 || n > 255)
                return usage_error("--conflict-exit-code '%s' is not 0..255", argv[i + 1]);
            conflict = (int)n;
            memmove(argv + i, argv + i + 2, (size_t)(argc - i - 2) * sizeof *argv);
            argc -= 2;
            i--;
        }
    }
    if (dd != 1 || dd + 1 >= argc)
        return usage_error("lock takes lock/NAME [--timeout S] -- COMMAND [ARGS...]");
    if ((rc = parse_obj(argv[0], &o))) return rc;
    bool re = !strcmp(o.kind, "rlock");
    if (strcmp(o.kind, "lock") && !re) return usage_error("lock works on locks, not '%s'", o.kind);
    mpb_lock_t *l;
    rc = re ? mpb_rlock_open(cli, o.name, &l) : mpb_lock_open(cli, o.name, &l);
    if (rc) return fail(rc, "lock");
    uint64_t fence = 0;
    rc = mpb_lock_acquire(l, timeout, &fence);
    if (rc == MPB_ETIMEDOUT) {
        report("ETIMEDOUT", "lock: %s not acquired within the timeout: %s", argv[0],
               mpb_errmsg(cli));
        mpb_lock_close(&l);
        return conflict;
    }
    if (rc) {
        mpb_lock_close(&l);
        return fail(rc, "lock");
    }
    char fs[32];
    snprintf(fs, sizeof fs, "%llu", (unsigned long long)fence);
    setenv("MPB_FENCE", fs, 1); /* the command can hand its token to what it protects */
    fflush(stdout);
    fflush(stderr);
    /* Handlers before fork, so no signal falls between; exec resets them in the child. The
     * child sends exec's errno up a close-on-exec pipe and the parent reports it: the child
     * must not format JSON (malloc) while the heartbeat thread may hold the allocator. */
    struct sigaction sa = {0};
    sa.sa_handler = forward_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    int ep[2] = {-1, -1};
    if (pipe(ep) == 0) {
        fcntl(ep[0], F_SETFD, FD_CLOEXEC);
        fcntl(ep[1], F_SETFD, FD_CLOEXEC);
    }
    lock_child = fork();
    if (lock_child == 0) {
        execvp(argv[dd + 1], argv + dd + 1);
        int e = errno;
        ssize_t k = ep[1] >= 0 ? write(ep[1], &e, sizeof e) : 0;
        (void)k; /* nothing more to do if even that fails */
        _exit(127);
    }
    if (ep[1] >= 0) close(ep[1]);
    int status = 1, exec_errno = 0;
    if (lock_child < 0) {
        report("ENOMEM", "lock: fork: %s", strerror(errno));
    } else {
        ssize_t got;
        while ((got = read(ep[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {
        } /* bounded: EOF comes at exec or exit */
        if (got != (ssize_t)sizeof exec_errno) exec_errno = 0;
        int st = 0;
        pid_t w;
        while ((w = waitpid(lock_child, &st, 0)) < 0 && errno == EINTR) {
        }
        if (w < 0) status = 1;
        else status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (exec_errno)
            report("EINVAL", "lock: cannot run %s: %s", argv[dd + 1], strerror(exec_errno));
    }
    if (ep[0] >= 0) close(ep[0]);
    rc = mpb_lock_release(l);
    if (rc == MPB_ESESSION || rc == MPB_ENOTOWNER) {
        /* someone else may have held it meanwhile: what COMMAND did was not protected */
        report(mpb_err_name(rc), "lock: %s was lost before %s finished: %s", argv[0], argv[dd + 1],
               mpb_errmsg(cli));
        status = LOCK_LOST_EXIT;
    } else if (rc) {
        report(mpb_err_name(rc), "lock: release of %s: %s", argv[0], mpb_errmsg(cli));
    }
    mpb_lock_close(&l);
    return status;
}

/* ---- pool ---- */

static json_t *pool_stats(void) {
    void *res;
    size_t n;
    int rc = mpb_call(cli, 198 /* pool.stats */, NULL, NULL, 0, 0, &res, &n);
    if (rc) {
        fail(rc, "pool");
        return NULL;
    }
    json_t *j = to_jansson(res, n);
    mpb_free(res);
    return j;
}

static void bar(FILE *f, double frac, int width) {
    int full = (int)(frac * width + 0.5);
    if (full > width) full = width;
    fputc('[', f);
    for (int i = 0; i < width; i++) fputc(i < full ? '#' : '.', f);
    fputc(']', f);
}

/* An integer field of a JSON object from pool.stats, for the table rows. */
static long long jint(const json_t *o, const char *key) {
    return (long long)json_integer_value(json_object_get(o, key));
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
        json_array_foreach(json_object_get(w, "functions"), k, fn) used += (size_t)snprintf(
            fnlist + used, used < sizeof fnlist ? sizeof fnlist - used : 0, "%s%s", k ? "," : "",
            json_string_value(fn));
        fprintf(f, "  %-8lld %-16s %-8lld %-5lld %-8lld %-8lld %-8lld %-6lld %-6lld %-7lld %s\n",
                jint(w, "session"),
                json_string_value(json_object_get(w, "host")),
                jint(w, "pid"),
                jint(w, "concurrency"),
                jint(w, "running"),
                jint(w, "prefetched"),
                jint(w, "done"),
                jint(w, "failed"),
                jint(w, "steals"),
                jint(w, "retries"), fnlist);
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
        fprintf(f, "  %-20s %-8s %-8s %-8s %-8s %-8s %-10s %-8s %s\n", "NAME", "WORKERS",
                "QUEUED", "PAUSED", "RUNNING", "PREFETCH", "DONE", "FAILED", "CANCELED");
    json_array_foreach(fs, i, w) {
        fprintf(f, "  %-20s %-8lld %-8lld %-8lld %-8lld %-8lld %-10lld %-8lld %lld\n",
                json_string_value(json_object_get(w, "name")),
                jint(w, "workers"),
                jint(w, "queued"),
                jint(w, "paused"),
                jint(w, "running"),
                jint(w, "prefetched"),
                jint(w, "done"),
                jint(w, "failed"),
                jint(w, "canceled"));
    }
    /* one line per caller, however many applies it has out: maps get their own lines below */
    json_t *cs = json_object_get(st, "callers");
    if (json_array_size(cs)) {
        fprintf(f, "CALLERS %zu\n", json_array_size(cs));
        fprintf(f, "  %-8s %-16s %-8s %-8s %-8s %-8s %-12s %s\n", "SESSION", "HOST", "PID", "QUEUED",
                "RUNNING", "HELD", "HELD_BYTES", "STATE");
    }
    json_array_foreach(cs, i, w) {
        fprintf(f, "  %-8lld %-16s %-8lld %-8lld %-8lld %-8lld %-12lld %s\n",
                jint(w, "session"),
                json_string_value(json_object_get(w, "host")),
                jint(w, "pid"),
                jint(w, "queued"),
                jint(w, "running"),
                jint(w, "held"),
                jint(w, "held_bytes"),
                json_is_true(json_object_get(w, "paused")) ? "paused (results not collected)"
                                                            : "ok");
    }
    if (json_array_size(js)) fprintf(f, "MAPS %zu\n", json_array_size(js));
    json_array_foreach(js, i, w) {
        long long total = jint(w, "total");
        long long done = jint(w, "done") +
                         jint(w, "failed") +
                         jint(w, "canceled");
        fprintf(f, "  job %-6lld %-14s session %-5lld ",
                jint(w, "id"),
                json_string_value(json_object_get(w, "function")),
                jint(w, "session"));
        bar(f, total ? (double)done / (double)total : 0, 30);
        fprintf(f, " %lld/%lld tasks, %.1f s\n", done, total,
                (double)json_integer_value(json_object_get(w, "elapsed_ms")) / 1000.0);
    }
}

static int pool_show(int argc, char **argv) {
    bool watch = false;
    double interval = 1.0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--watch")) watch = true;
        else if (!strcmp(argv[i], "--interval") && i + 1 < argc) {
            char *end;
            interval = strtod(argv[++i], &end);
            if (*end || interval < 0.05 || interval > 3600)
                return usage_error("--interval '%s' is not 0.05..3600 seconds", argv[i]);
        } else return usage_error("pool: unknown argument '%s'", argv[i]);
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
            struct timespec ts = {(time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9)};
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

/* mpb pool map --output: each line a task wrote, on stderr, tagged by task and stream. A
 * partial last line gets its newline. */
static void print_task_output(void *arg, mpb_async_t *a, uint64_t task, int stream,
                              const void *data, size_t len) {
    (void)arg;
    (void)a;
    const char *s = data, *end = s + len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        fprintf(stderr, "[task %llu %s] %.*s\n", (unsigned long long)task,
                stream == 2 ? "stderr" : "stdout", (int)n, s);
        s += n + (nl ? 1 : 0);
    }
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
    if (il == 0 || !((((uint8_t *)items)[0] & 0xf0) == 0x90 || ((uint8_t *)items)[0] == 0xdc ||
                     ((uint8_t *)items)[0] == 0xdd)) {
        free(items);
        return usage_error("pool map: '%.200s' is not a JSON array", argv[1]);
    }
    mpb_pool_t *p;
    if ((rc = mpb_pool_open(cli, &p))) {
        free(items);
        return fail(rc, "pool map");
    }
    mpb_async_t *a;
    if (output) mpb_pool_set_output(p, print_task_output, NULL);
    rc = mpb_pool_map_async(p, argv[0], items, il, chunksize, NULL, NULL, NULL, &a);
    free(items);
    if (rc) {
        mpb_pool_close(&p);
        return fail(rc, "pool map");
    }
    bool tty = isatty(2);
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
    uint8_t *args = malloc(vn + 1);
    size_t an = 0;
    if (!args) return fail(MPB_ENOMEM, "pool apply");
    if (star) {
        memcpy(args, v, vn);
        an = vn;
    } else {
        args[0] = 0x91; /* [value] */
        memcpy(args + 1, v, vn);
        an = vn + 1;
    }
    free(v);
    mpb_pool_t *p;
    void *res = NULL;
    size_t rl = 0;
    if ((rc = mpb_pool_open(cli, &p))) {
        free(args);
        return fail(rc, "pool apply");
    }
    rc = pool_apply_wait(p, argv[0], args, an, timeout, wait, &res, &rl);
    free(args);
    if (rc) {
        mpb_pool_close(&p);
        return rc;
    }
    mpb_pool_close(&p);
    rc = print_value(res, rl);
    mpb_free(res);
    return rc;
}

static int cmd_pool(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "map")) return pool_map(argc - 1, argv + 1);
    if (argc >= 1 && !strcmp(argv[0], "apply")) return pool_apply(argc - 1, argv + 1);
    return pool_show(argc, argv);
}

/* The save op of PROTOCOL.md (code 7): answered once the snapshot is on disk. */
static int cmd_save(int argc, char **argv) {
    (void)argv;
    if (argc) return usage_error("save takes no arguments");
    void *m;
    size_t n;
    int rc = mpb_call(cli, 7, NULL, NULL, 0, 3600 * 1000, &m, &n);
    if (rc) return fail(rc, "save");
    json_t *j = to_jansson(m, n);
    mpb_free(m);
    if (opt.json) print_json(j);
    else printf("saved %lld bytes in %lld ms\n", jint(j, "bytes"), jint(j, "ms"));
    json_decref(j);
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    {"info", cmd_info}, {"ls", cmd_ls},   {"get", cmd_get},       {"set", cmd_set},
    {"incr", cmd_incr}, {"del", cmd_del}, {"append", cmd_append}, {"ping", cmd_ping},
    {"put", cmd_put},   {"clear", cmd_clear}, {"wait", cmd_wait}, {"lock", cmd_lock},
    {"pool", cmd_pool}, {"save", cmd_save},
    /* in files of their own (cli.h) */
    {"watch", cmd_watch}, {"task-done", cmd_task_done}, {"peek", cmd_peek},
    {"clients", cmd_clients}, {"kill", cmd_kill}, {"slowlog", cmd_slowlog},
    {"monitor", cmd_monitor},
};

bool cli_is_command(const char *name) {
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(commands[i].name, name)) return true;
    return false;
}

int cli_run(int argc, char **argv) {
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (strcmp(commands[i].name, argv[0])) continue;
        const char *was = cur_cmd;
        cur_cmd = commands[i].name;
        int rc = commands[i].fn(argc - 1, argv + 1);
        cur_cmd = was;
        return rc;
    }
    return usage_error("unknown command '%s'", argv[0]);
}

void help_usage(FILE *f) {
    usage(f);
}

/* Options accepted after the command too (mpb ls --json): the global ones are taken out of
 * argv up to "--", which is dropped (so mpb get dict/d -- --json reads the key "--json"),
 * except for lock, whose "--" starts COMMAND. *help is set for -h/--help. Returns 0 or
 * EXIT_USAGE. */
static int hoist_options(int *argc, char **argv, bool keep_dashdash, bool *help) {
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *val = NULL;
        int used = 1;
        if (!strcmp(a, "--")) {
            if (keep_dashdash) break;
            memmove(argv + i, argv + i + 1, (size_t)(*argc - i - 1) * sizeof *argv);
            (*argc)--;
            break;
        }
        bool takes = !strcmp(a, "-e") || !strcmp(a, "--endpoint") || !strcmp(a, "-k") ||
                     !strcmp(a, "--authkey-file") || !strcmp(a, "--connect-timeout");
        if (takes) {
            if (i + 1 >= *argc) return usage_error("option '%s' needs a value", a);
            val = argv[i + 1];
            used = 2;
        } else if (!strncmp(a, "--endpoint=", 11) || !strncmp(a, "--authkey-file=", 15) ||
                   !strncmp(a, "--connect-timeout=", 18)) {
            val = strchr(a, '=') + 1;
        }
        if (!strcmp(a, "--json")) opt.json = true;
        else if (!strcmp(a, "--key-json")) opt.key_json = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) *help = true;
        else if (val && (a[1] == 'e' || !strncmp(a, "--endpoint", 10))) opt.endpoint = val;
        else if (val && (a[1] == 'k' || !strncmp(a, "--authkey-file", 14))) opt.keyfile = val;
        else if (val) {
            double sec;
            if (!parse_seconds(val, &sec) || sec <= 0 || sec > 3600)
                return usage_error("--connect-timeout '%s' is not a number of seconds", val);
            opt.connect_timeout_ms = sec < 0.001 ? 1 : (int)(sec * 1000);
        } else continue;
        memmove(argv + i, argv + i + used, (size_t)(*argc - i - used) * sizeof *argv);
        *argc -= used;
        i--;
    }
    return 0;
}


/* One line of the prompt: as a command line after "mpb", on the open connection; options
 * given on it (--json) hold for that line only. */
int cli_exec(int argc, char **argv) {
    bool is_help = !strcmp(argv[0], "help");
    if (!is_help && !cli_is_command(argv[0]))
        return usage_error("unknown command '%s'", argv[0]);
    cli_opt_t saved = opt;
    bool help = false;
    int rc = hoist_options(&argc, argv, !strcmp(argv[0], "lock"), &help);
    if (rc == 0 && is_help && !help) rc = cmd_help(argc - 1, argv + 1);
    else if (rc == 0) rc = help ? cmd_help(1, argv) : cli_run(argc, argv);
    opt = saved;
    return rc;
}

int cli_connect(void) {
    want_heartbeat = true; /* a prompt may sit idle longer than a session lives */
    return connect_broker();
}

int main(int argc, char **argv) {
    opt.endpoint = getenv("MPB_ENDPOINT") ? getenv("MPB_ENDPOINT") : "tcp://127.0.0.1:5555";
    opt.connect_timeout_ms = 5000;
    enum { O_JSON = 256, O_KEY_JSON, O_CONNECT_TIMEOUT };
    static const struct option lopts[] = {
        {"endpoint", required_argument, 0, 'e'},
        {"authkey-file", required_argument, 0, 'k'},
        {"json", no_argument, 0, O_JSON},
        {"key-json", no_argument, 0, O_KEY_JSON},
        {"connect-timeout", required_argument, 0, O_CONNECT_TIMEOUT},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    int c;
    /* The first bad option is reported after the loop, once a later --json is known too. */
    char bad[600] = "";
    bool bad_option = false; /* unknown or lacking its value: the usage text follows */
    opterr = 0;
    /* '+': options end at the command, so values such as -5 reach it intact. ':' first: a
     * missing value is told apart from an unknown option. */
    while ((c = getopt_long(argc, argv, "+:e:k:hV", lopts, NULL)) != -1) {
        const char *arg = argv[optind - 1 < argc ? optind - 1 : argc - 1];
        switch (c) {
        case 'e': opt.endpoint = optarg; break;
        case 'k': opt.keyfile = optarg; break;
        case O_JSON: opt.json = true; break;
        case O_KEY_JSON: opt.key_json = true; break;
        case O_CONNECT_TIMEOUT: {
            double s;
            if (bad[0]) break;
            if (!parse_seconds(optarg, &s) || s <= 0 || s > 3600)
                snprintf(bad, sizeof bad, "--connect-timeout '%s' is not a number of seconds",
                         optarg);
            else opt.connect_timeout_ms = s < 0.001 ? 1 : (int)(s * 1000); /* 0: the default */
            break;
        }
        case 'h': usage(stdout); return 0;
        case 'V': printf("mpb %s (libmpb %u.%u.%u)\n", MPBROKER_VERSION, mpb_version() >> 16,
                         (mpb_version() >> 8) & 0xff, mpb_version() & 0xff);
            return 0;
        case ':':
            if (!bad[0]) snprintf(bad, sizeof bad, "option '%s' needs a value", arg);
            bad_option = true;
            break;
        default:
            if (bad[0]) break;
            if (optopt && strncmp(arg, "--", 2))
                snprintf(bad, sizeof bad, "unknown option '-%c'", optopt);
            else
                snprintf(bad, sizeof bad, "unknown option '%s'", arg);
            bad_option = true;
            break;
        }
    }
    if (bad[0] && (opt.json || !bad_option)) return usage_error("%s", bad);
    if (bad[0]) {
        fprintf(stderr, "mpb: %s\n", bad);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (optind >= argc) {
        /* as redis-cli: no command on a terminal is a prompt; anywhere else, bad usage */
        if (!opt.json && isatty(0) && isatty(1)) return repl_run();
        if (opt.json) return usage_error("no command (mpb --help lists them)");
        usage(stderr);
        return EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;
    const char *name = argv[0];
    bool is_help = !strcmp(name, "help");
    if (!is_help && !cli_is_command(name)) return usage_error("unknown command '%s'", name);
    cur_cmd = name;
    bool help = false;
    int rc = hoist_options(&argc, argv, !strcmp(name, "lock"), &help);
    if (rc) return rc;
    if (help) return cmd_help(1, argv);
    if (is_help) return cmd_help(argc - 1, argv + 1);
    want_heartbeat = !strcmp(name, "lock");
    rc = connect_broker();
    if (rc == 0) rc = cli_run(argc, argv);
    mpb_close(&cli);
    return rc;
}
