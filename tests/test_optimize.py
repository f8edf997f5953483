"""Evaluation, routing search, the optimizer, the CLI's eval/sweep/compile and MLflow logging,
against a scripted world where the best threshold is known."""

from __future__ import annotations

import json
import re
import time

import dspy
import pytest
from conftest import chat

from scale.cli import main
from scale.optimizers import (
    CostAware,
    SCALEOptimizer,
    Trial,
    best_trial,
    evaluate,
    feedback,
    pareto_front,
    read_results,
    search_routing,
)
from scale.programs import SCALE, MathProgram, Routing, Step, system1, system2

# Step 1 of problem X has difficulty D[X]; System 1 gets it right only below 0.4, System 2
# always; the final step is right exactly when the context holds the right step-1 answer.
D = {"A": 0.15, "B": 0.35, "C": 0.45, "D": 0.75}
EXAMPLES = [
    dspy.Example(id=k, problem=f"Problem {k}: compute the total.", answer="10").with_inputs(
        "problem"
    )
    for k in D
]


def _pid(prompt: str) -> str:
    return re.findall(r"Problem (\w):", prompt)[-1]


def _solve(prompt: str, params: dict) -> str:
    reasoning = "[[ ## reasoning ## ]]" in prompt
    tail = prompt.split("[[ ## earlier_steps ## ]]")[-1]
    if "first quantity" in tail.split("[[ ## subproblem ## ]]")[-1]:
        right = reasoning or D[_pid(prompt)] < 0.4
        answer = "5" if right else "4"
    else:
        answer = "10" if "Answer 1: 5" in tail else "8"
    if reasoning:
        return chat(reasoning="think " * 40, answer=answer)
    return chat(answer=answer)


@pytest.fixture
def world(scripted):
    scripted.rules += [
        (r"Break the math problem", chat(subproblems=["first quantity", "final"])),
        (r"Rate how hard each", lambda p, o: chat(difficulties=[D[_pid(p)]])),
        (r"Rate how hard the current", lambda p, o: chat(difficulty=D[_pid(p)])),
        (r"Answer the current sub-problem", _solve),
    ]
    scripted.completion_tokens = lambda text: len(text.split())
    return scripted


def program() -> SCALE:
    return SCALE(system1("scripted/s1"), system2("scripted/s2"), routing=Routing(estimator="self"))


def test_search_finds_the_known_best_threshold(world):
    trials = search_routing(program(), EXAMPLES, progress=False)
    by_tau = {t.value: t for t in trials}
    assert by_tau[0.0].accuracy == by_tau[0.4].accuracy == 1.0
    assert by_tau[0.5].accuracy == 0.75 and by_tau[0.8].accuracy == 0.5
    assert by_tau[0.4].tokens_per_problem < by_tau[0.3].tokens_per_problem
    assert by_tau[0.4].tokens_per_problem < by_tau[0.0].tokens_per_problem
    assert best_trial(trials).value == 0.4
    assert 0.4 in {t.value for t in pareto_front(trials)}
    # decomposition and scoring do not depend on the threshold: paid once, then cached
    assert world.count(r"Break the math problem") == len(EXAMPLES)
    assert sum(t.spent_tokens for t in trials[1:]) < trials[0].spent_tokens


def test_no_estimate_is_one_trial_per_system_without_rating_calls(world):
    trials = search_routing(
        program(), EXAMPLES, estimators=("none",), thresholds=(0.2, 0.4, 1.0), progress=False
    )
    assert [t.value for t in trials] == [0.0, 1.0]  # every threshold below 1 routes alike
    all_s2, all_s1 = trials
    assert (all_s2.accuracy, all_s2.system2_fraction) == (1.0, 1.0)
    assert (all_s1.accuracy, all_s1.system2_fraction) == (0.5, 0.0)
    assert world.count(r"Rate how hard") == 0
    rated = search_routing(program(), EXAMPLES, thresholds=(0.4,), progress=False)[0]
    assert rated.accuracy == 1.0 and rated.system2_fraction < 1.0
    assert world.count(r"Rate how hard") == len(EXAMPLES)


def test_the_grid_has_one_trial_per_distinct_routing():
    from scale.optimizers.search import _distinct_grid

    grid = _distinct_grid(("none", "self"), (None, 0.3, 1.0), "threshold", (0.0, 0.5, 1.0))
    assert grid == [
        ("none", None, 0.0),  # no estimate: every gate below 1 decomposes, threshold 0.5 is 0
        ("none", None, 1.0),
        ("none", 1.0, 0.0),  # gate 1 never decomposes: once, whatever estimator and threshold
        *[("self", gate, value) for gate in (None, 0.3) for value in (0.0, 0.5, 1.0)],
    ]


def test_optimizer_saves_the_best_threshold(world, tmp_path):
    optimizer = SCALEOptimizer(estimators=("self",), progress=False)
    tuned = optimizer.compile(program(), trainset=EXAMPLES[:1], valset=EXAMPLES)
    assert tuned.routing.threshold == 0.4 and tuned.routing.estimator == "self"
    assert len(optimizer.trials) == 11 and optimizer.report["best"]["value"] == 0.4
    from scale.programs import save_program

    saved = json.loads(save_program(tuned, tmp_path / "t.json").read_text())
    assert saved["routing"]["threshold"] == 0.4


def one_demo_bootstrap() -> SCALEOptimizer:
    """BootstrapFewShot with one demo per predictor and a one-trial routing search."""
    return SCALEOptimizer(
        prompt_optimizer="bootstrap",
        estimators=("self",),
        thresholds=(0.4,),
        max_demos=1,
        progress=False,
    )


def test_bootstrap_changes_the_saved_demos(world, tmp_path):
    from scale.programs import save_program

    world.rules.append((r"Solve the math problem", chat(reasoning="5 + 5", answer="10")))
    student = program()
    before = json.dumps(student.dump_state()["decomposer.decompose"]["demos"])
    tuned = one_demo_bootstrap().compile(student, trainset=EXAMPLES[:2], valset=EXAMPLES[2:])
    saved = json.loads(save_program(tuned, tmp_path / "t.json").read_text())
    after = json.dumps(saved["decomposer.decompose"]["demos"])
    assert before == "[]" and after != before
    assert "first quantity" in after
    # the problem-level solver, which the decomposing pass never calls, gets demos too
    whole = saved["whole.predict.predict"]["demos"]
    assert len(whole) == 1 and whole[0]["answer"] == "10" and "Problem" in whole[0]["problem"]
    assert student.decomposer.decompose.demos == []  # compile does not touch the student
    assert student.whole.predict.predict.demos == []


def test_bootstrap_takes_every_demo_from_the_teacher(world):
    world.rules.append((r"MODEL=\S*teacher.*Solve the math", chat(reasoning="T", answer="10")))
    world.rules.append((r"Solve the math problem", chat(reasoning="student", answer="10")))
    teacher = SCALE(system1("scripted/teacher"), system2("scripted/teacher"))
    tuned = one_demo_bootstrap().compile(
        program(), trainset=EXAMPLES[:2], valset=EXAMPLES[2:], teacher=teacher
    )
    assert [d.reasoning for d in tuned.whole.predict.predict.demos] == ["T"]
    assert teacher.routing.decompose_threshold != 1.0  # the teacher itself is not changed


def test_cost_aware_objective_prefers_the_cheaper_of_equal_accuracy():
    cheap = Trial("self", None, "threshold", 0.4, accuracy=0.8, tokens_per_problem=100)
    dear = Trial("self", None, "threshold", 0.1, accuracy=0.8, tokens_per_problem=300)
    objective = CostAware(lam=1e-3)
    for t in (cheap, dear):
        t.objective = objective.objective(t.accuracy, t.tokens_per_problem)
    assert cheap.objective > dear.objective
    assert best_trial([dear, cheap]) is cheap
    budget = CostAware(budget=200)
    assert budget.objective(0.8, 100) == 0.8 and budget.objective(0.9, 300) == 0.0


def test_cost_aware_search_trades_accuracy_for_tokens(world):
    trials = search_routing(
        program(),
        EXAMPLES,
        thresholds=(0.4, 0.9),
        objective=CostAware(lam=0.5),
        progress=False,
    )
    assert best_trial(trials).value == 0.9  # much cheaper, a little less accurate
    trials = search_routing(
        program(), EXAMPLES, thresholds=(0.4, 0.9), objective=CostAware(), progress=False
    )
    assert best_trial(trials).value == 0.4


def test_feedback_names_the_expected_answer_and_the_diverging_step():
    example = dspy.Example(problem="p", answer="10", solution="5 + 5 = 10")
    pred = dspy.Prediction(answer="8", steps=[Step("first", answer="4"), Step("p", answer="8")])
    fb = feedback(example, pred)
    assert fb.score == 0.0 and "'10'" in fb.feedback and "Step 1" in fb.feedback
    assert feedback(example, dspy.Prediction(answer="10", steps=[])).feedback == "Correct."


class Counting(MathProgram):
    """Answers "10" and counts calls; raises KeyboardInterrupt on one problem."""

    method = "counting"

    def __init__(self, interrupt_on: str | None = None, fail_on: str | None = "B"):
        super().__init__()
        self.seen: list[str] = []
        self.interrupt_on = interrupt_on
        self.fail_on = fail_on

    def solve(self, problem: str) -> tuple[list[Step], list[str]]:
        if problem.startswith(f"Problem {self.interrupt_on}"):
            raise KeyboardInterrupt
        if problem.startswith(f"Problem {self.fail_on}"):
            raise RuntimeError("model exploded")
        self.seen.append(problem)
        return [Step(problem, answer="10")], []


def test_eval_resume_neither_repeats_nor_loses(tmp_path):
    out = tmp_path / "r.jsonl"
    first = Counting(interrupt_on="C")
    with pytest.raises(KeyboardInterrupt):
        evaluate(first, EXAMPLES, out=out, progress=False)
    assert [r["id"] for r in read_results(out)] == ["A", "B"]
    with open(out, "a") as f:
        f.write('{"id": "C", "gold": "10", "predic')  # a torn line from a killed writer
    second = Counting()
    rows, summary = evaluate(second, EXAMPLES, out=out, resume=True, progress=False)
    assert [p[:9] for p in second.seen] == ["Problem C", "Problem D"]
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == ["A", "B", "C", "D"]
    assert [r["id"] for r in rows] == ["A", "B", "C", "D"]
    assert summary.n == 4 and summary.errors == 1 and summary.correct == 3
    assert rows[1]["error"].startswith("RuntimeError")


def test_results_finished_together_are_yielded_in_example_order():
    from scale.optimizers.evaluate import _parallel

    def run(k: str) -> str:
        if k != "A":
            time.sleep(0.05)
        if k == "C":
            raise KeyboardInterrupt
        return k

    got = []
    with pytest.raises(KeyboardInterrupt):
        for result in _parallel(run, list("ABC"), threads=3):
            got.append(result)
            time.sleep(0.3)  # B and C finish meanwhile: the next wait() returns both
    assert got == ["A", "B"]  # B's result is not dropped by C's Ctrl-C


def test_retry_errors_redoes_error_rows_and_the_new_row_supersedes(tmp_path):
    out = tmp_path / "r.jsonl"
    evaluate(Counting(), EXAMPLES, out=out, progress=False)
    fixed = Counting(fail_on=None)
    rows, summary = evaluate(fixed, EXAMPLES, out=out, resume=True, progress=False)
    assert fixed.seen == [] and summary.errors == 1
    rows, summary = evaluate(
        fixed, EXAMPLES, out=out, resume=True, retry_errors=True, progress=False
    )
    assert [p[:9] for p in fixed.seen] == ["Problem B"]
    assert [r["id"] for r in rows] == ["A", "B", "C", "D"] and rows[1]["predicted"] == "10"
    assert summary.errors == 0 and summary.correct == 4
    assert len(out.read_text().splitlines()) == 5
    assert read_results(out)[1]["error"] is None


def test_time_share_in_model_calls_leaves_out_rows_served_wholly_from_cache():
    from scale.optimizers.evaluate import summarize

    def row(lm_seconds: float, seconds: float, calls: int, cached: int) -> dict:
        usage = {"lm_calls": calls, "cached_calls": cached, "lm_seconds": lm_seconds}
        return {"correct": True, "usage": usage, "seconds": seconds}

    fresh, partly_cached = row(9.0, 10.0, 2, 0), row(3.0, 5.0, 2, 1)
    all_cached = row(0.001, 1.0, 2, 2)
    assert summarize([fresh, partly_cached, all_cached], 16.0).lm_seconds_share == 0.8
    assert summarize([all_cached], 1.0).lm_seconds_share is None


def test_results_file_is_not_overwritten_without_resume(tmp_path):
    from scale.optimizers.evaluate import ResultsFileError

    out = tmp_path / "r.jsonl"
    out.write_text("")
    with pytest.raises(ResultsFileError, match="--resume"):
        evaluate(Counting(), EXAMPLES, out=out, progress=False)


# --- CLI and MLflow --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """MLflow puts artifacts (mlruns/) in the working folder: keep them out of the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps(e.toDict()) + "\n" for e in EXAMPLES))
    return str(path)


def test_cli_eval_json_summary_and_mlflow_run(world, dataset, store, tmp_path, capsys):
    out = tmp_path / "res.jsonl"
    code = main(
        [
            "eval",
            "--dataset",
            dataset,
            "--model",
            "scripted/s1",
            "--estimator",
            "self",
            "--decompose-threshold",
            "0",
            "--threshold",
            "0.4",
            "--out",
            str(out),
            "--json",
            "--quiet",
            "--tracking-uri",
            store,
            "--experiment",
            "t-eval",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) >= {
        "accuracy",
        "ci95",
        "n",
        "errors",
        "tokens_per_problem",
        "generated_tokens_per_problem",
        "system2_fraction",
        "wall_s",
    }
    assert summary["n"] == 4 and summary["accuracy"] == 1.0
    assert 0 < summary["generated_tokens_per_problem"] < summary["tokens_per_problem"]
    import mlflow

    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["t-eval"])
    assert len(runs) == 1 and runs["metrics.accuracy"][0] == 1.0
    assert runs["params.threshold"][0] == "0.4"
    artifacts = mlflow.MlflowClient().list_artifacts(runs["run_id"][0])
    assert [a.path for a in artifacts] == ["res.jsonl"]


def test_cli_compile_nested_trials_artifact_and_tuned_solve(
    world, dataset, store, tmp_path, capsys
):
    tuned = tmp_path / "tuned.json"
    code = main(
        [
            "compile",
            "--dataset",
            dataset,
            "--train",
            "1",
            "--val",
            "3",
            "--optimizer",
            "none",
            "--estimators",
            "self",
            "--decompose-thresholds",
            "none",
            "--thresholds",
            "0,0.4,0.9",
            "--model",
            "scripted/s1",
            "--out",
            str(tuned),
            "--quiet",
            "--tracking-uri",
            store,
            "--experiment",
            "t-compile",
        ]
    )
    assert code == 0
    state = json.loads(tuned.read_text())
    assert state["routing"]["threshold"] in (0.0, 0.4, 0.9)
    assert len(state["scale"]["trials"]) == 3
    assert set(state["scale"]["train_ids"]).isdisjoint(state["scale"]["val_ids"])
    import mlflow

    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["t-compile"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parents) == 1 and len(children) == 3
    assert set(children["params.threshold"]) == {"0.0", "0.4", "0.9"}
    artifacts = mlflow.MlflowClient().list_artifacts(parents["run_id"].iloc[0])
    assert "tuned.json" in [a.path for a in artifacts]
    capsys.readouterr()
    assert (
        main(
            [
                "solve",
                "--program",
                str(tuned),
                "--model",
                "scripted/s1",
                "--json",
                "Problem A: compute the total.",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == "10"


def test_bench_runs_round_by_round_and_reports_after_each_round(tmp_path):
    from scale.bench import run_bench

    log: list[tuple[str, str]] = []
    interim: list[str | None] = []

    class Logged(Counting):
        def __init__(self, name: str):
            super().__init__(fail_on=None if name == "cot" else "B")
            self.name = name

        def solve(self, problem: str) -> tuple[list[Step], list[str]]:
            log.append((self.name, problem[8]))
            return super().solve(problem)

    def build(name: str) -> Logged:
        md = tmp_path / "report.md"
        interim.append(md.read_text().splitlines()[0] if md.exists() else None)
        return Logged(name)

    report = run_bench(
        EXAMPLES,
        ["cot", "other"],
        build,
        tmp_path,
        dataset="dev",
        models="m",
        round_size=3,
        progress=False,
    )
    assert log == [
        *[("cot", k) for k in "ABC"],
        *[("other", k) for k in "ABC"],
        ("cot", "D"),
        ("other", "D"),
    ]
    assert interim == [None, None, *["# Benchmark: dev (n=3 of 4 planned)"] * 2]
    assert (tmp_path / "report.md").read_text().startswith("# Benchmark: dev (n=4)\n")
    assert report["n"] == report["planned"] == 4 and report["ids"] == list("ABCD")
    other = report["methods"]["other"]
    assert other["summary"]["n"] == 4 and other["summary"]["errors"] == 1
    assert other["vs_cot"]["n"] == 4 and other["vs_cot"]["accuracy_diff"] == -0.25


def test_cli_tuned_program_is_benchmarked_only_on_examples_it_never_saw(
    world, dataset, tmp_path, capsys
):
    seen = tmp_path / "bench-ids.jsonl"
    seen.write_text('{"id": "A"}\n{"id": "B"}\n')
    tuned = tmp_path / "tuned.json"
    base = ["--model", "scripted/s1", "--quiet", "--no-mlflow"]
    compile_args = ["compile", "--dataset", dataset, "--exclude", str(seen), "--train", "1"]
    compile_args += ["--val", "1", "--optimizer", "none", "--estimators", "self"]
    compile_args += ["--decompose-thresholds", "none", "--thresholds", "0.4"]
    compile_args += ["--out", str(tuned), *base]
    assert main(compile_args) == 0
    header = json.loads(tuned.read_text())["scale"]
    assert set(header["train_ids"] + header["val_ids"]) == {"C", "D"}
    bench = ["bench", "--dataset", dataset, "--methods", "uniform-s2", "--program", str(tuned)]
    bench += base
    capsys.readouterr()
    assert main([*bench, "--out", str(tmp_path / "all")]) == 2
    assert "compiled on 2 of these examples" in capsys.readouterr().err
    estimators = ["estimators", "--dataset", dataset, "--program", str(tuned), *base]
    assert main([*estimators, "--out", str(tmp_path / "est")]) == 2
    assert "compiled on 2 of these examples" in capsys.readouterr().err
    others = tmp_path / "dev-ids.jsonl"
    others.write_text('{"id": "C"}\n{"id": "D"}\n')
    assert main([*bench, "--exclude", str(others), "--out", str(tmp_path / "b")]) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["ids"] == ["A", "B"] and set(report["methods"]) == {"uniform-s2", "tuned"}
    assert report["methods"]["tuned"]["summary"]["accuracy"] == 1.0
    assert report["model_sha256"] == {"scripted/s1": None}


def test_model_checksums_for_packaged_and_file_models(tmp_path):
    import hashlib

    from scale.local import PACKAGED_MODELS, model_sha256

    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 10)
    assert model_sha256(f"local/{weights}") == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert model_sha256("local/smollm2-135m") == PACKAGED_MODELS["smollm2-135m"].sha256
    assert model_sha256("openai/gpt-4o-mini") is None
    assert model_sha256(f"local/{tmp_path / 'missing.gguf'}") is None


def test_cli_sweep_writes_table_and_plot(world, dataset, tmp_path, capsys):
    out_dir = tmp_path / "sweep"
    code = main(
        [
            "sweep",
            "--dataset",
            dataset,
            "--model",
            "scripted/s1",
            "--estimator",
            "self",
            "--decompose-thresholds",
            "none",
            "--thresholds",
            "0,0.4,0.9",
            "--out-dir",
            str(out_dir),
            "--no-mlflow",
            "--quiet",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "0.40" in table and "0.90" in table
    data = json.loads((out_dir / "sweep.json").read_text())
    assert [t["value"] for t in data["trials"]] == [0.0, 0.4, 0.9]
    assert (out_dir / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_tracking_store_unusable_run_still_completes(world, dataset, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    bad = f"sqlite:///{tmp_path}/a-file/y.db"
    code = main(
        [
            "eval",
            "--dataset",
            dataset,
            "--model",
            "scripted/s1",
            "--estimator",
            "self",
            "--json",
            "--quiet",
            "--tracking-uri",
            bad,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["n"] == 4, captured.err
    assert "MLflow tracking unavailable" in captured.err


def test_outcome_label_is_system1_answer_not_an_estimator_score(world):
    """System 1's samples at temperature > 0 disagree on A's first step while its greedy
    answer is right: the step is easy (greedy right) and consistency scores it 1/3."""
    from scale.optimizers import collect_outcomes, estimator_quality

    def solve(prompt: str, params: dict) -> str:
        if _pid(prompt) == "A" and params.get("temperature") and params.get("seed") == 1:
            return chat(answer="6")
        return _solve(prompt, params)

    world.rules.insert(0, (r"Answer the current sub-problem", solve))
    outcomes, _ = collect_outcomes(program(), EXAMPLES, ("consistency",))
    first = {o.example_id: o for o in outcomes}
    assert first["A"].scores["consistency"] == pytest.approx(1 / 3, abs=1e-5)
    assert first["A"].system1_answer == "5" and not first["A"].hard
    assert [first[k].hard for k in "BCD"] == [False, True, True]
    assert estimator_quality(outcomes)["consistency"]["quartiles"] == [0, 0, 0, 0, 0.3333]


def test_cli_estimators_compares_on_the_same_steps(world, dataset, store, tmp_path, capsys):
    out_dir = tmp_path / "est"
    args = ["estimators", "--dataset", dataset, "--model", "scripted/s1", "--quiet"]
    args += ["--estimators", "self,consistency", "--thresholds", "0,0.4,0.9"]
    args += ["--tracking-uri", store, "--experiment", "t-est"]
    assert main([*args, "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "| self | 1.0 |" in printed and "Model(s): scripted/s1." in printed
    report = json.loads((out_dir / "estimators.json").read_text())
    assert report["n_steps"] == 4 and report["hard_share"] == 0.5
    self_, consistency = report["estimators"]["self"], report["estimators"]["consistency"]
    assert self_["best"]["value"] == 0.4 and self_["best"]["accuracy"] == 1.0
    assert [t["value"] for t in consistency["trials"]] == [0.0, 0.4, 0.9]
    assert consistency["auroc"] == 0.5 and consistency["distinct"] == 1
    rows = (out_dir / "outcomes.jsonl").read_text().splitlines()
    assert [json.loads(r)["hard"] for r in rows] == [False, False, True, True]
    import mlflow

    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["t-est"])
    assert len(runs) == 1 + 2 * 3  # the comparison and one nested run per trial
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
    assert parent["metrics.self.auroc"] == 1.0


def test_estimators_record_a_failing_problem_and_go_on(world):
    from scale.optimizers import collect_outcomes

    def solve(prompt: str, params: dict) -> str:
        if _pid(prompt) == "C":
            raise RuntimeError("backend down")
        return _solve(prompt, params)

    world.rules.insert(0, (r"Answer the current sub-problem", solve))
    outcomes, errors = collect_outcomes(program(), EXAMPLES, ("self",))
    assert [o.example_id for o in outcomes] == ["A", "B", "D"]
    assert list(errors) == ["C"] and "backend down" in errors["C"]


@pytest.mark.parametrize("which", ["mipro", "gepa"])
def test_mipro_and_gepa_compile_end_to_end(which, tmp_path):
    """Both DSPy optimizers run inside SCALEOptimizer against a real HTTP model server."""
    from scale.datasets import load_dataset
    from scale.fakeserver import FakeServer
    from scale.programs import build_program, save_program

    examples = load_dataset("gsm8k", n=6, seed=3)
    for example in examples:
        example.answer = "42"  # what the fake server answers
    with FakeServer() as server:
        student = build_program("scale", model="openai/fake", api_base=server.url, estimator="self")
        optimizer = SCALEOptimizer(
            prompt_optimizer=which, estimators=("self",), thresholds=(0.5,), progress=False
        )
        tuned = optimizer.compile(student, trainset=examples[:3], valset=examples[3:])
        evaluation_only = 3 * 8  # an upper bound on the routing search's own calls
        assert server.counts["requests"] > evaluation_only
    assert optimizer.report["prompt_optimizer"] == which
    assert optimizer.report["best"]["accuracy"] == 1.0
    path = save_program(tuned, tmp_path / "t.json")
    assert build_program(model="openai/fake", program_path=str(path)).routing.threshold == 0.5


def test_auroc():
    from scale.optimizers import auroc

    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [True, False, False]) == 0.5
    assert auroc([None, 0.1], [True, False]) == 1.0  # missing counts as hardest
    assert auroc([0.3, 0.4], [True, True]) is None


def test_outcome_labels_and_scorer_demos(world):
    from scale.optimizers import collect_outcomes, estimator_quality, tune_scorer

    outcomes, errors = collect_outcomes(program(), EXAMPLES, ("self", "consistency"))
    assert errors == {}
    assert [(o.example_id, o.hard) for o in outcomes] == [
        ("A", False),
        ("B", False),
        ("C", True),
        ("D", True),
    ]
    assert [o.scores["self"] for o in outcomes] == [0.15, 0.35, 0.45, 0.75]
    quality = estimator_quality(outcomes)
    assert quality["self"]["auroc"] == 1.0  # the scripted scores separate S1 failures
    assert quality["consistency"]["auroc"] == 0.5  # greedy-identical samples: no signal
    tuned = program()
    report = tune_scorer(tuned, EXAMPLES, EXAMPLES, max_demos=2)
    assert report["auroc_before"] == 1.0 and report["train_steps"] == 4
    assert {d.difficulty for d in tuned.scorer.assess.demos} == {0.2, 0.8}
