"""Stage 4: answer a whole problem or one sub-problem, at one of four compute levels.

``reasoning`` (System 2, and the CoT baseline) is the prompt the embedded model was trained
with; ``brief`` (System 1) reasons in a sentence or two and writes the calculation behind
its answer as one expression, which the project checks with SymPy; ``direct`` answers only;
``program`` writes a short SymPy program whose printed line, run in the OS sandbox
(``scale.sandbox``), is the answer.
"""

import dspy

ANSWER_DESC = "the final answer: a value or expression only, e.g. 42 or \\frac{3}{4}"
CALCULATION_DESC = (
    "the calculation that gives the answer, as one arithmetic expression in numbers only, "
    "e.g. (12 + 3) * 4 / 5"
)
REASONING_DESC = "reason step by step, then give the final answer"
PROGRAM_DESC = "a Python program that prints only the final answer, in one ```python block"


class SolveProblem(dspy.Signature):
    """Please reason step by step, and put your final answer within \\boxed{}."""

    problem: str = dspy.InputField()
    answer: str = dspy.OutputField(desc=ANSWER_DESC)


class SolveProblemBriefly(dspy.Signature):
    """You are a quick mental-math solver. Reply in this format, with no code and no other
    text:
    Reasoning: <one or two short sentences>
    Calculation: <one arithmetic expression that gives the answer, using only numbers>
    Answer: \\boxed{<the final answer>}"""

    problem: str = dspy.InputField()
    calculation: str = dspy.OutputField(desc=CALCULATION_DESC)
    answer: str = dspy.OutputField(desc=ANSWER_DESC)


class AnswerProblem(dspy.Signature):
    """Give only the final answer within \\boxed{}, with no explanation."""

    problem: str = dspy.InputField()
    answer: str = dspy.OutputField(desc=ANSWER_DESC)


class SolveStep(dspy.Signature):
    """Solve the current sub-problem of the math problem, using its given conditions and
    the answers already found for the earlier steps. Please reason step by step, and put
    your final answer within \\boxed{}."""

    problem: str = dspy.InputField(desc="the whole problem, with all its given conditions")
    earlier_steps: str = dspy.InputField(desc="the solved earlier sub-problems and their answers")
    subproblem: str = dspy.InputField(desc="the sub-problem to answer now")
    answer: str = dspy.OutputField(desc=ANSWER_DESC)


class SolveStepBriefly(dspy.Signature):
    """You are a quick mental-math solver. Answer the current sub-problem of the math
    problem, using its given conditions and the answers already found for the earlier
    steps. Reply in this format, with no code and no other text:
    Reasoning: <one or two short sentences>
    Calculation: <one arithmetic expression that gives the answer, using only numbers>
    Answer: \\boxed{<the answer>}"""

    problem: str = dspy.InputField(desc="the whole problem, with all its given conditions")
    earlier_steps: str = dspy.InputField(desc="the solved earlier sub-problems and their answers")
    subproblem: str = dspy.InputField(desc="the sub-problem to answer now")
    calculation: str = dspy.OutputField(desc=CALCULATION_DESC)
    answer: str = dspy.OutputField(desc=ANSWER_DESC)


class AnswerStep(dspy.Signature):
    """Give only the answer to the current sub-problem of the math problem within
    \\boxed{}, with no explanation, using the answers already found for the earlier steps."""

    problem: str = dspy.InputField(desc="the whole problem, with all its given conditions")
    earlier_steps: str = dspy.InputField(desc="the solved earlier sub-problems and their answers")
    subproblem: str = dspy.InputField(desc="the sub-problem to answer now")
    answer: str = dspy.OutputField(desc=ANSWER_DESC)


class WriteProgram(dspy.Signature):
    """You are a careful math assistant. Solve the problem by writing a short Python
    program. Use sympy for exact arithmetic (Rational, sqrt, solve, simplify) where it
    helps. The program must print only the final answer. Reply with the program in one
    ```python block."""

    problem: str = dspy.InputField()
    program: str = dspy.OutputField(desc=PROGRAM_DESC)


class WriteStepProgram(dspy.Signature):
    """You are a careful math assistant. Answer the current sub-problem of the math problem
    by writing a short Python program, using its given conditions and the answers already
    found for the earlier steps. Use sympy for exact arithmetic (Rational, sqrt, solve,
    simplify) where it helps. The program must print only the answer. Reply with the
    program in one ```python block."""

    problem: str = dspy.InputField(desc="the whole problem, with all its given conditions")
    earlier_steps: str = dspy.InputField(desc="the solved earlier sub-problems and their answers")
    subproblem: str = dspy.InputField(desc="the sub-problem to answer now")
    program: str = dspy.OutputField(desc=PROGRAM_DESC)


class FixProgram(dspy.Signature):
    """You are a careful math assistant. Your Python program for the problem did not print
    an answer; the error it gave is below. Reply with a corrected program, in one
    ```python block, that prints only the final answer."""

    problem: str = dspy.InputField()
    program: str = dspy.InputField(desc="the program that failed")
    error: str = dspy.InputField(desc="what running it gave")
    fixed_program: str = dspy.OutputField(desc=PROGRAM_DESC)


# (kind, whole problem?) -> signature
SIGNATURES: dict[tuple[str, bool], type[dspy.Signature]] = {
    ("reasoning", True): SolveProblem,
    ("brief", True): SolveProblemBriefly,
    ("direct", True): AnswerProblem,
    ("reasoning", False): SolveStep,
    ("brief", False): SolveStepBriefly,
    ("direct", False): AnswerStep,
    ("program", True): WriteProgram,
    ("program", False): WriteStepProgram,
}
