"""The exceptions gradcheck raises: one base type, each also a builtin so callers can catch either."""

from __future__ import annotations

__all__ = [
    "GradcheckError",
    "GradientMismatch",
    "GradientStructureError",
    "InputMutated",
    "InvalidArgument",
    "NonDeterministic",
    "NonFiniteError",
    "UserCodeError",
]


class GradcheckError(Exception):
    """Base class of every error gradcheck raises."""


class InvalidArgument(GradcheckError, TypeError):
    """A call to gradcheck was malformed: a bad option, an integer parameter, a non-array leaf."""


class GradientStructureError(GradcheckError, ValueError):
    """The hand gradient does not match the parameters: missing or extra keys, shape, dtype."""


class NonFiniteError(GradcheckError, ValueError):
    """A parameter, the loss, or a hand gradient holds NaN or Inf."""


class UserCodeError(GradcheckError, RuntimeError):
    """The user's forward or backward raised; the original exception is chained as ``__cause__``."""


class InputMutated(GradcheckError, ValueError):
    """The user's forward changed the arrays it was given (gradcheck passes copies, so the check
    itself is safe, but the same forward would corrupt a training loop)."""


class NonDeterministic(GradcheckError, ValueError):
    """The user's forward returned different values for the same input (unseeded dropout, say),
    so no finite difference of it means anything."""


class GradientMismatch(GradcheckError, AssertionError):
    """A hand-derived gradient disagrees with the references; pytest shows it as a failure."""
