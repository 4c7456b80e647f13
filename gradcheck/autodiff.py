"""JAX references: the gradient of the same forward on JAX arrays, or of a JAX twin, in float64.

JAX is imported lazily, inside the functions that need it, and 64-bit mode is switched on only
inside ``with jax.enable_x64(True):`` — the user's process keeps whatever JAX configuration it had.
When no JAX path exists (JAX missing, or the forward calls numpy on what it is given) the caller
gets a readable reason instead of an error, and the verdict uses the two remaining sources.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AutodiffResult", "batched_moves", "gradient", "jax_available", "to_jax"]


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


def gradient(
    candidates: Sequence[tuple[str, Callable[[list[Any]], Any]]],
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

    Args:
        candidates: ``(description, loss)`` pairs; each ``loss`` takes a list of JAX arrays (one
            per leaf) and returns a scalar.  They are tried in order.
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
    import jax.numpy as jnp

    reasons = []
    with jax.enable_x64(True):
        point = [jnp.asarray(leaf, dtype=jnp.float64) for leaf in leaves]
        for description, loss in candidates:
            try:
                value, grads = jax.value_and_grad(
                    lambda ls, f=loss: jnp.real(jnp.asarray(f(ls)).reshape(()))
                )(point)
                out = tuple(np.asarray(g, dtype=np.float64) for g in grads)
                value = float(value)
            except Exception as exc:
                reasons.append(_reason(exc))
                continue
            if not all(np.isfinite(g).all() for g in out):
                reasons.append("JAX's gradient holds NaN/Inf")
                continue
            if not abs(value - expected) <= tol:
                apart = _apart(value, expected, tol)
                if not twin:
                    reasons.append(f"on JAX arrays the forward gives the loss {apart}: not the "
                                   "same function")
                    continue
                return AutodiffResult(out, description, f"{description} gives the loss {apart}")
            return AutodiffResult(out, description, "", None if twin else loss)
    unique = list(dict.fromkeys(reasons))
    return AutodiffResult(None, "", "no JAX path (" + "; ".join(unique) + ")")


def _apart(value: float, expected: float, tol: float) -> str:
    """How a JAX loss differs from the numpy forward's, with enough digits to show it."""
    return (f"{value!r}, not {expected!r} ({abs(value - expected):.3g} apart, beyond the "
            f"forward's noise floor allowance {tol:.3g})")


def _reason(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    if len(first) > 160:
        first = first[:157] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


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
                compiled[k] = (jax.jit(jax.vmap(one)), chunk)
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
