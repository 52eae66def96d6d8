/* main.c - mpbrokerd: options, the authkey (read, or made on first start), then the loop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mpbrokerd [options]\n"
            "  -l, --listen ENDPOINT     tcp://ADDR:PORT or ipc:///PATH; repeatable\n"
            "                            (default tcp://127.0.0.1:5555; env MPB_LISTEN)\n"
            "  -k, --authkey-file PATH   the shared authkey (env MPB_AUTHKEY_FILE, or the key\n"
            "                            itself in MPB_AUTHKEY). Without one, a key is made in\n"
            "                            DATA_DIR/authkey (mode 0600) on first start.\n"
            "  -d, --data-dir DIR        state directory (default ./mpb-data; env MPB_DATA_DIR)\n"
            "      --endpoint-file PATH  write the first bound endpoint there (for port 0/*)\n"
            "      --max-frame BYTES     largest message accepted (default 8388608)\n"
            "      --max-value BYTES     largest value (default 1048576)\n"
            "      --max-key BYTES       largest key (default 65536)\n"
            "      --heartbeat-ms MS     heartbeat interval clients are told (default 1000)\n"
            "      --session-ttl-ms MS   a silent session expires after this (default 5000)\n"
            "      --log-level LEVEL     debug, info, warn, error (default info)\n"
            "      --log-format FMT      logfmt or json (default logfmt)\n"
            "  -V, --version             print the version\n"
            "  -h, --help                this text\n");
}

/* Parses a positive size with an optional k/m/g suffix; returns false when it is not one. */
static bool parse_size(const char *s, size_t lo, size_t hi, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-') return false;
    unsigned long long mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1024, end++;
    else if (*end == 'm' || *end == 'M') mul = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G') mul = 1024ULL * 1024 * 1024, end++;
    if (*end) return false;
    v *= mul;
    if (v < lo || v > hi) return false;
    *out = (size_t)v;
    return true;
}

static bool parse_ms(const char *s, int lo, int hi, int *out) {
    size_t v;
    if (!parse_size(s, (size_t)lo, (size_t)hi, &v)) return false;
    *out = (int)v;
    return true;
}

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
    return 0;
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

enum { O_ENDPOINT_FILE = 256, O_MAX_FRAME, O_MAX_VALUE, O_MAX_KEY, O_HEARTBEAT, O_TTL,
       O_LOG_LEVEL, O_LOG_FORMAT };

int main(int argc, char **argv) {
    config_t cfg = {0};
    cfg.limits = (limits_t){
        .max_frame = 8u << 20,
        .max_value = 1u << 20,
        .max_key = 64u << 10,
        .max_scan = 1000,
        .max_pending = 4096,
        .handshake_ms = 5000,
        .heartbeat_ms = 1000,
        .session_ttl_ms = 5000,
    };
    cfg.log_level = LOG_INFO;
    cfg.data_dir = getenv("MPB_DATA_DIR") ? getenv("MPB_DATA_DIR") : "./mpb-data";
    cfg.authkey_file = getenv("MPB_AUTHKEY_FILE");

    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'},
        {"authkey-file", required_argument, 0, 'k'},
        {"data-dir", required_argument, 0, 'd'},
        {"endpoint-file", required_argument, 0, O_ENDPOINT_FILE},
        {"max-frame", required_argument, 0, O_MAX_FRAME},
        {"max-value", required_argument, 0, O_MAX_VALUE},
        {"max-key", required_argument, 0, O_MAX_KEY},
        {"heartbeat-ms", required_argument, 0, O_HEARTBEAT},
        {"session-ttl-ms", required_argument, 0, O_TTL},
        {"log-level", required_argument, 0, O_LOG_LEVEL},
        {"log-format", required_argument, 0, O_LOG_FORMAT},
        {"version", no_argument, 0, 'V'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    bool bad = false;
    while ((c = getopt_long(argc, argv, "l:k:d:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            if (cfg.nlisten == 8) {
                fprintf(stderr, "mpbrokerd: at most 8 --listen endpoints\n");
                return 2;
            }
            cfg.listen[cfg.nlisten++] = optarg;
            break;
        case 'k': cfg.authkey_file = optarg; break;
        case 'd': cfg.data_dir = optarg; break;
        case O_ENDPOINT_FILE: cfg.endpoint_file = optarg; break;
        case O_MAX_FRAME:
            if (!parse_size(optarg, 4096, 1u << 30, &cfg.limits.max_frame)) {
                fprintf(stderr, "mpbrokerd: --max-frame: '%s' is not a size from 4096 to 1g\n",
                        optarg);
                bad = true;
            }
            break;
        case O_MAX_VALUE:
            if (!parse_size(optarg, 16, 1u << 30, &cfg.limits.max_value)) {
                fprintf(stderr, "mpbrokerd: --max-value: '%s' is not a size from 16 to 1g\n",
                        optarg);
                bad = true;
            }
            break;
        case O_MAX_KEY:
            if (!parse_size(optarg, 16, 1u << 24, &cfg.limits.max_key)) {
                fprintf(stderr, "mpbrokerd: --max-key: '%s' is not a size from 16 to 16m\n",
                        optarg);
                bad = true;
            }
            break;
        case O_HEARTBEAT:
            if (!parse_ms(optarg, 10, 600000, &cfg.limits.heartbeat_ms)) {
                fprintf(stderr, "mpbrokerd: --heartbeat-ms: '%s' is not 10..600000\n", optarg);
                bad = true;
            }
            break;
        case O_TTL:
            if (!parse_ms(optarg, 50, 86400000, &cfg.limits.session_ttl_ms)) {
                fprintf(stderr, "mpbrokerd: --session-ttl-ms: '%s' is not 50..86400000\n",
                        optarg);
                bad = true;
            }
            break;
        case O_LOG_LEVEL:
            if ((cfg.log_level = log_level_parse(optarg)) < 0) {
                fprintf(stderr, "mpbrokerd: --log-level: '%s' is not debug, info, warn or error\n",
                        optarg);
                bad = true;
            }
            break;
        case O_LOG_FORMAT:
            if (!strcmp(optarg, "json")) cfg.log_json = true;
            else if (!strcmp(optarg, "logfmt")) cfg.log_json = false;
            else {
                fprintf(stderr, "mpbrokerd: --log-format: '%s' is not logfmt or json\n", optarg);
                bad = true;
            }
            break;
        case 'V': printf("mpbrokerd %s\n", MPBROKER_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mpbrokerd: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (bad) return 2;
    if (cfg.limits.max_value + cfg.limits.max_key + 64 > cfg.limits.max_frame) {
        fprintf(stderr, "mpbrokerd: --max-value plus --max-key must fit in --max-frame\n");
        return 2;
    }
    if (cfg.limits.session_ttl_ms < 2 * cfg.limits.heartbeat_ms) {
        fprintf(stderr, "mpbrokerd: --session-ttl-ms must be at least twice --heartbeat-ms\n");
        return 2;
    }
    if (cfg.nlisten == 0) cfg.listen[cfg.nlisten++] =
        getenv("MPB_LISTEN") ? getenv("MPB_LISTEN") : "tcp://127.0.0.1:5555";
    log_setup(cfg.log_level, cfg.log_json);
    raise_nofile();

    if (mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST) {
        log_error("cannot create data directory %s: %s", cfg.data_dir, strerror(errno));
        return 1;
    }
    uint8_t *key = NULL;
    size_t keylen = 0;
    const char *envkey = getenv("MPB_AUTHKEY");
    int rc;
    if (cfg.authkey_file) rc = read_key_file(cfg.authkey_file, &key, &keylen);
    else if (envkey && *envkey) {
        keylen = strlen(envkey);
        key = (uint8_t *)xstrndup(envkey, keylen);
        rc = 0;
    } else rc = make_key(cfg.data_dir, &key, &keylen);
    if (rc) return 1;

    int status = server_main(&cfg, key, keylen);
    memset(key, 0, keylen);
    free(key);
    return status;
}
