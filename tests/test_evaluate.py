"""Evaluation and results files: resume, retries, headers, bounded reading, threads."""

from __future__ import annotations

import json
import threading
import time

import dspy
import pytest
from world import EXAMPLES

from scale.harness.results import ResultRow
from scale.optimizers import ResultsFileError, evaluate, in_parallel, read_results, summarize
from scale.programs import Fallback, MathProgram, Step


class Counting(MathProgram):
    """Answers "10" and counts calls; raises KeyboardInterrupt on one problem."""

    method = "counting"

    def __init__(self, interrupt_on: str | None = None, fail_on: str | None = "B"):
        super().__init__()
        self.seen: list[str] = []
        self.interrupt_on = interrupt_on
        self.fail_on = fail_on

    def solve(self, problem: str):
        if problem.startswith(f"Problem {self.interrupt_on}"):
            raise KeyboardInterrupt
        if problem.startswith(f"Problem {self.fail_on}"):
            raise RuntimeError("model exploded")
        self.seen.append(problem)
        return [Step(problem, answer="10")], [], []


def test_eval_resume_neither_repeats_nor_loses(tmp_path):
    out = tmp_path / "r.jsonl"
    with pytest.raises(KeyboardInterrupt):
        evaluate(Counting(interrupt_on="C"), EXAMPLES, out=out, progress=False)
    assert [r.id for r in read_results(out)] == ["A", "B"]
    with open(out, "a") as f:
        f.write('{"id": "C", "gold": "10", "predic')  # a torn line from a killed writer
    second = Counting()
    rows, summary = evaluate(second, EXAMPLES, out=out, resume=True, progress=False)
    assert [p[:9] for p in second.seen] == ["Problem C", "Problem D"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert "scale_results" in lines[0] and sorted(r["id"] for r in lines[1:]) == list("ABCD")
    assert [r.id for r in rows] == ["A", "B", "C", "D"]
    assert summary.n == 4 and summary.errors == 1 and summary.correct == 3
    assert rows[1].error.startswith("RuntimeError")


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
    assert [r.id for r in rows] == list("ABCD") and rows[1].predicted == "10"
    assert summary.errors == 0 and summary.correct == 4
    assert len(out.read_text().splitlines()) == 6  # header, 4 rows, the retried row
    assert read_results(out)[1].error is None


def test_a_reply_without_a_usable_answer_is_a_recorded_error(tmp_path):
    class Unreadable(Counting):
        def solve(self, problem: str):
            return [Step(problem, answer="", fallbacks=[Fallback.NO_ANSWER])], [], []

    rows, summary = evaluate(Unreadable(), EXAMPLES[:2], progress=False)
    assert summary.errors == 2 and all("no usable answer" in r.error for r in rows)


def test_time_share_in_model_calls_leaves_out_rows_served_wholly_from_cache():
    def row(lm_seconds: float, seconds: float, calls: int, cached: int) -> ResultRow:
        usage = {"lm_calls": calls, "cached_calls": cached, "lm_seconds": lm_seconds}
        return ResultRow(id="x", gold="1", correct=True, usage=usage, seconds=seconds)

    fresh, partly_cached = row(9.0, 10.0, 2, 0), row(3.0, 5.0, 2, 1)
    all_cached = row(0.001, 1.0, 2, 2)
    assert summarize([fresh, partly_cached, all_cached], 16.0).lm_seconds_share == 0.8
    assert summarize([all_cached], 1.0).lm_seconds_share is None


def test_results_file_is_not_overwritten_without_resume(tmp_path):
    out = tmp_path / "r.jsonl"
    evaluate(Counting(), EXAMPLES[:1], out=out, progress=False)
    with pytest.raises(ResultsFileError, match="--resume"):
        evaluate(Counting(), EXAMPLES, out=out, progress=False)


def test_resume_refuses_a_file_of_another_run(tmp_path):
    out = tmp_path / "r.jsonl"
    evaluate(
        Counting(), EXAMPLES[:1], out=out, identity={"method": "cot", "model": "a"}, progress=False
    )
    with pytest.raises(ResultsFileError, match=r"another run .*model"):
        evaluate(
            Counting(),
            EXAMPLES,
            out=out,
            identity={"method": "cot", "model": "b"},
            resume=True,
            progress=False,
        )


def test_resume_never_writes_to_a_file_that_is_not_a_results_file(tmp_path):
    dataset = tmp_path / "ds.jsonl"
    text = "".join(json.dumps(e.toDict()) + "\n" for e in EXAMPLES).rstrip("\n")  # no newline
    dataset.write_text(text)
    with pytest.raises(ResultsFileError, match="not a results file"):
        evaluate(Counting(), EXAMPLES, out=dataset, resume=True, progress=False)
    assert dataset.read_text() == text  # not cut, not appended to


def test_a_non_regular_results_file_is_refused():
    with pytest.raises(ResultsFileError, match="not a regular file"):
        evaluate(Counting(), EXAMPLES, out="/dev/zero", resume=True, progress=False)


def test_threads_see_the_callers_dspy_context():
    adapter = dspy.JSONAdapter()
    seen: list[object] = []

    def probe(item: int) -> int:
        seen.append(dspy.settings.adapter)
        return item

    with dspy.context(adapter=adapter):
        for threads in (1, 3):
            assert sorted(in_parallel(probe, [1, 2, 3], threads)) == [1, 2, 3]
    assert seen == [adapter] * 6


def test_an_abandoned_parallel_loop_does_not_wait_for_items_in_flight():
    release = threading.Event()

    def slow(item: int) -> int:
        if item:
            release.wait(30)
        return item

    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        for _ in in_parallel(slow, [0, 1, 2], 3):
            raise KeyboardInterrupt
    assert time.perf_counter() - started < 5
    release.set()


def test_resume_skips_forged_rows_and_reruns_rows_of_another_gold(tmp_path):
    """A results file someone edited: a row of the wrong shape is skipped (not a crash), a
    row claiming correct against another gold answer is run again, not counted."""
    out = tmp_path / "r.jsonl"
    evaluate(Counting(fail_on=None), EXAMPLES[:1], out=out, progress=False)
    forged = [
        {"id": "B", "gold": "10", "predicted": "10", "correct": True, "steps": "abc"},
        {"id": "C", "gold": "999", "predicted": "999", "correct": True},
    ]
    with open(out, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in forged)
    again = Counting(fail_on=None)
    with pytest.warns(UserWarning) as caught:
        rows, _ = evaluate(again, EXAMPLES, out=out, resume=True, progress=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "malformed steps" in messages and "another gold answer" in messages
    assert [p[:9] for p in again.seen] == ["Problem B", "Problem C", "Problem D"]
    assert {r.id: r.gold for r in rows}["C"] == str(EXAMPLES[2].answer)
