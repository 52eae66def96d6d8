"""What every part of bench/compare shares: its constants, its log, the processes it
starts (stopped by PID), where they run (Placement), and running a tool and reading its CSV.
"""
import csv
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time



REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


HEADER = ['test', 'rps', 'avg_latency_ms', 'min_latency_ms', 'p50_latency_ms',
          'p95_latency_ms', 'p99_latency_ms', 'max_latency_ms']


HEADER_LINE = ','.join('"%s"' % h for h in HEADER)


MPB_TESTS = ['dict.set', 'dict.get', 'dict.incr', 'list.append', 'queue.put+get',
             'lock.acquire+release', 'pool.apply']


# mpbroker op -> what it is compared with in Redis (a list: a pair of commands per operation)
REDIS_OF = {'dict.set': ['SET'], 'dict.get': ['GET'], 'dict.incr': ['INCR'],
            'list.append': ['LPUSH'], 'queue.put+get': ['LPUSH', 'RPOP']}


PY_TESTS = ['dict.set', 'dict.get', 'queue.put+get']


# mpb: mpbroker's own framing on TCP, always encrypted; last, so every earlier row keeps its place
SHAPES = [(tr, c, p) for tr in ('tcp', 'ipc', 'unix', 'mpb') for c in (1, 50) for p in (1, 16)]


def log(msg):
    print('compare: ' + msg, file=sys.stderr, flush=True)


class Fail(Exception):
    pass


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, name, argv, logpath, env=None):
        f = open(logpath, 'ab')
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env)
        f.close()
        p.name = name
        p.logpath = logpath
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            self.stop(p)


def on_signal(sig, frame):
    raise SystemExit(128 + sig)


def clean_env():
    """The environment for the servers and tools: no MPB_* settings leak in from the caller."""
    return {k: v for k, v in os.environ.items() if not k.startswith('MPB_')}


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Placement:
    """Where the processes run, the same for every system measured: 'split' puts the servers
    (mpbrokerd, the echo, redis-server, the Python manager, and the pool's worker) on CPU 0 and
    the load generators on the other CPUs; 'same' puts everything on CPU 0; 'none' leaves it to
    the scheduler. On a small machine where a request crosses several threads (ZeroMQ's I/O
    threads on both sides), a wake-up on another CPU costs more than the work, so placement
    moves every figure; applying one placement to all keeps the ratios fair."""

    def __init__(self, mode):
        self.set(mode)

    def set(self, mode):
        n = os.cpu_count() or 1
        if n < 2 or not shutil.which('taskset'):
            mode = 'none'
        self.mode = mode
        self.server = {'split': '0', 'same': '0'}.get(mode)
        self.client = {'split': '1-%d' % (n - 1) if n > 2 else '1', 'same': '0'}.get(mode)

    def pin(self, pid):
        """All threads of a running server."""
        if self.server:
            subprocess.run(['taskset', '-a', '-p', '-c', self.server, str(pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def prefix(self):
        """For a load generator's command line."""
        return ['taskset', '-c', self.client] if self.client else []

    def describe(self):
        return {'split': 'servers on CPU %s, load generators on CPU %s' % (self.server, self.client),
                'same': 'every process on CPU 0',
                'none': 'none (the scheduler decides)'}[self.mode]


PLACE = Placement('none')


def wait_for(what, ok, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if ok():
            return
        time.sleep(0.05)
    raise Fail('%s did not come up within %.0f s' % (what, timeout))


def run(argv, timeout, env=None, check=True):
    """Runs argv, returns its stdout; its stderr is passed through."""
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Fail('%s did not finish within %d s' % (' '.join(argv), timeout))
    err = r.stderr.decode(errors='replace').strip()
    if err:
        for line in err.splitlines():
            log('  | ' + line)
    if check and r.returncode != 0:
        raise Fail('%s exited with %d' % (' '.join(argv[:3]) + ' ...', r.returncode))
    return r.stdout.decode(errors='replace')


def median_of(runs):
    """Rows of several runs of one measurement ({test: {column: value}} each) as one: each
    column's median over the runs that have the test. On a small shared machine one run of
    a few seconds moves by 10-20 %; the median of runs interleaved with what they are compared
    with is the figure a ratio can be read from."""
    runs = [r for r in runs if r]
    out = {}
    for t in sorted({t for r in runs for t in r}):
        have = [r[t] for r in runs if t in r]
        out[t] = {}
        for k in have[0]:
            vals = [v[k] for v in have if v.get(k) is not None]
            out[t][k] = statistics.median(vals) if vals else None
    return out


def parse_csv(text, what):
    """redis-benchmark --csv rows by test name: {name: {column: float}}."""
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines or lines[0] != HEADER_LINE:
        raise Fail('%s: not redis-benchmark CSV: %r' % (what, text[:200]))
    out = {}
    for row in csv.DictReader(io.StringIO('\n'.join(lines))):
        out[row['test']] = {k: float(row[k]) for k in HEADER[1:]}
    return out
