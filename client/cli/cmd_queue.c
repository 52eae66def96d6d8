/* cmd_queue.c - queue commands beside mpb.c's get and put: task-done finishes an item taken
 * from a JoinableQueue, so a shell can be the consumer that join() waits for. */
#include <string.h>

#include "cli.h"

/* mpb task-done queue/NAME: one task_done(); EVALUE (exit 1) when nothing is unfinished. */
int cmd_task_done(int argc, char **argv) {
    objref_t o;
    int rc;
    if (argc != 1) return usage_error("task-done takes queue/NAME");
    if ((rc = parse_obj(argv[0], &o))) return rc;
    if (strcmp(o.kind, "queue")) return usage_error("task-done works on queues, not '%s'", o.kind);
    /* opening would make the queue; finishing an item of none is "no such object" */
    void *m;
    size_t mn;
    if ((rc = mpb_obj_describe(cli, argv[0], &m, &mn))) return fail(rc, "task-done");
    mpb_free(m);
    mpb_queue_t *q;
    if ((rc = mpb_queue_open(cli, o.name, -1, -1, &q))) return fail(rc, "task-done");
    rc = mpb_queue_task_done(q);
    mpb_queue_close(&q);
    if (rc) return fail(rc, "task-done");
    if (opt.json) puts("{\"ok\":true}");
    return 0;
}
