"""Functional style: forwards made by factory functions (closures over hyperparameters, a fixed
numpy dropout mask, an activation picked from a dict), ``functools.partial`` of a loss with a
keyword hyperparameter, lambdas, a decorator adding a penalty, and a CS231n pair made by a
factory closing over ``eps``."""

import functools

import numpy as np
import pytest

import gradcheck as gc

from ._expect import assert_hand_blamed, assert_twin_pass, wrong_entries

# ----------------------------------------------------------------------------- the user's code


def make_mlp(l2=1e-2, activation="tanh", keep=0.7, seed=123, hidden=4, forget_l2=False):
    """Returns (loss, grad) for a 1-hidden-layer regression net with a fixed dropout mask."""
    acts = {
        "tanh": (np.tanh, lambda h: 1 - h ** 2),
        "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda h: h * (1 - h)),
    }
    act, act_grad = acts[activation]
    mask = (np.random.default_rng(seed).random(hidden) < keep) / keep  # inverted dropout

    def loss(params, x, t):
        h = act(np.dot(x, params["W"]) + params["b"]) * mask
        y = np.dot(h, params["V"])
        return 0.5 * np.sum((y - t) ** 2) + 0.5 * l2 * (np.sum(params["W"] ** 2) + np.sum(params["V"] ** 2))

    def grad(params, x, t):
        a = act(np.dot(x, params["W"]) + params["b"])
        h = a * mask
        dy = np.dot(h, params["V"]) - t
        dV = np.dot(h.T, dy) + l2 * params["V"]
        da = np.dot(dy, params["V"].T) * mask * act_grad(a)
        dW = np.dot(x.T, da)
        if not forget_l2:
            dW = dW + l2 * params["W"]
        return {"W": dW, "b": da.sum(axis=0), "V": dV}

    return loss, grad


def huber(params, t, delta=1.0):
    r = params - t
    return np.sum(np.where(np.abs(r) <= delta, 0.5 * r ** 2, delta * (np.abs(r) - 0.5 * delta)))


def huber_grad(params, t, delta=1.0):
    return np.clip(params - t, -delta, delta)


def penalised(lam):
    """A decorator factory: adds lam * ||params["W"]||^2 to a loss."""
    def decorate(fun):
        @functools.wraps(fun)
        def wrapped(params, *args):
            return fun(params, *args) + lam * np.sum(params["W"] ** 2)
        return wrapped
    return decorate


@penalised(0.05)
def penalised_sse(params, x, t):
    return 0.5 * np.sum((np.dot(x, params["W"]) - t) ** 2)


def make_layernorm(eps=1e-5, drop_mean_term=False):
    """A CS231n-style (forward, backward) pair for layer normalisation."""
    def layernorm_forward(x, gamma, beta):
        mu = np.mean(x, axis=1, keepdims=True)
        var = np.var(x, axis=1, keepdims=True)
        std = np.sqrt(var + eps)
        xhat = (x - mu) / std
        out = gamma * xhat + beta
        return out, (xhat, gamma, std)

    def layernorm_backward(dout, cache):
        xhat, gamma, std = cache
        D = xhat.shape[1]
        dbeta = dout.sum(axis=0)
        dgamma = np.sum(dout * xhat, axis=0)
        dxhat = dout * gamma
        mean_term = 0 if drop_mean_term else dxhat.sum(axis=1, keepdims=True)
        dx = (D * dxhat - mean_term - xhat * np.sum(dxhat * xhat, axis=1, keepdims=True)) / (D * std)
        return dx, dgamma, dbeta

    return layernorm_forward, layernorm_backward


# ----------------------------------------------------------------------------- the tests


def _mlp_case(seed=0, n=5, d=3, hidden=4, out=2):
    rng = np.random.default_rng(seed)
    params = {"W": rng.normal(size=(d, hidden)), "b": rng.normal(size=hidden) * 0.1,
              "V": rng.normal(size=(hidden, out))}
    return params, rng.normal(size=(n, d)), rng.normal(size=(n, out))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_factory_closures_pass_with_the_twin(activation):
    loss, grad = make_mlp(activation=activation)
    params, x, t = _mlp_case()
    cells = [c.cell_contents for c in loss.__closure__]
    r = gc.check_grad(loss, grad, params, x, t)
    assert_twin_pass(r)
    # the closure cells are the user's objects still (the mask a numpy array)
    assert all(a is b for a, b in zip(cells, (c.cell_contents for c in loss.__closure__), strict=True))
    assert any(type(c) is np.ndarray for c in cells)


def test_two_factories_with_different_hyperparameters_get_their_own_twins():
    params, x, t = _mlp_case(1)
    for l2 in (0.0, 0.3):
        loss, grad = make_mlp(l2=l2)
        assert_twin_pass(gc.check_grad(loss, grad, params, x, t))


def test_forgotten_closure_l2_in_the_grad_is_blamed_on_the_hand():
    loss, grad = make_mlp(l2=0.1, forget_l2=True)
    params, x, t = _mlp_case(2)
    r = gc.check_grad(loss, grad, params, x, t)
    assert_hand_blamed(r, "W", only=["W"])


def test_lambda_adding_a_term_to_a_closure():
    loss, grad = make_mlp(l2=0.0)
    params, x, t = _mlp_case(3)
    r = gc.check_grad(lambda p, x, t: loss(p, x, t) + 0.5 * np.sum(p["b"] ** 2),
                      lambda p, x, t: {**grad(p, x, t), "b": grad(p, x, t)["b"] + p["b"]},
                      params, x, t)
    assert_twin_pass(r)
    # the same lambda but the hand forgets the extra term: b fails, by all three sources
    r = gc.check_grad(lambda p, x, t: loss(p, x, t) + 0.5 * np.sum(p["b"] ** 2), grad, params, x, t)
    assert_hand_blamed(r, "b", only=["b"])


def _huber_case(seed=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=8) * 1.5, rng.normal(size=8)


def test_partial_with_a_keyword_hyperparameter_passes():
    pred, t = _huber_case()
    r = gc.check_grad(functools.partial(huber, delta=0.7), functools.partial(huber_grad, delta=0.7),
                      pred, t)
    assert_twin_pass(r)


def test_partial_whose_grad_ignores_delta_names_the_entries_beyond_it():
    pred, t = _huber_case()
    r = gc.check_grad(functools.partial(huber, delta=0.7), huber_grad, pred, t)
    resid = np.abs(pred - t)
    assert not np.any(np.isclose(resid, 0.7)) and not np.any(np.isclose(resid, 1.0))
    expected = {(int(i),) for i in np.flatnonzero(resid > 0.7)}
    assert 0 < len(expected) <= 5  # few entries: all of them fit among the worst
    leaf = assert_hand_blamed(r, "params", entries=expected)
    assert leaf.n_mismatched == len(expected)
    assert wrong_entries(leaf) == expected


def test_decorated_loss_through_functools_wraps():
    rng = np.random.default_rng(5)
    params = {"W": rng.normal(size=(3, 2))}
    x, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))

    def grad(p, x, t):
        return {"W": np.dot(x.T, np.dot(x, p["W"]) - t) + 0.1 * p["W"]}

    assert_twin_pass(gc.check_grad(penalised_sse, grad, params, x, t))
    r = gc.check_grad(penalised_sse, lambda p, x, t: {"W": np.dot(x.T, np.dot(x, p["W"]) - t)},
                      params, x, t)
    assert_hand_blamed(r, "W")


def test_layernorm_pair_from_a_factory():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 5))
    params = {"gamma": 1 + 0.1 * rng.normal(size=5), "beta": 0.1 * rng.normal(size=5)}
    forward, backward = make_layernorm(eps=1e-3)
    assert_twin_pass(gc.check_layer(gc.cs231n_layer(forward, backward), params, x))
    forward, backward = make_layernorm(eps=1e-3, drop_mean_term=True)
    r = gc.check_layer(gc.cs231n_layer(forward, backward), params, x)
    assert_hand_blamed(r, "x", only=["x"])
