"""Fitting the ``calibrated`` estimator: L2-penalized logistic regression by Newton's
method (a few features, at most hundreds of problems: numpy suffices), the penalty chosen
by inner K-fold cross-validation on log-loss, and the scores that judge it (Brier, log-loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scale.programs.calibrated import Calibration

L2_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # penalty on the standardized weights
FOLDS = 5


def folds_of(n: int, k: int, seed: int) -> list[np.ndarray]:
    """``k`` disjoint index sets covering ``range(n)``, shuffled by ``seed``."""
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::k] for i in range(min(k, n))]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weights and intercept minimizing log-loss + ``l2``/2 * |w|^2 (intercept free)."""
    n, d = x.shape
    a = np.hstack([np.ones((n, 1)), x])
    w = np.zeros(d + 1)
    rate = min(max(y.mean(), 1e-3), 1 - 1e-3)
    w[0] = np.log(rate / (1 - rate))
    penalty = np.diag([0.0] + [l2] * d)
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(a @ w, -50, 50)))
        gradient = a.T @ (p - y) + penalty @ w
        hessian = a.T @ (a * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[1:], float(w[0])


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(p: Sequence[float], y: Sequence[bool]) -> float:
    """Mean squared error of the probabilities against the outcomes."""
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def _matrix(rows: Sequence[dict[str, float]], features: Sequence[str]) -> np.ndarray:
    return np.array([[row[f] for f in features] for row in rows], dtype=float)


def _fit(x: np.ndarray, y: np.ndarray, l2: float, features: Sequence[str]) -> Calibration:
    center = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant feature keeps weight 0 after centering
    coef, intercept = fit_logistic((x - center) / scale, y, l2)
    return Calibration(
        features=tuple(features),
        center=tuple(float(v) for v in center),
        scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in coef),
        intercept=intercept,
        l2=float(l2),
        n=len(y),
    )


def fit_calibration(
    rows: Sequence[dict[str, float]],
    right: Sequence[bool],
    features: Sequence[str],
    *,
    l2_grid: Sequence[float] = L2_GRID,
    folds: int = FOLDS,
    seed: int = 0,
) -> Calibration:
    """The model of P(right) over ``features`` of ``rows``, its penalty the one of
    ``l2_grid`` with the lowest inner cross-validated log-loss (the strongest on ties)."""
    x, y = _matrix(rows, features), np.asarray(right, dtype=float)
    if len(y) == 0:
        raise ValueError("no problems to calibrate on")
    chosen = max(l2_grid)
    if 0 < y.sum() < len(y) and len(y) >= 2 * folds:
        losses = []
        parts = folds_of(len(y), folds, seed)
        for l2 in l2_grid:
            p = np.empty(len(y))
            for held in parts:
                train = np.setdiff1d(np.arange(len(y)), held)
                model = _fit(x[train], y[train], l2, features)
                p[held] = [model.probability(dict(zip(features, r, strict=True))) for r in x[held]]
            losses.append((log_loss(p, y), -l2))
        chosen = -min(losses)[1]
    return _fit(x, y, chosen, features)
