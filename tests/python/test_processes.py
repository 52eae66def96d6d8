"""Proxies across processes and threads: a shared counter under a Lock from 8 processes, proxies
passed to fork and spawn children, a Queue consumer in another process, a holder of a Lock
SIGKILLed (the broker frees the lock at the session TTL), nested proxies, threads as owners."""
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import mpbroker


def count(d, lock, n):
    for _ in range(n):
        with lock:
            d["n"] += 1


def child_writes(d, l, tag):
    d[tag] = os.getpid()
    l.append((tag, os.getpid()))


def consume(q, out):
    total = 0
    while True:
        item = q.get()
        if item is None:
            break
        total += item[1]
    out["total"] = total


def hold_lock(lock, ev):
    lock.acquire()
    ev.set()
    time.sleep(60)


def get_interrupted(q, ready, out):
    ready.set()
    try:
        q.get()
        out["first"] = "got an item"
    except KeyboardInterrupt:
        out["first"] = "interrupted"
    out["after"] = q.get(timeout=30)  # a new session, and no item lost to the abandoned get


def barrier_party(b, out, tag):
    out[tag] = b.wait(30)


def wait_for_ready(cond, ns, ev, out, tag):
    with cond:
        ev.set()
        out[tag] = cond.wait_for(lambda: ns.ready, timeout=30)


class ProcessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A short TTL for the killed holder (a loaded machine still heartbeats within it).
        cls.m = mpbroker.Manager(broker_args=["--session-ttl-ms", "2000", "--heartbeat-ms",
                                              "200"])

    @classmethod
    def tearDownClass(cls):
        cls.m.shutdown()

    def test_counter_8x1000(self):
        d = self.m.dict(n=0)
        lock = self.m.Lock()
        ps = [multiprocessing.Process(target=count, args=(d, lock, 1000)) for _ in range(8)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(120)
            self.assertEqual(p.exitcode, 0)
        self.assertEqual(d["n"], 8000)
        self.assertFalse(lock.locked())

    def test_fork_and_spawn_children(self):
        d, l = self.m.dict(), self.m.list()
        for method in ("fork", "spawn"):
            ctx = multiprocessing.get_context(method)
            p = ctx.Process(target=child_writes, args=(d, l, method))
            p.start()
            p.join(60)
            self.assertEqual(p.exitcode, 0, method)
            self.assertEqual(d[method], p.pid)
        self.assertEqual(sorted(l[:]), sorted([("fork", d["fork"]), ("spawn", d["spawn"])]))

    def test_queue_consumer_process(self):
        q, out = self.m.Queue(), self.m.dict()
        p = multiprocessing.get_context("spawn").Process(target=consume, args=(q, out))
        p.start()
        for i in range(500):
            q.put(("item", i))
        q.put(None)
        p.join(60)
        self.assertEqual(p.exitcode, 0)
        self.assertEqual(out["total"], sum(range(500)))
        self.assertTrue(q.empty())

    def test_proxies_through_a_queue_to_an_unrelated_program(self):
        # A program that shares no ancestry with this one: it has the broker and the key only
        # from its environment, takes the proxies from a named queue and uses them.
        d, lock = self.m.dict(), self.m.Lock()
        q = self.m.Queue(name="handoff")
        q.put((d, lock))
        fd, keyfile = tempfile.mkstemp(prefix="mpbkey-")
        try:
            os.write(fd, self.m.authkey)
            os.close(fd)
            env = dict(os.environ, MPB_ENDPOINT=self.m.address, MPB_AUTHKEY_FILE=keyfile)
            code = ("import mpbroker\n"
                    "m = mpbroker.connect()\n"
                    "d, lock = m.Queue(name='handoff').get(timeout=30)\n"
                    "with lock:\n"
                    "    d['from'] = 'another program'\n"
                    "print(type(d).__name__, type(lock).__name__)\n")
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                               text=True, timeout=120)
        finally:
            os.unlink(keyfile)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["DictProxy", "LockProxy"])
        self.assertEqual(d["from"], "another program")
        self.assertTrue(lock.acquire(timeout=5))  # given back by the other program
        lock.release()

    def test_sigkilled_holder_releases_lock(self):
        lock, ev = self.m.Lock(), self.m.Event()
        p = multiprocessing.get_context("fork").Process(target=hold_lock, args=(lock, ev))
        p.start()
        self.assertTrue(ev.wait(30))
        self.assertFalse(lock.acquire(timeout=0.2))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        t = time.monotonic()
        self.assertTrue(lock.acquire(timeout=20))  # TTL 2 s; a generous bound
        self.assertLess(time.monotonic() - t, 10)
        lock.release()

    def test_ctrl_c_interrupts_a_blocked_get(self):
        q, ready, out = self.m.Queue(), self.m.Event(), self.m.dict()
        p = multiprocessing.get_context("fork").Process(target=get_interrupted,
                                                        args=(q, ready, out))
        p.start()
        self.assertTrue(ready.wait(30))
        time.sleep(0.3)  # parked in the broker by now
        os.kill(p.pid, signal.SIGINT)
        for _ in range(100):
            if "first" in out:
                break
            time.sleep(0.05)
        self.assertEqual(out.get("first"), "interrupted")
        q.put("item")
        p.join(30)
        self.assertEqual(p.exitcode, 0)
        self.assertEqual(out["after"], "item")

    def test_barrier_indexes_across_processes(self):
        b, out = self.m.Barrier(3), self.m.dict()
        ctx = multiprocessing.get_context("fork")
        ps = [ctx.Process(target=barrier_party, args=(b, out, i)) for i in range(2)]
        for p in ps:
            p.start()
        out["main"] = b.wait(30)
        for p in ps:
            p.join(30)
            self.assertEqual(p.exitcode, 0)
        self.assertEqual(sorted(out.values()), [0, 1, 2])
        self.assertEqual((b.n_waiting, b.broken), (0, False))

    def test_condition_across_processes(self):
        cond, ns, out = self.m.Condition(), self.m.Namespace(ready=False), self.m.dict()
        evs = [self.m.Event() for _ in range(2)]
        ctx = multiprocessing.get_context("spawn")
        ps = [ctx.Process(target=wait_for_ready, args=(cond, ns, evs[i], out, i))
              for i in range(2)]
        for p in ps:
            p.start()
        for ev in evs:
            self.assertTrue(ev.wait(30))
        with cond:  # both are waiting now (they released the lock in wait)
            ns.ready = True
            cond.notify_all()
        for p in ps:
            p.join(30)
            self.assertEqual(p.exitcode, 0)
        self.assertEqual(out.copy(), {0: True, 1: True})

    def test_nested_proxy(self):
        d = self.m.dict()
        inner = self.m.list([1])
        d["inner"] = inner
        back = d["inner"]
        self.assertIsInstance(back, mpbroker.ListProxy)
        back.append(2)
        self.assertEqual(inner[:], [1, 2])
        p = multiprocessing.get_context("spawn").Process(target=child_writes,
                                                         args=(d, d["inner"], "nested"))
        p.start()
        p.join(60)
        self.assertEqual(inner[-1], ("nested", p.pid))

    def test_threads_are_owners(self):
        lock = self.m.Lock()
        got = []

        def taker():
            got.append(lock.acquire(timeout=10))
            lock.release()

        lock.acquire()
        t = threading.Thread(target=taker)
        t.start()
        time.sleep(0.1)
        self.assertEqual(got, [])  # blocked: another owner holds it
        lock.release()
        t.join(10)
        self.assertEqual(got, [True])

    def test_queue_get_timeout_from_thread(self):
        q = self.m.Queue()
        results = []

        def getter():
            results.append(q.get(timeout=10))

        ts = [threading.Thread(target=getter) for _ in range(4)]
        for t in ts:
            t.start()
        for i in range(4):
            q.put(i)
        for t in ts:
            t.join(10)
        self.assertEqual(sorted(results), [0, 1, 2, 3])
        with self.assertRaises(queue.Empty):
            q.get(timeout=0.05)


if __name__ == "__main__":
    unittest.main()
