/* spec.c - readers of proto/PROTOCOL.md's examples for the unit tests (spec.h). */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "spec.h"

static FILE *spec_open(void) {
    FILE *f = fopen(MPB_PROTOCOL_MD, "r");
    if (!f) fail_msg("cannot read %s", MPB_PROTOCOL_MD);
    return f;
}

static bool is_byte(const char *p) {
    return isxdigit((unsigned char)p[0]) && isxdigit((unsigned char)p[1]) &&
           (p[2] == ' ' || p[2] == '\n' || p[2] == 0);
}

size_t spec_block_hex(const char *after, uint8_t *out, size_t cap) {
    FILE *f = spec_open();
    char line[512];
    int stage = 0; /* 0: before after, 1: before the block, 2: in it */
    size_t n = 0;
    while (stage < 3 && fgets(line, sizeof line, f)) {
        if (stage == 0 && strstr(line, after))
            stage = 1;
        else if (stage == 1 && !strncmp(line, "```", 3))
            stage = 2;
        else if (stage == 2 && !strncmp(line, "```", 3))
            stage = 3;
        else if (stage == 2) {
            for (const char *p = line; is_byte(p); p += 3) {
                unsigned v;
                sscanf(p, "%2x", &v);
                if (n == cap) fail_msg("PROTOCOL.md: more than %zu bytes after '%s'", cap, after);
                out[n++] = (uint8_t)v;
                if (p[2] != ' ') break;
            }
        }
    }
    fclose(f);
    if (stage != 3) fail_msg("PROTOCOL.md: no example block after '%s'", after);
    return n;
}

void spec_named_hex(const char *after, const char *name, uint8_t *out, size_t n) {
    FILE *f = spec_open();
    char line[512];
    bool past = false, found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strstr(line, after)) past = true;
        if (!past || strncmp(line, name, strlen(name)) != 0) continue;
        const char *p = line + strlen(name);
        while (*p == ' ')
            p++;
        if (*p == '(') { /* "Pb  (server proof)  6383..." */
            const char *close = strchr(p, ')');
            if (close) p = close + 1;
            while (*p == ' ')
                p++;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned v;
            if (sscanf(p + 2 * i, "%2x", &v) != 1)
                fail_msg("PROTOCOL.md: '%s' has fewer than %zu bytes", name, n);
            out[i] = (uint8_t)v;
        }
        found = true;
    }
    fclose(f);
    if (!found) fail_msg("PROTOCOL.md: no '%s' after '%s'", name, after);
}
