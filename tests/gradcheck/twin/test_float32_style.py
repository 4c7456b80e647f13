"""float32 style: parameters stored in float32, buffers made with ``np.zeros(..., dtype=np.float32)``,
``.astype(np.float32)`` casts, a hand BPTT in float32.  The twin computes in float64 (it is the
reference for the mathematical gradient); finite differences of the float32 forward are noisy,
so autodiff is what makes the verdict sharp."""

# The user's code below is written the way people write it, lint and all.
# ruff: noqa: E741

import numpy as np
import pytest

import gradcheck as gc

from ._expect import assert_hand_blamed, assert_twin_pass, wrong_entries

F32 = np.float32

# ----------------------------------------------------------------------------- the user's code


def rnn_loss(params, xs, targets):
    """An Elman RNN over T steps, hidden states written into a float32 buffer."""
    Wx, Wh, b, V = params["Wx"], params["Wh"], params["b"], params["V"]
    T = xs.shape[0]
    H = Wh.shape[0]
    hs = np.zeros((T + 1, H), dtype=np.float32)
    for t in range(T):
        hs[t + 1] = np.tanh(np.dot(Wx, xs[t]) + np.dot(Wh, hs[t]) + b)
    ys = np.dot(hs[1:], V.T)
    loss = np.float32(0.5) * np.sum((ys - targets) ** 2, dtype=np.float32)
    return loss


def rnn_grad(params, xs, targets, bug=None):
    Wx, Wh, b, V = params["Wx"], params["Wh"], params["b"], params["V"]
    T = xs.shape[0]
    H = Wh.shape[0]
    hs = np.zeros((T + 1, H), dtype=np.float32)
    for t in range(T):
        hs[t + 1] = np.tanh(np.dot(Wx, xs[t]) + np.dot(Wh, hs[t]) + b)
    dys = np.dot(hs[1:], V.T) - targets
    dV = np.dot(dys.T, hs[1:])
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
    dh_next = np.zeros(H, dtype=np.float32)
    for t in reversed(range(T)):
        dh = np.dot(V.T, dys[t]) + dh_next
        da = dh * (1 - hs[t + 1] ** 2)
        dWx += np.outer(da, xs[t])
        if bug == "time_index":  # planted: h_{t+1} where h_t belongs
            dWh += np.outer(da, hs[t + 1])
        else:
            dWh += np.outer(da, hs[t])
        db += da
        dh_next = np.dot(Wh.T, da)
    if bug == "sign_b":
        db = -db
    if bug == "one_entry":
        dWx[2, 1] += np.float32(0.5)  # planted: a stray write into one entry
    return {"Wx": dWx, "Wh": dWh, "b": db, "V": dV.astype(np.float32)}


class Dense32:
    """A stateful layer keeping float32 weights and float32 caches."""

    def __init__(self, d_in, d_out, seed=0, bug=False):
        rng = np.random.default_rng(seed)
        self.W = (rng.normal(size=(d_in, d_out)) / np.sqrt(d_in)).astype(np.float32)
        self.b = np.zeros(d_out, dtype=np.float32)
        self.bug = bug

    def forward(self, x):
        x = x.astype(np.float32)
        out = np.zeros((x.shape[0], self.W.shape[1]), dtype=np.float32)
        for n in range(x.shape[0]):  # one example at a time, as a first implementation does
            out[n] = np.dot(x[n], self.W) + self.b
        self.cache = (x, out)
        return 1.0 / (1.0 + np.exp(-out))

    def backward(self, dout):
        x, out = self.cache
        s = 1.0 / (1.0 + np.exp(-out))
        da = (dout * s * (1 - s)).astype(np.float32)
        self.dW = np.dot(x.T, da)
        self.db = da.sum(axis=0) if not self.bug else da.sum(axis=0) * np.float32(2)
        return np.dot(da, self.W.T)


# ----------------------------------------------------------------------------- the tests

T, D, H, O = 4, 3, 3, 2


def _rnn_case(seed=0):
    rng = np.random.default_rng(seed)
    params = {"Wx": rng.normal(size=(H, D)) * 0.5, "Wh": rng.normal(size=(H, H)) * 0.5,
              "b": rng.normal(size=H) * 0.1, "V": rng.normal(size=(O, H)) * 0.5}
    params = {k: v.astype(F32) for k, v in params.items()}
    return params, rng.normal(size=(T, D)).astype(F32), rng.normal(size=(T, O)).astype(F32)


def test_float32_rnn_passes_with_the_twin():
    params, xs, targets = _rnn_case()
    copies = {k: v.copy() for k, v in params.items()}
    r = gc.check_grad(rnn_loss, rnn_grad, params, xs, targets)
    assert_twin_pass(r)
    assert all(leaf.dtype == "float32" for leaf in r.leaves)
    for k, v in params.items():
        assert v.dtype == F32 and type(v) is np.ndarray
        np.testing.assert_array_equal(v, copies[k])


@pytest.mark.parametrize("bug, leaf_name", [("time_index", "Wh"), ("sign_b", "b")])
def test_float32_rnn_planted_bugs_are_blamed_on_the_hand(bug, leaf_name):
    params, xs, targets = _rnn_case(1)
    r = gc.check_grad(rnn_loss, lambda p, x, t: rnn_grad(p, x, t, bug=bug), params, xs, targets)
    leaf = assert_hand_blamed(r, leaf_name, only=[leaf_name])
    if bug == "sign_b":
        assert leaf.diagnosis is not None and leaf.diagnosis.kind == "sign_flip", leaf.diagnosis


def test_float32_rnn_single_wrong_entry_is_named():
    params, xs, targets = _rnn_case(2)
    r = gc.check_grad(rnn_loss, lambda p, x, t: rnn_grad(p, x, t, bug="one_entry"), params, xs, targets)
    leaf = assert_hand_blamed(r, "Wx", entries=[(2, 1)], only=["Wx"])
    assert wrong_entries(leaf) == {(2, 1)} and leaf.n_mismatched == 1


def _dense_check(bug=False, seed=3):
    layer = Dense32(4, 3, seed=seed, bug=bug)
    x = np.random.default_rng(seed + 10).normal(size=(5, 4)).astype(F32)
    r = gc.check_layer(gc.stateful_layer(layer, params=["W", "b"]), {"W": layer.W, "b": layer.b}, x)
    return layer, r


def test_float32_stateful_layer_passes_and_keeps_its_float32_state():
    layer, r = _dense_check()
    assert_twin_pass(r)
    assert layer.W.dtype == F32 and layer.b.dtype == F32
    assert type(layer.W) is np.ndarray and type(layer.dW) is np.ndarray
    assert all(type(a) is np.ndarray and a.dtype == F32 for a in layer.cache)


def test_float32_stateful_layer_doubled_bias_is_blamed_on_the_hand():
    _, r = _dense_check(bug=True)
    leaf = assert_hand_blamed(r, "b", only=["b"])
    assert leaf.diagnosis is not None and leaf.diagnosis.factor == pytest.approx(2.0)
