"""python3 -m mpbroker: the package's commands.

    python3 -m mpbroker worker --endpoint tcp://broker:5555 --processes 4 [--import MODULE]
    python3 -m mpbroker broker [mpbrokerd's options]      e.g. --listen tcp://0.0.0.0:5555

`worker` serves Pool tasks from this host (worker.py); `broker` runs mpbrokerd, found next to
the package, in the build tree or on PATH, for those who never built anything but this package.
"""
import argparse
import os
import sys


def _worker(argv):
    from . import _mpb, worker
    from .managers import default_authkey, endpoint_of
    ap = argparse.ArgumentParser(
        prog="python3 -m mpbroker worker",
        description="Serve mpbroker Pool tasks: functions are imported from their modules on "
                    "first use. Stops on SIGTERM or SIGINT once the running tasks are reported.")
    ap.add_argument("-e", "--endpoint", default=os.environ.get("MPB_ENDPOINT"),
                    help="the broker, tcp://host:port, mpb://host:port, ipc:///path or unix:///path "
                         "(env MPB_ENDPOINT)")
    ap.add_argument("-k", "--authkey-file",
                    help="file holding the authkey (env MPB_AUTHKEY_FILE, or MPB_AUTHKEY)")
    ap.add_argument("-p", "--processes", type=int, default=os.cpu_count() or 1,
                    help="worker processes (default: the number of CPUs)")
    ap.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                    help="import MODULE first (repeatable); a path to a .py file stands in for "
                         "the callers' __main__, so their script's functions can run here")
    ap.add_argument("--max-tasks", type=int, default=0, metavar="N",
                    help="a process serves N tasks, then a fresh one replaces it")
    ap.add_argument("--prefetch", type=int, default=1, metavar="N",
                    help="tasks each process holds beyond the one it runs (default 1)")
    ap.add_argument("--function", default=worker.FUNCTION, metavar="NAME",
                    help="the broker function name to serve (default %(default)s)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no line per process started")
    a = ap.parse_args(argv)
    if not a.endpoint:
        ap.error("no broker: give --endpoint or set MPB_ENDPOINT")
    if a.processes < 1:
        ap.error("--processes must be at least 1")
    if a.authkey_file:
        os.environ["MPB_AUTHKEY_FILE"] = a.authkey_file
    try:
        authkey = default_authkey()
        endpoint = endpoint_of(a.endpoint)
    except (OSError, ValueError, TypeError) as e:
        print("mpbroker worker: %s" % e, file=sys.stderr)
        return 2
    log = None if a.quiet else (lambda m: print("mpbroker worker: " + m, file=sys.stderr,
                                                 flush=True))
    if log:
        log("serving %s from %s with %d process(es)" % (a.function, endpoint, a.processes))
    try:
        return worker.serve_processes(endpoint, authkey, a.processes, [a.function], a.imports,
                                      a.max_tasks, a.prefetch, log)
    except ImportError as e:
        print("mpbroker worker: --import: %s" % e, file=sys.stderr)
        return 2
    except _mpb.Error as e:
        print("mpbroker worker: %s: %s" % (endpoint, e.args[-1]), file=sys.stderr)
        return 2


def _broker(argv):
    from .managers import find_program
    try:
        path = find_program("mpbrokerd")
    except FileNotFoundError as e:
        print("mpbroker broker: %s" % e, file=sys.stderr)
        return 2
    os.execv(path, [path, *argv])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cmds = {"worker": _worker, "broker": _broker}
    if not argv or argv[0] not in cmds:
        print(__doc__.strip(), file=sys.stderr if argv[:1] not in (["-h"], ["--help"]) else
              sys.stdout)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return cmds[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
