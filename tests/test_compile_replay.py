"""Compiling on recorded calls: the calibrated estimator, honest selection, the incumbent
rule, the objectives, and a compiled program that runs online as it was replayed."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from scale.cli import main
from scale.models import local
from scale.optimizers import read_results
from scale.optimizers.calibration import fit_calibration
from scale.optimizers.outcomes import auroc
from scale.optimizers.recipes import Recipe, RecordedProblem, load_recorded, recipe_of
from scale.optimizers.selection import (
    DEFAULT_RULE,
    Candidate,
    Fitter,
    Objective,
    advantage,
    compile_recorded,
    nested,
    select,
)
from scale.programs import ProgramFileError, ProgramSpec
from scale.programs.calibrated import Calibration, CalibrationError, gate_features
from scale.programs.records import Sample
from scale.programs.route import Routing, RoutingError

ROOT = Path(__file__).resolve().parents[1]
MATH = ROOT / "bench/results/round2-math500-l13"
REPLAYED = ROOT / "bench/results/compile-replay/math500-l13"


def reply(answer: str, logprob: float, tokens: int = 100) -> Sample:
    return Sample(answer, 50, tokens, logprobs=[("x", logprob)] * tokens)


def problem(i: int, greedy_right: bool, doubt_logprob: float, chains_right: bool = True):
    """A problem whose gold is "1": the greedy reply right or not, with this token logprob,
    and seven chains, right or all different."""
    chains = tuple(Sample("1" if chains_right else str(10 + k), 50, 100) for k in range(7))
    greedy = reply("1" if greedy_right else "2", doubt_logprob)
    return RecordedProblem(f"p{i}", "1", greedy, chains)


def test_calibration_learns_a_real_signal_and_ignores_a_constant():
    rng = random.Random(0)
    rows, right = [], []
    for _ in range(200):
        d = rng.random()
        rows.append({"doubt_total": d, "cap_hit": 0.0})
        right.append(rng.random() > d)
    model = fit_calibration(rows, right, ("doubt_total", "cap_hit"))
    assert model.coef[0] < -0.5 and model.coef[1] == 0.0
    p = [model.probability(r) for r in rows]
    assert auroc([1 - q for q in p], [not r for r in right]) > 0.7
    assert (
        model.probability({"doubt_total": 0.0, "cap_hit": 0})
        > 0.7
        > 0.3
        > model.probability({"doubt_total": 1.0, "cap_hit": 0})
    )
    # one class only: the rate, no weights
    flat = fit_calibration(rows[:20], [True] * 20, ("doubt_total",))
    assert abs(flat.coef[0]) < 1e-9 and flat.probability(rows[0]) > 0.99


def test_gate_features_read_the_reply_and_the_program():
    greedy = Sample("12", 10, 1024, logprobs=[("a", -0.1)] * 1024)
    values = gate_features(greedy, Sample("12.0"), max_tokens=1024)
    assert values["cap_hit"] == 1.0 and values["no_logprobs"] == 0.0
    assert values["program_agrees"] == 1.0 and values["program_silent"] == 0.0
    assert math.isclose(values["doubt_mean"], 1 - math.exp(-0.1))
    bare = gate_features(Sample(""), Sample("3"))
    assert bare["no_logprobs"] == 1.0 and bare["doubt_total"] == 1.0
    assert bare["program_silent"] == 1.0 and bare["program_agrees"] == 0.0
    assert "program_agrees" not in gate_features(greedy)


GOOD = {
    "features": ["doubt_total"],
    "center": [0.2],
    "scale": [0.1],
    "coef": [-1.0],
    "intercept": 0.5,
    "l2": 1.0,
    "n": 40,
}


@pytest.mark.parametrize(
    "change",
    [
        {"features": ["__import__('os')"]},
        {
            "features": ["doubt_total", "doubt_total"],
            "center": [0, 0],
            "scale": [1, 1],
            "coef": [0, 0],
        },
        {"coef": [float("nan")]},
        {"coef": [1e300]},
        {"scale": [0.0]},
        {"center": [0.1, 0.2]},
        {"coef": ["1"]},
        {"n": True},
        {"extra": 1},
        {"features": ["doubt_total"] * 10_000},
    ],
)
def test_a_calibration_is_checked_and_bounded(change):
    with pytest.raises(CalibrationError):
        Calibration.from_dict(GOOD | change)
    with pytest.raises(RoutingError):
        Routing(estimator="calibrated", calibration=GOOD | change)


def test_the_calibrated_estimator_needs_its_model():
    assert Calibration.from_dict(GOOD).to_dict() == GOOD
    with pytest.raises(ValueError, match="scale compile --replay"):
        ProgramSpec(model="openai/x", estimator="calibrated").build().estimator  # noqa: B018


def test_a_tampered_calibration_in_a_program_file_is_refused(tmp_path):
    state = json.loads((REPLAYED / "programs-accuracy-a.json").read_text())
    state["routing"]["calibration"]["coef"][0] = "__import__('os').system('x')"
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(state))
    with pytest.raises((ProgramFileError, RoutingError), match="weights must be numbers"):
        ProgramSpec(model="openai/x", program=str(path)).build()


def noise_problems(n: int = 60, seed: int = 1) -> list[RecordedProblem]:
    """Greedy right half the time, its logprobs unrelated to that; chains always right."""
    rng = random.Random(seed)
    return [problem(i, rng.random() < 0.5, -rng.random()) for i in range(n)]


def test_noise_only_features_lose_to_the_incumbent():
    problems = noise_problems()
    incumbent = Recipe("none", None, DEFAULT_RULE)  # every problem to System 2: all right
    grid = [
        Candidate("calibrated", DEFAULT_RULE, share=s, features=("doubt_total",))
        for s in (0.25, 0.5)
    ]
    grid += [Candidate("confidence-total", DEFAULT_RULE, share=0.5)]
    compiled = compile_recorded(
        problems, incumbent, Objective("cost-aware", points_per_1k=5), max_tokens=None, grid=grid
    )
    assert not compiled.replaced and compiled.recipe == incumbent
    assert "not above 0" in compiled.report["why"]
    forced = compile_recorded(
        problems,
        incumbent,
        Objective("cost-aware", points_per_1k=5),
        max_tokens=None,
        grid=grid,
        force=True,
    )
    assert forced.replaced and forced.recipe.estimator != "none"


def test_a_selection_that_surely_wins_replaces_the_incumbent():
    problems = noise_problems()
    cot = Recipe("none", 1.0, DEFAULT_RULE)  # System 1 only: right half the time
    compiled = compile_recorded(problems, cot, Objective("accuracy"), max_tokens=None)
    assert compiled.replaced and compiled.report["advantage"]["ci95"][0] > 0
    assert compiled.report["nested"]["accuracy"] == 1.0


def test_a_signal_that_separates_is_selected_and_nested_estimates_honestly():
    # greedy right exactly when its logprob is high: a gate at a quarter of them is free
    rng = random.Random(2)
    problems = []
    for i in range(60):
        right = i % 2 == 0
        problems.append(problem(i, right, -0.01 if right else -2.0 - rng.random()))
    fitter = Fitter(None)
    grid = [
        Candidate("none", DEFAULT_RULE),
        Candidate("confidence-mean", DEFAULT_RULE, share=0.25),
    ]
    objective = Objective("cost-aware", points_per_1k=10)
    winner, _ = select(fitter, grid, problems, objective, 5)
    assert winner.estimator == "confidence-mean"
    held_out, chosen = nested(fitter, grid, problems, objective, 5)
    assert all(c.startswith("confidence-mean") for c in chosen)
    assert np.mean([p.correct for p in held_out]) >= 0.9


def test_objectives_rank_as_stated():
    right_cheap = [problem(0, True, -0.1)]
    fitter = Fitter(None)
    s1 = fitter.play(Recipe("none", 1.0, DEFAULT_RULE), right_cheap)  # 150 tokens
    s2 = fitter.play(Recipe("none", None, DEFAULT_RULE), right_cheap)  # more, also right
    assert Objective("accuracy").rank(s1) > Objective("accuracy").rank(s2)  # ties: fewer tokens
    budget = Objective("budget", budget_tokens=200)
    assert budget.rank(s1) > budget.rank(s2)
    assert Objective("cost-aware", points_per_1k=10).points(s1)[0] == pytest.approx(100 - 1.5)
    with pytest.raises(ValueError):
        Objective("budget")
    over = advantage(s1, s2, budget)
    assert over["replace"] and "budget" in over["why"]


def test_only_problem_level_programs_replay():
    spec = ProgramSpec(model="openai/x")
    assert recipe_of(spec.build()) == Recipe("agreement", 0.0, DEFAULT_RULE)
    with pytest.raises(ValueError, match="decomposes"):
        recipe_of(ProgramSpec(model="openai/x", preset="stepwise").build())


def test_an_incumbent_reading_programs_needs_them(capsys):
    argv = ["compile", "--replay", str(MATH / "chains-8"), "--dataset", str(MATH / "fold-a.jsonl")]
    argv += ["--n", "50", "--model", "openai/x", "--out", "x.json", "--no-mlflow"]
    argv += ["--incumbent", str(REPLAYED / "programs-accuracy-a.json")]
    assert main(argv) == 2
    assert "--programs pot.jsonl" in capsys.readouterr().err


def test_load_recorded_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match=r"holds no cot\.jsonl"):
        load_recorded(tmp_path, {"x": "1"})
    with pytest.raises(ValueError, match="1 of the 1 problems are not recorded"):
        load_recorded(MATH / "chains-8", {"nope": "1"})


def _close(a, b) -> bool:
    """Equal structures whose floats agree to 1e-9."""
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_compile_replay_cli_writes_a_program_that_says_why(tmp_path, capsys):
    out = tmp_path / "tuned.json"
    argv = ["compile", "--replay", str(MATH / "chains-8"), "--dataset", str(MATH / "fold-a.jsonl")]
    argv += ["--n", "50", "--model", "openai/x", "--out", str(out), "--no-mlflow"]
    argv += ["--programs", str(ROOT / "bench/results/round3-programs/math500-l13/pot.jsonl")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "nested estimate" in printed and "wrote: calibrated+program" in printed
    saved = json.loads(out.read_text())
    committed = json.loads((REPLAYED / "programs-accuracy-a.json").read_text())
    # the bench's program, from the CLI (weights to float rounding: numpy's sums may differ)
    assert _close(saved["routing"], committed["routing"])
    assert saved["scale"]["report"]["advantage"]["replace"] is True


def test_the_compiled_program_runs_online_as_it_was_replayed(tmp_path, monkeypatch):
    """The committed calibrated+program program, run by `scale bench` on the recorded
    runtime (greedy reply, program re-run in the sandbox, chains), answers as the replay
    said, with the same tokens and calls."""
    rows = [json.loads(line) for line in (MATH / "fold-b.jsonl").open()][:6]
    dataset = tmp_path / "six.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv(
        "SCALE_RECORDINGS", str(ROOT / "bench/results/round3-programs/math500-l13/recordings")
    )
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))
    argv = ["bench", "--dataset", str(dataset), "--n", "6", "--methods", "tuned", "--quiet"]
    argv += ["--program", str(REPLAYED / "programs-accuracy-a.json"), "--no-mlflow"]
    argv += ["--model", "local/qwen2.5-coder-1.5b", "--runtime", "recorded"]
    try:
        assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    finally:
        local.set_runtime(None)
    replayed = {r.id: r for r in read_results(REPLAYED / "programs-accuracy.jsonl")}
    live = read_results(tmp_path / "out" / "tuned.jsonl")
    assert len(live) == 6

    def calls(row):
        return row.predicted, row.usage["total_tokens"], row.usage["lm_calls"]

    assert [calls(r) for r in live] == [calls(replayed[r.id]) for r in live]
    assert all("P(System 1 right)" in " ".join(r.steps[0]["notes"]) for r in live)
