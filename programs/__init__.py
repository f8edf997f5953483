"""SCALE and its baselines as DSPy modules: one module per stage, composed in ``SCALE``."""

from scale.programs.base import MathProgram, ProblemError, clean_problem, listening
from scale.programs.baselines import CoT, Vote
from scale.programs.decompose import Decomposer
from scale.programs.difficulty import ConsistencyEstimator, SelfEstimator, expected_scores
from scale.programs.io import ProgramFileError, read_program, save_program
from scale.programs.presets import METHODS, PRESETS, build_program
from scale.programs.profiles import SystemProfile, system1, system2
from scale.programs.records import Rating, Step
from scale.programs.route import Routing, RoutingError, route_budget, route_threshold
from scale.programs.scale import SCALE
from scale.programs.solve import Solver, majority

__all__ = [
    "METHODS",
    "PRESETS",
    "SCALE",
    "CoT",
    "ConsistencyEstimator",
    "Decomposer",
    "MathProgram",
    "ProblemError",
    "ProgramFileError",
    "Rating",
    "Routing",
    "RoutingError",
    "SelfEstimator",
    "Solver",
    "Step",
    "SystemProfile",
    "Vote",
    "build_program",
    "clean_problem",
    "expected_scores",
    "listening",
    "majority",
    "read_program",
    "route_budget",
    "route_threshold",
    "save_program",
    "system1",
    "system2",
]
