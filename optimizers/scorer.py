"""How well difficulty scores predict System 1 failure, and outcome-labelled scorer demos.

A step's outcome label: System 2's answer (reasoning, in the context of System 2's earlier
answers) is the reference; the step is *hard* when System 1's answer (its one greedy call,
what a step routed to System 1 gets) differs from it. The label does not depend on any
estimator's score, so every estimator's AUROC measures the same thing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import dspy
from scale.programs.records import Step, format_steps
from scale.programs.route import ESTIMATORS
from scale.programs.scale import SCALE
from tqdm import tqdm

from scale.verify import is_equivalent

EASY, HARD = 0.2, 0.8  # the scores outcome-labelled demos teach


@dataclass
class StepOutcome:
    """One step with System 1's and System 2's answers, and each estimator's score."""

    example_id: str
    index: int
    subproblem: str
    system1_answer: str
    system2_answer: str
    hard: bool
    scores: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def auroc(scores: list[float | None], labels: list[bool]) -> float | None:
    """Probability that a hard step scores above an easy one (ties count half); None
    when either class is empty. Missing scores count as the highest (treated as hard)."""
    pairs = [(1.0 if s is None else s, y) for s, y in zip(scores, labels, strict=True)]
    hard = [s for s, y in pairs if y]
    easy = [s for s, y in pairs if not y]
    if not hard or not easy:
        return None
    wins = sum((h > e) + 0.5 * (h == e) for h in hard for e in easy)
    return round(wins / (len(hard) * len(easy)), 4)


def collect_outcomes(
    program: SCALE,
    examples: list[dspy.Example],
    estimators: tuple[str, ...] = ESTIMATORS,
    *,
    progress: bool = False,
) -> tuple[list[StepOutcome], dict[str, str]]:
    """Decompose each example, solve every step with System 2 (the reference) and with
    System 1, and record each estimator's score; the final (question) step is skipped, as
    SCALE forces it to System 2. An example that raises is left out and its error returned
    (by id); the others go on."""
    outcomes: list[StepOutcome] = []
    errors: dict[str, str] = {}
    for example in tqdm(examples, desc="steps", unit="problem", disable=not progress):
        try:
            outcomes += _example_outcomes(program, example, estimators)
        except Exception as exc:  # recorded per example; the comparison goes on
            errors[str(example.id)] = f"{type(exc).__name__}: {exc}"
    return outcomes, errors


def _example_outcomes(
    program: SCALE, example: dspy.Example, estimators: tuple[str, ...]
) -> list[StepOutcome]:
    subproblems = program.decomposer(problem=example.problem).subproblems
    stated = (
        {
            name: program.scorer.plan(example.problem, subproblems[:-1], logprobs=name == "logprob")
            for name in estimators
            if name != "consistency"
        }
        if len(subproblems) > 1
        else {}
    )
    outcomes: list[StepOutcome] = []
    steps: list[Step] = []
    for i, subproblem in enumerate(subproblems[:-1]):
        inputs = {
            "problem": example.problem,
            "earlier_steps": format_steps(steps),
            "subproblem": subproblem,
        }
        reference = program.solver2(step=i, **inputs).answer
        answer = program.solver1(step=i, **inputs).answer
        scores = {name: ratings[i].difficulty for name, ratings in stated.items()}
        if "consistency" in estimators:
            scores["consistency"] = program.consistency.rate(
                example.problem, inputs["earlier_steps"], subproblem, i
            ).difficulty
        outcomes.append(
            StepOutcome(
                str(example.id),
                i,
                subproblem,
                answer,
                reference,
                hard=not is_equivalent(reference, answer),
                scores=scores,
            )
        )
        steps.append(Step(subproblem, answer=reference))
    return outcomes


def estimator_quality(outcomes: list[StepOutcome]) -> dict[str, dict[str, Any]]:
    """Per estimator: AUROC for System 1 failure, and the score distribution."""
    names = sorted({n for o in outcomes for n in o.scores})
    labels = [o.hard for o in outcomes]
    report = {}
    for name in names:
        scores = [o.scores.get(name) for o in outcomes]
        known = sorted(s for s in scores if s is not None)
        report[name] = {
            "auroc": auroc(scores, labels),
            "n": len(scores),
            "missing": len(scores) - len(known),
            "distinct": len(set(known)),
            "quartiles": [
                round(known[int(q * (len(known) - 1))], 4) for q in (0, 0.25, 0.5, 0.75, 1)
            ]
            if known
            else [],
        }
    return report


def tune_scorer(
    program: SCALE, trainset: list[dspy.Example], valset: list[dspy.Example], max_demos: int = 4
) -> dict[str, Any]:
    """Give the scorer outcome-labelled demos from ``trainset`` (balanced hard/easy) and
    report its AUROC on ``valset`` steps before and after."""
    before = estimator_quality(collect_outcomes(program, valset, ("self",))[0])["self"]["auroc"]
    train, _ = collect_outcomes(program, trainset, ("self",))
    hard = [o for o in train if o.hard]
    easy = [o for o in train if not o.hard]
    chosen = [o for pair in zip(hard, easy, strict=False) for o in pair][:max_demos]
    problems = {str(e.id): e.problem for e in trainset}
    program.scorer.assess.demos = [
        dspy.Example(
            problem=problems[o.example_id],
            earlier_steps="(see problem)",
            subproblem=o.subproblem,
            difficulty=HARD if o.hard else EASY,
        )
        for o in chosen
    ]
    by_example: dict[str, list[StepOutcome]] = {}
    for o in train:
        by_example.setdefault(o.example_id, []).append(o)
    program.scorer.assess_all.demos = [
        dspy.Example(
            problem=problems[k],
            subproblems=[o.subproblem for o in v],
            difficulties=[HARD if o.hard else EASY for o in v],
        )
        for k, v in by_example.items()
        if any(o.hard for o in v) and not all(o.hard for o in v)
    ][:max_demos]
    after = estimator_quality(collect_outcomes(program, valset, ("self",))[0])["self"]["auroc"]
    return {
        "auroc_before": before,
        "auroc_after": after,
        "train_steps": len(train),
        "hard_share": round(len(hard) / len(train), 3) if train else None,
        "demos": len(program.scorer.assess.demos) + len(program.scorer.assess_all.demos),
    }
