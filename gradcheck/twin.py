"""The automatic JAX twin: the user's plain numpy forward, re-created to run on JAX.

Hand-written backprop is plain numpy (``import numpy as np``, loops, ``h[t] = ...``,
``dx[idx] -= 1``, ``float(loss)``, module-level helpers, layer objects caching in ``self``).
JAX cannot differentiate it as it is, and rebinding ``np`` alone is not enough.  This module
builds a *twin* of such code without touching it:

* **Rebinding.**  Every plain-Python function the forward reaches is re-created with
  ``types.FunctionType`` over the same code and a *copy* of its globals in which the numpy
  module is replaced by :data:`NUMPY` (a numpy-compatible namespace on ``jax.numpy``) and
  ``math`` by :data:`MATH`; the functions, classes (methods, properties, static and class
  methods), closures, bound methods, instances and modules it reaches from there are translated
  the same way, lazily and memoised (one copied globals dict per original globals dict).  Code
  of the standard library, of installed packages and of gradcheck itself is left alone.  The
  user's modules, objects and globals are never modified: the twin reads them and writes only
  into its copies.
* **Mutable arrays.**  numpy code writes into arrays; JAX arrays are immutable.  Every array
  the twin makes is a :class:`Box`: a mutable cell around a JAX value whose item assignment is
  ``.at[...].set``, whose in-place operators (``+=``) rebind the value and keep the object's
  identity, and whose ``np.add.at`` / ``out=`` write into it.  ``float(x)`` and ``x.item()`` on a
  traced value pass the value through (as a 0-d array) where it flows back into array code.
  Writes through a *view* (``v = h[0]; v += 1``) do not reach the base array in a twin: such a
  forward computes another value, which the caller's value check detects.
* **Gaps.**  Names numpy has and ``jax.numpy`` lacks get small equivalents (``row_stack``,
  ``lib.stride_tricks.sliding_window_view``, ``copyto``, ``fill_diagonal``, ufunc ``.at`` /
  ``.outer`` / ``.reduce``); a numpy function with no equivalent raises :class:`TwinGap`, which
  names it.
* **Precision.**  The twin computes in float64 (float16/float32 requests are promoted): it is
  the reference for the *mathematical* gradient, and a float32 forward's own rounding is what
  finite differences struggle with.

The twin is only ever *used* after the caller has checked it (``gradcheck.references``): its
loss must be the numpy forward's within the forward's noise, and a finite-difference spot check
along a seeded direction must agree with its gradient.  Everything here imports JAX lazily.
"""

from __future__ import annotations

import builtins
import functools
import math
import os
import sys
import sysconfig
import traceback
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

import numpy as np

__all__ = ["MATH", "NUMPY", "Box", "TwinGap", "box_tree", "clear_cache", "function_key", "is_user_code",
           "plain_reason", "raw_tree", "twin_of"]


class TwinGap(TypeError):
    """The forward uses something the twin cannot express on JAX (named in the message)."""


class _TracedToNumpy(TypeError):
    """An array computed from the parameters reached code that only takes numpy arrays."""


def _jnp() -> Any:
    import jax.numpy as jnp

    return jnp


def _traced(v: Any) -> bool:
    import jax

    return isinstance(v, jax.core.Tracer)


def _dtype(d: Any) -> Any:
    """A dtype request as the twin honours it: lower-precision floats become float64 (complex:
    complex128); anything else is kept."""
    if d is None:
        return None
    try:
        dt = np.dtype(d)
    except TypeError:
        return d
    if dt.kind == "f" and dt.itemsize < 8:
        return np.dtype(np.float64)
    if dt.kind == "c" and dt.itemsize < 16:
        return np.dtype(np.complex128)
    return dt


def _promote(v: Any) -> Any:
    dt = getattr(v, "dtype", None)
    if dt is None:
        return v
    want = _dtype(dt)
    return v.astype(want) if want is not None and want != dt else v


def _wrap(x: Any) -> Any:
    """JAX arrays (and tuples / lists of them) as :class:`Box` es, promoted to float64."""
    import jax

    if isinstance(x, jax.Array) or _traced(x):
        return Box(_promote(x))
    if isinstance(x, tuple) and not hasattr(x, "_fields"):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def raw_tree(x: Any) -> Any:
    """``x`` with every :class:`Box` replaced by its JAX value (through dicts, lists, tuples)."""
    if isinstance(x, Box):
        return x.v
    if isinstance(x, dict):
        return {k: raw_tree(v) for k, v in x.items()}
    if isinstance(x, tuple):
        items = [raw_tree(v) for v in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    if isinstance(x, list):
        return [raw_tree(v) for v in x]
    return x


def box_tree(x: Any) -> Any:
    """``x`` with every numpy or JAX array replaced by a :class:`Box` (float64), through dicts,
    lists and tuples; anything else (ints, strings, lists of ints) is kept."""
    import jax

    if isinstance(x, Box):
        return x
    if isinstance(x, np.ndarray) and x.dtype.kind in "biufc":
        # A copy: on the CPU jnp.asarray may share an aligned numpy buffer, and the twin must
        # not follow (or make) later writes to the user's array.  A concrete array even when
        # the twin is built inside a trace (a global the translation boxes is a constant, and
        # kept: a tracer there would leak into later calls).
        with jax.ensure_compile_time_eval():
            return Box(_jnp().array(x, dtype=_dtype(x.dtype), copy=True))
    if isinstance(x, jax.Array) or _traced(x):
        return Box(_promote(x))
    if isinstance(x, dict):
        return type(x)({k: box_tree(v) for k, v in x.items()}) if type(x) is dict else {
            k: box_tree(v) for k, v in x.items()}
    if isinstance(x, tuple):
        items = [box_tree(v) for v in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    if isinstance(x, list):
        return [box_tree(v) for v in x]
    return x


def _index(idx: Any) -> Any:
    """A numpy index for a JAX array: Boxes unwrapped, Python lists as arrays."""
    if isinstance(idx, tuple):
        return tuple(_index(i) for i in idx)
    if isinstance(idx, Box):
        return idx.v
    if isinstance(idx, list):
        return _jnp().asarray(raw_tree(idx))
    return idx


def _operand(x: Any) -> Any:
    x = raw_tree(x)
    return _jnp().asarray(x) if isinstance(x, list | tuple) else x


def _binary(name: str, reflected: bool = False) -> Callable[[Box, Any], Any]:
    def op(self: Box, other: Any) -> Any:
        if other is None and name in ("equal", "not_equal"):  # numpy: elementwise, never equal
            return Box(_jnp().full(self.v.shape, name == "not_equal"))
        fn = getattr(_jnp(), name)
        o = _operand(other)
        return _wrap(fn(o, self.v) if reflected else fn(self.v, o))
    return op


def _inplace(name: str) -> Callable[[Box, Any], Any]:
    def op(self: Box, other: Any) -> Box:
        new = getattr(_jnp(), name)(self.v, _operand(other))
        self.v = new.astype(self.v.dtype) if new.dtype != self.v.dtype else new
        return self
    return op


class Box:
    """A mutable array around a JAX value: numpy's write semantics on an immutable JAX array.

    ``b[i] = v`` is ``b.v = b.v.at[i].set(v)``; ``b += v`` rebinds ``b.v`` (same object, so every
    name bound to ``b`` sees the change, as with numpy); reads and arithmetic return new Boxes.
    numpy defers to it (``__array_ufunc__ = None``), so ``numpy_array + box`` is a Box too.
    """

    __slots__ = ("__weakref__", "v")
    __array_ufunc__ = None
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, v: Any) -> None:
        self.v = v

    # -- numpy's array attributes
    shape = property(lambda self: tuple(self.v.shape))
    ndim = property(lambda self: self.v.ndim)
    size = property(lambda self: self.v.size)
    dtype = property(lambda self: self.v.dtype)
    T = property(lambda self: Box(self.v.T))
    real = property(lambda self: _wrap(_jnp().real(self.v)))
    imag = property(lambda self: _wrap(_jnp().imag(self.v)))
    flat = property(lambda self: _Flat(self))

    def __array_namespace__(self, api_version: Any = None) -> Any:
        return NUMPY

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if _traced(self.v):
            raise _TracedToNumpy("an array computed from the parameters is converted to numpy")
        return np.asarray(self.v, dtype=dtype)

    def __getitem__(self, idx: Any) -> Any:
        return _wrap(self.v[_index(idx)])

    def __setitem__(self, idx: Any, value: Any) -> None:
        self.v = self.v.at[_index(idx)].set(_operand(value))

    def __len__(self) -> int:
        return len(self.v)

    def __iter__(self) -> Any:
        for i in range(len(self.v)):
            yield Box(self.v[i])

    def __bool__(self) -> bool:
        return bool(self.v)

    def __float__(self) -> float:
        # Reached by conversions the twin does not see by name ('%.4f' % loss in a debug
        # print; ``float(x)`` itself is the twin's own builtin, which passes the value on).  A
        # traced value has no number yet: NaN prints harmlessly, and where it would flow into
        # the loss the twin's loss is no longer the forward's, so the twin is refused.
        if _traced(self.v):
            return math.nan
        return float(self.v)

    def __int__(self) -> int:
        return int(self.v)

    def __index__(self) -> int:
        return int(self.v.__index__())

    def __complex__(self) -> complex:
        return complex(self.v)

    def __round__(self, n: int = 0) -> Any:
        return _wrap(_jnp().round(self.v, n))

    def __neg__(self) -> Box:
        return Box(-self.v)

    def __pos__(self) -> Box:
        return self

    def __abs__(self) -> Box:
        return Box(_jnp().abs(self.v))

    def __invert__(self) -> Box:
        return Box(~self.v)

    def __repr__(self) -> str:
        return f"Box({self.v!r})"

    def __str__(self) -> str:
        return str(self.v)

    def __format__(self, spec: str) -> str:
        try:
            return format(self.v, spec)
        except Exception:
            return repr(self)

    def __copy__(self) -> Box:
        return Box(self.v)

    def __deepcopy__(self, memo: dict[int, Any]) -> Box:
        return Box(self.v)

    # -- numpy methods with other semantics (or none) on JAX arrays
    def copy(self, order: str = "C") -> Box:
        return Box(self.v)

    def view(self, *args: Any) -> Box:
        return Box(self.v) if not args else Box(self.v.view(*args))

    def astype(self, dtype: Any, *args: Any, **kwargs: Any) -> Box:
        return Box(self.v.astype(_dtype(dtype)))

    def item(self, *args: Any) -> Any:
        if _traced(self.v):
            return Box(self.v.reshape(-1)[args[0]] if args else self.v.reshape(()))
        return self.v.item(*args)

    def tolist(self) -> Any:
        return np.asarray(self).tolist()

    def fill(self, value: Any) -> None:
        self.v = _jnp().full_like(self.v, _operand(value))

    def sort(self, axis: int = -1, **kwargs: Any) -> None:
        self.v = _jnp().sort(self.v, axis=axis)

    def __getattr__(self, name: str) -> Any:
        if name == "v":
            raise AttributeError(name)
        attr = getattr(self.v, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args: Any, **kwargs: Any) -> Any:
            if "dtype" in kwargs:
                kwargs["dtype"] = _dtype(kwargs["dtype"])
            out = kwargs.pop("out", None)
            got = attr(*raw_tree(args), **raw_tree(kwargs))
            return _write_out(out, got)
        return method


for _name, _fn in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
                   ("truediv", "true_divide"), ("floordiv", "floor_divide"), ("mod", "remainder"),
                   ("pow", "power"), ("matmul", "matmul"), ("and", "bitwise_and"),
                   ("or", "bitwise_or"), ("xor", "bitwise_xor"), ("lshift", "left_shift"),
                   ("rshift", "right_shift")):
    setattr(Box, f"__{_name}__", _binary(_fn))
    setattr(Box, f"__r{_name}__", _binary(_fn, reflected=True))
    setattr(Box, f"__i{_name}__", _inplace(_fn))
for _name, _fn in (("eq", "equal"), ("ne", "not_equal"), ("lt", "less"), ("le", "less_equal"),
                   ("gt", "greater"), ("ge", "greater_equal")):
    setattr(Box, f"__{_name}__", _binary(_fn))


class _Flat:
    """``box.flat``: reads and writes by C-order flat index."""

    def __init__(self, box: Box) -> None:
        self.box = box

    def __getitem__(self, idx: Any) -> Any:
        return _wrap(self.box.v.reshape(-1)[_index(idx)])

    def __setitem__(self, idx: Any, value: Any) -> None:
        v = self.box.v
        self.box.v = v.reshape(-1).at[_index(idx)].set(_operand(value)).reshape(v.shape)

    def __iter__(self) -> Any:
        return iter(Box(self.box.v.reshape(-1)))


def _write_out(out: Any, got: Any) -> Any:
    """Honour numpy's ``out=``: the result is written into the Box ``out`` (returned)."""
    if out is None:
        return _wrap(got)
    target = out[0] if isinstance(out, tuple) else out
    if not isinstance(target, Box):
        raise TwinGap("out= into an array the twin did not make")
    jnp = _jnp()
    target.v = jnp.broadcast_to(jnp.asarray(got), target.v.shape).astype(target.v.dtype)
    return target


# ----------------------------------------------------------------------------- the namespaces


#: numpy functions whose first argument is a sequence of arrays (kept as a list for JAX).
_SEQUENCE_FUNCS = frozenset({
    "concatenate", "stack", "vstack", "hstack", "dstack", "column_stack", "row_stack", "block",
    "array", "asarray", "asanyarray", "ascontiguousarray", "einsum", "meshgrid",
    "broadcast_arrays", "ix_", "select", "piecewise", "choose", "lexsort", "atleast_1d",
    "atleast_2d", "atleast_3d", "result_type", "promote_types"})

#: numpy functions whose first argument is a shape (kept a tuple: under jit an array of it
#: would be traced).
_SHAPE_FIRST = frozenset({"zeros", "ones", "empty", "full", "eye", "identity", "indices", "tri"})

#: numpy array constructors: every array they make is float64 unless asked otherwise.
_CONSTRUCTORS = frozenset({"zeros", "ones", "empty", "full", "eye", "identity", "zeros_like",
                           "ones_like", "empty_like", "full_like", "array", "asarray",
                           "asanyarray", "ascontiguousarray", "copy", "arange", "linspace"})


def _call(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A ``jax.numpy`` function called the numpy way: Boxes in, Boxes out, ``out=`` honoured,
    dtypes promoted, a sequence first argument turned into an array where numpy would."""
    def call(*args: Any, **kwargs: Any) -> Any:
        out = kwargs.pop("out", None)
        if "dtype" in kwargs:
            kwargs["dtype"] = _dtype(kwargs["dtype"])
        for key in ("copy", "subok", "like", "order", "casting") if name in _CONSTRUCTORS else ():
            kwargs.pop(key, None)
        args = raw_tree(args)
        kwargs = raw_tree(kwargs)
        if (name not in _SEQUENCE_FUNCS and name not in _SHAPE_FIRST and args
                and isinstance(args[0], list | tuple)):
            args = (_jnp().asarray(args[0]), *args[1:])
        return _write_out(out, fn(*args, **kwargs))
    call.__name__ = name
    return call


class _UFunc:
    """A numpy ufunc on JAX: callable, with ``.at`` (in place on a Box), ``.reduce``,
    ``.accumulate`` and ``.outer``."""

    _AT: ClassVar[dict[str, str]] = {
           "add": "add", "subtract": "add", "multiply": "multiply", "divide": "divide",
           "true_divide": "divide", "maximum": "max", "minimum": "min", "power": "power"}
    _REDUCE: ClassVar[dict[str, str]] = {"add": "sum", "multiply": "prod", "maximum": "max", "minimum": "min",
               "logical_and": "all", "logical_or": "any"}
    _ACCUMULATE: ClassVar[dict[str, str]] = {"add": "cumsum", "multiply": "cumprod"}

    def __init__(self, name: str) -> None:
        self.__name__ = name
        self._call = _call(name, getattr(_jnp(), name))
        self.nin = getattr(np, name).nin
        self.nout = getattr(np, name).nout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def at(self, a: Any, indices: Any, b: Any = None) -> None:
        if not isinstance(a, Box):
            raise TwinGap(f"numpy.{self.__name__}.at into an array the twin did not make")
        how = self._AT.get(self.__name__)
        if how is None or b is None:
            raise TwinGap(f"numpy.{self.__name__}.at")
        value = _operand(b)
        if self.__name__ == "subtract":
            value = -value
        a.v = getattr(a.v.at[_index(indices)], how)(value)

    def reduce(self, a: Any, axis: Any = 0, **kwargs: Any) -> Any:
        how = self._REDUCE.get(self.__name__)
        if how is None:
            raise TwinGap(f"numpy.{self.__name__}.reduce")
        return _call(how, getattr(_jnp(), how))(a, axis=axis, **kwargs)

    def accumulate(self, a: Any, axis: int = 0, **kwargs: Any) -> Any:
        how = self._ACCUMULATE.get(self.__name__)
        if how is None:
            raise TwinGap(f"numpy.{self.__name__}.accumulate")
        return _call(how, getattr(_jnp(), how))(a, axis=axis, **kwargs)

    def outer(self, a: Any, b: Any) -> Any:
        jnp = _jnp()
        x, y = jnp.asarray(_operand(a)), jnp.asarray(_operand(b))
        return _wrap(getattr(jnp, self.__name__)(x.reshape(x.shape + (1,) * y.ndim), y))


def _concrete(x: Any, name: str) -> Any:
    """``x`` for numpy: Boxes and JAX arrays as numpy arrays, a traced value a :class:`TwinGap`."""
    import jax

    if isinstance(x, Box):
        x = x.v
    if _traced(x):
        raise TwinGap(f"numpy.{name} has no jax.numpy equivalent")
    if isinstance(x, jax.Array):
        return np.asarray(x)
    if isinstance(x, dict):
        return {k: _concrete(v, name) for k, v in x.items()}
    if isinstance(x, list | tuple) and not hasattr(x, "_fields"):
        return type(x)(_concrete(v, name) for v in x)
    return x


def _numpy_only(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A numpy function JAX lacks: numpy's own on constants; on a traced value a
    :class:`TwinGap` naming it."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return box_tree(fn(*_concrete(args, name), **_concrete(kwargs, name)))
    call.__name__ = name
    return call


def _sliding_window_view(x: Any, window_shape: Any, axis: Any = None, **kwargs: Any) -> Box:
    """``numpy.lib.stride_tricks.sliding_window_view`` as a gather (a copy: numpy's view is
    read-only, so no code can tell the difference by writing into it)."""
    jnp = _jnp()
    v = jnp.asarray(_operand(x))
    shape = (window_shape,) if isinstance(window_shape, int) else tuple(window_shape)
    axes = tuple(range(v.ndim)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % v.ndim for a in axes)  # against the input's axes, before windows are added
    for a, w in zip(axes, shape, strict=True):
        n = v.shape[a] - w + 1
        idx = jnp.arange(n)[:, None] + jnp.arange(w)[None, :]
        taken = jnp.take(v, idx.reshape(-1), axis=a)
        taken = taken.reshape((*v.shape[:a], n, w, *v.shape[a + 1:]))
        v = jnp.moveaxis(taken, a + 1, -1)
    return Box(v)


def _as_strided(*args: Any, **kwargs: Any) -> Any:
    raise TwinGap("numpy.lib.stride_tricks.as_strided has no jax.numpy equivalent")


def _copyto(dst: Any, src: Any, **kwargs: Any) -> None:
    if not isinstance(dst, Box):
        raise TwinGap("numpy.copyto into an array the twin did not make")
    jnp = _jnp()
    dst.v = jnp.broadcast_to(jnp.asarray(_operand(src)), dst.v.shape).astype(dst.v.dtype)


def _fill_diagonal(a: Any, val: Any, wrap: bool = False) -> None:
    if not isinstance(a, Box):
        raise TwinGap("numpy.fill_diagonal into an array the twin did not make")
    n = min(a.v.shape)
    idx = tuple(_jnp().arange(n) for _ in a.v.shape)
    a.v = a.v.at[idx].set(_operand(val))


def _empty(name: str) -> Callable[..., Any]:
    zeros = getattr(_jnp(), name.replace("empty", "zeros"))
    return _call(name, zeros)


class _NDArrayMeta(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        import jax

        return isinstance(obj, Box | np.ndarray | jax.Array)


class _NDArray(metaclass=_NDArrayMeta):
    """``np.ndarray`` in a twin: ``isinstance(x, np.ndarray)`` holds for the twin's arrays."""


class _Namespace(types.ModuleType):
    """A module-like namespace over ``jax.numpy`` (or one of its submodules) that behaves like
    the numpy module of the same name; attributes are built on first use and kept."""

    def __init__(self, name: str, numpy_mod: Any, jax_path: str, overrides: dict[str, Any]) -> None:
        super().__init__(name)
        self._numpy = numpy_mod
        self._jax_path = jax_path
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = self._resolve(name)
        setattr(self, name, value)
        return value

    def _jax_module(self) -> Any:
        import importlib

        return importlib.import_module(self._jax_path)

    def _resolve(self, name: str) -> Any:
        if name in self._overrides:
            made = self._overrides[name]
            return made() if isinstance(made, _Lazy) else made
        original = getattr(self._numpy, name, None)
        jax_mod = self._jax_module()
        if isinstance(original, types.ModuleType):
            sub = _SUBMODULES.get(original.__name__)
            return sub() if sub is not None else original
        if isinstance(original, type) and issubclass(original, np.generic):
            return getattr(jax_mod, name, original)
        if isinstance(original, np.ufunc) and hasattr(jax_mod, name):
            return _UFunc(name)
        jax_value = getattr(jax_mod, name, None)
        if callable(jax_value) and not isinstance(jax_value, type):
            return _call(name, jax_value)
        if original is None:
            if jax_value is not None:
                return jax_value
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        if callable(original) and not isinstance(original, type):
            return _numpy_only(f"{self.__name__}.{name}".removeprefix("numpy."), original)
        return original


class _Lazy:
    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def __call__(self) -> Any:
        return self.make()


def _numpy_overrides() -> dict[str, Any]:
    out: dict[str, Any] = {
        "ndarray": _NDArray,
        "row_stack": _Lazy(lambda: _call("row_stack", _jnp().vstack)),
        "copyto": _copyto,
        "fill_diagonal": _fill_diagonal,
        "dtype": np.dtype,
        "finfo": np.finfo,
        "iinfo": np.iinfo,
        "random": np.random,
        "newaxis": None,
        "errstate": np.errstate,
        "seterr": np.seterr,
        "geterr": np.geterr,
        "set_printoptions": np.set_printoptions,
    }
    for name in ("empty", "empty_like"):
        out[name] = _Lazy(functools.partial(_empty, name))
    return out


@functools.cache
def _lib_namespace() -> types.SimpleNamespace:
    tricks = types.SimpleNamespace(sliding_window_view=_sliding_window_view,
                                   as_strided=_as_strided)
    return types.SimpleNamespace(stride_tricks=tricks)


@functools.cache
def _linalg() -> _Namespace:
    return _Namespace("numpy.linalg", np.linalg, "jax.numpy.linalg", {})


@functools.cache
def _fft() -> _Namespace:
    return _Namespace("numpy.fft", np.fft, "jax.numpy.fft", {})


_SUBMODULES: dict[str, Callable[[], Any]] = {
    "numpy.linalg": _linalg, "numpy.fft": _fft, "numpy.lib": _lib_namespace,
    "numpy.random": lambda: np.random,
}

#: The numpy module of a twin.
NUMPY = _Namespace("numpy", np, "jax.numpy", _numpy_overrides())


class _MathNamespace(types.ModuleType):
    """``math`` in a twin: on arrays computed from the parameters its functions are
    ``jax.numpy``'s; on plain numbers they are ``math``'s own."""

    _JAX_NAMES: ClassVar[dict[str, str]] = {"pow": "power", "fabs": "abs", "atan": "arctan", "asin": "arcsin",
                  "acos": "arccos", "atan2": "arctan2", "atanh": "arctanh", "asinh": "arcsinh",
                  "acosh": "arccosh"}

    def __getattr__(self, name: str) -> Any:
        original = getattr(math, name)
        if not callable(original):
            return original
        jname = self._JAX_NAMES.get(name, name)

        def call(*args: Any) -> Any:
            if not any(isinstance(a, Box) or _traced(a) for a in args):
                return original(*args)
            if name in ("erf", "erfc", "lgamma"):
                import jax.scipy.special as jsp

                fn = getattr(jsp, "gammaln" if name == "lgamma" else name)
            else:
                fn = getattr(_jnp(), jname, None)
                if fn is None:
                    raise TwinGap(f"math.{name} has no jax.numpy equivalent")
            return _wrap(fn(*raw_tree(args)))
        call.__name__ = name
        setattr(self, name, call)
        return call


#: The math module of a twin.
MATH = _MathNamespace("math")


def _float(x: Any = 0.0) -> Any:
    """``float()`` in a twin: a traced value stays an array (0-d), so it flows on."""
    v = x.v if isinstance(x, Box) else x
    if _traced(v):
        return Box(_jnp().reshape(v, ()).astype(np.float64))
    return builtins.float(x)


def _extreme(name: str) -> Callable[..., Any]:
    plain = getattr(builtins, name)
    pairwise = "maximum" if name == "max" else "minimum"

    def pick(*args: Any, **kwargs: Any) -> Any:
        items = list(args[0]) if len(args) == 1 else list(args)
        if kwargs or not items or not any(isinstance(a, Box) or _traced(a) for a in items):
            return plain(*args, **kwargs)
        return functools.reduce(lambda a, b: _wrap(getattr(_jnp(), pairwise)(
            _operand(a), _operand(b))), items)
    pick.__name__ = name
    return pick


#: Builtins that a twin's code sees instead of Python's own.
_BUILTINS: dict[str, Any] = {"float": _float, "max": _extreme("max"), "min": _extreme("min")}


# ----------------------------------------------------------------------------- what is user code


@functools.cache
def _library_roots() -> tuple[str, ...]:
    roots = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(os.path.realpath(path))
    for path in sys.path:
        if path and ("site-packages" in path or "dist-packages" in path):
            roots.add(os.path.realpath(path))
    roots.add(os.path.realpath(os.path.dirname(__file__)))  # gradcheck itself
    return tuple(sorted(roots))


@functools.cache
def is_user_code(filename: str) -> bool:
    """Whether code from ``filename`` is the user's (translated into the twin), not the standard
    library's, an installed package's or gradcheck's (left alone).  Code without a real file
    (``<doctest ...>``, ``<stdin>``, notebook cells, ``exec``) is the user's."""
    if filename.startswith("<"):
        return not filename.startswith("<frozen")
    real = os.path.realpath(filename)
    return not any(real == root or real.startswith(root + os.sep) for root in _library_roots())


def _user_module(name: str | None) -> bool:
    if not name:
        return True
    module = sys.modules.get(name)
    if module is None:
        return name not in sys.builtin_module_names
    file = getattr(module, "__file__", None)
    if file is None:
        return name not in sys.builtin_module_names and name not in ("builtins", "sys")
    return is_user_code(file)


def _user_class(cls: type) -> bool:
    for value in vars(cls).values():
        fn = getattr(value, "__func__", value)
        code = getattr(fn, "__code__", None)
        if code is not None and not code.co_filename.startswith("<string>"):
            return is_user_code(code.co_filename)
    return _user_module(getattr(cls, "__module__", None)) and cls.__module__ != "builtins"


# ----------------------------------------------------------------------------- translation


#: The names a copied globals dict holds from the start (the builtins are the twin's own).
_PRESET = ("__builtins__", "__name__", "__file__", "__package__", "__spec__", "__loader__")


class _Globals(dict):  # type: ignore[type-arg]
    """A copy of a function's globals, translated on first read: a name the user's module
    rebinds later is translated again; names the twin's code assigns (``global``) stay in the
    copy.  CPython reads a non-exact dict's globals through ``__getitem__``."""

    def __init__(self, original: dict[str, Any], translate: _Translator) -> None:
        super().__init__()
        self._original = original
        self._translate = translate
        self._seen: dict[str, Any] = {}
        dict.__setitem__(self, "__builtins__", translate.builtins)
        for key in _PRESET[1:]:
            if key in original:
                dict.__setitem__(self, key, original[key])

    def __getitem__(self, key: str) -> Any:
        try:
            original = self._original[key]
        except KeyError:
            if dict.__contains__(self, key):
                return dict.__getitem__(self, key)
            if key in _BUILTINS:
                return _BUILTINS[key]
            raise
        if dict.__contains__(self, key) and (key not in self._seen or self._seen[key] is original):
            return dict.__getitem__(self, key)  # translated, or assigned by the twin (``global``)
        value = self._translate(original)
        dict.__setitem__(self, key, value)
        self._seen[key] = original
        return value

    def reset(self) -> None:
        """Forget what the twin's code assigned (and every translation: they are memoised)."""
        keep = {k: dict.__getitem__(self, k) for k in _PRESET if dict.__contains__(self, k)}
        dict.clear(self)
        dict.update(self, keep)
        self._seen.clear()

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self._original or dict.__contains__(self, key)


class _TwinModule(types.ModuleType):
    """A user module as a twin sees it: its attributes translated on first use."""

    def __init__(self, original: types.ModuleType, translate: _Translator) -> None:
        super().__init__(original.__name__, original.__doc__)
        self._original = original
        self._translate = translate

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") and name in ("_original", "_translate"):
            raise AttributeError(name)
        value = self._translate(getattr(self._original, name))
        setattr(self, name, value)
        return value


def _put_back(target: dict[Any, Any], saved: dict[Any, Any]) -> None:
    target.clear()
    target.update(saved)


#: Arrays of more entries than this (a module-level dataset) are not copied to notice in-place
#: changes: a seeded sample of :data:`FINGERPRINT_SIZE` of their entries is compared instead.
FULL_COMPARE_MAX = 1 << 20
FINGERPRINT_SIZE = 4096


class _ArrayState:
    """A user's array and its Box in a twin: :meth:`refresh` gives the Box the array's current
    value (a copy: the user's array is only read), re-converted only when it has changed (for a
    large array: when a fixed sample of its entries has; a change elsewhere that alters the loss
    makes the twin's loss differ from the forward's, and the twin is refused)."""

    def __init__(self, original: np.ndarray, box: Box) -> None:
        self.original, self.box = original, box
        self.seen, self.value = self._fingerprint(), box.v

    def _fingerprint(self) -> np.ndarray:
        o = self.original
        if o.size <= FULL_COMPARE_MAX:
            return o.copy()
        picks = np.random.default_rng(o.size).integers(0, o.size, FINGERPRINT_SIZE)
        return np.asarray(o[np.unravel_index(picks, o.shape)])  # reads only the picks

    def refresh(self) -> None:
        o = self.original
        now = self._fingerprint()
        if now.shape != self.seen.shape or o.dtype != self.seen.dtype or not np.array_equal(
                now, self.seen, equal_nan=o.dtype.kind in "fc"):
            self.seen, self.value = now, box_tree(o).v
        self.box.v = self.value


class _Translator:
    """Translates one root callable and everything it reaches, memoised by identity."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Any, Any]] = {}
        self._building: dict[int, list[Any]] = {}  # class id → cells waiting for its twin
        #: How to put back each piece of translated state the twin's code may write into (an
        #: array, a dict, a list, an object's attributes, a copied globals dict) as it was
        #: translated: :meth:`reset` runs them before every call of the root.
        self._restore: list[Callable[[], None]] = []
        self.builtins: dict[str, Any] = {**vars(builtins), **_BUILTINS, "__import__": self._import}

    def _import(self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
                level: int = 0) -> Any:
        """``import`` inside the twin's code: numpy is the twin's numpy, user modules twins."""
        return self(builtins.__import__(name, globals, locals, fromlist, level))

    @property
    def stateful(self) -> bool:
        """Whether the translation holds state the twin's code could write into."""
        return bool(self._restore)

    def reset(self) -> None:
        """Every translated array, container, object and globals dict as the user's original is
        now: what the twin's code wrote in one call (a traced array) never leaks into the next,
        and a global the user changed in place since the twin was built is seen."""
        for restore in self._restore:
            restore()

    def __call__(self, obj: Any) -> Any:
        hit = self._memo.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        twin = self._translate(obj)
        self._memo[id(obj)] = (obj, twin)
        return twin

    def _remember(self, obj: Any, twin: Any) -> Any:
        self._memo[id(obj)] = (obj, twin)
        return twin

    def _translate(self, obj: Any) -> Any:  # one dispatch over the kinds of objects
        if obj is None or isinstance(obj, bool | int | float | complex | str | bytes | np.generic):
            return obj
        if isinstance(obj, types.ModuleType):
            return self._module(obj)
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind not in "biufc":
                return obj
            box = box_tree(obj)
            self._restore.append(_ArrayState(obj, box).refresh)
            return box
        if isinstance(obj, Box):
            return Box(obj.v)
        hook = None if isinstance(obj, type) else getattr(type(obj), "__gradcheck_twin__", None)
        if hook is None and isinstance(obj, types.FunctionType):
            hook = getattr(obj, "__gradcheck_twin__", None)
            if hook is not None:
                return hook(self)
        elif hook is not None:
            return hook(obj, self)
        if isinstance(obj, np.ufunc) or (callable(obj) and _from_numpy(obj)):
            return _numpy_twin(obj)
        if isinstance(obj, types.FunctionType):
            return self._function(obj)
        if isinstance(obj, types.MethodType):
            func, owner = self(obj.__func__), self(obj.__self__)
            return obj if func is obj.__func__ and owner is obj.__self__ else types.MethodType(func, owner)
        if isinstance(obj, functools.partial):
            func = self(obj.func)
            if func is obj.func:
                return obj
            return functools.partial(func, *self(obj.args), **self(obj.keywords))
        if isinstance(obj, staticmethod | classmethod):
            return type(obj)(self(obj.__func__))
        if isinstance(obj, property):
            return property(self(obj.fget), self(obj.fset), self(obj.fdel), obj.__doc__)
        wrapped = getattr(obj, "__wrapped__", None)
        if isinstance(obj, functools._lru_cache_wrapper) and wrapped is not None:
            return self(wrapped)  # a cache keyed on traced values would never hit
        if isinstance(obj, type):
            return self._class(obj)
        if type(obj) is dict:
            out: dict[Any, Any] = self._remember(obj, {})
            out.update((k, self(v)) for k, v in obj.items())
            self._restore.append(lambda: _put_back(out, {k: self(v) for k, v in obj.items()}))
            return out
        if type(obj) is list:
            items: list[Any] = self._remember(obj, [])
            items.extend(self(v) for v in obj)
            self._restore.append(lambda: items.__setitem__(slice(None), [self(v) for v in obj]))
            return items
        if isinstance(obj, tuple):
            translated = [self(v) for v in obj]
            if all(a is b for a, b in zip(translated, obj, strict=True)):
                return obj
            return type(obj)(*translated) if hasattr(obj, "_fields") else tuple(translated)
        if isinstance(obj, types.SimpleNamespace):
            ns = self._remember(obj, types.SimpleNamespace())
            ns.__dict__.update((k, self(v)) for k, v in vars(obj).items())
            return ns
        if _user_class(type(obj)):
            return self._instance(obj)
        return obj

    def _module(self, mod: types.ModuleType) -> Any:
        name = mod.__name__
        if name == "numpy":
            return NUMPY
        if name in _SUBMODULES:
            return _SUBMODULES[name]()
        if name == "math":
            return MATH
        if name in ("scipy.special", "scipy.signal"):
            return _Namespace(name, mod, f"jax.{name}", {})
        if isinstance(mod, _Namespace | _TwinModule) or not _user_module(name):
            return mod
        return _TwinModule(mod, self)

    def _function(self, f: types.FunctionType) -> Any:
        if not is_user_code(f.__code__.co_filename):
            return f
        cells: tuple[Any, ...] | None = None
        if f.__closure__ is not None:
            cells = tuple(types.CellType() for _ in f.__closure__)
        new = types.FunctionType(f.__code__, self._globals(f.__globals__), f.__name__, None, cells)
        self._remember(f, new)
        new.__defaults__ = self(f.__defaults__)
        new.__kwdefaults__ = self(f.__kwdefaults__)
        new.__qualname__, new.__module__, new.__doc__ = f.__qualname__, f.__module__, f.__doc__
        new.__dict__.update(f.__dict__)
        for old, cell in zip(f.__closure__ or (), cells or (), strict=True):
            try:
                content = old.cell_contents
            except ValueError:  # an empty cell (a name not bound yet)
                continue
            waiting = self._building.get(id(content)) if isinstance(content, type) else None
            if waiting is not None:
                waiting.append(cell)  # ``__class__`` of a method of a class being translated
            else:
                cell.cell_contents = self(content)
        return new

    def _globals(self, g: dict[str, Any]) -> _Globals:
        hit = self._memo.get(id(g))
        if hit is not None and hit[0] is g:
            return hit[1]  # type: ignore[no-any-return]
        copied = _Globals(g, self)
        self._restore.append(copied.reset)
        return self._remember(g, copied)  # type: ignore[no-any-return]

    def _class(self, cls: type) -> Any:
        if not _user_class(cls):
            return cls
        self._building[id(cls)] = []
        try:
            bases = tuple(self(b) for b in cls.__bases__)
            slots = cls.__dict__.get("__slots__", ())
            slots = (slots,) if isinstance(slots, str) else tuple(slots)
            ns = {k: self(v) for k, v in cls.__dict__.items()
                  if k not in ("__dict__", "__weakref__") and k not in slots}
            try:
                new = type(cls)(cls.__name__, bases, ns)
            except Exception:
                new = cls  # a metaclass that cannot be re-run (an Enum): left as it is
            new.__qualname__ = cls.__qualname__
        finally:
            waiting = self._building.pop(id(cls))
        for cell in waiting:
            cell.cell_contents = new
        return new

    def _instance(self, obj: Any) -> Any:
        cls = type(obj)
        twin_cls = self(cls)
        if twin_cls is cls:
            return obj
        try:
            new = object.__new__(twin_cls)
        except TypeError:
            return obj
        self._remember(obj, new)
        state = getattr(obj, "__dict__", None)
        if state is not None:
            new.__dict__.update((k, self(v)) for k, v in state.items())
            self._restore.append(lambda: _put_back(new.__dict__,
                                                   {k: self(v) for k, v in state.items()}))
        for klass in cls.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for slot in (slots,) if isinstance(slots, str) else slots:
                if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                    object.__setattr__(new, slot, self(getattr(obj, slot)))
        return new


def _from_numpy(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return (module == "numpy" or module.startswith("numpy.")) and not isinstance(obj, type)


def _numpy_twin(fn: Any) -> Any:
    """The twin of a numpy function imported by name (``from numpy import tanh``)."""
    name = getattr(fn, "__name__", "")
    for space, mod in ((NUMPY, np), (_linalg(), np.linalg), (_fft(), np.fft),
                       (_lib_namespace().stride_tricks, np.lib.stride_tricks)):
        if getattr(mod, name, None) is fn:
            return getattr(space, name)
    return fn


#: Built twins, by what identifies the original (a function, or a bound method's function and
#: object), least recently used dropped first.
_CACHE: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()
CACHE_SIZE = 64


def clear_cache() -> None:
    """Forget every built twin."""
    _CACHE.clear()


def function_key(fn: Any) -> Hashable | None:
    """What identifies a user function across checks: the function itself, or a bound method's
    function and its object (a frozen dataclass layer is equal to its equal copies); ``None``
    when that cannot be hashed."""
    key = (fn.__func__, fn.__self__) if isinstance(fn, types.MethodType) else fn
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, types.MethodType) and isinstance(b, types.MethodType):
        return a.__func__ is b.__func__ and a.__self__ is b.__self__
    return a is b


class _Root:
    """A built twin: before each call every piece of translated state is set from the user's
    original as it is now, so one call's traced values never reach the next (a forward writing
    into a module-level buffer or its object's arrays is checked many times) and a global the
    user changed in place between checks is seen."""

    def __init__(self, twin: Any, translate: _Translator) -> None:
        self.twin, self._translate = twin, translate
        self.__name__ = getattr(twin, "__name__", "twin")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._translate.reset()
        return self.twin(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in ("twin", "_translate"):
            raise AttributeError(name)
        return getattr(self.twin, name)


def twin_of(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The JAX twin of ``fn``: the same code over translated globals, closures and objects (see
    the module docstring), built once per ``fn`` and kept (:func:`clear_cache` forgets them).

    Call it with :func:`box_tree` arguments and read its result through :func:`raw_tree`.
    """
    key = function_key(fn)
    if key is not None and key in _CACHE and _same(_CACHE[key][0], fn):
        _CACHE.move_to_end(key)
        return _CACHE[key][1]  # type: ignore[no-any-return]
    translate = _Translator()
    made = translate(fn)
    twin = made if made is fn or not translate.stateful else _Root(made, translate)
    if key is not None:
        _CACHE[key] = (fn, twin)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return twin


# ----------------------------------------------------------------------------- plain reasons


def plain_reason(exc: BaseException) -> str:
    """Why a forward (or its twin) could not be differentiated by JAX, said plainly, with the
    line of the user's code where it happened."""
    import jax

    if isinstance(exc, TwinGap):
        why = str(exc)
    elif isinstance(exc, _TracedToNumpy | jax.errors.TracerArrayConversionError):
        why = "it converts arrays computed from the parameters to numpy (np.asarray, a library " \
              "outside numpy)"
    elif isinstance(exc, jax.errors.TracerBoolConversionError | jax.errors.ConcretizationTypeError):
        why = "it needs the concrete value of an array computed from the parameters (an " \
              "if/while on it, or '%' formatting / a library call that converts it to a float)"
    elif isinstance(exc, jax.errors.TracerIntegerConversionError):
        why = "it uses an array computed from the parameters as a Python int"
    else:
        first = (str(exc).strip().splitlines() or [""])[0]
        if len(first) > 120:
            first = first[:117] + "..."
        why = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    where = _user_line(exc)
    return f"{why} ({where})" if where else why


def _user_line(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if is_user_code(f.filename)]
    if not frames:
        return ""
    f = frames[-1]
    return f"at {os.path.basename(f.filename)}:{f.lineno} in {f.name}"
