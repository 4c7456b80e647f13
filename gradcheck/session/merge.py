"""The plugin's per-run state: the running test's record, and the rows merged from test reports.

Rows travel as JSON on the test reports (attribute :data:`REPORT_ATTR`): the setup report of
every test that uses the fixture or the marker carries ``{"expected": true}``, its teardown
report ``{"rows": [...]}``.  :meth:`GradcheckSession.merge` takes them the same way in a serial
run and on the pytest-xdist controller, so no row is lost, and a test whose worker crashed (a
setup report, no teardown report) becomes a ``"no result"`` row.

The state also knows its run: a run id (uuid4 hex) and start time, made when the plugin is
configured, the node ids collected (serial collection, or what xdist workers collected) and those
that finished (a teardown report, or a crash report); :meth:`GradcheckSession.run_record` turns
them into the report's ``run`` record, ``"complete"``, ``"interrupted"`` or ``"incomplete"``.
Nothing here imports JAX, hypothesis or a template engine.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gradcheck.session.records import TestRecord, no_result_row
from gradcheck.session.settings import Settings

__all__ = ["REPORT_ATTR", "SESSION_KEY", "GradcheckSession"]

#: The attribute of a ``TestReport`` that carries the plugin's JSON payload (survives xdist).
REPORT_ATTR = "gradcheck"
#: Node ids listed at most in a run record's ``missing``.
MAX_MISSING = 100
_PHASES = ("setup", "call", "teardown")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


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
    #: the reports written: kind ("JSON", "HTML"), path, and a note when not the asked-for path
    written: list[tuple[str, Path, str | None]] = field(default_factory=list)
    #: the reports that could not be written: kind, the asked-for path, why
    write_errors: list[tuple[str, Path, str]] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: when the run started (seconds since the epoch)
    started: float = field(default_factory=time.time)
    #: node ids of the tests collected to run (after deselection)
    collected: dict[str, None] = field(default_factory=dict)
    #: node ids of the tests that reported their end (teardown, or a crash)
    finished: set[str] = field(default_factory=set)

    def open(self, nodeid: str, *, hypothesis: bool) -> TestRecord:
        """Start the record of a test; the fixture's checks append to it until :meth:`close`."""
        self.current = TestRecord(nodeid, hypothesis=hypothesis)
        return self.current

    def close(self) -> TestRecord | None:
        """End the running test's record (if any) and return it."""
        record, self.current = self.current, None
        return record

    @staticmethod
    def payload(**data: Any) -> str:
        """What a report carries: strict JSON, since xdist ships reports between processes."""
        return json.dumps(data, default=str, allow_nan=False)

    def merge(self, report: pytest.TestReport) -> None:
        """Take what a (possibly remote) report carries; note crashes of expected tests."""
        if report.when == "teardown" or (report.when not in _PHASES and report.failed):
            self.finished.add(report.nodeid)
        raw = getattr(report, REPORT_ATTR, None)
        if isinstance(raw, str):
            data = json.loads(raw)
            if data.get("expected"):
                self.expected.setdefault(report.nodeid, None)
            if "rows" in data:
                self.rows_by_test[report.nodeid] = list(data["rows"])
        elif report.when not in _PHASES and report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = getattr(crash, "message", None) or str(report.longrepr).strip()
            self.crashes[report.nodeid] = message.splitlines()[-1] if message else "crashed"

    def collect(self, nodeids: Iterable[str]) -> None:
        """Note tests collected to run (called once serially, once per xdist worker)."""
        self.collected.update(dict.fromkeys(nodeids))

    def run_record(self, *, exitstatus: int, stopped: str | None = None) -> dict[str, Any]:
        """The report's ``run`` record: id, status and why, the tests that never reported.

        Args:
            exitstatus: the session's exit status so far (``INTERRUPTED`` marks an interrupt).
            stopped: why the session stopped early (``session.shouldstop``/``shouldfail``:
                ``-x``, ``--maxfail``), or ``None``.
        """
        missing = [nodeid for nodeid in self.collected if nodeid not in self.finished]
        reason: str | None = None
        if stopped or exitstatus == pytest.ExitCode.INTERRUPTED:
            status, reason = "interrupted", stopped or "KeyboardInterrupt or pytest.exit"
        elif missing:
            status = "incomplete"
            reason = f"{len(missing)} of {len(self.collected)} collected tests never reported"
        else:
            status = "complete"
        return {"id": self.run_id, "status": status, "complete": status == "complete",
                "reason": reason, "started": _iso(self.started), "finished": _iso(time.time()),
                "collected": len(self.collected), "n_missing": len(missing),
                "missing": missing[:MAX_MISSING]}

    def running_record(self) -> dict[str, Any]:
        """The ``run`` record of a placeholder report written when the run starts: it stays
        ``incomplete`` only if the run dies before its real reports replace it."""
        return {"id": self.run_id, "status": "incomplete", "complete": False,
                "reason": (f"this run started at {_iso(self.started)} and never finished (it "
                           "crashed or was killed); the report it replaced is kept beside it as "
                           "*.previous.*"),
                "started": _iso(self.started), "finished": None, "collected": 0, "n_missing": 0,
                "missing": []}

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
        """The run's environment for the session report (mode, seed, pytest, workers, rootdir)."""
        workers = getattr(config.option, "numprocesses", None)
        return {
            "mode": self.settings.mode or "auto",
            "seed": self.settings.seed if self.settings.seed is not None else 0,
            "pytest": pytest.__version__,
            "workers": str(workers or 0),
            "rootdir": str(config.rootpath),
        }


SESSION_KEY = pytest.StashKey[GradcheckSession]()
