"""Stage 4: answer one sub-problem in context, or a whole problem."""

import dspy

ANSWER_DESC = "the final value or expression only, e.g. 42 or \\frac{3}{4}; no units or words"
REASONING_DESC = (
    "reason step by step, computing each quantity explicitly, and put your final answer "
    "within \\boxed{}"
)


class SolveStep(dspy.Signature):
    """Answer the current sub-problem of the math problem, using the given conditions and
    the answers already found for the earlier steps."""

    problem: str = dspy.InputField(desc="the whole problem, with all its given conditions")
    earlier_steps: str = dspy.InputField(desc="the solved earlier sub-problems and their answers")
    subproblem: str = dspy.InputField(desc="the sub-problem to answer now")
    answer: str = dspy.OutputField(desc=ANSWER_DESC)


class SolveProblem(dspy.Signature):
    """Solve the math problem."""

    problem: str = dspy.InputField()
    answer: str = dspy.OutputField(desc=ANSWER_DESC)
