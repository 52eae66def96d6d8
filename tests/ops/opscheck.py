"""opscheck.py - what the ops checks share: one counter of checks and the failures among them,
the summary that ends each script, and stopping a process the checks started.
"""
import signal
import subprocess
import sys

failures = []
checks = 0


def check(cond, what):
    """Counts the check; a false cond is a failure, printed at once and summed up by finish()."""
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def finish():
    """Exit 1 after the count of failed checks if any failed, else say how many passed."""
    if failures:
        print("%d of %d checks failed" % (len(failures), checks), file=sys.stderr)
        sys.exit(1)
    print("ok: %d checks" % checks)


def terminate(p, seconds=10):
    """SIGTERM to p if it still runs; SIGKILL after seconds. Its exit status."""
    if p.poll() is not None:
        return p.returncode
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(seconds)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()
