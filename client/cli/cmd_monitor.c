/* cmd_monitor.c - mpb monitor [--values]: the requests the broker serves, one line each as
 * they come (as Redis's MONITOR): time, session, op, object, latency; the arguments only
 * with --values. Other sessions' requests only: this one's reads are not shown. It reads the
 * broker's monitor op every 100 ms until SIGINT or SIGTERM; lines the broker dropped before
 * they were read (its ring is bounded) are reported as skipped. */
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "mpb/ops.h"

#define MONITOR_POLL_MS 100

static volatile sig_atomic_t stop;
static void on_stop(int sig) {
    (void)sig;
    stop = 1;
}

/* [uint64 next, bool values] in a new *args (mpb_free() it): 0 or MPB_ENOMEM */
static int monitor_args(void **args, size_t *n, unsigned long long next, bool values) {
    mpb_mpbuf_t b = {0};
    mpb_mp_array(&b, 2);
    mpb_mp_u64(&b, next);
    mpb_mp_bool(&b, values);
    return mpb_mp_take(&b, args, n);
}

static void print_line(json_t *e, bool values) {
    if (opt.json) {
        print_json(e);
        return;
    }
    long long ms = json_integer_value(json_object_get(e, "time_ms"));
    time_t t = (time_t)(ms / 1000);
    char when[32];
    strftime(when, sizeof when, "%T", localtime(&t));
    const char *obj = json_string_value(json_object_get(e, "object"));
    printf("%s.%03lld [%" JSON_INTEGER_FORMAT "] %s %s %" JSON_INTEGER_FORMAT "us", when, ms % 1000,
           json_integer_value(json_object_get(e, "session")),
           json_string_value(json_object_get(e, "op")), obj && *obj ? obj : "-",
           json_integer_value(json_object_get(e, "latency_us")));
    json_int_t code = json_integer_value(json_object_get(e, "code"));
    if (code) printf(" error=%" JSON_INTEGER_FORMAT, code);
    if (values) {
        json_t *a = json_object_get(e, "args");
        if (a) {
            char *s = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
            printf(" %s", s ? s : "?");
            free(s);
        } else {
            printf(" (%" JSON_INTEGER_FORMAT " bytes of arguments)",
                   json_integer_value(json_object_get(e, "args_bytes")));
        }
    }
    putchar('\n');
}

int cmd_monitor(int argc, char **argv) {
    bool values = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--values"))
            values = true;
        else
            return usage_error("monitor takes only --values, got '%s'", argv[i]);
    }
    /* a second signal ends it at once, even inside a call to a broker that is gone */
    struct sigaction sa = {.sa_handler = on_stop, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    unsigned long long next = 0;
    while (!stop) {
        void *args, *res;
        size_t an, rn;
        int rc = monitor_args(&args, &an, next, values);
        if (rc == 0) {
            rc = mpb_call(cli, MPB_OP_MONITOR, NULL, args, an, 0, &res, &rn);
            mpb_free(args);
        }
        if (rc) return stop ? 0 : fail(rc, "monitor");
        json_t *r = take_jansson(res, rn);
        next = (unsigned long long)json_integer_value(json_object_get(r, "next"));
        json_int_t skipped = json_integer_value(json_object_get(r, "skipped"));
        if (skipped) {
            if (opt.json)
                printf("{\"skipped\": %" JSON_INTEGER_FORMAT "}\n", skipped);
            else
                printf("(%" JSON_INTEGER_FORMAT " requests skipped: not read in time)\n", skipped);
        }
        json_t *lines = json_object_get(r, "lines");
        size_t i;
        json_t *e;
        json_array_foreach(lines, i, e) print_line(e, values);
        fflush(stdout);
        bool more = json_is_true(json_object_get(r, "more"));
        json_decref(r);
        if (!more) nanosleep(&(struct timespec){0, MONITOR_POLL_MS * 1000000L}, NULL);
    }
    return 0;
}
