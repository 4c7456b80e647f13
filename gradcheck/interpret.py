"""A traced JAX program evaluated with numpy: JAX's derivative without XLA's compile time.

The autodiff reference is JAX's gradient of the user's forward.  Evaluating it with JAX costs a
compile: ``jax.jit`` compiles the whole program (an LSTM unrolled over 100 steps takes 26 s even
with backend optimisation off), and eager evaluation compiles every operation at every new shape
(9 s for that LSTM the first time, and each hypothesis example brings new shapes).  The gradient
program itself is cheap to obtain — ``jax.make_jaxpr(jax.value_and_grad(f))`` traces it in about
a second for that LSTM and in milliseconds for a dense layer — and its operations are few and
plain (``mul``, ``add``, ``dot_general``, ``tanh``, ``slice``, ``pad``, ``transpose``…).  So
this module runs the traced program with numpy, one numpy call per equation:

* the derivative is JAX's (the program is what ``jax.grad`` built); only the arithmetic runs in
  numpy, in the dtypes the program names (float64 under ``jax.enable_x64``), so the values agree
  with XLA's to rounding;
* an operation without a numpy rule here (``gather``, ``scatter-add``, ``conv_general_dilated``,
  ``while``, ``erf``…), or one whose operands are outside what the rule covers (integer division,
  float-to-int conversion), is bound to JAX eagerly on its own — correct by construction, and
  compiled by JAX once per shape as eager JAX always is;
* calls of sub-programs (``jit``, ``custom_jvp_call``, ``custom_vjp_call``, ``closed_call``) are
  evaluated recursively, their own programs prepared once.

:func:`trace` returns a :class:`Program` that can be called any number of times with new arrays
of the same shapes and dtypes (no retrace), which is what makes a hypothesis run cheap: one trace
per forward and shape, then microseconds of Python per equation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NUMPY_RULES", "Program", "function", "trace"]


# ----------------------------------------------------------------------------- numpy rules
#
# Each rule takes the input values (numpy arrays, in the program's dtypes) and the equation's
# params, and returns the output (a list for primitives with several results), or raises
# ``_Unsupported`` for operands it does not cover; the caller then binds the primitive to JAX.


class _Unsupported(Exception):
    """This rule does not cover these operands: bind the primitive to JAX instead."""


def _floating(*xs: np.ndarray) -> None:
    for x in xs:
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating)):
            raise _Unsupported


def _unary(fn: Callable[[np.ndarray], np.ndarray], *, floats: bool = True
           ) -> Callable[..., np.ndarray]:
    def rule(x: np.ndarray, **_: Any) -> np.ndarray:
        if floats:
            _floating(x)
        return fn(x)
    return rule


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], *, floats: bool = False
            ) -> Callable[..., np.ndarray]:
    def rule(x: np.ndarray, y: np.ndarray, **_: Any) -> np.ndarray:
        if floats:
            _floating(x, y)
        return fn(x, y)
    return rule


def _logistic(x: np.ndarray, **_: Any) -> np.ndarray:
    _floating(x)
    e = np.exp(-np.abs(x))
    return np.asarray(np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)), dtype=x.dtype)


def _round(x: np.ndarray, *, rounding_method: Any = 0, **_: Any) -> np.ndarray:
    _floating(x)
    if int(rounding_method) == 1:  # to nearest even
        return np.round(x)
    whole = np.trunc(x)  # away from zero; x - trunc(x) is exact, x + 0.5 is not
    return np.asarray(whole + np.where(np.abs(x - whole) >= 0.5, np.sign(x), 0.0), dtype=x.dtype)


def _integer_pow(x: np.ndarray, *, y: int, **_: Any) -> np.ndarray:
    if y < 0 and not np.issubdtype(x.dtype, np.inexact):
        raise _Unsupported
    if y == 2:
        return np.asarray(x * x)
    return x ** y


def _div(x: np.ndarray, y: np.ndarray, **_: Any) -> np.ndarray:
    _floating(x, y)  # integer division truncates in XLA and floors in numpy
    return np.asarray(x / y)


def _rem(x: np.ndarray, y: np.ndarray, **_: Any) -> np.ndarray:
    _floating(x, y)
    return np.asarray(np.fmod(x, y))


def _dot_general(x: np.ndarray, y: np.ndarray, *, dimension_numbers: Any, **_: Any) -> np.ndarray:
    (lc, rc), (lb, rb) = dimension_numbers
    lc, rc, lb, rb = (tuple(int(d) for d in ds) for ds in (lc, rc, lb, rb))
    lf = [d for d in range(x.ndim) if d not in lc and d not in lb]
    rf = [d for d in range(y.ndim) if d not in rc and d not in rb]
    batch = [x.shape[d] for d in lb]
    left = [x.shape[d] for d in lf]
    right = [y.shape[d] for d in rf]
    k = math.prod(x.shape[d] for d in lc)
    a = np.transpose(x, (*lb, *lf, *lc)).reshape(math.prod(batch), math.prod(left), k)
    b = np.transpose(y, (*rb, *rc, *rf)).reshape(math.prod(batch), k, math.prod(right))
    return np.asarray(np.matmul(a, b)).reshape(*batch, *left, *right)


def _broadcast_in_dim(x: np.ndarray, *, shape: Sequence[int], broadcast_dimensions: Sequence[int],
                      **_: Any) -> np.ndarray:
    expanded = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        expanded[d] = x.shape[i]
    return np.broadcast_to(x.reshape(expanded), tuple(shape))


def _reshape(x: np.ndarray, *, new_sizes: Sequence[int], dimensions: Any = None, **_: Any
             ) -> np.ndarray:
    if dimensions is not None:
        raise _Unsupported
    return np.reshape(x, tuple(new_sizes))


def _slice(x: np.ndarray, *, start_indices: Sequence[int], limit_indices: Sequence[int],
           strides: Sequence[int] | None = None, **_: Any) -> np.ndarray:
    steps = strides if strides is not None else (1,) * x.ndim
    return x[tuple(slice(int(a), int(b), int(s))
                   for a, b, s in zip(start_indices, limit_indices, steps, strict=True))]


def _pad(x: np.ndarray, value: np.ndarray, *, padding_config: Sequence[tuple[int, int, int]],
         **_: Any) -> np.ndarray:
    config = [(int(lo), int(hi), int(interior)) for lo, hi, interior in padding_config]
    if any(interior for _, _, interior in config):  # dilate first
        shape = [n + max(n - 1, 0) * interior for n, (_, _, interior) in zip(x.shape, config, strict=True)]
        dilated = np.full(shape, value, dtype=x.dtype)
        dilated[tuple(slice(None, None, interior + 1) for _, _, interior in config)] = x
        x = dilated
    widths = [(max(lo, 0), max(hi, 0)) for lo, hi, _ in config]
    if any(w != (0, 0) for w in widths):
        x = np.pad(x, widths, mode="constant", constant_values=value)
    if any(lo < 0 or hi < 0 for lo, hi, _ in config):  # negative padding crops
        x = x[tuple(slice(-lo if lo < 0 else None, hi if hi < 0 else None)
                    for lo, hi, _ in config)]
    return x


def _clamp(lo: np.ndarray, x: np.ndarray, hi: np.ndarray, **_: Any) -> np.ndarray:
    return np.asarray(np.minimum(np.maximum(x, lo), hi))


def _select_n(which: np.ndarray, *cases: np.ndarray) -> np.ndarray:
    if which.dtype == np.bool_:
        if len(cases) == 1:
            return cases[0]
        return np.where(which, cases[1], cases[0])
    return np.choose(which, np.broadcast_arrays(*cases))


def _convert_element_type(x: np.ndarray, *, new_dtype: Any, **_: Any) -> np.ndarray:
    new = np.dtype(new_dtype)
    if np.issubdtype(x.dtype, np.inexact) and not np.issubdtype(new, np.inexact) and new != np.bool_:
        raise _Unsupported  # XLA's out-of-range float-to-int conversion is its own
    if np.iscomplexobj(x) and not np.issubdtype(new, np.complexfloating):
        x = np.real(x)  # XLA keeps the real part (numpy too, with a ComplexWarning)
    return x.astype(new, copy=False)


def _dynamic_starts(shape: Sequence[int], sizes: Sequence[int], starts: Sequence[np.ndarray]
                    ) -> list[int]:
    return [min(max(int(s), 0), n - k) for s, n, k in zip(starts, shape, sizes, strict=True)]


def _dynamic_slice(x: np.ndarray, *starts: np.ndarray, slice_sizes: Sequence[int], **_: Any
                   ) -> np.ndarray:
    at = _dynamic_starts(x.shape, slice_sizes, starts)
    return x[tuple(slice(a, a + int(k)) for a, k in zip(at, slice_sizes, strict=True))]


def _dynamic_update_slice(x: np.ndarray, update: np.ndarray, *starts: np.ndarray, **_: Any
                          ) -> np.ndarray:
    at = _dynamic_starts(x.shape, update.shape, starts)
    out = np.array(x, copy=True)
    out[tuple(slice(a, a + k) for a, k in zip(at, update.shape, strict=True))] = update
    return out


def _cumulative(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def rule(x: np.ndarray, *, axis: int, reverse: bool = False, **_: Any) -> np.ndarray:
        if reverse:
            return np.flip(fn(np.flip(x, axis), axis=axis), axis)
        return fn(x, axis=axis)
    return rule


def _reduce(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def rule(x: np.ndarray, *, axes: Sequence[int], **_: Any) -> np.ndarray:
        return fn(x, axis=tuple(int(a) for a in axes))
    return rule


def _split(x: np.ndarray, *, sizes: Sequence[int], axis: int, **_: Any) -> list[np.ndarray]:
    cuts = np.cumsum([int(s) for s in sizes])[:-1]
    return list(np.split(x, cuts, axis=axis))


def _unstack(x: np.ndarray, *, axis: int, **_: Any) -> list[np.ndarray]:
    return list(np.moveaxis(x, axis, 0))


def _iota(*, dtype: Any, shape: Sequence[int], dimension: int, **_: Any) -> np.ndarray:
    line = np.arange(shape[dimension], dtype=dtype)
    expanded = [1] * len(shape)
    expanded[dimension] = shape[dimension]
    return np.broadcast_to(line.reshape(expanded), tuple(shape))


def _same(x: np.ndarray, **_: Any) -> np.ndarray:
    return x


def _same_all(*xs: np.ndarray, **_: Any) -> list[np.ndarray]:
    return list(xs)


#: The primitives evaluated with numpy, by name; every other one is bound to JAX eagerly.
NUMPY_RULES: dict[str, Callable[..., Any]] = {
    # arithmetic
    "add": _binary(np.add), "add_any": _binary(np.add), "sub": _binary(np.subtract),
    "mul": _binary(np.multiply), "div": _div, "rem": _rem, "pow": _binary(np.power, floats=True),
    "max": _binary(np.maximum), "min": _binary(np.minimum),
    "atan2": _binary(np.arctan2, floats=True), "nextafter": _binary(np.nextafter, floats=True),
    "neg": _unary(np.negative, floats=False), "abs": _unary(np.abs, floats=False),
    "sign": _unary(np.sign), "floor": _unary(np.floor), "ceil": _unary(np.ceil),
    "round": _round, "is_finite": _unary(np.isfinite), "integer_pow": _integer_pow,
    "square": _unary(np.square, floats=False), "sqrt": _unary(np.sqrt),
    "rsqrt": _unary(lambda x: 1.0 / np.sqrt(x)), "cbrt": _unary(np.cbrt),
    "exp": _unary(np.exp), "exp2": _unary(np.exp2), "log": _unary(np.log),
    "log1p": _unary(np.log1p), "expm1": _unary(np.expm1), "tanh": _unary(np.tanh),
    "logistic": _logistic, "sin": _unary(np.sin), "cos": _unary(np.cos), "tan": _unary(np.tan),
    "asin": _unary(np.arcsin), "acos": _unary(np.arccos), "atan": _unary(np.arctan),
    "sinh": _unary(np.sinh), "cosh": _unary(np.cosh), "asinh": _unary(np.arcsinh),
    "acosh": _unary(np.arccosh), "atanh": _unary(np.arctanh),
    "real": _unary(np.real), "imag": _unary(np.imag), "conj": _unary(np.conj),
    "clamp": _clamp,
    # comparison and logic (np.bitwise_* is logical on booleans, as XLA's are)
    "eq": _binary(np.equal), "ne": _binary(np.not_equal), "lt": _binary(np.less),
    "le": _binary(np.less_equal), "gt": _binary(np.greater), "ge": _binary(np.greater_equal),
    "and": _binary(np.bitwise_and), "or": _binary(np.bitwise_or), "xor": _binary(np.bitwise_xor),
    "not": _unary(np.invert, floats=False), "select_n": _select_n,
    # linear algebra and reductions
    "dot_general": _dot_general, "reduce_sum": _reduce(np.sum), "reduce_max": _reduce(np.max),
    "reduce_min": _reduce(np.min), "reduce_prod": _reduce(np.prod),
    "reduce_and": _reduce(np.all), "reduce_or": _reduce(np.any),
    "cumsum": _cumulative(np.cumsum), "cumprod": _cumulative(np.cumprod),
    "cummax": _cumulative(np.maximum.accumulate), "cummin": _cumulative(np.minimum.accumulate),
    # structure
    "broadcast_in_dim": _broadcast_in_dim, "reshape": _reshape, "slice": _slice, "pad": _pad,
    "transpose": lambda x, *, permutation, **_: np.transpose(x, tuple(permutation)),
    "squeeze": lambda x, *, dimensions, **_: np.squeeze(x, axis=tuple(dimensions)),
    "rev": lambda x, *, dimensions, **_: np.flip(x, axis=tuple(dimensions)),
    "concatenate": lambda *xs, dimension, **_: np.concatenate(xs, axis=dimension),
    "stack": lambda *xs, axis, **_: np.stack(xs, axis=axis),
    "split": _split, "unstack": _unstack, "iota": _iota,
    "dynamic_slice": _dynamic_slice, "dynamic_update_slice": _dynamic_update_slice,
    "convert_element_type": _convert_element_type,
    "copy": _same, "copy_p": _same, "stop_gradient": _same,
    "optimization_barrier": _same_all, "device_put": _same_all,
}

#: Parameters that hold the sub-program of a call primitive (evaluated recursively).
_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call", "custom_jvp_call",
                    "custom_vjp_call", "custom_vjp_call_jaxpr", "checkpoint", "remat"})


# ----------------------------------------------------------------------------- programs


@dataclass(frozen=True, slots=True)
class _Step:
    """One equation, prepared: where its inputs are, what to run, where its outputs go."""

    name: str
    rule: Callable[..., Any] | None
    sub: _Flat | None
    primitive: Any
    params: dict[str, Any]
    inputs: tuple[int | np.ndarray, ...]  # a slot, or a literal's value
    outputs: tuple[int, ...]  # slots; -1 for a dropped output
    avals: tuple[tuple[tuple[int, ...], np.dtype], ...]
    many: bool


@dataclass(frozen=True, slots=True)
class _Flat:
    """A jaxpr as a list of steps over numbered slots."""

    n_slots: int
    constvars: tuple[int, ...]
    invars: tuple[int, ...]
    outvars: tuple[int | np.ndarray, ...]
    steps: tuple[_Step, ...]


def _prepare(jaxpr: Any) -> _Flat:
    from jax.extend import core as jc

    slots: dict[Any, int] = {}

    def slot(v: Any) -> int:
        if v not in slots:
            slots[v] = len(slots)
        return slots[v]

    def operand(v: Any) -> int | np.ndarray:
        if isinstance(v, jc.Literal):
            return np.asarray(v.val, dtype=v.aval.dtype)  # type: ignore[attr-defined]
        return slot(v)

    constvars = tuple(slot(v) for v in jaxpr.constvars)
    invars = tuple(slot(v) for v in jaxpr.invars)
    steps = []
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        sub = None
        if name in _CALLS:
            inner = next((eqn.params[p] for p in _CALL_PARAMS if p in eqn.params), None)
            if isinstance(inner, jc.ClosedJaxpr):
                sub = _prepare_closed(inner)
            elif isinstance(inner, jc.Jaxpr) and not inner.constvars:
                sub = _prepare(inner)
        steps.append(_Step(
            name=name, rule=NUMPY_RULES.get(name), sub=sub, primitive=eqn.primitive,
            params=dict(eqn.params), inputs=tuple(operand(v) for v in eqn.invars),
            outputs=tuple(-1 if isinstance(v, jc.DropVar) else slot(v) for v in eqn.outvars),
            avals=tuple((tuple(v.aval.shape), np.dtype(v.aval.dtype)) for v in eqn.outvars),
            many=bool(eqn.primitive.multiple_results)))
    outvars = tuple(operand(v) for v in jaxpr.outvars)
    return _Flat(len(slots), constvars, invars, outvars, tuple(steps))


def _prepare_closed(closed: Any) -> _Flat:
    """A closed jaxpr's consts become literal operands of its steps' inputs."""
    flat = _prepare(closed.jaxpr)
    consts = {s: np.asarray(c) for s, c in zip(flat.constvars, closed.consts, strict=True)}
    if not consts:
        return flat

    def bake(v: int | np.ndarray) -> int | np.ndarray:
        return consts[v] if isinstance(v, int) and v in consts else v

    steps = tuple(_Step(s.name, s.rule, s.sub, s.primitive, s.params,
                        tuple(bake(v) for v in s.inputs), s.outputs, s.avals, s.many)
                  for s in flat.steps)
    return _Flat(flat.n_slots, (), flat.invars, tuple(bake(v) for v in flat.outvars), steps)


def _bind(step: _Step, args: list[np.ndarray]) -> Any:
    """The primitive of ``step`` run by JAX on its own (eagerly), back as numpy."""
    import jax.numpy as jnp

    out = step.primitive.bind(*[jnp.asarray(a) for a in args], **step.params)
    return [np.asarray(o) for o in out] if step.many else np.asarray(out)


def _fit(value: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    out = np.asarray(value)
    if out.dtype != dtype:
        out = out.astype(dtype)
    if out.shape != shape:
        raise _Unsupported
    return out


def _run(flat: _Flat, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    env: list[Any] = [None] * flat.n_slots
    for s, a in zip(flat.invars, args, strict=True):
        env[s] = a
    for step in flat.steps:
        ins = [env[v] if isinstance(v, int) else v for v in step.inputs]
        outs: Any = None
        if step.sub is not None:
            outs = _run(step.sub, ins)
        elif step.rule is not None:
            try:
                got = step.rule(*ins, **step.params)
                if step.many:
                    outs = [_fit(g, *a) for g, a in zip(got, step.avals, strict=True)]
                else:
                    outs = _fit(got, *step.avals[0])
            except Exception:  # operands outside the rule (or numpy refuses them: JAX decides)
                outs = None
        if outs is None:
            outs = _bind(step, ins)
        if not step.many and step.sub is None:
            outs = [outs]
        for s, o in zip(step.outputs, outs, strict=True):
            if s >= 0:
                env[s] = o
    return [env[v] if isinstance(v, int) else v for v in flat.outvars]


@dataclass(frozen=True, slots=True)
class Program:
    """A traced function of pytrees of arrays, evaluated with numpy (see the module docstring).

    Call it with arguments of the traced shapes and dtypes (numpy or JAX arrays, any pytree of
    the traced structure); it returns the traced output pytree with numpy leaves.
    """

    flat: _Flat
    in_tree: Any
    out_tree: Any
    #: The number of equations (those of called sub-programs included).
    equations: int

    def __call__(self, *args: Any) -> Any:
        import jax

        leaves, tree = jax.tree_util.tree_flatten(args)
        if tree != self.in_tree:
            raise TypeError(f"the program was traced for arguments {self.in_tree}, not {tree}")
        with np.errstate(all="ignore"):  # XLA's arithmetic is silent; so is its numpy run
            outs = _run(self.flat, [np.asarray(a) for a in leaves])
        # Copies: an output may be a view of an input or of a constant (a gradient that is
        # the data itself), and the caller owns what it gets.
        return jax.tree_util.tree_unflatten(self.out_tree, [np.array(o) for o in outs])


def _count(flat: _Flat) -> int:
    return sum(1 + (_count(s.sub) if s.sub is not None else 0) for s in flat.steps)


def trace(fun: Callable[..., Any], *args: Any) -> Program:
    """Trace ``fun(*args)`` once (``jax.make_jaxpr``; no compile) into a :class:`Program`.

    Raises whatever JAX raises when ``fun`` cannot be traced at abstract values (a numpy call on
    a tracer, Python control flow on a value, a data-dependent shape).
    """
    import jax

    leaves, in_tree = jax.tree_util.tree_flatten(args)
    out_tree: list[Any] = []

    def flat_fun(*xs: Any) -> Any:
        out, tree = jax.tree_util.tree_flatten(fun(*jax.tree_util.tree_unflatten(in_tree, xs)))
        out_tree.append(tree)
        return out

    closed = jax.make_jaxpr(flat_fun)(*leaves)
    flat = _prepare_closed(closed)
    return Program(flat, in_tree, out_tree[-1], _count(flat))


def function(fun: Callable[..., Any]) -> Callable[..., Any]:
    """``fun`` (JAX code of arrays) as a function that traces one :class:`Program` per signature
    of its arguments (tree structure, shapes, dtypes, and whether 64-bit JAX is on) and runs it
    with numpy: a stand-in for ``jax.jit`` that compiles nothing.  Code that does not trace as a
    whole (Python control flow on a value, a dtype without a numpy counterpart) runs eagerly
    instead, at that signature from then on.  Returns numpy leaves."""
    import jax

    programs: dict[Any, Program | None] = {}

    def run(*args: Any) -> Any:
        leaves, tree = jax.tree_util.tree_flatten(args)
        key = (tree, tuple((np.shape(a), np.result_type(a).str) for a in leaves),
               bool(jax.config.read("jax_enable_x64")))  # type: ignore[no-untyped-call]
        if key not in programs:
            try:
                programs[key] = trace(fun, *args)
            except jax.errors.TracerArrayConversionError:
                raise  # numpy called on a tracer: eagerly it would be called on one too
            except Exception:
                programs[key] = None
        program = programs[key]
        if program is None:
            eager = fun(*jax.tree_util.tree_map(jax.numpy.asarray, args))
            return jax.tree_util.tree_map(np.asarray, eager)
        return program(*args)

    return run
