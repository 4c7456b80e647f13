"""The adapters: CS231n (out, cache) functions, stateful layer objects, loss-and-grads scripts."""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck as gc

# --------------------------------------------------------------------------- CS231n style


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1).dot(w) + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, _ = cache
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T.dot(dout)
    db = np.sum(dout, axis=0)
    return dx, dw, db


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    dx, x = dout, cache
    dx[x <= 0] = 0  # CS231n writes into dout: a backward that modifies its input
    return dx


def conv_forward_naive(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, _, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = 1 + (H + 2 * pad - HH) // stride, 1 + (W + 2 * pad - WW) // stride
    out = np.zeros((N, F, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            win = xp[:, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
            out[:, :, i, j] = np.tensordot(win, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache, *, bug=False):
    x, w, _, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            win = xp[:, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
            dw += np.tensordot(dout[:, :, i, j], win, axes=([0], [0]))
            kernel = w[:, :, ::-1, ::-1] if bug else w
            dxp[:, :, i * stride:i * stride + HH, j * stride:j * stride + WW] += np.tensordot(
                dout[:, :, i, j], kernel, axes=([1], [0]))
    db = dout.sum(axis=(0, 2, 3))
    return dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]], dw, db


def test_cs231n_affine_passes_and_names_leaves() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 2, 3))
    layer = gc.cs231n_layer(affine_forward, affine_backward)
    res = gc.check_layer(layer, {"w": rng.normal(size=(6, 5)), "b": rng.normal(size=5)}, x)
    assert res.passed, res.message()
    assert [leaf.name for leaf in res.leaves] == ["w", "b", "x"]


def test_cs231n_relu_with_in_place_backward_passes() -> None:
    rng = np.random.default_rng(1)
    res = gc.check_layer(gc.cs231n_layer(relu_forward, relu_backward), {}, rng.normal(size=(3, 4)))
    assert res.passed, res.message()
    assert any("modifies its inputs" in n for n in res.notes)


@pytest.mark.parametrize("bug", [False, True])
def test_cs231n_conv_with_static_params(bug: bool) -> None:
    rng = np.random.default_rng(2)
    conv_param = {"stride": 2, "pad": 1}
    layer = gc.cs231n_layer(conv_forward_naive,
                            lambda d, c: conv_backward_naive(d, c, bug=bug),
                            static={"conv_param": conv_param})
    params = {"w": rng.normal(size=(2, 3, 3, 3)), "b": rng.normal(size=2)}
    res = gc.check_layer(layer, params, rng.normal(size=(2, 3, 5, 5)))
    if not bug:
        assert res.passed, res.message()
    else:
        assert [leaf.name for leaf in res.failures] == ["x"]
        assert res.leaf("x").blame == "hand"
    assert conv_param == {"stride": 2, "pad": 1}


def test_cs231n_wrong_number_of_gradients_is_a_clear_error() -> None:
    layer = gc.cs231n_layer(affine_forward, lambda d, c: affine_backward(d, c)[:2])
    with pytest.raises(gc.GradientStructureError, match=r"expected dx followed by one per parameter"):
        gc.check_layer(layer, {"w": np.ones((3, 2)), "b": np.zeros(2)}, np.ones((2, 3)))


# --------------------------------------------------------------------------- stateful objects


class Linear:
    """Stores gradients as attributes dW, db; accumulates like many tutorials do."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W, self.b = W, b
        self.dW, self.db = np.zeros_like(W), np.zeros_like(b)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dW += self.x.T @ dout
        self.db += dout.sum(0)
        return dout @ self.W.T


class Tanh:
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = np.tanh(x)
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1 - self.y**2)


class DictLayer:
    """Keeps params and grads in dicts, returns (dx, grads)."""

    def __init__(self, rng: np.random.Generator, bug: bool = False) -> None:
        self.params = {"W": rng.normal(size=(3, 2)), "b": np.zeros(2)}
        self.bug = bug

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.cache = x
        return np.tanh(x @ self.params["W"] + self.params["b"])

    def backward(self, dout: np.ndarray) -> tuple:
        x = self.cache
        y = np.tanh(x @ self.params["W"] + self.params["b"])
        da = dout * (1 - y**2)
        grads = {"W": x.T @ da, "b": da.sum(0) * (0.5 if self.bug else 1.0)}
        return da @ self.params["W"].T, grads


def test_stateful_attribute_layer_accumulating_grads() -> None:
    rng = np.random.default_rng(3)
    lin = Linear(rng.normal(size=(3, 2)), rng.normal(size=2))
    lin.dW += 5.0  # stale gradient from an earlier step must not leak into the check
    layer = gc.stateful_layer(lin, params=["W", "b"])
    res = gc.check_layer(layer, {"W": lin.W, "b": lin.b}, rng.normal(size=(4, 3)))
    assert res.passed, res.message()
    assert layer.accumulates is True


def test_stateful_layer_restores_the_objects_parameters() -> None:
    rng = np.random.default_rng(4)
    lin = Linear(rng.normal(size=(3, 2)), rng.normal(size=2))
    W0 = lin.W.copy()
    gc.check_layer(gc.stateful_layer(lin, params=["W", "b"]), {"W": lin.W * 2, "b": lin.b},
                   rng.normal(size=(4, 3)))
    np.testing.assert_array_equal(lin.W, W0)


def test_stateful_parameter_free_layer() -> None:
    res = gc.check_layer(gc.stateful_layer(Tanh(), params=[]), {},
                         np.random.default_rng(5).normal(size=(2, 3)))
    assert res.passed and [leaf.name for leaf in res.leaves] == ["x"]


@pytest.mark.parametrize("bug", [False, True])
def test_stateful_params_dict_and_returned_grads(bug: bool) -> None:
    rng = np.random.default_rng(6)
    obj = DictLayer(rng, bug)
    res = gc.check_layer(gc.stateful_layer(obj), dict(obj.params), rng.normal(size=(4, 3)))
    if bug:
        leaf = res.leaf("b")
        assert (leaf.blame, leaf.diagnosis.factor) == ("hand", 0.5)
    else:
        assert res.passed, res.message()


def test_stateful_missing_gradient_is_explained() -> None:
    class NoGrads(Tanh):
        W = np.ones((2, 2))

    with pytest.raises(gc.GradientStructureError, match=r"cannot find the gradient of W"):
        gc.check_layer(gc.stateful_layer(NoGrads(), params=["W"]), {"W": np.ones((2, 2))}, np.ones((1, 2)))


def test_stateful_without_params_dict_asks_for_names() -> None:
    with pytest.raises(gc.InvalidArgument, match=r"params=\['W', 'b'\]"):
        gc.stateful_layer(Tanh())


# --------------------------------------------------------------------------- char-RNN loss_and_grads


def char_rnn_loss(params, inputs, targets, hprev):
    """min-char-rnn's lossFun with params passed in: returns loss, 5 gradients and the last h."""
    Wxh, Whh, Why, bh, by = (params[k] for k in ("Wxh", "Whh", "Why", "bh", "by"))
    vocab = Wxh.shape[1]
    xs, hs, ys, ps = {}, {}, {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = np.zeros((vocab, 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)
        ys[t] = np.dot(Why, hs[t]) + by
        ps[t] = np.exp(ys[t]) / np.sum(np.exp(ys[t]))
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1
        dWhy += np.dot(dy, hs[t].T)
        dby += dy
        dh = np.dot(Why.T, dy) + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh
        dbh += dhraw
        dWxh += np.dot(dhraw, xs[t].T)
        dWhh += np.dot(dhraw, hs[t - 1].T)
        dhnext = np.dot(Whh.T, dhraw)
    for dparam in [dWxh, dWhh, dWhy, dbh, dby]:
        np.clip(dparam, -5, 5, out=dparam)
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]


def _char_rnn_params(rng: np.random.Generator, scale: float = 0.1) -> dict:
    H, V = 5, 4
    return {"Wxh": rng.normal(size=(H, V)) * scale, "Whh": rng.normal(size=(H, H)) * scale,
            "Why": rng.normal(size=(V, H)) * scale, "bh": np.zeros((H, 1)), "by": np.zeros((V, 1))}


def test_char_rnn_loss_and_grads_passes() -> None:
    rng = np.random.default_rng(7)
    params = _char_rnn_params(rng)
    res = gc.check_grad(*gc.loss_and_grads(char_rnn_loss), params, [0, 1, 2, 3, 1], [1, 2, 3, 1, 0],
                        np.zeros((5, 1)))
    assert res.passed, res.message()
    assert [leaf.name for leaf in res.leaves] == ["Wxh", "Whh", "Why", "bh", "by"]


def test_char_rnn_clipped_gradient_is_caught_as_clipping() -> None:
    rng = np.random.default_rng(8)
    params = _char_rnn_params(rng, scale=3.0)  # large weights: gradients exceed the clip at 5
    res = gc.check_grad(*gc.loss_and_grads(char_rnn_loss), params, [0, 1, 2, 3] * 3,
                        [1, 2, 3, 0] * 3, np.zeros((5, 1)))
    clipped = [leaf for leaf in res.leaves if leaf.diagnosis and leaf.diagnosis.kind == "clipped"]
    assert res.verdict == "fail" and clipped
    assert all(leaf.blame == "hand" and leaf.diagnosis.factor == 5.0 for leaf in clipped)


def test_loss_and_grads_with_a_grads_dict() -> None:
    def f(p, x):
        y = x @ p["W"]
        return 0.5 * np.sum(y**2), {"W": x.T @ y}

    rng = np.random.default_rng(9)
    assert gc.check_grad(*gc.loss_and_grads(f), {"W": rng.normal(size=(3, 2))},
                         rng.normal(size=(4, 3))).passed


def test_loss_and_grads_rejects_a_bare_loss() -> None:
    with pytest.raises(gc.InvalidArgument, match=r"should return \(loss, grads\)"):
        gc.check_grad(*gc.loss_and_grads(lambda p: np.sum(p["W"])), {"W": np.ones(2)})


# --------------------------------------------------------------------------- the user's names


def test_checks_are_named_after_the_users_function_and_class() -> None:
    rng = np.random.default_rng(0)
    layer = gc.cs231n_layer(affine_forward, affine_backward)
    res = gc.check_layer(layer, {"w": rng.normal(size=(6, 5)), "b": rng.normal(size=5)},
                         rng.normal(size=(4, 6)))
    assert res.name == "affine_forward" and res.to_dict()["name"] == "affine_forward"

    class Tanh:
        def forward(self, x):
            self.y = np.tanh(x)
            return self.y

        def backward(self, dy):
            return dy * (1 - self.y ** 2)

    assert gc.check_layer(gc.stateful_layer(Tanh(), params=[]), {}, rng.normal(size=3)).name == "Tanh"
    assert gc.check_layer(layer, {"w": rng.normal(size=(6, 5)), "b": rng.normal(size=5)},
                          rng.normal(size=(4, 6)), name="mine").name == "mine"


def _tuple_char_rnn(params, inputs, targets, hprev):
    Wxh, Whh, Why, bh, by = params
    out = char_rnn_loss({"Wxh": Wxh, "Whh": Whh, "Why": Why, "bh": bh, "by": by}, inputs, targets, hprev)
    loss, dWxh, dWhh, dWhy, dbh, dby, h = out
    return loss, dWxh, dWhh, dWhy, dbh, dby, h


def _tuple_params(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    p = _char_rnn_params(rng)
    return tuple(p[k] for k in ("Wxh", "Whh", "Why", "bh", "by"))


def test_tuple_parameters_are_named_from_the_return_statement() -> None:
    rng = np.random.default_rng(7)
    args = ([0, 1, 2, 3, 1], [1, 2, 3, 1, 0], np.zeros((5, 1)))
    res = gc.check_grad(*gc.loss_and_grads(_tuple_char_rnn), _tuple_params(rng), *args, jax_twin=False)
    assert res.passed, res.message()
    assert [leaf.name for leaf in res.leaves] == ["Wxh", "Whh", "Why", "bh", "by"]


def test_loss_and_grads_takes_names() -> None:
    rng = np.random.default_rng(7)
    args = ([0, 1, 2, 3, 1], [1, 2, 3, 1, 0], np.zeros((5, 1)))
    names = ["input", "recurrent", "output", "hidden_bias", "output_bias"]
    res = gc.check_grad(*gc.loss_and_grads(_tuple_char_rnn, names=names), _tuple_params(rng), *args,
                        jax_twin=False)
    assert [leaf.name for leaf in res.leaves] == names
    with pytest.raises(gc.InvalidArgument, match=r"gives 2 names for 5 parameter leaves"):
        gc.check_grad(*gc.loss_and_grads(_tuple_char_rnn, names=["a", "b"]), _tuple_params(rng), *args)
    with pytest.raises(gc.InvalidArgument, match="distinct"):
        gc.loss_and_grads(_tuple_char_rnn, names=["a", "a", "b", "c", "d"])


def test_names_are_not_guessed_from_code_that_does_not_say() -> None:
    def computed(params, x):
        W, b = params
        y = x @ W + b
        return 0.5 * np.sum(y ** 2), x.T @ y, y.sum(0)  # expressions, not names

    def differ(params, x, flag=False):
        W, b = params
        y = x @ W + b
        gW, gb = x.T @ y, y.sum(0)
        if flag:
            return 0.5 * np.sum(y ** 2), gb, gW
        return 0.5 * np.sum(y ** 2), gW, gb

    rng = np.random.default_rng(1)
    params, x = (rng.normal(size=(3, 2)), rng.normal(size=2)), rng.normal(size=(4, 3))
    for fn in (computed, differ):
        res = gc.check_grad(*gc.loss_and_grads(fn), params, x, jax_twin=False)
        assert [leaf.name for leaf in res.leaves] == ["[0]", "[1]"], fn.__name__
    # a dict keeps its keys even when the code names its gradients
    def named(params, x):
        y = x @ params["W"]
        dW = x.T @ y
        return 0.5 * np.sum(y ** 2), dW, y
    res = gc.check_grad(*gc.loss_and_grads(named), {"W": params[0]}, x, jax_twin=False)
    assert [leaf.name for leaf in res.leaves] == ["W"]
