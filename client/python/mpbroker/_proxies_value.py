"""The proxies of single values: Value, Array and Namespace (proxies.py names them)."""
import array

from ._proxies_data import ListProxy
from ._proxy import _E, BaseProxy


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
        missing = AttributeError("'Namespace' object has no attribute %r" % key)
        return self._call_or(_E.ENOKEY, missing, _E.OP_NS_GET, (key,))

    def __setattr__(self, key, value):
        if key[0] == "_":
            return object.__setattr__(self, key, value)
        self._call(_E.OP_NS_SET, (key, value))

    def __delattr__(self, key):
        if key[0] == "_":
            return object.__delattr__(self, key)
        self._call_or(_E.ENOKEY, AttributeError(key), _E.OP_NS_DEL, (key,))

    def __str__(self):
        items = self._call(_E.OP_NS_LIST)
        temp = ["%s=%r" % (k, v) for k, v in items.items() if not k.startswith("_")]
        return "Namespace(%s)" % ", ".join(sorted(temp))
