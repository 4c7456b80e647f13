"""Hypothesis notes: collected through exception groups, turned into a reproducible example."""

from __future__ import annotations

from gradcheck.session.falsifying import exception_notes, falsifying_text


def _noted(message: str, *notes: str) -> Exception:
    exc = ValueError(message)
    for note in notes:
        exc.add_note(note)
    return exc


def test_notes_of_an_exception_group_and_its_members_once_each() -> None:
    inner = _noted("inner", "b")
    group = ExceptionGroup("two", [inner, _noted("other", "c")])
    group.add_note("a")
    nested = ExceptionGroup("outer", [group, inner])
    assert sorted(exception_notes(nested)) == ["a", "b", "c"]
    assert exception_notes(None) == [] and exception_notes(ValueError("none")) == []


def test_an_explicit_example_becomes_a_pinnable_call() -> None:
    note = "Falsifying explicit example: test_h(\n    gradcheck=<gradcheck fixture>,\n    n=3,\n)"
    text = falsifying_text("t.py::C::test_h", [note])
    assert text is not None
    assert text.startswith("Falsifying example: test_h(\n    n=3,\n)\nre-run: python -m pytest 't.py::C::test_h'")
    assert text.endswith("or pin it: @example(\n    n=3,\n)")  # no @reproduce_failure blob in the notes
