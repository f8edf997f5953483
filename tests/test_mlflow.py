"""MLflow the way its DSPy users expect: traces of each program call, and the tuned program
as an MLflow model of data only (never pickled, no code), registered, and loaded back by the
installed package's code, also when the artifact was tampered with."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import mlflow
import pytest
import yaml
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
    routing = model.get_raw_model().routing.dump_state()
    assert routing == json.loads(tuned.read_text())["routing"]
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    for path in Path(local).rglob("*"):  # no file starts with pickle's protocol byte
        assert not (path.is_file() and path.read_bytes().startswith(b"\x80")), path
    capsys.readouterr()
    argv = ["solve", "--program", uri, *MODELS, "--json", "--tracking-uri", store]
    assert main([*argv, "Problem B: compute the total."]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "10"
    # eval reads the program from --tracking-uri, whatever MLflow's current store is
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    fresh = tmp_path / "fresh.jsonl"
    fresh.write_text(
        json.dumps({"id": "new", "problem": "Problem B: compute the total.", "answer": "10"}) + "\n"
    )
    argv = ["eval", "--program", uri, "--dataset", str(fresh), *MODELS, "--quiet"]
    argv += ["--tracking-uri", store, "--no-mlflow", "--out", str(tmp_path / "e.jsonl")]
    assert main(argv) == 0


def test_a_tampered_logged_model_runs_no_code_and_cannot_choose_the_endpoint(
    world, store, tmp_path, monkeypatch
):
    """Every file of the stored artifact rewritten by an attacker: the MLmodel names code of
    its own and an endpoint, the other files carry code. scale's loader reads only the
    program JSON, with the installed package's code; pyfunc's ignores the endpoint."""
    from scale.tracking import mlflow_model

    dataset = write_dataset(tmp_path / "dev.jsonl")
    argv = ["compile", "--dataset", dataset, "--train", "1", "--val", "3", "--optimizer", "none"]
    argv += ["--estimators", "self", "--thresholds", "0.4", *MODELS, "--quiet"]
    argv += ["--out", str(tmp_path / "tuned.json"), "--tracking-uri", store, "--experiment", "t"]
    argv += ["--register", "victim"]
    with pytest.warns(UserWarning):
        assert main(argv) == 0
    mlflow.set_tracking_uri(store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    (stored,) = [p.parent for p in tmp_path.rglob("MLmodel") if "victim" not in str(p)]
    marker = tmp_path / "PWNED"
    payload = f"open({str(marker)!r}, 'w').write('ran')\n"
    for path in stored.rglob("*"):
        if path.is_file() and path.suffix != ".json" and path.name != "MLmodel":
            path.write_text(path.read_text() + "\n" + payload)
    (stored / "evil").mkdir()
    (stored / "evil" / "evil_loader.py").write_text(payload + "def _load_pyfunc(*a): pass\n")
    mlmodel = yaml.safe_load((stored / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["python_function"]
    assert flavor["loader_module"] == "scale.tracking.mlflow_model"  # the installed package's code
    flavor |= {"loader_module": "evil_loader", "code": "evil"}
    flavor["config"]["api_base"] = "http://evil.example"
    (stored / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    uri = "models:/victim/1"
    loaded = mlflow_model.load(uri, model="scripted/s1", adapter="native")
    (answer,) = loaded.predict(["Problem A: compute the total."])
    assert answer["answer"] == "10"
    assert not marker.exists()  # nothing the artifact carries ran
    assert loaded.program.system2.api_base is None  # the endpoint is the loader's
    # whereas MLflow's own loader follows the MLmodel file: what the docs warn about
    with contextlib.suppress(Exception):
        mlflow.pyfunc.load_model(uri)
    assert marker.exists()


def test_pyfunc_loading_ignores_an_endpoint_in_the_models_config(world, store, tmp_path):
    from scale.tracking import mlflow_model

    program = tmp_path / "tuned.json"
    argv = ["compile", "--dataset", write_dataset(tmp_path / "dev.jsonl"), "--train", "1"]
    argv += ["--val", "3", "--optimizer", "none", "--estimators", "self", "--thresholds", "0.4"]
    argv += [*MODELS, "--quiet", "--out", str(program), "--no-mlflow"]
    with pytest.warns(UserWarning):
        assert main(argv) == 0
    config = {"model": "scripted/s1", "adapter": "native", "api_base": "http://evil.example"}
    with pytest.warns(UserWarning, match="cannot choose its endpoint"):
        model = mlflow_model._load_pyfunc(str(program), config)
    assert model.program.system1.api_base is None
