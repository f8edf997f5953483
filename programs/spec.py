"""Named configurations, and ``ProgramSpec``: the one way to describe and build a method."""

from __future__ import annotations

import argparse
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from scale.models.lm import DEFAULT_MODEL, DEFAULT_RETRIES, DEFAULT_TIMEOUT
from scale.programs.base import MathProgram
from scale.programs.baselines import CoT, Vote
from scale.programs.estimators import CrossCheck
from scale.programs.io import PROFILE_KNOBS, apply_state, read_program
from scale.programs.profiles import SystemProfile, system1, system2
from scale.programs.route import Routing
from scale.programs.scale import SCALE


@dataclass(frozen=True)
class Preset:
    """SCALE's structural options, its routing and its systems' knobs."""

    description: str
    k: int = 1
    batched: bool = True
    agreement_samples: int = 3
    routing: dict[str, Any] = field(default_factory=dict)
    system1: dict[str, Any] = field(default_factory=dict)
    system2: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        "the authors' recipe: 8 candidate decompositions + a selection call, one self-rating "
        "call per step, last step forced to System 2, tau 0.2",
        k=8,
        batched=False,
        routing={"estimator": "self", "threshold": 0.2},
    ),
    "efficient": Preset(
        "our default, problem-level allocation: System 1 is greedy CoT; a problem whose "
        "greedy reply and one sample agree is answered at once; the others go whole to "
        "System 2, greedy-first self-consistency that goes on from those two replies and "
        "stops at Adaptive-Consistency confidence 0.8 (cap 5)",
        agreement_samples=2,
        routing={"estimator": "agreement", "gate": 0.0, "decompose": False},
        system1={"kind": "reasoning"},
        system2={"samples": 5, "stop": "adaptive", "confidence": 0.8, "greedy_first": True},
    ),
    "crosscheck": Preset(
        "CoT/program cross-check, problem-level: System 1 is greedy CoT and the same model "
        "also writes one SymPy program (run in the OS sandbox); a problem is answered at "
        "once unless the two answers differ; those go whole to System 2, greedy-first "
        "self-consistency that goes on from the CoT reply, counts the program's answer as a "
        "chain and stops at Adaptive-Consistency confidence 0.8 (cap 5 chains)",
        routing={"estimator": "crosscheck", "gate": CrossCheck.UNCONTESTED, "decompose": False},
        system1={"kind": "reasoning"},
        system2={"samples": 5, "stop": "adaptive", "confidence": 0.8, "greedy_first": True},
    ),
    "stepwise": Preset(
        "round 1's default, step-level allocation: System 1 (brief) answers a problem at "
        "once when its greedy reply and 2 samples agree and its calculation checks out; "
        "other problems are decomposed, and each step goes to System 2 unless System 1 is "
        "as sure of it",
        routing={"estimator": "agreement+check", "gate": 0.0, "threshold": 0.0},
    ),
}

# method -> (SCALE routing overrides) for the SCALE-shaped methods
UNIFORM: dict[str, dict[str, Any]] = {
    method: {"estimator": "none", "threshold": threshold, "gate": None, "decompose": True}
    for method, threshold in (("uniform-s1", 1.0), ("uniform-s2", 0.0))
}
# method -> System 2 knobs for the voting methods
VOTING: dict[str, dict[str, Any]] = {
    "vote": {"samples": 5, "stop": "fixed"},
    "adaptive-vote": {"samples": 8, "stop": "adaptive", "confidence": 0.95},
    "esc": {"samples": 8, "stop": "window", "window": 4},
}
# method -> System 2 knobs for the program-aided baselines (the model writes a SymPy program,
# the sandbox runs it): one greedy program, and a vote over sampled programs
PROGRAM_AIDED: dict[str, dict[str, Any]] = {
    "pot": {"kind": "program"},
    "pot-vote": {"kind": "program", "samples": 5, "stop": "fixed"},
}
METHODS = ("scale", "cot", *VOTING, *PROGRAM_AIDED, *UNIFORM)
ROUTING_OPTIONS = ("estimator", "mode", "threshold", "budget", "gate", "decompose")
SCALE_OPTIONS = (*ROUTING_OPTIONS, "agreement_samples")  # what configures SCALE beyond a preset


@dataclass
class ProgramSpec:
    """Everything that builds a method, from CLI options (``from_args``) or keywords.

    ``None`` means "the default": the preset's, or the tuned program's (``program``)
    when one is loaded; anything set here overrides both. ``api_key`` is never logged;
    ``tracking_uri`` is the MLflow store a ``models:/`` or ``runs:/`` program is read from."""

    method: str = "scale"
    preset: str = "efficient"
    program: str | None = None
    tracking_uri: str | None = field(default=None, repr=False)  # where an MLflow program is
    model: str = DEFAULT_MODEL
    system1_model: str | None = None
    system2_model: str | None = None
    system1_kind: str | None = None
    system1_max_tokens: int | None = None
    system2_max_tokens: int | None = None
    system2_samples: int | None = None
    system2_stop: str | None = None
    system2_confidence: float | None = None
    system2_window: int | None = None
    system2_greedy_first: bool | None = None
    system2_logprobs: bool | None = None
    adapter: str | None = None
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    runtime: str | None = None  # of local/ models (None: the process default)
    estimator: str | None = None
    agreement_samples: int | None = None
    mode: str | None = None
    threshold: float | None = None
    budget: float | None = None
    gate: float | None = None
    decompose: bool | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> ProgramSpec:
        """The spec the parsed options describe (options a command lacks keep defaults)."""
        names = {f.name for f in fields(cls)}
        found = {k: v for k, v in vars(args).items() if k in names and v is not None}
        return cls(**{**found, **overrides})

    def params(self) -> dict[str, Any]:
        """The spec as MLflow parameters (no key, no store address)."""
        hidden = ("api_key", "tracking_uri")
        return {k: v for k, v in asdict(self).items() if k not in hidden and v is not None}

    @property
    def system_models(self) -> tuple[str, str]:
        return self.system1_model or self.model, self.system2_model or self.model

    def build(self) -> MathProgram:
        """The method, with a tuned program's prompts, routing and knobs loaded on top."""
        saved = read_program(self.program, self.tracking_uri) if self.program else None
        header = saved["scale"] if saved else {}
        method = header.get("method", self.method)
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}: choose from {', '.join(PRESETS)}")
        preset = PRESETS[self.preset] if method == "scale" else Preset("")  # baselines: plain
        saved_profiles = header.get("profiles") or {}
        s1 = self._profile(1, {**preset.system1, **saved_profiles.get("system1", {})})
        knobs = VOTING.get(method) or PROGRAM_AIDED.get(method) or {}
        s2 = self._profile(2, {**preset.system2, **knobs, **saved_profiles.get("system2", {})})
        if method in ("cot", "pot"):
            program: MathProgram = CoT(s2)
        elif method in VOTING or method == "pot-vote":
            program = Vote(s2)
        else:
            structure = {
                "k": preset.k,
                "batched": preset.batched,
                "agreement_samples": preset.agreement_samples,
                **header.get("structure", {}),
            }
            if self.agreement_samples is not None:
                structure["agreement_samples"] = self.agreement_samples
            routing = Routing(**{**preset.routing, **UNIFORM.get(method, {})})
            program = SCALE(s1, s2, routing=routing, **structure)
        program.method = method
        if saved is not None:
            apply_state(program, saved, self.program)
        overrides = {k: getattr(self, k) for k in ROUTING_OPTIONS if getattr(self, k) is not None}
        if overrides and isinstance(program, SCALE):
            program.routing.load_state({**program.routing.dump_state(), **overrides})
            inert = [k for k in ("threshold", "budget", "mode") if k in overrides]
            if inert and not program.routing.decompose:
                warnings.warn(
                    f"{', '.join(inert)} routes the steps of decomposed problems; this "
                    "program does not decompose (the gate alone decides): add --decompose "
                    "to use it",
                    stacklevel=2,
                )
        return program

    def _profile(self, system: int, knobs: dict[str, Any]) -> SystemProfile:
        """System ``system``'s profile: defaults, then ``knobs`` (preset, method, saved
        program), then the options set on this spec."""
        mine: dict[str, Any] = {
            "max_tokens": self.system1_max_tokens if system == 1 else self.system2_max_tokens,
            "adapter": self.adapter,
        }
        if system == 1:
            mine["kind"] = self.system1_kind
        if system == 2:
            mine |= {
                "samples": self.system2_samples,
                "stop": self.system2_stop,
                "confidence": self.system2_confidence,
                "window": self.system2_window,
                "greedy_first": self.system2_greedy_first,
                "logprobs": self.system2_logprobs,
            }
        chosen = {k: v for k, v in knobs.items() if k in PROFILE_KNOBS}
        chosen |= {k: v for k, v in mine.items() if v is not None}
        client = {
            "api_base": self.api_base,
            "api_key": self.api_key,
            "timeout": self.timeout,
            "retries": self.retries,
        }
        model = self.system_models[system - 1]
        if model.startswith("local/"):
            client["runtime"] = self.runtime
        build = system1 if system == 1 else system2
        return build(model, **client, **chosen)


def build_program(method: str = "scale", **options: Any) -> MathProgram:
    """Shorthand for ``ProgramSpec(method=method, **options).build()``."""
    return ProgramSpec(method=method, **options).build()
