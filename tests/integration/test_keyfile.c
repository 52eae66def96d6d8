/* test_keyfile.c - authkey hygiene (issue 11, finding 8): mpbrokerd, libmpb's
 * mpb_authkey_load() and the mpb CLI refuse a key file that group or others can write, use
 * one they can read with a warning, and warn about keys shorter than 16 bytes (in a file or in
 * MPB_AUTHKEY); --check-config says the same. Before, a 1-byte world-writable key file was
 * used without a word. Each case ends with a real client served by a broker. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th.h"

static char dir[64];

static const char *key_file(const char *name, const char *key, mode_t mode) {
    static char paths[8][128];
    static int next;
    char *p = paths[next++ & 7];
    snprintf(p, 128, "%s/%s", dir, name);
    unlink(p);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, key, strlen(key)), (ssize_t)strlen(key));
    close(fd);
    assert_int_equal(chmod(p, mode), 0); /* not subject to the umask */
    return p;
}

static char *slurp(const char *path) {
    static char buf[16384];
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return buf;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Runs argv with stdout and stderr into out_path, MPB_AUTHKEY set to env_key (NULL: unset);
 * returns the exit status (the process is killed after timeout_s: -1). */
static int run(const char *const argv[], const char *env_key, const char *out_path, int timeout_s) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        unsetenv("MPB_AUTHKEY_FILE");
        if (env_key)
            setenv("MPB_AUTHKEY", env_key, 1);
        else
            unsetenv("MPB_AUTHKEY");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return th_wait(pid, timeout_s);
}

/* mpbrokerd with the key file: how it ends when it refuses the key. */
static int broker_refuses(const char *keyfile, const char *log) {
    char data[128];
    snprintf(data, sizeof data, "%s/data", dir);
    const char *argv[] = {MPBROKERD_PATH, "--listen", "tcp://127.0.0.1:0",
                          "--data-dir",   data,       "--authkey-file",
                          keyfile,        NULL};
    return run(argv, NULL, log, 10);
}

/* mpbrokerd --check-config with the key file k: its exit status, its output in log. */
static int check_config(const char *k, const char *log) {
    const char *argv[] = {MPBROKERD_PATH,
                          "--check-config",
                          "--listen",
                          "tcp://127.0.0.1:0",
                          "--data-dir",
                          dir,
                          "--authkey-file",
                          k,
                          NULL};
    return run(argv, NULL, log, 10);
}

static void test_keyfile_broker_refuses_writable(void **state) {
    (void)state;
    char log[128];
    snprintf(log, sizeof log, "%s/refused.log", dir);
    const char *k = key_file("gw", "0123456789abcdef0123456789abcdef", 0620);
    assert_int_equal(broker_refuses(k, log), 1);
    assert_non_null(strstr(slurp(log), "writable by its group (mode 0620): refused"));
    k = key_file("ow", "0123456789abcdef0123456789abcdef", 0602);
    assert_int_equal(broker_refuses(k, log), 1);
    assert_non_null(strstr(slurp(log), "writable by others (mode 0602): refused"));
    /* the old finding: one byte, world-writable */
    k = key_file("one", "x", 0666);
    assert_int_equal(broker_refuses(k, log), 1);
    assert_non_null(strstr(slurp(log), "writable by others (mode 0666): refused"));

    /* --check-config says so too, and exits 2 */
    assert_int_equal(check_config(k, log), 2);
    assert_non_null(strstr(slurp(log), "writable by others (mode 0666): refused"));
}

static void test_keyfile_broker_warns(void **state) {
    (void)state;
    /* readable by others: served, with a warning in the log */
    th_broker_t b;
    const char *k = key_file("readable", "0123456789abcdef0123456789abcdef", 0644);
    th_broker_start(&b, "--authkey-file", k, NULL);
    mpb_client_t *c = th_connect(&b);
    th_assert_dict_roundtrip(c, "readable", 1);
    mpb_close(&c);
    th_broker_stop(&b);
    /* the log went with the directory; start again and read it while the broker runs */
    th_broker_start(&b, "--authkey-file", k, NULL);
    const char *l = slurp(b.log);
    assert_non_null(strstr(l, "level=warn"));
    assert_non_null(strstr(l, "is readable by others (mode 0644)"));
    assert_null(strstr(l, "shorter than 16"));
    th_broker_stop(&b);

    /* a short key: a warning that says why, and still served */
    k = key_file("short", "hunter2", 0600);
    th_broker_start(&b, "--authkey-file", k, NULL);
    l = slurp(b.log);
    assert_non_null(strstr(l, "the authkey is 7 bytes, shorter than 16"));
    assert_non_null(strstr(l, "offline"));
    assert_null(strstr(l, "readable by"));
    c = th_connect(&b);
    th_assert_dict_roundtrip(c, "short", 2);
    mpb_close(&c);
    th_broker_stop(&b);

    /* --check-config warns about both, and passes */
    char log[128];
    snprintf(log, sizeof log, "%s/check.log", dir);
    k = key_file("both", "hunter2", 0640);
    assert_int_equal(check_config(k, log), 0);
    l = slurp(log);
    assert_non_null(strstr(l, "mpbrokerd: warning: authkey file"));
    assert_non_null(strstr(l, "readable by its group (mode 0640)"));
    assert_non_null(strstr(l, "the authkey is 7 bytes, shorter than 16"));
}

static void test_keyfile_broker_env_short(void **state) {
    (void)state;
    char log[128], data[128];
    snprintf(log, sizeof log, "%s/env.log", dir);
    snprintf(data, sizeof data, "%s/envdata", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        setenv("MPB_AUTHKEY", "abc", 1);
        unsetenv("MPB_AUTHKEY_FILE");
        execl(MPBROKERD_PATH, MPBROKERD_PATH, "--listen", "tcp://127.0.0.1:0", "--data-dir", data,
              (char *)NULL);
        _exit(127);
    }
    bool seen = false;
    for (int i = 0; i < 500 && !seen; i++) { /* up to 5 s */
        seen = strstr(slurp(log), "level=info msg=\"ready\"") != NULL;
        if (!seen) usleep(10000);
    }
    kill(pid, SIGTERM);
    assert_int_equal(th_wait(pid, 10), 0);
    assert_true(seen);
    assert_non_null(strstr(slurp(log), "the authkey is 3 bytes, shorter than 16"));
}

/* mpb_authkey_load() in this process, its stderr caught in a file (it must stay empty: the
 * warnings come back in err). */
static int load(const char *path, char *err, size_t errlen, char *stderr_text, size_t n) {
    char cap[128];
    snprintf(cap, sizeof cap, "%s/stderr", dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    void *key = NULL;
    size_t len = 0;
    int rc = mpb_authkey_load(path, &key, &len, err, errlen);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    snprintf(stderr_text, n, "%s", slurp(cap));
    if (key) {
        memset(key, 0, len);
        mpb_free(key);
    }
    return rc;
}

static void test_keyfile_client(void **state) {
    (void)state;
    char err[512], text[2048];
    const char *k = key_file("cw", "0123456789abcdef0123456789abcdef", 0666);
    assert_int_equal(load(k, err, sizeof err, text, sizeof text), MPB_EINVAL);
    assert_non_null(strstr(err, "writable by others (mode 0666): refused"));
    k = key_file("cg", "0123456789abcdef0123456789abcdef", 0660);
    assert_int_equal(load(k, err, sizeof err, text, sizeof text), MPB_EINVAL);
    assert_non_null(strstr(err, "writable by its group"));
    k = key_file("cr", "0123456789abcdef0123456789abcdef", 0604);
    assert_int_equal(load(k, err, sizeof err, text, sizeof text), 0);
    assert_non_null(strstr(err, "authkey file"));
    assert_non_null(strstr(err, "readable by others (mode 0604)"));
    assert_string_equal(text, "");
    k = key_file("cs", "short", 0600);
    assert_int_equal(load(k, err, sizeof err, text, sizeof text), 0);
    assert_non_null(strstr(err, "the authkey is 5 bytes, shorter than 16"));
    k = key_file("ok", "0123456789abcdef0123456789abcdef", 0600);
    assert_int_equal(load(k, err, sizeof err, text, sizeof text), 0);
    assert_string_equal(err, "");
    assert_string_equal(text, "");
    setenv("MPB_AUTHKEY", "tiny", 1);
    assert_int_equal(load(NULL, err, sizeof err, text, sizeof text), 0);
    unsetenv("MPB_AUTHKEY");
    assert_non_null(strstr(err, "the authkey is 4 bytes, shorter than 16"));

    /* the CLI, against a real broker holding a good key: refused before it connects, and
     * served with the key at 0600 */
    th_broker_t b;
    th_broker_start(&b, "--authkey-file", k, NULL);
    char log[128];
    snprintf(log, sizeof log, "%s/cli.log", dir);
    int ok = chmod(k, 0622);
    assert_int_equal(ok, 0);
    const char *argv[] = {th_mpb_cli, "-e", b.endpoint, "-k", k, "ping", NULL};
    int st = run(argv, NULL, log, 20);
    assert_true(st != 0);
    assert_non_null(strstr(slurp(log), "writable by others (mode 0622): refused"));
    assert_int_equal(chmod(k, 0640), 0);
    assert_int_equal(run(argv, NULL, log, 20), 0);
    assert_non_null(strstr(slurp(log), "mpb: warning: authkey file"));
    assert_non_null(strstr(slurp(log), "readable by its group (mode 0640)"));
    assert_int_equal(chmod(k, 0600), 0);
    assert_int_equal(run(argv, NULL, log, 20), 0);
    assert_string_equal(slurp(log), "pong\n");
    mpb_client_t *c = th_connect(&b);
    th_assert_dict_roundtrip(c, "client", 3);
    mpb_close(&c);
    th_broker_stop_checked(&b);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/mpbkey.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyfile_broker_refuses_writable),
        cmocka_unit_test(test_keyfile_broker_warns),
        cmocka_unit_test(test_keyfile_broker_env_short),
        cmocka_unit_test(test_keyfile_client),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
