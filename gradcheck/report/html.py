"""The HTML report: one self-contained page rendered from a session document alone.

The page opens on an overview (counts, then every check that did not pass, linking to its
drill-down) and a contents line; the agreement table follows as one collapsible ``<details>``
group per test module (per test function in a one-module session, per family in an audit),
failing groups first and open.  It is readable without JavaScript (plain tables, ``<details>``
groups and drill-downs, inline SVG); a small inline script only adds sorting, the filter box and
the outcome toggles.  Drill-downs carry the terminal message's hint lines
(:func:`gradcheck.message.advice`, :func:`gradcheck.message.blame_text`, the seed), the whole error
map of a leaf that has one (:func:`~gradcheck.report.plots.error_map_svg`; else its worst entries)
and a sequence's error by time step.  A document with a gradient-flow
study (``study``, :mod:`gradcheck.study`) gets a section of its own: the study's table, one plot
of ‖∂L/∂h_t‖ per model, the fitted slopes against log η, and the truncation-bias curves.
Templates are rendered by jinja2 with autoescaping on, so every string taken from the document
(test ids, names, messages) is text.

A document with a ``run`` record carries its run id in ``<meta name="gradcheck-run">``; a run
that is not ``"complete"`` gets a banner at the top saying so.  A row whose check passed in a
test that failed (``test_outcome``) is marked "test failed" in the table and has a drill-down,
so it never looks green.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from gradcheck.message import advice, blame_text
from gradcheck.report.document import as_session, write_text
from gradcheck.report.plots import (
    error_map_layout,
    error_map_svg,
    flow_svg,
    heatmap_svg,
    number,
    step_errors_svg,
    study_slope_svg,
    study_spectrum_svg,
    truncation_svg,
)

__all__ = ["MAX_DRILLDOWNS", "MAX_PLOTS", "TOC_FAILURES", "render_html", "write_html"]

#: Gradient-flow plots drawn at most (each is a few tens of kB); the others get their caption only.
MAX_PLOTS = 100
#: Failure drill-downs written at most (about 2 kB each); every failure keeps its table row, and
#: the JSON document has them all.
MAX_DRILLDOWNS = 500
#: Failures' drill-downs linked from the contents at most (the overview lists them all).
TOC_FAILURES = 12
_AGREEMENTS = ("hand_vs_numeric", "hand_vs_autodiff", "numeric_vs_autodiff")
_SLUG = re.compile(r"[^A-Za-z0-9_]+")
_VERDICT_CLASS = re.compile(r"[^a-z]+")
#: What the table says of a passing check in a test with this pytest outcome.
_FAILED_TESTS = {"failed": "test failed", "error": "test errored"}
#: How the banner opens for a run that is not complete.
_STATUS_TEXT = {"interrupted": "Interrupted run", "incomplete": "Incomplete run"}


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    def autoescape(name: str | None) -> bool:
        return not (name or "").endswith((".css", ".js"))  # our own static assets stay verbatim

    env = jinja2.Environment(loader=jinja2.PackageLoader("gradcheck.report", "templates"),
                             autoescape=autoescape, undefined=jinja2.ChainableUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _fmt
    env.filters["finite"] = _finite
    env.filters["vclass"] = lambda v: _VERDICT_CLASS.sub("-", str(v).lower()).strip("-") or "unknown"
    return env


def _fmt(x: Any, digits: int = 3) -> str:
    value = number(x)
    if value is None:
        return "—"
    if value == 0 or math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.{digits}g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.{digits - 1}e}"


def _sort_key(x: Any) -> str:
    value = number(x)
    if value is None:
        return ""
    return "Infinity" if math.isnan(value) else repr(value)


class _Ids:
    """Unique, readable anchors: ``dense-bias-bug``, then ``dense-bias-bug-2``."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, *parts: Any) -> str:
        base = "-".join(_SLUG.sub("-", str(p)).strip("-") for p in parts if str(p)) or "row"
        base = base if base[0].isalpha() else f"r-{base}"
        name, n = base, 1
        while name in self.seen:
            n += 1
            name = f"{base}-{n}"
        self.seen.add(name)
        return name


def _is_screened(leaf: Mapping[str, Any]) -> bool:
    """Whether a leaf was checked along directional probes (``mode="directional"``, or probes)."""
    return leaf.get("mode") == "directional" or bool(leaf.get("n_probes") or leaf.get("probes"))


def _measured(leaf: Mapping[str, Any], key: str) -> bool:
    """Whether an agreement of the leaf compared entries one by one."""
    agree = leaf.get(key)
    return isinstance(agree, Mapping) and bool(agree.get("n_compared"))


def _screened(leaf: Mapping[str, Any]) -> str:
    """``screened: 3 probes, power 6e-06`` for a leaf checked along probes (``""`` for one that was
    not): what its error cells say where no entry was compared one by one."""
    if not _is_screened(leaf):
        return ""
    n = int(leaf.get("n_probes") or len(leaf.get("probes") or []))
    power = number(leaf.get("detection_power"))
    shown = f", power {_fmt(power, 2)}" if power is not None and math.isfinite(power) else ""
    return f"screened: {n} probe{'' if n == 1 else 's'}{shown}"


def _agreements(leaf: Mapping[str, Any], references: list[str]) -> list[dict[str, str]]:
    """The three error cells of a leaf.  A screened leaf's hand-vs-reference cell without
    entry-by-entry numbers says how it was screened instead of a dash (for each reference the
    check used; for the numeric one when the row does not say)."""
    cells = [_agreement(leaf, k) for k in _AGREEMENTS]
    screened = _screened(leaf)
    if screened:
        used = references or ["numeric"]
        for n, key in enumerate(_AGREEMENTS[:2]):
            if key.removeprefix("hand_vs_") in used and not _measured(leaf, key):
                cells[n] = {"text": screened, "sort": "", "title": "checked along random directions "
                            "⟨g, u⟩ only, no entry compared one by one; power: the smallest "
                            "single-entry error it would have caught", "screened": "screened"}
    return cells


def _agreement(leaf: Mapping[str, Any], key: str) -> dict[str, str]:
    agree = leaf.get(key)
    if not isinstance(agree, Mapping):
        return {"text": "—", "sort": "", "title": ""}
    err = agree.get("max_rel_err")
    title = (f"max abs {_fmt(agree.get('max_abs_err'))}, norm rel {_fmt(agree.get('norm_rel_err'))}, "
             f"cosine {_fmt(agree.get('cosine'), 6)}, {agree.get('n_bad')} of "
             f"{agree.get('n_compared')} outside tolerance")
    return {"text": _fmt(err), "sort": _sort_key(err), "title": title,
            "bad": "bad" if agree.get("agree") is False else ""}


def _tolerance(leaf: Mapping[str, Any]) -> str:
    """The Tolerance cell: ``rtol 5.00e-07 · atol 2.89e-10`` (the dtype is a column of its own)."""
    tol = leaf.get("tolerance")
    if not isinstance(tol, Mapping):
        return "—"
    return f"rtol {_fmt(tol.get('rtol'))} · atol {_fmt(tol.get('atol'))}"


def _power(leaf: Mapping[str, Any]) -> dict[str, str]:
    """The leaf's detection power (the smallest single-entry error, relative to its largest
    gradient entry, that the run would have caught) with how it was measured as the title."""
    power = number(leaf.get("detection_power"))
    n_probes = leaf.get("n_probes") or 0
    how = f"mode {leaf.get('mode', '?')}" + (f", {n_probes} probes" if n_probes else "")
    if power is None or not math.isfinite(power):
        return {"text": "—", "sort": "", "title": how, "bad": ""}
    title = how  # what the power means is said once, above the table
    bad = ""
    control = leaf.get("control")
    if isinstance(control, Mapping):
        caught = bool(control.get("caught"))
        title += (f"; negative control: {_fmt(control.get('size'))} planted at {control.get('index')} "
                  f"{'caught' if caught else 'NOT caught'}")
        bad = "" if caught else "bad"
    return {"text": _fmt(power), "sort": _sort_key(power), "title": title, "bad": bad}


#: How the report names each ``jax_source`` of a result.
JAX_SOURCES = {"array-api": "the forward on JAX arrays", "jax_fun": "the jax_fun twin",
               "twin": "the automatic JAX twin", "none": "none"}


#: The badge of a check that is not a plain gradient check.
KIND_BADGES = {"check_jvp": "JVP", "check_hvp": "H·v", "check_batched": "per-example"}


def _ranges(indices: list[int]) -> str:
    """``2–3, 7``: sorted indices as ranges, at most three of them shown."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    shown = ", ".join(str(lo) if lo == hi else f"{lo}–{hi}" for lo, hi in runs[:3])
    return shown + ("…" if len(runs) > 3 else "")


#: The words of each diagnosis kind with nothing more to say (the others name a factor or where).
_KIND_WORDS = {"zero": "all zero", "sign_flip": "sign flip", "transpose": "transpose",
               "shift": "shifted a step", "scattered": "scattered", "widespread": "widespread",
               "sampled": "sampled entries", "single": "single entry"}


def _short_diagnosis(d: Any, n_mismatched: Any = None) -> str:
    """A diagnosis in a few words for the table: ``sign flip``, ``scale 0.5``, ``time step 0``,
    ``rows 2–3``, ``3 entries`` (``""`` when there is none)."""
    if not isinstance(d, Mapping):
        return ""
    kind = str(d.get("kind") or "")
    factor = number(d.get("factor"))
    indices = [i for i in d.get("indices") or [] if isinstance(i, int) and not isinstance(i, bool)]
    if kind == "scale" and factor is not None and math.isfinite(factor):
        return f"scale {factor:.3g}"
    if kind in ("rows", "columns", "time_steps") and indices:
        word = {"rows": "row", "columns": "column", "time_steps": "time step"}[kind]
        return f"{word}{'s' if len(indices) > 1 else ''} {_ranges(indices)}"
    if kind == "entries":
        counted = isinstance(n_mismatched, int) and n_mismatched > 0
        n = n_mismatched if counted else len(d.get("indices") or [])
        return f"{n} entr{'y' if n == 1 else 'ies'}" if n else "a few entries"
    if kind == "shift" and factor is not None and math.isfinite(factor):
        return f"shifted {factor:+g} step{'' if abs(factor) == 1 else 's'}"
    if kind == "clipped" and factor is not None and math.isfinite(factor):
        return f"clipped at ±{factor:.3g}"
    return _KIND_WORDS.get(kind, kind.replace("_", " "))


def _blame(leaf: Mapping[str, Any]) -> dict[str, str]:
    """The Blame cell: who, and for the hand the bug's shape in a few words (title: all of it)."""
    who = str(leaf.get("blame") or "")
    if not who:
        return {"text": "", "title": ""}
    d = leaf.get("diagnosis")
    short = _short_diagnosis(d, leaf.get("n_mismatched")) if who == "hand" else ""
    summary = str(d.get("summary", "")) if isinstance(d, Mapping) else ""
    return {"text": f"{who}: {short}" if short else who, "title": summary}


def _module(row: Mapping[str, Any]) -> str | None:
    """The test module of a row with a pytest id (the part before ``::``), else ``None``."""
    test = str(row.get("test") or "")
    return test.split("::", 1)[0] if "::" in test else None


def _function(test: str) -> str:
    """``tests/x.py::TestA::test_f`` of ``tests/x.py::TestA::test_f[3-float32]``: the test id
    without its parameters."""
    return test.split("[", 1)[0]


def _group_names(rows: list[Mapping[str, Any]]) -> list[str]:
    """The group of each row: its test module (a pytest id's part before ``::``), or, when all
    of a session's tests are in one module, its test function; the audit's family; else the
    check's own name."""
    modules = {m for m in map(_module, rows) if m is not None}
    by_function = len(modules) == 1 and len({_function(str(r.get("test"))) for r in rows
                                             if _module(r) is not None}) > 1
    out = []
    for row in rows:
        module = _module(row)
        if module is not None:
            out.append(_function(str(row["test"])) if by_function else module)
        else:
            out.append(str(row.get("family") or row.get("module") or row.get("test") or _check_name(row)))
    return out


def _check_name(row: Mapping[str, Any]) -> str:
    return str(row.get("name") or row.get("test") or "(unnamed)")


def _test_failed(row: Mapping[str, Any]) -> str:
    """``"test failed"`` / ``"test errored"`` for a row whose check passed in a test that did not
    (``""`` otherwise: a failing check's test failing is no news)."""
    if row.get("verdict") != "pass":
        return ""
    return _FAILED_TESTS.get(str(row.get("test_outcome")), "")


def _table_rows(row: Mapping[str, Any], anchor: str | None) -> Iterator[dict[str, Any]]:
    base = {"test": str(row.get("test") or row.get("module") or ""), "check": _check_name(row),
            "family": str(row.get("family") or ""), "examples": row.get("examples"), "anchor": anchor,
            "test_failed": _test_failed(row), "badge": KIND_BADGES.get(str(row.get("kind")), "")}
    leaves = [leaf for leaf in row.get("leaves") or [] if isinstance(leaf, Mapping)]
    if not leaves:
        message = row.get("error") or ("no gradient check" if row.get("flows") else "no result")
        yield {**base, "leaf": "", "message": str(message), "shape": "—", "dtype": "—",
               "tolerance": "—", "power": _power({}),
               "agreements": [_agreement({}, k) for k in _AGREEMENTS],
               "verdict": str(row.get("verdict", "unknown")), "blame": {"text": "", "title": ""}}
        return
    ordered = sorted(leaves, key=lambda leaf: leaf.get("verdict") == "pass")  # failures first
    for leaf in ordered:
        shape = leaf.get("shape")
        agreements = _agreements(leaf, [str(r) for r in row.get("references") or []])
        yield {**base, "leaf": str(leaf.get("name", "")), "message": "",
               "shape": ("×".join(map(str, shape)) or "scalar") if isinstance(shape, list) else "—",
               "dtype": str(leaf.get("dtype", "")), "tolerance": _tolerance(leaf), "power": _power(leaf),
               "agreements": agreements,
               "verdict": str(leaf.get("verdict", row.get("verdict", "unknown"))),
               "blame": _blame(leaf)}


def _drilldown(row: Mapping[str, Any], anchor: str) -> dict[str, Any]:
    leaves = [leaf for leaf in row.get("leaves") or []
              if isinstance(leaf, Mapping) and leaf.get("verdict") != "pass"]
    return {
        "anchor": anchor, "row": row, "test": str(row.get("test") or ""),
        "check": _check_name(row), "verdict": str(row.get("verdict", "unknown")),
        "test_failed": _test_failed(row),
        "sources": _sources(row),
        "badge": KIND_BADGES.get(str(row.get("kind")), ""),
        "leaves": [_drill_leaf(leaf, str(row.get("kind") or ""), f"{anchor}-{n}-")
                   for n, leaf in enumerate(leaves)],
    }


def _drill_leaf(leaf: Mapping[str, Any], kind: str, prefix: str) -> dict[str, Any]:
    """A failing leaf's drill-down: its whole error map when it has one (else the worst entries
    on the grid), the error per time step of a sequence, and the message's hint lines."""
    whole = error_map_svg(leaf, prefix + "map-")
    shape = leaf.get("shape")
    axis = leaf.get("time_axis")
    layout = (error_map_layout([int(n) for n in shape], axis if isinstance(axis, int) else None)
              if whole and isinstance(shape, list) else None)
    em = leaf.get("error_map")
    return {"leaf": leaf, "error_map": whole, "heatmap": None if whole else heatmap_svg(leaf),
            "map_layout": layout.note if layout else "",
            "map_reference": str(em.get("reference") or "reference") if isinstance(em, Mapping) else "",
            "steps": step_errors_svg(leaf, prefix + "steps-"),
            "worst": leaf.get("worst") or [], "probes": leaf.get("probes") or [],
            "blame": blame_text(leaf.get("blame"), kind) if leaf.get("blame") else "",
            "advice": advice(leaf, kind),
            "screened": "" if any(_measured(leaf, k) for k in _AGREEMENTS[:2]) else _screened(leaf)}


def _sources(row: Mapping[str, Any]) -> str:
    """``numeric, autodiff (the automatic JAX twin)``: the references a check used."""
    refs = [str(r) for r in row.get("references") or []]
    if not refs:
        return ""
    source = row.get("jax_source")
    return ", ".join(f"autodiff ({JAX_SOURCES.get(str(source), str(source))})"
                     if r == "autodiff" and source and source != "none" else r for r in refs)


def _flows(row: Mapping[str, Any], counter: Iterator[int]) -> list[dict[str, Any]]:
    out = []
    for flow in row.get("flows") or []:
        if not isinstance(flow, Mapping):
            continue
        n = next(counter)
        svg = flow_svg(flow, f"flow{n}-") if n < MAX_PLOTS else None
        out.append({"flow": flow, "svg": svg, "n": n, "check": _check_name(row),
                    "test": str(row.get("test") or "")})
    return out


#: Numeric columns of the study table: (header, key in the study row, format).
_STUDY_NUMBERS = (("σ_max", "sigma_max", ".3g"), ("γ", "gamma", ".3g"), ("η", "eta", ".3g"),
                  ("log η", "log_eta", "+.3f"), ("slope / step", "slope", "+.3f"),
                  ("± stderr", "slope_stderr", ".3f"), ("max ‖∂h_t/∂h_k‖ / η^(t−k)", "bound_ratio", ".4f"),
                  ("σ_max/σ_min (end to end)", "spread", ".3g"))


def _finite(value: Any) -> bool:
    x = number(value)
    return x is not None and math.isfinite(x)


def _cell(value: Any, spec: str) -> dict[str, str]:
    """A study number: its text (``n/a`` when not finite) and its sort key."""
    x = number(value)
    text = format(x, spec) if x is not None and math.isfinite(x) else "n/a"
    return {"text": text, "sort": _sort_key(value)}


def _cause(row: Mapping[str, Any], flow: Mapping[str, Any]) -> dict[str, Any]:
    """Whose regime a study row shows: the model's (hand and JAX norms agree), the hand backward's
    (they part: from which step or layer, going the way the gradient flows), or unknown."""
    cause, at = row.get("cause"), row.get("parted_at")
    where = "layer" if flow.get("axis") == "depth" else "step"
    if cause == "model":
        return {"text": "model", "bad": False,
                "title": "hand and JAX norms agree: the regime is the model's"}
    if cause == "backward":
        part = f", from {where} {at}" if isinstance(at, int) else ""
        return {"text": f"backward{part}", "bad": True, "at": f" at {where} {at}" if part else "",
                "title": f"the hand norms part from JAX's{part}: the hand backward is wrong, "
                         "not the model; fix it before reading the regime"}
    return {"text": "—", "bad": False, "title": "no autodiff norms to compare with"}


def _practice(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The AUTOTRAINER and DeepDiagnosis cells of a study row: the verdict on the loss as given and
    how many of its rescalings (c·L, the mean) change it."""
    given = row.get("practice")
    if not isinstance(given, Mapping):
        return [{"text": "—", "flipped": False, "title": "no per-layer gradients for this kind"}] * 2
    n = given.get("variants")
    cells = []
    for key, said, flips in (("autotrainer", "issue", "autotrainer_flips"),
                             ("deepdiagnosis", "symptom", "deepdiagnosis_flips")):
        found = given.get(key)
        verdict: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        text = str(verdict.get(said) or "none")
        k = given.get(flips)
        flipped = isinstance(k, int) and k > 0
        cells.append({"text": f"{text}, flips {k}/{n}" if flipped else text, "flipped": flipped,
                      "title": (f"{text} on the loss as given; {k} of {n} rescaled losses (c·L, the mean) "
                                "change the verdict" if flipped else
                                f"{text} on the loss as given and on all {n} rescaled losses")})
    return cells


def _fractions(flow: Mapping[str, Any]) -> list[dict[str, str]]:
    """The saturated fraction of the states (or activations) and the largest per-step (per-layer)
    fraction of dead units, as percentage cells with the step or layer that has the most."""
    sat = number(flow.get("saturation"))
    given = flow.get("dead_per_step")
    dead = [number(v) for v in given] if isinstance(given, list) else []
    finite = [(v, i) for i, v in enumerate(dead) if v is not None and math.isfinite(v)]
    where = "layer" if flow.get("axis") == "depth" else "step"
    cells = [{"text": f"{sat:.0%}" if sat is not None and math.isfinite(sat) else "n/a",
              "sort": repr(sat) if sat is not None and math.isfinite(sat) else "",
              "title": "the fraction of state entries with f′ < 0.1·γ"}]
    if finite:
        top, at = max(finite, key=lambda pair: pair[0])  # the first step (layer) with the most
        cells.append({"text": f"{top:.0%}", "sort": repr(top),
                      "title": f"the most units dead on every sample at one {where}: {where} {at}"})
    else:
        cells.append({"text": "n/a", "sort": "", "title": "no per-step fractions"})
    return cells


def _study_row(row: Mapping[str, Any], anchor: str) -> dict[str, Any]:
    tau = row.get("min_truncation")
    given = row.get("flow")
    flow: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    return {"label": str(row.get("label", "")), "anchor": anchor, "kind": str(row.get("kind", "")),
            "activation": str(row.get("activation", "")), "regime": str(row.get("regime", "")),
            "numbers": [_cell(row.get(key), spec) for _, key, spec in _STUDY_NUMBERS],
            "agree": row.get("agree") is True, "cause": _cause(row, flow), "practice": _practice(row),
            "fractions": _fractions(flow),
            "tau": {"text": str(tau) if isinstance(tau, int) else "—",
                    "sort": repr(float(tau)) if isinstance(tau, int) else ""},
            "flow": flow, "reasons": [str(r) for r in (flow or {}).get("reasons") or []]}


def _study(doc: Mapping[str, Any], ids: _Ids) -> dict[str, Any] | None:
    """The context of the gradient-flow study section, or ``None`` when the document has none."""
    study = doc.get("study")
    if not isinstance(study, Mapping):
        return None
    rows = [row for row in study.get("rows") or [] if isinstance(row, Mapping)]
    table = [_study_row(row, ids("study", row.get("label", ""))) for row in rows]
    for n, item in enumerate(table):
        item["svg"] = flow_svg(item["flow"], f"study{n}-", size=(4.4, 2.5)) if n < MAX_PLOTS else None
    recurrent = [row for row in rows if isinstance(row.get("flow"), Mapping)
                 and row["flow"].get("axis") == "time"]
    tol = number(study.get("truncation_tolerance"))
    return {"study": study, "table": table, "n_plots": min(len(table), MAX_PLOTS),
            "tolerance": f"{tol:.0%}" if tol is not None and math.isfinite(tol) else "1%",
            "sizes": {k: str(study.get(k, "?")) for k in ("T", "hidden", "batch", "seed")},
            "headers": [h for h, _, _ in _STUDY_NUMBERS],
            "slope_svg": study_slope_svg(rows, "study-slope-",
                                         threshold=number(study.get("slope_threshold"))),
            "spectrum_svg": study_spectrum_svg(rows, "study-spectrum-"),
            "truncation_svg": truncation_svg(recurrent, "study-truncation-",
                                             tolerance=number(study.get("truncation_tolerance"))),
            "no_bound": [str(row.get("label", "")) for row in rows if not _finite(row.get("log_eta"))]}


def _summary(rows: list[Mapping[str, Any]]) -> dict[str, list[str]]:
    seeds: set[str] = set()
    modes: set[str] = set()
    dtypes: set[str] = set()
    refs: set[str] = set()
    sources: dict[str, int] = {}
    for row in rows:
        if row.get("seed") is not None:
            seeds.add(str(row["seed"]))
        if row.get("mode"):
            modes.add(str(row["mode"]))
        refs.update(map(str, row.get("references") or []))
        if row.get("jax_source"):
            source = JAX_SOURCES.get(str(row["jax_source"]), str(row["jax_source"]))
            sources[source] = sources.get(source, 0) + 1
        dtypes.update(str(leaf.get("dtype")) for leaf in row.get("leaves") or [] if isinstance(leaf, Mapping))
    return {"seeds": sorted(seeds, key=lambda s: (len(s), s)), "modes": sorted(modes),
            "dtypes": sorted(dtypes), "references": sorted(refs),
            "JAX reference from": [f"{k} ({n} check{'' if n == 1 else 's'})"
                                   for k, n in sorted(sources.items())]}


def _run(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run record's id and status, and the banner of a run that is not complete."""
    run = doc.get("run")
    if not isinstance(run, Mapping):
        return None
    status = str(run.get("status") or "unknown")
    banner = None
    if status != "complete":
        reason = f" ({run['reason']})" if run.get("reason") else ""
        opening = _STATUS_TEXT.get(status, f"Run status {status!r}")
        banner = f"{opening}{reason}: this report is not a complete record of the test session."
        n_missing, collected = run.get("n_missing"), run.get("collected")
        if isinstance(n_missing, int) and n_missing and isinstance(collected, int):
            banner += f" {n_missing} of {collected} collected tests did not report."
    missing = [str(m) for m in run.get("missing") or []]
    return {"id": str(run.get("id", "")), "status": status, "banner": banner, "missing": missing[:20],
            "more_missing": max(0, len(missing) - 20)}


def _context(doc: Mapping[str, Any]) -> dict[str, Any]:
    rows = [row for row in doc["rows"] if isinstance(row, Mapping)]
    ids, counter = _Ids(), iter(range(1 << 62))
    table: list[dict[str, Any]] = []
    drilldowns: list[dict[str, Any]] = []
    flows: list[dict[str, Any]] = []
    n_failed = n_test_failed = 0
    for row in rows:
        n_test_failed += bool(_test_failed(row))
        failed = row.get("verdict") != "pass" or bool(_test_failed(row))
        anchor = ids(_check_name(row)) if failed and len(drilldowns) < MAX_DRILLDOWNS else None
        table.extend(_table_rows(row, anchor))
        if anchor is not None:
            drilldowns.append(_drilldown(row, anchor))
        n_failed += failed
        flows.extend(_flows(row, counter))
    verdicts = sorted({r["verdict"] for r in table})
    groups = _groups(rows, table, ids)
    kinds: dict[str, int] = {}
    for row in rows:
        badge = KIND_BADGES.get(str(row.get("kind")))
        if badge:
            kinds[badge] = kinds.get(badge, 0) + 1
    outcomes: dict[str, int] = {}
    for r in table:
        outcomes[r["verdict"]] = outcomes.get(r["verdict"], 0) + 1
    return {"groups": groups, "kinds": kinds, "outcomes": outcomes,
            "doc": doc, "title": str(doc.get("title", "gradcheck")),
            "environment": dict(doc.get("environment") or {}), "counts": dict(doc.get("counts") or {}),
            "summary": _summary(rows), "table": table, "verdicts": verdicts, "n_checks": len(rows),
            "drilldowns": drilldowns, "n_failed": n_failed, "toc_max": TOC_FAILURES, "flows": flows,
            "max_plots": MAX_PLOTS,
            "study": _study(doc, ids), "run": _run(doc), "n_test_failed": n_test_failed}


def _short_test(test: str) -> str:
    """A pytest id without its module (``test_f[3]`` of ``tests/x.py::test_f[3]``): what the Test
    cell of a group says, the group's summary naming the module."""
    return test.split("::", 1)[1] if "::" in test else test


def _groups(rows: list[Mapping[str, Any]], table: list[dict[str, Any]], ids: _Ids) -> list[dict[str, Any]]:
    """The agreement table split into groups (test module or family), with their counts; groups
    with failures first and open, the all-pass ones after and closed; in a group, the rows that
    did not pass first."""
    slots: dict[str, list[dict[str, Any]]] = {}
    at = 0
    for row, name in zip(rows, _group_names(rows), strict=True):
        n = max(1, len([leaf for leaf in row.get("leaves") or [] if isinstance(leaf, Mapping)]))
        for r in table[at:at + n]:
            r["test_short"] = _short_test(r["test"])
        slots.setdefault(name, []).extend(table[at:at + n])
        at += n
    out = []
    for name, members in slots.items():
        members = sorted(members, key=lambda r: r["verdict"] == "pass" and not r["test_failed"])
        counts: dict[str, int] = {}
        for r in members:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        bad = any(r["verdict"] != "pass" or r["test_failed"] for r in members)
        out.append({"name": name, "id": ids("group", name), "rows": members,
                    "counts": sorted(counts.items()), "open": bad})
    return sorted(out, key=lambda g: not g["open"])


def render_html(doc: dict[str, Any]) -> str:
    """The report page of a session document (audit, result and flow documents are converted)."""
    return str(_environment().get_template("report.html.j2").render(_context(as_session(doc))))


def write_html(doc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Render ``doc`` and write the page atomically to ``path``."""
    return write_text(render_html(doc), path)
