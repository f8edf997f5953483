"""MLflow the way its DSPy users expect: traces of each program call, and the tuned program
as an MLflow model logged from code (never pickled), registered, and loaded back."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from world import EXAMPLES, MODELS, install, write_dataset

from scale.cli import main


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def world(scripted):
    install(scripted)
    return scripted


def traces_of(experiment: str) -> list:
    found = mlflow.get_experiment_by_name(experiment)
    return mlflow.search_traces(locations=[found.experiment_id], return_type="list", flush=True)


def test_eval_traces_each_problem_and_the_tokens_agree(world, store, tmp_path):
    dataset = write_dataset(tmp_path / "dev.jsonl")
    out = tmp_path / "r.jsonl"
    argv = ["eval", "--dataset", dataset, *MODELS, "--estimator", "self", "--gate", "0"]
    argv += ["--out", str(out), "--quiet", "--tracking-uri", store, "--experiment", "t"]
    assert main(argv) == 0
    mlflow.set_tracking_uri(store)
    traces = traces_of("t")
    assert len(traces) == len(EXAMPLES)
    rows = out.read_text().splitlines()[1:]
    ours = sorted(json.loads(line)["usage"]["total_tokens"] for line in rows)
    theirs = sorted(t.info.token_usage["total_tokens"] for t in traces)
    assert ours == theirs and all(ours)
    spans = traces[0].data.spans
    assert any(s.span_type == "CHAT_MODEL" for s in spans) and spans[0].name.startswith("SCALE")
    again = ["eval", "--dataset", dataset, *MODELS, "--out", str(tmp_path / "r2.jsonl")]
    assert (
        main([*again, "--quiet", "--no-trace", "--tracking-uri", store, "--experiment", "t2"]) == 0
    )
    assert traces_of("t2") == []


def test_compile_logs_a_model_from_code_that_loads_back_and_solves(
    world, store, tmp_path, capsys, monkeypatch
):
    dataset = write_dataset(tmp_path / "dev.jsonl")
    tuned = tmp_path / "tuned.json"
    argv = ["compile", "--dataset", dataset, "--train", "1", "--val", "3", "--optimizer", "none"]
    argv += ["--estimators", "self", "--thresholds", "0.4", *MODELS, "--out", str(tuned), "--quiet"]
    argv += ["--tracking-uri", store, "--experiment", "c", "--register", "scale-tuned"]
    with pytest.warns(UserWarning):
        assert main(argv) == 0
    assert "logged as the MLflow model models:/" in capsys.readouterr().out
    assert len(traces_of("c")) >= 3  # each validation problem's program call, traced
    mlflow.set_tracking_uri(store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    (version,) = mlflow.MlflowClient().search_model_versions("name='scale-tuned'")
    uri = f"models:/scale-tuned/{version.version}"
    model = mlflow.pyfunc.load_model(
        uri, model_config={"model": "scripted/s1", "adapter": "native"}
    )
    (answer,) = model.predict(["Problem A: compute the total."])
    assert answer["answer"] == "10" and answer["usage"]["lm_calls"] > 0
    routing = model.unwrap_python_model().program.routing.dump_state()
    assert routing == json.loads(tuned.read_text())["routing"]
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    for path in Path(local).rglob("*"):  # no file starts with pickle's protocol byte
        assert not (path.is_file() and path.read_bytes().startswith(b"\x80")), path
    capsys.readouterr()
    argv = ["solve", "--program", uri, *MODELS, "--json", "--tracking-uri", store]
    assert main([*argv, "Problem B: compute the total."]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "10"
