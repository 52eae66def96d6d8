"""mpbroker: multiprocessing.Manager across hosts.

    import mpbroker
    with mpbroker.Manager() as m:          # was: multiprocessing.Manager()
        d = m.dict()

Manager() with no arguments starts a private broker (mpbrokerd) for this program; with an
address ("tcp://host:5555" or ("host", 5555)) and an authkey, or MPB_ENDPOINT and
MPB_AUTHKEY_FILE / MPB_AUTHKEY, it connects to a broker that other hosts share.
"""
from . import _mpb
from ._mpb import Error, Ext
from .errors import AuthenticationError
from .managers import Manager, connect
from .proxies import (ArrayProxy, BarrierProxy, BaseProxy, ConditionProxy, DictProxy,
                      EventProxy, ListProxy, LockProxy, NamespaceProxy, QueueProxy,
                      RLockProxy, SemaphoreProxy, ValueProxy)

__all__ = ["Manager", "connect", "Error", "Ext", "AuthenticationError", "BaseProxy",
           "DictProxy", "ListProxy", "QueueProxy", "LockProxy", "RLockProxy", "SemaphoreProxy",
           "ConditionProxy", "EventProxy", "BarrierProxy", "ValueProxy", "ArrayProxy",
           "NamespaceProxy"]
