"""Plain records that flow between the stages and leave ``forward()``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Fallback(str, Enum):
    """What a stage did when model output could not be used as asked (``Step.fallbacks``)."""

    ANSWER_FROM_RAW = "answer_from_raw"  # unparseable reply; a marked answer was read from it
    NO_ANSWER = "no_answer"  # unparseable reply with no answer in it
    DIFFICULTY_UNUSABLE = "difficulty_unusable"  # missing/NaN score: treated as hard
    DIFFICULTY_CLAMPED = "difficulty_clamped"  # a score outside [0, 1]
    DIFFICULTY_COUNT = "difficulty_count"  # a batched rating with too few or too many scores
    NO_LOGPROBS = "no_logprobs"  # the backend returned no token logprobs
    DECOMPOSITION_UNUSABLE = "decomposition_unusable"  # solved as one step
    CANDIDATE_UNUSABLE = "candidate_unusable"  # one of k decompositions could not be read
    SELECTION_UNUSABLE = "selection_unusable"  # the first candidate was used
    NO_PROGRAM = "no_program"  # a program reply with no program in it, even after the retry
    PROGRAM_FAILED = "program_failed"  # the program raised or hit a bound, even after the retry
    PROGRAM_SILENT = "program_silent"  # the program printed nothing, even after the retry
    PROGRAM_RETRIED = "program_retried"  # the first program failed; the corrected one answered


@dataclass
class Sample:
    """One model call's answer and cost (a self-consistency sample, or a single reply), and
    the fallback taken when the reply could not be parsed."""

    answer: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    calculation: str | None = None
    logprobs: list[tuple[str, float]] | None = None  # (token, logprob) when asked for
    fallback: Fallback | None = None
    programs: list[str] | None = None  # a program reply's program, then its correction if any


@dataclass
class Rating:
    """A difficulty estimate for one step or problem. ``answer`` is System 1's answer when
    the estimator produced one on the way (so a step kept on System 1 is not solved again),
    and ``context`` the earlier steps it was given."""

    difficulty: float | None
    answer: str | None = None
    context: str | None = None
    notes: list[str] = field(default_factory=list)
    fallbacks: list[Fallback] = field(default_factory=list)


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
    samples: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fallbacks: list[Fallback] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fallbacks"] = [f.value for f in self.fallbacks]
        for sample in out["samples"]:  # only program replies carry programs
            if sample.get("programs") is None:
                sample.pop("programs", None)
        return out


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
