/* help.c - mpb help [COMMAND] and mpb COMMAND --help: one entry per command, its synopsis
 * first, then what it does, its flags and its exit status. The same entries make the
 * COMMANDS section of the mpb(1) man page (mpb help --man), so the two never disagree. */
#include <string.h>

#include "cli.h"

/* clang-format off */
static const struct {
    const char *name, *synopsis, *text;
} entries[] = {
    {"info", "info [OBJ]",
     "Without OBJ: the broker's version, uptime, pid, clients, sessions, objects and memory.\n"
     "With OBJ (kind/name): that object's description, holders and waiters included.\n"},
    {"ls", "ls [PATTERN]",
     "Lists objects as kind/name and size, one a line; PATTERN is a glob on kind/name or\n"
     "name. With --json, one array of {\"kind\",\"name\",\"size\"}.\n"},
    {"get", "get OBJ [KEY|INDEX] [--timeout S] [--done]",
     "A dict value, a list item, a value or namespace attribute, or the whole object.\n"
     "get queue/NAME takes an item, waiting while the queue is empty (on a terminal it says\n"
     "so); --timeout S bounds the wait (exit 75, or 3 with --timeout 0 on an empty queue).\n"
     "--done also marks the item done, as a JoinableQueue consumer's task_done() does.\n"
     "A KEY is a string as typed; a string key that is missing while the key its text means\n"
     "as JSON (5, null, [1,2]) exists is reported with a hint to use --key-json.\n"},
    {"set", "set dict/NAME KEY VALUE | set list/NAME INDEX VALUE | set value/NAME VALUE\n"
            "    set namespace/NAME ATTR VALUE | set event/NAME",
     "Sets a dict key, replaces a list item, sets a value or an attribute, or sets an event.\n"
     "VALUE is JSON ('42', '\"text\"', '[1,2]', '{\"$bytes\":\"AAE=\"}').\n"},
    {"incr", "incr dict/NAME KEY [N]", "Adds N (default 1) to an integer and prints the result.\n"},
    {"del", "del OBJ [KEY|INDEX]",
     "Deletes a dict key, a list item, or the whole object. Exit 3 if there is none.\n"},
    {"append", "append list/NAME VALUE", "Appends VALUE (JSON) to a list.\n"},
    {"put", "put queue/NAME VALUE [--timeout S]",
     "Puts an item, waiting while the queue is full; --timeout S bounds the wait.\n"},
    {"task-done", "task-done queue/NAME",
     "One task_done() on a JoinableQueue: finishes an item taken with get, so join() can\n"
     "return. Exit 1 (EVALUE) when no item is unfinished.\n"},
    {"peek", "peek queue/NAME [N]",
     "The first N items of a queue (default 10), oldest first, one JSON value a line (with\n"
     "--json, one array); nothing is taken. Exit 3 if there is no such queue.\n"},
    {"clients", "clients",
     "The sessions the broker serves, newest first: SESSION, HOST, PID, ADDRESS (the\n"
     "connection's TCP peer), NAME (the client's name), CONNECTED, AGE and IDLE in seconds, HOLDS (locks, and semaphore units as\n"
     "OBJ:N) and WAITS (parked calls as OBJ(op)); mpb's own session is listed too. --json:\n"
     "the broker's array of {session, host, pid, name, connected, age_ms, idle_ms, holds,\n"
     "waits}.\n"},
    {"kill", "kill SESSION",
     "Ends the session as its expiry would: its locks are released (the next owner gets a\n"
     "larger fencing token), its parked calls answered, its references dropped. Exit 3 if\n"
     "there is no such session (ENOSESSION); a session cannot kill itself.\n"},
    {"slowlog", "slowlog [N]",
     "The newest N (default 10) entries of the broker's slow log, newest first: requests it\n"
     "served in more than slowlog-log-slower-than µs (mpbrokerd setting, default 10000),\n"
     "with their duration, op, object and session. The broker keeps slowlog-max-len.\n"},
    {"monitor", "monitor [--values]",
     "Streams the requests the broker serves, one line each as they come (as Redis's\n"
     "MONITOR): time, [session], op, object, latency, and the error code of a failed one;\n"
     "the arguments only with --values. Not this command's own reads. The broker keeps the\n"
     "last 4096 lines for its monitors: lines not read in time are reported as skipped.\n"
     "--json: one object per line. Runs until interrupted (SIGINT, SIGTERM: exit 0).\n"},
    {"clear", "clear event/NAME", "Clears an event.\n"},
    {"wait", "wait event/NAME [--timeout S]",
     "Waits until the event is set; exit 75 if it is not within the timeout.\n"},
    {"lock", "lock lock/NAME [--timeout S] [--conflict-exit-code N] -- COMMAND [ARGS...]",
     "Runs COMMAND holding the lock, as flock(1) does, and exits with its status (127 if it\n"
     "cannot be run; 75, or N, if the lock was not had in time).\n"},
    {"pool", "pool [--watch [--interval S]] | pool map FN JSON_ARRAY [--chunksize N]\n"
             "    [--timeout S] | pool apply FN JSON_VALUE|--args JSON_ARRAY [--timeout S] [--wait]",
     "Shows workers, functions and running maps (--watch redraws them every S seconds,\n"
     "clearing the screen only when stdout is a terminal), or runs FN on the workers.\n"
     "'-' reads the JSON from stdin. apply fails (exit 1, ENOWORKER) when after a second no\n"
     "worker serves FN, unless --wait: then it says so and keeps waiting.\n"},
    {"ping", "ping", "Checks the broker answers: prints pong.\n"},
    {"watch", "watch [--interval S | -i S] [-r N] COMMAND [ARGS...]",
     "Runs COMMAND (info, ls, get, peek, clients, pool) every S seconds (default 1), N\n"
     "times (default until stopped; -r -1 too), as watch(1) and redis-cli -r -i do. On a terminal each round\n"
     "redraws the screen under a header line; elsewhere rounds follow one another (with\n"
     "--json, one JSON document a line). A round that fails is reported and the next one\n"
     "runs; the exit status is the last round's. get queue/NAME is refused: watching must\n"
     "not take items.\n"},
    {"help", "help [COMMAND]", "The usage of mpb, or of one COMMAND (as mpb COMMAND --help).\n"},
};
/* clang-format on */

bool help_command(FILE *f, const char *name) {
    for (size_t i = 0; i < sizeof entries / sizeof *entries; i++) {
        if (strcmp(entries[i].name, name)) continue;
        fprintf(f, "usage: mpb [options] %s\n\n%s", entries[i].synopsis, entries[i].text);
        fputs("\nmpb --help lists the options and exit statuses every command shares.\n", f);
        return true;
    }
    return false;
}

/* roff for the COMMANDS section of mpb.1: backslashes and leading dots escaped */
static void roff(FILE *f, const char *s) {
    bool bol = true;
    for (; *s; s++) {
        if (bol && (*s == '.' || *s == '\'')) fputs("\\&", f);
        if (*s == '\\')
            fputs("\\e", f);
        else if (*s == '-')
            fputs("\\-", f);
        else
            fputc(*s, f);
        bol = *s == '\n';
    }
}

static void help_man(FILE *f) {
    fputs(".SH COMMANDS\n", f);
    for (size_t i = 0; i < sizeof entries / sizeof *entries; i++) {
        fputs(".TP\n.B ", f);
        roff(f, entries[i].synopsis);
        fputs("\n", f);
        roff(f, entries[i].text);
    }
}

int cmd_help(int argc, char **argv) {
    if (argc == 0) {
        help_usage(stdout);
        return 0;
    }
    if (argc == 1 && !strcmp(argv[0], "--man")) {
        help_man(stdout);
        return 0;
    }
    if (argc > 1) return usage_error("help takes at most one command, got '%s'", argv[1]);
    if (help_command(stdout, argv[0])) return 0;
    return usage_error("help: no command '%s'", argv[0]);
}
