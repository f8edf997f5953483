"""SCALE's logic against a scripted model: routing, estimators, context, fallbacks, accounting."""

from __future__ import annotations

import json
import math

import pytest
from conftest import COMPLETION_TOKENS, PROMPT_TOKENS, ScriptedText, chat

from scale.programs import (
    SCALE,
    CoT,
    ProblemError,
    ProgramFileError,
    Routing,
    RoutingError,
    Vote,
    build_program,
    expected_scores,
    route_budget,
    route_threshold,
    save_program,
    system1,
    system2,
)

PROBLEM = "A shop sells pens at 3 dollars each. How much do 4 pens cost?"
DECOMPOSE = r"Break the math problem"
RATE_ALL = r"Rate how hard each sub-problem"
RATE_ONE = r"Rate how hard the current sub-problem"
STEP = r"Answer the current sub-problem"
WHOLE = r"Solve the math problem"
SELECT = r"Choose the best candidate"
S1 = r"MODEL=\S*s1"
S2 = r"MODEL=\S*s2"


def answer_reply(value: str):
    """Reply with ``value`` in the shape the prompt asks for (with reasoning for CoT)."""

    def reply(prompt: str, params: dict) -> str:
        if "[[ ## reasoning ## ]]" in prompt:
            return chat(reasoning="thinking it through", answer=value)
        return chat(answer=value)

    return reply


def make(
    scripted,
    subproblems=("Find the price of one pen", "Find the cost of 4 pens"),
    difficulties=(0.2,),
    **options,
) -> SCALE:
    """A SCALE on scripted models s1/s2 with a two-step decomposition."""
    scripted.rules += [
        (DECOMPOSE, chat(subproblems=list(subproblems))),
        (RATE_ALL, chat(difficulties=list(difficulties))),
        (S2 + ".*" + STEP, answer_reply("12")),
        (S1 + ".*" + STEP, answer_reply("3")),
        (WHOLE, answer_reply("12")),
    ]
    routing = Routing(**options.pop("routing", {}))
    return SCALE(system1("scripted/s1"), system2("scripted/s2"), routing=routing, **options)


# --- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("difficulty", "tau", "system"),
    [
        (0.5, 0.5, 1),
        (0.51, 0.5, 2),
        (0.49, 0.5, 1),
        (0.0, 0.0, 1),
        (0.01, 0.0, 2),
        (1.0, 1.0, 1),
        (None, 1.0, 1),
        (None, 0.99, 2),
    ],
)
def test_threshold_is_strict(difficulty, tau, system):
    assert route_threshold([difficulty], tau) == [system]


@pytest.mark.parametrize(
    ("difficulties", "q", "systems"),
    [
        ([0.1, 0.9, 0.5, 0.3], 0.5, [1, 2, 2, 1]),
        ([0.5, 0.5, 0.5, 0.5], 0.25, [1, 1, 1, 2]),  # ties go to later steps
        ([0.5, 0.5, 0.5, 0.5], 0.5, [1, 1, 2, 2]),
        ([0.2, None, 0.9], 1 / 3, [1, 2, 1]),  # unknown ranks hardest
        ([0.2, 0.3, 0.9], 0.0, [1, 1, 1]),
        ([0.2, 0.3, 0.9], 1.0, [2, 2, 2]),
    ],
)
def test_budget_routes_hardest_fraction(difficulties, q, systems):
    assert route_budget(difficulties, q) == systems


@pytest.mark.parametrize(("tau", "first_system"), [(0.2, 1), (0.19, 2)])
def test_program_routes_around_threshold(scripted, tau, first_system):
    pred = make(scripted, routing={"threshold": tau})(problem=PROBLEM)
    assert [s.system for s in pred.steps] == [first_system, 2]
    assert pred.steps[0].difficulty == 0.2


def test_threshold_one_sends_everything_to_system1_and_zero_to_system2(scripted):
    low = make(scripted, routing={"threshold": 1.0})(problem=PROBLEM)
    assert [s.system for s in low.steps] == [1, 1]
    assert scripted.count(S2 + ".*" + STEP) == 0
    high = make(scripted, routing={"threshold": 0.0})(problem=PROBLEM)
    assert [s.system for s in high.steps] == [2, 2]


def test_forced_last_step(scripted):
    pred = make(scripted, routing={"threshold": 0.89})(problem=PROBLEM)
    assert pred.steps[-1].difficulty == 0.9 and pred.steps[-1].system == 2
    pred = make(scripted, routing={"threshold": 0.9})(problem=PROBLEM)
    assert pred.steps[-1].system == 1


def test_budget_mode_through_program(scripted):
    program = make(
        scripted,
        subproblems=("a", "b", "c", "d"),
        difficulties=(0.7, 0.1, 0.4),
        routing={"mode": "budget", "budget": 0.5},
    )
    pred = program(problem=PROBLEM)
    assert [s.system for s in pred.steps] == [2, 1, 1, 2]  # 0.9 (forced) and 0.7 are hardest


def test_budget_with_consistency_is_refused():
    with pytest.raises(RoutingError, match="budget"):
        Routing(estimator="consistency", mode="budget")


# --- estimators ------------------------------------------------------------------------------


def test_self_estimator_per_step_sees_earlier_subproblems(scripted):
    scripted.rules.append((RATE_ONE, chat(difficulty=0.6)))
    program = make(
        scripted,
        subproblems=("first thing", "second thing", "third"),
        batched=False,
        routing={"threshold": 0.5},
    )
    pred = program(problem=PROBLEM)
    assert [s.difficulty for s in pred.steps] == [0.6, 0.6, 0.9]
    assert [s.system for s in pred.steps] == [2, 2, 2]
    rate_prompts = [p for p, _ in scripted.calls if "Rate how hard the current" in p]
    assert len(rate_prompts) == 2  # the forced last step is not rated
    assert "first thing" in rate_prompts[1].split("[[ ## earlier_steps ## ]]")[-1]


def _lp(token: str, alternatives: dict[str, float]) -> dict:
    tops = [{"token": t, "logprob": math.log(p)} for t, p in alternatives.items()]
    return {"token": token, "logprob": math.log(alternatives.get(token, 1.0)), "top_logprobs": tops}


def test_expected_scores_arithmetic():
    content = [
        _lp("[[ ## difficulty ## ]]\n", {"[[ ## difficulty ## ]]\n": 1.0}),
        _lp("0", {"0": 0.8, "1": 0.2}),
        _lp(".", {".": 1.0}),
        _lp("5", {"5": 0.5, "2": 0.25, "9": 0.25}),
    ]
    (score,) = expected_scores(content)
    fraction = 0.5 * 0.5 + 0.25 * 0.2 + 0.25 * 0.9
    assert score == pytest.approx(0.8 * fraction + 0.2 * 1.0)


def test_expected_scores_reads_only_after_anchor_and_each_number():
    content = [
        _lp("7", {"7": 1.0}),
        _lp(" [", {" [": 1.0}),
        _lp("0", {"0": 1.0}),
        _lp(".", {".": 1.0}),
        _lp("3", {"3": 0.5, "1": 0.5}),
        _lp(", ", {", ": 1.0}),
        _lp("1", {"1": 0.6, "0": 0.4}),
    ]
    scores = expected_scores(content, start_char=1)
    assert scores == pytest.approx([0.2, 0.6 * 1.0 + 0.4 * 0.5])


def test_logprob_estimator_uses_token_distribution(scripted):
    text = chat(difficulties=[0.5])
    header = "[[ ## difficulties ## ]]\n"
    tokens = [
        _lp(header, {header: 1.0}),
        _lp("[", {"[": 1.0}),
        _lp("0", {"0": 1.0}),
        _lp(".", {".": 1.0}),
        _lp("5", {"5": 0.5, "1": 0.5}),
        _lp(text[len(header) + 4 :], {text[len(header) + 4 :]: 1.0}),
    ]
    program = make(scripted, subproblems=("a", "b"), routing={"estimator": "logprob"})
    scripted.rules.insert(0, (RATE_ALL, lambda p, o: ScriptedText.with_logprobs(text, tokens)))
    pred = program(problem=PROBLEM)
    assert pred.steps[0].difficulty == pytest.approx(0.3)
    assert any(o.get("logprobs") for _, o in scripted.calls)


def test_logprob_estimator_falls_back_without_logprobs(scripted):
    program = make(
        scripted,
        subproblems=("a", "b", "c"),
        difficulties=(0.4, 0.6),
        routing={"estimator": "logprob"},
    )
    pred = program(problem=PROBLEM)
    assert [s.difficulty for s in pred.steps[:2]] == [0.4, 0.6]
    assert "stated scores used" in " ".join(pred.steps[0].notes)


def test_consistency_agreement_keeps_system1_answer(scripted):
    program = make(scripted, routing={"estimator": "consistency", "threshold": 0.3})
    pred = program(problem=PROBLEM)
    first = pred.steps[0]
    assert first.difficulty == 0.0 and first.system == 1 and first.answer == "3"
    # 3 samples for step 1, no extra System 1 solve; step 2 is forced to System 2
    assert scripted.count(S1 + ".*" + STEP) == 3
    assert scripted.count(S2 + ".*" + STEP) == 1


def test_consistency_disagreement_goes_to_system2(scripted):
    answers = iter(["3", "4", "3"])
    scripted.rules.insert(0, (S1 + ".*" + STEP, lambda p, o: chat(answer=next(answers))))
    program = make(scripted, routing={"estimator": "consistency", "threshold": 0.3})
    pred = program(problem=PROBLEM)
    assert pred.steps[0].difficulty == pytest.approx(1 / 3, abs=1e-6)
    assert pred.steps[0].system == 2 and pred.steps[0].answer == "12"
    temps = {
        o.get("temperature")
        for p, o in scripted.calls
        if "MODEL=" in p and "s1" in p.split("\n")[0] and "Answer the current" in p
    }
    assert temps == {0.7}


# --- gate ------------------------------------------------------------------------------------


def test_gate_skips_decomposition_for_easy_problems(scripted):
    scripted.rules.append((RATE_ONE, chat(difficulty=0.2)))
    pred = make(scripted, routing={"decompose_threshold": 0.5})(problem=PROBLEM)
    assert len(pred.steps) == 1 and pred.steps[0].system == 2 and pred.answer == "12"
    assert scripted.count(DECOMPOSE) == 0


def test_gate_decomposes_hard_problems(scripted):
    scripted.rules.append((RATE_ONE, chat(difficulty=0.8)))
    pred = make(scripted, routing={"decompose_threshold": 0.5})(problem=PROBLEM)
    assert len(pred.steps) == 2 and scripted.count(DECOMPOSE) == 1


def test_gate_at_one_is_cot_without_a_rating_call(scripted):
    pred = make(scripted, routing={"decompose_threshold": 1.0})(problem=PROBLEM)
    assert len(pred.steps) == 1 and pred.answer == "12"
    assert scripted.count(RATE_ONE) == 0 and scripted.count(DECOMPOSE) == 0


# --- context ---------------------------------------------------------------------------------


def test_each_step_sees_every_earlier_answer(scripted):
    counter = iter(range(100, 200))
    scripted.rules.insert(0, (STEP, lambda p, o: answer_reply(str(next(counter)))(p, o)))
    program = make(
        scripted,
        subproblems=("a", "b", "c", "d"),
        difficulties=(0.1, 0.1, 0.1),
        routing={"threshold": 0.5},
    )
    pred = program(problem=PROBLEM)
    answers = [s.answer for s in pred.steps]
    assert answers == ["100", "101", "102", "103"]
    prompts = [p for p, _ in scripted.calls if "Answer the current sub-problem" in p]
    for i, prompt in enumerate(prompts):
        context = prompt.split("[[ ## earlier_steps ## ]]")[-1].split("[[ ## subproblem ## ]]")[0]
        for earlier in answers[:i]:
            assert earlier in context
        for later in answers[i:]:
            assert later not in context
    assert pred.answer == "103"


# --- fallbacks -------------------------------------------------------------------------------


def test_unparseable_decomposition_becomes_one_step(scripted):
    scripted.rules.insert(0, (DECOMPOSE, "I cannot do lists"))
    pred = make(scripted)(problem=PROBLEM)
    assert [s.subproblem for s in pred.steps] == [PROBLEM]
    assert any("unusable" in n for n in pred.notes)
    assert pred.usage["by_stage"]["decompose"]["lm_calls"] == 2  # ChatAdapter + JSON retry


def test_a_numbered_decomposition_with_latex_is_read_as_steps(scripted):
    listing = (
        "1. Find the matrix $\\mathbf{A}$.\n2. Find $\\mathbf{A} \\begin{pmatrix} 1 \\end{pmatrix}$"
    )
    scripted.rules.insert(0, (DECOMPOSE, chat(subproblems=listing)))
    pred = make(scripted, difficulties=(0.2, 0.2))(problem=PROBLEM)
    assert [s.subproblem for s in pred.steps] == ["Find the matrix $\\mathbf{A}$.", PROBLEM]
    assert pred.usage["by_stage"]["decompose"]["lm_calls"] == 1  # read, not asked again


LOOP = "[[ ## reasoning ## ]]\n" + "Let x be the price.\n" * 50


@pytest.mark.parametrize(
    ("reply", "answer", "note", "calls"),
    [
        (ScriptedText.cut(LOOP), "", "none found", 2),  # asked again in JSON, cut again
        (ScriptedText.cut(LOOP + "So the total is \\boxed{12}. Check"), "12", "extracted", 1),
    ],
)
def test_a_cut_final_answer_is_asked_again_only_without_an_answer(
    scripted, reply, answer, note, calls
):
    scripted.rules.append((WHOLE, reply))
    pred = CoT(system2("scripted/s2"))(problem=PROBLEM)
    assert pred.answer == answer and pred.usage["lm_calls"] == calls
    assert any(note in n for n in pred.steps[0].notes)


def test_a_json_re_ask_after_a_cut_final_answer_gives_the_answer(scripted):
    scripted.rules += [
        (
            "Outputs will be a JSON object.*" + WHOLE,
            json.dumps({"reasoning": "3 * 4", "answer": "12"}),
        ),
        (WHOLE, ScriptedText.cut(LOOP)),
    ]
    pred = CoT(system2("scripted/s2"))(problem=PROBLEM)
    assert pred.answer == "12" and pred.usage["lm_calls"] == 2 and not pred.steps[0].notes


@pytest.mark.parametrize(
    ("reply", "answer"),
    [("12", "12"), ("The pens.\n" + "More words about pens. " * 10, "")],
)
def test_an_unparseable_reply_is_asked_again_as_json_then_read(scripted, reply, answer):
    scripted.rules.append((WHOLE, reply))
    pred = CoT(system2("scripted/s2"))(problem=PROBLEM)
    assert pred.answer == answer and pred.usage["lm_calls"] == 2  # ChatAdapter + JSON retry


def test_a_step_without_an_answer_passes_no_text_to_later_steps(scripted):
    scripted.rules.insert(0, (S1 + ".*" + STEP, ScriptedText.cut(LOOP)))
    pred = make(scripted, difficulties=(0.2, 0.2))(problem=PROBLEM)
    assert [s.system for s in pred.steps] == [1, 2] and pred.steps[0].answer == ""
    assert pred.steps[0].lm_calls == 1  # an intermediate step's cut reply is not asked again
    last_prompt = [p for p, _ in scripted.calls if "MODEL=" in p and "s2" in p.split()[0]][-1]
    assert "Let x be the price" not in last_prompt and pred.answer == "12"


def test_only_the_last_step_is_asked_again_after_a_cut_reply(scripted):
    scripted.rules.insert(0, (STEP, ScriptedText.cut(LOOP)))
    pred = make(scripted, difficulties=(0.2, 0.2))(problem=PROBLEM)
    assert [s.lm_calls for s in pred.steps] == [1, 2] and pred.answer == ""


@pytest.mark.parametrize(
    ("stated", "expected", "system"),
    [
        ("1.7", 1.0, 2),
        ("-0.3", 0.0, 1),
        ("NaN", None, 2),
        ("very hard", None, 2),
    ],
)
def test_bad_difficulty_is_clamped_or_hard(scripted, stated, expected, system):
    scripted.rules.append((RATE_ONE, chat(difficulty=stated)))
    program = make(scripted, subproblems=("a", "b"), batched=False, routing={"threshold": 0.5})
    pred = program(problem=PROBLEM)
    assert pred.steps[0].difficulty == expected and pred.steps[0].system == system
    assert pred.steps[0].notes


def test_missing_batched_difficulties_are_hard(scripted):
    program = make(scripted, subproblems=("a", "b", "c"), difficulties=(0.1,))
    pred = program(problem=PROBLEM)
    assert [s.difficulty for s in pred.steps] == [0.1, None, 0.9]
    assert [s.system for s in pred.steps] == [1, 2, 2]


def test_selection_out_of_range_takes_first_candidate(scripted):
    scripted.rules.insert(0, (SELECT, chat(best=7)))
    program = make(scripted, k=3)
    pred = program(problem=PROBLEM)
    assert scripted.count(DECOMPOSE) == 3 and scripted.count(SELECT) == 1
    assert any("out of range" in n for n in pred.notes)
    assert len(pred.steps) == 2


def test_selection_picks_candidate(scripted):
    replies = iter([["x1", "x2"], ["y1", "y2", "y3"], ["z1", "z2"]])
    scripted.rules.insert(0, (DECOMPOSE, lambda p, o: chat(subproblems=next(replies))))
    scripted.rules.insert(0, (SELECT, chat(best=1)))
    scripted.rules.append((RATE_ALL, chat(difficulties=[0.1, 0.1])))
    pred = make(scripted, k=3)(problem=PROBLEM)
    assert [s.subproblem for s in pred.steps][:2] == ["y1", "y2"]
    samples = [o for p, o in scripted.calls if "Break the math problem" in p]
    assert {o.get("temperature") for o in samples} == {0.7}


def test_cap_on_subproblems(scripted):
    program = make(
        scripted, subproblems=[f"s{i}" for i in range(9)], difficulties=[0.1] * 3, max_subproblems=4
    )
    pred = program(problem=PROBLEM)
    assert [s.subproblem for s in pred.steps] == ["s0", "s1", "s2", PROBLEM]
    assert any("capped" in n for n in pred.notes)


@pytest.mark.parametrize("problem", ["", "   \n\t ", "\x00\x01"])
def test_empty_problem_rejected_before_any_call(scripted, problem):
    with pytest.raises(ProblemError, match="empty"):
        make(scripted)(problem=problem)
    assert scripted.calls == []


def test_huge_problem_truncated_and_recorded(scripted):
    pred = make(scripted, routing={"threshold": 1.0})(problem="x" * 1_000_000)
    assert any("truncated" in n for n in pred.notes)


# --- accounting ------------------------------------------------------------------------------


def test_every_call_is_counted_by_stage_and_system(scripted):
    pred = make(scripted, routing={"threshold": 0.5})(problem=PROBLEM)
    usage = pred.usage
    calls = len(scripted.calls)
    assert calls == 4  # decompose, rate (batched), solve S1, solve S2
    assert usage["lm_calls"] == calls
    assert usage["prompt_tokens"] == calls * PROMPT_TOKENS
    assert usage["completion_tokens"] == calls * COMPLETION_TOKENS
    assert {k: v["lm_calls"] for k, v in usage["by_stage"].items()} == {
        "decompose": 1,
        "assess": 1,
        "solve": 2,
    }
    assert {k: v["lm_calls"] for k, v in usage["by_system"].items()} == {"1": 1, "2": 1}
    assert [s.lm_calls for s in pred.steps] == [1, 1]
    assert pred.steps[0].prompt_tokens == PROMPT_TOKENS


def test_counts_are_the_same_on_cache_hits(scripted):
    program = make(scripted, routing={"threshold": 0.5})
    first = program(problem=PROBLEM).usage
    n = len(scripted.calls)
    second = program(problem=PROBLEM).usage
    assert len(scripted.calls) == n  # served from the cache
    assert second["total_tokens"] == first["total_tokens"] > 0
    assert second["lm_calls"] == first["lm_calls"]
    assert second["cached_calls"] == second["lm_calls"] and first["cached_calls"] == 0


# --- baselines -------------------------------------------------------------------------------


def test_cot_baseline(scripted):
    scripted.rules.append((WHOLE, answer_reply("\\boxed{12}")))
    pred = CoT(system2("scripted/s2"))(problem=PROBLEM)
    assert pred.answer == "12" and pred.usage["lm_calls"] == 1
    assert pred.steps[0].system == 2


def test_vote_baseline_majority(scripted):
    answers = iter(["12", "12.0", "13", "11", "\\frac{24}{2}"])
    scripted.rules.append((WHOLE, lambda p, o: answer_reply(next(answers))(p, o)))
    pred = Vote(system2("scripted/s2"), samples=5)(problem=PROBLEM)
    assert pred.answer == "12" and pred.usage["lm_calls"] == 5


@pytest.mark.parametrize(("method", "system"), [("uniform-s1", 1), ("uniform-s2", 2)])
def test_uniform_baselines(scripted, method, system):
    make(scripted)  # installs the rules
    program = build_program(method, system1_model="scripted/s1", system2_model="scripted/s2")
    pred = program(problem=PROBLEM)
    assert [s.system for s in pred.steps] == [system, system]
    assert scripted.count(RATE_ALL) == 0 and scripted.count(RATE_ONE) == 0


# --- save / load -----------------------------------------------------------------------------


def test_save_load_round_trip(scripted, tmp_path):
    program = build_program("scale", model="scripted/s1", threshold=0.37, estimator="self")
    program.decomposer.decompose.demos = [{"problem": "p", "subproblems": ["q"]}]
    path = save_program(program, tmp_path / "tuned.json")
    loaded = build_program(model="scripted/s1", program_path=str(path))
    assert loaded.routing.threshold == 0.37 and loaded.routing.estimator == "self"
    assert len(loaded.decomposer.decompose.demos) == 1
    assert json.loads(path.read_text())["routing"]["threshold"] == 0.37


def test_a_program_saved_with_the_old_uniform_option(scripted, tmp_path):
    path = save_program(build_program("scale", model="scripted/s1"), tmp_path / "old.json")
    state = json.loads(path.read_text())
    state["scale"]["structure"]["uniform"] = None  # written before estimator "none"
    path.write_text(json.dumps(state))
    assert isinstance(build_program(model="scripted/s1", program_path=str(path)), SCALE)
    state["scale"]["structure"]["uniform"] = 2
    path.write_text(json.dumps(state))
    with pytest.raises(ProgramFileError, match="older version as a uniform baseline"):
        build_program(model="scripted/s1", program_path=str(path))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s["routing"].update(threshold=2), "threshold"),
        (lambda s: s["scale"].update(format=99), "format"),
        (lambda s: s.pop("scale"), "header"),
        (lambda s: s["routing"].update(version=0), "version"),
    ],
)
def test_bad_program_files_refused(scripted, tmp_path, mutate, message):
    path = save_program(build_program(model="scripted/s1"), tmp_path / "p.json")
    state = json.loads(path.read_text())
    mutate(state)
    path.write_text(json.dumps(state))
    with pytest.raises((ProgramFileError, RoutingError), match=message):
        build_program(model="scripted/s1", program_path=str(path))


def test_corrupt_and_pickle_program_files_refused(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(ProgramFileError, match="not a readable JSON"):
        build_program(model="scripted/s1", program_path=str(bad))
    with pytest.raises(ProgramFileError, match="never pickle"):
        build_program(model="scripted/s1", program_path=str(tmp_path / "p.pkl"))
