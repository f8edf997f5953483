"""Evaluation datasets as lists of ``dspy.Example``.

``load_dataset`` reads a built-in set shipped in ``scale/data`` (see ``BUILTIN_DATASETS``) or a
user ``.jsonl``/``.csv`` file, filters and samples it, and returns examples whose only input is
``problem``. Malformed rows are reported per line and skipped (or fatal with ``strict=True``); every
problem with the data surfaces as ``DatasetError``.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import random
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import dspy

__all__ = [
    "BUILTIN_DATASETS",
    "DatasetError",
    "DatasetWarning",
    "RowIssue",
    "load_dataset",
    "read_ids",
]

BUILTIN_DATASETS: dict[str, str] = {
    "gsm8k": "gsm8k_test.jsonl",
    "math500": "math500.jsonl",
    "aime24": "aime24.jsonl",
    "aime25": "aime25.jsonl",
    "amc23": "amc23.jsonl",
}

_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".jsonlines", ".json-lines"})
_TEXT_FIELDS = ("solution", "subject")
_INT_FIELDS = frozenset({"level"})
_LEVEL_RE = re.compile(r"(?:level\s*)?(\d+)", re.IGNORECASE | re.ASCII)
_RANGE_RE = re.compile(r"(\d+)\s*-\s*(\d+)", re.ASCII)
# CSV text is decoded with surrogateescape (bad bytes -> U+DC80..U+DCFF); NUL becomes U+DC00,
# which that decoding never produces, so both can be reported per row.
_CSV_NUL = "\udc00"
_UNDECODABLE_RE = re.compile("[\udc80-\udcff]")
_BINARY_SAMPLE = 8192
MAX_FILE_BYTES = 1 << 30  # a dataset or id file
MAX_CSV_FIELD = 16 << 20  # characters in one CSV field (the csv module's default is 128 KB)

# A parsed row, or the reason (a str) why the row at that line is malformed.
_Row = dict[str, object] | str


class DatasetError(ValueError):
    """A dataset cannot be loaded: bad name, path, file, arguments, or a strict-mode row error."""


class DatasetWarning(UserWarning):
    """A malformed row was skipped while loading a dataset."""


@dataclass(frozen=True)
class RowIssue:
    """A malformed row: the file, the 1-based line where the row starts, and what is wrong."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def load_dataset(
    name_or_path: str | os.PathLike[str],
    n: int | None = None,
    seed: int = 0,
    *,
    strict: bool = False,
    problem_field: str = "problem",
    answer_field: str = "answer",
    id_field: str = "id",
    on_issue: Callable[[RowIssue], None] | None = None,
    exclude_ids: Collection[str] = (),
    **filters: object,
) -> list[dspy.Example]:
    """Load a built-in dataset (case-insensitive name) or a ``.jsonl``/``.csv`` file.

    Each example has ``id``, ``problem``, ``answer`` (a string) and, when present, ``solution``,
    ``level`` (int) and ``subject``; ``inputs()`` is just ``problem``. The ``*_field`` arguments
    name the source columns; a row without an id gets ``"{file stem}-{line}"``.

    ``filters`` keep rows whose field equals the value, is in a list/tuple/set of values, or, for
    ``level``, lies in an inclusive range string such as ``"1-3"``. With ``n`` smaller than the
    filtered set, ``random.Random(seed).sample`` picks ``n`` examples (in sampled order);
    otherwise all are returned in file order. Rows whose id is in ``exclude_ids`` are dropped
    before sampling (e.g. a benchmark's examples, to tune on a disjoint split).

    Malformed rows are skipped and each is passed to ``on_issue`` or warned as ``DatasetWarning``;
    with ``strict=True`` the first one raises ``DatasetError`` instead.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
        raise DatasetError(f"n must be a positive integer or None, got {n!r}")
    predicates = {field: _compile_filter(field, wanted) for field, wanted in filters.items()}
    path, stem, data, fmt = _read(name_or_path)

    rows: list[dict[str, object]] = []
    issues: list[RowIssue] = []
    for line, row in _parse(data, fmt, path, stem, (problem_field, answer_field, id_field)):
        if isinstance(row, dict):
            rows.append(row)
            continue
        issue = RowIssue(path, line, row)
        if strict:
            raise DatasetError(str(issue))
        if on_issue is not None:
            on_issue(issue)
        else:
            warnings.warn(str(issue), DatasetWarning, stacklevel=2)
        issues.append(issue)
    if not rows:
        detail = f" ({len(issues)} malformed; first: {issues[0]})" if issues else ""
        raise DatasetError(f"{path}: no valid rows{detail}")

    if predicates:
        rows = _apply_filters(rows, predicates, filters, path)
    if exclude_ids:
        excluded = set(exclude_ids)
        rows = [row for row in rows if row["id"] not in excluded]
        if not rows:
            raise DatasetError(f"{path}: every row is excluded")
    if n is not None and n < len(rows):
        rows = random.Random(seed).sample(rows, n)
    return [dspy.Example(**row).with_inputs("problem") for row in rows]


def read_ids(path: str | os.PathLike[str]) -> set[str]:
    """Example ids listed in a file: the ``id`` of each JSONL row (a dataset or a results
    file), or the ``ids`` list of a JSON object (a benchmark's ``report.json``)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: cannot read ids (no such file)")
    _check_regular(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ids ({exc})") from None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and isinstance(whole.get("ids"), list):
        return {str(i) for i in whole["ids"]}
    ids = set()
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            raise DatasetError(f"{path}:{line}: not JSON, so no id can be read") from None
        if not isinstance(row, dict) or "id" not in row:
            raise DatasetError(f"{path}:{line}: no 'id' field")
        ids.add(str(row["id"]))
    if not ids:
        raise DatasetError(f"{path}: no ids found")
    return ids


def _check_regular(path: Path) -> None:
    """Refuse a file that is not a regular one (a FIFO, a device) or is over the size cap."""
    if not path.is_file():
        raise DatasetError(f"{path}: not a regular file (a pipe or a device?)")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DatasetError(f"{path}: {size >> 20} MB, over the cap of {MAX_FILE_BYTES >> 20} MB")


def _read(name_or_path: str | os.PathLike[str]) -> tuple[str, str, bytes, str]:
    """Resolve a built-in name or a file path to (display path, stem, bytes, format)."""
    key = name_or_path.strip().lower() if isinstance(name_or_path, str) else None
    if key in BUILTIN_DATASETS:
        file_name = BUILTIN_DATASETS[key]
        resource = files("scale") / "data" / file_name
        try:
            data = resource.read_bytes()
        except OSError as exc:
            raise DatasetError(f"{resource}: built-in data file cannot be read ({exc})") from None
        return str(resource), Path(file_name).stem, _strip_bom(data), "jsonl"

    path = Path(name_or_path)
    suffix = path.suffix.lower()
    fmt = "csv" if suffix == ".csv" else "jsonl" if suffix in _JSONL_SUFFIXES else ""
    if not path.exists():
        if not fmt and len(path.parts) == 1:
            raise DatasetError(
                f"unknown dataset {str(name_or_path)!r}; built-in datasets are "
                f"{', '.join(BUILTIN_DATASETS)}, or pass a path to a .jsonl or .csv file"
            )
        raise DatasetError(f"{path}: no such file")
    if path.is_dir():
        raise DatasetError(f"{path}: is a directory, not a dataset file")
    _check_regular(path)
    if not fmt:
        raise DatasetError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; expected .jsonl or .csv"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if _looks_binary(data):
        raise DatasetError(f"{path}: looks like a binary file, not UTF-8 text")
    return str(path), path.stem, _strip_bom(data), fmt


def _strip_bom(data: bytes) -> bytes:
    return data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data


def _looks_binary(data: bytes) -> bool:
    """True if over a tenth of the leading bytes are NUL or not valid UTF-8."""
    sample = data[:_BINARY_SAMPLE]
    bad = sample.count(0) + sample.decode("utf-8", "replace").count("\ufffd")
    return bad * 10 > len(sample)


def _parse(
    data: bytes, fmt: str, path: str, stem: str, fields: tuple[str, str, str]
) -> Iterator[tuple[int, _Row]]:
    """Yield (line, example fields or reason) per non-blank row; later duplicate ids are issues."""
    problem_field, answer_field, _ = fields
    records = (
        _csv_records(data, path, (problem_field, answer_field))
        if fmt == "csv"
        else _jsonl_records(data)
    )
    first_line: dict[object, int] = {}
    for line, record in records:
        row = record if isinstance(record, str) else _build_row(record, line, stem, fields)
        if isinstance(row, dict):
            if row["id"] in first_line:
                row = f"duplicate id {row['id']!r} (first on line {first_line[row['id']]})"
            else:
                first_line[row["id"]] = line
        yield line, row


def _jsonl_records(data: bytes) -> Iterator[tuple[int, dict[str, object] | str]]:
    for line, raw in enumerate(data.split(b"\n"), start=1):
        if b"\0" in raw:
            yield line, "line contains NUL bytes"
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield line, f"invalid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            continue
        if not text.strip():
            continue
        try:
            record = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            yield line, f"invalid JSON ({exc.msg} at column {exc.colno})"
            continue
        except (ValueError, RecursionError) as exc:  # NaN/Infinity, huge integers, deep nesting
            yield line, f"invalid JSON ({exc})"
            continue
        if isinstance(record, dict):
            yield line, record
        else:
            yield line, f"expected a JSON object, got {_type_name(record)}"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _csv_records(
    data: bytes, path: str, required: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, object] | str]]:
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_FIELD))
    text = data.decode("utf-8", "surrogateescape").replace("\0", _CSV_NUL)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next((cells for cells in reader if cells), [])]
        for column in required:
            if column not in header:
                raise DatasetError(
                    f"{path}:{reader.line_num}: no {column!r} column "
                    f"(columns: {', '.join(header) or 'none'})"
                )
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            joined = "".join(cells)
            if not joined.strip():
                continue
            bad_byte = _UNDECODABLE_RE.search(joined)
            if _CSV_NUL in joined:
                yield line, "line contains NUL bytes"
            elif bad_byte:
                yield line, f"invalid UTF-8 (byte 0x{ord(bad_byte.group()) - 0xDC00:02x})"
            elif len(cells) > len(header):
                yield line, f"{len(cells)} fields but the header has {len(header)}"
            else:
                yield line, dict(zip(header, cells, strict=False))  # short rows lack keys
    except csv.Error as exc:
        raise DatasetError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def _build_row(
    record: Mapping[str, object], line: int, stem: str, fields: tuple[str, str, str]
) -> _Row:
    """Validate one record and map it to example fields, or return why it is malformed."""
    problem_field, answer_field, id_field = fields
    problem = record.get(problem_field)
    if problem is None:
        return f"missing {problem_field!r}"
    if not isinstance(problem, str):
        return f"{problem_field!r} must be a string, got {_type_name(problem)}"
    if not problem.strip():
        return f"{problem_field!r} is empty"

    answer = record.get(answer_field)
    if answer is None:
        return f"missing {answer_field!r}"
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        return f"{answer_field!r} must be a string or number, got {_type_name(answer)}"
    answer = str(answer).strip()
    if not answer:
        return f"{answer_field!r} is empty"

    raw_id = record.get(id_field)
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int | None):
        return f"{id_field!r} must be a string or integer, got {_type_name(raw_id)}"
    row: dict[str, object] = {
        "id": str(raw_id).strip() if raw_id not in (None, "") else f"{stem}-{line}",
        "problem": problem,
        "answer": answer,
    }

    for field in _TEXT_FIELDS:
        value = record.get(field)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            return f"{field!r} must be a string, got {_type_name(value)}"
        row[field] = value
    level = record.get("level")
    if level not in (None, ""):
        parsed = _parse_int(level)
        if parsed is None:
            return f"'level' must be an integer, got {level!r}"
        row["level"] = parsed
    return row


def _parse_int(value: object) -> int | None:
    """An int, or a string like ``"3"`` / ``"Level 3"``, as int; otherwise None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (match := _LEVEL_RE.fullmatch(value.strip())):
        return int(match.group(1))
    return None


def _type_name(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def _compile_filter(field: str, wanted: object) -> Callable[[object], bool]:
    """A predicate for one keyword filter; integer fields also accept ranges like ``"1-3"``
    and comma-separated text like ``"1,2,3"`` or ``"1-2,5"``."""
    if isinstance(wanted, str) and field in _INT_FIELDS:
        wanted = [part for part in wanted.split(",") if part.strip()] or [wanted]
    values: Iterable[object] = (
        wanted if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
    )
    if field not in _INT_FIELDS:
        allowed_text = {str(value) for value in values}
        return lambda value: str(value) in allowed_text

    allowed: set[int] = set()
    ranges: list[tuple[int, int]] = []
    for value in values:
        span = _RANGE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
        if span:
            low, high = int(span.group(1)), int(span.group(2))
            if low > high:
                raise DatasetError(f"filter {field}={wanted!r}: empty range {value!r}")
            ranges.append((low, high))
        elif (number := _parse_int(value)) is not None:
            allowed.add(number)
        else:
            raise DatasetError(
                f"filter {field}={wanted!r}: expected integers or ranges like '1-3', got {value!r}"
            )
    return lambda value: value in allowed or any(low <= value <= high for low, high in ranges)


def _apply_filters(
    rows: list[dict[str, object]],
    predicates: Mapping[str, Callable[[object], bool]],
    filters: Mapping[str, object],
    path: str,
) -> list[dict[str, object]]:
    available = sorted({field for row in rows for field in row})
    for field in predicates:
        if field not in available:
            raise DatasetError(
                f"{path}: cannot filter on {field!r}; available fields: {', '.join(available)}"
            )
    kept = [
        row
        for row in rows
        if all(field in row and match(row[field]) for field, match in predicates.items())
    ]
    if not kept:
        wanted = ", ".join(f"{field}={value!r}" for field, value in filters.items())
        seen = "; ".join(f"{field} values: {_preview(rows, field)}" for field in filters)
        raise DatasetError(f"{path}: no rows match {wanted} ({seen})")
    return kept


def _preview(rows: list[dict[str, object]], field: str, limit: int = 10) -> str:
    values = sorted({row[field] for row in rows if field in row}, key=str)
    shown = ", ".join(map(str, values[:limit]))
    return f"{shown}, ..." if len(values) > limit else shown
