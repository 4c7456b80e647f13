"""2-D convolution (CS231n cross-correlation, NCHW), stride and zero padding: backprop.

Symbols (the code's own names), ``s = stride``, ``P = pad``::

    x   (N, C, H, W)      input                 w   (F, C, HH, WW)    kernels
    b   (F,)              biases                y   (N, F, H', W')    output
    H' = 1 + (H + 2P − HH) // s                 W' = 1 + (W + 2P − WW) // s
    Hp = H + 2P,  Wp = W + 2P                   x̃  (N, C, Hp, Wp)    x with P zeros on every side

Forward (cross-correlation, as in CS231n; ``a < H'``, ``e < W'`` index output positions)::

    y[n, f, a, e] = b[f] + Σ_{c, i, j} w[f, c, i, j] · x̃[n, c, s·a + i, s·e + j]

Backward, with the errors ``δ = dy`` of shape (N, F, H', W') (``L = Σ dy ⊙ y``)::

    db[f]          = Σ_{n, a, e} δ[n, f, a, e]
    dw[f, c, i, j] = Σ_{n, a, e} δ[n, f, a, e] · x̃[n, c, s·a + i, s·e + j]
                     (the padded input correlated with the errors, dilated by s)
    δ̂              = δ dilated by s:  δ̂[n, f, s·a, s·e] = δ[n, f, a, e], zero elsewhere,
                     shape (N, F, s(H'−1)+1, s(W'−1)+1)
    δ̃              = δ̂ with HH−1 zero rows above and below and WW−1 zero columns left and right
    ŵ[c, f, i, j]  = w[f, c, HH−1−i, WW−1−j]      (kernels FLIPPED, in/out channels swapped)
    dx̃[n, c, p, q] = Σ_{f, i, j} ŵ[c, f, i, j] · δ̃[n, f, p + i, q + j]
                   = Σ_{f, i, j} w[f, c, i, j] · δ̂[n, f, p − i, q − j]
                     (the "convolution of the errors with the flipped kernels"), for
                     p < s(H'−1)+HH, q < s(W'−1)+WW
    dx̃[n, c, p, q] = 0 for the leftover rows p ≥ s(H'−1)+HH and columns q ≥ s(W'−1)+WW
                     (there are (Hp − HH) mod s and (Wp − WW) mod s of them: when the stride
                     does not divide Hp − HH, the last rows/columns of x̃ are read by no window,
                     so y does not depend on them and their gradient is exactly zero)
    dx             = dx̃[:, :, P : P + H, P : P + W]      (crop the padding)

The forward is written once against ``xp`` (numpy or jax.numpy): padding with ``xp.pad``,
windows gathered by strided slicing and ``xp.stack``, contraction by ``xp.einsum``. The backward
is plain numpy and computes ``dx`` explicitly as a correlation of the padded, dilated errors with
the flipped kernels (no scatter-add of windows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from reference._xp import namespace

__all__ = ["Conv2D", "make_case", "output_size"]

Array = Any  # numpy or JAX array (the forward runs on both)
NDArray = npt.NDArray[Any]  # numpy array (the backward returns these)


def output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length along one spatial axis: ``1 + (size + 2·pad − kernel) // stride``.

    Args:
        size: input length (H or W).
        kernel: kernel length (HH or WW).
        stride: the stride s ≥ 1.
        pad: zero padding P ≥ 0 on each side.

    Returns:
        H' (or W'); values < 1 mean the kernel does not fit.
    """
    return 1 + (size + 2 * pad - kernel) // stride


def _pad2d(xp: Any, a: Array, top: int, bottom: int, left: int, right: int) -> Array:
    """Zero-pad the last two axes of a 4-D array (works in numpy and jax.numpy)."""
    if top == bottom == left == right == 0:
        return a
    return xp.pad(a, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _windows(xp: Any, a: Array, kh: int, kw: int, stride: int, ho: int, wo: int) -> Array:
    """Gather the ``ho × wo`` windows of size ``kh × kw`` of ``a`` (N, C, Hp, Wp).

    Returns an array ``v`` of shape (kh, kw, N, C, ho, wo) with
    ``v[i, j, n, c, a, e] = a[n, c, stride·a + i, stride·e + j]``.
    """
    hi, wi = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    return xp.stack(
        [
            xp.stack([a[:, :, i : i + hi : stride, j : j + wi : stride] for j in range(kw)])
            for i in range(kh)
        ]
    )


def _correlate(xp: Any, a: Array, k: Array, stride: int) -> Array:
    """Valid cross-correlation: ``out[n,f,a,e] = Σ_{c,i,j} k[f,c,i,j] · a[n,c,s·a+i,s·e+j]``.

    ``a`` is (N, C, Hp, Wp), ``k`` is (F, C, kh, kw); returns (N, F, H', W').
    """
    _, _, kh, kw = k.shape
    ho = 1 + (a.shape[2] - kh) // stride
    wo = 1 + (a.shape[3] - kw) // stride
    return xp.einsum("ijncae,fcij->nfae", _windows(xp, a, kh, kw, stride, ho, wo), k)


def _dilate(d: NDArray, stride: int) -> NDArray:
    """δ̂: insert ``stride − 1`` zeros between the rows and columns of ``d`` (N, F, H', W')."""
    if stride == 1:
        return d
    n, f, ho, wo = d.shape
    out = np.zeros((n, f, stride * (ho - 1) + 1, stride * (wo - 1) + 1), dtype=d.dtype)
    out[:, :, ::stride, ::stride] = d
    return out


def _flip(w: NDArray) -> NDArray:
    """ŵ[c, f, i, j] = w[f, c, HH−1−i, WW−1−j]: kernels flipped, channel axes swapped."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def _error_convolution(d: NDArray, w_hat: NDArray, stride: int) -> NDArray:
    """dx̃ before the leftover rows: the padded dilated errors correlated with ``w_hat``.

    Args:
        d: errors δ, (N, F, H', W').
        w_hat: the flipped, channel-swapped kernels ŵ, (C, F, HH, WW).
        stride: the forward stride s.

    Returns:
        (N, C, s(H'−1)+HH, s(W'−1)+WW).
    """
    _, _, kh, kw = w_hat.shape
    d_tilde = _pad2d(np, _dilate(d, stride), kh - 1, kh - 1, kw - 1, kw - 1)
    out: NDArray = _correlate(np, d_tilde, w_hat, 1)
    return out


def _weight_grad(x_tilde: NDArray, d: NDArray, kh: int, kw: int, stride: int) -> NDArray:
    """dw[f,c,i,j] = Σ_{n,a,e} δ[n,f,a,e] · x̃[n,c,s·a+i,s·e+j]; (F, C, HH, WW)."""
    _, _, ho, wo = d.shape
    win = _windows(np, x_tilde, kh, kw, stride, ho, wo)
    out: NDArray = np.einsum("ijncae,nfae->fcij", win, d)
    return out


@dataclass(frozen=True)
class Conv2D:
    """2-D convolution layer (cross-correlation), NCHW, stride ``stride``, zero padding ``pad``.

    Forward ``y[n,f,a,e] = b[f] + Σ_{c,i,j} w[f,c,i,j] · x̃[n,c,s·a+i,s·e+j]`` with ``x̃`` the
    input padded with ``pad`` zeros; backward as in the module docstring: ``db = Σ δ``,
    ``dw`` = padded input correlated with the (dilated) errors, ``dx`` = padded dilated errors
    correlated with the flipped kernels, leftover rows/columns zero, padding cropped.

    Args:
        stride: the stride s ≥ 1 (same along both spatial axes).
        pad: zero padding P ≥ 0 added on each of the four sides.

    Notes:
        Params: ``{"w": (F, C, HH, WW), "b": (F,)}``; x: (N, C, H, W); y: (N, F, H', W') with
        ``H' = 1 + (H + 2P − HH) // s``. When ``s`` does not divide ``H + 2P − HH`` the last
        ``(H + 2P − HH) mod s`` padded rows are read by no window: their gradient is zero
        (likewise for columns).

    References:
        CS231n, "Convolutional Neural Networks" (conv layer, naive forward/backward).
    """

    stride: int = 1
    pad: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.stride, int) and self.stride >= 1):
            raise ValueError(f"Conv2D: stride={self.stride!r} must be an int >= 1.")
        if not (isinstance(self.pad, int) and self.pad >= 0):
            raise ValueError(f"Conv2D: pad={self.pad!r} must be an int >= 0.")

    def _check(self, w_shape: tuple[int, ...], x_shape: tuple[int, ...]) -> None:
        if len(x_shape) != 4 or len(w_shape) != 4 or x_shape[1] != w_shape[1]:
            raise ValueError(
                f"Conv2D: expected x (N, C, H, W) and w (F, C, HH, WW) with the same C, "
                f"got x{x_shape} and w{w_shape}."
            )
        for size, k in zip(x_shape[2:], w_shape[2:], strict=True):
            if output_size(size, k, self.stride, self.pad) < 1:
                raise ValueError(
                    f"Conv2D: kernel {w_shape[2:]} does not fit input {x_shape[2:]} "
                    f"with pad={self.pad}."
                )

    def forward(self, params: dict[str, Array], x: Array) -> Array:
        """y = correlate(x̃, w) + b.

        Args:
            params: ``{"w": (F, C, HH, WW), "b": (F,)}``.
            x: input, (N, C, H, W).

        Returns:
            y, (N, F, H', W'), same namespace and dtype as the inputs.
        """
        w, b = params["w"], params["b"]
        self._check(tuple(w.shape), tuple(x.shape))
        xp = namespace(x, w, b)
        p = self.pad
        y = _correlate(xp, _pad2d(xp, x, p, p, p, p), w, self.stride)
        return y + b[None, :, None, None]

    def backward(
        self, params: dict[str, Array], x: Array, dy: Array
    ) -> tuple[dict[str, NDArray], NDArray]:
        """Gradients of ``L = Σ dy ⊙ forward(params, x)``.

        Args:
            params: ``{"w": (F, C, HH, WW), "b": (F,)}``.
            x: input, (N, C, H, W).
            dy: errors δ = ∂L/∂y, (N, F, H', W').

        Returns:
            ``({"w": dw, "b": db}, dx)`` with the shapes and dtypes of ``params`` and ``x``.
        """
        w, b, xn, d = (np.asarray(a) for a in (params["w"], params["b"], x, dy))
        self._check(w.shape, xn.shape)
        s, p = self.stride, self.pad
        _, _, kh, kw = w.shape
        _, _, h, wd = xn.shape
        x_tilde = _pad2d(np, xn, p, p, p, p)
        db = d.sum(axis=(0, 2, 3))
        dw = _weight_grad(x_tilde, d, kh, kw, s)
        core = _error_convolution(d, _flip(w), s)
        # leftover rows/columns (read by no window) get zero gradient:
        rest_h, rest_w = x_tilde.shape[2] - core.shape[2], x_tilde.shape[3] - core.shape[3]
        dx_tilde = _pad2d(np, core, 0, rest_h, 0, rest_w)
        dx = dx_tilde[:, :, p : p + h, p : p + wd]
        grads = {"w": dw.astype(w.dtype), "b": db.astype(b.dtype)}
        return grads, np.ascontiguousarray(dx, dtype=xn.dtype)


def make_case(
    rng: np.random.Generator,
    *,
    dtype: npt.DTypeLike = np.float64,
    batch: int = 2,
    channels: int = 2,
    filters: int = 3,
    height: int = 5,
    width: int = 5,
    kernel: int | tuple[int, int] = 3,
    stride: int = 1,
    pad: int = 1,
) -> tuple[Conv2D, dict[str, NDArray], NDArray]:
    """A small random Conv2D case.

    Args:
        rng: the source of randomness.
        dtype: dtype of params and input.
        batch: N.
        channels: C (input channels).
        filters: F (output channels).
        height: H.
        width: W.
        kernel: HH = WW = kernel, or (HH, WW).
        stride: s.
        pad: P.

    Returns:
        ``(Conv2D(stride, pad), {"w": (F, C, HH, WW), "b": (F,)}, x (N, C, H, W))`` with
        ``w ~ N(0, 1/(C·HH·WW))``, ``b ~ N(0, 0.1²)``, ``x ~ N(0, 1)``; the output is
        (N, F, 1 + (H + 2P − HH)//s, 1 + (W + 2P − WW)//s).
    """
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    layer = Conv2D(stride=stride, pad=pad)
    w = rng.normal(0.0, 1.0 / np.sqrt(channels * kh * kw), size=(filters, channels, kh, kw))
    params = {"w": w.astype(dtype), "b": (0.1 * rng.normal(size=filters)).astype(dtype)}
    x = rng.normal(size=(batch, channels, height, width)).astype(dtype)
    layer._check(params["w"].shape, x.shape)
    return layer, params, x
