"""options.py: validate() normalises every option, rejects each bad value with a message naming
the option and the value, suggests the closest name for an unknown option; CheckOptions is
frozen and its summary is plain JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import options as O
from gradcheck.errors import InvalidArgument
from gradcheck.options import CheckOptions, normalise, validate


def jax_twin(params: Any, *args: Any) -> float:
    return 0.0


# --------------------------------------------------------------------------- normalisation


def test_no_options_are_the_defaults() -> None:
    assert validate({}) == CheckOptions()
    assert CheckOptions().references == ("numeric", "autodiff")
    assert CheckOptions().mode == "auto"


@pytest.mark.parametrize("given_, expected", [
    ("numeric", ("numeric",)),
    ("autodiff", ("autodiff",)),
    (["autodiff", "numeric"], ("autodiff", "numeric")),
    (("numeric", "autodiff"), ("numeric", "autodiff")),
])
def test_references_become_a_tuple(given_: Any, expected: tuple[str, ...]) -> None:
    got = validate({"references": given_}).references
    assert got == expected and isinstance(got, tuple)


@pytest.mark.parametrize("key", ["seed", "probes", "worst", "full_max", "localise_max", "time_axis"])
@pytest.mark.parametrize("np_int", [np.int64, np.int32, np.uint16])
def test_numpy_ints_become_python_ints(key: str, np_int: type) -> None:
    got = getattr(validate({key: np_int(3)}), key)
    assert got == 3 and type(got) is int


def test_time_axis_may_be_none_or_negative() -> None:
    assert validate({"time_axis": None}).time_axis is None
    assert validate({"time_axis": -1}).time_axis == -1


def test_a_tolerance_mapping_is_copied() -> None:
    given_ = {np.float32: 1e-2}
    opts = validate({"rtol": given_})
    given_[np.float32] = 0.5
    assert opts.rtol == {np.float32: 1e-2}


def test_name_becomes_a_string() -> None:
    assert validate({"name": 7}).name == "7"
    assert validate({"name": None}).name is None


@pytest.mark.parametrize("value", [None, True, False])
def test_complex_step_takes_none_true_false(value: bool | None) -> None:
    assert validate({"complex_step": value}).complex_step is value


# --------------------------------------------------------------------------- rejection


BAD: list[tuple[str, Any]] = [
    ("mode", "fast"),
    ("mode", None),
    ("references", "both"),
    ("references", ()),
    ("references", ("numeric", "jax")),
    ("references", 3),
    ("references", {"numeric"}),
    ("rtol", -1e-3),
    ("rtol", math.nan),
    ("rtol", math.inf),
    ("rtol", {}),
    ("rtol", {np.float32: -1.0}),
    ("rtol", "1e-3"),
    ("rtol", True),
    ("atol", -1.0),
    ("atol", math.nan),
    ("atol", {}),
    ("atol", {np.float64: math.nan}),
    ("seed", True),
    ("seed", -1),
    ("seed", "0"),
    ("seed", 1.0),
    ("probes", 0),
    ("probes", -2),
    ("probes", 2.5),
    ("worst", 0),
    ("full_max", 0),
    ("localise_max", False),
    ("complex_step", "yes"),
    ("complex_step", 1),
    ("complex_step", 0),
    ("batch", None),
    ("batch", 1),
    ("batch", "True"),
    ("time_axis", 0.0),
    ("time_axis", "0"),
    ("time_axis", True),
    ("jax_fun", 3),
    ("jax_fun", "jax_twin"),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v!r}" for k, v in BAD])
def test_each_bad_value_is_rejected_naming_option_and_value(key: str, value: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate({key: value})
    assert str(info.value).startswith(f"{key}={value!r}")
    # normalise() is the same check (what the pytest plugin's markers go through).
    with pytest.raises(InvalidArgument, match=re.escape(f"{key}={value!r}")):
        normalise(key, value)


def test_the_rejection_says_what_is_expected() -> None:
    with pytest.raises(InvalidArgument, match="expected one of auto, full, directional"):
        validate({"mode": "fast"})
    with pytest.raises(InvalidArgument, match="expected a non-negative int"):
        validate({"seed": -1})
    with pytest.raises(InvalidArgument, match="expected a positive int"):
        validate({"probes": 0})
    with pytest.raises(InvalidArgument, match="is not callable"):
        validate({"jax_fun": 3})


def test_invalid_argument_is_also_a_type_error() -> None:
    with pytest.raises(TypeError):
        validate({"mode": "fast"})


@pytest.mark.parametrize(("typo", "meant"), [
    ("sed", "seed"), ("refrences", "references"), ("rtl", "rtol"), ("prob", "probes"),
    ("complex", "complex_step"), ("time_axes", "time_axis"),
])
def test_unknown_option_suggests_the_closest(typo: str, meant: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate({typo: 1})
    text = str(info.value)
    assert text.startswith(f"unknown option {typo!r}")
    assert f"did you mean {meant!r}?" in text
    assert all(k in text for k in O.KNOWN)


def test_unknown_option_without_a_close_name_has_no_hint() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate({"zzzzzzzz": 1})
    assert "did you mean" not in str(info.value)
    assert "unknown option 'zzzzzzzz'" in str(info.value)


def test_an_unknown_option_is_reported_before_bad_values() -> None:
    with pytest.raises(InvalidArgument, match="unknown option 'sed'"):
        validate({"mode": "fast", "sed": 1})


def test_known_is_every_field() -> None:
    assert set(O.KNOWN) == {f.name for f in dataclasses.fields(CheckOptions)}
    assert list(O.KNOWN) == sorted(O.KNOWN)


# --------------------------------------------------------------------------- the record


def test_check_options_is_frozen() -> None:
    opts = validate({"seed": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.seed = 4  # type: ignore[misc]
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        opts.extra = 1  # type: ignore[attr-defined]
    assert opts.seed == 3


def test_summary_is_json_with_dtype_keyed_tolerances_as_strings() -> None:
    opts = validate({"rtol": {np.float32: 1e-2, "float64": 1e-6}, "atol": 1e-9,
                     "references": "numeric", "jax_fun": jax_twin, "seed": np.int64(5),
                     "name": "case", "time_axis": None})
    summary = opts.summary()
    back = json.loads(json.dumps(summary))
    assert back == summary
    assert summary["rtol"] == {"float32": 1e-2, "float64": 1e-6}
    assert summary["atol"] == 1e-9
    assert summary["references"] == ["numeric"]
    assert summary["jax_fun"] == "jax_twin"
    assert summary["seed"] == 5 and summary["name"] == "case" and summary["time_axis"] is None
    assert set(summary) == set(O.KNOWN)


def test_default_summary_is_json() -> None:
    back = json.loads(json.dumps(CheckOptions().summary()))
    assert back["references"] == ["numeric", "autodiff"]
    assert back["rtol"] is None and back["jax_fun"] is None and back["complex_step"] is None


def test_a_tolerance_mapping_with_a_non_dtype_key_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="rtol="):
        validate({"rtol": {"bogus": 1e-3}}).summary()


def test_a_numpy_float32_tolerance_is_accepted() -> None:
    assert validate({"rtol": np.float32(1e-3)}).rtol == pytest.approx(1e-3)


# --------------------------------------------------------------------------- round trip

tolerances = st.one_of(
    st.none(),
    st.floats(0, 1, allow_nan=False),
    st.integers(0, 3),
    st.dictionaries(st.sampled_from([np.float16, np.float32, np.float64, "float32"]),
                    st.floats(0, 1, allow_nan=False), min_size=1, max_size=3),
)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "mode": st.sampled_from(O.MODES),
    "references": st.one_of(st.sampled_from(O.REFERENCES),
                            st.lists(st.sampled_from(O.REFERENCES), min_size=1, max_size=2,
                                     unique=True)),
    "jax_fun": st.sampled_from([None, jax_twin]),
    "rtol": tolerances,
    "atol": tolerances,
    "seed": st.one_of(st.integers(0, 2**63 - 1), st.integers(0, 2**31).map(np.int64)),
    "name": st.one_of(st.none(), st.text(max_size=8)),
    "probes": st.integers(1, 50),
    "worst": st.integers(1, 50),
    "time_axis": st.one_of(st.none(), st.integers(-4, 4)),
    "full_max": st.integers(1, 10**6),
    "localise_max": st.integers(1, 10**6),
    "complex_step": st.sampled_from([None, True, False]),
    "batch": st.booleans(),
}


@settings(max_examples=80)
@given(st.fixed_dictionaries({}, optional=VALID))
def test_any_valid_combination_round_trips(given_: dict[str, Any]) -> None:
    opts = validate(given_)
    for key, value in given_.items():
        assert getattr(opts, key) == normalise(key, value)
    # The canonical form is a fixed point: validating the fields again gives the same options.
    again = validate({f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)})
    assert again == opts
    for key in O.KNOWN:
        value = getattr(opts, key)
        assert normalise(key, value) == value
    # Options not given keep their defaults.
    for key in set(O.KNOWN) - set(given_):
        assert getattr(opts, key) == getattr(CheckOptions(), key)
    assert isinstance(opts.references, tuple)
    assert isinstance(opts.seed, int) and not isinstance(opts.seed, np.integer)
    json.dumps(opts.summary())
