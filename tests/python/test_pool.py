"""Pool: the same calls on multiprocessing.Pool(2) and on mpbroker.Manager().Pool(2) give the
same results and raise the same exception types, for every public method of Pool and
AsyncResult; plus what only mpbroker's does: a task whose worker is SIGKILLed runs again
elsewhere, a task's exception comes back with its type and the remote traceback, a pool with
an initializer, maxtasksperchild, and the close/join/terminate life cycle.

One call differs on purpose: map(f, items, chunksize=0) raises ValueError here, where
multiprocessing returns [None] * len(items) without running anything.

The functions are at module level here, so the workers (forked from this process) find them
by reference as multiprocessing's do."""
import multiprocessing
import multiprocessing.pool
import os
import pickle
import signal
import tempfile
import threading
import time
import traceback
import unittest

import mpbroker
from mpbroker.pool import RemoteError


class CustomError(Exception):
    pass


class TwoArgError(Exception):
    """Its pickle does not load (it needs two arguments): it comes back by type and text."""

    def __init__(self, a, b):
        super().__init__("%s/%s" % (a, b))


def square(x):
    return x * x


def add(a, b=0, *, c=0):
    return a + b + c


def fail_on(x, bad=3):
    if x == bad:
        raise CustomError("bad item %r" % x)
    return x * 10


def divide(a, b):
    return a / b


def raise_key(k):
    raise KeyError(k)


def raise_two(x):
    raise TwoArgError(x, x + 1)


def sleep_for(t):
    time.sleep(t)
    return t


def unpicklable(x):
    return threading.Lock()


def identity(x):
    return x


def fail_at(x, bad=(30000, 45000)):
    if x in bad:
        raise KeyError(x)
    return x


def big(x):
    return "x" * 300000


def getpid(_=None):
    return os.getpid()


_initialised = None


def set_global(v):
    global _initialised
    _initialised = v


def get_global(_=None):
    return _initialised


def die_once(path):
    """The first run writes its pid and waits to be killed; a second run (elsewhere) returns
    its pid."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return os.getpid()
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    time.sleep(60)
    return -1


def gen(n):
    for i in range(n):
        yield i


def failing_gen():
    yield 1
    yield 2
    raise ValueError("input broke")


def started_pid(path, timeout=20):
    """The pid die_once() wrote to path, once it has."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        if text:
            return int(text)
        if time.monotonic() > deadline:
            raise AssertionError("the task never started")
        time.sleep(0.01)


def _collect(async_call):
    """Runs async_call(callback, error_callback) -> AsyncResult; what the callbacks saw and
    what the result says."""
    seen = []
    r = async_call(lambda v: seen.append(("cb", v)), lambda e: seen.append(("ecb", type(e))))
    r.wait(30)
    out = [r.ready(), r.successful()]
    try:
        out.append(("value", r.get(30)))
    except Exception as e:
        out.append(("raised", type(e)))
    return out + seen


def _not_ready(p):
    r = p.apply_async(sleep_for, (1.0,))
    out = [r.ready()]
    try:
        r.successful()
    except ValueError:
        out.append("ValueError")
    try:
        r.get(0.05)
    except multiprocessing.TimeoutError:
        out.append("TimeoutError")
    out.append(r.wait(0.01))  # None, as multiprocessing's
    out.append(r.get(30))
    return out


def _imap_next_timeout(p):
    it = p.imap(sleep_for, [1.0])
    try:
        it.next(0.05)
    except multiprocessing.TimeoutError:
        return ["TimeoutError", it.next(30)]
    return ["no timeout"]


def _imap_with_failure(p):
    out = []
    it = p.imap(fail_on, range(6))
    for _ in range(6):
        try:
            out.append(next(it))
        except CustomError:
            out.append("CustomError")
    try:
        next(it)
    except StopIteration:
        out.append("end")
    return out


def _imap_bad_input(p):
    out = []
    try:
        for v in p.imap(square, failing_gen()):
            out.append(v)
    except ValueError as e:
        out.append(("ValueError", str(e)))
    return out


# (label, step(pool) -> result); each step runs on both pools, in this order.
STEPS = [
    ("apply", lambda p: p.apply(square, (7,))),
    ("apply kwds", lambda p: p.apply(add, (1, 2), {"c": 4})),
    ("apply no args", lambda p: type(p.apply(getpid)).__name__),
    ("apply raises", lambda p: p.apply(fail_on, (3,))),
    ("apply builtin raises", lambda p: p.apply(divide, (1, 0))),
    ("apply KeyError", lambda p: p.apply(raise_key, ("k",))),
    ("apply builtin fn", lambda p: p.apply(pow, (2, 10))),
    ("apply tuple", lambda p: p.apply(identity, ((1, "a", None),))),
    ("apply set", lambda p: p.apply(identity, ({1, 2},))),
    ("apply big int", lambda p: p.apply(square, (2 ** 70,))),
    ("apply bytes", lambda p: p.apply(identity, (b"\x00\xff",))),
    ("apply nested", lambda p: p.apply(identity, ({"a": [1, (2, 3)], 4: {5}},))),
    ("apply lambda", lambda p: p.apply(lambda: 1)),
    ("apply unpicklable result", lambda p: p.apply(unpicklable, (1,))),
    ("apply_async", lambda p: _collect(lambda cb, ecb: p.apply_async(
        square, (5,), callback=cb, error_callback=ecb))),
    ("apply_async raises", lambda p: _collect(lambda cb, ecb: p.apply_async(
        fail_on, (3,), callback=cb, error_callback=ecb))),
    ("async not ready", _not_ready),
    ("map", lambda p: p.map(square, range(50))),
    ("map chunksize 1", lambda p: p.map(square, range(20), 1)),
    ("map chunksize 7", lambda p: p.map(add, range(30), chunksize=7)),
    ("map generator", lambda p: p.map(square, gen(10))),
    ("map empty", lambda p: p.map(square, [])),
    ("map raises", lambda p: p.map(fail_on, range(10))),
    ("map_async", lambda p: _collect(lambda cb, ecb: p.map_async(
        square, range(10), callback=cb, error_callback=ecb))),
    ("map_async raises", lambda p: _collect(lambda cb, ecb: p.map_async(
        fail_on, range(10), 2, callback=cb, error_callback=ecb))),
    ("map_async empty", lambda p: _collect(lambda cb, ecb: p.map_async(
        square, [], callback=cb, error_callback=ecb))),
    ("starmap", lambda p: p.starmap(add, [(1, 2), (3, 4), (5,)])),
    ("starmap chunksize", lambda p: p.starmap(pow, [(2, i) for i in range(20)], 3)),
    ("starmap raises", lambda p: p.starmap(divide, [(1, 1), (1, 0)])),
    ("starmap_async", lambda p: _collect(lambda cb, ecb: p.starmap_async(
        add, [(1, 1), (2, 2)], callback=cb, error_callback=ecb))),
    ("starmap_async raises", lambda p: _collect(lambda cb, ecb: p.starmap_async(
        divide, [(1, 0)], callback=cb, error_callback=ecb))),
    ("imap", lambda p: list(p.imap(square, range(30)))),
    ("imap chunksize", lambda p: list(p.imap(square, range(30), 4))),
    ("imap generator", lambda p: list(p.imap(square, gen(12), 5))),
    ("imap empty", lambda p: list(p.imap(square, []))),
    ("imap next timeout", _imap_next_timeout),
    ("imap with a failure", _imap_with_failure),
    ("imap bad input", _imap_bad_input),
    ("imap chunksize 0", lambda p: p.imap(square, range(3), 0)),
    ("imap_unordered", lambda p: sorted(p.imap_unordered(square, range(30)))),
    ("imap_unordered chunksize", lambda p: sorted(p.imap_unordered(square, range(30), 8))),
    ("imap_unordered raises", lambda p: sorted(p.imap_unordered(fail_on, range(6)))),
    ("join while running", lambda p: p.join()),
]


def _outcome(step, pool):
    try:
        return ("ok", step(pool))
    except Exception as e:
        return ("raised", type(e))


class TestAgainstMultiprocessing(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mgr = mpbroker.Manager()

    @classmethod
    def tearDownClass(cls):
        cls.mgr.shutdown()

    def test_steps(self):
        mine = self.mgr.Pool(2)
        theirs = multiprocessing.Pool(2)
        try:
            for label, step in STEPS:
                with self.subTest(step=label):
                    want = _outcome(step, theirs)
                    got = _outcome(step, mine)
                    self.assertEqual(got, want)
        finally:
            mine.terminate()
            theirs.terminate()

    def test_life_cycle(self):
        """close, join, apply after close, context manager, terminate: same outcomes."""
        def cycle(make):
            out = []
            p = make(2)
            r = p.map_async(sleep_for, [0.2, 0.2])
            p.close()
            out.append(_outcome(lambda q: q.apply(square, (1,)), p))
            out.append(_outcome(lambda q: q.map(square, [1]), p))
            out.append(_outcome(lambda q: q.imap(square, [1]), p))
            p.join()
            out.append(r.ready())
            out.append(r.get())
            with make(2) as q:
                out.append(q.map(square, range(4)))
            out.append(_outcome(lambda x: x.apply(square, (1,)), q))
            out.append(_outcome(lambda x: x.__enter__(), q))
            t = make(1)
            t.terminate()
            out.append(_outcome(lambda x: x.apply(square, (1,)), t))
            t.join()
            out.append(_outcome(lambda x: pickle.dumps(x), t))
            return out

        self.assertEqual(cycle(self.mgr.Pool), cycle(multiprocessing.Pool))

    def test_initializer(self):
        for make in (self.mgr.Pool, multiprocessing.Pool):
            with make(2, initializer=set_global, initargs=(42,)) as p:
                self.assertEqual(p.map(get_global, range(8)), [42] * 8)
            with self.assertRaises(TypeError):
                make(1, initializer=5)

    def test_spawn_context(self):
        """Workers started by spawn (not fork) find this module's functions and run the
        initializer, as multiprocessing's do."""
        ctx = multiprocessing.get_context("spawn")
        with self.mgr.Pool(2, initializer=set_global, initargs=("spawned",), context=ctx) as p:
            self.assertEqual(p.map(get_global, range(4)), ["spawned"] * 4)
            self.assertEqual(p.starmap(add, [(1, 2), (3, 4)]), [3, 7])
            self.assertTrue(all(pr._popen.__class__.__name__ == "Popen" and
                                pr._popen.method == "spawn" for pr in p._procs))

    def test_maxtasksperchild(self):
        with self.mgr.Pool(1, maxtasksperchild=2) as p:
            pids = [p.apply(getpid) for _ in range(6)]
        self.assertEqual(len(set(pids)), 3, pids)
        for i in (0, 2, 4):
            self.assertEqual(pids[i], pids[i + 1])


class TestMpbrokerPool(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mgr = mpbroker.Manager(
            broker_args=["--heartbeat-ms", "250", "--session-ttl-ms", "2000"])

    @classmethod
    def tearDownClass(cls):
        cls.mgr.shutdown()

    def test_exception_type_and_traceback(self):
        with self.mgr.Pool(1) as p:
            with self.assertRaises(CustomError) as cm:
                p.apply(fail_on, (3,))
            e = cm.exception
            self.assertEqual(e.args, ("bad item 3",))
            note = "\n".join(e.__notes__)
            self.assertIn("Remote traceback", note)
            self.assertIn("in fail_on", note)
            self.assertIn('raise CustomError("bad item %r" % x)', note)
            self.assertIn(__file__.rstrip("c"), note)
            # and as multiprocessing.Pool gives it: the cause, printed above the exception
            self.assertIsInstance(e.__cause__, multiprocessing.pool.RemoteTraceback)
            self.assertIn("in fail_on", str(e.__cause__))
            printed = "".join(traceback.format_exception(e))
            self.assertIn("in fail_on", printed)
            self.assertIn("bad item 3", printed)
            # a pickle that does not load: the type by name, the text, the traceback
            with self.assertRaises(TwoArgError) as cm:
                p.apply(raise_two, (1,))
            self.assertEqual(str(cm.exception), "1/2")
            self.assertIn("in raise_two", "\n".join(cm.exception.__notes__))
            # a map fails with its first failing item, as multiprocessing's
            with self.assertRaises(CustomError) as cm:
                p.starmap(fail_on, [(1, 1), (5, 5), (2, 2)], 1)
            self.assertEqual(cm.exception.args, ("bad item 1",))
            # the pool still serves
            self.assertEqual(p.map(square, range(5)), [0, 1, 4, 9, 16])

    def test_worker_killed_task_runs_again(self):
        d = tempfile.mkdtemp(prefix="mpbpool-")
        path = os.path.join(d, "first")
        with self.mgr.Pool(2) as p:
            workers = {p.apply(getpid) for _ in range(20)}
            r = p.apply_async(die_once, (path,))
            victim = started_pid(path)
            self.assertIn(victim, {pr.pid for pr in p._procs})
            os.kill(victim, signal.SIGKILL)
            rerun = r.get(30)
            self.assertNotEqual(rerun, victim)
            self.assertNotEqual(rerun, -1)
            self.assertNotEqual(rerun, os.getpid())
            # the dead worker was replaced: the pool has 2 live workers serving again
            deadline = time.monotonic() + 20
            while len({pr.pid for pr in p._procs if pr.is_alive()} - {victim}) < 2:
                self.assertLess(time.monotonic(), deadline, "the dead worker was not replaced")
                time.sleep(0.05)
            self.assertEqual(p.map(square, range(100), 1), [x * x for x in range(100)])
        os.unlink(path)
        os.rmdir(d)
        self.assertTrue(workers)

    def test_callbacks_without_waiting(self):
        """Callbacks run though nobody waits on the results (the result handler reads them)."""
        got = []
        done = threading.Event()
        with self.mgr.Pool(2) as p:
            for i in range(10):
                p.apply_async(square, (i,), callback=lambda v: (got.append(v), len(got) == 10
                                                                and done.set()))
            self.assertTrue(done.wait(30))
        self.assertEqual(sorted(got), [i * i for i in range(10)])

    def test_many_threads_share_a_pool(self):
        results = {}
        with self.mgr.Pool(2) as p:
            def run(t):
                results[t] = [p.apply(add, (t, i)) for i in range(20)] + p.map(square, range(t))
            ts = [threading.Thread(target=run, args=(t,)) for t in range(6)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
        for t in range(6):
            self.assertEqual(results[t], [t + i for i in range(20)] + [x * x for x in range(t)])

    def test_terminate_cancels_outstanding(self):
        p = self.mgr.Pool(1)
        r = p.map_async(sleep_for, [0.5] * 6, 1)
        time.sleep(0.2)
        t0 = time.monotonic()
        p.terminate()
        self.assertLess(time.monotonic() - t0, 10)
        self.assertTrue(r.ready())
        self.assertFalse(r.successful())
        with self.assertRaises(RemoteError):
            r.get(0)
        p.join()
        self.assertTrue(all(not pr.is_alive() for pr in p._procs))

    def test_imap_long_input_is_read_lazily(self):
        """imap over a long generator: results in order, and the input is read only a window
        ahead of the results taken, not all at once."""
        pulled = []

        def source(n):
            for i in range(n):
                pulled.append(i)
                yield i

        with self.mgr.Pool(2) as p:
            it = p.imap(square, source(20000), 10)
            first = [next(it) for _ in range(5)]
            ahead = len(pulled)
            rest = list(it)
        self.assertEqual(first + rest, [i * i for i in range(20000)])
        self.assertLess(ahead, 20000 // 2, "the input was read ahead in full")
        self.assertEqual(len(pulled), 20000)

    def test_long_map_in_parts(self):
        """A long map travels in several parts: its results come back whole and in order, and
        it fails with its first failing item whichever part that is in."""
        with self.mgr.Pool(2) as p:
            self.assertEqual(p.map(square, range(50000), 7), [x * x for x in range(50000)])
            self.assertEqual(p.starmap(add, [(i, i) for i in range(20000)]),
                             [2 * i for i in range(20000)])
            with self.assertRaises(KeyError) as cm:
                p.map(fail_at, range(50000), 10)
            self.assertEqual(cm.exception.args, (30000,))
            with self.assertRaises(KeyError) as cm:
                p.map_async(fail_at, reversed(range(50000)), 10).get(60)
            self.assertEqual(cm.exception.args, (45000,))

    def test_manager_shutdown_ends_the_pool(self):
        m = mpbroker.Manager()
        p = m.Pool(2)
        self.assertEqual(p.map(square, range(5)), [0, 1, 4, 9, 16])
        procs = list(p._procs)
        r = p.apply_async(sleep_for, (30,))
        m.shutdown()
        with self.assertRaises(RemoteError) as cm:
            r.get(20)
        self.assertEqual(str(cm.exception), "the pool's manager was shut down")
        for pr in procs:
            pr.join(20)
            self.assertFalse(pr.is_alive())
        with self.assertRaises(ValueError):
            p.apply(square, (1,))
        p.join()

    def test_bad_input(self):
        with self.mgr.Pool(1) as p:
            with self.assertRaises(ValueError):
                p.map(square, range(3), -1)
            with self.assertRaises(TypeError):
                p.starmap(add, [1, 2])
            with self.assertRaises(TypeError):
                p.apply(square, 5)
            with self.assertRaises(TypeError):
                p.map(square, 5)
            with self.assertRaises(ValueError):
                self.mgr.Pool(-1)
            # a batch of results past the broker's max-value (1m): a clear error, and the
            # same map in smaller batches goes through
            with self.assertRaises(RemoteError) as cm:
                p.map(big, range(8), 4)
            self.assertIn("> max_value 1048576", str(cm.exception))
            self.assertEqual(p.map(big, range(8), 1), [big(0)] * 8)
            self.assertEqual(p.apply(square, (9,)), 81)


if __name__ == "__main__":
    unittest.main()
