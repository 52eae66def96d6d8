"""Bad input from Python: unpicklable values, values past max_value, wrong types for names and
addresses, a wrong authkey. Each is a clear Python exception, nothing is half-written, and the
broker keeps serving."""
import os
import pickle
import queue
import threading
import unittest

import mpbroker

import th


class BadInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.b = th.Broker("--max-value", "1k")
        cls.m = mpbroker.Manager(cls.b.endpoint, authkey=cls.b.authkey)

    @classmethod
    def tearDownClass(cls):
        cls.m.shutdown()
        cls.b.stop()

    def test_unpicklable(self):
        d, l, q = self.m.dict(a=1), self.m.list([1]), self.m.Queue()
        for bad in (lambda: 1, threading.Lock(), [1, (lambda: 2)]):
            with self.assertRaises((pickle.PicklingError, TypeError, AttributeError)):
                d["x"] = bad
            with self.assertRaises((pickle.PicklingError, TypeError, AttributeError)):
                l.extend([2, bad])
            with self.assertRaises((pickle.PicklingError, TypeError, AttributeError)):
                q.put(bad)
        self.assertEqual(d.copy(), {"a": 1})
        self.assertEqual(l[:], [1])
        self.assertTrue(q.empty())

    def test_past_max_value(self):
        d, l, q, ns = self.m.dict(), self.m.list(), self.m.Queue(), self.m.Namespace()
        big = b"x" * 2000
        with self.assertRaisesRegex(ValueError, "max_value"):
            d["big"] = big
        with self.assertRaisesRegex(ValueError, "max_value"):
            d["big"] = (big,)  # pickled
        with self.assertRaisesRegex(ValueError, "max_value"):
            l.extend([1, big])
        with self.assertRaisesRegex(ValueError, "max_value"):
            q.put(big)
        with self.assertRaisesRegex(ValueError, "max_value"):
            ns.big = big
        self.assertEqual((len(d), len(l), q.qsize()), (0, 0, 0))
        with self.assertRaises(AttributeError):
            ns.big
        d["small"] = b"x" * 500
        self.assertEqual(len(d["small"]), 500)

    def test_names(self):
        for bad in (5, b"x", ("a",)):
            with self.assertRaises(TypeError):
                self.m.dict(name=bad)
        for bad in ("", "a/b", "has space", "x" * 300):
            with self.assertRaises(ValueError):
                self.m.list(name=bad)
        self.m.dict(name="bad_kind")
        with self.assertRaises(TypeError):
            self.m.list(name="bad_kind")

    def test_wrong_authkey(self):
        with self.assertRaises(mpbroker.AuthenticationError):
            mpbroker.Manager(self.b.endpoint, authkey=b"wrong")
        with self.assertRaises(TypeError):
            mpbroker.Manager(self.b.endpoint, authkey=5)

    def test_addresses(self):
        with self.assertRaises(TypeError):
            mpbroker.Manager(5)
        with self.assertRaises(TypeError):
            mpbroker.Manager(("host", "port"))
        with self.assertRaises(ValueError):
            mpbroker.Manager("nohost")
        with self.assertRaises(ValueError):
            mpbroker.Manager(serializer="json")

    def test_wrong_arguments(self):
        with self.assertRaises(TypeError):
            self.m.Queue("big")
        with self.assertRaises(ValueError):
            self.m.Semaphore(-1)
        with self.assertRaises(ValueError):
            self.m.Barrier(0)
        with self.assertRaises(TypeError):
            self.m.Condition(lock=threading.Lock())
        with self.assertRaises(TypeError):
            self.m.Array("i", [1.5])
        with self.assertRaises(queue.Empty):
            self.m.Queue().get(timeout=0)

    def test_still_serving(self):
        d = self.m.dict(name="after_bad")
        d["ok"] = 1
        self.assertEqual(mpbroker.Manager(self.b.endpoint, authkey=self.b.authkey)
                         .dict(name="after_bad")["ok"], 1)


if __name__ == "__main__":
    unittest.main()
