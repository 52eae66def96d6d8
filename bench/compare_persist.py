"""The persistence part of bench/compare: mpbrokerd's fsync modes beside Redis's appendfsync,
writes per second and the restart time of a full log.
"""
import io
import json
import os
import subprocess
import time

from compare_common import (Fail, PLACE, clean_env, free_port, log, median_of, parse_csv, run,
                            wait_for)
from compare_servers import Servers
from compare_runs import mpb_bench, set_commands
from compare_report import fmt_ms, fmt_rps, fmt_x


PERSIST_MODES = ['off', 'no', 'everysec', 'always']  # mpbrokerd --fsync (off: --persist off)


PERSIST_TESTS = {'dict.set': 'SET', 'queue.put': 'LPUSH'}


class Ns:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def server_prefix():
    """Servers started here run where the placement puts servers, from their first instruction
    (their start is measured too)."""
    return ['taskset', '-c', PLACE.server] if PLACE.server else []


# mpbroker's transports in the persistence rows ('mpb': mpb://, beside Redis over TCP)
TRANSPORTS = ('tcp', 'unix', 'mpb')


def unix_ep(d):
    return 'unix://' + os.path.join(d, 'b.sock')


def start_mpb(bins, procs, d, extra, name='mpbrokerd(persist)', mpb_ep=None):
    """A broker on a data dir of its own, on tcp://, on unix_ep(d) and on mpb_ep if given;
    returns (proc, tcp endpoint, key, seconds to be ready)."""
    os.makedirs(os.path.join(d, 'data'), exist_ok=True)
    ep = 'tcp://127.0.0.1:%d' % free_port()
    epfile = os.path.join(d, 'ep')
    if os.path.exists(epfile):
        os.unlink(epfile)
    key = os.path.join(d, 'data', 'authkey')
    t0 = time.time()
    b = procs.start(name, server_prefix() + [
        bins.brokerd, '--listen', ep, '--listen', unix_ep(d), '--data-dir', os.path.join(d, 'data'),
        '--endpoint-file', epfile, '--log-level', 'warn'] + (['--listen', mpb_ep] if mpb_ep else [])
        + extra, os.path.join(d, 'broker.log'),
        clean_env())
    wait_for('mpbrokerd', lambda: os.path.exists(epfile) and os.path.exists(key) and
             Servers.alive(b), timeout=600)
    return b, ep, key, time.time() - t0


def start_redis(procs, d, extra, name='redis-server(persist)'):
    os.makedirs(d, exist_ok=True)
    port = free_port()
    t0 = time.time()
    rd = procs.start(name, server_prefix() + [
        'redis-server', '--port', str(port), '--bind', '127.0.0.1', '--unixsocket',
        os.path.join(d, 'redis.sock'), '--unixsocketperm', '700', '--save', '', '--dir', d,
        '--daemonize', 'no', '--logfile', os.path.join(d, 'redis.log')] + extra,
        os.path.join(d, 'redis.out'), clean_env())

    def ready():
        r = subprocess.run(['redis-cli', '-p', str(port), 'PING'], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=30)
        return r.stdout.decode().strip() == 'PONG'
    wait_for('redis-server', lambda: Servers.alive(rd) and ready(), timeout=600)
    return rd, port, time.time() - t0


def redis_persist_bench(port, secs, keyspace, quick, sock=None):
    where = ['-s', sock] if sock else ['-h', '127.0.0.1', '-p', str(port)]
    base = PLACE.prefix() + ['redis-benchmark'] + where + ['-c', '50', '-P', '1', '-d', '16',
                                                           '-r', str(keyspace), '--csv']
    out = {}
    for t in PERSIST_TESTS.values():
        n = 2000 if quick else 20000
        if not quick:  # calibrate, then run for secs
            cal = parse_csv(run(base + ['-t', t, '-n', str(n)], 300), 'redis-benchmark')
            n = max(n, int((cal.get(t, {}).get('rps') or 20000) * secs * 1.1))
        out.update(parse_csv(run(base + ['-t', t, '-n', str(n)], int(secs * 10 + 300)),
                             'redis-benchmark'))
    return out


def persistence(args, bins, procs, tmp, secs, keyspace, nkeys):
    """dict.set and queue.put at 50 clients, for each --fsync beside Redis's appendfsync (a
    fresh pair of servers for each, measured in turns), over TCP (mpbroker's tcp:// and mpb://,
    both beside the same turn's Redis over TCP) and over a Unix socket (mpbroker's unix://,
    Redis's unixsocket); then the time to start on 1 M keys, from the
    log and from a snapshot, beside Redis from its AOF and from a rewritten one (an RDB
    preamble)."""
    rows = []
    for mode in PERSIST_MODES:
        d = os.path.join(tmp, 'persist-' + mode)
        what = '--persist off' if mode == 'off' else '--fsync ' + mode
        rwhat = 'appendonly no' if mode == 'off' else 'appendonly yes, appendfsync ' + mode
        extra = ['--persist', 'off'] if mode == 'off' else ['--fsync', mode]
        rextra = ['--appendonly', 'no'] if mode == 'off' else ['--appendonly', 'yes',
                                                             '--appendfsync', mode]
        # both servers up, measured in turns (--repeat times): the medians
        mep = 'mpb://127.0.0.1:%d' % free_port()
        b, ep, key, _ = start_mpb(bins, procs, d, extra, mpb_ep=mep)
        rd, port, _ = start_redis(procs, os.path.join(d, 'redis'), rextra)
        eps = {'tcp': ep, 'unix': unix_ep(d), 'mpb': mep}
        socks = {'tcp': None, 'unix': os.path.join(d, 'redis', 'redis.sock')}
        mruns, rruns = {tr: [] for tr in TRANSPORTS}, {tr: [] for tr in TRANSPORTS}
        for i in range(args.repeat):
            turn = ' (%d of %d)' % (i + 1, args.repeat) if args.repeat > 1 else ''
            for tr in TRANSPORTS:
                log('persistence: mpbroker %s over %s%s' % (what, tr, turn))
                mruns[tr].append(mpb_bench(bins, Ns(key=key), eps[tr], 50, 1, secs,
                                           list(PERSIST_TESTS), keyspace))
                if tr == 'mpb':  # Redis over TCP, as measured for the tcp row of this turn
                    rruns[tr].append(rruns['tcp'][-1])
                    continue
                log('persistence: redis %s over %s%s' % (rwhat, tr, turn))
                rruns[tr].append(redis_persist_bench(port, secs, keyspace, args.quick,
                                                     socks[tr]))
        procs.stop(b)
        procs.stop(rd)
        m = {tr: median_of(v) for tr, v in mruns.items()}
        r = {tr: median_of(v) for tr, v in rruns.items()}
        for tr in TRANSPORTS:
            for op, rop in PERSIST_TESTS.items():
                rows.append({'transport': tr, 'fsync': mode, 'op': op,
                             'mpb_rps': m[tr].get(op, {}).get('rps'),
                             'mpb_p99_ms': m[tr].get(op, {}).get('p99_latency_ms'),
                             'redis_rps': r[tr].get(rop, {}).get('rps'),
                             'redis_p99_ms': r[tr].get(rop, {}).get('p99_latency_ms')})
    restart = {'keys': nkeys}
    d = os.path.join(tmp, 'restart-mpb')
    log('restart: %d keys into mpbroker (--fsync everysec)' % nkeys)
    b, ep, key, _ = start_mpb(bins, procs, d, ['--fsync', 'everysec'])
    run([bins.bench, '-e', ep, '-k', key, '-t', 'dict.set', '-n', str(nkeys), '-r', str(nkeys),
         '--sequential', '-c', '4', '-P', '64', '-d', '16', '-q'], 900, env=clean_env())
    procs.stop(b)

    def mpb_size(ep, key):
        return json.loads(run([bins.cli, '-e', ep, '-k', key, '--json', 'info', 'dict/bench'], 60,
                              env=clean_env()))['size']
    b, ep, key, restart['mpb_log_s'] = start_mpb(bins, procs, d, ['--fsync', 'everysec'])
    restart['mpb_log_keys'] = mpb_size(ep, key)
    run([bins.cli, '-e', ep, '-k', key, 'save'], 600, env=clean_env())
    procs.stop(b)
    b, ep, key, restart['mpb_snapshot_s'] = start_mpb(bins, procs, d, ['--fsync', 'everysec'])
    restart['mpb_snapshot_keys'] = mpb_size(ep, key)
    procs.stop(b)
    log('restart: %d keys into Redis (appendonly yes, appendfsync everysec)' % nkeys)
    rdir = os.path.join(tmp, 'restart-redis')
    rextra = ['--appendonly', 'yes', '--appendfsync', 'everysec']
    rd, port, _ = start_redis(procs, rdir, rextra)
    r = subprocess.run(['redis-cli', '-p', str(port), '--pipe'], input=set_commands(nkeys),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    if r.returncode != 0:
        raise Fail('redis-cli --pipe failed: %s' % r.stdout.decode()[-300:])
    procs.stop(rd)

    def rsize(port):
        return int(subprocess.run(['redis-cli', '-p', str(port), 'DBSIZE'], stdout=subprocess.PIPE,
                                  timeout=60).stdout.decode().strip())
    rd, port, restart['redis_aof_s'] = start_redis(procs, rdir, rextra)
    restart['redis_aof_keys'] = rsize(port)
    subprocess.run(['redis-cli', '-p', str(port), 'BGREWRITEAOF'], stdout=subprocess.DEVNULL,
                   timeout=60)
    wait_for('the AOF rewrite', lambda: 'aof_rewrite_in_progress:0' in subprocess.run(
        ['redis-cli', '-p', str(port), 'INFO', 'persistence'], stdout=subprocess.PIPE,
        timeout=60).stdout.decode() and 'aof_rewrite_scheduled:0' in subprocess.run(
        ['redis-cli', '-p', str(port), 'INFO', 'persistence'], stdout=subprocess.PIPE,
        timeout=60).stdout.decode(), timeout=600)
    procs.stop(rd)
    rd, port, restart['redis_rdb_s'] = start_redis(procs, rdir, rextra)
    restart['redis_rdb_keys'] = rsize(port)
    procs.stop(rd)
    return rows, restart


def render_persistence(rows, restart):
    out = io.StringIO()
    w = lambda s='': out.write(s + '\n')
    w()
    w('persistence: 50 clients, no pipelining, 16-byte values; each mode on a fresh server')
    w('  %-5s %-9s %-10s %9s %7s | %9s %7s | %6s %9s' % ('', 'fsync', 'op', 'mpb rps', 'p99',
                                                        'redis rps', 'p99', '/redis', '/off'))
    off = {(r['transport'], r['op']): r['mpb_rps'] for r in rows if r['fsync'] == 'off'}
    for r in sorted(rows, key=lambda r: r['transport']):  # stable: modes stay in order
        tr = r['transport']
        w('  %-5s %-9s %-10s %9s %7s | %9s %7s | %6s %9s' % (
            tr, r['fsync'], r['op'], fmt_rps(r['mpb_rps']), fmt_ms(r['mpb_p99_ms']),
            fmt_rps(r['redis_rps']), fmt_ms(r['redis_p99_ms']),
            fmt_x(r['mpb_rps'], r['redis_rps']), fmt_x(r['mpb_rps'], off.get((tr, r['op'])))))
    w('  (off: mpbrokerd --persist off, Redis appendonly no; the others: mpbrokerd --fsync X, '
      'Redis appendonly yes, appendfsync X;')
    w('   tcp: mpbroker tcp:// (encrypted) and Redis over TCP; mpb: mpbroker mpb:// (encrypted) and '
      'the same turn\'s Redis over TCP;')
    w('   unix: mpbroker unix:// and Redis over its unixsocket)')
    if restart:
        w()
        w('restart on %d keys (16-byte values), until the server answers:' % restart['keys'])
        w('  mpbroker from its log       %7.2f s (%d keys)' % (restart['mpb_log_s'],
                                                              restart['mpb_log_keys']))
        w('  mpbroker from a snapshot    %7.2f s (%d keys)' % (restart['mpb_snapshot_s'],
                                                              restart['mpb_snapshot_keys']))
        w('  Redis from its AOF          %7.2f s (%d keys)' % (restart['redis_aof_s'],
                                                              restart['redis_aof_keys']))
        w('  Redis from a rewritten AOF  %7.2f s (%d keys, RDB preamble)' % (
            restart['redis_rdb_s'], restart['redis_rdb_keys']))
    return out.getvalue()


def persistence_targets(rows, restart):
    """Issue 12's targets, as this run measured them."""
    by = {(r['transport'], r['fsync'], r['op']): r for r in rows}
    out = []
    for tr in TRANSPORTS:
        for op in PERSIST_TESTS:
            ev, off, al = (by.get((tr, m, op)) for m in ('everysec', 'off', 'always'))
            if ev and off and ev['mpb_rps'] and off['mpb_rps']:
                x = ev['mpb_rps'] / off['mpb_rps']
                out.append('%s %s everysec >= 0.9x no persistence: %.2fx %s' % (
                    tr, op, x, 'met' if x >= 0.9 else 'NOT met'))
            if al and al['mpb_rps'] and al['redis_rps']:
                x = al['mpb_rps'] / al['redis_rps']
                out.append('%s %s always >= 1.0x Redis always: %.2fx %s' % (
                    tr, op, x, 'met' if x >= 1.0 else 'NOT met'))
    if restart:
        ok = restart['mpb_log_s'] <= restart['redis_aof_s']
        out.append('restart on %d keys <= Redis: %.2f s from the log vs %.2f s from the AOF %s; '
                   '%.2f s from a snapshot vs %.2f s from an RDB preamble %s' % (
                       restart['keys'], restart['mpb_log_s'], restart['redis_aof_s'],
                       'met' if ok else 'NOT met', restart['mpb_snapshot_s'],
                       restart['redis_rdb_s'],
                       'met' if restart['mpb_snapshot_s'] <= restart['redis_rdb_s'] else 'NOT met'))
    return out
