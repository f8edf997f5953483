"""Baselines with SCALE's output shape: one ChainOfThought, and a majority vote over several."""

from __future__ import annotations

import time

from scale.programs import profiles
from scale.programs.base import MathProgram, finish_step
from scale.programs.profiles import SystemProfile
from scale.programs.records import Step
from scale.programs.solve import majority, problem_solver

from scale.adapter import final_answer


class CoT(MathProgram):
    """One chain-of-thought call with the System 2 profile."""

    method = "cot"

    def __init__(self, system2: SystemProfile | None = None):
        super().__init__()
        self.system2 = system2 or profiles.system2()
        self.solver = problem_solver(self.system2, 2)

    def solve(self, problem: str) -> tuple[list[Step], list[str]]:
        started = time.perf_counter()
        with final_answer():
            pred = self.solver(step=0, problem=problem)
        step = Step(problem, None, 2, pred.answer, notes=pred.notes)
        return [finish_step(step, 0, started)], []


class Vote(MathProgram):
    """``samples`` chain-of-thought samples at ``temperature``; the math-equivalence majority
    answer wins."""

    method = "vote"

    def __init__(
        self, system2: SystemProfile | None = None, samples: int = 5, temperature: float = 0.7
    ):
        super().__init__()
        if samples < 1:
            raise ValueError("samples must be positive")
        self.system2 = system2 or profiles.system2()
        self.samples = samples
        self.temperature = temperature
        self.solver = problem_solver(self.system2, 2)

    def solve(self, problem: str) -> tuple[list[Step], list[str]]:
        started = time.perf_counter()
        with final_answer():
            answers = self.solver.sample(self.samples, self.temperature, step=0, problem=problem)
        answer, share = majority(answers)
        step = Step(
            problem,
            None,
            2,
            answer,
            notes=[f"{share:.2f} of {len(answers)} samples agree: {answers}"],
        )
        return [finish_step(step, 0, started)], []
