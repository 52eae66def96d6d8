"""The proxies: the methods, operators, exceptions and blocking behaviour of Python's own
multiprocessing.managers proxies, each a thin layer over the broker's ops (PROTOCOL.md §6).

A proxy holds the object's name and the _Conn of its broker. Pickled (into a Process's
arguments, a Queue, another proxy) it becomes (class, endpoint, name, settings): the receiving
process reaches the same object with a session of its own. The authkey travels only to a
child being spawned, as multiprocessing does; elsewhere it comes from a manager of the
receiving process, MPB_AUTHKEY_FILE / MPB_AUTHKEY or the process's authkey.
"""
from ._proxy import BaseProxy, _rebuild, make  # noqa: F401 (names of this module)
from ._proxies_data import DictProxy, ListProxy, QueueProxy
from ._proxies_sync import (BarrierProxy, ConditionProxy, EventProxy, LockProxy, RLockProxy,
                            SemaphoreProxy)
from ._proxies_value import ArrayProxy, NamespaceProxy, ValueProxy
from .errors import message  # noqa: F401 (in __all__)

# The proxies keep the names they pickle and print under (mpbroker.proxies.DictProxy), wherever
# their code lives.
for _c in (BaseProxy, DictProxy, ListProxy, QueueProxy, LockProxy, RLockProxy, SemaphoreProxy,
           ConditionProxy, EventProxy, BarrierProxy, ValueProxy, ArrayProxy, NamespaceProxy):
    _c.__module__ = __name__
_rebuild.__module__ = make.__module__ = __name__
del _c

__all__ = ["BaseProxy", "DictProxy", "ListProxy", "QueueProxy", "LockProxy", "RLockProxy",
           "SemaphoreProxy", "ConditionProxy", "EventProxy", "BarrierProxy", "ValueProxy",
           "ArrayProxy", "NamespaceProxy", "message"]
