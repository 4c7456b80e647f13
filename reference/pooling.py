"""2-D max and average pooling (NCHW, windows may overlap): hand-derived backprop.

Symbols (the code's own names), ``k = size``, ``s = stride``::

    x   (N, C, H, W)      input           y   (N, C, H', W')    output
    H' = 1 + (H − k) // s                 W' = 1 + (W − k) // s
    window (a, e) = { x[n, c, s·a + i, s·e + j] : 0 ≤ i, j < k }

Max pooling::

    y[n, c, a, e]  = max_{i, j} x[n, c, s·a + i, s·e + j]
    (i*, j*)       = the FIRST (i, j) in row-major window order (i, then j) where the max is hit
    dx[n, c, s·a + i*, s·e + j*] += dy[n, c, a, e]          for every output position (a, e)

Average pooling::

    y[n, c, a, e]  = (1 / k²) Σ_{i, j} x[n, c, s·a + i, s·e + j]
    dx[n, c, s·a + i, s·e + j] += dy[n, c, a, e] / k²       for every (a, e) and every (i, j)

With ``s < k`` the windows overlap and one input entry receives gradient from several windows:
the ``+=`` accumulates them (the fan-out rule). Rows ``≥ s(H'−1) + k`` and columns
``≥ s(W'−1) + k`` (when ``s`` does not divide ``H − k``) are read by no window: zero gradient.

The forward is written once against ``xp`` (numpy or jax.numpy): windows gathered by strided
slicing and ``xp.stack``, reduced with ``xp.max`` / ``xp.mean``. The backward is plain numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from reference._xp import namespace

__all__ = ["AvgPool2D", "MaxPool2D", "make_avgpool_case", "make_maxpool_case"]

Array = Any  # numpy or JAX array (the forward runs on both)
NDArray = npt.NDArray[Any]  # numpy array (the backward returns these)


def _out_shape(x_shape: tuple[int, ...], size: int, stride: int, who: str) -> tuple[int, int]:
    """(H', W') for x (N, C, H, W); raises ValueError when the window does not fit."""
    if len(x_shape) != 4 or x_shape[2] < size or x_shape[3] < size:
        raise ValueError(f"{who}: expected x (N, C, H, W) with H, W >= size={size}, got {x_shape}.")
    return 1 + (x_shape[2] - size) // stride, 1 + (x_shape[3] - size) // stride


def _window_slices(size: int, stride: int, ho: int, wo: int) -> list[tuple[slice, slice]]:
    """For each window offset (i, j), row-major, the slices ``x[..., s·a + i, s·e + j]``."""
    hi, wi = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    return [
        (slice(i, i + hi, stride), slice(j, j + wi, stride))
        for i in range(size)
        for j in range(size)
    ]


def _stacked_windows(xp: Any, x: Array, size: int, stride: int, ho: int, wo: int) -> Array:
    """``v[k, n, c, a, e] = x[n, c, s·a + i, s·e + j]``, ``k = i·size + j``: (k², N, C, H', W')."""
    return xp.stack([x[:, :, r, q] for r, q in _window_slices(size, stride, ho, wo)])


def _check_hyper(who: str, size: int, stride: int) -> None:
    for name, v in (("size", size), ("stride", stride)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{who}: {name}={v!r} must be an int >= 1.")


@dataclass(frozen=True)
class MaxPool2D:
    """Max pooling over ``size × size`` windows moved by ``stride``; no parameters.

    ``y[n,c,a,e] = max_{i,j} x[n,c,s·a+i,s·e+j]``; backward routes ``dy[n,c,a,e]`` to the
    window's argmax and accumulates with ``+=`` (windows overlap when ``stride < size``).

    Args:
        size: window side k ≥ 1.
        stride: step s ≥ 1 between windows (``s < k``: overlapping windows).

    Notes:
        Ties: when several entries of a window equal its max, the function is not
        differentiable there. The backward then picks the FIRST maximal entry in row-major
        window order (lowest i, then lowest j), which gets the whole ``dy``: a valid
        subgradient (a vertex of the Clarke subdifferential), the same rule as ``np.argmax``.
        JAX's ``max`` instead splits ``dy`` equally among the tied entries, so at ties the
        two disagree without either being wrong; ``make_maxpool_case`` avoids ties.
        params is ``{}`` and the returned dparams is ``{}``.
    """

    size: int = 2
    stride: int = 2

    def __post_init__(self) -> None:
        _check_hyper("MaxPool2D", self.size, self.stride)

    def forward(self, params: dict[str, Array], x: Array) -> Array:
        """y = max over each window.

        Args:
            params: ``{}``.
            x: input, (N, C, H, W).

        Returns:
            y, (N, C, H', W'), same namespace and dtype as ``x``.
        """
        ho, wo = _out_shape(tuple(x.shape), self.size, self.stride, "MaxPool2D")
        xp = namespace(x)
        return xp.max(_stacked_windows(xp, x, self.size, self.stride, ho, wo), axis=0)

    def backward(
        self, params: dict[str, Array], x: Array, dy: Array
    ) -> tuple[dict[str, NDArray], NDArray]:
        """Route each error to its window's (first) argmax, accumulating with ``+=``.

        Args:
            params: ``{}``.
            x: input, (N, C, H, W).
            dy: errors ∂L/∂y, (N, C, H', W').

        Returns:
            ``({}, dx)`` with dx shaped and typed like ``x``.
        """
        xn, d = np.asarray(x), np.asarray(dy)
        ho, wo = _out_shape(xn.shape, self.size, self.stride, "MaxPool2D")
        win = _stacked_windows(np, xn, self.size, self.stride, ho, wo)
        first_max = np.argmax(win, axis=0)  # (N, C, H', W'): k* = i*·size + j*, first hit
        dx = np.zeros(xn.shape, dtype=np.result_type(xn, d))
        for k, (r, q) in enumerate(_window_slices(self.size, self.stride, ho, wo)):
            dx[:, :, r, q] += np.where(first_max == k, d, 0)
        return {}, dx.astype(xn.dtype)


@dataclass(frozen=True)
class AvgPool2D:
    """Average pooling over ``size × size`` windows moved by ``stride``; no parameters.

    ``y[n,c,a,e] = (1/k²) Σ_{i,j} x[n,c,s·a+i,s·e+j]``; backward spreads ``dy/k²`` over each
    window, accumulating with ``+=`` where windows overlap.

    Args:
        size: window side k ≥ 1.
        stride: step s ≥ 1 between windows (``s < k``: overlapping windows).

    Notes:
        params is ``{}`` and the returned dparams is ``{}``.
    """

    size: int = 2
    stride: int = 2

    def __post_init__(self) -> None:
        _check_hyper("AvgPool2D", self.size, self.stride)

    def forward(self, params: dict[str, Array], x: Array) -> Array:
        """y = mean over each window.

        Args:
            params: ``{}``.
            x: input, (N, C, H, W).

        Returns:
            y, (N, C, H', W'), same namespace and dtype as ``x``.
        """
        ho, wo = _out_shape(tuple(x.shape), self.size, self.stride, "AvgPool2D")
        xp = namespace(x)
        return xp.mean(_stacked_windows(xp, x, self.size, self.stride, ho, wo), axis=0)

    def backward(
        self, params: dict[str, Array], x: Array, dy: Array
    ) -> tuple[dict[str, NDArray], NDArray]:
        """Spread ``dy / size²`` over every window, accumulating with ``+=``.

        Args:
            params: ``{}``.
            x: input, (N, C, H, W).
            dy: errors ∂L/∂y, (N, C, H', W').

        Returns:
            ``({}, dx)`` with dx shaped and typed like ``x``.
        """
        xn, d = np.asarray(x), np.asarray(dy)
        ho, wo = _out_shape(xn.shape, self.size, self.stride, "AvgPool2D")
        share = d / self.size**2
        dx = np.zeros(xn.shape, dtype=np.result_type(xn, d))
        for r, q in _window_slices(self.size, self.stride, ho, wo):
            dx[:, :, r, q] += share
        return {}, dx.astype(xn.dtype)


def _distinct_input(
    rng: np.random.Generator, shape: tuple[int, int, int, int], dtype: npt.DTypeLike
) -> NDArray:
    """A random permutation of an evenly spaced grid, jittered: all entries distinct.

    Grid step ``g = max(4 / count, 0.01)`` (values in about [−2, 2] for small cases), jitter
    ``±g/4``, so any two entries differ by at least ``g/2``: no ties, and finite-difference
    steps stay far from the kinks.
    """
    count = int(np.prod(shape))
    gap = max(4.0 / count, 0.01)
    grid = (rng.permutation(count) - (count - 1) / 2) * gap
    jitter = rng.uniform(-0.25, 0.25, size=count) * gap
    return (grid + jitter).reshape(shape).astype(dtype)


def make_maxpool_case(
    rng: np.random.Generator,
    *,
    dtype: npt.DTypeLike = np.float64,
    batch: int = 2,
    channels: int = 2,
    height: int = 5,
    width: int = 5,
    size: int = 3,
    stride: int = 2,
) -> tuple[MaxPool2D, dict[str, NDArray], NDArray]:
    """A small MaxPool2D case without ties (all entries of x distinct, gaps ≥ half a grid step).

    Args:
        rng: the source of randomness.
        dtype: dtype of the input.
        batch: N.
        channels: C.
        height: H.
        width: W.
        size: window side k (default 3 with stride 2: overlapping windows).
        stride: s.

    Returns:
        ``(MaxPool2D(size, stride), {}, x (N, C, H, W))``; output (N, C, 1 + (H−k)//s,
        1 + (W−k)//s).
    """
    layer = MaxPool2D(size=size, stride=stride)
    x = _distinct_input(rng, (batch, channels, height, width), dtype)
    _out_shape(x.shape, size, stride, "MaxPool2D")
    return layer, {}, x


def make_avgpool_case(
    rng: np.random.Generator,
    *,
    dtype: npt.DTypeLike = np.float64,
    batch: int = 2,
    channels: int = 2,
    height: int = 5,
    width: int = 5,
    size: int = 3,
    stride: int = 2,
) -> tuple[AvgPool2D, dict[str, NDArray], NDArray]:
    """A small AvgPool2D case, ``x ~ N(0, 1)``.

    Args:
        rng: the source of randomness.
        dtype: dtype of the input.
        batch: N.
        channels: C.
        height: H.
        width: W.
        size: window side k (default 3 with stride 2: overlapping windows).
        stride: s.

    Returns:
        ``(AvgPool2D(size, stride), {}, x (N, C, H, W))``; output (N, C, 1 + (H−k)//s,
        1 + (W−k)//s).
    """
    layer = AvgPool2D(size=size, stride=stride)
    x = rng.normal(size=(batch, channels, height, width)).astype(dtype)
    _out_shape(x.shape, size, stride, "AvgPool2D")
    return layer, {}, x
