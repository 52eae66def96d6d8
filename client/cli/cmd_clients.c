/* cmd_clients.c - mpb clients and mpb kill SESSION: the sessions a broker serves (as Redis's
 * CLIENT LIST), and ending one as its expiry would (CLIENT KILL). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mpb/ops.h"

/* "lock/a,semaphore/s:2" from [{object, units}] or [{object, op}]: a list for one column */
static void join_objects(char *out, size_t cap, json_t *arr, const char *extra) {
    size_t i, used = 0;
    json_t *e;
    out[0] = 0;
    json_array_foreach(arr, i, e) {
        const char *obj = json_string_value(json_object_get(e, "object"));
        json_t *x = json_object_get(e, extra);
        char more[64] = "";
        if (json_is_integer(x) && json_integer_value(x) != 1)
            snprintf(more, sizeof more, ":%" JSON_INTEGER_FORMAT, json_integer_value(x));
        else if (json_is_string(x))
            snprintf(more, sizeof more, "(%s)", json_string_value(x));
        if (used < cap)
            used += (size_t)snprintf(out + used, cap - used, "%s%s%s", i ? "," : "",
                                     obj ? obj : "?", more);
    }
    if (!out[0]) snprintf(out, cap, "-");
}

int cmd_clients(int argc, char **argv) {
    (void)argv;
    if (argc) return usage_error("clients takes no arguments");
    void *res;
    size_t n;
    int rc = mpb_call(cli, MPB_OP_CLIENTS, NULL, NULL, 0, 0, &res, &n);
    if (rc) return fail(rc, "clients");
    json_t *all = take_jansson(res, n);
    if (opt.json) return print_json_free(all);
    printf("%-8s %-16s %-8s %-16s %-12s %-9s %-8s %-8s %-24s %s\n", "SESSION", "HOST", "PID",
           "ADDRESS", "NAME", "CONNECTED", "AGE", "IDLE", "HOLDS", "WAITS");
    size_t i;
    json_t *c;
    json_array_foreach(all, i, c) {
        char holds[512], waits[512];
        join_objects(holds, sizeof holds, json_object_get(c, "holds"), "units");
        join_objects(waits, sizeof waits, json_object_get(c, "waits"), "op");
        const char *addr = json_string_value(json_object_get(c, "address"));
        printf("%-8" JSON_INTEGER_FORMAT " %-16s %-8" JSON_INTEGER_FORMAT
               " %-16s %-12s %-9s %-8.1f %-8.1f %-24s %s\n",
               json_integer_value(json_object_get(c, "session")),
               json_string_value(json_object_get(c, "host")),
               json_integer_value(json_object_get(c, "pid")), addr && *addr ? addr : "-",
               json_string_value(json_object_get(c, "name")),
               json_is_true(json_object_get(c, "connected")) ? "yes" : "no",
               (double)json_integer_value(json_object_get(c, "age_ms")) / 1000.0,
               (double)json_integer_value(json_object_get(c, "idle_ms")) / 1000.0, holds, waits);
    }
    json_decref(all);
    return 0;
}

int cmd_kill(int argc, char **argv) {
    if (argc != 1) return usage_error("kill takes SESSION (a number: mpb clients lists them)");
    char *end;
    unsigned long long id = strtoull(argv[0], &end, 10);
    if (end == argv[0] || *end || argv[0][0] == '-')
        return usage_error("kill: SESSION '%s' is not a session number", argv[0]);
    int rc = call_u64(MPB_OP_SESSION_KILL, NULL, id, NULL, NULL);
    if (rc == MPB_EVALUE) {
        report("ENOSESSION", "kill: no session %llu", id);
        return EXIT_NOTFOUND;
    }
    return report_ok(rc, "kill");
}
