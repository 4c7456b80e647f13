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
    ],
    ids=["swapped", "one-file", "mode", "ini-seed", "seed"],
)
def test_bad_values_are_usage_errors_naming_their_source(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: str, message: str
) -> None:
    with pytest.raises(pytest.UsageError) as info:
        _settings(pytester, *args, ini=ini)
    assert fnmatch(str(info.value), message), str(info.value)
