"""Progress callbacks: a program tells a handler as its stages and steps complete."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from scale.programs.records import Rating, Step


class ProgressCallback:
    """Override the hooks you need (STORM's ``BaseCallbackHandler`` shape); each is called
    in the thread that solves the problem."""

    def on_gated(self, rating: Rating, decision: str) -> None:
        """The whole problem was rated; ``decision``: ``system1``, ``system2`` or
        ``decompose``."""

    def on_decomposed(self, subproblems: list[str], notes: list[str]) -> None:
        """The problem was split into ``subproblems``."""

    def on_rated(self, difficulties: list[float | None]) -> None:
        """Every step was rated up front (threshold routing on an up-front estimator, or
        budget routing)."""

    def on_step(self, index: int, step: Step) -> None:
        """Step ``index`` (0-based) is solved."""


_SILENT = ProgressCallback()
_callback: contextvars.ContextVar[ProgressCallback | None] = contextvars.ContextVar(
    "progress_callback", default=None
)


@contextlib.contextmanager
def reporting_to(callback: ProgressCallback) -> Iterator[None]:
    """Send the progress of programs run inside the block to ``callback``."""
    token = _callback.set(callback)
    try:
        yield
    finally:
        _callback.reset(token)


def callback() -> ProgressCallback:
    """The handler of the current context (a no-op one by default)."""
    return _callback.get() or _SILENT
