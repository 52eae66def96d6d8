/* mpb-worker.c - a ready worker process: loads pool functions from a shared library by
 * symbol name and serves them, so an operator starts workers without writing a main().
 * With --max-tasks it recycles: a child process serves that many tasks, exits, and a fresh
 * one takes its place (Pool's maxtasksperchild). If the broker goes away it reconnects.
 * --init names an initializer that runs first in every worker process (Pool's initializer,
 * with --init-arg as its initargs); if it fails, the worker exits with status 3 and says so. */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mpb/mpb.h"
#include "mpb/ops.h"

static struct {
    const char *endpoint, *keyfile, *lib, *fns, *init, *init_arg, *name;
    int concurrency, prefetch, isolate, forward_output;
    bool isolate_set;
    unsigned long long max_tasks;
} opt;

static volatile sig_atomic_t stopping;
static mpb_worker_t *current;
static pid_t child;

static void on_signal(int sig) {
    stopping = 1;
    if (current) mpb_worker_stop(current);
    if (child > 0) kill(child, sig);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: mpb-worker --lib PATH.so --fn NAME[,NAME...] [options]\n"
            "  --lib PATH           shared library holding the functions\n"
            "  --fn NAMES           comma-separated symbols to serve; each is an mpb_task_fn:\n"
            "                       int fn(void *ctx, const void *args, size_t alen,\n"
            "                              void **result, size_t *rlen, char *err, size_t errlen)\n"
            "  --concurrency N      tasks run at once, on N threads (default 1)\n"
            "  --prefetch N         tasks held beyond those (default 64); one not started is\n"
            "                       given to a slot idle elsewhere, and short tasks stream\n"
            "  --isolate MODE       thread (default: tasks run on the worker's threads, which\n"
            "                       cannot be killed: a cancelled task's function sees\n"
            "                       mpb_task_cancelled() and may return early) or process\n"
            "                       (each slot runs its tasks in a child process, forked\n"
            "                       ahead and reused: terminate(), a timeout, a cancel or\n"
            "                       the caller's end kill a running task, and a task that\n"
            "                       kills its process is retried; the worker forks a fresh\n"
            "                       child); only process mode kills\n"
            "  --forward-output     what a task writes to stdout and stderr (64 KiB at most)\n"
            "                       goes to its caller as it is written, tagged by task\n"
            "                       (`mpb pool map --output`); implies --isolate process\n"
            "  --max-tasks N        serve N tasks per process, then start a fresh one\n"
            "  --init SYMBOL        int SYMBOL(const char *arg) run once per worker process\n"
            "                       first; non-zero means it failed: the worker exits (3)\n"
            "  --init-arg STRING    the initializer's argument (default: NULL)\n"
            "  --name NAME          shown by `mpb pool` (default mpb-worker)\n"
            "  -e, --endpoint EP    broker (env MPB_ENDPOINT, default tcp://127.0.0.1:5555)\n"
            "  -k, --authkey-file P authkey (env MPB_AUTHKEY_FILE, or MPB_AUTHKEY itself)\n"
            "  --log-format FMT     logfmt or json (env MPB_LOG_FORMAT, default logfmt)\n"
            "  --log-level LEVEL    debug, info, warn or error (env MPB_LOG_LEVEL, default info)\n"
            "  --check              health check: exit 0 if a worker of this host is registered\n"
            "                       with the broker, 1 if none is (no --lib or --fn needed)\n"
            "  -h, --help           this text\n"
            "  -V, --version        mpb-worker's version\n"
            "Logs go to stderr, one line per event, as mpbrokerd writes them.\n"
            "Stops cleanly on SIGTERM or SIGINT: running tasks finish and are reported.\n");
}

/* A field on every line: with --max-tasks, processes come and go. Only the main thread logs. */
static const char *pid_s(void) {
    static char buf[24];
    return log_fmt_i64(buf, getpid());
}

/* Serves until stopped, max tasks, or a fatal error; reconnects after lost connections.
 * Returns the exit status. */
static int serve(void *lib, const void *key, size_t keylen) {
    int (*init)(const char *) = NULL;
    if (opt.init) {
        *(void **)&init = dlsym(lib, opt.init);
        if (!init) {
            log_kv(MPB_LOG_ERROR, "no such initializer", "init", opt.init, "error", dlerror(),
                   "pid", pid_s(), NULL);
            return 2;
        }
        int irc = init(opt.init_arg);
        if (irc) {
            log_kv(MPB_LOG_ERROR, "the initializer failed; not serving", "init", opt.init,
                   "returned", LOG_INT(irc), "pid", pid_s(), NULL);
            return 3;
        }
    }
    unsigned delay_ms = 200;
    unsigned long long done = 0;
    while (!stopping) {
        mpb_client_t *c = NULL;
        mpb_options_t o;
        mpb_options_init(&o);
        o.name = opt.name;
        int rc = mpb_connect(opt.endpoint, key, keylen, &o, &c);
        if (rc == MPB_EAUTH) {
            log_kv(MPB_LOG_ERROR, "authentication failed", "endpoint", opt.endpoint, "error",
                   mpb_errmsg(c), "pid", pid_s(), NULL);
            mpb_close(&c);
            return 1;
        }
        if (rc) {
            log_kv(MPB_LOG_WARN, "cannot reach the broker; retrying", "endpoint", opt.endpoint,
                   "error", mpb_errmsg(c), "retry_ms", LOG_UINT(delay_ms), "pid", pid_s(), NULL);
            mpb_close(&c);
            struct timespec ts = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
            delay_ms = delay_ms < 5000 ? delay_ms * 2 : 5000;
            continue;
        }
        delay_ms = 200;
        mpb_worker_t *w = NULL;
        if (mpb_worker_open(c, &w)) {
            mpb_close(&c);
            return 1;
        }
        char names[4096];
        snprintf(names, sizeof names, "%s", opt.fns);
        for (char *save, *n = strtok_r(names, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
            mpb_task_fn fn;
            *(void **)&fn = dlsym(lib, n);
            if (!fn) {
                log_kv(MPB_LOG_ERROR, "no such function in the library", "fn", n, "lib", opt.lib,
                       "pid", pid_s(), NULL);
                mpb_worker_close(&w);
                mpb_close(&c);
                return 2;
            }
            if (mpb_worker_add(w, n, fn, NULL)) {
                log_kv(MPB_LOG_ERROR, "cannot serve the function", "fn", n, "error", mpb_errmsg(c),
                       "pid", pid_s(), NULL);
                mpb_worker_close(&w);
                mpb_close(&c);
                return 2;
            }
        }
        mpb_worker_set_concurrency(w, opt.concurrency);
        mpb_worker_set_prefetch(w, opt.prefetch);
        mpb_worker_set_isolate(w, opt.isolate);
        if (opt.forward_output) mpb_worker_set_forward_output(w, 1);
        if (opt.max_tasks) mpb_worker_set_max_tasks(w, opt.max_tasks - done);
        log_kv(MPB_LOG_INFO, "serving", "functions", opt.fns, "lib", opt.lib, "endpoint",
               opt.endpoint, "concurrency", LOG_INT(opt.concurrency), "pid", pid_s(), NULL);
        current = w;
        if (stopping) mpb_worker_stop(w); /* a signal that came before current was set */
        rc = mpb_worker_serve(w);
        current = NULL;
        done += mpb_worker_tasks_done(w);
        if (rc)
            log_kv(MPB_LOG_WARN,
                   stopping ? "stopping without the broker" : "connection lost; reconnecting",
                   "endpoint", opt.endpoint, "error", mpb_errmsg(c), "pid", pid_s(), NULL);
        mpb_worker_close(&w);
        mpb_close(&c);
        if (!rc) break; /* stopped, or max tasks done */
    }
    log_kv(MPB_LOG_INFO, "stopped", "tasks", LOG_UINT(done), "pid", pid_s(), NULL);
    return 0;
}

/* --check: whether the broker counts a worker session from this host (the pod's or the
 * container's hostname), for a probe that tests the worker rather than the broker. */
static int check_registered(const void *key, size_t keylen) {
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    mpb_options_t o;
    mpb_options_init(&o);
    o.connect_timeout_ms = 3000;
    o.op_timeout_ms = 3000;
    o.no_heartbeat_thread = 1;
    o.name = "mpb-worker --check";
    mpb_client_t *c = NULL;
    void *stats = NULL;
    size_t len = 0;
    int rc = mpb_connect(opt.endpoint, key, keylen, &o, &c);
    if (!rc) rc = mpb_call(c, MPB_OP_POOL_STATS, NULL, NULL, 0, 0, &stats, &len);
    if (rc) {
        fprintf(stderr, "mpb-worker --check: %s: %s\n", opt.endpoint, mpb_errmsg(c));
        mpb_close(&c);
        return 1;
    }
    int found = 0;
    mpb_mpreader_t r, w;
    uint32_t n = 0;
    if (!mpb_mpr_init(&r, stats, len) && !mpb_mpr_find(&r, "workers", &w) &&
        !mpb_mpr_array(&w, &n)) {
        for (uint32_t i = 0; i < n; i++) {
            mpb_mpreader_t h;
            const char *s;
            size_t sl;
            if (!mpb_mpr_find(&w, "host", &h) && !mpb_mpr_str(&h, &s, &sl) && sl == strlen(host) &&
                !memcmp(s, host, sl))
                found++;
            if (mpb_mpr_skip(&w, NULL, NULL)) break;
        }
    }
    mpb_free(stats);
    mpb_close(&c);
    if (!found) {
        fprintf(stderr, "mpb-worker --check: no worker of host %s is registered with %s\n", host,
                opt.endpoint);
        return 1;
    }
    printf("ok: %d worker session%s of %s registered\n", found, found == 1 ? "" : "s", host);
    return 0;
}

/* An integer option in min..max into *out; -1 after saying why. */
static int int_option(const char *name, const char *text, int min, int max, int *out) {
    char *end;
    long v = strtol(text, &end, 10);
    if (*end || v < min || v > max) {
        fprintf(stderr, "mpb-worker: %s '%s' is not %d..%d\n", name, text, min, max);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    opt.endpoint = getenv("MPB_ENDPOINT") ? getenv("MPB_ENDPOINT") : "tcp://127.0.0.1:5555";
    opt.concurrency = 1;
    opt.prefetch = MPB_WORKER_PREFETCH;
    opt.name = "mpb-worker";
    const char *lfmt = getenv("MPB_LOG_FORMAT"), *lfmt_from = "MPB_LOG_FORMAT";
    const char *llevel = getenv("MPB_LOG_LEVEL"), *llevel_from = "MPB_LOG_LEVEL";
    enum {
        O_LIB = 256,
        O_FN,
        O_CONC,
        O_PRE,
        O_MAX,
        O_INIT,
        O_NAME,
        O_INIT_ARG,
        O_LFMT,
        O_LLEVEL,
        O_ISOLATE,
        O_FORWARD,
        O_CHECK
    };
    bool check = false;
    static const struct option lopts[] = {
        {"lib",            required_argument, 0, O_LIB     },
        {"fn",             required_argument, 0, O_FN      },
        {"concurrency",    required_argument, 0, O_CONC    },
        {"prefetch",       required_argument, 0, O_PRE     },
        {"max-tasks",      required_argument, 0, O_MAX     },
        {"isolate",        required_argument, 0, O_ISOLATE },
        {"forward-output", no_argument,       0, O_FORWARD },
        {"init",           required_argument, 0, O_INIT    },
        {"init-arg",       required_argument, 0, O_INIT_ARG},
        {"name",           required_argument, 0, O_NAME    },
        {"endpoint",       required_argument, 0, 'e'       },
        {"authkey-file",   required_argument, 0, 'k'       },
        {"log-format",     required_argument, 0, O_LFMT    },
        {"log-level",      required_argument, 0, O_LLEVEL  },
        {"check",          no_argument,       0, O_CHECK   },
        {"help",           no_argument,       0, 'h'       },
        {"version",        no_argument,       0, 'V'       },
        {0,                0,                 0, 0         },
    };
    int ch;
    char *end;
    while ((ch = getopt_long(argc, argv, "e:k:hV", lopts, NULL)) != -1) {
        switch (ch) {
        case O_LIB: opt.lib = optarg; break;
        case O_FN: opt.fns = optarg; break;
        case O_CONC:
            if (int_option("--concurrency", optarg, 1, 4096, &opt.concurrency)) return 2;
            break;
        case O_PRE:
            if (int_option("--prefetch", optarg, 0, 4096, &opt.prefetch)) return 2;
            break;
        case O_MAX:
            opt.max_tasks = strtoull(optarg, &end, 10);
            if (*end || !opt.max_tasks) {
                fprintf(stderr, "mpb-worker: --max-tasks '%s' is not a positive number\n", optarg);
                return 2;
            }
            break;
        case O_FORWARD: opt.forward_output = 1; break;
        case O_ISOLATE:
            opt.isolate_set = true;
            if (!strcmp(optarg, "thread"))
                opt.isolate = MPB_ISOLATE_THREAD;
            else if (!strcmp(optarg, "process"))
                opt.isolate = MPB_ISOLATE_PROCESS;
            else {
                fprintf(stderr, "mpb-worker: --isolate '%s' is not thread or process\n", optarg);
                return 2;
            }
            break;
        case O_INIT: opt.init = optarg; break;
        case O_INIT_ARG: opt.init_arg = optarg; break;
        case O_NAME: opt.name = optarg; break;
        case 'e': opt.endpoint = optarg; break;
        case 'k': opt.keyfile = optarg; break;
        case O_LFMT: lfmt = optarg, lfmt_from = "--log-format"; break;
        case O_LLEVEL: llevel = optarg, llevel_from = "--log-level"; break;
        case O_CHECK: check = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("mpb-worker %s\n", MPBROKER_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (check && optind == argc) {
        void *key;
        size_t keylen;
        char err[300];
        if (mpb_authkey_load(opt.keyfile, &key, &keylen, err, sizeof err)) {
            fprintf(stderr, "mpb-worker --check: %s\n", err);
            return 1;
        }
        int rc = check_registered(key, keylen);
        mpb_free(key);
        return rc;
    }
    if (!opt.lib || !opt.fns || optind < argc) {
        usage(stderr);
        return 2;
    }
    if (opt.forward_output && opt.isolate_set && opt.isolate != MPB_ISOLATE_PROCESS) {
        fprintf(stderr, "mpb-worker: --forward-output runs tasks in processes: not with "
                        "--isolate thread\n");
        return 2;
    }
    if (opt.init_arg && !opt.init) {
        fprintf(stderr, "mpb-worker: --init-arg needs --init SYMBOL\n");
        return 2;
    }
    int json = lfmt ? log_format_parse(lfmt) : 0;
    if (json < 0) {
        fprintf(stderr, "mpb-worker: %s: '%s' is not logfmt or json\n", lfmt_from, lfmt);
        return 2;
    }
    int level = llevel ? log_level_parse(llevel) : MPB_LOG_INFO;
    if (level < 0) {
        fprintf(stderr, "mpb-worker: %s: '%s' is not debug, info, warn or error\n", llevel_from,
                llevel);
        return 2;
    }
    log_setup(level, json);
    void *lib = dlopen(opt.lib, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        log_kv(MPB_LOG_ERROR, "cannot load the library", "lib", opt.lib, "error", dlerror(), "pid",
               pid_s(), NULL);
        return 2;
    }
    void *key;
    size_t keylen;
    char err[300];
    if (mpb_authkey_load(opt.keyfile, &key, &keylen, err, sizeof err)) {
        log_kv(MPB_LOG_ERROR, "cannot load the authkey", "error", err, "pid", pid_s(), NULL);
        return 1;
    }
    if (err[0]) log_kv(MPB_LOG_WARN, err, "pid", pid_s(), NULL);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int status = 0;
    if (!opt.max_tasks) {
        status = serve(lib, key, keylen);
    } else {
        /* Recycling: each child serves max_tasks and exits; a fresh one replaces it. */
        while (!stopping) {
            fflush(stderr);
            child = fork();
            if (child < 0) {
                log_kv(MPB_LOG_ERROR, "cannot start a worker process", "error", strerror(errno),
                       "pid", pid_s(), NULL);
                status = 1;
                break;
            }
            if (child == 0) {
                sa.sa_handler = on_signal;
                sigaction(SIGTERM, &sa, NULL);
                sigaction(SIGINT, &sa, NULL);
                _exit(serve(lib, key, keylen));
            }
            if (stopping) kill(child, SIGTERM); /* a signal between fork() and child = */
            int st;
            while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
            }
            child = 0;
            int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            if (code != 0 && !stopping) {
                status = code;
                /* bad arguments, key or initializer: not worth retrying */
                if (code == 1 || code == 2 || code == 3) break;
            }
        }
    }
    memset(key, 0, keylen);
    mpb_free(key);
    return status;
}
