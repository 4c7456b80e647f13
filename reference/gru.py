"""Gated recurrent unit (Cho et al., 2014) with hand-derived backpropagation through time.

Row-vector, time-major convention, one named matrix per gate::

    x            (T, B, D)   inputs
    Wz, Wr, Wn   (D, H)      input -> update gate z, reset gate r, candidate n
    Uz, Ur, Un   (H, H)      hidden(t-1) -> z, r, n
    bz, br, bn   (H,)        biases
    Wy (H, K), by (K,)       hidden -> output
    h0           (H,)        initial state, learnable, shared by the batch
    y            (T, B, K)   linear outputs at every step

Forward, in Cho et al.'s original form (the reset gate multiplies ``h_{t-1}`` *before* ``Un``;
cuDNN / PyTorch apply it after: ``r ⊙ (h_{t-1} Un + b)``) and with ``z`` gating the *old* state::

    z   = σ(x_t Wz + h_{t-1} Uz + bz)
    r   = σ(x_t Wr + h_{t-1} Ur + br)
    n   = tanh(x_t Wn + (r ⊙ h_{t-1}) Un + bn)
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    y_t = h_t Wy + by

Backward of ``L = sum_t <dy_t, y_t>`` (BPTT; ``dh_{T→T-1} = 0``)::

    dh_t = dy_t Wyᵀ + dh_{t+1→t}                      total ∂L/∂h_t
    da_n = dh_t ⊙ (1 - z) ⊙ (1 - n²)
    da_z = dh_t ⊙ (h_{t-1} - n) ⊙ z (1 - z)
    d(rh) = da_n Unᵀ                                  ∂L/∂(r ⊙ h_{t-1})
    da_r = d(rh) ⊙ h_{t-1} ⊙ r (1 - r)
    dh_{t→t-1} = dh_t ⊙ z + d(rh) ⊙ r + da_z Uzᵀ + da_r Urᵀ
    ∂L/∂Wz = Σ_t x_tᵀ da_z    ∂L/∂Uz = Σ_t h_{t-1}ᵀ da_z          ∂L/∂bz = Σ da_z
    ∂L/∂Wr = Σ_t x_tᵀ da_r    ∂L/∂Ur = Σ_t h_{t-1}ᵀ da_r          ∂L/∂br = Σ da_r
    ∂L/∂Wn = Σ_t x_tᵀ da_n    ∂L/∂Un = Σ_t (r ⊙ h_{t-1})ᵀ da_n    ∂L/∂bn = Σ da_n
    ∂L/∂x_t = da_z Wzᵀ + da_r Wrᵀ + da_n Wnᵀ
    ∂L/∂Wy = Σ_t h_tᵀ dy_t    ∂L/∂by = Σ dy_t    ∂L/∂h0 = Σ_batch dh_{0→-1}

Truncated BPTT(τ) (``GRU(truncation=τ)``, as ``reference.rnn.ElmanRNN``'s; Williams & Peng
1990): the error of output ``y_t'`` goes back through at most τ cell steps, i.e. it is
differentiated through the window unrolled from ``stop_gradient(h_{t'-τ})`` (from the leaf
``h0`` when ``t'-τ < 0``).  With ``dh_k^{(t')}`` the part of ∂ℓ_{t'}/∂h_k that is kept::

    dh_{t'}^{(t')}  = dy_{t'} Wyᵀ
    dh_{k-1}^{(t')} = dh_{k→k-1} of the cell backward at k given dh_k^{(t')}   for t'-τ+1 < k <= t'
    da_{z,r,n}(k)  = Σ_{t'=k}^{min(k+τ-1, T-1)} da_{z,r,n}(k)^{(t')}

and the nine gate gradients and ∂L/∂x_k are the BPTT formulas with these; ``Wy`` and ``by``
(one-step, explicit) are exact; ``h0`` only collects the outputs ``y_0 … y_{τ-1}``; ``dx_k`` only
``y_k … y_{k+τ-1}``.  τ ≥ T is full BPTT.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from reference._xp import namespace
from reference.rnn import validate_truncation

__all__ = ["GRU", "GRUStep", "make_case"]

Array = Any  # a numpy array, or a jax.numpy array (possibly a tracer) in the forward
NDArray = npt.NDArray[Any]
_PARAM_KEYS: tuple[str, ...] = (
    "Wz", "Wr", "Wn", "Uz", "Ur", "Un", "bz", "br", "bn", "Wy", "by", "h0",
)  # fmt: skip
_CELL_KEYS: tuple[str, ...] = ("Wz", "Wr", "Wn", "Uz", "Ur", "Un", "bz", "br", "bn")


def _sigmoid(xp: ModuleType, a: Array) -> Array:
    """``σ(a) = (1 + tanh(a/2)) / 2``: the logistic sigmoid without overflow."""
    return 0.5 * (xp.tanh(0.5 * a) + 1.0)


class GRUStep(NamedTuple):
    """What the forward saves for the backward of one step (numpy arrays, each (B, ·))."""

    h_prev: NDArray  # h_{t-1} (B, H)
    x: NDArray  # x_t (B, D)
    z: NDArray  # update gate (B, H)
    r: NDArray  # reset gate (B, H)
    n: NDArray  # candidate (B, H)


@dataclass(frozen=True)
class GRU:
    """GRU cell (Cho et al. 2014 convention) unrolled over time, linear read-out at every step.

    Shapes: ``x`` (T, B, D); params ``Wz``, ``Wr``, ``Wn`` (D, H); ``Uz``, ``Ur``, ``Un`` (H, H);
    ``bz``, ``br``, ``bn`` (H,); ``Wy`` (H, K); ``by`` (K,); ``h0`` (H,); ``y`` (T, B, K).
    Equations: see the module docstring.

    Args:
        truncation: ``None`` for full BPTT, or ``τ >= 1`` for truncated BPTT(τ) (module
            docstring).  A deliberate deviation: with τ < T the hand gradient is, on purpose,
            not the gradient of the forward, and a gradient check reports it as a wrong backward
            on the nine gate parameters, ``h0`` and ``x`` (``Wy``, ``by`` stay exact).

    References:
        K. Cho et al., "Learning phrase representations using RNN encoder-decoder for
        statistical machine translation", EMNLP 2014 (eqs. 5-8).

    Examples:
        >>> import numpy as np
        >>> layer, params, x = make_case(np.random.default_rng(0), T=3, B=2)
        >>> y = layer.forward(params, x)
        >>> dparams, dx, deltas = layer.bptt(params, x, np.ones_like(y))
        >>> y.shape, dparams["Un"].shape, deltas.shape
        ((3, 2, 2), (4, 4), (3, 2, 4))
    """

    truncation: int | None = None

    def __post_init__(self) -> None:
        validate_truncation(self.truncation)

    def with_truncation(self, truncation: int | None) -> GRU:
        """The same layer with BPTT truncated to ``truncation`` steps (``None``: full BPTT).

        Examples:
            >>> GRU().with_truncation(3)
            GRU(truncation=3)
        """
        return dataclasses.replace(self, truncation=truncation)

    # ----------------------------------------------------------------------------- forward
    def cell_forward(self, params: dict[str, Array], h_prev: Array, x_t: Array) -> Array:
        """One step ``h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}`` (numpy or jax.numpy).

        Args:
            params: the nine gate parameters ``Wz, Wr, Wn`` (D, H), ``Uz, Ur, Un`` (H, H),
                ``bz, br, bn`` (H,).
            h_prev: ``h_{t-1}``, (B, H).
            x_t: ``x_t``, (B, D).

        Returns:
            ``h_t``, (B, H).
        """
        p = params
        xp = namespace(x_t, h_prev, *(p[k] for k in _CELL_KEYS))
        z = _sigmoid(xp, xp.matmul(x_t, p["Wz"]) + xp.matmul(h_prev, p["Uz"]) + p["bz"])
        r = _sigmoid(xp, xp.matmul(x_t, p["Wr"]) + xp.matmul(h_prev, p["Ur"]) + p["br"])
        n = xp.tanh(xp.matmul(x_t, p["Wn"]) + xp.matmul(r * h_prev, p["Un"]) + p["bn"])
        return (1.0 - z) * n + z * h_prev

    def initial_state(self, params: dict[str, Array], batch: int) -> Array:
        """``h_{-1}``: ``h0`` broadcast to (batch, H) (numpy or jax.numpy)."""
        xp = namespace(params["h0"])
        return xp.broadcast_to(params["h0"], (batch, params["h0"].shape[0]))

    def state_step(self, params: dict[str, Array], state: Array, x_t: Array) -> Array:
        """One step of the recurrent state, ``h_t`` from ``h_{t-1}``: :meth:`cell_forward`."""
        return self.cell_forward(params, state, x_t)

    def readout(self, params: dict[str, Array], state: Array) -> Array:
        """The output of one step, ``y_t = h_t Wy + by``, (B, K) (numpy or jax.numpy)."""
        xp = namespace(state, params["Wy"], params["by"])
        return xp.matmul(state, params["Wy"]) + params["by"]

    def forward(self, params: dict[str, Array], x: Array) -> Array:
        """Unroll the cell: ``y_t = h_t Wy + by`` for t = 0..T-1.

        Args:
            params: the twelve parameters listed in the class docstring.
            x: inputs, (T, B, D).

        Returns:
            ``y``, (T, B, K), in the dtype of the inputs.
        """
        xp = namespace(x, *(params[k] for k in _PARAM_KEYS))
        h = xp.broadcast_to(params["h0"], (x.shape[1], params["h0"].shape[0]))
        ys = []
        for t in range(x.shape[0]):
            h = self.cell_forward(params, h, x[t])
            ys.append(xp.matmul(h, params["Wy"]) + params["by"])
        return xp.stack(ys)

    def cell_cache(self, params: dict[str, Array], h_prev: NDArray, x_t: NDArray) -> GRUStep:
        """One forward step in numpy that keeps what :meth:`cell_backward` needs.

        Args:
            params: the nine gate parameters.
            h_prev: ``h_{t-1}``, (B, H).
            x_t: ``x_t``, (B, D).

        Returns:
            The :class:`GRUStep` record; ``h_t = (1 - z) n + z h_prev``.
        """
        p = {k: np.asarray(params[k]) for k in _CELL_KEYS}
        z = _sigmoid(np, x_t @ p["Wz"] + h_prev @ p["Uz"] + p["bz"])
        r = _sigmoid(np, x_t @ p["Wr"] + h_prev @ p["Ur"] + p["br"])
        n = np.tanh(x_t @ p["Wn"] + (r * h_prev) @ p["Un"] + p["bn"])
        return GRUStep(h_prev, x_t, z, r, n)

    def steps(self, params: dict[str, Array], x: Array) -> list[GRUStep]:
        """The forward's saved records, one :class:`GRUStep` per time step (numpy).

        Args:
            params: as in :meth:`forward`.
            x: inputs, (T, B, D).

        Returns:
            A list of T records.
        """
        x = np.asarray(x)
        h0 = np.asarray(params["h0"])
        h = np.broadcast_to(h0, (x.shape[1], h0.shape[0]))
        out = []
        for t in range(x.shape[0]):
            step = self.cell_cache(params, h, x[t])
            out.append(step)
            h = (1.0 - step.z) * step.n + step.z * step.h_prev
        return out

    # ---------------------------------------------------------------------------- backward
    def cell_backward(
        self, params: dict[str, Array], step: GRUStep, dh_t: NDArray
    ) -> tuple[dict[str, NDArray], NDArray, NDArray]:
        """Backward of one step (numpy).

        Args:
            params: the nine gate parameters (the matrices are used).
            step: the saved :class:`GRUStep` of this step.
            dh_t: the total ``∂L/∂h_t``, (B, H).

        Returns:
            ``(grads, dh_prev, dx_t)``: ``grads`` holds the nine gate-parameter gradients of this
            step, ``dh_prev = dh_{t→t-1}`` (B, H), ``dx_t`` (B, D).
        """
        s, p = step, {k: np.asarray(params[k]) for k in _CELL_KEYS}
        da_n = dh_t * (1.0 - s.z) * (1.0 - s.n * s.n)
        da_z = dh_t * (s.h_prev - s.n) * s.z * (1.0 - s.z)
        drh = da_n @ p["Un"].T
        da_r = drh * s.h_prev * s.r * (1.0 - s.r)
        dh_prev = dh_t * s.z + drh * s.r + da_z @ p["Uz"].T + da_r @ p["Ur"].T
        dx = da_z @ p["Wz"].T + da_r @ p["Wr"].T + da_n @ p["Wn"].T
        grads = {
            "Wz": s.x.T @ da_z, "Uz": s.h_prev.T @ da_z, "bz": da_z.sum(axis=0),
            "Wr": s.x.T @ da_r, "Ur": s.h_prev.T @ da_r, "br": da_r.sum(axis=0),
            "Wn": s.x.T @ da_n, "Un": (s.r * s.h_prev).T @ da_n, "bn": da_n.sum(axis=0),
        }  # fmt: skip
        return grads, dh_prev, dx

    def bptt(
        self, params: dict[str, Array], x: Array, dy: Array
    ) -> tuple[dict[str, NDArray], NDArray, NDArray]:
        """Backpropagation through time (BPTT(τ) when ``truncation`` is set).

        Args:
            params: as in :meth:`forward`.
            x: inputs, (T, B, D).
            dy: ``∂L/∂y``, (T, B, K).

        Returns:
            ``(dparams, dx, deltas)``: ``dparams`` keyed and shaped like ``params``; ``dx``
            (T, B, D); ``deltas`` (T, B, H) with ``deltas[t] = ∂L/∂h_t``, the total derivative
            through all later steps (with truncation, the truncated analogue
            ``Σ_{t'=t}^{t+τ-1} dh_t^{(t')}`` of the module docstring).
        """
        p = {k: np.asarray(params[k]) for k in _PARAM_KEYS}
        x, dy = np.asarray(x), np.asarray(dy)
        steps = self.steps(p, x)
        g = {k: np.zeros_like(v) for k, v in p.items()}
        dx = np.zeros_like(x)
        deltas = np.zeros(dy.shape[:2] + p["h0"].shape, dtype=p["h0"].dtype)
        if self.truncation is not None:
            self._truncated_bptt(p, steps, dy, g, dx, deltas, self.truncation)
            dparams = {k: g[k].astype(p[k].dtype, copy=False) for k in _PARAM_KEYS}
            return dparams, dx.astype(x.dtype, copy=False), deltas
        dh_next = np.zeros_like(deltas[0])
        for t in reversed(range(x.shape[0])):
            s = steps[t]
            h_t = (1.0 - s.z) * s.n + s.z * s.h_prev
            g["Wy"] += h_t.T @ dy[t]
            g["by"] += dy[t].sum(axis=0)
            dh = dy[t] @ p["Wy"].T + dh_next
            deltas[t] = dh
            cell, dh_next, dx[t] = self.cell_backward(p, s, dh)
            for k, v in cell.items():
                g[k] += v
        g["h0"] += dh_next.sum(axis=0)
        dparams = {k: g[k].astype(p[k].dtype, copy=False) for k in _PARAM_KEYS}
        return dparams, dx.astype(x.dtype, copy=False), deltas

    def _truncated_bptt(
        self,
        p: dict[str, NDArray],
        steps: list[GRUStep],
        dy: NDArray,
        g: dict[str, NDArray],
        dx: NDArray,
        deltas: NDArray,
        tau: int,
    ) -> None:
        """BPTT(τ) into ``g``, ``dx`` and ``deltas`` (in place): each output's error walks back
        through at most τ cell steps (module docstring)."""
        for t in reversed(range(len(steps))):  # source step: the error of y_t ...
            s = steps[t]
            h_t = (1.0 - s.z) * s.n + s.z * s.h_prev
            g["Wy"] += h_t.T @ dy[t]
            g["by"] += dy[t].sum(axis=0)
            dh = dy[t] @ p["Wy"].T
            for k in range(t, max(t - tau, -1), -1):  # ... reaches h_t .. h_{t-τ+1}
                deltas[k] += dh
                cell, dh, dx_k = self.cell_backward(p, steps[k], dh)
                dx[k] += dx_k
                for key, v in cell.items():
                    g[key] += v
                if k == 0:
                    g["h0"] += dh.sum(axis=0)

    def backward(
        self, params: dict[str, Array], x: Array, dy: Array
    ) -> tuple[dict[str, NDArray], NDArray]:
        """Gradient of ``L = sum(dy * forward(params, x))`` by BPTT.

        Args:
            params: as in :meth:`forward`.
            x: inputs, (T, B, D).
            dy: ``∂L/∂y``, (T, B, K).

        Returns:
            ``(dparams, dx)``, shaped and typed like ``(params, x)``.
        """
        dparams, dx, _ = self.bptt(params, x, dy)
        return dparams, dx


def make_case(
    rng: np.random.Generator,
    *,
    dtype: npt.DTypeLike = np.float64,
    T: int = 4,
    B: int = 3,
    D: int = 3,
    H: int = 4,
    K: int = 2,
    truncation: int | None = None,
) -> tuple[GRU, dict[str, NDArray], NDArray]:
    """A small well-conditioned random case ``(layer, params, x)`` (the GRU is smooth: no kinks).

    Args:
        rng: the only source of randomness.
        dtype: dtype of every parameter and of ``x``.
        T: sequence length (``x.shape[0]``).
        B: batch size (``x.shape[1]``).
        D: input width (``x.shape[2]``; ``Wz``, ``Wr``, ``Wn`` are (D, H)).
        H: hidden width (``Uz``, ``Ur``, ``Un`` (H, H); biases and ``h0`` (H,); ``Wy`` (H, K)).
        K: output width (``Wy.shape[1]``, ``by``; ``y`` is (T, B, K)).

        truncation: the layer's ``τ`` (``None`` = full BPTT).

    Returns:
        ``(GRU(truncation), params, x)`` with ``x`` of shape (T, B, D).
    """
    params: dict[str, NDArray] = {}
    for gate in "zrn":
        params["W" + gate] = rng.standard_normal((D, H)) / np.sqrt(D)
        params["U" + gate] = rng.standard_normal((H, H)) / np.sqrt(H)
        params["b" + gate] = 0.1 * rng.standard_normal(H)
    params["Wy"] = rng.standard_normal((H, K)) / np.sqrt(H)
    params["by"] = 0.1 * rng.standard_normal(K)
    params["h0"] = 0.5 * rng.standard_normal(H)
    x = rng.standard_normal((T, B, D))
    ordered = {k: params[k].astype(dtype) for k in _PARAM_KEYS}
    return GRU(truncation), ordered, x.astype(dtype)
