/* config.c - mpbrokerd's settings: defaults, a config file, MPB_* environment variables and
 * flags, each layer overriding the one before, and the checks on all of them. See config.h.
 *
 * One table names every setting once: its key (the long flag and the file's key), its
 * environment variable and how its value is checked. A value is checked in every layer where
 * it appears, even when a higher layer overrides it, so --check-config reports every bad value
 * there is, each with its source:
 *
 *   mpbrokerd: /etc/mpbroker/mpbrokerd.conf:12: max-frame: '8x' is not a size from 4096 to 1g
 *   mpbrokerd: MPB_LOG_LEVEL: 'loud' is not debug, info, warn or error
 *   mpbrokerd: --http: '8080' is not ADDR:PORT
 *
 * The config file is lines of "key = value"; '#' starts a comment (at the start of a line, or
 * after a blank in a value); a value may be put in double quotes to keep a " #" or blanks at
 * its ends. Unknown keys, a key given twice (but listen, which is a list), lines without '='
 * and empty values are errors. An MPB_* variable that is no setting is only warned about
 * (the tools read some of them, and a typo must not stop a broker).
 *
 * --check-config also tries what the broker would do first, and undoes it at once: creating
 * and writing in the data-dir, binding every listen endpoint and the HTTP address. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <zmq.h>

#include "addr.h"
#include "config.h"
#include "persist.h"

extern char **environ;

#define MAX_LISTEN 8
#define MAX_LINE   4096

typedef enum stype {
    T_LISTEN, T_PATH, T_HTTP, T_SIZE, T_MS, T_LEVEL, T_FORMAT, T_COUNT, T_ONOFF, T_FSYNC, T_ENC
} stype_t;

enum {
    S_LISTEN,
    S_AUTHKEY_FILE,
    S_DATA_DIR,
    S_ENDPOINT_FILE,
    S_HTTP,
    S_MAX_FRAME,
    S_MAX_VALUE,
    S_MAX_KEY,
    S_MAX_BATCH_REPLY,
    S_HEARTBEAT,
    S_TTL,
    S_LOG_LEVEL,
    S_LOG_FORMAT,
    S_POOL_MAX_ATTEMPTS,
    S_POOL_MAX_RESULTS,
    S_POOL_MAX_QUEUED,
    S_ANON_GRACE,
    S_SLOWLOG_SLOWER,
    S_SLOWLOG_MAX_LEN,
    S_REPLY_CACHE,
    S_REPLY_CACHE_BYTES,
    S_MAX_MEMORY,
    S_MAX_OBJECTS,
    S_PERSIST,
    S_FSYNC,
    /* sessions and HTTP (issue 11) */
    S_MAX_SESSIONS,
    S_MAX_SESSIONS_PER_CONN,
    S_HTTP_AUTH,
    /* transport (issue 11): keep these last */
    S_ENCRYPTION,
    S_MAX_CONNECTIONS,
    S_MAX_HANDSHAKES_PER_ADDR,
    S_MAX_UNAUTH_MEMORY,
    S_HANDSHAKE,
    S_IDLE,
    S_MAX_OUTPUT,
    S__N
};

typedef struct setting {
    const char *key; /* long flag and config file key */
    const char *env;
    stype_t type;
    unsigned long long lo, hi;
    const char *range; /* lo..hi as the messages say it */
    const char *dflt;  /* the default, as text (NULL: not set) */
} setting_t;

static const setting_t settings[S__N] = {
    [S_LISTEN] = {"listen", "MPB_LISTEN", T_LISTEN, 0, 0, NULL, "tcp://127.0.0.1:5555"},
    [S_AUTHKEY_FILE] = {"authkey-file", "MPB_AUTHKEY_FILE", T_PATH, 0, 0, NULL, NULL},
    [S_DATA_DIR] = {"data-dir", "MPB_DATA_DIR", T_PATH, 0, 0, NULL, "./mpb-data"},
    [S_ENDPOINT_FILE] = {"endpoint-file", "MPB_ENDPOINT_FILE", T_PATH, 0, 0, NULL, NULL},
    [S_HTTP] = {"http", "MPB_HTTP", T_HTTP, 0, 0, NULL, "off"},
    [S_MAX_FRAME] = {"max-frame", "MPB_MAX_FRAME", T_SIZE, 4096, 1u << 30, "4096 to 1g", "8m"},
    [S_MAX_VALUE] = {"max-value", "MPB_MAX_VALUE", T_SIZE, 16, 1u << 30, "16 to 1g", "1m"},
    [S_MAX_KEY] = {"max-key", "MPB_MAX_KEY", T_SIZE, 16, 1u << 24, "16 to 16m", "64k"},
    [S_MAX_BATCH_REPLY] = {"max-batch-reply", "MPB_MAX_BATCH_REPLY", T_SIZE, 4096, 1ull << 36,
                           "4096 to 64g", "64m"},
    [S_HEARTBEAT] = {"heartbeat-ms", "MPB_HEARTBEAT_MS", T_MS, 10, 600000, "10 to 600000",
                     "1000"},
    [S_TTL] = {"session-ttl-ms", "MPB_SESSION_TTL_MS", T_MS, 50, 86400000, "50 to 86400000",
               "5000"},
    [S_LOG_LEVEL] = {"log-level", "MPB_LOG_LEVEL", T_LEVEL, 0, 0, NULL, "info"},
    [S_LOG_FORMAT] = {"log-format", "MPB_LOG_FORMAT", T_FORMAT, 0, 0, NULL, "logfmt"},
    [S_POOL_MAX_ATTEMPTS] = {"pool-max-attempts", "MPB_POOL_MAX_ATTEMPTS", T_COUNT, 1, 1000,
                             "1 to 1000", "3"},
    [S_POOL_MAX_RESULTS] = {"pool-max-results", "MPB_POOL_MAX_RESULTS", T_SIZE, 4096,
                            1ull << 36, "4096 to 64g", "64m"},
    [S_POOL_MAX_QUEUED] = {"pool-max-queued", "MPB_POOL_MAX_QUEUED", T_SIZE, 65536, 1ull << 36,
                           "64k to 64g", "256m"},
    [S_ANON_GRACE] = {"anon-grace-ms", "MPB_ANON_GRACE_MS", T_MS, 0, 86400000, "0 to 86400000",
                      "5000"},
    [S_PERSIST] = {"persist", "MPB_PERSIST", T_ONOFF, 0, 0, NULL, "on"},
    [S_FSYNC] = {"fsync", "MPB_FSYNC", T_FSYNC, 0, 0, NULL, "everysec"},
    [S_REPLY_CACHE] = {"reply-cache", "MPB_REPLY_CACHE", T_COUNT, 0, 1000000, "0 to 1000000",
                       "1024"},
    [S_REPLY_CACHE_BYTES] = {"reply-cache-bytes", "MPB_REPLY_CACHE_BYTES", T_SIZE, 4096,
                             1ull << 32, "4k to 4g", "1m"},
    [S_MAX_MEMORY] = {"max-memory", "MPB_MAX_MEMORY", T_SIZE, 0, 1ull << 44, "0 to 16t", "0"},
    [S_MAX_OBJECTS] = {"max-objects", "MPB_MAX_OBJECTS", T_COUNT, 0, 1000000000,
                       "0 to 1000000000", "0"},
    [S_MAX_SESSIONS] = {"max-sessions", "MPB_MAX_SESSIONS", T_COUNT, 1, 10000000, "1 to 10000000",
                        "100000"},
    [S_MAX_SESSIONS_PER_CONN] = {"max-sessions-per-conn", "MPB_MAX_SESSIONS_PER_CONN", T_COUNT, 1,
                                 100000, "1 to 100000", "16"},
    [S_HTTP_AUTH] = {"http-auth", "MPB_HTTP_AUTH", T_PATH, 0, 0, NULL, NULL},
    [S_ENCRYPTION] = {"encryption", "MPB_ENCRYPTION", T_ENC, 0, 0, NULL, "auto"},
    [S_MAX_CONNECTIONS] = {"max-connections", "MPB_MAX_CONNECTIONS", T_COUNT, 0, 1000000,
                           "0 to 1000000", "0"},
    [S_MAX_HANDSHAKES_PER_ADDR] = {"max-handshakes-per-addr", "MPB_MAX_HANDSHAKES_PER_ADDR",
                                   T_COUNT, 1, 100000, "1 to 100000", "1024"},
    [S_MAX_UNAUTH_MEMORY] = {"max-unauth-memory", "MPB_MAX_UNAUTH_MEMORY", T_SIZE, 1u << 20,
                             1ull << 36, "1m to 64g", "1g"},
    [S_HANDSHAKE] = {"handshake-ms", "MPB_HANDSHAKE_MS", T_MS, 100, 600000, "100 to 600000",
                     "5000"},
    [S_IDLE] = {"idle-ms", "MPB_IDLE_MS", T_MS, 100, 86400000, "100 to 86400000", "10000"},
    [S_MAX_OUTPUT] = {"max-output", "MPB_MAX_OUTPUT", T_SIZE, 0, 1ull << 36, "0 to 64g", "64m"},
    [S_SLOWLOG_SLOWER] = {"slowlog-log-slower-than", "MPB_SLOWLOG_LOG_SLOWER_THAN", T_COUNT, 0,
                          3600000000ull, "0 to 3600000000", "10000"},
    [S_SLOWLOG_MAX_LEN] = {"slowlog-max-len", "MPB_SLOWLOG_MAX_LEN", T_COUNT, 0, 100000,
                           "0 to 100000", "128"},
};

/* The layers, lowest first. */
enum { R_DEFAULT, R_FILE, R_ENV, R_FLAG };

/* Where one value was found. */
typedef struct src {
    int rank;
    const char *file; /* R_FILE */
    int line;
} src_t;

struct conf {
    config_t cfg;
    char *str[S__N];          /* owned values of the path and http settings */
    char *listen[MAX_LISTEN]; /* owned */
    char *src[S__N];          /* where each value came from, as config_print says it */
    char *listen_src[MAX_LISTEN];
    int rank[S__N];
    char *file;     /* the config file, if any */
    char *file_src; /* "--config" or "MPB_CONFIG" */
    keysrc_t keysrc;
    char *key_src; /* for KEYSRC_FILE/ENV: which setting said so */
    char *key_note; /* MPB_AUTHKEY set but not used: why, for check and the log */
    bool check;
    int nerr;
    FILE *err;
};

static char *xstrdup(const char *s) {
    return xstrndup(s, strlen(s));
}

__attribute__((format(printf, 1, 2))) static char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: mpbrokerd [options]\n"
            "Each setting is a flag, an environment variable and a config file key, in that\n"
            "order of precedence (flags win): --max-frame, MPB_MAX_FRAME, max-frame = ...\n"
            "\n"
            "  -c, --config PATH         config file of 'key = value' lines (env MPB_CONFIG)\n"
            "      --check-config        load and check everything, print the effective\n"
            "                            configuration and exit: 0 if valid, 2 if not (it\n"
            "                            also makes and writes in the data-dir, binds the\n"
            "                            endpoints and the HTTP address, and undoes it)\n"
            "  -l, --listen ENDPOINT     tcp://ADDR:PORT or ipc:///PATH; repeatable\n"
            "                            (default tcp://127.0.0.1:5555; env MPB_LISTEN, a comma-\n"
            "                            separated list)\n"
            "  -k, --authkey-file PATH   the shared authkey (env MPB_AUTHKEY_FILE, or the key\n"
            "                            itself in MPB_AUTHKEY). Without one, a key is made in\n"
            "                            DATA_DIR/authkey (mode 0600) on first start.\n"
            "  -d, --data-dir DIR        state directory (default ./mpb-data; env MPB_DATA_DIR)\n"
            "      --endpoint-file PATH  write the first bound endpoint there (for port 0/*)\n"
            "                            (env MPB_ENDPOINT_FILE)\n"
            "      --http ADDR:PORT      serve /healthz, /readyz and /metrics over HTTP, e.g.\n"
            "                            0.0.0.0:8080 (default off; env MPB_HTTP); the address\n"
            "                            got (with port 0, the port chosen) is written to\n"
            "                            DATA_DIR/http.addr while it serves\n"
            "      --max-frame BYTES     largest message accepted (default 8m; MPB_MAX_FRAME)\n"
            "      --max-value BYTES     largest value (default 1m; MPB_MAX_VALUE)\n"
            "      --max-key BYTES       largest key (default 64k; MPB_MAX_KEY)\n"
            "      --max-batch-reply BYTES  reply bytes one request frame may ask for; later\n"
            "                            requests of it get ETOOBIG (default 64m;\n"
            "                            MPB_MAX_BATCH_REPLY)\n"
            "      --heartbeat-ms MS     heartbeat interval clients are told (default 1000;\n"
            "                            MPB_HEARTBEAT_MS)\n"
            "      --session-ttl-ms MS   a silent session expires after this (default 5000;\n"
            "                            MPB_SESSION_TTL_MS)\n"
            "      --log-level LEVEL     debug, info, warn, error (default info; MPB_LOG_LEVEL)\n"
            "      --log-format FMT      logfmt or json (default logfmt; MPB_LOG_FORMAT)\n"
            "      --pool-max-attempts N times a pool task is dispatched before it fails\n"
            "                            because its workers died (default 3)\n"
            "      --pool-max-results BYTES  results one caller may leave untaken before its\n"
            "                            tasks wait (default 64m)\n"
            "      --pool-max-queued BYTES  unfinished pool tasks one caller may have; more\n"
            "                            are refused with ELIMIT (default 256m)\n"
            "      --anon-grace-ms MS    an anonymous object outlives its last reference by\n"
            "                            this (default 5000; MPB_ANON_GRACE_MS)\n"
            "      --reply-cache N       replies kept per session, so a request its client\n"
            "                            sends again after a cut is answered, not run\n"
            "                            twice (default 1024; MPB_REPLY_CACHE)\n"
            "      --reply-cache-bytes BYTES  and at most this many bytes of them per session\n"
            "                            (default 1m; MPB_REPLY_CACHE_BYTES)\n"
            "      --max-memory BYTES    past this much heap in use, requests that would grow\n"
            "                            memory get ENOMEM; reads, deletes and pops still\n"
            "                            work (default 0: none, or half of what ulimit -v\n"
            "                            leaves; MPB_MAX_MEMORY)\n"
            "      --max-objects N       objects the broker may hold; an op that would make\n"
            "                            one more gets ELIMIT (default 0: no limit;\n"
            "                            MPB_MAX_OBJECTS)\n"
            "      --persist on|off      log every write to DATA_DIR and load it on start\n"
            "                            (default on; MPB_PERSIST)\n"
            "      --fsync always|everysec|no  when the log reaches the disk: before each\n"
            "                            reply (grouped per loop turn), once a second, or as\n"
            "                            the kernel likes (default everysec; MPB_FSYNC)\n"
            "      --repair              a log damaged in its middle is cut at the damage\n"
            "                            (what followed is reported lost) instead of refusing\n"
            "                            to start\n"
            "      --max-sessions N      sessions at once; more are refused with ELIMIT\n"
            "                            (default 100000; MPB_MAX_SESSIONS)\n"
            "      --max-sessions-per-conn N  live sessions one connection may open; more are\n"
            "                            refused with ELIMIT (default 16)\n"
            "      --http-auth PATH      a file holding a bearer token that /metrics then asks\n"
            "                            for (Authorization: Bearer TOKEN); /healthz and\n"
            "                            /readyz stay open (default: /metrics open to all;\n"
            "                            MPB_HTTP_AUTH)\n"
            "      --encryption on|off   ZeroMQ CURVE keyed by the authkey (default auto: on\n"
            "                            for tcp://, off for ipc://; MPB_ENCRYPTION)\n"
            "      --max-connections N   connections at once, more are closed at accept\n"
            "                            (default 0: the descriptor limit less 64)\n"
            "      --max-handshakes-per-addr N  connections from one address that have not\n"
            "                            finished the handshake (default 1024)\n"
            "      --max-unauth-memory BYTES  memory all peers without a session may make the\n"
            "                            broker hold (default 1g): see README\n"
            "      --handshake-ms MS     deadline for the whole handshake (default 5000)\n"
            "      --idle-ms MS          a connection without a session is closed after this\n"
            "                            (default 10000)\n"
            "      --max-output BYTES    replies a client may leave unread (sent, not yet\n"
            "                            acknowledged by its TCP); past it the connection is\n"
            "                            closed, its session kept (default 64m; 0: no limit)\n"
            "      --slowlog-log-slower-than US  requests served in more microseconds go to\n"
            "                            the slow log (mpb slowlog; default 10000, 0: all)\n"
            "      --slowlog-max-len N   entries the slow log keeps (default 128; 0: none)\n"
            "  -V, --version             print the version\n"
            "  -h, --help                this text\n"
            "BYTES take a k, m or g suffix. An empty environment variable counts as unset.\n");
}

/* ---- messages ---- */

__attribute__((format(printf, 4, 5))) static void complain(conf_t *c, const src_t *w, int s,
                                                           const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    switch (w->rank) {
    case R_FILE:
        if (s >= 0) fprintf(c->err, "mpbrokerd: %s:%d: %s: %s\n", w->file, w->line,
                            settings[s].key, msg);
        else fprintf(c->err, "mpbrokerd: %s:%d: %s\n", w->file, w->line, msg);
        break;
    case R_ENV: fprintf(c->err, "mpbrokerd: %s: %s\n", settings[s].env, msg); break;
    case R_FLAG: fprintf(c->err, "mpbrokerd: --%s: %s\n", settings[s].key, msg); break;
    default: fprintf(c->err, "mpbrokerd: %s\n", msg); break;
    }
    c->nerr++;
}

/* How config_print and the cross-checks name a value's source. */
static char *src_label(const src_t *w, int s) {
    switch (w->rank) {
    case R_FILE: return xasprintf("%s:%d", w->file, w->line);
    case R_ENV: return xasprintf("env %s", settings[s].env);
    case R_FLAG: return xasprintf("flag --%s", settings[s].key);
    default: return xstrdup("default");
    }
}

/* ---- checking one value ---- */

/* A non-negative integer with an optional k/m/g suffix (powers of 1024), in lo..hi. */
static bool parse_size(const char *s, unsigned long long lo, unsigned long long hi,
                       unsigned long long *out) {
    if (*s < '0' || *s > '9') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return false;
    unsigned long long mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1024, end++;
    else if (*end == 'm' || *end == 'M') mul = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G') mul = 1024ULL * 1024 * 1024, end++;
    if (*end) return false;
    if (v > hi / mul + 1) return false; /* would overflow */
    v *= mul;
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool has_blank_or_ctl(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f) return true;
    return false;
}

/* A ZeroMQ endpoint the broker can bind: tcp://HOST:PORT (PORT a number or *), ipc://PATH. */
static bool check_endpoint(const char *s, char *why, size_t n) {
    if (has_blank_or_ctl(s)) {
        snprintf(why, n, "'%s' contains a blank or control character", s);
        return false;
    }
    if (!strncmp(s, "tcp://", 6)) {
        const char *host = s + 6, *colon = strrchr(host, ':');
        if (!colon || colon == host) {
            snprintf(why, n, "'%s' is not tcp://ADDR:PORT", s);
            return false;
        }
        const char *port = colon + 1;
        if (!strcmp(port, "*")) return true;
        unsigned long long p;
        if (!parse_size(port, 0, 65535, &p) || strpbrk(port, "kKmMgG")) {
            snprintf(why, n, "'%s': the port must be 0..65535 or *", s);
            return false;
        }
        return true;
    }
    if (!strncmp(s, "ipc://", 6)) {
        size_t len = strlen(s + 6);
        if (len == 0 || len > 107) {
            snprintf(why, n, "'%s': an ipc path must have 1 to 107 characters", s);
            return false;
        }
        return true;
    }
    snprintf(why, n, "'%s' is not tcp://ADDR:PORT or ipc:///PATH", s);
    return false;
}

/* "ADDR:PORT" as http.c takes it (common/addr.c, the one parser of it). */
static bool check_http(const char *s, char *why, size_t n) {
    addr_t a;
    return addr_parse(s, &a, why, n) == 0;
}

/* Checks val for setting s and, when w ranks at least as high as what is there, makes it the
 * setting's value. Bad values are reported and change nothing. */
static void set_value(conf_t *c, int s, const char *val, const src_t *w) {
    const setting_t *st = &settings[s];
    char why[512] = "";
    unsigned long long v = 0;
    int level = 0, fsync_mode = FSYNC_EVERYSEC;
    bool json = false, on = true;
    switch (st->type) {
    case T_LISTEN:
        if (!check_endpoint(val, why, sizeof why)) goto bad;
        break;
    case T_PATH:
        if (!*val) {
            snprintf(why, sizeof why, "empty path");
            goto bad;
        }
        break;
    case T_HTTP:
        if (strcmp(val, "off") && !check_http(val, why, sizeof why)) goto bad;
        break;
    case T_SIZE:
        if (!parse_size(val, st->lo, st->hi, &v)) {
            snprintf(why, sizeof why, "'%s' is not a size from %s (bytes; k, m, g suffixes)",
                     val, st->range);
            goto bad;
        }
        break;
    case T_MS:
        if (!parse_size(val, st->lo, st->hi, &v) || strpbrk(val, "kKmMgG")) {
            snprintf(why, sizeof why, "'%s' is not a number of milliseconds from %s", val,
                     st->range);
            goto bad;
        }
        break;
    case T_COUNT:
        if (!parse_size(val, st->lo, st->hi, &v) || strpbrk(val, "kKmMgG")) {
            snprintf(why, sizeof why, "'%s' is not a number from %s", val, st->range);
            goto bad;
        }
        break;
    case T_LEVEL:
        if ((level = log_level_parse(val)) < 0) {
            snprintf(why, sizeof why, "'%s' is not debug, info, warn or error", val);
            goto bad;
        }
        break;
    case T_ONOFF:
        if (!strcmp(val, "off")) on = false;
        else if (strcmp(val, "on")) {
            snprintf(why, sizeof why, "'%s' is not on or off", val);
            goto bad;
        }
        break;
    case T_FSYNC:
        if (!strcmp(val, "always")) fsync_mode = FSYNC_ALWAYS;
        else if (!strcmp(val, "no")) fsync_mode = FSYNC_NO;
        else if (strcmp(val, "everysec")) {
            snprintf(why, sizeof why, "'%s' is not always, everysec or no", val);
            goto bad;
        }
        break;
    case T_FORMAT:
        if (!strcmp(val, "json")) json = true;
        else if (strcmp(val, "logfmt")) {
            snprintf(why, sizeof why, "'%s' is not logfmt or json", val);
            goto bad;
        }
        break;
    case T_ENC:
        if (!strcmp(val, "on")) v = ENC_ON;
        else if (!strcmp(val, "off")) v = ENC_OFF;
        else if (!strcmp(val, "auto")) v = ENC_AUTO;
        else {
            snprintf(why, sizeof why, "'%s' is not on, off or auto", val);
            goto bad;
        }
        break;
    }

    if (st->type == T_LISTEN) {
        if (w->rank > c->rank[s]) { /* a higher layer's list replaces a lower one's */
            for (int i = 0; i < c->cfg.nlisten; i++) {
                free(c->listen[i]);
                free(c->listen_src[i]);
                c->listen[i] = c->listen_src[i] = NULL;
            }
            c->cfg.nlisten = 0;
            c->rank[s] = w->rank;
        } else if (w->rank < c->rank[s]) {
            return;
        }
        if (c->cfg.nlisten == MAX_LISTEN) {
            complain(c, w, s, "more than %d endpoints to listen on", MAX_LISTEN);
            return;
        }
        c->listen[c->cfg.nlisten] = xstrdup(val);
        c->listen_src[c->cfg.nlisten] = src_label(w, s);
        c->cfg.listen[c->cfg.nlisten] = c->listen[c->cfg.nlisten];
        c->cfg.nlisten++;
        return;
    }
    if (w->rank < c->rank[s]) return;
    c->rank[s] = w->rank;
    free(c->src[s]);
    c->src[s] = src_label(w, s);
    limits_t *l = &c->cfg.limits;
    switch (s) {
    case S_AUTHKEY_FILE:
    case S_DATA_DIR:
    case S_ENDPOINT_FILE:
    case S_HTTP:
    case S_HTTP_AUTH:
        free(c->str[s]);
        c->str[s] = (st->type == T_HTTP && !strcmp(val, "off")) ? NULL : xstrdup(val);
        break;
    case S_MAX_FRAME: l->max_frame = (size_t)v; break;
    case S_MAX_VALUE: l->max_value = (size_t)v; break;
    case S_MAX_KEY: l->max_key = (size_t)v; break;
    case S_MAX_BATCH_REPLY: l->max_batch_reply = (size_t)v; break;
    case S_HEARTBEAT: l->heartbeat_ms = (int)v; break;
    case S_TTL: l->session_ttl_ms = (int)v; break;
    case S_LOG_LEVEL: c->cfg.log_level = level; break;
    case S_LOG_FORMAT: c->cfg.log_json = json; break;
    case S_POOL_MAX_ATTEMPTS: l->pool_max_attempts = (int)v; break;
    case S_POOL_MAX_RESULTS: l->pool_max_results = (size_t)v; break;
    case S_POOL_MAX_QUEUED: l->pool_max_queued = (size_t)v; break;
    case S_ANON_GRACE: l->anon_grace_ms = (int)v; break;
    case S_REPLY_CACHE: l->reply_cache = (size_t)v; break;
    case S_REPLY_CACHE_BYTES: l->reply_cache_bytes = (size_t)v; break;
    case S_MAX_MEMORY: l->max_memory = (size_t)v; break;
    case S_MAX_OBJECTS: l->max_objects = (size_t)v; break;
    case S_PERSIST: c->cfg.persist = on; break;
    case S_FSYNC: c->cfg.fsync = fsync_mode; break;
    case S_MAX_SESSIONS: l->max_sessions = (size_t)v; break;
    case S_MAX_SESSIONS_PER_CONN: l->max_sessions_per_conn = (size_t)v; break;
    case S_ENCRYPTION: c->cfg.encryption = (int)v; break;
    case S_MAX_CONNECTIONS: l->max_connections = (size_t)v; break;
    case S_MAX_HANDSHAKES_PER_ADDR: l->max_handshakes_per_addr = (size_t)v; break;
    case S_MAX_UNAUTH_MEMORY: l->max_unauth_memory = (size_t)v; break;
    case S_HANDSHAKE: l->handshake_ms = (int)v; break;
    case S_IDLE: l->idle_ms = (int)v; break;
    case S_MAX_OUTPUT: l->max_output = (size_t)v; break;
    case S_SLOWLOG_SLOWER: l->slowlog_slower_us = (int64_t)v; break;
    case S_SLOWLOG_MAX_LEN: l->slowlog_max_len = (size_t)v; break;
    default: break;
    }
    return;
bad:
    complain(c, w, s, "%s", why);
}

/* ---- the layers ---- */

static void load_defaults(conf_t *c) {
    src_t w = {R_DEFAULT, NULL, 0};
    for (int s = 0; s < S__N; s++) {
        c->rank[s] = R_DEFAULT;
        if (settings[s].dflt) set_value(c, s, settings[s].dflt, &w);
        else c->src[s] = xstrdup("default");
    }
    c->cfg.limits.max_scan = 1000;
    c->cfg.limits.max_pending = 4096;
}

static int find_key(const char *k) {
    for (int s = 0; s < S__N; s++)
        if (!strcmp(settings[s].key, k)) return s;
    return -1;
}

/* A hint for a key that is almost right: max_frame, MAX-FRAME, MPB_MAX_FRAME. */
static const char *near_key(const char *k) {
    char norm[64];
    size_t n = strlen(k);
    if (n >= sizeof norm) return NULL;
    for (size_t i = 0; i <= n; i++) norm[i] = k[i] == '_' ? '-' : k[i];
    for (int s = 0; s < S__N; s++)
        if (!strcasecmp(settings[s].key, norm) || !strcasecmp(settings[s].env, k))
            return settings[s].key;
    return NULL;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

/* One "key = value" line (comments and blank lines are skipped by the caller). */
static void load_line(conf_t *c, char *line, const src_t *w, int *seen) {
    char *eq = strchr(line, '=');
    if (!eq) {
        /* Not echoed: a line without '=' may well be a pasted key. */
        complain(c, w, -1, "expected 'key = value' (a line without '=')");
        return;
    }
    *eq = 0;
    char *key = trim(line), *val = eq + 1;
    while (*val == ' ' || *val == '\t') val++;
    if (!*key) {
        complain(c, w, -1, "no key before '='");
        return;
    }
    int s = find_key(key);
    if (s < 0) {
        const char *near = near_key(key);
        if (!strcmp(key, "authkey"))
            complain(c, w, -1, "the authkey itself does not belong in a config file: put it in "
                               "a file of its own (mode 0600) and name that with authkey-file");
        else if (!strcmp(key, "config"))
            complain(c, w, -1, "a config file cannot name another one");
        else if (near)
            complain(c, w, -1, "unknown key '%s' (did you mean '%s'?)", key, near);
        else complain(c, w, -1, "unknown key '%.60s'", key);
        return;
    }
    if (*val == '"') { /* quoted: up to the next quote, then only a comment may follow */
        char *q = strchr(val + 1, '"');
        if (!q) {
            complain(c, w, s, "no closing '\"'");
            return;
        }
        *q = 0;
        char *rest = q + 1;
        while (*rest == ' ' || *rest == '\t') rest++;
        if (*rest && *rest != '#') {
            complain(c, w, s, "unexpected '%.40s' after the quoted value", rest);
            return;
        }
        val++;
    } else {
        for (char *p = val; *p; p++)
            if (*p == '#' && (p == val || p[-1] == ' ' || p[-1] == '\t')) {
                *p = 0;
                break;
            }
        val = trim(val);
    }
    if (!*val) {
        complain(c, w, s, "empty value");
        return;
    }
    if (s != S_LISTEN && seen[s]) {
        complain(c, w, s, "given twice (first on line %d)", seen[s]);
        return;
    }
    seen[s] = w->line;
    set_value(c, s, val, w);
}

static void load_file(conf_t *c) {
    FILE *f = fopen(c->file, "r");
    if (!f) {
        fprintf(c->err, "mpbrokerd: %s: cannot read config file %s: %s\n", c->file_src, c->file,
                strerror(errno));
        c->nerr++;
        return;
    }
    int seen[S__N] = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    src_t w = {R_FILE, c->file, 0};
    while ((n = getline(&line, &cap, f)) >= 0) {
        w.line++;
        if (n && line[n - 1] == '\n') line[--n] = 0;
        if (n && line[n - 1] == '\r') line[--n] = 0;
        if ((size_t)n != strlen(line)) {
            complain(c, &w, -1, "a NUL byte: this is not a text file");
            break;
        }
        if (n > MAX_LINE) {
            complain(c, &w, -1, "line longer than %d characters", MAX_LINE);
            continue;
        }
        char *p = trim(line);
        if (!*p || *p == '#') continue;
        load_line(c, p, &w, seen);
    }
    if (ferror(f)) {
        fprintf(c->err, "mpbrokerd: %s: read error: %s\n", c->file, strerror(errno));
        c->nerr++;
    }
    free(line);
    fclose(f);
}

static void load_env(conf_t *c) {
    src_t w = {R_ENV, NULL, 0};
    for (int s = 0; s < S__N; s++) {
        const char *v = getenv(settings[s].env);
        if (!v || !*v) continue;
        if (s != S_LISTEN) {
            set_value(c, s, v, &w);
            continue;
        }
        /* MPB_LISTEN: endpoints separated by commas or blanks. */
        char *copy = xstrdup(v), *save = NULL;
        for (char *e = strtok_r(copy, ", \t\n", &save); e; e = strtok_r(NULL, ", \t\n", &save))
            set_value(c, s, e, &w);
        free(copy);
    }
}

/* ---- checks across settings, and the authkey ---- */

int config_read_key_file(const char *path, uint8_t **key, size_t *len, char *err,
                         size_t errlen, char *warn, size_t warnlen) {
    int rc = mpb__key_file_read("authkey file", path, key, len, err, errlen, warn, warnlen);
    return rc ? -1 : 0;
}

/* The data-dir as the broker will use it: made (one level, as mkdir does) if it is not there,
 * and a file written in it; all of it removed again. */
static void check_data_dir(conf_t *c) {
    src_t none = {R_DEFAULT, NULL, 0};
    const char *dir = c->str[S_DATA_DIR];
    const char *src = c->src[S_DATA_DIR];
    struct stat st;
    bool made = false;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            complain(c, &none, -1, "data-dir %s (%s) is not a directory", dir, src);
            return;
        }
    } else if (errno != ENOENT) {
        complain(c, &none, -1, "data-dir %s (%s): %s", dir, src, strerror(errno));
        return;
    } else if (mkdir(dir, 0700) != 0) {
        int e = errno;
        char parent[4200];
        snprintf(parent, sizeof parent, "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) *slash = 0;
        else snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
        bool noparent = e == ENOENT && stat(parent, &st) != 0;
        complain(c, &none, -1, "data-dir %s (%s) cannot be created: %s%s%s%s", dir, src,
                 strerror(e), noparent ? " (the broker makes only the last directory: " : "",
                 noparent ? parent : "", noparent ? " must exist)" : "");
        return;
    } else {
        made = true;
    }
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.mpbrokerd-check-XXXXXX", dir);
    int fd = mkstemp(probe);
    if (fd < 0) {
        complain(c, &none, -1, "data-dir %s (%s) is not writable: %s", dir, src,
                 strerror(errno));
    } else {
        bool ok = write(fd, "x", 1) == 1;
        int e = errno;
        close(fd);
        unlink(probe);
        if (!ok)
            complain(c, &none, -1, "data-dir %s (%s) is not writable: %s", dir, src,
                     strerror(e));
    }
    if (made) rmdir(dir);
}

/* An ipc:// path: a broker must not be listening there already (libzmq would take the path
 * from it), and the directory must take a socket. */
static void check_ipc(conf_t *c, int i) {
    src_t none = {R_DEFAULT, NULL, 0};
    const char *ep = c->cfg.listen[i], *path = ep + 6;
    struct sockaddr_un sa = {0};
    sa.sun_family = AF_UNIX;
    if (path[0] == '@' || strlen(path) >= sizeof sa.sun_path) return; /* abstract: zmq's */
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            complain(c, &none, -1, "listen %s (%s): %s exists and is not a socket", ep,
                     c->listen_src[i], path);
        else if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            complain(c, &none, -1, "listen %s (%s): cannot bind: something listens there "
                     "already (another broker?)", ep, c->listen_src[i]);
    } else if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        complain(c, &none, -1, "listen %s (%s): cannot bind: %s", ep, c->listen_src[i],
                 strerror(errno));
    } else {
        unlink(path);
    }
    close(fd);
}

/* Every endpoint bound as the broker binds it (tcp through libzmq itself, so interface names
 * and wildcards mean what they will mean), then closed. */
static void check_listen(conf_t *c) {
    src_t none = {R_DEFAULT, NULL, 0};
    void *ctx = NULL;
    for (int i = 0; i < c->cfg.nlisten; i++) {
        const char *ep = c->cfg.listen[i];
        if (!strncmp(ep, "ipc://", 6)) {
            check_ipc(c, i);
            continue;
        }
        if (!ctx && !(ctx = zmq_ctx_new())) return;
        void *sock = zmq_socket(ctx, ZMQ_ROUTER);
        if (!sock) break;
        int zero = 0;
        zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_bind(sock, ep) != 0)
            complain(c, &none, -1, "listen %s (%s): cannot bind: %s", ep, c->listen_src[i],
                     zmq_strerror(zmq_errno()));
        zmq_close(sock);
    }
    if (ctx) zmq_ctx_term(ctx);
}

static void check_all(conf_t *c) {
    const limits_t *l = &c->cfg.limits;
    src_t none = {R_DEFAULT, NULL, 0};
    if (l->max_value + l->max_key + 64 > l->max_frame)
        complain(c, &none, -1,
                 "max-value (%zu, %s) plus max-key (%zu, %s) plus 64 must fit in max-frame "
                 "(%zu, %s)",
                 l->max_value, c->src[S_MAX_VALUE], l->max_key, c->src[S_MAX_KEY], l->max_frame,
                 c->src[S_MAX_FRAME]);
    if (l->session_ttl_ms < 2 * l->heartbeat_ms)
        complain(c, &none, -1,
                 "session-ttl-ms (%d, %s) must be at least twice heartbeat-ms (%d, %s)",
                 l->session_ttl_ms, c->src[S_TTL], l->heartbeat_ms, c->src[S_HEARTBEAT]);

    /* The authkey: a file named by a flag or MPB_AUTHKEY_FILE, else MPB_AUTHKEY, else a file
     * named in the config file, else DATA_DIR/authkey. */
    const char *envkey = getenv("MPB_AUTHKEY");
    bool have_env = envkey && *envkey;
    if (c->str[S_AUTHKEY_FILE] && (c->rank[S_AUTHKEY_FILE] >= R_ENV || !have_env)) {
        c->keysrc = KEYSRC_FILE;
        c->key_src = xstrdup(c->src[S_AUTHKEY_FILE]);
        if (have_env)
            c->key_note = xasprintf("MPB_AUTHKEY is set too, and ignored: the authkey file "
                                    "(%s) wins over it", c->src[S_AUTHKEY_FILE]);
    } else if (have_env) {
        c->keysrc = KEYSRC_ENV;
        c->key_src = xstrdup("env MPB_AUTHKEY");
    } else {
        c->keysrc = KEYSRC_GENERATE;
        c->key_src = xstrdup(c->src[S_DATA_DIR]);
    }

    if (!c->check) return;
    /* --check-config also tries what the broker does first, and leaves nothing behind. */
    check_data_dir(c);
    check_listen(c);
    if (c->str[S_HTTP]) {
        char why[512];
        if (http_check_bind(c->str[S_HTTP], why, sizeof why))
            complain(c, &none, -1, "http %s (%s): %s", c->str[S_HTTP], c->src[S_HTTP], why);
    }
    if (c->keysrc == KEYSRC_GENERATE) { /* a key made on an earlier start must be readable */
        char path[4200], why[512];
        uint8_t *key = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/authkey", c->str[S_DATA_DIR]);
        char warn[1024];
        if (access(path, F_OK) == 0 &&
            config_read_key_file(path, &key, &len, why, sizeof why, warn, sizeof warn))
            complain(c, &none, -1, "the authkey made in data-dir (%s): %s", c->src[S_DATA_DIR],
                     why);
        else if (key && warn[0]) fprintf(c->err, "mpbrokerd: warning: %s\n", warn);
        if (key) {
            explicit_bzero(key, len);
            free(key);
        }
    }
    if (c->str[S_HTTP_AUTH]) { /* as http_set_auth() will read it */
        uint8_t *tok = NULL;
        size_t n = 0;
        char why[512];
        if (mpb__key_file_read("http-auth token file", c->str[S_HTTP_AUTH], &tok, &n, why,
                               sizeof why, NULL, 0))
            complain(c, &none, -1, "http-auth (%s): %s", c->src[S_HTTP_AUTH], why);
        if (tok) {
            explicit_bzero(tok, n);
            free(tok);
        }
    }
    if (c->keysrc == KEYSRC_FILE) {
        uint8_t *key = NULL;
        size_t len = 0;
        char why[512], warn[1024];
        if (config_read_key(c, &key, &len, why, sizeof why, warn, sizeof warn))
            complain(c, &none, -1, "authkey-file (%s): %s", c->src[S_AUTHKEY_FILE], why);
        else if (warn[0]) fprintf(c->err, "mpbrokerd: warning: %s\n", warn);
        if (key) {
            explicit_bzero(key, len);
            free(key);
        }
    }
}

/* ---- MPB_* variables that are no setting ---- */

/* Variables the clients, the worker and the tests read: no warning for them. */
static const char *const not_ours[] = {"MPB_CONFIG", "MPB_AUTHKEY", "MPB_ENDPOINT",
                                       "MPB_REQUIRE_CONTAINER", NULL};

static bool env_known(const char *name, size_t n) {
    if (n > 9 && !strncmp(name, "MPB_TEST_", 9)) return true;
    for (int s = 0; s < S__N; s++)
        if (strlen(settings[s].env) == n && !strncmp(settings[s].env, name, n)) return true;
    for (int i = 0; not_ours[i]; i++)
        if (strlen(not_ours[i]) == n && !strncmp(not_ours[i], name, n)) return true;
    return false;
}

/* Edit distance of a and b (case-insensitive, '_' ignored), capped at 3: names are short. */
static int name_distance(const char *a, size_t an, const char *b) {
    char x[64], y[64];
    size_t xn = 0, yn = 0;
    for (size_t i = 0; i < an && xn < sizeof x; i++)
        if (a[i] != '_') x[xn++] = (char)(a[i] | 0x20);
    for (; *b && yn < sizeof y; b++)
        if (*b != '_') y[yn++] = (char)(*b | 0x20);
    int d[65][65];
    for (size_t i = 0; i <= xn; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= yn; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= xn; i++)
        for (size_t j = 1; j <= yn; j++) {
            int best = d[i - 1][j - 1] + (x[i - 1] != y[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    return d[xn][yn] > 3 ? 3 : d[xn][yn];
}

/* The known variable nearest to name, if it is near enough to be a typo of it. */
static const char *env_hint(const char *name, size_t n) {
    const char *best = NULL;
    int bd = 3;
    for (int s = 0; s < S__N; s++) {
        int d = name_distance(name, n, settings[s].env);
        if (d < bd) bd = d, best = settings[s].env;
    }
    for (int i = 0; not_ours[i]; i++) {
        int d = name_distance(name, n, not_ours[i]);
        if (d < bd) bd = d, best = not_ours[i];
    }
    return best;
}

/* Calls say(arg, name, hint) for every MPB_* variable that nothing reads (hint may be NULL). */
static void unknown_env(void (*say)(void *arg, const char *name, const char *hint), void *arg) {
    int k = 0;
    for (char **e = environ; *e && k < 1000; e++, k++) {
        if (strncmp(*e, "MPB_", 4)) continue;
        size_t n = strcspn(*e, "=");
        if (env_known(*e, n)) continue;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(n < 100 ? n : 100), *e);
        say(arg, name, env_hint(*e, n));
    }
}

static void warn_env_to(void *arg, const char *name, const char *hint) {
    FILE *f = arg;
    if (hint)
        fprintf(f, "mpbrokerd: warning: %s is not a setting (ignored); did you mean %s?\n", name,
                hint);
    else fprintf(f, "mpbrokerd: warning: %s is not a setting of mpbrokerd (ignored)\n", name);
}

static void warn_env_log(void *arg, const char *name, const char *hint) {
    (void)arg;
    log_kv(LOG_WARN, "environment variable is not a setting: ignored", "name", name,
           "did_you_mean", hint, NULL);
}

/* ---- the flags ---- */

enum {
    O_CONFIG = 'c',
    O_CHECK = 256,
    O_REPAIR = 257,
    O_FLAG = 512, /* O_FLAG + setting index */
};

int config_load(int argc, char **argv, FILE *err, conf_t **out) {
    static const struct option opts[] = {
        {"config", required_argument, 0, O_CONFIG},
        {"check-config", no_argument, 0, O_CHECK},
        {"repair", no_argument, 0, O_REPAIR},
        {"persist", required_argument, 0, O_FLAG + S_PERSIST},
        {"fsync", required_argument, 0, O_FLAG + S_FSYNC},
        {"listen", required_argument, 0, 'l'},
        {"authkey-file", required_argument, 0, 'k'},
        {"data-dir", required_argument, 0, 'd'},
        {"endpoint-file", required_argument, 0, O_FLAG + S_ENDPOINT_FILE},
        {"http", required_argument, 0, O_FLAG + S_HTTP},
        {"max-frame", required_argument, 0, O_FLAG + S_MAX_FRAME},
        {"max-value", required_argument, 0, O_FLAG + S_MAX_VALUE},
        {"max-key", required_argument, 0, O_FLAG + S_MAX_KEY},
        {"max-batch-reply", required_argument, 0, O_FLAG + S_MAX_BATCH_REPLY},
        {"heartbeat-ms", required_argument, 0, O_FLAG + S_HEARTBEAT},
        {"session-ttl-ms", required_argument, 0, O_FLAG + S_TTL},
        {"log-level", required_argument, 0, O_FLAG + S_LOG_LEVEL},
        {"log-format", required_argument, 0, O_FLAG + S_LOG_FORMAT},
        {"pool-max-attempts", required_argument, 0, O_FLAG + S_POOL_MAX_ATTEMPTS},
        {"pool-max-results", required_argument, 0, O_FLAG + S_POOL_MAX_RESULTS},
        {"pool-max-queued", required_argument, 0, O_FLAG + S_POOL_MAX_QUEUED},
        {"anon-grace-ms", required_argument, 0, O_FLAG + S_ANON_GRACE},
        {"reply-cache", required_argument, 0, O_FLAG + S_REPLY_CACHE},
        {"reply-cache-bytes", required_argument, 0, O_FLAG + S_REPLY_CACHE_BYTES},
        {"max-memory", required_argument, 0, O_FLAG + S_MAX_MEMORY},
        {"max-objects", required_argument, 0, O_FLAG + S_MAX_OBJECTS},
        {"max-sessions", required_argument, 0, O_FLAG + S_MAX_SESSIONS},
        {"max-sessions-per-conn", required_argument, 0, O_FLAG + S_MAX_SESSIONS_PER_CONN},
        {"http-auth", required_argument, 0, O_FLAG + S_HTTP_AUTH},
        {"encryption", required_argument, 0, O_FLAG + S_ENCRYPTION},
        {"max-connections", required_argument, 0, O_FLAG + S_MAX_CONNECTIONS},
        {"max-handshakes-per-addr", required_argument, 0, O_FLAG + S_MAX_HANDSHAKES_PER_ADDR},
        {"max-unauth-memory", required_argument, 0, O_FLAG + S_MAX_UNAUTH_MEMORY},
        {"handshake-ms", required_argument, 0, O_FLAG + S_HANDSHAKE},
        {"idle-ms", required_argument, 0, O_FLAG + S_IDLE},
        {"max-output", required_argument, 0, O_FLAG + S_MAX_OUTPUT},
        {"slowlog-log-slower-than", required_argument, 0, O_FLAG + S_SLOWLOG_SLOWER},
        {"slowlog-max-len", required_argument, 0, O_FLAG + S_SLOWLOG_MAX_LEN},
        {"version", no_argument, 0, 'V'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *out = NULL;
    /* The flags are gathered first and applied last: they name the config file, and they
     * override it. */
    struct flag {
        int s;
        const char *v;
    } *flags = xcalloc((size_t)argc + 1, sizeof *flags);
    int nflags = 0, opt;
    const char *file = NULL;
    bool check = false, repair = false;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:l:k:d:Vh", opts, NULL)) != -1) {
        int s = -1;
        switch (opt) {
        case O_CONFIG: file = optarg; break;
        case O_CHECK: check = true; break;
        case O_REPAIR: repair = true; break;
        case 'l': s = S_LISTEN; break;
        case 'k': s = S_AUTHKEY_FILE; break;
        case 'd': s = S_DATA_DIR; break;
        case 'V':
            printf("mpbrokerd %s\n", MPBROKER_VERSION);
            free(flags);
            return CONF_EXIT0;
        case 'h':
            usage(stdout);
            free(flags);
            return CONF_EXIT0;
        default:
            if (opt >= O_FLAG && opt < O_FLAG + S__N) {
                s = opt - O_FLAG;
                break;
            }
            fprintf(err, "mpbrokerd: try 'mpbrokerd --help'\n");
            free(flags);
            return CONF_BAD;
        }
        if (s >= 0) flags[nflags++] = (struct flag){s, optarg};
    }

    conf_t *c = xcalloc(1, sizeof *c);
    *out = c;
    c->err = err;
    c->check = check;
    c->cfg.repair = repair;
    if (optind < argc) {
        fprintf(err, "mpbrokerd: unexpected argument '%s' (try 'mpbrokerd --help')\n",
                argv[optind]);
        c->nerr++;
    }
    load_defaults(c);
    const char *envfile = getenv("MPB_CONFIG");
    if (file) {
        c->file_src = xstrdup("flag --config");
    } else if (envfile && *envfile) {
        file = envfile;
        c->file_src = xstrdup("env MPB_CONFIG");
    }
    if (file && !*file) {
        fprintf(err, "mpbrokerd: --config: empty path\n");
        c->nerr++;
    } else if (file) {
        c->file = xstrdup(file);
        load_file(c);
    }
    load_env(c);
    src_t w = {R_FLAG, NULL, 0};
    for (int i = 0; i < nflags; i++) set_value(c, flags[i].s, flags[i].v, &w);
    free(flags);

    c->cfg.authkey_file = c->str[S_AUTHKEY_FILE];
    c->cfg.data_dir = c->str[S_DATA_DIR];
    c->cfg.endpoint_file = c->str[S_ENDPOINT_FILE];
    c->cfg.http = c->str[S_HTTP];
    c->cfg.http_auth = c->str[S_HTTP_AUTH];
    check_all(c);
    if (check || c->nerr) { /* at a start, config_log() says it */
        unknown_env(warn_env_to, err);
        if (c->key_note) fprintf(err, "mpbrokerd: warning: %s\n", c->key_note);
    }
    if (c->nerr) {
        fprintf(err, "mpbrokerd: %d bad setting%s\n", c->nerr, c->nerr == 1 ? "" : "s");
        return CONF_BAD;
    }
    return check ? CONF_CHECK : CONF_RUN;
}

void config_free(conf_t **pc) {
    conf_t *c = *pc;
    if (!c) return;
    for (int s = 0; s < S__N; s++) {
        free(c->str[s]);
        free(c->src[s]);
    }
    for (int i = 0; i < MAX_LISTEN; i++) {
        free(c->listen[i]);
        free(c->listen_src[i]);
    }
    free(c->file);
    free(c->file_src);
    free(c->key_src);
    free(c->key_note);
    free(c);
    *pc = NULL;
}

const config_t *config_get(const conf_t *c) {
    return &c->cfg;
}

keysrc_t config_keysrc(const conf_t *c) {
    return c->keysrc;
}

const char *config_file(const conf_t *c) {
    return c->file;
}

int config_read_key(const conf_t *c, uint8_t **key, size_t *len, char *err, size_t errlen,
                    char *warn, size_t warnlen) {
    *key = NULL;
    *len = 0;
    if (warn && warnlen) warn[0] = 0;
    if (c->keysrc == KEYSRC_ENV) {
        char *v = getenv("MPB_AUTHKEY");
        if (!v || !*v) {
            snprintf(err, errlen, "MPB_AUTHKEY is empty");
            return -1;
        }
        *len = strlen(v);
        *key = (uint8_t *)xstrndup(v, *len);
        explicit_bzero(v, *len); /* also out of /proc/PID/environ */
        mpb__key_check_len(*len, warn, warnlen);
        return 0;
    }
    if (c->keysrc != KEYSRC_FILE) {
        snprintf(err, errlen, "no authkey file configured");
        return -1;
    }
    return config_read_key_file(c->str[S_AUTHKEY_FILE], key, len, err, errlen, warn, warnlen);
}

/* A value as the parser reads it back: quoted when blanks at its ends or a '#' would cut it. */
static void print_kv(FILE *out, const char *key, const char *val, const char *src) {
    bool quote = val[0] == '"' || val[0] == ' ' || val[strlen(val) - 1] == ' ' ||
                 strchr(val, '#') != NULL;
    if (quote) fprintf(out, "%s = \"%s\"  # %s\n", key, val, src);
    else fprintf(out, "%s = %s  # %s\n", key, val, src);
}

static void print_num(FILE *out, const char *key, unsigned long long v, const char *src) {
    char num[32];
    snprintf(num, sizeof num, "%llu", v);
    print_kv(out, key, num, src);
}

void config_print(const conf_t *c, FILE *out) {
    const config_t *g = &c->cfg;
    const limits_t *l = &g->limits;
    fprintf(out, "# mpbrokerd %s: the effective configuration, as a config file.\n",
            MPBROKER_VERSION);
    fprintf(out, "# After each value, where it came from: default, FILE:LINE, env MPB_*, "
                 "flag --*.\n");
    if (c->file) fprintf(out, "# config file: %s (%s)\n", c->file, c->file_src);
    else fprintf(out, "# config file: none (--config PATH or MPB_CONFIG)\n");
    for (int i = 0; i < g->nlisten; i++) print_kv(out, "listen", g->listen[i], c->listen_src[i]);
    if (g->authkey_file) print_kv(out, "authkey-file", g->authkey_file, c->src[S_AUTHKEY_FILE]);
    else fprintf(out, "# authkey-file is not set  # default\n");
    switch (c->keysrc) {
    case KEYSRC_FILE:
        fprintf(out, "# authkey: read from the file %s (%s)\n", g->authkey_file, c->key_src);
        break;
    case KEYSRC_ENV:
        fprintf(out, "# authkey: the value of the environment variable MPB_AUTHKEY%s\n",
                g->authkey_file ? " (it overrides authkey-file from the config file)" : "");
        break;
    case KEYSRC_GENERATE: {
        char path[4096];
        snprintf(path, sizeof path, "%s/authkey", g->data_dir);
        if (access(path, F_OK) == 0)
            fprintf(out, "# authkey: read from %s (made on an earlier start)\n", path);
        else
            fprintf(out, "# authkey: none configured; made in %s (mode 0600) on first start\n",
                    path);
        break;
    }
    }
    print_kv(out, "data-dir", g->data_dir, c->src[S_DATA_DIR]);
    if (g->endpoint_file) print_kv(out, "endpoint-file", g->endpoint_file, c->src[S_ENDPOINT_FILE]);
    else fprintf(out, "# endpoint-file is not set  # default\n");
    print_kv(out, "http", g->http ? g->http : "off", c->src[S_HTTP]);
    print_num(out, "max-frame", (unsigned long long)l->max_frame, c->src[S_MAX_FRAME]);
    print_num(out, "max-value", (unsigned long long)l->max_value, c->src[S_MAX_VALUE]);
    print_num(out, "max-key", (unsigned long long)l->max_key, c->src[S_MAX_KEY]);
    print_num(out, "max-batch-reply", (unsigned long long)l->max_batch_reply, c->src[S_MAX_BATCH_REPLY]);
    print_num(out, "heartbeat-ms", (unsigned long long)l->heartbeat_ms, c->src[S_HEARTBEAT]);
    print_num(out, "session-ttl-ms", (unsigned long long)l->session_ttl_ms, c->src[S_TTL]);
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    print_kv(out, "log-level", levels[g->log_level], c->src[S_LOG_LEVEL]);
    print_kv(out, "log-format", g->log_json ? "json" : "logfmt", c->src[S_LOG_FORMAT]);
    print_num(out, "pool-max-attempts", (unsigned long long)l->pool_max_attempts, c->src[S_POOL_MAX_ATTEMPTS]);
    print_num(out, "pool-max-results", (unsigned long long)l->pool_max_results, c->src[S_POOL_MAX_RESULTS]);
    print_num(out, "pool-max-queued", (unsigned long long)l->pool_max_queued, c->src[S_POOL_MAX_QUEUED]);
    print_num(out, "anon-grace-ms", (unsigned long long)l->anon_grace_ms, c->src[S_ANON_GRACE]);
    print_num(out, "reply-cache", (unsigned long long)l->reply_cache, c->src[S_REPLY_CACHE]);
    print_num(out, "reply-cache-bytes", (unsigned long long)l->reply_cache_bytes, c->src[S_REPLY_CACHE_BYTES]);
    print_num(out, "max-memory", (unsigned long long)l->max_memory, c->src[S_MAX_MEMORY]);
    print_num(out, "max-objects", (unsigned long long)l->max_objects, c->src[S_MAX_OBJECTS]);
    print_kv(out, "persist", g->persist ? "on" : "off", c->src[S_PERSIST]);
    static const char *const fsyncs[] = {"no", "everysec", "always"};
    print_kv(out, "fsync", fsyncs[g->fsync], c->src[S_FSYNC]);
    print_num(out, "max-sessions", (unsigned long long)l->max_sessions, c->src[S_MAX_SESSIONS]);
    print_num(out, "max-sessions-per-conn", (unsigned long long)l->max_sessions_per_conn,
              c->src[S_MAX_SESSIONS_PER_CONN]);
    if (g->http_auth) print_kv(out, "http-auth", g->http_auth, c->src[S_HTTP_AUTH]);
    else fprintf(out, "# http-auth is not set: /metrics is open to all  # default\n");
    static const char *const enc[] = {"auto", "on", "off"};
    print_kv(out, "encryption", enc[c->cfg.encryption], c->src[S_ENCRYPTION]);
    print_num(out, "max-connections", (unsigned long long)l->max_connections, c->src[S_MAX_CONNECTIONS]);
    print_num(out, "max-handshakes-per-addr", (unsigned long long)l->max_handshakes_per_addr, c->src[S_MAX_HANDSHAKES_PER_ADDR]);
    print_num(out, "max-unauth-memory", (unsigned long long)l->max_unauth_memory, c->src[S_MAX_UNAUTH_MEMORY]);
    print_num(out, "handshake-ms", (unsigned long long)l->handshake_ms, c->src[S_HANDSHAKE]);
    print_num(out, "idle-ms", (unsigned long long)l->idle_ms, c->src[S_IDLE]);
    print_num(out, "max-output", (unsigned long long)l->max_output, c->src[S_MAX_OUTPUT]);
    print_num(out, "slowlog-log-slower-than", (unsigned long long)l->slowlog_slower_us,
              c->src[S_SLOWLOG_SLOWER]);
    print_num(out, "slowlog-max-len", (unsigned long long)l->slowlog_max_len,
              c->src[S_SLOWLOG_MAX_LEN]);
}

void config_log(const conf_t *c) {
    const char *how = c->keysrc == KEYSRC_FILE  ? "file"
                      : c->keysrc == KEYSRC_ENV ? "environment"
                                                : "data-dir";
    log_kv(LOG_INFO, "configuration", "config_file", c->file ? c->file : "none",
           "config_file_from", c->file ? c->file_src : NULL, "key_source", how, "key_from",
           c->key_src, NULL);
    if (c->key_note) log_kv(LOG_WARN, c->key_note, NULL);
    unknown_env(warn_env_log, NULL);
}
