"""Per-example gradients: ``check_batched`` checks each example's hand gradient.

``loss(params, batch, *args)`` returns the per-example losses ``ℓ_b`` (shape ``(B,)``);
``per_example_grad(params, batch, *args)`` returns a pytree like ``params`` whose leaves carry a
leading batch axis: ``g[b] = ∂ℓ_b/∂θ`` (differential privacy clips these; gradient-noise
estimates average their outer products).

The check runs on the gradient engine over *per-example copies* of the parameters: a leaf ``W``
becomes ``W`` of shape ``(B, *W.shape)``, and the scalar ``F(Θ) = Σ_b ℓ_b(Θ_b)`` has exactly the
per-example gradients as its gradient, ``∂F/∂Θ_b = ∂ℓ_b/∂θ``.  A wrong entry is named with its
example first (``W[3, 1, 0]`` is example 3), with the engine's error estimates, localisation and
diagnosis.  Moving ``Θ_b`` only changes ``ℓ_b``, so each finite difference re-evaluates one
example, not the batch.  Before that:

* **examples leaking into each other**: ``ℓ_b`` of the whole batch is compared with the loss of
  example ``b`` alone (a batch norm, or a mean over the batch inside the loss, makes them
  differ); when they differ, ``ℓ_b`` is evaluated on the whole batch, and the result says so;
* **a wrong batch axis**: a per-example gradient whose batch axis is not the first is named
  with the axis it is on;

and after it, the sum over examples is compared with the gradient of ``Σ_b ℓ_b`` along a seeded
direction (the batch gradient); a per-example gradient scaled by ``1/B`` or ``B`` is called a
mean/sum confusion, and one identical for every example is called the batch gradient copied to
each example.  The JAX reference is the derivative of ``F`` on JAX arrays or of its automatic
twin: ``jax.grad`` of each example's loss, as ``jax.vmap(jax.grad(ℓ_b))`` would give.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from gradcheck import _hygiene as hy
from gradcheck import check, problem
from gradcheck._tree import TreeDef, flatten, path_name
from gradcheck.errors import GradientStructureError, InvalidArgument, NonFiniteError
from gradcheck.measure import probe_seed
from gradcheck.options import validate
from gradcheck.result import CheckResult

__all__ = ["LEAK_SAMPLE", "check_batched"]

#: Examples whose loss alone is compared with their loss in the batch (the leak test).
LEAK_SAMPLE = 8
SALT_SUM = 0x5E


def _take(batch: Any, idx: Sequence[int], axis: int) -> Any:
    """The examples ``idx`` of a batch (an array or a pytree of arrays), keeping the batch axis."""
    leaves, treedef = flatten(batch)
    return treedef.unflatten([np.take(np.asarray(leaf.value), list(idx), axis=axis) for leaf in leaves])


def _size(batch: Any, axis: int) -> int:
    leaves, _ = flatten(batch)
    sizes = {np.shape(leaf.value)[axis] for leaf in leaves if np.ndim(leaf.value) > axis}
    if len(sizes) != 1:
        raise InvalidArgument(f"batch: its arrays must share a batch axis {axis}; their sizes along "
                              f"it are {sorted(sizes) or 'missing'}: pass axis= for another batch axis.")
    return int(sizes.pop())


def _losses(value: Any, B: int, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != (B,):
        hint = (" (a mean or a sum? return the vector of per-example losses)" if arr.ndim == 0
                else "")
        raise InvalidArgument(f"{what} returned shape {arr.shape}; expected the per-example losses, "
                              f"shape ({B},){hint}.")
    if arr.dtype.kind != "f":
        raise InvalidArgument(f"{what} returned dtype {arr.dtype}; expected float losses.")
    bad = hy.first_nonfinite(arr)
    if bad is not None:
        raise NonFiniteError(f"{what} returned {bad[1]} for example {bad[0][0]}: check the point.")
    return arr.astype(np.float64)


def _hand(raw: Any, names: Sequence[str], shapes: Sequence[tuple[int, ...]], B: int,
          what: str) -> list[np.ndarray]:
    """The per-example gradients, leaf by leaf, each ``(B, *shape)``; a batch axis elsewhere is
    named as such."""
    expected = [(B, *shape) for shape in shapes]
    leaves = [np.asarray(leaf.value) for leaf in flatten(raw)[0]]
    if len(leaves) == len(shapes):
        for name, got, want, shape in zip(names, leaves, expected, shapes, strict=True):
            if got.shape != want and got.ndim == len(want):
                for j in range(1, got.ndim):
                    if np.moveaxis(got, j, 0).shape == want:
                        raise GradientStructureError(
                            f"{what}: the per-example gradient of {name} has shape {got.shape}: its "
                            f"batch axis ({B} examples) is axis {j}, not axis 0 (expected "
                            f"{want}): a wrong batch axis; return np.moveaxis(g, {j}, 0).")
            if got.shape == shape and got.shape != want:
                raise GradientStructureError(
                    f"{what}: the gradient of {name} has shape {got.shape}, the parameter's own: no "
                    f"batch axis. Return one gradient per example, shape {want}.")
    hand, _ = hy.validate_hand(raw, list(names), expected, what=what)
    return [np.asarray(h) for h in hand]


class _PerExample:
    """``F(Θ) = Σ_b ℓ_b(Θ_b)`` over per-example parameter copies, re-evaluating only the
    examples whose copy moved (numpy points; JAX points evaluate every example)."""

    def __init__(self, loss: Callable[..., Any], batch: Any, axis: int, B: int, treedef: TreeDef,
                 alone: bool, cache: bool = True) -> None:
        self.loss, self.batch, self.axis, self.B = loss, batch, axis, B
        self.treedef, self.alone, self.cache = treedef, alone, cache
        self.examples = [_take(batch, [b], axis) for b in range(B)] if alone else []
        #: per dtypes of the leaves (the engine evaluates in the user's dtypes and in float64):
        #: the point first seen, and each example's loss there
        self.base: dict[tuple[str, ...], tuple[list[list[np.ndarray]], list[float]]] = {}

    def one(self, b: int, leaves: Sequence[Any], args: tuple[Any, ...]) -> Any:
        params = self.treedef.unflatten(list(leaves))
        if self.alone:
            return self.loss(params, self.examples[b], *args)[0]
        return self.loss(params, self.batch, *args)[b]

    def __call__(self, stacked: Any, *args: Any) -> Any:
        leaves = [leaf.value for leaf in flatten(stacked)[0]]
        per = [[leaf[b] for leaf in leaves] for b in range(self.B)]
        if not self.cache or not all(isinstance(v, np.ndarray) for v in leaves):
            total: Any = 0.0
            for b in range(self.B):
                total = total + self.one(b, per[b], args)
            return total
        key = tuple(str(v.dtype) for v in leaves)
        if key not in self.base:
            values = [float(self.one(b, per[b], args)) for b in range(self.B)]
            self.base[key] = ([[np.array(v, copy=True) for v in p] for p in per], values)
            return float(sum(values))
        base, values = self.base[key]
        out = 0.0
        for b in range(self.B):
            same = all(np.array_equal(v, w) for v, w in zip(per[b], base[b], strict=True))
            out += values[b] if same else float(self.one(b, per[b], args))
        return out


def _objective(loss: Callable[..., Any], batch: Any, axis: int, B: int, treedef: TreeDef,
               alone: bool) -> Callable[..., Any]:
    cached = _PerExample(loss, batch, axis, B, treedef, alone)

    def per_example_loss(stacked: Any, *args: Any) -> Any:
        return cached(stacked, *args)

    per_example_loss.__name__ = getattr(loss, "__name__", "loss")
    per_example_loss.__gradcheck_twin__ = lambda translate: _PerExample(  # type: ignore[attr-defined]
        translate(loss), batch, axis, B, treedef, alone, cache=False)
    per_example_loss.__gradcheck_source__ = loss  # type: ignore[attr-defined]
    return per_example_loss


def _leaks(loss: Callable[..., Any], params: Any, batch: Any, args: tuple[Any, ...], axis: int,
           losses: np.ndarray, label: str, low: bool) -> str | None:
    """Whether an example's loss in the batch differs from its loss alone (a sample of them)."""
    B = losses.size
    rng = np.random.default_rng(0)
    sample = sorted(rng.choice(B, size=min(B, LEAK_SAMPLE), replace=False).tolist())
    tol = 1e-4 if low else 1e-9
    for b in sample:
        try:
            alone = np.asarray(loss(hy.copy_tree(params), _take(batch, [b], axis),
                                    *hy.copy_tree(list(args))), np.float64).reshape(-1)[0]
        except Exception as exc:
            return (f"{label} cannot evaluate example {b} alone ({type(exc).__name__}: {exc}), so each "
                    "example's loss is taken from the whole batch")
        if not abs(alone - losses[b]) <= tol * max(1.0, abs(losses[b])):
            per = [f"args[{i}]" for i, a in enumerate(args) if np.ndim(a) > axis and np.shape(a)[axis] == B]
            hint = (f"; or {', '.join(per)} holds per-example values (targets?) passed beside the "
                    "batch: pass them inside it, batch=(x, y), so each example is evaluated with "
                    "its own" if per else "")
            return (f"examples leak into each other: example {b}'s loss is {losses[b]:.6g} in the batch "
                    f"but {alone:.6g} alone (a batch norm, or a statistic of the batch inside the loss"
                    f"{hint}); each ℓ_b is differentiated within the whole batch, as ∂ℓ_b/∂θ is defined")
    return None


def _sum_note(loss: Callable[..., Any], params: Any, batch: Any, args: tuple[Any, ...],
              hand: Sequence[np.ndarray], values: Sequence[np.ndarray], treedef: TreeDef,
              seed: int, low: bool) -> str | None:
    """``⟨Σ_b g_b, u⟩`` against the derivative of ``Σ_b ℓ_b`` along a seeded ``u``."""
    rng = np.random.default_rng(probe_seed(seed, 0, SALT_SUM))
    u = [rng.standard_normal(v.shape) for v in values]
    scale = max(max((float(np.max(np.abs(v))) for v in values if v.size), default=0.0), 1.0)
    h = (1e-3 if low else 1e-5) * scale

    def total(step: float) -> float:
        moved = treedef.unflatten([(v.astype(np.float64) + step * d).astype(v.dtype)
                                   for v, d in zip(values, u, strict=True)])
        return float(np.sum(np.asarray(loss(moved, batch, *hy.copy_tree(list(args))), np.float64)))

    numeric = (total(h) - total(-h)) / (2 * h)
    summed = float(sum(np.vdot(g.sum(axis=0).ravel(), d.ravel()) for g, d in zip(hand, u, strict=True)))
    tol = (1e-2 if low else 1e-5) * max(abs(numeric), abs(summed), 1e-12)
    if abs(numeric - summed) <= tol:
        return None
    ratio = summed / numeric if numeric else float("inf")
    return (f"the sum over examples disagrees with the batch gradient: ⟨Σ_b g_b, u⟩ = {summed:.6g} "
            f"but d/dε Σ_b ℓ_b(θ + εu) = {numeric:.6g} along a seeded u (ratio {ratio:.4g})")


def _patterns(res: CheckResult, hand: Sequence[np.ndarray], B: int) -> list[str]:
    """Per-example bugs with a name: a mean/sum confusion, the batch gradient in every example."""
    notes = []
    for leaf, g in zip(res.leaves, hand, strict=True):
        d = leaf.diagnosis
        if leaf.blame == "hand" and d is not None and d.kind == "scale" and d.factor:
            for factor, how in ((1 / B, f"1/B = 1/{B}"), (float(B), f"B = {B}")):
                if abs(d.factor - factor) <= 1e-6 * factor:
                    notes.append(f"{leaf.name}: a mean/sum confusion: each per-example gradient is "
                                 f"{how} × ∂ℓ_b/∂θ (the gradient of the batch's mean, or of its sum, "
                                 "split over the examples)")
        if leaf.verdict == "fail" and B > 1 and np.all(g == g[:1]):
            notes.append(f"{leaf.name}: every example has the same gradient: the batch gradient "
                         "(or its mean) copied to each example? Examples leak into each other in "
                         "the per-example gradient")
    return notes


def check_batched(loss: Callable[..., Any], per_example_grad: Callable[..., Any], params: Any,
                  batch: Any, *args: Any, axis: int = 0, **options: Any) -> CheckResult:
    """Check hand-derived per-example gradients against finite differences and JAX.

    Args:
        loss: ``loss(params, batch, *args) -> (B,)`` per-example losses.
        per_example_grad: ``per_example_grad(params, batch, *args)``: a pytree like ``params``
            whose leaves have a leading batch axis, ``g[b] = ∂ℓ_b/∂θ``.
        params: a dict/list/tuple pytree of float arrays.
        batch: the examples: an array, or a pytree of arrays sharing the batch axis ``axis``.
        *args: passed through unchanged (labels that are not part of ``batch``, configuration).
        axis: the batch axis of ``batch``'s arrays (the gradients' batch axis is always 0).
        **options: see :class:`~gradcheck.CheckOptions`.

    Returns:
        A :class:`~gradcheck.CheckResult` of kind ``check_batched`` whose leaves are the
        per-example gradients (``W`` of shape ``(B, *W.shape)``: index 0 is the example).

    Examples:
        >>> import numpy as np, gradcheck as gc
        >>> def losses(p, x): return 0.5 * (x @ p["w"]) ** 2
        >>> def grads(p, x): return {"w": (x @ p["w"])[:, None] * x}
        >>> rng = np.random.default_rng(0)
        >>> gc.check_batched(losses, grads, {"w": rng.normal(size=3)}, rng.normal(size=(5, 3))).passed
        True
    """
    opts = validate(options)
    label = str(opts.name or getattr(loss, "__name__", "loss"))
    what = f"{label}(params, batch, *args)"
    B = _size(batch, axis)
    leaves, treedef = flatten(params)
    names = [path_name(leaf.path) if leaf.path else "params" for leaf in leaves]
    values = [hy.validate_param(leaf.value, name) for leaf, name in zip(leaves, names, strict=True)]
    low = any(v.dtype.itemsize < 8 for v in values)
    losses = _losses(hy.call_user(loss, what, hy.copy_tree(params), hy.copy_tree(batch),
                                  *hy.copy_tree(list(args)), where="at the given point"), B, what)
    gname = f"{getattr(per_example_grad, '__name__', 'per_example_grad')}(params, batch, *args)"
    raw = hy.call_user(per_example_grad, gname, hy.copy_tree(params), hy.copy_tree(batch),
                       *hy.copy_tree(list(args)), where="computing the hand per-example gradients")
    hand = _hand(raw, names, [v.shape for v in values], B, gname)
    leak = _leaks(loss, params, batch, args, axis, losses, label, low)
    stacked = treedef.unflatten([np.repeat(v[None], B, axis=0) for v in values])
    fun = _objective(loss, hy.copy_tree(batch), axis, B, treedef, alone=leak is None)
    given = treedef.unflatten([h.copy() for h in hand])

    def grad(_: Any, *__: Any) -> Any:
        return hy.copy_tree(given)

    grad.__name__ = getattr(per_example_grad, "__name__", "per_example_grad")
    run_opts = replace(opts, name=label, time_axis=None if opts.time_axis == "auto" else opts.time_axis)
    prob = problem.grad_problem(fun, grad, stacked, args, run_opts)
    notes = [f"per-example gradients of {B} examples, checked as the gradient of Σ_b ℓ_b(θ_b) over "
             "per-example copies of the parameters (index 0 of each tensor is the example)"]
    notes += [leak] if leak else []
    prob = replace(prob, kind="check_batched", notes=(*notes, *prob.notes))
    res = check.run(prob, run_opts)
    extra = _patterns(res, hand, B)
    summed = _sum_note(loss, params, batch, args, hand, values, treedef, opts.seed, low)
    extra += [summed] if summed else []
    verdict = "fail" if summed and res.verdict == "pass" else res.verdict
    return replace(res, notes=(*res.notes, *extra), verdict=verdict)
