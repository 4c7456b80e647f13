"""Script style: module-level constants and hyperparameters (``EPS``, ``ACT = np.tanh``, a weight
decay), helpers defined at module level and called from the forward, ``from numpy import exp,
tanh``, ``math.exp`` of a scalar hyperparameter, a dict of activations, a module-level cache the
forward writes into, a ``global`` call counter, and ``return float(loss)``."""

# The user's code below is written the way people write it, lint and all.
# ruff: noqa: SIM108

import math

import numpy as np
from numpy import exp, log, tanh

import gradcheck as gc

from ._expect import assert_hand_blamed, assert_twin_pass, assert_unchanged, snapshot, wrong_entries

# ----------------------------------------------------------------------------- the user's code

EPS = 1e-8
ACT = np.tanh
WEIGHT_DECAY = 1e-2
TEMPERATURE = 2.0
HIDDEN = 4
N_CLASSES = 4
ACTIVATIONS = {"tanh": tanh, "softplus": lambda z: log(1.0 + exp(z))}
CONFIG = {"activation": "tanh", "l2": True}

# A scaler "fitted" in place (FEATURE_MEAN[:] = data.mean(0)).  It is a view 8 bytes into its
# buffer, so never 64-byte aligned: jax.numpy.asarray then always copies it.  (A 64-byte aligned
# numpy array is aliased zero-copy by jnp.asarray on CPU, and the twin would see the in-place
# update by accident, depending on where malloc put the array.)
FEATURE_MEAN = np.zeros(4)[1:]
_cache = {}  # the forward leaves its activations here for the backward to reuse
CALLS = 0


def temperature_scale():
    return math.exp(-1.0 / TEMPERATURE)


def l2_penalty(W):
    return 0.5 * WEIGHT_DECAY * np.sum(W * W)


def logsumexp(a):
    m = np.max(a, axis=1, keepdims=True)
    return m + log(np.sum(exp(a - m), axis=1, keepdims=True))


def hidden_layer(x, W, b):
    act = ACTIVATIONS[CONFIG["activation"]]
    return act(np.dot(x, W) + b)


def loss_fn(params, x, y):
    W1, b1, W2 = params["W1"], params["b1"], params["W2"]
    h = hidden_layer(x, W1, b1)
    z = np.dot(h, W2) * temperature_scale()
    _cache["h"], _cache["z"] = h, z
    N = x.shape[0]
    data_loss = np.sum(logsumexp(z)[:, 0] - z[np.arange(N), y]) / N
    reg = l2_penalty(W1) + l2_penalty(W2) if CONFIG["l2"] else 0.0
    loss = data_loss + reg
    return float(loss)


def softmax(z):
    e = exp(z - np.max(z, axis=1, keepdims=True))
    return e / (np.sum(e, axis=1, keepdims=True) + EPS * 0)


def grad_fn(params, x, y, bug=None):
    W1, b1, W2 = params["W1"], params["b1"], params["W2"]
    s = temperature_scale()
    h = ACT(np.dot(x, W1) + b1)
    z = np.dot(h, W2) * s
    N = x.shape[0]
    dz = softmax(z)
    dz[np.arange(N), y] -= 1
    dz /= N
    if bug == "transpose":  # planted: the outer product in the wrong order
        dW2 = np.dot(dz.T, h) * s
    else:
        dW2 = np.dot(h.T, dz) * s
    dh = np.dot(dz, W2.T) * s
    da = dh * (1 - h ** 2)
    dW1 = np.dot(x.T, da)
    db1 = np.sum(da, axis=0)
    if bug != "no_weight_decay":
        dW1 += WEIGHT_DECAY * W1
    dW2 += WEIGHT_DECAY * W2
    if bug == "bias_first_row":
        db1 = da[0]
    if bug == "sign_one_entry":
        dW1[1, 2] *= -1
    return {"W1": dW1, "b1": db1, "W2": dW2}


def centred_loss(params, x, y):
    return loss_fn(params, x - FEATURE_MEAN, y)


def centred_grad(params, x, y):
    return grad_fn(params, x - FEATURE_MEAN, y)


def counted_loss(params, x, y):
    global CALLS
    CALLS += 1
    return loss_fn(params, x, y)


# ----------------------------------------------------------------------------- the tests


def _case(seed=0, n=5, d=3):
    rng = np.random.default_rng(seed)
    params = {"W1": rng.normal(size=(d, HIDDEN)), "b1": rng.normal(size=HIDDEN) * 0.1,
              "W2": rng.normal(size=(HIDDEN, N_CLASSES))}
    x = rng.normal(size=(n, d))
    y = rng.integers(0, N_CLASSES, size=n)
    return params, x, y


def test_helpers_and_globals_pass_with_the_twin():
    params, x, y = _case()
    before = snapshot(globals())
    r = gc.check_grad(loss_fn, grad_fn, params, x, y)
    assert_twin_pass(r)
    assert [leaf.name for leaf in r.leaves] == ["W1", "b1", "W2"]
    # the module is as it was: same objects, numpy still numpy, numpy's functions still numpy's
    assert_unchanged(globals(), before)
    assert exp is np.exp and tanh is np.tanh and log is np.log and ACT is np.tanh
    assert math.exp(0.0) == 1.0 and globals()["math"] is math
    assert ACTIVATIONS["tanh"] is np.tanh


def test_the_module_level_cache_holds_numpy_arrays_after_the_check():
    params, x, y = _case(1)
    _cache.clear()
    r = gc.check_grad(loss_fn, grad_fn, params, x, y)
    assert_twin_pass(r)
    # the twin wrote into its own copy of _cache; the user's holds what numpy computed
    assert set(_cache) == {"h", "z"}
    assert all(type(v) is np.ndarray for v in _cache.values())
    np.testing.assert_allclose(_cache["h"], np.tanh(x @ params["W1"] + params["b1"]))


def test_a_global_counter_is_only_counted_by_numpy_calls():
    global CALLS
    params, x, y = _case(2)
    CALLS = 0
    r = gc.check_grad(counted_loss, grad_fn, params, x, y)
    assert_twin_pass(r)
    assert type(CALLS) is int and CALLS >= r.forward_calls > 0


def test_switching_globals_changes_the_twin_too():
    """A helper read through a module-level dict mutated in place between two checks: the twin
    should see the current contents, as the numpy forward does."""
    params, x, y = _case(3)
    assert_twin_pass(gc.check_grad(loss_fn, grad_fn, params, x, y))  # builds (and caches) the twin

    def softplus_grad(params, x, y):
        W1, b1, W2 = params["W1"], params["b1"], params["W2"]
        s = temperature_scale()
        a = np.dot(x, W1) + b1
        h = np.log1p(np.exp(a))
        z = np.dot(h, W2) * s
        N = x.shape[0]
        dz = softmax(z)
        dz[np.arange(N), y] -= 1
        dz /= N
        dh = np.dot(dz, W2.T) * s
        da = dh / (1 + np.exp(-a))
        return {"W1": np.dot(x.T, da) + WEIGHT_DECAY * W1, "b1": da.sum(0),
                "W2": np.dot(h.T, dz) * s + WEIGHT_DECAY * W2}

    CONFIG["activation"] = "softplus"
    try:
        r = gc.check_grad(loss_fn, softplus_grad, params, x, y)
    finally:
        CONFIG["activation"] = "tanh"
    assert_twin_pass(r)


def test_forgotten_weight_decay_is_blamed_on_the_hand():
    params, x, y = _case(4)
    r = gc.check_grad(loss_fn, lambda p, x, y: grad_fn(p, x, y, bug="no_weight_decay"), params, x, y)
    leaf = assert_hand_blamed(r, "W1", only=["W1"])
    assert leaf.n_mismatched == leaf.n_elements


def test_transposed_square_weight_gradient_is_blamed_on_the_hand():
    params, x, y = _case(5)
    r = gc.check_grad(loss_fn, lambda p, x, y: grad_fn(p, x, y, bug="transpose"), params, x, y)
    leaf = assert_hand_blamed(r, "W2", only=["W2"])
    # the diagonal of a transpose is right: exactly the off-diagonal entries are wrong
    assert leaf.n_mismatched == HIDDEN * N_CLASSES - HIDDEN
    assert all(i != j for i, j in wrong_entries(leaf))


def test_bias_from_the_first_example_only_is_blamed_on_the_hand():
    params, x, y = _case(6)
    r = gc.check_grad(loss_fn, lambda p, x, y: grad_fn(p, x, y, bug="bias_first_row"), params, x, y)
    assert_hand_blamed(r, "b1", only=["b1"])


def test_single_entry_sign_flip_is_named():
    params, x, y = _case(7)
    r = gc.check_grad(loss_fn, lambda p, x, y: grad_fn(p, x, y, bug="sign_one_entry"), params, x, y)
    leaf = assert_hand_blamed(r, "W1", entries=[(1, 2)], only=["W1"])
    assert wrong_entries(leaf) == {(1, 2)} and leaf.n_mismatched == 1


def test_a_module_level_array_updated_in_place_between_checks():
    params, x, y = _case(8)
    saved = FEATURE_MEAN.copy()
    try:
        assert_twin_pass(gc.check_grad(centred_loss, centred_grad, params, x, y))
        FEATURE_MEAN[:] = x.mean(axis=0)  # the user "fits" the scaler, then checks again
        assert_twin_pass(gc.check_grad(centred_loss, centred_grad, params, x, y))
    finally:
        FEATURE_MEAN[:] = saved
