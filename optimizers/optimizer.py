"""``SCALEOptimizer``: tune the stage prompts with a DSPy optimizer, then the routing and
System 2's knobs by search on a validation set, and optionally the difficulty scorer with
outcome-labelled demos."""

from __future__ import annotations

import random
import warnings
from typing import Any

import dspy
from dspy.teleprompt import Teleprompter

from scale.optimizers.metrics import CostAware, correctness, feedback
from scale.optimizers.outcomes import tune_scorer
from scale.optimizers.search import (
    Grid,
    Trial,
    apply_settings,
    best_trial,
    pareto_front,
    search_routing,
    ties,
)
from scale.programs.route import Routing
from scale.programs.scale import SCALE
from scale.tracking import Tracker

PROMPT_OPTIMIZERS = ("none", "bootstrap", "mipro", "gepa")
MIN_VALSET = 30  # smaller validation splits rarely separate the trials (see ``ties``)


def split_dev(
    examples: list[dspy.Example], val_fraction: float = 0.5, seed: int = 0
) -> tuple[list[dspy.Example], list[dspy.Example]]:
    """A deterministic train/validation split (used when no valset is given)."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    cut = max(1, int(len(shuffled) * (1 - val_fraction)))
    return shuffled[:cut], shuffled[cut:] or shuffled[:1]


class SCALEOptimizer(Teleprompter):
    """Compile a SCALE program on a dev set.

    1. Prompts and demos of the stage predictors, with ``prompt_optimizer``: ``bootstrap``
       (BootstrapFewShot; extra passes that answer every problem whole give the
       problem-level solvers demos too), ``mipro`` (MIPROv2), ``gepa`` (GEPA) or ``none``.
    2. Optionally (``tune_scorer``) the stated-difficulty scorer: demos labelled by
       outcome, with AUROC before/after.
    3. Routing and System 2's knobs: every distinct setting of ``grid`` is evaluated on
       the validation set and the best by ``objective`` kept (ties: fewer tokens).

    After ``compile``, ``trials``, ``pareto`` and ``report`` (best trial, ties, cache reuse)
    describe what was tried."""

    def __init__(
        self,
        *,
        prompt_optimizer: str = "none",
        objective: CostAware | None = None,
        grid: Grid | None = None,
        tune_scorer: bool = False,
        max_demos: int = 2,
        threads: int = 1,
        tracker: Tracker | None = None,
        progress: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if prompt_optimizer not in PROMPT_OPTIMIZERS:
            raise ValueError(f"prompt optimizer must be one of {PROMPT_OPTIMIZERS}")
        self.prompt_optimizer = prompt_optimizer
        self.objective = objective or CostAware()
        self.grid = grid or Grid()
        self.tune_scorer = tune_scorer
        self.max_demos = max_demos
        self.threads = threads
        self.tracker = tracker
        self.progress = progress
        self.seed = seed
        self.trials: list[Trial] = []
        self.pareto: list[Trial] = []
        self.report: dict[str, Any] = {}

    def compile(
        self,
        student: SCALE,
        *,
        trainset: list[dspy.Example],
        teacher: dspy.Module | None = None,
        valset: list[dspy.Example] | None = None,
        **kwargs: Any,
    ) -> SCALE:
        if not isinstance(student, SCALE):
            raise TypeError("SCALEOptimizer compiles SCALE programs")
        if not trainset:
            raise ValueError("trainset is empty")
        if valset is None:
            trainset, valset = split_dev(trainset, seed=self.seed)
        if len(valset) < MIN_VALSET:
            warnings.warn(
                f"a validation split of {len(valset)} problems rarely separates routing "
                f"trials; use at least {MIN_VALSET} (the report counts the ties)",
                stacklevel=2,
            )
        program = self._tune_prompts(student.deepcopy(), trainset, valset, teacher)
        if self.tune_scorer:
            self.report["scorer"] = tune_scorer(program, trainset, valset, max_demos=self.max_demos)
        self.trials = search_routing(
            program,
            valset,
            self.grid,
            objective=self.objective,
            threads=self.threads,
            tracker=self.tracker,
            progress=self.progress,
        )
        best = best_trial(self.trials)
        self.pareto = pareto_front(self.trials)
        apply_settings(program, best.settings, program.routing.dump_state())
        spent = sum(t.spent_tokens for t in self.trials)
        total = sum(t.total_tokens for t in self.trials)
        self.report |= {
            "best": best.to_dict(),
            "ties": ties(self.trials, len(valset)),
            "prompt_optimizer": self.prompt_optimizer,
            "train": len(trainset),
            "val": len(valset),
            "trials": len(self.trials),
            "spent_tokens": spent,
            "tokens_if_uncached": total,
            "cache_saving": round(1 - spent / total, 4) if total else None,
        }
        program._compiled = True
        return program

    def _tune_prompts(
        self,
        program: SCALE,
        trainset: list[dspy.Example],
        valset: list[dspy.Example],
        teacher: dspy.Module | None,
    ) -> SCALE:
        if self.prompt_optimizer == "none":
            return program
        if self.prompt_optimizer == "bootstrap":
            tuned = self._bootstrap(program, trainset, teacher)
            # the problem-level solvers run only when a problem is not decomposed, so the
            # pass above may never trace them: bootstrap each on a copy that answers every
            # problem whole with that system
            for attribute, routing in (
                ("whole2", Routing(estimator="none", gate=None, decompose=False)),
                ("whole1", Routing(estimator="none", gate=1.0)),
            ):
                whole_teacher = (
                    _answering_whole(teacher, routing) if isinstance(teacher, SCALE) else teacher
                )
                copy = self._bootstrap(_answering_whole(program, routing), trainset, whole_teacher)
                setattr(tuned, attribute, getattr(copy, attribute))
        elif self.prompt_optimizer == "mipro":
            optimizer = dspy.MIPROv2(
                metric=correctness,
                auto="light",
                max_bootstrapped_demos=self.max_demos,
                max_labeled_demos=0,
                num_threads=self.threads,
                seed=self.seed,
                prompt_model=program.system2.lm,
                task_model=program.system1.lm,
            )
            tuned = optimizer.compile(program, trainset=trainset, valset=valset)
        else:
            optimizer = dspy.GEPA(
                metric=feedback,
                auto="light",
                num_threads=self.threads,
                reflection_lm=program.system2.lm,
                seed=self.seed,
            )
            tuned = optimizer.compile(program, trainset=trainset, valset=valset)
        tuned._compiled = False  # routing search and scorer tuning still run on it
        return tuned

    def _bootstrap(
        self, program: SCALE, trainset: list[dspy.Example], teacher: dspy.Module | None
    ) -> SCALE:
        optimizer = dspy.BootstrapFewShot(
            metric=correctness,
            max_bootstrapped_demos=self.max_demos,
            max_labeled_demos=0,
            max_rounds=1,
        )
        return optimizer.compile(program, trainset=trainset, teacher=teacher)


def _answering_whole(program: SCALE, routing: Routing) -> SCALE:
    """A copy of ``program`` that routes with ``routing`` (every problem answered whole)."""
    copy = program.deepcopy()
    copy.routing = routing
    return copy
