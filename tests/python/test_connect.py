"""Ways to reach a broker: Manager(address, authkey) with "tcp://host:port" or ("host", port),
MPB_ENDPOINT with MPB_AUTHKEY_FILE or MPB_AUTHKEY, mpbroker.connect(); the private broker of
Manager() and its end at shutdown, at the end of a with block and at interpreter exit."""
import os
import subprocess
import sys
import unittest

import mpbroker

import th

CHILD = r"""
import os, sys, mpbroker
m = mpbroker.connect() if sys.argv[1] == "connect" else mpbroker.Manager()
print(m.address)
m.dict(name="conn_env")[sys.argv[1]] = os.getpid()
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

    def run_child(self, how, **env):
        e = {k: v for k, v in os.environ.items() if not k.startswith("MPB_") or k == "MPB_BUILD_DIR"}
        e.update(env)
        r = subprocess.run([sys.executable, "-c", CHILD, how], env=e, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
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
        self.assertTrue(out.startswith("ipc://"), out)
        self.assertFalse(os.path.exists(out[len("ipc://"):]), "the private broker's socket stays")
        with mpbroker.Manager() as m:
            sock = m.address[len("ipc://"):]
            pid = m._broker.proc.pid
            self.assertTrue(os.path.exists(sock))
        self.assertFalse(os.path.exists(os.path.dirname(sock)))
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)

    def test_proxies_after_shutdown(self):
        m = mpbroker.Manager()
        d = m.dict(a=1)
        m.shutdown()
        with self.assertRaisesRegex(RuntimeError, "shut down"):
            d["a"]
        with self.assertRaisesRegex(RuntimeError, "shut down"):
            m.list()

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
