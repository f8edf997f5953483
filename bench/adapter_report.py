"""The format tax, measured: plain-cot (the plain prompt, outside DSPy) against cot through
the native adapter and through DSPy's chat format, on the same problems, and uniform-s2 (a
decomposition, context and steps) through both adapters.

    python bench/adapter_report.py bench/results/adapter-native

Reads the round-2 results (plain-cot and cot, and uniform-s2 in ``first-20/``, through the
native adapter), the chat-format runs in ``adapter-native/*-chat`` and the decomposition
stage alone (``adapter-native/DATASET-decompose-NAME.jsonl``, from
``bench/decompositions.py``; NAME is the adapter, or a named earlier rendering of it);
writes ``adapter-native/report.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from decompositions import read_rows, stats  # bench/decompositions.py, beside this script

from scale.bench.report import machine, paired
from scale.optimizers import read_results, summarize

DATASETS = {
    "gsm8k": ("round2-gsm8k-server", "gsm8k-chat"),
    "math500-l13": ("round2-math500-l13", "math500-l13-chat"),
}


def _rows(path: Path, ids: list[str]) -> list | None:
    if not path.exists():
        return None
    found = {r.id: r for r in read_results(path)}
    if not all(i in found for i in ids):
        return None
    return [found[i] for i in ids]


def _calls(rows: list) -> tuple[int, int, int]:
    """LM calls, replies that could not be used as asked, and JSON re-asks (chat format)."""
    calls = sum(r.usage.get("lm_calls", 0) for r in rows)
    fallbacks = sum(
        len(r.fallbacks) + sum(len(s.get("fallbacks") or []) for s in r.steps) for r in rows
    )
    reasks = sum(
        max(0, s.get("lm_calls", 0) - len(s.get("samples") or [])) for r in rows for s in r.steps
    )
    return calls, fallbacks, reasks


def _diff(base: list | None, rows: list) -> str:
    """``rows`` against ``base`` on the same problems: difference, paired 95% CI, W/L."""
    if base is None or base is rows:
        return "-"
    vs = paired(base, rows)
    low, high = vs["ci95"]
    return f"{vs['accuracy_diff']:+.3f} ({low:+.3f}, {high:+.3f}), {vs['wins']}W/{vs['losses']}L"


def _first_call_decompositions(rows: list) -> float | None:
    stages = [r.usage.get("by_stage", {}).get("decompose") for r in rows]
    done = [s for s in stages if s]
    return round(sum(s["lm_calls"] == 1 for s in done) / len(done), 3) if done else None


def report(folder: Path) -> str:
    root = folder.parent
    lines = ["# The format tax: plain prompt, native adapter, DSPy's chat format", ""]
    info = machine()
    lines += [
        f"Machine: {info['cores']} cores, {info['cpu']}. Written {info['date']} by "
        "`python bench/adapter_report.py bench/results/adapter-native` from the results files "
        "named below (temperature 0, 1024 tokens, math-verify grading).",
        "",
    ]
    for dataset, (round2, chat) in DATASETS.items():
        chat_dir = folder / chat
        if not (chat_dir / "cot.jsonl").exists():
            continue
        chat_cot = read_results(chat_dir / "cot.jsonl")
        ids = [r.id for r in chat_cot]
        table = {
            "plain-cot": _rows(root / round2 / "plain-cot.jsonl", ids),
            "cot, native adapter": _rows(root / round2 / "cot.jsonl", ids),
            "cot, chat format": chat_cot,
        }
        lines += [f"## {dataset}: cot on {len(ids)} problems", ""]
        lines += [
            "| method | correct | tokens/call (prompt) | tokens/problem | calls/problem | "
            "unusable replies per call | JSON re-asks per call | "
            "vs plain-cot: diff (95% CI), W/L | vs cot native: diff (95% CI), W/L |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, rows in table.items():
            if rows is None:
                lines.append(f"| {name} | (not all {len(ids)} problems run yet) ||||||||")
                continue
            s = summarize(rows, 0.0)
            calls, fallbacks, reasks = _calls(rows)
            prompt = sum(r.usage.get("prompt_tokens", 0) for r in rows) / max(calls, 1)
            diffs = " | ".join(
                _diff(table[base], rows) for base in ("plain-cot", "cot, native adapter")
            )
            lines.append(
                f"| {name} | {s.correct}/{s.n} | {prompt:.0f} | {s.tokens_per_problem:.0f} | "
                f"{s.lm_calls_per_problem:.2f} | {fallbacks / max(calls, 1):.3f} | "
                f"{reasks / max(calls, 1):.3f} | {diffs} |"
            )
        steps = (
            read_results(chat_dir / "uniform-s2.jsonl")
            if (chat_dir / "uniform-s2.jsonl").exists()
            else []
        )
        if steps:
            ids = [r.id for r in steps]
            both = {
                "uniform-s2, native adapter": _rows(
                    root / round2 / "first-20" / "uniform-s2.jsonl", ids
                ),
                "uniform-s2, chat format": steps,
            }
            lines += ["", f"## {dataset}: uniform-s2 on {len(ids)} problems", ""]
            lines += [
                "| method | correct | tokens/problem | calls/problem | unusable replies per call "
                "| JSON re-asks per call | decompositions read on the first call "
                "| vs native: diff (95% CI), W/L |",
                "|---|---|---|---|---|---|---|---|",
            ]
            native = both["uniform-s2, native adapter"]
            for name, rows in both.items():
                if rows is None:
                    lines.append(f"| {name} | (not all problems run yet) |||||||")
                    continue
                s = summarize(rows, 0.0)
                calls, fallbacks, reasks = _calls(rows)
                lines.append(
                    f"| {name} | {s.correct}/{s.n} | {s.tokens_per_problem:.0f} | "
                    f"{s.lm_calls_per_problem:.2f} | {fallbacks / max(calls, 1):.3f} | "
                    f"{reasks / max(calls, 1):.3f} | {_first_call_decompositions(rows)} | "
                    f"{_diff(native, rows)} |"
                )
        lines += _decompositions(folder, dataset)
        lines.append("")
    return "\n".join(lines) + "\n"


def _decompositions(folder: Path, dataset: str) -> list[str]:
    """The decomposition stage alone, one row per results file (bench/decompositions.py)."""
    prefix = f"{dataset}-decompose-"
    found = {
        path.stem.removeprefix(prefix): stats(list(read_rows(path).values()))
        for path in sorted(folder.glob(f"{prefix}*.jsonl"))
    }
    if not found:
        return []
    lines = ["", f"## {dataset}: the decomposition stage alone", ""]
    lines += [
        "| adapter | problems (errors) | first reply parsed | calls/problem | "
        "prompt tokens/problem | completion tokens/problem | steps/problem |",
        "|---|---|---|---|---|---|---|",
    ]
    for adapter, s in found.items():
        lines.append(
            f"| {adapter} | {s['problems']} ({s['errors']}) | {s['first_call_parsed']} "
            f"({s['first_call_parsed_share']:.0%}) | {s['calls']:.2f} | {s['prompt_tokens']} | "
            f"{s['completion_tokens']} | {s['steps']:.2f} |"
        )
    return lines


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/adapter-native")
    text = report(folder)
    (folder / "report.md").write_text(text)
    print(text)
