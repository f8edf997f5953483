"""Stage 4: answer one sub-problem in context, or a whole problem."""

import dspy


class SolveStep(dspy.Signature):
    """Answer the current sub-problem of the math problem, using the given conditions and
    the answers already found for the earlier steps. Give the answer as a single final value
    or expression, with no units or explanation."""

    problem: str = dspy.InputField(desc="the whole problem, with all its given conditions")
    earlier_steps: str = dspy.InputField(desc="the solved earlier sub-problems and their answers")
    subproblem: str = dspy.InputField(desc="the sub-problem to answer now")
    answer: str = dspy.OutputField(
        desc="the final value or expression only, e.g. 42 or \\frac{3}{4}"
    )


class SolveProblem(dspy.Signature):
    """Solve the math problem. Give the answer as a single final value or expression, with no
    units or explanation."""

    problem: str = dspy.InputField()
    answer: str = dspy.OutputField(
        desc="the final value or expression only, e.g. 42 or \\frac{3}{4}"
    )
