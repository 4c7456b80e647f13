"""Planted bugs: every mutant's check fails, on exactly the leaves its bug touches, blaming the hand.

The mutants live in ``mutants_dense.py``, ``mutants_conv.py`` and ``mutants_rnn.py`` (one
realistic bug each, with the set of leaves it makes wrong).  A checker is worth only what it can
be shown to catch: here, with the default options, no false alarm on the untouched leaves and no
bug missed on the touched ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradcheck as gc
from tests.reference import mutants_conv, mutants_dense, mutants_rnn
from tests.reference._specs import FAMILIES

_MODULES = (mutants_dense, mutants_conv, mutants_rnn)
MUTANTS: dict[str, Callable[[np.random.Generator], Any]] = {}
WRONG_LEAVES: dict[str, set[str]] = {}
for _module in _MODULES:
    MUTANTS.update(_module.MUTANTS)
    WRONG_LEAVES.update(_module.WRONG_LEAVES)

#: The family a mutant's bug sits in, by the prefix of its name.  ``dense/sigmoid`` is a wrong
#: sigmoid derivative (an activation bug) checked inside a dense layer: it counts for both.
_PREFIX_FAMILIES: dict[str, tuple[str, ...]] = {
    "dense": ("dense",),
    "dense/sigmoid": ("dense", "activations"),
    "softmax": ("activations",),
    "relu": ("activations",),
    "sse": ("losses",),
    "softmax CE (mean)": ("losses",),
    "sigmoid BCE": ("losses",),
    "mlp": ("mlp",),
    "conv": ("conv",),
    "maxpool": ("pooling",),
    "avgpool": ("pooling",),
    "recursive": ("recursive",),
    "rnn": ("rnn",),
    "lstm": ("lstm",),
    "gru": ("gru",),
}


def families(name: str) -> tuple[str, ...]:
    return _PREFIX_FAMILIES[name.split(":")[0]]


def test_tables_agree() -> None:
    for module in _MODULES:
        assert set(module.MUTANTS) == set(module.WRONG_LEAVES), module.__name__
    assert len(MUTANTS) == sum(len(m.MUTANTS) for m in _MODULES), "a mutant name is repeated"


def test_at_least_three_mutants_per_family() -> None:
    counts = Counter(f for name in MUTANTS for f in families(name))
    assert set(counts) == set(FAMILIES)
    assert min(counts.values()) >= 3, dict(counts)


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_caught_with_the_right_blame(name: str) -> None:
    layer, params, x = MUTANTS[name](np.random.default_rng(0))
    res = gc.check_layer(layer, params, x, seed=0)
    assert {leaf.name for leaf in res.leaves} == {*params, "x"}
    assert res.verdict == "fail", f"{name}: the planted bug was not caught\n{res}"
    failing = {leaf.name for leaf in res.failures}
    assert failing == WRONG_LEAVES[name], (
        f"{name}: failing leaves {sorted(failing)}, expected {sorted(WRONG_LEAVES[name])}\n"
        f"{res.message()}"
    )
    for leaf in res.failures:
        assert leaf.verdict == "fail" and leaf.blame == "hand", (
            f"{name}: {leaf.name} has verdict {leaf.verdict!r}, blame {leaf.blame!r}\n{res.message()}"
        )
        assert leaf.n_mismatched > 0
    assert "blame: the hand-derived backward" in res.message()
