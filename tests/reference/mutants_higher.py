"""Planted bugs in the zoo's forward-mode (JVP) and second-order (HVP) references.

Each mutant subclasses a reference layer (or an activation it is built with) and overrides ONE
hand-derived product — ``jvp`` / ``rtrl`` (forward mode) or ``sse_hvp`` / ``xent_hvp`` (the
R-operator) — with one realistic bug; the forward and the losses are untouched, so finite
differences and JAX agree with each other and disagree with the mutant.  The class docstring says
what is wrong and which leaves should be blamed.

:data:`MUTANTS_HIGHER` is a list of plain dicts::

    {"name": str,                  readable, unique
     "kind": "jvp" | "hvp",
     "family": "dense" | "mlp" | "rnn",
     "expect_bad": [leaf names],   the leaves the bug makes wrong (the others stay exact)
     "doc": str,                   the mutant's docstring
     "make": rng -> problem}       a small float64 problem, below

A problem is a dict ready for the engine (``gc.check_jvp`` / ``gc.check_hvp``)::

    kind "jvp":  {"fun": fun(primals) -> y,                written with xp (JAX-traceable)
                  "jvp": jvp(primals, tangents) -> ẏ,      the mutant's
                  "reference": jvp(primals, tangents),     the correct one (a negative control)
                  "params": primals, "args": ()}
                 gc.check_jvp(p["fun"], p["jvp"], p["params"], *p["args"])

    kind "hvp":  {"fun": loss(params, *args) -> scalar,    written with xp (JAX-traceable)
                  "hvp": hvp(params, v, *args) -> H v,     the mutant's
                  "reference": hvp(params, v, *args),      the correct one
                  "grad": grad(params, *args),             the correct hand gradient
                  "params": params, "args": (x, target)}
                 gc.check_hvp(p["fun"], p["hvp"], p["params"], *p["args"], grad=p["grad"])

For a JVP the primal tree is ``{**params, "x": x}``: the input is a leaf too (named ``"x"``, as
``check_layer`` names it), so a bug in the input-tangent term has a leaf to blame.  Leaf names are
the parameter keys.  ``expect_bad`` is exact for the built case: every listed leaf is off by far
more than any tolerance (tests/reference/test_forward_mode.py and test_second_order.py check it
against JAX, per leaf, on several seeds) and every other leaf agrees to round-off.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np
import numpy.typing as npt

from reference import dense, mlp, rnn
from reference.activations import Activation, Tanh, get_activation
from reference.dense import Dense, check_tangents
from reference.losses import SSE, Loss, SoftmaxCrossEntropy
from reference.mlp import MLP, n_layers
from reference.rnn import ElmanRNN

__all__ = ["MUTANTS_HIGHER", "jvp_problem"]

NDArray = npt.NDArray[Any]
Params = dict[str, Any]
Problem = dict[str, Any]


def _rebuild(cls: type, layer: Any) -> Any:
    """The mutant class ``cls`` with the fields of the reference ``layer``."""
    return cls(**{f.name: getattr(layer, f.name) for f in fields(layer)})


def _split(primals: Params) -> tuple[Params, Any]:
    return {k: v for k, v in primals.items() if k != "x"}, primals["x"]


def jvp_problem(reference: Any, mutant: Any, params: Params, x: Any) -> Problem:
    """A JVP problem over the primal tree ``{**params, "x": x}`` (see the module docstring)."""

    def fun(primals: Params) -> Any:
        p, xx = _split(primals)
        return reference.forward(p, xx)

    def make_jvp(layer: Any) -> Callable[[Params, Params], Any]:
        def jvp(primals: Params, tangents: Params) -> Any:
            p, xx = _split(primals)
            dp, dx = _split(tangents)
            return layer.jvp(p, xx, dp, dx)

        jvp.__name__ = f"{type(layer).__name__}.jvp"
        return jvp

    return {"fun": fun, "jvp": make_jvp(mutant), "reference": make_jvp(reference),
            "params": {**params, "x": x}, "args": ()}


def _hvp_problem(reference: Any, mutant: Any, params: Params, x: Any, target: Any,
                 loss: str) -> Problem:
    """An HVP problem for ``loss`` in ``("sse", "xent")`` (see the module docstring)."""
    return {"fun": getattr(reference, f"{loss}_loss"), "hvp": getattr(mutant, f"{loss}_hvp"),
            "reference": getattr(reference, f"{loss}_hvp"), "grad": getattr(reference, f"{loss}_grad"),
            "params": params, "args": (x, target)}


# ============================================================================ forward mode
# ------------------------------------------------------------------------------- Dense


def _dense_jvp(layer: Dense, params: Params, x: Any, dparams: Params, dx: Any, *,
               input_tangent: bool = True, transpose_dW: bool = False, transpose_W: bool = False,
               derivative: bool = True, softmax_diagonal: bool = False) -> NDArray:
    """Dense.jvp with one knob turned (all defaults: the correct JVP)."""
    x, W = np.asarray(x), np.asarray(params["W"])
    t = check_tangents(params, dparams)
    net, y = layer.forward_cache(params, x)
    dnet = x @ (t["W"].T if transpose_dW else t["W"]) + t["b"]
    if dx is not None and input_tangent:
        dnet = dnet + np.asarray(dx) @ (W.T if transpose_W else W)
    if not derivative:
        return np.asarray(dnet)
    if softmax_diagonal:
        return np.asarray(y * (1 - y) * dnet)
    return get_activation(layer.activation).jvp(net, y, dnet)


class _DenseJvpNoInputTangent(Dense):
    """ṅet = x Ẇ + ḃ: the input-tangent term ẋ W is forgotten.  Blame: x."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _dense_jvp(self, params, x, dparams, dx, input_tangent=False)  # BUG


class _DenseJvpTransposedWeightTangent(Dense):
    """ṅet = ẋ W + x Ẇᵀ + ḃ (square W): the weight tangent transposed.  Blame: W."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _dense_jvp(self, params, x, dparams, dx, transpose_dW=True)  # BUG


class _DenseJvpTransposedW(Dense):
    """ṅet = ẋ Wᵀ + x Ẇ + ḃ (square W): the backward's ``delta Wᵀ`` pasted into the forward.
    Blame: x."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _dense_jvp(self, params, x, dparams, dx, transpose_W=True)  # BUG


class _DenseJvpNoDerivative(Dense):
    """ẏ = ṅet: the activation's g'(net) is never applied (a tanh layer).  Blame: W, b, x."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _dense_jvp(self, params, x, dparams, dx, derivative=False)  # BUG


class _DenseJvpSoftmaxDiagonal(Dense):
    """A softmax layer whose JVP uses only the Jacobian's diagonal, ẏ = y(1 - y) ⊙ ṅet (the
    -y yᵀ part is dropped).  Blame: W, b, x."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _dense_jvp(self, params, x, dparams, dx, softmax_diagonal=True)  # BUG


# --------------------------------------------------------------------------------- MLP


def _mlp_jvp(layer: MLP, params: Params, x: Any, dparams: Params, dx: Any, *,
             carry: bool = True, dW_from_output: bool = False, output_derivative: bool = True
             ) -> NDArray:
    """MLP.jvp with one knob turned (all defaults: the correct JVP)."""
    fs = layer.activations(n_layers(params))
    t = check_tangents(params, dparams)
    a, net = layer.forward_cache(params, x)
    da = np.zeros_like(a[0]) if dx is None else np.asarray(dx)
    for i, f in enumerate(fs):
        W = np.asarray(params[f"W{i}"])
        carried = da @ W if (carry or i == 0) else 0.0
        source = f.forward(a[i] @ W + params[f"b{i}"]) if dW_from_output else a[i]
        dnet = carried + source @ t[f"W{i}"] + t[f"b{i}"]
        da = dnet if (i == len(fs) - 1 and not output_derivative) else f.jvp(net[i], a[i + 1], dnet)
    return np.asarray(da)


class _MLPJvpNoCarry(MLP):
    """ṅet_i = a_i Ẇ_i + ḃ_i for i ≥ 1: the tangent ȧ_i W_i of the layer below is not carried
    up.  Blame: every leaf below the last layer (W0, b0, x for two layers)."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _mlp_jvp(self, params, x, dparams, dx, carry=False)  # BUG


class _MLPJvpWeightTangentTimesOutput(MLP):
    """ṅet_i = ȧ_i W_i + a_{i+1} Ẇ_i + ḃ_i (square widths): the weight tangent multiplied by the
    layer's output instead of its input.  Blame: every W{i}."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _mlp_jvp(self, params, x, dparams, dx, dW_from_output=True)  # BUG


class _MLPJvpNoOutputDerivative(MLP):
    """ẏ = ṅet_{L-1}: the output activation's g' (a sigmoid) is skipped.  Blame: every leaf."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _mlp_jvp(self, params, x, dparams, dx, output_derivative=False)  # BUG


# --------------------------------------------------------------------------- Elman RNN
_RNN_KEYS = ("V", "U", "W", "b", "c", "h0")


def _tanh_prime(s: NDArray) -> NDArray:
    return np.asarray(1 - s * s)


def _sigmoid_prime(s: NDArray) -> NDArray:
    return np.asarray(s * (1 - s))


def _relu_prime(s: NDArray) -> NDArray:
    return (s > 0).astype(s.dtype)


def _rtrl(layer: ElmanRNN, params: Params, x: Any, dparams: Params, dx: Any, *,
          prev_state: str = "prev", carry: str = "U", input_tangent: bool = True,
          h0_tangent: bool = True, readout_state: str = "current") -> NDArray:
    """ElmanRNN.jvp (RTRL along one tangent) with one knob turned (defaults: correct)."""
    p = {k: np.asarray(params[k]) for k in _RNN_KEYS}
    t = check_tangents(p, dparams)
    x = np.asarray(x)
    S = layer.states(p, x)
    T = x.shape[0]
    ds = np.broadcast_to(t["h0"] if h0_tangent else np.zeros_like(t["h0"]), S[0].shape)
    dy = np.zeros((T, x.shape[1], p["W"].shape[1]))
    s_prime = {"tanh": _tanh_prime, "sigmoid": _sigmoid_prime, "relu": _relu_prime}[layer.activation]
    for k in range(T):
        s_prev = S[k + 1] if prev_state == "current" else S[k]
        rec = {"U": ds @ p["U"], "U.T": ds @ p["U"].T, "none": 0.0}[carry]
        da = x[k] @ t["V"] + rec + s_prev @ t["U"] + t["b"]
        if dx is not None and input_tangent:
            da = da + np.asarray(dx)[k] @ p["V"]
        ds = s_prime(S[k + 1]) * da
        s_out = S[k] if readout_state == "previous" else S[k + 1]
        dy[k] = ds @ p["W"] + s_out @ t["W"] + t["c"]
    return dy


class _RnnRtrlCurrentStateForPrevious(ElmanRNN):
    """ȧ_t = … + s_t U̇ …: the explicit recurrent-weight term uses s_t for s_{t-1} (a time
    index off by one).  Blame: U."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _rtrl(self, params, x, dparams, dx, prev_state="current")  # BUG


class _RnnRtrlNoCarry(ElmanRNN):
    """ȧ_t = ẋ_t V + x_t V̇ + s_{t-1} U̇ + ḃ: the recurrent carry ṡ_{t-1} U of the sensitivity is
    dropped (each step's tangent starts afresh).  Blame: V, U, b, h0, x (W and c are one-step)."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _rtrl(self, params, x, dparams, dx, carry="none")  # BUG


class _RnnRtrlCarryTransposed(ElmanRNN):
    """The sensitivity carried as ṡ_{t-1} Uᵀ (the backward's transpose) instead of ṡ_{t-1} U.
    Blame: V, U, b, h0, x."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _rtrl(self, params, x, dparams, dx, carry="U.T")  # BUG


class _RnnRtrlNoInputTangent(ElmanRNN):
    """The input tangent ẋ_t V is forgotten in ȧ_t.  Blame: x."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _rtrl(self, params, x, dparams, dx, input_tangent=False)  # BUG


class _RnnRtrlH0Constant(ElmanRNN):
    """ṡ_{-1} = 0: the initial state is treated as a constant, its tangent ḣ0 ignored.
    Blame: h0."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _rtrl(self, params, x, dparams, dx, h0_tangent=False)  # BUG


class _RnnRtrlReadoutFromPreviousState(ElmanRNN):
    """ẏ_t = ṡ_t W + s_{t-1} Ẇ + ċ: the read-out weight tangent multiplied by the previous
    state.  Blame: W."""

    def jvp(self, params: Params, x: Any, dparams: Params, dx: Any = None) -> NDArray:
        return _rtrl(self, params, x, dparams, dx, readout_state="previous")  # BUG


# ============================================================================ second order
# ------------------------------------------------------------------------------- Dense


class _DenseHvpNoSecondDerivative(Dense):
    """R{delta} = R{dy} ⊙ g'(net): the dy ⊙ g''(net) ⊙ R{net} term (R{g'}) is dropped, which
    makes it the Gauss–Newton product Jᵀ J v of SSE passed off as the Hessian (tanh layer, a
    residual y - t ≠ 0).  Blame: W, b."""

    def sse_hvp(self, params: Params, v: Params, x: Any, target: Any) -> Params:
        return self.sse_gnvp(params, v, x, target)  # BUG


class _TanhSecondDerivativeSignFlipped(Tanh):
    """tanh'' = +2y(1 - y²): the sign of the second derivative flipped."""

    def second_derivative(self, x: NDArray, y: NDArray) -> NDArray:
        return np.asarray(2 * y * (1 - y * y))  # BUG: -2y(1 - y²)


class _DenseHvpSignFlippedCurvature(Dense):
    """A tanh layer whose R-operator uses tanh'' = +2y(1 - y²) (sign flipped), so the
    dy ⊙ g'' ⊙ R{net} term enters with the wrong sign.  Blame: W, b."""

    def sse_hvp(self, params: Params, v: Params, x: Any, target: Any) -> Params:
        return Dense(_TanhSecondDerivativeSignFlipped()).sse_hvp(params, v, x, target)  # BUG


class _DenseHvpTwice(Dense):
    """H v of Σ (y - t)² instead of ½ Σ (y - t)²: dy = 2(y - t) and R{dy} = 2 R{y}, a factor
    2 on the whole product.  Blame: W, b."""

    def sse_hvp(self, params: Params, v: Params, x: Any, target: Any) -> Params:
        hv = super().sse_hvp(params, v, x, target)
        return {k: 2 * h for k, h in hv.items()}  # BUG


# --------------------------------------------------------------------------------- MLP


def _mlp_hvp(layer: MLP, params: Params, v: Params, x: Any, d: Any, loss: Loss, *,
             second_derivative: bool = True, weight_tangent: bool = True,
             activation_tangent: bool = True, softmax_diagonal: bool = False,
             rdy_scale: float = 1.0) -> Params:
    """The MLP R-operator (MLP._loss_hvp) with one knob turned (defaults: correct)."""
    fs = layer.activations(n_layers(params))
    t = check_tangents(params, v, "v")
    a, net, ra, rnet = layer.jvp_with_tangents(params, np.asarray(x), t)
    W = [np.asarray(params[f"W{i}"]) for i in range(len(fs))]
    g = loss.backward(a[-1], d)
    if softmax_diagonal:
        p = get_activation("softmax").forward(a[-1])
        rg = p * ra[-1] / a[-1].shape[0]
    else:
        rg = rdy_scale * loss.hvp(a[-1], d, ra[-1])
    out: Params = {}
    for i in reversed(range(len(fs))):
        f: Activation = fs[i]
        delta = f.backward(net[i], a[i + 1], g)
        if second_derivative:
            r_delta = f.backward_jvp(net[i], a[i + 1], g, rnet[i], rg)
        else:
            r_delta = f.backward(net[i], a[i + 1], rg)
        out[f"W{i}"] = (ra[i].T @ delta if activation_tangent else 0.0) + a[i].T @ r_delta
        out[f"b{i}"] = r_delta.sum(axis=0)
        g, rg = delta @ W[i].T, r_delta @ W[i].T + (delta @ t[f"W{i}"].T if weight_tangent else 0.0)
    return {k: out[k] for k in params}


class _MLPHvpNoSecondDerivative(MLP):
    """R{delta_i} = R{g_{i+1}} ⊙ f_i'(net_i): the g_{i+1} ⊙ f_i'' ⊙ R{net_i} term dropped in every
    layer (tanh hidden, identity output: only the hidden layer has f'' ≠ 0).  Not the Gauss–Newton
    product (the coupling terms stay).  Blame: W0, b0."""

    def sse_hvp(self, params: Params, v: Params, x: Any, target: Any) -> Params:
        return _mlp_hvp(self, params, v, x, target, SSE(), second_derivative=False)  # BUG


class _MLPHvpNoWeightTangentInBackward(MLP):
    """R{g_i} = R{delta_i} W_iᵀ: the delta_i V_Wiᵀ term of the R-operator backward (the weight's
    own direction) is dropped.  Three layers.  Blame: W0, b0, W1, b1 (the layers below the top)."""

    def sse_hvp(self, params: Params, v: Params, x: Any, target: Any) -> Params:
        return _mlp_hvp(self, params, v, x, target, SSE(), weight_tangent=False)  # BUG


class _MLPHvpNoActivationTangentInDW(MLP):
    """(H v)_{W_i} = a_iᵀ R{delta_i}: the R{a_i}ᵀ delta_i term dropped.  Three layers; R{a_0} = 0
    so W0 is unaffected.  Blame: W1, W2."""

    def sse_hvp(self, params: Params, v: Params, x: Any, target: Any) -> Params:
        return _mlp_hvp(self, params, v, x, target, SSE(), activation_tangent=False)  # BUG


class _MLPXentGaussNewtonAsHessian(MLP):
    """xent_hvp returns the Gauss–Newton product Jᵀ H_ℓ J v, which drops Σ ∂ℓ/∂y ∂²y/∂θ².  Two
    layers (tanh hidden, identity output): y = f(x W0 + b0) W1 + b1 is linear in b1 and W1 alone,
    so the b1 row is exact.  Blame: W0, b0, W1."""

    def xent_hvp(self, params: Params, v: Params, x: Any, labels: Any) -> Params:
        return self.xent_gnvp(params, v, x, labels)  # BUG


class _MLPXentDiagonalSoftmaxHessian(MLP):
    """R{dy} = p ⊙ R{y} / B: the loss Hessian taken as diag(p), the -p pᵀ part dropped.
    Blame: every leaf."""

    def xent_hvp(self, params: Params, v: Params, x: Any, labels: Any) -> Params:
        return _mlp_hvp(self, params, v, x, labels, SoftmaxCrossEntropy("mean"),
                        softmax_diagonal=True)  # BUG


class _MLPXentRdyNotAveraged(MLP):
    """The mean's 1/B applied to dy but not to R{dy} (B = 3): the Gauss–Newton part is 3 times too
    large.  Blame: every leaf."""

    def xent_hvp(self, params: Params, v: Params, x: Any, labels: Any) -> Params:
        B = np.shape(x)[0]
        return _mlp_hvp(self, params, v, x, labels, SoftmaxCrossEntropy("mean"),
                        rdy_scale=float(B))  # BUG


# ============================================================================ the table


def _dense_jvp_case(cls: type, **kwargs: Any) -> Callable[[np.random.Generator], Problem]:
    def make(rng: np.random.Generator) -> Problem:
        layer, params, x = dense.make_case(rng, **kwargs)
        return jvp_problem(layer, _rebuild(cls, layer), params, x)

    return make


def _mlp_jvp_case(cls: type, **kwargs: Any) -> Callable[[np.random.Generator], Problem]:
    def make(rng: np.random.Generator) -> Problem:
        layer, params, x = mlp.make_case(rng, **kwargs)
        return jvp_problem(layer, _rebuild(cls, layer), params, x)

    return make


def _rnn_jvp_case(cls: type, **kwargs: Any) -> Callable[[np.random.Generator], Problem]:
    def make(rng: np.random.Generator) -> Problem:
        layer, params, x = rnn.make_case(rng, **kwargs)
        return jvp_problem(layer, _rebuild(cls, layer), params, x)

    return make


def _dense_hvp_case(cls: type, **kwargs: Any) -> Callable[[np.random.Generator], Problem]:
    def make(rng: np.random.Generator) -> Problem:
        layer, params, x = dense.make_case(rng, **kwargs)
        target = rng.normal(size=(x.shape[0], params["W"].shape[1]))  # a residual y - t ≠ 0
        return _hvp_problem(layer, _rebuild(cls, layer), params, x, target, "sse")

    return make


def _mlp_hvp_case(cls: type, loss: str, **kwargs: Any) -> Callable[[np.random.Generator], Problem]:
    def make(rng: np.random.Generator) -> Problem:
        layer, params, x = mlp.make_case(rng, **kwargs)
        K = params[f"W{n_layers(params) - 1}"].shape[1]
        target = rng.normal(size=(x.shape[0], K)) if loss == "sse" else rng.integers(0, K, x.shape[0])
        return _hvp_problem(layer, _rebuild(cls, layer), params, x, target, loss)

    return make


_SQUARE = {"d_in": 4, "d_out": 4}
_MLP_SQUARE = {"sizes": (4, 4, 4)}
_MLP3 = {"sizes": (3, 4, 4, 2)}

_TABLE: list[tuple[str, str, str, type, list[str], Callable[[np.random.Generator], Problem]]] = [
    # name, kind, family, mutant, expect_bad, make
    ("dense jvp: input tangent x' W dropped", "jvp", "dense", _DenseJvpNoInputTangent, ["x"],
     _dense_jvp_case(_DenseJvpNoInputTangent, activation="tanh")),
    ("dense jvp: weight tangent transposed, x W'^T (square W)", "jvp", "dense",
     _DenseJvpTransposedWeightTangent, ["W"],
     _dense_jvp_case(_DenseJvpTransposedWeightTangent, activation="tanh", **_SQUARE)),
    ("dense jvp: W transposed, x' W^T (square W)", "jvp", "dense", _DenseJvpTransposedW, ["x"],
     _dense_jvp_case(_DenseJvpTransposedW, activation="tanh", **_SQUARE)),
    ("dense jvp: g'(net) not applied (tanh)", "jvp", "dense", _DenseJvpNoDerivative,
     ["W", "b", "x"], _dense_jvp_case(_DenseJvpNoDerivative, activation="tanh")),
    ("dense jvp: softmax Jacobian diagonal only", "jvp", "dense", _DenseJvpSoftmaxDiagonal,
     ["W", "b", "x"], _dense_jvp_case(_DenseJvpSoftmaxDiagonal, activation="softmax")),
    ("mlp jvp: tangent not carried between layers", "jvp", "mlp", _MLPJvpNoCarry,
     ["W0", "b0", "x"], _mlp_jvp_case(_MLPJvpNoCarry, sizes=(4, 5, 3))),
    ("mlp jvp: weight tangent times the layer's output (square widths)", "jvp", "mlp",
     _MLPJvpWeightTangentTimesOutput, ["W0", "W1"],
     _mlp_jvp_case(_MLPJvpWeightTangentTimesOutput, **_MLP_SQUARE)),
    ("mlp jvp: output activation's g' skipped (sigmoid)", "jvp", "mlp", _MLPJvpNoOutputDerivative,
     ["W0", "b0", "W1", "b1", "x"],
     _mlp_jvp_case(_MLPJvpNoOutputDerivative, sizes=(4, 5, 3), output_activation="sigmoid")),
    ("rnn jvp (RTRL): s_t U' for s_(t-1) U'", "jvp", "rnn", _RnnRtrlCurrentStateForPrevious, ["U"],
     _rnn_jvp_case(_RnnRtrlCurrentStateForPrevious, T=4)),
    ("rnn jvp (RTRL): recurrent carry s'_(t-1) U dropped", "jvp", "rnn", _RnnRtrlNoCarry,
     ["V", "U", "b", "h0", "x"], _rnn_jvp_case(_RnnRtrlNoCarry, T=4)),
    ("rnn jvp (RTRL): carry with U^T", "jvp", "rnn", _RnnRtrlCarryTransposed,
     ["V", "U", "b", "h0", "x"], _rnn_jvp_case(_RnnRtrlCarryTransposed, T=4, activation="sigmoid")),
    ("rnn jvp (RTRL): input tangent x'_t V dropped", "jvp", "rnn", _RnnRtrlNoInputTangent, ["x"],
     _rnn_jvp_case(_RnnRtrlNoInputTangent, T=4, activation="relu")),
    ("rnn jvp (RTRL): h0 tangent ignored", "jvp", "rnn", _RnnRtrlH0Constant, ["h0"],
     _rnn_jvp_case(_RnnRtrlH0Constant, T=4)),
    ("rnn jvp (RTRL): read-out W' times s_(t-1)", "jvp", "rnn", _RnnRtrlReadoutFromPreviousState,
     ["W"], _rnn_jvp_case(_RnnRtrlReadoutFromPreviousState, T=4)),
    ("dense sse hvp: R{g'} term dropped (= Gauss-Newton)", "hvp", "dense",
     _DenseHvpNoSecondDerivative, ["W", "b"],
     _dense_hvp_case(_DenseHvpNoSecondDerivative, activation="tanh")),
    ("dense sse hvp: tanh'' sign flipped", "hvp", "dense", _DenseHvpSignFlippedCurvature,
     ["W", "b"], _dense_hvp_case(_DenseHvpSignFlippedCurvature, activation="tanh")),
    ("dense sse hvp: factor 2 (the 1/2 of SSE forgotten)", "hvp", "dense", _DenseHvpTwice,
     ["W", "b"], _dense_hvp_case(_DenseHvpTwice, activation="sigmoid")),
    ("mlp sse hvp: f'' term dropped", "hvp", "mlp", _MLPHvpNoSecondDerivative, ["W0", "b0"],
     _mlp_hvp_case(_MLPHvpNoSecondDerivative, "sse", sizes=(3, 4, 2))),
    ("mlp sse hvp: delta V_W^T dropped from R{g}", "hvp", "mlp", _MLPHvpNoWeightTangentInBackward,
     ["W0", "b0", "W1", "b1"], _mlp_hvp_case(_MLPHvpNoWeightTangentInBackward, "sse", **_MLP3)),
    ("mlp sse hvp: R{a}^T delta dropped from R{dW}", "hvp", "mlp", _MLPHvpNoActivationTangentInDW,
     ["W1", "W2"], _mlp_hvp_case(_MLPHvpNoActivationTangentInDW, "sse", **_MLP3)),
    ("mlp xent hvp: Gauss-Newton passed off as the Hessian", "hvp", "mlp",
     _MLPXentGaussNewtonAsHessian, ["W0", "b0", "W1"],
     _mlp_hvp_case(_MLPXentGaussNewtonAsHessian, "xent", sizes=(3, 4, 3))),
    ("mlp xent hvp: softmax Hessian diag(p) only", "hvp", "mlp", _MLPXentDiagonalSoftmaxHessian,
     ["W0", "b0", "W1", "b1"], _mlp_hvp_case(_MLPXentDiagonalSoftmaxHessian, "xent", sizes=(3, 4, 3))),
    ("mlp xent hvp: R{dy} not divided by the batch size", "hvp", "mlp", _MLPXentRdyNotAveraged,
     ["W0", "b0", "W1", "b1"], _mlp_hvp_case(_MLPXentRdyNotAveraged, "xent", sizes=(3, 4, 3))),
]

MUTANTS_HIGHER: list[dict[str, Any]] = [
    {"name": name, "kind": kind, "family": family, "expect_bad": bad,
     "doc": inspect.getdoc(cls) or "", "make": make}
    for name, kind, family, cls, bad, make in _TABLE
]
"""The planted bugs of forward mode and second order (see the module docstring)."""
