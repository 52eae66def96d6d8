/* cmd_watch.c - mpb watch [--interval S | -i S] [-r N] COMMAND [ARGS...]: a
 * looking command run again and again on one connection, as watch(1) and
 * redis-cli's -r/-i. Only commands that change nothing may be watched: info,
 * ls, get (not of a queue: that takes items), peek and pool. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char *const watchable[] = {"info", "ls", "get", "peek", "clients", "pool", NULL};

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) && ts.tv_sec + ts.tv_nsec > 0) {
    }
}

int cmd_watch(int argc, char **argv) {
    double interval = 1.0;
    long long rounds = -1; /* forever */
    int i = 0;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        bool is_i = !strcmp(a, "-i") || !strcmp(a, "--interval");
        if (!is_i && strcmp(a, "-r")) return usage_error("watch: unknown option '%s'", a);
        if (i + 1 >= argc) return usage_error("watch: option '%s' needs a value", a);
        const char *v = argv[++i];
        if (is_i) {
            if (!parse_seconds(v, &interval) || interval < 0.01 || interval > 86400)
                return usage_error("watch: interval '%s' is not 0.01..86400 seconds", v);
        } else {
            char *end;
            rounds = strtoll(v, &end, 10);
            if (end == v || *end || rounds < -1 || rounds == 0)
                return usage_error("watch: -r '%s' is not a count of rounds (or -1: forever)", v);
        }
    }
    if (i >= argc)
        return usage_error("watch takes a COMMAND to run (info, ls, get, peek, clients, pool)");
    char **cmd = argv + i;
    int n = argc - i;
    bool ok = false;
    for (int k = 0; watchable[k]; k++)
        ok |= !strcmp(watchable[k], cmd[0]);
    if (!ok)
        return usage_error("watch: '%s' cannot be watched (info, ls, get, peek, clients, pool)",
                           cmd[0]);
    if (!strcmp(cmd[0], "get") && n > 1 && !strncmp(cmd[1], "queue/", 6))
        return usage_error("watch: get %s would take an item each round", cmd[1]);
    if (!strcmp(cmd[0], "pool") && n > 1)
        return usage_error("watch: pool takes no arguments here (pool --watch redraws itself)");
    /* each round gets a fresh copy: commands take their flags out of argv */
    char **copy = malloc((size_t)(n + 1) * sizeof *copy);
    if (!copy) return fail(MPB_ENOMEM, "watch");
    bool tty = isatty(1) && !opt.json;
    int rc = 0;
    for (long long r = 0; rounds < 0 || r < rounds; r++) {
        if (r) sleep_s(interval);
        if (r && !tty && !opt.json) putchar('\n'); /* rounds apart in a file; JSON: a line each */
        memcpy(copy, cmd, (size_t)n * sizeof *copy);
        copy[n] = NULL;
        if (tty) {
            char line[512];
            size_t used = (size_t)snprintf(line, sizeof line, "Every %gs: mpb", interval);
            for (int k = 0; k < n && used < sizeof line; k++)
                used += (size_t)snprintf(line + used, sizeof line - used, " %s", cmd[k]);
            time_t now = time(NULL);
            char when[64];
            strftime(when, sizeof when, "%F %T", localtime(&now));
            printf("\033[H\033[2J%s    %s\n\n", line, when); /* home and clear, as watch(1) */
        }
        rc = cli_run(n, copy);
        fflush(stdout);
        fflush(stderr);
        if (rc == EXIT_USAGE) break; /* the next round would say the same */
    }
    free(copy);
    return rc;
}
