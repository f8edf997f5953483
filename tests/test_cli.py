"""The ``scale`` command against the scripted world: eval, compile, sweep, bench,
estimators, MLflow logging, exit codes, and what reaches the terminal."""

from __future__ import annotations

import json

import mlflow
import pytest
from world import MODELS, install, write_dataset

from scale.cli import main


@pytest.fixture
def world(scripted):
    install(scripted)
    return scripted


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """MLflow puts artifacts (mlruns/) in the working folder: keep them out of the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "dev.jsonl")


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


SELF = ["--estimator", "self", "--gate", "0"]


def test_eval_json_summary_and_mlflow_run(world, dataset, store, tmp_path, capsys):
    out = tmp_path / "res.jsonl"
    argv = ["eval", "--dataset", dataset, *MODELS, "--estimator", "self", "--threshold", "0.4"]
    argv += ["--out", str(out), "--json", "--quiet", "--tracking-uri", store]
    assert run([*argv, "--experiment", "t-eval"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 4 and summary["accuracy"] == 1.0
    assert 0 < summary["generated_tokens_per_problem"] < summary["tokens_per_problem"]
    assert summary["fallbacks_per_call"] == 0.0
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["t-eval"])
    assert len(runs) == 1 and runs["metrics.accuracy"][0] == 1.0
    assert runs["params.threshold"][0] == "0.4" and "params.api_key" not in runs
    artifacts = mlflow.MlflowClient().list_artifacts(runs["run_id"][0])
    assert [a.path for a in artifacts] == ["res.jsonl"]


def test_no_cache_runs_the_model_for_a_request_made_before(world, dataset, tmp_path):
    argv = ["eval", "--dataset", dataset, *MODELS, *SELF, "--quiet", "--no-mlflow"]
    assert run([*argv, "--out", str(tmp_path / "first.jsonl")]) == 0
    first = len(world.calls)
    assert run([*argv, "--out", str(tmp_path / "cached.jsonl")]) == 0
    assert len(world.calls) == first  # answered from DSPy's cache
    assert run([*argv, "--no-cache", "--out", str(tmp_path / "timed.jsonl")]) == 0
    assert len(world.calls) == 2 * first


def test_compile_nested_trials_artifact_and_tuned_solve(world, dataset, store, tmp_path, capsys):
    tuned = tmp_path / "tuned.json"
    argv = ["compile", "--dataset", dataset, "--train", "1", "--val", "3"]
    argv += ["--optimizer", "none", "--estimators", "self", "--gates", "none"]
    argv += ["--decompose-options", "true", "--thresholds", "0,0.4,0.9", *MODELS]
    argv += ["--out", str(tuned), "--quiet", "--tracking-uri", store, "--experiment", "t-compile"]
    with pytest.warns(UserWarning, match="at least 30"):
        assert run(argv) == 0
    printed = capsys.readouterr().out
    assert "trials tied with it" in printed
    state = json.loads(tuned.read_text())
    assert state["routing"]["threshold"] in (0.0, 0.4, 0.9)
    assert len(state["scale"]["trials"]) == 3 and "ties" in state["scale"]["report"]
    assert set(state["scale"]["train_ids"]).isdisjoint(state["scale"]["val_ids"])
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["t-compile"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parents) == 1 and len(children) == 3
    assert set(children["params.threshold"]) == {"0.0", "0.4", "0.9"}
    artifacts = mlflow.MlflowClient().list_artifacts(parents["run_id"].iloc[0])
    assert "tuned.json" in [a.path for a in artifacts]
    argv = ["solve", "--program", str(tuned), *MODELS, "--json", "Problem A: compute the total."]
    assert run(argv) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "10"


def test_a_tuned_program_is_measured_only_on_examples_it_never_saw(
    world, dataset, tmp_path, capsys
):
    seen = tmp_path / "bench-ids.jsonl"
    seen.write_text('{"id": "A"}\n{"id": "B"}\n')
    tuned = tmp_path / "tuned.json"
    base = [*MODELS, "--quiet", "--no-mlflow"]
    argv = ["compile", "--dataset", dataset, "--exclude", str(seen), "--train", "1", "--val", "1"]
    argv += ["--optimizer", "none", "--estimators", "self", "--thresholds", "0.4"]
    with pytest.warns(UserWarning):
        assert run([*argv, "--out", str(tuned), *base]) == 0
    header = json.loads(tuned.read_text())["scale"]
    assert set(header["train_ids"] + header["val_ids"]) == {"C", "D"}
    capsys.readouterr()
    bench = ["bench", "--dataset", dataset, "--methods", "uniform-s2", "--program", str(tuned)]
    assert run([*bench, *base, "--out", str(tmp_path / "all")]) == 2
    assert "compiled on 2 of these examples" in capsys.readouterr().err
    for command in (["estimators", "--program", str(tuned)], ["eval", "--program", str(tuned)]):
        argv = [command[0], "--dataset", dataset, *command[1:], *base, "--out", "x"]
        assert run(argv) == 2
        assert "compiled on 2 of these examples" in capsys.readouterr().err
    others = tmp_path / "dev-ids.jsonl"
    others.write_text('{"id": "C"}\n{"id": "D"}\n')
    assert run([*bench, *base, "--exclude", str(others), "--out", str(tmp_path / "b")]) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["ids"] == ["A", "B"] and set(report["methods"]) == {"uniform-s2", "tuned"}
    assert report["methods"]["tuned"]["summary"]["accuracy"] == 1.0
    assert report["methods"]["uniform-s2"]["tuned_vs"]["n"] == 2
    for method, built in (("uniform-s2", "uniform-s2"), ("tuned", "scale")):
        header = json.loads((tmp_path / "b" / f"{method}.jsonl").read_text().splitlines()[0])
        assert header["identity"]["method"] == built  # only 'tuned' is the --program


def test_sweep_writes_table_and_plot(world, dataset, tmp_path, capsys):
    out_dir = tmp_path / "sweep"
    argv = ["sweep", "--dataset", dataset, *MODELS, "--preset", "stepwise", "--estimator", "self"]
    argv += ["--gates", "none"]
    argv += ["--thresholds", "0,0.4,0.9", "--out-dir", str(out_dir), "--no-mlflow", "--quiet"]
    assert run(argv) == 0
    assert "threshold=0.4" in capsys.readouterr().out
    data = json.loads((out_dir / "sweep.json").read_text())
    assert [t["settings"]["threshold"] for t in data["trials"]] == [0.0, 0.4, 0.9]
    assert (out_dir / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_estimators_compares_on_the_same_steps_and_problems(
    world, dataset, store, tmp_path, capsys
):
    out_dir = tmp_path / "est"
    argv = ["estimators", "--dataset", dataset, *MODELS, "--preset", "stepwise", "--quiet"]
    argv += ["--estimators", "self,check", "--threads", "3"]
    argv += ["--tracking-uri", store, "--experiment", "t-est", "--out", str(out_dir)]
    assert run(argv) == 0
    printed = capsys.readouterr().out
    assert "| self | steps | 1.0 |" in printed and "Model(s): scripted/s1." in printed
    report = json.loads((out_dir / "estimators.json").read_text())
    assert report["n_steps"] == 4 and report["n_problems"] == 4
    assert report["hard_share"] == {"steps": 0.5, "problems": 0.0}
    assert report["estimators"]["self"]["steps"]["best_threshold"]["threshold"] == 0.35
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["t-est"])
    assert runs["metrics.self.steps.auroc"].iloc[0] == 1.0


def test_estimators_on_problems_only_never_decompose(world, dataset, tmp_path, capsys):
    out_dir = tmp_path / "est"
    argv = ["estimators", "--dataset", dataset, *MODELS, "--preset", "stepwise", "--quiet"]
    argv += ["--estimators", "check", "--levels", "problems", "--no-mlflow", "--out", str(out_dir)]
    assert run(argv) == 0
    report = json.loads((out_dir / "estimators.json").read_text())
    assert (report["n_steps"], report["n_problems"]) == (0, 4)
    assert world.count("Break the math problem") == 0
    assert run([*argv[:-2], "--levels", "words", "--out", str(out_dir)]) == 2
    assert "--levels takes steps and/or problems" in capsys.readouterr().err
    # run again: resumed from labelled.jsonl, nothing labelled twice; other settings refused
    lines = (out_dir / "labelled.jsonl").read_text()
    assert run(argv) == 0 and (out_dir / "labelled.jsonl").read_text() == lines
    assert json.loads((out_dir / "estimators.json").read_text())["n_problems"] == 4
    assert run([*argv, "--estimators", "self"]) == 2
    assert "another run (different estimators)" in capsys.readouterr().err


def test_an_unusable_tracking_store_does_not_stop_the_run(world, dataset, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    argv = ["eval", "--dataset", dataset, *MODELS, "--json", "--quiet"]
    assert run([*argv, "--tracking-uri", f"sqlite:///{tmp_path}/a-file/y.db"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n"] == 4 and "MLflow tracking unavailable" in captured.err


@pytest.mark.parametrize("listening", [False, True])
def test_a_dead_tracking_server_is_given_up_on_quickly(world, dataset, capsys, listening):
    """A closed port, and a server that accepts connections but never answers."""
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        if listening:
            sock.listen()
        port = sock.getsockname()[1]
        started = time.monotonic()
        argv = ["eval", "--dataset", dataset, *MODELS, "--json", "--quiet"]
        assert run([*argv, "--tracking-uri", f"http://127.0.0.1:{port}"]) == 0
        elapsed = time.monotonic() - started
    assert elapsed < 15, elapsed
    assert capsys.readouterr().err.count("MLflow tracking unavailable") == 1


# --- exit codes and what a person sees -------------------------------------------------------


def test_a_run_whose_every_example_errored_exits_1(scripted, dataset, capsys):
    def down(prompt, params):
        raise RuntimeError("backend down")

    scripted.rules.append((".*", down))
    argv = ["eval", "--dataset", dataset, *MODELS, "--method", "cot", "--retries", "0"]
    assert run([*argv, "--quiet", "--no-mlflow"]) == 1
    assert "every one of the 4 examples ended in an error" in capsys.readouterr().err


def test_solve_json_reports_a_failure_as_json(scripted, capsys):
    scripted.rules.append((".*", lambda p, o: (_ for _ in ()).throw(RuntimeError("down"))))
    argv = ["solve", *MODELS, "--method", "cot", "--retries", "0", "--json", "What is 2+2?"]
    assert run(argv) == 1
    assert "down" in json.loads(capsys.readouterr().out)["error"]


def test_model_text_reaches_the_terminal_without_escape_sequences(scripted, capsys):
    scripted.rules.append((".*", "\\boxed{\x1b[5m42\x1b[0m}"))
    assert run(["solve", *MODELS, "--method", "cot", "What is 6*7?"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[5m42" in out
    assert run(["solve", *MODELS, "--method", "cot", "--json", "What is 6*7?"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "\x1b[5m42\x1b[0m"  # JSON stays exact


def test_a_truncated_problem_is_said_on_stderr(world, capsys):
    assert run(["solve", *MODELS, "--method", "cot", "x" * 30_000]) == 0
    assert "problem truncated from 30000 to 20000 characters" in capsys.readouterr().err


def test_n_above_the_dataset_size_is_said(world, dataset, capsys):
    assert run(["eval", "--dataset", dataset, *MODELS, "--n", "9", "--quiet", "--no-mlflow"]) == 0
    assert "has 4 examples for --n 9" in capsys.readouterr().err


BAD = [
    (["eval", "--dataset", "gsm8k", "--timeout", "-1"], "positive number of seconds"),
    (["eval", "--dataset", "gsm8k", "--timeout", "0"], "positive number of seconds"),
    (["eval", "--dataset", "gsm8k", "--timeout", "nan"], "positive number of seconds"),
    (["eval", "--dataset", "gsm8k", "--threads", "99999999999999999999"], "more than the 256"),
    (["eval", "--dataset", "gsm8k", "--level", "abc", "--no-mlflow"], "expected integers"),
    (["throughput", "--delay", "-5"], "finite number >= 0"),
    (["solve", "--agreement-samples", "1", "x"], "must be in 2..16"),
    (["throughput", "--method", "bogus"], "invalid choice"),
    (["solve", "--system2-samples", "100000", "x"], "over the cap of 64"),
    (
        [
            *("eval", "--dataset", "gsm8k", "--model", "openai/x", "--budget-tokens", "9"),
            *("--method", "vote", "--no-mlflow"),
        ],
        "not another --method",
    ),
    (["compile", "--dataset", "gsm8k", "--lambda", "nan", "--out", "x.json"], "finite"),
    (["eval", "--dataset", "gsm8k", "--resume", "--no-mlflow"], "--resume needs --out"),
    (
        ["eval", "--dataset", "gsm8k", "--retry-errors", "--out", "x", "--no-mlflow"],
        "with --resume",
    ),
    (["solve", "--model", "openai/x", "--estimator", "magic", "x"], "unknown estimator 'magic'"),
    (["solve", "--model", "local/smollm2-135m", "--api-base", "http://x/v1", "x"], "runs locally"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a[:3]) + m for a, m in BAD])
def test_bad_options_are_one_line_and_exit_2(argv, message, capsys):
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_every_command_explains_itself(capsys):
    for command in (
        "solve",
        "eval",
        "sweep",
        "compile",
        "bench",
        "estimators",
        "models",
        "throughput",
    ):
        assert run([command, "--help"]) == 0
        assert "usage: scale " + command in capsys.readouterr().out


@pytest.mark.parametrize(
    ("command", "make", "message"),
    [
        ("compile", lambda p: p.symlink_to(p.parent / "missing" / "x.json"), "a link to nothing"),
        ("compile", lambda p: p.mkdir(), "is a folder"),
        ("compile", lambda p: (p.parent / "file").write_text("x"), "cannot be written"),
        ("bench", lambda p: p.write_text("x"), "is a file"),
        ("eval", lambda p: p.mkdir(), "is a folder"),
    ],
)
def test_an_unwritable_out_is_refused_before_any_work(
    world, dataset, tmp_path, capsys, command, make, message
):
    out = tmp_path / "out"
    make(out)
    if message == "cannot be written":
        out = tmp_path / "file" / "tuned.json"  # under a file, not a folder
    argv = {
        "compile": ["--train", "1", "--val", "1", "--optimizer", "none", "--estimators", "self"],
        "bench": ["--methods", "cot"],
        "eval": [],
    }[command]
    code = run([command, "--dataset", dataset, *MODELS, *argv, "--out", str(out), "--no-mlflow"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert world.calls == []


def test_eval_with_a_budget_spends_within_it_and_resumes_without_calls(
    world, dataset, tmp_path, capsys
):
    """Problem A's chains are split (rollouts alternate 10 and 11): it draws the samples;
    the others agree and stop early. A resumed run is served every reply from the journal."""

    def split(prompt, params):
        odd = "Problem A" in prompt and (params.get("seed") or 0) % 2 == 1
        return "\\boxed{11}" if odd else "\\boxed{10}"

    world.rules.insert(0, (r"Please reason step by step", split))
    out = tmp_path / "budget.jsonl"
    argv = ["eval", "--dataset", dataset, *MODELS, "--budget-tokens", "3000", "--json"]
    argv += ["--out", str(out), "--no-mlflow", "--quiet"]
    assert run(argv) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["spent_tokens"] <= found["budget_tokens"] == 3000 * found["n"]
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines()) if "gold" in r}
    calls = {i: r["usage"]["lm_calls"] for i, r in rows.items()}
    assert calls["A"] > max(v for k, v in calls.items() if k != "A")
    assert rows["A"]["predicted"] == "10"
    made = len(world.calls)
    assert run([*argv, "--resume"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert len(world.calls) == made  # every reply from the journal
    assert again == found
    total = [a for a in argv if a not in ("--budget-tokens", "3000")]
    total[total.index(str(out))] = str(tmp_path / "total.jsonl")
    assert run([*total, "--budget-total", str(3000 * found["n"])]) == 0
    assert json.loads(capsys.readouterr().out) == found  # the same budget, said for the whole
