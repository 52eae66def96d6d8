"""The proxies of the containers: dict, list, and Queue / JoinableQueue (proxies.py names them)."""
import queue

from ._mpb import Error
from .errors import code, translate
from ._proxy import _E, _ms, BaseProxy


# ---- dict ----------------------------------------------------------------------------------


class DictProxy(BaseProxy):
    _kind = "dict"
    _typeid = "dict"

    def _create(self, *args, **kw):
        init = dict(*args, **kw)
        self._open(_E.OP_DICT_OPEN)
        if init:
            self.update(init)

    def __getitem__(self, key):
        hash(key)  # TypeError for an unhashable key, as a dict raises
        return self._call_or(_E.ENOKEY, KeyError(key), _E.OP_DICT_GET, (key,))

    def __setitem__(self, key, value):
        hash(key)  # TypeError for an unhashable key, as a dict raises
        self._call(_E.OP_DICT_SET, (key, value))

    def __delitem__(self, key):
        hash(key)  # TypeError for an unhashable key, as a dict raises
        self._call_or(_E.ENOKEY, KeyError(key), _E.OP_DICT_DEL, (key,))

    def __contains__(self, key):
        hash(key)  # TypeError for an unhashable key, as a dict raises
        return self._call(_E.OP_DICT_CONTAINS, (key,))

    def __len__(self):
        return self._call(_E.OP_DICT_LEN)

    def _scan(self, what):
        out, cursor = [], 0
        while True:
            cursor, page = self._call(_E.OP_DICT_SCAN, (what, cursor, 0))
            out += page
            if not cursor:
                return out

    def __iter__(self):
        return iter(self._scan(0))

    def keys(self):
        return self._scan(0)

    def values(self):
        return self._scan(1)

    def items(self):
        return [tuple(kv) for kv in self._scan(2)]

    def copy(self):
        return dict(self.items())

    _getvalue = copy

    def __str__(self):
        return str(self.copy())

    def _keyed(self, op, key, default):
        """op on key; default where the dict has no such key."""
        hash(key)  # TypeError for an unhashable key, as a dict raises
        try:
            return self._raw(op, (key,))
        except Error as e:
            if code(e) == _E.ENOKEY:
                return default
            raise translate(e) from None

    def get(self, key, default=None):
        return self._keyed(_E.OP_DICT_GET, key, default)

    def update(self, *args, **kw):
        if len(args) > 1:
            raise TypeError("update expected at most 1 argument, got %d" % len(args))
        pairs = dict(*args, **kw)
        if pairs:
            self._call(_E.OP_DICT_UPDATE, (pairs,))

    _MISSING = object()

    def pop(self, key, default=_MISSING):
        value = self._keyed(_E.OP_DICT_POP, key, DictProxy._MISSING)
        if value is DictProxy._MISSING:
            if default is DictProxy._MISSING:
                raise KeyError(key)
            return default
        return value

    def popitem(self):
        try:
            k, v = self._raw(_E.OP_DICT_POPITEM)
        except Error as e:
            if code(e) == _E.EEMPTY:
                raise KeyError("popitem(): dictionary is empty") from None
            raise translate(e) from None
        return (k, v)

    def setdefault(self, key, default=None):
        hash(key)  # TypeError for an unhashable key, as a dict raises
        return self._call(_E.OP_DICT_SETDEFAULT, (key, default))

    def clear(self):
        self._call(_E.OP_DICT_CLEAR)

    def incr(self, key, by=1):
        """Atomically adds by to the integer under key (absent counts as 0): the new value."""
        return self._call(_E.OP_DICT_INCR, (key, by))


# ---- list ----------------------------------------------------------------------------------


class ListProxy(BaseProxy):
    _kind = "list"
    _typeid = "list"

    def _create(self, sequence=()):
        items = list(sequence)
        self._open(_E.OP_LIST_OPEN)
        if items:
            self._call(_E.OP_LIST_EXTEND, (items,))

    def __len__(self):
        return self._call(_E.OP_LIST_LEN)

    def _range(self, start, stop):
        """Items [start, stop) (non-negative, normalised), in pages."""
        out = []
        while start < stop:
            page = self._call(_E.OP_LIST_SLICE, (start, stop, 0))
            if not page:
                break
            out += page
            start += len(page)
        return out

    def _all(self):
        return self._range(0, len(self))

    def __getitem__(self, index):
        if isinstance(index, slice):
            if index.step in (None, 1):
                start, stop, _ = index.indices(len(self))
                return self._range(start, stop)
            return self._all()[index]
        return self._call_or(_E.EINDEX, IndexError("list index out of range"),
                             _E.OP_LIST_GET, (_index(index),))

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            items = self._all()
            items[index] = value
            self._replace(items)
            return
        self._call_or(_E.EINDEX, IndexError("list assignment index out of range"),
                      _E.OP_LIST_SET, (_index(index), value))

    def __delitem__(self, index):
        if isinstance(index, slice):
            items = self._all()
            del items[index]
            self._replace(items)
            return
        self._call_or(_E.EINDEX, IndexError("list assignment index out of range"),
                      _E.OP_LIST_POP, (_index(index),))

    def _replace(self, items):
        # Not atomic: slice assignment and sorting by key have no op of their own.
        self._call(_E.OP_LIST_CLEAR)
        if items:
            self._call(_E.OP_LIST_EXTEND, (items,))

    def __iter__(self):
        return iter(self._all())

    def _getvalue(self):
        return self._all()

    def __reversed__(self):
        return reversed(self._all())

    def __contains__(self, value):
        return self._call(_E.OP_LIST_COUNT, (value,)) > 0

    def __add__(self, other):
        return self._all() + other

    def __mul__(self, n):
        return self._all() * n

    __rmul__ = __mul__

    def __iadd__(self, other):
        self.extend(other)
        return self

    def __imul__(self, n):
        n = _index(n)
        if n <= 0:
            self.clear()
        elif n > 1:
            items = self._all()
            self._call(_E.OP_LIST_EXTEND, (items * (n - 1),))
        return self

    def __str__(self):
        return str(self._all())

    def append(self, value):
        self._call(_E.OP_LIST_APPEND, (value,))

    def extend(self, values):
        items = list(values)
        if items:
            self._call(_E.OP_LIST_EXTEND, (items,))

    def insert(self, index, value):
        self._call(_E.OP_LIST_INSERT, (_index(index), value))

    def pop(self, index=-1):
        try:
            return self._raw(_E.OP_LIST_POP, (_index(index),))
        except Error as e:
            if code(e) == _E.EINDEX:
                raise IndexError("pop from empty list" if self._call(_E.OP_LIST_LEN) == 0
                                 else "pop index out of range") from None
            raise translate(e) from None

    def remove(self, value):
        self._call_or(_E.EVALUE, ValueError("list.remove(x): x not in list"),
                      _E.OP_LIST_REMOVE, (value,))

    def index(self, value, start=0, stop=None):
        try:
            return self._raw(_E.OP_LIST_INDEX, (value, _index(start),
                                                None if stop is None else _index(stop)))
        except Error as e:
            if code(e) == _E.EVALUE:
                raise ValueError("%r is not in list" % (value,)) from None
            raise translate(e) from None

    def count(self, value):
        return self._call(_E.OP_LIST_COUNT, (value,))

    def reverse(self):
        self._call(_E.OP_LIST_REVERSE)

    def sort(self, *, key=None, reverse=False):
        if key is None:
            try:
                self._raw(_E.OP_LIST_SORT, (bool(reverse),))
                return
            except Error as e:
                if code(e) != _E.ETYPE:
                    raise translate(e) from None
            # Items the broker cannot order (pickled ones): Python orders them, or raises.
        items = self._all()
        items.sort(key=key, reverse=reverse)
        self._replace(items)

    def clear(self):
        self._call(_E.OP_LIST_CLEAR)


def _index(i):
    if isinstance(i, bool) or not hasattr(i, "__index__"):
        raise TypeError("list indices must be integers or slices, not %s" % type(i).__name__)
    return i.__index__()


# ---- queues --------------------------------------------------------------------------------


class QueueProxy(BaseProxy):
    """Queue and JoinableQueue (queue.Queue's methods, as the Manager's)."""

    _kind = "queue"
    _typeid = "Queue"

    def _create(self, maxsize=0, joinable=False):
        if not isinstance(maxsize, int) or isinstance(maxsize, bool):
            raise TypeError("maxsize must be an int, not %s" % type(maxsize).__name__)
        # An unnamed queue is joinable either way: Python's Queue has task_done and join too.
        # But a Queue() is not reliable: an item taken is gone with its taker, as in Python
        # (a JoinableQueue gives back what a taker that ended did not finish).
        # A named Queue() is joinable too (task_done and join, as Python's), and leaves the bound
        # and whether a taker that ended gives its item back to whoever opens the name with
        # them: consumers may open before the producer that knows the settings; unless some
        # program opens it with reliable false, a joinable queue gives such items back.
        if self._name is None:
            self._open(_E.OP_QUEUE_OPEN, (max(maxsize, 0), True, None if joinable else False))
        else:
            self._open(_E.OP_QUEUE_OPEN, (maxsize if maxsize > 0 else None, True))

    def put(self, item, block=True, timeout=None):
        ms = _ms(block, timeout)
        try:
            self._raw(_E.OP_QUEUE_PUT, (item, ms), ms)
        except Error as e:
            if code(e) in (_E.EFULL, _E.ETIMEDOUT):
                raise queue.Full from None
            raise translate(e) from None

    def get(self, block=True, timeout=None):
        ms = _ms(block, timeout)
        try:
            return self._raw(_E.OP_QUEUE_GET, (ms,), ms)
        except Error as e:
            if code(e) in (_E.EEMPTY, _E.ETIMEDOUT):
                raise queue.Empty from None
            raise translate(e) from None

    def put_nowait(self, item):
        return self.put(item, False)

    def get_nowait(self):
        return self.get(False)

    def qsize(self):
        return self._call(_E.OP_QUEUE_QSIZE)

    def empty(self):
        return self._call(_E.OP_QUEUE_EMPTY)

    def full(self):
        return self._call(_E.OP_QUEUE_FULL)

    def task_done(self):
        try:
            self._raw(_E.OP_QUEUE_TASK_DONE)
        except Error as e:
            if code(e) in (_E.EVALUE, _E.ETYPE):
                raise ValueError("task_done() called too many times") from None
            raise translate(e) from None

    def join(self, timeout=None):
        """Blocks until every item put has been marked done (timeout: an mpbroker extension;
        False when it ran out)."""
        ms = _ms(True, timeout)
        try:
            self._raw(_E.OP_QUEUE_JOIN, (ms,), ms)
            return True if timeout is not None else None
        except Error as e:
            if code(e) == _E.ETIMEDOUT and timeout is not None:
                return False
            raise translate(e) from None
