"""Gradient clipping: by global norm (Pascanu, Mikolov & Bengio 2013) and by value.

Both functions are pure: they take a gradient pytree (a dict of numpy arrays, possibly nested in
dicts, lists and tuples) and return a new one of the same structure, shapes and dtypes, together
with the global norm *before* clipping::

    ‖g‖ = sqrt(Σ_leaves Σ_entries g²)                      (the global L2 norm)

    clip_by_global_norm:  if ‖g‖ > threshold:  g ← (threshold / ‖g‖) · g    (Algorithm 1)
    clip_by_value:        g ← min(max(g, -c), c)           elementwise

Notes:
    Non-finite gradients, deterministic and documented:

    - ``clip_by_global_norm``: when ``‖g‖`` is Inf or NaN (some entry is ±Inf or NaN) the
      gradients are returned *unchanged* (as copies) and the non-finite norm is reported —
      rescaling would turn every entry into 0 or NaN and hide where the damage is.  The caller
      decides (typically: skip the update).  The norm is NaN when any entry is NaN, else Inf.
    - ``clip_by_value``: ±Inf entries become ±c; NaN entries stay NaN (``np.clip`` semantics);
      the reported norm is that of the input (Inf or NaN as above).

    The norm is accumulated in float64 and scaled by the largest magnitude first, so float32
    gradients, or float64 ones above 1e154, do not overflow when squared.  Clipped leaves keep
    their dtype.  Clipping by norm keeps the direction of ``g``; clipping by value does not.

References:
    R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent neural
    networks", ICML 2013, Algorithm 1 (they write ``‖ĝ‖ ≥ threshold``; at equality the scale is 1,
    so ``>`` is the same map).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["clip_by_global_norm", "clip_by_value", "global_norm", "make_case"]

NDArray = npt.NDArray[Any]
Grads = Any  # a pytree (dict / list / tuple) of numpy arrays


def _leaves(tree: Grads) -> list[NDArray]:
    if isinstance(tree, dict):
        return [leaf for key in tree for leaf in _leaves(tree[key])]
    if isinstance(tree, list | tuple):
        return [leaf for t in tree for leaf in _leaves(t)]
    return [np.asarray(tree)]


def _map(fn: Callable[[NDArray], NDArray], tree: Grads) -> Grads:
    if isinstance(tree, dict):
        return {key: _map(fn, value) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_map(fn, t) for t in tree)
    return fn(np.asarray(tree))


def _positive(value: float, name: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r}: must be a finite number > 0")
    return float(value)


def global_norm(grads: Grads) -> float:
    """Return ``sqrt(Σ g²)`` over every entry of every leaf, as a Python float (float64).

    Computed as ``m · sqrt(Σ (g/m)²)`` with ``m`` the largest ``|g|``, so it neither overflows
    nor underflows.  Inf when an entry is ±Inf (and none is NaN), NaN when an entry is NaN;
    0 for an empty pytree.

    Args:
        grads: a pytree of numpy arrays.

    Examples:
        >>> global_norm({"W": np.array([3.0, 0.0]), "b": np.array([4.0])})
        5.0
    """
    leaves = [leaf.astype(np.float64).ravel() for leaf in _leaves(grads)]
    flat = np.concatenate(leaves) if leaves else np.zeros(0)
    if flat.size == 0:
        return 0.0
    if np.isnan(flat).any():
        return math.nan
    m = float(np.max(np.abs(flat)))
    if m == 0.0 or math.isinf(m):
        return m
    return m * float(np.sqrt(np.sum((flat / m) ** 2)))


def clip_by_global_norm(grads: Grads, threshold: float) -> tuple[Grads, float]:
    """Rescale ``grads`` to global norm ``threshold`` when it is larger (Algorithm 1).

    Args:
        grads: a pytree of numpy arrays.
        threshold: the largest norm allowed, finite and > 0.

    Returns:
        ``(clipped, norm)``: a new pytree, ``g · threshold / norm`` when ``norm > threshold``,
        else a copy of ``g``, each leaf in its own dtype; and ``norm``, the global norm before
        clipping.  A non-finite ``norm`` leaves the gradients unchanged (see the module Notes).

    Raises:
        ValueError: when ``threshold`` is not finite and positive.

    Examples:
        >>> g, norm = clip_by_global_norm({"W": np.array([3.0, 4.0])}, 2.5)
        >>> g["W"].tolist(), norm
        ([1.5, 2.0], 5.0)
    """
    threshold = _positive(threshold, "threshold")
    norm = global_norm(grads)
    scale = threshold / norm if math.isfinite(norm) and norm > threshold else 1.0
    return _map(lambda g: (g * scale).astype(g.dtype) if scale != 1.0 else g.copy(), grads), norm


def clip_by_value(grads: Grads, c: float) -> tuple[Grads, float]:
    """Clip every entry of ``grads`` to ``[-c, c]``.

    Args:
        grads: a pytree of numpy arrays.
        c: the largest magnitude allowed, finite and > 0.

    Returns:
        ``(clipped, norm)``: a new pytree (each leaf in its own dtype; ±Inf become ±c, NaN stays
        NaN) and the global norm of ``grads`` before clipping.

    Raises:
        ValueError: when ``c`` is not finite and positive.

    Examples:
        >>> g, norm = clip_by_value({"W": np.array([-3.0, 0.5, np.inf])}, 1.0)
        >>> g["W"].tolist(), norm
        ([-1.0, 0.5, 1.0], inf)
    """
    c = _positive(c, "c")
    return _map(lambda g: np.clip(g, -c, c).astype(g.dtype), grads), global_norm(grads)


def make_case(
    rng: np.random.Generator,
    *,
    dtype: npt.DTypeLike = np.float64,
    shapes: dict[str, tuple[int, ...]] | None = None,
    norm: float = 10.0,
) -> dict[str, NDArray]:
    """Return a random gradient dict with the given global ``norm``.

    Args:
        rng: the source of randomness.
        dtype: the dtype of every leaf.
        shapes: leaf name to shape (default ``{"W": (4, 3), "b": (3,)}``).
        norm: the global norm of the result (up to rounding in ``dtype``).
    """
    shapes = {"W": (4, 3), "b": (3,)} if shapes is None else shapes
    g = {k: rng.normal(size=s) for k, s in shapes.items()}
    scale = norm / global_norm(g)
    return {k: (v * scale).astype(dtype) for k, v in g.items()}
