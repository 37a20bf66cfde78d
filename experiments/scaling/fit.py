"""Fit L(N, D) = E + A / N^alpha + B / D^beta, with bootstrap intervals and the compute-optimal frontier.

The fit minimises the squared error of log L (the points span orders of magnitude in N and D, and a
relative error treats them alike), over log E, log A, log B (so the three stay positive), alpha and
beta, from a grid of starting points (the surface has several local minima; Hoffmann et al. fit
the same way). Intervals: refit on points resampled with replacement, the 2.5th and 97.5th
percentiles of each parameter.

Compute-optimal frontier: with training compute C = k N D (k = 6 x tokens per sample for the
forward and backward matmuls), the N minimising L(N, C / (k N)) is

    N_opt(C) = G (C / k)^(beta / (alpha + beta)),   G = (alpha A / (beta B))^(1 / (alpha + beta)),

and D_opt = C / (k N_opt): the exponent says how a larger budget should be split between model and data.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from scipy import optimize

PARAMS = ("E", "A", "alpha", "B", "beta")


@dataclasses.dataclass(frozen=True)
class Law:
    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def __call__(self, n, d):
        n, d = np.asarray(n, float), np.asarray(d, float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @property
    def n_exponent(self) -> float:
        """a in N_opt proportional to C^a (and D_opt to C^(1 - a))."""
        return self.beta / (self.alpha + self.beta)

    def compute_optimal(self, compute, k: float) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) for training compute `compute` (C = k N D)."""
        budget = np.asarray(compute, float) / k
        with np.errstate(
            over="ignore", divide="ignore", invalid="ignore"
        ):  # a degenerate fit: inf, not a crash
            g = np.power(
                np.float64(self.alpha * self.A) / (self.beta * self.B), 1.0 / (self.alpha + self.beta)
            )
            n_opt = g * budget**self.n_exponent
            return n_opt, budget / n_opt


def _unpack(theta: np.ndarray) -> Law:
    e, a, alpha, b, beta = theta
    return Law(float(np.exp(e)), float(np.exp(a)), float(alpha), float(np.exp(b)), float(beta))


def _residuals(theta, log_n, log_d, log_l):
    e, a, alpha, b, beta = theta
    pred = np.logaddexp(np.logaddexp(e, a - alpha * log_n), b - beta * log_d)
    return pred - log_l


def _starts(loss: np.ndarray) -> list[np.ndarray]:
    """A grid of starting points: E near half the smallest loss or far below it, and a spread of
    scales and exponents (the fit is not convex)."""
    floor = np.log(max(float(loss.min()) * 0.5, 1e-6))
    grid = itertools.product(
        (floor, floor - 2.0), (0.0, 3.0, 6.0), (0.2, 0.5, 1.0), (0.0, 3.0, 6.0), (0.2, 0.5, 1.0)
    )
    return [np.array(start) for start in grid]


BOUNDS = ([-20.0, -20.0, 0.0, -20.0, 0.0], [20.0, 40.0, 3.0, 40.0, 3.0])


def fit_law(n, d, loss, *, starts: list[np.ndarray] | None = None) -> Law:
    """The least-squares fit (in log L) of the law to points (n[i], d[i], loss[i])."""
    n, d, loss = (np.asarray(x, float) for x in (n, d, loss))
    if not (n.shape == d.shape == loss.shape) or n.ndim != 1:
        raise ValueError(
            f"n, d, loss must be 1-D of one length, got shapes {n.shape}, {d.shape}, {loss.shape}"
        )
    if len(n) < 2 or np.any(n <= 0) or np.any(d <= 0) or np.any(loss <= 0):
        raise ValueError("the fit needs at least 2 points with positive n, d and loss")
    args = (np.log(n), np.log(d), np.log(loss))
    best = None
    for start in starts if starts is not None else _starts(loss):
        result = optimize.least_squares(_residuals, start, args=args, bounds=BOUNDS, method="trf")
        if best is None or result.cost < best.cost:
            best = result
    return _unpack(best.x)


def _theta(law: Law) -> np.ndarray:
    return np.array([np.log(law.E), np.log(law.A), law.alpha, np.log(law.B), law.beta])


@dataclasses.dataclass(frozen=True)
class FitResult:
    law: Law
    intervals: dict[str, tuple[float, float]]  # 95% bootstrap interval of each parameter
    samples: np.ndarray  # (resamples, 5): E, A, alpha, B, beta of every refit
    rmse_log: float  # of the best fit, in log L

    def as_dict(self) -> dict:
        return {
            "law": self.law.as_dict(),
            "ci95": {k: list(v) for k, v in self.intervals.items()},
            "n_exponent": self.law.n_exponent,
            "n_exponent_ci95": list(self.exponent_interval()),
            "rmse_log": self.rmse_log,
            "resamples": len(self.samples),
        }

    def exponent_interval(self) -> tuple[float, float]:
        alpha, beta = self.samples[:, 2], self.samples[:, 4]
        a = beta / np.maximum(alpha + beta, 1e-12)
        return float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))


def fit_with_bootstrap(n, d, loss, *, resamples: int = 300, seed: int = 0) -> FitResult:
    """The fit and the 95% intervals of its parameters from `resamples` bootstrap refits."""
    n, d, loss = (np.asarray(x, float) for x in (n, d, loss))
    law = fit_law(n, d, loss)
    theta = _theta(law)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(resamples):
        idx = rng.integers(0, len(n), len(n))
        # Each refit starts from the full fit and from a few grid points (a resample can move the
        # minimum to another basin).
        grid = _starts(loss[idx])
        starts = [theta] + [grid[i] for i in rng.choice(len(grid), 6, replace=False)]
        samples.append(_theta_to_row(fit_law(n[idx], d[idx], loss[idx], starts=starts)))
    samples = np.array(samples)
    intervals = {
        name: (float(np.percentile(samples[:, i], 2.5)), float(np.percentile(samples[:, i], 97.5)))
        for i, name in enumerate(PARAMS)
    }
    rmse = float(np.sqrt(np.mean(_residuals(theta, np.log(n), np.log(d), np.log(loss)) ** 2)))
    return FitResult(law, intervals, samples, rmse)


def _theta_to_row(law: Law) -> list[float]:
    return [law.E, law.A, law.alpha, law.B, law.beta]
