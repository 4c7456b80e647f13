"""judge.py: the triangulation table (the stage's own tests are in test_judge_stage.py)."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradcheck.judge import triangulate

# --------------------------------------------------------------------------- triangulate

# (hand≈numeric, hand≈autodiff, numeric≈autodiff) -> status, from DESIGN.md plus the three
# combinations it leaves out (trust the two sources that agree).
TABLE = {
    (True, True, True): "ok",
    (False, True, False): "numeric",
    (False, False, True): "hand",
    (True, False, False): "autodiff",
    (False, False, False): "inconclusive",
    (True, True, False): "ok",
    (True, False, True): "hand",
    (False, True, True): "numeric",
}


@pytest.mark.parametrize("key", sorted(TABLE), ids=lambda k: "".join("y" if v else "n" for v in k))
def test_triangulate_every_row(key: tuple[bool, bool, bool]) -> None:
    hn, ha, na = (np.array([v]) for v in key)
    assert triangulate(hn, ha, na).tolist() == [TABLE[key]]


@given(masks=hnp.array_shapes(max_dims=3, max_side=4).flatmap(
    lambda s: st.tuples(*(hnp.arrays(np.bool_, s) for _ in range(3)))))
def test_triangulate_elementwise(masks: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    hn, ha, na = masks
    out = triangulate(hn, ha, na)
    assert out.shape == hn.shape and out.dtype == object
    for idx in np.ndindex(hn.shape):
        assert out[idx] == TABLE[(bool(hn[idx]), bool(ha[idx]), bool(na[idx]))]


@given(mask=hnp.arrays(np.bool_, hnp.array_shapes(max_dims=2, max_side=5)), which=st.sampled_from(["hn", "ha"]))
def test_triangulate_two_sources_collapse_to_hand_against_the_reference(mask: np.ndarray, which: str) -> None:
    kwargs: dict[str, Any] = {"hn": None, "ha": None, "na": None, which: mask}
    out = triangulate(**kwargs)
    assert out.shape == mask.shape
    np.testing.assert_array_equal(out == "ok", mask)
    np.testing.assert_array_equal(out == "hand", ~mask)


def test_triangulate_without_hand_comparison_is_unverified() -> None:
    assert triangulate(None, None, np.array([True, False])).tolist() == ["unverified", "unverified"]


def test_triangulate_needs_a_comparison() -> None:
    with pytest.raises(ValueError, match="at least one"):
        triangulate(None, None, None)
