"""One measurement each: mpb-bench, redis-benchmark and Python's SyncManager on one shape, and
the memory a small key costs in mpbrokerd and in Redis.
"""
import json
import os
import subprocess
import time

from compare_common import (Fail, PLACE, PY_TESTS, REPO, clean_env, free_port, log, parse_csv, run,
                            wait_for)
from compare_servers import Servers


def mpb_bench(bins, srv, endpoint, c, p, secs, tests, keyspace, echo=False, extra=(),
              plain=False):
    # One harness thread drives every connection, as redis-benchmark's one event loop does.
    argv = PLACE.prefix() + [bins.bench, '--threads', '1']
    if echo:
        argv += ['--echo', endpoint]
    else:
        argv += ['-e', endpoint, '-k', srv.key, '-t', ','.join(tests)]
    argv += ['-c', str(c), '-P', str(p), '-d', '16', '-r', str(keyspace), '-n', '1000000000',
             '--time', '%g' % secs, '--warmup', '%g' % min(0.5, secs / 4), '--csv'] + list(extra)
    ntests = 1 if echo else len(tests)
    env = clean_env()
    if plain:
        env['MPB_ENCRYPTION'] = 'off'
    out = run(argv, timeout=int(ntests * (secs + 15) + 60), env=env, check=False)
    return parse_csv(out, 'mpb-bench')


def redis_bench(srv, unix, c, p, secs, keyspace, quick, tls=False):
    base = PLACE.prefix() + ['redis-benchmark'] + (['-s', srv.redis_sock] if unix else
                                  ['-h', '127.0.0.1', '-p', str(srv.redis_port)])
    if tls:
        base = PLACE.prefix() + ['redis-benchmark', '--tls', '--insecure', '-h', '127.0.0.1',
                                 '-p', str(srv.tls_port)]
    base += ['-c', str(c), '-P', str(p), '-d', '16', '-r', str(keyspace), '--csv']
    tests = ['SET', 'GET', 'INCR', 'LPUSH', 'RPOP']
    if quick:
        return parse_csv(run(base + ['-t', ','.join(tests), '-n', '2000'], 120), 'redis-benchmark')
    # Calibrate, then give each test enough requests to run for secs.
    n0 = 20000 if p == 1 else 200000
    cal = parse_csv(run(base + ['-t', ','.join(tests), '-n', str(n0)], 300), 'redis-benchmark')
    out = {}
    for t in tests:
        rps = cal.get(t, {}).get('rps', 0) or 50000
        n = max(n0, int(rps * secs * 1.1))
        out.update(parse_csv(run(base + ['-t', t, '-n', str(n)], int(secs * 10 + 120)),
                             'redis-benchmark'))
    return out


def python_bench(clients, secs, keyspace, repeat):
    """Best of `repeat` runs per test: Python's figures vary with where the scheduler puts its
    processes, and the best is the fairest to it."""
    best = {}
    for _ in range(repeat):
        pin = ['--server-cpus', PLACE.server, '--client-cpus', PLACE.client] if PLACE.server else []
        out = run(['/usr/bin/python3', os.path.join(REPO, 'bench', 'pymanager.py'), '--clients',
                   str(clients), '--time', '%g' % secs, '-r', str(keyspace), '--csv'] + pin,
                  timeout=int(len(PY_TESTS) * (secs + 20) + 60), env=clean_env())
        for t, row in parse_csv(out, 'pymanager.py').items():
            if t not in best or row['rps'] > best[t]['rps']:
                best[t] = row
    return best


def vmrss(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    return 0


def set_commands(n):
    """SET key:000000000123 xxxxxxxxxxxxxxxx for n keys, in Redis's protocol (for --pipe)."""
    tail = '\r\n$16\r\n' + 'x' * 16 + '\r\n'
    return ''.join('*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d%s' % (i, tail)
                   for i in range(n)).encode()


def memory(bins, procs, tmp, srv, nkeys):
    """Bytes per small key: nkeys keys key:000000000123 with 16-byte values, in a fresh
    mpbrokerd (its RSS and its own heap count) and in Redis (INFO memory)."""
    res = {'keys': nkeys}
    d = os.path.join(tmp, 'mem')
    os.mkdir(d)
    os.mkdir(os.path.join(d, 'data'))
    ep = 'tcp://127.0.0.1:%d' % free_port()
    key = os.path.join(d, 'data', 'authkey')
    b = procs.start('mpbrokerd(memory)', [bins.brokerd, '--listen', ep, '--data-dir',
                                          os.path.join(d, 'data'), '--log-level', 'warn',
                                          '--persist', 'off'],
                    os.path.join(d, 'broker.log'), clean_env())
    wait_for('mpbrokerd', lambda: os.path.exists(key) and Servers.alive(b))
    time.sleep(0.2)

    def info():
        out = run([bins.cli, '-e', ep, '-k', key, '--json', 'info'], 30, env=clean_env())
        return json.loads(out)

    heap0, rss0 = info()['memory'], vmrss(b.pid)
    run([bins.bench, '-e', ep, '-k', key, '-t', 'dict.set', '-n', str(nkeys), '-r', str(nkeys),
         '--sequential', '-c', '4', '-P', '64', '-d', '16', '-q'], 600, env=clean_env())
    heap1, rss1 = info()['memory'], vmrss(b.pid)
    size = json.loads(run([bins.cli, '-e', ep, '-k', key, '--json', 'info', 'dict/bench'], 30,
                          env=clean_env()))['size']
    procs.stop(b)
    if size != nkeys:
        log('warning: the dict holds %d keys, not %d' % (size, nkeys))
    res['mpb_rss'] = (rss1 - rss0) / size
    res['mpb_heap'] = (heap1 - heap0) / size

    if srv.redis:
        # a fresh redis-server too, so that neither starts from a heap shaped by earlier tests
        port = free_port()
        rd = procs.start('redis-server(memory)', [
            'redis-server', '--port', str(port), '--bind', '127.0.0.1', '--save', '',
            '--appendonly', 'no', '--dir', d, '--daemonize', 'no',
            '--logfile', os.path.join(d, 'redis.log')], os.path.join(d, 'redis.out'),
            clean_env())

        def rcli(*cmd):
            r = subprocess.run(['redis-cli', '-p', str(port)] + list(cmd), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, timeout=30)
            return r.stdout.decode()
        wait_for('redis-server', lambda: rcli('PING').strip() == 'PONG' and Servers.alive(rd))

        def rinfo():
            kv = dict(l.split(':', 1) for l in rcli('INFO', 'memory').splitlines() if ':' in l)
            return int(kv['used_memory']), vmrss(rd.pid)
        used0, rrss0 = rinfo()
        r = subprocess.run(['redis-cli', '-p', str(port), '--pipe'], input=set_commands(nkeys),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        if r.returncode != 0:
            raise Fail('redis-cli --pipe failed: %s' % r.stdout.decode()[-300:])
        n = int(rcli('DBSIZE').strip())
        used1, rrss1 = rinfo()
        procs.stop(rd)
        if n != nkeys:
            log('warning: Redis holds %d keys, not %d' % (n, nkeys))
        res['redis_used'] = (used1 - used0) / n
        res['redis_rss'] = (rrss1 - rrss0) / n
    return res


def preload(bins, srv, keyspace):
    """Every key of the key space gets a value first, in both mpbrokers and in Redis, so that
    reads hit (as Python's are, pymanager.py does the same)."""
    plain = dict(clean_env(), MPB_ENCRYPTION='off')
    for ep, env in ((srv.mpb_tcp, clean_env()), (srv.mpb_plain, plain)):
        run([bins.bench, '-e', ep, '-k', srv.key, '-t', 'dict.set', '-n', str(keyspace), '-r',
             str(keyspace), '--sequential', '-c', '1', '-P', '64', '-q'], 300, env=env)
    if srv.redis:
        redis = [['-p', str(srv.redis_port)]]
        if getattr(srv, 'redis_tls', None):
            redis.append(['--tls', '--insecure', '-p', str(srv.tls_port)])
        for how in redis:
            subprocess.run(['redis-cli'] + how + ['--pipe'], input=set_commands(keyspace),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
