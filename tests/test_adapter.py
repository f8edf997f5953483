"""The adapters (``scale.models.adapter``): list fields the way small models write them, and the
native-chat adapter's rendering and parsing of each field type."""

from __future__ import annotations

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

from scale.models.adapter import NativeAdapter, parse_string_list, unwrap
from scale.signatures import (
    AssessDifficulties,
    AssessDifficulty,
    Decompose,
    SelectDecomposition,
)
from scale.signatures.solve import SolveProblem, SolveStep, SolveStepBriefly

LATEX = r"$\theta$ and $\begin{pmatrix} 1 \\ 2 \end{pmatrix}$, \neq \frac{1}{2}"


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ('["Find x", "Find y"]', ["Find x", "Find y"]),
        # LaTeX as is: every backslash literal (json would read \t, \b, \n, \f as escapes)
        (f'["Find {LATEX}", "Use it"]', [f"Find {LATEX}", "Use it"]),
        # LaTeX escaped as JSON asks, and an escaped quote
        (r'["Find $\\frac{1}{2}$", "say \"hi\""]', [r"Find $\frac{1}{2}$", 'say "hi"']),
        (f"1. Find {LATEX}.\n2) Use it.\n\n3. Answer.", [f"Find {LATEX}.", "Use it.", "Answer."]),
        ("- first\n* second\n\u2022 third", ["first", "second", "third"]),
    ],
)
def test_lists_as_small_models_write_them(text, items):
    assert parse_string_list(text) == items


@pytest.mark.parametrize(
    "text", ["Just prose.", "1. an item\nthen prose", "[1, 2]", '["unterminated', ""]
)
def test_anything_else_is_left_to_dspy(text):
    assert parse_string_list(text) is None


# --- the native-chat adapter -----------------------------------------------------------------

NATIVE = NativeAdapter()


def cot(signature):
    return dspy.ChainOfThought(signature).predict.signature


def test_a_single_input_is_the_plain_prompt_the_model_was_trained_with():
    messages = NATIVE.format(cot(SolveProblem), [], {"problem": "What is 2+3?"})
    assert messages == [
        {
            "role": "system",
            "content": "Please reason step by step, and put your final answer within \\boxed{}.",
        },
        {"role": "user", "content": "What is 2+3?"},
    ]


def test_several_inputs_are_labelled_paragraphs_and_no_field_markers():
    inputs = {"problem": "P", "earlier_steps": "Step 1: a\nAnswer 1: 3", "subproblem": "b?"}
    system, user = NATIVE.format(cot(SolveStepBriefly), [], inputs)
    assert (
        user["content"] == "Problem: P\n\nSolved so far:\nStep 1: a\nAnswer 1: 3\n\nNow answer: b?"
    )
    assert "[[" not in system["content"] + user["content"]
    assert "Calculation: <one arithmetic expression" in system["content"]  # template kept as lines


def test_a_request_for_anything_but_an_answer_comes_last_after_labelled_inputs():
    """Given a bare problem, the model solves it, even when the system message asks for a
    decomposition (3 of 20 MATH problems ran to the token cap with no list): inputs are
    labelled and the request for the output is the user message's last line."""
    _, user = NATIVE.format(Decompose, [], {"problem": "What is 2+3?"})
    assert user["content"] == (
        "Problem: What is 2+3?\n\nWrite the sub-problems in order, the last one being the "
        "question actually asked, as a numbered list, one per line."
    )
    _, user = NATIVE.format(SelectDecomposition, [], {"problem": "P", "candidates": "0: a"})
    assert user["content"].endswith("\n\nEnd your reply with the number of the best candidate.")


@pytest.mark.parametrize(
    ("signature", "sentence"),
    [
        (Decompose, "written as a numbered list"),  # the instructions already ask for it
        (AssessDifficulty, "End your reply with the difficulty, a number between 0 and 1."),
        (SelectDecomposition, "End your reply with the number of the best candidate."),
        (SolveStep, "put your final answer within \\boxed{}"),
    ],
)
def test_the_prompt_asks_for_each_output_once(signature, sentence):
    inputs = {name: "x" for name in signature.input_fields}
    system, *_ = messages = NATIVE.format(signature, [], inputs)
    assert sum(m["content"].count(sentence) for m in messages) == 1
    assert "\n\n" not in system["content"].split(".")[0]


def test_hard_wrapped_instructions_read_as_prose():
    assert unwrap("one two\nthree\n\n0.0 to 0.5: easy\n0.5 to 1: hard\nLabel: x") == (
        "one two three\n\n0.0 to 0.5: easy\n0.5 to 1: hard\nLabel: x"
    )


@pytest.mark.parametrize(
    ("signature", "reply", "expected"),
    [
        (cot(SolveProblem), "3 + 4 = 7.\nSo the answer is $\\boxed{7}$.", {"answer": "7"}),
        (cot(SolveProblem), "3 + 4 = 7.\nAnswer: 7", {"answer": "7"}),
        (cot(SolveProblem), "Let me think.\n7", {"answer": "7"}),
        (
            cot(SolveProblem),
            "\\boxed{\\frac{1}{2}} and \\boxed{\\dfrac{3}{4}}",
            {"answer": "\\dfrac{3}{4}"},
        ),
        (
            cot(SolveStepBriefly),
            "Reasoning: two.\n**Calculation:** $3 \\times 4$\nAnswer: \\boxed{12}",
            {"answer": "12", "calculation": "3 \\times 4"},
        ),
        (
            cot(SolveStepBriefly),
            "It is 12. Calculation: 3*4",
            {"answer": "It is 12", "calculation": "3*4"},
        ),
        (
            Decompose,
            "Plan:\n1. Find $\\theta$\n   - detail\n2) Then b",
            {"subproblems": ["Find $\\theta$", "Then b"]},
        ),
        (Decompose, '["Find a", "Find b"]', {"subproblems": ["Find a", "Find b"]}),
        (AssessDifficulty, "I would say 0.35", {"difficulty": 0.35}),
        (AssessDifficulties, "1. 0.2\n2. 0.75", {"difficulties": [0.2, 0.75]}),
    ],
)
def test_replies_are_read_by_type(signature, reply, expected):
    parsed = NATIVE.parse(signature, reply)
    assert {k: parsed[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("signature", "reply"),
    [
        (cot(SolveProblem), "Let me think about this problem in a long way that never ends " * 3),
        (Decompose, "No list here, just prose."),
        (AssessDifficulty, "hard"),
    ],
)
def test_a_reply_that_yields_nothing_is_a_parse_error(signature, reply):
    with pytest.raises(AdapterParseError):
        NATIVE.parse(signature, reply)


def test_demos_are_earlier_turns_in_the_same_shape():
    demo = {"problem": "What is 1+1?", "reasoning": "1 + 1 = 2.", "answer": "2"}
    messages = NATIVE.format(cot(SolveProblem), [demo], {"problem": "What is 2+3?"})
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == "What is 1+1?"
    assert messages[2]["content"] == "1 + 1 = 2.\n\n\\boxed{2}"
    assert NATIVE.parse(cot(SolveProblem), messages[2]["content"])["answer"] == "2"
    listing = NATIVE.format_assistant_message_content(Decompose, {"subproblems": ["a", "b"]})
    assert listing == "1. a\n2. b"
