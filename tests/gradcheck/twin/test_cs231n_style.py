"""CS231n assignment style: ``out, cache = layer_forward(...)`` / ``layer_backward(dout, cache)``,
naive loops with in-place writes, ``np.pad``, parameter dicts, ``softmax_loss`` with
``dx[np.arange(N), y] -= 1``.  None of it runs on JAX arrays as written; the automatic twin
makes autodiff the third reference."""

# The user's code below is written the way people write it, lint and all.
# ruff: noqa: RUF059, UP031

import numpy as np
import pytest

import gradcheck as gc

from ._expect import assert_hand_blamed, assert_twin_pass, assert_unchanged, snapshot

# ----------------------------------------------------------------------------- the user's code
# (layers.py, as a student fills it in)


def affine_forward(x, w, b):
    out = None
    N = x.shape[0]
    x_row = np.reshape(x, (N, -1))
    out = np.dot(x_row, w) + b
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    x, w, b = cache
    dx, dw, db = None, None, None
    N = x.shape[0]
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(N, -1).T.dot(dout)
    db = np.sum(dout, axis=0)
    return dx, dw, db


def affine_backward_bias_bug(dout, cache):
    """Planted bug: the bias gradient averages over the batch instead of summing."""
    dx, dw, _ = affine_backward(dout, cache)
    db = np.mean(dout, axis=0)
    return dx, dw, db


def relu_forward(x):
    out = None
    out = np.maximum(0, x)
    cache = x
    return out, cache


def relu_backward(dout, cache):
    dx, x = None, cache
    dx = dout.copy()
    dx[x <= 0] = 0
    return dx


def affine_relu_forward(x, w, b):
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    cache = (fc_cache, relu_cache)
    return out, cache


def affine_relu_backward(dout, cache):
    fc_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db


def affine_relu_backward_skips_relu(dout, cache):
    """Planted bug: the ReLU's mask is forgotten (dout passed straight to the affine layer)."""
    fc_cache, _ = cache
    return affine_backward(dout, fc_cache)


def conv_forward_naive(x, w, b, conv_param):
    out = None
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant", constant_values=0)
    out = np.zeros((N, F, H_out, W_out))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    out[n, f, i, j] = np.sum(x_pad[n, :, hs:hs + HH, ws:ws + WW] * w[f]) + b[f]
    cache = (x, w, b, conv_param)
    return out, cache


def conv_backward_naive(dout, cache, flip_bug=False):
    dx, dw, db = None, None, None
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    db = np.zeros_like(b)
    for n in range(N):
        for f in range(F):
            db[f] += np.sum(dout[n, f])
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    dw[f] += x_pad[n, :, hs:hs + HH, ws:ws + WW] * dout[n, f, i, j]
                    kernel = w[f, :, ::-1, ::-1] if flip_bug else w[f]
                    dx_pad[n, :, hs:hs + HH, ws:ws + WW] += kernel * dout[n, f, i, j]
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db


def max_pool_forward_naive(x, pool_param):
    out = None
    N, C, H, W = x.shape
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    H_out = 1 + (H - ph) // stride
    W_out = 1 + (W - pw) // stride
    out = np.zeros((N, C, H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            window = x[:, :, i * stride:i * stride + ph, j * stride:j * stride + pw]
            out[:, :, i, j] = np.max(window, axis=(2, 3))
    cache = (x, pool_param)
    return out, cache


def max_pool_backward_naive(dout, cache, first_cell_bug=False):
    dx = None
    x, pool_param = cache
    N, C, H, W = x.shape
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    window = x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw]
                    idx = np.unravel_index(np.argmax(window), window.shape)
                    if first_cell_bug and (n, c, i, j) == (0, 0, 0, 0):
                        idx = (0, 0)  # planted: the first window always routes to its corner
                    dx[n, c, i * stride + idx[0], j * stride + idx[1]] += dout[n, c, i, j]
    return dx


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
    out, cache = None, None
    if mode == "train":
        sample_mean = np.mean(x, axis=0)
        sample_var = np.var(x, axis=0)
        x_hat = (x - sample_mean) / np.sqrt(sample_var + eps)
        out = gamma * x_hat + beta
        cache = (x, x_hat, sample_mean, sample_var, gamma, eps)
        running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        running_var = momentum * running_var + (1 - momentum) * sample_var
    elif mode == "test":
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)
    # Store the updated running means back into bn_param
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward_alt(dout, cache, forget_var_path=False):
    x, x_hat, mu, var, gamma, eps = cache
    N = x.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    inv_std = 1.0 / np.sqrt(var + eps)
    if forget_var_path:  # planted: the path through the batch variance is dropped
        dx = inv_std / N * (N * dx_hat - np.sum(dx_hat, axis=0))
    else:
        dx = inv_std / N * (N * dx_hat - np.sum(dx_hat, axis=0)
                            - x_hat * np.sum(dx_hat * x_hat, axis=0))
    return dx, dgamma, dbeta


def softmax_loss(x, y):
    loss, dx = None, None
    shifted_logits = x - np.max(x, axis=1, keepdims=True)
    Z = np.sum(np.exp(shifted_logits), axis=1, keepdims=True)
    log_probs = shifted_logits - np.log(Z)
    probs = np.exp(log_probs)
    N = x.shape[0]
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx


def softmax_loss_naive_off_by_one(x, y):
    """Planted bug: the loop over examples starts at 1 in the gradient part, so example 0 never
    gets its ``-1`` at the true class (one wrong entry)."""
    N, C = x.shape
    loss = 0.0
    dx = np.zeros_like(x)
    for i in range(N):
        scores = x[i] - np.max(x[i])
        p = np.exp(scores) / np.sum(np.exp(scores))
        loss += -np.log(p[y[i]])
        dx[i] = p
    for i in range(1, N):
        dx[i, y[i]] -= 1
    loss /= N
    dx /= N
    return loss, dx


def svm_loss(x, y):
    N = x.shape[0]
    correct_class_scores = x[np.arange(N), y]
    margins = np.maximum(0, x - correct_class_scores[:, np.newaxis] + 1.0)
    margins[np.arange(N), y] = 0
    loss = np.sum(margins) / N
    num_pos = np.sum(margins > 0, axis=1)
    dx = np.zeros_like(x)
    dx[margins > 0] = 1
    dx[np.arange(N), y] -= num_pos
    dx /= N
    return loss, dx


# ----------------------------------------------------------------------------- the tests


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("x_shape", [(4, 6), (4, 2, 3)])
def test_affine_passes_with_the_twin(x_shape):
    rng = _rng()
    x = rng.normal(size=x_shape)
    params = {"w": rng.normal(size=(6, 5)), "b": rng.normal(size=5)}
    before = snapshot(globals())
    r = gc.check_layer(gc.cs231n_layer(affine_forward, affine_backward), params, x)
    assert_twin_pass(r)
    assert [leaf.name for leaf in r.leaves] == ["w", "b", "x"]
    assert_unchanged(globals(), before)


def test_affine_bias_mean_instead_of_sum_is_blamed_on_the_hand():
    rng = _rng(1)
    params = {"w": rng.normal(size=(6, 5)), "b": rng.normal(size=5)}
    r = gc.check_layer(gc.cs231n_layer(affine_forward, affine_backward_bias_bug), params,
                       rng.normal(size=(4, 6)))
    leaf = assert_hand_blamed(r, "b", only=["b"])
    assert leaf.diagnosis is not None and leaf.diagnosis.factor == pytest.approx(0.25)


def test_affine_relu_sandwich_and_forgotten_mask():
    rng = _rng(2)
    params = {"w": rng.normal(size=(6, 5)), "b": rng.normal(size=5)}
    x = rng.normal(size=(4, 6))
    assert_twin_pass(gc.check_layer(gc.cs231n_layer(affine_relu_forward, affine_relu_backward),
                                    params, x))
    r = gc.check_layer(gc.cs231n_layer(affine_relu_forward, affine_relu_backward_skips_relu),
                       params, x)
    for name in ("w", "b", "x"):
        assert_hand_blamed(r, name)


def test_relu_passes_with_the_twin():
    x = _rng(3).normal(size=(3, 5))
    r = gc.check_layer(gc.cs231n_layer(relu_forward, relu_backward), {}, x)
    assert_twin_pass(r)


def _conv_case(seed=4):
    rng = _rng(seed)
    conv_param = {"stride": 2, "pad": 1}
    params = {"w": rng.normal(size=(2, 2, 3, 3)), "b": rng.normal(size=2)}
    return conv_param, params, rng.normal(size=(2, 2, 4, 4))


def test_naive_conv_with_loops_and_in_place_writes_passes():
    conv_param, params, x = _conv_case()
    before = snapshot(globals())
    layer = gc.cs231n_layer(conv_forward_naive, conv_backward_naive,
                            static={"conv_param": conv_param})
    r = gc.check_layer(layer, params, x)
    assert_twin_pass(r)
    assert [leaf.name for leaf in r.leaves] == ["w", "b", "x"]
    assert conv_param == {"stride": 2, "pad": 1}
    assert_unchanged(globals(), before)


def test_naive_conv_flipped_kernel_in_dx_is_blamed_on_the_hand():
    conv_param, params, x = _conv_case()
    layer = gc.cs231n_layer(conv_forward_naive,
                            lambda dout, cache: conv_backward_naive(dout, cache, flip_bug=True),
                            static={"conv_param": conv_param})
    r = gc.check_layer(layer, params, x)
    assert_hand_blamed(r, "x", only=["x"])


def _pool_case(seed=5):
    rng = _rng(seed)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    return pool_param, rng.normal(size=(2, 2, 4, 4))


def test_naive_max_pool_passes():
    pool_param, x = _pool_case()
    r = gc.check_layer(gc.cs231n_layer(max_pool_forward_naive, max_pool_backward_naive,
                                       static={"pool_param": pool_param}), {}, x)
    assert_twin_pass(r)


def test_naive_max_pool_misrouted_window_names_the_two_entries():
    pool_param, x = _pool_case()
    window = x[0, 0, :2, :2]
    arg = np.unravel_index(np.argmax(window), window.shape)
    if arg == (0, 0):  # make the planted bug visible: the max is not in the corner
        x[0, 0, 1, 1] = window.max() + 1.0
        arg = (1, 1)
    layer = gc.cs231n_layer(max_pool_forward_naive,
                            lambda d, c: max_pool_backward_naive(d, c, first_cell_bug=True),
                            static={"pool_param": pool_param})
    r = gc.check_layer(layer, {}, x)
    leaf = assert_hand_blamed(r, "x", entries=[(0, 0, 0, 0), (0, 0, *arg)])
    assert leaf.n_mismatched == 2


def test_softmax_loss_through_check_grad():
    rng = _rng(6)
    x, y = rng.normal(size=(5, 4)), np.array([0, 3, 1, 2, 3])
    y0 = y.copy()
    r = gc.check_grad(*gc.loss_and_grads(softmax_loss), x, y)
    assert_twin_pass(r)
    np.testing.assert_array_equal(y, y0)


def test_softmax_loss_through_check_grad_with_separate_lambdas():
    rng = _rng(7)
    x, y = rng.normal(size=(5, 4)), np.array([0, 3, 1, 2, 3])
    r = gc.check_grad(lambda s, labels: softmax_loss(s, labels)[0],
                      lambda s, labels: softmax_loss(s, labels)[1], x, y)
    assert_twin_pass(r)


def test_softmax_naive_off_by_one_loop_names_the_single_entry():
    rng = _rng(8)
    x, y = rng.normal(size=(5, 4)), np.array([2, 3, 1, 0, 3])
    r = gc.check_grad(*gc.loss_and_grads(softmax_loss_naive_off_by_one), x, y)
    leaf = assert_hand_blamed(r, "params", entries=[(0, 2)])
    assert leaf.n_mismatched == 1
    assert leaf.worst[0].index == (0, 2)


def test_svm_loss_passes_away_from_its_hinges():
    rng = _rng(9)
    x, y = rng.normal(size=(5, 4)), np.array([1, 0, 3, 2, 1])
    r = gc.check_grad(*gc.loss_and_grads(svm_loss), x, y)
    assert_twin_pass(r)


def test_twin_can_be_switched_off():
    rng = _rng(10)
    x, y = rng.normal(size=(5, 4)), np.array([0, 3, 1, 2, 3])
    r = gc.check_grad(*gc.loss_and_grads(softmax_loss), x, y, jax_twin=False)
    assert r.verdict == "pass"
    assert r.jax_source == "none" and "autodiff" not in r.references


def test_batchnorm_train_mode_with_running_stats_in_bn_param():
    rng = _rng(11)
    x = 3.0 + 2.0 * rng.normal(size=(4, 3))
    params = {"gamma": 1 + 0.1 * rng.normal(size=3), "beta": 0.1 * rng.normal(size=3)}
    bn_param = {"mode": "train", "running_mean": np.zeros(3), "running_var": np.ones(3)}
    layer = gc.cs231n_layer(batchnorm_forward, batchnorm_backward_alt, static={"bn_param": bn_param})
    assert_twin_pass(gc.check_layer(layer, params, x))
    # the caller's bn_param is deep-copied for every call: its running statistics are untouched
    np.testing.assert_array_equal(bn_param["running_mean"], 0.0)
    assert type(bn_param["running_var"]) is np.ndarray
    bad = gc.cs231n_layer(batchnorm_forward,
                          lambda d, c: batchnorm_backward_alt(d, c, forget_var_path=True),
                          static={"bn_param": bn_param})
    assert_hand_blamed(gc.check_layer(bad, params, x), "x", only=["x"])
