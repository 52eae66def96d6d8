/* th.c - see th.h. The broker runs as a child process; everything it writes stays in its
 * temporary directory, which is removed when the test stops it (also at exit). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "th.h"

const char *th_mpb_cli = MPB_CLI_PATH;
static th_broker_t *running[8];
/* Set in a process th_fork/th_spawn made: a failure there must end that process, not jump back
 * into the test runner (which would run the rest of the suite a second time in the child). */
static int in_child;

int64_t th_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int th_read_records(int fd, void *out, size_t size, int n, int timeout_ms) {
    int64_t end = th_now_ms() + timeout_ms;
    size_t want = (size_t)n * size, got = 0;
    while (got < want) {
        int64_t left = end - th_now_ms();
        if (left <= 0) break;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        ssize_t k = read(fd, (char *)out + got, want - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    return (int)(got / size);
}

char *th_http_request(int port, const char *method, const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail_msg("connect to 127.0.0.1:%d: %s", port, strerror(errno));
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: localhost\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t k = read(fd, buf + len, cap - len - 1);
        if (k < 0) fail_msg("read from HTTP: %s", strerror(errno));
        if (k == 0) break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = 0;
    return buf;
}

/* Every broker this process started and has not seen exit: a test that fails between its
 * start and its stop leaves one (its th_broker_t on a stack that is gone), and stop_all must
 * still end it, or it holds ctest's pipes until the test's timeout. */
static pid_t spawned[32];
static pid_t spawner;

static void spawned_set(pid_t old, pid_t now) {
    for (int i = 0; i < 32; i++)
        if (spawned[i] == old) {
            spawned[i] = now;
            return;
        }
}

/* b's broker has exited and been waited for. */
static void gone(th_broker_t *b) {
    spawned_set(b->pid, 0);
    b->pid = 0;
}

static bool spawned_has(pid_t pid) {
    for (int i = 0; i < 32; i++)
        if (pid > 0 && spawned[i] == pid) return true;
    return false;
}

static void stop_all(void) {
    if (getpid() != spawner) return; /* a forked child's exit stops nothing of its parent's */
    for (int i = 0; i < 8; i++)
        if (running[i] && spawned_has(running[i]->pid)) th_broker_stop(running[i]);
    for (int i = 0; i < 32; i++)
        if (spawned[i] > 0) {
            kill(spawned[i], SIGKILL);
            waitpid(spawned[i], NULL, 0);
            spawned[i] = 0;
        }
}

static int read_file(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t k = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[k] = 0;
    while (k && (buf[k - 1] == '\n' || buf[k - 1] == '\r'))
        buf[--k] = 0;
    return (int)k;
}

/* The last n-1 bytes of a file (a broker's log), for a failure message. */
static void read_file_tail(const char *path, char *buf, size_t n) {
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fseek(f, 0, SEEK_END) == 0) {
        long end = ftell(f);
        if (end > (long)n - 1)
            fseek(f, end - ((long)n - 1), SEEK_SET);
        else
            rewind(f);
    }
    size_t k = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[k] = 0;
}

/* Brokers whose key th_authkey_for() may give: those started here and those a child was
 * told about (th_broker_adopt). Unlike running[], never stopped by this process's exit. */
static th_broker_t *known[8];

static int broker_nofile;

void th_broker_set_nofile(int n) {
    broker_nofile = n;
}

/* Runs the broker with argv in b's directory (its log appended to b->log) and waits until it
 * has written its endpoint file. Returns 0, or -1 with its log in why if it exited first. */
static int spawn(th_broker_t *b, const char **argv, char *why, size_t whylen) {
    char epfile[300];
    snprintf(epfile, sizeof epfile, "%s/endpoint", b->dir);
    unlink(epfile);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *lf = freopen(b->log, "a", stderr);
        (void)lf;
        dup2(2, 1);              /* nothing of the test's own stdout, which ctest waits on */
        if (broker_nofile > 0) { /* as prlimit --nofile=N:N, or a container's limit */
            struct rlimit rl = {(rlim_t)broker_nofile, (rlim_t)broker_nofile};
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(126);
        }
        unsetenv("MPB_AUTHKEY");
        unsetenv("MPB_AUTHKEY_FILE");
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    b->pid = pid;
    spawned_set(0, pid);
    th_broker_adopt(b);
    for (int i = 0; i < 8; i++)
        if (!running[i] || running[i] == b) {
            running[i] = b;
            break;
        }
    for (int i = 0; i < 500; i++) { /* up to 5 s */
        if (read_file(epfile, b->endpoint, sizeof b->endpoint) > 0 && access(b->keyfile, R_OK) == 0)
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            gone(b);
            read_file(b->log, why, whylen);
            return -1;
        }
        usleep(10000);
    }
    fail_msg("mpbrokerd did not start within 5 s");
    return -1;
}

/* The broker's arguments: its own, then the extra ones up to a NULL. */
static int broker_argv(th_broker_t *b, const char **argv, const char *listen, va_list ap) {
    static char epfile[300], data[300];
    snprintf(epfile, sizeof epfile, "%s/endpoint", b->dir);
    snprintf(data, sizeof data, "%s/data", b->dir);
    const char *fixed[] = {MPBROKERD_PATH, "--listen",   listen, "--endpoint-file",
                           epfile,         "--data-dir", data};
    int argc = 7;
    memcpy(argv, fixed, sizeof fixed);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 62) {
        /* a key of the test's own: the broker reads it instead of making one in its data dir */
        if (argc > 7 && !strcmp(argv[argc - 1], "--authkey-file"))
            snprintf(b->keyfile, sizeof b->keyfile, "%s", a);
        argv[argc++] = a;
    }
    argv[argc] = NULL;
    return argc;
}

void th_broker_start(th_broker_t *b, ...) {
    static int registered;
    if (!registered++) {
        spawner = getpid();
        atexit(stop_all);
    }
    memset(b, 0, sizeof *b);
    snprintf(b->dir, sizeof b->dir, "/tmp/mpbtest.XXXXXX");
    if (!mkdtemp(b->dir)) fail_msg("mkdtemp: %s", strerror(errno));
    snprintf(b->keyfile, sizeof b->keyfile, "%s/data/authkey", b->dir);
    snprintf(b->log, sizeof b->log, "%s/broker.log", b->dir);
    const char *argv[64];
    va_list ap;
    va_start(ap, b);
    broker_argv(b, argv, "tcp://127.0.0.1:0", ap);
    va_end(ap);
    char log[2000] = "";
    if (spawn(b, argv, log, sizeof log)) fail_msg("mpbrokerd exited at start: %s", log);
}

void th_broker_kill(th_broker_t *b, int sig) {
    if (b->pid <= 0) return;
    kill(b->pid, sig);
    if (th_wait(b->pid, 10) < 0) fail_msg("mpbrokerd did not stop on signal %d", sig);
    gone(b);
}

/* Stops b with sig and starts it again on its endpoint with the flags in ap. It must come up
 * (the test fails otherwise), or, with refuse, must refuse to: then its exit status. */
static int restart(th_broker_t *b, int sig, bool refuse, va_list ap) {
    char listen[512];
    const char *argv[64];
    th_broker_kill(b, sig);
    snprintf(listen, sizeof listen, "%s", b->endpoint);
    broker_argv(b, argv, listen, ap);
    if (refuse) {
        pid_t pid = fork();
        if (pid == 0) {
            FILE *lf = freopen(b->log, "a", stderr);
            (void)lf;
            execv(argv[0], (char **)argv);
            _exit(127);
        }
        int st = th_wait(pid, 10);
        if (st == 0) fail_msg("mpbrokerd started (or exited 0) where it should have refused");
        return st;
    }
    char log[4000] = "";
    /* The port may still be held for a moment by the connections of the one that died. */
    for (int i = 0; i < 100; i++) {
        if (spawn(b, argv, log, sizeof log) == 0) return 0;
        if (!strstr(log, "cannot listen")) break;
        usleep(50000);
    }
    fail_msg("mpbrokerd exited at restart: %s", log);
    return -1;
}

void th_broker_restart(th_broker_t *b, int sig, ...) {
    va_list ap;
    va_start(ap, sig);
    restart(b, sig, false, ap);
    va_end(ap);
}

int th_broker_restart_fails(th_broker_t *b, int sig, ...) {
    va_list ap;
    va_start(ap, sig);
    int st = restart(b, sig, true, ap);
    va_end(ap);
    return st;
}

int th_broker_alive(th_broker_t *b) {
    if (b->pid <= 0 || kill(b->pid, 0) != 0) return 0;
    if (waitpid(b->pid, NULL, WNOHANG) == 0) return 1;
    gone(b); /* reaped: its number may be another's soon */
    return 0;
}

void th_broker_stop(th_broker_t *b) {
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        if (th_wait(b->pid, 10) < 0) fprintf(stderr, "mpbrokerd did not stop on SIGTERM\n");
        gone(b);
    }
    if (b->dir[0]) {
        char cmd[400];
        if (getenv("TH_KEEP"))
            fprintf(stderr, "keeping %s\n", b->dir);
        else {
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", b->dir);
            if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", b->dir);
        }
        b->dir[0] = 0;
    }
    for (int i = 0; i < 8; i++)
        if (running[i] == b) running[i] = NULL;
    for (int i = 0; i < 8; i++)
        if (known[i] == b) known[i] = NULL;
}

const char *th_authkey(th_broker_t *b, size_t *len) {
    static char key[512];
    int n = read_file(b->keyfile, key, sizeof key);
    if (n <= 0) fail_msg("cannot read %s", b->keyfile);
    *len = (size_t)n;
    return key;
}

void th_broker_adopt(th_broker_t *b) {
    for (int i = 0; i < 8; i++)
        if (!known[i] || known[i] == b) {
            known[i] = b;
            return;
        }
}

const char *th_authkey_for(const char *endpoint, size_t *len) {
    for (int i = 0; i < 8; i++)
        if (known[i] && known[i]->keyfile[0] && !strcmp(known[i]->endpoint, endpoint))
            return th_authkey(known[i], len);
    return NULL;
}

int th_connect_opts(th_broker_t *b, const mpb_options_t *o, mpb_client_t **out) {
    size_t kl;
    const char *k = th_authkey(b, &kl);
    return mpb_connect(b->endpoint, k, kl, o, out);
}

mpb_client_t *th_connect_quiet(th_broker_t *b) {
    mpb_options_t o;
    mpb_options_init(&o);
    o.no_heartbeat_thread = 1;
    mpb_client_t *c = NULL;
    assert_int_equal(th_connect_opts(b, &o, &c), 0);
    return c;
}

mpb_client_t *th_connect(th_broker_t *b) {
    mpb_client_t *c = NULL;
    mpb_options_t o;
    mpb_options_init(&o);
    o.connect_timeout_ms = 30000; /* a loaded CI machine: a slow connect is not what is tested */
    int rc = th_connect_opts(b, &o, &c);
    if (rc) {
        char tail[2000] = "";
        read_file_tail(b->log, tail, sizeof tail);
        fprintf(stderr, "connect to %s (pid %d): %s\nbroker log ends:\n%s\n", b->endpoint,
                (int)getpid(), mpb_errmsg(c), tail);
        if (in_child) _exit(90);
        fail_msg("connect to %s: %s", b->endpoint, mpb_errmsg(c));
    }
    return c;
}

pid_t th_fork_bare(void) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    return pid;
}

pid_t th_fork(int (*child)(int idx, void *arg), void *arg) {
    pid_t pid = th_fork_bare();
    if (pid == 0) {
        in_child = 1;
        _exit(child(0, arg));
    }
    return pid;
}

int th_cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int th_wait(pid_t pid, int timeout_s) {
    int64_t end = th_now_ms() + timeout_s * 1000;
    int st;
    while (th_now_ms() < end) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0) return -1;
        usleep(5000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

int th_spawn(int n, int (*child)(int idx, void *arg), void *arg, int timeout_s) {
    pid_t pids[256];
    if (n > 256) n = 256;
    fflush(stdout);
    fflush(stderr);
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            in_child = 1;
            _exit(child(i, arg));
        }
    }
    int failed = 0;
    int64_t end = th_now_ms() + timeout_s * 1000;
    for (int i = 0; i < n; i++) {
        int64_t left = end - th_now_ms();
        int st = th_wait(pids[i], left > 0 ? (int)((left + 999) / 1000) : 0);
        if (st != 0) failed++;
    }
    return failed;
}

uint8_t *th_big_bin(size_t n) {
    uint8_t *v = malloc(5 + n);
    assert_non_null(v);
    v[0] = 0xc6; /* bin 32 */
    v[1] = (uint8_t)(n >> 24), v[2] = (uint8_t)(n >> 16), v[3] = (uint8_t)(n >> 8);
    v[4] = (uint8_t)n;
    memset(v + 5, 'x', n);
    return v;
}

void th_stop_self_quietly(void) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    raise(SIGSTOP);
}

const uint8_t *th_str(const char *s, size_t *len) {
    static uint8_t bufs[8][600];
    static int k;
    uint8_t *b = bufs[k++ & 7];
    size_t n = strlen(s);
    if (n > 500) n = 500;
    size_t h;
    if (n <= 31) {
        b[0] = (uint8_t)(0xa0 | n);
        h = 1;
    } else if (n <= 255) {
        b[0] = 0xd9;
        b[1] = (uint8_t)n;
        h = 2;
    } else {
        b[0] = 0xda;
        b[1] = (uint8_t)(n >> 8);
        b[2] = (uint8_t)n;
        h = 3;
    }
    memcpy(b + h, s, n);
    *len = h + n;
    return b;
}

th_mv_t th_mv_str(const char *s) {
    th_mv_t v;
    v.p = th_str(s, &v.n);
    return v;
}

th_mv_t th_mv_int(int64_t x) {
    th_mv_t v;
    v.p = th_int(x, &v.n);
    return v;
}

int th_objects_find(mpb_client_t *c, const char *kind, const char *name, uint64_t *size) {
    uint64_t cursor = 0;
    int found = 0;
    do {
        mpb_obj_info_t info[16];
        size_t n = 0;
        th_assert_ok(mpb_objects(c, NULL, &cursor, info, 16, &n), c);
        assert_true(n <= 16);
        for (size_t i = 0; i < n; i++)
            if (!strcmp(info[i].kind, kind) && !strcmp(info[i].name, name)) {
                found++;
                if (size) *size = info[i].size;
            }
    } while (cursor);
    return found;
}

const uint8_t *th_int(int64_t v, size_t *len) {
    static uint8_t bufs[8][10];
    static int k;
    uint8_t *b = bufs[k++ & 7];
    *len = mpb_pack_i64(b, v);
    return b;
}

void th_broker_stop_checked(th_broker_t *b) {
    assert_true(th_broker_alive(b));
    kill(b->pid, SIGTERM);
    int st = th_wait(b->pid, 20);
    gone(b);
    FILE *f = fopen(b->log, "r");
    assert_non_null(f);
    char line[1024];
    bool bad = false;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "Sanitizer") || strstr(line, "runtime error")) {
            fprintf(stderr, "broker: %s", line);
            bad = true;
        }
    }
    fclose(f);
    assert_false(bad);
    assert_int_equal(st, 0);
    th_broker_stop(b);
}

void th_assert_survived(th_broker_t *b, mpb_client_t **c, mpb_client_t **shared) {
    mpb_close(c);
    assert_true(th_broker_alive(b));
    mpb_close(shared);
    th_broker_stop_checked(b);
}

void th_assert_dict_roundtrip(mpb_client_t *c, const char *name, int64_t v) {
    mpb_dict_t *d;
    int64_t x;
    assert_int_equal(mpb_dict_open(c, name, &d), 0);
    assert_int_equal(mpb_dict_set_i64(d, "k", v), 0);
    assert_int_equal(mpb_dict_get_i64(d, "k", &x), 0);
    assert_int_equal(x, v);
    mpb_dict_close(&d);
}

void th_assert_str_roundtrip(mpb_client_t *c, const char *name, const char *key,
                             const char *value) {
    mpb_dict_t *d = NULL;
    th_assert_ok(mpb_dict_open(c, name, &d), c);
    size_t kn, vn;
    const uint8_t *k = th_str(key, &kn), *v = th_str(value, &vn);
    th_assert_ok(mpb_dict_set(d, k, kn, v, vn), c);
    void *got;
    size_t gn;
    th_assert_ok(mpb_dict_get(d, k, kn, &got, &gn), c);
    th_assert_bytes(got, gn, v, vn);
    mpb_free(got);
    mpb_dict_close(&d);
}

int th_describe_get(mpb_client_t *c, const char *path, const char *field, void **buf,
                    mpb__rd_t *v) {
    size_t n;
    if (mpb_obj_describe(c, path, buf, &n)) return -1;
    mpb__rd_t r = {*buf, (const uint8_t *)*buf + n};
    if (mpb__rd_mapget(&r, field, v)) {
        mpb_free(*buf);
        *buf = NULL;
        return -1;
    }
    return 0;
}

int64_t th_describe_int(mpb_client_t *c, const char *path, const char *field) {
    void *m;
    mpb__rd_t v;
    if (th_describe_get(c, path, field, &m, &v)) return INT64_MIN;
    int64_t x = INT64_MIN;
    bool b;
    uint32_t n;
    if (mpb__rd_int(&v, &x) == 0) {
    } else if (mpb__rd_bool(&v, &b) == 0) {
        x = b;
    } else if (mpb__rd_array(&v, &n) == 0) {
        x = n;
    } else {
        x = INT64_MIN;
    }
    mpb_free(m);
    return x;
}

double th_metric(const char *text, const char *series, double absent) {
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ') return strtod(p + n + 1, NULL);
    return absent;
}

int64_t th_info_int(mpb_client_t *c, const char *field) {
    void *m;
    size_t n;
    if (mpb_broker_info(c, &m, &n)) return INT64_MIN;
    mpb__rd_t r = {m, (const uint8_t *)m + n}, v;
    int64_t x = INT64_MIN;
    if (mpb__rd_mapget(&r, field, &v) == 0 && mpb__rd_int(&v, &x) != 0) x = INT64_MIN;
    mpb_free(m);
    return x;
}

void th_assert_map_str(const mpb__rd_t *r, const char *key, const char *want) {
    mpb__rd_t m = *r, v;
    const char *s;
    uint32_t sl;
    assert_int_equal(mpb__rd_mapget(&m, key, &v), 0);
    assert_int_equal(mpb__rd_str(&v, &s, &sl), 0);
    assert_int_equal(sl, strlen(want));
    assert_memory_equal(s, want, sl);
}

mpb__rd_t th_rd_array(const void *buf, size_t len, uint32_t n) {
    mpb__rd_t r = {buf, (const uint8_t *)buf + len};
    uint32_t m;
    assert_int_equal(mpb__rd_array(&r, &m), 0);
    assert_int_equal(m, n);
    return r;
}

void th_assert_int_seq(const void *buf, size_t len, uint32_t n, int64_t first, int64_t step) {
    mpb__rd_t r = th_rd_array(buf, len, n);
    for (uint32_t i = 0; i < n; i++) {
        int64_t x;
        assert_int_equal(mpb__rd_int(&r, &x), 0);
        assert_int_equal(x, first + (int64_t)i * step);
    }
}

uint64_t th_map_uint(const mpb__rd_t *r, const char *key) {
    mpb__rd_t m = *r, v;
    uint64_t u = 0;
    assert_int_equal(mpb__rd_mapget(&m, key, &v), 0);
    assert_int_equal(mpb__rd_uint(&v, &u), 0);
    return u;
}

void th_assert_info_str(mpb_client_t *c, const char *field, const char *want) {
    void *m;
    size_t n;
    th_assert_ok(mpb_broker_info(c, &m, &n), c);
    th_assert_map_str(&(mpb__rd_t){m, (const uint8_t *)m + n}, field, want);
    mpb_free(m);
}

int64_t th_dict_i64(mpb_client_t *c, const char *name, const char *key) {
    mpb_dict_t *d;
    assert_int_equal(mpb_dict_open(c, name, &d), 0);
    int64_t v = 0;
    assert_int_equal(mpb_dict_get_i64(d, key, &v), 0);
    mpb_dict_close(&d);
    return v;
}

bool th_wait_field(mpb_client_t *c, const char *path, const char *field, int64_t want,
                   int timeout_ms) {
    int64_t end = th_now_ms() + timeout_ms;
    for (;;) {
        if (th_describe_int(c, path, field) == want) return true;
        if (th_now_ms() >= end) return false;
        usleep(5000);
    }
}

static void hexdump(const char *what, const uint8_t *p, size_t n) {
    fprintf(stderr, "%s (%zu bytes):", what, n);
    for (size_t i = 0; i < n && i < 96; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, n > 96 ? " ...\n" : "\n");
}

void th_assert_bytes(const void *got, size_t gn, const void *want, size_t wn) {
    if (gn != wn || memcmp(got, want, gn) != 0) {
        hexdump("got ", got, gn);
        hexdump("want", want, wn);
        fail_msg("bytes differ");
    }
}

void th_assert_ok(int rc, mpb_client_t *c) {
    if (rc != 0) fail_msg("call failed: %s (%d): %s", mpb_strerror(rc), rc, mpb_errmsg(c));
}

void th_assert_err(int rc, int want, mpb_client_t *c, const char *sub1, const char *sub2) {
    if (rc != want)
        fail_msg("expected %s, got %s (%d): %s", mpb_strerror(want), mpb_strerror(rc), rc,
                 mpb_errmsg(c));
    if (sub1 && !strstr(mpb_errmsg(c), sub1))
        fail_msg("message '%s' does not contain '%s'", mpb_errmsg(c), sub1);
    if (sub2 && !strstr(mpb_errmsg(c), sub2))
        fail_msg("message '%s' does not contain '%s'", mpb_errmsg(c), sub2);
}

/* The HTTP port the broker got: from DATA_DIR/http.addr ("HOST:PORT"), else its log line. */
int th_http_port(const th_broker_t *b) {
    char path[400], line[1024];
    snprintf(path, sizeof path, "%s/data/http.addr", b->dir);
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(path, "r");
        if (f) {
            char *colon = fgets(line, sizeof line, f) ? strrchr(line, ':') : NULL;
            fclose(f);
            if (colon && atoi(colon + 1) > 0) return atoi(colon + 1);
        }
        f = fopen(b->log, "r");
        while (f && fgets(line, sizeof line, f)) {
            char *p = strstr(line, " port=");
            if (p && strstr(line, "serving HTTP")) {
                fclose(f);
                return atoi(p + 6);
            }
        }
        if (f) fclose(f);
        usleep(10000);
    }
    return -1;
}

long th_rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

/* Lines of b's log that hold a, and b2 too unless it is NULL. */
static int log_lines(const th_broker_t *b, const char *a, const char *b2) {
    FILE *f = fopen(b->log, "r");
    if (!f) return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) && (!b2 || strstr(line, b2));
    fclose(f);
    return n;
}

int th_log_count(const th_broker_t *b, const char *what) {
    return log_lines(b, what, NULL);
}

bool th_log_has_line(const th_broker_t *b, const char *a, const char *b2) {
    return log_lines(b, a, b2) > 0;
}

char *th_asan_quarantine_off(void) {
    char *was = getenv("ASAN_OPTIONS") ? strdup(getenv("ASAN_OPTIONS")) : NULL;
    char opts[512];
    snprintf(opts, sizeof opts, "%s%squarantine_size_mb=0", was ? was : "", was ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    return was;
}

void th_asan_restore(char *was) {
    if (was)
        setenv("ASAN_OPTIONS", was, 1);
    else
        unsetenv("ASAN_OPTIONS");
    free(was);
}

bool th_wait_log_line(const th_broker_t *b, const char *what, int timeout_ms) {
    int64_t end = th_now_ms() + timeout_ms;
    for (;;) {
        bool late = th_now_ms() > end;
        if (th_log_count(b, what) > 0) return true;
        if (late) return false;
        usleep(20000);
    }
}

/* ---- the suite's broker ---- */

static th_broker_t *suite_broker;
static mpb_client_t **suite_client;
static int suite_flags;

void th_suite(th_broker_t *b, mpb_client_t **c, int flags) {
    suite_broker = b;
    suite_client = c;
    suite_flags = flags;
}

void th_use_broker_env(const th_broker_t *b) {
    setenv("MPB_ENDPOINT", b->endpoint, 1);
    setenv("MPB_AUTHKEY_FILE", b->keyfile, 1);
    unsetenv("MPB_AUTHKEY");
}

int th_suite_setup(void **state) {
    (void)state;
    if (!suite_broker) fail_msg("th_suite() was not called");
    th_broker_start(suite_broker, NULL);
    if (suite_flags & TH_SUITE_ENV) th_use_broker_env(suite_broker);
    if (suite_client) *suite_client = th_connect(suite_broker);
    return 0;
}

int th_suite_teardown(void **state) {
    (void)state;
    if (suite_client) mpb_close(suite_client);
    th_broker_stop(suite_broker);
    return 0;
}
