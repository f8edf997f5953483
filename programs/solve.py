"""Stage 4: answer a sub-problem (or a whole problem) with one system profile."""

from __future__ import annotations

import dspy
from dspy.utils.exceptions import AdapterParseError

from scale.grading.verify import extract_answer
from scale.models.adapter import extract_program
from scale.models.lm import current_ledger, label
from scale.programs.logprobs import logprob_content
from scale.programs.profiles import SystemProfile
from scale.programs.records import Fallback, Sample
from scale.programs.stopping import StopRule, majority
from scale.sandbox import Run, default_sandbox
from scale.signatures.solve import REASONING_DESC, SIGNATURES, FixProgram

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
    content = logprob_content(pred)
    if not content:
        return None
    return [(str(e.get("token", "")), float(e["logprob"])) for e in content if "logprob" in e]


def _program_answer(run: Run) -> str:
    """The answer a program printed: SymPy's LaTeX of its last line, else the line's own
    answer (a printed sentence such as 'The answer is 42')."""
    return run.latex or extract_answer(run.answer)


def _describe_failure(run: Run) -> str:
    """What a failed run tells the model when it is asked to correct its program."""
    if run.error == "no output":
        return "it ran but printed nothing; it must print the final answer"
    tail = run.stderr.strip()[-600:]
    return f"{run.error}\n{tail}".strip() if tail and tail not in run.error else run.error


def _whole_problem(inputs: dict) -> str:
    """A step's inputs as one problem statement (the correction prompt has one field)."""
    if "subproblem" not in inputs:
        return inputs["problem"]
    return (
        f"{inputs['problem']}\n\nAnswers found for the earlier steps:\n"
        f"{inputs.get('earlier_steps') or '(none)'}\n\nAnswer only this: {inputs['subproblem']}"
    )


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
        if profile.kind == "program":
            default_sandbox().command()  # refuses now, before any call, where none can be made
            self.predict = dspy.Predict(signature)
            self.fix = dspy.Predict(FixProgram)
        elif profile.kind == "direct":
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
        programs = None
        try:
            with self.profile.context(), label(stage, self.system, step):
                if self.profile.kind == "program":
                    answer, programs, fallback, content = self._program(inputs, config)
                else:
                    answer, calculation, content = self._answer(inputs, config)
        except AdapterParseError as exc:
            answer = _answer_in_unparsed(str(exc.lm_response or ""))
            fallback = Fallback.ANSWER_FROM_RAW if answer else Fallback.NO_ANSWER
        calls = ledger.snapshot()[before:] if ledger is not None else []
        return Sample(
            answer,
            prompt_tokens=sum(r.prompt_tokens for r in calls),
            completion_tokens=sum(r.completion_tokens for r in calls),
            seconds=round(sum(r.seconds for r in calls), 3),
            calculation=calculation,
            logprobs=content,
            fallback=fallback,
            programs=programs,
        )

    def _answer(self, inputs: dict, config: dict) -> tuple[str, str | None, list | None]:
        """A written answer: (answer, calculation, token logprobs)."""
        pred = self.predict(**inputs, config=config)
        # a reasoning model's own \\boxed{} answer wins over a restated answer field
        reasoning = str(getattr(pred, "reasoning", "") or "")
        boxed = "\\boxed" in reasoning
        answer = extract_answer(reasoning if boxed else str(pred.answer or ""))
        return answer, getattr(pred, "calculation", None), _token_logprobs(pred)

    def _program(
        self, inputs: dict, config: dict
    ) -> tuple[str, list[str], Fallback | None, list | None]:
        """A program's answer: the model writes a program, the sandbox runs it, and a
        program that printed no answer gets one corrected attempt with its error shown.
        Returns (answer, programs written, fallback, the first reply's token logprobs)."""
        programs: list[str] = []
        content = None
        error = "the reply held no ```python block"
        try:
            pred = self.predict(**inputs, config=config)
            program, content = pred.program, _token_logprobs(pred)
        except AdapterParseError as exc:  # unfenced: the whole reply may still be code
            program = extract_program(str(exc.lm_response or ""), fenced_only=False)
        if program:
            programs.append(program)
            run = default_sandbox().run(program)
            if run.ok and run.answer:
                return _program_answer(run), programs, None, content
            error = _describe_failure(run)
        fix_config = {k: v for k, v in config.items() if k != "logprobs"}
        try:
            fixed = self.fix(
                problem=_whole_problem(inputs),
                program=program or "(none)",
                error=error,
                config=fix_config,
            ).fixed_program
        except AdapterParseError as exc:
            fixed = extract_program(str(exc.lm_response or ""), fenced_only=False)
        if not fixed:
            return "", programs, Fallback.NO_PROGRAM, content
        programs.append(fixed)
        run = default_sandbox().run(fixed)
        if run.ok and run.answer:
            return _program_answer(run), programs, Fallback.PROGRAM_RETRIED, content
        silent = run.error == "no output"
        return "", programs, Fallback.PROGRAM_SILENT if silent else Fallback.PROGRAM_FAILED, content

    def sample(
        self,
        rule: StopRule,
        *,
        step: int | None = None,
        stage: str = "solve",
        drawn: list[Sample] | None = None,
        votes: list[Sample] | None = None,
        **inputs: str,
    ) -> list[Sample]:
        """Samples at the sample temperature until ``rule`` is satisfied, continuing
        ``drawn`` (replies already made, e.g. an estimator's; rollout ids count on from
        ``len(drawn)``) and counting ``votes`` (replies of another kind, e.g. a program's)
        as chains after them: the vote is over mixed chains."""
        replies = list(drawn or [])
        chains = [*replies, *(votes or [])]
        while True:
            batch = rule.batch(len(chains))
            if batch == 0:
                return chains
            for _ in range(batch):
                reply = self.reply(step=step, stage=stage, rollout=len(replies), **inputs)
                replies.append(reply)
                chains.append(reply)
            if rule.done([r.answer for r in chains]):
                return chains

    def forward(
        self,
        step: int | None = None,
        drawn: list[Sample] | None = None,
        votes: list[Sample] | None = None,
        **inputs: str,
    ) -> dspy.Prediction:
        """``drawn``: replies this solver would make first (the greedy one, then rollouts
        1..), already made elsewhere; self-consistency continues from them, with ``votes``
        (another kind's replies) counted as chains too."""
        if self.profile.samples > 1:
            first = drawn or None
            if first is None and self.profile.greedy_first:
                first = [self.reply(step=step, **inputs)]
            rule = self.profile.stop_rule
            replies = self.sample(rule, step=step, drawn=first, votes=votes, **inputs)
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
            # a vote's fallback is its maker's to record (the estimator's rating)
            fallbacks=[
                r.fallback
                for r in replies
                if r.fallback is not None and not any(r is v for v in votes or [])
            ],
        )
