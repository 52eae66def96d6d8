/* cmd_broker.c - mpb info, ping and save: the broker's facts (or one object's), whether it
 * answers, and a snapshot of its state written now. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "clock.h"
#include "mpb/ops.h"

static const char *const info_fields[] = {"version",  "uptime_s",   "pid",    "clients",
                                          "sessions", "objects",    "memory", "anonymous",
                                          "refs",     "encryption", NULL};

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

int cmd_info(int argc, char **argv) {
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
    json_t *j = take_jansson(m, n);
    if (opt.json) {
        print_json(j);
    } else if (argc == 0) {
        for (int i = 0; info_fields[i]; i++) {
            json_t *v = json_object_get(j, info_fields[i]);
            char *s = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            if (s && json_is_string(v))
                printf("%-10s %s\n", info_fields[i], json_string_value(v));
            else if (s)
                printf("%-10s %s\n", info_fields[i], s);
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

int cmd_ping(int argc, char **argv) {
    (void)argv;
    if (argc) return usage_error("ping takes no arguments");
    int rc = mpb_call(cli, MPB_OP_PING, NULL, NULL, 0, 0, NULL, NULL);
    if (rc) return fail(rc, "ping");
    if (opt.json)
        puts("{\"ok\":true}");
    else
        puts("pong");
    return 0;
}

/* The save op of PROTOCOL.md: answered once the snapshot is on disk. */
int cmd_save(int argc, char **argv) {
    (void)argv;
    if (argc) return usage_error("save takes no arguments");
    void *m;
    size_t n;
    int rc = mpb_call(cli, MPB_OP_SAVE, NULL, NULL, 0, 3600 * 1000, &m, &n);
    if (rc) return fail(rc, "save");
    json_t *j = take_jansson(m, n);
    if (opt.json)
        print_json(j);
    else
        printf("saved %lld bytes in %lld ms\n", jint(j, "bytes"), jint(j, "ms"));
    json_decref(j);
    return 0;
}
