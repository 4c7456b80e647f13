"""The minimal failing example of a hypothesis test, read from the notes of its exception.

Hypothesis attaches the falsifying example (and, when asked, a ``@reproduce_failure`` blob) as
``__notes__``; :func:`falsifying_text` turns them into what a report row says about the failure
and how to reproduce it.  This reads text only: it imports no hypothesis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["exception_notes", "falsifying_text"]

#: Hypothesis's note naming the minimal failing input ("Failing test case" since 6.1xx).
_FALSIFYING = re.compile(
    r"^(?:Falsifying (?:explicit )?example|Failing test case): *(?P<call>.*)", re.DOTALL
)
#: The fixture's own argument in that note (a repr that says nothing about the failure).
_FIXTURE_ARG = re.compile(r"\s*\bgradcheck=<gradcheck fixture>,?")


def exception_notes(exc: BaseException | None) -> list[str]:
    """The ``__notes__`` of an exception and, for exception groups, of its members."""
    notes: list[str] = []
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        notes += [str(n) for n in getattr(e, "__notes__", ())]
        stack += list(getattr(e, "exceptions", ()))
    return notes


def falsifying_text(nodeid: str, notes: Sequence[str]) -> str | None:
    """The minimal falsifying example hypothesis printed, and how to reproduce it."""
    example = next((m.group("call").strip() for n in notes if (m := _FALSIFYING.match(n))), None)
    if example is None:
        return None
    example = _FIXTURE_ARG.sub("", example)
    blob = next((n.strip() for n in notes if "@reproduce_failure(" in n), None)
    call = re.sub(r"^[\w.]+\(", "@example(", example, count=1)
    how = [f"re-run: python -m pytest {nodeid!r} "
           "(hypothesis replays it from its example database, when enabled)",
           f"or pin it: {call}"]
    if blob:
        how.append(blob)
    return f"Falsifying example: {example}\n" + "\n".join(how)
