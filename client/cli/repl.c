/* repl.c - `mpb` with no command on a terminal: a prompt, as redis-cli's,
 * reading command lines with libedit (the last 1000 kept in $MPB_HISTFILE,
 * default ~/.mpb_history; MPB_HISTFILE="" keeps none) and running each on one
 * connection. Words split as a shell splits them: 'single' and "double" quotes,
 * backslash escapes, so JSON values type as on the command line: set dict/d k
 * '{"a": 1}'. */
#include <stdlib.h>
#include <string.h>

#include <editline/readline.h>

#include "cli.h"

#define MAX_WORDS 64

/* Splits line into words in place (buf holds the unquoted text). Returns the
 * number of words, or -1 for an unterminated quote. */
static int split(const char *line, char *buf, char **words) {
    int n = 0;
    const char *p = line;
    char *o = buf;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p) return n;
        if (n == MAX_WORDS) return -2;
        words[n++] = o;
        char q = 0;
        for (; *p && (q || (*p != ' ' && *p != '\t')); p++) {
            if (q == '\'' && *p == '\'')
                q = 0;
            else if (q == '"' && *p == '"')
                q = 0;
            else if (!q && (*p == '\'' || *p == '"'))
                q = *p;
            else if (*p == '\\' && q != '\'' && p[1])
                *o++ = *++p;
            else
                *o++ = *p;
        }
        if (q) return -1;
        *o++ = 0;
    }
}

int repl_run(void) {
    int rc = cli_connect();
    if (rc) return rc;
    const char *hist = getenv("MPB_HISTFILE");
    char path[4096] = "";
    if (hist)
        snprintf(path, sizeof path, "%s", hist);
    else if (getenv("HOME"))
        snprintf(path, sizeof path, "%s/.mpb_history", getenv("HOME"));
    using_history();
    stifle_history(1000);
    if (path[0]) read_history(path);
    char prompt[600];
    snprintf(prompt, sizeof prompt, "%s> ", opt.endpoint);
    char *line;
    rc = 0;
    while ((line = readline(prompt))) {
        char *buf = malloc(strlen(line) + 1);
        char *words[MAX_WORDS + 1];
        int n = buf ? split(line, buf, words) : -3;
        if (n != 0 && n != -3) {
            add_history(line);
            if (path[0]) write_history(path); /* each line at once: a killed prompt keeps it */
        }
        if (n > 0 && (!strcmp(words[0], "quit") || !strcmp(words[0], "exit"))) {
            free(buf);
            free(line);
            break;
        }
        if (n == -1)
            rc = usage_error("unterminated quote");
        else if (n == -2)
            rc = usage_error("more than %d words", MAX_WORDS);
        else if (n == -3)
            rc = fail(MPB_ENOMEM, "prompt");
        else if (n > 0) {
            words[n] = NULL;
            rc = cli_exec(n, words);
        }
        fflush(stdout);
        free(buf);
        free(line);
    }
    if (!line) putchar('\n'); /* end of input (Ctrl-D): leave the shell's prompt on its line */
    mpb_close(&cli);
    return rc;
}
