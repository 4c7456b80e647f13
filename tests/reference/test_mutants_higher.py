"""The planted forward-mode and second-order bugs of ``tests/reference/mutants_higher.py`` go
through gradcheck as a user's would: ``gc.check_jvp`` / ``gc.check_hvp`` fail each mutant with the
blame on the hand product and on exactly the leaves the bug makes wrong (``expect_bad``), and pass
the correct reference of the same problem (the negative control: no false alarm).  Two seeds per
mutant (the problem's draw and the check's seed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradcheck as gc
from tests.reference.mutants_higher import MUTANTS_HIGHER


def _check(problem: dict[str, Any], kind: str, which: str, seed: int) -> Any:
    rule = problem[which]
    if kind == "jvp":
        return gc.check_jvp(problem["fun"], rule, problem["params"], *problem["args"], seed=seed)
    return gc.check_hvp(problem["fun"], rule, problem["params"], *problem["args"], grad=problem["grad"],
                        seed=seed)


def test_the_table_is_well_formed() -> None:
    names = [m["name"] for m in MUTANTS_HIGHER]
    assert len(names) == len(set(names)) >= 20
    assert {m["kind"] for m in MUTANTS_HIGHER} == {"jvp", "hvp"}
    assert {m["family"] for m in MUTANTS_HIGHER} == {"dense", "mlp", "rnn"}
    assert all(m["expect_bad"] and m["doc"] for m in MUTANTS_HIGHER)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("mutant", MUTANTS_HIGHER, ids=[m["name"] for m in MUTANTS_HIGHER])
def test_each_planted_bug_is_blamed_on_its_leaves_and_the_reference_passes(mutant: dict[str, Any],
                                                                           seed: int) -> None:
    problem = mutant["make"](np.random.default_rng(seed))
    control = _check(problem, mutant["kind"], "reference", seed)
    assert control.passed, f"false alarm on the correct {mutant['kind']}:\n{control.message()}"
    res = _check(problem, mutant["kind"], mutant["kind"], seed)
    where = f"{mutant['name']}\n{res.message()}"
    assert res.verdict == "fail" and res.kind == f"check_{mutant['kind']}", where
    assert {leaf.name for leaf in res.failures} == set(mutant["expect_bad"]), where
    assert all(leaf.blame == "hand" for leaf in res.failures), where
    if "Gauss-Newton passed off" in mutant["name"]:
        assert any("Gauss–Newton" in n for n in res.notes), res.notes
