"""The adapter the programs parse model replies with: DSPy's ChatAdapter, made tolerant of
what small models write, and cheaper when a reply runs into max_tokens."""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
from collections.abc import Iterator
from typing import Any

import dspy
from dspy.adapters.chat_adapter import field_header_pattern
from dspy.utils.exceptions import AdapterParseError

from scale.grading.verify import extract_answer, last_boxed_span, strip_wrappers

_cut_at_max_tokens: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "cut_at_max_tokens", default=False
)
_final: contextvars.ContextVar[bool] = contextvars.ContextVar("final_answer", default=False)
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)
PROGRAM_FIELDS = ("program", "fixed_program")  # read as the reply's code block
_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+(.*\S)\s*$")
_ESCAPE = re.compile(r'\\\\|\\"|\\')  # JSON's escaped backslash or quote, or a lone one
_BACKSLASH = re.compile(r'\\(?!")')


def record_finish(response: Any) -> None:
    """Note whether ``response`` (the last reply in this context) stopped at max_tokens."""
    choices = getattr(response, "choices", None) or []
    _cut_at_max_tokens.set(any(getattr(c, "finish_reason", None) == "length" for c in choices))


@contextlib.contextmanager
def final_answer(final: bool = True) -> Iterator[None]:
    """Marks the calls inside as giving the problem's final answer (or not, ``final=False``):
    a reply to them cut at max_tokens with no marked answer is asked for again as JSON."""
    token = _final.set(final)
    try:
        yield
    finally:
        _final.reset(token)


def extract_program(text: str, *, fenced_only: bool = True) -> str | None:
    """The Python program in a reply: its last fenced block (```python, ```py or bare
    fences; a block cut off at the end of the reply counts), else, unless ``fenced_only``,
    the whole text. None when there is none."""
    blocks = [b.strip() for b in _FENCE.findall(text or "") if b.strip()]
    if blocks:
        return blocks[-1]
    text = (text or "").strip()
    return text if text and not fenced_only else None


def parse_string_list(text: str) -> list[str] | None:
    """A list of strings as small models write it: a JSON list, also one whose LaTeX is not
    escaped (then every backslash is literal: ``\\theta`` stays ``\\theta``, not a tab and
    ``heta``), or a numbered or bulleted list, one item per line. None if neither."""
    text = text.strip()
    if text.startswith("["):
        if "\\" in _ESCAPE.findall(text):  # a lone backslash: LaTeX written as is
            text = _BACKSLASH.sub(r"\\\\", text)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None
    items = [_ITEM.match(line) for line in text.splitlines() if line.strip()]
    if items and all(items):
        return [m[1] for m in items]
    return None


class ChatAdapter(dspy.ChatAdapter):
    """DSPy's ChatAdapter with two changes. ``list[str]`` fields are read with
    ``parse_string_list`` first (DSPy's repair of non-JSON text keeps whatever follows the
    first brace, and turns ``\\begin`` into a backspace). A reply cut at max_tokens is
    asked for again as JSON only inside ``final_answer()`` and only if it holds no
    ``\\boxed{}`` or 'answer:' marker: on the MATH benchmark such re-asks saved some final
    answers, while on intermediate steps they mostly passed on one-token guesses
    (bench/results/README.md). Otherwise the ``AdapterParseError`` carries the cut reply,
    whose marked answer (if any) the solvers read."""

    def __call__(
        self,
        lm: dspy.BaseLM,
        lm_kwargs: dict[str, Any],
        signature: type[dspy.Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        _cut_at_max_tokens.set(False)
        try:  # the base adapter's call, without dspy.ChatAdapter's unconditional re-ask
            return dspy.Adapter.__call__(self, lm, lm_kwargs, signature, demos, inputs)
        except AdapterParseError as exc:
            if not self.use_json_adapter_fallback or not _worth_asking_again(exc.lm_response):
                raise
            return dspy.JSONAdapter()(lm, lm_kwargs, signature, demos, inputs)

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        sections = _sections(completion)
        changed = False
        for i, (name, text) in enumerate(sections):
            field = signature.output_fields.get(name or "")
            items = parse_string_list(text) if field and field.annotation == list[str] else None
            if items is not None:
                sections[i] = (name, json.dumps(items))
                changed = True
        if changed:
            completion = "\n\n".join(
                text if name is None else f"[[ ## {name} ## ]]\n{text}" for name, text in sections
            )
        return super().parse(signature, completion)


def _worth_asking_again(reply: Any) -> bool:
    """Whether to ask again in JSON after an unparseable ``reply``: yes, unless it was cut at
    max_tokens; a cut reply only if it gives the final answer and holds no marked answer."""
    if not _cut_at_max_tokens.get():
        return True
    return _final.get() and not extract_answer(str(reply or ""), marked_only=True)


def _sections(completion: str) -> list[tuple[str | None, str]]:
    """``completion`` split at its ``[[ ## name ## ]]`` headers, as DSPy's parser splits it:
    (None, preamble), then (name, text under the header) in order."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in completion.splitlines():
        match = field_header_pattern.match(line.strip())
        if match:
            rest = line.strip()[match.end() :].strip()
            sections.append((match[1], [rest] if rest else []))
        else:
            sections[-1][1].append(line)
    return [(name, "\n".join(lines).strip()) for name, lines in sections]


# --- the native-chat adapter -----------------------------------------------------------

LABELS = {"earlier_steps": "Solved so far", "subproblem": "Now answer"}
_NUMBER_TEXT = re.compile(r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)")
_MAX_BARE_LINE = 80  # characters: a longer unmarked last line is prose, not an answer


_OPEN_MATH = re.compile(r"(?:\s|\$|\\\[|\\\()*$")  # math opened just before a \boxed{}
_LIST_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d+(?:[.)]|\.\d+)?\s|[A-Z][a-z]+:\s)")


def unwrap(text: str) -> str:
    """Instructions as prose: the hard-wrapped lines of each paragraph joined, list lines
    (bullets, numbered items, lines that start with a number or a ``Label:``) kept on their
    own."""
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not _LIST_LINE.match(line):
                lines[-1] = f"{lines[-1]} {line.strip()}"
            else:
                lines.append(line.strip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _label(name: str, labels: dict[str, str]) -> str:
    return labels.get(name) or name.replace("_", " ").capitalize()


def _desc(name: str, field: Any) -> str:
    desc = (field.json_schema_extra or {}).get("desc") or ""
    return name.replace("_", " ") if not desc or desc.startswith("${") else desc


def _render(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(f"{i}. {v}" for i, v in enumerate(value, 1))
    return str(value)


def _numbers(text: str) -> list[float]:
    return [float(m.group().replace(",", "")) for m in _NUMBER_TEXT.finditer(text)]


class NativeAdapter(dspy.Adapter):
    """Renders a signature the way chat models are trained to be asked, and reads their
    free-text replies by type.

    - system: the signature's instructions (what optimizers rewrite), plus one plain sentence
      for each labelled output, and for a ``str`` answer, that they do not already ask for;
      no field markers;
    - user: a single input to a signature that answers as its plain text; otherwise short
      labelled paragraphs (``Problem:``, ``Solved so far:``, ``Now answer:``), with the
      request for a non-answer output last; demos as earlier turns;
    - reply: the last output field is read by type from the whole reply (``str`` from the
      last ``\\boxed{}``, then an "answer:" line, then a short last line; ``list[str]`` from
      numbered or bulleted lines; ``float``/``int`` from the last number); any other output
      field from a ``Label:`` line; ``reasoning`` is the text before the answer. A reply cut
      at max_tokens gives a ``str`` answer only from a marked answer. A reply that yields
      nothing raises ``AdapterParseError``.
    """

    def __init__(self, labels: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.labels = {**LABELS, **(labels or {})}

    def format(
        self,
        signature: type[dspy.Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        messages = [{"role": "system", "content": self.format_system_message(signature)}]
        for demo in demos:
            if all(demo.get(k) is not None for k in signature.input_fields) and any(
                demo.get(k) is not None for k in signature.output_fields
            ):
                messages.append(
                    {"role": "user", "content": self.format_user_message_content(signature, demo)}
                )
                messages.append(
                    {
                        "role": "assistant",
                        "content": self.format_assistant_message_content(signature, demo),
                    }
                )
        messages.append(
            {"role": "user", "content": self.format_user_message_content(signature, inputs)}
        )
        return messages

    def format_system_message(self, signature: type[dspy.Signature]) -> str:
        instructions = unwrap(signature.instructions)
        sentences = [instructions]
        *others, main = _answer_fields(signature)
        for name in others:
            field, label = signature.output_fields[name], _label(name, self.labels)
            if f"{label.lower()}:" in instructions.lower():
                continue
            sentences.append(
                f'Before the final answer, write a line starting with "{label}:" that gives '
                f"{_desc(name, field)}."
            )
        # any other output is requested as the user message's last line
        asks = "\\boxed" in instructions or main in PROGRAM_FIELDS  # programs: as told
        if signature.output_fields[main].annotation is str and not asks:
            sentences.append(_request(signature, main))
        return " ".join(s for s in sentences if s)

    def format_user_message_content(
        self,
        signature: type[dspy.Signature],
        inputs: dict[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        present = [(n, inputs[n]) for n in signature.input_fields if inputs.get(n) is not None]
        *_, main = _answer_fields(signature)
        answer = signature.output_fields[main].annotation is str
        if len(present) == 1 and answer:
            return _render(present[0][1])
        paragraphs = []
        for name, value in present:
            text, label = _render(value), _label(name, self.labels)
            paragraphs.append(f"{label}:\n{text}" if "\n" in text else f"{label}: {text}")
        if not answer:  # asked last, or a small model solves the problem instead
            paragraphs.append(_request(signature, main))
        return "\n\n".join(paragraphs)

    def format_assistant_message_content(
        self,
        signature: type[dspy.Signature],
        outputs: dict[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        *others, main = _answer_fields(signature)
        parts = [str(outputs.get("reasoning") or "").strip()]
        parts += [
            f"{_label(n, self.labels)}: {outputs[n]}" for n in others if outputs.get(n) is not None
        ]
        value = outputs.get(main)
        if value is not None:
            kind = signature.output_fields[main].annotation
            if main in PROGRAM_FIELDS:
                parts.append(f"```python\n{value}\n```")
            else:
                parts.append(f"\\boxed{{{value}}}" if kind is str else _render(value))
        return "\n\n".join(p for p in parts if p)

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        text = completion.strip()
        *others, main = _answer_fields(signature)
        values: dict[str, Any] = {}
        for name in others:
            values[name] = _labelled_line(text, _label(name, self.labels))
        kind = signature.output_fields[main].annotation
        labelled = [_label(n, self.labels) for n in others]
        if main in PROGRAM_FIELDS:
            program = extract_program(text)
            found = None if program is None else (program, "")
        else:
            found = _read_main(
                _without_labelled(text, labelled), kind, cut=_cut_at_max_tokens.get()
            )
        if found is None:
            raise AdapterParseError(
                adapter_name=type(self).__name__,
                signature=signature,
                lm_response=completion,
                message=f"no {main} ({getattr(kind, '__name__', kind)}) found in the reply",
            )
        values[main], before = found
        if "reasoning" in signature.output_fields:
            values["reasoning"] = before
        return values


def _request(signature: type[dspy.Signature], name: str) -> str:
    """The sentence that asks for the output field ``name``, by its type."""
    field = signature.output_fields[name]
    kind, desc = field.annotation, _desc(name, field)
    if kind is str:
        return f"Put {desc} within \\boxed{{}}."
    if kind == list[str]:
        return f"Write {desc}, as a numbered list, one per line."
    return f"End your reply with {desc}."


def _answer_fields(signature: type[dspy.Signature]) -> list[str]:
    names = [n for n in signature.output_fields if n != "reasoning"]
    if not names:
        raise ValueError(f"{signature.__name__} has no output field besides reasoning")
    return names


def _labelled_line(text: str, label: str) -> str:
    """The value after the last line that starts with ``label:`` (markdown bold allowed)."""
    matches = list(_label_pattern([label]).finditer(text))
    return strip_wrappers(matches[-1][1] or "") if matches else ""


def _label_pattern(labels: list[str]) -> re.Pattern:
    """``Label: value`` to the end of the line, at a line start or after other text."""
    names = "|".join(re.escape(label) for label in labels)
    return re.compile(rf"(?:^|(?<=\W))(?:{names})\W{{0,3}}:[ \t]*(.*?)[ \t]*$", re.I | re.M)


def _without_labelled(text: str, labels: list[str]) -> str:
    """``text`` without its ``Label:`` lines (they hold the other fields, not the answer)."""
    return _label_pattern(labels).sub("", text).strip() if labels else text


def _read_main(text: str, kind: Any, *, cut: bool) -> tuple[Any, str] | None:
    """The last output field's value and the text before it, or None."""
    if kind is str:
        return _read_answer(text, cut=cut)
    if kind == list[str]:
        items = parse_string_list(text) or _top_level_items(text)
        return (items, "") if items else None
    if kind == list[float]:
        lines = _top_level_items(text) or [line for line in text.splitlines() if line.strip()]
        scores = [found[-1] for found in map(_numbers, lines) if found]
        return (scores, "") if scores else None
    if kind in (int, float):
        numbers = _numbers(text)
        if not numbers or (kind is int and not numbers[-1].is_integer()):
            return None
        return kind(numbers[-1]), ""
    raise TypeError(f"NativeAdapter cannot read a {kind} output field")


def _read_answer(text: str, *, cut: bool) -> tuple[str, str] | None:
    span = last_boxed_span(text)
    if span is not None:
        return strip_wrappers(text[span[1] : span[2]]), _OPEN_MATH.sub("", text[: span[0]])
    marked = extract_answer(text, marked_only=True)
    if marked:
        return marked, text[: text.lower().rfind("answer")].strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if cut or not lines or len(lines[-1].strip()) > _MAX_BARE_LINE:
        return None
    return strip_wrappers(lines[-1]), "\n".join(lines[:-1]).strip()


def _top_level_items(text: str) -> list[str]:
    """Items of the least-indented numbered or bulleted lines, in order."""
    matches = [(len(line) - len(line.lstrip()), _ITEM.match(line)) for line in text.splitlines()]
    items = [(indent, m) for indent, m in matches if m]
    if not items:
        return []
    top = min(indent for indent, _ in items)
    return [m[1] for indent, m in items if indent == top]


ADAPTERS = ("native", "chat", "json")


def default_adapter(model: str) -> str:
    """The adapter a model gets unless one is chosen: ``native`` for the embedded ``local/``
    models (measured in bench/results/adapter-native), DSPy's chat format for the others."""
    return "native" if model.startswith("local/") else "chat"


def make_adapter(name: str) -> dspy.Adapter:
    """A fresh adapter by name: ``native``, ``chat`` (DSPy's format, made tolerant) or
    ``json`` (DSPy's JSONAdapter)."""
    if name == "native":
        return NativeAdapter()
    if name == "chat":
        return ChatAdapter()
    if name == "json":
        return dspy.JSONAdapter()
    raise ValueError(f"unknown adapter {name!r}: choose from {', '.join(ADAPTERS)}")
