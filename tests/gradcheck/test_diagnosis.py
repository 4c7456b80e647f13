"""diagnosis.py: the shape of planted bugs."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradcheck.diagnosis import diagnose
from gradcheck.tolerance import GRAD_ATOL_FRACTION, close

RTOL = 5e-7  # the float64 table entry

# --------------------------------------------------------------------------- diagnose


def _judge(hand: np.ndarray, ref: np.ndarray, **kw: Any) -> Any:
    """diagnose() the way check.py calls it: float64 tolerance, atol from the leaf's scale."""
    atol = RTOL * GRAD_ATOL_FRACTION * float(np.max(np.abs(ref)))
    bad = ~close(hand, ref, rtol=RTOL, atol=atol)
    return diagnose(hand, ref, bad, rtol=RTOL, atol=atol, **kw)


def _ref(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)
multi = hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=6)


@given(seed=seeds, shape=shapes)
def test_nothing_bad_is_no_diagnosis(seed: int, shape: tuple[int, ...]) -> None:
    ref = _ref(seed, shape)
    assert _judge(ref.copy(), ref) is None
    assert _judge(ref * (1 + 1e-9), ref) is None  # within tolerance
    assert diagnose(-ref, ref, np.zeros(shape, bool), rtol=RTOL, atol=0.0) is None


@given(seed=seeds, shape=shapes)
def test_sign_flip(seed: int, shape: tuple[int, ...]) -> None:
    ref = _ref(seed, shape)
    found = _judge(-ref, ref)
    assert found.kind == "sign_flip" and found.factor == -1.0


@given(seed=seeds, shape=multi, p=st.integers(-16, 16), q=st.integers(1, 16))
def test_scale_by_a_simple_fraction(seed: int, shape: tuple[int, ...], p: int, q: int) -> None:
    assume(p != 0 and abs(p) != q)
    ref = _ref(seed, shape)
    found = _judge(p / q * ref, ref)
    assert found.kind == "scale"
    assert found.factor == p / q  # snapped to the fraction exactly
    frac = Fraction(p, q)
    if frac.denominator in (1, 2, 4, 8, 16):
        assert f"{p / q:g} ×" in found.summary
    else:
        assert f"{frac.numerator}/{frac.denominator} ×" in found.summary


@given(seed=seeds, shape=multi, factor=st.sampled_from([1.37, -2.71828, 0.3183, 123.456]))
def test_scale_by_an_arbitrary_factor(seed: int, shape: tuple[int, ...], factor: float) -> None:
    ref = _ref(seed, shape)
    found = _judge(factor * ref, ref)
    assert found.kind == "scale"
    assert found.factor == pytest.approx(factor, rel=1e-12)
    assert f"{factor:.6g} ×" in found.summary


@given(seed=seeds, factor=st.sampled_from([0.5, 2.0, 1.37, -2.71828, 3.0]), ndim=st.integers(0, 3))
def test_a_one_entry_tensor_is_never_called_a_constant_factor(seed: int, factor: float, ndim: int) -> None:
    """One number shows no pattern: a wrong one-entry tensor is ``single``, with its ratio."""
    ref = _ref(seed, (1,) * ndim)
    assume(abs(float(ref.ravel()[0])) > 1e-3)
    found = _judge(factor * ref, ref)
    assert found.kind == "single"
    assert found.factor == pytest.approx(factor, rel=1e-12)
    assert "constant factor" not in found.summary
    assert f"{factor:.6g} × the reference" in found.summary and "only entry" in found.summary
    # a zero or a flipped sign is still what it is
    assert _judge(np.zeros_like(ref), ref).kind == "zero"
    assert _judge(-ref, ref).kind == "sign_flip"


@given(seed=seeds, data=st.data())
def test_many_wrong_entries_without_a_pattern_are_scattered(seed: int, data: st.DataObject) -> None:
    """More than a few (and more than a tenth) wrong entries, with no row, column or step pattern,
    are ``scattered``: never "a few entries"."""
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((8, 6))
    n_bad = data.draw(st.integers(6, 40))
    # at least one wrong entry in every row and every column: nothing is confined
    where = {(i, i % 6) for i in range(8)} | {(i % 8, j) for j, i in enumerate(range(6))}
    extra = rng.permutation(48)[:n_bad]
    where |= {(int(k) // 6, int(k) % 6) for k in extra}
    hand = ref.copy()
    for i, j in where:
        hand[i, j] += 0.5 + abs(ref[i, j])
    found = _judge(hand, ref, time_axis=None)
    assert len(where) < 48
    assert found.kind == "scattered"
    assert found.summary.startswith(f"{len(where)} of 48 entries wrong")


def test_scale_examples() -> None:
    r = np.arange(1.0, 7.0).reshape(2, 3)
    assert _judge(0.5 * r, r).factor == 0.5  # a missing ½ of SSE
    assert _judge(2 * r, r).factor == 2.0
    found = _judge(r / 3, r)
    assert (found.factor, "1/3 ×" in found.summary) == (1 / 3, True)


@given(seed=seeds, n=st.integers(2, 6), batch=st.sampled_from([(), (3,)]))
def test_transpose(seed: int, n: int, batch: tuple[int, ...]) -> None:
    ref = _ref(seed, (*batch, n, n))
    found = _judge(np.swapaxes(ref, -1, -2), ref, time_axis=None)
    assert found.kind == "transpose"


def test_symmetric_reference_is_never_called_a_transpose() -> None:
    r = _ref(0, (4, 4))
    sym = r + r.T
    found = _judge(sym + np.eye(4), sym)
    assert found is not None and found.kind != "transpose"


@given(seed=seeds, shape=shapes)
def test_all_zero(seed: int, shape: tuple[int, ...]) -> None:
    ref = _ref(seed, shape)
    found = _judge(np.zeros(shape), ref)
    assert found.kind == "zero"


@given(seed=seeds, T=st.integers(3, 6), B=st.integers(1, 4), D=st.integers(1, 4), late=st.booleans())
def test_shift_by_one_time_step(seed: int, T: int, B: int, D: int, late: bool) -> None:
    ref = _ref(seed, (T, B, D))
    hand = np.zeros_like(ref)
    if late:
        hand[1:] = ref[:-1]  # hand[t+1] holds the reference's step t
    else:
        hand[:-1] = ref[1:]
    found = _judge(hand, ref)
    assert found.kind == "shift"
    assert found.factor == (1.0 if late else -1.0)
    assert found.axis == 0


@given(seed=seeds, T=st.integers(3, 6), B=st.integers(1, 4), D=st.integers(2, 4))
def test_shift_along_another_time_axis(seed: int, T: int, B: int, D: int) -> None:
    ref = _ref(seed, (B, T, D))
    hand = np.zeros_like(ref)
    hand[:, 1:] = ref[:, :-1]
    found = _judge(hand, ref, time_axis=1)
    assert (found.kind, found.axis) == ("shift", 1)


@given(seed=seeds, shape=multi, q=st.floats(0.2, 0.9))
def test_value_clipping(seed: int, shape: tuple[int, ...], q: float) -> None:
    ref = _ref(seed, shape)
    c = float(np.quantile(np.abs(ref), q))
    assume(c > 0 and (np.abs(ref) > c).any())
    found = _judge(np.clip(ref, -c, c), ref)
    assert found.kind == "clipped"
    assert found.factor == c
    assert f"{int((np.abs(ref) > c).sum())} entries clipped" in found.summary


def _grow(hand: np.ndarray, where: Any, rng: np.random.Generator) -> None:
    """A planted error that moves entries away from the reference, outwards (never towards a
    clipped value)."""
    v = hand[where]
    hand[where] = v + np.sign(v + 1e-300) * rng.uniform(0.5, 2.0, np.shape(v))


@given(seed=seeds, rows=st.integers(2, 6), cols=st.integers(4, 6), data=st.data())
def test_errors_confined_to_one_row(seed: int, rows: int, cols: int, data: st.DataObject) -> None:
    ref = _ref(seed, (rows, cols))
    i = data.draw(st.integers(0, rows - 1), label="row")
    hand = ref.copy()
    _grow(hand, (i, slice(None)), np.random.default_rng(seed + 1))
    found = _judge(hand, ref)
    assert (found.kind, found.axis, found.indices) == ("rows", 0, (i,))
    assert f"row [{i}] along axis 0" in found.summary


@given(seed=seeds, rows=st.integers(4, 6), cols=st.integers(2, 6), data=st.data())
def test_errors_confined_to_one_column(seed: int, rows: int, cols: int, data: st.DataObject) -> None:
    ref = _ref(seed, (rows, cols))
    j = data.draw(st.integers(0, cols - 1), label="column")
    hand = ref.copy()
    _grow(hand, (slice(None), j), np.random.default_rng(seed + 1))
    found = _judge(hand, ref)
    assert (found.kind, found.axis, found.indices) == ("columns", 1, (j,))


@given(seed=seeds, shape=shapes, data=st.data())
def test_errors_confined_to_a_few_entries(seed: int, shape: tuple[int, ...], data: st.DataObject) -> None:
    n = int(np.prod(shape))
    assume(n >= 2)
    k = data.draw(st.integers(1, min(3, n - 1)), label="how many")
    flat = data.draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k, unique=True), label="where")
    ref = _ref(seed, shape)
    hand = ref.copy()
    for f in flat:
        _grow(hand.reshape(-1), f, np.random.default_rng(seed + f))
    found = _judge(hand, ref)
    assert found.kind == "entries"
    expected = sorted(tuple(int(i) for i in np.unravel_index(f, shape)) for f in flat)
    assert list(found.indices) == expected


@given(seed=seeds, T=st.integers(3, 6), B=st.integers(2, 4), D=st.integers(2, 4), data=st.data())
def test_errors_confined_to_one_time_step(seed: int, T: int, B: int, D: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(0, T - 1), label="step")
    ref = _ref(seed, (T, B, D))
    hand = ref.copy()
    _grow(hand, t, np.random.default_rng(seed + 1))
    found = _judge(hand, ref)
    assert (found.kind, found.axis, found.indices) == ("time_steps", 0, (t,))


def test_dropped_term_is_noted() -> None:
    ref = _ref(3, (5, 6))
    hand = ref.copy()
    hand[2] = 0.0
    found = _judge(hand, ref)
    assert found.kind == "rows" and "dropped term" in found.summary


@settings(max_examples=40)
@given(seed=seeds, shape=multi)
def test_unrelated_hand_is_not_misnamed(seed: int, shape: tuple[int, ...]) -> None:
    ref = _ref(seed, shape)
    hand = _ref(seed ^ 0x5A5A5A5A, shape)
    found = _judge(hand, ref)
    assert found is not None
    assert found.kind not in ("sign_flip", "scale", "transpose", "zero")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), shape=st.sampled_from([(3,), (2, 3), (4, 4)]))
def test_a_reference_equal_to_the_hand_gradient_is_no_scale_factor(seed: int, shape: tuple[int, ...]) -> None:
    """The entries were judged wrong by another source (finite differences outvoting autodiff):
    a factor of 1 against this one is agreement, never "1 × the reference"."""
    hand = _ref(seed, shape)
    found = diagnose(hand, hand.copy(), np.ones(shape, dtype=bool), rtol=RTOL, atol=1e-12)
    assert found is None or found.kind != "scale"
