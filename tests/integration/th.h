/* th.h - the integration test harness (the th library): a real mpbrokerd on a free port in a
 * temporary directory, clients connected to it, forked client processes (th_child.h has the
 * exec'd kind), programs run with their output captured (th_run.c), readers of what the broker
 * says about an object and of its log, and the fixtures of a suite that shares one broker.
 * th_pool.h adds the pool tests' part, rawclient.h a protocol client by hand. */
#ifndef MPB_TH_H
#define MPB_TH_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/types.h>

#include <cmocka.h>

#include "mpb/mpb.h"
#include "mpb/ops.h"
#include "mpbproto.h"

typedef struct th_broker {
    pid_t pid;
    char dir[256];      /* temporary directory, removed by th_broker_stop */
    char endpoint[512]; /* as bound: tcp://127.0.0.1:PORT */
    char keyfile[300];  /* the authkey the broker generated */
    char log[300];      /* its stderr */
} th_broker_t;

/* Starts mpbrokerd with --listen tcp://127.0.0.1:0 and the extra arguments (NULL-terminated
 * list of strings), waits until it accepts a client. Fails the test if it does not start. */
void th_broker_start(th_broker_t *b, ...);
/* Stops b with sig (SIGKILL: a crash) and waits for it, keeping its directory. Accepts a
 * stopped broker. */
void th_broker_kill(th_broker_t *b, int sig);
/* Stops b with sig (SIGKILL: a crash; 0: it is not running) and starts it again on the same
 * data dir and endpoint, with the extra arguments (NULL-terminated) instead of the first
 * start's. Fails the test if it does not start. Its log goes on in b->log. */
void th_broker_restart(th_broker_t *b, int sig, ...);
/* The same, for a start that must fail: returns the broker's exit status (never 0); why is
 * in b->log. b is left stopped (th_broker_restart() may start it again). */
int th_broker_restart_fails(th_broker_t *b, int sig, ...);
/* Brokers started from now on run with RLIMIT_NOFILE n:n (soft and hard; 0: inherited). */
void th_broker_set_nofile(int n);
/* SIGTERM, wait, remove the directory. Accepts a stopped broker. */
void th_broker_stop(th_broker_t *b);
/* The last test of a suite: SIGTERM, then asserts that the broker exits with status 0 within
 * 20 s and that its log holds no sanitizer report (a leak or a bad access in the broker shows
 * up there, not in this process); stops it either way. */
void th_broker_stop_checked(th_broker_t *b);
/* The end of a suite: closes c, checks that b still runs, closes the suite's client *shared
 * and stops b with th_broker_stop_checked (it shuts down cleanly, with nothing leaked). */
void th_assert_survived(th_broker_t *b, mpb_client_t **c, mpb_client_t **shared);
/* The common end of a suite's last test: through c, dict.set of "k" to v in dict name, then
 * dict.get of it, must give v back. */
void th_assert_dict_roundtrip(mpb_client_t *c, const char *name, int64_t v);
/* The same with the string key and value (msgpack str) given: what crosses the wire is known. */
void th_assert_str_roundtrip(mpb_client_t *c, const char *name, const char *key, const char *value);
/* Whether the broker process is still running. */
int th_broker_alive(th_broker_t *b);
/* Connects with the broker's key; fails the test on error. */
mpb_client_t *th_connect(th_broker_t *b);
/* Makes b's key known to th_authkey_for() (a child told of its parent's broker). */
void th_broker_adopt(th_broker_t *b);
/* The key of the broker the harness started (or adopted) at endpoint, or NULL. */
const char *th_authkey_for(const char *endpoint, size_t *len);
/* Connects with the given options; returns the mpb_connect status. */
int th_connect_opts(th_broker_t *b, const mpb_options_t *o, mpb_client_t **out);
/* Connects without the heartbeat thread: the client heartbeats only from within its calls.
 * Fails the test on error. */
mpb_client_t *th_connect_quiet(th_broker_t *b);
/* The broker's key, read from its file (static buffer). */
const char *th_authkey(th_broker_t *b, size_t *len);
/* Forks n children; each runs child(index, arg) and exits with its return value. Waits for
 * all (bounded by timeout_s: stragglers are killed) and returns how many failed. Fork before
 * the parent connects a client: a child forked while the parent's client threads run may
 * inherit a held allocator lock (seen under ASan). */
int th_spawn(int n, int (*child)(int idx, void *arg), void *arg, int timeout_s);
/* Forks one child running child(0, arg); returns its pid (not waited for). */
pid_t th_fork(int (*child)(int idx, void *arg), void *arg);
/* fork() after flushing stdio (a child must not write the parent's buffered output again);
 * a failed fork fails the test. Returns 0 in the child, like fork(). */
pid_t th_fork_bare(void);
/* Waits up to timeout_s for pid; returns its exit status, or -1 if it had to be killed. */
int th_wait(pid_t pid, int timeout_s);
/* qsort/bsearch order of int64_t. */
int th_cmp_i64(const void *a, const void *b);
/* A msgpack string / int in a static rotating buffer (valid for the next 7 calls). */
const uint8_t *th_str(const char *s, size_t *len);
/* A msgpack bin 32 of n bytes 'x' (malloc'd: free it), 5 + n bytes long. Fails the test if
 * there is no memory. */
uint8_t *th_big_bin(size_t n);
/* A child that must read nothing more stops itself (SIGSTOP), its output sent to /dev/null
 * first: stopped, it must not hold the test's output open (ctest waits for every holder). */
void th_stop_self_quietly(void);
const uint8_t *th_int(int64_t v, size_t *len);
int64_t th_now_ms(void);
/* Reads n records of size bytes each from fd into out, waiting up to timeout_ms in all (EOF
 * or an error ends it early); returns how many whole records arrived. */
int th_read_records(int fd, void *out, size_t size, int n, int timeout_ms);
/* Sends "METHOD PATH HTTP/1.0" to 127.0.0.1:port and reads the whole response (5 s at most
 * per read) into a new NUL-terminated buffer: free() it. Fails the test if it cannot connect,
 * send or read. */
char *th_http_request(int port, const char *method, const char *path);

/* One msgpack value, borrowed bytes: TH_RAW(0xc4, 0x01, 'x') for bytes written out, th_mv_str()
 * and th_mv_int() in th_str()/th_int()'s rotating buffers. */
typedef struct th_mv {
    const uint8_t *p;
    size_t n;
} th_mv_t;
#define TH_RAW(...)                                                                                \
    ((th_mv_t){(const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})})
th_mv_t th_mv_str(const char *s);
th_mv_t th_mv_int(int64_t x);

/* How many times mpb_objects (pattern "*") lists the object kind/name; its size into *size
 * (when not NULL). */
int th_objects_find(mpb_client_t *c, const char *kind, const char *name, uint64_t *size);

/* Fail the test with the error's name and the client's message when rc is not 0. */
void th_assert_ok(int rc, mpb_client_t *c);
/* Fail it unless rc is want and c's message contains sub1 and sub2 (each may be NULL). */
void th_assert_err(int rc, int want, mpb_client_t *c, const char *sub1, const char *sub2);
/* Fail it unless the bytes are equal, showing both (their first 96 bytes) in hex. */
void th_assert_bytes(const void *got, size_t gn, const void *want, size_t wn);

/* The value under field of mpb_obj_describe(path), as a reader positioned on it, in *buf
 * (mpb_free it). Returns 0, or -1 (no such object or field; *buf is then not set). */
int th_describe_get(mpb_client_t *c, const char *path, const char *field, void **buf, mpb__rd_t *v);
/* An integer field of mpb_obj_describe(path); a boolean gives 0 or 1 and an array its length.
 * INT64_MIN when absent or of another type. */
int64_t th_describe_int(mpb_client_t *c, const char *path, const char *field);
/* Polls th_describe_int(path, field) every 5 ms until it equals want; false if it still does
 * not after timeout_ms. Checks at least once, and once more after the deadline. */
bool th_wait_field(mpb_client_t *c, const char *path, const char *field, int64_t want,
                   int timeout_ms);
/* The value of the sample in the Prometheus text page whose name and labels are exactly series
 * ("name{labels}"); absent when the page has none. */
double th_metric(const char *text, const char *series, double absent);
/* An integer field of mpb_broker_info(); INT64_MIN when the call fails or the field is absent
 * or not an integer. */
int64_t th_info_int(mpb_client_t *c, const char *field);
/* Fails the test unless the msgpack map r has key and its value is the string want. */
void th_assert_map_str(const mpb__rd_t *r, const char *key, const char *want);
/* A reader on the first element of the msgpack array in buf; fails the test unless buf starts
 * with an array of n elements. */
mpb__rd_t th_rd_array(const void *buf, size_t len, uint32_t n);
/* Fails the test unless buf holds exactly an array of n integers: first, first + step, ... */
void th_assert_int_seq(const void *buf, size_t len, uint32_t n, int64_t first, int64_t step);
/* The unsigned value of key in the msgpack map r; fails the test if it is missing or not one. */
uint64_t th_map_uint(const mpb__rd_t *r, const char *key);
/* Fails the test unless broker info's field is the string want. */
void th_assert_info_str(mpb_client_t *c, const char *field, const char *want);
/* dict[name][key] as an int64; fails the test if it cannot be read. */
int64_t th_dict_i64(mpb_client_t *c, const char *name, const char *key);
/* The HTTP port of a broker started with --http ADDR:0: from DATA_DIR/http.addr, else its
 * log line, waiting up to 5 s for either. -1 if neither says. */
int th_http_port(const th_broker_t *b);
/* How many lines of b's log contain what. 0 when the log cannot be read. */
int th_log_count(const th_broker_t *b, const char *what);
/* Whether a line of b's log holds a, and b2 too unless it is NULL. */
bool th_log_has_line(const th_broker_t *b, const char *a, const char *b2);
/* Under AddressSanitizer, freed memory sits in its quarantine (256 MB) and would count as held
 * in a broker's RSS: a broker started between these two frees at once (no effect on other
 * builds). Returns the caller's ASAN_OPTIONS (NULL: none) for th_asan_restore(). */
char *th_asan_quarantine_off(void);
void th_asan_restore(char *was);
/* Polls b's log every 20 ms until a line contains what; false if none does after timeout_ms.
 * Checks at least once, and once more after the deadline. */
bool th_wait_log_line(const th_broker_t *b, const char *what, int timeout_ms);
/* ---- running a program and capturing what it writes ---- */

typedef struct th_run {
    int status;        /* exit status, 128 + signal, or -1 if it had to be killed */
    int64_t ms;        /* from the fork to its end */
    char out[1 << 16]; /* stdout (with a pty, stderr too), NUL-terminated */
    char err[1 << 16]; /* stderr */
} th_run_t;

typedef struct th_run_opts {
    int kill_ms;       /* > 0: SIGTERM after that long */
    int timeout_ms;    /* reading stops and it gets SIGKILL after that long (0: 20 s) */
    bool pty;          /* stdin and stdout a pseudo-terminal; else pipes, stdin /dev/null */
    const char *input; /* pty: typed once until shows on it and the line editor is raw */
    const char *until;
} th_run_opts_t;

/* Runs argv (NULL-terminated; argv[0] a path) with o (NULL: the defaults), reading stdout and
 * stderr as they come (neither may fill and block it) into r. Returns r->status. */
int th_run(const char *const *argv, const th_run_opts_t *o, th_run_t *r);

/* ---- fixtures: cmocka setup/teardown functions ----
 * A suite whose tests share one broker started with the default options names it (and the
 * client its tests share, or NULL) first thing in main, then runs
 * cmocka_run_group_tests(tests, th_suite_setup, th_suite_teardown). A suite that needs other
 * options or more per test writes its own setup/teardown around the same calls; the pool tests
 * use a fresh broker per test (th_pool.h). */
enum { TH_SUITE_ENV = 1 }; /* the setup also points MPB_ENDPOINT/MPB_AUTHKEY_FILE at it */
void th_suite(th_broker_t *b, mpb_client_t **c, int flags);
/* Starts the suite's broker, sets the environment if asked, connects the client if any. */
int th_suite_setup(void **state);
/* Closes the client and stops the broker. */
int th_suite_teardown(void **state);
/* MPB_ENDPOINT and MPB_AUTHKEY_FILE name b, MPB_AUTHKEY is unset: programs run from now on
 * (the mpb CLI) reach b without flags. */
void th_use_broker_env(const th_broker_t *b);

/* The resident size (VmRSS) of process pid in kB, or -1. */
long th_rss_kb(pid_t pid);
/* Path of a built program (mpb CLI etc.), from the build. */
extern const char *th_mpb_cli;

#endif
