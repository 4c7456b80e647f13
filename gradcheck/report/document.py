"""The session document: one versioned JSON record of every check of a run, and how it is stored.

A session document is::

    {"schema": "gradcheck.session/1", "title": str, "environment": {str: str},
     "counts": {verdict: int}, "rows": [row, ...], "study": study,      # "study" optional
     "run": run}                                                        # "run" optional

where each row is a :meth:`gradcheck.CheckResult.to_dict` record (``gradcheck.result/1``),
optionally extended with ``test`` (a pytest node id), ``family``, ``module``, ``seconds``,
``examples`` (hypothesis examples run), ``falsifying`` (text), ``error`` (text; the row's verdict
is then ``"error"``), ``flows`` (a list of :meth:`gradcheck.FlowResult.to_dict` records),
``test_outcome`` (the pytest outcome of the test: ``"passed"``, ``"failed"``, ``"error"``,
``"skipped"``, ``"xfailed"``, ``"xpassed"``, or ``"crashed"`` / ``"unfinished"`` for a test that
never reported) and ``test_failure`` (text: why the test failed although the row's check passed).
``study``, when present, is a gradient-flow study (:meth:`gradcheck.study.Study.to_dict`,
``gradcheck.study/1``), such as ``gradcheck audit`` runs.

``run``, when present (the pytest plugin writes it), says which run wrote the document and
whether it is a complete record::

    {"id": str,                  # uuid4 hex of the run; the HTML page carries it too
     "status": "complete" | "interrupted" | "incomplete", "complete": bool,
     "reason": str | None,       # why it is not complete
     "started": str, "finished": str,                    # ISO 8601, UTC
     "collected": int, "n_missing": int, "missing": [nodeid, ...]}   # tests that never reported

``"interrupted"``: the session stopped early (Ctrl-C, ``-x`` / ``--maxfail``, ``pytest.exit``);
``"incomplete"``: it ran to its end but some collected test never reported.

:func:`load` also reads a ``gradcheck audit`` file (``gradcheck.audit/1``, keeping its ``study``),
a single check result (``gradcheck.result/1``), a single flow (``gradcheck.flow/1``) and a
study on its own (``gradcheck.study/1``), converting them.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from gradcheck.errors import GradcheckError

__all__ = [
    "SESSION_SCHEMA",
    "ReportFormatError",
    "as_session",
    "current_environment",
    "load",
    "session_document",
    "write_json",
    "write_text",
]

#: Bumped whenever a field of the session document changes meaning or disappears.
SESSION_SCHEMA = "gradcheck.session/1"
_AUDIT_SCHEMA = "gradcheck.audit/1"
_RESULT_SCHEMA = "gradcheck.result/1"
_FLOW_SCHEMA = "gradcheck.flow/1"
_STUDY_SCHEMA = "gradcheck.study/1"
_KNOWN = (SESSION_SCHEMA, _AUDIT_SCHEMA, _RESULT_SCHEMA, _FLOW_SCHEMA, _STUDY_SCHEMA)


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Read once at import: mkstemp makes 0600 files, a report is written with the usual 0666 & ~umask.
_FILE_MODE = 0o666 & ~_read_umask()


class ReportFormatError(GradcheckError, ValueError):
    """A file or document is not one of the JSON schemas the report reads."""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def current_environment() -> dict[str, str]:
    """Versions, platform and time of this process (package versions read without importing)."""
    return {
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "jax": _version("jax"),
        "gradcheck": _version("gradcheck"),
        "platform": platform.platform(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        verdict = str(row.get("verdict", "unknown"))
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def session_document(rows: list[dict[str, Any]], *, environment: dict[str, Any] | None = None,
                     title: str = "gradcheck", study: Mapping[str, Any] | None = None,
                     run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The session document of ``rows``; ``environment`` entries win over the detected ones.

    Args:
        rows: result dicts (:meth:`gradcheck.CheckResult.to_dict`), optionally extended with
            ``test``, ``family``, ``examples``, ``falsifying``, ``error`` and ``flows``.
        environment: entries to record (seed, mode, ...); versions, platform and time are filled in.
        title: the page title.
        study: a gradient-flow study record (``gradcheck.study/1``) to carry along, or ``None``.
        run: the run record (id, status, ...; see the module docstring), or ``None``.

    Raises:
        ReportFormatError: ``rows`` is not a list of dicts, ``study`` is not a study record, or
            ``run`` is not a dict with a text ``id``.

    Examples:
        >>> doc = session_document([{"name": "f", "verdict": "pass", "leaves": []}], title="demo")
        >>> doc["schema"], doc["counts"], sorted(doc["environment"])[:3]
        ('gradcheck.session/1', {'pass': 1}, ['gradcheck', 'jax', 'numpy'])
    """
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise ReportFormatError(f"rows must be a list of result dicts, got {type(rows).__name__}")
    env: dict[str, Any] = {**current_environment(), **(environment or {})}
    doc = {"schema": SESSION_SCHEMA, "title": str(title), "environment": env,
           "counts": _counts(rows), "rows": rows}
    if study is not None:
        doc["study"] = _study(study)
    if run is not None:
        if not (isinstance(run, Mapping) and isinstance(run.get("id"), str)):
            raise ReportFormatError(f"a run record must be a dict with a text 'id', got {run!r}")
        doc["run"] = dict(run)
    return doc


def _study(study: Any) -> dict[str, Any]:
    if not (isinstance(study, Mapping) and study.get("schema") == _STUDY_SCHEMA
            and isinstance(study.get("rows"), list)):
        got = f"schema {study.get('schema')!r}" if isinstance(study, Mapping) else type(study).__name__
        raise ReportFormatError(f"a study must be a {_STUDY_SCHEMA} record with a 'rows' list, got {got}")
    return dict(study)


def _from_audit(doc: Mapping[str, Any]) -> dict[str, Any]:
    results = doc.get("results")
    if not isinstance(results, list):
        raise ReportFormatError("a gradcheck.audit/1 document needs a 'results' list")
    env = dict(doc.get("environment") or {})
    env.setdefault("modules", ", ".join(map(str, doc.get("modules", []))))
    if "seconds" in doc:
        env.setdefault("seconds", doc["seconds"])
    return session_document(results, environment=env, title="gradcheck audit", study=doc.get("study"))


def _flow_row(flow: Mapping[str, Any]) -> dict[str, Any]:
    verdict = "pass" if flow.get("agree", True) else "fail"
    return {"name": str(flow.get("name", "gradient flow")), "kind": "gradient_flow",
            "verdict": verdict, "passed": verdict == "pass", "leaves": [], "flows": [dict(flow)]}


def as_session(doc: Any) -> dict[str, Any]:
    """Convert any known document to a session document (a session document is returned as is).

    Raises:
        ReportFormatError: ``doc`` is not a dict with a known ``schema``.
    """
    schema = doc.get("schema") if isinstance(doc, Mapping) else None
    if schema == SESSION_SCHEMA:
        if not isinstance(doc.get("rows"), list):
            raise ReportFormatError("a gradcheck.session/1 document needs a 'rows' list")
        if doc.get("study") is not None:
            _study(doc["study"])
        return dict(doc)
    if schema == _AUDIT_SCHEMA:
        return _from_audit(doc)
    if schema == _RESULT_SCHEMA:
        return session_document([dict(doc)], title=f"gradcheck: {doc.get('name', '')}")
    if schema == _FLOW_SCHEMA:
        return session_document([_flow_row(doc)], title=f"gradient flow: {doc.get('name', '')}")
    if schema == _STUDY_SCHEMA:
        return session_document([], title="gradient-flow study", study=doc)
    got = f"schema {schema!r}" if isinstance(doc, Mapping) else f"a JSON {type(doc).__name__}"
    raise ReportFormatError(f"expected a document with schema one of {list(_KNOWN)}, got {got}")


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a session, audit, result, flow or study JSON file as a session document.

    Raises:
        FileNotFoundError: no such file.
        ReportFormatError: the file is not JSON, or not one of the known schemas.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportFormatError(f"{path} is not JSON: {exc}") from exc
    try:
        return as_session(doc)
    except ReportFormatError as exc:
        raise ReportFormatError(f"{path}: {exc}") from None


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(doc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``doc`` as JSON atomically (NaN and Inf are refused: the schemas write them as text)."""
    return write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", path)
