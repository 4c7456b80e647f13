"""Orchestration of a gradient check: hygiene, references, per-leaf verdicts, modes.

``check_grad`` and ``check_layer`` reduce to one problem — a scalar loss over a pytree of float
leaves and a hand gradient for each leaf — which :func:`_run` checks against finite differences
and JAX, leaf by leaf, in the mode asked for.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import numpy as np

from gradcheck import _hygiene as hy
from gradcheck import autodiff, localise, numeric
from gradcheck._tree import TreeDef, flatten, path_name
from gradcheck.compare import GRAD_ATOL_FRACTION, agreement, close, diagnose, tolerance, triangulate
from gradcheck.dynamics import log_slope
from gradcheck.errors import InvalidArgument, NonFiniteError, UserCodeError
from gradcheck.result import (
    Blame,
    CheckResult,
    Control,
    Element,
    LeafResult,
    Localisation,
    Probe,
    Verdict,
)

__all__ = ["EXPLODING_GROWTH", "FULL_NUMERIC_MAX", "CheckOptions", "Mode", "check_grad", "check_layer"]

#: Growth of ‖∂L/∂x_t‖ from the last time step back to the first (a sequence leaf's reference
#: gradient, fitted log-linearly) from which a check is in the *exploding regime*: finite
#: differences there sit on a steep, strongly curved loss, their error bars are widened by
#: √growth (at most ``_MAX_ERR_SCALE``) and autodiff, where present, is the reference.
EXPLODING_GROWTH = 1e3
_MAX_ERR_SCALE = 1e3
#: Quantile of the entries at which a screening run's detection power is claimed.
_POWER_QUANTILE = 0.9

Mode = Literal["auto", "full", "directional"]
_MODES = ("auto", "full", "directional")
_REFERENCES = ("numeric", "autodiff")


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """Options every check understands (keyword-only at the public functions).

    Attributes:
        mode: ``"full"`` checks every element (autodiff-led above ``FULL_NUMERIC_MAX``
            entries when a JAX reference exists, see there); ``"directional"`` compares directional
            derivatives along ``probes`` seeded Gaussian directions; ``"auto"`` uses full for
            small problems and directional screening (then full re-checks of failing leaves up
            to ``localise_max`` elements) for large ones.
        references: which references to use, a subset of ``("numeric", "autodiff")``.
        jax_fun: a JAX twin of the forward with the same signature (``fun(params, *args)`` for
            check_grad, ``forward(params, x)`` for check_layer).
        rtol: relative tolerance override, a float or ``{dtype: float}``.
        atol: absolute tolerance override, a float or ``{dtype: float}``.
        seed: the only source of randomness (probes, dy, noise directions).
        name: a label for reports and messages.
        probes: number of directional probes per leaf.
        worst: how many worst entries to keep per leaf.
        time_axis: the axis of a sequence leaf that is time (for shift / time-step diagnoses);
            ``None`` for no time axis.
        full_max: in ``auto`` mode, problems with at most this many elements are checked in full.
        localise_max: in ``auto`` mode, a leaf that fails screening is re-checked in full when
            it has at most this many elements.
        complex_step: ``None`` probes whether the forward is complex-safe, ``False`` never
            uses the complex step.
        batch: ``True`` evaluates large sets of finite differences (at least
            ``numeric.BATCH_MIN`` moves) in compiled batches — ``jax.jit`` of ``jax.vmap`` of the
            same forward on JAX arrays — when the forward runs on JAX arrays and computes the
            numpy forward's value; they are then central differences.  It pays off for forwards
            dominated by Python overhead (long recurrences of small cells), not for large dense
            layers, whose batched matmuls are slower than numpy's one at a time.
    """

    mode: Mode = "auto"
    references: tuple[str, ...] = _REFERENCES
    jax_fun: Callable[..., Any] | None = None
    rtol: float | Mapping[Any, float] | None = None
    atol: float | Mapping[Any, float] | None = None
    seed: int = 0
    name: str | None = None
    probes: int = 3
    worst: int = 5
    time_axis: int | None = 0
    full_max: int = 4096
    localise_max: int = 16384
    complex_step: bool | None = None
    batch: bool = False

    def summary(self) -> dict[str, Any]:
        """The options as plain JSON values, for the report."""
        def plain(v: Any) -> Any:
            if isinstance(v, Mapping):
                return {str(np.dtype(k)): float(x) for k, x in v.items()}
            if callable(v):
                return getattr(v, "__qualname__", repr(v))
            return list(v) if isinstance(v, tuple) else v

        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


def _options(options: Mapping[str, Any]) -> CheckOptions:
    """Validate keyword options at the public boundary (Hypothesis-style one-line checks)."""
    known = {f.name for f in fields(CheckOptions)}
    for key in options:
        if key not in known:
            close_names = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close_names[0]!r}?" if close_names else ""
            raise InvalidArgument(f"unknown option {key!r}{hint} Options are {sorted(known)}.")
    opts = dict(options)
    if "references" in opts:
        refs = opts["references"]
        refs = (refs,) if isinstance(refs, str) else tuple(refs)
        bad = [r for r in refs if r not in _REFERENCES]
        if bad or not refs:
            raise InvalidArgument(
                f"references={options['references']!r}: choose one or both of {_REFERENCES}."
            )
        opts["references"] = refs
    if opts.get("mode", "auto") not in _MODES:
        raise InvalidArgument(f"mode={opts['mode']!r}: expected one of {_MODES}.")
    for key in ("probes", "worst", "full_max", "localise_max"):
        if key in opts and (not isinstance(opts[key], int) or opts[key] < 1):
            raise InvalidArgument(f"{key}={opts[key]!r}: expected a positive int.")
    if "seed" in opts and not isinstance(opts["seed"], int | np.integer):
        raise InvalidArgument(f"seed={opts['seed']!r}: expected an int.")
    for key in ("rtol", "atol"):
        v = opts.get(key)
        if v is not None and not isinstance(v, Mapping) and not (
            isinstance(v, int | float) and v >= 0
        ):
            raise InvalidArgument(f"{key}={v!r}: expected a non-negative float or {{dtype: float}}.")
    if opts.get("jax_fun") is not None and not callable(opts["jax_fun"]):
        raise InvalidArgument(f"jax_fun={opts['jax_fun']!r} is not callable.")
    if opts.get("complex_step") not in (None, True, False):
        raise InvalidArgument(f"complex_step={opts['complex_step']!r}: expected None, True or False.")
    if opts.get("batch", False) not in (True, False):
        raise InvalidArgument(f"batch={opts['batch']!r}: expected True or False.")
    t = opts.get("time_axis", 0)
    if t is not None and not isinstance(t, int):
        raise InvalidArgument(f"time_axis={t!r}: expected an int or None.")
    return CheckOptions(**opts)


# ----------------------------------------------------------------------------- problem


@dataclass(frozen=True)
class _Problem:
    """A scalar loss over named float leaves, with the hand gradient of each leaf.

    ``loss(tree)`` calls the user's forward on a tree rebuilt from leaves (numpy or JAX);
    ``jax_candidates`` build JAX losses over the leaves for the autodiff reference.
    """

    kind: str
    name: str
    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    subclasses: tuple[type, ...]
    treedef: TreeDef
    loss: Callable[[Any], Any]
    hand: tuple[np.ndarray | None, ...]
    jax_candidates: Callable[[], list[tuple[str, Callable[[list[Any]], Any]]]]
    twin: bool
    notes: tuple[str, ...]
    #: ``hand_at(leaves, upcast)``: the user's backward again at other leaf values (``upcast``: a
    #: dtype every lower-precision float input is cast to, or ``None``), validated like ``hand``.
    hand_at: Callable[[list[np.ndarray], Any], list[np.ndarray | None]] | None = None
    #: The magnitude of the loss's terms (``Σ|dy ⊙ y|`` for a layer, ``|L|`` otherwise): the
    #: rounding of any gradient computed from them is relative to this, not to the gradient.
    loss_scale: float = 0.0

    def rebuild(self, leaves: Sequence[Any]) -> Any:
        views = [
            leaf.view(cls) if isinstance(leaf, np.ndarray) and cls is not np.ndarray else leaf
            for leaf, cls in zip(leaves, self.subclasses, strict=True)
        ]
        return self.treedef.unflatten(views)


def _leaves(tree: Any, names_of: Callable[[tuple[Any, ...]], str] | None = None
            ) -> tuple[list[str], list[np.ndarray], list[type], TreeDef]:
    leaves, treedef = flatten(tree)
    names, values, classes = [], [], []
    for leaf in leaves:
        if names_of is not None:
            name = names_of(leaf.path)
        else:
            name = path_name(leaf.path) if leaf.path else "params"
        names.append(name)
        values.append(hy.validate_param(leaf.value, name))
        classes.append(type(leaf.value) if isinstance(leaf.value, np.ndarray) else np.ndarray)
    if not leaves:
        raise InvalidArgument("params is empty: there is nothing to check.")
    return names, values, classes, treedef


def check_grad(
    fun: Callable[..., Any], grad: Callable[..., Any], params: Any, *args: Any, **options: Any
) -> CheckResult:
    """Check a hand-derived gradient of a scalar loss against finite differences and JAX.

    Args:
        fun: ``fun(params, *args) -> scalar loss``.
        grad: ``grad(params, *args) -> pytree`` shaped like ``params`` (or a flat tuple/list with
            one gradient per leaf, in order).
        params: a dict/list/tuple pytree of float arrays; every leaf is checked.
        *args: passed through to ``fun`` and ``grad`` unchanged (data, labels, configuration).
        **options: see :class:`CheckOptions`.

    Returns:
        A :class:`~gradcheck.CheckResult`; call ``.raise_for_failure()`` in a test.

    Raises:
        InvalidArgument: bad options or parameters (integer leaves, non-arrays).
        NonFiniteError, GradientStructureError, UserCodeError, InputMutated, NonDeterministic:
            problems with the user's code, each naming the tensor involved.

    Examples:
        >>> import numpy as np, gradcheck as gc
        >>> W = np.arange(6.0).reshape(2, 3) / 10
        >>> res = gc.check_grad(lambda p: np.sum(p["W"] ** 3), lambda p: {"W": 3 * p["W"] ** 2},
        ...                     {"W": W}, references=("numeric",))
        >>> res.verdict
        'pass'
    """
    opts = _options(options)
    names, values, classes, treedef = _leaves(params)
    label = str(opts.name or getattr(fun, "__name__", "fun"))

    def loss(tree: Any) -> Any:
        return fun(tree, *hy.copy_tree(args))

    pristine = hy.copy_tree({"params": params, "args": list(args)})
    passed = hy.copy_tree(pristine)
    what = f"{label}(params, *args)"
    f0 = hy.call_user(fun, what, passed["params"], *passed["args"],
                      where="computing the loss at the given point")
    hy.raise_if_mutated(pristine, passed, "", f"the loss function {label}")
    f0 = hy.scalar_loss(f0, what)
    hy.check_finite_loss(float(np.real(f0)), what)

    given = hy.copy_tree(pristine)
    grad_name = getattr(grad, "__name__", "grad")
    raw = hy.call_user(grad, f"{grad_name}(params, *args)", given["params"], *given["args"],
                       where="computing the hand gradient")
    notes = []
    change = hy.first_change(pristine, given, "")
    if change is not None:
        notes.append(f"{grad_name} modifies its inputs ({change}); gradcheck passes copies, so "
                     "the check is unaffected")
    hand, hand_notes = hy.validate_hand(raw, names, [v.shape for v in values], what=grad_name)

    def candidates() -> list[tuple[str, Callable[[list[Any]], Any]]]:
        out = []
        if opts.jax_fun is not None:
            twin = opts.jax_fun
            out.append(("the jax_fun twin",
                        lambda ls: twin(treedef.unflatten(ls), *autodiff.to_jax(hy.copy_tree(args)))))
            return out
        out.append(("the forward on JAX arrays",
                    lambda ls: fun(treedef.unflatten(ls), *autodiff.to_jax(hy.copy_tree(args)))))
        out.append(("the forward on JAX parameters and numpy args",
                    lambda ls: fun(treedef.unflatten(ls), *hy.copy_tree(args))))
        return out

    def hand_at(leaves: list[np.ndarray], upcast: Any) -> list[np.ndarray | None]:
        args_ = _upcast(pristine["args"], upcast) if upcast else hy.copy_tree(pristine["args"])
        raw_ = grad(problem.rebuild(leaves), *args_)
        return hy.validate_hand(raw_, names, [v.shape for v in values], what=grad_name)[0]

    problem = _Problem("check_grad", label, tuple(names), tuple(values), tuple(classes), treedef,
                       loss, tuple(hand), candidates, opts.jax_fun is not None,
                       tuple(notes + hand_notes), hand_at, abs(float(np.real(f0))))
    return _run(problem, opts, float(np.real(f0)))


def check_layer(layer: Any, params: Any, x: Any, **options: Any) -> CheckResult:
    """Check a layer's hand-derived backward, for its parameters and its input.

    The layer has no scalar loss, so it is checked through ``L = ⟨dy, forward(params, x)⟩`` with
    a random ``dy`` (seeded by ``seed``): ``backward(params, x, dy)`` must return
    ``(dparams, dx)`` = ``(∂L/∂params, ∂L/∂x)``.  ``dx`` may be ``None`` (not checked).

    Args:
        layer: an object with ``forward(params, x) -> y`` and
            ``backward(params, x, dy) -> (dparams, dx)``; see :mod:`gradcheck.adapters` for
            CS231n-style functions and stateful layer objects.
        params: pytree of float arrays (may be empty ``{}`` for parameter-free layers).
        x: the input, a float array (or pytree of them); checked as the leaf ``x``.
        **options: see :class:`CheckOptions`; ``jax_fun`` is a JAX twin of ``forward``.

    Returns:
        A :class:`~gradcheck.CheckResult`.

    Examples:
        >>> import numpy as np, gradcheck as gc
        >>> class Scale:
        ...     def forward(self, p, x): return p["a"] * x
        ...     def backward(self, p, x, dy): return {"a": np.sum(dy * x)}, p["a"] * dy
        >>> gc.check_layer(Scale(), {"a": np.array(2.0)}, np.ones(3)).passed
        True
    """
    opts = _options(options)
    for method in ("forward", "backward"):
        if not callable(getattr(layer, method, None)):
            raise InvalidArgument(
                f"layer {type(layer).__name__} has no {method}() method: expected forward(params, "
                "x) and backward(params, x, dy). For CS231n-style functions use "
                "gc.cs231n_layer(forward, backward); for objects that keep a cache use "
                "gc.stateful_layer(obj, ...)."
            )
    label = opts.name or type(layer).__name__
    tree = {"params": params, "x": x}
    def layer_name(path: tuple[Any, ...]) -> str:
        if path[0] == "x":
            return path_name(path[1:], "x")
        return path_name(path[1:]) if path[1:] else "params"

    names, values, classes, treedef = _leaves(tree, layer_name)
    n_params = _count(params)
    fwd = f"{label}.forward(params, x)"

    pristine = hy.copy_tree(tree)
    passed = hy.copy_tree(tree)
    y0 = hy.call_user(layer.forward, fwd, passed["params"], passed["x"], where="at the given point")
    hy.raise_if_mutated(pristine, passed, "", fwd)
    y0 = _layer_output(y0, fwd)
    rng = np.random.default_rng(opts.seed)
    # dy exactly representable in y's dtype: the backward and the references see the same dy.
    dy = rng.standard_normal(y0.shape).astype(y0.dtype).astype(np.float64)

    def loss(t: Any) -> Any:
        y = layer.forward(t["params"], t["x"])
        return _contract(y, dy)

    f0 = float(np.sum(dy * np.asarray(y0, np.float64)))
    hy.check_finite_loss(f0, fwd)

    given = hy.copy_tree({**tree, "dy": dy.astype(y0.dtype)})
    bwd = f"{label}.backward(params, x, dy)"
    raw = hy.call_user(layer.backward, bwd, given["params"], given["x"], given["dy"],
                       where="computing the hand gradient")
    notes = []
    change = hy.first_change({**pristine, "dy": dy.astype(y0.dtype)}, given, "")
    if change is not None:
        notes.append(f"{bwd} modifies its inputs ({change}); gradcheck passes copies, so the "
                     "check is unaffected")
    if not isinstance(raw, tuple | list) or len(raw) != 2:
        n = len(raw) if isinstance(raw, tuple | list) else 1
        raise InvalidArgument(
            f"{bwd} must return (dparams, dx); it returned {n} value(s). For CS231n-style "
            "backwards returning (dx, dw, db) use gc.cs231n_layer(forward, backward)."
        )
    hand_p, notes_p = hy.validate_hand(raw[0] if n_params else [], names[:n_params],
                                       [v.shape for v in values[:n_params]], what=bwd)
    hand_x, notes_x = hy.validate_hand(raw[1], names[n_params:],
                                       [v.shape for v in values[n_params:]], what=bwd,
                                       optional=names[n_params:])

    def candidates() -> list[tuple[str, Callable[[list[Any]], Any]]]:
        forward = opts.jax_fun if opts.jax_fun is not None else layer.forward
        desc = "the jax_fun twin" if opts.jax_fun is not None else "the forward on JAX arrays"

        def jloss(ls: list[Any]) -> Any:
            t = treedef.unflatten(ls)
            return _contract(forward(t["params"], t["x"]), dy)

        return [(desc, jloss)]

    def hand_at(leaves: list[np.ndarray], upcast: Any) -> list[np.ndarray | None]:
        t = problem.rebuild(leaves)
        got = layer.backward(t["params"], t["x"], dy.astype(upcast) if upcast else dy.astype(y0.dtype))
        p_ = hy.validate_hand(got[0] if n_params else [], names[:n_params],
                              [v.shape for v in values[:n_params]], what=bwd)[0]
        x_ = hy.validate_hand(got[1], names[n_params:], [v.shape for v in values[n_params:]],
                              what=bwd, optional=names[n_params:])[0]
        return p_ + x_

    problem = _Problem("check_layer", label, tuple(names), tuple(values), tuple(classes), treedef,
                       loss, tuple(hand_p + hand_x), candidates, opts.jax_fun is not None,
                       tuple(notes + notes_p + notes_x), hand_at,
                       float(np.sum(np.abs(dy * np.asarray(y0, np.float64)))))
    return _run(problem, opts, f0)


def _upcast(tree: Any, dtype: Any = np.float64) -> Any:
    """A copy of ``tree`` with every float array of lower precision than ``dtype`` cast to it."""
    leaves, treedef = flatten(hy.copy_tree(tree))
    target = np.dtype(dtype)
    return treedef.unflatten([
        leaf.value.astype(target) if isinstance(leaf.value, np.ndarray)
        and leaf.value.dtype.kind == "f" and np.finfo(leaf.value.dtype).eps > np.finfo(target).eps
        else leaf.value
        for leaf in leaves
    ])


def _count(tree: Any) -> int:
    return len(flatten(tree)[0]) if tree is not None else 0


def _layer_output(y: Any, what: str) -> np.ndarray:
    if isinstance(y, tuple | list):
        raise InvalidArgument(
            f"{what} returned a {type(y).__name__} of {len(y)} values; expected the output array. "
            "For CS231n-style (out, cache) functions use gc.cs231n_layer(forward, backward)."
        )
    arr = np.asarray(y)
    if arr.dtype.kind != "f":
        raise InvalidArgument(f"{what} returned dtype {arr.dtype}; expected a float array.")
    bad = hy.first_nonfinite(arr)
    if bad is not None:
        raise NonFiniteError(
            f"{what} returned {bad[1]} at {list(bad[0])} of its output: check the point."
        )
    return arr


def _contract(y: Any, dy: np.ndarray) -> Any:
    """``⟨dy, y⟩`` in the namespace of ``y`` (numpy, or jax.numpy under tracing)."""
    get = getattr(y, "__array_namespace__", None)
    if get is None:
        return np.sum(dy * np.asarray(y))
    xp = get()
    return xp.sum(xp.asarray(dy) * y)


# ----------------------------------------------------------------------------- the run


@dataclass
class _Context:
    """What every leaf check needs: the objective, tolerance scales, autodiff, options."""

    problem: _Problem
    opts: CheckOptions
    obj: numeric.Objective
    eps: float
    precision: np.dtype[Any]
    complex_ok: bool
    ad: tuple[np.ndarray, ...] | None
    rng: np.random.Generator
    global_scale: float = 0.0
    #: Factor on every finite-difference error bar (√growth in the exploding regime, else 1).
    err_scale: float = 1.0
    exploding: bool = False
    #: True while the precision ladder re-checks a float64 recomputation of the hand gradient:
    #: it is then judged by its own dtype, not by the lower-precision parameter's.
    ladder: bool = False


def _run(problem: _Problem, opts: CheckOptions, f0: float) -> CheckResult:
    notes = list(problem.notes)

    def evaluate(leaves: Sequence[np.ndarray]) -> Any:
        cast = [leaf if np.iscomplexobj(leaf) else leaf.astype(np.float64, copy=False)
                for leaf in leaves]
        value = hy.call_user(problem.loss, f"{problem.name}'s forward", problem.rebuild(cast),
                             where=obj.context)
        return hy.scalar_loss(value, f"{problem.name}'s forward")

    base = [v.astype(np.float64) for v in problem.values]
    obj = numeric.Objective(evaluate, base, f0=f0)
    first = obj(base, "evaluating the loss in float64")
    again = obj(base, "re-evaluating the loss in float64")
    hy.check_deterministic([float(np.real(first)), float(np.real(again))],
                           f"{problem.name}'s forward")
    obj.f0 = float(np.real(first))
    rng = np.random.default_rng(opts.seed)
    use_numeric = "numeric" in opts.references
    eps, precision = _measure_forward(obj, rng) if use_numeric else (numeric.EPS64, np.dtype(np.float64))
    if precision != np.dtype(np.float64):
        notes.append(f"the forward computes in lower precision than float64 (relative noise "
                     f"{eps:.1g}, about {precision}): finite-difference steps and tolerances "
                     f"follow {precision}")
    ad = _autodiff_reference(problem, opts, obj, base, notes) if "autodiff" in opts.references else None
    if opts.batch and use_numeric and obj.batch is None:
        _batch_setup(problem, opts, obj, base, notes)
    references = [r for r, there in (("numeric", use_numeric), ("autodiff", ad is not None)) if there]
    if not references:
        raise InvalidArgument("no reference is available: enable 'numeric' in references, or "
                              "make the forward JAX-traceable / pass jax_fun.")
    complex_ok = False
    if use_numeric and opts.complex_step is not False:
        complex_ok = numeric.complex_safe(obj, rng, eps=eps, tol=1e-6).safe
    ctx = _Context(problem, opts, obj, eps, precision, complex_ok, ad, rng)
    ctx.global_scale = max(
        (float(np.max(np.abs(r))) for r in (ad or [h for h in problem.hand if h is not None]) if r.size),
        default=0.0,
    )
    regime, growth, note = _regime(problem, ad, opts.time_axis,
                                   "autodiff" in references, use_numeric)
    if regime == "exploding":
        ctx.exploding = True
        ctx.err_scale = min(math.sqrt(growth), _MAX_ERR_SCALE)
        notes.append(note)
    total = sum(v.size for v, h in zip(problem.values, problem.hand, strict=True) if h is not None)
    results = []
    for k, hand in enumerate(problem.hand):
        if hand is None:
            continue
        results.append(_check_leaf(ctx, k, hand, total))
    results = _precision_ladder(ctx, results)
    n_kinks = sum(r.n_kinks for r in results)
    if n_kinks:
        notes.append(f"the forward is not differentiable at {n_kinks} checked entr"
                     f"{'y' if n_kinks == 1 else 'ies'} (one-sided slopes differ: ReLU at 0, a "
                     "max tie); those entries are reported, not judged")
    if obj.batched_calls:
        notes.append(f"{obj.batched_calls} of {obj.calls} forward evaluations ran in compiled "
                     "batches (jax.jit of jax.vmap of the same forward on JAX arrays)")
    verdicts = {r.verdict for r in results}
    verdict: Verdict = (
        "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"
    )
    mode = opts.mode if opts.mode != "auto" else "auto:" + "+".join(sorted({r.mode for r in results}))
    return CheckResult(
        name=problem.name, kind=problem.kind, verdict=verdict, mode=mode, seed=opts.seed,
        references=tuple(references), leaves=tuple(results), notes=tuple(notes),
        forward_calls=obj.calls, loss=obj.f0, forward_noise=obj.noise, options=opts.summary(),
        regime=regime, growth=growth,
    )


def _regime(problem: _Problem, ad: tuple[np.ndarray, ...] | None, time_axis: int | None,
            has_autodiff: bool, has_numeric: bool) -> tuple[str | None, float, str]:
    """Measure how the gradient grows back in time, from the sequence leaves (3 or more axes,
    at least 3 steps along ``time_axis``): the log-linear fit of ``‖∂L/∂x_t‖`` against the steps
    back from the end (:func:`gradcheck.dynamics.log_slope`), ``growth = exp(slope·(T−1))``.
    The reference is autodiff's gradient when there is one, else the hand gradient (whose growth
    only widens the error bars: a wrong hand gradient is still compared with every reference).

    Returns:
        ``("exploding" or None, growth, the note saying so)``; growth is 1 without sequences.
    """
    best: tuple[float, str, float, float, int] = (1.0, "", math.nan, math.nan, 0)
    if time_axis is None:
        return None, 1.0, ""
    refs = ad if ad is not None else problem.hand
    for name, ref in zip(problem.names, refs, strict=True):
        if ref is None or ref.ndim < 3 or not -ref.ndim <= time_axis < ref.ndim:
            continue
        steps = np.moveaxis(ref.astype(np.float64), time_axis, 0)
        T = steps.shape[0]
        if T < 3:
            continue
        norms = np.sqrt(np.sum(steps.reshape(T, -1) ** 2, axis=1))
        slope, stderr, n = log_slope(norms)
        if n < 3 or not math.isfinite(slope) or slope <= 2 * (stderr if math.isfinite(stderr) else 0):
            continue
        growth = math.exp(min(slope * (T - 1), 700.0))
        if growth > best[0]:
            best = (growth, name, slope, stderr, T)
    growth, name, slope, stderr, T = best
    if growth < EXPLODING_GROWTH:
        return None, growth, ""
    widen = min(math.sqrt(growth), _MAX_ERR_SCALE)
    lean = ("autodiff is the reference where finite differences disagree with it"
            if has_autodiff else "no autodiff reference: finite differences alone, with the widened "
            "error bars" if has_numeric else "autodiff alone")
    note = (f"exploding regime: numeric reference unreliable — ‖∂L/∂{name}_t‖ grows ×{growth:.3g} "
            f"over {T - 1} steps back in time (log-slope {slope:.3g} ± {stderr:.2g} per step along "
            f"axis {time_axis}); finite-difference error bars widened ×{widen:.3g} (√growth) and "
            f"{lean}")
    return "exploding", growth, note


def _measure_forward(obj: numeric.Objective, rng: np.random.Generator) -> tuple[float, np.dtype[Any]]:
    """Measure the forward's noise (into ``obj.noise``) and decide its precision.

    The precision probe decides; when it cannot tell, the measured relative noise does.  A
    low-precision forward's noise is never taken below its dtype's rounding of the loss.

    Returns:
        The relative noise ``ε`` that sets the finite-difference steps, and the precision class.
    """
    obj.noise = numeric.estimate_noise(obj, rng)
    probe = numeric.resolves_float64(obj, rng)
    exact = probe if probe is not None else (
        numeric.relative_step(obj.noise, obj.f0, float64=False) <= numeric.LOW_PRECISION_NOISE)
    if exact:
        return numeric.relative_step(obj.noise, obj.f0), np.dtype(np.float64)
    precision = _precision_class(numeric.relative_step(obj.noise, obj.f0, float64=False))
    obj.noise = max(obj.noise, float(np.finfo(precision).eps) * abs(obj.f0))
    return numeric.relative_step(obj.noise, obj.f0, float64=False), precision


def _batch_setup(problem: _Problem, opts: CheckOptions, obj: numeric.Objective,
                 base: list[np.ndarray], notes: list[str]) -> None:
    """``batch=True`` needs the forward to run on JAX arrays with the numpy forward's value; with
    autodiff among the references that was settled there, otherwise it is traced here."""
    tol = 1e3 * max(obj.noise, numeric.EPS64 * abs(obj.f0)) + 1e-300
    got = autodiff.gradient(problem.jax_candidates(), base, expected=obj.f0, tol=tol,
                            twin=problem.twin)
    if got.loss is None:
        notes.append("batch=True, but the forward does not run on JAX arrays with the same value: "
                     "finite differences call the numpy forward one move at a time")
        return
    obj.batch = autodiff.batched_moves(got.loss, base)


def _autodiff_reference(problem: _Problem, opts: CheckOptions, obj: numeric.Objective,
                        base: list[np.ndarray], notes: list[str]) -> tuple[np.ndarray, ...] | None:
    """JAX's gradient of the forward (or twin) at the point, or ``None`` with a note saying why."""
    tol = 1e3 * max(obj.noise, numeric.EPS64 * abs(obj.f0)) + 1e-300
    got = autodiff.gradient(problem.jax_candidates(), base, expected=obj.f0, tol=tol,
                            twin=problem.twin)
    if got.loss is not None and opts.batch and "numeric" in opts.references:
        obj.batch = autodiff.batched_moves(got.loss, base)
    if got.grads is None:
        fallback = "hand vs finite differences only" if "numeric" in opts.references else "no reference"
        notes.append(f"{got.note}; the verdict uses {fallback}")
    elif got.note:
        notes.append(f"the JAX twin does not compute the forward's loss ({got.note})")
    return got.grads


def _max_rel(low: np.ndarray | None, wide: np.ndarray) -> float:
    """max |low − wide| / max |wide|: how much precision the low-precision run lost."""
    if low is None:
        return math.nan
    wide64 = wide.astype(np.float64)
    scale = float(np.max(np.abs(wide64))) if wide64.size else 0.0
    diff = float(np.max(np.abs(low.astype(np.float64) - wide64))) if wide64.size else 0.0
    return diff / scale if scale > 0 else diff


def _wider(ctx: _Context) -> Callable[[np.dtype[Any]], np.dtype[Any] | None]:
    """The next precision to recompute a hand gradient judged in a dtype: float64 for float16/32,
    the platform's long double for float64 when it is wider (x86: 64-bit mantissa), else none.
    A forward that itself computes in lower precision gives no reason to climb."""
    longdouble = np.dtype(np.longdouble)
    extended = np.finfo(longdouble).eps < numeric.EPS64

    def step(judged: np.dtype[Any]) -> np.dtype[Any] | None:
        if judged.itemsize < 8:
            return np.dtype(np.float64)
        if ctx.precision == np.dtype(np.float64) and extended:
            return longdouble
        return None

    return step


def _precision_ladder(ctx: _Context, results: list[LeafResult]) -> list[LeafResult]:
    """Separate a wrong formula from a lost precision.

    A hand gradient that fails is computed again by the same backward on inputs of the next wider
    precision (float32 → float64, float64 → long double where the platform has one).  When that
    one passes the formula is right and the arithmetic is what lost the accuracy — ``1 − y²`` of a
    saturated ``tanh`` cancels to a few digits even in float64 — so the leaf passes with a note
    saying how far the gradient is off, instead of blaming a correct derivation.
    """
    wider = _wider(ctx)
    suspects = [i for i, r in enumerate(results) if r.verdict == "fail" and r.blame == "hand"
                and wider(np.dtype(r.tolerance_dtype)) is not None]
    if not suspects or ctx.problem.hand_at is None:
        return results
    target = wider(np.dtype(results[suspects[0]].tolerance_dtype))
    try:
        hand64 = ctx.problem.hand_at([v.astype(target) for v in ctx.problem.values], target)
    except Exception:  # the backward may only accept its own dtype: keep the verdict
        return results
    by_name = {n: k for k, n in enumerate(ctx.problem.names)}
    out = list(results)
    for i in suspects:
        k = by_name[results[i].name]
        h64 = hand64[k]
        if h64 is None or h64.dtype != target:
            continue
        # The same mode as the first judgement (a screened leaf is screened again, not re-measured
        # entry by entry).
        total = sum(v.size for v, h in zip(ctx.problem.values, ctx.problem.hand, strict=True)
                    if h is not None)
        again = _check_leaf(replace(ctx, ladder=True), k, h64, total)
        if again.verdict == "pass":
            low = results[i]
            lost = _max_rel(ctx.problem.hand[k], h64)
            note = (f"the hand gradient is off by up to {lost:.2g} (relative) in "
                    f"{low.n_mismatched} entr{'y' if low.n_mismatched == 1 else 'ies'}, but the same "
                    f"backward run in {target} is correct: {low.tolerance_dtype} arithmetic loses the "
                    "precision here (cancellation, e.g. 1 − y² of a saturated unit), not the "
                    "derivation")
            out[i] = replace(low, verdict="pass", blame=None, diagnosis=None,
                             notes=(*low.notes, note))
    return out


def _precision_class(eps: float) -> np.dtype[Any]:
    """The dtype of a forward that does not resolve float64 perturbations: float16 when its
    measured relative noise says so, float32 otherwise."""
    return np.dtype(np.float16) if eps > 1e-4 else np.dtype(np.float32)


def _lower(a: np.dtype[Any], b: np.dtype[Any]) -> np.dtype[Any]:
    return a if np.finfo(a).eps >= np.finfo(b).eps else b


def _check_leaf(ctx: _Context, k: int, hand: np.ndarray, total: int) -> LeafResult:
    opts, size = ctx.opts, hand.size
    mode = opts.mode
    if mode == "auto":
        mode = "full" if (total <= opts.full_max or size <= 4 * opts.probes) else "directional"
    if "numeric" not in opts.references:
        mode = "full"  # autodiff alone compares every element at no extra cost
    if mode == "directional":
        leaf = _directional_leaf(ctx, k, hand)
        if opts.mode == "auto" and leaf.verdict != "pass" and ctx.ad is None:
            return _localised_leaf(ctx, k, hand, leaf)
        return leaf
    return _full_leaf(ctx, k, hand, total)


def _localised_leaf(ctx: _Context, k: int, hand_native: np.ndarray, screened: LeafResult) -> LeafResult:
    """Name the wrong entries of a leaf that failed screening, by group testing
    (:mod:`gradcheck.localise`): each block test is one directional derivative along a seeded
    Gaussian direction supported on the block, judged exactly like a screening probe; the blocks
    the bisection isolates are then measured entry by entry."""
    opts = ctx.opts
    name = ctx.problem.names[k]
    hand = hand_native.astype(np.float64)
    x = ctx.obj.base[k]
    rtol, atol, judged = screened.rtol, screened.atol, np.dtype(screened.tolerance_dtype)
    scale = np.maximum(1.0, np.abs(x.ravel()))
    counter = iter(range(1 << 30))

    def is_wrong(idx: np.ndarray) -> bool:
        seed = _probe_seed(opts.seed, k, opts.probes + next(counter))
        flat_u = np.zeros(x.size)
        flat_u[idx] = np.random.default_rng(seed).standard_normal(idx.size) * scale[idx]
        u = flat_u.reshape(x.shape)
        d = _directional(ctx, k, u, float(np.sum(hand * u)), rtol, atol, name)
        if d.kink:  # a kink inside the block: descend, the entries will say where
            return True
        m = _Measured(seed, d.direction, d)
        return abs(float(np.sum(hand * m.u)) - d.value) > _probe_tol(hand, m, rtol, atol, ctx.err_scale)

    calls = ctx.obj.calls
    found = localise.search(hand.size, is_wrong, max_entries=opts.localise_max)
    n = hand.size
    idx = np.concatenate(found.measure) if found.measure else np.zeros(0, np.int64)
    flat = hand.ravel()
    num, err = np.full(n, np.nan), np.full(n, np.nan)
    left, right, kink = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool)
    method = screened.numeric_method
    status = np.full(n, "ok", dtype=object)
    if idx.size:
        parts = _partials(ctx, k, idx, flat, None, rtol)
        num[idx], err[idx] = parts.value, parts.error * ctx.err_scale
        left[idx], right[idx], kink[idx] = parts.left, parts.right, parts.kink
        agree = close(flat[idx], parts.value, rtol=rtol, atol=atol, err=err[idx])
        status[idx] = np.where(agree, "ok", "hand")
        method = parts.method
    status[kink] = "kink"
    unresolved = np.concatenate(found.unresolved) if found.unresolved else np.zeros(0, np.int64)
    status[unresolved] = "unverified"
    leaf = _leaf_result(ctx, k, hand_native, status, num, err, None, left, right, kink, rtol, atol,
                        judged, method, "localised", screened.probes)
    blocks = tuple((int(b[0]), int(b[-1]) + 1) for b in found.unresolved)
    note = (f"directional screening gave '{screened.verdict}'; group testing localised it with "
            f"{found.tests} block tests and {idx.size} single-entry partials "
            f"({ctx.obj.calls - calls} forward calls for {n} entries)")
    if blocks:
        note += (f"; {unresolved.size} entries in {len(blocks)} blocks stayed unresolved within the "
                 f"budget (localise_max={opts.localise_max})")
    notes = [note, *screened.notes]
    first = _first_divergence(leaf, status, hand.shape, opts.time_axis)
    if first:
        notes.append(first)
    return replace(leaf, localisation=Localisation(found.tests, int(idx.size), blocks),
                   notes=(*leaf.notes, *notes))


def _first_divergence(leaf: LeafResult, status: np.ndarray, shape: tuple[int, ...],
                      time_axis: int | None) -> str | None:
    """For a sequence leaf (3 or more axes), the first time step where hand and reference diverge."""
    if time_axis is None or len(shape) < 3 or leaf.verdict != "fail":
        return None
    bad = (np.asarray(status).reshape(shape) == "hand")
    steps = np.flatnonzero(np.moveaxis(bad, time_axis, 0).reshape(shape[time_axis], -1).any(axis=1))
    if not steps.size:
        return None
    return (f"hand and reference first diverge at time step {int(steps[0])} of {shape[time_axis]} "
            f"(axis {time_axis} of {leaf.name})")


def _with_notes(leaf: LeafResult, note: str, mode: str) -> LeafResult:
    return replace(leaf, notes=(*leaf.notes, note), mode=mode)


def _judged(ctx: _Context, k: int, hand: np.ndarray) -> np.dtype[Any]:
    """The precision a hand gradient can claim: the lowest of its own dtype, its parameter's
    dtype (a float32 parameter's gradient computed through float32 activations is float32-accurate
    even when the backward upcasts it) and the forward's measured precision."""
    judged = _lower(np.dtype(hand.dtype), ctx.precision)
    return judged if ctx.ladder else _lower(judged, np.dtype(ctx.problem.values[k].dtype))


def _tolerances(
    ctx: _Context, k: int, hand: np.ndarray, ref_scale: float
) -> tuple[float, float, np.dtype[Any]]:
    """rtol from the table for the judged dtype (see :func:`_judged`); atol a fraction of the
    leaf's reference scale (see compare.GRAD_ATOL_FRACTION)."""
    judged = _judged(ctx, k, hand)
    rtol = tolerance(judged, ctx.opts.rtol)
    if ctx.opts.atol is not None:
        atol = tolerance(judged, ctx.opts.atol)
    else:
        # The smallest normal number of the judged dtype is the floor: below it a gradient of
        # that dtype underflows (a float32 gradient of 1e-52 is 0, correctly).
        atol = rtol * (GRAD_ATOL_FRACTION * ref_scale + 1e-6 * ctx.global_scale)
        # Rounding floor: a gradient is computed from the loss's terms, so its absolute error is
        # ~eps·(their size)/|x| however small the gradient (1 − y² of a saturated tanh keeps no
        # digits below it in any precision).  Entries under 16 such ulps are not judged smaller.
        x_scale = max(1.0, float(np.max(np.abs(ctx.problem.values[k])))) if hand.size else 1.0
        rounding = 16 * float(np.finfo(judged).eps) * ctx.problem.loss_scale / x_scale
        atol = max(atol, rounding, float(np.finfo(judged).tiny))
    return rtol, atol, judged


def _full_leaf(ctx: _Context, k: int, hand_native: np.ndarray, total: int = 0) -> LeafResult:
    opts = ctx.opts
    hand = hand_native.astype(np.float64).ravel()
    n = hand.size
    ad = ctx.ad[k].ravel() if ctx.ad is not None else None
    num = err = left = right = None
    kink = np.zeros(n, bool)
    method = None
    led: tuple[int, int] | None = None  # (entries measured, probes) of an autodiff-led check
    if "numeric" in opts.references:
        rtol0 = tolerance(_judged(ctx, k, hand_native), opts.rtol)
        m = _Measurements.empty(n)
        chosen = None
        if ad is not None and total > FULL_NUMERIC_MAX and n > _FULL_SAMPLE:
            chosen = _autodiff_led_entries(ctx, k, hand_native, hand, ad)
        if chosen is not None and ad is not None:
            sample, suspects = chosen
            m.add(ctx, k, sample, hand, ad, rtol0)
            rtol1, atol1, _ = _tolerances(ctx, k, hand_native, float(np.max(np.abs(ad))))
            _measure_suspects(ctx, k, m, suspects, hand, ad, rtol1, atol1)
            led = (int(np.count_nonzero(~np.isnan(m.num))), opts.probes)
        else:
            m.add(ctx, k, np.arange(n), hand, ad, rtol0)
        num, err, left, right, kink, method = m.num, m.err, m.left, m.right, m.kink, m.method
    ref = ad if ad is not None else num
    assert ref is not None
    scale = float(np.max(np.abs(ref[~kink]))) if (~kink).any() else 0.0
    rtol, atol, judged = _tolerances(ctx, k, hand_native, scale)
    unreliable = np.zeros(n, bool)
    if num is not None and err is not None:
        # Finite differences cannot vouch for an entry whose error bar is a tenth of the
        # gradient's own size.  When every source says the whole gradient is exactly zero there
        # is no size to be unreliable against: the bar itself is the resolution, and is reported.
        unreliable = (err > 0.1 * np.maximum(np.abs(num), scale)) & (err > atol) & ~kink
        if max(scale, ctx.global_scale) == 0.0:
            unreliable[:] = False

    def judge(h: np.ndarray) -> tuple[np.ndarray, int]:
        status, outvoted = _full_status(ctx, h, num, err, ad, kink, unreliable, rtol, atol)
        if led is not None and num is not None and ad is not None:
            # Entries without a finite difference of their own: hand against the validated
            # autodiff reference (DESIGN's two-source table).
            alone = np.isnan(num)
            status[alone] = triangulate(None, close(h[alone], ad[alone], rtol=rtol, atol=atol), None)
        return status, outvoted

    status, outvoted = judge(hand)
    leaf = _leaf_result(ctx, k, hand_native, status, num, err, ad, left, right, kink, rtol, atol,
                        judged, method, "full")
    if led is not None:
        leaf = replace(leaf, notes=(*leaf.notes, (
            f"every entry compared with autodiff; autodiff validated by finite differences along "
            f"{led[1]} seeded directions and at {led[0]} of {n} entries (a seeded sample, and "
            "where hand and autodiff differ: every such entry, or a seeded sample of them that "
            "confirmed autodiff); references=('numeric',) measures every entry by finite "
            "differences")))
    if leaf.verdict == "pass":
        control_num = None if num is None else np.where(np.isnan(num), hand, num)
        control_err = None if err is None else np.where(np.isnan(err), 0.0, err)
        leaf = _full_control(ctx, k, leaf, hand, control_num, control_err, ad, kink, unreliable,
                             rtol, atol, scale, judge)
    if outvoted:
        leaf = replace(leaf, notes=(*leaf.notes, (
            f"autodiff agrees with the hand gradient on {outvoted} entr"
            f"{'y' if outvoted == 1 else 'ies'} where finite differences, far outside their error "
            "bar at a smooth point, do not: the JAX path drops the same term as the hand backward "
            "(stop_gradient, truncated BPTT)")))
    return leaf


#: A full check of a problem with more entries than this, when a JAX reference is available,
#: is *autodiff-led*: every entry is compared with autodiff, and finite differences validate
#: autodiff along ``probes`` seeded directions and at the entries where they can change the
#: verdict (where hand and autodiff differ) plus a seeded sample of ``_FULL_SAMPLE``.  A probe
#: that disagrees with autodiff (or crosses a kink) sends the leaf back to a finite difference
#: at every entry.
FULL_NUMERIC_MAX = 4096
_FULL_SAMPLE = 64


#: Of more entries than this where hand and autodiff differ, a seeded sample is measured first.
#: When every sampled entry is a smooth point where the finite difference sides with autodiff
#: (a systematic bug: a sign, a transpose, a scale), the others keep autodiff's word; otherwise
#: every one of them is measured.
_SUSPECT_SAMPLE = 128


@dataclass
class _Measurements:
    """Finite differences at some entries of a flat leaf (NaN where not measured)."""

    num: np.ndarray
    err: np.ndarray
    left: np.ndarray
    right: np.ndarray
    kink: np.ndarray
    method: str | None = None

    @classmethod
    def empty(cls, n: int) -> _Measurements:
        return cls(np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan),
                   np.zeros(n, bool))

    def add(self, ctx: _Context, k: int, idx: np.ndarray, hand: np.ndarray, ad: np.ndarray | None,
            rtol: float) -> None:
        if not idx.size:
            return
        parts = _partials(ctx, k, idx, hand, ad, rtol)
        self.num[idx], self.err[idx] = parts.value, parts.error * ctx.err_scale
        self.left[idx], self.right[idx], self.kink[idx] = parts.left, parts.right, parts.kink
        self.method = parts.method


def _measure_suspects(ctx: _Context, k: int, m: _Measurements, suspects: np.ndarray,
                      hand: np.ndarray, ad: np.ndarray, rtol: float, atol: float,
                      limit: int | None = None) -> None:
    """Finite differences at the entries where hand and autodiff differ: all of them, or a
    seeded sample first when there are many (see ``_SUSPECT_SAMPLE``); ``limit`` caps the rest."""
    todo = suspects[np.isnan(m.num[suspects])]
    if todo.size <= _SUSPECT_SAMPLE:
        m.add(ctx, k, todo, hand, ad, rtol)
        return
    rng = np.random.default_rng(_probe_seed(ctx.opts.seed, k, 0x5B))
    first = np.sort(rng.choice(todo, _SUSPECT_SAMPLE, replace=False))
    m.add(ctx, k, first, hand, ad, rtol)
    on_ad = close(m.num[first], ad[first], rtol=tolerance(ctx.precision, ctx.opts.rtol), atol=atol,
                  err=m.err[first])
    off_hand = ~close(hand[first], m.num[first], rtol=rtol, atol=atol, err=m.err[first])
    if np.all(on_ad & off_hand & ~m.kink[first]):
        return
    rest = np.setdiff1d(todo, first)
    if limit is None or rest.size <= limit:
        m.add(ctx, k, rest, hand, ad, rtol)


def _autodiff_led_entries(ctx: _Context, k: int, hand_native: np.ndarray, hand: np.ndarray,
                          ad: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(sample, suspects)``: the entries an autodiff-led full check measures by finite
    differences (a seeded sample and the largest entries) and those where hand and autodiff
    differ; ``None`` when the probes do not confirm autodiff (then every entry is measured)."""
    opts, name = ctx.opts, ctx.problem.names[k]
    x = ctx.obj.base[k]
    rtol, atol, _ = _tolerances(ctx, k, hand_native, float(np.max(np.abs(ad))) if ad.size else 0.0)
    ad_shaped = ad.reshape(x.shape)
    for p in range(opts.probes):
        u = (np.random.default_rng(_probe_seed(opts.seed, k, 0xAD00 + p)).standard_normal(x.shape)
             * np.maximum(1.0, np.abs(x)))
        pa = float(np.sum(ad_shaped * u))
        d = _directional(ctx, k, u, pa, rtol, atol, name)
        m = _Measured(0, d.direction, d)
        pa = float(np.sum(ad_shaped * m.u))
        if d.kink or not abs(pa - d.value) <= _probe_tol(ad_shaped, m, rtol, atol, ctx.err_scale):
            return None
    suspects = np.flatnonzero(~close(hand, ad, rtol=rtol, atol=atol))
    rng = np.random.default_rng(_probe_seed(opts.seed, k, 0x5A))
    sample = rng.choice(hand.size, size=min(_FULL_SAMPLE, hand.size), replace=False)
    largest = np.argsort(np.abs(ad))[-4:]
    return np.unique(np.concatenate([sample, largest])), suspects


def _full_status(ctx: _Context, hand: np.ndarray, num: np.ndarray | None, err: np.ndarray | None,
                 ad: np.ndarray | None, kink: np.ndarray, unreliable: np.ndarray, rtol: float,
                 atol: float) -> tuple[np.ndarray, int]:
    """Entry statuses of a full check (DESIGN.md's table), and how many entries the numeric
    outvote moved to the hand's side."""
    hn = ha = na = None
    if num is not None and err is not None:
        hn = close(hand, num, rtol=rtol, atol=atol, err=err)
    if ad is not None:
        ha = close(hand, ad, rtol=rtol, atol=atol)
    if num is not None and err is not None and ad is not None:
        na = close(num, ad, rtol=tolerance(ctx.precision, ctx.opts.rtol), atol=atol, err=err)
    if unreliable.any() and hn is not None:
        status = _statuses_with_unreliable(hn, ha, na, unreliable)
    else:
        status = triangulate(hn, ha, na)
    outvoted = 0
    # In the exploding regime the finite differences are leaned on less, not trusted over autodiff.
    if num is not None and err is not None and ad is not None and not ctx.exploding:
        before = status
        status = _numeric_outvoted(status, num, err, ad, atol)
        outvoted = int(np.count_nonzero((before == "numeric") & (status == "hand") & ~kink))
    status[kink] = "kink"
    return status, outvoted


def _entry_thresholds(hand: np.ndarray, refs: list[tuple[np.ndarray, np.ndarray | float]],
                      rtol: float, atol: float) -> np.ndarray:
    """The smallest change of each hand entry that every reference would reject:
    ``(rtol·|r| + atol + e) / (1 − rtol) + |h − r|`` per reference, the largest over them."""
    out = np.zeros(hand.size)
    for ref, e in refs:
        out = np.maximum(out, (rtol * np.abs(ref) + atol + e) / (1.0 - rtol) + np.abs(hand - ref))
    return out


def _control_entry(ctx: _Context, k: int, candidates: np.ndarray) -> int | None:
    if not candidates.size:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([ctx.opts.seed, k, 0xC0])
                                .generate_state(1)[0])
    return int(candidates[rng.integers(candidates.size)])


def _full_control(ctx: _Context, k: int, leaf: LeafResult, hand: np.ndarray,
                  num: np.ndarray | None, err: np.ndarray | None, ad: np.ndarray | None,
                  kink: np.ndarray, unreliable: np.ndarray, rtol: float, atol: float, scale: float,
                  judge: Callable[[np.ndarray], tuple[np.ndarray, int]]) -> LeafResult:
    """Detection power of a full check (the largest per-entry threshold, relative to the leaf's
    largest reference entry) and its negative control: one seeded entry moved by that much must
    fail with blame on the hand."""
    refs: list[tuple[np.ndarray, np.ndarray | float]] = []
    if ad is not None:
        refs.append((ad, 0.0))
    usable = ~kink
    if num is not None and err is not None:
        # Where finite differences are unreliable, autodiff alone decides (see _full_status).
        refs.append((np.where(unreliable, hand, num), np.where(unreliable, 0.0, err)))
    thresholds = _entry_thresholds(hand, refs, rtol, atol)
    usable &= np.isfinite(thresholds)
    if not usable.any():
        return leaf
    delta = float(np.max(thresholds[usable])) * (1 + 1e-9)
    j = _control_entry(ctx, k, np.flatnonzero(usable))
    assert j is not None
    planted = hand.copy()
    planted[j] += delta if (ad if ad is not None else num)[j] <= hand[j] else -delta  # type: ignore[index]
    status, _ = judge(planted)
    caught = status[j] == "hand"
    return _with_power(leaf, delta / scale if scale > 0 else math.inf,
                       Control(_unravel(j, leaf.shape), delta, bool(caught)))


def _with_power(leaf: LeafResult, power: float, control: Control) -> LeafResult:
    notes = leaf.notes
    if not control.caught:
        notes = (*notes, f"negative control failed: a single-entry error of {control.size:.3g} "
                 f"(relative {power:.2g}) planted at {list(control.index)} was not caught; the "
                 "detection power claimed for this leaf does not hold — tighten rtol/atol or use "
                 "mode='full'")
    return replace(leaf, detection_power=power, control=control, notes=notes)


#: How far beyond its own error bar a smooth-point finite difference must be before it is trusted
#: over hand and autodiff agreeing with each other.
_OUTVOTE_MARGIN = 100.0


def _numeric_outvoted(status: np.ndarray, num: np.ndarray, err: np.ndarray, ad: np.ndarray,
                      atol: float) -> np.ndarray:
    """DESIGN's row "hand ≈ autodiff, both ≠ numeric → blame numeric" assumes the finite
    difference is the one off (a kink, the step, round-off).  Where it sits a hundred error bars
    away from autodiff at a smooth point, that cannot be: hand and autodiff share the error — a
    JAX forward or twin with ``stop_gradient`` or the same truncation as the hand BPTT — and the
    hand gradient is not the gradient of the forward.  Those entries are the hand's failure."""
    far = np.abs(num - ad) > _OUTVOTE_MARGIN * (err + atol)
    out = status.copy()
    out[(status == "numeric") & far] = "hand"
    return out


def _statuses_with_unreliable(hn: np.ndarray, ha: np.ndarray | None, na: np.ndarray | None,
                              unreliable: np.ndarray) -> np.ndarray:
    status = triangulate(hn, ha, na)
    if ha is not None:
        status[unreliable] = triangulate(None, ha[unreliable], None)
    else:
        status[unreliable] = "unverified"
    return status


def _partials(ctx: _Context, k: int, idx: np.ndarray, hand: np.ndarray, ad: np.ndarray | None,
              rtol: float) -> numeric.Partials:
    """Complex step where the forward allows it, with central-difference re-measurement of every
    entry where the complex step disagrees with the hand gradient or autodiff."""
    name = ctx.problem.names[k]
    scale = np.abs(ad if ad is not None else hand)
    floor = rtol * GRAD_ATOL_FRACTION * (float(np.max(scale)) if scale.size else 0.0)

    def central(which: np.ndarray) -> numeric.Partials:
        return numeric.central_partials(ctx.obj, k, which, eps=ctx.eps, kink_rtol=rtol, name=name,
                                        kink_floor=floor)

    if not ctx.complex_ok or (ctx.obj.batch is not None and 4 * idx.size >= numeric.BATCH_MIN):
        # Many entries through a batched forward: central differences in compiled batches beat
        # the complex step's one call per entry.
        return central(idx)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        try:
            cs = numeric.complex_partials(ctx.obj, k, idx, name=name)
        except UserCodeError:
            ctx.complex_ok = False
            return central(idx)
    scale = float(np.max(np.abs(cs.value))) if cs.value.size else 0.0
    floor = rtol * GRAD_ATOL_FRACTION * scale
    # Only entries where the complex step contradicts the hand gradient are re-measured: that is
    # where a forward that is not quite analytic (abs, a comparison) could blame a correct hand
    # gradient.  Where the complex step confirms the hand, two independent sources agree, and
    # replacing its exact value by a coarser central difference would only lose information
    # (autodiff's own rounding at saturated units is then outvoted, as it should be).
    suspect = ~close(hand[idx], cs.value, rtol=rtol, atol=floor, err=cs.error)
    if not suspect.any():
        return cs
    re = central(idx[suspect])
    value, error = cs.value.copy(), cs.error.copy()
    left, right, kink = cs.left.copy(), cs.right.copy(), cs.kink.copy()
    value[suspect], error[suspect] = re.value, re.error
    left[suspect], right[suspect], kink[suspect] = re.left, re.right, re.kink
    return numeric.Partials(idx, value, error, left, right, kink, "complex+central")


def _probe_seed(seed: int, k: int, p: int) -> int:
    return int(np.random.SeedSequence([seed, k, p]).generate_state(1)[0])


@dataclass(frozen=True)
class _Measured:
    """One probe's measurement: the direction the estimate saw and the directional derivative."""

    seed: int
    u: np.ndarray
    d: numeric.Directional


def _probe_tol(hand: np.ndarray, m: _Measured, rtol: float, atol: float, err_scale: float) -> float:
    """The agreement tolerance of ⟨hand, u⟩ with a measured ∂L/∂u: rtol of the size of the sum's
    terms, atol per unit of ‖u‖, plus the (regime-widened) error bar — no other inflation."""
    size = max(float(np.linalg.norm(hand * m.u)), abs(m.d.value))
    return rtol * size + atol * float(np.linalg.norm(m.u)) + m.d.error * err_scale


def _directional_leaf(ctx: _Context, k: int, hand_native: np.ndarray) -> LeafResult:
    opts, obj = ctx.opts, ctx.obj
    name = ctx.problem.names[k]
    hand = hand_native.astype(np.float64)
    ad = ctx.ad[k] if ctx.ad is not None else None
    x = obj.base[k]
    rtol, atol, judged = _tolerances(ctx, k, hand_native,
                                     float(np.max(np.abs(ad))) if ad is not None and ad.size else 0.0)
    measured: list[_Measured] = []
    kinks: list[_Measured] = []
    method = None
    for p in range(opts.probes):
        seed = _probe_seed(opts.seed, k, p)
        u = np.random.default_rng(seed).standard_normal(x.shape) * np.maximum(1.0, np.abs(x))
        d = _directional(ctx, k, u, float(np.sum(hand * u)), rtol, atol, name)
        method = d.method
        # d.direction is what the estimate measured, after rounding.
        (kinks if d.kink else measured).append(_Measured(seed, d.direction, d))
    n = hand.size

    def judge(h: np.ndarray) -> tuple[np.ndarray, tuple[Probe, ...]]:
        probes, hn_all, na_all = [], [], []
        for m in measured:
            ph = float(np.sum(h * m.u))
            pa = float(np.sum(ad * m.u)) if ad is not None else None
            tol = _probe_tol(h, m, rtol, atol, ctx.err_scale)
            ok_hn = abs(ph - m.d.value) <= tol
            hn_all.append(ok_hn)
            ok_na = None if pa is None else abs(pa - m.d.value) <= tol
            if ok_na is not None:
                na_all.append(ok_na)
            said = "ok" if ok_hn and ok_na is not False else (
                "hand" if ok_na in (True, None) else "numeric")
            probes.append(Probe(m.seed, ph, m.d.value, m.d.error, pa, said))
        for m in kinks:
            probes.append(Probe(m.seed, float(np.sum(h * m.u)), m.d.value, m.d.error,
                                float(np.sum(ad * m.u)) if ad is not None else None, "kink"))
        hn = bool(all(hn_all)) if hn_all else None
        na = bool(all(na_all)) if na_all else None
        ha = close(h.ravel(), ad.ravel(), rtol=rtol, atol=atol) if ad is not None else None
        hn_arr = None if hn is None else np.full(n, hn)
        na_arr = None if na is None or ha is None else np.full(n, na)
        if hn_arr is None and ha is None:
            return np.full(n, "unverified", dtype=object), tuple(probes)
        status = triangulate(hn_arr, ha, na_arr)
        if ha is not None and hn is False and na:
            status = np.where(ha, "ok", "hand").astype(object)  # localised by autodiff
        return status, tuple(probes)

    status, probes = judge(hand)
    settled = _settle_suspects(ctx, k, hand.ravel(), ad, status, rtol, atol)
    num = err = left = right = None
    kink = np.zeros(n, bool)
    if settled is not None:
        status, num, err, left, right, kink, method = settled
    leaf = _leaf_result(ctx, k, hand_native, status, num, err,
                        ad.ravel() if ad is not None else None, left, right, kink,
                        rtol, atol, judged, method, "directional", probes)
    if kinks:
        leaf = replace(leaf, notes=(*leaf.notes, f"{len(kinks)} of {opts.probes} probes cross a "
                                    "point where the forward is not differentiable"))
    if leaf.verdict == "pass":
        leaf = _directional_control(ctx, k, leaf, hand, ad, measured, rtol, atol,
                                    lambda h: judge(h)[0])
    return leaf


def _settle_suspects(ctx: _Context, k: int, hand: np.ndarray, ad: np.ndarray | None,
                     status: np.ndarray, rtol: float, atol: float) -> tuple[Any, ...] | None:
    """Screening with autodiff names the entries where hand and autodiff differ; a finite
    difference at each of them (with one-sided slopes) decides who is wrong there, and finds the
    points where the forward is not differentiable (a max-pool tie broken differently by the hand
    backward and by JAX is a kink, not the hand's bug).

    Returns ``(status, num, err, left, right, kink, method)`` over the flat leaf (NaN where not
    measured), or ``None`` when there is nothing to settle or no numeric reference."""
    if ad is None or "numeric" not in ctx.opts.references:
        return None
    flat_ad = ad.ravel()
    suspects = np.flatnonzero(~close(hand, flat_ad, rtol=rtol, atol=atol))
    if not suspects.size:
        return None
    m = _Measurements.empty(hand.size)
    _measure_suspects(ctx, k, m, suspects, hand, flat_ad, rtol, atol, limit=ctx.opts.localise_max)
    idx = np.flatnonzero(~np.isnan(m.num))
    hn = close(hand[idx], m.num[idx], rtol=rtol, atol=atol, err=m.err[idx])
    na = close(m.num[idx], flat_ad[idx], rtol=tolerance(ctx.precision, ctx.opts.rtol), atol=atol,
               err=m.err[idx])
    out = np.asarray(status, dtype=object).ravel().copy()
    out[idx] = triangulate(hn, np.zeros(idx.size, bool), na)
    out[m.kink] = "kink"
    return out, m.num, m.err, m.left, m.right, m.kink, m.method


def _directional_control(ctx: _Context, k: int, leaf: LeafResult, hand: np.ndarray,
                         ad: np.ndarray | None, measured: list[_Measured], rtol: float,
                         atol: float, judge: Callable[[np.ndarray], np.ndarray]) -> LeafResult:
    """Detection power of screening and its negative control.

    With autodiff every entry is compared, as in full mode.  With probes alone a single-entry
    error ``δ`` at entry ``i`` moves probe ``p`` by ``δ·u_{p,i}``, so it is caught when
    ``|δ| > (tol_p + |⟨h,u_p⟩ − ∂L/∂u_p|) / |u_{p,i}|`` for some probe: the claimed power is the
    90th percentile of that threshold over the entries (tiny ``u_{p,i}`` at a few entries would
    make any worst-case figure meaningless), and the control plants it at a seeded entry among
    the 90 % the claim covers."""
    flat = hand.ravel()
    if ad is not None:
        thresholds = _entry_thresholds(flat, [(ad.ravel(), 0.0)], rtol, atol)
        scale = float(np.max(np.abs(ad))) if ad.size else 0.0
        delta = float(np.max(thresholds)) * (1 + 1e-9) if thresholds.size else math.nan
        covered = np.flatnonzero(thresholds <= delta)
    elif measured:
        per = np.full(flat.size, math.inf)
        for m in measured:
            slack = _probe_tol(hand, m, rtol, atol, ctx.err_scale) + abs(
                float(np.sum(hand * m.u)) - m.d.value)
            with np.errstate(divide="ignore"):
                per = np.minimum(per, slack / np.abs(m.u.ravel()))
        scale = float(np.max(np.abs(flat))) if flat.size else 0.0
        # The planted error also raises the tolerance (rtol of the sum's terms) a little.
        delta = float(np.quantile(per, _POWER_QUANTILE)) * (1 + 1e-6) / (1 - rtol)
        covered = np.flatnonzero(per <= delta)
    else:
        return leaf
    j = _control_entry(ctx, k, covered)
    if j is None or not math.isfinite(delta):
        return leaf
    planted = flat.copy()
    planted[j] += delta
    caught = judge(planted.reshape(hand.shape))[j] == "hand"
    return _with_power(leaf, delta / scale if scale > 0 else math.inf,
                       Control(_unravel(j, leaf.shape), delta, bool(caught)))


def _directional(ctx: _Context, k: int, u: np.ndarray, ph: float, rtol: float, atol: float,
                 name: str) -> numeric.Directional:
    if ctx.complex_ok:
        d = numeric.directional_complex(ctx.obj, k, u, name=name)
        if abs(ph - d.value) <= rtol * max(abs(ph), abs(d.value)) + d.error:
            return d
    return numeric.directional_central(ctx.obj, k, u, eps=ctx.eps, kink_rtol=rtol, name=name,
                                       kink_floor=atol * float(np.linalg.norm(u)))


def _leaf_result(
    ctx: _Context, k: int, hand_native: np.ndarray, status: np.ndarray,
    num: np.ndarray | None, err: np.ndarray | None, ad: np.ndarray | None,
    left: np.ndarray | None, right: np.ndarray | None, kink: np.ndarray,
    rtol: float, atol: float, judged: np.dtype[Any], method: str | None, mode: str,
    probes: tuple[Probe, ...] = (),
) -> LeafResult:
    problem, opts = ctx.problem, ctx.opts
    name, shape = problem.names[k], hand_native.shape
    hand = hand_native.astype(np.float64).ravel()
    status = np.asarray(status, dtype=object).ravel()
    smooth = ~kink
    if num is not None and not np.isfinite(num).all():
        # Localised by group testing: entries outside the measured blocks have no partial of their
        # own (their blocks agreed as a whole); they count as agreeing, with no number to show.
        measured = np.isfinite(num)
        smooth = smooth & measured
        num = np.where(measured, num, hand)
        err = np.where(measured, err, 0.0) if err is not None else None
    hvn = hva = nva = None
    if num is not None:
        hvn, _ = agreement(hand, num, rtol=rtol, atol=atol, err=err if err is not None else 0.0,
                           mask=smooth & (status != "unverified"))
    if ad is not None:
        hva, _ = agreement(hand, ad, rtol=rtol, atol=atol, mask=smooth)
    if num is not None and ad is not None:
        nva, _ = agreement(num, ad, rtol=tolerance(ctx.precision, opts.rtol), atol=atol,
                           err=err if err is not None else 0.0, mask=smooth)
    verdict, blame = _verdict(status, twin=problem.twin)
    ref = ad if ad is not None else num
    bad = np.isin(status, ("hand", "autodiff", "inconclusive"))
    measured_only = smooth | kink
    diagnosis = None
    if verdict == "fail" and ref is not None and blame == "hand":
        diagnosis = diagnose(hand_native.astype(np.float64), ref.reshape(shape),
                             (status == "hand").reshape(shape), rtol=rtol, atol=atol,
                             err=0.0 if ad is not None else err.reshape(shape) if err is not None else 0.0,
                             time_axis=opts.time_axis)
    elif verdict == "fail" and probes and ref is None:
        diagnosis = _probe_diagnosis(probes, rtol)
    worst = _worst(shape, hand, num, err, ad, status, bad, opts.worst, rtol, atol, measured_only)
    kinks = tuple(
        Element(_unravel(i, shape), float(hand[i]), None if num is None else float(num[i]),
                None if err is None else float(err[i]), None if ad is None else float(ad[i]),
                "kink", None if left is None else float(left[i]),
                None if right is None else float(right[i]))
        for i in np.flatnonzero(kink)[: opts.worst]
    )
    notes = []
    if hand_native.dtype != problem.values[k].dtype:
        notes.append(f"the hand gradient is {hand_native.dtype} for a {problem.values[k].dtype} "
                     f"tensor: judged with {judged} tolerances")
    n_unverified = int(np.count_nonzero(status == "unverified"))
    if n_unverified:
        notes.append(f"{n_unverified} entries could not be verified (finite differences too "
                     "inaccurate there and no autodiff reference)")
    if verdict == "pass" and blame == "autodiff":
        notes.append("JAX's gradient of the forward disagrees where finite differences confirm "
                     "the hand gradient (JAX flushes subnormals to zero and may differ from numpy "
                     "semantics): not held against the hand gradient")
    if verdict == "pass" and blame == "numeric":
        notes.append("finite differences disagree on some entries where autodiff confirms the "
                     "hand gradient (a step or round-off problem of the numeric reference)")
    fd_err = float(np.max(err)) if err is not None and err.size else (
        max((p.numeric_error or 0.0) for p in probes) if probes else math.nan)
    return LeafResult(
        name=name, shape=tuple(shape), dtype=str(hand_native.dtype), verdict=verdict, blame=blame,
        mode=mode, rtol=rtol, atol=atol, tolerance_dtype=str(judged), fd_error_estimate=fd_err,
        numeric_method=method, hand_vs_numeric=hvn, hand_vs_autodiff=hva,
        numeric_vs_autodiff=nva, n_elements=hand.size,
        n_checked=int(np.count_nonzero((status != "kink") & (status != "unverified"))),
        n_mismatched=int(np.count_nonzero(bad)), n_kinks=int(kink.sum()), worst=worst,
        kinks=kinks, diagnosis=diagnosis, probes=probes, notes=tuple(notes),
    )


def _verdict(status: np.ndarray, *, twin: bool) -> tuple[Verdict, Blame | None]:
    """Leaf verdict from entry statuses.  Autodiff alone disagreeing fails the check only when
    it differentiates a user-supplied twin (the twin is wrong: worth a failure); when JAX traced
    the user's own forward, the disagreement is JAX's (flushed subnormals, different numpy
    semantics) and the hand gradient, confirmed by finite differences, passes with a warning."""
    present = set(status.tolist())
    if "hand" in present:
        return "fail", "hand"
    if "autodiff" in present:
        return ("fail", "autodiff") if twin else ("pass", "autodiff")
    if "inconclusive" in present:
        return "inconclusive", "all"
    if "unverified" in present:
        return "inconclusive", None
    if "numeric" in present:
        return "pass", "numeric"
    return "pass", None


def _unravel(i: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(j) for j in np.unravel_index(int(i), shape)) if shape else ()


def _worst(shape: tuple[int, ...], hand: np.ndarray, num: np.ndarray | None,
           err: np.ndarray | None, ad: np.ndarray | None, status: np.ndarray, bad: np.ndarray,
           k: int, rtol: float, atol: float, shown: np.ndarray | None = None) -> tuple[Element, ...]:
    ref = ad if ad is not None else num
    if ref is None:
        return ()
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.abs(hand - ref) / (rtol * np.maximum(np.abs(hand), np.abs(ref)) + atol)
    excess = np.where(status == "kink", -1.0, excess)
    if shown is not None:
        excess = np.where(shown, excess, -2.0)
    order = np.argsort(-excess, kind="stable")
    if bad.any():
        order = np.concatenate([order[bad[order]], order[~bad[order]]])
    return tuple(
        Element(_unravel(i, shape), float(hand[i]), None if num is None else float(num[i]),
                None if err is None else float(err[i]), None if ad is None else float(ad[i]),
                str(status[i]))
        for i in order[:k]
        if status[i] != "kink" and (shown is None or shown[i])
    )


def _probe_diagnosis(probes: tuple[Probe, ...], rtol: float) -> Any:
    """Without an elementwise reference, a constant ratio ⟨hand,u⟩/⟨ref,u⟩ over all probes still
    names a sign flip, a scale factor or an all-zero gradient."""
    hand = np.array([p.hand for p in probes if p.numeric is not None and p.status != "kink"])
    ref = np.array([p.numeric for p in probes if p.numeric is not None and p.status != "kink"])
    err = np.array([p.numeric_error or 0.0 for p in probes if p.numeric is not None and p.status != "kink"])
    if hand.size < 2:
        return None
    found = diagnose(hand, ref, np.ones(hand.size, bool), rtol=rtol, atol=0.0, err=err, time_axis=None)
    if found is not None and found.kind in ("zero", "sign_flip", "scale"):
        return found
    return None
