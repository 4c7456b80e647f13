"""Check results: frozen, typed records and the versioned JSON schema the reports read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from gradcheck.errors import GradientMismatch
from gradcheck.message import mismatch_text

__all__ = [
    "SCHEMA_VERSION",
    "Agreement",
    "Blame",
    "CheckResult",
    "Control",
    "Diagnosis",
    "Element",
    "LeafResult",
    "Localisation",
    "Probe",
    "Verdict",
    "json_number",
]

#: Bumped whenever a field of :meth:`CheckResult.to_dict` changes meaning or disappears.
SCHEMA_VERSION = "gradcheck.result/1"

Verdict = Literal["pass", "fail", "inconclusive"]
#: Who is wrong: the hand-derived backward, the finite differences (kink, step, round-off),
#: the autodiff reference (a JAX twin that computes another function), or nobody can tell.
Blame = Literal["hand", "numeric", "autodiff", "all"]


def json_number(x: float | None) -> float | str | None:
    """JSON has no NaN/Inf: write them as strings so nothing is lost."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else str(x)


@dataclass(frozen=True, slots=True)
class Element:
    """One entry of a leaf, with what each source says about it.

    ``status`` is ``"ok"``, ``"hand"``/``"autodiff"`` (that source is wrong here),
    ``"numeric"`` (finite differences are off here, nobody else), ``"inconclusive"`` or
    ``"kink"`` (the forward is not differentiable here; ``left``/``right`` are the one-sided
    slopes).
    """

    index: tuple[int, ...]
    hand: float
    numeric: float | None
    numeric_error: float | None
    autodiff: float | None
    status: str
    left: float | None = None
    right: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": list(self.index),
            "hand": json_number(self.hand),
            "numeric": json_number(self.numeric),
            "numeric_error": json_number(self.numeric_error),
            "autodiff": json_number(self.autodiff),
            "status": self.status,
            "left": json_number(self.left),
            "right": json_number(self.right),
        }


@dataclass(frozen=True, slots=True)
class Agreement:
    """How far two sources are apart on one leaf.

    ``max_rel_err`` is ``max |a−b| / max(|a|, |b|)`` (0 where both are 0, NaN-aware: a NaN
    makes it NaN), ``norm_rel_err`` is ``‖a−b‖ / max(‖a‖, ‖b‖)``, ``cosine`` the cosine of
    the angle between them (1 for two zero tensors) and ``n_bad`` how many compared entries
    are outside the tolerance of the check.
    """

    max_abs_err: float
    max_rel_err: float
    norm_rel_err: float
    cosine: float
    n_bad: int
    n_compared: int

    @property
    def agree(self) -> bool:
        return self.n_bad == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs_err": json_number(self.max_abs_err),
            "max_rel_err": json_number(self.max_rel_err),
            "norm_rel_err": json_number(self.norm_rel_err),
            "cosine": json_number(self.cosine),
            "n_bad": self.n_bad,
            "n_compared": self.n_compared,
            "agree": self.agree,
        }


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The shape of a bug, when one fits.

    ``kind`` is one of ``zero``, ``sign_flip``, ``scale``, ``transpose``, ``shift``,
    ``clipped``, ``rows``, ``columns``, ``time_steps``, ``entries`` (a few),
    ``scattered`` (many, with no pattern), ``widespread`` (all, or all of a sample),
    ``sampled`` (some of a seeded sample: the check stopped early, the pattern is unknown),
    ``single`` (the only entry of a one-entry tensor); ``factor`` is the scale factor
    (``scale``; ``single``: hand / reference), the clipping threshold (``clipped``) or the shift
    (``shift``); ``axis``/``indices`` say where an error is confined.
    """

    kind: str
    summary: str
    factor: float | None = None
    axis: int | None = None
    indices: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "summary": self.summary,
            "factor": json_number(self.factor),
            "axis": self.axis,
            "indices": [list(i) if isinstance(i, tuple) else i for i in self.indices],
        }


@dataclass(frozen=True, slots=True)
class Probe:
    """One directional probe of ``mode="directional"``: ⟨hand, u⟩ against the references."""

    seed: int
    hand: float
    numeric: float | None
    numeric_error: float | None
    autodiff: float | None
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "hand": json_number(self.hand),
            "numeric": json_number(self.numeric),
            "numeric_error": json_number(self.numeric_error),
            "autodiff": json_number(self.autodiff),
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class Control:
    """The negative control of a leaf that passed: the hand gradient with one entry moved by the
    smallest error the run claims to catch (``size``, absolute), judged again by the same
    comparison.  ``caught`` is whether that planted error was found."""

    index: tuple[int, ...]
    size: float
    caught: bool

    def to_dict(self) -> dict[str, Any]:
        return {"index": list(self.index), "size": json_number(self.size), "caught": self.caught}


@dataclass(frozen=True, slots=True)
class Localisation:
    """How a leaf that failed directional screening was localised by group testing.

    ``tests`` directional derivatives over blocks of coordinates (bisection), then ``entries``
    single entries measured one by one; ``blocks`` lists the ``(start, stop)`` flat ranges that
    were still wrong when the search stopped splitting them."""

    tests: int
    entries: int
    blocks: tuple[tuple[int, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"tests": self.tests, "entries": self.entries,
                "blocks": [list(b) for b in self.blocks]}


@dataclass(frozen=True, slots=True)
class LeafResult:
    """The verdict on one tensor (a leaf of the parameter/input pytree)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    verdict: Verdict
    blame: Blame | None
    mode: str
    rtol: float
    atol: float
    tolerance_dtype: str
    fd_error_estimate: float
    numeric_method: str | None
    hand_vs_numeric: Agreement | None
    hand_vs_autodiff: Agreement | None
    numeric_vs_autodiff: Agreement | None
    n_elements: int
    n_checked: int
    n_mismatched: int
    n_kinks: int
    worst: tuple[Element, ...]
    kinks: tuple[Element, ...]
    diagnosis: Diagnosis | None
    probes: tuple[Probe, ...] = ()
    notes: tuple[str, ...] = ()
    #: The smallest single-entry error, relative to the leaf's largest reference entry, that this
    #: run would have caught (at every entry in full mode, at 90 % of entries when screening).
    detection_power: float = math.nan
    control: Control | None = None
    localisation: Localisation | None = None
    #: Entries whose gradient is identically zero at this point in every reference (an unused
    #: parameter, recurrent weights at T = 1 with h0 = 0, a dead unit): only a hand value that is
    #: not zero there can be caught.
    n_unexercised: int = 0
    #: For a leaf that did not pass, with at most ``ERROR_MAP_MAX`` entries: every entry's
    #: ``|hand − reference| / max|reference|`` in row-major order (NaN where nothing was measured:
    #: a kink, an unverified or unsampled entry), against ``error_reference``.
    error_map: tuple[float, ...] | None = None
    error_reference: str | None = None
    #: The axis of this leaf that is time, for a sequence leaf of at least 3 axes (``None``:
    #: not a sequence, or no time axis).
    time_axis: int | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def max_rel_err(self) -> float:
        """The worst relative error of the hand gradient against any reference."""
        errs = [a.max_rel_err for a in (self.hand_vs_numeric, self.hand_vs_autodiff)
                if a and a.n_compared]
        return max(errs) if errs else math.nan  # nothing compared: no error to claim

    def to_dict(self) -> dict[str, Any]:
        def agree(a: Agreement | None) -> dict[str, Any] | None:
            return a.to_dict() if a else None

        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "verdict": self.verdict,
            "blame": self.blame,
            "mode": self.mode,
            "tolerance": {"rtol": self.rtol, "atol": json_number(self.atol), "dtype": self.tolerance_dtype},
            "fd_error_estimate": json_number(self.fd_error_estimate),
            "numeric_method": self.numeric_method,
            "hand_vs_numeric": agree(self.hand_vs_numeric),
            "hand_vs_autodiff": agree(self.hand_vs_autodiff),
            "numeric_vs_autodiff": agree(self.numeric_vs_autodiff),
            "max_rel_err": json_number(self.max_rel_err),
            "n_elements": self.n_elements,
            "n_checked": self.n_checked,
            "n_mismatched": self.n_mismatched,
            "n_kinks": self.n_kinks,
            "n_unexercised": self.n_unexercised,
            "worst": [e.to_dict() for e in self.worst],
            "kinks": [e.to_dict() for e in self.kinks],
            "diagnosis": self.diagnosis.to_dict() if self.diagnosis else None,
            "probes": [p.to_dict() for p in self.probes],
            "n_probes": len(self.probes),
            "detection_power": json_number(self.detection_power),
            "control": self.control.to_dict() if self.control else None,
            "localisation": self.localisation.to_dict() if self.localisation else None,
            "notes": list(self.notes),
            "error_map": None if self.error_map is None else {
                "values": [None if not math.isfinite(v) else v for v in self.error_map],
                "reference": self.error_reference},
            "time_axis": self.time_axis,
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one :func:`gradcheck.check_grad` / :func:`gradcheck.check_layer` call.

    ``verdict`` is ``"fail"`` when any leaf fails, ``"inconclusive"`` when none fails but some
    leaf could not be judged, ``"pass"`` otherwise; ``passed`` is ``verdict == "pass"``.
    ``references`` lists the sources that were available (``"numeric"``, ``"autodiff"``);
    ``notes`` say what the check noticed on the way (no JAX path, a backward that mutates its
    inputs, a forward computing in float32, kinks, squeezed gradient shapes).
    """

    name: str
    kind: str
    verdict: Verdict
    mode: str
    seed: int
    references: tuple[str, ...]
    leaves: tuple[LeafResult, ...]
    notes: tuple[str, ...] = ()
    forward_calls: int = 0
    loss: float = math.nan
    forward_noise: float = math.nan
    options: dict[str, Any] = field(default_factory=dict)
    #: ``"exploding"`` when the reference gradient of a sequence leaf grows back in time (see
    #: ``check.EXPLODING_GROWTH``): finite differences are then leaned on less.
    regime: str | None = None
    #: The measured growth factor of ‖∂L/∂x_t‖ from the last step back to the first (1 if none).
    growth: float = 1.0
    #: Where the autodiff reference came from: ``"array-api"`` (the forward itself ran on JAX
    #: arrays), ``"jax_fun"`` (the twin the user passed), ``"twin"`` (gradcheck's automatic JAX
    #: twin of the numpy code, :mod:`gradcheck.twin`) or ``"none"``.
    jax_source: str = "none"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def failures(self) -> tuple[LeafResult, ...]:
        return tuple(leaf for leaf in self.leaves if leaf.verdict != "pass")

    def leaf(self, name: str) -> LeafResult:
        """The record of the leaf called ``name`` (``KeyError`` listing the names otherwise)."""
        for leaf in self.leaves:
            if leaf.name == name:
                return leaf
        raise KeyError(f"no leaf {name!r}; leaves are {[x.name for x in self.leaves]}")

    def to_dict(self) -> dict[str, Any]:
        """The versioned, JSON-serialisable report schema (``schema`` = :data:`SCHEMA_VERSION`)."""
        return {
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "kind": self.kind,
            "verdict": self.verdict,
            "passed": self.passed,
            "mode": self.mode,
            "seed": self.seed,
            "references": list(self.references),
            "jax_source": self.jax_source,
            "forward_calls": self.forward_calls,
            "loss": json_number(self.loss),
            "forward_noise": json_number(self.forward_noise),
            "notes": list(self.notes),
            "regime": self.regime,
            "growth": json_number(self.growth),
            "options": dict(self.options),
            "leaves": [leaf.to_dict() for leaf in self.leaves],
        }

    def message(self) -> str:
        """The readable explanation of every leaf that did not pass (empty when all pass)."""
        return mismatch_text(self.to_dict())

    def raise_for_failure(self) -> CheckResult:
        """Raise :class:`gradcheck.GradientMismatch` unless the check passed; return ``self``.

        The frame is hidden from pytest tracebacks (``__tracebackhide__``): a failing test's
        traceback ends at the test's own line, with the mismatch message below it.
        """
        __tracebackhide__ = True
        if not self.passed:
            raise GradientMismatch(self.message())
        return self

    def __repr__(self) -> str:
        """One short line, ``<CheckResult 'dense': fail — W: fail (hand: sign flip), b: pass>``.

        The dataclass keeps a ``__repr__`` defined in the class body (it adds its own only where
        the class has none), so pytest's ``assert res.passed`` shows this line, not every field.
        Up to four tensors are named, those that did not pass first; ``str()`` gives the message.
        """
        def part(leaf: LeafResult) -> str:
            why = [str(leaf.blame)] if leaf.blame and leaf.verdict != "pass" else []
            if leaf.diagnosis is not None and leaf.verdict != "pass":
                why.append(leaf.diagnosis.kind.replace("_", " "))
            return f"{leaf.name}: {leaf.verdict}" + (f" ({': '.join(why)})" if why else "")

        shown = list(self.leaves)
        if len(shown) > 4:
            shown = sorted(shown, key=lambda leaf: leaf.passed)[:4]  # stable: failures first
        parts = [part(leaf) for leaf in shown]
        hidden = [leaf for leaf in self.leaves if not any(leaf is s for s in shown)]
        if hidden:
            bad = sum(not leaf.passed for leaf in hidden)
            parts.append(f"+{len(hidden)} more" + (f" ({bad} not passing)" if bad else ""))
        return f"<CheckResult {self.name!r}: {self.verdict} — {', '.join(parts) or 'no tensors'}>"

    def __str__(self) -> str:
        head = f"{self.kind} {self.name!r}: {self.verdict} ({len(self.leaves)} tensors, mode={self.mode})"
        return head if self.passed else head + "\n" + self.message()
