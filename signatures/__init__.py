"""Typed DSPy signatures of the SCALE stages; each docstring is the stage's instruction."""

from scale.signatures.decompose import Decompose, SelectDecomposition
from scale.signatures.difficulty import AssessDifficulties, AssessDifficulty
from scale.signatures.solve import SolveProblem, SolveStep, WriteProgram, WriteStepProgram

__all__ = [
    "AssessDifficulties",
    "AssessDifficulty",
    "Decompose",
    "SelectDecomposition",
    "SolveProblem",
    "SolveStep",
    "WriteProgram",
    "WriteStepProgram",
]
