"""Notebook style: layer objects that keep their weights as attributes (``self.Wx``), cache in
``forward(x)`` (``self.cache``), and store gradients in ``backward(dh)`` (``self.dWx``); an LSTM
that loops over time writing ``h[:, t, :] = ...`` into ``np.zeros`` buffers; a base class with
``super().__init__()``; a variant keeping ``self.params`` / ``self.grads`` dicts."""

# The user's code below is written the way people write it, lint and all.
# ruff: noqa: RUF059

import numpy as np

import gradcheck as gc

from ._expect import assert_hand_blamed, assert_twin_pass, assert_unchanged, snapshot, wrong_entries

# ----------------------------------------------------------------------------- the user's code


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def stable_sigmoid(x):
    """A numerically stable version of the logistic sigmoid function (CS231n rnn_layers.py)."""
    pos_mask = x >= 0
    neg_mask = x < 0
    z = np.zeros_like(x)
    z[pos_mask] = np.exp(-x[pos_mask])
    z[neg_mask] = np.exp(x[neg_mask])
    top = np.ones_like(x)
    top[neg_mask] = z[neg_mask]
    return top / (1 + z)


class Layer:
    def __init__(self):
        self.cache = None
        self.training = True

    def __call__(self, x):
        return self.forward(x)

    def zero_grad(self):
        for name in self.param_names:
            setattr(self, "d" + name, np.zeros_like(getattr(self, name)))


class LSTM(Layer):
    param_names = ("Wx", "Wh", "b")

    def __init__(self, input_dim, hidden_dim, seed=0, bug=None, act=sigmoid):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.Wx = rng.normal(size=(input_dim, 4 * hidden_dim)) / np.sqrt(input_dim)
        self.Wh = rng.normal(size=(hidden_dim, 4 * hidden_dim)) / np.sqrt(hidden_dim)
        self.b = rng.normal(size=4 * hidden_dim) * 0.1
        self.hidden_dim = hidden_dim
        self.bug = bug
        self.act = act
        self.zero_grad()

    def step_forward(self, x, prev_h, prev_c):
        H = self.hidden_dim
        a = np.dot(x, self.Wx) + np.dot(prev_h, self.Wh) + self.b
        i = self.act(a[:, :H])
        f = self.act(a[:, H:2 * H])
        o = self.act(a[:, 2 * H:3 * H])
        g = np.tanh(a[:, 3 * H:])
        next_c = f * prev_c + i * g
        next_h = o * np.tanh(next_c)
        cache = (x, prev_h, prev_c, i, f, o, g, next_c)
        return next_h, next_c, cache

    def step_backward(self, dnext_h, dnext_c, cache):
        x, prev_h, prev_c, i, f, o, g, next_c = cache
        tc = np.tanh(next_c)
        do = dnext_h * tc
        dc = dnext_c + dnext_h * o * (1 - tc ** 2)
        df = dc * prev_c
        di = dc * g
        dg = dc * i
        dprev_c = dc * f
        da = np.hstack((di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)))
        dx = np.dot(da, self.Wx.T)
        dprev_h = np.dot(da, self.Wh.T)
        dWx = np.dot(x.T, da)
        dWh = np.dot(prev_h.T, da)
        db = np.sum(da, axis=0)
        return dx, dprev_h, dprev_c, dWx, dWh, db

    def forward(self, x):
        N, T, D = x.shape
        H = self.hidden_dim
        h = np.zeros((N, T, H))
        prev_h = np.zeros((N, H))
        prev_c = np.zeros((N, H))
        self.cache = []
        for t in range(T):
            next_h, next_c, step_cache = self.step_forward(x[:, t, :], prev_h, prev_c)
            h[:, t, :] = next_h
            self.cache.append(step_cache)
            prev_h, prev_c = next_h, next_c
        return h

    def backward(self, dh):
        N, T, H = dh.shape
        D = self.Wx.shape[0]
        dx = np.zeros((N, T, D))
        dprev_h = np.zeros((N, H))
        dprev_c = np.zeros((N, H))
        self.dWx = np.zeros_like(self.Wx)
        self.dWh = np.zeros_like(self.Wh)
        self.db = np.zeros_like(self.b)
        first = 1 if self.bug == "skip_first_step" else 0  # planted: off by one in time
        for t in reversed(range(first, T)):
            dnext_c = np.zeros_like(dprev_c) if self.bug == "drop_dc" else dprev_c
            dx_t, dprev_h, dprev_c, dWx, dWh, db = self.step_backward(
                dh[:, t, :] + dprev_h, dnext_c, self.cache[t])
            dx[:, t, :] = dx_t
            self.dWx += dWx
            self.dWh += dWh
            if self.bug == "bias_overwritten":  # planted: = instead of +=
                self.db = db
            else:
                self.db += db
        return dx


class LSTMDict:
    """The same cell, parameters in ``self.params`` and gradients in ``self.grads``."""

    def __init__(self, input_dim, hidden_dim, seed=0, swap_bug=False):
        rng = np.random.default_rng(seed)
        self.params = {
            "Wx": rng.normal(size=(input_dim, 4 * hidden_dim)) * 0.5,
            "Wh": rng.normal(size=(hidden_dim, 4 * hidden_dim)) * 0.5,
            "b": np.zeros(4 * hidden_dim),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.swap_bug = swap_bug
        self.cache = {}

    def forward(self, x):
        Wx, Wh, b = self.params["Wx"], self.params["Wh"], self.params["b"]
        N, T, D = x.shape
        H = Wh.shape[0]
        hs = np.zeros((N, T, H))
        cs = np.zeros((N, T, H))
        gates = np.zeros((N, T, 4 * H))
        h_prev, c_prev = np.zeros((N, H)), np.zeros((N, H))
        for t in range(T):
            a = x[:, t].dot(Wx) + h_prev.dot(Wh) + b
            gates[:, t, :3 * H] = sigmoid(a[:, :3 * H])
            gates[:, t, 3 * H:] = np.tanh(a[:, 3 * H:])
            i, f, o, g = np.split(gates[:, t], 4, axis=1)
            cs[:, t] = f * c_prev + i * g
            hs[:, t] = o * np.tanh(cs[:, t])
            h_prev, c_prev = hs[:, t], cs[:, t]
        self.cache = {"x": x, "hs": hs, "cs": cs, "gates": gates}
        return hs

    def backward(self, dhs):
        x, hs, cs, gates = (self.cache[k] for k in ("x", "hs", "cs", "gates"))
        Wx, Wh = self.params["Wx"], self.params["Wh"]
        N, T, H = dhs.shape
        grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        dx = np.zeros_like(x)
        dh_next, dc_next = np.zeros((N, H)), np.zeros((N, H))
        for t in reversed(range(T)):
            i, f, o, g = np.split(gates[:, t], 4, axis=1)
            c_prev = cs[:, t - 1] if t > 0 else np.zeros((N, H))
            h_prev = hs[:, t - 1] if t > 0 else np.zeros((N, H))
            dh = dhs[:, t] + dh_next
            tc = np.tanh(cs[:, t])
            dc = dc_next + dh * o * (1 - tc ** 2)
            da_i, da_f = dc * g * i * (1 - i), dc * c_prev * f * (1 - f)
            if self.swap_bug:  # planted: input and forget gate blocks in the wrong order
                da_i, da_f = da_f, da_i
            da = np.concatenate([da_i, da_f, dh * tc * o * (1 - o), dc * i * (1 - g ** 2)], axis=1)
            grads["Wx"] += x[:, t].T.dot(da)
            grads["Wh"] += h_prev.T.dot(da)
            grads["b"] += da.sum(axis=0)
            dx[:, t] = da.dot(Wx.T)
            dh_next = da.dot(Wh.T)
            dc_next = dc * f
        self.grads = grads
        return dx


# ----------------------------------------------------------------------------- the tests

N, T, D, H = 2, 3, 3, 2


def _x(seed=10):
    return np.random.default_rng(seed).normal(size=(N, T, D))


def _check(obj, x, **opts):
    layer = gc.stateful_layer(obj, params=["Wx", "Wh", "b"])
    return gc.check_layer(layer, {"Wx": obj.Wx, "Wh": obj.Wh, "b": obj.b}, x, **opts)


def _state(obj):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(obj).items()}


def test_lstm_object_passes_with_the_twin():
    lstm = LSTM(D, H, seed=0)
    x = _x()
    before_globals = snapshot(globals())
    before = _state(lstm)
    r = _check(lstm, x, time_axis=1)
    assert_twin_pass(r)
    assert [leaf.name for leaf in r.leaves] == ["Wx", "Wh", "b", "x"]
    # the user's object: same class, weights still the same numpy arrays, cache all numpy
    assert type(lstm) is LSTM
    for name in ("Wx", "Wh", "b"):
        assert type(getattr(lstm, name)) is np.ndarray
        np.testing.assert_array_equal(getattr(lstm, name), before[name])
    assert set(vars(lstm)) == set(before)
    assert isinstance(lstm.cache, list) and len(lstm.cache) == T
    assert all(type(a) is np.ndarray for step in lstm.cache for a in step)
    assert all(type(getattr(lstm, "d" + n)) is np.ndarray for n in LSTM.param_names)
    assert lstm.act is sigmoid and LSTM.__init__.__globals__ is globals()
    assert_unchanged(globals(), before_globals)


def test_lstm_called_through_dunder_call():
    lstm = LSTM(D, H, seed=1)
    x = _x(11)
    h = lstm(x)  # Layer.__call__ -> forward
    assert h.shape == (N, T, H)

    class CallingLayer:
        """forward via __call__ of a sub-layer, as a model container does."""

        def __init__(self, inner):
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

        def backward(self, dh):
            dx = self.inner.backward(dh)
            self.dWx, self.dWh, self.db = self.inner.dWx, self.inner.dWh, self.inner.db
            return dx

    model = CallingLayer(lstm)
    layer = gc.stateful_layer(model, params=[])  # parameters live on the inner layer
    r = gc.check_layer(layer, {}, x)
    assert_twin_pass(r)


def test_lstm_skipping_the_first_time_step_is_confined_to_step_0():
    lstm = LSTM(D, H, seed=2, bug="skip_first_step")
    r = _check(lstm, _x(12), time_axis=1)
    leaf = assert_hand_blamed(r, "x")
    assert {i[1] for i in wrong_entries(leaf)} == {0}
    assert leaf.n_mismatched == N * D
    for name in ("Wx", "b"):
        assert_hand_blamed(r, name)
    # with h_{-1} = 0 step 0 contributes nothing to dWh: skipping it is invisible there
    assert r.leaf("Wh").verdict == "pass"


def test_lstm_bias_gradient_overwritten_instead_of_accumulated():
    lstm = LSTM(D, H, seed=3, bug="bias_overwritten")
    r = _check(lstm, _x(13))
    assert_hand_blamed(r, "b", only=["b"])


def test_lstm_dropping_the_cell_gradient_is_blamed_on_the_hand():
    lstm = LSTM(D, H, seed=4, bug="drop_dc")
    r = _check(lstm, _x(14), time_axis=1)
    for name in ("Wx", "Wh", "b", "x"):
        assert_hand_blamed(r, name)


def test_lstm_with_the_cs231n_stable_sigmoid():
    """Boolean-mask writes ``z[pos_mask] = np.exp(-x[pos_mask])`` on traced values."""
    lstm = LSTM(D, H, seed=5, act=stable_sigmoid)
    r = _check(lstm, _x(15)[:, :2])
    assert_twin_pass(r)


def test_dict_lstm_passes_and_its_dicts_stay_numpy():
    obj = LSTMDict(D, H, seed=6)
    params0 = {k: v.copy() for k, v in obj.params.items()}
    r = gc.check_layer(gc.stateful_layer(obj), dict(obj.params), _x(16))
    assert_twin_pass(r)
    assert set(obj.params) == {"Wx", "Wh", "b"}
    for k, v in obj.params.items():
        assert type(v) is np.ndarray
        np.testing.assert_array_equal(v, params0[k])
    assert all(type(v) is np.ndarray for v in obj.grads.values())
    assert all(type(v) is np.ndarray for v in obj.cache.values())


def test_dict_lstm_swapped_gate_blocks_are_blamed_on_the_hand():
    obj = LSTMDict(D, H, seed=7, swap_bug=True)
    r = gc.check_layer(gc.stateful_layer(obj), dict(obj.params), _x(17))
    for name in ("Wx", "Wh", "b", "x"):
        assert_hand_blamed(r, name)
    # one step: nothing flows back in time, so only the input and forget gates' blocks are wrong
    x1 = _x(18)[:, :1]
    r1 = gc.check_layer(gc.stateful_layer(obj), dict(obj.params), x1)
    leaf = assert_hand_blamed(r1, "b")
    assert leaf.n_mismatched == 2 * H
    assert {i[0] for i in wrong_entries(leaf)} <= set(range(2 * H))
