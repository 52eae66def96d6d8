/* mpb-bench.c - mpbroker's load generator, modelled on redis-benchmark: -c clients (each its own
 * connection and mpb_client_t), -n requests, -P requests in flight per client, -d value bytes,
 * -r key space, -t tests; human, --csv (redis-benchmark's columns) or --json output.
 *
 * It drives the broker through the public header only, as a user's program would: -P 1 makes
 * synchronous calls (mpb_dict_set, ...), one thread per client; -P N keeps N operations in
 * flight per client with mpb_send() and callbacks, and the library coalesces what is queued
 * together into one ZeroMQ message. Latency is measured per operation, from the call (or
 * mpb_send) to its return (or callback).
 *
 * The same harness can drive a bare ZeroMQ ROUTER/DEALER echo (--echo EP), which mpb-bench
 * also serves (--serve-echo EP): frames the size of a dict.get request, P separate messages in
 * flight, no authentication. That is the transport's own limit, what any ZeroMQ broker pays
 * before it does any work.
 *
 *   main: connect -c clients ──> per test: prepare ──> harness threads ──> merge histograms
 *   harness thread: -P 1: one client, blocking calls;  -P N: its clients' fds in one poll(),
 *                   replies run callbacks, each callback issues that slot's next operation.
 *
 * This file holds the options and main; bench.h lists the files that do the rest. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "bench.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mpb-bench [options]              benchmark an mpbrokerd\n"
            "       mpb-bench --echo EP [options]    the same harness against a bare ZeroMQ echo\n"
            "       mpb-bench --serve-echo EP [--serve-echo EP2] [--endpoint-file F]\n"
            "                                        serve that echo (ROUTER, one thread)\n"
            "\n"
            "  -e, --endpoint EP     broker (env MPB_ENDPOINT, default tcp://127.0.0.1:5555)\n"
            "  -k, --authkey-file F  authkey (env MPB_AUTHKEY_FILE, or MPB_AUTHKEY itself)\n"
            "  -c N                  parallel clients, each its own connection (default 50)\n"
            "  -n N                  total operations per test (default 100000)\n"
            "  -P N                  operations in flight per client (default 1: synchronous\n"
            "                        calls, a thread per client; N > 1: mpb_send + callbacks)\n"
            "  -d N                  value size in bytes, a msgpack bin (default 16)\n"
            "  -r N                  random keys key:000000000123 in [0, N) (default: one key,\n"
            "                        key:__rand_int__, as redis-benchmark without -r)\n"
            "  -t bench_tests              comma list (default all): dict.set dict.get dict.incr\n"
            "                        list.append queue.put+get lock.acquire+release pool.apply\n"
            "                        queue.put (or set get incr append queue lock pool put)\n"
            "  --threads N           harness threads (default 0: one per client, as if each\n"
            "                        were its own process); N < -c: each thread polls its\n"
            "                        clients' mpb_fd() in one loop, as redis-benchmark does\n"
            "                        (with -P 1 too: one request in flight per client)\n"
            "  --time S              stop each test after S seconds (fractions allowed)\n"
            "  --warmup S            run the first test S seconds, unmeasured, before it counts\n"
            "  --sequential          with -r: keys in order, not random (-n = -r loads them all)\n"
            "  --csv                 CSV with redis-benchmark --csv's columns\n"
            "  --json                a JSON array of objects, p999_latency_ms added\n"
            "  -q                    quiet: one line per test\n"
            "  -h, --help            this text\n"
            "\n"
            "pool.apply calls square([i]) on a worker (mpb-worker --lib libmpbdemo.so --fn\n"
            "square); it is skipped, with a note, when no worker serves it.\n");
}

static int parse_tests(const char *spec, bool *want) {
    char *s = strdup(spec), *save = NULL;
    if (!s) die("out of memory");
    int n = 0;
    for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        bool found = false;
        for (size_t i = 0; i < BENCH_NTESTS; i++)
            if (!strcmp(tok, bench_tests[i].name) || !strcmp(tok, bench_tests[i].alias)) {
                want[i] = found = true;
                n++;
            }
        if (!found) {
            fprintf(stderr, "mpb-bench: unknown test '%s'\n", tok);
            free(s);
            return -1;
        }
    }
    free(s);
    return n;
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t min) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || v < min) die("bad value for %s: '%s'", opt, s);
    return v;
}

/* Is a worker serving the pool's function? */
static bool pool_served(mpb_client_t *c) {
    uint8_t args[16];
    mpb_mpbuf_t b = args_over(args, sizeof args);
    mpb_mp_array(&b, 1);
    mpb_mp_cstr(&b, POOL_FN);
    void *r = NULL;
    size_t rn = 0;
    if (b.err || mpb_call(c, MPB_OP_POOL_FNINFO, NULL, b.data, b.len, 0, &r, &rn)) return false;
    int64_t workers = mp_first_uint(r, rn);
    mpb_free(r);
    return workers > 0;
}

int main(int argc, char **argv) {
    void *echo_ctx = NULL;
    bench_t B = {0};
    B.endpoint = getenv("MPB_ENDPOINT");
    if (!B.endpoint || !*B.endpoint) B.endpoint = "tcp://127.0.0.1:5555";
    B.clients = 50;
    B.n = 100000;
    B.pipeline = 1;
    B.dsize = 16;
    B.threads = 0;
    const char *keyfile = NULL, *tests = NULL, *epfile = NULL;
    char *serve[16];
    int nserve = 0;
    bool threads_set = false;
    enum { O_CSV = 256, O_JSON, O_TIME, O_ECHO, O_SERVE, O_EPFILE, O_THREADS, O_SEQ, O_WARMUP };
    static const struct option longopts[] = {
        {"endpoint",      required_argument, NULL, 'e'      },
        {"authkey-file",  required_argument, NULL, 'k'      },
        {"csv",           no_argument,       NULL, O_CSV    },
        {"json",          no_argument,       NULL, O_JSON   },
        {"time",          required_argument, NULL, O_TIME   },
        {"echo",          required_argument, NULL, O_ECHO   },
        {"serve-echo",    required_argument, NULL, O_SERVE  },
        {"endpoint-file", required_argument, NULL, O_EPFILE },
        {"threads",       required_argument, NULL, O_THREADS},
        {"sequential",    no_argument,       NULL, O_SEQ    },
        {"warmup",        required_argument, NULL, O_WARMUP },
        {"help",          no_argument,       NULL, 'h'      },
        {NULL,            0,                 NULL, 0        },
    };
    int o;
    while ((o = getopt_long(argc, argv, "e:k:c:n:P:d:r:t:qh", longopts, NULL)) != -1) {
        switch (o) {
        case 'e': B.endpoint = optarg; break;
        case 'k': keyfile = optarg; break;
        case 'c': B.clients = (int)parse_u64("-c", optarg, 1); break;
        case 'n': B.n = parse_u64("-n", optarg, 1); break;
        case 'P': B.pipeline = (int)parse_u64("-P", optarg, 1); break;
        case 'd': B.dsize = parse_u64("-d", optarg, 0); break;
        case 'r': B.keyspace = parse_u64("-r", optarg, 0); break;
        case 't': tests = optarg; break;
        case 'q': B.quiet = true; break;
        case O_CSV: B.out = OUT_CSV; break;
        case O_JSON: B.out = OUT_JSON; break;
        case O_TIME: {
            char *end;
            B.time_s = strtod(optarg, &end);
            if (*end || B.time_s <= 0) die("bad value for --time: '%s'", optarg);
            break;
        }
        case O_ECHO:
            B.echo = true;
            B.endpoint = optarg;
            break;
        case O_SERVE:
            if (nserve == 16) die("too many --serve-echo endpoints");
            serve[nserve++] = optarg;
            break;
        case O_EPFILE: epfile = optarg; break;
        case O_THREADS:
            B.threads = (int)parse_u64("--threads", optarg, 0);
            threads_set = true;
            break;
        case O_SEQ: B.sequential = true; break;
        case O_WARMUP: {
            char *end;
            B.warmup_s = strtod(optarg, &end);
            if (*end || !(B.warmup_s >= 0 && B.warmup_s <= 600))
                die("bad value for --warmup: '%s' (seconds, 0 to 600)", optarg);
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mpb-bench: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (nserve) return serve_echo(serve, nserve, epfile);
    if (B.clients > 10000 || B.pipeline > 100000 || B.dsize > (64u << 20))
        die("-c, -P or -d out of range");
    if (B.threads == 0 || B.threads > B.clients) B.threads = B.clients;
    /* -P 1 makes blocking calls, a thread per client, unless fewer threads were asked for:
     * then each client keeps one request in flight through mpb_send, as redis-benchmark does */
    B.async = B.pipeline > 1 || (threads_set && B.threads < B.clients);

    bool want[BENCH_NTESTS] = {0};
    if (tests) {
        if (parse_tests(tests, want) <= 0) return 2;
    } else {
        for (size_t i = 0; i < BENCH_NTESTS; i++)
            want[i] = true;
    }

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);

    /* the value: dsize bytes of 'x', as a msgpack bin */
    B.val = xcalloc(1, B.dsize + 8);
    mpb_mpbuf_t vb = args_over(B.val, B.dsize + 8);
    if (mpb_mp_bin_head(&vb, B.dsize)) die("-d %zu: too big for a msgpack bin", B.dsize);
    memset(B.val + vb.len, 'x', B.dsize);
    B.vallen = vb.len + B.dsize;
    B.echo_frame = echo_frame_size(&B);

    if (!B.echo) {
        char err[256];
        if (mpb_authkey_load(keyfile, &B.authkey, &B.keylen, err, sizeof err))
            die("authkey: %s", err);
    }
    B.cls = xcalloc((size_t)B.clients, sizeof *B.cls);
    for (int i = 0; i < B.clients; i++) {
        bclient_t *cl = &B.cls[i];
        cl->B = &B;
        cl->id = i;
        cl->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) ^ (uint64_t)now_ns();
        if (!cl->rng) cl->rng = 1;
        cl->slots = xcalloc((size_t)B.pipeline, sizeof *cl->slots);
        cl->buflen = B.vallen + 128 + 2 * B.echo_frame;
        cl->buf = xcalloc(1, cl->buflen);
        hist_init(&cl->h);
        cl->fd = -1;
        if (B.echo) {
            /* one context for every echo client, as libmpb shares one among its clients */
            if (!echo_ctx) echo_ctx = zmq_ctx_new();
            cl->sock = zmq_socket(echo_ctx, ZMQ_DEALER);
            int zero = 0;
            zmq_setsockopt(cl->sock, ZMQ_LINGER, &zero, sizeof zero);
            if (!cl->sock || zmq_connect(cl->sock, B.endpoint) != 0)
                die("cannot connect to %s: %s", B.endpoint, zmq_strerror(zmq_errno()));
            size_t fl = sizeof cl->fd;
            zmq_getsockopt(cl->sock, ZMQ_FD, &cl->fd, &fl);
            memset(cl->buf, 'e', cl->buflen);
            continue;
        }
        mpb_options_t opts;
        mpb_options_init(&opts);
        opts.name = "mpb-bench";
        int rc = mpb_connect(B.endpoint, B.authkey, B.keylen, &opts, &cl->c);
        if (rc) die("client %d: %s", i, cl->c ? mpb_errmsg(cl->c) : mpb_strerror(rc));
        cl->fd = mpb_fd(cl->c);
    }
    if (B.echo) { /* a round trip on each first, so the timed part finds them connected */
        for (int i = 0; i < B.clients; i++) {
            bclient_t *cl = &B.cls[i];
            uint32_t bad = UINT32_MAX;
            memcpy(cl->buf, &bad, sizeof bad);
            if (zmq_send(cl->sock, cl->buf, B.echo_frame, 0) < 0) die("echo: cannot send");
            zmq_pollitem_t it = {cl->sock, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&it, 1, 5000) <= 0) die("no echo from %s within 5 s", B.endpoint);
            zmq_recv(cl->sock, cl->buf, cl->buflen, 0);
        }
    }

    if (B.out == OUT_CSV)
        printf("\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\","
               "\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n");
    if (B.out == OUT_JSON) printf("[");
    int status = 0;
    bool set_ran = false;
    bool warm = B.warmup_s <= 0;
    if (B.echo) {
        result_t r;
        warm_up(&B, &echo_test);
        run_test(&B, &echo_test, &r);
        print_result(&B, &r);
        if (r.errors || !r.requests) status = 1;
    }
    for (size_t i = 0; i < BENCH_NTESTS && !B.echo && !g_stop; i++) {
        if (!want[i]) continue;
        const test_t *t = &bench_tests[i];
        if (t->pool && !pool_served(B.cls[0].c)) {
            fprintf(stderr,
                    "mpb-bench: %s: skipped: no worker serves '%s' (start one: mpb-worker "
                    "--lib libmpbdemo.so --fn %s)\n",
                    t->name, POOL_FN, POOL_FN);
            continue;
        }
        if (t == &bench_tests[1] && !set_ran) preload(&B);
        if (!warm) {
            warm_up(&B, t);
            warm = true;
        }
        result_t r;
        if (run_test(&B, t, &r)) {
            status = 1;
            continue;
        }
        if (t == &bench_tests[0]) set_ran = true;
        print_result(&B, &r);
        if (r.errors) status = 1;
    }
    if (B.out == OUT_JSON) printf("%s]\n", B.json_rows ? "\n" : "");
    fflush(stdout);

    for (int i = 0; i < B.clients; i++) {
        bclient_t *cl = &B.cls[i];
        mpb_close(&cl->c);
        if (cl->sock) zmq_close(cl->sock);
        hist_free(&cl->h);
        free(cl->slots);
        free(cl->buf);
    }
    if (echo_ctx) zmq_ctx_term(echo_ctx);
    free(B.cls);
    free(B.val);
    mpb_free(B.authkey);
    return status;
}
