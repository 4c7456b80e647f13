"""Benchmarks of gradcheck against ``torch.autograd.gradcheck`` and ``jax.test_util.check_grads``.

Run everything with one command (see ``benchmarks/RESULTS.md`` for the recorded figures)::

    .venv/bin/python -m benchmarks.run                 # full run, about 7 minutes on 2 cores
    .venv/bin/python -m benchmarks.run --quick         # tiny sizes, about a minute
    .venv/bin/python -m benchmarks.run --only cost     # or --only detection

Modules:

* :mod:`benchmarks.adapters` — how each checker is made to check the SAME hand-written
  backward of the same layer (gradcheck through its public API, torch through an
  ``autograd.Function``, JAX through a ``custom_vjp`` over ``pure_callback``), with forward calls
  counted at the layer and a per-check time budget;
* :mod:`benchmarks.cost` — wall time and forward calls against the number of parameters ``N``
  (dense tanh layers) and the sequence length ``T`` (LSTM), a conv layer, and one wrong entry in a
  256×256 layer;
* :mod:`benchmarks.mutants` and :mod:`benchmarks.detection` — the mutation suite (the project's
  planted bugs plus single-entry errors of relative size 1e-2 … 1e-6) and correct cases (float64,
  float32, kink-heavy): recall and false alarms of every checker;
* :mod:`benchmarks.plot` — the log-log scaling plot;
* :mod:`benchmarks.run` — the command line; writes ``benchmarks/RESULTS.md``.

torch is optional (the ``bench`` extra): without it the torch columns say "not installed".
"""
