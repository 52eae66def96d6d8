/* config.h - mpbrokerd's settings from four layers, each overriding the one before:
 * built-in defaults < a config file (--config PATH or MPB_CONFIG) < environment variables
 * MPB_* < command-line flags. Every setting has one name, used as the long flag and as the
 * file's key, and an environment variable: --max-frame, "max-frame = 8m", MPB_MAX_FRAME. */
#ifndef BROKER_CONFIG_H
#define BROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "broker.h"

/* Where the authkey comes from. The key itself is never printed nor logged; only this. */
typedef enum keysrc {
    KEYSRC_FILE,     /* authkey-file (from a flag, MPB_AUTHKEY_FILE or the config file) */
    KEYSRC_ENV,      /* MPB_AUTHKEY holds the key itself */
    KEYSRC_GENERATE, /* DATA_DIR/authkey: read if it is there, else made (mode 0600) */
} keysrc_t;

typedef struct conf conf_t;

/* What config_load() decided. */
enum {
    CONF_RUN = 0,   /* start the broker with config_get() */
    CONF_CHECK = 1, /* --check-config and everything is valid: config_print(), exit 0 */
    CONF_EXIT0 = 2, /* --help or --version was printed: exit 0 */
    CONF_BAD = 3,   /* every bad value has been reported on err: exit 2 */
};

/* Reads the flags in argv, the config file they or MPB_CONFIG name, and the environment, in
 * that order of precedence, and validates all of it. Every problem is reported on err as one
 * line naming its source ("FILE:LINE: key: ...", "MPB_KEY: ...", "--key: ..."), all of them,
 * not only the first. *out is set (free it with config_free()) unless CONF_EXIT0. With
 * --check-config the authkey file is read too, the data-dir made (if it is not there) and
 * written in, and every listen endpoint and the HTTP address bound, each undone at once, to
 * report what would stop a broker from starting; MPB_* variables that are no setting, and an
 * MPB_AUTHKEY that a key file overrides, get a warning on err (not an error). */
int config_load(int argc, char **argv, FILE *err, conf_t **out);
void config_free(conf_t **c);

/* The settings as the server takes them; the strings live as long as c. */
const config_t *config_get(const conf_t *c);
keysrc_t config_keysrc(const conf_t *c);
/* The config file in use (NULL: none). */
const char *config_file(const conf_t *c);

/* The authkey from a file or MPB_AUTHKEY (not KEYSRC_GENERATE): a new buffer the caller frees
 * after wiping it. MPB_AUTHKEY is wiped from the process environment once read, so it cannot
 * be read back from /proc/PID/environ. Returns 0, or -1 with the reason in err: a key file
 * that group or others can write is refused. warn gets what is wrong but allowed ("" if
 * nothing): a key file group or others can read, a key shorter than 16 bytes. */
int config_read_key(const conf_t *c, uint8_t **key, size_t *len, char *err, size_t errlen,
                    char *warn, size_t warnlen);
/* The same for a key file at path (trailing newlines are not part of the key): see
 * mpb__key_file_read(), the one reader that mpbrokerd and libmpb share. */
int config_read_key_file(const char *path, uint8_t **key, size_t *len, char *err, size_t errlen,
                         char *warn, size_t warnlen);

/* Prints the effective configuration as a config file that this parser accepts, every line
 * with a comment saying where its value came from; the authkey only as where it comes from. */
void config_print(const conf_t *c, FILE *out);

/* One log line (info) saying which file and where the authkey come from; a warning for
 * MPB_AUTHKEY when a key file overrides it, and for every MPB_* variable that is no setting. */
void config_log(const conf_t *c);

#endif
