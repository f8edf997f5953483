"""Plots of the accuracy / cost trade-off, written to PNG (no pyplot: any backend is fine)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

AXES = {
    "tokens_per_problem": "tokens per problem (all calls)",
    "seconds_per_problem": "wall seconds per problem",
}


def pareto(points: Sequence[dict[str, Any]], x: str) -> list[dict[str, Any]]:
    """The points no other point beats on both accuracy (higher) and ``x`` (lower)."""
    front = [
        p
        for p in points
        if not any(
            o["accuracy"] >= p["accuracy"]
            and o[x] <= p[x]
            and (o["accuracy"] > p["accuracy"] or o[x] < p[x])
            for o in points
        )
    ]
    return sorted(front, key=lambda p: p[x])


def tradeoff_plot(
    points: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    title: str,
    x: str = "tokens_per_problem",
    front: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Accuracy against ``x`` (tokens or seconds per problem). Each point needs ``label``,
    ``accuracy``, ``x`` and optionally ``ci95`` and ``family``: points of one family (e.g.
    vote@1..8) are joined into a curve. The Pareto front (``front``, by default computed
    from the points) is drawn dashed."""
    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labelled: dict[tuple[float, float], int] = {}  # labels already at a spot: stack the next

    def annotate(p: dict[str, Any], size: int) -> None:
        spot = (round(p[x], 6), round(p["accuracy"], 6))
        below = labelled.get(spot, 0)
        labelled[spot] = below + 1
        ax.annotate(
            p["label"],
            (p[x], p["accuracy"]),
            xytext=(4, 4 - 9 * below),
            textcoords="offset points",
            fontsize=size,
        )

    families: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        families.setdefault(point.get("family") or point["label"], []).append(point)
    for family, members in families.items():
        members = sorted(members, key=lambda p: p[x])
        xs, ys = [p[x] for p in members], [p["accuracy"] for p in members]
        if len(members) > 1:
            ax.plot(xs, ys, "-o", markersize=4, alpha=0.8, label=family)
            for p in (members[0], members[-1]):
                annotate(p, 7)
            continue
        p = members[0]
        ci = p.get("ci95")
        yerr = [[p["accuracy"] - ci[0]], [ci[1] - p["accuracy"]]] if ci else None
        ax.errorbar(xs[0], ys[0], yerr=yerr, fmt="o", capsize=3, alpha=0.85)
        annotate(p, 8)
    front = pareto(points, x) if front is None else front
    if front:
        ordered = sorted(front, key=lambda p: p[x])
        ax.plot(
            [p[x] for p in ordered],
            [p["accuracy"] for p in ordered],
            "k--",
            linewidth=1,
            label="Pareto front",
        )
    ax.legend(loc="lower right", fontsize=7)
    ax.set_xlabel(AXES.get(x, x))
    ax.set_ylabel("accuracy")
    ys = [v for p in points for v in (p["accuracy"], *(p.get("ci95") or ()))]
    ax.set_ylim(max(-0.02, min(ys) - 0.05), min(1.02, max(ys) + 0.05))  # the points, padded
    ax.set_title(textwrap.fill(title, 95), fontsize=10)  # a long dataset path wraps
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
