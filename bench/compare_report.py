"""The table of bench/compare: rows of every system per test and shape, the rendered text,
the targets it checks, the CSV, and the lines that say how it was run.
"""
import csv
import io
import os
import platform
import subprocess
import time

from compare_common import MPB_TESTS, PLACE, PY_TESTS, REDIS_OF, REPO, SHAPES


def fmt_rps(v):
    return '-' if v is None else '%.0f' % v


def fmt_ms(v):
    return '-' if v is None else '%.3f' % v


def fmt_x(a, b):
    return '-' if a is None or not b else '%.2f' % (a / b)


def redis_row(rows, op):
    """Redis's figures for op: rps (pairs: two commands per operation, so 1/(1/a + 1/b)) and,
    for single commands, p50/p99."""
    names = REDIS_OF.get(op)
    if not rows or not names or any(n not in rows for n in names):
        return None, None, None
    if len(names) == 1:
        r = rows[names[0]]
        return r['rps'], r['p50_latency_ms'], r['p99_latency_ms']
    rps = [rows[n]['rps'] for n in names]
    if not all(rps):
        return 0.0, None, None
    return 1.0 / sum(1.0 / x for x in rps), None, None


def build_rows(results, py):
    rows = []
    for shape in SHAPES:
        tr, c, p = shape
        r = results.get(shape)
        if not r:
            continue
        echo = r.get('echo', {}).get('echo', {})
        rt = r.get('redis_tcp')
        ru = r.get('redis_unix') if tr in ('ipc', 'unix') else None
        pyr = py.get(1 if c == 1 else 4, {})
        for op in MPB_TESTS:
            m = r['mpb'].get(op)
            if m is None:
                continue
            red = redis_row(rt, op)
            uni = redis_row(ru, op)
            pyv = pyr.get(op, {}).get('rps') if op in PY_TESTS else None
            pl = (r.get('plain') or {}).get(op, {})
            tls = redis_row(r.get('redis_tls'), op)
            rows.append({
                'transport': tr, 'clients': c, 'pipeline': p, 'op': op,
                'mpb_rps': m['rps'], 'mpb_p50_ms': m['p50_latency_ms'],
                'mpb_p99_ms': m['p99_latency_ms'],
                'echo_rps': echo.get('rps'), 'echo_p50_ms': echo.get('p50_latency_ms'),
                'echo_p99_ms': echo.get('p99_latency_ms'),
                'redis_rps': red[0], 'redis_p50_ms': red[1], 'redis_p99_ms': red[2],
                'redis_unix_rps': uni[0], 'python_rps': pyv,
                'plain_rps': pl.get('rps'), 'plain_p99_ms': pl.get('p99_latency_ms'),
                'redis_tls_rps': tls[0],
            })
    for row in rows:
        for k, other in (('mpb_per_plain', 'plain_rps'), ('mpb_per_redis_tls', 'redis_tls_rps'),
                         ('mpb_per_echo', 'echo_rps'), ('mpb_per_redis', 'redis_rps'),
                         ('mpb_per_redis_unix', 'redis_unix_rps'), ('mpb_per_python', 'python_rps')):
            row[k] = row['mpb_rps'] / row[other] if row.get(other) else None
    return rows


def render(rows, mem, meta):
    out = io.StringIO()
    w = lambda s='': out.write(s + '\n')
    w('mpbroker beside a bare ZeroMQ echo, Redis and Python\'s SyncManager: one run, one machine')
    for line in meta:
        w('  ' + line)
    w()
    cols = [('shape', 14, 'l'), ('op', 20, 'l'),
            ('mpb rps', 9, 'r'), ('p50', 6, 'r'), ('p99', 6, 'r'), ('|', 1, 'l'),
            ('echo rps', 9, 'r'), ('p50', 6, 'r'), ('p99', 6, 'r'), ('|', 1, 'l'),
            ('redis rps', 9, 'r'), ('p50', 6, 'r'), ('p99', 6, 'r'), ('unix rps', 9, 'r'), ('|', 1, 'l'),
            ('py rps', 7, 'r'), ('|', 1, 'l'),
            ('/echo', 5, 'r'), ('/redis', 6, 'r'), ('/unix', 5, 'r'), ('/py', 6, 'r')]

    def line(vals):
        parts = []
        for (name, width, al), v in zip(cols, vals):
            parts.append(v.ljust(width) if al == 'l' else v.rjust(width))
        return ' '.join(parts).rstrip()
    w(line([c[0] for c in cols]))
    prev = None
    for r in rows:
        shape = '%s c=%d P=%d' % (r['transport'], r['clients'], r['pipeline'])
        if prev and shape != prev:
            w()
        w(line([shape if shape != prev else '', r['op'],
                fmt_rps(r['mpb_rps']), fmt_ms(r['mpb_p50_ms']), fmt_ms(r['mpb_p99_ms']), '|',
                fmt_rps(r['echo_rps']), fmt_ms(r['echo_p50_ms']), fmt_ms(r['echo_p99_ms']), '|',
                fmt_rps(r['redis_rps']), fmt_ms(r['redis_p50_ms']), fmt_ms(r['redis_p99_ms']),
                fmt_rps(r['redis_unix_rps']), '|', fmt_rps(r['python_rps']), '|',
                fmt_x(r['mpb_rps'], r['echo_rps']), fmt_x(r['mpb_rps'], r['redis_rps']),
                fmt_x(r['mpb_rps'], r['redis_unix_rps']), fmt_x(r['mpb_rps'], r['python_rps'])]))
        prev = shape
    w()
    w('rps: operations per second; p50/p99: latency in ms, per operation from send to reply.')
    w('echo: mpb-bench\'s harness against a bare ZeroMQ ROUTER echo (frames the size of a dict.get')
    w('  request, P separate messages in flight) over the same transport: the transport\'s own limit')
    w('  (none for unix:// nor mpb://: mpbroker\'s own framing on a Unix socket and on TCP, no ZeroMQ')
    w('  on either side).')
    w('mpb: mpbroker\'s own framing on TCP (mpb://, the same broker), always encrypted: an X25519')
    w('  greeting, ChaCha20-Poly1305 per frame; beside Redis over TCP, and over TLS below.')
    w('redis: redis-benchmark over TCP with the same -c/-P/-d/-r (SET, GET, INCR, LPUSH; LPUSH+RPOP')
    w('  for queue.put+get, as 1/(1/a+1/b), so no latency); unix: Redis over its unix socket (ipc and')
    w('  unix rows).')
    w('py: multiprocessing SyncManager over TCP, 1 client process for c=1 rows, 4 for c=50 (best of')
    w('  runs); it has no pipelining. /echo /redis /unix /py: mpbroker rps divided by theirs.')
    w('queue.put+get and lock.acquire+release count a pair as one operation (one round trip when')
    w('  pipelined, two at -P 1); each lock is uncontended (one per client and pipeline slot).')
    w('pool.apply: square(i) through one mpb-worker (concurrency 1) over tcp://, round trip per task.')
    w('  (the worker is on tcp:// for every row; the caller on the row\'s transport.)')
    enc = [r for r in rows if r['transport'] == 'tcp' and r.get('plain_rps')]
    sealed = [r for r in rows if r['transport'] == 'mpb']  # mpb://: always encrypted, no plain twin
    if enc or sealed:
        w()
        w('encryption, tcp rows: mpbroker with CURVE (the default, "mpb" above) beside the same')
        w('broker with --encryption off, and beside Redis over TLS (self-signed, redis-benchmark --tls)')
        if sealed:
            w('mpb rows: mpbroker over mpb:// (X25519 + ChaCha20-Poly1305, no ZeroMQ) beside the same')
            w('Redis over TLS, measured in the same turns as the tcp rows')
        ecols = [('shape', 14, 'l'), ('op', 20, 'l'), ('curve rps', 9, 'r'), ('p99', 6, 'r'),
                 ('plain rps', 9, 'r'), ('p99', 6, 'r'), ('cost', 6, 'r'), ('|', 1, 'l'),
                 ('redis-tls', 9, 'r'), ('/tls', 5, 'r')]

        def eline(vals):
            return ' '.join(v.ljust(wd) if al == 'l' else v.rjust(wd)
                            for (_, wd, al), v in zip(ecols, vals)).rstrip()
        w(eline([c[0] for c in ecols]))
        prev = None
        for r in enc + sealed:
            shape = '%s c=%d P=%d' % (r['transport'], r['clients'], r['pipeline'])
            if prev and shape != prev:
                w()
            cost = '-' if not r.get('plain_rps') else '%.0f%%' % (100 * (1 - r['mpb_rps'] / r['plain_rps']))
            w(eline([shape if shape != prev else '', r['op'], fmt_rps(r['mpb_rps']),
                     fmt_ms(r['mpb_p99_ms']), fmt_rps(r['plain_rps']), fmt_ms(r['plain_p99_ms']),
                     cost, '|', fmt_rps(r['redis_tls_rps']),
                     fmt_x(r['mpb_rps'], r['redis_tls_rps'])]))
            prev = shape
        w('cost: throughput lost to encryption (1 - curve/plain); /tls: curve rps over Redis-TLS rps.')
        if sealed:
            w('mpb rows: "curve rps" holds mpb:// rps (its encryption, not CURVE); no plain nor cost:')
            w('  mpb:// has no unencrypted mode; /tls: mpb:// rps over Redis-TLS rps.')
    if mem:
        w()
        w('memory per key, %d keys "key:000000000123" with 16-byte values in one dict / the keyspace:'
          % mem['keys'])
        w('  mpbroker: %.1f bytes/key (RSS growth), %.1f bytes/key (its heap, `mpb info` memory)'
          % (mem['mpb_rss'], mem['mpb_heap']))
        if 'redis_used' in mem:
            w('  Redis:    %.1f bytes/key (INFO used_memory growth), %.1f bytes/key (RSS growth)'
              % (mem['redis_used'], mem['redis_rss']))
            w('  ratio mpbroker/Redis: %.2f (heap / used_memory), %.2f (RSS / RSS)'
              % (mem['mpb_heap'] / mem['redis_used'], mem['mpb_rss'] / mem['redis_rss']))
    return out.getvalue()


def targets(rows, mem):
    """The issue's targets, each checked against this run."""
    out = []

    def get(tr, c, p, op):
        for r in rows:
            if (r['transport'], r['clients'], r['pipeline'], r['op']) == (tr, c, p, op):
                return r
        return None

    def verdict(ok):
        return 'met    ' if ok else 'NOT met'
    gets = [r for r in rows if r['op'] == 'dict.get' and r['mpb_per_echo'] is not None]
    if gets:
        worst = min(gets, key=lambda r: r['mpb_per_echo'])
        out.append('%s dict.get >= 0.9x echo in every shape: worst %.2fx (%s c=%d P=%d)' % (
            verdict(worst['mpb_per_echo'] >= 0.9), worst['mpb_per_echo'], worst['transport'],
            worst['clients'], worst['pipeline']))
    for tr in ('tcp', 'ipc'):
        vals = []
        for op in ('dict.set', 'dict.get', 'dict.incr', 'queue.put+get'):
            r = get(tr, 50, 16, op)
            if r and r['mpb_per_redis'] is not None:
                vals.append((op, r['mpb_per_redis']))
        if vals:
            out.append('%s %s c=50 P=16: set/get/incr/queue >= 1.0x Redis -P 16: %s' % (
                verdict(all(v >= 1.0 for _, v in vals)), tr,
                ', '.join('%s %.2fx' % (o, v) for o, v in vals)))
    vals = [(op, get('ipc', 50, 1, op)) for op in ('dict.set', 'dict.get', 'dict.incr')]
    vals = [(op, r['mpb_per_redis']) for op, r in vals if r and r['mpb_per_redis'] is not None]
    if vals:
        out.append('%s ipc c=50 P=1 >= 1.0x Redis over TCP: %s' % (
            verdict(all(v >= 1.0 for _, v in vals)), ', '.join('%s %.2fx' % (o, v) for o, v in vals)))
    vals = [(r['transport'], r['clients'], r['op'], r['mpb_per_python']) for r in rows
            if r['pipeline'] == 16 and r['mpb_per_python'] is not None]
    if vals:
        worst = min(vals, key=lambda v: v[3])
        out.append('%s >= 20x Python with pipelining (P=16): worst %.1fx (%s c=%d %s)' % (
            verdict(worst[3] >= 20), worst[3], worst[0], worst[1], worst[2]))
    vals = [(op, get('tcp', 1, 1, op)) for op in PY_TESTS]
    vals = [(op, r['mpb_per_python']) for op, r in vals if r and r['mpb_per_python'] is not None]
    if vals:
        out.append('%s tcp c=1 P=1 >= 1.0x Python (one synchronous client): %s' % (
            verdict(all(v >= 1.0 for _, v in vals)), ', '.join('%s %.2fx' % (o, v) for o, v in vals)))
    lat = [r for r in rows if r['op'] in ('dict.set', 'dict.get', 'dict.incr') and
           r['echo_p99_ms'] and r['mpb_p99_ms'] is not None]
    if lat:
        worst = max(lat, key=lambda r: r['mpb_p99_ms'] / r['echo_p99_ms'])
        x = worst['mpb_p99_ms'] / worst['echo_p99_ms']
        out.append('%s p99 <= 1.2x echo p99 (dict ops, every shape): worst %.2fx (%s c=%d P=%d %s)'
                   % (verdict(x <= 1.2), x, worst['transport'], worst['clients'],
                      worst['pipeline'], worst['op']))
    # encryption (tcp rows that have a --encryption off twin)
    enc = [r for r in rows if r['transport'] == 'tcp' and r.get('plain_rps')]
    for c, p, limit in ((50, 16, 0.10), (1, 1, 0.15)):
        vals = [(r['op'], 1 - r['mpb_rps'] / r['plain_rps']) for r in enc
                if r['clients'] == c and r['pipeline'] == p]
        if vals:
            worst = max(vals, key=lambda v: v[1])
            out.append('%s encryption costs <= %d%% at tcp c=%d P=%d: worst %.0f%% (%s); %s' % (
                verdict(worst[1] <= limit), 100 * limit, c, p, 100 * worst[1], worst[0],
                ', '.join('%s %.0f%%' % (o, 100 * v) for o, v in vals)))
    vals = [(r['op'], r['mpb_rps'] / r['redis_tls_rps']) for r in enc
            if r['clients'] == 50 and r['pipeline'] == 16 and r.get('redis_tls_rps')]
    if vals:
        out.append('%s encrypted tcp c=50 P=16 >= 1.0x Redis over TLS: %s' % (
            verdict(all(v >= 1.0 for _, v in vals)), ', '.join('%s %.2fx' % (o, v) for o, v in vals)))
    # the same for mpb://, encrypted too (its own framing on TCP)
    vals = [(r['op'], r['mpb_rps'] / r['redis_tls_rps']) for r in rows
            if r['transport'] == 'mpb' and r['clients'] == 50 and r['pipeline'] == 16 and
            r.get('redis_tls_rps')]
    if vals:
        out.append('%s encrypted mpb:// c=50 P=16 >= 1.0x Redis over TLS: %s' % (
            verdict(all(v >= 1.0 for _, v in vals)), ', '.join('%s %.2fx' % (o, v) for o, v in vals)))
    if mem and 'redis_used' in mem:
        out.append('%s memory per small key <= Redis: %.1f vs %.1f bytes (heap vs used_memory)' % (
            verdict(mem['mpb_heap'] <= mem['redis_used']), mem['mpb_heap'], mem['redis_used']))
    return out


def write_csv(path, rows, mem):
    fields = ['transport', 'clients', 'pipeline', 'op', 'mpb_rps', 'mpb_p50_ms', 'mpb_p99_ms',
              'echo_rps', 'echo_p50_ms', 'echo_p99_ms', 'redis_rps', 'redis_p50_ms',
              'redis_p99_ms', 'redis_unix_rps', 'python_rps', 'mpb_per_echo', 'mpb_per_redis',
              'mpb_per_redis_unix', 'mpb_per_python', 'plain_rps', 'plain_p99_ms',
              'redis_tls_rps', 'mpb_per_plain', 'mpb_per_redis_tls', 'mpb_bytes_per_key_rss',
              'mpb_bytes_per_key_heap', 'redis_bytes_per_key_used', 'redis_bytes_per_key_rss']
    with open(path, 'w', newline='') as f:
        wr = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
        wr.writeheader()
        for r in rows:
            wr.writerow({k: ('' if v is None else ('%.3f' % v if isinstance(v, float) else v))
                         for k, v in r.items()})
        if mem:
            wr.writerow({'transport': 'memory', 'op': 'dict of %d keys' % mem['keys'],
                         'mpb_bytes_per_key_rss': '%.1f' % mem['mpb_rss'],
                         'mpb_bytes_per_key_heap': '%.1f' % mem['mpb_heap'],
                         'redis_bytes_per_key_used': '%.1f' % mem.get('redis_used', 0),
                         'redis_bytes_per_key_rss': '%.1f' % mem.get('redis_rss', 0)})


def meta_lines(args, secs, keyspace):
    cpu = platform.processor() or ''
    try:
        with open('/proc/cpuinfo') as f:
            names = [l.split(':', 1)[1].strip() for l in f if l.startswith('model name')]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    redis_v = subprocess.run(['redis-server', '--version'], stdout=subprocess.PIPE).stdout.decode().split()
    redis_v = next((x[2:] for x in redis_v if x.startswith('v=')), '?')
    try:
        rev = subprocess.run(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
        dirty = subprocess.run(['git', '-C', REPO, 'status', '--porcelain', '--untracked-files=no'],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
        rev = (rev + ('+changes' if dirty else '')) or '?'
    except OSError:
        rev = '?'
    load = os.getloadavg()[0]
    return ['placement: %s (taskset; the same for mpbroker, the echo, Redis and Python); '
            'mpb-bench and redis-benchmark each drive all their connections from one thread'
            % PLACE.describe(),
            '%s, %d CPUs, %s; load before the run %.2f' % (cpu, os.cpu_count() or 0,
                                                           time.strftime('%Y-%m-%d %H:%M'), load),
            'mpbroker %s (%s), Redis %s, Python %s; %g s per measurement, 16-byte values, -r %d%s'
            % (rev, args.build_dir, redis_v, platform.python_version(), secs, keyspace,
               ' (--quick: figures are not meaningful)' if args.quick else '')] + (
        ['--repeat %d: tcp encrypted, plain, mpb:// and Redis over TLS, and each fsync mode beside '
         'Redis, measured %d times in turns; their rows are the medians' % (args.repeat, args.repeat)]
        if args.repeat > 1 else [])
