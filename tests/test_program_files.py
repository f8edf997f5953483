"""Saved programs: what round-trips, and what a file someone else wrote may not do."""

from __future__ import annotations

import json
import warnings

import pytest

from scale.programs import (
    SCALE,
    OverlapError,
    ProgramFileError,
    ProgramSpec,
    RoutingError,
    build_program,
    refuse_overlap,
    save_program,
)

pytestmark = pytest.mark.usefixtures("scripted")  # the scripted/ provider is registered


def saved(tmp_path, **options) -> tuple:
    program = build_program("scale", model="scripted/s1", **options)
    path = save_program(program, tmp_path / "tuned.json", train_ids=["a"], val_ids=["b"])
    return path, json.loads(path.read_text())


def rewrite(path, state) -> None:
    path.write_text(json.dumps(state))


def test_save_load_round_trip(tmp_path):
    program = build_program("scale", model="scripted/s1", threshold=0.37, estimator="self")
    program.decomposer.decompose.demos = [{"problem": "p", "subproblems": ["q"]}]
    program.system2.samples, program.system2.stop = 6, "adaptive"
    path = save_program(program, tmp_path / "tuned.json")
    loaded = build_program(model="scripted/s1", program=str(path))
    assert loaded.routing.threshold == 0.37 and loaded.routing.estimator == "self"
    assert len(loaded.decomposer.decompose.demos) == 1
    assert (loaded.system2.samples, loaded.system2.stop) == (6, "adaptive")
    header = json.loads(path.read_text())["scale"]
    assert header["tuned_with"]["system1"] == {"model": "scripted/s1", "adapter": "chat"}


def test_options_given_override_the_file(tmp_path):
    path, _ = saved(tmp_path, threshold=0.37)
    loaded = ProgramSpec(
        model="scripted/s1", program=str(path), threshold=0.8, system2_samples=3
    ).build()
    assert loaded.routing.threshold == 0.8 and loaded.system2.samples == 3


def test_a_program_file_never_chooses_the_model_or_endpoint(tmp_path):
    path, state = saved(tmp_path)
    name = next(k for k in state if k.startswith("solver2"))
    state[name]["lm"] = {"model": "openai/other-model", "api_base": "http://evil/v1"}
    rewrite(path, state)
    with pytest.raises(ProgramFileError, match="may not choose a model"):
        build_program(model="scripted/s1", program=str(path))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s, p: s[p].update(config={"temperature": 1.7, "n": 7}), "unknown keys"),
        (lambda s, p: s[p].update(forward="x"), "unknown keys"),
        (lambda s, p: s["scale"]["structure"].update(k=50), "structure.k"),
        (lambda s, p: s["scale"]["structure"].update(uniform=2), "unknown settings"),
        (lambda s, p: s["scale"]["profiles"]["system2"].update(max_tokens=99999), "max_tokens"),
        (lambda s, p: s["scale"]["profiles"]["system2"].update(samples=50), "samples"),
        (lambda s, p: s["scale"]["profiles"]["system2"].update(model="openai/x"), "unknown"),
        (lambda s, p: s["scale"]["profiles"]["system2"].update(confidence=float("nan")), "finite"),
        (lambda s, p: s[p].update(demos=[{"problem": "p"}] * 17), "demos"),
        (lambda s, p: s[p]["signature"].update(instructions="x" * 60_000), "instructions"),
        (lambda s, p: s.update(extra={"demos": []}), "unexpected"),
        (lambda s, p: s.pop(p), "missing"),
        (lambda s, p: s["routing"].update(threshold=2), "threshold"),
        (lambda s, p: s["routing"].update(version=0), "version"),
        (lambda s, p: s["scale"].update(format=1), "format"),
        (lambda s, p: s.pop("scale"), "header"),
        (lambda s, p: s["scale"].update(method="rm -rf"), "unknown method"),
        (lambda s, p: s[p].update(demos=[{"problem": "p" * 40_000}] * 2), "one request"),
        (lambda s, p: s["scale"].update(train_ids="abc"), "train_ids"),
        (lambda s, p: s["scale"].update(val_ids=[{"id": 1}]), "val_ids"),
    ],
)
def test_what_a_program_file_may_not_hold(tmp_path, mutate, message):
    path, state = saved(tmp_path)
    predictor = next(k for k in state if k.startswith("decomposer"))
    mutate(state, predictor)
    rewrite(path, state)
    with pytest.raises((ProgramFileError, RoutingError), match=message):
        build_program(model="scripted/s1", program=str(path))


def test_corrupt_and_pickle_program_files_refused(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(ProgramFileError, match="not a readable JSON"):
        build_program(model="scripted/s1", program=str(bad))
    with pytest.raises(ProgramFileError, match="never pickle"):
        build_program(model="scripted/s1", program=str(tmp_path / "p.pkl"))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ProgramFileError):
        build_program(model="scripted/s1", program=str(deep))


def test_a_program_is_loaded_with_its_own_method(tmp_path):
    path = save_program(build_program("uniform-s2", model="scripted/s1"), tmp_path / "u.json")
    loaded = build_program(model="scripted/s1", program=str(path))
    assert isinstance(loaded, SCALE) and loaded.method == "uniform-s2"
    assert loaded.routing.estimator == "none" and loaded.routing.threshold == 0.0


def test_overlap_guard_for_api_users(tmp_path):
    path, _ = saved(tmp_path)
    refuse_overlap(path, ["c", "d"])
    with pytest.raises(OverlapError, match="compiled on 1 of these examples"):
        refuse_overlap(path, ["b", "c"])


def test_system1_can_reason_like_system2_and_share_its_calls():
    program = ProgramSpec(model="scripted/s1", system1_kind="reasoning").build()
    assert (program.system1.kind, program.system1.max_tokens) == ("reasoning", 1024)
    assert program.whole1.predict.predict.signature.instructions.startswith("Please reason")


def test_a_preset_shapes_scale_only_the_baselines_stay_plain():
    scale = ProgramSpec(model="scripted/s").build()
    assert (scale.system1.kind, scale.system2.samples, scale.system2.greedy_first) == (
        "reasoning",
        5,
        True,
    )
    cot, vote = (ProgramSpec(method=m, model="scripted/s").build() for m in ("cot", "vote"))
    assert (cot.system2.samples, cot.system2.greedy_first) == (1, False)
    assert (vote.system2.stop, vote.system2.samples, vote.system2.greedy_first) == (
        "fixed",
        5,
        False,
    )
    uniform = ProgramSpec(method="uniform-s1", model="scripted/s").build()
    assert uniform.system1.kind == "brief"


def test_agreement_samples_override_the_presets_count():
    assert ProgramSpec(model="scripted/s").build().agreement_samples == 2
    assert ProgramSpec(model="scripted/s", preset="stepwise").build().agreement_samples == 3
    assert ProgramSpec(model="scripted/s", agreement_samples=5).build().agreement_samples == 5


@pytest.mark.parametrize("layout", ["data", "artifacts"])
def test_an_mlflow_uri_reads_only_the_program_json(tmp_path, monkeypatch, layout):
    """The program logged as data (data/), or, with a warning, as code by earlier builds
    (artifacts/ beside the code): only the JSON is read."""
    import mlflow

    from scale.programs.io import local_program

    path, _ = saved(tmp_path)
    folder = tmp_path / "download"
    (folder / layout).mkdir(parents=True)
    (folder / layout / "tuned.json").write_text(path.read_text())
    (folder / "python_model.py").write_text("raise SystemExit('ran')\n")
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lambda artifact_uri: str(folder))
    if layout == "artifacts":
        with pytest.warns(UserWarning, match="logged as code"):
            found = local_program("models:/old/1")
    else:
        found = local_program("models:/new/1")
    assert found == folder / layout / "tuned.json"
    assert ProgramSpec(model="scripted/s1", program=str(found)).build().routing.dump_state()


def test_error_text_reaches_the_terminal_without_its_escape_sequences(tmp_path, capsys):
    from scale.cli import main

    hostile = tmp_path / "\x1b]0;owned\x07.json"
    assert main(["solve", "--program", str(hostile), "--model", "scripted/s1", "1+1"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b" in err


def test_a_threshold_without_decomposition_says_it_does_nothing():
    with pytest.warns(UserWarning, match="does not decompose"):
        ProgramSpec(model="scripted/s1", threshold=0.3).build()  # efficient: no decomposition
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ProgramSpec(model="scripted/s1", threshold=0.3, decompose=True).build()
