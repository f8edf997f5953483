"""SCALE's logic against scripted models: gate, routing, estimators, context, fallbacks,
accounting, baselines. Replies are free text, as the native adapter reads them."""

from __future__ import annotations

import math

import pytest
from conftest import COMPLETION_TOKENS, PROMPT_TOKENS, ScriptedText

from scale.models.lm import label, track
from scale.programs import (
    SCALE,
    CoT,
    Fallback,
    ProblemError,
    Routing,
    SystemProfile,
    Vote,
    build_program,
    route_budget,
    route_threshold,
    system1,
    system2,
)
from scale.programs.logprobs import expected_scores, trace_confidence

PROBLEM = "A shop sells pens at 3 dollars each. How much do 4 pens cost?"
DECOMPOSE = r"Break the math problem"
RATE_ALL = r"Rate how hard each sub-problem"
RATE_ONE = r"Rate how hard the current sub-problem"
STEP2 = r"MODEL=\S*s2\nSolve the current sub-problem"
STEP1 = r"MODEL=\S*s1\nYou are a quick mental-math solver. Answer the current"
WHOLE2 = r"MODEL=\S*s2\nPlease reason step by step"
WHOLE1 = r"MODEL=\S*s1\nYou are a quick mental-math solver. Reply"
SELECT = r"Choose the best candidate"


def brief(answer: str, calculation: str | None = None) -> str:
    """A System 1 reply in the brief format."""
    calculation = answer if calculation is None else calculation
    return f"Reasoning: quick.\nCalculation: {calculation}\nAnswer: \\boxed{{{answer}}}"


def reasoned(answer: str) -> str:
    return f"Let us think it through.\nThe answer is $\\boxed{{{answer}}}$."


def profiles(**s2) -> tuple:
    return (
        system1("scripted/s1", adapter="native"),
        system2("scripted/s2", adapter="native", **s2),
    )


def make(
    scripted,
    subproblems=("Find the price of one pen", "Find the cost of 4 pens"),
    difficulties=(0.2,),
    system2_knobs=None,
    **options,
) -> SCALE:
    """A SCALE on scripted models s1/s2 with a two-step decomposition."""
    scripted.rules += [
        (DECOMPOSE, "\n".join(f"{i}. {s}" for i, s in enumerate(subproblems, 1))),
        (RATE_ALL, "\n".join(f"{i}. {d}" for i, d in enumerate(difficulties, 1))),
        (STEP2, reasoned("12")),
        (STEP1, brief("3")),
        (WHOLE2, reasoned("12")),
        (WHOLE1, brief("12", "3 * 4")),
    ]
    routing = Routing(**options.pop("routing", {}))
    s1, s2 = profiles(**(system2_knobs or {}))
    return SCALE(s1, s2, routing=routing, **options)


# --- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("difficulty", "tau", "system"),
    [(0.5, 0.5, 1), (0.51, 0.5, 2), (0.0, 0.0, 1), (0.01, 0.0, 2), (None, 1.0, 1), (None, 0.99, 2)],
)
def test_threshold_is_strict(difficulty, tau, system):
    assert route_threshold([difficulty], tau) == [system]


@pytest.mark.parametrize(
    ("difficulties", "q", "systems"),
    [
        ([0.1, 0.9, 0.5, 0.3], 0.5, [1, 2, 2, 1]),
        ([0.5, 0.5, 0.5, 0.5], 0.25, [1, 1, 1, 2]),  # ties go to later steps
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
    assert scripted.count(STEP2) == 0
    high = make(scripted, routing={"threshold": 0.0})(problem=PROBLEM)
    assert [s.system for s in high.steps] == [2, 2]


def test_forced_last_step(scripted):
    pred = make(scripted, routing={"threshold": 0.89})(problem=PROBLEM)
    assert pred.steps[-1].difficulty == 0.9 and pred.steps[-1].system == 2
    pred = make(scripted, routing={"threshold": 0.9})(problem=PROBLEM)
    assert pred.steps[-1].system == 1


def test_budget_mode_with_stated_scores(scripted):
    program = make(
        scripted,
        subproblems=("a", "b", "c", "d"),
        difficulties=(0.7, 0.1, 0.4),
        routing={"mode": "budget", "budget": 0.5},
    )
    pred = program(problem=PROBLEM)
    assert [s.system for s in pred.steps] == [2, 1, 1, 2]  # 0.9 (forced) and 0.7 are hardest


def test_budget_mode_with_an_online_estimator_plans_with_system1(scripted):
    """Budget routing ranks all steps first: System 1 runs through them (its own answers as
    context); a step kept on System 1 reuses its answer only where the context is the same."""
    answers = {"a": "1", "b": "2", "c": "3"}
    scripted.rules.insert(
        0, (STEP1, lambda p, o: brief(answers[p.rsplit("Now answer: ", 1)[-1].strip()]))
    )
    program = make(
        scripted,
        subproblems=("a", "b", "c", "d"),
        routing={"estimator": "check", "mode": "budget", "budget": 0.5},
    )
    scripted.rules.insert(0, (STEP1 + r".*Now answer: b", brief("2", "1 + 2")))  # mismatch
    pred = program(problem=PROBLEM)
    assert [s.system for s in pred.steps] == [1, 2, 1, 2]
    assert [s.difficulty for s in pred.steps] == [0.0, 1.0, 0.0, 0.9]
    # step c was planned after System 1's "2" for b; System 2 answered b "12", so c is solved again
    assert pred.steps[0].answer == "1" and "kept" in " ".join(pred.steps[0].notes)
    assert not any("kept" in n for n in pred.steps[2].notes)


# --- estimators ------------------------------------------------------------------------------


def test_self_estimator_per_step_sees_earlier_subproblems(scripted):
    scripted.rules.append((RATE_ONE, "0.6"))
    program = make(scripted, subproblems=("first thing", "second thing", "third"), batched=False)
    pred = program(problem=PROBLEM)
    assert [s.difficulty for s in pred.steps] == [0.6, 0.6, 0.9]
    rate_prompts = [p for p, _ in scripted.calls if "Rate how hard the current" in p]
    assert len(rate_prompts) == 2  # the forced last step is not rated
    assert "first thing" in rate_prompts[1].split("Solved so far:")[-1]


def _lp(token: str, alternatives: dict[str, float]) -> dict:
    tops = [{"token": t, "logprob": math.log(p)} for t, p in alternatives.items()]
    return {"token": token, "logprob": math.log(alternatives.get(token, 1.0)), "top_logprobs": tops}


def test_expected_scores_arithmetic():
    content = [
        _lp("Difficulty: ", {"Difficulty: ": 1.0}),
        _lp("0", {"0": 0.8, "1": 0.2}),
        _lp(".", {".": 1.0}),
        _lp("5", {"5": 0.5, "2": 0.25, "9": 0.25}),
    ]
    (score,) = expected_scores(content)
    fraction = 0.5 * 0.5 + 0.25 * 0.2 + 0.25 * 0.9
    assert score == pytest.approx(0.8 * fraction + 0.2 * 1.0)


def test_trace_confidence_mean_and_lowest_window():
    values = [-0.1] * 36 + [-2.0] * 4
    mean, lowest, total = trace_confidence([("x", v) for v in values])
    assert mean == pytest.approx((36 * -0.1 + 4 * -2.0) / 40)
    assert lowest == pytest.approx(-2.0)  # window of 4 (10% of 40) over the worst stretch
    assert total == pytest.approx(36 * -0.1 + 4 * -2.0)
    assert trace_confidence([]) is None


def test_logprob_estimator_uses_token_distribution(scripted):
    tokens = [
        _lp("1. ", {"1. ": 1.0}),
        _lp("0", {"0": 1.0}),
        _lp(".", {".": 1.0}),
        _lp("5", {"5": 0.5, "1": 0.5}),
    ]
    program = make(scripted, subproblems=("a", "b"), routing={"estimator": "logprob"})
    scripted.rules.insert(0, (RATE_ALL, lambda p, o: ScriptedText.with_logprobs("1. 0.5", tokens)))
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
    assert Fallback.NO_LOGPROBS in pred.steps[0].fallbacks


def test_agreement_keeps_system1_answer(scripted):
    program = make(scripted, routing={"estimator": "agreement", "threshold": 0.3})
    pred = program(problem=PROBLEM)
    first = pred.steps[0]
    assert first.difficulty == 0.0 and first.system == 1 and first.answer == "3"
    # greedy + 2 samples for step 1, no extra System 1 solve; step 2 is forced to System 2
    assert scripted.count(STEP1) == 3 and scripted.count(STEP2) == 1
    temperatures = [o.get("temperature") for p, o in scripted.calls if "quick mental-math" in p]
    assert temperatures == [0.0, 0.7, 0.7]


def test_agreement_disagreement_goes_to_system2(scripted):
    answers = iter(["3", "4", "3"])
    scripted.rules.insert(0, (STEP1, lambda p, o: brief(next(answers))))
    program = make(scripted, routing={"estimator": "agreement", "threshold": 0.3})
    pred = program(problem=PROBLEM)
    assert pred.steps[0].difficulty == pytest.approx(1 / 3, abs=1e-6)
    assert pred.steps[0].system == 2 and pred.steps[0].answer == "12"


@pytest.mark.parametrize(
    ("reply", "difficulty"),
    [
        (brief("12", "3 * 4"), 0.0),
        (brief("13", "3 * 4"), 1.0),
        (brief("12", "3 * 4 = 13"), 1.0),
        (brief("12", "three times four"), 0.9),
        ("Reasoning: 12.\nAnswer: \\boxed{12}", 0.9),
    ],
)
def test_check_estimator(scripted, reply, difficulty):
    scripted.rules.insert(0, (STEP1, reply))
    program = make(scripted, routing={"estimator": "check", "threshold": 0.5})
    pred = program(problem=PROBLEM)
    assert pred.steps[0].difficulty == difficulty
    assert pred.steps[0].system == (1 if difficulty == 0.0 else 2)
    assert scripted.count(STEP1) == 1  # the checked reply is the one kept


def test_confidence_from_token_logprobs_and_its_fallback(scripted):
    sure = [{"token": "t", "logprob": -0.01}] * 20
    unsure = [{"token": "t", "logprob": -0.01}] * 16 + [{"token": "t", "logprob": -3.0}] * 4
    replies = iter([sure, unsure])
    scripted.rules.insert(
        0, (STEP1, lambda p, o: ScriptedText.with_logprobs(brief("3"), next(replies)))
    )
    program = make(
        scripted, subproblems=("a", "b", "c"), routing={"estimator": "confidence", "threshold": 0.5}
    )
    pred = program(problem=PROBLEM)
    assert pred.steps[0].difficulty == pytest.approx(1 - math.exp(-0.01), abs=1e-6)
    assert pred.steps[1].difficulty == pytest.approx(1 - math.exp(-3.0), abs=1e-6)
    assert [s.system for s in pred.steps] == [1, 2, 2]
    assert all(o.get("logprobs") for p, o in scripted.calls if "quick mental" in p)
    scripted.rules.clear()
    pred = make(scripted, subproblems=("p", "q"), routing={"estimator": "confidence"})(
        problem=PROBLEM + " Again."
    )
    assert pred.steps[0].difficulty is None and Fallback.NO_LOGPROBS in pred.steps[0].fallbacks


def test_confidence_total_weighs_a_long_replys_doubts_in_full(scripted):
    """Two replies with the same mean token logprob: the longer one is rated harder by
    confidence-total (per 100 tokens), alike by confidence-mean."""
    short, long = [{"token": "t", "logprob": -0.1}] * 20, [{"token": "t", "logprob": -0.1}] * 200

    def scores(name: str) -> list[float]:
        replies = iter([short, long])
        scripted.rules.insert(
            0, (STEP1, lambda p, o: ScriptedText.with_logprobs(brief("3"), next(replies)))
        )
        program = make(scripted, subproblems=("a", "b", "c"), routing={"estimator": name})
        return [s.difficulty for s in program(problem=PROBLEM + name).steps[:2]]

    mean = scores("confidence-mean")
    assert mean[0] == pytest.approx(mean[1])
    assert scores("confidence-total") == pytest.approx(
        [1 - math.exp(-2.0 / 100), 1 - math.exp(-20.0 / 100)], abs=1e-6
    )


def test_combined_estimators_share_system1_reply_and_take_the_highest(scripted):
    answers = iter(["3", "3", "3"])
    scripted.rules.insert(0, (STEP1, lambda p, o: brief(next(answers), "2 + 2")))
    program = make(scripted, routing={"estimator": "agreement+check", "threshold": 0.5})
    pred = program(problem=PROBLEM)
    assert pred.steps[0].difficulty == 1.0 and pred.steps[0].system == 2  # agree, but 2+2 != 3
    assert scripted.count(STEP1) == 3  # check read the greedy reply agreement also used


# --- gate ------------------------------------------------------------------------------------


def test_gate_answers_easy_problems_at_once_with_system1(scripted):
    program = make(scripted, routing={"estimator": "agreement+check", "gate": 0.0})
    pred = program(problem=PROBLEM)
    assert len(pred.steps) == 1 and pred.steps[0].system == 1 and pred.answer == "12"
    assert scripted.count(DECOMPOSE) == 0 and scripted.count(WHOLE1) == 3
    stages = pred.usage.by_stage
    assert stages["gate/assess"]["lm_calls"] == 3 and set(stages) == {"gate/assess"}
    assert pred.steps[0].lm_calls == 3  # the whole problem's calls are the step's


def test_gate_decomposes_hard_problems(scripted):
    answers = iter(["12", "11", "12"])
    scripted.rules.insert(0, (WHOLE1, lambda p, o: brief(next(answers), "3 * 4")))
    pred = make(scripted, routing={"estimator": "agreement", "gate": 0.0})(problem=PROBLEM)
    assert len(pred.steps) == 2 and scripted.count(DECOMPOSE) == 1


def test_hard_problems_go_to_system2_whole_without_decomposition(scripted):
    scripted.rules.insert(0, (WHOLE1, brief("11", "3 * 4")))
    program = make(
        scripted,
        routing={"estimator": "check", "gate": 0.5, "decompose": False},
        system2_knobs={"samples": 3, "stop": "adaptive", "confidence": 0.8},
    )
    pred = program(problem=PROBLEM)
    assert len(pred.steps) == 1 and pred.steps[0].system == 2 and pred.answer == "12"
    assert scripted.count(DECOMPOSE) == 0
    assert len(pred.steps[0].samples) == 2  # two agreeing samples reach confidence 0.875


def test_gate_one_with_no_estimate_is_system1_on_the_whole_problem(scripted):
    pred = make(scripted, routing={"estimator": "none", "gate": 1.0})(problem=PROBLEM)
    assert len(pred.steps) == 1 and pred.steps[0].system == 1 and pred.answer == "12"
    assert scripted.count(WHOLE1) == 1 and scripted.count(RATE_ONE) == 0


# --- context ---------------------------------------------------------------------------------


def test_each_step_sees_every_earlier_answer(scripted):
    counter = iter(range(100, 200))
    scripted.rules.insert(0, (STEP2, lambda p, o: reasoned(str(next(counter)))))
    program = make(scripted, subproblems=("a", "b", "c", "d"), difficulties=(0.9, 0.9, 0.9))
    pred = program(problem=PROBLEM)
    answers = [s.answer for s in pred.steps]
    assert answers == ["100", "101", "102", "103"]
    prompts = [p for p, _ in scripted.calls if "Solve the current sub-problem" in p]
    for i, prompt in enumerate(prompts):
        context = prompt.split("Solved so far:")[-1].split("Now answer:")[0]
        assert all(a in context for a in answers[:i]) and not any(a in context for a in answers[i:])
    assert pred.answer == "103"


# --- fallbacks -------------------------------------------------------------------------------


def test_unreadable_decomposition_becomes_one_step(scripted):
    scripted.rules.insert(0, (DECOMPOSE, ""))
    pred = make(scripted)(problem=PROBLEM)
    assert [s.subproblem for s in pred.steps] == [PROBLEM]
    assert Fallback.DECOMPOSITION_UNUSABLE in pred.fallbacks


def test_a_numbered_decomposition_with_latex_is_read_as_steps(scripted):
    listing = "Steps:\n1. Find the matrix $\\mathbf{A}$.\n   - using $\\theta$\n2. Find the rest"
    scripted.rules.insert(0, (DECOMPOSE, listing))
    pred = make(scripted, difficulties=(0.2, 0.2))(problem=PROBLEM)
    assert [s.subproblem for s in pred.steps] == ["Find the matrix $\\mathbf{A}$.", PROBLEM]
    assert pred.usage.by_stage["decompose"]["lm_calls"] == 1


LOOP = "Let x be the price.\n" * 50


def test_a_cut_reply_gives_only_a_marked_answer(scripted):
    scripted.rules.append((WHOLE2, ScriptedText.cut(LOOP + "x = 3")))
    pred = CoT(profiles()[1])(problem=PROBLEM)
    assert pred.answer == "" and Fallback.NO_ANSWER in pred.steps[0].fallbacks
    scripted.rules.insert(0, (WHOLE2, ScriptedText.cut(LOOP + "the total is \\boxed{12}. Ch")))
    assert CoT(profiles()[1])(problem=PROBLEM + " Quickly.").answer == "12"


def test_a_step_without_an_answer_passes_no_text_to_later_steps(scripted):
    scripted.rules.insert(0, (STEP1, ScriptedText.cut(LOOP)))
    pred = make(scripted, difficulties=(0.2, 0.2))(problem=PROBLEM)
    assert [s.system for s in pred.steps] == [1, 2] and pred.steps[0].answer == ""
    last_prompt = [p for p, _ in scripted.calls if "Solve the current" in p][-1]
    assert "Let x be the price" not in last_prompt and pred.answer == "12"


@pytest.mark.parametrize(
    ("stated", "expected", "system"),
    [("1.7", 1.0, 2), ("-0.3", 0.0, 1), ("very hard", None, 2)],
)
def test_bad_difficulty_is_clamped_or_hard(scripted, stated, expected, system):
    scripted.rules.append((RATE_ONE, stated))
    program = make(scripted, subproblems=("a", "b"), batched=False, routing={"threshold": 0.5})
    pred = program(problem=PROBLEM)
    assert pred.steps[0].difficulty == expected and pred.steps[0].system == system
    assert pred.steps[0].fallbacks


def test_missing_batched_difficulties_are_hard(scripted):
    program = make(scripted, subproblems=("a", "b", "c"), difficulties=(0.1,))
    pred = program(problem=PROBLEM)
    assert [s.difficulty for s in pred.steps] == [0.1, None, 0.9]
    assert [s.system for s in pred.steps] == [1, 2, 2]
    assert Fallback.DIFFICULTY_COUNT in pred.steps[0].fallbacks


def test_selection_out_of_range_takes_first_candidate(scripted):
    scripted.rules.insert(0, (SELECT, "Candidate 7"))
    pred = make(scripted, k=3)(problem=PROBLEM)
    assert scripted.count(DECOMPOSE) == 3 and scripted.count(SELECT) == 1
    assert Fallback.SELECTION_UNUSABLE in pred.fallbacks and len(pred.steps) == 2


def test_selection_picks_candidate(scripted):
    replies = iter(["1. x1\n2. x2", "1. y1\n2. y2\n3. y3", "1. z1\n2. z2"])
    scripted.rules.insert(0, (DECOMPOSE, lambda p, o: next(replies)))
    scripted.rules.insert(0, (SELECT, "The best is candidate 1"))
    scripted.rules.append((RATE_ALL, "1. 0.1\n2. 0.1"))
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
    assert usage.lm_calls == calls
    assert usage.prompt_tokens == calls * PROMPT_TOKENS
    assert usage.completion_tokens == calls * COMPLETION_TOKENS
    assert {k: v["lm_calls"] for k, v in usage.by_stage.items()} == {
        "decompose": 1,
        "assess": 1,
        "solve": 2,
    }
    assert {k: v["lm_calls"] for k, v in usage.by_system.items()} == {"1": 1, "2": 1}
    assert [s.lm_calls for s in pred.steps] == [1, 1]
    assert pred.steps[0].samples[0].prompt_tokens == PROMPT_TOKENS


def test_labels_nest(scripted):
    lm = system1("scripted/s1", adapter="native").lm
    scripted.rules.append((".*", "ok"))
    with track() as ledger, label("gate"), label("assess", 1):
        lm(messages=[{"role": "user", "content": "x"}])
        with label(step=3):
            lm(messages=[{"role": "user", "content": "y"}])
    assert [(r.stage, r.system, r.step) for r in ledger.records] == [
        ("gate/assess", 1, None),
        ("gate/assess", 1, 3),
    ]


def test_counts_are_the_same_on_cache_hits(scripted):
    program = make(scripted, routing={"threshold": 0.5})
    first = program(problem=PROBLEM).usage
    n = len(scripted.calls)
    second = program(problem=PROBLEM).usage
    assert len(scripted.calls) == n  # served from the cache
    assert second.total_tokens == first.total_tokens > 0
    assert second.cached_calls == second.lm_calls and first.cached_calls == 0


# --- baselines -------------------------------------------------------------------------------


def test_cot_baseline_is_the_plain_prompt(scripted):
    scripted.rules.append((WHOLE2, reasoned("12")))
    pred = CoT(profiles()[1])(problem=PROBLEM)
    assert pred.answer == "12" and pred.usage.lm_calls == 1 and pred.steps[0].system == 2
    system, user = scripted.calls[0][0].split("\n", 1)[1].split("\n", 1)
    assert system == "Please reason step by step, and put your final answer within \\boxed{}."
    assert user == PROBLEM


def test_a_logprobs_profile_keeps_its_greedy_replys_token_logprobs(scripted):
    tokens = [{"token": "1", "logprob": -0.25}, {"token": "2", "logprob": -0.5}]
    scripted.rules.append((WHOLE2, lambda p, o: ScriptedText.with_logprobs(reasoned("12"), tokens)))
    pred = CoT(profiles(logprobs=True)[1])(problem=PROBLEM)
    assert pred.steps[0].samples[0].logprobs == [("1", -0.25), ("2", -0.5)]
    assert scripted.calls[-1][1].get("logprobs") is True
    Vote(profiles(samples=2, logprobs=True)[1])(problem=PROBLEM)  # samples: not asked
    assert not any(o.get("logprobs") for _, o in scripted.calls[1:])
    assert CoT(profiles()[1])(problem=PROBLEM + " Again.").steps[0].samples[0].logprobs is None


def test_vote_baseline_majority_by_equivalence(scripted):
    answers = iter(["12", "12.0", "13", "11", "\\frac{24}{2}"])
    scripted.rules.append((WHOLE2, lambda p, o: reasoned(next(answers))))
    pred = Vote(profiles(samples=5)[1])(problem=PROBLEM)
    assert pred.answer == "12" and pred.usage.lm_calls == 5
    assert [s.answer for s in pred.steps[0].samples] == ["12", "12.0", "13", "11", "\\frac{24}{2}"]
    seeds = [o.get("seed") for _, o in scripted.calls]
    assert seeds == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("knobs", "answers", "drawn"),
    [
        ({"stop": "adaptive", "confidence": 0.95, "samples": 8}, ["5"] * 8, 4),
        ({"stop": "adaptive", "confidence": 0.95, "samples": 8}, ["5", "6"] + ["5"] * 6, 7),
        ({"stop": "window", "window": 2, "samples": 8}, ["5", "6", "5", "5"] + ["6"] * 4, 4),
        ({"stop": "window", "window": 3, "samples": 5}, ["5", "6", "5", "5", "6"], 5),
    ],
)
def test_adaptive_voting_stops_early(scripted, knobs, answers, drawn):
    replies = iter(answers)
    scripted.rules.append((WHOLE2, lambda p, o: reasoned(next(replies))))
    pred = Vote(profiles(**knobs)[1])(problem=PROBLEM)
    assert pred.usage.lm_calls == drawn and pred.answer == "5"


@pytest.mark.parametrize(("method", "system"), [("uniform-s1", 1), ("uniform-s2", 2)])
def test_uniform_baselines(scripted, method, system):
    make(scripted)  # installs the rules
    program = build_program(
        method, system1_model="scripted/s1", system2_model="scripted/s2", adapter="native"
    )
    pred = program(problem=PROBLEM)
    assert [s.system for s in pred.steps] == [system, system]
    assert scripted.count(RATE_ALL) == 0 and scripted.count(RATE_ONE) == 0


def test_greedy_first_self_consistency_reuses_the_greedy_call_and_later_rollouts(scripted):
    """The greedy reply is CoT's own call and the samples are vote's rollouts 1.., so a run
    after CoT and vote is served from the cache."""
    answers = iter(["5", "6", "6", "5", "5"])
    scripted.rules.append((WHOLE2, lambda p, o: reasoned(next(answers))))
    profile = profiles()[1]
    CoT(profile)(problem=PROBLEM)  # greedy: "5"
    Vote(profiles(samples=4)[1])(problem=PROBLEM)  # rollouts 0-3: 6, 6, 5, 5
    calls = len(scripted.calls)
    knobs = {"samples": 4, "stop": "fixed", "greedy_first": True}
    pred = Vote(profiles(**knobs)[1])(problem=PROBLEM)
    assert len(scripted.calls) == calls  # greedy + rollouts 1-3, all cached
    assert [s.answer for s in pred.steps[0].samples] == ["5", "6", "5", "5"]
    assert pred.answer == "5"


def test_system2_goes_on_from_system1s_replies_when_they_make_the_same_calls(scripted):
    """Problem-level allocation as adaptive voting: System 1 (reasoning) and System 2
    (greedy-first self-consistency) on one model; a split gate's two replies are System
    2's first two, not asked again."""
    answers = iter(["5", "6", "6", "6"])
    scripted.rules.append((r"Please reason step by step", lambda p, o: reasoned(next(answers))))
    same = {"model": "scripted/same", "kind": "reasoning", "adapter": "native"}
    program = SCALE(
        SystemProfile(**same),
        SystemProfile(**same, samples=4, stop="adaptive", confidence=0.9, greedy_first=True),
        routing=Routing(estimator="agreement", gate=0.0, decompose=False),
        agreement_samples=2,
    )
    pred = program(problem=PROBLEM)
    (step,) = pred.steps
    assert step.system == 2 and pred.answer == "6"
    assert [s.answer for s in step.samples] == ["5", "6", "6", "6"]
    assert len(scripted.calls) == 4 and pred.usage.lm_calls == 4  # none made twice
    assert "continues from System 1's 2 replies" in step.notes


def test_the_default_program_after_cot_and_vote_makes_no_new_call(scripted):
    """The efficient preset's System 1 is CoT's call and its samples are vote's rollouts, so
    after CoT and vote on a problem (as in a benchmark) it is answered from the cache."""
    answers = iter(["5", "6", "5", "6", "6", "5"])
    scripted.rules.append((r"Please reason step by step", lambda p, o: reasoned(next(answers))))
    same = {"model": "scripted/same", "adapter": "native"}
    build_program("cot", **same)(problem=PROBLEM)  # greedy: 5
    build_program("vote", **same)(problem=PROBLEM)  # rollouts 0-4: 6 5 6 6 5
    calls = len(scripted.calls)
    pred = build_program(**same)(problem=PROBLEM)  # greedy 5, rollout 1 says 5
    assert len(scripted.calls) == calls
    assert pred.steps[0].system == 1 and pred.answer == "5"
