"""Python-2-era code that still runs on Python 3: ``from __future__ import division``, the
``try: xrange / except NameError: xrange = range`` alias, ``class Model(object)``, explicit
``np.dot`` chains, ``.astype(np.float64)``, ``dict.items()`` loops, ``N // 2`` integer division
for indices, ``float(N)`` divisions, per-example ``for i in xrange(N)`` loops, ``%`` formatting
of the loss in a debug print."""

# The user's code below is written the way people write it, lint and all.
# ruff: noqa: UP010, B018, UP004, RUF059, UP031

from __future__ import absolute_import, division, print_function

import numpy as np

import gradcheck as gc

from ._expect import assert_hand_blamed, assert_twin_pass, assert_unchanged, snapshot, wrong_entries

try:
    xrange  # Python 2
except NameError:
    xrange = range  # Python 3

VERBOSE = False

# ----------------------------------------------------------------------------- the user's code


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class TwoLayerNet(object):
    """A gated two-layer net (CS231n 2016 vintage): input - affine - GLU - affine - softmax."""

    def __init__(self, input_size, hidden_size, output_size, std=1e-1, reg=0.0, params=None,
                 seed=0):
        if params is None:
            rng = np.random.RandomState(seed)
            params = {}
            params['W1'] = std * rng.randn(input_size, 2 * hidden_size)
            params['b1'] = np.zeros(2 * hidden_size)
            params['W2'] = std * rng.randn(hidden_size, output_size)
            params['b2'] = np.zeros(output_size)
        self.params = params
        self.reg = reg

    def loss(self, X, y, bug=None):
        W1, b1 = self.params['W1'], self.params['b1']
        W2, b2 = self.params['W2'], self.params['b2']
        X = X.astype(np.float64)
        N, D = X.shape

        # forward pass
        a = np.dot(X, W1) + b1
        half = a.shape[1] // 2
        gate = sigmoid(a[:, half:])
        hidden = a[:, :half] * gate
        scores = np.dot(hidden, W2) + b2
        scores = scores - np.max(scores, axis=1).reshape(N, 1)
        probs = np.exp(scores) / np.sum(np.exp(scores), axis=1).reshape(N, 1)
        loss = 0.0
        for i in xrange(N):
            loss += -np.log(probs[i, y[i]])
        loss /= float(N)
        for name, W in sorted(self.params.items()):
            if name.startswith('W'):
                loss += 0.5 * self.reg * np.sum(W * W)
        if VERBOSE:
            print('loss: %.4f' % loss)

        # backward pass
        grads = {}
        dscores = probs.copy()
        last = N - 1 if bug == 'xrange_off_by_one' else N  # planted: xrange(N - 1)
        for i in xrange(last):
            dscores[i, y[i]] -= 1
        dscores /= float(N)
        grads['W2'] = np.dot(hidden.T, dscores)
        grads['b2'] = np.sum(dscores, axis=0)
        if bug == 'bias_mean':  # planted: a mean over a batch that was already divided by N
            grads['b2'] = np.sum(dscores, axis=0) / N
        dhidden = np.dot(dscores, W2.T)
        da = np.zeros_like(a)
        da[:, :half] = dhidden * gate
        da[:, half:] = dhidden * a[:, :half] * gate * (1 - gate)
        grads['W1'] = np.dot(X.T, da)
        grads['b1'] = np.sum(da, axis=0)
        for name, W in self.params.items():
            if name == 'W1' or (name.startswith('W') and bug != 'reg_W1_only'):
                grads[name] += self.reg * W
        return loss, grads


def model_loss(params, X, y):
    """The model's (loss, grads) at the given parameters."""
    model = TwoLayerNet(X.shape[1], params['W2'].shape[0], params['W2'].shape[1], reg=0.05,
                        params=params)
    return model.loss(X, y)


def eval_loss_explicit_chain(params, X, y):
    """The same loss written with an old-style explicit np.dot chain (no hidden bias or gate):
    a linear net X W1[:, :half] W2."""
    N = X.shape[0]
    half = params['W1'].shape[1] // 2
    scores = np.dot(np.dot(X.astype(np.float64), params['W1'][:, :half]), params['W2'])
    probs = np.exp(scores - scores.max(axis=1)[:, np.newaxis])
    probs = probs / probs.sum(axis=1)[:, np.newaxis]
    return -np.sum(np.log(probs[np.arange(N), y])) / float(N)


def eval_grad_explicit_chain(params, X, y):
    N = X.shape[0]
    half = params['W1'].shape[1] // 2
    W1h = params['W1'][:, :half]
    hidden = np.dot(X, W1h)
    scores = np.dot(hidden, params['W2'])
    probs = np.exp(scores - scores.max(axis=1)[:, np.newaxis])
    probs = probs / probs.sum(axis=1)[:, np.newaxis]
    probs[np.arange(N), y] -= 1
    dscores = probs / float(N)
    dW1 = np.zeros_like(params['W1'])
    dW1[:, :half] = np.dot(X.T, np.dot(dscores, params['W2'].T))
    grads = dict((k, np.zeros_like(v)) for k, v in params.items())
    grads['W1'] = dW1
    grads['W2'] = np.dot(hidden.T, dscores)
    return grads


# ----------------------------------------------------------------------------- the tests

N, D, HIDDEN, C = 5, 4, 3, 3


def _case(seed=0):
    net = TwoLayerNet(D, HIDDEN, C, std=0.5, seed=seed)
    rng = np.random.RandomState(seed + 1)
    params = net.params
    params['b1'] = 0.1 * rng.randn(2 * HIDDEN)
    params['b2'] = 0.1 * rng.randn(C)
    X = rng.randn(N, D).astype(np.float32)  # loaded as float32, cast inside the model
    y = np.array([0, 2, 1, 2, 1])
    return params, X, y


def test_two_layer_net_passes_with_the_twin():
    params, X, y = _case()
    before = snapshot(globals())
    r = gc.check_grad(*gc.loss_and_grads(model_loss), params, X, y)
    assert_twin_pass(r)
    assert sorted(leaf.name for leaf in r.leaves) == ['W1', 'W2', 'b1', 'b2']
    assert_unchanged(globals(), before)
    assert xrange is range


def test_explicit_dot_chain_with_zero_grads_passes():
    params, X, y = _case(1)
    r = gc.check_grad(eval_loss_explicit_chain, eval_grad_explicit_chain, params, X, y)
    assert_twin_pass(r)
    # the unused half of W1 and the biases: identically zero gradients, not exercised
    assert r.leaf('b1').n_unexercised == 2 * HIDDEN


def _bugged(bug):
    def loss_with_bug(params, X, y):
        model = TwoLayerNet(D, HIDDEN, C, reg=0.05, params=params)
        return model.loss(X, y, bug=bug)
    return loss_with_bug


def test_xrange_off_by_one_names_the_last_examples_class():
    params, X, y = _case(2)
    r = gc.check_grad(*gc.loss_and_grads(_bugged('xrange_off_by_one')), params, X, y)
    leaf = assert_hand_blamed(r, 'b2', entries=[(y[-1],)])
    assert wrong_entries(leaf) == {(int(y[-1]),)} and leaf.n_mismatched == 1
    w2 = assert_hand_blamed(r, 'W2')
    assert {j for _, j in wrong_entries(w2)} == {int(y[-1])}


def test_bias_mean_over_an_already_averaged_batch():
    params, X, y = _case(3)
    r = gc.check_grad(*gc.loss_and_grads(_bugged('bias_mean')), params, X, y)
    leaf = assert_hand_blamed(r, 'b2', only=['b2'])
    assert leaf.diagnosis is not None and leaf.diagnosis.factor == 1.0 / N


def test_regularisation_forgotten_for_W2_in_the_items_loop():
    params, X, y = _case(4)
    r = gc.check_grad(*gc.loss_and_grads(_bugged('reg_W1_only')), params, X, y)
    assert_hand_blamed(r, 'W2', only=['W2'])


def test_debug_print_with_percent_formatting_of_the_loss(monkeypatch, capsys):
    monkeypatch.setitem(globals(), 'VERBOSE', True)
    params, X, y = _case(5)
    r = gc.check_grad(*gc.loss_and_grads(model_loss), params, X, y)
    printed = capsys.readouterr().out
    assert 'loss: ' in printed
    assert_twin_pass(r)
