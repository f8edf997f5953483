"""The dataset-level budget policy replayed on round 2's stored chains, against the
per-problem peers at matched budgets, and the oracle.

    python bench/budget_curves.py

For each round-2 dataset: every problem's chains in the order greedy-first sampling
draws them (CoT's greedy reply, then vote's rollouts 1-7: 8 at most), ``BudgetPolicy``
at budgets of 1x-8x CoT's tokens per problem, and the oracle on the same chains (a
problem is given the shortest prefix whose majority is right, cheapest problems first:
the most any allocation of these chains can get at that budget). Peers are the replayed
methods of the round-2 summary (``summary.json``). Writes ``bench/results/budget/``:
``DATASET.json``, ``DATASET.md`` and ``DATASET.png``, and ``README.md`` with both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scale.bench.plots import tradeoff_plot
from scale.bench.report import machine, method_family
from scale.grading.verify import is_equivalent
from scale.harness.replay import stored_answers
from scale.optimizers import read_results
from scale.programs.budget import BudgetPolicy, Draw, StoredChains
from scale.programs.profiles import MAX_TOKENS
from scale.programs.stopping import majority

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = {
    "gsm8k": RESULTS / "round2-gsm8k-server",
    "math500-l13": RESULTS / "round2-math500-l13",
}
MULTIPLES = (1, 1.5, 2, 3, 4, 6, 8)
MATCHED = (2, 4, 8)  # the matched budgets, as multiples of CoT's tokens
PEERS = ("vote", "adaptive-vote", "adaptive-vote-gf", "esc")


def _draw(sample: dict) -> Draw:
    return Draw(
        str(sample.get("answer") or ""),
        int(sample.get("prompt_tokens", 0)),
        int(sample.get("completion_tokens", 0)),
    )


def chains(folder: Path) -> tuple[list[str], list[str], list[list[Draw]]]:
    """(ids, gold answers, chains) of the problems, in the summary's order."""
    ids = [json.loads(line)["id"] for line in (folder / "problems.jsonl").open()]
    cot = {r.id: r for r in read_results(folder / "chains-8" / "cot.jsonl")}
    vote = {r.id: r for r in read_results(folder / "chains-8" / "vote.jsonl")}
    out = []
    for i in ids:
        greedy = cot[i].recorded_samples()[:1]
        out.append([_draw(s) for s in greedy + stored_answers(vote[i])[1:]])
    return ids, [cot[i].gold for i in ids], out


def oracle(gold: list[str], stored: list[list[Draw]], budget: int) -> int:
    """Correct answers of the best allocation of ``stored`` within ``budget`` tokens."""
    costs = []
    for answer, chain in zip(gold, stored, strict=True):
        for k in range(1, len(chain) + 1):
            if is_equivalent(answer, majority([d.answer for d in chain[:k]])[0]):
                costs.append(sum(d.tokens for d in chain[:k]))
                break
    correct = spent = 0
    for cost in sorted(costs):
        if spent + cost > budget:
            break
        spent, correct = spent + cost, correct + 1
    return correct


def curves(name: str, folder: Path) -> dict[str, Any]:
    ids, gold, stored = chains(folder)
    n = len(ids)
    summary = json.loads((folder / "summary.json").read_text())["methods"]
    cot_tokens = summary["cot"]["tokens_per_problem"]
    budget_points, oracle_points = [], []
    for multiple in MULTIPLES:
        budget = int(multiple * cot_tokens * n)
        policy = BudgetPolicy(budget, MAX_TOKENS["reasoning"])
        allocations = policy.run(StoredChains(stored), n)
        correct = sum(is_equivalent(g, a.answer) for g, a in zip(gold, allocations, strict=True))
        spent = sum(a.tokens for a in allocations)
        assert spent <= budget
        budget_points.append(
            {
                "label": f"budget {multiple:g}x",
                "family": "budget",
                "multiple": multiple,
                "correct": correct,
                "accuracy": correct / n,
                "tokens_per_problem": spent / n,
                "calls_per_problem": sum(len(a.draws) for a in allocations) / n,
            }
        )
        best = oracle(gold, stored, budget)
        oracle_points.append(
            {
                "label": f"oracle {multiple:g}x",
                "family": "oracle",
                "multiple": multiple,
                "correct": best,
                "accuracy": best / n,
                "tokens_per_problem": budget / n,
            }
        )
    peers = [
        {
            "label": label,
            "family": method_family(label) or label,
            "correct": p["correct"],
            "accuracy": p["accuracy"],
            "tokens_per_problem": p["tokens_per_problem"],
        }
        for label, p in summary.items()
        if (method_family(label) in PEERS and "cap" not in label) or label in ("cot", "scale")
    ]
    matched = []
    for multiple in MATCHED:
        limit = multiple * cot_tokens
        point = next(p for p in budget_points if p["multiple"] == multiple)
        within = [p for p in peers if p["tokens_per_problem"] <= limit]
        best = max(within, key=lambda p: p["correct"]) if within else None
        matched.append(
            {
                "multiple": multiple,
                "budget": point["correct"],
                "budget_tokens": round(point["tokens_per_problem"]),
                "best_peer": best and best["label"],
                "best_peer_correct": best and best["correct"],
                "oracle": next(p for p in oracle_points if p["multiple"] == multiple)["correct"],
            }
        )
    tradeoff_plot(
        [*peers, *budget_points, *oracle_points],
        RESULTS / "budget" / f"{name}.png",
        title=f"{name}: {n} problems, the budget policy on round 2's chains",
    )
    return {
        "n": n,
        "cot_tokens_per_problem": cot_tokens,
        "budget": budget_points,
        "oracle": oracle_points,
        "peers": peers,
        "matched": matched,
    }


def table(name: str, found: dict[str, Any]) -> list[str]:
    lines = [
        f"## {name} ({found['n']} problems; CoT {found['cot_tokens_per_problem']:.0f} "
        "tokens a problem)",
        "",
        "| budget (x CoT) | policy correct | its tokens/problem | calls/problem | oracle |",
        "|---|---|---|---|---|",
    ]
    for point, best in zip(found["budget"], found["oracle"], strict=True):
        lines.append(
            f"| {point['multiple']:g}x | {point['correct']} | "
            f"{point['tokens_per_problem']:.0f} | {point['calls_per_problem']:.1f} | "
            f"{best['correct']} |"
        )
    lines += [
        "",
        "| matched budget | policy | best per-problem peer within it | oracle |",
        "|---|---|---|---|",
    ]
    for m in found["matched"]:
        peer = f"{m['best_peer_correct']} ({m['best_peer']})" if m["best_peer"] else "none"
        lines.append(
            f"| {m['multiple']}x | {m['budget']} ({m['budget_tokens']} tokens) | {peer} | "
            f"{m['oracle']} |"
        )
    return [*lines, "", f"![{name}]({name}.png)", ""]


def targets(found: dict[str, dict[str, Any]]) -> list[str]:
    """The budget issue's replay targets, each met or missed with its numbers."""
    lines = ["## Targets (replayed)", "", "| target | result |", "|---|---|"]
    for name, f in found.items():
        behind = [
            m for m in f["matched"] if m["best_peer"] and m["budget"] < m["best_peer_correct"]
        ]
        numbers = ", ".join(
            f"{m['multiple']}x {m['budget']} vs {m['best_peer_correct']}" for m in f["matched"]
        )
        verdict = "met" if not behind else "**missed**"
        lines.append(
            f"| {name}: >= the best per-problem peer at 2x, 4x, 8x | {verdict}: {numbers} |"
        )
    math = found["math500-l13"]
    peer = next(p for p in math["peers"] if p["label"] == "adaptive-vote-gf@0.8")
    cheap = [
        p for p in math["budget"] if p["tokens_per_problem"] <= 0.6 * peer["tokens_per_problem"]
    ]
    best_cheap = max(cheap, key=lambda p: p["correct"]) if cheap else None
    at_its_tokens = [
        p for p in math["budget"] if p["tokens_per_problem"] <= peer["tokens_per_problem"]
    ]
    best_at = max(at_its_tokens, key=lambda p: p["correct"])
    met = (best_cheap and best_cheap["correct"] >= peer["correct"]) or (
        best_at["correct"] >= peer["correct"] + 3
    )
    lines.append(
        f"| MATH: greedy-first AC 0.8 ({peer['correct']} at {peer['tokens_per_problem']:.0f}) "
        f"at <= 60% of its tokens, or +3 at its tokens | {'met' if met else '**missed**'}: "
        f"{best_cheap['correct'] if best_cheap else '-'} at <= 60%, {best_at['correct']} at "
        "its tokens |"
    )
    gsm = found["gsm8k"]
    four = next(m for m in gsm["matched"] if m["multiple"] == 4)
    gap = four["oracle"] - four["budget"]
    lines.append(
        f"| GSM8K: within 3 of the oracle at 4x | {'met' if gap <= 3 else '**missed**'}: "
        f"{four['budget']} vs {four['oracle']} (gap {gap}) |"
    )
    return [*lines, ""]


def main() -> None:
    (RESULTS / "budget").mkdir(parents=True, exist_ok=True)
    info = machine()
    lines = [
        "# The dataset-level budget policy, replayed",
        "",
        f"`python bench/budget_curves.py`, {info['date'][:10]} (no model: round 2's stored "
        "chains). `BudgetPolicy` (`scale/programs/budget.py`): the greedy reply for every "
        "problem, then rounds of one more sample for the 10 problems of highest doubt per "
        "token (1 - Adaptive-Consistency's Beta confidence), at most 8 replies a problem; a "
        "reply is drawn only if its worst case (prompt + 1,024 tokens) still fits. Peers: "
        "the replayed per-problem methods of the round-2 summaries, on the same chains.",
        "",
    ]
    found_all: dict[str, dict[str, Any]] = {}
    for name, folder in DATASETS.items():
        found = curves(name, folder)
        (RESULTS / "budget" / f"{name}.json").write_text(json.dumps(found, indent=1) + "\n")
        lines += table(name, found)
        found_all[name] = found
    lines += targets(found_all)
    (RESULTS / "budget" / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
