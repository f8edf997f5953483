"""Final-answer checking: the evaluation metric.

``extract_answer`` pulls the final answer out of model output; ``is_equivalent`` decides
whether two answers agree. Plain numbers are compared in-process with exact decimals; all
else goes to math-verify 0.9.0 (``parse`` + ``verify``) running in a worker subprocess.

Security (from reading math-verify 0.9.0 and latex2sympy2_extended 1.11.0): math-verify's
``ExprExtractionConfig`` path calls ``sympy.parsing.parse_expr`` (eval-based) on regex
matches of the raw text, and ``sympy.Number(str)`` (which sympifies), so it is never used
here. Only ``LatexExtractionConfig`` is: it builds SymPy objects from an ANTLR parse tree,
and its only string-to-SymPy calls are ``sympy.Number``/``sympify`` on number tokens the
lexer restricted to digits, separators and an exponent, and ``sympify`` on objects it has
already built (``parse_expr`` on ``variable_values`` is never reached from ``parse``).
Plain-text notation (``sqrt(2)``, ``pi``, ``**``, Unicode symbols) is rewritten to LaTeX
here instead of being parsed as Python.

Time bound: math-verify's own timeouts use ``signal.alarm``, which only works in the main
thread, so both are disabled (``parsing_timeout=None``, ``timeout_seconds=None``). SymPy
work runs in a small pool of lazily started worker processes (at most ``POOL_SIZE``, each
used by one thread at a time, memory-capped); a check that misses its deadline kills its
worker and scores False. Inputs SymPy could not finish anyway (over ``MAX_SYMPY_CHARS``,
bracket nesting over ``MAX_NESTING``, literal power towers over ``MAX_POWER_DIGITS``
digits) are compared as normalized strings only. POSIX only (``select`` on pipes).

Percentages follow math-verify: ``X%`` equals both ``X`` and ``X/100`` (``50\\%`` matches
``50``, ``0.5`` and ``\\frac{1}{2}``). Two plain decimals are compared exactly (``0.3333``
differs from ``0.333333``); a decimal against a fraction or surd uses math-verify's
rounding to 6 places (``0.333333`` matches ``\\frac{1}{3}``).
"""

import atexit
import contextlib
import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from decimal import Decimal

__all__ = ["extract_answer", "is_equivalent"]

MAX_SYMPY_CHARS = 2000  # longer answers are compared as normalized strings only
MAX_NESTING = 16  # deeper bracket nesting makes the ANTLR parse take seconds
MAX_POWER_DIGITS = 10_000  # refuse literal powers with more decimal digits than this
POOL_SIZE = max(1, min(4, os.cpu_count() or 1))
STARTUP_TIMEOUT = 120.0  # seconds for a worker to import SymPy and warm up
WORKER_MEMORY_BYTES = 2 << 30  # address-space cap of each worker

# --- extraction -----------------------------------------------------------------------

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.S)
_ANSWER_MARKER = re.compile(r"\banswer\s*(?:is\b\s*:?|:)\s*", re.I)
_SENTENCE_END = re.compile(r"\.\s+(?=[A-Z])")
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def last_boxed_span(text: str) -> tuple[int, int, int] | None:
    """Where the last complete ``\\boxed{...}``/``\\fbox{...}`` is: (start of the command,
    start of its content, end of its content); None if there is none (linear scan)."""
    opened = {m.end() - 1: (m.start(), m.end()) for m in _BOX_OPEN.finditer(text)}
    if not opened:
        return None
    stack: list[tuple[int, int] | None] = []
    best: tuple[int, int, int] | None = None
    for token in _BRACE_TOKEN.finditer(text):
        if token.group() == "{":
            stack.append(opened.get(token.start()))
        elif token.group() == "}" and stack:
            box = stack.pop()
            if box is not None and (best is None or box[1] > best[1]):
                best = (box[0], box[1], token.start())
    return best


def _last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}``/``\\fbox{...}``."""
    span = last_boxed_span(text)
    return None if span is None else text[span[1] : span[2]]


def strip_wrappers(answer: str) -> str:
    """Drop surrounding math delimiters, Markdown bold and a trailing period."""
    previous = None
    while answer != previous:
        previous = answer
        answer = answer.strip().strip("*").rstrip(".").strip()
        for left, right in _WRAPPERS:
            if (
                len(answer) > len(left) + len(right)
                and answer.startswith(left)
                and answer.endswith(right)
            ):
                answer = answer[len(left) : -len(right)]
                break
    return answer


def extract_answer(text: str, *, marked_only: bool = False) -> str:
    """The final answer in model output: content of the LAST complete ``\\boxed{...}``
    (brace-balanced, also ``\\fbox``), else the text after the last 'answer is'/'answer:'
    marker (first line and sentence only), else the whole text (or "" if ``marked_only``);
    math delimiters and a trailing period are removed. Never raises."""
    text = text if isinstance(text, str) else str(text)
    boxed = _last_boxed(text)
    if boxed is not None:
        return strip_wrappers(boxed)
    markers = list(_ANSWER_MARKER.finditer(text))
    if markers:
        tail = text[markers[-1].end() :].strip()
        text = _SENTENCE_END.split(tail.splitlines()[0] if tail else "", maxsplit=1)[0]
    elif marked_only:
        return ""
    return strip_wrappers(text)


# --- in-process comparisons -----------------------------------------------------------

_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b|\\left\b|\\right\b|\s+")


def _canon(answer: str) -> str:
    """Whitespace- and spacing-insensitive form for plain string comparison."""
    answer = _SPACING.sub("", answer).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return answer.replace("$", "")


_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d*)?(?:[eE][+-]?\d+)?")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree\b")
_PERCENT = re.compile(r"(?:\\?%|\s*percent)$", re.I)
_UNITS = re.compile(r"(?:\s*\\(?:text|mbox|mathrm|textrm)\s*\{[^{}\d\\]*\}|\s+[A-Za-z]{2,}\.?)+$")
_CURRENCY = re.compile(r"^([+-]?)\s*(?:\\\$|\$|€|£|¥|₹)\s*")
_MATH_WORDS = frozenset(
    {"pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "mod"}
    | {"inf", "infty", "infinity", "and", "or"}
)


def _as_number(answer: str) -> tuple[Decimal, bool] | None:
    """``(value, is_percent)`` for a plain number such as ``$1,000``, ``18 dollars``,
    ``-2.5``, ``30^\\circ`` or ``50\\%``; None for anything else."""
    s = answer.replace("−", "-").replace("{,}", ",").replace("\\!", "").replace("\\,", "")
    s = _DEGREES.sub("", s).strip()
    percent = _PERCENT.search(s)
    if percent:
        s = s[: percent.start()]
    units = _UNITS.search(s)
    if units and not (_MATH_WORDS & set(re.findall(r"[A-Za-z]+", units.group().lower()))):
        s = s[: units.start()]
    s = _CURRENCY.sub(r"\1", s.strip())
    s = re.sub(r"^\\text\{([^{}]*)\}$", r"\1", s).strip()
    s = re.sub(r"^([+-])\s+", r"\1", s)
    if not _NUMBER.fullmatch(s) or not re.match(r"[+-]?\.?\d", s):
        return None
    return Decimal(s.replace(",", "")), percent is not None


def _numbers_equal(a: tuple[Decimal, bool], b: tuple[Decimal, bool]) -> bool:
    """Exact equality; a percentage ``X%`` also matches ``X/100``."""
    if a[1] == b[1]:
        return a[0] == b[0]
    (pct, _), (plain, _) = (a, b) if a[1] else (b, a)
    sign, digits, exponent = pct.as_tuple()
    if not isinstance(exponent, int):  # NaN/Infinity cannot come from _NUMBER
        return False
    return plain in (pct, Decimal((sign, digits, exponent - 2)))


# --- plain text to LaTeX and pre-screening --------------------------------------------

_UNICODE = {
    "√": "\\sqrt ",
    "π": "\\pi ",
    "∞": "\\infty ",
    "−": "-",
    "×": "\\times ",
    "·": "\\cdot ",
    "÷": "\\div ",
    "≤": "\\le ",
    "≥": "\\ge ",
    "≠": "\\ne ",
    "°": "^\\circ ",
}
_WORDS = re.compile(r"(?<![\\A-Za-z])(pi|sqrt|infinity|inf)(?![A-Za-z])")
_WORD_LATEX = {"pi": "\\pi ", "sqrt": "\\sqrt", "infinity": "\\infty ", "inf": "\\infty "}
_SQRT_PAREN = re.compile(r"\\sqrt\s*\(")
_TOWER = re.compile(r"\d+(?:\.\d+)?(?:\s*[})]*\s*\^\s*[{(]*\s*\d+(?:\.\d+)?)+")


def _to_latex(answer: str) -> str:
    """Rewrite plain-text math (``sqrt(2)``, ``pi``, ``x**2``, Unicode) as LaTeX."""
    for char, latex in _UNICODE.items():
        answer = answer.replace(char, latex)
    answer = _WORDS.sub(lambda m: _WORD_LATEX[m.group(1)], answer.replace("**", "^"))
    while match := _SQRT_PAREN.search(answer):
        depth = 0
        for end in range(match.end() - 1, len(answer)):
            depth += {"(": 1, ")": -1}.get(answer[end], 0)
            if depth == 0:
                break
        else:
            break  # unbalanced: leave the rest to the parser
        inner = answer[match.end() : end]
        answer = f"{answer[: match.start()]}\\sqrt{{{inner}}}{answer[end + 1 :]}"
    return answer


def _nesting(answer: str) -> int:
    """Maximum bracket nesting depth."""
    depth = deepest = 0
    for char in answer:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth = max(0, depth - 1)
    return deepest


def _tower_digits(levels: list[float]) -> float:
    """Largest decimal-digit count among the sub-towers of ``a^(b^(c...))``; bases count
    as at least 2, since a matched literal may end a larger base such as ``(9+1)``."""
    value_log10, worst = math.log10(max(levels[-1], 1.0)), 0.0
    for base in reversed(levels[:-1]):
        exponent = math.inf if value_log10 > 300 else 10.0**value_log10
        value_log10 = exponent * math.log10(max(base, 2.0))
        worst = max(worst, value_log10)
    return worst


def _too_costly(latex: str) -> bool:
    """True for inputs SymPy cannot finish in bounded time and memory."""
    if len(latex) > MAX_SYMPY_CHARS or _nesting(latex) > MAX_NESTING:
        return True
    for tower in _TOWER.finditer(latex):
        levels = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", tower.group())]
        if _tower_digits(levels) > MAX_POWER_DIGITS:
            return True
    return False


# --- worker processes -----------------------------------------------------------------

_BOOT = (
    "import importlib.util, json, sys\n"
    "sys.path[:] = json.loads(sys.argv[2])\n"
    "spec = importlib.util.spec_from_file_location('_scale_verify_worker', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module._serve()\n"
)


def _serve() -> None:
    """Worker main loop: one JSON ``[gold, predicted]`` line in, ``1``/``0`` line out."""
    import logging

    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray library prints must not corrupt the protocol
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = WORKER_MEMORY_BYTES if hard < 0 else min(WORKER_MEMORY_BYTES, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, ValueError, OSError):
        pass
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig()]

    def check(gold: str, predicted: str) -> bool:
        parsed = [
            parse(f"\\boxed{{{x}}}", config, fallback_mode="no_fallback", parsing_timeout=None)
            for x in (gold, predicted)
        ]
        return all(parsed) and verify(*parsed, timeout_seconds=None)

    check("1", "1")  # warm up the ANTLR parser
    out.write("ready\n")
    for line in sys.stdin:
        try:
            ok = check(*json.loads(line))
        except Exception:
            ok = False
        out.write("1\n" if ok else "0\n")


class _Worker:
    """One math-verify subprocess speaking the line protocol of ``_serve``."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, os.path.abspath(__file__), json.dumps(sys.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._buffer = b""
        try:
            ready = self._read_line(STARTUP_TIMEOUT)
        except (TimeoutError, EOFError) as exc:
            self.close()
            raise RuntimeError("scale.grading.verify worker failed to start") from exc
        if ready != b"ready":
            self.close()
            raise RuntimeError(f"scale.grading.verify worker sent {ready!r} instead of 'ready'")

    def check(self, gold: str, predicted: str, timeout: float) -> bool:
        """Send one comparison; raises TimeoutError/EOFError/OSError on failure."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps([gold, predicted]).encode() + b"\n")
        self._proc.stdin.flush()
        return self._read_line(timeout) == b"1"

    def _read_line(self, timeout: float) -> bytes:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], min(remaining, 3600))[0]:
                raise TimeoutError
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError("scale.grading.verify worker exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self) -> None:
        """Kill the process and release its pipes."""
        self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # unflushed input to a dead worker
                    pipe.close()


class _Pool:
    """Up to ``size`` workers, each used by one thread at a time, started on demand."""

    def __init__(self, size: int) -> None:
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def check(self, gold: str, predicted: str, timeout: float) -> bool:
        """False on timeout (waiting for a free worker counts) or when a fresh worker dies
        on this input; an idle worker that had died meanwhile (killed, out of memory) is
        replaced and the check sent again. A worker's one-time start is not counted."""
        deadline = time.monotonic() + timeout
        if not self._slots.acquire(timeout=min(timeout, threading.TIMEOUT_MAX)):
            return False
        try:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            fresh = worker is None
            while True:
                if worker is None:
                    worker = _Worker()
                    deadline = max(deadline, time.monotonic() + min(timeout, 1.0))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    with self._lock:
                        self._idle.append(worker)
                    return False
                try:
                    ok = worker.check(gold, predicted, remaining)
                except TimeoutError:
                    worker.close()
                    return False
                except (EOFError, OSError):
                    worker.close()
                    if fresh:
                        return False
                    worker, fresh = None, True
                    continue
                with self._lock:
                    self._idle.append(worker)
                return ok
        finally:
            self._slots.release()

    def close(self) -> None:
        """Stop all idle workers (busy ones see EOF when this process exits)."""
        with self._lock:
            workers, self._idle = self._idle, []
        for worker in workers:
            worker.close()


_POOL = _Pool(POOL_SIZE)
atexit.register(lambda: _POOL.close())


def _reset_pool_after_fork() -> None:
    """A forked child must not share its parent's worker pipes."""
    global _POOL
    _POOL = _Pool(POOL_SIZE)


os.register_at_fork(after_in_child=_reset_pool_after_fork)


# --- public check ---------------------------------------------------------------------


def is_equivalent(gold: str, predicted: str, timeout: float = 5.0) -> bool:
    """True when ``predicted`` states the same final answer as ``gold``.

    Both sides go through ``extract_answer``; a predicted equation against a gold value is
    read as the value after its last ``=``. Plain numbers are settled in-process; other
    answers are checked by math-verify (``verify(gold, predicted)``, which is slightly
    asymmetric for equations) in a worker, scoring False when that takes more than
    ``timeout`` seconds in all (waiting for a free worker included; ``inf``: no limit).
    Raises ``ValueError`` for a timeout that is not a positive number, and otherwise only
    if a worker cannot be started at all (a broken environment must not pass for wrong
    answers)."""
    if not (isinstance(timeout, (int, float)) and timeout > 0):  # also refuses NaN
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    gold, predicted = extract_answer(gold), extract_answer(predicted)
    if "=" in predicted and "=" not in gold:  # "4 * 125 + 1 = 501": the value stated last
        predicted = predicted.rsplit("=", 1)[1].strip()
    if not gold or not predicted:
        return False
    if _canon(gold) == _canon(predicted):
        return True
    if max(len(gold), len(predicted)) > MAX_SYMPY_CHARS:
        return False
    gold_number, predicted_number = _as_number(gold), _as_number(predicted)
    if gold_number is not None and predicted_number is not None:
        return _numbers_equal(gold_number, predicted_number)
    gold, predicted = _to_latex(gold), _to_latex(predicted)
    if _too_costly(gold) or _too_costly(predicted):
        return False
    return _POOL.check(gold, predicted, timeout)
