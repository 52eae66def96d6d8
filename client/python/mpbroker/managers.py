"""Manager: the entry point, as multiprocessing.Manager() is used.

Manager() without an address (and without MPB_ENDPOINT) starts a private mpbrokerd on a unix://
endpoint in a private temporary directory, with a fresh random authkey, and stops it on
shutdown(), at the end of a with block or at interpreter exit. Manager(address, authkey=...)
connects to a running broker instead. Either way the manager makes proxies (manager.dict(),
manager.Lock(), ...) that talk to the broker through per-thread sessions of this process
(_Conn), and that other processes (fork, spawn, other hosts) reach with sessions of their own.
"""
import atexit
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import threading
import time
import weakref

from . import _mpb
from .errors import translate

# ---- sessions: one per (broker, process, thread) ----------------------------------------------

# This process's id, kept by a fork handler: os.getpid() is a system call, and every request
# asks whether its thread's session is this process's.
_pid = os.getpid()


def _note_pid():
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_note_pid)


class _Conn:
    """The way to one broker from this process: a libmpb session per thread (each thread its own
    lock owner, and a blocked call in one thread holds up no other), made on first use and again
    in a forked child, where the inherited ones are unusable; and one more session per process
    that holds the references of its proxies to anonymous objects (it never blocks, and it
    lives until close_refs() or the process's end, whichever thread made the proxies)."""

    def __init__(self, endpoint, authkey, serializer):
        self.endpoint = endpoint
        self.authkey = authkey
        self.serializer = serializer
        self._local = threading.local()
        self._refs = None  # the reference session, and the pid that made it
        self._refs_lock = threading.Lock()
        self._pinned = set()
        self._refs_closed = False
        self.shut = False  # set by its manager's shutdown(): no new sessions

    def _connect(self):
        if self.shut and self._pid_shut == os.getpid():
            raise RuntimeError("the manager of %s is shut down" % self.endpoint)
        try:
            return _mpb.Client(self.endpoint, self.authkey, name=_procname(),
                               serializer=self.serializer)
        except _mpb.Error as e:
            raise translate(e) from None

    def client(self):
        c = getattr(self._local, "c", None)
        if c is None or c.pid != _pid or c.closed:
            c = self._local.c = self._connect()
        return c

    def invoke(self, op, name, args=None, block_ms=0):
        """One request on this thread's session; _mpb.Error as the broker answers it. A session
        that has ended (expired: the process was stopped or starved past the broker's TTL, or
        the broker restarted) is replaced: the request, which the broker refused unrun, is sent
        once more on a new session. What the old session held (locks) is gone with it."""
        c = self.client()
        try:
            return c.call(op, name, args, block_ms)
        except _mpb.Error as e:
            if e.args[0] not in (_mpb.ESESSION, _mpb.ECONN):
                raise
            self._local.c = None  # the next call connects anew
            c.close()
            if e.args[0] == _mpb.ECONN:
                raise  # it may have run: not sent again
        return self.client().call(op, name, args, block_ms)

    def _refclient(self):
        with self._refs_lock:
            c = self._refs
            if c is None or c.pid != os.getpid():
                if c is not None:  # inherited through fork: the parent's references
                    self._pinned = set()
                    self._refs_closed = False
                c = self._refs = self._connect()
            return c

    def _refcall(self, op, name, args=None):
        """A request on the reference session. One that has ended (expired) is replaced, as in
        invoke(); the references it held are gone with it."""
        c = self._refclient()
        try:
            return c.call(op, name, args)
        except _mpb.Error as e:
            if e.args[0] != _mpb.ESESSION:
                raise
            with self._refs_lock:
                if self._refs is c:
                    self._refs = None
                    self._pinned = set()
            c.close()
        return self._refclient().call(op, name, args)

    def new(self, kind, args):
        """obj.new: a new anonymous object of kind, opened with args; (name, open's reply)."""
        try:
            return self._refcall(_mpb.OP_OBJ_NEW, None, [kind, *args])
        except _mpb.Error as e:
            raise translate(e) from None

    def ref(self, path):
        """Takes a reference to anonymous object path for a proxy; False when it could not
        (the object is gone: the proxy's calls will say so)."""
        if self._refs_closed:
            return False
        try:
            self._refcall(_mpb.OP_OBJ_REF, path)
            return True
        except (_mpb.Error, OSError, multiprocessing.AuthenticationError):
            return False

    def unref(self, path):
        if self._refs_closed:
            return
        c = self._refs
        if c is None or c.pid != os.getpid() or c.closed:
            return
        try:
            c.call(_mpb.OP_OBJ_UNREF, path)
        except Exception:
            pass  # gone already; a proxy's end must not raise

    def pin(self, path):
        """Keeps anonymous object path alive while this process holds its references: a proxy
        pickled away (into another object, a queue) reaches a holder of its own later."""
        if path not in self._pinned and self.ref(path):
            self._pinned.add(path)

    def close_refs(self):
        """Gives back every reference of this process's proxies (the broker deletes what no one
        else refers to) and takes no more."""
        with self._refs_lock:
            self._refs_closed = True
            c, self._refs = self._refs, None
        if c is not None and c.pid == os.getpid():
            c.close()

    def call(self, op, name, args=None, block_ms=0):
        try:
            return self.invoke(op, name, args, block_ms)
        except _mpb.Error as e:
            raise translate(e) from None

    def close_thread(self):
        """Ends this thread's session now (its locks are released)."""
        c = getattr(self._local, "c", None)
        self._local.c = None
        if c is not None and c.pid == os.getpid():
            c.close()


def _procname():
    try:
        return "py:" + multiprocessing.current_process().name
    except Exception:  # during interpreter shutdown
        return "py"


_conns = {}
_conns_lock = threading.Lock()
_keys = {}  # endpoint -> authkey, for proxies unpickled without one


def get_conn(endpoint, authkey=None, serializer="pickle"):
    """The _Conn of this process for endpoint; authkey None looks it up (a manager of this
    process or its parent, MPB_AUTHKEY_FILE, MPB_AUTHKEY, the process's own authkey)."""
    if authkey is None:
        authkey = _keys.get(endpoint)
    if authkey is None:
        authkey = default_authkey()
    with _conns_lock:
        k = (endpoint, bytes(authkey), serializer)
        c = _conns.get(k)
        if c is None:
            c = _conns[k] = _Conn(endpoint, bytes(authkey), serializer)
            _keys.setdefault(endpoint, bytes(authkey))
        return c


def default_authkey():
    path = os.environ.get("MPB_AUTHKEY_FILE")
    if path:
        with open(path, "rb") as f:
            key = f.read().rstrip(b"\r\n")
        if not key:
            raise ValueError("authkey file %s is empty" % path)
        return key
    if os.environ.get("MPB_AUTHKEY"):
        return os.environ["MPB_AUTHKEY"].encode()
    return bytes(multiprocessing.current_process().authkey)


def endpoint_of(address):
    """"tcp://host:port", "mpb://host:port", "ipc:///path", "unix:///path", ("host", port) or
    "host:port" -> an endpoint."""
    if isinstance(address, tuple):
        if len(address) != 2 or not isinstance(address[0], str) or not isinstance(
                address[1], int) or isinstance(address[1], bool):
            raise TypeError("address must be (host, port), not %r" % (address,))
        host = "[%s]" % address[0] if ":" in address[0] else address[0]
        return "tcp://%s:%d" % (host or "127.0.0.1", address[1])
    if not isinstance(address, str):
        raise TypeError("address must be a str like 'tcp://host:5555' or a (host, port) tuple, "
                        "not %s" % type(address).__name__)
    if "://" in address:
        return address
    if ":" in address:
        return "tcp://" + address
    raise ValueError("address %r: expected tcp://host:port, mpb://host:port, ipc:///path, "
                     "unix:///path or "
                     "(host, port)"
                     % address)


# ---- the private broker -------------------------------------------------------------------


def find_program(name):
    """A program of ours: next to the package, in the build tree that made it, or on PATH."""
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [os.path.join(here, "bin")]
    try:
        from . import _paths
        dirs += _paths.BINDIRS
    except ImportError:
        pass
    for d in dirs:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    p = shutil.which(name)
    if p:
        return p
    raise FileNotFoundError("%s not found next to the mpbroker package (%s) or on PATH; "
                            "install mpbroker's programs or give Manager an address" % (name, here))


class _PrivateBroker:
    """mpbrokerd for one Manager(), as multiprocessing's manager process: its objects live as
    long as it does, so nothing is written to disk (--persist off; its directory goes at stop)
    and nothing serves HTTP."""

    def __init__(self, authkey, args=()):
        self.dir = tempfile.mkdtemp(prefix="mpbroker-")
        keyfile = os.path.join(self.dir, "authkey")
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(authkey)
        # unix://: the broker's loop reads the socket itself (no ZeroMQ I/O thread on either
        # side), which is what a local round trip costs least with.
        self.endpoint = "unix://%s/broker.sock" % self.dir
        epfile = os.path.join(self.dir, "endpoint")
        logpath = os.path.join(self.dir, "log")
        with open(logpath, "wb") as log:
            self.proc = subprocess.Popen(
                [find_program("mpbrokerd"), "--listen", self.endpoint, "--authkey-file", keyfile,
                 "--data-dir", os.path.join(self.dir, "data"), "--endpoint-file", epfile,
                 "--log-level", "warn", "--persist", "off", "--http", "off", *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=_broker_env())
        self.pid = os.getpid()
        deadline = time.monotonic() + 10
        delay = 0.0005
        while not os.path.exists(epfile):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(logpath, "rb") as f:
                    why = f.read().decode(errors="replace").strip()
                self.stop()
                raise RuntimeError("mpbrokerd did not start: %s" % (why or "no output"))
            time.sleep(delay)
            delay = min(delay * 2, 0.002)  # the broker is up in ~20 ms: look often

    def stop(self):
        if self.pid != os.getpid():
            return  # a forked child: the broker is its parent's
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _broker_env():
    # The broker takes its key from --authkey-file; settings meant for a shared broker must not
    # leak into the private one.
    return {k: v for k, v in os.environ.items()
            if not k.startswith("MPB_") or k in ("MPB_LOG_LEVEL",)}


# ---- Manager ------------------------------------------------------------------------------

_live = weakref.WeakSet()


@atexit.register
def _shutdown_all():
    for m in list(_live):
        m.shutdown()


class Manager:
    """A started manager, as multiprocessing.Manager() returns (and SyncManager's methods).

    Manager()                             a private broker for this program
    Manager("tcp://host:5555", authkey=k)  a shared broker; also ("host", 5555)
    MPB_ENDPOINT / MPB_AUTHKEY_FILE / MPB_AUTHKEY  the address and key when none is given

    serializer="msgpack" refuses pickle: only msgpack-native values may be stored, and values
    others stored pickled come back as mpbroker.Ext. broker_args are extra mpbrokerd flags for
    the private broker (e.g. ["--session-ttl-ms", "500"]).
    """

    def __init__(self, address=None, authkey=None, *, serializer="pickle", broker_args=()):
        if serializer not in ("pickle", "msgpack"):
            raise ValueError('serializer must be "pickle" or "msgpack", not %r' % (serializer,))
        if authkey is not None and not isinstance(authkey, (bytes, bytearray, str)):
            raise TypeError("authkey must be bytes or str, not %s" % type(authkey).__name__)
        if isinstance(authkey, str):
            authkey = authkey.encode()
        self._broker = None
        self._pid = os.getpid()
        self._closed = False
        if address is None:
            address = os.environ.get("MPB_ENDPOINT") or None
        if address is None:
            # Text: the broker reads the key from a file, which drops a trailing CR or LF.
            authkey = bytes(authkey) if authkey else os.urandom(32).hex().encode()
            if authkey.endswith((b"\r", b"\n")):
                raise ValueError("a private broker's authkey cannot end with CR or LF (it is "
                                 "passed in a file, whose line end is dropped)")
            self._broker = _PrivateBroker(authkey, broker_args)
            endpoint = self._broker.endpoint
        else:
            endpoint = endpoint_of(address)
            authkey = bytes(authkey) if authkey is not None else default_authkey()
        _keys[endpoint] = authkey
        # A _Conn of its own: shutdown() gives back this manager's references only.
        self._conn = _Conn(endpoint, authkey, serializer)
        try:
            self._conn.client()
        except BaseException:
            if self._broker:
                self._broker.stop()
            raise
        _live.add(self)

    # -- what SyncManager has
    @property
    def address(self):
        return self._conn.endpoint

    @property
    def authkey(self):
        return self._conn.authkey

    @property
    def serializer(self):
        return self._conn.serializer

    def start(self, initializer=None, initargs=()):
        """Nothing to do: a Manager is started when made (kept for SyncManager's callers)."""
        if initializer is not None:
            initializer(*initargs)

    def connect(self):
        self._conn.client()

    def join(self, timeout=None):
        pass

    def shutdown(self):
        """Gives back the references of the manager's proxies in this process (the broker
        deletes the unnamed objects no other process refers to), ends its sessions and stops
        the private broker. Only in the process that made the manager; idempotent."""
        if self._closed or self._pid != os.getpid():
            return
        self._closed = True
        _live.discard(self)
        self._conn.close_refs()
        self._conn.close_thread()
        self._conn.shut, self._conn._pid_shut = True, os.getpid()
        if self._broker:
            self._broker.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def __reduce__(self):
        raise TypeError("a Manager cannot be pickled; pass its proxies, or connect with "
                        "mpbroker.connect(address, authkey)")

    # -- the shared objects
    def _make(self, cls, name, *args, **kw):
        from . import proxies
        return proxies.make(self, cls, name, *args, **kw)

    def dict(self, *args, name=None, **kw):
        from .proxies import DictProxy
        return self._make(DictProxy, name, *args, **kw)

    def list(self, sequence=(), *, name=None):
        from .proxies import ListProxy
        return self._make(ListProxy, name, sequence)

    def Queue(self, maxsize=0, *, name=None):
        from .proxies import QueueProxy
        return self._make(QueueProxy, name, maxsize, False)

    def JoinableQueue(self, maxsize=0, *, name=None):
        from .proxies import QueueProxy
        return self._make(QueueProxy, name, maxsize, True)

    def Lock(self, *, name=None):
        from .proxies import LockProxy
        return self._make(LockProxy, name)

    def RLock(self, *, name=None):
        from .proxies import RLockProxy
        return self._make(RLockProxy, name)

    def Semaphore(self, value=1, *, name=None):
        from .proxies import SemaphoreProxy
        return self._make(SemaphoreProxy, name, value, False)

    def BoundedSemaphore(self, value=1, *, name=None):
        from .proxies import SemaphoreProxy
        return self._make(SemaphoreProxy, name, value, True)

    def Condition(self, lock=None, *, name=None):
        from .proxies import ConditionProxy
        return self._make(ConditionProxy, name, lock)

    def Event(self, *, name=None):
        from .proxies import EventProxy
        return self._make(EventProxy, name)

    def Barrier(self, parties, action=None, timeout=None, *, name=None):
        from .proxies import BarrierProxy
        return self._make(BarrierProxy, name, parties, action, timeout)

    def Value(self, typecode, value, lock=True, *, name=None):
        from .proxies import ValueProxy
        return self._make(ValueProxy, name, typecode, value)

    def Array(self, typecode, sequence, lock=True, *, name=None):
        from .proxies import ArrayProxy
        return self._make(ArrayProxy, name, typecode, sequence)

    def Namespace(self, *, name=None, **kw):
        from .proxies import NamespaceProxy
        return self._make(NamespaceProxy, name, **kw)

    def Pool(self, *args, **kw):
        from .pool import Pool
        return Pool(*args, manager=self, **kw)


def connect(address=None, authkey=None, **kw):
    """A Manager on a running broker: address and authkey as Manager's, or from MPB_ENDPOINT,
    MPB_AUTHKEY_FILE / MPB_AUTHKEY. Never starts a broker."""
    if address is None:
        address = os.environ.get("MPB_ENDPOINT") or None
    if address is None:
        raise ValueError("no broker address: give one, or set MPB_ENDPOINT")
    return Manager(address, authkey, **kw)
