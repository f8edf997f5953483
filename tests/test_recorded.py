"""The ``recorded`` runtime: programs re-run on a benchmark's stored cot and vote rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scale.cli import main
from scale.harness.recorded import RecordingError, Recordings
from scale.harness.results import ResultRow, read_header, read_results
from scale.models import local
from scale.models.lm import TINY_MODEL, make_lm
from scale.programs import ProgramSpec
from scale.programs.io import fingerprint

ROOT = Path(__file__).resolve().parents[1]
# problem -> (gold, greedy answer, vote's answers by rollout id)
PROBLEMS = {
    "What is 3 + 4?": ("7", "7", ["2", "7", "7", "7", "7"]),  # greedy and rollout 1 agree
    "What is 2 * 5?": ("10", "12", ["10", "9", "10", "10", "10"]),  # they do not
}


def tokens(rollout: int | None) -> tuple[int, int]:
    """Distinct stored usage per call: (prompt, completion)."""
    return (50, 100) if rollout is None else (50, 10 * (rollout + 1))


def sample(answer: str, rollout: int | None) -> dict:
    prompt, completion = tokens(rollout)
    seconds = completion / 10  # a recorded time per call
    return {
        "answer": answer,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "seconds": seconds,
    }


def write_method(folder, method: str, samples_of) -> None:
    program = ProgramSpec(method=method, model=TINY_MODEL).build()
    lines = [{"scale_results": 1, "identity": fingerprint(program) | {"dataset": "test"}}]
    for i, (problem, (gold, greedy, votes)) in enumerate(PROBLEMS.items()):
        steps = [{"subproblem": problem, "samples": samples_of(greedy, votes)}]
        lines.append(ResultRow(id=f"p{i}", gold=gold, steps=steps).to_dict())
    (folder / f"{method}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """A bench folder with cot and vote rows, served by the recorded runtime."""
    folder = tmp_path / "bench"
    folder.mkdir()
    write_method(folder, "cot", lambda greedy, votes: [sample(greedy, None)])
    write_method(folder, "vote", lambda greedy, votes: [sample(a, r) for r, a in enumerate(votes)])
    rows = [
        {"id": f"p{i}", "problem": p, "answer": g[0]} for i, (p, g) in enumerate(PROBLEMS.items())
    ]
    dataset = tmp_path / "problems.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("SCALE_RECORDINGS", str(folder))
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))
    yield folder, dataset
    local.set_runtime(None)


def bench(dataset, out, method: str) -> dict[str, ResultRow]:
    argv = ["bench", "--dataset", str(dataset), "--n", "2", "--methods", method, "--quiet"]
    argv += ["--model", TINY_MODEL, "--runtime", "recorded", "--vote-samples", "5"]
    argv += ["--out", str(out), "--no-mlflow"]
    assert main(argv) == 0
    return {row.id: row for row in read_results(out / f"{method}.jsonl")}


def test_the_default_program_replays_from_the_stored_calls(recorded, tmp_path):
    _, dataset = recorded
    rows = bench(dataset, tmp_path / "out", "scale")
    easy, hard = rows["p0"], rows["p1"]
    # agreed: System 1's greedy answer, at the cost of the greedy call and rollout 1
    assert (easy.predicted, easy.correct, easy.steps[0]["system"]) == ("7", True, 1)
    assert easy.usage["total_tokens"] == sum(map(sum, (tokens(None), tokens(1))))
    # every call served from the recordings (none spent, none from DSPy's cache, cot's
    # greedy call included: each carries its recorded time), and the row's time is its
    # calls' recorded time, not the replay's
    assert easy.usage["cached_calls"] == easy.usage["lm_calls"] and easy.usage["spent_tokens"] == 0
    assert easy.seconds == pytest.approx((tokens(None)[1] + tokens(1)[1]) / 10)
    # disagreed: System 2 goes on from those two replies with rollouts 2, 3, ... and votes
    assert (hard.predicted, hard.correct, hard.steps[0]["system"]) == ("10", True, 2)
    calls = hard.usage["lm_calls"]
    assert 3 <= calls <= 5
    assert hard.usage["total_tokens"] == sum(sum(tokens(r)) for r in [None, *range(1, calls)])


def test_vote_replays_its_own_row(recorded, tmp_path):
    _, dataset = recorded
    rows = bench(dataset, tmp_path / "out", "vote")
    assert rows["p1"].predicted == "10" and rows["p1"].usage["lm_calls"] == 5
    assert rows["p1"].usage["total_tokens"] == sum(sum(tokens(r)) for r in range(5))


def test_a_greedy_reply_with_no_answer_replays_as_one(recorded, tmp_path):
    """A cot row whose reply was cut before any answer is an error row holding its sample;
    replayed, the default program gets the same unusable reply and escalates, as it did live."""
    folder, dataset = recorded
    unusable = "no usable answer: the model's reply could not be read"

    def rows_of(greedy, votes):
        return [sample("" if greedy == "12" else greedy, None)]

    write_method(folder, "cot", rows_of)
    lines = (folder / "cot.jsonl").read_text().splitlines()
    row = json.loads(lines[2]) | {"error": unusable}
    (folder / "cot.jsonl").write_text("\n".join([*lines[:2], json.dumps(row)]) + "\n")
    rows = bench(dataset, tmp_path / "out", "scale")
    hard = rows["p1"]
    assert hard.error is None and (hard.predicted, hard.steps[0]["system"]) == ("10", 2)
    assert hard.steps[0]["samples"][0]["answer"] == ""  # the greedy reply, unusable as live


def test_a_problem_not_recorded_is_a_row_error(recorded, tmp_path):
    extra = tmp_path / "more.jsonl"
    extra.write_text(json.dumps({"id": "x", "problem": "What is 1 + 1?", "answer": "2"}) + "\n")
    argv = ["bench", "--dataset", str(extra), "--n", "1", "--methods", "cot", "--quiet"]
    argv += ["--model", TINY_MODEL, "--runtime", "recorded", "--out", str(tmp_path / "o")]
    main([*argv, "--no-mlflow"])
    (row,) = read_results(tmp_path / "o" / "cot.jsonl")
    assert row.error and "no recorded row" in row.error


def test_recorded_then_a_model_extends_vote_with_new_chains(recorded, tmp_path):
    """recorded+inproc: vote with 6 chains replays the 5 recorded and draws rollout 5 on the
    (tiny, real) model; every token is counted, only the new ones as spent."""
    _, dataset = recorded
    argv = ["bench", "--dataset", str(dataset), "--n", "2", "--methods", "vote", "--quiet"]
    argv += ["--model", TINY_MODEL, "--runtime", "recorded+inproc", "--vote-samples", "6"]
    assert main([*argv, "--out", str(tmp_path), "--no-mlflow"]) == 0
    for row, (_, _, votes) in zip(
        read_results(tmp_path / "vote.jsonl"), PROBLEMS.values(), strict=True
    ):
        samples = row.steps[0]["samples"]
        assert [s["answer"] for s in samples[:5]] == votes  # replayed
        assert [s["completion_tokens"] for s in samples[:5]] == [tokens(r)[1] for r in range(5)]
        assert len(samples) == 6 and row.usage["lm_calls"] == 6
        assert row.usage["cached_calls"] == 5  # served from the recordings
        new = sum(s["prompt_tokens"] + s["completion_tokens"] for s in samples[5:])
        assert row.usage["spent_tokens"] == new > 0
        assert row.usage["total_tokens"] == new + sum(sum(tokens(r)) for r in range(5))
        assert row.seconds == pytest.approx(row.usage["lm_seconds"])  # model time, not wall


def test_recorded_then_a_model_refuses_to_run_without_recordings(recorded, tmp_path, monkeypatch):
    """A missing recordings folder is an error, not a silent run of every call on the model."""
    _, dataset = recorded
    monkeypatch.setenv("SCALE_RECORDINGS", str(tmp_path / "nothing"))
    argv = ["bench", "--dataset", str(dataset), "--n", "1", "--methods", "cot", "--quiet"]
    argv += ["--model", TINY_MODEL, "--runtime", "recorded+inproc", "--out", str(tmp_path)]
    main([*argv, "--no-mlflow", "--retries", "0"])
    (row,) = read_results(tmp_path / "cot.jsonl")
    assert row.error and "no recorded rows" in row.error and not row.usage


def request(recordings: Recordings, problem: str, **params) -> dict:
    messages = recordings.greedy.messages(problem)
    return recordings.complete(TINY_MODEL, messages, {"max_tokens": 1024, **params})[0]


def test_only_the_recorded_requests_are_answered(recorded):
    recordings = Recordings(recorded[0])
    problem = "What is 2 * 5?"
    assert request(recordings, problem)["choices"][0]["message"]["content"] == "\\boxed{12}"
    reply = request(recordings, problem, temperature=0.7, seed=3)
    assert reply["choices"][0]["message"]["content"] == "\\boxed{10}"
    assert reply["usage"]["completion_tokens"] == tokens(3)[1]
    for params, says in [
        ({"temperature": 0.7, "seed": 5}, "rollout 5 was not recorded"),
        ({"temperature": 0.3, "seed": 1}, "recorded at temperature 0.7"),
        ({"max_tokens": 512}, "max_tokens 1024"),
        ({"logprobs": True}, "no token logprobs"),
        ({"temperature": 0.7}, "names no rollout"),
    ]:
        with pytest.raises(RecordingError, match=says):
            request(recordings, problem, **params)
    other = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": problem}]
    with pytest.raises(RecordingError, match="messages differ"):
        recordings.complete(TINY_MODEL, other, {"max_tokens": 1024})
    with pytest.raises(RecordingError, match="recorded with local/smollm2-135m"):
        recordings.complete(
            "local/other", recordings.greedy.messages(problem), {"max_tokens": 1024}
        )


# the greedy reply's token logprobs, as `cot --system2-logprobs` stores them: sure of the
# easy problem's reply, unsure of the hard one's
LOGPROBS = {"7": [["7", -0.01]] * 10, "12": [["1", -0.01]] * 8 + [["2", -2.0]] * 2}


def test_recorded_logprobs_serve_a_confidence_gate(recorded, tmp_path):
    folder, dataset = recorded
    write_method(  # cot recorded with its greedy reply's token logprobs
        folder, "cot", lambda greedy, votes: [sample(greedy, None) | {"logprobs": LOGPROBS[greedy]}]
    )
    argv = ["bench", "--dataset", str(dataset), "--n", "2", "--quiet", "--model", TINY_MODEL]
    argv += ["--runtime", "recorded", "--estimator", "confidence-mean", "--gate", "0.1"]
    argv += ["--methods", "cot,scale,uniform-s2", "--out", str(tmp_path), "--no-mlflow"]
    assert main(argv) == 0
    # the method options configure 'scale' alone: uniform-s2 keeps its own routing
    assert read_header(tmp_path / "scale.jsonl")["routing"]["estimator"] == "confidence-mean"
    assert read_header(tmp_path / "uniform-s2.jsonl")["routing"]["estimator"] == "none"
    assert read_header(tmp_path / "uniform-s2.jsonl")["routing"]["gate"] is None
    rows = {r.id: r for r in read_results(tmp_path / "scale.jsonl")}
    easy, hard = rows["p0"], rows["p1"]
    # sure (mean logprob -0.01): the greedy reply answers, one call
    assert (easy.predicted, easy.usage["lm_calls"], easy.steps[0]["system"]) == ("7", 1, 1)
    assert easy.usage["total_tokens"] == sum(tokens(None))
    # unsure (mean -0.408: difficulty 0.33): System 2 goes on from the greedy reply with
    # rollouts 1, 2, ... and votes "10"
    assert (hard.predicted, hard.steps[0]["system"]) == ("10", 2)
    assert hard.steps[0]["samples"][0]["logprobs"] == LOGPROBS["12"]  # the greedy reply's
    assert hard.steps[0]["difficulty"] == pytest.approx(1 - math.exp(-0.408), abs=1e-3)
    calls = hard.usage["lm_calls"]
    assert hard.usage["total_tokens"] == sum(sum(tokens(r)) for r in [None, *range(1, calls)])


def test_a_reply_with_no_answer_and_no_logprobs_escalates_under_a_confidence_gate(
    recorded, tmp_path
):
    """An unusable greedy reply is stored without logprobs (the live program could not use
    them): replayed under a confidence gate it is served without them and escalates, as it
    did live, instead of failing the row."""
    folder, dataset = recorded

    def rows_of(greedy, votes):
        if greedy == "12":
            return [sample("", None)]
        return [sample(greedy, None) | {"logprobs": LOGPROBS[greedy]}]

    write_method(folder, "cot", rows_of)
    argv = ["bench", "--dataset", str(dataset), "--n", "2", "--quiet", "--model", TINY_MODEL]
    argv += ["--runtime", "recorded", "--estimator", "confidence-total", "--gate", "0.1"]
    argv += ["--methods", "scale", "--out", str(tmp_path), "--no-mlflow"]
    assert main(argv) == 0
    hard = {r.id: r for r in read_results(tmp_path / "scale.jsonl")}["p1"]
    assert hard.error is None and (hard.predicted, hard.steps[0]["system"]) == ("10", 2)
    assert hard.steps[0]["difficulty"] is None  # unknown: treated as hard
    assert "the reply could not be read: treated as hard" in hard.steps[0]["notes"]
    assert "no_logprobs" not in hard.steps[0]["fallbacks"]  # the backend gave them
    assert hard.steps[0]["samples"][0]["answer"] == ""


def test_logprobs_are_served_only_where_recorded(recorded):
    folder, _ = recorded
    write_method(
        folder, "cot", lambda greedy, votes: [sample(greedy, None) | {"logprobs": [["x", -0.5]]}]
    )
    recordings = Recordings(folder)
    reply = request(recordings, "What is 3 + 4?", logprobs=True)
    assert reply["choices"][0]["logprobs"]["content"] == [
        {"token": "x", "logprob": -0.5, "top_logprobs": []}
    ]
    assert "logprobs" not in request(recordings, "What is 3 + 4?")["choices"][0]
    with pytest.raises(RecordingError, match="no alternative tokens"):
        request(recordings, "What is 3 + 4?", logprobs=True, top_logprobs=5)
    with pytest.raises(RecordingError, match="no token logprobs recorded"):  # a sample: none
        request(recordings, "What is 3 + 4?", temperature=0.7, seed=1, logprobs=True)


def test_the_folder_must_hold_cot_and_vote(tmp_path, monkeypatch):
    with pytest.raises(RecordingError, match="no recorded rows"):
        Recordings(tmp_path)


def test_the_committed_replay_equals_the_program_run_live(tmp_path, monkeypatch):
    """The default program was run live (through the server and DSPy's cache) on the first
    20 problems of round 2; replayed from that run's cot and vote rows, it makes the same
    predictions with the same calls, row for row."""
    folder = ROOT / "bench/results/round2-gsm8k-server"
    live = {r.id: r for r in read_results(folder / "scale.jsonl")}
    dataset = tmp_path / "problems.jsonl"
    dataset.write_text(
        "".join(
            json.dumps({"id": r.id, "problem": r.steps[0]["subproblem"], "answer": r.gold}) + "\n"
            for r in live.values()
        )
    )
    monkeypatch.setenv("SCALE_RECORDINGS", str(folder))
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))
    argv = ["bench", "--dataset", str(dataset), "--n", str(len(live)), "--methods", "scale"]
    argv += ["--model", "local/qwen2.5-coder-1.5b", "--runtime", "recorded", "--quiet"]
    try:
        assert main([*argv, "--out", str(tmp_path / "out"), "--no-mlflow"]) == 0
    finally:
        local.set_runtime(None)

    def calls(row: ResultRow) -> tuple:
        steps = [(s["system"], s["answer"], len(s["samples"])) for s in row.steps]
        return row.predicted, row.correct, row.usage["total_tokens"], row.usage["lm_calls"], steps

    replayed = read_results(tmp_path / "out" / "scale.jsonl")
    assert len(replayed) == len(live) == 20
    assert all(calls(r) == calls(live[r.id]) for r in replayed)


def test_the_crosscheck_preset_replays_programs_and_their_corrections(recorded, tmp_path):
    """pot.jsonl beside cot and vote: the stored programs are served and run again in the
    sandbox, a correction is matched by the program it quotes, and the cross-check's
    program counts as a chain of System 2's vote."""
    folder, dataset = recorded
    programs = {"7": ["print(7)"], "12": ["print(1/0)", "print(11)"]}

    def program_samples(greedy, votes):
        return [sample(greedy, None) | {"programs": programs[greedy]}]

    write_method(folder, "pot", program_samples)
    # the cross-check orders by the CoT reply's logprobs: recorded with them
    write_method(
        folder, "cot", lambda greedy, votes: [sample(greedy, None) | {"logprobs": [["x", -0.1]]}]
    )
    argv = ["bench", "--dataset", str(dataset), "--n", "2", "--methods", "scale", "--quiet"]
    argv += ["--model", TINY_MODEL, "--runtime", "recorded", "--preset", "crosscheck"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--no-mlflow"]) == 0
    rows = {row.id: row for row in read_results(tmp_path / "out" / "scale.jsonl")}
    easy, hard = rows["p0"], rows["p1"]
    assert (easy.predicted, easy.steps[0]["system"], easy.usage["lm_calls"]) == ("7", 1, 2)
    assert easy.usage["total_tokens"] == 2 * sum(tokens(None))
    # CoT 12 and the corrected program 11 differ: chains 12, 11, then rollouts 1-3 (9, 10,
    # 10): the cap of 5 chains is reached, 10 wins
    step = hard.steps[0]
    assert [s["answer"] for s in step["samples"]] == ["12", "11", "9", "10", "10"]
    assert step["samples"][1]["programs"] == programs["12"]
    assert step["fallbacks"] == ["program_retried"]
    assert (hard.predicted, step["system"], hard.usage["lm_calls"]) == ("10", 2, 6)
    assert hard.usage["spent_tokens"] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"completion_tokens": -5}, "must be a count"),
        ({"prompt_tokens": "50"}, "must be a count"),
        ({"seconds": float("inf")}, "finite duration"),
        ({"answer": "7}"}, "unbalanced braces"),
        ({"answer": 7}, "text answer"),
        ({"logprobs": [[1, 2, 3]]}, "logprobs must be"),
        ({"logprobs": [["x", "-0.5"]]}, "logprobs must be"),
        ({"logprobs": [["x", float("nan")]]}, "logprobs must be"),
        ({"programs": [5]}, "programs must be"),
        ({"programs": "print(1)"}, "programs must be"),
    ],
)
def test_tampered_recordings_are_refused(recorded, change, message):
    folder, _ = recorded
    write_method(folder, "cot", lambda greedy, votes: [sample(greedy, None) | change])
    with pytest.raises(RecordingError, match=message):
        Recordings(folder)


@pytest.mark.parametrize(
    "served",
    [
        pytest.param(lambda: 1 / 0, id="the store raises"),
        pytest.param(lambda: ({"choices": []}, 0.0), id="a reply with no choice"),
    ],
)
def test_a_recording_that_fails_when_served_fails_once_unretried(monkeypatch, served):
    """Not a transport error: litellm would retry any exception as a connection error."""
    calls = []

    class Broken:
        def complete(self, model, messages, params):
            calls.append(model)
            return served()

    monkeypatch.setattr(local, "_recordings", Broken)
    lm = make_lm(TINY_MODEL, runtime=local.RECORDED, num_retries=3)
    with pytest.raises(Exception, match="malformed") as raised:
        lm("What is 3 + 4?")
    assert calls == [TINY_MODEL]
    assert "Connection" not in type(raised.value).__name__
