"""The pytest plugin (entry point ``pytest11``): options, hooks and the ``gradcheck`` fixture.

Use the fixture in a test; a mismatch fails the test with a readable
:class:`gradcheck.GradientMismatch`, and every result is recorded::

    @pytest.mark.gradcheck(references=("numeric",), rtol=1e-6)
    def test_dense(gradcheck):
        gradcheck.check_layer(Dense(), params, x)          # also check_grad, gradient_flow

Options (command line > ini key > default), then the marker, then the call's own keywords:

=============================  ==================  =========================================
command line                   ini key             meaning
=============================  ==================  =========================================
``--gradcheck-json[=PATH]``    ``gradcheck_json``  write the session JSON (default
                                                   ``reports/gradcheck.json``)
``--gradcheck-html[=PATH]``    ``gradcheck_html``  write the HTML report (default
                                                   ``reports/gradcheck.html``)
``--gradcheck-mode=MODE``      ``gradcheck_mode``  ``auto``, ``full`` or ``directional``
``--gradcheck-seed=N``         ``gradcheck_seed``  the seed of every check
=============================  ==================  =========================================

No file is written unless asked for.  A PATH that is a folder (or ends in ``/``) gets the
default file name; relative paths are taken from the invocation folder (command line) or the
ini file's folder (ini).  Give a PATH with ``=``: in ``pytest --gradcheck-json tests/`` the
optional argument swallows ``tests/`` (as with pytest-cov's ``--cov``).  Bad or contradictory values
(an unknown mode, a negative seed, the same file for both reports, a ``.json`` HTML report) stop
the run with a ``pytest.UsageError`` that explains it.

The marker ``@pytest.mark.gradcheck(mode=..., references=..., rtol=..., atol=..., seed=...)``
sets per-test options (on a function, class or module; the closest wins); an unknown key or a bad
value makes the test error with a message naming it.

The fixture is session-scoped and finds the running test itself, so hypothesis ``@given`` tests
use it without the ``function_scoped_fixture`` health check; their checks are aggregated into
one row per check name (examples run, the worst or the failing minimal example, and how to
reproduce it).  Rows travel on the test reports, so pytest-xdist runs lose none; a test whose
worker crashed is a ``"no result"`` row.  Each test gets junitxml properties
``gradcheck[NAME].verdict`` and ``gradcheck[NAME].max_rel_err``.

This module is the shell: each step of a result's way lives in a module of
:mod:`gradcheck.session`, and the hooks call them in this order:

1. ``pytest_configure`` resolves the settings (:mod:`~gradcheck.session.settings`) into the
   run's :class:`~gradcheck.session.merge.GradcheckSession`, kept under
   ``config.stash[SESSION_KEY]``;
2. ``pytest_runtest_setup`` opens the test's :class:`~gradcheck.session.records.TestRecord`
   with its marker options (:mod:`~gradcheck.session.markers`);
3. the fixture (:class:`~gradcheck.session.recorder.Recorder`) appends each check's outcome;
4. ``pytest_runtest_makereport`` turns the record into rows (:mod:`~gradcheck.session.records`,
   the falsifying example of a hypothesis test from :mod:`~gradcheck.session.falsifying`)
   carried as JSON on the teardown report; ``pytest_runtest_logreport`` merges what reports
   carry (:mod:`~gradcheck.session.merge`), serial or on the xdist controller alike;
5. the session's end writes the reports and the terminal summary
   (:mod:`~gradcheck.session.summary`).

This module imports neither JAX nor a plotting library nor a template engine; the report
package is imported only when a report is written.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from gradcheck.options import MODES
from gradcheck.session.falsifying import exception_notes, falsifying_text
from gradcheck.session.markers import MarkerError, marker_options
from gradcheck.session.merge import REPORT_ATTR, SESSION_KEY, GradcheckSession
from gradcheck.session.recorder import Recorder
from gradcheck.session.records import build_rows
from gradcheck.session.settings import resolve_settings
from gradcheck.session.summary import properties, summary_lines

__all__ = ["gradcheck"]

_MERGER = "gradcheck-merger"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``--gradcheck-*`` options and their ``gradcheck_*`` ini keys (the command line wins)."""
    group = parser.getgroup("gradcheck", "gradient checks (gradcheck)")
    group.addoption("--gradcheck-json", dest="gradcheck_json", metavar="PATH", nargs="?", const="",
                    default=None, help="write the session's gradcheck results as JSON to PATH "
                    "(default reports/gradcheck.json; a folder gets gradcheck.json)")
    group.addoption("--gradcheck-html", dest="gradcheck_html", metavar="PATH", nargs="?", const="",
                    default=None, help="write the self-contained HTML agreement report to PATH "
                    "(default reports/gradcheck.html; a folder gets gradcheck.html)")
    group.addoption("--gradcheck-mode", dest="gradcheck_mode", metavar="MODE", default=None,
                    help=f"default check mode, one of {', '.join(MODES)} (a marker or call overrides it)")
    group.addoption("--gradcheck-seed", dest="gradcheck_seed", metavar="N", default=None,
                    help="default seed of every check (a marker or call overrides it)")
    parser.addini("gradcheck_json", "gradcheck: write the session JSON to this path", default="")
    parser.addini("gradcheck_html", "gradcheck: write the HTML report to this path", default="")
    parser.addini("gradcheck_mode", f"gradcheck: default mode ({', '.join(MODES)})", default="")
    parser.addini("gradcheck_seed", "gradcheck: default seed of every check", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gradcheck(mode=None, references=None, rtol=None, atol=None, seed=None): options of the "
        "gradcheck fixture's checks in this test (a call's own keywords override them)",
    )
    state = GradcheckSession(resolve_settings(config))
    config.stash[SESSION_KEY] = state
    config.pluginmanager.register(_Merger(state), _MERGER)


def pytest_unconfigure(config: pytest.Config) -> None:
    merger = config.pluginmanager.get_plugin(_MERGER)
    if merger is not None:
        config.pluginmanager.unregister(merger)


@pytest.fixture(scope="session")
def gradcheck(request: pytest.FixtureRequest) -> Recorder:
    """``check_grad``, ``check_layer`` and ``gradient_flow`` that record their results and fail
    the test on a mismatch (options: call > ``@pytest.mark.gradcheck`` > command line > ini)."""
    return Recorder(request.config.stash[SESSION_KEY])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    session = item.config.stash[SESSION_KEY]
    session.close()
    markers = list(item.iter_markers("gradcheck"))
    if "gradcheck" not in getattr(item, "fixturenames", ()) and not markers:
        return
    obj = getattr(item, "obj", None)
    record = session.open(item.nodeid, hypothesis=bool(getattr(obj, "is_hypothesis_test", False)))
    try:
        record.options = marker_options(markers)
    except MarkerError as exc:
        pytest.fail(f"@pytest.mark.gradcheck on {item.nodeid}: {exc}", pytrace=False)


def _failure(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None) or report.longreprtext.strip()
    return str(message).strip() or f"the test failed in {report.when}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    session = item.config.stash.get(SESSION_KEY, None)
    record = session.current if session is not None else None
    if session is None or record is None or record.nodeid != item.nodeid:
        return (yield)
    rows: list[dict[str, Any]] = []
    if call.when == "teardown":
        rows = build_rows(record)
        item.user_properties.extend(properties(rows))
    report = yield
    if report.failed and call.when in ("setup", "call") and record.outcome != "failed":
        record.outcome, record.error = "failed", _failure(report)
        if record.hypothesis and call.excinfo is not None:
            record.falsifying = falsifying_text(item.nodeid, exception_notes(call.excinfo.value))
    if call.when == "setup":
        setattr(report, REPORT_ATTR, session.payload(expected=True))
    elif call.when == "teardown":
        setattr(report, REPORT_ATTR, session.payload(rows=rows))
        session.close()
    return report


class _Merger:
    """Merges what each test report carries, in a serial run and on the xdist controller alike
    (``pytest_runtest_logreport`` gets no ``config``, so the session is bound here)."""

    def __init__(self, state: GradcheckSession) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.state.merge(report)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = config.stash.get(SESSION_KEY, None)
    if state is None or _is_worker(config):
        return
    settings = state.settings
    if settings.json is None and settings.html is None:
        return
    try:
        from gradcheck.report import session_document, write_html, write_json

        doc = session_document(state.rows(), environment=state.environment(config),
                               title=f"gradcheck: {config.rootpath.name}")
        if settings.json is not None:
            state.written.append(("JSON", write_json(doc, settings.json)))
        if settings.html is not None:
            state.written.append(("HTML", write_html(doc, settings.html)))
    except Exception as exc:  # a report problem must not hide the test results
        state.write_errors.append(f"{type(exc).__name__}: {exc}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is None or _is_worker(config):
        return
    rows = state.rows()
    if not rows and not state.written and not state.write_errors:
        return
    terminalreporter.write_sep("-", "gradcheck")
    for line in summary_lines(rows):
        terminalreporter.write_line(line)
    for kind, path in state.written:
        terminalreporter.write_line(f"gradcheck {kind} report: {path}")
    for error in state.write_errors:
        terminalreporter.write_line(f"gradcheck could not write its report: {error}", red=True)
