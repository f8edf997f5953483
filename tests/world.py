"""A scripted world where the best routing is known (shared by the optimizer and CLI tests).

Step 1 of problem X has difficulty D[X]; System 1 gets it right only below 0.4, System 2
always; the final step is right exactly when the context holds the right step-1 answer.
Replies are free text, as the native adapter reads them.
"""

from __future__ import annotations

import json
import re

import dspy

from scale.programs import SCALE, Routing, system1, system2

D = {"A": 0.15, "B": 0.35, "C": 0.45, "D": 0.75}
EXAMPLES = [
    dspy.Example(id=k, problem=f"Problem {k}: compute the total.", answer="10").with_inputs(
        "problem"
    )
    for k in D
]
MODELS = ["--model", "scripted/s1", "--adapter", "native"]


def pid(prompt: str) -> str:
    return re.findall(r"Problem (\w):", prompt)[-1]


def solve_step(prompt: str, params: dict) -> str:
    deliberate = "Solve the current sub-problem" in prompt
    subproblem = prompt.rsplit("Now answer:", 1)[-1]
    if "first quantity" in subproblem:
        answer = "5" if deliberate or D[pid(prompt)] < 0.4 else "4"
    else:
        answer = "10" if "Answer 1: 5" in prompt else "8"
    if deliberate:
        return "think " * 40 + f"\n\\boxed{{{answer}}}"
    return f"Reasoning: quick.\nCalculation: {answer}\nAnswer: \\boxed{{{answer}}}"


def install(scripted) -> None:
    scripted.rules += [
        (r"Break the math problem", "1. first quantity\n2. final"),
        (r"Rate how hard each", lambda p, o: f"1. {D[pid(p)]}"),
        (r"Rate how hard the current", lambda p, o: str(D[pid(p)])),
        (r"Now answer:", solve_step),
        (r"Please reason step by step", "5 + 5 = 10\n\\boxed{10}"),
        (r"quick mental-math solver", "Reasoning: r.\nCalculation: 5 + 5\nAnswer: \\boxed{10}"),
    ]
    scripted.completion_tokens = lambda text: len(text.split())


def program(estimator: str = "self", **routing) -> SCALE:
    return SCALE(
        system1("scripted/s1", adapter="native"),
        system2("scripted/s2", adapter="native"),
        routing=Routing(estimator=estimator, **routing),
    )


def write_dataset(path) -> str:
    path.write_text("".join(json.dumps(e.toDict()) + "\n" for e in EXAMPLES))
    return str(path)
