/* main.c - mpbrokerd: its settings (config.c: flags, MPB_* environment, a config file), the
 * authkey (read, or made on first start), then the loop. The data-dir also holds http.addr,
 * the HTTP address the broker got, while it serves HTTP. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "config.h"

/* The authkey file made on an earlier first start, through proto's one reader (keyfile.c). */
static int read_key_file(const char *path, uint8_t **key, size_t *len) {
    char err[512], warn[1024];
    if (mpb__key_file_read("authkey file", path, key, len, err, sizeof err, warn, sizeof warn) ==
        0) {
        if (warn[0]) log_kv(MPB_LOG_WARN, warn, "path", path, NULL);
        return 0;
    }
    log_kv(MPB_LOG_ERROR, err, "path", path, NULL);
    return -1;
}

/* A new key: 32 random bytes as 64 hex digits, so it can be pasted into MPB_AUTHKEY. */
static int make_key(const char *dir, uint8_t **key, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/authkey", dir);
    if (access(path, F_OK) == 0) return read_key_file(path, key, len);
    uint8_t raw[32];
    char hex[65];
    if (mpb__random(raw, sizeof raw)) return -1;
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        log_kv(MPB_LOG_ERROR, "cannot create the authkey file", "path", path, "error",
               strerror(errno), NULL);
        return -1;
    }
    bool ok = write(fd, hex, 64) == 64 && write(fd, "\n", 1) == 1;
    int e = errno;
    ok = (fsync(fd) == 0) && ok;
    close(fd);
    if (!ok) {
        log_kv(MPB_LOG_ERROR, "cannot write the authkey file", "path", path, "error", strerror(e),
               NULL);
        unlink(path); /* a torn key would be read back on the next start */
        return -1;
    }
    log_kv(MPB_LOG_INFO,
           "no authkey configured: generated one (mode 0600); give clients that file "
           "(MPB_AUTHKEY_FILE) or its contents (MPB_AUTHKEY)",
           "path", path, NULL);
    *key = (uint8_t *)xstrndup(hex, 64);
    *len = 64;
    explicit_bzero(raw, sizeof raw);
    explicit_bzero(hex, sizeof hex);
    return 0;
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv) {
    conf_t *conf = NULL;
    switch (config_load(argc, argv, stderr, &conf)) {
    case CONF_EXIT0: return 0;
    case CONF_BAD: config_free(&conf); return 2;
    case CONF_CHECK:
        config_print(conf, stdout);
        config_free(&conf);
        return fflush(stdout) == 0 ? 0 : 1;
    default: break;
    }
    const config_t *cfg = config_get(conf);
    log_setup(cfg->log_level, cfg->log_json);
    config_log(conf);
    raise_nofile();

    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        log_kv(MPB_LOG_ERROR, "cannot create the data directory", "path", cfg->data_dir, "error",
               strerror(errno), NULL);
        config_free(&conf);
        return 1;
    }
    /* Where the HTTP address goes; one from an earlier run is stale until it is rewritten. */
    char addr_file[4200];
    snprintf(addr_file, sizeof addr_file, "%s/http.addr", cfg->data_dir);
    if (unlink(addr_file) != 0 && errno != ENOENT)
        log_kv(MPB_LOG_WARN, "cannot remove a stale HTTP address file", "path", addr_file, "error",
               strerror(errno), NULL);
    http_set_addr_file(cfg->http ? addr_file : NULL);
    char herr[512];
    if (http_set_auth(cfg->http_auth, herr, sizeof herr)) {
        log_kv(MPB_LOG_ERROR, herr, "setting", "http-auth", NULL);
        config_free(&conf);
        return 1;
    }
    uint8_t *key = NULL;
    size_t keylen = 0;
    int rc;
    if (config_keysrc(conf) == KEYSRC_GENERATE) {
        rc = make_key(cfg->data_dir, &key, &keylen);
    } else {
        char err[512], warn[1024];
        if ((rc = config_read_key(conf, &key, &keylen, err, sizeof err, warn, sizeof warn)))
            log_kv(MPB_LOG_ERROR, err, NULL);
        else if (warn[0])
            log_kv(MPB_LOG_WARN, warn, NULL);
    }
    if (rc) {
        config_free(&conf);
        return 1;
    }

    int status = server_main(cfg, key, keylen);
    explicit_bzero(key, keylen);
    free(key);
    http_set_addr_file(NULL);
    http_set_auth(NULL, herr, sizeof herr);
    config_free(&conf);
    return status;
}
