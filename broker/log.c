/* log.c - one line per event on stderr: time, level, message; logfmt or JSON. The authkey
 * never reaches a log line: nothing logs it, and samples of client data are capped. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "broker.h"

int log_min_level = LOG_INFO;
static bool log_json;
static const char *const names[] = {"debug", "info", "warn", "error"};

void log_setup(int level, bool json) {
    log_min_level = level;
    log_json = json;
}

int log_level_parse(const char *s) {
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(s, names[i])) return i;
    if (!strcasecmp(s, "warning")) return LOG_WARN;
    return -1;
}

static void put_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
}

void log_msg(int level, const char *fmt, ...) {
    if (level < log_min_level) return;
    char msg[1024], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t k = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + k, sizeof ts - k, ".%03dZ", (int)(tv.tv_usec / 1000));
    flockfile(stderr);
    if (log_json) {
        fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, names[level]);
        put_escaped(stderr, msg);
        fputs("\"}\n", stderr);
    } else {
        fprintf(stderr, "ts=%s level=%s msg=\"", ts, names[level]);
        put_escaped(stderr, msg);
        fputs("\"\n", stderr);
    }
    funlockfile(stderr);
}
