"""The proxies: the methods, operators, exceptions and blocking behaviour of Python's own
multiprocessing.managers proxies, each a thin layer over the broker's ops (PROTOCOL.md §6).

A proxy holds the object's name and the _Conn of its broker. Pickled (into a Process's
arguments, a Queue, another proxy) it becomes (class, endpoint, name, settings): the receiving
process reaches the same object with a session of its own. The authkey travels only to a
child being spawned, as multiprocessing does; elsewhere it comes from a manager of the
receiving process, MPB_AUTHKEY_FILE / MPB_AUTHKEY or the process's authkey.
"""
import array
import math
import os
import queue
import threading
import time

from multiprocessing import context, util

from . import _mpb
from ._mpb import Error
from .errors import code, message, translate
from .managers import get_conn

_E = _mpb


def _ms(block=True, timeout=None):
    """Python's (block, timeout) as the broker's TIMEOUT_MS."""
    if not block:
        return 0
    if timeout is None:
        return -1
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return int(math.ceil(timeout * 1000))


def _wait_ms(block=True, timeout=None):
    """As _ms, for the waits of threading's objects (Condition, Event, Semaphore, Barrier): a
    negative timeout is no wait, where queue's raise ValueError."""
    if block and timeout is not None and timeout < 0:
        return 0
    return _ms(block, timeout)


def _lock_ms(blocking, timeout):
    """threading.Lock.acquire's arguments as TIMEOUT_MS, with its checks."""
    if timeout is None or timeout == -1:
        return -1 if blocking else 0
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout < 0:
        raise ValueError("timeout value must be positive")
    return int(math.ceil(timeout * 1000))


def _tid():
    return threading.get_ident()


def _rebuild(cls, endpoint, authkey, serializer, name, state):
    p = cls.__new__(cls)
    p._init(get_conn(endpoint, authkey, serializer), name, state)
    return p


def make(manager, cls, name, *args, **kw):
    """A new proxy of manager's broker: opens the named object, or with name None makes an
    anonymous one (obj.new), with the settings args, kw."""
    if manager._closed:
        raise RuntimeError("the manager is shut down")
    if name is not None and not isinstance(name, str):
        raise TypeError("name must be a str, not %s" % type(name).__name__)
    p = cls.__new__(cls)
    p._init(manager._conn, name, None)
    p._create(*args, **kw)
    return p


class BaseProxy:
    """What every proxy has: the object's name, its broker, pickling, repr."""

    _kind = None
    _typeid = None

    def _init(self, conn, name, state):
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_refpid", None)
        if state:
            for k, v in state.items():
                object.__setattr__(self, k, v)
        if name is not None and name.startswith("~"):
            # An anonymous object lives while some proxy refers to it: this one too.
            self._take_ref()

    def _take_ref(self):
        if self._conn.ref(self._path()):
            object.__setattr__(self, "_refpid", os.getpid())
        # A child forked by multiprocessing inherits this proxy without pickling it: it takes a
        # reference of its own, as multiprocessing's proxies do (the parent may drop its own).
        util.register_after_fork(self, BaseProxy._take_ref)

    def _create(self):
        pass

    def _open(self, op, args=()):
        """Opens the object with op and args, or makes it anonymous (obj.new) when it has no
        name yet, holding a reference for this proxy. Returns what the open answers."""
        if self._name is not None:
            return self._call(op, args)
        name, reply = self._conn.new(self._kind, args)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_refpid", os.getpid())
        util.register_after_fork(self, BaseProxy._take_ref)
        return reply

    def __del__(self):
        try:
            if getattr(self, "_refpid", None) == os.getpid():
                self._conn.unref(self._path())
        except Exception:
            pass  # at interpreter exit modules may be half torn down: the session's end unrefs

    def _state(self):
        return None

    def _path(self):
        return "%s/%s" % (self._kind, self._name)

    def _call(self, op, args=None, block_ms=0):
        try:
            return self._conn.invoke(op, self._name, args, block_ms)
        except Error as e:
            raise translate(e) from None

    def _raw(self, op, args=None, block_ms=0):
        """As _call, but the broker's error stays an _mpb.Error for the caller to map."""
        return self._conn.invoke(op, self._name, args, block_ms)

    def __reduce__(self):
        if self._name.startswith("~"):
            # Until the receiver takes a reference of its own, this process keeps the object
            # alive (a proxy stored in another object may have no other holder).
            self._conn.pin(self._path())
        key = self._conn.authkey if context.get_spawning_popen() is not None else None
        return (_rebuild, (type(self), self._conn.endpoint, key, self._conn.serializer,
                           self._name, self._state()))

    @property
    def name(self):
        """The object's name on the broker (`mpb ls` shows it as kind/name)."""
        return self._name

    def __repr__(self):
        return "<%s object, typeid %r at %#x>" % (type(self).__name__, self._typeid, id(self))

    def _getvalue(self):
        """A local copy of the shared object (as multiprocessing's proxies have)."""
        raise NotImplementedError("%s has no local copy" % type(self).__name__)

    def __deepcopy__(self, memo):
        return self._getvalue()


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
        try:
            return self._raw(_E.OP_DICT_GET, (key,))
        except Error as e:
            if code(e) == _E.ENOKEY:
                raise KeyError(key) from None
            raise translate(e) from None

    def __setitem__(self, key, value):
        hash(key)  # TypeError for an unhashable key, as a dict raises
        self._call(_E.OP_DICT_SET, (key, value))

    def __delitem__(self, key):
        hash(key)  # TypeError for an unhashable key, as a dict raises
        try:
            self._raw(_E.OP_DICT_DEL, (key,))
        except Error as e:
            if code(e) == _E.ENOKEY:
                raise KeyError(key) from None
            raise translate(e) from None

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

    def get(self, key, default=None):
        hash(key)  # TypeError for an unhashable key, as a dict raises
        try:
            return self._raw(_E.OP_DICT_GET, (key,))
        except Error as e:
            if code(e) == _E.ENOKEY:
                return default
            raise translate(e) from None

    def update(self, *args, **kw):
        if len(args) > 1:
            raise TypeError("update expected at most 1 argument, got %d" % len(args))
        pairs = dict(*args, **kw)
        if pairs:
            self._call(_E.OP_DICT_UPDATE, (pairs,))

    _MISSING = object()

    def pop(self, key, default=_MISSING):
        hash(key)  # TypeError for an unhashable key, as a dict raises
        try:
            return self._raw(_E.OP_DICT_POP, (key,))
        except Error as e:
            if code(e) == _E.ENOKEY:
                if default is DictProxy._MISSING:
                    raise KeyError(key) from None
                return default
            raise translate(e) from None

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
        try:
            return self._raw(_E.OP_LIST_GET, (_index(index),))
        except Error as e:
            if code(e) == _E.EINDEX:
                raise IndexError("list index out of range") from None
            raise translate(e) from None

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            items = self._all()
            items[index] = value
            self._replace(items)
            return
        try:
            self._raw(_E.OP_LIST_SET, (_index(index), value))
        except Error as e:
            if code(e) == _E.EINDEX:
                raise IndexError("list assignment index out of range") from None
            raise translate(e) from None

    def __delitem__(self, index):
        if isinstance(index, slice):
            items = self._all()
            del items[index]
            self._replace(items)
            return
        try:
            self._raw(_E.OP_LIST_POP, (_index(index),))
        except Error as e:
            if code(e) == _E.EINDEX:
                raise IndexError("list assignment index out of range") from None
            raise translate(e) from None

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
        try:
            self._raw(_E.OP_LIST_REMOVE, (value,))
        except Error as e:
            if code(e) == _E.EVALUE:
                raise ValueError("list.remove(x): x not in list") from None
            raise translate(e) from None

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
        # A named Queue() leaves what it does not ask for (joinable, a bound) to whoever opens
        # the name with it: consumers may open before the producer that knows the settings.
        if self._name is None:
            self._open(_E.OP_QUEUE_OPEN, (max(maxsize, 0), True, None if joinable else False))
        else:
            self._open(_E.OP_QUEUE_OPEN, (maxsize if maxsize > 0 else None,
                                          True if joinable else None))

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


# ---- locks ---------------------------------------------------------------------------------


class _Acquirer:
    """with x: acquire and release, as multiprocessing's AcquirerProxy."""

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


class LockProxy(_Acquirer, BaseProxy):
    _kind = "lock"
    _typeid = "Lock"
    _ops = (_E.OP_LOCK_OPEN, _E.OP_LOCK_ACQUIRE, _E.OP_LOCK_RELEASE, _E.OP_LOCK_LOCKED)
    _unheld = "release unlocked lock"

    def _create(self):
        self._open(self._ops[0])

    def acquire(self, blocking=True, timeout=None):
        ms = _lock_ms(blocking, timeout)
        try:
            self._raw(self._ops[1], (_tid(), ms), ms)
            return True
        except Error as e:
            if code(e) == _E.ETIMEDOUT:
                return False
            if code(e) == _E.EBUSY:  # a Lock taken again by its holder
                if ms == 0:
                    return False
                if ms > 0:
                    time.sleep(ms / 1000)  # as Python's Lock: waits out the timeout
                    return False
                raise RuntimeError("Lock acquired again by the thread that holds it: this "
                                   "would wait forever (use an RLock)") from None
            raise translate(e) from None

    def release(self):
        try:
            self._raw(self._ops[2], (_tid(),))
        except Error as e:
            if code(e) == _E.ENOTOWNER:
                raise RuntimeError(self._unheld) from None
            raise translate(e) from None

    def locked(self):
        return self._call(self._ops[3])


class RLockProxy(LockProxy):
    _kind = "rlock"
    _typeid = "RLock"
    _ops = (_E.OP_RLOCK_OPEN, _E.OP_RLOCK_ACQUIRE, _E.OP_RLOCK_RELEASE, _E.OP_RLOCK_LOCKED)
    _unheld = "cannot release un-acquired lock"


class SemaphoreProxy(_Acquirer, BaseProxy):
    """Semaphore and BoundedSemaphore."""

    _kind = "semaphore"
    _typeid = "Semaphore"

    def _create(self, value=1, bounded=False):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("semaphore value must be an int, not %s" % type(value).__name__)
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._open(_E.OP_SEM_OPEN, (value, bool(bounded)))

    def acquire(self, blocking=True, timeout=None):
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        ms = _wait_ms(blocking, timeout)
        try:
            self._raw(_E.OP_SEM_ACQUIRE, (ms,), ms)
            return True
        except Error as e:
            if code(e) == _E.ETIMEDOUT:
                return False
            raise translate(e) from None

    def release(self, n=1):
        if n < 1:
            raise ValueError("n must be one or more")
        try:
            self._raw(_E.OP_SEM_RELEASE, (n,))
        except Error as e:
            if code(e) == _E.EVALUE:
                raise ValueError("Semaphore released too many times") from None
            raise translate(e) from None

    def get_value(self):
        return self._call(_E.OP_SEM_VALUE)


class ConditionProxy(BaseProxy):
    _kind = "condition"
    _typeid = "Condition"

    def _create(self, lock=None):
        if lock is not None and not isinstance(lock, LockProxy):
            raise TypeError("Condition's lock must be a Lock or RLock of this manager, not %s"
                            % type(lock).__name__)
        if lock is not None and lock._conn.endpoint != self._conn.endpoint:
            raise ValueError("Condition's lock is on another broker")
        path = self._open(_E.OP_COND_OPEN, (lock._path() if lock is not None else None,))
        self._set_lock(path)

    def _set_lock(self, path):
        kind, _, name = path.partition("/")
        cls = RLockProxy if kind == "rlock" else LockProxy
        lk = cls.__new__(cls)
        lk._init(self._conn, name, None)  # a reference of its own when anonymous
        object.__setattr__(self, "_lock", lk)
        object.__setattr__(self, "_lockpath", path)

    def _state(self):
        return {"_lockpath": self._lockpath}

    def _init(self, conn, name, state):
        BaseProxy._init(self, conn, name, None)
        if state:
            self._set_lock(state["_lockpath"])

    def acquire(self, blocking=True, timeout=None):
        return self._lock.acquire(blocking, timeout)

    def release(self):
        self._lock.release()

    def __enter__(self):
        return self._lock.acquire()

    def __exit__(self, *exc):
        self._lock.release()

    def wait(self, timeout=None):
        ms = _wait_ms(True, timeout)
        try:
            return self._raw(_E.OP_COND_WAIT, (_tid(), ms), ms)
        except Error as e:
            if code(e) == _E.ENOTOWNER:
                raise RuntimeError("cannot wait on un-acquired lock") from None
            raise translate(e) from None

    def notify(self, n=1):
        try:
            self._raw(_E.OP_COND_NOTIFY, (_tid(), n))
        except Error as e:
            if code(e) == _E.ENOTOWNER:
                raise RuntimeError("cannot notify on un-acquired lock") from None
            raise translate(e) from None

    def notify_all(self):
        self.notify(-1)

    def wait_for(self, predicate, timeout=None):
        # As multiprocessing's ConditionProxy.wait_for.
        result = predicate()
        if result:
            return result
        if timeout is not None:
            endtime = time.monotonic() + timeout
        else:
            endtime = None
            waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result


class EventProxy(BaseProxy):
    _kind = "event"
    _typeid = "Event"

    def _create(self):
        self._open(_E.OP_EVENT_OPEN)

    def is_set(self):
        return self._call(_E.OP_EVENT_IS_SET)

    def set(self):
        self._call(_E.OP_EVENT_SET)

    def clear(self):
        self._call(_E.OP_EVENT_CLEAR)

    def wait(self, timeout=None):
        ms = _wait_ms(True, timeout)
        return self._call(_E.OP_EVENT_WAIT, (ms,), ms)


class BarrierProxy(BaseProxy):
    """A Barrier. An action runs in the process whose wait() returns index 0, after the round
    (Python's runs in the last thread to arrive, before it releases the others)."""

    _kind = "barrier"
    _typeid = "Barrier"

    def _create(self, parties, action=None, timeout=None):
        if not isinstance(parties, int) or isinstance(parties, bool):
            raise TypeError("parties must be an int, not %s" % type(parties).__name__)
        if parties < 1:
            raise ValueError("parties must be > 0")
        object.__setattr__(self, "_action", action)
        self._open(_E.OP_BARRIER_OPEN, (parties, -1 if timeout is None else _ms(True, timeout)))

    def _state(self):
        return {"_action": getattr(self, "_action", None)}

    def wait(self, timeout=None):
        ms = _wait_ms(True, timeout)
        try:
            index = self._raw(_E.OP_BARRIER_WAIT, (ms,), ms)
        except Error as e:
            if code(e) == _E.EBROKEN:
                raise threading.BrokenBarrierError from None
            raise translate(e) from None
        action = getattr(self, "_action", None)
        if index == 0 and action is not None:
            try:
                action()
            except BaseException:
                self.abort()
                raise
        return index

    def abort(self):
        self._call(_E.OP_BARRIER_ABORT)

    def reset(self):
        self._call(_E.OP_BARRIER_RESET)

    @property
    def parties(self):
        return self._call(_E.OP_BARRIER_STATE)[0]

    @property
    def n_waiting(self):
        return self._call(_E.OP_BARRIER_STATE)[1]

    @property
    def broken(self):
        return bool(self._call(_E.OP_BARRIER_STATE)[2])


# ---- Value, Array, Namespace ---------------------------------------------------------------


class ValueProxy(BaseProxy):
    _kind = "value"
    _typeid = "Value"

    def _create(self, typecode, value):
        object.__setattr__(self, "_typecode", typecode)
        self._open(_E.OP_VALUE_OPEN, (value,))

    def _state(self):
        return {"_typecode": getattr(self, "_typecode", None)}

    def get(self):
        return self._call(_E.OP_VALUE_GET)

    def set(self, value):
        self._call(_E.OP_VALUE_SET, (value,))

    value = property(get, set)

    def _getvalue(self):
        from multiprocessing.managers import Value  # what multiprocessing's gives
        return Value(getattr(self, "_typecode", None), self.get())

    def add(self, n):
        """Atomically adds n (int or float): the new value."""
        return self._call(_E.OP_VALUE_ADD, (n,))

    def __str__(self):
        return "%s(%r, %r)" % ("Value", getattr(self, "_typecode", None), self.get())


class ArrayProxy(BaseProxy):
    """Manager.Array(typecode, sequence): a broker list whose items the typecode checks."""

    _kind = "list"
    _typeid = "Array"

    def _create(self, typecode, sequence):
        object.__setattr__(self, "_typecode", typecode)
        items = array.array(typecode, sequence).tolist()  # Python's checks and conversions
        self._open(_E.OP_LIST_OPEN)
        if items:
            self._call(_E.OP_LIST_EXTEND, (items,))

    def _state(self):
        return {"_typecode": self._typecode}

    def _list(self):
        lp = ListProxy.__new__(ListProxy)
        object.__setattr__(lp, "_conn", self._conn)  # a view: no reference of its own
        object.__setattr__(lp, "_name", self._name)
        return lp

    def __len__(self):
        return self._call(_E.OP_LIST_LEN)

    def __getitem__(self, index):
        v = self._list()[index]
        return array.array(self._typecode, v) if isinstance(index, slice) else v

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            if not isinstance(value, array.array):
                raise TypeError("can only assign array (not \"%s\") to array slice"
                                % type(value).__name__)
            a = array.array(self._typecode, self._list()._all())
            a[index] = value
            self._list()._replace(a.tolist())
            return
        self._list()[index] = array.array(self._typecode, [value])[0]

    def __str__(self):
        return str(array.array(self._typecode, self._list()._all()))


class NamespaceProxy(BaseProxy):
    _kind = "namespace"
    _typeid = "Namespace"

    def _create(self, **kw):
        self._open(_E.OP_NS_OPEN)
        for k, v in kw.items():
            setattr(self, k, v)

    def __getattr__(self, key):
        if key[0] == "_":
            return object.__getattribute__(self, key)
        try:
            return self._raw(_E.OP_NS_GET, (key,))
        except Error as e:
            if code(e) == _E.ENOKEY:
                raise AttributeError("'Namespace' object has no attribute %r" % key) from None
            raise translate(e) from None

    def __setattr__(self, key, value):
        if key[0] == "_":
            return object.__setattr__(self, key, value)
        self._call(_E.OP_NS_SET, (key, value))

    def __delattr__(self, key):
        if key[0] == "_":
            return object.__delattr__(self, key)
        try:
            self._raw(_E.OP_NS_DEL, (key,))
        except Error as e:
            if code(e) == _E.ENOKEY:
                raise AttributeError(key) from None
            raise translate(e) from None

    def __str__(self):
        items = self._call(_E.OP_NS_LIST)
        temp = ["%s=%r" % (k, v) for k, v in items.items() if not k.startswith("_")]
        return "Namespace(%s)" % ", ".join(sorted(temp))


__all__ = ["BaseProxy", "DictProxy", "ListProxy", "QueueProxy", "LockProxy", "RLockProxy",
           "SemaphoreProxy", "ConditionProxy", "EventProxy", "BarrierProxy", "ValueProxy",
           "ArrayProxy", "NamespaceProxy", "message"]
