"""What every proxy is built on: BaseProxy (the object's name and broker connection, opening,
references to anonymous objects, pickling, repr, the error mapping of each call), make(), and
Python's (block, timeout) arguments as the broker's TIMEOUT_MS. The proxies themselves are in
_proxies_data.py, _proxies_sync.py and _proxies_value.py; proxies.py names them all."""
import math
import os
import threading

from multiprocessing import context, util

from . import _mpb
from ._mpb import Error
from .errors import code, translate
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

    def _call_or(self, err, exc, op, args=None, block_ms=0):
        """As _call, but the broker's error code err raises exc instead (KeyError(key) for
        ENOKEY, ...), as Python's own object raises it."""
        try:
            return self._conn.invoke(op, self._name, args, block_ms)
        except Error as e:
            if code(e) == err:
                raise exc from None
            raise translate(e) from None

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
