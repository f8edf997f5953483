"""Round 3's rows in round 2's summaries: the program-aided system on the same problems.

``bench/round2_report.py`` calls ``collect`` and ``section`` for a round-2 folder whose
programs were sampled (``bench/round3.sh``): ``pot`` (one greedy program), the
``crosscheck`` preset run on the recorded runtime (``crosscheck/scale.jsonl``), and that
preset's gate and stop rule varied, replayed here from the same stored calls (CoT's greedy
reply, the program, then vote's chains from rollout 1): every variant's calls are ones the
preset makes, so the replay is exact, and the preset's own row checks it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scale.grading.verify import is_equivalent
from scale.harness.replay import stored_answers
from scale.optimizers import ResultRow, read_results, summarize
from scale.optimizers.outcomes import auroc
from scale.programs.estimators import CrossCheck
from scale.programs.spec import PRESETS
from scale.programs.stopping import StopRule, majority

ROOT = Path(__file__).resolve().parent / "results"
FOLDERS = {  # round-2 folder -> its round-3 folder
    "round2-gsm8k-server": ROOT / "round3-programs" / "gsm8k",
    "round2-math500-l13": ROOT / "round3-programs" / "math500-l13",
}
PRESET = "scale/crosscheck"
FAILED = {"program_failed", "program_silent", "no_program"}  # no answer after the retry


@dataclass(frozen=True)
class Variant:
    """The crosscheck preset with another gate or System 2 stop rule."""

    gate: float
    rule: StopRule
    mixed: bool = False  # System 2 draws sampled programs too, alternating with CoT chains

    @property
    def label(self) -> str:
        kept = {CrossCheck.AGREED: "agreed", CrossCheck.UNCONTESTED: "uncontested"}
        chains = ", mixed chains" if self.mixed else ""
        return f"crosscheck {kept.get(self.gate, self.gate)}, {self.rule.describe()}{chains}"


_PRESET = PRESETS["crosscheck"]
DEFAULT = Variant(
    _PRESET.routing["gate"],
    StopRule("adaptive", _PRESET.system2["samples"], _PRESET.system2["confidence"]),
)
VARIANTS = [
    Variant(gate, rule)
    # answered at once: agreeing answers; also those of a silent program (the preset's)
    for gate in (CrossCheck.AGREED, CrossCheck.UNCONTESTED)
    for rule in (
        StopRule("adaptive", 3, 0.8),
        StopRule("adaptive", 5, 0.8),
        StopRule("adaptive", 5, 0.9),
        StopRule("adaptive", 5, 0.95),
        StopRule("adaptive", 8, 0.8),  # 8 of the 9 stored chains (CoT 8, the program)
    )
]
# System 2 over CoT and program samples (pot-vote's 4 sampled programs), one order fixed
# beforehand: CoT's greedy reply, the greedy program, then a CoT chain and a program by turns
MIXED = [
    Variant(_PRESET.routing["gate"], StopRule("adaptive", cap, 0.8), mixed=True) for cap in (5, 8)
]


def _first(row: ResultRow) -> dict:
    samples = row.recorded_samples()
    return samples[0] if samples else {"answer": ""}


def _cost(samples: list[dict]) -> dict[str, float]:
    prompt = sum(s.get("prompt_tokens", 0) for s in samples)
    completion = sum(s.get("completion_tokens", 0) for s in samples)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "seconds": round(sum(s.get("seconds", 0.0) for s in samples), 3),
    }


def _alternate(first: list[dict], second: list[dict]) -> list[dict]:
    out = []
    for i in range(max(len(first), len(second))):
        out += first[i : i + 1] + second[i : i + 1]
    return out


def replay_variant(
    variant: Variant,
    rated: dict[str, ResultRow],
    cot: dict[str, ResultRow],
    pot: dict[str, ResultRow],
    vote: dict[str, ResultRow],
    sampled_programs: dict[str, ResultRow] | None = None,
) -> list[ResultRow]:
    """The rows ``variant`` gives on the problems ``rated`` holds (the preset's rows, whose
    difficulty is the cross-check's score); a mixed variant needs ``sampled_programs``."""
    rows = []
    for id_, row in rated.items():
        greedy, program = _first(cot[id_]), _first(pot[id_])
        calls = 1 + pot[id_].usage.get("lm_calls", 1)
        spent = [greedy, program]
        score = row.steps[0]["difficulty"]
        if score is not None and score <= variant.gate:
            system, answer = 1, greedy["answer"] or program["answer"]
        else:
            drawn = stored_answers(vote[id_])[1:]  # rollouts 1.. (0 is the greedy reply's place)
            if variant.mixed:
                assert sampled_programs is not None
                drawn = _alternate(drawn, sampled_programs[id_].recorded_samples())
            chains = [greedy, *([program] if program["answer"] else []), *drawn]
            used = chains[: variant.rule.replay([c["answer"] for c in chains])]
            new = [c for c in used if any(c is d for d in drawn)]
            spent += new
            calls += len(new)
            system, answer = 2, majority([c["answer"] for c in used])[0]
        cost = _cost(spent)
        usage = {k: v for k, v in cost.items() if k != "seconds"} | {"lm_calls": calls}
        step = {"subproblem": row.steps[0]["subproblem"], "system": system, "answer": answer}
        rows.append(
            ResultRow(
                id=id_,
                gold=row.gold,
                predicted=answer,
                correct=is_equivalent(row.gold, answer),
                steps=[step],
                usage=usage,
                seconds=cost["seconds"],
            )
        )
    return rows


def _rows(path: Path, ids: list[str]) -> list[ResultRow] | None:
    if not path.is_file():
        return None
    found = {r.id: r for r in read_results(path)}
    return [found[i] for i in ids] if all(i in found for i in ids) else None


def collect(
    folder: Path, ids: list[str], methods: dict[str, list[ResultRow]]
) -> dict[str, list[ResultRow]]:
    """pot, the crosscheck preset and its replayed variants on ``ids`` (nothing when the
    programs of this folder were not sampled)."""
    programs = FOLDERS.get(folder.name)
    found: dict[str, list[ResultRow]] = {}
    if programs is None:
        return found
    pot = _rows(programs / "pot.jsonl", ids)
    preset = _rows(programs / "crosscheck" / "scale.jsonl", ids)
    if pot is None:
        return found
    found["pot"] = pot
    if preset is None:
        return found
    found[PRESET] = preset
    chains = _rows(programs / "recordings" / "vote.jsonl", ids)
    if chains is None:
        return found
    rated, cot = {r.id: r for r in preset}, {r.id: r for r in methods["cot"]}
    pot_by_id, vote = {r.id: r for r in pot}, {r.id: r for r in chains}
    for variant in VARIANTS:
        found[variant.label] = replay_variant(variant, rated, cot, pot_by_id, vote)
    sampled = _rows(programs / "pot-vote.jsonl", ids)
    if sampled is not None:
        by_id = {r.id: r for r in sampled}
        for variant in MIXED:
            found[variant.label] = replay_variant(variant, rated, cot, pot_by_id, vote, by_id)
    return found


def _mismatches(preset: list[ResultRow], replayed: list[ResultRow]) -> list[str]:
    """The problems where the replayed default variant differs from the preset's own row."""
    out = []
    for live, again in zip(preset, replayed, strict=True):
        if live.predicted != again.predicted or live.usage.get("total_tokens") != again.usage.get(
            "total_tokens"
        ):
            out.append(live.id)
    return out


def section(folder: Path, methods: dict[str, list[ResultRow]]) -> list[str]:
    """The round-3 summary: the estimator, the preset's variants and the issue's targets."""
    if PRESET not in methods:
        return []
    cot, preset, pot = methods["cot"], methods[PRESET], methods["pot"]
    hard = [not r.correct for r in cot]
    scores = [r.steps[0]["difficulty"] for r in preset]
    bands = [None if s is None else min(2, int(s * 3)) for s in scores]
    best = {
        "crosscheck (band, then the reply's logprob doubt)": auroc(scores, hard),
        "agreement band alone (agree / silent / differ)": auroc(bands, hard),
        "agree or not (binary)": auroc([None if b is None else b == 2 for b in bands], hard),
    }
    replayed = methods[DEFAULT.label]
    mismatched = _mismatches(preset, replayed)
    agree = sum(b == 0 for b in bands)
    silent = sum(b == 1 for b in bands)
    lines = [
        "",
        "## Round 3: the program-aided system",
        "",
        "The same problems; `pot`: one greedy SymPy program run in the sandbox (one "
        "correction allowed); `scale/crosscheck`: the `crosscheck` preset run by the "
        "recorded runtime on CoT's greedy reply, the program and vote's chains (the "
        "programs run again in the sandbox); `crosscheck …`: its gate and stop rule varied, "
        f"replayed from those stored calls. The default variant replayed here differs from "
        f"the preset's own row on {len(mismatched)} of {len(preset)} problems"
        + (f" ({', '.join(mismatched[:5])})" if mismatched else "")
        + ".",
        "",
        f"CoT and its program agree on {agree} problems, the program is silent on {silent}, "
        f"they differ on {len(bands) - agree - silent}.",
        "",
        "| cross-check as an estimator of CoT's failure | AUROC |",
        "|---|---|",
        *(f"| {name} | {value:.2f} |" for name, value in best.items() if value is not None),
    ]
    lines += ["", "## Targets (the program-aided issue)", "", "| target | result |", "|---|---|"]
    lines += [f"| {t} | {r} |" for t, r in targets(methods, best, pot)]
    return lines


def _calls(rows: list[ResultRow]) -> tuple[int, int]:
    """(program replies without an answer after the retry, program replies)."""
    samples = [s for r in rows for step in r.steps for s in step.get("samples") or []]
    return sum(s.get("fallback") in FAILED for s in samples), len(samples)


def targets(
    methods: dict[str, list[ResultRow]], auroc_of: dict[str, float | None], pot: list[ResultRow]
) -> list[tuple[str, str]]:
    """Each target of the issue with its number."""
    stats = {name: summarize(rows, 0.0) for name, rows in methods.items()}
    preset, default, vote = stats[PRESET], stats["scale"], stats["vote@5"]
    best = max(v for v in auroc_of.values() if v is not None)
    out = [("cross-check AUROC for CoT's failure >= 0.85", _met(best >= 0.85, f"{best:.2f}"))]
    gain = preset.correct - default.correct
    tokens = preset.tokens_per_problem / default.tokens_per_problem
    out.append(
        (
            "crosscheck preset: default + 3 correct at no more than its tokens",
            _met(
                gain >= 3 and tokens <= 1,
                f"{preset.correct} against {default.correct} correct ({gain:+d}), "
                f"{preset.tokens_per_problem:.0f} against {default.tokens_per_problem:.0f} "
                f"tokens ({tokens:.2f}x)",
            ),
        )
    )
    half = vote.tokens_per_problem / 2
    out.append(
        (
            "vote@5's accuracy at no more than half its tokens",
            _met(
                preset.correct >= vote.correct and preset.tokens_per_problem <= half,
                f"{preset.correct} against {vote.correct} correct, "
                f"{preset.tokens_per_problem:.0f} against {half:.0f} allowed",
            ),
        )
    )
    failed, calls = _calls(pot)
    out.append(
        (
            "programs without an answer after the retry: at most 5% of program replies",
            _met(failed <= 0.05 * calls, f"{failed} of {calls} ({failed / calls:.0%})"),
        )
    )
    measured = ROOT / "round3-programs" / "sandbox-throughput.json"
    if measured.is_file():
        found = json.loads(measured.read_text())
        runs = ", ".join(
            f"{r['programs_per_second']}/s with {r['workers']} workers" for r in found["runs"]
        )
        info = found["machine"]
        out.append(
            (
                "sandbox pool throughput stated (`sandbox-throughput.md`)",
                f"stated: {runs} ({info['cores']} cores, {info['cpu']}, {info['date'][:10]})",
            )
        )
    return out


def _met(ok: bool, numbers: str) -> str:
    return f"{'met' if ok else '**missed**'}: {numbers}"


def family(name: str) -> str | None:
    """The curve a round-3 variant is plotted on."""
    return "crosscheck variants" if name.startswith("crosscheck ") else None
