"""The dataset-level token budget: never over budget, samples where answers are split."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scale.programs.budget import BudgetPolicy, Draw, StoredChains

MAX_TOKENS = 100


def chain(*answers: str, prompt: int = 20, completion: int = 50) -> list[Draw]:
    return [Draw(a, prompt, completion) for a in answers]


draws = st.builds(
    Draw,
    answer=st.sampled_from(["1", "2", "3", ""]),
    prompt_tokens=st.just(30),
    completion_tokens=st.integers(0, MAX_TOKENS),
)


@settings(max_examples=300, deadline=None)
@given(
    chains=st.lists(st.lists(draws, min_size=1, max_size=10), min_size=1, max_size=12),
    budget=st.integers(0, 6000),
    cap=st.integers(1, 10),
    round_size=st.integers(1, 5),
)
def test_spent_never_exceeds_the_budget_and_chains_are_drawn_in_order(
    chains, budget, cap, round_size
):
    policy = BudgetPolicy(budget, MAX_TOKENS, cap=cap, round_size=round_size)
    allocations = policy.run(StoredChains(chains), len(chains))
    assert sum(a.tokens for a in allocations) <= budget
    for allocation, stored in zip(allocations, chains, strict=True):
        assert allocation.draws == stored[: len(allocation.draws)]  # a prefix, in order
        assert len(allocation.draws) <= cap


def test_round_zero_gives_every_problem_its_greedy_reply_first():
    chains = [chain("1", "1", "1"), chain("2", "3", "2")]
    per_reply = 20 + MAX_TOKENS  # worst case reserved for each
    policy = BudgetPolicy(2 * per_reply, MAX_TOKENS)
    allocations = policy.run(StoredChains(chains), 2)
    assert [len(a.draws) for a in allocations] == [1, 1]  # no room for a third worst case
    assert [a.answer for a in allocations] == ["1", "2"]


def test_samples_go_to_the_split_problem_not_the_settled_one():
    settled = chain("7", "7", "7", "7", "7", "7")
    split = chain("1", "2", "2", "2", "2", "2")
    budget = 6 * 70 + MAX_TOKENS  # the greedy replies and 4 more samples, with margin
    allocations = BudgetPolicy(budget, MAX_TOKENS, round_size=1).run(
        StoredChains([settled, split]), 2
    )
    assert len(allocations[1].draws) > len(allocations[0].draws)
    assert allocations[1].answer == "2"


def test_agreeing_replies_stop_drawing_before_the_budget_is_spent():
    chains = [chain(*["5"] * 8) for _ in range(3)]
    allocations = BudgetPolicy(10**6, MAX_TOKENS, cap=8).run(StoredChains(chains), 3)
    spent = sum(a.tokens for a in allocations)
    assert spent < 3 * 8 * 70  # settled problems stop short of the cap
    assert all(len(a.draws) < 8 for a in allocations)
