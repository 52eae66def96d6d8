/* cmd_slowlog.c - mpb slowlog [N]: the slowest recent requests the broker served (as Redis's
 * SLOWLOG GET), newest first, with how long each took; what counts as slow is the broker's
 * slowlog-log-slower-than setting (µs), how many it keeps slowlog-max-len. */
#include <stdlib.h>
#include <time.h>

#include "cli.h"
#include "mpb/ops.h"

int cmd_slowlog(int argc, char **argv) {
    if (argc > 1) return usage_error("slowlog takes at most a count, got '%s'", argv[1]);
    int64_t n = 10;
    int rc;
    if (argc == 1 && (rc = parse_count("slowlog", argv[0], 100000, &n))) return rc;
    void *res;
    size_t rn;
    rc = call_u64(MPB_OP_SLOWLOG, NULL, (uint64_t)n, &res, &rn);
    if (rc) return fail(rc, "slowlog");
    json_t *all = take_jansson(res, rn);
    if (opt.json) return print_json_free(all);
    printf("%-6s %-19s %12s %-18s %-24s %-8s %-16s %s\n", "ID", "TIME", "DURATION_US", "OP",
           "OBJECT", "SESSION", "HOST", "PID");
    size_t i;
    json_t *e;
    json_array_foreach(all, i, e) {
        time_t t = (time_t)(json_integer_value(json_object_get(e, "time_ms")) / 1000);
        char when[32];
        strftime(when, sizeof when, "%F %T", localtime(&t));
        const char *obj = json_string_value(json_object_get(e, "object"));
        const char *host = json_string_value(json_object_get(e, "host"));
        printf("%-6" JSON_INTEGER_FORMAT " %-19s %12" JSON_INTEGER_FORMAT
               " %-18s %-24s %-8" JSON_INTEGER_FORMAT " %-16s %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(e, "id")), when,
               json_integer_value(json_object_get(e, "duration_us")),
               json_string_value(json_object_get(e, "op")), obj && *obj ? obj : "-",
               json_integer_value(json_object_get(e, "session")), host && *host ? host : "-",
               json_integer_value(json_object_get(e, "pid")));
    }
    json_decref(all);
    return 0;
}
