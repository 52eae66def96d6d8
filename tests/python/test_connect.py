"""Ways to reach a broker: Manager(address, authkey) with "tcp://host:port", ("host", port) or
"mpb://host:port", MPB_ENDPOINT with MPB_AUTHKEY_FILE or MPB_AUTHKEY, mpbroker.connect(); the
private broker of Manager() and its end at shutdown, at the end of a with block and at
interpreter exit."""
import os
import signal
import subprocess
import sys
import time
import unittest

import mpbroker

import th

CHILD = r"""
import os, sys, mpbroker
m = mpbroker.connect() if sys.argv[1] == "connect" else mpbroker.Manager()
print(m.address)
m.dict(name="conn_env")[sys.argv[1]] = os.getpid()
d, l = m.dict(a=(1,)), m.list([1])  # anonymous proxies still alive at exit
d["l"] = l
"""


STOPPED = r"""
import sys, time, mpbroker
m = mpbroker.Manager(sys.argv[1], authkey=sys.argv[2])
d = m.dict(name="conn_stopped")
d["before"] = 1
m.list([0])  # the reference session is made, and expires too
print("ready", flush=True)
sys.stdin.readline()  # the parent stops us past the TTL, then continues us and writes a line
d["after"] = 2  # the expired session is replaced
d["anon"] = m.list([3])[:]  # and the reference session
print(d.copy(), flush=True)
"""


class ConnectTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.b = th.Broker(listen="tcp://127.0.0.1:0")
        cls.port = int(cls.b.endpoint.rsplit(":", 1)[1])

    @classmethod
    def tearDownClass(cls):
        cls.b.stop()

    def test_tcp_forms(self):
        for addr in (self.b.endpoint, ("127.0.0.1", self.port), "127.0.0.1:%d" % self.port):
            with mpbroker.Manager(addr, authkey=self.b.authkey) as m:
                self.assertEqual(m.address, "tcp://127.0.0.1:%d" % self.port)
                m.dict(name="conn_tcp")[repr(addr)] = 1
        with mpbroker.connect(self.b.endpoint, self.b.authkey.decode()) as m:
            self.assertEqual(len(m.dict(name="conn_tcp")), 3)

    def test_mpb_stream(self):
        # mpb://: the same proxies over the broker's own encrypted TCP framing
        b = th.Broker(listen="mpb://127.0.0.1:0")
        try:
            self.assertTrue(b.endpoint.startswith("mpb://127.0.0.1:"), b.endpoint)
            with mpbroker.Manager(b.endpoint, authkey=b.authkey) as m:
                d, q = m.dict(name="conn_mpb"), m.Queue()
                d["k"] = [1, "two", {"3": 4.0}]
                q.put(b"x" * 100000)
                self.assertEqual(d["k"], [1, "two", {"3": 4.0}])
                self.assertEqual(len(q.get(timeout=5)), 100000)
            with self.assertRaises(Exception) as cm:
                mpbroker.Manager(b.endpoint, authkey=b"another-key-0123456789").connect()
            self.assertIn("different authkey", str(cm.exception))
        finally:
            b.stop()

    def run_child(self, how, **env):
        e = {k: v for k, v in os.environ.items() if not k.startswith("MPB_") or k == "MPB_BUILD_DIR"}
        e.update(env)
        r = subprocess.run([sys.executable, "-c", CHILD, how], env=e, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")  # nothing ignored in a __del__ at exit, either
        return r.stdout.strip()

    def test_environment(self):
        out = self.run_child("keyfile", MPB_ENDPOINT=self.b.endpoint,
                             MPB_AUTHKEY_FILE=self.b.keyfile)
        self.assertEqual(out, self.b.endpoint)
        out = self.run_child("connect", MPB_ENDPOINT=self.b.endpoint,
                             MPB_AUTHKEY=self.b.authkey.decode())
        self.assertEqual(out, self.b.endpoint)
        with mpbroker.Manager(self.b.endpoint, self.b.authkey) as m:
            self.assertEqual(sorted(m.dict(name="conn_env").keys()), ["connect", "keyfile"])

    def test_private_broker(self):
        out = self.run_child("private")  # no MPB_ENDPOINT: a broker of its own, gone at exit
        self.assertTrue(out.startswith("unix://"), out)
        self.assertFalse(os.path.exists(out[len("unix://"):]), "the private broker's socket stays")
        with mpbroker.Manager() as m:
            sock = m.address[len("unix://"):]
            pid = m._broker.proc.pid
            self.assertTrue(os.path.exists(sock))
        self.assertFalse(os.path.exists(os.path.dirname(sock)))
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)

    def test_private_broker_is_lean(self):
        # As multiprocessing's manager process: nothing on disk, no HTTP, and so neither
        # libmicrohttpd nor the GnuTLS it pulls in is loaded (mpbrokerd opens it for --http).
        with mpbroker.Manager() as m:
            d = m.dict()
            for i in range(50):
                d[i] = [i] * 10
            pid = m._broker.proc.pid
            with open("/proc/%d/maps" % pid) as f:
                maps = f.read()
            data = os.path.join(os.path.dirname(m.address[len("unix://"):]), "data")
            self.assertEqual(os.listdir(data), [])
        self.assertIn("libzmq", maps)
        self.assertNotIn("libmicrohttpd", maps)
        self.assertNotIn("libgnutls", maps)
        b = th.Broker("--http", "127.0.0.1:0", "--persist", "off")
        try:
            path = os.path.join(b.dir, "data", "http.addr")
            deadline = time.monotonic() + 10  # written after the endpoint file
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.01)
            with open(path) as f:
                addr = f.read().strip()
            with open("/proc/%d/maps" % b.proc.pid) as f:
                self.assertIn("libmicrohttpd", f.read())
            import urllib.request
            with urllib.request.urlopen("http://%s/healthz" % addr, timeout=10) as r:
                self.assertEqual((r.status, r.read()), (200, b"ok\n"))
        finally:
            b.stop()

    def test_proxies_after_shutdown(self):
        m = mpbroker.Manager()
        d = m.dict(a=1)
        m.shutdown()
        with self.assertRaisesRegex(RuntimeError, "shut down"):
            d["a"]
        with self.assertRaisesRegex(RuntimeError, "shut down"):
            m.list()

    def test_expired_session_is_replaced(self):
        b = th.Broker("--session-ttl-ms", "300", "--heartbeat-ms", "100")
        try:
            p = subprocess.Popen([sys.executable, "-c", STOPPED, b.endpoint, b.authkey],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.assertEqual(p.stdout.readline().strip(), "ready")
            os.kill(p.pid, signal.SIGSTOP)
            time.sleep(1.5)  # five TTLs: the broker ends the session
            os.kill(p.pid, signal.SIGCONT)
            p.stdin.write("go\n")
            p.stdin.flush()
            out = p.stdout.readline().strip()
            self.assertEqual(p.wait(30), 0)
            self.assertEqual(out, "{'before': 1, 'after': 2, 'anon': [3]}")
        finally:
            b.stop()

    def test_connect_needs_an_address(self):
        old = os.environ.pop("MPB_ENDPOINT", None)
        try:
            with self.assertRaises(ValueError):
                mpbroker.connect()
        finally:
            if old is not None:
                os.environ["MPB_ENDPOINT"] = old


if __name__ == "__main__":
    unittest.main()
