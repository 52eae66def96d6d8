"""The programs bench/compare measures: the packages it needs, the mpbroker build, and the
throwaway servers (mpbrokerd on tcp://, ipc://, unix:// and mpb://, the echo, an mpb-worker,
redis-server, over TLS too) it starts.
"""
import os
import shutil
import subprocess
import time

from compare_common import Fail, PLACE, REPO, clean_env, free_port, log, run, wait_for


def ensure_packages():
    want = {'redis-server': 'redis-server', 'redis-benchmark': 'redis-tools',
            'redis-cli': 'redis-tools'}
    missing = sorted({pkg for tool, pkg in want.items() if not shutil.which(tool)})
    if not missing:
        return
    log('installing %s (apt-get)' % ' '.join(missing))
    sudo = [] if os.geteuid() == 0 else ['sudo']
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    cmd = sudo + ['apt-get', 'install', '-y', '--no-install-recommends'] + missing
    if subprocess.call(cmd, env=env) != 0:
        subprocess.call(sudo + ['apt-get', 'update'], env=env)
        if subprocess.call(cmd, env=env) != 0:
            raise Fail('cannot install ' + ' '.join(missing))


class Bins:
    def __init__(self, args):
        b = args.build_dir
        self.build = b
        self.bench = args.mpb_bench or os.path.join(b, 'bench', 'mpb-bench')
        self.brokerd = args.mpbrokerd or os.path.join(b, 'broker', 'mpbrokerd')
        self.worker = args.worker or os.path.join(b, 'client', 'cli', 'mpb-worker')
        self.cli = args.mpb or os.path.join(b, 'client', 'cli', 'mpb')
        self.demo = args.demo_lib or os.path.join(b, 'examples', 'pool', 'libmpbdemo.so')

    def check(self, need_cli):
        for p in [self.bench, self.brokerd, self.worker, self.demo] + ([self.cli] if need_cli else []):
            if not os.path.exists(p):
                raise Fail('%s is missing (build it, or drop --no-build)' % p)


def build(args):
    b = args.build_dir
    if not os.path.exists(os.path.join(b, 'CMakeCache.txt')):
        log('configuring %s (Release)' % b)
        if subprocess.call(['cmake', '-S', REPO, '-B', b, '-DCMAKE_BUILD_TYPE=Release']) != 0:
            raise Fail('cmake configure failed')
    else:
        try:
            with open(os.path.join(b, 'CMakeCache.txt')) as f:
                bt = [l.split('=', 1)[1].strip() for l in f if l.startswith('CMAKE_BUILD_TYPE:')]
            if bt and bt[0] not in ('Release', 'RelWithDebInfo'):
                log('warning: %s is a %s build; figures from it are not representative' % (b, bt[0]))
        except OSError:
            pass
    log('building (cmake --build %s)' % b)
    jobs = str(os.cpu_count() or 2)
    if subprocess.call(['cmake', '--build', b, '-j', jobs, '--target', 'mpb_bench', 'mpbrokerd',
                        'mpb_worker', 'mpb_cli', 'mpbdemo'], stdout=subprocess.DEVNULL) != 0:
        raise Fail('build failed: cmake --build %s' % b)


class Servers:
    """The throwaway servers of one run."""

    def __init__(self, bins, procs, tmp, redis=True):
        self.bins, self.procs, self.tmp = bins, procs, tmp
        env = clean_env()
        # mpbrokerd: tcp://, ipc://, unix:// and mpb:// (its own framing on TCP, always
        # encrypted), its own data dir (and so its own authkey). tcp:// first: the endpoint
        # file holds the first --listen only
        self.data = os.path.join(tmp, 'data')
        os.mkdir(self.data)
        self.mpb_tcp = 'tcp://127.0.0.1:%d' % free_port()
        self.mpb_ipc = 'ipc://' + os.path.join(tmp, 'broker.sock')
        self.mpb_unix = 'unix://' + os.path.join(tmp, 'broker-unix.sock')
        self.mpb_mpb = 'mpb://127.0.0.1:%d' % free_port()
        self.broker = procs.start('mpbrokerd', [
            bins.brokerd, '--listen', self.mpb_tcp, '--listen', self.mpb_ipc,
            '--listen', self.mpb_unix, '--listen', self.mpb_mpb,
            '--data-dir', self.data, '--endpoint-file', os.path.join(tmp, 'broker.ep'),
            '--log-level', 'warn', '--persist', 'off'], os.path.join(tmp, 'broker.log'), env)
        self.key = os.path.join(self.data, 'authkey')
        wait_for('mpbrokerd', lambda: os.path.exists(os.path.join(tmp, 'broker.ep')) and
                 os.path.exists(self.key) and self.alive(self.broker))
        # the same broker without encryption on tcp:// (the "plain" column), same key, and
        # the same settings: nothing but the encryption may differ
        self.plain_data = os.path.join(tmp, 'plain')
        os.mkdir(self.plain_data)
        self.mpb_plain = 'tcp://127.0.0.1:%d' % free_port()
        self.plain = procs.start('mpbrokerd(plain)', [
            bins.brokerd, '--listen', self.mpb_plain, '--encryption', 'off', '--authkey-file',
            self.key, '--data-dir', self.plain_data, '--endpoint-file',
            os.path.join(tmp, 'plain.ep'), '--log-level', 'warn', '--persist', 'off'],
            os.path.join(tmp, 'plain.log'), env)
        wait_for('mpbrokerd(plain)', lambda: os.path.exists(os.path.join(tmp, 'plain.ep')) and
                 self.alive(self.plain))
        # the echo
        self.echo_tcp = 'tcp://127.0.0.1:%d' % free_port()
        self.echo_ipc = 'ipc://' + os.path.join(tmp, 'echo.sock')
        self.echo = procs.start('echo', [bins.bench, '--serve-echo', self.echo_tcp,
                                         '--serve-echo', self.echo_ipc, '--endpoint-file',
                                         os.path.join(tmp, 'echo.ep')],
                                os.path.join(tmp, 'echo.log'), env)
        wait_for('echo server', lambda: os.path.exists(os.path.join(tmp, 'echo.ep')))
        # one worker serving square, for pool.apply
        self.worker = procs.start('mpb-worker', [
            bins.worker, '--lib', bins.demo, '--fn', 'square', '-e', self.mpb_tcp,
            '-k', self.key, '--name', 'compare'], os.path.join(tmp, 'worker.log'), env)
        self.redis = None
        if redis:
            self.redis_port = free_port()
            self.redis_sock = os.path.join(tmp, 'redis.sock')
            self.redis = procs.start('redis-server', [
                'redis-server', '--port', str(self.redis_port), '--bind', '127.0.0.1',
                '--save', '', '--appendonly', 'no', '--unixsocket', self.redis_sock,
                '--unixsocketperm', '700', '--dir', tmp, '--daemonize', 'no',
                '--logfile', os.path.join(tmp, 'redis.log')], os.path.join(tmp, 'redis.out'),
                env)
            wait_for('redis-server', lambda: self.redis_cli('PING', check=False).strip() == 'PONG')
            # and Redis over TLS, with a self-signed certificate made here
            self.tls_port = free_port()
            self.tls_cert = os.path.join(tmp, 'tls.crt')
            self.tls_key = os.path.join(tmp, 'tls.key')
            run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
                 '-subj', '/CN=localhost', '-keyout', self.tls_key, '-out', self.tls_cert], 60)
            self.redis_tls = procs.start('redis-server(tls)', [
                'redis-server', '--port', '0', '--tls-port', str(self.tls_port), '--bind',
                '127.0.0.1', '--tls-cert-file', self.tls_cert, '--tls-key-file', self.tls_key,
                '--tls-ca-cert-file', self.tls_cert, '--tls-auth-clients', 'no', '--save', '',
                '--appendonly', 'no', '--dir', tmp, '--daemonize', 'no',
                '--logfile', os.path.join(tmp, 'redis-tls.log')],
                os.path.join(tmp, 'redis-tls.out'), env)
            wait_for('redis-server(tls)', lambda: subprocess.run(
                ['redis-cli', '--tls', '--insecure', '-p', str(self.tls_port), 'PING'],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                timeout=30).stdout.decode().strip() == 'PONG')
        self.wait_worker()
        for proc in (self.broker, self.plain, self.echo, self.worker, self.redis,
                     getattr(self, 'redis_tls', None)):
            if proc:
                PLACE.pin(proc.pid)

    @staticmethod
    def alive(p):
        if p.poll() is not None:
            raise Fail('%s exited (%d); see %s' % (p.name, p.returncode, p.logpath))
        return True

    def redis_cli(self, *cmd, check=True):
        r = subprocess.run(['redis-cli', '-p', str(self.redis_port)] + list(cmd),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30)
        if check and r.returncode != 0:
            raise Fail('redis-cli %s failed' % ' '.join(cmd))
        return r.stdout.decode()

    def wait_worker(self):
        def served():
            self.alive(self.worker)
            out = subprocess.run([self.bins.cli, '-e', self.mpb_tcp, '-k', self.key, '--json',
                                  'pool'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 env=clean_env()).stdout.decode()
            return '"square"' in out
        if os.path.exists(self.bins.cli):
            wait_for('mpb-worker', served)
        else:
            time.sleep(0.5)
