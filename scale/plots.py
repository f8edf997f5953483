"""Plots of the accuracy / cost trade-off, written to PNG (no pyplot: any backend is fine)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def tradeoff_plot(
    points: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    title: str,
    front: Sequence[dict[str, Any]] = (),
) -> Path:
    """Scatter accuracy against tokens per problem; each point needs ``label``,
    ``tokens_per_problem``, ``accuracy`` and optionally ``ci95``; ``front`` is drawn as a
    line (the Pareto front)."""
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for point in points:
        x, y = point["tokens_per_problem"], point["accuracy"]
        ci = point.get("ci95")
        yerr = [[y - ci[0]], [ci[1] - y]] if ci else None
        ax.errorbar(x, y, yerr=yerr, fmt="o", capsize=3, alpha=0.85)
        ax.annotate(point["label"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if front:
        ordered = sorted(front, key=lambda p: p["tokens_per_problem"])
        ax.plot(
            [p["tokens_per_problem"] for p in ordered],
            [p["accuracy"] for p in ordered],
            "k--",
            linewidth=1,
            label="Pareto front",
        )
        ax.legend(loc="lower right")
    ax.set_xlabel("tokens per problem (all calls)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
