"""worker.py - serving Pool tasks in Python.

A worker process registers one broker function name (FUNCTION, "python", unless a pool with an
initializer asked for its own) and runs any call it is sent: a call is the list
[FUNCTION, ARG, ...] where FUNCTION is the pickle of the callable, a reference by module and
qualified name exactly as multiprocessing.Pool pickles it, so no code travels and the module
is imported on first use. What a function raises comes back as a TaskFailure value, which the
caller turns into the same exception with the remote traceback in a note.

    caller ── pool.submit [[pickle(f), 3], ...] ──> broker ──> worker: f(3) ──> 9 | TaskFailure

`python3 -m mpbroker worker` runs serve_processes(); a Pool starts its local workers with
run_local() in processes of the caller's multiprocessing context.
"""
import importlib
import importlib.util
import os
import pickle
import signal
import socket
import sys
import time
import traceback
from multiprocessing.pool import RemoteTraceback

from . import _mpb

FUNCTION = "python"
# Maps' calls name their function by a short key instead of its pickle (a pickle is ~30 bytes,
# often more than the item): KEY_PREFIX + 11 bytes of its BLAKE2b digest, the pickle stored
# once under that key in the broker's dict FUNCTIONS, where workers read it on first use.
FUNCTIONS = "python.functions"
KEY_PREFIX = b"\x00"


def function_key(ref):
    """The short key of a function's pickle."""
    import hashlib
    return KEY_PREFIX + hashlib.blake2b(ref, digest_size=11).digest()

# Functions already unpickled, by their pickle; bounded so that a long-lived worker serving many
# programs does not grow without end.
_CACHE_MAX = 4096
# Tasks a Pool's local worker holds beyond the one it runs: its next tasks are at hand when it
# finishes one, as multiprocessing's workers find theirs in their pipe.
_LOCAL_PREFETCH = 4


class TaskFailure:
    """What a task raised, as a value that travels: the pickled exception when it pickles (so
    its type and args come back exactly), else its type's module and name and its text."""

    __slots__ = ("blob", "module", "qualname", "text", "tb")

    def __init__(self, blob, module, qualname, text, tb):
        self.blob, self.module, self.qualname, self.text, self.tb = blob, module, qualname, text, tb

    def __reduce__(self):
        return (TaskFailure, (self.blob, self.module, self.qualname, self.text, self.tb))

    @classmethod
    def capture(cls, e, skip=0):
        """A TaskFailure for exception e; skip: innermost frames of the worker itself to drop."""
        tb = e.__traceback__
        for _ in range(skip):
            if tb is not None:
                tb = tb.tb_next
        text = "".join(traceback.format_exception(type(e), e, tb))
        where = "Remote traceback (pid %d on %s):\n" % (os.getpid(), socket.gethostname())
        try:
            blob = pickle.dumps(e, 4)
            pickle.loads(blob)  # an exception whose __init__ refuses its own args
        except Exception:
            blob = None
        try:
            msg = str(e)
        except Exception:
            msg = repr(e)
        t = type(e)
        return cls(blob, t.__module__, t.__qualname__, msg, where + text.rstrip("\n"))

    def exception(self):
        """The exception to raise in the caller, with the remote traceback as its cause (a
        multiprocessing.pool.RemoteTraceback, as multiprocessing.Pool gives) and as a note."""
        exc = None
        if self.blob is not None:
            try:
                exc = pickle.loads(self.blob)
            except Exception:
                exc = None
            if not isinstance(exc, BaseException):
                exc = None
        if exc is None:
            t = _find(self.module, self.qualname)
            if isinstance(t, type) and issubclass(t, BaseException):
                exc = t.__new__(t)
                exc.args = (self.text,)
            else:
                from .pool import RemoteError
                exc = RemoteError("%s.%s: %s" % (self.module, self.qualname, self.text))
        exc.add_note(self.tb)
        exc.__cause__ = RemoteTraceback('\n"""\n%s\n"""' % self.tb)
        return exc


def _find(module, qualname):
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj
    except Exception:
        return None


class Functions:
    """What _mpb.Worker calls back: resolve(ref) unpickles a call's FUNCTION (a chunk's calls
    share one, which the extension keeps; others are cached here), capture(exc) and
    fail(exc, value) make the TaskFailure that reports an exception. The calls themselves run
    in the extension, without a Python frame of ours around them."""

    def __init__(self, connect=None):
        self._fns = {}
        self._connect = connect  # a Client for reading FUNCTIONS, when a key needs it
        self._side = None

    def _pickle_of(self, key):
        if self._connect is None:
            raise LookupError("function key %s: no broker to look it up" % key.hex())
        if self._side is None:
            self._side = self._connect()
        try:
            return self._side.call(_mpb.OP_DICT_GET, FUNCTIONS, [key])
        except _mpb.Error as e:
            if e.args and e.args[0] == _mpb.ENOKEY:
                raise LookupError("function key %s is not in %s" % (key.hex(), FUNCTIONS))
            raise

    def resolve(self, ref):
        fn = self._fns.get(ref)
        if fn is None:
            fn = pickle.loads(self._pickle_of(ref) if ref[:1] == KEY_PREFIX else ref)
            if not callable(fn):
                raise TypeError("%r object is not callable" % type(fn).__name__)
            if len(self._fns) >= _CACHE_MAX:
                self._fns.clear()
            self._fns[ref] = fn
        return fn

    @staticmethod
    def capture(exc):
        return TaskFailure.capture(exc)

    @staticmethod
    def fail(exc, value):
        """The result could not be encoded: fail the call as multiprocessing does."""
        from multiprocessing.pool import MaybeEncodingError
        try:
            raise MaybeEncodingError(exc, value)
        except MaybeEncodingError as e:
            return TaskFailure.capture(e)


def serve(client, names=(FUNCTION,), max_tasks=0, prefetch=1, connect=None):
    """Serves names on client until SIGTERM or SIGINT (from the main thread) or max_tasks;
    connect() makes a second Client for reading function keys (the first one is busy)."""
    import threading
    f = Functions(connect)
    w = _mpb.Worker(client, list(names), f.resolve, f.capture, f.fail, 1, prefetch, max_tasks)
    w.serve(threading.current_thread() is threading.main_thread())
    return w.tasks_done


def run_local(endpoint, authkey, names, initializer, initargs, max_tasks, serializer):
    """The body of a Pool's local worker process (the target of its multiprocessing.Process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C goes to the caller, which stops us
    if initializer is not None:
        initializer(*initargs)
    try:
        client = _mpb.Client(endpoint, authkey, name="pool-worker", serializer=serializer)
        try:
            serve(client, names, max_tasks or 0, prefetch=_LOCAL_PREFETCH,
                  connect=lambda: _mpb.Client(endpoint, authkey, name="pool-worker",
                                              serializer=serializer))
        finally:
            client.close()
    except _mpb.Error as e:  # the broker went away (its manager shut down): nothing to serve
        sys.stderr.write("mpbroker pool worker %d: %s\n" % (os.getpid(), e.args[-1]))
        sys.exit(2)


def load_module(spec):
    """--import: a module name, or the path of a script whose functions callers pickled as
    __main__ (it is loaded as __mp_main__ and stands in for __main__, as multiprocessing's
    spawn does)."""
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        s = importlib.util.spec_from_file_location("__mp_main__", path)
        if s is None:
            raise ImportError("cannot load %s" % path)
        mod = importlib.util.module_from_spec(s)
        sys.modules["__mp_main__"] = mod
        sys.path.insert(0, os.path.dirname(path))
        s.loader.exec_module(mod)
        sys.modules["__main__"] = mod
        return mod
    return importlib.import_module(spec)


def _child(endpoint, authkey, names, max_tasks, prefetch):
    """A forked worker process: the --import modules came with the fork."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    client = _mpb.Client(endpoint, authkey, name="python-worker")
    try:
        serve(client, names, max_tasks, prefetch,
              connect=lambda: _mpb.Client(endpoint, authkey, name="python-worker"))
    except _mpb.Error as e:
        print("mpbroker worker %d: %s" % (os.getpid(), e), file=sys.stderr)
        os._exit(2)
    finally:
        client.close()
    os._exit(0)


def serve_processes(endpoint, authkey, processes, names=(FUNCTION,), imports=(), max_tasks=0,
                    prefetch=1, log=None):
    """Runs processes worker processes until SIGTERM or SIGINT; one that exits (max_tasks, a
    lost broker, a crash) is replaced after a pause that grows while they keep failing."""
    for m in imports:  # fail here, once, for a module that does not import
        load_module(m)
    _mpb.Client(endpoint, authkey, name="python-worker").close()  # and for a wrong key
    stopping = []

    def on_signal(sig, frame):
        stopping.append(sig)
        raise _Stop()  # out of waitpid(), which Python would otherwise resume

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    children = {}
    backoff = 0.0
    try:
        while not stopping:
            while len(children) < processes and not stopping:
                # Signals wait until the child is on the list, so that the stop reaches it.
                signal.pthread_sigmask(signal.SIG_BLOCK, list(old))
                pid = os.fork()
                if pid == 0:
                    for s in old:
                        signal.signal(s, signal.SIG_DFL)
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, list(old))
                    try:
                        _child(endpoint, authkey, names, max_tasks, prefetch)
                    finally:
                        os._exit(1)
                children[pid] = time.monotonic()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, list(old))
                if log:
                    log("worker process %d started" % pid)
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            started = children.pop(pid, None)
            if log:
                log("worker process %d exited (%s)" % (pid, _status(status)))
            if started is not None and not stopping:
                ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
                quick = time.monotonic() - started < 5  # it failed at once: do not spin
                backoff = min(5.0, backoff * 2 or 0.1) if quick and not ok else 0.0
                if backoff:
                    time.sleep(backoff)
    except _Stop:
        pass
    finally:
        for s in old:  # a second ^C or SIGTERM must not cut the stopping short
            signal.signal(s, signal.SIG_IGN)
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                children.pop(pid, None)
            else:
                time.sleep(0.02)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for s, h in old.items():
            signal.signal(s, h)
    return 0


class _Stop(Exception):
    pass


def _status(status):
    if os.WIFSIGNALED(status):
        return "signal %d" % os.WTERMSIG(status)
    return "status %d" % os.WEXITSTATUS(status)
