"""Metrics, evaluation, results files, replays, routing search and ``SCALEOptimizer``."""

from scale.harness.evaluate import Summary, evaluate, in_parallel, run_example, summarize
from scale.harness.replay import greedy_first, replay, replay_rows
from scale.harness.results import ResultRow, ResultsFile, ResultsFileError, read_results
from scale.optimizers.metrics import CostAware, correctness, feedback
from scale.optimizers.optimizer import PROMPT_OPTIMIZERS, SCALEOptimizer, split_dev
from scale.optimizers.outcomes import (
    Outcome,
    auroc,
    collect_outcomes,
    estimator_quality,
    tune_scorer,
)
from scale.optimizers.search import Grid, Trial, best_trial, pareto_front, search_routing, ties

__all__ = [
    "PROMPT_OPTIMIZERS",
    "CostAware",
    "Grid",
    "Outcome",
    "ResultRow",
    "ResultsFile",
    "ResultsFileError",
    "SCALEOptimizer",
    "Summary",
    "Trial",
    "auroc",
    "best_trial",
    "collect_outcomes",
    "correctness",
    "estimator_quality",
    "evaluate",
    "feedback",
    "greedy_first",
    "in_parallel",
    "pareto_front",
    "read_results",
    "replay",
    "replay_rows",
    "run_example",
    "search_routing",
    "split_dev",
    "summarize",
    "ties",
    "tune_scorer",
]
