"""Stage 2: how hard is a sub-problem (0 easy .. 1 hard)."""

import dspy

_RUBRIC = """
    0.0 to 0.5: a middle-school student with the right knowledge answers it quickly.
    0.5 to 1.0: hard even for a strong high-school or college student; it needs careful,
    multi-step reasoning."""


class AssessDifficulty(dspy.Signature):
    __doc__ = f"""Rate how hard the current sub-problem is to answer correctly, given the math
    problem and the earlier sub-problems (with their answers where known).
    {_RUBRIC}"""

    problem: str = dspy.InputField()
    earlier_steps: str = dspy.InputField(desc="earlier sub-problems, with answers where known")
    subproblem: str = dspy.InputField(desc="the sub-problem to rate")
    difficulty: float = dspy.OutputField(desc="the difficulty, a number between 0 and 1")


class AssessDifficulties(dspy.Signature):
    __doc__ = f"""Rate how hard each sub-problem of the math problem is to answer correctly,
    in order, one score per sub-problem.
    {_RUBRIC}"""

    problem: str = dspy.InputField()
    subproblems: list[str] = dspy.InputField()
    difficulties: list[float] = dspy.OutputField(
        desc="one difficulty (a number between 0 and 1) per sub-problem, as a numbered list"
    )
