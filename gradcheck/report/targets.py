"""Where a report may go: never over a file that is not a gradcheck report of the same kind.

A report replaces only what is already a gradcheck report of its kind:

* a JSON report overwrites a JSON document whose ``"schema"`` starts with ``"gradcheck."``;
* an HTML report overwrites a file whose head has :data:`HTML_MARKER` (the page's
  ``<meta name="generator" content="gradcheck …">`` tag);

and never a Python file, a pytest node id, a file name pytest collects, a folder or anything
that is not a regular file (:func:`refusal` says why).  :func:`destination` is asked when a
report is about to be written: a target that another run (another run id, written after this
one started) or anything else took over in the meantime is left alone, and the report goes
next to it as ``NAME-<run id[:8]>.SUFFIX`` instead.

Nothing here imports JAX, a plotting library or a template engine.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

__all__ = ["HTML_MARKER", "RUN_META", "Existing", "aside", "destination", "existing", "refusal"]

#: The start of the generator tag every gradcheck HTML page has in its ``<head>``.
HTML_MARKER = '<meta name="generator" content="gradcheck'
#: The name of the ``<meta>`` tag that carries a page's run id.
RUN_META = "gradcheck-run"
_RUN_ID = re.compile(r'<meta name="' + RUN_META + r'" content="([0-9A-Za-z_-]{1,64})"')
#: How much of an HTML file is read to find its marker and run id (both are in the head).
_HEAD = 16384
#: Suffixes of files that are code, whatever the report kind.
_SOURCE_SUFFIXES = (".py", ".pyi", ".pyw", ".pyx", ".pxd", ".pyc")
#: Suffixes that name the other kind of report.
_WRONG_SUFFIXES = {"json": (".html", ".htm"), "html": (".json",)}
_WHAT = {"json": 'no "schema" starting with "gradcheck."',
         "html": f"no {HTML_MARKER} …> tag"}


@dataclass(frozen=True, slots=True)
class Existing:
    """What is at a report path: a gradcheck report of that kind or not, its run id, its mtime."""

    report: bool
    run_id: str | None
    mtime: float


def _json_report(path: Path) -> tuple[bool, str | None]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False, None
    if not (isinstance(doc, dict) and str(doc.get("schema", "")).startswith("gradcheck.")):
        return False, None
    run = doc.get("run")
    run_id = run.get("id") if isinstance(run, dict) else None
    return True, str(run_id) if run_id is not None else None


def _html_report(path: Path) -> tuple[bool, str | None]:
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD).decode("utf-8", errors="replace")
    except OSError:
        return False, None
    if HTML_MARKER not in head:
        return False, None
    found = _RUN_ID.search(head)
    return True, found.group(1) if found else None


def existing(path: Path, kind: str) -> Existing | None:
    """What is at ``path`` (``kind`` is ``"json"`` or ``"html"``); ``None`` when nothing is."""
    try:
        stat = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return Existing(False, None, stat.st_mtime)
    report, run_id = (_json_report if kind == "json" else _html_report)(path)
    return Existing(report, run_id, stat.st_mtime)


def refusal(path: Path, kind: str, *, collected: Iterable[str] = ()) -> str | None:
    """Why a ``kind`` report must not be written to ``path`` (a phrase that follows the path),
    or ``None`` when it may.

    Args:
        path: the report's path.
        kind: ``"json"`` or ``"html"``.
        collected: file-name patterns pytest collects (``python_files``, doctest globs).
    """
    text = str(path)
    if "::" in text:
        return "looks like a pytest node id (a test to run), not a report file"
    suffix = path.suffix.lower()
    if suffix in _SOURCE_SUFFIXES:
        return f"is a Python file ({suffix}), not a gradcheck {kind.upper()} report"
    if suffix in _WRONG_SUFFIXES[kind]:
        return f"ends in {suffix}, not the name of a gradcheck {kind.upper()} report"
    pattern = next((p for p in collected if fnmatch(path.name, p)), None)
    if pattern is not None:
        return f"matches {pattern!r}, a file name pytest collects"
    if os.path.lexists(path) and path.is_dir():
        return "is a folder"
    found = existing(path, kind)
    if found is not None and not path.is_file():
        return "exists and is not a regular file"
    if found is not None and not found.report:
        return f"exists and is not a gradcheck {kind.upper()} report ({_WHAT[kind]})"
    return None


def aside(path: Path, run_id: str) -> Path:
    """The path next to ``path`` for the report of run ``run_id``: ``NAME-<run id[:8]>.SUFFIX``."""
    return path.with_name(f"{path.stem}-{run_id[:8]}{path.suffix}")


def destination(path: Path, kind: str, *, run_id: str, started: float) -> tuple[Path, str | None]:
    """Where the report of run ``run_id`` (started at ``started``, seconds since the epoch) goes.

    ``path`` itself, unless something there must not be overwritten: a file that is not (or no
    longer) a gradcheck report of ``kind``, or a report of another run written after this one
    started.  Then the report goes to :func:`aside` and the note (second item) says why.
    """
    why = refusal(path, kind)
    if why is not None:
        return aside(path, run_id), f"{path} {why}: left alone"
    found = existing(path, kind)
    if found is not None and found.run_id != run_id and found.mtime > started:
        other = f"run {found.run_id[:8]}" if found.run_id else "a run without a run id"
        return aside(path, run_id), (f"{path} was written by another run ({other}) after this one "
                                     "started: left alone")
    return path, None
