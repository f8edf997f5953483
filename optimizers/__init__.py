"""Metrics, evaluation, routing search and the ``SCALEOptimizer`` teleprompter."""

from scale.optimizers.evaluate import Summary, evaluate, read_results, summarize
from scale.optimizers.metrics import CostAware, correctness, feedback
from scale.optimizers.optimizer import PROMPT_OPTIMIZERS, SCALEOptimizer, split_dev
from scale.optimizers.scorer import auroc, collect_outcomes, estimator_quality, tune_scorer
from scale.optimizers.search import Trial, best_trial, pareto_front, search_routing

__all__ = [
    "PROMPT_OPTIMIZERS",
    "CostAware",
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
    "pareto_front",
    "read_results",
    "search_routing",
    "split_dev",
    "summarize",
    "tune_scorer",
]
