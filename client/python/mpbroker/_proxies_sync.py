"""The synchronisation proxies: Lock, RLock, Semaphore / BoundedSemaphore, Condition, Event and
Barrier (proxies.py names them)."""
import threading
import time

from ._mpb import Error
from .errors import code, translate
from ._proxy import _E, _ms, _wait_ms, _lock_ms, _tid, BaseProxy


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
        self._call_or(_E.ENOTOWNER, RuntimeError(self._unheld), self._ops[2], (_tid(),))

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
        self._call_or(_E.EVALUE, ValueError("Semaphore released too many times"),
                      _E.OP_SEM_RELEASE, (n,))

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
        return self._call_or(_E.ENOTOWNER, RuntimeError("cannot wait on un-acquired lock"),
                             _E.OP_COND_WAIT, (_tid(), ms), ms)

    def notify(self, n=1):
        self._call_or(_E.ENOTOWNER, RuntimeError("cannot notify on un-acquired lock"),
                      _E.OP_COND_NOTIFY, (_tid(), n))

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
