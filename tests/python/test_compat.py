"""The same operations on multiprocessing.Manager() proxies and on mpbroker.Manager() proxies give
the same results (value and exact type) and raise the same exception types: a table of
sequences, one per proxy type, covering every public method of DictProxy, ListProxy, the
queues, the synchronisation proxies, Value, Array and Namespace."""
import array
import copy
import multiprocessing
import multiprocessing.managers
import unittest

import mpbroker


def _iadd(p):
    p += [1, 2]


def _imul(p):
    p *= 2


def _set(p, k, v):
    p[k] = v


def _del(p, k):
    del p[k]


def _with(lock):
    with lock:
        return "inside"


# (factory, args, kwargs, [(label, step), ...]); step(p) -> result
TABLE = {
    "dict": ("dict", ({"a": 1, "b": 2},), {}, [
        ("getitem", lambda d: d["a"]),
        ("getitem missing", lambda d: d["zz"]),
        ("setitem tuple", lambda d: _set(d, "c", (1, 2))),
        ("getitem tuple", lambda d: d["c"]),
        ("setitem bool", lambda d: _set(d, "t", True)),
        ("getitem bool", lambda d: d["t"]),
        ("setitem nested", lambda d: _set(d, "n", {"x": [1, (2,), {3}]})),
        ("getitem nested", lambda d: d["n"]),
        ("tuple key", lambda d: _set(d, (1, 2), "tk")),
        ("get tuple key", lambda d: d[(1, 2)]),
        ("contains", lambda d: "a" in d),
        ("not contains", lambda d: "q" in d),
        ("len", len),
        ("iter", lambda d: list(iter(d))),
        ("keys", lambda d: d.keys()),
        ("values", lambda d: d.values()),
        ("items", lambda d: d.items()),
        ("copy", lambda d: d.copy()),
        ("deepcopy", copy.deepcopy),
        ("_getvalue", lambda d: d._getvalue()),
        ("str", str),
        ("get", lambda d: d.get("a")),
        ("get missing", lambda d: d.get("zz")),
        ("get default", lambda d: d.get("zz", 5)),
        ("update dict", lambda d: d.update({"e": 5})),
        ("update kw", lambda d: d.update(f=6)),
        ("update pairs", lambda d: d.update([("g", 7)])),
        ("update 2 args", lambda d: d.update({}, {})),
        ("pop", lambda d: d.pop("e")),
        ("pop missing", lambda d: d.pop("zz")),
        ("pop default", lambda d: d.pop("zz", 9)),
        ("popitem", lambda d: d.popitem()),
        ("setdefault new", lambda d: d.setdefault("h", 8)),
        ("setdefault old", lambda d: d.setdefault("h", 9)),
        ("setdefault none", lambda d: d.setdefault("i")),
        ("delitem", lambda d: _del(d, "a")),
        ("delitem missing", lambda d: _del(d, "zz")),
        ("items after", lambda d: d.items()),
        ("clear", lambda d: d.clear()),
        ("len empty", len),
        ("popitem empty", lambda d: d.popitem()),
        ("unhashable key", lambda d: _set(d, [1], 1)),
    ]),
    "list": ("list", ([3, 1, 2],), {}, [
        ("getitem", lambda l: l[0]),
        ("getitem neg", lambda l: l[-1]),
        ("getitem out", lambda l: l[5]),
        ("getitem str", lambda l: l["a"]),
        ("slice", lambda l: l[0:2]),
        ("slice neg", lambda l: l[-2:]),
        ("slice step", lambda l: l[::2]),
        ("slice rev", lambda l: l[::-1]),
        ("add", lambda l: l + [9]),
        ("mul", lambda l: l * 2),
        ("rmul", lambda l: 2 * l),
        ("reversed", lambda l: list(reversed(l))),
        ("iter", lambda l: list(l)),
        ("contains", lambda l: 3 in l),
        ("not contains", lambda l: 7 in l),
        ("len", len),
        ("str", str),
        ("deepcopy", copy.deepcopy),
        ("append", lambda l: l.append((4, 5))),
        ("last", lambda l: l[-1]),
        ("extend", lambda l: l.extend([5, 6])),
        ("insert", lambda l: l.insert(0, 0)),
        ("insert neg", lambda l: l.insert(-1, 7)),
        ("insert far", lambda l: l.insert(100, 8)),
        ("all", lambda l: l[:]),
        ("pop", lambda l: l.pop()),
        ("pop 0", lambda l: l.pop(0)),
        ("pop out", lambda l: l.pop(99)),
        ("remove", lambda l: l.remove(3)),
        ("remove missing", lambda l: l.remove(99)),
        ("index", lambda l: l.index(1)),
        ("index missing", lambda l: l.index(99)),
        ("index start", lambda l: l.index(5, 1)),
        ("index range", lambda l: l.index(1, 2, 3)),
        ("count", lambda l: l.count(1)),
        ("count tuple", lambda l: l.count((4, 5))),
        ("remove tuple", lambda l: l.remove((4, 5))),
        ("reverse", lambda l: l.reverse()),
        ("after reverse", lambda l: l[:]),
        ("sort", lambda l: l.sort()),
        ("after sort", lambda l: l[:]),
        ("sort reverse", lambda l: l.sort(reverse=True)),
        ("after sort reverse", lambda l: l[:]),
        ("setitem", lambda l: _set(l, 0, 10)),
        ("setitem out", lambda l: _set(l, 99, 1)),
        ("delitem", lambda l: _del(l, 0)),
        ("delitem out", lambda l: _del(l, 99)),
        ("set slice", lambda l: _set(l, slice(1, 2), ["a", "b"])),
        ("del slice", lambda l: _del(l, slice(0, 1))),
        ("after slices", lambda l: l[:]),
        ("sort mixed", lambda l: l.sort()),
        ("iadd", _iadd),
        ("imul", _imul),
        ("after ops", lambda l: l[:]),
        ("del all", lambda l: _del(l, slice(None))),
        ("pop empty", lambda l: l.pop()),
        ("tuples sort", lambda l: (l.extend([(2, 1), (1, 2)]), l.sort(), l[:])),
    ]),
    "Queue": ("Queue", (2,), {}, [
        ("empty", lambda q: q.empty()),
        ("put", lambda q: q.put(1)),
        ("put tuple", lambda q: q.put((2, 3))),
        ("full", lambda q: q.full()),
        ("put nowait full", lambda q: q.put(3, False)),
        ("put_nowait full", lambda q: q.put_nowait(3)),
        ("put timeout full", lambda q: q.put(3, True, 0.05)),
        ("qsize", lambda q: q.qsize()),
        ("get", lambda q: q.get()),
        ("get_nowait", lambda q: q.get_nowait()),
        ("get nowait empty", lambda q: q.get(False)),
        ("get_nowait empty", lambda q: q.get_nowait()),
        ("get timeout empty", lambda q: q.get(True, 0.05)),
        ("get timeout neg", lambda q: q.get(timeout=-1)),
        ("put again", lambda q: q.put_nowait([1, 2])),
        ("get kw", lambda q: q.get(block=True, timeout=1)),
        ("task_done", lambda q: q.task_done()),
        ("task_done", lambda q: q.task_done()),
        ("task_done", lambda q: q.task_done()),
        ("task_done too many", lambda q: q.task_done()),
        ("join", lambda q: q.join()),
    ]),
    "JoinableQueue": ("JoinableQueue", (), {}, [
        ("put", lambda q: q.put("x")),
        ("qsize", lambda q: q.qsize()),
        ("full", lambda q: q.full()),
        ("get", lambda q: q.get()),
        ("task_done", lambda q: q.task_done()),
        ("join", lambda q: q.join()),
        ("task_done too many", lambda q: q.task_done()),
        ("empty", lambda q: q.empty()),
    ]),
    "Lock": ("Lock", (), {}, [
        ("acquire", lambda k: k.acquire()),
        ("acquire nonblocking", lambda k: k.acquire(False)),
        ("acquire timeout", lambda k: k.acquire(timeout=0.05)),
        ("acquire nonblocking timeout", lambda k: k.acquire(False, 1)),
        ("acquire neg timeout", lambda k: k.acquire(True, -2)),
        ("release", lambda k: k.release()),
        ("release unheld", lambda k: k.release()),
        ("with", _with),
        ("acquire after with", lambda k: k.acquire(False)),
        ("release", lambda k: k.release()),
    ]),
    "RLock": ("RLock", (), {}, [
        ("acquire", lambda k: k.acquire()),
        ("acquire again", lambda k: k.acquire()),
        ("acquire nonblocking", lambda k: k.acquire(blocking=False)),
        ("release", lambda k: k.release()),
        ("release", lambda k: k.release()),
        ("release", lambda k: k.release()),
        ("release unheld", lambda k: k.release()),
        ("with", _with),
    ]),
    "Semaphore": ("Semaphore", (2,), {}, [
        ("acquire", lambda s: s.acquire()),
        ("acquire", lambda s: s.acquire()),
        ("acquire nonblocking", lambda s: s.acquire(False)),
        ("acquire timeout", lambda s: s.acquire(timeout=0.05)),
        ("acquire neg timeout", lambda s: s.acquire(timeout=-1)),
        ("acquire nonblocking timeout", lambda s: s.acquire(False, 1)),
        ("release", lambda s: s.release()),
        ("release", lambda s: s.release()),
        ("release over", lambda s: s.release()),
        ("with", _with),
    ]),
    "BoundedSemaphore": ("BoundedSemaphore", (1,), {}, [
        ("acquire", lambda s: s.acquire()),
        ("acquire nonblocking", lambda s: s.acquire(False)),
        ("release", lambda s: s.release()),
        ("release over", lambda s: s.release()),
        ("with", _with),
    ]),
    "Condition": ("Condition", (), {}, [
        ("wait unheld", lambda c: c.wait(0.01)),
        ("notify unheld", lambda c: c.notify()),
        ("acquire", lambda c: c.acquire()),
        ("wait timeout", lambda c: c.wait(0.05)),
        ("wait neg timeout", lambda c: c.wait(-1)),
        ("notify", lambda c: c.notify()),
        ("notify_all", lambda c: c.notify_all()),
        ("notify 3", lambda c: c.notify(3)),
        ("wait_for true", lambda c: c.wait_for(lambda: "yes")),
        ("wait_for false", lambda c: c.wait_for(lambda: 0, 0.05)),
        ("release", lambda c: c.release()),
        ("release unheld", lambda c: c.release()),
        ("with", _with),
        ("acquire nonblocking", lambda c: c.acquire(False)),
        ("release", lambda c: c.release()),
    ]),
    "Event": ("Event", (), {}, [
        ("is_set", lambda e: e.is_set()),
        ("wait timeout", lambda e: e.wait(0.02)),
        ("wait neg timeout", lambda e: e.wait(-1)),
        ("set", lambda e: e.set()),
        ("is_set", lambda e: e.is_set()),
        ("wait", lambda e: e.wait()),
        ("wait timeout", lambda e: e.wait(0.02)),
        ("clear", lambda e: e.clear()),
        ("is_set", lambda e: e.is_set()),
    ]),
    "Barrier": ("Barrier", (1,), {}, [
        ("wait", lambda b: b.wait()),
        ("parties", lambda b: b.parties),
        ("n_waiting", lambda b: b.n_waiting),
        ("broken", lambda b: b.broken),
        ("abort", lambda b: b.abort()),
        ("broken", lambda b: b.broken),
        ("wait broken", lambda b: b.wait()),
        ("reset", lambda b: b.reset()),
        ("broken", lambda b: b.broken),
        ("wait", lambda b: b.wait(1)),
    ]),
    "Barrier2": ("Barrier", (2,), {}, [
        ("wait timeout", lambda b: b.wait(0.05)),
        ("broken", lambda b: b.broken),
        ("reset", lambda b: b.reset()),
        ("wait neg timeout", lambda b: b.wait(-1)),
        ("broken after", lambda b: b.broken),
        ("reset", lambda b: b.reset()),
        ("n_waiting", lambda b: b.n_waiting),
    ]),
    "Value": ("Value", ("i", 3), {}, [
        ("value", lambda v: v.value),
        ("_getvalue", lambda v: v._getvalue()),
        ("get", lambda v: v.get()),
        ("set", lambda v: v.set(5)),
        ("value", lambda v: v.value),
        ("set attr", lambda v: setattr(v, "value", (7, "x"))),
        ("get", lambda v: v.get()),
        ("str", str),
    ]),
    "Array": ("Array", ("i", [1, 2, 3]), {}, [
        ("len", len),
        ("getitem", lambda a: a[0]),
        ("getitem neg", lambda a: a[-1]),
        ("getitem out", lambda a: a[5]),
        ("slice", lambda a: a[0:2]),
        ("setitem", lambda a: _set(a, 0, 9)),
        ("setitem float", lambda a: _set(a, 0, 1.5)),
        ("setitem out", lambda a: _set(a, 7, 1)),
        ("set slice", lambda a: _set(a, slice(1, 3), array.array("i", [7, 8]))),
        ("set slice list", lambda a: _set(a, slice(1, 3), [7, 8])),
        ("iter", lambda a: list(a)),
        ("str", str),
    ]),
    "Namespace": ("Namespace", (), {"x": 1}, [
        ("getattr", lambda n: n.x),
        ("getattr missing", lambda n: n.y),
        ("setattr", lambda n: setattr(n, "y", (2,))),
        ("getattr tuple", lambda n: n.y),
        ("delattr", lambda n: delattr(n, "x")),
        ("getattr deleted", lambda n: n.x),
        ("delattr missing", lambda n: delattr(n, "zz")),
        ("str", str),
    ]),
}


def outcome(step, p):
    try:
        r = step(p)
    except Exception as e:  # the type is what must match
        return ("raises", type(e))
    if isinstance(r, (multiprocessing.managers.BaseProxy, mpbroker.BaseProxy)):
        return ("proxy",)
    return ("returns", type(r), repr(r))


class CompatTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.py = multiprocessing.Manager()
        cls.mpb = mpbroker.Manager()

    @classmethod
    def tearDownClass(cls):
        cls.mpb.shutdown()
        cls.py.shutdown()

    def run_table(self, key, name=None):
        factory, args, kw, steps = TABLE[key]
        if name is None:
            ours = getattr(self.mpb, factory)(*args, **kw)
        else:
            ours = getattr(self.mpb, factory)(*args, name=name, **kw)
            self.assertEqual(ours.name, name)
        theirs = getattr(self.py, factory)(*args, **kw)
        for i, (label, step) in enumerate(steps):
            want = outcome(step, theirs)
            got = outcome(step, ours)
            self.assertEqual(got, want, "%s step %d (%s)" % (key, i, label))

    def test_named_same_as_unnamed(self):
        d = self.mpb.dict({"k": (1,)}, name="compat_named")
        self.assertEqual(d.name, "compat_named")
        self.assertEqual(self.mpb.dict(name="compat_named")["k"], (1,))


    def run_named(self, key):
        """The table on an object opened by name, which a second connection then opens by
        the same name and finds as the steps left it."""
        name = "compat_named_" + key
        self.run_table(key, name)
        factory = TABLE[key][0]
        if factory in ("dict", "list", "Namespace"):
            with mpbroker.connect(self.mpb.address, authkey=self.mpb.authkey) as other:
                again = getattr(other, factory)(name=name)
                first = getattr(self.mpb, factory)(name=name)
                self.assertEqual(str(again), str(first))


for _key in TABLE:
    setattr(CompatTest, "test_" + _key, lambda self, k=_key: self.run_table(k))
    setattr(CompatTest, "test_named_" + _key, lambda self, k=_key: self.run_named(k))

if __name__ == "__main__":
    unittest.main()
