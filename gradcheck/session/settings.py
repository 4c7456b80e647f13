"""The pytest plugin's run-wide settings: ``--gradcheck-*`` options over ``gradcheck_*`` ini keys.

:func:`resolve_settings` reads them once, at ``pytest_configure``, and turns every bad or
contradictory value into a ``pytest.UsageError`` so the run stops before any test does.  A
report path must not name a file that is not a gradcheck report of its kind: not a Python file
(``pytest --gradcheck-html tests/test_rnn.py`` takes the test file as the PATH), a node id, a
file name pytest collects, or an existing file without the report's mark
(:func:`gradcheck.report.targets.refusal`, imported only when a report path is given).
Nothing here imports JAX, hypothesis or a template engine.
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gradcheck.options import MODES

__all__ = ["DEFAULT_DIR", "Settings", "resolve_settings"]

#: The settings, each both an option ``--gradcheck-KEY`` and an ini key ``gradcheck_KEY``.
_KEYS = ("json", "html", "mode", "seed", "jax_twin", "rtol", "atol")
#: Where reports go when ``--gradcheck-json`` / ``--gradcheck-html`` are given without a path.
DEFAULT_DIR = "reports"
#: The suffixes that give away a swapped report path (a JSON report named ``.html``, say).
_WRONG_SUFFIXES = {"json": (".html", ".htm"), "html": (".json",)}


@dataclass(frozen=True, slots=True)
class Settings:
    """The run-wide options after command line > ini > default; ``None`` where unset."""

    json: Path | None = None
    html: Path | None = None
    mode: str | None = None
    seed: int | None = None
    #: ``"auto"`` or ``False``: whether checks build the automatic JAX twin of numpy code.
    jax_twin: str | bool | None = None
    #: The relative / absolute tolerance of every check, for every dtype (a positive float).
    rtol: float | None = None
    atol: float | None = None

    def defaults(self) -> dict[str, Any]:
        """The check options these settings impose (below marker and call options)."""
        out: dict[str, Any] = {}
        if self.mode is not None:
            out["mode"] = self.mode
        if self.seed is not None:
            out["seed"] = self.seed
        if self.jax_twin is not None:
            out["jax_twin"] = self.jax_twin
        if self.rtol is not None:
            out["rtol"] = self.rtol
        if self.atol is not None:
            out["atol"] = self.atol
        return out


#: A raw setting: its text, where it came from (for messages), the folder relative paths start at.
_Found = tuple[str, str, Path]


def _found(config: pytest.Config) -> dict[str, _Found]:
    """The settings given on the command line or, failing that, in the ini file."""
    ini_base = config.inipath.parent if config.inipath else config.rootpath
    cwd = config.invocation_params.dir
    ini_name = f"ini option in {config.inipath.name}" if config.inipath else "ini option"
    found: dict[str, _Found] = {}
    for key in _KEYS:
        cli = config.getoption(f"gradcheck_{key}", None)
        ini = str(config.getini(f"gradcheck_{key}") or "").strip()
        if cli is not None:
            found[key] = (str(cli), f"--gradcheck-{key.replace('_', '-')}", cwd)
        elif ini:
            found[key] = (ini, f"gradcheck_{key} ({ini_name})", ini_base)
    return found


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


def _collected_patterns(config: pytest.Config) -> list[str]:
    """File-name patterns of what pytest collects: ``python_files`` and the doctest globs."""
    patterns = [str(p) for p in config.getini("python_files") or ()]
    if config.pluginmanager.has_plugin("doctest"):
        patterns += [str(p) for p in config.getoption("doctestglob", None) or ("test*.txt",)]
    return patterns


def _refusal(key: str, found: _Found, path: Path, why: str) -> pytest.UsageError:
    """The usage error of a report path that names something a report must not overwrite."""
    value, source, _ = found
    if source.startswith("--"):
        fix = (f"If {source} took the next word as its PATH, write {source}=PATH (with '='); "
               f"otherwise give a path ending in .{key} that is new or a gradcheck {key.upper()} report.")
    else:
        fix = (f"Give gradcheck_{key} a path ending in .{key} that is new or a gradcheck "
               f"{key.upper()} report.")
    return pytest.UsageError(f"{source}={value!r}: refusing to write the {key.upper()} report to "
                             f"{path}, which {why}. {fix}")


def _report_paths(found: dict[str, _Found], root: Path, collected: list[str]) -> dict[str, Path]:
    """The JSON and HTML report paths, refusing swapped suffixes, one file for both, and paths
    that name something else than a gradcheck report of that kind."""
    paths: dict[str, Path] = {}
    for key, suffixes in _WRONG_SUFFIXES.items():
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
    if paths:
        from gradcheck.report.targets import refusal

        for key, path in paths.items():
            why = refusal(path, key, collected=collected)
            if why is not None:
                raise _refusal(key, found[key], path, why)
    return paths


def _mode(value: str, source: str) -> str:
    if value not in MODES:
        close = difflib.get_close_matches(value, MODES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise pytest.UsageError(f"{source}={value!r} is not a gradcheck mode{hint}: "
                                f"choose one of {', '.join(MODES)}.")
    return value


def _seed(value: str, source: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        seed = -1
    if seed < 0:
        raise pytest.UsageError(f"{source}={value!r}: expected a non-negative integer seed.")
    return seed


#: The words ``--gradcheck-jax-twin`` / ``gradcheck_jax_twin`` take.
_TWIN_WORDS: dict[str, str | bool] = {"auto": "auto", "on": "auto", "true": "auto", "yes": "auto",
                                      "off": False, "false": False, "no": False}


def _jax_twin(value: str, source: str) -> str | bool:
    word = value.strip().lower()
    if word not in _TWIN_WORDS:
        raise pytest.UsageError(f"{source}={value!r}: expected auto or off (whether checks build "
                                "the automatic JAX twin of plain numpy forwards).")
    return _TWIN_WORDS[word]


#: What each tolerance setting means, for its usage error.
_TOLERANCE_MEANING = {"rtol": "the relative tolerance of every check, e.g. 1e-6",
                      "atol": "the absolute tolerance of every check, e.g. 1e-12"}


def _tolerance(key: str, value: str, source: str) -> float:
    """A positive finite float (``rtol``/``atol`` for every dtype), or a usage error naming it."""
    try:
        tol = float(value)
    except ValueError:
        tol = math.nan
    if not (math.isfinite(tol) and tol > 0):
        raise pytest.UsageError(
            f"{source}={value!r}: expected a positive float ({_TOLERANCE_MEANING[key]}); a "
            f"per-dtype table goes in @pytest.mark.gradcheck({key}={{'float32': ...}}) instead."
        )
    return tol


def resolve_settings(config: pytest.Config) -> Settings:
    """Read and validate the options (command line wins over ini); bad values are usage errors."""
    found = _found(config)
    paths = _report_paths(found, config.rootpath, _collected_patterns(config) if found else [])
    mode = _mode(*found["mode"][:2]) if "mode" in found else None
    seed = _seed(*found["seed"][:2]) if "seed" in found else None
    twin = _jax_twin(*found["jax_twin"][:2]) if "jax_twin" in found else None
    tols = {key: _tolerance(key, *found[key][:2]) for key in ("rtol", "atol") if key in found}
    return Settings(json=paths.get("json"), html=paths.get("html"), mode=mode, seed=seed,
                    jax_twin=twin, rtol=tols.get("rtol"), atol=tols.get("atol"))
