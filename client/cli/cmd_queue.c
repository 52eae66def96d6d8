/* cmd_queue.c - queue commands beside mpb.c's get and put: peek looks at items
 * without taking them; task-done finishes an item taken from a JoinableQueue,
 * so a shell can be the consumer that join() waits for. Looking at or finishing
 * a queue that is not there is "no such object" (exit 3), not a new queue. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "mpb/ops.h"

/* mpb peek queue/NAME [N]: the first N items (default 10), oldest first, one
 * JSON value a line
 * (--json: one array); nothing is taken. */
int cmd_peek(int argc, char **argv) {
    objref_t o;
    int rc;
    if (argc < 1 || argc > 2) return usage_error("peek takes queue/NAME [N]");
    if ((rc = parse_obj_of(argv[0], "queue", "peek", &o))) return rc;
    int64_t n = 10;
    if (argc == 2 && (rc = parse_count("peek", argv[1], 1000000, &n))) return rc;
    if ((rc = must_exist(argv[0], "peek"))) return rc;
    void *res;
    size_t rn;
    rc = call_u64(MPB_OP_QUEUE_PEEK, o.name, (uint64_t)n, &res, &rn);
    if (rc) return fail(rc, "peek");
    json_t *j = take_jansson(res, rn);
    if (opt.json) return print_json_free(j);
    size_t i;
    json_t *v;
    json_array_foreach(j, i, v) print_json(v);
    json_decref(j);
    return 0;
}

/* mpb task-done queue/NAME: one task_done(); EVALUE (exit 1) when nothing is
 * unfinished. */
int cmd_task_done(int argc, char **argv) {
    objref_t o;
    int rc;
    if (argc != 1) return usage_error("task-done takes queue/NAME");
    if ((rc = parse_obj_of(argv[0], "queue", "task-done", &o))) return rc;
    if ((rc = must_exist(argv[0], "task-done"))) return rc;
    mpb_queue_t *q;
    if ((rc = mpb_queue_open(cli, o.name, -1, -1, &q))) return fail(rc, "task-done");
    rc = mpb_queue_task_done(q);
    mpb_queue_close(&q);
    return report_ok(rc, "task-done");
}
