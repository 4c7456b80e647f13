"""The mutation suite and the correct cases the detection benchmark runs every checker on.

Mutants (planted bugs, each a layer whose backward is wrong in ONE realistic way):

* the project's own suite, imported unchanged from ``tests/reference/mutants_{dense,conv,rnn}.py``
  (``MUTANTS`` / ``WRONG_LEAVES``: sign flips, transposes, the missing ½ of SSE, pre- vs
  post-activation derivatives, off-by-one time indices, missing carries, biases not summed over
  the batch, wrong stride, pooling routed to the wrong entry, ...);
* bugs added here (:data:`EXTRA_BUGS`): ``dx`` through ``W`` instead of ``Wᵀ``, an output bias
  assigned (``=``) instead of accumulated over time in an RNN and an LSTM, and a tanh derivative
  computed from a float32 copy of ``y`` inside a float64 backward (an error of order 1e-7:
  below the 1e-6 line the recall target is drawn at);
* float32 copies of two suite mutants (a float32 layer with a real bug);
* single-entry errors (:class:`SingleEntryError`): a correct backward with ONE entry of one leaf
  moved by ``rel × max|that leaf's gradient|``, ``rel`` from 1e-2 down to 1e-6, in a dense tanh
  layer (every decade), a conv layer, an LSTM and an Elman RNN.

Correct cases: every variant of the zoo's declared cases (``reference.cases``, seed 0) in float64
and float32, plus kink-heavy inputs (:func:`kink_cases`): ReLU / leaky ReLU with a quarter of the
inputs exactly at 0, a ReLU dense layer with a pre-activation exactly at 0, max pooling on a
coarse integer grid so that most windows have tied maxima.  A correct backward there is a valid
(sub)gradient; a checker that fails it raises a false alarm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from benchmarks.adapters import Case
from reference import activations, conv, dense, lstm, pooling, rnn
from reference.dense import Dense
from reference.lstm import LSTM
from reference.rnn import ElmanRNN
from tests.reference import mutants_conv, mutants_dense, mutants_rnn

__all__ = [
    "EXTRA_BUGS",
    "SINGLE_ENTRY_SIZES",
    "SingleEntryError",
    "correct_cases",
    "family_of",
    "kink_cases",
    "mutant_cases",
    "single_entry_cases",
    "suite_cases",
]

Factory = Callable[[np.random.Generator], tuple[Any, dict[str, np.ndarray], np.ndarray]]

#: Relative sizes of the single-entry errors (relative to the leaf's largest gradient entry).
SINGLE_ENTRY_SIZES: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)

_PREFIX_FAMILY = {
    "dense": "dense", "dense/sigmoid": "dense", "softmax": "activations", "relu": "activations",
    "sse": "losses", "softmax CE (mean)": "losses", "sigmoid BCE": "losses", "mlp": "mlp",
    "conv": "conv", "maxpool": "pooling", "avgpool": "pooling", "recursive": "recursive",
    "rnn": "rnn", "lstm": "lstm", "gru": "gru",
}


def family_of(name: str) -> str:
    """The layer family of a suite mutant, from the prefix of its name."""
    prefix = name.split(":")[0]
    return _PREFIX_FAMILY.get(prefix, prefix.split("/")[0].split(" ")[0])


# ----------------------------------------------------------------------------- single entries


@dataclass(frozen=True)
class SingleEntryError:
    """A correct layer whose backward returns ONE entry wrong.

    ``backward`` adds ``rel × max|g|`` to ``g[index]``, ``g`` the correct gradient of ``leaf``
    (a parameter key or ``"x"``): the error is exactly ``rel`` relative to the leaf's largest
    gradient entry, whatever ``dy`` the checker contracts the output with.
    """

    inner: Any
    leaf: str
    index: tuple[int, ...]
    rel: float

    def forward(self, params: Any, x: Any) -> Any:
        return self.inner.forward(params, x)

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, Any], Any]:
        dparams, dx = self.inner.backward(params, x, dy)
        dparams = dict(dparams)
        g = np.array(dx if self.leaf == "x" else dparams[self.leaf])
        g[self.index] += self.rel * np.max(np.abs(g))
        if self.leaf == "x":
            return dparams, g
        dparams[self.leaf] = g
        return dparams, dx


def _single(family: str, factory: Factory, leaf: str, index: tuple[int, ...], rel: float,
            seed: int = 0) -> Case:
    layer, params, x = factory(np.random.default_rng(seed))
    return Case(f"{family}: one entry of d{leaf}{list(index)} off by {rel:.0e} (relative)",
                SingleEntryError(layer, leaf, index, rel), params, x, family=family, kind="mutant",
                wrong_leaves=frozenset({leaf}), wrong_entry=(leaf, index), tags=("single-entry",))


def single_entry_cases(sizes: tuple[float, ...] = SINGLE_ENTRY_SIZES, *,
                       families: tuple[str, ...] = ("dense", "conv", "lstm", "rnn")) -> list[Case]:
    """Single-entry errors: every size in a dense tanh layer (16×16, batch 4); 1e-2, 1e-4 and
    1e-6 (those of ``sizes``) in a conv layer and an LSTM; 1e-3 and 1e-5 in an RNN's input."""
    out: list[Case] = []
    if "dense" in families:
        out += [_single("dense", lambda r: dense.make_case(r, batch=4, d_in=16, d_out=16),
                        "W", (3, 11), rel) for rel in sizes]
    odd = tuple(s for s in sizes if s in (1e-2, 1e-4, 1e-6)) or sizes[:1]
    if "conv" in families:
        out += [_single("conv", conv.make_case, "w", (1, 0, 2, 1), rel) for rel in odd]
    if "lstm" in families:
        out += [_single("lstm", lambda r: lstm.make_case(r, T=6), "Wh", (2, 9), rel) for rel in odd]
    if "rnn" in families:
        even = tuple(s for s in sizes if s in (1e-3, 1e-5)) or sizes[:1]
        out += [_single("rnn", rnn.make_case, "x", (2, 1, 0), rel) for rel in even]
    return out


# ----------------------------------------------------------------------------- extra bugs


@dataclass(frozen=True)
class _DenseDxThroughW(Dense):
    """dx = delta W instead of delta Wᵀ (square W keeps the shapes)."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, Any], Any]:
        dparams, _ = super().backward(params, x, dy)
        net, y = self.forward_cache(params, np.asarray(x))
        delta = activations.get_activation(self.activation).backward(net, y, np.asarray(dy))
        return dparams, (delta @ np.asarray(params["W"])).astype(np.asarray(x).dtype)


@dataclass(frozen=True)
class _DenseTanhFloat32Derivative(Dense):
    """tanh' = 1 − y² computed from a float32 copy of y inside a float64 backward (a stray
    ``astype``): an error of order 1e-7 relative, below the recall target's 1e-6 line."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, Any], Any]:
        x, W = np.asarray(x), np.asarray(params["W"])
        _, y = self.forward_cache(params, x)
        y32 = y.astype(np.float32)
        delta = np.asarray(dy) * (1 - y32 * y32).astype(np.float64)
        return {"W": x.T @ delta, "b": delta.sum(axis=0)}, delta @ W.T


class _RnnOutputBiasLastStep(ElmanRNN):
    """dc assigned (``=``) instead of accumulated (``+=``) over time: only the last step's
    Σ_batch dy_T survives."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, Any], Any]:
        dparams, dx = super().backward(params, x, dy)
        return {**dparams, "c": np.asarray(dy)[-1].sum(axis=0)}, dx


class _LstmOutputBiasLastStep(LSTM):
    """dby assigned (``=``) instead of accumulated (``+=``) over time."""

    def backward(self, params: Any, x: Any, dy: Any) -> tuple[dict[str, Any], Any]:
        dparams, dx = super().backward(params, x, dy)
        return {**dparams, "by": np.asarray(dy)[-1].sum(axis=0)}, dx


def _rebuilt(cls: type, case: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
    layer, params, x = case
    try:
        return cls(**{f.name: getattr(layer, f.name) for f in fields(layer)}), params, x
    except TypeError:
        return cls(), params, x


#: name -> (family, factory, wrong leaves)
EXTRA_BUGS: dict[str, tuple[str, Factory, frozenset[str]]] = {
    "dense: dx = delta W instead of delta W^T (square W)": (
        "dense", lambda r: _rebuilt(_DenseDxThroughW, dense.make_case(r, d_in=5, d_out=5)),
        frozenset({"x"})),
    "dense/tanh: tanh' from a float32 copy of y (float64 layer)": (
        "dense", lambda r: _rebuilt(_DenseTanhFloat32Derivative, dense.make_case(r)),
        frozenset({"W", "b", "x"})),
    "rnn: output bias dc assigned, not accumulated over time": (
        "rnn", lambda r: (_RnnOutputBiasLastStep(), *rnn.make_case(r)[1:]), frozenset({"c"})),
    "lstm: output bias dby assigned, not accumulated over time": (
        "lstm", lambda r: (_LstmOutputBiasLastStep(), *lstm.make_case(r)[1:]), frozenset({"by"})),
}

#: Suite mutants also run as float32 layers.
FLOAT32_COPIES: tuple[str, ...] = ("dense: dW sign flipped", "lstm: cell-state carry dc*f missing")


# ----------------------------------------------------------------------------- assembly


def _suite() -> tuple[dict[str, Factory], dict[str, set[str]]]:
    factories: dict[str, Factory] = {}
    wrong: dict[str, set[str]] = {}
    for module in (mutants_dense, mutants_conv, mutants_rnn):
        factories.update(module.MUTANTS)
        wrong.update(module.WRONG_LEAVES)
    return factories, wrong


def _as_float32(layer: Any, params: dict[str, np.ndarray], x: np.ndarray
                ) -> tuple[Any, dict[str, np.ndarray], np.ndarray]:
    return layer, {k: np.asarray(v, np.float32) for k, v in params.items()}, np.asarray(x, np.float32)


def suite_cases(names: list[str] | None = None) -> list[Case]:
    """The project's own mutants (``tests/reference/mutants_*.py``), seed 0, float64."""
    factories, wrong = _suite()
    out = []
    for name in names if names is not None else list(factories):
        layer, params, x = factories[name](np.random.default_rng(0))
        out.append(Case(name, layer, params, x, family=family_of(name), kind="mutant",
                        wrong_leaves=frozenset(wrong[name]), tags=("suite",)))
    return out


def mutant_cases(*, quick: bool = False) -> list[Case]:
    """Every mutant of the benchmark (``quick``: two suite mutants and two single entries)."""
    if quick:
        return (suite_cases(["dense: dW sign flipped", "rnn: recurrent carry missing"])
                + single_entry_cases((1e-2, 1e-6), families=("dense",)))
    factories, wrong = _suite()
    out = suite_cases()
    for name, (family, factory, leaves) in EXTRA_BUGS.items():
        layer, params, x = factory(np.random.default_rng(0))
        out.append(Case(name, layer, params, x, family=family, kind="mutant", wrong_leaves=leaves,
                        tags=("extra",)))
    for name in FLOAT32_COPIES:
        layer, params, x = _as_float32(*factories[name](np.random.default_rng(0)))
        out.append(Case(f"{name} [float32]", layer, params, x, family=family_of(name),
                        kind="mutant", wrong_leaves=frozenset(wrong[name]), tags=("float32",)))
    return out + single_entry_cases()


def kink_cases(dtypes: tuple[Any, ...] = (np.float64,)) -> list[Case]:
    """Correct layers evaluated on points where the forward is not differentiable."""
    out: list[Case] = []
    layer: Any
    for dtype in dtypes:
        tag = np.dtype(dtype).name
        for name in ("relu", "leaky_relu"):
            rng = np.random.default_rng(0)
            layer, params, x = activations.make_case(rng, activation=name, batch=4, width=6,
                                                     dtype=dtype)
            x[rng.random(x.shape) < 0.25] = 0
            x[0, 0] = 0
            out.append(Case(f"{name}: a quarter of the inputs exactly at 0 [{tag}]", layer, params,
                            x, family="activations", tags=("kinks", tag)))
        layer, params, x = dense.make_case(np.random.default_rng(0), activation="relu",
                                           at_kink=True, dtype=dtype)
        out.append(Case(f"dense/relu: a pre-activation exactly at 0 [{tag}]", layer, params, x,
                        family="dense", tags=("kinks", tag)))
        for size, stride in ((2, 2), (3, 2)):
            rng = np.random.default_rng(0)
            x = rng.integers(0, 3, size=(2, 2, 6, 6)).astype(dtype)
            out.append(Case(f"maxpool {size}x{size}/{stride}: integer inputs, tied maxima [{tag}]",
                            pooling.MaxPool2D(size=size, stride=stride), {}, x, family="pooling",
                            tags=("kinks", tag)))
    return out


def _declared() -> Iterator[dict[str, Any]]:
    from reference.cases import declared

    for spec in declared():
        if spec["name"].endswith("/seed0"):
            yield spec


def correct_cases(*, quick: bool = False) -> list[Case]:
    """The zoo's declared cases (seed 0; float64 and float32) and the kink-heavy cases."""
    out = []
    for spec in _declared():
        dtype = "float32" if "/float32/" in spec["name"] else "float64"
        name = spec["name"].removesuffix("/seed0")
        if quick and name not in ("dense[activation=tanh]/float64", "dense[activation=tanh]/float32"):
            continue
        out.append(Case(name, spec["layer"], spec["params"], spec["x"], family=spec["family"],
                        tags=(dtype,)))
    kinks = kink_cases()
    return out + (kinks[2:3] if quick else kinks + kink_cases((np.float32,)))
