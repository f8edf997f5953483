"""Results files: append-only JSONL, one row per example, with a header naming the run.

The first line is a header (``{"scale_results": 1, "identity": {...}}``: method, models,
program, dataset, version). Resuming checks it, so rows of another method, model or program
are never mixed in, and a file that is not a results file (a dataset, ``/dev/full``) is
refused before anything is written to it. Reading is streamed and bounded per line.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

HEADER_KEY = "scale_results"
RESULTS_VERSION = 1
MAX_LINE_BYTES = 16 << 20


class ResultsFileError(ValueError):
    """A results file that cannot be used as asked."""


@dataclass
class ResultRow:
    """One example's outcome: prediction, correctness, error (None when it ran), steps,
    usage (``scale.models.lm.Usage`` as a dict) and wall seconds."""

    id: str
    gold: str
    predicted: str = ""
    correct: bool = False
    error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRow:
        names = {f.name for f in fields(cls)}
        row = cls(**{k: v for k, v in data.items() if k in names})
        row.id = str(row.id)
        return row

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recorded_samples(self) -> list[dict[str, Any]]:
        """The samples a single-step row recorded, in order, whether or not they gave an
        answer (an error row keeps the unusable reply); none for other rows."""
        return list(self.steps[0].get("samples") or []) if len(self.steps) == 1 else []


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The lines of a regular file, each at most ``MAX_LINE_BYTES``."""
    if not path.is_file():
        raise ResultsFileError(f"{path}: not a regular file")
    with path.open("rb") as f:
        number = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise ResultsFileError(f"{path}:{number}: a line longer than 16 MB")
            yield number, raw


def read_header(path: str | Path) -> dict[str, Any]:
    """The identity in a results file's header; raises if the file has none."""
    path = Path(path)
    for _, raw in _lines(path):
        try:
            header = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = None
        if isinstance(header, dict) and header.get(HEADER_KEY) == RESULTS_VERSION:
            return header.get("identity") or {}
        break
    raise ResultsFileError(
        f"{path}: not a results file written by scale (no header line); refusing to resume "
        "or append to it"
    )


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects a results file holds after its header (or in a file without one); a
    torn (partially written) last line is ignored, an unreadable complete line skipped with
    a warning."""
    path = Path(path)
    records = []
    for number, raw in _lines(path):
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if raw.endswith(b"\n"):
                warnings.warn(f"{path}:{number}: unreadable result line skipped", stacklevel=2)
            continue
        if isinstance(data, dict) and HEADER_KEY not in data:
            records.append(data)
    return records


def read_results(path: str | Path) -> list[ResultRow]:
    """Rows of a results file (with or without a header), torn last line ignored; each id
    is kept once: a later row for an id (a retried error) supersedes the earlier one."""
    return _rows(read_records(path))


_ROW_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": (str, int),
    "gold": str,
    "predicted": str,
    "correct": bool,
    "error": (str, type(None)),
    "steps": list,
    "usage": dict,
    "notes": list,
    "fallbacks": list,
    "seconds": (int, float),
}


def _rows(records: list[dict[str, Any]]) -> list[ResultRow]:
    rows: dict[str, ResultRow] = {}
    for data in records:
        if "id" not in data or "gold" not in data:
            continue
        wrong = [k for k, t in _ROW_TYPES.items() if k in data and not isinstance(data[k], t)]
        if wrong or not all(isinstance(s, dict) for s in data.get("steps") or []):
            warnings.warn(
                f"a result row with malformed {', '.join(wrong) or 'steps'} skipped", stacklevel=3
            )
            continue
        row = ResultRow.from_dict(data)
        rows[row.id] = row
    return list(rows.values())


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line that a killed writer left without its newline."""
    size = path.stat().st_size
    with path.open("rb+") as f:
        start = max(0, size - MAX_LINE_BYTES)
        f.seek(start)
        tail = f.read()
        if tail and not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            f.truncate(start + cut + 1 if cut >= 0 else start)


class ResultsFile:
    """Append-only JSONL writer, one flushed and fsynced line per record, thread-safe.
    ``identity`` names the run; resuming a file whose header differs is refused. On resume,
    ``records`` holds what the file had and ``done`` its result rows."""

    def __init__(self, path: str | Path, *, identity: dict[str, Any], resume: bool):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.identity = json.loads(json.dumps(identity, default=str))
        self.records: list[dict[str, Any]] = []
        self.done: list[ResultRow] = []
        if self.path.exists():
            if not resume:
                raise ResultsFileError(
                    f"{self.path} exists: pass --resume to continue it, or choose another --out"
                )
            found = read_header(self.path)
            if found != self.identity:
                changed = sorted(
                    k
                    for k in set(found) | set(self.identity)
                    if found.get(k) != self.identity.get(k)
                )
                raise ResultsFileError(
                    f"{self.path} holds results of another run (different {', '.join(changed)}); "
                    "resume it with the same options, or choose another --out"
                )
            _drop_torn_tail(self.path)
            self.records = read_records(self.path)
            self.done = _rows(self.records)
            self._file = self.path.open("a", encoding="utf-8")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("x", encoding="utf-8")
            self.append({HEADER_KEY: RESULTS_VERSION, "identity": self.identity})

    def append(self, record: dict[str, Any]) -> None:
        """Write one record (a JSON object) as a line of its own."""
        with self._lock:
            self._file.write(json.dumps(record, default=str) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def write(self, row: ResultRow) -> None:
        self.append(row.to_dict())

    def close(self) -> None:
        self._file.close()
