"""JAX references: the gradient of the same forward on JAX arrays, or of a JAX twin, in float64.

JAX is imported lazily, inside the functions that need it, and 64-bit mode is switched on only
inside ``with jax.enable_x64(True):`` — the user's process keeps whatever JAX configuration it had.
When no JAX path exists (JAX missing, or the forward calls numpy on what it is given) the caller
gets a readable reason instead of an error, and the verdict uses the two remaining sources.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "AUTO_TWIN",
    "JAX_FUN",
    "KEY_DEPTH",
    "ON_JAX",
    "ON_JAX_PARAMS",
    "PROGRAM_CACHE_SIZE",
    "REFERENCE_COMPILER_OPTIONS",
    "SOURCES",
    "AutodiffResult",
    "Jittable",
    "batched_moves",
    "clear_cache",
    "gradient",
    "jax_available",
    "jit",
    "program_key",
    "to_jax",
]

#: The candidate losses, by what they differentiate (their descriptions in notes).
ON_JAX = "the forward on JAX arrays"
ON_JAX_PARAMS = "the forward on JAX parameters and numpy args"
JAX_FUN = "the jax_fun twin"
AUTO_TWIN = "the automatic JAX twin"
#: Where the JAX reference came from, as results, JSON and reports name it.
SOURCES: dict[str, str] = {ON_JAX: "array-api", ON_JAX_PARAMS: "array-api", JAX_FUN: "jax_fun",
                           AUTO_TWIN: "twin", "": "none"}


@dataclass(frozen=True, slots=True)
class AutodiffResult:
    """Per-leaf float64 gradients from JAX (``None`` when there is no JAX path) and a note.

    ``source`` says which function was differentiated (e.g. ``"the forward on JAX arrays"`` or
    ``"the jax_fun twin"``); ``note`` explains why there is no JAX reference when there is none.
    """

    grads: tuple[np.ndarray, ...] | None
    source: str
    note: str
    #: The loss over JAX leaves that was differentiated, when it computes the forward's own value
    #: (not a twin that differs): finite differences may then evaluate it in batches.
    loss: Callable[[list[Any]], Any] | None = None

    @property
    def kind(self) -> str:
        """``"array-api"``, ``"jax_fun"``, ``"twin"`` or ``"none"`` (see :data:`SOURCES`)."""
        return SOURCES.get(self.source, "none") if self.grads is not None else "none"


#: XLA options of the programs gradcheck still compiles (``batch=True``'s vmapped forwards, the
#: layer maps of a conv stack's flow; references are traced and run with numpy instead): such a
#: program runs a handful of times, so its compile time is what counts.  Backend optimisation
#: off halves it (an LSTM over 4 steps 1.06 s -> 0.51 s, a GRU over 6 steps 1.98 s -> 0.95 s, a
#: conv layer 0.37 s -> 0.17 s, a dense layer 0.11 s -> 0.08 s, value and gradient, 2 cores) and
#: costs little at run time (0.018 s -> 0.021 s for that LSTM); the arithmetic is the same IEEE
#: float64 either way.
REFERENCE_COMPILER_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 0}


def jit(fun: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.jit(fun)`` with :data:`REFERENCE_COMPILER_OPTIONS` (JAX imported here, lazily)."""
    import jax

    compiled: Callable[..., Any] = jax.jit(fun, compiler_options=REFERENCE_COMPILER_OPTIONS)
    return compiled


def jax_available() -> bool:
    """True when JAX can be imported (without importing it)."""
    return importlib.util.find_spec("jax") is not None


def to_jax(tree: Any) -> Any:
    """Turn the numpy arrays of a pytree into JAX arrays (call inside ``enable_x64``); anything
    else (Python scalars, strings, config dicts' non-array values) is left as it is."""
    import jax.numpy as jnp

    if isinstance(tree, dict):
        return {k: to_jax(v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(to_jax(v) for v in tree))
    if isinstance(tree, list | tuple):
        return type(tree)(to_jax(v) for v in tree)
    if isinstance(tree, np.ndarray):
        return jnp.asarray(np.asarray(tree))
    return tree


@dataclass(frozen=True, slots=True)
class Jittable:
    """A candidate loss whose traced program may be kept and reused across checks.

    ``fn(leaves, data)`` is the loss; ``key`` names the computation (equal keys mean the same
    function of ``(leaves, data)``: the user's forward, the tree structure, and nothing else
    the function closes over); ``data`` are the arrays it reads (a layer's ``dy``, the arrays of
    ``*args``), passed as arguments so that new data never retraces.
    """

    key: Hashable
    fn: Callable[[list[Any], Any], Any]
    data: Any
    #: ``False``: never kept (numpy arrays the trace must see as constants: traced at each call),
    #: only remembered when it cannot be traced.
    compile: bool = True


class _NoKey(Exception):
    """A value that cannot be keyed by its content."""


#: How deep :func:`program_key` follows plain objects held by a layer object (an adapter holding
#: the user's layer holding its configuration).
KEY_DEPTH = 3


class _Bare:
    """The layout of an instance of a plain Python class: what :func:`_plain` compares with."""


def _plain(obj: Any) -> bool:
    """An instance of plain Python classes that is equal only to itself (no class of it defines
    ``__eq__`` or ``__hash__``) and keeps all its state in its ``__dict__``: no ``__slots__`` and
    no C-level fields (a ``functools.partial``, a function or an extension object keeps its state
    elsewhere, so its ``__dict__`` cannot stand for it)."""
    cls = type(obj)
    own = cls.__mro__[:-1]  # every class but object
    return (bool(own) and hasattr(obj, "__dict__") and cls.__basicsize__ <= _Bare.__basicsize__
            and cls.__itemsize__ == 0
            and not any(name in vars(c) for c in own for name in ("__eq__", "__hash__", "__slots__")))


def _content(v: Any, depth: int) -> Hashable:
    """A hashable stand-in for ``v`` that is equal for equal contents (arrays by their bytes)."""
    import hashlib
    import types

    key: Hashable
    if v is None or isinstance(v, bool | int | float | complex | str | bytes):
        return v
    if isinstance(v, np.generic):
        return ("scalar", v.dtype.str, v.item())
    if isinstance(v, np.ndarray):
        if v.dtype.hasobject:
            raise _NoKey
        digest = hashlib.blake2b(np.ascontiguousarray(v).tobytes(), digest_size=16).digest()
        return ("array", v.shape, v.dtype.str, digest)
    if isinstance(v, tuple | list):
        return (type(v).__name__, tuple(_content(x, depth) for x in v))
    if isinstance(v, dict):
        items = [(_content(k, depth), _content(x, depth)) for k, x in v.items()]
        return ("dict", tuple(sorted(items, key=repr)))
    if isinstance(v, types.MethodType):
        return ("method", v.__func__, _content(v.__self__, depth))
    if _plain(v):
        if depth <= 0:
            raise _NoKey
        return _object_content(v, depth - 1)
    try:
        hash(v)
    except TypeError:
        raise _NoKey from None
    key = v  # functions, classes, modules and value-hashed objects (a frozen dataclass) as is
    return key


def _object_content(obj: Any, depth: int) -> Hashable:
    return (type(obj), tuple(sorted((k, _content(x, depth)) for k, x in vars(obj).items())))


def program_key(fn: Any) -> Hashable | None:
    """What identifies the computation of a user's forward, for reusing its traced program.

    A plain function is itself; a bound method is its function and its object.  An object equal
    only to itself (a plain class instance, an adapter around one) is keyed by its content: its
    class and its attributes by value (numbers, strings, arrays by their bytes, functions,
    containers of them, plain objects they hold, :data:`KEY_DEPTH` deep), so a layer object built
    anew for each hypothesis example with the same configuration meets the program traced for the
    last one, and one whose configuration or arrays changed gets its own.  Where the content cannot
    be keyed the object itself is the key; ``None`` when nothing can be hashed.
    """
    import types

    from gradcheck.twin import function_key

    try:
        if isinstance(fn, types.MethodType) and _plain(fn.__self__):
            return ("method", fn.__func__, _object_content(fn.__self__, KEY_DEPTH))
        if _plain(fn) and callable(fn):
            return ("callable", _object_content(fn, KEY_DEPTH))
    except _NoKey:
        pass
    return function_key(fn)  # the function, or a bound method's function and its object


#: Traced programs kept (one per forward and shape), least recently used dropped first.
PROGRAM_CACHE_SIZE = 64
#: (key, shapes) → the traced ``value_and_grad`` of that forward at those shapes
#: (:class:`gradcheck.interpret.Program`, run with numpy: no XLA compile at any size), or
#: ``False``: differentiated eagerly (it does not trace as a whole program, or its traced value
#: was not the forward's).
_PROGRAMS: OrderedDict[Hashable, Any] = OrderedDict()
#: (key, shapes) → why JAX could not trace it: a numpy-only forward is not traced again at the
#: same shapes (a failed trace costs more than a small check: JAX filters the traceback).
_FAILED: OrderedDict[Hashable, str] = OrderedDict()


def clear_cache() -> None:
    """Forget every traced autodiff reference and remembered failure (rebuilt on demand)."""
    _PROGRAMS.clear()
    _FAILED.clear()


def _remember(cache: OrderedDict[Hashable, Any], key: Hashable, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > PROGRAM_CACHE_SIZE:
        cache.popitem(last=False)


def _signature(spec: Jittable, point: Sequence[Any]) -> Hashable | None:
    """The key and the shapes of a call at the float64 ``point`` (numpy or JAX arrays), or
    ``None`` when it cannot be hashed."""
    shapes = [(np.shape(d), str(getattr(d, "dtype", type(d).__name__))) for d in _arrays(spec.data)]
    signature = (spec.key, tuple(tuple(np.shape(p)) for p in point), tuple(shapes))
    try:
        hash(signature)
    except TypeError:
        return None
    return signature


def _arrays(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [a for v in tree.values() for a in _arrays(v)]
    if isinstance(tree, list | tuple):
        return [a for v in tree for a in _arrays(v)]
    return [tree]


def _scalar(fn: Callable[..., Any]) -> Callable[..., Any]:
    import jax.numpy as jnp

    def value(*args: Any) -> Any:
        return jnp.real(jnp.asarray(fn(*args)).reshape(()))
    return value


def _traced(spec: Jittable, point: list[np.ndarray]) -> tuple[Any, Any] | None:
    """``(value, grads)`` from the traced program of ``spec`` at this shape, traced on the first
    sight of the shape and reused with new data — ``None`` when it does not trace as a whole (the
    caller then differentiates eagerly) or its key cannot be hashed."""
    import jax

    from gradcheck import interpret

    signature = _signature(spec, point)
    if signature is None or _PROGRAMS.get(signature) is False:
        return None
    program: Any = _PROGRAMS.get(signature)
    if program is None:
        try:
            program = interpret.trace(jax.value_and_grad(_scalar(spec.fn)), point, spec.data)
        except jax.errors.TracerArrayConversionError:
            raise  # numpy called on a tracer: eagerly it would be called on one too
        except Exception:
            program = False
        _remember(_PROGRAMS, signature, program)
        if program is False:
            return None
    _PROGRAMS.move_to_end(signature)
    got: tuple[Any, Any] = program(point, spec.data)
    return got


def _fresh(loss: Callable[[list[Any]], Any], point: list[np.ndarray]) -> tuple[Any, Any]:
    """``(value, grads)`` of ``loss`` traced at ``point`` and run with numpy (the program is not
    kept: ``loss`` closes over its data), or differentiated eagerly when it does not trace
    (:func:`gradcheck.interpret.function`)."""
    import jax

    from gradcheck import interpret

    got: tuple[Any, Any] = interpret.function(jax.value_and_grad(_scalar(loss)))(point)
    return got


def _value_and_grad(loss: Callable[[list[Any]], Any], spec: Jittable | None, point: list[np.ndarray],
                    expected: float, tol: float) -> tuple[float, tuple[np.ndarray, ...]]:
    """The loss and its float64 gradient at ``point``: from the kept program of ``spec`` when its
    value is the forward's (a kept program that has gone stale is dropped), else traced afresh."""
    got = _traced(spec, point) if spec is not None and spec.compile else None
    if got is not None:
        value = float(got[0])
        if abs(value - expected) <= tol:
            return value, tuple(np.asarray(g, dtype=np.float64) for g in got[1])
        assert spec is not None
        signature = _signature(spec, point)
        if signature is not None:
            _remember(_PROGRAMS, signature, False)
    value, grads = _fresh(loss, point)
    return float(value), tuple(np.asarray(g, dtype=np.float64) for g in grads)


def gradient(
    candidates: Sequence[tuple[str, Callable[[list[Any]], Any]]
                         | tuple[str, Callable[[list[Any]], Any], Jittable | None]],
    leaves: Sequence[np.ndarray],
    *,
    expected: float,
    tol: float,
    twin: bool = False,
) -> AutodiffResult:
    """``jax.grad`` of the first candidate loss that JAX can trace, at ``leaves`` in float64.

    A candidate that traces but computes another value than the numpy forward (``expected``,
    within ``tol``) is not differentiating the same function — numpy-only semantics such as
    ``np.matrix``'s ``*`` silently change meaning on JAX arrays — and is rejected.  A JAX
    *twin* (``twin=True``) is kept with a note instead: its gradient will then disagree, and the
    triangulation blames the twin, which is the point of having three sources.

    The gradient is JAX's, traced into a program (``jax.make_jaxpr`` of ``jax.value_and_grad``)
    and run with numpy (:mod:`gradcheck.interpret`): nothing is compiled, at any size.  A
    candidate with a :class:`Jittable` is traced once per forward and shape and its program
    reused, with new data, across checks (at most :data:`PROGRAM_CACHE_SIZE` kept;
    :func:`clear_cache` forgets them); one without is traced at each call.  A loss that does not
    trace as a whole (Python control flow on a value, a data-dependent shape) is differentiated
    eagerly instead.

    Args:
        candidates: ``(description, loss)`` or ``(description, loss, jittable)``; each ``loss``
            takes a list of JAX arrays (one per leaf) and returns a scalar.  Tried in order.
        leaves: the point, as float64 numpy arrays.
        expected: the loss of the numpy forward at ``leaves``.
        tol: the absolute difference in loss value tolerated.
        twin: whether the candidates are a user-supplied JAX twin.

    Returns:
        The gradients as float64 numpy arrays, or ``grads=None`` with the first failure's reason.
    """
    if not jax_available():
        return AutodiffResult(None, "", "JAX is not installed: no autodiff reference")
    import jax

    reasons: list[tuple[str, str]] = []
    tried = []
    for description, loss, *spec in candidates:
        jittable = spec[0] if spec else None
        signature = _signature(jittable, leaves) if jittable is not None else None
        if signature is not None and signature in _FAILED:
            reasons.append((description, _FAILED[signature]))
        else:
            tried.append((description, loss, jittable, signature))
    with jax.enable_x64(True):
        point = [np.asarray(leaf, dtype=np.float64) for leaf in leaves]
        for description, loss, jittable, signature in tried:
            try:
                value, out = _value_and_grad(loss, jittable, point, expected, tol)
            except Exception as exc:
                reasons.append((description, _reason(exc)))
                if signature is not None:
                    _remember(_FAILED, signature, reasons[-1][1])
                continue
            if not all(np.isfinite(g).all() for g in out):
                reasons.append((description, "JAX's gradient holds NaN/Inf"))
                continue
            if not abs(value - expected) <= tol:
                apart = _apart(value, expected, tol)
                if not twin:
                    where = "it" if description == AUTO_TWIN else "on JAX arrays the forward"
                    reasons.append((description, f"{where} gives the loss {apart}: not the "
                                    "same function"))
                    continue
                return AutodiffResult(out, description, f"{description} gives the loss {apart}")
            return AutodiffResult(out, description, "", None if twin else loss)
    return AutodiffResult(None, "", _no_path(reasons))


def _no_path(reasons: Sequence[tuple[str, str]]) -> str:
    """Why no candidate gave a reference, said plainly: the forward's first reason, the
    automatic twin's, or the jax_fun twin's."""
    by: dict[str, str] = {}
    for description, reason in reasons:
        by.setdefault(description, reason)
    if JAX_FUN in by:
        return f"no JAX reference: the jax_fun twin cannot be differentiated ({by[JAX_FUN]})"
    forward = by.get(ON_JAX) or by.get(ON_JAX_PARAMS) or "no candidate"
    text = f"no JAX reference: the forward is not JAX-traceable ({forward})"
    if AUTO_TWIN in by:
        text += f", and its automatic JAX twin cannot be used ({by[AUTO_TWIN]})"
    return text + "; pass jax_fun= for a third source"


def _apart(value: float, expected: float, tol: float) -> str:
    """How a JAX loss differs from the numpy forward's, with enough digits to show it."""
    return (f"{value!r}, not {expected!r} ({abs(value - expected):.3g} apart, beyond the "
            f"forward's noise floor allowance {tol:.3g})")


def _reason(exc: BaseException) -> str:
    from gradcheck.twin import plain_reason

    return plain_reason(exc)


#: Floats per batch of moved leaves (32 MiB of float64): the batch size adapts to the leaf.
_BATCH_FLOATS = 1 << 22


def batched_moves(loss: Callable[[list[Any]], Any], leaves: Sequence[np.ndarray]
                  ) -> Callable[[int, np.ndarray, np.ndarray], np.ndarray]:
    """A vectorised evaluator for :attr:`gradcheck.numeric.Objective.batch`.

    ``evaluate(k, flat_indices, values)`` returns ``loss`` with element ``flat_indices[i]`` of
    leaf ``k`` set to ``values[i]``, for all ``i``: ``jax.jit(jax.vmap(...))`` over fixed-size
    chunks of moved copies of leaf ``k`` (the last chunk padded, so each leaf compiles once), in
    float64 inside ``enable_x64``.  Compiled functions are kept in the closure only.
    """
    import jax
    import jax.numpy as jnp

    compiled: dict[int, tuple[Callable[[Any], Any], int]] = {}

    def for_leaf(k: int) -> tuple[Callable[[Any], Any], int]:
        if k not in compiled:
            with jax.enable_x64(True):
                point = [jnp.asarray(leaf, dtype=jnp.float64) for leaf in leaves]

                def one(moved: Any) -> Any:
                    ls = list(point)
                    ls[k] = moved
                    return jnp.real(jnp.asarray(loss(ls)).reshape(()))

                chunk = max(1, min(4096, _BATCH_FLOATS // max(1, leaves[k].size)))
                compiled[k] = (jit(jax.vmap(one)), chunk)
        return compiled[k]

    def evaluate(k: int, flat_indices: np.ndarray, values: np.ndarray) -> np.ndarray:
        fn, chunk = for_leaf(k)
        base = np.asarray(leaves[k], dtype=np.float64).reshape(-1)
        n = len(values)
        out = np.empty(n)
        rows = np.arange(chunk)
        with jax.enable_x64(True):
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                moved = np.broadcast_to(base, (chunk, base.size)).copy()
                moved[rows[: stop - start], flat_indices[start:stop]] = values[start:stop]
                got = np.asarray(fn(moved.reshape((chunk, *leaves[k].shape))), dtype=np.float64)
                out[start:stop] = got[: stop - start]
        return out

    return evaluate
