"""`python3 -m mpbroker worker`: worker processes started apart from the caller (as on another
host) serve a Pool that has no local workers, import the functions' modules on demand or
with --import (a script's path standing in for the caller's __main__), run a task again when
one of them is SIGKILLed, replace it, and stop on SIGTERM; bad flags, a module that does not
import and a wrong authkey are refused with a message."""
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

import mpbroker
import th
from test_pool import die_once, started_pid


def pid_and_parent(_=None):
    with open("/proc/self/status") as f:
        ppid = [line.split()[1] for line in f if line.startswith("PPid:")][0]
    return os.getpid(), int(ppid)


def cube(x):
    return x ** 3


class TestRemoteWorker(unittest.TestCase):
    def setUp(self):
        self.broker = th.Broker("--heartbeat-ms", "250", "--session-ttl-ms", "2000")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.broker.stop()

    def worker(self, *args, env=None):
        here = os.path.dirname(os.path.abspath(__file__))
        e = self.broker.env()
        e["PYTHONPATH"] = os.pathsep.join([here, e.get("PYTHONPATH", "")])
        e.update(env or {})
        p = subprocess.Popen([sys.executable, "-m", "mpbroker", "worker", *args], env=e,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(p)
        return p

    def stop(self, w):
        """SIGTERMs a worker started by worker(); it must exit 0. Its output."""
        w.send_signal(signal.SIGTERM)
        out, _ = w.communicate(timeout=20)
        self.assertEqual(w.returncode, 0, out)
        return out

    def wait_workers(self, m, n):
        from mpbroker import _mpb
        deadline = time.monotonic() + 20
        while True:
            stats = m._conn.client().call(_mpb.OP_POOL_STATS, None)
            if len(stats["workers"]) >= n:
                return stats
            self.assertLess(time.monotonic(), deadline, "workers did not register")
            time.sleep(0.02)

    def test_serves_a_pool_without_local_workers(self):
        w = self.worker("--endpoint", self.broker.endpoint, "--processes", "2")
        with mpbroker.Manager(self.broker.endpoint, authkey=self.broker.authkey) as m:
            self.wait_workers(m, 2)
            with m.Pool(0) as p:
                self.assertEqual(p.map(cube, range(40), 1), [x ** 3 for x in range(40)])
                pairs = set(p.map(pid_and_parent, range(40), 1))
                self.assertTrue(all(parent == w.pid for _, parent in pairs), pairs)
                self.assertNotIn(os.getpid(), {pid for pid, _ in pairs})
                self.assertEqual(sorted(p.imap_unordered(cube, range(10))),
                                 [x ** 3 for x in range(10)])
        out = self.stop(w)
        self.assertIn("serving python from %s with 2 process(es)" % self.broker.endpoint, out)

    def test_a_named_pool_is_served_by_workers_of_that_name_only(self):
        w = self.worker("--endpoint", self.broker.endpoint, "--processes", "1",
                        "--function", "render")
        other = self.worker("--endpoint", self.broker.endpoint, "--processes", "1")
        with mpbroker.Manager(self.broker.endpoint, authkey=self.broker.authkey) as m:
            stats = self.wait_workers(m, 2)
            with m.Pool(0, name="render") as p:
                self.assertEqual(p.map(cube, range(20), 1), [x ** 3 for x in range(20)])
                parents = {parent for _, parent in p.map(pid_and_parent, range(20), 1)}
                self.assertEqual(parents, {w.pid})  # never the worker of the default name
            from mpbroker import _mpb
            stats = m._conn.client().call(_mpb.OP_POOL_STATS, None)
            self.assertIn("render", str(stats))
            for bad in ("", " render", 7, b"render"):
                with self.assertRaises(TypeError):
                    m.Pool(0, name=bad)
        self.stop(w)
        self.stop(other)

    def test_import_a_script_for_main(self):
        d = tempfile.mkdtemp(prefix="mpbpy-")
        script = os.path.join(d, "job.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent("""\
                import sys
                import mpbroker

                def triple(x):
                    return 3 * x

                if __name__ == "__main__":
                    with mpbroker.Manager(sys.argv[1], authkey=sys.argv[2]) as m:
                        with m.Pool(0) as p:
                            print(p.map(triple, range(5)))
                """))
        w = self.worker("--endpoint", self.broker.endpoint, "--processes", "1", "--import",
                        script)
        out = subprocess.run([sys.executable, script, self.broker.endpoint,
                              self.broker.authkey.decode()], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(out.stdout, "[0, 3, 6, 9, 12]\n", out.stderr)
        self.stop(w)
        os.unlink(script)
        os.rmdir(d)

    def test_killed_worker_process_task_runs_again(self):
        w = self.worker("--endpoint", self.broker.endpoint, "--processes", "2", "--prefetch",
                        "0")
        d = tempfile.mkdtemp(prefix="mpbpy-")
        path = os.path.join(d, "first")
        with mpbroker.Manager(self.broker.endpoint, authkey=self.broker.authkey) as m:
            self.wait_workers(m, 2)
            with m.Pool(0) as p:
                r = p.apply_async(die_once, (path,))
                victim = started_pid(path)
                os.kill(victim, signal.SIGKILL)
                again = r.get(30)
                self.assertNotIn(again, (victim, -1))
                # the worker replaced the dead process: two serve again
                stats = self.wait_workers(m, 2)
                self.assertNotIn(victim, [x["pid"] for x in stats["workers"]])
                self.assertEqual(p.map(cube, range(20), 1), [x ** 3 for x in range(20)])
        self.stop(w)
        os.unlink(path)
        os.rmdir(d)

    def test_max_tasks_recycles_processes(self):
        w = self.worker("--endpoint", self.broker.endpoint, "--processes", "1", "--max-tasks",
                        "2", "--prefetch", "0")
        with mpbroker.Manager(self.broker.endpoint, authkey=self.broker.authkey) as m:
            with m.Pool(0) as p:
                pairs = [p.apply(pid_and_parent) for _ in range(6)]
        pids = [pid for pid, _ in pairs]
        self.assertEqual(len(set(pids)), 3, pids)
        self.assertEqual(pids[0], pids[1])
        self.assertEqual(pids[2], pids[3])
        self.assertEqual({parent for _, parent in pairs}, {w.pid})
        out = self.stop(w)
        self.assertGreaterEqual(out.count("exited (status 0)"), 2, out)  # the third: stopped

    def test_function_module_missing_on_the_worker(self):
        d = tempfile.mkdtemp(prefix="mpbpy-")
        with open(os.path.join(d, "only_here_mod.py"), "w") as f:
            f.write("def twice(x):\n    return 2 * x\n")
        sys.path.insert(0, d)
        try:
            import only_here_mod
            w = self.worker("--endpoint", self.broker.endpoint, "--processes", "1")
            with mpbroker.Manager(self.broker.endpoint, authkey=self.broker.authkey) as m:
                with m.Pool(0) as p:
                    with self.assertRaises(ModuleNotFoundError) as cm:
                        p.apply(only_here_mod.twice, (2,))
                    self.assertIn("only_here_mod", str(cm.exception))
                    self.assertEqual(p.apply(cube, (2,)), 8)  # the worker still serves
        finally:
            sys.path.remove(d)
            sys.modules.pop("only_here_mod", None)
            subprocess.run(["rm", "-rf", d])
        self.stop(w)

    def test_malformed_calls(self):
        """Calls not of the form [FUNCTION, ARG...] (as a C program could submit under the
        name "python") fail with a message; the worker goes on serving."""
        from mpbroker import _mpb
        w = self.worker("--endpoint", self.broker.endpoint, "--processes", "1")
        c = _mpb.Client(self.broker.endpoint, self.broker.authkey)
        h = _mpb.Pool(c)
        from mpbroker.worker import FUNCTIONS, function_key
        ref = pickle.dumps(cube, 4)
        key = function_key(ref)
        c0 = _mpb.Client(self.broker.endpoint, self.broker.authkey)
        c0.call(_mpb.OP_DICT_SET, FUNCTIONS, [key, ref])
        c0.close()
        bad = [[1, 2], [], [b"\x80not a pickle", 1], ["str, not bin"], [pickle.dumps(5, 4), 1],
               [b"\x00" + bytes(11), 1],
               [b"\x01" + key[1:], 5],                 # 6: a map batch that is no array
               [b"\x01" + key[1:], [1, 2], [3]],       # 7: a batch with two arguments
               [b"\x02" + key[1:], [[2], 3]],          # 8: a starmap item that is no array
               [b"\x01" + key[1:], [1, 2, 3]],         # 9: a good batch
               [b"\x01" + bytes(11), [1]]]             # 10: a batch of an unknown key
        for i, call in enumerate(bad):
            h.starmap("python", _mpb.packb([call]), 1, i)
        got = {}
        deadline = time.monotonic() + 30
        while len(got) < len(bad):
            self.assertLess(time.monotonic(), deadline, "no answer for %r" % got)
            h.poll(100)
            got.update((k, (ok, v)) for k, ok, v in h.take_done())
        for i in (0, 1, 3, 6, 7):
            self.assertEqual(got[i][0], False, got[i])
            self.assertEqual(got[i][1][0], _mpb.EREMOTE)
            self.assertIn("malformed call", got[i][1][1])
        from mpbroker.worker import TaskFailure
        for i in (2, 4, 5, 8, 10):  # no pickle, no callable, unknown key, a bad item
            self.assertTrue(got[i][0], got[i])
            self.assertIsInstance(got[i][1][0], TaskFailure)
        self.assertIsInstance(got[2][1][0].exception(), ValueError)  # "unsupported pickle protocol"
        self.assertIsInstance(got[4][1][0].exception(), TypeError)
        self.assertIsInstance(got[5][1][0].exception(), LookupError)
        self.assertIn("is not in python.functions", str(got[5][1][0].exception()))
        self.assertIsInstance(got[8][1][0].exception(), TypeError)
        self.assertEqual(got[9], (True, [[1, 8, 27]]))
        self.assertIsInstance(got[10][1][0].exception(), LookupError)
        h.free()
        c.close()
        with mpbroker.Manager(self.broker.endpoint, authkey=self.broker.authkey) as m:
            with m.Pool(0) as p:
                self.assertEqual(p.map(cube, range(5)), [0, 1, 8, 27, 64])
        self.stop(w)

    def test_bad_input(self):
        cases = [
            (["--endpoint", self.broker.endpoint, "--processes", "0"], {},
             "--processes must be at least 1"),
            (["--endpoint", self.broker.endpoint, "--import", "no_such_module_xyz"], {},
             "No module named 'no_such_module_xyz'"),
            (["--endpoint", self.broker.endpoint], {"MPB_AUTHKEY_FILE": "/nonexistent/key"},
             "/nonexistent/key"),
            (["--processes", "1"], {"MPB_ENDPOINT": ""}, "no broker"),
        ]
        for args, env, msg in cases:
            with self.subTest(args=args):
                w = self.worker(*args, env=env)
                out, _ = w.communicate(timeout=30)
                self.assertEqual(w.returncode, 2, out)
                self.assertIn(msg, out)
        keyfile = os.path.join(self.broker.dir, "wrongkey")
        with open(keyfile, "wb") as f:
            f.write(b"not the key")
        w = self.worker("--endpoint", self.broker.endpoint, "--authkey-file", keyfile)
        out, _ = w.communicate(timeout=30)
        self.assertEqual(w.returncode, 2, out)
        self.assertIn("auth", out.lower())
        # the broker still serves a good worker
        w = self.worker("--endpoint", self.broker.endpoint, "--processes", "1")
        with mpbroker.Manager(self.broker.endpoint, authkey=self.broker.authkey) as m:
            with m.Pool(0) as p:
                self.assertEqual(p.apply(cube, (3,)), 27)
        self.stop(w)


class TestBrokerCommand(unittest.TestCase):
    def test_broker_runs_mpbrokerd(self):
        out = subprocess.run([sys.executable, "-m", "mpbroker", "broker", "--version"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("mpbrokerd", out.stdout + out.stderr)
        d = tempfile.mkdtemp(prefix="mpbpy-")
        key = os.path.join(d, "key")
        with open(key, "wb") as f:
            f.write(b"k3y")
        ep = "ipc://%s/b.sock" % d
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPB_")}
        b = subprocess.Popen([sys.executable, "-m", "mpbroker", "broker", "--listen", ep,
                              "--authkey-file", key, "--endpoint-file",
                              os.path.join(d, "ep"), "--data-dir", os.path.join(d, "data"),
                              "--log-level", "warn"], env=env)
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(os.path.join(d, "ep")):
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.01)
            with mpbroker.Manager(ep, authkey=b"k3y") as m:
                dct = m.dict(name="via-cli")
                dct["a"] = 1
                self.assertEqual(dct["a"], 1)
        finally:
            b.terminate()
            b.wait(10)
            subprocess.run(["rm", "-rf", d])
        out = subprocess.run([sys.executable, "-m", "mpbroker"], capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(out.returncode, 2)
        self.assertIn("python3 -m mpbroker worker", out.stderr)


if __name__ == "__main__":
    unittest.main()
