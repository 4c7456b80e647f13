"""Reports: the session JSON document of a run and the self-contained HTML page rendered from it.

    doc = session_document([res.to_dict() for res in results])   # gradcheck.session/1
    write_json(doc, "reports/gradcheck.json")
    write_html(doc, "reports/gradcheck.html")
    doc = load("reports/gradcheck.json")        # also reads audit, result and flow files

Importing this package imports neither JAX nor matplotlib nor jinja2; rendering does, lazily.
``report/`` never computes gradients: it reads the schemas of :mod:`gradcheck.result` and
:mod:`gradcheck.dynamics` only.
"""

from gradcheck.report.document import (
    SESSION_SCHEMA,
    ReportFormatError,
    as_session,
    current_environment,
    load,
    session_document,
    write_json,
)
from gradcheck.report.html import render_html, write_html

__all__ = [
    "SESSION_SCHEMA",
    "ReportFormatError",
    "as_session",
    "current_environment",
    "load",
    "render_html",
    "session_document",
    "write_html",
    "write_json",
]
