"""The ``gradcheck`` command: ``gradcheck audit [MODULE ...]`` checks every declared case.

``gradcheck audit`` writes ``reports/gradcheck.json`` and ``reports/gradcheck.html``;
``gradcheck report results.json -o report.html`` renders the HTML report of any results file
(a pytest session, an audit, a single check result or gradient flow).  Neither overwrites a file
that is not a gradcheck report of the same kind (a Python file, say: exit status 2, nothing
written; :func:`gradcheck.report.targets.refusal`); each report is written atomically and on its
own, and one that cannot be written is named with the reason and makes a run that would have
exited 0 exit 3.

A module declares its cases as a list (or a function returning a list) named
``GRADCHECK_CASES`` of plain dicts, so declaring them needs no import of gradcheck::

    GRADCHECK_CASES = [
        {"name": "dense/tanh", "layer": Dense(), "params": {"W": W, "b": b}, "x": x},
        {"name": "mse", "fun": loss, "grad": loss_grad, "params": {"W": W}, "args": (x, d),
         "options": {"rtol": 1e-6}},
    ]

A case with ``layer`` goes to :func:`gradcheck.check_layer`, one with ``fun``/``grad`` to
:func:`gradcheck.check_grad`; ``options`` are the check's keyword options.  With no module the
built-in reference zoo (``reference.cases``) is audited.

``gradcheck audit`` of the built-in zoo also runs the gradient-flow study of
:mod:`gradcheck.study` (tanh, sigmoid and ReLU Elman RNNs, an LSTM, a GRU, sigmoid MLPs), prints
its table and records it as ``study`` in the JSON and as a section of the HTML report;
``--no-study`` skips it, ``--study`` adds it to the audit of your own modules.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gradcheck.errors import GradcheckError

if TYPE_CHECKING:
    from gradcheck.study import Study

__all__ = ["audit", "load_cases", "main", "report", "run_case", "run_study"]

AUDIT_SCHEMA = "gradcheck.audit/1"
_ZOO = "reference.cases"  # the built-in reference zoo's declarations
_REQUIRED = {"layer": ("params", "x"), "fun": ("grad", "params")}
#: The exit status of a command that would have passed but could not write a report.
WRITE_FAILED = 3
_SOURCE_SUFFIXES = (".py", ".pyi", ".pyw", ".pyx", ".pyc")


def load_cases(module_name: str) -> list[dict[str, Any]]:
    """Import ``module_name`` and return its validated ``GRADCHECK_CASES``."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"gradcheck audit: cannot import {module_name!r}: {exc}") from exc
    declared = getattr(module, "GRADCHECK_CASES", None)
    if declared is None:
        raise SystemExit(
            f"gradcheck audit: {module_name} declares no GRADCHECK_CASES: add a list of dicts "
            "such as {'name': ..., 'layer': ..., 'params': ..., 'x': ...} (see gradcheck.cli)."
        )
    cases = declared() if callable(declared) else declared
    out = []
    for i, case in enumerate(cases):
        if not isinstance(case, Mapping):
            raise SystemExit(f"gradcheck audit: {module_name}.GRADCHECK_CASES[{i}] is not a dict")
        kind = "layer" if "layer" in case else "fun" if "fun" in case else None
        missing = [] if kind is None else [k for k in _REQUIRED[kind] if k not in case]
        if kind is None or missing:
            raise SystemExit(
                f"gradcheck audit: {module_name}.GRADCHECK_CASES[{i}] needs 'layer', 'params', 'x' "
                f"or 'fun', 'grad', 'params' (missing {missing or ['layer or fun']})"
            )
        out.append({"name": f"{module_name}[{i}]", "module": module_name, **case})
    return out


def run_case(case: Mapping[str, Any]) -> dict[str, Any]:
    """Run one declared case; an error inside user code becomes an ``error`` row, not a crash."""
    import gradcheck as gc

    options = {"name": case["name"], **case.get("options", {})}
    start = time.perf_counter()
    try:
        if "layer" in case:
            res = gc.check_layer(case["layer"], case["params"], case["x"], **options)
        else:
            res = gc.check_grad(case["fun"], case["grad"], case["params"], *case.get("args", ()),
                                **options)
        row = res.to_dict()
    except GradcheckError as exc:
        row = {"name": case["name"], "verdict": "error", "passed": False,
               "error": f"{type(exc).__name__}: {exc}", "leaves": []}
    row["module"] = case.get("module")
    row["family"] = case.get("family", str(case["name"]).split("/")[0])
    row["seconds"] = round(time.perf_counter() - start, 4)
    return row


def _progress(i: int, n: int, name: str, stream: TextIO) -> None:
    if not stream.isatty():
        return
    width = 30
    filled = int(width * i / max(n, 1))
    stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {i}/{n} {name[:40]:<40}")
    stream.flush()


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per (family, tensor): how many checks, the worst relative error, the verdicts."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        leaves = row["leaves"] or [{"name": "-", "verdict": row["verdict"], "max_rel_err": None}]
        for leaf in leaves:
            groups.setdefault((str(row.get("family", "")), leaf["name"]), []).append(leaf)
    lines = [f"{'family':<14} {'tensor':<14} {'checks':>6} {'worst rel err':>13}  verdict"]
    for (family, tensor), leaves in groups.items():
        errs = [v["max_rel_err"] for v in leaves if isinstance(v.get("max_rel_err"), float)]
        worst = f"{max(errs):.2e}" if errs else "-"
        verdicts: dict[str, int] = {}
        for v in leaves:
            verdicts[v["verdict"]] = verdicts.get(v["verdict"], 0) + 1
        shown = ", ".join(f"{n} {k}" for k, n in sorted(verdicts.items()))
        lines.append(f"{family[:14]:<14} {tensor[:14]:<14} {len(leaves):>6} {worst:>13}  {shown}")
    return "\n".join(lines)


def run_study() -> Study:
    """The default gradient-flow study of ``gradcheck audit`` (:func:`gradcheck.study.flow_study`)."""
    from gradcheck.study import flow_study

    return flow_study()


def audit(modules: Sequence[str], out_dir: Path, *, stream: TextIO = sys.stdout,
          runner: Callable[[Mapping[str, Any]], dict[str, Any]] = run_case,
          study: Callable[[], Study] | None = None) -> int:
    """Check every case the modules declare, run the gradient-flow study, print a summary, write
    ``gradcheck.json`` and ``gradcheck.html`` to ``out_dir``.

    Args:
        modules: the modules declaring ``GRADCHECK_CASES``.
        out_dir: the folder the JSON and HTML files are written to.
        stream: where the summary is printed.
        runner: runs one declared case (default :func:`run_case`).
        study: returns the gradient-flow study to record (the command line passes
            :func:`run_study` when auditing the built-in zoo or with ``--study``); ``None``
            (the default) skips it.

    Returns:
        The exit code: 0 only when every check passes and, with a study, hand and JAX agree in
        every row of it; 2 when ``out_dir`` is not a folder the reports may be written to
        (nothing runs); 3 when the checks pass but a report could not be written.
    """
    refused = _out_refusal(out_dir)
    if refused is not None:
        stream.write(f"gradcheck audit: {refused}\n")
        return 2
    cases = [case for name in modules for case in load_cases(name)]
    if not cases:
        stream.write("gradcheck audit: no cases declared\n")
        return 2
    start = time.perf_counter()
    rows = _run_cases(cases, runner, stream)
    counts = _verdict_counts(rows)
    studied = _run_study(study, stream)
    elapsed = time.perf_counter() - start
    from gradcheck import report as rep

    document = {"schema": AUDIT_SCHEMA, "modules": list(modules), "seconds": round(elapsed, 3),
                "counts": counts, "environment": rep.current_environment(), "results": rows}
    if studied is not None:
        document["study"] = studied.to_dict()
    written, lost = _write_audit(document, out_dir)
    stream.write(_table(rows) + "\n")
    _print_failures(rows, stream)
    if studied is not None:
        _print_study(studied, stream)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    wrote = " and ".join(map(str, written)) or "no report"
    stream.write(f"\n{len(rows)} checks: {summary} in {elapsed:.1f}s; wrote {wrote}\n")
    for line in lost:
        stream.write(f"gradcheck audit: {line}\n")
    passed = all(row["verdict"] == "pass" for row in rows)
    code = 0 if passed and (studied is None or studied.agree) else 1
    return WRITE_FAILED if lost and code == 0 else code


def _out_refusal(out_dir: Path) -> str | None:
    """Why the reports must not be written into ``out_dir``, or ``None`` when they may."""
    from gradcheck.report.targets import refusal

    if out_dir.suffix.lower() in _SOURCE_SUFFIXES or (out_dir.exists() and not out_dir.is_dir()):
        what = "is a file" if out_dir.exists() else "names a Python file"
        return (f"-o {str(out_dir)!r} {what}, not a folder: give -o the folder to write "
                "gradcheck.json and gradcheck.html to")
    for name, kind in (("gradcheck.json", "json"), ("gradcheck.html", "html")):
        why = refusal(out_dir / name, kind)
        if why is not None:
            return (f"refusing to write {out_dir / name}, which {why}: give -o another folder, "
                    "or move that file away")
    return None


def _write_audit(document: dict[str, Any], out_dir: Path) -> tuple[list[Path], list[str]]:
    """Write the audit's JSON and HTML, each on its own: the paths written, and why any was not."""
    from gradcheck import report as rep

    jobs: tuple[tuple[str, Callable[[], Path]], ...] = (
        ("gradcheck.json", lambda: rep.write_json(document, out_dir / "gradcheck.json")),
        ("gradcheck.html", lambda: rep.write_html(rep.as_session(document), out_dir / "gradcheck.html")),
    )
    written: list[Path] = []
    lost: list[str] = []
    for name, job in jobs:
        try:
            written.append(job())
        except Exception as exc:  # one report's failure must not cost the other
            lost.append(f"could not write {out_dir / name}: {type(exc).__name__}: {exc}")
    return written, lost


def _run_cases(cases: Sequence[Mapping[str, Any]], runner: Callable[[Mapping[str, Any]], dict[str, Any]],
               stream: TextIO) -> list[dict[str, Any]]:
    """Run every case in order, with a progress bar on a terminal."""
    rows = []
    for i, case in enumerate(cases):
        _progress(i, len(cases), str(case["name"]), stream)
        rows.append(runner(case))
    _progress(len(cases), len(cases), "done", stream)
    if stream.isatty():
        stream.write("\n")
    return rows


def _verdict_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return counts


def _print_failures(rows: Sequence[Mapping[str, Any]], stream: TextIO) -> None:
    """Each row that did not pass: its error, or its verdict and the diagnosis of each bad leaf."""
    for row in rows:
        if row["verdict"] == "error":
            stream.write(f"\n{row['name']}: {row['error']}\n")
        elif row["verdict"] != "pass":
            stream.write(f"\n{row['name']}: {row['verdict']}\n")
            for leaf in row["leaves"]:
                if leaf["verdict"] != "pass" and leaf.get("diagnosis"):
                    stream.write(f"  {leaf['name']}: {leaf['diagnosis']['summary']}; "
                                 f"blame: {leaf['blame']}\n")


def _print_study(studied: Study, stream: TextIO) -> None:
    """The study's table, then each model whose hand BPTT disagrees with JAX."""
    stream.write("\n" + studied.table() + "\n")
    for srow in studied.rows:
        if not srow.agree:
            stream.write(f"{srow.label}: hand BPTT and JAX per-step gradients disagree "
                         f"beyond rtol={srow.flow.rtol:.1e}\n")


def _run_study(study: Callable[[], Study] | None, stream: TextIO) -> Study | None:
    if study is None:
        return None
    if stream.isatty():
        stream.write("running the gradient-flow study...\r")
        stream.flush()
    return study()


def report(source: Path, target: Path | None = None, *, stream: TextIO = sys.stdout) -> int:
    """Render the HTML report of a results file (session, audit, result or flow JSON).

    Returns:
        The exit code: 0 when the page was written, 2 when ``source`` cannot be read or the
        target is not a new file or a gradcheck HTML report (nothing is written), 3 when writing
        the page failed.
    """
    from gradcheck import report as rep
    from gradcheck.report.targets import refusal

    try:
        doc = rep.load(source)
    except (OSError, GradcheckError) as exc:
        stream.write(f"gradcheck report: {exc}\n")
        return 2
    target = target if target is not None else source.with_suffix(".html")
    why = refusal(target, "html")
    if why is not None:
        stream.write(f"gradcheck report: refusing to write {target}, which {why}: give -o a path "
                     "ending in .html that is new or a gradcheck HTML report\n")
        return 2
    try:
        page = rep.write_html(doc, target)
    except Exception as exc:
        stream.write(f"gradcheck report: could not write {target}: {type(exc).__name__}: {exc}\n")
        return WRITE_FAILED
    counts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(doc["counts"].items()))
    study = f" and a gradient-flow study of {len(doc['study']['rows'])} models" if doc.get("study") else ""
    stream.write(f"{len(doc['rows'])} checks ({counts}){study}; wrote {page}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradcheck`` console script."""
    parser = argparse.ArgumentParser(prog="gradcheck", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_audit = sub.add_parser("audit", help="check every case a module declares "
                             "(default: the built-in reference zoo)")
    p_audit.add_argument("modules", nargs="*", default=[_ZOO],
                         help="modules declaring GRADCHECK_CASES (default: reference.cases)")
    p_audit.add_argument("-o", "--out", default="reports", help="output folder (default: reports)")
    p_audit.add_argument("--study", action=argparse.BooleanOptionalAction, default=None,
                         help="run the gradient-flow study (vanishing/exploding gradients of the "
                              "reference RNNs, LSTM, GRU and MLPs; about 25 s); default: on when "
                              "auditing the built-in zoo, off for your own modules")
    p_report = sub.add_parser("report", help="render the HTML report of a results JSON file")
    p_report.add_argument("results", help="a gradcheck JSON file (pytest session, audit, result or flow)")
    p_report.add_argument("-o", "--output", default=None,
                          help="the HTML file to write (default: RESULTS with the suffix .html)")
    args = parser.parse_args(argv)
    if args.command == "audit":
        with_study = args.study if args.study is not None else list(args.modules) == [_ZOO]
        return audit(args.modules, Path(args.out), study=run_study if with_study else None)
    if args.command == "report":
        return report(Path(args.results), Path(args.output) if args.output else None)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
