/* config_file.c - mpbrokerd's config file: lines of "key = value", '#' starting a comment
 * (at the start of a line, or after a blank in a value), a value in double quotes keeping a
 * " #" or blanks at its ends. Unknown keys (with a hint for one that is almost right), a key
 * given twice (but listen, which is a list), lines without '=' and empty values are errors,
 * each reported as FILE:LINE. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"

static int find_key(const char *k) {
    for (int s = 0; s < S__N; s++)
        if (!strcmp(config_settings[s].key, k)) return s;
    return -1;
}

/* A hint for a key that is almost right: max_frame, MAX-FRAME, MPB_MAX_FRAME. */
static const char *near_key(const char *k) {
    char norm[64];
    size_t n = strlen(k);
    if (n >= sizeof norm) return NULL;
    for (size_t i = 0; i <= n; i++)
        norm[i] = k[i] == '_' ? '-' : k[i];
    for (int s = 0; s < S__N; s++)
        if (!strcasecmp(config_settings[s].key, norm) || !strcasecmp(config_settings[s].env, k))
            return config_settings[s].key;
    return NULL;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

/* One "key = value" line (comments and blank lines are skipped by the caller). */
static void load_line(conf_t *c, char *line, const src_t *w, int *seen) {
    char *eq = strchr(line, '=');
    if (!eq) {
        /* Not echoed: a line without '=' may well be a pasted key. */
        config_complain(c, w, -1, "expected 'key = value' (a line without '=')");
        return;
    }
    *eq = 0;
    char *key = trim(line), *val = eq + 1;
    while (*val == ' ' || *val == '\t')
        val++;
    if (!*key) {
        config_complain(c, w, -1, "no key before '='");
        return;
    }
    int s = find_key(key);
    if (s < 0) {
        const char *near = near_key(key);
        if (!strcmp(key, "authkey"))
            config_complain(c, w, -1,
                            "the authkey itself does not belong in a config file: put it in a "
                            "file of its own (mode 0600) and name that with authkey-file");
        else if (!strcmp(key, "config"))
            config_complain(c, w, -1, "a config file cannot name another one");
        else if (near)
            config_complain(c, w, -1, "unknown key '%s' (did you mean '%s'?)", key, near);
        else
            config_complain(c, w, -1, "unknown key '%.60s'", key);
        return;
    }
    if (*val == '"') { /* quoted: up to the next quote, then only a comment may follow */
        char *q = strchr(val + 1, '"');
        if (!q) {
            config_complain(c, w, s, "no closing '\"'");
            return;
        }
        *q = 0;
        char *rest = q + 1;
        while (*rest == ' ' || *rest == '\t')
            rest++;
        if (*rest && *rest != '#') {
            config_complain(c, w, s, "unexpected '%.40s' after the quoted value", rest);
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
        config_complain(c, w, s, "empty value");
        return;
    }
    if (s != S_LISTEN && seen[s]) {
        config_complain(c, w, s, "given twice (first on line %d)", seen[s]);
        return;
    }
    seen[s] = w->line;
    config_set_value(c, s, val, w);
}

void config_load_file(conf_t *c) {
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
            config_complain(c, &w, -1, "a NUL byte: this is not a text file");
            break;
        }
        if (n > MAX_LINE) {
            config_complain(c, &w, -1, "line longer than %d characters", MAX_LINE);
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