"""``SCALEOptimizer``: tune the stage prompts with a DSPy optimizer, then the routing by search
on a validation set, and optionally the difficulty scorer with outcome-labelled demos."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import dspy
from dspy.teleprompt import Teleprompter
from scale.optimizers.metrics import CostAware, correctness, feedback
from scale.optimizers.scorer import tune_scorer
from scale.optimizers.search import (
    DEFAULT_THRESHOLDS,
    Trial,
    best_trial,
    pareto_front,
    search_routing,
)
from scale.programs.route import ROUTING_ESTIMATORS
from scale.programs.scale import SCALE

from scale.tracking import Tracker

PROMPT_OPTIMIZERS = ("none", "bootstrap", "mipro", "gepa")


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

    1. Prompts and demos of the stage predictors, with ``prompt_optimizer``:
       ``bootstrap`` (BootstrapFewShot; a second pass on a never-decomposing copy gives the
       problem-level solver demos), ``mipro`` (MIPROv2), ``gepa`` (GEPA) or ``none``.
    2. Optionally (``tune_scorer``) the difficulty scorer: demos labelled by outcome (a step
       is hard when System 1 got it wrong or was unstable), with AUROC before/after.
    3. Routing: every combination of ``estimators`` x ``decompose_thresholds`` x
       ``thresholds`` is evaluated on the validation set and the best by ``objective`` kept.

    After ``compile``, ``trials``, ``pareto`` and ``report`` describe what was tried."""

    def __init__(
        self,
        *,
        prompt_optimizer: str = "none",
        objective: CostAware | None = None,
        estimators: Sequence[str] = ROUTING_ESTIMATORS,
        decompose_thresholds: Sequence[float | None] = (None,),
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        mode: str = "threshold",
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
        self.estimators = tuple(estimators)
        self.decompose_thresholds = tuple(decompose_thresholds)
        self.thresholds = tuple(thresholds)
        self.mode = mode
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
        program = self._tune_prompts(student.deepcopy(), trainset, valset, teacher)
        if self.tune_scorer:
            self.report["scorer"] = tune_scorer(program, trainset, valset, max_demos=self.max_demos)
        self.trials = search_routing(
            program,
            valset,
            estimators=self.estimators,
            decompose_thresholds=self.decompose_thresholds,
            thresholds=self.thresholds,
            mode=self.mode,
            objective=self.objective,
            threads=self.threads,
            tracker=self.tracker,
            progress=self.progress,
        )
        best = best_trial(self.trials)
        self.pareto = pareto_front(self.trials)
        program.routing.load_state({**program.routing.dump_state(), **best.settings()})
        self.report |= {
            "best": best.to_dict(),
            "prompt_optimizer": self.prompt_optimizer,
            "train": len(trainset),
            "val": len(valset),
            "spent_tokens": sum(t.spent_tokens for t in self.trials),
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
            # the problem-level solver runs only when the gate declines to decompose, so the
            # pass above never traces it: bootstrap it on its own, as a never-decomposing copy
            whole_teacher = _never_decomposing(teacher) if isinstance(teacher, SCALE) else teacher
            tuned.whole = self._bootstrap(
                _never_decomposing(program), trainset, whole_teacher
            ).whole
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


def _never_decomposing(program: SCALE) -> SCALE:
    """A copy of ``program`` whose gate always solves the problem in one step."""
    copy = program.deepcopy()
    copy.routing.decompose_threshold = 1.0
    return copy
