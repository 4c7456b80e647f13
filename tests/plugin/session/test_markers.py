"""Marker options go through the check options' own validator, so both read the same."""

from __future__ import annotations

from typing import Any

import pytest

from gradcheck.errors import InvalidArgument
from gradcheck.options import KNOWN, normalise
from gradcheck.session.markers import MARKER_KEYS, MarkerError, marker_options


def _options(**kwargs: Any) -> dict[str, Any]:
    return marker_options([pytest.mark.gradcheck(**kwargs).mark])


def test_every_marker_key_is_a_check_option() -> None:
    assert set(MARKER_KEYS) <= set(KNOWN)
    assert list(MARKER_KEYS) == sorted(MARKER_KEYS)  # the order the messages list them in


@pytest.mark.parametrize(
    ("key", "value"),
    [("mode", "fast"), ("references", ("numeric", "torch")), ("references", ()), ("rtol", -1.0),
     ("atol", "small"), ("atol", {}), ("seed", True), ("seed", -3), ("seed", 1.5)],
)
def test_a_bad_value_reads_as_the_check_option_error(key: str, value: Any) -> None:
    with pytest.raises(InvalidArgument) as from_call:
        normalise(key, value)
    with pytest.raises(MarkerError) as from_marker:
        _options(**{key: value})
    assert str(from_marker.value) == str(from_call.value)
    assert from_marker.value.__cause__ is None and from_marker.value.__suppress_context__


def test_an_unknown_key_names_the_closest_and_lists_the_keys() -> None:
    with pytest.raises(MarkerError) as info:
        _options(rtl=1e-3)
    assert str(info.value) == ("unknown key 'rtl' (did you mean 'rtol'?); "
                               "keys are atol, jax_twin, mode, references, rtol, seed")


def test_check_options_that_are_not_marker_keys_are_refused() -> None:
    with pytest.raises(MarkerError, match=r"^unknown key 'probes'; keys are atol, jax_twin, mode"):
        _options(probes=4)


def test_positional_arguments_are_refused_in_any_marker() -> None:
    good = pytest.mark.gradcheck(seed=1).mark
    with pytest.raises(MarkerError, match=r"^takes keyword options only, got positional \('full',\)"):
        marker_options([good, pytest.mark.gradcheck("full").mark])


def test_values_are_normalised_like_call_options() -> None:
    got = _options(references="autodiff", atol={"float64": 0}, seed=0, mode="directional")
    assert got == {"references": ("autodiff",), "atol": {"float64": 0}, "seed": 0, "mode": "directional"}
    assert marker_options([]) == {}
