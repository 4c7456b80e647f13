"""The zoo's layer-spec table: one row per layer family and variant, driving the property tests.

Each :class:`LayerSpec` names a factory of the reference zoo (``make_case(rng, *, dtype, ...)``),
the keyword arguments it is called with — fixed values plus a strategy of the varying ones
(shapes, activations, kernel/stride/padding geometry) — and how many examples to draw.  The
cases themselves come from :func:`gradcheck.strategies.layer_cases`, which draws the seed and
the dtype (float64 and float32) and prints a falsifying example as the one line that rebuilds it.

Example budget: ``max_examples`` is the count at a 60-example profile, scaled to the loaded one
by :func:`tests._profile.examples` (a third under ``default`` and ``ci``, about 17 times as many
under ``HYPOTHESIS_PROFILE=thorough``).  The
counts are small because nearly all the cost of an example is JAX compiling the eager
primitives of a shape it has not seen yet (about 0.2 s for a dense layer, 1-2 s for an LSTM or
a GRU); the per-spec counts keep the whole ``tests/reference`` run near a minute on two cores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

import gradcheck.strategies as gs
from gradcheck.strategies import LayerCase
from reference import activations, conv, dense, gru, losses, lstm, mlp, pooling, recursive, rnn
from reference.losses import LOSSES
from tests._profile import examples, sizes

__all__ = ["DTYPES", "FAMILIES", "LAYER_SPECS", "LayerSpec", "spec"]

DTYPES = (np.float64, np.float32)

_BATCH = sizes(1, 4)
_WIDTH = sizes(1, 8)
_LENGTH = sizes(1, 12)
_NO_KWARGS: SearchStrategy[dict[str, Any]] = st.just({})


@dataclass(frozen=True)
class LayerSpec:
    """One row of the table.

    Attributes:
        id: the pytest id, ``family/variant``.
        family: the layer family (``activations``, ``losses``, ``dense``, ``mlp``, ``conv``,
            ``pooling``, ``recursive``, ``rnn``, ``lstm``, ``gru``).
        factory: ``factory(rng, *, dtype, **kwargs) -> (layer, params, x)``.
        fixed: keyword arguments every case of this row is built with.
        vary: a strategy of dicts of the keyword arguments that vary (merged over ``fixed``).
        dtypes: the dtypes drawn (float64 first: the shrink target).
        options: check options for this row (tolerance overrides; none are needed today: the
            engine's float64/float32 tables hold for every row).
        max_examples: examples under the default profile (scaled for the others).
        batch: the factory's batch-size keyword, if the family has a batch axis.
        length: the factory's sequence-length keyword, if the family has a time axis.
    """

    id: str
    family: str
    factory: Callable[..., tuple[Any, Any, Any]]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    vary: SearchStrategy[dict[str, Any]] = _NO_KWARGS
    dtypes: tuple[type, ...] = DTYPES
    options: Mapping[str, Any] = field(default_factory=dict)
    max_examples: int = 6
    batch: str | None = None
    length: str | None = None

    def cases(self) -> SearchStrategy[LayerCase]:
        """Layer cases of this row: ``vary`` drawn first, then the dtype and a ``gs.seeds()`` seed."""
        return self.vary.flatmap(
            lambda kw: gs.layer_cases(self.factory, dtype=self.dtypes, **{**self.fixed, **kw})
        )

    def examples(self) -> int:
        """``max_examples`` scaled to the loaded Hypothesis profile (at least 1)."""
        return examples(self.max_examples)

    def build(self, seed: int = 0, dtype: Any = np.float64, **kwargs: Any) -> LayerCase:
        """One explicit case (no Hypothesis): ``fixed`` with ``kwargs`` on top."""
        kw = {**self.fixed, **kwargs}
        layer, params, x = self.factory(np.random.default_rng(seed), dtype=dtype, **kw)
        name = f"{self.factory.__module__}.{self.factory.__qualname__}"
        return LayerCase(layer, params, x, seed, np.dtype(dtype), name, kw)

    def __repr__(self) -> str:
        return f"LayerSpec({self.id!r})"


def spec(id: str, factory: Callable[..., Any], **kwargs: Any) -> LayerSpec:
    """A :class:`LayerSpec` whose family is the part of ``id`` before the slash."""
    return LayerSpec(id=id, family=id.split("/")[0], factory=factory, **kwargs)


# ----------------------------------------------------------------------------- geometry


@st.composite
def _conv_geometry(draw: st.DrawFn) -> dict[str, Any]:
    """Conv sizes with a valid output: ``H + 2P >= HH`` built in, never filtered.

    Kernel 1-3, stride 1-3, padding 0-2 (padding up to the kernel size minus one as well as
    beyond it), then each spatial size in ``[max(1, HH - 2P), 8]``.
    """
    kernel = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    pad = draw(st.integers(0, 2))
    low = max(1, kernel - 2 * pad)
    return {
        "batch": draw(_BATCH),
        "channels": draw(st.integers(1, 3)),
        "filters": draw(st.integers(1, 3)),
        "kernel": kernel,
        "stride": stride,
        "pad": pad,
        "height": draw(st.integers(low, 8)),
        "width": draw(st.integers(low, 8)),
    }


@st.composite
def _pool_geometry(draw: st.DrawFn, *, overlapping: bool) -> dict[str, Any]:
    """Pooling windows 1-3 (2-3 with a smaller stride when ``overlapping``), inputs up to 8."""
    if overlapping:
        size = draw(st.integers(2, 3))
        stride = draw(st.integers(1, size - 1))
    else:
        size = draw(st.integers(1, 3))
        stride = draw(st.integers(1, 3))
    return {
        "batch": draw(_BATCH),
        "channels": draw(st.integers(1, 3)),
        "size": size,
        "stride": stride,
        "height": draw(st.integers(size, 8)),
        "width": draw(st.integers(size, 8)),
    }


@st.composite
def _mlp_sizes(draw: st.DrawFn) -> dict[str, Any]:
    """1-3 hidden layers, every width 1-8; hidden and output activations drawn."""
    depth = draw(st.integers(1, 3))
    return {
        "batch": draw(_BATCH),
        "sizes": tuple(draw(_WIDTH) for _ in range(depth + 2)),
        "hidden_activation": draw(st.sampled_from(("tanh", "sigmoid", "relu"))),
        "output_activation": draw(st.sampled_from(("identity", "sigmoid", "tanh"))),
    }


def _recursive_sizes(tree: str) -> SearchStrategy[dict[str, Any]]:
    """Widths 1-5; trees of 1-6 leaves; batched (N = 1-4) or not."""
    leaves = st.just(None) if tree == "single" else st.integers(1, 6)
    return st.fixed_dictionaries(
        {"n_leaves": leaves, "width": st.integers(1, 5), "batch": st.none() | _BATCH}
    )


def _recurrent_sizes() -> SearchStrategy[dict[str, Any]]:
    """T 1-12, B 1-4, D/H/K 1-8."""
    return st.fixed_dictionaries(
        {"T": _LENGTH, "B": _BATCH, "D": _WIDTH, "H": _WIDTH, "K": _WIDTH}
    )


def _loss_variant(name: str, **extra: Any) -> dict[str, Any]:
    return {"loss": LOSSES[name], **extra}


def _reductions(name: str) -> SearchStrategy[dict[str, Any]]:
    """Batch 1-4, width 1-8 and both reductions (MSE has only its own mean)."""
    cls = type(LOSSES[name])
    loss = st.just(LOSSES[name]) if name == "mse" else st.sampled_from(
        (cls(reduction="sum"), cls(reduction="mean"))
    )
    return st.fixed_dictionaries({"loss": loss, "batch": _BATCH, "width": _WIDTH})


_ROWS_AND_COLS = st.fixed_dictionaries({"batch": _BATCH, "width": _WIDTH})

# ----------------------------------------------------------------------------- the table

LAYER_SPECS: tuple[LayerSpec, ...] = (
    *(
        spec(f"activations/{name}", activations.make_case, fixed={"activation": name},
             vary=_ROWS_AND_COLS, max_examples=3, batch="batch")
        for name in ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")
    ),
    *(
        spec(f"losses/{name}", losses.make_case, fixed=_loss_variant(name),
             vary=_reductions(name), max_examples=3, batch="batch")
        for name in ("sse", "mse", "bce", "sigmoid_bce")
    ),
    *(
        spec(f"losses/softmax_ce-{targets}", losses.make_case,
             fixed=_loss_variant("softmax_ce", targets=targets), vary=_reductions("softmax_ce"),
             max_examples=3, batch="batch")
        for targets in ("labels", "probs", "onehot")
    ),
    *(
        spec(f"dense/{name}", dense.make_case, fixed={"activation": name},
             vary=st.fixed_dictionaries({"batch": _BATCH, "d_in": _WIDTH, "d_out": _WIDTH}),
             max_examples=4, batch="batch")
        for name in ("identity", "sigmoid", "tanh", "relu")
    ),
    spec("mlp/depth1-3", mlp.make_case, vary=_mlp_sizes(), max_examples=6, batch="batch"),
    spec("conv/geometry", conv.make_case, vary=_conv_geometry(), max_examples=6, batch="batch"),
    spec("pooling/max-overlapping", pooling.make_maxpool_case,
         vary=_pool_geometry(overlapping=True), max_examples=4, batch="batch"),
    spec("pooling/max", pooling.make_maxpool_case, vary=_pool_geometry(overlapping=False),
         max_examples=3, batch="batch"),
    spec("pooling/avg", pooling.make_avgpool_case, vary=_pool_geometry(overlapping=False),
         max_examples=3, batch="batch"),
    *(
        spec(f"recursive/{tree}", recursive.make_case, fixed={"tree": tree},
             vary=_recursive_sizes(tree), max_examples=3, batch="batch")
        for tree in ("balanced", "unbalanced", "single")
    ),
    *(
        spec(f"rnn/{name}", rnn.make_case, fixed={"activation": name}, vary=_recurrent_sizes(),
             max_examples=3, batch="B", length="T")
        for name in ("tanh", "sigmoid", "relu")
    ),
    spec("lstm/sizes", lstm.make_case, vary=_recurrent_sizes(), max_examples=3, batch="B",
         length="T"),
    spec("gru/sizes", gru.make_case, vary=_recurrent_sizes(), max_examples=3, batch="B",
         length="T"),
)

FAMILIES = ("activations", "losses", "dense", "mlp", "conv", "pooling", "recursive", "rnn", "lstm",
            "gru")
