/* th_pool.h - the pool tests' part of the harness (th_pool.c, in the th library): a fresh
 * broker per test (tp_broker), worker processes (mpb-worker started with fork/exec, or a forked
 * child serving through the worker API) tracked by pid and killed by process group at the end,
 * readers of pool.stats / pool.fninfo, and msgpack builders and checkers. The programs that
 * link it are built with MPB_WORKER_PATH, MPB_DEMO_LIB and MPB_TESTFNS_LIB. */
#ifndef MPB_TH_POOL_H
#define MPB_TH_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mpb/ops.h"
#include "th.h"

/* The broker of the running test, started by the tp_setup_* fixtures. */
extern th_broker_t tp_broker;

/* ---- worker processes ---- */

/* Settings of the next tp_start_worker: --init-arg, --isolate (NULL: not given) and
 * --forward-output. */
extern const char *tp_worker_init_arg;
extern const char *tp_worker_isolate;
extern bool tp_worker_forward;

/* Adds pid to the worker processes the teardown stops (tp_start_worker and tp_start_child do). */
void tp_track(pid_t pid);
/* In a new child: its own process group (so a kill takes its children too), killed if the
 * test process dies, stderr to a log in the broker's directory. */
void tp_child_prepare(const char *tag);
/* Starts mpb-worker serving fns (comma-separated) from lib. prefetch < 0: the default;
 * max_tasks 0: no recycling; init NULL: none. Returns its pid. */
pid_t tp_start_worker(const char *lib, const char *fns, int conc, int prefetch,
                      unsigned long max_tasks, const char *init);
/* A gate holds forked children back until the test lets them go (one byte each). */
typedef struct tp_gate {
    int fd[2];
} tp_gate_t;

void tp_gate_open(tp_gate_t *g);
void tp_gate_release(tp_gate_t *g);
void tp_gate_close(tp_gate_t *g);
/* Forks a child running fn(arg) (it exits with the return value); with a gate, only once the
 * gate lets it go. Returns its pid.
 *
 * Fork children BEFORE the test process connects a client: a fork while another thread (the
 * client's heartbeat thread, ZeroMQ's I/O threads) is inside ASan's allocator leaves that
 * allocator's lock held in the child, whose first threads then hang (GCC 12's libasan). A
 * child that must start later waits behind a gate. */
pid_t tp_start_child(int (*fn)(void *arg), void *arg, tp_gate_t *gate);
/* SIGKILL to pid's process group (and pid), then reaps it. */
void tp_kill_worker(pid_t pid);
/* Waits up to timeout_s for a tracked child to exit; its exit status (128 + signal when
 * killed by one), or -1 if it had to be killed. */
int tp_wait_child(pid_t pid, int timeout_s);
/* SIGTERM to every worker process (mpb-worker stops cleanly: its session ends at once), and
 * waits for them. Returns how many did not exit with 0. */
int tp_stop_all_workers(void);

/* ---- msgpack ---- */

/* [0, 1, ..., n-1] */
void tp_items_range(mpb__buf_t *b, uint32_t n);
/* [x] */
const uint8_t *tp_args1(int64_t x, size_t *len);
/* Checks that res is an array of n integers with res[i] == f(i). Returns the first index
 * that differs, -2 for a malformed or wrong-length array, or -1 when all match. */
long tp_check_ints(const void *res, size_t len, uint32_t n, int64_t (*f)(int64_t));
/* x * x, the demo library's square. */
int64_t tp_sq(int64_t x);
/* The msgpack integer v, or INT64_MIN when it is not one. */
int64_t tp_unpack_int(const void *v, size_t n);

/* ---- pool.stats and pool.fninfo ---- */

typedef struct tp_fnstat {
    uint64_t workers, queued, running, done, failed, paused, prefetched, canceled;
} tp_fnstat_t;

typedef struct tp_wstat {
    int64_t running, prefetched, concurrency, session;
    uint64_t done, failed;
    uint64_t steals, stolen, retries, refused;
    uint32_t ntasks;    /* running tasks listed, [task_id, age_ms] each */
    int64_t oldest_age; /* of those, the first's age in ms (-1: none) */
} tp_wstat_t;

/* A caller's entry in pool.stats. */
typedef struct tp_cstat {
    int64_t queued, running, held, queued_bytes, held_bytes;
    bool paused;
} tp_cstat_t;

/* The counters of function fn (all zero if the broker does not know it). */
tp_fnstat_t tp_fn_stat(mpb_client_t *c, const char *fn);
/* The counters of the worker whose session belongs to process pid: 1 found, 0 not. */
int tp_worker_stat(mpb_client_t *c, pid_t pid, tp_wstat_t *out);
/* The entry of the caller whose session is sid: 1 found (it has tasks), 0 not. */
int tp_caller_stat(mpb_client_t *c, uint64_t sid, tp_cstat_t *out);
/* The length of the array under field in pool.stats (0 if there is none). */
uint32_t tp_stats_count(mpb_client_t *c, const char *field);
/* Functions in pool.stats. */
uint32_t tp_fns_count(mpb_client_t *c);
/* Jobs in pool.stats (all sessions). */
uint32_t tp_jobs_count(mpb_client_t *c);
/* pool.fninfo: how many workers serve fn. */
uint64_t tp_fn_workers(mpb_client_t *c, const char *fn);
/* Waits (up to timeout_ms) until at least n workers serve fn; fails the test if not. */
void tp_wait_workers(mpb_client_t *c, const char *fn, uint64_t n, int timeout_ms);
/* Waits through watch (up to 10 s) until n workers serve fn, then opens c's pool (the test
 * fails if it cannot). */
mpb_pool_t *tp_pool_ready(mpb_client_t *watch, const char *fn, uint64_t n, mpb_client_t *c);

/* ---- callbacks that count ---- */

typedef struct tp_tally {
    int ok, canceled, other;
} tp_tally_t;

/* mpb_send callbacks: count into the tp_tally_t arg (errors by whether they are MPB_ECANCELED). */
void tp_tally_ok(void *arg, const void *res, size_t len);
void tp_tally_err(void *arg, int err, const char *msg);

/* ---- raw pool ops, for what the library does not expose ---- */

enum { TP_JOB_NIL, TP_JOB_FALSE, TP_JOB_ID };

/* pool.submit FN JOB [[[x]] * ntasks]: JOB nil (a new job), false (none) or the id job.
 * Returns the reply code; *job_out and *first from the reply when 0. */
int tp_raw_submit(mpb_client_t *c, const char *fn, int mode, uint64_t job, uint32_t ntasks,
                  int64_t x, uint64_t *job_out, uint64_t *first);
/* pool.take over every id, not waiting: how many finished tasks it took (0 if none ready). */
uint32_t tp_raw_take(mpb_client_t *c);

/* ---- task counters and running tasks ---- */

/* n 32-bit counters in the file name of the broker's directory, zeroed and mapped (shared),
 * and $MPB_TEST_COUNTS naming it for the workers started next (testfns count there). */
uint32_t *tp_counts_file(const char *name, uint32_t n);
/* Waits (up to 10 s) until the one-slot worker w runs a task (pool.stats lists it with its
 * age); fails the test if not. */
void tp_wait_running(mpb_client_t *mon, pid_t w);

/* Runs `mpb pool map FN ITEMS --output` against tp_broker; its stderr in err (n bytes at most,
 * NUL-terminated). Returns pclose()'s status. */
int tp_cli_map_output(const char *fn, const char *items, char *err, size_t n);

/* ---- /metrics, from a broker started with --http 127.0.0.1:0 ---- */

/* The page in a new NUL-terminated buffer (free() it); fails the test if it cannot get it. */
char *tp_metrics_get(void);
/* Sleeps ms milliseconds, signals or not. */
void tp_sleep_ms(int ms);

/* The end of every test: the broker is alive and serves a well-behaved client (a map over a
 * fresh worker, a dict incr). */
void tp_check_healthy(void);

/* ---- per-test fixtures (cmocka setup/teardown): a fresh tp_broker for each test ---- */

/* A broker with the default settings. */
int tp_setup_broker(void **state);
/* One sample of the broker's /metrics page (a broker started with --http 127.0.0.1:0). */
double tp_pool_metric(const char *series);
/* A broker with /metrics. */
int tp_setup_http_broker(void **state);
/* A fast TTL: a dead worker's tasks go back to the queue about a second after it died. */
int tp_setup_fast_broker(void **state);
/* Workers get SIGTERM first, so that mpb-worker stops cleanly and (under ASan) reports leaks;
 * the broker must exit 0 with a clean log. */
int tp_teardown_broker(void **state);

#endif
