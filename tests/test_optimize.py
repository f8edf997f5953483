"""Routing search, the optimizer, outcome labels, voting replays and the bench, against the
scripted world where the best routing is known."""

from __future__ import annotations

import json
import threading

import dspy
import pytest
from conftest import ScriptedText
from world import EXAMPLES, install, pid, program, solve_step

from scale.optimizers import (
    CostAware,
    Grid,
    ResultRow,
    ResultsFileError,
    SCALEOptimizer,
    Trial,
    auroc,
    best_trial,
    collect_outcomes,
    estimator_quality,
    evaluate,
    feedback,
    greedy_first,
    pareto_front,
    replay,
    search_routing,
    tune_scorer,
)
from scale.programs import Step, StopRule, Vote, save_program, system2
from scale.programs.evidence import NoEstimate


@pytest.fixture
def world(scripted):
    install(scripted)
    return scripted


def by_threshold(trials: list[Trial]) -> dict[float, Trial]:
    return {t.settings["threshold"]: t for t in trials}


def test_search_finds_the_known_best_threshold(world):
    trials = search_routing(program(), EXAMPLES, Grid(), progress=False)
    by_tau = by_threshold(trials)
    assert by_tau[0.0].accuracy == by_tau[0.4].accuracy == 1.0
    assert by_tau[0.5].accuracy == 0.75 and by_tau[0.8].accuracy == 0.5
    assert by_tau[0.4].tokens_per_problem < by_tau[0.3].tokens_per_problem
    assert best_trial(trials).settings["threshold"] == 0.4
    assert 0.4 in {t.settings["threshold"] for t in pareto_front(trials)}
    # decomposition and scoring do not depend on the threshold: paid once, then cached
    assert world.count(r"Break the math problem") == len(EXAMPLES)
    assert sum(t.spent_tokens for t in trials[1:]) < trials[0].spent_tokens
    assert sum(t.spent_tokens for t in trials) < 0.4 * sum(t.total_tokens for t in trials)


def test_no_estimate_is_one_trial_per_system_without_rating_calls(world):
    grid = Grid(estimators=("none",), thresholds=(0.2, 0.4, 1.0))
    trials = search_routing(program(), EXAMPLES, grid, progress=False)
    assert [t.settings["threshold"] for t in trials] == [0.0, 1.0]  # below 1 routes alike
    all_s2, all_s1 = trials
    assert (all_s2.accuracy, all_s2.system2_fraction) == (1.0, 1.0)
    assert (all_s1.accuracy, all_s1.system2_fraction) == (0.5, 0.0)
    assert world.count(r"Rate how hard") == 0


def test_the_grid_has_one_trial_per_distinct_setting():
    grid = Grid(
        estimators=("none", "check"),
        gates=(None, 1.0),
        decompose=(True, False),
        thresholds=(0.0, 1.0),
        system2=[None, {"samples": 4}],
    )
    labels = [Trial(s).label() for s in grid.distinct()]
    assert labels == [
        "none gate=- threshold=0",
        "none gate=- threshold=0 S2[samples=4]",
        "none gate=- threshold=1",  # System 2 never runs: its knobs do not matter
        "none gate=- whole",
        "none gate=- whole S2[samples=4]",
        "none gate=1 threshold=0",  # every problem answered by System 1 at once
        "check gate=- threshold=0",
        "check gate=- threshold=0 S2[samples=4]",
        "check gate=- threshold=1",
        "check gate=- whole",
        "check gate=- whole S2[samples=4]",
        "check gate=1 threshold=0",
    ]


def test_agreement_cuts_between_its_scores_route_alike():
    grid = Grid(
        estimators=("agreement",), gates=(0.0, 0.3, 0.5, 0.9, 1.0, None), thresholds=(0.2, 0.7)
    )
    settings = grid.distinct(agreement_samples=2)  # scores 0 or 0.5
    assert [(s["gate"], s["threshold"]) for s in settings] == [
        (0.0, 0.0),
        (0.0, 0.5),
        (0.5, 0.0),
        (0.5, 0.5),
        (1.0, 0.0),
        (None, 0.0),
        (None, 0.5),
    ]
    assert len(grid.distinct()) == 11  # m unknown: every cut tried (gate 1 needs no threshold)


def test_optimizer_saves_the_best_setting_and_reports_ties(world, tmp_path):
    optimizer = SCALEOptimizer(progress=False)
    with pytest.warns(UserWarning, match="at least 30"):
        tuned = optimizer.compile(program(), trainset=EXAMPLES[:1], valset=EXAMPLES)
    assert tuned.routing.threshold == 0.4 and tuned.routing.estimator == "self"
    report = optimizer.report
    assert report["trials"] == 11 and report["best"]["settings"]["threshold"] == 0.4
    assert report["ties"] == {"tied": 5, "within_one_problem": 8}  # 0..0.4 all get 4/4
    assert 0.5 < report["cache_saving"] < 1
    saved = json.loads(save_program(tuned, tmp_path / "t.json").read_text())
    assert saved["routing"]["threshold"] == 0.4


def test_the_search_tunes_system2_and_the_program_keeps_it(world, tmp_path):
    world.rules.insert(0, (r"MODEL=\S*s2\nPlease reason", lambda p, o: "\\boxed{10}"))
    grid = Grid(
        estimators=("none",),
        gates=(None,),
        decompose=(False,),
        system2=[
            {"samples": 3, "stop": "fixed"},
            {"samples": 3, "stop": "adaptive", "confidence": 0.8},
        ],
    )
    optimizer = SCALEOptimizer(grid=grid, progress=False)
    with pytest.warns(UserWarning):
        tuned = optimizer.compile(program(), trainset=EXAMPLES[:1], valset=EXAMPLES)
    fixed, adaptive = optimizer.trials
    assert fixed.accuracy == adaptive.accuracy == 1.0
    assert adaptive.tokens_per_problem <= fixed.tokens_per_problem
    assert (tuned.system2.stop, tuned.system2.samples) == ("adaptive", 3)
    state = json.loads(save_program(tuned, tmp_path / "t.json").read_text())
    assert state["scale"]["profiles"]["system2"]["stop"] == "adaptive"


def one_demo_bootstrap() -> SCALEOptimizer:
    """BootstrapFewShot with one demo per predictor and a one-trial routing search."""
    return SCALEOptimizer(
        prompt_optimizer="bootstrap",
        grid=Grid(thresholds=(0.4,)),
        max_demos=1,
        progress=False,
    )


def test_bootstrap_changes_the_saved_demos(world, tmp_path):
    student = program()
    with pytest.warns(UserWarning):
        tuned = one_demo_bootstrap().compile(student, trainset=EXAMPLES[:2], valset=EXAMPLES[2:])
    saved = json.loads(save_program(tuned, tmp_path / "t.json").read_text())
    assert "first quantity" in json.dumps(saved["decomposer.decompose"]["demos"])
    # the problem-level solvers, which the decomposing pass never calls, get demos too
    for name in ("whole2.predict.predict", "whole1.predict.predict"):
        demos = saved[name]["demos"]
        assert len(demos) == 1 and demos[0]["answer"] == "10" and "Problem" in demos[0]["problem"]
    assert student.decomposer.decompose.demos == []  # compile does not touch the student
    assert student.whole2.predict.predict.demos == []


def test_bootstrapped_demos_are_rendered_as_earlier_turns(world):
    with pytest.warns(UserWarning):
        tuned = one_demo_bootstrap().compile(program(), trainset=EXAMPLES[:2], valset=EXAMPLES[2:])
    world.calls.clear()
    tuned.whole2(problem="Problem Z: compute the total.")
    prompt = world.calls[-1][0]
    assert prompt.count("Problem Z") == 1 and "Problem A: compute" in prompt
    assert "\\boxed{10}" in prompt.split("Problem Z")[0]  # the demo's reply, before the question


def test_cost_aware_objective_prefers_the_cheaper_of_equal_accuracy():
    cheap = Trial({"threshold": 0.4}, accuracy=0.8, tokens_per_problem=100)
    dear = Trial({"threshold": 0.1}, accuracy=0.8, tokens_per_problem=300)
    objective = CostAware(lam=1e-3)
    for t in (cheap, dear):
        t.objective = objective.objective(t.accuracy, t.tokens_per_problem)
    assert cheap.objective > dear.objective and best_trial([dear, cheap]) is cheap
    budget = CostAware(budget=200)
    assert budget.objective(0.8, 100) == 0.8 and budget.objective(0.9, 300) == 0.0
    with pytest.raises(ValueError, match="finite"):
        CostAware(lam=float("nan"))


def test_cost_aware_search_trades_accuracy_for_tokens(world):
    grid = Grid(thresholds=(0.4, 0.9))
    trials = search_routing(program(), EXAMPLES, grid, objective=CostAware(lam=0.5), progress=False)
    assert best_trial(trials).settings["threshold"] == 0.9  # cheaper, a little less accurate
    trials = search_routing(program(), EXAMPLES, grid, progress=False)
    assert best_trial(trials).settings["threshold"] == 0.4


def test_feedback_names_the_expected_answer_and_the_diverging_step():
    example = dspy.Example(problem="p", answer="10", solution="5 + 5 = 10")
    pred = dspy.Prediction(answer="8", steps=[Step("first", answer="4"), Step("p", answer="8")])
    fb = feedback(example, pred)
    assert fb.score == 0.0 and "'10'" in fb.feedback and "Step 1" in fb.feedback
    assert feedback(example, dspy.Prediction(answer="10", steps=[])).feedback == "Correct."


# --- outcome labels --------------------------------------------------------------------------


def test_outcome_labels_for_steps_and_problems(world):
    world.rules.insert(
        0,
        (
            r"quick mental-math solver. Reply",
            lambda p, o: f"Calculation: 5+5\nAnswer: \\boxed{{{'10' if pid(p) in 'AB' else '9'}}}",
        ),
    )
    outcomes, errors = collect_outcomes(program(), EXAMPLES, ("self", "agreement", "check"))
    assert errors == {}
    steps = [o for o in outcomes if o.index >= 0]
    problems = [o for o in outcomes if o.index < 0]
    assert [(o.example_id, o.hard) for o in steps] == [
        ("A", False),
        ("B", False),
        ("C", True),
        ("D", True),
    ]
    assert [o.scores["self"] for o in steps] == [0.15, 0.35, 0.45, 0.75]
    assert [o.hard for o in problems] == [False, False, True, True]  # against the gold answer
    assert [o.scores["check"] for o in problems] == [0.0, 0.0, 1.0, 1.0]
    quality = estimator_quality(outcomes)
    assert quality["self"]["steps"]["auroc"] == 1.0
    assert quality["agreement"]["steps"]["auroc"] == 0.5  # identical replies: no signal
    assert quality["check"]["problems"]["auroc"] == 1.0
    assert quality["check"]["problems"]["fires"] == 0.5
    assert quality["check"]["problems"]["precision_when_fired"] == 1.0


def test_an_outcome_label_does_not_depend_on_the_estimator(world):
    """System 1's samples disagree on A's first step while its greedy answer is right: the
    step is easy, and agreement scores it 1/3."""

    def solve(prompt: str, params: dict) -> str:
        if pid(prompt) == "A" and "quick" in prompt and params.get("seed") == 1:
            return "Calculation: 6\nAnswer: \\boxed{6}"
        return solve_step(prompt, params)

    world.rules.insert(0, (r"Now answer:", solve))
    outcomes, _ = collect_outcomes(program(), EXAMPLES, ("agreement",), problems=False)
    first = {o.example_id: o for o in outcomes}
    assert first["A"].scores["agreement"] == pytest.approx(1 / 3, abs=1e-5)
    assert first["A"].system1_answer == "5" and not first["A"].hard


def test_outcomes_record_a_failing_problem_and_go_on(world):
    def solve(prompt: str, params: dict) -> str:
        if pid(prompt) == "C":
            raise RuntimeError("backend down")
        return solve_step(prompt, params)

    world.rules.insert(0, (r"Now answer:", solve))
    outcomes, errors = collect_outcomes(program(), EXAMPLES, ("self",), problems=False)
    assert [o.example_id for o in outcomes] == ["A", "B", "D"]
    assert list(errors) == ["C"] and "backend down" in errors["C"]


def test_outcomes_resume_from_their_journal(world, tmp_path):
    """An interrupted comparison goes on: what the journal holds is not labelled again, a
    line cut short is, and a journal of other settings is refused."""
    journal = tmp_path / "labelled.jsonl"
    down = {"C"}

    def solve(prompt: str, params: dict) -> str:
        if pid(prompt) in down:
            raise RuntimeError("backend down")
        return solve_step(prompt, params)

    world.rules.insert(0, (r"Now answer:", solve))
    _, errors = collect_outcomes(program(), EXAMPLES, ("self",), problems=False, journal=journal)
    assert list(errors) == ["C"]
    *kept, last = journal.read_text().splitlines()
    assert json.loads(last)["id"] == "D"
    journal.write_text("\n".join([*kept, last[:20]]))  # interrupted while writing D
    down = set()
    outcomes, errors = collect_outcomes(
        program(), EXAMPLES, ("self",), problems=False, journal=journal
    )
    assert errors == {} and [o.example_id for o in outcomes] == ["A", "B", "C", "D"]
    written = [json.loads(line)["id"] for line in journal.read_text().splitlines()[1:]]
    assert written == ["A", "B", "C", "D"]  # A and B labelled once, D's cut line dropped
    fresh, _ = collect_outcomes(program(), EXAMPLES, ("self",), problems=False)
    assert [o.to_dict() for o in outcomes] == [o.to_dict() for o in fresh]
    with pytest.raises(ResultsFileError, match=r"another run \(different estimators\)"):
        collect_outcomes(program(), EXAMPLES, ("agreement",), problems=False, journal=journal)
    journal.write_text("not a journal\n")
    with pytest.raises(ResultsFileError, match="not a results file written by scale"):
        collect_outcomes(program(), EXAMPLES, ("self",), problems=False, journal=journal)


def test_outcomes_labelled_in_parallel_match_one_at_a_time(world):
    world.rules.insert(
        0,
        (
            r"quick mental-math solver. Reply",
            lambda p, o: f"Calculation: 5+5\nAnswer: \\boxed{{{'10' if pid(p) in 'AB' else '9'}}}",
        ),
    )
    names = ("self", "agreement", "check")
    one, _ = collect_outcomes(program(), EXAMPLES, names)
    four, errors = collect_outcomes(program(), EXAMPLES, names, threads=4)
    assert errors == {} and [o.to_dict() for o in four] == [o.to_dict() for o in one]


def test_a_pinned_estimator_holds_in_its_own_thread_only():
    shared = program()
    pinned = NoEstimate()
    seen = []
    with shared.rating_with(pinned):
        other = threading.Thread(target=lambda: seen.append(shared.estimator))
        other.start()
        other.join()
        assert shared.estimator is pinned
    assert seen and seen[0] is not pinned and shared.estimator is not pinned


def test_auroc():
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [True, False, False]) == 0.5
    assert auroc([None, 0.1], [True, False]) == 1.0  # missing counts as hardest
    assert auroc([0.3, 0.4], [True, True]) is None


def test_scorer_demos_are_labelled_by_outcome(world):
    tuned = program()
    report = tune_scorer(tuned, EXAMPLES, EXAMPLES, max_demos=2)
    assert report["auroc_before"] == 1.0 and report["train_steps"] == 4
    assert {d.difficulty for d in tuned.assessor.assess.demos} == {0.2, 0.8}


# --- voting replays --------------------------------------------------------------------------


SEQUENCES = {
    "A": ["5", "5", "5", "5", "5", "5", "5", "5"],
    "B": ["5", "6", "5", "6", "6", "6", "5", ""],
    "C": ["", "7", "7", "8", "7", "7", "7", "7"],
}
GREEDY = {"A": "5", "B": "6", "C": "8"}  # the greedy (unseeded) reply


def _voting_world(scripted) -> list[dspy.Example]:
    def reply(prompt: str, params: dict) -> str:
        seed = params.get("seed")
        answer = GREEDY[pid(prompt)] if seed is None else SEQUENCES[pid(prompt)][seed]
        if not answer:  # cut at max_tokens with no answer: a reply the adapter cannot read
            return ScriptedText.cut("Let x be the price.\nThen 2x is")
        return f"\\boxed{{{answer}}}"

    scripted.rules.append((r"Please reason", reply))
    return [
        dspy.Example(id=k, problem=f"Problem {k}: go.", answer="5").with_inputs("problem")
        for k in SEQUENCES
    ]


@pytest.mark.parametrize(
    "rule",
    [
        StopRule("fixed", 3),
        StopRule("fixed", 8),
        StopRule("adaptive", 8, confidence=0.8),
        StopRule("adaptive", 8, confidence=0.95),
        StopRule("window", 8, window=2),
        StopRule("window", 8, window=3),
    ],
)
def test_replaying_stored_samples_equals_sampling_online(scripted, rule):
    examples = _voting_world(scripted)
    knobs = {"samples": 8, "stop": "fixed"}
    stored, _ = evaluate(
        Vote(system2("scripted/s2", adapter="native", **knobs)), examples, progress=False
    )
    online_profile = system2(
        "scripted/s2",
        adapter="native",
        samples=rule.cap,
        stop=rule.kind,
        confidence=rule.confidence,
        window=rule.window,
    )
    online, _ = evaluate(Vote(online_profile), examples, progress=False)
    assert any(row.steps[0]["fallbacks"] for row in online)  # "": an unreadable reply
    for row, live in zip(stored, online, strict=True):
        replayed = replay(row, rule)
        assert replayed.predicted == live.predicted and replayed.correct == live.correct
        assert replayed.usage["total_tokens"] == live.usage["total_tokens"]
        assert replayed.usage["lm_calls"] == live.usage["lm_calls"]
        assert replayed.steps[0]["fallbacks"] == live.steps[0]["fallbacks"]


@pytest.mark.parametrize("confidence", [0.8, 0.95])
def test_greedy_first_replay_from_cot_and_vote_equals_sampling_online(scripted, confidence):
    """Including a problem whose greedy reply ran into max_tokens with no answer (CoT's row
    an error): online, the vote goes on sampling past it, and so does the replay."""
    from scale.programs import CoT

    examples = _voting_world(scripted)

    def no_greedy_answer(prompt: str, params: dict) -> str:
        return (
            ScriptedText.cut("Let x be the price.\nThen 2x is")
            if params.get("seed") is None
            else "\\boxed{5}"
        )

    scripted.rules.insert(0, (r"Problem D: go", no_greedy_answer))
    examples.append(
        dspy.Example(id="D", problem="Problem D: go.", answer="5").with_inputs("problem")
    )
    profile = {"adapter": "native", "samples": 8}
    votes, _ = evaluate(Vote(system2("scripted/s2", **profile)), examples, progress=False)
    cots, _ = evaluate(CoT(system2("scripted/s2", adapter="native")), examples, progress=False)
    online_profile = system2(
        "scripted/s2", **profile, stop="adaptive", confidence=confidence, greedy_first=True
    )
    online, _ = evaluate(Vote(online_profile), examples, progress=False)
    rule = StopRule("adaptive", 8, confidence=confidence)
    assert cots[-1].error and online[-1].predicted == "5"
    for row, live in zip(greedy_first(cots, votes), online, strict=True):
        replayed = replay(row, rule)
        assert replayed.predicted == live.predicted and replayed.correct == live.correct
        assert replayed.usage["total_tokens"] == live.usage["total_tokens"]
        assert replayed.usage["lm_calls"] == live.usage["lm_calls"]


def test_replay_keeps_the_rows_fallbacks_when_a_sample_predates_its_own():
    new = {"answer": "5", "prompt_tokens": 1, "completion_tokens": 1, "fallback": None}
    old = {"answer": "5", "prompt_tokens": 1, "completion_tokens": 1}  # an older chain
    step = {"subproblem": "p", "samples": [new, old, old], "fallbacks": ["no_answer"]}
    row = ResultRow(id="x", gold="5", steps=[step])
    replayed = replay(row, StopRule("fixed", 2))
    assert replayed.predicted == "5" and replayed.steps[0]["fallbacks"] == ["no_answer"]
    step["samples"] = [new, new | {"fallback": "no_answer", "answer": ""}, new]
    assert replay(row, StopRule("fixed", 1)).steps[0]["fallbacks"] == []


def test_replay_leaves_error_rows_alone():
    row = ResultRow(id="x", gold="1", error="boom")
    assert replay(row, StopRule("fixed", 2)) is row


# --- bench -----------------------------------------------------------------------------------


def test_bench_runs_round_by_round_replays_voting_and_reports(scripted, tmp_path):
    from scale.bench.run import run_bench

    examples = _voting_world(scripted)
    scripted.rules.insert(0, (r"s1\nPlease reason", "\\boxed{5}"))
    order: list[str] = []

    def build(name: str):
        order.append(name)
        if name == "vote":
            return Vote(system2("scripted/s2", adapter="native", samples=4))
        from scale.programs import CoT

        return CoT(system2("scripted/s1", adapter="native"))

    report = run_bench(
        examples,
        ["cot", "vote", "adaptive-vote", "esc"],
        build,
        tmp_path,
        dataset="dev",
        models="m",
        vote_samples=4,
        round_size=2,
        progress=False,
    )
    assert order == ["cot", "vote"]  # adaptive-vote and esc are replayed, never sampled
    assert report["n"] == 3 and report["reference"] == "cot"
    methods = report["methods"]
    assert {"vote@1", "vote@4", "adaptive-vote@0.95", "esc@w2", "esc@w4"} <= set(methods)
    assert "adaptive-vote-gf@0.8" in methods  # greedy-first: cot's chain, then vote's
    assert ("esc@w3" in methods and "vote" not in methods) or methods["vote"]
    vs = methods["vote@4"]["vs_reference"]
    assert vs["n"] == 3 and vs["losses"] == 1 and vs["wins"] == 0  # B: 6 wins the vote
    assert (
        methods["vote@1"]["summary"]["tokens_per_problem"]
        < methods["vote@4"]["summary"]["tokens_per_problem"]
    )
    for name in ("report.md", "report.json", "tradeoff.png", "tradeoff-time.png"):
        assert (tmp_path / name).exists()
    assert "| adaptive-vote@0.8 |" in (tmp_path / "report.md").read_text()

    calls = len(scripted.calls)
    written = (tmp_path / "report.json").read_text()
    again = run_bench(examples, ["cot"], build, tmp_path, dataset="dev", models="m",
                      vote_samples=4, round_size=2, rounds=1, progress=False)  # fmt: skip
    assert len(scripted.calls) == calls  # the first round's problems, all done: no call
    # nothing new ran: the report (its machine, times and methods) stays as it was
    assert (tmp_path / "report.json").read_text() == written and again["n"] == 3
    (tmp_path / "report.json").unlink()  # a missing report is written again, for all rounds
    again = run_bench(examples, ["cot", "vote"], build, tmp_path, dataset="dev", models="m",
                      vote_samples=4, round_size=2, progress=False)  # fmt: skip
    assert len(scripted.calls) == calls and again["n"] == 3
    assert again["methods"]["vote@4"]["vs_reference"] == vs


def test_a_bench_without_cot_reports_no_comparison_column(scripted, tmp_path):
    from scale.bench.run import run_bench

    def build(name: str) -> Vote:
        return Vote(system2("scripted/s2", adapter="native", samples=4))

    report = run_bench(_voting_world(scripted), ["vote"], build, tmp_path, dataset="dev",
                       models="m", vote_samples=4, progress=False)  # fmt: skip
    assert report["reference"] is None
    table = [line for line in (tmp_path / "report.md").read_text().splitlines() if "|" in line]
    assert "vs None" not in "\n".join(table)
    assert len({line.count("|") for line in table}) == 1  # every row has the header's columns


@pytest.mark.parametrize("which", ["mipro", "gepa"])
def test_mipro_and_gepa_compile_end_to_end(which, tmp_path):
    """Both DSPy optimizers run inside SCALEOptimizer against a real HTTP model server."""
    from scale.bench.fakeserver import FakeServer
    from scale.harness.datasets import load_dataset
    from scale.programs import build_program

    examples = load_dataset("gsm8k", n=6, seed=3)
    for example in examples:
        example.answer = "42"  # what the fake server answers
    with FakeServer() as server:
        student = build_program("scale", model="openai/fake", api_base=server.url, estimator="self")
        optimizer = SCALEOptimizer(
            prompt_optimizer=which, grid=Grid(thresholds=(0.5,)), progress=False
        )
        with pytest.warns(UserWarning):
            tuned = optimizer.compile(student, trainset=examples[:3], valset=examples[3:])
        assert server.counts["requests"] > 3 * 8  # more than the routing search's own calls
    assert optimizer.report["prompt_optimizer"] == which
    assert optimizer.report["best"]["accuracy"] == 1.0
    path = save_program(tuned, tmp_path / "t.json")
    loaded = build_program(model="openai/fake", api_base=server.url, program=str(path))
    assert loaded.routing.threshold == 0.5
