/* report.c - what mpb prints: values and objects as JSON, and the one way each failure is
 * reported (a line on stderr, or with --json the error object on stdout) with its exit status. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "json.h"

/* EFULL pairs with EEMPTY: both are "--timeout 0 and the queue could not take or give an item
 * at once", so put and get answer alike (3); with a bound > 0 both time out instead (75). */
int status_of(int rc) {
    if (rc == MPB_ETIMEDOUT) return EXIT_TIMEOUT;
    return rc == MPB_ENOKEY || rc == MPB_ENOOBJ || rc == MPB_EINDEX || rc == MPB_EEMPTY ||
                   rc == MPB_EFULL
               ? EXIT_NOTFOUND
               : EXIT_FAIL;
}

/* A jansson string of s; bytes that are not UTF-8 (a key or value echoed in a message) become
 * '?', since jansson refuses such strings and the error must still print. */
static json_t *json_text(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s);
    char *t = malloc(n + 1);
    if (!t) return NULL;
    for (size_t i = 0; i <= n; i++)
        t[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    j = json_string(t);
    free(t);
    return j;
}

/* The one shape of every --json error, on stdout: {"error":{"code":..,"message":..,"op":..}},
 * "op" being the command (absent before one is known). */
void print_json_error(const char *code, const char *msg, const char *op) {
    json_t *e = json_object(), *o = json_object();
    json_object_set_new(e, "code", json_string(code));
    json_object_set_new(e, "message", json_text(msg));
    if (op) json_object_set_new(e, "op", json_text(op));
    json_object_set_new(o, "error", e);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) puts(s);
    free(s);
    json_decref(o);
}

/* "mpb: MESSAGE" (then after) on stderr, or the JSON error with code. */
__attribute__((format(printf, 3, 0))) static void say(const char *code, const char *after,
                                                      const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (opt.json)
        print_json_error(code, msg, cur_cmd);
    else
        fprintf(stderr, "mpb: %s\n%s", msg, after);
}

/* A failure found by the CLI itself: "mpb: MESSAGE" on stderr, or the JSON error. */
void report(const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(code, "", fmt, ap);
    va_end(ap);
}

/* Reports a failed call and returns the exit status for it. */
int fail(int rc, const char *what) {
    const char *msg = cli ? mpb_errmsg(cli) : mpb_strerror(rc);
    if (opt.json)
        print_json_error(mpb_err_name(rc), msg, what);
    else
        fprintf(stderr, "mpb: %s: %s\n", what, msg);
    return status_of(rc);
}

/* The end of a command that prints nothing when it works: rc's failure reported, else
 * {"ok":true} with --json. Returns the exit status. */
int report_ok(int rc, const char *what) {
    if (rc) return fail(rc, what);
    if (opt.json) puts("{\"ok\":true}");
    return 0;
}

/* Bad usage: exit 2; with --json the error code is EUSAGE (the CLI's own, not an MPB_E*). */
int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say("EUSAGE", "(mpb --help for usage)\n", fmt, ap);
    va_end(ap);
    return EXIT_USAGE;
}

void print_json(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (s) puts(s);
    free(s);
}

/* Prints one msgpack value as JSON. */
int print_value(const void *v, size_t n) {
    char *s, err[200];
    if (cli_msgpack_to_json(v, n, 1, &s, err, sizeof err)) {
        report("EPROTO", "cannot show value: %s", err);
        return EXIT_FAIL;
    }
    puts(s);
    free(s);
    return 0;
}

json_t *to_jansson(const void *v, size_t n) {
    char err[200];
    json_t *j = cli_msgpack_to_jansson(v, n, err, sizeof err);
    return j ? j : json_string("<unprintable>");
}

json_t *take_jansson(void *res, size_t n) {
    json_t *j = to_jansson(res, n);
    mpb_free(res);
    return j;
}

int print_json_free(json_t *j) {
    print_json(j);
    json_decref(j);
    return 0;
}

/* An integer field of a JSON object from the broker (info, pool.stats), for the text rows. */
long long jint(const json_t *o, const char *key) {
    return (long long)json_integer_value(json_object_get(o, key));
}
