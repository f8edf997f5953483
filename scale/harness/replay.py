"""Voting methods replayed from stored samples: one run of k samples per problem, in
order, yields vote@1..k, Adaptive-Consistency at any confidence and ESC at any window,
exactly as sampling them online would (the same rollouts, in the same order)."""

from __future__ import annotations

from dataclasses import replace

from scale.grading.verify import is_equivalent
from scale.harness.results import ResultRow
from scale.programs.stopping import StopRule, majority


def stored_answers(row: ResultRow) -> list[dict]:
    """The ordered samples of a voting row that ran (its single step's ``samples``)."""
    return [] if row.error else row.recorded_samples()


def replay(row: ResultRow, rule: StopRule) -> ResultRow:
    """The row ``rule`` would have produced from ``row``'s samples: its answer, correctness,
    and the tokens and parse fallbacks of the samples it would have drawn. Rows with an
    error stay as they are. Where a sample predates samples keeping their own fallback
    (greedy-first can join a new greedy reply to older chains), the whole row's are kept."""
    samples = stored_answers(row)
    if not samples:
        return row
    drawn = rule.replay([s["answer"] for s in samples])
    used = samples[:drawn]
    fallbacks = row.steps[0].get("fallbacks") or []
    if all("fallback" in s for s in samples):
        fallbacks = [s["fallback"] for s in used if s["fallback"]]
    answer, share = majority([s["answer"] for s in used])
    prompt = sum(s.get("prompt_tokens", 0) for s in used)
    completion = sum(s.get("completion_tokens", 0) for s in used)
    step = dict(row.steps[0])
    step |= {
        "answer": answer,
        "samples": used,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "lm_calls": drawn,
        "seconds": round(sum(s.get("seconds", 0.0) for s in used), 3),
        "fallbacks": fallbacks,
        "notes": [f"replayed {rule.describe()}: {share:.2f} of {drawn} samples agree"],
    }
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "lm_calls": drawn,
        "cached_calls": 0,
        "spent_tokens": prompt + completion,
        "lm_seconds": step["seconds"],
        "seconds": step["seconds"],
        "by_stage": {
            "solve": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "lm_calls": drawn,
            }
        },
        "by_system": {
            "2": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "lm_calls": drawn,
            }
        },
    }
    return replace(
        row,
        predicted=answer,
        correct=is_equivalent(row.gold, answer),
        steps=[step],
        usage=usage,
        seconds=step["seconds"],
        notes=[],
    )


def replay_rows(rows: list[ResultRow], rule: StopRule) -> list[ResultRow]:
    """``replay`` over every row."""
    return [replay(row, rule) for row in rows]


def greedy_first(greedy_rows: list[ResultRow], vote_rows: list[ResultRow]) -> list[ResultRow]:
    """Vote's rows with their first chain replaced by the greedy one of ``greedy_rows`` (CoT,
    matched by id): the chains greedy-first self-consistency draws, in order (the greedy
    call, then rollouts 1..). A greedy reply with no answer (an error row that keeps its
    sample) is a first chain like any other: the vote goes on past it. Where either row has
    no samples at all, that row stays."""
    greedy = {row.id: row for row in greedy_rows}
    out = []
    for row in vote_rows:
        first = greedy[row.id].recorded_samples() if row.id in greedy else []
        samples = stored_answers(row)
        if not first or not samples:
            out.append(greedy.get(row.id, row) if samples else row)
            continue
        step = dict(row.steps[0]) | {"samples": first[:1] + samples[1:]}
        out.append(replace(row, steps=[step]))
    return out
