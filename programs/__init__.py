"""SCALE and its baselines as DSPy modules: one module per stage, composed in ``SCALE``."""

from scale.programs.base import MathProgram, ProblemError, clean_problem
from scale.programs.baselines import CoT, Vote
from scale.programs.calibrated import Calibration, CalibrationError
from scale.programs.callbacks import ProgressCallback, reporting_to
from scale.programs.decompose import Decomposer
from scale.programs.estimators import ESTIMATORS, build_estimator, check_estimator
from scale.programs.evidence import Estimator, Evidence
from scale.programs.io import (
    OverlapError,
    ProgramFileError,
    read_program,
    refuse_overlap,
    save_program,
)
from scale.programs.profiles import SystemProfile, system1, system2
from scale.programs.records import Fallback, Rating, Sample, Step
from scale.programs.route import Routing, RoutingError, route_budget, route_threshold
from scale.programs.scale import SCALE
from scale.programs.solve import Solver
from scale.programs.spec import METHODS, PRESETS, ProgramSpec, build_program
from scale.programs.stated import Assessor
from scale.programs.stopping import StopRule, majority, tally

__all__ = [
    "ESTIMATORS",
    "METHODS",
    "PRESETS",
    "SCALE",
    "Assessor",
    "Calibration",
    "CalibrationError",
    "CoT",
    "Decomposer",
    "Estimator",
    "Evidence",
    "Fallback",
    "MathProgram",
    "OverlapError",
    "ProblemError",
    "ProgramFileError",
    "ProgramSpec",
    "ProgressCallback",
    "Rating",
    "Routing",
    "RoutingError",
    "Sample",
    "Solver",
    "Step",
    "StopRule",
    "SystemProfile",
    "Vote",
    "build_estimator",
    "build_program",
    "check_estimator",
    "clean_problem",
    "majority",
    "read_program",
    "refuse_overlap",
    "reporting_to",
    "route_budget",
    "route_threshold",
    "save_program",
    "system1",
    "system2",
    "tally",
]
