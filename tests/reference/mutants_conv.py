"""Planted bugs in the conv, pooling and recursive reference layers, for the mutation tests.

Each mutant subclasses a reference layer and overrides ``backward`` with ONE realistic bug.
``MUTANTS`` maps a readable bug name to a factory ``rng -> (layer, params, x)`` building a small
float64 case on which that bug really changes the gradient (e.g. stride 2 for a stride bug,
overlapping windows for an ``=``-instead-of-``+=`` bug); ``WRONG_LEAVES`` names the leaves
(param keys or ``"x"``) whose gradient is wrong there — the other leaves stay exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from reference import conv, pooling, recursive
from reference.conv import Conv2D, _error_convolution, _flip, _pad2d, _weight_grad
from reference.pooling import AvgPool2D, MaxPool2D, _out_shape, _window_slices
from reference.recursive import RecursiveNet, _Inner, _Leaf

__all__ = ["MUTANTS", "WRONG_LEAVES"]

NDArray = npt.NDArray[Any]
Case = tuple[Any, dict[str, NDArray], NDArray]


def _as(cls: type, case: Case) -> Case:
    """The same case with the layer rebuilt as the mutant class ``cls`` (same fields)."""
    layer, params, x = case
    return cls(**{f.name: getattr(layer, f.name) for f in fields(layer)}), params, x


# ----------------------------------------------------------------------------- Conv2D


def _conv_grads(
    layer: Conv2D,
    params: dict[str, Any],
    x: Any,
    dy: Any,
    *,
    w_hat: NDArray | None = None,
    stride: int | None = None,
    crop_shift: int = 0,
    leftover_first: bool = False,
) -> tuple[dict[str, NDArray], NDArray]:
    """Conv2D.backward with one knob turned (all defaults: the correct backward)."""
    w, xn, d = np.asarray(params["w"]), np.asarray(x), np.asarray(dy)
    s = layer.stride if stride is None else stride
    p, (_, _, kh, kw), (_, _, h, wd) = layer.pad, w.shape, xn.shape
    x_tilde = _pad2d(np, xn, p, p, p, p)
    core = _error_convolution(d, _flip(w) if w_hat is None else w_hat, s)
    rh, rw = x_tilde.shape[2] - core.shape[2], x_tilde.shape[3] - core.shape[3]
    pads = (rh, 0, rw, 0) if leftover_first else (0, rh, 0, rw)
    dx_tilde = _pad2d(np, core, *pads)
    top = p + crop_shift
    dx = dx_tilde[:, :, top : top + h, top : top + wd]
    db = d.sum(axis=(0, 2, 3))
    return {"w": _weight_grad(x_tilde, d, kh, kw, s), "b": db}, dx


@dataclass(frozen=True)
class _UnflippedKernel(Conv2D):
    """dx correlates the errors with the kernels NOT flipped (channels still swapped)."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        w_hat = np.asarray(params["w"]).transpose(1, 0, 2, 3)
        return _conv_grads(self, params, x, dy, w_hat=w_hat)


@dataclass(frozen=True)
class _BackwardStrideOne(Conv2D):
    """The backward uses stride 1 (no dilation of the errors, dense windows for dw)."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        return _conv_grads(self, params, x, dy, stride=1)


@dataclass(frozen=True)
class _CropOffByOne(Conv2D):
    """dx crops the padding one row/column too early: dx̃[pad−1 : pad−1+H, ...]."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        return _conv_grads(self, params, x, dy, crop_shift=-1)


@dataclass(frozen=True)
class _LeftoverOnTop(Conv2D):
    """The zero leftover rows/columns (stride not dividing Hp − HH) are put first, not last."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        return _conv_grads(self, params, x, dy, leftover_first=True)


@dataclass(frozen=True)
class _BiasMeanOverSpace(Conv2D):
    """db = Σ_n mean_{a,e} δ: averaged, not summed, over the spatial positions."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        grads, dx = _conv_grads(self, params, x, dy)
        grads["b"] = np.asarray(dy).mean(axis=(2, 3)).sum(axis=0)
        return grads, dx


@dataclass(frozen=True)
class _WeightFirstSampleOnly(Conv2D):
    """dw from the first example only (the batch sum dropped)."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        grads, dx = _conv_grads(self, params, x, dy)
        sub, _ = _conv_grads(self, params, np.asarray(x)[:1], np.asarray(dy)[:1])
        grads["w"] = sub["w"]
        return grads, dx


# ----------------------------------------------------------------------------- pooling


@dataclass(frozen=True)
class _MaxToTopLeft(MaxPool2D):
    """Max-pool routes every error to the window's top-left entry instead of its argmax."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        xn, d = np.asarray(x), np.asarray(dy)
        ho, wo = _out_shape(xn.shape, self.size, self.stride, "MaxPool2D")
        dx = np.zeros_like(xn)
        r, q = _window_slices(self.size, self.stride, ho, wo)[0]
        dx[:, :, r, q] += d
        return {}, dx


@dataclass(frozen=True)
class _MaxAssignNotAccumulate(MaxPool2D):
    """Max-pool writes dx[window] = mask·dy per window: overlapping windows overwrite."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        xn, d = np.asarray(x), np.asarray(dy)
        k, s = self.size, self.stride
        n, c, ho, wo = d.shape
        dx = np.zeros_like(xn)
        for a in range(ho):
            for e in range(wo):
                win = xn[:, :, s * a : s * a + k, s * e : s * e + k].reshape(n, c, k * k)
                mask = np.arange(k * k) == np.argmax(win, axis=-1)[..., None]
                dx[:, :, s * a : s * a + k, s * e : s * e + k] = (
                    mask * d[:, :, a, e, None]
                ).reshape(n, c, k, k)
        return {}, dx


@dataclass(frozen=True)
class _AvgMissingScale(AvgPool2D):
    """Avg-pool backward forgets the 1/size² factor."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        _, dx = super().backward(params, x, dy)
        return {}, dx * self.size**2


@dataclass(frozen=True)
class _AvgAssignNotAccumulate(AvgPool2D):
    """Avg-pool writes dx[window] = dy/size² per window: overlapping windows overwrite."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        xn, d = np.asarray(x), np.asarray(dy)
        k, s = self.size, self.stride
        dx = np.zeros_like(xn)
        for a in range(d.shape[2]):
            for e in range(d.shape[3]):
                dx[:, :, s * a : s * a + k, s * e : s * e + k] = d[:, :, a, e, None, None] / k**2
        return {}, dx


# ----------------------------------------------------------------------------- RecursiveNet


def _bpts(
    layer: RecursiveNet,
    params: dict[str, Any],
    x: Any,
    dy: Any,
    *,
    root_only_w: bool = False,
    swap_children: bool = False,
    tanh_prime_of_p: bool = False,
) -> tuple[dict[str, NDArray], NDArray]:
    """RecursiveNet.backward with one knob turned (all defaults: the correct backward)."""
    w, b, xn, d = (np.asarray(a) for a in (params["W"], params["b"], x, dy))
    dw, db, dx = np.zeros_like(w), np.zeros_like(b), np.zeros_like(xn)
    dim = w.shape[0]

    def back(v: _Leaf | _Inner, g: NDArray, is_root: bool) -> None:
        if isinstance(v, _Leaf):
            dx[v.index] += g
            return
        delta = g * (1 - v.p) if tanh_prime_of_p else g * (1 - v.p**2)
        if is_root or not root_only_w:
            dw[...] += delta.reshape(-1, dim).T @ v.c.reshape(-1, 2 * dim)
        db[...] += delta.reshape(-1, dim).sum(axis=0)
        g_c = delta @ w
        g_l, g_r = g_c[..., :dim], g_c[..., dim:]
        if swap_children:
            g_l, g_r = g_r, g_l
        back(v.left, g_l, False)
        back(v.right, g_r, False)

    back(layer._forward_cache(w, b, xn), d, True)
    return {"W": dw, "b": db}, dx


@dataclass(frozen=True)
class _RootOnlyTiedWeight(RecursiveNet):
    """dW keeps only the root's δ cᵀ: the tied weight's contributions are not summed."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        return _bpts(self, params, x, dy, root_only_w=True)


@dataclass(frozen=True)
class _SwappedChildren(RecursiveNet):
    """The backward sends (Wᵀδ)[:D] to the right child and (Wᵀδ)[D:] to the left one."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        return _bpts(self, params, x, dy, swap_children=True)


@dataclass(frozen=True)
class _TanhPrimeOfP(RecursiveNet):
    """tanh' taken as 1 − p instead of 1 − p²."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, NDArray], NDArray]:
        return _bpts(self, params, x, dy, tanh_prime_of_p=True)


# ----------------------------------------------------------------------------- tables

MUTANTS: dict[str, Callable[[np.random.Generator], Case]] = {
    "conv: dx uses unflipped kernels": lambda rng: _as(
        _UnflippedKernel, conv.make_case(rng, stride=1, pad=1)
    ),
    "conv: backward uses stride 1 (forward stride 2)": lambda rng: _as(
        _BackwardStrideOne, conv.make_case(rng, height=7, width=7, stride=2, pad=1)
    ),
    "conv: dx padding crop off by one": lambda rng: _as(
        _CropOffByOne, conv.make_case(rng, stride=1, pad=1)
    ),
    "conv: leftover rows zeroed at the top (stride not dividing)": lambda rng: _as(
        _LeftoverOnTop, conv.make_case(rng, height=6, width=6, stride=2, pad=1)
    ),
    "conv: db averaged, not summed, over spatial positions": lambda rng: _as(
        _BiasMeanOverSpace, conv.make_case(rng)
    ),
    "conv: dw from the first example only": lambda rng: _as(
        _WeightFirstSampleOnly, conv.make_case(rng, batch=3)
    ),
    "maxpool: error routed to the window's top-left entry": lambda rng: _as(
        _MaxToTopLeft, pooling.make_maxpool_case(rng, size=2, stride=2, height=4, width=4)
    ),
    "maxpool: overlapping windows assigned (=) instead of accumulated (+=)": lambda rng: _as(
        _MaxAssignNotAccumulate, pooling.make_maxpool_case(rng, size=3, stride=1)
    ),
    "avgpool: missing 1/size² factor": lambda rng: _as(
        _AvgMissingScale, pooling.make_avgpool_case(rng, size=2, stride=2, height=4, width=4)
    ),
    "avgpool: overlapping windows assigned (=) instead of accumulated (+=)": lambda rng: _as(
        _AvgAssignNotAccumulate, pooling.make_avgpool_case(rng, size=3, stride=2)
    ),
    "recursive: tied W gets only the root's contribution": lambda rng: _as(
        _RootOnlyTiedWeight, recursive.make_case(rng, tree="balanced", n_leaves=4)
    ),
    "recursive: left/right children swapped in the backward": lambda rng: _as(
        _SwappedChildren, recursive.make_case(rng, tree="unbalanced", n_leaves=4)
    ),
    "recursive: tanh' taken as 1 - p": lambda rng: _as(
        _TanhPrimeOfP, recursive.make_case(rng, tree="balanced", n_leaves=4)
    ),
}

WRONG_LEAVES: dict[str, set[str]] = {
    "conv: dx uses unflipped kernels": {"x"},
    "conv: backward uses stride 1 (forward stride 2)": {"w", "x"},
    "conv: dx padding crop off by one": {"x"},
    "conv: leftover rows zeroed at the top (stride not dividing)": {"x"},
    "conv: db averaged, not summed, over spatial positions": {"b"},
    "conv: dw from the first example only": {"w"},
    "maxpool: error routed to the window's top-left entry": {"x"},
    "maxpool: overlapping windows assigned (=) instead of accumulated (+=)": {"x"},
    "avgpool: missing 1/size² factor": {"x"},
    "avgpool: overlapping windows assigned (=) instead of accumulated (+=)": {"x"},
    "recursive: tied W gets only the root's contribution": {"W"},
    "recursive: left/right children swapped in the backward": {"W", "b", "x"},
    "recursive: tanh' taken as 1 - p": {"W", "b", "x"},
}
