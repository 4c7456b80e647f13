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
:func:`gradcheck.check_grad`, one with ``jvp`` (and ``fun``) to :func:`gradcheck.check_jvp`,
one with ``hvp`` (``fun``, optionally ``grad``) to :func:`gradcheck.check_hvp`, one with
``per_example_grad`` (``loss``, ``batch``, optionally ``axis``) to
:func:`gradcheck.check_batched`; ``args`` are passed on, ``options`` are the check's keyword
options.  With no module the
built-in reference zoo (``reference.cases``) is audited.  The command puts the current folder
first on ``sys.path`` (as ``python -m`` does), so ``gradcheck audit mymodule`` finds
``./mymodule.py``.

The command line's ``--mode`` and ``--seed`` are applied to every case as check options, except
for the keys a case's own ``options`` set: those were written for that case and win (as a call's
keywords beat the pytest plugin's command line).  ``-k EXPR`` selects cases by their names
(:func:`case_filter`); when it selects none the audit exits 5 (:data:`NO_CASES`), as pytest does.
``-n N`` runs the cases on N worker processes (``spawn``: JAX is not fork-safe); each worker
re-imports the declaring module and runs case *i* of it, so nothing but the module's name, the
index and the options is sent to it, results are recorded in the declared order whatever the
order they finish in, and an exception in a worker (or a worker that dies) becomes an ``error``
row of its case.

Each case prints one line as it finishes (its verdict, what failed, its time), flushed at once,
also when the output is not a terminal; on a terminal a progress bar stays below the lines.  An
``error`` row carries the ``traceback`` of the exception, trimmed to the frames of user code
(:func:`format_traceback`), printed under the case in the failures section at the end.

``gradcheck audit`` of the built-in zoo also runs the gradient-flow study of
:mod:`gradcheck.study` (tanh, sigmoid and ReLU Elman RNNs, an LSTM, a GRU, sigmoid MLPs), prints
its table and records it as ``study`` in the JSON and as a section of the HTML report;
``--no-study`` skips it, ``--study`` adds it to the audit of your own modules.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import multiprocessing
import os
import pickle
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gradcheck.errors import GradcheckError
from gradcheck.options import MODES

if TYPE_CHECKING:
    from gradcheck.study import Study

__all__ = ["AUDIT_SCHEMA", "NO_CASES", "WRITE_FAILED", "audit", "case_filter", "format_traceback",
           "load_cases", "main", "report", "run_case", "run_study"]

AUDIT_SCHEMA = "gradcheck.audit/1"
_ZOO = "reference.cases"  # the built-in reference zoo's declarations
#: What each kind of declared case needs, by the key that names its kind (tried in this order).
_REQUIRED = {"layer": ("params", "x"), "jvp": ("fun", "params"), "hvp": ("fun", "params"),
             "per_example_grad": ("loss", "params", "batch"), "fun": ("grad", "params")}
#: The exit status of a command that would have passed but could not write a report.
WRITE_FAILED = 3
#: The exit status of an audit with no case to run (none declared, or none selected by ``-k``).
NO_CASES = 5
_SOURCE_SUFFIXES = (".py", ".pyi", ".pyw", ".pyx", ".pyc")
_PACKAGE_DIR = Path(__file__).resolve().parent  # frames from here are gradcheck's, not the user's

Runner = Callable[[Mapping[str, Any]], dict[str, Any]]

# ----------------------------------------------------------------------------- command-line texts
# Plain text: argparse prints these as they are (no reStructuredText markup).

_DESCRIPTION = """\
Check hand-derived gradients (backprop, BPTT) against finite differences and JAX autodiff,
and render the reports."""

_EPILOG = """\
examples:
  gradcheck audit                       audit the built-in reference zoo, write reports/
  gradcheck audit mylayers -n auto      audit ./mylayers.py on every core
  gradcheck audit mylayers -k "dense and not float32" --mode full
  gradcheck report results.json -o report.html
  python -m gradcheck --version

Run "gradcheck audit --help" for the audit's options and exit statuses."""

_AUDIT_DESCRIPTION = """\
Check every case the modules declare in GRADCHECK_CASES (a list of dicts, or a function
returning one; see the README) and write gradcheck.json and gradcheck.html to the output
folder. With no module the built-in reference zoo (reference.cases) is audited, together with
its gradient-flow study. The current folder is searched first for the modules, as with
"python -m".

Each case prints one line as it finishes: its verdict, what did not pass and why, and its time.
A summary table, the failures (with the traceback of each error) and the totals follow."""

_AUDIT_EPILOG = """\
options and the cases' own options:
  --mode and --seed apply to every case as check options, except where a case's own
  "options" set the same key: the case's value wins (it was written for that case). The
  built-in zoo's cases set their own seed, so --seed does not change them; --mode does.

selecting cases with -k:
  -k takes substrings of case names, matched case-insensitively, combined with "and", "or",
  "not" and parentheses, as in pytest; quote a substring that holds spaces or parentheses:
  -k "'sizes=(4, 5, 3)' or lstm".

exit statuses:
  0  every check passed (and, with the study, hand BPTT and JAX agree)
  1  some check failed, was inconclusive or raised an error
  2  bad command line, or an output folder the reports may not be written to
  3  every check passed but a report could not be written
  5  no case to run: none declared, or -k selected none

examples:
  gradcheck audit                          the built-in zoo, on one process
  gradcheck audit -n auto -k "rnn or lstm" two families on every core
  gradcheck audit mylayers -o out --mode full --seed 3"""

_REPORT_DESCRIPTION = """\
Render the self-contained HTML report of a gradcheck JSON file: a pytest session
(pytest --gradcheck-json), an audit, a single check result or a gradient flow."""

_REPORT_EPILOG = """\
exit statuses:
  0  the page was written
  2  the file cannot be read, or the target is not a new file or a gradcheck HTML report
  3  writing the page failed

example:
  gradcheck report reports/gradcheck.json -o /tmp/page.html"""


# ----------------------------------------------------------------------------- declarations


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
        kind = next((k for k in _REQUIRED if k in case), None)
        missing = [] if kind is None else [k for k in _REQUIRED[kind] if k not in case]
        if kind is None or missing:
            raise SystemExit(
                f"gradcheck audit: {module_name}.GRADCHECK_CASES[{i}] needs 'layer', 'params', 'x' "
                "or 'fun', 'grad', 'params' (or 'fun', 'jvp' / 'hvp', 'params'; or 'loss', "
                f"'per_example_grad', 'params', 'batch') (missing {missing or ['layer or fun']})"
            )
        out.append({"name": f"{module_name}[{i}]", "module": module_name, **case})
    return out


@dataclass(frozen=True)
class _Declared:
    """One declared case and where it comes from (a worker re-imports it from there)."""

    module: str
    index: int
    case: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.case["name"])


# ----------------------------------------------------------------------------- selection (-k)

_TOKEN = re.compile(r"""\s*(?:(?P<paren>[()])|"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<word>[^\s()'"]+))""")
_OPERATORS = ("and", "or", "not")


def case_filter(expression: str) -> Callable[[str], bool]:
    """A predicate on case names from a pytest-like ``-k`` expression.

    The expression combines substrings of names (matched case-insensitively) with ``and``,
    ``or``, ``not`` and parentheses; ``not`` binds tightest, then ``and``, then ``or``.  A
    substring holding spaces or parentheses is quoted (``'sizes=(4, 5, 3)'``).  An empty
    expression selects every case.

    Raises:
        ValueError: the expression is malformed; the message says where and what was expected.

    >>> keep = case_filter("dense and not float32")
    >>> keep("dense[activation=tanh]/float64/seed0"), keep("DENSE/x/float32")
    (True, False)
    """
    tokens: list[tuple[str, str]] = []  # (kind, text): kind "op", "(", ")" or "term"
    pos = 0
    text = expression.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:  # an unclosed quote
            raise ValueError(f"{expression!r}: unclosed quote at position {pos + 1}; close it, or "
                             "leave quotes out of a plain substring")
        pos = match.end()
        if match["paren"]:
            tokens.append((match["paren"], match["paren"]))
        elif match["word"] in _OPERATORS:
            tokens.append(("op", str(match["word"])))
        else:
            word = match["word"] if match["word"] is not None else match["dq"] or match["sq"] or ""
            tokens.append(("term", word.lower()))
    if not tokens:
        return lambda name: True
    predicate, end = _parse_or(tokens, 0, expression)
    if end != len(tokens):
        raise ValueError(f"{expression!r}: unexpected {tokens[end][1]!r} after a complete "
                         "expression; join substrings with 'and' or 'or', or quote one that "
                         "holds spaces")
    return predicate


_Predicate = Callable[[str], bool]


def _contains(sub: str) -> _Predicate:
    return lambda name: sub in name.lower()


def _negated(a: _Predicate) -> _Predicate:
    return lambda name: not a(name)


def _both(a: _Predicate, b: _Predicate) -> _Predicate:
    return lambda name: a(name) and b(name)


def _either(a: _Predicate, b: _Predicate) -> _Predicate:
    return lambda name: a(name) or b(name)


def _parse_or(tokens: list[tuple[str, str]], i: int, source: str) -> tuple[_Predicate, int]:
    left, i = _parse_and(tokens, i, source)
    while i < len(tokens) and tokens[i] == ("op", "or"):
        right, i = _parse_and(tokens, i + 1, source)
        left = _either(left, right)
    return left, i


def _parse_and(tokens: list[tuple[str, str]], i: int, source: str) -> tuple[_Predicate, int]:
    left, i = _parse_not(tokens, i, source)
    while i < len(tokens) and tokens[i] == ("op", "and"):
        right, i = _parse_not(tokens, i + 1, source)
        left = _both(left, right)
    return left, i


def _parse_not(tokens: list[tuple[str, str]], i: int, source: str) -> tuple[_Predicate, int]:
    if i >= len(tokens):
        after = f" after {tokens[-1][1]!r}" if tokens else ""
        raise ValueError(f"{source!r}: expected a substring or '('{after}, found the end")
    kind, text = tokens[i]
    if (kind, text) == ("op", "not"):
        inner, i = _parse_not(tokens, i + 1, source)
        return _negated(inner), i
    if kind == "(":
        inner, i = _parse_or(tokens, i + 1, source)
        if i >= len(tokens) or tokens[i][0] != ")":
            raise ValueError(f"{source!r}: '(' is not closed; add ')'")
        return inner, i + 1
    if kind == "term":
        return _contains(text), i + 1
    raise ValueError(f"{source!r}: expected a substring or '(' where {text!r} is; quote a "
                     f"substring that is the word {text!r}")


# ----------------------------------------------------------------------------- running one case


def run_case(case: Mapping[str, Any]) -> dict[str, Any]:
    """Run one declared case; an exception (in user code or not) becomes an ``error`` row with
    its ``traceback``, never a crash."""
    import gradcheck as gc

    start = time.perf_counter()
    try:
        options = {"name": case["name"], **case.get("options", {})}
        args = case.get("args", ())
        if "layer" in case:
            res = gc.check_layer(case["layer"], case["params"], case["x"], **options)
        elif "jvp" in case:
            res = gc.check_jvp(case["fun"], case["jvp"], case["params"], *args, **options)
        elif "hvp" in case:
            res = gc.check_hvp(case["fun"], case["hvp"], case["params"], *args,
                               grad=case.get("grad"), **options)
        elif "per_example_grad" in case:
            res = gc.check_batched(case["loss"], case["per_example_grad"], case["params"],
                                   case["batch"], *args, axis=case.get("axis", 0), **options)
        else:
            res = gc.check_grad(case["fun"], case["grad"], case["params"], *case.get("args", ()),
                                **options)
        row = res.to_dict()
    except Exception as exc:
        row = _error_row(case, exc)
    row["module"] = case.get("module")
    row["family"] = case.get("family", str(case["name"]).split("/")[0])
    row["seconds"] = round(time.perf_counter() - start, 4)
    return row


def format_traceback(exc: BaseException) -> str:
    """The exception chain of ``exc`` formatted as Python prints it, trimmed to user code.

    The frames of the gradcheck package that lead to user code are dropped from each exception
    of the chain (what user code calls is kept), so a :class:`gradcheck.UserCodeError` shows the
    traceback of the user's exception (its ``__cause__``) and then its own message.  An exception
    other than a gradcheck error whose frames are all gradcheck's keeps them: that is a bug in
    gradcheck, worth reporting whole.
    """
    te = traceback.TracebackException.from_exception(exc)
    _trim(te, exc, set())
    return "".join(te.format())


def _trim(te: traceback.TracebackException, exc: BaseException, seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    frames = list(te.stack)
    first = next((i for i, frame in enumerate(frames) if not _is_internal(frame.filename)), None)
    if first is not None:
        te.stack = traceback.StackSummary.from_list(frames[first:])
    elif isinstance(exc, GradcheckError):  # raised by gradcheck about user code: the message says it
        te.stack = traceback.StackSummary.from_list([])
    if te.__cause__ is not None and exc.__cause__ is not None:
        _trim(te.__cause__, exc.__cause__, seen)
    if te.__context__ is not None and exc.__context__ is not None:
        _trim(te.__context__, exc.__context__, seen)


def _is_internal(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(_PACKAGE_DIR)
    except (OSError, ValueError):
        return False


def _error_row(case: Mapping[str, Any], exc: BaseException) -> dict[str, Any]:
    """The ``error`` row of a case whose check raised ``exc``."""
    name = case.get("name", "?")
    return {"name": name, "verdict": "error", "passed": False,
            "error": f"{type(exc).__name__}: {exc}", "traceback": format_traceback(exc),
            "leaves": [], "module": case.get("module"),
            "family": case.get("family", str(name).split("/")[0])}


def _with_options(case: Mapping[str, Any], options: Mapping[str, Any]) -> Mapping[str, Any]:
    """``case`` with the command line's options added under its own (the case's keys win)."""
    if not options:
        return case
    return {**case, "options": {**options, **case.get("options", {})}}


def _run_one(case: Mapping[str, Any], options: Mapping[str, Any], runner: Runner) -> dict[str, Any]:
    """Run ``case`` with the command line's ``options``; whatever the runner raises becomes an
    ``error`` row, and every row says how long it took."""
    start = time.perf_counter()
    try:
        row = runner(_with_options(case, options))
    except Exception as exc:
        row = _error_row(case, exc)
    row.setdefault("seconds", round(time.perf_counter() - start, 4))
    return row


# ----------------------------------------------------------------------------- worker processes

# A worker process's memo of the cases each module declares, filled only in worker processes
# (so a module whose GRADCHECK_CASES is a function builds them once per worker, not per case).
_WORKER_CASES: dict[str, list[dict[str, Any]]] = {}


def _init_worker(path: Sequence[str]) -> None:
    """Give a worker process the audit's import path (the current folder first, among others)."""
    sys.path[:0] = [entry for entry in path if entry not in sys.path]


def _work(module: str, index: int, name: str, options: Mapping[str, Any],
          runner: Runner) -> dict[str, Any]:
    """Run case ``index`` of ``module`` in a worker process: re-import, select, run."""
    stub = {"name": name, "module": module}
    try:
        if module not in _WORKER_CASES:
            _WORKER_CASES[module] = load_cases(module)
        cases = _WORKER_CASES[module]
        if index >= len(cases) or str(cases[index]["name"]) != name:
            found = repr(str(cases[index]["name"])) if index < len(cases) else "no case"
            raise RuntimeError(
                f"{module}.GRADCHECK_CASES declares {found} at index {index} in a worker process, "
                f"not {name!r}: the declarations must come out the same at every import to run on "
                "worker processes; make them deterministic, or run with -n 1")
    except BaseException as exc:  # SystemExit from load_cases included: an error row, not a crash
        return _error_row(stub, exc)
    return _run_one(cases[index], options, runner)


def _run_serial(cases: Sequence[_Declared], options: Mapping[str, Any],
                runner: Runner) -> Iterator[tuple[int, dict[str, Any]]]:
    for position, declared in enumerate(cases):
        yield position, _run_one(declared.case, options, runner)


def _run_parallel(cases: Sequence[_Declared], options: Mapping[str, Any], runner: Runner,
                  workers: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run the cases on ``workers`` spawned processes; yield (position, row) as each finishes."""
    context = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=_init_worker, initargs=(list(sys.path),))
    try:
        futures: dict[Future[dict[str, Any]], int] = {
            pool.submit(_work, c.module, c.index, c.name, dict(options), runner): position
            for position, c in enumerate(cases)}
        for future in as_completed(futures):
            position = futures[future]
            try:
                row = future.result()
            except Exception as exc:  # the worker died (BrokenProcessPool) or the row did not pickle
                row = _error_row(cases[position].case, exc)
                row["error"] = (f"{row['error']} (the worker process running this case failed; "
                                "rerun with -n 1 to run it in the audit's own process)")
            yield position, row
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_picklable(runner: Runner) -> None:
    try:
        pickle.dumps(runner)
    except Exception as exc:
        raise TypeError(f"runner={runner!r} cannot be sent to worker processes ({exc}): pass a "
                        "function defined at the top level of a module, or workers=1") from exc


# ----------------------------------------------------------------------------- printing


class _Console:
    """One flushed line per event; on a terminal, a progress bar kept below the lines."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.done = 0
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty()) if callable(isatty) else False

    def line(self, text: str) -> None:
        """Print ``text`` on a line of its own (over the progress bar), then redraw the bar."""
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self._bar()
        self.stream.flush()

    def case(self, row: Mapping[str, Any]) -> None:
        """The line of a case that finished."""
        self.done += 1
        self.line(_case_line(self.done, self.total, row))

    def close(self) -> None:
        """Clear the progress bar."""
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _bar(self) -> None:
        if self.tty and self.done < self.total:
            width = 30
            filled = width * self.done // max(self.total, 1)
            self.stream.write(f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")


def _shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _why(row: Mapping[str, Any]) -> str:
    """What did not pass in a row, in a few words."""
    if row.get("verdict") == "error":
        return _shorten(str(row.get("error", "")).split("\n")[0], 100)
    bad = [leaf for leaf in row.get("leaves") or [] if leaf.get("verdict") != "pass"]
    parts = []
    for leaf in bad[:2]:
        diagnosis = (leaf.get("diagnosis") or {}).get("summary")
        what = _shorten(diagnosis, 60) if diagnosis else str(leaf.get("verdict"))
        blame = f" (blame: {leaf['blame']})" if leaf.get("blame") else ""
        parts.append(f"{leaf.get('name')}: {what}{blame}")
    if len(bad) > 2:
        parts.append(f"+{len(bad) - 2} more")
    return "; ".join(parts)


def _case_line(done: int, total: int, row: Mapping[str, Any]) -> str:
    width = len(str(total))
    seconds = row.get("seconds")
    took = f" ({seconds:.2f}s)" if isinstance(seconds, int | float) else ""
    line = f"[{done:>{width}}/{total}] {row.get('verdict', '?'):<12} {row.get('name')}{took}"
    why = _why(row) if row.get("verdict") != "pass" else ""
    return f"{line}: {why}" if why else line


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


def _print_failures(rows: Sequence[Mapping[str, Any]], stream: TextIO) -> None:
    """Each row that did not pass: its error with the traceback, or its verdict and the
    diagnosis of each bad leaf."""
    for row in rows:
        if row["verdict"] == "error":
            tb = row.get("traceback")
            if tb:
                stream.write(f"\n{row['name']}: error\n")
                stream.write("".join(f"  {line}" if line.strip() else line
                                     for line in str(tb).splitlines(keepends=True)))
                if not str(tb).endswith("\n"):
                    stream.write("\n")
            else:
                stream.write(f"\n{row['name']}: {row['error']}\n")
        elif row["verdict"] != "pass":
            stream.write(f"\n{row['name']}: {row['verdict']}\n")
            for leaf in row["leaves"]:
                if leaf["verdict"] != "pass" and leaf.get("diagnosis"):
                    stream.write(f"  {leaf['name']}: {leaf['diagnosis']['summary']}; "
                                 f"blame: {leaf['blame']}\n")
    stream.flush()


def _print_study(studied: Study, stream: TextIO) -> None:
    """The study's table, then each model whose hand BPTT disagrees with JAX."""
    stream.write("\n" + studied.table() + "\n")
    for srow in studied.rows:
        if not srow.agree:
            stream.write(f"{srow.label}: hand BPTT and JAX per-step gradients disagree "
                         f"beyond rtol={srow.flow.rtol:.1e}\n")


# ----------------------------------------------------------------------------- the audit


def run_study() -> Study:
    """The default gradient-flow study of ``gradcheck audit`` (:func:`gradcheck.study.flow_study`)."""
    from gradcheck.study import flow_study

    return flow_study()


def audit(modules: Sequence[str], out_dir: Path, *, stream: TextIO | None = None,
          runner: Runner = run_case, study: Callable[[], Study] | None = None,
          options: Mapping[str, Any] | None = None, select: str | None = None,
          workers: int = 1) -> int:
    """Check every case the modules declare, run the gradient-flow study, print a line per case
    and a summary, write ``gradcheck.json`` and ``gradcheck.html`` to ``out_dir``.

    Args:
        modules: the modules declaring ``GRADCHECK_CASES`` (importable from ``sys.path``).
        out_dir: the folder the JSON and HTML files are written to.
        stream: where the lines and the summary are printed (flushed after each line; default:
            ``sys.stdout`` at the time of the call).
        runner: runs one declared case (default :func:`run_case`); with ``workers`` > 1 it must
            be a top-level function of an importable module (it is sent to the workers by name).
        study: returns the gradient-flow study to record (the command line passes
            :func:`run_study` when auditing the built-in zoo or with ``--study``); ``None``
            (the default) skips it.
        options: check options for every case (``mode``, ``seed``: the command line's);
            a case's own ``options`` win for the keys they set.
        select: a ``-k`` expression over case names (:func:`case_filter`); ``None``: every case.
        workers: how many worker processes run the cases (1 or less: this process).

    Returns:
        The exit code: 0 only when every check passes and, with a study, hand and JAX agree in
        every row of it; 1 otherwise; 2 when ``out_dir`` is not a folder the reports may be
        written to (nothing runs); 3 when the checks pass but a report could not be written;
        5 (:data:`NO_CASES`) when no case is declared or ``select`` selects none (nothing runs
        or is written).

    Raises:
        ValueError: ``select`` is malformed.
        TypeError: ``workers`` > 1 with a ``runner`` that cannot be sent to a worker process.
        SystemExit: a module cannot be imported or declares its cases wrongly (the message
            says what to fix).
    """
    stream = sys.stdout if stream is None else stream
    overrides = dict(options or {})
    keep = case_filter(select or "")
    refused = _out_refusal(out_dir)
    if refused is not None:
        stream.write(f"gradcheck audit: {refused}\n")
        return 2
    declared = [_Declared(name, i, case) for name in modules for i, case in enumerate(load_cases(name))]
    if not declared:
        stream.write(f"gradcheck audit: {', '.join(modules)} declare no cases (GRADCHECK_CASES is "
                     f"empty); nothing to check (exit status {NO_CASES})\n")
        return NO_CASES
    cases = [c for c in declared if keep(c.name)]
    if not cases:
        examples = ", ".join(repr(c.name) for c in declared[:3])
        stream.write(f"gradcheck audit: -k {select!r} selects none of the {len(declared)} declared "
                     f"cases (such as {examples}); nothing to check (exit status {NO_CASES}). "
                     "-k matches substrings of case names, case-insensitively.\n")
        return NO_CASES
    workers = max(1, min(workers, len(cases)))
    if workers > 1:
        _check_picklable(runner)
    console = _Console(stream, len(cases))
    console.line(_header(modules, len(cases), len(declared), select, workers))
    for note in _override_notes(cases, overrides):
        console.line(note)
    start = time.perf_counter()
    rows = _run_cases(cases, overrides, runner, workers, console)
    counts = _verdict_counts(rows)
    studied = _run_study(study, console)
    console.close()
    elapsed = time.perf_counter() - start
    from gradcheck import report as rep

    document = {"schema": AUDIT_SCHEMA, "modules": list(modules), "seconds": round(elapsed, 3),
                "options": overrides, "select": select, "workers": workers,
                "counts": counts, "environment": rep.current_environment(), "results": rows}
    if studied is not None:
        document["study"] = studied.to_dict()
    written, lost = _write_audit(document, out_dir)
    stream.write("\n" + _table(rows) + "\n")
    _print_failures(rows, stream)
    if studied is not None:
        _print_study(studied, stream)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    wrote = " and ".join(map(str, written)) or "no report"
    stream.write(f"\n{len(rows)} checks: {summary} in {elapsed:.1f}s; wrote {wrote}\n")
    for line in lost:
        stream.write(f"gradcheck audit: {line}\n")
    stream.flush()
    passed = all(row["verdict"] == "pass" for row in rows)
    code = 0 if passed and (studied is None or studied.agree) else 1
    return WRITE_FAILED if lost and code == 0 else code


def _header(modules: Sequence[str], n: int, declared: int, select: str | None, workers: int) -> str:
    chosen = f" ({declared - n} deselected by -k {select!r})" if n < declared else ""
    where = f" on {workers} worker processes" if workers > 1 else ""
    return f"gradcheck audit: {n} cases from {', '.join(modules)}{chosen}{where}"


def _override_notes(cases: Sequence[_Declared], overrides: Mapping[str, Any]) -> list[str]:
    """One note per command-line option that some cases override with their own value."""
    notes = []
    for key, value in overrides.items():
        own = sum(1 for c in cases if key in (c.case.get("options") or {}))
        if own:
            notes.append(f"note: {own} of {len(cases)} cases set their own {key}, which wins "
                         f"over --{key} {value}")
    return notes


def _run_cases(cases: Sequence[_Declared], options: Mapping[str, Any], runner: Runner,
               workers: int, console: _Console) -> list[dict[str, Any]]:
    """Run every case (on ``workers`` processes), print a line as each finishes, and return the
    rows in the declared order."""
    rows: list[dict[str, Any] | None] = [None] * len(cases)
    finished = (_run_parallel(cases, options, runner, workers) if workers > 1
                else _run_serial(cases, options, runner))
    for position, row in finished:
        rows[position] = row
        console.case(row)
    return [row for row in rows if row is not None]


def _run_study(study: Callable[[], Study] | None, console: _Console) -> Study | None:
    if study is None:
        return None
    console.line("gradient-flow study: started")
    start = time.perf_counter()
    studied = study()
    console.line(f"gradient-flow study: finished in {time.perf_counter() - start:.1f}s "
                 f"({len(studied.rows)} models)")
    return studied


def _verdict_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return counts


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


# ----------------------------------------------------------------------------- report


def report(source: Path, target: Path | None = None, *, stream: TextIO | None = None) -> int:
    """Render the HTML report of a results file (session, audit, result or flow JSON) and say so
    on ``stream`` (default: ``sys.stdout`` at the time of the call).

    Returns:
        The exit code: 0 when the page was written, 2 when ``source`` cannot be read or the
        target is not a new file or a gradcheck HTML report (nothing is written), 3 when writing
        the page failed.
    """
    from gradcheck import report as rep
    from gradcheck.report.targets import refusal

    stream = sys.stdout if stream is None else stream
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


# ----------------------------------------------------------------------------- the command line


def _version() -> str:
    """The installed distribution's version, else ``gradcheck.__version__``, else "unknown"."""
    from importlib import metadata

    try:
        return metadata.version("gradcheck")
    except metadata.PackageNotFoundError:
        import gradcheck

        return str(getattr(gradcheck, "__version__", "unknown"))


def _seed_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed: give a non-negative integer")
    return value


def _workers_arg(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of worker processes: give "
                                         "0 or 1 (this process), N > 1, or auto (one per core)")
    return value


def _select_arg(text: str) -> str:
    try:
        case_filter(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _cwd_first(path: list[str], cwd: str) -> None:
    """Put ``cwd`` first on the import ``path`` unless it is first already (``""`` counts as the
    current folder), as ``python -m`` and pytest do, so modules of the current folder import."""
    if path and os.path.abspath(path[0] or os.curdir) == os.path.abspath(cwd):
        return
    path.insert(0, cwd)


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="gradcheck", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"gradcheck {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_audit = sub.add_parser("audit", help="check every case a module declares "
                             "(default: the built-in reference zoo)",
                             description=_AUDIT_DESCRIPTION, epilog=_AUDIT_EPILOG,
                             formatter_class=formatter)
    p_audit.add_argument("modules", nargs="*", default=[_ZOO], metavar="MODULE",
                         help="modules declaring GRADCHECK_CASES, imported by name, the current "
                              "folder first (default: reference.cases, the built-in zoo)")
    p_audit.add_argument("-o", "--out", default="reports", metavar="FOLDER",
                         help="folder for gradcheck.json and gradcheck.html (default: reports)")
    p_audit.add_argument("-k", dest="select", default=None, metavar="EXPR", type=_select_arg,
                         help="run only the cases whose names match EXPR: substrings, "
                              "case-insensitive, with and, or, not and parentheses "
                              "(e.g. \"dense and not float32\"); exit status 5 if none matches")
    p_audit.add_argument("-n", dest="workers", default=1, metavar="N", type=_workers_arg,
                         help="run the cases on N worker processes; auto: one per core; 0 or 1 "
                              "(the default): in this process")
    p_audit.add_argument("--mode", choices=MODES, default=None,
                         help="check mode of every case that does not set its own "
                              "(default: each check's own, auto)")
    p_audit.add_argument("--seed", type=_seed_arg, default=None, metavar="N",
                         help="seed of every case that does not set its own (the zoo's cases set "
                              "theirs; default: each check's own, 0)")
    p_audit.add_argument("--study", action=argparse.BooleanOptionalAction, default=None,
                         help="run the gradient-flow study (vanishing/exploding gradients of the "
                              "reference RNNs, LSTM, GRU and MLPs; about 15 s on 2 cores); default: on when "
                              "auditing the built-in zoo, off for your own modules")
    p_report = sub.add_parser("report", help="render the HTML report of a results JSON file",
                              description=_REPORT_DESCRIPTION, epilog=_REPORT_EPILOG,
                              formatter_class=formatter)
    p_report.add_argument("results", metavar="RESULTS",
                          help="a gradcheck JSON file (pytest session, audit, result or flow)")
    p_report.add_argument("-o", "--output", default=None, metavar="HTML",
                          help="the HTML file to write (default: RESULTS with the suffix .html)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradcheck`` console script and of ``python -m gradcheck``."""
    args = _parser().parse_args(argv)
    try:
        return _command(args)
    except BrokenPipeError:  # the reader went away (gradcheck audit | head): stop quietly
        with contextlib.suppress(OSError, ValueError):  # stdout may not be a file
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _command(args: argparse.Namespace) -> int:
    """Run the parsed command; its exit status."""
    if args.command == "audit":
        _cwd_first(sys.path, os.getcwd())
        with_study = args.study if args.study is not None else list(args.modules) == [_ZOO]
        options = {key: value for key, value in (("mode", args.mode), ("seed", args.seed))
                   if value is not None}
        return audit(args.modules, Path(args.out), study=run_study if with_study else None,
                     options=options, select=args.select, workers=args.workers)
    if args.command == "report":
        return report(Path(args.results), Path(args.output) if args.output else None)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover - python -m gradcheck.cli: run the importable module's
    from gradcheck.cli import main as _main  # main, so worker processes find its functions by name

    sys.exit(_main())
