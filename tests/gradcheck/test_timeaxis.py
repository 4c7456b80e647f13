"""timeaxis.py: which axis of a sequence tensor is time, read from the user's code."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradcheck as gc
from gradcheck import timeaxis

# --------------------------------------------------------------------------- docstrings

TIME_NAMES = sorted(timeaxis._TIME)
BATCH_NAMES = sorted(timeaxis._BATCH)


@given(time=st.sampled_from(TIME_NAMES), batch=st.sampled_from(BATCH_NAMES),
       upper=st.booleans(), time_first=st.booleans(), feature=st.sampled_from(["D", "H", "input_size"]))
def test_a_documented_layout_gives_the_time_axis(time: str, batch: str, upper: bool, time_first: bool,
                                                 feature: str) -> None:
    t, b = (time.upper(), batch.upper()) if upper else (time, batch)
    shape = f"({t}, {b}, {feature})" if time_first else f"({b}, {t}, {feature})"
    doc = f"Run the layer.\n\n- x: input data of shape {shape}.\n- h0: initial state, of shape (N, H)"
    assert timeaxis.from_docstrings([doc]) == (0 if time_first else 1)


def test_docstrings_that_disagree_or_say_nothing_give_no_axis() -> None:
    assert timeaxis.from_docstrings(["x of shape (N, T, D)", "y of shape (T, N, H)"]) is None
    assert timeaxis.from_docstrings(["weights of shape (D, H, K)", "", "no shapes here"]) is None
    assert timeaxis.from_docstrings(["(N, C, H)"]) is None  # no time name
    assert timeaxis.from_docstrings(["(N, D, T)"]) is None  # time last: not one of the first two
    assert timeaxis.from_docstrings(["x (N, T, D) and out (N, T, H)"]) == 1


# --------------------------------------------------------------------------- states


@given(a=st.integers(1, 9), b=st.integers(1, 9), H=st.integers(1, 7),
       name=st.sampled_from(["h0", "hprev", "c0", "h_init", "state", "hidden", "params.h0"]))
def test_a_batched_state_gives_the_time_axis(a: int, b: int, H: int, name: str) -> None:
    shape = (a, b, 3)
    batch_first = timeaxis.from_states(shape, [(name, np.zeros((a, H)))])
    time_first = timeaxis.from_states(shape, [(name, np.zeros((b, H)))])
    if a == b:
        assert batch_first is None and time_first is None  # nothing tells the axes apart
    else:
        assert (batch_first, time_first) == (1, 0)


def test_other_arrays_are_no_evidence() -> None:
    shape = (5, 3, 4)
    assert timeaxis.from_states(shape, [("Wx", np.zeros((5, 4))), ("b", np.zeros(5))]) is None
    assert timeaxis.from_states(shape, [("h0", np.zeros(5))]) is None  # 1-D: the zoo's shared h0
    assert timeaxis.from_states(shape, [("h0", np.zeros((5, 2))), ("c0", np.zeros((3, 2)))]) is None


def test_resolve_order_given_docstring_states_default() -> None:
    shapes = [(4, 3), (5, 2, 3)]
    states = [("h0", np.zeros((2, 4)))]
    assert timeaxis.resolve(1, shapes, ["(T, N, D)"], states) == timeaxis.TimeAxis(1, "given")
    assert timeaxis.resolve(None, shapes, [], []).axis is None
    assert timeaxis.resolve("auto", shapes, ["(N, T, D)"], states).axis == 1
    assert timeaxis.resolve("auto", shapes, [], states) == timeaxis.TimeAxis(0, "state shapes")
    guessed = timeaxis.resolve("auto", shapes, [], [])
    assert guessed.axis == 0 and guessed.guessed
    assert "time_axis=1" in guessed.note((5, 2, 3))
    assert not timeaxis.resolve("auto", [(4, 3)], [], []).guessed  # no sequence leaf


# --------------------------------------------------------------------------- through a check


def _rnn_forward(x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray) -> Any:
    N, T, _ = x.shape
    h, prev, cache = np.zeros((N, T, h0.shape[1])), h0, []
    for t in range(T):
        nxt = np.tanh(x[:, t, :] @ Wx + prev @ Wh + b)
        cache.append((x[:, t, :], prev, nxt))
        h[:, t, :], prev = nxt, nxt
    return h, (cache, Wx, Wh)


def _rnn_backward_bug_at(step: int) -> Any:
    def rnn_backward(dh: np.ndarray, cache: Any) -> Any:
        steps, Wx, Wh = cache
        N, T, H = dh.shape
        dx = np.zeros((N, T, Wx.shape[0]))
        dWx, dWh, db, dprev = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H), np.zeros((N, H))
        for t in reversed(range(T)):
            xt, prev, nxt = steps[t]
            da = (dh[:, t, :] + dprev) * (1 - nxt ** 2)
            dx[:, t, :] = da @ Wx.T * (2.0 if t == step else 1.0)
            dWx += xt.T @ da
            dWh += prev.T @ da
            db += da.sum(0)
            dprev = da @ Wh.T
        return dx, dprev, dWx, dWh, db
    return rnn_backward


def rnn_forward_documented(x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray,
                           b: np.ndarray) -> Any:
    """A vanilla RNN over a whole sequence (CS231n's layout).

    - x: input data for the entire timeseries, of shape (N, T, D).
    - h0: initial hidden state, of shape (N, H).
    """
    return _rnn_forward(x, h0, Wx, Wh, b)


def _case(N: int, T: int, batched_h0: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(3)
    D, H = 3, 4
    params = {"h0": rng.standard_normal((N, H) if batched_h0 else (N * H,))[..., ] if batched_h0
              else rng.standard_normal((N, H)),
              "Wx": 0.4 * rng.standard_normal((D, H)), "Wh": 0.4 * rng.standard_normal((H, H)),
              "b": rng.standard_normal(H)}
    return params, rng.standard_normal((N, T, D))


@pytest.mark.parametrize("forward", [rnn_forward_documented, _rnn_forward], ids=["docstring", "h0 shape"])
def test_batch_first_data_names_the_time_step(forward: Any) -> None:
    params, x = _case(N=3, T=5)
    layer = gc.cs231n_layer(forward, _rnn_backward_bug_at(2), params=["h0", "Wx", "Wh", "b"])
    res = gc.check_layer(layer, params, x, jax_twin=False)
    leaf = res.leaf("x").to_dict()
    assert leaf["verdict"] == "fail" and leaf["time_axis"] == 1
    assert leaf["diagnosis"]["kind"] == "time_steps"
    assert (leaf["diagnosis"]["axis"], leaf["diagnosis"]["indices"]) == (1, [2])
    assert not any("time_axis was not given" in n for n in res.notes)


def test_an_ambiguous_layout_is_said_on_a_failing_sequence() -> None:
    """No docstring, no batched state: axis 0 is assumed, and the failing check says so."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 2))

    def loss(p: dict[str, np.ndarray]) -> float:
        return float(np.sum(np.sin(p["x"])))

    def grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = np.cos(p["x"])
        g[:, 1] *= 2.0
        return {"x": g}

    res = gc.check_grad(loss, grad, {"x": x}, references=("numeric",), jax_twin=False)
    assert res.verdict == "fail"
    assert any("time_axis was not given" in n and "time_axis=1" in n for n in res.notes)
    fine = gc.check_grad(loss, lambda p: {"x": np.cos(p["x"])}, {"x": x}, references=("numeric",),
                         jax_twin=False)
    assert fine.passed and not any("time_axis" in n for n in fine.notes)
    given = gc.check_grad(loss, grad, {"x": x}, references=("numeric",), jax_twin=False, time_axis=1,
                          mode="full")
    assert not any("time_axis was not given" in n for n in given.notes)
    assert given.leaf("x").to_dict()["diagnosis"]["indices"] == [1]


def test_the_zoo_layout_stays_time_first() -> None:
    import reference.rnn

    layer, params, x = reference.rnn.make_case(np.random.default_rng(0), T=5, B=3)
    prob = gc.check_layer(layer, params, x)
    assert prob.passed
    from gradcheck import problem
    from gradcheck.options import validate

    assert problem.layer_problem(layer, params, x, validate({})).time_axis.axis == 0
