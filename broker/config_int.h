/* config_int.h - what the three parts of the settings code share (config.c: the table, the
 * layers, the flags and the printer; config_check.c: checking values one by one and together;
 * config_file.c: the config file reader). Nothing outside them includes it: see config.h. */
#ifndef MPB_CONFIG_INT_H
#define MPB_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"

#define MAX_LISTEN 8
#define MAX_LINE   4096

typedef enum stype {
    T_LISTEN,
    T_PATH,
    T_HTTP,
    T_SIZE,
    T_MS,
    T_LEVEL,
    T_FORMAT,
    T_COUNT,
    T_ONOFF,
    T_FSYNC,
    T_ENC
} stype_t;

/* The settings in the order --help and --check-config list them. */
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
    S_REPLY_CACHE,
    S_REPLY_CACHE_BYTES,
    S_MAX_MEMORY,
    S_MAX_OBJECTS,
    S_PERSIST,
    S_FSYNC,
    S_MAX_SESSIONS,
    S_MAX_SESSIONS_PER_CONN,
    S_HTTP_AUTH,
    S_ENCRYPTION,
    S_MAX_CONNECTIONS,
    S_MAX_HANDSHAKES,
    S_MAX_HANDSHAKES_PER_ADDR,
    S_MAX_UNAUTH_MEMORY,
    S_HANDSHAKE,
    S_IDLE,
    S_MAX_OUTPUT,
    S_SLOWLOG_SLOWER,
    S_SLOWLOG_MAX_LEN,
    S_METRICS_QUEUES,
    S_SPIN,
    S__N
};

/* One setting, named once: the long flag, the file's key, the variable, the check, the
 * default, the --help text and where the value lands in config_t. */
typedef struct setting {
    const char *key; /* long flag and config file key */
    const char *env;
    stype_t type;
    unsigned long long lo, hi;
    const char *range; /* lo..hi as the messages say it */
    const char *dflt;  /* the default, as text (NULL: not set) */
    char opt;          /* the short flag, or 0 */
    const char *arg;   /* the flag's argument as --help names it */
    size_t off;        /* the field in config_t */
    size_t width;      /* its size (strings: the pointer's) */
    const char *help;  /* --help's text for it; '\n' starts an indented line */
} setting_t;

extern const setting_t config_settings[S__N];

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
    char *key_src;  /* for KEYSRC_FILE/ENV: which setting said so */
    char *key_note; /* MPB_AUTHKEY set but not used: why, for check and the log */
    bool check;
    int nerr;
    FILE *err;
};

/* config_check.c */
/* Reports one bad value (s: the setting, or -1) on c->err with its source, and counts it. */
__attribute__((format(printf, 4, 5))) void config_complain(conf_t *c, const src_t *w, int s,
                                                           const char *fmt, ...);
/* Checks val for setting s and, when w ranks at least as high as what is there, makes it the
 * setting's value. Bad values are reported and change nothing. */
void config_set_value(conf_t *c, int s, const char *val, const src_t *w);
/* The words of a setting of choices (log-level, persist, fsync, ...) for the value v. */
const char *config_choice_name(stype_t type, int v);
/* A number or choice setting's field in cfg, as the table places it. */
void config_field_set(config_t *cfg, const setting_t *st, unsigned long long v);
unsigned long long config_field_get(const config_t *cfg, const setting_t *st);
/* The checks across settings, the authkey's source and, with --check-config, the tries. */
void config_check_all(conf_t *c);
/* Warns about every MPB_* variable that nothing reads: on to, or in the log if to is NULL. */
void config_warn_unknown_env(FILE *to);

/* config_file.c */
/* Reads c->file into c, every bad line reported. */
void config_load_file(conf_t *c);

#endif
