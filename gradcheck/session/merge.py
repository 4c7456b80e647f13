"""The plugin's per-run state: the running test's record, and the rows merged from test reports.

Rows travel as JSON on the test reports (attribute :data:`REPORT_ATTR`): the setup report of
every test that uses the fixture or the marker carries ``{"expected": true}``, its teardown
report ``{"rows": [...]}``.  :meth:`GradcheckSession.merge` takes them the same way in a serial
run and on the pytest-xdist controller, so no row is lost, and a test whose worker crashed (a
setup report, no teardown report) becomes a ``"no result"`` row.  Nothing here imports JAX,
hypothesis or a template engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gradcheck.session.records import TestRecord, no_result_row
from gradcheck.session.settings import Settings

__all__ = ["REPORT_ATTR", "SESSION_KEY", "GradcheckSession"]

#: The attribute of a ``TestReport`` that carries the plugin's JSON payload (survives xdist).
REPORT_ATTR = "gradcheck"


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
