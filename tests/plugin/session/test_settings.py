"""Run-wide settings from a real pytest config: precedence, where report paths resolve, usage errors."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest

from gradcheck.session.settings import DEFAULT_DIR, Settings, resolve_settings

pytest_plugins = ("pytester",)


def _settings(pytester: pytest.Pytester, *args: str, ini: str = "") -> Settings:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    return resolve_settings(pytester.parseconfig(*args))


def test_nothing_given_is_nothing_imposed(pytester: pytest.Pytester) -> None:
    settings = _settings(pytester)
    assert settings == Settings()
    assert settings.defaults() == {}


def test_command_line_wins_over_ini_and_imposes_mode_and_seed(pytester: pytest.Pytester) -> None:
    settings = _settings(pytester, "--gradcheck-mode=full", "--gradcheck-seed=7",
                         ini="gradcheck_mode = directional\ngradcheck_seed = 3")
    assert (settings.mode, settings.seed) == ("full", 7)
    assert settings.defaults() == {"mode": "full", "seed": 7}
    assert _settings(pytester).defaults() == {"mode": "directional", "seed": 3}  # the ini alone


def test_tolerances_are_floats_the_command_line_wins_and_they_become_defaults(
    pytester: pytest.Pytester,
) -> None:
    ini = "gradcheck_rtol = 1e-4\ngradcheck_atol = 2.5e-9"
    both = _settings(pytester, "--gradcheck-rtol=1e-5", ini=ini)
    assert (both.rtol, both.atol) == (1e-5, 2.5e-9)  # rtol from the command line, atol from the ini
    assert both.defaults() == {"rtol": 1e-5, "atol": 2.5e-9}
    assert _settings(pytester).defaults() == {"rtol": 1e-4, "atol": 2.5e-9}  # the ini alone


@pytest.mark.parametrize("value", ["0", "-1e-3", "inf", "nan", "tight", ""])
def test_a_tolerance_that_is_not_a_positive_float_is_a_usage_error(
    pytester: pytest.Pytester, value: str
) -> None:
    with pytest.raises(pytest.UsageError) as info:
        _settings(pytester, f"--gradcheck-atol={value}")
    assert str(info.value) == (
        f"--gradcheck-atol={value!r}: expected a positive float (the absolute tolerance of every "
        "check, e.g. 1e-12); a per-dtype table goes in @pytest.mark.gradcheck(atol={'float32': ...}) "
        "instead.")


def test_report_paths_default_folder_and_relative_bases(pytester: pytest.Pytester) -> None:
    root = Path(pytester.path)
    bare = _settings(pytester, "--gradcheck-json", "--gradcheck-html=")
    assert bare.json == root / DEFAULT_DIR / "gradcheck.json"
    assert bare.html == root / DEFAULT_DIR / "gradcheck.html"
    (root / "out").mkdir()
    folder = _settings(pytester, "--gradcheck-json=out", "--gradcheck-html=new/")
    assert folder.json == root / "out" / "gradcheck.json"  # an existing folder
    assert folder.html == root / "new" / "gradcheck.html"  # a trailing separator
    sub = pytester.mkdir("sub")
    pytester.makefile(".ini", **{"sub/tox": "[pytest]\ngradcheck_json = results/run.json\n"})
    from_ini = resolve_settings(pytester.parseconfig("-c", str(sub / "tox.ini")))
    assert from_ini.json == sub / "results" / "run.json"  # from the ini file's folder


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (("--gradcheck-json=out.html",), "", "*names a .html file for the JSON report*swapped?"),
        (("--gradcheck-json=same", "--gradcheck-html=same"), "", "*both write to *same: give*"),
        (("--gradcheck-mode=ful",), "", "--gradcheck-mode='ful' is not a gradcheck mode (did you mean 'full'?)*"),
        ((), "gradcheck_seed = -1", "gradcheck_seed (ini option in tox.ini)='-1': expected a non-negative*"),
        (("--gradcheck-seed=x",), "", "--gradcheck-seed='x': expected a non-negative integer seed."),
        ((), "gradcheck_rtol = 1e-3x", "gradcheck_rtol (ini option in tox.ini)='1e-3x': expected a "
         "positive float (the relative tolerance of every check, e.g. 1e-6)*"),
    ],
    ids=["swapped", "one-file", "mode", "ini-seed", "seed", "ini-rtol"],
)
def test_bad_values_are_usage_errors_naming_their_source(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: str, message: str
) -> None:
    with pytest.raises(pytest.UsageError) as info:
        _settings(pytester, *args, ini=ini)
    assert fnmatch(str(info.value), message), str(info.value)


@pytest.mark.parametrize("key", ["json", "html"])
def test_a_swallowed_test_file_is_a_usage_error_that_says_what_to_do(pytester: pytest.Pytester, key: str) -> None:
    test_file = pytester.makepyfile(test_rnn="def test_x():\n    pass\n")
    with pytest.raises(pytest.UsageError) as info:
        _settings(pytester, f"--gradcheck-{key}", "test_rnn.py")
    message = str(info.value)
    assert message.startswith(f"--gradcheck-{key}='test_rnn.py': refusing to write the {key.upper()} "
                              f"report to {test_file}, which is a Python file (.py)")
    assert f"write --gradcheck-{key}=PATH (with '=')" in message and f"a path ending in .{key}" in message
    with pytest.raises(pytest.UsageError, match="looks like a pytest node id"):
        _settings(pytester, f"--gradcheck-{key}", "test_rnn.py::test_x")


def test_ini_keys_and_existing_files_that_are_not_reports_are_refused(pytester: pytest.Pytester) -> None:
    with pytest.raises(pytest.UsageError) as info:
        _settings(pytester, ini="gradcheck_html = tests/test_rnn.py")
    assert str(info.value).startswith("gradcheck_html (ini option in tox.ini)='tests/test_rnn.py': refusing")
    assert "Give gradcheck_html a path ending in .html" in str(info.value)
    (pytester.path / "tox.ini").unlink()
    pytester.makefile(".json", data='{"keep": "me"}')
    with pytest.raises(pytest.UsageError, match=r"data.json, which exists and is not a gradcheck JSON report"):
        _settings(pytester, "--gradcheck-json=data.json")
    pytester.makefile(".html", page="<html><head></head><body>mine</body></html>")
    with pytest.raises(pytest.UsageError, match=r"page.html, which exists and is not a gradcheck HTML report"):
        _settings(pytester, "--gradcheck-html=page.html")
    pytester.makefile(".txt", test_doc="a doctest file")
    with pytest.raises(pytest.UsageError, match=r"which matches 'test\*.txt', a file name pytest collects"):
        _settings(pytester, "--gradcheck-json=test_doc.txt")


def test_an_older_gradcheck_report_may_be_replaced(pytester: pytest.Pytester) -> None:
    from gradcheck import report

    report.write_json(report.session_document([]), pytester.path / "old.json")
    report.write_html(report.session_document([]), pytester.path / "old.html")
    settings = _settings(pytester, "--gradcheck-json=old.json", "--gradcheck-html=old.html")
    assert (settings.json, settings.html) == (pytester.path / "old.json", pytester.path / "old.html")
