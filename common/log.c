/* log.c - one line per event on stderr: time, level, message, then the event's fields as
 * their own keys, in logfmt or JSON, so that log tools can filter on them:
 *
 *   ts=2026-12-04T19:38:28.123Z level=warn msg="authentication failed" peer=006b8b4568
 *   {"ts":"2026-12-04T19:38:28.123Z","level":"warn","msg":"authentication
 * failed","peer":"006b8b4568"}
 *
 * A line is built in one buffer and written with one call, so lines never interleave. Field
 * values are strings (numbers too, as LOG_INT writes them), in JSON as well. The authkey never
 * reaches a log line: nothing logs it, and samples of client data are capped. mpbrokerd and
 * mpb-worker both log through it (common/, the static library mpbcommon), so it needs nothing
 * but libc. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "clock.h"
#include "log.h"

int log_min_level = MPB_LOG_INFO;
static bool log_json;
static const char *const names[] = {"debug", "info", "warn", "error"};

#define MSG_MAX    1024 /* bytes of a message; longer ones, and longer values, end in "..." */
#define VALUE_MAX  256  /* bytes of one field value */
#define FIELDS_MAX 16   /* fields after these are dropped */
/* Room for the worst case, every byte escaped as \u00XX, so that a line is never cut. */
#define LINE_MAX_BYTES (96 + 6 * MSG_MAX + FIELDS_MAX * (70 + 6 * VALUE_MAX + 8) + 8)

void log_setup(int level, bool json) {
    log_min_level = level;
    log_json = json;
}

int log_level_parse(const char *s) {
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(s, names[i])) return i;
    if (!strcasecmp(s, "warning")) return MPB_LOG_WARN;
    return -1;
}

int log_format_parse(const char *s) {
    return !strcmp(s, "json") ? 1 : !strcmp(s, "logfmt") ? 0 : -1;
}

const char *log_fmt_i64(char *buf, long long v) {
    snprintf(buf, 24, "%lld", v);
    return buf;
}

const char *log_fmt_u64(char *buf, unsigned long long v) {
    snprintf(buf, 24, "%llu", v);
    return buf;
}

typedef struct line {
    char p[LINE_MAX_BYTES];
    size_t n;
} line_t;

static void put(line_t *l, const char *s, size_t n) {
    if (n > sizeof l->p - l->n) n = sizeof l->p - l->n; /* cannot happen: see LINE_MAX_BYTES */
    memcpy(l->p + l->n, s, n);
    l->n += n;
}

static void puts_(line_t *l, const char *s) {
    put(l, s, strlen(s));
}

/* The length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t left) {
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (s[0] >= 0xf5 || n == 0 || n > left) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* s as the inside of a double-quoted string, at most max bytes of it. JSON and logfmt agree
 * on \" \\ \n; other control bytes are \u00XX, bytes that are not UTF-8 \ufffd in JSON and
 * \xNN in logfmt. */
static void put_escaped(line_t *l, const char *s, size_t max) {
    char tmp[8];
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strnlen(s, max);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\', tmp[1] = (char)c;
            put(l, tmp, 2);
        } else if (c == '\n') {
            puts_(l, "\\n");
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            puts_(l, tmp);
        } else if (c < 0x80) {
            put(l, (const char *)&u[i], 1);
        } else {
            size_t k = utf8_len(&u[i], len - i);
            if (k) {
                put(l, (const char *)&u[i], k);
                i += k - 1;
            } else if (log_json) {
                puts_(l, "\\ufffd");
            } else {
                snprintf(tmp, sizeof tmp, "\\x%02x", c);
                puts_(l, tmp);
            }
        }
    }
    if (len == max && s[len]) puts_(l, "...");
}

/* A logfmt value goes bare unless it is empty or holds a blank, '=', a quote, a backslash or
 * a byte that is not printable ASCII. */
static bool needs_quotes(const char *s) {
    if (!*s) return true;
    for (const unsigned char *u = (const unsigned char *)s; *u; u++)
        if (*u <= ' ' || *u == '=' || *u == '"' || *u == '\\' || *u >= 0x7f) return true;
    return false;
}

/* Keys are [A-Za-z0-9_.-]; anything else becomes '_'. The line's own keys cannot be taken. */
static void put_key(line_t *l, const char *k) {
    char key[64];
    size_t n = 0;
    if (!strcmp(k, "ts") || !strcmp(k, "level") || !strcmp(k, "msg")) key[n++] = '_';
    for (; *k && n < sizeof key - 1; k++) {
        char c = *k;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        key[n++] = ok ? c : '_';
    }
    if (!n) key[n++] = '_';
    put(l, key, n);
}

static void emit(int level, const char *msg, va_list ap) {
    line_t l;
    char ts[40];
    l.n = 0;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t k = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + k, sizeof ts - k, ".%03dZ", (int)(tv.tv_usec / 1000));
    if (level < MPB_LOG_DEBUG || level > MPB_LOG_ERROR) level = MPB_LOG_ERROR;
    if (log_json) {
        puts_(&l, "{\"ts\":\"");
        puts_(&l, ts);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, names[level]);
        puts_(&l, "\",\"msg\":\"");
    } else {
        puts_(&l, "ts=");
        puts_(&l, ts);
        puts_(&l, " level=");
        puts_(&l, names[level]);
        puts_(&l, " msg=\"");
    }
    put_escaped(&l, msg, MSG_MAX);
    puts_(&l, "\"");
    for (int i = 0; i < FIELDS_MAX; i++) {
        const char *key = va_arg(ap, const char *);
        if (!key) break;
        const char *val = va_arg(ap, const char *);
        if (!val) continue; /* an optional field that is not there */
        if (log_json) {
            puts_(&l, ",\"");
            put_key(&l, key);
            puts_(&l, "\":\"");
            put_escaped(&l, val, VALUE_MAX);
            puts_(&l, "\"");
        } else {
            puts_(&l, " ");
            put_key(&l, key);
            puts_(&l, "=");
            bool q = needs_quotes(val);
            if (q) puts_(&l, "\"");
            put_escaped(&l, val, VALUE_MAX);
            if (q) puts_(&l, "\"");
        }
    }
    puts_(&l, log_json ? "}\n" : "\n");
    fwrite(l.p, 1, l.n, stderr);
    fflush(stderr);
}

void log_kv(int level, const char *msg, ...) {
    if (level < log_min_level) return;
    va_list ap;
    va_start(ap, msg);
    emit(level, msg, ap);
    va_end(ap);
}

/* For log_msg: an empty field list. */
static void emit_plain(int level, const char *msg, ...) {
    va_list ap;
    va_start(ap, msg);
    emit(level, msg, ap);
    va_end(ap);
}

void log_msg(int level, const char *fmt, ...) {
    if (level < log_min_level) return;
    char msg[MSG_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit_plain(level, msg, (const char *)NULL);
}

/* ---- rate limits ----
 *
 * A peer that sends garbage as fast as it can must not be able to fill the disk with our
 * lines about it (9.2 MB in 1.7 s from one connection, before this): per key, one line a
 * second with a count of those held back; and a cap on all keys together, against a peer
 * with many addresses. The metrics count every event; the log only samples them. */

static struct rate {
    char key[72]; /* a kind and an address (IPv6: up to 45) */
    int64_t last_ms;
    unsigned long long held;
} rates[LOG_RATE_KEYS];
static int64_t window_ms;
static int window_lines;

bool log_rate_ok(const char *key, unsigned long long *not_logged) {
    int64_t now = now_ms();
    struct rate *e = NULL, *oldest = &rates[0];
    for (int i = 0; i < LOG_RATE_KEYS; i++) {
        if (rates[i].last_ms && !strncmp(rates[i].key, key, sizeof rates[i].key - 1)) {
            e = &rates[i];
            break;
        }
        if (rates[i].last_ms < oldest->last_ms) oldest = &rates[i];
    }
    if (now - window_ms >= LOG_RATE_MS) {
        window_ms = now;
        window_lines = 0;
    }
    if (e && now - e->last_ms < LOG_RATE_MS) {
        e->held++;
        return false;
    }
    if (window_lines >= LOG_RATE_MAX) {
        if (e) e->held++;
        return false;
    }
    if (!e) {
        e = oldest;
        snprintf(e->key, sizeof e->key, "%s", key);
        e->held = 0;
    }
    window_lines++;
    e->last_ms = now;
    *not_logged = e->held;
    e->held = 0;
    return true;
}

const char *log_peer_addr(int fd, char *out, size_t n) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    snprintf(out, n, "unknown");
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) return out;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)n);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)n);
    else if (ss.ss_family == AF_UNIX)
        snprintf(out, n, "local");
    return out;
}
