"""Problem-level allocation recipes replayed on recorded calls, for ``scale compile --replay``.

A recipe is what the problem-level program does: an estimator rates System 1's greedy reply
(``none``: no rating, every problem to System 2; ``agreement``: greedy reply and one sample;
a logprob confidence; ``calibrated``), problems at or below the gate keep System 1's answer,
the others go whole to System 2, greedy-first Adaptive-Consistency that goes on from the
replies already made (and counts a program's answer as a chain). Every call a recipe makes
is one the recordings hold: CoT's greedy reply (``cot.jsonl``, with token logprobs), vote's
sampled chains (``vote.jsonl``, rollouts 1..) and, optionally, the greedy program
(``pot.jsonl``), so replaying a recipe is what the program would do online, token for token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scale.grading.verify import is_equivalent
from scale.harness.results import ResultRow, ResultsFileError, read_header, read_results
from scale.programs.calibrated import Calibration, gate_features
from scale.programs.logprobs import doubt
from scale.programs.records import Fallback, Sample
from scale.programs.stopping import StopRule, majority

if TYPE_CHECKING:
    from scale.programs.scale import SCALE

RAW = {"confidence": "lowest", "confidence-mean": "mean", "confidence-total": "total"}
REPLAYABLE = ("none", "agreement", *RAW, "calibrated")
MAX_ANSWER = 1000  # characters of a recorded answer that are compared


@dataclass(frozen=True)
class Cost:
    """What some calls spent: tokens (prompt and completion), generated tokens, calls and
    the model seconds the server timed."""

    tokens: int = 0
    generated: int = 0
    calls: int = 0
    seconds: float = 0.0

    @classmethod
    def of(cls, replies: Sequence[Sample]) -> Cost:
        return cls(
            sum(r.prompt_tokens + r.completion_tokens for r in replies),
            sum(r.completion_tokens for r in replies),
            len(replies),
            sum(r.seconds for r in replies),
        )

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.tokens + other.tokens,
            self.generated + other.generated,
            self.calls + other.calls,
            self.seconds + other.seconds,
        )


@dataclass(frozen=True)
class RecordedProblem:
    """One problem's recorded calls: the greedy reply, the sampled chains after it
    (rollouts 1..), and the greedy program with what it cost (None where not recorded)."""

    id: str
    gold: str
    greedy: Sample
    rollouts: tuple[Sample, ...]
    program: Sample | None = None
    program_cost: Cost = Cost()  # the program's calls, its correction's included


@dataclass(frozen=True)
class Recipe:
    """An estimator, its gate (None: no gate) and System 2's stop rule; ``calibration``
    for the calibrated estimator; ``program`` whether the greedy program is written."""

    estimator: str
    gate: float | None
    rule: StopRule
    calibration: Calibration | None = field(default=None, compare=False)

    @property
    def program(self) -> bool:
        return self.calibration is not None and self.calibration.uses_program

    @property
    def label(self) -> str:
        if self.gate is not None and self.gate >= 1:
            return "CoT (every problem on System 1)"
        name = self.estimator
        if self.calibration is not None:
            name += "+program" if self.program else ""
        gate = "no gate" if self.gate is None else f"gate {self.gate:.3g}"
        return f"{name}, {gate}, {self.rule.describe()}"

    def settings(self) -> dict[str, Any]:
        """The routing and System 2 knobs that make a program run this recipe."""
        routing = {"estimator": self.estimator, "gate": self.gate, "decompose": False}
        routing["calibration"] = self.calibration.to_dict() if self.calibration else None
        system2 = {
            "samples": self.rule.cap,
            "stop": self.rule.kind,
            "confidence": self.rule.confidence,
            "greedy_first": True,
        }
        return {"routing": routing, "system2": system2}


@dataclass(frozen=True)
class Played:
    """What a recipe did on one problem."""

    system: int
    answer: str
    correct: bool
    cost: Cost
    score: float | None

    @property
    def tokens(self) -> int:
        return self.cost.tokens


def score(
    recipe: Recipe,
    problem: RecordedProblem,
    max_tokens: int | None,
    features: dict[str, float] | None = None,
) -> float | None:
    """The recipe's difficulty for ``problem`` (None: unknown, treated as hardest);
    ``features``: its ``gate_features``, if already read."""
    if recipe.estimator == "none":
        return None
    if recipe.estimator == "agreement":
        answers = [problem.greedy.answer, problem.rollouts[0].answer]
        return round(1.0 - majority(answers)[1], 6)
    if recipe.estimator in RAW:  # rounded as the online estimators round
        found = doubt(problem.greedy.logprobs or [], RAW[recipe.estimator])
        return None if found is None else round(found, 6)
    if recipe.calibration is None:
        raise ValueError("a calibrated recipe needs its calibration")
    if features is None:
        program = problem.program if recipe.program else None
        features = gate_features(problem.greedy, program, max_tokens)
    return round(1.0 - recipe.calibration.probability(features), 6)


def play(
    recipe: Recipe,
    problem: RecordedProblem,
    difficulty: float | None,
    memo: dict[tuple, tuple[str, Cost]] | None = None,
) -> Played:
    """``recipe`` on ``problem`` given its ``difficulty`` (from ``score``); ``memo`` keeps
    System 2's outcomes for other recipes on the same problems (voting compares answers
    with math-verify, which is slow)."""
    replies = [problem.greedy]
    if recipe.estimator == "agreement":
        replies.append(problem.rollouts[0])
    cost = Cost.of(replies)
    votes = []
    if recipe.program and problem.program is not None:
        cost += problem.program_cost
        votes = [problem.program] if problem.program.answer else []
    gated = recipe.gate is not None and (1.0 if difficulty is None else difficulty) <= recipe.gate
    if gated:
        answer = problem.greedy.answer or (votes[0].answer if votes else "")
        return Played(1, answer, is_right(problem.gold, answer), cost, difficulty)
    key = (problem.id, recipe.rule, len(replies), bool(votes))
    if memo is None or key not in memo:
        found = _system2(problem, recipe.rule, [*replies, *votes], len(replies))
        if memo is None:
            memo = {}
        memo[key] = found
    answer, more = memo[key]
    return Played(2, answer, is_right(problem.gold, answer), cost + more, difficulty)


def _system2(
    problem: RecordedProblem, rule: StopRule, chains: list[Sample], replies: int
) -> tuple[str, Cost]:
    """System 2 going on from ``chains`` (``replies`` of them CoT replies): its answer, and
    the cost of the chains it adds (at least one, then until ``rule`` stops)."""
    more = iter(problem.rollouts[replies - 1 :])
    added = []
    while len(chains) < rule.cap:
        reply = next(more, None)
        if reply is None:
            raise ValueError(f"{problem.id}: {rule.describe()} needs more recorded chains")
        chains.append(reply)
        added.append(reply)
        if rule.done([c.answer for c in chains]):
            break
    return majority([c.answer for c in chains])[0], Cost.of(added)


@cache
def is_right(gold: str, answer: str) -> bool:
    """Whether ``answer`` is equivalent to ``gold`` (memoized: recipes share answers)."""
    return bool(answer) and is_equivalent(gold, answer)


def _sample(data: Any, where: str) -> Sample:
    """A recorded sample as the program made it, every field checked."""
    if not isinstance(data, dict) or not isinstance(data.get("answer", ""), str):
        raise ResultsFileError(f"{where}: a sample must be an object with a text answer")
    counts = [data.get(k, 0) for k in ("prompt_tokens", "completion_tokens")]
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 10**7 for c in counts):
        raise ResultsFileError(f"{where}: token counts must be counts")
    pairs = data.get("logprobs") or []
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[1], (int, float)) for p in pairs
    ):
        raise ResultsFileError(f"{where}: logprobs must be [token, logprob] pairs")
    fallback = data.get("fallback")
    known = {f.value for f in Fallback}
    calculation = data.get("calculation")
    return Sample(
        answer=data.get("answer", "")[:MAX_ANSWER],
        prompt_tokens=counts[0],
        completion_tokens=counts[1],
        seconds=_seconds(data.get("seconds", 0.0)),
        calculation=calculation[:MAX_ANSWER] if isinstance(calculation, str) else None,
        logprobs=[(str(t), float(lp)) for t, lp in pairs if math.isfinite(lp)] or None,
        fallback=Fallback(fallback) if fallback in known else None,
    )


def _usage(row: ResultRow) -> Cost:
    """A recorded row's whole cost (a program's correction included), checked."""
    usage = row.usage if isinstance(row.usage, dict) else {}
    values = [usage.get(k, 0) for k in ("total_tokens", "completion_tokens", "lm_calls")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**8 for v in values):
        raise ResultsFileError(f"{row.id}: the recorded usage must hold counts")
    seconds = row.seconds if isinstance(row.seconds, (int, float)) else 0.0
    return Cost(values[0], values[1], max(values[2], 1), float(min(max(seconds, 0.0), 1e7)))


def _seconds(value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e7
    return float(value) if ok else 0.0


def _by_id(path: Path) -> dict[str, ResultRow]:
    return {row.id: row for row in read_results(path)}


def load_recorded(
    folder: str | Path, golds: dict[str, str], programs: str | Path | None = None
) -> tuple[list[RecordedProblem], int | None]:
    """The problems of ``golds`` (id -> gold answer) as ``folder`` recorded them, in that
    order, and the greedy reply's ``max_tokens``; ``programs``: a ``pot.jsonl`` of greedy
    programs. Raises ``ResultsFileError`` naming what is missing."""
    folder = Path(folder)
    for name in ("cot.jsonl", "vote.jsonl"):
        if not (folder / name).is_file():
            raise ResultsFileError(
                f"{folder} holds no {name}: --replay takes a folder of recorded calls (CoT's "
                "greedy replies with logprobs in cot.jsonl, sampled chains in vote.jsonl)"
            )
    systems = read_header(folder / "cot.jsonl").get("systems") or {}
    max_tokens = next(iter(systems.values()), {}).get("max_tokens")
    cot, vote = _by_id(folder / "cot.jsonl"), _by_id(folder / "vote.jsonl")
    pot = _by_id(Path(programs)) if programs else {}
    missing = [i for i in golds if i not in cot or i not in vote or (programs and i not in pot)]
    if missing:
        raise ResultsFileError(
            f"{len(missing)} of the {len(golds)} problems are not recorded in {folder}"
            f"{' and ' + str(programs) if programs else ''} (first: {missing[0]!r})"
        )
    problems = []
    for id_, gold in golds.items():
        first = cot[id_].recorded_samples()[:1]
        chains = vote[id_].recorded_samples()[1:]
        if not first or not chains:
            raise ResultsFileError(f"{folder}: {id_!r} has no recorded greedy reply or chains")
        program, program_cost = None, Cost()
        if id_ in pot and pot[id_].recorded_samples():
            program = _sample(pot[id_].recorded_samples()[0], f"{programs}: {id_}")
            program_cost = _usage(pot[id_])
        problems.append(
            RecordedProblem(
                id=id_,
                gold=gold,
                greedy=_sample(first[0], f"{folder / 'cot.jsonl'}: {id_}"),
                rollouts=tuple(_sample(s, f"{folder / 'vote.jsonl'}: {id_}") for s in chains),
                program=program,
                program_cost=program_cost,
            )
        )
    return problems, max_tokens if isinstance(max_tokens, int) else None


def recipe_of(program: SCALE) -> Recipe:
    """The recipe a problem-level SCALE program runs (``ValueError`` for one that cannot
    be replayed on recorded calls: it decomposes, or its System 2 starts afresh)."""
    routing, system2 = program.routing, program.system2
    problem_level = not routing.decompose or (routing.gate is not None and routing.gate >= 1)
    problems = []
    if not problem_level:
        problems.append("it decomposes problems (replays are of problem-level programs)")
    if routing.estimator not in REPLAYABLE:
        problems.append(f"its estimator {routing.estimator!r} is not one of {REPLAYABLE}")
    if routing.estimator == "agreement" and program.agreement_samples != 2:
        problems.append("its agreement estimator uses more than one sample")
    if system2.stop != "adaptive" or not system2.greedy_first:
        problems.append("its System 2 is not greedy-first Adaptive-Consistency")
    if not system2.makes_same_calls(program.system1):
        problems.append("its System 2 asks otherwise than System 1")
    if problems:
        raise ValueError("this program cannot be replayed: " + "; ".join(problems))
    calibration = None
    if routing.estimator == "calibrated":
        calibration = Calibration.from_dict(routing.calibration)
    return Recipe(routing.estimator, routing.gate, system2.stop_rule, calibration)


def apply_recipe(program: SCALE, recipe: Recipe) -> None:
    """Set ``program``'s routing and System 2 knobs so that it runs ``recipe``."""
    settings = recipe.settings()
    program.routing.load_state({**program.routing.dump_state(), **settings["routing"]})
    for knob, value in settings["system2"].items():
        setattr(program.system2, knob, value)
    _ = program.system2.stop_rule  # raises on an invalid combination
