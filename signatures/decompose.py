"""Stage 1: split a problem into sub-problems, and pick the best of several splits."""

import dspy


class Decompose(dspy.Signature):
    """Break the math problem into an ordered list of sub-problems.

    Each sub-problem states WHAT to establish (a quantity, a value, an expression), not how,
    and solves nothing: no numbers are computed in it. Later sub-problems may rely on the
    results of earlier ones. The last sub-problem is exactly the question the problem asks.
    Use as few sub-problems as the problem needs (usually 2 to 4), written as a numbered
    list, one per line."""

    problem: str = dspy.InputField()
    subproblems: list[str] = dspy.OutputField(
        desc="the sub-problems in order, the last one being the question actually asked"
    )


class SelectDecomposition(dspy.Signature):
    """Choose the best candidate decomposition of the math problem: logically correct,
    clear, complete, relevant to the question asked, and as simple as possible."""

    problem: str = dspy.InputField()
    candidates: str = dspy.InputField(desc="candidate decompositions, numbered from 0")
    best: int = dspy.OutputField(desc="the number of the best candidate")
