"""Tests for scale.harness.datasets: built-in sets, filters, sampling, user files and
malformed rows."""

from __future__ import annotations

import json
import os
import random
import re
import warnings
from importlib.resources import files
from pathlib import Path

import pytest

from scale.harness.datasets import (
    BUILTIN_DATASETS,
    DatasetError,
    DatasetWarning,
    RowIssue,
    load_dataset,
    read_ids,
)

COUNTS = {"gsm8k": 1319, "math500": 500, "aime24": 30, "aime25": 30, "amc23": 40}


def raw_rows(name: str) -> list[dict]:
    text = (files("scale") / "data" / BUILTIN_DATASETS[name]).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def collect(path: Path, **kwargs) -> tuple[list, list[RowIssue]]:
    issues: list[RowIssue] = []
    examples = load_dataset(str(path), on_issue=issues.append, **kwargs)
    return examples, issues


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


# --- built-in datasets -------------------------------------------------------------------


def test_builtin_names_cover_expected_sets() -> None:
    assert set(BUILTIN_DATASETS) == set(COUNTS)


@pytest.mark.parametrize(("name", "count"), sorted(COUNTS.items()))
def test_builtin_loads_all_rows_in_file_order(name: str, count: int) -> None:
    examples = load_dataset(name)
    raw = raw_rows(name)
    assert len(examples) == count == len(raw)
    assert [ex.id for ex in examples] == [row["id"] for row in raw]
    assert [ex.answer for ex in examples] == [row["answer"] for row in raw]
    for ex in examples:
        assert set(ex.inputs().keys()) == {"problem"}
        assert set(ex.labels().keys()) >= {"id", "answer"}
        assert isinstance(ex.answer, str) and ex.answer
        assert ex.problem.strip()


def test_builtin_optional_fields() -> None:
    math = load_dataset("math500")
    assert all(isinstance(ex.level, int) and 1 <= ex.level <= 5 for ex in math)
    assert all(ex.subject and ex.solution for ex in math)
    aime25 = load_dataset("aime25")
    assert not {"solution", "level", "subject"} & set(aime25[0].keys())
    assert "url" not in load_dataset("aime24")[0]


def test_builtin_name_is_case_insensitive_and_independent_of_cwd(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert [ex.id for ex in load_dataset(" AIME25 ")] == [ex.id for ex in load_dataset("aime25")]


# --- filters -----------------------------------------------------------------------------


def test_level_range_list_and_scalar_agree_with_raw_data() -> None:
    raw = raw_rows("math500")
    expected = [row["id"] for row in raw if row["level"] <= 3]
    assert len(expected) == 238
    assert [ex.id for ex in load_dataset("math500", level="1-3")] == expected
    assert [ex.id for ex in load_dataset("math500", level=[1, 2, 3])] == expected
    assert [ex.id for ex in load_dataset("math500", level=(1, "2-3"))] == expected
    assert len(load_dataset("math500", level=5)) == 134
    assert len(load_dataset("math500", level="5")) == 134
    assert len(load_dataset("math500", level={4, 5})) == 262


def test_subject_filter_and_combination() -> None:
    raw = raw_rows("math500")
    algebra = load_dataset("math500", subject="Algebra")
    assert len(algebra) == 124
    assert {ex.subject for ex in algebra} == {"Algebra"}
    combined = load_dataset("math500", level=[1, 2, 3], subject="Algebra")
    expected = [r["id"] for r in raw if r["level"] <= 3 and r["subject"] == "Algebra"]
    assert [ex.id for ex in combined] == expected
    two = load_dataset("math500", subject=["Geometry", "Precalculus"])
    assert len(two) == 41 + 56


def test_unknown_filter_field_names_available_fields() -> None:
    with pytest.raises(
        DatasetError, match=r"'subject'.*available fields: answer, id, problem, solution"
    ):
        load_dataset("gsm8k", subject="Algebra")


@pytest.mark.parametrize("bad", ["hard", "3-1", [1, None], 2.5])
def test_invalid_level_filter_values(bad) -> None:
    with pytest.raises(DatasetError, match="filter level="):
        load_dataset("math500", level=bad)


def test_filter_matching_nothing_raises() -> None:
    with pytest.raises(DatasetError, match=r"no rows match subject='algebra'.*Algebra"):
        load_dataset("math500", subject="algebra")


# --- sampling ----------------------------------------------------------------------------


def test_sampling_is_deterministic_and_uses_random_sample() -> None:
    full = load_dataset("gsm8k")
    first = [ex.id for ex in load_dataset("gsm8k", n=10, seed=7)]
    assert first == [ex.id for ex in load_dataset("gsm8k", n=10, seed=7)]
    assert first == [ex.id for ex in random.Random(7).sample(full, 10)]
    assert first != [ex.id for ex in load_dataset("gsm8k", n=10, seed=8)]
    assert first != sorted(first, key=[ex.id for ex in full].index)  # sampled, not file order
    assert len(set(first)) == 10


def test_sampling_after_filtering() -> None:
    filtered = load_dataset("math500", level=1)
    sample = load_dataset("math500", n=5, seed=3, level=1)
    assert [ex.id for ex in sample] == [ex.id for ex in random.Random(3).sample(filtered, 5)]
    assert all(ex.level == 1 for ex in sample)


def test_excluded_ids_never_come_back_in_a_sample(tmp_path) -> None:
    bench = load_dataset("gsm8k", n=20, seed=0)
    results = tmp_path / "cot.jsonl"
    results.write_text(jsonl(*({"id": ex.id, "correct": True} for ex in bench)))
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"ids": [ex.id for ex in bench], "n": 20}))
    assert read_ids(results) == read_ids(report) == {ex.id for ex in bench}
    # the same seed without exclusion would reuse the benchmark's first examples
    assert load_dataset("gsm8k", n=16, seed=0)[0].id == bench[0].id
    dev = load_dataset("gsm8k", n=16, seed=0, exclude_ids=read_ids(results))
    assert len(dev) == 16 and not {ex.id for ex in dev} & read_ids(results)


def test_read_ids_refuses_files_without_ids(tmp_path) -> None:
    no_id = tmp_path / "rows.jsonl"
    no_id.write_text(jsonl({"problem": "x"}))
    with pytest.raises(DatasetError, match="no 'id' field"):
        read_ids(no_id)
    with pytest.raises(DatasetError, match="cannot read ids"):
        read_ids(tmp_path / "missing.jsonl")
    with pytest.raises(DatasetError, match="every row is excluded"):
        load_dataset("aime24", exclude_ids={r["id"] for r in raw_rows("aime24")})


def test_n_larger_than_available_returns_all_in_file_order() -> None:
    assert [ex.id for ex in load_dataset("aime24", n=1000)] == [r["id"] for r in raw_rows("aime24")]
    assert len(load_dataset("aime24", n=30, seed=5)) == 30


@pytest.mark.parametrize("n", [0, -1, True, 2.0, "5"])
def test_invalid_n_raises(n) -> None:
    with pytest.raises(DatasetError, match="n must be a positive integer"):
        load_dataset("aime24", n=n)


# --- user files --------------------------------------------------------------------------


def test_user_jsonl_default_ids_and_numeric_answers(tmp_path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        jsonl({"problem": "1+1?", "answer": 2}, {"problem": "half?", "answer": 0.5})
        + "\n"
        + jsonl({"id": 7, "problem": "p", "answer": " x ", "level": "Level 2", "url": "u"}),
        encoding="utf-8",
    )
    examples, issues = collect(path)
    assert issues == []
    assert [ex.id for ex in examples] == ["mine-1", "mine-2", "7"]
    assert [ex.answer for ex in examples] == ["2", "0.5", "x"]
    assert examples[2].level == 2
    assert set(examples[2].keys()) == {"id", "problem", "answer", "level"}
    assert set(examples[0].inputs().keys()) == {"problem"}


def test_user_jsonl_custom_fields_and_bom_and_crlf(tmp_path) -> None:
    path = tmp_path / "q.ndjson"
    body = (
        '{"qid": "a", "question": "Q1", "final": "1"}\r\n{"qid": "b", "question": "Q2", "final": 2}'
    )
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    examples, issues = collect(path, problem_field="question", answer_field="final", id_field="qid")
    assert issues == []
    assert [(ex.id, ex.problem, ex.answer) for ex in examples] == [
        ("a", "Q1", "1"),
        ("b", "Q2", "2"),
    ]


def test_csv_with_custom_columns(tmp_path) -> None:
    path = tmp_path / "set.csv"
    path.write_text(
        "qid,question,final,level,subject,extra\n"
        'a,"What is\n2+2?",4,1,Algebra,ignored\n'
        "b,Second,5,,Geometry,\n"
        "\n"
        ",Third,6,3,,\n",
        encoding="utf-8",
    )
    examples, issues = collect(
        path, problem_field="question", answer_field="final", id_field="qid", level="1-3"
    )
    assert issues == []
    assert [ex.id for ex in examples] == ["a", "set-6"]
    assert examples[0].problem == "What is\n2+2?"
    assert examples[0].answer == "4"
    assert examples[0].level == 1 and examples[0].subject == "Algebra"
    assert "extra" not in examples[0]
    assert "subject" not in examples[1]
    everything, _ = collect(path, problem_field="question", answer_field="final", id_field="qid")
    assert [ex.id for ex in everything] == ["a", "b", "set-6"]
    assert "level" not in everything[1]


def test_csv_missing_required_column(tmp_path) -> None:
    path = tmp_path / "set.csv"
    path.write_text("question,answer\nQ,1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"set\.csv:1: no 'problem' column \(columns: question"):
        load_dataset(str(path))


# --- malformed rows ----------------------------------------------------------------------

MALFORMED_JSONL = [
    (b'{"id": "a", "problem": "P1", "answer": "1"}', None),
    (b"   ", None),
    (b'{"id": "b", "problem": "P2", "answer": ', "invalid JSON"),
    (b"[1, 2]", "expected a JSON object, got array"),
    (b'{"id": "c", "answer": "1"}', "missing 'problem'"),
    (b'{"id": "d", "problem": "P4"}', "missing 'answer'"),
    (b'{"id": "e", "problem": ["P5"], "answer": "1"}', "'problem' must be a string, got array"),
    (b'{"id": "f", "problem": " \\n\\t ", "answer": "1"}', "'problem' is empty"),
    (b'{"id": "g", "problem": "P7", "answer": "  "}', "'answer' is empty"),
    (b'{"id": "a", "problem": "dup", "answer": "1"}', "duplicate id 'a' (first on line 1)"),
    (b'{"id": "h", "problem": "P\x00", "answer": "1"}', "NUL"),
    (b'{"id": "i", "problem": "P\xff\xfe", "answer": "1"}', "invalid UTF-8 (byte 0xff"),
    (b'{"id": "j", "problem": "P11", "answer": true}', "'answer' must be a string or number"),
    (
        b'{"id": "k", "problem": "P12", "answer": "1", "level": "hard"}',
        "'level' must be an integer",
    ),
    (b'{"id": "l", "problem": "P13", "answer": NaN}', "invalid JSON"),
    (b'{"id": ["m"], "problem": "P14", "answer": "1"}', "'id' must be a string or integer"),
    (b'{"id": "n", "problem": "P15", "answer": "1", "subject": 3}', "'subject' must be a string"),
    (b'{"id": "o", "problem": "P16", "answer": 18}', None),
]
MALFORMED_EXPECTED = [
    (line, reason) for line, (_, reason) in enumerate(MALFORMED_JSONL, start=1) if reason
]


@pytest.fixture
def malformed_jsonl(tmp_path) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(raw for raw, _ in MALFORMED_JSONL) + b"\n\n")
    return path


def test_each_malformed_row_reported_with_line_and_valid_rows_kept(malformed_jsonl) -> None:
    examples, issues = collect(malformed_jsonl)
    assert [(ex.id, ex.answer) for ex in examples] == [("a", "1"), ("o", "18")]
    assert [issue.line for issue in issues] == [line for line, _ in MALFORMED_EXPECTED]
    for issue, (line, reason) in zip(issues, MALFORMED_EXPECTED, strict=True):
        assert issue.path == str(malformed_jsonl)
        assert reason in issue.reason, (line, issue.reason)
        assert str(issue) == f"{malformed_jsonl}:{line}: {issue.reason}"


def test_malformed_rows_warn_once_each_without_callback(malformed_jsonl) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        examples = load_dataset(str(malformed_jsonl))
    assert len(examples) == 2
    assert all(w.category is DatasetWarning for w in caught)
    assert [str(w.message).split(": ")[0] for w in caught] == [
        f"{malformed_jsonl}:{line}" for line, _ in MALFORMED_EXPECTED
    ]
    assert all(w.filename == __file__ for w in caught)


def test_strict_mode_raises_on_first_malformed_row(malformed_jsonl) -> None:
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(malformed_jsonl))}:3: invalid JSON"):
        load_dataset(str(malformed_jsonl), strict=True)


def test_strict_mode_accepts_clean_file(tmp_path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(jsonl({"problem": "P", "answer": "1"}), encoding="utf-8")
    assert len(load_dataset(str(path), strict=True)) == 1


def test_malformed_csv_rows(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(
        b"id,problem,answer\n"
        b'a,"multi\nline",1\n'
        b"b,,2\n"
        b"c,P3\n"
        b"d,P4,4,surplus\n"
        b"e,P\x005,5\n"
        b"f,P\xff6,6\n"
        b"a,dup,7\n"
        b"g,P8,8\n"
    )
    examples, issues = collect(path)
    assert [ex.id for ex in examples] == ["a", "g"]
    assert [(issue.line, issue.reason) for issue in issues] == [
        (4, "'problem' is empty"),
        (5, "missing 'answer'"),
        (6, "4 fields but the header has 3"),
        (7, "line contains NUL bytes"),
        (8, "invalid UTF-8 (byte 0xff)"),
        (9, "duplicate id 'a' (first on line 2)"),
    ]
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(path))}:4: 'problem' is empty$"):
        load_dataset(str(path), strict=True)


# --- fatal errors ------------------------------------------------------------------------


def test_nonexistent_file(tmp_path) -> None:
    with pytest.raises(DatasetError, match=r"missing\.jsonl: no such file"):
        load_dataset(str(tmp_path / "missing.jsonl"))


def test_directory(tmp_path) -> None:
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    with pytest.raises(DatasetError, match="is a directory"):
        load_dataset(str(folder))


@pytest.mark.parametrize(
    "payload",
    [
        bytes(range(256)) * 40,
        "id,problem,answer\n".encode("utf-16"),
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
    ],
)
def test_binary_file(tmp_path, payload: bytes) -> None:
    path = tmp_path / "blob.csv"
    path.write_bytes(payload)
    with pytest.raises(DatasetError, match=r"blob\.csv: looks like a binary file"):
        load_dataset(str(path))


def test_unknown_builtin_name_lists_builtins() -> None:
    with pytest.raises(DatasetError, match=r"unknown dataset 'gsm9k'.*gsm8k, math500"):
        load_dataset("gsm9k")


def test_unsupported_extension(tmp_path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(jsonl({"problem": "P", "answer": "1"}), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"unsupported file type '\.json'"):
        load_dataset(str(path))


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"", "no valid rows$"),
        (b"\n  \n", "no valid rows$"),
        (b'{"problem": ""}\n', r"no valid rows \(1 malformed; first: .*:1: 'problem' is empty\)"),
    ],
)
def test_no_valid_rows(tmp_path, content: bytes, detail: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=detail):
        load_dataset(str(path), on_issue=lambda issue: None)


def test_dataset_error_is_value_error() -> None:
    assert issubclass(DatasetError, ValueError)
    assert issubclass(DatasetWarning, UserWarning)
    assert str(RowIssue("f.jsonl", 3, "bad")) == "f.jsonl:3: bad"


def test_a_fifo_or_a_device_is_refused_not_read(tmp_path) -> None:
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match="not a regular file"):
        load_dataset(fifo)  # would block forever on open
    with pytest.raises(DatasetError, match="not a regular file"):
        read_ids("/dev/zero")  # would read without end


def test_a_csv_field_over_the_csv_modules_default_limit_loads(tmp_path) -> None:
    path = tmp_path / "big.csv"
    long = "x" * 200_000
    path.write_text(f"id,problem,answer\na,{long},1\n")
    (example,) = load_dataset(path)
    assert len(example.problem) == 200_000
