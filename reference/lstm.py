"""Long short-term memory layer with hand-derived backpropagation through time (cell state too).

Row-vector, time-major convention, gates stacked in the order **i, f, g, o** (input, forget,
candidate, output; PyTorch's order) along the last axis of ``Wx``, ``Wh`` and ``b``::

    x      (T, B, D)   inputs
    Wx     (D, 4H)     input -> gates;   Wx[:, 0:H] input gate, [H:2H] forget, [2H:3H] candidate,
                                         [3H:4H] output
    Wh     (H, 4H)     hidden(t-1) -> gates, same column blocks
    b      (4H,)       gate biases, same blocks
    Wy     (H, K)      hidden -> output,  by (K,) output bias
    h0, c0 (H,)        initial hidden and cell states, learnable, shared by the batch
    y      (T, B, K)   linear outputs at every step

Forward (σ is the logistic sigmoid)::

    z_t = x_t Wx + h_{t-1} Wh + b = [a_i | a_f | a_g | a_o]          (B, 4H)
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)              (B, H) each
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)
    y_t = h_t Wy + by

Backward of ``L = sum_t <dy_t, y_t>`` (BPTT; ``dh_T = dc_T = 0``)::

    dh_t  = dy_t Wyᵀ + dh_{t+1→t}                       total ∂L/∂h_t
    dc    = dh_t ⊙ o ⊙ (1 - tanh²(c_t)) + dc_{t+1→t}     total ∂L/∂c_t
    da_o = dh_t ⊙ tanh(c_t) ⊙ o (1 - o)
    da_i = dc ⊙ g ⊙ i (1 - i)
    da_g = dc ⊙ i ⊙ (1 - g²)
    da_f = dc ⊙ c_{t-1} ⊙ f (1 - f)
    dz_t = [da_i | da_f | da_g | da_o]
    dc_{t→t-1} = dc ⊙ f                                 the cell-state carry
    dh_{t→t-1} = dz_t Whᵀ                               the hidden-state carry
    ∂L/∂Wx = Σ_t x_tᵀ dz_t   ∂L/∂Wh = Σ_t h_{t-1}ᵀ dz_t   ∂L/∂b = Σ_{t,batch} dz_t
    ∂L/∂x_t = dz_t Wxᵀ
    ∂L/∂Wy = Σ_t h_tᵀ dy_t   ∂L/∂by = Σ_{t,batch} dy_t
    ∂L/∂h0 = Σ_batch dh_{0→-1}   ∂L/∂c0 = Σ_batch dc_{0→-1}

Truncated BPTT(τ) (``LSTM(truncation=τ)``, as ``reference.rnn.ElmanRNN``'s; Williams & Peng
1990): the error of output ``y_t'`` goes back through at most τ cell steps, along *both* the
hidden and the cell-state carry, i.e. it is differentiated through the window unrolled from
``stop_gradient([h_{t'-τ} | c_{t'-τ}])`` (from the leaves ``h0``, ``c0`` when ``t'-τ < 0``)::

    (dh_{t'}^{(t')}, dc_{t'→}^{(t')}) = (dy_{t'} Wyᵀ, 0)
    cell backward at k with (dh_k^{(t')}, dc_{k+1→k}^{(t')}) gives dz_k^{(t')},
        dh_{k-1}^{(t')} = dh_{k→k-1},  dc_{k→k-1}^{(t')} = dc ⊙ f        for t'-τ+1 < k <= t'
    dz_k = Σ_{t'=k}^{min(k+τ-1, T-1)} dz_k^{(t')}

and ∂L/∂Wx, ∂L/∂Wh, ∂L/∂b, ∂L/∂x_k are the BPTT formulas with these ``dz_k``; ``Wy`` and
``by`` (one-step, explicit) are exact; ``h0`` and ``c0`` only collect the outputs
``y_0 … y_{τ-1}``; ``dx_k`` only the outputs ``y_k … y_{k+τ-1}``.  τ ≥ T is full BPTT.
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

__all__ = ["LSTM", "LSTMStep", "make_case"]

Array = Any  # a numpy array, or a jax.numpy array (possibly a tracer) in the forward
NDArray = npt.NDArray[Any]
_PARAM_KEYS: tuple[str, ...] = ("Wx", "Wh", "b", "Wy", "by", "h0", "c0")


def _sigmoid(xp: ModuleType, a: Array) -> Array:
    """``σ(a) = (1 + tanh(a/2)) / 2``: the logistic sigmoid without overflow."""
    return 0.5 * (xp.tanh(0.5 * a) + 1.0)


class LSTMStep(NamedTuple):
    """What the forward saves for the backward of one step (numpy arrays, each (B, ·))."""

    h_prev: NDArray  # h_{t-1} (B, H)
    c_prev: NDArray  # c_{t-1} (B, H)
    x: NDArray  # x_t (B, D)
    i: NDArray  # input gate (B, H)
    f: NDArray  # forget gate (B, H)
    g: NDArray  # candidate (B, H)
    o: NDArray  # output gate (B, H)
    tanh_c: NDArray  # tanh(c_t) (B, H)


@dataclass(frozen=True)
class LSTM:
    """Standard LSTM cell unrolled over time, with a linear read-out at every step.

    Shapes: ``x`` (T, B, D); params ``Wx`` (D, 4H), ``Wh`` (H, 4H), ``b`` (4H,), ``Wy`` (H, K),
    ``by`` (K,), ``h0`` (H,), ``c0`` (H,); ``y`` (T, B, K).  Gate order i, f, g, o.
    Equations: see the module docstring.

    Args:
        truncation: ``None`` for full BPTT, or ``τ >= 1`` for truncated BPTT(τ) (module
            docstring).  A deliberate deviation: with τ < T the hand gradient is, on purpose,
            not the gradient of the forward, and a gradient check reports it as a wrong backward
            on ``Wx``, ``Wh``, ``b``, ``h0``, ``c0`` and ``x`` (``Wy``, ``by`` stay exact).

    References:
        S. Hochreiter and J. Schmidhuber, "Long short-term memory", Neural Computation 9(8),
        1997; F. Gers, J. Schmidhuber, F. Cummins, "Learning to forget", 2000 (forget gate).

    Examples:
        >>> import numpy as np
        >>> layer, params, x = make_case(np.random.default_rng(0), T=3, B=2)
        >>> y = layer.forward(params, x)
        >>> dparams, dx, deltas = layer.bptt(params, x, np.ones_like(y))
        >>> y.shape, dparams["Wh"].shape, deltas.shape
        ((3, 2, 2), (4, 16), (3, 2, 4))
    """

    truncation: int | None = None

    def __post_init__(self) -> None:
        validate_truncation(self.truncation)

    def with_truncation(self, truncation: int | None) -> LSTM:
        """The same layer with BPTT truncated to ``truncation`` steps (``None``: full BPTT).

        Examples:
            >>> LSTM().with_truncation(3)
            LSTM(truncation=3)
        """
        return dataclasses.replace(self, truncation=truncation)

    # ----------------------------------------------------------------------------- forward
    def cell_forward(
        self, params: dict[str, Array], h_prev: Array, c_prev: Array, x_t: Array
    ) -> tuple[Array, Array]:
        """One step ``(h_{t-1}, c_{t-1}, x_t) -> (h_t, c_t)`` (numpy or jax.numpy).

        Args:
            params: ``Wx`` (D, 4H), ``Wh`` (H, 4H), ``b`` (4H,) are used.
            h_prev: ``h_{t-1}``, (B, H).
            c_prev: ``c_{t-1}``, (B, H).
            x_t: ``x_t``, (B, D).

        Returns:
            ``(h_t, c_t)``, each (B, H).
        """
        xp = namespace(x_t, h_prev, c_prev, params["Wx"], params["Wh"], params["b"])
        H = params["Wh"].shape[0]
        z = xp.matmul(x_t, params["Wx"]) + xp.matmul(h_prev, params["Wh"]) + params["b"]
        i = _sigmoid(xp, z[:, 0:H])
        f = _sigmoid(xp, z[:, H : 2 * H])
        g = xp.tanh(z[:, 2 * H : 3 * H])
        o = _sigmoid(xp, z[:, 3 * H : 4 * H])
        c = f * c_prev + i * g
        return o * xp.tanh(c), c

    def initial_state(self, params: dict[str, Array], batch: int) -> Array:
        """The packed state ``[h0 | c0]`` broadcast to (batch, 2H) (numpy or jax.numpy)."""
        xp = namespace(params["h0"], params["c0"])
        H = params["h0"].shape[0]
        return xp.broadcast_to(xp.concatenate([params["h0"], params["c0"]]), (batch, 2 * H))

    def state_step(self, params: dict[str, Array], state: Array, x_t: Array) -> Array:
        """One step of the packed state ``[h_{t-1} | c_{t-1}] -> [h_t | c_t]``, (B, 2H).

        The hidden and the cell state travel together so the step is one map of one state;
        :meth:`bptt`'s deltas cover its first :meth:`observed_width` columns, ``h``.
        """
        H = params["h0"].shape[0]
        h, c = self.cell_forward(params, state[:, :H], state[:, H:], x_t)
        return namespace(h, c).concatenate([h, c], axis=1)

    def readout(self, params: dict[str, Array], state: Array) -> Array:
        """The output of one step from the packed state, ``y_t = h_t Wy + by``, (B, K)."""
        xp = namespace(state, params["Wy"], params["by"])
        return xp.matmul(state[:, : params["h0"].shape[0]], params["Wy"]) + params["by"]

    def observed_width(self, params: dict[str, Array]) -> int:
        """``H``: the leading columns ``h`` of the packed state ``[h | c]`` that the deltas cover."""
        return int(np.shape(params["h0"])[0])

    def forward(self, params: dict[str, Array], x: Array) -> Array:
        """Unroll the cell: ``y_t = h_t Wy + by`` for t = 0..T-1.

        Args:
            params: ``Wx``, ``Wh``, ``b``, ``Wy``, ``by``, ``h0``, ``c0`` (shapes in the class doc).
            x: inputs, (T, B, D).

        Returns:
            ``y``, (T, B, K), in the dtype of the inputs.
        """
        xp = namespace(x, *(params[k] for k in _PARAM_KEYS))
        B, H = x.shape[1], params["h0"].shape[0]
        h = xp.broadcast_to(params["h0"], (B, H))
        c = xp.broadcast_to(params["c0"], (B, H))
        ys = []
        for t in range(x.shape[0]):
            h, c = self.cell_forward(params, h, c, x[t])
            ys.append(xp.matmul(h, params["Wy"]) + params["by"])
        return xp.stack(ys)

    def cell_cache(
        self, params: dict[str, Array], h_prev: NDArray, c_prev: NDArray, x_t: NDArray
    ) -> LSTMStep:
        """One forward step in numpy that keeps what :meth:`cell_backward` needs.

        Args:
            params: ``Wx`` (D, 4H), ``Wh`` (H, 4H), ``b`` (4H,) are used.
            h_prev: ``h_{t-1}``, (B, H).
            c_prev: ``c_{t-1}``, (B, H).
            x_t: ``x_t``, (B, D).

        Returns:
            The :class:`LSTMStep` record; ``h_t = o * tanh_c`` and ``c_t = f c_prev + i g``.
        """
        Wx, Wh, b = (np.asarray(params[k]) for k in ("Wx", "Wh", "b"))
        H = Wh.shape[0]
        z = x_t @ Wx + h_prev @ Wh + b
        i, f, o = (_sigmoid(np, z[:, k * H : (k + 1) * H]) for k in (0, 1, 3))
        g = np.tanh(z[:, 2 * H : 3 * H])
        return LSTMStep(h_prev, c_prev, x_t, i, f, g, o, np.tanh(f * c_prev + i * g))

    def steps(self, params: dict[str, Array], x: Array) -> list[LSTMStep]:
        """The forward's saved records, one :class:`LSTMStep` per time step (numpy).

        Args:
            params: as in :meth:`forward`.
            x: inputs, (T, B, D).

        Returns:
            A list of T records.
        """
        x = np.asarray(x)
        h0, c0 = np.asarray(params["h0"]), np.asarray(params["c0"])
        B, H = x.shape[1], h0.shape[0]
        h, c = np.broadcast_to(h0, (B, H)), np.broadcast_to(c0, (B, H))
        out = []
        for t in range(x.shape[0]):
            step = self.cell_cache(params, h, c, x[t])
            out.append(step)
            h, c = step.o * step.tanh_c, step.f * step.c_prev + step.i * step.g
        return out

    # ---------------------------------------------------------------------------- backward
    def cell_backward(
        self, params: dict[str, Array], step: LSTMStep, dh_t: NDArray, dc_t: NDArray
    ) -> tuple[dict[str, NDArray], NDArray, NDArray, NDArray]:
        """Backward of one step (numpy).

        Args:
            params: ``Wx`` (D, 4H) and ``Wh`` (H, 4H) are used.
            step: the saved :class:`LSTMStep` of this step.
            dh_t: the total ``∂L/∂h_t`` (output and recurrent paths), (B, H).
            dc_t: the part of ``∂L/∂c_t`` that arrives from step t+1 (``dc_{t+1→t}``), (B, H);
                the path through ``h_t = o ⊙ tanh(c_t)`` is added here.

        Returns:
            ``({"Wx": dWx, "Wh": dWh, "b": db}, dh_prev, dc_prev, dx_t)`` with
            ``dh_prev = dh_{t→t-1}`` (B, H), ``dc_prev = dc_{t→t-1}`` (B, H), ``dx_t`` (B, D).
        """
        s = step
        dc = dh_t * s.o * (1.0 - s.tanh_c * s.tanh_c) + dc_t
        da_i = dc * s.g * s.i * (1.0 - s.i)
        da_f = dc * s.c_prev * s.f * (1.0 - s.f)
        da_g = dc * s.i * (1.0 - s.g * s.g)
        da_o = dh_t * s.tanh_c * s.o * (1.0 - s.o)
        dz = np.concatenate([da_i, da_f, da_g, da_o], axis=1)
        Wx, Wh = np.asarray(params["Wx"]), np.asarray(params["Wh"])
        grads = {"Wx": s.x.T @ dz, "Wh": s.h_prev.T @ dz, "b": dz.sum(axis=0)}
        return grads, dz @ Wh.T, dc * s.f, dz @ Wx.T

    def bptt(
        self, params: dict[str, Array], x: Array, dy: Array
    ) -> tuple[dict[str, NDArray], NDArray, NDArray]:
        """Backpropagation through time, hidden and cell state (BPTT(τ) when ``truncation``).

        Args:
            params: as in :meth:`forward`.
            x: inputs, (T, B, D).
            dy: ``∂L/∂y``, (T, B, K).

        Returns:
            ``(dparams, dx, deltas)``: ``dparams`` keyed and shaped like ``params``; ``dx``
            (T, B, D); ``deltas`` (T, B, H) with ``deltas[t] = ∂L/∂h_t``, the total derivative
            through all later steps (the cell-state gradient is internal; with truncation the
            truncated analogue ``Σ_{t'=t}^{t+τ-1} dh_t^{(t')}`` of the module docstring).
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
        dc_next = np.zeros_like(deltas[0])
        for t in reversed(range(x.shape[0])):
            s = steps[t]
            g["Wy"] += (s.o * s.tanh_c).T @ dy[t]
            g["by"] += dy[t].sum(axis=0)
            dh = dy[t] @ p["Wy"].T + dh_next
            deltas[t] = dh
            cell, dh_next, dc_next, dx[t] = self.cell_backward(p, s, dh, dc_next)
            for k, v in cell.items():
                g[k] += v
        g["h0"] += dh_next.sum(axis=0)
        g["c0"] += dc_next.sum(axis=0)
        dparams = {k: g[k].astype(p[k].dtype, copy=False) for k in _PARAM_KEYS}
        return dparams, dx.astype(x.dtype, copy=False), deltas

    def _truncated_bptt(
        self,
        p: dict[str, NDArray],
        steps: list[LSTMStep],
        dy: NDArray,
        g: dict[str, NDArray],
        dx: NDArray,
        deltas: NDArray,
        tau: int,
    ) -> None:
        """BPTT(τ) into ``g``, ``dx`` and ``deltas`` (in place): each output's error walks back
        through at most τ cell steps, hidden and cell carry together (module docstring)."""
        for t in reversed(range(len(steps))):  # source step: the error of y_t ...
            s = steps[t]
            g["Wy"] += (s.o * s.tanh_c).T @ dy[t]
            g["by"] += dy[t].sum(axis=0)
            dh, dc = dy[t] @ p["Wy"].T, np.zeros_like(deltas[0])
            for k in range(t, max(t - tau, -1), -1):  # ... reaches h_t, c_t .. h_{t-τ+1}, c_{t-τ+1}
                deltas[k] += dh
                cell, dh, dc, dx_k = self.cell_backward(p, steps[k], dh, dc)
                dx[k] += dx_k
                for key, v in cell.items():
                    g[key] += v
                if k == 0:
                    g["h0"] += dh.sum(axis=0)
                    g["c0"] += dc.sum(axis=0)

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
    forget_bias: float = 1.0,
    truncation: int | None = None,
) -> tuple[LSTM, dict[str, NDArray], NDArray]:
    """A small well-conditioned random case ``(layer, params, x)`` (the LSTM is smooth: no kinks).

    Args:
        rng: the only source of randomness.
        dtype: dtype of every parameter and of ``x``.
        T: sequence length (``x.shape[0]``).
        B: batch size (``x.shape[1]``).
        D: input width (``x.shape[2]``, ``Wx.shape[0]``).
        H: hidden width (``Wx`` (D, 4H), ``Wh`` (H, 4H), ``b`` (4H,), ``Wy.shape[0]``, ``h0``,
            ``c0``).
        K: output width (``Wy.shape[1]``, ``by``; ``y`` is (T, B, K)).
        forget_bias: added to the forget-gate block of ``b`` (the usual "remember" init).

        truncation: the layer's ``τ`` (``None`` = full BPTT).

    Returns:
        ``(LSTM(truncation), params, x)`` with ``x`` of shape (T, B, D).
    """
    b = 0.1 * rng.standard_normal(4 * H)
    b[H : 2 * H] += forget_bias
    params = {
        "Wx": rng.standard_normal((D, 4 * H)) / np.sqrt(D),
        "Wh": rng.standard_normal((H, 4 * H)) / np.sqrt(H),
        "b": b,
        "Wy": rng.standard_normal((H, K)) / np.sqrt(H),
        "by": 0.1 * rng.standard_normal(K),
        "h0": 0.5 * rng.standard_normal(H),
        "c0": 0.5 * rng.standard_normal(H),
    }
    x = rng.standard_normal((T, B, D))
    return LSTM(truncation), {k: v.astype(dtype) for k, v in params.items()}, x.astype(dtype)
