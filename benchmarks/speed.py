"""Speed: the targets of issue 12, measured side by side in one run.

Usage::

    .venv/bin/python -m benchmarks.speed [--quick] [--budget S] [--only GROUP[,GROUP...]]
                                         [--out PATH] [--json PATH]
    .venv/bin/python -m benchmarks.speed --render-from benchmarks/speed.json   # re-render only
    .venv/bin/python -m benchmarks.run --speed      # the same section inside RESULTS.md

``python -m benchmarks.speed`` writes ``benchmarks/SPEED.md`` (the section with a short header)
and ``benchmarks/speed.json`` (every number); with ``--quick`` it writes
``reports/speed-quick.md`` / ``reports/speed-quick.json`` instead, so that a development run never
overwrites the recorded figures.  ``python -m benchmarks.run --speed`` adds the same section
(``## Speed``) to ``benchmarks/RESULTS.md`` and writes ``benchmarks/speed.json`` next to it.
``--only`` runs some groups (``lstm gru rnn conv dense64 dense256 dense1000 charrnn tiny``);
``--render-from JSON`` runs nothing and writes the markdown of a saved ``speed.json`` again.
The full run takes about 8 minutes on 2 cores, most of it XLA compiling the unrolled T=100 GRU
and LSTM for the JAX column (minutes for the GRU); ``--quick`` about half a minute.

Every row is one problem with a hand-written numpy backward, checked as a user would:
``gc.check_layer(layer, params, x, seed=0, budget=B)`` (mode ``auto``), or for the char-RNN
``gc.check_grad(*gc.loss_and_grads(lossFun), params, inputs, targets, hprev, seed=0, budget=B)``.
Each row records

* the verdict, and for a planted wrong entry whether it was *named*: its tensor failed (blame on
  the hand backward) and its index is among that tensor's ``worst`` entries, its diagnosis'
  indices, or a single-entry block of its group-testing localisation (``named_by`` says which);
* the forward calls counted at the layer (:class:`benchmarks.adapters.CountingLayer`; for the
  char-RNN, calls of the loss function);
* *cold*: the first call of that check in this process (after a warm-up on another shape that
  pays the one-off imports), and *warm*: the median of up to 5 more calls when the first took under
  1 s (within 3 s), one more call when it took 1-15 s, else the cold time; the 3×2 layer's warm
  time is the median of 50 checks (10 with ``--quick``);
* **FD floor**: the wall time of the ``2N + 2`` forward calls that per-entry central differences
  need, ``N`` the number of checked scalars (every parameter and input entry; for the char-RNN
  the parameters only, its inputs being integer indices).  The forward (numpy, float64, the
  contraction ``L = Σ dy ⊙ y`` included; for the char-RNN the user's ``lossFun``, which runs its
  own backward too) is timed over 50-200 calls at the point and the time *extrapolated* to
  ``2N + 2`` calls; where ``2N + 2 ≤ 200`` exactly that many calls are made.  The floor leaves
  out everything but the forward (perturbing an entry, comparing), so it flatters plain finite
  differences.  gc's *speed-up* is FD floor ÷ gc warm time;
* **JAX jit**: ``jax.test_util.check_grads(f, args, order=1, modes=('rev',))`` on
  ``f = jax.jit(L)`` over the same array-API forward run on jax.numpy arrays, under
  ``with jax.enable_x64(True):``; warm = the median of further calls after the first (compiling)
  one.  That checks JAX's own gradient of the forward, not the hand backward: it is the cost of
  the check a user with a traceable model would run instead.  ``gc ÷ jax`` = gc warm ÷ jax warm,
  shown on the array-API rows only (a numpy-only forward cannot be traced).

Problems (float64, from the reference zoo's ``make_case``): an LSTM (B=4, D=8, H=8, K=4: the
issue's 3,796 scalars), a GRU and an Elman RNN of the same widths, all at T=100; a conv layer
(2×3×16×16 input, 8 filters 3×3); dense tanh layers (batch 8) of 64×64, 256×256 and 1000×1000
with, besides the correct check, one entry of ``dW`` off by 1e-3·max|dW|
(:class:`benchmarks.mutants.SingleEntryError`); a min-char-rnn-style model (hidden 100, vocab 65,
25 steps) correct and with ``dWhh`` accumulated from ``h_t`` instead of ``h_{t-1}``; a 3×2 tanh
layer, warm and as the first check of a fresh Python process (a ``subprocess``; the figure runs
from before ``import gradcheck`` to the end of the check, so it includes the import of gradcheck,
numpy and whatever gradcheck imports on the way, but not the interpreter's start-up, which is
given separately).  *numpy-only* rows wrap the layer so that its forward calls ``np.asarray`` on
the parameters and the input and returns a numpy array: JAX cannot trace it, and with
``jax_twin=False`` (set on these rows and on the char-RNN script) gradcheck has no autodiff
reference — the case the issue's numpy-only targets describe.  With the default
``jax_twin="auto"`` such code gets an automatic JAX twin; its cost and effect are measured in
:mod:`benchmarks.twin`.

``--quick`` shrinks everything (T=10, dense 16² / 32², a 2×2×5×5 conv, a small char-RNN, no
1000×1000) for development and the smoke test.  Every check gets ``budget=`` (120 s by default,
``--budget``) and is also cut off at its next forward call after twice that plus 60 s, so the
harness cannot hang.  A target is *met* only when every row it is measured on has the expected
verdict (and names its planted entry) and every ratio holds; *not measured* when a row is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import gradcheck as gc
from benchmarks.adapters import Case, Counter, Outcome, gradcheck_outcome
from benchmarks.mutants import SingleEntryError
from reference import conv, dense, gru, lstm, rnn

__all__ = [
    "GROUPS",
    "TARGETS",
    "FDFloor",
    "JaxTiming",
    "NumpyOnly",
    "Problem",
    "Row",
    "RowSpec",
    "SpeedResult",
    "char_rnn_loss",
    "document",
    "dump",
    "fd_floor",
    "fresh_process_check",
    "main",
    "named_in",
    "problems",
    "render",
    "run_speed",
    "targets",
]

ROOT = Path(__file__).resolve().parent.parent

#: Relative size of every planted single-entry error.
WRONG_REL = 1e-3
#: The groups of problems, in run order (``--only`` takes these names).
GROUPS: tuple[str, ...] = ("lstm", "gru", "rnn", "conv", "dense64", "dense256", "dense1000",
                           "charrnn", "tiny")

#: The targets of issue 12, word for word, keyed by what they are measured on.
TARGETS: dict[str, str] = {
    "recurrent": "LSTM/GRU/Elman RNN at T=100 and the conv: auto ≥ 30× faster than the FD floor with "
                 "an array-API forward and within 3× of jitted check_grads; ≥ 10× faster than the "
                 "FD floor with a numpy-only forward.",
    "dense64": "dense 64×64: ≥ 30× faster than the FD floor, correct and with one wrong entry named.",
    "dense256": "dense 256×256, numpy-only: correct ≥ 300× faster than the FD floor; one wrong entry "
                "named ≥ 1000× faster.",
    "dense1000": "dense 1000×1000: correct verdict ≥ 3000× faster than the FD floor; one wrong entry "
                 "of 1e-3·max|g| caught and named ≥ 2000× faster, numpy-only forward included.",
    "charrnn": "The char-RNN case fails, with its diagnosis, in at most 3× the time of a passing "
               "check.",
    "tiny": "A warm 3×2 check ≤ 10 ms; the first check in a fresh process ≤ 1.5 s.",
}

Log = Callable[[str], None]
CheckRun = Callable[[float | None, float], tuple[Outcome, gc.CheckResult | None]]


# ----------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class NumpyOnly:
    """A layer whose forward converts everything to numpy first: JAX cannot trace it, so
    gradcheck has no autodiff reference (the backward is the inner layer's, unchanged)."""

    inner: Any

    def forward(self, params: dict[str, Any], x: Any) -> np.ndarray:
        p = {k: np.asarray(v) for k, v in params.items()}
        return np.asarray(self.inner.forward(p, np.asarray(x)))

    def backward(self, params: dict[str, Any], x: Any, dy: Any) -> Any:
        return self.inner.backward(params, x, dy)


# ----------------------------------------------------------------------------- the char-RNN


def char_rnn_loss(params: dict[str, np.ndarray], inputs: Sequence[int], targets: Sequence[int],
                  hprev: np.ndarray, *, bug: bool = False) -> tuple[Any, ...]:
    """A character-level vanilla RNN in the style of min-char-rnn, written from its equations.

    ``h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)``, ``y_t = Why h_t + by``, ``p_t = softmax(y_t)``,
    loss ``Σ_t −log p_t[target_t]``, ``x_t`` one-hot column vectors.  Returns ``loss, dWxh, dWhh,
    dWhy, dbh, dby, h_last`` (no gradient clipping: the check wants the exact gradient).  With
    ``bug=True`` the recurrent weight's gradient is accumulated from ``h_t`` instead of
    ``h_{t-1}``, a classic one-step-off slip.
    """
    Wxh, Whh, Why = params["Wxh"], params["Whh"], params["Why"]
    bh, by = params["bh"], params["by"]
    vocab = Wxh.shape[1]
    xs: dict[int, np.ndarray] = {}
    hs: dict[int, np.ndarray] = {-1: np.copy(hprev)}
    ps: dict[int, np.ndarray] = {}
    loss = 0.0
    for t, ch in enumerate(inputs):                       # forward through time
        xs[t] = np.zeros((vocab, 1))
        xs[t][ch] = 1.0
        hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)
        scores = np.dot(Why, hs[t]) + by
        e = np.exp(scores - np.max(scores))
        ps[t] = e / np.sum(e)
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):                # backward through time
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1.0                             # softmax + cross-entropy
        dWhy += np.dot(dy, hs[t].T)
        dby += dy
        dh = np.dot(Why.T, dy) + dhnext
        dhraw = (1.0 - hs[t] * hs[t]) * dh                # through tanh
        dbh += dhraw
        dWxh += np.dot(dhraw, xs[t].T)
        dWhh += np.dot(dhraw, (hs[t] if bug else hs[t - 1]).T)
        dhnext = np.dot(Whh.T, dhraw)
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]


def _char_rnn_loss_bug(params: dict[str, np.ndarray], inputs: Sequence[int], targets: Sequence[int],
                       hprev: np.ndarray) -> tuple[Any, ...]:
    return char_rnn_loss(params, inputs, targets, hprev, bug=True)


def _char_rnn_case(hidden: int, vocab: int, steps: int
                   ) -> tuple[dict[str, np.ndarray], list[int], list[int], np.ndarray]:
    rng = np.random.default_rng(0)
    params = {"Wxh": rng.standard_normal((hidden, vocab)) * 0.01,
              "Whh": rng.standard_normal((hidden, hidden)) * 0.01,
              "Why": rng.standard_normal((vocab, hidden)) * 0.01,
              "bh": np.zeros((hidden, 1)), "by": np.zeros((vocab, 1))}
    chars = [int(c) for c in rng.integers(0, vocab, steps + 1)]
    return params, chars[:-1], chars[1:], np.zeros((hidden, 1))


# ----------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class RowSpec:
    """One check of a problem: how to run it and what it should say."""

    label: str
    forward: str                     # "array-API", "numpy-only", "numpy script"
    expect: str                      # "pass" or "fail"
    run: CheckRun
    wrong_entry: tuple[str, tuple[int, ...]] | None = None
    wrong_leaves: frozenset[str] = frozenset()
    repeats: int = 5                 # warm calls after the cold one (when it took under 1 s)
    repeat_budget_s: float = 3.0


@dataclass(frozen=True)
class Problem:
    """A problem: its size, one numpy forward for the FD floor, an optional jitted JAX twin
    (built under ``enable_x64``: returns ``(f, args)``), and its rows."""

    key: str
    group: str
    n: int
    loss: Callable[[], Any]
    jax_twin: Callable[[], tuple[Callable[..., Any], tuple[Any, ...]]] | None
    rows: tuple[RowSpec, ...]


def _budget_supported() -> bool:
    return "budget" in {f.name for f in dataclasses.fields(gc.CheckOptions)}


def _layer_run(case: Case) -> CheckRun:
    def run(budget: float | None, hard_s: float) -> tuple[Outcome, gc.CheckResult | None]:
        opts: dict[str, Any] = {"budget": budget} if budget is not None else {}
        if isinstance(case.layer, NumpyOnly):
            opts["jax_twin"] = False  # the "numpy-only": no JAX path at all
        return gradcheck_outcome(case, "gc auto", budget_s=hard_s, **opts)
    return run


def _grad_run(name: str, fn: Callable[..., Any], params: Any, args: tuple[Any, ...]) -> CheckRun:
    """``gc.check_grad(*gc.loss_and_grads(fn), params, *args)`` with the loss calls counted."""
    fun, grad = gc.loss_and_grads(fn)

    def run(budget: float | None, hard_s: float) -> tuple[Outcome, gc.CheckResult | None]:
        counter = Counter(hard_s)

        def counted(p: Any, *a: Any) -> Any:
            counter.tick_forward()
            return fun(p, *a)

        def counted_grad(p: Any, *a: Any) -> Any:
            counter.backward += 1
            return grad(p, *a)

        counted.__name__ = counted_grad.__name__ = name
        opts: dict[str, Any] = {"seed": 0, "name": name, "jax_twin": False}
        if budget is not None:
            opts["budget"] = budget
        counter.restart()
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = gc.check_grad(counted, counted_grad, params, *args, **opts)
        except Exception as exc:
            wall = time.perf_counter() - t0
            return Outcome("gc auto", "cut off" if counter.cut_off else "error", False, wall,
                           counter.forward, counter.backward,
                           detail=f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"), None
        wall = time.perf_counter() - t0
        if counter.cut_off:
            return Outcome("gc auto", "cut off", False, wall, counter.forward, counter.backward,
                           res.forward_calls, detail="time budget spent"), None
        failing = tuple(lf.name for lf in res.leaves if lf.verdict == "fail" and lf.blame == "hand")
        return Outcome("gc auto", res.verdict, res.verdict == "fail" and bool(failing), wall,
                       counter.forward, counter.backward, res.forward_calls, None, failing,
                       "; ".join(res.notes[:1])), res
    return run


def _layer_loss(layer: Any, params: dict[str, np.ndarray], x: np.ndarray
                ) -> tuple[Callable[[], Any], np.ndarray]:
    """``L = Σ dy ⊙ forward(params, x)`` in numpy (one FD-floor call), and its ``dy``."""
    y0 = np.asarray(layer.forward(params, x))
    dy = np.random.default_rng(0).standard_normal(y0.shape)

    def loss() -> Any:
        return np.sum(dy * np.asarray(layer.forward(params, x)))
    return loss, dy


def _jax_twin(layer: Any, params: dict[str, np.ndarray], x: np.ndarray, dy: np.ndarray
              ) -> Callable[[], tuple[Callable[..., Any], tuple[Any, ...]]]:
    names = list(params)

    def build() -> tuple[Callable[..., Any], tuple[Any, ...]]:
        import jax
        import jax.numpy as jnp

        dyj = jnp.asarray(dy)

        def L(*leaves: Any) -> Any:
            p = dict(zip(names, leaves[:-1], strict=True))
            return jnp.sum(dyj * layer.forward(p, leaves[-1]))

        args = tuple(jnp.asarray(v) for v in [*params.values(), x])
        return jax.jit(L), args
    return build


def _layer_problem(key: str, group: str, layer: Any, params: dict[str, np.ndarray], x: np.ndarray,
                   *, forwards: Sequence[str], wrong: tuple[str, tuple[int, ...]] | None = None,
                   wrong_only: Sequence[str] = (), repeats: int = 5,
                   repeat_budget_s: float = 3.0) -> Problem:
    """A layer problem: for each forward in ``forwards`` a correct row, and where ``wrong`` is
    given a row with that entry off by :data:`WRONG_REL` (for the forwards in ``wrong_only``, or
    all)."""
    rows: list[RowSpec] = []
    n = int(sum(np.size(v) for v in params.values()) + np.size(x))

    def wrap(inner: Any, fwd: str) -> Any:
        return inner if fwd == "array-API" else NumpyOnly(inner)

    for fwd in forwards:
        case = Case(f"{key} ({fwd})", wrap(layer, fwd), params, x, family=group)
        rows.append(RowSpec(f"{key}, correct", fwd, "pass", _layer_run(case), repeats=repeats,
                            repeat_budget_s=repeat_budget_s))
        if wrong is not None and (not wrong_only or fwd in wrong_only):
            leaf, index = wrong
            bad = SingleEntryError(layer, leaf, index, WRONG_REL)
            mcase = Case(f"{key} ({fwd}), d{leaf}{list(index)} off by {WRONG_REL:.0e}",
                         wrap(bad, fwd), params, x, family=group, kind="mutant",
                         wrong_leaves=frozenset({leaf}), wrong_entry=wrong)
            rows.append(RowSpec(f"{key}, d{leaf}{list(index)} off by {WRONG_REL:.0e}·max", fwd,
                                "fail", _layer_run(mcase), wrong, frozenset({leaf}),
                                repeats=repeats, repeat_budget_s=repeat_budget_s))
    loss, dy = _layer_loss(layer, params, x)
    twin = _jax_twin(layer, params, x, dy) if "array-API" in forwards else None
    return Problem(key, group, n, loss, twin, tuple(rows))


def problems(*, quick: bool = False, only: Sequence[str] | None = None) -> list[Problem]:
    """The problems of the run, in :data:`GROUPS` order (``quick``: shrunk; ``only``: a subset)."""
    want = set(GROUPS if only is None else only)
    out: list[Problem] = []
    both = ("array-API", "numpy-only")
    T = 10 if quick else 100
    sizes = {"T": T, "B": 4, "D": 8, "H": 8, "K": 4}
    for group, name, module in (("lstm", "LSTM", lstm), ("gru", "GRU", gru),
                                ("rnn", "Elman RNN", rnn)):
        if group in want:
            layer, params, x = module.make_case(np.random.default_rng(0), **sizes)
            out.append(_layer_problem(f"{name} T={T}", group, layer, params, x, forwards=both))
    if "conv" in want:
        kw: dict[str, Any] = ({} if quick else
                              {"batch": 2, "channels": 3, "filters": 8, "height": 16, "width": 16})
        layer, params, x = conv.make_case(np.random.default_rng(0), **kw)
        key = "conv " + "×".join(map(str, x.shape)) + f", {params['w'].shape[0]} filters 3×3"
        out.append(_layer_problem(key, "conv", layer, params, x, forwards=both))
    dense_sizes: list[tuple[str, int, tuple[int, int], tuple[str, ...]]] = [
        ("dense64", 16 if quick else 64, (3, 11) if quick else (13, 42), ("numpy-only",)),
        ("dense256", 32 if quick else 256, (3, 17) if quick else (37, 201), ("numpy-only",))]
    if not quick:
        dense_sizes.append(("dense1000", 1000, (123, 789), both))
    for group, d, index, forwards in dense_sizes:
        if group in want:
            layer, params, x = dense.make_case(np.random.default_rng(0), batch=8, d_in=d, d_out=d,
                                               activation="tanh")
            out.append(_layer_problem(f"dense tanh {d}×{d}", group, layer, params, x,
                                      forwards=forwards, wrong=("W", index)))
    if "charrnn" in want:
        hidden, vocab, steps = (10, 8, 5) if quick else (100, 65, 25)
        cparams, inputs, targets, hprev = _char_rnn_case(hidden, vocab, steps)
        args = (inputs, targets, hprev)
        fun, _ = gc.loss_and_grads(char_rnn_loss)
        n = int(sum(v.size for v in cparams.values()))
        key = f"char-RNN H={hidden}, vocab {vocab}, {steps} steps"
        rows = (RowSpec(f"{key}, correct", "numpy script", "pass",
                        _grad_run("lossFun", char_rnn_loss, cparams, args)),
                RowSpec(f"{key}, dWhh from h_t instead of h_(t-1)", "numpy script", "fail",
                        _grad_run("lossFun", _char_rnn_loss_bug, cparams, args),
                        wrong_leaves=frozenset({"Whh"})))
        out.append(Problem(key, "charrnn", n, lambda: fun(cparams, *args), None, rows))
    if "tiny" in want:
        layer, params, x = dense.make_case(np.random.default_rng(0), batch=4, d_in=3, d_out=2,
                                           activation="tanh")
        out.append(_layer_problem("dense tanh 3×2 (batch 4)", "tiny", layer, params, x,
                                  forwards=("array-API",), repeats=10 if quick else 50,
                                  repeat_budget_s=10.0))
    return out


# ----------------------------------------------------------------------------- measuring


@dataclass
class FDFloor:
    """The wall time of ``2N + 2`` forward calls, from ``calls`` timed ones."""

    n: int
    calls: int
    per_call_s: float
    extrapolated: bool

    @property
    def needed(self) -> int:
        return 2 * self.n + 2

    @property
    def seconds(self) -> float:
        return self.per_call_s * self.needed


def fd_floor(loss: Callable[[], Any], n: int, *, min_calls: int = 50, max_calls: int = 200,
             min_s: float = 2.0) -> FDFloor:
    """Time the forward: exactly ``2N + 2`` calls when that is at most ``max_calls``, else calls
    until ``max_calls`` or (at least ``min_calls`` and ``min_s`` seconds), extrapolated."""
    needed = 2 * n + 2
    loss()
    loss()  # warm caches
    if needed <= max_calls:
        t0 = time.perf_counter()
        for _ in range(needed):
            loss()
        return FDFloor(n, needed, (time.perf_counter() - t0) / needed, False)
    k = 0
    t0 = time.perf_counter()
    while k < max_calls and (k < min_calls or time.perf_counter() - t0 < min_s):
        loss()
        k += 1
    return FDFloor(n, k, (time.perf_counter() - t0) / k, True)


@dataclass
class JaxTiming:
    """``check_grads`` of the jitted twin: status, cold (compiling) and warm seconds."""

    status: str
    cold_s: float = math.nan
    warm_s: float = math.nan
    runs: int = 0
    detail: str = ""


def jax_check(build: Callable[[], tuple[Callable[..., Any], tuple[Any, ...]]], *,
              repeats: int = 5, repeat_budget_s: float = 3.0) -> JaxTiming:
    """``jax.test_util.check_grads(f, args, order=1, modes=('rev',))`` under ``enable_x64``."""
    import jax
    from jax.test_util import check_grads

    def once(f: Callable[..., Any], args: tuple[Any, ...]) -> tuple[str, float, str]:
        t0 = time.perf_counter()
        try:
            check_grads(f, args, order=1, modes=("rev",))  # type: ignore[no-untyped-call]
        except AssertionError as exc:
            return "fail", time.perf_counter() - t0, str(exc).strip().splitlines()[0][:160]
        return "pass", time.perf_counter() - t0, ""

    try:
        with jax.enable_x64(True), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f, args = build()
            status, cold, detail = once(f, args)
            times: list[float] = []
            spent = 0.0
            n_more = repeats if cold < 1.0 else 1   # always one call after the compiling one
            while len(times) < n_more and spent < repeat_budget_s:
                _, t, _ = once(f, args)
                times.append(t)
                spent += t
    except Exception as exc:
        return JaxTiming("error", detail=f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    return JaxTiming(status, cold, statistics.median(times) if times else cold, 1 + len(times), detail)


def named_in(res: gc.CheckResult, leaf: str, index: tuple[int, ...]) -> str | None:
    """Where the failing tensor ``leaf`` names ``index``: ``"worst"``, ``"diagnosis"``,
    ``"localisation"`` (a single-entry block), or None when it does not."""
    for lf in res.leaves:
        if lf.name != leaf or lf.verdict != "fail":
            continue
        if any(tuple(e.index) == tuple(index) for e in lf.worst):
            return "worst"
        if lf.diagnosis is not None and any(
                isinstance(i, tuple | list) and tuple(i) == tuple(index) for i in lf.diagnosis.indices):
            return "diagnosis"
        if lf.localisation is not None and len(lf.shape) == len(index):
            flat = int(np.ravel_multi_index(index, lf.shape))
            if any(tuple(b) == (flat, flat + 1) for b in lf.localisation.blocks):
                return "localisation"
    return None


@dataclass
class Row:
    """One measured row."""

    label: str
    problem: str
    group: str
    forward: str
    n: int
    expect: str
    status: str                      # the verdict, or "cut off" / "error"
    caught: bool
    named: bool | None
    named_by: str | None
    ok: bool
    failing: tuple[str, ...]
    forward_calls: int
    engine_forward_calls: int | None
    cold_s: float
    warm_s: float
    runs: int
    fd: FDFloor
    jax: JaxTiming | None
    message: str = ""
    diagnosis: str = ""
    detail: str = ""

    @property
    def speedup(self) -> float:
        """FD floor ÷ gc warm time."""
        return self.fd.seconds / self.warm_s if self.warm_s > 0 else math.inf

    @property
    def gc_over_jax(self) -> float | None:
        """gc warm ÷ jax warm, on array-API rows where jax ran."""
        if self.forward != "array-API" or self.jax is None or self.jax.status == "error":
            return None
        return self.warm_s / self.jax.warm_s if self.jax.warm_s > 0 else math.inf

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        """The row back from :meth:`to_dict` (a saved ``speed.json``)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"fd", "jax"}
        kw = {k: v for k, v in d.items() if k in names}
        kw.update(cold_s=float(d["cold_s"]), warm_s=float(d["warm_s"]),
                  failing=tuple(d.get("failing", ())))
        f = d["fd"]
        fd = FDFloor(int(f["n"]), int(f["calls"]), float(f["per_call_s"]), bool(f["extrapolated"]))
        j = d.get("jax")
        jx = None if j is None else JaxTiming(j["status"], float(j["cold_s"]), float(j["warm_s"]),
                                              int(j["runs"]), j.get("detail", ""))
        return cls(fd=fd, jax=jx, **kw)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fd"].update(seconds=self.fd.seconds, needed=self.fd.needed)
        d["speedup_vs_fd_floor"] = self.speedup
        d["gc_over_jax"] = self.gc_over_jax
        return d


def _judge(spec: RowSpec, first: Outcome, res: gc.CheckResult | None
           ) -> tuple[bool, bool | None, str | None, bool]:
    """``(caught, named, named_by, ok)`` of a row."""
    caught = first.status == "fail" and bool(first.failing)
    if spec.wrong_leaves:
        caught = caught and spec.wrong_leaves <= set(first.failing)
    named: bool | None = None
    named_by: str | None = None
    if spec.wrong_entry is not None:
        named_by = named_in(res, *spec.wrong_entry) if res is not None else None
        named = named_by is not None
    if spec.expect == "pass":
        ok = first.status == "pass"
    else:
        ok = caught and (named is not False)
        if spec.wrong_entry is None and res is not None:   # the char-RNN: a diagnosis is wanted
            ok = ok and any(lf.diagnosis is not None for lf in res.leaves if lf.verdict == "fail")
    return caught, named, named_by, ok


def _message(res: gc.CheckResult | None, lines: int = 8) -> tuple[str, str]:
    if res is None or res.passed:
        return "", ""
    text = "\n".join(str(res).splitlines()[:lines])
    diag = "; ".join(f"{lf.name}: {lf.diagnosis.summary}" for lf in res.leaves
                     if lf.verdict != "pass" and lf.diagnosis is not None)
    return text, diag


def measure_row(spec: RowSpec, prob: Problem, fd: FDFloor, jx: JaxTiming | None, *,
                budget_s: float) -> Row:
    """Cold and warm gradcheck calls of one row (see the module docstring for the policy)."""
    budget = budget_s if _budget_supported() else None
    hard = 2 * budget_s + 60
    first, res = spec.run(budget, hard)
    times: list[float] = []
    if first.completed and first.wall_s < 15.0:
        n_more = spec.repeats if first.wall_s < 1.0 else 1
        spent = 0.0
        while len(times) < n_more and spent < spec.repeat_budget_s:
            again, _ = spec.run(budget, hard)
            times.append(again.wall_s)
            spent += again.wall_s
    caught, named, named_by, ok = _judge(spec, first, res)
    message, diag = _message(res)
    return Row(spec.label, prob.key, prob.group, spec.forward, prob.n, spec.expect, first.status,
               caught, named, named_by, ok, first.failing, first.forward_calls,
               first.engine_forward_calls, first.wall_s,
               statistics.median(times) if times else first.wall_s, 1 + len(times), fd,
               jx if spec.forward == "array-API" else None, message, diag, first.detail)


# ----------------------------------------------------------------------------- fresh process


_FRESH = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import gradcheck as gc, numpy as np
    t1 = time.perf_counter()
    from reference import dense
    layer, params, x = dense.make_case(np.random.default_rng(0), batch=4, d_in=3, d_out=2,
                                       activation="tanh")
    res = gc.check_layer(layer, params, x, seed=0{budget})
    t2 = time.perf_counter()
    import json
    print(json.dumps({{"import_s": t1 - t0, "total_s": t2 - t0, "check_s": t2 - t1,
                      "verdict": res.verdict}}))
""")


def fresh_process_check(budget_s: float = 120.0) -> dict[str, Any]:
    """The 3×2 tanh check as the first thing a fresh Python process does.

    ``total_s`` runs from before ``import gradcheck`` to the end of the check (so it includes
    importing gradcheck and numpy); ``import_s`` is the import alone; ``process_s`` is the whole
    subprocess as seen from outside (interpreter start-up included)."""
    code = _FRESH.format(budget=f", budget={budget_s!r}" if _budget_supported() else "")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=ROOT, timeout=2 * budget_s + 60)
    except subprocess.TimeoutExpired:
        return {"status": "cut off", "process_s": time.perf_counter() - t0}
    process_s = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
        return {"status": "error", "detail": tail, "process_s": process_s}
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(status=out["verdict"], process_s=process_s)
    return out


# ----------------------------------------------------------------------------- the run


@dataclass
class SpeedResult:
    """Every row of one speed run, the fresh-process figure and the run's settings."""

    rows: list[Row]
    fresh: dict[str, Any] | None
    quick: bool
    budget_s: float
    wall_s: float
    budget_option: bool = True
    notes: list[str] = field(default_factory=list)

    def group(self, group: str) -> list[Row]:
        return [r for r in self.rows if r.group == group]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows], "fresh_process": self.fresh,
                "quick": self.quick, "budget_s": self.budget_s, "wall_s": self.wall_s,
                "budget_option": self.budget_option, "notes": self.notes,
                "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in targets(self)]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeedResult:
        """The run back from :meth:`to_dict` (targets are recomputed, not read)."""
        return cls([Row.from_dict(r) for r in d["rows"]], d.get("fresh_process"), bool(d["quick"]),
                   float(d["budget_s"]), float(d["wall_s"]), bool(d.get("budget_option", True)),
                   list(d.get("notes", [])))


def warm_up() -> None:
    """Pay the one-off imports (JAX, jit machinery) on a shape no row uses."""
    layer, params, x = dense.make_case(np.random.default_rng(5), batch=2, d_in=2, d_out=3)
    for fwd in ("array-API", "numpy-only"):
        case = Case("warm-up", layer if fwd == "array-API" else NumpyOnly(layer), params, x)
        _layer_run(case)(30.0 if _budget_supported() else None, 120.0)
    _, dy = _layer_loss(layer, params, x)
    jax_check(_jax_twin(layer, params, x, dy), repeats=0)


def run_speed(*, quick: bool = False, budget_s: float = 120.0, only: Sequence[str] | None = None,
              fresh: bool = True, log: Log = print) -> SpeedResult:
    """Measure every row (and the fresh-process check when the ``tiny`` group runs)."""
    t0 = time.perf_counter()
    warm_up()
    rows: list[Row] = []
    for prob in problems(quick=quick, only=only):
        fd = (fd_floor(prob.loss, prob.n, min_calls=20, max_calls=50, min_s=0.2) if quick
              else fd_floor(prob.loss, prob.n))
        jx = (jax_check(prob.jax_twin, repeats=2 if quick else 5)
              if prob.jax_twin is not None else None)
        log(f"  {prob.key:40s} N={prob.n:8d} FD floor {fd.seconds:9.3g} s "
            f"({'extrapolated from ' if fd.extrapolated else ''}{fd.calls} calls)"
            + (f"; jax {jx.status} warm {jx.warm_s:.3g} s (cold {jx.cold_s:.3g} s)" if jx else ""))
        for spec in prob.rows:
            row = measure_row(spec, prob, fd, jx, budget_s=budget_s)
            rows.append(row)
            log(f"    {spec.forward:12s} {row.label:48s} {row.status:12s} ok={row.ok!s:5s} "
                f"named={row.named} calls={row.forward_calls:7d} cold={row.cold_s:8.3g}s "
                f"warm={row.warm_s:8.3g}s ÷FD={row.speedup:8.3g}"
                + (f" gc÷jax={g:.3g}" if (g := row.gc_over_jax) is not None else ""))
    fresh_res = None
    if fresh and (only is None or "tiny" in only):
        fresh_res = fresh_process_check(budget_s)
        log(f"  fresh process 3×2 check: {fresh_res}")
    notes = [] if _budget_supported() else ["this gradcheck has no `budget` option: checks ran "
                                            "without it (the hard cut-off still applies)"]
    return SpeedResult(rows, fresh_res, quick, budget_s, time.perf_counter() - t0,
                       _budget_supported(), notes)


# ----------------------------------------------------------------------------- targets


def _yes(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**not met**")


def _x(v: float | None) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.3g}×"


def _verdict_text(r: Row) -> str:
    s = r.status
    if r.named is not None:
        s += ", named" if r.named else ", NOT named"
    return s if r.ok else s + " (wrong)"


def targets(res: SpeedResult) -> list[tuple[str, str, str]]:
    """``(target, measured, met)`` for each target of issue 12, from this run's rows."""
    out: list[tuple[str, str, str]] = []

    def need(rows: list[Row], want: int) -> bool:
        return len(rows) >= want

    # Recurrent nets and conv.
    rec = [r for g in ("lstm", "gru", "rnn", "conv") for r in res.group(g)]
    parts: list[str] = []
    ok = True
    for r in rec:
        if r.forward == "array-API":
            g = r.gc_over_jax
            good = r.ok and r.speedup >= 30 and g is not None and g <= 3
            parts.append(f"{r.problem} array-API: {_verdict_text(r)}, {_x(r.speedup)} FD floor, "
                         f"{_x(g)} jax")
        else:
            good = r.ok and r.speedup >= 10
            parts.append(f"{r.problem} numpy-only: {_verdict_text(r)}, {_x(r.speedup)} FD floor")
        ok = ok and good
    out.append((TARGETS["recurrent"], "; ".join(parts) or "not in this run",
                _yes(ok if need(rec, 8) else None)))

    d64 = res.group("dense64")
    out.append((TARGETS["dense64"],
                "; ".join(f"{r.label}: {_verdict_text(r)}, {_x(r.speedup)}" for r in d64)
                or "not in this run",
                _yes(all(r.ok and r.speedup >= 30 for r in d64) if need(d64, 2) else None)))

    d256 = res.group("dense256")
    out.append((TARGETS["dense256"],
                "; ".join(f"{r.label}: {_verdict_text(r)}, {_x(r.speedup)}" for r in d256)
                or "not in this run",
                _yes(all(r.ok and r.speedup >= (300 if r.expect == "pass" else 1000) for r in d256)
                     if need(d256, 2) else None)))

    d1k = res.group("dense1000")
    out.append((TARGETS["dense1000"],
                "; ".join(f"{r.label} ({r.forward}): {_verdict_text(r)}, {_x(r.speedup)}"
                          for r in d1k) or "not in this run",
                _yes(all(r.ok and r.speedup >= (3000 if r.expect == "pass" else 2000) for r in d1k)
                     if need(d1k, 4) else None)))

    ch = res.group("charrnn")
    good_rows = [r for r in ch if r.expect == "pass"]
    bad_rows = [r for r in ch if r.expect == "fail"]
    if good_rows and bad_rows:
        p, f = good_rows[0], bad_rows[0]
        ratio = f.warm_s / p.warm_s if p.warm_s > 0 else math.inf
        txt = (f"passing: {_verdict_text(p)}, {p.warm_s:.3g} s; failing: {_verdict_text(f)}, "
               f"{f.warm_s:.3g} s (cold {f.cold_s:.3g} s); ratio {ratio:.3g}×"
               + (f"; diagnosis: {f.diagnosis}" if f.diagnosis else ""))
        out.append((TARGETS["charrnn"], txt, _yes(p.ok and f.ok and ratio <= 3)))
    else:
        out.append((TARGETS["charrnn"], "not in this run", _yes(None)))

    tiny = res.group("tiny")
    if tiny:
        t = tiny[0]
        txt = f"warm {t.warm_s * 1e3:.3g} ms (median of {t.runs - 1}), {_verdict_text(t)}"
        ok_t: bool | None = t.ok and t.warm_s <= 0.010
        fr = res.fresh
        if fr is not None and "total_s" in fr:
            txt += (f"; fresh process {fr['total_s']:.3g} s from before `import gradcheck` "
                    f"(import {fr['import_s']:.3g} s), {fr['status']}; whole subprocess "
                    f"{fr['process_s']:.3g} s")
            ok_t = ok_t and fr["status"] == "pass" and fr["total_s"] <= 1.5
        else:
            txt += "; fresh process: " + ("not run" if fr is None else f"{fr.get('status')}")
            ok_t = False if not ok_t else None if fr is None else False
        out.append((TARGETS["tiny"], txt, _yes(ok_t)))
    else:
        out.append((TARGETS["tiny"], "not in this run", _yes(None)))
    return out


# ----------------------------------------------------------------------------- rendering


def _s(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{v:.3g}"


def render(res: SpeedResult) -> str:
    """The speed section (markdown, without its own ``##`` heading)."""
    out: list[str] = []
    if res.quick:
        out.append("**Quick run**: sizes shrunk (T=10, small dense layers, no 1000×1000, a small "
                   "char-RNN): the targets below are evaluated on these rows, not on the issue's "
                   "sizes.\n")
    out.append(f"gradcheck budget per check: `budget={res.budget_s:g}` s. Times in seconds; *cold* "
               "= the first call for that shape in this process, *warm* = the median of further "
               "calls (see `benchmarks/speed.py`). *FD floor* = the wall time of the 2N+2 "
               "forward calls per-entry central differences need (numpy forward, float64), "
               "extrapolated from the calls timed where 2N+2 > 200; *÷ FD* = FD floor ÷ gc warm. "
               "*jax* = `jax.test_util.check_grads(jax.jit(L), args, order=1, modes=('rev',))` "
               "under `jax.enable_x64(True)`: *cold* is the first call (XLA compiles the "
               "unrolled forward and its VJP), *warm* the median of further calls; *gc ÷ jax* "
               "= gc warm ÷ jax warm (array-API "
               "rows only). All figures from this one run.\n")
    out.extend(f"Note: {n}\n" for n in res.notes)
    out.append("### Targets\n")
    out.append("| target | measured (this run) | |")
    out.append("|---|---|---|")
    for t, m, ok in targets(res):
        out.append(f"| {t} | {m} | {ok} |")
    out.append("")
    out.append("### Rows\n")
    out.append("| problem | N | forward | verdict | named | forward calls | cold s | warm s | "
               "FD floor s | ÷ FD | jax cold s | jax warm s | gc ÷ jax |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in res.rows:
        fd = f"{_s(r.fd.seconds)}" + (f" (≈, from {r.fd.calls} calls)" if r.fd.extrapolated else "")
        named = "—" if r.named is None else ("yes" + (f" ({r.named_by})" if r.named_by else "")
                                             if r.named else "**no**")
        status = r.status + ("" if r.ok else f" (**expected {r.expect}**)")
        if r.status in ("error", "cut off") and r.detail:
            status += f": {r.detail[:80]}"
        jx = jcold = "—"
        if r.jax is not None:
            jx = _s(r.jax.warm_s) + ("" if r.jax.status == "pass" else f" ({r.jax.status})")
            jcold = _s(r.jax.cold_s)
        out.append(f"| {r.label} | {r.n} | {r.forward} | {status} | {named} | {r.forward_calls} | "
                   f"{_s(r.cold_s)} | {_s(r.warm_s)} | {fd} | {_x(r.speedup)} | {jcold} | {jx} | "
                   f"{_x(r.gc_over_jax)} |")
    out.append("")
    if res.fresh is not None:
        fr = res.fresh
        if "total_s" in fr:
            out.append(f"First check in a fresh process (3×2 tanh, `subprocess`): {fr['total_s']:.3g} s "
                       f"from before `import gradcheck` to the end of the check (import of gradcheck "
                       f"and numpy {fr['import_s']:.3g} s, the check {fr['check_s']:.3g} s), verdict "
                       f"{fr['status']}; the whole subprocess including interpreter start-up took "
                       f"{fr['process_s']:.3g} s.\n")
        else:
            out.append(f"First check in a fresh process: {fr.get('status')} "
                       f"{fr.get('detail', '')}\n")
    failing = [r for r in res.rows if r.group == "charrnn" and r.message]
    for r in failing:
        out.append(f"What the failing char-RNN check says (`{r.label}`, first lines of `str(res)`):\n")
        out.append("```text")
        out.append(r.message)
        out.append("```\n")
    return "\n".join(out)


# ----------------------------------------------------------------------------- main


def _json_default(o: Any) -> Any:
    if isinstance(o, frozenset | set | tuple):
        return list(o)
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def dump(res: SpeedResult, path: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the JSON dump of a run (non-finite floats as strings)."""
    def clean(o: Any) -> Any:
        if isinstance(o, float) and not math.isfinite(o):
            return str(o)
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            return [clean(v) for v in o]
        return o

    payload = {**(extra or {}), "speed": res.to_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(payload), indent=1, default=_json_default))
    return path


def document(res: SpeedResult, header: dict[str, Any]) -> str:
    """The standalone markdown file: the run's date, command, machine and versions, then the
    section."""
    mach, vers = header["machine"], header["versions"]
    started = dt.datetime.fromisoformat(header["date"])
    md = ["# gradcheck speed (issue 12)" + (" — QUICK RUN" if res.quick else ""), "",
          f"- **Date**: {started:%Y-%m-%d %H:%M} UTC; total {res.wall_s / 60:.1f} min",
          f"- **Command**: `{header['command']}` (from the repository root)",
          f"- **Machine**: {mach['cpu']}, {mach['nproc']} cores, {mach['memory']}; "
          f"{mach['platform']}; Python {mach['python']}",
          f"- **Load average** before: {mach['load']}; after: {header['load_after']} (the machine "
          "is shared: wall times carry noise from other processes, forward-call counts do not)",
          "- **Versions**: " + ", ".join(f"{k} {v}" for k, v in vers.items()), "",
          "## Speed", "", render(res)]
    return "\n".join(md)


def _groups(text: str) -> list[str]:
    names = [g.strip() for g in text.split(",") if g.strip()]
    bad = [g for g in names if g not in GROUPS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown group(s) {bad}; choose from {list(GROUPS)}")
    return names


def main(argv: Sequence[str] | None = None, *, log: Log | None = None) -> Path:
    """Run the speed benchmark alone: write the markdown (returned) and the JSON dump."""
    from benchmarks.run import machine, versions

    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speed",
                                 description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="shrunk sizes, no 1000×1000")
    ap.add_argument("--budget", type=float, help="gradcheck budget= per check, seconds "
                    "(default 120; 30 with --quick)")
    ap.add_argument("--only", type=_groups, help=f"comma-separated groups of {list(GROUPS)}")
    ap.add_argument("--no-fresh", action="store_true", help="skip the fresh-process check")
    ap.add_argument("--out", type=Path, help="markdown file (default benchmarks/SPEED.md; "
                    "reports/speed-quick.md with --quick)")
    ap.add_argument("--json", type=Path, help="JSON dump (default benchmarks/speed.json; "
                    "reports/speed-quick.json with --quick)")
    ap.add_argument("--render-from", type=Path, metavar="JSON", help="run nothing: write the "
                    "markdown of a saved speed.json again (to --out, default SPEED.md beside it)")
    args = ap.parse_args(argv)
    say = log or (lambda s: print(s, flush=True))
    if args.render_from is not None:
        saved = json.loads(args.render_from.read_text())
        res = SpeedResult.from_dict(saved["speed"])
        out = Path(args.out or args.render_from.with_name("SPEED.md"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(document(res, saved))
        say(f"wrote {out}")
        return out
    out = Path(args.out or ROOT / ("reports/speed-quick.md" if args.quick else "benchmarks/SPEED.md"))
    js = Path(args.json or ROOT / ("reports/speed-quick.json" if args.quick else "benchmarks/speed.json"))
    budget = args.budget if args.budget is not None else (30.0 if args.quick else 120.0)
    started = dt.datetime.now(dt.UTC)
    mach, vers = machine(), versions()
    res = run_speed(quick=args.quick, budget_s=budget, only=args.only, fresh=not args.no_fresh,
                    log=say)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    command = " ".join([os.path.relpath(sys.executable, ROOT), "-m", "benchmarks.speed", *argv])
    header = {"date": started.isoformat(), "command": command, "machine": mach,
              "load_after": load_after, "versions": vers}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document(res, header))
    dump(res, js, header)
    say(f"wrote {out}, {js}")
    return out


if __name__ == "__main__":
    main()
