"""The pytest plugin (entry point ``pytest11``): options, hooks and the ``gradcheck`` fixture.

Use the fixture in a test; a mismatch fails the test with a readable
:class:`gradcheck.GradientMismatch`, and every result is recorded::

    @pytest.mark.gradcheck(references=("numeric",), rtol=1e-6)
    def test_dense(gradcheck):
        gradcheck.check_layer(Dense(), params, x)          # also check_grad, gradient_flow

Options a project sets once, in its ini file or on the command line:

=============================  ==================  =========================================
command line                   ini key             meaning
=============================  ==================  =========================================
``--gradcheck-json[=PATH]``    ``gradcheck_json``  write the session JSON (default
                                                   ``reports/gradcheck.json``)
``--gradcheck-html[=PATH]``    ``gradcheck_html``  write the HTML report (default
                                                   ``reports/gradcheck.html``)
``--gradcheck-mode=MODE``      ``gradcheck_mode``  ``auto``, ``full`` or ``directional``
``--gradcheck-seed=N``         ``gradcheck_seed``  the seed of every check
``--gradcheck-rtol=RTOL``      ``gradcheck_rtol``  the relative tolerance of every check, for
                                                   every dtype (a positive float, e.g. 1e-6)
``--gradcheck-atol=ATOL``      ``gradcheck_atol``  the absolute tolerance of every check, for
                                                   every dtype (a positive float, e.g. 1e-12)
``--gradcheck-jax-twin=WORD``  ``gradcheck_jax_    ``auto`` (default) or ``off``: build the
                               twin``              automatic JAX twin of numpy forwards
=============================  ==================  =========================================

A check's options come from, highest first: the call's own keywords
(``gradcheck.check_grad(..., rtol=1e-4)``), the closest ``@pytest.mark.gradcheck(rtol=...)``
marker (function, then class, then module), the command line, the ini key, gradcheck's default
(for ``rtol``/``atol``: the dtype table and the measured noise floor of
:mod:`gradcheck.tolerance`).  Each level replaces the whole value of the one below: a marker's
``rtol={"float32": 1e-3}`` table replaces ``--gradcheck-rtol`` for every dtype, and dtypes it
leaves out fall back to the default table, not to the command line.  ``gradient_flow`` takes only
``seed`` and a number ``rtol`` from these levels.

No file is written unless asked for.  A PATH that is a folder (or ends in ``/``) gets the
default file name; relative paths are taken from the invocation folder (command line) or the
ini file's folder (ini).  Give a PATH with ``=``: in ``pytest --gradcheck-json tests/`` the
optional argument swallows ``tests/`` (as with pytest-cov's ``--cov``).  Bad or contradictory
values (an unknown mode, a negative seed, a tolerance that is not a positive float, the same file
for both reports, a ``.json`` HTML report) stop the run with a ``pytest.UsageError`` that
explains it, and so does a PATH that names anything but a new file or a gradcheck report of
that kind: a Python file (``pytest --gradcheck-html tests/test_rnn.py`` would have taken the
test file as the PATH), a node id, a file pytest collects, or an existing file that is not a
gradcheck JSON report (a ``"schema"`` starting with ``"gradcheck."``) or HTML report (its
``<meta name="generator" content="gradcheck …">`` tag).

Reports are written at the end of the run, each on its own and atomically (a temporary file,
then a rename), so an older report stays whole until the new one replaces it.  Each carries the
run's id and status (``run`` in the JSON, ``<meta name="gradcheck-run">`` in the HTML):
``"complete"``, ``"interrupted"`` (Ctrl-C, ``-x``, ``--maxfail``) or ``"incomplete"`` (a collected
test never reported); the HTML page shows a banner unless complete.  A target that another run
wrote after this one started is left alone: this run's report goes next to it as
``gradcheck-<run id[:8]>.json`` (or ``.html``) and the terminal says so.  A report that cannot be
written is named in the terminal with the reason and fails the run: exit status 3
(``ExitCode.INTERNAL_ERROR``) for a run that would otherwise exit 0 (or 5, no tests); a run that
already fails keeps its status.

The marker ``@pytest.mark.gradcheck(mode=..., references=..., rtol=..., atol=..., seed=..., jax_twin=...)``
sets per-test options (on a function, class or module; the closest wins); an unknown key or a bad
value makes the test error with a message naming it.

The fixture is session-scoped and finds the running test itself, so hypothesis ``@given`` tests
use it without the ``function_scoped_fixture`` health check; their checks are aggregated into
one row per check name (examples run, the worst or the failing minimal example, and how to
reproduce it).  Each row carries its test's pytest outcome (``test_outcome``); a check that passed
in a test that failed is marked so in the terminal and the HTML.  Rows travel on the test
reports, so pytest-xdist runs lose none; a test whose worker crashed is a ``"no result"`` row.
Each test gets junitxml properties ``gradcheck[NAME].verdict`` and ``gradcheck[NAME].max_rel_err``.

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
5. the session's end writes the reports (:mod:`~gradcheck.session.output`) and the terminal
   summary (:mod:`~gradcheck.session.summary`).

This module imports neither JAX nor a plotting library nor a template engine; the report
package is imported only when a report is asked for.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from gradcheck.options import MODES
from gradcheck.session.falsifying import exception_notes, falsifying_text
from gradcheck.session.markers import MarkerError, marker_options
from gradcheck.session.merge import REPORT_ATTR, SESSION_KEY, GradcheckSession
from gradcheck.session.output import failed_exitstatus, mark_started, report_lines, write_reports
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
    group.addoption("--gradcheck-jax-twin", dest="gradcheck_jax_twin", metavar="auto|off",
                    default=None, help="whether checks build the automatic JAX twin of plain numpy "
                    "forwards (default auto; a marker or call overrides it)")
    group.addoption("--gradcheck-rtol", dest="gradcheck_rtol", metavar="RTOL", default=None,
                    help="default relative tolerance of every check, a positive float such as "
                    "1e-6 (a marker or call overrides it)")
    group.addoption("--gradcheck-atol", dest="gradcheck_atol", metavar="ATOL", default=None,
                    help="default absolute tolerance of every check, a positive float such as "
                    "1e-12 (a marker or call overrides it)")
    parser.addini("gradcheck_seed", "gradcheck: default seed of every check", default="")
    parser.addini("gradcheck_jax_twin", "gradcheck: auto or off, the automatic JAX twin of numpy "
                  "forwards", default="")
    parser.addini("gradcheck_rtol", "gradcheck: default relative tolerance of every check "
                  "(a positive float)", default="")
    parser.addini("gradcheck_atol", "gradcheck: default absolute tolerance of every check "
                  "(a positive float)", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gradcheck(mode=None, references=None, rtol=None, atol=None, seed=None, jax_twin=None): "
        "options of the gradcheck fixture's checks in this test (a call's own keywords override "
        "them; they override --gradcheck-* options and gradcheck_* ini keys)",
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
    report = yield
    if report.failed and call.when in ("setup", "call") and record.outcome != "failed":
        record.outcome, record.error = "failed", _failure(report)
        if record.hypothesis and call.excinfo is not None:
            record.falsifying = falsifying_text(item.nodeid, exception_notes(call.excinfo.value))
    record.note(call.when, report.outcome, xfail=hasattr(report, "wasxfail"),
                failure=_failure(report) if report.failed else None)
    if call.when == "setup":
        setattr(report, REPORT_ATTR, session.payload(expected=True))
    elif call.when == "teardown":
        # built after the teardown report, so that a teardown error is the row's test outcome
        rows = build_rows(record)
        props = properties(rows)
        item.user_properties.extend(props)
        report.user_properties.extend(props)  # the report copied the item's list already
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

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.state.collect(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.state.collect(ids)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


#: The run record and the exit status the session ended with, for the terminal summary.
_END_KEY = pytest.StashKey[tuple[dict[str, Any], int]]()


def _stopped(session: pytest.Session) -> str | None:
    """Why the session stopped early (``-x``, ``--maxfail``, ...), or ``None``."""
    why = session.shouldstop or session.shouldfail
    return why if isinstance(why, str) else ("stopped early" if why else None)


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    state = config.stash.get(SESSION_KEY, None)
    if state is None or _is_worker(config):
        return
    mark_started(state, environment=state.environment(config),
                 title=f"gradcheck: {config.rootpath.name}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = config.stash.get(SESSION_KEY, None)
    if state is None or _is_worker(config):
        return
    run = state.run_record(exitstatus=int(session.exitstatus), stopped=_stopped(session))
    write_reports(state, environment=state.environment(config), run=run,
                  title=f"gradcheck: {config.rootpath.name}")
    if state.write_errors:  # a lost report fails the run; the terminal says which and why
        session.exitstatus = failed_exitstatus(int(session.exitstatus))
    config.stash[_END_KEY] = (run, int(session.exitstatus))


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
    run, exitstatus = config.stash.get(_END_KEY, (None, None))
    for text, red in report_lines(state, run, exitstatus):
        terminalreporter.write_line(text, red=red)
