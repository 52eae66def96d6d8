/* mpb.c - the operator's command line: look at a broker and its objects, and change them.
 * Values typed and printed are JSON (json.c converts); --json makes every output JSON, for
 * scripts. Exit status: 0 done, 1 the operation failed, 2 bad usage, 3 no such key/object (and,
 * with --timeout 0, an empty queue to get from or a full one to put into), 75 timed out.
 * This file holds main, the options and the table that dispatches each command to its file:
 * cmd_obj.c (data), cmd_sync.c (events, locks), cmd_pool.c, cmd_broker.c and the cmd_*.c beside
 * them; report.c prints, args.c reads arguments. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

cli_opt_t opt;
mpb_client_t *cli;
const char *cur_cmd;

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: mpb [options] COMMAND [ARGS]\n"
        "\n"
        "commands:\n"
        "  info [OBJ]                    broker facts, or one object's (OBJ is kind/name)\n"
        "  ls [PATTERN]                  objects (glob on kind/name or name), with sizes\n"
        "  help [COMMAND]                this text, or one command's (mpb COMMAND --help)\n"
        "  watch [-i S] [-r N] COMMAND [ARGS...]  COMMAND every S seconds (default 1), N times\n"
        "                                (default until stopped); info, ls, get, peek, clients,\n"
        "                                pool\n"
        "  get queue/NAME --done         take an item and mark it done (JoinableQueue)\n"
        "  task-done queue/NAME          one task_done() on a JoinableQueue\n"
        "  peek queue/NAME [N]           the first N items (default 10), none taken\n"
        "  clients                       sessions: host, pid, address, name, age, idle, holds,\n"
        "                                waits\n"
        "  kill SESSION                  end a session as its expiry would\n"
        "  slowlog [N]                   the N (default 10) slowest recent requests\n"
        "  monitor [--values]            the requests the broker serves, as they come\n"
        "  get OBJ [KEY|INDEX]           a dict value, a list item, or the whole object\n"
        "  set dict/NAME KEY VALUE       set a dict key\n"
        "  set list/NAME INDEX VALUE     replace a list item\n"
        "  incr dict/NAME KEY [N]        add N (default 1) to an integer; prints it\n"
        "  del OBJ [KEY|INDEX]           delete a key, a list item, or the whole object\n"
        "  append list/NAME VALUE        append to a list\n"
        "  put queue/NAME VALUE [--timeout S]   put an item (blocks while full)\n"
        "  get queue/NAME [--timeout S]  take an item (blocks while empty)\n"
        "  set event/NAME | clear event/NAME    set or clear an event\n"
        "  wait event/NAME [--timeout S] wait until the event is set\n"
        "  lock lock/NAME [--timeout S] [--conflict-exit-code N] -- COMMAND [ARGS...]\n"
        "                                run COMMAND holding the lock (as flock(1) does)\n"
        "  get value/NAME | set value/NAME VALUE\n"
        "  get namespace/NAME [ATTR] | set namespace/NAME ATTR VALUE\n"
        "  pool [--watch [--interval S]] workers, functions and running maps\n"
        "  pool map FN JSON_ARRAY [--chunksize N] [--timeout S] [--output]   FN over every\n"
        "                                item; --output: what the tasks wrote (workers with\n"
        "                                --forward-output), on stderr as [task N stdout] LINE\n"
        "                                ('-' for JSON from stdin, here and in apply);\n"
        "                                prints the results as a JSON array\n"
        "  pool apply FN JSON_VALUE [--timeout S] [--wait]  FN(JSON_VALUE) on some worker;\n"
        "                                after 1 s with no worker serving FN it fails\n"
        "                                (exit 1), unless --wait says to keep waiting\n"
        "  pool apply FN --args JSON_ARRAY [--timeout S]  FN(*JSON_ARRAY)\n"
        "  ping                          check the broker answers\n"
        "  save                          write a snapshot of the broker's state to its\n"
        "                                data dir now (compacting its log); waits for it\n"
        "\n"
        "VALUEs are JSON text ('42', '\"text\"', '[1,2]', '{\"$bytes\":\"AAE=\"}' for bytes).\n"
        "A KEY is a string as typed, unless --key-json says it is JSON too.\n"
        "--timeout S: seconds (fractions allowed); without it, blocking commands wait\n"
        "forever, as they do for a timeout past 24.8 days (2^31 ms, the library's most).\n"
        "Exit status: 0 done, 1 failed, 2 bad usage, 3 no such key/item/object (with\n"
        "--timeout 0 too: an empty queue for get, a full one for put), 75 timed out\n"
        "(also: the lock was not had in time, unless --conflict-exit-code N says\n"
        "otherwise); mpb lock exits with COMMAND's status, 127 if it cannot be run,\n"
        "and 76 if the lock was lost before COMMAND finished (its session ended: cut\n"
        "off from the broker for longer than the session TTL, or the broker restarted\n"
        "without it), whatever COMMAND's status.\n"
        "With --json, errors are JSON on stdout too:\n"
        "  {\"error\":{\"code\":\"ENOKEY\",\"message\":\"...\",\"op\":\"get\"}}\n"
        "code EUSAGE for bad usage; \"op\" is absent before a command is known.\n"
        "\n"
        "options:\n"
        "  -e, --endpoint EP        broker (env MPB_ENDPOINT, default tcp://127.0.0.1:5555)\n"
        "  -k, --authkey-file PATH  authkey (env MPB_AUTHKEY_FILE, or MPB_AUTHKEY itself)\n"
        "      --json               machine-readable JSON output, errors included\n"
        "      --key-json           KEYs are JSON (for integer or compound keys)\n"
        "      --connect-timeout S  seconds to wait for the broker (default 5)\n"
        "  -h, --help               this text\n"
        "  -V, --version            mpb's version\n"
        "Options may follow the command too (mpb ls --json); '--' ends them.\n"
        "With no COMMAND on a terminal, mpb reads commands at a prompt (with history).\n");
}

static bool want_heartbeat;

static int connect_broker(void) {
    void *key;
    size_t keylen;
    char err[300];
    int rc = mpb_authkey_load(opt.keyfile, &key, &keylen, err, sizeof err);
    if (rc) {
        if (opt.json)
            print_json_error(mpb_err_name(rc), err, "connect");
        else
            fprintf(stderr, "mpb: %s\n", err);
        return EXIT_FAIL;
    }
    if (err[0]) fprintf(stderr, "mpb: warning: %s\n", err);
    mpb_options_t o;
    mpb_options_init(&o);
    o.connect_timeout_ms = opt.connect_timeout_ms;
    o.name = "mpb";
    o.no_heartbeat_thread = !want_heartbeat;
    rc = mpb_connect(opt.endpoint, key, keylen, &o, &cli);
    memset(key, 0, keylen);
    mpb_free(key);
    if (rc) return fail(rc, "connect");
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    {"info",      cmd_info     },
    {"ls",        cmd_ls       },
    {"get",       cmd_get      },
    {"set",       cmd_set      },
    {"incr",      cmd_incr     },
    {"del",       cmd_del      },
    {"append",    cmd_append   },
    {"ping",      cmd_ping     },
    {"put",       cmd_put      },
    {"clear",     cmd_clear    },
    {"wait",      cmd_wait     },
    {"lock",      cmd_lock     },
    {"pool",      cmd_pool     },
    {"save",      cmd_save     },
    {"watch",     cmd_watch    },
    {"task-done", cmd_task_done},
    {"peek",      cmd_peek     },
    {"clients",   cmd_clients  },
    {"kill",      cmd_kill     },
    {"slowlog",   cmd_slowlog  },
    {"monitor",   cmd_monitor  },
};

bool cli_is_command(const char *name) {
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(commands[i].name, name)) return true;
    return false;
}

int cli_run(int argc, char **argv) {
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (strcmp(commands[i].name, argv[0])) continue;
        const char *was = cur_cmd;
        cur_cmd = commands[i].name;
        int rc = commands[i].fn(argc - 1, argv + 1);
        cur_cmd = was;
        return rc;
    }
    return usage_error("unknown command '%s'", argv[0]);
}

void help_usage(FILE *f) {
    usage(f);
}

/* Options accepted after the command too (mpb ls --json): the global ones are taken out of
 * argv up to "--", which is dropped (so mpb get dict/d -- --json reads the key "--json"),
 * except for lock, whose "--" starts COMMAND. *help is set for -h/--help. Returns 0 or
 * EXIT_USAGE. */
static int hoist_options(int *argc, char **argv, bool keep_dashdash, bool *help) {
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *val = NULL;
        int used = 1;
        if (!strcmp(a, "--")) {
            if (keep_dashdash) break;
            memmove(argv + i, argv + i + 1, (size_t)(*argc - i - 1) * sizeof *argv);
            (*argc)--;
            break;
        }
        bool takes = !strcmp(a, "-e") || !strcmp(a, "--endpoint") || !strcmp(a, "-k") ||
                     !strcmp(a, "--authkey-file") || !strcmp(a, "--connect-timeout");
        if (takes) {
            if (i + 1 >= *argc) return usage_error("option '%s' needs a value", a);
            val = argv[i + 1];
            used = 2;
        } else if (!strncmp(a, "--endpoint=", 11) || !strncmp(a, "--authkey-file=", 15) ||
                   !strncmp(a, "--connect-timeout=", 18)) {
            val = strchr(a, '=') + 1;
        }
        if (!strcmp(a, "--json"))
            opt.json = true;
        else if (!strcmp(a, "--key-json"))
            opt.key_json = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            *help = true;
        else if (val && (a[1] == 'e' || !strncmp(a, "--endpoint", 10)))
            opt.endpoint = val;
        else if (val && (a[1] == 'k' || !strncmp(a, "--authkey-file", 14)))
            opt.keyfile = val;
        else if (val) {
            double sec;
            if (!parse_seconds(val, &sec) || sec <= 0 || sec > 3600)
                return usage_error("--connect-timeout '%s' is not a number of seconds", val);
            opt.connect_timeout_ms = sec < 0.001 ? 1 : (int)(sec * 1000);
        } else
            continue;
        memmove(argv + i, argv + i + used, (size_t)(*argc - i - used) * sizeof *argv);
        *argc -= used;
        i--;
    }
    return 0;
}

/* One line of the prompt: as a command line after "mpb", on the open connection; options
 * given on it (--json) hold for that line only. */
int cli_exec(int argc, char **argv) {
    bool is_help = !strcmp(argv[0], "help");
    if (!is_help && !cli_is_command(argv[0])) return usage_error("unknown command '%s'", argv[0]);
    cli_opt_t saved = opt;
    bool help = false;
    int rc = hoist_options(&argc, argv, !strcmp(argv[0], "lock"), &help);
    if (rc == 0 && is_help && !help)
        rc = cmd_help(argc - 1, argv + 1);
    else if (rc == 0)
        rc = help ? cmd_help(1, argv) : cli_run(argc, argv);
    opt = saved;
    return rc;
}

int cli_connect(void) {
    want_heartbeat = true; /* a prompt may sit idle longer than a session lives */
    return connect_broker();
}

int main(int argc, char **argv) {
    opt.endpoint = getenv("MPB_ENDPOINT") ? getenv("MPB_ENDPOINT") : "tcp://127.0.0.1:5555";
    opt.connect_timeout_ms = 5000;
    enum { O_JSON = 256, O_KEY_JSON, O_CONNECT_TIMEOUT };
    static const struct option lopts[] = {
        {"endpoint",        required_argument, 0, 'e'              },
        {"authkey-file",    required_argument, 0, 'k'              },
        {"json",            no_argument,       0, O_JSON           },
        {"key-json",        no_argument,       0, O_KEY_JSON       },
        {"connect-timeout", required_argument, 0, O_CONNECT_TIMEOUT},
        {"help",            no_argument,       0, 'h'              },
        {"version",         no_argument,       0, 'V'              },
        {0,                 0,                 0, 0                },
    };
    int c;
    /* The first bad option is reported after the loop, once a later --json is known too. */
    char bad[600] = "";
    bool bad_option = false; /* unknown or lacking its value: the usage text follows */
    opterr = 0;
    /* '+': options end at the command, so values such as -5 reach it intact. ':' first: a
     * missing value is told apart from an unknown option. */
    while ((c = getopt_long(argc, argv, "+:e:k:hV", lopts, NULL)) != -1) {
        const char *arg = argv[optind - 1 < argc ? optind - 1 : argc - 1];
        switch (c) {
        case 'e': opt.endpoint = optarg; break;
        case 'k': opt.keyfile = optarg; break;
        case O_JSON: opt.json = true; break;
        case O_KEY_JSON: opt.key_json = true; break;
        case O_CONNECT_TIMEOUT: {
            double s;
            if (bad[0]) break;
            if (!parse_seconds(optarg, &s) || s <= 0 || s > 3600)
                snprintf(bad, sizeof bad, "--connect-timeout '%s' is not a number of seconds",
                         optarg);
            else
                opt.connect_timeout_ms = s < 0.001 ? 1 : (int)(s * 1000); /* 0: the default */
            break;
        }
        case 'h': usage(stdout); return 0;
        case 'V':
            printf("mpb %s (libmpb %u.%u.%u)\n", MPBROKER_VERSION, mpb_version() >> 16,
                   (mpb_version() >> 8) & 0xff, mpb_version() & 0xff);
            return 0;
        case ':':
            if (!bad[0]) snprintf(bad, sizeof bad, "option '%s' needs a value", arg);
            bad_option = true;
            break;
        default:
            if (bad[0]) break;
            if (optopt && strncmp(arg, "--", 2))
                snprintf(bad, sizeof bad, "unknown option '-%c'", optopt);
            else
                snprintf(bad, sizeof bad, "unknown option '%s'", arg);
            bad_option = true;
            break;
        }
    }
    if (bad[0] && (opt.json || !bad_option)) return usage_error("%s", bad);
    if (bad[0]) {
        fprintf(stderr, "mpb: %s\n", bad);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (optind >= argc) {
        /* as redis-cli: no command on a terminal is a prompt; anywhere else, bad usage */
        if (!opt.json && isatty(0) && isatty(1)) return repl_run();
        if (opt.json) return usage_error("no command (mpb --help lists them)");
        usage(stderr);
        return EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;
    const char *name = argv[0];
    bool is_help = !strcmp(name, "help");
    if (!is_help && !cli_is_command(name)) return usage_error("unknown command '%s'", name);
    cur_cmd = name;
    bool help = false;
    int rc = hoist_options(&argc, argv, !strcmp(name, "lock"), &help);
    if (rc) return rc;
    if (help) return cmd_help(1, argv);
    if (is_help) return cmd_help(argc - 1, argv + 1);
    want_heartbeat = !strcmp(name, "lock");
    rc = connect_broker();
    if (rc == 0) rc = cli_run(argc, argv);
    mpb_close(&cli);
    return rc;
}
