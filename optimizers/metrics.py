"""Metrics: SymPy-backed correctness, a cost-aware objective, and GEPA-style feedback."""

from __future__ import annotations

import math
from typing import Any

import dspy

from scale.grading.metric import correctness
from scale.grading.verify import extract_answer

__all__ = ["CostAware", "correctness", "feedback", "tokens_of"]


def tokens_of(pred: dspy.Prediction) -> int:
    """Every token the prediction spent (all stages, all systems)."""
    usage = getattr(pred, "usage", None)
    return int(getattr(usage, "total_tokens", 0) or 0)


class CostAware:
    """Correctness minus ``lam`` per token, or correctness that counts only within a token
    ``budget`` per problem (whichever is set)."""

    def __init__(self, lam: float = 0.0, budget: int | None = None):
        if not (math.isfinite(lam) and lam >= 0) or (budget is not None and budget < 1):
            raise ValueError("lambda must be a finite number >= 0 and the token budget positive")
        self.lam = lam
        self.budget = budget

    def __call__(self, example: dspy.Example, pred: dspy.Prediction, trace: Any = None) -> float:
        score = correctness(example, pred)
        tokens = tokens_of(pred)
        if self.budget is not None:
            return score if tokens <= self.budget else 0.0
        return score - self.lam * tokens

    def objective(self, accuracy: float, tokens_per_problem: float) -> float:
        """The same trade-off on aggregates (used to rank whole trials)."""
        if self.budget is not None:
            return accuracy if tokens_per_problem <= self.budget else 0.0
        return accuracy - self.lam * tokens_per_problem


def feedback(
    gold: dspy.Example,
    pred: dspy.Prediction,
    trace: Any = None,
    pred_name: str | None = None,
    pred_trace: Any = None,
    budget: int | None = None,
) -> dspy.Prediction:
    """Score plus a sentence on what went wrong, in the form GEPA takes."""
    score = correctness(gold, pred)
    problems: list[str] = []
    if not score:
        problems.append(
            f"The final answer {getattr(pred, 'answer', '')!r} is wrong; the "
            f"expected answer is {gold.answer!r}."
        )
        steps = getattr(pred, "steps", None) or []
        solution = getattr(gold, "solution", None)
        if solution and steps:
            for i, step in enumerate(steps, 1):
                value = extract_answer(step.answer)
                if value and value not in solution:
                    problems.append(
                        f"Step {i} ({step.subproblem!r}) answered {value!r}, a "
                        "value that does not appear in the reference solution."
                    )
                    break
    fallbacks = [f.value for s in getattr(pred, "steps", None) or [] for f in s.fallbacks]
    fallbacks += [f.value for f in getattr(pred, "fallbacks", None) or []]
    if fallbacks:
        problems.append(
            "Output could not be used as asked: " + ", ".join(sorted(set(fallbacks))) + "."
        )
    if budget is not None and tokens_of(pred) > budget:
        problems.append(f"It spent {tokens_of(pred)} tokens, over the budget of {budget}.")
    text = " ".join(problems) if problems else "Correct."
    return dspy.Prediction(score=score, feedback=text)
