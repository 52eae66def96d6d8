"""Values cross between Python and C: written from Python, read by `mpb get` and by a C program
(interop.c), and the other way round; a pickled value read from C is an ext blob of type 80."""
import base64
import json
import os
import pickle
import subprocess
import unittest

import mpbroker

import th


class InteropTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.b = th.Broker()
        cls.m = mpbroker.Manager(cls.b.endpoint, authkey=cls.b.authkey)
        cls.d = cls.m.dict(name="interop")

    @classmethod
    def tearDownClass(cls):
        cls.m.shutdown()
        cls.b.stop()

    def mpb(self, *args):
        r = subprocess.run([th.program("mpb"), *args], env=self.b.env(), capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def c(self, *args):
        r = subprocess.run([th.program("py_interop"), *args], env=self.b.env(),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def test_python_to_mpb_get(self):
        v = {"a": [1, 2.5, "x", None, True, False], "b": {"c": -7}}
        self.d["plain"] = v
        self.assertEqual(json.loads(self.mpb("--json", "get", "dict/interop", "plain")), v)

    def test_python_to_c(self):
        self.d["n"] = 42
        self.d["s"] = "héllo"
        self.d["f"] = 0.25
        self.assertEqual(self.c("read", "interop", "n"), "int 42")
        self.assertEqual(self.c("read", "interop", "s"), "str héllo")
        self.assertEqual(self.c("read", "interop", "f"), "float 0.25")

    def test_pickled_is_ext_blob(self):
        self.d["t"] = (1, "two")
        blob = pickle.dumps((1, "two"), 4)
        self.assertEqual(self.c("read", "interop", "t"), "ext 80 %d" % len(blob))
        j = json.loads(self.mpb("--json", "get", "dict/interop", "t"))
        self.assertEqual(j["$ext"], 80)
        self.assertEqual(pickle.loads(base64.b64decode(j["$bytes"])), (1, "two"))

    def test_c_to_python(self):
        self.c("write", "interop", "fromc", "-5")
        self.assertEqual(self.d["fromc"], -5)
        self.assertIs(type(self.d["fromc"]), int)
        self.assertEqual(self.d["fromc_s"], "from C")

    def test_mpb_to_python(self):
        self.mpb("set", "dict/interop", "cli", '[1, "two", {"$bytes": "AAE="}]')
        self.assertEqual(self.d["cli"], [1, "two", b"\x00\x01"])
        self.mpb("append", "list/interop_l", '{"k": null}')
        self.assertEqual(self.m.list(name="interop_l")[:], [{"k": None}])
        self.mpb("put", "queue/interop_q", "3.5")
        self.assertEqual(self.m.Queue(name="interop_q").get(timeout=5), 3.5)

    def test_named_objects_listed(self):
        self.m.Event(name="interop_ev").set()
        out = self.mpb("ls", "interop*")
        self.assertIn("interop_ev", out)
        self.assertIn("interop", out)

    def test_msgpack_serializer_sees_ext(self):
        self.d["t2"] = {1, 2}
        m2 = mpbroker.Manager(self.b.endpoint, authkey=self.b.authkey, serializer="msgpack")
        try:
            e = m2.dict(name="interop")["t2"]
            self.assertIsInstance(e, mpbroker.Ext)
            self.assertEqual((e.type, pickle.loads(e.data)), (80, {1, 2}))
            with self.assertRaises(TypeError):
                m2.dict(name="interop")["t3"] = (1,)
            self.assertNotIn("t3", self.d)
        finally:
            m2.shutdown()


if __name__ == "__main__":
    unittest.main()
