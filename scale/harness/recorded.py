"""The ``recorded`` local runtime: calls answered from a benchmark's stored rows, not a model.

A ``scale bench`` run of ``cot`` and ``vote`` stores, for every problem, the greedy reply's
answer and the answers of vote's samples by rollout id, with their tokens and seconds. A
program whose calls are exactly those (the default SCALE program: System 1's greedy reply,
agreement samples and System 2's chains) can then be run again at no model time: each
request is served from the stored row of the same request, and a request no row holds
(other messages, demos, settings, logprobs or a rollout never drawn) fails with a message
saying why, or, under ``recorded+inproc`` / ``recorded+server``, runs on the model. The
messages are matched exactly, by rendering the stored method's own prompt.
Replies carry only the stored answer (as ``\\boxed{}``), usage and seconds, not the
reasoning text, and the chosen tokens' logprobs where the call asks for them and the row
holds them (``cot`` run with ``--system2-logprobs``). Recorded calls bypass DSPy's cache
and count as served, not spent (no model ran: ``spent_tokens`` stays 0), and a row's
seconds are its calls' recorded seconds (so every method replayed is timed the way its
calls were).

Point ``SCALE_RECORDINGS`` at the benchmark folder (its ``cot.jsonl`` and ``vote.jsonl``),
or call ``install(FOLDER)``; the ``scale`` CLI installs ``$SCALE_RECORDINGS``.

A ``pot.jsonl`` there (or linked there) serves the program-aided calls too: a request to
write a program gets the stored program back, and the sandbox runs it again; a request to
correct one (matched by the problem and the failed program it quotes) gets the stored
correction. A sample's tokens and seconds are stored per sample, not per call: they are
served with its first call, and its correction is served at no cost.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from scale.models import local
from scale.models.local import RecordingError

ENV = "SCALE_RECORDINGS"
GREEDY_METHOD, SAMPLED_METHOD, PROGRAM_METHOD = "cot", "vote", "pot"


@dataclass(frozen=True)
class _Method:
    """One stored method: its profile, the signature and adapter it called with, and its
    rows' samples by problem text."""

    profile: Any  # scale.programs.SystemProfile
    signature: Any  # type[dspy.Signature]
    adapter: Any  # dspy.Adapter
    samples: dict[str, list[dict]]

    def messages(self, problem: str) -> list[dict]:
        """The messages this method sent for ``problem``."""
        inputs = {"problem": problem}
        return _plain(self.adapter.format(self.signature, demos=[], inputs=inputs))

    def fix_instructions(self) -> str:
        """The system message of this (program) method's correction requests."""
        from scale.signatures.solve import FixProgram

        inputs = {"problem": "", "program": "", "error": ""}
        return _plain(self.adapter.format(FixProgram, demos=[], inputs=inputs))[0]["content"]


def _check_sample(path: Path, row: str, sample: Any) -> None:
    """Refuse a stored sample that could not be served as it was recorded."""
    where = f"{path}: row {row}"
    if not isinstance(sample, dict) or not isinstance(sample.get("answer", ""), str):
        raise RecordingError(f"{where}: a sample must be an object with a text answer")
    for key in ("prompt_tokens", "completion_tokens"):
        value = sample.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RecordingError(f"{where}: {key} must be a count, got {value!r}")
    seconds = sample.get("seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 1e7:
        raise RecordingError(f"{where}: seconds must be a finite duration, got {seconds!r}")
    tokens = sample.get("logprobs") or []
    if not isinstance(tokens, list) or not all(_is_token_logprob(t) for t in tokens):
        raise RecordingError(f"{where}: logprobs must be [token, finite logprob] pairs")
    programs = sample.get("programs") or []
    if not isinstance(programs, list) or not all(isinstance(p, str) for p in programs):
        raise RecordingError(f"{where}: programs must be a list of program texts")
    answer = sample.get("answer", "")
    depth = 0
    for char in answer:  # served inside \boxed{}: its braces must balance to read back
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        raise RecordingError(f"{where}: the answer {answer[:40]!r} has unbalanced braces")


def _is_token_logprob(pair: Any) -> bool:
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
        return False
    logprob = pair[1]
    number = isinstance(logprob, (int, float)) and not isinstance(logprob, bool)
    return number and math.isfinite(logprob) and logprob <= 0


def _load(path: Path) -> _Method:
    from scale.harness.results import read_header, read_results
    from scale.models.adapter import make_adapter
    from scale.programs.profiles import SystemProfile
    from scale.programs.solve import Solver

    systems = read_header(path).get("systems") or {}
    if len(systems) != 1:
        raise RecordingError(f"{path}: a recording must hold one system, found {len(systems)}")
    names = {f.name for f in fields(SystemProfile) if f.init}
    (system,) = systems.values()
    # the profile renders the recorded requests; no model of it runs
    chosen = {k: v for k, v in system.items() if k in names and k != "runtime"}
    if str(chosen.get("model", "")).startswith(f"{local.PROVIDER}/"):
        chosen["runtime"] = local.RECORDED
    profile = SystemProfile(**chosen)
    samples = {}
    for row in read_results(path):
        # a row whose reply held no usable answer is an error row with its sample: replayed,
        # that call gives the same unusable reply
        if recorded := row.recorded_samples():
            for sample in recorded:
                _check_sample(path, row.id, sample)
            samples[row.steps[0]["subproblem"]] = recorded
    # the predictor of the reply itself (a program's correction is matched apart)
    (predictor,) = Solver(profile, 2, whole=True).predict.predictors()
    return _Method(profile, predictor.signature, make_adapter(profile.adapter_name), samples)


class Recordings:
    """The stored greedy replies (``cot.jsonl``), samples (``vote.jsonl``) and, if there,
    greedy programs (``pot.jsonl``) of one folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        found = {m: self.folder / f"{m}.jsonl" for m in (GREEDY_METHOD, SAMPLED_METHOD)}
        missing = [str(p) for p in found.values() if not p.is_file()]
        if missing:
            raise RecordingError(f"no recorded rows at {', '.join(missing)}")
        self.greedy = _load(found[GREEDY_METHOD])
        self.sampled = _load(found[SAMPLED_METHOD])
        programs = self.folder / f"{PROGRAM_METHOD}.jsonl"
        self.program = _load(programs) if programs.is_file() else None
        if self.greedy.profile.model != self.sampled.profile.model:
            raise RecordingError(
                f"{self.folder}: {GREEDY_METHOD} and {SAMPLED_METHOD} used two models"
            )
        if self.greedy.profile.samples != 1 or self.sampled.profile.greedy_first:
            raise RecordingError(
                f"{self.folder}: {GREEDY_METHOD} must make one greedy call and {SAMPLED_METHOD} "
                "sample from rollout 0"
            )

    def complete(self, model: str, messages: list[dict], params: dict) -> tuple[dict, float]:
        """The stored reply to this request, as a chat completion, and its stored seconds."""
        if model != self.greedy.profile.model:
            raise RecordingError(f"recorded with {self.greedy.profile.model}, asked for {model}")
        if params.get("top_logprobs"):
            raise RecordingError("the recordings hold no alternative tokens (top_logprobs)")
        if self.program is not None and messages:
            if messages[0].get("content") == self.program.fix_instructions():
                return self._program_reply(messages, params, correction=True)
            if _plain(messages[:1]) == self.program.messages("")[:1]:
                return self._program_reply(messages, params, correction=False)
        problem = str(messages[-1].get("content", "")) if messages else ""
        rollout = params.get("seed")
        temperature = float(params.get("temperature") or 0.0)
        method = self.greedy if temperature == 0 and rollout is None else self.sampled
        profile = method.profile
        samples = method.samples.get(problem)
        if samples is None:
            raise RecordingError(f"no recorded row for the problem {problem[:80]!r}")
        wanted = profile.sample_temperature if method is self.sampled else profile.temperature
        if temperature != wanted or params.get("max_tokens") != profile.max_tokens:
            raise RecordingError(
                f"recorded at temperature {wanted} and max_tokens {profile.max_tokens}, asked "
                f"at {temperature} and {params.get('max_tokens')}"
            )
        if method is self.sampled and rollout is None:
            raise RecordingError("a sampled call names no rollout (seed): nothing to match")
        index = 0 if method is self.greedy else int(rollout)
        if not 0 <= index < len(samples):
            raise RecordingError(f"rollout {index} was not recorded ({len(samples)} were)")
        if _plain(messages) != method.messages(problem):
            raise RecordingError("the request's messages differ from the recorded method's")
        sample = samples[index]
        tokens = sample.get("logprobs")
        answer = str(sample.get("answer") or "")
        # a reply with no answer is stored without logprobs: the program never used them
        # (it cannot parse the reply and treats it as hard), so it is served without them
        if params.get("logprobs") and not tokens and answer:
            raise RecordingError(
                f"no token logprobs recorded for this call (record {GREEDY_METHOD} with "
                "--system2-logprobs)"
            )
        prompt, completion = sample.get("prompt_tokens", 0), sample.get("completion_tokens", 0)
        choice = {
            # a reply with no answer reads as one cut short: no marker, nothing to parse
            "finish_reason": "stop" if answer else "length",
            "message": {"content": f"\\boxed{{{answer}}}" if answer else "(no answer)\n..."},
        }
        if params.get("logprobs") and tokens:
            content = [{"token": t, "logprob": lp, "top_logprobs": []} for t, lp in tokens]
            choice["logprobs"] = {"content": content}
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        return {"choices": [choice], "usage": usage}, float(sample.get("seconds") or 0.0)

    def _program_reply(
        self, messages: list[dict], params: dict, *, correction: bool
    ) -> tuple[dict, float]:
        """The stored program (or its correction) for a program-aided request."""
        method = self.program
        assert method is not None
        if params.get("seed") is not None or float(params.get("temperature") or 0.0) != 0:
            raise RecordingError(f"{PROGRAM_METHOD}.jsonl holds greedy programs only")
        if params.get("max_tokens") != method.profile.max_tokens:
            raise RecordingError(
                f"programs recorded at max_tokens {method.profile.max_tokens}, asked at "
                f"{params.get('max_tokens')}"
            )
        content = str(messages[-1].get("content", ""))
        if correction:
            found = [
                s
                for problem, (s, *_) in method.samples.items()
                if problem in content and len(s.get("programs") or []) > 1
                if s["programs"][0] in content
            ]
            if len(found) != 1:
                raise RecordingError("no single recorded correction matches this request")
            program, usage, seconds = found[0]["programs"][1], (0, 0), 0.0
        else:
            stored = method.samples.get(content)
            if stored is None or _plain(messages) != method.messages(content):
                raise RecordingError(f"no recorded program for the problem {content[:80]!r}")
            first = stored[0]
            program = (first.get("programs") or [""])[0]
            usage = (first.get("prompt_tokens", 0), first.get("completion_tokens", 0))
            seconds = float(first.get("seconds") or 0.0)
        choice = {"finish_reason": "stop", "message": {"content": f"```python\n{program}\n```"}}
        total = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
        return {"choices": [choice], "usage": total | {"total_tokens": sum(usage)}}, seconds


def _plain(messages: list[dict]) -> list[dict]:
    return [{"role": m.get("role"), "content": m.get("content")} for m in messages]


_loaded: dict[Path, Recordings] = {}
_lock = threading.Lock()


def install(folder: str | Path | None = None) -> None:
    """Serve the recorded runtimes from ``folder`` (default: ``$SCALE_RECORDINGS`` when a
    call first needs it), loaded once per process."""
    local.serve_recordings(lambda: recordings(folder))


def recordings(folder: str | Path | None = None) -> Recordings:
    """The recordings of ``folder`` or of the one ``$SCALE_RECORDINGS`` names (loaded once
    per process)."""
    folder = folder or os.environ.get(ENV)
    if not folder:
        raise RecordingError(
            f"the recorded runtime answers from a benchmark folder: set {ENV}=DIR "
            "(a scale bench --out folder with cot.jsonl and vote.jsonl)"
        )
    key = Path(folder).resolve()
    with _lock:
        if key not in _loaded:
            _loaded[key] = Recordings(key)
        return _loaded[key]
