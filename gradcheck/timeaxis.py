"""Which axis of a sequence tensor is time, when the user does not say (``time_axis="auto"``).

The reference zoo lays sequences out time first, ``(T, B, D)``; CS231n's ``rnn_forward`` and most
framework code batch first, ``(N, T, D)``.  The time axis decides which diagnoses a sequence
leaf can get (a shift by one step, errors confined to some time steps, the first step where hand
and reference part, the growth of the error bars of an exploding recurrence), so a wrong guess
names a batch entry as a "time step".  It is read, in this order, from:

1. the user's docstrings: a shape such as ``(N, T, D)`` or ``(T, B, H)`` in the docstring of the
   forward, its class or its module, where one name is time (``T``, ``time``, ``seq``, …) and
   another the batch (``N``, ``B``, ``batch``, …);
2. the shapes: a 2-D state (``h0``, ``hprev``, ``c0``, ``state``, …) whose leading size is one of
   the sequence's first two sizes and not the other is batched along that one;
3. otherwise axis 0, with ``guessed`` set: a failing sequence leaf's record then says how to
   name the axis.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DEFAULT", "TimeAxis", "from_docstrings", "from_states", "named_arrays", "resolve", "sources_of"]

_TIME = frozenset({"t", "time", "times", "seq", "seq_len", "seqlen", "steps", "timesteps",
                   "time_steps", "n_steps", "len", "length"})
_BATCH = frozenset({"n", "b", "batch", "bs", "batch_size", "n_batch", "minibatch", "m"})
_TRIPLE = re.compile(r"\(\s*([A-Za-z_]\w*)\s*,\s*([A-Za-z_]\w*)\s*,\s*([A-Za-z_]\w*)\s*,?\s*\)")
_STATE = re.compile(r"^(h|c|s|state|hidden|hx|cx|carry)(_?(0|prev|init|initial|start|t))?$",
                    re.IGNORECASE)


@dataclass(frozen=True)
class TimeAxis:
    """The resolved time axis and how it was found (``guessed``: no evidence, axis 0 assumed)."""

    axis: int | None
    how: str
    guessed: bool = False

    def note(self, shape: Sequence[int]) -> str:
        """What a failing sequence leaf's record says when the axis was guessed."""
        return (f"time_axis was not given and could not be read from the code (no docstring "
                f"shape like (N, T, D), no batched state): axis 0 of the {tuple(shape)} sequence "
                "is taken as time, as in the reference zoo's (T, B, D); pass time_axis=1 for "
                "batch-first (N, T, D) data, or time_axis=None")


#: What a problem holds before anything is resolved: axis 0, as ``time_axis=0`` always was.
DEFAULT = TimeAxis(0, "default")


def from_docstrings(docs: Iterable[str]) -> int | None:
    """The position of the time name in shape triples like ``(N, T, D)`` of ``docs``, when the
    docstrings agree on one; ``None`` when they name none or disagree."""
    found: set[int] = set()
    for doc in docs:
        for match in _TRIPLE.finditer(doc or ""):
            names = [g.lower() for g in match.groups()]
            times = [i for i, n in enumerate(names) if n in _TIME]
            batches = [i for i, n in enumerate(names) if n in _BATCH]
            if len(times) == 1 and len(batches) == 1 and times[0] < 2 and batches[0] < 2:
                found.add(times[0])
    return found.pop() if len(found) == 1 else None


def from_states(shape: Sequence[int], states: Iterable[tuple[str, Any]]) -> int | None:
    """The time axis of a ``shape`` sequence from the leading sizes of named 2-D states: a state
    batched along one of the first two axes (and not the other) makes the other one time."""
    a, b = int(shape[0]), int(shape[1])
    if a == b:
        return None
    votes: set[int] = set()
    for name, value in states:
        if not _STATE.match(name.rsplit(".", 1)[-1].strip("[]'\"")):
            continue
        size = np.shape(value)
        if len(size) != 2:
            continue
        if size[0] == a and size[0] != b:
            votes.add(1)
        elif size[0] == b and size[0] != a:
            votes.add(0)
    return votes.pop() if len(votes) == 1 else None


def sources_of(*objects: Any) -> list[str]:
    """The docstrings that may describe a sequence layout: each object's own (through an adapter,
    the user's object it wraps, ``__gradcheck_source__``), its class's when it is an instance,
    its ``forward``'s, and its module's."""
    docs: list[str] = []
    seen: set[int] = set()

    def add(obj: Any) -> None:
        if obj is None or id(obj) in seen:
            return
        seen.add(id(obj))
        doc = inspect.getdoc(obj) if (inspect.isclass(obj) or callable(obj)
                                       or inspect.ismodule(obj)) else None
        if doc:
            docs.append(doc)

    for obj in objects:
        obj = getattr(obj, "__gradcheck_source__", obj)  # an adapter's user object
        add(obj)
        if not inspect.isclass(obj) and not inspect.isroutine(obj):
            add(type(obj))
        add(getattr(obj, "forward", None))
        module = inspect.getmodule(obj if inspect.isroutine(obj) or inspect.isclass(obj) else type(obj))
        if module is not None and not module.__name__.startswith(("gradcheck", "builtins")):
            add(module)
    return docs


def resolve(given: Any, shapes: Sequence[tuple[int, ...]], docs: Iterable[str],
            states: Iterable[tuple[str, Any]]) -> TimeAxis:
    """The time axis for ``time_axis=given``: an int or ``None`` as given; ``"auto"`` read from
    the docstrings, then from the states' shapes, else axis 0 (guessed when a leaf of ``shapes``
    is a sequence of at least 3 axes)."""
    if given != "auto":
        return TimeAxis(given, "given")
    sequences = [s for s in shapes if len(s) >= 3]
    if not sequences:
        return TimeAxis(0, "default: no sequence leaf")
    axis = from_docstrings(docs)
    if axis is not None:
        return TimeAxis(axis, "docstring")
    axis = from_states(sequences[0], states)
    if axis is not None:
        return TimeAxis(axis, "state shapes")
    return TimeAxis(0, "default", guessed=True)


def named_arrays(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(name, array)`` for the arrays of a dict/list/tuple tree (names are the dict keys)."""
    out: list[tuple[str, Any]] = []
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            out.extend(named_arrays(v, str(k)))
    elif isinstance(tree, list | tuple):
        for v in tree:
            out.extend(named_arrays(v, prefix))
    elif hasattr(tree, "shape"):
        out.append((prefix, tree))
    return out
