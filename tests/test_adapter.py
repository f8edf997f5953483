"""Reading list fields the way small models write them (``scale.adapter``)."""

from __future__ import annotations

import pytest

from scale.adapter import parse_string_list

LATEX = r"$\theta$ and $\begin{pmatrix} 1 \\ 2 \end{pmatrix}$, \neq \frac{1}{2}"


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ('["Find x", "Find y"]', ["Find x", "Find y"]),
        # LaTeX as is: every backslash literal (json would read \t, \b, \n, \f as escapes)
        (f'["Find {LATEX}", "Use it"]', [f"Find {LATEX}", "Use it"]),
        # LaTeX escaped as JSON asks, and an escaped quote
        (r'["Find $\\frac{1}{2}$", "say \"hi\""]', [r"Find $\frac{1}{2}$", 'say "hi"']),
        (f"1. Find {LATEX}.\n2) Use it.\n\n3. Answer.", [f"Find {LATEX}.", "Use it.", "Answer."]),
        ("- first\n* second\n\u2022 third", ["first", "second", "third"]),
    ],
)
def test_lists_as_small_models_write_them(text, items):
    assert parse_string_list(text) == items


@pytest.mark.parametrize(
    "text", ["Just prose.", "1. an item\nthen prose", "[1, 2]", '["unterminated', ""]
)
def test_anything_else_is_left_to_dspy(text):
    assert parse_string_list(text) is None
