"""Plain records that flow between the stages."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Rating:
    """A difficulty estimate for one step; ``answer`` is System 1's answer when the estimator
    produced one on the way (the consistency estimator), so it need not be solved again."""

    difficulty: float | None
    answer: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Step:
    """One sub-problem as executed: its rating, the system that solved it, and its cost."""

    subproblem: str
    difficulty: float | None = None
    system: int | None = None
    answer: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lm_calls: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_steps(steps: list[Step], *, with_answers: bool = True) -> str:
    """Render earlier steps for a prompt: numbered sub-problems and their answers."""
    if not steps:
        return "(none)"
    lines = []
    for i, step in enumerate(steps, 1):
        lines.append(f"Step {i}: {step.subproblem}")
        if with_answers and step.answer:
            lines.append(f"Answer {i}: {step.answer}")
    return "\n".join(lines)
