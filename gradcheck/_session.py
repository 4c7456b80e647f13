"""Per-run state of the pytest plugin: settings, per-test records, rows, merging and the summary.

The plugin shell (:mod:`gradcheck.plugin`) keeps one :class:`GradcheckSession` under
``config.stash[SESSION_KEY]``.  The life of a test's results:

1. ``pytest_runtest_setup`` opens a :class:`TestRecord` (the *current* test) with the options of
   its ``@pytest.mark.gradcheck`` markers, validated by :func:`marker_options`;
2. the ``gradcheck`` fixture (a :class:`Recorder`) runs checks and appends each outcome to the
   current record; inside hypothesis ``@given`` tests the example each outcome belongs to is
   noted, so that :func:`build_rows` can aggregate them into one row per check name;
3. ``pytest_runtest_makereport`` turns the record into rows (:func:`build_rows`) and carries them
   as JSON on the teardown report (attribute ``gradcheck``); the setup report of every test that
   uses the fixture or the marker carries ``{"expected": true}``;
4. ``pytest_runtest_logreport`` merges what the reports carry (:meth:`GradcheckSession.merge`),
   the same way in a serial run and on the pytest-xdist controller, so no row is lost and a test
   whose worker crashed (a setup report, no teardown report) becomes a ``"no result"`` row.

Nothing here imports JAX, hypothesis or a template engine: hypothesis is looked up in
``sys.modules`` only when a check runs.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gradcheck.result import SCHEMA_VERSION, CheckResult

__all__ = [
    "DEFAULT_DIR",
    "MARKER_KEYS",
    "MODES",
    "REFERENCES",
    "SESSION_KEY",
    "GradcheckSession",
    "MarkerError",
    "Recorder",
    "Settings",
    "TestRecord",
    "build_rows",
    "marker_options",
    "row_worst",
]

MODES = ("auto", "full", "directional")
REFERENCES = ("numeric", "autodiff")
#: The keys ``@pytest.mark.gradcheck(...)`` accepts.
MARKER_KEYS = ("atol", "mode", "references", "rtol", "seed")
#: Where reports go when ``--gradcheck-json`` / ``--gradcheck-html`` are given without a path.
DEFAULT_DIR = "reports"
#: The attribute of a ``TestReport`` that carries the plugin's JSON payload (survives xdist).
REPORT_ATTR = "gradcheck"


class MarkerError(ValueError):
    """A ``@pytest.mark.gradcheck`` marker with an unknown key or a bad value."""


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class Settings:
    """The run-wide options after command line > ini > default; ``None`` where unset."""

    json: Path | None = None
    html: Path | None = None
    mode: str | None = None
    seed: int | None = None

    def defaults(self) -> dict[str, Any]:
        """The check options these settings impose (below marker and call options)."""
        out: dict[str, Any] = {}
        if self.mode is not None:
            out["mode"] = self.mode
        if self.seed is not None:
            out["seed"] = self.seed
        return out


def _resolve_path(value: str, base: Path, default_name: str, root: Path) -> Path:
    """``""`` is the default folder; a folder (existing, or ending in a separator) gets the
    default file name; a relative path is taken from ``base``."""
    if value == "":
        return root / DEFAULT_DIR / default_name
    path = Path(os.path.expanduser(value))
    path = path if path.is_absolute() else base / path
    if value.endswith(("/", os.sep)) or path.is_dir():
        path = path / default_name
    return path


def _seed(value: str, source: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        seed = -1
    if seed < 0:
        raise pytest.UsageError(f"{source}={value!r}: expected a non-negative integer seed.")
    return seed


def resolve_settings(config: pytest.Config) -> Settings:
    """Read and validate the options (command line wins over ini); bad values are usage errors."""
    root = config.rootpath
    ini_base = config.inipath.parent if config.inipath else root
    cwd = config.invocation_params.dir
    ini_name = f"ini option in {config.inipath.name}" if config.inipath else "ini option"
    found: dict[str, tuple[str, str, Path]] = {}
    for key in ("json", "html", "mode", "seed"):
        cli = config.getoption(f"gradcheck_{key}", None)
        ini = str(config.getini(f"gradcheck_{key}") or "").strip()
        if cli is not None:
            found[key] = (str(cli), f"--gradcheck-{key}", cwd)
        elif ini:
            found[key] = (ini, f"gradcheck_{key} ({ini_name})", ini_base)
    paths: dict[str, Path] = {}
    for key, suffixes in (("json", (".html", ".htm")), ("html", (".json",))):
        if key in found:
            value, source, base = found[key]
            paths[key] = _resolve_path(value, base, f"gradcheck.{key}", root)
            if paths[key].suffix.lower() in suffixes:
                raise pytest.UsageError(
                    f"{source}={value!r} names a {paths[key].suffix} file for the {key.upper()} "
                    "report: were --gradcheck-json and --gradcheck-html swapped?"
                )
    if "json" in paths and paths.get("html") == paths["json"]:
        raise pytest.UsageError(
            f"--gradcheck-json and --gradcheck-html both write to {paths['json']}: "
            "give the JSON and the HTML report different paths."
        )
    mode = None
    if "mode" in found:
        mode, source, _ = found["mode"]
        if mode not in MODES:
            close = difflib.get_close_matches(mode, MODES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise pytest.UsageError(f"{source}={mode!r} is not a gradcheck mode{hint}: "
                                    f"choose one of {', '.join(MODES)}.")
    seed = _seed(found["seed"][0], found["seed"][1]) if "seed" in found else None
    return Settings(json=paths.get("json"), html=paths.get("html"), mode=mode, seed=seed)


# ----------------------------------------------------------------------------- the marker


def _is_tolerance(v: Any) -> bool:
    if isinstance(v, Mapping):
        return bool(v) and all(_is_tolerance(x) for x in v.values())
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _validate_marker_value(key: str, value: Any) -> Any:
    if key == "mode":
        if value not in MODES:
            raise MarkerError(f"mode={value!r}: expected one of {', '.join(MODES)}")
        return value
    if key == "references":
        refs = (value,) if isinstance(value, str) else value
        if not isinstance(refs, Sequence) or not refs or any(r not in REFERENCES for r in refs):
            raise MarkerError(f"references={value!r}: expected one or both of {REFERENCES}")
        return tuple(refs)
    if key in ("rtol", "atol"):
        if not _is_tolerance(value):
            raise MarkerError(f"{key}={value!r}: expected a non-negative float or {{dtype: float}}")
        return dict(value) if isinstance(value, Mapping) else float(value)
    # seed
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MarkerError(f"seed={value!r}: expected a non-negative int")
    return value


def marker_options(markers: Iterable[pytest.Mark]) -> dict[str, Any]:
    """Merge ``gradcheck`` markers given closest first (the closest wins) and validate them.

    Raises:
        MarkerError: a positional argument, an unknown key or a bad value; the message says
            which and lists the keys.
    """
    merged: dict[str, Any] = {}
    for mark in reversed(list(markers)):
        if mark.args:
            raise MarkerError(
                f"takes keyword options only, got positional {mark.args!r}; "
                f"keys are {', '.join(MARKER_KEYS)}"
            )
        for key, value in mark.kwargs.items():
            if key not in MARKER_KEYS:
                close = difflib.get_close_matches(key, MARKER_KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise MarkerError(f"unknown key {key!r}{hint}; keys are {', '.join(MARKER_KEYS)}")
            merged[key] = _validate_marker_value(key, value)
    return merged


# ----------------------------------------------------------------------------- records


@dataclass(slots=True)
class Entry:
    """One recorded outcome: a check result row, an error row or a flow row."""

    row: dict[str, Any]
    example: int | None = None


@dataclass(slots=True)
class TestRecord:
    """What one test recorded; ``example`` counts hypothesis examples seen so far."""

    __test__ = False  # not a pytest test class

    nodeid: str
    options: dict[str, Any] = field(default_factory=dict)
    hypothesis: bool = False
    entries: list[Entry] = field(default_factory=list)
    example: int = 0
    last_context: Any = None
    outcome: str = "passed"
    error: str | None = None
    falsifying: str | None = None

    def current_example(self) -> int | None:
        """The index of the running hypothesis example (``None`` outside ``@given``)."""
        hyp = sys.modules.get("hypothesis")
        if hyp is None or not hyp.currently_in_test_context():
            return None
        from hypothesis.control import current_build_context

        ctx = current_build_context()
        if ctx is not self.last_context:
            self.last_context = ctx
            self.example += 1
        return self.example


def _base_row(name: str, kind: str, verdict: str) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "name": name, "kind": kind, "verdict": verdict,
            "passed": verdict == "pass", "mode": None, "seed": None, "references": [],
            "notes": [], "options": {}, "leaves": []}


def _plain(value: Any) -> Any:
    """The JSON form of option values (tuples, dtype-keyed tolerance tables)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _as_float(value: Any) -> float:
    """A JSON number or a NaN/Inf written as text; anything else is NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def row_worst(row: Mapping[str, Any]) -> float:
    """The worst ``max_rel_err`` over a row's leaves (NaN counts as the worst; -1 for none)."""
    worst = -1.0
    for leaf in row.get("leaves") or ():
        err = _as_float(leaf.get("max_rel_err"))
        err = math.inf if math.isnan(err) and leaf.get("verdict") != "pass" else err
        if not math.isnan(err):
            worst = max(worst, err)
    return worst


class Recorder:
    """The ``gradcheck`` fixture: the checks of :mod:`gradcheck`, recorded and strict.

    Each call merges its options over the test's ``@pytest.mark.gradcheck`` options and the
    run-wide ``--gradcheck-mode`` / ``--gradcheck-seed`` (call > marker > command line > ini),
    records the outcome, and raises :class:`gradcheck.GradientMismatch` on a verdict other than
    ``"pass"``.  The fixture is session-scoped (it finds the running test through the session),
    so hypothesis ``@given`` tests use it without a ``function_scoped_fixture`` health check.
    """

    def __init__(self, session: GradcheckSession) -> None:
        self._session = session

    def __repr__(self) -> str:
        return "<gradcheck fixture>"

    def options(self, **call: Any) -> dict[str, Any]:
        """The options a check of the current test would run with, for ``call`` options."""
        record = self._session.current
        marker = record.options if record is not None else {}
        return {**self._session.settings.defaults(), **marker, **call}

    def _run(self, kind: str, name: str, run: Callable[[], Any], to_row: Callable[[Any], dict[str, Any]]
             ) -> Any:
        record = self._session.current
        example = record.current_example() if record is not None else None
        start = time.perf_counter()
        try:
            out = run()
        except Exception as exc:
            if record is not None:
                row = _base_row(name, kind, "error")
                row["error"] = f"{type(exc).__name__}: {exc}"
                row["seconds"] = round(time.perf_counter() - start, 4)
                record.entries.append(Entry(row, example))
            raise
        if record is not None:
            row = to_row(out)
            row["seconds"] = round(time.perf_counter() - start, 4)
            record.entries.append(Entry(row, example))
        return out

    def check_grad(self, fun: Callable[..., Any], grad: Callable[..., Any], params: Any, *args: Any,
                   **options: Any) -> CheckResult:
        """:func:`gradcheck.check_grad`, recorded; raises ``GradientMismatch`` unless it passes."""
        from gradcheck.check import check_grad

        opts = self.options(**options)
        name = str(opts.get("name") or getattr(fun, "__name__", "fun"))
        res: CheckResult = self._run("check_grad", name,
                                     lambda: check_grad(fun, grad, params, *args, **opts),
                                     _check_row)
        return res.raise_for_failure()

    def check_layer(self, layer: Any, params: Any, x: Any, **options: Any) -> CheckResult:
        """:func:`gradcheck.check_layer`, recorded; raises ``GradientMismatch`` unless it passes."""
        from gradcheck.check import check_layer

        opts = self.options(**options)
        name = str(opts.get("name") or type(layer).__name__)
        res: CheckResult = self._run("check_layer", name, lambda: check_layer(layer, params, x, **opts),
                                     _check_row)
        return res.raise_for_failure()

    def gradient_flow(self, model: Any, params: Any, x: Any, **options: Any) -> Any:
        """:func:`gradcheck.gradient_flow`, recorded as a ``gradient_flow`` row.

        Only ``seed`` and a float ``rtol`` are taken from the marker and the command line (the
        other check options mean nothing to a flow).  Raises ``GradientMismatch`` when the hand
        BPTT deltas disagree with autodiff.
        """
        from gradcheck.dynamics import gradient_flow

        inherited = {k: v for k, v in self.options().items()
                     if k == "seed" or (k == "rtol" and isinstance(v, float))}
        opts = {**inherited, **options}
        name = str(opts.get("name") or type(model).__name__)
        flow = self._run("gradient_flow", name, lambda: gradient_flow(model, params, x, **opts), _flow_row)
        if flow.rel_err.size and not flow.agree:
            from gradcheck.errors import GradientMismatch

            worst = float(max(flow.rel_err))
            raise GradientMismatch(
                f"gradient_flow {flow.name!r}: the hand deltas ∂L/∂h_t disagree with autodiff "
                f"(worst relative error {worst:.3g} > rtol={flow.rtol:.3g})"
            )
        return flow

    def record(self, result: CheckResult) -> CheckResult:
        """Record a result computed elsewhere (no raise): for tests that expect a failure."""
        record = self._session.current
        if record is not None:
            record.entries.append(Entry(_check_row(result), record.current_example()))
        return result


def _check_row(res: CheckResult) -> dict[str, Any]:
    return res.to_dict()


def _flow_row(flow: Any) -> dict[str, Any]:
    d: dict[str, Any] = flow.to_dict()
    verdict = "fail" if flow.rel_err.size and not flow.agree else "pass"
    row = _base_row(str(flow.name), "gradient_flow", verdict)
    row["flows"] = [d]
    return row


# ----------------------------------------------------------------------------- rows

#: Hypothesis's note naming the minimal failing input ("Failing test case" since 6.1xx).
_FALSIFYING = re.compile(
    r"^(?:Falsifying (?:explicit )?example|Failing test case): *(?P<call>.*)", re.DOTALL
)
#: The fixture's own argument in that note (a repr that says nothing about the failure).
_FIXTURE_ARG = re.compile(r"\s*\bgradcheck=<gradcheck fixture>,?")


def exception_notes(exc: BaseException | None) -> list[str]:
    """The ``__notes__`` of an exception and, for exception groups, of its members."""
    notes: list[str] = []
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        notes += [str(n) for n in getattr(e, "__notes__", ())]
        stack += list(getattr(e, "exceptions", ()))
    return notes


def falsifying_text(nodeid: str, notes: Sequence[str]) -> str | None:
    """The minimal falsifying example hypothesis printed, and how to reproduce it."""
    example = next((m.group("call").strip() for n in notes if (m := _FALSIFYING.match(n))), None)
    if example is None:
        return None
    example = _FIXTURE_ARG.sub("", example)
    blob = next((n.strip() for n in notes if "@reproduce_failure(" in n), None)
    call = re.sub(r"^[\w.]+\(", "@example(", example, count=1)
    how = [f"re-run: python -m pytest {nodeid!r} "
           "(hypothesis replays it from its example database, when enabled)",
           f"or pin it: {call}"]
    if blob:
        how.append(blob)
    return f"Falsifying example: {example}\n" + "\n".join(how)


def _aggregate(entries: Sequence[Entry]) -> dict[str, Any]:
    """One row for the entries of one check name across hypothesis examples."""
    bad = [e for e in entries if e.row["verdict"] != "pass"]
    chosen = bad[-1] if bad else max(entries, key=lambda e: row_worst(e.row))
    row = dict(chosen.row)
    row["examples"] = len({e.example for e in entries})
    row["examples_failed"] = len({e.example for e in bad})
    row["checks"] = len(entries)
    row["seconds"] = round(sum(float(e.row.get("seconds", 0.0)) for e in entries), 4)
    return row


def build_rows(record: TestRecord) -> list[dict[str, Any]]:
    """The rows of one test: one per check call, or one per check name for hypothesis tests
    (the failing minimal example when the test failed, else the worst example).

    A test that recorded nothing and did not pass gets one ``"error"`` row saying why.
    """
    nodeid = record.nodeid
    rows: list[dict[str, Any]]
    if record.hypothesis and any(e.example is not None for e in record.entries):
        groups: dict[str, list[Entry]] = {}
        for entry in record.entries:
            groups.setdefault(str(entry.row["name"]), []).append(entry)
        rows = [_aggregate(group) for group in groups.values()]
    else:
        rows = [dict(e.row) for e in record.entries]
    if not rows and record.outcome == "failed":
        row = _base_row(nodeid.rpartition("::")[2], "test", "error")
        row["error"] = record.error or "the test failed before any check ran"
        rows = [row]
    if record.falsifying:
        targets = [r for r in rows if r["verdict"] != "pass"] or rows
        for r in targets:
            r["falsifying"] = record.falsifying
    for r in rows:
        r["test"] = nodeid
        r["options"] = _plain(r.get("options", {}))
    return rows


def no_result_row(nodeid: str, why: str | None) -> dict[str, Any]:
    row = _base_row(nodeid.rpartition("::")[2], "test", "no result")
    row["error"] = why or "the test started but no result came back (crashed worker?)"
    row["test"] = nodeid
    return row


# ----------------------------------------------------------------------------- the session


@dataclass
class GradcheckSession:
    """All per-run state (kept in ``config.stash[SESSION_KEY]``)."""

    settings: Settings
    current: TestRecord | None = None
    #: node ids of tests that use the fixture or marker, in the order their setup was reported
    expected: dict[str, None] = field(default_factory=dict)
    #: rows per node id, as carried by the teardown reports
    rows_by_test: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: why a test produced no teardown report (the crash report of xdist)
    crashes: dict[str, str] = field(default_factory=dict)
    written: list[tuple[str, Path]] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)

    def open(self, nodeid: str, *, hypothesis: bool) -> TestRecord:
        self.current = TestRecord(nodeid, hypothesis=hypothesis)
        return self.current

    def close(self) -> TestRecord | None:
        record, self.current = self.current, None
        return record

    @staticmethod
    def payload(**data: Any) -> str:
        return json.dumps(data, default=str, allow_nan=False)

    def merge(self, report: pytest.TestReport) -> None:
        """Take what a (possibly remote) report carries; note crashes of expected tests."""
        raw = getattr(report, REPORT_ATTR, None)
        if isinstance(raw, str):
            data = json.loads(raw)
            if data.get("expected"):
                self.expected.setdefault(report.nodeid, None)
            if "rows" in data:
                self.rows_by_test[report.nodeid] = list(data["rows"])
        elif report.when not in ("setup", "call", "teardown") and report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = getattr(crash, "message", None) or str(report.longrepr).strip()
            self.crashes[report.nodeid] = message.splitlines()[-1] if message else "crashed"

    def rows(self) -> list[dict[str, Any]]:
        """Every row, ordered by node id (stable within a test), with ``no result`` rows."""
        out: list[dict[str, Any]] = []
        for nodeid in sorted({*self.expected, *self.rows_by_test}):
            if nodeid in self.rows_by_test:
                out += self.rows_by_test[nodeid]
            else:
                out.append(no_result_row(nodeid, self.crashes.get(nodeid)))
        return out

    def environment(self, config: pytest.Config) -> dict[str, Any]:
        workers = getattr(config.option, "numprocesses", None)
        return {
            "mode": self.settings.mode or "auto",
            "seed": self.settings.seed if self.settings.seed is not None else 0,
            "pytest": pytest.__version__,
            "workers": str(workers or 0),
            "rootdir": str(config.rootpath),
        }


def summary_lines(rows: Sequence[Mapping[str, Any]], *, worst: int = 5) -> list[str]:
    """The terminal summary: counts by verdict, then the worst leaves (failures first)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["verdict"])] = counts.get(str(row["verdict"]), 0) + 1
    order = ["pass", "fail", "inconclusive", "error", "no result"]
    shown = ", ".join(f"{counts[k]} {k}" for k in sorted(counts, key=lambda k: (
        order.index(k) if k in order else len(order), k)))
    tests = len({row.get("test") for row in rows})
    lines = [f"{len(rows)} checks in {tests} tests: {shown}"]
    leaves = []
    for row in rows:
        for leaf in row.get("leaves") or ():
            leaves.append((leaf.get("verdict") != "pass", _worst_key(leaf), row, leaf))
    leaves.sort(key=lambda t: (t[0], t[1]), reverse=True)
    if leaves:
        lines.append("worst leaves:")
    for _bad, err, row, leaf in leaves[:worst]:
        blame = f"  blame {leaf['blame']}" if leaf.get("blame") else ""
        diag = leaf.get("diagnosis") or {}
        kind = f" ({diag['kind']})" if diag.get("kind") else ""
        lines.append(f"  {leaf['verdict'].upper():<5} {row.get('test')} {row['name']} {leaf['name']}"
                     f"  max rel err {err:.2e}{blame}{kind}")
    for row in rows:
        if row["verdict"] in ("error", "no result"):
            error = str(row.get("error") or "").strip().splitlines() or [""]
            lines.append(f"  {row['verdict'].upper()} {row.get('test')}: {error[0]}")
    return lines


def _worst_key(leaf: Mapping[str, Any]) -> float:
    err = _as_float(leaf.get("max_rel_err"))
    return math.inf if math.isnan(err) else err


def properties(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """junitxml properties of a test: verdict and worst relative error of each check."""
    props = []
    for row in rows:
        props.append((f"gradcheck[{row['name']}].verdict", str(row["verdict"])))
        worst = row_worst(row)
        if worst >= 0:
            props.append((f"gradcheck[{row['name']}].max_rel_err", f"{worst:.3e}"))
    return props


SESSION_KEY = pytest.StashKey[GradcheckSession]()
