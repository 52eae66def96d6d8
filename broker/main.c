/* main.c - mpbrokerd: its settings (config.c: flags, MPB_* environment, a config file), the
 * authkey (read, or made on first start), then the loop. */
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

static int read_key_file(const char *path, uint8_t **key, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        log_error("cannot read authkey file %s: %s", path, strerror(errno));
        return -1;
    }
    uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    if (n == 0) {
        log_error("authkey file %s is empty", path);
        return -1;
    }
    *key = xmalloc(n);
    memcpy(*key, buf, n);
    *len = n;
    explicit_bzero(buf, sizeof buf);
    return 0;
}

/* A new key: 32 random bytes as 64 hex digits, so it can be pasted into MPB_AUTHKEY. */
static int make_key(const char *dir, uint8_t **key, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/authkey", dir);
    if (access(path, F_OK) == 0) return read_key_file(path, key, len);
    uint8_t raw[32];
    char hex[65];
    if (mpb__random(raw, sizeof raw)) return -1;
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        log_error("cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    bool ok = write(fd, hex, 64) == 64 && write(fd, "\n", 1) == 1;
    ok = (fsync(fd) == 0) && ok;
    close(fd);
    if (!ok) {
        log_error("cannot write %s", path);
        return -1;
    }
    log_info("no authkey configured: generated one in %s (mode 0600); give clients that file "
             "(MPB_AUTHKEY_FILE) or its contents (MPB_AUTHKEY)",
             path);
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
        log_error("cannot create data directory %s: %s", cfg->data_dir, strerror(errno));
        config_free(&conf);
        return 1;
    }
    uint8_t *key = NULL;
    size_t keylen = 0;
    int rc;
    if (config_keysrc(conf) == KEYSRC_GENERATE) {
        rc = make_key(cfg->data_dir, &key, &keylen);
    } else {
        char err[512];
        if ((rc = config_read_key(conf, &key, &keylen, err, sizeof err))) log_error("%s", err);
    }
    if (rc) {
        config_free(&conf);
        return 1;
    }

    int status = server_main(cfg, key, keylen);
    explicit_bzero(key, keylen);
    free(key);
    config_free(&conf);
    return status;
}
