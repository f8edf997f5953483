"""Answer extraction and equivalence: the evaluation metric."""

import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scale.grading import verify
from scale.grading.verify import extract_answer, is_equivalent

ROOT = Path(__file__).resolve().parents[1]

EQUIVALENCE = [
    # plain numbers (in-process fast path)
    ("18", "18", True),
    ("18", "18.0", True),
    ("18", "$18", True),
    ("18", "\\$18.00", True),
    ("18", "18 dollars", True),
    ("18", "18\\text{ apples}", True),
    ("1000", "1,000", True),
    ("1000", "1{,}000", True),
    ("1000", "1e3", True),
    ("-5", "−5", True),
    ("-5", "- 5", True),
    ("18", "19", False),
    ("18", "18.5", False),
    ("1000", "100", False),
    ("-5", "5", False),
    ("18", "", False),
    ("", "", False),
    # fractions vs decimals
    ("\\frac{1}{2}", "0.5", True),
    ("0.5", "\\frac{1}{2}", True),
    ("\\frac{3}{4}", "\\dfrac{3}{4}", True),
    ("\\frac{3}{4}", "3/4", True),
    ("\\frac{1}{3}", "0.333333", True),
    ("-\\frac{1}{2}", "-0.5", True),
    ("1.5", "\\frac{3}{2}", True),
    ("\\frac{1}{2}", "0.51", False),
    ("\\frac{1}{3}", "0.33", False),
    # sets, intervals, tuples
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("\\{1,2\\}", "\\{1,3\\}", False),
    ("(0,1]", "(0, 1]", True),
    ("x \\in (0,1]", "(0,1]", True),
    ("(0,1]", "(0,1)", False),
    ("[0,1)", "[0,1]", False),
    ("(\\frac{1}{2}, 3)", "(0.5, 3)", True),
    ("(3, -4)", "(-4, 3)", False),
    # equations, both directions
    ("x = 3", "3", True),
    ("3", "x = 3", True),
    ("x = 3", "x = 4", False),
    ("501", "125 + (4 * 125 - 2) = 501", True),
    ("623", "125 + (4 * 125 - 2) = 501", False),
    ("\\frac{1}{2}", "x = \\frac{2}{4}", True),
    ("x = 3", "y = 3", False),
    # percentages: X% equals X and X/100 (math-verify's rule)
    ("50\\%", "50", True),
    ("50", "50\\%", True),
    ("50\\%", "0.5", True),
    ("10\\%", "0.1", True),
    ("50\\%", "0.05", False),
    ("50", "0.5", False),
    # LaTeX vs plain text, units, degrees
    ("\\sqrt{2}", "sqrt(2)", True),
    ("\\sqrt{2}", "√2", True),
    ("\\sqrt{x+1}", "sqrt(x+1)", True),
    ("\\frac{\\pi}{2}", "pi/2", True),
    ("\\frac{\\pi}{2}", "\\pi/2", True),
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("30^\\circ", "30", True),
    ("5\\text{ cm}", "5", True),
    ("\\text{(C)}", "C", True),
    ("\\sqrt{2}", "2", False),
    ("\\frac{\\pi}{2}", "\\pi", False),
    ("5", "5\\pi", False),
    ("3", "3x", False),
    ("\\text{(C)}", "D", False),
    # expressions
    ("x^2+2x+1", "(x+1)^2", True),
    ("2^{10}", "1024", True),
    ("x^2+2x+1", "(x-1)^2", False),
    # full model output on either side
    ("7", "The answer is 7.", True),
    ("Thus \\boxed{\\frac{1}{2}}.", "so the answer is $0.5$", True),
    ("7", "I think \\boxed{6}, no wait, \\boxed{8}", False),
]


@pytest.mark.parametrize(("gold", "predicted", "expected"), EQUIVALENCE)
def test_is_equivalent(gold: str, predicted: str, expected: bool) -> None:
    assert is_equivalent(gold, predicted) is expected


EXTRACTION = [
    ("The answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("\\boxed{a^{b^{c}}}", "a^{b^{c}}"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("first \\boxed{1}, then \\boxed{2}", "2"),
    ("\\boxed{\\boxed{3}}", "3"),
    ("\\boxed{3} and a truncated \\boxed{4", "3"),
    ("\\fbox{7}", "7"),
    ("$\\boxed{18}$", "18"),
    ("\\boxed {x = 2}", "x = 2"),
    ("18", "18"),
    ("  7.  ", "7"),
    ("$\\frac{1}{2}$", "\\frac{1}{2}"),
    ("The answer is 18.", "18"),
    ("Answer: $42$", "42"),
    ("Final answer: x = 3.", "x = 3"),
    ("The final answer is 5. I hope it is correct.", "5"),
    ("**Answer:** **12**", "12"),
    ("no boxed answer here", "no boxed answer here"),
    ("\\boxed{}", ""),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACTION)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


class _NoSympy:
    """Stands in for the worker pool where SymPy must not be reached."""

    def check(self, *args: object) -> bool:
        raise AssertionError("the SymPy worker was used")


def test_plain_numbers_never_reach_sympy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "_POOL", _NoSympy())
    assert is_equivalent("1000", "The answer is $1,000.")
    assert is_equivalent("72", "\\boxed{72 \\text{ dollars}}")
    assert not is_equivalent("72", "\\boxed{73}")
    assert is_equivalent("50\\%", "0.5")


@pytest.mark.parametrize(
    "answer",
    [
        "10^{10^{10^{10}}}",
        "9**9**9**9",
        "2^{100000000}",
        "(9+1)^{10^{10}}",
        "(" * 50 + "1" + ")" * 50,
        "x+" * 1500 + "1",
    ],
)
def test_costly_input_is_refused_before_sympy(answer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "_POOL", _NoSympy())
    assert is_equivalent("1", answer) is False
    assert is_equivalent(answer, "1") is False


def test_a_worker_that_cannot_start_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "_POOL", verify._Pool(1))
    monkeypatch.setattr(verify, "_BOOT", "raise SystemExit(3)")
    with pytest.raises(RuntimeError, match="failed to start"):
        is_equivalent("\\frac{1}{2}", "0.5")


def test_checks_from_four_threads_are_all_correct() -> None:
    cases = []  # alternating outcomes, so answers delivered to the wrong thread are caught
    for n in range(1, 25):
        cases.append((f"\\frac{{{n}}}{{4}}", str(n / 4), True))
        cases.append((f"\\sqrt{{{n * n}}}", f"{n + 1}", False))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: is_equivalent(c[0], c[1]), cases))
    assert results == [expected for _, _, expected in cases]


def test_timeout_scores_false_and_the_worker_recovers() -> None:
    start = time.monotonic()
    assert not is_equivalent("1", "\\left(10^{8}\\right)!", timeout=1.0)
    assert time.monotonic() - start < 30
    assert is_equivalent("\\frac{1}{2}", "0.5")


def test_an_idle_worker_that_died_is_replaced_not_scored_false(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(verify, "_POOL", verify._Pool(1))
    assert is_equivalent("\\frac{1}{2}", "0.5")
    (idle,) = verify._POOL._idle
    idle._proc.kill()  # e.g. killed from outside, or by the OOM killer, between checks
    idle._proc.wait()
    assert is_equivalent("\\frac{1}{2}", "0.5")
    (replacement,) = verify._POOL._idle
    assert replacement is not idle and replacement._proc.poll() is None
    verify._POOL.close()


HOSTILE = [
    "__import__('os').system('touch {marker}')",
    "\\boxed{__import__('os').system('touch {marker}')}",
    "eval(\"__import__('os').system('touch {marker}')\")",
    "exec('import os; os.system(\"touch {marker}\")')",
    "lambda: 0",
    "9**9**9**9",
    "10^{10^{10^{10}}}",
    "1^{10^{10^{10}}}",
    "2^{100000000}",
    "(9+1)^{10^{10}}",
    "1e999999999",
    "(" * 500 + "1" + ")" * 500,
    "{" * 500 + "1" + "}" * 500,
    "(" * 10_000 + "1" + ")" * 10_000,
    "{" * 10_000 + "1" + "}" * 10_000,
    "\\boxed{" * 10_000,
    "\\frac{" * 5_000 + "1",
    "x" * 100_000,
    "1" * 100_000,
    "1+" * 50_000 + "1",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_input_is_bounded_and_never_executed(template: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = template.replace("{marker}", str(marker))
    start = time.monotonic()
    assert isinstance(extract_answer(text), str)
    assert is_equivalent("1", text) is False
    assert is_equivalent(text, "1") is False
    assert time.monotonic() - start < 30
    assert not marker.exists()


def test_worker_starts_lazily_and_is_cleaned_up_at_exit() -> None:
    script = textwrap.dedent(
        """
        from scale.grading import verify
        assert not verify._POOL._idle
        assert verify.is_equivalent("2", "2.0")  # fast path: no worker
        assert not verify._POOL._idle
        assert verify.is_equivalent("\\\\frac{1}{2}", "0.5")
        print(verify._POOL._idle[0]._proc.pid)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        check=True,
    )
    status = Path(f"/proc/{int(done.stdout)}/status")
    assert not status.exists() or "zombie" in status.read_text()


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_a_timeout_that_is_not_a_positive_number_is_refused(timeout):
    with pytest.raises(ValueError, match="positive number"):
        is_equivalent("\\frac{1}{2}", "\\frac{2}{4}", timeout=timeout)


def test_no_time_limit_and_the_deadline_counts_waiting_for_a_worker():
    import threading
    import time

    assert is_equivalent("\\frac{1}{2}", "\\frac{2}{4}", timeout=float("inf"))
    hard = ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}}")
    took: list[float] = []

    def check() -> None:
        started = time.monotonic()
        is_equivalent(*hard, timeout=2.0)
        took.append(time.monotonic() - started)

    with ThreadPoolExecutor(verify.POOL_SIZE) as pool:  # every worker started (not counted)
        list(pool.map(lambda _: is_equivalent("x^2", "x*x"), range(verify.POOL_SIZE)))
    workers = [threading.Thread(target=check) for _ in range(8)]  # more than the pool's size
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert max(took) < 2.0 + 1.0, took  # time queued for a worker counts
