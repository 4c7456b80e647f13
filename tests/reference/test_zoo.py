"""Property tests of the reference zoo: every hand gradient agrees with finite differences and JAX.

One Hypothesis test per row of :data:`tests.reference._specs.LAYER_SPECS` (generated shapes,
activations, seeds, float64 and float32), plus explicit batch-size-1 and sequence-length-1
examples for every family that has those axes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from gradcheck import CheckResult
from gradcheck.strategies import LayerCase
from tests.reference._specs import DTYPES, FAMILIES, LAYER_SPECS, LayerSpec

BATCHED = [s for s in LAYER_SPECS if s.batch is not None]
SEQUENTIAL = [s for s in LAYER_SPECS if s.length is not None]


def _ids(s: LayerSpec) -> str:
    return s.id


def _dtype_id(dt: type) -> str:
    return np.dtype(dt).name


def assert_all_leaves_pass(case: LayerCase, res: CheckResult) -> None:
    """Every parameter and the input were checked, and every one of them passed."""
    expected = {*case.params, "x"}
    assert {leaf.name for leaf in res.leaves} == expected, (
        f"{case!r}: checked {[leaf.name for leaf in res.leaves]}, expected {sorted(expected)}"
    )
    assert "autodiff" in res.references and "numeric" in res.references, (
        f"{case!r}: references {res.references}; notes: {res.notes}"
    )
    assert res.passed, f"{case!r}\n{res.message()}\nnotes: {res.notes}"


def test_table_covers_every_family() -> None:
    assert {s.family for s in LAYER_SPECS} == set(FAMILIES)
    assert len({s.id for s in LAYER_SPECS}) == len(LAYER_SPECS)
    activations = {s.fixed["activation"] for s in LAYER_SPECS if s.family == "activations"}
    assert activations == {"identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"}


@pytest.mark.parametrize("spec", LAYER_SPECS, ids=_ids)
def test_hand_gradients_agree(spec: LayerSpec) -> None:
    # An inner @given test so that each row gets its own max_examples (spec.examples()).  The
    # rows share one Hypothesis database key: a failure saved by one row is replayed once by
    # the others, as an ordinary extra example.
    @settings(max_examples=spec.examples())
    @given(case=spec.cases())
    def hand_gradient_agrees(case: LayerCase) -> None:
        assert_all_leaves_pass(case, case.check(**spec.options))

    hand_gradient_agrees()


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("spec", BATCHED, ids=_ids)
def test_batch_of_one(spec: LayerSpec, dtype: type) -> None:
    assert spec.batch is not None
    case = spec.build(seed=1, dtype=dtype, **{spec.batch: 1})
    assert_all_leaves_pass(case, case.check(**spec.options))


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("spec", SEQUENTIAL, ids=_ids)
def test_sequence_of_one(spec: LayerSpec, dtype: type) -> None:
    assert spec.length is not None and spec.batch is not None
    for kwargs in ({spec.length: 1}, {spec.length: 1, spec.batch: 1}):
        case = spec.build(seed=2, dtype=dtype, **kwargs)
        assert case.x.shape[0] == 1
        assert_all_leaves_pass(case, case.check(**spec.options))


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
def test_single_leaf_tree(dtype: type) -> None:
    """The recursive net's analogue of a length-1 sequence: one leaf, ``y = x[0]``, no node."""
    (spec,) = [s for s in LAYER_SPECS if s.id == "recursive/single"]
    for batch in (None, 1):
        case = spec.build(seed=3, dtype=dtype, batch=batch)
        assert_all_leaves_pass(case, case.check())
        y = case.layer.forward(case.params, case.x)
        dparams, dx = case.layer.backward(case.params, case.x, np.ones_like(y))
        assert not dparams["W"].any() and not dparams["b"].any()
        np.testing.assert_array_equal(dx[0], np.ones_like(y))
