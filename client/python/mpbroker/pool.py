"""pool.py - multiprocessing.Pool's API over the broker's remote pool.

    with manager.Pool(4) as pool:                  # was: multiprocessing.Pool(4)
        print(pool.map(square, range(10)))

Functions go by reference: each call is [pickle(func), ARG, ...] (worker.py), so any worker
that can import the function's module runs it, on this host or another. A Pool starts
`processes` local worker processes in the caller's multiprocessing context (fork or spawn, as
multiprocessing.Pool does, so functions of __main__ work) and replaces those that die;
`python3 -m mpbroker worker` adds workers on other hosts. A task whose worker dies is run
again by the broker on another one.

The pool has a session of its own. One thread, the result handler, waits on the session's
descriptor and reads results as they arrive; it sets AsyncResults and runs callbacks, as
multiprocessing's result handler thread does. Calls into libmpb are serialised by one lock,
which nothing holds while it waits, except imap's next() for a bounded slice.
"""
import atexit
import itertools
import multiprocessing
import os
import select
import threading
import traceback
import weakref
from multiprocessing import TimeoutError

from . import _mpb
from .worker import FUNCTION, FUNCTIONS, TaskFailure, function_key, run_local

__all__ = ["Pool", "AsyncResult", "ApplyResult", "MapResult", "IMapIterator", "RemoteError",
           "TimeoutError"]

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"

# Pools still running at exit are terminated before the managers shut their brokers down
# (atexit runs this module's handler first: it is registered later).
_live = weakref.WeakSet()


@atexit.register
def _terminate_all():
    for p in list(_live):
        try:
            p.terminate()
        except Exception:
            pass

# How long the result handler waits on the descriptor before it polls anyway: the descriptor
# is edge-triggered, and an edge consumed by another call is caught up on here.
_IDLE_S = 0.05
# A map's items travel in batches of chunksize items, each one call that a worker runs in one
# go (worker.py); a batch is cut short past this many bytes of items.
_BATCH_BYTES = 256 << 10
# imap's next() holds the pool's lock while it waits, for at most this long at a time.
_SLICE_MS = 50


class RemoteError(RuntimeError):
    """A task failed with an exception whose type does not exist in this process, or the
    broker failed it (its worker died too often, it was canceled, no worker could be reached)."""


def _error(code, msg):
    e = RemoteError(msg)
    e.code = code
    return e


class Pool:
    """multiprocessing.Pool on an mpbroker broker. Made by Manager.Pool()."""

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None, *, name=None, manager=None, endpoint=None, authkey=None,
                 serializer="pickle"):
        # The manager's shutdown ends the pool too (the result handler watches for it).
        self._manager = weakref.ref(manager) if manager is not None else None
        if manager is not None:
            endpoint, authkey, serializer = manager.address, manager.authkey, manager.serializer
        if endpoint is None or authkey is None:
            raise TypeError("Pool needs a manager, or an endpoint and an authkey")
        if processes is None:
            processes = os.cpu_count() or 1
        if not isinstance(processes, int) or processes < 0:
            raise ValueError("Number of processes must be at least 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int)
                                             or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if name is not None and (not isinstance(name, str) or not name or name != name.strip()):
            raise TypeError("a Pool's name is a non-empty str without surrounding spaces")
        if serializer != "pickle":
            raise ValueError("a Pool sends functions by pickle: it needs serializer='pickle'")
        self._processes = processes
        self._initializer, self._initargs = initializer, tuple(initargs)
        self._maxtasks = maxtasksperchild
        self._ctx = context or multiprocessing.get_context()
        self._endpoint, self._authkey = endpoint, authkey
        # A named pool's tasks go under its name, which workers elsewhere serve with
        # `python3 -m mpbroker worker --function NAME` (and `mpb pool` lists); a pool with an
        # initializer is served only by its own workers, which ran it; any other by every
        # Python worker.
        if name is not None:
            self._fn = name
        else:
            self._fn = FUNCTION if initializer is None else "%s.%d.%x" % (
                FUNCTION, os.getpid(), id(self))
        self._client = _mpb.Client(endpoint, authkey, name="pool")
        self._h = _mpb.Pool(self._client)
        self._lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())  # outstanding results changed
        self._results = {}
        self._keys = itertools.count(1)
        self._keys_sent = {}  # function pickle -> its key, stored in FUNCTIONS
        self._state = RUN
        self._pid = os.getpid()
        self._procs = []
        self._procs_lock = threading.Lock()
        self._workers_stopped = False
        self._repopulate()
        self._stop = False
        self._cancel_reason = "the pool was terminated"
        self._gone = False  # the broker is going away: nothing to tell it
        self._thread = threading.Thread(target=self._handle_results, name="mpbroker-pool-results",
                                        daemon=True)
        self._thread.start()
        _live.add(self)

    # ---- workers -----------------------------------------------------------------------

    def _repopulate(self):
        """Starts workers up to processes, in place of those that exited (maxtasksperchild, a
        crash, a kill), until join() or terminate() stops them."""
        with self._procs_lock:
            self._procs = [p for p in self._procs if p.exitcode is None]
            while not self._workers_stopped and len(self._procs) < self._processes:
                p = self._ctx.Process(target=run_local, name="mpbroker-pool-worker", daemon=True,
                                      args=(self._endpoint, self._authkey, [self._fn],
                                            self._initializer, self._initargs, self._maxtasks,
                                            "pickle"))
                p.start()
                self._procs.append(p)

    def _stop_workers(self, grace):
        with self._procs_lock:
            self._workers_stopped = True
            procs, self._procs = self._procs, []
        for p in procs:
            if p.exitcode is None:
                p.terminate()  # SIGTERM: the worker finishes its task, reports it, unregisters
        for p in procs:
            p.join(grace)
            if p.exitcode is None:
                p.kill()
                p.join()

    # ---- results -----------------------------------------------------------------------

    def _handle_results(self):
        try:
            fd = self._h.fileno()
        except _mpb.Error:
            fd = -1
        while not self._stop:
            if fd >= 0:
                select.select([fd], [], [], _IDLE_S)
            with self._lock:
                if self._stop or self._h is None:
                    break
                try:
                    self._h.poll(0)
                except _mpb.Error as e:
                    self._fail_all(e)
                done = self._h.take_done()
            self._deliver(done)
            if self._manager_closed():
                self._cancel_reason = "the pool's manager was shut down"
                self._gone = True
                self.terminate()
                break
            if self._processes:
                try:
                    self._repopulate()
                except Exception:  # a start that fails now is tried again on the next turn
                    traceback.print_exc()

    def _wait_for(self, event, timeout):
        """Waits for event, reading results meanwhile: the waiting thread reads them itself
        while no other call holds the pool, so a result reaches its caller without a hop
        through the result handler."""
        deadline = None if timeout is None else _now() + timeout
        while not event.is_set():
            left = None if deadline is None else deadline - _now()
            if left is not None and left <= 0:
                return
            ms = _SLICE_MS if left is None else max(0, min(_SLICE_MS, int(left * 1000)))
            if not self._lock.acquire(False):
                event.wait(0.001 if left is None else min(0.001, left))
                continue
            try:
                if self._h is None:
                    done = []
                else:
                    try:
                        self._h.poll(ms)
                    except _mpb.Error as e:
                        self._fail_all(e)
                    done = self._h.take_done()
            finally:
                self._lock.release()
            self._deliver(done)
            if self._h is None:
                event.wait(left)
                return

    def _deliver(self, done):
        for key, ok, value in done:
            with self._cond:
                r = self._results.pop(key, None)
            if r is not None:
                r[0]._set_part(r[1], ok, value)
        if done:
            with self._cond:
                self._cond.notify_all()

    def _manager_closed(self):
        m = self._manager() if self._manager is not None else None
        return m is not None and getattr(m, "_closed", False)

    def _fail_all(self, e):
        with self._cond:
            pending, self._results = self._results, {}
        code = e.args[0] if e.args else _mpb.ECONN
        msg = e.args[1] if len(e.args) > 1 else str(e)
        if code != _mpb.ECANCELED and self._manager_closed():
            # its private broker is gone with it: that is what the callers hear
            code, msg = _mpb.ECANCELED, "the pool's manager was shut down"
        for r, part in pending.values():
            r._set_part(part, False, (code, msg))

    def _submit(self, result, how, *args, part=0):
        key = next(self._keys)
        with self._cond:
            self._results[key] = (result, part)
        try:
            with self._lock:
                self._check_running()
                how(self._fn, *args, key)
                done = self._h.take_done()
        except BaseException:
            with self._cond:
                self._results.pop(key, None)
            raise
        self._deliver(done)
        return result

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")
        if os.getpid() != self._pid:
            raise RuntimeError("a Pool belongs to the process that made it")

    # ---- multiprocessing.Pool's API -------------------------------------------------------

    @staticmethod
    def _ref(func, kwds=None):
        import functools
        import pickle
        if kwds:
            func = functools.partial(func, **kwds)
        return pickle.dumps(func, 4)

    def _key(self, func):
        """The short key a map's calls name func by (worker.function_key), its pickle stored
        in the broker's FUNCTIONS dict the first time this pool uses it."""
        ref = self._ref(func)
        key = self._keys_sent.get(ref)
        if key is None:
            key = function_key(ref)
            with self._lock:
                self._check_running()
                self._client.call(_mpb.OP_DICT_SET, FUNCTIONS, [key, ref])
            self._keys_sent[ref] = key
        return key

    def apply(self, func, args=(), kwds={}):
        """func(*args, **kwds) on a worker; blocks for its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        self._check_running()
        r = ApplyResult(self, callback, error_callback)
        return self._submit(r, self._h.apply, [self._ref(func, kwds), *args])

    def map(self, func, iterable, chunksize=None):
        """[func(x) for x in iterable], in chunks of chunksize calls per task."""
        return self._map_async(func, iterable, chunksize, False).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func, iterable, chunksize=None):
        """[func(*args) for args in iterable]."""
        return self._map_async(func, iterable, chunksize, True).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def _map_async(self, func, iterable, chunksize, star, callback=None, error_callback=None):
        self._check_running()
        if not isinstance(iterable, (list, tuple)):
            iterable = list(iterable)
        if chunksize is not None and chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        if not len(iterable):  # done at once, without its callback, as multiprocessing's
            r = MapResult(self, None, None)
            r._set(True, [])
            return r
        key = self._key(func)
        cs = chunksize or self._chunksize(len(iterable))
        # The first part is a few batches per worker, so that they start while the rest is
        # packed and sent; the rest goes in parts of at most a quarter of the items.
        first = cs * 2 * max(1, self._processes)
        bounds = [0, min(len(iterable), first)]
        step = max(first, len(iterable) // 4)
        while bounds[-1] < len(iterable):
            bounds.append(min(len(iterable), bounds[-1] + step))
        r = MapResult(self, callback, error_callback, len(bounds) - 1)
        for part, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            calls, _ = _mpb.pack_batches(key, iterable[lo:hi], star, cs, _BATCH_BYTES)
            self._submit(r, self._h.starmap, calls, 1, part=part)
        return r

    def _chunksize(self, n):
        """multiprocessing's default: about four chunks per worker (local ones, or those the
        broker counts for this pool's function when it has none of its own)."""
        workers = self._processes
        if not workers:
            with self._lock:
                self._check_running()
                workers = self._client.call(_mpb.OP_POOL_FNINFO, None, [self._fn])[0]
        chunksize, extra = divmod(n, max(1, workers) * 4)
        return chunksize + 1 if extra else max(1, chunksize)

    def imap(self, func, iterable, chunksize=1):
        """Results one by one in input order; the input is read lazily."""
        return self._imap(func, iterable, chunksize, True)

    def imap_unordered(self, func, iterable, chunksize=1):
        """Results one by one as they finish."""
        return self._imap(func, iterable, chunksize, False)

    def _imap(self, func, iterable, chunksize, ordered):
        self._check_running()
        if chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        ref = self._key(func)
        calls = ([ref, x] for x in iterable)
        with self._lock:
            self._check_running()
            it = self._h.imap(self._fn, calls, chunksize, ordered, 0)
        return IMapIterator(self, it)

    def close(self):
        """No more tasks; the workers stop once the outstanding ones are done (join())."""
        if self._state == RUN:
            self._state = CLOSE
            with self._lock:
                self._h.close()

    def terminate(self):
        """Cancels outstanding tasks (their results fail) and stops the workers now."""
        if self._state == TERMINATE and self._h is None:
            return
        self._state = TERMINATE
        if os.getpid() != self._pid:
            return
        done = []
        with self._lock:
            if self._h is not None and not self._gone:
                try:
                    self._h.terminate()
                    self._h.poll(0)
                except _mpb.Error:
                    pass
                done = self._h.take_done()
        self._deliver(done)
        self._stop_workers(1.0)
        self._shutdown()

    def join(self):
        """After close(): waits for every outstanding task, then for the workers to stop."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if os.getpid() != self._pid:
            return
        with self._cond:
            while self._results and self._h is not None:
                self._cond.wait(0.5)
        self._stop_workers(10.0)
        self._shutdown()

    def _shutdown(self):
        _live.discard(self)
        self._stop = True
        if self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            h, self._h = self._h, None
            if h is not None:
                h.free()
                done = h.take_done()
            else:
                done = []
        self._deliver(done)
        self._fail_all(_mpb.Error(_mpb.ECANCELED, self._cancel_reason))
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()

    def __del__(self):
        if getattr(self, "_state", None) == RUN and getattr(self, "_h", None) is not None:
            import warnings
            warnings.warn("unclosed running multiprocessing pool %r" % self, ResourceWarning,
                          source=self)

    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __repr__(self):
        return "<%s.%s state=%s pool_size=%d>" % (self.__class__.__module__,
                                                  self.__class__.__qualname__, self._state,
                                                  self._processes)


class ApplyResult:
    """multiprocessing.pool.ApplyResult: get(), wait(), ready(), successful()."""

    def __init__(self, pool, callback, error_callback, parts=1):
        self._pool = pool
        self._parts = [None] * parts  # (ok, value) of each submitted part, as they come
        self._missing = parts
        self._event = threading.Event()
        self._callback, self._error_callback = callback, error_callback
        self._success = None
        self._value = None

    def ready(self):
        return self._event.is_set()

    def successful(self):
        if not self.ready():
            raise ValueError("{0!r} not ready".format(self))
        return self._success

    def wait(self, timeout=None):
        pool = self._pool
        if pool is None or self._event.is_set():
            self._event.wait(timeout)
        else:
            pool._wait_for(self._event, timeout)

    def get(self, timeout=None):
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _outcome(self, value):
        """(success, value) for a result's value: a TaskFailure becomes its exception."""
        if isinstance(value, TaskFailure):
            return False, value.exception()
        return True, value

    def _set_part(self, part, ok, value):
        """One submitted part finished; the result is set once all have."""
        if self._parts is None or self._parts[part] is not None:
            return
        self._parts[part] = (ok, value)
        self._missing -= 1
        if self._missing:
            return
        if len(self._parts) == 1:
            return self._set(ok, value)
        values = []  # a map's parts: their batches in order, up to the first that failed
        for ok, value in self._parts:
            if not ok:  # unless a batch before it failed first, this part's failure is it
                if not any(isinstance(v, TaskFailure) for v in values):
                    return self._set(ok, value)
                break
            values.extend(value)
        self._set(True, values)

    def _set(self, ok, value):
        self._parts = None
        if ok:
            self._success, self._value = self._outcome(value)
        else:
            self._success, self._value = False, _error(*value)
        try:
            if self._success and self._callback:
                self._callback(self._value)
            if not self._success and self._error_callback:
                self._error_callback(self._value)
        except Exception:  # as multiprocessing's result handler, a callback may not stop it
            traceback.print_exc()
        self._event.set()
        self._pool = None


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The AsyncResult of map_async() and starmap_async(): its value is the list of results;
    it fails with the first call that raised, as multiprocessing's does."""

    def _outcome(self, batches):
        out = []
        for b in batches:  # each batch: its results, or what its first failing item raised
            if isinstance(b, TaskFailure):
                return False, b.exception()
            out.extend(b)
        return True, out


class IMapIterator:
    """The iterator imap() and imap_unordered() return: next(timeout=None)."""

    def __init__(self, pool, it):
        self._pool = pool
        self._it = it
        self._done = False

    def __iter__(self):
        return self

    def next(self, timeout=None):
        if self._done:
            raise StopIteration
        pool = self._pool
        deadline = None if timeout is None else _now() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - _now())
            ms = _SLICE_MS if left is None else min(_SLICE_MS, int(left * 1000))
            with pool._lock:
                if pool._h is None:
                    self._done = True
                    raise _error(_mpb.ECANCELED, "the pool was terminated")
                try:
                    status, value = self._it.next(ms)
                except _mpb.Error as e:
                    if e.args and e.args[0] == _mpb.ECANCELED:
                        self._done = True
                    raise _error(*e.args) from None
            if status == 0:
                if isinstance(value, TaskFailure):
                    raise value.exception()
                return value
            if status == 1:
                self._done = True
                self._pool = None
                raise StopIteration
            if left is not None and left <= 0.0:
                raise TimeoutError

    __next__ = next


def _now():
    import time
    return time.monotonic()
