"""What every method shares: input checks, accounting, and the output shape."""

from __future__ import annotations

import time
import unicodedata
from typing import TYPE_CHECKING

import dspy

from scale.models.lm import current_ledger, track
from scale.programs.callbacks import callback
from scale.programs.records import Fallback, Step

if TYPE_CHECKING:
    from scale.programs.profiles import SystemProfile

MAX_PROBLEM_CHARS = 20_000


class ProblemError(ValueError):
    """A problem that cannot be solved as given (empty, or not text)."""


def clean_problem(
    problem: str | bytes, max_chars: int = MAX_PROBLEM_CHARS
) -> tuple[str, list[str]]:
    """Validate and normalize a problem; returns it with notes on what was changed.

    Bytes are decoded as UTF-8 (invalid bytes replaced), control characters other than
    newlines and tabs dropped, and text over ``max_chars`` truncated. Empty text is refused
    before any model call."""
    notes: list[str] = []
    if isinstance(problem, bytes):
        text = problem.decode("utf-8", errors="replace")
        if "\ufffd" in text:
            notes.append("invalid UTF-8 bytes replaced")
        problem = text
    if not isinstance(problem, str):
        raise ProblemError(f"the problem must be text, got {type(problem).__name__}")
    cleaned = "".join(c for c in problem if c in "\n\t" or unicodedata.category(c)[0] != "C")
    if len(cleaned) != len(problem):
        notes.append(f"{len(problem) - len(cleaned)} control characters removed")
    cleaned = cleaned.strip()
    if not cleaned:
        raise ProblemError("the problem is empty")
    if len(cleaned) > max_chars:
        notes.append(f"problem truncated from {len(cleaned)} to {max_chars} characters")
        cleaned = cleaned[:max_chars]
    return cleaned, notes


class MathProgram(dspy.Module):
    """Base of SCALE and the baselines: ``forward(problem)`` returns a ``dspy.Prediction``
    with ``answer``, ``steps`` (``Step`` records), ``usage`` (a ``scale.models.lm.Usage`` of every
    LM call, by stage and by system), ``notes`` and ``fallbacks`` (problem-level ones)."""

    method = "base"

    def forward(self, problem: str) -> dspy.Prediction:
        problem, notes = clean_problem(problem)
        started = time.perf_counter()
        with track() as ledger:
            steps, more_notes, fallbacks = self.solve(problem)
        usage = ledger.usage(time.perf_counter() - started)
        answer = steps[-1].answer if steps else ""
        pred = dspy.Prediction(
            answer=answer,
            steps=steps,
            usage=usage,
            notes=notes + more_notes,
            fallbacks=fallbacks,
            method=self.method,
        )
        pred.set_lm_usage(ledger.usage_by_model())  # what traces (MLflow's) report
        return pred

    def profiles(self) -> list[SystemProfile]:
        """The system profiles it calls models with (System 1's first, where it has one)."""
        found = (getattr(self, "system1", None), getattr(self, "system2", None))
        return [p for p in found if p is not None]

    def solve(self, problem: str) -> tuple[list[Step], list[str], list[Fallback]]:
        """Run the method; return its steps (the last one holds the answer), notes and
        problem-level fallbacks."""
        raise NotImplementedError


def finish_step(step: Step, index: int | None, started: float) -> Step:
    """Record a finished step's wall time and its share of the calls (those labelled with
    its index in the active ledger; every call so far when ``index`` is None, a step that
    is the whole problem), then tell the progress callback."""
    step.seconds = round(time.perf_counter() - started, 3)
    ledger = current_ledger()
    records = ledger.snapshot() if ledger is not None else []
    mine = records if index is None else [r for r in records if r.step == index]
    step.prompt_tokens = sum(r.prompt_tokens for r in mine)
    step.completion_tokens = sum(r.completion_tokens for r in mine)
    step.lm_calls = len(mine)
    callback().on_step(index or 0, step)
    return step
