"""``scale eval --budget-tokens``: the dataset-level budget policy on a live model.

``LiveSampler`` draws a round's replies in parallel with one ``Solver`` (System 2's
profile: the greedy reply, then rollouts 1.. at the sample temperature) and journals each
reply as it lands, so a stopped run resumes with the same choices: the policy is
deterministic in the replies it has seen, and a resumed run is served them from the
journal before any new call. The results file then holds one row per problem.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import dspy

from scale.grading.verify import is_equivalent
from scale.harness.evaluate import Summary, in_parallel, summarize
from scale.harness.results import ResultRow, ResultsFile
from scale.models.adapter import final_answer
from scale.models.lm import track
from scale.programs.budget import Allocation, BudgetPolicy, Draw
from scale.programs.profiles import SystemProfile
from scale.programs.solve import Solver

PROMPT_OVERHEAD = 512  # tokens of instructions and chat template, a bound
JOURNAL_KEY = "scale_budget_draw"


class LiveSampler:
    """Replies from ``profile``'s model for ``examples``, journaled to ``journal``."""

    def __init__(
        self,
        profile: SystemProfile,
        examples: list[dspy.Example],
        journal: ResultsFile,
        threads: int = 4,
    ):
        self.solver = Solver(profile, 2, whole=True)
        self.examples = examples
        self.journal = journal
        self.threads = threads
        self.calls = 0
        self._lock = threading.Lock()
        ids = {str(e.id): i for i, e in enumerate(examples)}
        self.stored: dict[tuple[int, int], Draw] = {}
        for record in journal.records:
            draw = record.get(JOURNAL_KEY)
            if isinstance(draw, dict) and str(draw.get("id")) in ids:
                key = (ids[str(draw["id"])], int(draw["index"]))
                self.stored[key] = Draw(
                    str(draw["answer"]), int(draw["prompt_tokens"]), int(draw["completion_tokens"])
                )

    def prompt_tokens(self, problem: int) -> int:
        """A bound: a token is at least one character."""
        return len(str(self.examples[problem].problem)) + PROMPT_OVERHEAD

    def draw(self, requests: list[tuple[int, int]]) -> list[Draw | None]:
        return list(in_parallel(self._one, requests, self.threads))

    def _one(self, request: tuple[int, int]) -> Draw:
        problem, index = request
        if request in self.stored:
            return self.stored[request]
        example = self.examples[problem]
        with track(), final_answer():
            reply = self.solver.reply(step=0, rollout=index or None, problem=str(example.problem))
        draw = Draw(reply.answer, reply.prompt_tokens, reply.completion_tokens)
        with self._lock:
            self.calls += 1
        self.journal.append({JOURNAL_KEY: {"id": str(example.id), "index": index, **draw.__dict__}})
        return draw


def _row(example: dspy.Example, allocation: Allocation) -> ResultRow:
    samples = [d.__dict__ for d in allocation.draws]
    prompt = sum(d.prompt_tokens for d in allocation.draws)
    completion = sum(d.completion_tokens for d in allocation.draws)
    answer = allocation.answer
    step = {"subproblem": str(example.problem), "system": 2, "answer": answer, "samples": samples}
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "lm_calls": len(allocation.draws),
    }
    error = None if allocation.draws else "the budget ran out before this problem's first reply"
    return ResultRow(
        id=str(example.id),
        gold=str(example.answer),
        predicted=answer,
        correct=bool(allocation.draws) and is_equivalent(str(example.answer), answer),
        error=error,
        steps=[step],
        usage=usage,
    )


def run_budget(
    profile: SystemProfile,
    examples: list[dspy.Example],
    *,
    budget_tokens: int,
    out: str | Path,
    identity: dict[str, Any],
    resume: bool = False,
    cap: int = 8,
    threads: int = 4,
) -> tuple[list[ResultRow], Summary, LiveSampler]:
    """Spend at most ``budget_tokens`` on ``examples`` (see ``BudgetPolicy``); each reply is
    journaled to ``out`` as it lands and the problems' rows follow at the end. Returns the
    rows, their summary and the sampler (its ``calls``: the model calls this run made)."""
    journal = ResultsFile(out, identity=identity | {"budget_tokens": budget_tokens}, resume=resume)
    try:
        done = {r.id for r in journal.done}
        sampler = LiveSampler(profile, examples, journal, threads)
        policy = BudgetPolicy(budget_tokens, profile.max_tokens or 0, cap=cap)
        allocations = policy.run(sampler, len(examples))
        rows = [_row(e, a) for e, a in zip(examples, allocations, strict=True)]
        for row in rows:
            if row.id not in done:
                journal.write(row)
    finally:
        journal.close()
    return rows, summarize(rows, 0.0), sampler
