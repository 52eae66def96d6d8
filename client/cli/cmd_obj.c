/* cmd_obj.c - mpb ls, get, set, incr, del, append and put: the objects that hold data (dicts,
 * lists, queues, values, namespaces), read and changed one key, item or whole object at a time.
 * Events are set through here too (mpb set event/NAME), in cmd_sync.c. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "json.h"

int cmd_ls(int argc, char **argv) {
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
                json_array_append_new(all,
                                      json_pack("{s:s,s:s,s:I}", "kind", page[i].kind, "name",
                                                page[i].name, "size", (json_int_t)page[i].size));
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
        json_t *arr = take_jansson(pg, pl);
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
        json_t *page = take_jansson(items, il);
        json_array_extend(arr, page);
        json_decref(page);
        if (n == 0) break;
        start += (int64_t)n;
    }
    print_json(arr);
    json_decref(arr);
    return 0;
}

/* A get that would wait forever on a terminal says so first, so an empty queue does not look
 * like a hung command; an item already there is taken without a word. */
static int queue_get_told(mpb_queue_t *q, const char *path, void **v, size_t *vn, int timeout) {
    if (timeout != MPB_FOREVER || opt.json || !isatty(2)) return mpb_queue_get(q, v, vn, timeout);
    int rc = mpb_queue_get(q, v, vn, MPB_NOWAIT);
    if (rc != MPB_EEMPTY) return rc;
    fprintf(stderr,
            "mpb: waiting for an item on %s (Ctrl-C to stop; --timeout S bounds the "
            "wait)\n",
            path);
    return mpb_queue_get(q, v, vn, timeout);
}

/* The name of a msgpack value's type, for the key hint; NULL for a string, bytes or ext (typed
 * as a string key already). */
static const char *mp_type_name(const void *v, size_t n) {
    mpb_mpreader_t r;
    if (mpb_mpr_init(&r, v, n)) return NULL;
    switch (mpb_mpr_type(&r)) {
    case MPB_MP_INT: return "integer";
    case MPB_MP_FLOAT: return "number";
    case MPB_MP_NIL: return "null";
    case MPB_MP_BOOL: return "boolean";
    case MPB_MP_ARRAY: return "array";
    case MPB_MP_MAP: return "object";
    default: return NULL;
    }
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
    const char *type = mp_type_name(k, kn);
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

/* mpb get dict/NAME or list/NAME: the whole object, which must be there. */
static int get_whole(const objref_t *o, const char *path) {
    int rc = must_exist(path, "get");
    if (rc) return rc;
    if (!strcmp(o->kind, "dict")) {
        mpb_dict_t *d;
        if ((rc = mpb_dict_attach(cli, o->name, &d))) return fail(rc, "get");
        rc = get_dict_all(d);
        mpb_dict_close(&d);
    } else {
        mpb_list_t *l;
        if ((rc = mpb_list_attach(cli, o->name, &l))) return fail(rc, "get");
        rc = get_list_all(l);
        mpb_list_close(&l);
    }
    return rc;
}

int cmd_get(int argc, char **argv) {
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
        if (argc == 2)
            rc = mpb_namespace_get(ns, argv[1], &v, &vn);
        else
            rc = mpb_namespace_list(ns, &v, &vn);
        mpb_namespace_close(&ns);
    } else if (argc == 1 && (!strcmp(o.kind, "dict") || !strcmp(o.kind, "list"))) {
        return get_whole(&o, argv[0]);
    } else if (!strcmp(o.kind, "dict")) {
        mpb_dict_t *d;
        if ((rc = mpb_dict_attach(cli, o.name, &d))) return fail(rc, "get");
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
        if ((rc = mpb_list_attach(cli, o.name, &l))) return fail(rc, "get");
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

int cmd_set(int argc, char **argv) {
    objref_t o;
    int rc;
    if (argc >= 1 && !strncmp(argv[0], "event/", 6)) return cmd_event("set", argc, argv);
    if (argc == 2 && !strncmp(argv[0], "value/", 6)) {
        if ((rc = parse_obj(argv[0], &o))) return rc;
        void *v;
        size_t vn;
        if ((rc = parse_value(argv[1], &v, &vn))) return rc;
        mpb_value_t *x;
        if (!(rc = mpb_value_open(cli, o.name, NULL, 0, &x))) rc = mpb_value_set(x, v, vn);
        mpb_value_close(&x);
        free(v);
        return report_ok(rc, "set");
    }
    if (argc != 3) return usage_error("set takes OBJ KEY VALUE");
    if ((rc = parse_obj(argv[0], &o))) return rc;
    void *v, *k;
    size_t vn, kn;
    if (!strcmp(o.kind, "namespace")) {
        if ((rc = parse_value(argv[2], &v, &vn))) return rc;
        mpb_namespace_t *ns;
        if (!(rc = mpb_namespace_open(cli, o.name, &ns)))
            rc = mpb_namespace_set(ns, argv[1], v, vn);
        mpb_namespace_close(&ns);
        free(v);
        return report_ok(rc, "set");
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
    return report_ok(rc, "set");
}

int cmd_incr(int argc, char **argv) {
    objref_t o;
    int rc;
    int64_t by = 1, result;
    if (argc < 2 || argc > 3) return usage_error("incr takes dict/NAME KEY [N]");
    if ((rc = parse_obj_of(argv[0], "dict", "incr", &o))) return rc;
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

int cmd_del(int argc, char **argv) {
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
        if (!parse_i64(argv[1], &i))
            return usage_error("list index '%s' is not an integer", argv[1]);
        if (!(rc = mpb_list_attach(cli, o.name, &l)) && !(rc = mpb_list_pop(l, i, &v, &vn)))
            mpb_free(v);
        mpb_list_close(&l);
    } else {
        return usage_error("del: unknown kind '%s' (dict or list)", o.kind);
    }
    return report_ok(rc, "del");
}

int cmd_append(int argc, char **argv) {
    objref_t o;
    int rc;
    if (argc != 2) return usage_error("append takes list/NAME VALUE");
    if ((rc = parse_obj_of(argv[0], "list", "append", &o))) return rc;
    void *v;
    size_t vn;
    if ((rc = parse_value(argv[1], &v, &vn))) return rc;
    mpb_list_t *l;
    if (!(rc = mpb_list_open(cli, o.name, &l))) rc = mpb_list_append(l, v, vn);
    mpb_list_close(&l);
    free(v);
    return report_ok(rc, "append");
}

int cmd_put(int argc, char **argv) {
    objref_t o;
    int rc, timeout = MPB_FOREVER;
    if ((rc = take_timeout(&argc, argv, &timeout))) return rc;
    if (argc != 2) return usage_error("put takes queue/NAME VALUE [--timeout S]");
    if ((rc = parse_obj_of(argv[0], "queue", "put", &o))) return rc;
    void *v;
    size_t vn;
    if ((rc = parse_value(argv[1], &v, &vn))) return rc;
    mpb_queue_t *q;
    if (!(rc = mpb_queue_open(cli, o.name, -1, -1, &q))) rc = mpb_queue_put(q, v, vn, timeout);
    mpb_queue_close(&q);
    free(v);
    return report_ok(rc, "put");
}
