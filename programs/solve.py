"""Stage 4: answer a sub-problem (or a whole problem) with one system profile."""

from __future__ import annotations

import dspy
from dspy.utils.exceptions import AdapterParseError

from scale.lm import current_ledger, label
from scale.programs.profiles import SystemProfile
from scale.programs.records import Fallback, Sample
from scale.programs.stopping import StopRule, majority
from scale.signatures.solve import REASONING_DESC, SIGNATURES
from scale.verify import extract_answer

_MAX_BARE_ANSWER = 80  # characters: a longer unmarked reply is prose, not an answer


def _answer_in_unparsed(raw: str) -> str:
    """The answer in a reply the adapter could not parse: a ``\\boxed{}`` or 'answer:'
    marker, else the whole reply if it is one short line; else "" (a reply cut in
    mid-reasoning carries no answer, and passing it on as one would put it into every
    later step's prompt)."""
    raw = raw.strip()
    bare = "\n" not in raw and len(raw) <= _MAX_BARE_ANSWER
    return extract_answer(raw, marked_only=not bare)


def _token_logprobs(pred: dspy.Prediction) -> list[tuple[str, float]] | None:
    """The chosen tokens and their logprobs, from OpenAI-style ``logprobs.content``."""
    logprobs = getattr(pred, "logprobs", None)
    if hasattr(logprobs, "model_dump"):
        logprobs = logprobs.model_dump()
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not content:
        return None
    return [(str(e.get("token", "")), float(e["logprob"])) for e in content if "logprob" in e]


class Solver(dspy.Module):
    """Answers a whole problem (``whole``) or one step with one profile, at the profile's
    compute level. With ``samples`` > 1 it samples until the profile's stop rule is
    satisfied (the greedy reply first when ``greedy_first``) and returns the majority
    answer; every reply is kept in ``samples``."""

    def __init__(self, profile: SystemProfile, system: int, *, whole: bool):
        super().__init__()
        self.profile = profile
        self.system = system
        self.whole = whole
        signature = SIGNATURES[(profile.kind, whole)]
        if profile.kind == "direct":
            self.predict = dspy.Predict(signature)
        else:
            self.predict = dspy.ChainOfThought(
                signature, rationale_field=dspy.OutputField(desc=REASONING_DESC)
            )

    def reply(
        self,
        *,
        step: int | None = None,
        stage: str = "solve",
        rollout: int | None = None,
        logprobs: bool = False,
        **inputs: str,
    ) -> Sample:
        """One call: greedy, or sample ``rollout`` at the sample temperature (a distinct,
        separately cached and seeded call per rollout). A greedy call asks for token
        logprobs when ``logprobs`` or the profile's ``logprobs`` says so."""
        config: dict = {}
        if rollout is not None:
            config = {
                "temperature": self.profile.sample_temperature,
                "rollout_id": rollout,
                "seed": rollout,
            }
        if logprobs or (rollout is None and self.profile.logprobs):
            config["logprobs"] = True
        ledger = current_ledger()
        before = len(ledger.snapshot()) if ledger is not None else 0
        fallback = None
        calculation = None
        content = None
        try:
            with self.profile.context(), label(stage, self.system, step):
                pred = self.predict(**inputs, config=config)
        except AdapterParseError as exc:
            answer = _answer_in_unparsed(str(exc.lm_response or ""))
            fallback = Fallback.ANSWER_FROM_RAW if answer else Fallback.NO_ANSWER
        else:
            # a reasoning model's own \boxed{} answer wins over a restated answer field
            reasoning = str(getattr(pred, "reasoning", "") or "")
            boxed = "\\boxed" in reasoning
            answer = extract_answer(reasoning if boxed else str(pred.answer or ""))
            calculation = getattr(pred, "calculation", None)
            content = _token_logprobs(pred)
        calls = ledger.snapshot()[before:] if ledger is not None else []
        return Sample(
            answer,
            prompt_tokens=sum(r.prompt_tokens for r in calls),
            completion_tokens=sum(r.completion_tokens for r in calls),
            seconds=round(sum(r.seconds for r in calls), 3),
            calculation=calculation,
            logprobs=content,
            fallback=fallback,
        )

    def sample(
        self,
        rule: StopRule,
        *,
        step: int | None = None,
        stage: str = "solve",
        drawn: list[Sample] | None = None,
        **inputs: str,
    ) -> list[Sample]:
        """Samples at the sample temperature until ``rule`` is satisfied, continuing
        ``drawn`` (replies already made, e.g. an estimator's); rollout ids count on from
        ``len(drawn)``."""
        replies = list(drawn or [])
        while True:
            batch = rule.batch(len(replies))
            if batch == 0:
                return replies
            for _ in range(batch):
                replies.append(self.reply(step=step, stage=stage, rollout=len(replies), **inputs))
            if rule.done([r.answer for r in replies]):
                return replies

    def forward(
        self, step: int | None = None, drawn: list[Sample] | None = None, **inputs: str
    ) -> dspy.Prediction:
        """``drawn``: replies this solver would make first (the greedy one, then rollouts
        1..), already made elsewhere; self-consistency continues from them."""
        if self.profile.samples > 1:
            first = drawn or None
            if first is None and self.profile.greedy_first:
                first = [self.reply(step=step, **inputs)]
            replies = self.sample(self.profile.stop_rule, step=step, drawn=first, **inputs)
            answers = [r.answer for r in replies]
            answer, share = majority(answers)
            notes = [
                f"self-consistency ({self.profile.stop_rule.describe()}): {share:.2f} of "
                f"{len(answers)} samples agree"
            ]
        else:
            replies = [self.reply(step=step, **inputs)]
            answer, notes = replies[0].answer, []
        return dspy.Prediction(
            answer=answer,
            samples=replies,
            notes=notes,
            fallbacks=[r.fallback for r in replies if r.fallback is not None],
        )
