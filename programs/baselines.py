"""Baselines with SCALE's output shape: one chain of thought, and voting over several."""

from __future__ import annotations

import time

from scale.models.adapter import final_answer
from scale.programs import profiles
from scale.programs.base import MathProgram, finish_step
from scale.programs.profiles import SystemProfile
from scale.programs.records import Fallback, Step
from scale.programs.solve import Solver


class CoT(MathProgram):
    """One greedy chain-of-thought call with the System 2 profile (its samples ignored)."""

    method = "cot"

    def __init__(self, system2: SystemProfile | None = None):
        super().__init__()
        self.system2 = system2 or profiles.system2()
        self.solver = Solver(self.system2, 2, whole=True)

    def solve(self, problem: str) -> tuple[list[Step], list[str], list[Fallback]]:
        started = time.perf_counter()
        with final_answer():
            reply = self.solver.reply(step=0, problem=problem)
        step = Step(problem, None, 2, reply.answer, samples=[reply])
        if reply.fallback is not None:
            step.fallbacks.append(reply.fallback)
        return [finish_step(step, None, started)], [], []


class Vote(MathProgram):
    """Self-consistency with the System 2 profile: chains sampled until its stop rule is
    satisfied (``fixed``: majority vote over ``samples`` chains; ``adaptive``:
    Adaptive-Consistency; ``window``: ESC), the math-equivalence majority answer wins."""

    method = "vote"

    def __init__(self, system2: SystemProfile | None = None):
        super().__init__()
        self.system2 = system2 or profiles.system2(samples=5)
        if self.system2.samples < 2:
            raise ValueError("voting needs a System 2 profile with samples >= 2")
        self.solver = Solver(self.system2, 2, whole=True)

    def solve(self, problem: str) -> tuple[list[Step], list[str], list[Fallback]]:
        started = time.perf_counter()
        with final_answer():
            pred = self.solver(step=0, problem=problem)
        step = Step(problem, None, 2, pred.answer, samples=pred.samples, notes=list(pred.notes))
        step.fallbacks = list(pred.fallbacks)
        return [finish_step(step, None, started)], [], []
