"""The extension module mpbroker._mpb against a real broker: connect, call, the codec, errors."""
import unittest

from mpbroker import _mpb

import th


class CodecTest(unittest.TestCase):
    def test_roundtrip_exact_types(self):
        for v in [None, True, False, 0, -1, 127, -33, 2**63 - 1, -2**63, 2**64 - 1, 2**70,
                  1.5, "", "é", b"\x00\xff", [1, [2, "x"]], {"a": 1, 2: [None]}, (1, 2),
                  {1, 2}, frozenset(), bytearray(b"x"), 10**30, [(1,)], {"t": (1, "a")}]:
            back = _mpb.unpackb(_mpb.packb(v))
            self.assertEqual(back, v)
            self.assertIs(type(back), type(v))

    def test_plain_msgpack_bytes(self):
        self.assertEqual(_mpb.packb({"age": 30}), bytes.fromhex("81a36167651e"))
        self.assertEqual(_mpb.packb(True), b"\xc3")
        self.assertEqual(_mpb.packb(-1), b"\xff")
        self.assertEqual(_mpb.packb([1, "a"]), b"\x92\x01\xa1a")

    def test_every_width_exact_bytes(self):
        # the shortest form at each boundary, float64 always, as libmpb's builder writes them
        for v, h in [(127, "7f"), (128, "cc80"), (-32, "e0"), (-33, "d0df"), (65536, "ce00010000"),
                     (2**64 - 1, "cf" + "ff" * 8), (-2**63, "d3" + "80" + "00" * 7),
                     (1.0, "cb3ff0000000000000"), ("x" * 32, "d920" + "78" * 32),
                     (b"", "c400"), ([None] * 16, "dc0010" + "c0" * 16)]:
            self.assertEqual(_mpb.packb(v), bytes.fromhex(h))
            self.assertEqual(_mpb.unpackb(bytes.fromhex(h)), v)
        # float32 from a C program reads as its value
        self.assertEqual(_mpb.unpackb(b"\xca\x3f\xc0\x00\x00"), 1.5)
        # a 16-byte pickle stays ext 8 (keys compare by bytes), not fixext 16
        b = _mpb.packb((1,))
        self.assertEqual(b[:3], b"\xc7\x10" + bytes([_mpb.EXT_PICKLE]))
        self.assertEqual(len(b), 19)
        self.assertEqual(_mpb.unpackb(b), (1,))

    def test_reply_depth(self):
        # a value 32 deep inside the arrays of a reply reads; one level past the reply's 36 not
        want = None
        for _ in range(36):
            want = [want]
        self.assertEqual(_mpb.unpackb(b"\x91" * 36 + b"\xc0"), want)
        with self.assertRaises(ValueError):
            _mpb.unpackb(b"\x91" * 37 + b"\xc0")

    def test_pickle_is_ext(self):
        b = _mpb.packb((1, 2))
        self.assertEqual(b[0], 0xc7)
        self.assertEqual(b[2], _mpb.EXT_PICKLE)
        e = _mpb.unpackb(b, pickle=False)
        self.assertIsInstance(e, _mpb.Ext)
        self.assertEqual(e.type, _mpb.EXT_PICKLE)
        with self.assertRaises(TypeError):
            _mpb.packb((1, 2), pickle=False)

    def test_truncated_and_random_bytes(self):
        # Every prefix of a valid encoding, and random bytes (seeded, bounded): a value or
        # ValueError, never a crash (the sanitized build runs this too).
        import random
        full = _mpb.packb({"a": [1, -2, 3.5, "x" * 40, b"y" * 300, None, True, {"n": [[]]}],
                           "t": (1, 2), 2**40: -2**40}, pickle=True)
        for i in range(len(full)):
            with self.assertRaises(ValueError):
                _mpb.unpackb(full[:i], pickle=False)
        rnd = random.Random(13)
        for _ in range(3000):
            b = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40)))
            try:
                _mpb.unpackb(b, pickle=False)
            except ValueError:
                pass

    def test_array_keys_from_c(self):
        self.assertEqual(_mpb.unpackb(b"\x81\x92\x01\x91\x02\x03"), {(1, (2,)): 3})
        with self.assertRaises(ValueError):
            _mpb.unpackb(b"\x81\x80\x01")  # a map as a key

    def test_malformed(self):
        for b in [b"", b"\xc1", b"\x92\x01", b"\xdb\xff\xff\xff\xff", b"\x01\x02"]:
            with self.assertRaises(ValueError):
                _mpb.unpackb(b)


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = th.Broker()

    @classmethod
    def tearDownClass(cls):
        cls.broker.stop()

    def test_call(self):
        c = _mpb.Client(self.broker.endpoint, self.broker.authkey)
        self.assertGreater(c.session, 0)
        self.assertIsNone(c.call(_mpb.OP_DICT_SET, "ext_d", ["k", (1, 2)]))
        self.assertEqual(c.call(_mpb.OP_DICT_GET, "ext_d", ["k"]), (1, 2))
        with self.assertRaises(_mpb.Error) as cm:
            c.call(_mpb.OP_DICT_GET, "ext_d", ["nope"])
        self.assertEqual(cm.exception.args[0], _mpb.ENOKEY)
        self.assertEqual(_mpb.errname(cm.exception.args[0]), "ENOKEY")
        c.close()
        self.assertTrue(c.closed)
        with self.assertRaises(ValueError):
            c.call(_mpb.OP_DICT_LEN, "ext_d")

    def test_wrong_authkey(self):
        with self.assertRaises(_mpb.Error) as cm:
            _mpb.Client(self.broker.endpoint, b"not the key")
        self.assertEqual(cm.exception.args[0], _mpb.EAUTH)


if __name__ == "__main__":
    unittest.main()
