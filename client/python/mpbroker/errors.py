"""How the broker's error codes become Python's exceptions.

The proxies raise what Python's own proxies raise (KeyError, IndexError, queue.Empty, ...);
translate() gives the exception for a code where the call site has nothing more specific.
"""
import queue
import threading
from multiprocessing import AuthenticationError

from . import _mpb
from ._mpb import Error

_BY_CODE = {
    _mpb.ENOKEY: KeyError,
    _mpb.EINDEX: IndexError,
    _mpb.EVALUE: ValueError,
    _mpb.EEMPTY: queue.Empty,
    _mpb.EFULL: queue.Full,
    _mpb.EBROKEN: threading.BrokenBarrierError,
    _mpb.ENOTOWNER: RuntimeError,
    _mpb.ETYPE: TypeError,
    _mpb.EKIND: TypeError,
    _mpb.EINVAL: ValueError,
    _mpb.ETOOBIG: ValueError,
    _mpb.EOVERFLOW: OverflowError,
    _mpb.EAUTH: AuthenticationError,
    _mpb.ECONN: ConnectionError,
    _mpb.ETIMEDOUT: TimeoutError,
    _mpb.ENOOBJ: ReferenceError,
    _mpb.ENOMEM: MemoryError,
    _mpb.ELIMIT: MemoryError,
}


def code(err):
    """The negative MPB_E* code of an _mpb.Error."""
    return err.args[0]


def message(err):
    return err.args[1] if len(err.args) > 1 else _mpb.strerror(err.args[0])


def translate(err):
    """The Python exception for _mpb.Error err (err itself when no better one exists)."""
    cls = _BY_CODE.get(code(err))
    if cls is None:
        return err
    e = cls(message(err))
    e.__cause__ = err
    e.__suppress_context__ = True
    return e


__all__ = ["Error", "AuthenticationError", "translate", "code", "message"]
