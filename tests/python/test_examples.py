"""examples/python: each example runs and prints exactly what it should; the single-machine
ones print the same with multiprocessing.Manager() put back in place of mpbroker.Manager()
(the only line they change); the two-host one runs as separate programs against a broker on
a TCP address, consumer first or producer first, and through its run.sh."""
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

import th

EXAMPLES = os.path.join(th.SOURCE, "examples", "python")

EXPECTED = {
    "manager_dict_list.py": "{1: '1', '2': 2, 0.25: None}\n[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]\n",
    "queue_producer_consumer.py": "consumed 1000 items, total 500500\n",
    "joinable_queue.py": "all 20 jobs done\n[(0, 0), (1, 1), (2, 4), (3, 9), (4, 16)]\n",
    "lock_counter.py": "counter = 4000\n",
    "event.py": "event set: False\nevent set: True\nwaiter 0 saw the event\n"
                "waiter 1 saw the event\nwaiter 2 saw the event\n",
    "pool_apply_map.py": "apply_async: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"
                         "callbacks saw: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"
                         "map: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"
                         "map chunksize 4: %d\n"
                         "raised: ValueError negative: -1\n" % sum(x * x for x in range(1000)),
}

# Examples whose classic form (multiprocessing.Manager()) is run beside them: all but the Pool,
# whose callbacks a classic manager's PoolProxy would run in the manager's process.
CLASSIC = [n for n in EXPECTED if n != "pool_apply_map.py"]


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


class TestExamples(unittest.TestCase):
    def test_each_example_prints_what_it_should(self):
        self.assertEqual(sorted(n for n in os.listdir(EXAMPLES) if n.endswith(".py")),
                         sorted(EXPECTED))
        for name, want in EXPECTED.items():
            with self.subTest(example=name):
                out = run([sys.executable, os.path.join(EXAMPLES, name)])
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertEqual(out.stdout, want)

    def test_classic_manager_prints_the_same(self):
        d = tempfile.mkdtemp(prefix="mpbpy-")
        try:
            for name in CLASSIC:
                with self.subTest(example=name):
                    with open(os.path.join(EXAMPLES, name)) as f:
                        src = f.read()
                    # the one line the example changed, changed back
                    classic, n = re.subn(r"mpbroker\.Manager\(\)(.*)  # was: "
                                         r"multiprocessing\.Manager\(\)",
                                         r"multiprocessing.Manager()\1", src)
                    self.assertEqual(n, 1, "%s changes more or less than one line" % name)
                    classic = "import multiprocessing\n" + classic
                    path = os.path.join(d, name)
                    with open(path, "w") as f:
                        f.write(classic)
                    out = run([sys.executable, path])
                    self.assertEqual(out.returncode, 0, out.stderr)
                    self.assertEqual(out.stdout, EXPECTED[name])
                    os.unlink(path)
        finally:
            os.rmdir(d)


class TestTwoHosts(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mpbpy-")
        self.key = os.path.join(self.dir, "key")
        with open(self.key, "w") as f:
            f.write(os.urandom(16).hex())
        epfile = os.path.join(self.dir, "endpoint")
        benv = {k: v for k, v in os.environ.items() if not k.startswith("MPB_")}
        self.broker = subprocess.Popen(
            [sys.executable, "-m", "mpbroker", "broker", "--listen", "tcp://127.0.0.1:0",
             "--authkey-file", self.key, "--endpoint-file", epfile, "--data-dir",
             os.path.join(self.dir, "data"), "--log-level", "warn"], env=benv)
        deadline = time.monotonic() + 10
        self.endpoint = ""
        while not self.endpoint:
            self.assertLess(time.monotonic(), deadline, "the broker did not start")
            time.sleep(0.01)
            if os.path.exists(epfile):
                with open(epfile) as f:
                    self.endpoint = f.read().strip()
        self.assertTrue(self.endpoint.startswith("tcp://127.0.0.1:"), self.endpoint)
        self.env = dict(os.environ, MPB_AUTHKEY_FILE=self.key)
        self.env.pop("MPB_ENDPOINT", None)

    def tearDown(self):
        self.broker.terminate()
        self.broker.wait(10)
        subprocess.run(["rm", "-rf", self.dir])

    def start(self, prog, *args):
        return subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "two_hosts", prog),
                                 self.endpoint, *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def test_consumer_first_then_producer_first(self):
        for order in (("consumer.py", "producer.py"), ("producer.py", "consumer.py")):
            with self.subTest(first=order[0]):
                procs = {}
                for prog in order:
                    procs[prog] = self.start(prog, *(["50"] if prog == "producer.py" else []))
                    time.sleep(0.3)
                outs = {prog: p.communicate(timeout=90) for prog, p in procs.items()}
                for prog, p in procs.items():
                    self.assertEqual(p.returncode, 0, outs[prog][1])
                total = sum(i * i for i in range(1, 51))
                self.assertEqual(outs["consumer.py"][0],
                                 "consumer: 50 jobs, sum of squares %d\n" % total)
                self.assertEqual(outs["producer.py"][0],
                                 "producer: sent 50 jobs\n"
                                 "producer: the consumer says (50, %d)\n" % total)

    def test_run_sh(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPB_")}
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        out = run(["sh", os.path.join(EXAMPLES, "two_hosts", "run.sh")], env=env)
        self.assertEqual(out.returncode, 0, out.stderr)
        total = sum(i * i for i in range(1, 101))
        self.assertEqual(out.stdout, "producer: sent 100 jobs\n"
                                     "producer: the consumer says (100, %d)\n"
                                     "consumer: 100 jobs, sum of squares %d\n" % (total, total))


if __name__ == "__main__":
    unittest.main()
