"""How well difficulty estimators predict System 1's failure, measured on the same steps
and problems, and outcome-labelled demos for the stated-difficulty scorer.

A step's label comes from SCALE's own step loop with every step on System 2: System 2's
answer (reasoning, in the context of System 2's earlier answers) is the reference, and the
step is *hard* when System 1's greedy answer in that context differs from it. A problem's
label is the truth: System 1's greedy answer to the whole problem against the gold answer.
Neither label depends on any estimator's score, so every estimator's AUROC measures the
same thing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dspy
from tqdm import tqdm

from scale.grading.verify import is_equivalent
from scale.harness.evaluate import in_parallel
from scale.harness.results import ResultsFile
from scale.programs.estimators import build_estimator
from scale.programs.evidence import Estimator, Evidence
from scale.programs.io import fingerprint
from scale.programs.records import Rating
from scale.programs.route import Routing
from scale.programs.scale import SCALE

EASY, HARD = 0.2, 0.8  # the scores outcome-labelled demos teach


@dataclass
class Outcome:
    """One step (``index`` >= 0) or whole problem (``index`` -1): System 1's answer, the
    reference (System 2's answer for a step, the gold answer for a problem), and each
    estimator's score."""

    example_id: str
    index: int
    subproblem: str
    system1_answer: str
    reference: str
    hard: bool
    scores: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Probe(Estimator):
    """Rates each step with every estimator on the same evidence, records System 1's
    greedy answer, and sends the step to System 2 (whose answer is the reference)."""

    name = "probe"

    def __init__(self, parts: list[Estimator]):
        self.parts = parts
        self.logprobs = any(p.logprobs for p in parts)
        self.records: list[tuple[int, str, str, dict[str, float | None]]] = []

    def rate(self, evidence: Evidence) -> Rating:
        scores = {p.name: p.rate(evidence).difficulty for p in self.parts}
        answer = evidence.greedy().answer
        self.records.append((evidence.step or 0, evidence.subproblem, answer, scores))
        return Rating(None)


def auroc(scores: list[float | None], labels: list[bool]) -> float | None:
    """Probability that a hard item scores above an easy one (ties count half); None
    when either class is empty. Missing scores count as the highest (treated as hard)."""
    pairs = [(1.0 if s is None else s, y) for s, y in zip(scores, labels, strict=True)]
    hard = [s for s, y in pairs if y]
    easy = [s for s, y in pairs if not y]
    if not hard or not easy:
        return None
    wins = sum((h > e) + 0.5 * (h == e) for h in hard for e in easy)
    return round(wins / (len(hard) * len(easy)), 4)


def _labelling_copy(program: SCALE) -> SCALE:
    copy = program.deepcopy()
    copy.routing = Routing(estimator="none", threshold=0.0, gate=None, decompose=True)
    return copy


def collect_outcomes(
    program: SCALE,
    examples: list[dspy.Example],
    estimators: tuple[str, ...],
    *,
    problems: bool = True,
    steps: bool = True,
    threads: int = 1,
    progress: bool = False,
    journal: Path | None = None,
) -> tuple[list[Outcome], dict[str, str]]:
    """Label the steps of each example (with ``steps``) and the whole problem (with
    ``problems``), recording each estimator's score; the final (question) step is skipped,
    as SCALE forces it to System 2. ``threads`` examples are labelled at once; outcomes
    keep the examples' order. An example that raises is left out and its error returned
    (by id). With ``journal``, each example's outcomes are appended to that file as it is
    labelled, and the examples it holds from a run with the same program, estimators and
    levels are not labelled again (an interrupted run resumes)."""
    copy = _labelling_copy(program)
    parts = [build_estimator(name, copy) for name in estimators]
    settings = {"program": fingerprint(program), "estimators": list(estimators)}
    settings |= {"problems": problems, "steps": steps}
    writer = ResultsFile(journal, identity=settings, resume=True) if journal else None
    stored = writer.records if writer else []
    done = {r["id"]: [Outcome(**o) for o in r["outcomes"]] for r in stored}

    def label(example: dspy.Example) -> tuple[str, list[Outcome] | str]:
        try:
            return str(example.id), _example_outcomes(copy, parts, example, problems, steps)
        except Exception as exc:  # recorded per example; the comparison goes on
            return str(example.id), f"{type(exc).__name__}: {exc}"

    todo = [e for e in examples if str(e.id) not in done]
    found: dict[str, list[Outcome] | str] = dict(done)
    try:
        for example_id, result in tqdm(
            in_parallel(label, todo, threads),
            total=len(todo),
            desc="outcomes",
            unit="problem",
            disable=not progress,
        ):
            found[example_id] = result
            if writer and not isinstance(result, str):
                writer.append({"id": example_id, "outcomes": [o.to_dict() for o in result]})
    finally:
        if writer:
            writer.close()
    outcomes: list[Outcome] = []
    errors: dict[str, str] = {}
    for example in examples:
        result = found[str(example.id)]
        if isinstance(result, str):
            errors[str(example.id)] = result
        else:
            outcomes += result
    return outcomes, errors


def _example_outcomes(
    program: SCALE, parts: list[Estimator], example: dspy.Example, problems: bool, steps: bool
) -> list[Outcome]:
    found: list[Outcome] = []
    example_id, problem = str(example.id), example.problem
    if problems:
        probe = _Probe(parts)
        with program.rating_with(probe):
            probe.rate(program.evidence(problem, problem, "", None))
        _, _, answer, scores = probe.records[0]
        gold = str(example.answer)
        found.append(
            Outcome(example_id, -1, problem, answer, gold, not is_equivalent(gold, answer), scores)
        )
    if not steps:
        return found
    probe = _Probe(parts)
    with program.rating_with(probe):
        solved = program(problem=problem).steps
    for index, subproblem, answer, scores in probe.records:
        reference = solved[index].answer
        found.append(
            Outcome(
                example_id,
                index,
                subproblem,
                answer,
                reference,
                not is_equivalent(reference, answer),
                scores,
            )
        )
    return found


def estimator_quality(outcomes: list[Outcome]) -> dict[str, dict[str, Any]]:
    """Per estimator and level (``steps``, ``problems``): AUROC for System 1's failure, how
    often it fires (a score above 0, or unknown) and how often System 1 had failed when it
    did (its precision), and the score distribution."""
    report: dict[str, dict[str, Any]] = {}
    names = sorted({n for o in outcomes for n in o.scores})
    for level, chosen in (
        ("steps", [o for o in outcomes if o.index >= 0]),
        ("problems", [o for o in outcomes if o.index < 0]),
    ):
        labels = [o.hard for o in chosen]
        for name in names:
            scores = [o.scores.get(name) for o in chosen]
            known = sorted(s for s in scores if s is not None)
            fired = [y for s, y in zip(scores, labels, strict=True) if s is None or s > 0]
            report.setdefault(name, {})[level] = {
                "auroc": auroc(scores, labels) if chosen else None,
                "n": len(scores),
                "hard": sum(labels),
                "fires": round(len(fired) / len(scores), 4) if scores else None,
                "precision_when_fired": round(sum(fired) / len(fired), 4) if fired else None,
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
    """Give the stated-difficulty scorer outcome-labelled demos from ``trainset``
    (balanced hard/easy steps) and report its step AUROC on ``valset`` before and after."""

    def step_auroc() -> float | None:
        found, _ = collect_outcomes(program, valset, ("self",), problems=False)
        return estimator_quality(found).get("self", {}).get("steps", {}).get("auroc")

    before = step_auroc()
    train, _ = collect_outcomes(program, trainset, ("self",), problems=False)
    hard = [o for o in train if o.hard]
    easy = [o for o in train if not o.hard]
    chosen = [o for pair in zip(hard, easy, strict=False) for o in pair][:max_demos]
    problems = {str(e.id): e.problem for e in trainset}
    program.assessor.assess.demos = [
        dspy.Example(
            problem=problems[o.example_id],
            earlier_steps="(see problem)",
            subproblem=o.subproblem,
            difficulty=HARD if o.hard else EASY,
        )
        for o in chosen
    ]
    by_example: dict[str, list[Outcome]] = {}
    for o in train:
        by_example.setdefault(o.example_id, []).append(o)
    program.assessor.assess_all.demos = [
        dspy.Example(
            problem=problems[k],
            subproblems=[o.subproblem for o in v],
            difficulties=[HARD if o.hard else EASY for o in v],
        )
        for k, v in by_example.items()
        if any(o.hard for o in v) and not all(o.hard for o in v)
    ][:max_demos]
    return {
        "auroc_before": before,
        "auroc_after": step_auroc(),
        "train_steps": len(train),
        "hard_share": round(len(hard) / len(train), 3) if train else None,
        "demos": len(program.assessor.assess.demos) + len(program.assessor.assess_all.demos),
    }
