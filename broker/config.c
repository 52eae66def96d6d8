/* config.c - mpbrokerd's settings: defaults, a config file, MPB_* environment variables and
 * flags, each layer overriding the one before. See config.h; the checks are in
 * config_check.c, the file reader in config_file.c.
 *
 * One table names every setting once: its key (the long flag and the file's key), its
 * environment variable, how its value is checked, its --help text and its field in config_t;
 * the getopt options, the usage text and the printer are made from it. A value is checked in
 * every layer where it appears, even when a higher layer overrides it, so --check-config
 * reports every bad value there is, each with its source:
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
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_int.h"
#include "persist.h"

#define LIM(f) offsetof(config_t, limits.f), sizeof(((config_t *)0)->limits.f)
#define CFG(f) offsetof(config_t, f), sizeof(((config_t *)0)->f)

const setting_t config_settings[S__N] = {
    [S_LISTEN] = {"listen", "MPB_LISTEN",      T_LISTEN,                             0,       0,                   NULL,                     "tcp://127.0.0.1:5555",                                         'l',
                  "ENDPOINT",                                                                                                                                                                                                                                                                                                            0,                                                                                                         0,
                  "tcp://ADDR:PORT, mpb://ADDR:PORT, ipc:///PATH or\n"
                  "unix:///PATH (unix:// and mpb://: Unix and TCP stream\n"
                  "sockets served by the loop itself, the fastest; mpb://\n"
                  "is always encrypted); repeatable\n"
                  "(default tcp://127.0.0.1:5555; env MPB_LISTEN, a comma-\n"
                  "separated list)"},
    [S_AUTHKEY_FILE] = {"authkey-file",        "MPB_AUTHKEY_FILE",            T_PATH,                       0,             0,         NULL,                    NULL,                                                                      'k',                                                                                         "PATH",
                  CFG(authkey_file),
                  "the shared authkey (env MPB_AUTHKEY_FILE, or the key\n"
                        "itself in MPB_AUTHKEY). Without one, a key is made in\n"
                        "DATA_DIR/authkey (mode 0600) on first start."                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                             },
    [S_DATA_DIR] = {"data-dir",        "MPB_DATA_DIR",                T_PATH,                               0,                 0,     NULL,            "./mpb-data",                                                                  'd',                                                                                     "DIR",
                  CFG(data_dir),                                                                                                               "state directory (default ./mpb-data; env MPB_DATA_DIR)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                 },
    [S_ENDPOINT_FILE] = {"endpoint-file",        "MPB_ENDPOINT_FILE",           T_PATH,                     0,            0,          NULL,                      NULL,                                                                       0,                                                                                        "PATH",
                  CFG(endpoint_file),
                  "write the first bound endpoint there (for port 0/*)\n"
                         "(env MPB_ENDPOINT_FILE)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                            },
    [S_HTTP] = {"http",        "MPB_HTTP",                    T_HTTP,                                       0,                     0, NULL,    "off",                                                              0,                                                                                                "ADDR:PORT",                                                                                                                CFG(http),
                  "serve /healthz, /readyz and /metrics over HTTP, e.g.\n"
                "0.0.0.0:8080 (default off; env MPB_HTTP); the address\n"
                "got (with port 0, the port chosen) is written to\n"
                "DATA_DIR/http.addr while it serves"},
    [S_MAX_FRAME] = {"max-frame",        "MPB_MAX_FRAME",               T_SIZE,                             4096,                1u << 30,   "4096 to 1g",    "8m",                                                    0,
                  "BYTES",                                                                                                                 LIM(max_frame),
                  "largest message accepted (default 8m; MPB_MAX_FRAME)"                                                                                                                                                                                                                                                                                                                                                                                                                                       },
    [S_MAX_VALUE] = {"max-value",        "MPB_MAX_VALUE",               T_SIZE,                             16,                1u << 30,     "16 to 1g",      "1m",                                                      0,
                  "BYTES",                                                                                                               LIM(max_value),                                                                                                                                                                                                                                                                                                                                                                                                                          "largest value (default 1m; MPB_MAX_VALUE)"                                                                                                                                                                                                                                                                                                                                                                                                                                         },
    [S_MAX_KEY] = {"max-key",        "MPB_MAX_KEY",                 T_SIZE,                                 16,                  1u << 24,   "16 to 16m",  "64k",                                                   0,                                                                                       "BYTES",
                  LIM(max_key),                                                                                                                              "largest key (default 64k; MPB_MAX_KEY)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  },
    [S_MAX_BATCH_REPLY] = {"max-batch-reply",        "MPB_MAX_BATCH_REPLY",         T_SIZE,                 4096,          1ull << 36,
                  "4096 to 64g",              "64m",                                                                                                                                                                             0,                                                                                                                                                                                                     "BYTES",                                                                                                      LIM(max_batch_reply),
                  "reply bytes one request frame may ask for; later\n"
                           "requests of it get ETOOBIG (default 64m;\n"
                           "MPB_MAX_BATCH_REPLY)"                      },
    [S_HEARTBEAT] = {"heartbeat-ms",        "MPB_HEARTBEAT_MS",            T_MS,                       10,               600000,          "10 to 600000",              "1000",
                  0,                                                                            "MS",                                                                                                                                                                                                                                                                                                                     LIM(heartbeat_ms),
                  "heartbeat interval clients are told (default 1000;\n"
                     "MPB_HEARTBEAT_MS)"                                                                                                                                                     },
    [S_TTL] = {"session-ttl-ms",        "MPB_SESSION_TTL_MS",          T_MS,                   50,             86400000,            "50 to 86400000",                "5000",
                  0,                                                                        "MS",                                                                                                                                                                                                                                                                                                                     LIM(session_ttl_ms),
                  "a silent session expires after this (default 5000;\n"
               "MPB_SESSION_TTL_MS)"                                                                                                                                                       },
    [S_LOG_LEVEL] = {"log-level",        "MPB_LOG_LEVEL",               T_LEVEL,                             0,               0,     NULL,              "info",                                                                    0,                                                                                           "LEVEL",
                  CFG(log_level),                                                                                                             "debug, info, warn, error (default info; MPB_LOG_LEVEL)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                },
    [S_LOG_FORMAT] = {"log-format",        "MPB_LOG_FORMAT",              T_FORMAT,                           0,             0,     NULL,                "logfmt",                                                                      0,                                                                                         "FMT",
                  CFG(log_json),                                                                                                             "logfmt or json (default logfmt; MPB_LOG_FORMAT)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                 },
    [S_POOL_MAX_ATTEMPTS] = {"pool-max-attempts",        "MPB_POOL_MAX_ATTEMPTS",       T_COUNT,             1,       1000,
                  "1 to 1000",                           "3",                                                                                                                                                                               0,                                                                                                                                                                                            "N",                                                                                           LIM(pool_max_attempts),
                  "times a pool task is dispatched before it fails\n"
                             "because its workers died (default 3)"                                 },
    [S_POOL_MAX_RESULTS] = {"pool-max-results",        "MPB_POOL_MAX_RESULTS",        T_SIZE,               4096,         1ull << 36,
                  "4096 to 64g",                "64m",                                                                                                                                                                             0,                                                                                                                                                                                                   "BYTES",                                                                                                    LIM(pool_max_results),
                  "results one caller may leave untaken before its\n"
                            "tasks wait (default 64m)"                       },
    [S_POOL_MAX_QUEUED] = {"pool-max-queued",        "MPB_POOL_MAX_QUEUED",         T_SIZE,                 65536,          1ull << 36,
                  "64k to 64g",             "256m",                                                                                                                                                                              0,                                                                                                                                                                                                      "BYTES",                                                                                                      LIM(pool_max_queued),
                  "unfinished pool tasks one caller may have; more\n"
                           "are refused with ELIMIT (default 256m)"                     },
    [S_ANON_GRACE] = {"anon-grace-ms",        "MPB_ANON_GRACE_MS",           T_MS,                     0,              86400000,            "0 to 86400000",
                  "5000",                                                   0,                                                                                                                                                                                                                                "MS",                                                                                                                                                                                                                                                           LIM(anon_grace_ms),
                  "an anonymous object outlives its last reference by\n"
                      "this (default 5000; MPB_ANON_GRACE_MS)"},
    [S_REPLY_CACHE] = {"reply-cache",        "MPB_REPLY_CACHE",             T_COUNT,                         0,             1000000,       "0 to 1000000",
                  "1024",                                                      0,                                                                                                                                                                                                                                "N",                                                                                                                                                                                                                                                        LIM(reply_cache),
                  "replies kept per session, so a request its client\n"
                       "sends again after a cut is answered, not run\n"
                       "twice (default 1024; MPB_REPLY_CACHE)"   },
    [S_REPLY_CACHE_BYTES] = {"reply-cache-bytes",        "MPB_REPLY_CACHE_BYTES",       T_SIZE,             4096,        1ull << 32,
                  "4k to 4g",                  "1m",                                                                                                                                                                                0,                                                                                                                                                                                                     "BYTES",                                                                                                   LIM(reply_cache_bytes),
                  "and at most this many bytes of them per session\n"
                             "(default 1m; MPB_REPLY_CACHE_BYTES)"                    },
    [S_MAX_MEMORY] = {"max-memory",        "MPB_MAX_MEMORY",              T_SIZE,                           0,               1ull << 44,       "0 to 16t",       "0",                                                     0,
                  "BYTES",                                                                                                               LIM(max_memory),
                  "past this much heap in use, requests that would grow\n"
                      "memory get ENOMEM; reads, deletes and pops still\n"
                      "work (default 0: none, or half of what ulimit -v\n"
                      "leaves; MPB_MAX_MEMORY)"                                                                                                                                                                                                                                                                                                                                                                                                                                        },
    [S_MAX_OBJECTS] = {"max-objects",        "MPB_MAX_OBJECTS",             T_COUNT,                         0,             1000000000,       "0 to 1000000000",
                  "0",                                                0,                                                                                                                                                                                                                                   "N",                                                                                                                                                                                                                                                                 LIM(max_objects),
                  "objects the broker may hold; an op that would make\n"
                       "one more gets ELIMIT (default 0: no limit;\n"
                       "MPB_MAX_OBJECTS)"},
    [S_PERSIST] = {"persist",        "MPB_PERSIST",                 T_ONOFF,                                 0,                 0,   NULL,          "on",                                                                  0,                                                                                               "on|off",                                                                                                           CFG(persist),
                  "log every write to DATA_DIR and load it on start\n"
                   "(default on; MPB_PERSIST)"                                                                                                                                   },
    [S_FSYNC] = {"fsync",        "MPB_FSYNC",                   T_FSYNC,                                     0,                   0, NULL,      "everysec",                                                                0,                                                                                           "always|everysec|no",
                  CFG(fsync),
                  "when the log reaches the disk: before each\n"
                 "reply (grouped per loop turn), once a second, or as\n"
                 "the kernel likes (default everysec; MPB_FSYNC)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                    },
    [S_MAX_SESSIONS] = {"max-sessions",        "MPB_MAX_SESSIONS",            T_COUNT,                       1,            10000000,        "1 to 10000000",
                  "100000",                                                     0,                                                                                                                                                                                                                              "N",                                                                                                                                                                                                                                                       LIM(max_sessions),
                  "sessions at once; more are refused with ELIMIT\n"
                        "(default 100000; MPB_MAX_SESSIONS)"    },
    [S_MAX_SESSIONS_PER_CONN] = {"max-sessions-per-conn",        "MPB_MAX_SESSIONS_PER_CONN",   T_COUNT,     1,
                  100000,                 "1 to 100000",                                                                                                                    "16",                                                                                                                                                     0,                                                                        "N", LIM(max_sessions_per_conn),
                  "live sessions one connection may open; more are\n"
                                 "refused with ELIMIT (default 16)"                                                                                                                                                 },
    [S_HTTP_AUTH] = {"http-auth",        "MPB_HTTP_AUTH",               T_PATH,                             0,                0,      NULL,              NULL,                                                                   0,                                                                                            "PATH",
                  CFG(http_auth),
                  "a file holding a bearer token that /metrics then asks\n"
                     "for (Authorization: Bearer TOKEN); /healthz and\n"
                     "/readyz stay open (default: /metrics open to all;\n"
                     "MPB_HTTP_AUTH)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                },
    [S_ENCRYPTION] = {"encryption",        "MPB_ENCRYPTION",              T_ENC,                           0,                0,        NULL,                "auto",                                                                   0,                                                                                        "on|off",
                  CFG(encryption),
                  "ZeroMQ CURVE keyed by the authkey (default auto: on\n"
                      "for tcp://, off for ipc:// and unix://; MPB_ENCRYPTION)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                               },
    [S_MAX_CONNECTIONS] = {"max-connections",        "MPB_MAX_CONNECTIONS",         T_COUNT,                 0,         1000000,
                  "0 to 1000000",                    "0",                                                                                                                                                                            0,                                                                                                                                                                                                "N",                                                                                                  LIM(max_connections),
                  "connections at once, more are closed at accept\n"
                           "(default 0: the descriptor limit less 64)"                               },
    [S_MAX_HANDSHAKES] = {"max-handshakes",        "MPB_MAX_HANDSHAKES",          T_COUNT,                   2,          1000000,
                  "2 to 1000000",                  "4096",                                                                                                                                                                            0,                                                                                                                                                                                               "N",                                                                                                 LIM(max_handshakes),
                  "HMAC handshakes in progress (HELLO said, AUTH not\n"
                          "yet); one address may hold at most half of them,\n"
                          "and max-handshakes-per-addr (default 4096)"                                 },
    [S_MAX_HANDSHAKES_PER_ADDR] = {"max-handshakes-per-addr",        "MPB_MAX_HANDSHAKES_PER_ADDR",
                  T_COUNT, 1,                                                                    100000,                                                                                      "1 to 100000",                                     "1024", 0, "N",
                  LIM(max_handshakes_per_addr),
                  "connections from one address that have not\n"
                                   "finished the handshake (default 1024)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  },
    [S_MAX_UNAUTH_MEMORY] = {"max-unauth-memory",        "MPB_MAX_UNAUTH_MEMORY",       T_SIZE,             1u << 20,
                  1ull << 36,       "1m to 64g",                                                                                                                "1g",                                                                                                                                                             0,                                                                                    "BYTES",     LIM(max_unauth_memory),
                  "memory all peers without a session may make the\n"
                             "broker hold (default 1g): see README"                                                                                                                                     },
    [S_HANDSHAKE] = {"handshake-ms",        "MPB_HANDSHAKE_MS",            T_MS,                       100,               600000,         "100 to 600000",             "5000",
                  0,                                                                            "MS",                                                                                                                                                                                                                                                                                                                     LIM(handshake_ms),                                                                                                                                                                                                                                                                                                                                               "deadline for the whole handshake (default 5000)"                                                                                                                                                     },
    [S_IDLE] = {"idle-ms",        "MPB_IDLE_MS",                 T_MS,                                 100,                    86400000,    "100 to 86400000", "10000",                                           0,                                                                              "MS",
                  LIM(idle_ms),
                  "a connection without a session is closed after this\n"
                "(default 10000)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  },
    [S_MAX_OUTPUT] = {"max-output",        "MPB_MAX_OUTPUT",              T_SIZE,                           0,               1ull << 36,       "0 to 64g",       "64m",                                                     0,
                  "BYTES",                                                                                                             LIM(max_output),
                  "replies a client may leave unread (sent, not yet\n"
                      "acknowledged by its TCP); past it the connection is\n"
                      "closed, its session kept (default 64m; 0: no limit)"                                                                                                                                                                                                                                                                                                                                                                                                                                          },
    [S_SLOWLOG_SLOWER] = {"slowlog-log-slower-than",        "MPB_SLOWLOG_LOG_SLOWER_THAN", T_COUNT, 0,
                  3600000000ull,                   "0 to 3600000000",                                                                                                             "10000",                                                                                                                                        0,                                                               "US",
                  LIM(slowlog_slower_us),
                  "requests served in more microseconds go to\n"
                          "the slow log (mpb slowlog; default 10000, 0: all)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                        },
    [S_SLOWLOG_MAX_LEN] = {"slowlog-max-len",        "MPB_SLOWLOG_MAX_LEN",         T_COUNT,                 0,         100000,
                  "0 to 100000",                     "128",                                                                                                                                                                             0,                                                                                                                                                                                              "N",                                                                                               LIM(slowlog_max_len),
                  "entries the slow log keeps (default 128; 0: none)"                                 },
    [S_METRICS_QUEUES] = {"metrics-queues",        "MPB_METRICS_QUEUES",          T_PATH,                   0,           0,           NULL,                        NULL,                                                                        0,
                  "PATTERN",                                                                                             LIM(metrics_queues),
                  "queues whose depth /metrics always shows: fnmatch\n"
                          "patterns, comma-separated (e.g. 'jobs.*,results');\n"
                          "up to 100 of them, besides the 20 largest queues"                                                                                                                                                                                                                                                                                                                                                                                                                                                    },
    [S_SPIN] = {"spin-us",        "MPB_SPIN_US",                 T_COUNT,                                 0,                 10000,   "0 to 10000",      "50",                                                      0,                                                                                       "US",
                  LIM(spin_us),
                  "after a loop turn that read unix:// frames, look for\n"
                "the next ones this long before sleeping: a local\n"
                "client's next request then costs no wake-up\n"
                "(default 50; 0: off; MPB_SPIN_US)"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  },
};

/* The flags that are no setting, and after which setting --help lists each. */
enum { X_CONFIG, X_CHECK, X_REPAIR, X_VERSION, X_HELP, X__N };
static const struct extra {
    const char *name;
    char opt;
    const char *arg;
    const char *help;
} extras[X__N] = {
    [X_CONFIG] = {"config",       'c', "PATH", "config file of 'key = value' lines (env MPB_CONFIG)"},
    [X_CHECK] = {"check-config", 0,   NULL,
                  "load and check everything, print the effective\n"
                 "configuration and exit: 0 if valid, 2 if not (it\n"
                 "also makes and writes in the data-dir, binds the\n"
                 "endpoints and the HTTP address, and undoes it)"                                   },
    [X_REPAIR] = {"repair",       0,   NULL,
                  "a log damaged in its middle is cut at the damage\n"
                  "(what followed is reported lost) instead of refusing\n"
                  "to start"                                                                        },
    [X_VERSION] = {"version",      'V', NULL,   "print the version"                                  },
    [X_HELP] = {"help",         'h', NULL,   "this text"                                          },
};

static char *xstrdup(const char *s) {
    return xstrndup(s, strlen(s));
}

/* ---- --help ---- */

/* "  -l, --listen ENDPOINT" padded to the text's column, then the text, its lines indented. */
static void usage_line(FILE *f, char opt, const char *name, const char *arg, const char *help) {
    enum { COL = 28 };
    char head[80];
    int n = snprintf(head, sizeof head, "  %c%c%c --%s%s%s", opt ? '-' : ' ', opt ? opt : ' ',
                     opt ? ',' : ' ', name, arg ? " " : "", arg ? arg : "");
    fprintf(f, "%s%*s", head, n < COL ? COL - n : 2, "");
    for (const char *p = help, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl) {
            fprintf(f, "%s\n", p);
            break;
        }
        fprintf(f, "%.*s\n%*s", (int)(nl - p), p, COL, "");
    }
}

static void usage_extra(FILE *f, int x) {
    usage_line(f, extras[x].opt, extras[x].name, extras[x].arg, extras[x].help);
}

static void usage(FILE *f) {
    fprintf(f, "usage: mpbrokerd [options]\n"
               "Each setting is a flag, an environment variable and a config file key, in that\n"
               "order of precedence (flags win): --max-frame, MPB_MAX_FRAME, max-frame = ...\n"
               "\n");
    usage_extra(f, X_CONFIG);
    usage_extra(f, X_CHECK);
    for (int s = 0; s < S__N; s++) {
        const setting_t *st = &config_settings[s];
        usage_line(f, st->opt, st->key, st->arg, st->help);
        if (s == S_FSYNC) usage_extra(f, X_REPAIR);
    }
    usage_extra(f, X_VERSION);
    usage_extra(f, X_HELP);
    fprintf(f, "BYTES take a k, m or g suffix. An empty environment variable counts as unset.\n");
}

/* ---- the layers ---- */

static void load_defaults(conf_t *c) {
    src_t w = {R_DEFAULT, NULL, 0};
    for (int s = 0; s < S__N; s++) {
        c->rank[s] = R_DEFAULT;
        if (config_settings[s].dflt)
            config_set_value(c, s, config_settings[s].dflt, &w);
        else
            c->src[s] = xstrdup("default");
    }
    c->cfg.limits.max_scan = 1000;
}

static void load_env(conf_t *c) {
    src_t w = {R_ENV, NULL, 0};
    for (int s = 0; s < S__N; s++) {
        const char *v = getenv(config_settings[s].env);
        if (!v || !*v) continue;
        if (s != S_LISTEN) {
            config_set_value(c, s, v, &w);
            continue;
        }
        /* MPB_LISTEN: endpoints separated by commas or blanks. */
        char *copy = xstrdup(v), *save = NULL;
        for (char *e = strtok_r(copy, ", \t\n", &save); e; e = strtok_r(NULL, ", \t\n", &save))
            config_set_value(c, s, e, &w);
        free(copy);
    }
}

/* ---- the flags ---- */

/* getopt's value for each option: a setting's is O_FLAG + its index, another flag's O_EXTRA
 * + its index (a short flag comes back as its letter and is mapped to one of those). */
enum { O_FLAG = 256, O_EXTRA = O_FLAG + S__N };

static struct option long_opts[S__N + X__N + 1];
static char short_opts[2 * (S__N + X__N) + 1];

static void make_opts(void) {
    size_t k = 0, n = 0;
    for (int s = 0; s < S__N; s++) {
        const setting_t *st = &config_settings[s];
        long_opts[k++] = (struct option){st->key, required_argument, 0, O_FLAG + s};
        if (st->opt) short_opts[n++] = st->opt, short_opts[n++] = ':';
    }
    for (int x = 0; x < X__N; x++) {
        const struct extra *e = &extras[x];
        long_opts[k++] =
            (struct option){e->name, e->arg ? required_argument : no_argument, 0, O_EXTRA + x};
        if (e->opt) {
            short_opts[n++] = e->opt;
            if (e->arg) short_opts[n++] = ':';
        }
    }
    long_opts[k] = (struct option){0, 0, 0, 0};
    short_opts[n] = 0;
}

static int short_to_long(int opt) {
    for (int s = 0; s < S__N; s++)
        if (config_settings[s].opt == opt) return O_FLAG + s;
    for (int x = 0; x < X__N; x++)
        if (extras[x].opt == opt) return O_EXTRA + x;
    return opt;
}

int config_load(int argc, char **argv, FILE *err, conf_t **out) {
    *out = NULL;
    make_opts();
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
    while ((opt = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
        if (opt > 0 && opt < O_FLAG) opt = short_to_long(opt);
        if (opt >= O_FLAG && opt < O_FLAG + S__N) {
            flags[nflags++] = (struct flag){opt - O_FLAG, optarg};
            continue;
        }
        switch (opt - O_EXTRA) {
        case X_CONFIG: file = optarg; break;
        case X_CHECK: check = true; break;
        case X_REPAIR: repair = true; break;
        case X_VERSION:
            printf("mpbrokerd %s\n", MPBROKER_VERSION);
            free(flags);
            return CONF_EXIT0;
        case X_HELP:
            usage(stdout);
            free(flags);
            return CONF_EXIT0;
        default:
            fprintf(err, "mpbrokerd: try 'mpbrokerd --help'\n");
            free(flags);
            return CONF_BAD;
        }
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
        config_load_file(c);
    }
    load_env(c);
    src_t w = {R_FLAG, NULL, 0};
    for (int i = 0; i < nflags; i++)
        config_set_value(c, flags[i].s, flags[i].v, &w);
    free(flags);

    config_check_all(c);
    if (check || c->nerr) { /* at a start, config_log() says it */
        config_warn_unknown_env(err);
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
    bool quote =
        val[0] == '"' || val[0] == ' ' || val[strlen(val) - 1] == ' ' || strchr(val, '#') != NULL;
    if (quote)
        fprintf(out, "%s = \"%s\"  # %s\n", key, val, src);
    else
        fprintf(out, "%s = %s  # %s\n", key, val, src);
}

static void print_num(FILE *out, const char *key, unsigned long long v, const char *src) {
    char num[32];
    snprintf(num, sizeof num, "%llu", v);
    print_kv(out, key, num, src);
}

/* How the authkey will be had, as comments after authkey-file. */
static void print_keysrc(const conf_t *c, FILE *out) {
    const config_t *g = &c->cfg;
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
}

void config_print(const conf_t *c, FILE *out) {
    const config_t *g = &c->cfg;
    fprintf(out, "# mpbrokerd %s: the effective configuration, as a config file.\n",
            MPBROKER_VERSION);
    fprintf(out, "# After each value, where it came from: default, FILE:LINE, env MPB_*, "
                 "flag --*.\n");
    if (c->file)
        fprintf(out, "# config file: %s (%s)\n", c->file, c->file_src);
    else
        fprintf(out, "# config file: none (--config PATH or MPB_CONFIG)\n");
    for (int s = 0; s < S__N; s++) {
        const setting_t *st = &config_settings[s];
        switch (st->type) {
        case T_LISTEN:
            for (int i = 0; i < g->nlisten; i++)
                print_kv(out, st->key, g->listen[i], c->listen_src[i]);
            break;
        case T_PATH:
            if (c->str[s])
                print_kv(out, st->key, c->str[s], c->src[s]);
            else
                fprintf(out, "# %s is not set%s  # default\n", st->key,
                        s == S_HTTP_AUTH ? ": /metrics is open to all" : "");
            break;
        case T_HTTP: print_kv(out, st->key, c->str[s] ? c->str[s] : "off", c->src[s]); break;
        case T_SIZE:
        case T_MS:
        case T_COUNT: print_num(out, st->key, config_field_get(g, st), c->src[s]); break;
        default:
            print_kv(out, st->key, config_choice_name(st->type, (int)config_field_get(g, st)),
                     c->src[s]);
            break;
        }
        if (s == S_AUTHKEY_FILE) print_keysrc(c, out);
    }
}

void config_log(const conf_t *c) {
    const char *how = c->keysrc == KEYSRC_FILE  ? "file"
                      : c->keysrc == KEYSRC_ENV ? "environment"
                                                : "data-dir";
    log_kv(MPB_LOG_INFO, "configuration", "config_file", c->file ? c->file : "none",
           "config_file_from", c->file ? c->file_src : NULL, "key_source", how, "key_from",
           c->key_src, NULL);
    if (c->key_note) log_kv(MPB_LOG_WARN, c->key_note, NULL);
    config_warn_unknown_env(NULL);
}
