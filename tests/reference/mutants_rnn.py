"""Planted-bug variants of the recurrent reference layers (Elman RNN, LSTM, GRU) for mutation tests.

Each mutant subclasses a reference layer and overrides one piece of its backward pass
(``cell_backward``, ``bptt`` or ``backward``) with ONE realistic bug; the forward is untouched, so
numeric and autodiff references agree with each other and disagree with the mutant's backward.

``MUTANTS`` maps a readable bug name to a factory ``factory(rng) -> (layer, params, x)`` (float64,
small shapes) whose gradient is wrong whatever the seed; ``WRONG_LEAVES`` names exactly the leaves
(param keys, or ``"x"``) whose gradient the bug changes.  Measured as max|hand - exact| / max|exact|
per leaf over seeds 0..499, every listed leaf is off by more than 1e-3 (most by far more than
1e-2; the weakest are leaves reached only through the recurrence, e.g. ``c0`` of the LSTM
output-gate mutant, 1.5e-3), and every unlisted leaf is bit-identical to the reference.
Some factories scale a few leaves up (``_scaled``) so that the bug's effect is not tiny.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from reference import gru, lstm, rnn
from reference.gru import GRU, GRUStep
from reference.lstm import LSTM, LSTMStep
from reference.rnn import ElmanRNN

__all__ = ["MUTANTS", "WRONG_LEAVES"]

NDArray = Any
Case = tuple[Any, dict[str, NDArray], NDArray]
_RNN_KEYS = ("V", "U", "W", "b", "c", "h0")


# ------------------------------------------------------------------------------ Elman RNN
class _RnnDUOffByOne(ElmanRNN):
    """dU += s_tᵀ e_t: the state of the current step instead of s_{t-1} (time index off by one)."""

    def cell_backward(self, params: Any, s_prev: Any, x_t: Any, s_t: Any, ds_t: Any) -> Any:
        grads, ds_prev, dx_t = super().cell_backward(params, s_prev, x_t, s_t, ds_t)
        e = ds_t * (1.0 - s_t * s_t)
        grads["U"] = s_t.T @ e  # BUG: s_t, not s_prev
        return grads, ds_prev, dx_t


class _RnnDUTransposed(ElmanRNN):
    """dU = e_tᵀ s_{t-1}: eq. 28's column-notation outer product pasted into row-vector code."""

    def cell_backward(self, params: Any, s_prev: Any, x_t: Any, s_t: Any, ds_t: Any) -> Any:
        grads, ds_prev, dx_t = super().cell_backward(params, s_prev, x_t, s_t, ds_t)
        e = ds_t * (1.0 - s_t * s_t)
        grads["U"] = e.T @ s_prev  # BUG: transposed
        return grads, ds_prev, dx_t


class _RnnDerivativeOfPreactivation(ElmanRNN):
    """tanh' evaluated as 1 - a² on the pre-activation a_t instead of 1 - s_t²."""

    def cell_backward(self, params: Any, s_prev: Any, x_t: Any, s_t: Any, ds_t: Any) -> Any:
        a = x_t @ params["V"] + s_prev @ params["U"] + params["b"]
        e = ds_t * (1.0 - a * a)  # BUG: should be 1 - s_t**2
        grads = {"V": x_t.T @ e, "U": s_prev.T @ e, "b": e.sum(axis=0)}
        return grads, e @ params["U"].T, e @ params["V"].T


class _RnnSigmoidWithTanhDerivative(ElmanRNN):
    """A sigmoid layer whose backward still uses tanh's derivative 1 - s² (copy-paste)."""

    def cell_backward(self, params: Any, s_prev: Any, x_t: Any, s_t: Any, ds_t: Any) -> Any:
        e = ds_t * (1.0 - s_t * s_t)  # BUG: sigmoid' = s (1 - s)
        grads = {"V": x_t.T @ e, "U": s_prev.T @ e, "b": e.sum(axis=0)}
        return grads, e @ params["U"].T, e @ params["V"].T


class _RnnCarryWithoutTranspose(ElmanRNN):
    """ds_{t-1} = e_t U instead of e_t Uᵀ (the recurrent matrix not transposed)."""

    def cell_backward(self, params: Any, s_prev: Any, x_t: Any, s_t: Any, ds_t: Any) -> Any:
        grads, _, dx_t = super().cell_backward(params, s_prev, x_t, s_t, ds_t)
        e = ds_t * (1.0 - s_t * s_t)
        return grads, e @ params["U"], dx_t  # BUG: U, not U.T


class _RnnBiasMeanOverBatch(ElmanRNN):
    """db = mean over the batch of e_t instead of the sum (a 1/B scale on b)."""

    def cell_backward(self, params: Any, s_prev: Any, x_t: Any, s_t: Any, ds_t: Any) -> Any:
        grads, ds_prev, dx_t = super().cell_backward(params, s_prev, x_t, s_t, ds_t)
        grads["b"] = (ds_t * (1.0 - s_t * s_t)).mean(axis=0)  # BUG: sum, not mean
        return grads, ds_prev, dx_t


def _rnn_full_bptt(
    layer: ElmanRNN,
    params: dict[str, NDArray],
    x: NDArray,
    dy: NDArray,
    *,
    carry: bool = True,
    every_output: bool = True,
    dx0_from_state: bool = False,
) -> tuple[dict[str, NDArray], NDArray, NDArray]:
    """The reference full-BPTT loop, with the switches the bptt-level mutants flip (one each)."""
    p = {k: np.asarray(params[k]) for k in _RNN_KEYS}
    x, dy = np.asarray(x), np.asarray(dy)
    S = layer.states(p, x)
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx, deltas = np.zeros_like(x), np.zeros_like(S[1:])
    ds_prev = np.zeros_like(S[0])
    T = x.shape[0]
    for t in reversed(range(T)):
        g["W"] += S[t + 1].T @ dy[t]
        g["c"] += dy[t].sum(axis=0)
        out = dy[t] @ p["W"].T if (every_output or t == T - 1) else np.zeros_like(ds_prev)
        ds = out + ds_prev if carry else out
        deltas[t] = ds
        cell, ds_prev, dx[t] = layer.cell_backward(p, S[t], x[t], S[t + 1], ds)
        if dx0_from_state and t == 0:
            dx[0] = ds @ p["V"].T
        for k, v in cell.items():
            g[k] += v
    g["h0"] += ds_prev.sum(axis=0)
    return g, dx, deltas


class _RnnNoRecurrentCarry(ElmanRNN):
    """ds_t = dy_t Wᵀ only: the carry e_{t+1} Uᵀ from the later step is never added."""

    def bptt(self, params: Any, x: Any, dy: Any) -> Any:
        return _rnn_full_bptt(self, params, x, dy, carry=False)  # BUG


class _RnnLastOutputOnly(ElmanRNN):
    """Eq. 19 read literally: only the last output's error is injected and propagated back."""

    def bptt(self, params: Any, x: Any, dy: Any) -> Any:
        return _rnn_full_bptt(self, params, x, dy, every_output=False)  # BUG


class _RnnDx0FromState(ElmanRNN):
    """The special-cased first step computes dx_0 = ds_0 Vᵀ, skipping f'(a_0)."""

    def bptt(self, params: Any, x: Any, dy: Any) -> Any:
        return _rnn_full_bptt(self, params, x, dy, dx0_from_state=True)  # BUG


class _RnnDh0Forgotten(ElmanRNN):
    """The initial state is treated as a constant: ∂L/∂h0 is left at zero."""

    def backward(self, params: Any, x: Any, dy: Any) -> Any:
        dparams, dx = super().backward(params, x, dy)
        dparams["h0"] = np.zeros_like(dparams["h0"])  # BUG
        return dparams, dx


class _RnnDWSignFlip(ElmanRNN):
    """dW with the document's error sign δ = d - y = -∂C/∂net (eq. 8) mixed into ∂L/∂W."""

    def backward(self, params: Any, x: Any, dy: Any) -> Any:
        dparams, dx = super().backward(params, x, dy)
        dparams["W"] = -dparams["W"]  # BUG
        return dparams, dx


class _RnnTruncationOneShort(ElmanRNN):
    """BPTT(τ) that walks τ-1 cell steps back (stops at s_{t-τ+2}) instead of τ.

    Built with τ = T, where the correct BPTT(τ) equals full BPTT, so the bug is visible against
    the exact gradient: the longest paths (y_{T-1} -> s_0 -> h0) are dropped.
    """

    def bptt(self, params: Any, x: Any, dy: Any) -> Any:
        assert self.truncation is not None
        p = {k: np.asarray(params[k]) for k in _RNN_KEYS}
        x, dy = np.asarray(x), np.asarray(dy)
        S = self.states(p, x)
        g = {k: np.zeros_like(v) for k, v in p.items()}
        dx, deltas = np.zeros_like(x), np.zeros_like(S[1:])
        for t in reversed(range(x.shape[0])):
            g["W"] += S[t + 1].T @ dy[t]
            g["c"] += dy[t].sum(axis=0)
            ds = dy[t] @ p["W"].T
            for k in range(t, max(t - self.truncation + 1, -1), -1):  # BUG: + 1
                deltas[k] += ds
                cell, ds, dx_k = self.cell_backward(p, S[k], x[k], S[k + 1], ds)
                dx[k] += dx_k
                for name, v in cell.items():
                    g[name] += v
                if k == 0:
                    g["h0"] += ds.sum(axis=0)
        return g, dx, deltas


# ----------------------------------------------------------------------------------- LSTM
def _lstm_cell(params: Any, s: LSTMStep, dh_t: Any, dc: Any, da: dict[str, Any]) -> Any:
    """Assemble the reference cell backward from (possibly mutated) gate derivatives ``da``."""
    dz = np.concatenate([da["i"], da["f"], da["g"], da["o"]], axis=1)
    grads = {"Wx": s.x.T @ dz, "Wh": s.h_prev.T @ dz, "b": dz.sum(axis=0)}
    return grads, dz @ params["Wh"].T, dc * s.f, dz @ params["Wx"].T


def _lstm_gate_grads(s: LSTMStep, dh_t: Any, dc: Any) -> dict[str, Any]:
    """The reference gate pre-activation derivatives given the total dc."""
    return {
        "i": dc * s.g * s.i * (1.0 - s.i),
        "f": dc * s.c_prev * s.f * (1.0 - s.f),
        "g": dc * s.i * (1.0 - s.g * s.g),
        "o": dh_t * s.tanh_c * s.o * (1.0 - s.o),
    }


class _LstmForgetUsesCt(LSTM):
    """Forget-gate gradient da_f = dc ⊙ c_t ⊙ f(1-f): c_t instead of c_{t-1}."""

    def cell_backward(self, params: Any, step: LSTMStep, dh_t: Any, dc_t: Any) -> Any:
        s = step
        dc = dh_t * s.o * (1.0 - s.tanh_c**2) + dc_t
        da = _lstm_gate_grads(s, dh_t, dc)
        c_t = s.f * s.c_prev + s.i * s.g
        da["f"] = dc * c_t * s.f * (1.0 - s.f)  # BUG: c_t, not c_{t-1}
        return _lstm_cell(params, s, dh_t, dc, da)


class _LstmNoCellCarry(LSTM):
    """The cell-state carry dc_{t-1} += dc_t ⊙ f_t is missing (only the path through h)."""

    def cell_backward(self, params: Any, step: LSTMStep, dh_t: Any, dc_t: Any) -> Any:
        grads, dh_prev, _, dx_t = super().cell_backward(params, step, dh_t, dc_t)
        return grads, dh_prev, np.zeros_like(dh_prev), dx_t  # BUG


class _LstmOutputGateUsesCt(LSTM):
    """Output-gate derivative da_o = dh ⊙ c_t ⊙ o(1-o): c_t instead of tanh(c_t)."""

    def cell_backward(self, params: Any, step: LSTMStep, dh_t: Any, dc_t: Any) -> Any:
        s = step
        dc = dh_t * s.o * (1.0 - s.tanh_c**2) + dc_t
        da = _lstm_gate_grads(s, dh_t, dc)
        c_t = s.f * s.c_prev + s.i * s.g
        da["o"] = dh_t * c_t * s.o * (1.0 - s.o)  # BUG: tanh(c_t)
        return _lstm_cell(params, s, dh_t, dc, da)


class _LstmMissingTanhDerivative(LSTM):
    """dc = dh ⊙ o + dc_next: the factor 1 - tanh²(c_t) on the h -> c path is dropped."""

    def cell_backward(self, params: Any, step: LSTMStep, dh_t: Any, dc_t: Any) -> Any:
        s = step
        dc = dh_t * s.o + dc_t  # BUG
        return _lstm_cell(params, s, dh_t, dc, _lstm_gate_grads(s, dh_t, dc))


class _LstmGateOrderMismatch(LSTM):
    """The backward stacks the gate derivatives as i, f, o, g while the forward uses i, f, g, o."""

    def cell_backward(self, params: Any, step: LSTMStep, dh_t: Any, dc_t: Any) -> Any:
        s = step
        dc = dh_t * s.o * (1.0 - s.tanh_c**2) + dc_t
        da = _lstm_gate_grads(s, dh_t, dc)
        da["g"], da["o"] = da["o"], da["g"]  # BUG: blocks 2 and 3 swapped
        return _lstm_cell(params, s, dh_t, dc, da)


class _LstmDWhOffByOne(LSTM):
    """dWh += h_tᵀ dz_t: the current hidden state instead of h_{t-1} (time off by one)."""

    def cell_backward(self, params: Any, step: LSTMStep, dh_t: Any, dc_t: Any) -> Any:
        grads, dh_prev, dc_prev, dx_t = super().cell_backward(params, step, dh_t, dc_t)
        s = step
        dc = dh_t * s.o * (1.0 - s.tanh_c**2) + dc_t
        da = _lstm_gate_grads(s, dh_t, dc)
        dz = np.concatenate([da["i"], da["f"], da["g"], da["o"]], axis=1)
        grads["Wh"] = (s.o * s.tanh_c).T @ dz  # BUG: h_t, not h_{t-1}
        return grads, dh_prev, dc_prev, dx_t


# ------------------------------------------------------------------------------------ GRU
def _gru_cell(p: Any, s: GRUStep, dh_t: Any, bug: str) -> Any:
    """The reference GRU cell backward with one named bug switched on ("" = none)."""
    da_n = dh_t * (1.0 - s.z) * (1.0 - s.n * s.n)
    h_minus_n = (s.n - s.h_prev) if bug == "z_sign" else (s.h_prev - s.n)
    da_z = dh_t * h_minus_n * s.z * (1.0 - s.z)
    drh = da_n @ p["Un"].T
    drh_r = da_n if bug == "reset_no_Un" else drh
    da_r = drh_r * s.h_prev * s.r * (1.0 - s.r)
    direct = 0.0 if bug == "no_direct_carry" else dh_t * s.z
    dh_prev = direct + drh * s.r + da_z @ p["Uz"].T + da_r @ p["Ur"].T
    dx = da_z @ p["Wz"].T + da_r @ p["Wr"].T + da_n @ p["Wn"].T
    un_in = s.h_prev if bug == "dUn_h_prev" else s.r * s.h_prev
    grads = {
        "Wz": s.x.T @ da_z, "Uz": s.h_prev.T @ da_z, "bz": da_z.sum(axis=0),
        "Wr": s.x.T @ da_r, "Ur": s.h_prev.T @ da_r, "br": da_r.sum(axis=0),
        "Wn": s.x.T @ da_n, "Un": un_in.T @ da_n, "bn": da_n.sum(axis=0),
    }  # fmt: skip
    return grads, dh_prev, dx


class _GruZSignSwapped(GRU):
    """The backward assumes h_t = z ⊙ n + (1-z) ⊙ h_{t-1}: da_z uses (n - h_{t-1})."""

    def cell_backward(self, params: Any, step: GRUStep, dh_t: Any) -> Any:
        return _gru_cell(params, step, dh_t, "z_sign")


class _GruResetMissingUn(GRU):
    """Reset-gate gradient da_r = da_n ⊙ h_{t-1} ⊙ r(1-r): the product with Unᵀ is missing."""

    def cell_backward(self, params: Any, step: GRUStep, dh_t: Any) -> Any:
        return _gru_cell(params, step, dh_t, "reset_no_Un")


class _GruDUnUsesHprev(GRU):
    """dUn += h_{t-1}ᵀ da_n: the reset gate forgotten in Un's input (r ⊙ h_{t-1})."""

    def cell_backward(self, params: Any, step: GRUStep, dh_t: Any) -> Any:
        return _gru_cell(params, step, dh_t, "dUn_h_prev")


class _GruNoDirectCarry(GRU):
    """dh_{t-1} misses the direct path dh_t ⊙ z (only the paths through the gates)."""

    def cell_backward(self, params: Any, step: GRUStep, dh_t: Any) -> Any:
        return _gru_cell(params, step, dh_t, "no_direct_carry")


# -------------------------------------------------------------------------------- tables
def _rnn(cls: type[ElmanRNN], **kw: Any) -> Callable[[np.random.Generator], Case]:
    def factory(rng: np.random.Generator) -> Case:
        base, params, x = rnn.make_case(rng, **kw)
        return cls(activation=base.activation, truncation=base.truncation), params, x

    return factory


def _scaled(params: dict[str, NDArray], x: NDArray, scale: dict[str, float]) -> Case:
    """Multiply some leaves (``"x"`` or param keys) so that a bug's effect is not tiny."""
    params = {k: v * scale.get(k, 1.0) for k, v in params.items()}
    return None, params, x * scale.get("x", 1.0)


def _lstm(cls: type[LSTM], **scale: float) -> Callable[[np.random.Generator], Case]:
    def factory(rng: np.random.Generator) -> Case:
        _, params, x = _scaled(*lstm.make_case(rng)[1:], scale)
        return cls(), params, x

    return factory


def _gru(cls: type[GRU], **scale: float) -> Callable[[np.random.Generator], Case]:
    def factory(rng: np.random.Generator) -> Case:
        _, params, x = _scaled(*gru.make_case(rng)[1:], scale)
        return cls(), params, x

    return factory


_RNN_REC = {"V", "U", "b", "x", "h0"}  # everything upstream of the recurrence
_LSTM_REC = {"Wx", "Wh", "b", "x", "h0", "c0"}
_GRU_REC = {"Wz", "Wr", "Wn", "Uz", "Ur", "Un", "bz", "br", "bn", "x", "h0"}

MUTANTS: dict[str, Callable[[np.random.Generator], Case]] = {
    "rnn: dU uses s_t instead of s_{t-1} (off by one)": _rnn(_RnnDUOffByOne),
    "rnn: dU transposed (column-notation eq. 28)": _rnn(_RnnDUTransposed),
    "rnn: tanh' from the pre-activation (1 - a^2)": _rnn(_RnnDerivativeOfPreactivation),
    "rnn: sigmoid layer with tanh' in the backward": _rnn(
        _RnnSigmoidWithTanhDerivative, activation="sigmoid"
    ),
    "rnn: recurrent carry uses U instead of U^T": _rnn(_RnnCarryWithoutTranspose),
    "rnn: db averaged over the batch": _rnn(_RnnBiasMeanOverBatch),
    "rnn: recurrent carry missing": _rnn(_RnnNoRecurrentCarry),
    "rnn: only the last output's error propagated": _rnn(_RnnLastOutputOnly),
    "rnn: dx at step 0 skips f'": _rnn(_RnnDx0FromState),
    "rnn: dh0 forgotten (zero)": _rnn(_RnnDh0Forgotten),
    "rnn: dW sign flipped": _rnn(_RnnDWSignFlip),
    "rnn: truncated BPTT(T) stops one step short": _rnn(_RnnTruncationOneShort, truncation=3, T=3),
    # a stronger recurrence (Wh x 3) carries the error to h0 and c0:
    "lstm: forget-gate gradient uses c_t not c_{t-1}": _lstm(_LstmForgetUsesCt, Wh=3.0),
    "lstm: cell-state carry dc*f missing": _lstm(_LstmNoCellCarry),
    # a large cell state, where c_t and tanh(c_t) differ:
    "lstm: output-gate derivative uses c_t not tanh(c_t)": _lstm(
        _LstmOutputGateUsesCt, c0=3.0, x=2.0, Wh=3.0
    ),
    "lstm: tanh'(c_t) dropped on the h->c path": _lstm(_LstmMissingTanhDerivative),
    "lstm: gate order i,f,o,g in the backward": _lstm(_LstmGateOrderMismatch),
    "lstm: dWh uses h_t instead of h_{t-1} (off by one)": _lstm(_LstmDWhOffByOne),
    "gru: z-gate sign convention swapped": _gru(_GruZSignSwapped, Un=2.0, Ur=2.0),
    "gru: reset-gate gradient misses Un": _gru(_GruResetMissingUn, Un=2.0, Ur=2.0),
    "gru: dUn uses h_{t-1} not r*h_{t-1}": _gru(_GruDUnUsesHprev),
    "gru: direct carry dh*z missing": _gru(_GruNoDirectCarry),
}

WRONG_LEAVES: dict[str, set[str]] = {
    "rnn: dU uses s_t instead of s_{t-1} (off by one)": {"U"},
    "rnn: dU transposed (column-notation eq. 28)": {"U"},
    "rnn: tanh' from the pre-activation (1 - a^2)": _RNN_REC,
    "rnn: sigmoid layer with tanh' in the backward": _RNN_REC,
    "rnn: recurrent carry uses U instead of U^T": _RNN_REC,
    "rnn: db averaged over the batch": {"b"},
    "rnn: recurrent carry missing": _RNN_REC,
    "rnn: only the last output's error propagated": _RNN_REC,
    "rnn: dx at step 0 skips f'": {"x"},
    "rnn: dh0 forgotten (zero)": {"h0"},
    "rnn: dW sign flipped": {"W"},
    "rnn: truncated BPTT(T) stops one step short": _RNN_REC,
    "lstm: forget-gate gradient uses c_t not c_{t-1}": _LSTM_REC,
    "lstm: cell-state carry dc*f missing": _LSTM_REC,
    "lstm: output-gate derivative uses c_t not tanh(c_t)": _LSTM_REC,
    "lstm: tanh'(c_t) dropped on the h->c path": _LSTM_REC,
    "lstm: gate order i,f,o,g in the backward": _LSTM_REC,
    "lstm: dWh uses h_t instead of h_{t-1} (off by one)": {"Wh"},
    "gru: z-gate sign convention swapped": _GRU_REC,
    "gru: reset-gate gradient misses Un": _GRU_REC,
    "gru: dUn uses h_{t-1} not r*h_{t-1}": {"Un"},
    "gru: direct carry dh*z missing": _GRU_REC,
}
