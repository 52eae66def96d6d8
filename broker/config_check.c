/* config_check.c - checking mpbrokerd's settings: each value as a layer gives it (sizes,
 * durations, counts, endpoints, addresses and the words of a setting of choices), the
 * settings against each other, the authkey's source and, with --check-config, what the broker
 * would do first (make the data-dir, bind every endpoint), undone at once. Every problem is
 * reported with where its value came from; see config.c for the layers. */
#include <arpa/inet.h>
#include <errno.h>
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
#include "config_int.h"
#include "persist.h"

extern char **environ;

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

/* ---- messages ---- */

void config_complain(conf_t *c, const src_t *w, int s, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    switch (w->rank) {
    case R_FILE:
        if (s >= 0)
            fprintf(c->err, "mpbrokerd: %s:%d: %s: %s\n", w->file, w->line, config_settings[s].key,
                    msg);
        else
            fprintf(c->err, "mpbrokerd: %s:%d: %s\n", w->file, w->line, msg);
        break;
    case R_ENV: fprintf(c->err, "mpbrokerd: %s: %s\n", config_settings[s].env, msg); break;
    case R_FLAG: fprintf(c->err, "mpbrokerd: --%s: %s\n", config_settings[s].key, msg); break;
    default: fprintf(c->err, "mpbrokerd: %s\n", msg); break;
    }
    c->nerr++;
}

/* How config_print and the cross-checks name a value's source. */
static char *src_label(const src_t *w, int s) {
    switch (w->rank) {
    case R_FILE: return xasprintf("%s:%d", w->file, w->line);
    case R_ENV: return xasprintf("env %s", config_settings[s].env);
    case R_FLAG: return xasprintf("flag --%s", config_settings[s].key);
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
    if (*end == 'k' || *end == 'K')
        mul = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1024ULL * 1024 * 1024, end++;
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

/* An endpoint the broker can bind: tcp://HOST:PORT (PORT a number or *), ipc://PATH (both
 * ZeroMQ's), unix://PATH and mpb://ADDR:PORT (stream.c; ADDR numeric, as --http's). */
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
    if (!strncmp(s, "mpb://", 6)) {
        addr_t a;
        char inner[400];
        if (addr_parse(s + 6, &a, inner, sizeof inner) == 0) return true;
        snprintf(why, n, "'mpb://%s", inner + 1); /* inner starts with 'ADDR:PORT' */
        return false;
    }
    if (!strncmp(s, "ipc://", 6) || !strncmp(s, "unix://", 7)) {
        size_t len = strlen(strstr(s, "://") + 3);
        if (len == 0 || len > 107) {
            snprintf(why, n, "'%s': a socket path must have 1 to 107 characters", s);
            return false;
        }
        return true;
    }
    snprintf(why, n, "'%s' is not tcp://ADDR:PORT, mpb://ADDR:PORT, ipc:///PATH or unix:///PATH",
             s);
    return false;
}

/* "ADDR:PORT" as http.c takes it (common/addr.c, the one parser of it). */
static bool check_http(const char *s, char *why, size_t n) {
    addr_t a;
    return addr_parse(s, &a, why, n) == 0;
}

/* The words of each setting of choices, by the value they give, and how a message lists
 * them. */
static const struct choice {
    stype_t type;
    const char *names[4];
    const char *expect;
} choices[] = {
    {T_LEVEL,  {"debug", "info", "warn", "error"}, "debug, info, warn or error"},
    {T_FORMAT, {"logfmt", "json"},                 "logfmt or json"            },
    {T_ONOFF,  {"off", "on"},                      "on or off"                 },
    {T_FSYNC,  {"no", "everysec", "always"},       "always, everysec or no"    },
    {T_ENC,    {"auto", "on", "off"},              "on, off or auto"           },
};

static const struct choice *choice_of(stype_t type) {
    for (size_t i = 0; i < sizeof choices / sizeof choices[0]; i++)
        if (choices[i].type == type) return &choices[i];
    return NULL;
}

const char *config_choice_name(stype_t type, int v) {
    const struct choice *ch = choice_of(type);
    return ch && v >= 0 && v < 4 && ch->names[v] ? ch->names[v] : "?";
}

/* The value, or -1. Log levels as the log reads them (any case, and "warning"). */
static int choice_parse(const struct choice *ch, const char *val) {
    if (ch->type == T_LEVEL) return log_level_parse(val);
    for (int i = 0; i < 4 && ch->names[i]; i++)
        if (!strcmp(ch->names[i], val)) return i;
    return -1;
}

void config_field_set(config_t *cfg, const setting_t *st, unsigned long long v) {
    char *p = (char *)cfg + st->off;
    if (st->width == sizeof(bool)) {
        bool b = v != 0;
        memcpy(p, &b, sizeof b);
    } else if (st->width == sizeof(int)) {
        int i = (int)v;
        memcpy(p, &i, sizeof i);
    } else {
        uint64_t u = v;
        memcpy(p, &u, sizeof u);
    }
}

unsigned long long config_field_get(const config_t *cfg, const setting_t *st) {
    const char *p = (const char *)cfg + st->off;
    if (st->width == sizeof(bool)) {
        bool b;
        memcpy(&b, p, sizeof b);
        return b;
    }
    if (st->width == sizeof(int)) {
        int i;
        memcpy(&i, p, sizeof i);
        return (unsigned long long)i;
    }
    uint64_t u;
    memcpy(&u, p, sizeof u);
    return u;
}

void config_set_value(conf_t *c, int s, const char *val, const src_t *w) {
    const setting_t *st = &config_settings[s];
    char why[512] = "";
    unsigned long long v = 0;
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
            snprintf(why, sizeof why, "'%s' is not a size from %s (bytes; k, m, g suffixes)", val,
                     st->range);
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
    default: { /* a setting of choices */
        const struct choice *ch = choice_of(st->type);
        int i = ch ? choice_parse(ch, val) : -1;
        if (i < 0) {
            snprintf(why, sizeof why, "'%s' is not %s", val, ch ? ch->expect : "valid");
            goto bad;
        }
        v = (unsigned long long)i;
        break;
    }
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
            config_complain(c, w, s, "more than %d endpoints to listen on", MAX_LISTEN);
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
    if (st->type == T_PATH || st->type == T_HTTP) {
        free(c->str[s]);
        c->str[s] = (st->type == T_HTTP && !strcmp(val, "off")) ? NULL : xstrdup(val);
        memcpy((char *)&c->cfg + st->off, &c->str[s], sizeof c->str[s]);
        return;
    }
    config_field_set(&c->cfg, st, v);
    return;
bad:
    config_complain(c, w, s, "%s", why);
}

/* ---- checks across settings, and the authkey ---- */

int config_read_key_file(const char *path, uint8_t **key, size_t *len, char *err, size_t errlen,
                         char *warn, size_t warnlen) {
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
            config_complain(c, &none, -1, "data-dir %s (%s) is not a directory", dir, src);
            return;
        }
    } else if (errno != ENOENT) {
        config_complain(c, &none, -1, "data-dir %s (%s): %s", dir, src, strerror(errno));
        return;
    } else if (mkdir(dir, 0700) != 0) {
        int e = errno;
        char parent[4200];
        snprintf(parent, sizeof parent, "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent)
            *slash = 0;
        else
            snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
        bool noparent = e == ENOENT && stat(parent, &st) != 0;
        config_complain(c, &none, -1, "data-dir %s (%s) cannot be created: %s%s%s%s", dir, src,
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
        config_complain(c, &none, -1, "data-dir %s (%s) is not writable: %s", dir, src,
                        strerror(errno));
    } else {
        bool ok = write(fd, "x", 1) == 1;
        int e = errno;
        close(fd);
        unlink(probe);
        if (!ok)
            config_complain(c, &none, -1, "data-dir %s (%s) is not writable: %s", dir, src,
                            strerror(e));
    }
    if (made) rmdir(dir);
}

/* An ipc:// path: a broker must not be listening there already (libzmq would take the path
 * from it), and the directory must take a socket. */
static void check_ipc(conf_t *c, int i) {
    src_t none = {R_DEFAULT, NULL, 0};
    const char *ep = c->cfg.listen[i], *path = strstr(ep, "://") + 3;
    struct sockaddr_un sa = {0};
    sa.sun_family = AF_UNIX;
    if (path[0] == '@' || strlen(path) >= sizeof sa.sun_path) return; /* abstract: zmq's */
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            config_complain(c, &none, -1, "listen %s (%s): %s exists and is not a socket", ep,
                            c->listen_src[i], path);
        else if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            config_complain(c, &none, -1,
                            "listen %s (%s): cannot bind: something listens there "
                            "already (another broker?)",
                            ep, c->listen_src[i]);
    } else if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        config_complain(c, &none, -1, "listen %s (%s): cannot bind: %s", ep, c->listen_src[i],
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
        if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "unix://", 7)) {
            check_ipc(c, i);
            continue;
        }
        if (!strncmp(ep, "mpb://", 6)) {
            addr_t a;
            char why[300];
            int fd = -1, one = 1;
            if (addr_parse(ep + 6, &a, why, sizeof why) == 0 &&
                (fd = socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0) {
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                if (bind(fd, (struct sockaddr *)&a.ss, a.len) != 0)
                    config_complain(c, &none, -1, "listen %s (%s): cannot bind: %s", ep,
                                    c->listen_src[i], strerror(errno));
            }
            if (fd >= 0) close(fd);
            continue;
        }
        if (!ctx && !(ctx = zmq_ctx_new())) return;
        void *sock = zmq_socket(ctx, ZMQ_ROUTER);
        if (!sock) break;
        int zero = 0;
        zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_bind(sock, ep) != 0)
            config_complain(c, &none, -1, "listen %s (%s): cannot bind: %s", ep, c->listen_src[i],
                            zmq_strerror(zmq_errno()));
        zmq_close(sock);
    }
    if (ctx) zmq_ctx_term(ctx);
}

void config_check_all(conf_t *c) {
    const limits_t *l = &c->cfg.limits;
    src_t none = {R_DEFAULT, NULL, 0};
    if (l->max_value + l->max_key + 64 > l->max_frame)
        config_complain(c, &none, -1,
                        "max-value (%zu, %s) plus max-key (%zu, %s) plus 64 must fit in max-frame "
                        "(%zu, %s)",
                        l->max_value, c->src[S_MAX_VALUE], l->max_key, c->src[S_MAX_KEY],
                        l->max_frame, c->src[S_MAX_FRAME]);
    if (l->session_ttl_ms < 2 * l->heartbeat_ms)
        config_complain(c, &none, -1,
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
                                    "(%s) wins over it",
                                    c->src[S_AUTHKEY_FILE]);
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
            config_complain(c, &none, -1, "http %s (%s): %s", c->str[S_HTTP], c->src[S_HTTP], why);
    }
    if (c->keysrc == KEYSRC_GENERATE) { /* a key made on an earlier start must be readable */
        char path[4200], why[512];
        uint8_t *key = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/authkey", c->str[S_DATA_DIR]);
        char warn[1024];
        if (access(path, F_OK) == 0 &&
            config_read_key_file(path, &key, &len, why, sizeof why, warn, sizeof warn))
            config_complain(c, &none, -1, "the authkey made in data-dir (%s): %s",
                            c->src[S_DATA_DIR], why);
        else if (key && warn[0])
            fprintf(c->err, "mpbrokerd: warning: %s\n", warn);
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
            config_complain(c, &none, -1, "http-auth (%s): %s", c->src[S_HTTP_AUTH], why);
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
            config_complain(c, &none, -1, "authkey-file (%s): %s", c->src[S_AUTHKEY_FILE], why);
        else if (warn[0])
            fprintf(c->err, "mpbrokerd: warning: %s\n", warn);
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
        if (strlen(config_settings[s].env) == n && !strncmp(config_settings[s].env, name, n))
            return true;
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
    for (size_t i = 0; i <= xn; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= yn; j++)
        d[0][j] = (int)j;
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
        int d = name_distance(name, n, config_settings[s].env);
        if (d < bd) bd = d, best = config_settings[s].env;
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
    else
        fprintf(f, "mpbrokerd: warning: %s is not a setting of mpbrokerd (ignored)\n", name);
}

static void warn_env_log(void *arg, const char *name, const char *hint) {
    (void)arg;
    log_kv(MPB_LOG_WARN, "environment variable is not a setting: ignored", "name", name,
           "did_you_mean", hint, NULL);
}
void config_warn_unknown_env(FILE *to) {
    if (to)
        unknown_env(warn_env_to, to);
    else
        unknown_env(warn_env_log, NULL);
}
