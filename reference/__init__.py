"""Hand-derived backprop and BPTT reference layers, one module per layer family.

Every layer follows one protocol::

    layer.forward(params, x) -> y
    layer.backward(params, x, dy) -> (dparams, dx)

The forward is written once against the array namespace of its input
(``xp = x.__array_namespace__()``), so it runs on numpy and on jax.numpy arrays
alike; the backward is hand-derived numpy.  This package never imports
``gradcheck``: it is the thing being checked.

Gradient-flow analyses (``gradcheck.gradient_flow``) need a little more, by
duck typing only (no base class, no registration).  The recurrent layers
(``rnn.ElmanRNN``, ``lstm.LSTM``, ``gru.GRU``) offer::

    layer.bptt(params, x, dy) -> (dparams, dx, deltas)      deltas[t] = ∂L/∂h_t
    layer.initial_state(params, batch) -> s_{-1}            (B, S)
    layer.state_step(params, s_{t-1}, x_t) -> s_t           (B, S)
    layer.readout(params, s_t) -> y_t                       (B, K)

and, where they have them, ``observed_width(params)`` (the LSTM: its deltas
cover ``h`` of the packed state ``[h | c]``), ``recurrent_jacobian``,
``with_truncation(τ)``, ``activation`` and ``recurrent_key`` (the Elman RNN).
Deep stacks (``mlp.MLP``) offer ``backward_with_deltas(params, x, dy) ->
(dparams, dx, deltas)`` with ``deltas[i] = ∂L/∂net_i``.
"""
