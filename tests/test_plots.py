from matplotlib.figure import Figure

from scale.bench.plots import pareto, tradeoff_plot

POINTS = [
    {"label": "cot", "accuracy": 0.5, "tokens_per_problem": 400, "ci95": (0.4, 0.6)},
    {"label": "vote@3", "family": "vote", "accuracy": 0.55, "tokens_per_problem": 1200},
    {"label": "vote@5", "family": "vote", "accuracy": 0.6, "tokens_per_problem": 2000},
    {"label": "scale-paper", "accuracy": 0.4, "tokens_per_problem": 8000},
]


def test_pareto_keeps_only_points_nothing_beats_on_both_axes():
    front = pareto(POINTS, "tokens_per_problem")
    assert [p["label"] for p in front] == ["cot", "vote@3", "vote@5"]


def test_a_long_title_is_wrapped_inside_the_figure(tmp_path, monkeypatch):
    saved: list[Figure] = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: (saved.append(fig), real_savefig(fig, *a, **k))
    )
    title = "bench/results/round2-math500-l13/planned.jsonl, n=20 of 100 planned: " * 2
    path = tradeoff_plot(POINTS, tmp_path / "plot.png", title=title)
    assert path.stat().st_size > 0
    (fig,) = saved
    renderer = fig.canvas.get_renderer()
    shown = fig.axes[0].title
    assert shown.get_text().count("\n") >= 1
    box, frame = shown.get_window_extent(renderer), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and box.y1 <= frame.y1
