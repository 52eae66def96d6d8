"""Objects made without name= are anonymous on the broker (obj.new): they live while some proxy
in any process refers to them, and are deleted after the last one goes or the manager shuts
down. The broker here deletes at once (--anon-grace-ms 0)."""
import gc
import time
import multiprocessing
import unittest

import mpbroker
from mpbroker import _mpb

import th


def exists(c, path):
    try:
        c.call(_mpb.OP_OBJ_INFO, path)
        return True
    except _mpb.Error as e:
        if e.args[0] == _mpb.ENOOBJ:
            return False
        raise


def keep_and_report(l, started, release):
    started.set()
    release.wait(30)
    l.append("child was here")


class AnonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.b = th.Broker("--anon-grace-ms", "0")
        cls.c = _mpb.Client(cls.b.endpoint, cls.b.authkey)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.b.stop()

    def manager(self):
        return mpbroker.Manager(self.b.endpoint, authkey=self.b.authkey)

    def test_every_kind_is_anonymous_and_dies_with_its_proxy(self):
        m = self.manager()
        makers = [m.dict, m.list, m.Queue, m.JoinableQueue, m.Lock, m.RLock, m.Semaphore,
                  m.BoundedSemaphore, m.Condition, m.Event, lambda: m.Barrier(2),
                  lambda: m.Value("i", 1), lambda: m.Array("i", [1]), m.Namespace]
        for make in makers:
            p = make()
            path = p._path()
            self.assertTrue(p.name.startswith("~"), path)
            self.assertTrue(exists(self.c, path), path)
            del p
            gc.collect()
            self.assertFalse(exists(self.c, path), path)
        m.shutdown()

    def test_shutdown_deletes(self):
        m = self.manager()
        d, q = m.dict(a=1), m.Queue()
        paths = [d._path(), q._path()]
        self.assertTrue(all(exists(self.c, p) for p in paths))
        m.shutdown()
        self.assertFalse(any(exists(self.c, p) for p in paths))

    def test_named_objects_stay(self):
        m = self.manager()
        m.dict(name="anon_named")["k"] = 1
        m.shutdown()
        self.assertTrue(exists(self.c, "dict/anon_named"))

    def test_child_keeps_it_alive(self):
        m = self.manager()
        l = m.list()
        path = l._path()
        ctx = multiprocessing.get_context("spawn")
        started, release = m.Event(name="anon_started"), m.Event(name="anon_release")
        p = ctx.Process(target=keep_and_report, args=(l, started, release))
        p.start()
        self.assertTrue(started.wait(30))
        del l
        gc.collect()
        self.assertTrue(exists(self.c, path))  # the child's proxy holds it
        release.set()
        p.join(30)
        self.assertEqual(p.exitcode, 0)
        self.assertEqual(self.c.call(_mpb.OP_LIST_GET, path.split("/")[1], [0]),
                         "child was here")
        m.shutdown()  # the pin of the spawn pickle goes with the manager
        self.assertFalse(exists(self.c, path))

    def test_fork_child_holds_its_own(self):
        # A grace period, as in real use: the parent gives its reference back as soon as
        # Process.start() drops the arguments, the child takes its own just after the fork.
        b = th.Broker("--anon-grace-ms", "300")
        try:
            m = mpbroker.Manager(b.endpoint, authkey=b.authkey)
            started, release = m.Event(name="fstarted"), m.Event(name="frelease")
            p = multiprocessing.get_context("fork").Process(
                target=keep_and_report, args=(m.list(), started, release))
            p.start()
            self.assertTrue(started.wait(30))
            gc.collect()
            time.sleep(0.6)  # past the grace period of the parent's reference
            release.set()
            p.join(30)
            self.assertEqual(p.exitcode, 0)  # the list was still there for the child
            m.shutdown()
        finally:
            b.stop()

    def test_nested_proxy_outlives_its_maker(self):
        m = self.manager()
        d = m.dict()
        d["inner"] = m.list([1, 2])  # the list's only proxy is gone at once
        gc.collect()
        self.assertEqual(d["inner"][:], [1, 2])
        m.shutdown()


if __name__ == "__main__":
    unittest.main()
