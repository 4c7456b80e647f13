"""The end of a run: its reports written, each on its own, and what the terminal says about them.

:func:`write_reports` builds the session document once and writes the JSON and the HTML report
independently (one failing does not stop the other), each atomically (a temporary file in the
same folder, then a rename: a crash never leaves half a report, and an older report stays whole
until the new one replaces it).  A target that another run wrote after this one started, or that
is no longer a gradcheck report, is left alone: the report goes next to it with the run id in
its name (:func:`gradcheck.report.targets.destination`).  Every failure is recorded with its
file and reason; :func:`failed_exitstatus` turns one into a failing exit status.

The report package is imported only here, when a report is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pytest

from gradcheck.session.merge import GradcheckSession

__all__ = ["WRITE_FAILED", "failed_exitstatus", "mark_started", "report_lines", "write_reports"]

#: The exit status of a run that would have passed but lost a report.
WRITE_FAILED = pytest.ExitCode.INTERNAL_ERROR


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def write_reports(state: GradcheckSession, *, environment: Mapping[str, Any], title: str,
                  run: Mapping[str, Any]) -> None:
    """Write the reports the settings ask for into ``state.written`` / ``state.write_errors``."""
    targets = [(kind, path) for kind, path in (("JSON", state.settings.json), ("HTML", state.settings.html))
               if path is not None]
    if not targets:
        return
    try:
        from gradcheck.report import session_document, write_html, write_json
        from gradcheck.report.targets import destination

        doc = session_document(state.rows(), environment=dict(environment), title=title, run=run)
    except Exception as exc:  # nothing to write: every asked-for report is lost, and says so
        state.write_errors += [(kind, path, _reason(exc)) for kind, path in targets]
        return
    writers = {"JSON": write_json, "HTML": write_html}
    for kind, path in targets:
        try:
            target, note = destination(path, kind.lower(), run_id=state.run_id, started=state.started)
            state.written.append((kind, writers[kind](doc, target), note))
        except Exception as exc:  # one report's failure must not cost the other
            state.write_errors.append((kind, path, _reason(exc)))


def mark_started(state: GradcheckSession, *, environment: Mapping[str, Any], title: str) -> None:
    """At the start of a run, an older gradcheck report at a target is moved aside to
    ``NAME.previous.SUFFIX`` (nothing is lost) and an empty placeholder marked ``incomplete``
    takes its place: a run that dies hard (a crash, ``kill -9``) then leaves a report that says
    so, not the older results looking current.  The run's own reports replace the placeholder
    at the end.  Failures here are not fatal: the end of the run tries again and reports."""
    targets = [(kind, path) for kind, path in (("JSON", state.settings.json), ("HTML", state.settings.html))
               if path is not None and path.is_file()]
    if not targets:
        return
    try:
        from gradcheck.report import session_document, write_html, write_json
        from gradcheck.report.targets import existing

        doc = session_document([], environment=dict(environment), title=title,
                               run=state.running_record())
        writers = {"JSON": write_json, "HTML": write_html}
        for kind, path in targets:
            found = existing(path, kind.lower())
            if found is None or not found.report:
                continue  # not ours to move: the end of the run decides where its report goes
            os.replace(path, path.with_name(f"{path.stem}.previous{path.suffix}"))
            writers[kind](doc, path)
    except Exception:  # best effort: write_reports at the end tries again and reports failures
        return


def failed_exitstatus(exitstatus: int) -> int:
    """The exit status after a report write failed: a run that would pass (0, or 5: no tests)
    exits :data:`WRITE_FAILED` (3, ``INTERNAL_ERROR``); a failing one keeps its status."""
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        return WRITE_FAILED
    return exitstatus


def report_lines(state: GradcheckSession, run: Mapping[str, Any] | None,
                 exitstatus: int | None = None) -> list[tuple[str, bool]]:
    """The terminal's lines about the reports, as (text, in red): where each went (and why not
    where asked), the run's status unless complete, each report lost and why, and the exit
    status that follows (``exitstatus``, when known)."""
    lines: list[tuple[str, bool]] = []
    for kind, path, note in state.written:
        lines.append((f"gradcheck {kind} report: {path}", False))
        if note is not None:
            lines.append((f"  not written to the asked-for path: {note}", True))
    if run is not None and not run.get("complete", True) and (state.written or state.write_errors):
        missing = (f"; {run['n_missing']} of {run.get('collected')} collected tests did not report"
                   if run.get("n_missing") and run.get("status") == "interrupted" else "")
        lines.append((f"gradcheck: this run is {run.get('status')} ({run.get('reason')}){missing}; "
                      "its reports say so", True))
    for kind, path, why in state.write_errors:
        lines.append((f"gradcheck could not write its {kind} report to {path}: {why}", True))
    if state.write_errors:
        status = (f"exit status {int(exitstatus)}" if exitstatus is not None
                  else f"exit status {int(WRITE_FAILED)} unless it already failed")
        lines.append((f"gradcheck: a report was not written, so the run fails ({status})", True))
    return lines
