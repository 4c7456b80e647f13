"""Property tests of gradcheck.strategies: arrays, layer cases, recurrent configurations."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

import gradcheck.strategies as gs
import reference.dense
import reference.rnn
from gradcheck import InvalidArgument

FLOATS = (np.float16, np.float32, np.float64)
FAST = settings(max_examples=30, deadline=None)


# ----------------------------------------------------------------------------- seeds


@FAST
@given(seed=gs.seeds())
def test_seeds_are_valid_default_rng_seeds(seed: int) -> None:
    assert isinstance(seed, int) and 0 <= seed <= 2**32 - 1
    np.random.default_rng(seed)


def test_seeds_shrink_towards_zero() -> None:
    assert find(gs.seeds(), lambda s: True) == 0
    assert find(gs.seeds(), lambda s: s >= 1000) == 1000


# ----------------------------------------------------------------------------- arrays


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4),
    dtype=st.sampled_from(FLOATS),
    kinks=st.sampled_from(["avoid", "allow", "on"]),
    bound=st.floats(0.5, 100.0),
    margin=st.floats(1e-3, 0.4),
)
def test_arrays_respect_shape_dtype_bound_and_kinks(
    data: st.DataObject, shape: tuple[int, ...], dtype: type, kinks: gs.Kinks, bound: float, margin: float
) -> None:
    x = data.draw(gs.arrays(shape, dtype, bound=bound, kinks=kinks, margin=margin))
    assert x.shape == shape and x.dtype == np.dtype(dtype)
    a = np.abs(x.astype(np.float64))
    assert np.all(np.isfinite(a)) and np.all(a <= bound)
    assert np.all((a == 0) | (a >= np.finfo(dtype).tiny)), "no subnormals"
    if kinks == "avoid":
        assert np.all(a >= margin)
    elif kinks == "on":
        assert np.any(a == 0)
        assert np.all((a == 0) | (a >= margin))


@pytest.mark.parametrize("shape, expected", [(3, (3,)), ((2, 3), (2, 3)), ((), ()), (np.int64(2), (2,))])
def test_arrays_accept_int_and_tuple_shapes(shape: Any, expected: tuple[int, ...]) -> None:
    assert find(gs.arrays(shape), lambda a: True).shape == expected


@FAST
@given(data=st.data())
def test_arrays_accept_a_strategy_of_shapes(data: st.DataObject) -> None:
    shapes = hnp.array_shapes(min_dims=1, max_dims=2, max_side=3)
    x = data.draw(gs.arrays(shapes, np.float32, kinks="on"))
    assert 1 <= x.ndim <= 2 and max(x.shape) <= 3 and x.dtype == np.float32 and np.any(x == 0)


@pytest.mark.parametrize(
    "kinks, expected", [("avoid", [1.0, 1.0, 1.0]), ("allow", [0.0, 0.0, 0.0]), ("on", [0.0, 0.0, 0.0])]
)
def test_arrays_shrink_to_simple_values(kinks: gs.Kinks, expected: list[float]) -> None:
    np.testing.assert_array_equal(find(gs.arrays(3, kinks=kinks), lambda a: True), expected)


def test_arrays_shrink_to_small_integers_and_halves() -> None:
    x = find(gs.arrays(2), lambda a: a[0] < 0 and abs(a[1]) < 1)
    np.testing.assert_array_equal(x, [-1.0, 0.5])


def test_arrays_accept_numpy_scalars_as_bound_and_margin() -> None:
    x = find(gs.arrays(2, np.float32, bound=np.float32(0.5), margin=np.float64(0.25)), lambda a: True)
    assert np.all((np.abs(x) >= 0.25) & (np.abs(x) <= 0.5))


def test_arrays_bounds_that_are_not_representable_are_rounded_inwards() -> None:
    x = find(gs.arrays(4, np.float16, bound=0.1, margin=0.09), lambda a: a.min() < 0)
    assert x.dtype == np.float16 and np.all(np.abs(x.astype(float)) <= 0.1)
    assert np.all(np.abs(x.astype(float)) >= 0.09)


# ----------------------------------------------------------------------------- bad arguments


def _factory(rng: np.random.Generator, *, dtype: Any = np.float64) -> tuple[Any, Any, Any]:
    return None, {}, rng.normal(size=2).astype(dtype)


BAD_CALLS = {
    "arrays int dtype": lambda: gs.arrays(3, np.int32),
    "arrays complex dtype": lambda: gs.arrays(3, np.complex128),
    "arrays not a dtype": lambda: gs.arrays(3, "nonsense"),
    "arrays negative shape": lambda: gs.arrays(-1),
    "arrays str in shape": lambda: gs.arrays((2, "a")),  # type: ignore[arg-type]
    "arrays bool shape": lambda: gs.arrays(True),
    "arrays zero bound": lambda: gs.arrays(3, bound=0.0),
    "arrays inf bound": lambda: gs.arrays(3, bound=float("inf")),
    "arrays bound beyond float16": lambda: gs.arrays(3, np.float16, bound=1e6),
    "arrays unknown kinks": lambda: gs.arrays(3, kinks="near"),  # type: ignore[arg-type]
    "arrays margin above bound": lambda: gs.arrays(3, bound=1.0, margin=2.0),
    "arrays zero margin": lambda: gs.arrays(3, margin=0.0),
    "arrays str margin": lambda: gs.arrays(3, margin="0.1"),  # type: ignore[arg-type]
    "arrays bool bound": lambda: gs.arrays(3, bound=True),
    "arrays no float16 in [margin, bound]": lambda: gs.arrays(3, np.float16, bound=0.1, margin=0.1 - 1e-6),
    "arrays kinks on empty": lambda: gs.arrays((2, 0), kinks="on"),
    "layer_cases not callable": lambda: gs.layer_cases(42),  # type: ignore[arg-type]
    "layer_cases rng keyword": lambda: gs.layer_cases(_factory, rng=np.random.default_rng(0)),
    "layer_cases int dtype": lambda: gs.layer_cases(_factory, dtype=np.int64),
    "layer_cases int dtype in tuple": lambda: gs.layer_cases(_factory, dtype=(np.float64, int)),
    "layer_cases no dtypes": lambda: gs.layer_cases(_factory, dtype=()),
    "recurrent_configs hidden 0": lambda: gs.recurrent_configs(hidden=0),
    "recurrent_configs length bool": lambda: gs.recurrent_configs(length=True),
    "recurrent_configs negative scale": lambda: gs.recurrent_configs(spectral_scale=-1.0),
    "recurrent_configs unknown activation": lambda: gs.recurrent_configs(activation="elu"),
    "RecurrentConfig.case int dtype": lambda: gs.RecurrentConfig(2, 2, 1.0, "tanh", 0).case(dtype=np.int32),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_arguments_raise_invalid_argument(call: Any) -> None:
    with pytest.raises(InvalidArgument):
        call()


def test_errors_found_while_drawing_name_the_problem() -> None:
    with pytest.raises(InvalidArgument, match="kinks='on' needs an entry"):
        find(gs.arrays(hnp.array_shapes(min_side=0), kinks="on"), lambda a: a.size == 0)
    with pytest.raises(InvalidArgument, match=r"expected \(layer, params, x\)"):
        find(gs.layer_cases(lambda rng, dtype: [1, 2, 3]), lambda c: True)  # type: ignore[arg-type, return-value]
    with pytest.raises(InvalidArgument, match="floating dtype"):
        find(gs.layer_cases(_factory, dtype=st.just(np.int8)), lambda c: True)


# ----------------------------------------------------------------------------- layer cases


DENSE_SIZES = {"batch": st.integers(1, 4), "d_in": st.integers(1, 6), "d_out": st.integers(1, 6)}


@FAST
@given(case=gs.layer_cases(reference.dense.make_case, **DENSE_SIZES))
def test_layer_cases_call_the_factory_with_the_drawn_dtype_seed_and_kwargs(case: gs.LayerCase) -> None:
    assert case.dtype in (np.dtype(np.float64), np.dtype(np.float32))
    assert case.factory == "reference.dense.make_case" and set(case.kwargs) == set(DENSE_SIZES)
    batch, d_in, d_out = case.kwargs["batch"], case.kwargs["d_in"], case.kwargs["d_out"]
    assert case.x.shape == (batch, d_in) and case.params["W"].shape == (d_in, d_out)
    assert case.x.dtype == case.dtype and all(p.dtype == case.dtype for p in case.params.values())
    _, params, x = reference.dense.make_case(np.random.default_rng(case.seed), dtype=case.dtype, **case.kwargs)
    np.testing.assert_array_equal(x, case.x)
    for key in params:
        np.testing.assert_array_equal(params[key], case.params[key])


@FAST
@given(data=st.data())
def test_layer_cases_dtype_may_be_one_a_tuple_or_a_strategy(data: st.DataObject) -> None:
    one = data.draw(gs.layer_cases(_factory, dtype=np.float16))
    assert one.dtype == np.float16 and one.x.dtype == np.float16
    some = data.draw(gs.layer_cases(_factory, dtype=("float32", np.float16)))
    assert some.dtype in (np.float32, np.float16)
    drawn = data.draw(gs.layer_cases(_factory, dtype=st.sampled_from([np.float64, np.float16])))
    assert drawn.dtype in (np.float64, np.float16)


@FAST
@given(case=gs.layer_cases(_factory, seed=7, dtype=np.float32))
def test_layer_cases_fixed_seed_and_fixed_kwargs(case: gs.LayerCase) -> None:
    assert case.seed == 7
    np.testing.assert_array_equal(case.x, np.random.default_rng(7).normal(size=2).astype(np.float32))


def test_layer_cases_pass_fixed_keyword_values_through() -> None:
    fixed = find(gs.layer_cases(reference.dense.make_case, activation="relu", batch=2), lambda c: True)
    assert fixed.kwargs == {"activation": "relu", "batch": 2} and fixed.layer.activation == "relu"


def test_layer_cases_unpack_as_layer_params_x() -> None:
    case = find(gs.layer_cases(reference.dense.make_case), lambda c: True)
    layer, params, x = case
    assert (layer, params, x) == (case.layer, case.params, case.x)


RNN_CASES = gs.layer_cases(reference.rnn.make_case, T=st.integers(1, 12), B=st.integers(1, 4))


def test_shrinking_lands_on_the_smallest_case() -> None:
    case = find(RNN_CASES, lambda c: True)
    assert case.kwargs == {"T": 1, "B": 1} and case.seed == 0 and case.dtype == np.float64
    assert case.x.shape == (1, 1, 3)
    assert repr(case) == "LayerCase(reference.rnn.make_case(np.random.default_rng(0), dtype=np.float64, T=1, B=1))"


def test_shrinking_lands_exactly_on_the_boundary_of_the_condition() -> None:
    case = find(RNN_CASES, lambda c: c.x.shape[0] >= 3)
    assert case.kwargs == {"T": 3, "B": 1} and case.seed == 0 and case.dtype == np.float64
    case = find(RNN_CASES, lambda c: c.x.shape[1] >= 2 and c.dtype == np.float32)
    assert case.kwargs == {"T": 1, "B": 2} and case.seed == 0 and case.dtype == np.float32
    case = find(RNN_CASES, lambda c: c.seed >= 5)
    assert case.seed == 5 and case.kwargs == {"T": 1, "B": 1}


def test_sampled_from_keywords_shrink_to_their_first_element() -> None:
    cases = gs.layer_cases(reference.rnn.make_case, activation=st.sampled_from(["sigmoid", "tanh", "relu"]))
    assert find(cases, lambda c: True).kwargs == {"activation": "sigmoid"}


# ----------------------------------------------------------------------------- reproduction


def _rebuild(source: str) -> tuple[Any, Any, Any]:
    result: tuple[Any, Any, Any] = eval(source, {"np": np, "reference": reference})
    return result


def _assert_same_case(case: gs.LayerCase, rebuilt: tuple[Any, Any, Any]) -> None:
    layer, params, x = rebuilt
    assert type(layer) is type(case.layer) and repr(layer) == repr(case.layer)
    assert x.dtype == case.x.dtype
    np.testing.assert_array_equal(x, case.x)
    assert params.keys() == case.params.keys()
    for key in params:
        assert params[key].dtype == case.params[key].dtype
        np.testing.assert_array_equal(params[key], case.params[key])


@FAST
@given(
    case=gs.layer_cases(
        reference.rnn.make_case,
        T=st.integers(1, 5),
        B=st.integers(1, 3),
        activation=st.sampled_from(["tanh", "sigmoid", "relu"]),
        spectral_scale=st.floats(0.3, 3.0),
    )
)
def test_repr_is_the_line_that_rebuilds_the_case(case: gs.LayerCase) -> None:
    assert repr(case) == f"LayerCase({case.source})"
    assert case.source.startswith(f"reference.rnn.make_case(np.random.default_rng({case.seed}), dtype=np.")
    _assert_same_case(case, _rebuild(case.source))
    _assert_same_case(case, _rebuild(repr(case).removeprefix("LayerCase(").removesuffix(")")))


def test_failing_examples_print_the_reproduction_line() -> None:
    @settings(max_examples=50, database=None, deadline=None)
    @given(case=gs.layer_cases(reference.dense.make_case, batch=st.integers(1, 4)))
    def test_fails_for_batches_of_two(case: gs.LayerCase) -> None:
        assert case.x.shape[0] < 2

    with pytest.raises(AssertionError) as info:
        test_fails_for_batches_of_two()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    line = "case=LayerCase(reference.dense.make_case(np.random.default_rng(0), dtype=np.float64, batch=2))"
    assert line in notes


# ----------------------------------------------------------------------------- recurrent configs


@FAST
@given(cfg=gs.recurrent_configs())
def test_recurrent_configs_stay_in_their_ranges(cfg: gs.RecurrentConfig) -> None:
    assert 1 <= cfg.hidden <= 8 and 1 <= cfg.length <= 12
    assert 0.3 <= cfg.spectral_scale <= 3.0
    assert cfg.activation in ("tanh", "sigmoid", "relu") and 0 <= cfg.seed <= 2**32 - 1
    assert eval(repr(cfg), {"RecurrentConfig": gs.RecurrentConfig}) == cfg


@FAST
@given(
    cfg=gs.recurrent_configs(hidden=st.integers(2, 5), length=st.integers(1, 6)),
    batch=st.integers(1, 3),
    inputs=st.integers(1, 4),
    outputs=st.integers(1, 3),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_recurrent_config_builds_the_elman_case(
    cfg: gs.RecurrentConfig, batch: int, inputs: int, outputs: int, dtype: type
) -> None:
    case = cfg.case(batch=batch, inputs=inputs, outputs=outputs, dtype=dtype)
    layer, params, x = case
    assert isinstance(layer, reference.rnn.ElmanRNN) and layer.activation == cfg.activation
    assert x.shape == (cfg.length, batch, inputs) and x.dtype == dtype
    H = cfg.hidden
    assert params["U"].shape == (H, H) and params["V"].shape == (inputs, H) and params["W"].shape == (H, outputs)
    assert all(p.dtype == dtype for p in params.values())
    sigma = np.linalg.norm(params["U"].astype(np.float64), ord=2)
    assert sigma == pytest.approx(cfg.spectral_scale, rel=1e-5 if dtype == np.float32 else 1e-12)
    assert layer.forward(params, x).shape == (cfg.length, batch, outputs)
    assert case.seed == cfg.seed and case.kwargs["spectral_scale"] == cfg.spectral_scale
    _assert_same_case(case, _rebuild(case.source))


def test_recurrent_configs_shrink_to_the_smallest_network() -> None:
    cfg = find(gs.recurrent_configs(), lambda c: True)
    assert cfg == gs.RecurrentConfig(hidden=1, length=1, spectral_scale=1.0, activation="tanh", seed=0)
    assert find(gs.recurrent_configs(), lambda c: c.length >= 4).length == 4


def test_recurrent_configs_accept_fixed_values() -> None:
    cfg = find(gs.recurrent_configs(hidden=3, length=2, spectral_scale=0.5, activation="relu", seed=9), lambda c: True)
    assert cfg == gs.RecurrentConfig(hidden=3, length=2, spectral_scale=0.5, activation="relu", seed=9)


# ----------------------------------------------------------------------------- end to end


@settings(max_examples=8, deadline=None)
@given(case=gs.layer_cases(reference.dense.make_case, batch=st.integers(1, 4), d_in=st.integers(1, 8),
                           d_out=st.integers(1, 8)))
def test_reference_dense_passes_on_every_drawn_case(case: gs.LayerCase) -> None:
    res = case.check()
    assert res.passed, res
    assert res.seed == case.seed


@settings(max_examples=3, deadline=None)
@given(cfg=gs.recurrent_configs(hidden=st.integers(1, 3), length=st.integers(1, 4)))
def test_reference_rnn_passes_on_drawn_configs(cfg: gs.RecurrentConfig) -> None:
    assert cfg.case(batch=1).check().passed


def test_check_options_pass_through_and_seed_can_be_overridden() -> None:
    case = find(gs.layer_cases(reference.dense.make_case, seed=st.integers(3, 10)), lambda c: True)
    assert case.seed == 3
    res = case.check(references=("numeric",), seed=11)
    assert res.passed and res.seed == 11 and res.references == ("numeric",)
