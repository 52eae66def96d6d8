/* log.h - one line per event on stderr, in logfmt or JSON (log.c). Shared by mpbrokerd and
 * mpb-worker through the static library mpbcommon, so both write the same lines; it needs
 * only libc, and libmpb never links it. */
#ifndef MPB_LOG_H
#define MPB_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum { MPB_LOG_DEBUG, MPB_LOG_INFO, MPB_LOG_WARN, MPB_LOG_ERROR };
void log_setup(int level, bool json);
int log_level_parse(const char *s);  /* -1 if unknown */
int log_format_parse(const char *s); /* 0 logfmt, 1 json, -1 if unknown */
/* One line: time, level, msg, then the event's fields, given as alternating const char * keys
 * and values ended by NULL (at most 16 pairs; a pair whose value is NULL is left out). msg is
 * a fixed text that names the event; what varies goes in fields, so tools can select on them:
 *   log_kv(MPB_LOG_WARN, "authentication failed", "peer", who, NULL);
 *   log_kv(MPB_LOG_INFO, "session opened", "session", LOG_UINT(s->id), "host", s->host, NULL);
 * Keys are [A-Za-z0-9_.-]; ts, level and msg are the line's own (a field named so gets a '_'
 * in front). */
__attribute__((sentinel)) void log_kv(int level, const char *msg, ...);
/* A number as a field value, in a buffer that lives until the end of the enclosing block. */
#define LOG_INT(v)  log_fmt_i64((char[24]){0}, (long long)(v))
#define LOG_UINT(v) log_fmt_u64((char[24]){0}, (unsigned long long)(v))
const char *log_fmt_i64(char *buf, long long v);
const char *log_fmt_u64(char *buf, unsigned long long v);
/* One line with a printf-formatted message and no fields (prefer log_kv for events). */
__attribute__((format(printf, 2, 3))) void log_msg(int level, const char *fmt, ...);
#define log_debug(...) log_msg(MPB_LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(MPB_LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(MPB_LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(MPB_LOG_ERROR, __VA_ARGS__)
extern int log_min_level;

/* Rate limits for lines a peer can cause at will (bad frames, failed handshakes, bad MACs):
 * true if a line for key (the peer's address) may be written now, at most one per key per
 * LOG_RATE_MS and LOG_RATE_MAX in all per LOG_RATE_MS, with in *not_logged the lines of key
 * held back since its last one (say it in the line: "not_logged", n ? LOG_UINT(n) : NULL).
 * false: count this one and write nothing. The last LOG_RATE_KEYS keys are remembered. */
#define LOG_RATE_MS   1000
#define LOG_RATE_MAX  20
#define LOG_RATE_KEYS 64
bool log_rate_ok(const char *key, unsigned long long *not_logged);
/* The address of the TCP peer on descriptor fd as text ("10.0.0.7", "::1"); "local" for a
 * Unix socket, "unknown" when it cannot be told (fd < 0, or the peer is gone). */
const char *log_peer_addr(int fd, char *out, size_t n);

#endif
