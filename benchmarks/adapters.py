"""How each checker is made to check the SAME hand-written backward of the same layer.

A benchmark *case* is a layer of the reference zoo (or a planted-bug mutant of one) with its
parameters and input: ``layer.forward(params, x) -> y`` and
``layer.backward(params, x, dy) -> (dparams, dx)``, written in numpy (the forward in the
array-API style, so it also runs on JAX arrays).

* **gradcheck** is called exactly as a user would: ``gc.check_layer(layer, params, x, mode=...,
  seed=0)``.  It contracts ``y`` with its own seeded random ``dy`` and checks every leaf
  (each parameter and ``x``).  A *catch* is verdict ``"fail"`` with at least one leaf failing with
  blame ``"hand"``; a wrong entry is *named by index* when its index is among the failing leaf's
  ``worst`` elements.
* **torch** (``torch.autograd.gradcheck``) gets a ``torch.autograd.Function`` whose forward calls
  the numpy forward on the tensors' own arrays and returns the scalar
  ``L = Σ dy ⊙ layer.forward(params, x)`` (``dy`` a fixed seeded random array), and whose
  backward returns the hand gradient ``layer.backward(params, x, dy)`` scaled by ``grad_output``.
  Every leaf is an input with ``requires_grad``.  Called with torch's documented defaults
  ``eps=1e-6, atol=1e-5, rtol=1e-3`` in slow (``fast_mode=False``: the whole numerical Jacobian,
  two forward calls per entry) and fast mode (one random direction); a catch is the
  ``GradcheckError`` it raises.  Inputs keep the case's dtype (torch documents gradcheck for
  double precision; a float32 case is run as float32, as a user with a float32 layer would).
* **jax** (``jax.test_util.check_grads(f, args, order=1, modes=("rev",))``) gets a
  ``jax.custom_vjp`` function whose primal runs the same numpy ``L`` through
  ``jax.pure_callback`` and whose bwd returns the same hand gradient through ``pure_callback``,
  scaled by the cotangent; called inside ``with jax.enable_x64(True):`` with its default
  tolerances (1e-5 for float64, 2e-3 for float32) and ``eps=1e-4``.  A catch is the
  ``AssertionError`` it raises.

Forward calls are counted at the layer (:class:`CountingLayer`): every call of
``layer.forward``, on numpy or JAX arrays (a JAX trace counts once).  Each check runs under a
wall-clock budget: when it runs out, the next forward call raises :class:`BudgetExceeded` and the
outcome is ``"cut off"`` with the calls made so far — never a guessed verdict.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import gradcheck as gc

__all__ = [
    "CHECKERS",
    "GC_CHECKERS",
    "BudgetExceeded",
    "Case",
    "Counter",
    "CountingLayer",
    "Outcome",
    "ScalarProblem",
    "gradcheck_outcome",
    "jax_outcome",
    "run_checker",
    "scalar_problem",
    "torch_available",
    "torch_outcome",
    "true_relative_error",
]

#: Every checker column, in table order.  ``gc:`` columns are gradcheck's modes.
GC_CHECKERS: dict[str, dict[str, Any]] = {
    "gc auto": {"mode": "auto"},
    "gc full": {"mode": "full"},
    "gc directional": {"mode": "directional"},
}
CHECKERS: tuple[str, ...] = (*GC_CHECKERS, "torch slow", "torch fast", "jax check_grads")

#: torch.autograd.gradcheck's documented defaults, passed explicitly.
TORCH_EPS, TORCH_ATOL, TORCH_RTOL = 1e-6, 1e-5, 1e-3


class BudgetExceeded(RuntimeError):
    """Raised by a counted forward call once the check's wall-clock budget is spent."""


@dataclass
class Counter:
    """Forward and backward calls of one check, and its wall-clock deadline."""

    budget_s: float = math.inf
    forward: int = 0
    backward: int = 0
    start: float = field(default_factory=time.perf_counter)
    cut_off: bool = False

    def tick_forward(self) -> None:
        self.forward += 1
        if time.perf_counter() - self.start > self.budget_s:
            self.cut_off = True
            raise BudgetExceeded(f"time budget of {self.budget_s:g} s spent after "
                                 f"{self.forward - 1} forward calls")

    def restart(self) -> None:
        self.forward = self.backward = 0
        self.cut_off = False
        self.start = time.perf_counter()


class CountingLayer:
    """A transparent proxy around a layer that counts ``forward`` and ``backward`` calls.

    Two proxies of equal layers are equal (their counters do not change what they compute): a
    check of a new proxy meets the JAX program traced for the layer before, as a user's
    long-lived layer object does.  A check of a new, unequal layer object traces again (for an
    LSTM unrolled over 100 steps about 1.5 s on 2 cores)."""

    def __init__(self, inner: Any, counter: Counter) -> None:
        self.inner = inner
        self.counter = counter

    def __eq__(self, other: object) -> bool:
        return type(other) is CountingLayer and bool(self.inner == other.inner)

    def __hash__(self) -> int:
        return hash((CountingLayer, self.inner))

    def forward(self, params: Any, x: Any) -> Any:
        self.counter.tick_forward()
        return self.inner.forward(params, x)

    def backward(self, params: Any, x: Any, dy: Any) -> Any:
        self.counter.backward += 1
        return self.inner.backward(params, x, dy)


@dataclass(frozen=True)
class Case:
    """One benchmark case: a layer (correct or mutant) with its parameters and input.

    Attributes:
        name: a readable label.
        layer: ``forward(params, x)`` / ``backward(params, x, dy)``.
        params: a flat dict of float arrays (may be empty).
        x: the input array.
        family: the layer family (``dense``, ``lstm``, ...).
        kind: ``"mutant"`` or ``"correct"``.
        wrong_leaves: for a mutant, the leaves its bug makes wrong (when known).
        wrong_entry: for a single-entry mutant, ``(leaf, index)`` of the wrong entry.
        tags: free labels (``float32``, ``kinks``, ``single-entry``, ...).
    """

    name: str
    layer: Any
    params: dict[str, np.ndarray]
    x: np.ndarray
    family: str = ""
    kind: str = "correct"
    wrong_leaves: frozenset[str] = frozenset()
    wrong_entry: tuple[str, tuple[int, ...]] | None = None
    tags: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [*self.params, "x"]

    @property
    def values(self) -> list[np.ndarray]:
        return [*self.params.values(), self.x]

    @property
    def n_entries(self) -> int:
        """``N``: the number of checked scalars (every parameter entry and every input entry)."""
        return int(sum(np.size(v) for v in self.values))

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.asarray(self.x).dtype

    def split(self, arrays: Sequence[Any]) -> tuple[dict[str, Any], Any]:
        """``(params, x)`` rebuilt from leaves in :attr:`names` order."""
        return dict(zip(self.params, arrays[:-1], strict=True)), arrays[-1]


@dataclass
class Outcome:
    """What one checker said about one case, and what it cost.

    Attributes:
        checker: the column name (see :data:`CHECKERS`).
        status: ``pass`` / ``fail`` / ``inconclusive`` (gradcheck's verdict; torch and jax only
            say pass or fail), ``error`` (the checker raised something else), ``cut off`` (the
            time budget ran out), ``not installed``, ``not run`` (the cost benchmark skips a
            checker on a larger problem of a family where it was already cut off).
        caught: the checker reported the hand gradient wrong (gradcheck: verdict ``fail`` with
            blame ``hand``).
        wall_s: wall-clock seconds of the check call.
        forward_calls: calls of ``layer.forward`` counted at the layer.
        backward_calls: calls of ``layer.backward``.
        engine_forward_calls: gradcheck's own ``CheckResult.forward_calls`` (None for others).
        named: for a single-entry mutant, whether the wrong entry's index was named (gradcheck:
            among the failing leaf's ``worst``); None when not applicable or not reported.
        failing: the leaves the checker says are wrong (torch names one input; jax none).
        detail: a short message (the first line of an error, a note).
        power: gradcheck's claimed detection power per leaf (``leaf.detection_power``).
    """

    checker: str
    status: str
    caught: bool = False
    wall_s: float = math.nan
    forward_calls: int = 0
    backward_calls: int = 0
    engine_forward_calls: int | None = None
    named: bool | None = None
    failing: tuple[str, ...] = ()
    detail: str = ""
    power: dict[str, float] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.status not in ("cut off", "not installed", "error", "not run")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- the scalar problem


@dataclass(frozen=True)
class ScalarProblem:
    """``L(leaves) = Σ dy ⊙ forward(params, x)`` and its hand gradient, both in numpy.

    ``loss`` and ``grad`` take the leaves in :attr:`Case.names` order in the case's dtype and
    go through the counting layer.
    """

    case: Case
    dy: np.ndarray
    loss: Callable[[Sequence[np.ndarray]], np.ndarray]
    grad: Callable[[Sequence[np.ndarray]], list[np.ndarray]]


def scalar_problem(case: Case, layer: Any, seed: int = 0) -> ScalarProblem:
    """The scalar loss the foreign checkers see, with a seeded ``dy`` in the output's dtype.

    ``layer`` is normally a :class:`CountingLayer` around ``case.layer``.  A ``dx`` of ``None``
    (a layer that does not return the input gradient) is reported as zeros.
    """
    y0 = np.asarray(case.layer.forward(case.params, case.x))
    dy = np.random.default_rng(seed).standard_normal(y0.shape).astype(y0.dtype)

    def loss(arrays: Sequence[np.ndarray]) -> np.ndarray:
        params, x = case.split(list(arrays))
        y = np.asarray(layer.forward(params, x))
        return np.asarray(np.sum(dy * y), dtype=y0.dtype)

    def grad(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        params, x = case.split([np.array(a) for a in arrays])
        dparams, dx = layer.backward(params, x, dy.copy())
        out = [np.asarray(dparams[k]) for k in case.params]
        out.append(np.zeros_like(np.asarray(x)) if dx is None else np.asarray(dx))
        return [np.asarray(g, dtype=np.asarray(v).dtype).reshape(np.shape(v))
                for g, v in zip(out, arrays, strict=True)]

    return ScalarProblem(case, dy, loss, grad)


def true_relative_error(case: Case, seed: int = 0) -> float:
    """How wrong the case's hand gradient really is: ``max over leaves of
    max|hand − ∇L| / max|∇L|``, with ``∇L`` from ``jax.grad`` of the same forward in float64
    (``L`` as in :func:`scalar_problem`).  0 for a correct float64 case up to rounding."""
    import jax
    import jax.numpy as jnp

    prob = scalar_problem(case, case.layer, seed)
    values64 = [np.asarray(v, np.float64) for v in case.values]
    dy64 = prob.dy.astype(np.float64)
    hand = prob.grad(case.values)
    with jax.enable_x64(True):
        def L(leaves: list[Any]) -> Any:
            params, x = case.split(leaves)
            return jnp.sum(jnp.asarray(dy64) * case.layer.forward(params, x))

        ref = jax.grad(L)([jnp.asarray(v) for v in values64])
        ref = [np.asarray(r, np.float64) for r in ref]
    worst = 0.0
    for h, r in zip(hand, ref, strict=True):
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        diff = float(np.max(np.abs(h.astype(np.float64) - r))) if r.size else 0.0
        if scale > 0:
            worst = max(worst, diff / scale)
        elif diff > 0:
            worst = math.inf
    return worst


# ----------------------------------------------------------------------------- gradcheck


def gradcheck_outcome(case: Case, checker: str = "gc auto", *, budget_s: float = math.inf,
                      **options: Any) -> tuple[Outcome, gc.CheckResult | None]:
    """Run ``gc.check_layer`` on the case as a user would (``seed=0``, the checker's mode).

    Returns the outcome and the :class:`gradcheck.CheckResult` (None when it raised)."""
    counter = Counter(budget_s)
    layer = CountingLayer(case.layer, counter)
    opts = {**GC_CHECKERS.get(checker, {}), "seed": 0, "name": case.name, **options}
    counter.restart()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = gc.check_layer(layer, case.params, case.x, **opts)
    except Exception as exc:
        wall = time.perf_counter() - t0
        status = "cut off" if counter.cut_off else "error"
        return Outcome(checker, status, False, wall, counter.forward, counter.backward,
                       detail=f"{type(exc).__name__}: {_first_line(exc)}"), None
    wall = time.perf_counter() - t0
    if counter.cut_off:  # a swallowed BudgetExceeded (a JAX path that fell back, say)
        return Outcome(checker, "cut off", False, wall, counter.forward, counter.backward,
                       res.forward_calls, detail="time budget spent"), None
    failing = tuple(leaf.name for leaf in res.leaves if leaf.verdict == "fail" and leaf.blame == "hand")
    named = None
    if case.wrong_entry is not None:
        leaf_name, index = case.wrong_entry
        named = any(leaf.name == leaf_name and any(tuple(e.index) == tuple(index) for e in leaf.worst)
                    for leaf in res.leaves if leaf.verdict == "fail")
    power = {leaf.name: float(leaf.detection_power) for leaf in res.leaves}
    detail = "; ".join(res.notes[:1])
    return Outcome(checker, res.verdict, res.verdict == "fail" and bool(failing), wall,
                   counter.forward, counter.backward, res.forward_calls, named, failing, detail,
                   power), res


# ----------------------------------------------------------------------------- torch


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_outcome(case: Case, *, fast_mode: bool, budget_s: float = math.inf) -> Outcome:
    """``torch.autograd.gradcheck`` of the hand gradient (see the module docstring)."""
    checker = "torch fast" if fast_mode else "torch slow"
    if not torch_available():
        return Outcome(checker, "not installed")
    import torch
    from torch.autograd.gradcheck import GradcheckError

    counter = Counter(budget_s)
    prob = scalar_problem(case, CountingLayer(case.layer, counter))

    class HandGradient(torch.autograd.Function):
        """Forward: the numpy layer; backward: the hand gradient × grad_output."""

        @staticmethod
        def forward(ctx: Any, *tensors: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(*tensors)
            value = prob.loss([t.detach().numpy() for t in tensors])
            return torch.as_tensor(value, dtype=tensors[-1].dtype)

        @staticmethod
        def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, ...]:
            tensors = ctx.saved_tensors
            grads = prob.grad([t.detach().numpy() for t in tensors])
            return tuple(torch.from_numpy(np.ascontiguousarray(g)).to(t.dtype) * grad_output
                         for g, t in zip(grads, tensors, strict=True))

    inputs = tuple(torch.tensor(np.array(v), requires_grad=True) for v in case.values)
    counter.restart()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "not a double precision" on float32 cases
            torch.autograd.gradcheck(HandGradient.apply, inputs, eps=TORCH_EPS, atol=TORCH_ATOL,
                                     rtol=TORCH_RTOL, raise_exception=True, fast_mode=fast_mode)
    except GradcheckError as exc:
        wall = time.perf_counter() - t0
        m = re.search(r"with respect to input (\d+)", str(exc))
        failing = (case.names[int(m.group(1))],) if m else ()
        return Outcome(checker, "fail", True, wall, counter.forward, counter.backward,
                       failing=failing, detail=_first_line(exc))
    except Exception as exc:
        wall = time.perf_counter() - t0
        status = "cut off" if counter.cut_off else "error"
        return Outcome(checker, status, False, wall, counter.forward, counter.backward,
                       detail=f"{type(exc).__name__}: {_first_line(exc)}")
    wall = time.perf_counter() - t0
    return Outcome(checker, "pass", False, wall, counter.forward, counter.backward)


# ----------------------------------------------------------------------------- jax


def jax_outcome(case: Case, *, budget_s: float = math.inf) -> Outcome:
    """``jax.test_util.check_grads(f, args, order=1, modes=("rev",))`` of the hand gradient."""
    import jax
    from jax.test_util import check_grads

    checker = "jax check_grads"
    counter = Counter(budget_s)
    prob = scalar_problem(case, CountingLayer(case.layer, counter))
    dtype = case.dtype

    def host_loss(*arrays: Any) -> np.ndarray:
        return np.asarray(prob.loss([np.asarray(a) for a in arrays]), dtype=dtype)

    def host_grad(*arrays: Any) -> list[np.ndarray]:
        return prob.grad([np.asarray(a) for a in arrays])

    def build() -> Callable[..., Any]:
        # ShapeDtypeStructs made inside enable_x64: outside it float64 would become float32.
        shapes = [jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype) for v in case.values]
        out = jax.ShapeDtypeStruct((), dtype)

        @jax.custom_vjp
        def f(*leaves: Any) -> Any:
            return jax.pure_callback(host_loss, out, *leaves)

        def f_fwd(*leaves: Any) -> tuple[Any, tuple[Any, ...]]:
            return f(*leaves), leaves

        def f_bwd(res: tuple[Any, ...], g: Any) -> tuple[Any, ...]:
            grads = jax.pure_callback(host_grad, shapes, *res)
            return tuple(gi * g.astype(gi.dtype) for gi in grads)

        f.defvjp(f_fwd, f_bwd)
        return f

    # pure_callback checks a callback's results after canonicalising them with the x64 flag of
    # the thread the callback runs on (an XLA worker thread, not ours): under the thread-local
    # ``enable_x64`` context alone a float64 result is sometimes seen as float32 and the call
    # fails (jax 0.10.2).  The global flag is therefore also set, for this call only.
    previous = bool(jax.config.jax_enable_x64)
    counter.restart()
    t0 = time.perf_counter()
    try:
        jax.config.update("jax_enable_x64", True)
        with jax.enable_x64(True), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_grads(build(), tuple(np.array(v) for v in case.values), order=1, modes=("rev",))
    except AssertionError as exc:
        wall = time.perf_counter() - t0
        return Outcome(checker, "fail", True, wall, counter.forward, counter.backward,
                       detail=_first_line(exc, skip_blank=True))
    except Exception as exc:
        wall = time.perf_counter() - t0
        status = "cut off" if counter.cut_off else "error"
        return Outcome(checker, status, False, wall, counter.forward, counter.backward,
                       detail=f"{type(exc).__name__}: {_first_line(exc)}")
    finally:
        jax.config.update("jax_enable_x64", previous)
    wall = time.perf_counter() - t0
    return Outcome(checker, "pass", False, wall, counter.forward, counter.backward)


# ----------------------------------------------------------------------------- dispatch


def run_checker(case: Case, checker: str, *, budget_s: float = math.inf,
                **gc_options: Any) -> Outcome:
    """One checker column on one case (``gc_options`` go to gradcheck only)."""
    if checker in GC_CHECKERS or checker.startswith("gc "):
        return gradcheck_outcome(case, checker, budget_s=budget_s, **gc_options)[0]
    if checker == "torch slow":
        return torch_outcome(case, fast_mode=False, budget_s=budget_s)
    if checker == "torch fast":
        return torch_outcome(case, fast_mode=True, budget_s=budget_s)
    if checker == "jax check_grads":
        return jax_outcome(case, budget_s=budget_s)
    raise ValueError(f"unknown checker {checker!r}; expected one of {CHECKERS}")


def _first_line(exc: BaseException, *, skip_blank: bool = False) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines()]
    if skip_blank:
        lines = [ln for ln in lines if ln]
    return (lines[0] if lines else type(exc).__name__)[:160]
