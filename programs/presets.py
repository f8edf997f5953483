"""Named configurations, and the one builder the CLI, notebooks and benchmarks use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scale.programs.base import MathProgram
from scale.programs.baselines import CoT, Vote
from scale.programs.io import ProgramFileError, apply_state, read_program
from scale.programs.profiles import system1, system2
from scale.programs.route import NO_ESTIMATE, Routing
from scale.programs.scale import SCALE

from scale.lm import DEFAULT_MODEL

METHODS = ("scale", "cot", "vote", "uniform-s1", "uniform-s2")
# The uniform baselines: SCALE without rating, every step on one system.
UNIFORM: dict[str, dict[str, Any]] = {
    method: {"estimator": NO_ESTIMATE, "threshold": threshold, "decompose_threshold": None}
    for method, threshold in (("uniform-s1", 1.0), ("uniform-s2", 0.0))
}


@dataclass(frozen=True)
class Preset:
    """SCALE's structural options plus its routing defaults."""

    description: str
    k: int
    batched: bool
    routing: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        "the authors' recipe: 8 candidate decompositions + a selection call, one self-rating "
        "call per step, last step forced to System 2, tau 0.2",
        k=8,
        batched=False,
        routing={"estimator": "self", "threshold": 0.2},
    ),
    "efficient": Preset(
        "our default: one decomposition; System 1 answers each step 3 times and steps where "
        "it disagrees with itself go to System 2; problems on which System 1 agrees with "
        "itself are answered by one System 2 call without decomposing",
        k=1,
        batched=True,
        routing={"estimator": "consistency", "threshold": 0.3, "decompose_threshold": 0.3},
    ),
}


def build_program(
    method: str = "scale",
    *,
    preset: str = "efficient",
    model: str = DEFAULT_MODEL,
    system1_model: str | None = None,
    system2_model: str | None = None,
    system1_max_tokens: int | None = None,
    system2_max_tokens: int | None = None,
    system2_samples: int | None = None,
    vote_samples: int = 5,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float = 300.0,
    retries: int = 3,
    program_path: str | None = None,
    **routing: Any,
) -> MathProgram:
    """Build a method. ``routing`` overrides the preset's routing (``estimator``, ``mode``,
    ``threshold``, ``budget``, ``decompose_threshold``, ``force_last``; ``None`` values are
    ignored); ``program_path`` loads a tuned program's prompts and routing on top."""
    saved = read_program(program_path) if program_path else None
    structure: dict[str, Any] = {}
    if saved is not None:
        method = saved["scale"]["method"]
        structure = saved["scale"].get("structure") or {}
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
    client = {"api_base": api_base, "api_key": api_key, "timeout": timeout, "retries": retries}
    s1 = system1(
        system1_model or model,
        **client,
        **({"max_tokens": system1_max_tokens} if system1_max_tokens else {}),
    )
    s2 = system2(
        system2_model or model,
        **client,
        **({"max_tokens": system2_max_tokens} if system2_max_tokens else {}),
        **({"samples": system2_samples} if system2_samples else {}),
    )
    if method == "cot":
        program: MathProgram = CoT(s2)
    elif method == "vote":
        program = Vote(s2, samples=vote_samples)
    else:
        chosen = PRESETS[preset]
        if structure.pop("uniform", None) is not None:
            raise ProgramFileError(
                f"{program_path}: saved by an older version as a uniform baseline; "
                "compile it again with this version"
            )
        options = {"k": chosen.k, "batched": chosen.batched, **structure}
        program = SCALE(
            s1, s2, routing=Routing(**{**chosen.routing, **UNIFORM.get(method, {})}), **options
        )
    if saved is not None:
        apply_state(program, saved, program_path)
    overrides = {k: v for k, v in routing.items() if v is not None}
    if overrides and isinstance(program, SCALE):
        program.routing.load_state({**program.routing.dump_state(), **overrides})
    return program
