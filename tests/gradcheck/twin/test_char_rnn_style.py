"""Karpathy's min-char-rnn style: a script with module-level data and sizes, and a ``lossFun``
that keeps per-step dicts ``xs, hs, ys, ps``, builds one-hot vectors in place, accumulates
``loss += -np.log(...)`` and returns ``loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs)-1]``.
Here the parameters come in as a tuple (first argument) so that gradcheck can vary them."""

# The user's code below is written the way people write it, lint and all.
# ruff: noqa: SIM108

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc

from ._expect import assert_hand_blamed, assert_twin_pass, assert_unchanged, snapshot, wrong_entries

# ----------------------------------------------------------------------------- the user's code
# (min-char-rnn.py, lightly adapted: params passed in instead of read from globals)

data = "hello, hell"
chars = sorted(set(data))
data_size, vocab_size = len(data), len(chars)
char_to_ix = {ch: i for i, ch in enumerate(chars)}
ix_to_char = {i: ch for i, ch in enumerate(chars)}

# hyperparameters
hidden_size = 5
seq_length = 4
learning_rate = 1e-1


def lossFun(params, inputs, targets, hprev):
    """
    inputs,targets are both list of integers.
    hprev is Hx1 array of initial hidden state
    returns the loss, gradients on model parameters, and last hidden state
    """
    Wxh, Whh, Why, bh, by = params
    xs, hs, ys, ps = {}, {}, {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0
    # forward pass
    for t in range(len(inputs)):
        xs[t] = np.zeros((vocab_size, 1))  # encode in 1-of-k representation
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)  # hidden state
        ys[t] = np.dot(Why, hs[t]) + by  # unnormalized log probabilities for next chars
        ps[t] = np.exp(ys[t]) / np.sum(np.exp(ys[t]))  # probabilities for next chars
        loss += -np.log(ps[t][targets[t], 0])  # softmax (cross-entropy loss)
    # backward pass: compute gradients going backwards
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1  # backprop into y. see http://cs231n.github.io/neural-networks-case-study/#grad if confused here
        dWhy += np.dot(dy, hs[t].T)
        dby += dy
        dh = np.dot(Why.T, dy) + dhnext  # backprop into h
        dhraw = (1 - hs[t] * hs[t]) * dh  # backprop through tanh nonlinearity
        dbh += dhraw
        dWxh += np.dot(dhraw, xs[t].T)
        dWhh += np.dot(dhraw, hs[t - 1].T)
        dhnext = np.dot(Whh.T, dhraw)
    for dparam in [dWxh, dWhh, dWhy, dbh, dby]:
        np.clip(dparam, -5, 5, out=dparam)  # clip to mitigate exploding gradients
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]


def lossFun_bugs(params, inputs, targets, hprev, bug):
    """The same lossFun with one planted bug, selected by ``bug``."""
    Wxh, Whh, Why, bh, by = params
    xs, hs, ys, ps = {}, {}, {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0
    for t in range(len(inputs)):
        xs[t] = np.zeros((vocab_size, 1))
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
        if bug == "no_dhnext":  # truncated: the gradient from later steps is dropped
            dh = np.dot(Why.T, dy)
        else:
            dh = np.dot(Why.T, dy) + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh
        dbh += dhraw
        if bug == "skip_first_input":  # off by one: ``if t > 0`` meant for dWhh
            if t > 0:
                dWxh += np.dot(dhraw, xs[t].T)
        else:
            dWxh += np.dot(dhraw, xs[t].T)
        if bug == "wrong_time_index":  # h_t instead of h_{t-1}
            dWhh += np.dot(dhraw, hs[t].T)
        else:
            dWhh += np.dot(dhraw, hs[t - 1].T)
        dhnext = np.dot(Whh.T, dhraw)
    clip = 0.05 if bug == "small_clip" else 5
    for dparam in [dWxh, dWhh, dWhy, dbh, dby]:
        np.clip(dparam, -clip, clip, out=dparam)
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]


# ----------------------------------------------------------------------------- the tests


def _params(seed=0, scale=0.1):
    rng = np.random.default_rng(seed)
    Wxh = rng.normal(size=(hidden_size, vocab_size)) * scale  # input to hidden
    Whh = rng.normal(size=(hidden_size, hidden_size)) * scale  # hidden to hidden
    Why = rng.normal(size=(vocab_size, hidden_size)) * scale  # hidden to output
    bh = rng.normal(size=(hidden_size, 1)) * scale  # hidden bias
    by = rng.normal(size=(vocab_size, 1)) * scale  # output bias
    return (Wxh, Whh, Why, bh, by)


def _batch(p=0, n=seq_length):
    inputs = [char_to_ix[ch] for ch in data[p:p + n]]
    targets = [char_to_ix[ch] for ch in data[p + 1:p + n + 1]]
    return inputs, targets


NAMES = ["[0]", "[1]", "[2]", "[3]", "[4]"]  # Wxh, Whh, Why, bh, by


def _check(fn, params, inputs, targets, hprev, **opts):
    return gc.check_grad(*gc.loss_and_grads(fn), params, inputs, targets, hprev, **opts)


def test_lossFun_passes_with_the_twin():
    params = _params()
    inputs, targets = _batch()
    hprev = np.zeros((hidden_size, 1))
    before = snapshot(globals())
    copies = [p.copy() for p in params]
    r = _check(lossFun, params, inputs, targets, hprev)
    assert_twin_pass(r)
    assert len(r.leaves) == 5
    # the script's globals, parameters and hidden state are untouched
    assert_unchanged(globals(), before)
    for p, c in zip(params, copies, strict=True):
        np.testing.assert_array_equal(p, c)
    np.testing.assert_array_equal(hprev, 0.0)
    assert inputs == _batch()[0]


def test_lossFun_with_a_carried_hidden_state_passes():
    params = _params(1)
    inputs, targets = _batch()
    hprev = np.zeros((hidden_size, 1))
    # as the training loop does: the previous chunk's last hidden state is carried in
    hprev = lossFun(params, inputs, targets, hprev)[-1]
    inputs, targets = _batch(p=seq_length)
    r = _check(lossFun, params, inputs, targets, hprev)
    assert_twin_pass(r)


def _leaf_names(r):
    return [leaf.name for leaf in r.leaves]


def _bug_check(bug, seed=2, **kw):
    params = _params(seed, **kw)
    inputs, targets = _batch(n=5)
    hprev = np.random.default_rng(seed + 100).normal(size=(hidden_size, 1)) * 0.5

    def lossFun_with_bug(params, inputs, targets, hprev):
        return lossFun_bugs(params, inputs, targets, hprev, bug)

    return _check(lossFun_with_bug, params, inputs, targets, hprev), inputs


def test_bug_free_variant_passes():
    r, _ = _bug_check(None)
    assert_twin_pass(r)


def test_wrong_time_index_in_dWhh_is_blamed_on_the_hand():
    r, _ = _bug_check("wrong_time_index")
    whh = _leaf_names(r)[1]
    assert_hand_blamed(r, whh, only=[whh])


def test_dropped_dhnext_is_blamed_on_the_hand():
    r, _ = _bug_check("no_dhnext")
    names = _leaf_names(r)
    # everything but dWhy and dby (one-step terms) depends on the gradient from later steps
    for name in (names[0], names[1], names[3]):
        assert_hand_blamed(r, name)
    assert r.leaf(names[2]).verdict == "pass" and r.leaf(names[4]).verdict == "pass"


def test_off_by_one_loop_guard_names_the_first_inputs_column():
    r, inputs = _bug_check("skip_first_input")
    assert inputs.count(inputs[0]) == 1  # 'h' occurs once: only its column of dWxh is wrong
    wxh = _leaf_names(r)[0]
    leaf = assert_hand_blamed(r, wxh, only=[wxh])
    assert leaf.n_mismatched == hidden_size
    assert {i[1] for i in wrong_entries(leaf)} == {inputs[0]}


def test_gradients_clipped_at_a_small_value_fail_as_clipping():
    r, _ = _bug_check("small_clip", scale=1.0)
    clipped = [leaf for leaf in r.failures if leaf.diagnosis and leaf.diagnosis.kind == "clipped"]
    assert r.verdict == "fail" and clipped, r.message()
    assert r.jax_source == "twin" and "autodiff" in r.references
    assert all(leaf.blame == "hand" for leaf in r.failures)
    assert all(leaf.diagnosis.factor == pytest.approx(0.05) for leaf in clipped)


@settings(max_examples=6, deadline=None, database=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 5), start=st.integers(0, 5))
def test_lossFun_passes_for_any_seed_and_length(seed, n, start):
    params = _params(seed)
    inputs, targets = _batch(p=start, n=n)
    hprev = np.random.default_rng(seed).normal(size=(hidden_size, 1)) * 0.3
    r = _check(lossFun, params, inputs, targets, hprev)
    assert_twin_pass(r)
