"""Forward-mode and second-order checks: hand JVPs and HVPs under every checker, side by side.

Two problems on the same numpy functions, each with a hand-derived rule and planted bugs:

* **JVP** of a dense tanh layer ``y = tanh(x W + b)`` with respect to all of ``x``, ``W`` and
  ``b``: ``ẏ = (1 − y²) ⊙ (ẋ W + x Ẇ + ḃ)`` (:func:`dense_jvp`), and five bugs
  (:data:`JVP_BUGS`): the bias tangent missing, the sign of the ``W`` term flipped, ``1 − y``
  for ``1 − y²``, one entry's Jacobian column doubled, the ``x`` term taken from the wrong side
  of ``W``.
* **HVP** of the SSE loss ``L(W, b) = ½ ‖tanh(x W + b) − t‖²`` with its hand gradient
  ``δ = (y − t) ⊙ g'``, ``∇_W = xᵀ δ``, ``∇_b = Σ_n δ`` (:func:`sse_grad`) and its hand HVP by
  Pearlmutter's R-operator along ``v = (V, c)`` (:func:`sse_hvp`; ``g' = 1 − y²``,
  ``g'' = −2 y g'``)::

      R{net} = x V + c
      R{δ}   = R{y} ⊙ g' + (y − t) ⊙ g'' ⊙ R{net} = (g'² − 2 (y − t) ⊙ y ⊙ g') ⊙ R{net}
      (H v)_W = xᵀ R{δ},   (H v)_b = Σ_n R{δ}

  and four bugs (:data:`HVP_BUGS`): the Gauss–Newton product (the ``(y − t) ⊙ g''`` term
  dropped), the sign of that term flipped, a factor 2 (the ½ of SSE forgotten), the ``c`` part of
  ``R{net}`` missing from ``(H v)_W`` (a missing W–b cross term: the hand product is no longer
  symmetric).

Checkers, each given the hand rule (numpy code; never the checker's own autodiff of the
forward):

* gradcheck: ``gc.check_jvp(fun, jvp, params)``; ``gc.check_hvp(loss, hvp, params, x, t,
  grad=grad)`` and without ``grad=``; ``gc.check_grad`` of the same loss for the cost ratio.
  All with ``seed=0``.
* torch: a ``torch.autograd.Function`` with a ``jvp`` staticmethod (``setup_context`` +
  ``ctx.save_for_forward``) checked by ``torch.autograd.gradcheck(..., check_forward_ad=True,
  check_backward_ad=False, check_undefined_grad=False, check_batched_grad=False)`` slow and
  ``fast_mode=True``; ``torch.autograd.gradgradcheck`` (its defaults) of a loss Function whose
  backward calls a Grad Function (forward = the hand gradient, backward = the hand HVP of the
  incoming vector: H is symmetric), slow and fast; and the same Grad Function with the hand HVP
  as its ``jvp`` under ``check_forward_ad``, slow and fast.
* jax: ``jax.custom_jvp`` rules whose primal and tangent run the numpy code through
  ``jax.pure_callback``, checked by ``jax.test_util.check_grads(f, args, order=1,
  modes=("fwd",))`` for the JVP and for the gradient function whose custom jvp is the hand HVP;
  and ``check_grads(loss, order=2, ...)`` of a loss whose custom jvp is ``⟨grad, ṫ⟩``, in
  ``modes=("fwd",)`` and in ``modes=("fwd", "rev")`` (reverse mode has to transpose the
  tangent callback, which ``pure_callback`` cannot: reported as not applicable, with JAX's
  reason).  Everything under ``with jax.enable_x64(True):`` (never the global flag).

Reported per checker and problem: the outcome on the correct rule (false alarms) and on every
planted bug (recall), wall time of the correct rule's first call and the median of warm
repeats, and forward / rule calls; for gradcheck the failing leaves against the ones the bug
touches, whether the doubled column's entry is named, the diagnoses and the Hessian notes
(symmetry, Gauss–Newton).  The issue's target — an HVP check costs ≤ 3× a gradient check of the
same problem (``check_hvp`` with ``grad=`` against ``check_grad``, warm medians) — is computed
from this run's numbers.  Runnable alone: ``python -m benchmarks.higher [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import gradcheck as gc
from benchmarks.adapters import torch_available

__all__ = [
    "HVP_BUGS",
    "HVP_CHECKERS",
    "JVP_BUGS",
    "JVP_CHECKERS",
    "HigherResult",
    "Point",
    "Rule",
    "Run",
    "dense_forward",
    "dense_jvp",
    "make_point",
    "render",
    "run_higher",
    "sse_grad",
    "sse_hvp",
    "sse_loss",
]

#: The entry whose Jacobian column the "column doubled" bug doubles.
ENTRY = (2, 3)

# ----------------------------------------------------------------------------- the numpy functions


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``y = tanh(x W + b)``."""
    return np.tanh(x @ W + b)


def dense_jvp(x: np.ndarray, W: np.ndarray, b: np.ndarray, dx: np.ndarray, dW: np.ndarray,
              db: np.ndarray) -> np.ndarray:
    """``ẏ = (1 − y²) ⊙ (ẋ W + x Ẇ + ḃ)``."""
    y = dense_forward(x, W, b)
    return (1 - y ** 2) * (dx @ W + x @ dW + db)


def sse_loss(W: np.ndarray, b: np.ndarray, x: np.ndarray, t: np.ndarray) -> float:
    """``½ ‖tanh(x W + b) − t‖²``."""
    r = dense_forward(x, W, b) - t
    return 0.5 * float(np.sum(r * r))


def sse_grad(W: np.ndarray, b: np.ndarray, x: np.ndarray, t: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """``δ = (y − t) ⊙ (1 − y²)``; ``(xᵀ δ, Σ_n δ)``."""
    y = dense_forward(x, W, b)
    delta = (y - t) * (1 - y ** 2)
    return x.T @ delta, delta.sum(axis=0)


def _r_delta(W: np.ndarray, b: np.ndarray, V: np.ndarray, c: np.ndarray, x: np.ndarray,
             t: np.ndarray, *, residual_sign: float = 1.0, residual: bool = True,
             bias_in_net: bool = True) -> np.ndarray:
    y = dense_forward(x, W, b)
    g1 = 1 - y ** 2
    g2 = -2 * y * g1  # tanh''
    r_net = x @ V + (c if bias_in_net else 0.0)
    coeff = g1 * g1 + (residual_sign * (y - t) * g2 if residual else 0.0)
    return coeff * r_net


def sse_hvp(W: np.ndarray, b: np.ndarray, V: np.ndarray, c: np.ndarray, x: np.ndarray,
            t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearlmutter's R-operator: ``R{δ} = (g'² + (y − t) g'') ⊙ (x V + c)``;
    ``(xᵀ R{δ}, Σ_n R{δ})``."""
    rd = _r_delta(W, b, V, c, x, t)
    return x.T @ rd, rd.sum(axis=0)


# ----------------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class Rule:
    """A hand rule, correct or with a planted bug.

    ``fn`` is ``jvp(x, W, b, dx, dW, db) -> ẏ`` (JVP rules) or ``hvp(W, b, V, c, x, t) ->
    (HV_W, HV_b)`` (HVP rules); ``wrong_leaves`` the leaves the bug makes wrong,
    ``wrong_entry`` ``(leaf, index)`` of a single wrong Jacobian column."""

    name: str
    fn: Callable[..., Any]
    kind: str = "bug"
    wrong_leaves: frozenset[str] = frozenset()
    wrong_entry: tuple[str, tuple[int, ...]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "wrong_leaves": sorted(self.wrong_leaves),
                "wrong_entry": [self.wrong_entry[0], list(self.wrong_entry[1])]
                if self.wrong_entry else None}


def _jvp_no_bias(x, W, b, dx, dW, db):  # type: ignore[no-untyped-def]
    y = dense_forward(x, W, b)
    return (1 - y ** 2) * (dx @ W + x @ dW)


def _jvp_w_sign(x, W, b, dx, dW, db):  # type: ignore[no-untyped-def]
    y = dense_forward(x, W, b)
    return (1 - y ** 2) * (dx @ W - x @ dW + db)


def _jvp_one_minus_y(x, W, b, dx, dW, db):  # type: ignore[no-untyped-def]
    y = dense_forward(x, W, b)
    return (1 - y) * (dx @ W + x @ dW + db)


def _jvp_column_doubled(x, W, b, dx, dW, db):  # type: ignore[no-untyped-def]
    y = dense_forward(x, W, b)
    out = (1 - y ** 2) * (dx @ W + x @ dW + db)
    i, j = ENTRY
    out[:, j] += (1 - y[:, j] ** 2) * x[:, i] * dW[i, j]  # the column of W[i, j], twice
    return out


def _jvp_x_wrong_side(x, W, b, dx, dW, db):  # type: ignore[no-untyped-def]
    y = dense_forward(x, W, b)
    return (1 - y ** 2) * (dx @ W.T.reshape(W.shape) + x @ dW + db)


JVP_CORRECT = Rule("correct", dense_jvp, kind="correct")
#: The planted JVP bugs.
JVP_BUGS: tuple[Rule, ...] = (
    Rule("bias tangent missing", _jvp_no_bias, wrong_leaves=frozenset({"b"})),
    Rule("W term sign flipped", _jvp_w_sign, wrong_leaves=frozenset({"W"})),
    Rule("1 − y for 1 − y²", _jvp_one_minus_y, wrong_leaves=frozenset({"W", "b", "x"})),
    Rule(f"W{list(ENTRY)} column doubled", _jvp_column_doubled, wrong_leaves=frozenset({"W"}),
         wrong_entry=("W", ENTRY)),
    Rule("x term from the wrong side (ẋ·Wᵀ laid out as W)", _jvp_x_wrong_side,
         wrong_leaves=frozenset({"x"})),
)


def _hvp_gauss_newton(W, b, V, c, x, t):  # type: ignore[no-untyped-def]
    rd = _r_delta(W, b, V, c, x, t, residual=False)
    return x.T @ rd, rd.sum(axis=0)


def _hvp_sign(W, b, V, c, x, t):  # type: ignore[no-untyped-def]
    rd = _r_delta(W, b, V, c, x, t, residual_sign=-1.0)
    return x.T @ rd, rd.sum(axis=0)


def _hvp_factor_2(W, b, V, c, x, t):  # type: ignore[no-untyped-def]
    rd = _r_delta(W, b, V, c, x, t)
    return 2 * (x.T @ rd), 2 * rd.sum(axis=0)


def _hvp_no_cross(W, b, V, c, x, t):  # type: ignore[no-untyped-def]
    rd_w = _r_delta(W, b, V, c, x, t, bias_in_net=False)
    rd = _r_delta(W, b, V, c, x, t)
    return x.T @ rd_w, rd.sum(axis=0)


HVP_CORRECT = Rule("correct", sse_hvp, kind="correct")
#: The planted HVP bugs.
HVP_BUGS: tuple[Rule, ...] = (
    Rule("Gauss–Newton (residual·g'' dropped)", _hvp_gauss_newton, wrong_leaves=frozenset({"W", "b"})),
    Rule("residual·g'' sign flipped", _hvp_sign, wrong_leaves=frozenset({"W", "b"})),
    Rule("factor 2 (½ forgotten)", _hvp_factor_2, wrong_leaves=frozenset({"W", "b"})),
    Rule("W–b cross term missing from H·v_W", _hvp_no_cross, wrong_leaves=frozenset({"W"})),
)


# ----------------------------------------------------------------------------- the points


@dataclass(frozen=True)
class Point:
    """Where the rules are checked: ``x`` (n, d_in), ``W`` (d_in, d_out), ``b``, targets ``t``."""

    name: str
    x: np.ndarray
    W: np.ndarray
    b: np.ndarray
    t: np.ndarray

    @property
    def jvp_params(self) -> dict[str, np.ndarray]:
        return {"W": self.W, "b": self.b, "x": self.x}

    @property
    def hvp_params(self) -> dict[str, np.ndarray]:
        return {"W": self.W, "b": self.b}


def make_point(n: int, d_in: int, d_out: int, *, seed: int = 0, w_scale: float | None = None,
               name: str | None = None) -> Point:
    """A seeded point: ``x, t ~ N(0, 1)``, ``W ~ N(0, w_scale²)`` (default ``1/√d_in``),
    ``b ~ N(0, 0.1²)``."""
    rng = np.random.default_rng(seed)
    scale = 1 / math.sqrt(d_in) if w_scale is None else w_scale
    x = rng.standard_normal((n, d_in))
    W = rng.standard_normal((d_in, d_out)) * scale
    b = 0.1 * rng.standard_normal(d_out)
    t = rng.standard_normal((n, d_out))
    return Point(name or f"{n}×{d_in}→{d_out}", x, W, b, t)


# ----------------------------------------------------------------------------- outcomes


@dataclass
class Calls:
    forward: int = 0
    rule: int = 0


@dataclass
class Run:
    """One checker on one rule at one point.

    ``status``: ``pass`` / ``fail`` / ``inconclusive`` (gradcheck's verdict; torch and jax say
    pass or fail), ``not applicable`` (the checker cannot check this rule: the reason is in
    ``detail``), ``error``, ``not installed``.  ``caught``: the checker reported the rule wrong.
    ``failing``: the leaves it names (torch: ``output → input`` of its first mismatch);
    ``named``: whether it names the doubled column's entry; ``mismatched``: gradcheck's
    ``(n_mismatched, n_elements)`` per failing leaf; ``retries``: how often the check was run
    again after JAX's callback dtype flake (see :func:`_timed`)."""

    problem: str
    point: str
    checker: str
    rule: str
    status: str
    caught: bool = False
    wall_s: float = math.nan
    forward_calls: int = 0
    rule_calls: int = 0
    failing: tuple[str, ...] = ()
    named: bool | None = None
    diagnosis: dict[str, str] = field(default_factory=dict)
    mismatched: dict[str, tuple[int, int]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    detail: str = ""
    retries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Timing:
    """The correct rule's first call and the median of warm repeats."""

    problem: str
    point: str
    checker: str
    first_s: float
    warm_s: float
    repeats: int
    forward_calls: int
    rule_calls: int
    status: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


#: How often a check that hit JAX's callback dtype flake is run again.
CALLBACK_RETRIES = 3
_DTYPE_FLAKE = "Incorrect output dtype"


def _timed(problem: str, point: Point, checker: str, rule: Rule, calls: Calls,
           body: Callable[[], Run | None]) -> Run:
    """Run ``body`` (which returns a Run for a completed check or None for a pass) and time it;
    torch's GradcheckError and jax's AssertionError are fails, a transpose refusal is not
    applicable, anything else an error.

    ``pure_callback`` canonicalises a callback's results with the x64 flag of the thread the
    callback runs on — an XLA worker thread, which does not see the calling thread's scoped
    ``jax.enable_x64(True)`` — so a float64 result is now and then refused as float32 (jax
    0.10.2).  The global flag would avoid it, and is not touched here: a check that hits this
    error is run again (up to :data:`CALLBACK_RETRIES` times), and ``retries`` says how often."""
    attempt = -1
    while attempt < CALLBACK_RETRIES:
        attempt += 1
        calls.forward = calls.rule = 0
        t0 = time.perf_counter()
        status, caught, detail, extra, flake = "pass", False, "", None, False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                extra = body()
        except Exception as exc:
            msg = _first_line(exc)
            if isinstance(exc, AssertionError) or type(exc).__name__ == "GradcheckError":
                status, caught, detail = "fail", True, msg  # jax check_grads; torch gradcheck
            else:
                status = "not applicable" if "transpose" in msg else "error"
                detail = f"{type(exc).__name__}: {msg}"
                flake = _DTYPE_FLAKE in str(exc)
                if flake:
                    detail += f" ({_DTYPE_FLAKE}: jax's callback dtype check on a worker thread)"
        wall = time.perf_counter() - t0
        if not flake:
            break
    if extra is not None:
        extra.wall_s, extra.forward_calls, extra.rule_calls = wall, calls.forward, calls.rule
        extra.retries = attempt
        return extra
    run = Run(problem, point.name, checker, rule.name, status, caught, wall, calls.forward,
              calls.rule, detail=detail, retries=attempt)
    m = re.search(r"output (\d+) with respect to input (\d+)", detail)
    if m:
        ins = ["x", "W", "b"] if problem == "JVP" else ["W", "b", "grad_output"]
        outs = ["y"] if problem == "JVP" else ["∇_W", "∇_b"]
        i, k = int(m.group(1)), int(m.group(2))
        run.failing = (f"{outs[i] if i < len(outs) else f'output {i}'} → "
                       f"{ins[k] if k < len(ins) else f'input {k}'}",)
    return run


# ----------------------------------------------------------------------------- gradcheck


def _gc_run(problem: str, point: Point, checker: str, rule: Rule, res: gc.CheckResult) -> Run:
    failing = tuple(leaf.name for leaf in res.leaves if leaf.verdict == "fail" and leaf.blame == "hand")
    named = None
    if rule.wrong_entry is not None:
        leaf_name, index = rule.wrong_entry
        named = any(leaf.name == leaf_name and any(tuple(e.index) == tuple(index) for e in leaf.worst)
                    for leaf in res.leaves if leaf.verdict == "fail")
    diagnosis = {leaf.name: f"{leaf.diagnosis.kind}: {leaf.diagnosis.summary}"
                 for leaf in res.leaves if leaf.verdict == "fail" and leaf.diagnosis is not None}
    notes = tuple(n for n in res.notes if "Gauss" in n or "symmetric" in n)
    mismatched = {leaf.name: (int(leaf.n_mismatched), int(leaf.n_elements))
                  for leaf in res.leaves if leaf.verdict == "fail"}
    return Run(problem, point.name, checker, rule.name, res.verdict,
               res.verdict == "fail" and bool(failing), failing=failing, named=named,
               diagnosis=diagnosis, mismatched=mismatched, notes=notes)


def _gc_jvp(point: Point, rule: Rule, calls: Calls) -> Callable[[], Run]:
    def fun(p: dict[str, Any]) -> Any:
        calls.forward += 1
        return dense_forward(p["x"], p["W"], p["b"])

    def jvp(p: dict[str, Any], tg: dict[str, Any]) -> Any:
        calls.rule += 1
        return rule.fn(p["x"], p["W"], p["b"], tg["x"], tg["W"], tg["b"])

    def body() -> Run:
        res = gc.check_jvp(fun, jvp, point.jvp_params, seed=0, name=f"dense tanh {point.name}")
        return _gc_run("JVP", point, "gc check_jvp", rule, res)

    return body


def _numpy_sse(calls: Calls, rule: Rule) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    def loss(p: dict[str, Any], x: Any, t: Any) -> Any:
        calls.forward += 1
        r = dense_forward(x, p["W"], p["b"]) - t
        return 0.5 * np.sum(r * r)

    def grad(p: dict[str, Any], x: Any, t: Any) -> dict[str, Any]:
        gW, gb = sse_grad(p["W"], p["b"], x, t)
        return {"W": gW, "b": gb}

    def hvp(p: dict[str, Any], v: dict[str, Any], x: Any, t: Any) -> dict[str, Any]:
        calls.rule += 1
        hW, hb = rule.fn(p["W"], p["b"], v["W"], v["b"], x, t)
        return {"W": hW, "b": hb}

    return loss, grad, hvp


def _gc_hvp(point: Point, rule: Rule, calls: Calls, *, with_grad: bool) -> Callable[[], Run]:
    loss, grad, hvp = _numpy_sse(calls, rule)
    checker = "gc check_hvp, grad=" if with_grad else "gc check_hvp, no grad"

    def body() -> Run:
        res = gc.check_hvp(loss, hvp, point.hvp_params, point.x, point.t,
                           grad=grad if with_grad else None, seed=0, name=f"sse {point.name}")
        return _gc_run("HVP", point, checker, rule, res)

    return body


def _gc_grad(point: Point, rule: Rule, calls: Calls) -> Callable[[], Run]:
    loss, grad, _ = _numpy_sse(calls, rule)

    def counted(p: dict[str, Any], x: Any, t: Any) -> dict[str, Any]:
        calls.rule += 1
        return grad(p, x, t)

    def body() -> Run:
        res = gc.check_grad(loss, counted, point.hvp_params, point.x, point.t, seed=0,
                            name=f"sse {point.name}")
        return _gc_run("HVP", point, "gc check_grad (the gradient)", rule, res)

    return body


# ----------------------------------------------------------------------------- torch

TORCH_FWD_OPTS = {"check_forward_ad": True, "check_backward_ad": False, "check_undefined_grad": False,
                  "check_batched_grad": False}


def _np(*ts: Any) -> list[np.ndarray]:
    return [t.detach().numpy() for t in ts]


def _tangent(d: Any, like: Any) -> np.ndarray:
    return np.zeros(tuple(like.shape)) if d is None else d.detach().numpy()


def _t(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _torch_jvp(point: Point, rule: Rule, calls: Calls, *, fast: bool) -> Callable[[], None]:
    import torch

    class HandJvp(torch.autograd.Function):
        """Forward: the numpy layer; jvp: the hand rule (forward-mode custom function)."""

        @staticmethod
        def forward(x: Any, W: Any, b: Any) -> Any:
            calls.forward += 1
            return _t(dense_forward(*_np(x, W, b)))

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_forward(*inputs)

        @staticmethod
        def jvp(ctx: Any, dx: Any, dW: Any, db: Any) -> Any:
            calls.rule += 1
            x, W, b = ctx.saved_tensors
            return _t(rule.fn(*_np(x, W, b), _tangent(dx, x), _tangent(dW, W), _tangent(db, b)))

    inputs = tuple(torch.tensor(a, requires_grad=True) for a in (point.x, point.W, point.b))

    def body() -> None:
        torch.autograd.gradcheck(HandJvp.apply, inputs, fast_mode=fast, **TORCH_FWD_OPTS)

    return body


def _torch_grad_fn(point: Point, rule: Rule, calls: Calls) -> Any:
    import torch

    x, t = point.x, point.t

    class HandGrad(torch.autograd.Function):
        """Forward: the hand gradient; backward and jvp: the hand HVP (H is symmetric)."""

        @staticmethod
        def forward(W: Any, b: Any) -> Any:
            gW, gb = sse_grad(*_np(W, b), x, t)
            return _t(gW), _t(gb)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(*inputs)
            ctx.save_for_forward(*inputs)

        @staticmethod
        def backward(ctx: Any, gW: Any, gb: Any) -> Any:
            calls.rule += 1
            W, b = ctx.saved_tensors
            hW, hb = rule.fn(*_np(W, b), _tangent(gW, W), _tangent(gb, b), x, t)
            return _t(hW), _t(hb)

        @staticmethod
        def jvp(ctx: Any, dW: Any, db: Any) -> Any:
            calls.rule += 1
            W, b = ctx.saved_tensors
            hW, hb = rule.fn(*_np(W, b), _tangent(dW, W), _tangent(db, b), x, t)
            return _t(hW), _t(hb)

    return HandGrad


def _torch_gradgrad(point: Point, rule: Rule, calls: Calls, *, fast: bool) -> Callable[[], None]:
    import torch

    HandGrad = _torch_grad_fn(point, rule, calls)
    x, t = point.x, point.t

    class HandLoss(torch.autograd.Function):
        """Forward: the numpy SSE loss; backward: HandGrad × grad_output (differentiable)."""

        @staticmethod
        def forward(W: Any, b: Any) -> Any:
            calls.forward += 1
            return torch.tensor(sse_loss(*_np(W, b), x, t), dtype=torch.float64)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            gW, gb = HandGrad.apply(*ctx.saved_tensors)
            return g * gW, g * gb

    inputs = tuple(torch.tensor(a, requires_grad=True) for a in (point.W, point.b))

    def body() -> None:
        torch.autograd.gradgradcheck(HandLoss.apply, inputs, fast_mode=fast)

    return body


def _torch_grad_fwd(point: Point, rule: Rule, calls: Calls, *, fast: bool) -> Callable[[], None]:
    import torch

    HandGrad = _torch_grad_fn(point, rule, calls)

    def counted(W: Any, b: Any) -> Any:
        calls.forward += 1
        return HandGrad.apply(W, b)

    inputs = tuple(torch.tensor(a, requires_grad=True) for a in (point.W, point.b))

    def body() -> None:
        torch.autograd.gradcheck(counted, inputs, fast_mode=fast, **TORCH_FWD_OPTS)

    return body


# ----------------------------------------------------------------------------- jax


def _jax_jvp(point: Point, rule: Rule, calls: Calls) -> Callable[[], None]:
    import jax
    from jax.test_util import check_grads

    def host_f(*a: Any) -> np.ndarray:
        calls.forward += 1
        return np.asarray(dense_forward(*map(np.asarray, a)), np.float64)

    def host_jvp(*a: Any) -> np.ndarray:
        calls.rule += 1
        return np.asarray(rule.fn(*map(np.asarray, a)), np.float64)

    def body() -> None:
        with jax.enable_x64(True):
            out = jax.ShapeDtypeStruct(point.t.shape, np.float64)

            @jax.custom_jvp
            def f(x: Any, W: Any, b: Any) -> Any:
                return jax.pure_callback(host_f, out, x, W, b)

            @f.defjvp
            def f_jvp(primals: Any, tangents: Any) -> Any:
                return f(*primals), jax.pure_callback(host_jvp, out, *primals, *tangents)

            check_grads(f, (point.x, point.W, point.b), order=1, modes=("fwd",))

    return body


def _jax_grad_fn(point: Point, rule: Rule, calls: Calls) -> Any:
    """The gradient function, a ``custom_jvp`` whose jvp is the hand HVP (build under x64)."""
    import jax

    x, t = point.x, point.t
    shapes = [jax.ShapeDtypeStruct(point.W.shape, np.float64),
              jax.ShapeDtypeStruct(point.b.shape, np.float64)]

    def host_grad(W: Any, b: Any) -> list[np.ndarray]:
        return [np.asarray(g, np.float64) for g in sse_grad(np.asarray(W), np.asarray(b), x, t)]

    def host_hvp(W: Any, b: Any, V: Any, c: Any) -> list[np.ndarray]:
        calls.rule += 1
        return [np.asarray(h, np.float64) for h in rule.fn(*map(np.asarray, (W, b, V, c)), x, t)]

    @jax.custom_jvp
    def grad_fn(W: Any, b: Any) -> Any:
        return tuple(jax.pure_callback(host_grad, shapes, W, b))

    @grad_fn.defjvp
    def grad_jvp(primals: Any, tangents: Any) -> Any:
        return grad_fn(*primals), tuple(jax.pure_callback(host_hvp, shapes, *primals, *tangents))

    return grad_fn


def _jax_grad_check(point: Point, rule: Rule, calls: Calls) -> Callable[[], None]:
    import jax
    from jax.test_util import check_grads

    def body() -> None:
        with jax.enable_x64(True):
            grad_fn = _jax_grad_fn(point, rule, calls)

            def counted(W: Any, b: Any) -> Any:
                calls.forward += 1  # one trace / evaluation of the gradient function
                return grad_fn(W, b)

            check_grads(counted, (point.W, point.b), order=1, modes=("fwd",))

    return body


def _jax_loss2(point: Point, rule: Rule, calls: Calls, modes: tuple[str, ...]) -> Callable[[], None]:
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads

    x, t = point.x, point.t

    def host_loss(W: Any, b: Any) -> np.ndarray:
        calls.forward += 1
        return np.asarray(sse_loss(np.asarray(W), np.asarray(b), x, t), np.float64)

    def body() -> None:
        with jax.enable_x64(True):
            grad_fn = _jax_grad_fn(point, rule, calls)
            scalar = jax.ShapeDtypeStruct((), np.float64)

            @jax.custom_jvp
            def loss(W: Any, b: Any) -> Any:
                return jax.pure_callback(host_loss, scalar, W, b)

            @loss.defjvp
            def loss_jvp(primals: Any, tangents: Any) -> Any:
                gW, gb = grad_fn(*primals)
                return loss(*primals), jnp.vdot(gW, tangents[0]) + jnp.vdot(gb, tangents[1])

            check_grads(loss, (point.W, point.b), order=2, modes=modes)

    return body


# ----------------------------------------------------------------------------- the checkers

Builder = Callable[[Point, Rule, Calls], Callable[[], Any]]

#: (column, builder, needs torch) of the JVP problem.
JVP_CHECKERS: tuple[tuple[str, Builder, bool], ...] = (
    ("gc check_jvp", _gc_jvp, False),
    ("torch fwd-AD slow", lambda p, r, c: _torch_jvp(p, r, c, fast=False), True),
    ("torch fwd-AD fast", lambda p, r, c: _torch_jvp(p, r, c, fast=True), True),
    ("jax check_grads fwd", _jax_jvp, False),
)
#: (column, builder, needs torch) of the HVP problem.
HVP_CHECKERS: tuple[tuple[str, Builder, bool], ...] = (
    ("gc check_hvp, grad=", lambda p, r, c: _gc_hvp(p, r, c, with_grad=True), False),
    ("gc check_hvp, no grad", lambda p, r, c: _gc_hvp(p, r, c, with_grad=False), False),
    ("torch gradgradcheck slow", lambda p, r, c: _torch_gradgrad(p, r, c, fast=False), True),
    ("torch gradgradcheck fast", lambda p, r, c: _torch_gradgrad(p, r, c, fast=True), True),
    ("torch fwd-AD of Grad slow", lambda p, r, c: _torch_grad_fwd(p, r, c, fast=False), True),
    ("torch fwd-AD of Grad fast", lambda p, r, c: _torch_grad_fwd(p, r, c, fast=True), True),
    ("jax check_grads fwd (grad fn)", _jax_grad_check, False),
    ("jax check_grads order 2 fwd (loss)", lambda p, r, c: _jax_loss2(p, r, c, ("fwd",)), False),
    ("jax check_grads order 2 fwd+rev (loss)", lambda p, r, c: _jax_loss2(p, r, c, ("fwd", "rev")),
     False),
)
#: The gradient check of the same loss (timing only: the denominator of the target).
GRAD_CHECKER = "gc check_grad (the gradient)"
HVP_TARGET = 3.0


# ----------------------------------------------------------------------------- reference values


def _jax_truths(point: Point, rules: Sequence[Rule], problem: str, seed: int = 1) -> dict[str, float]:
    """Each rule's relative error against JAX's autodiff of the forward along a seeded
    direction: ``‖hand − ref‖ / ‖ref‖`` (``jax.jvp`` of the layer; ``jax.jvp(jax.grad(L))``)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    with jax.enable_x64(True):
        if problem == "JVP":
            tan = [rng.standard_normal(a.shape) for a in (point.x, point.W, point.b)]
            _, ref = jax.jvp(lambda x, W, b: jnp.tanh(x @ W + b), (point.x, point.W, point.b),
                             tuple(tan))
            refs = [np.asarray(ref)]
            for r in rules:
                hand = [np.asarray(r.fn(point.x, point.W, point.b, *tan))]
                out[r.name] = _rel(hand, refs)
        else:
            tan = [rng.standard_normal(a.shape) for a in (point.W, point.b)]

            def L(W: Any, b: Any) -> Any:
                return 0.5 * jnp.sum((jnp.tanh(point.x @ W + b) - point.t) ** 2)

            _, ref2 = jax.jvp(jax.grad(L, argnums=(0, 1)), (point.W, point.b), tuple(tan))
            refs = [np.asarray(a) for a in ref2]
            for r in rules:
                hand = [np.asarray(a) for a in r.fn(point.W, point.b, *tan, point.x, point.t)]
                out[r.name] = _rel(hand, refs)
    return out


def _rel(hand: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> float:
    num = math.sqrt(sum(float(np.sum((h - r) ** 2)) for h, r in zip(hand, ref, strict=True)))
    den = math.sqrt(sum(float(np.sum(r ** 2)) for r in ref))
    return num / den if den else math.inf


def hessian_info(point: Point, probes: int = 200, seed: int = 2) -> dict[str, float]:
    """The Hessian of the SSE loss at ``point`` (``jax.hessian``): its extreme eigenvalues, how
    many are negative, and the share of random Gaussian directions ``w`` with ``⟨w, H w⟩ < 0``
    (what random probes would see; the Gauss–Newton note itself looks on the Krylov space of a
    few Lanczos steps on the Hessian, where negative curvature shows first)."""
    import jax
    import jax.numpy as jnp

    nW = point.W.size
    with jax.enable_x64(True):
        def L(theta: Any) -> Any:
            W = theta[:nW].reshape(point.W.shape)
            return 0.5 * jnp.sum((jnp.tanh(point.x @ W + theta[nW:]) - point.t) ** 2)

        H = np.asarray(jax.hessian(L)(jnp.concatenate([point.W.ravel(), point.b])))
    ev = np.linalg.eigvalsh(H)
    w = np.random.default_rng(seed).standard_normal((probes, H.shape[0]))
    q = np.einsum("pi,ij,pj->p", w, H, w)
    return {"n": float(len(ev)), "negative": float(np.sum(ev < 0)), "min": float(ev[0]),
            "max": float(ev[-1]), "negative_directions": float(np.mean(q < 0))}


# ----------------------------------------------------------------------------- the run


@dataclass
class HigherResult:
    """Every run and timing of the section, and the context to read them."""

    quick: bool
    repeats: int
    points: dict[str, dict[str, Any]]
    runs: list[Run]
    timings: list[Timing]
    truths: dict[str, dict[str, dict[str, float]]]
    hessians: dict[str, dict[str, float]]
    gauss_newton: list[Run]
    wall_s: float
    #: per point: warm wall times of check_hvp (grad=) and check_grad, interleaved, for the target
    target_walls: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def checkers(self, problem: str) -> list[str]:
        return list(dict.fromkeys(r.checker for r in self.runs if r.problem == problem))

    def point_names(self, problem: str) -> list[str]:
        return list(dict.fromkeys(r.point for r in self.runs if r.problem == problem))

    def get(self, problem: str, point: str, checker: str, rule: str) -> Run | None:
        return next((r for r in self.runs if (r.problem, r.point, r.checker, r.rule)
                     == (problem, point, checker, rule)), None)

    def timing(self, problem: str, point: str, checker: str) -> Timing | None:
        return next((t for t in self.timings if (t.problem, t.point, t.checker)
                     == (problem, point, checker)), None)

    def recall(self, problem: str, checker: str, point: str | None = None) -> tuple[int, int]:
        rows = [r for r in self.runs if r.problem == problem and r.checker == checker
                and r.rule != "correct" and (point is None or r.point == point)]
        return sum(r.caught for r in rows), len(rows)

    def false_alarms(self, problem: str, checker: str, point: str | None = None) -> tuple[int, int]:
        rows = [r for r in self.runs if r.problem == problem and r.checker == checker
                and r.rule == "correct" and (point is None or r.point == point)
                and r.status in ("pass", "fail", "inconclusive")]
        return sum(r.status != "pass" for r in rows), len(rows)

    def target(self) -> tuple[str, bool | None]:
        """The issue's cost target per point: ``check_hvp`` with ``grad=`` against
        ``check_grad`` (warm medians); met when every measured point is within 3×."""
        parts, oks = [], []
        for pt in self.point_names("HVP"):
            h = self.timing("HVP", pt, "gc check_hvp, grad=")
            g = self.timing("HVP", pt, GRAD_CHECKER)
            walls = self.target_walls.get(pt)
            if h is None or g is None or not walls or not (walls["hvp"] and walls["grad"]):
                continue
            hw, gw = statistics.median(walls["hvp"]), statistics.median(walls["grad"])
            ratio = hw / gw
            oks.append(ratio <= HVP_TARGET)
            parts.append(f"{pt}: check_hvp {hw:.3g} s ({h.forward_calls} forward calls) vs "
                         f"check_grad {gw:.3g} s ({g.forward_calls}): {ratio:.3g}× (medians of "
                         f"{len(walls['hvp'])} interleaved warm calls; first calls "
                         f"{h.first_s:.3g} s vs {g.first_s:.3g} s: {h.first_s / g.first_s:.3g}×)")
        return "; ".join(parts) or "not measured", (all(oks) if oks else None)

    def to_dict(self) -> dict[str, Any]:
        text, ok = self.target()
        return {"quick": self.quick, "repeats": self.repeats, "wall_s": self.wall_s,
                "points": self.points,
                "rules": {"JVP": [r.to_dict() for r in (JVP_CORRECT, *JVP_BUGS)],
                          "HVP": [r.to_dict() for r in (HVP_CORRECT, *HVP_BUGS)]},
                "runs": [r.to_dict() for r in self.runs],
                "timings": [t.to_dict() for t in self.timings],
                "truths": self.truths, "hessians": self.hessians,
                "gauss_newton_second_point": [r.to_dict() for r in self.gauss_newton],
                "target_walls": self.target_walls,
                "target": {"text": f"an HVP check costs ≤ {HVP_TARGET:g}× a gradient check of the same "
                                   "problem", "measured": text, "met": ok}}


def _warm_libraries() -> None:
    """Import and initialise jax (x64) and torch once, so no checker's first call pays it."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        jnp.tanh(jnp.ones(3)).block_until_ready()
    if torch_available():
        import torch

        torch.tanh(torch.ones(3, dtype=torch.float64))


def _check_points(problem: str, point: Point, rules: Sequence[Rule],
                  checkers: Sequence[tuple[str, Builder, bool]], repeats: int,
                  log: Callable[[str], None]) -> tuple[list[Run], list[Timing]]:
    runs: list[Run] = []
    timings: list[Timing] = []
    have_torch = torch_available()
    for label, build, needs_torch in checkers:
        calls = Calls()
        if needs_torch and not have_torch:
            runs += [Run(problem, point.name, label, r.name, "not installed") for r in rules]
            timings.append(Timing(problem, point.name, label, math.nan, math.nan, 0, 0, 0,
                                  "not installed"))
            continue
        line = []
        for rule in rules:
            body = build(point, rule, calls)
            run = _timed(problem, point, label, rule, calls, body)
            run.checker = label
            runs.append(run)
            if rule.kind == "correct":
                walls = []
                for _ in range(repeats):
                    again = _timed(problem, point, label, rule, calls, body)
                    walls.append(again.wall_s)
                    run.retries += again.retries
                    if again.status != run.status:
                        run.detail = (run.detail + "; " if run.detail else "") + \
                            f"a warm repeat said {again.status}: {again.detail}"
                timings.append(Timing(problem, point.name, label, run.wall_s,
                                      statistics.median(walls) if walls else run.wall_s, len(walls),
                                      run.forward_calls, run.rule_calls, run.status))
            line.append(f"{rule.name}: {run.status}")
        log(f"  {problem} {point.name} {label}: " + "; ".join(line))
    return runs, timings


def _grad_timing(point: Point, repeats: int) -> Timing:
    calls = Calls()
    body = _gc_grad(point, HVP_CORRECT, calls)
    first = _timed("HVP", point, GRAD_CHECKER, HVP_CORRECT, calls, body)
    walls = [_timed("HVP", point, GRAD_CHECKER, HVP_CORRECT, calls, body).wall_s for _ in range(repeats)]
    return Timing("HVP", point.name, GRAD_CHECKER, first.wall_s, statistics.median(walls), repeats,
                  first.forward_calls, first.rule_calls, first.status)


def _target_walls(point: Point, rounds: int) -> dict[str, list[float]]:
    """Warm wall times of ``check_grad`` and ``check_hvp`` (``grad=``) of the same loss, called
    alternately so that both see the same machine load."""
    calls = Calls()
    grad_body = _gc_grad(point, HVP_CORRECT, calls)
    hvp_body = _gc_hvp(point, HVP_CORRECT, calls, with_grad=True)
    out: dict[str, list[float]] = {"grad": [], "hvp": []}
    for _ in range(rounds):
        out["grad"].append(_timed("HVP", point, GRAD_CHECKER, HVP_CORRECT, calls, grad_body).wall_s)
        out["hvp"].append(_timed("HVP", point, "gc check_hvp, grad=", HVP_CORRECT, calls,
                                 hvp_body).wall_s)
    return out


def points(quick: bool) -> list[Point]:
    """The measured points: 16×8→6, and 64×32→16 unless ``quick``."""
    pts = [make_point(16, 8, 6, seed=0)]
    if not quick:
        pts.append(make_point(64, 32, 16, seed=0))
    return pts


def run_higher(quick: bool = False, log: Callable[[str], None] = print, *,
               repeats: int | None = None, pts: Sequence[Point] | None = None) -> HigherResult:
    """Run the section: every checker on every rule at every point (see the module docstring)."""
    t0 = time.perf_counter()
    repeats = (3 if quick else 5) if repeats is None else repeats
    pts = list(points(quick) if pts is None else pts)
    _warm_libraries()
    runs: list[Run] = []
    timings: list[Timing] = []
    truths: dict[str, dict[str, dict[str, float]]] = {"JVP": {}, "HVP": {}}
    hessians: dict[str, dict[str, float]] = {}
    target_walls: dict[str, dict[str, list[float]]] = {}
    for pt in pts:
        r, t = _check_points("JVP", pt, (JVP_CORRECT, *JVP_BUGS), JVP_CHECKERS, repeats, log)
        runs += r
        timings += t
        truths["JVP"][pt.name] = _jax_truths(pt, (JVP_CORRECT, *JVP_BUGS), "JVP")
    for pt in pts:
        timings.append(_grad_timing(pt, repeats))
        r, t = _check_points("HVP", pt, (HVP_CORRECT, *HVP_BUGS), HVP_CHECKERS, repeats, log)
        runs += r
        timings += t
        truths["HVP"][pt.name] = _jax_truths(pt, (HVP_CORRECT, *HVP_BUGS), "HVP")
        hessians[pt.name] = hessian_info(pt)
        target_walls[pt.name] = _target_walls(pt, 2 * repeats + 1)
    # The Gauss–Newton note depends on the point: the same bug where the units saturate.
    small = pts[0]
    n, d_in = small.x.shape
    second = make_point(n, d_in, small.W.shape[1], seed=0, w_scale=1.0,
                        name=f"{small.name}, W ~ N(0, 1)")
    calls = Calls()
    gn_rule = HVP_BUGS[0]
    gauss_newton = [_timed("HVP", second, "gc check_hvp, grad=", gn_rule, calls,
                           _gc_hvp(second, gn_rule, calls, with_grad=True))]
    hessians[second.name] = hessian_info(second)
    log(f"  Gauss–Newton at {second.name}: {gauss_newton[0].status}, "
        f"note: {bool(gauss_newton[0].notes)}")
    described = {p.name: {"x": list(p.x.shape), "W": list(p.W.shape), "b": list(p.b.shape),
                          "t": list(p.t.shape), "W_std": float(np.std(p.W))} for p in [*pts, second]}
    return HigherResult(quick, repeats, described, runs, timings, truths, hessians, gauss_newton,
                        time.perf_counter() - t0, target_walls)


# ----------------------------------------------------------------------------- rendering


def _cell(r: Run | None) -> str:
    if r is None:
        return "—"
    if r.rule == "correct":
        return {"pass": "pass", "fail": "**false alarm**", "inconclusive": "inconclusive"}.get(
            r.status, r.status)
    if r.caught:
        return "caught"
    return {"pass": "**missed**", "inconclusive": "missed (inconclusive)"}.get(r.status, r.status)


def _s(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.3g}"


def _pct(k: int, n: int) -> str:
    return f"{k}/{n}" if n else "—"


def _problem_table(res: HigherResult, problem: str, pt: str, rules: Sequence[Rule]) -> list[str]:
    names = [r.name for r in rules]
    out = ["| checker | " + " | ".join(names) + " | recall | false alarms | first call s | "
           "warm median s | calls (fwd / rule) |",
           "|---|" + "---|" * (len(names) + 5)]
    truth = res.truths.get(problem, {}).get(pt, {})
    out.append("| *rule's relative error vs JAX autodiff* | " + " | ".join(
        f"*{truth[n]:.1e}*" if n in truth else "—" for n in names) + " | | | | | |")
    checkers = res.checkers(problem)
    if problem == "HVP":
        checkers = [*checkers[:2], GRAD_CHECKER, *checkers[2:]]
    for ch in checkers:
        t = res.timing(problem, pt, ch)
        mark = " (to the refusal)" if t is not None and t.status == "not applicable" else ""
        times = (f"{_s(t.first_s)}{mark} | {_s(t.warm_s)}{mark} | {t.forward_calls} / {t.rule_calls}"
                 if t is not None else "— | — | —")
        if ch == GRAD_CHECKER:
            status = t.status if t is not None else "—"
            out.append(f"| {ch} | {status} (the gradient) | " + " | ".join("" for _ in names[1:])
                       + f" | | | {times} |")
            continue
        cells = [_cell(res.get(problem, pt, ch, n)) for n in names]
        out.append(f"| {ch} | " + " | ".join(cells) + f" | {_pct(*res.recall(problem, ch, pt))} | "
                   f"{_pct(*res.false_alarms(problem, ch, pt))} | {times} |")
    return out


def _gc_details(res: HigherResult) -> list[str]:
    out = ["| problem | point | checker | rule | verdict | failing leaves (n_mismatched); bug touches "
           "| entry named | diagnosis | Hessian notes |", "|---|---|---|---|---|---|---|---|---|"]
    rules = {r.name: r for r in (JVP_CORRECT, *JVP_BUGS, HVP_CORRECT, *HVP_BUGS)}
    for r in [*res.runs, *res.gauss_newton]:
        if not r.checker.startswith("gc") or r.rule == "correct":
            continue
        rule = rules[r.rule]
        leaves = ", ".join(f"{x} ({r.mismatched[x][0]}/{r.mismatched[x][1]} wrong)"
                           if x in r.mismatched else x for x in r.failing) or "none"
        right = set(r.failing) == set(rule.wrong_leaves)
        leaves += f"; bug: {', '.join(sorted(rule.wrong_leaves))}{'' if right else ' — **differs**'}"
        named = "—" if r.named is None else ("yes" if r.named else "**no**")
        diag = "; ".join(f"{k}: {v}" for k, v in r.diagnosis.items()) or "—"
        notes = " / ".join(_short_note(n) for n in r.notes) or "—"
        out.append(f"| {r.problem} | {r.point} | {r.checker} | {r.rule} | {r.status} | {leaves} | "
                   f"{named} | {diag} | {notes} |")
    return out


def _short_note(note: str) -> str:
    if "Gauss" in note:
        return "Gauss–Newton note: " + note.split("—")[0].strip()
    if "symmetric" in note:
        return "symmetry note: " + note.split("(")[0].strip()
    return note[:200]


def render(res: HigherResult) -> str:
    """The section's markdown (no machine header: run.py's, or main()'s, goes above it)."""
    sizes = ", ".join(f"{k} (x {v['x'][0]}×{v['x'][1]}, W {v['W'][0]}×{v['W'][1]})"
                      for k, v in res.points.items() if "N(0, 1)" not in k)
    text, ok = res.target()
    out = [f"Hand-derived forward-mode and second-order rules of a dense tanh layer at {sizes}, "
           "all in numpy and float64, checked by every checker given the hand rule "
           f"(see `benchmarks/higher.py`); {res.wall_s:.0f} s in all. The JVP is "
           "`ẏ = (1 − y²) ⊙ (ẋ W + x Ẇ + ḃ)` of `y = tanh(x W + b)` in `x`, `W`, `b`; the HVP is "
           "Pearlmutter's R-operator on `L = ½‖tanh(x W + b) − t‖²` in `W`, `b`: "
           "`R{δ} = ((1 − y²)² − 2 (y − t) ⊙ y ⊙ (1 − y²)) ⊙ (x V + c)`, "
           "`(H v)_W = xᵀ R{δ}`, `(H v)_b = Σ_n R{δ}`. gradcheck: `check_jvp`, `check_hvp` with and "
           "without `grad=` (`seed=0`); torch: a `torch.autograd.Function` with a `jvp` staticmethod "
           "under `gradcheck(check_forward_ad=True, check_backward_ad=False, "
           "check_undefined_grad=False, check_batched_grad=False)`, `gradgradcheck` (defaults) of a "
           "loss Function whose backward calls a Grad Function (backward = the hand HVP), and that "
           "Grad Function's `jvp` = the hand HVP under `check_forward_ad`, each slow and "
           "`fast_mode=True`; jax: `custom_jvp` over `pure_callback` under `check_grads` "
           "(`modes=('fwd',)`, order 1 for the JVP and the gradient function, order 2 for the loss) "
           "inside `jax.enable_x64(True)`. Times: the correct rule's first call and the median of "
           f"{res.repeats} warm repeats; calls: numpy forward / hand-rule calls of the first call.",
           "",
           "| target | measured (this run) | |", "|---|---|---|",
           f"| an HVP check costs ≤ {HVP_TARGET:g}× a gradient check of the same problem "
           "(`check_hvp` with `grad=` vs `check_grad`, medians of warm calls taken alternately) | "
           f"{text} | {'not measured' if ok is None else ('**met**' if ok else '**not met**')} |",
           ""]
    for problem, rules in (("JVP", (JVP_CORRECT, *JVP_BUGS)), ("HVP", (HVP_CORRECT, *HVP_BUGS))):
        for pt in res.point_names(problem):
            out.append(f"**{problem}, {pt}**\n")
            out += _problem_table(res, problem, pt, rules)
            out.append("")
    out.append("gradcheck's reports on the planted bugs (leaves failing with blame on the hand rule, "
               "against the leaves the bug touches; for the doubled column whether its entry is among "
               "the worst named; the diagnosis per failing leaf; the Hessian notes):\n")
    out += _gc_details(res)
    out.append("")
    out.append("The Hessian of the SSE loss at each point (`jax.hessian`), and the share of 200 random "
               "directions `w` with `⟨w, H w⟩ < 0` (random probes rarely see negative curvature where it "
               "is a small share of the spectrum; the Gauss–Newton note compares the curvature on the "
               "Krylov space of a few Lanczos steps on the Hessian instead):\n")
    out.append("| point | W std | eigenvalues < 0 | min | max | directions with ⟨w, H w⟩ < 0 | "
               "Gauss–Newton bug: note given |")
    out.append("|---|---|---|---|---|---|---|")
    gn_runs = [r for r in res.runs if r.checker == "gc check_hvp, grad=" and r.rule == HVP_BUGS[0].name]
    for name, h in res.hessians.items():
        run = next((r for r in [*gn_runs, *res.gauss_newton] if r.point == name), None)
        note = "—" if run is None else ("yes" if any("Gauss" in n for n in run.notes) else "no") + \
            f" ({run.status})"
        out.append(f"| {name} | {res.points[name]['W_std']:.3g} | {h['negative']:.0f} of {h['n']:.0f} | "
                   f"{h['min']:.3g} | {h['max']:.3g} | {100 * h['negative_directions']:.0f} % | {note} |")
    out.append("")
    odd = [r for r in res.runs if r.status in ("not applicable", "error", "not installed")]
    if odd:
        out.append("Checks that could not be run, and why:\n")
        seen: set[tuple[str, str, str]] = set()
        for r in odd:
            key = (r.checker, r.status, r.detail)
            if key in seen:
                continue
            seen.add(key)
            rules_ = list(dict.fromkeys(x.rule for x in odd if (x.checker, x.status, x.detail) == key))
            pts_ = sorted({x.point for x in odd if (x.checker, x.status, x.detail) == key})
            out.append(f"- `{r.checker}` — {r.status} on {', '.join(rules_)} at {', '.join(pts_)}"
                       + (f": {r.detail}" if r.detail else ""))
            if r.status == "not applicable" and "fwd+rev" in r.checker:
                out.append("  — reverse mode has to transpose the hand HVP's `pure_callback`, so "
                           "`check_grads` cannot check a hand rule in rev mode; the planted bugs it "
                           "catches are caught by its forward half, which runs first (the same check "
                           "as the `order 2 fwd` row)")
        out.append("")
    named = [r for r in res.runs if r.checker.startswith("torch") and r.failing]
    if named:
        out.append("What torch names (`GradcheckError`: the output and input of its first mismatching "
                   "Jacobian block; jax's `check_grads` names none):\n")
        for problem in ("JVP", "HVP"):
            for ch in res.checkers(problem):
                rows = [r for r in named if r.problem == problem and r.checker == ch]
                if rows:
                    out.append(f"- {problem} `{ch}`: " + "; ".join(
                        f"{r.rule} at {r.point} → {', '.join(r.failing)}" for r in rows))
        out.append("")
    flaky = [r for r in res.runs if r.retries]
    if flaky:
        n_jax = sum(r.checker.startswith("jax") for r in res.runs)
        out.append(f"JAX's callback dtype flake (`{_DTYPE_FLAKE}`: `pure_callback` checks a float64 "
                   "result against the x64 flag of the XLA worker thread it ran on, which the scoped "
                   "`jax.enable_x64(True)` does not reach; the global flag is not set here): "
                   f"{len(flaky)} of {n_jax} jax rows were run again after it "
                   f"({sum(r.retries for r in flaky)} retries, counting warm repeats): "
                   + "; ".join(f"`{r.checker}` {r.rule} at {r.point} ×{r.retries}" for r in flaky)
                   + "\n")
    misfits = [r for r in [*res.runs, *res.gauss_newton] if r.checker.startswith("gc")
               and any("Gauss" in n for n in r.notes) and r.rule != HVP_BUGS[0].name]
    if misfits:
        out.append("Hessian notes on bugs they do not describe:\n")
        out += [f"- the Gauss–Newton note on `{r.rule}` (`{r.checker}`, {r.point}): the hand product "
                "is positive semi-definite on the Hessian's Krylov space here too, so the note's test "
                "(positive hand curvature where the Hessian's is negative) does not tell a Gauss–Newton "
                "product from other wrong products that happen to be positive there" for r in misfits]
        out.append("")
    counts = []
    for r in [*res.runs, *res.gauss_newton]:
        for leaf, text in r.diagnosis.items():
            m = re.search(r"(\d+) of (\d+) entries wrong", text)
            got = r.mismatched.get(leaf)
            if m and got is not None and int(m.group(1)) != got[0]:
                counts.append(f"- `{r.checker}` on `{r.rule}` ({r.problem}, {r.point}), leaf {leaf}: the "
                              f"diagnosis says {m.group(1)} of {m.group(2)} entries wrong, the leaf's "
                              f"n_mismatched is {got[0]} of {got[1]}")
    if counts:
        out.append("gradcheck diagnoses whose count of wrong entries differs from the leaf's own "
                   "`n_mismatched`:\n")
        out += counts
        out.append("")
    alarms = [r for r in res.runs if r.rule == "correct" and r.status in ("fail", "inconclusive")]
    misses = [r for r in res.runs if r.rule != "correct" and not r.caught
              and r.status not in ("not applicable", "error", "not installed")]
    if alarms or misses:
        out.append("False alarms and misses:\n")
        out += [f"- false alarm: `{r.checker}` at {r.point}, {r.problem}: {r.status}"
                + (f" ({r.detail})" if r.detail else "") for r in alarms]
        out += [f"- missed: `{r.checker}` at {r.point}, {r.problem} `{r.rule}`: {r.status}"
                + (f" ({r.detail})" if r.detail else "") for r in misses]
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    import datetime as dt

    from benchmarks.run import machine, versions

    ap = argparse.ArgumentParser(prog="python -m benchmarks.higher", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small point only, 3 warm repeats")
    args = ap.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    mach, vers = machine(), versions()
    res = run_higher(quick=args.quick, log=lambda s: print(s, flush=True))
    print(f"## Forward-mode and second-order checks{' (quick)' if args.quick else ''}\n")
    print(f"- **Date**: {started:%Y-%m-%d %H:%M} UTC; {res.wall_s:.0f} s")
    print(f"- **Machine**: {mach['cpu']}, {mach['nproc']} cores (nproc), {mach['memory']}; "
          f"{mach['platform']}; Python {mach['python']}; load before {mach['load']}")
    print("- **Versions**: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    print()
    print(render(res))


if __name__ == "__main__":
    main()
